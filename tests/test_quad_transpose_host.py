"""The epilogue's fp8 quad transpose (csrc/kernel/quad_transpose.cuh), checked on
the host: tests/host_checks/check_quad_transpose.cu runs the four lanes of a quad
in lock step and checks that each lane ends with the 8 contiguous output columns
it stores, at D = 64, 128 and 256. Needs nvcc (host compilation only)."""

from __future__ import annotations

from host_checker import build_and_run, needs_nvcc
from torch_fmha._build import source_root


@needs_nvcc
def test_quad_transpose_gives_each_lane_contiguous_columns(tmp_path):
    lines = build_and_run("check_quad_transpose.cu", tmp_path, [f"-I{source_root()}"])
    assert lines == ["fp8 quad transpose: ok (448 columns)"], "\n".join(lines)
