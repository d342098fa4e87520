// torch_fmha: typed dispatcher handles of the ops that other ops call (autograd.cpp,
// kvcache_op.cpp, fp8_fwd_op.cpp): each signature written once, next to its schema's
// order (registration.cpp), and each handle looked up once per process.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <tuple>

namespace torch_fmha {

using FwdSig = std::tuple<at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, std::optional<double>, bool, int64_t,
    int64_t, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
    std::optional<at::ScalarType>, double, const std::optional<at::Tensor>&);
using VarlenFwdSig = std::tuple<at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const std::optional<at::Tensor>&, std::optional<c10::SymInt>, std::optional<c10::SymInt>,
    std::optional<double>, bool, int64_t, int64_t, const std::optional<at::Tensor>&,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
    const std::optional<at::Tensor>&, std::optional<at::ScalarType>, double,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
    const std::optional<at::Tensor>&);
using QuantizeQkvSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, bool, bool,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, bool);

template <typename Sig>
c10::TypedOperatorHandle<Sig> op_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

inline const c10::TypedOperatorHandle<FwdSig>& fwd_op() {
  static const auto op = op_handle<FwdSig>("torch_fmha::fwd");
  return op;
}
inline const c10::TypedOperatorHandle<VarlenFwdSig>& varlen_fwd_op() {
  static const auto op = op_handle<VarlenFwdSig>("torch_fmha::varlen_fwd");
  return op;
}
inline const c10::TypedOperatorHandle<QuantizeQkvSig>& quantize_qkv_op() {
  static const auto op = op_handle<QuantizeQkvSig>("torch_fmha::quantize_qkv");
  return op;
}

}  // namespace torch_fmha
