"""An FP8 static KV cache for ``attn_implementation="torch_fmha_fp8"`` (issue 15).

    from torch_fmha.integrations.transformers import Fp8StaticCache
    cache = Fp8StaticCache(config=model.config, max_cache_len=prompt_len + new_tokens)
    model.generate(ids, past_key_values=cache, max_new_tokens=new_tokens, ...)

transformers' own ``StaticCache`` keeps K and V in the model's dtype, so the
FP8 attention function has to quantize the whole cache on every decode step
(``transformers._static``: a bf16 read of the cache plus an FP8 write and read,
several times the bytes the FP8 decode kernel itself reads). This cache stores
what the kernel reads and nothing else:

- ``keys`` / ``values``: ``float8_e4m3fn`` ``[B, Hkv, max_cache_len, D]``
  (StaticLayer's layout; the op takes the ``[B, max_cache_len, Hkv, D]``
  transposed view, no copy), written once per token when the attention layer
  calls ``update``;
- ``k_descale`` / ``v_descale``: float32 ``[B, Hkv]``, one per (batch, KV
  head), the granularity ``quantize_qkv(..., "head")`` uses.
- K is stored Hadamard-rotated (``torch_fmha.rotate``, ``x @ H / sqrt(D)``,
  when D is a power of two: the rotation the integration applies to q and k),
  so the attention function rotates only q and ``q . k`` is unchanged.

Scales are fixed at the first write (the prefill): ``descale = amax * HEADROOM
/ 448`` per (batch, KV head) over the prefill's finite values. e4m3 is
floating point, so a headroom of 4x costs almost nothing in precision (3
mantissa bits: the same 2^-4 relative rounding from 448 down to 2^-6, where the
subnormals start; mapping the prefill's amax to 112 instead of 448 moves that
threshold from 2^15 to 2^13 below it). A later value beyond ``HEADROOM x`` the
prefill's amax saturates at +-448 (clamped). A NaN stays NaN and a +-Inf
becomes NaN, as in :func:`torch_fmha.quantize_fp8` (e4m3fn has no infinity;
saturating it would hide it), so non-finite K / V reach the rows that attend
to them (the ops' NaN contract). The first write is found on the device (the layer's
``cumulative_length == 0``, a ``torch.where``, no host sync, no Python branch on
data), so one compiled decode graph serves every step and ``reset()`` re-arms it.

``update`` returns :class:`Fp8CacheTensor` pairs (the FP8 tensor and its
descale) instead of tensors: transformers' attention layers pass what
``update`` returns straight to the attention function (Llama, Mistral, Qwen:
``key_states, value_states = past_key_values.update(...)``), and that is the only
channel from the cache to it (``past_key_values`` is not among the attention
function's kwargs). So this cache works with ``"torch_fmha_fp8"`` only;
``"torch_fmha"`` refuses it with an error, other attention functions fail on the
non-tensor.

Sliding-window layers (gpt-oss, Gemma-2, Mistral) get
:class:`Fp8StaticSlidingWindowLayer`, transformers' ``StaticSlidingWindowLayer``
in FP8: ``min(w, max_cache_len)`` slots in position order, rolled left by one
per token once full. Before it is full its slots go to the op with
``cache_seqlens`` as a full-attention layer's; once a step fills it past its
size, or it is full, ``update`` returns exactly the keys the step's windows
need (the slots, or the kept slots and the new tokens), which the attention
function reads as written keys with the window (transformers.py). The descales
are fixed at the first write, as in the full-attention layers. Other layer
types raise; chunked-attention layers, which transformers also stores as
``StaticSlidingWindowLayer``, get this layer too, and the mask function then
refuses chunked attention.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from transformers.cache_utils import StaticCache, StaticLayer, StaticSlidingWindowLayer

from torch_fmha.quantize import rotate

# How far above the prefill's amax a later K/V value can go before it saturates at +-448.
# An int: a Python float read inside a traced function can become a symbolic graph input
# (see torch_fmha/quantize.py).
HEADROOM = 4
_FP8 = torch.float8_e4m3fn


def keys_are_rotated(head_dim: int) -> bool:
    """The integration's rule (transformers._quantize): q and k are Hadamard-rotated when
    the head dim is a power of two. One definition for the cache's K and the query."""
    return head_dim > 0 and head_dim & (head_dim - 1) == 0


