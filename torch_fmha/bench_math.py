"""The benchmark's numerics: FLOP counts (FlashAttention's convention), the per-tensor
FP8 quantization both FP8 columns get, and the float64 reference and error statistics
of ``--errors`` / ``--e2e-errors``. Only torch: ``bench.py`` loads it by path when it
runs as a script without the package."""

from __future__ import annotations

from typing import Dict

import torch

FP8_MAX = 448.0


def attn_flops(B: int, H: int, Sq: int, Sk: int, D: int, causal: bool) -> float:
    """FlashAttention convention: ``4*B*H*Sq*Sk*D``, halved for causal."""
    f = 4.0 * B * H * Sq * Sk * D
    return f / 2 if causal else f


def window_pairs(S: int, left: int) -> int:
    """Number of (i, j) with ``i - left <= j <= i`` in an S x S square."""
    full = min(S, left + 1)
    return full * (full + 1) // 2 + (S - full) * (left + 1)


def quantize(x: torch.Tensor, fmha=None):
    """Per-tensor FP8 e4m3: ``(x_fp8, descale float32 [1])``.

    Uses ``torch_fmha.quantize_fp8`` when the package provides it.
    """
    if fmha is not None and hasattr(fmha, "quantize_fp8"):
        try:
            x8, d = fmha.quantize_fp8(x, granularity="tensor")
            return x8, d.reshape(-1)[:1].float().contiguous()
        except Exception:
            pass
    amax = x.abs().amax().float().clamp_min(1e-12)
    descale = (amax / FP8_MAX).reshape(1)
    x8 = (x.float() / descale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return x8, descale


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        scale: float, causal: bool, chunk: int = 2048) -> torch.Tensor:
    """float64 attention, ``[B, S, H, D]`` inputs, chunked over query rows.

    Causal is bottom-right aligned (``Sq == Sk`` here, so also top-left).
    """
    B, Sq, H, D = q.shape
    Sk = k.shape[1]
    out = torch.empty(B, Sq, H, v.shape[-1], dtype=torch.float64, device=q.device)
    for b in range(B):
        kb, vb = k[b].double().transpose(0, 1), v[b].double().transpose(0, 1)  # [H, Sk, D]
        for s0 in range(0, Sq, chunk):
            s1 = min(Sq, s0 + chunk)
            qb = q[b, s0:s1].double().transpose(0, 1)  # [H, c, D]
            s = torch.matmul(qb, kb.transpose(1, 2)) * scale
            if causal:
                i = torch.arange(s0, s1, device=q.device)[:, None] + (Sk - Sq)
                s.masked_fill_(torch.arange(Sk, device=q.device)[None, :] > i, float("-inf"))
            out[b, s0:s1] = torch.matmul(torch.softmax(s, dim=-1), vb).transpose(0, 1)
    return out


def error_stats(out: torch.Tensor, ref: torch.Tensor) -> Dict[str, float]:
    """RMSE, max abs error and the reference's RMS (for scale)."""
    d = out.double() - ref
    return {"rmse": d.pow(2).mean().sqrt().item(), "max_abs": d.abs().max().item(),
            "ref_rms": ref.pow(2).mean().sqrt().item()}
