// torch_fmha::fp8_fwd / fp8_varlen_fwd: quantize_qkv then fwd / varlen_fwd in one op
// (torch_fmha.fp8_attention / fp8_varlen_attention).
//
// Why an op of its own: in a compiled model each op is one extern call in
// Inductor's generated code, with an assert per output and a view per descale.
// quantize_qkv + fwd are two calls, six outputs and three descale views per
// layer; this op is one call and two outputs, and its inner calls run below
// the Autograd key, so neither pays the autograd kernel's check. That was the
// part of a compiled layer's host time over SDPA's left to remove (docs/DESIGN.md
// section 2, "What a compiled layer still pays"). The packed v it hands fwd at
// D = 128 / 256 never leaves the op, so no trace records its layout.
//
// CompositeExplicitAutograd: one kernel for CPU and CUDA, which call the same
// quantize and attention kernels the two ops do, so the result is bitwise that of
// quantize_qkv (a packed v at D = 128 / 256 for the dense op; per-(sequence, KV
// head) scales from cu_seqlens for the varlen op) followed by fwd / varlen_fwd.
// Errors are those ops' own, in that order, after the op's rank checks; the fake
// kernels (meta/fake.py) run the same sequence. No backward: rounding to FP8 has
// no gradient; the forward runs on tensors that require grad, and a backward
// through it fails with the op's name (NoBackward).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <functional>
#include <optional>
#include <string>
#include <tuple>

#include "checks.h"
#include "op_handles.h"

TORCH_LIBRARY_FRAGMENT(torch_fmha, m) {
  // q [B, Sq, H, D], k/v [B, Sk, Hkv, D] in bf16 / fp16 / fp32 / fp64 ->
  // out [B, Sq, H, D] (out_dtype), lse [B, H, Sq] (float32). per_head and
  // qk_rotated as for quantize_qkv; the rest as for fwd.
  m.def(
      "fp8_fwd(Tensor q, Tensor k, Tensor v, bool per_head, bool qk_rotated, "
      "float? softmax_scale, bool causal, int window_left, int window_right, "
      "Tensor? out_scale, ScalarType? out_dtype, float softcap, Tensor? sinks) "
      "-> (Tensor out, Tensor lse)");
  // The same for a ragged batch: q [Tq, H, D], k/v [Tk, Hkv, D], cu_seqlens_*
  // int32 [B + 1] (per-head scales are per (sequence, KV head)) -> out [Tq, H, D],
  // lse [H, Tq]. As varlen_fwd without seqused_k / page_table.
  m.def(
      "fp8_varlen_fwd(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens_q, Tensor cu_seqlens_k, "
      "SymInt? max_seqlen_q, SymInt? max_seqlen_k, bool per_head, bool qk_rotated, "
      "float? softmax_scale, bool causal, int window_left, int window_right, "
      "Tensor? out_scale, ScalarType? out_dtype, float softcap, Tensor? sinks) "
      "-> (Tensor out, Tensor lse)");
}

namespace torch_fmha {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
using OptSymInt = std::optional<c10::SymInt>;
using ScalarTypeOpt = std::optional<at::ScalarType>;
using Outputs = std::tuple<Tensor, Tensor>;

using Fp8FwdSig = Outputs(const Tensor&, const Tensor&, const Tensor&, bool, bool,
                          std::optional<double>, bool, int64_t, int64_t, const OptTensor&,
                          ScalarTypeOpt, double, const OptTensor&);
using Fp8VarlenFwdSig = Outputs(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                const Tensor&, OptSymInt, OptSymInt, bool, bool,
                                std::optional<double>, bool, int64_t, int64_t, const OptTensor&,
                                ScalarTypeOpt, double, const OptTensor&);

const c10::TypedOperatorHandle<Fp8FwdSig>& fp8_fwd_op() {
  static const auto op = op_handle<Fp8FwdSig>("torch_fmha::fp8_fwd");
  return op;
}
const c10::TypedOperatorHandle<Fp8VarlenFwdSig>& fp8_varlen_fwd_op() {
  static const auto op = op_handle<Fp8VarlenFwdSig>("torch_fmha::fp8_varlen_fwd");
  return op;
}

constexpr const char* kFwdOp = "torch_fmha.fp8_fwd";
constexpr const char* kVarlenFwdOp = "torch_fmha.fp8_varlen_fwd";

// The SM90 kernel reads a packed v at these head dims fastest (quantize_qkv's
// default for dense inputs, torch_fmha/quantize.py _PACK_V_HEAD_DIMS).
bool packs_v(const Tensor& v) { return v.size(-1) == 128 || v.size(-1) == 256; }

Outputs fp8_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool per_head, bool qk_rotated,
                std::optional<double> softmax_scale, bool causal, int64_t window_left,
                int64_t window_right, const OptTensor& out_scale, ScalarTypeOpt out_dtype,
                double softcap, const OptTensor& sinks) {
  check_rank(kFwdOp, "q", q, 4, "[batch, seqlen_q, heads, head_dim]");
  check_rank(kFwdOp, "k", k, 4, "[batch, seqlen_k, heads_kv, head_dim]");
  check_rank(kFwdOp, "v", v, 4, "[batch, seqlen_k, heads_kv, head_dim]");
  auto [q8, k8, v8, descales] =
      quantize_qkv_op().call(q, k, v, per_head, qk_rotated, std::nullopt, std::nullopt, packs_v(v));
  return fwd_op().call(q8, k8, v8, softmax_scale, causal, window_left, window_right,
                       descales.select(0, 0), descales.select(0, 1), descales.select(0, 2),
                       out_scale, out_dtype, softcap, sinks);
}

