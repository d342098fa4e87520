"""The split-KV decode kernel (csrc/kernel/decode.cuh, issue 15) as ptxas compiled it,
checked on a machine without a GPU: csrc/launch/decode.cu is compiled for sm_90a with
the library's flags and, per head dim and cache kind (dense, paged), its KV-tile loop (the one backward branch around
the tensor-core instructions) must hold the cp.async copies (LDGSTS) and the
ldmatrix.trans reads (LDSM) of the source, the mma count of one 32-key tile (Q K^T: D/32
k32 steps per 8-key group, each two HMMA.16816: f16 mma as written at D = 64 and dense
D = 128, e4m3 mma elsewhere, which sm_90a, without FP8 mma.sync, lowers to two f16 HMMA; P V: 2 k16
steps per D/8 column group), and no more spills than measured (none at D = 64 / 128;
D = 256, 255 registers: at most 4 reloads per 32-key tile; 2 / 3 dense / paged since
session 15, of ~1500 / ~1900 instructions). Each (D, cache kind) has two instantiations:
one row tile (Sq x G <= 16; its tile loop as before row tiles up to register numbering
and, in the paged D = 128 / 256 loops, a few reordered instructions) and several (up to 64
rows, one CTA per 16: 3 / 5 reloads per tile dense / paged at D = 256, allowed 4 / 5), and a
third for packed q (session 36: a CTA's row tiles in a loop, the per-token v_descale copy
before them; 1 / 3 reloads per tile at D = 256 dense / paged, allowed 2 / 4; D = 128 none /
one in the loop; 6 local loads and 2 stores outside it when dense).

The kernel allows its programmatic dependent (the merge kernel) to launch from its start
(csrc/kernel/decode.cuh says why): one griddepcontrol.launch_dependents (PREEXIT in sm_90a
SASS, read off cuobjdump) before its first global load. It is itself launched as the
programmatic dependent of the kernel before it (session 49, csrc/launch/decode.cu), so its
one griddepcontrol.wait (ACQBULK) comes before its first global load or store."""
from __future__ import annotations

import re

import pytest

from host_checker import launch_unit_kernels, needs_cuobjdump, needs_cutlass
from sass_checks import backward_branch_spans, spills

# A global memory access in SASS (as tests/test_merge_sass.py): not constant, shared or local.
GLOBAL_ACCESS = re.compile(r"\b(LDG|STG|LD|ST|ATOMG?|RED|LDGSTS)\.")



@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    # decode_kernel<kD, kPaged, DecodeRows> (its enum mangled as its value: 0 one tile, 1 row
    # tiles, 2 packed q).
    rows = {"0": "one", "1": "tiles", "2": "packed"}
    return {(int(m.group(1)), m.group(2) == "1", rows[m.group(3)]): f for m, f in launch_unit_kernels(
        "decode", tmp_path_factory.mktemp("decode"), r"decode_kernelILi(\d+)ELb([01])ELN\w*DecodeRowsE(\d)E")}


@needs_cutlass
@needs_cuobjdump
@pytest.mark.parametrize("head_dim, paged, rows, function_spills, loop_spills", [
    (64, False, "one", 0, 0), (64, True, "one", 0, 0), (128, False, "one", 0, 0), (128, True, "one", 0, 0),
    (256, False, "one", 8, 4), (256, True, "one", 8, 4),
    (64, False, "tiles", 0, 0), (64, True, "tiles", 0, 0), (128, False, "tiles", 0, 0), (128, True, "tiles", 0, 0),
    (256, False, "tiles", 8, 4), (256, True, "tiles", 10, 5),
    (64, False, "packed", 0, 0), (64, True, "packed", 0, 0), (128, False, "packed", 8, 0), (128, True, "packed", 2, 1),
    (256, False, "packed", 6, 2), (256, True, "packed", 10, 4)])
def test_decode_tile_loop_survives_ptxas(kernels, head_dim, paged, rows, function_spills, loop_spills):
    instrs = kernels[head_dim, paged, rows]
    assert spills(instrs) <= function_spills
    loops = [instrs[lo:hi + 1] for lo, hi in backward_branch_spans(instrs)]
    loop = max(loops, key=lambda seg: sum("HMMA" in x for x in seg))
    hmma = sum("HMMA.16816.F32" in x for x in loop)
    qk = 4 * (head_dim // 32) * 2  # 4 key groups x k32 steps x 2 f16 mma each
    pv = 2 * (head_dim // 8)       # 2 k16 steps x D / 8 column groups
    assert hmma == qk + pv, f"D={head_dim}: {hmma} HMMA in the tile loop, expected {qk + pv}"
    assert sum("LDGSTS" in x for x in loop) == 2 * head_dim // 16, "cp.async copies of K and V"
    assert sum("LDSM.16.MT88.4" in x for x in loop) == head_dim // 8, "ldmatrix.x4.trans of V: 2 per 16 columns"
    assert spills(loop) <= loop_spills


@needs_cutlass
@needs_cuobjdump
@pytest.mark.parametrize("rows", ["one", "tiles", "packed"])
@pytest.mark.parametrize("head_dim, paged", [(64, False), (64, True), (128, False), (128, True),
                                             (256, False), (256, True)])
def test_decode_allows_the_merge_launch_before_its_first_load(kernels, head_dim, paged, rows):
    instrs = kernels[head_dim, paged, rows]
    triggers = [i for i, x in enumerate(instrs) if re.search(r"\bPREEXIT\b", x)]
    first_load = next(i for i, x in enumerate(instrs) if re.search(r"\b(LDG|LDGSTS)\.", x))
    assert len(triggers) == 1 and triggers[0] < first_load, (triggers, first_load)


@needs_cutlass
@needs_cuobjdump
@pytest.mark.parametrize("rows", ["one", "tiles", "packed"])
@pytest.mark.parametrize("head_dim, paged", [(64, False), (64, True), (128, False), (128, True),
                                             (256, False), (256, True)])
def test_decode_waits_for_the_kernel_before_it_before_any_global_access(kernels, head_dim, paged, rows):
    # Launched with programmatic stream serialization, the grid may run while the kernel before
    # it on the stream drains (q or the cache being written, or their memory still read): one
    # griddepcontrol.wait, before the first global load or store of any kind.
    instrs = kernels[head_dim, paged, rows]
    waits = [i for i, x in enumerate(instrs) if re.search(r"\bACQBULK\b", x)]
    first_access = next(i for i, x in enumerate(instrs) if GLOBAL_ACCESS.search(x))
    assert len(waits) == 1 and waits[0] < first_access, (waits, first_access, instrs[first_access])
