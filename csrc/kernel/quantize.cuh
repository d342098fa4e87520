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
// A packed v (v for the fwd kernel's V^T-by-TMA path, csrc/quantize.h) is
// cast in tiles transposed through shared memory (cast_packed_v); its amax
// pass is the same as any other tensor's.
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

// Vectors in flight per thread in for_each_vector's walk (0: the strided loop with its
// divisions). In SASS the strided loop spends about 100 instructions per 16-byte load on
// its three 64-bit divisions and has one load in flight per thread. Kernel times on one
// H200 (torch.profiler, q, k, v bf16 [4, 4096, 16, 128], tools/prof/quantize_times.py;
// session 26's strided loop -> session 27's walk of 4, same call): amax 128 -> 106 us
// per tensor, 150 -> 134 us per head; cast 335 -> 307 us (per tensor), 385 -> 369 us
// (packed v), 386 -> 368 / 438 -> 428 us per head; the whole quantize_qkv call 467 -> 417,
// 516 -> 479, 536 -> 503, 587 -> 563 us. A 67 MB clone takes 36 us (3.7 TB/s): what is
// left is the cast kernel's one block per SM (110 registers; asking for two spills) and
// short blocks (docs/DESIGN.md section 6).
#ifndef TORCH_FMHA_TUNE_QUANTIZE_LOADS
#define TORCH_FMHA_TUNE_QUANTIZE_LOADS 4
#endif
constexpr int kQuantizeLoads = TORCH_FMHA_TUNE_QUANTIZE_LOADS;

// The cast kernel's scale from its group's partial maxes, each warp on its own (shuffles, no
// block barrier) and between the walk's first loads and its first visit (for_each_vector's
// `ready`), so the partials' L2 round trip overlaps the data's instead of preceding it. Without
// it every block reads its group's partials (up to 1024), reduces them across the block with a
// __syncthreads, and only then issues its first data load, for 4-8 vectors per thread at
// q, k, v [4, 4096, 16, 128] (per-head / per-tensor). Each warp reading all partials costs up
// to 64 KB of L2 reads per block instead of 4 KB. Rows of a standard layout only (the packed-v
// cast keeps its block barriers). The same scale: a max of finite non-negative partials does
// not depend on the order. Measured in session 28 (one H200): cast +1.7% per-tensor, -2%
// per-head (docs/DESIGN.md section 1, the quantizer): a wash, so a tuning knob, off.
#ifndef TORCH_FMHA_TUNE_QUANTIZE_SCALE_OVERLAP
#define TORCH_FMHA_TUNE_QUANTIZE_SCALE_OVERLAP 0
#endif
constexpr bool kQuantizeScaleOverlap = TORCH_FMHA_TUNE_QUANTIZE_SCALE_OVERLAP != 0;

// for_each_vector's default `ready`: nothing to do before the first visit.
struct NothingBeforeVisits {
  __host__ __device__ void operator()() const {}
};

// The (row, head) segments [begin, end) of group extent e, kVec elements per
// thread and step, all threads of the block: visit(values, offset in x_fp8). Every thread
// calls ready() once, before its first visit (after the walk's first loads are issued),
// also a thread with nothing to visit: it may hold warp shuffles, never a block barrier.
// Vector i (i = threadIdx.x, + kQuantizeThreads, ...) is element (i % per_segment) kVec
// of segment begin + i / per_segment. Each vector is visited once, by the same thread in
// both forms (the walk only reorders a thread's visits: the amax is a max, the cast writes
// each byte once), so kLoads changes no result.
template <typename T, int kVec, int kLoads = kQuantizeLoads, typename Visit,
          typename Ready = NothingBeforeVisits>
