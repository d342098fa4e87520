"""tools/ab_table.py's A/B table: per case and variant the median ours / cuDNN ratio with its
min-max and the median TFLOP/s; with several variants, each one but the baseline ("base",
or --base NAME) also gets its median TFLOP/s against the baseline's in percent, marked "~"
when the two variants' per-round TFLOP/s ranges overlap. Session 39's notes had rounded
such changes by hand; the column gives them exactly. Columns line up, and a case a variant
lacks shows "-"."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "ab_table.py"


def _write(tmp_path, variant: str, rnd: int, tf: dict[int, float], cudnn: float = 500.0) -> str:
    rows = [{"case": "dense", "D": 128, "causal": False, "seqlen": s,
             "tflops": {"ours FP8": t, "cuDNN FP8": cudnn}} for s, t in tf.items()]
    path = tmp_path / f"ab_{variant}_{rnd}.json"
    path.write_text(json.dumps({"rows": rows}))
    return str(path)


def _table(files, *args) -> list[str]:
    run = subprocess.run([sys.executable, str(TOOL), *args, *files], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    bars = {tuple(i for i, ch in enumerate(line) if ch == "|") for line in lines}
    assert len(bars) == 1, "the columns' bars do not line up:\n" + run.stdout
    return lines


def _cells(lines) -> dict[int, list[str]]:
    return {int(line.split("|")[0].split()[-1]): [c.strip() for c in line.split("|")[1:]] for line in lines[2:]}


def test_change_against_the_baseline(tmp_path):
    # Three rounds each, so that a median differs from a mean. At 1024 keys: base 600 / 605 / 640
    # (median 605), "knob" 612 / 645 / 650 (median 645: +6.6%; by means +3.4%); the ranges 600-640
    # and 612-650 overlap though knob's median lies outside base's range. At 4096: base 800-820,
    # knob 700 / 705 / 790 (median 705: -13.0%), ranges apart. At 8192 only base ran.
    files = [_write(tmp_path, "base", r, t) for r, t in
             enumerate([{1024: 600.0, 4096: 800.0, 8192: 900.0}, {1024: 605.0, 4096: 810.0, 8192: 900.0},
                         {1024: 640.0, 4096: 820.0, 8192: 900.0}])]
    files += [_write(tmp_path, "knob", r, t) for r, t in
              enumerate([{1024: 612.0, 4096: 700.0}, {1024: 645.0, 4096: 705.0}, {1024: 650.0, 4096: 790.0}])]
    lines = _table(files)
    assert [c.strip() for c in lines[0].split("|")[1:]] == ["base", "knob"]
    assert "vs base" in lines[1].split("|")[2] and "vs base" not in lines[1].split("|")[1]
    cells = _cells(lines)
    assert cells[1024][0] == "1.210 [1.20-1.28]    605"  # medians of ratio and TF, no change column
    assert cells[1024][1] == "1.290 [1.22-1.30]    645 +6.6%~"
    assert cells[4096][1] == "1.410 [1.40-1.58]    705 -13.0%"
    assert cells[8192] == ["1.800 [1.80-1.80]    900", "-"]


def test_baseline_choice_and_single_variant(tmp_path):
    a = [_write(tmp_path, "alpha", r, {1024: t}) for r, t in enumerate([600.0, 610.0])]
    b = [_write(tmp_path, "beta", r, {1024: t}) for r, t in enumerate([660.0, 671.0])]
    # No "base": the first variant (sorted by name) is the baseline; --base picks another.
    assert _cells(_table(a + b))[1024][1].endswith("+10.0%")
    lines = _table(a + b, "--base", "beta")
    cells = _cells(lines)
    assert cells[1024][0].endswith("-9.1%") and "%" not in cells[1024][1]
    assert "vs beta" in lines[1].split("|")[1] and "vs" not in lines[1].split("|")[2]  # the header names it
    assert "%" not in "".join(_table(a))  # one variant: nothing to compare
