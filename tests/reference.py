"""The float64 oracle: attention on the dequantized inputs.

Independent of the C++ code: plain PyTorch float64 math with the mask written
out from docs/DESIGN.md section 1. Also the tolerance rule of the project
(FlashAttention's): ``max|out - ref| <= 2 * max|emul - ref| + eps`` where
``emul`` repeats the kernel's rounding steps.
"""

from __future__ import annotations

import math

import torch

FP8 = torch.float8_e4m3fn


def dequantize(x: torch.Tensor, descale, heads_axis: int) -> torch.Tensor:
    """x (any dtype) -> float64, times a [1] or [B, Hkv] descale."""
    x = x.double()
    if descale is None:
        return x
    d = descale.double()
    if d.numel() == 1:
        return x * d.reshape(())
    # [B, Hkv] -> broadcast over [B, S, Hkv, D]
    return x * d[:, None, :, None]


def _expand_groups(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, S, Hkv, D] -> [B, S, H, D] (each kv head serves H/Hkv query heads)."""
    return x.repeat_interleave(heads // x.size(2), dim=2)


def visible(sq: int, sk: int, window_left: int, window_right: int, device=None) -> torch.Tensor:
    """[Sq, Sk] bool: key j visible from query i (bottom-right aligned)."""
    i = torch.arange(sq, device=device)[:, None]
    j = torch.arange(sk, device=device)[None, :]
    diag = i + (sk - sq)
    ok = torch.ones(sq, sk, dtype=torch.bool, device=device)
    if window_left >= 0:
        ok &= j >= diag - window_left
    if window_right >= 0:
        ok &= j <= diag + window_right
    return ok


def _per_query_head(descale, b: int, h: int, hkv: int) -> torch.Tensor:
    """A [1] or [B, Hkv] descale (or None) -> float64 [B, H, 1, 1]."""
    if descale is None:
        return torch.ones(b, h, 1, 1, dtype=torch.float64)
    d = descale.double().cpu()
    d = d.reshape(1, 1).expand(b, hkv) if d.numel() == 1 else d
    return d.repeat_interleave(h // hkv, dim=1)[:, :, None, None]


def _weighted_values(p, v, ok):
    """sum_j p[b, h, i, j] * v[b, j, h, d] over the keys row i sees (ok[i, j]),
    in IEEE float64: a NaN v, or an infinite v where p = 0, gives NaN; a key
    the row does not see contributes nothing, even where v is NaN there
    (a plain einsum would give 0 * NaN = NaN). v: [B, Sk, H, D] float64."""
    finite = torch.isfinite(v)
    zero = torch.zeros_like(v)
    out = torch.einsum("bhqk,bkhd->bqhd", p, torch.where(finite, v, zero))
    bad_keys = (~finite).any(-1).nonzero().tolist()  # (b, j, h) with a non-finite v
    assert len(bad_keys) <= 20_000, "oracle: too many keys with non-finite v for the per-key loop"
    nonfinite = torch.where(finite, zero, v)
    for b, j, h in bad_keys:  # the rows that see key j, IEEE arithmetic (finite columns add 0)
        rows = ok[:, j]
        out[b, rows, h] = out[b, rows, h] + p[b, h, rows, j, None] * nonfinite[b, j, h]
    return out


def _sink_lse(sinks, b: int, h: int, rows: int, dev) -> torch.Tensor:
    """The lse of rows that see no key: -inf, or the head's sink. -> [B, H, rows] float64."""
    if sinks is None:
        return torch.full((b, h, rows), -math.inf, dtype=torch.float64, device=dev)
    return sinks.double().to(dev)[None, :, None].expand(b, h, rows).clone()


