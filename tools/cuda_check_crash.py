"""Narrow down issue 13's crash: on the H200 (session 17) an error raised by the shared
checks (csrc/ops/checks.cpp) from the CUDA forward ended the process with SIGSEGV, while
errors raised in fwd_cuda.cpp itself raised. Every case below runs in its own process and
prints RAISED / NO ERROR / CRASH (exit code), so one GPU call tells which of these holds:

- only CUDA calls into checks.cpp crash (cpu_* cases raise in the same build), or any
  throw from checks.cpp in this build does (cpu_* crash too);
- the first statement of check_fwd (check_rank) crashes as well as a later one, and
  check_options (float_str) too;
- another translation unit's checks (quantize_op.cpp) crash the same way;
- torch_fmha's own CUDA work before the throw matters (cuda_valid_call_then_kv_shape), or
  only the checks.cpp frames do (cuda_bwd_refusal_first throws with no CUDA work before it);
- the C++ Autograd kernel (autograd.cpp) matters (cuda_kv_shape_below_autograd skips it);
- symbolising the C++ backtrace matters (*_stacktraces: TORCH_SHOW_CPP_STACKTRACES=1);
- the process dies during the throw, or after the error was caught (at exit: a CRASH whose
  stdout already shows RAISED; *_then_os_exit skips atexit handlers and static destructors).

Then, for the first case that crashed, a native backtrace under gdb or cuda-gdb when either
is installed (the frame that faults is the root cause's address).

    python3 tools/cuda_check_crash.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

PRELUDE = """
import torch, torch_fmha
FP8 = torch.float8_e4m3fn
torch.zeros(1, device="cuda")  # a CUDA context in every case, CPU ones too
def t(*shape, device="cuda", dtype=FP8):
    return torch.randn(*shape).to(device).to(dtype)
