"""tools/prof/phase_trace.py reads the trace build's lines (csrc/kernel/phase_trace.cuh)
correctly: per-phase medians, the block period, the lag of warpgroup 1, the 32-bit clock
wrap, and that only the last of several printed traces is used."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "prof" / "phase_trace.py"

# top, operands, issued, s_done, softmax (0: not pinned), pv_done, end; per block
OFFSETS = [0, 110, 500, 600, 0, 2700, 3050]
PERIOD, LAG = 3200, 1600


def _lines(start: int, blocks: int = 12) -> list[str]:
    out = []
    for wg in (0, 1):
        for it in range(1, blocks):
            base = start + it * PERIOD + wg * LAG
            vals = [(base + o) % 2**32 if o or i == 0 else 0 for i, o in enumerate(OFFSETS)]
            out.append(f"trace wg={wg} it={it} " + " ".join(str(v) for v in vals))
    return out


def _report(tmp_path, lines):
    f = tmp_path / "trace.txt"
    f.write_text("\n".join(["ran ours D=128 S=4096 causal=False x2", *lines]) + "\n")
    run = subprocess.run([sys.executable, str(TOOL), "--parse", str(f)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _value(report: str, label: str, wg: int = 0) -> int:
    section = report.split(f"warpgroup {wg}:")[1]
    line = next(ln for ln in section.splitlines() if label in ln)
    return int(line.split()[-2])


def test_phases_period_and_lag(tmp_path):
    rep = _report(tmp_path, _lines(10_000))
    for wg in (0, 1):
        assert _value(rep, "K / V^T mbarrier waits", wg) == 110
        assert _value(rep, "turn wait + GEMM issue", wg) == 390
        assert _value(rep, "S wait", wg) == 100
        assert _value(rep, "P V wait + max", wg) == 2100
        assert _value(rep, "O rescale + P pack", wg) == 350
        assert _value(rep, "block period", wg) == PERIOD
    assert f"issues its GEMMs {LAG} cycles after" in rep


def test_clock_wrap_and_last_trace(tmp_path):
    # a first trace with other timings, then one whose clock wraps past 2^32 mid-way
    first = [" ".join(ln.split()[:3] + [str(int(x) * 2) for x in ln.split()[3:]])
             for ln in _lines(5_000, blocks=6)]
    rep = _report(tmp_path, first + _lines(2**32 - 7 * PERIOD))
    assert _value(rep, "block period") == PERIOD
    assert _value(rep, "S wait", 1) == 100
    assert f"issues its GEMMs {LAG} cycles after" in rep


def test_no_trace_lines_is_an_error(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_text("ran ours D=128 S=4096 causal=False x2\n")
    run = subprocess.run([sys.executable, str(TOOL), "--parse", str(f)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode != 0 and "TORCH_FMHA_TRACE" in (run.stdout + run.stderr)


def test_tile_phases(tmp_path):
    # 16 tiles per warpgroup, 20000 cycles apart; even tiles run their own first S,
    # odd ones were started by the previous tile's last round (first marks 0).
    lines = _lines(10_000, blocks=4)
    for wg in (0, 1):
        for n in range(16):
            b = 100_000 + n * 20_000 + wg * 700
            first = f"{b + 900} {b + 2500}" if n % 2 == 0 else "0 0"
            lines.append(f"tile wg={wg} n={n} {b} {first} {b + 15_000} {b + 15_800} {b + 17_000} {b + 19_000}")
    rep = _report(tmp_path, lines)
    tiles = rep.split("per tile:")[1]
    for label, cycles, count in [("first S (alone", 900, 7), ("first block's softmax", 1600, 7),
                                 ("last P V wait (+ next first softmax), finalize", 1200, 14),
                                 ("epilogue stores", 2000, 14),
                                 ("to the next tile", 1000, 14)]:
        line = next(ln for ln in tiles.splitlines() if label in ln)
        assert f"{cycles} cycles ({count} tiles)" in line, line
    assert "tile total                                 20000 cycles" in tiles
