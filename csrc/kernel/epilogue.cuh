// torch_fmha kernel: epilogue. O / l * v_descale (/ out_scale, saturated to
// e4m3 for FP8 output), stored straight from the accumulator registers, and
// the natural-log LSE. Rows at or past the sequence's length are never
// written. Row r of a tile's sequence is row tile.q_row0 + r of out / lse
// in batch tile.batch (dense: q_row0 = 0; varlen: q_row0 = cu_seqlens_q[b]
// and the batch strides are 0, params.h, so no tensor_batch is needed here:
// one register less in the consumers).
//
// O accumulator of a consumer thread (GMMA C layout, 64 x D per warpgroup):
// flat index i = e + 2 * r8 + 4 * j holds row row0 + 8 * r8, column
// 8 * j + col0 + e (col0 = 2 * (lane % 4)). Each thread writes column pairs
// (4 bytes for bf16/fp16, 2 bytes for fp8); the quad of a row covers 8
// consecutive columns per j.
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "../params.h"
#include "tile_scheduler.cuh"

namespace torch_fmha::kernel {

template <int kHeadDim, int kBlockM, class FragO>
__device__ __forceinline__ void store_output(const FwdParams& p, const FragO& o,
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

}  // namespace torch_fmha::kernel
