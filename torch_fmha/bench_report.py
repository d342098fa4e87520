"""The benchmark's output: the ours / cuDNN ratio statistics of ``--repeat``, the
plain-text tables every ``python -m torch_fmha.bench`` mode prints, and the
``--plot`` figure. No torch and no torch_fmha import, so ``bench.py`` can load it
by path when it runs as a script without the package (its docstring says why)."""

from __future__ import annotations

import statistics
from typing import Dict, List, Optional

COL_OURS, COL_CUDNN = "ours FP8", "cuDNN FP8"
COL_FLASH, COL_SDPA_CUDNN = "SDPA bf16 flash", "SDPA bf16 cudnn"
COLUMNS = (COL_OURS, COL_CUDNN, COL_FLASH, COL_SDPA_CUDNN)


def ratio_stats(ours_ms: List[float], peer_ms: List[float]) -> Dict[str, object]:
    """Per-repeat speed ratio ours/peer (= peer time / our time; > 1: ours faster).

    ``ours_ms[i]`` and ``peer_ms[i]`` are the times of repeat i (measured back to
    back, interleaved). Returns the median ratio and its spread as the min and
    max over the repeats (with 3 repeats an IQR would be meaningless), plus the
    samples. Ratios are over pairs, so a drift common to both columns cancels.
    """
    if len(ours_ms) != len(peer_ms) or not ours_ms:
        raise ValueError(f"ratio_stats needs two equally long non-empty lists, got {len(ours_ms)} and {len(peer_ms)}")
    ratios = [p / o for o, p in zip(ours_ms, peer_ms)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "n": len(ratios), "spread": "min-max", "samples": ratios}


def format_ratio(stats: Optional[Dict[str, object]]) -> str:
    """``1.023 (0.991-1.047)``: median (min-max) of the per-repeat ratios."""
    if not stats:
        return "n/a"
    if stats["n"] == 1:
        return f"{stats['median']:.3f}"
    return f"{stats['median']:.3f} ({stats['min']:.3f}-{stats['max']:.3f})"


def note_window_share(causal_row: dict, window_row: dict) -> None:
    """The window row's TF/s as a share of the full-causal row's (issue 12's target for the
    (1024, 0) window at 16k is 80%): ``share_of_causal`` in the JSON, and the percentage in the
    row's note. With ``--repeat N`` both rows carry their N interleaved times (``row["ms"]``):
    then also each repeat's share (``share_of_causal_runs``, min-max in the note). Nothing when
    either side has no number (a failed measurement)."""
    causal_tf, window_tf = causal_row["tflops"].get(COL_OURS), window_row["tflops"].get(COL_OURS)
    if not causal_tf or not window_tf:
        return
    window_row["share_of_causal"] = window_tf / causal_tf
    runs = ""
    causal_ms, window_ms = causal_row.get("ms", {}).get(COL_OURS), window_row.get("ms", {}).get(COL_OURS)
    if causal_ms and window_ms and len(causal_ms) == len(window_ms) > 1:
        shares = [(window_row["flops"] / w) / (causal_row["flops"] / c) for c, w in zip(causal_ms, window_ms)]
        window_row["share_of_causal_runs"] = {"min": min(shares), "max": max(shares), "n": len(shares),
                                              "samples": shares}
        runs = f" (runs {100.0 * min(shares):.1f}-{100.0 * max(shares):.1f}%)"
    window_row["note"] += f"; {100.0 * window_tf / causal_tf:.1f}% of causal's TF/s{runs}"


