"""The CUDA quantize kernels (csrc/kernel/quantize.cuh) == the CPU op, bitwise.

torch_fmha::quantize_fp8 / quantize_qkv on CUDA against the same op on CPU (which
tests/test_quantize_op.py checks bitwise against the tensor-op quantizer it
replaced): random, outlier and NaN/Inf inputs, per-tensor and per-head (GQA
groups), dense and packed (empty sequences included), every input dtype, strided
inputs, shapes that split a group over many blocks; two kernel launches per call;
CUDA-graph capture and replay; Inductor; invalid cu_seqlens read in bounds.
Skipped (with the reason) where there is no SM90 GPU (conftest.py, which also
gives every test a 300 s timeout); the quick ones carry their own, shorter one.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

import torch_fmha  # noqa: F401  (loads the ops)
from op_defaults import complete, filled_ops

FP8 = torch.float8_e4m3fn
NAN, INF = math.nan, math.inf
# The ops with the arguments a call leaves out filled in (the schemas have no defaults).
ops = filled_ops
pytestmark = pytest.mark.timeout(120, method="thread")


def _data(shape, dtype, kind, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    if kind in ("outliers", "nonfinite"):  # 0.1% x10, one channel x30, one head tiny
        x = torch.where(torch.rand(*shape, generator=g) < 1e-3, x * 10, x)
        x[..., 3] *= 30
        x[..., 0, :] *= 1e-4
    x = x.to(dtype)
    if kind == "nonfinite":
        flat = x.view(-1)
        n = flat.numel()
        for i, val in ((n // 7, NAN), (n // 3, INF), (n // 2, -INF), (n - 1, NAN)):
            flat[i] = val
    return x


def _cuda(args):
    return tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in args)


def assert_same_bits(got, want, what):
    for i, (a, b) in enumerate(zip(got, want)):
        a = a.cpu()
        assert a.dtype == b.dtype and a.shape == b.shape, f"{what}[{i}]"
        ab, bb = (t.view(torch.uint8) if t.dtype == FP8 else t.view(torch.int32) for t in (a, b))
        diff = ab != bb
        assert not diff.any(), (f"{what}[{i}]: {int(diff.sum())} of {diff.numel()} differ, first at "
                                f"{diff.nonzero()[0].tolist()}")


def check_op(op, args, kwargs, what):
    want = op(*args, **kwargs)
    got = op(*_cuda(args), **{n: v.cuda() if isinstance(v, torch.Tensor) else v for n, v in kwargs.items()})
    torch.cuda.synchronize()
    assert_same_bits(got, want, what)
    return got


KINDS = ["random", "outliers", "nonfinite"]
DTYPES = [torch.bfloat16, torch.float16, torch.float32, torch.float64]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("per_head", [False, True], ids=["tensor", "head"])
def test_qkv_dense_cuda_equals_cpu(kind, dtype, per_head):
    q, k, v = (_data((2, 77, h, 128), dtype, kind, s) for h, s in ((8, 0), (2, 1), (2, 2)))
    for rotated in (False, True):
        check_op(ops.quantize_qkv, (q, k, v, per_head, rotated), {}, f"{kind} {dtype} rotated={rotated}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("per_head", [False, True], ids=["tensor", "head"])
def test_qkv_packed_cuda_equals_cpu(kind, dtype, per_head):
    lq, lk = [5, 0, 300, 1, 64], [7, 2, 0, 333, 64]
    cu_q = torch.tensor([0] + lq).cumsum(0).to(torch.int32)
    cu_k = torch.tensor([0] + lk).cumsum(0).to(torch.int32)
    q = _data((sum(lq), 8, 64), dtype, kind, 3)
    k, v = _data((sum(lk), 1, 64), dtype, kind, 4), _data((sum(lk), 1, 64), dtype, kind, 5)
    kw = dict(cu_seqlens_q=cu_q, cu_seqlens_k=cu_k) if per_head else {}
    check_op(ops.quantize_qkv, (q, k, v, per_head), kw, f"packed {kind} {dtype}")
    check_op(ops.quantize_fp8, (q, per_head, 2 if per_head else 1), dict(cu_seqlens=cu_q) if per_head else {},
             f"packed fp8 {kind} {dtype}")


@pytest.mark.parametrize("per_head", [False, True], ids=["tensor", "head"])
def test_many_blocks_per_group(per_head):
    """Groups of 1M (per head) and 16M (per tensor) elements: 64 and 1024 blocks per
    group, so the cast kernel's reduction over partials and the chunk bounds matter."""
    x = _data((2, 8192, 8, 128), torch.bfloat16, "nonfinite", 6)
    check_op(ops.quantize_fp8, (x, per_head, 8 if per_head else 1), {}, "large")


