"""The built kernel's SASS keeps the structure consumer.cuh asks for:
the softmax of a round overlaps the warpgroup's own P V (the P V wait stays
below the MUFU.EX2 of the block), wgmmas are not serialized, no local-memory
spill traffic grows unnoticed. Checker: tests/sass_checks.py."""

import re
import subprocess

import pytest

import torch_fmha
from sass_checks import overlap_regions, serialized_wgmma, split_functions


@pytest.fixture(scope="module")
def kernels():
    sass = subprocess.run(["cuobjdump", "-sass", str(torch_fmha.build_info.library)],
                          capture_output=True, text=True, timeout=240, check=True).stdout
    funcs = {name: instrs for name, instrs in split_functions(sass).items()
             if "fmha_fwd_fp8_sm90_kernel" in name}
    assert len(funcs) == 6, f"expected 6 kernel variants (D=64/128/256 x dense/varlen), got {list(funcs)}"
    return funcs


def _head_dim(name: str) -> int:
    return int(re.search(r"Fp8FwdTraitsILi(\d+)E", name).group(1))


def test_softmax_overlaps_own_pv(kernels):
    for name, instrs in kernels.items():
        regions = overlap_regions(instrs)
        d = _head_dim(name)
        # Steady-state round everywhere, plus the tile-boundary round where tiles overlap.
        expected = 1 if d == 256 else 2
        assert len(regions) >= expected, f"D={d}: {len(regions)} overlapped rounds, want {expected}: {name}"
        for r in regions:
            assert r.overlapped_fraction >= 0.9, (
                f"D={d}: only {r.ex2_before} of {r.ex2_before + r.ex2_after} MUFU.EX2 issue before the "
                f"P V wait at {r.wait_pv} (S wait at {r.wait_s}): ptxas hoisted the wait")


def test_wgmma_not_serialized(kernels):
    for name, instrs in kernels.items():
        assert serialized_wgmma(instrs) <= 4, f"ptxas serialized the wgmmas (C7514) in {name}"
