"""The built kernel's SASS keeps the structure consumer.cuh asks for: where
Traits::kPinPvWait pins the P V wait (kernel_traits.cuh, per head dim), the
softmax of a round overlaps the warpgroup's own P V (the wait stays below the
block's MUFU.EX2); no wgmma serialization anywhere; the output stored in whole
lane chunks (8 bytes for fp8, 16 for bf16 / fp16) where Traits::kLaneChunkStores, in
2-byte column pairs elsewhere (D = 64 with a standard v; epilogue.cuh); no warp vote
that ties the rows of a warp together in the steady loop (softmax.cuh, update_max;
DESIGN 1.6); the row max by integer maxes where Traits::kIntRowMax; and no more
spills in the steady KV loop than the release builds had when that was
measured. Checker: tests/sass_checks.py (tests/test_epilogue_sass.py checks the
same on a machine without a GPU, compiling five of the builds, and
tests/test_packed_v_sass.py the three packed-v ones)."""

import os
import re
import subprocess
from pathlib import Path

import pytest

import torch_fmha
from sass_checks import (check_lane_chunk_stores, consumer_instrs, lane_chunk_builds_have, lane_chunk_stores,
                         overlap_regions, kernel_variant, serialized_wgmma, spills, split_functions, steady_loop)

TRAITS = Path(torch_fmha._build.source_root()) / "kernel" / "kernel_traits.cuh"


def pinned_head_dims() -> set[int]:
    """Head dims whose release build pins the P V wait (the TORCH_FMHA_TUNE_PIN_* defaults)."""
    text = TRAITS.read_text()
    return {int(d) for d, on in re.findall(r"#define TORCH_FMHA_TUNE_PIN_(\d+) (\d)", text) if on == "1"}


def overlapping_builds(name: str, d: int) -> bool:
    """Whether the build overlaps tiles (Traits::kOverlapTiles): two Q buffers, D = 64 and the
    D = 128 builds unless an experiment sets -DTORCH_FMHA_TUNE_Q_STAGES_128=1 for the long-key
    ones (TORCH_FMHA_NVCC_EXTRA, as the build reads it)."""
    if d == 64 or (d == 128 and "KvBlockingE1" in name):
        return True
    if d == 128:
        m = re.search(r"-DTORCH_FMHA_TUNE_Q_STAGES_128=(\d+)", os.environ.get("TORCH_FMHA_NVCC_EXTRA", ""))
        return m is None or int(m.group(1)) >= 2
    return False


def knob(name: str, header: Path = TRAITS) -> int:
    """A TORCH_FMHA_TUNE_<name> knob of `header` (kernel_traits.cuh) as this build has it: its
    value in TORCH_FMHA_NVCC_EXTRA, else its default there (0 where it has no plain numeric
    default)."""
    m = re.search(rf"-DTORCH_FMHA_TUNE_{name}=(\d+)", os.environ.get("TORCH_FMHA_NVCC_EXTRA", ""))
    if m is None:
        m = re.search(rf"#define TORCH_FMHA_TUNE_{name} (\d+)\s*$", header.read_text(), re.M)
    return int(m.group(1)) if m else 0


def p_smem_build(name: str, d: int) -> bool:
    """Whether the build reads P from shared memory (Traits::kPFromSmem): the long-key packed-v
    builds at D = 128 / 256 while TORCH_FMHA_TUNE_P_SMEM_<d> is on. Their P V wait has its own
    placement (between the row max and the exps), checked by tests/test_packed_v_sass.py."""
    return d in (128, 256) and "VLayoutE1" in name and "KvBlockingE1" not in name and knob(f"P_SMEM_{d}") != 0


def rescale_always(name: str, d: int) -> bool:
    """Whether the build multiplies O in every block (Traits::kSkipUnitRescale off: an experiment's
    -DTORCH_FMHA_TUNE_RESCALE_ALWAYS_<d>=1, or a P-from-shared-memory build with
    TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_<d>, on at D = 256, or D = 128's split-tail kernel of such
    a build with TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_SPLIT_128, on): then the loop has no vote at all."""
    if knob(f"RESCALE_ALWAYS_{d}") != 0 or (p_smem_build(name, d) and knob(f"P_SMEM_RESCALE_ALWAYS_{d}") != 0):
        return True
    return (d == 128 and p_smem_build(name, d) and kernel_variant(name) == "split"
            and knob("P_SMEM_RESCALE_ALWAYS_SPLIT_128") != 0)