def test_strided_inputs():
    """q, k, v as views of one fused projection [B, S, 3, H, D] (tools/overhead.py --stack)."""
    fused = _data((2, 129, 3, 4, 64), torch.bfloat16, "outliers", 7)
    q, k, v = fused.unbind(2)
    got = check_op(ops.quantize_qkv, (q, k, v, True), {}, "strided")
    assert all(t.is_contiguous() for t in got) and got[3].shape == (3, 2, 4)
    d_strided = _data((2, 40, 4, 128), torch.float32, "random", 8)[..., ::2]  # head dim stride 2
    check_op(ops.quantize_fp8, (d_strided, True, 2), {}, "stride_dim 2")


def _kernels(fn):
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]


def test_kernels_per_call():
    """One launch when every scale group fits one block (the serving shapes), two (amax,
    then cast) when groups are split over blocks."""
    q, k, v = (_data((1, 128, 8, 128), torch.bfloat16, "random", s).cuda() for s in range(3))
    names = _kernels(lambda: ops.quantize_qkv(q, k, v, True))
    assert len(names) == 1 and "quantize_group_kernel" in names[0], names
    names = _kernels(lambda: ops.quantize_qkv(q, k, v, False))  # per tensor: 8 blocks per group
    assert len(names) == 2 and "amax" in names[0] and "cast" in names[1], names


def test_unaligned_input_takes_the_scalar_loads():
    """x not 16-byte aligned (a view at an odd offset): same bytes as the CPU op."""
    base = _data((2, 50, 4, 129), torch.bfloat16, "nonfinite", 9)
    x = base[..., 1:]
    assert x.stride(-1) == 1 and x.storage_offset() % 8 != 0
    check_op(ops.quantize_fp8, (x, True, 2), {}, "unaligned")
    check_op(ops.quantize_fp8, (x, False, 1), {}, "unaligned per tensor")


def test_cuda_graph_capture_and_replay():
    shapes = ((2, 96, 8, 128), (2, 96, 2, 128), (2, 96, 2, 128))
    static = [torch.zeros(s, dtype=torch.bfloat16, device="cuda") for s in shapes]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        ops.quantize_qkv(*static, True)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = ops.quantize_qkv(*static, True)
    for seed, kind in ((10, "random"), (11, "nonfinite")):
        host = [_data(s, torch.bfloat16, kind, seed + i) for i, s in enumerate(shapes)]
        for dst, src in zip(static, host):
            dst.copy_(src)
        graph.replay()
        torch.cuda.synchronize()
        assert_same_bits(out, ops.quantize_qkv(*host, True), f"graph replay {kind}")


def test_inductor_equals_eager():
    def fn(q, k, v):
        r = torch_fmha.quantize_qkv(q, k, v, "head", rotate=False)
        f = torch_fmha.quantize_fp8(q, "tensor")
        return (*r, *f)

    q, k, v = (_data((2, 64, h, 128), torch.bfloat16, "nonfinite", s).cuda() for h, s in ((8, 0), (2, 1), (2, 2)))
    torch._dynamo.reset()
    got = torch.compile(fn, fullgraph=True)(q, k, v)
    want = [t.cpu() for t in fn(q.cpu(), k.cpu(), v.cpu())]
    assert_same_bits(got, want, "inductor")


