"""Build and run a host-only C++ checker of tests/host_checks/ with nvcc (no GPU needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from torch_fmha._build import cutlass_include, source_root

CHECKS = Path(__file__).resolve().parent / "host_checks"
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
NO_NVCC = "nvcc not found (host-only CUDA compilation is needed)"
needs_nvcc = pytest.mark.skipif(NVCC is None, reason=NO_NVCC)
# Checkers that include the kernel headers (CuTe layouts) also need the CUTLASS
# headers (the nvidia-cutlass wheel; .ci/run installs it).
needs_cutlass = pytest.mark.skipif(NVCC is None or cutlass_include() is None,
                                   reason=NO_NVCC if NVCC is None else
                                   "CUTLASS headers (nvidia-cutlass wheel) not found")


def build_and_run(source: str, tmp_path: Path, flags: list[str] = (), build_timeout: int = 300,
                  cutlass: bool = False) -> list[str]:
    """Compiles tests/host_checks/<source> with `flags` (and, with `cutlass`, the
    CUTLASS and csrc include paths), runs it, asserts both exit 0; its stdout lines."""
    if cutlass:
        flags = [*flags, "--expt-relaxed-constexpr", f"-I{cutlass_include()}", f"-I{source_root()}"]
        build_timeout = max(build_timeout, 600)
    exe = tmp_path / Path(source).stem
    build = subprocess.run([NVCC, "-std=c++17", *flags, str(CHECKS / source), "-o", str(exe)],
                           capture_output=True, text=True, timeout=build_timeout)
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout.splitlines()
