"""Paged KV cache, seqused_k, logit softcap and attention sinks on the CPU
kernels (issue 14), against the float64 oracle (tests/reference.py).

Inputs live in NaN-filled buffers: the pools' unused pages, the unused rows of
each sequence's last page, the padding heads and rows of every view, the slots
past seqused_k, and page_table entries past a sequence's pages hold NaN or
garbage ids (-1, ids past the pool), so a read of anything a row must not see
shows up as NaN or an error. Pages of a sequence are scattered over the pool
by a random permutation.

Dense == varlen == paged: on CPU all three run the same per-sequence math
(csrc/ops/cpu_math.cpp) on the same key values, so they are asserted bitwise
equal (measured: equal; a reordering in the math would show up here first).
"""

from __future__ import annotations

import math

import pytest
import torch

import torch_fmha
from inputs import FP8, dense_inputs, paged_inputs, varlen_inputs
from reference import (assert_close_by_rule, attention_ref, output_as_float64, round_output,
                       varlen_attention_ref)

EPS = {torch.float32: 2e-5, torch.float64: 1e-10, torch.bfloat16: 1e-4, FP8: 1e-4}
PAGE_SIZES = [16, 32, 64, 128, 256]


def _sinks(h, kind, seed=0):
    """[H] float32 sinks: -inf, 0, large positive, or mixed per head."""
    if kind == "-inf":
        return torch.full((h,), -math.inf)
    if kind == "0":
        return torch.zeros(h)
    if kind == "large":
        return torch.full((h,), 30.0)  # dominates every row: out ~ 0, lse ~ sink
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(h, generator=g) * 2
    s[0] = -math.inf
    return s


def _check(out, lse, ref, ref_lse, q_dtype, out_scale=None):
    emul = round_output(ref, out.dtype, out_scale)
    stats = assert_close_by_rule(output_as_float64(out, out_scale), ref, emul, eps=EPS.get(q_dtype, 1e-4))
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse)), "lse inf pattern differs"
    assert not torch.isnan(lse).any()
    finite = torch.isfinite(ref_lse)
    if finite.any():
        assert (lse.double()[finite] - ref_lse[finite]).abs().max() < 1e-4
    return stats


def _paged_call(q, kp, vp, cu_q, used, table, scales, **kw):
    return torch_fmha.varlen_attention(q, kp, vp, cu_q, None, seqused_k=used, page_table=table,
                                       return_lse=True, **scales, **kw)


# ---------------------------------------------------------------------------------------------
# Paged KV
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_paged_lengths_vs_oracle(page_size):
    # seqused_k of 0, 1, page-1, page, page+1 and long (several pages), one batch.
    lens_k = [0, 1, page_size - 1, page_size, page_size + 1, 3 * page_size + 5]
    lens_q = [3, 1, 7, page_size, 2, 9]
    q, kp, vp, cu_q, used, table, s, packed = paged_inputs(lens_q, lens_k, 4, 2, 64, FP8, page_size,
                                                            seed=page_size)
    for causal in (False, True):
        out, lse = _paged_call(q, kp, vp, cu_q, used, table, s, causal=causal)
        ref, ref_lse = varlen_attention_ref(q, kp, vp, cu_q, None, seqused_k=used, page_table=table,
                                            causal=causal, **s)
        _check(out, lse, ref, ref_lse, FP8)
        # The same problem without pages: bitwise equal.
        k, v, cu_k = packed
        out2, lse2 = torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, causal=causal, return_lse=True, **s)
        assert torch.equal(out, out2) and torch.equal(lse, lse2)


@pytest.mark.parametrize("d,hkv", [(64, 8), (128, 4), (256, 1)])  # GQA 1, 2, 8 with H = 8
def test_paged_head_dims_gqa_softcap_sinks_window(d, hkv):
    lens_q, lens_k = [5, 40, 1], [70, 40, 33]
    q, kp, vp, cu_q, used, table, s, _ = paged_inputs(lens_q, lens_k, 8, hkv, d, FP8, 32, seed=d + hkv)
    sinks = _sinks(8, "mixed", seed=d)
    kw = dict(softcap=20.0, sinks=sinks, window_size=(17, 0))
    out, lse = _paged_call(q, kp, vp, cu_q, used, table, s, **kw)
    ref, ref_lse = varlen_attention_ref(q, kp, vp, cu_q, None, seqused_k=used, page_table=table, **s, **kw)
    _check(out, lse, ref, ref_lse, FP8)


