// torch_fmha: fwd_kvcache, a few query rows against a KV cache (decode).
//
// Schema here (a fragment of the torch_fmha library); one kernel for every
// backend (CompositeExplicitAutograd): a composition of torch_fmha::varlen_fwd,
// ATen ops and the split merge (merge_splits_op.h: one CUDA kernel, on CPU a
// loop over the same per-row functions), so the CPU suite runs the very code
// the GPU runs, with the CPU varlen kernel and merge loop underneath, against
// the independent float64 oracle. The fake kernel is meta/kvcache.py.
// docs/DESIGN.md section 1.11 is the contract and says why.
//
// On CUDA an FP8 step with dense q of Sq x G <= 64 rows (G = H / Hkv) and D 64 /
// 128 / 256 skips the plans below: decode_kernel_call (kvcache_decode_cuda.cpp)
// launches the split-KV decode kernel (csrc/kernel/decode.cuh, every mask applied
// there) and the merge, two kernels. Everything else:
//
// Two plans (make_plan):
//  * split: no mask reaches the kernel. Each (batch b, split s) is one varlen
//    sequence over keys [start, start + used) of b's cache slot (page-aligned
//    chunks for a paged cache, through a per-split page_table row), the q rows
//    repeated per split; for Sq == 1 the G query heads of a KV head are G rows
//    of one head (GQA packing: the cache is read once per KV head). Partial
//    outputs (without v_descale / out_scale / sinks) are merged by their LSE in
//    the accumulator dtype (merge_splits).
//    Sq > 1 with causal (or a right window) and no left window adds a tail:
//    the keys every row sees, [0, m0) with m0 <= L - (Sq - 1 - right), split
//    as above (splits - 1 of them, unmasked), and [m0, L), which ends at L, is
//    one more sequence per batch in a second varlen_fwd call with the mask.
//  * masked: a mask the split plan cannot express (a left window with Sq > 1
//    or over a paged cache; packed q), or one split of a causal Sq > 1 step,
//    goes to the kernel as is: one varlen_fwd call over the whole cache,
//    seqused_k = cache_seqlens, no split, no packing. That call is exactly
//    varlen_attention on the cache.
// Every offset is computed from cache_seqlens on its device with tensor ops:
// no host sync; a CUDA graph replays with new cache_seqlens. The split count
// depends on shapes only.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#ifdef TORCH_FMHA_WITH_CUDA
#include "kvcache_decode.h"
#endif

#include <algorithm>

#include "cpu_math.h"
#include "kvcache_checks.h"
#include "merge_splits_op.h"
#include "op_handles.h"

TORCH_LIBRARY_FRAGMENT(torch_fmha, m) {
  // Decode against a KV cache. q [B, Sq, H, D] (or [Tq, H, D] with
  // cu_seqlens_q), k_cache / v_cache [B, Smax, Hkv, D] (or page pools with
  // page_table [B, max_pages]), cache_seqlens int32 [B]: keys used per
  // sequence; masks bottom-right against them. num_splits 0: from the shapes.
  //   -> out [B, Sq, H, D] ([Tq, H, D]), lse [B, H, Sq] ([H, Tq]).
  m.def(
      "fwd_kvcache(Tensor q, Tensor k_cache, Tensor v_cache, Tensor cache_seqlens, "
      "Tensor? page_table, Tensor? cu_seqlens_q, SymInt? max_seqlen_q, "
      "float? softmax_scale, bool causal, int window_left, int window_right, "
      "float softcap, Tensor? sinks, Tensor? q_descale, Tensor? k_descale, "
      "Tensor? v_descale, Tensor? out_scale, ScalarType? out_dtype, "
      "int num_splits) -> (Tensor out, Tensor lse)");
}

