"""Shape, dtype and stride rules of the torch_fmha ops, for the fake kernels.

These mirror ``csrc/ops/checks.cpp`` message for message, in the same order,
so ``torch.compile`` reports at trace time the error eager reports at run
time (``tests/test_errors.py`` runs every bad input through both). Value
checks that read tensor data (cu_seqlens) cannot run on fake tensors and are
the C++ kernels' alone.
"""

from __future__ import annotations

import dataclasses
import math

import torch

_SUPPORTED_INPUTS = (torch.float8_e4m3fn, torch.bfloat16, torch.float16, torch.float32, torch.float64)
_FP8_OUTPUTS = (torch.bfloat16, torch.float16, torch.float8_e4m3fn)
HEAD_DIMS = (64, 128, 256)


@dataclasses.dataclass
class FwdProblem:
    batch: int
    seqlen_q: int  # dense: Sq; varlen: total_q
    seqlen_k: int
    heads_q: int
    heads_kv: int
    head_dim: int
    softmax_scale: float = 0.0
    window_left: int = -1
    window_right: int = -1
    out_dtype: torch.dtype = torch.bfloat16
    softcap: float = 0.0
    # Paged KV: k / v are [num_pages, page_size, Hkv, D]; seqlen_k = num_pages * page_size.
    paged: bool = False
    page_size: int = 0
    num_pages: int = 0


def shape_str(sizes) -> str:
    return "[" + ", ".join(str(s) for s in sizes) + "]"


def _float_str(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)


def _check(cond, op: str, msg: str) -> None:
    torch._check(cond, lambda: f"{op}: {msg}")


def _check_rank(op, name, t, rank, dims):
    _check(t.dim() == rank, op, f"{name} must have rank {rank} {dims}, got shape {shape_str(t.shape)}")


def _check_same_device(op, name, t, q):
    _check(t.device == q.device, op, f"{name} is on {t.device} but q is on {q.device}; all tensors must be on one device")


def _check_last_dim_contiguous(op, name, t):
    _check(t.stride(-1) == 1, op, f"{name} must have a contiguous last dimension (stride 1), got stride {t.stride(-1)}")


