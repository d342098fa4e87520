// torch_fmha kernel: FP8 V transpose, done by the 128 producer threads.
//
// FP8 wgmma takes both operands K-major. For O += P V the GEMM-K dimension is
// the key index, so V (which TMA lands row-major, [kBlockN keys, D]) is
// rewritten into V^T ([D, kBlockN], keys contiguous) in the SmemLayoutVt
// swizzle the PV wgmma descriptors expect.
//
// Key permutation. P is built from the S accumulator without any register
// shuffle (consumer.cuh, convert_p): within each 16 keys, the GMMA C layout
// gives a thread columns {2c, 2c+1, 2c+8, 2c+9} (c = lane % 4), while the FP8
// A-operand layout wants it to hold k = {4c, .., 4c+3}. So the k-th column of
// the A operand is key transpose_key_perm(k) of the block, and V^T column k
// must hold that key as well:
//   k bits (b3 b2 b1 b0) -> key bits (b1 b3 b2 b0), bits >= 4 unchanged.
//
// The transpose is a sequence of warp-wide steps; one step moves a block of
// 16 keys x 32 head-dim values (512 bytes):
//   LDSM.T.x4   4 matrices of 8 keys x 16 bytes (keys 0-7 / 8-15 x d 0-15 /
//               16-31), transposed as 16-bit elements: lane (q, c) = (lane/4,
//               lane%4) gets, per matrix, bytes (2c, 2q) (2c, 2q+1) (2c+1, 2q)
//               (2c+1, 2q+1) as (key, d);
//   4 x PRMT    the words of matrices (0,1) and (2,3) combine into V^T rows
//               d = 2q and 2q + 1 (+16), keys {2c, 2c+1, 2c+8, 2c+9}: exactly
//               the permuted columns 4c .. 4c+3 of the 16-key group;
//   STSM.x4     4 matrices of 8 V^T rows x 16 bytes, lane (q, c) writing bytes
//               4c .. 4c+3 of row q of each; V column d goes to V^T row vt_row(d)
//               (the packed v's row order, except at D = 64).
// That is 6 instructions and 2 address XORs per 512 bytes. LDSM (8 consecutive
// key rows per matrix) is free of bank conflicts in these swizzles, and so is
// STSM at D = 64 (8 V^T rows of distinct row % 8 per matrix, see stsm_d); with
// the permuted rows a matrix's 8 rows share 4 phases, a 2-way conflict (session
// 44 measured the whole change, DESIGN section 7).
//
// Addresses: every lane address is base(warp, lane) ^ offset(step), where the
// offset is a compile-time constant (the swizzled layouts are XOR-linear over
// the disjoint bit fields used here). tests/host_checks/check_transpose_layout.cu
// checks the identities and the whole data movement (LDSM / STSM emulated) on
// the host for every head-dim config.
//
// Keys at or past the sequence end (row >= valid_rows) are written as zeros,
// never copied: memory past a sequence may hold anything (NaN), and P = 0
// there would still give 0 * NaN = NaN in the PV product.
#pragma once

#include <cstdint>
#include <cute/tensor.hpp>

#include "../vt_key_order.h"

namespace torch_fmha::kernel {

// The block-relative key of V^T column k (csrc/vt_key_order.h).
__host__ __device__ constexpr int transpose_key_perm(int k) {
  return (k & ~(kVtKeyGroup - 1)) | vt_key_of_slot(k & (kVtKeyGroup - 1));
}
static_assert(transpose_key_perm(0) == 0 && transpose_key_perm(1) == 1 &&
              transpose_key_perm(2) == 8 && transpose_key_perm(3) == 9 &&
              transpose_key_perm(4) == 2 && transpose_key_perm(7) == 11 &&
              transpose_key_perm(13) == 7 && transpose_key_perm(16 + 6) == 16 + 10);

// PRMT selectors turning the LDSM.T words of keys 0-7 (a) and 8-15 (b) of a
// matrix pair into a V^T word: even d (bytes a0 a2 b0 b2) or odd d (a1 a3 b1 b3).
inline constexpr uint32_t kSelEvenD = 0x6420;
inline constexpr uint32_t kSelOddD = 0x7531;

template <class Traits>
struct VTransposer {
  static constexpr int kBlockN = Traits::kBlockN;
  static constexpr int kHeadDim = Traits::kHeadDim;
  static constexpr int kKeyGroups = kBlockN / 16;  // 16 keys per step
  static constexpr int kDChunks = kHeadDim / 32;   // 32 head-dim values per step
  // The 4 producer warps split the steps along d first (a warp keeps its d
  // range, so its offsets along keys are compile-time constants).
  static constexpr int kWarpsAlongD = kDChunks >= 4 ? 4 : kDChunks;
  static constexpr int kWarpsAlongK = 4 / kWarpsAlongD;
  static_assert(kWarpsAlongD * kWarpsAlongK == 4);
  static_assert(kDChunks % kWarpsAlongD == 0 && kKeyGroups % kWarpsAlongK == 0);
  static constexpr int kStepsK = kKeyGroups / kWarpsAlongK;
  static constexpr int kStepsD = kDChunks / kWarpsAlongD;
  static_assert(kStepsD <= 2, "steps along d: j = 0, 1 (offsets step(0, 1), see steps())");
  static constexpr int kUnrollK = kStepsD > 1 ? 1 : kStepsK;

