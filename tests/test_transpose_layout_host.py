"""The V transposer's data movement, checked on the host (no GPU).

tests/host_checks/check_transpose_layout.cu emulates the kernel's LDSM.T.x4 /
PRMT / STSM.x4 steps (transpose_v.cuh) over the real CuTe shared-memory layouts
of every head-dim config, and checks that V^T holds the permuted keys in its
permuted rows (V column d in row vt_row(d): a packed v's row order at D = 128 /
256, the natural one at D = 64), that keys past the sequence end become zeros,
that every byte is written once, that no LDSM matrix has a bank conflict and no
STSM matrix more than the 2-way one of the permuted rows (none at D = 64), and
the address identities the kernel relies on. It needs nvcc (host compilation only) and the CUTLASS
headers; without them the test is skipped with the reason.
"""

from __future__ import annotations

from host_checker import build_and_run, needs_cutlass


@needs_cutlass
def test_transposer_moves_every_byte_to_its_permuted_place(tmp_path):
    lines = build_and_run("check_transpose_layout.cu", tmp_path, cutlass=True)
    # 3 head dims + the D=128 short-key build, x 9 lengths
    assert len(lines) == 36 and all(": ok (" in ln for ln in lines), "\n".join(lines)
