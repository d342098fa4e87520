"""``python -m torch_fmha.bench --paged PAGE_SIZE | --softcap [CAP] | --sinks``: the
serving features (issue 14), ours with the feature next to ours without it.

Rows, per head dim, causal setting and sequence length of the FlashAttention-3
grid (``B*S = 16384``, ``H*D = 2048``, FP8 inputs, per-tensor descales, bf16
output):

* ``--paged P``: prefill over a paged KV cache (pages of P keys scattered over
  the pool by a random permutation, ``seqused_k`` = S) vs the same batch packed
  (``varlen_attention`` with ``cu_seqlens_k``); targets (issue 14): >= 0.95x
  for P >= 64, >= 0.85x for P = 16. The row also reports max|paged - packed|
  (0 where the kernel's tiling is the same).
* ``--softcap [CAP]`` (default 50): ``attention(softcap=CAP)`` vs without;
  target >= 0.85x.
* ``--sinks``: ``attention(sinks=...)`` (random float32 ``[H]``) vs without;
  target >= 0.98x.
* with more than one flag, also all of them at once vs the plain call: on the
  paged / varlen path (the plain call packed) when ``--paged`` is among them, else
  on the dense path.

The dense rows (softcap, sinks, both) give ours v as ``--v-layout`` says, as the grid does: by
default a packed v at D = 128 / 256 (what ``quantize_qkv`` returns there; q, k, v then
come from it, per-tensor scales), the standard ``[B, S, H, D]`` at D = 64; each row names
its layout (``v``). Until session 40 they always took the standard v, whose D = 128 kernel
is the 192-key build, not the packed-v build the grid times. The varlen rows (paged, alone or
with the others) take the standard v: packed batches have no packed v.

``ratio`` = time without / time with (throughput ratio, 1.0 = free). With
``--repeat N`` (N > 1) each row times the two calls in pairs of opposite order
(without, with; with, without; ...), N rounded up to an even count: a pair's ratio is
its two times without over its two times with, so a drift of the GPU between the two
timings of a repeat (the second call of a repeat reads a little slower on an H200)
cancels within the pair. ``ratio`` is then the median over the pairs and
``ratio_spread`` their min and max (until session 33 every row timed the plain call
first, once). The peer
columns say per feature why they are not timed: PyTorch SDPA has no page-table,
softcap or sink argument; cuDNN's ``sdpa_fp8`` is inspected at run time for the
corresponding arguments (none in cudnn-frontend 1.14), and the reason printed.
Timing, argument parsing (the flags are defined and checked there) and the
table layout are bench.py's. Needs an SM90 GPU
(exit status 2 otherwise).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from typing import Callable, Dict, List, Optional

import torch

from torch_fmha.bench import (COL_CUDNN, HIDDEN, TOKENS, Progress, _fmt, _grid, _load_ours, _load_peers, grid_batch,
                              alternating_rounds, make_timer, uses_packed_v)

COL_SDPA = "SDPA bf16"
FP8 = torch.float8_e4m3fn
#: issue 14's throughput targets, feature -> minimum ratio (paged: by page size)
TARGETS = {"softcap": 0.85, "sinks": 0.98}


def paged_target(page_size: int) -> float:
    return 0.95 if page_size >= 64 else 0.85


def features_of(args: argparse.Namespace) -> List[Dict[str, object]]:
    """The feature rows asked for: one per flag, plus all flags combined when several."""
    out: List[Dict[str, object]] = []
    if args.paged:
        out.append({"paged": args.paged})
    if args.softcap is not None:
        out.append({"softcap": args.softcap})
    if args.sinks:
        out.append({"sinks": True})
    if len(out) > 1:
        combined: Dict[str, object] = {}
        for f in out:
            combined.update(f)
        out.append(combined)
    return out


def feature_label(f: Dict[str, object]) -> str:
    parts = []
    if "paged" in f:
        parts.append(f"paged {f['paged']}")
    if "softcap" in f:
        parts.append(f"softcap {f['softcap']:g}")
    if "sinks" in f:
        parts.append("sinks")
    return " + ".join(parts)


def target_of(f: Dict[str, object]) -> Optional[float]:
    if len(f) != 1:
        return None  # no target for the combination
    if "paged" in f:
        return paged_target(int(f["paged"]))
    return TARGETS["softcap" if "softcap" in f else "sinks"]


def _paged_pool(k: torch.Tensor, v: torch.Tensor, batch: int, seqlen: int, page: int, seed: int):
    """k / v [B*S, Hkv, D] (sequence b at rows b*S..) -> pools [pages, page, Hkv, D] holding the
    same keys on pages scattered by a random permutation, page_table [B, ceil(S / page)]."""
    per_seq = -(-seqlen // page)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(batch * per_seq, generator=g).to(k.device)
    pools = []
    for x in (k, v):
        pad = torch.zeros(batch, per_seq * page, *x.shape[1:], dtype=x.dtype, device=x.device)
        pad[:, :seqlen] = x.view(batch, seqlen, *x.shape[1:])
        pool = torch.empty(batch * per_seq, page, *x.shape[1:], dtype=x.dtype, device=x.device)
        pool[order] = pad.view(batch * per_seq, page, *x.shape[1:])
        pools.append(pool)
    return pools[0], pools[1], order.view(batch, per_seq).to(torch.int32)


def make_case(fmha, feature: Dict[str, object], batch: int, seqlen: int, heads: int, d: int, causal: bool,
              device, seed: int = 0, pack_v: bool = False):
    """(base, with_feature, flops, path) callables for one row. Dense path for softcap / sinks
    alone; varlen path (base: packed with cu_seqlens_k) when paged is involved. pack_v: the
    dense path's v is a packed v (``quantize_qkv(pack_v=True)``, per-tensor scales), path
    "dense, packed v"."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, seqlen, heads, d, generator=g).to(device).to(FP8) for _ in range(3))
    one = torch.ones(1, device=device)
    desc = dict(q_descale=one, k_descale=one, v_descale=one)
    dense_path = "dense"
    if pack_v and "paged" not in feature:
        qkv = fmha.quantize_qkv(*(x.to(torch.bfloat16) for x in (q, k, v)), granularity="tensor", pack_v=True)
        q, k, v = qkv.q, qkv.k, qkv.v
        desc = dict(q_descale=qkv.q_descale, k_descale=qkv.k_descale, v_descale=qkv.v_descale)
        dense_path = "dense, packed v"
    opts: Dict[str, object] = {}
    if "softcap" in feature:
        opts["softcap"] = float(feature["softcap"])
    if "sinks" in feature:
        opts["sinks"] = torch.randn(heads, generator=g).to(device)
    flops = 4.0 * batch * heads * seqlen * seqlen * d / (2 if causal else 1)
    if "paged" not in feature:
        def base():
            return fmha.attention(q, k, v, causal=causal, **desc)

        def with_feature():
            return fmha.attention(q, k, v, causal=causal, **desc, **opts)
        return base, with_feature, flops, dense_path
    cu = torch.arange(0, (batch + 1) * seqlen, seqlen, dtype=torch.int32, device=device)
    qp, kp, vp = (x.reshape(batch * seqlen, heads, d) for x in (q, k, v))
    k_pool, v_pool, table = _paged_pool(kp, vp, batch, seqlen, int(feature["paged"]), seed)
    used = torch.full((batch,), seqlen, dtype=torch.int32, device=device)

    def base():
        return fmha.varlen_attention(qp, kp, vp, cu, cu, seqlen, seqlen, causal=causal, **desc)

    def with_feature():
        return fmha.varlen_attention(qp, k_pool, v_pool, cu, None, seqlen, seqlen, causal=causal,
                                     seqused_k=used, page_table=table, **desc, **opts)
    return base, with_feature, flops, "varlen"


