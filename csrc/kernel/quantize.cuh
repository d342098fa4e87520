// torch_fmha: the FP8 quantization kernels (up to three tensors, q, k and v,
// per launch; the host side is csrc/launch/quantize.cu).
//
// Each block owns one piece (tensor, group, chunk) of a scale group.
//   quantize_group_kernel: every group is one piece (chunks == 1, the serving
//     shapes): the block takes the group's amax, derives the descale and
//     casts the group. One launch.
//   quantize_amax_kernel + quantize_cast_kernel (groups split over chunks,
//     long sequences): the first writes each piece's amax to partial_amax;
//     the second reduces its group's partials (at most 1024 floats, from L2),
//     derives the descale and casts its piece. Two launches instead of one
//     with a grid-wide barrier: no scratch that must be zeroed (a memset
//     would be another launch), no state across calls, and the result does
//     not depend on block scheduling (max is exact in any order).
// Chunk 0 of a group writes its descale. The scalar rules live in
// csrc/quantize.h, shared with the CPU op (both give the same bytes).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../quantize.h"

namespace torch_fmha {
namespace kernel {

// 512 threads: a serving-shape group (16K elements, one block) is four
// 16-byte loads per thread and pass (with 256 threads the one-block kernel
// took 14 us on an H100 for q, k, v of [1, 128, 8, 128]: eight round trips
// to memory per pass). 1024 threads would cap registers at 64 and spill.
constexpr int kQuantizeThreads = 512;
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
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = v;
  __syncthreads();
  float m = warp_max[0];
  for (int i = 1; i < kQuantizeWarps; ++i) m = fmaxf(m, warp_max[i]);
  return m;
}

// kVec consecutive elements of x in one load (16 bytes when kVec > 1: the host
// sets vectorized only where x, its strides and head_dim allow it).
template <typename T, int kVec>
struct Values {
  T v[kVec];
};

template <typename T, int kVec>
__device__ __forceinline__ Values<T, kVec> load_values(const T* x, int64_t offset) {
  if constexpr (kVec == 1) {
    return Values<T, kVec>{{x[offset]}};
  } else {
    static_assert(sizeof(Values<T, kVec>) == 16, "vector loads are 16 bytes");
    const uint4 raw = *reinterpret_cast<const uint4*>(x + offset);
    Values<T, kVec> out;
    memcpy(&out, &raw, sizeof(raw));
    return out;
  }
}

// The (row, head) segments [begin, end) of group extent e, kVec elements per
// thread and step, all threads of the block: visit(values, offset in x_fp8).
template <typename T, int kVec, typename Visit>
__device__ __forceinline__ void for_each_vector(const QuantizeTensor& t, const GroupExtent& e,
                                                int64_t begin, int64_t end, Visit&& visit) {
  const T* x = static_cast<const T*>(t.x);
  const int32_t per_segment = t.head_dim / kVec;
  const int64_t items = (end - begin) * per_segment;
  for (int64_t i = threadIdx.x; i < items; i += kQuantizeThreads) {
    const int64_t s = begin + i / per_segment;
    const int32_t d = static_cast<int32_t>(i % per_segment) * kVec;
    const int64_t row = e.row_begin + s / e.heads;
    const int32_t head = e.head_begin + static_cast<int32_t>(s % e.heads);
    visit(load_values<T, kVec>(x, element_offset(t, row, head, d)), (row * t.heads + head) * t.head_dim + d);
  }
}

template <typename T, int kVec>
__device__ float piece_amax(const QuantizeTensor& t, const GroupExtent& e, int64_t begin, int64_t end) {
  float m = 0.0f;
  for_each_vector<T, kVec>(t, e, begin, end, [&](const Values<T, kVec>& v, int64_t) {
#pragma unroll
    for (int j = 0; j < kVec; ++j) m = fmaxf(m, finite_abs(compute_value(v.v[j])));
  });
  return m;
}

template <typename T, int kVec>
__device__ void piece_cast(const QuantizeTensor& t, const GroupExtent& e, int64_t begin, int64_t end,
                           float scale) {
  for_each_vector<T, kVec>(t, e, begin, end, [&](const Values<T, kVec>& v, int64_t out) {
    uint8_t bytes[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) bytes[j] = quantize_value(compute_value(v.v[j]), scale);
    if constexpr (kVec == 8) {
      uint2 packed;
      memcpy(&packed, bytes, 8);
      *reinterpret_cast<uint2*>(t.x_fp8 + out) = packed;
    } else if constexpr (kVec == 4) {
      uint32_t packed;
      memcpy(&packed, bytes, 4);
      *reinterpret_cast<uint32_t*>(t.x_fp8 + out) = packed;
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j) t.x_fp8[out + j] = bytes[j];
    }
  });
}

