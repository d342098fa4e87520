"""Correctness sweep of the CPU kernels against the float64 oracle.

Shapes from docs/DESIGN.md section 8: the lengths list, Sq != Sk both ways, GQA
1/2/8, head dims 64/128/256, causal and windows, descales != 1 per (batch,
kv head), FP8 output, varlen with empty sequences. Inputs live in NaN-filled
buffers with strided heads, so padding that leaks or a stride that is
ignored shows up as NaN or a wrong value.
"""

from __future__ import annotations

import math

import pytest
import torch

import torch_fmha
from inputs import FP8, dense_inputs, packed_v, varlen_inputs
from reference import assert_close_by_rule, attention_ref, output_as_float64, round_output, varlen_attention_ref

LENGTHS = [1, 63, 64, 65, 113, 127, 128, 129, 1023, 4224]
EPS = {torch.float32: 2e-5, torch.float64: 1e-10, torch.bfloat16: 1e-4, torch.float16: 1e-4, FP8: 1e-4}


def check(q, k, v, scales, *, out_dtype=None, out_scale=None, varlen=None, **mask):
    kwargs = dict(scales, out_dtype=out_dtype, out_scale=out_scale, **mask)
    if varlen is None:
        out, lse = torch_fmha.attention(q, k, v, return_lse=True, **kwargs)
        ref, ref_lse = attention_ref(q, k, v, **scales, **mask)
    else:
        cu_q, cu_k = varlen
        out, lse = torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, return_lse=True, **kwargs)
        ref, ref_lse = varlen_attention_ref(q, k, v, cu_q, cu_k, **scales, **mask)
    final = out.dtype
    emul = round_output(ref, final, out_scale)
    stats = assert_close_by_rule(output_as_float64(out, out_scale), ref, emul, eps=EPS.get(q.dtype, 1e-4))
    # lse: -inf exactly where the oracle has -inf, close elsewhere.
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse)), "lse -inf pattern differs"
    finite = torch.isfinite(ref_lse)
    if finite.any():
        assert (lse.double()[finite] - ref_lse[finite]).abs().max() < 1e-4
    return stats


@pytest.mark.parametrize("seqlen", LENGTHS)
@pytest.mark.parametrize("causal", [False, True])
def test_lengths_fp8(seqlen, causal):
    q, k, v, s = dense_inputs(1, seqlen, seqlen, 2, 1, 64, FP8, seed=seqlen)
    check(q, k, v, s, causal=causal)


@pytest.mark.parametrize("sq,sk", [(65, 129), (129, 65), (1, 1023), (1023, 1), (113, 300), (300, 113)])
@pytest.mark.parametrize("causal", [False, True])
def test_sq_ne_sk(sq, sk, causal):
    q, k, v, s = dense_inputs(2, sq, sk, 4, 2, 64, FP8, seed=sq * 7 + sk)
    check(q, k, v, s, causal=causal)


