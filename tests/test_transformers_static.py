"""transformers' StaticCache (the cache compiled generation uses) on torch_fmha (issue 15):
the mask function turns a static cache into cache_seqlens and the attention function calls
torch_fmha.attention_with_kvcache on transformers' cache tensors (no copy).

What is asserted, on a small random Llama (no download), 32 new tokens, greedy:
- "torch_fmha" (the model's float32): the same tokens as "sdpa", eager and with
  ``torch.compile(model.forward, fullgraph=True)`` (aot_eager here: the CPU suite's budget;
  the graph is the same Dynamo graph inductor would get).
- "torch_fmha_fp8": the same tokens with a static cache (eager and compiled) as with the
  default DynamicCache (the dense op on the same quantized keys), and first-step logits
  within the FP8 criterion of tests/test_transformers.py. Against "sdpa" FP8 tokens part
  within a few steps (measured: after 6 and 1 tokens on this model): a random model's logits
  are nearly tied, so FP8's ~3% logit noise flips the argmax; that is FP8 rounding, not the
  cache (the DynamicCache path parts at the same tokens).
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

transformers = pytest.importorskip(
    "transformers", reason="Hugging Face transformers is not installed (pip install transformers)")

import torch_fmha.integrations.transformers as tfi  # noqa: E402
from transformers import MistralConfig, MistralForCausalLM  # noqa: E402
from serving_models import gemma2, gpt_oss  # noqa: E402
from tiny_llama import tiny_llama  # noqa: E402

NEW_TOKENS = 32


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


IDS = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(1))


def generate(model, impl, static, compiled=False, ids=IDS, mask=None):
    model.set_attn_implementation(impl)
    forward = model.forward
    counter = None
    if compiled:
        from torch._dynamo.testing import CompileCounterWithBackend
        counter = CompileCounterWithBackend("aot_eager")
        model.forward = torch.compile(forward, fullgraph=True, backend=counter)
    # disable_compile: generate() would otherwise compile a static-cache decode with inductor itself.
    kw = dict(cache_implementation="static", disable_compile=True) if static else {}
    try:
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids) if mask is None else mask,
                                 max_new_tokens=NEW_TOKENS, do_sample=False, **kw)
    finally:
        model.forward = forward
    return out, counter


def test_static_cache_tokens_equal_sdpa(model):
    want, _ = generate(model, "sdpa", static=False)
    assert want.size(1) == IDS.size(1) + NEW_TOKENS
    got, _ = generate(model, tfi.NAME, static=True)
    assert torch.equal(got, want)
    got, counter = generate(model, tfi.NAME, static=True, compiled=True)
    assert torch.equal(got, want)
    # One graph for the prefill, one for the decode steps (cache_seqlens is a tensor: no
    # recompile as it grows).
    assert counter.frame_count <= 2, f"{counter.frame_count} frames"


def test_fp8_static_cache_equals_dynamic_cache(model):
    want, _ = generate(model, tfi.NAME_FP8, static=False)
    got, _ = generate(model, tfi.NAME_FP8, static=True)
    assert torch.equal(got, want)
    got, _ = generate(model, tfi.NAME_FP8, static=True, compiled=True)
    assert torch.equal(got, want)
    # First decode step's logits against sdpa: the FP8 criterion of tests/test_transformers.py.
    from transformers.cache_utils import StaticCache

    def step_logits(impl):
        model.set_attn_implementation(impl)
        cache = StaticCache(config=model.config, max_cache_len=64)
        with torch.no_grad():
            model(IDS, past_key_values=cache, use_cache=True)
            return model(want[:, IDS.size(1):IDS.size(1) + 1], past_key_values=cache, use_cache=True).logits

    ref, fp8 = step_logits("sdpa"), step_logits(tfi.NAME_FP8)
    cos, rel_rms = tfi_metrics(fp8, ref)
    assert cos >= 0.99 and rel_rms <= 0.1, (cos, rel_rms)


def tfi_metrics(got, want):
    got, want = got.double().flatten(), want.double().flatten()
    cos = torch.nn.functional.cosine_similarity(got, want, dim=0).item()
    return cos, ((got - want).pow(2).mean().sqrt() / want.std()).item()


def test_static_cache_left_padding_is_refused(model):
    mask = torch.ones_like(IDS)
    mask[0, :3] = 0
    with pytest.raises(NotImplementedError, match="padding inside a static cache's written keys"):
        generate(model, tfi.NAME, static=True, mask=mask)


def tiny_mistral(window):
    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=1,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=128, sliding_window=window,
                        max_position_embeddings=512)
    return MistralForCausalLM(cfg).eval()


# Sliding-window layers over a static cache (transformers' StaticSlidingWindowLayer: min(w,
# max_cache_len) slots in position order, rolled left once full). Each phase takes another
# path through the mask function: before the layer is full the keys are its slots from 0 (the
# static cache_seqlens path); a step that fills past its size hands over all positions so
# far, and once full the last w - 1 and the new ones (both the dense path; the full one-token
# steps are the ones transformers marks allow_is_causal_skip=False). generate() with a
# 12-token prompt and one-token steps: window 16 (gpt-oss, Gemma-2: one sliding and one
# full-attention layer) goes from not full to exactly full to full; window 8 (Mistral, its one
# layer sliding) fills past the empty slots at the prefill, then is full. Chunks of several
# tokens (filling past non-empty slots, several tokens while full):
# test_static_cache_sliding_window_chunks.
SLIDING = {"mistral_w8": lambda: tiny_mistral(8), "gpt_oss_w16": gpt_oss, "gemma2_w16": gemma2}


@pytest.mark.parametrize("name", list(SLIDING))
def test_static_cache_sliding_window_tokens_equal_eager(name):
    # "eager" (transformers' reference attention; gpt-oss has no sdpa path) with a DynamicCache.
    model = SLIDING[name]()
    want, _ = generate(model, "eager", static=False)
    got, _ = generate(model, tfi.NAME, static=True)
    assert torch.equal(got, want)
    got, counter = generate(model, tfi.NAME, static=True, compiled=True)
    assert torch.equal(got, want)
    # A few graphs for the whole generation, not one per step (32 steps): the sliding layer's
    # phases are Python branches in transformers' cache (measured with transformers 5.23: 4
    # graphs for gpt-oss and Gemma-2, 2 for Mistral; "eager" attention compiled the same way:
    # 3 and 2).
    assert counter.frame_count <= 4, f"{counter.frame_count} frames"


@pytest.mark.parametrize("name", ["gpt_oss_w16", "gemma2_w16", "mistral_w8"])
def test_fp8_static_cache_sliding_window_step_logits(name):
    """"torch_fmha_fp8" over a StaticCache, teacher-forced on "eager"'s tokens: every step's
    logits (the prefill's last and 32 one-token steps: the sliding layer not full, exactly
    full, full at window 16; past its empty slots at the prefill, then full at window 8) within the FP8 criterion of tests/test_transformers.py against "eager" with a
    DynamicCache. Free-running FP8 tokens are not compared: the static path's decode op
    (attention_with_kvcache) and the dynamic path's dense op sum in different orders, and on
    gpt-oss their FP8 tokens part at new token 24 (a random model's nearly tied logits)."""
    from transformers.cache_utils import DynamicCache, StaticCache
    model = SLIDING[name]()
    tokens, _ = generate(model, "eager", static=False)

    def step_logits(impl, cache):
        model.set_attn_implementation(impl)
        with torch.no_grad():
            out = [model(IDS, past_key_values=cache, use_cache=True).logits[:, -1]]
            for t in range(IDS.size(1), tokens.size(1) - 1):
                out.append(model(tokens[:, t:t + 1], past_key_values=cache, use_cache=True).logits[:, -1])
        return out

    ref = step_logits("eager", DynamicCache(config=model.config))
    fp8 = step_logits(tfi.NAME_FP8, StaticCache(config=model.config, max_cache_len=tokens.size(1)))
    assert len(fp8) == NEW_TOKENS
    for i, (got, want) in enumerate(zip(fp8, ref)):
        cos, rel_rms = tfi_metrics(got, want)
        assert cos >= 0.99 and rel_rms <= 0.1, (i, cos, rel_rms)


@pytest.mark.parametrize("name", ["gpt_oss_w16", "mistral_w8"])
def test_static_cache_sliding_window_chunks(name):
    """Chunks of several tokens through a sliding layer of w slots: w - 3 (not full), 6 (fills
    past non-empty slots), 1, 1, 3 (several while full), 1. Every chunk's logits: "torch_fmha"
    over a StaticCache as "eager" over a DynamicCache (the same math up to summation order),
    "torch_fmha_fp8" over a StaticCache and over an Fp8StaticCache within the FP8 criterion."""
    from transformers.cache_utils import DynamicCache, StaticCache
    model = SLIDING[name]()
    w = model.config.sliding_window
    chunks = [w - 3, 6, 1, 1, 3, 1]
    ids = torch.randint(0, 512, (2, sum(chunks)), generator=torch.Generator().manual_seed(2))

    def chunk_logits(impl, cache):
        model.set_attn_implementation(impl)
        out, at = [], 0
        with torch.no_grad():
            for n in chunks:
                out.append(model(ids[:, at:at + n], past_key_values=cache, use_cache=True).logits)
                at += n
        return out

    want = chunk_logits("eager", DynamicCache(config=model.config))
    got = chunk_logits(tfi.NAME, StaticCache(config=model.config, max_cache_len=ids.size(1)))
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, atol=1e-4 * r.std().item(), rtol=1e-4)
    for cache_class in (StaticCache, tfi.Fp8StaticCache):
        got = chunk_logits(tfi.NAME_FP8, cache_class(config=model.config, max_cache_len=ids.size(1)))
        for i, (g, r) in enumerate(zip(got, want)):
            cos, rel_rms = tfi_metrics(g, r)
            assert cos >= 0.99 and rel_rms <= 0.1, (cache_class.__name__, i, cos, rel_rms)


