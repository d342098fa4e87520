"""A whole CUDA quantize_qkv call run on the host by
tests/host_checks/check_quantize_qkv_launch.cpp: q, k and v planned as the op plans them
(chunks, first_block, the partial-amax scratch), every block of quantize_group_kernel, or of
quantize_amax_kernel then quantize_cast_kernel, in a shuffled order, the kernels' own device
code on 512 host threads per block (__syncthreads, __shfl_xor_sync and __shared__ emulated);
q8, k8, v8 (standard and keys-contiguous, padding keys included) and the descales bitwise
against a plain reference, and the keys-contiguous call's q8 / k8 / descales == the standard
call's. bf16 outlier inputs as the GPU test's (B=2, H=4, Hkv=2, S 1 / 63 / 129 / 1023,
D 64 / 128 / 256, per tensor and per head), fp32 and scalar loads. Needs a C++20 compiler
and the CUDA headers; skipped with the reason without them. The GPU run is
tests/gpu/test_quantize_sm90.py."""

from __future__ import annotations

import pytest

from host_checker import build_and_run_cxx, needs_cxx_cuda_headers


@needs_cxx_cuda_headers
@pytest.mark.timeout(900)
def test_quantize_qkv_whole_launch_every_byte(tmp_path):
    lines = build_and_run_cxx("check_quantize_qkv_launch.cpp", tmp_path, run_timeout=600)
    assert len(lines) == 1 and lines[0].startswith("quantize_qkv launch: ok ("), lines
