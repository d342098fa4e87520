"""Per-phase cycle counts of the consumers' steady loop from a trace build
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("d", nargs="?", type=int, default=128)
    ap.add_argument("s", nargs="?", type=int, default=4096)
    ap.add_argument("causal", nargs="?", type=int, default=0)
    ap.add_argument("--parse", help="read saved output instead of running")
    a = ap.parse_args()
    if a.parse:
        lines = open(a.parse).read().splitlines()
    else:
        here = os.path.dirname(os.path.abspath(__file__))
        run = subprocess.run([sys.executable, os.path.join(here, "one_launch.py"), str(a.d), str(a.s),
                              str(a.causal), "2"], capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            raise SystemExit(run.stdout[-2000:] + run.stderr[-2000:])
        lines = run.stdout.splitlines()
    print(f"D={a.d} S={a.s} causal={bool(a.causal)}")
    print(report(parse(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
