"""torch_fmha kernel dev harness (GPU machine): correctness + timing of
build/libfmha_dev.so through ctypes. Torch is only used for data, the
float64 reference, the rounding emulation and the SDPA baseline.

  python3 tools/kernel_dev/harness.py [--quick] [--no-perf] [--only-perf]

Correctness rule (FlashAttention's): max|out - ref| <= 2 * max|emul - ref| + eps,
emul = the kernel's rounding steps done in torch (fp8 inputs, P = fp8(exp2(.. + 8)),
l from unrounded p, out dtype rounding). Outputs / LSE are NaN-poisoned, written
through views into larger NaN buffers (rows past Sq must stay NaN), and K/V are
views into NaN-padded buffers (padding must not leak).
"""
import argparse
import ctypes
import math
import os
import sys
import time

import torch

LIB = os.environ.get("TFMHA_DEV_LIB") or os.path.join(os.path.dirname(__file__), "..", "..", "build", "libfmha_dev.so")
OUT_TYPES = {"bf16": (1, torch.bfloat16), "fp16": (2, torch.float16), "fp8": (0, torch.float8_e4m3fn)}
FP8 = torch.float8_e4m3fn


class Lib:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        f = self.lib.tfmha_fwd
        f.restype = ctypes.c_int
        f.argtypes = [ctypes.c_void_p] * 5 + [ctypes.POINTER(ctypes.c_int64)] + [ctypes.c_int] * 6 + [
            ctypes.c_float] + [ctypes.c_void_p] * 4 + [ctypes.POINTER(ctypes.c_int32)] + [
            ctypes.c_int] * 4 + [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self.msg = ctypes.create_string_buffer(512)

    def fwd(self, q, k, v, out, lse, scale, qd, kd, vd, os_, wl, wr, out_type, num_sms):
        B, Sq, H, D = q.shape
        Sk, Hkv = k.shape[1], k.shape[2]
        st = [*q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3], lse.stride(0), lse.stride(1)]
        strides = (ctypes.c_int64 * 14)(*st)
        ss = []
        for t in (qd, kd, vd, os_):
            ss += [0, 0] if t is None else [t.stride(0), t.stride(1)]
        sstr = (ctypes.c_int32 * 8)(*ss)
        ptr = lambda t: None if t is None else t.data_ptr()
        rc = self.lib.tfmha_fwd(ptr(q), ptr(k), ptr(v), ptr(out), ptr(lse), strides, B, H, Hkv, D, Sq, Sk,
                                scale, ptr(qd), ptr(kd), ptr(vd), ptr(os_), sstr, wl, wr, OUT_TYPES[out_type][0],
                                num_sms, ctypes.c_void_p(torch.cuda.current_stream().cuda_stream), self.msg, 512)
        if rc != 0:
            raise RuntimeError(f"tfmha_fwd rc={rc}: {self.msg.value.decode()}")


def expand_kv(t, H):
    # [B, S, Hkv, D] -> [B, S, H, D]
    g = H // t.shape[2]
    return t.repeat_interleave(g, dim=2)


