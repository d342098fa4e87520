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
// Work split: a job is 4 consecutive V^T columns k0..k0+3 x 8 head-dim
// values d0..d0+7: four 8-byte loads (keys perm(k0..k0+3), d0..d0+7), a
// 4x4 byte transpose per 4-byte word (prmt), eight 4-byte stores
// (V^T rows d0..d0+7, columns k0..k0+3). Lanes take consecutive k0, so a
// warp's stores cover one 128-byte V^T row segment: no bank conflicts.
//
// Keys at or past the sequence end (row >= valid_rows) are written as zeros,
// never copied: memory past a sequence may hold anything (NaN), and P = 0
// there would still give 0 * NaN = NaN in the PV product.
#pragma once

#include <cstdint>
#include <cute/tensor.hpp>

namespace torch_fmha::kernel {

__host__ __device__ constexpr int transpose_key_perm(int k) {
  const int lo = k & 15;
  const int p = (((lo >> 1) & 1) << 3) | (((lo >> 3) & 1) << 2) | (((lo >> 2) & 1) << 1) | (lo & 1);
  return (k & ~15) | p;
}
static_assert(transpose_key_perm(0) == 0 && transpose_key_perm(1) == 1 &&
              transpose_key_perm(2) == 8 && transpose_key_perm(3) == 9 &&
              transpose_key_perm(4) == 2 && transpose_key_perm(7) == 11 &&
              transpose_key_perm(13) == 7 && transpose_key_perm(16 + 6) == 16 + 10);

__device__ __forceinline__ uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t sel) {
  return __byte_perm(a, b, sel);
}

// Rows a, b, c, d (4 bytes each, consecutive head-dim values) -> 4 words,
// word i = bytes (a_i, b_i, c_i, d_i): head-dim value i of the four keys.
__device__ __forceinline__ void transpose_4x4_bytes(uint32_t a, uint32_t b, uint32_t c, uint32_t d,
                                                    uint32_t (&o)[4]) {
  const uint32_t ab_lo = byte_perm(a, b, 0x5140);  // a0 b0 a1 b1
  const uint32_t ab_hi = byte_perm(a, b, 0x7362);  // a2 b2 a3 b3
  const uint32_t cd_lo = byte_perm(c, d, 0x5140);  // c0 d0 c1 d1
  const uint32_t cd_hi = byte_perm(c, d, 0x7362);  // c2 d2 c3 d3
  o[0] = byte_perm(ab_lo, cd_lo, 0x5410);          // a0 b0 c0 d0
  o[1] = byte_perm(ab_lo, cd_lo, 0x7632);          // a1 b1 c1 d1
  o[2] = byte_perm(ab_hi, cd_hi, 0x5410);
  o[3] = byte_perm(ab_hi, cd_hi, 0x7632);
}

template <class Traits>
struct VTransposer {
  static constexpr int kBlockN = Traits::kBlockN;
  static constexpr int kHeadDim = Traits::kHeadDim;
  static constexpr int kKGroups = kBlockN / 4;   // groups of 4 V^T columns (keys)
  static constexpr int kDGroups = kHeadDim / 8;  // groups of 8 head-dim values
  static constexpr int kJobs = kKGroups * kDGroups;
  static_assert(kJobs % 128 == 0, "every producer thread gets the same number of jobs");
  static constexpr int kJobsPerThread = kJobs / 128;

  // vs: V scratch FIFO base, SmemLayoutVScratch (kBlockN, D, kStages);
  //     slot `slot` is at vs + slot * kTileKVBytes (I1: never the base alone).
  // vt: V^T buffer base, SmemLayoutVt (D, kBlockN, kStages).
  // ptid: producer thread 0..127. valid_rows: keys of this block inside the sequence.
  //
  // A job is 4 V^T columns x 8 head-dim values: four 8-byte loads, two 4x4
  // byte transposes, eight 4-byte stores. The job loop is not unrolled and the
  // swizzled offsets are recomputed per job: the producer runs on 32
  // registers (setmaxnreg), and hoisted offsets would spill.
  // Swizzled-offset arithmetic. Both smem layouts are a swizzle (XOR-linear
  // over bits) of a layout that is additive for the splits used here:
  //   layout_vt(d0 + m, k0)         = layout_vt(d0, k0) ^ layout_vt(m, 0)        (d0 % 8 == 0, m < 8)
  //   layout_vs(kb + o, d0)         = layout_vs(kb, d0) ^ layout_vs(o, 0)        (kb = key base, o in {0,1,8,9})
  // because the two parts occupy disjoint address bits. So each job evaluates
  // the CuTe layout twice and every load / store address is one XOR with a
  // compile-time constant. tools/kernel_dev/check_transpose_layout.cu checks
  // the identities exhaustively on the host for every head-dim config.
  // transpose_key_perm(4c + i) - transpose_key_perm(4c) = {0, 1, 8, 9}[i]
  __host__ __device__ static constexpr int key_offset(int i) { return (i & 1) | ((i & 2) << 2); }

  // vs: V scratch FIFO base, SmemLayoutVScratch (kBlockN, D, kStages);
  //     slot `slot` is at vs + slot * kTileKVBytes (I1: never the base alone).
  // vt: V^T buffer base, SmemLayoutVt (D, kBlockN, kStages).
  // ptid: producer thread 0..127. valid_rows: keys of this block inside the sequence.
  //
  // A job is 4 V^T columns x 8 head-dim values: four 8-byte loads, two 4x4
  // byte transposes, eight 4-byte stores. The job loop is not unrolled: the
  // producer runs on 32 registers (setmaxnreg).
  __device__ __forceinline__ static void run(const uint8_t* vs, uint8_t* vt, int slot,
                                             int valid_rows, int ptid) {
    using namespace cute;
    constexpr auto layout_vs = typename Traits::SmemLayoutVScratch{};
    constexpr auto layout_vt = typename Traits::SmemLayoutVt{};
    static_assert(cosize_v<typename Traits::SmemLayoutVScratch> == Traits::kStages * Traits::kTileKVBytes);
    const uint8_t* vs_slot = vs + slot * Traits::kTileKVBytes;
    uint8_t* vt_slot = vt + slot * Traits::kTileKVBytes;
    const bool full_block = valid_rows >= kBlockN;
#pragma unroll 1
    for (int job = ptid; job < kJobs; job += 128) {
      const int kg = job % kKGroups;
      const int dg = job / kKGroups;
      const int k0 = kg * 4;
      const int d0 = dg * 8;
      const int key_base = transpose_key_perm(k0);  // keys key_base + {0, 1, 8, 9}
      const int load_base = layout_vs(key_base, d0, 0);
      const int store_base = layout_vt(d0, k0, 0);
      uint2 rows[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int off = load_base ^ static_cast<int>(layout_vs(key_offset(i), 0, 0));
        const bool valid = full_block || key_base + key_offset(i) < valid_rows;
        rows[i] = valid ? *reinterpret_cast<const uint2*>(vs_slot + off) : make_uint2(0u, 0u);
      }
#pragma unroll
      for (int w = 0; w < 2; ++w) {
        uint32_t o[4];
        transpose_4x4_bytes(w ? rows[0].y : rows[0].x, w ? rows[1].y : rows[1].x,
                            w ? rows[2].y : rows[2].x, w ? rows[3].y : rows[3].x, o);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int off = store_base ^ static_cast<int>(layout_vt(4 * w + i, 0, 0));
          *reinterpret_cast<uint32_t*>(vt_slot + off) = o[i];
        }
      }
    }
  }
};

}  // namespace torch_fmha::kernel
