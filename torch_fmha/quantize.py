"""FP8 (``float8_e4m3fn``) quantization for the attention ops.

Two entry points:

* :func:`quantize_qkv` -- one call that turns q, k, v into everything
  :func:`torch_fmha.attention` / :func:`torch_fmha.varlen_attention` need: the
  FP8 tensors and their descales in the shapes the ops take, with GQA grouping
  handled from the head counts, and optionally a Hadamard rotation of q and k
  against outlier channels::

      qkv = torch_fmha.quantize_qkv(q, k, v, rotate=True)
      out = torch_fmha.attention(*qkv.tensors, causal=True, **qkv.descales)

* :func:`quantize_fp8` -- one tensor, the building block.

For dense inputs at head dims 128 and 256, :func:`quantize_qkv` returns v as a
*packed v* (``pack_v``): FP8 ``[B, Hkv, D, ceil(S / 16), 16]``, the layout from
which the SM90 kernel loads V^T by TMA. :func:`torch_fmha.attention` takes it
as is; :func:`unpack_v` turns it back into a standard ``[B, S, Hkv, D]`` v.

The quantization is one op per call, ``torch.ops.torch_fmha.quantize_qkv``
(q, k and v together) or ``quantize_fp8`` (csrc/ops/quantize_op.cpp): on CUDA
two kernels for all three tensors (an amax pass, then scale and cast), on CPU
the same scalar rules (csrc/quantize.h), in a compiled graph one extern call
instead of the half-dozen generated kernels the tensor-op version became.
The optional rotation stays a GEMM in Python before it. No host
synchronisation, no data-dependent Python control flow: it traces under
``torch.compile(fullgraph=True)`` and ``torch.export``. The op's results are
bitwise those of the tensor-op version it replaced (tests/test_quantize_op.py
keeps that version as its reference), except for invalid cu_seqlens, which
the CPU op now rejects as varlen_attention does.

Non-finite inputs (the contract the attention ops follow: a NaN or ±Inf in q,
k or v reaches every output row that attends to it, as in SDPA):

* The absolute maximum that sets a scale is taken over the *finite* elements
  only, so one NaN or Inf does not turn a whole (batch, head)'s descale into
  NaN/Inf (which would silently corrupt or zero every row of that head).
* A NaN element stays NaN in FP8 (e4m3fn has a NaN encoding).
* A ±Inf element becomes NaN in FP8: e4m3fn has no infinity, and saturating it
  to ±448 would hide an overflow upstream behind a plausible finite value.
  Attention then produces NaN in exactly the rows that see it (SDPA itself
  gives NaN for an infinite q or k, and Inf or NaN for an infinite v).
* A tensor (or (batch, head) group) with no finite non-zero element gets the
  smallest normal float32 as its absolute maximum, so its descale is
  finite: tiny / 448, a float32 subnormal (about 2.6e-41), which the kernel
  may flush to 0. Its FP8 values are all 0 (or NaN), so the product is 0
  either way; a zero q / k descale gives uniform weights.
"""

from __future__ import annotations

import math
from typing import Dict, NamedTuple, Optional, Tuple

import torch

FP8_MAX = 448.0  # largest finite float8_e4m3fn

# No function below reads the global FP8_MAX or takes a float argument or
# default: Dynamo turns a global Python float (or a float default) into a
# symbolic float graph input when shapes are dynamic, and the tensorify pass
# then has to specialise it and restart the whole analysis ("Restarting
# analysis due to _tensorify_python_scalars", seconds of extra compile time).
# tests/test_quantize.py guards this.
_FP8 = torch.float8_e4m3fn
_GRANULARITIES = ("tensor", "head")


# ----------------------------------------------------------------------------- helpers ---

def _check_granularity(granularity) -> None:
    if granularity not in _GRANULARITIES:
        raise ValueError(f"granularity must be 'tensor' or 'head', got {granularity!r}")


def _is_pow2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


# --------------------------------------------------------------------------- Hadamard ---


