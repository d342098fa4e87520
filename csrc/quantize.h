// torch_fmha: FP8 (float8_e4m3fn) quantization, the part the CPU op and the
// CUDA kernels share: what the host fills (QuantizeParams) and the scalar
// rules (amax -> descale, value -> FP8 byte, which rows and heads a scale
// group covers).
//
// No torch here: csrc/kernel/quantize.cuh includes it under nvcc, and
// csrc/ops/quantize_cpu.cpp runs the same functions on the host, so the two
// backends compute every byte the same way (tests/gpu/test_quantize_sm90.py
// compares them bitwise). The rules are those of torch_fmha/quantize.py
// before the op existed (float32 IEEE division, round to nearest even,
// saturation at 448); tests/test_quantize_op.py checks them against torch's
// own tensor ops.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "host_device.h"
#include "vt_key_order.h"

namespace torch_fmha {

// Input element types of the quantizer (the op converts at::ScalarType).
enum class QuantInType : int32_t { kBFloat16 = 0, kFloat16 = 1, kFloat32 = 2, kFloat64 = 3 };

// One tensor to quantize. It is read as rows x heads x head_dim: a dense
// [B, S, H, D] tensor has B * S rows (row r is (r / seqlen, r % seqlen)), a
// packed [T, H, D] one has T rows (batch 1, seqlen T). A scale group is a
// (sequence, heads-of-a-group) block of it:
//   per-tensor:          one group, every row and head;
//   per-head, dense:     (b, g) for b < B, g < H / group_heads: the S rows of
//                        batch b, heads g * group_heads .. + group_heads;
//   per-head, packed:    the same with the rows cu_seqlens[b] .. cu_seqlens[b+1].
// Each group is split into `chunks` pieces of its (row, head) segments, one
// thread block per piece in both kernels.
//
// x_fp8 is contiguous in x's shape, or, with packed_v (dense only: v for the
// SM90 kernel, which then loads V^T by TMA), a "packed v" (csrc/vt_key_order.h):
// [B, heads, head_dim, G, 16], G = ceil(seqlen / 16), contiguous, key s of
// (b, head, dim d) in row packed_v_column_of_row(d) at packed_vt_position(s) along the
// G * 16 keys (each 16-key group in the order the P V wgmma takes P), the slots of
// keys >= seqlen zero.
struct QuantizeTensor {
  const void* x = nullptr;
  uint8_t* x_fp8 = nullptr;   // see above
  float* descale = nullptr;   // [1] or [sequences, heads / group_heads], contiguous
  float* partial_amax = nullptr;  // device scratch [groups * chunks] (CUDA only)
  int64_t stride_batch = 0, stride_row = 0, stride_head = 0, stride_dim = 0;  // x, elements
  int64_t batch = 1;          // dense: B; packed: 1
  int64_t seqlen = 0;         // dense: S; packed: T (rows per batch entry)
  int32_t heads = 0;
  int32_t head_dim = 0;
  bool per_tensor = true;     // one group (the fields below are then 1, heads, 1)
  int32_t group_heads = 0;    // heads per scale group
  int32_t groups_per_sequence = 1;  // heads / group_heads
  int32_t sequences = 1;      // per-head: B (dense) or cu_seqlens.size(0) - 1
  const int32_t* cu_seqlens = nullptr;  // per-head packed only
  int32_t chunks = 1;
  int64_t first_block = 0;    // this tensor's first block in the grid
  float descale_factor = 1.0f;  // the returned descale is descale * this (1 / sqrt(D) after a rotation)
  bool vectorized = false;    // 16-byte loads: stride_dim 1, x, its strides and head_dim aligned to them
  bool packed_v = false;      // x_fp8 is a packed v [B, heads, head_dim, G, 16] (dense only)
  int64_t packed_keys = 0;    // packed_v: G * 16, seqlen rounded up to a whole 16-key group
  QuantInType in_type = QuantInType::kBFloat16;

