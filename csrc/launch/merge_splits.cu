// torch_fmha: host side of the split-KV merge kernel.
#include "../kernel/merge_splits.cuh"
#include "launch_merge.h"
#include "pdl_launch.h"

// Developer knob for an A/B on the GPU (TORCH_FMHA_NVCC_EXTRA=-DTORCH_FMHA_TUNE_MERGE_PDL=0):
// 0 launches the merge stream-ordered, as before PDL (its griddepcontrol.wait is then a
// no-op and the decode kernel's trigger has no dependent to release).
#ifndef TORCH_FMHA_TUNE_MERGE_PDL
#define TORCH_FMHA_TUNE_MERGE_PDL 1
#endif

namespace torch_fmha {

cudaError_t launch_merge_splits(const MergeParams& p, cudaStream_t stream) {
  const int64_t blocks = (p.rows() + kernel::kMergeWarps - 1) / kernel::kMergeWarps;
  if (blocks == 0) return cudaSuccess;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  if (!p.partials_load_whole()) return cudaErrorInvalidValue;  // merge_cuda makes them so
  // Head-dim elements per lane: D = 64 / 128 / 256 in one pass each.
  void (*const fn)(MergeParams) = p.head_dim == 64    ? kernel::merge_splits_kernel<2>
                                  : p.head_dim == 128 ? kernel::merge_splits_kernel<4>
                                                      : kernel::merge_splits_kernel<8>;
  // Programmatic Dependent Launch: the merge grid may start while the kernel before it
  // on the stream (the decode kernel, which allows it from its first instruction) drains;
  // the kernel waits for that grid's completion and memory before it reads a partial
  // (kernel/grid_dependency.cuh). After a kernel that does not allow it (the split plan's),
  // it starts when that one completes, as a plain launch would.
  return launch_programmatic_dependent(fn, dim3{unsigned(blocks)}, dim3{32 * kernel::kMergeWarps}, 0, stream,
                                       TORCH_FMHA_TUNE_MERGE_PDL != 0, p);
}

}  // namespace torch_fmha
