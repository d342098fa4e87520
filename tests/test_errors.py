"""Every bad input gets a clear error naming the argument, the expectation and
what came; the C++ kernel (eager) and the fake kernel (torch.compile's trace)
must say the same thing."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import torch_fmha  # noqa: F401  (loads the ops)
from op_defaults import filled_ops

FP8 = torch.float8_e4m3fn
# The ops with the arguments a call leaves out filled in (the schemas have no defaults).
ops = filled_ops


def t(*shape, dtype=FP8):
    return torch.randn(*shape).to(dtype)


def cu(*vals, dtype=torch.int32):
    return torch.tensor(vals, dtype=dtype)


Q, K = t(2, 8, 4, 64), t(2, 8, 2, 64)
VQ, VK = t(10, 4, 64), t(10, 2, 64)
CU = cu(0, 4, 10)
S1 = torch.ones(1)
# Paged KV: a pool of 6 pages of 16 keys, 2 sequences.
PK = t(6, 16, 2, 64)
PT = torch.zeros(2, 3, dtype=torch.int32)
SU = cu(5, 9)

# (id, op, args, kwargs, expected message fragment)
CASES = [
    ("q_dtype", ops.fwd, (t(2, 8, 4, 64, dtype=torch.int32), K, K), {},
     "torch_fmha.fwd: q has dtype torch.int32, expected one of torch.float8_e4m3fn"),
    ("k_dtype", ops.fwd, (Q, t(2, 8, 2, 64, dtype=torch.bfloat16), K), {},
     "torch_fmha.fwd: k has dtype torch.bfloat16 but q has dtype torch.float8_e4m3fn; q, k and v must share one dtype"),
    ("q_rank", ops.fwd, (VQ, K, K), {},
     "torch_fmha.fwd: q must have rank 4 [batch, seqlen_q, heads, head_dim], got shape [10, 4, 64]"),
    ("varlen_q_rank", ops.varlen_fwd, (Q, VK, VK, CU, CU), {},
     "torch_fmha.varlen_fwd: q must have rank 3 [total_q, heads, head_dim], got shape [2, 8, 4, 64]"),
    ("kv_shape", ops.fwd, (Q, K, t(2, 9, 2, 64)), {},
     "torch_fmha.fwd: k and v must have the same shape, got k [2, 8, 2, 64] and v [2, 9, 2, 64]"),
    ("gqa", ops.fwd, (t(2, 8, 3, 64), K, K), {},
     "torch_fmha.fwd: q has 3 heads, which is not a multiple of the 2 heads of k and v"),
    ("head_dim", ops.fwd, (t(2, 8, 4, 32), t(2, 8, 2, 32), t(2, 8, 2, 32)), {},
     "torch_fmha.fwd: head_dim (q.size(-1)) is 32, expected one of 64, 128, 256"),
    ("k_head_dim", ops.fwd, (Q, t(2, 8, 2, 128), t(2, 8, 2, 128)), {},
     "torch_fmha.fwd: k has head_dim 128 but q has head_dim 64"),
    ("batch", ops.fwd, (Q, t(3, 8, 2, 64), t(3, 8, 2, 64)), {},
     "torch_fmha.fwd: k has batch size 3 but q has batch size 2"),
    ("last_dim", ops.fwd, (t(2, 8, 4, 128)[..., ::2], K, K), {},
     "torch_fmha.fwd: q must have a contiguous last dimension (stride 1), got stride 2"),
    ("v_last_dim", ops.fwd, (Q, K, t(2, 8, 2, 128)[..., ::2]), {},
     "torch_fmha.fwd: v must have a contiguous last dimension (stride 1), got stride 2"),
    ("v_keys_contiguous_view", ops.fwd, (Q, K, t(2, 2, 64, 8).permute(0, 3, 1, 2)), {},
     "torch_fmha.fwd: v must have a contiguous last dimension (stride 1), got stride 8"),
    ("v_rank", ops.fwd, (Q, K, t(2, 8, 2)), {},
     "torch_fmha.fwd: v must have rank 4 [batch, seqlen_k, heads_kv, head_dim], or rank 5 for a packed v "
     "[batch, heads_kv, head_dim, ceil(seqlen_k / 16), 16] from quantize_qkv(pack_v=True), got shape [2, 8, 2]"),
    ("packed_v_shape", ops.fwd, (Q, K, t(2, 2, 64, 2, 16)), {},
     "torch_fmha.fwd: a packed v (rank 5) must have shape [batch, heads_kv, head_dim, ceil(seqlen_k / 16), 16] "
     "= [2, 2, 64, 1, 16] for k of shape [2, 8, 2, 64], got [2, 2, 64, 2, 16]"),
    ("packed_v_dtype", ops.fwd, (t(2, 8, 4, 64, dtype=torch.bfloat16), t(2, 8, 2, 64, dtype=torch.bfloat16),
                                 t(2, 2, 64, 1, 16, dtype=torch.bfloat16)), {},
     "torch_fmha.fwd: a packed v must have dtype torch.float8_e4m3fn (quantize_qkv(pack_v=True) writes it), "
     "got torch.bfloat16"),
    ("packed_v_contiguous", ops.fwd, (Q, K, t(2, 64, 2, 1, 16).transpose(1, 2)), {},
     "torch_fmha.fwd: a packed v must be contiguous, got strides [2048, 16, 32, 16, 1]"),
    ("varlen_packed_v", ops.varlen_fwd, (VQ, VK, t(2, 64, 1, 16), CU, CU), {},
     "torch_fmha.varlen_fwd: v must have rank 3"),
    ("cu_dtype", ops.varlen_fwd, (VQ, VK, VK, cu(0, 4, 10, dtype=torch.int64), CU), {},
     "torch_fmha.varlen_fwd: cu_seqlens_q must have dtype torch.int32, got torch.int64"),
    ("cu_rank", ops.varlen_fwd, (VQ, VK, VK, CU, CU.view(1, 3)), {},
     "torch_fmha.varlen_fwd: cu_seqlens_k must be a 1-D tensor [batch + 1] with at least one element, got shape [1, 3]"),
    ("cu_length", ops.varlen_fwd, (VQ, VK, VK, CU, cu(0, 10)), {},
     "torch_fmha.varlen_fwd: cu_seqlens_k has 2 elements but cu_seqlens_q has 3; both must have batch + 1"),
    ("max_seqlen", ops.varlen_fwd, (VQ, VK, VK, CU, CU), dict(max_seqlen_q=-1),
     "torch_fmha.varlen_fwd: max_seqlen_q must be >= 0, got -1"),
    ("descale_shape", ops.fwd, (Q, K, K), dict(q_descale=torch.ones(2, 4)),
     "torch_fmha.fwd: q_descale must have shape [1] or [batch, heads_kv] = [2, 2], got [2, 4]"),
    ("descale_dtype", ops.fwd, (Q, K, K), dict(k_descale=torch.ones(1, dtype=torch.float64)),
     "torch_fmha.fwd: k_descale must have dtype torch.float32, got torch.float64"),
    ("descale_non_fp8", ops.fwd, (t(2, 8, 4, 64, dtype=torch.bfloat16),) + (t(2, 8, 2, 64, dtype=torch.bfloat16),) * 2,
     dict(v_descale=S1),
     "torch_fmha.fwd: v_descale applies to torch.float8_e4m3fn inputs only, but q has dtype torch.bfloat16"),
    ("varlen_descale_shape", ops.varlen_fwd, (VQ, VK, VK, CU, CU), dict(k_descale=torch.ones(3, 2)),
     "torch_fmha.varlen_fwd: k_descale must have shape [1] or [batch, heads_kv] = [2, 2], got [3, 2]"),
    ("out_scale_missing", ops.fwd, (Q, K, K), dict(out_dtype=FP8),
     "torch_fmha.fwd: out_scale is required when out_dtype is torch.float8_e4m3fn"),
    ("out_scale_unused", ops.fwd, (Q, K, K), dict(out_scale=S1),
     "torch_fmha.fwd: out_scale applies to out_dtype torch.float8_e4m3fn only, got out_dtype torch.bfloat16"),
    ("out_scale_shape", ops.fwd, (Q, K, K), dict(out_dtype=FP8, out_scale=torch.ones(2, 2)),
     "torch_fmha.fwd: out_scale must have shape [1], got [2, 2]"),
    ("out_dtype_fp8", ops.fwd, (Q, K, K), dict(out_dtype=torch.float32),
     "torch_fmha.fwd: out_dtype for torch.float8_e4m3fn inputs must be one of torch.bfloat16, torch.float16, "
     "torch.float8_e4m3fn, got torch.float32"),
    ("out_dtype_bf16", ops.fwd, (t(2, 8, 4, 64, dtype=torch.bfloat16),) + (t(2, 8, 2, 64, dtype=torch.bfloat16),) * 2,
     dict(out_dtype=torch.float16),
     "torch_fmha.fwd: out_dtype must equal the input dtype torch.bfloat16 for non-FP8 inputs, got torch.float16"),
    ("window_left", ops.fwd, (Q, K, K), dict(window_left=-2),
     "torch_fmha.fwd: window_left must be -1 (unbounded) or >= 0, got -2"),
    ("window_right", ops.fwd, (Q, K, K), dict(window_right=-5),
     "torch_fmha.fwd: window_right must be -1 (unbounded) or >= 0, got -5"),
    ("causal_window", ops.fwd, (Q, K, K), dict(causal=True, window_right=3),
     "torch_fmha.fwd: causal=True fixes window_right to 0, got window_right=3"),
    ("softmax_scale", ops.fwd, (Q, K, K), dict(softmax_scale=float("nan")),
     "torch_fmha.fwd: softmax_scale must be a finite number, got nan"),
    ("softmax_scale_negative", ops.fwd, (Q, K, K), dict(softmax_scale=-0.125),
     "torch_fmha.fwd: softmax_scale must be >= 0, got -0.125"),
    ("softcap_nan", ops.fwd, (Q, K, K), dict(softcap=float("nan")),
     "torch_fmha.fwd: softcap must be a finite number >= 0 (0 = off), got nan"),
    ("softcap_negative", ops.varlen_fwd, (VQ, VK, VK, CU, CU), dict(softcap=-30.0),
     "torch_fmha.varlen_fwd: softcap must be a finite number >= 0 (0 = off), got -30"),
    ("sinks_dtype", ops.fwd, (Q, K, K), dict(sinks=torch.zeros(4, dtype=torch.bfloat16)),
     "torch_fmha.fwd: sinks must have dtype torch.float32 (one logit per query head), got torch.bfloat16"),
    ("sinks_shape", ops.varlen_fwd, (VQ, VK, VK, CU, CU), dict(sinks=torch.zeros(2)),
     "torch_fmha.varlen_fwd: sinks must have shape [heads] = [4], got [2]"),
    ("sinks_stride", ops.fwd, (Q, K, K), dict(sinks=torch.zeros(8)[::2]),
     "torch_fmha.fwd: sinks must be contiguous, got stride 2"),
    ("seqused_dtype", ops.varlen_fwd, (VQ, VK, VK, CU, CU), dict(seqused_k=cu(4, 6, dtype=torch.int64)),
     "torch_fmha.varlen_fwd: seqused_k must have dtype torch.int32, got torch.int64"),
    ("seqused_shape", ops.varlen_fwd, (VQ, VK, VK, CU, CU), dict(seqused_k=cu(4, 6, 1)),
     "torch_fmha.varlen_fwd: seqused_k must have shape [batch] = [2], got [3]"),
    ("paged_k_rank", ops.varlen_fwd, (VQ, VK, VK, CU, None), dict(seqused_k=SU, page_table=PT),
     "torch_fmha.varlen_fwd: k must have rank 4 [num_pages, page_size, heads_kv, head_dim] (a page pool: "
     "page_table is given), got shape [10, 2, 64]"),
    ("pool_without_page_table", ops.varlen_fwd, (VQ, PK, PK, CU, CU), {},
     "torch_fmha.varlen_fwd: k must have rank 3 [total_k, heads_kv, head_dim] (a page pool needs page_table), "
     "got shape [6, 16, 2, 64]"),
    ("paged_cu_seqlens_k", ops.varlen_fwd, (VQ, PK, PK, CU, CU), dict(seqused_k=SU, page_table=PT),
     "torch_fmha.varlen_fwd: cu_seqlens_k must be None when page_table is given (seqused_k gives the number "
     "of keys of each sequence)"),
    ("cu_seqlens_k_missing", ops.varlen_fwd, (VQ, VK, VK, CU, None), {},
     "torch_fmha.varlen_fwd: cu_seqlens_k is required unless page_table is given"),
    ("paged_seqused_missing", ops.varlen_fwd, (VQ, PK, PK, CU, None), dict(page_table=PT),
     "torch_fmha.varlen_fwd: seqused_k is required with page_table (it gives each sequence's number of keys)"),
    ("page_table_dtype", ops.varlen_fwd, (VQ, PK, PK, CU, None), dict(seqused_k=SU, page_table=PT.long()),
     "torch_fmha.varlen_fwd: page_table must have dtype torch.int32, got torch.int64"),
    ("page_table_shape", ops.varlen_fwd, (VQ, PK, PK, CU, None), dict(seqused_k=SU, page_table=PT[0]),
     "torch_fmha.varlen_fwd: page_table must have shape [batch, max_pages_per_seq] = [2, *], got [3]"),
    ("page_table_stride", ops.varlen_fwd, (VQ, PK, PK, CU, None),
     dict(seqused_k=SU, page_table=torch.zeros(2, 6, dtype=torch.int32)[:, ::2]),
     "torch_fmha.varlen_fwd: page_table must have a contiguous last dimension (stride 1), got stride 2"),
    ("page_size_small", ops.varlen_fwd, (VQ, t(6, 8, 2, 64), t(6, 8, 2, 64), CU, None),
     dict(seqused_k=SU, page_table=PT),
     "torch_fmha.varlen_fwd: page_size (k.size(1)) is 8, expected a power of two from 16 to 256"),
    ("page_size_not_pow2", ops.varlen_fwd, (VQ, t(6, 48, 2, 64), t(6, 48, 2, 64), CU, None),
     dict(seqused_k=SU, page_table=PT),
     "torch_fmha.varlen_fwd: page_size (k.size(1)) is 48, expected a power of two from 16 to 256"),
    ("pool_heads", ops.varlen_fwd, (VQ, t(6, 16, 3, 64), t(6, 16, 3, 64), CU, None),
     dict(seqused_k=SU, page_table=PT),
     "torch_fmha.varlen_fwd: q has 4 heads, which is not a multiple of the 3 heads of k and v"),
    ("bwd_sinks_shape", ops.bwd, tuple(x.double() for x in (Q, Q, K, K, Q)) + (torch.zeros(2, 4, 8).double(),),
     dict(sinks=torch.zeros(3, dtype=torch.float64)),
     "torch_fmha.bwd: sinks must have shape [heads] = [4], got [3]"),
    ("bwd_fp8", ops.bwd, (Q.bfloat16().to(FP8), Q, K, K, Q.bfloat16(), torch.zeros(2, 4, 8)), {},
     "torch_fmha.bwd: backward of torch.float8_e4m3fn attention is not supported"),
    ("bwd_lse_shape", ops.bwd, tuple(x.bfloat16() for x in (Q, Q, K, K, Q)) + (torch.zeros(2, 8, 4),), {},
     "torch_fmha.bwd: lse has shape [2, 8, 4], expected [2, 4, 8]"),
    # fp8_fwd (torch_fmha.fp8_attention): its own rank checks, then quantize_qkv's, then fwd's.
    ("fp8_fwd_q_rank", ops.fp8_fwd, (VQ.bfloat16(), K.bfloat16(), K.bfloat16(), True), {},
     "torch_fmha.fp8_fwd: q must have rank 4 [batch, seqlen_q, heads, head_dim], got shape [10, 4, 64]"),
    ("fp8_fwd_q_dtype", ops.fp8_fwd, (Q, K.bfloat16(), K.bfloat16(), True), {},
     "torch_fmha.quantize_qkv: q has dtype torch.float8_e4m3fn, expected one of torch.bfloat16"),
    ("fp8_fwd_heads", ops.fp8_fwd, (t(2, 8, 3, 64, dtype=torch.bfloat16), K.bfloat16(), K.bfloat16(), True), {},
     "torch_fmha.quantize_qkv: q has 3 heads, which is not a multiple of the 2 heads of k and v"),
    ("fp8_fwd_head_dim", ops.fp8_fwd, tuple(t(2, 8, 2, 96, dtype=torch.bfloat16) for _ in range(3)) + (False,), {},
     "torch_fmha.fwd: head_dim (q.size(-1)) is 96, expected one of 64, 128, 256"),
    ("fp8_fwd_out_scale", ops.fp8_fwd, (Q.bfloat16(), K.bfloat16(), K.bfloat16(), True),
     dict(out_dtype=FP8), "torch_fmha.fwd: out_scale is required"),
    ("fp8_varlen_fwd_q_rank", ops.fp8_varlen_fwd, (Q.bfloat16(), VK.bfloat16(), VK.bfloat16(), CU, CU), dict(per_head=True),
     "torch_fmha.fp8_varlen_fwd: q must have rank 3 [total_q, heads, head_dim], got shape [2, 8, 4, 64]"),
    ("fp8_varlen_fwd_cu_dtype", ops.fp8_varlen_fwd, (VQ.bfloat16(), VK.bfloat16(), VK.bfloat16(), CU.long(), CU),
     dict(per_head=True), "torch_fmha.quantize_qkv: cu_seqlens_q must have dtype torch.int32, got torch.int64"),
    ("fp8_varlen_fwd_cu_len", ops.fp8_varlen_fwd, (VQ.bfloat16(), VK.bfloat16(), VK.bfloat16(), CU, cu(0, 10)),
     dict(per_head=False), "torch_fmha.varlen_fwd: cu_seqlens_k has 2 elements but cu_seqlens_q has 3"),
]

# Checks that read cu_seqlens' values: eager (CPU) only, never a host sync on CUDA.
VALUE_CASES = [
    ("cu_start", (VQ, VK, VK, cu(1, 4, 10), CU), "torch_fmha.varlen_fwd: cu_seqlens_q[0] must be 0, got 1"),
    ("cu_decreasing", (VQ, VK, VK, CU, cu(0, 7, 6)),
     "torch_fmha.varlen_fwd: cu_seqlens_k must be non-decreasing, but cu_seqlens_k[2] = 6 < cu_seqlens_k[1] = 7"),
    ("cu_total", (VQ, VK, VK, cu(0, 4, 9), CU),
     "torch_fmha.varlen_fwd: cu_seqlens_q[-1] = 9 must equal q.size(0) = 10"),
]


def _message(fn) -> str:
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value).splitlines()[0]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_eager_and_fake_errors_agree(case):
    _, op, args, kwargs, expected = case
    eager = _message(lambda: op(*args, **kwargs))
    assert expected in eager
    with FakeTensorMode() as mode:
        fake_args = tuple(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args)
        fake_kwargs = {n: mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for n, a in kwargs.items()}
        fake = _message(lambda: op(*fake_args, **fake_kwargs))
    assert fake == eager


@pytest.mark.parametrize("case", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_cu_seqlens_value_errors(case):
    _, args, expected = case
    assert expected in _message(lambda: ops.varlen_fwd(*args))


def test_device_mismatch_fake():
    """CPU-only machines cannot make a CUDA tensor; the fake check still runs."""
    with FakeTensorMode() as mode:
        q = mode.from_tensor(Q)
        k = mode.from_tensor(torch.empty(2, 8, 2, 64, dtype=FP8, device="meta"), )
        msg = _message(lambda: ops.fwd(q, k, k))
    assert "torch_fmha.fwd: k is on meta but q is on cpu; all tensors must be on one device" in msg


def test_api_window_size_type():
    with pytest.raises(TypeError, match="window_size must be a pair of ints"):
        torch_fmha.attention(Q, K, K, window_size=5)


def test_quantize_errors():
    with pytest.raises(ValueError, match="granularity must be 'tensor' or 'head'"):
        torch_fmha.quantize_fp8(torch.randn(2, 3, 4, 64), "row")
    with pytest.raises(ValueError, match="group_size must divide the 4 heads"):
        torch_fmha.quantize_fp8(torch.randn(2, 3, 4, 64), "head", group_size=3)
    with pytest.raises(ValueError, match="needs cu_seqlens"):
        torch_fmha.quantize_fp8(torch.randn(6, 4, 64), "head")
