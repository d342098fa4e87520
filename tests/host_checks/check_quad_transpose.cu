// Host-only check (no GPU needed) of the epilogue's fp8 quad transpose
// (csrc/kernel/quad_transpose.cuh): the four lanes of a quad start with their
// GMMA C-layout column pairs of one output row (lane q: columns 8j + 2q, + 1 of
// every 8-column group j), run QuadTranspose16 in lock step, the way
// __shfl_xor_sync pairs them, and each lane must then hold exactly the 8
// contiguous columns fp8_lane_column says it stores, in order; the lanes' columns
// cover the row once. Every byte is tagged with its column, so a wrong
// permutation shows. Prints "ok" with the columns checked; exits 1 on a mismatch.
#include <cstdint>
#include <cstdio>
#include <vector>

#include "kernel/quad_transpose.cuh"

using namespace torch_fmha::kernel;

static int failures = 0;
// at: the group of 4 x 8 columns g (or, for the coverage check, the column).
static void expect(bool ok, const char* what, int q, int at, int got, int want) {
  if (!ok && failures++ < 10) std::printf("FAIL %s: lane %d at %d: got %d, want %d\n", what, q, at, got, want);
}

// fp8: a 16-bit pair holds columns c, c + 1 as bytes (column numbers < 256).
static uint32_t fp8_pair(int col) { return uint32_t(col & 0xff) | (uint32_t((col + 1) & 0xff) << 8); }

static int check_fp8(int head_dim) {
  std::vector<int> covered(head_dim, 0);
  for (int g = 0; g < head_dim / 32; ++g) {
    uint32_t w[4][2];
    for (int q = 0; q < 4; ++q) {
      w[q][0] = fp8_pair(8 * (4 * g) + 2 * q) | (fp8_pair(8 * (4 * g + 1) + 2 * q) << 16);
      w[q][1] = fp8_pair(8 * (4 * g + 2) + 2 * q) | (fp8_pair(8 * (4 * g + 3) + 2 * q) << 16);
    }
    for (int step = 0; step < 2; ++step) {
      uint32_t sent[4];
      for (int q = 0; q < 4; ++q) sent[q] = QuadTranspose16::send(step, w[q], q);
      for (int q = 0; q < 4; ++q) QuadTranspose16::receive(step, w[q], q, sent[q ^ quad_step_mask(step)]);
    }
    for (int q = 0; q < 4; ++q) {
      const int col = fp8_lane_column(q, g);
      expect(col == fp8_lane_column(q, 0) + 32 * g, "fp8 lane column step", q, g, col, fp8_lane_column(q, 0) + 32 * g);
      for (int b = 0; b < 8; ++b) {
        const int got = int((w[q][b / 4] >> (8 * (b % 4))) & 0xff);
        expect(got == ((col + b) & 0xff), "fp8 byte", q, g, got, (col + b) & 0xff);
        if (col + b < head_dim) ++covered[col + b];
      }
    }
  }
  for (int c = 0; c < head_dim; ++c) expect(covered[c] == 1, "fp8 column stored once", -1, c, covered[c], 1);
  return head_dim;
}

int main() {
  int cols = 0;
  for (int d : {64, 128, 256}) cols += check_fp8(d);
  if (failures == 0) std::printf("fp8 quad transpose: ok (%d columns)\n", cols);
  return failures == 0 ? 0 : 1;
}
