"""Runs a function on W spawned ranks with a deadline and collects what each returns.

Shared by the gloo tests (tests/test_distributed.py) and the NCCL tests
(tests/gpu/test_context_parallel.py). `target(rank, world, init_file)` runs in
each spawned process (it initialises and destroys its process group) and
returns a JSON-serialisable dict; a hang fails the test instead of blocking it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import torch.multiprocessing as mp


def spawn_and_join(fn, args, nprocs, timeout_s):
    """torch.multiprocessing spawn with a deadline: a hang fails (and kills) instead of blocking."""
    ctx = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not ctx.join(timeout=max(1.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise TimeoutError(f"spawned workers did not finish in {timeout_s} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()


def _rank_main(rank, target, world, init_file, out_dir):
    result = target(rank, world, init_file)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


def run_ranks(target, world: int, timeout_s: float) -> list[dict]:
    """target's result on each of `world` spawned ranks, in rank order."""
    with tempfile.TemporaryDirectory() as d:
        spawn_and_join(_rank_main, (target, world, os.path.join(d, "init"), d), world, timeout_s)
        out = []
        for r in range(world):
            with open(os.path.join(d, f"rank{r}.json")) as f:
                out.append(json.load(f))
    return out