def peer_reasons(feature: Dict[str, object], cudnn_doc: Optional[str], cudnn_reason: Optional[str]) -> Dict[str, str]:
    """Why each peer column is not timed for this feature (they take none of these problems)."""
    wanted = {"paged": ("page table", ("paged_attention_k_table", "page_table")),
              "softcap": ("logit softcap", ("softcap", "score_mod")),
              "sinks": ("attention sinks", ("sink",))}
    names = [wanted[f][0] for f in feature]
    sdpa = (f"torch.nn.functional.scaled_dot_product_attention has no {' / '.join(names)} argument "
            "(its problem is the one without the feature: ours' base column)")
    if cudnn_reason:
        cud = f"not run: {cudnn_reason}"
    else:
        missing = [wanted[f][0] for f in feature if not any(w in (cudnn_doc or "") for w in wanted[f][1])]
        if missing:
            cud = f"cudnn-frontend's pygraph.sdpa_fp8 takes no {' / '.join(missing)} argument"
        else:
            cud = "the frontend's sdpa_fp8 names these arguments, but _peers.CudnnFp8 does not pass them yet"
    return {COL_CUDNN: cud, COL_SDPA: sdpa}


def timed_repeats(repeat: int) -> int:
    """Repeats ``time_pair`` times for ``--repeat N``: 1, or N rounded up to even."""
    return 1 if repeat == 1 else repeat + repeat % 2