def test_invalid_cu_seqlens_read_in_bounds():
    """The CUDA op cannot check cu_seqlens' values without a host sync; out-of-range,
    decreasing or negative entries are clamped, so the kernels never read or write out of
    bounds (the CPU op raises on them, as varlen_fwd does)."""
    q = torch.randn(100, 4, 64, device="cuda")
    for cu in ([0, 50, 20, 100], [-5, 10, 1 << 30, 100], [30, 40, 60, 80], [0, 0, 0, 0]):
        x8, d = ops.quantize_fp8(q, True, 2, torch.tensor(cu, dtype=torch.int32, device="cuda"))
        torch.cuda.synchronize()
        assert x8.shape == q.shape and d.shape == (3, 2)
        assert torch.isfinite(d).all() and (d > 0).all()
    # the rows outside [cu[0], cu[-1]) are written as FP8 zeros, not left as garbage
    x8, _ = ops.quantize_fp8(q, True, 1, torch.tensor([30, 40, 60, 80], dtype=torch.int32, device="cuda"))
    assert (x8.view(torch.uint8)[:30] == 0).all() and (x8.view(torch.uint8)[80:] == 0).all()


# ----------------------------------------------------------- packed v (issue 12) ---
# quantize_qkv(..., pack_v=True): the cast kernel writes v as a packed v [B, Hkv, D, G, 16]
# (tiles transposed through shared memory, each key at its slot of csrc/vt_key_order.h's
# order, csrc/kernel/quantize.cuh), which torch_fmha.attention loads as V^T by TMA.

