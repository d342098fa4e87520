"""Where a layered decode step's time goes (issue 15): the benchmark's layered timing (a CUDA
graph of one attention_with_kvcache call per layer, each on its own FP8 cache copy, replayed
back to back; torch_fmha/bench_decode.py) under torch.profiler, with each layer's kernels
split into phases from their timestamps:
    python3 tools/prof/decode_layers.py B H S [LAYERS] [--splits N]
FP8 cache [B, S, 8, 128] viewed from head-major memory as the benchmark's, Sq = 1, causal,
descales of 1, bf16 out, num_splits = 0 unless --splits. Per layer (medians over every layer
of the profiled replays but the profile's first):
- decode: the decode kernel's start to end;
- merge tail: the merge's end minus the decode kernel's end (the merge is the decode kernel's
  programmatic dependent: its CTAs wait inside until the decode grid has completed);
- gap: this layer's decode start minus the previous layer's last end (merge, or the decode
  kernel with one split): launch latency plus the decode kernel's own start;
- step: the previous layer's last end to this layer's last end (what the layered timing reads);
- boundary gap / boundary step: the same for a replay's first layer, after the previous
  replay's last kernel (the graph launch boundary; a one-layer graph has only these).
The profiler's timestamps are CUPTI's kernel activity records, a kernel's first CTA start to
its last CTA end."""
import statistics
import sys

import torch

import torch_fmha
from torch_fmha.bench_decode import _layer_copies, capture_graph, layer_count

if (reason := torch_fmha.sm90_unavailable_reason()) is not None:
    sys.exit(f"decode_layers.py: no SM90 kernel to run: {reason}")
argv = sys.argv[1:]
splits = 0
if "--splits" in argv:
    i = argv.index("--splits")
    splits = int(argv[i + 1])
    del argv[i:i + 2]
b, h, s = (int(a) for a in argv[:3])
hkv, d = 8, 128
layers = int(argv[3]) if len(argv) > 3 else layer_count(2 * b * s * hkv * d)
fp8 = torch.float8_e4m3fn
q = torch.randn(b, 1, h, d, device="cuda").to(fp8)
# Head-major memory viewed as [B, S, Hkv, D], as the benchmark's cache (transformers' layout).
kc, vc = (torch.randn(b, hkv, s, d, device="cuda").to(fp8).transpose(1, 2) for _ in range(2))
lens = torch.full((b,), s, dtype=torch.int32, device="cuda")
one = torch.ones(1, device="cuda")
calls = [lambda qi=qi, ki=ki, vi=vi: torch_fmha.attention_with_kvcache(
    qi, ki, vi, lens, causal=True, num_splits=splits, q_descale=one, k_descale=one, v_descale=one)
    for qi, ki, vi in _layer_copies(layers, q, kc, vc)]
graph, _ = capture_graph(lambda: [c() for c in calls])
for _ in range(20):
    graph.replay()
torch.cuda.synchronize()

from torch.profiler import ProfilerActivity, profile  # noqa: E402

replays = max(3, 400 // layers)
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    for _ in range(replays):
        graph.replay()
    torch.cuda.synchronize()
kernels = sorted(((e.time_range.start, e.time_range.end, e.name) for e in prof.events()
                  if e.device_type == torch.autograd.DeviceType.CUDA), key=lambda k: k[0])
names = sorted({n[:50] for _, _, n in kernels})
per_layer = len(kernels) / (replays * layers)
if per_layer not in (1, 2):
    sys.exit(f"decode_layers.py: expected 1 or 2 kernels a layer, found {per_layer:.2f} ({names})")
k = int(per_layer)
phases: dict = {"decode": [], "merge tail": [], "gap": [], "step": [], "boundary gap": [], "boundary step": []}
for i in range(k, len(kernels), k):  # every layer but the profile's first
    dec, last = kernels[i], kernels[i + k - 1]
    prev_end = kernels[i - 1][1]
    if "decode_kernel" not in dec[2]:
        sys.exit(f"decode_layers.py: kernel {i} (a layer's first) is {dec[2][:60]}")
    boundary = (i // k) % layers == 0  # a replay's first layer follows the previous replay's launch
    phases["decode"].append(dec[1] - dec[0])
    if k == 2:
        phases["merge tail"].append(last[1] - dec[1])
    phases["boundary gap" if boundary else "gap"].append(dec[0] - prev_end)
    phases["boundary step" if boundary else "step"].append(last[1] - prev_end)
cache_mb = 2 * b * s * hkv * d / 1e6
print(f"B={b} H={h} S={s} splits={splits or 'auto'} layers={layers} replays={replays} "
      f"cache {cache_mb:.1f} MB/layer; kernels: {', '.join(names)}")
steps = phases["step"] or phases["boundary step"]
print("  " + "; ".join(f"{n} {statistics.median(v):.2f} us" for n, v in phases.items() if v)
      + f"; step's read rate {cache_mb / statistics.median(steps):.2f} TB/s")
