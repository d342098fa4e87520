"""Input factories shared by the tests: random data, NaN-poisoned padding."""

from __future__ import annotations

import torch

import torch_fmha

FP8 = torch.float8_e4m3fn


def poisoned_view(data: torch.Tensor, head_axis: int) -> torch.Tensor:
    """A copy of ``data`` living inside a NaN-filled buffer with every other
    head and extra rows unused, so strides are honoured and padding is NaN."""
    shape = list(data.shape)
    shape[head_axis] *= 2  # interleave a NaN head after each real one
    shape[head_axis - 1] += 3  # NaN rows past the end of the sequence axis
    buf = torch.full(shape, float("nan"), dtype=torch.float32, device=data.device).to(data.dtype)
    idx = [slice(None)] * data.dim()
    idx[head_axis] = slice(0, None, 2)
    idx[head_axis - 1] = slice(0, data.shape[head_axis - 1])
    view = buf[tuple(idx)]
    view.copy_(data)
    return view


def dense_inputs(b, sq, sk, h, hkv, d, dtype, *, device="cpu", per_head_descale=True,
                 poison=True, seed=0):
    """q [B, Sq, H, D], k/v [B, Sk, Hkv, D] and (for FP8) descales ≠ 1."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(b, sq, h, d, generator=g)
    k = torch.randn(b, sk, hkv, d, generator=g)
    # Different scales per (batch, kv head) so an ignored or misindexed descale fails.
    v = torch.randn(b, sk, hkv, d, generator=g) * torch.linspace(0.5, 3.0, hkv)[None, None, :, None]
    scales = {}
    if dtype == FP8:
        gran = "head" if per_head_descale else "tensor"
        q, scales["q_descale"] = torch_fmha.quantize_fp8(q, gran, group_size=h // hkv)
        k, scales["k_descale"] = torch_fmha.quantize_fp8(k, gran)
        v, scales["v_descale"] = torch_fmha.quantize_fp8(v, gran)
    else:
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    q, k, v = (t.to(device) for t in (q, k, v))
    scales = {n: s.to(device) for n, s in scales.items()}
    if poison:
        q, k, v = poisoned_view(q, 2), poisoned_view(k, 2), poisoned_view(v, 2)
    return q, k, v, scales


def varlen_inputs(lens_q, lens_k, h, hkv, d, dtype, *, device="cpu", seed=0):
    """Packed q [Tq, H, D], k/v [Tk, Hkv, D], cu_seqlens, per-sequence descales."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    cu_q = torch.tensor([0] + list(torch.tensor(lens_q).cumsum(0)), dtype=torch.int32)
    cu_k = torch.tensor([0] + list(torch.tensor(lens_k).cumsum(0)), dtype=torch.int32)
    tq, tk = int(cu_q[-1]), int(cu_k[-1])
    q = torch.randn(tq, h, d, generator=g)
    k = torch.randn(tk, hkv, d, generator=g)
    v = torch.randn(tk, hkv, d, generator=g) * torch.linspace(0.5, 3.0, hkv)[None, :, None]
    scales = {}
    if dtype == FP8:
        q, scales["q_descale"] = torch_fmha.quantize_fp8(q, "head", group_size=h // hkv, cu_seqlens=cu_q)
        k, scales["k_descale"] = torch_fmha.quantize_fp8(k, "head", cu_seqlens=cu_k)
        v, scales["v_descale"] = torch_fmha.quantize_fp8(v, "head", cu_seqlens=cu_k)
    else:
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    q, k, v = (poisoned_view(t.to(device), 1) for t in (q, k, v))
    scales = {n: s.to(device) for n, s in scales.items()}
    return q, k, v, cu_q.to(device), cu_k.to(device), scales
