"""Input factories shared by the tests: random data, NaN-poisoned padding."""

from __future__ import annotations

import math

import torch

import torch_fmha

FP8 = torch.float8_e4m3fn


def poisoned_view(data: torch.Tensor, head_axis: int) -> torch.Tensor:
    """A copy of ``data`` living inside a NaN-filled buffer with every other
    head and extra rows unused, so strides are honoured and padding is NaN."""
    shape = list(data.shape)
    shape[head_axis] *= 2  # interleave a NaN head after each real one
    shape[head_axis - 1] += 3  # NaN rows past the end of the sequence axis
    buf = torch.full(shape, float("nan"), dtype=torch.float32, device=data.device).to(data.dtype)
    idx = [slice(None)] * data.dim()
    idx[head_axis] = slice(0, None, 2)
    idx[head_axis - 1] = slice(0, data.shape[head_axis - 1])
    view = buf[tuple(idx)]
    view.copy_(data)
    return view


# Packed v (csrc/vt_key_order.h): slot (b3 b2 b1 b0) of each 16-key group holds key
# (b1 b3 b2 b0). Written out here from that documented rule, independently of the library.
PACKED_V_SLOT_KEYS = [((j >> 1 & 1) << 3) | ((j >> 3 & 1) << 2) | ((j >> 2 & 1) << 1) | (j & 1)
                      for j in range(16)]


# Its rows: in a whole 32-column chunk, row 32 g + 8 a + 2 b + e holds column 32 g + 8 b + 2 a + e
# (a last, partial chunk keeps its order).
def packed_v_columns(d: int) -> list[int]:
    """The column each row of a packed v with d columns holds."""
    return [r if r // 32 * 32 + 32 > d else r // 32 * 32 + 8 * (r % 8 // 2) + 2 * (r % 32 // 8) + r % 2
            for r in range(d)]


