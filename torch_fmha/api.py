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
from .quantize import _check_qkv, _rotate_qk

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
    what changes is that a graph exported with the default dtype carries None,
    not a ``ScalarType`` value. AOTInductor's proxy executor in torch 2.11 reads
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
              out_scale: Optional[torch.Tensor] = None, return_lse: bool = False,
              softcap: Optional[float] = None, sinks: Optional[torch.Tensor] = None):
    """Multi-head attention over a dense batch.

    Args:
        q: ``[B, Sq, H, D]``; k, v: ``[B, Sk, Hkv, D]`` with ``H % Hkv == 0``
            (GQA/MQA). One dtype for all three: ``float8_e4m3fn`` (the fast
            path on Hopper), ``bfloat16``, ``float16`` (``float32``/``float64``
            on CPU, for testing). D in {64, 128, 256}. The last dim must be
            contiguous; other strides are honoured. v may instead be a
            *packed v*, FP8 ``[B, Hkv, D, ceil(Sk / 16), 16]``, what
            :func:`quantize_qkv` returns for dense inputs at D = 128 / 256
            (``pack_v``): keys contiguous, each 16 in the order the kernel's
            P V product reads them, and the D rows in the order its output
            registers hold the columns, so the CUDA kernel loads it without
            transposing V and stores the output without exchanging columns
            (:func:`unpack_v` gives the ``[B, Sk, Hkv, D]`` values).
            The slots of the keys ``>= Sk`` in its last group must be zero
            (``quantize_qkv`` writes them so): the CUDA kernel reads them with
            P = 0, and 0 x NaN is NaN (the CPU op drops them).
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
        softcap: logit soft-capping (Gemma-2, Grok; FlashAttention's
            convention), ``0`` or None = off (the default is None rather than
            FlashAttention's 0.0: a float default would be a symbolic input
            under ``torch.compile(dynamic=True)`` and cost a second trace). With ``x = softmax_scale * q_descale *
            k_descale * q.k`` the softmax sees ``softcap * tanh(x / softcap)``.
            Must be finite and ``>= 0``.
        sinks: attention sinks (gpt-oss), float32 ``[H]`` (float64 for
            float64 inputs), one logit per query head. The sink joins every
            row's softmax denominator and adds nothing to the output:
            ``out = sum_j e^(s_j) v_j / (sum_j e^(s_j) + e^sink)`` and
            ``lse = log(sum_j e^(s_j) + e^sink)``. It is in the units of the
            soft-capped scores ``s`` and is **not** soft-capped itself (it is
            already a logit): softcap acts on the scores, then the sink joins.
            ``-inf`` is the same as no sink. Differentiable (CPU backward).

    A query row that sees no key (``Sk == 0``, or masked out entirely) gives
    ``out = 0`` and ``lse = -inf`` (``lse = sink`` with sinks).

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
        out_scale, out_dtype, 0.0 if softcap is None else softcap, sinks)
    return (out, lse) if return_lse else out


def _fp8_op_out_dtype(q: torch.Tensor, out_dtype: Optional[torch.dtype]) -> Optional[torch.dtype]:
    """fp8_attention's output dtype as its op takes it: q's dtype by default for fp16 (bf16
    otherwise), and None for bf16, the op's own default (see _op_out_dtype)."""
    if out_dtype is None and q.dtype == torch.float16:
        return torch.float16
    return None if out_dtype is None or out_dtype == torch.bfloat16 else out_dtype