def _fmt(x: Optional[float], nd: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def format_table(rows: List[dict], reasons: Dict[str, List[str]], out_dtype: str = "fp8") -> str:
    """Plain-text TFLOP/s table (+ error table, + n/a reasons)."""
    cols = [c for c in COLUMNS if any(c in r["tflops"] for r in rows)]
    repeated = max((r["ratio"]["n"] for r in rows if r.get("ratio")), default=1)
    ratio_head = f"ours/cuDNN median (min-max, {repeated} runs)" if repeated > 1 else "ours/cuDNN"
    head = ["seqlen", "D", "causal"] + [f"{c} TF/s" for c in cols] + [ratio_head, "note"]
    body = []
    for r in rows:
        t = r["tflops"]
        o, c = t.get(COL_OURS), t.get(COL_CUDNN)
        ratio = format_ratio(r["ratio"]) if r.get("ratio") else (f"{o / c:.3f}" if o and c else "n/a")
        causal = r["causal"] if isinstance(r["causal"], str) else ("yes" if r["causal"] else "no")
        body.append([str(r["seqlen"]), str(r["D"]), causal] + [_fmt(t.get(c)) if c in t else "-"
                                                               for c in cols] + [ratio, r.get("note", "")])
    lines = _grid(head, body)
    err_rows = [r for r in rows if r.get("errors")]
    if err_rows:
        lines += ["", "Errors vs float64 reference on dequantized inputs "
                  f"(identical FP8 inputs, {out_dtype} out, same out_scale):"]
        eh = ["seqlen", "D", "causal", "ref RMS", "FP8-out floor RMSE", "ours RMSE", "ours max|e|",
              "cuDNN RMSE", "cuDNN max|e|"]
        eb = []
        for r in err_rows:
            e = r["errors"]
            o, c, f = (e.get(k) or {} for k in (COL_OURS, COL_CUDNN, "fp8_out_floor"))
            ref = o.get("ref_rms", c.get("ref_rms", f.get("ref_rms")))
            eb.append([str(r["seqlen"]), str(r["D"]), "yes" if r["causal"] else "no",
                       _fmt(ref, 5), _fmt(f.get("rmse"), 6),
                       _fmt(o.get("rmse"), 6), _fmt(o.get("max_abs"), 5),
                       _fmt(c.get("rmse"), 6), _fmt(c.get("max_abs"), 5)])
        lines += _grid(eh, eb)
    notes = [(c, m) for c in COLUMNS for m in reasons.get(c, [])]
    if notes:
        lines += ["", "n/a reasons:"] + [f"  {c}: {m}" for c, m in notes]
    return "\n".join(lines)


def _grid(head: List[str], body: List[List[str]]) -> List[str]:
    w = [max(len(x) for x in col) for col in zip(head, *body)]
    def fmt(cells: List[str]) -> str:  # right-align numbers, left-align the last (note) column
        return "  ".join(c.ljust(n) if i == len(w) - 1 and i > 3 else c.rjust(n)
                         for i, (c, n) in enumerate(zip(cells, w))).rstrip()
    return [fmt(head), fmt(["-" * n for n in w])] + [fmt(b) for b in body]


def plot(rows: List[dict], path: str) -> Optional[str]:
    """TFLOP/s vs seqlen, one subplot per (D, causal); returns an error or None."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:
        return f"--plot needs matplotlib ({e})"
    dense = [r for r in rows if r["case"] == "dense"]
    keys = sorted({(r["D"], r["causal"]) for r in dense})
    if not keys:
        return "--plot: no dense-grid rows to plot"
    ds = sorted({d for d, _ in keys})
    cs = sorted({c for _, c in keys})
    fig, axes = plt.subplots(len(cs), len(ds), figsize=(4.5 * len(ds), 3.5 * len(cs)), squeeze=False)
    for (d, c) in keys:
        ax = axes[cs.index(c)][ds.index(d)]
        pts = sorted((r for r in dense if r["D"] == d and r["causal"] == c), key=lambda r: r["seqlen"])
        for col in COLUMNS:
            xy = [(r["seqlen"], r["tflops"].get(col)) for r in pts if r["tflops"].get(col)]
            if xy:
                ax.plot(*zip(*xy), marker="o", label=col)
        ax.set_xscale("log", base=2)
        ax.set_title(f"D={d}, {'causal' if c else 'non-causal'}")
        ax.set_xlabel("seqlen")
        ax.set_ylabel("TFLOP/s")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return None
