"""torch_fmha.distributed on CPU: 2 processes, gloo, torch.multiprocessing spawn; the cases
that do not assume W = 2 again on 4 processes (CASES_4).

One spawn per world size runs every case (process start-up and the process group cost
more than the cases); each test below asserts its case's result on every rank.
Small shapes: the CPU op is slow.

Bound (float32 inputs, merge in float32): with eps = 2**-24,

    |out_cp - out_op| <= 4 * eps * (1 + max|lse|) * max|v|      (elementwise)
    |lse_cp - lse_op| <= 8 * eps * (1 + |lse_op|)                (elementwise)

where out_op / lse_op come from the single-process op on the whole sequence.
The merge weights are exp(lse_i - lse), whose argument carries an absolute
rounding error of about eps * |lse|; a missing or doubled key chunk would be
off by O(1e-2) or more. float64 inputs merge in float64 (bound with
eps = 2**-53). Where a row gets a single partial (no merge) it is returned bit
for bit as the op computed it: checked bitwise against the op on the same
sub-block, and on a group of one rank against the op on the whole sequence.

Packed batches (varlen_* cases, context_parallel_varlen_attention against
torch_fmha.varlen_attention on the whole packed batch): the CP calls give each
row a different number of (masked) keys than the whole-batch call, and the CPU
op's score GEMM rounds differently per shape, so the bound above gets the
scores' own worst-case rounding added inside the parentheses:
dot = D * softmax_scale * max_i |q_i| * max_j |k_j| (|.| the 2-norm; the
classic D * eps bound of a length-D dot product), about 1200 eps for these
inputs (observed errors: about 12 eps). A missing or extra key still moves out
or lse by O(1e-3) or more at these lengths. Rows with one partial (causal,
left windows) are checked bit for bit against the op on that row's query piece
and its key prefix.
"""

from __future__ import annotations

import time
import traceback

import pytest
import torch

from spawn_ranks import run_ranks

WORLD = 2
JOIN_TIMEOUT_S = 200
pytestmark = pytest.mark.timeout(JOIN_TIMEOUT_S + 40)

# name: (S, B, H, Hkv, D, causal, window)
DENSE = {
    "causal": (64, 2, 4, 2, 64, True, (-1, -1)),
    "noncausal": (64, 2, 4, 4, 64, False, (-1, -1)),
    "causal_S67_mqa": (67, 1, 4, 1, 64, True, (-1, -1)),
    "noncausal_S67_gqa": (67, 2, 4, 2, 64, False, (-1, -1)),
    "window_7_3_S67": (67, 1, 4, 2, 64, False, (7, 3)),
    "window_causal_9_S50": (50, 1, 2, 1, 64, True, (9, -1)),
    "window_0_5_S30": (30, 1, 2, 2, 64, False, (0, 5)),
    "window_20_unbounded_S61": (61, 1, 2, 1, 64, False, (20, -1)),
    "window_tiny_S9": (9, 1, 2, 1, 64, False, (1, 1)),
}
# Packed batches (context_parallel_varlen_attention): empty sequences, a length-1 one, lengths
# not divisible by 2W = 4. name: (lengths, H, Hkv, D, causal, window)
LENS = [0, 37, 5, 64, 1, 13, 0, 30]
VARLEN = {
    "causal_gqa": (LENS, 4, 2, 64, True, (-1, -1)),
    "noncausal_mqa": (LENS, 4, 1, 64, False, (-1, -1)),
    "window_7_3": (LENS, 4, 2, 64, False, (7, 3)),
    "window_causal_9": ([50, 3, 17], 2, 1, 64, True, (9, -1)),
    "window_0_5": ([30, 0, 9], 2, 2, 64, False, (0, 5)),
    "window_20_unbounded": (LENS, 2, 1, 64, False, (20, -1)),
    "window_unbounded_4": (LENS, 2, 1, 64, False, (-1, 4)),
    "window_tiny_1_1": ([9, 2, 1], 2, 1, 64, False, (1, 1)),
    "one_sequence_S67": ([67], 4, 2, 64, True, (-1, -1)),
}
CASES = [f"dense_{n}" for n in DENSE] + [
    "float64_causal_S67", "fp8_global_scales", "fp8_cp_bf16_out", "fp8_cp_fp8_out",
    "single_partial_rows_bitwise", "group_of_one_bitwise", "shard_unshard", "return_lse_off",
    "compile_fullgraph", "bad_seqlen"] + [f"varlen_{n}" for n in VARLEN] + [
    "varlen_float64", "varlen_fp8_global_scales", "varlen_fp8_cp_bf16_out", "varlen_fp8_cp_fp8_out",
    "varlen_direct_rows_bitwise", "varlen_padding_never_leaks", "varlen_shard_unshard", "varlen_compile_fullgraph",
    "varlen_bad_args"]

