"""Fake (meta) implementations of the torch_fmha ops.

Registered on the C++ ops with ``torch.library.register_fake``; they run the
same checks as the C++ kernels (``checks.py``) and return outputs with the
real kernels' sizes, strides, dtypes and devices (like the schemas they take no
default values, csrc/ops/registration.cpp: every call passes every argument):

    fwd         out [B, Sq, H, D] contiguous, lse [B, H, Sq] contiguous
    fp8_fwd     fwd's outputs; quantize_qkv's checks and then fwd's, as the
                composite C++ kernel runs them (csrc/ops/fp8_fwd_op.cpp)
    fp8_varlen_fwd  varlen_fwd's outputs, the same way
    varlen_fwd  out [Tq, H, D] contiguous,    lse [H, Tq] contiguous
    *bwd        dq/dk/dv contiguous, shaped like q/k/v; dsinks like sinks
                (or [0] in lse's dtype without sinks)
"""

from __future__ import annotations

import torch

from . import checks, quantize


def _fwd_outputs(q, p, out_shape, lse_shape):
    out = q.new_empty(out_shape, dtype=p.out_dtype)
    lse = q.new_empty(lse_shape, dtype=checks.lse_dtype(q))
    return out, lse


def fwd_fake(q, k, v, softmax_scale, causal, window_left, window_right,
             q_descale, k_descale, v_descale, out_scale, out_dtype,
             softcap, sinks):
    p = checks.check_fwd("torch_fmha.fwd", q, k, v, softmax_scale, causal, window_left, window_right,
                         q_descale, k_descale, v_descale, out_scale, out_dtype, softcap, sinks)
    return _fwd_outputs(q, p, (p.batch, p.seqlen_q, p.heads_q, p.head_dim), (p.batch, p.heads_q, p.seqlen_q))


def fp8_fwd_fake(q, k, v, per_head, qk_rotated, softmax_scale, causal, window_left, window_right,
                 out_scale, out_dtype, softcap, sinks):
    op = "torch_fmha.fp8_fwd"
    checks._check_rank(op, "q", q, 4, "[batch, seqlen_q, heads, head_dim]")
    checks._check_rank(op, "k", k, 4, "[batch, seqlen_k, heads_kv, head_dim]")
    checks._check_rank(op, "v", v, 4, "[batch, seqlen_k, heads_kv, head_dim]")
    q8, k8, v8, descales = quantize.quantize_qkv_fake(q, k, v, per_head, qk_rotated, None, None,
                                                      v.size(-1) in (128, 256))  # packs_v
    return fwd_fake(q8, k8, v8, softmax_scale, causal, window_left, window_right, descales[0], descales[1],
                    descales[2], out_scale, out_dtype, softcap, sinks)


def fp8_varlen_fwd_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, per_head,
                        qk_rotated, softmax_scale, causal, window_left, window_right, out_scale, out_dtype,
                        softcap, sinks):
    op = "torch_fmha.fp8_varlen_fwd"
    checks._check_rank(op, "q", q, 3, "[total_q, heads, head_dim]")
    checks._check_rank(op, "k", k, 3, "[total_k, heads_kv, head_dim]")
    checks._check_rank(op, "v", v, 3, "[total_k, heads_kv, head_dim]")
    q8, k8, v8, descales = quantize.quantize_qkv_fake(
        q, k, v, per_head, qk_rotated, cu_seqlens_q if per_head else None, cu_seqlens_k if per_head else None,
        False)
    return varlen_fwd_fake(q8, k8, v8, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                           causal, window_left, window_right, descales[0], descales[1], descales[2], out_scale,
                           out_dtype, softcap, sinks, None, None)


def varlen_fwd_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                    softmax_scale, causal, window_left, window_right,
                    q_descale, k_descale, v_descale, out_scale, out_dtype,
                    softcap, sinks, seqused_k, page_table):
    p = checks.check_varlen_fwd("torch_fmha.varlen_fwd", q, k, v, cu_seqlens_q, cu_seqlens_k,
                                max_seqlen_q, max_seqlen_k, softmax_scale, causal, window_left,
                                window_right, q_descale, k_descale, v_descale, out_scale, out_dtype,
                                softcap, sinks, seqused_k, page_table)
    return _fwd_outputs(q, p, (p.seqlen_q, p.heads_q, p.head_dim), (p.heads_q, p.seqlen_q))


def _grads(q, k, v, lse, sinks):
    dsinks = sinks.new_empty(sinks.shape) if sinks is not None else lse.new_empty((0,))
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), dsinks)


def bwd_fake(dout, q, k, v, out, lse, dlse, softmax_scale, causal,
             window_left, window_right, softcap, sinks):
    op = "torch_fmha.bwd"
    checks.check_fwd(op, q, k, v, softmax_scale, causal, window_left, window_right,
                     softcap=softcap, sinks=sinks)
    checks.check_bwd(op, dout, q, k, v, out, lse, dlse)
    return _grads(q, k, v, lse, sinks)


def varlen_bwd_fake(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, dlse,
                    max_seqlen_q, max_seqlen_k, softmax_scale, causal,
                    window_left, window_right, softcap, sinks):
    op = "torch_fmha.varlen_bwd"
    checks.check_varlen_fwd(op, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                            softmax_scale, causal, window_left, window_right,
                            softcap=softcap, sinks=sinks)
    checks.check_bwd(op, dout, q, k, v, out, lse, dlse)
    return _grads(q, k, v, lse, sinks)


def register() -> None:
    """Attach the fake kernels to the C++ ops (idempotent per process)."""
    for name, fn in (("fwd", fwd_fake), ("fp8_fwd", fp8_fwd_fake), ("varlen_fwd", varlen_fwd_fake),
                     ("fp8_varlen_fwd", fp8_varlen_fwd_fake),
                     ("bwd", bwd_fake), ("varlen_bwd", varlen_bwd_fake)):
        torch.library.register_fake(f"torch_fmha::{name}", fn)
