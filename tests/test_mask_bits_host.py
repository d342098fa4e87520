"""The per-row column bit masks of the kernel's element mask (csrc/kernel/mask.cuh),
checked on the host: tests/host_checks/check_mask_bits.cu runs visible_column_bits
over all row bounds in [-300, 300]^2 against the plain comparison lo <= col <= hi.
Needs nvcc (host compilation only)."""

from __future__ import annotations

from host_checker import build_and_run, needs_nvcc
from torch_fmha._build import source_root


@needs_nvcc
def test_visible_column_bits_match_the_bounds(tmp_path):
    lines = build_and_run("check_mask_bits.cu", tmp_path, [f"-I{source_root()}"])
    assert len(lines) == 1 and ": ok (" in lines[0], "\n".join(lines)
