"""What the SM90 FP8 kernel's rounding does, repeated in float64 PyTorch.

The kernel keeps P = exp(s - rowmax) * 2^8 in [0, 256], rounds it to e4m3 for
the P.V GEMM, and divides by the unrounded row sum; the output is rounded to
the output dtype last (``reference.round_output``). The tolerance rule
compares the kernel with the oracle against this emulation's own error.

Soft-capping: the kernel computes t = tanh.approx(fp32(s * softcap_mul)) on its
float32 score s, softcap_mul = fp32(score_scale / softcap) (softmax.cuh
apply_softcap, producer.cuh score_scales), and the softmax sees softcap * t.
On CUDA the emulation runs that very instruction on the same float32 argument
(tests/mufu_tanh.py), from the float64 q.k rounded to float32: bit for bit the
kernel's argument wherever the tensor cores compute q.k exactly (integer
inputs, inputs.integer_score_inputs), within their accumulation error elsewhere.
``KernelEmulation.tanh_lse_slack`` is how far tanh.approx's documented error
(mufu_tanh.TANH_APPROX_REL_ERROR) can move each row's LSE away from the exact
tanh of the oracle.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from mufu_tanh import TANH_APPROX_REL_ERROR, tanh_approx
from reference import FP8, _expand_groups, sequence_keys, visible

P_OFFSET = 256.0  # 2^kMaxOffset, csrc/kernel/softmax.cuh


@dataclasses.dataclass
class KernelEmulation:
    out: torch.Tensor  # float64, the layout of the op's out (before the output rounding)
    lse: torch.Tensor  # float64, the layout of the op's lse; -inf / the sink where no key is seen
    # float64, lse's layout: max over |ds_j| <= softcap * eps * |tanh(x_j / softcap)| of
    # |log sum_j w_j e^(ds_j)| = log sum_j w_j e^(softcap * eps * |t_j|) (w: the oracle's
    # softmax weights, the sink's included with ds = 0; Jensen bounds the negative side by the
    # same value): the LSE error tanh.approx alone can cause. 0 without softcap.
    tanh_lse_slack: torch.Tensor


def _per_query_head(descale, h, hkv):
    """[1] or [B, Hkv] -> broadcastable over [B, H, Sq, D]."""
    if descale.numel() == 1:
        return descale.double().reshape(())
    return descale.double().repeat_interleave(h // hkv, dim=1)[:, :, None, None]


def _per_query_head_f32(descale, h, hkv):
    if descale.numel() == 1:
        return descale.float().reshape(())
    return descale.float().repeat_interleave(h // hkv, dim=1)[:, :, None, None]


def _kernel_tanh(qk, scale, q_descale, k_descale, softcap, h, hkv):
    """The kernel's t = tanh.approx(fp32(s * softcap_mul)) -> float64, from the float64 q.k [B, H, Sq, Sk].
    score_scale = fp32(fp32(softmax_scale * q_descale) * k_descale) and softcap_mul =
    fp32(score_scale / softcap) as the producer computes them (IEEE float32 division: a 0-dim
    tensor divisor, since torch turns x / <Python float> into x * (1 / c) on CUDA)."""
    f32 = dict(dtype=torch.float32, device=qk.device)
    score_scale = (torch.tensor(scale, **f32) * _per_query_head_f32(q_descale, h, hkv).to(qk.device)
                   ) * _per_query_head_f32(k_descale, h, hkv).to(qk.device)
    softcap_mul = score_scale / torch.tensor(softcap, **f32)
    arg = qk.float() * softcap_mul
    # Off CUDA (only to check the emulation itself) the exact tanh of the same argument.
    return (tanh_approx(arg) if arg.is_cuda else torch.tanh(arg)).double()


def emulate_fp8_attention(q, k, v, *, q_descale, k_descale, v_descale, causal=False,
                          window_size=(-1, -1), softmax_scale=None, softcap=0.0,
                          sinks=None) -> KernelEmulation:
    """The kernel's rounding steps in float64: P = exp(s - m) * 256 rounded to e4m3, with the
    serving features' score options (issue 14): the kernel's cap on the scaled scores, the sink in
    the row max and in the (unrounded) row sum. q [B, Sq, H, D], k/v [B, Sk, Hkv, D] FP8 ->
    out [B, Sq, H, D], lse and tanh_lse_slack [B, H, Sq]."""
    b, sq, h, d = q.shape
    sk, hkv = k.size(1), k.size(2)
    scale = 1 / math.sqrt(d) if softmax_scale is None else softmax_scale
    left, right = window_size
    if causal:
        right = 0
    f64 = dict(dtype=torch.float64, device=q.device)
    sink = None if sinks is None else sinks.double().to(q.device)[None, :, None, None]  # [1, H, 1, 1]
    no_key_lse = (torch.full((b, h, sq), -math.inf, **f64) if sink is None
                  else sink[..., 0].expand(b, h, sq).clone())
    if sk == 0:
        return KernelEmulation(torch.zeros(b, sq, h, d, **f64), no_key_lse, torch.zeros(b, h, sq, **f64))
    qh = q.double().transpose(1, 2)                                   # [B, H, Sq, D]
    kh = _expand_groups(k.double(), h).transpose(1, 2)                # [B, H, Sk, D]
    vh = _expand_groups(v.double(), h).transpose(1, 2)                # [B, H, Sk, D]
    qk = qh @ kh.transpose(-1, -2)                                    # [B, H, Sq, Sk]
    x = qk * (scale * _per_query_head(q_descale, h, hkv) * _per_query_head(k_descale, h, hkv))
    ok = visible(sq, sk, left, right, q.device)
    if softcap:
        s = softcap * _kernel_tanh(qk, scale, q_descale, k_descale, softcap, h, hkv)
    else:
        s = x
    s = s.masked_fill(~ok, -math.inf)
    m = s.amax(-1, keepdim=True)
    if sink is not None:
        m = torch.maximum(m, sink)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    p = torch.exp(s - m) * P_OFFSET                                   # [0, 256]
    l = p.sum(-1, keepdim=True)                                       # [B, H, Sq, 1]
    p_sink = torch.exp(sink - m) * P_OFFSET if sink is not None else torch.zeros_like(l)
    l = l + p_sink
    o = (p.float().to(FP8).double() @ vh) / l.clamp_min(1e-300)       # [B, H, Sq, D]
    o = torch.where(l > 0, o, torch.zeros_like(o)) * _per_query_head(v_descale, h, hkv)
    seen = ok.any(-1)[None, None, :]                                  # [1, 1, Sq]
    lse = torch.where(seen, (m + torch.log(l / P_OFFSET))[..., 0], no_key_lse)
    slack = torch.zeros(b, h, sq, **f64)
    if softcap:  # the oracle's weights (exact tanh) and each key's worst tanh.approx error
        t = torch.tanh(x / softcap)
        c = (softcap * t).masked_fill(~ok, -math.inf)
        mc = c.amax(-1, keepdim=True)
        if sink is not None:
            mc = torch.maximum(mc, sink)
        mc = torch.where(torch.isinf(mc), torch.zeros_like(mc), mc)
        w = torch.exp(c - mc)
        w_sink = torch.exp(sink - mc) if sink is not None else torch.zeros_like(mc)
        grown = (w * torch.exp(softcap * TANH_APPROX_REL_ERROR * t.abs())).sum(-1, keepdim=True) + w_sink
        total = w.sum(-1, keepdim=True) + w_sink
        slack = torch.where(seen, torch.log(grown / total)[..., 0], slack)
    return KernelEmulation(o.transpose(1, 2), lse, slack)


def emulate_fp8_kernel(q, k, v, **kw):
    """emulate_fp8_attention's output: float64 [B, Sq, H, D] (before out rounding)."""
    return emulate_fp8_attention(q, k, v, **kw).out


