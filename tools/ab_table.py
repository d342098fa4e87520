"""Table of tools/gpu_ab.sh / tools/gpu_tune.sh runs: per case and variant, the
median ours / cuDNN FP8 ratio over the rounds with its min-max spread, and our
median TFLOP/s (only that with --out-dtype bf16, which cuDNN FP8 cannot write).
Serving-feature runs (bench --softcap / --sinks / --paged) give per feature row
the throughput ratio with / without the feature (time without / time with) and
the TFLOP/s with it, and per base path ("plain dense", "plain varlen") a row with
the TFLOP/s without it. With several variants, each one but the baseline also gets its
median TFLOP/s against the baseline's, in percent, marked "~" where the two variants'
per-round TFLOP/s ranges overlap (the change is then within the rounds' spread). The
baseline is the variant named by --base NAME, else the one named "base", else the first
(variants are listed in the sorted order of the runs' names). Files are named <prefix>_<variant>_<round>.json; a file
holding several runs under "runs" (docs/bench_serving_paged_h200_2026-11-29_s21.json)
is read as its runs, each named by its key the same way. An optional --only PREFIX keeps
the runs whose name starts with PREFIX (e.g. call3/paged16)."""

from __future__ import annotations

import argparse
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--only", default="", help="keep the runs whose name starts with this")
    ap.add_argument("--base", default=None, help="the baseline variant (default: base, else the first)")
    args = ap.parse_args(argv)
    only, base = args.only, args.base
    ratio = defaultdict(lambda: defaultdict(list))  # case -> variant -> [ours / cuDNN]
    ours = defaultdict(lambda: defaultdict(list))   # case -> variant -> [TFLOP/s]
    variants: list[str] = []
    serving = False
    for path, data in _runs(args.files, only):
        # <prefix>_<variant>_<round>; a run named otherwise is a variant of its own name
        parts = Path(path).stem.split("_", 1)
        variant = parts[-1].rsplit("_", 1)[0]
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
    if not variants:
        sys.exit("ab_table: no runs" + (f" named {only}*" if only else ""))
    if base is None:
        base = "base" if "base" in variants else variants[0]
    if base not in variants:
        sys.exit(f"ab_table: --base {base}: no such variant (variants: {', '.join(variants)})")
    compare = len(variants) > 1
    label = "with/w.o. [spread] TF" if serving else "ours/cuDNN [spread] TF"
    width = max([7] + [len(k[0]) for k in ours])
    lines = [[f"{'case':{width}} {'D':>4} {'causal':>14} {'S':>6}", *variants],
             ["", *(label + (f" vs {base}" if compare and v != base else "") for v in variants)]]
    for key in sorted(ours):
        cells = []
        for v in variants:
            rs, ts = ratio[key].get(v, []), ours[key].get(v, [])
            if not ts:
                cells.append("-")
                continue
            tf = statistics.median(ts)
            cell = f"{statistics.median(rs):.3f} [{min(rs):.2f}-{max(rs):.2f}] {tf:6.0f}" if rs else f"{tf:6.0f}"
            if compare and v != base and ours[key].get(base):
                cell += f" {tf_change(ours[key][base], ts)}"
            cells.append(cell)
        lines.append([f"{key[0]:{width}} {key[1]:>4} {key[2]:>14} {key[3]:>6}", *cells])
    # Each variant's column as wide as its widest cell, right-aligned, so the bars line up.
    widths = [max(len(line[c]) for line in lines) for c in range(len(lines[0]))]
    for line in lines:
        print(f"{line[0]:{widths[0]}}" + "".join(f" | {cell:>{w}}" for cell, w in zip(line[1:], widths[1:])))


def tf_change(base: list[float], other: list[float]) -> str:
    """The other variant's median TFLOP/s against the base's, in percent, with "~" when the
    two variants' per-round ranges overlap."""
    pct = 100.0 * (statistics.median(other) / statistics.median(base) - 1.0)
    overlap = min(other) <= max(base) and min(base) <= max(other)
    return f"{pct:+.1f}%{'~' if overlap else ' '}"


if __name__ == "__main__":
    main(sys.argv[1:])
