"""attention_with_kvcache (issue 15) on the SM90 FP8 kernel.

The op is a C++ composition (csrc/ops/kvcache_op.cpp) of the varlen kernel, ATen ops
and the split merge kernel (csrc/kernel/merge_splits.cuh); these tests run it on CUDA against the float64 oracle (reference.kvcache_attention_ref)
with the tolerance rule of docs/DESIGN.md section 8: max|out - ref| <= 2 max|emul - ref| + eps,
emul = the kernel's rounding on the unsplit problem (emulate.emulate_fp8_kernel per
sequence; a split changes which max P is scaled by, not the size of the e4m3 rounding),
rounded to the output dtype. Caches are NaN past cache_seqlens, in padding heads, unused
pages and last-page rows; page tables hold garbage past each sequence's pages
(tests/kvcache_inputs.py). Also: bitwise reproducibility at a fixed num_splits, a CUDA
graph replayed with new cache_seqlens and cache contents (bitwise = eager), no host sync,
opcheck. Runs in well under 90 s on an H100 (lead: measure and note it).
"""

from __future__ import annotations

import math

import pytest
import torch

import torch_fmha
from torch_fmha.bench_decode import capture_graph
from emulate import emulate_fp8_kernel
from kvcache_inputs import kvcache_inputs, packed_kvcache_inputs
from nan_cases import assert_same_pattern, set_value
from opcheck_samples import FP8_UTILS, kvcache_samples
from reference import (FP8, assert_close_by_rule, kvcache_attention_ref, output_as_float64, round_output,
                       sequence_keys)


def _sinks(h, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(h, generator=g) * 2
    s[0] = -math.inf
    return s.cuda()


def _lens(b, hi, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, hi + 1, (b,), generator=g).tolist()


def _emulate(q, kc, vc, seqlens, table, s, **kw):
    """emulate_fp8_kernel per sequence on its cache keys -> float64 [B, Sq, H, D]."""
    lens = seqlens.tolist()
    out = torch.zeros(q.shape, dtype=torch.float64, device=q.device)
    for b, n in enumerate(lens):
        if table is not None:
            kb = sequence_keys(kc, b, seqused_k=lens, page_table=table.cpu())
            vb = sequence_keys(vc, b, seqused_k=lens, page_table=table.cpu())
        else:
            kb, vb = kc[b, :n], vc[b, :n]
        if n == 0:
            continue
        sel = {name: (t if t.numel() == 1 else t[b:b + 1]) for name, t in s.items()}
        out[b] = emulate_fp8_kernel(q[b:b + 1], kb[None], vb[None], **sel, **kw)[0]
    return out


def check(out, lse, q, kc, vc, seqlens, table, s, out_scale=None, case="", **kw):
    torch.cuda.synchronize()
    ref, ref_lse = kvcache_attention_ref(q, kc, vc, seqlens, page_table=table, **s, **kw)
    emul = round_output(_emulate(q, kc, vc, seqlens, table, s, **kw), out.dtype, out_scale)
    got = output_as_float64(out, out_scale)
    assert not torch.isnan(got).any(), f"{case}: NaN in out (a read past cache_seqlens, or an unwritten row)"
    stats = assert_close_by_rule(got, ref, emul, eps=1e-3, what=case)
    assert not torch.isnan(lse).any(), f"{case}: NaN in lse"
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse)), f"{case}: lse inf pattern"
    fin = torch.isfinite(ref_lse)
    if fin.any():
        assert (lse.double()[fin] - ref_lse[fin]).abs().max() < 2e-2, f"{case}: lse"
    return stats


