#!/usr/bin/env python3
"""Per-call overhead of one torch_fmha.attention call, against the kernel's own time.

    python3 tools/overhead.py [--iters 2000] [--batches 20] [--json out.json]

Problem: B=1, S=128, H=Hkv=8, D=128, FP8 inputs (per-head descales), bf16
output, non-causal: the kernel runs a few µs, so what surrounds it shows.

- kernel: CUDA time of the kernel whose name contains "fmha", from
  torch.profiler (median over the profiled calls; the sum per call if the op
  launched several).
- For each way of calling (eager; the op itself below the Autograd key
  (dispatcher + the CUDA op's host path: checks, allocation, launch) and
  through it (+ the Python autograd kernel of register_autograd);
  torch.compile(backend="inductor", fullgraph=True), also under
  torch.inference_mode (which skips that autograd kernel inside the compiled
  code) and with mode="reduce-overhead"; replay of a CUDA graph holding one
  call; a CUDA graph holding 100 calls, replayed, per call):
    host  = CPU time to issue one call (back-to-back calls, no sync),
    wall  = time per call of back-to-back calls, measured with CUDA events
            (max of host issue rate and GPU time when the queue stays full),
    overhead = wall - kernel.
  Each is the median over --batches batches of --iters // --batches calls.
GPU only (an SM90 GPU with the CUDA kernels built); otherwise says why and exits 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

B, S, H, HKV, D = 1, 128, 8, 8, 128


def kernel_time_us(fn, calls: int) -> tuple[float, int, str]:
    """Median CUDA time per call of the kernels named *fmha*, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events()
               if e.device_type == torch.autograd.DeviceType.CUDA and "fmha" in e.name.lower()]
    if not kernels:
        names = sorted({e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA})
        raise RuntimeError(f"no CUDA kernel named *fmha* in the profile; CUDA events: {names[:20]}")
    per_call = len(kernels) / calls
    durations = [e.time_range.elapsed_us() for e in kernels]
    name = kernels[0].name
    if per_call == 1:
        return statistics.median(durations), 1, name
    return sum(durations) / calls, round(per_call), name  # several kernels per call: the mean of their sum


def measure(fn, iters: int, batches: int, calls_per_fn: int = 1) -> dict:
    """host: CPU µs to issue a call; wall: µs per call back-to-back (CUDA events); medians over batches."""
    n = max(1, iters // batches)
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    host, wall = [], []
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(batches):
        torch.cuda.synchronize()
        start.record()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t1 = time.perf_counter()
        stop.record()
        stop.synchronize()
        host.append((t1 - t0) * 1e6 / (n * calls_per_fn))
        wall.append(start.elapsed_time(stop) * 1e3 / (n * calls_per_fn))
    return {"host_us": statistics.median(host), "wall_us": statistics.median(wall)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=2000, help="calls per measurement (split into batches)")
    p.add_argument("--batches", type=int, default=20, help="batches; the medians are over these")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    import torch_fmha

    reason = torch_fmha.sm90_unavailable_reason()
    if reason:
        print(f"tools/overhead.py: {reason}")
        return 2

    torch.manual_seed(0)
    dev = "cuda"
    q = torch.randn(B, S, H, D, device=dev)
    k = torch.randn(B, S, HKV, D, device=dev)
    v = torch.randn(B, S, HKV, D, device=dev)
    q8, qd = torch_fmha.quantize_fp8(q, "head", group_size=H // HKV)
    k8, kd = torch_fmha.quantize_fp8(k, "head")
    v8, vd = torch_fmha.quantize_fp8(v, "head")

    def call(q8, k8, v8, qd, kd, vd):
        return torch_fmha.attention(q8, k8, v8, q_descale=qd, k_descale=kd, v_descale=vd,
                                    out_dtype=torch.bfloat16)

    inputs = (q8, k8, v8, qd, kd, vd)
    ref = call(*inputs)

    def eager():
        return call(*inputs)

    compiled_call = torch.compile(call, backend="inductor", fullgraph=True)

    def compiled():
        return compiled_call(*inputs)

    torch.testing.assert_close(compiled(), ref, atol=1e-2, rtol=1e-2)  # sanity: same op

    def compiled_inference():
        with torch.inference_mode():
            return compiled_call(*inputs)

    op = torch.ops.torch_fmha.fwd.default
    op_args = (q8, k8, v8, None, False, -1, -1, qd, kd, vd, None, torch.bfloat16)

    def op_autograd_key():
        return op(*op_args)

    def op_below_autograd():
        with torch._C._AutoDispatchBelowAutograd():
            return op(*op_args)

    reduce_overhead = None
    try:
        ro_call = torch.compile(call, mode="reduce-overhead", fullgraph=True)
        for _ in range(3):  # cudagraph trees record on a later call
            ro_out = ro_call(*inputs)
        torch.testing.assert_close(ro_out, ref, atol=1e-2, rtol=1e-2)

        def reduce_overhead():
            return ro_call(*inputs)
    except Exception as e:  # report, keep the other rows
        print(f"torch.compile(mode='reduce-overhead') not measured: {type(e).__name__}: {e}")

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up before capture, on a side stream as capture requires
        for _ in range(3):
            call(*inputs)
    torch.cuda.current_stream().wait_stream(side)
    g1 = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g1):
        out1 = call(*inputs)
    g100 = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g100):
        for _ in range(100):
            call(*inputs)
    g1.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out1, ref, atol=1e-2, rtol=1e-2)

    kern_us, per_call, kname = kernel_time_us(eager, calls=max(200, args.iters // 10))
    rows = {
        "eager": measure(eager, args.iters, args.batches),
        "op below Autograd key": measure(op_below_autograd, args.iters, args.batches),
        "op through Autograd key": measure(op_autograd_key, args.iters, args.batches),
        "torch.compile (inductor)": measure(compiled, args.iters, args.batches),
        "torch.compile, inference_mode": measure(compiled_inference, args.iters, args.batches),
        **({"torch.compile reduce-overhead": measure(reduce_overhead, args.iters, args.batches)}
           if reduce_overhead else {}),
        "CUDA graph replay (1 call/graph)": measure(g1.replay, args.iters, args.batches),
        "CUDA graph replay (100 calls/graph)": measure(g100.replay, max(args.iters // 100, args.batches),
                                                       args.batches, calls_per_fn=100),
    }
    print(f"torch_fmha.attention B={B} S={S} H={H} Hkv={HKV} D={D} fp8 -> bf16, "
          f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"kernel ({kname[:60]}{'...' if len(kname) > 60 else ''}, {per_call}/call): "
          f"{kern_us:.2f} us (torch.profiler, median)")
    print(f"{'mode':38s} {'host us/call':>12s} {'wall us/call':>12s} {'overhead us':>12s}")
    for mode, r in rows.items():
        r["overhead_us"] = r["wall_us"] - kern_us
        print(f"{mode:38s} {r['host_us']:12.2f} {r['wall_us']:12.2f} {r['overhead_us']:12.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"kernel_us": kern_us, "kernel_name": kname, "kernels_per_call": per_call,
                       "shape": dict(B=B, S=S, H=H, Hkv=HKV, D=D), "device": torch.cuda.get_device_name(),
                       "torch": torch.__version__, "modes": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
