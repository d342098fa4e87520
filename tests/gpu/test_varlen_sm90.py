"""The SM90 FP8 forward kernel on ragged batches, through torch.ops.torch_fmha.varlen_fwd,
against the float64 oracle with the tolerance rule (docs/DESIGN.md section 8).

Every case runs with NaN-poisoned outputs (every row of out / lse belongs to a
sequence, so no NaN may survive anywhere) and NaN-poisoned inputs: besides the
NaN heads and rows past T of ``inputs.varlen_inputs``, each batch gets two
guard sequences whose rows are NaN and that the kernel reads only as spill-over
of their neighbours' last tiles: one with NaN k/v rows and no queries (keys
past a neighbour's len_k), one with NaN q rows and no keys (queries past a
neighbour's len_q; its own rows must come out 0 with lse -inf).
Skipped (with the reason) where there is no SM90 GPU (conftest.py).
"""

from __future__ import annotations

import random

import pytest
import torch

import torch_fmha
from emulate import emulate_varlen
from inputs import FP8, dense_inputs, varlen_inputs
from opcheck_samples import FP8_UTILS, varlen_fwd_samples
from poison import call_with_nan_outputs
from reference import (assert_close_by_rule, output_as_float64, round_output, sequence_key_args,
                       varlen_attention_ref)

HEAD_DIMS = [64, 128, 256]
EDGE = [0, 1, 127, 128, 129, 191, 192, 193, 255, 256, 257]  # around kBlockM = 128 and kBlockN = 128 / 192 / 256


def _cu(lens):
    return [0] + torch.tensor(lens).cumsum(0).tolist()


def _with_guards(lens_q, lens_k, rng):
    """Insert the two NaN guard sequences at random positions (not first: they
    poison the tail of a neighbour). Returns new lists and the guard indices."""
    lens_q, lens_k = list(lens_q), list(lens_k)
    gk = rng.randint(1, len(lens_q))
    lens_q.insert(gk, 0)
    lens_k.insert(gk, rng.choice([5, 64, 200]))
    gq = rng.randint(1, len(lens_q))
    lens_q.insert(gq, rng.choice([3, 100, 130]))
    lens_k.insert(gq, 0)
    if gq <= gk:
        gk += 1
    return lens_q, lens_k, gq, gk


def _fill_nan_rows(t: torch.Tensor, start: int, end: int):
    t.view(torch.uint8)[start:end].fill_(0x7F)  # e4m3fn NaN


def run_varlen(lens_q, lens_k, h, hkv, d, *, causal=False, window=(-1, -1), out_dtype=torch.bfloat16,
               seed=0, hints=True, case=""):
    rng = random.Random(seed)
    lens_q, lens_k, gq, gk = _with_guards(lens_q, lens_k, rng)
    cq, ck = _cu(lens_q), _cu(lens_k)
    q, k, v, cu_q, cu_k, s = varlen_inputs(lens_q, lens_k, h, hkv, d, FP8, device="cuda", seed=seed)
    _fill_nan_rows(q, cq[gq], cq[gq + 1])
    _fill_nan_rows(k, ck[gk], ck[gk + 1])
    _fill_nan_rows(v, ck[gk], ck[gk + 1])
    out_scale = torch.tensor([0.02], device="cuda") if out_dtype == FP8 else None
    tq = cq[-1]
    kw = dict(s, causal=causal, window_size=window)
    max_q, max_k = (max(lens_q), max(lens_k)) if hints else (None, None)
    out, lse = call_with_nan_outputs(
        lambda: torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, max_q, max_k, out_dtype=out_dtype,
                                            out_scale=out_scale, return_lse=True, **kw),
        [((tq, h, d), out_dtype), ((h, tq), torch.float32)])
    torch.cuda.synchronize()
    ref, ref_lse = varlen_attention_ref(q, k, v, cu_q, cu_k, **kw)
    emul = round_output(emulate_varlen(q, k, v, cu_q, keys=sequence_key_args(cu_k), **kw), out_dtype, out_scale)
    got = output_as_float64(out, out_scale)
    assert not torch.isnan(got).any(), f"{case}: NaN in out (unwritten row or leaked NaN input)"
    stats = assert_close_by_rule(got, ref, emul, eps=1e-3, what=case)
    assert not torch.isnan(lse).any(), f"{case}: NaN in lse (unwritten or leaked)"
    assert torch.equal(torch.isneginf(lse), torch.isneginf(ref_lse)), f"{case}: lse -inf pattern"
    fin = torch.isfinite(ref_lse)
    if fin.any():
        assert (lse.double()[fin] - ref_lse[fin]).abs().max() < 2e-3, f"{case}: lse error"
    guard = got[cq[gq]:cq[gq + 1]]
    assert torch.equal(guard, torch.zeros_like(guard)), f"{case}: keyless guard rows not 0"
    return stats


