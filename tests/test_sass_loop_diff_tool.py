"""tools/sass_loop_diff.py on hand-written SASS (no nvcc needed): the same loop reads as the same
schedule; the same instructions in another order keep their counts but lose order (ratio < 1,
session 40's D = 64 case); a spill in the loop shows as a count and a spill change; functions
that are not the forward kernel are left out; the command line reads two dump files."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "sass_loop_diff.py"
_spec = importlib.util.spec_from_file_location("sass_loop_diff", TOOL)
sld = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sld)

KERNEL = "_ZN10torch_fmha6kernel24fmha_fwd_fp8_sm90_kernelI_test_E"


def _dump(loop: list[str], name: str = KERNEL) -> str:
    """A function: one instruction, a loop (its body `loop`, closed by a backward branch), the
    producer's setmaxnreg (consumer_instrs stops there), an exit."""
    body = ["MOV R1, R2", *loop, "@P0 BRA 0x10", "USETMAXREG.DEALLOC.CTAPOOL 0x18", "EXIT"]
    lines = [f"\t\tFunction : {name}"]
    lines += [f"        /*{16 * i:04x}*/                   {ins} ;" for i, ins in enumerate(body)]
    return "\n".join(lines) + "\n"


INTERLEAVED = ["WARPGROUP.ARRIVE", "QGMMA.64x256x32.F32.E4M3.E4M3 R24, gdesc[UR20], RZ, !UP",
               "FFMA R3, R4, R5, R6", "MUFU.EX2 R7, R3", "FFMA R8, R4, R5, R6", "MUFU.EX2 R9, R8",
               "FFMA R10, R4, R5, R6", "MUFU.EX2 R11, R10"]
HOISTED = ["WARPGROUP.ARRIVE", "QGMMA.64x256x32.F32.E4M3.E4M3 R24, gdesc[UR20], RZ, !UP",
           "FFMA R3, R4, R5, R6", "FFMA R8, R4, R5, R6", "FFMA R10, R4, R5, R6",
           "MUFU.EX2 R7, R3", "MUFU.EX2 R9, R8", "MUFU.EX2 R11, R10"]


def test_same_loop_is_the_same_schedule():
    (r,) = sld.compare_sass(_dump(INTERLEAVED), _dump(INTERLEAVED)).values()
    assert r["order_ratio"] == 1.0 and r["count_changes"] == {}
    assert r["length"] == (len(INTERLEAVED) + 1, len(INTERLEAVED) + 1)  # the body and its branch
    assert "(same schedule)" in sld.report({"k": r})


def test_reordered_loop_keeps_counts_and_loses_order():
    (r,) = sld.compare_sass(_dump(INTERLEAVED), _dump(HOISTED)).values()
    assert r["count_changes"] == {}
    assert r["order_ratio"] < 0.9
    assert "(same schedule)" not in sld.report({"k": r})


def test_spill_in_the_loop_is_reported():
    (r,) = sld.compare_sass(_dump(INTERLEAVED), _dump(INTERLEAVED + ["STL [R1+0x8], R3"])).values()
    assert r["spills"] == (0, 1) and r["count_changes"] == {"STL": (0, 1)}
    assert "STL: 0 -> 1" in sld.report({"k": r})


def test_no_loop_is_not_called_the_same_schedule():
    flat = ["WARPGROUP.ARRIVE", "FFMA R3, R4, R5, R6"]  # no backward branch: no steady loop
    text = "\n".join(f"        /*{16 * i:04x}*/                   {x} ;" for i, x in enumerate(flat))
    dump = f"\t\tFunction : {KERNEL}\n{text}\n"
    results = sld.compare_sass(dump, dump)
    assert results[KERNEL]["length"] == (0, 0)
    assert "no steady KV loop" in sld.report(results) and "(same schedule)" not in sld.report(results)


def test_only_forward_kernels_shared_by_both():
    other = _dump(INTERLEAVED, name="_Z12decode_kernelv")
    a = _dump(INTERLEAVED) + other
    assert list(sld.compare_sass(a, _dump(HOISTED))) == [KERNEL]
    assert sld.compare_sass(other, other) == {}


def test_command_line_reads_two_dumps(tmp_path):
    a, b = tmp_path / "a.sass", tmp_path / "b.sass"
    a.write_text(_dump(INTERLEAVED))
    b.write_text(_dump(HOISTED))
    run = subprocess.run([sys.executable, str(TOOL), "--sass", str(a), str(b)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert KERNEL in run.stdout and "opcode order ratio 0." in run.stdout


def test_kernels_of_one_side_are_listed():
    """A knob that adds a kernel instantiation (the masked-tiles kernel) leaves a kernel with no
    partner: compare_sass skips it, unpaired_kernels names it."""
    a = _dump(INTERLEAVED)
    b = a + _dump(INTERLEAVED, name=KERNEL + "_masked")
    assert sld.unpaired_kernels(a, b) == ([], [KERNEL + "_masked"])
    assert sld.unpaired_kernels(a, a) == ([], [])
