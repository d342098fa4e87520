"""The merge kernel's split reduction (csrc/kernel/merge_splits.cuh: the max as a warp
butterfly over chunks of 32 splits, the weights summed in split order through shuffles)
against the serial merge_row of the CPU op (csrc/merge_splits.h), bitwise, on the host by
tests/host_checks/check_merge_pieces.cu: NaN / +-inf / -0 and +0 ties in the LSEs, 0..70
splits, no sink or a NaN / +-inf / +-0 / finite sink, float and double. Needs nvcc;
skipped with the reason without it."""

from __future__ import annotations

from host_checker import build_and_run, needs_nvcc
from torch_fmha._build import source_root


@needs_nvcc
def test_merge_pieces_in_kernel_order_equal_merge_row(tmp_path):
    lines = build_and_run("check_merge_pieces.cu", tmp_path,
                          ["--expt-relaxed-constexpr", f"-I{source_root()}"])
    assert len(lines) == 1 and lines[0].startswith("merge pieces: ok ("), "\n".join(lines)
