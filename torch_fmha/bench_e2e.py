"""``python -m torch_fmha.bench --e2e-errors``: the end-to-end FP8 error of each
quantization setting (issue 13).

``torch_fmha.quantize_qkv`` per-tensor, per-head, per-head + Hadamard rotation
(and per-tensor + rotation), ours at FP8 output and cuDNN FP8 (per-tensor, FP8
output on Hopper), against float64 attention on the original unquantized bf16
inputs, on N(0,1) and on N(0,1) with 0.1% of the entries x10, with the quantize
and attention times. Without an SM90 GPU it runs ours on the CPU op path (FP8
inputs taken exactly, but P kept in float64, not rounded to e4m3 as the kernel
does, so the errors are lower than the kernel's) and reports errors only.
Argument parsing, timing and the table layout are bench.py's, the reference bench_math.py's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
from typing import Dict, List

import torch

from torch_fmha.bench import COL_CUDNN, _first_line, _fmt, _grid, _load_ours, _load_peers, make_timer
from torch_fmha.bench_math import error_stats, reference_attention

#: (label, granularity, rotate) of the rows of ``--e2e-errors``, ours; per-tensor first
#: (the baseline of the ratio column).
E2E_SETTINGS = (("per-tensor", "tensor", False), ("per-head", "head", False),
                ("per-head + rotation", "head", True), ("per-tensor + rotation", "tensor", True))
E2E_DATA = ("N(0,1)", "outliers")


def e2e_inputs(shape, kind: str, seed: int, device, dtype):
    """q, k, v of ``shape`` [B, S, H, D]: ``"N(0,1)"``, or ``"outliers"``: N(0,1) with
    0.1% of the entries (each independently) multiplied by 10. Drawn on the CPU in
    float32 from ``seed`` (the same numbers on every device), then cast."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(3):
        x = torch.randn(shape, generator=g)
        if kind == "outliers":
            x = torch.where(torch.rand(shape, generator=g) < 1e-3, x * 10, x)
        elif kind != "N(0,1)":
            raise ValueError(f"unknown e2e data kind {kind!r}")
        out.append(x.to(device=device, dtype=dtype))
    return out


def e2e_error_rows(fmha, shape, causal: bool, seed: int = 0, device="cpu", dtype=torch.float32,
                   cudnn=None, time_ms=None, note=lambda col, msg: None) -> List[dict]:
    """End-to-end FP8 error of each quantization setting (issue 13).

    The reference is float64 attention on the *original* q, k, v (not on the
    dequantized ones), so the error includes the quantization of the inputs.
    Ours: ``fmha.quantize_qkv(q, k, v, granularity, rotate)`` then
    ``fmha.attention`` with bf16 output. With ``cudnn`` (a ``_peers.CudnnFp8``),
    also cuDNN FP8 on per-tensor quantized inputs, which on Hopper writes FP8
    only, next to ours per-tensor with the same FP8 output and ``out_scale``
    (v's descale). With ``time_ms`` (GPU), the quantize and the attention times.
    Returns one dict per (data, setting).
    """
    B, S, H, D = shape
    scale = 1.0 / math.sqrt(D)
    rows: List[dict] = []
    for di, kind in enumerate(E2E_DATA):
        q, k, v = e2e_inputs(shape, kind, seed + di, device, dtype)
        ref = reference_attention(q, k, v, scale, causal)
        base = None

        def add(setting, out, quant, attn, extra=""):
            nonlocal base
            st = error_stats(out.double(), ref) if out is not None else None
            if st is not None and setting == E2E_SETTINGS[0][0]:
                base = st["rmse"]
            rows.append({"data": kind, "setting": setting, "causal": causal, "shape": list(shape),
                         "errors": st, "vs_per_tensor": (st["rmse"] / base if st and base else None),
                         "quant_ms": quant, "attn_ms": attn, "note": extra})

        for label, gran, rot in E2E_SETTINGS:
            def quantize(gran=gran, rot=rot):
                return fmha.quantize_qkv(q, k, v, gran, rot)
            qkv = quantize()
            def attend(qkv=qkv):
                return fmha.attention(*qkv.tensors, causal=causal, out_dtype=torch.bfloat16, **qkv.descales)
            out = attend()
            add(label, out, time_ms(quantize) if time_ms else None,
                time_ms(attend) if time_ms else None, "bf16 out")
        if cudnn is not None:
            qkv = fmha.quantize_qkv(q, k, v, "tensor")
            out_scale = qkv.v_descale.clone()  # |o| <= max|v|: the FP8 output never saturates
            ours = fmha.attention(*qkv.tensors, causal=causal, out_dtype=torch.float8_e4m3fn,
                                  out_scale=out_scale, **qkv.descales)
            add("per-tensor, FP8 out", ours.double() * out_scale.double(), None, None,
                "FP8 out, as cuDNN")
            try:
                # cuDNN FP8 takes a standard v, not a packed one (quantize_qkv's default at
                # D=128 / 256): it gets the same values unpacked (no copy otherwise).
                v8 = fmha.unpack_v(qkv.v, S) if qkv.v.dim() == 5 else qkv.v
                run, o8 = cudnn.prepare(qkv.q, qkv.k, v8, *qkv[3:], causal=causal,
                                        out_scale=float(out_scale), out_dtype=torch.float8_e4m3fn)
                o8.fill_(float("nan"))  # a tile cuDNN never writes shows up
                run()
                add(COL_CUDNN + " per-tensor", o8.double() * out_scale.double(),
                    time_ms(lambda: fmha.quantize_qkv(q, k, v, "tensor")) if time_ms else None,
                    time_ms(run) if time_ms else None, "FP8 out")
            except Exception as e:
                note(COL_CUDNN, f"e2e errors: {type(e).__name__}: {_first_line(e)}")
                add(COL_CUDNN + " per-tensor", None, None, None, "n/a")
        del ref
    return rows


