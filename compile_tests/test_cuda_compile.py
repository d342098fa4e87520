"""torch.compile / CUDA graphs / torch.export + AOTInductor over the CUDA (SM90 FP8) kernel.

Skipped, with the reason, unless an SM90 GPU is present and the CUDA kernels
were built. The blocks quantize to FP8 inside the graph, so the compiled code
calls the FP8 kernel exactly as the eager code does. Compiled and eager runs
compute the projections and the quantization with different kernels (inductor
fusions), and a one-ulp difference before quantization can flip an e4m3
rounding (2^-4 relative on one element), so outputs are compared with the
same 2e-2 tolerance as the CPU compile tests (test_compile.py).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import expecttest
import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters

import torch_fmha
from aoti_env import aoti_load_env
from blocks import AttentionBlock

TOL = dict(atol=2e-2, rtol=2e-2)


_REASON = torch_fmha.sm90_unavailable_reason()
pytestmark = [pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
              # a hung kernel must fail the test, not the session (a signal cannot interrupt a CUDA wait)
              pytest.mark.timeout(300, method="thread")]


class Fp8VarlenBlock(torch.nn.Module):
    """Packed tokens x [T, E] + cu_seqlens -> per-sequence FP8 quantization (inside the graph)
    -> FP8 varlen attention (GQA, causal) -> [T, E]."""

    def __init__(self, embed=128, heads=4, kv_heads=2, head_dim=128):
        super().__init__()
        self.h, self.hkv, self.d = heads, kv_heads, head_dim
        self.wq = torch.nn.Linear(embed, heads * head_dim, bias=False)
        self.wkv = torch.nn.Linear(embed, 2 * kv_heads * head_dim, bias=False)
        self.wo = torch.nn.Linear(heads * head_dim, embed, bias=False)

    def forward(self, x, cu_seqlens):
        t = x.size(0)
        q = self.wq(x).view(t, self.h, self.d)
        k, v = self.wkv(x).view(t, 2, self.hkv, self.d).unbind(1)
        q8, qd = torch_fmha.quantize_fp8(q, "head", group_size=self.h // self.hkv, cu_seqlens=cu_seqlens)
        k8, kd = torch_fmha.quantize_fp8(k, "head", cu_seqlens=cu_seqlens)
        v8, vd = torch_fmha.quantize_fp8(v, "head", cu_seqlens=cu_seqlens)
        o = torch_fmha.varlen_attention(q8, k8, v8, cu_seqlens, cu_seqlens, causal=True, q_descale=qd,
                                        k_descale=kd, v_descale=vd, out_dtype=torch.bfloat16).to(x.dtype)
        return self.wo(o.reshape(t, self.h * self.d))


class Fp8BothApis(torch.nn.Module):
    """The dense FP8 block and the varlen FP8 block in one module (for export)."""

    def __init__(self):
        super().__init__()
        self.dense = AttentionBlock(embed=128, heads=4, kv_heads=2, head_dim=128, fp8=True)
        self.packed = Fp8VarlenBlock(embed=128, heads=4, kv_heads=2, head_dim=128)

    def forward(self, x, packed, cu_seqlens):
        return self.dense(x), self.packed(packed, cu_seqlens)


def _cu(lens):
    return torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device="cuda")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def test_inductor_fullgraph_matches_eager():
    torch.manual_seed(0)
    block = AttentionBlock(fp8=True, head_dim=128).cuda().eval()
    x = torch.randn(2, 37, 256, device="cuda")
    with torch.no_grad():
        want = block(x)
        got = torch.compile(block, backend="inductor", fullgraph=True)(x)
    torch.testing.assert_close(got, want, **TOL)


def test_reduce_overhead_captures_cuda_graph_and_replays():
    from torch._inductor import cudagraph_trees

    torch.manual_seed(0)
    block = AttentionBlock(fp8=True, head_dim=128).cuda().eval()
    compiled = torch.compile(block, mode="reduce-overhead", fullgraph=True)
    xs = [torch.randn(2, 64, 256, device="cuda") for _ in range(4)]
    outs = []
    with torch.no_grad():
        for x in xs:  # call 1 warms up, call 2 records the graph, calls 3 and 4 replay it
            torch.compiler.cudagraph_mark_step_begin()
            outs.append(compiled(x).clone())  # replay reuses the output buffer
        torch.cuda.synchronize()
        # Inductor counts (and logs "skipping cudagraphs due to ...") every graph it refuses to capture.
        assert counters["inductor"]["cudagraph_skips"] == 0, dict(counters["inductor"])
        mgr = cudagraph_trees.get_manager(torch.cuda.current_device(), create_if_none_exists=False)
        assert mgr is not None, "no CUDA graph tree manager: nothing went through cudagraph trees"
        recorded = [n for nodes in mgr.roots.values() for n in nodes]
        assert len(recorded) >= 1, "no CUDA graph was recorded"
        assert mgr.path_state.name == "EXECUTION", f"last call was not a replay: {mgr.path_state}"
        for x, got in zip(xs, outs):
            torch.testing.assert_close(got, block(x), **TOL)  # new data each call: a replay that
            # ignored its inputs (stale static buffers) would fail here


def test_dynamic_batch_and_seqlen_no_recompile():
    torch.manual_seed(0)
    block = AttentionBlock(fp8=True, head_dim=128).cuda().eval()
    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(block, backend=counter, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for b, s in [(2, 64), (3, 100), (5, 37), (4, 129)]:  # sizes 0/1 specialize by design
            x = torch.randn(b, s, 256, device="cuda")
            torch.testing.assert_close(compiled(x), block(x), **TOL)
    assert counter.frame_count == 1, f"recompiled: {counter.frame_count} frames"


def test_varlen_dynamic_total_no_recompile():
    torch.manual_seed(0)
    block = Fp8VarlenBlock().cuda().eval()
    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(block, backend=counter, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for lens in ([5, 0, 35], [100, 3], [2, 64, 7, 130]):  # totals and batch sizes vary, one empty sequence
            x, cu = torch.randn(sum(lens), 128, device="cuda"), _cu(lens)
            torch.testing.assert_close(compiled(x, cu), block(x, cu), **TOL)
    assert counter.frame_count == 1, f"recompiled: {counter.frame_count} frames"


class Fp8Dense(torch.nn.Module):
    """The dense FP8 block alone."""

    def __init__(self):
        super().__init__()
        self.dense = AttentionBlock(embed=128, heads=4, kv_heads=2, head_dim=128, fp8=True)

    def forward(self, x):
        return (self.dense(x),)


def _inputs(kind, b=2, s=40, t=50):
    x = torch.randn(b, s, 128, device="cuda")
    if kind == "dense":
        return (x,)
    packed = torch.randn(t, 128, device="cuda")
    cu = torch.tensor([0, 7, 7, t], dtype=torch.int32, device="cuda")
    return x, packed, cu


def _export(kind, model):
    batch, seq = torch.export.Dim("batch", min=2), torch.export.Dim("seq", min=2)
    shapes = {"x": {0: batch, 1: seq}}
    if kind == "both":
        shapes.update(packed={0: torch.export.Dim("tokens", min=2)}, cu_seqlens=None)
    return torch.export.export(model, _inputs(kind), dynamic_shapes=shapes)


MODELS = {"dense": Fp8Dense, "both": Fp8BothApis}
KINDS = ["dense", "both"]


class ExportGraph(expecttest.TestCase):
    def _calls(self, kind):
        torch.manual_seed(0)
        ep = _export(kind, MODELS[kind]().cuda().eval())
        return "\n".join(str(n.target) for n in ep.graph.nodes
                         if n.op == "call_function" and "torch_fmha" in str(n.target))

    # The blocks quantize q, k and v inside the graph (quantize_fp8 is an op too), then attend.
    def test_exported_dense_graph_calls_the_op(self):
        self.assertExpectedInline(self._calls("dense"), """\
