"""The kernel's serving-feature math, checked on the host (no GPU).

tests/host_checks/check_softmax_finalize.cu runs the kernel's own
score_scales / normalize_row (csrc/kernel/softmax.cuh) against float64
references: soft-capping's exp2 argument (also with an infinite or zero score
scale), the sink-merged normalisation (sinks far above / below the scores, a
row that saw no key, NaN), and poly_exp2 (the exps the softmax may run on
the FMA pipe) against exp2. tests/host_checks/check_paged_boxes.cu checks the
paged-KV box split (csrc/kernel/producer.cuh, PagedKvBoxes) for every head dim
and page size 16..256: no box crosses a page, and every byte a box's TMA
writes lands where the K shared-memory layout has it. Need nvcc (the second
also the CUTLASS headers); skipped with the reason without them.
"""

from __future__ import annotations

import pytest

from host_checker import build_and_run, needs_cutlass, needs_nvcc
from torch_fmha._build import source_root


@needs_nvcc
def test_softcap_scales_and_sink_normalisation_match_float64(tmp_path):
    lines = build_and_run("check_softmax_finalize.cu", tmp_path, [f"-I{source_root()}"])
    assert len(lines) == 3 and all(": ok (" in ln for ln in lines), "\n".join(lines)


@needs_cutlass
@pytest.mark.parametrize("issue_warps", [1, 2, 4])  # producer.cuh, TORCH_FMHA_TUNE_PAGED_ISSUE_WARPS
def test_paged_boxes_stay_in_one_page_and_land_in_the_k_layout(tmp_path, issue_warps):
    lines = build_and_run("check_paged_boxes.cu", tmp_path,
                          [f"-DTORCH_FMHA_TUNE_PAGED_ISSUE_WARPS={issue_warps}"], cutlass=True)
    assert len(lines) == 3 and all(": ok (" in ln and f"{issue_warps} issuing warps" in ln
                                   for ln in lines), "\n".join(lines)
