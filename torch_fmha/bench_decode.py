"""``python -m torch_fmha.bench --decode``: one decode step against an FP8 KV cache
(issue 15), ``attention_with_kvcache`` side by side with PyTorch SDPA bf16.

Rows: B in {1, 8, 64} x H in {32, 64} x cache length in {1k, 8k, 32k, 128k}, Hkv = 8,
D = 128, Sq = 1, every sequence's cache full (``cache_seqlens = S``), FP8 cache,
per-tensor descales, bf16 out. Columns:

* ``ours``: ``attention_with_kvcache(num_splits=0)`` (the op's own split count, printed
  as ``splits``: on CUDA these shapes run the decode kernel, whose count is
  csrc/decode_splits.h ``choose_decode_splits``, mirrored by :func:`auto_num_splits`), and ``ours 1 split`` (``num_splits=1``) to show what
  split-KV buys;
* ``GB/s`` and ``% copy``: bytes of cache read (K + V, FP8: ``2 * B * S * Hkv * D``) per
  second, and that as a fraction of the device's copy bandwidth measured in the same
  run (a device-to-device ``copy_`` of 2 GiB, bytes read + written per second);
* ``SDPA flash`` / ``SDPA cudnn``: ``scaled_dot_product_attention`` on the bf16 cache
  (``[B, Hkv, S, D]``, ``enable_gqa=True``), one backend each; ``n/a`` with the reason
  when a backend refuses the shape;
* ``x SDPA``: the best SDPA time / ours.

Each call is timed three ways: eagerly (triton's ``do_bench``: at B = 1 this is mostly the
host issuing the op's kernels, ``tools/decode_overhead.py``); as the replay of a CUDA
graph holding that one call (``graph`` columns, also ``do_bench``: what a server that
captures its decode step sees; SDPA's backends captured the same way); and ``layered``:
a CUDA graph of one call per layer of a model, each layer on its own copy of the cache
(``layers`` of them, enough to read 1 GiB per replay, at most 128), replayed back to back
without ``do_bench``'s flush, the time per layer (:func:`layered_graph_ms`). ``do_bench`` zeroes
256 MB before every call, and the write-back of those dirty lines shares HBM with a
memory-bound step; between a model's attention layers run projections that read their
weights, so L2 holds clean lines. ``% copy`` and ``x SDPA`` are given for all three; the
targets are judged on each. Every ``% copy`` is of the ``do_bench``-timed copy.
``--repeat N`` (N > 1) times every column of a row N times, reversing the columns' order
every other round, and reports each column's median (the times in the JSON's
``<column>_runs``; the table adds the min-max of ours' graph times): one pass timed the same launch (``num_splits=0`` and ``=1`` at B = 64) up to 17%
apart (session 35).

Targets (issue 15): >= 80% of copy bandwidth for B * Hkv >= 64 and S >= 8k; >= 60% for
B = 1 at 32k and 128k; >= 1.6x SDPA bf16's best backend at S >= 8k. A shape that does
not fit in memory is reported as such. Needs an SM90 GPU (exit status 2 otherwise).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
from typing import Callable, Dict, List, Optional

import torch

from torch_fmha.bench import Progress, _fmt, _grid, _load_ours, alternating_rounds, make_timer

FP8 = torch.float8_e4m3fn
BATCHES = (1, 8, 64)
HEADS = (32, 64)
CACHE_LENS = (1024, 8192, 32768, 131072)
HEADS_KV, HEAD_DIM = 8, 128
COPY_BYTES = 2 << 30

# csrc/ops/kvcache_op.cpp: kTileRows, kMinKeysPerSplit, kMaxSplits, kMinKeysToSplit.
_TILE_ROWS, _MIN_KEYS_PER_SPLIT, _MAX_SPLITS, _MIN_KEYS_TO_SPLIT = 128, 512, 64, 4096
# The decode kernel's CTAs per SM at D = 128 (168 registers, 68 KB of shared memory
# each), as decode_ctas_per_sm (csrc/launch/decode.cu) reads it from the occupancy API.
_DECODE_CTAS_PER_SM_128 = 3
# csrc/decode_splits.h: kMaxDecodeSplits, kShortDecodeKeys (tests/test_decode_host.py compares the rule with this mirror).
_MAX_DECODE_SPLITS = 32
_SHORT_DECODE_KEYS = 4096


def auto_num_splits(batch: int, heads: int, heads_kv: int, cache_len: int, units: int,
                    decode_kernel: bool = False) -> int:
    """num_splits=0's choice for a decode step (Sq = 1, GQA packing: one sequence of
    H / Hkv rows per KV head), mirrored from csrc/ops/kvcache_op.cpp: choose_num_splits
    (the split plan), or with `decode_kernel` csrc/decode_splits.h:
    choose_decode_splits (the CUDA decode kernel, D = 128: `units` SMs of 3 CTAs each,
    splits filling at most 2 of them, or 1 and sqrt(keys / 16) splits for caches of at
    most 4096 keys)."""
    if decode_kernel:
        ctas, slots = batch * heads_kv, units * _DECODE_CTAS_PER_SM_128
        if ctas <= 0 or cache_len <= 0 or ctas >= slots:
            return 1
        short = cache_len <= _SHORT_DECODE_KEYS
        split_slots = units if short else units * min(_DECODE_CTAS_PER_SM_128, 2)
        by_keys = math.ceil(math.sqrt(cache_len / (16 if short else 32)))
        return max(1, min(split_slots // ctas, by_keys, _MAX_DECODE_SPLITS))
    rows = heads // heads_kv
    tiles = batch * heads_kv * -(-rows // _TILE_ROWS)
    if tiles <= 0 or cache_len < _MIN_KEYS_TO_SPLIT or tiles >= units:
        return 1
    return max(1, min(units // tiles, -(-cache_len // _MIN_KEYS_PER_SPLIT), _MAX_SPLITS))


def targets(batch: int, cache_len: int) -> Dict[str, Optional[float]]:
    """Issue 15's targets for one row: minimum fraction of copy bandwidth, minimum speedup."""
    bw = None
    if batch * HEADS_KV >= 64 and cache_len >= 8192:
        bw = 0.8
    elif batch == 1 and cache_len >= 32768:
        bw = 0.6
    return {"bandwidth": bw, "speedup": 1.6 if cache_len >= 8192 else None}


