"""A few decode steps (attention_with_kvcache, FP8 cache, Sq = 1, Hkv = 8, D = 128, bf16
out, num_splits = 0) for a profiler, then, unless --no-times, each CUDA kernel's time per
step from torch.profiler over CUDA-graph replays, and what the split merge adds after the
decode kernel's end (it is launched early, as a programmatic dependent):
    python3 tools/prof/decode_launch.py B H S [LAUNCHES] [--no-times]
(tools/prof/ncu_decode.sh runs Nsight Compute on it.)"""
import sys

import torch

import torch_fmha

if (reason := torch_fmha.sm90_unavailable_reason()) is not None:
    sys.exit(f"decode_launch.py: no SM90 kernel to run: {reason}")
args = [a for a in sys.argv[1:] if not a.startswith("--")]
b, h, s = (int(a) for a in args[:3])
launches = int(args[3]) if len(args) > 3 else 3
hkv, d = 8, 128
fp8 = torch.float8_e4m3fn
q = torch.randn(b, 1, h, d, device="cuda").to(fp8)
kc, vc = (torch.randn(b, s, hkv, d, device="cuda").to(fp8) for _ in range(2))
lens = torch.full((b,), s, dtype=torch.int32, device="cuda")
one = torch.ones(1, device="cuda")


def step():
    return torch_fmha.attention_with_kvcache(q, kc, vc, lens, causal=True, q_descale=one,
                                             k_descale=one, v_descale=one)


for _ in range(launches):
    step()
torch.cuda.synchronize()
if "--no-times" not in sys.argv:
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    from torch.profiler import ProfilerActivity, profile
    reps = 50
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            g.replay()
        torch.cuda.synchronize()
    times: dict[str, float] = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            times[e.name[:60]] = times.get(e.name[:60], 0.0) + e.time_range.elapsed_us() / reps
    print(f"B={b} H={h} S={s}: " + "; ".join(f"{n} {t:.1f} us" for n, t in times.items()))
    # The merge is the decode kernel's programmatic dependent (launch/merge_splits.cu): it
    # may start before the decode grid ends and wait inside, so its time above overlaps the
    # decode kernel's. What a step pays for it is its end minus the decode kernel's end.
    kernels = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA),
                     key=lambda e: e.time_range.start)
    tails, leads = [], []
    for first, second in zip(kernels, kernels[1:]):
        if "decode_kernel" in first.name and "merge_splits" in second.name:
            tails.append(second.time_range.end - first.time_range.end)
            leads.append(first.time_range.end - second.time_range.start)
    if tails:
        tails.sort()
        leads.sort()
        print(f"  merge after the decode kernel's end: {tails[len(tails) // 2]:.1f} us (median of {len(tails)}); "
              f"merge started {leads[len(leads) // 2]:.1f} us before that end")
