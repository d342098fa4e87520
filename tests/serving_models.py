"""Small random transformers models that need the serving features (issue 14), shared
by tests/test_transformers_serving.py (CPU) and tests/gpu/test_serving_features_sm90.py:
gpt-oss (sinks, s_aux) and Gemma-2 (softcap), and the FP8 closeness criterion.
Why these configs and tolerances: tests/test_transformers_serving.py's docstring."""

from __future__ import annotations

import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, GptOssConfig, GptOssForCausalLM

VOCAB = 512
BASE = dict(vocab_size=VOCAB, hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            sliding_window=16, max_position_embeddings=512, layer_types=["sliding_attention", "full_attention"])


def gpt_oss():
    torch.manual_seed(0)
    cfg = GptOssConfig(**BASE, intermediate_size=256, head_dim=64, num_local_experts=2, num_experts_per_tok=2,
                       rope_parameters=dict(rope_type="default", rope_theta=10000.0))
    model = GptOssForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.sinks.copy_(torch.randn(4, generator=g) + 1.0)
    return model


def gemma2():
    torch.manual_seed(0)
    cfg = Gemma2Config(**BASE, intermediate_size=512, head_dim=128, query_pre_attn_scalar=128,
                       attn_logit_softcapping=1.0)
    model = Gemma2ForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(3.0)
            layer.self_attn.k_proj.weight.mul_(3.0)
    return model


MODELS = {"gpt_oss": (gpt_oss, "s_aux"), "gemma2": (gemma2, "softcap")}


def metrics(got, want):
    got, want = got.double().flatten(), want.double().flatten()
    cos = torch.nn.functional.cosine_similarity(got, want, dim=0).item()
    return cos, ((got - want).pow(2).mean().sqrt() / want.std()).item()


def close_fp8(got, want) -> bool:
    cos, rel_rms = metrics(got, want)
    return cos >= 0.99 and rel_rms <= 0.1
