// torch_fmha: the CUDA decode-kernel path of fwd_kvcache (csrc/ops/kvcache_op.cpp):
// which steps the split-KV decode kernel (csrc/kernel/decode.cuh) takes, its split
// count, and the call (the kernel, then the merge). CUDA builds only.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "kvcache_checks.h"

namespace torch_fmha {

// The SM count of a CUDA device: an attribute query (no sync, allowed during graph
// capture), read once per device.
int64_t cuda_sm_count(int device);

// An FP8 step whose Sq x G rows (G = H / Hkv; packed q: max_seqlen_q x G, a hint) fit
// the decode kernel's four 16-row tiles (64 rows): runs it on the decode kernel and the
// merge (every mask applied in the kernel) and returns out / lse, or nullopt when the
// kernel does not take the shape (D, rows, packed q without a hint, alignment, grid
// limits) and the plans must. num_splits: the op's argument (0: choose_decode_splits).
std::optional<std::tuple<at::Tensor, at::Tensor>> decode_kernel_call(
    const KvcacheProblem& kp, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& cache_seqlens, const std::optional<at::Tensor>& page_table,
    const std::optional<at::Tensor>& cu_seqlens_q, std::optional<int64_t> max_seqlen_q, double softcap,
    const std::optional<at::Tensor>& sinks, const std::optional<at::Tensor>& q_descale,
    const std::optional<at::Tensor>& k_descale, const std::optional<at::Tensor>& v_descale,
    const std::optional<at::Tensor>& out_scale, int64_t num_splits);

}  // namespace torch_fmha
