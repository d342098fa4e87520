"""The fp8 group stores of the direct epilogue (csrc/kernel/epilogue.cuh,
store_output_fp8_groups) survive ptxas, checked on a machine without a GPU: the
release D = 256 dense build (standard v) and three D = 128 builds (short-key; long; varlen;
all of a standard v: the builds of a packed v store lane chunks instead, which
tests/test_packed_v_sass.py checks), which store fp8 output in groups (Traits::kFp8GroupStores;
the long D = 128 ones since session 32), are compiled for sm_90a and
their SASS must hold the 8-byte stores of every group, no more spills in the
consumers' steady KV loop than measured (none at D = 128; at D = 256 3 LDL
before and after the change), no warp vote that ties a warp's rows together there
(VOTE.ALL; DESIGN 1.6), and no serialised wgmma. The D = 64 build, which keeps the column-pair stores, must have no
8-byte store. tests/gpu/test_sass_sm90.py
checks every built forward kernel (11, the split-tail kernels of D = 64 / 128 and D = 128's
masked-tiles kernel) on the GPU machine."""
from __future__ import annotations

import pytest

from host_checker import launch_unit_kernels, needs_cuobjdump, needs_cutlass
from sass_checks import (consumer_instrs, group_stores, kernel_variant, serialized_wgmma, spills, steady_loop)


def _kernels(tmp_path, unit: str) -> list[list[str]]:
    """The unit's kernel of whole tiles, and where the build has them its split-tail kernel (D = 64,
    and D = 128 outside its short-key build: tile_scheduler.cuh) and its masked-tiles kernel (D = 128's
    long packed-v build: kernel_traits.cuh, kHalfFirstBlock)."""
    names = [(m.string, f) for m, f in launch_unit_kernels(unit, tmp_path, "fmha_fwd_fp8_sm90_kernel")]
    variants = sorted(kernel_variant(name) for name, _ in names)
    assert variants.count("whole") == 1 and len(set(variants)) == len(variants), [n for n, _ in names]
    return [f for _, f in names]


@needs_cutlass
@needs_cuobjdump
@pytest.mark.parametrize("unit, head_dim, grouped, loop_spills", [
    ("fwd_fp8_hdim256", 256, True, 3),
    ("fwd_fp8_hdim128_short", 128, True, 0),
    ("fwd_fp8_hdim128", 128, True, 0),
    ("fwd_fp8_hdim128_varlen", 128, True, 0),
    ("fwd_fp8_hdim64", 64, False, 0),
])
def test_fp8_group_stores_survive_ptxas(tmp_path, unit, head_dim, grouped, loop_spills):
    for instrs in _kernels(tmp_path, unit):
        _check_kernel(instrs, head_dim, grouped, loop_spills)


def _check_kernel(instrs, head_dim, grouped, loop_spills):
    consumers = consumer_instrs(instrs)
    assert any("MUFU.EX2" in x for x in consumers)  # the slice is the consumers' code
    n = group_stores(consumers)
    if grouped:
        assert n >= 2 * head_dim // 32, f"{n} 8-byte stores"
    else:
        assert n == 0, f"{n} 8-byte stores in a build that stores column pairs"
    loop = steady_loop(consumers)
    assert loop and any("GMMA" in x for x in loop)
    assert spills(loop) <= loop_spills, f"{spills(loop)} spills in the steady KV loop"
    assert not any("VOTE.ALL" in x for x in loop), "a warp vote ties the rows of a warp together"
    assert serialized_wgmma(instrs) == 0
