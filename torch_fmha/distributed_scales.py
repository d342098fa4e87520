"""Global FP8 scales for context parallelism: every rank quantizes its shard with the scales of
the whole (unsharded) tensor, from an all-reduce MAX of the amax, so the context-parallel result
is the one of the single-GPU op on the whole tensor quantized by :func:`torch_fmha.quantize_fp8`.

Dense shards ``[B, S_local, H, D]``: :func:`global_descale`, :func:`quantize_fp8_global`.
Packed shards ``[R, H, D]`` (:func:`torch_fmha.distributed.shard_varlen` layout):
:func:`global_descale_varlen`, :func:`quantize_fp8_global_varlen`; the amax skips the padding
rows, whatever they hold. Same amax and scale rules as the quantizer (amax over the finite
elements). One all-reduce each, no host sync.
"""

from __future__ import annotations

import torch

from .distributed import _c10d, _group_name, _group_rank_world, _wait
from .distributed_varlen import _check_cu_seqlens, _layout, _local_rows_info
from .quantize import _check_granularity

# The quantizer's scale rules (torch_fmha/quantize.py module doc, csrc/quantize.h), as tensor
# ops: its op computes the amax itself, and here the amax is the all-reduced one. The
# tests check x_fp8 and the descale bitwise against torch_fmha.quantize_fp8 on the whole tensor.


def _finite_abs(x: torch.Tensor) -> torch.Tensor:
    """|x| with NaN and ±Inf replaced by 0 (an amax over it ignores them), in x's dtype."""
    return x.abs().nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)


def _descale(amax: torch.Tensor) -> torch.Tensor:
    # IEEE division, as the quantize op (csrc/quantize.h: descale_from_amax). Not a Python
    # float divisor: on CUDA, torch computes x / <CPU scalar> as x * (1 / scalar), which
    # differs in the last bit for some amax (seen on 2 H100s: the global descales were not
    # bitwise quantize_fp8's). A 0-dim tensor on x's device takes the true division.
    fp8_max = torch.full((), torch.finfo(torch.float8_e4m3fn).max, dtype=torch.float32,
                         device=amax.device)
    return amax.float().clamp_min(torch.finfo(torch.float32).tiny) / fp8_max


def _to_fp8(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x / scale`` (float32 scale) rounded to e4m3fn; NaN and ±Inf -> NaN."""
    nan = float("nan")
    return (x / scale).nan_to_num(nan=nan, posinf=nan, neginf=nan).to(torch.float8_e4m3fn)


def _check_group_size(heads: int, group_size: int) -> None:
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1 \
            or heads % group_size:
        raise ValueError(f"group_size must divide the {heads} heads of x, got {group_size}")


def _all_reduce_max(amax: torch.Tensor, group) -> torch.Tensor:
    return _wait(_c10d.all_reduce(amax.contiguous(), "max", _group_name(group)))


def global_descale(x: torch.Tensor, granularity: str = "tensor", *, group_size: int = 1,
                   group=None) -> torch.Tensor:
    """FP8 descale of a sharded tensor from the amax over all ranks (an all-reduce MAX).

    Same rule as :func:`torch_fmha.quantize_fp8` on the unsharded tensor (amax over
    the finite elements): ``"tensor"`` -> ``[1]``; ``"head"`` -> ``[B, H // group_size]``
    for ``x [B, S_local, H, D]``. Every rank gets the same descale.
    """
    _check_granularity(granularity)
    if granularity == "tensor":
        amax = _finite_abs(x).amax().float().reshape(1)
    else:
        if x.dim() != 4:
            raise ValueError(f"granularity='head' needs x [B, S, H, D], got shape {list(x.shape)}")
        heads = x.size(2)
        _check_group_size(heads, group_size)
        amax = _finite_abs(x).amax(dim=(1, 3)).float()
        amax = amax.view(x.size(0), heads // group_size, group_size).amax(-1)
    return _descale(_all_reduce_max(amax, group))


def quantize_fp8_global(x: torch.Tensor, granularity: str = "tensor", *, group_size: int = 1,
                        group=None):
    """``(x_fp8, descale)`` with one scale set for all ranks (see :func:`global_descale`).

    Each rank's ``x_fp8`` is bitwise its shard of ``torch_fmha.quantize_fp8`` of
    the whole tensor (tests/test_distributed.py checks it).
    """
    descale = global_descale(x, granularity, group_size=group_size, group=group)
    if granularity == "tensor":
        scale_b = descale
    else:
        scale_b = descale.repeat_interleave(group_size, dim=1)[:, None, :, None]
    return _to_fp8(x, scale_b), descale


def _varlen_rows(x: torch.Tensor, cu_seqlens: torch.Tensor, group):
    if x.dim() != 3:
        raise ValueError(f"x must be a packed [R, H, D] shard, got shape {list(x.shape)}")
    _check_cu_seqlens(cu_seqlens, "cu_seqlens", x.device)
    rank, world = _group_rank_world(group)
    return _local_rows_info(_layout(cu_seqlens, world, rank), x.size(0), world, rank, x.device)


def global_descale_varlen(x: torch.Tensor, cu_seqlens: torch.Tensor, granularity: str = "tensor",
                          *, group_size: int = 1, group=None) -> torch.Tensor:
    """:func:`global_descale` for a packed shard ``x [R, H, D]`` of the batch ``cu_seqlens``
    (global, int32 ``[B + 1]``): ``"tensor"`` -> ``[1]``, ``"head"`` -> ``[B, H // group_size]``,
    equal to ``torch_fmha.quantize_fp8(x_global, granularity, group_size=...,
    cu_seqlens=cu_seqlens)``'s descale. Padding rows do not count."""
    _check_granularity(granularity)
    seq, _, real = _varlen_rows(x, cu_seqlens, group)
    row_amax = _finite_abs(x).amax(dim=-1).float()  # [R, H]
    row_amax = torch.where(real[:, None], row_amax, torch.zeros_like(row_amax))
    if granularity == "tensor":
        amax = row_amax.amax().reshape(1)
    else:
        heads = x.size(1)
        _check_group_size(heads, group_size)
        nb = cu_seqlens.size(0) - 1
        amax = torch.zeros(nb, heads, device=x.device, dtype=torch.float32)
        amax = amax.scatter_reduce(0, seq[:, None].expand(-1, heads), row_amax, "amax")
        amax = amax.view(nb, heads // group_size, group_size).amax(-1)
    return _descale(_all_reduce_max(amax, group))


def quantize_fp8_global_varlen(x: torch.Tensor, cu_seqlens: torch.Tensor,
                               granularity: str = "tensor", *, group_size: int = 1, group=None):
    """``(x_fp8, descale)`` for a packed shard (see :func:`global_descale_varlen`). Each rank's
    ``x_fp8`` is bitwise :func:`torch_fmha.distributed.shard_varlen` of
    ``torch_fmha.quantize_fp8`` of the whole packed tensor (zero padding rows stay zero)."""
    descale = global_descale_varlen(x, cu_seqlens, granularity, group_size=group_size, group=group)
    if granularity == "tensor":
        return _to_fp8(x, descale), descale
    seq, _, _ = _varlen_rows(x, cu_seqlens, group)
    per_head = descale.repeat_interleave(group_size, dim=1)  # [B, H]
    return _to_fp8(x, per_head.index_select(0, seq)[:, :, None]), descale
