"""The V transposer's data movement, checked on the host (no GPU).

tests/host_checks/check_transpose_layout.cu emulates the kernel's LDSM.T.x4 /
PRMT / STSM.x4 steps (transpose_v.cuh) over the real CuTe shared-memory layouts
of every head-dim config, and checks that V^T holds the permuted keys, that
keys past the sequence end become zeros, that every byte is written once, that
no LDSM / STSM matrix has a bank conflict, and the address identities the
kernel relies on. It needs nvcc (host compilation only) and the CUTLASS
headers; without them the test is skipped with the reason.
"""

from __future__ import annotations

import pytest

from host_checker import NO_NVCC, NVCC, build_and_run
from torch_fmha._build import cutlass_include, source_root


@pytest.mark.skipif(NVCC is None, reason=NO_NVCC)
@pytest.mark.skipif(cutlass_include() is None, reason="CUTLASS headers (nvidia-cutlass wheel) not found")
def test_transposer_moves_every_byte_to_its_permuted_place(tmp_path):
    lines = build_and_run("check_transpose_layout.cu", tmp_path,
                          ["--expt-relaxed-constexpr", f"-I{cutlass_include()}", f"-I{source_root()}"],
                          build_timeout=600)
    assert len(lines) == 27 and all(": ok (" in ln for ln in lines), "\n".join(lines)  # 3 head dims x 9 lengths
