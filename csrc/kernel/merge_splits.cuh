// torch_fmha: the split-KV merge kernel of attention_with_kvcache (host side:
// csrc/launch/merge_splits.cu; the arithmetic: csrc/merge_splits.h, shared with
// the CPU op).
//
// One warp per output row (b, sq, h). The kernel is latency-bound (a decode step's
// few rows, each a few dependent L2 round trips), so no lane walks the splits
// serially through memory:
//  - lane s loads split s's lse (chunks of 32 splits; 64 at most with num_splits=0,
//    any count works); the max (merge_max, earliest split kept on ties as the serial
//    loop does) and the NaN flag are warp reductions, then merge_row_shift;
//  - lane s computes its split's weight once; every lane adds the weights, fetched by
//    shuffle, in increasing split order (denom, then merge_row_finish): bitwise what
//    merge_row gives;
//  - lane l owns the kElems contiguous head-dim elements kElems l, ... of a pass (one
//    4 / 8 / 16-byte load per split at D = 64 / 128 / 256 where the partials' head dim
//    is contiguous and aligned, as the decode kernel writes them; element loads
//    otherwise) and adds weight_s * o_s[d] in increasing split order (the serial order),
//    in steps of kSplitsPerStep splits whose loads are all issued before the step's first
//    add (128 / 256 / 256 bytes in flight per lane: all 32 splits of a chunk in one step at D <= 128,
//    16 at D = 256; the first step's loads go out with the LSE loads, before the row's
//    weights are known). Each step is an L2 round trip after the decode grid's last CTA:
//    with element loads (8 splits per step at D = 128, before session 21) a B = 1 step
//    with 32 splits took four of them, ~7 us from the decode kernel's end to the merge's.
// Lane 0 writes the row's LSE. One launch replaces the ~20 ATen ops the merge was
// before (each a kernel launch and ~10-20 us of host time).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "../merge_splits.h"
#include "grid_dependency.cuh"

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

constexpr unsigned kMergeFullMask = 0xffffffffu;
// Bytes of partials a lane has in flight before its first add: kMergeBytesInFlight /
// (2 kElems) splits at a time, at most 32 (64 registers of float16 pairs).
constexpr int kMergeBytesInFlight = 256;

// kElems float16 values of one split's partial as float16 pairs, loaded as one access
// (kept packed: unpacking them into halves at the load cost two PRMT per pair).
template <int kElems>
struct alignas(2 * kElems) MergeHalves {
  uint32_t pair[kElems / 2];
  __device__ __forceinline__ float at(int e) const {
    const uint32_t w = pair[e / 2];
    return __half2float(__ushort_as_half(static_cast<unsigned short>(e % 2 == 0 ? w & 0xffffu : w >> 16)));
  }
};

// merge_max over the warp's lanes in lane order (lane i's value is split c + i's): the
// tree keeps the lower lanes' value on the left at every step, so every lane gets
// bitwise the serial loop's result over the 32 values.
__device__ __forceinline__ float warp_merge_max(float v, int lane) {
#pragma unroll
  for (int k = 1; k < 32; k <<= 1) {
    const float other = __shfl_xor_sync(kMergeFullMask, v, k);
    const bool upper = (lane & k) != 0;  // this lane's group is the later one
    v = upper ? merge_max(other, v) : merge_max(v, other);
  }
  return v;
}