@pytest.fixture(scope="module")
def kernels():
    sass = subprocess.run(["cuobjdump", "-sass", str(torch_fmha.build_info.library)],
                          capture_output=True, text=True, timeout=240, check=True).stdout
    funcs = {name: instrs for name, instrs in split_functions(sass).items()
             if "fmha_fwd_fp8_sm90_kernel" in name}
    # A head dim with a split tail (tile_scheduler.cuh, TORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_<d>;
    # on at D = 64 and 128 in the release) has each dense build twice: the kernel of the split tail
    # (KernelVariant::kSplitTail) runs the launches whose plan is active. The checks below apply to
    # all kernels. D = 128's short-key builds never split (fwd_launch_template.cuh): its two long
    # builds do, each by its v layout's threshold. A dense build with the half first block
    # (kernel_traits.cuh, kHalfFirstBlock) has a third kernel for causal and windowed launches
    # (KernelVariant::kMaskedTiles).
    splits = sum(split_knob(d, packed_v) > 0 for d in (64, 128) for packed_v in (False, True))
    masked = half_first_block_builds()
    variants = [kernel_variant(name) for name in funcs]
    assert variants.count("split") == splits and variants.count("masked") == masked, list(funcs)
    assert len(funcs) == 11 + splits + masked, (
        f"expected 11 kernel variants (D=64/128/256 x dense/varlen, the D=128 dense short-key build, "
        f"and the four dense builds again for a packed v), {splits} split-tail ones and {masked} "
        f"masked-tiles ones, got {list(funcs)}")
    return funcs


def half_first_block_builds() -> int:
    """Dense builds with a masked-tiles kernel (kernel_traits.cuh, kHalfFirstBlock: 256-key blocks
    and TORCH_FMHA_TUNE_HALF_FIRST_BLOCK_<d> on): D = 64's two (standard and packed v, both
    TORCH_FMHA_TUNE_BLOCK_N_64 wide), D = 128's long standard-v build (TORCH_FMHA_TUNE_BLOCK_N_128)
    and its long packed-v build (256-key blocks while P goes through shared memory,
    TORCH_FMHA_TUNE_P_SMEM_128)."""
    return sum(has_masked_kernel(d, packed_v) for d in (64, 128) for packed_v in (False, True))


def has_masked_kernel(d: int, packed_v: bool) -> bool:
    """Whether D = d's long dense build (standard or packed v) has the masked-tiles kernel that
    causal and windowed launches run (kernel_traits.cuh, kHalfFirstBlock: 256-key blocks and
    TORCH_FMHA_TUNE_HALF_FIRST_BLOCK_<d>)."""
    if d not in (64, 128) or not knob(f"HALF_FIRST_BLOCK_{d}"):
        return False
    if d == 64:
        return knob("BLOCK_N_64") == 256
    if not packed_v:
        return knob("BLOCK_N_128") == 256
    # TORCH_FMHA_TUNE_PACKED_V_BLOCK_N_128 defaults to 256 while P goes through shared memory
    # (TORCH_FMHA_TUNE_P_SMEM_128), else to the standard v's width.
    packed = knob("PACKED_V_BLOCK_N_128") or (256 if knob("P_SMEM_128") else knob("BLOCK_N_128"))
    return packed == 256


def split_knob(d: int, packed_v: bool = False) -> int:
    """The split tail's threshold in KV blocks of tile_scheduler.cuh as this build has it:
    TORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_<d>, or at D = 128 with a packed v
    TORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_PACKED_128 (split_tail_min_blocks)."""
    name = "SPLIT_TAIL_MIN_BLOCKS_PACKED_128" if d == 128 and packed_v else f"SPLIT_TAIL_MIN_BLOCKS_{d}"
    return knob(name, TRAITS.parent / "tile_scheduler.cuh")


def _head_dim(name: str) -> int:
    return int(re.search(r"Fp8FwdTraitsILi(\d+)E", name).group(1))


def test_pinned_pv_wait_stays_below_the_softmax(kernels):
    pinned = pinned_head_dims()
    assert pinned, "no head dim pins the P V wait: this test would check nothing"
    for name, instrs in kernels.items():
        d = _head_dim(name)
        regions = overlap_regions(instrs)
        # The steady-state round always issues S and P V together; so does the
        # tile-boundary round where tiles overlap (D=64/128).
        expected = 2 if overlapping_builds(name, d) else 1
        assert len(regions) >= expected, f"D={d}: {len(regions)} S+PV rounds: {name}"
        if d not in pinned or p_smem_build(name, d):
            continue
        for r in regions:
            assert r.overlapped_fraction >= 0.9, (
                f"D={d}: only {r.ex2_before} of {r.ex2_before + r.ex2_after} MUFU.EX2 issue before the "
                f"P V wait at {r.wait_pv} (S wait at {r.wait_s}): ptxas hoisted the pinned wait")


