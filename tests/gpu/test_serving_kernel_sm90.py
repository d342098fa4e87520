"""Kernel-side checks of the serving features (issue 14) on an SM90 GPU.

The oracle sweeps of softcap / sinks / seqused_k / paged KV live in
test_serving_features_sm90.py; this file checks what only the kernel's
structure guarantees, bitwise, where the tiling is the same:

* paged KV: the producer loads each KV block as page-sized TMA boxes
  (csrc/kernel/producer.cuh, PagedKvBoxes). For every head dim and page size
  16..256, with scattered pages, NaN in the unused rows of each last page and
  in the spare pages, and garbage page-table entries (-1, ids past the pool)
  after each sequence's pages, a paged call must equal the same problem
  packed without pages bit for bit (out and LSE), and nothing NaN may leak;
* seqused_k without pages == cu_seqlens trimmed to the used keys, bitwise,
  with NaN in the unused slot rows;
* sinks of -inf == no sinks, bitwise (normalize_row's no-sink branch), and
  softcap / sinks give dense == varlen bitwise;
* NaN / Inf with softcap and sinks (docs/DESIGN.md 1.6 rule 5): CUDA has
  NaN / +-inf exactly where the CPU op and the oracle have them (NaN in q or
  k, an infinite k descale capped by softcap, NaN / +inf / -inf sinks with
  rows that see no key);
* the debug build (no NDEBUG) stops a bad page id in the prep kernel's
  device assert, as it does for cu_seqlens.
Per-test time limit 300 s (conftest.py).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import torch_fmha
from inputs import FP8, dense_inputs, paged_inputs, varlen_inputs
from nan_cases import as_float, assert_same_pattern, set_value
from poison import call_with_nan_outputs
from reference import attention_ref

HEAD_DIMS = [64, 128, 256]
PAGE_SIZES = [16, 32, 64, 128, 256]


def _lengths(page):
    # 0, 1, page - 1, page, page + 1, around kBlockN (128 / 192 / 256), and long.
    lens_k = [0, 1, page - 1, page, page + 1, 191, 192, 193, 256, 257, 1000]
    lens_q = [5, 130, 1, 64, 0, 200, 192, 17, 3, 256, 700]
    return lens_q, lens_k


def _varlen(q, k, v, cu_q, cu_k, lens_q, h, d, **kw):
    tq = int(cu_q[-1])
    return call_with_nan_outputs(
        lambda: torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, return_lse=True, **kw),
        [((tq, h, d), torch.bfloat16), ((h, tq), torch.float32)])


@pytest.mark.parametrize("page", PAGE_SIZES)
@pytest.mark.parametrize("d", HEAD_DIMS)
def test_paged_equals_packed_bitwise(d, page):
    h, hkv = 4, 2
    lens_q, lens_k = _lengths(page)
    q, k_pool, v_pool, cu_q, seqused, table, s, (k, v, cu_k) = paged_inputs(
        lens_q, lens_k, h, hkv, d, FP8, page, device="cuda", seed=d + page)
    for causal in (False, True):
        out, lse = _varlen(q, k_pool, v_pool, cu_q, None, lens_q, h, d, seqused_k=seqused,
                           page_table=table, causal=causal, **s)
        ref, ref_lse = _varlen(q, k, v, cu_q, cu_k, lens_q, h, d, causal=causal, **s)
        torch.cuda.synchronize()
        case = f"D={d} page={page} causal={causal}"
        assert not torch.isnan(out).any() and not torch.isnan(lse).any(), f"{case}: NaN leaked"
        assert torch.equal(out, ref), f"{case}: out differs from the packed problem"
        assert torch.equal(lse, ref_lse), f"{case}: lse differs from the packed problem"


@pytest.mark.parametrize("d", HEAD_DIMS)
def test_paged_window_and_gqa_bitwise(d):
    h, hkv, page = 8, 1, 16
    lens_q, lens_k = [300, 40, 1], [900, 77, 250]
    q, k_pool, v_pool, cu_q, seqused, table, s, (k, v, cu_k) = paged_inputs(
        lens_q, lens_k, h, hkv, d, FP8, page, device="cuda", seed=3)
    for window in ((100, 0), (50, 20)):
        out, lse = _varlen(q, k_pool, v_pool, cu_q, None, lens_q, h, d, seqused_k=seqused,
                           page_table=table, window_size=window, **s)
        ref, ref_lse = _varlen(q, k, v, cu_q, cu_k, lens_q, h, d, window_size=window, **s)
        assert torch.equal(out, ref) and torch.equal(lse, ref_lse), f"D={d} window={window}"


@pytest.mark.parametrize("d", HEAD_DIMS)
def test_seqused_k_without_pages_equals_trimmed_bitwise(d):
    h, hkv = 4, 2
    lens_q, lens_k = _lengths(64)
    q, _, _, cu_q, seqused, _, s, (k_slack, v_slack, cu_slack) = paged_inputs(
        lens_q, lens_k, h, hkv, d, FP8, 64, device="cuda", seed=d, slack_k=37)
    _, k, v, _, cu_k, _ = varlen_inputs(lens_q, lens_k, h, hkv, d, FP8, device="cuda", seed=d)
    for causal in (False, True):
        out, lse = _varlen(q, k_slack, v_slack, cu_q, cu_slack, lens_q, h, d, seqused_k=seqused,
                           causal=causal, **s)
        ref, ref_lse = _varlen(q, k, v, cu_q, cu_k, lens_q, h, d, causal=causal, **s)
        assert not torch.isnan(out).any(), f"D={d}: NaN from the unused slot rows leaked"
        assert torch.equal(out, ref) and torch.equal(lse, ref_lse), f"D={d} causal={causal}"


@pytest.mark.parametrize("d", HEAD_DIMS)
def test_sinks_minus_inf_are_no_sinks_bitwise(d):
    b, s_len, h, hkv = 2, 300, 4, 2
    q, k, v, s = dense_inputs(b, s_len, s_len, h, hkv, d, FP8, device="cuda", poison=False, seed=d)
    sinks = torch.full((h,), float("-inf"), device="cuda")
    for causal in (False, True):
        ref, ref_lse = torch_fmha.attention(q, k, v, causal=causal, return_lse=True, **s)
        out, lse = torch_fmha.attention(q, k, v, causal=causal, return_lse=True, sinks=sinks, **s)
        assert torch.equal(out, ref) and torch.equal(lse, ref_lse), f"D={d} causal={causal}"


@pytest.mark.parametrize("d", HEAD_DIMS)
def test_softcap_and_sinks_dense_equals_varlen_bitwise(d):
    # Same tiling on both sides: a dense D=128 call with at most
    # short_keys_max_seqlen(128) = 2048 keys uses 128-key blocks, a packed D=128 batch
    # always 192. D=64 (256-key blocks) at 1100 keys: a partial last block.
    b, s_len, h, hkv = 3, {64: 1100, 128: 2100}.get(d, 517), 4, 2
    q, k, v, s = dense_inputs(b, s_len, s_len, h, hkv, d, FP8, device="cuda", poison=False, seed=d)
    sinks = torch.tensor([-2.0, 0.0, 3.0, 80.0], device="cuda")
    cu = torch.arange(0, (b + 1) * s_len, s_len, dtype=torch.int32, device="cuda")
    for kw in (dict(softcap=20.0), dict(sinks=sinks), dict(softcap=50.0, sinks=sinks, causal=True)):
        dense, dense_lse = torch_fmha.attention(q, k, v, return_lse=True, **kw, **s)
        packed, packed_lse = torch_fmha.varlen_attention(
            q.reshape(b * s_len, h, d), k.reshape(b * s_len, hkv, d), v.reshape(b * s_len, hkv, d),
            cu, cu, return_lse=True, **kw, **s)
        assert torch.isfinite(dense).all() and torch.isfinite(dense_lse).all(), f"D={d} {kw}"
        assert torch.equal(packed, dense.reshape(b * s_len, h, d)), f"D={d} {kw}"
        assert torch.equal(packed_lse, dense_lse.permute(1, 0, 2).reshape(h, b * s_len)), f"D={d} {kw}"


def check_case(make, call, poison, ref_fn, what):
    """The poisoned inputs on CUDA and on the CPU: NaN / +inf / -inf at the same
    entries of out and lse, and where the float64 oracle has them (as in
    test_nan_sm90.py). Returns the CUDA (out, lse)."""
    got = {}
    for dev in ("cpu", "cuda"):
        x = make(dev)
        poison(x)
        got[dev] = call(x)
    torch.cuda.synchronize()
    ref, ref_lse = ref_fn(x)
    (c_out, c_lse), (g_out, g_lse) = got["cpu"], got["cuda"]
    assert_same_pattern(as_float(g_out), as_float(c_out), f"{what}: out CUDA vs CPU")
    assert_same_pattern(g_lse, c_lse, f"{what}: lse CUDA vs CPU")
    assert_same_pattern(as_float(g_out), ref, f"{what}: out vs oracle")
    assert_same_pattern(g_lse, ref_lse, f"{what}: lse vs oracle")
    return g_out, g_lse


def _serving_dense(d, *, softcap=0.0, sinks=None, seed=0, **mask):
    """make / call / ref for check_case: B=2, Sq=300 > Sk=200 causal (rows 0..99
    see no key) unless `mask` says otherwise; sinks [H] built per device."""
    mask = mask or dict(causal=True)

    def make(dev):
        q, k, v, s = dense_inputs(2, 300, 200, 4, 2, d, FP8, device=dev, seed=seed)
        s = dict(s, softcap=softcap)
        if sinks is not None:
            s["sinks"] = torch.tensor(sinks, dtype=torch.float32, device=dev)
        return dict(q=q, k=k, v=v, s=s, mask=mask)

    def call(x):
        return torch_fmha.attention(x["q"], x["k"], x["v"], return_lse=True, **x["s"], **x["mask"])

    def ref(x):
        return attention_ref(x["q"], x["k"], x["v"], **x["s"], **x["mask"])

    return make, call, ref


@pytest.mark.parametrize("d", HEAD_DIMS)
def test_nan_in_q_and_k_with_softcap_and_sinks(d):
    make, call, ref = _serving_dense(d, softcap=20.0, sinks=[0.5, -1.0, 3.0, -math.inf], seed=d)
    check_case(make, call, lambda x: set_value(x["q"], (1, 250, 3, 7), math.nan), ref, f"q D={d}")
    check_case(make, call, lambda x: set_value(x["k"], (0, 150, 1, 3), math.nan), ref, f"k D={d}")


def test_infinite_k_descale_is_capped_by_softcap():
    """docs/DESIGN.md 1.6 rules 1, 2 and 5, k_descale = +inf for (batch 1, kv head 0), softcap 20:
    each visible score is q.k * inf, +-inf where q.k != 0, capped to +-20 (finite), and NaN where
    q.k == 0 (0 * inf), which makes that row NaN (out and lse). Whether a computed q.k is exactly 0
    depends on the dot product's rounding: in the first GPU run (2026-11-28, random FP8 data) row
    245 of head 1 saw a key whose q.k is -2.625 among products of ~1e4, below the resolution of the
    FP8 tensor cores' accumulation (products aligned to the largest of each 32-chunk, ~14 bits
    kept), which can return 0 there: CUDA had that row NaN, the CPU (exact there) did not. So this
    group's q and k hold small integers both compute exactly (as inputs.integer_score_inputs): q in
    [1, 4] and each key all-positive or all-negative, so q.k != 0, except two query rows of head 1
    set to 0: row 250 (sees keys 0..150) is NaN, row 50 sees no key (Sq 300 > Sk 200, causal:
    rows 0..99) and stays out = 0, lse = the sink."""
    sinks = [0.5, -1.0, 3.0, 2.0]
    make, call, ref = _serving_dense(128, softcap=20.0, sinks=sinks, seed=5)

    def poison(x):
        g = torch.Generator().manual_seed(11)
        q = torch.randint(1, 5, (300, 2, 128), generator=g).float()  # heads 0, 1 = kv head 0
        q[250, 1] = 0.0
        q[50, 1] = 0.0
        sign = torch.where(torch.rand(200, generator=g) < 0.5, -1.0, 1.0)
        k = torch.randint(1, 5, (200, 128), generator=g).float() * sign[:, None]
        x["q"][1, :, 0:2] = q.to(FP8).to(x["q"].device)
        x["k"][1, :, 0] = k.to(FP8).to(x["k"].device)
        set_value(x["s"]["k_descale"], (1, 0), math.inf)

    out, lse = check_case(make, call, poison, ref, "inf k descale")
    out, lse = out.float().cpu(), lse.cpu()
    assert torch.isnan(out).any(-1).nonzero().tolist() == [[1, 250, 1]], "NaN rows: only q.k = 0 * inf"
    assert torch.isnan(out[1, 250, 1]).all() and torch.isnan(lse).nonzero().tolist() == [[1, 1, 250]]
    assert torch.equal(out[1, 50, 1], torch.zeros(128)) and lse[1, 1, 50] == sinks[1]
    assert torch.isfinite(out[1, 100:, 0]).all()  # the capped scores +-20 of head 0: all finite


def test_non_finite_sinks():
    """NaN / +inf sink: the head's rows that see a key are NaN, its empty rows out = 0, lse = the
    sink; a -inf sink is no sink; empty rows of every head: lse = the sink exactly."""
    sinks = [0.5, -1.0, 3.0, 2.0]
    make, call, ref = _serving_dense(128, sinks=sinks, seed=6)

    def poison(x):
        x["s"]["sinks"][1] = math.nan
        x["s"]["sinks"][2] = math.inf
        x["s"]["sinks"][3] = -math.inf

    out, lse = check_case(make, call, poison, ref, "sinks")
    assert torch.equal(out[:, :100], torch.zeros_like(out[:, :100]))  # rows 0..99 see no key
    assert (lse[:, 0, :100] == 0.5).all() and torch.isnan(lse[:, 1, :100]).all()
    assert (lse[:, 2, :100] == math.inf).all() and (lse[:, 3, :100] == -math.inf).all()
    assert torch.isnan(out[:, 100:, 1:3].float()).all() and torch.isfinite(out[:, 100:, [0, 3]].float()).all()


DEBUG_PAGE_SCRIPT = textwrap.dedent("""
    import sys, torch, torch_fmha
    sys.path.insert(0, sys.argv[1])
    from inputs import FP8, paged_inputs
    q, kp, vp, cu_q, used, table, s, _ = paged_inputs([40, 9], [300, 20], 2, 1, 128, FP8, 64,
                                                       device="cuda", seed=1)
    torch_fmha.varlen_attention(q, kp, vp, cu_q, None, seqused_k=used, page_table=table, **s)
    torch.cuda.synchronize()
    print("CONTROL-OK", flush=True)
    table[0, 2] = kp.shape[0]  # a page the sequence reads, one past the pool
    torch_fmha.varlen_attention(q, kp, vp, cu_q, None, seqused_k=used, page_table=table, **s)
    torch.cuda.synchronize()
    print("NOT-CAUGHT", flush=True)
