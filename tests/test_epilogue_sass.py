"""The lane-chunk stores of the epilogue (csrc/kernel/epilogue.cuh, store_output_lane_chunks)
survive ptxas in the builds of a standard v, checked on a machine without a GPU. Since session
44 the producer's V transpose writes V^T's rows in a packed v's order at D = 128 / 256
(transpose_v.cuh, vt_row), so those builds store each lane's 8 output columns per 32 whole:
the release D = 256 dense build and three D = 128 builds (short-key; long; varlen) are
compiled for sm_90a and their SASS must hold the 8-byte (fp8) and 16-byte (bf16 / fp16)
stores of both rows and every 32-column chunk and no 2-byte column-pair store, no more spills
in the consumers' steady KV loop than measured (none at D = 128; at D = 256 3 LDL, as before
the change), no warp vote that ties a warp's rows together there (VOTE.ALL; DESIGN 1.6), and
no serialised wgmma. The D = 64 build, which keeps the natural V^T rows and the column-pair
stores, must have no 8- or 16-byte store of the output and its 2-byte ones. The builds of a
packed v: tests/test_packed_v_sass.py. tests/gpu/test_sass_sm90.py checks every built forward
kernel on the GPU machine."""
from __future__ import annotations

import pytest

from host_checker import launch_unit_kernels, needs_cuobjdump, needs_cutlass
from sass_checks import (check_lane_chunk_stores, consumer_instrs, kernel_variant, lane_chunk_stores,
                         serialized_wgmma, spills, steady_loop)


def _kernels(tmp_path, unit: str) -> list[tuple[str, list[str]]]:
    """The unit's kernel of whole tiles, and where the build has it its split-tail kernel (D = 64,
    and D = 128 outside its short-key build: tile_scheduler.cuh)."""
    names = [(m.string, f) for m, f in launch_unit_kernels(unit, tmp_path, "fmha_fwd_fp8_sm90_kernel")]
    variants = sorted(kernel_variant(name) for name, _ in names)
    assert variants.count("whole") == 1 and len(set(variants)) == len(variants), [n for n, _ in names]
    return names


@needs_cutlass
@needs_cuobjdump
@pytest.mark.parametrize("unit, head_dim, lane_chunks, loop_spills", [
    ("fwd_fp8_hdim256", 256, True, 3),
    ("fwd_fp8_hdim128_short", 128, True, 0),
    ("fwd_fp8_hdim128", 128, True, 0),
    ("fwd_fp8_hdim128_varlen", 128, True, 0),
    ("fwd_fp8_hdim64", 64, False, 0),
])
def test_output_stores_survive_ptxas(tmp_path, unit, head_dim, lane_chunks, loop_spills):
    for name, instrs in _kernels(tmp_path, unit):
        consumers = consumer_instrs(instrs)
        assert any("MUFU.EX2" in x for x in consumers)  # the slice is the consumers' code
        if lane_chunks:
            check_lane_chunk_stores(consumers, head_dim, name)
        else:
            n = lane_chunk_stores(consumers)
            assert n["fp8"] == 0 and n["16-bit"] == 0, f"{n}: wide stores in a build of column pairs: {name}"
            assert n["pairs"] >= 2 * head_dim // 8, f"{n['pairs']} 2-byte stores of fp8 column pairs: {name}"
        loop = steady_loop(consumers)
        assert loop and any("GMMA" in x for x in loop)
        assert spills(loop) <= loop_spills, f"{spills(loop)} spills in the steady KV loop: {name}"
        assert not any("VOTE.ALL" in x for x in loop), f"a warp vote ties the rows of a warp together: {name}"
        assert serialized_wgmma(instrs) == 0
