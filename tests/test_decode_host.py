"""The decode kernel's split ranges (csrc/kernel/decode.cuh, decode_split_range), checked
on the host (no GPU) by tests/host_checks/check_decode_split_range.cu: for lengths 0..128k,
left windows and 1..100 splits, the ranges are disjoint, ordered, cover [first, L) exactly
and break only on 32-key tile boundaries. Needs nvcc; skipped with the reason without it."""

from __future__ import annotations

from host_checker import build_and_run, needs_nvcc
from torch_fmha._build import source_root


@needs_nvcc
def test_decode_split_ranges_cover_the_keys_once(tmp_path):
    lines = build_and_run("check_decode_split_range.cu", tmp_path, [f"-I{source_root()}"])
    assert len(lines) == 1 and lines[0].startswith("decode split ranges: ok ("), "\n".join(lines)
