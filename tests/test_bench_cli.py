"""The benchmark's pure-Python parts on CPU, with fake timings: ``--repeat`` (argument
parsing, interleaving, median ratio and its min-max, table and JSON) and the
``--e2e-errors`` table (which runs on the CPU op path without a GPU). Nothing
here times anything real: the benchmark itself is never a test."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

from torch_fmha import bench, bench_e2e


def test_parse_repeat_and_e2e_flags():
    a = bench.parse_args(["--repeat", "3", "--errors", "--ragged", "--window"])
    assert a.repeat == 3 and a.errors and a.ragged and a.window and not a.e2e_errors
    assert bench.parse_args([]).repeat == 1
    a = bench.parse_args(["--e2e-errors", "--e2e-shape", "1,128,2", "--head-dims", "64"])
    assert a.e2e_errors and a.e2e_shape == [1, 128, 2] and a.head_dims == [64]
    for bad in (["--repeat", "0"], ["--e2e-shape", "1,2"], ["--e2e-shape", "1,0,2"], ["--seqlens", "0"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_seqlens_between_the_grid_lengths():
    """A length that does not divide B*S = 16384 runs (3072: the crossover between two builds
    lies between 2k and 4k) with B = 16384 // S, and its FLOPs count the B that ran."""
    assert bench.parse_args(["--seqlens", "2048,3072,4096"]).seqlens == [2048, 3072, 4096]
    assert [bench.grid_batch(s) for s in (512, 3072, 16384, 20000)] == [32, 5, 1, 1]
    assert bench.attn_flops(bench.grid_batch(3072), 16, 3072, 3072, 128, False) == 4 * 5 * 16 * 3072 * 3072 * 128


def test_ratio_stats_and_format():
    st = bench.ratio_stats([1.0, 1.1, 0.9], [1.2, 1.0, 1.3])  # ours ms, cuDNN ms per repeat
    assert st["n"] == 3 and st["spread"] == "min-max"
    assert st["samples"] == pytest.approx([1.2, 1.0 / 1.1, 1.3 / 0.9])
    assert st["median"] == pytest.approx(1.2)
    assert (st["min"], st["max"]) == pytest.approx((1.0 / 1.1, 1.3 / 0.9))
    assert bench.format_ratio(st) == "1.200 (0.909-1.444)"
    assert bench.format_ratio(bench.ratio_stats([2.0], [1.0])) == "0.500"
    assert bench.format_ratio(None) == "n/a"
    with pytest.raises(ValueError):
        bench.ratio_stats([1.0], [])


def _fake_bench(repeat: int, timings: dict):
    """A Bench without GPU or peers: time_ms(fn) returns the next fake time of fn's column."""
    b = bench.Bench.__new__(bench.Bench)
    b.args = argparse.Namespace(repeat=repeat)
    b.reasons = {c: [] for c in bench.COLUMNS}
    b.dead = set()
    b.progress = bench.Progress(0, enabled=False)
    b.order = []
    its = {c: iter(v) for c, v in timings.items()}

    def time_ms(fn):
        col = fn()
        b.order.append(col)
        return next(its[col])
    b.time_ms = time_ms
    return b


