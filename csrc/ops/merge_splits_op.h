// torch_fmha: the split-KV merge of fwd_kvcache (csrc/ops/kvcache_op.cpp) on CPU
// and CUDA tensors: one CUDA launch, or the same arithmetic on the host
// (csrc/merge_splits.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace torch_fmha {

// The merged LSE's layout: [B, H, Sq], or [H, B] with Sq = 1 (the decode kernel's packed q,
// whose partials have a query token where dense q has a batch: varlen_attention's [H, Tq],
// written so by the kernel rather than by a transposing copy after it).
enum class MergeLse { kBatchHeadsRows, kHeadsByBatch };

// Merges partial results o [B, S, Sq, Ho, Hi, D] and lse [B, S, Sq, Ho, Hi] (any
// strides; query head h = ho * Hi + hi) by their LSE in `acc`, adds the sink (per
// query head, [H]) to every row's denominator, applies v_descale ([1] or [B, Hkv]) and
// out_scale, rounds to out_dtype. Returns out [B, Sq, H, D] and lse (acc, laid out as
// `lse_as` says). CUDA: o float16, lse / sinks / descales float32, acc float32 (FP8 inputs).
std::tuple<at::Tensor, at::Tensor> merge_splits(const at::Tensor& o_parts, const at::Tensor& lse_parts,
                                                const std::optional<at::Tensor>& sinks,
                                                const std::optional<at::Tensor>& v_descale,
                                                const std::optional<at::Tensor>& out_scale,
                                                int64_t heads_kv, at::ScalarType acc,
                                                at::ScalarType out_dtype,
                                                MergeLse lse_as = MergeLse::kBatchHeadsRows);

}  // namespace torch_fmha
