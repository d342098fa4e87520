"""P in natural key order for V^T loaded by TMA (csrc/kernel/p_key_order.cuh),
checked on the host: tests/host_checks/check_p_key_order.cu runs the four lanes of
a quad in lock step and checks that each lane ends with keys 4c .. 4c+3 of its two
rows, the FP8 A-operand layout of the P V wgmma. Needs nvcc (host compilation only)."""

from __future__ import annotations

from host_checker import build_and_run, needs_nvcc
from torch_fmha._build import source_root


@needs_nvcc
def test_p_permutation_gives_each_lane_its_four_keys(tmp_path):
    lines = build_and_run("check_p_key_order.cu", tmp_path, [f"-I{source_root()}"])
    assert lines == ["P natural key order: ok (512 bytes)"], "\n".join(lines)
