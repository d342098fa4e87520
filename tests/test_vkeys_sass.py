"""The dense builds for v with its keys contiguous (kernel_traits.cuh,
VLayout::kKeysContiguous) survive ptxas, checked on a machine without a GPU:
compiled for sm_90a, their SASS must have no transposer (no LDSM / STSM anywhere:
TMA lands V^T), and the consumers' steady KV loop must hold the P permutation
to the natural key order (p_key_order.cuh) as written: two shuffles per 16 keys
of a block, no more spills than measured (none at D = 128; at D = 256 3 LDL and
1 STL per block, one STL more than the transposing build), no serialised wgmma."""
from __future__ import annotations

import pytest

from host_checker import launch_unit_kernels, needs_cuobjdump, needs_cutlass
from sass_checks import consumer_instrs, serialized_wgmma, spills, steady_loop


@needs_cutlass
@needs_cuobjdump
@pytest.mark.parametrize("unit, block_n, loop_spills", [
    ("fwd_fp8_hdim128_vkeys", 192, 0),
    ("fwd_fp8_hdim256_vkeys", 128, 4),
])
def test_vkeys_build_has_no_transposer_and_permutes_p(tmp_path, unit, block_n, loop_spills):
    funcs = [f for _, f in launch_unit_kernels(unit, tmp_path, "fmha_fwd_fp8_sm90_kernel")]
    assert len(funcs) == 1
    (instrs,) = funcs
    transposer = [x for x in instrs if "LDSM" in x or "STSM" in x]
    assert not transposer, f"{len(transposer)} LDSM / STSM: the V transpose is still there"
    loop = steady_loop(consumer_instrs(instrs))
    assert loop and any("GMMA" in x for x in loop)
    shuffles = sum(1 for x in loop if "SHFL.IDX" in x)
    assert shuffles == 2 * block_n // 16, f"{shuffles} SHFL.IDX in the steady loop"
    assert spills(loop) <= loop_spills, f"{spills(loop)} spills in the steady KV loop"
    assert serialized_wgmma(instrs) == 0
