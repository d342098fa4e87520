"""Sample inputs for torch.library.opcheck, shared by the CPU and CUDA tests.

FP8 samples run test_faketensor, test_aot_dispatch_dynamic and
test_autograd_registration; test_schema runs on bf16 / float32 samples,
because torch 2.11-2.13 cannot ``allclose`` float8 tensors.
"""

from __future__ import annotations

import torch

import torch_fmha

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
    return samples


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
    return samples


def bwd_samples(dtype=torch.float32):
    samples = []
    for (args, kw) in fwd_samples("cpu", dtype):
        q, k, v = (a.detach() for a in args)
        out, lse = torch.ops.torch_fmha.fwd(q, k, v, **kw)
        dout = torch.randn_like(out)
        samples.append(((dout, q, k, v, out, lse, torch.randn_like(lse)),
                        {n: kw[n] for n in ("softmax_scale", "causal", "window_left", "window_right") if n in kw}))
    return samples


def varlen_bwd_samples(dtype=torch.float32):
    samples = []
    for (args, kw) in varlen_fwd_samples("cpu", dtype):
        q, k, v = (a.detach() for a in args[:3])
        cu_q, cu_k = args[3:]
        out, lse = torch.ops.torch_fmha.varlen_fwd(q, k, v, cu_q, cu_k, **kw)
        samples.append(((torch.randn_like(out), q, k, v, out, lse, cu_q, cu_k), dict(kw)))
    return samples


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
    return samples
