"""A few launches of the FP8 kernel on the FA3-grid shape (B*S = 16384, H*D = 2048)
for a profiler: python3 tools/prof/one_launch.py D S CAUSAL [LAUNCHES]"""
import sys

import torch

import torch_fmha

d, s, causal = int(sys.argv[1]), int(sys.argv[2]), bool(int(sys.argv[3]))
launches = int(sys.argv[4]) if len(sys.argv) > 4 else 3
b, h = max(1, 16384 // s), 2048 // d
q, k, v = (torch.randn(b, s, h, d, device="cuda").to(torch.float8_e4m3fn) for _ in range(3))
for _ in range(launches):
    torch_fmha.attention(q, k, v, causal=causal, out_dtype=torch.bfloat16)
torch.cuda.synchronize()
print(f"ran D={d} S={s} causal={causal} x{launches}")
