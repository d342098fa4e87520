"""Hugging Face transformers integration: attn_implementation="torch_fmha" /
"torch_fmha_fp8" on a small random Llama (no download), against "sdpa".

Tolerances. "torch_fmha" runs the model's own dtype (float32 here): the same
math as SDPA up to summation order, so logits agree to ~1e-6 of their spread
and we compare with ``assert_close(atol=1e-4 * std)``. "torch_fmha_fp8"
rounds q, k, v (and P inside the kernel) to float8_e4m3fn: 3 mantissa bits, a
relative rounding error of up to 2^-4 per element, ~2^-4/sqrt(3) ~ 0.036 RMS
for uniformly distributed rounding; those errors average in the dot products
but pass through two layers and the LM head, so logits carry a relative
noise of a few percent (measured here: RMS(err)/std(logits) ~ 0.03, cosine
similarity ~ 0.9995, max |err|/std ~ 0.12). The criterion, ``close_fp8``:
cosine similarity >= 0.99 and RMS(err) <= 0.1 * std(logits), about 3x the
measured noise. It is far from what a wrong mask gives: a non-causal
prefill measures cosine ~ 0.5 and RMS(err)/std ~ 0.9, and top-left instead of
bottom-right alignment in a cached step fails as clearly; each test that
uses the criterion also asserts that such a wrong variant FAILS it. bf16
models (either name) use the same criterion: bf16 rounding (2^-8) sits well
inside it.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo

transformers = pytest.importorskip(
    "transformers", reason="Hugging Face transformers is not installed (pip install transformers)")

import torch_fmha.integrations.transformers as tfi  # noqa: E402  (registers the two names)
from transformers import (AttentionInterface, AttentionMaskInterface, LlamaConfig,  # noqa: E402
                          LlamaForCausalLM, MistralConfig, MistralForCausalLM)
from transformers.cache_utils import DynamicCache  # noqa: E402
from transformers.masking_utils import sdpa_mask, sliding_window_bidirectional_mask_function  # noqa: E402

IMPLS = [tfi.NAME, tfi.NAME_FP8]
VOCAB = 512


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _config(cls=LlamaConfig, **kw):
    base = dict(vocab_size=VOCAB, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=128, max_position_embeddings=512)
    base.update(kw)
    return cls(**base)


def make_model(cfg=None, model_cls=LlamaForCausalLM, dtype=torch.float32, seed=0):
    """One random model; switch implementations with set_attn_implementation (same weights)."""
    torch.manual_seed(seed)
    cfg = copy.deepcopy(cfg or _config())
    return model_cls._from_config(cfg, attn_implementation="sdpa", dtype=dtype).eval()


def metrics(got, want):
    got, want = got.double().flatten(), want.double().flatten()
    cos = torch.nn.functional.cosine_similarity(got, want, dim=0).item()
    rel_rms = ((got - want).pow(2).mean().sqrt() / want.std()).item()
    return cos, rel_rms


def close_fp8(got, want) -> bool:
    cos, rel_rms = metrics(got, want)
    return cos >= 0.99 and rel_rms <= 0.1


def assert_matches(impl, got, want):
    if impl == tfi.NAME and got.dtype == torch.float32:
        torch.testing.assert_close(got, want, atol=1e-4 * want.std().item(), rtol=1e-4)
    else:
        assert close_fp8(got, want), f"{impl}: cos, rel_rms = {metrics(got, want)}"


def logits(model, impl, *args, **kw):
    model.set_attn_implementation(impl)
    with torch.no_grad():
        return model(*args, **kw).logits


# Test-only "wrong" implementations: what the criterion must reject.
def _noncausal(module, q, k, v, mask, scaling=None, dropout=0.0, **kw):
    return tfi.torch_fmha_fp8_attention_forward(module, q, k, v, mask, scaling, dropout, **{**kw, "is_causal": False})


def _top_left(module, q, k, v, mask, scaling=None, dropout=0.0, **kw):
    """PyTorch SDPA's is_causal=True: top-left aligned (wrong when Sq < Sk)."""
    assert mask is None
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=q.size(2) > 1, scale=scaling,
                                                           enable_gqa=True)
    return out.transpose(1, 2), None


