#!/usr/bin/env python3
"""Where a decode step's time goes (issue 15): attention_with_kvcache eager against the
same call replayed from a CUDA graph, with the CUDA kernels it launches.

    python3 tools/decode_overhead.py [--iters 400] [--batches 8] [--json out.json]

Rows: (B, S) in (1, 1k), (1, 128k), (64, 8k) x num_splits in (0, 1); H=32, Hkv=8,
D=128, Sq=1, FP8 cache [B, S, Hkv, D] full (cache_seqlens = S), per-tensor descales,
bf16 out, causal. Columns (tools/overhead.py's measure: medians over batches):
    kernels = CUDA kernels launched per call (torch.profiler),
    gpu us  = their summed CUDA time per call,
    eager host / wall us = CPU time to issue a call / time per call back-to-back,
    graph wall us = time per replay of a CUDA graph holding one call.
eager wall >> gpu us with graph wall ~= gpu us: the step is host-bound (dispatch of the
composition's ops), not kernel-bound. bench --decode gives both eager and graph walls.
These shapes take the CUDA decode kernel since session 12 (two launches: the kernel and
the merge); steps it does not take (packed q, more rows per KV head) run the plans of
ATen ops, whose dispatch this tool was written to measure.
GPU only (SM90); otherwise says why and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overhead import measure  # noqa: E402

from torch_fmha.bench_decode import capture_graph  # noqa: E402

FP8 = torch.float8_e4m3fn
H, HKV, D = 32, 8, 128
CASES = [(1, 1024), (1, 131072), (64, 8192)]


def kernels_per_call(fn, calls: int = 20) -> tuple[float, float, list]:
    """CUDA kernels per call, their summed CUDA us per call, and their names (one call)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    ks = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return len(ks) / calls, sum(e.time_range.elapsed_us() for e in ks) / calls, [e.name[:40] for e in ks[:len(ks) // calls]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--json")
    args = p.parse_args(argv)
    import torch_fmha

    reason = torch_fmha.sm90_unavailable_reason()
    if reason:
        print(f"tools/decode_overhead.py: {reason}")
        return 2
    rows = []
    print(f"attention_with_kvcache H={H} Hkv={HKV} D={D} Sq=1 fp8 -> bf16, {torch.cuda.get_device_name()}, "
          f"torch {torch.__version__}")
    print(f"{'B':>3} {'S':>7} {'splits':>6} {'kernels':>7} {'gpu us':>8} {'eager host':>10} {'eager wall':>10} "
          f"{'graph wall':>10}")
    for b, s in CASES:
        torch.manual_seed(0)
        q = torch.randn(b, 1, H, D, device="cuda").to(FP8)
        kc = torch.randn(b, s, HKV, D, device="cuda").to(FP8)
        vc = torch.randn(b, s, HKV, D, device="cuda").to(FP8)
        lens = torch.full((b,), s, dtype=torch.int32, device="cuda")
        one = torch.ones(1, device="cuda")
        for splits in (0, 1):
            def call(splits=splits):
                return torch_fmha.attention_with_kvcache(q, kc, vc, lens, causal=True, num_splits=splits,
                                                         q_descale=one, k_descale=one, v_descale=one)

            ref = call()
            graph, out = capture_graph(call, warmup=3)
            graph.replay()
            torch.cuda.synchronize()
            assert torch.equal(out, ref), "graph replay != eager"
            n, gpu_us, names = kernels_per_call(call)
            eager = measure(call, args.iters, args.batches)
            replay = measure(graph.replay, args.iters, args.batches)
            row = dict(B=b, S=s, num_splits=splits, kernels=n, gpu_us=gpu_us, eager_host_us=eager["host_us"],
                       eager_wall_us=eager["wall_us"], graph_wall_us=replay["wall_us"], kernel_names=names)
            rows.append(row)
            print(f"{b:3d} {s:7d} {splits:6d} {n:7.1f} {gpu_us:8.1f} {eager['host_us']:10.1f} "
                  f"{eager['wall_us']:10.1f} {replay['wall_us']:10.1f}")
            del graph
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
