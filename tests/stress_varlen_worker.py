"""The worker process of tools/stress_varlen.py: reads one launch's parameters
(JSON) per line from stdin, runs it, prints one JSON status line. Lives next to
the oracle (reference.py), the input factories (inputs.py) and the GPU
emulation (gpu/emulate.py) it uses; not a test module (the stress run is long
on purpose). Run by the tool, not by hand:

    python tests/stress_varlen_worker.py --device cuda --check-every 20
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

import torch_fmha
from inputs import FP8, paged_inputs, varlen_inputs
from reference import (assert_close_by_rule, output_as_float64, round_output, sequence_key_args,
                       varlen_attention_ref)


def serving_inputs(p, device):
    """The launch's tensors and keyword arguments: packed, or with p["page"] a paged cache
    (scattered pages, NaN-poisoned; issue 14), plus softcap / sinks when drawn. Drawn and
    quantized on `device` (inputs.varlen_inputs' generate_on): on the CPU it took 0.12-0.2 s per launch
    on a 2-core machine, and a GPU run made 500 launches in 92 s (how much of that was the draw
    on its 16 cores was not measured)."""
    args = (p["lens_q"], p["lens_k"], p["heads"], p["heads_kv"], p["head_dim"], FP8)
    extra = {}
    if p.get("page"):
        q, k, v, cu_q, used, table, s, _ = paged_inputs(*args, p["page"], device=device, seed=p["seed"],
                                                        generate_on=device)
        cu_k = None
        extra = dict(seqused_k=used, page_table=table)
    else:
        q, k, v, cu_q, cu_k, s = varlen_inputs(*args, device=device, seed=p["seed"], generate_on=device)
    if p.get("softcap"):
        extra["softcap"] = float(p["softcap"])
    if p.get("sinks"):
        g = torch.Generator().manual_seed(p["seed"])
        extra["sinks"] = (torch.randn(p["heads"], generator=g) * 2).to(device)
    return q, k, v, cu_q, cu_k, s, extra


def worker(device: str, check_every: int) -> None:
    if device == "cuda":  # tests/gpu/emulate.py (tests/ is this script's directory)
        from gpu.emulate import emulate_varlen
        from mufu_tanh import tanh_approx
        tanh_approx(torch.zeros(1, device="cuda"))  # softcap emulation: its Triton kernel compiles now

    out_dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp8": FP8}
    for i, line in enumerate(sys.stdin):
        p = json.loads(line)
        q, k, v, cu_q, cu_k, s, extra = serving_inputs(p, device)
        out_scale = torch.tensor([0.02], device=device) if p["out"] == "fp8" else None
        kw = dict(s, causal=p["causal"], window_size=tuple(p["window"]), **extra)
        out, lse = torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, out_dtype=out_dtypes[p["out"]],
                                               out_scale=out_scale, return_lse=True, **kw)
        if device == "cuda":
            torch.cuda.synchronize()
        status = "ok"
        if torch.isnan(out.float()).any() or torch.isnan(lse).any():
            status = "NaN in output"
        elif i % check_every == 0:
            ref, _ = varlen_attention_ref(q, k, v, cu_q, cu_k, **kw)
            if device == "cuda":  # the SM90 kernel also rounds P to FP8: emulate that step
                keys = sequence_key_args(cu_k, extra.get("seqused_k"), extra.get("page_table"))
                emul_kw = {n: x for n, x in kw.items() if n not in ("seqused_k", "page_table")}
                emul = emulate_varlen(q, k, v, cu_q, keys=keys, **emul_kw)
            else:  # the CPU kernel has no FP8 P rounding: the output rounding bounds it
                emul = ref
            emul = round_output(emul, out.dtype, out_scale)
            try:
                assert_close_by_rule(output_as_float64(out, out_scale), ref, emul, eps=1e-3)
                status = "checked"
            except AssertionError as e:
                status = f"WRONG: {e}"
        print(json.dumps({"i": i, "status": status}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--check-every", type=int, default=20)
    args = ap.parse_args()
    worker(args.device, args.check_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