def time_pair(time_ms: Callable, base: Callable, with_feature: Callable, repeat: int):
    """(base times, feature times): one plain-first timing for repeat == 1, else pairs of
    repeats in opposite order (base first, then feature first), ``repeat`` rounded up to
    an even count, so that a drift of the GPU hits both calls alike within each pair."""
    calls = {"base": base, "feature": with_feature}
    times: Dict[str, List[float]] = {"base": [], "feature": []}
    for _, name in alternating_rounds(["base", "feature"], timed_repeats(repeat)):
        times[name].append(time_ms(calls[name]))
    return times["base"], times["feature"]


def pair_ratios(base_ms: List[float], feature_ms: List[float]) -> List[float]:
    """Throughput ratio of each opposite-order pair of repeats (time_pair): its two times
    without the feature over its two times with it."""
    return [(base_ms[i] + base_ms[i + 1]) / (feature_ms[i] + feature_ms[i + 1])
            for i in range(0, len(base_ms) - 1, 2)]


def serving_rows(fmha, features, seqlens, head_dims, causals, device, time_ms: Callable, progress=None,
                 seed: int = 0, tokens: int = TOKENS, hidden: int = HIDDEN, repeat: int = 1,
                 v_layout: str = "standard") -> List[dict]:
    """One row per (feature, D, causal, S): both times, TF/s, the ratio and its target.
    v_layout (bench's ``--v-layout``): which dense rows give ours a packed v (``uses_packed_v``).
    B = tokens // S (at least 1), H = hidden // D (the FlashAttention-3 grid by default). With repeat > 1
    (``time_pair``) the times are medians, ``ratio`` the median of the pairs' ratios
    (``pair_ratios``) and ``ratio_spread`` their min-max, count and values; with repeat == 1
    ``ratio_spread`` is None."""
    rows = []
    for feature in features:
        for d in head_dims:
            for causal in causals:
                for s in seqlens:
                    heads, batch = hidden // d, grid_batch(s, tokens)
                    base, with_feature, flops, path = make_case(fmha, feature, batch, s, heads, d, causal,
                                                                device, seed, pack_v=uses_packed_v(v_layout, d))
                    check = None
                    if "paged" in feature and len(feature) == 1:
                        check = (with_feature().float() - base().float()).abs().max().item()
                    base_ms, feature_ms = time_pair(time_ms, base, with_feature, repeat)
                    t0, t1 = statistics.median(base_ms), statistics.median(feature_ms)
                    target = target_of(feature)
                    spread = None
                    if min(feature_ms) <= 0:  # a timer that failed: no ratio, the times as read
                        ratio = None
                    elif repeat == 1:
                        ratio = t0 / t1
                    else:
                        pairs = pair_ratios(base_ms, feature_ms)
                        ratio = statistics.median(pairs)
                        spread = {"min": min(pairs), "max": max(pairs), "n": len(pairs), "samples": pairs,
                                  "over": "pairs of repeats in opposite order"}
                    rows.append({"feature": feature_label(feature), "path": path, "D": d, "causal": causal,
                                 "S": s, "B": batch, "H": heads, "base_ms": t0, "feature_ms": t1,
                                 "base_tflops": flops / t0 * 1e-9 if t0 > 0 else None,
                                 "feature_tflops": flops / t1 * 1e-9 if t1 > 0 else None,
                                 "ratio": ratio, "ratio_spread": spread, "target": target,
                                 "meets_target": None if target is None or ratio is None else ratio >= target,
                                 "max_abs_vs_base": check,
                                 **({"base_ms_repeats": base_ms, "feature_ms_repeats": feature_ms}
                                    if repeat > 1 else {})})
                    if progress is not None:
                        progress.step(f"{feature_label(feature)} D={d} S={s}{' causal' if causal else ''}")
                    del base, with_feature
    return rows