namespace torch_fmha {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

constexpr int64_t kTileRows = 128;         // the kernel's query tile (kBlockM)
constexpr int64_t kMinKeysPerSplit = 512;  // below this a split's fixed cost dominates
// Caches shorter than this are not split at all: the split plan's own kernels
// (index arithmetic, the merge) cost more than the keys they spread. Measured as
// CUDA-graph replays (tools/decode_splits.py, one H200, H = 32, Hkv = 8, D = 128,
// session 12; docs/decode_splits_h200_2026-11-28.json): one split was 5-20% faster
// than every split count at 1k and 2k keys (B = 1: 34.9 / 44.6 us against the rule's
// 47.1 / 46.7; B = 8: 41.9 / 51.7 against 50.6 / 56.3), the rule's count was the
// best or within 6% of it from 4k keys on.
constexpr int64_t kMinKeysToSplit = 4096;
constexpr int64_t kMaxSplits = 64;


// What runs side by side: SMs on CUDA, intra-op threads on CPU.
int64_t parallel_units(const Tensor& q) {
#ifdef TORCH_FMHA_WITH_CUDA
  if (q.is_cuda()) return cuda_sm_count(q.device().index());
#endif
  return at::get_num_threads();
}

// num_splits = 0: enough splits to give every unit one tile, no more than
// keys / kMinKeysPerSplit, at most kMaxSplits; 1 when the tiles already fill
// the device or the cache holds fewer than kMinKeysToSplit keys. `keys` is the
// cache's capacity (its shape, not cache_seqlens).
int64_t choose_num_splits(int64_t tiles, int64_t keys, int64_t units) {
  if (tiles <= 0 || keys < kMinKeysToSplit || tiles >= units) return 1;
  const int64_t by_keys = (keys + kMinKeysPerSplit - 1) / kMinKeysPerSplit;
  return std::max<int64_t>(1, std::min({units / tiles, by_keys, kMaxSplits}));
}


struct Plan {
  bool masked = false;    // one varlen call with the op's masks (no split, no packing)
  bool tail = false;      // Sq > 1 causal: splits - 1 unmasked chunks + one masked tail
  bool gqa_rows = false;  // Sq == 1: query heads of a KV head as rows of one head
  int64_t splits = 1;
  int64_t rows = 0;       // q rows of one split sequence
  int64_t heads = 0;      // query heads of one split sequence
  bool merge = false;     // partials merged here (else the kernel's output is final)
};

Plan make_plan(const KvcacheProblem& kp, const OptTensor& sinks, int64_t num_splits,
               const Tensor& q) {
  const FwdProblem& p = kp.fwd;
  const int64_t sq = kp.seqlen_q;
  Plan plan;
  // Dense q: row i sees keys [L - Sq + i - left, L - Sq + i + right] of [0, L).
  // With Sq == 1 that is [L - 1 - left, L): a plain key range, no mask. With
  // right >= Sq - 1 every row sees every key up to L. Anything else needs the
  // kernel's bottom-right mask, which is right only for a sequence ending at L.
  const bool right_masks = p.window_right >= 0 && (kp.packed_q || p.window_right < sq - 1);
  const bool left_masks = p.window_left >= 0 && (kp.packed_q || sq > 1 || kp.paged);
  if (kp.packed_q || left_masks) {
    plan.masked = true;
    return plan;
  }
  // right_masks alone (Sq > 1, causal or a right window, no left window): keys
  // [0, m0) with m0 <= L - (Sq - 1 - right) are seen by every row, so they
  // split like a decode step; the masked rest [m0, L) ends at L and is one more
  // sequence in a second call with the kernel's mask (the tail).
  plan.tail = right_masks;
  plan.gqa_rows = sq == 1;
  plan.rows = plan.gqa_rows ? p.heads_q / p.heads_kv : sq;
  plan.heads = plan.gqa_rows ? p.heads_kv : p.heads_q;
  int64_t keys = kp.cache_rows;
  if (p.window_left >= 0) keys = std::min(keys, p.window_left + 1);
  const int64_t tiles = p.batch * plan.heads * ((plan.rows + kTileRows - 1) / kTileRows);
  plan.splits = num_splits > 0 ? num_splits : choose_num_splits(tiles, keys, parallel_units(q));
  if (plan.tail && plan.splits == 1) {  // one split: the single masked call, exactly varlen_fwd
    plan.masked = true;
    return plan;
  }
  // Sinks are per query head; packed rows share a kernel head, so they join in the merge.
  plan.merge = plan.splits > 1 || (plan.gqa_rows && sinks.has_value());
  return plan;
}

// A dense cache [B, Smax, Hkv, D] as the varlen kernel's rows [R, Hkv, D]:
// batch b starts at row b * rows_per_batch (checked: a whole number of rows).
Tensor cache_as_rows(const Tensor& t, int64_t batch, int64_t rows_per_batch) {
  const int64_t rows = batch == 0 ? 0 : (batch - 1) * rows_per_batch + t.size(1);
  return t.as_strided({rows, t.size(2), t.size(3)}, {t.stride(1), t.stride(2), t.stride(3)},
                      t.storage_offset());
}

// The page_table rows of sequences that start at page first_page[b, s] of
// batch b: b's row shifted left by that many columns ([B, S] -> [B * S, cols]);
// columns past the end repeat the last one, never read (a sequence reads only
// the pages its key count needs).
Tensor shifted_table(const Tensor& page_table, const Tensor& first_page) {
  const int64_t batch = first_page.size(0), splits = first_page.size(1), cols = page_table.size(1);
  // int64 indices for gather (the int32 ones only the newer ATen kernels take).
  const auto index = first_page.options().dtype(at::kLong);
  const Tensor idx = (first_page.unsqueeze(2) + at::arange(cols, index))
                         .clamp_max(std::max<int64_t>(cols - 1, 0));  // [B, S, cols]
  return page_table.unsqueeze(1).expand({batch, splits, cols}).gather(2, idx)
      .reshape({batch * splits, cols});
}

// cu_seqlens_k int32 [n + 1] of the rows view: the n starts (int32), then its row count.
Tensor starts_to_cu(const Tensor& starts, int64_t total_rows) {
  return at::cat({starts, at::full({1}, total_rows, starts.options())});
}

// cu_seqlens_k int32 [B + 1] of whole cache rows: b * rows_per_batch, then the
// rows view's row count (arange and clamp: 3 small kernels, no host data).
Tensor batch_cu(int64_t batch, int64_t rows_per_batch, int64_t total_rows,
                const at::TensorOptions& index) {
  if (rows_per_batch == 0) return at::zeros({batch + 1}, index.dtype(at::kInt));
  return at::arange(0, batch * rows_per_batch + 1, rows_per_batch, index)
      .clamp_max(total_rows)
      .to(at::kInt);
}

// varlen_fwd wants cu_seqlens_k[0] == 0, but a windowed split or a tail of a dense
// cache starts at any row. So those calls get a leading sequence with no query
// rows that owns rows [0, first start) of the rows view: the kernel makes no
// tile for it and reads none of its keys. It needs a leading entry in
// cu_seqlens_q, seqused_k and the per-sequence descales too.
Tensor lead_zero(const Tensor& t) { return at::cat({at::zeros({1}, t.options()), t}); }

OptTensor lead_row(const OptTensor& d, bool lead) {
  if (!lead || !d.has_value() || d->dim() == 1) return d;
  return at::cat({d->narrow(0, 0, 1), *d});
}

// cu_seqlens_q int32 of n sequences of `rows` query rows each (after the
// leading empty one when `lead`).
Tensor cu_rows(int64_t n, int64_t rows, bool lead, const at::TensorOptions& options) {
  const Tensor cu = at::arange(0, n * rows + 1, rows, options.dtype(at::kInt));
  return lead ? lead_zero(cu) : cu;
}

// A [B, Hkv] descale of batch b for each of b's `splits` sequences; [1] as is.
OptTensor per_sequence(const OptTensor& d, int64_t batch, int64_t splits) {
  if (!d.has_value() || d->dim() == 1 || splits == 1) return d;
  return d->unsqueeze(1).expand({batch, splits, d->size(1)}).reshape({batch * splits, d->size(1)});
}

// The whole cache in one varlen_fwd call with every option: masked plan.
std::tuple<Tensor, Tensor> masked_call(
    const KvcacheProblem& kp, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
    const Tensor& cache_seqlens, const OptTensor& page_table, const OptTensor& cu_seqlens_q,
    std::optional<int64_t> max_seqlen_q, std::optional<double> softmax_scale, bool causal,
    int64_t window_left, int64_t window_right, double softcap, const OptTensor& sinks,
    const OptTensor& q_descale, const OptTensor& k_descale, const OptTensor& v_descale,
    const OptTensor& out_scale, std::optional<at::ScalarType> out_dtype) {
  const FwdProblem& p = kp.fwd;
  const int64_t batch = p.batch, sq = kp.seqlen_q;
  const auto index = cache_seqlens.options().dtype(at::kLong);
  Tensor qv = kp.packed_q ? q : q.reshape({batch * sq, p.heads_q, p.head_dim});
  Tensor cu_q = kp.packed_q ? *cu_seqlens_q
                            : at::arange(0, batch * sq + 1, sq, index.dtype(at::kInt));
  Tensor k = k_cache, v = v_cache;
  OptTensor cu_k;
  if (!kp.paged) {
    k = cache_as_rows(k_cache, batch, kp.rows_per_batch);
    v = cache_as_rows(v_cache, batch, kp.rows_per_batch);
    cu_k = batch_cu(batch, kp.rows_per_batch, k.size(0), index);
  }
  std::optional<c10::SymInt> max_q;
  if (max_seqlen_q.has_value()) max_q = c10::SymInt(*max_seqlen_q);
  if (!kp.packed_q) max_q = c10::SymInt(sq);
  auto [out, lse] = varlen_fwd_op().call(qv, k, v, cu_q, cu_k, max_q, std::nullopt, softmax_scale,
                                         causal, window_left, window_right, q_descale, k_descale,
                                         v_descale, out_scale, out_dtype, softcap, sinks,
                                         cache_seqlens, page_table);
  if (kp.packed_q) return {out, lse};
  return {out.view({batch, sq, p.heads_q, p.head_dim}),
          lse.view({p.heads_q, batch, sq}).permute({1, 0, 2}).contiguous()};
}


std::tuple<Tensor, Tensor> fwd_kvcache(
    const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const Tensor& cache_seqlens,
    const OptTensor& page_table, const OptTensor& cu_seqlens_q,
    std::optional<int64_t> max_seqlen_q, std::optional<double> softmax_scale, bool causal,
    int64_t window_left, int64_t window_right, double softcap, const OptTensor& sinks,
    const OptTensor& q_descale, const OptTensor& k_descale, const OptTensor& v_descale,
    const OptTensor& out_scale, std::optional<at::ScalarType> out_dtype, int64_t num_splits) {
  const char* op = "torch_fmha.fwd_kvcache";
  const KvcacheProblem kp = check_kvcache(
      op, q, k_cache, v_cache, cache_seqlens, page_table, cu_seqlens_q, max_seqlen_q,
      softmax_scale, causal, window_left, window_right, softcap, sinks, q_descale, k_descale,
      v_descale, out_scale, out_dtype, num_splits);
  const bool values_readable = cache_seqlens.device().is_cpu() &&
                               (!page_table.has_value() || page_table->device().is_cpu()) &&
                               (!cu_seqlens_q.has_value() || cu_seqlens_q->device().is_cpu());
  if (values_readable) {
    check_kvcache_values(op, kp, q, k_cache, cache_seqlens, page_table, cu_seqlens_q);
  }
  const FwdProblem& p = kp.fwd;
  const at::ScalarType acc = cpu::accumulator_dtype(q.scalar_type());
  if (q.numel() == 0) {
    if (kp.packed_q) {
      return {at::empty({kp.seqlen_q, p.heads_q, p.head_dim}, q.options().dtype(p.out_dtype)),
              at::empty({p.heads_q, kp.seqlen_q}, q.options().dtype(acc))};
    }
    return {at::empty({p.batch, kp.seqlen_q, p.heads_q, p.head_dim}, q.options().dtype(p.out_dtype)),
            at::empty({p.batch, p.heads_q, kp.seqlen_q}, q.options().dtype(acc))};
  }
#ifdef TORCH_FMHA_WITH_CUDA
  if (auto r = decode_kernel_call(kp, q, k_cache, v_cache, cache_seqlens, page_table, cu_seqlens_q, max_seqlen_q,
                                  softcap, sinks, q_descale, k_descale, v_descale, out_scale, num_splits)) {
    return *r;
  }
#endif
  const Plan plan = make_plan(kp, sinks, num_splits, q);
  if (plan.masked) {
    return masked_call(kp, q, k_cache, v_cache, cache_seqlens, page_table, cu_seqlens_q,
                       max_seqlen_q, softmax_scale, causal, window_left, window_right, softcap,
                       sinks, q_descale, k_descale, v_descale, out_scale, out_dtype);
  }

  // Split plan (dense q; the kernel's mask only in the tail call).
  const int64_t batch = p.batch, sq = kp.seqlen_q;
  const int64_t splits = plan.tail ? plan.splits - 1 : plan.splits;  // unmasked chunks
  const int64_t heads = p.heads_q, heads_kv = p.heads_kv, d = p.head_dim;
  // Offsets in int32, cache_seqlens' own dtype (no casts): every value is at most the
  // cache's capacity plus num_splits * page_size, or a row of the rows view, which
  // varlen_fwd takes as int32 anyway.
  const auto index = cache_seqlens.options();
  // Keys of split s of batch b: [start, start + used) of b's slot, in chunks of
  // ceil(len / S) keys (whole pages when paged) from the window's first key to
  // `stop`: L, or the tail's first key m0 (whole pages when paged).
  // One split over each whole cache row: cache_seqlens, page_table and
  // batch_cu as they are (the large-batch decode step: a few kernels, not ~25).
  const bool windowed = p.window_left >= 0;  // a left window (dense, Sq == 1: make_plan)
  const bool whole_rows = splits == 1 && !windowed && !plan.tail;
  // A leading empty sequence (lead_zero) where a dense call's first sequence does not start
  // at row 0: the split call with a window (its first key), the tail call (its first key, stop).
  // Without a window the split call's first chunk starts at row 0 of batch 0.
  const bool lead = !kp.paged && windowed;
  const bool lead_tail = !kp.paged;
  Tensor k = k_cache, v = v_cache;
  if (!kp.paged) {
    k = cache_as_rows(k_cache, batch, kp.rows_per_batch);
    v = cache_as_rows(v_cache, batch, kp.rows_per_batch);
  }
  Tensor seqlen, stop, seqused;
  OptTensor cu_k, table;
  if (whole_rows) {
    seqused = cache_seqlens;
    table = page_table;
    if (!kp.paged) cu_k = batch_cu(batch, kp.rows_per_batch, k.size(0), index.dtype(at::kLong));
  } else {
    seqlen = cache_seqlens;  // [B] int32
    stop = seqlen;
    if (plan.tail) {
      stop = (seqlen - (sq - 1 - p.window_right)).clamp_min(0);
      if (kp.paged) stop = at::div(stop, p.page_size, "floor") * p.page_size;
    }
    // The first key: the window's, or 0 (then len = stop and start = offset: no kernels).
    Tensor first, len = stop;
    if (windowed) {
      // max(L - left - 1, 0), with left capped at capacity - 1 (L <= capacity): int32.
      first = (seqlen - (std::min(p.window_left, kp.cache_rows - 1) + 1)).clamp_min(0);
      len = stop - first;
    }
    Tensor chunk = at::div(len + (splits - 1), splits, "floor");
    if (kp.paged) chunk = at::div(chunk + (p.page_size - 1), p.page_size, "floor") * p.page_size;
    // Chunk boundaries min(s * chunk, len), s = 0..S: split s is [bound_s, bound_s+1) after
    // `first`, so its key count is the difference (= min(chunk, stop - start)).
    const Tensor bound = at::minimum(at::arange(splits + 1, index).unsqueeze(0) * chunk.unsqueeze(1),
                                     len.unsqueeze(1));                        // [B, S + 1]
    const Tensor offset = bound.narrow(1, 0, splits);                          // [B, S]
    const Tensor start = windowed ? first.unsqueeze(1) + offset : offset;      // [B, S]
    const Tensor used = bound.narrow(1, 1, splits) - offset;
    seqused = used.reshape({batch * splits});
    if (lead) seqused = lead_zero(seqused);
    if (kp.paged) {
      // Split s's page_table row: b's row from the chunk's first page on (chunks
      // are page-aligned).
      table = shifted_table(*page_table, at::div(start, p.page_size, "floor"));
    } else {
      const Tensor slot = at::arange(batch, index).unsqueeze(1) * kp.rows_per_batch;
      const Tensor starts = (slot + start).reshape({batch * splits});
      cu_k = starts_to_cu(lead ? lead_zero(starts) : starts, k.size(0));
    }
  }
  // q rows of one split: [B, rows, heads, D]; GQA packing puts query head
  // kv * G + g at row g of head kv.
  const Tensor q_rows = plan.gqa_rows
      ? q.select(1, 0).unflatten(1, {heads_kv, heads / heads_kv}).transpose(1, 2)
      : q;
  const int64_t rows = plan.rows;
  const Tensor q_split = q_rows.unsqueeze(1)
                             .expand({batch, splits, rows, plan.heads, d})
                             .reshape({batch * splits * rows, plan.heads, d});
  const Tensor cu_q = cu_rows(batch * splits, rows, lead, index);
  // Partials: FP8 inputs give float16 (|o| <= 448 without v_descale; 3 more
  // mantissa bits than bfloat16), other inputs their own dtype.
  const at::ScalarType partial_dtype =
      q.scalar_type() == at::kFloat8_e4m3fn ? at::kHalf : q.scalar_type();
  const bool merge = plan.merge || plan.tail;
  auto [out_p, lse_p] = varlen_fwd_op().call(
      q_split, k, v, cu_q, cu_k, c10::SymInt(rows), std::nullopt, softmax_scale, false, -1, -1,
      lead_row(per_sequence(q_descale, batch, splits), lead),
      lead_row(per_sequence(k_descale, batch, splits), lead),
      merge ? OptTensor() : lead_row(per_sequence(v_descale, batch, splits), lead),
      merge ? OptTensor() : out_scale,
      merge ? std::optional<at::ScalarType>(partial_dtype) : out_dtype, softcap,
      merge ? OptTensor() : sinks, seqused, table);
  // Views (no copies) [B, S, Sq, Ho, Hi, D] / [B, S, Sq, Ho, Hi] of the partials, query
  // head ho * Hi + hi (merge_splits_op.h): GQA packing's row g of head kv is query head
  // kv * G + g.
  Tensor o, l;
  if (plan.gqa_rows) {
    o = out_p.view({batch, splits, rows, heads_kv, d}).permute({0, 1, 3, 2, 4}).unsqueeze(2);
    l = lse_p.view({heads_kv, batch, splits, rows}).permute({1, 2, 0, 3}).unsqueeze(2);
  } else {
    o = out_p.view({batch, splits, sq, heads, 1, d});
    l = lse_p.view({heads, batch, splits, sq}).permute({1, 2, 3, 0}).unsqueeze(4);
  }
  if (plan.tail) {
    // Keys [stop, L): one sequence per batch ending at L, the kernel's mask as given.
    OptTensor cu_k_tail, table_tail;
    if (kp.paged) {
      table_tail = shifted_table(*page_table, at::div(stop, p.page_size, "floor").unsqueeze(1));
    } else {
      cu_k_tail = starts_to_cu(lead_zero(at::arange(batch, index) * kp.rows_per_batch + stop), k.size(0));
    }
    Tensor seqused_tail = seqlen - stop;
    if (lead_tail) seqused_tail = lead_zero(seqused_tail);
    auto [out_t, lse_t] = varlen_fwd_op().call(
        q.reshape({batch * sq, heads, d}), k, v, cu_rows(batch, sq, lead_tail, index), cu_k_tail,
        c10::SymInt(sq), std::nullopt, softmax_scale, causal, window_left, window_right,
        lead_row(q_descale, lead_tail), lead_row(k_descale, lead_tail), OptTensor(), OptTensor(), partial_dtype,
        softcap, OptTensor(), seqused_tail, table_tail);
    o = at::cat({o, out_t.view({batch, 1, sq, heads, 1, d})}, 1);
    l = at::cat({l, lse_t.view({heads, batch, 1, sq}).permute({1, 2, 3, 0}).unsqueeze(4)}, 1);
  }
  if (!merge) {
    return {o.select(1, 0).reshape({batch, sq, heads, d}).contiguous(),
            l.select(1, 0).reshape({batch, sq, heads}).permute({0, 2, 1}).contiguous()};
  }
  return merge_splits(o, l, sinks, v_descale, out_scale, heads_kv, acc, p.out_dtype);
}

using KvcacheSig = std::tuple<Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OptTensor&, const OptTensor&,
    std::optional<c10::SymInt>, std::optional<double>, bool, int64_t, int64_t, double,
    const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&,
    std::optional<at::ScalarType>, int64_t);

