// torch_fmha: host side of the split-KV merge kernel.
#include "../kernel/merge_splits.cuh"
#include "launch_merge.h"

namespace torch_fmha {

cudaError_t launch_merge_splits(const MergeParams& p, cudaStream_t stream) {
  const int64_t blocks = (p.rows() + kernel::kMergeWarps - 1) / kernel::kMergeWarps;
  if (blocks == 0) return cudaSuccess;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  kernel::merge_splits_kernel<<<dim3(unsigned(blocks)), 32 * kernel::kMergeWarps, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace torch_fmha
