"""torch.compile(fullgraph=True) over torch_fmha: no graph break, same numbers,
no recompilation per length, training through compile."""

from __future__ import annotations

import expecttest
import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounter, CompileCounterWithBackend

import torch_fmha  # noqa: F401
from blocks import AttentionBlock, VarlenBlock

BACKENDS = ["eager", "aot_eager", "inductor"]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fp8", [False, True])
def test_fullgraph_matches_eager(backend, fp8):
    torch.manual_seed(0)
    block = AttentionBlock(fp8=fp8).eval()
    x = torch.randn(2, 37, 256)
    with torch.no_grad():
        want = block(x)
        got = torch.compile(block, backend=backend, fullgraph=True)(x)
    # Same kernel either way; inductor may fuse the projections differently, and
    # in FP8 a one-ulp change before quantization can flip an e4m3 rounding.
    tol = 2e-2 if fp8 else 1e-4
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_varlen_fullgraph(backend):
    torch.manual_seed(0)
    block = VarlenBlock().eval()
    cu = torch.tensor([0, 5, 5, 40], dtype=torch.int32)
    x = torch.randn(40, 128)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(block, backend=backend, fullgraph=True)(x, cu), block(x, cu),
                                   atol=1e-4, rtol=1e-4)


class GraphText(expecttest.TestCase):
    def test_aot_graph_calls_the_op(self):
        """The traced forward graph holds torch_fmha's ops (one quantize_fp8 per tensor, the
        attention), not a decomposition."""
        graphs = []

        def capture(gm, example_inputs):
            graphs.append(gm)
            return gm

        from torch._dynamo.backends.common import aot_autograd

        block = AttentionBlock(embed=64, heads=2, kv_heads=1, head_dim=64, fp8=True)
        with torch.no_grad():
            torch.compile(block, backend=aot_autograd(fw_compiler=capture), fullgraph=True)(torch.randn(1, 8, 64))
        calls = [str(n.target) for n in graphs[0].graph.nodes
                 if n.op == "call_function" and "torch_fmha" in str(n.target)]
        self.assertExpectedInline("\n".join(calls), """\
torch_fmha.quantize_fp8.default
torch_fmha.quantize_fp8.default
torch_fmha.quantize_fp8.default
torch_fmha.fwd.default""")


def test_dynamic_shapes_no_recompile():
    torch.manual_seed(0)
    block = AttentionBlock().eval()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(block, backend=counter, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for b, s in [(2, 64), (3, 100), (5, 37), (4, 129)]:  # sizes 0/1 specialize by design
            x = torch.randn(b, s, 256)
            torch.testing.assert_close(compiled(x), block(x), atol=1e-4, rtol=1e-4)
    assert counter.frame_count == 1, f"recompiled: {counter.frame_count} frames"


def test_automatic_dynamic_settles():
    """Default dynamic=None: one static compile, one dynamic, then none."""
    block = AttentionBlock().eval()
    counter = CompileCounter()
    compiled = torch.compile(block, backend=counter, fullgraph=True)
    with torch.no_grad():
        for b, s in [(2, 64), (3, 100), (6, 37), (4, 129), (5, 17)]:
            compiled(torch.randn(b, s, 256))
    assert counter.frame_count == 2


def test_varlen_dynamic_total_no_recompile():
    block = VarlenBlock().eval()
    counter = CompileCounter()
    compiled = torch.compile(block, backend=counter, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for lens in ([5, 0, 35], [100], [1, 2, 3, 4]):
            cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32)
            compiled(torch.randn(sum(lens), 128), cu)
    assert counter.frame_count == 1


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_training_bf16_matches_eager(backend):
    torch.manual_seed(0)
    block = AttentionBlock().to(torch.bfloat16)
    ref_block = AttentionBlock().to(torch.bfloat16)
    ref_block.load_state_dict(block.state_dict())
    x = torch.randn(2, 33, 256, dtype=torch.bfloat16)
    compiled = torch.compile(block, backend=backend, fullgraph=True)
    compiled(x).float().square().mean().backward()
    ref_block(x).float().square().mean().backward()
    for (name, p), p_ref in zip(block.named_parameters(), ref_block.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, atol=2e-2, rtol=2e-2, msg=name)