# (id, B, Sq, H, Hkv, D, lens, page_size, options, num_splits): the CPU sweep's FP8 cases
# (tests/test_kvcache.py) with the kernel's head dims, plus long caches.
SWEEP = [
    ("b1_g1_129", 1, 1, 8, 8, 64, [129], None, {}, 0),
    ("b1_g4_4k_causal", 1, 1, 32, 8, 128, [4096], None, dict(causal=True), 0),
    ("b1_g4_4k_split16", 1, 1, 32, 8, 128, [4000], 64, dict(causal=True), 16),
    ("b3_g8_sinks", 3, 1, 16, 2, 128, [0, 1, 127], None, dict(causal=True, sinks=True), 3),
    ("b5_g16_paged_softcap", 5, 1, 16, 1, 64, [129, 0, 1, 127, 300], 16, dict(softcap=30.0), 4),
    ("rows8_sq2_causal", 2, 2, 8, 2, 128, [1, 129], None, dict(causal=True), 2),
    ("rows28_sq7_causal_paged", 3, 7, 8, 2, 128, [0, 6, 3000], 16, dict(causal=True, sinks=True), 4),
    ("sq17_causal_tail_paged", 3, 17, 8, 2, 128, [0, 16, 3000], 16, dict(causal=True, sinks=True), 4),
    ("sq65_causal_tail_paged", 2, 65, 4, 2, 128, [64, 400], 32, dict(causal=True), 5),
    ("sq4_causal_one_split", 2, 4, 8, 2, 128, [9, 200], None, dict(causal=True), 1),
    ("rows28_sq7_paged_window", 2, 7, 4, 1, 128, [0, 127], 32, dict(causal=True, window_size=(20, 0)), 0),
    ("sq17_paged_window_masked_plan", 2, 17, 4, 1, 128, [0, 127], 32, dict(causal=True, window_size=(20, 0)), 0),
    ("rows64_sq64_nomask", 4, 64, 4, 4, 64, [64, 129, 1, 0], None, {}, 3),
    ("sq65_split_nomask", 4, 65, 4, 4, 64, [65, 129, 1, 0], None, {}, 3),
    ("sq65_causal", 2, 65, 4, 2, 256, [65, 300], None, dict(causal=True), 0),
    ("b64_g4", 64, 1, 32, 8, 128, _lens(64, 1000, 1), None, dict(causal=True), 0),
    ("b64_g8_paged", 64, 1, 64, 8, 128, _lens(64, 600, 3), 128, dict(causal=True), 2),
    ("b16_d256_paged_sinks", 16, 1, 16, 4, 256, _lens(16, 200, 2), 64, dict(sinks=True), 0),
    ("b9_paged256", 9, 1, 8, 1, 128, _lens(9, 600, 4), 256, dict(causal=True), 3),
    ("window_dense_split", 3, 1, 8, 2, 128, [0, 40, 300], None, dict(window_size=(50, 0)), 3),
    ("window_paged_masked", 3, 1, 8, 2, 128, [0, 40, 300], 16, dict(window_size=(50, 0), sinks=True), 3),
    ("fp8_out", 2, 1, 8, 2, 128, [77, 260], None, dict(causal=True, out_dtype=FP8), 3),
    # Sq > 1 on the decode kernel (Sq x G <= 16 rows): per-row bottom-right masks, rows that see
    # no key (L < Sq), padding rows past Sq x G, G not dividing 8 (a query row across g / g + 8).
    ("sq3_g4_window_decode", 3, 3, 16, 4, 128, [0, 2, 700], None, dict(causal=True, window_size=(20, 0)), 3),
    ("sq2_g8_paged_window_right_sinks", 2, 2, 16, 2, 64, [1, 300], 16, dict(window_size=(40, 1), sinks=True), 4),
    ("sq5_g3_d256_causal_decode", 2, 5, 15, 5, 256, [3, 1000], None, dict(causal=True), 0),
    ("sq16_g1_paged_causal_decode", 2, 16, 2, 2, 128, [10, 500], 64, dict(causal=True), 2),
    ("sq4_g2_nomask_decode", 2, 4, 4, 2, 64, [0, 129], None, {}, 0),
    # More split counts: 9 and 13 (13 with Sq x G = 12 rows), 16 with sinks, FP8 out, an empty
    # and a one-key sequence (session 34 added them for a merge inside the decode grid, since
    # removed: DESIGN 1.11).
    ("split16_sinks_fp8", 3, 1, 8, 2, 128, [5000, 0, 1], None, dict(causal=True, sinks=True, out_dtype=FP8), 16),
    ("split9_paged_sq2", 2, 2, 16, 4, 64, [2100, 33], 16, dict(causal=True, sinks=True), 9),
    ("split13_sq3_window", 2, 3, 16, 4, 128, [4000, 700], 64, dict(causal=True, window_size=(1500, 0)), 13),
    # More than 32 splits: the merge kernel's split LSEs in chunks of 32 lanes (a partial last
    # chunk, empty splits in the short row), D = 64 / 256 (2 / 8 elements per lane).
    ("b2_d64_split40_sinks", 2, 1, 8, 2, 64, [3000, 100], None, dict(causal=True, sinks=True), 40),
    ("b1_d256_split70", 1, 1, 8, 2, 256, [5000], None, dict(causal=True), 70),
    # Row tiles (session 35): Sq x G of 17-64 rows on the decode kernel, one CTA per 16 rows and
    # split (17 rows: a second tile of one row; GQA 8 with Sq = 4 / 8, GQA 16 with Sq = 3).
    ("rows17_sq17_g1", 2, 17, 4, 4, 128, [16, 900], None, dict(causal=True), 3),
    ("rows32_g8_sq4_paged_sinks", 3, 4, 64, 8, 128, [0, 5, 2500], 32, dict(causal=True, sinks=True), 0),
    ("rows64_g8_sq8_window_d256", 2, 8, 16, 2, 256, [7, 1500], None, dict(causal=True, window_size=(300, 0)), 5),
    ("rows48_g16_sq3_fp8_d64", 2, 3, 32, 2, 64, [2, 4000], 16, dict(causal=True, out_dtype=FP8), 0),
    ("rows64_g8_sq8_softcap_split9", 1, 8, 8, 1, 128, [3000], None, dict(causal=True, softcap=30.0), 9),
]


@pytest.mark.parametrize("case", SWEEP, ids=[c[0] for c in SWEEP])
def test_vs_oracle(case):
    name, b, sq, h, hkv, d, lens, page, opts, splits = case
    q, kc, vc, seqlens, table, s = kvcache_inputs(b, sq, h, hkv, d, FP8, lens, page_size=page, device="cuda",
                                                  seed=b + sq)
    opts = dict(opts)
    if opts.pop("sinks", False):
        opts["sinks"] = _sinks(h, seed=b)
    out_scale = None
    if opts.get("out_dtype") == FP8:
        out_scale = opts["out_scale"] = torch.tensor([0.02], device="cuda")
    out, lse = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, page_table=table, num_splits=splits,
                                                 return_lse=True, **s, **opts)
    opts.pop("out_dtype", None), opts.pop("out_scale", None)
    check(out, lse, q, kc, vc, seqlens, table, s, out_scale, case=name, **opts)


def test_128k_cache_one_case():
    """B = 1, 131072 keys, Hkv = 8, GQA 4, the op's own split count."""
    n = 131072
    q, kc, vc, seqlens, table, s = kvcache_inputs(1, 1, 32, 8, 128, FP8, [n - 3], smax=n, device="cuda", seed=9)
    out, lse = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, causal=True, return_lse=True, **s)
    check(out, lse, q, kc, vc, seqlens, table, s, case="128k", causal=True)


def test_packed_q_vs_oracle():
    from inputs import paged_inputs

    q, kp, vp, cu_q, used, table, s, _ = paged_inputs([1, 0, 5, 130], [40, 7, 0, 300], 8, 2, 128, FP8, 16,
                                                      device="cuda", seed=5)
    out, lse = torch_fmha.attention_with_kvcache(q, kp, vp, used, page_table=table, cu_seqlens_q=cu_q,
                                                 causal=True, return_lse=True, **s)
    torch.cuda.synchronize()
    ref, ref_lse = kvcache_attention_ref(q, kp, vp, used, page_table=table, cu_seqlens_q=cu_q, causal=True, **s)
    assert not torch.isnan(out.double()).any()
    assert (out.double() - ref).abs().max() < 0.1 * ref.abs().max()
    fin = torch.isfinite(ref_lse)
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse)) and (lse.double()[fin] - ref_lse[fin]).abs().max() < 2e-2


