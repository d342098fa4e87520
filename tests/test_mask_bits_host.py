"""The per-row column bit masks of the kernel's element mask (csrc/kernel/mask.cuh),
checked on the host: tests/host_checks/check_mask_bits.cu runs visible_column_bits
over all row bounds in [-300, 300]^2 against the plain comparison lo <= col <= hi, and
MaskInfo::upper_half_hidden (a tile's half first block, consumer.cuh) against the rows'
bounds over lengths, masks and windows. Needs nvcc (host compilation only)."""

from __future__ import annotations

from host_checker import build_and_run, needs_nvcc
from torch_fmha._build import source_root


@needs_nvcc
def test_mask_helpers_match_the_bounds(tmp_path):
    lines = build_and_run("check_mask_bits.cu", tmp_path, [f"-I{source_root()}"])
    assert len(lines) == 2 and all(": ok (" in line for line in lines), "\n".join(lines)
    # the check met half-hidden blocks (not a vacuous pass)
    hidden = int(lines[1].split(", ")[1].split()[0])
    assert hidden > 100, lines[1]
