"""Context-parallel attention over a ragged (packed) batch: sequences of the global packed batch
sharded over the ranks of a process group.

    import torch_fmha.distributed as cp
    # q [T, H, D], k, v [T, Hkv, D]; cu_seqlens int32 [B + 1] over the GLOBAL packed batch
    q_l, k_l, v_l = (cp.shard_varlen(t, cu_seqlens, group=g) for t in (q, k, v))  # [R, ., D]
    out_l = cp.context_parallel_varlen_attention(q_l, k_l, v_l, cu_seqlens, cu_seqlens,
                                                 causal=True, group=g)
    out = cp.unshard_varlen(out_l, cu_seqlens, T, group=g)                       # [T, H, D]

Layout (padded, load-balanced per sequence)
-------------------------------------------
Sequence b of length L is cut into 2W chunks of ``c = ceil(L / 2W)`` positions
(the last chunks hold fewer real rows, or none). Rank r holds, for every
sequence in batch order, chunk r followed by chunk 2W-1-r: ``2c`` local rows
per sequence, the slots past a chunk's real rows being padding. So under a
causal mask every rank gets the same work per sequence, as in the dense
layout, and in the same way as Transformer Engine's THD layout (which asks the
user to pad every length to a multiple of 2W: here the helpers pad).

What the host knows
-------------------
Only shapes: no host sync, no ``.item()``. The per-sequence lengths stay on
the device (every rank holds the same global ``cu_seqlens``); the local row
count R must be a host int, the same on every rank, and at least the padded
rows ``2 * sum_b ceil(L_b / 2W)``. :func:`varlen_local_rows` gives it from the
shapes alone, ``2 * floor((T + B (2W - 1)) / 2W)`` (a bound: at most ``2W - 1``
padding rows per sequence plus at most ``2B`` spare rows at the end; small next
to the long sequences context parallelism is for), or, from a host list of
the lengths when the caller has one, the exact count. Rows past the last
sequence are padding as well. ``max_seqlen_*`` are accepted for the
varlen op's names and are hints only (not needed). :func:`unshard_varlen` needs
the global ``T`` (its output shape). A too small R would lose rows: it fails a
device-side ``torch._assert_async`` (an error at once on CPU; on CUDA a device
assert), never a silent result.

Computation
-----------
The chunk offsets differ per sequence (``c`` does), while the op takes one
window per call, so (query chunk, key chunk) pairs cannot be classified on the
host as the dense path does. Instead every rank all-gathers K and V (FP8 bytes
moved as such) and puts each sequence's keys back in global order inside each
call's key buffer (one ``index_select``, indices computed on the device). Then
with the op's bottom-right alignment a window needs one scalar per call:

* ``past`` call: each query piece (the real rows ``[Q0, Q1)`` of a chunk)
  against its sequence's keys ``[0, Q1)`` with window ``(left, 0)``: key end ==
  query end, so query x sees y iff ``x - left <= y <= x``, exactly;
* ``future`` call, only when the global window reaches right (``right != 0``
  and not fully unbounded): the same pieces with rows and keys reversed in
  position (``x' = L - 1 - x``), keys ``y' < Q1' - 1``, window
  ``(right - 1, 0)``: y is seen iff ``x < y <= x + right``, exactly;
* no mask at all (``window = (-1, -1)``): one call, all keys of the sequence.

A row gets one partial (causal, left windows, no mask: returned directly in the
final dtype, bitwise as the op computes it on those keys) or two (past and
future, merged exactly by their LSE in float32 as in the dense path; FP8 inputs
give float16 partials, ``v_descale`` and ``out_scale`` are applied in the
merge). Each call is one varlen op call whose sequences are the pieces (4 per
sequence: chunk r's real rows, its padding, the same for chunk 2W-1-r) plus
the spare rows and the unused keys; padding rows get ``out = 0``,
``lse = -inf``. Self-attention only (``cu_seqlens_k`` must equal
``cu_seqlens_q``), forward only.

KV exchange: one ``all_gather_into_tensor`` (the dense path's ring needs key
chunks that a window can address per call; here it cannot). Its wait comes
after the index computation; the attention needs every key, so it is not
overlapped with attention (the exchange moves ``2 * T * Hkv * D`` FP8 bytes
per rank, against ``O(T_seq * T)`` attention work). Memory: the gathered K/V
(W shards) plus each call's key buffer (at most ``(2W + 1) R / 2`` rows).
Under ``torch.compile(fullgraph=True)`` it traces without a graph break.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch

from .api import varlen_attention
from .distributed import (_c10d, _check_comm, _check_forward_only, _check_output_args,
                          _group_name, _group_rank_world, _merge, _merge_scale, _raw, _wait,
                          _window_bounds)

__all__ = [
    "context_parallel_varlen_attention", "shard_varlen", "unshard_varlen", "varlen_local_rows",
    "varlen_shard_cu_seqlens", "varlen_shard_positions",
]

_PIECES = 4  # per sequence and call: chunk r real rows, its padding, chunk 2W-1-r real rows, padding


# ------------------------------------------------------------------ layout ---
def varlen_local_rows(total: int, num_seqs: int, world_size: int,
                      lengths: Optional[Sequence[int]] = None) -> int:
    """Rows R of every rank's shard of a packed batch (``total`` rows, ``num_seqs`` sequences).

    Without ``lengths``: the bound from the shapes, ``2 * floor((T + B (2W - 1)) / 2W)``.
    With ``lengths`` (a host list of the B sequence lengths): the exact padded count
    ``2 * sum_b ceil(L_b / 2W)``. Every rank must use the same R.
    """
    n = 2 * world_size
    if lengths is not None:
        lengths = [int(x) for x in lengths]
        if len(lengths) != num_seqs or sum(lengths) != total or min(lengths, default=0) < 0:
            raise ValueError(f"lengths must be {num_seqs} non-negative ints summing to {total}, "
                             f"got {len(lengths)} summing to {sum(lengths)}")
        return 2 * sum(-(-x // n) for x in lengths)
    return 2 * ((total + num_seqs * (n - 1)) // n)


class _Layout(NamedTuple):
    lens: torch.Tensor   # [B] int64 sequence lengths
    chunk: torch.Tensor  # [B] chunk length c = ceil(L / 2W)
    start: torch.Tensor  # [B + 1] exclusive prefix sums of c (a sequence's local rows: 2 start[b] ...)
    n_lo: torch.Tensor   # [B] real rows of chunk r (the first half of the sequence's local rows)
    n_hi: torch.Tensor   # [B] real rows of chunk 2W-1-r


def _layout(cu_seqlens: torch.Tensor, world: int, rank: int) -> _Layout:
    n = 2 * world
    cu = cu_seqlens.long()
    lens = cu[1:] - cu[:-1]
    chunk = (lens + (n - 1)) // n
    start = torch.cat([chunk.new_zeros(1), torch.cumsum(chunk, 0)])
    n_lo = (lens - rank * chunk).clamp(min=0).minimum(chunk)
    n_hi = (lens - (n - 1 - rank) * chunk).clamp(min=0).minimum(chunk)
    return _Layout(lens, chunk, start, n_lo, n_hi)


def _bucket(bounds: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """For sorted ``bounds`` [N + 1] with ``bounds[0] <= x``: the i with ``bounds[i] <= x <
    bounds[i + 1]`` (N where ``x >= bounds[N]``), i.e. ``searchsorted(bounds[1:], x, right=True)``.

    Searched over the whole tensor, minus one, never over the slice ``bounds[1:]``: torch < 2.13's
    Inductor lowering of searchsorted for the GPU (Triton) reads a sliced boundaries tensor from
    its buffer's start, ignoring the view's offset (pytorch/pytorch#182343, fixed by #184043), so
    the sliced form came out off by one in a compiled graph on CUDA.
    """
    return torch.searchsorted(bounds, x, right=True) - 1


def _local_rows_info(lay: _Layout, rows: int, world: int, rank: int, device):
    """For each local row: (sequence b (clamped), position in the sequence, real?)."""
    nb = lay.lens.size(0)
    p = torch.arange(rows, device=device)
    b = _bucket(2 * lay.start, p)  # B for rows past the last sequence
    inside = b < nb
    bc = b.clamp(max=nb - 1)
    c = lay.chunk[bc].clamp(min=1)
    u = p - 2 * lay.start[bc]
    hi = u >= c
    chunk_id = torch.where(hi, 2 * world - 1 - rank, rank)
    pos = chunk_id * c + u - hi.long() * c
    real = inside & (pos < lay.lens[bc])
    return bc, pos, real


def _slot(lay: _Layout, b: torch.Tensor, pos: torch.Tensor, rows: int, world: int) -> torch.Tensor:
    """Row of position ``pos`` of sequence ``b`` in the all-gathered [W * R] shards."""
    c = lay.chunk[b].clamp(min=1)
    j = pos // c
    hi = j >= world
    src = torch.where(hi, 2 * world - 1 - j, j)
    return src * rows + 2 * lay.start[b] + hi.long() * c + (pos - j * c)


def varlen_shard_cu_seqlens(cu_seqlens: torch.Tensor, *, group=None, rank: Optional[int] = None,
                            world_size: Optional[int] = None) -> torch.Tensor:
    """int32 ``[B + 1]``: sequence b's rows of this rank's shard are ``[cu[b], cu[b + 1])``
    (chunk r then chunk 2W-1-r, each ``ceil(L_b / 2W)`` rows, padding at the chunk ends)."""
    rank, world_size = _group_rank_world(group, rank, world_size)
    _check_cu_seqlens(cu_seqlens, "cu_seqlens", cu_seqlens.device)
    return (2 * _layout(cu_seqlens, world_size, rank).start).to(torch.int32)


def varlen_shard_positions(cu_seqlens: torch.Tensor, rows: int, *, group=None,
                           rank: Optional[int] = None, world_size: Optional[int] = None) -> torch.Tensor:
    """int64 ``[rows]``: each local row's position in its sequence (e.g. for RoPE), -1 on padding."""
    rank, world_size = _group_rank_world(group, rank, world_size)
    _check_cu_seqlens(cu_seqlens, "cu_seqlens", cu_seqlens.device)
    _, pos, real = _local_rows_info(_layout(cu_seqlens, world_size, rank), rows, world_size, rank,
                                    cu_seqlens.device)
    return torch.where(real, pos, torch.full_like(pos, -1))


def shard_varlen(x: torch.Tensor, cu_seqlens: torch.Tensor, *, rows: Optional[int] = None,
                 group=None, rank: Optional[int] = None, world_size: Optional[int] = None) -> torch.Tensor:
    """This rank's shard ``[rows, ...]`` of a packed tensor ``x [T, ...]`` (module doc layout).

    ``rows`` defaults to :func:`varlen_local_rows` from the shapes. Padding rows are zero.
    Pure indexing (no communication, no host sync).
    """
    rank, world_size = _group_rank_world(group, rank, world_size)
    _check_cu_seqlens(cu_seqlens, "cu_seqlens", x.device)
    _check_total(cu_seqlens, x.size(0), f"x.size(0) = {x.size(0)}")
    nb = cu_seqlens.size(0) - 1
    if rows is None:
        rows = varlen_local_rows(x.size(0), nb, world_size)
    lay = _layout(cu_seqlens, world_size, rank)
    _check_rows(lay, rows)
    b, pos, real = _local_rows_info(lay, rows, world_size, rank, x.device)
    src = (cu_seqlens.long()[b] + pos).clamp(0, max(x.size(0) - 1, 0))
    if x.size(0) == 0:
        return x.new_zeros((rows,) + tuple(x.shape[1:]))
    picked = _raw(x).index_select(0, src)
    picked = torch.where(real.view((-1,) + (1,) * (x.dim() - 1)), picked, torch.zeros_like(picked))
    return picked.view(x.dtype)


def unshard_varlen(x: torch.Tensor, cu_seqlens: torch.Tensor, total: int, *,
                   group=None) -> torch.Tensor:
    """The packed ``[total, ...]`` tensor from every rank's shard (an all-gather; every rank gets it)."""
    rank, world = _group_rank_world(group)
    _check_cu_seqlens(cu_seqlens, "cu_seqlens", x.device)
    _check_total(cu_seqlens, total, f"total = {total}")
    rows = x.size(0)
    lay = _layout(cu_seqlens, world, rank)
    _check_rows(lay, rows)
    xc = _raw(x).contiguous()
    gathered = xc if world == 1 else _wait(_c10d.all_gather_into_tensor(xc, world, _group_name(group)))
    g = torch.arange(total, device=x.device)
    b = _bucket(cu_seqlens.long(), g).clamp(max=lay.lens.size(0) - 1)
    pos = g - cu_seqlens.long()[b]
    slot = _slot(lay, b, pos, rows, world).clamp(0, world * rows - 1)
    return gathered.view((world * rows,) + tuple(xc.shape[1:])).index_select(0, slot).view(x.dtype)


def _check_cu_seqlens(cu: torch.Tensor, name: str, device) -> None:
    if cu.dim() != 1 or cu.size(0) < 2 or cu.dtype != torch.int32 or cu.device != device:
        raise ValueError(f"{name} must be an int32 [B + 1] tensor (B >= 1) on {device}, got "
                         f"{cu.dtype} of shape {list(cu.shape)} on {cu.device}")
    # Values live on the device: checked there (no host sync; on CPU an error at once).
    torch._assert_async((cu[0] == 0) & (cu[1:] >= cu[:-1]).all(),
                        f"torch_fmha.distributed: {name} must start at 0 and be non-decreasing")


def _check_total(cu: torch.Tensor, total: int, what: str) -> None:
    torch._assert_async(cu[-1] == total, f"torch_fmha.distributed: cu_seqlens[-1] must equal {what}")


def _check_rows(lay: _Layout, rows: int) -> None:
    # The padded rows 2 * sum(c) live on the device: checked there (no host sync).
    torch._assert_async(2 * lay.start[-1] <= rows,
                        "torch_fmha.distributed: the local shard has fewer rows than the padded "
                        "sequences need (rows < 2 * sum(ceil(L_b / 2W))); use varlen_local_rows")


# ------------------------------------------------------------------- calls ---
class _Call(NamedTuple):
    cu_q: torch.Tensor      # int32 [P + 1] over the local rows
    cu_k: torch.Tensor      # int32 [P + 1] over the call's key buffer
    key_slot: torch.Tensor  # [keys] rows of the all-gathered K/V
    piece_seq: torch.Tensor  # [P] sequence of each piece (for [B, Hkv] descales)
    rev: Optional[torch.Tensor]  # [R] local row permutation (reversed pieces) or None


def _build_call(lay: _Layout, kind: str, rows: int, world: int, rank: int, device) -> _Call:
    """One varlen op call over all local rows: pieces, their keys (module doc) and indices."""
    nb = lay.lens.size(0)
    n = 2 * world
    c, L = lay.chunk, lay.lens
    zero = torch.zeros_like(c)
    n_lo, n_hi = lay.n_lo, lay.n_hi
    if kind == "full":
        # No mask: the real rows of both chunks (contiguous: chunk 2W-1-r has real rows
        # only when chunk r is full) are one piece against all of the sequence's keys.
        real = n_lo + n_hi
        q_len = torch.stack([real, 2 * c - real, zero, zero], 1)
        k_len = torch.stack([torch.where(real > 0, L, zero), zero, zero, zero], 1)
        cap = n * (rows // 2)  # sum_b L_b <= 2W sum_b c_b
    else:
        q_len = torch.stack([n_lo, c - n_lo, n_hi, c - n_hi], 1)  # [B, 4]; padding sees no key
        q0_lo, q0_hi = rank * c, (n - 1 - rank) * c                # first position of each chunk
        if kind == "past":  # keys [0, Q1)
            k_lo, k_hi = q0_lo + n_lo, q0_hi + n_hi
        else:               # "future": keys (Q0, L), reversed
            k_lo, k_hi = (L - q0_lo - 1).clamp(min=0), (L - q0_hi - 1).clamp(min=0)
        k_len = torch.stack([torch.where(n_lo > 0, k_lo, zero), zero,
                             torch.where(n_hi > 0, k_hi, zero), zero], 1)
        cap = (n + 1) * (rows // 2)  # per sequence at most (r + 1) c + (2W - r) c
    q_len_all = torch.cat([q_len.reshape(-1), (rows - 2 * lay.start[-1:]).clamp(min=0), zero[:1]])
    used = k_len.sum().reshape(1)
    k_len_all = torch.cat([k_len.reshape(-1), zero[:1], (cap - used).clamp(min=0)])
    # Clamped to the buffers: with enough local rows the sums never exceed them; with too few
    # (caught by _check_rows' device assert, which fires asynchronously on CUDA) the op must
    # still not be handed offsets past its q rows or key buffer.
    cu_q = torch.cat([zero[:1], torch.cumsum(q_len_all, 0)]).clamp(max=rows)
    cu_k = torch.cat([zero[:1], torch.cumsum(k_len_all, 0)]).clamp(max=cap)
    # Key buffer row g: piece (b, kind) and its key index, in global order (reversed for "future").
    g = torch.arange(cap, device=device)
    piece = _bucket(cu_k, g).clamp(max=nb * _PIECES - 1)
    b = piece // _PIECES
    idx = g - cu_k[piece]
    pos = L[b] - 1 - idx if kind == "future" else idx
    slot = _slot(lay, b, pos.clamp(min=0), rows, world).clamp(0, world * rows - 1)
    n_pieces = nb * _PIECES + 2
    piece_seq = (torch.arange(n_pieces, device=device) // _PIECES).clamp(max=nb - 1)
    rev = None
    if kind == "future":  # reverse each real piece's rows (an involution)
        p = torch.arange(rows, device=device)
        pc = _bucket(cu_q, p).clamp(max=n_pieces - 1)
        mirrored = cu_q[pc] + cu_q[pc + 1] - 1 - p
        real_piece = (pc < nb * _PIECES) & (pc % 2 == 0)
        rev = torch.where(real_piece, mirrored, p)
    return _Call(cu_q.to(torch.int32), cu_k.to(torch.int32), slot, piece_seq, rev)


def _per_piece(s: Optional[torch.Tensor], piece_seq: torch.Tensor) -> Optional[torch.Tensor]:
    return s if s is None or s.size(0) == 1 and s.dim() == 1 else s.index_select(0, piece_seq)


def _per_row(s: torch.Tensor, heads: int, heads_kv: int, row_seq: torch.Tensor) -> torch.Tensor:
    """A [1] or [B, Hkv] scale as a factor for lse [1, H, R]."""
    s = s.float()
    if s.dim() == 1:
        return s.view(1, 1, 1)
    return s.repeat_interleave(heads // heads_kv, dim=1).index_select(0, row_seq).t()[None]


# ----------------------------------------------------------------- forward ---
def context_parallel_varlen_attention(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
        cu_seqlens_k: torch.Tensor, max_seqlen_q: Optional[int] = None,
        max_seqlen_k: Optional[int] = None, *, group=None, softmax_scale: Optional[float] = None,
        causal: bool = False, window_size: Tuple[int, int] = (-1, -1),
        q_descale: Optional[torch.Tensor] = None, k_descale: Optional[torch.Tensor] = None,
        v_descale: Optional[torch.Tensor] = None, out_dtype: Optional[torch.dtype] = None,
        out_scale: Optional[torch.Tensor] = None, return_lse: bool = False, _comm: str = "on"):
    """:func:`torch_fmha.varlen_attention` on a packed batch whose sequences span the ranks.

    Args:
        q: ``[R, H, D]``; k, v: ``[R, Hkv, D]``: this rank's shard (:func:`shard_varlen`
            layout, R the same on every rank) of one global self-attention.
        cu_seqlens_q, cu_seqlens_k: int32 ``[B + 1]`` over the GLOBAL packed batch, the same
            on every rank; k's must equal q's (self-attention; checked on the device).
        max_seqlen_q, max_seqlen_k: accepted for the op's names; not needed, unused.
        group: the process group (default: the world).
        Everything else as in :func:`torch_fmha.varlen_attention`, applied to the global
        batch; descales ``[1]`` or ``[B, Hkv]`` (global B), the same on every rank
        (:func:`torch_fmha.distributed.global_descale_varlen`).

    Returns:
        ``out [R, H, D]`` (padding rows 0), or ``(out, lse)`` with lse ``[H, R]`` (padding
        rows -inf) when ``return_lse``.
    """
    _check_comm(_comm)
    _check_forward_only("context_parallel_varlen_attention", q, k, v)
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError("q, k, v must be packed [R, H(kv), D] shards")
    if not (q.size(0) == k.size(0) == v.size(0)):
        raise ValueError(f"q, k, v shards must have the same rows (self-attention), got "
                         f"{q.size(0)}, {k.size(0)}, {v.size(0)}")
    if k.shape != v.shape or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError("k and v must have one shape, and q, k, v one dtype")
    for name, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        _check_cu_seqlens(cu, name, q.device)
    if cu_seqlens_k.shape != cu_seqlens_q.shape:
        raise ValueError(f"cu_seqlens_k must equal cu_seqlens_q (self-attention), got shapes "
                         f"{list(cu_seqlens_k.shape)} and {list(cu_seqlens_q.shape)}")
    if cu_seqlens_k is not cu_seqlens_q:
        torch._assert_async((cu_seqlens_k == cu_seqlens_q).all(),
                            "torch_fmha.distributed: cu_seqlens_k must equal cu_seqlens_q "
                            "(self-attention)")
    left, right = _window_bounds(causal, window_size)
    nb = cu_seqlens_q.size(0) - 1
    rows, heads, hdim = q.shape
    heads_kv = k.size(1)
    final_dtype = _check_output_args(q.dtype, nb, heads_kv, out_dtype, out_scale,
                                     q_descale, k_descale, v_descale)
    fp8 = q.dtype == torch.float8_e4m3fn
    rank, world = _group_rank_world(group)
    lay = _layout(cu_seqlens_q, world, rank)
    _check_rows(lay, rows)

    # ---- KV exchange: one all-gather of K and V as bytes, [W * R, 2, Hkv, D * itemsize].
    packed = torch.stack([k.view(torch.uint8), v.view(torch.uint8)], 1)  # moved as bytes
    pending = None
    if world > 1 and _comm != "off":
        pending = _c10d.all_gather_into_tensor(packed, world, _group_name(group))
    if _comm == "only":  # benchmark aid: the exchange alone, no attention
        return packed if pending is None else _wait(pending)

    if (left, right) == (-1, -1):
        kinds: List[Tuple[str, int, int]] = [("full", -1, -1)]
    elif right == 0:
        kinds = [("past", left, 0)]
    else:
        kinds = [("past", left, 0), ("future", right - 1 if right > 0 else -1, 0)]
    calls = [_build_call(lay, kind, rows, world, rank, q.device) for kind, _, _ in kinds]
    if pending is not None:
        gathered = _wait(pending)
    else:  # one rank, or the benchmark's stand-in keys (_comm="off": the local shard W times)
        gathered = packed if world == 1 else packed.repeat(world, 1, 1, 1)
    kv_all = gathered.view((world * rows, 2, heads_kv, hdim * q.element_size()))
    k_all, v_all = kv_all[:, 0], kv_all[:, 1]

    direct = len(kinds) == 1
    part_dtype = torch.float16 if fp8 else q.dtype
    parts = []
    for (kind, wl, wr), call in zip(kinds, calls):
        # Contiguous key buffers (one gather each) in the order the call's pieces read them.
        kc = k_all.index_select(0, call.key_slot).view(q.dtype)
        vc = v_all.index_select(0, call.key_slot).view(q.dtype)
        qc = q if call.rev is None else _raw(q).index_select(0, call.rev).view(q.dtype)
        o, lse = varlen_attention(
            qc, kc, vc, call.cu_q, call.cu_k,
            softmax_scale=softmax_scale, window_size=(wl, wr),
            q_descale=_per_piece(q_descale, call.piece_seq),
            k_descale=_per_piece(k_descale, call.piece_seq),
            v_descale=_per_piece(v_descale, call.piece_seq) if (direct or not fp8) else None,
            out_dtype=final_dtype if direct else part_dtype,
            out_scale=out_scale if direct else None, return_lse=True)
        if call.rev is not None:
            o, lse = o.index_select(0, call.rev), lse.index_select(1, call.rev)
        parts.append((o, lse))
    if direct:
        out, lse = parts[0]
    else:
        acc = torch.float64 if q.dtype == torch.float64 else torch.float32
        row_seq, _, _ = _local_rows_info(lay, rows, world, rank, q.device)
        vd = _per_row(v_descale, heads, heads_kv, row_seq) if (fp8 and v_descale is not None) else None
        osc = out_scale.float().view(1, 1, 1) if final_dtype == torch.float8_e4m3fn else None
        out, lse = _merge([(o[None], l[None]) for o, l in parts], acc, _merge_scale(vd, osc),
                          final_dtype)
        out, lse = out[0], lse[0]
    return (out, lse) if return_lse else out
