"""Side-by-side attention benchmark: torch_fmha FP8 vs cuDNN FP8 vs PyTorch SDPA.

Usage::

    python -m torch_fmha.bench [--seqlens 512,...] [--head-dims 64,128,256]
        [--causal {0,1,both}] [--out-dtype {fp8,bf16}] [--errors] [--ragged]
        [--window] [--repeat N] [--json PATH] [--plot PATH]
    python -m torch_fmha.bench --e2e-errors [--e2e-shape B,S,H] [--head-dims ...]
    python -m torch_fmha.bench [--paged PAGE_SIZE] [--softcap [CAP]] [--sinks] [grid flags]
    python -m torch_fmha.bench --decode [--json PATH]

The default grid is the FlashAttention-3 paper's: ``B*S = 16384``,
``H*D = 2048``, S in 512..16384, D in {64, 128, 256}, causal and not. ``--seqlens`` takes
other lengths too: B is ``16384 // S`` (at least 1), so a length that does not divide 16384
runs a few fewer tokens.
FLOPs = ``4*B*H*Sq*Sk*D``, halved for causal (ragged: the sum of each
sequence's own FLOPs; window: the exact number of (query, key) pairs seen).

Every column is timed the same way: ``triton.testing.do_bench`` median (L2
flushed between calls), or a CUDA-event median if triton is missing, on fresh
random (never zero) inputs per shape. Columns:

* ``ours FP8``  -- ``torch_fmha.attention`` on FP8 inputs (per-tensor descales),
* ``cuDNN FP8`` -- cudnn-frontend ``sdpa_fp8`` on the same FP8 inputs, FP8 out,
* ``SDPA bf16 flash`` / ``SDPA bf16 cudnn`` -- PyTorch SDPA on one backend,
* ``ours/cuDNN`` -- ratio of the first two.

A column that cannot run shows ``n/a`` and its reason is printed once below the
table; nothing is silently substituted. ``--errors`` adds RMSE / max abs error
against a float64 reference on the dequantized inputs for ours and cuDNN FP8
(identical inputs, same ``out_scale``). In the dense cells ours gets v in the layout
``quantize_qkv`` returns by default (``--v-layout default``): a packed v (``[B, H, D, S/16,
16]``) at D=128/256, the standard ``[B, S, H, D]`` at D=64; ``--v-layout packed`` (or
``--pack-v``) / ``standard`` force one layout at every D (the dense ``--softcap`` / ``--sinks``
rows follow it too). A packed v holds the same bytes as
cuDNN FP8's v, which stays ``[B, S, H, D]`` (cuDNN takes no other layout). ``--repeat N`` times ours and cuDNN FP8
N times per cell, interleaved, and reports the median ours/cuDNN ratio with its
min-max over the N runs (table and JSON ``ratio``). Needs an SM90 (Hopper) GPU;
without one it says so and exits with status 2.

``--e2e-errors`` prints only the end-to-end FP8 error table of issue 13
(``torch_fmha/bench_e2e.py``). ``--paged`` / ``--softcap`` / ``--sinks`` print
only the serving-feature table of issue 14, ours with the feature vs without
(``torch_fmha/bench_serving.py``). ``--decode`` prints only the decode table of
issue 15 (``torch_fmha/bench_decode.py``): a decode step against an FP8 KV cache,
its bandwidth as a fraction of the device's copy bandwidth, and SDPA bf16.

This file also runs as a script (``python3 torch_fmha/bench.py``) so that the
peer columns can be measured while the package itself is not importable.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import random
import statistics
import sys
from typing import Callable, Dict, List, Optional

import torch


# ---------------------------------------------------------------- imports ---
def _load_sibling(name: str):
    """``torch_fmha.<name>``, or the sibling file loaded by path when this file runs
    as a script (the package itself may then be unimportable)."""
    if __package__:
        return importlib.import_module(f".{name}", __package__)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"torch_fmha_bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_report = _load_sibling("bench_report")
COL_OURS, COL_CUDNN, COL_FLASH, COL_SDPA_CUDNN = (_report.COL_OURS, _report.COL_CUDNN,
                                                  _report.COL_FLASH, _report.COL_SDPA_CUDNN)
COLUMNS = _report.COLUMNS
ratio_stats, format_ratio, format_table = _report.ratio_stats, _report.format_ratio, _report.format_table
note_window_share = _report.note_window_share
_fmt, _grid, plot = _report._fmt, _report._grid, _report.plot

_math = _load_sibling("bench_math")
_timing = _load_sibling("bench_timing")
alternating_rounds, make_timer = _timing.alternating_rounds, _timing.make_timer
FP8_MAX, attn_flops, window_pairs, quantize = _math.FP8_MAX, _math.attn_flops, _math.window_pairs, _math.quantize
reference_attention, error_stats = _math.reference_attention, _math.error_stats

TOKENS, HIDDEN = 16384, 2048  # FlashAttention-3 grid: B*S and H*D


def grid_batch(seqlen: int, tokens: int = TOKENS) -> int:
    """B of a dense cell: tokens // S, at least 1. A length that does not divide TOKENS (3072,
    say, between the grid's powers of two) runs fewer tokens, B * S < TOKENS; its FLOPs count
    what ran, so its TF/s compare with the grid's."""
    return max(1, tokens // seqlen)


# --v-layout; "default" follows quantize_qkv (quantize.py's _PACK_V_HEAD_DIMS, which a
# test keeps equal to this: the file must load without the package).
V_LAYOUTS = ("default", "packed", "standard")
PACKED_V_BY_DEFAULT = (128, 256)


def uses_packed_v(v_layout: str, head_dim: int) -> bool:
    """Whether a dense cell gives ours a packed v under ``--v-layout``."""
    return v_layout == "packed" or (v_layout == "default" and head_dim in PACKED_V_BY_DEFAULT)


def _load_peers():
    """``torch_fmha._peers``, also when the package itself fails to import."""
    return _load_sibling("_peers")


def _load_ours():
    """``(torch_fmha module, None)`` or ``(None, reason)``."""
    if not __package__:  # run as a script: make the repo root importable
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if root not in sys.path:
            sys.path.insert(0, root)
    try:
        import torch_fmha
    except Exception as e:
        return None, f"import torch_fmha failed ({type(e).__name__}: {_first_line(e)})"
    if not hasattr(torch_fmha, "attention"):
        return None, "torch_fmha has no attention() yet"
    return torch_fmha, None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else ""


class Progress:
    """tqdm progress bar if importable, else a plain stderr counter."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.n, self.enabled, self.bar = total, 0, enabled, None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="run", file=sys.stderr, leave=False)
            except Exception:
                self.bar = None

    def step(self, label: str) -> None:
        self.n += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_description(label[:40])
            self.bar.update(1)
        else:
            print(f"\r[{self.n}/{self.total}] {label:<48}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


# ----------------------------------------------------------------- bench ---
class Bench:
    """Runs the cases and collects rows; one instance per invocation."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out_dtype = torch.float8_e4m3fn if args.out_dtype == "fp8" else torch.bfloat16
        self.time_ms, self.timing = make_timer(args.warmup, args.rep)
        self.peers = _load_peers()
        self.cudnn = self.peers.CudnnFp8()
        self.fmha, reason = _load_ours()
        self.reasons: Dict[str, List[str]] = {c: [] for c in COLUMNS}
        self.dead = set()  # columns unavailable for every shape (not tried again)
        for col, why in ((COL_OURS, reason), (COL_CUDNN, self.cudnn.unavailable_reason())):
            if why:
                self.note(col, why)
                self.dead.add(col)
        self.rows: List[dict] = []
        self.progress = Progress(0, enabled=False)  # replaced by main()

    def note(self, col: str, reason: str) -> None:
        if reason not in self.reasons[col]:
            self.reasons[col].append(reason)

    def _measure(self, col: str, make: Callable[[], Callable[[], object]], flops: float):
        """Build the column's callable, run it once, time it; TFLOP/s or None."""
        if col in self.dead:
            self.progress.step(col)
            return None
        try:
            fn = make()
            fn()
            torch.cuda.synchronize()
            ms = self.time_ms(fn)
        except Exception as e:  # NotImplementedError, RuntimeError, OOM, cuDNN refusals, ...
            self.note(col, f"{type(e).__name__}: {_first_line(e)}")
            return None
        finally:
            self.progress.step(col)
        return flops / (ms * 1e-3) / 1e12

    def _measure_pair(self, row: dict, make_ours, make_cudnn, flops: float) -> None:
        """Ours and cuDNN FP8 for one cell: ``row["tflops"]`` for both and, with
        ``--repeat N`` (N > 1), ``row["ms"]`` (per-repeat times) and ``row["ratio"]``
        (:func:`ratio_stats`). The N repeats are interleaved (ours, cuDNN, cuDNN, ours,
        ...: the order alternates) so slow drifts of the GPU hit both columns; each
        column's TFLOP/s is from its median time."""
        n = max(1, int(getattr(self.args, "repeat", 1)))
        if n == 1:
            row["tflops"][COL_OURS] = self._measure(COL_OURS, make_ours, flops)
            row["tflops"][COL_CUDNN] = self._measure(COL_CUDNN, make_cudnn, flops)
            return
        samples = self._interleaved({COL_OURS: (COL_OURS, make_ours), COL_CUDNN: (COL_CUDNN, make_cudnn)}, n)
        for col in (COL_OURS, COL_CUDNN):
            ms = samples.get(col)
            row["tflops"][col] = flops / (statistics.median(ms) * 1e-3) / 1e12 if ms else None
            self.progress.step(col)
        row["ms"] = samples
        if samples.get(COL_OURS) and samples.get(COL_CUDNN):
            row["ratio"] = ratio_stats(samples[COL_OURS], samples[COL_CUDNN])

    def _interleaved(self, makes: Dict[str, tuple], n: int) -> Dict[str, List[float]]:
        """``makes``: {key: (column, make)}. Times each key's callable n times, interleaved in
        alternating order (:func:`alternating_rounds`), and returns {key: per-repeat ms} for
        the keys that ran; a failure is noted under the key's column and drops the key."""
        fns: Dict[str, Callable[[], object]] = {}
        for key, (col, make) in makes.items():
            if col in self.dead:
                continue
            try:
                fn = make()
                fn()
                torch.cuda.synchronize()
                fns[key] = fn
            except Exception as e:
                self.note(col, f"{type(e).__name__}: {_first_line(e)}")
        samples: Dict[str, List[float]] = {k: [] for k in fns}
        for _, key in alternating_rounds(list(fns), n):
            if key not in samples:
                continue
            try:
                samples[key].append(self.time_ms(fns[key]))
            except Exception as e:
                self.note(makes[key][0], f"{type(e).__name__}: {_first_line(e)}")
                del samples[key]
        return samples

    def _ours(self, q8, k8, v8, descales, out_scale, **kw):
        """Zero-arg callable for torch_fmha (dense or varlen via ``kw['varlen']``)."""
        fmha, varlen = self.fmha, kw.pop("varlen", None)
        qd, kd, vd = descales
        common = dict(q_descale=qd, k_descale=kd, v_descale=vd, out_dtype=self.out_dtype,
                      out_scale=out_scale if self.out_dtype == torch.float8_e4m3fn else None, **kw)
        if varlen is not None:
            cu, max_s = varlen
            return lambda: fmha.varlen_attention(q8, k8, v8, cu, cu, max_s, max_s, **common)
        return lambda: fmha.attention(q8, k8, v8, **common)

    def _cudnn(self, q8, k8, v8, descales, out_scale, causal):
        def make():
            try:
                run, _ = self.cudnn.prepare(q8, k8, v8, *descales, causal=causal,
                                            out_scale=float(out_scale), out_dtype=self.out_dtype)
            except self.cudnn.PeerUnsupported as e:
                raise RuntimeError(str(e)) from None
            return run
        return make

    def _inputs(self, shape_q, shape_k, seed: int):
        """Fresh random bf16 q, k, v and their FP8 versions (per-tensor descales)."""
        g = torch.Generator(device="cuda").manual_seed(seed)
        q, k, v = (torch.randn(s, generator=g, device="cuda", dtype=torch.bfloat16)
                   for s in (shape_q, shape_k, shape_k))
        (q8, qd), (k8, kd), (v8, vd) = (quantize(x, self.fmha) for x in (q, k, v))
        # |o| <= max|v|, so out_scale = v's descale never saturates the FP8 output.
        out_scale = vd.clone()
        return (q, k, v), (q8, k8, v8), (qd, kd, vd), out_scale

    def _packed_v(self, bf16, v8, desc):
        """v8 as a packed v, by ``quantize_qkv(pack_v=True)`` with per-tensor scales, checked to hold
        v8's bytes under v8's descale (both quantizers follow one rule)."""
        qkv = self.fmha.quantize_qkv(*bf16, granularity="tensor", pack_v=True)
        packed = qkv.v
        same = torch.equal(self.fmha.unpack_v(packed, v8.size(1)).view(torch.uint8), v8.view(torch.uint8))
        if not same or not torch.equal(qkv.v_descale.reshape(-1), desc[2].reshape(-1)):
            raise RuntimeError("packed v: quantize_qkv's packed v does not hold the bytes of v8")
        return packed

    def _sdpa(self, row, bf16, causal, flops):
        if self.args.no_sdpa:
            return
        for col, backend in self.peers.sdpa_backend_names().items():
            q, k, v = bf16
            row["tflops"][col] = self._measure(
                col, lambda: self.peers.sdpa_bf16(q, k, v, causal=causal, backend=backend), flops)

    def dense(self, S: int, D: int, causal: bool, seed: int) -> None:
        """One point of the FA3 grid."""
        B, H = grid_batch(S), HIDDEN // D
        bf16, fp8, desc, out_scale = self._inputs((B, S, H, D), (B, S, H, D), seed)
        flops = attn_flops(B, H, S, S, D, causal)
        row = {"case": "dense", "seqlen": S, "D": D, "causal": causal, "B": B, "H": H,
               "flops": flops, "note": "", "tflops": {}}
        q8, k8, v8 = fp8
        ours = fp8
        if uses_packed_v(self.args.v_layout, D):
            ours = (q8, k8, self._packed_v(bf16, v8, desc))
            row["note"] = "ours: packed v (same bytes); cuDNN FP8: v [B, S, H, D]"
        self._measure_pair(row, lambda: self._ours(*ours, desc, out_scale, causal=causal),
                           self._cudnn(q8, k8, v8, desc, out_scale, causal), flops)
        self._sdpa(row, bf16, causal, flops)
        if self.args.errors:
            row["errors"] = self._errors(fp8, desc, out_scale, causal, ours_v=ours[2])
        self.rows.append(row)

    def _errors(self, fp8, desc, out_scale, causal, ours_v=None) -> Dict[str, object]:
        """Error of ours and cuDNN FP8 vs float64 attention on dequantized inputs (``ours_v``: the
        v ours gets, when not fp8's, e.g. a packed v)."""
        q8, k8, v8 = fp8
        deq = [x.double() * d.double() for x, d in zip(fp8, desc)]
        ref = reference_attention(*deq, 1.0 / math.sqrt(q8.shape[-1]), causal)
        res: Dict[str, object] = {}
        if self.out_dtype == torch.float8_e4m3fn:  # error of rounding the exact output to FP8
            floor = (ref / out_scale.double()).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
            res["fp8_out_floor"] = error_stats(floor.double() * out_scale.double(), ref)
        for col in (COL_OURS, COL_CUDNN):
            if col in self.dead:
                res[col] = None
                continue
            try:
                if col == COL_OURS:
                    out = self._ours(q8, k8, v8 if ours_v is None else ours_v, desc, out_scale,
                                     causal=causal)()
                    if isinstance(out, tuple):
                        out = out[0]
                else:
                    run, out = self.cudnn.prepare(q8, k8, v8.contiguous(), *desc, causal=causal,
                                                  out_scale=float(out_scale), out_dtype=self.out_dtype)
                    out.fill_(float("nan"))  # a tile cuDNN never writes shows up
                    run()
                deq_out = out.double() * (out_scale.double() if out.dtype == torch.float8_e4m3fn else 1.0)
                res[col] = error_stats(deq_out, ref)
            except Exception as e:
                res[col] = None
                self.note(col, f"errors: {type(e).__name__}: {_first_line(e)}")
        del ref
        return res

    def ragged(self, D: int, causal: bool, seed: int) -> None:
        """64 sequences, lengths uniform in [1, 4096]; cuDNN/SDPA padded to max."""
        H, nseq = 16, 64
        rng = random.Random(seed)
        lens = [rng.randint(1, 4096) for _ in range(nseq)]
        T, L = sum(lens), max(lens)
        bf16, fp8, desc, out_scale = self._inputs((T, H, D), (T, H, D), seed)
        cu = torch.tensor([0] + lens, device="cuda", dtype=torch.int64).cumsum(0).to(torch.int32)
        flops = sum(attn_flops(1, H, n, n, D, causal) for n in lens)
        row = {"case": "ragged", "seqlen": f"rag<={L}", "D": D, "causal": causal, "B": nseq, "H": H,
               "flops": flops, "lengths": lens, "tflops": {},
               "note": f"cuDNN/SDPA padded to {L}; useful FLOPs"}

        def pad(x: torch.Tensor) -> torch.Tensor:  # [T, H, D] -> [nseq, L, H, D], random padding
            p = torch.randn(nseq, L, H, D, device="cuda", dtype=torch.bfloat16).to(x.dtype)
            for i, (s, n) in enumerate(zip(cu[:-1].tolist(), lens)):
                p[i, :n] = x[s:s + n]
            return p
        self._measure_pair(row, lambda: self._ours(*fp8, desc, out_scale, causal=causal, varlen=(cu, L)),
                           self._cudnn(*(pad(x) for x in fp8), desc, out_scale, causal), flops)
        self._sdpa(row, tuple(pad(x) for x in bf16), causal, flops)
        self.rows.append(row)

    def window(self, D: int, seed: int, S: int = 16384, left: int = 1024) -> None:
        """Sliding window ``(left, 0)`` vs full causal at S=16k; ours only (v as ``--v-layout``)."""
        H = HIDDEN // D
        bf16, fp8, desc, out_scale = self._inputs((1, S, H, D), (1, S, H, D), seed)
        note = "ours only"
        if uses_packed_v(self.args.v_layout, D):
            fp8 = (fp8[0], fp8[1], self._packed_v(bf16, fp8[2], desc))
            note = "ours only; packed v"
        cases = (("causal", dict(causal=True), attn_flops(1, H, S, S, D, True)),
                 (f"window({left},0)", dict(window_size=(left, 0)), 4.0 * H * D * window_pairs(S, left)))
        rows = [{"case": "window", "seqlen": S, "D": D, "causal": name, "B": 1, "H": H,
                 "flops": flops, "note": note, "tflops": {}} for name, _, flops in cases]
        makes = {name: (COL_OURS, lambda kw=kw: self._ours(*fp8, desc, out_scale, **kw)) for name, kw, _ in cases}
        n = max(1, int(getattr(self.args, "repeat", 1)))
        # With --repeat N the two rows are timed interleaved, N times each, so that the window's
        # share of causal (issue 12's target) gets a spread, as the ratio columns have
        ms = self._interleaved(makes, n) if n > 1 else {}
        for row in rows:
            if n == 1:
                row["tflops"][COL_OURS] = self._measure(COL_OURS, makes[row["causal"]][1], row["flops"])
                continue
            t = ms.get(row["causal"])
            row["tflops"][COL_OURS] = row["flops"] / (statistics.median(t) * 1e-3) / 1e12 if t else None
            row["ms"] = {COL_OURS: t} if t else {}
            self.progress.step(COL_OURS)
        self.rows.extend(rows)
        note_window_share(*rows)


def metadata(bench: Bench, argv: List[str]) -> dict:
    """Date, GPU, versions, command line, timing method."""
    try:
        import triton
        triton_v = triton.__version__
    except Exception:
        triton_v = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(), "capability": list(torch.cuda.get_device_capability()),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "torch_cudnn": torch.backends.cudnn.version(), "triton": triton_v,
        **bench.cudnn.versions(), "python": platform.python_version(),
        "command": " ".join(["python", "-m", "torch_fmha.bench"] + argv if __package__
                            else ["python"] + sys.argv),
        "timing": bench.timing, "out_dtype_ours": bench.args.out_dtype,
        "repeat": bench.args.repeat,
        **({"ratio_spread": "ours/cuDNN per repeat (cuDNN time / our time, timed back to back, order "
                            "alternating); rows' 'ratio': median and min-max over the repeats; "
                            "TF/s from each column's median time"} if bench.args.repeat > 1 else {}),
        "flops": "4*B*H*Sq*Sk*D, halved for causal; ragged: sum over sequences; window: exact pairs",
        "unavailable": {c: m for c, m in bench.reasons.items() if m},
    }


