"""The decode benchmark (torch_fmha/bench_decode.py, issue 15) on CPU with fake timings:
the flag, a row (the op runs on CPU, SDPA columns off), the split-count mirror, the
bandwidth / target arithmetic and the table. Nothing is timed for real."""

from __future__ import annotations

import torch

import torch_fmha
from torch_fmha import bench, bench_decode


def test_flag_and_no_gpu_exit():
    assert bench.parse_args(["--decode"]).decode and not bench.parse_args([]).decode
    if torch_fmha.sm90_unavailable_reason() is not None:
        assert bench.main(["--decode", "--no-progress"]) == 2


def test_auto_num_splits_mirror():
    # H100 (132 SMs), Hkv = 8, GQA packing: B * 8 tiles.
    assert [bench_decode.auto_num_splits(1, 32, 8, s, 132) for s in (1024, 2048, 4096, 8192, 131072)] == \
        [1, 1, 8, 16, 16]
    assert bench_decode.auto_num_splits(8, 32, 8, 131072, 132) == 2
    assert bench_decode.auto_num_splits(64, 64, 8, 131072, 132) == 1
    # The CUDA decode kernel's rule (3 CTAs per SM at D = 128, splits filling at most 2, or 1
    # with sqrt(keys / 16) splits up to 4096 keys): B * Hkv CTAs per split.
    assert [bench_decode.auto_num_splits(1, 32, 8, s, 132, decode_kernel=True)
            for s in (1024, 4096, 8192, 32768, 131072)] == [8, 16, 16, 32, 32]
    assert [bench_decode.auto_num_splits(b, 32, 8, 32768, 132, decode_kernel=True)
            for b in (8, 16, 32, 64)] == [4, 2, 1, 1]
    assert [bench_decode.auto_num_splits(b, 32, 8, 1024, 132, decode_kernel=True)
            for b in (1, 2, 4, 8, 16, 64)] == [8, 8, 4, 2, 1, 1]
    # The op agrees: on CPU the units are intra-op threads (8 here); B = 1, Hkv = 1 is one tile.
    q = torch.randn(1, 1, 8, 64)
    k = torch.randn(1, 4096, 1, 64)
    seqlens = torch.tensor([4000], dtype=torch.int32)
    threads = torch.get_num_threads()
    torch.set_num_threads(8)
    try:
        n = bench_decode.auto_num_splits(1, 8, 1, 4096, torch.get_num_threads())
        auto = torch_fmha.attention_with_kvcache(q, k, k, seqlens)
        fixed = torch_fmha.attention_with_kvcache(q, k, k, seqlens, num_splits=n)
    finally:
        torch.set_num_threads(threads)
    assert n == 8 and torch.equal(auto, fixed)


def test_row_and_table_on_cpu_with_fake_times():
    times = iter([0.010, 0.020] * 10)  # ours, ours 1 split
    row = bench_decode.decode_row(torch_fmha, 8, 32, 8192, lambda fn: (fn(), next(times))[1], units=132,
                                  copy_bw=3.0e12, device="cpu", sdpa=False)
    assert "ours_graph_ms" not in row  # no CUDA graphs on CPU
    cache_bytes = 2 * 8 * 8192 * 8 * 128
    # device="cpu": the split plan's rule
    assert row["splits"] == 2 and row["ours_ms"] == 0.010 and row["ours_1split_ms"] == 0.020
    assert abs(row["gbps"] - cache_bytes / 1e-5 / 1e9) < 1e-6
    assert abs(row["copy_fraction"] - cache_bytes / 1e-5 / 3.0e12) < 1e-9
    assert row["target_bandwidth"] == 0.8 and row["meets_bandwidth"] is True  # B * Hkv = 64, S >= 8k
    assert row["speedup_vs_sdpa"] is None and row["target_speedup"] == 1.6
    table = bench_decode.format_decode_table([row, {"B": 64, "H": 64, "S": 131072, "skipped": "does not fit"}],
                                             3.0e12)
    assert "8192" in table and "does not fit" in table and "3000 GB/s" in table
    assert ">= 80%: ok / n/a / n/a" in table  # eager verdict, no graph or layered time on CPU