def test_static_cache_sliding_window_left_padding():
    """Mistral (one layer, sliding over 8 keys), a 12-token prompt with 3 left-padding
    tokens in row 0: the prefill fills past the slots and every later step finds the layer
    full, so the padding mask goes to the varlen path (bf16 StaticCache): the same tokens as
    "eager" over a DynamicCache. The Fp8StaticCache takes no padding: a clear error."""
    model = tiny_mistral(8)
    mask = torch.ones_like(IDS)
    mask[0, :3] = 0
    want, _ = generate(model, "eager", static=False, mask=mask)
    got, _ = generate(model, tfi.NAME, static=True, mask=mask)
    assert torch.equal(got, want)
    model.set_attn_implementation(tfi.NAME_FP8)
    cache = tfi.Fp8StaticCache(config=model.config, max_cache_len=IDS.size(1) + 4)
    with pytest.raises(NotImplementedError, match="a padding mask"), torch.no_grad():
        model(IDS, attention_mask=mask, past_key_values=cache, use_cache=True)


def test_compiled_fp8_static_cache_sliding_window_with_an_attention_mask():
    """A compiled forward that builds its masks while tracing, with a 2-D attention_mask (all
    ones: no padding) and an Fp8StaticCache, through a full sliding layer: the mask function
    cannot look at the mask then and passes it on; the attention function checks it on the
    device (torch._assert_async) instead of refusing it. Each step's logits equal the eager
    ones. (A mask with padding there fails that device assertion; not run here.)"""
    model = tiny_mistral(8)
    ids = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(4))

    def step_logits(compiled):
        model.set_attn_implementation(tfi.NAME_FP8)
        fwd = torch.compile(model, fullgraph=True, backend="aot_eager") if compiled else model
        cache = tfi.Fp8StaticCache(config=model.config, max_cache_len=ids.size(1))
        out = []
        with torch.no_grad():
            out.append(fwd(ids[:, :5], attention_mask=torch.ones_like(ids[:, :5]), past_key_values=cache,
                           use_cache=True).logits)
            for t in range(5, ids.size(1)):
                out.append(fwd(ids[:, t:t + 1], attention_mask=torch.ones_like(ids[:, :t + 1]),
                               past_key_values=cache, use_cache=True).logits)
        return out

    eager = step_logits(False)
    compiled = step_logits(True)
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, atol=0, rtol=0)


