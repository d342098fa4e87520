// torch_fmha: fwd_kvcache's CUDA decode-kernel path (kvcache_decode.h): which steps
// (Sq x G <= 64 rows: up to four 16-row tiles; packed q by its max_seqlen_q hint) the split-KV decode kernel (csrc/kernel/decode.cuh)
// takes, how many splits it gets, and the call: the kernel writes each split's o / lse
// (every mask applied there), the merge kernel
// (merge_splits_op.h) adds sinks, v_descale and out_scale and rounds to out_dtype.
// DESIGN 1.11 says why and what it measured.
#include "kvcache_decode.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../decode_splits.h"
#include "../launch/launch_decode.h"
#include "kernel_args.h"
#include "merge_splits_op.h"

namespace torch_fmha {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

int64_t cuda_sm_count(int device) {
  static std::array<std::atomic<int>, 64> counts{};  // 0: not read yet
  TORCH_CHECK(device >= 0 && device < 64, "torch_fmha: device index ", device, " out of range");
  int n = counts[device].load(std::memory_order_acquire);
  if (n == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    counts[device].store(n, std::memory_order_release);
  }
  return n;
}

namespace {

// Whether a grid of `ctas` decode CTAs, more than one wave at `per_sm` CTAs per SM,
// runs with one CTA fewer per SM (launch_decode's fewer_ctas_per_sm): when that fills
// its last wave better. B = 64, Hkv = 8, one split: 512 CTAs are 1.3 waves of 3 x 132
// (the last a third full) but 1.9 of 2 x 132; measured (one H200, D = 128, 8k keys,
// graph replays): 83% of copy bandwidth at two CTAs per SM, 78% at three. Within one
// wave (B = 8 with its splits) it keeps every slot.
bool decode_fewer_ctas_per_sm(int64_t ctas, int64_t sms, int64_t per_sm) {
  if (per_sm < 2 || sms <= 0 || ctas <= sms * per_sm) return false;
  auto filled = [&](int64_t n) {  // fraction of the grid's waves' slots the CTAs use
    const int64_t slots = sms * n;
    return static_cast<double>(ctas) / static_cast<double>((ctas + slots - 1) / slots * slots);
  };
  return filled(per_sm - 1) > filled(per_sm) + 0.05;
}

bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

// Query rows per KV head the decode kernel is sized for: Sq x G with dense q; with packed
// q, the max_seqlen_q hint (at least 1) x G. 0 when packed q comes without a hint: the
// kernel's grid would have no size to take (the ops never read cu_seqlens on the host).
int64_t decode_rows_per_kv_head(const KvcacheProblem& kp, std::optional<int64_t> max_seqlen_q) {
  const int64_t group = kp.fwd.heads_q / kp.fwd.heads_kv;
  if (!kp.packed_q) return kp.seqlen_q * group;
  if (!max_seqlen_q.has_value()) return 0;
  return std::max<int64_t>(*max_seqlen_q, 1) * group;
}

// A step the decode kernel takes: FP8 on CUDA, q whose rows per KV head
// (decode_rows_per_kv_head) fit four 16-row tiles (decode_kernel_supports), D 64 / 128 /
// 256, rows 16-byte aligned (its cp.async copies, 4-byte q loads) and grid-sized batch,
// head and split counts. It applies every mask itself (bottom-right against
// cache_seqlens). Packed q takes it with a max_seqlen_q hint; a sequence longer than the
// hint is still computed whole (DecodeRows::kPacked), only with fewer CTAs.
bool decode_kernel_takes(const KvcacheProblem& kp, std::optional<int64_t> max_seqlen_q, int64_t num_splits,
                         const Tensor& q, const Tensor& k, const Tensor& v) {
  const FwdProblem& p = kp.fwd;
  if (!q.is_cuda() || q.scalar_type() != at::kFloat8_e4m3fn) return false;
  const int64_t rows = decode_rows_per_kv_head(kp, max_seqlen_q);
  if (rows == 0 || !decode_kernel_supports(static_cast<int>(p.head_dim), static_cast<int>(std::min<int64_t>(rows, 1 << 20)))) {
    return false;
  }
  // B = 0 launches no CTA (packed q with rows but no sequence breaks cu_seqlens_q's contract:
  // left to the plans, as before, rather than merging partials no CTA wrote).
  if (p.batch == 0 || p.batch > 65535 || p.heads_kv > 65535 || num_splits > 65535) return false;
  if (kp.cache_rows > std::numeric_limits<int32_t>::max()) return false;
  for (const Tensor* t : {&k, &v}) {
    if (!aligned16(*t) || t->stride(0) % 16 || t->stride(1) % 16 || t->stride(2) % 16) return false;
  }
  if (kp.packed_q) {
    // [Tq, H, D]; a sequence's Sq_b x G rows are counted in int32 in the kernel.
    const int64_t group = p.heads_q / p.heads_kv;
    return aligned16(q) && q.stride(0) % 16 == 0 && q.stride(1) % 16 == 0 &&
           kp.seqlen_q * group <= std::numeric_limits<int32_t>::max();
  }
  // The row stride is read only for Sq > 1 (a size-1 dim's stride can be anything).
  return aligned16(q) && q.stride(0) % 16 == 0 && (kp.seqlen_q == 1 || q.stride(1) % 16 == 0) &&
         q.stride(2) % 16 == 0;
}

// The decode kernel writes each split's o / lse; merge_splits (one kernel) adds the
// sinks, v_descale and out_scale and rounds to out_dtype, as for the split plan.
std::tuple<Tensor, Tensor> decode_call(const KvcacheProblem& kp, int64_t rows_per_kv_head, int64_t splits,
                                       const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cache_seqlens,
                                       const OptTensor& page_table, const OptTensor& cu_seqlens_q, double softcap,
                                       const OptTensor& sinks, const OptTensor& q_descale, const OptTensor& k_descale,
                                       const OptTensor& v_descale, const OptTensor& out_scale) {
  const FwdProblem& p = kp.fwd;
  const int64_t batch = p.batch, sq = kp.seqlen_q, heads_kv = p.heads_kv;
  const int64_t group = p.heads_q / p.heads_kv, d = p.head_dim;
  c10::cuda::CUDAGuard guard(q.device());
  // [B, S, Sq, Ho = Hkv, Hi = G, (D)]: the merge's layout (query head ho * G + hi); packed
  // q: [Tq, S, 1, Ho, Hi, (D)], a query token in place of the batch (decode_params.h).
  const int64_t parts = kp.packed_q ? sq : batch, part_rows = kp.packed_q ? 1 : sq;
  Tensor o = at::empty({parts, splits, part_rows, heads_kv, group, d}, q.options().dtype(at::kHalf));
  Tensor l = at::empty({parts, splits, part_rows, heads_kv, group}, q.options().dtype(at::kFloat));
  DecodeParams dp;
  dp.q = static_cast<const uint8_t*>(q.data_ptr());
  dp.k = static_cast<const uint8_t*>(k.data_ptr());
  dp.v = static_cast<const uint8_t*>(v.data_ptr());
  if (kp.packed_q) {  // [Tq, H, D]
    dp.q_row_stride = q.stride(0);
    dp.q_head_stride = q.stride(1);
    dp.cu_seqlens_q = cu_seqlens_q->data_ptr<int32_t>();
    dp.total_q = static_cast<int32_t>(sq);
  } else {
    dp.q_batch_stride = q.stride(0);
    dp.q_row_stride = q.stride(1);
    dp.q_head_stride = q.stride(2);
  }
  dp.k_batch_stride = k.stride(0);
  dp.k_row_stride = k.stride(1);
  dp.k_head_stride = k.stride(2);
  dp.v_batch_stride = v.stride(0);
  dp.v_row_stride = v.stride(1);
  dp.v_head_stride = v.stride(2);
  dp.cache_seqlens = cache_seqlens.data_ptr<int32_t>();
  if (kp.paged) {
    dp.page_table = page_table->data_ptr<int32_t>();
    dp.page_table_stride = page_table->stride(0);
    dp.page_size = static_cast<int32_t>(p.page_size);
    while ((int64_t(1) << dp.page_shift) < p.page_size) ++dp.page_shift;  // a power of two (checks.cpp)
    dp.num_pages = static_cast<int32_t>(std::min<int64_t>({k.size(0), v.size(0), std::numeric_limits<int32_t>::max()}));
  }
  dp.capacity = static_cast<int32_t>(kp.cache_rows);
  dp.batch = static_cast<int32_t>(batch);
  dp.seqlen_q = static_cast<int32_t>(rows_per_kv_head / group);  // packed q: the hint (>= 1)
  dp.heads_kv = static_cast<int32_t>(heads_kv);
  dp.group = static_cast<int32_t>(group);
  dp.head_dim = static_cast<int32_t>(d);
  dp.splits = static_cast<int32_t>(splits);
  dp.row_tiles = decode_row_tiles(static_cast<int>(rows_per_kv_head));
  dp.window_left = kernel_window(p.window_left);
  dp.window_right = kernel_window(p.window_right);
  dp.softmax_scale = static_cast<float>(p.softmax_scale);
  dp.softcap = static_cast<float>(softcap);
  dp.q_descale = scale_tensor(q_descale);
  dp.k_descale = scale_tensor(k_descale);
  dp.o_part = o.data_ptr();
  dp.lse_part = l.data_ptr<float>();
  // Packed q with a [B, Hkv] v_descale: the decode kernel writes it per token for the merge
  // (a gather by ATen ops before the decode launch cost 9-12 us per step at batch 1 and 8 in
  // session 36's call 3).
  OptTensor merge_v_descale = v_descale;
  if (kp.packed_q && v_descale.has_value() && v_descale->dim() == 2) {
    merge_v_descale = at::empty({sq, heads_kv}, v_descale->options());
    dp.v_descale = scale_tensor(v_descale);
    dp.v_descale_tokens = merge_v_descale->data_ptr<float>();
  }
  const int64_t sms = cuda_sm_count(q.device().index());
  const bool fewer = decode_fewer_ctas_per_sm(batch * heads_kv * dp.row_tiles * splits, sms,
                                              decode_ctas_per_sm(static_cast<int>(d)));
  const cudaError_t err = launch_decode(dp, fewer, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "torch_fmha.fwd_kvcache: decode kernel launch failed: ",
              cudaGetErrorString(err));
  if (!kp.packed_q) return merge_splits(o, l, sinks, v_descale, out_scale, heads_kv, at::kFloat, p.out_dtype);
  // out [Tq, 1, H, D] -> [Tq, H, D]; lse [H, Tq] (varlen_attention's layout) from the merge.
  auto [out, lse] = merge_splits(o, l, sinks, merge_v_descale, out_scale, heads_kv, at::kFloat, p.out_dtype,
                                 MergeLse::kHeadsByBatch);
  return {out.view({sq, p.heads_q, d}), lse};
}

}  // namespace

std::optional<std::tuple<Tensor, Tensor>> decode_kernel_call(
    const KvcacheProblem& kp, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cache_seqlens,
    const OptTensor& page_table, const OptTensor& cu_seqlens_q, std::optional<int64_t> max_seqlen_q,
    double softcap, const OptTensor& sinks, const OptTensor& q_descale, const OptTensor& k_descale,
    const OptTensor& v_descale, const OptTensor& out_scale, int64_t num_splits) {
  if (!decode_kernel_takes(kp, max_seqlen_q, num_splits, q, k, v)) return std::nullopt;
  const int64_t rows = decode_rows_per_kv_head(kp, max_seqlen_q);
  const FwdProblem& p = kp.fwd;
  c10::cuda::CUDAGuard guard(q.device());  // the occupancy query below reads the current device
  int64_t splits = num_splits;
  if (splits == 0) {
    int64_t keys = kp.cache_rows;  // what a split range can cover: row 0's window edge to L
    // kernel_window: the sum overflowed int64 for a window_left near 2^63.
    const int64_t sq = rows / (p.heads_q / p.heads_kv);  // packed q: the hint
    if (p.window_left >= 0) keys = std::min<int64_t>(keys, kernel_window(p.window_left) + sq);
    const int64_t sms = cuda_sm_count(q.device().index());
    const int64_t per_sm = decode_ctas_per_sm(static_cast<int>(p.head_dim));
    // A split takes a CTA per row tile: the rule counts (batch, KV head, row tile) triples.
    const int64_t row_tiles = decode_row_tiles(static_cast<int>(rows));
    splits = choose_decode_splits(p.batch * p.heads_kv * row_tiles, keys, sms * per_sm,
                                  sms * std::min<int64_t>(per_sm, 2), sms);
  }
  return decode_call(kp, rows, splits, q, k, v, cache_seqlens, page_table, cu_seqlens_q, softcap, sinks, q_descale,
                     k_descale, v_descale, out_scale);
}

}  // namespace torch_fmha
