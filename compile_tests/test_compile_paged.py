"""torch.compile / export / AOTInductor over the serving features (issue 14): a
paged KV call with seqused_k, softcap and sinks compiles once for changing
used-key counts, pool sizes, page-table widths, batch and query totals, and
an exported paged call (Inductor-compiled by AOTInductor) runs from an AOTInductor package in a fresh process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounterWithBackend

import torch_fmha
from aoti_env import aoti_load_env
from inputs import FP8, paged_inputs

PAGE = 16


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


_SM90 = torch_fmha.sm90_unavailable_reason()
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.skipif(_SM90 is not None, reason=_SM90 or ""),
                                              pytest.mark.timeout(300, method="thread")])]


class PagedAttention(torch.nn.Module):
    """Prefill / decode over a paged cache: what a serving engine calls per layer."""

    def __init__(self, heads=4):
        super().__init__()
        self.sinks = torch.nn.Parameter(torch.linspace(-1.0, 2.0, heads))

    def forward(self, q, k_pool, v_pool, cu_seqlens_q, seqused_k, page_table, q_descale, k_descale, v_descale):
        return torch_fmha.varlen_attention(q, k_pool, v_pool, cu_seqlens_q, None, causal=True, softcap=30.0,
                                           sinks=self.sinks, seqused_k=seqused_k, page_table=page_table,
                                           q_descale=q_descale, k_descale=k_descale, v_descale=v_descale)


def _args(lens_q, lens_k, spare_pages, seed=0, device="cpu"):
    q, kp, vp, cu_q, used, table, s, _ = paged_inputs(lens_q, lens_k, 4, 2, 64, FP8, PAGE, seed=seed,
                                                      spare_pages=spare_pages, device=device)
    return (q, kp, vp, cu_q, used, table, s["q_descale"], s["k_descale"], s["v_descale"])


# (lens_q, lens_k, spare pages): the used-key counts, the pool size (num_pages), the
# page-table width, the batch and the query total all change; none is 0 or 1 (sizes 0 / 1
# specialize by design). The first (traced) case's sizes avoid the static ones (H = 4 from
# the sinks parameter, Hkv = 2, D = 64, page 16): Dynamo's duck sizing would give equal
# sizes one symbol and tie e.g. the batch to Hkv.
CASES = [([3, 5, 7, 2, 6], [20, 40, 120, 7, 33], 3), ([7, 2, 9], [33, 100, 5], 5),
         ([4, 9, 2], [70, 16, 5], 3), ([2, 2, 6, 1, 1, 3, 8], [2, 17, 64, 0, 300, 1, 40], 4)]


@pytest.mark.parametrize("device", DEVICES)
def test_paged_dynamic_no_recompile(device):
    # The frame count is Dynamo's (the backend does not change it). CPU: aot_eager (the fake
    # kernels' checks and the op at run time, cheap in the CPU suite); CUDA: Inductor, as a
    # serving engine would compile it (the SM90 kernel at run time).
    model = PagedAttention().to(device).eval()
    counter = CompileCounterWithBackend("aot_eager" if device == "cpu" else "inductor")
    compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for i, (lens_q, lens_k, spare) in enumerate(CASES):
            args = _args(lens_q, lens_k, spare, seed=i, device=device)
            torch.testing.assert_close(compiled(*args).float(), model(*args).float(), atol=0, rtol=0)
    assert counter.frame_count == 1, f"recompiled: {counter.frame_count} frames"


def _export(model, device):
    auto = torch.export.Dim.AUTO  # sizes tied to each other (cu_seqlens_q = batch + 1): AUTO
    shapes = ({0: auto}, {0: auto}, {0: auto}, {0: auto}, {0: auto}, {0: auto, 1: auto}, None, {0: auto},
              {0: auto})
    return torch.export.export(model, _args(*CASES[0], device=device), dynamic_shapes=shapes)


@pytest.mark.parametrize("device", DEVICES)
def test_paged_export_aoti_package_in_fresh_process(tmp_path, device):
    """Exported with the sizes of CASES[0], run from the package in a fresh process at the
    other cases' sizes; bitwise equal to eager (the same op on the same inputs)."""
    model = PagedAttention().to(device).eval()
    ep = _export(model, device)
    assert any(str(n.target) == "torch_fmha.varlen_fwd.default" for n in ep.graph.nodes)
    pkg = torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "paged.pt2"))
    cases = [_args(*c, seed=i, device=device) for i, c in enumerate(CASES[1:])]  # other sizes
    with torch.no_grad():
        torch.save({"cases": cases, "want": [model(*a) for a in cases]}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import torch, torch_fmha
        io = torch.load({str(tmp_path / 'io.pt')!r})
        runner = torch._inductor.aoti_load_package({pkg!r})
        for args, want in zip(io["cases"], io["want"]):
            got = runner(*args)
            got = got[0] if isinstance(got, (list, tuple)) else got
            assert got.device == want.device, got.device
            assert torch.equal(got.float(), want.float()), (got.float() - want.float()).abs().max()
        print("AOTI-OK")
    """)
    res = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script], capture_output=True, text=True,
                         timeout=280, env=aoti_load_env())
    assert "AOTI-OK" in res.stdout, res.stdout + res.stderr
