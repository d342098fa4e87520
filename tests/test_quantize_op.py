"""torch_fmha::quantize_fp8 / quantize_qkv (the op behind torch_fmha.quantize_qkv and
quantize_fp8) on CPU: bitwise the tensor-op quantizer it replaced (kept below as the
reference), FP8 rounding on every bfloat16 value and on random float32 bit patterns,
non-finite and empty groups, strided inputs, errors identical in eager and fake mode,
opcheck, and one op call per quantize_qkv in a compiled graph.
The CUDA kernels are compared bitwise against this CPU op in tests/gpu/test_quantize_sm90.py."""

from __future__ import annotations

import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import torch_fmha
from op_defaults import complete, filled_ops
from inputs import packed_v_columns
from opcheck_samples import FP8_UTILS, quantize_samples

FP8 = torch.float8_e4m3fn
NAN, INF = math.nan, math.inf
# The ops with the arguments a call leaves out filled in (the schemas have no defaults).
ops = filled_ops


# ------------------------------------------------ reference: the tensor-op quantizer ---
# torch_fmha/quantize.py before the op (commit 7f3eae2), trimmed to the computation.

def _finite_abs(x):
    return x.abs().nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)


def _ref_descale(amax):
    return amax.float().clamp_min(torch.finfo(torch.float32).tiny) / 448.0