def test_rates_for_graph_times():
    row = {"ours_graph_ms": 0.02, "sdpa_flash_graph_ms": 0.05, "sdpa_cudnn_graph_ms": 0.04,
           "target_bandwidth": 0.6, "target_speedup": 1.6}
    cache_bytes = 2 * 1 * 32768 * 8 * 128
    bench_decode._rates(row, "_graph_ms", cache_bytes, copy_bw=6.0e12)
    assert abs(row["copy_fraction_graph"] - cache_bytes / 2e-5 / 6.0e12) < 1e-12  # 3.36 of 6 TB/s
    assert row["speedup_vs_sdpa_graph"] == 0.04 / 0.02 and row["meets_speedup_graph"] is True
    assert row["meets_bandwidth_graph"] is False and "copy_fraction" not in row  # eager keys untouched


def test_layer_count_reads_a_gib_per_replay():
    # bench_decode.LAYERED_BYTES of FP8 cache per replay of the layered graph, 1 to 128 layers
    mib = 1 << 20
    assert bench_decode.layer_count(2 * 1 * 1024 * 8 * 128) == 128  # B = 1, 1k keys: 2 MiB, capped
    assert bench_decode.layer_count(2 * 1 * 32768 * 8 * 128) == 16  # 64 MiB
    assert bench_decode.layer_count(2 * 8 * 8192 * 8 * 128) == 8  # 128 MiB
    assert bench_decode.layer_count(2 * 1 * 131072 * 8 * 128) == 4  # 256 MiB
    assert bench_decode.layer_count(2 * 64 * 8192 * 8 * 128) == 1  # 1 GiB: one layer
    assert bench_decode.layer_count(1000 * mib + 1) == 2


def test_rates_and_verdicts_for_layered_times():
    row = {"ours_layered_ms": 0.025, "sdpa_flash_layered_ms": 0.05, "sdpa_cudnn_layered_ms": None,
           "target_bandwidth": 0.6, "target_speedup": 1.6}
    cache_bytes = 2 * 1 * 32768 * 8 * 128
    bench_decode._rates(row, "_layered_ms", cache_bytes, copy_bw=4.0e12)
    assert abs(row["copy_fraction_layered"] - cache_bytes / 2.5e-5 / 4.0e12) < 1e-12  # 2.68 of 4 TB/s
    assert row["meets_bandwidth_layered"] is True and row["speedup_vs_sdpa_layered"] == 2.0
    assert "copy_fraction_graph" not in row and "copy_fraction" not in row
    assert bench_decode._eager_name("sdpa_cudnn_layered_ms") == "sdpa_cudnn_ms"
    # the table: eager / graph / layered verdicts, the layered columns filled
    row.update({"B": 1, "H": 32, "S": 32768, "splits": 32, "layers": 16, "ours_ms": 0.04, "ours_1split_ms": 0.3,
                "copy_fraction": 0.4, "speedup_vs_sdpa": 1.2, "meets_bandwidth": False, "meets_speedup": False})
    table = bench_decode.format_decode_table([row], 4.0e12)
    assert ">= 60%: MISSED / n/a / ok" in table and ">= 1.6x: MISSED / n/a / ok" in table
    assert "25.0" in table and "67%" in table and "50.0" in table, table