def test_static_cache_sliding_window_mask_function_paths():
    """The mask function's answers for a sliding layer, phase by phase (the sizes
    StaticSlidingWindowLayer.get_mask_sizes gives for w = 16): cache_seqlens before the layer
    is full, None (dense keys, the op's window) once full, and a refusal for a static sliding
    layer asked about queries past its slots or for an overlaid pattern."""
    from transformers import masking_utils as mu
    sliding = mu.sliding_window_causal_mask_function(16)
    kw = dict(mask_function=sliding, local_size=16, config=MistralConfig(sliding_window=16))
    # Prefill of 12 into 16 slots, then the step at position 12: the static path.
    seqlens = tfi.torch_fmha_mask(2, 12, 16, q_offset=0, kv_offset=0, **kw)
    assert seqlens.dtype == torch.int32 and seqlens.tolist() == [12, 12]
    assert tfi.torch_fmha_mask(2, 1, 16, q_offset=12, kv_offset=0, allow_is_causal_skip=False,
                               **kw).tolist() == [13, 13]
    # Full: the step at position 40 sees keys 25..40, the buffer's 16 slots.
    assert tfi.torch_fmha_mask(2, 1, 16, q_offset=40, kv_offset=25, allow_is_causal_skip=False, **kw) is None
    # The same sizes with an overlay (block ids: or_masks) are refused, not taken as sliding.
    overlaid = mu.or_masks(sliding, lambda b, h, q, k: q == k)
    with pytest.raises(NotImplementedError, match="materialise"):
        tfi.torch_fmha_mask(2, 1, 16, q_offset=40, kv_offset=25, allow_is_causal_skip=False,
                            **{**kw, "mask_function": overlaid})
    with pytest.raises(NotImplementedError, match="sliding-window causal over a static cache"):
        tfi.torch_fmha_mask(2, 12, 16, q_offset=0, kv_offset=0, **{**kw, "mask_function": overlaid})
    # A static sliding layer asked about queries past its slots (keys not in position order).
    with pytest.raises(NotImplementedError, match="past its 16 slots"):
        tfi.torch_fmha_mask(2, 1, 16, q_offset=16, kv_offset=0, allow_is_causal_skip=False, **kw)