def test_paged_fp8_output_and_bf16_inputs():
    lens_q, lens_k = [4, 30], [50, 30]
    q, kp, vp, cu_q, used, table, s, _ = paged_inputs(lens_q, lens_k, 4, 2, 128, FP8, 16, seed=3)
    out_scale = torch.tensor([0.01])
    out, lse = _paged_call(q, kp, vp, cu_q, used, table, s, causal=True, out_dtype=FP8, out_scale=out_scale)
    ref, ref_lse = varlen_attention_ref(q, kp, vp, cu_q, None, seqused_k=used, page_table=table, causal=True, **s)
    _check(out, lse, ref, ref_lse, FP8, out_scale)
    q, kp, vp, cu_q, used, table, s, _ = paged_inputs(lens_q, lens_k, 4, 2, 128, torch.bfloat16, 64, seed=4)
    out, lse = _paged_call(q, kp, vp, cu_q, used, table, s, softcap=50.0)
    ref, ref_lse = varlen_attention_ref(q, kp, vp, cu_q, None, seqused_k=used, page_table=table, softcap=50.0)
    _check(out, lse, ref, ref_lse, torch.bfloat16)


def test_pages_are_scattered_and_garbage_is_never_read():
    q, kp, vp, cu_q, used, table, s, _ = paged_inputs([8, 8], [100, 37], 2, 1, 64, FP8, 16, seed=9)
    read = [table[b, :-(-int(n) // 16)].tolist() for b, n in enumerate(used)]
    assert read[0] != sorted(read[0]) or read[0][0] != 0, "pages of a sequence are not scattered"
    assert (table == -1).any() and (table >= kp.size(0)).any(), "no garbage entries to ignore"
    assert torch.isnan(kp.float()).any(), "no NaN-poisoned pool rows"
    out, lse = _paged_call(q, kp, vp, cu_q, used, table, s)
    assert torch.isfinite(out.float()).all() and torch.isfinite(lse).all()
    # Moving the pages elsewhere in the pool (another permutation) changes nothing.
    perm = torch.randperm(kp.size(0), generator=torch.Generator().manual_seed(1))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    table2 = torch.where((table >= 0) & (table < kp.size(0)), inv[table.clamp(0, kp.size(0) - 1).long()].int(),
                         table)
    kp2, vp2 = torch.empty_like(kp), torch.empty_like(vp)
    kp2[inv], vp2[inv] = kp, vp
    out2, lse2 = _paged_call(q, kp2, vp2, cu_q, used, table2, s)
    assert torch.equal(out, out2) and torch.equal(lse, lse2)


def test_seqused_k_without_pages():
    # Slots 5 NaN keys longer than the keys used: the NaN tail must never be read.
    lens_q, lens_k = [3, 0, 20, 6], [10, 4, 0, 33]
    q, _, _, cu_q, used, _, s, (k_slack, v_slack, cu_slack) = paged_inputs(
        lens_q, lens_k, 4, 2, 64, FP8, 16, seed=5, slack_k=5)
    _, k, v, _, cu_k, _ = varlen_inputs(lens_q, lens_k, 4, 2, 64, FP8, seed=5)
    for kw in (dict(causal=True), dict(window_size=(4, 2), softcap=20.0, sinks=_sinks(4, "mixed"))):
        out, lse = torch_fmha.varlen_attention(q, k_slack, v_slack, cu_q, cu_slack, seqused_k=used,
                                               return_lse=True, **s, **kw)
        ref, ref_lse = varlen_attention_ref(q, k_slack, v_slack, cu_q, cu_slack, seqused_k=used, **s, **kw)
        _check(out, lse, ref, ref_lse, FP8)
        want, want_lse = torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, return_lse=True, **s, **kw)
        assert torch.equal(out, want) and torch.equal(lse, want_lse)


# ---------------------------------------------------------------------------------------------
# softcap and sinks, dense and varlen
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("softcap", [20.0, 50.0])
@pytest.mark.parametrize("d,hkv", [(64, 4), (128, 2), (256, 1)])
def test_softcap_vs_oracle(softcap, d, hkv):
    # softmax_scale 1: raw scores of ~sqrt(D) spread, so the cap bends the large ones.
    q, k, v, s = dense_inputs(2, 33, 47, 4, hkv, d, FP8, seed=d)
    for kw in (dict(), dict(causal=True), dict(window_size=(9, 3))):
        out, lse = torch_fmha.attention(q, k, v, softcap=softcap, softmax_scale=1.0, return_lse=True, **s, **kw)
        ref, ref_lse = attention_ref(q, k, v, softcap=softcap, softmax_scale=1.0, **s, **kw)
        _check(out, lse, ref, ref_lse, FP8)
    # The cap is really applied: without it the answer differs.
    plain, _ = attention_ref(q, k, v, softmax_scale=1.0, **s)
    capped, _ = attention_ref(q, k, v, softcap=softcap, softmax_scale=1.0, **s)
    assert (plain - capped).abs().max() > 1e-2


@pytest.mark.parametrize("kind", ["-inf", "0", "large", "mixed"])
def test_sinks_vs_oracle(kind):
    q, k, v, s = dense_inputs(2, 20, 31, 8, 2, 128, FP8, seed=11)
    sinks = _sinks(8, kind, seed=2)
    for kw in (dict(), dict(causal=True, softcap=20.0), dict(window_size=(3, 0))):
        out, lse = torch_fmha.attention(q, k, v, sinks=sinks, return_lse=True, **s, **kw)
        ref, ref_lse = attention_ref(q, k, v, sinks=sinks, **s, **kw)
        _check(out, lse, ref, ref_lse, FP8)
    if kind == "-inf":  # a -inf sink is no sink, bitwise
        out, lse = torch_fmha.attention(q, k, v, sinks=sinks, return_lse=True, **s)
        out0, lse0 = torch_fmha.attention(q, k, v, return_lse=True, **s)
        assert torch.equal(out, out0) and torch.equal(lse, lse0)
    if kind == "large":  # the sink takes (almost) all the weight
        assert out.float().abs().max() < 1e-3 and torch.allclose(lse, sinks[None, :, None].expand_as(lse))


def test_rows_that_see_no_key_give_the_sink_as_lse():
    sinks = torch.tensor([0.5, -2.0, -math.inf, 7.0])
    # Sk = 0 (dense), and rows a window excludes everything from.
    q, k, v, s = dense_inputs(1, 6, 0, 4, 2, 64, torch.float32, poison=False)
    out, lse = torch_fmha.attention(q, k, v, sinks=sinks, return_lse=True)
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.equal(lse, sinks[None, :, None].expand(1, 4, 6))
    q, k, v, s = dense_inputs(1, 6, 3, 4, 2, 64, torch.float32)
    out, lse = torch_fmha.attention(q, k, v, sinks=sinks, window_size=(0, 0), causal=True, return_lse=True)
    ref, ref_lse = attention_ref(q, k, v, sinks=sinks, causal=True, window_size=(0, 0))
    # Sq > Sk bottom-right: rows 0..2 see no key.
    assert torch.equal(out[:, :3], torch.zeros_like(out[:, :3]))
    assert torch.equal(lse[..., :3], sinks[None, :, None].expand(1, 4, 3))
    # float32 LSE against the float64 oracle: float32's tolerances. float64's (about 1.5e-7
    # here) failed on an AMD EPYC machine with an error of 1.75e-7, all of it the float32
    # score of a row that sees one key (its LSE is that score).
    torch.testing.assert_close(lse, ref_lse.to(lse.dtype))
    # Varlen: an empty key sequence and a paged sequence with seqused_k = 0.
    q, kp, vp, cu_q, used, table, s, _ = paged_inputs([4, 3], [0, 20], 4, 2, 64, FP8, 16)
    out, lse = _paged_call(q, kp, vp, cu_q, used, table, s, sinks=sinks)
    assert torch.equal(out[:4].float(), torch.zeros(4, 4, 64))
    assert torch.equal(lse[:, :4], sinks[:, None].expand(4, 4))


def test_dense_equals_varlen_equals_paged_with_all_features():
    b, sq, sk, h, hkv, d = 3, 24, 64, 8, 2, 128
    q, k, v, s = dense_inputs(b, sq, sk, h, hkv, d, FP8, poison=False, seed=21)
    kw = dict(causal=True, window_size=(40, 0), softcap=30.0, sinks=_sinks(h, "mixed"))
    dense, dense_lse = torch_fmha.attention(q, k, v, return_lse=True, **s, **kw)
    cu_q = torch.arange(0, b * sq + 1, sq, dtype=torch.int32)
    cu_k = torch.arange(0, b * sk + 1, sk, dtype=torch.int32)
    packed, packed_lse = torch_fmha.varlen_attention(q.reshape(-1, h, d), k.reshape(-1, hkv, d),
                                                     v.reshape(-1, hkv, d), cu_q, cu_k, return_lse=True,
                                                     **s, **kw)
    # The same keys in 16-key pages, scattered.
    order = torch.randperm(b * sk // 16, generator=torch.Generator().manual_seed(0))
    pool_k = torch.empty(b * sk // 16, 16, hkv, d, dtype=FP8)
    pool_v = torch.empty_like(pool_k)
    pool_k[order] = k.reshape(-1, 16, hkv, d)
    pool_v[order] = v.reshape(-1, 16, hkv, d)
    table = order.view(b, sk // 16).int()
    used = torch.full((b,), sk, dtype=torch.int32)
    paged, paged_lse = torch_fmha.varlen_attention(q.reshape(-1, h, d), pool_k, pool_v, cu_q, None,
                                                   seqused_k=used, page_table=table, return_lse=True,
                                                   **s, **kw)
    assert torch.equal(packed.view(dense.shape), dense) and torch.equal(paged, packed)
    assert torch.equal(packed_lse, dense_lse.permute(1, 0, 2).reshape(h, -1)) and torch.equal(paged_lse, packed_lse)


def test_softcap_infinite_scores_are_capped():
    # tanh(+-inf) = +-1: an infinite q.k becomes +-softcap, finite, on CPU as in the oracle.
    q, k, v, _ = dense_inputs(1, 4, 5, 2, 1, 64, torch.float32, poison=False)
    q = q.clone()
    q[0, 1, 0, 0] = math.inf
    k = k.clone()
    k[0, :, 0, 0] = 1.0
    out, lse = torch_fmha.attention(q, k, v, softcap=20.0, return_lse=True)
    ref, ref_lse = attention_ref(q, k, v, softcap=20.0)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse.double(), ref_lse, atol=1e-5, rtol=1e-5)


def test_softcap_with_infinite_descale_is_nan_only_where_q_dot_k_is_zero():
    """docs/DESIGN.md 1.6 rule 5: with an infinite k descale each score is q.k * inf, +-inf where
    q.k != 0 (capped to +-softcap, finite) and NaN where q.k == 0 (0 * inf), which makes the row
    NaN (rule 2); a row that sees no key stays out = 0, lse = the sink (rule 1). Integer data, so
    every q.k is exact (tests/gpu/test_serving_kernel_sm90.py: the same case CUDA == CPU)."""
    g = torch.Generator().manual_seed(3)
    q = torch.randint(1, 5, (1, 6, 2, 64), generator=g).float()
    q[0, 4, 1] = 0.0  # sees keys 0, 1: q.k = 0 for each
    q[0, 0, 1] = 0.0  # sees no key (Sq 6 > Sk 3, causal: rows 0..2)
    sign = torch.tensor([1.0, -1.0, 1.0])[None, :, None, None]
    k = torch.randint(1, 5, (1, 3, 1, 64), generator=g).float() * sign
    v = torch.randn(1, 3, 1, 64, generator=g)
    q, k, v = q.to(FP8), k.to(FP8), v.to(FP8)
    s = dict(q_descale=torch.tensor([0.01]), k_descale=torch.tensor([math.inf]), v_descale=torch.tensor([1.0]))
    kw = dict(softcap=20.0, causal=True, sinks=torch.tensor([0.5, -1.0]))
    out, lse = torch_fmha.attention(q, k, v, return_lse=True, **s, **kw)
    ref, ref_lse = attention_ref(q, k, v, **s, **kw)
    assert torch.isnan(out.float()).any(-1).nonzero().tolist() == [[0, 4, 1]]
    assert torch.isnan(out[0, 4, 1].float()).all() and torch.isnan(lse).nonzero().tolist() == [[0, 1, 4]]
    assert torch.equal(out[0, :3].float(), torch.zeros(3, 2, 64)) and lse[0, 1, 0] == -1.0
    fin = ~torch.isnan(ref)
    assert torch.equal(fin, ~torch.isnan(out.float()))
    torch.testing.assert_close(out.double()[fin], ref[fin], atol=1e-2, rtol=1e-2)  # bf16 output


def test_sink_nan_rules():
    """docs/DESIGN.md 1.6 rule 5: the sink is one more visible score with a zero value."""
    q, k, v, _ = dense_inputs(1, 6, 4, 4, 2, 64, torch.float32, poison=False)
    sinks = torch.tensor([0.5, math.nan, math.inf, -math.inf])
    kw = dict(window_size=(1, 0), causal=True)  # Sq > Sk: rows 0 and 1 see no key
    out, lse = torch_fmha.attention(q, k, v, sinks=sinks, return_lse=True, **kw)
    ref, ref_lse = attention_ref(q, k, v, sinks=sinks, **kw)
    assert torch.equal(torch.isnan(out), torch.isnan(ref)) and torch.equal(torch.isnan(lse), torch.isnan(ref_lse))
    # Empty rows: out = 0 and lse = the sink, whatever it is.
    assert torch.equal(out[:, :2], torch.zeros_like(out[:, :2]))
    assert torch.equal(lse[0, :, :2].isnan(), torch.tensor([[False] * 2, [True] * 2, [False] * 2, [False] * 2]))
    assert lse[0, 2, 0] == math.inf and lse[0, 3, 0] == -math.inf and lse[0, 0, 0] == 0.5
    # Non-empty rows: a NaN or +inf sink makes the head's rows NaN; finite / -inf sinks do not.
    assert torch.isnan(out[0, 2:, 1:3]).all() and torch.isnan(lse[0, 1:3, 2:]).all()
    assert torch.isfinite(out[0, 2:, [0, 3]]).all() and torch.isfinite(lse[0, [0, 3], 2:]).all()
    # A row whose data scores are all -inf: defined with a finite sink (out = 0, lse = sink),
    # undefined (NaN) with a -inf sink, as without sinks.
    q2, k2 = q.clone(), k.clone()
    q2[0, :, :, 0], k2[0, :, :, 0] = math.inf, -1.0
    out, lse = torch_fmha.attention(q2, k2, v, sinks=torch.tensor([0.5, 0.5, -math.inf, -math.inf]), return_lse=True)
    assert torch.equal(out[0, :, :2], torch.zeros_like(out[0, :, :2])) and (lse[0, :2] == 0.5).all()
    assert torch.isnan(out[0, :, 2:]).all() and torch.isnan(lse[0, 2:]).all()


# ---------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------

def _loss_terms(out, lse):
    return out, torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)


@pytest.mark.parametrize("kw", [dict(softcap=2.0), dict(sinks="y"), dict(softcap=1.5, sinks="y", causal=True)],
                         ids=["softcap", "sinks", "both_causal"])
def test_gradcheck_dense(kw):
    g = torch.Generator().manual_seed(7)
    q = torch.randn(2, 5, 4, 64, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(2, 6, 2, 64, dtype=torch.float64, generator=g, requires_grad=True)
    v = torch.randn(2, 6, 2, 64, dtype=torch.float64, generator=g, requires_grad=True)
    sinks = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)
    inputs = (q, k, v, sinks) if "sinks" in kw else (q, k, v)
    opts = {n: x for n, x in kw.items() if n != "sinks"}

    def f(q, k, v, sinks=None):
        return _loss_terms(*torch_fmha.attention(q, k, v, sinks=sinks, softmax_scale=0.5, return_lse=True,
                                                 **opts))

    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)


def test_gradcheck_varlen_sinks_softcap_empty_rows():
    g = torch.Generator().manual_seed(8)
    cu_q = torch.tensor([0, 3, 5, 9], dtype=torch.int32)
    cu_k = torch.tensor([0, 4, 4, 7], dtype=torch.int32)  # sequence 1 sees no key: lse = sink
    q = torch.randn(9, 4, 64, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(7, 2, 64, dtype=torch.float64, generator=g, requires_grad=True)
    v = torch.randn(7, 2, 64, dtype=torch.float64, generator=g, requires_grad=True)
    sinks = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)

    def f(q, k, v, sinks):
        return _loss_terms(*torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, causal=True, softcap=3.0,
                                                        sinks=sinks, softmax_scale=0.4, return_lse=True))

    assert torch.autograd.gradcheck(f, (q, k, v, sinks), fast_mode=True)


def _softmax_with_sink(q, k, v, sinks, softcap):
    """Plain differentiable float64 attention with a causal mask and a sink column
    (the reference oracle works in place and has no autograd)."""
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.size(-1))
    s = torch.tanh(s / softcap) * softcap
    sq, sk = s.shape[-2:]
    s = s.masked_fill(~torch.ones(sq, sk, dtype=torch.bool).tril(sk - sq), -math.inf)
    s = torch.cat([s, sinks[None, :, None, None].expand(*s.shape[:-1], 1)], -1)
    lse = torch.logsumexp(s, -1)
    p = torch.exp(s - lse[..., None])[..., :-1]
    return torch.einsum("bhqk,bkhd->bqhd", p, v), lse


