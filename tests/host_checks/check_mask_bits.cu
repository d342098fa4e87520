// Host-only check (no GPU needed) of the kernel's own mask code (csrc/kernel/mask.cuh):
// 1. bit j of visible_column_bits(lo, hi, e) must be set iff lo <= 8 * j + e <= hi, for
//    every j < 32, e in {0, 1} and all bounds in a range that covers fully visible, fully
//    masked, partial and empty rows;
// 2. MaskInfo::upper_half_hidden (the half first block, consumer.cuh) against the rows'
//    bounds (row_bounds) at 128-row tiles and 256-key blocks: for every block of a tile's
//    kv_range, "hidden" must mean that no row of the tile below sq sees a key of the
//    block's upper half; for the tile's first (highest) block it must also be said
//    whenever that holds. Lengths around 128 / 256 multiples, Sq <= and > Sk, causal,
//    windows and no mask.
// Prints one "ok" line per check; exits 1 on the first mismatch.
// Build + run: nvcc -std=c++17 -Icsrc tests/host_checks/check_mask_bits.cu -o build/check_mb && build/check_mb
#include <cstdio>

#include "kernel/mask.cuh"

// Whether some row of tile m_block (rows below sq) sees a key in [k0, k1).
static bool tile_sees(const torch_fmha::kernel::MaskInfo& m, int m_block, int k0, int k1) {
  for (int row = 128 * m_block; row < 128 * m_block + 128 && row < m.seqlen_q; ++row) {
    int lo, hi;
    m.row_bounds(row, lo, hi);
    if (lo < k0) lo = k0;
    if (hi > k1 - 1) hi = k1 - 1;
    if (lo <= hi) return true;
  }
  return false;
}

static int check_upper_half_hidden() {
  constexpr int kM = 128, kN = 256;
  const int lens[] = {1, 64, 100, 127, 128, 129, 255, 256, 257, 300, 383, 384, 385, 511, 512, 640, 1000, 1024};
  const int windows[][2] = {{-1, -1}, {-1, 0}, {300, 0}, {0, 0}, {100, 50}, {-1, 200}, {50, -1}, {1024, 0}};
  long blocks = 0, hidden = 0;
  for (int sq : lens) {
    for (int sk : lens) {
      for (const auto& w : windows) {
        const torch_fmha::kernel::MaskInfo m{sq, sk, w[0], w[1]};
        for (int mb = 0; mb * kM < sq; ++mb) {
          const torch_fmha::kernel::KvBlockRange r = m.kv_range<kM, kN>(mb);
          for (int n = r.begin; n < r.end; ++n) {
            const bool said = m.upper_half_hidden<kM, kN>(mb, n);
            const bool seen = tile_sees(m, mb, n * kN + kN / 2, n * kN + kN);
            if ((said && seen) || (n == r.end - 1 && !said && !seen)) {
              std::printf("FAIL upper_half_hidden sq=%d sk=%d window=(%d, %d) m_block=%d n_block=%d: "
                          "said %d, a row sees the upper half: %d\n", sq, sk, w[0], w[1], mb, n, int(said), int(seen));
              return 1;
            }
            ++blocks;
            hidden += said;
          }
        }
      }
    }
  }
  std::printf("upper_half_hidden: ok (%ld blocks, %ld with the upper half hidden)\n", blocks, hidden);
  return 0;
}

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
  return check_upper_half_hidden();
}