def _check_packed_v(op, k, v):
    # A packed v (dense fwd only, csrc/vt_key_order.h): FP8 [B, Hkv, D, G, 16],
    # G = ceil(S_k / 16), contiguous, against k [B, S_k, Hkv, D].
    expected = (k.size(0), k.size(2), k.size(3), (k.size(1) + 15) // 16, 16)
    _check(tuple(v.shape) == expected, op,
           "a packed v (rank 5) must have shape [batch, heads_kv, head_dim, ceil(seqlen_k / 16), 16] = "
           f"{shape_str(expected)} for k of shape {shape_str(k.shape)}, got {shape_str(v.shape)}")
    _check(v.dtype == torch.float8_e4m3fn, op,
           "a packed v must have dtype torch.float8_e4m3fn (quantize_qkv(pack_v=True) writes it), "
           f"got {v.dtype}")
    _check(v.is_contiguous(), op, f"a packed v must be contiguous, got strides {shape_str(v.stride())}")


def _check_qkv(op, q, k, v, k_name="k", v_name="v", packed_v_ok=False):
    # Heads are dim -2 in every layout (dense, packed, page pool). k_name / v_name name
    # k and v in the messages ("k_cache" for fwd_kvcache).
    _check(
        q.dtype in _SUPPORTED_INPUTS,
        op,
        f"q has dtype {q.dtype}, expected one of torch.float8_e4m3fn, torch.bfloat16, "
        "torch.float16, torch.float32, torch.float64",
    )
    for name, t in ((k_name, k), (v_name, v)):
        _check(
            t.dtype == q.dtype,
            op,
            f"{name} has dtype {t.dtype} but q has dtype {q.dtype}; q, {k_name} and {v_name} must share one dtype",
        )
        _check_same_device(op, name, t, q)
    if packed_v_ok and v.dim() == 5:
        _check_packed_v(op, k, v)
    else:
        _check(
            k.shape == v.shape,
            op,
            f"{k_name} and {v_name} must have the same shape, got {k_name} {shape_str(k.shape)} and "
            f"{v_name} {shape_str(v.shape)}",
        )
    d = q.size(-1)
    _check(d in HEAD_DIMS, op, f"head_dim (q.size(-1)) is {d}, expected one of 64, 128, 256")
    _check(k.size(-1) == d, op, f"{k_name} has head_dim {k.size(-1)} but q has head_dim {d}")
    h, hkv = q.size(-2), k.size(-2)
    _check(hkv > 0 and h % hkv == 0, op,
           f"q has {h} heads, which is not a multiple of the {hkv} heads of {k_name} and {v_name}")
    _check_last_dim_contiguous(op, "q", q)
    _check_last_dim_contiguous(op, k_name, k)
    _check_last_dim_contiguous(op, v_name, v)


def _check_scale(op, name, s, q, batch, heads_kv, per_head_allowed):
    if s is None:
        return
    _check(s.dtype == torch.float32, op, f"{name} must have dtype torch.float32, got {s.dtype}")
    _check_same_device(op, name, s, q)
    per_tensor = s.dim() == 1 and s.size(0) == 1
    per_head = s.dim() == 2 and s.size(0) == batch and s.size(1) == heads_kv
    if per_head_allowed:
        _check(
            per_tensor or per_head,
            op,
            f"{name} must have shape [1] or [batch, heads_kv] = [{batch}, {heads_kv}], got {shape_str(s.shape)}",
        )
    else:
        _check(per_tensor, op, f"{name} must have shape [1], got {shape_str(s.shape)}")


def _check_options(op, p, q, softmax_scale, causal, window_left, window_right,
                   q_descale, k_descale, v_descale, out_scale, out_dtype, softcap, sinks):
    if softmax_scale is not None:
        _check(math.isfinite(softmax_scale), op, f"softmax_scale must be a finite number, got {_float_str(softmax_scale)}")
        _check(softmax_scale >= 0.0, op, f"softmax_scale must be >= 0, got {_float_str(softmax_scale)}")
        p.softmax_scale = softmax_scale
    else:
        p.softmax_scale = 1.0 / math.sqrt(p.head_dim)
    _check(window_left >= -1, op, f"window_left must be -1 (unbounded) or >= 0, got {window_left}")
    _check(window_right >= -1, op, f"window_right must be -1 (unbounded) or >= 0, got {window_right}")
    if causal:
        _check(window_right <= 0, op, f"causal=True fixes window_right to 0, got window_right={window_right}")
        window_right = 0
    p.window_left, p.window_right = window_left, window_right

    fp8 = q.dtype == torch.float8_e4m3fn
    for name, s in (("q_descale", q_descale), ("k_descale", k_descale), ("v_descale", v_descale)):
        _check(s is None or fp8, op, f"{name} applies to torch.float8_e4m3fn inputs only, but q has dtype {q.dtype}")
        _check_scale(op, name, s, q, p.batch, p.heads_kv, True)

    if fp8:
        p.out_dtype = torch.bfloat16 if out_dtype is None else out_dtype
        _check(
            p.out_dtype in _FP8_OUTPUTS,
            op,
            "out_dtype for torch.float8_e4m3fn inputs must be one of torch.bfloat16, "
            f"torch.float16, torch.float8_e4m3fn, got {p.out_dtype}",
        )
    else:
        p.out_dtype = q.dtype if out_dtype is None else out_dtype
        _check(
            p.out_dtype == q.dtype,
            op,
            f"out_dtype must equal the input dtype {q.dtype} for non-FP8 inputs, got {p.out_dtype}",
        )
    if p.out_dtype == torch.float8_e4m3fn:
        _check(out_scale is not None, op, "out_scale is required when out_dtype is torch.float8_e4m3fn")
        _check_scale(op, "out_scale", out_scale, q, p.batch, p.heads_kv, False)
    else:
        _check(
            out_scale is None,
            op,
            f"out_scale applies to out_dtype torch.float8_e4m3fn only, got out_dtype {p.out_dtype}",
        )
    _check(math.isfinite(softcap) and softcap >= 0.0, op,
           f"softcap must be a finite number >= 0 (0 = off), got {_float_str(softcap)}")
    p.softcap = softcap
    if sinks is not None:
        want = lse_dtype(q)  # float32, or float64 for float64 inputs (lse's rule)
        _check(sinks.dtype == want, op, f"sinks must have dtype {want} (one logit per query head), got {sinks.dtype}")
        _check(sinks.dim() == 1 and sinks.size(0) == p.heads_q, op,
               f"sinks must have shape [heads] = [{p.heads_q}], got {shape_str(sinks.shape)}")
        _check(sinks.stride(0) == 1, op, f"sinks must be contiguous, got stride {sinks.stride(0)}")
        _check_same_device(op, "sinks", sinks, q)


def _is_power_of_two(x) -> bool:
    return x > 0 and (x & (x - 1)) == 0


def _check_seqused_and_page_table_meta(op, p, q, k, seqused_k, page_table):
    if p.paged:
        _check(seqused_k is not None, op,
               "seqused_k is required with page_table (it gives each sequence's number of keys)")
    if seqused_k is not None:
        _check(seqused_k.dtype == torch.int32, op, f"seqused_k must have dtype torch.int32, got {seqused_k.dtype}")
        _check(seqused_k.dim() == 1 and seqused_k.size(0) == p.batch, op,
               f"seqused_k must have shape [batch] = [{p.batch}], got {shape_str(seqused_k.shape)}")
        _check(seqused_k.stride(0) == 1, op, f"seqused_k must be contiguous, got stride {seqused_k.stride(0)}")
        _check_same_device(op, "seqused_k", seqused_k, q)
    if not p.paged:
        return
    _check_page_table_meta(op, p, q, k, "k", page_table)


def _check_page_table_meta(op, p, q, k, k_name, page_table):
    """page_table int32 [p.batch, max_pages_per_seq] over the page pool k (checks.cpp
    check_page_table_meta); sets p's paged fields."""
    _check(page_table.dtype == torch.int32, op, f"page_table must have dtype torch.int32, got {page_table.dtype}")
    _check(page_table.dim() == 2 and page_table.size(0) == p.batch, op,
           f"page_table must have shape [batch, max_pages_per_seq] = [{p.batch}, *], got "
           f"{shape_str(page_table.shape)}")
    _check(page_table.stride(1) == 1, op,
           f"page_table must have a contiguous last dimension (stride 1), got stride {page_table.stride(1)}")
    _check_same_device(op, "page_table", page_table, q)
    p.paged = True
    p.page_size, p.num_pages = k.size(1), k.size(0)
    _check(_is_power_of_two(p.page_size) and 16 <= p.page_size <= 256, op,
           f"page_size ({k_name}.size(1)) is {p.page_size}, expected a power of two from 16 to 256")


def _check_cu_seqlens_meta(op, name, cu, q):
    _check(cu.dtype == torch.int32, op, f"{name} must have dtype torch.int32, got {cu.dtype}")
    _check(
        cu.dim() == 1 and cu.size(0) >= 1,
        op,
        f"{name} must be a 1-D tensor [batch + 1] with at least one element, got shape {shape_str(cu.shape)}",
    )
    _check(cu.stride(0) == 1, op, f"{name} must be contiguous, got stride {cu.stride(0)}")
    _check_same_device(op, name, cu, q)


def check_fwd(op, q, k, v, softmax_scale=None, causal=False, window_left=-1, window_right=-1,
              q_descale=None, k_descale=None, v_descale=None, out_scale=None, out_dtype=None,
              softcap=0.0, sinks=None) -> FwdProblem:
    _check_rank(op, "q", q, 4, "[batch, seqlen_q, heads, head_dim]")
    _check_rank(op, "k", k, 4, "[batch, seqlen_k, heads_kv, head_dim]")
    _check(v.dim() in (4, 5), op,
           "v must have rank 4 [batch, seqlen_k, heads_kv, head_dim], or rank 5 for a packed v "
           "[batch, heads_kv, head_dim, ceil(seqlen_k / 16), 16] from quantize_qkv(pack_v=True), "
           f"got shape {shape_str(v.shape)}")
    _check_qkv(op, q, k, v, packed_v_ok=True)
    _check(k.size(0) == q.size(0), op, f"k has batch size {k.size(0)} but q has batch size {q.size(0)}")
    p = FwdProblem(q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3))
    _check_options(op, p, q, softmax_scale, causal, window_left, window_right,
                   q_descale, k_descale, v_descale, out_scale, out_dtype, softcap, sinks)
    return p


