"""The ops' autograd kernel is C++ (csrc/ops/autograd.cpp) and the API calls the op
directly.

When nothing needs a gradient (grad mode off, or no tensor argument requires
grad) the Autograd kernel redispatches below autograd in C++: a call, eager or
from a compiled graph (which calls the op through the Autograd key under
no_grad), runs no Python below ``attention``. (The Python kernel of
``torch.library.register_autograd`` it replaces cost ~8 us per call of host
time on a 2-core CPU to find out that nothing was to be recorded.) These tests
pin that no Python runs on the op's path, that a gradient is recorded exactly
when the old kernel recorded one, and that results do not change.
"""

from __future__ import annotations

import re
import sys

import pytest
import torch

import torch_fmha
from op_defaults import call
from inputs import dense_inputs, varlen_inputs


class _PythonCallsBelow:
    """Python functions entered while calling ``fn`` (its own frame excluded)."""

    def __init__(self, fn_name):
        self.fn_name, self.names = fn_name, []

    def __enter__(self):
        depth = [0]

        def prof(frame, event, arg):
            if event != "call":
                return
            name = frame.f_code.co_name
            if depth[0] and name not in ("__exit__",):
                self.names.append(name)
            if name == self.fn_name:
                depth[0] += 1

        self._prev = sys.getprofile()
        sys.setprofile(prof)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._prev)


def _op_python_calls(fn):
    """Python frames entered below the op call made in ``fn`` (OpOverload.__call__ excluded)."""
    with _PythonCallsBelow("__call__") as probe:
        result = fn()
    return result, probe.names


def _dense(dtype):
    return dense_inputs(2, 9, 11, 4, 2, 64, dtype)  # q, k, v, {descales} (FP8 only)


def _call_op(q, k, v, descales, **kw):
    with torch.no_grad():
        return call("fwd", q, k, v, **descales, **kw)


def test_the_probe_sees_python_kernels():
    # A Python kernel on the op's path (here a dispatch mode's) shows up in the probe.
    from torch.utils._python_dispatch import TorchDispatchMode

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    q, k, v, descales = _dense(torch.float8_e4m3fn)
    with Mode():
        _, below = _op_python_calls(lambda: torch_fmha.attention(q, k, v, **descales))
    assert "__torch_dispatch__" in below


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("mode", ["grad_enabled", "no_grad", "inference_mode"])
def test_dense_no_grad_runs_no_python_below_the_op(dtype, mode):
    q, k, v, descales = _dense(dtype)
    ctx = {"grad_enabled": torch.enable_grad, "no_grad": torch.no_grad,
           "inference_mode": torch.inference_mode}[mode]
    with ctx():
        (out, lse), below = _op_python_calls(
            lambda: torch_fmha.attention(q, k, v, causal=True, return_lse=True, **descales))
    assert below == []
    want_out, want_lse = _call_op(q, k, v, descales, causal=True)
    assert torch.equal(out.float(), want_out.float()) and torch.equal(lse, want_lse)
    assert out.grad_fn is None and not out.requires_grad


def test_op_through_autograd_key_under_no_grad_runs_no_python():
    # What a compiled inference graph does: the op itself, through the Autograd key.
    q, k, v, descales = _dense(torch.float8_e4m3fn)
    args = (q, k, v, None, False, -1, -1, descales["q_descale"], descales["k_descale"],
            descales["v_descale"], None, None, 0.0, None)
    with torch.no_grad():
        _, below = _op_python_calls(lambda: torch.ops.torch_fmha.fwd.default(*args))
    assert below == []


