"""Build and run a host-only C++ checker of tests/host_checks/ with nvcc (no GPU needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHECKS = Path(__file__).resolve().parent / "host_checks"
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
NO_NVCC = "nvcc not found (host-only CUDA compilation is needed)"


def build_and_run(source: str, tmp_path: Path, flags: list[str], build_timeout: int = 300) -> list[str]:
    """Compiles tests/host_checks/<source> with `flags`, runs it, asserts both exit 0; its stdout lines."""
    exe = tmp_path / Path(source).stem
    build = subprocess.run([NVCC, "-std=c++17", *flags, str(CHECKS / source), "-o", str(exe)],
                           capture_output=True, text=True, timeout=build_timeout)
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout.splitlines()
