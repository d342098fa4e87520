"""The prepared, not yet measured tuning knobs of kernel_traits.cuh still compile
to the structure they were written for (docs/DESIGN.md section 7), checked in
the SASS on a machine without a GPU. The release build's structure is checked on
the GPU machine by tests/gpu/test_sass_sm90.py.

- TORCH_FMHA_TUNE_PACK_IN_EXP_64 / _128: P's FP8 pack issues between the MUFU.EX2s
  of the steady loop instead of after the last one.
- TORCH_FMHA_TUNE_SERIAL_ROUNDS_128 with 256-key blocks: no spill in the
  consumers, no S wgmma waited for right after its issue (ptxas's serialisation),
  and P V (8 x 64x128x32) waited for before S (4 x 64x256x32) is issued.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from host_checker import NVCC, needs_cutlass
from sass_checks import consumer_instrs, packs_after_last_exp, serialized_wgmma, spills, split_functions
from torch_fmha._build import cutlass_include, source_root

CUOBJDUMP = shutil.which("cuobjdump")
needs_tools = pytest.mark.skipif(CUOBJDUMP is None, reason="cuobjdump not found")

SERIAL_256 = ["-DTORCH_FMHA_TUNE_SERIAL_ROUNDS_128=1", "-DTORCH_FMHA_TUNE_BLOCK_N_128=256",
              "-DTORCH_FMHA_TUNE_STAGE_OUT_128=0", "-DTORCH_FMHA_TUNE_WIDE_SPLIT_ABOVE_128=256"]


def _kernel_sass(tmp_path, flags, head_dim=128):
    cubin = tmp_path / "k.cubin"
    build = subprocess.run(
        [NVCC, "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a", "-O3", "--expt-relaxed-constexpr",
         "-DNDEBUG", *flags, f"-I{cutlass_include()}", f"-I{source_root()}", "-Xptxas", "-v", "-cubin",
         str(source_root() / "launch" / f"fwd_fp8_hdim{head_dim}.cu"), "-o", str(cubin)],
        capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    assert "serializ" not in build.stderr.lower(), build.stderr[-3000:]
    sass = subprocess.run([CUOBJDUMP, "-sass", str(cubin)], capture_output=True, text=True,
                          timeout=300, check=True).stdout
    funcs = {n: f for n, f in split_functions(sass).items() if "fmha_fwd_fp8_sm90_kernel" in n}
    assert len(funcs) == 1, list(funcs)
    return next(iter(funcs.values()))


@needs_cutlass
@needs_tools
@pytest.mark.parametrize("head_dim, packs", [(64, 64), (128, 48)])  # P's F2FPs: 256 / 192 keys
def test_pack_in_exp_puts_the_pack_between_the_exps(tmp_path, head_dim, packs):
    instrs = _kernel_sass(tmp_path, [f"-DTORCH_FMHA_TUNE_PACK_IN_EXP_{head_dim}=1"], head_dim)
    assert serialized_wgmma(instrs) == 0
    consumers = consumer_instrs(instrs)
    assert any("MUFU.EX2" in x for x in consumers)  # the slice is the consumers' code
    assert spills(consumers) == 0
    # The stretches after a full wgmma wait that run exp2s; a block's P is `packs` F2FPs.
    # The first block's softmax (no rescale) interleaves its packs in every build, so
    # "some stretch" would pass without the knob: the release build's steady loop is
    # (0, packs), all after its last exp2. With the knob no block-sized stretch may keep
    # more than 4 there, and both (first block, steady loop) must be present.
    stretches = packs_after_last_exp(instrs)
    blocks = [(b, a) for b, a in stretches if b + a == packs]
    assert len(blocks) >= 2 and all(a <= 4 for b, a in blocks), stretches


@needs_cutlass
@needs_tools
def test_serial_rounds_fit_256_key_blocks(tmp_path):
    instrs = _kernel_sass(tmp_path, SERIAL_256)
    consumers = consumer_instrs(instrs)
    assert spills(consumers) == 0
    # S is never waited for right after its issue; only P V is (by design, before S).
    for a, b in zip(consumers, consumers[1:]):
        if "QGMMA.64x256x32" in a:
            assert "WARPGROUP.DEPBAR.LE gsb0, 0x0" not in b, (a, b)
    # Some round issues its 8 P V wgmmas, waits for them, then issues the 4 S wgmmas.
    ops = [("PV" if "QGMMA.64x128x32" in x else "S" if "QGMMA.64x256x32" in x
            else "W" if "WARPGROUP.DEPBAR.LE gsb0, 0x0" in x else None) for x in consumers]
    seq = "".join({"PV": "p", "S": "s", "W": "w"}[o] for o in ops if o)
    assert "p" * 8 + "w" + "s" * 4 in seq, seq
