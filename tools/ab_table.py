"""Table of tools/gpu_ab.sh / tools/gpu_tune.sh runs: per case and variant, the
median ours / cuDNN FP8 ratio over the rounds with its min-max spread, and our
median TFLOP/s (only that with --out-dtype bf16, which cuDNN FP8 cannot write).
Serving-feature runs (bench --softcap / --sinks / --paged) give per feature row
the throughput ratio with / without the feature (time without / time with) and
the TFLOP/s with it, and per base path ("plain dense", "plain varlen") a row with
the TFLOP/s without it. Every variant after the first also gets its median TFLOP/s
against the first variant's, in percent, and whether the two variants' per-round
TFLOP/s ranges overlap ("~": they do, so the change is within the rounds' spread). Files are named <prefix>_<variant>_<round>.json; a file
holding several runs under "runs" (docs/bench_serving_paged_h200_2026-11-29_s21.json)
is read as its runs, each named by its key the same way. An optional --only PREFIX keeps
the runs whose name starts with PREFIX (e.g. call3/paged16)."""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def _runs(paths: list[str], only: str) -> list[tuple[str, dict]]:
    """(name, data) per run: a file, or each entry of a file's "runs"."""
    out = []
    for path in sorted(paths):
        data = json.load(open(path))
        if "runs" in data:
            out += [(name, run) for name, run in sorted(data["runs"].items()) if name.startswith(only)]
        elif Path(path).name.startswith(only) or not only:
            out.append((path, data))
    return out


def main(argv: list[str]) -> None:
    only = ""
    if "--only" in argv:
        i = argv.index("--only")
        only = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    ratio = defaultdict(lambda: defaultdict(list))  # case -> variant -> [ours / cuDNN]
    ours = defaultdict(lambda: defaultdict(list))   # case -> variant -> [TFLOP/s]
    variants: list[str] = []
    serving = False
    for path, data in _runs(argv, only):
        variant = Path(path).stem.split("_", 1)[1].rsplit("_", 1)[0]
        if variant not in variants:
            variants.append(variant)
        plain_seen = set()  # one base time per (path, D, causal, S) and file
        for row in data.get("serving_rows", []):  # bench --paged / --softcap / --sinks
            serving = True
            # ratio = TF/s with the feature / without it (time without / time with)
            key = (row["feature"], row["D"], str(row["causal"]), row["S"])
            ours[key][variant].append(row["feature_tflops"])
            ratio[key][variant].append(row["ratio"])
            plain = (f"plain {row['path']}",) + key[1:]
            if plain not in plain_seen:
                plain_seen.add(plain)
                ours[plain][variant].append(row["base_tflops"])
        for row in data.get("rows", []):
            key = (row["case"], row["D"], str(row["causal"]), row["seqlen"])
            t = row["tflops"]
            if t.get("ours FP8") is not None:
                ours[key][variant].append(t["ours FP8"])
                if t.get("cuDNN FP8") is not None:  # none for bf16 output (cuDNN FP8 writes FP8)
                    ratio[key][variant].append(t["ours FP8"] / t["cuDNN FP8"])
    width = max([7] + [len(k[0]) for k in ours])
    head = f"{'case':{width}} {'D':>4} {'causal':>14} {'S':>6}"
    cw = 22 if len(variants) < 2 else 30  # room for the change against the first variant
    print(head + "".join(f" | {v[:cw]:>{cw}}" for v in variants))
    label = "with/w.o. [spread] TF" if serving else "ours/cuDNN [spread] TF"
    print(" " * len(head) + "".join(f" | {label + ('' if v == variants[0] else ' vs 1st'):>{cw}}" for v in variants))
    for key in sorted(ours):
        cells = []
        first = ours[key].get(variants[0], [])
        for v in variants:
            rs, ts = ratio[key].get(v, []), ours[key].get(v, [])
            if not ts:
                cells.append("-")
                continue
            tf = statistics.median(ts)
            if rs:
                cell = f"{statistics.median(rs):.3f} [{min(rs):.2f}-{max(rs):.2f}] {tf:5.0f}"
            else:
                cell = f"{'':>16}{tf:6.0f}"
            if v != variants[0] and first:
                cell += f" {tf_change(first, ts)}"
            elif cw > 22:
                cell += " " * 8
            cells.append(cell)
        print(f"{key[0]:{width}} {key[1]:>4} {key[2]:>14} {key[3]:>6}" + "".join(f" | {c:>{cw}}" for c in cells))


def tf_change(base: list[float], other: list[float]) -> str:
    """The other variant's median TFLOP/s against the base's, in percent, with "~" when the
    two variants' per-round ranges overlap."""
    pct = 100.0 * (statistics.median(other) / statistics.median(base) - 1.0)
    overlap = min(other) <= max(base) and min(base) <= max(other)
    return f"{pct:+.1f}%{'~' if overlap else ' '}"


if __name__ == "__main__":
    main(sys.argv[1:])