def fp8_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                  granularity: str = "head", rotate: bool = False,
                  softmax_scale: Optional[float] = None, causal: bool = False,
                  window_size: tuple[int, int] = _UNBOUNDED, out_dtype: Optional[torch.dtype] = None,
                  out_scale: Optional[torch.Tensor] = None, return_lse: bool = False,
                  softcap: Optional[float] = None, sinks: Optional[torch.Tensor] = None):
    """FP8 attention on high-precision inputs in one call: :func:`quantize_qkv`, then :func:`attention`.

    The same result, bit for bit, as::

        qkv = torch_fmha.quantize_qkv(q, k, v, granularity, rotate)
        out = torch_fmha.attention(*qkv.tensors, **qkv.descales, out_dtype=..., ...)

    but one op (``torch.ops.torch_fmha.fp8_fwd``) instead of two: in a
    ``torch.compile``'d model that is one call in the generated code with two
    outputs, instead of two calls, six outputs and three descale views, and the
    inner calls skip their autograd checks. The quantized tensors stay inside
    the op (v is packed for the kernel at D = 128 / 256 without showing up in a
    trace). Inference only: it runs on tensors that require grad, but a
    backward through it raises (rounding to FP8 has no gradient).

    Args:
        q: ``[B, Sq, H, D]``; k, v: ``[B, Sk, Hkv, D]``, bf16 / fp16 (fp32 /
            fp64 too, the CPU op's reference dtypes), ``H % Hkv == 0``,
            D in {64, 128, 256} on CUDA.
        granularity, rotate: as for :func:`quantize_qkv` (scales per (batch,
            KV head) by default; ``rotate`` applies the Hadamard rotation to q
            and k first, two matrix products outside the op).
        out_dtype: q's dtype by default when that is bf16 or fp16, else
            bf16; ``float8_e4m3fn`` with ``out_scale``.
        softmax_scale, causal, window_size, out_scale, return_lse, softcap,
            sinks: as for :func:`attention`.

    Errors are those of :func:`quantize_qkv` (its argument checks, then the
    quantize op's), then those of :func:`attention`, each naming the argument.

    Returns:
        ``out [B, Sq, H, D]``, or ``(out, lse)`` when ``return_lse``.
    """
    if isinstance(q, torch.Tensor) and q.dim() != 4:
        raise ValueError(f"fp8_attention takes dense q [B, Sq, H, D], got shape {list(q.shape)}; for a "
                         f"packed batch use fp8_varlen_attention")
    _check_qkv(q, k, v, granularity, rotate, None, None, None)
    left, right = _window(window_size)
    op_out_dtype = _fp8_op_out_dtype(q, out_dtype)
    if rotate:
        q, k = _rotate_qk(q, k)
    out, lse = torch.ops.torch_fmha.fp8_fwd.default(
        q, k, v, granularity == "head", rotate, softmax_scale, causal, left, right, out_scale,
        op_out_dtype, 0.0 if softcap is None else softcap, sinks)
    return (out, lse) if return_lse else out


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     cu_seqlens_q: torch.Tensor, cu_seqlens_k: Optional[torch.Tensor] = None,
                     max_seqlen_q: Optional[int] = None, max_seqlen_k: Optional[int] = None, *,
                     softmax_scale: Optional[float] = None, causal: bool = False,
                     window_size: tuple[int, int] = _UNBOUNDED,
                     q_descale: Optional[torch.Tensor] = None, k_descale: Optional[torch.Tensor] = None,
                     v_descale: Optional[torch.Tensor] = None, out_dtype: Optional[torch.dtype] = None,
                     out_scale: Optional[torch.Tensor] = None, return_lse: bool = False,
                     softcap: Optional[float] = None, sinks: Optional[torch.Tensor] = None,
                     seqused_k: Optional[torch.Tensor] = None,
                     page_table: Optional[torch.Tensor] = None):
    """Multi-head attention over a ragged (packed) batch, or over a paged KV cache.

    Args:
        q: ``[Tq, H, D]``; k, v: ``[Tk, Hkv, D]``. Sequence b owns rows
            ``cu_seqlens_q[b]:cu_seqlens_q[b+1]`` of q and
            ``cu_seqlens_k[b]:cu_seqlens_k[b+1]`` of k and v.
        cu_seqlens_q, cu_seqlens_k: int32 ``[B + 1]``, starting at 0,
            non-decreasing, ending at Tq / Tk. Sequences may be empty.
            ``cu_seqlens_k`` is None exactly when ``page_table`` is given.
        max_seqlen_q, max_seqlen_k: optional hints (never needed for
            correctness; the ops never read cu_seqlens on the host). A decode
            batch over a paged cache runs faster through
            :func:`attention_with_kvcache` with ``cu_seqlens_q`` and
            ``max_seqlen_q`` (its decode kernel).
        seqused_k: int32 ``[B]``: sequence b uses only its first
            ``seqused_k[b]`` keys (the rest of its slot, or of its pages, is
            never read). Without pages they start at row ``cu_seqlens_k[b]``
            and ``seqused_k[b] <= cu_seqlens_k[b+1] - cu_seqlens_k[b]``.
            Masks (causal, windows) align to ``seqused_k[b]`` keys.
        page_table: paged KV cache (FlashAttention-3's names). k, v are then
            page pools ``[num_pages, page_size, Hkv, D]`` (page_size a power of
            two from 16 to 256), ``page_table`` int32 ``[B, max_pages_per_seq]``
            and ``seqused_k`` is required: key j of sequence b is
            ``k[page_table[b, j // page_size], j % page_size]``. The pages of a
            sequence may lie anywhere in the pool, in any order; entries past
            ``ceil(seqused_k[b] / page_size)`` are never read (they may hold
            anything, e.g. -1). A page id outside ``[0, num_pages)`` among the
            read entries is an error (on CPU always; on CUDA in debug builds,
            since checking costs a host sync).
        softcap, sinks: as in :func:`attention`.
        Descales are ``[1]`` or ``[B, Hkv]``. Masks apply per sequence
        (causal bottom-right per sequence). Everything else as in
        :func:`attention`.

    Backward: through q, k, v and sinks on CPU, as for :func:`attention`;
    there is none through ``seqused_k`` / ``page_table`` (inference features:
    backward raises an error saying so).

    Returns:
        ``out [Tq, H, D]``, or ``(out, lse)`` with lse float32 ``[H, Tq]``.
    """
    left, right = _window(window_size)
    out_dtype = _op_out_dtype(q, out_dtype)
    out, lse = torch.ops.torch_fmha.varlen_fwd.default(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
        causal, left, right, q_descale, k_descale, v_descale, out_scale, out_dtype,
        0.0 if softcap is None else softcap, sinks, seqused_k, page_table)
    return (out, lse) if return_lse else out


