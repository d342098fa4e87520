"""The summary table of tools/gpu_cp.sh: context-parallel speedup per world size.

    python3 tools/cp_table.py LOG_OR_JSON [...]

Reads the rows that ``python -m torch_fmha.bench --context-parallel`` prints as it goes
(``S=<S>: {json}`` lines of its log, so a run cut short by its time limit still counts)
or its ``--json`` files, and prints one markdown row per (W, batch, S, KV exchange):
1-GPU ms (the single-GPU op on the whole sequence, same process), W-GPU ms, speedup,
exchange-alone ms, share of the exchange hidden behind compute, and the issue's target
(>= 1.8x on 2 GPUs, >= 3.4x on 4 GPUs, at S >= 128k causal).
"""

from __future__ import annotations

import json
import re
import sys
from typing import List, Optional

TARGETS = {2: 1.8, 4: 3.4}
TARGET_MIN_S = 131072
_ROW = re.compile(r"^S=(\d+): (\{.*\})\s*$")


def read_rows(path: str) -> List[dict]:
    """Benchmark rows from a log (``S=...: {json}`` lines) or a ``--json`` file."""
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        try:
            return list(json.loads(text).get("rows", []))
        except ValueError:
            return []
    rows = []
    for line in text.splitlines():
        m = _ROW.match(line.strip())
        if m:
            rows.append(json.loads(m.group(2)))
    return rows


def _ms(x: Optional[float]) -> str:
    if x is None:
        return "n/a"
    return "oom" if x != x else f"{x:.2f}"


def table(rows: List[dict]) -> List[str]:
    out = ["| W | batch | S | exchange | 1 GPU ms | W GPU ms | speedup | comm ms | hidden | target |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    seen = set()
    for r in sorted(rows, key=lambda r: (r["world"], r.get("seqs", 1), r["S"])):
        seqs = r.get("seqs", 1)
        key = (r["world"], seqs, r["S"])
        if key in seen:  # the same row from a log and its json
            continue
        seen.add(key)
        for ex in ("ring", "allgather"):
            if f"ms_{ex}" not in r:
                continue
            t1, tw = r.get("ms_1gpu"), r[f"ms_{ex}"]
            ok = t1 is not None and tw is not None and t1 == t1 and tw == tw and tw > 0
            sp = t1 / tw if ok else None
            h = r.get(f"hidden_{ex}")
            goal = TARGETS.get(r["world"])
            if goal is None or r["S"] < TARGET_MIN_S or sp is None:
                verdict = ""
            else:
                verdict = f">= {goal}x: {'met' if sp >= goal else 'NOT met'}"
            out.append("| " + " | ".join([
                str(r["world"]), "dense B=1" if seqs == 1 else f"packed, {seqs} seqs", str(r["S"]), ex,
                _ms(t1), _ms(tw), "n/a" if sp is None else f"{sp:.2f}x", _ms(r.get(f"ms_comm_{ex}")),
                "n/a" if h is None else f"{100 * h:.0f}%", verdict]) + " |")
    return out


def main(argv: List[str]) -> int:
    rows: List[dict] = []
    for path in argv:
        try:
            rows += read_rows(path)
        except OSError as e:
            print(f"{path}: {e}", file=sys.stderr)
    if not rows:
        print("no benchmark rows found in " + ", ".join(argv))
        return 1
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