  TORCH_FMHA_HOST_DEVICE int64_t rows() const { return batch * seqlen; }
  TORCH_FMHA_HOST_DEVICE int64_t groups() const {
    return static_cast<int64_t>(sequences) * groups_per_sequence;
  }
};

constexpr int kMaxQuantizeTensors = 3;  // q, k, v in one launch

// A packed v's keys per (b, head, d): whole 16-key groups (the permutation's
// unit; 16 FP8 bytes is also TMA's rule for every stride but the innermost).
TORCH_FMHA_HOST_DEVICE int64_t packed_v_keys(int64_t seqlen) {
  return (seqlen + kVtKeyGroup - 1) / kVtKeyGroup * kVtKeyGroup;
}

struct QuantizeParams {
  QuantizeTensor tensors[kMaxQuantizeTensors];
  int32_t num_tensors = 0;
  int64_t num_blocks = 0;  // sum of groups * chunks
};

// ---- block planning (host): the CUDA op (csrc/ops/quantize_cuda.cpp), its launch
// (csrc/launch/quantize.cu) and the host check of a whole launch
// (tests/host_checks/check_quantize_qkv_launch.cpp) share these.

// Blocks per scale group for a group of about `group_elements` elements: ~16K
// elements per block, so one block per (batch, head) group at the serving shapes
// (S = 128, D = 128), which then take one launch (quantize_group_kernel), and enough
// blocks to fill the GPU at long sequences. At most 1024 chunks, so the cast kernel's
// reduction of a group's partials stays at 4 loads per thread.
inline int32_t quantize_chunks(int64_t group_elements) {
  constexpr int64_t kElementsPerBlock = 16384;
  constexpr int64_t kMaxChunks = 1024;
  const int64_t chunks = (group_elements + kElementsPerBlock - 1) / kElementsPerBlock;
  return static_cast<int32_t>(chunks < 1 ? 1 : (chunks > kMaxChunks ? kMaxChunks : chunks));
}

// Sets every tensor's chunks and first_block and p.num_blocks; returns the floats of
// partial-amax scratch the two-launch path needs (sum of groups * chunks).
inline int64_t plan_quantize_blocks(QuantizeParams& p) {
  int64_t scratch = 0;
  for (int32_t i = 0; i < p.num_tensors; ++i) {
    QuantizeTensor& t = p.tensors[i];
    const int64_t groups = t.groups();
    const int64_t elements = t.rows() * t.heads * t.head_dim;
    t.chunks = quantize_chunks(groups > 0 ? elements / groups : 0);
    t.first_block = p.num_blocks;
    p.num_blocks += groups * t.chunks;
    scratch += groups * t.chunks;
  }
  return scratch;
}

// True when every group is one block (all chunks == 1): then one kernel does amax and
// cast and partial_amax is not used; otherwise two kernels.
inline bool quantize_in_one_launch(const QuantizeParams& p) {
  for (int32_t i = 0; i < p.num_tensors; ++i) {
    if (p.tensors[i].chunks != 1) return false;
  }
  return true;
}

// The two-launch path: each tensor's partial_amax, groups() * chunks floats of `scratch`.
inline void assign_partial_amax(QuantizeParams& p, float* scratch) {
  for (int32_t i = 0; i < p.num_tensors; ++i) {
    p.tensors[i].partial_amax = scratch;
    scratch += p.tensors[i].groups() * p.tensors[i].chunks;
  }
}

// The rows and heads of one scale group. Packed rows come from cu_seqlens,
// clamped into [0, rows()] and to a non-negative length, so any contents are
// read in bounds (the CPU op checks the values first; the CUDA op cannot
// without a host sync, see the op's docs).
struct GroupExtent {
  int64_t row_begin = 0;
  int64_t rows = 0;
  int32_t head_begin = 0;
  int32_t heads = 0;
  TORCH_FMHA_HOST_DEVICE int64_t segments() const { return rows * heads; }  // (row, head) pairs
};

TORCH_FMHA_HOST_DEVICE int64_t clamp_row(int64_t r, int64_t lo, int64_t hi) {
  return r < lo ? lo : (r > hi ? hi : r);
}

TORCH_FMHA_HOST_DEVICE GroupExtent group_extent(const QuantizeTensor& t, int64_t group) {
  GroupExtent e;
  const int64_t seq = group / t.groups_per_sequence;
  e.head_begin = static_cast<int32_t>(group % t.groups_per_sequence) * t.group_heads;
  e.heads = t.group_heads;
  if (t.per_tensor) {
    e.rows = t.rows();
  } else if (t.cu_seqlens != nullptr) {
    const int64_t begin = clamp_row(t.cu_seqlens[seq], 0, t.rows());
    e.row_begin = begin;
    e.rows = clamp_row(t.cu_seqlens[seq + 1], begin, t.rows()) - begin;
  } else {  // per-head dense: batch entry `seq`
    e.row_begin = seq * t.seqlen;
    e.rows = t.seqlen;
  }
  return e;
}

// Packed per-head only: the rows no sequence covers, [0, cu_seqlens[0]) and
// [cu_seqlens[B], rows) (clamped as above). Valid cu_seqlens leave none; any
// others get FP8 zeros there, so no output byte is left unwritten.
struct UncoveredRows {
  int64_t lead = 0;        // rows 0 .. lead
  int64_t tail_begin = 0;  // rows tail_begin .. total
  int64_t total = 0;
  TORCH_FMHA_HOST_DEVICE int64_t count() const { return lead + (total - tail_begin); }
  TORCH_FMHA_HOST_DEVICE int64_t row(int64_t i) const { return i < lead ? i : tail_begin + (i - lead); }
};

TORCH_FMHA_HOST_DEVICE UncoveredRows uncovered_rows(const QuantizeTensor& t) {
  UncoveredRows u;
  u.total = t.rows();
  if (t.per_tensor || t.cu_seqlens == nullptr) {
    u.tail_begin = u.total;
    return u;
  }
  u.lead = clamp_row(t.cu_seqlens[0], 0, u.total);
  u.tail_begin = clamp_row(t.cu_seqlens[t.sequences], u.lead, u.total);
  return u;
}

// Segments [begin, end) of `chunk` out of `chunks` equal pieces of n segments.
TORCH_FMHA_HOST_DEVICE void chunk_range(int64_t n, int32_t chunk, int32_t chunks, int64_t& begin,
                                        int64_t& end) {
  begin = n * chunk / chunks;
  end = n * (chunk + 1) / chunks;
}

// Element offset of (row, head, d) in x; x_fp8 is contiguous: (row * heads + head) * head_dim + d.
TORCH_FMHA_HOST_DEVICE int64_t element_offset(const QuantizeTensor& t, int64_t row, int64_t head,
                                              int64_t d) {
  const int64_t b = row / t.seqlen, s = row - b * t.seqlen;
  return b * t.stride_batch + s * t.stride_row + head * t.stride_head + d * t.stride_dim;
}

// A thread's position in for_each_vector's strided walk over the (row, head) segments
// of a group extent (csrc/kernel/quantize.cuh, for_each_vector with
// TORCH_FMHA_TUNE_QUANTIZE_LOADS > 0, 4 by default since session 27): segment s of e is
// row e.row_begin + s / e.heads, head e.head_begin + s % e.heads, and
// row = batch * seqlen + in_row. The divisions run once,
// at the start; advance() then steps a fixed number of segments by carries, so the walk's
// loop has no 64-bit division (the strided loop has three per 16-byte vector).
// tests/host_checks/check_quantize_walk.cpp checks it against the divisions.
struct SegmentCursor {
  int64_t row = 0;       // absolute row of x (batch * seqlen + in_row)
  int64_t batch = 0;
  int64_t in_row = 0;
  int32_t head = 0;      // absolute head
  int32_t head_local = 0;  // head - e.head_begin, < e.heads

