"""torch_fmha.fp8_attention: quantize_qkv and attention in one op (torch_fmha::fp8_fwd,
csrc/ops/fp8_fwd_op.cpp), on CPU. Bitwise the two calls it replaces; one extern call in a
compiled graph; opcheck; inference only. Its errors: tests/test_errors.py (fp8_fwd_*).
The CUDA twin: tests/gpu/test_quantize_sm90.py::test_fp8_attention_equals_quantize_then_attention."""

from __future__ import annotations

import re

import pytest
import torch

import torch_fmha
from op_defaults import complete
from opcheck_samples import ALL_UTILS

FP8 = torch.float8_e4m3fn


def inputs(b, sq, sk, h, hkv, d, dtype=torch.bfloat16, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, s, n, d, generator=g).to(dtype) for s, n in ((sq, h), (sk, hkv), (sk, hkv)))
    k[0, 1, 0, 3] = 40.0  # an outlier: per-head and per-tensor scales differ
    return q, k, v


def two_calls(q, k, v, granularity="head", rotate=False, out_dtype=None, **kw):
    """What fp8_attention replaces: quantize_qkv (its default v layout), then attention."""
    qkv = torch_fmha.quantize_qkv(q, k, v, granularity, rotate)
    if out_dtype is None:
        out_dtype = q.dtype if q.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
    return torch_fmha.attention(*qkv.tensors, **qkv.descales, out_dtype=out_dtype, return_lse=True, **kw)


CASES = [
    dict(shape=(2, 33, 47, 4, 2, 64)),
    dict(shape=(2, 33, 47, 4, 2, 64), granularity="tensor", causal=True),
    dict(shape=(1, 40, 40, 8, 1, 128), rotate=True, window_size=(9, 3)),
    dict(shape=(2, 17, 70, 2, 2, 128), causal=True, softcap=20.0),
    dict(shape=(1, 20, 33, 4, 2, 256), rotate=True, sinks=torch.tensor([0.5, -1.0, 2.0, -float("inf")])),
    dict(shape=(1, 16, 16, 2, 2, 128), out_dtype=FP8, out_scale=torch.tensor([0.05])),
    dict(shape=(1, 16, 24, 2, 1, 64), dtype=torch.float16, softmax_scale=0.3),
    dict(shape=(1, 9, 12, 2, 2, 128), dtype=torch.float32),
]


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_equals_quantize_then_attention(case):
    kw = dict(case)
    q, k, v = inputs(*kw.pop("shape"), dtype=kw.pop("dtype", torch.bfloat16))
    out, lse = torch_fmha.fp8_attention(q, k, v, return_lse=True, **kw)
    want_out, want_lse = two_calls(q, k, v, **kw)
    assert out.dtype == want_out.dtype == (kw.get("out_dtype") or (q.dtype if q.dtype != torch.float32 else torch.bfloat16))
    assert torch.equal(out.view(torch.uint8), want_out.view(torch.uint8))
    assert torch.equal(lse, want_lse)
    assert out.shape == q.shape and out.is_contiguous()


def test_compiled_graph_has_one_op_call():
    """The point of the op: one extern call per layer in Inductor's code, no quantize_qkv,
    no descale views, positional arguments; the result as eager's, bit for bit."""
    from torch._inductor.utils import run_and_get_code

    def layer(q, k, v):
        return torch_fmha.fp8_attention(q, k, v, causal=True)

    q, k, v = inputs(1, 16, 16, 4, 2, 128)
    out, (code, *_) = run_and_get_code(torch.compile(layer, backend="inductor", fullgraph=True), q, k, v)
    assert torch.equal(out, layer(q, k, v))
    calls = [line.strip() for line in code.splitlines() if "torch.ops.torch_fmha." in line and "(" in line
             and not line.strip().startswith(("#", "assert"))]
    assert [c.split("(")[0].split("= ")[-1] for c in calls] == ["torch.ops.torch_fmha.fp8_fwd.default"], calls
    assert not re.search(r"[(,]\s*[a-z_]+=", calls[0]), calls[0]
    assert "reinterpret_tensor(" not in code.split("def call(")[1]


