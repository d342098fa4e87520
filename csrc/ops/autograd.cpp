// torch_fmha: autograd of fwd and varlen_fwd, a C++ kernel at the Autograd
// dispatch key (one for every backend).
//
// When nothing needs a gradient (grad mode off, or no tensor argument
// requires grad) the kernel redispatches below autograd at once, in C++: a
// compiled inference graph, which calls the op through the Autograd key under
// no_grad, pays no Python on that path. (The Python kernel of
// torch.library.register_autograd that this replaces boxed every call into
// Python to find that out: ~8 us per call of host time on a 2-core CPU.)
//
// Otherwise a torch::autograd::Function records the call. Its backward
// recomputes attention probabilities from q, k and the saved lse in
// torch_fmha::bwd / varlen_bwd. FP8 inputs have no backward: the backward op
// raises a clear error for them. The gradient of lse is supported too (it
// enters as dlse), so a loss that uses lse is right. Undefined output
// gradients are materialised as zeros (autograd's default), so dlse is a zero
// tensor when only out was used, as before.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "op_handles.h"

namespace torch_fmha {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using Grads = std::tuple<Tensor, Tensor, Tensor, Tensor>;  // dq, dk, dv, dsinks
using BwdSig = Grads(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                     const Tensor&, const OptTensor&, std::optional<double>, bool, int64_t,
                     int64_t, double, const OptTensor&);
using VarlenBwdSig = Grads(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const OptTensor&, std::optional<c10::SymInt>,
                           std::optional<c10::SymInt>, std::optional<double>, bool, int64_t,
                           int64_t, double, const OptTensor&);

const c10::TypedOperatorHandle<BwdSig>& bwd_op() {
  static const auto op = op_handle<BwdSig>("torch_fmha::bwd");
  return op;
}
const c10::TypedOperatorHandle<VarlenBwdSig>& varlen_bwd_op() {
  static const auto op = op_handle<VarlenBwdSig>("torch_fmha::varlen_bwd");
  return op;
}

bool requires_grad(const Tensor& t) { return t.requires_grad(); }
bool requires_grad(const OptTensor& t) { return t.has_value() && t->defined() && t->requires_grad(); }

// What the Python kernel checked: grad mode on and any tensor argument requiring grad.
template <typename... Ts>
bool needs_grad(const Ts&... ts) {
  return at::GradMode::is_enabled() && (requires_grad(ts) || ...);
}

std::optional<double> opt_double(const c10::IValue& v) {
  return v.isNone() ? std::nullopt : std::optional<double>(v.toDouble());
}
std::optional<c10::SymInt> opt_symint(const c10::IValue& v) {
  return v.isNone() ? std::nullopt : std::optional<c10::SymInt>(v.toSymInt());
}

constexpr int64_t kFwdArgs = 14;
constexpr int64_t kVarlenFwdArgs = 20;
constexpr int64_t kFwdSinksArg = 13;        // position of sinks in fwd's schema
constexpr int64_t kVarlenFwdSinksArg = 17;  // and in varlen_fwd's

// The mask and score options both backward ops take, saved by the forward and
// read back (sinks is saved as a tensor: it may require grad).
struct MaskOptions {
  std::optional<double> softmax_scale;
  bool causal;
  int64_t window_left;
  int64_t window_right;
  double softcap;

