"""The split-KV merge kernel (csrc/kernel/merge_splits.cuh, issue 15) as ptxas compiled it,
checked on a machine without a GPU: csrc/launch/merge_splits.cu is compiled for sm_90a with
the library's flags and each instance (2 / 4 / 8 head-dim elements per lane) must have no
spills and two runs of 32 partial loads (LDG.E.U16: the first step's, issued with the LSE
loads, and the split loop's) each issued before the first FFMA that uses a loaded value:
the kernel is latency-bound, and a step whose adds wait on its first load before the other
loads issue pays one L2 round trip per split instead of one per step.

The merge is the decode kernel's programmatic dependent (Programmatic Dependent Launch,
csrc/kernel/grid_dependency.cuh): it may start before the decode grid has finished, so its
griddepcontrol.wait (ACQBULK in sm_90a SASS, read off cuobjdump) must come before its first
global load or store: the partials are the decode kernel's output."""
from __future__ import annotations

import re

import pytest

from host_checker import launch_unit_kernels, needs_cuobjdump, needs_cutlass
from sass_checks import spills

LOADS_PER_STEP = 32  # kMergeLoadsInFlight
# Global memory instructions (not LDC / LDS / STS: constant and shared memory).
GLOBAL_ACCESS = re.compile(r"\b(LDG|STG|LD|ST|ATOMG?|RED|LDGSTS)\.")


def loads_before_first_use(instrs: list[str]) -> list[int]:
    """For each straight-line block (split at branches and their targets) holding partial
    loads: how many issue before the first FFMA reading a loaded value (through its
    HADD2.F32 half -> float conversion)."""
    targets = {m for x in instrs for m in re.findall(r"\bBRA (?:!?U?P\d, )?0x([0-9a-f]+)", x)}
    blocks, cur = [], []
    for x in instrs:
        addr = x.split()[0].lstrip("0") or "0"
        if addr in targets and cur:
            blocks.append(cur)
            cur = []
        cur.append(x)
        if re.search(r"\b(BRA|EXIT)\b", x):
            blocks.append(cur)
            cur = []
    blocks.append(cur)
    out = []
    for block in blocks:
        if sum("LDG.E.U16" in x for x in block) < 2:
            continue
        loaded, issued = set(), 0
        for x in block:
            regs = re.findall(r"\bR\d+\b", x)
            if "LDG.E.U16" in x:
                issued += 1
                loaded.add(regs[0])
            elif "HADD2.F32" in x and any(r in loaded for r in regs[1:]):
                loaded.add(regs[0])
            elif re.search(r"\bFFMA\b", x) and any(r in loaded for r in regs[1:]):
                break
        out.append(issued)
    return out


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
    runs = loads_before_first_use(instrs)
    assert runs.count(LOADS_PER_STEP) >= 2, f"{elems_per_lane} per lane: loads before the first add {runs}"


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
