"""torch_fmha.meta: shape/dtype/stride rules and fake implementations."""

from . import checks, fake

__all__ = ["checks", "fake"]
