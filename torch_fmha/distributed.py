"""Context-parallel attention: one sequence sharded over the ranks of a process group.

    import torch_fmha.distributed as cp
    q_l, k_l, v_l = (cp.shard_sequence(t, group=g) for t in (q, k, v))   # [B, S_local, ., D]
    out_l = cp.context_parallel_attention(q_l, k_l, v_l, causal=True, seqlen=S, group=g)
    out = cp.unshard_sequence(out_l, S, group=g)                            # [B, S, H, D]

Packed batches (``context_parallel_varlen_attention``, ``shard_varlen``, ...) are in
distributed_varlen.py, the global FP8 scales in distributed_scales.py; all are
importable from here.

Built on ``torch.distributed`` (NCCL on GPUs, gloo on CPU) and the ops as they
are: every rank calls ``torch_fmha.attention(..., return_lse=True)`` on pairs
(its queries, a piece of some rank's keys) and merges the partial results
exactly by their log-sum-exp, in float32.

Layout (load-balanced, also used without ``causal``)
----------------------------------------------------
The global sequence of length S is cut into 2W chunks with
``torch.tensor_split`` semantics (chunk c has ``S // 2W + (c < S % 2W)`` rows,
so S need not be divisible by 2W and nothing is padded). Rank r holds chunk r
followed by chunk 2W-1-r, so under a causal mask every rank gets the same
amount of work. :func:`shard_sequence`, :func:`unshard_sequence`,
:func:`shard_positions` (global positions of the local rows, e.g. for RoPE)
and :func:`shard_lengths` implement it. When S is not a multiple of 2W the
shards differ in length by up to 2 rows; pass ``seqlen=S`` to
:func:`context_parallel_attention` then (without it S is taken as
``W * S_local``, which needs equal shards).

Masks
-----
Self-attention over the global sequence (``Sq == Sk == S``), so the ops'
bottom-right alignment is the usual one: global query i sees key j iff
``i - left <= j <= i + right`` (``causal`` = ``(-1, 0)``). Each (query
chunk, key chunk) pair is classified on the host from static shapes: skipped
(no pair visible), fully visible (no mask), or a band: the query rows and
keys that see / are seen by nothing are trimmed off, and the band is passed
to the op as a window on the remaining sub-block with the chunk offsets folded
in (for rows at global qo and keys at ko: ``left' = left + (ko - qo) + Lk -
Lq``, ``right' = right - (ko - qo) - (Lk - Lq)``; both come out -1 or >= 0
after the trim).
Fully visible pairs that form a rectangle are joined into one call, and on
a rank's own shard a causal mask is one causal call (the local order of the
rows is their global order).

KV exchange (``kv_exchange=``)
------------------------------
K and V are packed into one buffer (as bytes: FP8 moves half the bytes of
bf16) and moved with functional collectives
(``torch.ops._c10d_functional``), whose wait is placed by hand after the
compute it overlaps with:

* ``"ring"`` (default): W-1 steps; in step t the buffer held is sent on to
  rank r+1 (``all_to_all_single`` with one non-empty split, i.e. a P2P
  exchange) while the attention on it runs. Holds two buffers.
* ``"allgather"``: one ``all_gather_into_tensor`` of every shard, issued
  first and overlapped with the attention on the local shard. Holds W.

Both give bitwise the same result (same calls, same merge order).

Precision
---------
Partial results are never FP8: FP8 inputs give float16 partials computed
without ``v_descale`` (``|o| <= 448``, 11-bit mantissa), other inputs their own
dtype. The merge runs in float32 (float64 for float64 inputs), applies
``v_descale`` and ``out_scale`` and rounds once to ``out_dtype``. A query
chunk whose rows get exactly one partial is computed directly with the final
dtype and scales (bitwise equal to the op on those keys).

Under ``torch.compile(fullgraph=True)`` everything traces without a graph
break (shapes, chunk plans, windows are Python ints; no host sync beyond the
collectives): checked on CPU/gloo with ``aot_eager`` and inductor, on
GPUs/NCCL with inductor (tests/gpu). The public ``funcol`` wrappers put their
``wait_tensor`` right after the collective while tracing, serialising the
exchange with the compute, so this module calls the
``torch.ops._c10d_functional`` ops and places each wait itself (collective,
attention, wait; the CPU test checks the order). Forward only (no autograd through the exchange). ``_comm`` ("off":
stand-in keys, no exchange; "only": the exchange alone) exists for the
benchmark's compute / communication split and gives no attention result.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol

from .api import attention

__all__ = [
    "context_parallel_attention", "shard_sequence", "unshard_sequence", "shard_positions",
    "shard_lengths", "global_descale", "quantize_fp8_global",
    "context_parallel_varlen_attention", "shard_varlen", "unshard_varlen", "varlen_local_rows",
    "varlen_shard_cu_seqlens", "varlen_shard_positions", "global_descale_varlen",
    "quantize_fp8_global_varlen",
]

_c10d = torch.ops._c10d_functional
KV_EXCHANGES = ("ring", "allgather")


# ------------------------------------------------------------------ layout ---
def _group_rank_world(group, rank: Optional[int] = None, world_size: Optional[int] = None):
    if world_size is None:
        world_size = dist.get_world_size(group)
    if rank is None:
        rank = dist.get_rank(group)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a group of {world_size}")
    return rank, world_size


def _chunks(seqlen: int, world_size: int) -> List[Tuple[int, int]]:
    """(start, length) of the 2W chunks, ``torch.tensor_split`` semantics."""
    n = 2 * world_size
    base, rem = divmod(seqlen, n)
    out, pos = [], 0
    for c in range(n):
        length = base + (1 if c < rem else 0)
        out.append((pos, length))
        pos += length
    return out


def _pieces(seqlen: int, world_size: int, rank: int) -> List[Tuple[int, int]]:
    """(global start, length) of the two chunks of rank's shard, in local order."""
    ch = _chunks(seqlen, world_size)
    return [ch[rank], ch[2 * world_size - 1 - rank]]


