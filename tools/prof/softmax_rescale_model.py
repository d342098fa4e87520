"""Host model of the prefill consumer's online softmax for one warp (16 rows, 192-key blocks,
P rounded to e4m3, O and l in fp32, alpha computed exactly as with TORCH_FMHA_TUNE_EXACT_ALPHA)
with and without TORCH_FMHA_TUNE_LAZY_RESCALE (csrc/kernel/softmax.cuh), against float64
attention: RMSE, max LSE error, how many blocks need the O rescale, largest P. CPU only:
    python3 tools/prof/softmax_rescale_model.py
A model of the algorithm, not of the kernel's instruction-level rounding."""
import torch, math
def run(lazy, S=4096, D=128, rows=16, blk=192, slack=0.75, outlier=False, seed=0):
    torch.manual_seed(seed)
    q = torch.randn(rows, D, dtype=torch.float64); k = torch.randn(S, D, dtype=torch.float64); v = torch.randn(S, D, dtype=torch.float64)
    if outlier: k[torch.rand(S) < 0.01] *= 4
    s = (q @ k.T).float()                      # raw scores (fp32 accumulator)
    sl2 = torch.tensor(1 / math.sqrt(D) * 1.4426950408889634, dtype=torch.float32)
    ref_max = torch.full((rows,), -math.inf); l = torch.zeros(rows); o = torch.zeros(rows, D)
    rescales = 0; pmax = 0.0
    for b0 in range(0, S, blk):
        sb = s[:, b0:b0 + blk]
        m = torch.maximum(sb.max(1).values, ref_max)
        if lazy and bool((((m - ref_max) * sl2) <= slack).all()):
            alpha = torch.ones(rows); bias = 8.0 - ref_max * sl2
        else:
            ms = torch.where(m == -math.inf, torch.zeros(()), m * sl2)
            alpha = torch.where(ref_max == -math.inf, torch.zeros(()), torch.exp2(ref_max * sl2 - ms))
            ref_max = m; bias = 8.0 - ms
        p = torch.exp2(sb * sl2 + bias[:, None])
        pmax = max(pmax, p.max().item())
        p8 = p.to(torch.float8_e4m3fn).float()
        if not bool((alpha == 1).all()): rescales += 1; o = o * alpha[:, None]
        l = l * alpha + p.sum(1)
        o = o + p8 @ v[b0:b0 + blk].float()
    out = o / l[:, None]
    lse = (ref_max * sl2 + torch.log2(l) - 8.0) / 1.4426950408889634
    ref = torch.softmax((q @ k.T) / math.sqrt(D), 1) @ v
    ref_lse = torch.logsumexp((q @ k.T) / math.sqrt(D), 1)
    return (out.double() - ref).pow(2).mean().sqrt().item(), (lse.double() - ref_lse).abs().max().item(), rescales, S // blk + (S % blk > 0), pmax
if __name__ == "__main__":
    import statistics
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