def test_sinks_gradient_matches_autograd_of_plain_math():
    # An independent check of dsinks (and dq with softcap): autograd through plain math.
    g = torch.Generator().manual_seed(9)
    q, k, v = (torch.randn(1, 7, 4, 64, dtype=torch.float64, generator=g) for _ in range(3))
    sinks = torch.randn(4, dtype=torch.float64, generator=g)
    grads = []
    for fn in (lambda q, s: torch_fmha.attention(q, k, v, sinks=s, softcap=5.0, causal=True, return_lse=True),
               lambda q, s: _softmax_with_sink(q, k, v, s, 5.0)):
        q1, s1 = q.clone().requires_grad_(True), sinks.clone().requires_grad_(True)
        out, lse = fn(q1, s1)
        (out.square().sum() + lse.sum()).backward()
        grads.append((q1.grad, s1.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])
    assert grads[0][1].abs().min() > 0


def test_no_backward_through_pages():
    q, kp, vp, cu_q, used, table, s, _ = paged_inputs([4], [20], 2, 1, 64, torch.float32, 16)
    q.requires_grad_(True)
    out = torch_fmha.varlen_attention(q, kp, vp, cu_q, None, seqused_k=used, page_table=table)
    with pytest.raises(RuntimeError, match="there is no backward through seqused_k or page_table"):
        out.sum().backward()
    with torch.no_grad():
        assert torch_fmha.varlen_attention(q, kp, vp, cu_q, None, seqused_k=used, page_table=table).grad_fn is None


