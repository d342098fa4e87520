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
  through it (+ the op's C++ autograd kernel, csrc/ops/autograd.cpp);
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

    python3 tools/overhead.py --stack [--device cuda|cpu] [--layers 8] [--profile] [--sdpa-backend cudnn]

--stack: host time per layer of a model, torch_fmha against SDPA (issue 13).
A stack of --layers layers, each x [B, S, E] -> linear (E -> 3E) -> q, k, v
[B, S, H, D] -> (torch_fmha: quantize_fp8 per head of q, k, v (--quantize qkv:
one quantize_qkv call; --quantize fused: fp8_attention, one op for both steps; fused_rot:
the same with rotate=True, the transformers FP8 backend's setting;
--quantize qkv,fused: both stacks in the same rounds) -> attention,
FP8 in, bf16 out | SDPA: scaled_dot_product_attention on bf16) -> x, run
side by side eagerly and torch.compile'd (inductor, fullgraph), under
torch.no_grad. Rows give, per layer (per forward / layers):
    host = CPU time to issue one forward (no sync; the GPU is not the
           bottleneck when wall ~= host), wall = time per forward
           back-to-back (CUDA events on a GPU; on CPU the same as host),
and the ratio of the torch_fmha stack's host time to SDPA's (issue 13's
target: <= 1.25 compiled, quantization included). For the compiled stacks,
"call()" rows time Inductor's generated call() alone (no Dynamo guards, no
AOTAutograd wrapper). --profile adds torch.profiler's self-CPU time per
layer by op for each compiled stack and, on a GPU, the kernels launched per
layer by name with their GPU time per layer (the quantize op's kernel(s) among
them; --quantize fp8 gives three quantize_fp8 calls per layer instead).
It runs on CPU too (--device cpu, the default without an SM90 GPU): the ops
take the same Python / dispatcher / Inductor path, with a small shape
(B=1, S=16, H=2, D=64) and the torch_fmha CPU kernel replaced by one that only
allocates its outputs (tools/cpu_overhead.py --stub), so what is timed is the
host path a GPU call also takes, on one intra-op thread. GPU shape: B=1,
S=128, H=8, D=128.
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


class StackLayer(torch.nn.Module):
    """x [B, S, E] -> linear -> q, k, v [B, S, H, D] -> attention -> [B, S, E]."""

    def __init__(self, fmha: bool, b: int, s: int, h: int, d: int, quantize: str = "fp8"):
        super().__init__()
        self.fmha, self.shape, self.quantize = fmha, (b, s, h, d), quantize
        self.qkv = torch.nn.Linear(h * d, 3 * h * d)

    def forward(self, x):
        import torch_fmha

        b, s, h, d = self.shape
        q, k, v = self.qkv(x).view(b, s, 3, h, d).unbind(2)
        if self.fmha and self.quantize in ("fused", "fused_rot"):  # one op: quantize_qkv + attention
            o = torch_fmha.fp8_attention(q, k, v, rotate=self.quantize == "fused_rot")
        elif self.fmha and self.quantize == "qkv":
            qq = torch_fmha.quantize_qkv(q, k, v, "head")
            o = torch_fmha.attention(*qq.tensors, **qq.descales, out_dtype=torch.bfloat16)
        elif self.fmha:
            q8, qd = torch_fmha.quantize_fp8(q, "head")
            k8, kd = torch_fmha.quantize_fp8(k, "head")
            v8, vd = torch_fmha.quantize_fp8(v, "head")
            o = torch_fmha.attention(q8, k8, v8, q_descale=qd, k_descale=kd, v_descale=vd,
                                     out_dtype=torch.bfloat16)
        else:
            o = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
        return o.reshape(b, s, h * d)


def _stack_times(fns: dict, device: str, rounds: int, forwards: int) -> dict:
    """Per forward of each fn, rounds interleaved across fns: host = CPU time to issue it
    (no sync; on CPU this thread's CPU time, which leaves out time the VM was descheduled),
    wall = back-to-back time (CUDA events on a GPU); min and median over rounds."""
    cuda = device == "cuda"
    for fn in fns.values():
        for _ in range(10):
            fn()
    if cuda:
        torch.cuda.synchronize()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    host = {k: [] for k in fns}
    wall = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            if cuda:
                torch.cuda.synchronize()
                start.record()
            t0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(forwards):
                fn()
            c1, t1 = time.thread_time(), time.perf_counter()
            if cuda:
                stop.record()
                stop.synchronize()
                wall[key].append(start.elapsed_time(stop) * 1e3 / forwards)
                host[key].append((t1 - t0) * 1e6 / forwards)
            else:
                host[key].append((c1 - c0) * 1e6 / forwards)
                wall[key].append((t1 - t0) * 1e6 / forwards)
    return {k: {"host_us": min(host[k]), "host_med_us": statistics.median(host[k]),
                "wall_us": min(wall[k]), "wall_med_us": statistics.median(wall[k])} for k in fns}