const c10::TypedOperatorHandle<KvcacheSig>& kvcache_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("torch_fmha::fwd_kvcache", "")
                             .typed<KvcacheSig>();
  return op;
}

bool requires_grad(const OptTensor& t) { return t.has_value() && t->requires_grad(); }

}  // namespace

// There is no backward: a forward under grad mode works (a decode step in a
// model whose weights require grad), its backward says so. Without this
// kernel autograd's fallback would record the nested varlen_fwd and the ATen
// ops of the split plan, and fail there with varlen_fwd's message and a warning.
struct KvcacheNoBackward : public torch::autograd::Function<KvcacheNoBackward> {
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext*, const Tensor& q, const Tensor& k_cache,
      const Tensor& v_cache, const Tensor& cache_seqlens, const OptTensor& page_table,
      const OptTensor& cu_seqlens_q, std::optional<c10::SymInt> max_seqlen_q,
      std::optional<double> softmax_scale, bool causal, int64_t window_left, int64_t window_right,
      double softcap, const OptTensor& sinks, const OptTensor& q_descale,
      const OptTensor& k_descale, const OptTensor& v_descale, const OptTensor& out_scale,
      std::optional<at::ScalarType> out_dtype, int64_t num_splits) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, lse] = kvcache_op().call(q, k_cache, v_cache, cache_seqlens, page_table,
                                        cu_seqlens_q, std::move(max_seqlen_q), softmax_scale,
                                        causal, window_left, window_right, softcap, sinks,
                                        q_descale, k_descale, v_descale, out_scale, out_dtype,
                                        num_splits);
    return {out, lse};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list) {
    TORCH_CHECK(false, "torch_fmha.fwd_kvcache: there is no backward (attention against a KV "
                "cache is an inference op); call it under torch.no_grad() / "
                "torch.inference_mode()");
    return {};
  }
};

