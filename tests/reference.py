"""The float64 oracle: attention on the dequantized inputs.

Independent of the C++ code: plain PyTorch float64 math with the mask written
out from docs/DESIGN.md section 1. Also the tolerance rule of the project
(FlashAttention's): ``max|out - ref| <= 2 * max|emul - ref| + eps`` where
``emul`` repeats the kernel's rounding steps.
"""

from __future__ import annotations

import math

import torch

FP8 = torch.float8_e4m3fn


def dequantize(x: torch.Tensor, descale, heads_axis: int) -> torch.Tensor:
    """x (any dtype) -> float64, times a [1] or [B, Hkv] descale."""
    x = x.double()
    if descale is None:
        return x
    d = descale.double()
    if d.numel() == 1:
        return x * d.reshape(())
    # [B, Hkv] -> broadcast over [B, S, Hkv, D]
    return x * d[:, None, :, None]


def _expand_groups(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, S, Hkv, D] -> [B, S, H, D] (each kv head serves H/Hkv query heads)."""
    return x.repeat_interleave(heads // x.size(2), dim=2)


def visible(sq: int, sk: int, window_left: int, window_right: int, device=None) -> torch.Tensor:
    """[Sq, Sk] bool: key j visible from query i (bottom-right aligned)."""
    i = torch.arange(sq, device=device)[:, None]
    j = torch.arange(sk, device=device)[None, :]
    diag = i + (sk - sq)
    ok = torch.ones(sq, sk, dtype=torch.bool, device=device)
    if window_left >= 0:
        ok &= j >= diag - window_left
    if window_right >= 0:
        ok &= j <= diag + window_right
    return ok


def attention_ref(q, k, v, *, softmax_scale=None, causal=False, window_size=(-1, -1),
                  q_descale=None, k_descale=None, v_descale=None):
    """Dense reference. q [B, Sq, H, D], k/v [B, Sk, Hkv, D] ->
    (out float64 [B, Sq, H, D], lse float64 [B, H, Sq])."""
    b, sq, h, d = q.shape
    sk = k.size(1)
    scale = 1.0 / math.sqrt(d) if softmax_scale is None else softmax_scale
    left, right = window_size
    if causal:
        right = 0
    if q_descale is not None and q_descale.numel() > 1:  # [B, Hkv] -> [B, H]
        q_descale = q_descale.repeat_interleave(h // k.size(2), dim=1)
    qf = dequantize(q, q_descale, 2)
    kf = _expand_groups(dequantize(k, k_descale, 2), h)
    vf = _expand_groups(dequantize(v, v_descale, 2), h)
    s = torch.einsum("bqhd,bkhd->bhqk", qf, kf) * scale  # [B, H, Sq, Sk]
    ok = visible(sq, sk, left, right, q.device)
    s = s.masked_fill(~ok, -math.inf)
    lse = torch.logsumexp(s, dim=-1) if sk > 0 else torch.full((b, h, sq), -math.inf, dtype=torch.float64, device=q.device)
    p = torch.exp(s - lse[..., None])
    p = torch.where(torch.isinf(lse)[..., None], torch.zeros_like(p), p)  # empty rows: P = 0
    out = torch.einsum("bhqk,bkhd->bqhd", p, vf)
    return out, lse


def varlen_attention_ref(q, k, v, cu_seqlens_q, cu_seqlens_k, *, q_descale=None, k_descale=None,
                         v_descale=None, **kw):
    """Packed reference: q [Tq, H, D] -> (out [Tq, H, D], lse [H, Tq]) in float64."""
    cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    out = torch.zeros(q.shape, dtype=torch.float64, device=q.device)
    lse = torch.full((q.size(1), q.size(0)), -math.inf, dtype=torch.float64, device=q.device)

    def seq(t, b):  # per-(batch, kv head) scales: keep row b
        return t if t is None or t.numel() == 1 else t[b:b + 1]

    for b in range(len(cq) - 1):
        if cq[b + 1] == cq[b]:
            continue
        o, l = attention_ref(
            q[None, cq[b]:cq[b + 1]], k[None, ck[b]:ck[b + 1]], v[None, ck[b]:ck[b + 1]],
            q_descale=seq(q_descale, b), k_descale=seq(k_descale, b), v_descale=seq(v_descale, b),
            **kw)
        out[cq[b]:cq[b + 1]] = o[0]
        lse[:, cq[b]:cq[b + 1]] = l[0]
    return out, lse


def round_output(ref_out: torch.Tensor, out_dtype: torch.dtype, out_scale=None) -> torch.Tensor:
    """The reference output after the kernel's last rounding step (to out_dtype)."""
    if out_dtype == FP8:
        s = out_scale.double().reshape(())
        return (ref_out / s).clamp(-448, 448).to(FP8).double() * s
    return ref_out.to(out_dtype).double()


def output_as_float64(out: torch.Tensor, out_scale=None) -> torch.Tensor:
    if out.dtype == FP8:
        return out.double() * out_scale.double().reshape(())
    return out.double()


def assert_close_by_rule(out, ref, emul, *, eps: float, what: str = "out") -> dict:
    """The tolerance rule: max|out-ref| <= 2*max|emul-ref| + eps. Returns errors."""
    assert not torch.isnan(out).any(), f"{what}: NaN in output"
    err = (out - ref).abs().max().item() if out.numel() else 0.0
    emul_err = (emul - ref).abs().max().item() if out.numel() else 0.0
    rmse = (out - ref).pow(2).mean().sqrt().item() if out.numel() else 0.0
    bound = 2 * emul_err + eps
    assert err <= bound, f"{what}: max|out-ref| = {err:.3e} > 2*{emul_err:.3e} + {eps:g} (rmse {rmse:.3e})"
    return {"max_err": err, "emul_err": emul_err, "rmse": rmse}