def test_measure_pair_interleaves_and_reports_median_ratio(monkeypatch):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    ours, cudnn = [1.0, 1.1, 0.9], [1.2, 1.0, 1.3]
    b = _fake_bench(3, {bench.COL_OURS: ours, bench.COL_CUDNN: cudnn})
    row = {"case": "dense", "seqlen": 4096, "D": 128, "causal": True, "tflops": {}, "note": ""}
    flops = 1e12
    b._measure_pair(row, lambda: (lambda: bench.COL_OURS), lambda: (lambda: bench.COL_CUDNN), flops)
    # interleaved, the order alternating between repeats
    assert b.order == [bench.COL_OURS, bench.COL_CUDNN, bench.COL_CUDNN, bench.COL_OURS,
                       bench.COL_OURS, bench.COL_CUDNN]
    assert row["ms"] == {bench.COL_OURS: ours, bench.COL_CUDNN: cudnn}
    assert row["tflops"][bench.COL_OURS] == pytest.approx(flops / 1.0e-3 / 1e12)  # median 1.0 ms
    assert row["tflops"][bench.COL_CUDNN] == pytest.approx(flops / 1.2e-3 / 1e12)
    assert row["ratio"]["median"] == pytest.approx(1.2)
    json.dumps(row)  # the JSON rows stay serialisable

    # the table: median (min-max) in the ratio column, TF/s columns unchanged in form
    row2 = dict(row, seqlen=8192, tflops=dict(row["tflops"]))
    del row2["ratio"]
    text = bench.format_table([row, row2], {c: [] for c in bench.COLUMNS})
    assert "ours/cuDNN median (min-max, 3 runs)" in text
    assert "1.200 (0.909-1.444)" in text
    assert "1000.0" in text and "833.3" in text
    assert text.splitlines()[3].split()[-1] == f"{1000.0 / 833.333:.3f}"  # a row without stats: plain ratio

    # without --repeat: the single-measurement path, the old table header
    b1 = _fake_bench(1, {})
    b1._measure = lambda col, make, fl: {bench.COL_OURS: 500.0, bench.COL_CUDNN: 400.0}[col]
    r1 = {"case": "dense", "seqlen": 512, "D": 64, "causal": False, "tflops": {}, "note": ""}
    b1._measure_pair(r1, None, None, flops)
    assert r1["tflops"] == {bench.COL_OURS: 500.0, bench.COL_CUDNN: 400.0} and "ratio" not in r1
    text = bench.format_table([r1], {c: [] for c in bench.COLUMNS})
    assert "ours/cuDNN" in text and "median" not in text and "1.250" in text


def test_window_rows_note_their_share_of_full_causal():
    causal = {"case": "window", "seqlen": 16384, "D": 128, "causal": "causal",
              "tflops": {bench.COL_OURS: 880.0}, "note": "ours only"}
    window = dict(causal, causal="window(1024,0)", tflops={bench.COL_OURS: 616.0})
    bench.note_window_share(causal, window)
    assert window["share_of_causal"] == pytest.approx(0.7)
    assert window["note"] == "ours only; 70.0% of causal's TF/s"
    assert "share_of_causal" not in causal and causal["note"] == "ours only"
    text = bench.format_table([causal, window], {c: [] for c in bench.COLUMNS})
    assert "70.0% of causal's TF/s" in text
    failed = {"case": "window", "tflops": {bench.COL_OURS: None}, "note": "ours only"}
    bench.note_window_share(causal, failed)  # a failed measurement: no share, the note unchanged
    assert "share_of_causal" not in failed and failed["note"] == "ours only"


def test_window_rows_with_repeat_are_timed_interleaved_and_note_the_share_spread(monkeypatch):
    """With --repeat N the window section times full causal and the window N times each,
    interleaved as the grid's columns are: TF/s from the median times, and each repeat's share
    of causal (the pair timed back to back) as the spread in the note and the JSON."""
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    b = _fake_bench(3, {})
    b.args.v_layout = "standard"
    b.rows, order = [], []
    b._inputs = lambda shape_q, shape_k, seed: (None, (None, None, None), None, None)
    b._ours = lambda *a, **kw: (lambda: "causal" if kw.get("causal") else "window")
    times = {"causal": iter([2.0, 2.2, 1.8]), "window": iter([0.40, 0.30, 0.25])}

    def time_ms(fn):
        key = fn()
        order.append(key)
        return next(times[key])
    b.time_ms = time_ms
    b.window(128, seed=0)
    assert order == ["causal", "window", "window", "causal", "causal", "window"]
    causal, window = b.rows
    assert causal["causal"] == "causal" and window["causal"] == "window(1024,0)"
    assert causal["ms"] == {bench.COL_OURS: [2.0, 2.2, 1.8]}
    assert causal["tflops"][bench.COL_OURS] == pytest.approx(causal["flops"] / 2.0e-3 / 1e12)
    assert window["tflops"][bench.COL_OURS] == pytest.approx(window["flops"] / 0.30e-3 / 1e12)
    f = window["flops"] / causal["flops"]
    shares = [f * c / w for c, w in ((2.0, 0.40), (2.2, 0.30), (1.8, 0.25))]
    assert window["share_of_causal"] == pytest.approx(f * 2.0 / 0.30)  # the medians' ratio
    runs = window["share_of_causal_runs"]
    assert runs["samples"] == pytest.approx(shares) and runs["n"] == 3
    assert (runs["min"], runs["max"]) == pytest.approx((min(shares), max(shares)))
    assert window["note"] == (f"ours only; {100 * f * 2.0 / 0.30:.1f}% of causal's TF/s "
                              f"(runs {100 * min(shares):.1f}-{100 * max(shares):.1f}%)")
    json.dumps(b.rows)