  void save(AutogradContext* ctx) const {
    ctx->saved_data["softmax_scale"] = softmax_scale;
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["window_left"] = window_left;
    ctx->saved_data["window_right"] = window_right;
    ctx->saved_data["softcap"] = softcap;
  }
  static MaskOptions load(AutogradContext* ctx) {
    return {opt_double(ctx->saved_data["softmax_scale"]), ctx->saved_data["causal"].toBool(),
            ctx->saved_data["window_left"].toInt(), ctx->saved_data["window_right"].toInt(),
            ctx->saved_data["softcap"].toDouble()};
  }
};

// A saved optional tensor comes back undefined when it was None.
OptTensor saved_optional(const Tensor& t) { return t.defined() ? OptTensor(t) : std::nullopt; }

// The upstream gradients of (out, lse): an unused out gets zeros (autograd's
// default), an unused lse none.
std::tuple<Tensor, OptTensor> upstream_grads(const variable_list& grads, const Tensor& out) {
  return {grads[0].defined() ? grads[0] : at::zeros_like(out),
          grads[1].defined() ? OptTensor(grads[1]) : std::nullopt};
}

// Gradients for the forward's arguments: dq, dk, dv, dsinks at sinks' position
// (when sinks was given), none for the rest.
variable_list input_grads(const Grads& g, int64_t num_args, int64_t sinks_arg, bool has_sinks) {
  variable_list grads(num_args);
  grads[0] = std::get<0>(g);
  grads[1] = std::get<1>(g);
  grads[2] = std::get<2>(g);
  if (has_sinks) grads[sinks_arg] = std::get<3>(g);
  return grads;
}

}  // namespace

// Named outside the anonymous namespace: grad_fn prints as
// torch::autograd::CppNode<torch_fmha::FwdFunction>.
struct FwdFunction : public torch::autograd::Function<FwdFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& q, const Tensor& k,
                               const Tensor& v, std::optional<double> softmax_scale, bool causal,
                               int64_t window_left, int64_t window_right,
                               const OptTensor& q_descale, const OptTensor& k_descale,
                               const OptTensor& v_descale, const OptTensor& out_scale,
                               std::optional<at::ScalarType> out_dtype, double softcap,
                               const OptTensor& sinks) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, lse] = fwd_op().call(q, k, v, softmax_scale, causal, window_left, window_right,
                                    q_descale, k_descale, v_descale, out_scale, out_dtype,
                                    softcap, sinks);
    ctx->save_for_backward({q, k, v, out, lse, sinks.value_or(Tensor())});
    MaskOptions{softmax_scale, causal, window_left, window_right, softcap}.save(ctx);
    return {out, lse};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor& out = saved[3];
    const auto [grad_out, grad_lse] = upstream_grads(grads, out);
    const MaskOptions m = MaskOptions::load(ctx);
    const OptTensor sinks = saved_optional(saved[5]);
    auto g = bwd_op().call(grad_out, saved[0], saved[1], saved[2], out, saved[4], grad_lse,
                           m.softmax_scale, m.causal, m.window_left, m.window_right, m.softcap,
                           sinks);
    return input_grads(g, kFwdArgs, kFwdSinksArg, sinks.has_value());
  }
};

struct VarlenFwdFunction : public torch::autograd::Function<VarlenFwdFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& cu_seqlens_q,
                               const OptTensor& cu_seqlens_k,
                               std::optional<c10::SymInt> max_seqlen_q,
                               std::optional<c10::SymInt> max_seqlen_k,
                               std::optional<double> softmax_scale, bool causal,
                               int64_t window_left, int64_t window_right,
                               const OptTensor& q_descale, const OptTensor& k_descale,
                               const OptTensor& v_descale, const OptTensor& out_scale,
                               std::optional<at::ScalarType> out_dtype, double softcap,
                               const OptTensor& sinks, const OptTensor& seqused_k,
                               const OptTensor& page_table) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, lse] = varlen_fwd_op().call(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                           max_seqlen_k, softmax_scale, causal, window_left,
                                           window_right, q_descale, k_descale, v_descale,
                                           out_scale, out_dtype, softcap, sinks, seqused_k,
                                           page_table);
    ctx->save_for_backward({q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k.value_or(Tensor()),
                            sinks.value_or(Tensor())});
    ctx->saved_data["max_seqlen_q"] = max_seqlen_q;
    ctx->saved_data["max_seqlen_k"] = max_seqlen_k;
    // seqused_k / page_table are inference features: there is no backward
    // through them. Recorded here, refused in backward (a forward under grad
    // mode that never calls backward still works).
    ctx->saved_data["serving_only"] = seqused_k.has_value() || page_table.has_value();
    MaskOptions{softmax_scale, causal, window_left, window_right, softcap}.save(ctx);
    return {out, lse};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor& out = saved[3];
    const auto [grad_out, grad_lse] = upstream_grads(grads, out);
    TORCH_CHECK(!ctx->saved_data["serving_only"].toBool(),
                "torch_fmha.varlen_fwd: there is no backward through seqused_k or page_table "
                "(paged KV and used-key counts are inference features); call it under "
                "torch.no_grad() / torch.inference_mode(), or pass cu_seqlens_k without them "
                "for training");
    const MaskOptions m = MaskOptions::load(ctx);
    const OptTensor sinks = saved_optional(saved[7]);
    auto g = varlen_bwd_op().call(grad_out, saved[0], saved[1], saved[2], out, saved[4],
                                  saved[5], saved[6], grad_lse,
                                  opt_symint(ctx->saved_data["max_seqlen_q"]),
                                  opt_symint(ctx->saved_data["max_seqlen_k"]), m.softmax_scale,
                                  m.causal, m.window_left, m.window_right, m.softcap, sinks);
    return input_grads(g, kVarlenFwdArgs, kVarlenFwdSinksArg, sinks.has_value());
  }
};

