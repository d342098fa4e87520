"""The user-facing functions. Thin: every check lives in the ops.

Argument names follow FlashAttention-3's ``flash_attn_func`` /
``flash_attn_varlen_func``, so switching is a rename of the import.

Masking convention: ``causal=True`` is aligned to the bottom-right corner of
the score matrix when ``Sq != Sk`` (query row i sees key j iff
``j <= i + Sk - Sq``), as in FlashAttention. PyTorch's
``scaled_dot_product_attention(is_causal=True)`` is aligned top-left
(``j <= i``); the two agree only when ``Sq == Sk``.
"""

from __future__ import annotations

from typing import Optional

import torch

# quantize_fp8 and FP8_MAX live in torch_fmha/quantize.py since 2026-11-27; kept
# importable from here for code written against the earlier layout.
from .quantize import FP8_MAX, quantize_fp8  # noqa: F401

_UNBOUNDED = (-1, -1)


def _window(window_size) -> tuple[int, int]:
    # The default needs no checks (eager per-call time). Not while tracing: Dynamo
    # would guard on the global, and its checks below run once per compile anyway.
    if not torch.compiler.is_compiling() and window_size is _UNBOUNDED:
        return _UNBOUNDED
    if not (isinstance(window_size, (tuple, list)) and len(window_size) == 2
            and isinstance(window_size[0], int) and isinstance(window_size[1], int)):
        raise TypeError(f"window_size must be a pair of ints (left, right), got {window_size!r}")
    return int(window_size[0]), int(window_size[1])


def _op_out_dtype(q: torch.Tensor, out_dtype: Optional[torch.dtype]) -> Optional[torch.dtype]:
    """``out_dtype`` as passed to the op: None when it is the default for q's dtype.

    The op computes the same default (meta/checks.py), so the result is unchanged;
    what changes is that a graph exported with the default dtype carries no
    ``ScalarType`` argument. AOTInductor's proxy executor in torch 2.11 reads
    ScalarType arguments of custom ops with the serialization enum's numbering
    (bfloat16 arrives as QUInt8: pytorch/pytorch#169157, fixed by #173562, in
    torch 2.13), and the op then rejects the dtype. Explicit non-default dtypes
    still reach it and, on such a torch, fail with that error, never silently.
    """
    if out_dtype is None:
        return None
    default = torch.bfloat16 if q.dtype == torch.float8_e4m3fn else q.dtype
    return None if out_dtype == default else out_dtype


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
              softmax_scale: Optional[float] = None, causal: bool = False,
              window_size: tuple[int, int] = _UNBOUNDED,
              q_descale: Optional[torch.Tensor] = None, k_descale: Optional[torch.Tensor] = None,
              v_descale: Optional[torch.Tensor] = None, out_dtype: Optional[torch.dtype] = None,
              out_scale: Optional[torch.Tensor] = None, return_lse: bool = False):
    """Multi-head attention over a dense batch.

    Args:
        q: ``[B, Sq, H, D]``; k, v: ``[B, Sk, Hkv, D]`` with ``H % Hkv == 0``
            (GQA/MQA). One dtype for all three: ``float8_e4m3fn`` (the fast
            path on Hopper), ``bfloat16``, ``float16`` (``float32``/``float64``
            on CPU, for testing). D in {64, 128, 256}. The last dim must be
            contiguous; other strides are honoured.
        softmax_scale: multiplies ``q @ k^T``; default ``1 / sqrt(D)``.
        causal: bottom-right aligned causal mask (see module doc); equal to
            ``window_size=(-1, 0)``.
        window_size: ``(left, right)`` sliding window, ``-1`` = unbounded.
            Query i sees key j iff ``i + Sk - Sq - left <= j <= i + Sk - Sq + right``.
        q_descale, k_descale, v_descale: FP8 only. float32 ``[1]`` or
            ``[B, Hkv]``. Scores use ``softmax_scale * q_descale * k_descale``;
            the output is multiplied by ``v_descale``.
        out_dtype: FP8 inputs: ``bfloat16`` (default), ``float16`` or
            ``float8_e4m3fn``; other inputs: the input dtype.
        out_scale: float32 ``[1]``, required for FP8 output:
            ``out = saturate(o / out_scale)``.
        return_lse: also return the log-sum-exp of the scaled scores,
            float32 ``[B, H, Sq]``, natural log.

    A query row that sees no key (``Sk == 0``, or masked out entirely) gives
    ``out = 0`` and ``lse = -inf``.

    Returns:
        ``out [B, Sq, H, D]``, or ``(out, lse)`` when ``return_lse``.
    """
    left, right = _window(window_size)
    out_dtype = _op_out_dtype(q, out_dtype)
    # Positional: kwargs parsing costs ~3 us a call (schema order pinned by a test). The
    # op's autograd kernel is C++ (csrc/ops/autograd.cpp): without a gradient to record
    # it redispatches at once, so there is no cheaper path to take here.
    out, lse = torch.ops.torch_fmha.fwd.default(
        q, k, v, softmax_scale, causal, left, right, q_descale, k_descale, v_descale,
        out_scale, out_dtype)
    return (out, lse) if return_lse else out


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                     max_seqlen_q: Optional[int] = None, max_seqlen_k: Optional[int] = None, *,
                     softmax_scale: Optional[float] = None, causal: bool = False,
                     window_size: tuple[int, int] = _UNBOUNDED,
                     q_descale: Optional[torch.Tensor] = None, k_descale: Optional[torch.Tensor] = None,
                     v_descale: Optional[torch.Tensor] = None, out_dtype: Optional[torch.dtype] = None,
                     out_scale: Optional[torch.Tensor] = None, return_lse: bool = False):
    """Multi-head attention over a ragged (packed) batch.

    Args:
        q: ``[Tq, H, D]``; k, v: ``[Tk, Hkv, D]``. Sequence b owns rows
            ``cu_seqlens_q[b]:cu_seqlens_q[b+1]`` of q and
            ``cu_seqlens_k[b]:cu_seqlens_k[b+1]`` of k and v.
        cu_seqlens_q, cu_seqlens_k: int32 ``[B + 1]``, starting at 0,
            non-decreasing, ending at Tq / Tk. Sequences may be empty.
        max_seqlen_q, max_seqlen_k: optional hints (never needed for
            correctness; the ops never read cu_seqlens on the host).
        Descales are ``[1]`` or ``[B, Hkv]``. Masks apply per sequence
        (causal bottom-right per sequence). Everything else as in
        :func:`attention`.

    Returns:
        ``out [Tq, H, D]``, or ``(out, lse)`` with lse float32 ``[H, Tq]``.
    """
    left, right = _window(window_size)
    out_dtype = _op_out_dtype(q, out_dtype)
    out, lse = torch.ops.torch_fmha.varlen_fwd.default(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
        causal, left, right, q_descale, k_descale, v_descale, out_scale, out_dtype)
    return (out, lse) if return_lse else out
