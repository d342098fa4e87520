"""tools/e2e_decompose.py: its emulation is attention when nothing is rounded, and its rows
come out in the order the rounding steps imply on a small case."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

from torch_fmha.bench_e2e import e2e_inputs
from torch_fmha.bench_math import reference_attention

_SPEC = importlib.util.spec_from_file_location(
    "e2e_decompose", Path(__file__).resolve().parents[1] / "tools" / "e2e_decompose.py")
tool = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tool)


def test_emulation_without_rounding_is_attention():
    q, k, v = e2e_inputs((1, 40, 2, 64), "outliers", 3, "cpu", torch.float32)
    one = torch.ones(1)
    for causal in (False, True):
        got = tool.emulate(q, k, v, one, one, one, causal, round_p=False)
        want = reference_attention(q, k, v, 1 / math.sqrt(64), causal)
        assert (got - want).abs().max().item() < 1e-12


def test_rows_order():
    for kind, out in tool.rows((1, 128, 2, 64), causal=True):
        assert out["v only"] <= out["v and P only"] <= out["per-head + rotation"], (kind, out)
        if kind == "outliers":
            assert out["per-head + rotation"] < out["per-tensor"], out
