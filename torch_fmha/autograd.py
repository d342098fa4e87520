"""Autograd of the forward ops, registered on the C++ ops.

The backward recomputes attention probabilities from q, k and the saved lse
and calls ``torch_fmha::bwd`` / ``varlen_bwd``. FP8 inputs have no backward:
the backward op raises a clear error for them. The gradient of lse is
supported too (it enters as ``dlse``), so a loss that uses lse is right.

``inputs`` below are the ops' arguments in schema order
(csrc/ops/registration.cpp):
    fwd:        q, k, v, softmax_scale, causal, window_left, window_right, <descales/out>
    varlen_fwd: q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                causal, window_left, window_right, <descales/out>
"""

from __future__ import annotations

import torch

_FWD_ARGS = 12
_VARLEN_ARGS = 16


def _setup_fwd(ctx, inputs, output):
    q, k, v, softmax_scale, causal, window_left, window_right = inputs[:7]
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.options = (softmax_scale, causal, window_left, window_right)


def _backward_fwd(ctx, grad_out, grad_lse):
    q, k, v, out, lse = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    dq, dk, dv = torch.ops.torch_fmha.bwd(grad_out, q, k, v, out, lse, grad_lse, *ctx.options)
    return (dq, dk, dv) + (None,) * (_FWD_ARGS - 3)


def _setup_varlen(ctx, inputs, output):
    q, k, v, cu_q, cu_k = inputs[:5]
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)
    ctx.options = tuple(inputs[5:11])  # max_seqlen_q/k, softmax_scale, causal, windows


def _backward_varlen(ctx, grad_out, grad_lse):
    q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    dq, dk, dv = torch.ops.torch_fmha.varlen_bwd(grad_out, q, k, v, out, lse, cu_q, cu_k,
                                                 grad_lse, *ctx.options)
    return (dq, dk, dv) + (None,) * (_VARLEN_ARGS - 3)


def register() -> None:
    torch.library.register_autograd("torch_fmha::fwd", _backward_fwd, setup_context=_setup_fwd)
    torch.library.register_autograd("torch_fmha::varlen_fwd", _backward_varlen,
                                    setup_context=_setup_varlen)
