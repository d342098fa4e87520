"""Table of an A/B run of tools/gpu_ab.sh: per case, ours / cuDNN FP8 of the
baseline and of the working tree (one column per round, so the run-to-run
spread shows), and new / base of our own TFLOP/s (medians over rounds)."""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict


def main(paths: list[str]) -> None:
    ratio = defaultdict(lambda: defaultdict(list))  # case -> tree -> [ours / cuDNN]
    ours = defaultdict(lambda: defaultdict(list))   # case -> tree -> [TFLOP/s]
    for path in sorted(paths):
        tree = "base" if "_base_" in path else "new"
        for row in json.load(open(path))["rows"]:
            key = (row["case"], row["D"], str(row["causal"]), row["seqlen"])
            t = row["tflops"]
            if "ours FP8" in t:
                ours[key][tree].append(t["ours FP8"])
                if "cuDNN FP8" in t:
                    ratio[key][tree].append(t["ours FP8"] / t["cuDNN FP8"])
    print(f"{'case':8} {'D':>4} {'causal':>14} {'S':>6} | {'base ours/cuDNN':>18} | "
          f"{'new ours/cuDNN':>18} | {'new/base':>8} {'ours new TF/s':>13}")
    for key in sorted(ours):
        r = ratio.get(key, {})
        fmt = lambda xs: " ".join(f"{x:.3f}" for x in xs) if xs else "-"
        nb = ours[key]
        speed = (statistics.median(nb["new"]) / statistics.median(nb["base"])
                 if nb.get("new") and nb.get("base") else float("nan"))
        print(f"{key[0]:8} {key[1]:>4} {key[2]:>14} {key[3]:>6} | {fmt(r.get('base')):>18} | "
              f"{fmt(r.get('new')):>18} | {speed:8.3f} {statistics.median(nb['new']) if nb.get('new') else 0:13.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