# ---------------------------------------------------------------------------------------------
# Value errors (CPU reads the values; CUDA checks them in debug builds only)
# ---------------------------------------------------------------------------------------------

def _message(fn) -> str:
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value).splitlines()[0]


def test_bad_page_ids_and_seqused_values():
    q, kp, vp, cu_q, used, table, s, (k, v, cu_k) = paged_inputs([2, 2], [20, 40], 2, 1, 64, FP8, 16)
    bad = table.clone()
    bad[1, 2] = -1
    assert _message(lambda: _paged_call(q, kp, vp, cu_q, used, bad, s)) == (
        "torch_fmha.varlen_fwd: page_table[1, 2] = -1 is not a page of the pool: sequence 1 reads 3 pages "
        f"and page ids must be in [0, num_pages) = [0, {kp.size(0)})")
    bad[1, 2] = kp.size(0)
    assert f"page_table[1, 2] = {kp.size(0)} is not a page of the pool" in _message(
        lambda: _paged_call(q, kp, vp, cu_q, used, bad, s))
    too_long = torch.tensor([20, 16 * table.size(1) + 1], dtype=torch.int32)
    assert _message(lambda: _paged_call(q, kp, vp, cu_q, too_long, table, s)) == (
        f"torch_fmha.varlen_fwd: seqused_k[1] = {16 * table.size(1) + 1} needs {table.size(1) + 1} pages of 16 "
        f"keys but page_table has {table.size(1)} columns")
    negative = torch.tensor([20, -1], dtype=torch.int32)
    assert _message(lambda: _paged_call(q, kp, vp, cu_q, negative, table, s)) == (
        "torch_fmha.varlen_fwd: seqused_k[1] = -1 must be >= 0")
    over = torch.tensor([21, 40], dtype=torch.int32)
    assert _message(lambda: torch_fmha.varlen_attention(q, k, v, cu_q, cu_k, seqused_k=over, **s)) == (
        "torch_fmha.varlen_fwd: seqused_k[0] = 21 exceeds the 20 keys of sequence 0 "
        "(cu_seqlens_k[1] - cu_seqlens_k[0])")
