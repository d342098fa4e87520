"""The CUDA quantize kernels' keys-contiguous cast (csrc/kernel/quantize.cuh,
cast_keys_contiguous: FP8 v written as [B, Hkv, D, S16] for the fwd kernel's V^T-by-TMA
path) run on the host by tests/host_checks/check_quantize_keys_contiguous.cpp: the
kernel's device code compiled by the host C++ compiler, a block as 512 threads with a
barrier for __syncthreads; every output byte of every element type and load width,
padding keys zero, chunks split over blocks; no shared-memory bank conflicts for
bf16 / fp16. Needs a C++20 compiler and the CUDA headers (cuda_bf16.h); skipped with the
reason without them. The GPU run is tests/gpu/test_quantize_sm90.py."""

from __future__ import annotations

from host_checker import build_and_run_cxx, needs_cxx_cuda_headers


@needs_cxx_cuda_headers
def test_keys_contiguous_cast_every_byte(tmp_path):
    lines = build_and_run_cxx("check_quantize_keys_contiguous.cpp", tmp_path, run_timeout=300)
    assert len(lines) == 1 and lines[0].startswith("keys-contiguous cast: ok ("), lines
