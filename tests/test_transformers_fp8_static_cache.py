"""Fp8StaticCache (issue 15): an FP8 static KV cache for attn_implementation="torch_fmha_fp8".

The cache stores K (Hadamard-rotated) and V as float8_e4m3fn with per-(batch, KV head)
descales fixed at prefill; the attention function passes them to
torch_fmha.attention_with_kvcache as stored and quantizes only q.

What is asserted, on the small random Llama of tests/test_transformers_static.py (no
download), greedy, CPU reference op:
- generate(): 32 new tokens, eager and torch.compile(model.forward, fullgraph=True)
  (aot_eager, as the static tests) give the same tokens, in at most 2 graphs.
- Accuracy, with the FP8 criterion of tests/test_transformers.py (cos >= 0.99, relative RMS
  <= 0.1 of the logits against "sdpa"): at every one of the 32 steps, teacher-forced on
  sdpa's tokens (a random model's logits are nearly tied, so free-running FP8 tokens part
  from sdpa's within a few steps, as with the bf16 static cache: measured on this model,
  both FP8 paths first differ at new token 6 (row 0) and 1 (row 1)). And the free-running
  tokens agree with sdpa's for at least as many leading steps as the bf16-cache FP8 path's.
- The cache holds float8_e4m3fn K/V and float32 [B, Hkv] descales; a decode step calls
  no quantize_qkv and hands the cache's own storage and descales to attention_with_kvcache;
  the descales do not change after prefill; dequantized, the cache is the rotated bf16
  cache within e4m3's rounding; values past the headroom saturate at +-448; reset() re-arms.
- Prefill and decode match the bf16 StaticCache path (which quantizes the whole cache per
  call) within the FP8 criterion.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

transformers = pytest.importorskip(
    "transformers", reason="Hugging Face transformers is not installed (pip install transformers)")

import torch_fmha  # noqa: E402
import torch_fmha.integrations.transformers as tfi  # noqa: E402
from torch_fmha.integrations.fp8_static_cache import HEADROOM, Fp8StaticLayer  # noqa: E402
from torch_fmha.quantize import rotate  # noqa: E402
from tiny_llama import tiny_llama  # noqa: E402
from transformers.cache_utils import StaticCache  # noqa: E402

NEW_TOKENS = 32
CACHE_LEN = 64
IDS = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(1))
P = IDS.size(1)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


def fp8_cache(model):
    return tfi.Fp8StaticCache(config=model.config, max_cache_len=CACHE_LEN)


def generate(model, impl, cache=None, compiled=False, **kw):
    model.set_attn_implementation(impl)
    forward, counter = model.forward, None
    if compiled:
        from torch._dynamo.testing import CompileCounterWithBackend
        counter = CompileCounterWithBackend("aot_eager")
        model.forward = torch.compile(forward, fullgraph=True, backend=counter)
    try:
        with torch.no_grad():
            # disable_compile: generate() would otherwise compile a static-cache decode itself.
            out = model.generate(IDS, attention_mask=torch.ones_like(IDS), max_new_tokens=NEW_TOKENS,
                                 do_sample=False, past_key_values=cache, disable_compile=True, **kw)
    finally:
        model.forward = forward
    return out, counter


def leading_matches(got, want):
    """Per row, how many new tokens agree with want's before the first difference."""
    same = (got[:, P:] == want[:, P:]).long()
    return same.cumprod(1).sum(1).tolist()


def criterion(got, want):
    got, want = got.double().flatten(), want.double().flatten()
    cos = torch.nn.functional.cosine_similarity(got, want, dim=0).item()
    return cos, ((got - want).pow(2).mean().sqrt() / want.std()).item()


def teacher_forced_logits(model, impl, cache, tokens):
    """Logits of the prefill's last position and of each of the decode steps fed tokens[:, P + i]."""
    model.set_attn_implementation(impl)
    steps = []
    with torch.no_grad():
        steps.append(model(tokens[:, :P], past_key_values=cache, use_cache=True).logits[:, -1])
        for i in range(NEW_TOKENS - 1):
            steps.append(model(tokens[:, P + i:P + i + 1], past_key_values=cache, use_cache=True).logits[:, -1])
    return steps


