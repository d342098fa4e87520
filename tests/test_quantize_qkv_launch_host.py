"""A whole CUDA quantize_qkv call run on the host by
tests/host_checks/check_quantize_qkv_launch.cpp: q, k and v planned as the op plans them
(chunks, first_block, the partial-amax scratch), every block of quantize_group_kernel, or of
quantize_amax_kernel then quantize_cast_kernel, in a shuffled order, the kernels' own device
code on 512 host threads per block (__syncthreads, __shfl_xor_sync and __shared__ emulated);
q8, k8, v8 (standard and packed v, padding slots included) and the descales bitwise
against a plain reference, and the pack_v call's q8 / k8 / descales == the standard
call's. bf16 outlier inputs as the GPU test's (B=2, H=4, Hkv=2, S 1 / 63 / 129 / 1023,
D 64 / 128 / 256, per tensor and per head), fp32 and scalar loads. The checker also dumps
every call's inputs and outputs (TORCH_FMHA_QUANTIZE_DUMP), and this test runs the CPU op
(torch.ops.torch_fmha.quantize_qkv) on the same inputs: every byte of the emulated CUDA
launch == the CPU op's. Needs a C++20 compiler and the CUDA headers; skipped with the
reason without them. The GPU run is tests/gpu/test_quantize_sm90.py."""

from __future__ import annotations

import pytest
import torch

import torch_fmha  # noqa: F401  (loads the ops)
from host_checker import build_and_run_cxx, needs_cxx_cuda_headers

_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _load(path, dtype):
    return torch.frombuffer(bytearray(path.read_bytes()), dtype=dtype)


def _cpu_op_equals_dump(dump):
    """Every dumped call through the CPU op; returns the number of calls compared."""
    lines = (dump / "manifest.txt").read_text().splitlines()
    for line in lines:
        index, type_, *nums = line.split()
        b, s, h, hkv, d, sb, sr, sh, sd, per_head, pack_v = map(int, nums)
        dtype = _DTYPES[type_]
        inputs = []
        for name, heads in (("q", h), ("k", hkv), ("v", hkv)):
            # q's strides are in the manifest; k's and v's follow from their head count
            row = heads * sh
            flat = _load(dump / f"{index}_{name}.bin", dtype)
            inputs.append(flat.as_strided((b, s, heads, d), (s * row, row, sh, sd)))
        assert inputs[0].stride() == (sb, sr, sh, sd), line
        got = torch.ops.torch_fmha.quantize_qkv(*inputs, bool(per_head), False, None, None, bool(pack_v))
        what = f"call {line}"
        assert got[2].shape == ((b, hkv, d, (s + 15) // 16, 16) if pack_v else (b, s, hkv, d)), what
        for i, name in enumerate(("q8", "k8", "v8", "descales")):
            want = (dump / f"{index}_{name}.bin").read_bytes()
            mine = got[i].contiguous().view(-1).view(torch.uint8).numpy().tobytes()
            assert len(mine) == len(want), f"{what}: {name} has {len(mine)} bytes, the emulated launch {len(want)}"
            if mine != want:
                diff = (torch.frombuffer(bytearray(mine), dtype=torch.uint8)
                        != torch.frombuffer(bytearray(want), dtype=torch.uint8)).nonzero()
                pytest.fail(f"{what}: {name}: {diff.numel()} bytes differ from the emulated CUDA launch, "
                            f"first at {diff[0].item()}")
    return len(lines)


@needs_cxx_cuda_headers
@pytest.mark.timeout(900)
def test_quantize_qkv_whole_launch_every_byte(tmp_path, monkeypatch):
    dump = tmp_path / "dump"
    dump.mkdir()
    monkeypatch.setenv("TORCH_FMHA_QUANTIZE_DUMP", str(dump))
    lines = build_and_run_cxx("check_quantize_qkv_launch.cpp", tmp_path, run_timeout=600)
    assert len(lines) == 1 and lines[0].startswith("quantize_qkv launch: ok ("), lines
    calls = _cpu_op_equals_dump(dump)
    assert calls == 56, calls  # 28 cases, standard and pack_v