def fp8_varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                         max_seqlen_q: Optional[int] = None, max_seqlen_k: Optional[int] = None, *,
                         granularity: str = "head", rotate: bool = False,
                         softmax_scale: Optional[float] = None, causal: bool = False,
                         window_size: tuple[int, int] = _UNBOUNDED, out_dtype: Optional[torch.dtype] = None,
                         out_scale: Optional[torch.Tensor] = None, return_lse: bool = False,
                         softcap: Optional[float] = None, sinks: Optional[torch.Tensor] = None):
    """:func:`fp8_attention` for a ragged batch: ``quantize_qkv(q, k, v, granularity, rotate,
    cu_seqlens_q=, cu_seqlens_k=)`` (per-(sequence, KV head) scales), then
    :func:`varlen_attention`, bit for bit, in one op (``torch.ops.torch_fmha.fp8_varlen_fwd``).

    Args:
        q: ``[Tq, H, D]``; k, v: ``[Tk, Hkv, D]``, bf16 / fp16 (fp32 / fp64 on CPU).
        cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k: as for
            :func:`varlen_attention` (no ``seqused_k`` / ``page_table``: a paged
            or partly used KV cache is quantized when it is written, not here).
        The rest: as for :func:`fp8_attention`.

    Returns:
        ``out [Tq, H, D]``, or ``(out, lse)`` with ``lse [H, Tq]`` when ``return_lse``.
    """
    if isinstance(q, torch.Tensor) and q.dim() != 3:
        raise ValueError(f"fp8_varlen_attention takes packed q [Tq, H, D], got shape {list(q.shape)}; for a "
                         f"dense batch use fp8_attention")
    _check_qkv(q, k, v, granularity, rotate, cu_seqlens_q, cu_seqlens_k, None)
    left, right = _window(window_size)
    op_out_dtype = _fp8_op_out_dtype(q, out_dtype)
    if rotate:
        q, k = _rotate_qk(q, k)
    out, lse = torch.ops.torch_fmha.fp8_varlen_fwd.default(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, granularity == "head", rotate,
        softmax_scale, causal, left, right, out_scale, op_out_dtype, 0.0 if softcap is None else softcap, sinks)
    return (out, lse) if return_lse else out


