// torch_fmha: num_splits = 0's split count for the split-KV decode kernel
// (csrc/kernel/decode.cuh), from shapes only. Host code, no torch and no CUDA:
// csrc/ops/kvcache_decode_cuda.cpp calls it, and tests/host_checks/check_decode_splits.cpp
// compiles it on any machine to compare it with the benchmark's mirror
// (torch_fmha/bench_decode.py, auto_num_splits; tests/test_decode_host.py).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace torch_fmha {

// At most 32 splits: at B = 1, 128k keys 32 splits took 94.0 us, 46 99.4 and 64 123
// (session 13, table below); the merge reads every split's partial.
inline constexpr int64_t kMaxDecodeSplits = 32;

// num_splits = 0 for the decode kernel (csrc/kernel/decode.cuh): about sqrt(keys / 32)
// splits (each split pays a CTA's setup, its partial's write and a share of the merge;
// fewer splits leave SMs idle), no more than fill `split_slots` (below), at most
// kMaxDecodeSplits; 1 when the (batch, KV head, row tile) CTAs already fill every CTA slot of the
// device (`slots` = SMs x the kernel's CTAs per SM, three at D = 128 with the default 4
// warps per CTA, one with TORCH_FMHA_TUNE_DECODE_WARPS=8). Measured as CUDA-graph replays
// (tools/decode_splits.py, one H200, H = 32, Hkv = 8, D = 128, us for 1 / 4 / 8 / 16 /
// 32 splits; DESIGN 1.11 has the table): B = 1 at 1k 24.2 16.7 18.6 23.9 35.9, 4k 64.2
// 27.3 23.5 26.7 38.0, 32k 422 117 68.1 49.0 57.4, 128k 1646 425 222 125 113; B = 8 at
// 32k 421 163 172 188 217 (two CTAs per SM then: 4 splits). With three CTAs per SM
// and the merge kernel without serial split walks (session 13), us for 4 / 8 / 16 / 24 /
// 32 / 48 / 64 splits: B = 1 1k 14.3 14.0 15.6 17.6 19.4 22.9 28.3, 8k 35.5 24.4 21.2
// 24.3 24.0 28.5 33.8, 32k 106 60.3 39.6 42.2 40.7 46.0 52.4, 128k 384 199 110 109 94.0
// 98.0 123; B = 8 8k 54.8 65.8 59.7 66.0 (6: 56.5), 32k 157 201 164 164 (6: 153). Where
// sqrt(keys / 64) picked 4 / 12 / 23 / 46 there (14.3 / 23.2 / 43.5 / 99.4), sqrt(keys
// / 32) and the cap pick 6 / 16 / 32 / 32.
// Splits fill at most `split_slots` = SMs x min(CTAs per SM, 2) (session 15, same call,
// two rounds, us per graph replay, B = 8, 4 splits (256 CTAs, <= 2 per SM) against 6
// (384, 3 per SM)): 1k 19.1-19.3 / 21.1-21.3, 8k 54.5 / 56.0-56.3, 32k 155.9-156.1 /
// 152.6-152.8, 128k 567.7-571.9 / 597.6-600.2; B = 1 (8 CTAs) is capped by the keys and
// kMaxDecodeSplits first and does not change. The kernel is latency-bound at low
// occupancy (ncu, B = 1 32k: 11.8% achieved occupancy, issue slots 37% busy, DRAM 45%),
// and a third CTA on an SM adds a split's setup and partial more than it hides latency.
// D = 64 (more CTAs per SM) follows the same cap unmeasured; D = 256 has one per SM.
// Caches of at most kShortDecodeKeys keys (`keys`: the capacity, capped at left + Sq
// with a left window; shapes only) take ceil(sqrt(keys / 16)) splits and fill at most one CTA per
// SM (`sms`). Session 34 (one H200, tools/decode_splits.py, D = 128, H = 32, Hkv = 8,
// CUDA-graph us, one call, two rounds within 3%; DESIGN 1.11) found the best counts up to
// 4k keys at about 128 CTAs in all; the rule above against this one's count, in that
// call: B = 4 1k 16.7-16.8 -> 14.9-15.0, B = 2 4k 19.1 -> 18.3, B = 1 1k 13.1-13.2 ->
// 12.6-12.7, B = 16 4k 54.5-54.6 -> 55.3-55.5 (the one loss). From 8k keys the rule above's
// count is the best or within 3% of it in every cell measured (1-16 sequences, 8k and 32k);
// 4097-8191 keys were not measured (B = 1 takes 16 splits at 4096 keys and 12 at 4097).
// D = 64 / 256 follow it unmeasured.
inline constexpr int64_t kShortDecodeKeys = 4096;

inline int64_t choose_decode_splits(int64_t ctas, int64_t keys, int64_t slots, int64_t split_slots, int64_t sms) {
  if (ctas <= 0 || keys <= 0 || ctas >= slots) return 1;
  const bool short_cache = keys <= kShortDecodeKeys;
  const double keys_per_sqrt = short_cache ? 16.0 : 32.0;
  const int64_t by_keys = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(keys) / keys_per_sqrt)));
  const int64_t fill = short_cache ? std::min(split_slots, sms) : split_slots;
  return std::max<int64_t>(1, std::min({fill / ctas, by_keys, kMaxDecodeSplits}));
}

}  // namespace torch_fmha