def check_varlen_fwd(op, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None,
                     softmax_scale=None, causal=False, window_left=-1, window_right=-1,
                     q_descale=None, k_descale=None, v_descale=None, out_scale=None, out_dtype=None,
                     softcap=0.0, sinks=None, seqused_k=None, page_table=None) -> FwdProblem:
    """cu_seqlens_k is None exactly when page_table is given (k / v are then page
    pools and seqused_k is required)."""
    paged = page_table is not None
    kv_dims = ("[num_pages, page_size, heads_kv, head_dim] (a page pool: page_table is given)" if paged
               else "[total_k, heads_kv, head_dim] (a page pool needs page_table)")
    _check_rank(op, "q", q, 3, "[total_q, heads, head_dim]")
    _check_rank(op, "k", k, 4 if paged else 3, kv_dims)
    _check_rank(op, "v", v, 4 if paged else 3, kv_dims)
    _check_qkv(op, q, k, v)
    _check_cu_seqlens_meta(op, "cu_seqlens_q", cu_seqlens_q, q)
    if paged:
        _check(cu_seqlens_k is None, op,
               "cu_seqlens_k must be None when page_table is given (seqused_k gives the number of keys "
               "of each sequence)")
    else:
        _check(cu_seqlens_k is not None, op, "cu_seqlens_k is required unless page_table is given")
        _check_cu_seqlens_meta(op, "cu_seqlens_k", cu_seqlens_k, q)
        _check(
            cu_seqlens_k.size(0) == cu_seqlens_q.size(0),
            op,
            f"cu_seqlens_k has {cu_seqlens_k.size(0)} elements but cu_seqlens_q has "
            f"{cu_seqlens_q.size(0)}; both must have batch + 1",
        )
    _check(max_seqlen_q is None or max_seqlen_q >= 0, op, f"max_seqlen_q must be >= 0, got {max_seqlen_q or 0}")
    _check(max_seqlen_k is None or max_seqlen_k >= 0, op, f"max_seqlen_k must be >= 0, got {max_seqlen_k or 0}")
    p = FwdProblem(cu_seqlens_q.size(0) - 1, q.size(0), 0, q.size(1), k.size(-2), q.size(2), paged=paged)
    _check_seqused_and_page_table_meta(op, p, q, k, seqused_k, page_table)
    p.seqlen_k = p.num_pages * p.page_size if paged else k.size(0)
    _check_options(op, p, q, softmax_scale, causal, window_left, window_right,
                   q_descale, k_descale, v_descale, out_scale, out_dtype, softcap, sinks)
    return p


