"""The small random Llama of the static-cache tests (tests/test_transformers_static.py,
tests/test_transformers_fp8_static_cache.py, tests/gpu/test_kvcache_sm90.py): 2 layers,
4 query heads over 2 KV heads, head_dim 128 (a head dim the CUDA kernels take)."""

from __future__ import annotations

import torch


def tiny_llama(max_position_embeddings: int = 512):
    """A fresh random LlamaForCausalLM (float32, eval mode), the same weights every call."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=128,
                      max_position_embeddings=max_position_embeddings)
    return LlamaForCausalLM(cfg).eval()
