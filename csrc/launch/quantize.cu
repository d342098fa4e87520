// torch_fmha: host side of the FP8 quantization kernels: two launches for up
// to three tensors.
#include <climits>

#include "../kernel/quantize.cuh"
#include "launch_quantize.h"

namespace torch_fmha {

cudaError_t launch_quantize(const QuantizeParams& p, cudaStream_t stream) {
  if (p.num_blocks == 0) return cudaSuccess;
  if (p.num_blocks > INT_MAX) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(p.num_blocks));
  if (quantize_in_one_launch(p)) {
    kernel::quantize_group_kernel<<<grid, kernel::kQuantizeThreads, 0, stream>>>(p);
    return cudaGetLastError();
  }
  kernel::quantize_amax_kernel<<<grid, kernel::kQuantizeThreads, 0, stream>>>(p);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  kernel::quantize_cast_kernel<<<grid, kernel::kQuantizeThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace torch_fmha
