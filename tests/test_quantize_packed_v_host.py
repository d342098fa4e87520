"""The CUDA quantize kernels' packed-v cast (csrc/kernel/quantize.cuh, cast_packed_v: FP8
v written as a packed v [B, Hkv, D, G, 16], each 16-key group in csrc/vt_key_order.h's
order, for the fwd kernel's V^T-by-TMA path) run on the host by
tests/host_checks/check_quantize_packed_v.cpp: the kernel's device code compiled by the
host C++ compiler, a block as 512 threads with a barrier for __syncthreads; every output
byte of every element type and load width against a reference written from the packed-v
definition, padding slots zero, chunks split over blocks; no shared-memory bank conflicts
for bf16 / fp16 and none added by the packed order at any width. Needs a C++20 compiler
and the CUDA headers (cuda_bf16.h); skipped with the reason without them. The GPU run is
tests/gpu/test_quantize_sm90.py."""

from __future__ import annotations

from host_checker import build_and_run_cxx, needs_cxx_cuda_headers


@needs_cxx_cuda_headers
def test_packed_v_cast_every_byte(tmp_path):
    lines = build_and_run_cxx("check_quantize_packed_v.cpp", tmp_path, run_timeout=300)
    assert len(lines) == 1 and lines[0].startswith("packed-v cast: ok ("), lines
    print(lines[0])