# Packed q on the decode kernel (session 36): (id, lens_q, H, Hkv, D, cache lens, page size,
# max_seqlen_q hint, options, num_splits). Ragged Sq_b with empty sequences; hints equal to,
# above and below the longest sequence (below: a CTA takes several row tiles in turn,
# DecodeRows::kPacked); a hint of 0; per-sequence descales (the merge's v_descale per token).
PACKED = [
    ("decode_batch_g4", [1, 1, 1, 1], 32, 8, 128, [3000, 1, 0, 2049], None, 1, dict(causal=True), 3),
    ("ragged_g8_window_sinks", [0, 3, 7, 2], 16, 2, 128, [0, 40, 900, 129], None, 7,
     dict(causal=True, window_size=(100, 0), sinks=True), 4),
    ("hint_too_small_paged16_softcap_fp8", [2, 5, 0, 1], 16, 4, 64, [33, 700, 5, 1], 16, 2,
     dict(softcap=30.0, out_dtype=FP8), 2),
    ("hint_above_paged64_d256", [1, 4], 8, 4, 256, [1500, 65], 64, 8, dict(causal=True), 1),
    ("hint0_g16_paged32", [1, 0, 1], 16, 1, 128, [64, 10, 0], 32, 0, dict(window_size=(20, 3)), 5),
    ("rows64_g16_sq4_split13", [4, 4, 3], 32, 2, 128, [4000, 17, 2600], None, 4, dict(causal=True), 13),
    # Two row tiles per split from the hint (3 x G 8 = 24 rows) and a 56-row sequence: its two
    # CTAs per split take tiles 0, 2 and 1, 3 (the loop's step of row_tiles tiles).
    ("two_row_tiles_loop_paged32_sinks", [7, 1, 3, 0], 16, 2, 128, [900, 40, 3000, 7], 32, 3,
     dict(causal=True, sinks=True), 4),
]


def _packed_case(case, num_splits=None):
    name, lens_q, h, hkv, d, lens, page, hint, opts, splits = case
    q, cu_q, kc, vc, seqlens, table, s = packed_kvcache_inputs(lens_q, h, hkv, d, FP8, lens, page_size=page,
                                                               device="cuda", seed=len(lens_q) + d)
    opts = dict(opts)
    if opts.pop("sinks", False):
        opts["sinks"] = _sinks(h, seed=3)
    if opts.get("out_dtype") == FP8:
        opts["out_scale"] = torch.tensor([0.02], device="cuda")
    splits = splits if num_splits is None else num_splits
    return q, cu_q, kc, vc, seqlens, table, s, opts, hint, splits


@pytest.mark.parametrize("case", PACKED, ids=[c[0] for c in PACKED])
def test_packed_q_decode_kernel_equals_each_sequence_alone(case):
    """A packed-q step on the decode kernel == each sequence's rows as a dense-q step of its own
    (batch 1, its cache row or pages, its descales), bitwise, at the same split count: the same
    split ranges, row tiles and merge arithmetic per row (the dense steps' oracle sweep is
    test_vs_oracle). Nothing NaN leaks from the poisoned caches."""
    q, cu_q, kc, vc, seqlens, table, s, opts, hint, splits = _packed_case(case)
    out, lse = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, page_table=table, cu_seqlens_q=cu_q,
                                                 max_seqlen_q=hint, num_splits=splits, return_lse=True, **s, **opts)
    torch.cuda.synchronize()
    assert out.shape == q.shape and lse.shape == (q.size(1), q.size(0))
    assert not torch.isnan(out.float()).any() and not torch.isnan(lse).any()
    cu = cu_q.tolist()
    for b in range(len(cu) - 1):
        if cu[b + 1] == cu[b]:
            continue
        sel = {n: (t if t.numel() == 1 else t[b:b + 1]) for n, t in s.items()}
        kb, vb = (kc, vc) if table is not None else (kc[b:b + 1], vc[b:b + 1])
        want, want_lse = torch_fmha.attention_with_kvcache(
            q[cu[b]:cu[b + 1]][None], kb, vb, seqlens[b:b + 1], page_table=None if table is None else table[b:b + 1],
            num_splits=splits, return_lse=True, **sel, **opts)
        assert torch.equal(out[cu[b]:cu[b + 1]], want[0]), f"{case[0]}: sequence {b} out"
        assert torch.equal(lse[:, cu[b]:cu[b + 1]], want_lse[0]), f"{case[0]}: sequence {b} lse"


@pytest.mark.parametrize("case", PACKED, ids=[c[0] for c in PACKED])
def test_packed_q_decode_kernel_vs_oracle(case):
    """The op's own split count (num_splits=0) against the float64 oracle: every row within the
    FP8 kernel's error of it (the bound of test_packed_q_vs_oracle), LSE within 2e-2."""
    q, cu_q, kc, vc, seqlens, table, s, opts, hint, _ = _packed_case(case, num_splits=0)
    out, lse = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, page_table=table, cu_seqlens_q=cu_q,
                                                 max_seqlen_q=hint, return_lse=True, **s, **opts)
    torch.cuda.synchronize()
    out_scale = opts.pop("out_scale", None)
    opts.pop("out_dtype", None)
    ref, ref_lse = kvcache_attention_ref(q, kc, vc, seqlens, page_table=table, cu_seqlens_q=cu_q, **s, **opts)
    got = output_as_float64(out, out_scale)
    assert not torch.isnan(got).any()
    assert (got - ref).abs().max() <= 0.1 * ref.abs().max() + 1e-3, case[0]
    fin = torch.isfinite(ref_lse)
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse)), case[0]
    if fin.any():
        assert (lse.double()[fin] - ref_lse[fin]).abs().max() < 2e-2, case[0]