def format_e2e_table(rows: List[dict]) -> str:
    """The ``--e2e-errors`` table (plain text)."""
    if not rows:
        return "(no end-to-end error rows)"
    B, S, H, D = rows[0]["shape"]
    timed = any(r.get("quant_ms") is not None for r in rows)
    head = ["data", "causal", "D", "setting", "RMSE", "max|e|", "RMSE / per-tensor"]
    head += ["quantize ms", "attention ms", "total ms", "total / per-head total"] if timed else []
    head += ["note"]
    body = []

    def total(r):
        qm, am = r.get("quant_ms"), r.get("attn_ms")
        return qm + am if qm is not None and am is not None else None
    per_head = {(r["data"], r["causal"], r["shape"][3]): total(r) for r in rows if r["setting"] == "per-head"}
    for r in rows:
        e = r.get("errors") or {}
        cells = [r["data"], "yes" if r["causal"] else "no", str(r["shape"][3]), r["setting"],
                 _fmt(e.get("rmse"), 6), _fmt(e.get("max_abs"), 5), _fmt(r.get("vs_per_tensor"), 3)]
        if timed:
            t, t0 = total(r), per_head.get((r["data"], r["causal"], r["shape"][3]))
            cells += [_fmt(r.get("quant_ms"), 4), _fmt(r.get("attn_ms"), 4), _fmt(t, 4),
                      _fmt(t / t0 if t is not None and t0 else None, 3)]
        body.append(cells + [r.get("note", "")])
    title = (f"End-to-end error vs float64 attention on the original (unquantized) inputs, "
             f"B={B} S={S} H={H}; outliers = N(0,1) with 0.1% of entries x10:")
    return "\n".join([title] + _grid(head, body))


def run_e2e(args: argparse.Namespace, argv: List[str]) -> int:
    """``--e2e-errors``: the end-to-end quantization error table, on the SM90 GPU
    (with cuDNN FP8 and times) or, without one, on the CPU op path (errors only;
    the CPU path does not round P to e4m3 as the kernel does)."""
    fmha, reason = _load_ours()
    if fmha is None or not hasattr(fmha, "quantize_qkv"):
        print(f"--e2e-errors needs torch_fmha.quantize_qkv: {reason or 'not found'}", file=sys.stderr)
        return 2
    gpu_reason = fmha.sm90_unavailable_reason()
    device = "cpu" if gpu_reason else "cuda"
    B, S, H = args.e2e_shape or ((1, 512, 8) if gpu_reason else (4, 4096, 16))
    causals = {"0": [False], "1": [True], "both": [False, True]}[args.causal]
    reasons: Dict[str, List[str]] = {COL_CUDNN: []}

    def note(col: str, msg: str) -> None:
        if msg not in reasons.setdefault(col, []):
            reasons[col].append(msg)

    cudnn, time_ms, timing = None, None, "not timed (CPU op path)"
    if gpu_reason:
        note(COL_CUDNN, f"not run: {gpu_reason}; ours ran on the CPU op path")
    else:
        cudnn = _load_peers().CudnnFp8()
        why = cudnn.unavailable_reason()
        if why:
            note(COL_CUDNN, why)
            cudnn = None
        time_ms, timing = make_timer(args.warmup, args.rep)
    rows: List[dict] = []
    for D in args.head_dims:
        for c in causals:
            rows += e2e_error_rows(fmha, (B, S, H, D), c, seed=args.seed, device=device,
                                   dtype=torch.bfloat16, cudnn=cudnn, time_ms=time_ms, note=note)
    where = torch.cuda.get_device_name() if device == "cuda" else "CPU (op path; P not rounded to e4m3)"
    print(f"\ntorch_fmha.bench --e2e-errors on {where} | torch {torch.__version__} | bf16 inputs | {timing}\n")
    print(format_e2e_table(rows))
    notes = [(c, m) for c, ms in reasons.items() for m in ms]
    if notes:
        print("\nn/a reasons:\n" + "\n".join(f"  {c}: {m}" for c, m in notes))
    if args.json:
        meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "device": where, "torch": torch.__version__, "timing": timing,
                "command": " ".join(["python", "-m", "torch_fmha.bench"] + argv), "input_dtype": "bfloat16",
                "reference": "float64 attention on the original (unquantized) bf16 inputs",
                "outliers": "N(0,1), 0.1% of entries (independently) x10", "unavailable": reasons}
        with open(args.json, "w") as f:
            json.dump({"metadata": meta, "e2e_rows": rows}, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0
