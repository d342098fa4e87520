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
