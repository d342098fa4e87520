"""Bitwise A/B of two builds: one build saves digests of the outputs (and LSE) of a fixed
set of attention calls, another recomputes them and compares the digests. For a kernel knob
that claims to keep the bits (e.g. the integer row max, softmax.cuh int_max_of_scores):
    TORCH_FMHA_NVCC_EXTRA="-DTORCH_FMHA_TUNE_INT_MAX_128=0" python3 tools/bitwise_ab.py save /tmp/a.pt
    python3 tools/bitwise_ab.py compare /tmp/a.pt        # exit status 1 on any difference
Each output is kept as two weighted sums of its words (_digest), not its bytes. The cases
cover every head dim, dense (standard and packed v) and packed batches, both masks and a
window, bf16 and FP8 output, soft-capping, and inputs that exercise the softmax's edges: rows
whose scores are all negative, a NaN in q, and scores of both signs; FP8 output with rows that
see no key (causal with Sq > Sk), and non-causal launches that run the split tail (D = 64, and
D = 128 with a packed v; at the GPU size, 330 tiles on 132 SMs), one of them with
per-(batch, KV head) descales, an out_scale and sinks. Packed batches: one per head dim
(160 tiles on a 132-SM grid), and the same keys in paged pools of 16- and 64-key pages
(scattered, with unused pages), with softcap and sinks in one of them. Decode steps
(attention_with_kvcache, Sq 1 and 3, 1 / 5 / 16 / 20 splits, with and without sinks and FP8
output) per head dim."""
import sys

import torch

import torch_fmha

FP8 = torch.float8_e4m3fn