def test_generate_eager_and_compiled(model):
    want, _ = generate(model, "sdpa")
    got, _ = generate(model, tfi.NAME_FP8, fp8_cache(model))
    assert got.size(1) == P + NEW_TOKENS
    compiled, counter = generate(model, tfi.NAME_FP8, fp8_cache(model), compiled=True)
    assert torch.equal(compiled, got)
    assert counter.frame_count <= 2, f"{counter.frame_count} frames"
    slow, _ = generate(model, tfi.NAME_FP8, cache_implementation="static")
    fast_lead, slow_lead = leading_matches(got, want), leading_matches(slow, want)
    print(f"leading tokens equal to sdpa's: Fp8StaticCache {fast_lead}, bf16 StaticCache {slow_lead}; "
          f"equal anywhere: {(got[:, P:] == want[:, P:]).sum(1).tolist()} of {NEW_TOKENS}")
    assert all(f >= s for f, s in zip(fast_lead, slow_lead)), (fast_lead, slow_lead)


def test_every_step_within_fp8_criterion_of_sdpa(model):
    tokens, _ = generate(model, "sdpa")
    ref = teacher_forced_logits(model, "sdpa", StaticCache(config=model.config, max_cache_len=CACHE_LEN), tokens)
    got = teacher_forced_logits(model, tfi.NAME_FP8, fp8_cache(model), tokens)
    worst = min((criterion(g, r) for g, r in zip(got, ref)), key=lambda m: m[0] - m[1])
    top1 = sum((g.argmax(-1) == r.argmax(-1)).sum().item() for g, r in zip(got, ref))
    print(f"worst step (cos, rel_rms) {worst}; top-1 equal to sdpa's at {top1} of {2 * NEW_TOKENS}")
    for i, (g, r) in enumerate(zip(got, ref)):
        cos, rel_rms = criterion(g, r)
        assert cos >= 0.99 and rel_rms <= 0.1, (i, cos, rel_rms)


def _decode_calls(model, cache, tokens, monkeypatch):
    """One prefill then two decode steps; records attention_with_kvcache's arguments and
    counts quantize_qkv calls during the decode steps."""
    calls, quantized = [], []
    real_kv, real_q = torch_fmha.attention_with_kvcache, torch_fmha.quantize_qkv
    monkeypatch.setattr(torch_fmha, "attention_with_kvcache",
                        lambda *a, **kw: calls.append((a, kw)) or real_kv(*a, **kw))
    monkeypatch.setattr(torch_fmha, "quantize_qkv", lambda *a, **kw: quantized.append(a) or real_q(*a, **kw))
    model.set_attn_implementation(tfi.NAME_FP8)
    with torch.no_grad():
        model(tokens[:, :P], past_key_values=cache, use_cache=True)
        descales = [(layer.k_descale.clone(), layer.v_descale.clone()) for layer in cache.layers]
        calls.clear(), quantized.clear()
        for i in range(2):
            model(tokens[:, P + i:P + i + 1], past_key_values=cache, use_cache=True)
    return calls, quantized, descales