// kElems: head-dim elements per lane per pass over the splits (the launch picks 2 / 4 / 8
// for head_dim 64 / 128 / 256, the only ones it takes: one pass each).
template <int kElems>
__global__ void __launch_bounds__(32 * kMergeWarps, 1) merge_splits_kernel(const MergeParams p) {
  const int64_t row = int64_t(blockIdx.x) * kMergeWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int h = int(row % p.heads);
  const int sq = int((row / p.heads) % p.seqlen_q);
  const int b = int(row / (int64_t(p.heads) * p.seqlen_q));
  const int splits = p.splits;
  const float* lse = p.lse_parts + p.lse_layout.offset(b, 0, sq, h, 0);
  const int64_t lse_s = p.lse_layout.s;
  // Launched as the decode kernel's programmatic dependent (launch/merge_splits.cu,
  // kernel/grid_dependency.cuh): this CTA may be resident before the decode grid has
  // finished, and computes the row's indices above meanwhile. Every thread waits for
  // that grid before any global load or store (the partials are its output), and before
  // the early return below: the merge grid then completes only after the decode grid,
  // so work after the merge on the stream (which may reuse the partials' memory) is
  // ordered after both.
  wait_for_primary_grid();
  if (row >= p.rows()) return;  // the whole warp: the shuffles below need all lanes
  // Lane l's split c + l's lse (-inf past the last split: adds nothing to the max).
  const auto lane_lse = [&](int c) { return c + lane < splits ? lse[(c + lane) * lse_s] : -INFINITY; };

  const __half* o = static_cast<const __half*>(p.o_parts) + p.o_layout.offset(b, 0, sq, h, 0);
  const int64_t o_s = p.o_layout.s;  // the d stride is 1 (MergeParams::partials_load_whole)
  constexpr int kSplitsPerStep = kMergeBytesInFlight / (2 * kElems) < 32 ? kMergeBytesInFlight / (2 * kElems) : 32;
  static_assert(32 % kSplitsPerStep == 0, "steps must not straddle a chunk of 32 splits");
  using Halves = MergeHalves<kElems>;
  using Step = Halves[kSplitsPerStep];
  // Loads the partials of splits s0 .. s0 + kSplitsPerStep - 1 below s_end at head-dim
  // elements d0 + kElems lane .. + kElems - 1 when `active` (and below head_dim); 0
  // elsewhere. One access per split: the launch requires a contiguous head dim, split and
  // row strides that keep every lane's kElems elements aligned (MergeParams::partials_load_whole).
  const int head_dim = p.head_dim;
  const auto load_step = [&](Step& part, int s0, int s_end, int d0, bool active) {
    const int d = d0 + kElems * lane;  // the lane's first element
    const __half* os = o + int64_t(s0) * o_s + d;  // split s0's element d
#pragma unroll
    for (int u = 0; u < kSplitsPerStep; ++u, os += o_s) {
      part[u] = active && d < head_dim && s0 + u < s_end ? *reinterpret_cast<const Halves*>(os) : Halves{};
    }
  };
  const float lse0 = lane_lse(0);  // kept: the weights of the first chunk need it again
  // The first step's partials are loaded with the LSEs, before the row is known (in
  // bounds; unused when the row is empty or undefined): one L2 round trip less.
  Step first_step;
  load_step(first_step, 0, min(splits, 32), 0, true);

  // The max and the NaN flag, chunks of 32 splits in order.
  float max_lse = -INFINITY;
  bool any_nan = false;
  for (int c = 0; c < splits; c += 32) {
    const float l = c == 0 ? lse0 : lane_lse(c);
    any_nan |= __any_sync(kMergeFullMask, merge_is_nan(l)) != 0;
    // A NaN is skipped by the serial merge_max too (flagged by any_nan instead).
    max_lse = merge_max(max_lse, warp_merge_max(merge_is_nan(l) ? -INFINITY : l, lane));
  }
  const bool has_sink = p.sinks != nullptr;
  const float sink = has_sink ? p.sinks[h] : 0.f;
  MergeRow<float> r = merge_row_shift<float>(max_lse, any_nan, has_sink, sink);
  const bool merges = !r.empty && r.defined;  // else out is 0 / NaN whatever the partials

  const float v_descale = p.v_descale == nullptr ? 1.f
      : p.v_descale[p.v_descale_per_head ? b * p.heads_kv + h / (p.heads / p.heads_kv) : 0];
  const float out_scale = p.out_scale == nullptr ? 1.f : p.out_scale[0];
  const bool fp8 = p.out_type == MergeOutType::kFloat8E4M3;
  int d0 = 0;
  do {  // passes over the head dim; the first also sums the weights (denom)
    const bool first_pass = d0 == 0;
    bool adds[kElems];
    float sum[kElems];
#pragma unroll
    for (int e = 0; e < kElems; ++e) {
      adds[e] = merges && d0 + kElems * lane + e < p.head_dim;
      sum[e] = 0.f;
    }
    float denom = 0.f;
    for (int c = 0; c < splits; c += 32) {
      const float w = r.weight(c == 0 ? lse0 : lane_lse(c));  // split c + lane's, once
      const int n = min(32, splits - c);
      // Steps of kSplitsPerStep splits: all their loads first, then the adds in split
      // order (the compiler, left to unroll a plain loop, issued 2 of 32 loads before
      // the first add at D = 64). kSplitsPerStep divides 32: shuffle lanes stay < 32.
      for (int j0 = 0; j0 < n; j0 += kSplitsPerStep) {
        Step part;
        if (first_pass && c == 0 && j0 == 0) {
#pragma unroll
          for (int u = 0; u < kSplitsPerStep; ++u) part[u] = first_step[u];
        } else {
          load_step(part, c + j0, c + n, d0, merges);
        }
#pragma unroll
        for (int u = 0; u < kSplitsPerStep; ++u) {
          const float w_s = __shfl_sync(kMergeFullMask, w, j0 + u);
          if (j0 + u < n) {  // past the last split: nothing added (not even +0: -0 stays -0)
            if (first_pass) denom += w_s;
#pragma unroll
            for (int e = 0; e < kElems; ++e) {
              if (adds[e]) sum[e] += w_s * part[u].at(e);
            }
          }
        }
      }
    }
    if (first_pass) merge_row_finish(r, denom, has_sink, sink);
#pragma unroll
    for (int e = 0; e < kElems; ++e) {
      const int d = d0 + kElems * lane + e;
      if (d < p.head_dim) store_merged(p, row * p.head_dim + d, r.out(sum[e], v_descale, out_scale, fp8));
    }
    d0 += 32 * kElems;
  } while (d0 < p.head_dim);
  if (lane == 0) {
    p.lse_out[b * p.lse_out_stride[0] + sq * p.lse_out_stride[1] + h * p.lse_out_stride[2]] = r.lse;
  }
}

}  // namespace kernel
}  // namespace torch_fmha
