// torch_fmha: host side of the FP8 quantization kernels: two launches for up
// to three tensors.
#include <climits>

#include "../kernel/quantize.cuh"
#include "launch_quantize.h"

namespace torch_fmha {

int32_t quantize_chunks(int64_t group_elements) {
  // ~16K elements per block: one block per (batch, head) group at the
  // serving shapes (S = 128, D = 128), which then take one launch
  // (quantize_group_kernel), and enough blocks to fill the GPU at long
  // sequences. At most 1024 chunks, so the cast kernel's reduction of a
  // group's partials stays at 4 loads per thread.
  constexpr int64_t kElementsPerBlock = 16384;
  constexpr int64_t kMaxChunks = 1024;
  const int64_t chunks = (group_elements + kElementsPerBlock - 1) / kElementsPerBlock;
  return static_cast<int32_t>(chunks < 1 ? 1 : (chunks > kMaxChunks ? kMaxChunks : chunks));
}

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

bool quantize_in_one_launch(const QuantizeParams& p) {
  for (int32_t i = 0; i < p.num_tensors; ++i) {
    if (p.tensors[i].chunks != 1) return false;
  }
  return true;
}

}  // namespace torch_fmha