  // ---- who reads / writes what (host-callable for the checker) ----------------
  // LDSM.x4 source row of `lane`: matrix m = lane / 8 (keys 8 * (m & 1) + 0..7,
  // d 16 * (m >> 1) + 0..15), row lane % 8.
  __host__ __device__ static constexpr int ldsm_key(int lane) { return 8 * ((lane >> 3) & 1) + (lane & 7); }
  __host__ __device__ static constexpr int ldsm_d(int lane) { return 16 * (lane >> 4); }
  // STSM.x4 destination row of `lane`: matrix m = lane / 8, row r = lane % 8 is
  // V^T row 16 * (m >> 1) + 2r + odd. Even matrices take the even d of rows
  // r < 4 and the odd d of rows r >= 4, odd matrices the rest, so the 8 rows of
  // each matrix have distinct d % 8 (distinct swizzle phases: no bank conflict).
  // With V^T's rows permuted (vt_row) the 8 rows of a matrix reach at most 4 swizzle phases
  // (their V^T rows' bits 0, 3 and 4, bit 4 the same for all 8): odd d on alternate rows
  // gives 4 (2-way bank conflicts); the natural rows' choice above (odd d for r >= 4) would
  // give 2 (4-way).
  __host__ __device__ static constexpr int stsm_odd(int m, int r) {
    if constexpr (Traits::kVtRowsPermuted) return (m & 1) ^ (r & 1);
    return (m & 1) ? (r < 4) : (r >= 4);
  }
  __host__ __device__ static constexpr int stsm_d(int lane) {
    return 16 * (lane >> 4) + 2 * (lane & 7) + stsm_odd(lane >> 3, lane & 7);
  }
  // First step of warp w; step (i, j) adds (16 keys) * kWarpsAlongK * i and
  // (32 d) * kWarpsAlongD * j.
  __host__ __device__ static constexpr int warp_key0(int w) { return 16 * (w / kWarpsAlongD); }
  __host__ __device__ static constexpr int warp_d0(int w) { return 32 * (w % kWarpsAlongD); }
  __host__ __device__ static constexpr int step_key(int i) { return 16 * kWarpsAlongK * i; }
  __host__ __device__ static constexpr int step_d(int j) { return 32 * kWarpsAlongD * j; }

