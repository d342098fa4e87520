// from_float<T>: a float as T, the element type of a host check's inputs (bf16 and fp16
// through the CUDA headers' host conversions). Shared by the quantize host checks.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

template <typename T>
T from_float(float f) {
  return static_cast<T>(f);
}
template <>
inline __nv_bfloat16 from_float<__nv_bfloat16>(float f) {
  return __float2bfloat16(f);
}
template <>
inline __half from_float<__half>(float f) {
  return __float2half(f);
}
