"""The CUDA quantize kernels' keys-contiguous cast (csrc/kernel/quantize.cuh,
cast_keys_contiguous: FP8 v written as [B, Hkv, D, S16] for the fwd kernel's V^T-by-TMA
path) run on the host by tests/host_checks/check_quantize_keys_contiguous.cpp: the
kernel's device code compiled by the host C++ compiler, a block as 512 threads with a
barrier for __syncthreads; every output byte of every element type and load width,
padding keys zero, chunks split over blocks; no shared-memory bank conflicts for
bf16 / fp16. Needs a C++20 compiler and the CUDA headers (cuda_bf16.h); skipped with the
reason without them. The GPU run is tests/gpu/test_quantize_sm90.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from host_checker import CHECKS, NVCC
from torch_fmha._build import source_root

CXX = shutil.which("c++") or shutil.which("g++")


def _cuda_include():
    """The CUDA headers' folder: next to nvcc (which may be a wrapper script), $CUDA_HOME, /usr/local/cuda."""
    roots = [Path(NVCC).resolve().parent.parent] if NVCC else []
    roots += [Path(os.environ[v]) for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    roots.append(Path("/usr/local/cuda"))
    return next((r / "include" for r in roots if (r / "include" / "cuda_bf16.h").exists()), None)


CUDA_INCLUDE = _cuda_include()


@pytest.mark.skipif(CXX is None or CUDA_INCLUDE is None,
                    reason="needs a C++ compiler and the CUDA headers (cuda_bf16.h)")
def test_keys_contiguous_cast_every_byte(tmp_path):
    exe = tmp_path / "check_quantize_keys_contiguous"
    build = subprocess.run([CXX, "-std=c++20", "-O1", "-pthread", f"-I{CUDA_INCLUDE}", f"-I{source_root()}",
                            str(CHECKS / "check_quantize_keys_contiguous.cpp"), "-o", str(exe)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("keys-contiguous cast: ok ("), run.stdout