"""

CASES = {
    # the shared checks, CPU tensors, same build and process state
    "cpu_kv_shape": "torch_fmha.attention(t(1, 48, 2, 128, device='cpu'), t(1, 48, 2, 128, device='cpu'), "
                    "t(1, 40, 2, 128, device='cpu'))",
    "cpu_kv_shape_stacktraces": "torch_fmha.attention(t(1, 48, 2, 128, device='cpu'), "
                                "t(1, 48, 2, 128, device='cpu'), t(1, 40, 2, 128, device='cpu'))",
    # the shared checks from the CUDA forward: session 17's crash, then other throw sites
    "cuda_kv_shape": "torch_fmha.attention(t(1, 48, 2, 128), t(1, 48, 2, 128), t(1, 40, 2, 128))",
    "cuda_kv_shape_stacktraces": "torch_fmha.attention(t(1, 48, 2, 128), t(1, 48, 2, 128), t(1, 40, 2, 128))",
    "cuda_kv_shape_bf16": "torch_fmha.attention(t(1, 48, 2, 128, dtype=torch.bfloat16), "
                          "t(1, 48, 2, 128, dtype=torch.bfloat16), t(1, 40, 2, 128, dtype=torch.bfloat16))",
    "cuda_rank": "torch_fmha.attention(t(48, 2, 128), t(1, 48, 2, 128), t(1, 48, 2, 128))",
    "cuda_softmax_scale": "torch_fmha.attention(t(1, 48, 2, 128), t(1, 48, 2, 128), t(1, 48, 2, 128), "
                          "softmax_scale=-1.0)",
    "cuda_kv_shape_below_autograd": (
        "torch.ops.torch_fmha.fwd.default.redispatch(torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA), "
        "t(1, 48, 2, 128), t(1, 48, 2, 128), t(1, 40, 2, 128), None, False, -1, -1, None, None, None, None, "
        "None, 0.0, None)"),
    # the same error, then a valid call, or then os._exit (skips atexit and static destructors):
    # tells a crash during the throw from one at process exit (stdout shows RAISED before a CRASH)
    "cuda_kv_shape_then_valid_call": "torch_fmha.attention(t(1, 48, 2, 128), t(1, 48, 2, 128), t(1, 40, 2, 128))",
    "cuda_kv_shape_then_os_exit": "torch_fmha.attention(t(1, 48, 2, 128), t(1, 48, 2, 128), t(1, 40, 2, 128))",
    # another translation unit's checks (quantize_op.cpp), before any CUDA work
    "cuda_quantize_qkv_kv_shape": (
        "torch.ops.torch_fmha.quantize_qkv.default(t(1, 48, 2, 128, dtype=torch.bfloat16), "
        "t(1, 48, 2, 128, dtype=torch.bfloat16), t(1, 40, 2, 128, dtype=torch.bfloat16), True, False, None, "
        "None, False)"),
    # whether torch_fmha had done CUDA work in this process before the throw: a valid call first;
    # and a throw with none before it that passes no checks.cpp frame (the CUDA bwd refusal)
    "cuda_valid_call_then_kv_shape": "torch_fmha.attention(t(1, 48, 2, 128), t(1, 48, 2, 128), "
                                     "t(1, 48, 2, 128)); torch.cuda.synchronize(); "
                                     "torch_fmha.attention(t(1, 48, 2, 128), t(1, 48, 2, 128), t(1, 40, 2, 128))",
    "cuda_bwd_refusal_first": "x = t(1, 8, 2, 64, dtype=torch.bfloat16); "
                              "torch.ops.torch_fmha.bwd(x, x, x, x, x, torch.zeros(1, 2, 8, device='cuda'), None, None, "
                              "False, -1, -1, 0.0, None)",
    # thrown in fwd_cuda.cpp itself (element_type): raised fine in session 17
    "cuda_float32_control": "torch_fmha.attention(t(1, 48, 2, 128, dtype=torch.float32), "
                            "t(1, 48, 2, 128, dtype=torch.float32), t(1, 48, 2, 128, dtype=torch.float32))",
}


AFTER = {
    "cuda_kv_shape_then_valid_call": ["torch_fmha.attention(t(1, 48, 2, 128), t(1, 48, 2, 128), t(1, 48, 2, 128))",
                                      "torch.cuda.synchronize()", "print('VALID CALL OK', flush=True)"],
    "cuda_kv_shape_then_os_exit": ["import os", "os._exit(0)"],
}


def script(name: str) -> str:
    return PRELUDE + "\n".join([
        "try:",
        f"    {CASES[name]}",
        "    print('NO ERROR', flush=True)",
        "except RuntimeError as e:",
        "    print('RAISED', str(e).splitlines()[0][:160], flush=True)",
        *AFTER.get(name, []),
    ])


def main() -> int:
    crashed = []
    for name in CASES:
        env = dict(os.environ)
        if name.endswith("_stacktraces"):
            env["TORCH_SHOW_CPP_STACKTRACES"] = "1"
        res = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script(name)], capture_output=True,
                             text=True, timeout=300, env=env)
        line = " | ".join(res.stdout.strip().splitlines()[-2:])
        if res.returncode != 0:
            crashed.append(name)
            line = f"CRASH exit {res.returncode} after stdout {line!r}: {res.stderr.strip()[-300:]!r}"
        print(f"{name:32s} {line}", flush=True)
    debugger = shutil.which("gdb") or shutil.which("cuda-gdb") or (
        "/usr/local/cuda/bin/cuda-gdb" if os.path.exists("/usr/local/cuda/bin/cuda-gdb") else None)
    if crashed and debugger:
        name = crashed[0]
        print(f"\n{debugger} backtrace of {name}:", flush=True)
        res = subprocess.run([debugger, "-batch", "-ex", "run", "-ex", "bt 40", "--args", sys.executable, "-c",
                              script(name)], capture_output=True, text=True, timeout=150)
        print("\n".join((res.stdout + res.stderr).splitlines()[-70:]))
    elif crashed:
        print("\nno gdb / cuda-gdb here for a native backtrace")
    return 0


if __name__ == "__main__":
    sys.exit(main())
