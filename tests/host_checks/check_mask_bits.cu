// Host-only check (no GPU needed) of visible_column_bits (csrc/kernel/mask.cuh),
// the kernel's own code: bit j of visible_column_bits(lo, hi, e) must be set iff
// lo <= 8 * j + e <= hi, for every j < 32, e in {0, 1} and all bounds in a range
// that covers fully visible, fully masked, partial and empty rows.
// Prints one "ok" line; exits 1 on the first mismatch.
// Build + run: nvcc -std=c++17 -Icsrc tests/host_checks/check_mask_bits.cu -o build/check_mb && build/check_mb
#include <cstdio>

#include "kernel/mask.cuh"

int main() {
  long checked = 0;
  for (int lo = -300; lo <= 300; ++lo) {
    for (int hi = -300; hi <= 300; ++hi) {
      for (int e = 0; e < 2; ++e) {
        const uint32_t bits = torch_fmha::kernel::visible_column_bits(lo, hi, e);
        for (int j = 0; j < 32; ++j) {
          const int c = 8 * j + e;
          const bool want = lo <= c && c <= hi;
          if (((bits >> j) & 1u) != (want ? 1u : 0u)) {
            std::printf("FAIL lo=%d hi=%d e=%d j=%d: bit %u, want %d\n", lo, hi, e, j,
                        (bits >> j) & 1u, int(want));
            return 1;
          }
          ++checked;
        }
      }
    }
  }
  std::printf("visible_column_bits: ok (%ld column checks)\n", checked);
  return 0;
}