def test_decode_reads_the_fp8_cache_as_stored(model, monkeypatch):
    tokens, _ = generate(model, "sdpa")
    cache = fp8_cache(model)
    calls, quantized, prefill_descales = _decode_calls(model, cache, tokens, monkeypatch)
    hkv, d = model.config.num_key_value_heads, model.config.head_dim
    assert len(cache.layers) == model.config.num_hidden_layers
    for layer in cache.layers:
        assert isinstance(layer, Fp8StaticLayer)
        assert layer.keys.dtype == layer.values.dtype == torch.float8_e4m3fn
        assert layer.keys.shape == (IDS.size(0), hkv, CACHE_LEN, d)
        assert layer.k_descale.dtype == torch.float32 and layer.k_descale.shape == (IDS.size(0), hkv)
    assert quantized == []  # no quantize_qkv of the cache (nor of anything) in a decode step
    assert len(calls) == 2 * model.config.num_hidden_layers
    for n, (args, kw) in enumerate(calls):
        layer = cache.layers[n % len(cache.layers)]
        q, k, v, seqlens = args
        assert q.dtype == k.dtype == v.dtype == torch.float8_e4m3fn
        assert k.data_ptr() == layer.keys.data_ptr() and v.data_ptr() == layer.values.data_ptr()
        assert k.shape == (IDS.size(0), CACHE_LEN, hkv, d)  # the whole cache, a view
        assert kw["k_descale"] is layer.k_descale and kw["v_descale"] is layer.v_descale
        assert seqlens.tolist() == [P + 1 + n // len(cache.layers)] * IDS.size(0)
    for layer, (k_descale, v_descale) in zip(cache.layers, prefill_descales):  # fixed at prefill
        assert torch.equal(layer.k_descale, k_descale) and torch.equal(layer.v_descale, v_descale)


def test_matches_bf16_static_cache(model):
    """Prefill + 3 decode steps: logits against the bf16 StaticCache FP8 path, and the
    dequantized cache against that path's cache (K rotated) within e4m3's rounding."""
    tokens, _ = generate(model, "sdpa")
    ref_cache, cache = StaticCache(config=model.config, max_cache_len=CACHE_LEN), fp8_cache(model)
    model.set_attn_implementation(tfi.NAME_FP8)
    with torch.no_grad():
        for lo, hi in ((0, P), (P, P + 1), (P + 1, P + 2), (P + 2, P + 3)):
            want = model(tokens[:, lo:hi], past_key_values=ref_cache, use_cache=True).logits
            got = model(tokens[:, lo:hi], past_key_values=cache, use_cache=True).logits
            cos, rel_rms = criterion(got, want)
            assert cos >= 0.99 and rel_rms <= 0.1, (lo, cos, rel_rms)
    written = P + 3
    for ref, layer in zip(ref_cache.layers, cache.layers):
        for want, fp8, descale in ((rotate(ref.keys), layer.keys, layer.k_descale),
                                   (ref.values, layer.values, layer.v_descale)):
            want = want[:, :, :written].double()
            got = fp8[:, :, :written].double() * descale[:, :, None, None].double()
            # e4m3: 3 mantissa bits, half-ulp 2^-4 relative, for values above the subnormals.
            step = torch.maximum(want.abs() * 2.0 ** -4, descale[:, :, None, None].double() * 2.0 ** -9)
            assert ((got - want).abs() <= step * 1.01).all()
            assert (fp8[:, :, written:].float() == 0).all()  # unwritten slots untouched
        amax = rotate(ref.keys[:, :, :P]).abs().amax((-2, -1))  # the prefill's amax sets the scale
        torch.testing.assert_close(layer.k_descale, amax * HEADROOM / 448)


def test_saturates_past_headroom_and_reset_rearms():
    layer = Fp8StaticLayer(max_cache_len=8)
    d = 16
    k = torch.ones(1, 1, 2, d)
    v = torch.full((1, 1, 2, d), 2.0)
    layer.update(k, v)
    assert torch.allclose(layer.v_descale, torch.tensor([[2.0 * HEADROOM / 448]]))
    # HEADROOM x the prefill's amax is the largest value kept; 10x that saturates at 448.
    layer.update(k[:, :, :1], torch.full((1, 1, 1, d), 2.0 * HEADROOM * 10))
    assert (layer.values[0, 0, 2].float() == 448).all()
    layer.update(k[:, :, :1], torch.full((1, 1, 1, d), float("nan")))
    assert layer.values[0, 0, 3].float().isnan().all()
    # +-Inf becomes NaN (as quantize_fp8: e4m3fn has no infinity), not a saturated 448.
    layer.update(k[:, :, :1], torch.tensor([float("inf"), -float("inf")]).repeat(d // 2).view(1, 1, 1, d))
    assert layer.values[0, 0, 4].float().isnan().all()
    assert torch.allclose(layer.v_descale, torch.tensor([[2.0 * HEADROOM / 448]]))
    layer.reset()
    assert int(layer.cumulative_length) == 0 and (layer.values.float() == 0).all()
    layer.update(k, torch.full((1, 1, 2, d), 8.0))  # a new prefill sets new scales
    assert torch.allclose(layer.v_descale, torch.tensor([[8.0 * HEADROOM / 448]]))


def test_needs_the_fp8_attention_function(model):
    model.set_attn_implementation(tfi.NAME)
    with torch.no_grad(), pytest.raises(NotImplementedError, match="Fp8StaticCache"):
        model(IDS, past_key_values=fp8_cache(model), use_cache=True)


# Sliding-window layers (Fp8StaticSlidingWindowLayer): gpt-oss and Gemma-2 of
# tests/serving_models.py (one sliding layer of 16 keys, one full layer; sinks / softcap) and a
# one-layer Mistral sliding over 8 keys. A 12-token prompt and 32 greedy tokens take the
# sliding layer through its phases (slots not yet full; filling past them; full, rolling).


def sliding_models():
    from serving_models import gemma2, gpt_oss
    from test_transformers_static import tiny_mistral
    return {"gpt_oss_w16": gpt_oss, "gemma2_w16": gemma2, "mistral_w8": lambda: tiny_mistral(8)}


@pytest.mark.parametrize("name", ["gpt_oss_w16", "gemma2_w16", "mistral_w8"])
def test_sliding_window_layers_every_step_within_fp8_criterion(name):
    """Teacher-forced on "eager"'s tokens (DynamicCache): every step's logits with an
    Fp8StaticCache within the FP8 criterion of "eager"'s; the compiled steps give the eager
    ones' logits exactly; the sliding layers are the FP8 ones (float8 slots of the window's
    size, the whole sequence counted; their contents: the next test)."""
    from serving_models import metrics
    from torch_fmha.integrations.fp8_static_cache import Fp8StaticSlidingWindowLayer
    from transformers.cache_utils import DynamicCache
    model = sliding_models()[name]()
    model.set_attn_implementation("eager")
    with torch.no_grad():
        tokens = model.generate(IDS, attention_mask=torch.ones_like(IDS), max_new_tokens=NEW_TOKENS,
                                do_sample=False)

    def step_logits(impl, cache, compiled=False):
        model.set_attn_implementation(impl)
        fwd = torch.compile(model, fullgraph=True, backend="aot_eager") if compiled else model
        with torch.no_grad():
            out = [fwd(IDS, past_key_values=cache, use_cache=True).logits[:, -1]]
            for t in range(P, tokens.size(1) - 1):
                out.append(fwd(tokens[:, t:t + 1], past_key_values=cache, use_cache=True).logits[:, -1])
        return out

    want = step_logits("eager", DynamicCache(config=model.config))
    cache = tfi.Fp8StaticCache(config=model.config, max_cache_len=tokens.size(1))
    sliding = [layer for layer in cache.layers if isinstance(layer, Fp8StaticSlidingWindowLayer)]
    assert sliding, "no sliding-window layer in the cache"
    got = step_logits(tfi.NAME_FP8, cache)
    assert len(got) == NEW_TOKENS
    for i, (g, w) in enumerate(zip(got, want)):
        cos, rel_rms = metrics(g, w)
        assert cos >= 0.99 and rel_rms <= 0.1, (i, cos, rel_rms)
    for layer in sliding:
        w = layer.max_cache_len
        assert layer.keys.dtype == torch.float8_e4m3fn and layer.keys.size(2) == w
        assert layer.get_seq_length() == tokens.size(1) - 1
    torch._dynamo.reset()
    compiled = step_logits(tfi.NAME_FP8, tfi.Fp8StaticCache(config=model.config, max_cache_len=tokens.size(1)),
                           compiled=True)
    for g, c in zip(got, compiled):
        torch.testing.assert_close(c, g, atol=0, rtol=0)


def test_sliding_window_layer_slots_are_the_last_keys_in_order():
    """The FP8 sliding layer keeps what transformers' bf16 one keeps, quantized: after each
    phase its slots dequantize to the bf16 layer's slots (rotated K) within e4m3's rounding,
    and update returns the keys transformers' layer returns."""
    from torch_fmha.integrations.fp8_static_cache import Fp8StaticSlidingWindowLayer
    from transformers.cache_utils import StaticSlidingWindowLayer
    g = torch.Generator().manual_seed(3)
    fp8 = Fp8StaticSlidingWindowLayer(max_cache_len=64, sliding_window=8)
    ref = StaticSlidingWindowLayer(max_cache_len=64, sliding_window=8)
    # not full; filling past non-empty slots; full + 1; full + several. Reaching full exactly
    # from empty: the second loop below (5, 1, 1, 1, 1 of w = 8 after a reset)
    for n in (5, 6, 1, 1, 3, 1):
        k, v = torch.randn(2, 2, n, 128, generator=g), torch.randn(2, 2, n, 128, generator=g)
        kf, vf = fp8.update(k, v)
        kr, vr = ref.update(rotate(k), v)
        assert kf.data.shape == kr.shape and vf.data.shape == vr.shape
        for got, want in ((kf, kr), (vf, vr)):
            deq = got.data.float() * got.descale[:, :, None, None]
            assert (deq - want).abs().max() <= 0.07 * want.abs().max(), n
        for slot, want in ((fp8.keys, ref.keys), (fp8.values, ref.values)):
            deq = slot.float() * (fp8.k_descale if slot is fp8.keys else fp8.v_descale)[:, :, None, None]
            assert (deq - want).abs().max() <= 0.07 * want.abs().max(), n
    assert fp8.get_seq_length() == ref.get_seq_length() == 17
    fp8.reset()
    ref.reset()
    for n in (5, 1, 1, 1, 1):  # reaching full exactly, then one more: new descales after reset
        k, v = torch.randn(2, 2, n, 128, generator=g), torch.randn(2, 2, n, 128, generator=g)
        kf, _ = fp8.update(k, v)
        kr, _ = ref.update(rotate(k), v)
        assert kf.data.shape == kr.shape
        deq = kf.data.float() * kf.descale[:, :, None, None]
        assert (deq - kr).abs().max() <= 0.07 * kr.abs().max(), n
    assert fp8.get_seq_length() == 9
