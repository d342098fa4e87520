// torch_fmha: host entry point of the FP8 quantization kernels
// (csrc/kernel/quantize.cuh). The CUDA op (csrc/ops/quantize_cuda.cpp) calls it
// after its checks; nothing here includes torch.
#pragma once

#include <cuda_runtime.h>

#include "../quantize.h"

namespace torch_fmha {

// Enqueues the kernel(s) on `stream` (nothing when params.num_blocks is 0).
// Unless quantize_in_one_launch, every tensor's partial_amax must hold
// groups() * chunks floats; they need no initialisation. No host
// synchronisation, no allocation. Returns the launch status.
cudaError_t launch_quantize(const QuantizeParams& params, cudaStream_t stream);

}  // namespace torch_fmha
