// torch_fmha: input validation of fwd_kvcache. Messages mirrored in
// meta/kvcache.py; the rules shared with fwd / varlen_fwd (dtypes, heads,
// descales, windows, sinks, ...) come from checks.cpp under this op's names.
#include "kvcache_checks.h"

#include <c10/util/Exception.h>

namespace torch_fmha {
namespace {

// A dense cache is read as one buffer of rows (the varlen kernel's layout):
// its batch stride must be a whole number of rows, at least Smax of them.
// Returns that number (Smax when batch <= 1, where the batch stride is unused).
int64_t rows_per_batch(const char* op, const char* name, const at::Tensor& t) {
  if (t.size(0) <= 1) return t.size(1);
  const int64_t row = t.stride(1), batch = t.stride(0);
  TORCH_CHECK(row > 0 && batch % row == 0 && batch / row >= t.size(1), op, ": ", name,
              " must have a batch stride that is a whole number of rows, at least its ",
              t.size(1), " rows (the cache is read as one buffer of rows), got strides ",
              shape_str(t.strides()));
  return batch / row;
}

}  // namespace

KvcacheProblem check_kvcache(
    const char* op, const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
    const at::Tensor& cache_seqlens, const std::optional<at::Tensor>& page_table,
    const std::optional<at::Tensor>& cu_seqlens_q, std::optional<int64_t> max_seqlen_q,
    std::optional<double> softmax_scale, bool causal, int64_t window_left, int64_t window_right,
    double softcap, const std::optional<at::Tensor>& sinks,
    const std::optional<at::Tensor>& q_descale, const std::optional<at::Tensor>& k_descale,
    const std::optional<at::Tensor>& v_descale, const std::optional<at::Tensor>& out_scale,
    std::optional<at::ScalarType> out_dtype, int64_t num_splits) {
  KvcacheProblem p;
  p.packed_q = cu_seqlens_q.has_value();
  p.paged = page_table.has_value();
  if (p.packed_q) {
    check_rank(op, "q", q, 3, "[total_q, heads, head_dim] (cu_seqlens_q is given)");
  } else {
    check_rank(op, "q", q, 4, "[batch, seqlen_q, heads, head_dim]");
  }
  const char* cache_dims = p.paged
      ? "[num_pages, page_size, heads_kv, head_dim] (a page pool: page_table is given)"
      : "[batch, seqlen_cache, heads_kv, head_dim]";
  check_rank(op, "k_cache", k_cache, 4, cache_dims);
  check_rank(op, "v_cache", v_cache, 4, cache_dims);
  check_qkv(op, q, k_cache, v_cache, "k_cache", "v_cache");
  int64_t batch = q.size(0);
  const char* batch_from = "q.size(0)";
  if (p.packed_q) {
    check_cu_seqlens_meta(op, "cu_seqlens_q", *cu_seqlens_q, q);
    batch = cu_seqlens_q->size(0) - 1;
    batch_from = "cu_seqlens_q.size(0) - 1";
  }
  TORCH_CHECK(cache_seqlens.scalar_type() == at::kInt, op,
              ": cache_seqlens must have dtype torch.int32, got ",
              dtype_name(cache_seqlens.scalar_type()));
  TORCH_CHECK(cache_seqlens.dim() == 1 && cache_seqlens.size(0) == batch, op,
              ": cache_seqlens must have shape [batch] = [", batch, "], got ",
              shape_str(cache_seqlens.sizes()));
  TORCH_CHECK(cache_seqlens.stride(0) == 1, op, ": cache_seqlens must be contiguous, got stride ",
              cache_seqlens.stride(0));
  check_same_device(op, "cache_seqlens", cache_seqlens, q);
  if (p.paged) {
    p.fwd.batch = batch;
    check_page_table_meta(op, p.fwd, q, k_cache, "k_cache", *page_table);
    p.cache_rows = p.fwd.page_size * page_table->size(1);
  } else {
    TORCH_CHECK(k_cache.size(0) == batch, op, ": k_cache has batch size ", k_cache.size(0),
                ", expected ", batch, " (", batch_from, ")");
    p.rows_per_batch = rows_per_batch(op, "k_cache", k_cache);
    const int64_t v_rows = rows_per_batch(op, "v_cache", v_cache);
    TORCH_CHECK(v_rows == p.rows_per_batch, op, ": v_cache's batch stride is ", v_rows,
                " rows but k_cache's is ", p.rows_per_batch,
                "; they must be equal (one set of sequence offsets serves both)");
    p.cache_rows = k_cache.size(1);
  }
  TORCH_CHECK(!max_seqlen_q.has_value() || *max_seqlen_q >= 0, op,
              ": max_seqlen_q must be >= 0, got ", max_seqlen_q.value_or(0));
  TORCH_CHECK(num_splits >= 0, op,
              ": num_splits must be >= 0 (0: chosen from the shapes), got ", num_splits);
  p.seqlen_q = p.packed_q ? q.size(0) : q.size(1);
  p.fwd.batch = batch;
  p.fwd.seqlen_q = p.seqlen_q;
  p.fwd.seqlen_k = p.cache_rows;
  p.fwd.heads_q = q.size(-2);
  p.fwd.heads_kv = k_cache.size(-2);
  p.fwd.head_dim = q.size(-1);
  check_options(op, p.fwd, q, softmax_scale, causal, window_left, window_right, q_descale,
                k_descale, v_descale, out_scale, out_dtype, softcap, sinks);
  return p;
}

void check_kvcache_values(const char* op, const KvcacheProblem& p, const at::Tensor& q,
                          const at::Tensor& k_cache, const at::Tensor& cache_seqlens,
                          const std::optional<at::Tensor>& page_table,
                          const std::optional<at::Tensor>& cu_seqlens_q) {
  TORCH_INTERNAL_ASSERT(cache_seqlens.device().is_cpu());
  if (p.packed_q) check_cu_seqlens_values(op, "cu_seqlens_q", *cu_seqlens_q, q.size(0), "q.size(0)");
  const int32_t* lens = cache_seqlens.data_ptr<int32_t>();
  for (int64_t b = 0; b < p.fwd.batch; ++b) {
    TORCH_CHECK(lens[b] >= 0, op, ": cache_seqlens[", b, "] = ", lens[b], " must be >= 0");
    if (!p.paged) {
      TORCH_CHECK(lens[b] <= p.cache_rows, op, ": cache_seqlens[", b, "] = ", lens[b],
                  " exceeds the ", p.cache_rows, " keys of k_cache (k_cache.size(1))");
      continue;
    }
    const int64_t page_size = p.fwd.page_size;
    const int64_t pages = (int64_t(lens[b]) + page_size - 1) / page_size;
    const int64_t columns = page_table->size(1);
    TORCH_CHECK(pages <= columns, op, ": cache_seqlens[", b, "] = ", lens[b], " needs ", pages,
                " pages of ", page_size, " keys but page_table has ", columns, " columns");
    const at::Tensor row = (*page_table)[b];
    const int32_t* ids = row.data_ptr<int32_t>();  // last dim contiguous (checked)
    for (int64_t j = 0; j < pages; ++j) {
      TORCH_CHECK(ids[j] >= 0 && ids[j] < k_cache.size(0), op, ": page_table[", b, ", ", j,
                  "] = ", ids[j], " is not a page of the pool: sequence ", b, " reads ", pages,
                  " pages and page ids must be in [0, num_pages) = [0, ", k_cache.size(0), ")");
    }
  }
}

}  // namespace torch_fmha
