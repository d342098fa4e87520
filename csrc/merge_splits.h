// torch_fmha: merging split-KV partial results by their LSE (attention_with_kvcache,
// csrc/ops/kvcache_op.cpp), the part the CPU op and the CUDA kernel share.
//
// Split s of a row saw some of its keys and returned o_s (normalised over those keys)
// and lse_s. The whole row is
//   m      = max_s lse_s, and the sink (per query head) when there is one
//   shift  = m where finite, else 0
//   w_s    = exp(lse_s - shift),  denom = sum_s w_s (+ exp(sink - shift))
//   out    = (sum_s w_s o_s) / denom * v_descale / out_scale
//   lse    = shift + log(denom)
// with the rules of docs/DESIGN.md 1.5 / 1.6: a split that saw no key (lse -inf) adds
// nothing; a row no split saw is out 0 and lse = the sink (-inf without one); a NaN lse
// (an undefined split) or a NaN / +inf sink make a row that saw keys NaN (out and lse);
// NaN in a partial's out stays in that element; a -inf sink adds exactly 0. FP8 output
// saturates at +-448 (NaN stays NaN).
//
// No torch here: csrc/kernel/merge_splits.cuh includes it under nvcc (one warp per row)
// and csrc/ops/merge_splits.cpp runs the same functions on the host, so the CPU suite
// tests the kernel's arithmetic and its NaN / sink rules (tests/test_kvcache.py);
// tests/gpu/test_kvcache_sm90.py checks the kernel against the float64 oracle (empty
// rows, finite and -inf sinks), not the NaN rules.
#pragma once

#include <math.h>
#include <stdint.h>

#include "host_device.h"

namespace torch_fmha {

// Output element types of the CUDA merge (the CPU op writes its accumulator type and
// converts with ATen).
enum class MergeOutType : int32_t { kBFloat16 = 0, kFloat16 = 1, kFloat8E4M3 = 2 };

// Where partial values live: [B, S, Sq, Ho, Hi, (D)] with any strides (elements),
// query head h = ho * Hi + hi. Hi = 1 but for GQA-packed decode, whose partials hold
// the Hi query heads of KV head ho as rows of one head (read in place, no copy).
struct MergeLayout {
  int64_t b = 0, s = 0, sq = 0, ho = 0, hi = 0, d = 0;  // strides
  int32_t heads_inner = 1;                                // Hi

  TORCH_FMHA_HOST_DEVICE int64_t offset(int b_, int s_, int sq_, int h, int d_) const {
    return b_ * b + s_ * s + sq_ * sq + (h / heads_inner) * ho + (h % heads_inner) * hi + d_ * d;
  }
};

// What the host fills for the CUDA merge: partials o (float16) and lse (float32);
// out [B, Sq, H, D] contiguous; lse_out with any strides (the op's [B, H, Sq]).
struct MergeParams {
  const void* o_parts = nullptr;
  const float* lse_parts = nullptr;
  void* out = nullptr;
  float* lse_out = nullptr;
  const float* sinks = nullptr;      // [H] or null
  const float* v_descale = nullptr;  // [1], [B, Hkv] or null
  const float* out_scale = nullptr;  // [1] or null
  MergeLayout o_layout, lse_layout;  // lse: d unused
  int64_t lse_out_stride[3] = {};    // b, sq, h
  int32_t batch = 0, splits = 0, seqlen_q = 0, heads = 0, heads_kv = 0, head_dim = 0;
  bool v_descale_per_head = false;   // [B, Hkv] (else [1])
  MergeOutType out_type = MergeOutType::kBFloat16;

  TORCH_FMHA_HOST_DEVICE int64_t rows() const { return int64_t(batch) * seqlen_q * heads; }

  // The CUDA kernel reads each lane's head_dim / 32 contiguous float16 partials of a split
  // as one access (kernel/merge_splits.cuh): head_dim 64, 128 or 256 (the FP8 kernels'),
  // a contiguous head dim, and every row's and split's start aligned to that access.
  // merge_cuda copies partials that are not so (the decode kernel writes them so).
  TORCH_FMHA_HOST_DEVICE bool partials_load_whole() const {
    if (head_dim != 64 && head_dim != 128 && head_dim != 256) return false;
    const int64_t elems = head_dim / 32;
    const MergeLayout& l = o_layout;
    return l.d == 1 && l.b % elems == 0 && l.s % elems == 0 && l.sq % elems == 0 &&
           l.ho % elems == 0 && l.hi % elems == 0 &&
           reinterpret_cast<uintptr_t>(o_parts) % (2 * elems) == 0;
  }
};

TORCH_FMHA_HOST_DEVICE float merge_exp(float x) { return expf(x); }
TORCH_FMHA_HOST_DEVICE double merge_exp(double x) { return exp(x); }
TORCH_FMHA_HOST_DEVICE float merge_log(float x) { return logf(x); }
TORCH_FMHA_HOST_DEVICE double merge_log(double x) { return log(x); }

// A row's merge weights, from its splits' LSEs.
template <class Acc>
struct MergeRow {
  Acc shift;     // max of the LSEs (and the sink) where finite, else 0
  Acc denom;     // sum of the weights (and the sink's)
  bool empty;    // no split saw a key (every lse -inf)
  bool defined;  // the max is not NaN or +inf
  Acc lse;       // the row's final LSE