def _random_lengths(b, rng, max_len, long=()):
    lens_q = [rng.randint(0, max_len) for _ in range(b)]
    lens_k = [rng.randint(0, max_len) for _ in range(b)]
    for i, (lq, lk) in zip(rng.sample(range(b), len(long)), long):
        lens_q[i], lens_k[i] = lq, lk
    return lens_q, lens_k


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", HEAD_DIMS)
def test_edge_lengths(causal, d):
    """Every edge length as q and as k, paired differently (Sq != Sk per sequence)."""
    rng = random.Random(d)
    lens_q = EDGE + EDGE[::-1]
    lens_k = EDGE[::-1] + rng.sample(EDGE, len(EDGE))
    run_varlen(lens_q, lens_k, 4, 2, d, causal=causal, seed=d + causal,
               case=f"edge D={d} causal={causal}")


@pytest.mark.parametrize("b,max_len,long", [
    (1, 0, [(2500, 3100)]),
    (5, 700, [(4100, 4000), (1500, 2600)]),
    (64, 300, [(2200, 1900)]),
])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", HEAD_DIMS)
def test_random_ragged(b, max_len, long, causal, d):
    rng = random.Random(b * 1000 + d)
    lens_q, lens_k = _random_lengths(b, rng, max_len, long)
    run_varlen(lens_q, lens_k, 4, 1, d, causal=causal, seed=b + d,
               case=f"B={b} D={d} causal={causal}")


@pytest.mark.parametrize("window", [(64, 0), (100, 30), (-1, 50), (200, -1)])
@pytest.mark.parametrize("d", HEAD_DIMS)
def test_windows(window, d):
    rng = random.Random(7 + d)
    lens_q, lens_k = _random_lengths(9, rng, 500, [(1000, 700), (300, 1200)])
    run_varlen(lens_q, lens_k, 4, 2, d, window=window, seed=d, case=f"window={window} D={d}")


@pytest.mark.parametrize("hkv", [8, 2, 1])
@pytest.mark.parametrize("d", [128, 256])
def test_gqa(hkv, d):
    rng = random.Random(hkv)
    lens_q, lens_k = _random_lengths(6, rng, 400, [(600, 600)])
    run_varlen(lens_q, lens_k, 8, hkv, d, causal=True, seed=hkv, case=f"GQA {8 // hkv} D={d}")


@pytest.mark.parametrize("out_dtype", [torch.float16, FP8])
@pytest.mark.parametrize("d", [128, 256])
def test_output_dtypes(out_dtype, d):
    rng = random.Random(3)
    lens_q, lens_k = _random_lengths(7, rng, 400)
    run_varlen(lens_q, lens_k, 4, 2, d, causal=True, out_dtype=out_dtype, case=f"out={out_dtype} D={d}")


def test_hints_absent_or_wrong():
    """max_seqlen_* are hints: absent (None) or too small, the result is the same."""
    rng = random.Random(11)
    lens_q, lens_k = _random_lengths(6, rng, 600, [(1500, 1300)])
    run_varlen(lens_q, lens_k, 4, 2, 128, causal=True, hints=False, seed=11, case="no hints")
    q, k, v, cu_q, cu_k, s = varlen_inputs(lens_q, lens_k, 4, 2, 128, FP8, device="cuda", seed=1)
    good = torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=True, **s)
    wrong = torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, 1, 1, causal=True, **s)
    assert torch.equal(good, wrong)


