// torch_fmha kernel: epilogue. O / l * v_descale (/ out_scale, saturated to
// e4m3 for FP8 output) and the natural-log LSE. Rows at or past the
// sequence's length are never written. Row r of a tile's sequence is row
// tile.q_row0 + r of out / lse in batch tile.batch (dense: q_row0 = 0;
// varlen: q_row0 = cu_seqlens_q[b] and the batch strides are 0, params.h).
//
// O accumulator of a consumer thread (GMMA C layout, 64 x D per warpgroup):
// flat index i = e + 2 * r8 + 4 * j holds row row0 + 8 * r8, column
// 8 * j + col0 + e (col0 = 2 * (lane % 4)). Each thread converts column pairs
// (4 bytes for bf16/fp16, 2 bytes for fp8); the quad of a row covers 8
// consecutive columns per j.
//
// Four store paths, chosen per build and output type by measurement
// (kernel_traits.cuh: Traits::kLaneChunkStores, Traits::kFp8GroupStores,
// Traits::kStagedEpilogue; docs/DESIGN.md sections 6 and 7; consumer.cuh picks one per tile):
// - lane chunks (every build of a packed v, every output type, since session 44): the
//   packed v's row order puts 8 consecutive output columns in each lane, stored whole
//   from the registers (store_output_lane_chunks).
// - fp8 groups (fp8 output of the standard-v builds at D = 256 and D = 128, the long ones
//   since session 32): a transpose within the quad (quad_transpose.cuh), then 8 bytes per lane
//   of one whole 8-column group, 32 contiguous bytes per quad, from the registers.
// - staged (16-bit output of the standard-v D = 128 builds; their fp8 output until
//   session 32): the
//   warpgroup writes its 64 x D output rows into a shared-memory stage (2-4 byte stores,
//   bank-conflict-free), then every thread copies 16-byte chunks of whole rows
//   to global memory. The direct 2-4 byte global stores filled the LSU queue
//   (ncu, D=128 S=4k: `lg` throttle on the STGs and write-after-read waits
//   behind them, ~6% of the consumers' time); 16-byte stores are 4x fewer and
//   cover whole sectors. Rows past the sequence's end are not stored, so ragged
//   batches stay exact.
// - column pairs (D = 64 standard v; 16-bit output at D = 256 standard v): each lane stores its
//   column pairs from the registers, 2 or 4 bytes per store. D = 64 was slower with the fp8 groups and with the
//   stage; at D = 256 there is no shared memory left for a stage, and an
//   exchange for 16-bit output made ptxas spill in the steady KV loop.
// All need out 16-byte aligned with strides in multiples of 16 bytes
// (dispatch_fwd.cu checks; the op allocates out contiguous).
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "../params.h"
#include "pipeline.cuh"
#include "quad_transpose.cuh"
#include "tile_scheduler.cuh"