def packed_v(v: torch.Tensor) -> torch.Tensor:
    """v [B, S, Hkv, D] as a packed v [B, Hkv, D, ceil(S / 16), 16] of v's dtype, padding slots zero."""
    b, sk, hkv, d = v.shape
    s16 = -(-sk // 16) * 16
    store = torch.zeros((b, hkv, d, s16), dtype=torch.uint8, device=v.device)
    store[..., :sk] = v.view(torch.uint8)[..., packed_v_columns(d)].permute(0, 2, 3, 1)
    return store.view(b, hkv, d, s16 // 16, 16)[..., PACKED_V_SLOT_KEYS].contiguous().view(v.dtype)


def dense_inputs(b, sq, sk, h, hkv, d, dtype, *, device="cpu", per_head_descale=True,
                 poison=True, seed=0):
    """q [B, Sq, H, D], k/v [B, Sk, Hkv, D] and (for FP8) descales ≠ 1."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(b, sq, h, d, generator=g)
    k = torch.randn(b, sk, hkv, d, generator=g)
    # Different scales per (batch, kv head) so an ignored or misindexed descale fails.
    v = torch.randn(b, sk, hkv, d, generator=g) * torch.linspace(0.5, 3.0, hkv)[None, None, :, None]
    scales = {}
    if dtype == FP8:
        gran = "head" if per_head_descale else "tensor"
        q, scales["q_descale"] = torch_fmha.quantize_fp8(q, gran, group_size=h // hkv)
        k, scales["k_descale"] = torch_fmha.quantize_fp8(k, gran)
        v, scales["v_descale"] = torch_fmha.quantize_fp8(v, gran)
    else:
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    q, k, v = (t.to(device) for t in (q, k, v))
    scales = {n: s.to(device) for n, s in scales.items()}
    if poison:
        q, k, v = poisoned_view(q, 2), poisoned_view(k, 2), poisoned_view(v, 2)
    return q, k, v, scales


def integer_score_inputs(b, sq, sk, h, hkv, d, *, device="cpu", score_std=12.0, seed=0):
    """FP8 q, k holding integers in [-4, 4] (exact in e4m3), v and its descale as
    ``dense_inputs``; NaN-poisoned views. Every q.k is then an integer of magnitude
    <= 16 D <= 4096, and so is every partial sum: exact in float32 on the CPU and on
    the FP8 tensor cores, which align each chunk of products to its largest term
    and keep ~14 bits (DeepSeek-V3 report 3.5.2; SageAttention2: a 13-bit
    mantissa accumulator). The kernel's float32 scores are then the exact ones, so
    a test can repeat the kernel's arithmetic on them bit for bit (softcap's
    tanh.approx, tests/gpu/emulate.py). q_descale * k_descale differ per (batch, kv
    head) and give the scaled scores (softmax_scale 1) a spread of ~score_std."""
    _, _, v, s = dense_inputs(b, sq, sk, h, hkv, d, FP8, seed=seed, poison=False)
    g = torch.Generator(device="cpu").manual_seed(seed + 1)
    q = torch.randint(-4, 5, (b, sq, h, d), generator=g).float().to(FP8)
    k = torch.randint(-4, 5, (b, sk, hkv, d), generator=g).float().to(FP8)
    entry_var = 20 / 3  # variance of a uniform integer in [-4, 4]
    base = math.sqrt(score_std / (entry_var * math.sqrt(d)))  # std(q.k) = entry_var * sqrt(D)
    s["q_descale"] = (base * torch.linspace(0.8, 1.2, b * hkv).view(b, hkv)).float()
    s["k_descale"] = (base * torch.linspace(1.1, 0.9, b * hkv).view(b, hkv)).float()
    q, k, v = (poisoned_view(t.to(device), 2) for t in (q, k, v))
    return q, k, v, {n: x.to(device) for n, x in s.items()}


def varlen_inputs(lens_q, lens_k, h, hkv, d, dtype, *, device="cpu", seed=0, generate_on="cpu"):
    """Packed q [Tq, H, D], k/v [Tk, Hkv, D], cu_seqlens, per-sequence descales.

    The data are drawn and quantized on the CPU by default, so that a CPU and a CUDA call of
    one seed see the same bytes; ``generate_on=device`` draws and quantizes them there instead
    (other bytes: for runs that need no CPU twin, such as tools/stress_varlen.py, where the
    CPU's draw of up to 64 x 2000 rows took most of a launch's time)."""
    g = torch.Generator(device=generate_on).manual_seed(seed)
    cu_q = torch.tensor([0] + list(torch.tensor(lens_q).cumsum(0)), dtype=torch.int32)
    cu_k = torch.tensor([0] + list(torch.tensor(lens_k).cumsum(0)), dtype=torch.int32)
    tq, tk = int(cu_q[-1]), int(cu_k[-1])
    q = torch.randn(tq, h, d, generator=g, device=generate_on)
    k = torch.randn(tk, hkv, d, generator=g, device=generate_on)
    v = torch.randn(tk, hkv, d, generator=g, device=generate_on) * \
        torch.linspace(0.5, 3.0, hkv, device=generate_on)[None, :, None]
    scales = {}
    if dtype == FP8:
        cq, ck = cu_q.to(generate_on), cu_k.to(generate_on)
        q, scales["q_descale"] = torch_fmha.quantize_fp8(q, "head", group_size=h // hkv, cu_seqlens=cq)
        k, scales["k_descale"] = torch_fmha.quantize_fp8(k, "head", cu_seqlens=ck)
        v, scales["v_descale"] = torch_fmha.quantize_fp8(v, "head", cu_seqlens=ck)
    else:
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    q, k, v = (poisoned_view(t.to(device), 1) for t in (q, k, v))
    scales = {n: s.to(device) for n, s in scales.items()}
    return q, k, v, cu_q.to(device), cu_k.to(device), scales


def paged_inputs(lens_q, lens_k, h, hkv, d, dtype, page_size, *, device="cpu", seed=0, spare_pages=3,
                 slack_k=None, generate_on="cpu"):
    """A paged KV cache holding the same keys as ``varlen_inputs(lens_q, lens_k, ...)``.

    Returns ``(q, k_pool, v_pool, cu_q, seqused_k, page_table, scales, packed)``:
    pools ``[num_pages, page_size, Hkv, D]`` (NaN-filled strided views, as
    ``poisoned_view``), the pages of each sequence scattered over the pool by a
    random permutation (never in order), ``spare_pages`` pages that no sequence
    uses, the unused rows of each last page NaN, and ``page_table`` int32
    ``[B, max_pages + 1]`` whose entries past a sequence's pages are garbage
    (-1 and ids past the pool) that must never be read. ``packed`` is
    ``(k, v, cu_k)`` of ``varlen_inputs``, the same problem without pages.
    ``slack_k``: extra NaN keys per sequence in the packed slots (for seqused_k
    without pages): the packed slots are then ``lens_k[b] + slack_k`` long and
    ``packed`` holds ``(k, v, cu_k_with_slack)``.
    """
    q, k, v, cu_q, cu_k, scales = varlen_inputs(lens_q, lens_k, h, hkv, d, dtype, device=device, seed=seed,
                                                generate_on=generate_on)
    g = torch.Generator(device="cpu").manual_seed(seed + 1)
    pages_per_seq = [-(-n // page_size) for n in lens_k]
    num_pages = sum(pages_per_seq) + spare_pages
    order = torch.randperm(num_pages, generator=g).tolist()
    if num_pages > 1 and order == sorted(order):  # scattered, never the identity
        order = order[1:] + order[:1]
    nan = torch.full((num_pages, page_size, hkv, d), float("nan")).to(dtype)
    pools = [poisoned_view(nan.to(device), 2), poisoned_view(nan.to(device), 2)]
    table = torch.full((len(lens_k), max(pages_per_seq, default=0) + 1), -1, dtype=torch.int32)
    table[:, -1] = num_pages + 7  # a garbage id past the pool in the last column
    taken = 0
    for b in range(len(lens_k)):  # sequence b's pages: the next ones of the permutation
        table[b, :pages_per_seq[b]] = torch.tensor(order[taken:taken + pages_per_seq[b]], dtype=torch.int32)
        taken += pages_per_seq[b]
    # Every packed key row to its (page, row in page), then one indexed copy per pool.
    seq = torch.repeat_interleave(torch.arange(len(lens_k)), torch.tensor(lens_k, dtype=torch.int64))
    pos = torch.arange(len(seq)) - torch.tensor([0] + list(lens_k), dtype=torch.int64).cumsum(0)[seq]
    page_of_row = table[seq, pos // page_size].long().to(device)
    row_in_page = (pos % page_size).to(device)
    for pool, src in zip(pools, (k, v)):
        pool[page_of_row, row_in_page] = src
    seqused = torch.tensor(lens_k, dtype=torch.int32, device=device)
    packed = (k, v, cu_k)
    if slack_k:
        packed = _with_slack(k, v, cu_k, slack_k)
    return q, pools[0], pools[1], cu_q, seqused, table.to(device), scales, packed


def _with_slack(k, v, cu_k, slack):
    """Packed k / v whose sequence slots are ``slack`` NaN rows longer than their keys."""
    lens = (cu_k[1:] - cu_k[:-1]).tolist()
    out = []
    for x in (k, v):
        parts = []
        for b, n in enumerate(lens):
            parts.append(x[int(cu_k[b]):int(cu_k[b]) + n])
            parts.append(torch.full((slack,) + tuple(x.shape[1:]), float("nan"), device=x.device).to(x.dtype))
        out.append(poisoned_view(torch.cat(parts), 1))
    cu = torch.cat([torch.zeros(1, dtype=torch.int32),
                    torch.tensor([n + slack for n in lens], dtype=torch.int32).cumsum(0).to(torch.int32)])
    return out[0], out[1], cu.to(k.device)
