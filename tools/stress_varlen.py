"""Stress run of random ragged (varlen) launches, each under a time limit.

    python tools/stress_varlen.py --launches 2000 [--device cuda|cpu] [--check-every 20]

--device defaults to cuda where torch sees a GPU, else cpu (the run's first line says which).

A worker process runs the launches; this process watches it. Every launch
prints its parameters before it starts and a line when its result is back;
a launch that does not come back within --launch-timeout seconds is reported
as a HANG with its parameters and the worker is killed. Every --check-every'th
launch is checked against the float64 oracle (tests/reference.py) with the
project's tolerance rule; every launch is checked for NaN in out/lse. The worker
is tests/stress_varlen_worker.py, next to the oracle it uses.
Draws head dims, masks (causal, windows, none), GQA ratios, output dtypes and
lengths including 0, 1, tile-1, tile, tile+1 and long ones, for q and k apart;
and the serving features (issue 14): a third of the launches on a paged KV cache
(page 16..256, scattered, NaN-poisoned), softcap 20 / 50 and sinks on some
(--no-serving: the packed launches of before only).
Not part of the test suite (it is long on purpose).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import subprocess
import sys
import time
from pathlib import Path

WORKER = Path(__file__).resolve().parent.parent / "tests" / "stress_varlen_worker.py"
TILE_LENGTHS = [0, 1, 63, 64, 65, 127, 128, 129, 191, 192, 193, 255, 256, 257]


def draw(rng: random.Random, max_len: int, head_dims, serving: bool = True) -> dict:
    b = rng.choice([1, 2, 3, 7, 16, 33, 64])

    def length():
        return rng.choice(TILE_LENGTHS) if rng.random() < 0.6 else rng.randint(0, max_len)

    hkv = rng.choice([1, 2, 4])
    mask = rng.choice(["none", "causal", "window"])
    window = (-1, -1)
    if mask == "window":
        window = (rng.choice([-1, 0, 16, 100]), rng.choice([-1, 0, 5, 64]))
    return dict(lens_q=[length() for _ in range(b)], lens_k=[length() for _ in range(b)],
                heads=hkv * rng.choice([1, 2, 8]), heads_kv=hkv, head_dim=rng.choice(head_dims),
                causal=mask == "causal", window=window,
                out=rng.choice(["bf16", "fp16", "fp8"]), seed=rng.randrange(1 << 30),
                **(serving_options(rng) if serving else {}))


def serving_options(rng: random.Random) -> dict:
    """Issue 14: a paged cache on a third of the launches (0 = packed), softcap, sinks."""
    page = rng.choice([16, 32, 64, 128, 256]) if rng.random() < 1 / 3 else 0
    return dict(page=page, softcap=rng.choice([0.0, 0.0, 20.0, 50.0]), sinks=rng.random() < 0.3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--launches", type=int, default=2000)
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda where torch sees a GPU)")
    ap.add_argument("--check-every", type=int, default=20)
    ap.add_argument("--launch-timeout", type=float, default=60.0)
    ap.add_argument("--max-len", type=int, default=600)
    ap.add_argument("--head-dims", default="64,128,256")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-serving", action="store_true",
                    help="no paged / softcap / sinks launches (the packed launches of before only)")
    args = ap.parse_args()

    if args.device is None:  # a run on a GPU machine that forgot --device stressed the CPU path
        import torch
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"stress_varlen: {args.launches} launches on {args.device}", flush=True)
    rng = random.Random(args.seed)
    head_dims = [int(d) for d in args.head_dims.split(",")]
    cmd = [sys.executable, str(WORKER), "--device", args.device, "--check-every", str(args.check_every)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    counts = {"run": 0, "checked": 0, "failed": 0}
    t0 = time.time()
    for i in range(args.launches):
        p = draw(rng, args.max_len, head_dims, serving=not args.no_serving)
        proc.stdin.write(json.dumps(p) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], args.launch_timeout)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            why = "HANG" if not ready else "worker died"
            print(f"{why} at launch {i} after {args.launch_timeout:g} s: {json.dumps(p)}")
            counts["failed"] += 1
            break
        status = json.loads(line)["status"]
        counts["run"] += 1
        counts["checked"] += status == "checked"
        if status not in ("ok", "checked"):
            counts["failed"] += 1
            print(f"FAIL at launch {i}: {status}\n  {json.dumps(p)}")
        if (i + 1) % 250 == 0:  # progress: an outer time limit still shows how far it got
            print(f"  {i + 1} launches, {counts['checked']} checked, {counts['failed']} failed, "
                  f"{time.time() - t0:.0f} s", flush=True)
    else:
        proc.stdin.close()
        proc.wait(timeout=60)
    print(f"stress_varlen: {counts['run']} launches run, {counts['checked']} checked against the oracle, "
          f"{counts['failed']} failed, device {args.device}, {time.time() - t0:.0f} s")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
