// torch_fmha: attention math of the CPU kernels (see cpu_math.h).
#include "cpu_math.h"

#include <limits>

namespace torch_fmha::cpu {

at::ScalarType accumulator_dtype(at::ScalarType input) {
  return input == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor visible_keys(int64_t sq, int64_t sk, SequenceMask mask) {
  auto opts = at::TensorOptions().dtype(at::kLong);
  at::Tensor i = at::arange(sq, opts).unsqueeze(1);  // [Sq, 1]
  at::Tensor j = at::arange(sk, opts).unsqueeze(0);  // [1, Sk]
  at::Tensor diag = i + (sk - sq);                   // key aligned with row i
  at::Tensor visible = at::ones({sq, sk}, at::TensorOptions().dtype(at::kBool));
  if (mask.window_left >= 0) visible = visible & (j >= diag - mask.window_left);
  if (mask.window_right >= 0) visible = visible & (j <= diag + mask.window_right);
  return visible;  // [Sq, Sk]
}

namespace {

// [S, Hkv, D] -> [H, S, D] with each kv head repeated for its query group.
at::Tensor heads_first_expanded(const at::Tensor& x, int64_t heads_q,
                                at::ScalarType acc) {
  const int64_t group = heads_q / x.size(1);
  return x.to(acc).permute({1, 0, 2}).repeat_interleave(group, /*dim=*/0);
}

// [H, Sk, D] -> [Hkv, Sk, D], summing each query group.
at::Tensor sum_groups(const at::Tensor& x, int64_t heads_kv) {
  return x.view({heads_kv, x.size(0) / heads_kv, x.size(1), x.size(2)}).sum(1);
}

// Scaled scores [H, Sq, Sk], soft-capped when softcap > 0 (tanh(+-inf) = +-1:
// an infinite score is capped to +-softcap, NaN stays NaN).
at::Tensor scaled_scores(const at::Tensor& qh, const at::Tensor& kh,
                         const at::Tensor& score_scale, double softcap) {
  at::Tensor s = at::bmm(qh, kh.transpose(1, 2)) * score_scale.view({-1, 1, 1});
  return softcap > 0 ? at::tanh(s / softcap) * softcap : s;
}

// Invisible entries become -inf (a select, never an add: NaN or inf scores at
// masked keys are replaced).
at::Tensor masked(const at::Tensor& s, const at::Tensor& visible) {
  return s.masked_fill(visible.logical_not(), -std::numeric_limits<double>::infinity());
}

// [H] sinks -> [H, 1, 1] in the accumulator dtype.
at::Tensor sink_column(const at::Tensor& sinks, at::ScalarType acc) {
  return sinks.to(acc).view({-1, 1, 1});
}

// out_unscaled [H, Sq, D] = P V summed over the keys each row sees, with
// IEEE semantics for the non-finite entries of V: a NaN of v[j, d], or an
// infinite v[j, d] where p[i, j] == 0, makes out[i, d] NaN; +inf / -inf where
// p[i, j] > 0 make it +inf / -inf (NaN when both occur). Keys a row does not
// see contribute nothing, whatever V holds there: a plain P V would give
// 0 * NaN = NaN at masked keys. p is 0 at every masked entry.
at::Tensor weighted_values(const at::Tensor& p, const at::Tensor& vh, const at::Tensor& visible) {
  if (at::isfinite(vh).all().item<bool>()) return at::bmm(p, vh);  // the usual case
  const at::Tensor finite = at::isfinite(vh);
  at::Tensor o = at::bmm(p, at::where(finite, vh, at::zeros_like(vh)));  // finite part
  const auto acc = p.scalar_type();
  auto as_acc = [&](const at::Tensor& b) { return b.to(acc); };
  const at::Tensor seen = as_acc(visible).unsqueeze(0).expand_as(p);     // [H, Sq, Sk]
  const at::Tensor zero_p = as_acc(visible.unsqueeze(0) & (p == 0));      // seen, weight 0
  const at::Tensor pos_p = as_acc(p > 0);
  const at::Tensor pos_inf = as_acc(vh == std::numeric_limits<double>::infinity());
  const at::Tensor neg_inf = as_acc(vh == -std::numeric_limits<double>::infinity());
  // Counts of contributing keys, exact in the accumulator for any Sk < 2^24.
  const at::Tensor has_nan = (at::bmm(seen, as_acc(at::isnan(vh))) > 0) |
                             (at::bmm(zero_p, pos_inf + neg_inf) > 0);
  const at::Tensor has_pos = at::bmm(pos_p, pos_inf) > 0;
  const at::Tensor has_neg = at::bmm(pos_p, neg_inf) > 0;
  const double inf = std::numeric_limits<double>::infinity();
  o = at::where(has_pos, o + inf, o);  // o + inf keeps a NaN o NaN
  o = at::where(has_neg, o - inf, o);  // +inf - inf = NaN: both signs seen
  return o.masked_fill(has_nan, std::numeric_limits<double>::quiet_NaN());
}

}  // namespace

// NaN / Inf semantics (docs/DESIGN.md): keys a row does not see (mask, past
// the sequence) never reach it. Over the keys it sees, with s the scaled
// (soft-capped) scores: a row that sees no key gives out = 0, lse = -inf (the
// sink, with sinks), whatever the data and descales hold. Otherwise the sink
// counts as one more score with a zero value: if some s (or the sink) is NaN or
// +inf, or every s and the sink are -inf, the softmax is undefined: out = NaN
// and lse = NaN for the whole row. Else
// p = exp(s - max) / l (p = 0 where s = -inf) and out = (P V) * out_scale with
// IEEE arithmetic (weighted_values), so a NaN in v reaches out[i, d] for every
// row i that sees that key and leaves lse finite.
std::pair<at::Tensor, at::Tensor> forward_sequence(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& score_scale, const at::Tensor& out_scale, SequenceMask mask,
    const ScoreOptions& opt) {
  const at::ScalarType acc = accumulator_dtype(q.scalar_type());
  const int64_t sq = q.size(0), heads = q.size(1), d = q.size(2), sk = k.size(0);
  auto acc_opts = at::TensorOptions().dtype(acc);
  // The lse of a row that sees no key: -inf, or the row's sink.
  auto empty_lse = [&](int64_t rows) {
    return opt.sinks.defined()
               ? opt.sinks.to(acc).view({heads, 1}).expand({heads, rows}).clone()
               : at::full({heads, rows}, -std::numeric_limits<double>::infinity(), acc_opts);
  };
  if (sk == 0) {  // no key anywhere: every row is empty
    return {at::zeros({sq, heads, d}, acc_opts), empty_lse(sq)};
  }
  at::Tensor qh = q.to(acc).permute({1, 0, 2});            // [H, Sq, D]
  at::Tensor kh = heads_first_expanded(k, heads, acc);      // [H, Sk, D]
  at::Tensor vh = heads_first_expanded(v, heads, acc);      // [H, Sk, D]
  at::Tensor visible = visible_keys(sq, sk, mask);          // [Sq, Sk]
  at::Tensor s = masked(scaled_scores(qh, kh, score_scale.to(acc), opt.softcap), visible);  // [H, Sq, Sk]
  // Rows that see no key, decided by the mask alone (not by the data: a row
  // whose visible scores are all -inf is not empty, it is undefined).
  at::Tensor empty = visible.any(/*dim=*/-1).logical_not().view({1, sq, 1});  // [1, Sq, 1]
  // max propagates NaN. An empty row has max -inf: subtract 0 there so that
  // exp gives 0, not NaN. A non-empty row with max +inf or -inf gets
  // inf - inf = NaN in every p it sees: out and lse NaN, as defined.
  at::Tensor row_max = std::get<0>(s.max(/*dim=*/-1, /*keepdim=*/true));  // [H, Sq, 1]
  // The sink is one more score of the row (at::maximum propagates NaN).
  if (opt.sinks.defined()) row_max = at::maximum(row_max, sink_column(opt.sinks, acc));
  at::Tensor shift = at::where(empty, at::zeros_like(row_max), row_max);
  at::Tensor p = at::exp(s - shift);                        // [H, Sq, Sk]
  at::Tensor row_sum = p.sum(-1, /*keepdim=*/true);         // [H, Sq, 1]; NaN propagates
  if (opt.sinks.defined()) row_sum = row_sum + at::exp(sink_column(opt.sinks, acc) - shift);
  at::Tensor lse = (row_max + at::log(row_sum)).squeeze(-1);  // [H, Sq]
  lse = at::where(empty.view({1, sq}), empty_lse(sq), lse);  // -inf / the sink if empty
  at::Tensor o = weighted_values(p, vh, visible);        // [H, Sq, D]
  // Empty rows are exactly 0 even when out_scale or v_descale is NaN / inf.
  o = at::where(empty, at::zeros_like(o), o / row_sum * out_scale.to(acc).view({-1, 1, 1}));
  return {o.permute({1, 0, 2}), lse};
}

// The backward of the softmax with sinks: with delta_i = dout_i . out_i -
// dlse_i, dL/ds_ij = p_ij (dp_ij - delta_i) as without sinks (p = e^(s - lse)
// already includes the sink in lse), and the sink of head h gets
// dL/dsink_h = -sum_i p_sink,i delta_i with p_sink,i = e^(sink_h - lse_i) (for
// a row that sees no key: lse = sink, out = 0, so dL/dsink = dlse). Soft-capping
// multiplies dL/ds by d(c tanh(x / c))/dx = 1 - tanh(x / c)^2.
SequenceGrads backward_sequence(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
    const std::optional<at::Tensor>& dlse, double softmax_scale, SequenceMask mask,
    const ScoreOptions& opt) {
  const at::ScalarType acc = accumulator_dtype(q.scalar_type());
  const int64_t heads = q.size(1), heads_kv = k.size(1);
  auto acc_opts = at::TensorOptions().dtype(acc);
  at::Tensor dsinks = at::zeros({heads}, acc_opts);
  if (q.size(0) == 0) {
    return {at::zeros(q.sizes(), acc_opts), at::zeros(k.sizes(), acc_opts),
            at::zeros(v.sizes(), acc_opts), dsinks};
  }
  at::Tensor l = lse.to(acc).unsqueeze(-1);              // [H, Sq, 1]
  at::Tensor delta = (dout.to(acc) * out.to(acc)).sum(-1).transpose(0, 1).unsqueeze(-1);  // [H, Sq, 1]
  if (dlse.has_value()) delta = delta - dlse->to(acc).unsqueeze(-1);
  if (opt.sinks.defined()) {
    at::Tensor sink = sink_column(opt.sinks, acc);       // [H, 1, 1]
    at::Tensor p_sink = at::where(at::isinf(sink) & (sink < 0), at::zeros_like(l), at::exp(sink - l));
    dsinks = -(p_sink * delta).sum({1, 2});
  }
  if (k.size(0) == 0) {
    return {at::zeros(q.sizes(), acc_opts), at::zeros(k.sizes(), acc_opts),
            at::zeros(v.sizes(), acc_opts), dsinks};
  }
  at::Tensor qh = q.to(acc).permute({1, 0, 2});          // [H, Sq, D]
  at::Tensor kh = heads_first_expanded(k, heads, acc);    // [H, Sk, D]
  at::Tensor vh = heads_first_expanded(v, heads, acc);    // [H, Sk, D]
  at::Tensor doh = dout.to(acc).permute({1, 0, 2});      // [H, Sq, D]
  at::Tensor scale = at::full({heads}, softmax_scale, acc_opts);
  at::Tensor raw = scaled_scores(qh, kh, scale, /*softcap=*/0.0);  // [H, Sq, Sk]
  at::Tensor capped = opt.softcap > 0 ? at::tanh(raw / opt.softcap) : at::Tensor();
  at::Tensor s = masked(opt.softcap > 0 ? capped * opt.softcap : raw,
                        visible_keys(q.size(0), k.size(0), mask));
  at::Tensor empty_row = at::isinf(l);                   // lse = -inf: row sees nothing
  at::Tensor p = at::where(empty_row, at::zeros_like(s), at::exp(s - l));
  at::Tensor dv = at::bmm(p.transpose(1, 2), doh);       // [H, Sk, D]
  at::Tensor dp = at::bmm(doh, vh.transpose(1, 2));      // [H, Sq, Sk]
  at::Tensor ds = p * (dp - delta) * softmax_scale;      // [H, Sq, Sk]
  if (opt.softcap > 0) ds = ds * (1 - capped.square());
  at::Tensor dq = at::bmm(ds, kh);                       // [H, Sq, D]
  at::Tensor dk = at::bmm(ds.transpose(1, 2), qh);       // [H, Sk, D]
  return {dq.permute({1, 0, 2}), sum_groups(dk, heads_kv).permute({1, 0, 2}),
          sum_groups(dv, heads_kv).permute({1, 0, 2}), dsinks};
}

}  // namespace torch_fmha::cpu
