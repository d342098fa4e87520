// torch_fmha: the two FP8 quantization kernels (up to three tensors, q, k and
// v, per launch; the host side is csrc/launch/quantize.cu).
//
//   quantize_amax_kernel: block (tensor, group, chunk) takes the amax over the
//     finite |x| of its piece of the group and writes it to partial_amax.
//   quantize_cast_kernel: the same blocks; each reduces its group's `chunks`
//     partials (a few hundred floats at most, from L2), derives the descale
//     with the shared rule, and writes its piece as FP8; chunk 0 writes the
//     descale.
// Two kernels instead of one with a grid-wide barrier: no scratch that must be
// zeroed (a memset would be a third launch), no cross-call state, and the
// result does not depend on block scheduling (max is exact in any order).
// The scalar rules live in csrc/quantize.h, shared with the CPU op.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../quantize.h"

namespace torch_fmha {
namespace kernel {

constexpr int kQuantizeThreads = 256;
constexpr int kQuantizeWarps = kQuantizeThreads / 32;

// The value a quantizer computes with: float32, float64 for float64 inputs.
__device__ __forceinline__ float compute_value(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float compute_value(__half x) { return __half2float(x); }
__device__ __forceinline__ float compute_value(float x) { return x; }
__device__ __forceinline__ double compute_value(double x) { return x; }

struct BlockWork {
  int tensor = 0;
  int64_t group = 0;
  int32_t chunk = 0;
};

__device__ __forceinline__ BlockWork block_work(const QuantizeParams& p) {
  BlockWork w;
  const int64_t block = blockIdx.x;
  while (w.tensor + 1 < p.num_tensors && block >= p.tensors[w.tensor + 1].first_block) ++w.tensor;
  const QuantizeTensor& t = p.tensors[w.tensor];
  const int64_t local = block - t.first_block;
  w.group = local / t.chunks;
  w.chunk = static_cast<int32_t>(local - w.group * t.chunks);
  return w;
}

// Max over the block; every thread gets the result.
__device__ __forceinline__ float block_max(float v) {
  __shared__ float warp_max[kQuantizeWarps];
  for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) warp_max[warp] = v;
  __syncthreads();
  float m = warp_max[0];
  for (int i = 1; i < kQuantizeWarps; ++i) m = fmaxf(m, warp_max[i]);
  return m;
}

// The (row, head) segments [begin, end) of group extent e: one warp per
// segment, lanes along the head dim: visit(offset in x, offset in x_fp8).
template <typename Visit>
__device__ __forceinline__ void for_each_element(const QuantizeTensor& t, const GroupExtent& e,
                                                 int64_t begin, int64_t end, Visit&& visit) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t s = begin + warp; s < end; s += kQuantizeWarps) {
    const int64_t row = e.row_begin + s / e.heads;
    const int32_t head = e.head_begin + static_cast<int32_t>(s % e.heads);
    const int64_t base = element_offset(t, row, head, 0);
    const int64_t out_base = (row * t.heads + head) * t.head_dim;
    for (int32_t d = lane; d < t.head_dim; d += 32) visit(base + d * t.stride_dim, out_base + d);
  }
}

template <typename T>
__device__ float piece_amax(const QuantizeTensor& t, const GroupExtent& e, int64_t begin,
                            int64_t end) {
  const T* x = static_cast<const T*>(t.x);
  float m = 0.0f;
  for_each_element(t, e, begin, end,
                   [&](int64_t in, int64_t) { m = fmaxf(m, finite_abs(compute_value(x[in]))); });
  return m;
}

template <typename T>
__device__ void piece_cast(const QuantizeTensor& t, const GroupExtent& e, int64_t begin,
                           int64_t end, float scale) {
  const T* x = static_cast<const T*>(t.x);
  for_each_element(t, e, begin, end, [&](int64_t in, int64_t out) {
    t.x_fp8[out] = quantize_value(compute_value(x[in]), scale);
  });
}

__global__ void __launch_bounds__(kQuantizeThreads)
    quantize_amax_kernel(const __grid_constant__ QuantizeParams p) {
  const BlockWork w = block_work(p);
  const QuantizeTensor& t = p.tensors[w.tensor];
  const GroupExtent e = group_extent(t, w.group);
  int64_t begin, end;
  chunk_range(e.segments(), w.chunk, t.chunks, begin, end);
  float m = 0.0f;
  switch (t.in_type) {
    case QuantInType::kBFloat16: m = piece_amax<__nv_bfloat16>(t, e, begin, end); break;
    case QuantInType::kFloat16: m = piece_amax<__half>(t, e, begin, end); break;
    case QuantInType::kFloat32: m = piece_amax<float>(t, e, begin, end); break;
    case QuantInType::kFloat64: m = piece_amax<double>(t, e, begin, end); break;
  }
  m = block_max(m);
  if (threadIdx.x == 0) t.partial_amax[w.group * t.chunks + w.chunk] = m;
}

__global__ void __launch_bounds__(kQuantizeThreads)
    quantize_cast_kernel(const __grid_constant__ QuantizeParams p) {
  const BlockWork w = block_work(p);
  const QuantizeTensor& t = p.tensors[w.tensor];
  float m = 0.0f;
  for (int c = threadIdx.x; c < t.chunks; c += kQuantizeThreads) {
    m = fmaxf(m, t.partial_amax[w.group * t.chunks + c]);
  }
  const float scale = descale_from_amax(block_max(m));
  if (w.chunk == 0 && threadIdx.x == 0) t.descale[w.group] = scale * t.descale_factor;
  const GroupExtent e = group_extent(t, w.group);
  int64_t begin, end;
  chunk_range(e.segments(), w.chunk, t.chunks, begin, end);
  switch (t.in_type) {
    case QuantInType::kBFloat16: piece_cast<__nv_bfloat16>(t, e, begin, end, scale); break;
    case QuantInType::kFloat16: piece_cast<__half>(t, e, begin, end, scale); break;
    case QuantInType::kFloat32: piece_cast<float>(t, e, begin, end, scale); break;
    case QuantInType::kFloat64: piece_cast<double>(t, e, begin, end, scale); break;
  }
  if (w.group != 0) return;
  // Packed per-head: the rows outside every sequence (none for valid
  // cu_seqlens) become FP8 zeros, shared out over group 0's chunks.
  const UncoveredRows u = uncovered_rows(t);
  if (u.count() == 0) return;
  int64_t ub, ue;
  chunk_range(u.count() * t.heads, w.chunk, t.chunks, ub, ue);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t s = ub + warp; s < ue; s += kQuantizeWarps) {
    const int64_t out_base = (u.row(s / t.heads) * t.heads + s % t.heads) * t.head_dim;
    for (int32_t d = lane; d < t.head_dim; d += 32) t.x_fp8[out_base + d] = 0;
  }
}

}  // namespace kernel
}  // namespace torch_fmha
