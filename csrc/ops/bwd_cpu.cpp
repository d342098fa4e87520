// torch_fmha: CPU kernels of bwd and varlen_bwd. Recomputes P from q, k and
// lse one sequence at a time (cpu_math.h). FP8 has no backward.
#include <torch/library.h>

#include "checks.h"
#include "cpu_math.h"

namespace torch_fmha {
namespace {

cpu::SequenceMask resolved_mask(bool causal, int64_t window_left, int64_t window_right) {
  return {window_left, causal ? 0 : window_right};
}

double resolved_scale(std::optional<double> softmax_scale, int64_t head_dim) {
  return softmax_scale.value_or(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

cpu::ScoreOptions score_options(double softcap, const std::optional<at::Tensor>& sinks) {
  return {softcap, sinks.value_or(at::Tensor())};
}

// sinks' shape and dtype, or [0] in lse's dtype without sinks.
at::Tensor empty_dsinks(const at::Tensor& lse, const std::optional<at::Tensor>& sinks) {
  return sinks.has_value() ? at::zeros_like(*sinks) : at::zeros({0}, lse.options());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bwd_cpu(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
    const std::optional<at::Tensor>& dlse, std::optional<double> softmax_scale,
    bool causal, int64_t window_left, int64_t window_right, double softcap,
    const std::optional<at::Tensor>& sinks) {
  const char* op = "torch_fmha.bwd";
  check_fwd(op, q, k, v, softmax_scale, causal, window_left, window_right,
            std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt, softcap, sinks);
  check_bwd(op, dout, q, k, v, out, lse, dlse);
  at::Tensor dq = at::empty_like(q, at::MemoryFormat::Contiguous);  // [B, Sq, H, D]
  at::Tensor dk = at::empty_like(k, at::MemoryFormat::Contiguous);  // [B, Sk, Hkv, D]
  at::Tensor dv = at::empty_like(v, at::MemoryFormat::Contiguous);
  const auto mask = resolved_mask(causal, window_left, window_right);
  const double scale = resolved_scale(softmax_scale, q.size(3));
  const cpu::ScoreOptions opt = score_options(softcap, sinks);
  at::Tensor dsinks = empty_dsinks(lse, sinks);
  for (int64_t b = 0; b < q.size(0); ++b) {
    std::optional<at::Tensor> dlse_b;
    if (dlse.has_value()) dlse_b = (*dlse)[b];
    const cpu::SequenceGrads g = cpu::backward_sequence(
        dout[b], q[b], k[b], v[b], out[b], lse[b], dlse_b, scale, mask, opt);
    dq[b].copy_(g.dq);
    dk[b].copy_(g.dk);
    dv[b].copy_(g.dv);
    if (sinks.has_value()) dsinks.add_(g.dsinks);
  }
  return {dq, dk, dv, dsinks};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> varlen_bwd_cpu(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
    const at::Tensor& cu_seqlens_q, const at::Tensor& cu_seqlens_k,
    const std::optional<at::Tensor>& dlse, std::optional<int64_t> max_seqlen_q,
    std::optional<int64_t> max_seqlen_k, std::optional<double> softmax_scale,
    bool causal, int64_t window_left, int64_t window_right, double softcap,
    const std::optional<at::Tensor>& sinks) {
  const char* op = "torch_fmha.varlen_bwd";
  check_varlen_fwd(op, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                   max_seqlen_k, softmax_scale, causal, window_left, window_right,
                   std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt,
                   softcap, sinks, std::nullopt, std::nullopt);
  check_bwd(op, dout, q, k, v, out, lse, dlse);
  check_cu_seqlens_values(op, "cu_seqlens_q", cu_seqlens_q, q.size(0), "q.size(0)");
  check_cu_seqlens_values(op, "cu_seqlens_k", cu_seqlens_k, k.size(0), "k.size(0)");
  at::Tensor dq = at::empty_like(q, at::MemoryFormat::Contiguous);  // [Tq, H, D]
  at::Tensor dk = at::empty_like(k, at::MemoryFormat::Contiguous);  // [Tk, Hkv, D]
  at::Tensor dv = at::empty_like(v, at::MemoryFormat::Contiguous);
  const auto mask = resolved_mask(causal, window_left, window_right);
  const double scale = resolved_scale(softmax_scale, q.size(2));
  const cpu::ScoreOptions opt = score_options(softcap, sinks);
  at::Tensor dsinks = empty_dsinks(lse, sinks);
  const int32_t* cq = cu_seqlens_q.data_ptr<int32_t>();
  const int32_t* ck = cu_seqlens_k.data_ptr<int32_t>();
  for (int64_t b = 0; b + 1 < cu_seqlens_q.size(0); ++b) {
    const int64_t q0 = cq[b], q1 = cq[b + 1], k0 = ck[b], k1 = ck[b + 1];
    std::optional<at::Tensor> dlse_b;
    if (dlse.has_value()) dlse_b = dlse->slice(1, q0, q1);
    const cpu::SequenceGrads g = cpu::backward_sequence(
        dout.slice(0, q0, q1), q.slice(0, q0, q1), k.slice(0, k0, k1),
        v.slice(0, k0, k1), out.slice(0, q0, q1), lse.slice(1, q0, q1), dlse_b,
        scale, mask, opt);
    dq.slice(0, q0, q1).copy_(g.dq);
    dk.slice(0, k0, k1).copy_(g.dk);
    dv.slice(0, k0, k1).copy_(g.dv);
    if (sinks.has_value()) dsinks.add_(g.dsinks);
  }
  return {dq, dk, dv, dsinks};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_fmha, CPU, m) {
  m.impl("bwd", &bwd_cpu);
  m.impl("varlen_bwd", &varlen_bwd_cpu);
}

}  // namespace torch_fmha
