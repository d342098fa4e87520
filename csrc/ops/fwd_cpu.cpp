// torch_fmha: CPU kernels of fwd and varlen_fwd (the slow path that works
// anywhere). One sequence at a time through cpu_math.h.
#include <torch/library.h>

#include "../vt_key_order.h"
#include "checks.h"
#include "cpu_math.h"

namespace torch_fmha {
namespace {

// Per-query-head factor of a [1] or [B, Hkv] scale for batch element b.
// Returns [H] in float64 (cast by the math). nullopt means 1.
at::Tensor per_query_head(const std::optional<at::Tensor>& scale, int64_t b,
                          int64_t heads_q, int64_t heads_kv) {
  auto opts = at::TensorOptions().dtype(at::kDouble);
  if (!scale.has_value()) return at::ones({heads_q}, opts);
  at::Tensor s = scale->to(at::kDouble);
  at::Tensor per_kv = s.dim() == 1 ? s.expand({heads_kv}) : s[b];  // [Hkv]
  return per_kv.repeat_interleave(heads_q / heads_kv);              // [H]
}

struct Scales {
  const std::optional<at::Tensor>& q_descale;
  const std::optional<at::Tensor>& k_descale;
  const std::optional<at::Tensor>& v_descale;
  const std::optional<at::Tensor>& out_scale;
  const std::optional<at::Tensor>& sinks;
};

// Forward of sequence b into out_rows [Sq, H, D] and lse_rows [H, Sq].
void forward_into(const FwdProblem& p, const Scales& sc, int64_t b,
                  const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  at::Tensor out_rows, at::Tensor lse_rows) {
  at::Tensor score_scale = per_query_head(sc.q_descale, b, p.heads_q, p.heads_kv) *
                           per_query_head(sc.k_descale, b, p.heads_q, p.heads_kv) *
                           p.softmax_scale;
  at::Tensor o_scale = per_query_head(sc.v_descale, b, p.heads_q, p.heads_kv);
  if (sc.out_scale.has_value()) {
    o_scale = o_scale / per_query_head(sc.out_scale, b, p.heads_q, p.heads_kv);
  }
  cpu::ScoreOptions score_options{p.softcap, sc.sinks.value_or(at::Tensor())};
  auto [o, lse] = cpu::forward_sequence(q, k, v, score_scale, o_scale,
                                        {p.window_left, p.window_right}, score_options);
  if (p.out_dtype == at::kFloat8_e4m3fn) {
    // Saturate: values beyond the e4m3 range clamp to +-448 instead of NaN.
    o = o.clamp(-448.0, 448.0);
  }
  out_rows.copy_(o);
  lse_rows.copy_(lse);
}

// A packed v [B, Hkv, D, G, 16] (csrc/vt_key_order.h) as the [B, S, Hkv, D]
// v it holds: natural key i of each 16-key group sits at slot vt_slot_of_key(i), column
// d at row packed_v_column_of_row(d). The padding slots past seqlen are dropped (FP8
// bytes gathered as uint8: index_select on float8 is not a given on every backend).
at::Tensor unpacked_v(const at::Tensor& v, int64_t seqlen) {
  std::vector<int64_t> slot_of_key(kVtKeyGroup);
  for (int i = 0; i < kVtKeyGroup; ++i) slot_of_key[i] = vt_slot_of_key(i);
  const int head_dim = static_cast<int>(v.size(2));
  std::vector<int64_t> row_of_column(head_dim);
  for (int d = 0; d < head_dim; ++d) row_of_column[d] = packed_v_column_of_row(d, head_dim);
  const auto as_index = [&](const std::vector<int64_t>& i) {
    return at::tensor(i, at::TensorOptions().dtype(at::kLong)).to(v.device());
  };
  return v.view(at::kByte)
      .index_select(4, as_index(slot_of_key))
      .index_select(2, as_index(row_of_column))
      .flatten(3, 4)
      .narrow(3, 0, seqlen)       // [B, Hkv, D, S]
      .permute({0, 3, 1, 2})      // [B, S, Hkv, D]
      .view(v.scalar_type());
}

at::ScalarType lse_dtype(const at::Tensor& q) {
  return cpu::accumulator_dtype(q.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> fwd_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    std::optional<double> softmax_scale, bool causal, int64_t window_left,
    int64_t window_right, const std::optional<at::Tensor>& q_descale,
    const std::optional<at::Tensor>& k_descale,
    const std::optional<at::Tensor>& v_descale,
    const std::optional<at::Tensor>& out_scale,
    std::optional<at::ScalarType> out_dtype, double softcap,
    const std::optional<at::Tensor>& sinks) {
  const FwdProblem p =
      check_fwd("torch_fmha.fwd", q, k, v, softmax_scale, causal, window_left,
                window_right, q_descale, k_descale, v_descale, out_scale, out_dtype,
                softcap, sinks);
  at::Tensor out = at::empty({p.batch, p.seqlen_q, p.heads_q, p.head_dim},
                             q.options().dtype(p.out_dtype));  // [B, Sq, H, D]
  at::Tensor lse = at::empty({p.batch, p.heads_q, p.seqlen_q},
                             q.options().dtype(lse_dtype(q)));  // [B, H, Sq]
  const Scales sc{q_descale, k_descale, v_descale, out_scale, sinks};
  const at::Tensor v_keys = v.dim() == 5 ? unpacked_v(v, p.seqlen_k) : v;  // [B, S, Hkv, D]
  for (int64_t b = 0; b < p.batch; ++b) {
    forward_into(p, sc, b, q[b], k[b], v_keys[b], out[b], lse[b]);
  }
  return {out, lse};
}

// The keys of sequence b: rows cu_seqlens_k[b] .. (+ seqused_k[b] when given)
// of k, or its pages of the pool gathered in page_table order and cut to
// seqused_k[b] rows (the unused rows of its last page and the pages it does not
// list are never read).
at::Tensor sequence_keys(const FwdProblem& p, const at::Tensor& kv, int64_t b,
                         const std::optional<at::Tensor>& cu_seqlens_k,
                         const std::optional<at::Tensor>& seqused_k,
                         const std::optional<at::Tensor>& page_table) {
  if (p.paged) {
    const int64_t used = seqused_k->data_ptr<int32_t>()[b];
    const int64_t pages = (used + p.page_size - 1) / p.page_size;
    at::Tensor ids = (*page_table)[b].slice(0, 0, pages).to(at::kLong);
    return kv.index_select(0, ids).flatten(0, 1).slice(0, 0, used);  // [used, Hkv, D]
  }
  const int32_t* ck = cu_seqlens_k->data_ptr<int32_t>();
  const int64_t k0 = ck[b];
  const int64_t k1 = seqused_k.has_value() ? k0 + seqused_k->data_ptr<int32_t>()[b] : ck[b + 1];
  return kv.slice(0, k0, k1);
}

std::tuple<at::Tensor, at::Tensor> varlen_fwd_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& cu_seqlens_q, const std::optional<at::Tensor>& cu_seqlens_k,
    std::optional<int64_t> max_seqlen_q, std::optional<int64_t> max_seqlen_k,
    std::optional<double> softmax_scale, bool causal, int64_t window_left,
    int64_t window_right, const std::optional<at::Tensor>& q_descale,
    const std::optional<at::Tensor>& k_descale,
    const std::optional<at::Tensor>& v_descale,
    const std::optional<at::Tensor>& out_scale,
    std::optional<at::ScalarType> out_dtype, double softcap,
    const std::optional<at::Tensor>& sinks, const std::optional<at::Tensor>& seqused_k,
    const std::optional<at::Tensor>& page_table) {
  const char* op = "torch_fmha.varlen_fwd";
  const FwdProblem p = check_varlen_fwd(
      op, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
      softmax_scale, causal, window_left, window_right, q_descale, k_descale,
      v_descale, out_scale, out_dtype, softcap, sinks, seqused_k, page_table);
  check_cu_seqlens_values(op, "cu_seqlens_q", cu_seqlens_q, q.size(0), "q.size(0)");
  if (cu_seqlens_k.has_value()) {
    check_cu_seqlens_values(op, "cu_seqlens_k", *cu_seqlens_k, k.size(0), "k.size(0)");
  }
  check_seqused_and_pages(op, p, cu_seqlens_k, seqused_k, page_table);
  at::Tensor out = at::empty({p.seqlen_q, p.heads_q, p.head_dim},
                             q.options().dtype(p.out_dtype));  // [Tq, H, D]
  at::Tensor lse = at::empty({p.heads_q, p.seqlen_q},
                             q.options().dtype(lse_dtype(q)));  // [H, Tq]
  const int32_t* cq = cu_seqlens_q.data_ptr<int32_t>();
  const Scales sc{q_descale, k_descale, v_descale, out_scale, sinks};
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t q0 = cq[b], q1 = cq[b + 1];
    forward_into(p, sc, b, q.slice(0, q0, q1),
                 sequence_keys(p, k, b, cu_seqlens_k, seqused_k, page_table),
                 sequence_keys(p, v, b, cu_seqlens_k, seqused_k, page_table),
                 out.slice(0, q0, q1), lse.slice(1, q0, q1));
  }
  return {out, lse};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_fmha, CPU, m) {
  m.impl("fwd", &fwd_cpu);
  m.impl("varlen_fwd", &varlen_fwd_cpu);
}

}  // namespace torch_fmha