class Fp8CacheTensor(NamedTuple):
    """What :meth:`Fp8StaticLayer.update` returns for K and for V: the whole FP8 cache of
    the layer and its descales (``x ~= data.float() * descale[b, h]``)."""

    data: torch.Tensor  # float8_e4m3fn [B, Hkv, max_cache_len, D]
    descale: torch.Tensor  # float32 [B, Hkv]


def _quantize_written(x: torch.Tensor, descale: torch.Tensor, first_write: torch.Tensor) -> torch.Tensor:
    """x [B, Hkv, S, D] (the new tokens only) -> FP8 with descale [B, Hkv]; on the first write
    the descale is set (in place) from x's finite amax times HEADROOM, later writes keep it."""
    finite = torch.where(torch.isfinite(x), x.abs(), torch.zeros((), dtype=x.dtype, device=x.device))
    amax = finite.amax(dim=(-2, -1)).float()
    fresh = (amax * HEADROOM / 448).clamp_min(torch.finfo(torch.float32).tiny)
    descale.copy_(torch.where(first_write, fresh, descale))
    y = (x.float() / descale[:, :, None, None]).clamp(-448, 448)
    return torch.where(torch.isinf(x), torch.full_like(y, torch.nan), y).to(_FP8)  # +-Inf -> NaN


class Fp8StaticLayer(StaticLayer):
    """A full-attention StaticLayer holding float8_e4m3fn K (rotated) and V with
    per-(batch, KV head) float32 descales fixed at the first write (module docstring)."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.batch_size, self.num_heads = key_states.shape[:2]
        self.k_head_dim, self.v_head_dim = key_states.shape[-1], value_states.shape[-1]
        shape = (self.batch_size, self.num_heads, self.max_cache_len)
        self.keys = torch.zeros(shape + (self.k_head_dim,), dtype=_FP8, device=self.device)
        self.values = torch.zeros(shape + (self.v_head_dim,), dtype=_FP8, device=self.device)
        self.k_descale = torch.ones(shape[:2], dtype=torch.float32, device=self.device)
        self.v_descale = torch.ones(shape[:2], dtype=torch.float32, device=self.device)
        self.cumulative_length = self.cumulative_length.to(self.device)
        # As StaticLayer: fixed addresses for compiled graphs / CUDA graphs, not while tracing.
        if not torch.compiler.is_compiling():
            for t in (self.keys, self.values, self.k_descale, self.v_descale, self.cumulative_length):
                torch._dynamo.mark_static_address(t)
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Quantize the new K (rotated) / V ``[B, Hkv, S, D]`` into their slots and return
        ``(Fp8CacheTensor(keys, k_descale), Fp8CacheTensor(values, v_descale))``: the whole
        cache, read as is by the attention function."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        first_write = self.cumulative_length == 0
        positions = torch.arange(key_states.shape[-2], device=self.device) + self.cumulative_length
        self.cumulative_length.add_(key_states.shape[-2])
        if keys_are_rotated(key_states.shape[-1]):
            key_states = rotate(key_states)
        k8 = _quantize_written(key_states, self.k_descale, first_write)
        v8 = _quantize_written(value_states, self.v_descale, first_write)
        # index_copy_ has no float8 kernel (CPU); the same bytes through a uint8 view.
        self.keys.view(torch.uint8).index_copy_(2, positions, k8.view(torch.uint8))
        self.values.view(torch.uint8).index_copy_(2, positions, v8.view(torch.uint8))
        return Fp8CacheTensor(self.keys, self.k_descale), Fp8CacheTensor(self.values, self.v_descale)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: the descales follow their rows."""
        if self.is_initialized:
            beam_idx = beam_idx.to(self.device)
            for name in ("keys", "values", "k_descale", "v_descale"):
                getattr(self, name).copy_(getattr(self, name).index_select(0, beam_idx))


def _bytes(t: torch.Tensor) -> torch.Tensor:
    """The uint8 view of an FP8 tensor: index_copy_, roll and cat have no float8 kernels on CPU."""
    return t.view(torch.uint8)