def _raw(x: torch.Tensor) -> torch.Tensor:
    """FP8 data as its bytes (same shape): copies, selects and collectives then need no FP8
    kernels of their own."""
    return x.view(torch.uint8) if x.element_size() == 1 and x.is_floating_point() else x


def shard_lengths(seqlen: int, world_size: int) -> List[int]:
    """Local sequence length of every rank for a global length ``seqlen``."""
    return [sum(n for _, n in _pieces(seqlen, world_size, r)) for r in range(world_size)]


def shard_sequence(x: torch.Tensor, *, group=None, rank: Optional[int] = None,
                   world_size: Optional[int] = None, dim: int = 1) -> torch.Tensor:
    """This rank's shard of the full sequence ``x`` (dimension ``dim``): chunks r and 2W-1-r.

    Pure slicing (no communication; ``rank``/``world_size`` default to the group's).
    Returns a contiguous copy.
    """
    rank, world_size = _group_rank_world(group, rank, world_size)
    (s0, n0), (s1, n1) = _pieces(x.size(dim), world_size, rank)
    xr = _raw(x)
    return torch.cat([xr.narrow(dim, s0, n0), xr.narrow(dim, s1, n1)], dim=dim).view(x.dtype)


def shard_positions(seqlen: int, *, group=None, rank: Optional[int] = None,
                    world_size: Optional[int] = None, device=None) -> torch.Tensor:
    """Global positions (int64) of this rank's rows, e.g. for rotary embeddings."""
    rank, world_size = _group_rank_world(group, rank, world_size)
    (s0, n0), (s1, n1) = _pieces(seqlen, world_size, rank)
    return torch.cat([torch.arange(s0, s0 + n0, device=device),
                      torch.arange(s1, s1 + n1, device=device)])


