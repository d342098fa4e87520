"""Summary of Nsight Compute's per-instruction SASS page (the `.sass.csv` that
tools/prof/ncu_profile.sh writes, `ncu --page source --print-source sass --csv`):
where a kernel's issued instructions and its warps' stall samples go.

    python3 tools/prof/sass_page_summary.py OURS.sass.csv [PEER.sass.csv ...]

Per file:
  - warp instructions executed, and their share per opcode (the mnemonic before
    its first '.', predicates stripped);
  - warp-state samples per stall reason (share of all samples);
  - the opcodes that collect the most `stall_wait` samples (a fixed stall count
    ptxas encoded after the previous instruction);
  - the barrier waits (SYNCS...TRYWAIT) executed most often, and how often per pass
    of the hot loop (more than once: a failed wait retried);
  - the instructions executed most often in a row that holds a wgmma: the
    hot loop as a sequence of opcode(samples), for reading the schedule of a
    kernel whose source one does not have (cuDNN's runtime-compiled kernels).

The page's execution counts come from an instrumented replay, which runs slower than
the kernel does: a wait that retries in a loop runs more often there. Where
ncu_profile.sh's `.details.txt` lies next to the page, its hardware count
("Executed Instructions") is printed beside the page's total; trust that one.
(Session 22: the page put 9.6% of our D = 128 kernel's instructions in one retry
loop; the hardware total was the page's minus that loop, and only 100 of 73514
samples fell in it.)
"""

from __future__ import annotations

import csv
import re
import sys
from collections import Counter
from pathlib import Path


def load(path: str) -> list[dict]:
    rows = list(csv.reader(open(path)))
    header = next(i for i, r in enumerate(rows) if r and r[0] == "Address")
    names = rows[header]
    out = []
    for r in rows[header + 1:]:
        if len(r) != len(names):
            continue
        rec = dict(zip(names, r))
        src = rec["Source"].strip()
        rec["op"] = re.sub(r"^@!?U?P[T0-9] +", "", src).split(" ")[0].split(".")[0] if src else ""
        rec["src"] = src
        rec["executed"] = int(rec.get("Instructions Executed") or 0)
        rec["samples"] = int(rec.get("Warp Stall Sampling (All Samples)") or 0)
        out.append(rec)
    return out


def pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def summarize(path: str, top: int = 12) -> None:
    recs = load(path)
    executed = sum(r["executed"] for r in recs)
    samples = sum(r["samples"] for r in recs)
    print(f"== {path}: {executed} warp instructions executed, {samples} samples")
    details = Path(path.replace(".sass.csv", ".details.txt"))
    if path.endswith(".sass.csv") and details.exists():
        m = re.search(r"^\s*Executed Instructions\s+inst\s+([\d,]+)", details.read_text(), re.M)
        if m:
            print(f"  hardware count (details page, Executed Instructions): {m.group(1).replace(',', '')}")
    mix = Counter()
    for r in recs:
        mix[r["op"]] += r["executed"]
    print("  opcodes: " + ", ".join(f"{op} {pct(n, executed)}" for op, n in mix.most_common(top)))
    stall_cols = [c for c in recs[0] if c.startswith("stall_") and "Not Issued" not in c] if recs else []
    stalls = Counter({c[len("stall_"):]: sum(int(r[c] or 0) for r in recs) for c in stall_cols})
    total = sum(stalls.values())
    print("  stalls: " + ", ".join(f"{k} {pct(v, total)}" for k, v in stalls.most_common(top) if v))
    if "stall_wait" in stall_cols:
        wait = Counter()
        for r in recs:
            wait[r["op"]] += int(r["stall_wait"] or 0)
        print("  stall_wait by opcode: " + ", ".join(f"{op} {n}" for op, n in wait.most_common(6)))
    hot = max((r["executed"] for r in recs if r["op"] in ("QGMMA", "HGMMA")), default=0)
    waits = sorted((r for r in recs if "TRYWAIT" in r["src"] and r["executed"]), key=lambda r: -r["executed"])
    for r in waits[:3]:
        per_pass = f", {r['executed'] / hot:.1f} per pass of the hot loop" if hot else ""
        print(f"  barrier wait at ...{r['Address'][-5:]}: executed {r['executed']} times "
              f"({pct(r['executed'], executed)} of the page's instructions{per_pass}): {r['src'][:60]}")
    if hot:
        seq = [f"{r['op']}({r['samples']})" for r in recs if r["executed"] == hot]
        print(f"  loop executed {hot} times ({len(seq)} instructions):")
        line = "   "
        for item in seq:
            if len(line) + len(item) > 118:
                print(line)
                line = "   "
            line += " " + item
        print(line)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for p in sys.argv[1:]:
        summarize(p)