__device__ __forceinline__ void for_each_vector(const QuantizeTensor& t, const GroupExtent& e,
                                                int64_t begin, int64_t end, Visit&& visit,
                                                Ready&& ready = Ready{}) {
  const T* x = static_cast<const T*>(t.x);
  const int32_t per_segment = t.head_dim / kVec;
  const int64_t items = (end - begin) * per_segment;
  if constexpr (kLoads > 0 && kVec > 1) {
    // The walk: with per_segment dividing the block, a thread keeps its element d and
    // steps kQuantizeThreads / per_segment segments (SegmentCursor), kLoads vectors'
    // loads issued before the first visit.
    if (per_segment > 0 && kQuantizeThreads % per_segment == 0) {
      if (threadIdx.x >= items) {
        ready();
        return;
      }
      const int32_t d = static_cast<int32_t>(threadIdx.x % per_segment) * kVec;
      const int32_t step = kQuantizeThreads / per_segment;  // segments
      const int64_t rows_step = step / e.heads;
      const int32_t heads_step = static_cast<int32_t>(step - rows_step * e.heads);
      SegmentCursor c(t, e, begin + threadIdx.x / per_segment);
      for (int64_t i0 = threadIdx.x; i0 < items; i0 += int64_t(kLoads) * kQuantizeThreads) {
        Values<T, kVec> v[kLoads];
        int64_t out[kLoads];
#pragma unroll
        for (int u = 0; u < kLoads; ++u) {
          if (i0 + int64_t(u) * kQuantizeThreads < items) {
            v[u] = load_values<T, kVec>(x, c.x_offset(t, d));
            out[u] = c.out_offset(t, d);
            c.advance(t, e, rows_step, heads_step);
          }
        }
        if (i0 == threadIdx.x) ready();  // the first batch's loads are in flight
#pragma unroll
        for (int u = 0; u < kLoads; ++u) {
          if (i0 + int64_t(u) * kQuantizeThreads < items) visit(v[u], out[u]);
        }
      }
      return;
    }
  }
  ready();
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

// scale: read at each visit, so a `ready` that sets it runs before (for_each_vector).
template <typename T, int kVec, typename Ready = NothingBeforeVisits>
__device__ void piece_cast(const QuantizeTensor& t, const GroupExtent& e, int64_t begin, int64_t end,
                           const float& scale, Ready&& ready = Ready{}) {
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
  }, ready);
}

// --------------------------------------------------------------- packed v cast ---
// x [B, S, H, D] -> x_fp8 [B, H, D, G, 16] (a packed v, csrc/quantize.h) in tiles
// of kTileKeys keys x tile_dims<kVec>() dims of one (batch, head): each thread loads
// and casts kVec consecutive dims of one key (rows of x read along D, as in
// piece_cast), the bytes go to shared memory as [dim][slot], each key at its
// packed slot (packed_vt_position: tiles start at multiples of 64, so a tile's
// keys stay in its 64 slots), and each thread then stores 4 consecutive slots
// of one dim (kTileKeys = 64 contiguous bytes per dim: whole 32-byte sectors).
// The slots of keys in [seqlen, packed_keys) are written as zeros. The next
// tile's loads are issued before this tile's stores.
constexpr int kTileKeys = 64;
constexpr int kTileLoads = 2;  // loads per thread and tile, in flight together
// A tile is 16 * kVec dims wide, so every thread makes kTileLoads loads of
// kVec elements: 128 dims for 16-byte bf16 / fp16 vectors (D = 256 in two
// tiles), fewer for wider or scalar elements (more dims would spill).
template <int kVec>
constexpr int tile_dims() {
  return kTileLoads * kQuantizeThreads / kTileKeys * kVec;
}
constexpr int kMaxTileDims = tile_dims<8>();
static_assert(kTileKeys == 64 && kMaxTileDims == 128, "the swizzle below: 16 words per dim row, 16 groups of 8 dims");
static_assert(kTileKeys % kVtKeyGroup == 0, "a tile holds whole 16-key groups: the key order stays inside it");

// One buffer per kernel, whatever the element type of the tensor (words: the
// stores read it 4 bytes at a time).
__device__ __forceinline__ uint8_t* transpose_buffer() {
  __shared__ uint32_t buffer[kMaxTileDims * kTileKeys / 4];
  return reinterpret_cast<uint8_t*>(buffer);
}

// Byte (dim, slot) of the buffer, [dim][slot] with the 4-slot word index XORed
// by dim / 8: the 16 threads casting one key's 128 bf16 / fp16 dims (8 each)
// store into 16 different banks, and a warp's word reads (2 dim rows) hit 32.
// A warp's byte stores cover the keys 2i and 2i + 1 of the tile, whose slots
// differ in bit 0 only (the key order keeps bit 0), so they share a word: still
// no conflict (tests/host_checks/check_quantize_packed_v.cpp counts them).
__device__ __forceinline__ int buffer_offset(int dim, int slot) {
  return dim * kTileKeys + (((slot / 4) ^ (dim / 8 % 16)) * 4) + slot % 4;
}

// The buffer slot of tile key `key` (0 .. kTileKeys - 1): its packed position.
__device__ __forceinline__ int tile_slot(int key) { return static_cast<int>(packed_vt_position(key)); }

struct KeyTile {
  int64_t batch = 0;
  int32_t head = 0;
  int64_t key0 = 0;  // first key (< packed_keys, a multiple of kTileKeys)
  int32_t dim0 = 0;  // first dim (< head_dim)
};

// Tiles of group extent e (whole batch entries: dense), ordered (batch, head, key tile, dim tile).
template <int kDims>
__device__ __forceinline__ int64_t group_key_tiles(const QuantizeTensor& t, const GroupExtent& e) {
  if (t.seqlen == 0) return 0;
  const int64_t per_head = (t.packed_keys + kTileKeys - 1) / kTileKeys * ((t.head_dim + kDims - 1) / kDims);
  return e.rows / t.seqlen * e.heads * per_head;
}