def unshard_sequence(x: torch.Tensor, seqlen: Optional[int] = None, *, group=None,
                     dim: int = 1) -> torch.Tensor:
    """The full sequence from every rank's shard (an all-gather; every rank gets it).

    ``seqlen`` is the global length (default ``W * x.size(dim)``: equal shards).
    """
    rank, world = _group_rank_world(group)
    seqlen = _global_seqlen(x.size(dim), seqlen, world, rank)
    lens = shard_lengths(seqlen, world)
    width = max(lens)
    xm = _raw(x).movedim(dim, 0)
    if xm.size(0) < width:
        xm = torch.cat([xm, xm.new_zeros((width - xm.size(0),) + tuple(xm.shape[1:]))])
    gathered = _wait(_c10d.all_gather_into_tensor(xm.contiguous(), world, _group_name(group)))
    shards = gathered.view((world, width) + tuple(xm.shape[1:]))
    parts: List[Optional[torch.Tensor]] = [None] * (2 * world)
    for r in range(world):
        (_, n0), (_, n1) = _pieces(seqlen, world, r)
        parts[r] = shards[r, :n0]
        parts[2 * world - 1 - r] = shards[r, n0:n0 + n1]
    return torch.cat(parts, 0).movedim(0, dim).view(x.dtype)


def _global_seqlen(local: int, seqlen: Optional[int], world: int, rank: int) -> int:
    if seqlen is None:
        seqlen = local * world
        if local % 2:
            raise ValueError(
                f"local sequence length {local} is odd, so the shards cannot be equal halves of "
                f"2W chunks: pass seqlen= (the global length)")
    expected = shard_lengths(seqlen, world)[rank]
    if local != expected:
        raise ValueError(f"rank {rank} of {world} holds {local} rows, but its shard of a "
                         f"sequence of {seqlen} has {expected} (shard_sequence layout)")
    return seqlen


# ------------------------------------------------------------- collectives ---
def _group_name(group) -> str:
    return funcol._resolve_group_name(group if group is not None else dist.group.WORLD)


def _wait(t: torch.Tensor) -> torch.Tensor:
    return _c10d.wait_tensor(t)


def _ring_send(buf: torch.Tensor, rank: int, world: int, name: str) -> torch.Tensor:
    """Start sending ``buf`` to rank+1 and receiving rank-1's (same shape); wait with _wait."""
    n = buf.size(0)
    send = [0] * world
    recv = [0] * world
    send[(rank + 1) % world] = n
    recv[(rank - 1) % world] = n
    return _c10d.all_to_all_single(buf, recv, send, name)


# ------------------------------------------------------------ argument checks ---
# Shared with distributed_varlen.py. Every check runs before any collective, so that
# every rank raises the same error instead of one rank raising while the others wait.
def _check_comm(comm: str) -> None:
    if comm not in ("on", "off", "only"):
        raise ValueError(f"_comm must be 'on', 'off' or 'only', got {comm!r}")


def _check_forward_only(fn: str, q, k, v) -> None:
    if not torch.compiler.is_compiling() and torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (q, k, v)):
        raise NotImplementedError(f"{fn} is forward only (no autograd through the KV exchange); "
                                  f"call it under torch.no_grad()")


def _window_bounds(causal: bool, window_size) -> Tuple[int, int]:
    """(left, right) of the global mask, -1 = unbounded; causal fixes right to 0."""
    left, right = int(window_size[0]), int(window_size[1])
    if left < -1 or right < -1:
        raise ValueError(f"window_size entries must be -1 or >= 0, got {window_size}")
    if causal:
        if right > 0:
            raise ValueError(f"causal=True fixes window_right to 0, got {right}")
        right = 0
    return left, right


def _check_output_args(dtype: torch.dtype, batch: int, heads_kv: int, out_dtype, out_scale,
                       q_descale, k_descale, v_descale) -> torch.dtype:
    """The output dtype; out_scale / descale arguments checked in the op's wording."""
    fp8 = dtype == torch.float8_e4m3fn
    final_dtype = out_dtype if out_dtype is not None else (torch.bfloat16 if fp8 else dtype)
    if final_dtype == torch.float8_e4m3fn and out_scale is None:
        raise ValueError("out_scale is required when out_dtype is torch.float8_e4m3fn")
    if final_dtype != torch.float8_e4m3fn and out_scale is not None:
        raise ValueError(f"out_scale applies to out_dtype torch.float8_e4m3fn only, got out_dtype {final_dtype}")
    if out_scale is not None and tuple(out_scale.shape) != (1,):
        raise ValueError(f"out_scale must be a float32 tensor of shape [1], got shape {list(out_scale.shape)}")
    for name, t in (("q_descale", q_descale), ("k_descale", k_descale), ("v_descale", v_descale)):
        if t is not None and tuple(t.shape) not in ((1,), (batch, heads_kv)):
            raise ValueError(f"{name} must have shape [1] or [B, Hkv] = [{batch}, {heads_kv}], "
                             f"got {list(t.shape)}")
    return final_dtype


