// torch_fmha: the split-KV merge (merge_splits_op.h): one launch of
// csrc/kernel/merge_splits.cuh on CUDA tensors; on CPU tensors the same per-row
// functions of csrc/merge_splits.h in a parallel loop, so the CPU suite runs the
// kernel's arithmetic.
#include "merge_splits_op.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>

#ifdef TORCH_FMHA_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../launch/launch_merge.h"
#endif
#include "../merge_splits.h"

namespace torch_fmha {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

MergeLayout layout_of(const Tensor& t) {  // [B, S, Sq, Ho, Hi(, D)]
  MergeLayout l;
  l.b = t.stride(0), l.s = t.stride(1), l.sq = t.stride(2), l.ho = t.stride(3), l.hi = t.stride(4);
  l.d = t.dim() == 6 ? t.stride(5) : 0;
  l.heads_inner = static_cast<int32_t>(t.size(4));
  return l;
}

template <class Acc>
void merge_cpu(const Tensor& o, const Tensor& l, const OptTensor& sinks, const OptTensor& vd,
               const OptTensor& out_scale, int64_t heads_kv, bool fp8, Tensor& out, Tensor& lse) {
  const int64_t batch = o.size(0), splits = o.size(1), sq_len = o.size(2);
  const int64_t heads = o.size(3) * o.size(4), d_len = o.size(5);
  const MergeLayout ol = layout_of(o), ll = layout_of(l);
  const Acc* op = o.const_data_ptr<Acc>();
  const Acc* lp = l.const_data_ptr<Acc>();
  const Acc* sink = sinks.has_value() ? sinks->const_data_ptr<Acc>() : nullptr;
  const Acc* vdp = vd.has_value() ? vd->const_data_ptr<Acc>() : nullptr;
  const bool vd_per_head = vd.has_value() && vd->dim() == 2;
  const Acc os = out_scale.has_value() ? out_scale->const_data_ptr<Acc>()[0] : Acc(1);
  Acc* outp = out.data_ptr<Acc>();
  Acc* lsep = lse.data_ptr<Acc>();
  const int64_t group = heads / heads_kv;
  at::parallel_for(0, batch * sq_len * heads, 64, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int h = int(row % heads), sq = int((row / heads) % sq_len), b = int(row / (heads * sq_len));
      const Acc* lrow = lp + ll.offset(b, 0, sq, h, 0);
      const auto lse_at = [&](int s) { return lrow[s * ll.s]; };
      const MergeRow<Acc> r = merge_row<Acc>(int(splits), lse_at, sink != nullptr,
                                             sink != nullptr ? sink[h] : Acc(0));
      const Acc v = vdp == nullptr ? Acc(1) : vdp[vd_per_head ? b * heads_kv + h / group : 0];
      const Acc* orow = op + ol.offset(b, 0, sq, h, 0);
      Acc* sum = outp + row * d_len;  // sum_s weight_s o_s[d], added in split order as the kernel does
      std::fill(sum, sum + d_len, Acc(0));
      if (!r.empty && r.defined) {
        for (int64_t s = 0; s < splits; ++s) {
          const Acc w = r.weight(lse_at(int(s)));
          for (int64_t d = 0; d < d_len; ++d) sum[d] += w * orow[s * ol.s + d * ol.d];
        }
      }
      for (int64_t d = 0; d < d_len; ++d) sum[d] = r.out(sum[d], v, os, fp8);
      lsep[(int64_t(b) * heads + h) * sq_len + sq] = r.lse;
    }
  });
}

#ifdef TORCH_FMHA_WITH_CUDA
MergeOutType merge_out_type(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return MergeOutType::kBFloat16;
    case at::kHalf: return MergeOutType::kFloat16;
    case at::kFloat8_e4m3fn: return MergeOutType::kFloat8E4M3;
    default: TORCH_INTERNAL_ASSERT(false, "torch_fmha merge_splits: out_dtype ", t);
  }
  return MergeOutType::kBFloat16;
}