def test_no_sdpa_reaches_every_row(monkeypatch, capsys):
    # `bench --decode --no-sdpa` left the SDPA columns on until session 27: run_decode did not
    # hand the flag to decode_row. The GPU-only steps are faked; decode_row records its calls.
    calls = []

    def fake_row(fmha, b, h, s, time_ms, units, copy_bw, **kwargs):
        calls.append(kwargs)
        return {"B": b, "H": h, "S": s, "skipped": "fake"}

    class Props:
        multi_processor_count = 132

    monkeypatch.setattr(torch_fmha, "sm90_unavailable_reason", lambda: None)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "fake")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(bench_decode, "copy_bandwidth", lambda time_ms: 3.0e12)
    monkeypatch.setattr(bench_decode, "decode_row", fake_row)
    for flag, sdpa in (["--no-sdpa"], False), ([], True):
        calls.clear()
        args = bench.parse_args(["--decode", "--no-progress", *flag])
        assert bench_decode.run_decode(args, []) == 0
        assert calls and all(c.get("sdpa", True) is sdpa for c in calls), (flag, calls[:2])
    capsys.readouterr()


def test_repeat_alternates_the_order_and_reports_medians():
    # --repeat N: every column N times, the order reversed every other round (ours, 1 split |
    # 1 split, ours | ours, 1 split on CPU, where there are no SDPA or graph columns), each
    # column's median, its times kept. Fake times in call order: 1, 2 | 3, 4 | 5, 6.
    times = iter([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    order = []

    def fake_time(fn):
        fn()
        t = next(times)
        order.append(t)
        return t

    row = bench_decode.decode_row(torch_fmha, 1, 8, 1024, fake_time, units=8, copy_bw=3.0e12, device="cpu",
                                  sdpa=False, repeat=3)
    assert row["ours_runs"] == [1.0, 4.0, 5.0] and row["ours_1split_runs"] == [2.0, 3.0, 6.0]
    assert row["ours_ms"] == 4.0 and row["ours_1split_ms"] == 3.0 and len(order) == 6
    assert abs(row["gbps"] - 2 * 1024 * 8 * 128 / 4e-3 / 1e9) < 1e-9  # from the median
    # The table's min-max column reads the graph times; a row without them prints n/a.
    table = bench_decode.format_decode_table([row], 3.0e12)
    assert "min-max" in table and "median of 3 rounds" in table
    # One round: no *_runs, no min-max column.
    one = bench_decode.decode_row(torch_fmha, 1, 8, 1024, lambda fn: (fn(), 0.5)[1], units=8, copy_bw=3.0e12,
                                  device="cpu", sdpa=False)
    assert "ours_runs" not in one and one["ours_ms"] == 0.5
    assert "min-max" not in bench_decode.format_decode_table([one], 3.0e12)


def test_time_rounds_skips_a_refused_column_and_its_graph_twin():
    calls = []

    def timer(name, result):
        return lambda: (calls.append(name), result)[1]

    reasons = {}
    runs = bench_decode._time_rounds({"sdpa_flash_ms": timer("flash", (None, "refused")),
                                      "sdpa_flash_graph_ms": timer("flash graph", (7.0, None)),
                                      "ours_ms": timer("ours", (1.0, None))}, 2, reasons)
    assert calls == ["flash", "ours", "ours"], calls  # the refused column's graph twin never runs
    assert reasons == {"sdpa_flash_ms": "refused"} and runs["ours_ms"] == [1.0, 1.0]
    assert runs["sdpa_flash_ms"] == [] and runs["sdpa_flash_graph_ms"] == []


def test_refused_sdpa_backend_reasons_keep_their_names():
    # On CPU the cuDNN SDPA backend refuses: its reason is keyed "sdpa_cudnn" (as the table's
    # notes print it), and with --repeat its graph twin is never timed.
    for repeat in (1, 2):
        row = bench_decode.decode_row(torch_fmha, 1, 8, 1024, lambda fn: (fn(), 0.5)[1], units=8, copy_bw=3.0e12,
                                      device="cpu", sdpa=True, repeat=repeat)
        assert "sdpa_cudnn" in row["reasons"] and not any(k.endswith("_ms") for k in row["reasons"]), row["reasons"]
        assert row["sdpa_cudnn_ms"] is None