Outputs fp8_varlen_fwd(const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& cu_seqlens_q, const Tensor& cu_seqlens_k,
                       OptSymInt max_seqlen_q, OptSymInt max_seqlen_k, bool per_head,
                       bool qk_rotated, std::optional<double> softmax_scale, bool causal,
                       int64_t window_left, int64_t window_right, const OptTensor& out_scale,
                       ScalarTypeOpt out_dtype, double softcap, const OptTensor& sinks) {
  check_rank(kVarlenFwdOp, "q", q, 3, "[total_q, heads, head_dim]");
  check_rank(kVarlenFwdOp, "k", k, 3, "[total_k, heads_kv, head_dim]");
  check_rank(kVarlenFwdOp, "v", v, 3, "[total_k, heads_kv, head_dim]");
  // quantize_qkv reads cu_seqlens for per-head scales only (and refuses them otherwise)
  const OptTensor cu_q = per_head ? OptTensor(cu_seqlens_q) : std::nullopt;
  const OptTensor cu_k = per_head ? OptTensor(cu_seqlens_k) : std::nullopt;
  auto [q8, k8, v8, descales] =
      quantize_qkv_op().call(q, k, v, per_head, qk_rotated, cu_q, cu_k, /*pack_v=*/false);
  return varlen_fwd_op().call(q8, k8, v8, cu_seqlens_q, cu_seqlens_k, std::move(max_seqlen_q),
                              std::move(max_seqlen_k), softmax_scale, causal, window_left,
                              window_right, descales.select(0, 0), descales.select(0, 1),
                              descales.select(0, 2), out_scale, out_dtype, softcap, sinks,
                              std::nullopt, std::nullopt);
}

bool requires_grad(const Tensor& t) { return t.requires_grad(); }
bool requires_grad(const OptTensor& t) { return t.has_value() && t->defined() && t->requires_grad(); }

// Forward as the composite; backward refuses by name. So an inference call on
// tensors that require grad (a model called without torch.no_grad()) runs as
// quantize_qkv + attention did, and a backward through it fails with the op's
// sentence (the two calls fail in bwd: FP8 attention has no backward). `run`
// calls the op (below autograd); q, k, v, sinks and out_scale are the tensor inputs
// a gradient could flow to.
struct NoBackward : public torch::autograd::Function<NoBackward> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const Tensor& q, const Tensor& k, const Tensor& v,
                                                const OptTensor& sinks, const OptTensor& out_scale,
                                                const char* op,
                                                const std::function<Outputs()>& run) {
    ctx->saved_data["op"] = std::string(op);
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, lse] = run();
    return {out, lse};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list) {
    TORCH_CHECK(false, ctx->saved_data["op"].toStringRef(),
                ": no backward: FP8 attention rounds q, k and v to FP8, which has no gradient; "
                "for training use torch_fmha.attention with bf16 / fp16 inputs (or call this "
                "under torch.no_grad())");
  }
};

// Nothing to record (grad mode off, or no input requires grad): run the op below
// autograd at once, so the composite's inner ops skip their autograd kernels.
template <typename Run>
Outputs without_backward(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                         const OptTensor& sinks, const OptTensor& out_scale, const Run& run) {
  if (!at::GradMode::is_enabled() || !(requires_grad(q) || requires_grad(k) || requires_grad(v) ||
                                       requires_grad(sinks) || requires_grad(out_scale))) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return run();
  }
  auto r = NoBackward::apply(q, k, v, sinks, out_scale, op, std::function<Outputs()>(run));
  return {r[0], r[1]};
}

Outputs fp8_fwd_autograd(const Tensor& q, const Tensor& k, const Tensor& v, bool per_head,
                         bool qk_rotated, std::optional<double> softmax_scale, bool causal,
                         int64_t window_left, int64_t window_right, const OptTensor& out_scale,
                         ScalarTypeOpt out_dtype, double softcap, const OptTensor& sinks) {
  return without_backward(kFwdOp, q, k, v, sinks, out_scale, [&] {
    return fp8_fwd_op().call(q, k, v, per_head, qk_rotated, softmax_scale, causal, window_left,
                             window_right, out_scale, out_dtype, softcap, sinks);
  });
}

Outputs fp8_varlen_fwd_autograd(const Tensor& q, const Tensor& k, const Tensor& v,
                                const Tensor& cu_seqlens_q, const Tensor& cu_seqlens_k,
                                OptSymInt max_seqlen_q, OptSymInt max_seqlen_k, bool per_head,
                                bool qk_rotated, std::optional<double> softmax_scale, bool causal,
                                int64_t window_left, int64_t window_right,
                                const OptTensor& out_scale, ScalarTypeOpt out_dtype,
                                double softcap, const OptTensor& sinks) {
  return without_backward(kVarlenFwdOp, q, k, v, sinks, out_scale, [&] {
    return fp8_varlen_fwd_op().call(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                    max_seqlen_k, per_head, qk_rotated, softmax_scale, causal,
                                    window_left, window_right, out_scale, out_dtype, softcap,
                                    sinks);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_fmha, CompositeExplicitAutograd, m) {
  m.impl("fp8_fwd", &fp8_fwd);
  m.impl("fp8_varlen_fwd", &fp8_varlen_fwd);
}

TORCH_LIBRARY_IMPL(torch_fmha, Autograd, m) {
  m.impl("fp8_fwd", &fp8_fwd_autograd);
  m.impl("fp8_varlen_fwd", &fp8_varlen_fwd_autograd);
}

}  // namespace torch_fmha