# On 4 ranks (2W = 8 chunks: chunks of 1-2 rows at S = 9, the ring's 3 steps, 4 partials per
# row to merge): the cases that do not assume W = 2.
CASES_4 = [f"dense_{n}" for n in DENSE] + [
    "float64_causal_S67", "fp8_cp_bf16_out", "single_partial_rows_bitwise", "shard_unshard"] + [
    f"varlen_{n}" for n in VARLEN] + [
    "varlen_direct_rows_bitwise", "varlen_padding_never_leaks", "varlen_shard_unshard"]


def _bound_check(what, out, lse, ref, ref_lse, v, eps, dot=0.0):
    lmax = ref_lse.abs().max().item()
    tol_o = 4 * eps * (1 + lmax + dot) * v.abs().max().item()
    err_o = (out - ref).abs().max().item()
    # LSE: the two sides' scores come from float32 GEMMs of different shapes (a rank's
    # sub-block against the whole matrix), which round differently: 2.7-3.2 eps (1 + |lse|)
    # apart on an AMD EPYC machine, where 4 eps was exceeded by up to 5.0 eps (exp and log
    # were within 1.4 eps there); the merge adds one log-sum-exp per partial. 8 eps keeps a
    # margin and still misses no real bug: a dropped key is >= 16x over it, log 2 ~1e5x.
    tol_l = 8 * eps * (1 + ref_lse.abs() + dot)
    err_l = (lse - ref_lse).abs()
    assert err_o <= tol_o, f"{what}: out error {err_o:.3e} > bound {tol_o:.3e}"
    assert bool((err_l <= tol_l).all()), \
        f"{what}: lse error {err_l.max().item():.3e} > bound {tol_l.max().item():.3e}"