def test_dynamic_lengths_do_not_recompile():
    counter = torch._dynamo.testing.CompileCounter()
    f = torch.compile(lambda q, k, v: torch_fmha.fp8_attention(q, k, v, causal=True), backend=counter,
                      fullgraph=True, dynamic=True)
    for s in (16, 40, 129):
        q, k, v = inputs(1, s, s, 4, 2, 128, seed=s)
        assert torch.equal(f(q, k, v), torch_fmha.fp8_attention(q, k, v, causal=True))
    assert counter.frame_count == 1


@pytest.mark.parametrize("i", range(3))
def test_opcheck(i):
    shape, kw = [((2, 9, 13, 4, 2, 64), dict(causal=True)),
                 ((1, 16, 16, 2, 2, 128), dict(qk_rotated=True, window_left=5, window_right=0)),
                 ((1, 5, 7, 2, 1, 256), dict(softcap=30.0, sinks=torch.tensor([0.1, 2.0])))][i]
    q, k, v = inputs(*shape)
    args = (q, k, v, i != 1)
    torch.library.opcheck(torch.ops.torch_fmha.fp8_fwd, args, complete("fp8_fwd", len(args), kw),
                          test_utils=ALL_UTILS)


def test_no_backward():
    """Inference on tensors that require grad runs (a model called without no_grad); a backward
    through it fails with the op's sentence instead of leaving q, k, v without a gradient."""
    q, k, v = inputs(1, 8, 8, 2, 2, 64)
    out = torch_fmha.fp8_attention(q, k.requires_grad_(), v)
    assert torch.equal(out, torch_fmha.fp8_attention(q, k.detach(), v))
    with pytest.raises(RuntimeError, match=r"torch_fmha.fp8_fwd: no backward: FP8 attention rounds q, k and v"):
        out.float().sum().backward()
    with torch.no_grad():
        assert not torch_fmha.fp8_attention(q, k, v).requires_grad


def test_python_checks_come_first():
    q, k, v = inputs(1, 8, 8, 2, 2, 64)
    with pytest.raises(ValueError, match="granularity must be 'tensor' or 'head'"):
        torch_fmha.fp8_attention(q, k, v, granularity="channel")
    with pytest.raises(TypeError, match="window_size must be a pair of ints"):
        torch_fmha.fp8_attention(q, k, v, window_size=4)
    with pytest.raises(ValueError, match=r"fp8_attention takes dense q \[B, Sq, H, D\], got shape \[8, 2, 64\]"):
        torch_fmha.fp8_attention(q[0], k[0], v[0])


def test_export_with_dynamic_lengths():
    """torch.export with a dynamic key length: v is packed inside the op, so no layout
    guard on ceil(Sk / 16) (quantize_qkv's default v has to fall back to the standard
    layout there)."""
    class Layer(torch.nn.Module):
        def forward(self, q, k, v):
            return torch_fmha.fp8_attention(q, k, v, causal=True)

    q, k, v = inputs(1, 16, 48, 4, 2, 128)
    s = torch.export.Dim("s", min=1, max=4096)
    ep = torch.export.export(Layer(), (q, k, v), dynamic_shapes=({}, {1: s}, {1: s}))
    for sk in (48, 7, 300):
        q2, k2, v2 = inputs(1, 16, sk, 4, 2, 128, seed=sk)
        assert torch.equal(ep.module()(q2, k2, v2), torch_fmha.fp8_attention(q2, k2, v2, causal=True))


# ---- fp8_varlen_attention (torch_fmha::fp8_varlen_fwd) --------------------------------------------

CU = torch.tensor([0, 5, 5, 42, 62], dtype=torch.int32)  # an empty sequence included
CU_K = torch.tensor([0, 9, 12, 50, 70], dtype=torch.int32)  # other key lengths: q's and k's must not swap