# -------------------------------------------------------------------- plan ---
class _Call(NamedTuple):
    src: int      # rank whose shard holds the keys
    q0: int       # local query rows [q0, q1)
    q1: int
    k0: int       # rows [k0, k1) of the source shard
    k1: int
    left: int     # window passed to the op (bottom-right aligned on the sub-block)
    right: int


def _pair(qo: int, lq: int, ko: int, lk: int, left: int, right: int):
    """Visible part of (query rows [qo, qo+lq), key rows [ko, ko+lk)) (global positions).

    Global rule: query i sees key j iff ``lo <= j - i <= hi`` (lo = -left, hi = right; -1 =
    unbounded). Returns None (nothing visible) or ``(a0, a1, b0, b1, left', right')``: the
    rows [a0, a1) and keys [b0, b1) (relative to qo / ko) that see / are seen by anything,
    and the op's bottom-right window on that sub-block (-1 = unbounded, else >= 0).
    """
    if lq == 0 or lk == 0:
        return None
    lo = -left if left >= 0 else None
    hi = right if right >= 0 else None
    dmin, dmax = ko - (qo + lq - 1), (ko + lk - 1) - qo
    if (lo is not None and dmax < lo) or (hi is not None and dmin > hi):
        return None  # skipped
    if (lo is None or dmin >= lo) and (hi is None or dmax <= hi):
        return (0, lq, 0, lk, -1, -1)  # fully visible
    # Local rule: row a sees key b iff lo2 <= b - a <= hi2 (offsets folded in).
    off = ko - qo
    a0, a1, b0, b1 = 0, lq, 0, lk
    if lo is not None:
        lo2 = lo - off
        a1 = min(lq, lk - lo2)   # rows past this see no key
        b0 = max(0, lo2)         # keys before this are seen by no row
    if hi is not None:
        hi2 = hi - off
        a0 = max(0, -hi2)        # rows before this see no key
        b1 = min(lk, lq + hi2)   # keys past this are seen by no row
    # On the sub-block (a' = a - a0, b' = b - b0; Lq' = a1 - a0, Lk' = b1 - b0) the op's
    # rule is Lk' - Lq' - left' <= b' - a' <= Lk' - Lq' + right', and b - a = b' - a' + b0 - a0.
    diag = (b1 - b0) - (a1 - a0) + (b0 - a0)  # = b1 - a1
    new_left = -1 if lo is None else diag - (lo - off)
    new_right = -1 if hi is None else (hi - off) - diag
    if not (a1 > a0 and b1 > b0 and new_left >= -1 and new_right >= -1):
        raise AssertionError(f"torch_fmha.distributed: bad plan for {(qo, lq, ko, lk, left, right)}")
    return (a0, a1, b0, b1, new_left, new_right)


def _plan(seqlen: int, world: int, rank: int, left: int, right: int) -> List[_Call]:
    """The attention calls of ``rank``, ordered by source rank (the merge order)."""
    mine = _pieces(seqlen, world, rank)
    calls: List[_Call] = []
    for src in range(world):
        theirs = _pieces(seqlen, world, src)
        if src == rank and (left, right) == (-1, 0):
            n = sum(n for _, n in mine)  # causal on the own shard = causal in local order
            if n:
                calls.append(_Call(src, 0, n, 0, n, -1, 0))
            continue
        step: List[_Call] = []
        qbase = 0
        for qo, lq in mine:
            kbase = 0
            for ko, lk in theirs:
                p = _pair(qo, lq, ko, lk, left, right)
                if p is not None:
                    a0, a1, b0, b1, wl, wr = p
                    step.append(_Call(src, qbase + a0, qbase + a1, kbase + b0, kbase + b1, wl, wr))
                kbase += lk
            qbase += lq
        calls.extend(_join_full(step))
    return calls