def test_packed_q_takes_the_decode_kernel_with_a_hint():
    """Packed q with max_seqlen_q x G <= 64 runs the decode kernel and the merge, two launches,
    with [1] and with per-sequence [B, Hkv] descales (the decode kernel copies v_descale per
    token itself: a gather by ATen ops cost 9-12 us per step); without a hint, or with one past
    64 rows, the plans (varlen_fwd) as before."""
    q, cu_q, kc, vc, seqlens, table, s = packed_kvcache_inputs([1, 3, 0, 2], 32, 8, 128, FP8, [3000, 1, 0, 2049],
                                                               device="cuda", seed=2)
    scalar = {n: t[:1, :1].reshape(1).contiguous() for n, t in s.items()}

    def kernels(scales, **kw):
        run = lambda: torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, cu_seqlens_q=cu_q, causal=True,
                                                        **scales, **kw)
        run()
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            run()
            torch.cuda.synchronize()
        return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]

    names = kernels(scalar, max_seqlen_q=3)  # the merge writes the LSE as [H, Tq] itself: no copy after it
    assert sum("decode_kernel" in n for n in names) == 1 and sum("merge_splits_kernel" in n for n in names) == 1
    assert len(names) == 2, names
    names = kernels(s, max_seqlen_q=3)
    assert sum("decode_kernel" in n for n in names) == 1 and len(names) == 2, names
    for kw in (dict(), dict(max_seqlen_q=17)):  # 17 x G 4 = 68 rows
        names = kernels(s, **kw)
        assert not any("decode_kernel" in n for n in names), (kw, names)


def test_packed_q_strided_descales():
    """[B, Hkv] descales that are not contiguous (a transposed copy's view, an expanded row) give
    bitwise the contiguous ones' result: the decode kernel reads them through their strides,
    v_descale into its per-token copy for the merge."""
    q, cu_q, kc, vc, seqlens, table, s = packed_kvcache_inputs([2, 0, 3, 1], 16, 4, 128, FP8, [700, 5, 2100, 40],
                                                               page_size=64, device="cuda", seed=8)
    strided = {n: t.t().contiguous().t() for n, t in s.items()}
    assert not strided["v_descale"].is_contiguous()
    row = {n: t[1:2].expand_as(t) for n, t in s.items()}  # every sequence sequence 1's descales

    def run(scales):
        return torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, page_table=table, cu_seqlens_q=cu_q,
                                                 max_seqlen_q=3, causal=True, num_splits=3, return_lse=True,
                                                 **scales)

    for a, b in ((s, strided), (row, {n: t.contiguous() for n, t in row.items()})):
        out_a, lse_a = run(a)
        out_b, lse_b = run(b)
        torch.cuda.synchronize()
        assert torch.equal(out_a, out_b) and torch.equal(lse_a, lse_b)


def test_packed_q_cuda_graph_replay_with_new_cu_seqlens_q():
    """cu_seqlens_q is read on the device only: a captured packed step replayed with new query
    lengths (same Tq), cache_seqlens and contents == eager, bitwise."""
    q, cu_q, kc, vc, seqlens, table, s = packed_kvcache_inputs([1, 2, 1, 0], 32, 8, 128, FP8, [3000, 1, 0, 2049],
                                                               smax=4096, page_size=64, device="cuda", seed=4)

    def run():
        return torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, page_table=table, cu_seqlens_q=cu_q,
                                                 max_seqlen_q=2, causal=True, return_lse=True, **s)

    graph, (out, lse) = capture_graph(run)
    gen = torch.Generator().manual_seed(5)
    capacity = table.size(1) * 64
    for cu, lens in (([0, 0, 4, 4, 4], [7, 2000, 0, 1]), ([0, 1, 2, 3, 4], [capacity, 0, 129, 1])):
        cu_q.copy_(torch.tensor(cu, dtype=torch.int32))
        seqlens.copy_(torch.tensor(lens, dtype=torch.int32))
        for t in (q, kc, vc):
            t.copy_(_fp8_like(t, gen))
        table.copy_(torch.randint(0, kc.size(0), table.shape, generator=gen, dtype=torch.int32))
        graph.replay()
        torch.cuda.synchronize()
        want, want_lse = run()
        assert torch.isfinite(want.float()).all()
        assert torch.equal(out, want) and torch.equal(lse, want_lse), f"replay with cu_seqlens_q {cu}"


@pytest.mark.parametrize("packed", [False, True], ids=["dense_q", "packed_q"])
def test_bad_page_id_reads_zeros_not_outside_the_pool(packed):
    """A page id outside [0, num_pages) in a page the decode kernel reads (the CPU op rejects it;
    debug builds assert): the release build reads that page as zeros, as the prefill kernel's TMA
    does, never memory outside the pool. Bitwise the same call with those entries pointing at an
    all-zero page of the pool; no CUDA error, nothing NaN."""
    lens_q = [1, 2, 1] if packed else [1, 1, 1]
    q, cu_q, kp, vp, seqlens, table, s = packed_kvcache_inputs(lens_q, 16, 4, 128, FP8, [300, 200, 90],
                                                               page_size=16, device="cuda", seed=6)
    if not packed:
        q = q.view(3, 1, 16, 128)
    kw = dict(cu_seqlens_q=cu_q, max_seqlen_q=2) if packed else {}
    # The pools with one all-zero page appended (id zero_page); every other byte as before.
    zero = torch.zeros((1,) + tuple(kp.shape[1:]), dtype=torch.uint8, device="cuda")
    kz, vz = (torch.cat([t.view(torch.uint8), zero]).view(FP8) for t in (kp, vp))
    zero_page = kp.size(0)
    bad, to_zero = table.clone(), table.clone()
    bad[0, 3], bad[1, 0] = zero_page + 1000, -7   # outside [0, zero_page]
    to_zero[0, 3], to_zero[1, 0] = zero_page, zero_page

    def run(t):
        return torch_fmha.attention_with_kvcache(q, kz, vz, seqlens, page_table=t, causal=True, num_splits=2,
                                                 return_lse=True, **kw, **s)

    out, lse = run(bad)
    want, want_lse = run(to_zero)
    torch.cuda.synchronize()
    assert torch.isfinite(out.float()).all() and torch.isfinite(lse).all()
    assert torch.equal(out, want) and torch.equal(lse, want_lse)


