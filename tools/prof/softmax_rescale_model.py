"""Host model of the prefill consumer's online softmax for one warp (16 rows, 192-key blocks,
P rounded to e4m3, O and l in fp32, alpha computed exactly as with Traits::kExactAlpha)
with and without the lazy O rescale (Traits::kLazyRescale, csrc/kernel/softmax.cuh, decided
per row as the kernel does; exact alpha is on at D = 256, the lazy rescale off everywhere:
TORCH_FMHA_TUNE_EXACT_ALPHA_<D> / _LAZY_RESCALE_<D>), against float64
attention: RMSE, max LSE error, how many blocks need the O rescale, largest P. CPU only:
    python3 tools/prof/softmax_rescale_model.py
A model of the algorithm, not of the kernel's instruction-level rounding."""
import math
import statistics

import torch

LOG2E = 1.4426950408889634
MAX_OFFSET = 8.0  # kMaxOffset: P in [0, 2^8] against the current max


def run(lazy, S=4096, D=128, rows=16, block=192, slack=0.75, outlier=False, seed=0):
    """(RMSE of out, max |LSE error|, blocks that rescaled O, blocks, largest P) for one warp."""
    torch.manual_seed(seed)
    q, k, v = (torch.randn(n, D, dtype=torch.float64) for n in (rows, S, S))
    if outlier:  # peaky rows: 1% of the keys x4
        k[torch.rand(S) < 0.01] *= 4
    scores = (q @ k.T).float()  # raw scores, fp32 accumulator
    scale_log2 = torch.tensor(LOG2E / math.sqrt(D), dtype=torch.float32)
    ref_max = torch.full((rows,), -math.inf)
    l, o = torch.zeros(rows), torch.zeros(rows, D)
    rescaled, p_max = 0, 0.0
    for b0 in range(0, S, block):
        s = scores[:, b0:b0 + block]
        m = torch.maximum(s.max(1).values, ref_max)
        # each row keeps its reference (alpha 1) while the block raised it by <= slack
        keep = (m * scale_log2 - ref_max * scale_log2 <= slack) if lazy else torch.zeros(rows, dtype=torch.bool)
        m_scaled = torch.where(m == -math.inf, torch.zeros(()), m * scale_log2)
        alpha = torch.where(ref_max == -math.inf, torch.zeros(()), torch.exp2(ref_max * scale_log2 - m_scaled))
        alpha = torch.where(keep, torch.ones(()), alpha)
        ref_max = torch.where(keep, ref_max, m)
        bias = MAX_OFFSET - ref_max * scale_log2
        p = torch.exp2(s * scale_log2 + bias[:, None])
        p_max = max(p_max, p.max().item())
        if not bool((alpha == 1).all()):  # the consumer's vote
            rescaled += 1
            o = o * alpha[:, None]
        l = l * alpha + p.sum(1)
        o = o + p.to(torch.float8_e4m3fn).float() @ v[b0:b0 + block].float()
    out = o / l[:, None]
    lse = (ref_max * scale_log2 + torch.log2(l) - MAX_OFFSET) / LOG2E
    logits = (q @ k.T) / math.sqrt(D)
    rmse = (out.double() - torch.softmax(logits, 1) @ v).pow(2).mean().sqrt().item()
    lse_err = (lse.double() - torch.logsumexp(logits, 1)).abs().max().item()
    return rmse, lse_err, rescaled, -(-S // block), p_max


if __name__ == "__main__":
    for outlier in (False, True):
        for S in (1024, 4096, 16384):
            res = {}
            for lazy in (False, True):
                rs = [run(lazy, S=S, outlier=outlier, seed=sd) for sd in range(4)]
                res[lazy] = (statistics.mean(r[0] for r in rs), max(r[1] for r in rs), sum(r[2] for r in rs),
                             sum(r[3] for r in rs), max(r[4] for r in rs))
            a, b = res[False], res[True]
            print(f"outlier keys={outlier} S={S}: RMSE {a[0]:.2e} -> {b[0]:.2e}; blocks rescaled {a[2]}/{a[3]} -> "
                  f"{b[2]}/{b[3]}; max P {a[4]:.0f} -> {b[4]:.0f}; max |LSE error| {a[1]:.1e} -> {b[1]:.1e}")
