"""torch_fmha.distributed on 2 GPUs with NCCL: FP8 inputs, against the single-GPU
op and the float64 oracle; ring == all-gather bitwise; torch.compile (inductor,
fullgraph) against eager; packed batches (varlen_*: context_parallel_varlen_attention
against torch_fmha.varlen_attention on the whole batch, same rule). Skips without
2 SM90 GPUs.

Run by pytest (spawns 2 processes) or directly, on any W >= 2 GPUs:
    [CP_CASES=name,...] torchrun --nproc-per-node W tests/gpu/test_context_parallel.py

Accuracy rule: the context-parallel result is compared with the float64
oracle on the same FP8 inputs, next to the single-GPU op on the whole
sequence: RMSE within 1.25x of the op's (+1e-5), max error within
2x the op's (+1e-3) (the kernel's FP8 P rounding depends on the row max of
each partial, so CP and the op are two equally good roundings, not bitwise
equal), LSE within 2e-3 of the oracle (the rule of tests/gpu/test_fwd_sm90.py).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORLD = 2
JOIN_TIMEOUT_S = 300  # every case in one spawn, two inductor compiles among them
FP8 = torch.float8_e4m3fn

# name: (S, B, H, Hkv, D, causal, window, out_dtype)
CASES = {
    "causal_S4102_gqa": (4102, 1, 8, 2, 128, True, (-1, -1), torch.bfloat16),
    "noncausal_S4096": (4096, 1, 8, 8, 128, False, (-1, -1), torch.bfloat16),
    "window_512_causal": (4100, 1, 8, 2, 128, True, (512, -1), torch.bfloat16),
    "window_300_200": (4096, 2, 4, 1, 64, False, (300, 200), torch.bfloat16),
    "causal_fp8_out_d256": (2054, 1, 4, 2, 256, True, (-1, -1), FP8),
}


# Packed batches over the ranks (context_parallel_varlen_attention): empty sequences, lengths
# not divisible by 2W, one long sequence. name: (lengths, H, Hkv, D, causal, window, out_dtype)
VARLEN_LENS = [3000, 0, 1237, 4099, 17, 2048, 1]
VARLEN_CASES = {
    "varlen_causal_gqa": (VARLEN_LENS, 8, 2, 128, True, (-1, -1), torch.bfloat16),
    "varlen_noncausal_mqa": (VARLEN_LENS, 8, 1, 128, False, (-1, -1), torch.bfloat16),
    "varlen_window_300_200": (VARLEN_LENS, 4, 2, 64, False, (300, 200), torch.bfloat16),
    "varlen_window_512_causal": ([8195, 3, 999], 8, 2, 128, True, (512, -1), torch.bfloat16),
    "varlen_causal_fp8_out_d256": ([2054, 0, 517], 4, 2, 256, True, (-1, -1), FP8),
}
VARLEN_EXTRA = ["varlen_global_scales", "varlen_compiled_vs_eager", "no_host_sync"]


def _cases(rank: int, world: int, device_type: str = "cuda", compile_backend="inductor",
           only=None) -> dict:
    """Every case (or the names in ``only``) on this rank: name -> (status, info, seconds).
    ``device_type="cpu"`` (gloo) runs the same logic on the CPU op, e.g. to check a change."""
    import torch.distributed as dist

    import torch_fmha
    import torch_fmha.distributed as cp
    from reference import attention_ref, output_as_float64

    dev = torch.device(device_type, rank) if device_type == "cuda" else torch.device(device_type)
    results = {}

    def shard(x, dim=1):
        return cp.shard_sequence(x, dim=dim)

    def inputs(S, B, H, Hkv, D, seed=0):
        g = torch.Generator().manual_seed(seed)
        q = torch.randn(B, S, H, D, generator=g)
        k = torch.randn(B, S, Hkv, D, generator=g)
        v = torch.randn(B, S, Hkv, D, generator=g) * torch.linspace(0.5, 3.0, Hkv)[None, None, :, None]
        return q.to(dev), k.to(dev), v.to(dev)

    def errors(out, ref):
        d = (out - ref).abs()
        return d.pow(2).mean().sqrt().item(), d.max().item()

    def case(name):
        S, B, H, Hkv, D, causal, window, out_dtype = CASES[name]
        q, k, v = inputs(S, B, H, Hkv, D)
        # Global per-(batch, head) scales from the shards (all-reduced amax) ...
        q8l, qd = cp.quantize_fp8_global(shard(q), "head", group_size=H // Hkv)
        k8l, kd = cp.quantize_fp8_global(shard(k), "head")
        v8l, vd = cp.quantize_fp8_global(shard(v), "head")
        # ... equal the single-GPU quantization of the whole tensors.
        q8, qd1 = torch_fmha.quantize_fp8(q, "head", group_size=H // Hkv)
        k8, kd1 = torch_fmha.quantize_fp8(k, "head")
        v8, vd1 = torch_fmha.quantize_fp8(v, "head")
        assert torch.equal(qd, qd1) and torch.equal(kd, kd1) and torch.equal(vd, vd1)
        assert torch.equal(q8l.view(torch.uint8), shard(q8).view(torch.uint8))
        out_scale = torch.tensor([0.05], device=dev) if out_dtype == FP8 else None
        kw = dict(causal=causal, window_size=window, q_descale=qd, k_descale=kd, v_descale=vd,
                  out_dtype=out_dtype, out_scale=out_scale, return_lse=True)
        single, single_lse = torch_fmha.attention(q8, k8, v8, **kw)
        ring = cp.context_parallel_attention(q8l, k8l, v8l, seqlen=S, kv_exchange="ring", **kw)
        ag = cp.context_parallel_attention(q8l, k8l, v8l, seqlen=S, kv_exchange="allgather", **kw)
        assert torch.equal(ring[0].view(torch.uint8), ag[0].view(torch.uint8)), "ring != allgather"
        assert torch.equal(ring[1], ag[1]), "ring lse != allgather lse"
        out, lse = ring
        assert out.dtype == out_dtype and out.shape == q8l.shape
        ref, ref_lse = attention_ref(q8, k8, v8, causal=causal, window_size=window,
                                     q_descale=qd, k_descale=kd, v_descale=vd)
        ref_l, ref_lse_l = shard(ref), shard(ref_lse, 2)
        rmse_cp, max_cp = errors(output_as_float64(out, out_scale), ref_l)
        rmse_1, max_1 = errors(output_as_float64(shard(single), out_scale), ref_l)
        assert rmse_cp <= 1.25 * rmse_1 + 1e-5, f"{name}: rmse {rmse_cp:.3e} vs single GPU {rmse_1:.3e}"
        assert max_cp <= 2 * max_1 + 1e-3, f"{name}: max err {max_cp:.3e} vs single GPU {max_1:.3e}"
        lse_err = (lse.double() - ref_lse_l).abs().max().item()
        assert lse_err < 2e-3, f"{name}: lse error {lse_err:.3e}"
        return f"rmse {rmse_cp:.3e} (1 GPU {rmse_1:.3e}) max {max_cp:.3e} (1 GPU {max_1:.3e}) lse {lse_err:.1e}"

    def compiled_vs_eager():
        S, B, H, Hkv, D = 4102, 1, 8, 2, 128
        q, k, v = inputs(S, B, H, Hkv, D, seed=1)
        ql, kl, vl = shard(q), shard(k), shard(v)

        q8, qd = cp.quantize_fp8_global(ql, "head", group_size=H // Hkv)
        k8, kd = cp.quantize_fp8_global(kl, "head")
        v8, vd = cp.quantize_fp8_global(vl, "head")

        def f(q8, k8, v8):  # the same FP8 inputs: only the graph (merge fusion) differs
            return cp.context_parallel_attention(q8, k8, v8, causal=True, seqlen=S, q_descale=qd,
                                                 k_descale=kd, v_descale=vd, return_lse=True)

        eager = f(q8, k8, v8)
        comp = torch.compile(f, fullgraph=True, backend=compile_backend)(q8, k8, v8)
        a, b = comp[0].double(), eager[0].double()
        tol = 2.0 ** -7 * torch.maximum(a.abs(), b.abs()) + 2.0 ** -10 * b.abs().max()
        assert ((a - b).abs() <= tol).all(), f"compiled vs eager out: {(a - b).abs().max().item():.3e}"
        dl = (comp[1] - eager[1]).abs()
        assert (dl <= 1e-5 * (1 + eager[1].abs())).all(), f"compiled vs eager lse: {dl.max().item():.3e}"
        return f"max |compiled - eager| {(a - b).abs().max().item():.3e}, lse {dl.max().item():.1e}"

    # ---- packed batches: the CP result on the shards of FP8 tensors quantized by the
    # single-GPU quantizer (so the comparison does not depend on the global-scale helper,
    # checked on its own in varlen_global_scales), against the single-GPU varlen op on the
    # whole packed batch and the float64 oracle: the accuracy rule of the module doc.
    from reference import varlen_attention_ref

    def packed(lens, H, Hkv, D, seed=0):
        cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=dev)
        T = sum(lens)
        g = torch.Generator().manual_seed(seed)
        q = torch.randn(T, H, D, generator=g)
        k = torch.randn(T, Hkv, D, generator=g)
        v = torch.randn(T, Hkv, D, generator=g) * torch.linspace(0.5, 3.0, Hkv)[None, :, None]
        return q.to(dev), k.to(dev), v.to(dev), cu, T

    def vshard(x, cu):
        return cp.shard_varlen(x, cu)

    def varlen_case(name):
        lens, H, Hkv, D, causal, window, out_dtype = VARLEN_CASES[name]
        q, k, v, cu, T = packed(lens, H, Hkv, D)
        q8, qd = torch_fmha.quantize_fp8(q, "head", group_size=H // Hkv, cu_seqlens=cu)
        k8, kd = torch_fmha.quantize_fp8(k, "head", cu_seqlens=cu)
        v8, vd = torch_fmha.quantize_fp8(v, "head", cu_seqlens=cu)
        out_scale = torch.tensor([0.05], device=dev) if out_dtype == FP8 else None
        kw = dict(causal=causal, window_size=window, q_descale=qd, k_descale=kd, v_descale=vd,
                  out_dtype=out_dtype, out_scale=out_scale, return_lse=True)
        single, single_lse = torch_fmha.varlen_attention(q8, k8, v8, cu, cu, **kw)
        out_l, lse_l = cp.context_parallel_varlen_attention(vshard(q8, cu), vshard(k8, cu), vshard(v8, cu),
                                                            cu, cu, **kw)
        out = cp.unshard_varlen(out_l.view(torch.uint8), cu, T).view(out_dtype)
        lse = cp.unshard_varlen(lse_l.t().contiguous(), cu, T).t()
        pad = cp.varlen_shard_positions(cu, out_l.size(0)) < 0
        assert out_l.dtype == out_dtype and out_l.shape[1:] == q8.shape[1:]
        assert bool((out_l[pad].view(torch.uint8) == 0).all()), "padding rows must be 0"
        assert bool((lse_l[:, pad] == float("-inf")).all()), "padding rows' lse must be -inf"
        ref, ref_lse = varlen_attention_ref(q8, k8, v8, cu, cu, causal=causal, window_size=window,
                                            q_descale=qd, k_descale=kd, v_descale=vd)
        rmse_cp, max_cp = errors(output_as_float64(out, out_scale), ref)
        rmse_1, max_1 = errors(output_as_float64(single, out_scale), ref)
        assert rmse_cp <= 1.25 * rmse_1 + 1e-5, f"{name}: rmse {rmse_cp:.3e} vs single GPU {rmse_1:.3e}"
        assert max_cp <= 2 * max_1 + 1e-3, f"{name}: max err {max_cp:.3e} vs single GPU {max_1:.3e}"
        fin = torch.isfinite(ref_lse)
        assert torch.equal(fin, torch.isfinite(lse)), f"{name}: -inf lse rows differ from the oracle's"
        lse_err = (lse.double()[fin] - ref_lse[fin]).abs().max().item()
        assert lse_err < 2e-3, f"{name}: lse error {lse_err:.3e}"
        return f"rmse {rmse_cp:.3e} (1 GPU {rmse_1:.3e}) max {max_cp:.3e} (1 GPU {max_1:.3e}) lse {lse_err:.1e}"

    def varlen_global_scales():
        q, k, _, cu, T = packed(VARLEN_LENS, 8, 2, 128, seed=2)
        for x, gran, gs in ((q, "head", 4), (k, "head", 1), (k, "tensor", 1)):
            x8l, d = cp.quantize_fp8_global_varlen(vshard(x, cu), cu, gran, group_size=gs)
            r8, rd = torch_fmha.quantize_fp8(x, gran, group_size=gs, cu_seqlens=cu)
            assert torch.equal(d, rd), f"{gran}: global descale differs from quantize_fp8's"
            same = (x8l.view(torch.uint8) == vshard(r8.view(torch.uint8), cu)).float().mean().item()
            assert same == 1.0, f"{gran}: {100 * (1 - same):.4f}% of the FP8 bytes differ from quantize_fp8's"
        return "descales and FP8 bytes equal to torch_fmha.quantize_fp8 on the whole batch"

    def searchsorted_probe():
        # pytorch/pytorch#182343 (fixed in torch 2.13): Inductor's Triton lowering of searchsorted
        # ignored the offset of a sliced boundaries tensor. The CP code no longer searches a
        # slice (distributed_varlen._bucket); this says whether this torch has the bug.
        offs = torch.tensor([0, 3, 7, 12], device=dev)
        vals = torch.arange(12, device=dev)

        def g(o, x):
            return torch.searchsorted(o[1:], x, right=True)

        torch._dynamo.reset()
        same = torch.equal(torch.compile(g, fullgraph=True, backend=compile_backend)(offs, vals), g(offs, vals))
        return "searchsorted(x[1:]) compiled == eager" if same else \
            "searchsorted(x[1:]) compiled != eager on this torch (pytorch#182343)"

    def varlen_compiled_vs_eager():
        q, k, v, cu, T = packed(VARLEN_LENS, 8, 2, 128, seed=1)
        q8, qd = cp.quantize_fp8_global_varlen(vshard(q, cu), cu, "head", group_size=4)
        k8, kd = cp.quantize_fp8_global_varlen(vshard(k, cu), cu, "head")
        v8, vd = cp.quantize_fp8_global_varlen(vshard(v, cu), cu, "head")

        def run(window, backend):  # window (300, 200): past + future calls and the merge
            def f(q8, k8, v8):
                return cp.context_parallel_varlen_attention(q8, k8, v8, cu, cu, window_size=window,
                                                            q_descale=qd, k_descale=kd, v_descale=vd,
                                                            return_lse=True)
            if backend is None:
                return f(q8, k8, v8)
            torch._dynamo.reset()
            return torch.compile(f, fullgraph=True, backend=backend)(q8, k8, v8)

        def bad_rows(comp, eager):
            a, b = comp[0].double(), eager[0].double()
            tol = 2.0 ** -7 * torch.maximum(a.abs(), b.abs()) + 2.0 ** -10 * b.abs().max()
            return ((a - b).abs() > tol).flatten(1).any(1), (a - b).abs().max().item()

        def where(bad):  # which local rows: per sequence, position range, padding or not
            lcu = cp.varlen_shard_cu_seqlens(cu)
            rows = torch.arange(bad.numel(), device=dev)
            seq = (torch.searchsorted(lcu, rows, right=True) - 1).tolist()
            pos = cp.varlen_shard_positions(cu, bad.numel()).tolist()
            per = {}
            for r in bad.nonzero().flatten().tolist():
                key = "padding" if pos[r] < 0 else f"seq {seq[r]}"
                lo, hi, n = per.get(key, (pos[r], pos[r], 0))
                per[key] = (min(lo, pos[r]), max(hi, pos[r]), n + 1)
            return ", ".join(f"{k_}: {n} rows, positions {lo}..{hi}" for k_, (lo, hi, n) in per.items())

        eager = run((300, 200), None)
        comp = run((300, 200), compile_backend)
        bad, err = bad_rows(comp, eager)
        if bool(bad.any()):  # localise: which rows; does aot_eager (no Inductor) agree; one partial?
            msg = [f"compiled vs eager out: {err:.3e} in {int(bad.sum())} of {bad.numel()} local rows "
                   f"(torch {torch.__version__}; {where(bad)})"]
            a_bad, a_err = bad_rows(run((300, 200), "aot_eager"), eager)
            msg.append(f"aot_eager vs eager: {a_err:.3e} in {int(a_bad.sum())} rows")
            c_bad, c_err = bad_rows(run((-1, 0), compile_backend), run((-1, 0), None))
            msg.append(f"causal (one partial per row, no merge, no future call): {c_err:.3e} in "
                       f"{int(c_bad.sum())} rows")
            msg.append(searchsorted_probe())
            raise AssertionError("; ".join(msg))
        fin = torch.isfinite(eager[1])
        assert torch.equal(fin, torch.isfinite(comp[1]))
        dl = (comp[1][fin] - eager[1][fin]).abs()
        assert (dl <= 1e-5 * (1 + eager[1][fin].abs())).all(), f"compiled vs eager lse: {dl.max().item():.3e}"
        return (f"max |compiled - eager| {err:.3e}, lse {dl.max().item():.1e}; torch {torch.__version__}: "
                f"{searchsorted_probe()}")

    def no_host_sync():
        # The dense (both exchanges) and packed paths, global scales included, under
        # set_sync_debug_mode("error"): a synchronising CUDA call raises.
        S, H, Hkv, D = 4102, 8, 2, 128
        q, k, v = inputs(S, 1, H, Hkv, D, seed=3)
        ql, kl, vl = shard(q), shard(k), shard(v)
        pq, pk, pv, cu, T = packed(VARLEN_LENS, H, Hkv, D, seed=3)
        pql, pkl, pvl = vshard(pq, cu), vshard(pk, cu), vshard(pv, cu)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            q8, qd = cp.quantize_fp8_global(ql, "head", group_size=H // Hkv)
            k8, kd = cp.quantize_fp8_global(kl, "head")
            v8, vd = cp.quantize_fp8_global(vl, "head")
            for ex in ("ring", "allgather"):
                cp.context_parallel_attention(q8, k8, v8, causal=True, seqlen=S, q_descale=qd, k_descale=kd,
                                              v_descale=vd, kv_exchange=ex)
            q8, qd = cp.quantize_fp8_global_varlen(pql, cu, "head", group_size=H // Hkv)
            k8, kd = cp.quantize_fp8_global_varlen(pkl, cu, "head")
            v8, vd = cp.quantize_fp8_global_varlen(pvl, cu, "head")
            for window in ((-1, 0), (300, 200)):
                cp.context_parallel_varlen_attention(q8, k8, v8, cu, cu.clone(), window_size=window,
                                                     q_descale=qd, k_descale=kd, v_descale=vd)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()
        return "no synchronising CUDA call"

    todo = {n: (lambda n=n: case(n)) for n in CASES}
    todo["compiled_vs_eager"] = compiled_vs_eager
    todo.update({n: (lambda n=n: varlen_case(n)) for n in VARLEN_CASES})
    todo["varlen_global_scales"] = varlen_global_scales
    todo["varlen_compiled_vs_eager"] = varlen_compiled_vs_eager
    if device_type == "cuda":
        todo["no_host_sync"] = no_host_sync
    if only is not None:
        todo = {n: fn for n, fn in todo.items() if n in only}
    for name, fn in todo.items():
        t0 = time.time()
        try:
            results[name] = ("ok", fn(), time.time() - t0)
        except Exception:
            results[name] = (traceback.format_exc(), "", time.time() - t0)
        if rank == 0:  # progress as it goes: a run killed by its time limit still shows it
            status, info, sec = results[name]
            tail = info if status == "ok" else status.strip().splitlines()[-1]
            print(f"[cp] rank 0 {'PASS' if status == 'ok' else 'FAIL'} {name} ({sec:.1f} s): {tail}",
                  flush=True)
        if device_type == "cuda":
            torch.cuda.synchronize()
        dist.barrier()
    return results


def _init(rank: int, world: int, init_method: str):
    import torch.distributed as dist
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=init_method, rank=rank, world_size=world,
                            device_id=torch.device("cuda", rank))


def _worker(rank, world, init_file):
    import torch.distributed as dist
    _init(rank, world, f"file://{init_file}")
    try:
        return _cases(rank, world)
    finally:
        dist.destroy_process_group()


def _skip_reason():
    if torch.cuda.device_count() < WORLD:
        return f"needs {WORLD} GPUs, found {torch.cuda.device_count()}"
    return None


@pytest.fixture(scope="module")
def results():
    from spawn_ranks import run_ranks

    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    return run_ranks(_worker, WORLD, JOIN_TIMEOUT_S)


@pytest.mark.timeout(JOIN_TIMEOUT_S + 60, method="thread")
@pytest.mark.parametrize("name", [*CASES, "compiled_vs_eager", *VARLEN_CASES, *VARLEN_EXTRA])
def test_context_parallel_2gpu(results, name):
    for rank, res in enumerate(results):
        status, info, seconds = res[name]
        print(f"rank {rank} {name}: {info} ({seconds:.1f} s)")
        assert status == "ok", f"rank {rank}:\n{status}"


if __name__ == "__main__":
    # torchrun --nproc-per-node W tests/gpu/test_context_parallel.py (any W >= 2);
    # CP_CASES=name,name,... runs only those cases (e.g. the ones without a compile).
    import torch.distributed as dist
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    _init(int(os.environ.get("LOCAL_RANK", rank)), world, "env://")
    only = set(os.environ["CP_CASES"].split(",")) if os.environ.get("CP_CASES") else None
    res = _cases(rank, world, only=only)
    dist.destroy_process_group()
    bad = 0
    for name, (status, info, seconds) in res.items():
        ok = status == "ok"
        bad += not ok
        print(f"rank {rank} {'PASS' if ok else 'FAIL'} {name}: {info if ok else status} ({seconds:.1f} s)")
    sys.exit(1 if bad else 0)
