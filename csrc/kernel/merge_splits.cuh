// torch_fmha: the split-KV merge kernel of attention_with_kvcache (host side:
// csrc/launch/merge_splits.cu; the arithmetic: csrc/merge_splits.h, shared with
// the CPU op).
//
// One warp per output row (b, sq, h): every lane reads the row's split LSEs and
// computes the same weights (from L1; 64 splits at most with num_splits=0, any
// count works), then lane l merges head-dim elements l, l + 32, ... (coalesced
// float16 reads of each split's partial). Lane 0 writes the row's LSE. One
// launch replaces the ~20 ATen ops the merge was before (each a kernel launch
// and ~10-20 us of host time).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "../merge_splits.h"

namespace torch_fmha {
namespace kernel {

constexpr int kMergeWarps = 4;  // rows per block

__device__ __forceinline__ void store_merged(const MergeParams& p, int64_t index, float v) {
  switch (p.out_type) {
    case MergeOutType::kBFloat16:
      static_cast<__nv_bfloat16*>(p.out)[index] = __float2bfloat16_rn(v);
      break;
    case MergeOutType::kFloat16:
      static_cast<__half*>(p.out)[index] = __float2half_rn(v);
      break;
    case MergeOutType::kFloat8E4M3:  // saturated by MergeRow::out; NaN stays NaN
      static_cast<__nv_fp8_storage_t*>(p.out)[index] = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
      break;
  }
}

__global__ void __launch_bounds__(32 * kMergeWarps) merge_splits_kernel(const MergeParams p) {
  const int64_t row = int64_t(blockIdx.x) * kMergeWarps + threadIdx.x / 32;
  if (row >= p.rows()) return;
  const int lane = threadIdx.x % 32;
  const int h = int(row % p.heads);
  const int sq = int((row / p.heads) % p.seqlen_q);
  const int b = int(row / (int64_t(p.heads) * p.seqlen_q));
  const float* lse = p.lse_parts + p.lse_layout.offset(b, 0, sq, h, 0);
  const auto lse_at = [&](int s) { return lse[s * p.lse_layout.s]; };
  const bool has_sink = p.sinks != nullptr;
  const MergeRow<float> r = merge_row<float>(p.splits, lse_at, has_sink, has_sink ? p.sinks[h] : 0.f);
  const float v_descale = p.v_descale == nullptr ? 1.f
      : p.v_descale[p.v_descale_per_head ? b * p.heads_kv + h / (p.heads / p.heads_kv) : 0];
  const float out_scale = p.out_scale == nullptr ? 1.f : p.out_scale[0];
  const bool fp8 = p.out_type == MergeOutType::kFloat8E4M3;
  const __half* o = static_cast<const __half*>(p.o_parts) + p.o_layout.offset(b, 0, sq, h, 0);
  for (int d = lane; d < p.head_dim; d += 32) {
    float sum = 0.f;
    if (!r.empty && r.defined) {
      for (int s = 0; s < p.splits; ++s) {
        sum += r.weight(lse_at(s)) * __half2float(o[s * p.o_layout.s + d * p.o_layout.d]);
      }
    }
    store_merged(p, row * p.head_dim + d, r.out(sum, v_descale, out_scale, fp8));
  }
  if (lane == 0) {
    p.lse_out[b * p.lse_out_stride[0] + sq * p.lse_out_stride[1] + h * p.lse_out_stride[2]] = r.lse;
  }
}

}  // namespace kernel
}  // namespace torch_fmha
