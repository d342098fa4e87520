"""Shape rules and fake kernel of ``torch_fmha::fwd_kvcache`` (decode against a KV cache).

Mirrors ``csrc/ops/kvcache_checks.cpp`` message for message, in the same order
(the shared rules come from ``checks.py`` under this op's argument names).
Value checks (cache_seqlens bounds, page ids, cu_seqlens_q values) read data
and are the C++ kernel's alone (CPU tensors only).

    out [B, Sq, H, D] contiguous (out_dtype), lse [B, H, Sq]   (dense q)
    out [Tq, H, D],                           lse [H, Tq]      (packed q, cu_seqlens_q)
"""

from __future__ import annotations

import torch

from .checks import (FwdProblem, _check, _check_cu_seqlens_meta, _check_options, _check_page_table_meta,
                     _check_qkv, _check_rank, _check_same_device, lse_dtype, shape_str)

OP = "torch_fmha.fwd_kvcache"


def _rows_per_batch(op, name, t):
    if t.size(0) <= 1:
        return t.size(1)
    row, batch = t.stride(1), t.stride(0)
    _check(row > 0 and batch % row == 0 and batch // row >= t.size(1), op,
           f"{name} must have a batch stride that is a whole number of rows, at least its {t.size(1)} rows "
           f"(the cache is read as one buffer of rows), got strides {shape_str(t.stride())}")
    return batch // row


def check_kvcache(op, q, k_cache, v_cache, cache_seqlens, page_table=None, cu_seqlens_q=None,
                  max_seqlen_q=None, softmax_scale=None, causal=False, window_left=-1, window_right=-1,
                  softcap=0.0, sinks=None, q_descale=None, k_descale=None, v_descale=None, out_scale=None,
                  out_dtype=None, num_splits=0) -> FwdProblem:
    packed_q, paged = cu_seqlens_q is not None, page_table is not None
    if packed_q:
        _check_rank(op, "q", q, 3, "[total_q, heads, head_dim] (cu_seqlens_q is given)")
    else:
        _check_rank(op, "q", q, 4, "[batch, seqlen_q, heads, head_dim]")
    cache_dims = ("[num_pages, page_size, heads_kv, head_dim] (a page pool: page_table is given)" if paged
                  else "[batch, seqlen_cache, heads_kv, head_dim]")
    _check_rank(op, "k_cache", k_cache, 4, cache_dims)
    _check_rank(op, "v_cache", v_cache, 4, cache_dims)
    _check_qkv(op, q, k_cache, v_cache, "k_cache", "v_cache")
    batch, batch_from = q.size(0), "q.size(0)"
    if packed_q:
        _check_cu_seqlens_meta(op, "cu_seqlens_q", cu_seqlens_q, q)
        batch, batch_from = cu_seqlens_q.size(0) - 1, "cu_seqlens_q.size(0) - 1"
    _check(cache_seqlens.dtype == torch.int32, op,
           f"cache_seqlens must have dtype torch.int32, got {cache_seqlens.dtype}")
    _check(cache_seqlens.dim() == 1 and cache_seqlens.size(0) == batch, op,
           f"cache_seqlens must have shape [batch] = [{batch}], got {shape_str(cache_seqlens.shape)}")
    _check(cache_seqlens.stride(0) == 1, op, f"cache_seqlens must be contiguous, got stride {cache_seqlens.stride(0)}")
    _check_same_device(op, "cache_seqlens", cache_seqlens, q)
    p = FwdProblem(batch, q.size(0) if packed_q else q.size(1), 0, q.size(-2), k_cache.size(-2), q.size(-1),
                   paged=paged)
    if paged:
        _check_page_table_meta(op, p, q, k_cache, "k_cache", page_table)
        p.seqlen_k = p.page_size * page_table.size(1)
    else:
        _check(k_cache.size(0) == batch, op,
               f"k_cache has batch size {k_cache.size(0)}, expected {batch} ({batch_from})")
        rows = _rows_per_batch(op, "k_cache", k_cache)
        v_rows = _rows_per_batch(op, "v_cache", v_cache)
        _check(v_rows == rows, op,
               f"v_cache's batch stride is {v_rows} rows but k_cache's is {rows}; they must be equal "
               "(one set of sequence offsets serves both)")
        p.seqlen_k = k_cache.size(1)
    _check(max_seqlen_q is None or max_seqlen_q >= 0, op, f"max_seqlen_q must be >= 0, got {max_seqlen_q or 0}")
    _check(num_splits >= 0, op, f"num_splits must be >= 0 (0: chosen from the shapes), got {num_splits}")
    _check_options(op, p, q, softmax_scale, causal, window_left, window_right,
                   q_descale, k_descale, v_descale, out_scale, out_dtype, softcap, sinks)
    return p


def fwd_kvcache_fake(q, k_cache, v_cache, cache_seqlens, page_table, cu_seqlens_q, max_seqlen_q,
                     softmax_scale, causal, window_left, window_right, softcap, sinks,
                     q_descale, k_descale, v_descale, out_scale, out_dtype,
                     num_splits):
    p = check_kvcache(OP, q, k_cache, v_cache, cache_seqlens, page_table, cu_seqlens_q, max_seqlen_q,
                      softmax_scale, causal, window_left, window_right, softcap, sinks, q_descale, k_descale,
                      v_descale, out_scale, out_dtype, num_splits)
    if cu_seqlens_q is not None:
        out_shape, lse_shape = (p.seqlen_q, p.heads_q, p.head_dim), (p.heads_q, p.seqlen_q)
    else:
        out_shape, lse_shape = (p.batch, p.seqlen_q, p.heads_q, p.head_dim), (p.batch, p.heads_q, p.seqlen_q)
    return q.new_empty(out_shape, dtype=p.out_dtype), q.new_empty(lse_shape, dtype=lse_dtype(q))


def register() -> None:
    """Attach the fake kernel to the C++ op (idempotent per process)."""
    torch.library.register_fake("torch_fmha::fwd_kvcache", fwd_kvcache_fake)