def ref_quantize(x, per_head, group_size=1, cu_seqlens=None, rotated=False):
    if not per_head:
        descale = _ref_descale(_finite_abs(x).amax()).reshape(1)
        scale_b = descale
    elif x.dim() == 4:
        b, heads = x.size(0), x.size(2)
        amax = _finite_abs(x).amax(dim=(1, 3)).view(b, heads // group_size, group_size).amax(-1)
        descale = _ref_descale(amax)
        scale_b = descale.repeat_interleave(group_size, dim=1)[:, None, :, None]
    else:
        heads, nb = x.size(1), cu_seqlens.size(0) - 1
        rows = torch.arange(x.size(0))
        seq = torch.searchsorted(cu_seqlens[1:].to(rows.dtype), rows, right=True).clamp(max=nb - 1)
        row_amax = _finite_abs(x).amax(dim=-1).float()
        amax = torch.zeros(nb, heads).scatter_reduce(0, seq[:, None].expand(-1, heads), row_amax, "amax")
        descale = _ref_descale(amax.view(nb, heads // group_size, group_size).amax(-1))
        scale_b = descale.repeat_interleave(group_size, dim=1)[seq][:, :, None]
    x8 = (x / scale_b).nan_to_num(nan=NAN, posinf=NAN, neginf=NAN).to(FP8)
    if rotated:
        descale = descale * (1.0 / math.sqrt(int(x.size(-1))))
    return x8, descale


def six(out):
    """quantize_qkv's (q8, k8, v8, descales [3, ...]) as QuantizedQKV's six tensors."""
    return (*out[:3], out[3][0], out[3][1], out[3][2])


def assert_bitwise(got, want, what):
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{what}[{i}]: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
        if a.dtype == FP8:
            diff = a.view(torch.uint8) != b.view(torch.uint8)
        else:
            diff = (a.view(torch.int32) != b.view(torch.int32))
        assert not diff.any(), f"{what}[{i}]: {int(diff.sum())} of {diff.numel()} differ, first at " \
                               f"{diff.nonzero()[0].tolist()}: {a[tuple(diff.nonzero()[0])]} vs {b[tuple(diff.nonzero()[0])]}"


def _poisoned(shape, dtype, seed, outliers=True, nonfinite=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    if outliers:  # 0.1% of the entries x10, a whole channel x30, one head tiny (subnormal FP8)
        x = torch.where(torch.rand(*shape, generator=g) < 1e-3, x * 10, x)
        x[..., 3] *= 30
        x[..., 1, :] *= 1e-4
    x = x.to(dtype)
    if nonfinite:
        flat = x.view(-1)
        n = flat.numel()
        flat[n // 7] = NAN
        flat[n // 3] = INF
        flat[n // 2] = -INF
    return x


# ----------------------------------------------------------------- bitwise reference ---

DTYPES = [torch.bfloat16, torch.float16, torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("per_head", [False, True], ids=["tensor", "head"])
@pytest.mark.parametrize("rotate", [False, True], ids=["plain", "rotated"])
def test_qkv_dense_matches_reference(dtype, per_head, rotate):
    q, k, v = (_poisoned((2, 33, h, 64), dtype, seed) for h, seed in ((8, 0), (2, 1), (2, 2)))
    got = six(ops.quantize_qkv(q, k, v, per_head, rotate))
    want = [ref_quantize(q, per_head, 4, rotated=rotate), ref_quantize(k, per_head, rotated=rotate),
            ref_quantize(v, per_head)]
    assert_bitwise(got, [w[0] for w in want] + [w[1] for w in want], f"{dtype} per_head={per_head}")
    # and the public API (which calls the op) gives the same
    api = torch_fmha.quantize_qkv(q, k, v, "head" if per_head else "tensor")
    if not rotate:
        assert_bitwise(api, got, "quantize_qkv API")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("per_head", [False, True], ids=["tensor", "head"])
def test_qkv_packed_matches_reference(dtype, per_head):
    cu_q = torch.tensor([0, 5, 5, 30, 66], dtype=torch.int32)
    cu_k = torch.tensor([0, 0, 17, 40, 41], dtype=torch.int32)
    q = _poisoned((66, 8, 64), dtype, 3)
    k, v = _poisoned((41, 2, 64), dtype, 4), _poisoned((41, 2, 64), dtype, 5)
    got = six(ops.quantize_qkv(q, k, v, per_head, cu_seqlens_q=cu_q if per_head else None,
                               cu_seqlens_k=cu_k if per_head else None))
    want = [ref_quantize(q, per_head, 4, cu_q), ref_quantize(k, per_head, 1, cu_k), ref_quantize(v, per_head, 1, cu_k)]
    assert_bitwise(got, [w[0] for w in want] + [w[1] for w in want], f"packed {dtype}")
    if per_head:  # an empty sequence gets the descale of an all-zero group
        assert got[3][1].eq(torch.finfo(torch.float32).tiny / 448).all()
        assert got[4][0].eq(torch.finfo(torch.float32).tiny / 448).all()


# ------------------------------------------------------------------------ packed v ---

def packed_v_shape(v):
    """The documented shape of pack_v's v8 for v [B, S, Hkv, D]: [B, Hkv, D, ceil(S / 16), 16]."""
    b, s, hkv, d = v.shape
    return (b, hkv, d, (s + 15) // 16, 16)


def pack_by_hand(v8):
    """The standard v8 [B, S, Hkv, D] as a packed v, from csrc/vt_key_order.h's definition:
    (b, h, r, g, j) = v8[b, 16 g + vt_key_of_slot(j), h, packed_v_column_of_row(r, D)], zero
    where that key is >= S; vt_key_of_slot spelled out as the header's comment states it
    (slot bits b3 b2 b1 b0 hold key bits b1 b3 b2 b0); the row order from tests/inputs.py's
    packed_v_columns (written from the header's comment)."""
    b, s, hkv, d = v8.shape
    groups = (s + 15) // 16
    out = torch.zeros(b, hkv, d, groups, 16, dtype=torch.uint8)
    src = v8.view(torch.uint8)[..., packed_v_columns(d)]  # [B, S, Hkv, row]: row r holds its column
    for j in range(16):
        key_in_group = (((j >> 1) & 1) << 3) | (((j >> 3) & 1) << 2) | (((j >> 2) & 1) << 1) | (j & 1)
        for g in range(groups):
            if 16 * g + key_in_group < s:
                out[..., g, j] = src[:, 16 * g + key_in_group]
    return out.view(FP8)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("per_head", [False, True], ids=["tensor", "head"])
@pytest.mark.parametrize("seqlen", [1, 15, 16, 17, 33])
def test_qkv_pack_v_is_the_standard_v_packed(dtype, per_head, seqlen):
    """pack_v=True: v8 is a contiguous FP8 [B, Hkv, D, G, 16], bitwise the standard v8 packed
    by hand (padding slots zero), and unpack_v gives the standard v8 back; q8, k8 and the
    descales are those of the standard call."""
    q, k, v = (_poisoned((2, seqlen, h, 64), dtype, s, nonfinite=seqlen > 1) for h, s in ((4, 0), (2, 1), (2, 2)))
    std = ops.quantize_qkv(q, k, v, per_head, True)
    got = ops.quantize_qkv(q, k, v, per_head, True, pack_v=True)
    assert got[2].shape == packed_v_shape(v) and got[2].is_contiguous() and got[2].dtype == FP8
    assert got[2].untyped_storage().nbytes() == 2 * 2 * 64 * ((seqlen + 15) // 16 * 16)
    assert std[2].shape == v.shape and std[2].is_contiguous()
    assert_bitwise([got[2], got[0], got[1], got[3]], [pack_by_hand(std[2]), std[0], std[1], std[3]], "packed vs std")
    assert_bitwise([torch_fmha.unpack_v(got[2], seqlen)], [std[2]], "unpack_v")


def test_qkv_pack_v_strided_input():
    """v a view of a fused projection [B, S, 3, Hkv, D]: same bytes as from its contiguous copy."""
    fused = _poisoned((2, 21, 3, 2, 64), torch.bfloat16, 6)
    q, k, v = fused.unbind(2)
    got = ops.quantize_qkv(q, k, v, True, pack_v=True)
    assert_bitwise(got, ops.quantize_qkv(q, k, v.contiguous(), True, pack_v=True), "strided v")
    assert got[2].shape == packed_v_shape(v) and got[2].is_contiguous()


def test_qkv_pack_v_empty():
    """No keys: [B, Hkv, D, 0, 16], the fake's too."""
    qkv = torch.empty(2, 0, 4, 64), torch.empty(2, 0, 2, 64), torch.empty(2, 0, 2, 64)
    got = ops.quantize_qkv(*qkv, True, pack_v=True)
    assert got[2].shape == (2, 2, 64, 0, 16)
    with FakeTensorMode() as mode:
        fake = ops.quantize_qkv(*(mode.from_tensor(t) for t in qkv), True, pack_v=True)
    assert (fake[2].shape, fake[2].stride()) == (got[2].shape, got[2].stride())


def _pack_v_samples():
    g = torch.Generator().manual_seed(3)
    samples = []
    for dtype, s in ((torch.bfloat16, 9), (torch.float32, 32)):
        q, k, v = (torch.randn(2, s, h, 64, generator=g).to(dtype) for h in (4, 2, 2))
        samples += [((q, k, v, True), dict(pack_v=True)),
                    ((q, k, v, False), dict(qk_rotated=True, pack_v=True))]
    return samples


@pytest.mark.parametrize("i", range(len(_pack_v_samples())))
def test_opcheck_pack_v(i):
    args, kwargs = _pack_v_samples()[i]
    torch.library.opcheck(torch.ops.torch_fmha.quantize_qkv, args, complete("quantize_qkv", 4, kwargs),
                          test_utils=FP8_UTILS)


@pytest.mark.parametrize("seqlen", [0, 1, 9, 16, 17, 32])
def test_fake_pack_v_has_the_real_shape_and_strides(seqlen):
    q, k, v = (torch.randn(2, seqlen, h, 64, dtype=torch.bfloat16) for h in (4, 2, 2))
    real = ops.quantize_qkv(q, k, v, True, pack_v=True)
    with FakeTensorMode() as mode:
        fake = ops.quantize_qkv(*(mode.from_tensor(t) for t in (q, k, v)), True, pack_v=True)
    for r, f in zip(real, fake):
        assert (f.shape, f.stride(), f.storage_offset(), f.dtype) == (r.shape, r.stride(), r.storage_offset(), r.dtype)


def test_compiled_pack_v_shape_and_bytes():
    """Inductor, fullgraph, static and dynamic shapes: the compiled v8 has the eager shape,
    strides and bytes (S = 5: one group, where tracing's contiguity test of the packed v
    guards differently: one recompile with dynamic shapes)."""
    def fn(q, k, v):
        return torch_fmha.quantize_qkv(q, k, v, "head", pack_v=True)

    # Inductor's FX graph cache keys on the graph, not on a custom op's fake: this graph's text is
    # the one the keys-contiguous v of earlier versions compiled to (4-D), so a warm cache from
    # before the packed v would replay that (README, quantize_qkv). Compile afresh here.
    for dynamic in (False, True):
        torch._dynamo.reset()
        compiled = torch.compile(fn, fullgraph=True, dynamic=dynamic,
                                 options={"fx_graph_cache": False})
        for seqlen in (17, 40, 48, 5):
            q, k, v = (_poisoned((2, seqlen, h, 64), torch.bfloat16, s) for h, s in ((4, 0), (2, 1), (2, 2)))
            got, want = compiled(q, k, v), fn(q, k, v)
            assert got.v.shape == want.v.shape == packed_v_shape(v), (dynamic, seqlen)
            assert got.v.stride() == want.v.stride(), (dynamic, seqlen)
            assert_bitwise(got, want, f"compiled dynamic={dynamic} S={seqlen}")
    torch._dynamo.reset()


@pytest.mark.parametrize("group_size", [1, 2, 4])
def test_quantize_fp8_group_sizes_and_strided_input(group_size):
    """group_size as quantize_fp8 takes it; a strided view (q out of a fused qkv
    projection, as in tools/overhead.py --stack) reads the same as its contiguous copy."""
    fused = _poisoned((2, 17, 3, 4, 64), torch.bfloat16, 6)
    x = fused.unbind(2)[1]
    assert not x.is_contiguous()
    got = ops.quantize_fp8(x, True, group_size)
    assert got[0].is_contiguous()
    assert_bitwise(got, ref_quantize(x, True, group_size), "strided")
    assert_bitwise(got, ops.quantize_fp8(x.contiguous(), True, group_size), "strided vs contiguous")
    api = torch_fmha.quantize_fp8(x, "head", group_size=group_size)
    assert_bitwise(api, got, "quantize_fp8 API")
    cu = torch.tensor([0, 9, 34], dtype=torch.int32)
    xp = x.reshape(34, 4, 64)  # a strided packed view (rows 0..16 batch 0, 17..33 batch 1)
    assert_bitwise(ops.quantize_fp8(xp, True, group_size, cu), ref_quantize(xp, True, group_size, cu), "packed")


def test_fp8_rounding_every_bfloat16_value():
    """All 65536 bfloat16 bit patterns through the cast (round half to even, subnormals,
    saturation, NaN/Inf -> NaN), per tensor and per head (different scales)."""
    x = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(torch.bfloat16).reshape(4, 64, 4, 64)
    for per_head in (False, True):
        assert_bitwise(ops.quantize_fp8(x, per_head), ref_quantize(x, per_head), f"bf16 per_head={per_head}")


def test_fp8_rounding_random_float32_bit_patterns():
    """Random float32 bit patterns (every exponent), grouped so that the scales span
    float32's range, and values at exact FP8 rounding ties."""
    g = torch.Generator().manual_seed(7)
    bits = torch.randint(-2**31, 2**31 - 1, (8, 32, 16, 64), generator=g, dtype=torch.int64).to(torch.int32)
    x = bits.view(torch.float32)
    assert_bitwise(ops.quantize_fp8(x, True), ref_quantize(x, True), "random bits per head")
    # ties: with amax 448 the scale is 1, and m + 0.5 ulp of e4m3 are exact float32 values
    ties = torch.tensor([448.0] + [(i + 0.5) * 2.0 ** -9 for i in range(16)]
                        + [(8 + i + 0.5) * 2.0 ** (e - 3) for e in range(-6, 9) for i in range(8)])
    ties = torch.cat([ties, -ties]).reshape(1, -1, 1, 1)
    assert_bitwise(ops.quantize_fp8(ties, False), ref_quantize(ties, False), "ties")


def test_all_nonfinite_and_all_zero_groups():
    x = torch.randn(2, 4, 4, 64)
    x[0, :, 1] = NAN
    x[1, :, 2] = 0.0
    x[1, :, 3] = INF
    got = ops.quantize_fp8(x, True)
    assert_bitwise(got, ref_quantize(x, True), "degenerate groups")
    tiny = torch.finfo(torch.float32).tiny / 448
    assert got[1][0, 1] == tiny and got[1][1, 2] == tiny and got[1][1, 3] == tiny
    assert (got[0].view(torch.uint8)[0, :, 1] == 0x7F).all()  # NaN stays NaN
    assert (got[0].view(torch.uint8)[1, :, 3] == 0x7F).all()  # Inf becomes NaN, not 448


def test_empty_tensors():
    """Zero rows: descales of empty groups, no error (the tensor-op version raised on
    an amax over nothing for per-tensor scales)."""
    tiny = torch.finfo(torch.float32).tiny / 448
    x8, d = ops.quantize_fp8(torch.empty(2, 0, 4, 64), True, 2)
    assert x8.shape == (2, 0, 4, 64) and d.shape == (2, 2) and d.eq(tiny).all()
    x8, d = ops.quantize_fp8(torch.empty(0, 4, 64), False)
    assert d.shape == (1,) and d.eq(tiny).all()


# ----------------------------------------------------------------------------- errors ---

X, XP = torch.randn(2, 8, 4, 64), torch.randn(10, 4, 64)
KV, KVP = torch.randn(2, 8, 2, 64), torch.randn(10, 2, 64)
CU = torch.tensor([0, 4, 10], dtype=torch.int32)
F = "torch_fmha.quantize_fp8: "
Q = "torch_fmha.quantize_qkv: "
ERROR_CASES = [
    ("rank", ops.quantize_fp8, (torch.randn(8, 64), False), {},
     F + "x must be [batch, seqlen, heads, head_dim] (dense) or [total, heads, head_dim] (packed), got shape [8, 64]"),
    ("dtype", ops.quantize_fp8, (X.to(FP8), False), {},
     F + "x has dtype torch.float8_e4m3fn, expected one of torch.bfloat16, torch.float16, torch.float32, "
         "torch.float64"),
    ("group_size", ops.quantize_fp8, (X, True), dict(group_size=3),
     F + "group_size must be >= 1 and divide the 4 heads of x, got 3"),
    ("group_size_0", ops.quantize_fp8, (X, True), dict(group_size=0),
     F + "group_size must be >= 1 and divide the 4 heads of x, got 0"),
    ("cu_missing", ops.quantize_fp8, (XP, True), {},
     F + "cu_seqlens is required for per-head scales of packed [total, heads, head_dim] inputs (one scale per "
         "sequence)"),
    ("cu_dense", ops.quantize_fp8, (X, True), dict(cu_seqlens=CU),
     F + "cu_seqlens applies to per-head scales of packed [total, heads, head_dim] inputs only"),
    ("cu_per_tensor", ops.quantize_fp8, (XP, False), dict(cu_seqlens=CU),
     F + "cu_seqlens applies to per-head scales of packed [total, heads, head_dim] inputs only"),
    ("cu_dtype", ops.quantize_fp8, (XP, True), dict(cu_seqlens=CU.long()),
     F + "cu_seqlens must have dtype torch.int32, got torch.int64"),
    ("cu_rank", ops.quantize_fp8, (XP, True), dict(cu_seqlens=CU.view(1, 3)),
     F + "cu_seqlens must be a 1-D tensor [batch + 1] with at least one element, got shape [1, 3]"),
    ("cu_stride", ops.quantize_fp8, (XP, True), dict(cu_seqlens=torch.zeros(6, dtype=torch.int32)[::2]),
     F + "cu_seqlens must be contiguous, got stride 2"),
    ("qkv_k_rank", ops.quantize_qkv, (X, KVP, KVP, True), {},
     Q + "k must have q's rank 4, got shape [10, 2, 64]"),
    ("qkv_v_dtype", ops.quantize_qkv, (X, KV, KV.to(torch.int32), True), {},
     Q + "v has dtype torch.int32, expected one of torch.bfloat16, torch.float16, torch.float32, torch.float64"),
    ("qkv_kv_shape", ops.quantize_qkv, (X, KV, torch.randn(2, 9, 2, 64), True), {},
     Q + "k and v must have the same shape, got k [2, 8, 2, 64] and v [2, 9, 2, 64]"),
    ("qkv_batch", ops.quantize_qkv, (X, KV[:1], KV[:1], False), {},
     Q + "k has batch size 1 but q has batch size 2"),
    ("qkv_head_dim", ops.quantize_qkv, (X, KV[..., :32], KV[..., :32], False), {},
     Q + "k has head_dim 32 but q has head_dim 64"),
    ("qkv_gqa", ops.quantize_qkv, (torch.randn(2, 8, 3, 64), KV, KV, True), {},
     Q + "q has 3 heads, which is not a multiple of the 2 heads of k and v"),
    ("qkv_cu_k_missing", ops.quantize_qkv, (XP, KVP, KVP, True), dict(cu_seqlens_q=CU),
     Q + "cu_seqlens_k is required for per-head scales of packed [total, heads, head_dim] inputs (one scale per "
         "sequence)"),
    ("qkv_pack_v_packed_input", ops.quantize_qkv, (XP, KVP, KVP, False), dict(pack_v=True),
     Q + "pack_v applies to dense [batch, seqlen, heads, head_dim] inputs only, got v of shape "
         "[10, 2, 64]"),
    ("qkv_cu_count", ops.quantize_qkv, (XP, KVP, KVP, True),
     dict(cu_seqlens_q=CU, cu_seqlens_k=torch.tensor([0, 10], dtype=torch.int32)),
     Q + "cu_seqlens_k has 2 elements but cu_seqlens_q has 3; both must have batch + 1"),
]


def _message(fn) -> str:
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value).splitlines()[0]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_eager_and_fake_agree(case):
    _, op, args, kwargs, expected = case
    eager = _message(lambda: op(*args, **kwargs))
    assert eager == expected
    with FakeTensorMode() as mode:
        fake_args = tuple(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args)
        fake_kwargs = {n: mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for n, a in kwargs.items()}
        fake = _message(lambda: op(*fake_args, **fake_kwargs))
    assert fake == eager


def test_errors_under_torch_compile():
    """The fake kernel's error is what a compiled call reports."""
    def f(x):
        return ops.quantize_fp8(x, True, 3)
    with pytest.raises(Exception, match=r"torch_fmha.quantize_fp8: group_size must be >= 1 and divide the 4 heads "
                                         r"of x, got 3"):
        torch.compile(f, backend="eager", fullgraph=True)(X)


def test_device_mismatch_fake():
    with FakeTensorMode() as mode:
        q = mode.from_tensor(X)
        k = mode.from_tensor(torch.empty(2, 8, 2, 64, device="meta"))
        msg = _message(lambda: ops.quantize_qkv(q, k, k, True))
    assert msg == Q + "k is on meta but q is on cpu; all tensors must be on one device"


@pytest.mark.parametrize("cu, expected", [
    ([0, 7, 6], "cu_seqlens must be non-decreasing, but cu_seqlens[2] = 6 < cu_seqlens[1] = 7"),
    ([1, 4, 10], "cu_seqlens[0] must be 0, got 1"),
    ([0, 4, 9], "cu_seqlens[-1] = 9 must equal x.size(0) = 10"),
])
def test_cu_seqlens_values_checked_on_cpu(cu, expected):
    """As for varlen_fwd: the values are read where that costs no host sync (CPU). The
    tensor-op quantizer attributed rows past cu_seqlens[-1] to the last sequence."""
    assert _message(lambda: ops.quantize_fp8(XP, True, 1, torch.tensor(cu, dtype=torch.int32))) == F + expected
    with pytest.raises(RuntimeError, match=r"cu_seqlens_k\[-1\] = 9 must equal k.size\(0\) = 10"):
        ops.quantize_qkv(XP, KVP, KVP, True, cu_seqlens_q=CU, cu_seqlens_k=torch.tensor([0, 4, 9], dtype=torch.int32))


# ----------------------------------------------------------------- opcheck, compile ---

@pytest.mark.parametrize("i", range(len(quantize_samples())))
def test_opcheck(i):
    op, args, kwargs = quantize_samples()[i]
    torch.library.opcheck(op, args, kwargs, test_utils=FP8_UTILS)


def test_compiled_quantize_qkv_is_one_op_call():
    """Inside a compiled graph quantize_qkv is one call of the op (what Inductor emits as
    one extern kernel call), the rotation one matmul each for q and k against one Hadamard
    matrix; the compiled result
    is bitwise the eager one (the tensor-op version was within one FP8 step)."""
    q, k, v = (_poisoned((2, 16, h, 64), torch.bfloat16, s) for h, s in ((4, 0), (2, 1), (2, 2)))
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm

    def fn(q, k, v, rotate):
        return torch_fmha.quantize_qkv(q, k, v, "head", rotate)

    for rotate in (False, True):
        torch._dynamo.reset()
        graphs.clear()
        torch.compile(fn, backend=backend, fullgraph=True)(q, k, v, rotate)
        targets = [n.target for n in graphs[0].graph.nodes if n.op == "call_function"]
        op = torch.ops.torch_fmha.quantize_qkv
        assert targets.count(op.default) + targets.count(op) == 1, targets
        ops_other = [t for t in targets if "quantize_qkv" not in str(t) and "getitem" not in str(t)]
        if rotate:  # matmul(q, H), matmul(k, H), H built once (Sylvester: one arange)
            assert [t for t in ops_other if "matmul" in str(t)] == [torch.matmul] * 2, ops_other
            assert ops_other.count(torch.arange) == 1, ops_other
        else:
            assert ops_other == [], ops_other
    torch._dynamo.reset()
    got = torch.compile(fn, fullgraph=True)(q, k, v, False)
    assert_bitwise(got, fn(q, k, v, False), "inductor vs eager")


def test_quantize_outputs_do_not_hide_autograd():
    """The op has no derivative; an input that requires grad must not silently give FP8
    outputs detached from it (the later backward reports the missing derivative, as the
    tensor-op version's FP8 attention backward did)."""
    x = torch.randn(1, 4, 2, 64, requires_grad=True)
    x8, d = ops.quantize_fp8(x, True)
    assert x8.requires_grad and d.requires_grad