def test_more_sequences_than_the_sort_bound():
    """B > 1024: the prep kernel keeps batch order and scans in chunks."""
    rng = random.Random(5)
    lens_q = [rng.choice([0, 1, 2, 5, 130]) for _ in range(1100)]
    lens_k = [rng.choice([0, 1, 3, 7, 200]) for _ in range(1100)]
    run_varlen(lens_q, lens_k, 2, 1, 128, causal=True, seed=5, case="B=1100")


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", HEAD_DIMS)
def test_dense_and_varlen_agree_bitwise(causal, d):
    # Same tiling on both sides: a dense D=128 call with at most
    # short_keys_max_seqlen(128) = 2048 keys uses 128-key blocks, a packed D=128 batch
    # always 192. D=64 (256-key blocks) at 1100 keys: a partial last block. At most 132 tiles
    # (3 x 2 x 17 at D = 128, GQA 2): one round of the grid, so no dense split tail
    # (tile_scheduler.cuh), which changes the tiling of a launch's last tiles.
    b, s_len, h, hkv = 3, {64: 1100, 128: 2100}.get(d, 517), {128: 2}.get(d, 4), {128: 1}.get(d, 2)
    q, k, v, s = dense_inputs(b, s_len, s_len, h, hkv, d, FP8, device="cuda", poison=False, seed=d)
    dense, dense_lse = torch_fmha.attention(q, k, v, causal=causal, return_lse=True, **s)
    cu = torch.arange(0, (b + 1) * s_len, s_len, dtype=torch.int32, device="cuda")
    packed, packed_lse = torch_fmha.varlen_attention(
        q.reshape(b * s_len, h, d), k.reshape(b * s_len, hkv, d), v.reshape(b * s_len, hkv, d), cu, cu,
        causal=causal, return_lse=True, **s)
    assert torch.equal(packed, dense.reshape(b * s_len, h, d))
    assert torch.equal(packed_lse, dense_lse.permute(1, 0, 2).reshape(h, b * s_len))


def test_race_free_bitwise_reruns():
    rng = random.Random(9)
    lens_q, lens_k = _random_lengths(40, rng, 1500, [(4000, 4000)])
    q, k, v, cu_q, cu_k, s = varlen_inputs(lens_q, lens_k, 8, 2, 128, FP8, device="cuda", seed=9)
    first = torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, causal=True, **s)
    for _ in range(10):
        assert torch.equal(torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, causal=True, **s), first)


def test_no_host_sync():
    q, k, v, cu_q, cu_k, s = varlen_inputs([5, 0, 300], [70, 9, 0], 4, 2, 128, FP8, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, causal=True, **s)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_cuda_graph_capture_and_replay_with_new_lengths():
    """varlen_fwd (workspace allocation, prep kernel, main kernel) captures into a CUDA graph.
    Replays see new data and new sequence lengths in the same buffers (cu_seqlens are read
    on the device only) and match eager launches on the same inputs bitwise."""
    lens_a = ([5, 0, 300, 129], [7, 3, 300, 0])
    lens_b = ([300, 129, 5, 0], [0, 300, 7, 3])  # same totals, other sequences
    q, k, v, cu_q, cu_k, s = varlen_inputs(*lens_a, 4, 2, 128, FP8, device="cuda", seed=1)
    run = lambda: torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, causal=True, **s)  # noqa: E731
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture (build, attributes)
        run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()
    for seed, lens in [(2, lens_a), (3, lens_b)]:
        q2, k2, v2, cu_q2, cu_k2, _ = varlen_inputs(*lens, 4, 2, 128, FP8, device="cuda", seed=seed)
        for dst, src in ((q, q2), (k, k2), (v, v2), (cu_q, cu_q2), (cu_k, cu_k2)):
            dst.copy_(src)
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, run()), f"replay with lengths {lens} differs from eager"


def test_no_keys_or_no_queries_at_all():
    q, k, v, cu_q, cu_k, s = varlen_inputs([3, 0, 9], [0, 0, 0], 2, 1, 128, FP8, device="cuda")
    out, lse = torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, return_lse=True, **s)
    assert torch.equal(out.float(), torch.zeros_like(out.float())) and torch.isneginf(lse).all()
    q, k, v, cu_q, cu_k, s = varlen_inputs([0, 0], [4, 9], 2, 1, 128, FP8, device="cuda")
    out, lse = torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, return_lse=True, **s)
    assert out.shape == (0, 2, 128) and lse.shape == (2, 0)


@pytest.mark.parametrize("i", range(len(varlen_fwd_samples())))
def test_opcheck_cuda(i):
    sample = varlen_fwd_samples(device="cuda", head_dim=128)[i]
    torch.library.opcheck(torch.ops.torch_fmha.varlen_fwd, *sample, test_utils=FP8_UTILS)
