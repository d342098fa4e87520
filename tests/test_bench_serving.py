"""The serving-feature benchmark (torch_fmha/bench_serving.py, issue 14) on CPU with
fake timings: flag parsing, the rows (the cases it builds run on the CPU op and the
paged case is the same problem as the packed one: max|paged - packed| == 0), the
ratio / target arithmetic, the peer reasons and the table. Nothing is timed for real."""

from __future__ import annotations

import pytest
import torch

import torch_fmha
from torch_fmha import bench, bench_serving


def test_flags():
    a = bench.parse_args(["--paged", "64", "--softcap", "--sinks"])
    assert (a.paged, a.softcap, a.sinks) == (64, 50.0, True)
    assert bench.parse_args(["--softcap", "20"]).softcap == 20.0
    a = bench.parse_args([])
    assert a.paged is None and a.softcap is None and not a.sinks
    for bad in (["--paged", "48"], ["--paged", "8"], ["--paged", "512"], ["--softcap", "0"], ["--softcap", "nan"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
    labels = [bench_serving.feature_label(f) for f in bench_serving.features_of(
        bench.parse_args(["--paged", "16", "--softcap", "30", "--sinks"]))]
    assert labels == ["paged 16", "softcap 30", "sinks", "paged 16 + softcap 30 + sinks"]
    assert bench_serving.features_of(bench.parse_args(["--sinks"])) == [{"sinks": True}]


def test_rows_on_cpu_with_fake_times():
    times = iter([2.0, 2.5] * 100)  # base, feature per row: ratio 0.8
    features = bench_serving.features_of(bench.parse_args(["--paged", "16", "--softcap", "--sinks"]))
    progress = bench.Progress(4 * 2, enabled=False)
    rows = bench_serving.serving_rows(torch_fmha, features, [32], [64], [False, True], "cpu",
                                      time_ms=lambda fn: (fn(), next(times))[1], progress=progress,
                                      tokens=64, hidden=128)
    assert len(rows) == 4 * 2 and progress.n == 4 * 2
    for r in rows:
        assert (r["B"], r["H"], r["S"]) == (2, 2, 32) and r["ratio"] == pytest.approx(0.8)
        assert r["base_tflops"] == pytest.approx(4 * 2 * 2 * 32 * 32 * 64 / (2 if r["causal"] else 1) / 2.0 * 1e-9)
    by = {(r["feature"], r["causal"]): r for r in rows}
    assert by[("paged 16", False)]["max_abs_vs_base"] == 0.0  # the paged problem is the packed one
    assert by[("paged 16", True)]["target"] == 0.85 and by[("paged 16", True)]["meets_target"] is False
    assert by[("sinks", False)]["target"] == 0.98 and by[("softcap 50", False)]["target"] == 0.85
    assert by[("paged 16 + softcap 50 + sinks", True)]["target"] is None
    assert bench_serving.paged_target(64) == 0.95
    reasons = {bench_serving.feature_label(f): bench_serving.peer_reasons(f, "sdpa_fp8(q, k, v, ...)", None)
               for f in features}
    assert "takes no page table argument" in reasons["paged 16"][bench.COL_CUDNN]
    assert "no logit softcap argument" in reasons["softcap 50"][bench_serving.COL_SDPA]
    table = bench_serving.format_serving_table(rows, reasons)
    assert "MISSED" in table and "n/a reasons:" in table and "paged 16 + softcap 50 + sinks" in table


def test_repeats_come_in_opposite_order_pairs():
    """--repeat N: repeats come in pairs of opposite order (plain first, then featured first),
    N rounded up to even, and each pair's ratio is its plain times over its featured times, so a
    slowdown of whichever call runs second in a repeat cancels within the pair."""
    calls = []
    ms = {"base": iter([2.0, 2.2, 2.0, 2.0]), "feature": iter([2.5, 2.2, 2.0, 2.0])}

    def time_ms(fn):
        name = fn()
        calls.append(name)
        return next(ms[name])
    base_ms, feature_ms = bench_serving.time_pair(time_ms, lambda: "base", lambda: "feature", 3)
    assert calls == ["base", "feature", "feature", "base"] * 2  # 3 -> 4 repeats, 2 pairs
    assert base_ms == [2.0, 2.2, 2.0, 2.0] and feature_ms == [2.5, 2.2, 2.0, 2.0]
    assert bench_serving.pair_ratios(base_ms, feature_ms) == [pytest.approx(4.2 / 4.7), 1.0]
    calls.clear()
    ms = {"base": iter([1.0]), "feature": iter([1.0])}
    assert bench_serving.time_pair(time_ms, lambda: "base", lambda: "feature", 1) == ([1.0], [1.0])
    assert calls == ["base", "feature"]  # one plain-first timing, as before --repeat

    # The second call of each repeat reads 10% slow: per-repeat ratios 0.909 and 1.1, the
    # pair's ratio exactly 1 (the feature is free here).
    times = iter([1.0, 1.1, 1.0, 1.1] * 100)
    features = bench_serving.features_of(bench.parse_args(["--sinks"]))
    rows = bench_serving.serving_rows(torch_fmha, features, [32], [64], [False], "cpu",
                                      time_ms=lambda fn: (fn(), next(times))[1], tokens=64, hidden=128,
                                      repeat=2)
    (r,) = rows
    assert r["ratio"] == pytest.approx(1.0) and r["meets_target"] is True
    assert r["ratio_spread"]["n"] == 1 and r["ratio_spread"]["min"] == pytest.approx(1.0)
    assert r["base_ms_repeats"] == [1.0, 1.1] and r["feature_ms_repeats"] == [1.1, 1.0]
    assert "1.000 (1.000-1.000)" in bench_serving.format_serving_table(rows, {})
    rows = bench_serving.serving_rows(torch_fmha, features, [32], [64], [False], "cpu",
                                      time_ms=lambda fn: (fn(), 1.0)[1], tokens=64, hidden=128)
    assert rows[0]["ratio"] == 1.0 and rows[0]["ratio_spread"] is None


def test_dense_rows_take_the_v_layout():
    """--v-layout (default: a packed v at D = 128 / 256, as the grid): the dense rows (softcap,
    sinks) give ours a packed v from quantize_qkv; the paged rows stay on the standard v; the
    table says which; --v-layout standard keeps the standard v."""
    times = iter([2.0, 2.5] * 100)
    features = bench_serving.features_of(bench.parse_args(["--paged", "16", "--softcap"]))
    assert bench.parse_args([]).v_layout == "default"
    rows = bench_serving.serving_rows(torch_fmha, features, [32], [64, 128], [True], "cpu",
                                      time_ms=lambda fn: (fn(), next(times))[1], tokens=64, hidden=256,
                                      v_layout="default")
    paths = {(r["feature"], r["D"]): r["path"] for r in rows}
    assert paths[("softcap 50", 128)] == "dense, packed v" and paths[("softcap 50", 64)] == "dense"
    assert paths[("paged 16", 128)] == "varlen" and paths[("paged 16 + softcap 50", 128)] == "varlen"
    table = bench_serving.format_serving_table(rows, {})
    assert " packed " in table and " standard " in table
    # the packed case runs the op with the packed v: finite outputs, softcap changes them, and they
    # are close to the standard case's (the same bf16 values quantized per tensor instead of cast)
    outs = {}
    for pack in (False, True):
        base, feat, _, path = bench_serving.make_case(torch_fmha, {"softcap": 50.0}, 1, 32, 2, 128, True, "cpu",
                                                      pack_v=pack)
        outs[pack] = (base().float(), feat().float())
        assert path == ("dense, packed v" if pack else "dense")
        assert all(torch.isfinite(o).all() for o in outs[pack]) and not torch.equal(*outs[pack])
    for i in range(2):
        assert (outs[True][i] - outs[False][i]).abs().max().item() < 0.25
    standard = bench_serving.serving_rows(torch_fmha, features[1:], [32], [128], [True], "cpu",
                                          time_ms=lambda fn: (fn(), 1.0)[1], tokens=64, hidden=256,
                                          v_layout="standard")
    assert standard[0]["path"] == "dense"