def _profile_self_cpu(fn, device: str, forwards: int, top: int) -> list[tuple[str, float, float]]:
    """(op, self-CPU us per forward, calls per forward) from torch.profiler, largest first."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    for _ in range(5):
        fn()
    with profile(activities=acts) as prof:
        for _ in range(forwards):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
    avgs = prof.key_averages()
    rows = [(e.key, e.self_cpu_time_total / forwards, e.count / forwards) for e in avgs]
    rows.sort(key=lambda r: -r[1])
    total = sum(r[1] for r in rows)
    out = [("(all ops, sum of self CPU)", total, float("nan"))] + rows[:top]
    if device == "cuda":  # GPU kernels per forward (each one a launch the host issued)
        kern = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        by_name: dict[str, list] = {}
        for e in kern:
            entry = by_name.setdefault(e.name, [0, 0.0])
            entry[0] += 1
            entry[1] += e.time_range.elapsed_us()
        out.append((f"(GPU kernels: {len(kern) / forwards:.1f} per forward, "
                    f"{sum(e.time_range.elapsed_us() for e in kern) / forwards:.1f} us GPU time)",
                    float("nan"), float("nan")))
        for name, (c, us) in sorted(by_name.items(), key=lambda kv: -kv[1][1])[:top]:
            # the us column is GPU time here (per layer, as the rows above)
            out.append((f"  kernel, GPU time: {name}", us / forwards, c / forwards))
    return out


def _inductor_call(compiled):
    """(Inductor's generated call(), the inputs it got) of one call of a compiled function."""
    try:
        import torch._inductor.output_code as oc

        seen = []
        orig = oc.CompiledFxGraph.__call__

        def spy(self, inputs):
            seen.append((self.current_callable, list(inputs)))
            return orig(self, inputs)

        oc.CompiledFxGraph.__call__ = spy
        try:
            compiled()
        finally:
            oc.CompiledFxGraph.__call__ = orig
        return seen[0]
    except Exception as e:  # private torch internals: report, keep the other rows
        print(f"(Inductor call() not measured: {type(e).__name__}: {e})")
        return None, None


def stack_main(args) -> int:
    import torch_fmha

    device = args.device or ("cuda" if torch_fmha.sm90_unavailable_reason() is None else "cpu")
    if device == "cuda":
        reason = torch_fmha.sm90_unavailable_reason()
        if reason:
            print(f"tools/overhead.py --stack --device cuda: {reason}")
            return 2
        b, s, h, d = B, S, H, D
    else:
        b, s, h, d = 1, 16, 2, 64
        # One intra-op thread: a waiting OpenMP worker spins, and its spin would count as
        # host time (and vary with the machine's load).
        torch.set_num_threads(1)
        if not args.real_cpu_kernel:
            from cpu_overhead import load_stub  # tools/cpu_overhead.py

            load_stub()
    import contextlib

    sdpa_ctx = contextlib.nullcontext()
    if args.sdpa_backend != "default":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        sdpa_ctx = sdpa_kernel([{"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                                 "efficient": SDPBackend.EFFICIENT_ATTENTION,
                                 "math": SDPBackend.MATH}[args.sdpa_backend]])
    with sdpa_ctx:
        return _stack_run(args, device, b, s, h, d)


def _stack_run(args, device, b, s, h, d) -> int:
    torch.manual_seed(0)
    dt = torch.bfloat16
    modes = args.quantize.split(",")
    bad = [m for m in modes if m not in ("fp8", "qkv", "fused", "fused_rot")]
    if bad:
        raise SystemExit(f"--quantize: {bad} not among fp8, qkv, fused, fused_rot")
    # "torch_fmha" alone when one mode is measured (the rows' names of earlier runs)
    names = ["torch_fmha" if len(modes) == 1 else f"torch_fmha[{m}]" for m in modes]
    stacks = {name: torch.nn.Sequential(*[StackLayer(True, b, s, h, d, m) for _ in range(args.layers)])
              .to(device, dt).eval() for name, m in zip(names, modes)}
    stacks["sdpa"] = torch.nn.Sequential(*[StackLayer(False, b, s, h, d) for _ in range(args.layers)]
                                         ).to(device, dt).eval()
    x = torch.randn(b, s, h * d, device=device, dtype=dt)
    rows: dict[str, dict] = {}
    profiles: dict[str, list] = {}
    n, r = args.forwards, args.rounds
    with torch.no_grad():
        fns = {}
        for name, model in stacks.items():
            def run(model=model):
                return model(x)

            compiled = torch.compile(run, backend="inductor", fullgraph=True)
            compiled()
            fns[(name, "eager")] = run
            fns[(name, "compiled")] = compiled
            call, inputs = _inductor_call(compiled)
            if call is not None:
                fns[(name, "compiled: Inductor call()")] = lambda c=call, i=inputs: c(list(i))
        rows = _stack_times(fns, device, r, n)
        if args.profile:
            for name in stacks:
                profiles[name] = _profile_self_cpu(fns[(name, "compiled")], device, n, args.top)

    L = args.layers
    dev_name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    kern = "" if device == "cuda" else (", torch_fmha CPU kernel: " +
                                          ("reference math" if args.real_cpu_kernel else "stub (allocates out, lse)"))
    print(f"{L}-layer stack, B={b} S={s} H={h} D={d}, bf16 activations, {dev_name}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads{kern}, SDPA backend: {args.sdpa_backend}, "
          f"quantize: {args.quantize}")
    print("per layer (per forward / layers), us; min over rounds (median in brackets)")
    print(f"{'stack':20s} {'mode':28s} {'fmha host':>16s} {'sdpa host':>16s} {'host ratio':>10s} "
          f"{'fmha wall':>10s} {'sdpa wall':>10s}")
    for name in names:
        for mode in ("eager", "compiled", "compiled: Inductor call()"):
            if ((name, mode) not in rows) or (("sdpa", mode) not in rows):
                continue
            f, sd = rows[(name, mode)], rows[("sdpa", mode)]
            print(f"{name:20s} {mode:28s} {f['host_us'] / L:7.2f} ({f['host_med_us'] / L:6.2f}) "
                  f"{sd['host_us'] / L:7.2f} ({sd['host_med_us'] / L:6.2f}) "
                  f"{f['host_us'] / sd['host_us']:10.2f} {f['wall_us'] / L:10.2f} {sd['wall_us'] / L:10.2f}")
    for name, prof in profiles.items():
        print(f"\ncompiled {name} stack: torch.profiler self CPU per layer (profiler overhead included)")
        for key, us, calls in prof:
            calls_s = "" if calls != calls else f"{calls / L:5.1f}/layer"
            us_s = "" if us != us else f"{us / L:8.2f} us"
            print(f"  {key[:70]:70s} {us_s:>11s} {calls_s}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": dev_name, "torch": torch.__version__, "layers": L,
                       "shape": dict(B=b, S=s, H=h, D=d),
                       "rows": {f"{k[0]} {k[1]}": v for k, v in rows.items()},
                       "profiles": profiles}, fh, indent=2)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=2000, help="calls per measurement (split into batches)")
    p.add_argument("--batches", type=int, default=20, help="batches; the medians are over these")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--stack", action="store_true", help="the layer stack against SDPA (see above)")
    p.add_argument("--device", choices=["cuda", "cpu"], help="--stack: where (default: cuda if SM90)")
    p.add_argument("--layers", type=int, default=8, help="--stack: layers")
    p.add_argument("--rounds", type=int, default=15, help="--stack: rounds (min and median over them)")
    p.add_argument("--forwards", type=int, default=50, help="--stack: forwards per round")
    p.add_argument("--profile", action="store_true", help="--stack: torch.profiler self-CPU breakdown")
    p.add_argument("--top", type=int, default=15, help="--stack --profile: ops listed")
    p.add_argument("--sdpa-backend", default="default", choices=["default", "cudnn", "flash", "efficient", "math"],
                   help="--stack: the SDPA stack's backend (torch.nn.attention.sdpa_kernel)")
    p.add_argument("--quantize", default="fp8",
                   help="--stack: three quantize_fp8(.., 'head') calls per layer (fp8), one quantize_qkv "
                        "(qkv), or fp8_attention, quantize and attention in one op (fused; fused_rot: with rotate=True); a comma-separated "
                        "list measures one torch_fmha stack per entry in the same rounds")
    p.add_argument("--real-cpu-kernel", action="store_true",
                   help="--stack on CPU: keep the CPU reference kernel (default: allocation-only stub)")
    args = p.parse_args(argv)
    if args.stack:
        return stack_main(args)

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
    op_args = (q8, k8, v8, None, False, -1, -1, qd, kd, vd, None, torch.bfloat16, 0.0, None)

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
