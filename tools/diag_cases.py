"""One forward call per command line, for hang hunting: prints PASS + error or
gets killed by the caller's timeout. Usage: diag_cases.py B S H HKV D CAUSAL"""
import sys

import torch

sys.path.insert(0, "tests")
import torch_fmha  # noqa: E402
from inputs import FP8, dense_inputs  # noqa: E402
from reference import attention_ref  # noqa: E402

b, s, h, hkv, d, causal = (int(x) for x in sys.argv[1:7])
q, k, v, sc = dense_inputs(b, s, s, h, hkv, d, FP8, device="cuda", poison=False)
out = torch_fmha.attention(q, k, v, causal=bool(causal), **sc)
torch.cuda.synchronize()
ref, _ = attention_ref(q, k, v, causal=bool(causal), **sc)
print(f"PASS b={b} s={s} h={h}/{hkv} d={d} causal={causal} maxerr={(out.double()-ref).abs().max().item():.3e}")