def _decode_inputs(page_size=None, seed=0):
    return kvcache_inputs(4, 1, 32, 8, 128, FP8, [3000, 1, 0, 2049], smax=4096, page_size=page_size,
                          device="cuda", seed=seed)


@pytest.mark.parametrize("page_size", [None, 64], ids=["dense", "paged"])
def test_fixed_num_splits_is_bitwise_reproducible(page_size):
    q, kc, vc, seqlens, table, s = _decode_inputs(page_size)
    sinks = _sinks(32)
    for n in (1, 5, 0, 16, 20):
        runs = [torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, page_table=table, sinks=sinks, causal=True,
                                                  num_splits=n, return_lse=True, **s) for _ in range(3)]
        for out, lse in runs[1:]:
            assert torch.equal(out, runs[0][0]) and torch.equal(lse, runs[0][1]), f"num_splits={n}"


def _fp8_like(t, gen):
    return torch.randn(t.shape, generator=gen).mul_(4).to(FP8).to(t.device)


def _graph_case(page_size, num_splits, sq):
    """A captured decode step; replays with new cache_seqlens, q, cache contents (and a new page
    table) == eager on the same tensors, bitwise."""
    b, h, hkv, d = 4, 32, 8, 128
    q, kc, vc, seqlens, table, s = kvcache_inputs(b, sq, h, hkv, d, FP8, [3000, 1, 0, 2049], smax=4096,
                                                  page_size=page_size, device="cuda", seed=1)
    sinks = _sinks(h)

    def run():
        return torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, page_table=table, sinks=sinks, causal=True,
                                                 num_splits=num_splits, return_lse=True, **s)

    graph, (out, lse) = capture_graph(run)
    capacity = kc.size(1) if table is None else table.size(1) * page_size
    gen = torch.Generator().manual_seed(5)
    for lens in ([capacity, 0, 129, 1], [1, capacity - 70, 2048, 77]):
        seqlens.copy_(torch.tensor(lens, dtype=torch.int32))
        for t in (q, kc, vc):
            t.copy_(_fp8_like(t, gen))
        if table is not None:  # every column a valid page: any length up to the capacity reads real pages
            table.copy_(torch.randint(0, kc.size(0), table.shape, generator=gen, dtype=torch.int32))
        graph.replay()
        torch.cuda.synchronize()
        want, want_lse = run()
        assert torch.isfinite(want.float()).all()
        assert torch.equal(out, want) and torch.equal(lse, want_lse), f"replay with cache_seqlens {lens}"


@pytest.mark.parametrize("page_size", [None, 64], ids=["dense", "paged"])
@pytest.mark.parametrize("num_splits", [0, 6])
def test_cuda_graph_replay_with_new_cache_seqlens(page_size, num_splits):
    _graph_case(page_size, num_splits, sq=1)


def test_cuda_graph_replay_masked_plan():
    _graph_case(64, 0, sq=17)  # Sq > 1 causal past the decode kernel's 64 rows (17 x G 4): the masked plan


@pytest.mark.parametrize("page_size", [None, 64], ids=["dense", "paged"])
def test_cuda_graph_replay_tail_plan(page_size):
    # Sq > 1 causal with 4 splits, 68 rows (no decode kernel): 3 unmasked chunks + the masked tail
    # (a second varlen_fwd call, after a leading empty sequence when dense), merged; all offsets
    # from cache_seqlens.
    _graph_case(page_size, 4, sq=17)


@pytest.mark.parametrize("page_size", [None, 64], ids=["dense", "paged"])
def test_cuda_graph_replay_decode_kernel_row_tiles(page_size):
    # Sq = 7 x G 4 = 28 rows: the decode kernel with two 16-row tiles per split.
    _graph_case(page_size, 0, sq=7)


@pytest.mark.parametrize("page_size", [None, 64], ids=["dense", "paged"])
def test_cuda_graph_replay_decode_kernel_sq3(page_size):
    # Sq = 3 x G 4 = 12 rows: the decode kernel with its per-row causal mask.
    _graph_case(page_size, 0, sq=3)


@pytest.mark.parametrize("page_size", [None, 64], ids=["dense", "paged"])
def test_no_host_sync(page_size):
    q, kc, vc, seqlens, table, s = _decode_inputs(page_size)
    sinks = _sinks(32)  # made before the checked region (a host-to-device copy syncs)
    out_scale = torch.tensor([0.02], device="cuda")
    q3 = q.view(torch.uint8).repeat(1, 3, 1, 1).view(FP8)  # Sq = 3 (made before the checked region)
    q5 = q.view(torch.uint8).repeat(1, 5, 1, 1).view(FP8)  # Sq = 5: 20 rows, two row tiles
    q17 = q.view(torch.uint8).repeat(1, 17, 1, 1).view(FP8)  # Sq = 17: 68 rows, past the decode kernel
    calls = [dict(num_splits=0), dict(num_splits=1), dict(num_splits=4, sinks=sinks),
             dict(num_splits=3, out_dtype=FP8, out_scale=out_scale), dict(window_size=(100, 0)),
             dict(q=q3, num_splits=0, sinks=sinks), dict(q=q3, window_size=(100, 0)),  # decode kernel, Sq = 3
             dict(q=q5, num_splits=0, sinks=sinks),  # decode kernel, two row tiles
             dict(q=q17, num_splits=4, sinks=sinks), dict(q=q17, num_splits=1)]  # tail plan, masked plan

    def call(kw):
        kw = dict(kw)
        torch_fmha.attention_with_kvcache(kw.pop("q", q), kc, vc, seqlens, page_table=table, causal=True, **s, **kw)

    for kw in calls:
        call(kw)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for kw in calls:
            call(kw)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_split_merge_is_one_kernel():
    """The split plan's merge is one launch of merge_splits_kernel (csrc/kernel/merge_splits.cuh),
    not the ~20 ATen kernels (amax, exp, sums, wheres) it was: a decode step is host-bound, every
    launch costs host time (tools/decode_overhead.py)."""
    q, kc, vc, seqlens, table, s = _decode_inputs()
    q = q.view(torch.uint8).repeat(1, 17, 1, 1).view(FP8)  # Sq = 17: 68 rows per KV head, the tail plan
    sinks = _sinks(32)
    out_scale = torch.tensor([0.02], device="cuda")
    for kw in (dict(num_splits=4, sinks=sinks), dict(num_splits=3, out_dtype=FP8, out_scale=out_scale)):
        torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, causal=True, **s, **kw)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, causal=True, **s, **kw)
            torch.cuda.synchronize()
        names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        assert sum("merge_splits_kernel" in n for n in names) == 1, names
        assert not any("reduce_kernel" in n for n in names), names


