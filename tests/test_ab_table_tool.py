"""tools/ab_table.py's A/B table: per case and variant the median ours / cuDNN ratio with its
min-max and the median TFLOP/s, and for every variant after the first its median TFLOP/s
against the first's in percent, marked "~" when the two variants' per-round TFLOP/s ranges
overlap (the change is then within the rounds' spread). Session 39's notes had rounded such
changes by hand; the column gives them exactly."""
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


def test_change_against_the_first_variant(tmp_path):
    files = [
        _write(tmp_path, "base", 1, {1024: 600.0, 4096: 800.0}),
        _write(tmp_path, "base", 2, {1024: 610.0, 4096: 820.0}),
        _write(tmp_path, "knob", 1, {1024: 640.0, 4096: 805.0}),  # 1024 keys: above base's range
        _write(tmp_path, "knob", 2, {1024: 650.0, 4096: 815.0}),  # 4096 keys: inside it
    ]
    run = subprocess.run([sys.executable, str(TOOL), *files], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "base" in lines[0] and "knob" in lines[0] and "vs 1st" in lines[1]
    row = {int(line.split("|")[0].split()[-1]): line for line in lines[2:]}
    base_1k, knob_1k = (c.strip() for c in row[1024].split("|")[1:])
    # medians: base 605 (1.210 of cuDNN's 500), knob 645: +6.6%, ranges apart (no "~")
    assert base_1k.startswith("1.210 [1.20-1.22]") and "605" in base_1k and "%" not in base_1k
    assert knob_1k.startswith("1.290 [1.28-1.30]") and knob_1k.endswith("645 +6.6%")
    # medians 810 / 810: +0.0%, ranges 800-820 and 805-815 overlap
    assert row[4096].split("|")[2].strip().endswith("810 +0.0%~")
