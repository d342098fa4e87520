"""The dense builds for a packed v (kernel_traits.cuh, VLayout::kPackedVt; csrc/vt_key_order.h)
survive ptxas, checked on a machine without a GPU: compiled for sm_90a, their SASS must have
no transposer (no LDSM / STSM anywhere: TMA lands V^T), and the consumers' steady KV loop must
have no indexed shuffle (P goes to the P V product as the S accumulator gives it, since the
packed v's keys are already in that order; the natural-order layout it replaced needed two
shuffles per 16 keys), no spills (the transposing D = 256 build has 3 LDL per block; its packed-v
build had them too until P went through shared memory) and no serialised wgmma; at D = 64 the
exps' arguments must stay interleaved with the exps there (no run of more than 32 FFMAs). The
packed v's row order lets the epilogue store each lane's whole 8-column chunks (session 44):
every kernel must have the 8-byte (fp8) and 16-byte (bf16 / fp16) stores of both rows and every
32-column chunk, and no 2-byte column-pair store."""
from __future__ import annotations

import re

import pytest

from host_checker import launch_unit_kernels, needs_cuobjdump, needs_cutlass
from sass_checks import (check_lane_chunk_stores, consumer_instrs, kernel_variant, longest_run,
                         serialized_wgmma, shared_stores_while_pv_in_flight, spills, steady_loop)


@needs_cutlass
@needs_cuobjdump
@pytest.mark.parametrize("unit, loop_spills, max_ffma_run", [
    # D = 64: the exps' arguments stay interleaved with the exps (the release's longest FFMA run in
    # the steady loop is 14; session 40's half first block made ptxas hoist 58 of them ahead of the
    # exps, a run of 64, and that build ran 9-14% slower: DESIGN section 7)
    ("fwd_fp8_hdim64_packed_v", 0, 32),
    ("fwd_fp8_hdim128_packed_v", 0, None),
    ("fwd_fp8_hdim256_packed_v", 0, None),  # 3 LDL per block until P went through shared memory
])
def test_packed_v_build_has_no_transposer_and_no_p_shuffle(tmp_path, unit, loop_spills, max_ffma_run):
    # The unit's kernel of whole tiles, its split-tail kernel at D = 64 / 128 and its masked-tiles
    # kernel at D = 128 (tile_scheduler.cuh, KernelVariant).
    named = [(m.string, f) for m, f in launch_unit_kernels(unit, tmp_path, "fmha_fwd_fp8_sm90_kernel")]
    variants = sorted(kernel_variant(name) for name, _ in named)
    assert variants == {64: ["split", "whole"], 128: ["masked", "split", "whole"], 256: ["whole"]}[
        int(unit.split("hdim")[1].split("_")[0])], [n for n, _ in named]
    head_dim = int(unit.split("hdim")[1].split("_")[0])
    for name, instrs in named:
        _check_packed_v_kernel(instrs, loop_spills)
        # The output in whole lane chunks (the packed v's row order; epilogue.cuh,
        # store_output_lane_chunks), fp8 and 16-bit, in every kernel of the unit.
        check_lane_chunk_stores(consumer_instrs(instrs), head_dim, name)
        if max_ffma_run is not None:
            run = longest_run(steady_loop(consumer_instrs(instrs)), "FFMA")
            assert run <= max_ffma_run, f"a run of {run} FFMAs in the steady loop (exps no longer interleaved): {name}"


def _check_packed_v_kernel(instrs, loop_spills):
    transposer = [x for x in instrs if "LDSM" in x or "STSM" in x]
    assert not transposer, f"{len(transposer)} LDSM / STSM: the V transpose is still there"
    loop = steady_loop(consumer_instrs(instrs))
    assert loop and any("GMMA" in x for x in loop)
    # The row max / sum reductions are butterflies (SHFL.BFLY); the P move was indexed.
    shuffles = sum(1 for x in loop if "SHFL.IDX" in x)
    assert shuffles == 0, f"{shuffles} SHFL.IDX in the steady loop: P is moved across lanes"
    assert spills(loop) <= loop_spills, f"{spills(loop)} spills in the steady KV loop"
    assert serialized_wgmma(instrs) == 0


@needs_cutlass
@needs_cuobjdump
@pytest.mark.parametrize("unit, pv_shape, n", [
    ("fwd_fp8_hdim128_packed_v", "64x128x32", 256),
    ("fwd_fp8_hdim256_packed_v", "64x256x32", 128),
])
def test_packed_v_reads_p_from_shared_memory_after_the_pv_wait(tmp_path, unit, pv_shape, n):
    """The long-key packed-v builds at D = 128 and 256 (Traits::kPFromSmem) run P V as an SS
    wgmma: its P V QGMMAs take A from a descriptor; no shared-memory store of the consumers comes
    while a P V may run (one could overwrite the P tile that P V reads); the steady loop stores P
    as N / 8 words per thread (N: the block's keys, 256 at D = 128 and 128 at D = 256, read off
    S's QGMMA), all before one `fence.proxy.async` (FENCE.VIEW.ASYNC.S) that precedes the loop's
    next barrier and wgmma; and the P V wait lands between the row max and the exps
    (TORCH_FMHA_TUNE_P_SMEM_WAIT_AFTER_MAX_<D>): every FMNMX of the block before it, no exp of
    P (only the two rows' alpha) before it."""
    # The unit's kernel and, at D = 128, its split-tail and masked-tiles kernels (tile_scheduler.cuh,
    # KernelVariant): all read P from shared memory.
    kernels = launch_unit_kernels(unit, tmp_path, "fmha_fwd_fp8_sm90_kernel")
    assert 1 <= len(kernels) <= 3, [m.string for m, _ in kernels]
    for m, instrs in kernels:
        # O's rescale: behind the warp vote at D = 128, in every block at D = 256
        # (TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_<D>) and in D = 128's split-tail kernel
        # (TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_SPLIT_128), so no vote there
        vote = n == 256 and kernel_variant(m.string) != "split"
        _check_p_from_smem(instrs, pv_shape, n, vote)


