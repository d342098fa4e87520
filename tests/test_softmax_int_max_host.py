"""The row max from integer three-input maxes (csrc/kernel/softmax.cuh, int_max_of_scores, the
tuning knob TORCH_FMHA_TUNE_INT_MAX_<D>: the scores' bits as signed ints, VIMNMX3 on sm_90,
fmaxf's chain where the int max is not the float max), run on the host by
tests/host_checks/check_softmax_int_max.cu against fmaxf: N(0, 16), all-negative, zero,
masked, infinite and NaN scores, 64, 48 and 32 scores per row and thread; both paths taken.
Accepting a NaN or a negative int max fails it (checked by mutation in session 26). Needs
nvcc (host compilation only); skipped with the reason without it."""

from __future__ import annotations

from host_checker import build_and_run, needs_nvcc
from torch_fmha._build import source_root


@needs_nvcc
def test_int_row_max_is_the_float_max(tmp_path):
    lines = build_and_run("check_softmax_int_max.cu", tmp_path, [f"-I{source_root()}"])
    assert len(lines) == 1 and lines[0].startswith("int row max: ok ("), lines
    print(lines[0])