def lse_dtype(q: torch.Tensor) -> torch.dtype:
    """float32, or float64 for float64 inputs (so gradcheck can see lse)."""
    return torch.float64 if q.dtype == torch.float64 else torch.float32


def check_bwd(op, dout, q, k, v, out, lse, dlse) -> None:
    _check(
        q.dtype != torch.float8_e4m3fn,
        op,
        "backward of torch.float8_e4m3fn attention is not supported; "
        "use bfloat16, float16, float32 or float64 inputs for training",
    )
    _check(dout.shape == q.shape, op, f"dout has shape {shape_str(dout.shape)}, expected q's shape {shape_str(q.shape)}")
    _check(out.shape == q.shape, op, f"out has shape {shape_str(out.shape)}, expected q's shape {shape_str(q.shape)}")
    lt = lse_dtype(q)
    _check(lse.dtype == lt, op, f"lse must have dtype {lt}, got {lse.dtype}")
    lse_shape = [q.size(0), q.size(2), q.size(1)] if q.dim() == 4 else [q.size(1), q.size(0)]
    _check(list(lse.shape) == lse_shape, op, f"lse has shape {shape_str(lse.shape)}, expected {shape_str(lse_shape)}")
    if dlse is not None:
        _check(
            dlse.shape == lse.shape,
            op,
            f"dlse has shape {shape_str(dlse.shape)}, expected lse's shape {shape_str(lse.shape)}",
        )
