"""Run an op so that its freshly allocated outputs start out as NaN.

The ops allocate their outputs; to catch a tile the kernel never writes, we
fill blocks of the outputs' sizes with NaN and free them just before the call,
so the caching allocator hands the same (NaN) memory to the op. The helper
checks the op really got those blocks, so the poisoning cannot silently lapse.
"""

from __future__ import annotations

import torch


def _nan_block(shape, dtype):
    t = torch.empty(shape, dtype=dtype, device="cuda")
    if dtype == torch.float8_e4m3fn:
        t.view(torch.uint8).fill_(0x7F)  # e4m3fn NaN
    else:
        t.fill_(float("nan"))
    return t


def call_with_nan_outputs(fn, out_specs):
    """out_specs: [(shape, dtype)] of fn's outputs in order. Returns fn()'s outputs."""
    blocks = [_nan_block(shape, dtype) for shape, dtype in out_specs]
    ptrs = {blk.data_ptr() for blk in blocks}
    del blocks
    outs = fn()
    assert all(o.data_ptr() in ptrs for o in outs), "output NaN-poisoning did not take (allocator)"
    return outs
