"""Sample inputs for torch.library.opcheck, shared by the CPU and CUDA tests.

FP8 samples run test_faketensor, test_aot_dispatch_dynamic and
test_autograd_registration; test_schema runs on bf16 / float32 samples,
because torch 2.11-2.13 cannot ``allclose`` float8 tensors.
"""

from __future__ import annotations

import torch

from op_defaults import OP_DEFAULTS, complete

import torch_fmha
from inputs import packed_v

FP8 = torch.float8_e4m3fn
FP8_UTILS = ("test_faketensor", "test_aot_dispatch_dynamic", "test_autograd_registration")
ALL_UTILS = ("test_schema",) + FP8_UTILS


def _qkv(shape_q, shape_kv, dtype, device, requires_grad=False):
    g = torch.Generator().manual_seed(0)
    out = []
    for shape in (shape_q, shape_kv, shape_kv):
        x = torch.randn(*shape, generator=g).to(dtype).to(device)
        out.append(x.requires_grad_(requires_grad) if requires_grad else x)
    return out


def _filled(op, samples):
    """Every sample with the arguments it leaves out filled in (the schemas have no defaults)."""
    return [(args, complete(op, len(args), kw)) for args, kw in samples]


def _only(op, kw):
    """The items of kw that are arguments of op (kw: another op's full kwargs)."""
    return {n: x for n, x in kw.items() if n in OP_DEFAULTS[op]}


def fwd_samples(device="cpu", dtype=FP8):
    """(args, kwargs) for torch.ops.torch_fmha.fwd."""
    samples = []
    fp8 = dtype == FP8
    grad = dtype in (torch.float32, torch.float64, torch.bfloat16)
    for (b, sq, sk, h, hkv, d), opts in [
        ((2, 17, 33, 4, 2, 128), dict(causal=True)),
        ((1, 65, 65, 2, 2, 128), dict(window_left=8, window_right=4)),
        ((2, 9, 5, 8, 1, 256), dict()),
    ]:
        q, k, v = _qkv((b, sq, h, d), (b, sk, hkv, d), dtype, device, requires_grad=grad)
        kw = dict(opts, softmax_scale=0.1)
        if fp8:
            kw.update(q_descale=torch.rand(b, hkv, device=device) + 0.5,
                      k_descale=torch.rand(1, device=device) + 0.5,
                      v_descale=torch.rand(b, hkv, device=device) + 0.5)
        samples.append(((q, k, v), kw))
    if fp8:
        q, k, v = _qkv((1, 16, 2, 128), (1, 16, 2, 128), dtype, device)
        samples.append(((q, k, v), dict(out_dtype=torch.float16)))
        # A packed v [B, Hkv, D, ceil(S / 16), 16]: the CUDA kernel's V^T-by-TMA path.
        q, k, v = _qkv((2, 40, 4, 64), (2, 43, 2, 64), dtype, device)
        samples.append(((q, k, packed_v(v)), dict(causal=True)))
        q, k, v = _qkv((1, 33, 2, 128), (1, 33, 2, 128), dtype, device)
        samples.append(((q, k, packed_v(v)), dict(window_left=8, window_right=4)))
    return _filled("fwd", samples)


def varlen_fwd_samples(device="cpu", dtype=FP8, head_dim=64):
    """(args, kwargs) for torch.ops.torch_fmha.varlen_fwd; empty q and k sequences included."""
    samples = []
    fp8 = dtype == FP8
    grad = dtype in (torch.float32, torch.float64, torch.bfloat16)
    for lens_q, lens_k, opts in [([3, 0, 17], [5, 2, 0], dict(causal=True)), ([9], [12], dict())]:
        cu_q = torch.tensor([0] + torch.tensor(lens_q).cumsum(0).tolist(), dtype=torch.int32, device=device)
        cu_k = torch.tensor([0] + torch.tensor(lens_k).cumsum(0).tolist(), dtype=torch.int32, device=device)
        q, k, v = _qkv((sum(lens_q), 4, head_dim), (sum(lens_k), 2, head_dim), dtype, device,
                       requires_grad=grad)
        kw = dict(opts, max_seqlen_q=max(lens_q), max_seqlen_k=max(lens_k))
        if fp8:
            kw.update(q_descale=torch.rand(len(lens_q), 2, device=device) + 0.5)
        samples.append(((q, k, v, cu_q, cu_k), kw))
    return _filled("varlen_fwd", samples)


def bwd_samples(dtype=torch.float32):
    samples = []
    for (args, kw) in fwd_samples("cpu", dtype):
        q, k, v = (a.detach() for a in args)
        out, lse = torch.ops.torch_fmha.fwd(q, k, v, **kw)
        dout = torch.randn_like(out)
        samples.append(((dout, q, k, v, out, lse, torch.randn_like(lse)),
                        {n: kw[n] for n in ("softmax_scale", "causal", "window_left", "window_right")}))
    return _filled("bwd", samples)


