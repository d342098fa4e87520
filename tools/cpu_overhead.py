#!/usr/bin/env python3
"""Host time per torch_fmha call on the CPU: where the µs go around the kernel.

    python3 tools/cpu_overhead.py [--stub] [--dtype fp8|bf16|fp32] [--rounds 25] [--calls 400]

The CPU twin of tools/overhead.py (which needs an SM90 GPU): the ops take the
same Python / dispatcher / torch.compile path on CPU, only the kernel differs.
Problem: B=1, S=16, H=Hkv=2, D=64 (FP8 inputs with per-head descales and bf16
output by default), so the CPU kernel is small.

--stub replaces the CPU kernel of torch_fmha::fwd, in this process only, by one
that only allocates out and lse (compiled with torch.utils.cpp_extension, ~1
min the first time): what is left is the host path a GPU call also takes,
without the CPU reference math (dozens of ATen ops, ~100-200 µs) that buries it.

Rows (µs per call, min and median over --rounds interleaved rounds of --calls
back-to-back calls). Time is this thread's CPU time (time.thread_time), which
leaves out time the VM was descheduled; small shared machines are noisy, so
compare mins, and compare rows of one run only:
  op below autograd      torch.ops.torch_fmha.fwd.default under _AutoDispatchBelowAutograd:
                         dispatcher + kernel, no autograd kernel
  op .default            the same through the Autograd key: + the op's autograd
                         kernel (C++, csrc/ops/autograd.cpp)
  op packet kwargs       torch.ops.torch_fmha.fwd(q, k, v, q_descale=...): + kwargs parsing
                         (all 11 by keyword since the schemas have no defaults, session
                         19; 4 before, so older rows are not comparable)
  attention              torch_fmha.attention (eager), also under no_grad / inference_mode
  compiled ...           torch.compile(fullgraph=True) of a function calling attention:
                         total, then its layers: the AOTAutograd compiled_fn (no Dynamo frame,
                         no guards), Inductor's generated call() (input asserts + extern op call)
  compiled x + 1         torch.compile's fixed cost on this machine (one input, one C++ kernel)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

B, S, H, HKV, D = 1, 16, 2, 2, 64

_STUB_SRC = r"""
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/core/stack.h>
// Boxed, so it fits whatever arguments fwd's schema has grown (it reads q and
// out_dtype by name): out [B, Sq, H, D] and lse [B, H, Sq], allocated only.
void fwd_stub(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto& schema = op.schema();
  const size_t n = schema.arguments().size();
  auto args = torch::jit::last(*stack, n);
  const at::Tensor q = args[0].toTensor();
  const c10::IValue& od_arg = args[*schema.argumentIndexWithName("out_dtype")];
  auto od = !od_arg.isNone() ? od_arg.toScalarType()
          : (q.scalar_type() == at::kFloat8_e4m3fn ? at::kBFloat16 : q.scalar_type());
  auto lt = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor out = at::empty({q.size(0), q.size(1), q.size(2), q.size(3)}, q.options().dtype(od));
  at::Tensor lse = at::empty({q.size(0), q.size(2), q.size(1)}, q.options().dtype(lt));
  torch::jit::drop(*stack, n);
  torch::jit::push(*stack, std::move(out), std::move(lse));
}
TORCH_LIBRARY_IMPL(torch_fmha, CPU, m) {
  m.impl("fwd", torch::CppFunction::makeFromBoxedFunction<&fwd_stub>());
}
"""


def load_stub() -> None:
    import warnings

    from torch.utils.cpp_extension import load_inline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_inline("torch_fmha_fwd_cpu_stub", cpp_sources=[_STUB_SRC], is_python_module=False,
                    extra_cflags=["-O2"])


def _compiled_layers(fn, compiled, args):
    """(AOTAutograd compiled_fn, Inductor call()) of a compiled function, or (None, None)."""
    try:
        import torch._inductor.output_code as oc

        entry = torch._C._dynamo.eval_frame._debug_get_cache_entry_list(fn.__code__)[0]
        name = next(n for n in entry.code.co_names if n.startswith("__compiled_fn"))
        aot = fn.__globals__[name]
        seen = []
        orig = oc.CompiledFxGraph.__call__

        def spy(self, inputs):
            seen.append(self)
            return orig(self, inputs)

        oc.CompiledFxGraph.__call__ = spy
        try:
            compiled(*args)
        finally:
            oc.CompiledFxGraph.__call__ = orig
        return aot, seen[0].current_callable
    except Exception as e:  # private torch internals: report, do not fail the measurement
        print(f"(compiled layers not measured: {type(e).__name__}: {e})")
        return None, None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stub", action="store_true", help="replace the CPU kernel by output allocation only")
    p.add_argument("--dtype", default="fp8", choices=["fp8", "bf16", "fp32"])
    p.add_argument("--rounds", type=int, default=25)
    p.add_argument("--calls", type=int, default=400)
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args(argv)

    import torch_fmha

    if args.stub:
        load_stub()
    torch.manual_seed(0)
    x = [torch.randn(B, S, h, D) for h in (H, HKV, HKV)]
    if args.dtype == "fp8":
        (q, qd), (k, kd), (v, vd) = (torch_fmha.quantize_fp8(t, "head") for t in x)
        od = torch.bfloat16
    else:
        q, k, v = (t.to(torch.bfloat16 if args.dtype == "bf16" else torch.float32) for t in x)
        qd = kd = vd = od = None
    inputs = (q, k, v, qd, kd, vd)
    op = torch.ops.torch_fmha.fwd

    def call(q, k, v, qd, kd, vd):
        return torch_fmha.attention(q, k, v, q_descale=qd, k_descale=kd, v_descale=vd, out_dtype=od)

    def below():
        with torch._C._AutoDispatchBelowAutograd():
            return op.default(q, k, v, None, False, -1, -1, qd, kd, vd, None, od, 0.0, None)

    def no_grad():
        with torch.no_grad():
            return call(*inputs)

    def inference():
        with torch.inference_mode():
            return call(*inputs)

    rows = {
        "op below autograd": below,
        "op .default": lambda: op.default(q, k, v, None, False, -1, -1, qd, kd, vd, None, od, 0.0, None),
        "op packet kwargs": lambda: op(q, k, v, softmax_scale=None, causal=False, window_left=-1,
                                         window_right=-1, q_descale=qd, k_descale=kd, v_descale=vd,
                                         out_scale=None, out_dtype=od, softcap=0.0, sinks=None),
        "attention": lambda: call(*inputs),
        "attention no_grad": no_grad,
        "attention inference_mode": inference,
    }
    if not args.no_compile:
        compiled = torch.compile(call, fullgraph=True)
        compiled(*inputs)

        def compiled_inference():
            with torch.inference_mode():
                return compiled(*inputs)

        def add1(t):
            return t + 1

        cadd, t = torch.compile(add1, fullgraph=True), torch.randn(16)
        rows["compiled"] = lambda: compiled(*inputs)
        aot, ind = _compiled_layers(call, compiled, inputs)
        present = [a for a in inputs if a is not None]
        if aot is not None:
            rows["compiled: AOT compiled_fn"] = lambda: aot(*present)
            rows["compiled: Inductor call()"] = lambda: ind(list(present))
        rows["compiled inference_mode"] = compiled_inference
        rows["compiled x + 1 (torch fixed cost)"] = lambda: cadd(t)

    for fn in rows.values():
        for _ in range(100):
            fn()
    res = {n: [] for n in rows}
    for _ in range(args.rounds):
        for n, fn in rows.items():
            t0 = time.thread_time()
            for _ in range(args.calls):
                fn()
            res[n].append((time.thread_time() - t0) * 1e6 / args.calls)
    kern = "stub (allocates out, lse)" if args.stub else "CPU reference"
    print(f"torch_fmha host time per call, B={B} S={S} H={H} Hkv={HKV} D={D} {args.dtype}, "
          f"kernel: {kern}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'':36s} {'min us':>8s} {'median':>8s}")
    for n, r in res.items():
        print(f"{n:36s} {min(r):8.2f} {statistics.median(r):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
