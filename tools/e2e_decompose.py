#!/usr/bin/env python3
"""Where the end-to-end FP8 error comes from (issue 13), on the CPU in float64.

    python3 tools/e2e_decompose.py [--shape 1,4096,4,128] [--causal both]

`python -m torch_fmha.bench --e2e-errors` measures the kernel's error against float64
attention on the unquantized inputs. This emulates the kernel's rounding steps instead
(q, k, v as quantize_qkv writes them; P = exp(s - max) * 2^8 rounded to e4m3 and the row
sum taken before that rounding, as csrc/kernel/softmax.cuh does; bf16 output not rounded)
and takes parts of the rounding away, to see how much each leaves:

  per-tensor / per-head / per-head + rotation   q, k, v and P rounded (the bench's rows)
  v and P only                                  q and k exact: what no q / k scheme removes
  v only                                        q, k exact, P unrounded

Each RMSE is also given relative to per-tensor's. Data: bench_e2e.e2e_inputs, N(0,1) and
N(0,1) with 0.1% of the entries x10 ("outliers"); one query head per KV head.
"""

from __future__ import annotations

import argparse
import math

import torch

import torch_fmha
from torch_fmha.bench_e2e import e2e_inputs
from torch_fmha.bench_math import reference_attention

P_OFFSET = 256.0  # softmax.cuh kMaxOffset = 8: P in [0, 2^8]


def emulate(q, k, v, q_descale, k_descale, v_descale, causal: bool, round_p: bool = True):
    """The kernel's output in float64 for q, k [B, S, H, D] (any float dtype, times their
    descales [1] or [B, H]) and v likewise; P rounded to e4m3 when round_p."""
    b, s, h, d = q.shape

    def deq(x, ds):  # [B, S, H, D] in float64 times its descale ([1] or [B, H])
        ds = ds.double()
        return x.double() * (ds.reshape(b, 1, h, 1) if ds.numel() > 1 else ds)

    qh, kh, vh = (deq(x, ds).transpose(1, 2) for x, ds in ((q, q_descale), (k, k_descale), (v, v_descale)))
    sc = qh @ kh.transpose(-1, -2) / math.sqrt(d)                     # [B, H, S, S]
    if causal:
        sc = sc.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), -math.inf)
    p = torch.exp(sc - sc.amax(-1, keepdim=True)) * P_OFFSET
    l = p.sum(-1, keepdim=True)
    if round_p:
        p = p.float().to(torch.float8_e4m3fn).double()
    return (p @ vh / l).transpose(1, 2)


def rows(shape, causal: bool):
    b, s, h, d = shape
    for kind in ("outliers", "N(0,1)"):
        q, k, v = e2e_inputs(shape, kind, 0, "cpu", torch.float32)
        ref = reference_attention(q, k, v, 1 / math.sqrt(d), causal)
        rmse = lambda o: (o - ref).pow(2).mean().sqrt().item()  # noqa: E731
        out = {}
        for name, gran, rot in (("per-tensor", "tensor", False), ("per-head", "head", False),
                                ("per-head + rotation", "head", True)):
            qq = torch_fmha.quantize_qkv(q, k, v, gran, rot, pack_v=False)
            out[name] = rmse(emulate(*qq.tensors, *qq.descales.values(), causal))
        qq = torch_fmha.quantize_qkv(q, k, v, "head", False, pack_v=False)
        one = torch.ones(1)
        out["v and P only"] = rmse(emulate(q, k, qq.v, one, one, qq.v_descale, causal))
        out["v only"] = rmse(emulate(q, k, qq.v, one, one, qq.v_descale, causal, round_p=False))
        yield kind, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="1,4096,4,128", help="B,S,H,D (float64 scores: B*H*S*S*8 bytes each)")
    ap.add_argument("--causal", default="both", choices=["0", "1", "both"])
    args = ap.parse_args(argv)
    shape = tuple(int(x) for x in args.shape.split(","))
    causals = {"0": [False], "1": [True], "both": [False, True]}[args.causal]
    print(f"end-to-end RMSE against float64 attention on the unquantized inputs, B,S,H,D = {shape} "
          f"(kernel rounding emulated in float64; in brackets: relative to per-tensor)")
    for causal in causals:
        for kind, out in rows(shape, causal):
            pt = out["per-tensor"]
            cells = "  ".join(f"{n} {r:.3e} ({r / pt:.2f})" for n, r in out.items())
            print(f"{'causal' if causal else 'non-causal':10s} {kind:8s} {cells}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