def varlen_bwd_samples(dtype=torch.float32):
    samples = []
    for (args, kw) in varlen_fwd_samples("cpu", dtype):
        q, k, v = (a.detach() for a in args[:3])
        cu_q, cu_k = args[3:]
        out, lse = torch.ops.torch_fmha.varlen_fwd(q, k, v, cu_q, cu_k, **kw)
        samples.append(((torch.randn_like(out), q, k, v, out, lse, cu_q, cu_k), _only("varlen_bwd", kw)))
    return _filled("varlen_bwd", samples)


def quantize_samples(device="cpu"):
    """(op, args, kwargs) for torch.ops.torch_fmha.quantize_fp8 / quantize_qkv: per-tensor
    and per-head, dense (GQA) and packed with an empty sequence, bf16 and float32. Their
    outputs are FP8, so opcheck runs FP8_UTILS on them (test_schema compares outputs)."""
    ops = torch.ops.torch_fmha
    g = torch.Generator().manual_seed(1)

    def rand(*shape, dtype=torch.bfloat16):
        return torch.randn(*shape, generator=g).to(dtype).to(device)

    cu = torch.tensor([0, 5, 5, 12], dtype=torch.int32, device=device)
    samples = []
    for dtype in (torch.bfloat16, torch.float32):
        q, k, v = rand(2, 9, 4, 64, dtype=dtype), rand(2, 9, 2, 64, dtype=dtype), rand(2, 9, 2, 64, dtype=dtype)
        qp, kp, vp = rand(12, 4, 64, dtype=dtype), rand(12, 2, 64, dtype=dtype), rand(12, 2, 64, dtype=dtype)
        samples += [
            (ops.quantize_fp8, (q, True), dict(group_size=2)),
            (ops.quantize_fp8, (q, False), {}),
            (ops.quantize_fp8, (qp, True), dict(cu_seqlens=cu)),
            (ops.quantize_qkv, (q, k, v, True), {}),
            (ops.quantize_qkv, (q, k, v, False), dict(qk_rotated=True)),
            (ops.quantize_qkv, (qp, kp, vp, True), dict(cu_seqlens_q=cu, cu_seqlens_k=cu)),
        ]
    return [(op, args, complete(op, len(args), kw)) for op, args, kw in samples]


# ---- serving features (issue 14): softcap, sinks, seqused_k, paged KV ----------------------
# Separate from the samples above so the CUDA opcheck of the base features does not depend
# on the kernel's support for these (tests/gpu/test_serving_features_sm90.py runs them).

def _sinks(h, device, grad):
    s = torch.linspace(-2.0, 3.0, h, device=device)
    s[0] = float("-inf")
    return s.requires_grad_(True) if grad else s


def serving_fwd_samples(device="cpu", dtype=FP8):
    """(args, kwargs) for torch.ops.torch_fmha.fwd with softcap and / or sinks."""
    fp8 = dtype == FP8
    grad = dtype in (torch.float32, torch.float64, torch.bfloat16)
    samples = []
    for (b, sq, sk, h, hkv, d), opts in [
        ((2, 17, 33, 4, 2, 128), dict(causal=True, softcap=30.0, sinks=True)),
        ((1, 9, 5, 8, 1, 64), dict(softcap=20.0)),
        ((2, 9, 40, 4, 4, 256), dict(window_left=8, window_right=0, sinks=True)),
    ]:
        q, k, v = _qkv((b, sq, h, d), (b, sk, hkv, d), dtype, device, requires_grad=grad)
        kw = dict(opts, softmax_scale=0.1)
        if kw.pop("sinks", False):
            kw["sinks"] = _sinks(h, device, grad)
        if fp8:
            kw.update(q_descale=torch.rand(b, hkv, device=device) + 0.5)
        samples.append(((q, k, v), kw))
    return _filled("fwd", samples)