@pytest.mark.parametrize("hkv", [8, 4, 1])  # GQA ratio 1, 2, 8
@pytest.mark.parametrize("d", [64, 128, 256])
def test_gqa_head_dims(hkv, d):
    q, k, v, s = dense_inputs(2, 70, 90, 8, hkv, d, FP8, seed=hkv * d)
    check(q, k, v, s, causal=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_other_dtypes(dtype):
    q, k, v, s = dense_inputs(2, 33, 47, 4, 2, 64, dtype)
    check(q, k, v, s, causal=False)


@pytest.mark.parametrize("window", [(16, 0), (8, 8), (-1, 5), (0, 0), (32, -1), (3, 200)])
def test_windows(window):
    q, k, v, s = dense_inputs(2, 130, 100, 4, 2, 64, FP8)
    check(q, k, v, s, window_size=window)


def test_causal_is_window_minus1_0():
    q, k, v, s = dense_inputs(1, 50, 80, 2, 2, 64, FP8)
    a = torch_fmha.attention(q, k, v, causal=True, **s)
    b = torch_fmha.attention(q, k, v, window_size=(-1, 0), **s)
    assert torch.equal(a, b)


def test_fp8_output_saturates():
    q, k, v, s = dense_inputs(2, 77, 77, 4, 2, 128, FP8)
    out_scale = torch.tensor([0.004])  # small enough that some outputs saturate
    check(q, k, v, s, out_dtype=FP8, out_scale=out_scale, causal=True)
    raw = torch_fmha.attention(q, k, v, causal=True, out_dtype=FP8, out_scale=out_scale, **s)
    assert raw.dtype == FP8 and not torch.isnan(raw.float()).any()
    assert raw.float().abs().max() == 448.0


def test_fp16_output_of_fp8():
    q, k, v, s = dense_inputs(1, 64, 64, 2, 2, 64, FP8)
    out = torch_fmha.attention(q, k, v, out_dtype=torch.float16, **s)
    assert out.dtype == torch.float16
    check(q, k, v, s, out_dtype=torch.float16)


def test_descales_are_used():
    """An ignored descale would pass a test with descale 1; make sure it matters."""
    q, k, v, s = dense_inputs(2, 40, 40, 4, 2, 64, FP8)
    base = torch_fmha.attention(q, k, v, **s)
    for name in s:
        changed = dict(s, **{name: s[name] * 1.5})
        assert not torch.allclose(torch_fmha.attention(q, k, v, **changed), base)


def test_rows_that_see_no_key():
    # Sq > Sk with causal: the first Sq - Sk rows see nothing.
    q, k, v, s = dense_inputs(1, 10, 4, 2, 1, 64, FP8)
    out, lse = torch_fmha.attention(q, k, v, causal=True, return_lse=True, **s)
    assert torch.equal(out[0, :6].float(), torch.zeros_like(out[0, :6].float()))
    assert torch.isinf(lse[0, :, :6]).all() and (lse[0, :, :6] < 0).all()
    assert torch.isfinite(lse[0, :, 6:]).all()
    # Sk == 0: every row is empty.
    out, lse = torch_fmha.attention(q, k[:, :0], v[:, :0], return_lse=True, **s)
    assert torch.equal(out.float(), torch.zeros_like(out.float())) and torch.isneginf(lse).all()


def test_default_softmax_scale():
    q, k, v, s = dense_inputs(1, 20, 20, 2, 2, 128, torch.float32)
    a = torch_fmha.attention(q, k, v)
    b = torch_fmha.attention(q, k, v, softmax_scale=1 / math.sqrt(128))
    assert torch.equal(a, b)


VARLEN_CASES = [
    ([0, 5, 0, 130, 64], [3, 0, 70, 129, 1]),  # empty q, empty k, both ways
    ([1, 63, 64, 65], [65, 64, 63, 1]),
    ([200], [0]),
    ([0, 0], [0, 0]),
]


@pytest.mark.parametrize("lens", VARLEN_CASES)
@pytest.mark.parametrize("causal", [False, True])
def test_varlen(lens, causal):
    lens_q, lens_k = lens
    q, k, v, cu_q, cu_k, s = varlen_inputs(lens_q, lens_k, 4, 2, 64, FP8, seed=sum(lens_q))
    check(q, k, v, s, varlen=(cu_q, cu_k), causal=causal)


def test_varlen_window_gqa8_fp8_out():
    q, k, v, cu_q, cu_k, s = varlen_inputs([40, 0, 90], [60, 10, 90], 8, 1, 128, FP8)
    check(q, k, v, s, varlen=(cu_q, cu_k), window_size=(20, 3), out_dtype=FP8,
          out_scale=torch.tensor([0.02]))


def test_varlen_equals_dense_on_equal_lengths():
    q, k, v, s = dense_inputs(3, 50, 70, 4, 2, 64, FP8, per_head_descale=True, poison=False)
    dense = torch_fmha.attention(q, k, v, causal=True, **s)
    cu_q = torch.arange(0, 151, 50, dtype=torch.int32)
    cu_k = torch.arange(0, 211, 70, dtype=torch.int32)
    packed = torch_fmha.varlen_attention(q.reshape(150, 4, 64), k.reshape(210, 2, 64), v.reshape(210, 2, 64),
                                         cu_q, cu_k, causal=True, **s)
    assert torch.equal(packed.reshape(dense.shape), dense)


# A packed v (csrc/vt_key_order.h) holds v's bytes in another order: the CPU op unpacks it and
# must give exactly what it gives for v itself, eager and traced (fake checks, fullgraph).
@pytest.mark.parametrize("seqlen", [0, 1, 15, 16, 17, 40, 129])
@pytest.mark.parametrize("mask", [dict(causal=True), dict(window_size=(20, 3)), dict()])
def test_packed_v_same_bits_as_v(seqlen, mask):
    q, k, v, s = dense_inputs(2, 23, seqlen, 4, 2, 128, FP8, seed=seqlen, poison=False)
    out, lse = torch_fmha.attention(q, k, v, return_lse=True, **mask, **s)
    out_p, lse_p = torch_fmha.attention(q, k, packed_v(v), return_lse=True, **mask, **s)
    assert torch.equal(out_p, out) and torch.equal(lse_p, lse)


def test_packed_v_under_compile():
    q, k, v, s = dense_inputs(1, 40, 37, 4, 2, 64, FP8, seed=3, poison=False)
    fn = torch.compile(lambda q, k, v: torch_fmha.attention(q, k, v, causal=True, **s), fullgraph=True)
    assert torch.equal(fn(q, k, packed_v(v)), torch_fmha.attention(q, k, v, causal=True, **s))
