// torch_fmha: CPU kernels of quantize_fp8 and quantize_qkv. One pass for the
// amax and one for the cast per scale group, with the scalar rules of
// csrc/quantize.h that the CUDA kernels use too (so both give the same bytes).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>

#include "checks.h"
#include "quantize_op.h"

namespace torch_fmha {
namespace {

float compute_value(at::BFloat16 x) { return static_cast<float>(x); }
float compute_value(at::Half x) { return static_cast<float>(x); }
float compute_value(float x) { return x; }
double compute_value(double x) { return x; }

// The finite |x| as float32 bits: non-negative floats order like their bits,
// so the amax is an integer max, which the compiler vectorizes (a float max
// reduction it would not, without fast-math).
uint32_t finite_abs_bits(float a) {
  uint32_t b;
  memcpy(&b, &a, sizeof(b));
  b &= 0x7fffffffu;
  return select_bits(b < 0x7f800000u, b, 0u);
}
uint32_t finite_abs_bits(double a) { return finite_abs_bits(finite_abs(a)); }

// One (row, head) segment of head_dim values, `stride` apart (1 in practice:
// a separate instantiation, so that loop is a plain vectorizable one).
template <typename T, bool kUnitStride>
uint32_t segment_amax_bits(const T* x, int32_t n, int64_t stride) {
  uint32_t m = 0;
  for (int32_t d = 0; d < n; ++d) {
    const uint32_t a = finite_abs_bits(compute_value(x[kUnitStride ? d : d * stride]));
    m = m > a ? m : a;
  }
  return m;
}

template <typename T, bool kUnitStride>
void segment_cast(const T* x, int32_t n, int64_t stride, float scale, uint8_t* out) {
  for (int32_t d = 0; d < n; ++d) out[d] = quantize_value(compute_value(x[kUnitStride ? d : d * stride]), scale);
}

// A packed v (csrc/quantize.h): value d of the segment goes to packed row
// packed_v_column_of_row(d) (csrc/vt_key_order.h), rows out_stride (G * 16) bytes
// apart. Consecutive rows of a group fill the same D cache
// lines (within a 16-key group, in the packed order), so this stays cache-friendly.
template <typename T, bool kUnitStride>
void segment_cast_packed_v(const T* x, int32_t n, int64_t stride, float scale, uint8_t* out,
                                  int64_t out_stride) {
  // Column d goes to the row that holds it (the permutation is its own inverse).
  for (int32_t d = 0; d < n; ++d) {
    out[packed_v_column_of_row(d, n) * out_stride] =
        quantize_value(compute_value(x[kUnitStride ? d : d * stride]), scale);
  }
}

// The group loops, compiled twice where the compiler can (x86-64 GCC/clang):
// for AVX2 and for the baseline ISA, picked at load time by the CPU's
// features (an ifunc), so the build stays portable and the inner loops run
// 8 floats wide where the CPU has AVX2.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define TORCH_FMHA_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define TORCH_FMHA_AVX2_CLONE
#endif

// Visits the (row, head) segments of a group in order: visit(offset in x,
// offset in x_fp8 of the segment's d = 0). The row's (batch, position)
// advances by a step, not a division per row.
template <typename Visit>
inline __attribute__((always_inline)) void for_each_segment(const QuantizeTensor& t, const GroupExtent& e,
                                                            Visit&& visit) {
  int64_t b = e.row_begin / t.seqlen;
  int64_t s = e.row_begin - b * t.seqlen;
  for (int64_t row = e.row_begin; row < e.row_begin + e.rows; ++row) {
    const int64_t row_offset = b * t.stride_batch + s * t.stride_row;
    for (int32_t head = e.head_begin; head < e.head_begin + e.heads; ++head) {
      visit(row_offset + head * t.stride_head,
            t.packed_v ? packed_v_offset(t, b, head) + packed_vt_position(s) : (row * t.heads + head) * t.head_dim);
    }
    if (++s == t.seqlen) {
      s = 0;
      ++b;
    }
  }
}

// packed_v: FP8 zeros in the slots of the padding keys [seqlen, packed_keys)
// (all in the last 16-key group, spread over its slots) of every
// (batch, head, d) of the group (dense: whole batch entries).
void zero_padding_keys(const QuantizeTensor& t, const GroupExtent& e) {
  if (t.packed_keys == t.seqlen) return;
  for (int64_t b = e.row_begin / t.seqlen; b < (e.row_begin + e.rows) / t.seqlen; ++b) {
    for (int32_t head = e.head_begin; head < e.head_begin + e.heads; ++head) {
      uint8_t* dim0 = t.x_fp8 + packed_v_offset(t, b, head);
      for (int32_t d = 0; d < t.head_dim; ++d) {
        for (int64_t s = t.seqlen; s < t.packed_keys; ++s) dim0[d * t.packed_keys + packed_vt_position(s)] = 0;
      }
    }
  }
}

template <typename T, bool kUnitStride>
TORCH_FMHA_AVX2_CLONE void quantize_group(const QuantizeTensor& t, int64_t group) {
  const T* x = static_cast<const T*>(t.x);
  const GroupExtent e = group_extent(t, group);
  if (e.rows == 0) {
    t.descale[group] = descale_from_amax(0.0f) * t.descale_factor;
    return;
  }
  uint32_t amax_bits = 0;
  for_each_segment(t, e, [&](int64_t in, int64_t) {
    const uint32_t m = segment_amax_bits<T, kUnitStride>(x + in, t.head_dim, t.stride_dim);
    amax_bits = m > amax_bits ? m : amax_bits;
  });
  float amax;
  memcpy(&amax, &amax_bits, sizeof(amax));
  const float scale = descale_from_amax(amax);
  t.descale[group] = scale * t.descale_factor;
  for_each_segment(t, e, [&](int64_t in, int64_t out) {
    if (t.packed_v) {
      segment_cast_packed_v<T, kUnitStride>(x + in, t.head_dim, t.stride_dim, scale, t.x_fp8 + out,
                                            t.packed_keys);
    } else {
      segment_cast<T, kUnitStride>(x + in, t.head_dim, t.stride_dim, scale, t.x_fp8 + out);
    }
  });
  if (t.packed_v) zero_padding_keys(t, e);
}

template <typename T>
void quantize_tensor(const QuantizeTensor& t) {
  // Rows outside every sequence: none, as cu_seqlens was checked.
  at::parallel_for(0, t.groups(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t group = begin; group < end; ++group) {
      if (t.stride_dim == 1) {
        quantize_group<T, true>(t, group);
      } else {
        quantize_group<T, false>(t, group);
      }
    }
  });
}

void run(const char* op, QuantizeCall& call) {
  for (int32_t i = 0; i < call.params.num_tensors; ++i) {
    const QuantizeTensor& t = call.params.tensors[i];
    if (call.cu_seqlens[i].has_value()) {
      static const char* const kRows[] = {"q.size(0)", "k.size(0)", "v.size(0)"};
      const bool fp8_op = call.params.num_tensors == 1;
      const char* name = fp8_op ? "cu_seqlens" : (i == 0 ? "cu_seqlens_q" : "cu_seqlens_k");
      check_cu_seqlens_values(op, name, *call.cu_seqlens[i], t.rows(),
                              fp8_op ? "x.size(0)" : kRows[i]);
    }
  }
  for (int32_t i = 0; i < call.params.num_tensors; ++i) {
    const QuantizeTensor& t = call.params.tensors[i];
    switch (t.in_type) {
      case QuantInType::kBFloat16: quantize_tensor<at::BFloat16>(t); break;
      case QuantInType::kFloat16: quantize_tensor<at::Half>(t); break;
      case QuantInType::kFloat32: quantize_tensor<float>(t); break;
      case QuantInType::kFloat64: quantize_tensor<double>(t); break;
    }
  }
}

Fp8AndDescale quantize_fp8_cpu(const at::Tensor& x, bool per_head, int64_t group_size,
                               const std::optional<at::Tensor>& cu_seqlens) {
  const char* op = "torch_fmha.quantize_fp8";
  QuantizeCall call = plan_quantize_fp8(op, x, per_head, group_size, cu_seqlens);
  run(op, call);
  return fp8_outputs(call);
}

QuantizedQkv quantize_qkv_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              bool per_head, bool qk_rotated,
                              const std::optional<at::Tensor>& cu_seqlens_q,
                              const std::optional<at::Tensor>& cu_seqlens_k, bool pack_v) {
  const char* op = "torch_fmha.quantize_qkv";
  QuantizeCall call = plan_quantize_qkv(op, q, k, v, per_head, qk_rotated, cu_seqlens_q, cu_seqlens_k,
                                        pack_v);
  run(op, call);
  return qkv_outputs(call);
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_fmha, CPU, m) {
  m.impl("quantize_fp8", &quantize_fp8_cpu);
  m.impl("quantize_qkv", &quantize_qkv_cpu);
}

}  // namespace torch_fmha