def test_wgmma_not_serialized(kernels):
    for name, instrs in kernels.items():
        assert serialized_wgmma(instrs) <= 4, f"ptxas serialized the wgmmas (C7514) in {name}"


# Local-memory instructions allowed in the consumers' steady KV loop per head dim: none
# at D = 64 / 128; D = 256 had 3 LDL there (its 24 / 240 register split) before and
# after the fp8 group stores and with exact alpha, and so had its packed-v build until
# P went through shared memory (session 25): a build with P from shared memory
# (p_smem_build) is allowed none; the 3 apply with -DTORCH_FMHA_TUNE_P_SMEM_256=0
# (docs/DESIGN.md section 6; tests/test_packed_v_sass.py).
STEADY_LOOP_SPILLS = {64: 0, 128: 0, 256: 3}
STEADY_LOOP_SPILLS_PACKED_V = {64: 0, 128: 0, 256: 3}


def test_output_stores_and_steady_loop_spills(kernels):
    for name, instrs in kernels.items():
        d = _head_dim(name)
        consumers = consumer_instrs(instrs)
        if lane_chunk_builds_have(d, packed_v="VLayoutE1" in name):  # epilogue.cuh, lane chunks
            check_lane_chunk_stores(consumers, d, name)
        else:  # D = 64 with a standard v: column pairs
            n = lane_chunk_stores(consumers)
            assert n["fp8"] == 0 and n["16-bit"] == 0 and n["pairs"] >= 2 * d // 8, f"D={d}: {n}: {name}"
        loop = steady_loop(consumers)
        assert loop, f"no steady KV loop found: {name}"
        allowed = 0 if p_smem_build(name, d) else (STEADY_LOOP_SPILLS_PACKED_V if "VLayoutE1" in name else STEADY_LOOP_SPILLS)[d]
        assert spills(loop) <= allowed, f"D={d}: {spills(loop)} spills in the steady loop: {name}"


def test_no_warp_vote_couples_rows(kernels):
    # A VOTE.ALL in the steady loop would be a decision shared by a warp's 16 rows (the
    # first lazy O rescale had one): then one row's bits depend on rows it cannot see,
    # padding and NaN rows included (DESIGN 1.6). The O rescale's skip is a VOTE.ANY on
    # the alphas, which is bitwise exact (absent where an experiment multiplies in every block).
    for name, instrs in kernels.items():
        loop = steady_loop(consumer_instrs(instrs))
        if not rescale_always(name, _head_dim(name)):
            assert any("VOTE.ANY" in i for i in loop), f"the O rescale's skip is gone: {name}"
        else:  # every block multiplies: no vote, no branch around the multiply
            assert not any("VOTE.ANY" in i for i in loop), f"a vote in a build that rescales always: {name}"
        votes = sum("VOTE.ALL" in i for i in loop)
        assert votes == 0, f"{votes} VOTE.ALL in the steady loop: {name}"


def test_int_row_max_in_the_steady_loop(kernels):
    # Where TORCH_FMHA_TUNE_INT_MAX_<D> is on (kernel_traits.cuh, Traits::kIntRowMax), a
    # block's row max is three-input integer maxes on the scores' bits (softmax.cuh,
    # int_max_of_scores), two scores per VIMNMX3; the FMNMX left in the loop are the fmaxf
    # fallback for a row whose int max is not in [+0, +inf] (a negative or NaN score), the
    # same number of scores one per instruction. Release sm_90a SASS (session 27): D = 128
    # packed v 62 VIMNMX3 / 132 FMNMX, short 30 / 68, varlen 46 / 100, D = 256 30 / 68, so
    # FMNMX = 2 VIMNMX3 + 8 (the quad reductions) in every build. The floor 24 is below the
    # smallest build's 30 (128-key blocks); the + 12 leaves 4 FMNMX of slack.
    on = [d for d in (64, 128, 256) if knob(f"INT_MAX_{d}")]
    assert on, "no head dim takes the integer row max: this test would check nothing"
    for name, instrs in kernels.items():
        d = _head_dim(name)
        if d not in on:
            continue
        loop = steady_loop(consumer_instrs(instrs))
        imax = sum("VIMNMX3" in i for i in loop)
        fmax = sum("FMNMX" in i for i in loop)
        assert imax >= 24, f"D={d}: {imax} VIMNMX3 in the steady loop (the integer row max is gone): {name}"
        assert 2 * imax + 12 >= fmax, (f"D={d}: {imax} VIMNMX3 against {fmax} FMNMX: not every score "
                                       f"goes through the integer max: {name}")