for _name, _fn in [("test_wrong_noncausal", _noncausal), ("test_wrong_top_left", _top_left)]:
    AttentionInterface.register(_name, _fn)
    AttentionMaskInterface.register(_name, tfi.torch_fmha_mask)


def test_registered():
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    tfi.register()  # idempotent
    for name in IMPLS:
        assert name in ALL_ATTENTION_FUNCTIONS.valid_keys()
        assert ALL_MASK_ATTENTION_FUNCTIONS[name] is tfi.torch_fmha_mask
    assert ALL_ATTENTION_FUNCTIONS[tfi.NAME] is tfi.torch_fmha_attention_forward
    assert ALL_ATTENTION_FUNCTIONS[tfi.NAME_FP8] is tfi.torch_fmha_fp8_attention_forward
    # from_config accepts the names
    model = LlamaForCausalLM._from_config(_config(num_hidden_layers=1), attn_implementation=tfi.NAME_FP8)
    assert model.model.layers[0].self_attn.config._attn_implementation == tfi.NAME_FP8


@pytest.mark.parametrize("impl", IMPLS)
def test_prefill_matches_sdpa(impl):
    model = make_model()
    ids = torch.randint(0, VOCAB, (2, 64), generator=torch.Generator().manual_seed(1))
    want = logits(model, "sdpa", ids)
    assert_matches(impl, logits(model, impl, ids), want)
    # The criterion has teeth: a non-causal mask fails it by a wide margin.
    wrong = logits(model, "test_wrong_noncausal", ids)
    assert not close_fp8(wrong, want), metrics(wrong, want)


@pytest.mark.parametrize("impl", IMPLS)
def test_prefill_bf16_model(impl):
    """A bf16 model: "torch_fmha" runs the op in bf16 (the CPU path), FP8 writes bf16."""
    model = make_model(dtype=torch.bfloat16)
    ids = torch.randint(0, VOCAB, (2, 48), generator=torch.Generator().manual_seed(2))
    got = logits(model, impl, ids)
    assert got.dtype == torch.bfloat16
    assert close_fp8(got, logits(model, "sdpa", ids)), metrics(got, logits(model, "sdpa", ids))


@pytest.mark.parametrize("impl", IMPLS)
def test_cached_steps_match_sdpa(impl):
    """Prefill 40 tokens into a DynamicCache, then a 6-token step (Sq=6 < Sk=46:
    bottom-right causal) and a 1-token decode step."""
    model = make_model()
    g = torch.Generator().manual_seed(3)
    prompt, chunk, tok = (torch.randint(0, VOCAB, (2, n), generator=g) for n in (40, 6, 1))

    def run(name):
        model.set_attn_implementation(name)
        cache = DynamicCache(config=model.config)
        with torch.no_grad():
            model(prompt, past_key_values=cache, use_cache=True)
            a = model(chunk, past_key_values=cache, use_cache=True).logits
            b = model(tok, past_key_values=cache, use_cache=True).logits
        assert cache.get_seq_length() == 47
        return a, b

    want_chunk, want_tok = run("sdpa")
    got_chunk, got_tok = run(impl)
    assert_matches(impl, got_chunk, want_chunk)
    assert_matches(impl, got_tok, want_tok)
    wrong_chunk, _ = run("test_wrong_top_left")
    assert not close_fp8(wrong_chunk, want_chunk), metrics(wrong_chunk, want_chunk)


