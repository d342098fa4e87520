// Host-only check (no GPU needed) of the decode kernel's split ranges
// (csrc/kernel/decode.cuh, decode_split_range): for every sequence length L,
// query row count Sq, left window and split count tried, the splits' key ranges
// are disjoint, ordered, inside [first, L) with first = max(0, L - Sq - left) (0
// without a window), cover it exactly, and every split but the last non-empty one starts
// and ends on a 32-key tile boundary relative to `first` (the kernel's tiles).
// Prints one "ok" line; exits 1 on the first failures.
// Build + run: nvcc -std=c++17 -Icsrc tests/host_checks/check_decode_split_range.cu -o build/check_dsr && build/check_dsr
#include <cstdio>

#include "kernel/decode.cuh"

using torch_fmha::kernel::decode_split_range;
using torch_fmha::kernel::DecodeRange;
using torch_fmha::kernel::kDecodeTileKeys;

int main() {
  int failures = 0, cases = 0;
  const int lens[] = {0, 1, 2, 31, 32, 33, 63, 64, 65, 100, 1000, 1024, 4095, 4096, 4097, 131072, 131071};
  const int lefts[] = {-1, 0, 1, 31, 32, 50, 1000, 1 << 30};
  const int splits_tried[] = {1, 2, 3, 4, 7, 8, 16, 33, 64, 100};
  for (int L : lens) {
    for (int sq : {1, 2, 16}) {
    for (int left : lefts) {
      for (int S : splits_tried) {
        ++cases;
        const long long edge = (long long)L - sq - left;
        const int first = left >= 0 && edge > 0 ? int(edge) : 0;
        int next = first;
        bool ok = true;
        for (int s = 0; s < S; ++s) {
          const DecodeRange r = decode_split_range(L, sq, left, S, s);
          if (r.begin != next || r.end < r.begin || r.end > (L > first ? L : first)) ok = false;
          if (r.end < (L > first ? L : first) && (r.end - first) % kDecodeTileKeys != 0) ok = false;
          next = r.end;
        }
        if (next != (L > first ? L : first)) ok = false;
        if (!ok && failures++ < 10) std::printf("FAIL L=%d Sq=%d left=%d splits=%d\n", L, sq, left, S);
      }
    }
    }
  }
  if (failures) return 1;
  std::printf("decode split ranges: ok (%d cases)\n", cases);
  return 0;
}
