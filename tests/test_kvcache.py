"""attention_with_kvcache (issue 15) on CPU against the float64 oracle
(reference.kvcache_attention_ref). The op is one composition (csrc/ops/kvcache_op.cpp)
for every backend, so these tests run the split / GQA-packing code the GPU runs, with the
CPU varlen kernel underneath, and the LSE merge's per-row arithmetic (csrc/merge_splits.h,
which the CUDA merge kernel runs) in a CPU loop.

Caches come from kvcache_inputs: rows past cache_seqlens, padding heads, unused pages
and page-table entries past a sequence's pages are NaN or garbage, so a read of
anything a row must not see shows up as NaN (asserted absent) or an error.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import torch_fmha
from op_defaults import filled_ops
from inputs import FP8, paged_inputs
from kvcache_inputs import kvcache_inputs
from nan_cases import assert_same_pattern, set_value
from opcheck_samples import ALL_UTILS, FP8_UTILS, kvcache_samples
from reference import assert_close_by_rule, kvcache_attention_ref, output_as_float64, round_output

EPS = {torch.float32: 2e-5, torch.float64: 1e-10, torch.bfloat16: 1e-4, FP8: 1e-4}
# The ops with the arguments a call leaves out filled in (the schemas have no defaults).
ops = filled_ops


def _sinks(h, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(h, generator=g) * 2
    s[0] = -math.inf
    return s


def _lens(b, hi, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, hi + 1, (b,), generator=g).tolist()


def check_vs_oracle(out, lse, ref, ref_lse, q_dtype, out_scale=None, case=""):
    emul = round_output(ref, out.dtype, out_scale)
    eps = EPS[q_dtype]
    if q_dtype == torch.bfloat16:
        # bf16 inputs give bf16 partials (the op's out_dtype rule): one more bf16 rounding
        # per split before the merge, on top of the final one.
        eps = 2 ** -8 * ref.abs().max().item() + 1e-4
    got = output_as_float64(out, out_scale)
    assert not torch.isnan(got).any(), f"{case}: NaN in out (a read past cache_seqlens?)"
    assert_close_by_rule(got, ref, emul, eps=eps, what=case)
    assert not torch.isnan(lse).any(), f"{case}: NaN in lse"
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse)), f"{case}: lse inf pattern"
    fin = torch.isfinite(ref_lse)
    if fin.any():
        assert (lse.double()[fin] - ref_lse[fin]).abs().max() < 1e-4, f"{case}: lse"


# (id, B, Sq, H, Hkv, D, lens, page_size, options, num_splits, dtype).
# tile = 128 query rows / key block: lengths 0, 1, 127, 129 straddle it.
SWEEP = [
    ("b1_g1_129", 1, 1, 8, 8, 64, [129], None, {}, 0, FP8),
    ("b1_g4_4k_causal", 1, 1, 32, 8, 128, [4096], None, dict(causal=True), 5, FP8),
    ("b3_g8_sinks", 3, 1, 16, 2, 64, [0, 1, 127], None, dict(causal=True, sinks=True), 3, FP8),
    ("b5_g16_paged_softcap", 5, 1, 16, 1, 64, [129, 0, 1, 127, 300], 16, dict(softcap=30.0), 4, FP8),
    ("sq2_causal_tail", 2, 2, 8, 2, 64, [1, 129], None, dict(causal=True), 2, FP8),
    ("sq7_causal_tail_paged", 3, 7, 8, 2, 64, [0, 6, 300], 16, dict(causal=True, sinks=True), 4, FP8),
    ("sq5_right2_tail", 2, 5, 4, 1, 64, [3, 200], None, dict(window_size=(-1, 2)), 3, FP8),
    ("sq65_causal_tail_paged", 2, 65, 4, 2, 64, [64, 400], 32, dict(causal=True), 5, FP8),
    ("sq7_causal_one_split", 2, 7, 4, 2, 64, [9, 200], None, dict(causal=True), 1, FP8),
    ("sq7_paged_window", 2, 7, 4, 1, 128, [0, 127], 32, dict(causal=True, window_size=(20, 0)), 0, FP8),
    ("sq64_split_nomask", 4, 64, 4, 4, 64, [64, 129, 1, 0], None, {}, 3, FP8),
    ("sq65_causal", 2, 65, 4, 2, 64, [65, 300], None, dict(causal=True), 0, FP8),
    ("b64_g4", 64, 1, 8, 2, 64, _lens(64, 300, 1), None, dict(causal=True), 2, FP8),
    ("b16_d256_paged_sinks", 16, 1, 16, 4, 256, _lens(16, 200, 2), 64, dict(sinks=True), 0, FP8),
    ("b9_paged256", 9, 1, 8, 1, 64, _lens(9, 600, 4), 256, dict(causal=True), 3, FP8),
    ("window_dense_split", 3, 1, 8, 2, 64, [0, 40, 300], None, dict(window_size=(50, 0)), 3, FP8),
    ("window_paged_masked", 3, 1, 8, 2, 64, [0, 40, 300], 16, dict(window_size=(50, 0), sinks=True), 3, FP8),
    ("window_right_only", 2, 1, 8, 2, 64, [10, 200], None, dict(window_size=(-1, 3)), 2, FP8),
    ("sq2_right1_nomask", 2, 2, 8, 2, 64, [1, 200], None, dict(window_size=(-1, 1)), 2, FP8),
    ("fp8_out", 2, 1, 8, 2, 128, [77, 260], None, dict(causal=True, out_dtype=FP8), 3, FP8),
    ("per_tensor_descales", 2, 1, 8, 2, 64, [77, 260], None, dict(per_tensor=True, sinks=True), 4, FP8),
    ("float32_sq3_sinks", 2, 3, 8, 2, 64, [5, 130], None, dict(sinks=True), 2, torch.float32),
    ("bf16_g2", 2, 1, 4, 2, 64, [5, 130], 16, {}, 2, torch.bfloat16),
    ("many_splits", 2, 1, 4, 2, 64, [3, 130], None, {}, 40, FP8),
]


@pytest.mark.parametrize("case", SWEEP, ids=[c[0] for c in SWEEP])
def test_vs_oracle(case):
    name, b, sq, h, hkv, d, lens, page, opts, splits, dtype = case
    q, kc, vc, seqlens, table, s = kvcache_inputs(b, sq, h, hkv, d, dtype, lens, page_size=page, seed=b + sq)
    opts = dict(opts)
    if opts.pop("per_tensor", False):
        s = {n: x.amax().reshape(1) for n, x in s.items()}  # any positive [1] descale
    if opts.pop("sinks", False):
        opts["sinks"] = _sinks(h, seed=b)
    out_scale = None
    if opts.get("out_dtype") == FP8:
        out_scale = opts["out_scale"] = torch.tensor([0.02])
    out, lse = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, page_table=table, num_splits=splits,
                                                 return_lse=True, **s, **opts)
    assert out.shape == q.shape and lse.shape == (b, h, sq)
    opts.pop("out_dtype", None), opts.pop("out_scale", None)
    ref, ref_lse = kvcache_attention_ref(q, kc, vc, seqlens, page_table=table, **s, **opts)
    check_vs_oracle(out, lse, ref, ref_lse, dtype, out_scale, case=name)


def test_packed_q_vs_oracle():
    lens_q, lens_k = [1, 0, 5, 3], [40, 7, 0, 300]
    q, kp, vp, cu_q, used, table, s, _ = paged_inputs(lens_q, lens_k, 8, 2, 64, FP8, 16, seed=5)
    for kw in (dict(causal=True), dict(window_size=(30, 0), softcap=20.0, sinks=_sinks(8))):
        out, lse = torch_fmha.attention_with_kvcache(q, kp, vp, used, page_table=table, cu_seqlens_q=cu_q,
                                                     max_seqlen_q=5, return_lse=True, **s, **kw)
        assert out.shape == q.shape and lse.shape == (8, q.size(0))
        ref, ref_lse = kvcache_attention_ref(q, kp, vp, used, page_table=table, cu_seqlens_q=cu_q, **s, **kw)
        check_vs_oracle(out, lse, ref, ref_lse, FP8, case=f"packed {kw}")


@pytest.mark.parametrize("kw", [dict(causal=True, num_splits=1), dict(causal=True, window_size=(30, 0), num_splits=4)],
                         ids=["causal_one_split", "window"])
def test_masked_plan_is_varlen_attention_bitwise(kw):
    """Sq > 1 with one split, or with a left window, runs as one varlen_fwd over the cache:
    bitwise varlen_attention."""
    b, sq, h, hkv, d = 3, 5, 8, 2, 64
    q, kp, vp, seqlens, table, s = kvcache_inputs(b, sq, h, hkv, d, FP8, [0, 9, 140], page_size=16, seed=3)
    kw = dict(kw, softcap=25.0, sinks=_sinks(h))
    out, lse = torch_fmha.attention_with_kvcache(q, kp, vp, seqlens, page_table=table, return_lse=True, **s, **kw)
    kw.pop("num_splits")
    cu_q = torch.arange(0, b * sq + 1, sq, dtype=torch.int32)
    want, want_lse = torch_fmha.varlen_attention(q.reshape(b * sq, h, d), kp, vp, cu_q, None, seqused_k=seqlens,
                                                 page_table=table, return_lse=True, **s, **kw)
    assert torch.equal(out, want.view(b, sq, h, d))
    assert torch.equal(lse, want_lse.view(h, b, sq).permute(1, 0, 2))


def test_tail_plan_splits_agree():
    """Sq > 1 causal with splits (unmasked chunks + the masked tail) against one split."""
    q, kc, vc, seqlens, _, s = kvcache_inputs(2, 4, 8, 2, 64, torch.float32, [3, 700], seed=8)
    one, lse1 = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, causal=True, num_splits=1, return_lse=True)
    for n in (2, 3, 9):
        out, lse = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, causal=True, num_splits=n, return_lse=True)
        torch.testing.assert_close(out, one, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lse, lse1, atol=1e-5, rtol=1e-5)
        assert not torch.equal(out, one)  # really another computation


def test_split_counts_agree_and_cache_tail_is_never_read():
    b, h, hkv, d = 3, 16, 4, 64
    q, kc, vc, seqlens, _, s = kvcache_inputs(b, 1, h, hkv, d, FP8, [0, 130, 1000], seed=7)
    sinks = _sinks(h)
    outs = [torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, sinks=sinks, num_splits=n, return_lse=True, **s)
            for n in (1, 2, 7, 64)]
    for out, lse in outs[1:]:
        torch.testing.assert_close(out.float(), outs[0][0].float(), atol=2e-2, rtol=2e-2)
        torch.testing.assert_close(lse, outs[0][1], atol=1e-5, rtol=1e-5)
    # What lies past cache_seqlens (NaN here) changes nothing, bitwise: refill it with data.
    kc2, vc2 = kc.clone(), vc.clone()
    for i, n in enumerate(seqlens.tolist()):
        kc2[i, n:] = kc[2, :kc.size(1) - n]
        vc2[i, n:] = vc[2, :vc.size(1) - n]
    for n, (out, lse) in zip((1, 2, 7, 64), outs):
        out2, lse2 = torch_fmha.attention_with_kvcache(q, kc2, vc2, seqlens, sinks=sinks, num_splits=n,
                                                       return_lse=True, **s)
        assert torch.equal(out, out2) and torch.equal(lse, lse2), f"num_splits={n}"


def test_num_splits_zero_is_a_function_of_shapes():
    """num_splits=0: min(units // tiles, ceil(capacity / 512), 64) with units = intra-op
    threads on CPU, and 1 below a capacity of 4096 keys. B=1, Hkv=1 (one tile), capacity
    4096, 8 threads -> 8 splits; capacity 2048 -> 1."""
    q, kc, vc, seqlens, _, s = kvcache_inputs(1, 1, 4, 1, 64, torch.float32, [3000], smax=4096, seed=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(8)
    try:
        auto = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens)
        fixed = {n: torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, num_splits=n) for n in (7, 8, 9)}
        seqlens_short = torch.tensor([700], dtype=torch.int32)  # fewer keys: still 8 splits
        auto_short = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens_short)
        fixed_short = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens_short, num_splits=8)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(auto, fixed[8])
    assert not torch.equal(auto, fixed[7]) and not torch.equal(auto, fixed[9])
    assert torch.equal(auto_short, fixed_short)
    q, kc, vc, seqlens, _, s = kvcache_inputs(1, 1, 4, 1, 64, torch.float32, [2000], smax=2048, seed=2)
    torch.set_num_threads(8)
    try:
        auto = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens)
        one = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, num_splits=1)
        two = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, num_splits=2)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(auto, one) and not torch.equal(auto, two)


def test_empty_rows_and_sink_rules():
    """Rows that see no key: out 0, lse = sink (-inf without), whatever the sink; NaN and +inf
    sinks make rows that see keys NaN (docs/DESIGN.md 1.6 rule 5), through the merge."""
    h = 4
    q, kc, vc, seqlens, _, s = kvcache_inputs(2, 1, h, 2, 64, torch.float32, [0, 300], seed=1)
    sinks = torch.tensor([0.5, math.nan, math.inf, -math.inf])
    for n in (1, 3):
        out, lse = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, sinks=sinks, num_splits=n, return_lse=True)
        ref, ref_lse = kvcache_attention_ref(q, kc, vc, seqlens, sinks=sinks)
        assert_same_pattern(out, ref, f"out, num_splits={n}")
        assert_same_pattern(lse, ref_lse, f"lse, num_splits={n}")
        assert torch.equal(out[0], torch.zeros_like(out[0]))
        assert torch.equal(lse[0, :, 0].isnan(), sinks.isnan()) and lse[0, 2, 0] == math.inf
        fin = torch.isfinite(ref)
        torch.testing.assert_close(out[fin].double(), ref[fin], atol=1e-5, rtol=1e-5)
    # A -inf sink is no sink, bitwise, through the merge too.
    a = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, sinks=torch.full((h,), -math.inf), num_splits=3,
                                          return_lse=True)
    b = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, num_splits=3, return_lse=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_nan_in_visible_data_propagates():
    """NaN in a visible v element reaches that element of the rows that see the key (lse finite);
    NaN in q makes that query head's out and lse NaN; no other entry changes."""
    b, h, hkv, d = 2, 8, 2, 64
    q, kc, vc, seqlens, _, s = kvcache_inputs(b, 1, h, hkv, d, FP8, [200, 300], seed=4)
    clean = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, num_splits=3, return_lse=True, **s)
    kc2, v2 = kc.clone(), vc.clone()  # one layout for both (the op needs equal batch strides)
    set_value(v2, (1, 250, 1, 5), math.nan)  # batch 1, key 250 (in split 2), kv head 1, dim 5
    q2 = q.clone()
    set_value(q2, (0, 0, 3, 0), math.nan)    # batch 0, query head 3
    out, lse = torch_fmha.attention_with_kvcache(q2, kc2, v2, seqlens, num_splits=3, return_lse=True, **s)
    ref, ref_lse = kvcache_attention_ref(q2, kc2, v2, seqlens, **s)
    assert_same_pattern(out.float(), ref, "out")
    assert_same_pattern(lse, ref_lse, "lse")
    assert torch.isnan(out[1, 0, 4:8, 5].float()).all() and torch.isfinite(lse[1]).all()
    assert torch.isnan(out[0, 0, 3].float()).all() and torch.isnan(lse[0, 3]).all()
    keep = torch.ones_like(out, dtype=torch.bool)
    keep[1, 0, 4:8, 5] = False
    keep[0, 0, 3] = False
    assert torch.equal(out[keep], clean[0][keep])