def _padded_batch(left: bool):
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(0, VOCAB, (3, 40), generator=g)
    mask = torch.ones(3, 40, dtype=torch.long)
    for row, n in [(0, 11), (2, 3)]:  # row 1 unpadded
        if left:
            mask[row, :n] = 0
        else:
            mask[row, -n:] = 0
    return ids, mask


@pytest.mark.parametrize("left", [True, False], ids=["left_pad", "right_pad"])
@pytest.mark.parametrize("impl", IMPLS)
def test_padding_mask_matches_sdpa(impl, left):
    """2-D padding masks go through the varlen op; compare at the real tokens only."""
    model = make_model()
    ids, mask = _padded_batch(left)
    want = logits(model, "sdpa", ids, attention_mask=mask)
    got = logits(model, impl, ids, attention_mask=mask)
    real = mask.bool()
    assert torch.isfinite(got).all()
    assert_matches(impl, got[real], want[real])
    if left:  # (causal: right padding is invisible to the real tokens anyway)
        # An ignored mask would fail: the left-padded rows' real tokens would see the padding.
        ignored = logits(model, impl, ids)
        assert not close_fp8(ignored[real], want[real]), metrics(ignored[real], want[real])


def test_padded_greedy_generate_matches_sdpa():
    """Left-padded batched generation (prefill + decode steps with a padding mask)."""
    model = make_model()
    ids, mask = _padded_batch(left=True)
    out = {}
    for impl in ["sdpa", tfi.NAME]:
        model.set_attn_implementation(impl)
        with torch.no_grad():
            out[impl] = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                                       pad_token_id=0)
    assert torch.equal(out[tfi.NAME], out["sdpa"])


@pytest.mark.parametrize("impl", IMPLS)
def test_unsupported_masks_raise(impl):
    model = make_model()
    model.set_attn_implementation(impl)
    ids = torch.randint(0, VOCAB, (2, 16))
    holes = torch.ones(2, 16, dtype=torch.long)
    holes[0, 5] = 0  # a hole in the middle: not one contiguous run
    with torch.no_grad():
        with pytest.raises(NotImplementedError, match="contiguous run"):
            model(ids, attention_mask=holes)
        with pytest.raises(NotImplementedError, match="4-D"):
            model(ids, attention_mask=torch.ones(2, 1, 16, 16, dtype=torch.bool))
        packed = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7]] * 2)
        with pytest.raises(NotImplementedError, match="packed"):
            model(ids, position_ids=packed, use_cache=False)
    model.train()
    model.config.attention_dropout = 0.1
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.1
    with pytest.raises(NotImplementedError, match="dropout"):
        model(ids)


@pytest.mark.parametrize("impl", IMPLS)
def test_sliding_window_matches_sdpa(impl):
    """Mistral with sliding_window=16 over 50 tokens (prefill, then a cached step), with left padding."""
    cfg = _config(MistralConfig, sliding_window=16)
    model = make_model(cfg, MistralForCausalLM)
    g = torch.Generator().manual_seed(5)
    ids, more = torch.randint(0, VOCAB, (2, 50), generator=g), torch.randint(0, VOCAB, (2, 3), generator=g)
    mask = torch.ones(2, 53, dtype=torch.long)
    mask[1, :7] = 0
    for name in ["sdpa", impl]:
        model.set_attn_implementation(name)
        cache = DynamicCache(config=model.config)
        with torch.no_grad():
            a = model(ids, attention_mask=mask[:, :50], past_key_values=cache, use_cache=True).logits
            b = model(more, attention_mask=mask, past_key_values=cache, use_cache=True).logits
        if name == "sdpa":
            want_a, want_b = a, b
    real = mask[:, :50].bool()
    assert_matches(impl, a[real], want_a[real])
    assert_matches(impl, b, want_b)
    # Without the window (a plain causal model) the result must differ.
    no_window = logits(make_model(_config(MistralConfig, sliding_window=None), MistralForCausalLM), impl,
                       ids, attention_mask=mask[:, :50])
    assert not close_fp8(no_window[real], want_a[real]), metrics(no_window[real], want_a[real])