namespace torch_fmha::kernel {

__device__ __forceinline__ int out_element_bytes(ElementType t) {
  return t == ElementType::kFloat8E4M3 ? 1 : 2;
}

// Calls put(r8, j, bits) for every column pair of the thread's two rows:
// (o[2 r8 + 4 j], o[1 + 2 r8 + 4 j]) * f[r8], converted to the output type and
// packed (fp8: 16 bits, bf16 / fp16: 32 bits). A row that sees no key
// (empty[r8]: inv_sum is 0 only there) gets exact zeros: its O may hold
// 0 * NaN from NaN V rows that other rows of the tile see, and f is NaN when
// v_descale is.
// The output-type test sits inside the unrolled pairs. Where the caller has
// already left fp8 out (store_output_staged, after the fp8 groups) ptxas
// predicates the bf16 / fp16 choice; a caller that also passed fp8 through it
// (session 43's output storers, docs/DESIGN.md section 7) got a branch per
// pair in sm_90a SASS, the pairs one after the other: such a caller wants one
// loop per output width.
template <int kHeadDim, class FragO, class Put>
__device__ __forceinline__ void for_each_out_pair(ElementType out_type, const FragO& o,
                                                  const float (&f)[2], const bool (&empty)[2],
                                                  Put&& put) {
#pragma unroll
  for (int r8 = 0; r8 < 2; ++r8) {
#pragma unroll
    for (int j = 0; j < kHeadDim / 8; ++j) {
      const float2 v = empty[r8] ? make_float2(0.f, 0.f)
                                 : make_float2(o(2 * r8 + 4 * j) * f[r8], o(1 + 2 * r8 + 4 * j) * f[r8]);
      uint32_t bits;
      if (out_type == ElementType::kFloat8E4M3) {
        bits = __nv_cvt_float2_to_fp8x2(v, __NV_SATFINITE, __NV_E4M3);
      } else if (out_type == ElementType::kBFloat16) {
        const __nv_bfloat162 h = __float22bfloat162_rn(v);
        bits = *reinterpret_cast<const uint32_t*>(&h);
      } else {
        const __half2 h = __float22half2_rn(v);
        bits = *reinterpret_cast<const uint32_t*>(&h);
      }
      put(r8, j, bits);
    }
  }
}

// Output scale per row (1 / l * v_descale * 1 / out_scale) and emptiness.
__device__ __forceinline__ void out_row_factors(const TileInfo& tile, const float (&inv_sum)[2],
                                                float (&f)[2], bool (&empty)[2]) {
#pragma unroll
  for (int r8 = 0; r8 < 2; ++r8) {
    f[r8] = inv_sum[r8] * tile.v_descale * tile.out_mul;
    empty[r8] = inv_sum[r8] == 0.f;
  }
}

__device__ __forceinline__ int64_t out_row_offset(const FwdParams& p, const TileInfo& tile, int row) {
  return int64_t(tile.batch) * p.out_batch_stride + int64_t(tile.q_row0 + row) * p.out_row_stride +
         int64_t(tile.head) * p.out_head_stride;
}

__device__ __forceinline__ void store_lse(const FwdParams& p, const TileInfo& tile, int row,
                                          float lse) {
  p.lse[int64_t(tile.batch) * p.lse_batch_stride + int64_t(tile.head) * p.lse_head_stride +
        tile.q_row0 + row] = lse;
}

// Direct path, column pairs: every thread stores its column pairs straight
// from registers, 2 bytes (fp8) or 4 bytes per store (the conversion of
// for_each_out_pair, written out: ptxas spills less at D = 256 this way).
template <int kHeadDim, int kBlockM, class FragO>
__device__ __forceinline__ void store_output_pairs(const FwdParams& p, const FragO& o,
                                                   const float (&inv_sum)[2], const float (&lse)[2],
                                                   const TileInfo& tile, int row0, int col0) {
  const float v_descale = tile.v_descale;
  const bool fp8_out = p.out_type == ElementType::kFloat8E4M3;
  const float out_mul = tile.out_mul;
#pragma unroll
  for (int r8 = 0; r8 < 2; ++r8) {
    const int row = tile.m_block * kBlockM + row0 + 8 * r8;
    if (row >= tile.seqlen_q) continue;
    const float f = inv_sum[r8] * v_descale * out_mul;
    // A row that sees no key stores exact zeros (inv_sum is 0 only there):
    // its O may hold 0 * NaN from NaN V rows that other rows of the tile see,
    // and f is NaN when v_descale is. One select per element, once per tile.
    const bool empty = inv_sum[r8] == 0.f;
    const int64_t elem = int64_t(tile.batch) * p.out_batch_stride +
                         int64_t(tile.q_row0 + row) * p.out_row_stride +
                         int64_t(tile.head) * p.out_head_stride + col0;
    if (fp8_out) {
      uint8_t* dst = static_cast<uint8_t*>(p.out) + elem;
#pragma unroll
      for (int j = 0; j < kHeadDim / 8; ++j) {
        const float2 v = empty ? make_float2(0.f, 0.f)
                                : make_float2(o(2 * r8 + 4 * j) * f, o(1 + 2 * r8 + 4 * j) * f);
        *reinterpret_cast<__nv_fp8x2_storage_t*>(dst + 8 * j) =
            __nv_cvt_float2_to_fp8x2(v, __NV_SATFINITE, __NV_E4M3);
      }
    } else if (p.out_type == ElementType::kBFloat16) {
      __nv_bfloat16* dst = static_cast<__nv_bfloat16*>(p.out) + elem;
#pragma unroll
      for (int j = 0; j < kHeadDim / 8; ++j) {
        *reinterpret_cast<__nv_bfloat162*>(dst + 8 * j) =
            empty ? __floats2bfloat162_rn(0.f, 0.f)
                  : __floats2bfloat162_rn(o(2 * r8 + 4 * j) * f, o(1 + 2 * r8 + 4 * j) * f);
      }
    } else {
      __half* dst = static_cast<__half*>(p.out) + elem;
#pragma unroll
      for (int j = 0; j < kHeadDim / 8; ++j) {
        *reinterpret_cast<__half2*>(dst + 8 * j) =
            empty ? __floats2half2_rn(0.f, 0.f)
                  : __floats2half2_rn(o(2 * r8 + 4 * j) * f, o(1 + 2 * r8 + 4 * j) * f);
      }
    }
    if (p.lse != nullptr && col0 == 0) {
      p.lse[int64_t(tile.batch) * p.lse_batch_stride + int64_t(tile.head) * p.lse_head_stride +
            tile.q_row0 + row] = lse[r8];
    }
  }
}

// Direct path, fp8 output, whole groups: after a 4 x 4 transpose within the
// quad (quad_transpose.cuh) lane q stores 8-column group 4g + q of its row,
// 8 bytes, and a quad writes 32 contiguous bytes per store: 4x fewer stores
// than store_output_pairs and whole sectors. The shuffles need every lane of
// the warp, so rows past the sequence's end are skipped at the store, not
// before the transpose.
//
// A row that saw no key stores exact zeros, as in store_output_pairs (its O may hold NaN
// from masked keys' V). kWordZero: the row is the quad's, so its converted words are
// zeroed whole: 72-80 fewer instructions in each D = 128 kernel (two inlined epilogues),
// 48-56 in each D = 256 one (sm_90a SASS, session 37) than a select per value. The same
// bits: a zero pair converts to 0x0000.
// Without it, a select per value: the P-from-shared-memory split kernel keeps that,
// where the word form moved ptxas's register allocation (a spill into its steady loop,
// sm_90a; consumer.cuh).
template <int kHeadDim, int kBlockM, bool kWordZero, class FragO>
__device__ __forceinline__ void store_output_fp8_groups(const FwdParams& p, const FragO& o,
                                                        const float (&inv_sum)[2], const float (&lse)[2],
                                                        const TileInfo& tile, int row0, int col0) {
  static_assert(kHeadDim % 32 == 0, "groups of 4 x 8 columns");
  const int q = lane_in_quad();  // col0 / 2, read here (lane_in_quad)
#pragma unroll
  for (int r8 = 0; r8 < 2; ++r8) {
    const int row = tile.m_block * kBlockM + row0 + 8 * r8;
    const bool in_seq = row < tile.seqlen_q;
    const float f = inv_sum[r8] * tile.v_descale * tile.out_mul;
    const bool empty = inv_sum[r8] == 0.f;
    auto pair_bits = [&](int j) -> uint32_t {  // columns 8j + col0, + 1 as e4m3
      const float2 v = !kWordZero && empty
                           ? make_float2(0.f, 0.f)
                           : make_float2(o(2 * r8 + 4 * j) * f, o(1 + 2 * r8 + 4 * j) * f);
      return __nv_cvt_float2_to_fp8x2(v, __NV_SATFINITE, __NV_E4M3);
    };
    uint8_t* const lane_out = static_cast<uint8_t*>(p.out) + out_row_offset(p, tile, row) +
                              fp8_lane_column(q, 0);  // + 32 bytes per g
#pragma unroll
    for (int g = 0; g < kHeadDim / 32; ++g) {
      uint32_t w[2] = {pair_bits(4 * g) | (pair_bits(4 * g + 1) << 16),
                       pair_bits(4 * g + 2) | (pair_bits(4 * g + 3) << 16)};
      if (kWordZero && empty) w[0] = w[1] = 0u;
      quad_transpose(w, q);
      if (in_seq) *reinterpret_cast<uint2*>(lane_out + 32 * g) = make_uint2(w[0], w[1]);
    }
    if (in_seq && p.lse != nullptr && col0 == 0) store_lse(p, tile, row, lse[r8]);
  }
}

// Direct path, a packed v: lane chunks. A packed v's rows are permuted
// (csrc/vt_key_order.h, packed_v_column_of_row) so that O's accumulator column
// 8 j + 2 q + e is output column 32 (j / 4) + 8 q + 2 (j % 4) + e: lane q of a quad holds,
// for each 32-column chunk g, the 8 consecutive output columns 32 g + 8 q .. + 7 of its
// row. One store each, 8 bytes (fp8) or 16 (bf16 / fp16), a quad 32 / 64 contiguous bytes:
// no exchange between lanes (the fp8 groups: 2 shuffles and their byte selects per 8 bytes),
// no stage, no barrier. Rows past the sequence's end are skipped whole. A row that saw no
// key stores exact zeros, word by word (store_output_fp8_groups says why).
template <int kHeadDim, int kBlockM, class FragO>
__device__ __forceinline__ void store_output_lane_chunks(const FwdParams& p, const FragO& o,
                                                         const float (&inv_sum)[2], const float (&lse)[2],
                                                         const TileInfo& tile, int row0) {
  static_assert(kHeadDim % 32 == 0, "chunks of 4 x 8 columns");
  const int q = lane_in_quad();
  const bool fp8_out = p.out_type == ElementType::kFloat8E4M3;
  const bool bf16_out = p.out_type == ElementType::kBFloat16;
#pragma unroll
  for (int r8 = 0; r8 < 2; ++r8) {
    const int row = tile.m_block * kBlockM + row0 + 8 * r8;
    if (row >= tile.seqlen_q) continue;
    const float f = inv_sum[r8] * tile.v_descale * tile.out_mul;
    const bool empty = inv_sum[r8] == 0.f;
    auto value = [&](int j, int e) { return o(e + 2 * r8 + 4 * j) * f; };
    uint8_t* const row_out = static_cast<uint8_t*>(p.out) + out_row_offset(p, tile, row) * (fp8_out ? 1 : 2);
    if (fp8_out) {
#pragma unroll
      for (int g = 0; g < kHeadDim / 32; ++g) {
        uint32_t w[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const uint32_t lo = __nv_cvt_float2_to_fp8x2(make_float2(value(4 * g + 2 * h, 0), value(4 * g + 2 * h, 1)),
                                                       __NV_SATFINITE, __NV_E4M3);
          const uint32_t hi = __nv_cvt_float2_to_fp8x2(
              make_float2(value(4 * g + 2 * h + 1, 0), value(4 * g + 2 * h + 1, 1)), __NV_SATFINITE, __NV_E4M3);
          w[h] = empty ? 0u : lo | (hi << 16);
        }
        *reinterpret_cast<uint2*>(row_out + 32 * g + 8 * q) = make_uint2(w[0], w[1]);
      }
    } else {
#pragma unroll
      for (int g = 0; g < kHeadDim / 32; ++g) {
        uint32_t w[4];
#pragma unroll
        for (int h = 0; h < 4; ++h) {
          const float2 v = make_float2(value(4 * g + h, 0), value(4 * g + h, 1));
          uint32_t bits;
          if (bf16_out) {
            const __nv_bfloat162 b = __float22bfloat162_rn(v);
            bits = *reinterpret_cast<const uint32_t*>(&b);
          } else {
            const __half2 b = __float22half2_rn(v);
            bits = *reinterpret_cast<const uint32_t*>(&b);
          }
          w[h] = empty ? 0u : bits;
        }
        *reinterpret_cast<uint4*>(row_out + 2 * (32 * g + 8 * q)) = make_uint4(w[0], w[1], w[2], w[3]);
      }
    }
  }
  if (p.lse != nullptr && q == 0) {
#pragma unroll
    for (int r8 = 0; r8 < 2; ++r8) {
      const int row = tile.m_block * kBlockM + row0 + 8 * r8;
      if (row < tile.seqlen_q) store_lse(p, tile, row, lse[r8]);
    }
  }
}

// ---- staged path ---------------------------------------------------------------------

// Row pitch of the stage: 16 bytes of padding put the 8 rows a warp writes
// per column pair in distinct banks (row r starts at bank 4 r mod 32), and keep
// every row 16-byte aligned for the 16-byte copies.
template <int kHeadDim>
__host__ __device__ constexpr int out_stage_pitch() {
  return 2 * kHeadDim + 16;
}

// stage: this warpgroup's 64 x out_stage_pitch bytes. wg_tid: 0..127 within the
// warpgroup; row0 is tile-relative (64 * wg + row in the warpgroup).
template <int kHeadDim, int kBlockM, class FragO>
__device__ __forceinline__ void store_output_staged(const FwdParams& p, const FragO& o,
                                                    const float (&inv_sum)[2],
                                                    const float (&lse)[2], const TileInfo& tile,
                                                    int row0, int col0, uint8_t* stage,
                                                    int wg_tid, NamedBarrier wg_barrier,
                                                    bool after_no_gemm_round) {
  constexpr int kPitch = out_stage_pitch<kHeadDim>();
  float f[2];
  bool empty[2];
  out_row_factors(tile, inv_sum, f, empty);
  const int elt = out_element_bytes(p.out_type);
  const int wg_row0 = row0 % 64;  // this thread's first row within the warpgroup's 64

  // The stage's previous readers (this warpgroup's copy loop below, for the
  // previous tile) must be done. After a GEMM round they are: every warp of
  // the warpgroup passed the round's bar.sync after its copy loop, whose
  // loads its stores consumed. Only a tile without GEMM rounds (no key
  // visible) must wait for them here.
  if (after_no_gemm_round) named_barrier_sync(wg_barrier, 128);
  uint8_t* mine = stage + wg_row0 * kPitch + col0 * elt;
  for_each_out_pair<kHeadDim>(p.out_type, o, f, empty, [&](int r8, int j, uint32_t bits) {
    uint8_t* dst = mine + 8 * r8 * kPitch;
    if (elt == 1) {
      *reinterpret_cast<uint16_t*>(dst + 8 * j) = static_cast<uint16_t>(bits);
    } else {
      *reinterpret_cast<uint32_t*>(dst + 16 * j) = bits;
    }
  });
  named_barrier_sync(wg_barrier, 128);  // the whole stage written

  const int tile_row_base = tile.m_block * kBlockM + (row0 - wg_row0);  // the warpgroup's first row
  {
    // 16-byte chunks, consecutive threads on consecutive chunks of a row.
    const int chunks_per_row = kHeadDim * elt / 16;
    const int chunks = 64 * chunks_per_row;
#pragma unroll
    for (int c0 = 0; c0 < 64 * kHeadDim * 2 / 16; c0 += 128) {
      const int c = c0 + wg_tid;
      if (c >= chunks) break;
      const int r = c / chunks_per_row;
      const int k = c - r * chunks_per_row;
      const uint4 v = *reinterpret_cast<const uint4*>(stage + r * kPitch + 16 * k);
      const int row = tile_row_base + r;
      if (row < tile.seqlen_q) {
        *reinterpret_cast<uint4*>(static_cast<uint8_t*>(p.out) + out_row_offset(p, tile, row) * elt +
                                  16 * k) = v;
      }
    }
  }
  if (p.lse != nullptr && col0 == 0) {
#pragma unroll
    for (int r8 = 0; r8 < 2; ++r8) {
      const int row = tile.m_block * kBlockM + row0 + 8 * r8;
      if (row < tile.seqlen_q) store_lse(p, tile, row, lse[r8]);
    }
  }
}

// Split tail (tile_scheduler.cuh). A slot side holds, for each of the 256 consumer threads,
// its O accumulator values normalized by the piece's own row sums, value i of thread t at
// float i * 256 + t (a warp's i-th values are 128 contiguous bytes), then the LSEs of its
// two rows, row r8 at float 256 * kHeadDim / 2 + r8 * 256 + t. Both pieces run the same
// kernel, so thread t holds the same rows and columns in each. Scalar accesses: a float4
// of O's values needs them in an aligned register quad, and the copies into one made
// ptxas spill at D = 256. O's flat index i = e + 2 r8 + 4 j is row r8 = (i / 2) % 2.
//
// Both pieces of a split tile end here, each warpgroup on its own 64 rows. A piece leaves its
// partial in its side of the slot and counts in on the slot's flag (pipeline.cuh,
// flag_arrive). The first to count in is done. The second merges the two sides: returns
// true with o holding the tile's output rows, inv_sum 1 (0 for a row with neither a key in
// either piece nor a sink) and lse the tile's LSE, for the usual store. Nobody waits for the
// other piece, so the two CTAs need not be resident together.
// The merge reads both partials back as stored, the head piece's first, so the bits do not
// depend on which piece merged:
//   O = O_head w_head + O_tail w_tail, w = exp(lse - lse_new), lse_new = log(exp(lse_head) + exp(lse_tail)).
// `debug_tail_wait_ns` (the debug build's test hook, 0 otherwise): the tail piece's leader
// waits, at most that long, until the head piece has counted in, so that the tail piece
// merges. (A plain delay would not do: each CTA runs its own tail piece first and its head
// piece last, so delaying every tail piece delays the head pieces as much.) Each wait ends
// at a CTA whose share starts on a tile boundary (no tail piece), so the chain is finite
// when the grid is resident at once, as in the test; the bound keeps it from hanging.
// A NaN LSE or O value on either side makes the row NaN. Two cases differ from the unsplit
// epilogue, and neither can happen: a row with a NaN LSE in one piece and -inf (no key) in
// the other would come out 0, and a row with no key in either piece but a sink leaves
// inv_sum 1 with O = 0 (unsplit: inv_sum 0). A split tile has no mask, so each of its rows
// sees keys in both pieces.
// `arrival`: a shared-memory word of this warpgroup, to hand the leader's reads to the
// other threads.
// Session 32 had the head piece, nearly always the second to finish, first read the flag
// and, when the tail piece had counted in, merge without the fence, barrier and count that
// publish its own partial. It measured neutral (session 33, one H200, same call, 2 rounds,
// non-causal TF/s with -> without, D = 64 2k-16k 551 591 606 612 -> 551 589 606 613, D = 128
// packed v 850 883 908 917 -> 847 881 907 917: every cell within 0.5%), so it was removed:
// one exchange protocol.

template <int kHeadDim, class FragO>
__device__ __forceinline__ bool exchange_split_partial(const SplitTailBuffers& b, int slot, SplitRole role,
                                                       int tidx, FragO& o, float (&inv_sum)[2],
                                                       float (&lse)[2], int32_t* arrival,
                                                       NamedBarrier wg_barrier, bool wg_leader,
                                                       int debug_tail_wait_ns = 0) {
  constexpr float kLog2e = 1.4426950408889634f;
  constexpr float kLn2 = 0.6931471805599453f;
  constexpr int kLse = 256 * (kHeadDim / 2);
  int32_t* const flag = b.flags + 2 * slot + tidx / 128;  // this slot's, this warpgroup's
  // The partial is stored even by the piece that merges: the merge below reads both back
  // (a thread reads its own stores in program order). Keeping O in registers for the merge
  // instead made ptxas spill predicates into the D = 128 packed-v split kernel's steady
  // loop (session 32: LOP3 126 -> 424 there, sm_90a, nvcc 13.0).
  float* const mine = b.side(slot, role, kHeadDim) + tidx;
#pragma unroll
  for (int i = 0; i < kHeadDim / 2; ++i) {
    const int r8 = (i / 2) % 2;
    // A row that saw no key leaves zeros (its O may hold 0 * NaN, epilogue above).
    __stcg(mine + i * 256, inv_sum[r8] == 0.f ? 0.f : o(i) * inv_sum[r8]);
  }
  __stcg(mine + kLse, lse[0]);
  __stcg(mine + kLse + 256, lse[1]);
  __threadfence();
  named_barrier_sync(wg_barrier, 128);  // the warpgroup's 64 rows written
  if (wg_leader) {
    if (role == SplitRole::kTailPiece) {  // the debug build's test hook; 0 otherwise
      const volatile int32_t* seen = flag;
      for (int waited = 0; waited < debug_tail_wait_ns && *seen == 0; waited += 1000) __nanosleep(1000);
    }
    *arrival = flag_arrive(flag);
  }
  __syncwarp();  // the leader's warp reconverges before bar.sync (pipeline.cuh, named_barrier_sync)
  named_barrier_sync(wg_barrier, 128);  // the count, and the leader's acquire, for all
  // Every lane reads the same word; the shuffle lets ptxas see that the branch is warp
  // uniform (with a plain load it spilled 350-500 bytes across the consumer).
  if (__shfl_sync(0xffffffffu, *arrival, 0) == 0) return false;  // the other piece merges
  const float* const head = b.side(slot, SplitRole::kHeadPiece, kHeadDim) + tidx;
  const float* const tail = b.side(slot, SplitRole::kTailPiece, kHeadDim) + tidx;
  float w_head[2], w_tail[2];
#pragma unroll
  for (int r8 = 0; r8 < 2; ++r8) {
    const float lse_head = __ldcg(head + kLse + 256 * r8);
    const float lse_tail = __ldcg(tail + kLse + 256 * r8);
    const float big = fmaxf(lse_head, lse_tail);  // NaN on one side: the other
    if (big == -INFINITY) {  // no key in either piece, no sink (or NaN on one side only: never)
      w_head[r8] = w_tail[r8] = 0.f;
      inv_sum[r8] = 0.f;
      lse[r8] = -INFINITY;
      continue;
    }
    const float a = exp2f((lse_head - big) * kLog2e);  // NaN if lse_head is
    const float c = exp2f((lse_tail - big) * kLog2e);
    const float sum = a + c;
    w_head[r8] = __fdividef(a, sum);
    w_tail[r8] = __fdividef(c, sum);
    lse[r8] = big + __log2f(sum) * kLn2;
    inv_sum[r8] = 1.f;
  }
#pragma unroll
  for (int i = 0; i < kHeadDim / 2; ++i) {
    const int r8 = (i / 2) % 2;
    o(i) = fmaf(__ldcg(head + i * 256), w_head[r8], __ldcg(tail + i * 256) * w_tail[r8]);
  }
  return true;
}

}  // namespace torch_fmha::kernel