template <int kDims>
__device__ __forceinline__ KeyTile key_tile(const QuantizeTensor& t, const GroupExtent& e, int64_t i) {
  const int32_t dim_tiles = (t.head_dim + kDims - 1) / kDims;
  const int64_t key_tiles = (t.packed_keys + kTileKeys - 1) / kTileKeys;
  KeyTile k;
  k.dim0 = static_cast<int32_t>(i % dim_tiles) * kDims;
  i /= dim_tiles;
  k.key0 = i % key_tiles * kTileKeys;
  i /= key_tiles;
  k.head = e.head_begin + static_cast<int32_t>(i % e.heads);
  k.batch = e.row_begin / t.seqlen + i / e.heads;
  return k;
}

// This thread's vectors of a tile: vector j is dims dim(j) .. + kVec of key key(j).
template <typename T, int kVec>
struct TileValues {
  static constexpr int kDims = tile_dims<kVec>();
  static constexpr int kRowVectors = kDims / kVec;  // threads per key
  Values<T, kVec> v[kTileLoads];
  __device__ static int key(int j) { return (threadIdx.x + j * kQuantizeThreads) / kRowVectors; }
  __device__ static int dim(int j) { return (threadIdx.x + j * kQuantizeThreads) % kRowVectors * kVec; }
};

// A vector past seqlen or head_dim is not loaded (kVec divides head_dim when kVec > 1).
template <typename T, int kVec>
__device__ __forceinline__ void load_tile(const QuantizeTensor& t, const KeyTile& k, TileValues<T, kVec>& out) {
  using TV = TileValues<T, kVec>;
  const T* x = static_cast<const T*>(t.x);
#pragma unroll
  for (int j = 0; j < kTileLoads; ++j) {
    const int64_t key = k.key0 + TV::key(j);
    const int32_t d = k.dim0 + TV::dim(j);
    if (key < t.seqlen && d < t.head_dim) {
      out.v[j] = load_values<T, kVec>(x, k.batch * t.stride_batch + key * t.stride_row +
                                             k.head * t.stride_head + d * t.stride_dim);
    }
  }
}

// Casts the loaded vectors into the buffer, each key at its slot (padding keys: 0).
template <typename T, int kVec>
__device__ __forceinline__ void cast_tile_to_buffer(const QuantizeTensor& t, const KeyTile& k,
                                                    const TileValues<T, kVec>& in, float scale, uint8_t* buffer) {
  using TV = TileValues<T, kVec>;
#pragma unroll
  for (int j = 0; j < kTileLoads; ++j) {
    const bool real = k.key0 + TV::key(j) < t.seqlen;
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      buffer[buffer_offset(TV::dim(j) + e, tile_slot(TV::key(j)))] =
          real ? quantize_value(compute_value(in.v[j].v[e]), scale) : uint8_t{0};
    }
  }
}

// The buffer already holds the packed key order: slot i goes to position key0 + i; dim
// row d to packed row packed_v_column_of_row(d).
// packed_keys and key0 are multiples of 16: a word is wholly in or out.
template <int kDims>
__device__ __forceinline__ void store_tile(const QuantizeTensor& t, const KeyTile& k, const uint8_t* buffer) {
  constexpr int kWords = kDims * kTileKeys / 4;  // 256 (scalar loads) .. 2048 (16-byte bf16 loads)
  uint8_t* out = t.x_fp8 + packed_v_offset(t, k.batch, k.head);
#pragma unroll
  for (int j = 0; j < (kWords + kQuantizeThreads - 1) / kQuantizeThreads; ++j) {
    const int w = threadIdx.x + j * kQuantizeThreads;
    const int dim = w / (kTileKeys / 4);
    const int slot = w % (kTileKeys / 4) * 4;
    if (w < kWords && k.dim0 + dim < t.head_dim && k.key0 + slot < t.packed_keys) {
      // Dim d goes to the packed row that holds it (vt_key_order.h; its own inverse).
      const int64_t row = packed_v_column_of_row(k.dim0 + dim, t.head_dim);
      *reinterpret_cast<uint32_t*>(out + row * t.packed_keys + k.key0 + slot) =
          *reinterpret_cast<const uint32_t*>(buffer + buffer_offset(dim, slot));
    }
  }
}

// Tile numbers [begin, end) of chunk `chunk` of the group (all its tiles in one chunk).
template <int kDims>
__device__ __forceinline__ void chunk_key_tiles(const QuantizeTensor& t, const GroupExtent& e, int32_t chunk,
                                                int64_t& begin, int64_t& end) {
  chunk_range(group_key_tiles<kDims>(t, e), chunk, t.chunks, begin, end);
}

