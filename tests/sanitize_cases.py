"""The cases tools/sanitize.sh runs under compute-sanitizer: one ragged FP8
batch per head dim (empty q and k sequences included, GQA, causal for one of
them), D=256 with FP8 output, one dense case per head dim (at D = 64 and 128 one whose last tiles run split (tile_scheduler.cuh's split tail, on at D = 64
since session 29, at D = 128 since session 30), and one, a quarter of its size, whose every tile runs in the split tail
(split_tail_all, session 48: racecheck finishes it); also with a packed v:
V^T by TMA, and at D=128 / 256 again, causal, past D = 128's short-key limit (2048 keys for a packed v with a mask), where P goes through shared memory; at D=128 also a (700, 0) window at 4300 keys, which runs the short-key
build), three dense D = 128 calls with FP8 output (case fp8_out: the short build, the long build
with a packed v, its split tail), and one paged FP8
case per head dim (issue 14: pages of 16 / 256 / 16 keys at D = 64 / 128 / 256:
many boxes per block, issued by the lanes of producer warp 0, and boxes smaller
than a page; scattered over a NaN-poisoned pool, seqused_k with empty and partial
last pages, softcap and sinks), and one split decode step against a KV cache
(issue 15: GQA packing, 5 splits, sinks, FP8 output through the merge kernel), and per
head dim three decode-kernel steps: Sq = 3 x G = 4 rows against a paged cache with a
window and the chosen splits, Sq = 5 x G = 8 (three row tiles), packed q with a max_seqlen_q hint below its longest
sequence (a CTA's row tiles in turn; then the same with a page id far outside the pool, which the kernel
must read as zeros), and B = 64 against short dense caches (one split; 512
CTAs, which at D = 128 run with one CTA fewer per SM; the kernel converts V in
place in its own shared memory at D <= 128, which racecheck watches). Each result is checked against the float64
oracle, so a sanitizer-clean run is also a right one. A feature the kernel refuses ("not supported by this
build") is reported as skipped, not as clean.

    python tests/sanitize_cases.py [--head-dims 64,128,256] [--device cuda] [--only split_tail,window]
"""

from __future__ import annotations

import argparse
import sys

import torch

import torch_fmha
from inputs import FP8, dense_inputs, packed_v, paged_inputs, varlen_inputs  # tests/ helpers: this script lives next to them
from kvcache_inputs import kvcache_inputs, packed_kvcache_inputs
from reference import attention_ref, kvcache_attention_ref, output_as_float64, varlen_attention_ref

# lengths: empty q / empty k sequences, 1, tile-1, tile+1, a longer one
LENS_Q = [0, 5, 1, 127, 129, 300, 64]
LENS_K = [7, 0, 1, 128, 200, 300, 0]


# The names --only selects, in the order they run (per head dim where the head dim has the case).
CASES = ("varlen", "dense", "packed_v", "packed_v_long", "split_tail", "split_tail_all", "window", "fp8_out", "paged", "kvcache_split",
         "decode")