// The element type and the vector width, as template arguments of op(tag).
template <typename T, int kVec>
struct Layout {
  using Element = T;
  static constexpr int kWidth = kVec;
};

template <typename Op>
__device__ __forceinline__ void with_layout(const QuantizeTensor& t, Op&& op) {
  switch (t.in_type) {
    case QuantInType::kBFloat16:
      return t.vectorized ? op(Layout<__nv_bfloat16, 8>{}) : op(Layout<__nv_bfloat16, 1>{});
    case QuantInType::kFloat16:
      return t.vectorized ? op(Layout<__half, 8>{}) : op(Layout<__half, 1>{});
    case QuantInType::kFloat32:
      return t.vectorized ? op(Layout<float, 4>{}) : op(Layout<float, 1>{});
    case QuantInType::kFloat64:
      return t.vectorized ? op(Layout<double, 2>{}) : op(Layout<double, 1>{});
  }
}

__device__ __forceinline__ float piece_amax(const QuantizeTensor& t, const GroupExtent& e, int64_t begin,
                                            int64_t end) {
  float m = 0.0f;
  with_layout(t, [&](auto layout) {
    using L = decltype(layout);
    m = piece_amax<typename L::Element, L::kWidth>(t, e, begin, end);
  });
  return m;
}

// Writes the descale (chunk 0), casts the piece, and, packed per-head, zeroes
// this chunk's share of the rows outside every sequence (none for valid
// cu_seqlens), so no output byte is left unwritten.
__device__ __forceinline__ void finish_piece(const QuantizeTensor& t, const BlockWork& w, const GroupExtent& e,
                                             int64_t begin, int64_t end, float scale) {
  if (w.chunk == 0 && threadIdx.x == 0) t.descale[w.group] = scale * t.descale_factor;
  with_layout(t, [&](auto layout) {
    using L = decltype(layout);
    piece_cast<typename L::Element, L::kWidth>(t, e, begin, end, scale);
  });
  if (w.group != 0) return;
  const UncoveredRows u = uncovered_rows(t);
  if (u.count() == 0) return;
  int64_t ub, ue;
  chunk_range(u.count() * t.heads * t.head_dim, w.chunk, t.chunks, ub, ue);
  for (int64_t i = ub + threadIdx.x; i < ue; i += kQuantizeThreads) {
    const int64_t per_row = static_cast<int64_t>(t.heads) * t.head_dim;
    t.x_fp8[u.row(i / per_row) * per_row + i % per_row] = 0;
  }
}

__global__ void __launch_bounds__(kQuantizeThreads, 1)
    quantize_group_kernel(const __grid_constant__ QuantizeParams p) {
  const BlockWork w = block_work(p);
  const QuantizeTensor& t = p.tensors[w.tensor];
  const GroupExtent e = group_extent(t, w.group);
  const float amax = block_max(piece_amax(t, e, 0, e.segments()));
  finish_piece(t, w, e, 0, e.segments(), descale_from_amax(amax));
}

__global__ void __launch_bounds__(kQuantizeThreads, 1)
    quantize_amax_kernel(const __grid_constant__ QuantizeParams p) {
  const BlockWork w = block_work(p);
  const QuantizeTensor& t = p.tensors[w.tensor];
  const GroupExtent e = group_extent(t, w.group);
  int64_t begin, end;
  chunk_range(e.segments(), w.chunk, t.chunks, begin, end);
  const float m = block_max(piece_amax(t, e, begin, end));
  if (threadIdx.x == 0) t.partial_amax[w.group * t.chunks + w.chunk] = m;
}

__global__ void __launch_bounds__(kQuantizeThreads, 1)
    quantize_cast_kernel(const __grid_constant__ QuantizeParams p) {
  const BlockWork w = block_work(p);
  const QuantizeTensor& t = p.tensors[w.tensor];
  float m = 0.0f;
  for (int c = threadIdx.x; c < t.chunks; c += kQuantizeThreads) {
    m = fmaxf(m, t.partial_amax[w.group * t.chunks + c]);
  }
  const float scale = descale_from_amax(block_max(m));
  const GroupExtent e = group_extent(t, w.group);
  int64_t begin, end;
  chunk_range(e.segments(), w.chunk, t.chunks, begin, end);
  finish_piece(t, w, e, begin, end, scale);
}

}  // namespace kernel
}  // namespace torch_fmha
