// torch_fmha: host side of the varlen prep kernel, and the workspace size the
// op allocates (launch_fwd.h). One translation unit for all head dims.
#include "varlen_prep.h"

#include "../kernel/tile_scheduler.cuh"
#include "../kernel/varlen_prep.cuh"
#include "launch_fwd.h"

namespace torch_fmha {

size_t fwd_workspace_bytes(const FwdParams& p) {
  if (p.cu_seqlens_q != nullptr) return kernel::VarlenWorkspace::bytes(p.batch);
  // Dense: the split tail's slots (tile_scheduler.cuh), wherever a launch may use them.
  // Its plan also needs the build's key block (fwd_launch_template.cuh); the narrowest block
  // of a build that splits at this head dim makes this a superset. (Too few blocks here would
  // only run a launch's tiles whole: it splits only with a workspace.) The threshold is the
  // v layout's (a packed v: v_dim_stride != 1, as dispatch_fwd.cu tells them apart).
  const int min_blocks = kernel::split_tail_min_blocks(p.head_dim, p.v_dim_stride != 1);
  if (min_blocks <= 0 || p.window_left >= 0 || p.window_right >= 0 || p.num_sms <= 0) return 0;
  const int kBlock = kernel::split_tail_narrowest_block(p.head_dim);
  const int64_t tiles = int64_t(p.batch) * p.heads_q * ((int64_t(p.seqlen_q) + 127) / 128);
  const int32_t grid = static_cast<int32_t>(tiles < p.num_sms ? tiles : p.num_sms);
  if (tiles > INT32_MAX ||
      !kernel::SplitTail::wanted(int32_t(tiles), grid, int32_t((int64_t(p.seqlen_k) + kBlock - 1) / kBlock),
                                 min_blocks)) {
    return 0;
  }
  return static_cast<size_t>(kernel::SplitTailBuffers::bytes(grid, p.head_dim));
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