def test_measure_pair_column_failure_is_noted(monkeypatch):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    b = _fake_bench(2, {bench.COL_OURS: [1.0, 1.0]})

    def refuse():
        raise RuntimeError("cuDNN refused sdpa_fp8 graph (test)")
    row = {"tflops": {}}
    b._measure_pair(row, lambda: (lambda: bench.COL_OURS), refuse, 1e12)
    assert row["tflops"][bench.COL_CUDNN] is None and "ratio" not in row
    assert row["tflops"][bench.COL_OURS] == pytest.approx(1000.0)
    assert any("refused" in m for m in b.reasons[bench.COL_CUDNN])


def test_format_e2e_table_with_fake_rows():
    rows = []
    for setting, rmse, q_ms in (("per-tensor", 0.02, 0.10), ("per-head", 0.019, 0.10),
                                ("per-head + rotation", 0.01, 0.12)):
        rows.append({"data": "outliers", "setting": setting, "causal": False, "shape": [1, 512, 8, 128],
                     "errors": {"rmse": rmse, "max_abs": 0.5, "ref_rms": 0.1},
                     "vs_per_tensor": rmse / 0.02, "quant_ms": q_ms, "attn_ms": 0.5, "note": "bf16 out"})
    rows.append({"data": "outliers", "setting": "cuDNN FP8 per-tensor", "causal": False,
                 "shape": [1, 512, 8, 128], "errors": None, "vs_per_tensor": None, "quant_ms": None,
                 "attn_ms": None, "note": "n/a"})
    text = bench_e2e.format_e2e_table(rows)
    assert "B=1 S=512 H=8" in text and "total ms" in text
    assert "0.500" in text and "0.6200" in text and "n/a" in text
    assert "total / per-head total" in text and "1.033" in text  # 0.62 / 0.60
    json.dumps(rows)


def test_e2e_errors_cli_runs_on_cpu(tmp_path):
    """--e2e-errors reaches its CPU path (ours on the CPU op path, cuDNN n/a) and writes JSON."""
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine --e2e-errors runs the GPU path (not a unit test)")
    out = tmp_path / "e2e.json"
    res = subprocess.run([sys.executable, "-m", "torch_fmha.bench", "--e2e-errors", "--e2e-shape", "1,128,2",
                          "--head-dims", "64", "--causal", "0", "--json", str(out)],
                         capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "per-head + rotation" in res.stdout and "cuDNN FP8: not run" in res.stdout
    data = json.loads(out.read_text())
    settings = {(r["data"], r["setting"]) for r in data["e2e_rows"]}
    assert ("outliers", "per-head + rotation") in settings and ("N(0,1)", "per-tensor") in settings
    assert all(r["errors"]["rmse"] > 0 for r in data["e2e_rows"])


def test_bench_repeat_cli_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("GPU machine: the benchmark would run")
    res = subprocess.run([sys.executable, "-m", "torch_fmha.bench", "--repeat", "3", "--errors", "--ragged",
                          "--window"], capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert res.returncode == 2 and "SM90" in res.stderr and "Traceback" not in res.stderr


def test_v_layout_follows_quantize_qkv_by_default():
    import torch_fmha
    from torch_fmha import quantize

    assert bench.PACKED_V_BY_DEFAULT == quantize._PACK_V_HEAD_DIMS
    assert bench.parse_args([]).v_layout == "default"
    assert bench.parse_args(["--pack-v"]).v_layout == "packed"
    assert bench.parse_args(["--v-layout", "standard"]).v_layout == "standard"
    with pytest.raises(SystemExit):
        bench.parse_args(["--v-layout", "rows"])
    for d in (64, 128, 256):
        x = torch.randn(1, 32, 2, d)
        packed_by_quantize_qkv = torch_fmha.quantize_qkv(x, x, x).v.dim() == 5  # a packed v is 5-D
        assert bench.uses_packed_v("default", d) == packed_by_quantize_qkv, d
        assert bench.uses_packed_v("packed", d) and not bench.uses_packed_v("standard", d)