@pytest.mark.parametrize("causal", [True, False])
def test_window_semantics_match_transformers_masks(causal):
    """window_size derived from sliding_window reproduces transformers' own sliding masks
    (causal: kv > q - w; bidirectional: |q - kv| <= w), at the attention-function level."""
    w, s = 5, 23
    module = torch.nn.Module()
    module.is_causal = causal
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(2, h, s, 64, generator=g, dtype=torch.float64) for h in (4, 2, 2))
    got, _ = tfi.torch_fmha_attention_forward(module, q, k, v, None, sliding_window=w)
    if causal:
        from transformers.masking_utils import sliding_window_causal_mask_function as fn
    else:
        fn = sliding_window_bidirectional_mask_function
    m = sdpa_mask(batch_size=2, q_length=s, kv_length=s, mask_function=fn(w), allow_is_causal_skip=False)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=True)
    torch.testing.assert_close(got, want.transpose(1, 2), atol=1e-10, rtol=1e-10)


# torch.compile(fullgraph=True) of the whole model forward: no graph break anywhere
# (transformers' mask creation, DynamicCache and our attention function included).

@pytest.mark.parametrize("impl", IMPLS)
def test_compiled_fullgraph_prefill_and_decode(impl):
    model = make_model()
    g = torch.Generator().manual_seed(7)
    ids, tok = torch.randint(0, VOCAB, (2, 48), generator=g), torch.randint(0, VOCAB, (2, 1), generator=g)
    model.set_attn_implementation(impl)
    compiled = torch.compile(model, fullgraph=True, backend="inductor")
    with torch.no_grad():
        cache, ref_cache = DynamicCache(config=model.config), DynamicCache(config=model.config)
        got = compiled(ids, past_key_values=cache, use_cache=True).logits
        got_tok = compiled(tok, past_key_values=cache, use_cache=True).logits
        want = logits(model, "sdpa", ids, past_key_values=ref_cache, use_cache=True)
        want_tok = logits(model, "sdpa", tok, past_key_values=ref_cache, use_cache=True)
    assert_matches(impl, got, want)
    assert_matches(impl, got_tok, want_tok)


@pytest.mark.parametrize("impl", IMPLS)
def test_compiled_fullgraph_padding(impl):
    """Under torch.compile the mask function cannot look at the mask: the padded
    batch goes through the varlen path with a device-side check, no graph break."""
    model = make_model()
    ids, mask = _padded_batch(left=True)
    want = logits(model, "sdpa", ids, attention_mask=mask)
    model.set_attn_implementation(impl)
    compiled = torch.compile(model, fullgraph=True, backend="inductor")
    with torch.no_grad():
        got = compiled(ids, attention_mask=mask).logits
        holes = mask.clone()
        holes[1, 20] = 0  # same shapes, no recompile: the device-side check must fire
        with pytest.raises(RuntimeError, match="contiguous run"):
            compiled(ids, attention_mask=holes)
    real = mask.bool()
    assert_matches(impl, got[real], want[real])


def test_compiled_use_cache_false_needs_a_mask():
    """Known limitation, stated: with use_cache=False and no attention_mask, transformers
    cannot rule out packed sequences under torch.compile and asks for a materialised mask,
    which we refuse (clearly) rather than guess. Passing the (all-ones) mask works."""
    model = make_model()
    model.set_attn_implementation(tfi.NAME)
    ids = torch.randint(0, VOCAB, (2, 32))
    with torch.no_grad():
        with pytest.raises(Exception, match="packed"):
            torch.compile(model, fullgraph=True, backend="eager")(ids, use_cache=False)
        torch._dynamo.reset()
        got = torch.compile(model, fullgraph=True, backend="eager")(
            ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
    assert_matches(tfi.NAME, got, logits(model, "sdpa", ids, use_cache=False))
