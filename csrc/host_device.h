// torch_fmha: TORCH_FMHA_HOST_DEVICE marks the functions a CPU op and its CUDA kernel
// share (csrc/quantize.h, csrc/merge_splits.h): host + device, inlined, under nvcc;
// plain inline functions in the host-only build.
#pragma once

#if defined(__CUDACC__)
#define TORCH_FMHA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TORCH_FMHA_HOST_DEVICE inline
#endif
