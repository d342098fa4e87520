// torch_fmha: host side of the varlen prep kernel (csrc/kernel/varlen_prep.cuh).
#pragma once

#include <cuda_runtime.h>

#include "../kernel/varlen_workspace.cuh"
#include "../params.h"

namespace torch_fmha {

// Enqueues the prep kernel on `stream`: fills the work list in p.workspace
// (fwd_workspace_bytes(p) bytes) from p.cu_seqlens_q / p.cu_seqlens_k for
// tiles of block_m q rows, and returns its layout in `ws`.
cudaError_t launch_varlen_prep(const FwdParams& p, int block_m, cudaStream_t stream,
                               kernel::VarlenWorkspace& ws);

}  // namespace torch_fmha
