// torch_fmha::fp8_fwd: quantize_qkv then fwd in one op (torch_fmha.fp8_attention).
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
// quantize and fwd kernels the two ops do, so the result is bitwise that of
// quantize_qkv(pack_v at D = 128 / 256) followed by fwd. Errors are those ops'
// own, in that order, after fp8_fwd's rank checks (dense only). The fake kernel
// (meta/fake.py) runs the same sequence. No backward: rounding to FP8 has no
// gradient; the forward runs on tensors that require grad, and a backward through
// it fails with this op's name (Fp8FwdFunction).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "checks.h"

TORCH_LIBRARY_FRAGMENT(torch_fmha, m) {
  // q [B, Sq, H, D], k/v [B, Sk, Hkv, D] in bf16 / fp16 / fp32 / fp64 ->
  // out [B, Sq, H, D] (out_dtype), lse [B, H, Sq] (float32). per_head and
  // qk_rotated as for quantize_qkv; the rest as for fwd.
  m.def(
      "fp8_fwd(Tensor q, Tensor k, Tensor v, bool per_head, bool qk_rotated, "
      "float? softmax_scale, bool causal, int window_left, int window_right, "
      "Tensor? out_scale, ScalarType? out_dtype, float softcap, Tensor? sinks) "
      "-> (Tensor out, Tensor lse)");
}

namespace torch_fmha {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
using Outputs = std::tuple<Tensor, Tensor>;

using QuantizeQkvSig = std::tuple<Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, bool, bool, const OptTensor&, const OptTensor&,
    bool);
using FwdSig = Outputs(const Tensor&, const Tensor&, const Tensor&, std::optional<double>, bool,
                       int64_t, int64_t, const OptTensor&, const OptTensor&, const OptTensor&,
                       const OptTensor&, std::optional<at::ScalarType>, double, const OptTensor&);
using Fp8FwdSig = Outputs(const Tensor&, const Tensor&, const Tensor&, bool, bool,
                          std::optional<double>, bool, int64_t, int64_t, const OptTensor&,
                          std::optional<at::ScalarType>, double, const OptTensor&);

template <typename Sig>
c10::TypedOperatorHandle<Sig> handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

const c10::TypedOperatorHandle<QuantizeQkvSig>& quantize_qkv_op() {
  static const auto op = handle<QuantizeQkvSig>("torch_fmha::quantize_qkv");
  return op;
}

const c10::TypedOperatorHandle<FwdSig>& fwd_op() {
  static const auto op = handle<FwdSig>("torch_fmha::fwd");
  return op;
}

const c10::TypedOperatorHandle<Fp8FwdSig>& fp8_fwd_op() {
  static const auto op = handle<Fp8FwdSig>("torch_fmha::fp8_fwd");
  return op;
}

constexpr const char* kOp = "torch_fmha.fp8_fwd";

// The SM90 kernel reads a packed v at these head dims fastest (quantize_qkv's
// default for dense inputs, torch_fmha/quantize.py _PACK_V_HEAD_DIMS).
bool packs_v(const Tensor& v) { return v.size(-1) == 128 || v.size(-1) == 256; }

Outputs fp8_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool per_head, bool qk_rotated,
                std::optional<double> softmax_scale, bool causal, int64_t window_left,
                int64_t window_right, const OptTensor& out_scale,
                std::optional<at::ScalarType> out_dtype, double softcap, const OptTensor& sinks) {
  check_rank(kOp, "q", q, 4, "[batch, seqlen_q, heads, head_dim]");
  check_rank(kOp, "k", k, 4, "[batch, seqlen_k, heads_kv, head_dim]");
  check_rank(kOp, "v", v, 4, "[batch, seqlen_k, heads_kv, head_dim]");
  auto [q8, k8, v8, descales] =
      quantize_qkv_op().call(
          q, k, v, per_head, qk_rotated, std::nullopt, std::nullopt, packs_v(v));
  return fwd_op().call(q8, k8, v8, softmax_scale, causal, window_left, window_right, descales.select(0, 0),
            descales.select(0, 1), descales.select(0, 2), out_scale, out_dtype, softcap, sinks);
}

bool requires_grad(const Tensor& t) { return t.requires_grad(); }
bool requires_grad(const OptTensor& t) { return t.has_value() && t->defined() && t->requires_grad(); }

// Forward as the composite; backward refuses by name. So an inference call on
// tensors that require grad (a model called without torch.no_grad()) runs as
// quantize_qkv + attention did, and a backward through it fails with this op's
// sentence instead of leaving q, k and v silently without a gradient.
struct Fp8FwdFunction : public torch::autograd::Function<Fp8FwdFunction> {
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext*, const Tensor& q, const Tensor& k, const Tensor& v,
      bool per_head, bool qk_rotated, std::optional<double> softmax_scale, bool causal,
      int64_t window_left, int64_t window_right, const OptTensor& out_scale,
      std::optional<at::ScalarType> out_dtype, double softcap, const OptTensor& sinks) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, lse] = fp8_fwd_op().call(q, k, v, per_head, qk_rotated, softmax_scale, causal,
                                        window_left, window_right, out_scale, out_dtype, softcap,
                                        sinks);
    return {out, lse};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list) {
    TORCH_CHECK(false, kOp,
                ": no backward: FP8 attention rounds q, k and v to FP8, which has no gradient; "
                "for training use torch_fmha.attention with bf16 / fp16 inputs (or call this "
                "under torch.no_grad())");
  }
};

// Nothing to record (grad mode off, or no input requires grad): run the
// composite below autograd at once, so its inner ops skip their autograd kernels.
Outputs fp8_fwd_autograd(const Tensor& q, const Tensor& k, const Tensor& v, bool per_head,
                         bool qk_rotated, std::optional<double> softmax_scale, bool causal,
                         int64_t window_left, int64_t window_right, const OptTensor& out_scale,
                         std::optional<at::ScalarType> out_dtype, double softcap,
                         const OptTensor& sinks) {
  if (!at::GradMode::is_enabled() ||
      !(requires_grad(q) || requires_grad(k) || requires_grad(v) || requires_grad(sinks))) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return fp8_fwd_op().call(q, k, v, per_head, qk_rotated, softmax_scale, causal, window_left,
                             window_right, out_scale, out_dtype, softcap, sinks);
  }
  auto r = Fp8FwdFunction::apply(q, k, v, per_head, qk_rotated, softmax_scale, causal,
                                 window_left, window_right, out_scale, out_dtype, softcap, sinks);
  return {r[0], r[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_fmha, CompositeExplicitAutograd, m) { m.impl("fp8_fwd", &fp8_fwd); }

TORCH_LIBRARY_IMPL(torch_fmha, Autograd, m) { m.impl("fp8_fwd", &fp8_fwd_autograd); }

}  // namespace torch_fmha
