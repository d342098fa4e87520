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


# The KernelVariant template argument of a forward kernel's name, mangled (cuobjdump) or
# demangled (torch.profiler: "..., (torch_fmha::kernel::KernelVariant)1>").
_VARIANT = re.compile(r"LNS\d_13KernelVariantE(\d)E|, \(torch_fmha::kernel::KernelVariant\)(\d)")


def kernel_variant(name: str) -> str:
    """Which instantiation of the forward kernel a mangled or demangled name is
    (tile_scheduler.cuh, KernelVariant): "whole" (every launch the other two do not take),
    "split" (launches whose split tail is active) or "masked" (causal and windowed launches of
    the builds with the half first block)."""
    m = _VARIANT.search(name)
    assert m, f"not a forward kernel instantiation: {name}"
    return {"0": "whole", "1": "split", "2": "masked"}[m.group(1) or m.group(2)]


def kernel_build(name: str) -> str:
    """A forward kernel's name without its KernelVariant: the build (traits and scheduler) whose
    kernels those are."""
    assert _VARIANT.search(name), f"not a forward kernel instantiation: {name}"
    return _VARIANT.sub("", name)


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


def backward_branch_spans(instrs: list[str]) -> list[tuple[int, int]]:
    """(index of the target, index of the branch) of every backward BRA, predicated
    (P / UP) or not, whose target is among `instrs`."""
    addrs = [int(x.split()[0], 16) for x in instrs]
    where = {a: i for i, a in enumerate(addrs)}
    out = []
    for i, x in enumerate(instrs):
        m = re.search(r"\bBRA (?:!?U?P\d, )?0x([0-9a-f]+)", x)
        if m and int(m.group(1), 16) < addrs[i] and int(m.group(1), 16) in where:
            out.append((where[int(m.group(1), 16)], i))
    return out


def opcode_of(instr: str) -> str:
    """The opcode of one split_functions instruction ("<addr> [@P] OPCODE operands")."""
    words = instr.split()[1:]
    return words[1] if words[0].startswith("@") else words[0]


def longest_run(instrs: list[str], opcode: str) -> int:
    """The longest run of consecutive `opcode` instructions (predicated or not) in `instrs`."""
    best = cur = 0
    for ins in instrs:
        cur = cur + 1 if opcode_of(ins) == opcode else 0
        best = max(best, cur)
    return best


def spills(instrs: list[str]) -> int:
    """Local-memory loads and stores (register spills) among `instrs`."""
    return sum(1 for ins in instrs if re.search(r"\b(LDL|STL)\b", ins))


def steady_loop(instrs: list[str]) -> list[str]:
    """The consumers' steady-state KV loop: the smallest loop (a backward
    `BRA` and the instructions from its target to it) that holds both a wgmma
    and a MUFU.EX2. Empty if there is none."""
    addr = [int(ins.split()[0], 16) for ins in instrs]
    index = {a: i for i, a in enumerate(addr)}
    best: list[str] = []
    for i, ins in enumerate(instrs):
        m = re.search(r"\bBRA (?:`\()?0x([0-9a-f]+)", ins)
        if not m or int(m.group(1), 16) >= addr[i] or int(m.group(1), 16) not in index:
            continue
        body = instrs[index[int(m.group(1), 16)]:i + 1]
        if any("GMMA" in x for x in body) and any("MUFU.EX2" in x for x in body):
            if not best or len(body) < len(best):
                best = body
    return best


def lane_chunk_stores(instrs: list[str]) -> dict[str, int]:
    """Global stores by width. The lane-chunk epilogue (epilogue.cuh, store_output_lane_chunks)
    stores every lane's whole 8-column chunks from the registers: fp8 output 8 bytes a store
    ("fp8"), bf16 / fp16 16 bytes ("16-bit"); "pairs" counts the 2-byte stores of an fp8
    column pair (store_output_pairs, D = 64 with a standard v), which that path has none of."""
    count = lambda pattern: sum(1 for ins in instrs if re.search(pattern, ins))
    return {"fp8": count(r"\bSTG\.E\.64\b"), "16-bit": count(r"\bSTG\.E\.128\b"),
            "pairs": count(r"\bSTG\.E\.U16\b")}


def check_lane_chunk_stores(consumers: list[str], head_dim: int, name: str = "") -> None:
    """Asserts the lane-chunk epilogue's stores in a kernel's consumer code: both rows
    of a thread, every 32-column chunk, in each output width, at one call site at least; no
    2-byte column-pair store."""
    n = lane_chunk_stores(consumers)
    assert n["fp8"] >= 2 * head_dim // 32, f"{n['fp8']} 8-byte stores for fp8 output: {name}"
    assert n["16-bit"] >= 2 * head_dim // 32, f"{n['16-bit']} 16-byte stores for 16-bit output: {name}"
    assert n["pairs"] == 0, f"{n['pairs']} 2-byte column-pair stores: {name}"


def lane_chunk_builds_have(head_dim: int, packed_v: bool) -> bool:
    """Whether a forward build stores lane chunks (kernel_traits.cuh, Traits::kLaneChunkStores:
    V^T's rows permuted in every build but D = 64's of a standard v); the others store
    column pairs."""
    return packed_v or head_dim != 64


def shared_stores_while_pv_in_flight(instrs: list[str], pv_shape: str) -> list[str]:
    """Shared-memory stores (STS) issued, in program order, after a P V wgmma that reads P from
    shared memory (a QGMMA of shape `pv_shape`, e.g. "64x128x32", with a `gdesc` A operand)
    and before the next `WARPGROUP.DEPBAR.LE gsb0, 0x0`: stores that could overwrite the P
    tile while that wgmma still reads it (consumer.cuh, store_p_smem). It follows the code's
    layout, not every path: a branch laid out after a P V issue counts, and a wait on an arm
    laid out before a store clears the P V even if that arm is not the one taken."""
    bad, in_flight = [], False
    for ins in instrs:
        if "QGMMA." + pv_shape in ins and re.search(r"QGMMA\S* R\d+, gdesc\[", ins):
            in_flight = True
        elif "WARPGROUP.DEPBAR.LE gsb0, 0x0" in ins:
            in_flight = False
        elif in_flight and re.search(r"\bSTS(\.\d+)?\b", ins):
            bad.append(ins)
    return bad