  // Split s's weight, from its lse.
  TORCH_FMHA_HOST_DEVICE Acc weight(Acc lse_s) const { return merge_exp(lse_s - shift); }

  // The final output element from sum_s weight(lse_s) * o_s[d], the row's v_descale
  // and 1 / out_scale (1 without them); fp8: saturated to +-448.
  TORCH_FMHA_HOST_DEVICE Acc out(Acc weighted_sum, Acc v_descale, Acc out_scale, bool fp8) const {
    if (empty) return Acc(0);
    if (!defined) return Acc(NAN);
    Acc o = weighted_sum / denom * v_descale / out_scale;
    if (fp8) o = o > Acc(448) ? Acc(448) : (o < Acc(-448) ? Acc(-448) : o);  // NaN stays
    return o;
  }
};

// The pieces of a row's merge, shared by merge_row (serial, the CPU op) and the kernel
// (csrc/kernel/merge_splits.cuh: the splits across a warp's lanes). Both reduce the
// splits with these operations in the same split order, so their results are bitwise
// equal given equal inputs.

// True for a NaN lse (an undefined split, DESIGN 1.6).
template <class Acc>
TORCH_FMHA_HOST_DEVICE bool merge_is_nan(Acc lse_s) { return lse_s != lse_s; }

// The running max of the LSEs: m after the splits before, lse_s the next. Keeps m on a
// tie (the first of equal values, e.g. -0 before +0) and on NaN (flagged apart by
// merge_is_nan), so a reduction in any tree that keeps earlier splits on the left
// (merge_max(earlier, later)) equals the serial loop bitwise.
template <class Acc>
TORCH_FMHA_HOST_DEVICE Acc merge_max(Acc m, Acc lse_s) { return lse_s > m ? lse_s : m; }

// A row's shift, empty and defined from max_lse (merge_max over its splits from -inf)
// and any_nan (merge_is_nan of any split's lse); has_sink / sink: the row's query
// head's sink. denom and lse are set by merge_row_finish.
template <class Acc>
TORCH_FMHA_HOST_DEVICE MergeRow<Acc> merge_row_shift(Acc max_lse, bool any_nan, bool has_sink, Acc sink) {
  const Acc inf = Acc(INFINITY);
  Acc m = max_lse;
  bool nan = any_nan;
  MergeRow<Acc> r;
  r.empty = !nan && m == -inf;
  if (has_sink) {
    nan |= merge_is_nan(sink);
    m = merge_max(m, sink);
  }
  if (nan) m = Acc(NAN);
  r.defined = m < inf;  // false for NaN and +inf
  r.shift = (m > -inf && m < inf) ? m : Acc(0);
  r.denom = Acc(0);
  r.lse = Acc(NAN);
  return r;
}

// Sets r's denom and lse from split_weight_sum: Acc(0) += r.weight(lse_s) for each split
// s in increasing order (the sink's weight is added here, last).
template <class Acc>
TORCH_FMHA_HOST_DEVICE void merge_row_finish(MergeRow<Acc>& r, Acc split_weight_sum, bool has_sink, Acc sink) {
  Acc denom = split_weight_sum;
  if (has_sink) denom += merge_exp(sink - r.shift);
  r.denom = denom;
  r.lse = r.shift + merge_log(denom);
  if (!r.defined) r.lse = Acc(NAN);
  if (r.empty) r.lse = has_sink ? sink : -Acc(INFINITY);
}

// The whole row, serially: lse_at(s) is split s's lse. has_sink / sink: the row's query
// head's sink.
template <class Acc, class LseAt>
TORCH_FMHA_HOST_DEVICE MergeRow<Acc> merge_row(int splits, LseAt lse_at, bool has_sink, Acc sink) {
  Acc m = -Acc(INFINITY);
  bool nan = false;
  for (int s = 0; s < splits; ++s) {
    const Acc l = lse_at(s);
    nan |= merge_is_nan(l);
    m = merge_max(m, l);
  }
  MergeRow<Acc> r = merge_row_shift(m, nan, has_sink, sink);
  Acc denom = Acc(0);
  for (int s = 0; s < splits; ++s) denom += r.weight(lse_at(s));
  merge_row_finish(r, denom, has_sink, sink);
  return r;
}

}  // namespace torch_fmha
