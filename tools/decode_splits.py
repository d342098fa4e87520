#!/usr/bin/env python3
"""Time of one decode step per split count, to set num_splits=0's rule (issue 15).

    python3 tools/decode_splits.py [--batches 1,8] [--cache 1024,2048,4096,8192,32768]
                                   [--splits 1,2,4,8,16,32] [--heads 32] [--sq 1] [--timer graph|layered]
                                   [--layers N] [--json out.json]

attention_with_kvcache(q [B, Sq, H, D=128], FP8 cache [B, S, Hkv=8, D], cache_seqlens = S,
causal, bf16 out) with a fixed num_splits, captured in a CUDA graph and timed by its
replays (triton's do_bench, median): what serving sees, without the eager host path
that dominates at B = 1 (tools/decode_overhead.py). One row per (B, S): the time per
split count, the best one, and what num_splits=0 picks today (the op runs it too; the
printed pick is bench_decode.auto_num_splits, which mirrors the default build only: under
-DTORCH_FMHA_TUNE_DECODE_WARPS=8 the op picks fewer splits than it prints above 4096 keys).
With --sq > 1 (speculative decoding's few tokens) the step has Sq x H / Hkv query rows per KV
head: up to 64 run on the decode kernel, one CTA per 16 rows and split (the printed pick
counts them so: the mirror's batch times the row tiles), more on the plans of ATen ops
(the printed pick is then not what runs).
GPU only (an SM90 GPU with the CUDA kernels built); otherwise says why and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch


def _ints(s: str):
    return [int(x) for x in s.split(",") if x]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=_ints, default=[1, 8])
    ap.add_argument("--cache", type=_ints, default=[1024, 2048, 4096, 8192, 32768])
    ap.add_argument("--splits", type=_ints, default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--sq", type=int, default=1, help="query rows per sequence (causal, bottom-right)")
    ap.add_argument("--timer", choices=["graph", "layered"], default="graph",
                    help="graph: do_bench of one call's graph replay (the decode table's graph columns); "
                         "layered: bench_decode.layered_graph_ms over per-layer cache copies (its layered columns)")
    ap.add_argument("--layers", type=int, default=0,
                    help="layers of the layered timer (0: bench_decode.layer_count, the decode table's)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    import torch_fmha
    from torch_fmha.bench import make_timer
    from torch_fmha.bench_decode import _layer_copies, auto_num_splits, graph_ms, layer_count, layered_graph_ms

    reason = torch_fmha.sm90_unavailable_reason()
    if reason:
        print(f"decode_splits.py needs an SM90 GPU: {reason}", file=sys.stderr)
        return 2
    time_ms, timing = make_timer(25, 100)
    hkv, d, fp8 = 8, 128, torch.float8_e4m3fn
    one = torch.ones(1, device="cuda")
    rows = []
    if args.timer == "layered":
        timing = "layered: one graph of per-layer cache copies replayed back to back (bench_decode.layered_graph_ms)"
    print(f"{torch.cuda.get_device_name()} | H={args.heads} Hkv={hkv} D={d} Sq={args.sq} | CUDA-graph replay, us | {timing}")
    row_tiles = -(-args.sq * (args.heads // hkv) // 16)
    print(f"{'B':>3} {'S':>7} | " + " ".join(f"{'s=' + str(s):>8}" for s in args.splits)
          + f" | {'auto':>8} {'best':>6}")
    for b in args.batches:
        for s in args.cache:
            g = torch.Generator(device="cuda").manual_seed(b * 7 + s)
            q = torch.randn(b, args.sq, args.heads, d, generator=g, device="cuda").to(fp8)
            k = torch.randn(b, s, hkv, d, generator=g, device="cuda").to(fp8)
            v = torch.randn(b, s, hkv, d, generator=g, device="cuda").to(fp8)
            lens = torch.full((b,), s, dtype=torch.int32, device="cuda")
            times = {}
            n_layers = args.layers or layer_count(k.numel() + v.numel())
            layers = _layer_copies(n_layers, q, k, v) if args.timer == "layered" else None
            # num_splits=0 first: timed last, after several multi-GB passes, it read up to
            # 15% slower than the same split count timed first (session 16, B = 8 128k).
            for n in [0] + args.splits:
                def run(n=n):
                    return torch_fmha.attention_with_kvcache(q, k, v, lens, causal=True, num_splits=n,
                                                             q_descale=one, k_descale=one, v_descale=one)
                if layers is None:
                    times[n] = graph_ms(run, time_ms) * 1e3
                else:
                    times[n] = layered_graph_ms([
                        lambda n=n, qi=qi, ki=ki, vi=vi: torch_fmha.attention_with_kvcache(
                            qi, ki, vi, lens, causal=True, num_splits=n, q_descale=one, k_descale=one, v_descale=one)
                        for qi, ki, vi in layers]) * 1e3
            best = min(args.splits, key=lambda n: times[n])
            auto = auto_num_splits(b * row_tiles, args.heads, hkv, s,
                                   torch.cuda.get_device_properties(0).multi_processor_count, decode_kernel=True)
            rows.append({"B": b, "S": s, "us": {str(n): t for n, t in times.items()}, "best": best, "auto": auto,
                         "layers": n_layers if layers is not None else None})
            print(f"{b:>3} {s:>7} | " + " ".join(f"{times[n]:8.1f}" for n in args.splits)
                  + f" | {times[0]:8.1f} {auto:>4} {best:>6}" + (f" ({n_layers} layers)" if layers is not None else ""))
            del q, k, v, layers
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "heads": args.heads, "sq": args.sq, "timer": args.timer,
                       "rows": rows}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
