"""tools/prof/sass_page_summary.py reads Nsight Compute's per-instruction SASS page
(`ncu --page source --print-source sass --csv`) correctly: opcode shares of the executed
instructions (predicates stripped), stall shares, a retried barrier wait, the hot wgmma loop
as a sequence of opcode(samples), and the details page's hardware count beside them."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "prof" / "sass_page_summary.py"
COLUMNS = ["Address", "Source", "Warp Stall Sampling (All Samples)", "Instructions Executed",
           "stall_wait", "stall_barrier", "stall_wait (Not Issued)"]


def _page(tmp_path, rows) -> Path:
    f = tmp_path / "k.sass.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Kernel Name", "k"])
        w.writerow(COLUMNS)
        for i, (src, executed, samples, wait, barrier) in enumerate(rows):
            w.writerow([hex(0x1000 + 16 * i), src, samples, executed, wait, barrier, 0])
    return f


def test_mix_stalls_spin_and_hot_loop(tmp_path):
    rows = [
        ("QGMMA.64x192x32.F32.E4M3.E4M3 R24, gdesc[UR20], RZ, !UPT", 100, 5, 1, 0),
        ("@!P0 MUFU.EX2 R24, R24", 100, 30, 20, 0),
        ("FFMA R25, R25, R15, R14", 100, 10, 5, 0),
        ("BAR.SYNC.DEFER_BLOCKING R5, 0x100", 100, 10, 0, 10),
        ("YIELD", 500, 1, 0, 0),
        ("SYNCS.PHASECHK.TRANS64.TRYWAIT P0, [R15+URZ+0x288f0], R12", 500, 3, 0, 0),
        ("@!P0 BRA 0x1d750", 500, 4, 0, 0),
    ]
    page = _page(tmp_path, rows)
    (tmp_path / "k.details.txt").write_text("    Executed Instructions                           inst  1,234,567\n")
    run = subprocess.run([sys.executable, str(TOOL), str(page)], capture_output=True,
                         text=True, check=True)
    out = run.stdout
    assert "1900 warp instructions executed, 63 samples" in out
    assert "hardware count (details page, Executed Instructions): 1234567" in out
    # 500 of 1900 each: YIELD, SYNCS, BRA; 100 each: QGMMA, MUFU (predicate stripped), FFMA, BAR
    assert "YIELD 26.3%" in out and "MUFU 5.3%" in out and "BRA 26.3%" in out
    assert "stalls: wait 72.2%, barrier 27.8%" in out  # 26 and 10 of 36 samples
    assert "stall_wait by opcode: MUFU 20, FFMA 5, QGMMA 1" in out
    assert "executed 500 times (26.3% of the page's instructions, 5.0 per pass of the hot loop)" in out
    assert "loop executed 100 times (4 instructions):" in out
    assert "QGMMA(5) MUFU(30) FFMA(10) BAR(10)" in out
