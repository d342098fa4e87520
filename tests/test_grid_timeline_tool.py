"""tools/prof/grid_timeline.py reads a TORCH_FMHA_TRACE=2 build's grid timeline
(csrc/kernel/phase_trace.cuh, `gtile` lines) correctly: the makespan and the CTAs' end
times, the grid's idle share, durations per split role and block count, the epilogue /
exchange step, only warpgroup 0's lines, and only the last of several printed launches."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "prof" / "grid_timeline.py"


def _launch(scale: int = 1) -> list[str]:
    """4 CTAs. CTAs 0-1 run 3 whole tiles of 8 blocks (10 us each, 1 us epilogue, 0.5 us to
    the next); CTAs 2-3 run 2 whole tiles, then a tail piece of 4 blocks (6 us, its exchange
    2 us) and CTA 3 a head piece of 4 blocks (7 us, its exchange and merge 3 us)."""
    out = []
    for cta in range(4):
        t = 1000 * scale
        tiles = [(0, 8, 10_000, 1_000)] * 3 if cta < 2 else [(0, 8, 10_000, 1_000)] * 2 + (
            [(1, 4, 6_000, 2_000)] if cta == 2 else [(2, 4, 7_000, 3_000)])
        for n, (role, blocks, dur, step) in enumerate(tiles):
            dur *= scale
            for wg in (0, 1):  # warpgroup 1 a little later: must be ignored
                lag = 0 if wg == 0 else 333
                out.append(f"gtile cta={cta} wg={wg} n={n} {role} {blocks} {t + lag} "
                           f"{t + lag + dur - step * scale} {t + lag + dur}")
            t += dur + 500 * scale
    return out


def _report(tmp_path, lines, args=(), header="ran packedv D=128 S=2048 causal=False x3"):
    f = tmp_path / "timeline.txt"
    f.write_text("\n".join([header, *lines]) + "\n")
    run = subprocess.run([sys.executable, str(TOOL), *args, "--parse", str(f)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_makespan_idle_share_and_roles(tmp_path):
    # A first launch with doubled times, then the one the report must use.
    rep = _report(tmp_path, _launch(scale=2) + _launch())
    # CTAs 0-1 end at 3 x 10 + 2 x 0.5 = 31 us, CTA 2 at 2 x 10.5 + 6 = 27, CTA 3 at 28.
    assert "4 CTAs, 12 tiles; makespan 31.0 us" in rep
    assert "CTA ends min / median / max 27.0 / 31.0 / 31.0 us" in rep
    # idle: (0 + 0 + 4 + 3) / (4 x 31)
    assert f"idle share of the grid's time {100 * 7 / 124:.1f}%" in rep
    assert "whole        8 blocks:  10.00 us (10)" in rep
    assert "tail piece   4 blocks:   6.00 us (1)" in rep
    assert "head piece   4 blocks:   7.00 us (1)" in rep
    assert "whole        1.00 /   1.00 (10)" in rep
    assert "head piece   3.00 /   3.00 (1)" in rep
    assert "whole        0.50 /   0.50 (8)" in rep  # stored -> next top, after whole tiles


def test_no_lines_is_an_error(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_text("ran packedv D=128 S=2048 causal=False x3\n")
    run = subprocess.run([sys.executable, str(TOOL), "--parse", str(f)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1 and "TORCH_FMHA_TRACE=2" in run.stderr


def test_a_cta_at_the_tile_limit_is_flagged(tmp_path):
    lines = [f"gtile cta=0 wg=0 n={n} 0 4 {1000 + 2000 * n} {2500 + 2000 * n} {2800 + 2000 * n}"
             for n in range(24)]
    lines += ["gtile cta=1 wg=0 n=0 0 4 1000 2500 2800"]
    rep = _report(tmp_path, lines)
    assert "WARNING: 1 CTAs (first 0) reached the trace's 24-tile limit" in rep
    assert "WARNING" not in _report(tmp_path, lines[1:])


def test_tile_limit_matches_the_trace_build():
    """The tool's GRID_TILES is phase_trace.cuh's kGridTiles (the limit it warns at)."""
    import re
    root = Path(__file__).resolve().parents[1]
    header = (root / "csrc" / "kernel" / "phase_trace.cuh").read_text()
    tool = TOOL.read_text()
    cuh = int(re.search(r"kGridTiles = (\d+);", header).group(1))
    py = int(re.search(r"^GRID_TILES = (\d+)", tool, re.M).group(1))
    assert cuh == py == 24


def test_window_mask_argument(tmp_path):
    """The mask may be a window, wLEFT (one_launch.py runs window_size=(LEFT, 0), which needs a
    GPU); with saved output the report takes it and names it."""
    rep = _report(tmp_path, _launch(), args=("128", "16384", "w1024", "packedv"),
                  header="ran packedv D=128 S=16384 causal=False window=(1024, 0) x3")
    assert rep.startswith("D=128 S=16384 causal=w1024 packedv:")
    assert "4 CTAs, 12 tiles; makespan 31.0 us" in rep
