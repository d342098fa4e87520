// torch_fmha: input validation of fwd_kvcache (decode against a KV cache).
// Messages mirrored word for word by meta/kvcache.py (same order), so eager
// and torch.compile's trace report the same first line.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "checks.h"

namespace torch_fmha {

// The problem a fwd_kvcache call describes, after validation.
struct KvcacheProblem {
  FwdProblem fwd;             // batch, heads, head_dim, options (seqlen_k: key capacity)
  bool packed_q = false;      // q [Tq, H, D] with cu_seqlens_q, else [B, Sq, H, D]
  int64_t seqlen_q = 0;       // dense q: Sq; packed: Tq
  bool paged = false;         // k_cache / v_cache are page pools with page_table
  int64_t cache_rows = 0;     // dense cache: Smax (its size(1)); paged: page_size * columns
  int64_t rows_per_batch = 0; // dense cache: batch stride / row stride (>= Smax)
};

KvcacheProblem check_kvcache(
    const char* op, const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
    const at::Tensor& cache_seqlens, const std::optional<at::Tensor>& page_table,
    const std::optional<at::Tensor>& cu_seqlens_q, std::optional<int64_t> max_seqlen_q,
    std::optional<double> softmax_scale, bool causal, int64_t window_left, int64_t window_right,
    double softcap, const std::optional<at::Tensor>& sinks,
    const std::optional<at::Tensor>& q_descale, const std::optional<at::Tensor>& k_descale,
    const std::optional<at::Tensor>& v_descale, const std::optional<at::Tensor>& out_scale,
    std::optional<at::ScalarType> out_dtype, int64_t num_splits);

// Value checks (CPU tensors only: reading device values would cost a host
// sync): cu_seqlens_q, 0 <= cache_seqlens[b] <= the cache's keys, and the page
// ids of the pages a sequence reads in [0, num_pages).
void check_kvcache_values(const char* op, const KvcacheProblem& p, const at::Tensor& q,
                          const at::Tensor& k_cache, const at::Tensor& cache_seqlens,
                          const std::optional<at::Tensor>& page_table,
                          const std::optional<at::Tensor>& cu_seqlens_q);

}  // namespace torch_fmha