std::tuple<Tensor, Tensor> merge_cuda(const Tensor& o, const Tensor& l, const OptTensor& sinks,
                                      const OptTensor& vd, const OptTensor& out_scale,
                                      int64_t heads_kv, at::ScalarType out_dtype, MergeLse lse_as) {
  TORCH_INTERNAL_ASSERT(o.scalar_type() == at::kHalf && l.scalar_type() == at::kFloat,
                        "torch_fmha merge_splits: CUDA partials are float16 / float32");
  const int64_t batch = o.size(0), sq = o.size(2), heads = o.size(3) * o.size(4), d = o.size(5);
  Tensor out = at::empty({batch, sq, heads, d}, o.options().dtype(out_dtype));
  const bool heads_by_batch = lse_as == MergeLse::kHeadsByBatch;
  Tensor lse = heads_by_batch ? at::empty({heads, batch}, l.options()) : at::empty({batch, heads, sq}, l.options());
  // Descales and sinks are float32 (checked by the op); contiguous() is free when they are.
  const Tensor sink_c = sinks.has_value() ? sinks->contiguous() : Tensor();
  const Tensor vd_c = vd.has_value() ? vd->contiguous() : Tensor();
  const Tensor os_c = out_scale.has_value() ? out_scale->contiguous() : Tensor();
  MergeParams p;
  p.head_dim = int32_t(d);
  p.o_parts = o.const_data_ptr();
  p.o_layout = layout_of(o);
  // The kernel's whole-split loads (MergeParams::partials_load_whole); the decode kernel's
  // partials qualify, and so do the split plans' (views of contiguous varlen outputs);
  // anything else would be copied here.
  const Tensor o_whole = p.partials_load_whole() ? o : o.clone(at::MemoryFormat::Contiguous);
  p.o_parts = o_whole.const_data_ptr();
  p.o_layout = layout_of(o_whole);
  TORCH_INTERNAL_ASSERT(p.partials_load_whole(), "torch_fmha merge_splits: head_dim ", d);
  p.lse_parts = l.const_data_ptr<float>();
  p.out = out.data_ptr();
  p.lse_out = lse.data_ptr<float>();
  p.sinks = sinks.has_value() ? sink_c.const_data_ptr<float>() : nullptr;
  p.v_descale = vd.has_value() ? vd_c.const_data_ptr<float>() : nullptr;
  p.out_scale = out_scale.has_value() ? os_c.const_data_ptr<float>() : nullptr;
  p.lse_layout = layout_of(l);
  if (heads_by_batch) {  // [H, B] (Sq = 1)
    p.lse_out_stride[0] = 1, p.lse_out_stride[1] = 0, p.lse_out_stride[2] = batch;
  } else {  // [B, H, Sq]
    p.lse_out_stride[0] = heads * sq, p.lse_out_stride[1] = 1, p.lse_out_stride[2] = sq;
  }
  p.batch = int32_t(batch), p.splits = int32_t(o.size(1)), p.seqlen_q = int32_t(sq);
  p.heads = int32_t(heads), p.heads_kv = int32_t(heads_kv);
  p.v_descale_per_head = vd.has_value() && vd->dim() == 2;
  p.out_type = merge_out_type(out_dtype);
  const c10::cuda::CUDAGuard guard(o.device());
  const cudaError_t err = launch_merge_splits(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "torch_fmha.fwd_kvcache: merge kernel launch failed: ",
              cudaGetErrorString(err));
  return {out, lse};
}
#endif

}  // namespace

std::tuple<Tensor, Tensor> merge_splits(const Tensor& o_parts, const Tensor& lse_parts,
                                        const OptTensor& sinks, const OptTensor& v_descale,
                                        const OptTensor& out_scale, int64_t heads_kv,
                                        at::ScalarType acc, at::ScalarType out_dtype, MergeLse lse_as) {
  TORCH_INTERNAL_ASSERT(o_parts.dim() == 6 && lse_parts.dim() == 5);
  TORCH_INTERNAL_ASSERT(lse_as == MergeLse::kBatchHeadsRows || o_parts.size(2) == 1);
#ifdef TORCH_FMHA_WITH_CUDA
  if (o_parts.is_cuda()) {
    return merge_cuda(o_parts, lse_parts, sinks, v_descale, out_scale, heads_kv, out_dtype, lse_as);
  }
#endif
  const auto as_acc = [&](const OptTensor& t) -> OptTensor {
    if (!t.has_value()) return t;
    return t->to(acc).contiguous();
  };
  const Tensor o = o_parts.to(acc), l = lse_parts.to(acc);  // no copy when already acc
  const int64_t batch = o.size(0), sq = o.size(2), heads = o.size(3) * o.size(4), d = o.size(5);
  Tensor out = at::empty({batch, sq, heads, d}, o.options());
  Tensor lse = at::empty({batch, heads, sq}, o.options());
  AT_DISPATCH_FLOATING_TYPES(acc, "torch_fmha merge_splits", [&] {
    merge_cpu<scalar_t>(o, l, as_acc(sinks), as_acc(v_descale), as_acc(out_scale), heads_kv,
                        out_dtype == at::kFloat8_e4m3fn, out, lse);
  });
  if (lse_as == MergeLse::kHeadsByBatch) lse = lse.view({batch, heads}).t().contiguous();
  return {out_dtype == acc ? out : out.to(out_dtype), lse};
}

}  // namespace torch_fmha