def per_head(scale, B, H, Hkv):
    # [B, Hkv] -> [B, 1, H, 1] (broadcast over rows and d), q heads h -> h // g
    return scale.repeat_interleave(H // Hkv, dim=1).view(B, 1, H, 1)


def visible_mask(Sq, Sk, wl, wr, device):
    i = torch.arange(Sq, device=device).view(Sq, 1)
    j = torch.arange(Sk, device=device).view(1, Sk)
    off = Sk - Sq
    m = torch.ones(Sq, Sk, dtype=torch.bool, device=device)
    if wl >= 0:
        m &= j >= i + off - wl
    if wr >= 0:
        m &= j <= i + off + wr
    return m  # [Sq, Sk]


def reference(q, k, v, qd, kd, vd, scale, wl, wr):
    """float64 attention on the dequantized inputs. out [B,Sq,H,D], lse [B,H,Sq]."""
    B, Sq, H, D = q.shape
    Hkv = k.shape[2]
    qf = q.double() * per_head(qd, B, H, Hkv).double()
    kf = expand_kv(k.double() * per_head(kd, B, Hkv, Hkv).double(), H)
    vf = expand_kv(v.double() * per_head(vd, B, Hkv, Hkv).double(), H)
    s = torch.einsum("bqhd,bkhd->bhqk", qf, kf) * scale
    m = visible_mask(Sq, k.shape[1], wl, wr, q.device)
    s = s.masked_fill(~m, -math.inf)
    lse = torch.logsumexp(s, dim=-1)  # -inf for empty rows
    p = torch.exp(s - lse.unsqueeze(-1))
    p = torch.nan_to_num(p, nan=0.0)
    out = torch.einsum("bhqk,bkhd->bqhd", p, vf)
    return out, lse


def emulate(q, k, v, qd, kd, vd, os_, scale, wl, wr, out_type):
    """The kernel's rounding steps in torch (global row max instead of the running one)."""
    B, Sq, H, D = q.shape
    Hkv = k.shape[2]
    kf = expand_kv(k.float(), H)
    vf = expand_kv(v.float(), H)
    s = torch.einsum("bqhd,bkhd->bhqk", q.float(), kf)  # raw scores, fp32 accumulate
    sl2 = (scale * qd * kd * math.log2(math.e)).float().repeat_interleave(H // Hkv, dim=1).view(B, H, 1, 1)
    m = visible_mask(Sq, k.shape[1], wl, wr, q.device)
    s = s.masked_fill(~m, -math.inf)
    mx = s.amax(dim=-1, keepdim=True)
    mxs = torch.where(mx == -math.inf, torch.zeros_like(mx), mx * sl2)
    p = torch.exp2(s * sl2 - mxs + 8.0)
    l = p.sum(-1, keepdim=True)
    p8 = p.to(FP8).float()
    o = torch.einsum("bhqk,bkhd->bqhd", p8, vf)
    inv = torch.where(l > 0, 1.0 / l, torch.zeros_like(l)).permute(0, 2, 1, 3)  # [B,Sq,H,1]
    o = o * inv * per_head(vd, B, H, Hkv)
    if out_type == "fp8":
        o = (o / per_head(os_, B, H, Hkv)).clamp(-448, 448).to(FP8).float() * per_head(os_, B, H, Hkv)
    else:
        o = o.to(OUT_TYPES[out_type][1]).float()
    return o.double()


def fp8_nan_fill(shape, device):
    return torch.full(shape, float("nan"), device=device).to(FP8)


def make_inputs(B, Sq, Sk, H, Hkv, D, device, pad=16):
    g = torch.Generator(device=device)
    g.manual_seed(1234 + B * 7 + Sq * 13 + Sk * 17 + H * 19 + D)
    q = (torch.randn(B, Sq, H, D, device=device, generator=g) * 1.5).to(FP8)
    kbuf = fp8_nan_fill((B, Sk + pad, Hkv, D), device)
    vbuf = fp8_nan_fill((B, Sk + pad, Hkv, D), device)
    kbuf[:, :Sk] = (torch.randn(B, Sk, Hkv, D, device=device, generator=g) * 1.5).to(FP8)
    vbuf[:, :Sk] = (torch.randn(B, Sk, Hkv, D, device=device, generator=g) * 2.0).to(FP8)
    k = kbuf[:, :Sk]
    v = vbuf[:, :Sk]
    qd = torch.rand(B, Hkv, device=device, generator=g) * 1.5 + 0.25
    kd = torch.rand(B, Hkv, device=device, generator=g) * 1.5 + 0.25
    vd = torch.rand(B, Hkv, device=device, generator=g) * 1.5 + 0.25
    return q, k, v, qd, kd, vd


def run_case(lib, num_sms, B, Sq, Sk, H, Hkv, D, wl, wr, out_type, device="cuda"):
    q, k, v, qd, kd, vd = make_inputs(B, Sq, Sk, H, Hkv, D, device)
    scale = 1.0 / math.sqrt(D)
    odt = OUT_TYPES[out_type][1]
    os_ = (torch.rand(B, Hkv, device=device) * 0.5 + 0.05) if out_type == "fp8" else None
    obuf = torch.full((B, Sq + 8, H, D), float("nan"), device=device).to(odt)
    out = obuf[:, :Sq]
    lbuf = torch.full((B, H, Sq + 8), float("nan"), device=device)
    lse = lbuf[:, :, :Sq]
    lib.fwd(q, k, v, out, lse, scale, qd, kd, vd, os_, wl, wr, out_type, num_sms)
    torch.cuda.synchronize()
    ref, ref_lse = reference(q, k, v, qd, kd, vd, scale, wl, wr)
    emul = emulate(q, k, v, qd, kd, vd, os_, scale, wl, wr, out_type)
    o = out.float().double()
    if out_type == "fp8":
        o = o * per_head(os_, B, H, Hkv).double()
    nan_out = torch.isnan(o).sum().item()
    tail_ok = bool(torch.isnan(obuf[:, Sq:].float()).all().item()) and bool(torch.isnan(lbuf[:, :, Sq:]).all().item())
    err = (o - ref).abs().max().item() if o.numel() else 0.0
    emul_err = (emul - ref).abs().max().item() if o.numel() else 0.0
    refmax = ref.abs().max().item() if o.numel() else 0.0
    eps = 1e-3 * refmax + 1e-6
    rmse = ((o - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item() if o.numel() else 0.0
    emul_rmse = ((emul - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item() if o.numel() else 0.0
    # LSE: -inf rows must match exactly, finite rows within 1e-3 (relative to max(1,|lse|)).
    l = lse.double()
    both_inf = torch.isinf(ref_lse) & torch.isinf(l) & (ref_lse < 0) & (l < 0)
    lse_err_t = torch.where(both_inf, torch.zeros_like(l), (l - ref_lse).abs() / ref_lse.abs().clamp_min(1.0))
    lse_err = torch.nan_to_num(lse_err_t, nan=float("inf")).max().item() if l.numel() else 0.0
    ok = nan_out == 0 and tail_ok and err <= 2 * emul_err + eps and lse_err <= 1e-3
    return ok, dict(err=err, emul_err=emul_err, rmse=rmse, emul_rmse=emul_rmse, lse_err=lse_err, nan=nan_out,
                    tail_ok=tail_ok)


def correctness(lib, num_sms, quick):
    shapes = [  # (B, Sq, Sk, H, Hkv)
        (2, 1, 1, 4, 4), (1, 63, 63, 4, 2), (2, 64, 64, 4, 4), (1, 65, 65, 8, 1), (2, 127, 129, 2, 2),
        (1, 128, 128, 4, 2), (1, 129, 1023, 2, 2), (1, 1023, 129, 2, 1), (1, 113, 4224, 2, 2),
        (1, 4224, 4224, 2, 2),
    ]
    if quick:
        shapes = [(1, 65, 65, 8, 1), (2, 127, 129, 2, 2), (1, 129, 1023, 2, 2), (1, 1023, 129, 2, 1)]
    if quick == "smoke":
        shapes = [(2, 127, 300, 4, 2)]
    masks = [(-1, -1), (-1, 0)]
    cases = []
    for D in (64, 128, 256):
        for (B, Sq, Sk, H, Hkv) in shapes:
            for (wl, wr) in masks:
                cases.append((B, Sq, Sk, H, Hkv, D, wl, wr, "bf16"))
        if quick == "smoke":
            continue
        cases.append((2, 129, 300, 4, 2, D, -1, 0, "fp8"))
        cases.append((1, 300, 1023, 4, 4, D, -1, -1, "fp8"))
        cases.append((2, 200, 513, 4, 2, D, -1, -1, "fp16"))
        cases.append((1, 257, 700, 2, 2, D, 64, 16, "bf16"))  # sliding window
        cases.append((1, 300, 200, 2, 2, D, 100, -1, "bf16"))  # left window only, Sq > Sk
    n_fail = 0
    for c in cases:
        t0 = time.time()
        try:
            ok, r = run_case(lib, num_sms, *c)
        except Exception as e:  # noqa: BLE001
            ok, r = False, {"exception": repr(e)}
        n_fail += not ok
        B, Sq, Sk, H, Hkv, D, wl, wr, ot = c
        print(f"{'PASS' if ok else 'FAIL'} D={D:3d} B={B} Sq={Sq:5d} Sk={Sk:5d} H={H} Hkv={Hkv} win=({wl},{wr}) "
              f"out={ot:4s} " + " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items())
              + f" ({time.time() - t0:.1f}s)", flush=True)
    print(f"correctness: {len(cases) - n_fail}/{len(cases)} passed", flush=True)
    return n_fail


def bench(fn, iters=10, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def perf(lib, num_sms):
    rows = []
    for D in (128, 256, 64):
        for S in (4096, 16384):
            for causal in (False, True):
                B = 16384 // S
                H = 2048 // D
                q, k, v, qd, kd, vd = make_inputs(B, S, S, H, H, D, "cuda", pad=0)
                out = torch.empty(B, S, H, D, device="cuda", dtype=torch.bfloat16)
                lse = torch.empty(B, H, S, device="cuda")
                wr = 0 if causal else -1
                scale = 1.0 / math.sqrt(D)
                fn = lambda: lib.fwd(q, k, v, out, lse, scale, qd, kd, vd, None, -1, wr, "bf16", num_sms)
                ms = bench(fn)
                flops = 4 * B * H * S * S * D / (2 if causal else 1)
                qb = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16)
                kb = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16)
                vb = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16)
                ms_sdpa = bench(lambda: torch.nn.functional.scaled_dot_product_attention(qb, kb, vb, is_causal=causal))
                t, ts = flops / ms / 1e9, flops / ms_sdpa / 1e9
                rows.append((D, S, B, H, causal, ms, t, ts))
                print(f"perf D={D} S={S} B={B} H={H} causal={causal}: fp8 {ms:.3f} ms {t:.0f} TFLOP/s | "
                      f"SDPA bf16 {ms_sdpa:.3f} ms {ts:.0f} TFLOP/s | ratio {t / ts:.2f}", flush=True)
                del q, k, v, qb, kb, vb
    print("\n  D      S  causal   fp8 TFLOP/s   SDPA bf16   ratio")
    for D, S, B, H, causal, ms, t, ts in rows:
        print(f"{D:3d} {S:6d}  {str(causal):6s}  {t:11.0f}  {ts:10.0f}  {t / ts:6.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="one small case per head dim, no perf")
    ap.add_argument("--no-perf", action="store_true")
    ap.add_argument("--only-perf", action="store_true")
    a = ap.parse_args()
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    lib = Lib(LIB)
    num_sms = torch.cuda.get_device_properties(0).multi_processor_count
    n_fail = 0
    if not a.only_perf:
        n_fail = correctness(lib, num_sms, "smoke" if a.smoke else a.quick)
        if a.smoke:
            sys.exit(1 if n_fail else 0)
    if not a.no_perf:
        perf(lib, num_sms)
    sys.exit(1 if n_fail else 0)


if __name__ == "__main__":
    main()