def test_varlen_no_grad_runs_no_python_below_the_op():
    q, k, v, cu_q, cu_k, descales = varlen_inputs([3, 0, 7], [5, 2, 0], 4, 2, 64, torch.float8_e4m3fn)
    (out, lse), below = _op_python_calls(lambda: torch_fmha.varlen_attention(
        q, k, v, cu_q, cu_k, window_size=(3, 1), return_lse=True, **descales))
    assert below == []
    with torch.no_grad():
        want_out, want_lse = call("varlen_fwd", q, k, v, cu_q, cu_k, window_left=3, window_right=1,
                                  **descales)
    assert torch.equal(out.float(), want_out.float()) and torch.equal(lse, want_lse)


@pytest.mark.parametrize("which", ["q", "k", "v"])
def test_requires_grad_records_the_cpp_autograd_node(which):
    q, k, v, _ = _dense(torch.float64)
    t = dict(q=q, k=k, v=v)
    t[which].requires_grad_(True)
    out, below = _op_python_calls(lambda: torch_fmha.attention(t["q"], t["k"], t["v"], window_size=[2, 1]))
    assert below == []
    assert out.grad_fn is not None and "torch_fmha::FwdFunction" in out.grad_fn.name()
    (g,) = torch.autograd.grad(out.sum(), t[which])
    assert g.shape == t[which].shape and torch.isfinite(g).all()
    with torch.no_grad():
        out = torch_fmha.attention(t["q"], t["k"], t["v"])
    assert out.grad_fn is None


def test_varlen_requires_grad_records_the_cpp_autograd_node():
    q, k, v, cu_q, cu_k, _ = varlen_inputs([3, 0, 7], [5, 2, 4], 4, 2, 64, torch.float64)
    q.requires_grad_(True)
    out, lse = torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, 7, 5, causal=True, return_lse=True)
    assert "torch_fmha::VarlenFwdFunction" in out.grad_fn.name()
    (g,) = torch.autograd.grad(out.sum() + lse.sum(), q)
    assert g.shape == q.shape and torch.isfinite(g).all()


def test_descale_requiring_grad_is_seen():
    # Any tensor argument counts, as in the register_autograd kernel's check.
    q, k, v, descales = _dense(torch.float8_e4m3fn)
    descales["v_descale"] = descales["v_descale"].clone().requires_grad_(True)
    out = torch_fmha.attention(q, k, v, **descales)
    assert out.requires_grad and out.grad_fn is not None
    with pytest.raises(RuntimeError, match="backward of torch.float8_e4m3fn attention is not supported"):
        out.float().sum().backward()


def test_window_default_and_explicit_agree():
    q, k, v, _ = _dense(torch.float32)
    base = torch_fmha.attention(q, k, v)
    assert torch.equal(base, torch_fmha.attention(q, k, v, window_size=(-1, -1)))
    assert torch.equal(base, torch_fmha.attention(q, k, v, window_size=[-1, -1]))
    with pytest.raises(TypeError, match="window_size must be a pair of ints"):
        torch_fmha.attention(q, k, v, window_size=(1.0, 2))


def test_compiled_fullgraph_no_grad_and_grad():
    # fullgraph holds with and without grad, and the compiled results equal eager.
    q, k, v, descales = _dense(torch.float8_e4m3fn)

    def f(q, k, v, qd, kd, vd):
        return torch_fmha.attention(q, k, v, q_descale=qd, k_descale=kd, v_descale=vd)

    torch._dynamo.reset()
    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    args = (q, k, v, descales["q_descale"], descales["k_descale"], descales["v_descale"])
    assert torch.equal(cf(*args).float(), f(*args).float())
    with torch.inference_mode():
        assert torch.equal(cf(*args).float(), f(*args).float())

    q64, k64, v64, _ = _dense(torch.float64)
    q64.requires_grad_(True)
    cg = torch.compile(lambda q, k, v: torch_fmha.attention(q, k, v, causal=True), fullgraph=True,
                       backend="aot_eager")
    (g,) = torch.autograd.grad(cg(q64, k64, v64).sum(), q64)
    (want,) = torch.autograd.grad(torch_fmha.attention(q64, k64, v64, causal=True).sum(), q64)
    torch.testing.assert_close(g, want)


