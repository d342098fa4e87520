"""Checks and fake implementations of torch_fmha::quantize_fp8 / quantize_qkv.

The checks mirror ``csrc/ops/quantize_op.cpp`` message for message, in the same
order, so a compiled call fails at trace time with the error eager raises
(``tests/test_quantize_op.py`` runs every bad input through both). The value
checks of cu_seqlens read data and are the CPU kernel's alone.

Outputs: FP8 (float8_e4m3fn) tensors with their inputs' shapes, contiguous;
float32 descales, contiguous: quantize_fp8 ``[1]`` per tensor or
``[B, H // group_size]`` per head (B from cu_seqlens for a packed x);
quantize_qkv q's, k's and v's stacked, ``[3, 1]`` or ``[3, B, Hkv]``. With
``pack_v`` (dense only) v's FP8 output is a packed v ``[B, Hkv, D, G, 16]``,
``G = ceil(S / 16)``, contiguous (csrc/quantize.h, csrc/vt_key_order.h).
"""

from __future__ import annotations

import torch

from .checks import shape_str

_DTYPES = (torch.bfloat16, torch.float16, torch.float32, torch.float64)
_LAYOUTS = "[batch, seqlen, heads, head_dim] (dense) or [total, heads, head_dim] (packed)"


def _check(cond, op: str, msg: str) -> None:
    torch._check(cond, lambda: f"{op}: {msg}")


def _check_input(op, name, x):
    _check(x.dim() in (3, 4), op, f"{name} must be {_LAYOUTS}, got shape {shape_str(x.shape)}")
    _check(x.dtype in _DTYPES, op,
           f"{name} has dtype {x.dtype}, expected one of torch.bfloat16, torch.float16, torch.float32, torch.float64")


def _check_cu_seqlens(op, name, cu, x, x_name, per_head):
    if not (per_head and x.dim() == 3):
        _check(cu is None, op, f"{name} applies to per-head scales of packed [total, heads, head_dim] inputs only")
        return
    _check(cu is not None, op, f"{name} is required for per-head scales of packed [total, heads, head_dim] "
           "inputs (one scale per sequence)")
    _check(cu.dtype == torch.int32, op, f"{name} must have dtype torch.int32, got {cu.dtype}")
    _check(cu.dim() == 1 and cu.size(0) >= 1, op,
           f"{name} must be a 1-D tensor [batch + 1] with at least one element, got shape {shape_str(cu.shape)}")
    _check(cu.stride(0) == 1, op, f"{name} must be contiguous, got stride {cu.stride(0)}")
    _check(cu.device == x.device, op,
           f"{name} is on {cu.device} but {x_name} is on {x.device}; all tensors must be on one device")


def _descale_shape(x, per_head, group_size, cu):
    if not per_head:
        return (1,)
    return (x.size(0) if x.dim() == 4 else cu.size(0) - 1, x.size(-2) // group_size)


def check_quantize_fp8(op, x, per_head, group_size=1, cu_seqlens=None):
    _check_input(op, "x", x)
    if per_head:
        _check(group_size >= 1 and x.size(-2) % group_size == 0, op,
               f"group_size must be >= 1 and divide the {x.size(-2)} heads of x, got {group_size}")
    _check_cu_seqlens(op, "cu_seqlens", cu_seqlens, x, "x", per_head)


def check_quantize_qkv(op, q, k, v, per_head, qk_rotated=False, cu_seqlens_q=None, cu_seqlens_k=None,
                       pack_v=False):
    _check_input(op, "q", q)
    for name, t in (("k", k), ("v", v)):
        _check_input(op, name, t)
        _check(t.dim() == q.dim(), op, f"{name} must have q's rank {q.dim()}, got shape {shape_str(t.shape)}")
        _check(t.device == q.device, op,
               f"{name} is on {t.device} but q is on {q.device}; all tensors must be on one device")
    _check(not pack_v or v.dim() == 4, op,
           "pack_v applies to dense [batch, seqlen, heads, head_dim] inputs only, "
           f"got v of shape {shape_str(v.shape)}")
    _check(k.shape == v.shape, op,
           f"k and v must have the same shape, got k {shape_str(k.shape)} and v {shape_str(v.shape)}")
    if q.dim() == 4:
        _check(k.size(0) == q.size(0), op, f"k has batch size {k.size(0)} but q has batch size {q.size(0)}")
    _check(k.size(-1) == q.size(-1), op, f"k has head_dim {k.size(-1)} but q has head_dim {q.size(-1)}")
    h, hkv = q.size(-2), k.size(-2)
    _check(hkv > 0 and h % hkv == 0, op, f"q has {h} heads, which is not a multiple of the {hkv} heads of k and v")
    _check_cu_seqlens(op, "cu_seqlens_q", cu_seqlens_q, q, "q", per_head)
    _check_cu_seqlens(op, "cu_seqlens_k", cu_seqlens_k, k, "k", per_head)
    if cu_seqlens_q is not None:
        _check(cu_seqlens_k.size(0) == cu_seqlens_q.size(0), op,
               f"cu_seqlens_k has {cu_seqlens_k.size(0)} elements but cu_seqlens_q has "
               f"{cu_seqlens_q.size(0)}; both must have batch + 1")


def quantize_fp8_fake(x, per_head, group_size, cu_seqlens):
    check_quantize_fp8("torch_fmha.quantize_fp8", x, per_head, group_size, cu_seqlens)
    return (x.new_empty(x.shape, dtype=torch.float8_e4m3fn),
            x.new_empty(_descale_shape(x, per_head, group_size, cu_seqlens), dtype=torch.float32))


def packed_v_fp8(v):
    """The op's pack_v output for a dense v [B, S, Hkv, D]: FP8 [B, Hkv, D, G, 16],
    G = ceil(S / 16), contiguous (csrc/ops/quantize_op.cpp, add_tensor). With a symbolic S,
    tracing's memory-format test of this output guards on G != 1 (torch.export refuses that
    guard when S may be <= 16; quantize_qkv's default avoids pack_v there)."""
    b, s, hkv, d = v.shape
    return v.new_empty((b, hkv, d, (s + 15) // 16, 16), dtype=torch.float8_e4m3fn)


def quantize_qkv_fake(q, k, v, per_head, qk_rotated, cu_seqlens_q, cu_seqlens_k,
                      pack_v):
    check_quantize_qkv("torch_fmha.quantize_qkv", q, k, v, per_head, qk_rotated, cu_seqlens_q, cu_seqlens_k,
                       pack_v)
    q8, k8 = (t.new_empty(t.shape, dtype=torch.float8_e4m3fn) for t in (q, k))
    v8 = packed_v_fp8(v) if pack_v else v.new_empty(v.shape, dtype=torch.float8_e4m3fn)
    return q8, k8, v8, q.new_empty((3, *_descale_shape(k, per_head, 1, cu_seqlens_k)), dtype=torch.float32)


def register() -> None:
    """Attach the fake kernels to the C++ ops (idempotent per process)."""
    torch.library.register_fake("torch_fmha::quantize_fp8", quantize_fp8_fake)
    torch.library.register_fake("torch_fmha::quantize_qkv", quantize_qkv_fake)
