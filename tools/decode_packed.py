#!/usr/bin/env python3
"""A decode step with packed q (cu_seqlens_q), on and off the decode kernel (issue 15).

    python3 tools/decode_packed.py [--batches 1,8,64] [--cache 8192,32768] [--sq 1] [--heads 32]
                                   [--page-size 0] [--rounds 2] [--json out.json]

attention_with_kvcache with an FP8 cache [B, S, Hkv=8, D=128] (or a page pool with
--page-size), cache_seqlens = S, causal, bf16 out, the op's own split count, three ways on
the same data, each captured in a CUDA graph and timed by its replays (triton's do_bench,
median), the columns in alternating order round by round (torch_fmha.bench.alternating_rounds):
  dense   q [B, Sq, H, D]: the decode kernel (DecodeRows kOneTile / kRowTiles);
  packed  q [B * Sq, H, D] with cu_seqlens_q and max_seqlen_q = Sq: the decode kernel (kPacked);
  packed_bd  the same with per-sequence [B, Hkv] descales of different values (the decode
          kernel copies v_descale per token for the merge), checked against dense q with the
          same descales;
  plans   the same packed q without max_seqlen_q: varlen_fwd and ATen ops (the only path
          packed q had before session 36).
The packed columns' out and lse must equal the dense one's bitwise (printed if not).
GPU only (an SM90 GPU with the CUDA kernels built); otherwise says why and exits 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch


def _ints(s: str):
    return [int(x) for x in s.split(",") if x]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=_ints, default=[1, 8, 64])
    ap.add_argument("--cache", type=_ints, default=[8192, 32768])
    ap.add_argument("--sq", type=int, default=1)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--page-size", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    import torch_fmha
    from torch_fmha.bench import alternating_rounds, make_timer
    from torch_fmha.bench_decode import graph_ms

    reason = torch_fmha.sm90_unavailable_reason()
    if reason:
        print(f"decode_packed.py needs an SM90 GPU: {reason}", file=sys.stderr)
        return 2
    time_ms, timing = make_timer(25, 100)
    hkv, d, fp8, ps = 8, 128, torch.float8_e4m3fn, args.page_size
    one = torch.ones(1, device="cuda")
    cols = ["dense", "packed", "packed_bd", "plans"]
    print(f"{torch.cuda.get_device_name()} | H={args.heads} Hkv={hkv} D={d} Sq={args.sq} "
          f"page={ps or 'dense'} | CUDA-graph replay, us, median of {args.rounds} | {timing}")
    print(f"{'B':>3} {'S':>7} | " + " ".join(f"{c:>9}" for c in cols) + " | plans/packed packed/dense")
    rows = []
    for b in args.batches:
        for s in args.cache:
            g = torch.Generator(device="cuda").manual_seed(b * 7 + s)
            q = torch.randn(b, args.sq, args.heads, d, generator=g, device="cuda").to(fp8)
            if ps:
                pages = b * (s // ps)
                k = torch.randn(pages, ps, hkv, d, generator=g, device="cuda").to(fp8)
                v = torch.randn(pages, ps, hkv, d, generator=g, device="cuda").to(fp8)
                table = torch.randperm(pages, device="cuda", generator=g).to(torch.int32).view(b, s // ps)
            else:
                k = torch.randn(b, s, hkv, d, generator=g, device="cuda").to(fp8)
                v = torch.randn(b, s, hkv, d, generator=g, device="cuda").to(fp8)
                table = None
            lens = torch.full((b,), s, dtype=torch.int32, device="cuda")
            qp = q.view(b * args.sq, args.heads, d)
            cu = torch.arange(0, b * args.sq + 1, args.sq, dtype=torch.int32, device="cuda")
            kw = dict(page_table=table, causal=True, return_lse=True)
            ones = dict(q_descale=one, k_descale=one, v_descale=one)
            # Per-sequence values that differ (a wrong token -> sequence map would show).
            per_seq = {n: 1 + 0.01 * torch.arange(b * hkv, device="cuda").view(b, hkv).float() for n in ones}
            calls = {
                "dense": lambda: torch_fmha.attention_with_kvcache(q, k, v, lens, **kw, **ones),
                "packed": lambda: torch_fmha.attention_with_kvcache(qp, k, v, lens, cu_seqlens_q=cu,
                                                                    max_seqlen_q=args.sq, **kw, **ones),
                "packed_bd": lambda: torch_fmha.attention_with_kvcache(qp, k, v, lens, cu_seqlens_q=cu,
                                                                       max_seqlen_q=args.sq, **kw, **per_seq),
                "plans": lambda: torch_fmha.attention_with_kvcache(qp, k, v, lens, cu_seqlens_q=cu, **kw, **ones),
            }
            # The packed columns == dense q with the same descales, bitwise, out and lse (the same
            # kernel arithmetic per row; dense lse [B, H, Sq], packed [H, B * Sq]).
            def as_packed(res):
                out, lse = res
                return out.view(b * args.sq, args.heads, d), lse.permute(1, 0, 2).reshape(args.heads, -1)

            dense = as_packed(calls["dense"]())
            refs = {"packed": dense, "plans": dense,
                    "packed_bd": as_packed(torch_fmha.attention_with_kvcache(q, k, v, lens, **kw, **per_seq))}
            diff = {}
            for c in ("packed", "packed_bd", "plans"):
                want, want_lse = refs[c]
                out, lse = calls[c]()
                diff[c] = {"bitwise": bool(torch.equal(out, want) and torch.equal(lse, want_lse)),
                           "max_abs_out": (out.float() - want.float()).abs().max().item()}
                if c != "plans" and not diff[c]["bitwise"]:
                    print(f"  {c} is not bitwise the dense step: {diff[c]}")
            runs = {c: [] for c in cols}
            for _, c in alternating_rounds(cols, args.rounds):
                runs[c].append(graph_ms(calls[c], time_ms) * 1e3)
            med = {c: statistics.median(runs[c]) for c in cols}
            rows.append({"B": b, "S": s, "us": med, "runs_us": runs, "vs_dense": diff})
            print(f"{b:>3} {s:>7} | " + " ".join(f"{med[c]:9.1f}" for c in cols)
                  + f" | {med['plans'] / med['packed']:11.2f}x {med['packed'] / med['dense']:9.3f}")
            del q, k, v
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "heads": args.heads, "sq": args.sq,
                       "page_size": ps, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