@pytest.mark.parametrize("page_size", [None, 64], ids=["dense", "paged"])
def test_fp8_decode_step_is_the_decode_kernel_and_the_merge(page_size):
    """An FP8 step whose Sq x G rows fit 64 (GQA 4: Sq = 1, 3 and 5 (two 16-row tiles), causal;
    D = 64 / 128 / 256) runs csrc/kernel/decode.cuh and the merge kernel, two launches, whatever
    the split count (issue 15; a merge inside the decode grid was slower, DESIGN 1.11); Sq = 17
    (68 rows) does not take the decode kernel."""

    def kernels(q_, kc, vc, seqlens, table, s, **kw):
        torch_fmha.attention_with_kvcache(q_, kc, vc, seqlens, page_table=table, causal=True, **s, **kw)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            torch_fmha.attention_with_kvcache(q_, kc, vc, seqlens, page_table=table, causal=True, **s, **kw)
            torch.cuda.synchronize()
        return sorted(e.name.split("<")[0].split("(")[0].split("::")[-1] for e in prof.events()
                      if e.device_type == torch.autograd.DeviceType.CUDA)

    out_scale = torch.tensor([0.02], device="cuda")
    for d in (64, 128, 256):
        q, kc, vc, seqlens, table, s = kvcache_inputs(4, 1, 32, 8, d, FP8, [3000, 1, 0, 2049], smax=4096,
                                                      page_size=page_size, device="cuda", seed=0)
        q3 = q.view(torch.uint8).repeat(1, 3, 1, 1).view(FP8)
        q5 = q.view(torch.uint8).repeat(1, 5, 1, 1).view(FP8)
        for q_, kw in ((q, dict(num_splits=0)), (q, dict(num_splits=1)), (q, dict(num_splits=5, sinks=_sinks(32))),
                       (q, dict(num_splits=3, out_dtype=FP8, out_scale=out_scale)),
                       (q3, dict(num_splits=0)), (q3, dict(num_splits=4, window_size=(100, 0))),
                       (q5, dict(num_splits=0)), (q5, dict(num_splits=3, sinks=_sinks(32)))):
            names = kernels(q_, kc, vc, seqlens, table, s, **kw)
            assert names == ["decode_kernel", "merge_splits_kernel"], (d, q_.shape, kw, names)
        names = kernels(q.view(torch.uint8).repeat(1, 17, 1, 1).view(FP8), kc, vc, seqlens, table, s, num_splits=4)
        assert "decode_kernel" not in names, names


@pytest.mark.parametrize("batch, cache_len", [(1, 1024), (4, 1024), (8, 4096), (1, 8192), (8, 8192), (2, 4097)])
def test_num_splits_zero_is_the_documented_rule(batch, cache_len, tmp_path):
    """num_splits=0 on the decode kernel launches the split count that
    csrc/decode_splits.h choose_decode_splits documents and bench_decode.auto_num_splits
    mirrors (the benchmark prints the mirror's count; tests/test_decode_host.py compares the
    two on the host): the kernel's grid x, read from the profiler's trace, at short (<= 4096
    keys) and long caches, so the op calls the rule as the mirror assumes (3 CTAs per SM at
    D = 128, the SM count)."""
    import json

    from torch_fmha import bench_decode

    g = torch.Generator(device="cuda").manual_seed(batch)
    q = torch.randn(batch, 1, 32, 128, generator=g, device="cuda").to(FP8)
    k = torch.randn(batch, cache_len, 8, 128, generator=g, device="cuda").to(FP8)
    lens = torch.full((batch,), cache_len, dtype=torch.int32, device="cuda")
    one = torch.ones(1, device="cuda")
    torch_fmha.attention_with_kvcache(q, k, k, lens, causal=True, q_descale=one, k_descale=one, v_descale=one)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        torch_fmha.attention_with_kvcache(q, k, k, lens, causal=True, q_descale=one, k_descale=one, v_descale=one)
        torch.cuda.synchronize()
    trace = tmp_path / "trace.json"
    prof.export_chrome_trace(str(trace))
    events = json.loads(trace.read_text())["traceEvents"]
    grids = [e["args"]["grid"] for e in events if "decode_kernel" in e.get("name", "") and "grid" in e.get("args", {})]
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    expected = bench_decode.auto_num_splits(batch, 32, 8, cache_len, sms, decode_kernel=True)
    assert grids == [[expected, 8, batch]], (grids, expected)


def _merge_rule_case(device, sq, **kw):
    """3 sequences (empty, 1 key, 3000 keys), GQA 4, 3 splits merged; a NaN V element at a key
    the last sequence sees; sinks NaN, +inf and -inf on heads 0-2."""
    q, kc, vc, seqlens, _, s = kvcache_inputs(3, sq, 16, 4, 128, FP8, [0, 1, 3000], smax=4096, seed=4,
                                              device=device)
    set_value(vc, (2, 2500, 1, 5), math.nan)
    sinks = torch.randn(16, generator=torch.Generator().manual_seed(0)) * 2
    sinks[0], sinks[1], sinks[2] = math.nan, math.inf, -math.inf
    kw = {n: (t.to(device) if torch.is_tensor(t) else t) for n, t in kw.items()}
    kw.setdefault("sinks", sinks.to(device))
    return torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, num_splits=3, return_lse=True, causal=True,
                                             **s, **kw)