# ------------------------------------------------------------------ main ---
def _ints(s: str) -> List[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m torch_fmha.bench", description=__doc__.split("\n")[0])
    p.add_argument("--seqlens", type=_ints, default=[512, 1024, 2048, 4096, 8192, 16384])
    p.add_argument("--head-dims", type=_ints, default=[64, 128, 256])
    p.add_argument("--causal", choices=["0", "1", "both"], default="both")
    p.add_argument("--out-dtype", choices=["fp8", "bf16"], default="fp8",
                   help="output dtype of the FP8 columns (default fp8: cuDNN FP8 on Hopper "
                        "only writes FP8, so both are timed at FP8 out with the same out_scale)")
    p.add_argument("--ragged", action="store_true", help="varlen batch: 64 seqs, len U[1,4096], H=16")
    p.add_argument("--window", action="store_true", help="sliding window 1024 vs causal at S=16k")
    p.add_argument("--errors", action="store_true", help="RMSE / max error vs a float64 reference")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="time ours and cuDNN FP8 N times per cell, interleaved; report the median "
                        "ours/cuDNN ratio and its min-max over the N runs (TF/s: median time); with "
                        "--paged / --softcap / --sinks, ours with and without the feature in pairs of "
                        "opposite order (N rounded up to even), the median pair ratio and its min-max; with "
                        "--decode, every column of a row N times in alternating order, the medians")
    p.add_argument("--e2e-errors", action="store_true",
                   help="only the end-to-end FP8 error table (issue 13): per-tensor / per-head / "
                        "per-head + Hadamard rotation and cuDNN FP8, vs float64 attention on the "
                        "unquantized inputs, N(0,1) and outlier data, at --e2e-shape, for each "
                        "--head-dims and --causal; without an SM90 GPU it runs the CPU path")
    p.add_argument("--e2e-shape", type=_ints, default=None, metavar="B,S,H",
                   help="--e2e-errors batch, seqlen, heads (default 4,4096,16 on the GPU, 1,512,8 on CPU)")
    # Serving features (issue 14; run by torch_fmha/bench_serving.py).
    p.add_argument("--paged", type=int, default=None, metavar="PAGE_SIZE",
                   help="paged-KV prefill (pages of PAGE_SIZE keys, scattered) vs the same batch packed")
    p.add_argument("--softcap", type=float, nargs="?", const=50.0, default=None, metavar="CAP",
                   help="attention with softcap CAP (default 50) vs without")
    p.add_argument("--sinks", action="store_true", help="attention with sinks vs without")
    p.add_argument("--decode", action="store_true",
                   help="decode step against an FP8 KV cache (attention_with_kvcache) vs SDPA bf16, bandwidth")
    p.add_argument("--no-sdpa", action="store_true",
                   help="leave out the SDPA bf16 columns (tuning runs: ours vs cuDNN FP8 only)")
    p.add_argument("--v-layout", choices=V_LAYOUTS, default="default",
                   help="dense cells (and the dense --softcap / --sinks rows): the v ours gets. default: "
                        "quantize_qkv's default (packed at D=128/256, "
                        "standard at D=64); packed: quantize_qkv(pack_v=True), [B, H, D, S/16, 16], V^T loaded "
                        "by TMA; standard: [B, S, H, D]. cuDNN FP8 always gets the bytes as [B, S, H, D]")
    p.add_argument("--pack-v", dest="v_layout", action="store_const", const="packed",
                   help="the same as --v-layout packed")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--plot", metavar="PATH")
    p.add_argument("--warmup", type=int, default=25, help="do_bench warmup, ms")
    p.add_argument("--rep", type=int, default=100, help="do_bench repetition time, ms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.repeat < 1:
        p.error(f"--repeat must be >= 1, got {a.repeat}")
    if a.paged is not None and (a.paged < 16 or a.paged > 256 or a.paged & (a.paged - 1)):
        p.error(f"--paged: the page size must be a power of two from 16 to 256, got {a.paged}")
    if a.softcap is not None and (not math.isfinite(a.softcap) or a.softcap <= 0):
        p.error(f"--softcap must be a finite number > 0, got {a.softcap}")
    if a.e2e_shape is not None and (len(a.e2e_shape) != 3 or min(a.e2e_shape) < 1):
        p.error(f"--e2e-shape must be three positive ints B,S,H, got {a.e2e_shape}")
    for s in a.seqlens:
        if s <= 0:
            p.error(f"--seqlens: lengths must be > 0, got {s}")
    for d in a.head_dims:
        if d <= 0 or HIDDEN % d:
            p.error(f"--head-dims: {d} does not divide {HIDDEN} (H*D = {HIDDEN})")
    return a


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--context-parallel" in argv:  # under torchrun: torch_fmha/bench_cp.py
        from torch_fmha.bench_cp import main as cp_main
        return cp_main([a for a in argv if a != "--context-parallel"])
    args = parse_args(argv)
    if args.e2e_errors:  # torch_fmha/bench_e2e.py
        from torch_fmha.bench_e2e import run_e2e
        return run_e2e(args, argv)
    if args.decode:  # torch_fmha/bench_decode.py
        from torch_fmha.bench_decode import run_decode
        return run_decode(args, argv)
    if args.paged or args.softcap is not None or args.sinks:  # torch_fmha/bench_serving.py
        from torch_fmha.bench_serving import run_serving
        return run_serving(args, argv)
    if not torch.cuda.is_available():
        print("torch_fmha.bench needs an SM90 (Hopper) GPU: CUDA is not available "
              f"(torch {torch.__version__}).", file=sys.stderr)
        return 2
    cap = torch.cuda.get_device_capability()
    if cap != (9, 0):
        print(f"torch_fmha.bench needs an SM90 (Hopper) GPU; found {torch.cuda.get_device_name()} "
              f"(sm_{cap[0]}{cap[1]}).", file=sys.stderr)
        return 2

    bench = Bench(args)
    causals = {"0": [False], "1": [True], "both": [False, True]}[args.causal]
    dense = [(S, D, c) for D in args.head_dims for c in causals for S in args.seqlens]
    rag_dims = [d for d in args.head_dims if d in (128, 256)] or [128, 256]
    n = len(dense) * 4 + (len(rag_dims) * len(causals) * 4 if args.ragged else 0)
    n += 2 * len(args.head_dims) if args.window else 0
    bench.progress = Progress(n, enabled=not args.no_progress)
    if bench.reasons[COL_CUDNN]:
        print(f"note: cuDNN FP8 column unavailable: {bench.reasons[COL_CUDNN][0]}", file=sys.stderr)
    try:
        for i, (S, D, c) in enumerate(dense):
            bench.dense(S, D, c, seed=args.seed + i)
            torch.cuda.empty_cache()
        if args.ragged:
            for D in rag_dims:
                for c in causals:
                    bench.ragged(D, c, seed=args.seed + 1000)
        if args.window:
            for D in args.head_dims:
                bench.window(D, seed=args.seed + 2000)
    except KeyboardInterrupt:
        print("\ninterrupted; results so far:", file=sys.stderr)
    finally:
        bench.progress.close()

    print(f"\ntorch_fmha.bench on {torch.cuda.get_device_name()} | torch {torch.__version__} | "
          f"cuDNN frontend {bench.cudnn.versions()['cudnn_frontend']} | {bench.timing}")
    print(f"TFLOP/s (ours out dtype: {args.out_dtype}; cuDNN FP8 out dtype: {args.out_dtype})\n")
    print(format_table(bench.rows, bench.reasons, args.out_dtype))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"metadata": metadata(bench, argv), "rows": bench.rows}, f, indent=1)
        print(f"\nwrote {args.json}")
    if args.plot:
        err = plot(bench.rows, args.plot)
        print(f"\n{err}" if err else f"\nwrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