namespace {

std::tuple<Tensor, Tensor> fwd_autograd(const Tensor& q, const Tensor& k, const Tensor& v,
                                        std::optional<double> softmax_scale, bool causal,
                                        int64_t window_left, int64_t window_right,
                                        const OptTensor& q_descale, const OptTensor& k_descale,
                                        const OptTensor& v_descale, const OptTensor& out_scale,
                                        std::optional<at::ScalarType> out_dtype, double softcap,
                                        const OptTensor& sinks) {
  if (!needs_grad(q, k, v, q_descale, k_descale, v_descale, out_scale, sinks)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return fwd_op().call(q, k, v, softmax_scale, causal, window_left, window_right, q_descale,
                         k_descale, v_descale, out_scale, out_dtype, softcap, sinks);
  }
  variable_list r = FwdFunction::apply(q, k, v, softmax_scale, causal, window_left, window_right,
                                       q_descale, k_descale, v_descale, out_scale, out_dtype,
                                       softcap, sinks);
  return {r[0], r[1]};
}

std::tuple<Tensor, Tensor> varlen_fwd_autograd(
    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu_seqlens_q,
    const OptTensor& cu_seqlens_k, std::optional<c10::SymInt> max_seqlen_q,
    std::optional<c10::SymInt> max_seqlen_k, std::optional<double> softmax_scale, bool causal,
    int64_t window_left, int64_t window_right, const OptTensor& q_descale,
    const OptTensor& k_descale, const OptTensor& v_descale, const OptTensor& out_scale,
    std::optional<at::ScalarType> out_dtype, double softcap, const OptTensor& sinks,
    const OptTensor& seqused_k, const OptTensor& page_table) {
  if (!needs_grad(q, k, v, cu_seqlens_q, cu_seqlens_k, q_descale, k_descale, v_descale,
                  out_scale, sinks, seqused_k, page_table)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return varlen_fwd_op().call(q, k, v, cu_seqlens_q, cu_seqlens_k, std::move(max_seqlen_q),
                                std::move(max_seqlen_k), softmax_scale, causal, window_left,
                                window_right, q_descale, k_descale, v_descale, out_scale,
                                out_dtype, softcap, sinks, seqused_k, page_table);
  }
  variable_list r = VarlenFwdFunction::apply(q, k, v, cu_seqlens_q, cu_seqlens_k,
                                             std::move(max_seqlen_q), std::move(max_seqlen_k),
                                             softmax_scale, causal, window_left, window_right,
                                             q_descale, k_descale, v_descale, out_scale,
                                             out_dtype, softcap, sinks, seqused_k, page_table);
  return {r[0], r[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_fmha, Autograd, m) {
  m.impl("fwd", &fwd_autograd);
  m.impl("varlen_fwd", &varlen_fwd_autograd);
}

}  // namespace torch_fmha