def check(out, ref, out_scale, what):
    """A sanity bound (the tolerance rule proper is in tests/gpu): no NaN, relative
    RMSE under 5% (FP8 inputs, FP8 P, FP8 or bf16 output)."""
    o = output_as_float64(out, out_scale)
    assert not torch.isnan(o).any(), f"{what}: NaN in output"
    rel = ((o - ref).norm() / ref.norm().clamp_min(1e-30)).item()
    assert rel < 5e-2, f"{what}: relative RMSE {rel:.3e} vs the oracle"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--head-dims", default="64,128,256")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--only", default=None, help="comma list of case names (default: all): " + ", ".join(CASES))
    args = ap.parse_args()
    only = None if args.only is None else set(args.only.split(","))
    if only is not None and not only <= set(CASES):
        ap.error(f"--only: unknown case names {sorted(only - set(CASES))}; known: {', '.join(CASES)}")

    def want(name: str) -> bool:
        return only is None or name in only

    for d in (int(x) for x in args.head_dims.split(",")):
        fp8_out = d == 256
        out_dtype = FP8 if fp8_out else torch.bfloat16
        out_scale = torch.tensor([0.05], device=args.device) if fp8_out else None
        causal = d == 128
        if want("varlen"):
            q, k, v, cu_q, cu_k, s = varlen_inputs(LENS_Q, LENS_K, 8, 2, d, FP8, device=args.device, seed=d)
            out, lse = torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, causal=causal, out_dtype=out_dtype,
                                                   out_scale=out_scale, return_lse=True, **s)
            if args.device == "cuda":
                torch.cuda.synchronize()
            ref, _ = varlen_attention_ref(q, k, v, cu_q, cu_k, causal=causal, **s)
            check(out, ref, out_scale, f"varlen D={d}")
            print(f"varlen D={d} causal={causal} out={out_dtype}: ok", flush=True)

        if want("dense") or want("packed_v"):
            q, k, v, s = dense_inputs(2, 200, 333, 4, 2, d, FP8, device=args.device)
            ref, _ = attention_ref(q, k, v, causal=not causal, **s)  # of the dense and packed v cases
            if want("dense"):
                out = torch_fmha.attention(q, k, v, causal=not causal, out_dtype=out_dtype, out_scale=out_scale, **s)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                check(out, ref, out_scale, f"dense D={d}")
                print(f"dense D={d} causal={not causal} out={out_dtype}: ok", flush=True)

            if want("packed_v"):
                # The same call with a packed v ([B, Hkv, D, 21, 16]; the slots of the padding keys
                # 333-335 hold zeros, as the layout requires): TMA lands V^T blocks, no transposer
                # (kernel_traits.cuh, VLayout).
                vp = packed_v(v)
                out = torch_fmha.attention(q, k, vp, causal=not causal, out_dtype=out_dtype, out_scale=out_scale, **s)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                check(out, ref, out_scale, f"dense packed v D={d}")
                print(f"dense packed v D={d}: ok", flush=True)

        if want("packed_v_long") and d in (128, 256):
            # A packed v in the long build, P through a shared-memory tile (consumer.cuh,
            # store_p_smem; at D = 128 the tile ends the 227 KB). Causal, past D = 128's short-key
            # limit for a packed v with a mask (2048 keys): masked diagonal blocks and a partial
            # last block (4400 = 17 x 256 + 48 at D = 128 with 4 x 35 = 140 tiles; 2400 = 18 x 128 +
            # 96 at D = 256 with 8 x 19 = 152 tiles) on 132 SMs, so some CTAs run two and the
            # tile-boundary round stores P as well
            sk, h = (4400, 4) if d == 128 else (2400, 8)
            q, k, v, s = dense_inputs(1, sk, sk, h, 2, d, FP8, device=args.device, seed=11)
            out = torch_fmha.attention(q, k, packed_v(v), causal=True, **s)
            if args.device == "cuda":
                torch.cuda.synchronize()
            ref, _ = attention_ref(q, k, v, causal=True, **s)
            check(out, ref, None, f"dense packed v D={d} S={sk} causal")
            print(f"dense packed v D={d} S={sk} causal (P from shared memory): ok", flush=True)

        if want("split_tail") and d in (64, 128):
            # The split tail (tile_scheduler.cuh): 17 x 16 = 272 tiles on 132 SMs, the last 140 cut
            # into pieces whose partials go through the op's workspace and a flag per slot (and a
            # shared word per warpgroup for the count); sinks join once, in the head piece. D = 64:
            # 8 256-key blocks a tile; D = 128 (a packed v splits from 16 blocks since session
            # 32, the standard v from 32): 8192 keys and a packed v, 32 256-key blocks (the
            # P-from-shared-memory build)
            sk = 2048 if d == 64 else 8192
            q, k, v, s = dense_inputs(1, 2048, sk, 17, 17, d, FP8, device=args.device, seed=13)
            sinks = torch.linspace(-2.0, 4.0, 17, device=args.device)
            out = torch_fmha.attention(q, k, packed_v(v) if d == 128 else v, sinks=sinks, **s)
            if args.device == "cuda":
                torch.cuda.synchronize()
            ref, _ = attention_ref(q, k, v, sinks=sinks, **s)
            check(out, ref, None, f"dense split tail D={d}")
            print(f"dense D={d} S=2048 Sk={sk} H=17 split tail, sinks: ok", flush=True)

        if want("split_tail_all") and d in (64, 128):
            # Every tile in the split tail, on a quarter of split_tail's work (so that racecheck,
            # which did not finish split_tail at D = 128 within 320 s, can): with fewer than two
            # tiles per CTA the tail starts at tile 0 (SplitTail::plan), so on a 132-SM GPU the 8
            # heads x 17 q blocks = 136 tiles all run in the tail, every CTA its share of their
            # blocks (120 of the tiles cut in two at D = 128, 112 at D = 64). The fewest key
            # blocks that split: 8 of 256 keys at D = 64, 16 at D = 128 (a packed v).
            sk = 2048 if d == 64 else 4096
            q, k, v, s = dense_inputs(1, 17 * 128, sk, 8, 8, d, FP8, device=args.device, seed=17)
            out = torch_fmha.attention(q, k, packed_v(v) if d == 128 else v, **s)
            if args.device == "cuda":
                torch.cuda.synchronize()
            ref, _ = attention_ref(q, k, v, **s)
            check(out, ref, None, f"dense split tail, all tiles D={d}")
            print(f"dense D={d} S={17 * 128} Sk={sk} H=8 every tile in the split tail: ok", flush=True)

        if want("window") and d == 128:  # a narrow window past 4096 keys: the short-key build
            # (fwd_fp8_launch.h)
            q, k, v, s = dense_inputs(1, 4300, 4300, 2, 1, d, FP8, device=args.device, seed=7)
            out = torch_fmha.attention(q, k, v, window_size=(700, 0), **s)
            if args.device == "cuda":
                torch.cuda.synchronize()
            ref, _ = attention_ref(q, k, v, window_size=(700, 0), **s)
            check(out, ref, None, f"dense window D={d}")
            print(f"dense D={d} S=4300 window (700, 0): ok", flush=True)

        if want("fp8_out") and d == 128:
            # FP8 output of D = 128's dense builds (epilogue.cuh, the fp8 group stores; the other
            # D = 128 prefill cases here have bf16 output): the short build (333 rows, the last
            # tile's rows past the end not stored), the long build with a packed v (causal, 4400
            # keys: two tiles on some CTAs) and its split tail (8192 keys, 17 heads: the storing
            # piece merges first). Session 39 ran the TMA-store epilogue it measured on these
            # (with out_scale 0.02, which saturated a few outputs of the first call; 0.05 none).
            fp8_scale = torch.tensor([0.05], device=args.device)
            for b, sq, sk, h, hkv, causal_, pack in ((2, 333, 333, 4, 2, True, False),
                                                     (1, 4400, 4400, 4, 2, True, True),
                                                     (1, 2048, 8192, 17, 17, False, True)):
                q, k, v, s = dense_inputs(b, sq, sk, h, hkv, d, FP8, device=args.device, seed=17)
                out = torch_fmha.attention(q, k, packed_v(v) if pack else v, causal=causal_, out_dtype=FP8,
                                           out_scale=fp8_scale, **s)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                ref, _ = attention_ref(q, k, v, causal=causal_, **s)
                check(out, ref, fp8_scale, f"dense fp8 out D={d} S={sq}/{sk}")
                print(f"dense D={d} Sq={sq} Sk={sk} causal={causal_} packed v={pack} fp8 out: ok", flush=True)

        if want("paged"):
            page = {64: 16, 128: 256, 256: 16}.get(d, 64)
            q, kp, vp, cu_q, used, table, s = paged_inputs(LENS_Q, LENS_K, 8, 2, d, FP8, page, device=args.device,
                                                           seed=d)[:7]
            kw = dict(s, causal=causal, softcap=30.0, sinks=torch.linspace(-2.0, 2.0, 8, device=args.device))
            try:
                out = torch_fmha.varlen_attention(q, kp, vp, cu_q, None, seqused_k=used, page_table=table, **kw)
            except RuntimeError as e:
                if "not supported by this build" not in str(e):
                    raise
                print(f"paged D={d}: SKIPPED ({str(e).splitlines()[0]})", flush=True)
                continue
            if args.device == "cuda":
                torch.cuda.synchronize()
            ref, _ = varlen_attention_ref(q, kp, vp, cu_q, None, seqused_k=used, page_table=table, **kw)
            check(out, ref, None, f"paged D={d}")
            print(f"paged D={d} page={page} causal={causal} softcap sinks: ok", flush=True)
    if want("kvcache_split"):
        kvcache_split_case(args.device)
    if want("decode"):
        for d in (int(x) for x in args.head_dims.split(",")):
            kvcache_decode_kernel_cases(args.device, d)
    return 0


