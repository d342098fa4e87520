// torch_fmha: host entry points of the SM90 forward kernels.
//
// The CUDA op calls these after its checks; nothing here includes torch.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "../params.h"

namespace torch_fmha {

// nullptr when the kernels cover `params` (dtype x head dim x out type x
// masks), otherwise a sentence naming what is supported. The op turns a
// non-null answer into an error; it never falls back to another path.
const char* fwd_unsupported_reason(const FwdParams& params);

// Bytes of device scratch the launch needs in params.workspace (0: none). The varlen
// path needs 36 bytes per sequence (the work list, with the dynamic tile order's
// counter); a dense launch that may split its last rounds' tiles (split_tail_min_blocks,
// tile_scheduler.cuh) one slot per CTA of two sides of partial results, 2 x 34 KB (D = 64) or
// 2 x 66 KB (D = 128). The op
// allocates it on the launch stream; its contents need no initialisation.
size_t fwd_workspace_bytes(const FwdParams& params);

// Enqueues the forward kernel on `stream`. No host synchronisation, no
// allocation. Returns the launch status.
cudaError_t launch_fwd(const FwdParams& params, cudaStream_t stream);

}  // namespace torch_fmha
