"""The SASS checker itself (tests/sass_checks.py), on hand-written SASS: it must
accept a round whose softmax runs between the two waits and reject one where
ptxas hoisted the P V wait above the softmax. The check of the real kernel is
tests/gpu/test_sass_sm90.py."""

import pytest

from sass_checks import (kernel_build, kernel_variant, overlap_regions, serialized_wgmma,
                         shared_stores_while_pv_in_flight, split_functions)


def _sass(body: list[str]) -> str:
    lines = ["        Function : fmha_fwd_fp8_sm90_kernel"]
    for i, ins in enumerate(body):
        lines.append(f"        /*{16 * i:04x}*/                   {ins} ;   /* 0x0 */")
    return "\n".join(lines)


ROUND_HEAD = ["WARPGROUP.ARRIVE", "QGMMA.64x192x32.F32.E4M3.E4M3 R24, gdesc[UR20], R24, gsb0",
              "WARPGROUP.ARRIVE", "QGMMA.64x128x32.F32.E4M3.E4M3 R120, R184, gdesc[UR16], R120, gsb0",
              "BAR.ARV R3, 0x100", "WARPGROUP.DEPBAR.LE gsb0, 0x1", "FMNMX R2, R24, R25, !PT"]


def test_overlapped_round_is_accepted():
    body = ROUND_HEAD + ["MUFU.EX2 R24, R24"] * 96 + ["WARPGROUP.DEPBAR.LE gsb0, 0x0", "F2FP.E4M3 R184, R25, R24"]
    (instrs,) = split_functions(_sass(body)).values()
    (region,) = overlap_regions(instrs)
    assert (region.ex2_before, region.ex2_after) == (96, 0)
    assert region.overlapped_fraction == 1.0
    assert serialized_wgmma(instrs) == 0


def test_hoisted_wait_is_caught():
    body = ROUND_HEAD + ["WARPGROUP.DEPBAR.LE gsb0, 0x0"] + ["MUFU.EX2 R24, R24"] * 96 + ["BAR.SYNC R3, 0x100"]
    (instrs,) = split_functions(_sass(body)).values()
    (region,) = overlap_regions(instrs)
    assert (region.ex2_before, region.ex2_after) == (0, 96)
    assert region.overlapped_fraction == 0.0


def test_serialized_wgmma_is_counted():
    body = ["QGMMA.64x192x32.F32.E4M3.E4M3 R24, gdesc[UR20], R24, gsb0", "WARPGROUP.DEPBAR.LE gsb0, 0x0"] * 4
    (instrs,) = split_functions(_sass(body)).values()
    assert serialized_wgmma(instrs) == 4


def test_consumer_spills():
    from sass_checks import consumer_instrs, spills

    kernel = ["STL [R1], R2", "USETMAXREG.DEALLOC.CTAPOOL 0x28", "LDL R2, [R1]", "STL [R1], R3"]
    assert spills(consumer_instrs(kernel)) == 1 and spills(kernel) == 3


def test_steady_loop_and_store_widths():
    from sass_checks import lane_chunk_builds_have, lane_chunk_stores, steady_loop

    # _sass puts instruction i at address 0x10 * i
    body = ["MOV R1, R2", "QGMMA.64x128x32.F32.E4M3.E4M3 R24, gdesc[UR4], R24",
            "MUFU.EX2 R3, R3", "LDL R4, [R1]", "@P0 BRA 0x10",
            "STG.E.64 desc[UR6][R2.64], R4", "STG.E.U16 desc[UR6][R2.64], R4",
            "STG.E.128 desc[UR6][R2.64], R4", "@P1 BRA 0x0"]
    (instrs,) = split_functions(_sass(body)).values()
    loop = steady_loop(instrs)
    assert [x.split()[0] for x in loop] == ["0010", "0020", "0030", "0040"]  # the inner loop
    assert lane_chunk_stores(instrs) == {"fp8": 1, "16-bit": 1, "pairs": 1}
    assert [lane_chunk_builds_have(d, packed) for d in (64, 128, 256) for packed in (False, True)] == [
        False, True, True, True, True, True]


SS_ROUND = ["WARPGROUP.ARRIVE", "QGMMA.64x256x32.F32.E4M3.E4M3 R24, gdesc[UR20], R24, gsb0",
            "WARPGROUP.ARRIVE", "QGMMA.64x128x32.F32.E4M3.E4M3 R120, gdesc[UR16], R120, gsb0",
            "WARPGROUP.DEPBAR.LE gsb0, 0x1", "STS.128 [R9], R4"]


def test_p_stores_after_the_pv_wait_are_accepted():
    body = SS_ROUND[:4] + ["WARPGROUP.DEPBAR.LE gsb0, 0x1", "MUFU.EX2 R24, R24", "WARPGROUP.DEPBAR.LE gsb0, 0x0",
                           "STS [R11], R24", "STS [R11+0x400], R26", "FENCE.VIEW.ASYNC.S"]
    (instrs,) = split_functions(_sass(body)).values()
    assert shared_stores_while_pv_in_flight(instrs, "64x128x32") == []


def test_p_store_before_the_pv_wait_is_caught():
    body = SS_ROUND + ["STS [R11], R24", "WARPGROUP.DEPBAR.LE gsb0, 0x0", "STS [R11+0x400], R26"]
    (instrs,) = split_functions(_sass(body)).values()
    bad = shared_stores_while_pv_in_flight(instrs, "64x128x32")
    assert [b.split(None, 1)[1] for b in bad] == ["STS.128 [R9], R4", "STS [R11], R24"]
    # P V reading P from registers (RS) does not read the tile: nothing to race with.
    rs = [x.replace("R120, gdesc[UR16]", "R120, R184, gdesc[UR16]") for x in body]
    (instrs,) = split_functions(_sass(rs)).values()
    assert shared_stores_while_pv_in_flight(instrs, "64x128x32") == []


def test_kernel_variant_reads_mangled_and_demangled_names():
    """cuobjdump names the forward kernels mangled, torch.profiler demangled; both carry the
    KernelVariant (tile_scheduler.cuh) that kernel_variant reads and kernel_build drops."""
    traits = "_ZN10torch_fmha6kernel24fmha_fwd_fp8_sm90_kernelINS0_12Fp8FwdTraitsILi128ELNS0_10KvBlockingE0E" \
             "LNS0_7VLayoutE1EEENS0_18DenseTileSchedulerILi128EEE"
    mangled = {v: f"{traits}LNS0_13KernelVariantE{v}EEEvNS0_12KernelParamsIT_T0_EE" for v in range(3)}
    assert [kernel_variant(mangled[v]) for v in range(3)] == ["whole", "split", "masked"]
    assert len({kernel_build(n) for n in mangled.values()}) == 1
    demangled = {v: ("void torch_fmha::kernel::fmha_fwd_fp8_sm90_kernel<torch_fmha::kernel::Fp8FwdTraits<128, "
                     "(torch_fmha::kernel::KvBlocking)0, (torch_fmha::kernel::VLayout)1>, "
                     f"torch_fmha::kernel::DenseTileScheduler<128>, (torch_fmha::kernel::KernelVariant){v}>"
                     "(torch_fmha::kernel::KernelParams<...>)") for v in range(3)}
    assert [kernel_variant(demangled[v]) for v in range(3)] == ["whole", "split", "masked"]
    assert len({kernel_build(n) for n in demangled.values()}) == 1
    other = demangled[0].replace("VLayout)1", "VLayout)0")
    assert kernel_build(other) != kernel_build(demangled[0])
    with pytest.raises(AssertionError):
        kernel_variant("void torch_fmha::kernel::decode_kernel<128, true>(...)")
