"""Context-parallel benchmark (``python -m torch_fmha.bench --context-parallel``), under torchrun:

    torchrun --nproc-per-node 2 -m torch_fmha.bench --context-parallel \\
        [--seqlens 32768,131072,524288] [--exchange ring,allgather] [--compile] [--json PATH]

B=1, H=32, Hkv=8, D=128, causal, FP8 q/k/v (per-tensor descales), bf16 output.
``--varlen N``: a packed batch of S tokens in N sequences of unequal lengths
(``varlen_attention`` on 1 GPU, ``context_parallel_varlen_attention`` on W;
its one all-gather is the ``allgather`` column).
For each S it times, with CUDA events around back-to-back forwards (the slowest
rank's time):

* ``1 GPU``: ``torch_fmha.attention`` on the whole sequence (every rank runs it
  on its own GPU at the same time; rank 0's time is reported),
* ``W GPUs``: ``context_parallel_attention`` on the shards, per KV exchange,
* ``compute``: the same attention calls and merge with the exchange left out
  (stand-in keys), ``comm``: the exchange alone,
* ``hidden``: the share of the exchange hidden behind compute,
  ``(compute + comm - W GPUs) / comm`` (clamped to [0, 1]),
* ``speedup`` = ``1 GPU / W GPUs``.

A size whose 1-GPU or W-GPU run does not fit in memory shows ``oom``.
Without torchrun it runs with W = 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, List, Optional

import torch
import torch.distributed as dist

FP8 = torch.float8_e4m3fn


def _ints(s: str) -> List[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m torch_fmha.bench --context-parallel",
                                description=__doc__.split("\n")[0])
    p.add_argument("--seqlens", type=_ints, default=[32768, 131072, 524288])
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--causal", type=int, choices=[0, 1], default=1)
    p.add_argument("--exchange", default="ring,allgather",
                   help="comma-separated KV exchanges to time (ring, allgather)")
    p.add_argument("--varlen", type=int, default=0, metavar="N",
                   help="a packed batch instead: S tokens in N sequences of unequal lengths, "
                        "context_parallel_varlen_attention vs varlen_attention (one all-gather: "
                        "--exchange is ignored)")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile(fullgraph=True) of the first exchange")
    p.add_argument("--no-single", action="store_true", help="skip the 1-GPU baseline")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds of timed forwards per number")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--cpu-smoke", action="store_true", help=argparse.SUPPRESS)  # gloo, tiny shapes
    return p.parse_args(argv)


_DEV = "cuda"


def _sync() -> None:
    if _DEV == "cuda":
        torch.cuda.synchronize()


def _max_all(x: float) -> float:
    t = torch.tensor([x], dtype=torch.float64, device=_DEV)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def _time_ms(fn: Callable[[], object], min_time: float, collective: bool) -> float:
    """Mean ms per call over back-to-back calls (max over ranks when ``collective``)."""
    fn()
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    est = time.perf_counter() - t0
    if collective:
        est = _max_all(est)
    n = max(1, min(50, int(min_time / max(est, 1e-6))))
    if collective:
        dist.barrier()
    _sync()
    if _DEV == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            fn()
        end.record()
        torch.cuda.synchronize()
        ms = start.elapsed_time(end) / n
    else:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        ms = (time.perf_counter() - t0) * 1e3 / n
    return _max_all(ms) if collective else ms


def _lengths(total: int, n: int) -> List[int]:
    """``n`` unequal sequence lengths (about proportional to n, n+1, ..., 2n-1) summing to ``total``."""
    w = [n + i for i in range(n)]
    lens = [total * x // sum(w) for x in w]
    lens[-1] += total - sum(lens)
    return lens


def _fp8(shape, seed: int) -> torch.Tensor:
    g = torch.Generator(device=_DEV).manual_seed(seed)
    return torch.randn(shape, device=_DEV, dtype=torch.bfloat16, generator=g).to(FP8)


def _empty_cache() -> None:
    if _DEV == "cuda":
        torch.cuda.empty_cache()


def _fmt(x: Optional[float], spec: str = ".2f") -> str:
    return "n/a" if x is None else ("oom" if x != x else format(x, spec))


def main(argv: Optional[List[str]] = None) -> int:
    global _DEV
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    _DEV = "cpu" if args.cpu_smoke else "cuda"
    if not args.cpu_smoke and (not torch.cuda.is_available()
                               or torch.cuda.get_device_capability() != (9, 0)):
        print("torch_fmha.bench --context-parallel needs SM90 (Hopper) GPUs", file=sys.stderr)
        return 2
    import torch_fmha
    import torch_fmha.distributed as cp

    if "WORLD_SIZE" not in os.environ:  # plain python: one rank
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(29500 + os.getpid() % 1000))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if _DEV == "cuda":
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    else:
        dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    exchanges = [e for e in args.exchange.split(",") if e] if not args.varlen else ["allgather"]
    H, Hkv, D, causal = args.heads, args.kv_heads, args.head_dim, bool(args.causal)
    one = torch.ones(1, device=_DEV)
    sc = dict(q_descale=one * 0.5, k_descale=one * 0.5, v_descale=one * 0.5)
    rows = []
    for S in args.seqlens:
        lens = _lengths(S, args.varlen) if args.varlen else [S]
        flops = sum(4.0 * n * n * H * D * (0.5 if causal else 1.0) for n in lens)
        row = {"S": S, "world": world, "tflop": flops / 1e12, "seqs": len(lens)}
        cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=_DEV)
        # ---- 1 GPU, whole sequence
        t1 = None
        if not args.no_single:
            try:
                if args.varlen:
                    q, k, v = _fp8((S, H, D), 1), _fp8((S, Hkv, D), 2), _fp8((S, Hkv, D), 3)
                    t1 = _time_ms(lambda: torch_fmha.varlen_attention(q, k, v, cu, cu, causal=causal, **sc),
                                  args.min_time, collective=False)
                else:
                    q, k, v = _fp8((1, S, H, D), 1), _fp8((1, S, Hkv, D), 2), _fp8((1, S, Hkv, D), 3)
                    t1 = _time_ms(lambda: torch_fmha.attention(q, k, v, causal=causal, **sc),
                                  args.min_time, collective=False)
            except torch.cuda.OutOfMemoryError:
                t1 = float("nan")
            q = k = v = None
            _empty_cache()
            t1 = _max_all(t1) if rank == 0 else _max_all(float("-inf"))  # rank 0's number
        row["ms_1gpu"] = t1
        # ---- W GPUs
        if args.varlen:  # the exact padded rows: the host knows the lengths here
            n_local = cp.varlen_local_rows(S, len(lens), world, lens)
            lead = ()
        else:
            n_local = cp.shard_lengths(S, world)[rank]
            lead = (1,)
        ql = _fp8(lead + (n_local, H, D), 10 + rank)
        kl, vl = _fp8(lead + (n_local, Hkv, D), 20 + rank), _fp8(lead + (n_local, Hkv, D), 30 + rank)

        def run(ex: str, comm: str = "on"):
            if args.varlen:
                return cp.context_parallel_varlen_attention(ql, kl, vl, cu, cu, causal=causal, _comm=comm, **sc)
            return cp.context_parallel_attention(ql, kl, vl, causal=causal, seqlen=S, kv_exchange=ex,
                                                 _comm=comm, **sc)

        def timed(fn):
            try:
                return _time_ms(fn, args.min_time, collective=True)
            except torch.cuda.OutOfMemoryError:
                _empty_cache()
                return float("nan")

        row["ms_compute"] = timed(lambda: run(exchanges[0], "off")) if world > 1 else None
        for ex in exchanges:
            t = timed(lambda: run(ex))
            tc = timed(lambda: run(ex, "only")) if world > 1 else None
            row[f"ms_{ex}"] = t
            row[f"ms_comm_{ex}"] = tc
            if tc and row["ms_compute"] and tc == tc and t == t:
                row[f"hidden_{ex}"] = min(1.0, max(0.0, (row["ms_compute"] + tc - t) / tc))
        if args.compile:
            def fwd(a, b, c):
                if args.varlen:
                    return cp.context_parallel_varlen_attention(a, b, c, cu, cu, causal=causal, **sc)
                return cp.context_parallel_attention(a, b, c, causal=causal, seqlen=S,
                                                     kv_exchange=exchanges[0], **sc)
            f = torch.compile(fwd, fullgraph=True)
            row[f"ms_{exchanges[0]}_compiled"] = timed(lambda: f(ql, kl, vl))
        ql = kl = vl = None
        _empty_cache()
        rows.append(row)
        if rank == 0:
            print(f"S={S}: {json.dumps(row)}", file=sys.stderr, flush=True)

    if rank == 0:
        dev_name = torch.cuda.get_device_name() if _DEV == "cuda" else "CPU (smoke test)"
        print(f"\ntorch_fmha context-parallel attention on {world} x {dev_name} "
              f"| torch {torch.__version__} | "
              f"{f'packed: S tokens in {args.varlen} sequences' if args.varlen else 'B=1'} "
              f"H={H} Hkv={Hkv} D={D} causal={int(causal)} FP8 in, "
              f"bf16 out | ms per forward (slowest rank), {'CUDA events' if _DEV == 'cuda' else 'wall clock'}\n")
        cols = ["S", "1 GPU ms"]
        for ex in exchanges:
            cols += [f"{world} GPU {ex} ms", "speedup", "comm ms", "hidden"]
        cols += ["compute-only ms"]
        if args.compile:
            cols += [f"{exchanges[0]} compiled ms", "speedup"]
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in rows:
            cells = [str(r["S"]), _fmt(r["ms_1gpu"])]
            for ex in exchanges:
                t = r.get(f"ms_{ex}")
                sp = r["ms_1gpu"] / t if (r["ms_1gpu"] and t and t == t and r["ms_1gpu"] == r["ms_1gpu"]) else None
                h = r.get(f"hidden_{ex}")
                cells += [_fmt(t), _fmt(sp), _fmt(r.get(f"ms_comm_{ex}"), ".3f"),
                          "n/a" if h is None else f"{100 * h:.0f}%"]
            cells += [_fmt(r["ms_compute"])]
            if args.compile:
                t = r.get(f"ms_{exchanges[0]}_compiled")
                sp = r["ms_1gpu"] / t if (r["ms_1gpu"] and t and t == t) else None
                cells += [_fmt(t), _fmt(sp)]
            print("| " + " | ".join(cells) + " |")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"device": dev_name, "world": world,
                           "torch": torch.__version__, "rows": rows}, fh, indent=1)
            print(f"\nwrote {args.json}")
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
