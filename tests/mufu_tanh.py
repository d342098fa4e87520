"""The SM90 kernel's tanh, repeated bit for bit: ``tanh.approx.f32`` (MUFU.TANH).

The kernel soft-caps scores with the PTX instruction ``tanh.approx.f32``
(csrc/kernel/softmax.cuh, fast_tanh). PTX documents only its maximum relative
error (TANH_APPROX_REL_ERROR), not its values, so an emulation in float64 with
the exact tanh differs from the kernel by up to softcap * 2^-11 per score: at
softcap 50 that is ~0.025 in the LSE, more than the rest of the kernel's error.
The GPU tests therefore run the very instruction, through Triton's inline PTX,
on the same float32 arguments as the kernel (tests/gpu/emulate.py), and
test_serving_features_sm90.py checks the documented error bound on this GPU.
"""

from __future__ import annotations

import torch

# PTX ISA, tanh: "maximum relative error 2^-10.987" for tanh.approx.f32 (sm_75+).
# The LSE slack of the serving tests (emulate.py) is derived from it;
# test_tanh_approx_error_is_within_the_documented_bound measures it.
TANH_APPROX_REL_ERROR = 2.0 ** -10.987

_kernel = None


def _build():
    import triton
    import triton.language as tl

    @triton.jit
    def tanh_approx_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        inside = offs < n
        x = tl.load(x_ptr + offs, mask=inside)
        y = tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [x], dtype=tl.float32,
                                      is_pure=True, pack=1)
        tl.store(y_ptr + offs, y, mask=inside)

    return tanh_approx_kernel


def tanh_approx(x: torch.Tensor) -> torch.Tensor:
    """tanh.approx.f32 of a float32 CUDA tensor (any shape), as the kernel computes it."""
    global _kernel
    assert x.dtype == torch.float32 and x.is_cuda, "tanh_approx: float32 CUDA tensors only"
    if _kernel is None:
        _kernel = _build()
    src = x.contiguous().view(-1)
    out = torch.empty_like(src)
    n = src.numel()
    if n:
        block = 1024
        _kernel[(-(-n // block),)](src, out, n, BLOCK=block)
    return out.view(x.shape)