def _paged(lens_k, page_size, hkv, d, dtype, device):
    """Pools holding lens_k keys per sequence on scattered pages, page_table with -1 past them."""
    g = torch.Generator().manual_seed(2)
    pages = [-(-n // page_size) for n in lens_k]
    num_pages = sum(pages) + 2
    order = torch.randperm(num_pages, generator=g).tolist()
    table = torch.full((len(lens_k), max(pages) + 1), -1, dtype=torch.int32)
    for b, n in enumerate(pages):
        table[b, :n] = torch.tensor(order[sum(pages[:b]):sum(pages[:b]) + n], dtype=torch.int32)
    k = torch.randn(num_pages, page_size, hkv, d, generator=g).to(dtype).to(device)
    v = torch.randn(num_pages, page_size, hkv, d, generator=g).to(dtype).to(device)
    return k, v, table.to(device), torch.tensor(lens_k, dtype=torch.int32, device=device)


def serving_varlen_fwd_samples(device="cpu", dtype=FP8, head_dim=64):
    """(args, kwargs) for torch.ops.torch_fmha.varlen_fwd: softcap / sinks, seqused_k without
    pages, and paged KV (page sizes 16 and 64, an empty sequence, garbage table entries)."""
    fp8 = dtype == FP8
    grad = dtype in (torch.float32, torch.float64, torch.bfloat16)
    samples = []
    lens_q, lens_k = [3, 0, 17], [5, 2, 20]
    cu_q = torch.tensor([0, 3, 3, 20], dtype=torch.int32, device=device)
    cu_k = torch.tensor([0, 5, 7, 27], dtype=torch.int32, device=device)
    q, k, v = _qkv((sum(lens_q), 4, head_dim), (sum(lens_k), 2, head_dim), dtype, device, requires_grad=grad)
    kw = dict(max_seqlen_q=17, max_seqlen_k=20, causal=True, softcap=25.0, sinks=_sinks(4, device, grad))
    samples.append(((q, k, v, cu_q, cu_k), kw))
    # seqused_k without pages: the last keys of each slot unused (no grad: inference feature).
    q, k, v = _qkv((sum(lens_q), 4, head_dim), (sum(lens_k), 2, head_dim), dtype, device)
    used = torch.tensor([4, 0, 11], dtype=torch.int32, device=device)
    samples.append(((q, k, v, cu_q, cu_k), dict(seqused_k=used, sinks=_sinks(4, device, False))))
    for page_size, used_k in ((16, [17, 0, 16]), (64, [1, 63, 130])):
        q = _qkv((sum(lens_q), 4, head_dim), (1, 2, head_dim), dtype, device)[0]
        kp, vp, table, used = _paged(used_k, page_size, 2, head_dim, dtype, device)
        kw = dict(seqused_k=used, page_table=table, causal=True, softcap=40.0)
        if fp8:
            kw.update(k_descale=torch.rand(3, 2, device=device) + 0.5)
        samples.append(((q, kp, vp, cu_q, None), kw))
    return _filled("varlen_fwd", samples)


def serving_bwd_samples(dtype=torch.float32):
    samples = []
    names = ("softmax_scale", "causal", "window_left", "window_right", "softcap", "sinks")
    for (args, kw) in serving_fwd_samples("cpu", dtype):
        q, k, v = (a.detach() for a in args)
        kw = {n: (x.detach() if isinstance(x, torch.Tensor) else x) for n, x in kw.items()}
        out, lse = torch.ops.torch_fmha.fwd(q, k, v, **kw)
        samples.append(((torch.randn_like(out), q, k, v, out, lse, torch.randn_like(lse)),
                        {n: kw[n] for n in names}))
    for (args, kw) in serving_varlen_fwd_samples("cpu", dtype):
        if kw["seqused_k"] is not None:  # no backward through seqused_k / page_table
            continue
        q, k, v = (a.detach() for a in args[:3])
        kw = {n: (x.detach() if isinstance(x, torch.Tensor) else x) for n, x in kw.items()}
        out, lse = torch.ops.torch_fmha.varlen_fwd(q, k, v, *args[3:], **kw)
        samples.append(((torch.randn_like(out), q, k, v, out, lse) + tuple(args[3:]),
                        complete("varlen_bwd", 8, _only("varlen_bwd", kw))))
    return samples


# ---- decode against a KV cache (issue 15): torch_fmha::fwd_kvcache --------------------------------

def kvcache_samples(device="cpu", dtype=FP8, head_dim=64):
    """(args, kwargs) for torch.ops.torch_fmha.fwd_kvcache: each plan of the op (split with GQA
    packing and sinks, split with Sq > 1, masked Sq > 1 causal, paged split, paged window, packed q)
    with an empty cache row (cache_seqlens 0) in each."""
    fp8 = dtype == FP8
    g = torch.Generator().manual_seed(3)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(dtype).to(device)

    def lens(*v):
        return torch.tensor(v, dtype=torch.int32, device=device)

    d = head_dim
    samples = []
    kc, vc = rand(3, 40, 2, d), rand(3, 40, 2, d)
    for sq, kw in ((1, dict(num_splits=3, sinks=_sinks(8, device, False), causal=True)),
                   (4, dict(num_splits=2, softcap=20.0)),
                   (5, dict(causal=True, window_left=9))):
        kw = dict(kw)
        if fp8:
            kw.update(q_descale=torch.rand(3, 2, device=device) + 0.5, k_descale=torch.rand(1, device=device) + 0.5,
                      v_descale=torch.rand(3, 2, device=device) + 0.5)
        samples.append(((rand(3, sq, 8, d), kc, vc, lens(0, 17, 40)), kw))
    kp, vp, table, used = _paged([33, 0, 16], 16, 2, d, dtype, device)
    samples.append(((rand(3, 1, 4, d), kp, vp, used), dict(page_table=table, num_splits=2)))
    samples.append(((rand(3, 1, 4, d), kp, vp, used), dict(page_table=table, window_left=20)))
    cu_q = torch.tensor([0, 2, 2, 5], dtype=torch.int32, device=device)
    samples.append(((rand(5, 8, d), kc, vc, lens(7, 0, 40)), dict(cu_seqlens_q=cu_q, max_seqlen_q=3, causal=True)))
    return _filled("fwd_kvcache", samples)
