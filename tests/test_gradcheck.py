"""gradcheck (float64) of the backward ops through autograd, lse gradient included."""

from __future__ import annotations

import pytest
import torch

import torch_fmha
from op_defaults import call


def _loss_terms(out, lse):
    # Use lse too, so its gradient (dlse) is checked; mask -inf rows out.
    return out, torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)


@pytest.mark.parametrize("mask", [dict(causal=False), dict(causal=True), dict(window_size=(2, 1))])
@pytest.mark.parametrize("sq,sk,h,hkv", [(5, 7, 2, 1), (7, 4, 4, 2)])
def test_gradcheck_dense(mask, sq, sk, h, hkv):
    g = torch.Generator().manual_seed(sq * sk)
    q = torch.randn(2, sq, h, 64, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(2, sk, hkv, 64, dtype=torch.float64, generator=g, requires_grad=True)
    v = torch.randn(2, sk, hkv, 64, dtype=torch.float64, generator=g, requires_grad=True)

    def f(q, k, v):
        return _loss_terms(*torch_fmha.attention(q, k, v, return_lse=True, softmax_scale=0.3, **mask))

    assert torch.autograd.gradcheck(f, (q, k, v), fast_mode=True)


def test_gradcheck_dense_full_jacobian():
    # One small case with the full (slow) Jacobian, GQA and a window.
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 3, 2, 64, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(1, 4, 1, 64, dtype=torch.float64, generator=g, requires_grad=True)
    v = torch.randn(1, 4, 1, 64, dtype=torch.float64, generator=g, requires_grad=True)

    def f(q, k, v):
        return _loss_terms(*torch_fmha.attention(q, k, v, return_lse=True, window_size=(1, 0)))

    assert torch.autograd.gradcheck(f, (q, k, v))


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_varlen(causal):
    g = torch.Generator().manual_seed(3)
    cu_q = torch.tensor([0, 3, 3, 8], dtype=torch.int32)
    cu_k = torch.tensor([0, 4, 6, 6], dtype=torch.int32)  # an empty k sequence
    q = torch.randn(8, 4, 64, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(6, 2, 64, dtype=torch.float64, generator=g, requires_grad=True)
    v = torch.randn(6, 2, 64, dtype=torch.float64, generator=g, requires_grad=True)

    def f(q, k, v):
        out, lse = torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, causal=causal, return_lse=True,
                                               softmax_scale=0.3)
        return _loss_terms(out, lse)

    assert torch.autograd.gradcheck(f, (q, k, v), fast_mode=True)


def test_backward_matches_sdpa_bf16():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 33, 4, 64, generator=g).bfloat16().requires_grad_() for _ in range(3))
    out = torch_fmha.attention(q, k, v, causal=True)
    out.float().square().sum().backward()
    grads = [t.grad.float() for t in (q, k, v)]
    q2, k2, v2 = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(
        q2.transpose(1, 2), k2.transpose(1, 2), v2.transpose(1, 2), is_causal=True).transpose(1, 2)
    ref.square().sum().backward()
    for got, want in zip(grads, (q2.grad, k2.grad, v2.grad)):
        assert (got - want).abs().max() <= 0.05 * want.abs().max()


def test_fp8_backward_raises():
    q = torch.randn(1, 8, 2, 64).to(torch.float8_e4m3fn)
    dout = torch.randn(1, 8, 2, 64)
    lse = torch.zeros(1, 2, 8)
    with pytest.raises(RuntimeError, match="backward of torch.float8_e4m3fn attention is not supported"):
        call("bwd", dout.to(torch.float8_e4m3fn), q, q, q, dout.bfloat16(), lse)
