"""TMA descriptors are encoded through torch_fmha::tma_encode_tiled, checked on the host (no GPU).

CuTe's make_tma_copy calls CUTLASS's cuTensorMapEncodeTiled wrapper, which
looks the driver entry point up (cudaGetDriverEntryPoint) on every call:
three lookups per attention launch, host time on every call.
csrc/launch/fwd_launch_template.cuh points CuTe's direct-call path at
tma_encode_tiled (csrc/launch/tma_encode.cu: one lookup per process).
tests/host_checks/check_tma_encode_redirect.cu builds the launcher's q and k/v
descriptors for every head dim with a counting tma_encode_tiled and checks
that each went through it. Needs nvcc (host compilation only) and the CUTLASS
headers; without them the test is skipped with the reason.
"""

from __future__ import annotations

from host_checker import build_and_run, needs_cutlass


@needs_cutlass
def test_every_tma_descriptor_goes_through_tma_encode_tiled(tmp_path):
    lines = build_and_run("check_tma_encode_redirect.cu", tmp_path, cutlass=True)
    assert len(lines) == 3 and all(": ok (" in ln for ln in lines), "\n".join(lines)  # head dims 64/128/256
