// torch_fmha: the key order of V^T, in the kernel's shared memory and in a
// packed v in global memory; and the head-dim order of a packed v.
//
// The FP8 P V wgmma takes P as its A operand, from registers (or, in the D = 128
// long-key packed-v build, from a shared-memory tile written in the same order). Within each 16
// keys, the S accumulator (GMMA C layout) gives quad lane c the columns 2c,
// 2c+1, 8+2c, 9+2c, while the A operand wants lane c to hold k = 4c .. 4c+3.
// The kernel packs P as the accumulator gives it (consumer.cuh, convert_p), so
// A column k holds key vt_key_of_slot(k), and V^T column k must hold that key
// too. Two producers of V^T follow this order:
//   - the producer warpgroup's shared-memory transpose of a row-major V block
//     (kernel/transpose_v.cuh);
//   - quantize_qkv(pack_v=True), which writes a "packed v" that TMA lands
//     as is: FP8 [B, Hkv, D, G, 16], G = ceil(S / 16), contiguous, where
//     element (b, h, r, g, j) is v[b, 16 g + vt_key_of_slot(j), h,
//     packed_v_column_of_row(r, D)], and zero where that key is >= S.
// In bits, slot (b3 b2 b1 b0) holds key (b1 b3 b2 b0): a 3-cycle of bits 1-3.
//
// The rows of a packed v (V^T's rows, the P V product's N index, O's columns) are
// permuted too, so that the epilogue stores whole chunks from the registers. In
// the GMMA C layout lane q of a quad holds O columns 8 j + 2 q, + 1 for every
// 8-column group j. With row 32 g + 8 a + 2 b + e holding V column
// 32 g + 8 b + 2 a + e, lane q's four pairs of chunk g (a = 0 .. 3, b = q) are
// the 8 consecutive output columns 32 g + 8 q .. + 7: one 8-byte (fp8) or
// 16-byte (bf16 / fp16) store each, no exchange between lanes
// (kernel/epilogue.cuh, store_output_lane_chunks). In bits, within a whole
// 32-column chunk, row (a1 a0 b1 b0 e) holds column (b1 b0 a1 a0 e): the two 2-bit
// fields swap, so the permutation is its own inverse. A last chunk of fewer than
// 32 columns (a head dim that is not a multiple of 32: quantize_qkv takes any,
// the attention kernels only 64 / 128 / 256) keeps its order. The producer's
// transpose writes V^T in the same row order at D = 128 / 256 (transpose_v.cuh,
// vt_row), so every build but D = 64's of a standard v stores lane chunks.
// docs/DESIGN.md section 4.
#pragma once

#include <stdint.h>

#include "host_device.h"

namespace torch_fmha {

constexpr int kVtKeyGroup = 16;  // the permutation acts within aligned groups of 16 keys

// The key (within a 16-key group) that V^T slot j holds.
TORCH_FMHA_HOST_DEVICE constexpr int vt_key_of_slot(int j) {
  return (((j >> 1) & 1) << 3) | (((j >> 3) & 1) << 2) | (((j >> 2) & 1) << 1) | (j & 1);
}

// The V^T slot (within a 16-key group) of key i: the inverse of vt_key_of_slot.
TORCH_FMHA_HOST_DEVICE constexpr int vt_slot_of_key(int i) {
  return (((i >> 2) & 1) << 3) | (((i >> 1) & 1) << 2) | (((i >> 3) & 1) << 1) | (i & 1);
}

// The packed-v position of key `key` along its [G, 16] dims (keys of other
// groups keep their group).
TORCH_FMHA_HOST_DEVICE constexpr int64_t packed_vt_position(int64_t key) {
  return (key & ~int64_t{kVtKeyGroup - 1}) | vt_slot_of_key(static_cast<int>(key & (kVtKeyGroup - 1)));
}

// The V column (head-dim index) that row r of a packed v with head_dim columns holds
// (see above); its own inverse: also the row that holds column r.
TORCH_FMHA_HOST_DEVICE constexpr int packed_v_column_of_row(int r, int head_dim) {
  if ((r | 31) >= head_dim) return r;  // in a last, partial chunk
  return (r & ~31) | (((r >> 1) & 3) << 3) | (((r >> 3) & 3) << 1) | (r & 1);
}

namespace detail {
constexpr bool packed_v_columns_are_an_involution(int head_dim) {
  for (int r = 0; r < head_dim; ++r) {
    const int c = packed_v_column_of_row(r, head_dim);
    if (c < 0 || c >= head_dim || packed_v_column_of_row(c, head_dim) != r) return false;
  }
  return true;
}
constexpr bool vt_key_order_is_inverse() {
  for (int j = 0; j < kVtKeyGroup; ++j) {
    if (vt_slot_of_key(vt_key_of_slot(j)) != j) return false;
  }
  return true;
}
}  // namespace detail
static_assert(detail::vt_key_order_is_inverse(), "vt_slot_of_key must invert vt_key_of_slot");
static_assert(detail::packed_v_columns_are_an_involution(128) &&
              detail::packed_v_columns_are_an_involution(80) &&
              detail::packed_v_columns_are_an_involution(24));
// Row 32 g + 8 a + 2 b + e holds column 32 g + 8 b + 2 a + e.
static_assert(packed_v_column_of_row(8, 128) == 2 && packed_v_column_of_row(2, 128) == 8 &&
              packed_v_column_of_row(32 + 24 + 2 + 1, 128) == 32 + 8 + 6 + 1 &&
              packed_v_column_of_row(9, 64) == 3 && packed_v_column_of_row(66, 80) == 66);
static_assert(vt_key_of_slot(2) == 8 && vt_key_of_slot(4) == 2 && vt_key_of_slot(7) == 11 &&
              vt_key_of_slot(13) == 7);

}  // namespace torch_fmha
