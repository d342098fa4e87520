// torch_fmha: host entry point of the FP8 quantization kernels
// (csrc/kernel/quantize.cuh). The CUDA op (csrc/ops/quantize_cuda.cpp) calls it
// after its checks; nothing here includes torch.
#pragma once

#include <cuda_runtime.h>

#include "../quantize.h"

namespace torch_fmha {

// Blocks per scale group for a group of about `group_elements` elements.
int32_t quantize_chunks(int64_t group_elements);

// Enqueues the amax and the cast kernel on `stream` (nothing when
// params.num_blocks is 0). Every tensor's partial_amax must hold
// groups() * chunks floats; they need no initialisation. No host
// synchronisation, no allocation. Returns the launch status.
cudaError_t launch_quantize(const QuantizeParams& params, cudaStream_t stream);

}  // namespace torch_fmha
