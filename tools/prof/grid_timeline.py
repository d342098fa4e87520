"""Where a launch's time goes across the grid, from a TORCH_FMHA_TRACE=2 build's grid
timeline (csrc/kernel/phase_trace.cuh): every CTA's tiles with the global timer at their
top, final P V and stored points, their split role and KV blocks. On the GPU machine, after
`source tools/gpu_env.sh`:

    TORCH_FMHA_NVCC_EXTRA=-DTORCH_FMHA_TRACE=2 python3 tools/prof/grid_timeline.py 128 2048 0 packedv

(D, S, the mask: 0, 1 for causal or w1024 for the benchmark's window (1024, 0), and v) runs tools/prof/one_launch.py on that build and reports, for the last launch:
  - the makespan (first tile top to last store), the CTAs' end times against it (the
    idle share of the grid's time), and when the last round started;
  - the median duration of whole tiles and of split pieces (tile_scheduler.cuh, split
    tail) per KV-block count, and of the step from the final P V to the stored point (the
    epilogue, or a piece's exchange and merge).
Without a GPU: `--parse FILE` reads saved output. Warpgroup 0's marks are used (both
consumer warpgroups walk the same tiles). The build records 24 tiles per CTA and 264 CTAs at
most (the D = 128 grid cells run about 16 per CTA, D = 64's about 31): the report warns when a
CTA reached that limit."""
from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict

import phase_trace  # this directory (sys.path[0] when run as a script)

ROLES = {0: "whole", 1: "tail piece", 2: "head piece"}
GRID_TILES = 24  # phase_trace.cuh's PhaseTrace::kGridTiles: tiles recorded per CTA


def parse(lines):
    """[{cta: [tile dicts]}] per launch, in launch order."""
    launches, cur = [], defaultdict(list)
    for ln in lines:
        if not ln.startswith("gtile "):
            continue
        f = ln.split()
        cta, wg, n = (int(x.split("=")[1]) for x in f[1:4])
        if wg != 0:
            continue
        if cta == 0 and n == 0 and cur:
            launches.append(dict(cur))
            cur = defaultdict(list)
        role, blocks, top, pv, stored = (int(x) for x in f[4:9])
        cur[cta].append({"n": n, "role": role, "blocks": blocks, "top": top, "pv": pv, "stored": stored})
    if cur:
        launches.append(dict(cur))
    return launches


def us(ns):
    return ns / 1000.0


def report(ctas) -> str:
    out = []
    full = sorted(c for c, ts in ctas.items() if len(ts) >= GRID_TILES)
    if full:
        out.append(f"WARNING: {len(full)} CTAs (first {full[0]}) reached the trace's {GRID_TILES}-tile "
                   f"limit: their later tiles are not recorded, so the makespan, CTA ends and idle "
                   f"share below cover the recorded tiles only")
    t0 = min(t["top"] for ts in ctas.values() for t in ts)
    ends = {c: max(t["stored"] or t["pv"] for t in ts) - t0 for c, ts in ctas.items()}
    makespan = max(ends.values())
    g = len(ctas)
    idle = sum(makespan - e for e in ends.values()) / (g * makespan)
    srt = sorted(ends.values())
    out.append(f"{g} CTAs, {sum(len(ts) for ts in ctas.values())} tiles; makespan {us(makespan):.1f} us; "
               f"CTA ends min / median / max {us(srt[0]):.1f} / {us(srt[g // 2]):.1f} / {us(srt[-1]):.1f} us; "
               f"idle share of the grid's time {100 * idle:.1f}%")
    last_tops = sorted(ts[-1]["top"] - t0 for ts in ctas.values())
    out.append(f"last tile's top: min {us(last_tops[0]):.1f}, median {us(last_tops[g // 2]):.1f}, "
               f"max {us(last_tops[-1]):.1f} us")
    by = defaultdict(list)
    step = defaultdict(list)
    for ts in ctas.values():
        for t in ts:
            if t["stored"] and t["top"]:
                by[(t["role"], t["blocks"])].append(t["stored"] - t["top"])
            if t["stored"] and t["pv"]:
                step[t["role"]].append(t["stored"] - t["pv"])
    out.append("duration top -> stored (median us, count) per role and KV blocks:")
    for (role, blocks), v in sorted(by.items()):
        out.append(f"  {ROLES.get(role, role):<10} {blocks:3d} blocks: {us(statistics.median(v)):6.2f} us ({len(v)})")
    out.append("final P V -> stored (epilogue; a piece's exchange and merge), median / max us:")
    for role, v in sorted(step.items()):
        out.append(f"  {ROLES.get(role, role):<10} {us(statistics.median(v)):6.2f} / {us(max(v)):6.2f} ({len(v)})")
    # Gaps between a tile's store and the next tile's top (the next tile's start).
    gaps = defaultdict(list)
    for ts in ctas.values():
        for a, b in zip(ts, ts[1:]):
            if a["stored"]:
                gaps[a["role"]].append(b["top"] - a["stored"])
    out.append("stored -> next top, median / max us, after:")
    for role, v in sorted(gaps.items()):
        out.append(f"  {ROLES.get(role, role):<10} {us(statistics.median(v)):6.2f} / {us(max(v)):6.2f} ({len(v)})")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("d", nargs="?", type=int, default=128)
    ap.add_argument("s", nargs="?", type=int, default=2048)
    ap.add_argument("causal", nargs="?", default="0",
                    help="0, 1 (causal) or wLEFT, a sliding window (LEFT, 0) (one_launch.py's MASK)")
    ap.add_argument("who", nargs="?", default="packedv")
    ap.add_argument("--parse", help="read saved output instead of running")
    a = ap.parse_args()
    if a.parse:
        lines = open(a.parse).read().splitlines()
    else:
        lines = phase_trace.one_launch_lines(a.d, a.s, a.causal, 3, a.who)
    launches = parse(lines)
    if not launches:
        print("no gtile lines: was the build made with -DTORCH_FMHA_TRACE=2?", file=sys.stderr)
        return 1
    print(f"D={a.d} S={a.s} causal={a.causal} {a.who}: launch {len(launches)} of {len(launches)}")
    print(report(launches[-1]))
    # CTA 0's per-tile phases (the same build prints phase_trace.py's tile lines too).
    tiles = phase_trace.parse_tiles(lines)
    if tiles:
        print("CTA 0, per tile (phase_trace.py):")
        print(phase_trace.tile_report(tiles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