def _join_full(calls: List[_Call]) -> List[_Call]:
    """Join unmasked calls that together cover a rectangle (same rows or same keys, adjacent)."""
    calls = list(calls)
    changed = True
    while changed:
        changed = False
        for i in range(len(calls)):
            for j in range(len(calls)):
                a, b = calls[i], calls[j]
                if i == j or (a.left, a.right, b.left, b.right) != (-1, -1, -1, -1):
                    continue
                joined = None
                if a.src != b.src:
                    continue
                if (a.q0, a.q1) == (b.q0, b.q1) and a.k1 == b.k0:
                    joined = _Call(a.src, a.q0, a.q1, a.k0, b.k1, -1, -1)
                elif (a.k0, a.k1) == (b.k0, b.k1) and a.q1 == b.q0:
                    joined = _Call(a.src, a.q0, b.q1, a.k0, a.k1, -1, -1)
                if joined is not None:
                    calls = [c for t, c in enumerate(calls) if t not in (i, j)] + [joined]
                    changed = True
                    break
            if changed:
                break
    return sorted(calls, key=lambda c: (c.q0, c.k0))


def _segments(calls: Sequence[_Call], n: int) -> List[Tuple[int, int, List[int]]]:
    """Split local rows [0, n) at every call boundary: (r0, r1, indices of covering calls)."""
    cuts = sorted({0, n, *(c.q0 for c in calls), *(c.q1 for c in calls)})
    segs = []
    for r0, r1 in zip(cuts[:-1], cuts[1:]):
        segs.append((r0, r1, [i for i, c in enumerate(calls) if c.q0 <= r0 and r1 <= c.q1]))
    return segs