def _inputs(gen, b, s, h, hkv, d, kind):
    q, k, v = (torch.randn(b, s, n, d, generator=gen) for n in (h, hkv, hkv))
    if kind == "negative":  # q . k < 0 for every key of head 0's rows: all-negative score rows
        k[..., 0, :] = k[..., 0, :].abs()
        q[..., 0, :] = -q[..., 0, :].abs()
    if kind == "nan":
        q[0, s // 3, 0, 5] = float("nan")
    return q, k, v


def cases(device="cuda", seqlens=(333, 1024, 4224), lens=(700, 0, 1500, 129)):
    """(name, outputs) of each call. `device`, `seqlens`, `lens`: smaller cases on the CPU
    path for the tool's own test (tests/test_bitwise_ab_tool.py)."""
    gen = torch.Generator().manual_seed(27)
    one = torch.ones(1, device=device)
    for d in (64, 128, 256):
        for s in seqlens:
            for kind in ("randn", "negative", "nan"):
                q, k, v = (t.to(device) for t in _inputs(gen, 2, s, 8, 2, d, kind))
                q8, k8 = q.to(FP8), k.to(FP8)
                v_packed = torch_fmha.quantize_qkv(q, k, v, "tensor", pack_v=True).v if d > 64 else None
                v8 = v.to(FP8)
                for causal, window in ((False, (-1, -1)), (True, (-1, -1)), (False, (300, 0))):
                    for vname, vv in (("std", v8), ("packed", v_packed)):
                        if vv is None:
                            continue
                        for out_dtype in (None, FP8):
                            out, lse = torch_fmha.attention(
                                q8, k8, vv, causal=causal, window_size=window, q_descale=one,
                                k_descale=one, v_descale=one,
                                out_dtype=out_dtype, out_scale=one if out_dtype is FP8 else None,
                                return_lse=True)
                            name = f"D{d} S{s} {kind} causal={causal} window={window} v={vname} out={out_dtype}"
                            yield name, out, lse
                        # soft-capped
                        out, lse = torch_fmha.attention(
                            q8, k8, vv, causal=causal, window_size=window, softcap=30.0, q_descale=one,
                            k_descale=one, v_descale=one, return_lse=True)
                        yield f"D{d} S{s} {kind} causal={causal} window={window} v={vname} softcap=30", out, lse
        # FP8 output with rows that see no key (causal, Sq > Sk: bottom-right, the first
        # Sq - Sk rows are empty; epilogue.cuh zeroes them), and a non-causal launch whose
        # tiles the grid does not divide, so that the split tail runs where the head dim
        # has one (D = 64 from 2048 keys, D = 128 with a packed v from 4096;
        # tile_scheduler.cuh; 10 heads x 33 tiles on 132 SMs at the GPU size)
        sq, sk = seqlens[-1], seqlens[-1] // 2 + 1
        q, k, v = (t.to(device) for t in _inputs(gen, 1, sq, 10, 2, d, "randn"))
        q8, k8 = q.to(FP8), k[:, :sk].to(FP8)
        for name, vv in (("std", v[:, :sk].to(FP8)),
                         ("packed", torch_fmha.quantize_qkv(q, k[:, :sk], v[:, :sk], "tensor", pack_v=True).v
                          if d > 64 else None)):
            if vv is None:
                continue
            out, lse = torch_fmha.attention(q8, k8, vv, causal=True, q_descale=one, k_descale=one,
                                            v_descale=one, out_dtype=FP8, out_scale=one, return_lse=True)
            yield f"D{d} Sq{sq} Sk{sk} causal empty rows v={name} out=fp8", out, lse
        k8, v8 = k.to(FP8), v.to(FP8)
        v_split = torch_fmha.quantize_qkv(q, k, v, "tensor", pack_v=True).v if d > 64 else v8
        for out_dtype in (None, FP8):
            out, lse = torch_fmha.attention(q8, k8, v_split, q_descale=one, k_descale=one, v_descale=one,
                                            out_dtype=out_dtype, out_scale=one if out_dtype is FP8 else None,
                                            return_lse=True)
            yield f"D{d} S{sq} H10 split tail out={out_dtype}", out, lse
        # per-(batch, KV head) descales, an out_scale other than 1 and sinks, in the split tail:
        # each tile must get its own head's scalars (the producer loads them per tile, producer.cuh)
        scales = {n: (0.5 + torch.rand(1, 2, generator=gen)).to(device) for n in ("q_descale", "k_descale", "v_descale")}
        out, lse = torch_fmha.attention(q8, k8, v_split, out_dtype=FP8, out_scale=torch.full((1,), 0.75, device=device),
                                        sinks=torch.linspace(-1.0, 1.0, 10, device=device), return_lse=True, **scales)
        yield f"D{d} S{sq} H10 split tail per-head scales sinks out=fp8", out, lse
        # a packed batch with an empty sequence
        cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.int32, device=device)
        t = sum(lens)
        qp, kp, vp = (torch.randn(t, n, d, generator=gen).to(device).to(FP8) for n in (8, 2, 2))
        for causal in (False, True):
            out, lse = torch_fmha.varlen_attention(qp, kp, vp, cu, cu, causal=causal, q_descale=one,
                                                   k_descale=one, v_descale=one, return_lse=True)
            yield f"D{d} varlen causal={causal}", out, lse
        # the same sequences' keys in a paged pool (scattered pages), with softcap and sinks too
        for page in (16, 64):
            pages = [(n + page - 1) // page for n in lens]
            order = torch.randperm(sum(pages) + 3, generator=gen)  # 3 pages nobody uses
            pool_k, pool_v = (torch.randn(len(order), page, 2, d, generator=gen).to(device).to(FP8)
                              for _ in range(2))
            table = torch.full((len(lens), max(pages)), -1, dtype=torch.int32)
            used = 0
            for b, (n, np_) in enumerate(zip(lens, pages)):
                table[b, :np_] = order[used:used + np_].to(torch.int32)
                for j in range(np_):  # sequence b's keys go to its pages
                    rows = slice(j * page, min(n, (j + 1) * page))
                    pool_k[table[b, j], : rows.stop - rows.start] = kp[cu[b] + rows.start:cu[b] + rows.stop]
                    pool_v[table[b, j], : rows.stop - rows.start] = vp[cu[b] + rows.start:cu[b] + rows.stop]
                used += np_
            seqused = torch.tensor(lens, dtype=torch.int32, device=device)
            sinks = torch.linspace(-1.0, 1.0, 8, device=device)
            for causal, extra in ((False, {}), (True, {}), (True, {"softcap": 30.0, "sinks": sinks})):
                out, lse = torch_fmha.varlen_attention(
                    qp, pool_k, pool_v, cu, None, causal=causal, seqused_k=seqused, page_table=table.to(device),
                    q_descale=one, k_descale=one, v_descale=one, return_lse=True, **extra)
                yield f"D{d} paged {page} causal={causal} {sorted(extra)}", out, lse
        # decode steps against a cache (attention_with_kvcache: the decode kernel and the merge
        # kernel on CUDA), 1 to 20 splits
        smax = max(lens) + 64
        kc, vc = (torch.randn(3, smax, 4, d, generator=gen).to(device).to(FP8) for _ in range(2))
        cache_seqlens = torch.tensor(lens[:3], dtype=torch.int32, device=device)
        sinks16 = torch.linspace(-2.0, 2.0, 16, device=device)
        for sq in (1, 3):
            qd = torch.randn(3, sq, 16, d, generator=gen).to(device).to(FP8)
            for splits in (1, 5, 16, 20):
                for extra in ({}, {"sinks": sinks16, "out_dtype": FP8, "out_scale": one}):
                    out, lse = torch_fmha.attention_with_kvcache(
                        qd, kc, vc, cache_seqlens, causal=True, num_splits=splits, q_descale=one, k_descale=one,
                        v_descale=one, return_lse=True, **extra)
                    yield f"D{d} decode Sq{sq} splits={splits} {sorted(extra)}", out, lse


def main(argv, **case_args):
    if len(argv) != 2 or argv[0] not in ("save", "compare"):
        sys.exit(__doc__)
    if not case_args and (reason := torch_fmha.sm90_unavailable_reason()) is not None:
        sys.exit(f"bitwise_ab.py: no SM90 kernel to run: {reason}")
    results, nan_rows = {}, 0
    for name, out, lse in cases(**case_args):
        results[name] = (_digest(out), _digest(lse))
        nan_rows += int(lse.isnan().sum())
    print(f"{len(results)} calls, {nan_rows} NaN LSE entries among them")
    if argv[0] == "save":
        torch.save(results, argv[1])
        print(f"saved their digests to {argv[1]}")
        return
    saved = torch.load(argv[1])
    assert saved.keys() == results.keys(), "the two runs made different calls"
    differ = [f"{name}: out {'same' if out == saved[name][0] else 'DIFFERS'}, "
              f"lse {'same' if lse == saved[name][1] else 'DIFFERS'}"
              for name, (out, lse) in results.items() if (out, lse) != saved[name]]
    print(f"compared with {argv[1]}: {len(differ)} of {len(results)} calls differ")
    for line in differ:
        print("  " + line)
    sys.exit(1 if differ else 0)


def _digest(t: torch.Tensor) -> tuple[int, int]:
    """Two weighted sums of the tensor's 32-bit words (wrapping int64 sums, on its device): a
    single changed word always changes both (its weights are odd and below 2^32), and several
    changes cancel in both only by accident."""
    # a fresh row-major 1-D copy: viewing it as bytes needs stride 1, which a view of a
    # size-1 dim need not have (the decode LSE [B, H, 1])
    b = t.reshape(-1).clone(memory_format=torch.contiguous_format).view(torch.uint8)
    b = torch.cat([b, b.new_zeros((-b.numel()) % 4)])
    w = b.view(torch.int32).to(torch.int64)
    i = torch.arange(w.numel(), device=w.device, dtype=torch.int64)
    return (int((w * (i * 2654435761 % 4294967291 | 1)).sum()),
            int((w * (i * 40503 % 4294967279 | 1)).sum()))


if __name__ == "__main__":
    main(sys.argv[1:])
