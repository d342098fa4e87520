"""tools/bitwise_ab.py, the bitwise A/B of two builds, on the CPU path with small cases: a
save then a compare of the same build finds no difference, a changed digest is reported
and exits 1, and the paged calls it makes read the same keys as the packed ones (their
outputs equal, so the pools are built right)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

TOOL = Path(__file__).resolve().parents[1] / "tools" / "bitwise_ab.py"
SMALL = {"device": "cpu", "seqlens": (33,), "lens": (70, 0, 150, 19)}


def _tool():
    spec = importlib.util.spec_from_file_location("bitwise_ab", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_save_compare_and_a_changed_digest(tmp_path, capsys):
    tool = _tool()
    saved = tmp_path / "a.pt"
    tool.main(["save", str(saved)], **SMALL)
    with pytest.raises(SystemExit) as same:
        tool.main(["compare", str(saved)], **SMALL)
    assert same.value.code == 0
    assert "0 of " in capsys.readouterr().out
    digests = torch.load(saved)
    name = next(n for n in digests if "paged 16" in n)
    out, lse = digests[name]
    digests[name] = ((out[0] + 1, out[1]), lse)
    torch.save(digests, saved)
    with pytest.raises(SystemExit) as differ:
        tool.main(["compare", str(saved)], **SMALL)
    assert differ.value.code == 1
    report = capsys.readouterr().out
    assert "1 of " in report and f"{name}: out DIFFERS, lse same" in report


def test_paged_calls_read_the_packed_keys():
    outputs = {name: out for name, out, _ in _tool().cases(**SMALL) if name.startswith("D128 ")}
    for page in (16, 64):
        for causal in (False, True):
            assert torch.equal(outputs[f"D128 paged {page} causal={causal} []"],
                               outputs[f"D128 varlen causal={causal}"]), (page, causal)
