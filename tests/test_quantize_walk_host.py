"""The quantize kernels' walk over a scale group's vectors (csrc/kernel/quantize.cuh,
for_each_vector with TORCH_FMHA_TUNE_QUANTIZE_LOADS > 0, the default since session 27:
csrc/quantize.h's SegmentCursor steps instead of three 64-bit divisions per 16-byte vector,
several loads in flight) run on the host by tests/host_checks/check_quantize_walk.cpp: the
kernel's device code compiled by the host C++ compiler, the 512 threads of a block one after
another; every thread's visits (x_fp8 offsets and the loaded values) equal the strided
loop's for bf16 / fp32 / fp64 loads, padded strides, per-tensor and per-head groups, head
counts that do not divide a step, packed rows with cu_seqlens and several chunks, and every
thread calls the walk's `ready` hook (the cast's scale under
TORCH_FMHA_TUNE_QUANTIZE_SCALE_OVERLAP) exactly once, before its first visit. A wrong row or
head carry in SegmentCursor::advance fails it (checked by mutation in session 26), and so
does a dropped or late `ready` (session 27). Needs a C++20 compiler and the CUDA headers
(cuda_bf16.h); skipped with the reason without them. The GPU run is
tests/gpu/test_quantize_sm90.py (CUDA == CPU bytes)."""

from __future__ import annotations

from host_checker import build_and_run_cxx, needs_cxx_cuda_headers


@needs_cxx_cuda_headers
def test_walk_visits_what_the_strided_loop_visits(tmp_path):
    lines = build_and_run_cxx("check_quantize_walk.cpp", tmp_path, run_timeout=400)
    assert len(lines) == 1 and lines[0].startswith("quantize walk: ok ("), lines
    assert int(lines[0].split("(")[1].split()[0]) > 100_000, lines[0]  # the cases ran
    print(lines[0])
