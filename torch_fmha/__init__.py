"""torch_fmha: FP8 fused multi-head attention for Hopper, as torch.library ops.

    import torch_fmha
    out = torch_fmha.attention(q, k, v, causal=True, q_descale=..., ...)
    out = torch_fmha.varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, ...)

The ops (``torch.ops.torch_fmha.fwd``, ``varlen_fwd``, ``bwd``,
``varlen_bwd``) are defined once in C++; importing this package compiles them
on first use (cached), and registers their fake implementations and autograd.
"""

from __future__ import annotations

from . import _build

build_info = _build.build_and_load()

from torch_fmha.meta import fake as _fake  # noqa: E402  (needs the ops loaded)

from . import autograd as _autograd  # noqa: E402
from .api import FP8_MAX, attention, quantize_fp8, varlen_attention  # noqa: E402

_fake.register()
_autograd.register()

__all__ = ["attention", "varlen_attention", "quantize_fp8", "FP8_MAX", "build_info"]
__version__ = "0.1.0"
