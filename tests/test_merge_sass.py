"""The split-KV merge kernel (csrc/kernel/merge_splits.cuh, issue 15) as ptxas compiled it,
checked on a machine without a GPU: csrc/launch/merge_splits.cu is compiled for sm_90a with
the library's flags and each instance (2 / 4 / 8 head-dim elements per lane) must have no
spills and two runs of a step's partial loads (one 4 / 8 / 16-byte LDG per split, 32 / 32 /
16 splits per step: the first step's, issued with the LSE loads, and the split loop's) each
issued before the first FFMA that uses a loaded value: the kernel is latency-bound, and a
step whose adds wait on its first load before the other loads issue pays one L2 round trip
per split instead of one per step.

The merge is the decode kernel's programmatic dependent (Programmatic Dependent Launch,
csrc/kernel/grid_dependency.cuh): it may start before the decode grid has finished, so its
griddepcontrol.wait (ACQBULK in sm_90a SASS, read off cuobjdump) must come before its first
global load or store: the partials are the decode kernel's output."""
from __future__ import annotations

import re

import pytest

from host_checker import launch_unit_kernels, needs_cuobjdump, needs_cutlass
from sass_checks import backward_branch_spans, spills

# elements per lane -> (the partial load, splits per step):
# kMergeBytesInFlight (256) / (2 * elements), at most 32. At 2 per lane the partial load is
# a plain 32-bit LDG.E, as the LSE loads, which the first step's run then also counts.
PARTIAL_LOADS = {2: (r"LDG\.E ", 32), 4: (r"LDG\.E\.64 ", 32), 8: (r"LDG\.E\.128 ", 16)}
# Global memory instructions (not LDC / LDS / STS: constant and shared memory).
GLOBAL_ACCESS = re.compile(r"\b(LDG|STG|LD|ST|ATOMG?|RED|LDGSTS)\.")


def step_loads(instrs: list[str], load: str) -> tuple[int, int]:
    """(partial loads before the split loop, partial loads in the split loop before its
    first FFMA). The split loop is the innermost backward-branch span holding FFMAs; its
    loads sit behind forward branches (a predicated-off split keeps zeros), so they are
    counted in program order up to the first FFMA, which comes after them only if the
    step's loads are all in flight before its adds."""
    loops = [(lo, hi) for lo, hi in backward_branch_spans(instrs)
             if any(re.search(r"\bFFMA\b", y) for y in instrs[lo:hi + 1])]
    if not loops:
        return 0, 0
    lo, hi = min(loops, key=lambda b: b[1] - b[0])
    before = sum(bool(re.search(load, x)) for x in instrs[:lo])
    in_loop = 0
    for x in instrs[lo:hi + 1]:
        if re.search(r"\bFFMA\b", x):
            break
        in_loop += bool(re.search(load, x))
    return before, in_loop


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    return {int(m.group(1)): f for m, f in launch_unit_kernels(
        "merge_splits", tmp_path_factory.mktemp("merge"), r"merge_splits_kernelILi(\d+)E")}


@needs_cutlass
@needs_cuobjdump
@pytest.mark.parametrize("elems_per_lane", [2, 4, 8])
def test_merge_steps_issue_their_loads_before_the_adds(kernels, elems_per_lane):
    instrs = kernels[elems_per_lane]
    assert spills(instrs) == 0
    load, per_step = PARTIAL_LOADS[elems_per_lane]
    before, in_loop = step_loads(instrs, load)
    assert before >= per_step and in_loop >= per_step, (
        f"{elems_per_lane} per lane: {before} loads before the split loop, {in_loop} in it before the "
        f"first add; a step is {per_step}")


def first_global_access_after_wait(instrs: list[str]) -> tuple[int, int]:
    """(index of the first ACQBULK, index of the first global load / store); -1 when absent."""
    wait = next((i for i, x in enumerate(instrs) if re.search(r"\bACQBULK\b", x)), -1)
    access = next((i for i, x in enumerate(instrs) if GLOBAL_ACCESS.search(x)), -1)
    return wait, access


def test_global_access_pattern_sees_the_merge_loads():
    # The pattern the check below relies on: it matches the kernel's partial loads and its
    # stores, not constant or shared memory.
    assert GLOBAL_ACCESS.search("@!P0 LDG.E.U16 R57, desc[UR10][R14.64]")
    assert GLOBAL_ACCESS.search("STG.E.U16 desc[UR10][R2.64], R5")
    assert GLOBAL_ACCESS.search("LDG.E R3, desc[UR10][R4.64]")
    assert not GLOBAL_ACCESS.search("LDC.64 R2, c[0x0][0x210]")
    assert not GLOBAL_ACCESS.search("ULDC.64 UR10, c[0x0][0x208]")
    assert not GLOBAL_ACCESS.search("LDS.128 R4, [R2]")


@needs_cutlass
@needs_cuobjdump
@pytest.mark.parametrize("elems_per_lane", [2, 4, 8])
def test_merge_waits_for_the_decode_grid_before_reading_partials(kernels, elems_per_lane):
    instrs = kernels[elems_per_lane]
    wait, access = first_global_access_after_wait(instrs)
    assert sum(bool(re.search(r"\bACQBULK\b", x)) for x in instrs) == 1, "one griddepcontrol.wait"
    assert access > wait >= 0, (f"{elems_per_lane} per lane: first global access {instrs[access]!r} "
                                f"before the grid-dependency wait (index {wait})")
