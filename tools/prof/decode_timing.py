"""How the L2 flush between timed calls moves a decode step's time (issue 15).

    python3 tools/prof/decode_timing.py [B:S ...]      (default 1:8192 1:32768 8:8192)

The decode benchmark times CUDA-graph replays with triton's do_bench, which zeroes a
256 MB buffer before every call to flush L2: the call then starts with L2 full of dirty
lines, whose write-back to HBM shares the bandwidth a memory-bound step needs. Per case
(attention_with_kvcache, FP8 cache, Sq = 1, H = 32, Hkv = 8, D = 128, bf16 out, auto
splits, and SDPA bf16 flash on the same shape) this prints the median replay time, us:
  zero   do_bench, as the benchmark (flush by a write)
  read   CUDA events around the replay after a read-only flush (a sum over 512 MB: L2
         left holding clean lines of another buffer)
  warm   CUDA events around back-to-back replays, no flush (the cache partly in L2)
and the K + V bytes of the cache per second for each. A diagnosis, not the benchmark.
"""
import statistics
import sys

import torch

import torch_fmha
from torch_fmha.bench_decode import capture_graph

if (reason := torch_fmha.sm90_unavailable_reason()) is not None:
    sys.exit(f"decode_timing.py: {reason}")
from triton.testing import do_bench  # noqa: E402

H, HKV, D = 32, 8, 128
FLUSH = torch.empty(512 << 20, dtype=torch.uint8, device="cuda")


def events_ms(replay, flush, reps=200) -> float:
    times = []
    for _ in range(reps):
        if flush:
            FLUSH.sum(dtype=torch.int32)
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        replay()
        e.record()
        times.append((s, e))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in times)


def case(b: int, s: int) -> None:
    fp8 = torch.float8_e4m3fn
    q = torch.randn(b, 1, H, D, device="cuda").to(fp8)
    kc, vc = (torch.randn(b, s, HKV, D, device="cuda").to(fp8) for _ in range(2))
    lens = torch.full((b,), s, dtype=torch.int32, device="cuda")
    one = torch.ones(1, device="cuda")
    ours = capture_graph(lambda: torch_fmha.attention_with_kvcache(
        q, kc, vc, lens, causal=True, q_descale=one, k_descale=one, v_descale=one))[0]
    qb = torch.randn(b, H, 1, D, device="cuda", dtype=torch.bfloat16)
    kb, vb = (torch.randn(b, HKV, s, D, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        sdpa = capture_graph(lambda: torch.nn.functional.scaled_dot_product_attention(
            qb, kb, vb, enable_gqa=True))[0]
    for name, g, nbytes in (("ours FP8", ours, 2 * b * s * HKV * D), ("SDPA flash bf16", sdpa, 4 * b * s * HKV * D)):
        t = {"zero": do_bench(g.replay, warmup=25, rep=100, return_mode="median"),
             "read": events_ms(g.replay, True), "warm": events_ms(g.replay, False)}
        cells = "  ".join(f"{k} {v * 1e3:7.1f} us {nbytes / (v * 1e-3) / 1e12:5.2f} TB/s" for k, v in t.items())
        print(f"B={b:<3} S={s:<6} {name:16} {cells}", flush=True)


for arg in sys.argv[1:] or ["1:8192", "1:32768", "8:8192"]:
    b, s = (int(x) for x in arg.split(":"))
    case(b, s)