  // Needs t.seqlen > 0 and e.heads > 0 (a walk over at least one segment).
  TORCH_FMHA_HOST_DEVICE SegmentCursor(const QuantizeTensor& t, const GroupExtent& e, int64_t s) {
    const int64_t r = s / e.heads;
    head_local = static_cast<int32_t>(s - r * e.heads);
    head = e.head_begin + head_local;
    row = e.row_begin + r;
    batch = row / t.seqlen;
    in_row = row - batch * t.seqlen;
  }
  // Steps rows_step * e.heads + heads_step segments (heads_step < e.heads).
  TORCH_FMHA_HOST_DEVICE void advance(const QuantizeTensor& t, const GroupExtent& e, int64_t rows_step,
                                      int32_t heads_step) {
    head_local += heads_step;
    int64_t dr = rows_step;
    if (head_local >= e.heads) {
      head_local -= e.heads;
      ++dr;
    }
    head = e.head_begin + head_local;
    row += dr;
    in_row += dr;
    while (in_row >= t.seqlen) {  // more than once only when a step spans several sequences
      in_row -= t.seqlen;
      ++batch;
    }
  }
  // x's element offset of head-dim element d here (element_offset without its division).
  TORCH_FMHA_HOST_DEVICE int64_t x_offset(const QuantizeTensor& t, int64_t d) const {
    return batch * t.stride_batch + in_row * t.stride_row + head * t.stride_head + d * t.stride_dim;
  }
  TORCH_FMHA_HOST_DEVICE int64_t out_offset(const QuantizeTensor& t, int64_t d) const {
    return (row * t.heads + head) * t.head_dim + d;
  }
};

// packed_v: offset of (batch b, head, row 0, position 0) in x_fp8; key s of
// dim d is at + packed_v_column_of_row(d) * packed_keys + packed_vt_position(s).
TORCH_FMHA_HOST_DEVICE int64_t packed_v_offset(const QuantizeTensor& t, int64_t b, int64_t head) {
  return (b * t.heads + head) * t.head_dim * t.packed_keys;
}

// ------------------------------------------------------------- scalar rules ---

constexpr float kFp8Max = 448.0f;  // largest finite float8_e4m3fn

// Finite tests on the bits (the same code on host and device, no libm).
TORCH_FMHA_HOST_DEVICE bool is_finite(float x) {
  uint32_t b;
  memcpy(&b, &x, sizeof(b));
  return (b & 0x7f800000u) != 0x7f800000u;
}
TORCH_FMHA_HOST_DEVICE bool is_finite(double x) {
  uint64_t b;
  memcpy(&b, &x, sizeof(b));
  return (b & 0x7ff0000000000000ull) != 0x7ff0000000000000ull;
}

// |x| as float32 for the amax, 0 for NaN and +-Inf (they do not set a scale).
// A float64 beyond float32's range becomes +inf here, as torch's .float() of
// the float64 amax did: that group's descale is then inf (and its values 0).
TORCH_FMHA_HOST_DEVICE float finite_abs(float x) { return is_finite(x) ? fabsf(x) : 0.0f; }
TORCH_FMHA_HOST_DEVICE float finite_abs(double x) {
  return is_finite(x) ? static_cast<float>(fabs(x)) : 0.0f;
}

// descale = max(amax, smallest normal float32) / 448 (IEEE division): a group
// with no finite non-zero value keeps a finite, positive descale.
TORCH_FMHA_HOST_DEVICE float descale_from_amax(float amax) {
  const float tiny = 1.17549435e-38f;  // FLT_MIN
  return (amax > tiny ? amax : tiny) / kFp8Max;
}

// c ? a : b on bits, as masks: GCC's vectorizer rejects some selects on
// unsigned compares, and these loops must vectorize on the CPU.
TORCH_FMHA_HOST_DEVICE uint32_t select_bits(bool c, uint32_t a, uint32_t b) {
  return b ^ ((a ^ b) & (0u - static_cast<uint32_t>(c)));
}

// float32 -> float8_e4m3fn bits, round to nearest even, finite values beyond
// 448 saturate to +-448, NaN and +-Inf -> 0x7f (positive NaN: e4m3fn has no
// infinity, and saturating an Inf would hide an overflow upstream).
// Branch-free integer selects (the CPU loops vectorize; on the GPU it is a
// handful of ALU instructions either way).
TORCH_FMHA_HOST_DEVICE uint8_t fp8_e4m3fn_bits(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof(bits));
  const uint32_t sign = (bits >> 24) & 0x80u;
  const uint32_t abs_bits = bits & 0x7fffffffu;
  // Normal results (|f| >= 2^-6): keep exponent and 3 mantissa bits of the
  // float32, rounded half to even at mantissa bit 20 (a carry moves into the
  // exponent, as it should), then move the exponent bias from 127 to 7.
  const uint32_t normal = ((abs_bits + 0x7ffffu + ((abs_bits >> 20) & 1u)) >> 20) - ((127u - 7u) << 3);
  // Subnormal results (|f| < 2^-6, steps of 2^-9): |f| * 2^9 is exact, adding
  // 2^23 rounds it half to even to an integer m <= 8, and the code of m * 2^-9
  // is m itself (8 is the smallest normal, 0x08).
  float scaled;
  const uint32_t abs_only = abs_bits;
  memcpy(&scaled, &abs_only, sizeof(scaled));
  scaled = scaled * 512.0f + 8388608.0f;
  uint32_t scaled_bits;
  memcpy(&scaled_bits, &scaled, sizeof(scaled_bits));
  const uint32_t subnormal = scaled_bits - 0x4b000000u;
  const uint32_t kMin = 0x3c800000u;   // 2^-6
  const uint32_t kMax = 0x43e00000u;   // 448
  const uint32_t kInf = 0x7f800000u;
  const uint32_t magnitude = select_bits(abs_bits >= kMax, 0x7eu,
                                         select_bits(abs_bits < kMin, subnormal, normal));
  return static_cast<uint8_t>(select_bits(abs_bits >= kInf, 0x7fu, magnitude | sign));
}

// One value: x / scale in float32 (float64 for float64 x, then rounded to
// float32 as torch's cast does), non-finite quotients -> NaN, to e4m3fn.
TORCH_FMHA_HOST_DEVICE uint8_t quantize_value(float x, float scale) {
  return fp8_e4m3fn_bits(x / scale);
}
TORCH_FMHA_HOST_DEVICE uint8_t quantize_value(double x, float scale) {
  const double q = x / static_cast<double>(scale);
  return is_finite(q) ? fp8_e4m3fn_bits(static_cast<float>(q)) : uint8_t{0x7f};
}

}  // namespace torch_fmha