def _rotate_qk(q: torch.Tensor, k: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """q @ H and k @ H with the +-1 Hadamard matrix (unnormalised: the quantize op folds
    1 / sqrt(D) into the descales). One matrix for both: in a compiled graph H is built by
    generated ops (the eager cache cannot be read there), once per call instead of twice."""
    h = hadamard_matrix(int(q.size(-1)), q.device, q.dtype)
    return torch.matmul(q, h), torch.matmul(k, h if k.dtype == q.dtype else h.to(k.dtype))

_HADAMARD_CACHE: Dict[Tuple[int, torch.device, torch.dtype], torch.Tensor] = {}


def _sylvester(d: int, device, dtype) -> torch.Tensor:
    """The ``d x d`` Sylvester Hadamard matrix with entries ±1 (d a power of two):
    ``H[i, j] = (-1) ** popcount(i & j)``. Symmetric, ``H @ H = d * I``. Pure tensor
    ops on ``d * d`` elements (under torch.compile this is one small fused kernel)."""
    i = torch.arange(d, device=device)
    a = i[:, None] & i[None, :]
    parity = torch.zeros_like(a)
    for b in range(d.bit_length() - 1):
        parity = parity ^ ((a >> b) & 1)
    return (1 - 2 * parity).to(dtype)


def hadamard_matrix(d: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The ±1 Sylvester Hadamard matrix of size ``d`` (a power of two), cached per
    ``(d, device, dtype)`` in eager mode. ``H / sqrt(d)`` is orthonormal and symmetric."""
    if not _is_pow2(d):
        raise ValueError(f"the Hadamard rotation needs a head dim that is a power of two, got {d}")
    if torch.compiler.is_compiling():  # no global cache mutation inside a traced graph
        return _sylvester(d, device, dtype)
    key = (d, torch.device(device) if device is not None else torch.device("cpu"), dtype)
    h = _HADAMARD_CACHE.get(key)
    if h is None:
        # A normal tensor even when the first call runs under inference_mode: an
        # inference tensor in the cache would break later calls that need autograd.
        with torch.inference_mode(False):
            h = _HADAMARD_CACHE[key] = _sylvester(d, device, dtype)
    return h


def _rotate_unnormalised(x: torch.Tensor) -> torch.Tensor:
    """``x @ H`` along the last dim with the ±1 Hadamard matrix (not yet divided by
    ``sqrt(D)``: the caller folds that into the float32 descale).

    One GEMM in x's dtype (float32 accumulation for bf16/fp16) against a cached
    matrix; ±1 entries are exact in every dtype. Chosen over a fast Walsh-Hadamard
    transform (log2(D) add/sub passes over x): on CPU (2 cores, [2, 1024, H, D],
    H*D = 2048) the GEMM took 15-77 ms eager against 470-650 ms for the FWHT, and
    28-89 ms against 75-127 ms compiled; on the GPU the GEMM is one memory-bound
    pass over x where an unfused FWHT is log2(D) of them.
    """
    h = hadamard_matrix(int(x.size(-1)), x.device, x.dtype)
    return torch.matmul(x, h)


def rotate(x: torch.Tensor) -> torch.Tensor:
    """The orthonormal Hadamard rotation ``x @ (H / sqrt(D))`` along the last dim
    (D a power of two). Applied to both q and k it leaves ``q @ k^T`` unchanged,
    since ``H / sqrt(D)`` is orthogonal."""
    return _rotate_unnormalised(x) / math.sqrt(x.size(-1))


# ----------------------------------------------------------------------- quantize_fp8 ---

def _quantize_one(x: torch.Tensor, granularity: str, group_size: int, cu_seqlens: Optional[torch.Tensor]):
    """quantize_fp8 through the op (csrc/ops/quantize_op.cpp): two kernels on CUDA, one
    extern call in a compiled graph. cu_seqlens is passed only where the op reads it."""
    per_head = granularity == "head"
    if per_head:
        heads = x.size(-2) if x.dim() in (3, 4) else 0
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1 \
                or heads % group_size != 0:
            raise ValueError(f"group_size must divide the {heads} heads of x, got {group_size}")
        if x.dim() == 3 and cu_seqlens is None:
            raise ValueError("quantize_fp8(granularity='head') on a packed [T, H, D] tensor needs cu_seqlens")
    cu = cu_seqlens if per_head and x.dim() == 3 else None
    return torch.ops.torch_fmha.quantize_fp8.default(x, per_head, group_size if per_head else 1, cu)


def quantize_fp8(x: torch.Tensor, granularity: str = "tensor", *, group_size: int = 1,
                 cu_seqlens: Optional[torch.Tensor] = None):
    """Quantize to ``float8_e4m3fn`` from the absolute maximum.

    Returns ``(x_fp8, descale)`` with ``x ≈ x_fp8.float() * descale``.

    Args:
        x: ``[B, S, H, D]`` (dense) or ``[T, H, D]`` (packed, with ``cu_seqlens``).
        granularity: ``"tensor"``: one scale, descale shape ``[1]``.
            ``"head"``: one scale per (batch, head), descale shape ``[B, H]``
            (``[B, H // group_size]``, see below).
        group_size: ``"head"`` only: heads sharing one scale. For GQA queries
            pass ``H // Hkv`` so q's descale has the ``[B, Hkv]`` shape the
            attention ops take (:func:`quantize_qkv` does this for you).
        cu_seqlens: int32 ``[B + 1]``, required for ``"head"`` on a packed
            ``[T, H, D]`` tensor.

    The amax ignores NaN and ±Inf; a NaN stays NaN and ±Inf becomes NaN in FP8
    (see the module docstring). Runs on the device without a host sync
    (``torch.compile`` friendly).
    """
    _check_granularity(granularity)
    return _quantize_one(x, granularity, group_size, cu_seqlens)


# ----------------------------------------------------------------------- quantize_qkv ---

class QuantizedQKV(NamedTuple):
    """What :func:`quantize_qkv` returns: FP8 tensors and float32 descales.

    A NamedTuple (so it unpacks, traces under torch.compile and crosses a
    compiled-graph boundary as a plain tuple)::

        q8, k8, v8, q_descale, k_descale, v_descale = qkv
        out = torch_fmha.attention(*qkv.tensors, causal=True, **qkv.descales)
        out = torch_fmha.varlen_attention(*qkv.tensors, cu_q, cu_k, **qkv.descales)
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    q_descale: torch.Tensor
    k_descale: torch.Tensor
    v_descale: torch.Tensor

    @property
    def tensors(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(q, k, v)`` in FP8: the ops' first three arguments."""
        return self.q, self.k, self.v

    @property
    def descales(self) -> Dict[str, torch.Tensor]:
        """``{"q_descale": ..., "k_descale": ..., "v_descale": ...}``: the ops' keyword arguments."""
        return {"q_descale": self.q_descale, "k_descale": self.k_descale, "v_descale": self.v_descale}


def _check_qkv(q, k, v, granularity, rotate, cu_seqlens_q, cu_seqlens_k, pack_v) -> int:
    """Argument checks of quantize_qkv (shapes only: never reads data). Returns group_size."""
    _check_granularity(granularity)
    if not isinstance(rotate, bool):
        raise TypeError(f"rotate must be a bool, got {type(rotate).__name__} {rotate!r}")
    if pack_v is not None and not isinstance(pack_v, bool):
        raise TypeError(f"pack_v must be a bool or None, got {type(pack_v).__name__} {pack_v!r}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point() or t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            raise TypeError(f"{name} must be a bfloat16/float16/float32/float64 tensor to quantize, got {t.dtype}")
    if q.dim() not in (3, 4):
        raise ValueError(f"q must be [B, S, H, D] (dense) or [T, H, D] (packed), got shape {list(q.shape)}")
    layout = "[B, S, Hkv, D]" if q.dim() == 4 else "[T, Hkv, D]"
    for name, t in (("k", k), ("v", v)):
        if t.dim() != q.dim():
            raise ValueError(f"{name} must be {layout} like q ({q.dim()}-D), got shape {list(t.shape)}")
    if k.shape != v.shape:
        raise ValueError(f"v must have k's shape {list(k.shape)}, got {list(v.shape)}")
    if pack_v and q.dim() != 4:
        raise ValueError("pack_v=True applies to dense [B, S, Hkv, D] inputs only "
                         f"(varlen_attention takes v [T, Hkv, D] with its head dim contiguous), got v of "
                         f"shape {list(v.shape)}")
    if q.dim() == 4 and k.size(0) != q.size(0):
        raise ValueError(f"k has batch size {k.size(0)} but q has batch size {q.size(0)}")
    if k.size(-1) != q.size(-1):
        raise ValueError(f"k has head dim {k.size(-1)} but q has head dim {q.size(-1)}")
    h, hkv = q.size(-2), k.size(-2)
    if hkv < 1 or h % hkv != 0:
        raise ValueError(f"the heads of q ({h}) must be a multiple of the heads of k and v ({hkv})")
    if rotate and not _is_pow2(q.size(-1)):
        raise ValueError(f"rotate=True needs a head dim that is a power of two, got {q.size(-1)}")
    packed_head = q.dim() == 3 and granularity == "head"
    for name, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        if cu is None:
            if packed_head:
                raise ValueError(f"granularity='head' on packed [T, H, D] inputs needs {name} "
                                 "(the descales are per (sequence, kv head): [B, Hkv])")
            continue
        if q.dim() == 4:
            raise ValueError(f"{name} applies to packed [T, H, D] inputs only, but q is 4-D "
                             f"{list(q.shape)}")
        if not isinstance(cu, torch.Tensor) or cu.dim() != 1 or cu.size(0) < 1:
            shape = list(cu.shape) if isinstance(cu, torch.Tensor) else type(cu).__name__
            raise ValueError(f"{name} must be a 1-D tensor [B + 1], got {shape}")
    if cu_seqlens_q is not None and cu_seqlens_k is not None and cu_seqlens_q.size(0) != cu_seqlens_k.size(0):
        raise ValueError(f"cu_seqlens_k has {cu_seqlens_k.size(0)} elements but cu_seqlens_q has "
                         f"{cu_seqlens_q.size(0)}; both must have B + 1")
    return h // hkv


# The head dims at which quantize_qkv packs a dense v by default: where the SM90 dense
# kernel is faster with V^T loaded by TMA from a packed v than with V transposed in shared
# memory (see quantize_qkv's docstring). D=64 stays standard until measured.
_PACK_V_HEAD_DIMS = (128, 256)


def quantize_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, granularity: str = "head",
                 rotate: bool = False, *, cu_seqlens_q: Optional[torch.Tensor] = None,
                 cu_seqlens_k: Optional[torch.Tensor] = None,
                 pack_v: Optional[bool] = None) -> QuantizedQKV:
    """Quantize q, k, v to FP8 for :func:`torch_fmha.attention` / :func:`torch_fmha.varlen_attention`.

    Args:
        q, k, v: dense ``q [B, Sq, H, D]``, ``k, v [B, Sk, Hkv, D]``, or packed
            ``q [Tq, H, D]``, ``k, v [Tk, Hkv, D]``; bf16 / fp16 / fp32 / fp64,
            ``H % Hkv == 0``.
        granularity: ``"head"`` (default): one scale per (batch or sequence,
            KV head); q's scale is shared by the ``H // Hkv`` query heads of a
            KV head, so every descale is ``[B, Hkv]``, the shape the ops take.
            ``"tensor"``: one scale per tensor, descales ``[1]``.
        rotate: apply the orthonormal Hadamard rotation ``x @ (H / sqrt(D))``
            along the head dim to q and k before quantizing ("incoherent
            processing", FlashAttention-3): ``q @ k^T`` is unchanged in exact
            arithmetic (so is the attention output; v is not rotated), and a
            few large channels are spread over all D, which lowers the FP8
            error on inputs with outliers. D must be a power of two. The
            returned q and k are the rotated ones: dequantized, they are
            ``q @ H / sqrt(D)``, not q.
        cu_seqlens_q, cu_seqlens_k: int32 ``[B + 1]``, needed for
            ``granularity="head"`` on packed inputs (the same ones you pass to
            :func:`torch_fmha.varlen_attention`).
        pack_v: return v as a *packed v* (dense inputs only): FP8
            ``[B, Hkv, D, G, 16]`` with ``G = ceil(Sk / 16)``, contiguous, its
            own 5-D shape (not a view of a ``[B, Sk, Hkv, D]`` tensor). Each
            (batch, KV head, dim) holds its ``Sk`` keys in ``G`` groups of 16,
            each group in the order in which the SM90 kernel's P V matrix
            multiply takes P (``csrc/vt_key_order.h``): key ``s`` is at
            position ``packed_vt_position(s)`` of the ``G * 16``; the slots of
            keys ``>= Sk`` are zero. The D rows are permuted as well, within
            each 32 columns, so that the kernel's output registers hold whole
            8-column chunks (row ``32 g + 8 a + 2 b + e`` holds column ``32 g +
            8 b + 2 a + e``: ``packed_v_column_of_row``). The values are those
            of the standard v (:func:`unpack_v` gives it back bitwise), written by the same
            kernel, no extra pass. :func:`torch_fmha.attention` takes a packed
            v directly and on CUDA loads V^T from it by TMA instead of
            transposing V in shared memory.
            :func:`torch_fmha.varlen_attention` and
            :func:`torch_fmha.attention_with_kvcache` do not take it: pass
            ``pack_v=False`` when a dense v goes to them (e.g. as a KV cache),
            or convert it with :func:`unpack_v`.
            ``None`` (default): packed for dense inputs with D=128 or D=256
            (where the SM90 kernel is faster with it), standard otherwise, on
            CPU too, so both backends return the same shapes. Exception: a
            symbolic key length in ``torch.export`` (a dynamic ``Dim`` on S)
            gets the standard v, since tracing infers each output's memory
            format and that test of a packed v guards on ``ceil(Sk / 16) != 1``,
            which export cannot keep when S may be <= 16 (``pack_v=True``
            exports when the ``Dim``'s minimum is above 16); under
            ``torch.compile`` with dynamic shapes the guard costs one
            recompile when S crosses 16. ``True`` / ``False`` force either
            (``True`` on packed ``[T, H, D]`` inputs is a ``ValueError``).

    Returns:
        :class:`QuantizedQKV` ``(q, k, v, q_descale, k_descale, v_descale)``::

            qkv = torch_fmha.quantize_qkv(q, k, v, rotate=True)
            out = torch_fmha.attention(*qkv.tensors, causal=True, **qkv.descales)

    NaN / ±Inf handling as in :func:`quantize_fp8`. Pure tensor ops, no host
    sync: traces under ``torch.compile(fullgraph=True)`` and ``torch.export``.
    """
    _check_qkv(q, k, v, granularity, rotate, cu_seqlens_q, cu_seqlens_k, pack_v)
    if pack_v is None:
        # Not for a symbolic key length outside Dynamo (torch.export): tracing records each
        # output's memory format, and the contiguity test of a packed v guards on G != 1,
        # which an export with a dynamic S that may be <= 16 cannot keep (see the docstring).
        pack_v = (q.dim() == 4 and q.size(-1) in _PACK_V_HEAD_DIMS
                  and not isinstance(v.size(1), torch.SymInt))
    if rotate:  # a GEMM each; the op then folds 1 / sqrt(D) into the descales
        q, k = _rotate_qk(q, k)
    per_head = granularity == "head"
    packed_head = per_head and q.dim() == 3
    # The overload itself (the packet's lookup costs ~0.5 us a call) and one unbind
    # for the three descale views (three indexings cost twice as much, eagerly).
    q8, k8, v8, descales = torch.ops.torch_fmha.quantize_qkv.default(
        q, k, v, per_head, rotate, cu_seqlens_q if packed_head else None,
        cu_seqlens_k if packed_head else None, pack_v)
    return QuantizedQKV(q8, k8, v8, *descales.unbind(0))


# ---------------------------------------------------------------------------- unpack_v ---

def _vt_slot_of_key(i: torch.Tensor) -> torch.Tensor:
    """csrc/vt_key_order.h's vt_slot_of_key on an integer tensor of keys within a 16-key
    group: slot bits (b3 b2 b1 b0) = key bits (b2 b1 b3 b0)."""
    return (((i >> 2) & 1) << 3) | (((i >> 1) & 1) << 2) | (((i >> 3) & 1) << 1) | (i & 1)


def _packed_v_row_of_column(d: torch.Tensor, head_dim: int) -> torch.Tensor:
    """csrc/vt_key_order.h's packed_v_column_of_row (its own inverse) on an integer tensor of
    head-dim indices: within each whole 32-column chunk, bits (a1 a0 b1 b0 e) become
    (b1 b0 a1 a0 e); a last chunk of fewer than 32 columns keeps its order."""
    swapped = (d & ~31) | (((d >> 1) & 3) << 3) | (((d >> 3) & 3) << 1) | (d & 1)
    return torch.where((d | 31) < head_dim, swapped, d)


def unpack_v(v_packed: torch.Tensor, seqlen: int) -> torch.Tensor:
    """A packed v (:func:`quantize_qkv` with ``pack_v``) back in the standard layout.

    Args:
        v_packed: ``[B, Hkv, D, G, 16]`` (``quantize_qkv`` returns it
            contiguous; any strides work here).
        seqlen: the number of keys ``S``; ``G`` must be ``ceil(S / 16)``.

    Returns:
        ``[B, S, Hkv, D]``, contiguous, bitwise the v that ``pack_v=False``
        gives (the padding slots are dropped). One gather of each key's
        (group, slot), on the bytes; pure tensor ops: CPU, CUDA, fake tensors,
        ``torch.compile``, ``torch.export`` (no reshape of the symbolic
        ``G``, which would guard on it).
    """
    if not isinstance(v_packed, torch.Tensor):
        raise TypeError(f"v_packed must be a torch.Tensor, got {type(v_packed).__name__}")
    if v_packed.dim() != 5 or v_packed.size(-1) != 16:
        raise ValueError(f"v_packed must be a packed v [B, Hkv, D, G, 16], got shape {list(v_packed.shape)}")
    if v_packed.dtype != _FP8:  # the gather below moves bytes: any other dtype would come back misshapen
        raise TypeError(f"v_packed must have dtype torch.float8_e4m3fn (a packed v), got {v_packed.dtype}")
    if v_packed.size(3) != (seqlen + 15) // 16:
        raise ValueError(f"a packed v of {seqlen} keys has {(seqlen + 15) // 16} groups of 16, "
                         f"got v_packed of shape {list(v_packed.shape)}")
    keys = torch.arange(seqlen, device=v_packed.device)
    head_dim = v_packed.size(2)
    rows = _packed_v_row_of_column(torch.arange(head_dim, device=v_packed.device), head_dim)
    # [B, G, 16, Hkv, D] indexed by each key's (group, slot) and each column's row:
    # [B, S, Hkv, D]. On the bytes: indexing has no float8 kernel on every backend.
    by_key = v_packed.view(torch.uint8).permute(0, 3, 4, 1, 2)[:, keys >> 4, _vt_slot_of_key(keys & 15)][..., rows]
    # .contiguous(): the documented layout whatever the backend's indexing gives.
    return by_key.view(v_packed.dtype).contiguous()


__all__ = ["FP8_MAX", "QuantizedQKV", "hadamard_matrix", "quantize_fp8", "quantize_qkv", "rotate", "unpack_v"]