# ---- errors, opcheck, compile ------------------------------------------------------------------

def _message(fn) -> str:
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value).splitlines()[0]


_Q, _KC = torch.randn(2, 1, 4, 64).to(FP8), torch.randn(2, 32, 2, 64).to(FP8)
_LENS = torch.tensor([3, 9], dtype=torch.int32)
_POOL, _TABLE = torch.randn(5, 16, 2, 64).to(FP8), torch.zeros(2, 2, dtype=torch.int32)
ERRORS = [
    ("q_rank", (_Q[0], _KC, _KC, _LENS), {},
     "torch_fmha.fwd_kvcache: q must have rank 4 [batch, seqlen_q, heads, head_dim], got shape [1, 4, 64]"),
    ("cache_rank", (_Q, _KC[0], _KC[0], _LENS), {},
     "torch_fmha.fwd_kvcache: k_cache must have rank 4 [batch, seqlen_cache, heads_kv, head_dim], got shape "
     "[32, 2, 64]"),
    ("cache_dtype", (_Q, _KC.float(), _KC, _LENS), {},
     "torch_fmha.fwd_kvcache: k_cache has dtype torch.float32 but q has dtype torch.float8_e4m3fn; q, k_cache "
     "and v_cache must share one dtype"),
    ("gqa", (torch.randn(2, 1, 3, 64).to(FP8), _KC, _KC, _LENS), {},
     "torch_fmha.fwd_kvcache: q has 3 heads, which is not a multiple of the 2 heads of k_cache and v_cache"),
    ("seqlens_dtype", (_Q, _KC, _KC, _LENS.long()), {},
     "torch_fmha.fwd_kvcache: cache_seqlens must have dtype torch.int32, got torch.int64"),
    ("seqlens_shape", (_Q, _KC, _KC, _LENS[:1]), {},
     "torch_fmha.fwd_kvcache: cache_seqlens must have shape [batch] = [2], got [1]"),
    ("batch", (_Q, _KC[:1], _KC[:1], _LENS), {},
     "torch_fmha.fwd_kvcache: k_cache has batch size 1, expected 2 (q.size(0))"),
    ("cache_strides", (_Q, _KC.transpose(0, 1).contiguous().transpose(0, 1), _KC, _LENS), {},
     "torch_fmha.fwd_kvcache: k_cache must have a batch stride that is a whole number of rows, at least its 32 "
     "rows (the cache is read as one buffer of rows), got strides [128, 256, 64, 1]"),
    ("v_rows", (_Q, _KC, torch.randn(2, 40, 2, 64).to(FP8)[:, :32], _LENS), {},
     "torch_fmha.fwd_kvcache: v_cache's batch stride is 40 rows but k_cache's is 32; they must be equal"),
    ("page_size", (_Q, torch.randn(5, 8, 2, 64).to(FP8), torch.randn(5, 8, 2, 64).to(FP8), _LENS),
     dict(page_table=_TABLE),
     "torch_fmha.fwd_kvcache: page_size (k_cache.size(1)) is 8, expected a power of two from 16 to 256"),
    ("page_table_shape", (_Q, _POOL, _POOL, _LENS), dict(page_table=_TABLE[:1]),
     "torch_fmha.fwd_kvcache: page_table must have shape [batch, max_pages_per_seq] = [2, *], got [1, 2]"),
    ("packed_q_rank", (_Q, _KC, _KC, _LENS), dict(cu_seqlens_q=torch.tensor([0, 1, 2], dtype=torch.int32)),
     "torch_fmha.fwd_kvcache: q must have rank 3 [total_q, heads, head_dim] (cu_seqlens_q is given)"),
    ("num_splits", (_Q, _KC, _KC, _LENS), dict(num_splits=-1),
     "torch_fmha.fwd_kvcache: num_splits must be >= 0 (0: chosen from the shapes), got -1"),
    ("sinks", (_Q, _KC, _KC, _LENS), dict(sinks=torch.zeros(2)),
     "torch_fmha.fwd_kvcache: sinks must have shape [heads] = [4], got [2]"),
    ("descale", (_Q, _KC, _KC, _LENS), dict(k_descale=torch.ones(2, 4)),
     "torch_fmha.fwd_kvcache: k_descale must have shape [1] or [batch, heads_kv] = [2, 2], got [2, 4]"),
]


