"""NaN and Inf propagate on the CPU path, exactly to the entries that see them.

For every case: the entries that must become NaN (or +-inf) are computed here
from the mask, independently of the op and of the oracle; the op must have
exactly that non-finite pattern, every other entry must be bitwise the run on
clean inputs, and the whole result must match the float64 oracle
(tests/reference.py), itself checked against float64 SDPA where SDPA has the
same semantics (no mask: SDPA's additive -inf mask lets 0 * NaN through).
The same cases run on the GPU in tests/gpu/test_nan_sm90.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import torch_fmha
from inputs import FP8, dense_inputs, varlen_inputs
from nan_cases import (as_float, assert_matches, assert_same_pattern, assert_unchanged_except,
                       group_heads, set_value, visible)
from reference import attention_ref, varlen_attention_ref

NAN, INF = math.nan, math.inf
B, S, H, HKV, D = 2, 150, 4, 2, 64
# FP8 inputs give bf16 output: its rounding (2^-9 relative) on top of the FP8 math.
ATOL = {FP8: 1e-3, torch.float32: 1e-5}
RTOL = {FP8: 8e-3, torch.float32: 1e-5}
MASKS = [dict(), dict(causal=True), dict(window_size=(40, 3))]


def mask_id(m):
    return "full" if not m else ",".join(f"{k}={v}" for k, v in m.items())


def run(q, k, v, s, **kw):
    return torch_fmha.attention(q, k, v, return_lse=True, **s, **kw)


def check_vs_oracle(out, lse, q, k, v, s, **kw):
    ref, ref_lse = attention_ref(q, k, v, **s, **kw)
    assert_matches(as_float(out), ref, "out vs oracle", ATOL[q.dtype], RTOL[q.dtype])
    assert_matches(lse, ref_lse, "lse vs oracle", 1e-4)


def sdpa64(q, k, v, scale=None):
    """float64 SDPA (math backend), no mask: [B, S, H, D] in and out, GQA expanded."""
    g = q.size(2) // k.size(2)
    q, k, v = (t.double().transpose(1, 2) for t in (q, k, v))
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2)


# ---- one poisoned element of q, k or v ------------------------------------------


@pytest.mark.parametrize("mask", MASKS, ids=mask_id)
@pytest.mark.parametrize("dtype", [FP8, torch.float32])
def test_nan_in_q(dtype, mask):
    q, k, v, s = dense_inputs(B, S, S, H, HKV, D, dtype, seed=1)
    out0, lse0 = run(q, k, v, s, **mask)
    set_value(q, (1, 70, 3, 5), NAN)
    out, lse = run(q, k, v, s, **mask)
    rows = torch.zeros(B, S, H, 1, dtype=torch.bool)
    rows[1, 70, 3] = True  # that row only: all of its D values and its lse
    assert_same_pattern(as_float(out), torch.where(rows, NAN, 0.0).expand(B, S, H, D), "out")
    assert_same_pattern(lse, torch.where(rows[..., 0].transpose(1, 2), NAN, 0.0), "lse")
    assert_unchanged_except(out, out0, rows, "out")
    assert_unchanged_except(lse, lse0, rows[..., 0].transpose(1, 2), "lse")
    check_vs_oracle(out, lse, q, k, v, s, **mask)


@pytest.mark.parametrize("mask", MASKS, ids=mask_id)
@pytest.mark.parametrize("dtype", [FP8, torch.float32])
def test_nan_in_k(dtype, mask):
    q, k, v, s = dense_inputs(B, S, S, H, HKV, D, dtype, seed=2)
    out0, lse0 = run(q, k, v, s, **mask)
    j = 70
    set_value(k, (1, j, 1, 5), NAN)
    out, lse = run(q, k, v, s, **mask)
    # Rows of batch 1, heads of kv group 1, that see key j: NaN out and lse.
    rows = torch.zeros(B, S, H, 1, dtype=torch.bool)
    rows[1] = (visible(S, S, **mask)[:, j][:, None] & group_heads(H, HKV, 1)[None, :])[..., None]
    assert 0 < rows.sum() < B * S * H
    assert_same_pattern(as_float(out), torch.where(rows, NAN, 0.0).expand(B, S, H, D), "out")
    assert_same_pattern(lse, torch.where(rows[..., 0].transpose(1, 2), NAN, 0.0), "lse")
    assert_unchanged_except(out, out0, rows, "out")
    assert_unchanged_except(lse, lse0, rows[..., 0].transpose(1, 2), "lse")
    check_vs_oracle(out, lse, q, k, v, s, **mask)


V_CASES = [(FP8, NAN), (torch.float32, NAN), (torch.float32, INF), (torch.float32, -INF)]


@pytest.mark.parametrize("mask", MASKS, ids=mask_id)
@pytest.mark.parametrize("dtype,value", V_CASES, ids=["fp8-nan", "f32-nan", "f32-+inf", "f32--inf"])
def test_nonfinite_in_v(dtype, value, mask):
    q, k, v, s = dense_inputs(B, S, S, H, HKV, D, dtype, seed=3)
    out0, lse0 = run(q, k, v, s, **mask)
    j, d = 70, 5
    set_value(v, (1, j, 1, d), value)
    out, lse = run(q, k, v, s, **mask)
    # Only column d of the rows that see key j; lse does not depend on v.
    hit = torch.zeros(B, S, H, D, dtype=torch.bool)
    hit[1, :, :, d] = visible(S, S, **mask)[:, j][:, None] & group_heads(H, HKV, 1)[None, :]
    want = torch.where(hit, value, 0.0)  # p > 0 everywhere here: inf * p = inf
    assert_same_pattern(as_float(out), want, "out")
    assert torch.equal(lse, lse0), "lse changed"
    assert_unchanged_except(out, out0, hit, "out")
    check_vs_oracle(out, lse, q, k, v, s, **mask)


@pytest.mark.parametrize("dtype", [FP8, torch.float32])
def test_poison_agrees_with_sdpa(dtype):
    """No mask: the oracle, and so the op, agree with float64 SDPA on NaN in q,
    k and v (which entries are NaN, and the values of the others)."""
    q, k, v, s = dense_inputs(1, 90, 90, 2, 1, D, dtype, seed=4, poison=False)
    set_value(q, (0, 3, 1, 7), NAN)
    set_value(k, (0, 20, 0, 1), NAN) if dtype != FP8 else None
    set_value(v, (0, 40, 0, 9), NAN)
    qd = q.double() * (s["q_descale"].double()[:, None, :, None] if s else 1)
    kd = k.double() * (s["k_descale"].double()[:, None, :, None] if s else 1)
    vd = v.double() * (s["v_descale"].double()[:, None, :, None] if s else 1)
    want = sdpa64(qd, kd, vd)
    ref, _ = attention_ref(q, k, v, **s)
    assert_matches(ref, want, "oracle vs SDPA", 1e-9)
    out = torch_fmha.attention(q, k, v, **s)
    assert_matches(as_float(out), want, "op vs SDPA", ATOL[dtype], RTOL[dtype])


# ---- +-Inf in q and k (CPU only: FP8 has no Inf) --------------------------------


def test_inf_in_k_both_signs():
    """k[j, d] = +inf: rows with q[i, d] > 0 get a +inf score (undefined: NaN
    row), rows with q[i, d] < 0 get -inf at key j only (p = 0 there, the rest
    of the row is finite and equals attention without key j)."""
    q, k, v, s = dense_inputs(1, 64, 64, 1, 1, D, torch.float32, seed=5, poison=False)
    j, d = 10, 3
    k[0, j, 0, d] = INF
    out, lse = run(q, k, v, s)
    pos = q[0, :, 0, d] > 0
    assert_same_pattern(out[0, :, 0, 0], torch.where(pos, NAN, 0.0), "out rows")
    assert_same_pattern(lse[0, 0], torch.where(pos, NAN, 0.0), "lse rows")
    # Finite rows: attention over the other keys.
    keep = torch.arange(64) != j
    o2, l2 = run(q, k[:, keep], v[:, keep], s)
    assert torch.allclose(out[0, ~pos], o2[0, ~pos], atol=1e-6)
    assert torch.allclose(lse[0, 0, ~pos], l2[0, 0, ~pos], atol=1e-6)
    check_vs_oracle(out, lse, q, k, v, s)
    assert_matches(out.double(), sdpa64(q, k, v), "op vs SDPA", 1e-5)


@pytest.mark.parametrize("value", [INF, -INF], ids=["+inf", "-inf"])
def test_inf_in_q_row_is_nan(value):
    """An infinite q element gives scores of both signs (or inf * 0): NaN row."""
    q, k, v, s = dense_inputs(1, 64, 64, 2, 1, D, torch.float32, seed=6, poison=False)
    q[0, 5, 1, 0] = value
    out, lse = run(q, k, v, s, causal=True)
    rows = torch.zeros(1, 64, 2, 1, dtype=torch.bool)
    rows[0, 5, 1] = True
    assert_same_pattern(out, torch.where(rows, NAN, 0.0).expand_as(out), "out")
    assert_same_pattern(lse, torch.where(rows[..., 0].transpose(1, 2), NAN, 0.0), "lse")
    check_vs_oracle(out, lse, q, k, v, s, causal=True)


def test_all_scores_minus_inf_is_nan_not_empty():
    """A row whose visible scores are all -inf by the data is undefined (NaN),
    not the empty row (0, -inf) of a row that sees no key. float64 SDPA's
    safe softmax gives 0 there; we deliberately do not: it hides the bad input."""
    q = torch.zeros(1, 4, 1, D)
    k = torch.zeros(1, 6, 1, D)
    v = torch.randn(1, 6, 1, D)
    q[0, 2, 0, 0] = INF
    k[0, :, 0, 0] = -1.0  # row 2: every score is -inf
    out, lse = run(q, k, v, {})
    assert torch.isnan(out[0, 2]).all() and torch.isnan(lse[0, 0, 2])
    assert torch.isfinite(out[0, [0, 1, 3]]).all() and torch.isfinite(lse[0, 0, [0, 1, 3]]).all()
    check_vs_oracle(out, lse, q, k, v, {})
    assert (sdpa64(q, k, v)[0, 2] == 0).all()  # the documented difference from SDPA


# ---- descales ------------------------------------------------------------------

SCALE_CASES = [("q_descale", NAN), ("k_descale", NAN), ("q_descale", INF), ("k_descale", -INF),
               ("v_descale", NAN)]


@pytest.mark.parametrize("per_head", [False, True], ids=["tensor", "head"])
@pytest.mark.parametrize("name,value", SCALE_CASES, ids=[f"{n}={v}" for n, v in SCALE_CASES])
def test_nonfinite_descale(name, value, per_head):
    """q/k descale NaN or +-inf: every row that sees a key is NaN (out and lse);
    v_descale NaN: out NaN, lse untouched. Rows that see no key (causal with
    Sq > Sk) stay 0 / -inf. Per-head descales: only that (batch, kv head)."""
    sq, sk = 200, 150  # causal, bottom-right: rows < 50 see no key
    q, k, v, s = dense_inputs(B, sq, sk, H, HKV, D, FP8, per_head_descale=per_head, seed=7)
    out0, lse0 = run(q, k, v, s, causal=True)
    if per_head:
        s[name] = s[name].clone()
        s[name][1, 0] = value
        heads = torch.zeros(B, H, dtype=torch.bool)
        heads[1] = group_heads(H, HKV, 0)
    else:
        s[name] = torch.full_like(s[name], value)
        heads = torch.ones(B, H, dtype=torch.bool)
    out, lse = run(q, k, v, s, causal=True)
    sees = visible(sq, sk, causal=True).any(-1)  # [Sq]
    rows = (sees[None, :, None] & heads[:, None, :])[..., None]  # [B, Sq, H, 1]
    assert_same_pattern(as_float(out), torch.where(rows, NAN, 0.0).expand_as(out), "out")
    lse_rows = rows[..., 0].transpose(1, 2)
    if name == "v_descale":
        assert torch.equal(lse, lse0)
    else:
        assert_same_pattern(lse, torch.where(lse_rows, NAN, lse0), "lse")
    assert_unchanged_except(out, out0, rows, "out")
    assert (out[:, :sq - sk].double() == 0).all() and torch.isneginf(lse[:, :, :sq - sk]).all()
    check_vs_oracle(out, lse, q, k, v, s, causal=True)


def test_inf_v_descale():
    """out = (P V) * v_descale: +-inf with the sign of the finite result, NaN where it is 0."""
    q, k, v, s = dense_inputs(B, 100, 100, H, HKV, D, FP8, seed=8)
    v.view(torch.uint8)[0, :, 0, 0] = 0  # column 0 of kv head 0: all zero -> out exactly 0
    out0 = torch_fmha.attention(q, k, v, **s).double()
    s["v_descale"] = torch.full_like(s["v_descale"], INF)
    out = torch_fmha.attention(q, k, v, **s).double()
    want = torch.where(out0 == 0, NAN, out0 * INF)
    assert torch.isnan(want).any() and torch.isinf(want).any()
    assert_same_pattern(out, want, "out")


def test_nan_fp8_output():
    """FP8 output: NaN stays NaN (never saturated to +-448); the rest is unchanged."""
    q, k, v, s = dense_inputs(B, S, S, H, HKV, D, FP8, seed=9)
    kw = dict(s, out_dtype=FP8, out_scale=torch.tensor([0.02]), causal=True)
    out0 = torch_fmha.attention(q, k, v, **kw)
    set_value(k, (0, 30, 0, 0), NAN)
    out = torch_fmha.attention(q, k, v, **kw)
    rows = torch.zeros(B, S, H, 1, dtype=torch.bool)
    rows[0] = (visible(S, S, causal=True)[:, 30][:, None] & group_heads(H, HKV, 0)[None, :])[..., None]
    assert_same_pattern(out.double(), torch.where(rows, NAN, 0.0).expand_as(out), "out")
    assert_unchanged_except(out, out0, rows, "out")


# ---- masked-out data never leaks --------------------------------------------------


@pytest.mark.parametrize("dtype", [FP8, torch.float32])
def test_masked_nan_does_not_leak(dtype):
    """NaN in k and v at keys that a row does not see (causal: later keys;
    window: keys outside it) leaves that row bitwise unchanged."""
    for mask in MASKS[1:]:
        q, k, v, s = dense_inputs(1, S, S, H, HKV, D, dtype, seed=10)
        out0, lse0 = run(q, k, v, s, **mask)
        j = 100
        for t in (k, v):
            set_value(t, (0, j, slice(None), slice(None)), NAN)
        out, lse = run(q, k, v, s, **mask)
        sees = visible(S, S, **mask)[:, j]
        rows = sees[None, :, None, None].expand(1, S, H, 1)
        assert (~sees).sum() > 50
        assert torch.isnan(as_float(out))[rows.expand_as(out)].all()
        assert_unchanged_except(out, out0, rows, f"out {mask}")
        assert_unchanged_except(lse, lse0, rows[..., 0].transpose(1, 2), f"lse {mask}")
        check_vs_oracle(out, lse, q, k, v, s, **mask)


def test_empty_rows_ignore_nan():
    """Rows that see no key are 0 / -inf even when their own q is NaN and the
    keys other rows see are NaN."""
    sq, sk = 100, 40  # causal: rows < 60 see nothing
    q, k, v, s = dense_inputs(1, sq, sk, H, HKV, D, torch.float32, seed=11)
    q[0, :60] = NAN
    v[0, 0] = NAN
    out, lse = run(q, k, v, s, causal=True)
    assert (out[0, :60] == 0).all() and torch.isneginf(lse[0, :, :60]).all()
    assert torch.isnan(out[0, 60:]).all() and torch.isfinite(lse[0, :, 60:]).all()


def test_varlen_nan_stays_in_its_sequence():
    """varlen: NaN in every k and v of sequence 1 makes exactly sequence 1's
    rows NaN; the sequences before and after (whose keys are next to it in
    the packed tensor) are bitwise unchanged. Also causal with Sq > Sk rows."""
    lens_q, lens_k = [70, 130, 0, 90], [100, 64, 20, 50]
    for causal in (False, True):
        q, k, v, cq, ck, s = varlen_inputs(lens_q, lens_k, H, HKV, D, FP8, seed=12)
        out0, lse0 = torch_fmha.varlen_attention(q, k, v, cq, ck, causal=causal, return_lse=True, **s)
        k0, k1 = int(ck[1]), int(ck[2])
        for t in (k, v):
            set_value(t, (slice(k0, k1), slice(None), slice(None)), NAN)
        out, lse = torch_fmha.varlen_attention(q, k, v, cq, ck, causal=causal, return_lse=True, **s)
        q0, q1 = int(cq[1]), int(cq[2])
        rows = torch.zeros(out.size(0), 1, 1, dtype=torch.bool)
        sees = visible(q1 - q0, k1 - k0, causal=causal).any(-1)
        rows[q0:q1, 0, 0] = sees
        assert_same_pattern(as_float(out), torch.where(rows, NAN, 0.0).expand_as(out), "out")
        assert_unchanged_except(out, out0, rows, "out")
        assert_unchanged_except(lse, lse0, rows[:, 0].T, "lse")
        ref, ref_lse = varlen_attention_ref(q, k, v, cq, ck, causal=causal, **s)
        assert_matches(as_float(out), ref, "out vs oracle", ATOL[FP8], RTOL[FP8])
        assert_matches(lse, ref_lse, "lse vs oracle", 1e-4)


def test_varlen_nan_in_one_q_and_descale():
    """varlen: a NaN q element hits one row; a NaN per-sequence q_descale hits
    exactly that sequence and kv group."""
    lens = [70, 130, 90]
    q, k, v, cq, ck, s = varlen_inputs(lens, lens, H, HKV, D, FP8, seed=13)
    out0, lse0 = torch_fmha.varlen_attention(q, k, v, cq, ck, causal=True, return_lse=True, **s)
    set_value(q, (75, 2, 0), NAN)
    s["q_descale"] = s["q_descale"].clone()
    s["q_descale"][2, 1] = NAN
    out, lse = torch_fmha.varlen_attention(q, k, v, cq, ck, causal=True, return_lse=True, **s)
    rows = torch.zeros(out.size(0), H, 1, dtype=torch.bool)
    rows[75, 2] = True
    rows[int(cq[2]):, group_heads(H, HKV, 1)] = True
    assert_same_pattern(as_float(out), torch.where(rows, NAN, 0.0).expand_as(out), "out")
    assert_same_pattern(lse, torch.where(rows[..., 0].T, NAN, 0.0), "lse")
    assert_unchanged_except(out, out0, rows, "out")
    ref, ref_lse = varlen_attention_ref(q, k, v, cq, ck, causal=True, **s)
    assert_matches(as_float(out), ref, "out vs oracle", ATOL[FP8], RTOL[FP8])
    assert_matches(lse, ref_lse, "lse vs oracle", 1e-4)


def test_zero_q_descale_is_uniform():
    """q_descale = 0: every visible score is 0, out = mean of the visible v,
    lse = log(#visible); masked keys stay out (never 0 * -inf = NaN)."""
    q, k, v, s = dense_inputs(1, 100, 100, 2, 1, D, FP8, seed=14)
    s["q_descale"] = torch.zeros_like(s["q_descale"])
    out, lse = run(q, k, v, s, causal=True)
    vd = v.double() * s["v_descale"].double()[:, None, :, None]
    want = vd.cumsum(1) / torch.arange(1, 101, dtype=torch.float64)[None, :, None, None]
    assert_matches(out.double(), want.expand(1, 100, 2, D), "out", 1e-3, 8e-3)
    assert (lse.double() - torch.arange(1, 101).double().log()).abs().max() < 1e-5