def test_schema_order_of_the_positional_fast_path():
    # api.py passes the op arguments positionally (kwargs parsing costs ~3 us a call);
    # this pins the schema order it relies on.
    names = lambda op: [a.name for a in op.default._schema.arguments]  # noqa: E731
    assert names(torch.ops.torch_fmha.fwd) == [
        "q", "k", "v", "softmax_scale", "causal", "window_left", "window_right",
        "q_descale", "k_descale", "v_descale", "out_scale", "out_dtype", "softcap", "sinks"]
    assert names(torch.ops.torch_fmha.varlen_fwd) == [
        "q", "k", "v", "cu_seqlens_q", "cu_seqlens_k", "max_seqlen_q", "max_seqlen_k",
        "softmax_scale", "causal", "window_left", "window_right",
        "q_descale", "k_descale", "v_descale", "out_scale", "out_dtype",
        "softcap", "sinks", "seqused_k", "page_table"]


@pytest.mark.parametrize("out_dtype, expected", [(torch.bfloat16, None), (None, None),
                                                 (torch.float16, torch.float16)])
def test_default_out_dtype_is_none_in_exported_graphs(out_dtype, expected):
    """The API passes out_dtype=None for the default (api._op_out_dtype): an exported
    graph then carries None, no ScalarType value, for the common FP8 -> bf16 path; a value
    AOTInductor in torch 2.11 would hand to the op renumbered (pytorch/pytorch#169157)."""
    class M(torch.nn.Module):
        def forward(self, q, k, v):
            return torch_fmha.attention(q, k, v, out_dtype=out_dtype)

    q = torch.randn(1, 8, 2, 64).to(torch.float8_e4m3fn)
    ep = torch.export.export(M(), (q, q, q))
    (node,) = [n for n in ep.graph.nodes if n.target is torch.ops.torch_fmha.fwd.default]
    args = dict(zip([a.name for a in torch.ops.torch_fmha.fwd.default._schema.arguments], node.args))
    args.update(node.kwargs)
    assert args.get("out_dtype") == expected
    assert ep.module()(q, q, q).dtype == (out_dtype or torch.bfloat16)


def test_compiled_graph_calls_the_ops_positionally():
    """The schemas carry no defaults (csrc/ops/registration.cpp): Inductor's wrapper then
    calls each op with its arguments positionally. With defaults it spelled every
    trailing default as a keyword (`out_scale=None, out_dtype=None, softcap=0.0,
    sinks=None` on each fwd), and keyword parsing took 16.5k (fwd's) and 24k (with
    quantize_qkv's) of a compiled layer's 228.6k host instructions (CPU twin, callgrind).
    Each call is one line of the generated code; a call wrapped over lines would be
    checked by its first line only."""
    from torch._inductor.utils import run_and_get_code

    def layer(q, k, v):
        qkv = torch_fmha.quantize_qkv(q, k, v)
        return torch_fmha.attention(*qkv.tensors, causal=True, **qkv.descales)

    q, k, v = (torch.randn(1, 16, h, 64) for h in (4, 2, 2))
    out, (code, *_) = run_and_get_code(torch.compile(layer, backend="inductor", fullgraph=True), q, k, v)
    torch.testing.assert_close(out.float(), layer(q, k, v).float(), rtol=0, atol=0)
    calls = [line.strip() for line in code.splitlines() if "torch.ops.torch_fmha." in line and "(" in line
             and not line.strip().startswith(("#", "assert"))]
    assert {c.split("(")[0].split("= ")[-1] for c in calls} == {
        "torch.ops.torch_fmha.quantize_qkv.default", "torch.ops.torch_fmha.fwd.default"}, calls
    for c in calls:
        # keywords would show as name=value at the call's top level (reinterpret_tensor has none)
        assert not re.search(r"[(,]\s*[a-z_]+=", c), f"a keyword argument in the compiled call: {c}"