@pytest.mark.parametrize("sq", [1, 3, 5, 17], ids=["decode_sq1", "decode_sq3", "decode_sq5_row_tiles", "tail"])
def test_merge_kernel_rules_match_the_cpu_op(sq):
    """The merge kernel against the CPU op (the same csrc/merge_splits.h functions in a loop) on
    the rules the oracle sweep does not reach: NaN / +inf sinks and a NaN V element make NaN
    exactly where the CPU op has it, FP8 output saturates where it does (out_scale 0.002), and a
    -inf sink is bitwise no sink; Sq = 1, 3 and 5 run the decode kernel (4, 12, 20 rows: one, one
    and two row tiles), Sq = 17 (68 rows) the tail plan. The partials themselves differ (the CUDA decode kernel keeps P in f16, the tail
    plan's prefill kernel rounds it to e4m3, and CUDA's splits differ from the CPU op's plan),
    hence the loose value bound."""
    for kw in (dict(), dict(out_dtype=FP8, out_scale=torch.tensor([0.002]))):
        (oc, lc), (og, lg) = _merge_rule_case("cpu", sq, **kw), _merge_rule_case("cuda", sq, **kw)
        oc, og, lg = oc.double(), og.double().cpu(), lg.cpu()
        assert_same_pattern(og, oc, f"out sq={sq} {kw}")
        assert_same_pattern(lg, lc, f"lse sq={sq} {kw}")
        finite = torch.isfinite(oc)
        assert ((og - oc)[finite].abs().max() / oc[finite].abs().max()).item() < 0.1
        assert (lg - lc)[torch.isfinite(lc)].abs().max().item() < 2e-2
        sat_cpu, sat_gpu = (oc.abs() == 448).sum().item(), (og.abs() == 448).sum().item()
        assert abs(sat_cpu - sat_gpu) <= sat_cpu // 20 + 2, (sat_cpu, sat_gpu)
        if "out_dtype" in kw:
            assert sat_cpu > 0, "out_scale 0.002 should saturate some outputs"
    for kw in (dict(), dict(out_dtype=FP8, out_scale=torch.tensor([0.002]))):
        no_sink = _merge_rule_case("cuda", sq, sinks=None, **kw)
        minus_inf = _merge_rule_case("cuda", sq, sinks=torch.full((16,), -math.inf), **kw)
        bits = (lambda t: t.view(torch.uint8)) if "out_dtype" in kw else (lambda t: t.view(torch.int16))
        assert torch.equal(bits(minus_inf[0]), bits(no_sink[0]))
        assert torch.equal(minus_inf[1].view(torch.int32), no_sink[1].view(torch.int32))


def test_opcheck_cuda():
    for args, kw in kvcache_samples("cuda", head_dim=128):
        torch.library.opcheck(torch.ops.torch_fmha.fwd_kvcache, args, kw, test_utils=FP8_UTILS)


def test_transformers_static_cache_fp8_on_cuda():
    """A bf16 Llama with a StaticCache on CUDA ("torch_fmha_fp8" -> attention_with_kvcache):
    prefill + one decode step's logits within the FP8 criterion of tests/test_transformers.py
    against "sdpa", eager and compiled (fullgraph)."""
    pytest.importorskip("transformers")
    import torch_fmha.integrations.transformers as tfi
    from tiny_llama import tiny_llama
    from transformers.cache_utils import StaticCache

    model = tiny_llama(max_position_embeddings=4096).to(device="cuda", dtype=torch.bfloat16)
    ids = torch.randint(0, 512, (2, 300), generator=torch.Generator().manual_seed(1)).cuda()

    def step_logits(impl, compiled):
        model.set_attn_implementation(impl)
        fwd = torch.compile(model, fullgraph=True, backend="aot_eager") if compiled else model
        cache = StaticCache(config=model.config, max_cache_len=2048)
        with torch.no_grad():
            fwd(ids, past_key_values=cache, use_cache=True)
            return fwd(ids[:, -1:], past_key_values=cache, use_cache=True).logits.float()

    want = step_logits("sdpa", False)
    for compiled in (False, True):
        got = step_logits(tfi.NAME_FP8, compiled)
        g, w = got.double().flatten(), want.double().flatten()
        cos = torch.nn.functional.cosine_similarity(g, w, dim=0).item()
        rel_rms = ((g - w).pow(2).mean().sqrt() / w.std()).item()
        assert cos >= 0.99 and rel_rms <= 0.1, (compiled, cos, rel_rms)


def test_transformers_static_cache_sliding_window_fp8_on_cuda():
    """A bf16 gpt-oss (one sliding-window layer of 16 keys, one full-attention layer, sinks)
    with a StaticCache on CUDA: "torch_fmha_fp8", teacher-forced on "eager"'s greedy tokens
    over a DynamicCache, every step's logits within the FP8 criterion, eager and compiled. A
    12-token prompt and 32 one-token steps take the sliding layer from not full
    (attention_with_kvcache on the slots) to exactly full to full (the dense op on its 16 keys,
    the one-token steps transformers marks allow_is_causal_skip=False); the chunked phases run
    on CPU (tests/test_transformers_static.py). Both transformers' StaticCache and the
    Fp8StaticCache."""
    pytest.importorskip("transformers")
    import torch_fmha.integrations.transformers as tfi
    from serving_models import close_fp8, gpt_oss, metrics
    from transformers.cache_utils import DynamicCache, StaticCache

    model = gpt_oss().to(device="cuda", dtype=torch.bfloat16)
    ids = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(1)).cuda()
    model.set_attn_implementation("eager")
    with torch.no_grad():
        tokens = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False)

    def step_logits(impl, cache, compiled=False):
        model.set_attn_implementation(impl)
        fwd = torch.compile(model, fullgraph=True, backend="aot_eager") if compiled else model
        with torch.no_grad():
            out = [fwd(ids, past_key_values=cache, use_cache=True).logits[:, -1].float()]
            for t in range(ids.size(1), tokens.size(1) - 1):
                out.append(fwd(tokens[:, t:t + 1], past_key_values=cache, use_cache=True).logits[:, -1].float())
        return out

    want = step_logits("eager", DynamicCache(config=model.config))
    # transformers' bf16 StaticCache (quantized with q per call) and the Fp8StaticCache
    # (Fp8StaticSlidingWindowLayer for the sliding layer: FP8 slots, rolled once full).
    for cache_class in (StaticCache, tfi.Fp8StaticCache):
        for compiled in (False, True):
            torch._dynamo.reset()
            got = step_logits(tfi.NAME_FP8, cache_class(config=model.config, max_cache_len=tokens.size(1)), compiled)
            assert len(got) == 32
            for i, (g, w) in enumerate(zip(got, want)):
                assert close_fp8(g, w), (cache_class.__name__, compiled, i, metrics(g, w))


