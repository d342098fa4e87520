"""Where the consumers store P for an SS P V (consumer.cuh, PSmemOffsets / store_p_smem),
checked on the host (no GPU): tests/host_checks/check_p_smem.cu compares every word of every
consumer thread with the CuTe layout of the P tile (SmemLayoutP of the release build, and the
same kind of tile with 64- and 32-byte swizzle atoms), checks that the 256 threads write every
byte exactly once and that no warp's store into the release tile has a bank conflict. It needs
nvcc (host compilation only) and the CUTLASS headers; without them the test is skipped."""

from __future__ import annotations

from host_checker import build_and_run, needs_cutlass


@needs_cutlass
def test_p_words_land_on_the_p_tile_layout(tmp_path):
    lines = build_and_run("check_p_smem.cu", tmp_path, cutlass=True)
    assert lines[-1] == "OK" and len(lines) == 4, "\n".join(lines)
    assert all("0 misplaced bytes, 0 bytes not written exactly once" in ln for ln in lines[:3])
    assert "atom 128 B" in lines[0] and lines[0].endswith(", 0 bank conflicts"), lines[0]
