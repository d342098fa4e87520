"""Did a kernel change leave the consumers' steady KV loop as ptxas scheduled it?

Compiles one launch unit (csrc/launch/<unit>.cu) for sm_90a twice, with the library's flags
plus each side's extra flags (tuning knobs, -D...), or reads two `cuobjdump -sass` files, and
for every forward kernel found in both prints the steady loop's length and spills, the kernel's
serialised wgmmas, the loop's opcodes whose counts differ, and how much of the loop's opcode
sequence is in the same order (difflib's ratio: 1.0 is the same schedule up to register names).

Why: ptxas schedules the whole kernel at once, so code added outside the loop can reorder the
loop. Session 40's half first block (DESIGN section 7) touched no instruction of the D = 64
steady loop, yet moved 58 exp-argument FFMAs ahead of the MUFU.EX2s they had been interleaved
with (ratio 0.91), and that build ran 9-14% slower. A ratio below 1 means the change's
measurement is also a measurement of a new loop schedule. No GPU. Compiling a unit needs nvcc,
cuobjdump and the package importable with its test extras (tests/host_checker.py finds the
tools and the flags as the SASS tests do); --sass needs neither.

    python3 tools/sass_loop_diff.py fwd_fp8_hdim64 --b-flags "-DTORCH_FMHA_TUNE_HALF_FIRST_BLOCK_64=1"
    python3 tools/sass_loop_diff.py --sass before.sass after.sass

Another commit's SASS: compile it from that commit's checkout (e.g. a git worktree) with
PYTHONPATH set to that checkout. The compile takes csrc/ from the importable package
(torch_fmha._build.source_root), and an editable install of the main checkout wins over a
worktree's tests/ on sys.path: without PYTHONPATH both sides compile the same sources (session 45
caught itself comparing its tree with itself that way).
"""
from __future__ import annotations

import argparse
import collections
import difflib
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sass_checks import (consumer_instrs, opcode_of, serialized_wgmma, spills, split_functions,  # noqa: E402
                         steady_loop)

KERNEL = "fmha_fwd_fp8_sm90_kernel"


def compare_loops(a: list[str], b: list[str]) -> dict:
    """The steady loops of two versions of one kernel (split_functions instructions)."""
    loop_a, loop_b = (steady_loop(consumer_instrs(x)) for x in (a, b))
    ops_a, ops_b = [opcode_of(x) for x in loop_a], [opcode_of(x) for x in loop_b]
    count_a, count_b = collections.Counter(ops_a), collections.Counter(ops_b)
    return {
        "length": (len(loop_a), len(loop_b)),
        "spills": (spills(loop_a), spills(loop_b)),
        "serialized_wgmma": (serialized_wgmma(a), serialized_wgmma(b)),
        "count_changes": {op: (count_a[op], count_b[op]) for op in sorted(count_a.keys() | count_b.keys())
                          if count_a[op] != count_b[op]},
        "order_ratio": difflib.SequenceMatcher(None, ops_a, ops_b, autojunk=False).ratio() if ops_a or ops_b else 1.0,
    }


def compare_sass(sass_a: str, sass_b: str) -> dict[str, dict]:
    """compare_loops for every forward kernel the two dumps share, by mangled name."""
    fa, fb = split_functions(sass_a), split_functions(sass_b)
    return {name: compare_loops(fa[name], fb[name]) for name in sorted(fa.keys() & fb.keys()) if KERNEL in name}


def unpaired_kernels(sass_a: str, sass_b: str) -> tuple[list[str], list[str]]:
    """The forward kernels only one dump has (A's, B's), e.g. the masked-tiles kernel
    (tile_scheduler.cuh, KernelVariant) of a build whose knob adds it: compare_sass skips them."""
    fa, fb = split_functions(sass_a), split_functions(sass_b)
    return (sorted(n for n in fa.keys() - fb.keys() if KERNEL in n),
            sorted(n for n in fb.keys() - fa.keys() if KERNEL in n))


def report(results: dict[str, dict]) -> str:
    if not results:
        return "no forward kernel in both dumps"
    lines = []
    for name, r in results.items():
        if r["length"] == (0, 0):
            lines.append(f"{name}\n  no steady KV loop on either side")
            continue
        same = r["order_ratio"] == 1.0 and not r["count_changes"]
        lines.append(f"{name}\n  steady loop {r['length'][0]} -> {r['length'][1]} instructions, spills "
                     f"{r['spills'][0]} -> {r['spills'][1]}, kernel's serialised wgmma {r['serialized_wgmma'][0]} -> "
                     f"{r['serialized_wgmma'][1]}, opcode order ratio {r['order_ratio']:.4f}"
                     + ("  (same schedule)" if same else ""))
        for op, (x, y) in r["count_changes"].items():
            lines.append(f"    {op}: {x} -> {y}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("unit", nargs="?", help="a launch unit, e.g. fwd_fp8_hdim128_packed_v")
    ap.add_argument("--a-flags", default="", help="extra nvcc flags of side A (default: none)")
    ap.add_argument("--b-flags", default="", help="extra nvcc flags of side B")
    ap.add_argument("--sass", nargs=2, metavar=("A", "B"), help="compare two cuobjdump -sass files instead")
    args = ap.parse_args(argv)
    if args.sass:
        sass_a, sass_b = (Path(p).read_text() for p in args.sass)
    elif args.unit:
        from host_checker import launch_unit_sass
        with tempfile.TemporaryDirectory() as tmp:
            sass_a = launch_unit_sass(args.unit, Path(tmp), tuple(shlex.split(args.a_flags)))
            sass_b = launch_unit_sass(args.unit, Path(tmp), tuple(shlex.split(args.b_flags)))
    else:
        ap.error("give a launch unit or --sass A B")
    print(report(compare_sass(sass_a, sass_b)))
    for side, names in zip("AB", unpaired_kernels(sass_a, sass_b)):
        for name in names:
            print(f"{name}\n  only in {side}: not compared")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