def _packed_shape(v):
    b, s, hkv, d = v.shape
    return (b, hkv, d, (s + 15) // 16, 16)


def _quantize_packed_v(q, k, v, per_head, **kw):
    """ops.quantize_qkv(..., pack_v=True) on CUDA into outputs whose memory was FP8 NaN
    (0x7F) just before, so a byte the kernel does not write (a padding slot) shows."""
    from poison import call_with_nan_outputs

    b, s, hkv, d = v.shape
    specs = [((3, b, hkv) if per_head else (3, 1), torch.float32), (tuple(q.shape), FP8), (tuple(k.shape), FP8),
             (_packed_shape(v), FP8)]
    return call_with_nan_outputs(lambda: ops.quantize_qkv(q, k, v, per_head, pack_v=True, **kw), specs)


def check_packed_v(q, k, v, per_head, what, **kw):
    """CUDA packed v == CPU packed v (every byte, padding slots included: zero), == the CUDA
    standard v packed by hand (tests/inputs.py's packed_v, from the documented order), and
    unpack_v of it == the standard v; q8, k8, descales those of the standard call."""
    from inputs import packed_v

    want = ops.quantize_qkv(q, k, v, per_head, pack_v=True, **kw)
    qc, kc, vc = (t.cuda() for t in (q, k, v))
    got = _quantize_packed_v(qc, kc, vc, per_head, **kw)
    std = ops.quantize_qkv(qc, kc, vc, per_head, **kw)
    torch.cuda.synchronize()
    assert got[2].shape == want[2].shape == _packed_shape(v) and got[2].is_contiguous(), what
    assert_same_bits([got[2], got[0], got[1], got[3]], [want[2], want[0], want[1], want[3]], f"{what} CUDA vs CPU")
    assert torch.equal(got[2].view(torch.uint8), packed_v(std[2]).view(torch.uint8)), f"{what} vs standard packed"
    assert torch.equal(torch_fmha.unpack_v(got[2], v.size(1)).view(torch.uint8), std[2].view(torch.uint8)), \
        f"{what}: unpack_v vs standard"
    for a, b_ in zip((got[0], got[1], got[3]), (std[0], std[1], std[3])):
        assert torch.equal(a.view(torch.uint8), b_.view(torch.uint8)), f"{what}: q8 / k8 / descales"
    return got


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("per_head", [False, True], ids=["tensor", "head"])
@pytest.mark.parametrize("shape", [(2, 77, 8, 2, 128), (2, 200, 4, 2, 256), (1, 1, 2, 1, 64), (2, 48, 4, 4, 200)],
                         ids=lambda s: "x".join(map(str, s)))
def test_qkv_pack_v_cuda_equals_cpu(kind, dtype, per_head, shape):
    b, s, h, hkv, d = shape
    q, k, v = (_data((b, s, n, d), dtype, kind, seed) for n, seed in ((h, 0), (hkv, 1), (hkv, 2)))
    check_packed_v(q, k, v, per_head, f"{kind} {dtype} {shape}")


@pytest.mark.parametrize("per_head", [False, True], ids=["tensor", "head"])
def test_pack_v_many_blocks_per_group(per_head):
    """Groups split over many blocks (amax + cast kernels): each block casts its share of the
    group's 64-key tiles; S = 4100 leaves a partial last tile and 12 padding slots."""
    q, k, v = (_data((2, 4100, n, 256), torch.bfloat16, "nonfinite", s) for n, s in ((4, 0), (2, 1), (2, 2)))
    check_packed_v(q, k, v, per_head, "many blocks")


def test_pack_v_strided_and_unaligned_inputs():
    fused = _data((2, 129, 3, 4, 64), torch.bfloat16, "outliers", 7)
    check_packed_v(*fused.unbind(2), True, "fused projection views")
    base = _data((2, 50, 2, 129), torch.bfloat16, "nonfinite", 9)
    x = base[..., 1:]  # not 16-byte aligned: scalar loads
    check_packed_v(x, x, x, False, "unaligned")


def test_pack_v_one_launch_at_serving_shapes():
    """Writing a packed v costs no extra pass: still one kernel per call when every scale
    group fits one block (64 keys x D=256 per (batch, head): 16K elements)."""
    q, k, v = (_data((1, 64, 8, 256), torch.bfloat16, "random", s).cuda() for s in range(3))
    names = _kernels(lambda: ops.quantize_qkv(q, k, v, True, pack_v=True))
    assert len(names) == 1 and "quantize_group_kernel" in names[0], names


@pytest.mark.parametrize("seqlen", [1, 63, 129, 1023, 2100, 4224])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [64, 128, 256])
def test_packed_v_through_attention(seqlen, causal, d):
    """torch_fmha.quantize_qkv's packed v (the default at D=128 / 256) through
    torch_fmha.attention (outlier data: 0.1% x10, channel 3 x30, head 0 x1e-4): its q8, k8
    and descales are the standard call's, its v the standard v packed by hand, so attention
    gives bitwise the output of the standard quantize output with v packed by hand (same
    kernel build, same bytes), and errors against the float64 reference no larger than the
    standard layout's (5% margin: the two layouts run different kernel builds).

    Not asserted here: the tolerance rule (max|out-ref| <= 2 max|emul-ref| + eps) on this
    data. It is a property of the attention kernel, not of the quantizer, and at issue 12's
    first GPU run this test asserted it for the keys-contiguous output only (21 of 36
    failed, max error 1.8-11.6 against 1.2-2.5) without checking the standard layout's
    output on the same data first. Suspected (a CPU model only, not measured): a dominant
    channel (x30 in q and k) makes each score one large product plus small ones, whose low
    bits the FP8 tensor cores' accumulation drops and the float64 emulation keeps, for either
    v layout; tests/gpu/test_fwd_sm90.py holds the rule on other data. With TORCH_FMHA_ERR_LOG set, each case appends both layouts'
    errors and the rule's bound to that file."""
    from emulate import emulate_fp8_kernel
    from inputs import packed_v
    from reference import attention_ref, round_output

    q, k, v = (_data((2, seqlen, n, d), torch.bfloat16, "outliers", s).cuda() for n, s in ((4, 0), (2, 1), (2, 2)))
    packed = torch_fmha.quantize_qkv(q, k, v, pack_v=True)
    std = torch_fmha.quantize_qkv(q, k, v, pack_v=False)
    assert packed.v.shape == _packed_shape(v) and std.v.shape == v.shape
    assert torch_fmha.quantize_qkv(q, k, v).v.shape == (packed if d in (128, 256) else std).v.shape  # the default
    what = f"S={seqlen} D={d} causal={causal}"
    for name in ("q", "k"):
        assert torch.equal(getattr(packed, name).view(torch.uint8), getattr(std, name).view(torch.uint8)), \
            f"{what}: pack_v call's {name}8 != the standard call's"
    for name, t in packed.descales.items():
        assert torch.equal(t.view(torch.int32), std.descales[name].view(torch.int32)), f"{what}: {name}"
    by_hand = packed_v(std.v)
    assert torch.equal(packed.v.view(torch.uint8), by_hand.view(torch.uint8)), \
        f"{what}: packed v (padding slots included) != the standard v packed by hand"
    kw = dict(causal=causal, **std.descales)
    out_packed = torch_fmha.attention(*packed.tensors, causal=causal, **packed.descales)
    out_by_hand = torch_fmha.attention(std.q, std.k, by_hand, **kw)
    out_std = torch_fmha.attention(*std.tensors, **kw)
    torch.cuda.synchronize()
    assert torch.equal(out_packed, out_by_hand), f"{what}: attention on quantize_qkv's packed v != on " \
                                                 f"the standard output packed by hand"
    ref, _ = attention_ref(*std.tensors, **kw)
    emul = round_output(emulate_fp8_kernel(*std.tensors, **kw), torch.bfloat16)

    def stats(out):
        err = out.double() - ref
        return {"max": err.abs().max().item(), "rmse": err.pow(2).mean().sqrt().item(),
                "rule_bound": 2 * (emul - ref).abs().max().item() + 1e-3}

    s_packed, s_std = stats(out_packed), stats(out_std)
    if os.environ.get("TORCH_FMHA_ERR_LOG"):  # per-case errors for the notes, as tests/gpu/test_fwd_sm90.py
        with open(os.environ["TORCH_FMHA_ERR_LOG"], "a") as f:
            f.write(f"quantize_qkv outliers {what}\tbound={s_std['rule_bound']:.3e}\tstd max={s_std['max']:.3e} "
                    f"rmse={s_std['rmse']:.3e}\tpacked max={s_packed['max']:.3e} rmse={s_packed['rmse']:.3e}\n")
    for stat in ("max", "rmse"):
        assert s_packed[stat] <= 1.05 * s_std[stat] + 1e-4, f"{what}: packed v {s_packed} vs standard {s_std}"