# ----------------------------------------------------------------- forward ---
def _per_query_head(s: torch.Tensor, heads: int, heads_kv: int) -> torch.Tensor:
    """A [1] or [B, Hkv] scale as a factor for [B, rows, H, 1] / [B, H, rows] data: [B or 1, H]."""
    s = s.float()
    if s.dim() == 1:
        return s.view(1, 1)
    return s.repeat_interleave(heads // heads_kv, dim=1)


def context_parallel_attention(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, group=None, seqlen: Optional[int] = None,
        causal: bool = False, window_size: Tuple[int, int] = (-1, -1),
        softmax_scale: Optional[float] = None, q_descale: Optional[torch.Tensor] = None,
        k_descale: Optional[torch.Tensor] = None, v_descale: Optional[torch.Tensor] = None,
        out_dtype: Optional[torch.dtype] = None, out_scale: Optional[torch.Tensor] = None,
        return_lse: bool = False, kv_exchange: str = "ring", _comm: str = "on"):
    """Attention of this rank's query shard over the whole (sharded) sequence.

    Args:
        q: ``[B, S_local, H, D]``; k, v: ``[B, S_local, Hkv, D]``: this rank's shard
            (:func:`shard_sequence` layout) of one global self-attention.
        group: the process group (default: the world).
        seqlen: global sequence length; needed when S is not a multiple of 2W.
        kv_exchange: ``"ring"`` or ``"allgather"`` (module doc).
        Everything else as in :func:`torch_fmha.attention`, applied to the global
        sequence. Descales must be the same on every rank (:func:`global_descale`).

    Returns:
        ``out [B, S_local, H, D]`` (the rows of the global result this rank holds),
        or ``(out, lse)`` with lse ``[B, H, S_local]`` when ``return_lse``.
    """
    if kv_exchange not in KV_EXCHANGES:
        raise ValueError(f"kv_exchange must be one of {KV_EXCHANGES}, got {kv_exchange!r}")
    _check_comm(_comm)
    _check_forward_only("context_parallel_attention", q, k, v)
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k, v must be [B, S_local, H(kv), D] shards")
    if not (q.size(1) == k.size(1) == v.size(1)):
        raise ValueError(f"q, k, v shards must have the same length (self-attention), got "
                         f"{q.size(1)}, {k.size(1)}, {v.size(1)}")
    if k.shape != v.shape or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError("k and v must have one shape, and q, k, v one dtype")
    left, right = _window_bounds(causal, window_size)
    fp8 = q.dtype == torch.float8_e4m3fn
    final_dtype = _check_output_args(q.dtype, q.size(0), k.size(2), out_dtype, out_scale,
                                     q_descale, k_descale, v_descale)

    rank, world = _group_rank_world(group)
    seqlen = _global_seqlen(q.size(1), seqlen, world, rank)
    bsz, n_local, heads, hdim = q.shape
    heads_kv = k.size(2)
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    part_dtype = torch.float16 if fp8 else q.dtype

    calls = _plan(seqlen, world, rank, left, right)
    segs = _segments(calls, n_local)
    direct = [True] * len(calls)  # every row of the call has exactly this one partial
    for r0, r1, idx in segs:
        for i in idx:
            if len(idx) != 1:
                direct[i] = False

    # ---- KV exchange: K and V packed as bytes, [2, B, width, Hkv, D*itemsize] uint8.
    lens = shard_lengths(seqlen, world)
    width = max(lens)
    name = _group_name(group) if world > 1 else ""
    packed = None
    if world > 1 and _comm != "off":
        # Moved as bytes: byte copies and collectives need no FP8 support of their own.
        kv = torch.stack([k.view(torch.uint8), v.view(torch.uint8)])
        if n_local < width:
            kv = torch.cat([kv, kv.new_zeros((2, bsz, width - n_local) + tuple(kv.shape[3:]))], dim=2)
        packed = kv

    def unpack(buf: torch.Tensor, src: int):
        kv_s = buf.view(q.dtype)[:, :, :lens[src]]
        return kv_s[0], kv_s[1]

    def run(i: int, ks: torch.Tensor, vs: torch.Tensor):
        call, d = calls[i], direct[i]
        return attention(
            q[:, call.q0:call.q1], ks[:, call.k0:call.k1], vs[:, call.k0:call.k1],
            softmax_scale=softmax_scale, window_size=(call.left, call.right),
            q_descale=q_descale, k_descale=k_descale,
            v_descale=v_descale if (d or not fp8) else None,
            out_dtype=final_dtype if d else part_dtype,
            out_scale=out_scale if d and final_dtype == torch.float8_e4m3fn else None,
            return_lse=True)

    results = {}

    def compute(src: int, ks: torch.Tensor, vs: torch.Tensor):
        for i, c in enumerate(calls):
            if c.src == src:
                results[i] = run(i, ks, vs)

    if _comm == "only":
        # Benchmark aid: the exchange alone, no attention.
        if packed is not None:
            if kv_exchange == "allgather":
                return _wait(_c10d.all_gather_into_tensor(packed, world, name))
            buf = packed
            for _ in range(world - 1):
                buf = _wait(_ring_send(buf, rank, world, name))
            return buf
        return None

    if world == 1:
        compute(0, k, v)
    elif _comm == "off":
        # Benchmark aid: the same attention calls on stand-in (local) keys, no communication.
        for t in range(world):
            src = (rank - t) % world
            ks, vs = (k, v) if lens[src] <= n_local else _grow(k, v, lens[src])
            compute(src, ks, vs)
    elif kv_exchange == "allgather":
        pending = _c10d.all_gather_into_tensor(packed, world, name)
        compute(rank, k, v)
        gathered = _wait(pending).view((world,) + tuple(packed.shape))
        for t in range(1, world):
            src = (rank - t) % world
            compute(src, *unpack(gathered[src], src))
    else:  # ring
        buf = packed
        for t in range(world):
            src = (rank - t) % world
            pending = _ring_send(buf, rank, world, name) if t < world - 1 else None
            if t == 0:
                compute(src, k, v)
            else:
                compute(src, *unpack(buf, src))
            if pending is not None:
                buf = _wait(pending)

    # ---- merge, per row segment, partials in plan order (source rank, then rows/keys).
    vd = _per_query_head(v_descale, heads, heads_kv) if (fp8 and v_descale is not None) else None
    osc = (_per_query_head(out_scale, heads, heads_kv)
           if final_dtype == torch.float8_e4m3fn else None)
    scale = _merge_scale(vd, osc)
    scale = None if scale is None else scale[:, :, None]  # [1 or B, H, 1] against lse [B, H, n]
    outs, lses = [], []
    for r0, r1, idx in segs:
        if not idx:  # no key anywhere (cannot happen in self-attention, kept for safety)
            outs.append(q.new_zeros((bsz, r1 - r0, heads, hdim), dtype=final_dtype))
            lses.append(torch.full((bsz, heads, r1 - r0), float("-inf"), dtype=acc, device=q.device))
            continue
        parts = []
        for i in idx:
            c = calls[i]
            o, l = results[i]
            parts.append((o[:, r0 - c.q0:r1 - c.q0], l[:, :, r0 - c.q0:r1 - c.q0]))
        if len(idx) == 1 and direct[idx[0]]:
            outs.append(parts[0][0])
            lses.append(parts[0][1])
            continue
        o, l = _merge(parts, acc, scale, final_dtype)
        outs.append(o)
        lses.append(l)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    if return_lse:
        lse = lses[0] if len(lses) == 1 else torch.cat(lses, dim=2)
        return out, lse
    return out


def _grow(k: torch.Tensor, v: torch.Tensor, n: int):
    pad = k.new_zeros((k.size(0), n - k.size(1)) + tuple(k.shape[2:]))
    return torch.cat([k, pad], 1), torch.cat([v, pad], 1)


def _merge_scale(vd: Optional[torch.Tensor], osc: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The factor the merge folds into its weights: v_descale / out_scale (either may be absent)."""
    if osc is None:
        return vd
    return (1.0 / osc) if vd is None else vd / osc


def _merge(parts, acc: torch.dtype, scale: Optional[torch.Tensor], out_dtype: torch.dtype):
    """Exact LSE merge of partial (out [B, n, H, D], lse [B, H, n]) in ``acc``.

    lse = m + log(sum_i exp(lse_i - m)), out = sum_i exp(lse_i - lse) * out_i, m = max_i lse_i
    (0 where every partial is -inf: such rows give out 0, lse -inf). ``scale`` (broadcastable
    to lse, from :func:`_merge_scale`) folds v_descale and 1 / out_scale into the weights; one
    rounding to out_dtype at the end.
    """
    lse_parts = [l.to(acc) for _, l in parts]
    m = lse_parts[0]
    for l in lse_parts[1:]:
        m = torch.maximum(m, l)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    ws = [torch.exp(l - m) for l in lse_parts]
    total = ws[0]
    for w in ws[1:]:
        total = total + w
    lse = m + torch.log(total)  # -inf where total == 0
    inv = torch.where(total > 0, 1.0 / total, torch.zeros_like(total))
    out = None
    for (o, _), w in zip(parts, ws):
        wt = w * inv
        if scale is not None:
            wt = wt * scale.to(acc)
        wt = wt.transpose(1, 2).unsqueeze(-1)  # [B, n, H, 1]
        # The partial (float16 for FP8 inputs) is read as it is and widened inside the kernel
        # (type promotion; on CUDA no float32 copy of it): one read of each partial and one
        # read-modify-write of the float32 sum per partial, the eager merge's whole traffic.
        if out is None:
            out = torch.mul(o, wt)
        else:
            out.addcmul_(o, wt)
    if out_dtype == torch.float8_e4m3fn:  # saturate, as the op does
        fmax = torch.finfo(torch.float8_e4m3fn).max
        out.clamp_(-fmax, fmax)
    return out.to(out_dtype), lse


# The packed (varlen) path and the global FP8 scales live in their own modules, sharing the
# helpers above; imported last so that they find them. torch_fmha.distributed is the API.
from .distributed_varlen import (  # noqa: E402
    context_parallel_varlen_attention, shard_varlen, unshard_varlen, varlen_local_rows,
    varlen_shard_cu_seqlens, varlen_shard_positions)
from .distributed_scales import (  # noqa: E402
    global_descale, global_descale_varlen, quantize_fp8_global, quantize_fp8_global_varlen)