namespace {

std::tuple<Tensor, Tensor> fwd_kvcache_autograd(
    const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const Tensor& cache_seqlens,
    const OptTensor& page_table, const OptTensor& cu_seqlens_q,
    std::optional<c10::SymInt> max_seqlen_q, std::optional<double> softmax_scale, bool causal,
    int64_t window_left, int64_t window_right, double softcap, const OptTensor& sinks,
    const OptTensor& q_descale, const OptTensor& k_descale, const OptTensor& v_descale,
    const OptTensor& out_scale, std::optional<at::ScalarType> out_dtype, int64_t num_splits) {
  const bool grad = at::GradMode::is_enabled() &&
                    (q.requires_grad() || k_cache.requires_grad() || v_cache.requires_grad() ||
                     requires_grad(sinks) || requires_grad(q_descale) ||
                     requires_grad(k_descale) || requires_grad(v_descale) ||
                     requires_grad(out_scale));
  if (!grad) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return kvcache_op().call(q, k_cache, v_cache, cache_seqlens, page_table, cu_seqlens_q,
                             std::move(max_seqlen_q), softmax_scale, causal, window_left,
                             window_right, softcap, sinks, q_descale, k_descale, v_descale,
                             out_scale, out_dtype, num_splits);
  }
  auto r = KvcacheNoBackward::apply(q, k_cache, v_cache, cache_seqlens, page_table, cu_seqlens_q,
                                    std::move(max_seqlen_q), softmax_scale, causal, window_left,
                                    window_right, softcap, sinks, q_descale, k_descale, v_descale,
                                    out_scale, out_dtype, num_splits);
  return {r[0], r[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_fmha, CompositeExplicitAutograd, m) {
  m.impl("fwd_kvcache", &fwd_kvcache);
}

TORCH_LIBRARY_IMPL(torch_fmha, Autograd, m) {
  m.impl("fwd_kvcache", &fwd_kvcache_autograd);
}

}  // namespace torch_fmha
