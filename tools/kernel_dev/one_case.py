"""One kernel case through build/libfmha_dev.so, `reps` launches, then a check.
Hang hunting: run it under a timeout (and cuda-gdb, see hang_hunt.sh).

    python3 tools/kernel_dev/one_case.py B S H HKV D CAUSAL [REPS]
"""
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from harness import LIB, Lib, run_case  # noqa: E402

b, s, h, hkv, d, causal = (int(x) for x in sys.argv[1:7])
reps = int(sys.argv[7]) if len(sys.argv) > 7 else 1
lib = Lib(LIB)
num_sms = torch.cuda.get_device_properties(0).multi_processor_count
for r in range(reps):
    ok, info = run_case(lib, num_sms, b, s, s, h, hkv, d, -1, 0 if causal else -1, "bf16")
    print(f"{'PASS' if ok else 'FAIL'} rep={r} b={b} s={s} h={h}/{hkv} d={d} causal={causal} "
          f"err={info['err']:.3e} emul_err={info['emul_err']:.3e}", flush=True)
