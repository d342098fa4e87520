"""The V transposer's data movement, checked on the host (no GPU).

tools/kernel_dev/check_transpose_layout.cu emulates the kernel's LDSM.T.x4 /
PRMT / STSM.x4 steps (transpose_v.cuh) over the real CuTe shared-memory layouts
of every head-dim config, and checks that V^T holds the permuted keys, that
keys past the sequence end become zeros, that every byte is written once, that
no LDSM / STSM matrix has a bank conflict, and the address identities the
kernel relies on. It needs nvcc (host compilation only) and the CUTLASS
headers; without them the test is skipped with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from torch_fmha._build import cutlass_include, source_root

ROOT = Path(__file__).resolve().parents[1]
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)


@pytest.mark.skipif(NVCC is None, reason="nvcc not found (host-only CUDA compilation is needed)")
@pytest.mark.skipif(cutlass_include() is None, reason="CUTLASS headers (nvidia-cutlass wheel) not found")
def test_transposer_moves_every_byte_to_its_permuted_place(tmp_path):
    exe = tmp_path / "check_tl"
    build = subprocess.run(
        [NVCC, "-std=c++17", "--expt-relaxed-constexpr", f"-I{cutlass_include()}", f"-I{source_root()}",
         str(ROOT / "tools/kernel_dev/check_transpose_layout.cu"), "-o", str(exe)],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    lines = run.stdout.splitlines()
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(lines) == 27 and all(": ok (" in ln for ln in lines), run.stdout  # 3 head dims x 9 lengths