""")


# The same through attention_with_kvcache's decode kernel (csrc/kernel/decode.cuh,
# decode_page), dense and packed q.
DEBUG_DECODE_PAGE_SCRIPT = textwrap.dedent("""
    import sys, torch, torch_fmha
    sys.path.insert(0, sys.argv[1])
    from kvcache_inputs import packed_kvcache_inputs
    from inputs import FP8
    q, cu_q, kp, vp, used, table, s = packed_kvcache_inputs([1, 2], 8, 2, 128, FP8, [300, 20], page_size=64,
                                                            device="cuda", seed=1)
    call = lambda t: torch_fmha.attention_with_kvcache(q, kp, vp, used, page_table=t, cu_seqlens_q=cu_q,
                                                       max_seqlen_q=2, **s)
    call(table)
    torch.cuda.synchronize()
    print("CONTROL-OK", flush=True)
    table[0, 2] = kp.shape[0]  # a page the sequence reads, one past the pool
    call(table)
    torch.cuda.synchronize()
    print("NOT-CAUGHT", flush=True)
""")


@pytest.mark.parametrize("script", [DEBUG_PAGE_SCRIPT, DEBUG_DECODE_PAGE_SCRIPT], ids=["varlen", "decode_kernel"])
def test_debug_build_asserts_on_a_bad_page_id(script):
    """Like cu_seqlens: the device values are checked by the prep kernel's (varlen) or the
    decode kernel's assert in a build without NDEBUG (TORCH_FMHA_NVCC_EXTRA=-UNDEBUG, cached
    separately; its first use compiles it)."""
    env = dict(os.environ, TORCH_FMHA_NVCC_EXTRA="-UNDEBUG")
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", script, tests_dir], capture_output=True,
                         text=True, env=env, timeout=280)
    out = res.stdout + res.stderr
    assert "CONTROL-OK" in res.stdout, out[-3000:]
    assert "NOT-CAUGHT" not in res.stdout and res.returncode != 0, out[-3000:]
    if script is DEBUG_DECODE_PAGE_SCRIPT:  # the decode kernel's own assert, not another one
        assert "page_table: page id outside" in out, out[-3000:]
    else:
        assert "device-side assert" in out or "page_table: page id outside" in out, out[-3000:]