def emulate_varlen_attention(q, k, v, cu_q, *, q_descale, k_descale, v_descale, keys, **kw) -> KernelEmulation:
    """Per-sequence emulate_fp8_attention -> out float64 [Tq, H, D], lse and tanh_lse_slack [H, Tq];
    rows without keys are out 0, lse -inf (the sink). Sequence b's keys come from
    reference.sequence_keys(**keys) (packed, seqused_k or paged; keys from reference.sequence_key_args)."""
    tq, h = q.size(0), q.size(1)
    f64 = dict(dtype=torch.float64, device=q.device)
    out = torch.zeros(q.shape, **f64)
    sinks = kw.get("sinks")
    lse = (torch.full((h, tq), -math.inf, **f64) if sinks is None
           else sinks.double().to(q.device)[:, None].expand(h, tq).clone())
    slack = torch.zeros(h, tq, **f64)
    cq = cu_q.tolist()
    for b in range(len(cq) - 1):
        if cq[b + 1] == cq[b]:
            continue
        kb, vb = sequence_keys(k, b, **keys), sequence_keys(v, b, **keys)
        if kb.size(0) == 0:
            continue
        sel = lambda t: t if t.numel() == 1 else t[b:b + 1]  # noqa: E731
        e = emulate_fp8_attention(q[None, cq[b]:cq[b + 1]], kb[None], vb[None], q_descale=sel(q_descale),
                                  k_descale=sel(k_descale), v_descale=sel(v_descale), **kw)
        out[cq[b]:cq[b + 1]] = e.out[0]
        lse[:, cq[b]:cq[b + 1]] = e.lse[0]
        slack[:, cq[b]:cq[b + 1]] = e.tanh_lse_slack[0]
    return KernelEmulation(out, lse, slack)


def emulate_varlen(q, k, v, cu_q, **kw):
    """emulate_varlen_attention's output: float64 [Tq, H, D]; rows without keys are 0."""
    return emulate_varlen_attention(q, k, v, cu_q, **kw).out