def test_pack_v_inductor_equals_eager():
    def fn(q, k, v):
        qkv = torch_fmha.quantize_qkv(q, k, v, pack_v=True)
        return qkv.v, torch_fmha.unpack_v(qkv.v, v.size(1)), torch_fmha.attention(*qkv.tensors, causal=True,
                                                                                  **qkv.descales)

    q, k, v = (_data((2, 300, n, 256), torch.bfloat16, "outliers", s).cuda() for n, s in ((8, 0), (2, 1), (2, 2)))
    torch._dynamo.reset()
    got = torch.compile(fn, fullgraph=True)(q, k, v)
    want = fn(q, k, v)
    assert got[0].shape == want[0].shape == _packed_shape(v) and got[0].is_contiguous()
    assert got[1].shape == v.shape and got[1].is_contiguous()
    for a, b in zip(got[:2], want[:2]):
        assert torch.equal(a.view(torch.uint8), b.view(torch.uint8))
    assert torch.equal(got[2], want[2])
    torch._dynamo.reset()


# ---- fp8_attention: quantize_qkv + attention in one op (torch_fmha::fp8_fwd) ---------------------

@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("kw", [dict(causal=True), dict(rotate=True, granularity="tensor", window_size=(300, 0)),
                                dict(out_dtype=torch.float8_e4m3fn, softcap=30.0)], ids=["causal", "rot", "fp8out"])
