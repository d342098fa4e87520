"""What the SM90 FP8 kernel's rounding does, repeated in float64 PyTorch.

The kernel keeps P = exp(s - rowmax) * 2^8 in [0, 256], rounds it to e4m3 for
the P.V GEMM, and divides by the unrounded row sum; the output is rounded to
the output dtype last (``reference.round_output``). The tolerance rule
compares the kernel with the oracle against this emulation's own error.
"""

from __future__ import annotations

import math

import torch

from reference import FP8, _expand_groups, sequence_keys, visible

P_OFFSET = 256.0  # 2^kMaxOffset, csrc/kernel/softmax.cuh


def _per_query_head(descale, h, hkv):
    """[1] or [B, Hkv] -> broadcastable over [B, H, Sq, D]."""
    if descale.numel() == 1:
        return descale.double().reshape(())
    return descale.double().repeat_interleave(h // hkv, dim=1)[:, :, None, None]


def emulate_fp8_kernel(q, k, v, *, q_descale, k_descale, v_descale, causal=False,
                       window_size=(-1, -1), softmax_scale=None, softcap=0.0, sinks=None):
    """The kernel's rounding steps in float64: P = exp(s - m) * 256 rounded to e4m3, with the
    serving features' score options (issue 14): the cap on the scaled scores, the sink in the
    row max and in the (unrounded) row sum.
    q [B, Sq, H, D], k/v [B, Sk, Hkv, D] FP8 -> float64 [B, Sq, H, D] (before out rounding)."""
    b, sq, h, d = q.shape
    sk, hkv = k.size(1), k.size(2)
    scale = 1 / math.sqrt(d) if softmax_scale is None else softmax_scale
    left, right = window_size
    if causal:
        right = 0
    qh = q.double().transpose(1, 2)                                   # [B, H, Sq, D]
    kh = _expand_groups(k.double(), h).transpose(1, 2)                # [B, H, Sk, D]
    vh = _expand_groups(v.double(), h).transpose(1, 2)                # [B, H, Sk, D]
    s = (qh @ kh.transpose(-1, -2)) * (scale * _per_query_head(q_descale, h, hkv)
                                       * _per_query_head(k_descale, h, hkv))  # [B, H, Sq, Sk]
    if softcap:
        s = torch.tanh(s / softcap) * softcap
    s = s.masked_fill(~visible(sq, sk, left, right, q.device), -math.inf)
    m = s.amax(-1, keepdim=True) if sk else torch.full((b, h, sq, 1), -math.inf, device=q.device,
                                                         dtype=torch.float64)
    if sinks is not None:
        m = torch.maximum(m, sinks.double()[None, :, None, None])
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    p = torch.exp(s - m) * P_OFFSET                                   # [0, 256]
    l = p.sum(-1, keepdim=True)                                       # [B, H, Sq, 1]
    if sinks is not None:
        l = l + torch.exp(sinks.double()[None, :, None, None] - m) * P_OFFSET
    o = (p.float().to(FP8).double() @ vh) / l.clamp_min(1e-300)       # [B, H, Sq, D]
    o = torch.where(l > 0, o, torch.zeros_like(o)) * _per_query_head(v_descale, h, hkv)
    return o.transpose(1, 2)                                          # [B, Sq, H, D]


def emulate_varlen(q, k, v, cu_q, *, q_descale, k_descale, v_descale, keys, **kw):
    """Per-sequence emulate_fp8_kernel -> float64 [Tq, H, D]; rows without keys are 0.
    Sequence b's keys come from reference.sequence_keys(**keys) (packed, seqused_k or paged;
    keys from reference.sequence_key_args)."""
    out = torch.zeros(q.shape, dtype=torch.float64, device=q.device)
    cq = cu_q.tolist()
    for b in range(len(cq) - 1):
        if cq[b + 1] == cq[b]:
            continue
        kb, vb = sequence_keys(k, b, **keys), sequence_keys(v, b, **keys)
        if kb.size(0) == 0:
            continue
        sel = lambda t: t if t.numel() == 1 else t[b:b + 1]  # noqa: E731
        out[cq[b]:cq[b + 1]] = emulate_fp8_kernel(
            q[None, cq[b]:cq[b + 1]], kb[None], vb[None], q_descale=sel(q_descale),
            k_descale=sel(k_descale), v_descale=sel(v_descale), **kw)[0]
    return out
