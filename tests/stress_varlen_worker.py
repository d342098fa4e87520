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
from inputs import FP8, varlen_inputs
from reference import assert_close_by_rule, output_as_float64, round_output, varlen_attention_ref


def worker(device: str, check_every: int) -> None:
    if device == "cuda":
        from gpu.emulate import emulate_varlen  # tests/gpu/emulate.py (tests/ is this script's directory)

    out_dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp8": FP8}
    for i, line in enumerate(sys.stdin):
        p = json.loads(line)
        q, k, v, cu_q, cu_k, s = varlen_inputs(p["lens_q"], p["lens_k"], p["heads"], p["heads_kv"],
                                               p["head_dim"], FP8, device=device, seed=p["seed"])
        out_scale = torch.tensor([0.02], device=device) if p["out"] == "fp8" else None
        kw = dict(s, causal=p["causal"], window_size=tuple(p["window"]))
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
                emul = emulate_varlen(q, k, v, cu_q.tolist(), cu_k.tolist(), **kw)
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