  // Byte offsets (within one stage) of the lane's LDSM row / STSM row for its
  // warp's first step, and of a step relative to the first: added to the load
  // base (no common bits), XORed into the store base (the V^T swizzle phase
  // bits overlap).
  __host__ __device__ static int load_base(int w, int lane) {
    return static_cast<int>(typename Traits::SmemLayoutVScratch{}(warp_key0(w) + ldsm_key(lane),
                                                                   warp_d0(w) + ldsm_d(lane), 0));
  }
  __host__ __device__ static constexpr int load_step(int i, int j) {
    return static_cast<int>(typename Traits::SmemLayoutVScratch{}(step_key(i), step_d(j), 0));
  }
  // The V^T row that holds V column d: where Traits::kVtRowsPermuted (every head dim but 64),
  // packed_v_column_of_row (csrc/vt_key_order.h, its own inverse, within each 32 columns),
  // the row order of a packed v, so that O's lanes hold whole 8-column chunks
  // (epilogue.cuh, store_output_lane_chunks). A step covers 32 aligned columns, so the
  // permutation stays inside it; the address identities below hold for any row order.
  __host__ __device__ static constexpr int vt_row(int d) {
    return Traits::kVtRowsPermuted ? packed_v_column_of_row(d, kHeadDim) : d;
  }
  __host__ __device__ static int store_base(int w, int lane) {
    return static_cast<int>(typename Traits::SmemLayoutVt{}(vt_row(warp_d0(w) + stsm_d(lane)), warp_key0(w), 0));
  }
  __host__ __device__ static constexpr int store_step(int i, int j) {
    return static_cast<int>(typename Traits::SmemLayoutVt{}(step_d(j), step_key(i), 0));
  }
  // PRMT selectors of the lane: word for even matrices, word for odd ones.
  // (Both follow stsm_odd; the natural rows' form is kept as it was written before session 44,
  // which keeps D = 64's SASS the release's.)
  __host__ __device__ static constexpr uint32_t sel_even_matrix(int lane) {
    if constexpr (Traits::kVtRowsPermuted) return (lane >> 2) & 1 ? kSelOddD : kSelEvenD;
    return (lane >> 2) >= 4 ? kSelOddD : kSelEvenD;
  }
  __host__ __device__ static constexpr uint32_t sel_odd_matrix(int lane) {
    if constexpr (Traits::kVtRowsPermuted) return (lane >> 2) & 1 ? kSelEvenD : kSelOddD;
    return (lane >> 2) >= 4 ? kSelEvenD : kSelOddD;
  }
  // Keep-mask of the lane's V^T words in a step whose first key is `key0`:
  // byte b holds key key0 + {2c, 2c+1, 2c+8, 2c+9}[b]; keys >= valid_rows -> 0.
  __host__ __device__ static constexpr uint32_t valid_mask(int lane, int key0, int valid_rows) {
    const int k = key0 + 2 * (lane & 3);
    return (k < valid_rows ? 0x000000ffu : 0u) | (k + 1 < valid_rows ? 0x0000ff00u : 0u) |
           (k + 8 < valid_rows ? 0x00ff0000u : 0u) | (k + 9 < valid_rows ? 0xff000000u : 0u);
  }

#if defined(__CUDA_ARCH__)
  __device__ __forceinline__ static void ldsm_x4_trans(uint32_t addr, uint32_t (&r)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
  }
  __device__ __forceinline__ static void stsm_x4(uint32_t addr, const uint32_t (&r)[4]) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr),
                 "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
                 : "memory");
  }

  // vs: V scratch FIFO base, SmemLayoutVScratch (kBlockN, D, kStages);
  //     slot `slot` is at vs + slot * kTileKVBytes (I1: never the base alone).
  // vt: V^T buffer base, SmemLayoutVt (D, kBlockN, kStages).
  // ptid: producer thread 0..127 (all 32 lanes of every producer warp must be
  // here together: LDSM / STSM are warp-collective). valid_rows: keys of this
  // block inside the sequence.
  __device__ __forceinline__ static void run(const uint8_t* vs, uint8_t* vt, int slot, int valid_rows,
                                             int ptid) {
    const int w = ptid / 32, lane = ptid % 32;
    const uint32_t src = static_cast<uint32_t>(__cvta_generic_to_shared(vs + slot * Traits::kTileKVBytes)) +
                         load_base(w, lane);
    const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(vt + slot * Traits::kTileKVBytes));
    const int dst_base = store_base(w, lane);
    const uint32_t sel_e = sel_even_matrix(lane), sel_o = sel_odd_matrix(lane);
    if (valid_rows >= kBlockN) {
      steps<false>(src, dst, dst_base, sel_e, sel_o, w, lane, valid_rows);
    } else {
      steps<true>(src, dst, dst_base, sel_e, sel_o, w, lane, valid_rows);
    }
  }

  template <bool kPartial>
  __device__ __forceinline__ static void steps(uint32_t src, uint32_t dst, int dst_base, uint32_t sel_e,
                                               uint32_t sel_o, int w, int lane, int valid_rows) {
    // Steps along d are a loop (D = 256 only: 2 of them). Steps along keys are
    // unrolled (offsets become immediates) except at D = 256, where the producer
    // has 24 registers and the unrolled body spills.
#pragma unroll 1
    for (int j = 0; j < kStepsD; ++j, src += load_step(0, 1), dst_base ^= store_step(0, 1)) {
#pragma unroll (kUnrollK)
      for (int i = 0; i < kStepsK; ++i) {
        // load_base has no bit in common with load_step (checked on the host), so
        // the XOR is an add the LDSM's immediate offset absorbs.
        uint32_t r[4];
        ldsm_x4_trans(src + load_step(i, 0), r);
        uint32_t s[4];
        s[0] = __byte_perm(r[0], r[1], sel_e);
        s[1] = __byte_perm(r[0], r[1], sel_o);
        s[2] = __byte_perm(r[2], r[3], sel_e);
        s[3] = __byte_perm(r[2], r[3], sel_o);
        if constexpr (kPartial) {
          const uint32_t keep = valid_mask(lane, warp_key0(w) + step_key(i), valid_rows);
#pragma unroll
          for (int m = 0; m < 4; ++m) s[m] &= keep;
        }
        stsm_x4(dst + static_cast<uint32_t>(dst_base ^ store_step(i, 0)), s);
      }
    }
  }
#endif
};

}  // namespace torch_fmha::kernel