def test_fp8_attention_equals_quantize_then_attention(d, kw):
    """The CUDA path of csrc/ops/fp8_fwd_op.cpp: the same quantize and fwd kernels as the two
    calls, so the same bits (a packed v at D = 128 / 256, 1100 keys: past the short-key limit
    without a mask there, so the P-from-shared-memory build runs)."""
    kw = dict(kw)
    q, k, v = (_data((2, 1100, n, d), torch.bfloat16, "outliers", s).cuda() for n, s in ((8, 0), (2, 1), (2, 2)))
    if kw.get("out_dtype") is not None:
        kw["out_scale"] = torch.tensor([0.02], device="cuda")
    out, lse = torch_fmha.fp8_attention(q, k, v, return_lse=True, **kw)
    qkv = torch_fmha.quantize_qkv(q, k, v, kw.pop("granularity", "head"), kw.pop("rotate", False))
    want, want_lse = torch_fmha.attention(*qkv.tensors, **qkv.descales, return_lse=True, **kw)
    assert out.dtype == want.dtype and torch.equal(out.view(torch.uint8), want.view(torch.uint8))
    assert torch.equal(lse, want_lse)


def test_fp8_attention_compiled_and_graph_captured():
    q, k, v = (_data((1, 700, n, 128), torch.bfloat16, "normal", s).cuda() for n, s in ((4, 0), (2, 1), (2, 2)))
    fn = lambda q, k, v: torch_fmha.fp8_attention(q, k, v, causal=True)  # noqa: E731
    want = fn(q, k, v)
    torch._dynamo.reset()
    assert torch.equal(torch.compile(fn, fullgraph=True)(q, k, v), want)
    torch._dynamo.reset()
    fn(q, k, v)  # warm up outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(q, k, v)
    q2, k2, v2 = (_data(t.shape, torch.bfloat16, "outliers", 7 + i).cuda() for i, t in enumerate((q, k, v)))
    for dst, src in ((q, q2), (k, k2), (v, v2)):
        dst.copy_(src)
    graph.replay()
    assert torch.equal(out, fn(q, k, v))


def test_fp8_attention_opcheck_cuda():
    q, k, v = (_data((1, 40, n, 128), torch.bfloat16, "normal", s).cuda() for n, s in ((4, 0), (2, 1), (2, 2)))
    torch.library.opcheck(torch.ops.torch_fmha.fp8_fwd, (q, k, v, True),
                          complete("fp8_fwd", 4, dict(causal=True)),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic",
                                      "test_autograd_registration"))


@pytest.mark.parametrize("d", [64, 128, 256])
def test_fp8_varlen_attention_equals_quantize_then_varlen_attention(d):
    """fp8_varlen_fwd on CUDA: quantize_qkv with per-(sequence, KV head) scales, then varlen_fwd, in
    one op: the same bits as the two calls (an empty sequence and a 1100-key one included)."""
    cu_q = torch.tensor([0, 300, 300, 1400, 1417], dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0, 350, 351, 1451, 1500], dtype=torch.int32, device="cuda")  # q's and k's differ
    q = _data((1417, 8, d), torch.bfloat16, "outliers", 0).cuda()
    k, v = (_data((1500, 2, d), torch.bfloat16, "outliers", s).cuda() for s in (1, 2))
    kw = dict(causal=True, softcap=30.0)
    out, lse = torch_fmha.fp8_varlen_attention(q, k, v, cu_q, cu_k, rotate=True, return_lse=True, **kw)
    qkv = torch_fmha.quantize_qkv(q, k, v, "head", True, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k)
    want, want_lse = torch_fmha.varlen_attention(*qkv.tensors, cu_q, cu_k, **qkv.descales, return_lse=True, **kw)
    assert torch.equal(out, want) and torch.equal(lse, want_lse)