class Fp8StaticSlidingWindowLayer(StaticSlidingWindowLayer):
    """transformers' StaticSlidingWindowLayer with float8_e4m3fn K (rotated) and V and
    per-(batch, KV head) descales fixed at the first write (module docstring). The same
    phases, decided on the same Python length (cumulative_length_int), so the same keys
    reach the attention function:
    - not full after this step: the new tokens go to their slots; returns the slots;
    - full, one new token: the slots roll left by one, the token takes the last; returns
      the slots (the window's w keys);
    - filling past the slots, or full with several new tokens: returns the kept keys (all
      written ones, or the last w - 1) and the new ones, and keeps the last w as slots."""

    lazy_initialization = Fp8StaticLayer.lazy_initialization
    reorder_cache = Fp8StaticLayer.reorder_cache

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        filled = self.cumulative_length_int
        full = filled >= self.max_cache_len
        self.cumulative_length_int += new
        first_write = torch.full((), filled == 0, dtype=torch.bool, device=self.device)
        if keys_are_rotated(key_states.shape[-1]):
            key_states = rotate(key_states)
        k8 = _quantize_written(key_states, self.k_descale, first_write)
        v8 = _quantize_written(value_states, self.v_descale, first_write)
        slots = (self.keys, self.values)
        if not full and filled + new <= self.max_cache_len:
            positions = torch.arange(new, device=self.device) + self.cumulative_length
            self.cumulative_length.add_(new)
            for slot, x in zip(slots, (k8, v8)):
                _bytes(slot).index_copy_(2, positions, _bytes(x))
            return Fp8CacheTensor(self.keys, self.k_descale), Fp8CacheTensor(self.values, self.v_descale)
        if full and new == 1:
            # A tensor index for the last slot, as transformers' layer (pytorch#159855: a slice
            # there breaks under CUDA graphs); made on the device (torch.full), not copied from
            # the host, which would block every decode step.
            last = torch.full((1,), -1, dtype=torch.long, device=self.device)
            for slot, x in zip(slots, (k8, v8)):
                rolled = _bytes(slot).roll(-1, dims=-2)
                rolled[:, :, last] = _bytes(x)
                _bytes(slot).copy_(rolled)  # in place: the slots keep their static address
            return Fp8CacheTensor(self.keys, self.k_descale), Fp8CacheTensor(self.values, self.v_descale)
        kept = slice(1, None) if full else slice(0, filled)
        whole = []
        for slot, x in zip(slots, (k8, v8)):
            keys = torch.cat((_bytes(slot)[:, :, kept], _bytes(x)), dim=-2)
            _bytes(slot).copy_(keys[:, :, -self.max_cache_len:])
            whole.append(keys.view(_FP8))
        return Fp8CacheTensor(whole[0], self.k_descale), Fp8CacheTensor(whole[1], self.v_descale)


class Fp8StaticCache(StaticCache):
    """transformers' StaticCache with every full-attention layer an :class:`Fp8StaticLayer`
    and every sliding-window layer an :class:`Fp8StaticSlidingWindowLayer`: float8_e4m3fn
    K (Hadamard-rotated) and V, per-(batch, KV head) descales fixed at prefill from its amax
    times ``HEADROOM`` (4); later values beyond that saturate at +-448. For
    ``attn_implementation="torch_fmha_fp8"`` only; pass it as ``past_key_values=`` to
    ``generate`` or the model's forward. Same arguments as StaticCache."""

    def __init__(self, config, max_cache_len: int, offloading: bool = False, offload_only_non_sliding: bool = True,
                 **kwargs):
        super().__init__(config, max_cache_len, offloading, offload_only_non_sliding, **kwargs)
        layers = []
        for i, layer in enumerate(self.layers):
            if type(layer) is StaticLayer:
                layers.append(Fp8StaticLayer(max_cache_len=max_cache_len))
            elif type(layer) is StaticSlidingWindowLayer:
                # layer.max_cache_len is already min(sliding_window, max_cache_len).
                layers.append(Fp8StaticSlidingWindowLayer(max_cache_len=max_cache_len,
                                                          sliding_window=layer.max_cache_len))
            else:
                raise NotImplementedError(
                    f"torch_fmha Fp8StaticCache: layer {i} is a {type(layer).__name__}; only full-attention "
                    "(StaticLayer) and sliding-window (StaticSlidingWindowLayer) layers are supported")
        self.layers = layers


__all__ = ["HEADROOM", "Fp8CacheTensor", "Fp8StaticCache", "Fp8StaticLayer", "Fp8StaticSlidingWindowLayer",
           "keys_are_rotated"]
