"""Small attention blocks used by the compile/export tests."""

from __future__ import annotations

import torch

import torch_fmha


class AttentionBlock(torch.nn.Module):
    """x [B, S, E] -> projections -> torch_fmha.attention (GQA) -> x [B, S, E].

    With ``fp8=True`` q/k/v are quantized inside the graph (per head) and the
    FP8 path runs; otherwise the input dtype's path (differentiable)."""

    def __init__(self, embed=256, heads=4, kv_heads=2, head_dim=64, fp8=False, causal=True):
        super().__init__()
        self.h, self.hkv, self.d, self.fp8, self.causal = heads, kv_heads, head_dim, fp8, causal
        self.wq = torch.nn.Linear(embed, heads * head_dim, bias=False)
        self.wkv = torch.nn.Linear(embed, 2 * kv_heads * head_dim, bias=False)
        self.wo = torch.nn.Linear(heads * head_dim, embed, bias=False)

    def forward(self, x):
        b, s, _ = x.shape
        q = self.wq(x).view(b, s, self.h, self.d)
        k, v = self.wkv(x).view(b, s, 2, self.hkv, self.d).unbind(2)
        if self.fp8:
            q8, qd = torch_fmha.quantize_fp8(q, "head", group_size=self.h // self.hkv)
            k8, kd = torch_fmha.quantize_fp8(k, "head")
            v8, vd = torch_fmha.quantize_fp8(v, "head")
            o = torch_fmha.attention(q8, k8, v8, causal=self.causal, q_descale=qd, k_descale=kd,
                                     v_descale=vd, out_dtype=torch.bfloat16).to(x.dtype)
        else:
            o = torch_fmha.attention(q, k, v, causal=self.causal)
        return self.wo(o.reshape(b, s, self.h * self.d))


class VarlenBlock(torch.nn.Module):
    """Packed tokens x [T, E] with cu_seqlens -> varlen attention -> [T, E]."""

    def __init__(self, embed=128, heads=2, head_dim=64):
        super().__init__()
        self.h, self.d = heads, head_dim
        self.wqkv = torch.nn.Linear(embed, 3 * heads * head_dim, bias=False)
        self.wo = torch.nn.Linear(heads * head_dim, embed, bias=False)

    def forward(self, x, cu_seqlens):
        t = x.size(0)
        q, k, v = self.wqkv(x).view(t, 3, self.h, self.d).unbind(1)
        o = torch_fmha.varlen_attention(q, k, v, cu_seqlens, cu_seqlens, causal=True)
        return self.wo(o.reshape(t, self.h * self.d))


class BothApis(torch.nn.Module):
    """One module calling both the dense and the varlen API (for export)."""

    def __init__(self):
        super().__init__()
        self.dense = AttentionBlock(embed=128, heads=2, kv_heads=1, head_dim=64)
        self.packed = VarlenBlock(embed=128, heads=2, head_dim=64)

    def forward(self, x, packed, cu_seqlens):
        return self.dense(x), self.packed(packed, cu_seqlens)
