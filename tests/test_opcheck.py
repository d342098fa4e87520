"""torch.library.opcheck on every op (CPU)."""

from __future__ import annotations

import pytest
import torch

import torch_fmha  # noqa: F401
from opcheck_samples import (ALL_UTILS, FP8, FP8_UTILS, bwd_samples, fwd_samples, serving_bwd_samples,
                             serving_fwd_samples, serving_varlen_fwd_samples, varlen_bwd_samples,
                             varlen_fwd_samples)

ops = torch.ops.torch_fmha


def _ids(samples):
    return [str(i) for i in range(len(samples))]


@pytest.mark.parametrize("sample", fwd_samples(), ids=_ids(fwd_samples()))
def test_fwd_fp8(sample):
    torch.library.opcheck(ops.fwd, *sample, test_utils=FP8_UTILS)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_fwd_all_utils(dtype):
    for sample in fwd_samples(dtype=dtype):
        torch.library.opcheck(ops.fwd, *sample, test_utils=ALL_UTILS)


@pytest.mark.parametrize("sample", varlen_fwd_samples(), ids=_ids(varlen_fwd_samples()))
def test_varlen_fwd_fp8(sample):
    torch.library.opcheck(ops.varlen_fwd, *sample, test_utils=FP8_UTILS)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_varlen_fwd_all_utils(dtype):
    for sample in varlen_fwd_samples(dtype=dtype):
        torch.library.opcheck(ops.varlen_fwd, *sample, test_utils=ALL_UTILS)


def test_bwd():
    for sample in bwd_samples():
        torch.library.opcheck(ops.bwd, *sample, test_utils=ALL_UTILS)


def test_varlen_bwd():
    for sample in varlen_bwd_samples():
        torch.library.opcheck(ops.varlen_bwd, *sample, test_utils=ALL_UTILS)


def test_fp8_out_dtype_fake_matches():
    # FP8 *output* (test_faketensor compares metadata, not values).
    (q, k, v), kw = fwd_samples()[0]
    torch.library.opcheck(ops.fwd, (q, k, v), dict(kw, out_dtype=FP8, out_scale=torch.ones(1)),
                          test_utils=("test_faketensor",))


# Serving features (issue 14): softcap, sinks, seqused_k, paged KV. FP8 (the kernel's
# dtype; test_schema cannot take it) and float32 (all utils, gradients included).
@pytest.mark.parametrize("dtype", [FP8, torch.float32])
def test_serving_fwd(dtype):
    utils = FP8_UTILS if dtype == FP8 else ALL_UTILS
    for sample in serving_fwd_samples(dtype=dtype):
        torch.library.opcheck(ops.fwd, *sample, test_utils=utils)


@pytest.mark.parametrize("dtype", [FP8, torch.float32])
def test_serving_varlen_fwd(dtype):
    utils = FP8_UTILS if dtype == FP8 else ALL_UTILS
    for sample in serving_varlen_fwd_samples(dtype=dtype):
        torch.library.opcheck(ops.varlen_fwd, *sample, test_utils=utils)


def test_serving_bwd():
    for args, kw in serving_bwd_samples():
        op = ops.bwd if args[1].dim() == 4 else ops.varlen_bwd
        torch.library.opcheck(op, args, kw, test_utils=ALL_UTILS)
