"""quantize_qkv's kernels, timed: each CUDA kernel's time per call from torch.profiler and the
whole call's do_bench median, per granularity and v layout, with a device-to-device clone of
q as the bandwidth reference (read + write):
    python3 tools/prof/quantize_times.py [B S H D]   (default 4 4096 16 128, bf16 q, k, v)
For an A/B of the quantize kernels' knobs (csrc/kernel/quantize.cuh) run it once per build,
TORCH_FMHA_NVCC_EXTRA set as for tools/gpu_tune.sh."""
import sys

import torch

import torch_fmha
from torch_fmha.bench import make_timer

if (reason := torch_fmha.sm90_unavailable_reason()) is not None:
    sys.exit(f"quantize_times.py: no SM90 kernel to run: {reason}")
B, S, H, D = (int(a) for a in sys.argv[1:5]) if len(sys.argv) >= 5 else (4, 4096, 16, 128)
time_ms, timing = make_timer(25, 100)
q, k, v = (torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
read = 3 * q.numel() * q.element_size()
clone_us = time_ms(lambda: q.clone()) * 1e3
print(f"q, k, v bf16 [{B}, {S}, {H}, {D}] ({read / 1e6:.0f} MB); {timing}; "
      f"clone of q {clone_us:.1f} us = {2 * q.numel() * q.element_size() / clone_us / 1e3:.0f} GB/s")


def kernel_us(fn, reps=10):
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    times: dict[str, float] = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            name = e.name.split("(")[0].split("::")[-1]
            times[name] = times.get(name, 0.0) + e.time_range.elapsed_us() / reps
    return times


for granularity in ("tensor", "head"):
    for pack_v in (True, False):
        fn = lambda: torch_fmha.quantize_qkv(q, k, v, granularity, pack_v=pack_v)  # noqa: E731
        us = time_ms(fn) * 1e3
        kernels = "; ".join(f"{n} {t:.1f} us" for n, t in kernel_us(fn).items())
        print(f"{granularity:6s} pack_v={pack_v!s:5s}: {us:7.1f} us per call ({read / us / 1e3:.0f} GB/s of "
              f"input read once, {(2 * read + read // 2) / us / 1e3:.0f} GB/s of the two passes' traffic): {kernels}")