def test_fp8_static_cache_at_head_dim_256_quantizes_v_in_the_kvcache_layout():
    """quantize_qkv's default returns a dense D=128 / 256 v as a packed v (torch_fmha.attention's
    faster layout), which attention_with_kvcache does not take: the static-cache FP8 path asks
    for the standard v (pack_v=False). A D=256 cache then runs, within the FP8 criterion of the
    unquantized path (tests/tiny_llama.py's D=128 model covers the other head dim)."""
    g = torch.Generator().manual_seed(0)
    b, sq, h, hkv, d, max_len = 2, 3, 4, 2, 256, 40
    q = torch.randn(b, sq, h, d, generator=g)
    k_cache, v_cache = (torch.randn(b, hkv, max_len, d, generator=g) for _ in range(2))
    k_cache[:, :, 30:] = 0  # unwritten slots, as transformers leaves them
    v_cache[:, :, 30:] = 0
    seqlens = torch.tensor([30, 25], dtype=torch.int32)
    k, v = k_cache.transpose(1, 2), v_cache.transpose(1, 2)  # what the attention function gets
    fp8 = tfi._static(q, k, v, seqlens, fp8=True, causal=True)
    ref = tfi._static(q, k, v, seqlens, fp8=False, causal=True)
    cos, rel_rms = tfi_metrics(fp8, ref)
    assert cos >= 0.99 and rel_rms <= 0.1, (cos, rel_rms)
