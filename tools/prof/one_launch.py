"""A few launches of the FP8 kernel on the FA3-grid shape (B*S = 16384, H*D = 2048)
for a profiler: python3 tools/prof/one_launch.py D S MASK [LAUNCHES] [ours|packedv|cudnn|packed|pagedP]
MASK is 0 (none), 1 (causal) or wLEFT, a sliding window (LEFT, 0) as the benchmark's
`--window` rows run it (e.g. w1024; ours / packedv only).
ours / packedv / cudnn run FP8 output with unit scales, as the benchmark's default columns do (cudnn:
cuDNN FP8 through the benchmark's peer, for a side-by-side profile; profiles before
2026-11-28 ran ours with bf16 output). packed / pagedP (P = the page size, e.g. paged64)
run the serving benchmark's pair (torch_fmha/bench_serving.py, make_case): the batch as a
packed varlen call and the same batch from a paged pool with pages of P keys, bf16 output,
for a profile of what paging costs (issue 14). packedv runs ours on a packed v
(`quantize_qkv(..., pack_v=True)`, the benchmark's default layout at D = 128 / 256);
packedvcapC the same soft-capped at C (e.g. packedvcap30: `softcap=30.0`, issue 14)."""
import sys

import torch

import torch_fmha
from torch_fmha import _peers

# Without the CUDA build the op would fail with a dispatcher dump that hides the cause
# (e.g. tools/gpu_env.sh sourced in a pipe's subshell, so the CUTLASS headers were not
# on the path when the build ran).
if (reason := torch_fmha.sm90_unavailable_reason()) is not None:
    sys.exit(f"one_launch.py: no SM90 kernel to run: {reason}")
d, s, mask = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
window = (int(mask[1:]), 0) if mask.startswith("w") else (-1, -1)
causal = False if mask.startswith("w") else bool(int(mask))
launches = int(sys.argv[4]) if len(sys.argv) > 4 else 3
who = sys.argv[5] if len(sys.argv) > 5 else "ours"
b, h = max(1, 16384 // s), 2048 // d
q, k, v = (torch.randn(b, s, h, d, device="cuda").to(torch.float8_e4m3fn) for _ in range(3))
one = torch.ones(1, device="cuda")
if window[0] >= 0 and not (who == "ours" or who.startswith("packedv")):
    sys.exit(f"one_launch.py: a window runs ours or packedv only, not {who}")
if who == "packed" or who.startswith("paged"):
    from torch_fmha.bench_serving import make_case
    page = int(who[len("paged"):]) if who.startswith("paged") else 16
    packed, paged, _, _ = make_case(torch_fmha, {"paged": page}, b, s, h, d, causal, "cuda")
    run = paged if who.startswith("paged") else packed
elif who.startswith("packedv"):
    softcap = float(who[len("packedvcap"):]) if who.startswith("packedvcap") else 0.0
    qkv = torch_fmha.quantize_qkv(*(t.to(torch.bfloat16) for t in (q, k, v)), granularity="tensor",
                                  pack_v=True)

    def run():
        torch_fmha.attention(qkv.q, qkv.k, qkv.v, causal=causal, window_size=window, softcap=softcap,
                             q_descale=qkv.q_descale,
                             k_descale=qkv.k_descale, v_descale=qkv.v_descale,
                             out_dtype=torch.float8_e4m3fn, out_scale=one)
elif who == "cudnn":
    run, _ = _peers.CudnnFp8().prepare(q, k, v, one, one, one, causal=causal, out_scale=1.0)
else:
    def run():
        torch_fmha.attention(q, k, v, causal=causal, window_size=window, q_descale=one, k_descale=one, v_descale=one,
                             out_dtype=torch.float8_e4m3fn, out_scale=one)
for _ in range(launches):
    run()
torch.cuda.synchronize()
print(f"ran {who} D={d} S={s} causal={causal} window={window} x{launches}")
