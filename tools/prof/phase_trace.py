"""Per-phase cycle counts of the consumers' steady loop, and of each tile's fixed
part (first S, last P V, epilogue), from a trace build
(csrc/kernel/phase_trace.cuh). On the GPU machine, after `source tools/gpu_env.sh`:

    TORCH_FMHA_NVCC_EXTRA=-DTORCH_FMHA_TRACE=1 python3 tools/prof/phase_trace.py 128 4096 0

runs tools/prof/one_launch.py on that build (two launches; the second one's
trace is used) and prints, per consumer warpgroup, the median cycles of each
phase of a KV block and the median block period, then how far warpgroup 1's
round lags warpgroup 0's. Without a GPU: `--parse FILE` reads saved output."""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

# Printed columns: top, operands, issued, s_done, softmax (only where the P V wait is
# pinned), pv_done, end (phase_trace.cuh).
PHASES = [("operands", "top", "K / V^T mbarrier waits"),
          ("issued", "operands", "turn wait + GEMM issue"),
          ("s_done", "issued", "S wait"),
          ("pv_done", "s_done", "P V wait + max + exp2 (+ row sum)"),
          ("end", "pv_done", "O rescale + P pack")]


TILE_POINTS = ["top", "first_s_done", "first_p", "steady_done", "last_issued", "pv_final", "stored"]
TILE_PHASES = [("first_s_done", "top", "first S (alone: no tile overlap)"),
               ("first_p", "first_s_done", "first block's softmax + pack"),
               ("steady_done", "first_p", "steady rounds"),
               ("last_issued", "steady_done", "next tile fetched, last round issued"),
               ("pv_final", "last_issued", "last P V wait (+ next first softmax), finalize"),
               ("stored", "pv_final", "epilogue stores"),
               ("next_top", "stored", "to the next tile")]


def parse_tiles(lines):
    """{wg: [ {point: clock} per tile ]} from the last printed set of tile lines."""
    runs, cur = [], {}
    for ln in lines:
        if not ln.startswith("tile wg="):
            continue
        head, idx, *vals = ln.split()[1:]
        wg, n = int(head.split("=")[1]), int(idx.split("=")[1])
        if wg == 0 and n == 0 and cur:
            runs.append(cur)
            cur = {}
        cur.setdefault(wg, []).append(dict(zip(TILE_POINTS, (int(x) for x in vals))))
    if cur:
        runs.append(cur)
    return runs[-1] if runs else {}


def tile_report(tiles) -> str:
    out = []
    for wg, rows in sorted(tiles.items()):
        for i in range(len(rows) - 1):
            rows[i]["next_top"] = rows[i + 1]["top"]
        done = [r for r in rows[1:] if r["top"] and r["stored"] and r.get("next_top")]
        if not done:
            continue
        out.append(f"warpgroup {wg}: {len(done)} tiles (median cycles; first S / softmax only where "
                   f"the previous tile's last round did not start this one)")
        for to, frm, what in TILE_PHASES:
            vals = [d(r[to], r[frm]) for r in done if r.get(to) and r.get(frm)]
            if vals:
                out.append(f"  {what:<40} {statistics.median(vals):7.0f} cycles ({len(vals)} tiles)")
        out.append(f"  {'tile total':<40} {statistics.median(d(r['next_top'], r['top']) for r in done):7.0f} cycles")
    return "\n".join(out)


def parse(lines):
    """{wg: {it: {point: clock}}} from the last full trace in `lines`."""
    runs, cur = [], {}
    for ln in lines:
        if not ln.startswith("trace wg="):
            continue
        head, *vals = ln.split()[1:]
        wg = int(head.split("=")[1])
        it = int(vals[0].split("=")[1])
        nums = [int(x) for x in vals[1:]]
        if wg == 0 and it == 1 and cur:
            runs.append(cur)
            cur = {}
        cur.setdefault(wg, {})[it] = dict(zip(["top", "operands", "issued", "s_done", "softmax",
                                                "pv_done", "end"], nums))
    if cur:
        runs.append(cur)
    if not runs:
        raise SystemExit("no trace lines: was the build made with -DTORCH_FMHA_TRACE=1?")
    return runs[-1]


def d(a, b):
    return (a - b) & 0xFFFFFFFF  # 32-bit clock wraps


def report(trace) -> str:
    out = []
    for wg, rows in sorted(trace.items()):
        its = sorted(rows)[2:-1] or sorted(rows)  # skip the ramp-up and the last block
        out.append(f"warpgroup {wg}: {len(its)} blocks")
        for to, frm, what in PHASES:
            out.append(f"  {what:<36} {statistics.median(d(rows[i][to], rows[i][frm]) for i in its):7.0f} cycles")
        periods = [d(rows[i + 1]["top"], rows[i]["top"]) for i in its if i + 1 in rows]
        if periods:
            out.append(f"  {'block period (top to top)':<36} {statistics.median(periods):7.0f} cycles")
    if 0 in trace and 1 in trace:
        lags = [d(trace[1][i]["issued"], trace[0][i]["issued"]) for i in trace[0] if i in trace[1]]
        lags = [x if x < 2**31 else x - 2**32 for x in lags]
        out.append(f"warpgroup 1 issues its GEMMs {statistics.median(lags):.0f} cycles after warpgroup 0 "
                   f"(median over blocks; the ideal ping-pong is half a period)")
    return "\n".join(out)


def one_launch_lines(d: int, s: int, causal: int | str, launches: int, who: str = "ours") -> list[str]:
    """stdout lines of tools/prof/one_launch.py (on the trace build the environment selects);
    causal is its MASK argument: 0, 1 or "wLEFT" (a window (LEFT, 0));
    exits with its output when it fails. grid_timeline.py runs it the same way."""
    here = os.path.dirname(os.path.abspath(__file__))
    run = subprocess.run([sys.executable, os.path.join(here, "one_launch.py"), str(d), str(s),
                          str(causal), str(launches), who], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        raise SystemExit(run.stdout[-2000:] + run.stderr[-2000:])
    return run.stdout.splitlines()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("d", nargs="?", type=int, default=128)
    ap.add_argument("s", nargs="?", type=int, default=4096)
    ap.add_argument("causal", nargs="?", type=int, default=0)
    ap.add_argument("--who", default="ours",
                    help="what one_launch.py runs (ours, packedv, packedvcap30, ...)")
    ap.add_argument("--parse", help="read saved output instead of running")
    a = ap.parse_args()
    if a.parse:
        lines = open(a.parse).read().splitlines()
    else:
        lines = one_launch_lines(a.d, a.s, a.causal, 2, a.who)
    print(f"D={a.d} S={a.s} causal={bool(a.causal)} {a.who}")
    print(report(parse(lines)))
    tiles = parse_tiles(lines)
    if tiles:
        print("per tile:")
        print(tile_report(tiles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
