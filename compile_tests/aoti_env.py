"""The environment of a fresh process that loads an AOTInductor package (the compile
tests' AOTI runs, CPU and CUDA)."""

from __future__ import annotations

import os
import subprocess


def aoti_load_env():
    """Environment of the fresh loading process, with the package compiler's libstdc++ preloaded.

    On the GPU machine of this project (Ubuntu 24.04, g++ 13, torch 2.11.0+cu130) every
    AOTInductor package -- a plain nn.Linear too, CPU or CUDA, without torch_fmha -- segfaults
    at load inside the package's own std::regex (torch::aot_inductor::parse_device_str ->
    std::locale facets) unless the libstdc++ of the compiler that built the package is
    preloaded; with it, it loads and runs (compile_tests/aoti_diag.py shows both). That is a
    property of that torch / toolchain pairing, not of our ops, so the test loads the way that
    works there and the README tells users the same.
    """
    from torch._inductor import cpp_builder

    env = dict(os.environ)
    try:
        lib = subprocess.run([cpp_builder.get_cpp_compiler(), "-print-file-name=libstdc++.so.6"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return env
    if lib and os.path.isabs(lib) and os.path.exists(lib):
        env["LD_PRELOAD"] = " ".join(filter(None, [lib, env.get("LD_PRELOAD", "")]))
    return env
