"""Inputs of attention_with_kvcache tests (CPU and tests/gpu/test_kvcache_sm90.py).

Built on ``inputs.paged_inputs``: the same keys as a dense cache ``[B, Smax, Hkv, D]``
or as a page pool with scattered pages. Everything a call must not read is NaN
or garbage: cache rows past ``cache_seqlens[b]`` (and 3 rows past Smax), every
other head (strided views), the pool's unused pages and last-page rows, and
page-table entries past a sequence's pages (-1, ids past the pool).
"""

from __future__ import annotations

import torch

from inputs import paged_inputs, poisoned_view


def kvcache_inputs(b, sq, h, hkv, d, dtype, lens, *, smax=None, page_size=None, device="cpu", seed=0):
    """-> (q [B, Sq, H, D], k_cache, v_cache, cache_seqlens int32 [B], page_table or None, scales).
    Dense unless ``page_size``; ``smax`` defaults to max(lens) + 5."""
    q, _, kc, vc, used, table, scales = packed_kvcache_inputs([sq] * b, h, hkv, d, dtype, lens, smax=smax,
                                                              page_size=page_size, device=device, seed=seed)
    return q.view(b, sq, h, d), kc, vc, used, table, scales


def packed_kvcache_inputs(lens_q, h, hkv, d, dtype, lens, *, smax=None, page_size=None, device="cpu", seed=0):
    """Packed q: sequence b has ``lens_q[b]`` query rows. -> (q [Tq, H, D], cu_seqlens_q int32
    [B + 1], k_cache, v_cache, cache_seqlens, page_table or None, scales), the caches as in
    ``kvcache_inputs``."""
    q, kp, vp, cu_q, used, table, scales, (k, v, cu_k) = paged_inputs(
        list(lens_q), lens, h, hkv, d, dtype, page_size or 16, device=device, seed=seed)
    if page_size:
        return q, cu_q, kp, vp, used, table, scales
    b = len(lens)
    smax = max(lens, default=0) + 5 if smax is None else smax
    caches = []
    for x in (k, v):
        cache = torch.full((b, smax, hkv, d), float("nan"), device=device).to(dtype)
        for i, n in enumerate(lens):
            cache[i, :n] = x[int(cu_k[i]):int(cu_k[i]) + n]
        caches.append(poisoned_view(cache, 2))
    return q, cu_q, caches[0], caches[1], used, None, scales