def _ratio_text(row: dict) -> str:
    """``0.975`` or, with repeats, ``0.975 (0.970-0.981)``: median (min-max)."""
    spread = row.get("ratio_spread")
    if row["ratio"] is None or not spread:
        return _fmt(row["ratio"], 3)
    return f"{row['ratio']:.3f} ({spread['min']:.3f}-{spread['max']:.3f})"


def format_serving_table(rows: List[dict], reasons: Dict[str, Dict[str, str]]) -> str:
    head = ["feature", "D", "causal", "S", "v", "ours TF/s", "ours + feature TF/s", "ratio", "target",
            "max|paged - packed|", COL_CUDNN, COL_SDPA]
    body = []
    for r in rows:
        tgt = "" if r["target"] is None else f">= {r['target']:.2f} {'ok' if r['meets_target'] else 'MISSED'}"
        layout = "packed" if r["path"].endswith("packed v") else "standard"
        body.append([r["feature"], str(r["D"]), "yes" if r["causal"] else "no", str(r["S"]), layout,
                     _fmt(r["base_tflops"], 1), _fmt(r["feature_tflops"], 1), _ratio_text(r), tgt,
                     "" if r["max_abs_vs_base"] is None else _fmt(r["max_abs_vs_base"], 3), "n/a", "n/a"])
    notes = [f"  {feat}: {col}: {msg}" for feat, cols in reasons.items() for col, msg in cols.items()]
    return "\n".join(_grid(head, body) + ["", "n/a reasons:"] + notes)


def run_serving(args: argparse.Namespace, argv: List[str]) -> int:
    """``--paged`` / ``--softcap`` / ``--sinks`` on the SM90 GPU."""
    fmha, reason = _load_ours()
    if fmha is None:
        print(f"torch_fmha.bench serving features: {reason}", file=sys.stderr)
        return 2
    gpu_reason = fmha.sm90_unavailable_reason()
    if gpu_reason:
        print(f"torch_fmha.bench --paged / --softcap / --sinks needs an SM90 GPU: {gpu_reason}", file=sys.stderr)
        return 2
    features = features_of(args)
    cudnn = _load_peers().CudnnFp8()
    cudnn_reason = cudnn.unavailable_reason()
    cudnn_doc = None if cudnn_reason else (cudnn._cudnn.pygraph.sdpa_fp8.__doc__ or "")
    reasons = {feature_label(f): peer_reasons(f, cudnn_doc, cudnn_reason) for f in features}
    causals = {"0": [False], "1": [True], "both": [False, True]}[args.causal]
    time_ms, timing = make_timer(args.warmup, args.rep)
    progress = Progress(len(features) * len(args.head_dims) * len(causals) * len(args.seqlens),
                        enabled=not args.no_progress)
    try:
        rows = serving_rows(fmha, features, args.seqlens, args.head_dims, causals, "cuda", time_ms, progress,
                            seed=args.seed, repeat=args.repeat, v_layout=args.v_layout)
    finally:
        progress.close()
    print(f"\ntorch_fmha.bench serving features on {torch.cuda.get_device_name()} | torch {torch.__version__} | "
          f"FP8 in, bf16 out | {timing}\nratio = ours time / ours + feature time (throughput ratio)"
          + (f"; median (min-max) over {timed_repeats(args.repeat) // 2} pairs of repeats in opposite order"
             if args.repeat > 1 else "") + "\n")
    print(format_serving_table(rows, reasons))
    if args.json:
        meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "device": torch.cuda.get_device_name(), "torch": torch.__version__, "timing": timing,
                "command": " ".join(["python", "-m", "torch_fmha.bench"] + argv),
                "flops": "4*B*H*S*S*D, halved for causal", "unavailable": reasons, "repeat": args.repeat,
                "repeats_timed": timed_repeats(args.repeat),
                "cudnn": cudnn.versions(), "v_layout": args.v_layout}
        with open(args.json, "w") as f:
            json.dump({"metadata": meta, "serving_rows": rows}, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0
