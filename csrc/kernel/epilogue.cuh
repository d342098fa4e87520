// torch_fmha kernel: epilogue. O / l * v_descale (/ out_scale, saturated to
// e4m3 for FP8 output) and the natural-log LSE. Rows at or past the
// sequence's length are never written. Row r of a tile's sequence is row
// tile.q_row0 + r of out / lse in batch tile.batch (dense: q_row0 = 0;
// varlen: q_row0 = cu_seqlens_q[b] and the batch strides are 0, params.h).
//
// O accumulator of a consumer thread (GMMA C layout, 64 x D per warpgroup):
// flat index i = e + 2 * r8 + 4 * j holds row row0 + 8 * r8, accumulator column
// 8 * j + col0 + e (col0 = 2 * (lane % 4)), which is V^T's row 8 j + col0 + e.
//
// Two store paths, chosen per build by measurement (kernel_traits.cuh,
// Traits::kLaneChunkStores; docs/DESIGN.md section 7; consumer.cuh picks one):
// - lane chunks (every build but D = 64's of a standard v, since session 44): V^T's rows
//   come in a packed v's order (csrc/vt_key_order.h), so each lane holds 8 consecutive
//   output columns per 32 and stores them whole from the registers
//   (store_output_lane_chunks).
// - column pairs (D = 64 with a standard v): each lane stores its column pairs from the
//   registers, 2 or 4 bytes per store (store_output_pairs). D = 64 was slower with lane
//   chunks (session 44), as with the shared-memory stage and the fp8 groups before.
// Until session 43 the D = 128 / 256 builds stored fp8 output in quad-transposed groups and
// 16-bit output through a shared-memory stage (D = 128) or in column pairs (D = 256); section
// 7 has what they measured. Both need out 16-byte aligned with strides in multiples of 16
// bytes (dispatch_fwd.cu checks; the op allocates out contiguous).
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "../params.h"
#include "pipeline.cuh"
#include "tile_scheduler.cuh"

namespace torch_fmha::kernel {

#ifdef __CUDACC__
// The lane's index within its quad (lane % 4), read from %laneid where it is
// used: computed from threadIdx.x at the kernel's start, the lane-dependent
// choices of an epilogue were loop-invariant, the compiler hoisted them out of
// the tile loop, and at D = 256 they took registers from the steady-state
// rounds (spills there). A volatile read cannot be hoisted.
__device__ __forceinline__ int lane_in_quad() {
  uint32_t lane;
  asm volatile("mov.u32 %0, %%laneid;" : "=r"(lane));
  return int(lane & 3);
}
#endif

__device__ __forceinline__ int64_t out_row_offset(const FwdParams& p, const TileInfo& tile, int row) {
  return int64_t(tile.batch) * p.out_batch_stride + int64_t(tile.q_row0 + row) * p.out_row_stride +
         int64_t(tile.head) * p.out_head_stride;
}

__device__ __forceinline__ void store_lse(const FwdParams& p, const TileInfo& tile, int row,
                                          float lse) {
  p.lse[int64_t(tile.batch) * p.lse_batch_stride + int64_t(tile.head) * p.lse_head_stride +
        tile.q_row0 + row] = lse;
}

// Column pairs (D = 64 with a standard v): every thread stores its column pairs
// straight from registers, 2 bytes (fp8) or 4 bytes per store.
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

// Lane chunks. V^T's rows come in a packed v's order (csrc/vt_key_order.h,
// packed_v_column_of_row: a packed v as loaded, or the producer's transpose), so O's
// accumulator column 8 j + 2 q + e is output column 32 (j / 4) + 8 q + 2 (j % 4) + e: lane q
// of a quad holds, for each 32-column chunk g, the 8 consecutive output columns 32 g + 8 q
// .. + 7 of its row. One store each, 8 bytes (fp8) or 16 (bf16 / fp16), a quad 32 / 64
// contiguous bytes: no exchange between lanes (the fp8 groups before session 44 took 2
// shuffles and their byte selects per 8 bytes), no stage, no barrier. Rows past the
// sequence's end are skipped whole. A row that saw no key stores exact zeros, word by word
// (its O may hold 0 * NaN from NaN V rows that other rows of the tile see, and the row
// factor is NaN when v_descale is; a zero pair converts to 0x0000, and zeroing the words
// took fewer instructions than a select per value in session 37's fp8 groups).
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
