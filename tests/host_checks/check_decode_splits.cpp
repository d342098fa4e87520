// Host-only (no GPU, no CUDA headers): num_splits = 0's decode split count
// (csrc/decode_splits.h, choose_decode_splits) over a grid of shapes, one line per case
// "batch keys sms splits", with the call csrc/ops/kvcache_decode_cuda.cpp makes at D = 128
// (Hkv = 8: batch x 8 CTAs per split; three CTAs per SM, splits filling at most two).
// tests/test_decode_host.py compares every line with the benchmark's mirror
// (torch_fmha/bench_decode.py, auto_num_splits), so the rule and the mirror cannot drift
// apart. The op's arguments (CTAs per SM, SM count) are copied here, not tested: the GPU
// test test_num_splits_zero_is_the_documented_rule (tests/gpu/test_kvcache_sm90.py) checks them.
#include <cstdint>
#include <cstdio>

#include "decode_splits.h"

int main() {
  const int64_t keys_tried[] = {1, 16, 100, 1024, 2048, 4095, 4096, 4097, 6000, 8192, 32768, 131072, 1 << 20};
  for (const int64_t sms : {132, 114, 78, 16}) {
    for (int64_t batch = 1; batch <= 70; ++batch) {
      for (const int64_t keys : keys_tried) {
        const int64_t ctas = batch * 8, per_sm = 3;
        const int64_t splits = torch_fmha::choose_decode_splits(ctas, keys, sms * per_sm, sms * 2, sms);
        std::printf("%lld %lld %lld %lld\n", static_cast<long long>(batch), static_cast<long long>(keys),
                    static_cast<long long>(sms), static_cast<long long>(splits));
      }
    }
  }
  return 0;
}
