// torch_fmha: CPU kernels of quantize_fp8 and quantize_qkv. One pass for the
// amax and one for the cast per scale group, with the scalar rules of
// csrc/quantize.h that the CUDA kernels use too (so both give the same bytes).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "checks.h"
#include "quantize_op.h"

namespace torch_fmha {
namespace {

float compute_value(at::BFloat16 x) { return static_cast<float>(x); }
float compute_value(at::Half x) { return static_cast<float>(x); }
float compute_value(float x) { return x; }
double compute_value(double x) { return x; }

// visit(offset in x, offset in x_fp8) for every element of the group.
template <typename Visit>
void for_each_element(const QuantizeTensor& t, const GroupExtent& e, Visit&& visit) {
  for (int64_t row = e.row_begin; row < e.row_begin + e.rows; ++row) {
    for (int32_t head = e.head_begin; head < e.head_begin + e.heads; ++head) {
      const int64_t base = element_offset(t, row, head, 0);
      const int64_t out_base = (row * t.heads + head) * t.head_dim;
      for (int32_t d = 0; d < t.head_dim; ++d) visit(base + d * t.stride_dim, out_base + d);
    }
  }
}

template <typename T>
void quantize_tensor(const QuantizeTensor& t) {
  const T* x = static_cast<const T*>(t.x);
  at::parallel_for(0, t.groups(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t group = begin; group < end; ++group) {
      const GroupExtent e = group_extent(t, group);
      float amax = 0.0f;
      for_each_element(t, e, [&](int64_t in, int64_t) {
        const float a = finite_abs(compute_value(x[in]));
        amax = a > amax ? a : amax;
      });
      const float scale = descale_from_amax(amax);
      t.descale[group] = scale * t.descale_factor;
      for_each_element(t, e, [&](int64_t in, int64_t out) {
        t.x_fp8[out] = quantize_value(compute_value(x[in]), scale);
      });
    }
  });
  // Rows outside every sequence: none, as cu_seqlens was checked.
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
                              const std::optional<at::Tensor>& cu_seqlens_k) {
  const char* op = "torch_fmha.quantize_qkv";
  QuantizeCall call = plan_quantize_qkv(op, q, k, v, per_head, qk_rotated, cu_seqlens_q, cu_seqlens_k);
  run(op, call);
  return qkv_outputs(call);
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_fmha, CPU, m) {
  m.impl("quantize_fp8", &quantize_fp8_cpu);
  m.impl("quantize_qkv", &quantize_qkv_cpu);
}

}  // namespace torch_fmha
