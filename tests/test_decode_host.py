"""The decode kernel's split ranges (csrc/kernel/decode.cuh, decode_split_range), checked
on the host (no GPU) by tests/host_checks/check_decode_split_range.cu: for lengths 0..128k,
left windows and 1..100 splits, the ranges are disjoint, ordered, cover [first, L) exactly
and break only on 32-key tile boundaries. Needs nvcc; skipped with the reason without it.

And num_splits = 0's split count (csrc/decode_splits.h, choose_decode_splits), compiled by
the host C++ compiler (tests/host_checks/check_decode_splits.cpp), equals the benchmark's
mirror (torch_fmha/bench_decode.py, auto_num_splits) on every shape it prints. Needs a host
C++ compiler (c++ or g++); skipped without one."""

from __future__ import annotations

from host_checker import build_and_run, build_and_run_cxx, needs_cxx, needs_nvcc
from torch_fmha import bench_decode
from torch_fmha._build import source_root


@needs_nvcc
def test_decode_split_ranges_cover_the_keys_once(tmp_path):
    lines = build_and_run("check_decode_split_range.cu", tmp_path, [f"-I{source_root()}"])
    assert len(lines) == 1 and lines[0].startswith("decode split ranges: ok ("), "\n".join(lines)


@needs_cxx
def test_decode_split_count_matches_the_benchmark_mirror(tmp_path):
    lines = build_and_run_cxx("check_decode_splits.cpp", tmp_path, run_timeout=60, cuda_headers=False)
    assert len(lines) == 4 * 70 * 13, len(lines)
    differ = []
    for line in lines:
        batch, keys, sms, splits = map(int, line.split())
        mirror = bench_decode.auto_num_splits(batch, 32, 8, keys, sms, decode_kernel=True)
        if mirror != splits:
            differ.append((batch, keys, sms, splits, mirror))
    assert not differ, differ[:20]