def attention_ref(q, k, v, *, softmax_scale=None, causal=False, window_size=(-1, -1),
                  q_descale=None, k_descale=None, v_descale=None, softcap=0.0, sinks=None):
    """Dense reference. q [B, Sq, H, D], k/v [B, Sk, Hkv, D] ->
    (out float64 [B, Sq, H, D], lse float64 [B, H, Sq]).

    The descales act as the API documents: the scores are
    ``(q . k) * softmax_scale * q_descale * k_descale`` and the output is
    multiplied by ``v_descale`` (the same as dequantizing first, up to float64
    rounding, for finite descales).

    NaN / Inf semantics (docs/DESIGN.md), over the keys a row sees (masked
    keys and keys past the sequence are never read):
      * a row that sees no key: out = 0, lse = -inf, whatever any input holds;
      * a row with a NaN or +inf score, or whose scores are all -inf (data, not
        mask): the softmax is undefined, out = NaN and lse = NaN;
      * otherwise p = softmax (0 where a score is -inf) and
        out[i, d] = sum_j p[i, j] v[j, d] * v_descale in IEEE arithmetic, so a
        NaN in v reaches out[i, d] of the rows that see key j; lse is finite.
    This is float64 SDPA (math backend) on the visible keys, except that
    SDPA's safe softmax makes an all -inf row 0 and torch.logsumexp makes a
    +inf row's lse +inf, where both are NaN here.

    softcap > 0: the scores become ``softcap * tanh(s / softcap)`` (an infinite
    score is capped to +-softcap; NaN stays NaN). sinks [H]: one more logit
    per head in every row's softmax with no value: it joins the max and the
    denominator, ``lse = log(sum_j e^s_j + e^sink)``; it is not soft-capped.
    A row that sees no key gets ``lse = sink`` (out = 0).
    """
    b, sq, h, d = q.shape
    sk, hkv = k.size(1), k.size(2)
    scale = 1.0 / math.sqrt(d) if softmax_scale is None else softmax_scale
    left, right = window_size
    if causal:
        right = 0
    dev = q.device
    f64 = dict(dtype=torch.float64, device=dev)
    if sk == 0:
        return torch.zeros(b, sq, h, d, **f64), _sink_lse(sinks, b, h, sq, dev)
    score_scale = (_per_query_head(q_descale, b, h, hkv) * _per_query_head(k_descale, b, h, hkv)
                   * scale).to(dev)  # [B, H, 1, 1]
    out_scale = _per_query_head(v_descale, b, h, hkv).to(dev).permute(0, 2, 1, 3)  # [B, 1, H, 1]
    qf, kf, vf = q.double(), _expand_groups(k.double(), h), _expand_groups(v.double(), h)
    ok = visible(sq, sk, left, right, dev)  # [Sq, Sk]
    empty = ~ok.any(-1)  # [Sq]: rows that see no key (by the mask, never by the data)
    s = torch.einsum("bqhd,bkhd->bhqk", qf, kf) * score_scale  # [B, H, Sq, Sk]
    if softcap:
        s = torch.tanh(s / softcap) * softcap
    s.masked_fill_(~ok, -math.inf)
    m = s.amax(-1, keepdim=True)  # NaN if any visible score is NaN
    sink = None if sinks is None else sinks.double().to(dev)[None, :, None, None]  # [1, H, 1, 1]
    if sink is not None:
        m = torch.maximum(m, sink)  # the sink is one more score of the row (NaN propagates)
    defined = torch.isfinite(m)  # False: NaN, +inf, all -inf (and empty rows)
    shift = torch.where(defined, m, torch.zeros_like(m))
    s.sub_(shift).exp_()  # s is now e = exp(s - m)
    denom = s.sum(-1, keepdim=True)
    if sink is not None:
        denom = denom + torch.exp(sink - shift)
    lse = torch.where(defined, m + denom.log(), torch.full_like(m, math.nan)).squeeze(-1)
    lse = torch.where(empty[None, None, :], _sink_lse(sinks, b, h, sq, dev), lse)
    p = s.div_(denom).masked_fill_(~defined, math.nan).masked_fill_(empty[None, None, :, None], 0.0)
    out = _weighted_values(p, vf, ok) * out_scale
    out.masked_fill_(empty[None, :, None, None], 0.0)
    return out, lse