def _inputs(S, B, H, Hkv, D, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, S, H, D, generator=g, dtype=torch.float64) * 1.5
    k = torch.randn(B, S, Hkv, D, generator=g, dtype=torch.float64)
    v = torch.randn(B, S, Hkv, D, generator=g, dtype=torch.float64)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def _run_cases(rank, world=WORLD, only=None):
    import torch.distributed as dist

    import torch_fmha
    import torch_fmha.distributed as cp

    def shard(x, dim=1):
        return cp.shard_sequence(x, dim=dim)

    def dense(name):
        S, B, H, Hkv, D, causal, window = DENSE[name]
        q, k, v = _inputs(S, B, H, Hkv, D)
        ref, ref_lse = torch_fmha.attention(q, k, v, causal=causal, window_size=window, return_lse=True)
        ql, kl, vl = shard(q), shard(k), shard(v)
        res = {}
        for ex in ("ring", "allgather"):
            res[ex] = cp.context_parallel_attention(ql, kl, vl, causal=causal, window_size=window,
                                                    seqlen=S, return_lse=True, kv_exchange=ex)
        assert torch.equal(res["ring"][0], res["allgather"][0]), "ring and allgather differ"
        assert torch.equal(res["ring"][1], res["allgather"][1]), "ring and allgather lse differ"
        out, lse = res["ring"]
        assert out.shape == ql.shape and lse.shape == (B, H, ql.size(1)) and out.dtype == q.dtype
        _bound_check(name, out, lse, shard(ref), shard(ref_lse, 2), v, 2.0 ** -24)

    def float64_causal_S67():
        q, k, v = _inputs(67, 1, 4, 2, 64, torch.float64)
        ref, ref_lse = torch_fmha.attention(q, k, v, causal=True, return_lse=True)
        out, lse = cp.context_parallel_attention(shard(q), shard(k), shard(v), causal=True, seqlen=67,
                                                 return_lse=True)
        assert lse.dtype == torch.float64
        _bound_check("float64", out, lse, shard(ref), shard(ref_lse, 2), v, 2.0 ** -53)

    def fp8_global_scales():
        q, k, _ = _inputs(67, 2, 4, 2, 64)
        for x, gran, gs in ((q, "tensor", 1), (q, "head", 2), (k, "head", 1)):
            x8, d = cp.quantize_fp8_global(shard(x), gran, group_size=gs)
            r8, rd = torch_fmha.quantize_fp8(x, gran, group_size=gs)
            assert torch.equal(d, rd), f"{gran}: descale differs from quantize_fp8 on the whole tensor"
            assert torch.equal(x8.view(torch.uint8), shard(r8).view(torch.uint8)), f"{gran}: fp8 data differs"
            assert torch.equal(cp.global_descale(shard(x), gran, group_size=gs), rd)

    def fp8_inputs(S=67, B=1, H=4, Hkv=2, D=64):
        q, k, v = _inputs(S, B, H, Hkv, D)
        q8, qd = torch_fmha.quantize_fp8(q, "head", group_size=H // Hkv)
        k8, kd = torch_fmha.quantize_fp8(k, "head")
        v8, vd = torch_fmha.quantize_fp8(v, "tensor")
        return q8, k8, v8, dict(q_descale=qd, k_descale=kd, v_descale=vd)

    def fp8_cp(out_dtype, out_scale):
        q8, k8, v8, sc = fp8_inputs()
        kw = dict(sc, causal=True, out_dtype=out_dtype, out_scale=out_scale, return_lse=True)
        ref, ref_lse = torch_fmha.attention(q8, k8, v8, **kw)
        out, lse = cp.context_parallel_attention(shard(q8), shard(k8), shard(v8), seqlen=67, **kw)
        assert out.dtype == out_dtype
        o, r = out.double(), shard(ref).double()
        # One rounding step of out_dtype apart at most, plus the float16 rounding of the
        # partials (2**-11 of their magnitude; it shows on outputs that cancel to ~0).
        step = 2.0 ** -3 if out_dtype == torch.float8_e4m3fn else 2.0 ** -7
        tiny = 2.0 ** -9 if out_dtype == torch.float8_e4m3fn else 0.0
        tol = step * torch.maximum(o.abs(), r.abs()) + tiny + 2.0 ** -10 * r.abs().max()
        assert ((o - r).abs() <= tol).all(), ((o - r).abs() - tol).max()
        assert ((lse - shard(ref_lse, 2)).abs() <= 1e-5 * (1 + ref_lse.abs().max())).all()

    def single_partial_rows_bitwise():
        from torch_fmha.distributed import _plan, _segments
        for causal, window, S in ((True, (-1, -1), 64), (False, (3, 0), 67), (False, (4, 4), 67)):
            q, k, v = _inputs(S, 1, 2, 1, 64)
            ql, kl, vl = shard(q), shard(k), shard(v)
            left, right = window if not causal else (-1, 0)
            calls = _plan(S, world, rank, left, right)
            out, lse = cp.context_parallel_attention(ql, kl, vl, causal=causal, window_size=window,
                                                     seqlen=S, return_lse=True)
            kfull = {r: (cp.shard_sequence(k, rank=r, world_size=world),
                         cp.shard_sequence(v, rank=r, world_size=world)) for r in range(world)}
            n_single = 0
            for r0, r1, idx in _segments(calls, ql.size(1)):
                if len(idx) != 1:
                    continue
                c = calls[idx[0]]
                ks, vs = kfull[c.src]
                o, l = torch_fmha.attention(ql[:, c.q0:c.q1], ks[:, c.k0:c.k1], vs[:, c.k0:c.k1],
                                            window_size=(c.left, c.right), return_lse=True)
                assert torch.equal(out[:, r0:r1], o[:, r0 - c.q0:r1 - c.q0]), (causal, window, r0, r1)
                assert torch.equal(lse[:, :, r0:r1], l[:, :, r0 - c.q0:r1 - c.q0]), (causal, window)
                n_single += r1 - r0
            if causal and rank == 0:
                assert n_single > 0  # rank 0's first chunk sees only itself

    def group_of_one_bitwise():
        import torch.distributed as dist
        groups = [dist.new_group([r]) for r in range(world)]  # every rank creates every group
        for causal, window, S in ((True, (-1, -1), 67), (False, (-1, -1), 64), (False, (5, 2), 40)):
            q, k, v = _inputs(S, 1, 2, 1, 64, seed=rank)
            ref, ref_lse = torch_fmha.attention(q, k, v, causal=causal, window_size=window, return_lse=True)
            g = groups[rank]
            ql, kl, vl = (cp.shard_sequence(t, group=g) for t in (q, k, v))
            out, lse = cp.context_parallel_attention(ql, kl, vl, group=g, causal=causal,
                                                     window_size=window, seqlen=S, return_lse=True)
            if (causal or window == (-1, -1)):  # one call on the whole sequence
                assert torch.equal(out, ref) and torch.equal(lse, ref_lse), (causal, window)
            else:
                _bound_check("group of one", out, lse, ref, ref_lse, v, 2.0 ** -24)

    def shard_unshard():
        for S in (64, 67, 5, 4):
            x = torch.arange(S * 3, dtype=torch.float32).view(1, S, 3)
            xl = shard(x)
            assert xl.size(1) == cp.shard_lengths(S, world)[rank]
            pos = cp.shard_positions(S)
            assert torch.equal(xl[0, :, 0], pos.float() * 3)
            assert torch.equal(cp.unshard_sequence(xl, S), x)
            assert torch.equal(cp.unshard_sequence(shard(x.transpose(1, 2), dim=2), S, dim=2),
                               x.transpose(1, 2))
        assert sorted(torch.cat([cp.shard_positions(67, rank=r, world_size=3) for r in range(3)]).tolist()) \
            == list(range(67))

    def return_lse_off():
        q, k, v = _inputs(64, 1, 2, 1, 64)
        out = cp.context_parallel_attention(shard(q), shard(k), shard(v), causal=True)
        assert isinstance(out, torch.Tensor) and out.shape == (1, 32, 2, 64)

    def compile_fullgraph():
        q, k, v = _inputs(67, 1, 4, 2, 64)
        ql, kl, vl = shard(q), shard(k), shard(v)

        def f(ql, kl, vl, ex):
            q8, qd = cp.quantize_fp8_global(ql, "head", group_size=2)
            k8, kd = cp.quantize_fp8_global(kl, "head")
            v8, vd = cp.quantize_fp8_global(vl, "tensor")
            return cp.context_parallel_attention(q8, k8, v8, causal=True, seqlen=67, q_descale=qd,
                                                 k_descale=kd, v_descale=vd, return_lse=True,
                                                 kv_exchange=ex)

        graphs = []

        def backend(gm, example_inputs):
            graphs.append(gm)
            from torch._dynamo.backends.common import aot_autograd  # noqa: F401
            from torch._dynamo.backends.debugging import aot_eager
            return aot_eager(gm, example_inputs)

        for ex in ("ring", "allgather"):
            eager = f(ql, kl, vl, ex)
            torch._dynamo.reset()
            graphs.clear()
            comp = torch.compile(f, fullgraph=True, backend=backend)(ql, kl, vl, ex)
            assert len(graphs) == 1
            assert torch.equal(comp[0].view(torch.uint16), eager[0].view(torch.uint16)) and torch.equal(comp[1], eager[1])
            # The exchange overlaps the attention in the graph: collective, attention, then wait.
            order = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
            coll = "all_to_all_single" if ex == "ring" else "all_gather_into_tensor"
            i_coll = next(i for i, t in enumerate(order) if coll in t)
            i_attn = next(i for i, t in enumerate(order) if "torch_fmha.fwd" in t and i > i_coll)
            i_wait = next(i for i, t in enumerate(order) if "wait_tensor" in t and i > i_coll)
            assert i_coll < i_attn < i_wait, order

    def bad_seqlen():
        # Errors must raise on every rank (a rank that went on would wait in a collective).
        q, k, v = _inputs(66, 1, 2, 1, 64)  # shards of 33 rows on both ranks
        with pytest.raises(ValueError, match="seqlen"):
            cp.context_parallel_attention(shard(q), shard(k), shard(v))  # odd shards, no seqlen
        with pytest.raises(ValueError, match="holds"):
            cp.context_parallel_attention(shard(q), shard(k), shard(v), seqlen=70)

    # ---- packed batches: context_parallel_varlen_attention against the single-process
    # varlen op on the whole packed batch; padding rows must be out 0 / lse -inf.
    def packed(lens, H, Hkv, D, dtype=torch.float32, seed=0):
        cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32)
        T = int(cu[-1])
        g = torch.Generator().manual_seed(seed)
        q = torch.randn(T, H, D, generator=g, dtype=torch.float64) * 1.5
        k = torch.randn(T, Hkv, D, generator=g, dtype=torch.float64)
        v = torch.randn(T, Hkv, D, generator=g, dtype=torch.float64)
        return q.to(dtype), k.to(dtype), v.to(dtype), cu, T

    def vshard(x, cu):
        return cp.shard_varlen(x, cu)

    def vshard_lse(lse, cu):  # [H, T] -> [H, R]
        return cp.shard_varlen(lse.t(), cu).t()

    def check_padding(out, lse, cu):
        pad = cp.varlen_shard_positions(cu, out.size(0)) < 0
        assert bool((out[pad] == 0).all()), "padding rows must be 0"
        assert bool((lse[:, pad] == float("-inf")).all()), "padding rows' lse must be -inf"

    def dot_term(q, k):  # module doc: the scores' own rounding, in units of eps
        return q.size(-1) * q.norm(dim=-1).max().item() * k.norm(dim=-1).max().item() / q.size(-1) ** 0.5

    def varlen(name):
        lens, H, Hkv, D, causal, window = VARLEN[name]
        q, k, v, cu, T = packed(lens, H, Hkv, D)
        ref, ref_lse = torch_fmha.varlen_attention(q, k, v, cu, cu, causal=causal, window_size=window,
                                                   return_lse=True)
        ql, kl, vl = vshard(q, cu), vshard(k, cu), vshard(v, cu)
        out, lse = cp.context_parallel_varlen_attention(ql, kl, vl, cu, cu, causal=causal,
                                                        window_size=window, return_lse=True)
        full, full_lse = cp.unshard_varlen(out, cu, T), cp.unshard_varlen(lse.t().contiguous(), cu, T).t()
        # (every collective above, every check below: a failed check on one rank must not
        # leave the other waiting in a collective)
        assert out.shape == ql.shape and lse.shape == (H, ql.size(0)) and out.dtype == q.dtype
        check_padding(out, lse, cu)
        real = cp.varlen_shard_positions(cu, ql.size(0)) >= 0
        _bound_check(name, out[real], lse[:, real], vshard(ref, cu)[real], vshard_lse(ref_lse, cu)[:, real],
                     v, 2.0 ** -24, dot_term(q, k))
        _bound_check(name + " unsharded", full, full_lse, ref, ref_lse, v, 2.0 ** -24, dot_term(q, k))

    def varlen_float64():
        q, k, v, cu, T = packed(LENS, 4, 2, 64, torch.float64)
        ref, ref_lse = torch_fmha.varlen_attention(q, k, v, cu, cu, window_size=(7, 3), return_lse=True)
        out, lse = cp.context_parallel_varlen_attention(vshard(q, cu), vshard(k, cu), vshard(v, cu), cu, cu,
                                                        window_size=(7, 3), return_lse=True)
        full, full_lse = cp.unshard_varlen(out, cu, T), cp.unshard_varlen(lse.t().contiguous(), cu, T).t()
        assert lse.dtype == torch.float64 and out.dtype == torch.float64
        _bound_check("varlen float64", full, full_lse, ref, ref_lse, v, 2.0 ** -53, dot_term(q, k))

    def varlen_fp8_global_scales():
        q, k, _, cu, T = packed(LENS, 4, 2, 64)
        q = q.clone()
        q[3, 1, 5] = float("nan")  # ignored by the amax, NaN in FP8, as quantize_fp8 does
        for x, gran, gs in ((q, "tensor", 1), (q, "head", 2), (k, "head", 1), (k, "tensor", 1)):
            xl = vshard(x, cu)
            junk = cp.varlen_shard_positions(cu, xl.size(0)) < 0
            xl_junk = torch.where(junk[:, None, None], torch.full_like(xl, 1e4), xl)  # padding never counts
            x8, d = cp.quantize_fp8_global_varlen(xl_junk, cu, gran, group_size=gs)
            r8, rd = torch_fmha.quantize_fp8(x, gran, group_size=gs, cu_seqlens=cu)
            assert torch.equal(d, rd), f"{gran}: descale differs from quantize_fp8 on the whole tensor"
            assert torch.equal(cp.global_descale_varlen(xl, cu, gran, group_size=gs), rd)
            x8l, _ = cp.quantize_fp8_global_varlen(xl, cu, gran, group_size=gs)
            assert torch.equal(x8l.view(torch.uint8), vshard(r8.view(torch.uint8), cu)), f"{gran}: fp8 data differs"
            assert torch.equal(x8[~junk].view(torch.uint8), x8l[~junk].view(torch.uint8))

    def varlen_fp8_cp(out_dtype, out_scale):
        q, k, v, cu, T = packed(LENS, 4, 2, 64)
        q8, qd = torch_fmha.quantize_fp8(q, "head", group_size=2, cu_seqlens=cu)
        k8, kd = torch_fmha.quantize_fp8(k, "head", cu_seqlens=cu)
        v8, vd = torch_fmha.quantize_fp8(v, "head", cu_seqlens=cu)
        for causal, window in ((True, (-1, -1)), (False, (7, 3))):  # one partial / merged
            kw = dict(q_descale=qd, k_descale=kd, v_descale=vd, causal=causal, window_size=window,
                      out_dtype=out_dtype, out_scale=out_scale, return_lse=True)
            ref, ref_lse = torch_fmha.varlen_attention(q8, k8, v8, cu, cu, **kw)
            out, lse = cp.context_parallel_varlen_attention(vshard(q8, cu), vshard(k8, cu), vshard(v8, cu),
                                                            cu, cu, **kw)
            o = cp.unshard_varlen(out.view(torch.uint8), cu, T).view(out_dtype).double()
            lse_g = cp.unshard_varlen(lse.t().contiguous(), cu, T).t()
            assert out.dtype == out_dtype
            r = ref.double()
            # As fp8_cp: one rounding step of out_dtype, plus the float16 partials' rounding.
            step = 2.0 ** -3 if out_dtype == torch.float8_e4m3fn else 2.0 ** -7
            tiny = 2.0 ** -9 if out_dtype == torch.float8_e4m3fn else 0.0
            tol = step * torch.maximum(o.abs(), r.abs()) + tiny + 2.0 ** -10 * r.abs().max()
            assert ((o - r).abs() <= tol).all(), (causal, ((o - r).abs() - tol).max())
            fin = torch.isfinite(ref_lse)
            assert torch.equal(fin, torch.isfinite(lse_g))
            assert ((lse_g[fin] - ref_lse[fin]).abs() <= 1e-5 * (1 + ref_lse[fin].abs().max())).all()

    def varlen_direct_rows_bitwise():
        # Causal / left windows: every row has one partial, returned bit for bit as the op
        # computes it for that row's query piece against its sequence's keys [0, end of piece).
        q, k, v, cu, T = packed(LENS, 4, 2, 64)
        for window in ((-1, 0), (9, 0)):
            out, lse = cp.context_parallel_varlen_attention(vshard(q, cu), vshard(k, cu), vshard(v, cu), cu, cu,
                                                            window_size=window, return_lse=True)
            pos = cp.varlen_shard_positions(cu, out.size(0))
            lcu = cp.varlen_shard_cu_seqlens(cu).tolist()
            n_rows = 0
            for b in range(len(LENS)):
                for lo, hi in ((lcu[b], (lcu[b] + lcu[b + 1]) // 2), ((lcu[b] + lcu[b + 1]) // 2, lcu[b + 1])):
                    p = pos[lo:hi]
                    p = p[p >= 0]
                    if p.numel() == 0:
                        continue
                    q0, q1, s0 = int(p[0]), int(p[-1]) + 1, int(cu[b])
                    o, l = torch_fmha.varlen_attention(
                        q[s0 + q0:s0 + q1], k[s0:s0 + q1], v[s0:s0 + q1],
                        torch.tensor([0, q1 - q0], dtype=torch.int32), torch.tensor([0, q1], dtype=torch.int32),
                        window_size=window, return_lse=True)
                    assert torch.equal(out[lo:lo + q1 - q0], o) and torch.equal(lse[:, lo:lo + q1 - q0], l), (b, lo)
                    n_rows += q1 - q0
            assert n_rows > 0

    def varlen_padding_never_leaks():
        # NaN in every padding row of the shards (where a projection's bias would put junk):
        # the result is bitwise the clean one, for one partial and for merged partials.
        q, k, v, cu, T = packed(LENS, 4, 2, 64)
        ql, kl, vl = vshard(q, cu), vshard(k, cu), vshard(v, cu)
        pad = (cp.varlen_shard_positions(cu, ql.size(0)) < 0)[:, None, None]
        nan = float("nan")
        poisoned = [torch.where(pad, torch.full_like(t, nan), t) for t in (ql, kl, vl)]
        for window in ((-1, 0), (7, 3), (-1, -1)):
            clean = cp.context_parallel_varlen_attention(ql, kl, vl, cu, cu, window_size=window, return_lse=True)
            dirty = cp.context_parallel_varlen_attention(*poisoned, cu, cu, window_size=window, return_lse=True)
            assert torch.equal(clean[0], dirty[0]) and torch.equal(clean[1], dirty[1]), window

    def varlen_shard_unshard():
        lens = [0, 37, 5, 64, 1, 13]
        cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32)
        T = int(cu[-1])
        x = torch.arange(T * 3, dtype=torch.float32).view(T, 3)
        exact = cp.varlen_local_rows(T, len(lens), world, lens)
        assert exact == 2 * sum(-(-n // (2 * world)) for n in lens)
        assert cp.varlen_local_rows(T, len(lens), world) >= exact
        for rows in (None, exact):
            xl = cp.shard_varlen(x, cu, rows=rows)
            pos = cp.varlen_shard_positions(cu, xl.size(0))
            lcu = cp.varlen_shard_cu_seqlens(cu).tolist()
            assert lcu == [2 * sum(-(-n // (2 * world)) for n in lens[:b]) for b in range(len(lens) + 1)]
            seq = torch.searchsorted(torch.tensor(lcu[1:]), torch.arange(xl.size(0)), right=True).clamp(max=len(lens) - 1)
            real = pos >= 0
            assert torch.equal(xl[real, 0], (cu.long()[seq] + pos)[real].float() * 3)
            assert bool((xl[~real] == 0).all())
            assert torch.equal(cp.unshard_varlen(xl, cu, T), x)
        # every position of every sequence is on exactly one rank (3 ranks, computed here)
        for b, n in enumerate(lens):
            got = []
            for r in range(3):
                p = cp.varlen_shard_positions(cu, cp.varlen_local_rows(T, len(lens), 3), rank=r, world_size=3)
                l3 = cp.varlen_shard_cu_seqlens(cu, rank=r, world_size=3).tolist()
                got += [int(t) for t in p[l3[b]:l3[b + 1]] if t >= 0]
            assert sorted(got) == list(range(n)), (b, sorted(got))
        with pytest.raises(ValueError, match="lengths"):
            cp.varlen_local_rows(T, len(lens), world, lens[:-1])

    def varlen_compile_fullgraph():
        q, k, v, cu, T = packed(LENS, 4, 2, 64)
        ql, kl, vl = vshard(q, cu), vshard(k, cu), vshard(v, cu)

        def f(ql, kl, vl, cu):
            q8, qd = cp.quantize_fp8_global_varlen(ql, cu, "head", group_size=2)
            k8, kd = cp.quantize_fp8_global_varlen(kl, cu, "head")
            v8, vd = cp.quantize_fp8_global_varlen(vl, cu, "tensor")
            return cp.context_parallel_varlen_attention(q8, k8, v8, cu, cu, window_size=(7, 3), q_descale=qd,
                                                        k_descale=kd, v_descale=vd, return_lse=True)

        from functorch.compile import make_boxed_func
        from torch._dynamo.backends.common import aot_autograd

        graphs, aten_graphs = [], []

        def keep_aten_graph(gm, _):
            aten_graphs.append(gm)
            return make_boxed_func(gm.forward)

        aot = aot_autograd(fw_compiler=keep_aten_graph)

        def backend(gm, example_inputs):
            graphs.append(gm)
            return aot(gm, example_inputs)

        eager = f(ql, kl, vl, cu)
        torch._dynamo.reset()
        comp = torch.compile(f, fullgraph=True, backend=backend)(ql, kl, vl, cu)
        assert len(graphs) == 1 and len(aten_graphs) == 1
        assert torch.equal(comp[0].view(torch.uint16), eager[0].view(torch.uint16)) and torch.equal(comp[1], eager[1])
        order = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
        assert sum("varlen_fwd" in t for t in order) == 2, order  # past + future
        assert any("all_gather_into_tensor" in t for t in order)
        # Every searchsorted of the ATen graph (what Inductor lowers) searches a tensor at storage
        # offset 0: torch < 2.13's Inductor lowering of searchsorted for the GPU (Triton) reads a
        # sliced boundaries tensor from its buffer's start (pytorch/pytorch#182343), so
        # searchsorted(cu[1:], ...) came out off by one there (wrong key pieces).
        offsets = [n.args[0].meta["val"].storage_offset() for n in aten_graphs[0].graph.nodes
                   if n.target is torch.ops.aten.searchsorted.Tensor]
        assert offsets and all(o == 0 for o in offsets), offsets

    def varlen_bad_args():
        # Errors raise on every rank before any collective (or, for values that live on the
        # device, in a device-side assert: an error at once on CPU).
        q, k, v, cu, T = packed(LENS, 4, 2, 64)
        ql, kl, vl = vshard(q, cu), vshard(k, cu), vshard(v, cu)
        other = cu.clone()
        other[2] += 1
        with pytest.raises(RuntimeError, match="cu_seqlens_k must equal cu_seqlens_q"):
            cp.context_parallel_varlen_attention(ql, kl, vl, cu, other)
        with pytest.raises(RuntimeError, match="fewer rows"):
            cp.context_parallel_varlen_attention(ql[:20], kl[:20], vl[:20], cu, cu)
        with pytest.raises(RuntimeError, match="fewer rows"):
            cp.shard_varlen(q, cu, rows=20)
        with pytest.raises(ValueError, match=r"k_descale must have shape \[1\] or \[B, Hkv\] = \[8, 2\]"):
            cp.context_parallel_varlen_attention(ql, kl, vl, cu, cu, k_descale=torch.ones(2, 2))
        with pytest.raises(ValueError, match="cu_seqlens_q must be an int32"):
            cp.context_parallel_varlen_attention(ql, kl, vl, cu.long(), cu)
        backwards = cu.clone()
        backwards[3] = 0
        with pytest.raises(RuntimeError, match="must start at 0 and be non-decreasing"):
            cp.context_parallel_varlen_attention(ql, kl, vl, backwards, backwards)
        with pytest.raises(RuntimeError, match=r"cu_seqlens\[-1\] must equal x.size\(0\) = 149"):
            cp.shard_varlen(q[:-1], cu)
        with pytest.raises(RuntimeError, match=r"cu_seqlens\[-1\] must equal total = 151"):
            cp.unshard_varlen(ql, cu, T + 1)

    named = dict(locals())
    fns = {f"dense_{n}": (lambda n=n: dense(n)) for n in DENSE}
    fns.update({n: named[n] for n in CASES if n in named})
    fns["fp8_cp_bf16_out"] = lambda: fp8_cp(torch.bfloat16, None)
    fns["fp8_cp_fp8_out"] = lambda: fp8_cp(torch.float8_e4m3fn, torch.tensor([0.01]))
    fns.update({f"varlen_{n}": (lambda n=n: varlen(n)) for n in VARLEN})
    fns["varlen_fp8_cp_bf16_out"] = lambda: varlen_fp8_cp(torch.bfloat16, None)
    fns["varlen_fp8_cp_fp8_out"] = lambda: varlen_fp8_cp(torch.float8_e4m3fn, torch.tensor([0.01]))
    results = {}
    for name in CASES if only is None else only:
        t0 = time.time()
        try:
            fns[name]()
            results[name] = ("ok", time.time() - t0)
        except Exception:
            results[name] = (traceback.format_exc(), time.time() - t0)
        dist.barrier()
    return results


def _worker(rank, world, init_file, only=None):
    import datetime

    import torch.distributed as dist
    torch.set_num_threads(1)
    # A collective left waiting (a case that failed on the other rank) errors out after 90 s
    # and fails its case, instead of hanging every later case until the spawn deadline.
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=90))
    try:
        return _run_cases(rank, world, only)
    finally:
        dist.destroy_process_group()


def _worker_4(rank, world, init_file):
    return _worker(rank, world, init_file, CASES_4)


@pytest.fixture(scope="module")
def results():
    import torch_fmha  # noqa: F401  (build the native ops once, before the workers import them)
    return run_ranks(_worker, WORLD, JOIN_TIMEOUT_S)


@pytest.mark.parametrize("case", CASES)
def test_distributed_cpu(results, case):
    for rank, res in enumerate(results):
        status, seconds = res[case]
        print(f"rank {rank}: {case} {seconds:.2f} s")
        assert status == "ok", f"rank {rank}:\n{status}"


def test_argument_errors_before_any_collective():
    """Bad out_scale / descale arguments raise in the caller before the process
    group is touched (none is initialised here), with the op's wording."""
    from torch_fmha.distributed import context_parallel_attention
    q = torch.randn(1, 8, 4, 64).to(torch.float8_e4m3fn)
    k = torch.randn(1, 8, 2, 64).to(torch.float8_e4m3fn)
    one = torch.ones(1)
    with pytest.raises(ValueError, match=r"out_scale applies to out_dtype torch.float8_e4m3fn only, "
                                         r"got out_dtype torch.bfloat16"):
        context_parallel_attention(q, k, k, out_scale=one)
    with pytest.raises(ValueError, match=r"out_scale must be a float32 tensor of shape \[1\], got shape \[1, 2\]"):
        context_parallel_attention(q, k, k, out_dtype=torch.float8_e4m3fn, out_scale=torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"v_descale must have shape \[1\] or \[B, Hkv\] = \[1, 2\], got \[1, 4\]"):
        context_parallel_attention(q, k, k, v_descale=torch.ones(1, 4))


def test_varlen_argument_errors_before_any_collective():
    """The packed path checks its arguments before the process group is touched (none is
    initialised here); descale shapes are checked against the GLOBAL batch."""
    from torch_fmha.distributed import context_parallel_varlen_attention as cpv
    q = torch.randn(8, 4, 64).to(torch.float8_e4m3fn)
    k = torch.randn(8, 2, 64).to(torch.float8_e4m3fn)
    cu = torch.tensor([0, 5, 30], dtype=torch.int32)
    with pytest.raises(ValueError, match=r"q_descale must have shape \[1\] or \[B, Hkv\] = \[2, 2\], got \[8, 2\]"):
        cpv(q, k, k, cu, cu, q_descale=torch.ones(8, 2))
    with pytest.raises(ValueError, match=r"out_scale applies to out_dtype torch.float8_e4m3fn only"):
        cpv(q, k, k, cu, cu, out_scale=torch.ones(1))
    with pytest.raises(ValueError, match=r"cu_seqlens_k must be an int32 \[B \+ 1\] tensor"):
        cpv(q, k, k, cu, torch.tensor([0], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"cu_seqlens_k must equal cu_seqlens_q .* shapes \[4\] and \[3\]"):
        cpv(q, k, k, cu, torch.tensor([0, 5, 30, 30], dtype=torch.int32))
    with pytest.raises(ValueError, match="causal=True fixes window_right to 0"):
        cpv(q, k, k, cu, cu, causal=True, window_size=(-1, 3))
    with pytest.raises(ValueError, match="q, k, v must be packed"):
        cpv(q[None], k[None], k[None], cu, cu)


@pytest.fixture(scope="module")
def results_4():
    import torch_fmha  # noqa: F401
    return run_ranks(_worker_4, 4, JOIN_TIMEOUT_S)


@pytest.mark.parametrize("case", CASES_4)
def test_distributed_cpu_4_ranks(results_4, case):
    for rank, res in enumerate(results_4):
        status, seconds = res[case]
        print(f"rank {rank}: {case} {seconds:.2f} s")
        assert status == "ok", f"rank {rank}:\n{status}"