def attention_with_kvcache(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           cache_seqlens: torch.Tensor, *, page_table: Optional[torch.Tensor] = None,
                           cu_seqlens_q: Optional[torch.Tensor] = None, max_seqlen_q: Optional[int] = None,
                           softmax_scale: Optional[float] = None, causal: bool = False,
                           window_size: tuple[int, int] = _UNBOUNDED, softcap: Optional[float] = None,
                           sinks: Optional[torch.Tensor] = None, q_descale: Optional[torch.Tensor] = None,
                           k_descale: Optional[torch.Tensor] = None, v_descale: Optional[torch.Tensor] = None,
                           out_dtype: Optional[torch.dtype] = None, out_scale: Optional[torch.Tensor] = None,
                           num_splits: int = 0, return_lse: bool = False):
    """Attention of a few query rows against a KV cache (decode; FlashAttention-3's
    ``flash_attn_with_kvcache`` names). docs/DESIGN.md section 1.11.

    Args:
        q: ``[B, Sq, H, D]``, or packed ``[Tq, H, D]`` with ``cu_seqlens_q``
            (int32 ``[B + 1]``). With packed q, ``max_seqlen_q`` picks the path: on
            CUDA an FP8 step with ``max_seqlen_q * H / Hkv <= 64`` runs the decode
            kernel, its grid sized by the hint; without it (or past 64 rows) the
            slower unsplit path (varlen_fwd). The two differ in rounding (P in f16
            on the decode kernel, e4m3 on varlen_fwd's); the hint also sets the
            decode kernel's row tiles, and through them the split count
            ``num_splits=0`` picks. A wrong hint never costs rows: a longer sequence is
            computed whole, by fewer CTAs in turn, so pass the true maximum (a hint
            far below it can be many times slower).
        k_cache, v_cache: ``[B, Smax, Hkv, D]`` (batch stride a whole number of
            rows, >= Smax of them; other strides honoured), or page pools
            ``[num_pages, page_size, Hkv, D]`` with ``page_table`` int32
            ``[B, max_pages_per_seq]`` (as :func:`varlen_attention`).
        cache_seqlens: int32 ``[B]``: sequence b uses keys ``0 .. cache_seqlens[b] - 1``
            of its cache; nothing past them is read. Masks are bottom-right
            against them: query row i of Sq sees key j iff
            ``cache_seqlens[b] - Sq + i - left <= j <= cache_seqlens[b] - Sq + i + right``.
        num_splits: split-KV count; 0 picks it from the shapes (B, heads, the
            cache's capacity, the device's SM count; with packed q also
            ``max_seqlen_q``), never from ``cache_seqlens``. A fixed count gives bitwise-reproducible output.
            Sq > 1 with causal splits the keys every row sees and runs the
            masked rest as one more sequence; a left window with Sq > 1 or
            over a paged cache, and packed q without the decode kernel (above),
            run unsplit (docs/DESIGN.md 1.11).
        Everything else as in :func:`attention` (descales ``[1]`` or ``[B, Hkv]``,
        ``sinks`` float32 ``[H]``, ``softcap``, ``out_dtype`` / ``out_scale``).

    There is no backward (an inference op).

    Returns:
        ``out`` (q's layout), or ``(out, lse)``: lse float32 ``[B, H, Sq]``
        (packed: ``[H, Tq]``).
    """
    left, right = _window(window_size)
    out_dtype = _op_out_dtype(q, out_dtype)
    out, lse = torch.ops.torch_fmha.fwd_kvcache.default(
        q, k_cache, v_cache, cache_seqlens, page_table, cu_seqlens_q, max_seqlen_q, softmax_scale, causal,
        left, right, 0.0 if softcap is None else softcap, sinks, q_descale, k_descale, v_descale, out_scale,
        out_dtype, num_splits)
    return (out, lse) if return_lse else out