@pytest.mark.parametrize("case", ERRORS, ids=[c[0] for c in ERRORS])
def test_eager_and_fake_errors_agree(case):
    _, args, kwargs, expected = case
    eager = _message(lambda: ops.fwd_kvcache(*args, **kwargs))
    assert eager.startswith(expected), eager
    with FakeTensorMode() as mode:
        fake_args = tuple(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args)
        fake_kwargs = {n: mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for n, a in kwargs.items()}
        fake = _message(lambda: ops.fwd_kvcache(*fake_args, **fake_kwargs))
    assert fake == eager


def test_value_errors():
    q, kc = _Q, _KC
    assert _message(lambda: ops.fwd_kvcache(q, kc, kc, torch.tensor([3, 33], dtype=torch.int32))) == (
        "torch_fmha.fwd_kvcache: cache_seqlens[1] = 33 exceeds the 32 keys of k_cache (k_cache.size(1))")
    assert _message(lambda: ops.fwd_kvcache(q, kc, kc, torch.tensor([-1, 3], dtype=torch.int32))) == (
        "torch_fmha.fwd_kvcache: cache_seqlens[0] = -1 must be >= 0")
    table = torch.tensor([[0, 1], [2, -1]], dtype=torch.int32)
    assert _message(lambda: ops.fwd_kvcache(q, _POOL, _POOL, torch.tensor([3, 20], dtype=torch.int32),
                                            page_table=table)) == (
        "torch_fmha.fwd_kvcache: page_table[1, 1] = -1 is not a page of the pool: sequence 1 reads 2 pages and "
        "page ids must be in [0, num_pages) = [0, 5)")
    assert _message(lambda: ops.fwd_kvcache(q, _POOL, _POOL, torch.tensor([3, 33], dtype=torch.int32),
                                            page_table=table)) == (
        "torch_fmha.fwd_kvcache: cache_seqlens[1] = 33 needs 3 pages of 16 keys but page_table has 2 columns")


