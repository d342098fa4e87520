"""transformers models that need the serving features (issue 14): gpt-oss
(attention sinks, ``s_aux``; alternating sliding / full layers) and Gemma-2
(logit soft-capping, ``softcap``; sliding window), small and randomly
initialised (no download), prefill with attn_implementation="torch_fmha" /
"torch_fmha_fp8" against transformers' "eager" attention (the reference
implementation of both features), eager and under torch.compile(fullgraph=True).

Configs (the defaults do not fit a fast CPU test): 2 layers (layer_types
sliding, full), 4 query heads over 2 KV heads (GQA 2), hidden 256, vocab 512,
sliding_window 16 over 48 tokens (the window cuts). gpt-oss: head_dim 64, 2
experts, both used (top 2: the routing stays continuous; with 4 experts, top 2,
FP8 noise flips expert choices and the logits' RMS error measured 0.11),
default RoPE instead of YaRN. Gemma-2: head_dim 128,
query_pre_attn_scalar 128. To make each feature matter at this size (random
init gives tiny scores): gpt-oss sinks ~ N(1, 1) per head, Gemma-2
attn_logit_softcapping = 1.0 with q / k projections scaled x3 (scores of a few
units, so tanh bends them).

Tolerances, as tests/test_transformers.py argues them: "torch_fmha" (float32)
is the same math as eager up to summation order: assert_close(atol=1e-4 *
std(logits)) (measured RMS(err)/std ~ 7e-7). "torch_fmha_fp8" rounds q, k, v
to e4m3: cosine >= 0.99 and RMS(err) <= 0.1 * std(logits) (measured here over
5 input seeds: 0.022-0.027 gpt-oss, 0.041-0.045 Gemma-2; cosine >= 0.999). The
criterion has teeth: dropping the sinks or the softcap (a test-only attention
function that ignores the argument) measures RMS(err)/std 0.33-0.41 (gpt-oss) /
0.37-0.42 (Gemma-2) and must fail it.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

transformers = pytest.importorskip(
    "transformers", reason="Hugging Face transformers is not installed (pip install transformers)")

import torch_fmha.integrations.transformers as tfi  # noqa: E402  (registers the two names)
from serving_models import MODELS, VOCAB, close_fp8, gpt_oss, metrics  # noqa: E402
from transformers import AttentionInterface, AttentionMaskInterface  # noqa: E402

IMPLS = [tfi.NAME, tfi.NAME_FP8]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def assert_matches(impl, got, want):
    if impl == tfi.NAME:
        torch.testing.assert_close(got, want, atol=1e-4 * want.std().item(), rtol=1e-4)
    else:
        assert close_fp8(got, want), f"{impl}: cos, rel_rms = {metrics(got, want)}"


def logits(model, impl, ids, **kw):
    model.set_attn_implementation(impl)
    with torch.no_grad():
        return model(ids, **kw).logits


def _dropping(name):
    """A test-only attention function that ignores one argument: what the criterion must reject."""
    def forward(module, q, k, v, mask, scaling=None, dropout=0.0, **kw):
        kw.pop(name, None)
        return tfi.torch_fmha_fp8_attention_forward(module, q, k, v, mask, scaling, dropout, **kw)
    return forward


for _arg in ("s_aux", "softcap"):
    AttentionInterface.register(f"test_ignores_{_arg}", _dropping(_arg))
    AttentionMaskInterface.register(f"test_ignores_{_arg}", tfi.torch_fmha_mask)


def _ids(seed=1, n=48):
    return torch.randint(0, VOCAB, (2, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(MODELS))
def test_prefill_matches_eager(name):
    make, feature = MODELS[name]
    model, ids = make(), _ids()
    want = logits(model, "eager", ids)
    for impl in IMPLS:
        assert_matches(impl, logits(model, impl, ids), want)
    wrong = logits(model, f"test_ignores_{feature}", ids)
    assert not close_fp8(wrong, want), f"ignoring {feature} passed the criterion: {metrics(wrong, want)}"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_fullgraph_prefill_matches_eager(name, impl):
    # aot_eager: Dynamo + AOT tracing through the fake kernels, the op itself at run time
    # (inductor takes ~50 s per model on a 2-core CPU; tests/test_transformers.py runs it).
    model, ids = MODELS[name][0](), _ids(seed=2)
    want = logits(model, "eager", ids)
    model.set_attn_implementation(impl)
    with torch.no_grad():
        got = torch.compile(model, fullgraph=True, backend="aot_eager")(ids).logits
    assert_matches(impl, got, want)


@pytest.mark.parametrize("name", list(MODELS))
def test_cached_decode_matches_eager(name):
    """Prefill 40 tokens into a DynamicCache (the sliding layers' window of 16 cuts), then
    one decode step (Sq = 1 < Sk: bottom-right causal, sinks / softcap on every step)."""
    from transformers.cache_utils import DynamicCache

    model = MODELS[name][0]()
    ids, tok = _ids(seed=5, n=40), _ids(seed=6, n=1)
    steps = {}
    for impl in ["eager"] + IMPLS:
        model.set_attn_implementation(impl)
        cache = DynamicCache(config=model.config)
        with torch.no_grad():
            model(ids, past_key_values=cache, use_cache=True)
            steps[impl] = model(tok, past_key_values=cache, use_cache=True).logits
    for impl in IMPLS:
        assert_matches(impl, steps[impl], steps["eager"])


def test_gpt_oss_left_padding_matches_eager():
    """Sinks through the varlen path (a 2-D padding mask): compare at the real tokens."""
    model, ids = gpt_oss(), _ids(seed=3, n=40)
    mask = torch.ones_like(ids)
    mask[0, :9] = 0
    want = logits(model, "eager", ids, attention_mask=mask)
    real = mask.bool()
    for impl in IMPLS:
        got = logits(model, impl, ids, attention_mask=mask)
        assert torch.isfinite(got[real]).all()
        assert_matches(impl, got[real], want[real])


def test_sinks_get_gradients():
    """s_aux is a learnable parameter: the CPU backward gives it a gradient equal to eager's."""
    model, ids = gpt_oss(), _ids(seed=4, n=24)
    grads = {}
    for impl in ("eager", tfi.NAME):
        model.zero_grad()
        model.set_attn_implementation(impl)
        model(ids).logits.square().mean().backward()
        grads[impl] = torch.stack([layer.self_attn.sinks.grad for layer in model.model.layers])
    assert grads["eager"].abs().min() > 0
    torch.testing.assert_close(grads[tfi.NAME], grads["eager"], atol=1e-6, rtol=1e-4)
