"""The dense builds for a packed v (kernel_traits.cuh, VLayout::kPackedVt; csrc/vt_key_order.h)
survive ptxas, checked on a machine without a GPU: compiled for sm_90a, their SASS must have
no transposer (no LDSM / STSM anywhere: TMA lands V^T), and the consumers' steady KV loop must
have no indexed shuffle (P goes to the P V product as the S accumulator gives it, since the
packed v's keys are already in that order; the natural-order layout it replaced needed two
shuffles per 16 keys), no more spills than the transposing build (none at D = 64 / 128; 3 LDL per
block at D = 256) and no serialised wgmma."""
from __future__ import annotations

import pytest

from host_checker import launch_unit_kernels, needs_cuobjdump, needs_cutlass
from sass_checks import consumer_instrs, serialized_wgmma, spills, steady_loop


@needs_cutlass
@needs_cuobjdump
@pytest.mark.parametrize("unit, loop_spills", [
    ("fwd_fp8_hdim64_packed_v", 0),
    ("fwd_fp8_hdim128_packed_v", 0),
    ("fwd_fp8_hdim256_packed_v", 3),
])
def test_packed_v_build_has_no_transposer_and_no_p_shuffle(tmp_path, unit, loop_spills):
    funcs = [f for _, f in launch_unit_kernels(unit, tmp_path, "fmha_fwd_fp8_sm90_kernel")]
    assert len(funcs) == 1
    (instrs,) = funcs
    transposer = [x for x in instrs if "LDSM" in x or "STSM" in x]
    assert not transposer, f"{len(transposer)} LDSM / STSM: the V transpose is still there"
    loop = steady_loop(consumer_instrs(instrs))
    assert loop and any("GMMA" in x for x in loop)
    # The row max / sum reductions are butterflies (SHFL.BFLY); the P move was indexed.
    shuffles = sum(1 for x in loop if "SHFL.IDX" in x)
    assert shuffles == 0, f"{shuffles} SHFL.IDX in the steady loop: P is moved across lanes"
    assert spills(loop) <= loop_spills, f"{spills(loop)} spills in the steady KV loop"
    assert serialized_wgmma(instrs) == 0
