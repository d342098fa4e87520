// torch_fmha: host side of the varlen prep kernel, and the workspace size the
// op allocates (launch_fwd.h). One translation unit for all head dims.
#include "varlen_prep.h"

#include "../kernel/varlen_prep.cuh"
#include "launch_fwd.h"

namespace torch_fmha {

size_t fwd_workspace_bytes(const FwdParams& p) {
  return p.cu_seqlens_q != nullptr ? kernel::VarlenWorkspace::bytes(p.batch) : 0;
}

cudaError_t launch_varlen_prep(const FwdParams& p, int block_m, cudaStream_t stream,
                               kernel::VarlenWorkspace& ws) {
  const bool paged = p.page_table != nullptr;
  if (p.workspace == nullptr || p.cu_seqlens_q == nullptr ||
      (paged ? p.seqused_k == nullptr : p.cu_seqlens_k == nullptr)) {
    return cudaErrorInvalidValue;
  }
  ws = kernel::VarlenWorkspace::carve(p.workspace, p.batch);
  kernel::VarlenPrepArgs a;
  a.cu_seqlens_q = p.cu_seqlens_q;
  a.cu_seqlens_k = p.cu_seqlens_k;
  a.seqused_k = p.seqused_k;
  a.page_table = p.page_table;
  a.page_table_batch_stride = p.page_table_batch_stride;
  a.page_size = p.page_size;
  a.num_pages = p.num_pages;
  a.max_pages_per_seq = p.max_pages_per_seq;
  a.batch = p.batch;
  a.heads = p.heads_q;
  a.total_q = p.total_q;
  a.total_k = p.total_k;
  a.block_m = block_m;
  a.ws = ws;
  kernel::varlen_prep_kernel<<<1, kernel::kPrepThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace torch_fmha