def sequence_keys(x, b: int, cu_seqlens_k=None, seqused_k=None, page_table=None) -> torch.Tensor:
    """The keys (or values) of sequence b, [S_b, Hkv, D]: rows cu_seqlens_k[b]:
    of a packed x (seqused_k[b] of them when given, else up to cu_seqlens_k[b+1]),
    or, with page_table, key j = x[page_table[b, j // page_size], j % page_size]
    for j < seqused_k[b], x being the page pool [num_pages, page_size, Hkv, D]."""
    if page_table is not None:
        j = torch.arange(int(seqused_k[b]))
        pages = page_table[b, j // x.size(1)].long()  # only the entries the sequence reads
        return x[pages.to(x.device), (j % x.size(1)).to(x.device)]
    k0 = int(cu_seqlens_k[b])
    k1 = k0 + int(seqused_k[b]) if seqused_k is not None else int(cu_seqlens_k[b + 1])
    return x[k0:k1]


def sequence_key_args(cu_k=None, seqused_k=None, page_table=None) -> dict:
    """sequence_keys' keyword arguments (host copies) from the op's tensors."""
    return dict(cu_seqlens_k=None if cu_k is None else cu_k.tolist(),
                seqused_k=None if seqused_k is None else seqused_k.tolist(),
                page_table=None if page_table is None else page_table.cpu())


def varlen_attention_ref(q, k, v, cu_seqlens_q, cu_seqlens_k=None, *, q_descale=None, k_descale=None,
                         v_descale=None, seqused_k=None, page_table=None, **kw):
    """Packed reference: q [Tq, H, D] -> (out [Tq, H, D], lse [H, Tq]) in float64.
    k / v are packed [Tk, Hkv, D], or page pools with page_table (sequence_keys)."""
    cq = cu_seqlens_q.tolist()
    out = torch.zeros(q.shape, dtype=torch.float64, device=q.device)
    lse = torch.full((q.size(1), q.size(0)), -math.inf, dtype=torch.float64, device=q.device)
    keys = sequence_key_args(cu_seqlens_k, seqused_k, page_table)

    def seq(t, b):  # per-(batch, kv head) scales: keep row b
        return t if t is None or t.numel() == 1 else t[b:b + 1]

    for b in range(len(cq) - 1):
        if cq[b + 1] == cq[b]:
            continue
        o, l = attention_ref(
            q[None, cq[b]:cq[b + 1]], sequence_keys(k, b, **keys)[None], sequence_keys(v, b, **keys)[None],
            q_descale=seq(q_descale, b), k_descale=seq(k_descale, b), v_descale=seq(v_descale, b),
            **kw)
        out[cq[b]:cq[b + 1]] = o[0]
        lse[:, cq[b]:cq[b + 1]] = l[0]
    return out, lse


def round_output(ref_out: torch.Tensor, out_dtype: torch.dtype, out_scale=None) -> torch.Tensor:
    """The reference output after the kernel's last rounding step (to out_dtype)."""
    if out_dtype == FP8:
        s = out_scale.double().reshape(())
        return (ref_out / s).clamp(-448, 448).to(FP8).double() * s
    return ref_out.to(out_dtype).double()


def output_as_float64(out: torch.Tensor, out_scale=None) -> torch.Tensor:
    if out.dtype == FP8:
        return out.double() * out_scale.double().reshape(())
    return out.double()


def assert_close_by_rule(out, ref, emul, *, eps: float, what: str = "out") -> dict:
    """The tolerance rule: max|out-ref| <= 2*max|emul-ref| + eps. Returns errors."""
    assert not torch.isnan(out).any(), f"{what}: NaN in output"
    err = (out - ref).abs().max().item() if out.numel() else 0.0
    emul_err = (emul - ref).abs().max().item() if out.numel() else 0.0
    rmse = (out - ref).pow(2).mean().sqrt().item() if out.numel() else 0.0
    bound = 2 * emul_err + eps
    assert err <= bound, f"{what}: max|out-ref| = {err:.3e} > 2*{emul_err:.3e} + {eps:g} (rmse {rmse:.3e})"
    return {"max_err": err, "emul_err": emul_err, "rmse": rmse}


def kvcache_attention_ref(q, k_cache, v_cache, cache_seqlens, *, page_table=None, cu_seqlens_q=None,
                          q_descale=None, k_descale=None, v_descale=None, **kw):
    """Decode reference (attention_with_kvcache): sequence b attends to keys
    0 .. cache_seqlens[b] - 1 of its cache row ``k_cache[b]`` (or of its pages,
    sequence_keys), masks bottom-right against them. q [B, Sq, H, D] ->
    (out [B, Sq, H, D], lse [B, H, Sq]); packed q [Tq, H, D] with cu_seqlens_q ->
    (out [Tq, H, D], lse [H, Tq]). float64."""
    lens = cache_seqlens.tolist()
    table = None if page_table is None else page_table.cpu()

    def keys(x, b):
        if table is not None:
            return sequence_keys(x, b, seqused_k=lens, page_table=table)
        return x[b, :lens[b]]

    def seq(t, b):  # per-(batch, kv head) scales: keep row b
        return t if t is None or t.numel() == 1 else t[b:b + 1]

    def one(qb, b):
        return attention_ref(qb[None], keys(k_cache, b)[None], keys(v_cache, b)[None], q_descale=seq(q_descale, b),
                             k_descale=seq(k_descale, b), v_descale=seq(v_descale, b), **kw)

    if cu_seqlens_q is None:
        parts = [one(q[b], b) for b in range(q.size(0))]
        if not parts:
            return (torch.zeros(q.shape, dtype=torch.float64, device=q.device),
                    torch.zeros(0, q.size(2), q.size(1), dtype=torch.float64, device=q.device))
        return torch.cat([o for o, _ in parts]), torch.cat([l for _, l in parts])
    cq = cu_seqlens_q.tolist()
    out = torch.zeros(q.shape, dtype=torch.float64, device=q.device)
    lse = torch.full((q.size(1), q.size(0)), -math.inf, dtype=torch.float64, device=q.device)
    for b in range(len(cq) - 1):
        if cq[b + 1] > cq[b]:
            o, l = one(q[cq[b]:cq[b + 1]], b)
            out[cq[b]:cq[b + 1]], lse[:, cq[b]:cq[b + 1]] = o[0], l[0]
    return out, lse
