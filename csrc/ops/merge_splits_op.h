// torch_fmha: the split-KV merge of fwd_kvcache (csrc/ops/kvcache_op.cpp) on CPU
// and CUDA tensors: one CUDA launch, or the same arithmetic on the host
// (csrc/merge_splits.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "../merge_splits.h"

namespace torch_fmha {

// Merges partial results o [B, S, Sq, Ho, Hi, D] and lse [B, S, Sq, Ho, Hi] (any
// strides; query head h = ho * Hi + hi) by their LSE in `acc`, adds the sink (per
// query head, [H]) to every row's denominator, applies v_descale ([1] or [B, Hkv]) and
// out_scale, rounds to out_dtype. Returns out [B, Sq, H, D] and lse [B, H, Sq] (acc).
// CUDA: o float16, lse / sinks / descales float32, acc float32 (FP8 inputs).
std::tuple<at::Tensor, at::Tensor> merge_splits(const at::Tensor& o_parts, const at::Tensor& lse_parts,
                                                const std::optional<at::Tensor>& sinks,
                                                const std::optional<at::Tensor>& v_descale,
                                                const std::optional<at::Tensor>& out_scale,
                                                int64_t heads_kv, at::ScalarType acc,
                                                at::ScalarType out_dtype);

#ifdef TORCH_FMHA_WITH_CUDA
// The outputs of a CUDA merge, out [B, Sq, H, D] (out_dtype) and lse [B, H, Sq] (float32)
// on `like`'s device, and the MergeParams fields that say where they go and how (sinks,
// descales, out type, sizes); the partials' fields (o_parts, lse_parts, layouts) are the
// caller's. sinks / v_descale / out_scale hold the contiguous tensors the pointers
// address. Used by the merge kernel's launch and by the decode kernel's cluster merge
// (csrc/ops/kvcache_decode_cuda.cpp).
struct MergeOutputs {
  at::Tensor out, lse, sinks, v_descale, out_scale;
  MergeParams params;
};
MergeOutputs merge_outputs_cuda(const at::Tensor& like, int64_t batch, int64_t splits, int64_t sq, int64_t heads,
                                int64_t heads_kv, int64_t head_dim, const std::optional<at::Tensor>& sinks,
                                const std::optional<at::Tensor>& v_descale,
                                const std::optional<at::Tensor>& out_scale, at::ScalarType out_dtype);
#endif

}  // namespace torch_fmha
