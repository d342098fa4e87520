// torch_fmha: fwd_kvcache's CUDA decode-kernel path (kvcache_decode.h): which steps
// (dense q, Sq x G <= 64 rows: up to four 16-row tiles) the split-KV decode kernel (csrc/kernel/decode.cuh)
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

// A step the decode kernel takes: FP8 on CUDA, dense q whose Sq x G rows (G = H / Hkv)
// fit four 16-row tiles (decode_kernel_supports), D 64 / 128 / 256, rows 16-byte aligned (its cp.async copies,
// 4-byte q loads) and grid-sized batch, head and split counts. It applies every mask
// itself (bottom-right against cache_seqlens).
bool decode_kernel_takes(const KvcacheProblem& kp, int64_t num_splits, const Tensor& q, const Tensor& k,
                         const Tensor& v) {
  const FwdProblem& p = kp.fwd;
  if (!q.is_cuda() || q.scalar_type() != at::kFloat8_e4m3fn || kp.packed_q) return false;
  const int64_t rows = kp.seqlen_q * (p.heads_q / p.heads_kv);
  if (!decode_kernel_supports(static_cast<int>(p.head_dim), static_cast<int>(std::min<int64_t>(rows, 1 << 20)))) {
    return false;
  }
  if (p.batch > 65535 || p.heads_kv > 65535 || num_splits > 65535) return false;
  if (kp.cache_rows > std::numeric_limits<int32_t>::max()) return false;
  for (const Tensor* t : {&k, &v}) {
    if (!aligned16(*t) || t->stride(0) % 16 || t->stride(1) % 16 || t->stride(2) % 16) return false;
  }
  // The row stride is read only for Sq > 1 (a size-1 dim's stride can be anything).
  return aligned16(q) && q.stride(0) % 16 == 0 && (kp.seqlen_q == 1 || q.stride(1) % 16 == 0) &&
         q.stride(2) % 16 == 0;
}

// The decode kernel writes each split's o / lse; merge_splits (one kernel) adds the
// sinks, v_descale and out_scale and rounds to out_dtype, as for the split plan.
std::tuple<Tensor, Tensor> decode_call(const KvcacheProblem& kp, int64_t splits, const Tensor& q, const Tensor& k,
                                       const Tensor& v, const Tensor& cache_seqlens, const OptTensor& page_table,
                                       double softcap, const OptTensor& sinks, const OptTensor& q_descale,
                                       const OptTensor& k_descale, const OptTensor& v_descale,
                                       const OptTensor& out_scale) {
  const FwdProblem& p = kp.fwd;
  const int64_t batch = p.batch, sq = kp.seqlen_q, heads_kv = p.heads_kv;
  const int64_t group = p.heads_q / p.heads_kv, d = p.head_dim;
  c10::cuda::CUDAGuard guard(q.device());
  // [B, S, Sq, Ho = Hkv, Hi = G, (D)]: the merge's layout (query head ho * G + hi).
  Tensor o = at::empty({batch, splits, sq, heads_kv, group, d}, q.options().dtype(at::kHalf));
  Tensor l = at::empty({batch, splits, sq, heads_kv, group}, q.options().dtype(at::kFloat));
  DecodeParams dp;
  dp.q = static_cast<const uint8_t*>(q.data_ptr());
  dp.k = static_cast<const uint8_t*>(k.data_ptr());
  dp.v = static_cast<const uint8_t*>(v.data_ptr());
  dp.q_batch_stride = q.stride(0);
  dp.q_row_stride = q.stride(1);
  dp.q_head_stride = q.stride(2);
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
  }
  dp.capacity = static_cast<int32_t>(kp.cache_rows);
  dp.batch = static_cast<int32_t>(batch);
  dp.seqlen_q = static_cast<int32_t>(sq);
  dp.heads_kv = static_cast<int32_t>(heads_kv);
  dp.group = static_cast<int32_t>(group);
  dp.head_dim = static_cast<int32_t>(d);
  dp.splits = static_cast<int32_t>(splits);
  dp.row_tiles = decode_row_tiles(static_cast<int>(sq * group));
  dp.window_left = kernel_window(p.window_left);
  dp.window_right = kernel_window(p.window_right);
  dp.softmax_scale = static_cast<float>(p.softmax_scale);
  dp.softcap = static_cast<float>(softcap);
  dp.q_descale = scale_tensor(q_descale);
  dp.k_descale = scale_tensor(k_descale);
  dp.o_part = o.data_ptr();
  dp.lse_part = l.data_ptr<float>();
  const int64_t sms = cuda_sm_count(q.device().index());
  const bool fewer = decode_fewer_ctas_per_sm(batch * heads_kv * dp.row_tiles * splits, sms,
                                              decode_ctas_per_sm(static_cast<int>(d)));
  const cudaError_t err = launch_decode(dp, fewer, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "torch_fmha.fwd_kvcache: decode kernel launch failed: ",
              cudaGetErrorString(err));
  return merge_splits(o, l, sinks, v_descale, out_scale, heads_kv, at::kFloat, p.out_dtype);
}

}  // namespace

std::optional<std::tuple<Tensor, Tensor>> decode_kernel_call(
    const KvcacheProblem& kp, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cache_seqlens,
    const OptTensor& page_table, double softcap, const OptTensor& sinks, const OptTensor& q_descale,
    const OptTensor& k_descale, const OptTensor& v_descale, const OptTensor& out_scale, int64_t num_splits) {
  if (!decode_kernel_takes(kp, num_splits, q, k, v)) return std::nullopt;
  const FwdProblem& p = kp.fwd;
  c10::cuda::CUDAGuard guard(q.device());  // the occupancy query below reads the current device
  int64_t splits = num_splits;
  if (splits == 0) {
    int64_t keys = kp.cache_rows;  // what a split range can cover: row 0's window edge to L
    // kernel_window: the sum overflowed int64 for a window_left near 2^63.
    if (p.window_left >= 0) keys = std::min<int64_t>(keys, kernel_window(p.window_left) + kp.seqlen_q);
    const int64_t sms = cuda_sm_count(q.device().index());
    const int64_t per_sm = decode_ctas_per_sm(static_cast<int>(p.head_dim));
    // A split takes a CTA per row tile: the rule counts (batch, KV head, row tile) triples.
    const int64_t row_tiles = decode_row_tiles(static_cast<int>(kp.seqlen_q * (p.heads_q / p.heads_kv)));
    splits = choose_decode_splits(p.batch * p.heads_kv * row_tiles, keys, sms * per_sm,
                                  sms * std::min<int64_t>(per_sm, 2), sms);
  }
  return decode_call(kp, splits, q, k, v, cache_seqlens, page_table, softcap, sinks, q_descale, k_descale,
                     v_descale, out_scale);
}

}  // namespace torch_fmha
