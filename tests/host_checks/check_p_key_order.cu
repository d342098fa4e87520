// Host-only check (no GPU needed) of the natural-key-order permutation of P
// (csrc/kernel/p_key_order.cuh): the four lanes of a quad start with the words
// convert_p packs from the GMMA C layout (lane c, rows r / r + 8: keys 2c, 2c+1,
// 8+2c, 9+2c of a 16-key group), run send / shuffle / receive in lock step, and
// each lane must then hold keys 4c .. 4c+3 of each row, lowest key in the
// lowest byte: the FP8 A-operand layout of the P V wgmma. Every byte is tagged
// with its key (+ 64 for row r + 8), so a wrong permutation shows. Prints "ok"
// with the bytes checked; exits 1 on a mismatch.
#include <cstdint>
#include <cstdio>

#include "kernel/p_key_order.cuh"

using namespace torch_fmha::kernel;

static int failures = 0;

static uint32_t word(int k0, int k1, int k2, int k3) {
  return uint32_t(k0) | (uint32_t(k1) << 8) | (uint32_t(k2) << 16) | (uint32_t(k3) << 24);
}

int main() {
  int checked = 0;
  for (int group = 0; group < 16; ++group) {  // 16-key groups of a 256-key block
    const int k0 = 16 * group % 64;           // tags stay < 64 per row
    uint32_t w[4][2];
    for (int c = 0; c < 4; ++c) {  // convert_p's words: [A_c | B_c]
      for (int row = 0; row < 2; ++row) {
        const int t = k0 + 64 * row;
        w[c][row] = word(t + 2 * c, t + 2 * c + 1, t + 8 + 2 * c, t + 9 + 2 * c);
      }
    }
    uint32_t x[4], y[4];
    for (int c = 0; c < 4; ++c) {
      const NaturalKeyOrder o = NaturalKeyOrder::for_quad_lane(c);
      x[c] = o.send_x(w[c][0], w[c][1]);
      y[c] = o.send_y(w[c][0], w[c][1]);
    }
    for (int c = 0; c < 4; ++c) {
      const NaturalKeyOrder o = NaturalKeyOrder::for_quad_lane(c);
      o.receive(x[o.src1], y[o.src2], w[c][0], w[c][1]);
    }
    for (int c = 0; c < 4; ++c) {
      for (int row = 0; row < 2; ++row) {
        for (int b = 0; b < 4; ++b) {
          const int got = int((w[c][row] >> (8 * b)) & 0xff);
          const int want = k0 + 64 * row + 4 * c + b;
          if (got != want && failures++ < 10) {
            std::printf("FAIL group %d lane %d row %d byte %d: got key %d, want %d\n", group, c,
                        row, b, got, want);
          }
          ++checked;
        }
      }
    }
  }
  // Each shuffle must be a permutation of the quad (every lane read once).
  for (int s = 0; s < 2; ++s) {
    int seen = 0;
    for (int c = 0; c < 4; ++c) {
      const NaturalKeyOrder o = NaturalKeyOrder::for_quad_lane(c);
      seen |= 1 << (s == 0 ? o.src1 : o.src2);
    }
    if (seen != 0xf && failures++ < 10) std::printf("FAIL shuffle %d is not a permutation\n", s + 1);
  }
  if (failures == 0) std::printf("P natural key order: ok (%d bytes)\n", checked);
  return failures == 0 ? 0 : 1;
}
