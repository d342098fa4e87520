"""torch.export and AOTInductor packages that call torch_fmha's ops."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

import torch_fmha  # noqa: F401
from blocks import BothApis


def _inputs(b=2, s=40, t=50):
    x = torch.randn(b, s, 128)
    packed = torch.randn(t, 128)
    cu = torch.tensor([0, 7, 7, t], dtype=torch.int32)
    return x, packed, cu


def _export(model):
    batch, seq, tokens = torch.export.Dim("batch", min=2), torch.export.Dim("seq", min=2), torch.export.Dim("tokens", min=2)
    shapes = {"x": {0: batch, 1: seq}, "packed": {0: tokens}, "cu_seqlens": None}
    return torch.export.export(model, _inputs(), dynamic_shapes=shapes)


def test_export_runs_and_matches_eager():
    torch.manual_seed(0)
    model = BothApis().eval()
    ep = _export(model)
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "torch_fmha.fwd.default" in targets and "torch_fmha.varlen_fwd.default" in targets
    for shape in [(2, 40, 50), (3, 65, 90)]:  # a second shape through the dynamic dims
        args = _inputs(*shape)
        for got, want in zip(ep.module()(*args), model(*args)):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_aoti_package_in_fresh_process(tmp_path):
    torch.manual_seed(0)
    model = BothApis().eval()
    ep = _export(model)
    pkg = torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "attn.pt2"))
    args = _inputs(3, 65, 90)
    torch.save({"args": args, "want": model(*args)}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import torch, torch_fmha
        io = torch.load({str(tmp_path / 'io.pt')!r})
        runner = torch._inductor.aoti_load_package({pkg!r})
        got = runner(*io["args"])
        for g, w in zip(got, io["want"]):
            torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
        print("AOTI-OK")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert "AOTI-OK" in res.stdout, res.stdout + res.stderr


class QuantizedAttention(torch.nn.Module):
    """quantize_qkv -> attention at D=128: quantize_qkv's default v is a packed v
    ([B, Hkv, D, ceil(S / 16), 16]), which the graph must carry as such into fwd."""

    def forward(self, q, k, v):
        qkv = torch_fmha.quantize_qkv(q, k, v, rotate=True)
        return torch_fmha.attention(*qkv.tensors, causal=True, **qkv.descales)


def test_packed_v_export_and_aoti_in_fresh_process(tmp_path):
    torch.manual_seed(0)
    args = (torch.randn(2, 40, 4, 128, dtype=torch.bfloat16), torch.randn(2, 40, 2, 128, dtype=torch.bfloat16),
            torch.randn(2, 40, 2, 128, dtype=torch.bfloat16))
    model = QuantizedAttention()
    ep = torch.export.export(model, args)
    (quantize,) = [n for n in ep.graph.nodes if str(n.target) == "torch_fmha.quantize_qkv.default"]
    assert tuple(quantize.meta["val"][2].shape) == (2, 2, 128, 3, 16)
    want = model(*args)
    assert torch.equal(ep.module()(*args), want)
    pkg = torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "packed_v.pt2"))
    torch.save({"args": args, "want": want}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import torch, torch_fmha
        io = torch.load({str(tmp_path / 'io.pt')!r})
        got = torch._inductor.aoti_load_package({pkg!r})(*io["args"])
        got = got[0] if isinstance(got, (list, tuple)) else got
        assert torch.equal(got, io["want"]), (got - io["want"]).abs().max()
        print("AOTI-OK")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert "AOTI-OK" in res.stdout, res.stdout + res.stderr


class PackedVInput(torch.nn.Module):
    """attention on a packed v that arrives as a graph input (quantized outside the graph)."""

    def forward(self, q, k, v):
        return torch_fmha.attention(q, k, v, causal=True)


def _packed_v_call(s, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, s, 2, 128, generator=g, dtype=torch.bfloat16) for _ in range(3))
    qkv = torch_fmha.quantize_qkv(q, k, v, granularity="tensor", pack_v=True)
    return qkv.tensors


def test_packed_v_input_with_dynamic_seqlen_exports():
    """A packed v as a graph input with S and its group count G both dynamic: export keeps
    the check's relation G == ceil(S / 16) as a guard, so the program runs at other lengths
    (bitwise eager) and refuses a v whose G does not fit k."""
    seq, groups = torch.export.Dim("seq", min=2, max=4096), torch.export.Dim("groups", min=1, max=256)
    ep = torch.export.export(PackedVInput(), _packed_v_call(40, 0),
                             dynamic_shapes=({1: seq}, {1: seq}, {3: groups}))
    program = ep.module()
    for s in (33, 100, 160):
        args = _packed_v_call(s, s)
        assert args[2].shape == (1, 2, 128, (s + 15) // 16, 16)
        assert torch.equal(program(*args), PackedVInput()(*args))
    q, k, v = _packed_v_call(100, 1)
    try:
        program(q, k, v[:, :, :, :5].contiguous())
    except Exception as e:  # torch.export's input guard (torch 2.13: "Guard failed: v.size()[3] == ...")
        assert "v.size()" in str(e) or "packed v" in str(e), str(e)
    else:
        raise AssertionError("a packed v with 5 groups for 100 keys ran")
