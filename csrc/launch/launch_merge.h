// torch_fmha: host entry point of the split-KV merge kernel
// (csrc/kernel/merge_splits.cuh). csrc/ops/merge_splits.cpp calls it; nothing
// here includes torch.
#pragma once

#include <cuda_runtime.h>

#include "../merge_splits.h"

namespace torch_fmha {

// Enqueues the merge of params.rows() rows on `stream` (nothing for 0 rows). No
// host synchronisation, no allocation. Returns the launch status.
cudaError_t launch_merge_splits(const MergeParams& params, cudaStream_t stream);

}  // namespace torch_fmha
