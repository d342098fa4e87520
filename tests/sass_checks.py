"""Checks on the kernel's SASS (cuobjdump -sass text) that the structure the
source asks for survived ptxas.

Intra-warpgroup overlap: a consumer round issues S = Q K^T and O += P V as two
wgmma groups, waits for S only (WARPGROUP.DEPBAR.LE gsb0, 0x1), runs the
softmax of S while P V runs, and only then waits for P V
(WARPGROUP.DEPBAR.LE gsb0, 0x0). ptxas is free to move that second wait up
(consumer.cuh, warpgroup_wait_all_pinned, says when it does), which silently
turns the overlap off. `overlap_regions` measures, for every such round, how
many MUFU.EX2 (the softmax's exponentials) issue between the two waits.
"""

from __future__ import annotations

import dataclasses
import re

_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);")


@dataclasses.dataclass
class OverlapRegion:
    wait_s: str        # address of the DEPBAR.LE gsb0, 0x1
    wait_pv: str       # address of the following DEPBAR.LE gsb0, 0x0
    ex2_before: int    # MUFU.EX2 between the two waits (overlapping P V)
    ex2_after: int     # MUFU.EX2 after the P V wait, before the next wgmma / wait

    @property
    def overlapped_fraction(self) -> float:
        total = self.ex2_before + self.ex2_after
        return self.ex2_before / total if total else 0.0


def split_functions(sass: str) -> dict[str, list[str]]:
    """Function name -> its instructions (text after the address, without ';')."""
    funcs: dict[str, list[str]] = {}
    current = None
    for line in sass.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            current = funcs.setdefault(m.group(1), [])
            continue
        if current is not None:
            m = _INSTR.search(line)
            if m:
                current.append(f"{m.group(1)} {m.group(2).strip()}")
    return funcs


def overlap_regions(instrs: list[str]) -> list[OverlapRegion]:
    regions = []
    for i, ins in enumerate(instrs):
        if "WARPGROUP.DEPBAR.LE gsb0, 0x1" not in ins:
            continue
        j, before = i + 1, 0
        while j < len(instrs) and "WARPGROUP.DEPBAR.LE gsb0, 0x0" not in instrs[j]:
            if "GMMA" in instrs[j] or "WARPGROUP.DEPBAR.LE gsb0, 0x1" in instrs[j]:
                break
            before += "MUFU.EX2" in instrs[j]
            j += 1
        if j >= len(instrs) or "WARPGROUP.DEPBAR.LE gsb0, 0x0" not in instrs[j]:
            continue
        k, after = j + 1, 0
        while k < len(instrs) and "GMMA" not in instrs[k] and "WARPGROUP.DEPBAR" not in instrs[k]:
            after += "MUFU.EX2" in instrs[k]
            k += 1
        regions.append(OverlapRegion(ins.split()[0], instrs[j].split()[0], before, after))
    return regions


def serialized_wgmma(instrs: list[str]) -> int:
    """Number of wgmma instructions directly followed by a full wait (ptxas's
    C7514 serialization: every wgmma waited for before the next is issued)."""
    n = 0
    for a, b in zip(instrs, instrs[1:]):
        if "GMMA" in a and "WARPGROUP.DEPBAR.LE gsb0, 0x0" in b:
            n += 1
    return n


def consumer_instrs(instrs: list[str]) -> list[str]:
    """The consumer warpgroups' part of the kernel: everything before the
    producer's `setmaxnreg.dec` (USETMAXREG.DEALLOC), which ptxas places after
    the consumers' code (fmha_fwd_kernel.cuh splits the roles there)."""
    for i, ins in enumerate(instrs):
        if "USETMAXREG.DEALLOC" in ins:
            return instrs[:i]
    return instrs


def spills(instrs: list[str]) -> int:
    """Local-memory loads and stores (register spills) among `instrs`."""
    return sum(1 for ins in instrs if re.search(r"\b(LDL|STL)\b", ins))
