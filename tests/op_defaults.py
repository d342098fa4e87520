"""Direct calls of torch_fmha ops that leave arguments out.

The op schemas carry no default values (csrc/ops/registration.cpp says why); the
Python API passes every argument. Tests that call an op directly with only the
arguments they vary fill the rest from OP_DEFAULTS: the values the API passes
when its caller leaves them out."""

from __future__ import annotations

import torch

import torch_fmha  # noqa: F401  (registers the ops whose argument names are read below)

_ATTENTION = dict(softmax_scale=None, causal=False, window_left=-1, window_right=-1)
_DESCALES = dict(q_descale=None, k_descale=None, v_descale=None, out_scale=None, out_dtype=None)

OP_DEFAULTS = {
    "fwd": dict(_ATTENTION, **_DESCALES, softcap=0.0, sinks=None),
    "varlen_fwd": dict(max_seqlen_q=None, max_seqlen_k=None, **_ATTENTION, **_DESCALES,
                       softcap=0.0, sinks=None, seqused_k=None, page_table=None),
    "bwd": dict(dlse=None, **_ATTENTION, softcap=0.0, sinks=None),
    "varlen_bwd": dict(dlse=None, max_seqlen_q=None, max_seqlen_k=None, **_ATTENTION, softcap=0.0,
                       sinks=None),
    "fwd_kvcache": dict(page_table=None, cu_seqlens_q=None, max_seqlen_q=None, **_ATTENTION,
                        softcap=0.0, sinks=None, **_DESCALES, num_splits=0),
    "quantize_fp8": dict(group_size=1, cu_seqlens=None),
    "quantize_qkv": dict(qk_rotated=False, cu_seqlens_q=None, cu_seqlens_k=None, pack_v=False),
    "fp8_fwd": dict(qk_rotated=False, **_ATTENTION, out_scale=None, out_dtype=None, softcap=0.0, sinks=None),
    "fp8_varlen_fwd": dict(max_seqlen_q=None, max_seqlen_k=None, qk_rotated=False, **_ATTENTION, out_scale=None,
                           out_dtype=None, softcap=0.0, sinks=None),
}


# Argument names in schema order, read once here: inside a function that torch.compile
# traces (tests/test_quantize_op.py::test_errors_under_torch_compile) Dynamo cannot
# iterate over a schema's arguments.
_ARG_NAMES = {op: [a.name for a in getattr(torch.ops.torch_fmha, op).default._schema.arguments]
              for op in OP_DEFAULTS}


def op_name(op) -> str:
    """"fwd" for torch.ops.torch_fmha.fwd, its .default, or "fwd"."""
    if isinstance(op, str):
        return op
    name = getattr(op, "_qualified_op_name", None) or op.name()  # packet | overload
    return name.split("::")[1].split(".")[0]


def complete(op, n_positional: int, kwargs: dict) -> dict:
    """kwargs for a call of `op` with n_positional positional arguments: the given ones,
    and OP_DEFAULTS' value of every later argument not given."""
    name = op_name(op)
    later = _ARG_NAMES[name][n_positional:]
    unknown = set(kwargs) - set(later)
    if unknown:
        raise TypeError(f"{name}: {sorted(unknown)} are not arguments after the first {n_positional}")
    return {n: kwargs[n] if n in kwargs else OP_DEFAULTS[name][n] for n in later}


def call(op, *args, **kwargs):
    """op(*args, **kwargs) with the arguments left out filled in from OP_DEFAULTS."""
    name = op_name(op)
    return getattr(torch.ops.torch_fmha, name)(*args, **complete(name, len(args), kwargs))


class _FilledOps:
    """`filled_ops.fwd(q, k, v)`: torch.ops.torch_fmha.fwd with the rest filled in."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: call(name, *args, **kwargs)


filled_ops = _FilledOps()