def copy_bandwidth(time_ms: Callable, device="cuda") -> float:
    """Device-to-device copy, bytes read + written per second."""
    src = torch.empty(COPY_BYTES, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    t = time_ms(lambda: dst.copy_(src))
    del src, dst
    return 2 * COPY_BYTES / (t * 1e-3)


def _layer_copies(layers: int, *tensors: torch.Tensor) -> List[tuple]:
    """One tuple of the tensors per layer: the tensors themselves for layer 0, copies for the
    others (clone keeps a dense tensor's strides: the cache's head-major view stays one)."""
    return [tensors] + [tuple(t.clone() for t in tensors) for _ in range(layers - 1)]


def _sdpa_layered_time(layer_tensors: List[tuple], backend) -> tuple:
    """(ms per layer, None) or (None, reason): one SDPA backend, timed as layered_graph_ms."""
    from torch.nn.attention import sdpa_kernel

    fn = torch.nn.functional.scaled_dot_product_attention
    try:
        with sdpa_kernel(backend):
            calls = [lambda q=q, k=k, v=v: fn(q, k, v, enable_gqa=True) for q, k, v in layer_tensors]
            calls[0]()
            return layered_graph_ms(calls), None
    except Exception as e:  # a backend that refuses the shape says why
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"


def _sdpa_time(time_ms, q, k, v, backend) -> tuple:
    """(ms, None) or (None, reason) for one SDPA backend."""
    from torch.nn.attention import sdpa_kernel

    fn = torch.nn.functional.scaled_dot_product_attention
    try:
        with sdpa_kernel(backend):
            fn(q, k, v, enable_gqa=True)
            return time_ms(lambda: fn(q, k, v, enable_gqa=True)), None
    except Exception as e:  # a backend that refuses the shape says why
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"


def capture_graph(fn: Callable[[], object], warmup: int = 2) -> tuple:
    """(CUDA graph holding one call of fn, that call's output), warmed up on a side stream."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def graph_ms(fn: Callable[[], object], time_ms: Callable) -> float:
    """ms per replay of a CUDA graph holding one call of fn."""
    return time_ms(capture_graph(fn)[0].replay)


# Layered steps: a model's decode step calls attention once per layer, each layer on a cache of
# its own, and the kernels between them (projections) read weights: L2 then holds clean lines
# of other data, not the cache and not dirty lines. The step is timed so: a CUDA graph of one
# call per layer, each on its own copy of the row's cache and q, with enough layers that they
# read LAYERED_BYTES together (about 20 times the 50 MB L2 of an H100 or H200: what one replay
# leaves in L2 is a small part of what the next reads first), the graph replayed back to back
# without a flush. do_bench's flush (zeroing 256 MB before every call) leaves dirty lines whose
# write-back shares HBM with a memory-bound step: 6-11 us at batch 1 from 32k keys (DESIGN 1.11).
LAYERED_BYTES = 1 << 30
MAX_LAYERS = 128


def layer_count(cache_bytes: int) -> int:
    """Layers of the layered timing for a row whose FP8 cache (K + V) is `cache_bytes`: enough
    to read LAYERED_BYTES per replay, 1 for a cache of at least that, at most MAX_LAYERS."""
    return max(1, min(MAX_LAYERS, -(-LAYERED_BYTES // max(1, cache_bytes))))


def layered_graph_ms(calls: List[Callable[[], object]], warmup_ms: float = 25.0, rep_ms: float = 100.0) -> float:
    """ms per call of a CUDA graph holding `calls` in order (one per layer), replayed back to
    back: CUDA events around runs of replays (no flush between them), the median of 5 runs."""
    graph, _ = capture_graph(lambda: [c() for c in calls])

    def run(n: int) -> float:  # ms per replay over n replays
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            graph.replay()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / n

    est = max(run(1), 1e-3)
    run(max(1, int(warmup_ms / est)))
    n = max(1, int(rep_ms / 5 / est))
    return statistics.median(run(n) for _ in range(5)) / len(calls)


def _rates(row: dict, suffix: str, cache_bytes: int, copy_bw: float) -> None:
    """GB/s, fraction of copy bandwidth, speedup over the best SDPA backend and the two
    target verdicts for the times ending in `suffix` ("_ms" eager, "_graph_ms",
    "_layered_ms")."""
    t = row.get("ours" + suffix)
    tag = suffix[:-len("_ms")]
    row["gbps" + tag] = cache_bytes / (t * 1e-3) / 1e9 if t else None
    row["copy_fraction" + tag] = cache_bytes / (t * 1e-3) / copy_bw if t and copy_bw else None
    sdpa_times = [row.get(n + suffix) for n in ("sdpa_flash", "sdpa_cudnn") if row.get(n + suffix)]
    row["speedup_vs_sdpa" + tag] = min(sdpa_times) / t if sdpa_times and t else None
    tb, ts = row["target_bandwidth"], row["target_speedup"]
    frac, speed = row["copy_fraction" + tag], row["speedup_vs_sdpa" + tag]
    row["meets_bandwidth" + tag] = None if tb is None or frac is None else frac >= tb
    row["meets_speedup" + tag] = None if ts is None or speed is None else speed >= ts


def _eager_name(n: str) -> str:
    """The eager column of a graph or layered column: "sdpa_flash_graph_ms" -> "sdpa_flash_ms"."""
    return n.replace("_graph_ms", "_ms").replace("_layered_ms", "_ms")


def _time_rounds(timers: Dict[str, Callable[[], tuple]], rounds: int, reasons: Dict[str, str]) -> Dict[str, list]:
    """Each timer (name -> () -> (ms or None, reason or None)) `rounds` times, the order
    reversed every other round (so no column is always timed first or last): name -> its
    times. A timer that gives a reason is dropped from the later rounds; the reason is kept."""
    runs: Dict[str, list] = {n: [] for n in timers}
    for _, n in alternating_rounds(list(timers), rounds):
        if n in reasons or _eager_name(n) in reasons:  # refused (eagerly)
            continue
        ms, why = timers[n]()
        if why:
            reasons[n] = why
        else:
            runs[n].append(ms)
    return runs


def decode_row(fmha, batch: int, heads: int, cache_len: int, time_ms: Callable, units: int, copy_bw: float,
               device="cuda", sdpa: bool = True, seed: int = 0, graph: Optional[bool] = None,
               repeat: int = 1) -> dict:
    """One row: ours (auto and 1 split), bandwidth, SDPA bf16 backends; eager and, with
    `graph` (default: on CUDA), as CUDA-graph replays. `repeat` > 1 times every column that
    many times, the columns' order reversed every other round, and reports each column's
    median (its times in ``<column>_runs``); the bf16 and FP8 caches are then both held
    (at B = 64, 128k keys: 34 + 17 GB)."""
    graph = (device == "cuda") if graph is None else graph
    g = torch.Generator(device=device).manual_seed(seed)
    row: dict = {"B": batch, "H": heads, "Hkv": HEADS_KV, "D": HEAD_DIM, "S": cache_len,
                 "splits": auto_num_splits(batch, heads, HEADS_KV, cache_len, units,
                                           decode_kernel=device == "cuda")}
    row.update({"target_" + n: t for n, t in targets(batch, cache_len).items()})
    cache_bytes = 2 * batch * cache_len * HEADS_KV * HEAD_DIM  # K + V, one byte each
    layers = layer_count(cache_bytes)
    if graph:
        row["layers"] = layers
    one = torch.ones(1, device=device)
    q = torch.randn(batch, 1, heads, HEAD_DIM, generator=g, device=device, dtype=torch.bfloat16)
    k = torch.randn(batch, HEADS_KV, cache_len, HEAD_DIM, generator=g, device=device, dtype=torch.bfloat16)
    v = torch.randn(batch, HEADS_KV, cache_len, HEAD_DIM, generator=g, device=device, dtype=torch.bfloat16)
    reasons: Dict[str, str] = {}
    sdpa_timers: Dict[str, Callable[[], tuple]] = {}
    if sdpa:
        from torch.nn.attention import SDPBackend
        qt = q.transpose(1, 2)
        for name, backend in (("sdpa_flash", SDPBackend.FLASH_ATTENTION), ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION)):
            sdpa_timers[name + "_ms"] = lambda backend=backend: _sdpa_time(time_ms, qt, k, v, backend)
            if graph:
                sdpa_timers[name + "_graph_ms"] = lambda backend=backend: _sdpa_time(
                    lambda fn: graph_ms(fn, time_ms), qt, k, v, backend)
                sdpa_timers[name + "_layered_ms"] = lambda backend=backend: _sdpa_layered_time(
                    _layer_copies(layers, qt, k, v), backend)

    def fp8_timers(k8: torch.Tensor, v8: torch.Tensor) -> Dict[str, Callable[[], tuple]]:
        q8 = q.to(FP8)
        seqlens = torch.full((batch,), cache_len, dtype=torch.int32, device=device)
        desc = dict(q_descale=one, k_descale=one, v_descale=one)
        timers = {}
        for name, splits in (("ours", 0), ("ours_1split", 1)):
            def run(splits=splits):
                return fmha.attention_with_kvcache(q8, k8, v8, seqlens, causal=True, num_splits=splits, **desc)
            run()
            timers[name + "_ms"] = lambda run=run: (time_ms(run), None)
            if graph:
                timers[name + "_graph_ms"] = lambda run=run: (graph_ms(run, time_ms), None)
        if graph:
            def layered() -> tuple:
                calls = [lambda qi=qi, ki=ki, vi=vi: fmha.attention_with_kvcache(qi, ki, vi, seqlens, causal=True, **desc)
                         for qi, ki, vi in _layer_copies(layers, q8, k8, v8)]
                return layered_graph_ms(calls), None
            timers["ours_layered_ms"] = layered
        return timers

    # The FP8 cache as the op takes it, [B, S, Hkv, D]: a view of head-major memory (the copy
    # keeps the bf16 cache's [B, Hkv, S, D] strides, as transformers' static cache stores it).
    if repeat <= 1:
        # SDPA first; each bf16 tensor is dropped once its FP8 copy is made (peak memory).
        runs = _time_rounds(sdpa_timers, 1, reasons)
        sdpa_timers.clear()
        k8 = k.transpose(1, 2).to(FP8)
        k = None
        v8 = v.transpose(1, 2).to(FP8)
        v = None
        runs.update(_time_rounds(fp8_timers(k8, v8), 1, reasons))
    else:
        runs = _time_rounds({**sdpa_timers, **fp8_timers(k.transpose(1, 2).to(FP8), v.transpose(1, 2).to(FP8))},
                            repeat, reasons)
    for name, times in runs.items():
        row[name] = statistics.median(times) if times else None
        if repeat > 1 and times:
            row[name[:-len("_ms")] + "_runs"] = times
    # Reasons as the table prints them: "sdpa_flash", "sdpa_flash graph", "sdpa_flash layered".
    row["reasons"] = {n[:-len("_ms")].replace("_graph", " graph").replace("_layered", " layered"): why
                      for n, why in reasons.items()}
    _rates(row, "_ms", cache_bytes, copy_bw)
    if graph:
        _rates(row, "_graph_ms", cache_bytes, copy_bw)
        _rates(row, "_layered_ms", cache_bytes, copy_bw)
    return row


def format_decode_table(rows: List[dict], copy_bw: float) -> str:
    head = ["B", "H", "S", "splits", "ours us", "1 split us", "% copy", "x SDPA", "ours graph us",
            "1 split graph us", "% copy graph", "x SDPA graph", "layers", "ours layered us", "% copy layered",
            "x SDPA layered", "SDPA flash us", "SDPA cudnn us", "SDPA best graph us", "SDPA best layered us",
            "targets: % copy", "x SDPA"]
    # With --repeat: the min-max of ours' graph times over the rounds, after its median.
    repeats = max((len(r.get("ours_graph_runs") or r.get("ours_runs") or []) for r in rows), default=0)
    if repeats > 1:
        head.insert(9, "min-max")
    body = []

    def us(ms):
        return "n/a" if ms is None else f"{ms * 1e3:.1f}"

    def pct(f):
        return "n/a" if f is None else f"{f:.0%}"

    def verdict(target, fmt, *verdicts):
        if target is None:
            return ""
        word = {True: "ok", False: "MISSED", None: "n/a"}
        return f">= {fmt.format(target)}: " + " / ".join(word[v] for v in verdicts)

    def best(r, suffix):
        times = [r.get(n + suffix) for n in ("sdpa_flash", "sdpa_cudnn") if r.get(n + suffix)]
        return min(times) if times else None

    for r in rows:
        if r.get("skipped"):
            body.append([str(r["B"]), str(r["H"]), str(r["S"])] + [""] * (len(head) - 4) + [r["skipped"]])
            continue
        cells = [str(r["B"]), str(r["H"]), str(r["S"]), str(r["splits"]), us(r["ours_ms"]),
                     us(r["ours_1split_ms"]), pct(r["copy_fraction"]), _fmt(r["speedup_vs_sdpa"], 2),
                     us(r.get("ours_graph_ms")), us(r.get("ours_1split_graph_ms")), pct(r.get("copy_fraction_graph")),
                     _fmt(r.get("speedup_vs_sdpa_graph"), 2), str(r.get("layers", "n/a")), us(r.get("ours_layered_ms")),
                     pct(r.get("copy_fraction_layered")), _fmt(r.get("speedup_vs_sdpa_layered"), 2),
                     us(r.get("sdpa_flash_ms")), us(r.get("sdpa_cudnn_ms")), us(best(r, "_graph_ms")),
                     us(best(r, "_layered_ms")),
                     verdict(r["target_bandwidth"], "{:.0%}", r["meets_bandwidth"], r.get("meets_bandwidth_graph"),
                             r.get("meets_bandwidth_layered")),
                     verdict(r["target_speedup"], "{:.1f}x", r["meets_speedup"], r.get("meets_speedup_graph"),
                             r.get("meets_speedup_layered"))]
        if repeats > 1:
            runs = r.get("ours_graph_runs") or []
            cells.insert(9, f"{min(runs) * 1e3:.1f}-{max(runs) * 1e3:.1f}" if runs else "n/a")
        body.append(cells)
    notes = sorted({f"  {n}: {why}" for r in rows for n, why in r.get("reasons", {}).items()})
    lines = _grid(head, body)
    lines += ["", f"copy bandwidth (device-to-device copy_, read + write): {copy_bw / 1e9:.0f} GB/s",
              "targets: verdict on the eager / the CUDA-graph / the layered times",
              f"layered: a CUDA graph of one call per layer, each layer on its own copy of the cache, replayed "
              f"back to back without a flush; enough layers ({MAX_LAYERS} at most) to read {LAYERED_BYTES >> 20} MiB "
              "of FP8 cache per replay; time per layer"]
    if repeats > 1:
        lines += [f"times: each column's median of {repeats} rounds, the columns' order reversed every "
                  "other round; min-max: ours' graph times"]
    if notes:
        lines += ["", "n/a reasons:"] + notes
    return "\n".join(lines)


def run_decode(args: argparse.Namespace, argv: List[str]) -> int:
    fmha, reason = _load_ours()
    if fmha is None:
        print(f"torch_fmha.bench --decode: {reason}", file=sys.stderr)
        return 2
    gpu_reason = fmha.sm90_unavailable_reason()
    if gpu_reason:
        print(f"torch_fmha.bench --decode needs an SM90 GPU: {gpu_reason}", file=sys.stderr)
        return 2
    time_ms, timing = make_timer(args.warmup, args.rep)
    units = torch.cuda.get_device_properties(0).multi_processor_count
    # Every "% copy" (the layered columns' too) is of this do_bench-timed copy: a 2 GiB copy_
    # captured in a graph became a copy-engine memcpy node, 2.77 against 4.27 TB/s (session 49).
    copy_bw = copy_bandwidth(time_ms)
    shapes = [(b, h, s) for b in BATCHES for h in HEADS for s in CACHE_LENS]
    progress = Progress(len(shapes), enabled=not args.no_progress)
    rows = []
    try:
        for i, (b, h, s) in enumerate(shapes):
            try:
                rows.append(decode_row(fmha, b, h, s, time_ms, units, copy_bw, sdpa=not args.no_sdpa,
                                       seed=args.seed + i, repeat=max(1, args.repeat)))
            except torch.cuda.OutOfMemoryError:
                rows.append({"B": b, "H": h, "S": s, "skipped": "does not fit in GPU memory"})
            torch.cuda.empty_cache()
            progress.step(f"decode B={b} H={h} S={s}")
    finally:
        progress.close()
    print(f"\ntorch_fmha.bench --decode on {torch.cuda.get_device_name()} ({units} SMs) | torch {torch.__version__} "
          f"| Hkv={HEADS_KV} D={HEAD_DIM} Sq=1, FP8 cache, bf16 out | {timing}\n")
    print(format_decode_table(rows, copy_bw))
    if args.json:
        meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "device": torch.cuda.get_device_name(), "sms": units, "torch": torch.__version__, "timing": timing,
                "command": " ".join(["python", "-m", "torch_fmha.bench"] + argv),
                "copy_bandwidth_bytes_per_s": copy_bw,
                "layered_bytes": LAYERED_BYTES, "max_layers": MAX_LAYERS, "repeat": max(1, args.repeat),
                "bytes": "K + V FP8 cache bytes read: 2*B*S*Hkv*D"}
        with open(args.json, "w") as f:
            json.dump({"metadata": meta, "decode_rows": rows}, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0
