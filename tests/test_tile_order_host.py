"""The persistent tile order (csrc/kernel/tile_scheduler.cuh), checked on the host.

tools/kernel_dev/check_tile_order.cu runs the kernel's own code on the host:
DenseTileScheduler::get for several batch / head / length shapes (every
(batch, head, q block) comes from exactly one tile id, the id past the last is
the stop tile, causal order longest first), and persistent_tile_id (CTAs walking
alternating rounds take every tile once). Needs nvcc (host compilation only).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from torch_fmha._build import source_root

ROOT = Path(__file__).resolve().parents[1]
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)


@pytest.mark.skipif(NVCC is None, reason="nvcc not found (host-only CUDA compilation is needed)")
def test_persistent_tile_order_covers_every_tile_once(tmp_path):
    exe = tmp_path / "check_to"
    build = subprocess.run(
        [NVCC, "-std=c++17", f"-I{source_root()}", str(ROOT / "tools/kernel_dev/check_tile_order.cu"),
         "-o", str(exe)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    lines = run.stdout.splitlines()
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(lines) == 18 and all(": ok (" in ln for ln in lines), run.stdout  # 12 dense + 6 rounds