// This block's tiles of group extent e (its chunk), every thread of the block.
template <typename T, int kVec>
__device__ void cast_packed_v(const QuantizeTensor& t, const GroupExtent& e, int32_t chunk, float scale) {
  constexpr int kDims = TileValues<T, kVec>::kDims;
  int64_t begin, end;
  chunk_key_tiles<kDims>(t, e, chunk, begin, end);
  uint8_t* buffer = transpose_buffer();
  TileValues<T, kVec> values;
  if (begin < end) load_tile(t, key_tile<kDims>(t, e, begin), values);
  for (int64_t i = begin; i < end; ++i) {
    const KeyTile k = key_tile<kDims>(t, e, i);
    __syncthreads();  // the previous tile's stores have read the buffer
    cast_tile_to_buffer(t, k, values, scale, buffer);
    __syncthreads();
    if (i + 1 < end) load_tile(t, key_tile<kDims>(t, e, i + 1), values);  // in flight during the stores
    store_tile<kDims>(t, k, buffer);
  }
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

__device__ __forceinline__ void zero_uncovered_rows(const QuantizeTensor& t, const BlockWork& w);

// Writes the descale (chunk 0), casts the piece, and, packed per-head, zeroes
// this chunk's share of the rows outside every sequence (none for valid
// cu_seqlens), so no output byte is left unwritten.
__device__ __forceinline__ void finish_piece(const QuantizeTensor& t, const BlockWork& w, const GroupExtent& e,
                                             int64_t begin, int64_t end, float scale) {
  if (w.chunk == 0 && threadIdx.x == 0) t.descale[w.group] = scale * t.descale_factor;
  if (t.packed_v) {  // dense: no uncovered rows
    with_layout(t, [&](auto layout) {
      using L = decltype(layout);
      cast_packed_v<typename L::Element, L::kWidth>(t, e, w.chunk, scale);
    });
    return;
  }
  with_layout(t, [&](auto layout) {
    using L = decltype(layout);
    piece_cast<typename L::Element, L::kWidth>(t, e, begin, end, scale);
  });
  zero_uncovered_rows(t, w);
}

// Packed per-head (group 0 of a tensor): this chunk's share of the rows outside every sequence.
__device__ __forceinline__ void zero_uncovered_rows(const QuantizeTensor& t, const BlockWork& w) {
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

// Two blocks per SM with the walk (kQuantizeLoads > 0): ptxas then fits it in 63 registers,
// no spill (70 and one block per SM otherwise); the strided loop's build is unchanged.
__global__ void __launch_bounds__(kQuantizeThreads, kQuantizeLoads > 0 ? 2 : 1)
    quantize_amax_kernel(const __grid_constant__ QuantizeParams p) {
  const BlockWork w = block_work(p);
  const QuantizeTensor& t = p.tensors[w.tensor];
  const GroupExtent e = group_extent(t, w.group);
  int64_t begin, end;
  chunk_range(e.segments(), w.chunk, t.chunks, begin, end);
  const float m = block_max(piece_amax(t, e, begin, end));
  if (threadIdx.x == 0) t.partial_amax[w.group * t.chunks + w.chunk] = m;
}

// Max of group `group`'s partial maxes, in every lane of the calling warp (all 32 lanes).
__device__ __forceinline__ float warp_partials_max(const QuantizeTensor& t, int64_t group) {
  const float* partial = t.partial_amax + group * t.chunks;
  float m = 0.0f;
#pragma unroll 8
  for (int c = threadIdx.x % 32; c < t.chunks; c += 32) m = fmaxf(m, partial[c]);
  for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  return m;
}

__global__ void __launch_bounds__(kQuantizeThreads, 1)
    quantize_cast_kernel(const __grid_constant__ QuantizeParams p) {
  const BlockWork w = block_work(p);
  const QuantizeTensor& t = p.tensors[w.tensor];
  if (kQuantizeScaleOverlap && !t.packed_v) {  // block-uniform
    const GroupExtent e = group_extent(t, w.group);
    int64_t begin, end;
    chunk_range(e.segments(), w.chunk, t.chunks, begin, end);
    float scale = 0.0f;  // set by ready(), before this thread's first visit
    auto ready = [&] { scale = descale_from_amax(warp_partials_max(t, w.group)); };
    with_layout(t, [&](auto layout) {
      using L = decltype(layout);
      piece_cast<typename L::Element, L::kWidth>(t, e, begin, end, scale, ready);
    });
    if (w.chunk == 0 && threadIdx.x == 0) t.descale[w.group] = scale * t.descale_factor;
    zero_uncovered_rows(t, w);
    return;
  }
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