def packed_inputs(h, hkv, d, dtype=torch.bfloat16, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(t, n, d, generator=g).to(dtype) for t, n in ((62, h), (70, hkv), (70, hkv)))
    k[40, 0, 3] = 40.0
    return q, k, v


VARLEN_CASES = [
    dict(hd=(4, 2, 64), causal=True),
    dict(hd=(4, 2, 64), granularity="tensor"),
    dict(hd=(8, 1, 128), rotate=True, window_size=(9, 3), sinks=torch.linspace(-2, 2, 8)),
    dict(hd=(2, 2, 256), causal=True, softcap=30.0, out_dtype=FP8, out_scale=torch.tensor([0.05])),
    dict(hd=(2, 2, 128), dtype=torch.float16, max_seqlen_q=37, max_seqlen_k=38),
    dict(hd=(2, 1, 64), dtype=torch.float32, causal=True),  # fp32 in: bf16 out
]


@pytest.mark.parametrize("case", VARLEN_CASES, ids=[str(i) for i in range(len(VARLEN_CASES))])
def test_varlen_equals_quantize_then_varlen_attention(case):
    kw = dict(case)
    q, k, v = packed_inputs(*kw.pop("hd"), dtype=kw.pop("dtype", torch.bfloat16))
    gran, rot = kw.pop("granularity", "head"), kw.pop("rotate", False)
    out, lse = torch_fmha.fp8_varlen_attention(q, k, v, CU, CU_K, granularity=gran, rotate=rot, return_lse=True,
                                               **kw)
    cu = dict(cu_seqlens_q=CU, cu_seqlens_k=CU_K) if gran == "head" else {}
    qkv = torch_fmha.quantize_qkv(q, k, v, gran, rot, **cu)
    if kw.get("out_dtype") is None:
        kw["out_dtype"] = q.dtype if q.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
    want, want_lse = torch_fmha.varlen_attention(*qkv.tensors, CU, CU_K, **qkv.descales, return_lse=True, **kw)
    assert out.dtype == want.dtype and torch.equal(out.view(torch.uint8), want.view(torch.uint8))
    assert torch.equal(lse, want_lse)


def test_varlen_compiled_graph_has_one_op_call():
    from torch._inductor.utils import run_and_get_code

    def layer(q, k, v, cu_q, cu_k):
        return torch_fmha.fp8_varlen_attention(q, k, v, cu_q, cu_k, causal=True)

    q, k, v = packed_inputs(4, 2, 128)
    out, (code, *_) = run_and_get_code(torch.compile(layer, backend="inductor", fullgraph=True), q, k, v, CU, CU_K)
    assert torch.equal(out, layer(q, k, v, CU, CU_K))
    calls = [line.strip() for line in code.splitlines() if "torch.ops.torch_fmha." in line and "(" in line
             and not line.strip().startswith(("#", "assert"))]
    assert [c.split("(")[0].split("= ")[-1] for c in calls] == ["torch.ops.torch_fmha.fp8_varlen_fwd.default"], calls


def test_varlen_opcheck():
    q, k, v = packed_inputs(4, 2, 64)
    for args, kw in (((q, k, v, CU, CU_K), dict(per_head=True, causal=True)),
                     ((q, k, v, CU, CU_K), dict(per_head=False, qk_rotated=True, window_left=4, window_right=0))):
        torch.library.opcheck(torch.ops.torch_fmha.fp8_varlen_fwd, args, complete("fp8_varlen_fwd", len(args), kw),
                              test_utils=ALL_UTILS)


def test_varlen_no_backward_and_dense_only_messages():
    q, k, v = packed_inputs(2, 2, 64)
    out = torch_fmha.fp8_varlen_attention(q.requires_grad_(), k, v, CU, CU_K)
    with pytest.raises(RuntimeError, match=r"torch_fmha.fp8_varlen_fwd: no backward"):
        out.float().sum().backward()
    with pytest.raises(ValueError, match=r"fp8_varlen_attention takes packed q \[Tq, H, D\]"):
        torch_fmha.fp8_varlen_attention(q[None], k[None], v[None], CU, CU_K)
