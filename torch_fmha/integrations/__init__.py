"""Integrations of torch_fmha with other libraries.

Each integration lives in its own module and imports its library only when
that module is imported, so ``import torch_fmha`` never needs them:

- :mod:`torch_fmha.integrations.transformers`: Hugging Face transformers
  attention functions ``attn_implementation="torch_fmha"`` and
  ``"torch_fmha_fp8"`` (registered on import).
"""