def test_transformers_fp8_static_cache_on_cuda():
    """Fp8StaticCache (FP8 K/V stored once per token, descales fixed at prefill) on a bf16
    Llama on CUDA: a 300-token prefill then 32 greedy tokens with generate(), eager and
    torch.compile(model.forward, fullgraph=True) (aot_eager: the same Dynamo graph, the
    kernels called as in eager) giving the same tokens in at most 2 graphs; and every step,
    teacher-forced on sdpa's tokens, within the FP8 criterion of tests/test_transformers.py
    (cos >= 0.99, relative RMS <= 0.1 of the logits)."""
    pytest.importorskip("transformers")
    import torch._dynamo
    import torch_fmha.integrations.transformers as tfi
    from torch._dynamo.testing import CompileCounterWithBackend
    from torch_fmha.integrations.fp8_static_cache import Fp8StaticLayer
    from tiny_llama import tiny_llama
    from transformers.cache_utils import StaticCache

    model = tiny_llama(max_position_embeddings=4096).to(device="cuda", dtype=torch.bfloat16)
    ids = torch.randint(0, 512, (2, 300), generator=torch.Generator().manual_seed(1)).cuda()
    p, new, cache_len = ids.size(1), 32, 1024

    def generate(impl, cache, compiled):
        model.set_attn_implementation(impl)
        forward, counter = model.forward, None
        if compiled:
            torch._dynamo.reset()
            counter = CompileCounterWithBackend("aot_eager")
            model.forward = torch.compile(forward, fullgraph=True, backend=counter)
        try:
            with torch.no_grad():
                out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False,
                                     past_key_values=cache, disable_compile=True)
        finally:
            model.forward = forward
        return out, counter

    want, _ = generate("sdpa", None, False)
    cache = tfi.Fp8StaticCache(config=model.config, max_cache_len=cache_len)
    eager, _ = generate(tfi.NAME_FP8, cache, False)
    assert isinstance(cache.layers[0], Fp8StaticLayer) and cache.layers[0].keys.dtype == torch.float8_e4m3fn
    compiled, counter = generate(tfi.NAME_FP8, tfi.Fp8StaticCache(config=model.config, max_cache_len=cache_len), True)
    torch._dynamo.reset()
    assert eager.size(1) == p + new
    assert torch.equal(compiled, eager)
    assert counter.frame_count <= 2, f"{counter.frame_count} frames"
    print(f"new tokens equal to sdpa's: {(eager[:, p:] == want[:, p:]).sum(1).tolist()} of {new}")

    def teacher_forced(impl, cache):
        model.set_attn_implementation(impl)
        with torch.no_grad():
            steps = [model(want[:, :p], past_key_values=cache, use_cache=True).logits[:, -1].float()]
            for i in range(new - 1):
                steps.append(model(want[:, p + i:p + i + 1], past_key_values=cache,
                                   use_cache=True).logits[:, -1].float())
        return steps

    ref = teacher_forced("sdpa", StaticCache(config=model.config, max_cache_len=cache_len))
    got = teacher_forced(tfi.NAME_FP8, tfi.Fp8StaticCache(config=model.config, max_cache_len=cache_len))
    for i, (g, w) in enumerate(zip(got, ref)):
        g, w = g.double().flatten(), w.double().flatten()
        cos = torch.nn.functional.cosine_similarity(g, w, dim=0).item()
        rel_rms = ((g - w).pow(2).mean().sqrt() / w.std()).item()
        assert cos >= 0.99 and rel_rms <= 0.1, (i, cos, rel_rms)


def test_bench_layered_timer_replays_every_layer_once_per_replay():
    # bench_decode.layered_graph_ms (the decode table's layered columns): one graph of every
    # layer's call, replayed back to back; the time is per layer. Each layer's call adds 1 to its
    # own counter, so after the timing every counter holds the same number of replays (plus the
    # one call the capture records and the warm-ups run eagerly), and a time comes back.
    from torch_fmha.bench_decode import _layer_copies, layered_graph_ms

    counters = [torch.zeros(1, device="cuda") for _ in range(3)]
    ms = layered_graph_ms([lambda c=c: c.add_(1) for c in counters], warmup_ms=1, rep_ms=5)
    torch.cuda.synchronize()
    values = [float(c) for c in counters]
    assert ms > 0 and math.isfinite(ms) and values[0] > 3 and values == [values[0]] * 3, (ms, values)
    # the layers' copies keep the cache's strides (a [B, S, Hkv, D] view of head-major memory)
    k = torch.randn(2, 4, 64, 128, device="cuda").to(FP8).transpose(1, 2)
    copies = _layer_copies(3, k)
    assert len(copies) == 3 and copies[0][0] is k
    assert all(c[0].stride() == k.stride() and c[0].data_ptr() != k.data_ptr() and torch.equal(
        c[0].view(torch.uint8), k.view(torch.uint8)) for c in copies[1:])