@pytest.mark.parametrize("dtype", [FP8, torch.float32])
def test_opcheck(dtype):
    utils = FP8_UTILS if dtype == FP8 else ALL_UTILS
    for args, kw in kvcache_samples(dtype=dtype):
        torch.library.opcheck(torch.ops.torch_fmha.fwd_kvcache, args, kw, test_utils=utils)


def test_compiled_no_recompile_as_cache_seqlens_change():
    from torch._dynamo.testing import CompileCounterWithBackend

    b, h, hkv, d = 3, 8, 2, 64
    q, kc, vc, _, _, s = kvcache_inputs(b, 1, h, hkv, d, FP8, [300, 300, 300], seed=6)
    sinks = _sinks(h)

    def step(q, kc, vc, seqlens):
        return torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, causal=True, sinks=sinks, num_splits=3, **s)

    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(step, backend=counter, fullgraph=True)
    for lens in ([0, 1, 300], [5, 129, 127], [300, 0, 2]):
        seqlens = torch.tensor(lens, dtype=torch.int32)
        assert torch.equal(compiled(q, kc, vc, seqlens), step(q, kc, vc, seqlens)), lens
    assert counter.frame_count == 1, f"recompiled: {counter.frame_count} frames"


def test_no_backward():
    """A forward under grad mode works (weights that require grad); its backward says there is none."""
    q, kc, vc, seqlens, _, _ = kvcache_inputs(1, 1, 4, 2, 64, torch.float32, [10], seed=1)
    q = q.detach().requires_grad_(True)
    out = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, num_splits=2)
    assert torch.equal(out, torch_fmha.attention_with_kvcache(q.detach(), kc, vc, seqlens, num_splits=2))
    with pytest.raises(RuntimeError, match="torch_fmha.fwd_kvcache: there is no backward"):
        out.sum().backward()
    with torch.no_grad():
        assert torch_fmha.attention_with_kvcache(q, kc, vc, seqlens).grad_fn is None
