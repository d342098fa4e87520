// torch_fmha: op arguments as the CUDA kernels' parameter structs take them
// (csrc/params.h, csrc/decode_params.h), shared by fwd_cuda.cpp and
// kvcache_decode_cuda.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

#include "../params.h"

namespace torch_fmha {

// [1] -> strides 0 (one value); [B, Hkv] -> its own strides; none -> null (1.0).
inline ScaleTensor scale_tensor(const std::optional<at::Tensor>& s) {
  ScaleTensor out;
  if (!s.has_value()) return out;
  out.ptr = s->data_ptr<float>();
  if (s->dim() == 2) {
    out.batch_stride = static_cast<int32_t>(s->stride(0));
    out.head_stride = static_cast<int32_t>(s->stride(1));
  }
  return out;
}

// Window sizes are int64 in the op and int32 in the kernels. Any window of
// 2^30 or more keys reaches past every key of every row (sequence lengths are
// int32 and far below that in practice), so it is clamped there instead of
// truncated: a plain cast turned window_left = 2^32 + 5 into 5. Negative (no
// window) stays as it is.
inline int32_t kernel_window(int64_t w) {
  constexpr int64_t kUnboundedFrom = int64_t(1) << 30;
  return static_cast<int32_t>(w < kUnboundedFrom ? w : kUnboundedFrom);
}

}  // namespace torch_fmha