def kvcache_decode_kernel_cases(device, d):
    """The decode kernel at head dim d: Sq = 3 rows per sequence x G = 4 against a paged cache
    (pages of 16, NaN-poisoned pool) with a (100, 0) window and num_splits=0, B = 64
    dense caches of up to 300 keys (NaN past cache_seqlens) in one split each, and Sq = 5 x
    G = 8 = 40 rows (three 16-row tiles, the last partial) against a paged cache, causal."""
    lens = [0, 1, 31, 33, 517, 300]
    q, kp, vp, seqlens, table, s = kvcache_inputs(len(lens), 3, 8, 2, d, FP8, lens, page_size=16,
                                                  device=device, seed=d)
    out = torch_fmha.attention_with_kvcache(q, kp, vp, seqlens, page_table=table, window_size=(100, 0), **s)
    if device == "cuda":
        torch.cuda.synchronize()
    ref, _ = kvcache_attention_ref(q, kp, vp, seqlens, page_table=table, window_size=(100, 0), **s)
    check(out, ref, None, f"decode kernel paged D={d}")
    print(f"decode kernel D={d} paged Sq=3 G=4 window (100, 0): ok", flush=True)
    lens = [(37 * i) % 301 for i in range(64)]
    q, kc, vc, seqlens, _, s = kvcache_inputs(64, 1, 8, 8, d, FP8, lens, device=device, seed=d + 1)
    out = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, causal=True, **s)
    if device == "cuda":
        torch.cuda.synchronize()
    ref, _ = kvcache_attention_ref(q, kc, vc, seqlens, causal=True, **s)
    check(out, ref, None, f"decode kernel B=64 D={d}")
    print(f"decode kernel D={d} B=64 Hkv=8 one split: ok", flush=True)
    lens = [0, 4, 700, 2100]
    q, kp, vp, seqlens, table, s = kvcache_inputs(len(lens), 5, 16, 2, d, FP8, lens, page_size=16,
                                                  device=device, seed=d + 2)
    out = torch_fmha.attention_with_kvcache(q, kp, vp, seqlens, page_table=table, causal=True, **s)
    if device == "cuda":
        torch.cuda.synchronize()
    ref, _ = kvcache_attention_ref(q, kp, vp, seqlens, page_table=table, causal=True, **s)
    check(out, ref, None, f"decode kernel row tiles D={d}")
    print(f"decode kernel D={d} paged Sq=5 G=8 (40 rows, three row tiles) causal: ok", flush=True)
    # Packed q (session 36) with a max_seqlen_q hint of 3 below the longest sequence's 5 (3 x G 8
    # = 24 rows: two row tiles per split): that sequence's 40 rows are three tiles, the first CTA
    # takes tiles 0 and 2 in turn (shared memory reused after a barrier).
    lens_q, lens = [0, 5, 1, 2], [9, 700, 0, 2100]
    q, cu_q, kp, vp, seqlens, table, s = packed_kvcache_inputs(lens_q, 16, 2, d, FP8, lens, page_size=16,
                                                               device=device, seed=d + 3)
    out = torch_fmha.attention_with_kvcache(q, kp, vp, seqlens, page_table=table, cu_seqlens_q=cu_q, max_seqlen_q=3,
                                            causal=True, **s)
    if device == "cuda":
        torch.cuda.synchronize()
    ref, _ = kvcache_attention_ref(q, kp, vp, seqlens, page_table=table, cu_seqlens_q=cu_q, causal=True, **s)
    check(out, ref, None, f"decode kernel packed q D={d}")
    print(f"decode kernel D={d} paged packed q Sq_b 0/5/1/2 G=8 hint 3 causal: ok", flush=True)
    if device == "cuda":  # the CPU op rejects it; on CUDA a page id far outside the pool reads zeros
        bad = table.clone()
        bad[3, 0] = kp.shape[0] + 100000
        out = torch_fmha.attention_with_kvcache(q, kp, vp, seqlens, page_table=bad, cu_seqlens_q=cu_q,
                                                max_seqlen_q=3, causal=True, **s)
        torch.cuda.synchronize()
        assert torch.isfinite(out.float()).all()
        print(f"decode kernel D={d} a page id outside the pool (read as zeros): ok", flush=True)


def kvcache_split_case(device):
    """Decode (Sq = 1) with empty, 1-key and long caches (NaN past cache_seqlens), 5 splits merged
    by the merge kernel, with sinks (one -inf) and FP8 output."""
    q, kc, vc, seqlens, table, s = kvcache_inputs(4, 1, 32, 8, 128, FP8, [3000, 1, 0, 2049], smax=4096,
                                                  device=device, seed=1)
    sinks = torch.linspace(-2.0, 2.0, 32, device=device)
    sinks[0] = -float("inf")
    out_scale = torch.tensor([0.02], device=device)
    out = torch_fmha.attention_with_kvcache(q, kc, vc, seqlens, causal=True, sinks=sinks, num_splits=5,
                                            out_dtype=FP8, out_scale=out_scale, **s)
    if device == "cuda":
        torch.cuda.synchronize()
    ref, _ = kvcache_attention_ref(q, kc, vc, seqlens, causal=True, sinks=sinks, **s)
    check(out, ref, out_scale, "kvcache split")
    print("kvcache D=128 GQA 4 splits=5 sinks fp8-out: ok", flush=True)


if __name__ == "__main__":
    sys.exit(main())
