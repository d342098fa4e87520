// torch_fmha: host side of the quantize_fp8 / quantize_qkv ops shared by the
// CPU and CUDA kernels: the checks (mirrored message for message by
// meta/quantize.py, so eager and compiled calls fail alike), the outputs, and
// the QuantizeParams (csrc/quantize.h) that describe them.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>
#include <vector>

#include "../quantize.h"

namespace torch_fmha {

// A checked call: the outputs (the FP8 tensors, then the descales: x's, or
// q's, k's and v's stacked [3, ...]), and the params pointing at them.
// The backend fills chunks / first_block / partial_amax where it needs them.
struct QuantizeCall {
  std::vector<at::Tensor> fp8;
  at::Tensor descales;
  std::vector<std::optional<at::Tensor>> cu_seqlens;  // per tensor, as given (CPU value checks)
  QuantizeParams params;
};

// torch_fmha::quantize_fp8(x, per_head, group_size, cu_seqlens)
QuantizeCall plan_quantize_fp8(const char* op, const at::Tensor& x, bool per_head,
                               int64_t group_size, const std::optional<at::Tensor>& cu_seqlens);

// torch_fmha::quantize_qkv(q, k, v, per_head, qk_rotated, cu_seqlens_q, cu_seqlens_k,
//                          pack_v): pack_v makes v's FP8 output a packed v
//                          [B, Hkv, D, G, 16] (csrc/quantize.h)
QuantizeCall plan_quantize_qkv(const char* op, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, bool per_head, bool qk_rotated,
                               const std::optional<at::Tensor>& cu_seqlens_q,
                               const std::optional<at::Tensor>& cu_seqlens_k,
                               bool pack_v);

using Fp8AndDescale = std::tuple<at::Tensor, at::Tensor>;
using QuantizedQkv = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

inline Fp8AndDescale fp8_outputs(const QuantizeCall& c) { return {c.fp8[0], c.descales}; }
inline QuantizedQkv qkv_outputs(const QuantizeCall& c) { return {c.fp8[0], c.fp8[1], c.fp8[2], c.descales}; }

}  // namespace torch_fmha