torch_fmha.quantize_fp8.default
torch_fmha.quantize_fp8.default
torch_fmha.quantize_fp8.default
torch_fmha.fwd.default""")

    def test_exported_graph_calls_both_ops(self):
        self.assertExpectedInline(self._calls("both"), """\
torch_fmha.quantize_fp8.default
torch_fmha.quantize_fp8.default
torch_fmha.quantize_fp8.default
torch_fmha.fwd.default
torch_fmha.quantize_fp8.default
torch_fmha.quantize_fp8.default
torch_fmha.quantize_fp8.default
torch_fmha.varlen_fwd.default""")


@pytest.mark.parametrize("kind", KINDS)
def test_aoti_package_on_cuda_in_fresh_process(kind, tmp_path):
    torch.manual_seed(0)
    model = MODELS[kind]().cuda().eval()
    ep = _export(kind, model)
    for shape in [(2, 40, 50), (3, 65, 90)]:  # the exported program itself, through the dynamic dims
        args = _inputs(kind, *shape)
        with torch.no_grad():
            for got, want in zip(ep.module()(*args), model(*args)):
                torch.testing.assert_close(got, want, **TOL)
    pkg = torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "attn_cuda.pt2"))
    args = _inputs(kind, 3, 65, 90)
    with torch.no_grad():
        want = model(*args)
    torch.save({"args": args, "want": want}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import torch, torch_fmha
        assert torch_fmha.build_info.cuda
        io = torch.load({str(tmp_path / 'io.pt')!r})
        runner = torch._inductor.aoti_load_package({pkg!r})
        got = runner(*io["args"])
        torch.cuda.synchronize()
        assert len(got) == len(io["want"])
        for g, w in zip(got, io["want"]):
            assert g.device.type == "cuda", g.device
            torch.testing.assert_close(g, w, atol=2e-2, rtol=2e-2)
        print("AOTI-CUDA-OK")
    """)
    res = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script], capture_output=True, text=True,
                         timeout=280, env=aoti_load_env())
    assert "AOTI-CUDA-OK" in res.stdout, res.stdout + res.stderr
