"""I5: in the bounded-wait debug build (TORCH_FMHA_DEBUG_HANG=1) a wait that can
never complete is reported and trapped, not hung.

The test-only hook TORCH_FMHA_DEBUG_TEST_LOSE_K_LOAD (read at launch, honoured
only by the debug build) makes the producer leave out the first K load of its
first tile: the consumers' k_full wait can never complete. In a fresh process
(the debug build is cached separately; its first use compiles it) the test runs a
normal launch first, then one with the hook, and checks that the process dies
with the hang report naming the barrier and the role, well before the time limit.
The report reaches stderr through host-mapped memory and a watcher thread
(csrc/launch/hang_watch.cu): the trap kills the device printf buffer.

The same debug build carries a second hook, TORCH_FMHA_DEBUG_TEST_SPLIT_TAIL_WAIT_NS: the
split tail's tail pieces wait for their head pieces to count in first, so that they merge
(the last test).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent("""
    import os, torch, torch_fmha
    assert torch_fmha.build_info.debug_hang, torch_fmha.build_info
    q = torch.randn(1, 512, 2, 128, device="cuda").to(torch.float8_e4m3fn)
    torch_fmha.attention(q, q, q)
    torch.cuda.synchronize()
    print("CONTROL-OK", flush=True)
    os.environ["TORCH_FMHA_DEBUG_TEST_LOSE_K_LOAD"] = "1"
    torch_fmha.attention(q, q, q)
    torch.cuda.synchronize()
    print("NOT-REPORTED", flush=True)
""")


def test_lost_arrival_is_reported_not_hung():
    env = dict(os.environ, TORCH_FMHA_DEBUG_HANG="1")
    env.pop("TORCH_FMHA_DEBUG_TEST_LOSE_K_LOAD", None)
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                         timeout=280)
    out = res.stdout + res.stderr
    assert "CONTROL-OK" in res.stdout, out[-3000:]
    assert "NOT-REPORTED" not in res.stdout and res.returncode != 0, out[-3000:]
    assert "torch_fmha hang:" in out, out[-3000:]
    report = next(line for line in out.splitlines() if "torch_fmha hang:" in line)
    assert "mbarrier k_full" in report or "mbarrier k_empty" in report, report
    assert "phase" in report and "tile" in report, report
    assert "consumer" in report or "producer" in report, report  # the role
    # ... and the kernel trapped afterwards (the error surfaces at the sync)
    assert "illegal instruction" in out or "unspecified launch failure" in out, out[-3000:]
    assert time.monotonic() - t0 < 280


# The split tail's exchange (epilogue.cuh, exchange_split_partial): whichever piece of a cut
# tile counts in second merges. In a normal launch that is almost always the head piece (its
# CTA runs it last). The debug build's hook TORCH_FMHA_DEBUG_TEST_SPLIT_TAIL_WAIT_NS makes
# every tail piece wait (at most that long) until its head piece has counted in, so the tail
# piece merges; output and LSE must equal the normal launch's bit for bit. The grid (132 CTAs,
# one per SM) is resident at once, so each wait ends.
SPLIT_SCRIPT = textwrap.dedent("""
    import os, torch, torch_fmha
    from torch.profiler import ProfilerActivity, profile
    assert torch_fmha.build_info.debug_hang, torch_fmha.build_info
    g = torch.Generator(device="cpu").manual_seed(5)
    q, k, v = (torch.randn(1, 2048, 17, 64, generator=g).to("cuda").to(torch.float8_e4m3fn)
               for _ in range(3))
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        out, lse = torch_fmha.attention(q, k, v, return_lse=True)
        torch.cuda.synchronize()
    names = [e.name for e in prof.events() if "fmha_fwd_fp8_sm90_kernel" in e.name]
    print("SPLIT-KERNEL" if any("KernelVariant)1>" in n for n in names) else names,
          flush=True)
    os.environ["TORCH_FMHA_DEBUG_TEST_SPLIT_TAIL_WAIT_NS"] = "50000000"
    out2, lse2 = torch_fmha.attention(q, k, v, return_lse=True)
    torch.cuda.synchronize()
    print("EQUAL" if torch.equal(out, out2) and torch.equal(lse, lse2) else "DIFFERENT", flush=True)
""")


def test_split_tail_merge_by_the_tail_piece_gives_the_same_bits():
    import pytest
    import torch
    from test_sass_sm90 import split_knob
    if split_knob(64) == 0:
        pytest.skip("TORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_64 is 0 in this build: no split kernel")
    if torch.cuda.get_device_properties(0).multi_processor_count != 132:
        pytest.skip("the shape is chosen for 132 SMs (272 tiles: a remainder of 8)")
    env = dict(os.environ, TORCH_FMHA_DEBUG_HANG="1")
    env.pop("TORCH_FMHA_DEBUG_TEST_SPLIT_TAIL_WAIT_NS", None)
    res = subprocess.run([sys.executable, "-c", SPLIT_SCRIPT], capture_output=True, text=True,
                         env=env, timeout=280)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "SPLIT-KERNEL" in res.stdout, out[-3000:]  # the launch ran the split kernel
    assert "EQUAL" in res.stdout, out[-3000:]
