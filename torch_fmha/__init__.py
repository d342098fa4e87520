"""torch_fmha: FP8 fused multi-head attention for Hopper, as torch.library ops.

    import torch_fmha
    out = torch_fmha.attention(q, k, v, causal=True, q_descale=..., ...)
    out = torch_fmha.varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, ...)
    out = torch_fmha.attention_with_kvcache(q, k_cache, v_cache, cache_seqlens, ...)

The ops (``torch.ops.torch_fmha.fwd``, ``varlen_fwd``, ``bwd``,
``varlen_bwd``) are defined once in C++; importing this package compiles them
on first use (cached) with their autograd (csrc/ops/autograd.cpp), and registers
their fake implementations.
"""

from __future__ import annotations

from . import _build

build_info = _build.build_and_load()

from torch_fmha.meta import fake as _fake  # noqa: E402  (needs the ops loaded)
from torch_fmha.meta import kvcache as _fake_kvcache  # noqa: E402
from torch_fmha.meta import quantize as _fake_quantize  # noqa: E402

from .api import attention, attention_with_kvcache, fp8_attention, fp8_varlen_attention, varlen_attention  # noqa: E402
from .quantize import FP8_MAX, QuantizedQKV, quantize_fp8, quantize_qkv, unpack_v  # noqa: E402

_fake.register()
_fake_quantize.register()
_fake_kvcache.register()


def sm90_unavailable_reason() -> str | None:
    """None when this process can run the SM90 kernels, else why not (for skips and CLIs)."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (the SM90 kernels need an H100/H200)"
    if torch.cuda.get_device_capability() != (9, 0):
        return f"{torch.cuda.get_device_name()} is not SM90 (the kernels are Hopper-only)"
    if not build_info.cuda:
        return f"the CUDA kernels were not built: {build_info.cuda_reason}"
    return None


__all__ = ["attention", "fp8_attention", "varlen_attention", "fp8_varlen_attention", "attention_with_kvcache", "quantize_fp8", "quantize_qkv", "QuantizedQKV", "FP8_MAX", "unpack_v",
           "build_info", "sm90_unavailable_reason"]
__version__ = "0.1.0"
