// torch_fmha: host side of the split-KV merge kernel.
#include "../kernel/merge_splits.cuh"
#include "launch_merge.h"

namespace torch_fmha {

cudaError_t launch_merge_splits(const MergeParams& p, cudaStream_t stream) {
  const int64_t blocks = (p.rows() + kernel::kMergeWarps - 1) / kernel::kMergeWarps;
  if (blocks == 0) return cudaSuccess;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  const dim3 grid{unsigned(blocks)}, block{32 * kernel::kMergeWarps};
  // Head-dim elements per lane: D = 64 / 128 / 256 in one pass each.
  if (p.head_dim <= 64) {
    kernel::merge_splits_kernel<2><<<grid, block, 0, stream>>>(p);
  } else if (p.head_dim <= 128) {
    kernel::merge_splits_kernel<4><<<grid, block, 0, stream>>>(p);
  } else {
    kernel::merge_splits_kernel<8><<<grid, block, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace torch_fmha
