"""NaN / Inf cases shared by the CPU (tests/test_nan.py) and GPU
(tests/gpu/test_nan_sm90.py) tests: input poisoning and the comparisons.

The semantics (docs/DESIGN.md, tests/reference.py attention_ref): a non-finite
value reaches exactly the output rows / LSE entries that see it; keys a row
does not see (mask, past the sequence) and padding never reach it; a row that
sees no key is out = 0, lse = -inf whatever the inputs hold.
"""

from __future__ import annotations

import math

import torch

FP8 = torch.float8_e4m3fn
FP8_NAN_BYTE = 0x7F  # e4m3fn has NaN (S.1111.111) and no Inf


def set_value(t: torch.Tensor, index, value: float) -> None:
    """t[index] = value, in place, for any dtype (FP8: NaN through its bit pattern)."""
    if t.dtype == FP8:
        assert math.isnan(value), "float8_e4m3fn has no Inf"
        t.view(torch.uint8)[index] = FP8_NAN_BYTE
    else:
        t[index] = value


def as_float(out: torch.Tensor, out_scale=None) -> torch.Tensor:
    """Output as float64 on the CPU (FP8 output times out_scale; NaN stays NaN)."""
    x = out.detach().double().cpu()
    if out.dtype == FP8:
        x = x * out_scale.double().cpu().reshape(())
    return x


def assert_same_pattern(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """NaN, +inf and -inf at exactly the same places."""
    a, b = a.double().cpu(), b.double().cpu()
    for name, f in (("NaN", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)):
        fa, fb = f(a), f(b)
        if not torch.equal(fa, fb):
            diff = (fa != fb).nonzero()
            raise AssertionError(f"{what}: {name} pattern differs at {diff.size(0)} entries, "
                                 f"first {diff[:5].tolist()} (got {int(fa.sum())}, want {int(fb.sum())})")


def assert_matches(got: torch.Tensor, want: torch.Tensor, what: str, atol: float,
                   rtol: float = 0.0) -> None:
    """Same non-finite pattern, finite entries within atol + rtol * |want|."""
    assert_same_pattern(got, want, what)
    want = want.double().cpu()
    fin = torch.isfinite(want)
    if fin.any():
        excess = (got.double().cpu()[fin] - want[fin]).abs() - rtol * want[fin].abs()
        err = excess.max().item()
        assert err <= atol, f"{what}: finite entries differ by {err:.3e} > {atol:g} + {rtol:g} * |ref|"


def assert_unchanged_except(got: torch.Tensor, clean: torch.Tensor, affected: torch.Tensor,
                            what: str) -> None:
    """Every entry outside `affected` (a bool mask broadcastable to got) is
    bitwise the entry of the run on clean inputs: the poison reached nothing else."""
    keep = ~affected.expand_as(got).cpu()
    g, c = got.detach().cpu(), clean.detach().cpu()
    if g.dtype == FP8:
        g, c = g.view(torch.uint8), c.view(torch.uint8)
    bad = (g[keep] != c[keep])
    assert not bad.any(), f"{what}: {int(bad.sum())} entries that must not see the poison changed"


def visible(sq: int, sk: int, causal=False, window_size=(-1, -1)) -> torch.Tensor:
    """[Sq, Sk] bool, bottom-right aligned (independent of reference.visible)."""
    left, right = window_size
    if causal:
        right = 0
    i = torch.arange(sq)[:, None] + (sk - sq)
    j = torch.arange(sk)[None, :]
    ok = torch.ones(sq, sk, dtype=torch.bool)
    if left >= 0:
        ok &= j >= i - left
    if right >= 0:
        ok &= j <= i + right
    return ok


def group_heads(h: int, hkv: int, g: int) -> torch.Tensor:
    """[H] bool: the query heads served by kv head g."""
    return torch.arange(h) // (h // hkv) == g