def _check_p_from_smem(instrs, pv_shape, n, vote):
    consumers = consumer_instrs(instrs)
    pv = [x for x in consumers if f"QGMMA.{pv_shape}" in x]
    assert pv and all(re.search(r"QGMMA\S* R\d+, gdesc\[", x) for x in pv), pv[:2]
    assert shared_stores_while_pv_in_flight(consumers, pv_shape) == []
    loop = steady_loop(consumers)
    pv_n = pv_shape.split("x")[1]
    (s_n,) = {int(m.group(1)) for x in loop if (m := re.search(r"QGMMA\.64x(\d+)x32", x)) and m.group(1) != pv_n}
    assert s_n == n, f"S is {s_n} keys wide"
    assert spills(loop) == 0, f"{spills(loop)} spills in the steady KV loop"
    assert any("VOTE.ANY" in x for x in loop) == vote
    stores = [i for i, x in enumerate(loop) if re.search(r"\bSTS\b", x)]
    assert len(stores) == n // 8
    fences = [i for i, x in enumerate(loop) if "FENCE.VIEW.ASYNC.S" in x]
    assert len(fences) == 1 and fences[0] > stores[-1]
    # the loop's next round starts at its top: barrier, then the wgmmas; nothing in between
    assert not any("BAR.SYNC" in x or "GMMA" in x for x in loop[stores[-1]:fences[0]])
    (wait, *_) = [i for i, x in enumerate(loop) if "WARPGROUP.DEPBAR.LE gsb0, 0x0" in x]
    maxes = [i for i, x in enumerate(loop) if "FMNMX" in x]
    exps = [i for i, x in enumerate(loop) if "MUFU.EX2" in x]
    assert len(maxes) >= n // 2 and all(i < wait for i in maxes)
    assert len(exps) == n // 2 + 2 and sum(i < wait for i in exps) <= 2
    if not vote:
        # What the every-block rescale was measured for (DESIGN section 7, sessions 25 and 47):
        # ptxas spreads O's FMULs (and P's packing) between the exps, and the loop ends soon
        # after its last exp (17 instructions at D = 128's split kernel, 20 at D = 256; 211-215
        # with the vote, whose multiply then runs after the exps)
        assert len(loop) - 1 - exps[-1] <= 40, f"the loop ends {len(loop) - 1 - exps[-1]} instructions after its last exp"


@needs_cutlass
@needs_cuobjdump
def test_d128_packed_v_build_halves_the_first_block_in_its_masked_kernel_only(tmp_path):
    """The D = 128 long-key packed-v build softmaxes a tile's first block on its lower 128 keys when
    no row of the tile sees the upper 128 (TORCH_FMHA_TUNE_HALF_FIRST_BLOCK_128, consumer.cuh,
    first_block_softmax), in its masked-tiles kernel only (tile_scheduler.cuh, KernelVariant): with
    the halved path in the kernel, ptxas schedules the steady loop differently, which cost the
    non-causal launches 0.4-1.0% in session 40 (DESIGN 7). So:
    - the masked kernel holds the first block's softmax whole (a block's 128 exps per thread) and
      halved (64) at both places a tile's first block runs (the boundary round and a tile's lone
      first S): at least 2 x 128 + 2 x 64 MUFU.EX2 outside the steady loop;
    - the kernels the other launches run (whole tiles, split tail) have no halved path: at most
      2 x 128 + 16 there (the rows' alpha and the like: 8-12 in the release);
    - no spill in any steady loop and no serialised wgmma.
    That the halved path gives the same bits is tools/bitwise_ab.py's A/B on the GPU (session 40:
    0 of 488 calls differ)."""
    named = launch_unit_kernels("fwd_fp8_hdim128_packed_v", tmp_path, "fmha_fwd_fp8_sm90_kernel")
    assert sorted(kernel_variant(m.string) for m, _ in named) == ["masked", "split", "whole"]
    for m, instrs in named:
        consumer = consumer_instrs(instrs)
        loop = steady_loop(consumer)
        assert sum("MUFU.EX2" in x for x in loop) >= 128, m.string
        outside = sum("MUFU.EX2" in x for x in consumer) - sum("MUFU.EX2" in x for x in loop)
        if kernel_variant(m.string) == "masked":
            assert outside >= 2 * 128 + 2 * 64, f"{outside} MUFU.EX2 outside the steady loop: {m.string}"
        else:
            assert outside <= 2 * 128 + 16, f"{outside} MUFU.EX2 outside the steady loop: {m.string}"
        assert spills(loop) == 0 and serialized_wgmma(instrs) == 0, m.string
