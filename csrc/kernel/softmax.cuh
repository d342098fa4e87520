// torch_fmha kernel: online softmax on the S accumulator held in registers.
//
// Each consumer thread holds 2 rows of its warpgroup's 64 x kBlockN S tile
// (rows lane/4 and lane/4 + 8 of its warp's 16): flat register index
// i = e + 2 * r8 + 4 * j, j < kBlockN / 8 (GMMA C layout). The 4 threads of a
// quad share a row, so row reductions are 2 xor-shuffles.
//
// Scores are raw q.k dot products; the scale (softmax_scale * q_descale *
// k_descale * log2(e)) is folded into one FFMA before exp2. For FP8 P, values
// are kept in [0, 256]: p = exp2(x * scale - max * scale + kMaxOffset), so the
// e4m3 rounding keeps more relative precision for small p; the offset cancels
// in O / l and is taken out of the LSE.
//
// Soft-capping (params.softcap > 0): the consumer first replaces every raw
// score by tanh(s * softcap_mul), softcap_mul = softmax_scale * q_descale *
// k_descale / softcap (apply_softcap, before the mask, so masked keys still
// become exact -inf), and scale_log2 is then softcap * log2(e): the same online
// softmax runs on the capped scores. Sinks (params.sinks) join only the final
// normalisation (normalize_row).
#pragma once

#include <cstdint>
#include <cmath>
#include <cstring>

namespace torch_fmha::kernel {

inline constexpr float kMaxOffset = 8.0f;  // P in [0, 2^8]; e4m3 max is 448

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// 2^x without the MUFU, on the FMA / ALU pipes: FlashAttention-4's offload of part
// of a block's exps (OnlineSoftmax's kPolyEvery, a tuning knob). At D = 128 a block's
// exps need as many SM cycles on the MUFU (16 ex2 / clk) as its two GEMMs on the
// tensor core; measured (session 23, DESIGN section 6), moving 1 in 4 or 1 in 8 of
// them here was 3-17% slower: the MUFU's rate does not pace our softmax. Off in
// the release builds. x = j + f with j the
// nearest integer (the 1.5 * 2^23 rounding trick) and f in [-0.5, 0.5];
// 2^f by a degree-3 polynomial (relative-error minimax on [-0.5, 0.5], fitted
// for this file: max relative error 7.5e-5 in float, far below e4m3's 2^-4
// rounding of P; p(0) is 1 - 7.2e-5, so integers are not exact either), then
// times 2^j built in the exponent bits. Domain: x < 127.5 (the softmax's
// arguments stay below kMaxOffset + kLazyRescaleSlack); j = 128 gives +inf, and
// above it j's bits wrap.
// x below -127 (masked keys: -inf) gives exactly 0, as ex2.approx.ftz does at
// -126 and below; NaN stays NaN (max.NaN keeps it, and NaN * 2^j is NaN), which
// the NaN semantics need (finalize). tests/host_checks/check_softmax_finalize.cu
// checks the host branch below against exp2; the device branch (max.NaN,
// __fadd_rn) is the same arithmetic but runs only in a kernel built with the knob,
// which no GPU test builds.
__host__ __device__ __forceinline__ float poly_exp2(float x) {
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23: t's low mantissa bits hold j
#if defined(__CUDA_ARCH__)
  float xc;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(xc) : "f"(x), "f"(-127.f));
  const float t = __fadd_rn(xc, kRound);  // _rn: no contraction or re-association
  const float f = __fadd_rn(xc, -__fadd_rn(t, -kRound));  // x - j, in [-0.5, 0.5]
#else
  const float xc = x < -127.f ? -127.f : x;  // NaN compares false: stays NaN
  const volatile float t_rounded = xc + kRound;
  const float t = t_rounded;
  const float f = xc - (t - kRound);
#endif
  const float p = fmaf(fmaf(fmaf(0x1.c3f6e2p-5f, f, 0x1.f0ddf0p-3f), f, 0x1.62f31ap-1f), f,
                       0x1.fff694p-1f);
  // t's bits are 0x4B400000 + j; shifted by 23 only j's low 9 bits survive: (j + 127) << 23
  // is 2^j for -126 <= j <= 127 and +0 for j = -127.
  uint32_t t_bits;
  memcpy(&t_bits, &t, sizeof t_bits);
  const uint32_t two_j_bits = (t_bits << 23) + (127u << 23);
  float two_j;
  memcpy(&two_j, &two_j_bits, sizeof two_j);
  return p * two_j;
}

// The factor by which O accumulated against a row's old max must be scaled for its
// new one: exp2(old_max * scale_log2 - new_max_scaled), 0 for a row that had seen no
// key (old_max -inf), new_max_scaled = new_max * scale_log2 (0 for -inf). The consumer
// and the decode kernel skip the O multiply when every alpha of the warp is exactly 1.
// Written plainly (kExact = false), ptxas contracts the exponent into
// FFMA(old_max, scale_log2, -new_max_scaled): for an unchanged max that is the rounding
// residue of new_max * scale_log2 (up to half an ulp of it), not 0, and ex2 of it is
// often 1 +- a few ulp, so the skip rarely fires (SASS read in session 15, D = 128).
// kExact rounds the product on its own (__fmul_rn, as new_max_scaled is), so an
// unchanged max gives exactly 0 and alpha exactly 1 (ex2.approx(0) = 1), for one FADD
// more. Which builds use it is Traits::kExactAlpha (measured, docs/DESIGN.md section 6).
template <bool kExact>
__device__ __forceinline__ float rescale_factor(float old_max, float new_max_scaled, float scale_log2) {
  if (old_max == -INFINITY) return 0.f;
  if constexpr (kExact) return fast_exp2(__fmul_rn(old_max, scale_log2) - new_max_scaled);
  return fast_exp2(old_max * scale_log2 - new_max_scaled);
}

// The lazy rescale (OnlineSoftmax's kLazyRescale, Traits::kLazyRescale) keeps a row's
// reference max while a block raises it by at most kLazyRescaleSlack (log2 units), so
// the row needs no O rescale there (alpha = 1 exactly) and, when no row of the warp
// needs one, the consumer's vote skips the multiply; FlashAttention-4 rescales lazily
// the same way. P against a stale reference is at most
// 2^(kMaxOffset + slack), which e4m3 must still hold (448 = 2^8.81). The row's LSE and
// 1 / l use the same reference, so only P's rounding differs.
inline constexpr float kLazyRescaleSlack = 0.75f;

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
  return x;
}

__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  return x;
}

// MUFU.TANH: max relative error 2^-11; tanh(+-inf) = +-1, tanh(NaN) = NaN.
__device__ __forceinline__ float fast_tanh(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// s = tanh(s * softcap_mul) on every score of the thread's S accumulator: the
// soft-capped score divided by softcap (the softmax then scales by softcap *
// log2(e)). Runs before the mask: a NaN or infinite product (NaN / infinite
// descales, poisoned rows past a sequence's end) becomes NaN / +-1 here and the
// mask's select still sets every masked key to exact -inf afterwards. An
// infinite score is capped to +-softcap, as on the CPU (cpu_math.cpp).
// kValues: the first kValues of the thread's scores (all by default; a half block,
// consumer.cuh, caps its lower half only).
template <int kValues = -1, class Frag>
__device__ __forceinline__ void apply_softcap(Frag& s, float softcap_mul) {
  constexpr int kN = kValues < 0 ? int(decltype(size(s))::value) : kValues;
#pragma unroll
  for (int i = 0; i < kN; ++i) s(i) = fast_tanh(s(i) * softcap_mul);
}

// Per-tile scalars of the scores (TileInfo, filled by the producer), from
// score_scale = softmax_scale * q_descale * k_descale: the exp2 scale of the
// scores the softmax sees, and with soft-capping (softcap > 0) the factor
// apply_softcap multiplies raw scores by before the tanh. Then
//   scale_log2 * tanh(s * softcap_mul) = log2(e) * softcap * tanh(x / softcap)
// with x = s * score_scale. An infinite score_scale gives tanh(+-inf) = +-1
// (x capped to +-softcap, as on the CPU); 0 gives uniform weights.
struct ScoreScales {
  float scale_log2;
  float softcap_mul;  // 0 without soft-capping (unused)
};

__host__ __device__ __forceinline__ ScoreScales score_scales(float score_scale, float softcap) {
  constexpr float kLog2e = 1.4426950408889634f;
  if (softcap > 0.f) return {softcap * kLog2e, score_scale / softcap};
  return {score_scale * kLog2e, 0.f};
}

// The final normalisation of one row, host-callable for
// tests/host_checks/check_softmax_finalize.cu.
//   l:         sum over the row's keys of p = 2^(y - m + kMaxOffset) (0: the
//              row saw no key; NaN propagates)
//   m:         the row's max score y in log2 units (-inf when l == 0)
//   sink:      the row's sink logit (natural units, as the user gave it), -inf
//              without sinks
// inv_sum multiplies the P V accumulator (0 for a row that saw no key: the
// epilogue then stores exact zeros); lse is the natural-log logsumexp of the
// scores and the sink (exactly `sink` for a row that saw no key). With a sink
// s = sink * log2(e) the denominator is
//   l 2^(m - kMaxOffset) + 2^s = 2^(M - kMaxOffset) (l 2^(m - M) + 2^(s - M + kMaxOffset))
// with M = max(m, s), so neither a sink far above the scores (inv_sum
// underflows towards the true 0, no inf) nor far below overflows. A NaN sink
// makes a non-empty row NaN; +inf gives NaN (undefined, as on the CPU).
struct RowNorm {
  float inv_sum;
  float lse;
};

__host__ __device__ __forceinline__ float log2_approx(float x) {
#if defined(__CUDA_ARCH__)
  return __log2f(x);
#else
  return std::log2(x);
#endif
}

__host__ __device__ __forceinline__ RowNorm normalize_row(float l, float m, float sink) {
  constexpr float kLn2 = 0.6931471805599453f;
  if (l == 0.f) {  // no key seen (decided by the mask): out = 0, lse = sink (or -inf)
    return {0.f, sink};
  }
  if (sink == -INFINITY) {  // no sink: bitwise the kernel's finalize before sinks
    return {1.f / l, (m - kMaxOffset + log2_approx(l)) * kLn2};
  }
  const float sink_log2 = sink * 1.4426950408889634f;
  const float big = fmaxf(m, sink_log2);  // a NaN sink: big = m, and b below is NaN
  const float a = exp2f(m - big);
  const float b = exp2f(sink_log2 - big + kMaxOffset);
  const float d = fmaf(l, a, b);
  return {a / d, (big - kMaxOffset + std::log2(d)) * kLn2};
}

// The exp2 scale a softmax may use, from the tile's scale_log2. The scale is
// folded into the exp2 argument after the mask, so a masked score (-inf) meets
// it in an FFMA: -inf * NaN, -inf * 0 and -inf * -inf would let masked keys in.
// A NaN or infinite scale makes every row that sees a key NaN anyway (issue 13
// semantics): +inf gives exactly that (p = ex2(inf - inf) = NaN for the row's
// max key) while masked keys stay ex2(-inf) = 0. A zero scale (underflowed
// descales) means uniform weights: the smallest normal float gives them
// (|s| * 2^-126 vanishes next to the offset) and keeps -inf * scale = -inf.
__device__ __forceinline__ float usable_scale_log2(float scale_log2) {
  return scale_log2 > -INFINITY ? (scale_log2 == 0.f ? 1.17549435e-38f : scale_log2) : INFINITY;
}

// The max of n raw scores as fmaxf would give it, from the scores' bits as signed ints and
// the three-input integer max (__vimax3_s32: one VIMNMX3 on sm_90, two scores per
// instruction against one per FMNMX). Non-negative floats and +inf order as their bits do,
// and every negative float (and -0, -inf, a negative NaN) is a negative int, so when the
// int max r is in [0, +inf] it is bitwise the float max (a positive NaN would be above +inf:
// fmaxf skips NaN, so that case, and r < 0, where the scores are all negative and the int
// order reverses, take fmaxf's chain instead). Host-callable for
// tests/host_checks/check_softmax_int_max.cu. get(i), i < n: the i-th score.
__host__ __device__ __forceinline__ int32_t max_i32(int32_t a, int32_t b) { return a > b ? a : b; }

__host__ __device__ __forceinline__ int32_t score_bits(float x) {
  int32_t b;
  memcpy(&b, &x, sizeof b);
  return b;
}

// The int max of the scores' bits, kChains chains of VIMNMX3 (two scores each).
template <int kN, int kChains, class Get>
__host__ __device__ __forceinline__ int32_t int_max_bits(Get&& get) {
  static_assert(kN % (2 * kChains) == 0 && kN >= 2 * kChains);
  int32_t acc[kChains];
#pragma unroll
  for (int c = 0; c < kChains; ++c) acc[c] = max_i32(score_bits(get(2 * c)), score_bits(get(2 * c + 1)));
#pragma unroll
  for (int i = 2 * kChains; i < kN; i += 2) {
    int32_t& a = acc[(i / 2) % kChains];
    a = __vimax3_s32(a, score_bits(get(i)), score_bits(get(i + 1)));
  }
  int32_t r = acc[0];
#pragma unroll
  for (int c = 1; c < kChains; c += 2) r = c + 1 < kChains ? __vimax3_s32(r, acc[c], acc[c + 1]) : max_i32(r, acc[c]);
  return r;
}

// Whether int_max_bits' r is the float max: r in [+0, +inf].
__host__ __device__ __forceinline__ bool int_max_is_float_max(int32_t r) {
  return static_cast<uint32_t>(r) <= 0x7f800000u;
}

__host__ __device__ __forceinline__ float score_of_bits(int32_t r) {
  float m;
  memcpy(&m, &r, sizeof m);
  return m;
}

template <int kN, class Get>
__host__ __device__ __forceinline__ float fmax_of_scores(Get&& get) {
  float m = get(0);
#pragma unroll
  for (int i = 1; i < kN; ++i) m = fmaxf(m, get(i));
  return m;
}

template <int kN, int kChains, class Get>
__host__ __device__ __forceinline__ float int_max_of_scores(Get&& get) {
  const int32_t r = int_max_bits<kN, kChains>(get);
  return int_max_is_float_max(r) ? score_of_bits(r) : fmax_of_scores<kN>(get);
}

// kExactAlpha, kLazyRescale: see rescale_factor and kLazyRescaleSlack above.
// kPolyEvery: one exp in every kPolyEvery of a block runs as poly_exp2 (0: none).
// kIntMax: the row max of a block by int_max_of_scores (the same value; on at D = 128 / 256,
// Traits::kIntRowMax).
template <int kBlockN, bool kExactAlpha, bool kLazyRescale, int kPolyEvery = 0, bool kIntMax = false>
struct OnlineSoftmax {
  // Column pair j's second exp is a polynomial one (every kPolyPairs-th pair; 1 when off,
  // so that nothing takes "% 0").
  static constexpr int kPolyPairs = kPolyEvery > 0 ? kPolyEvery / 2 : 1;
  static_assert(kPolyEvery == 0 || (kPolyEvery > 0 && kPolyEvery % 2 == 0 && (kBlockN / 8) % kPolyPairs == 0),
                "kPolyEvery: 0, or an even count whose half divides a row's column pairs");
  static constexpr bool poly_at(int j) { return kPolyEvery > 0 && j % kPolyPairs == kPolyPairs - 1; }

  float row_max[2];  // running max of raw scores (-inf: nothing seen yet)
  float row_sum[2];  // this thread's partial sum of p (quad-reduced at the end)
  float scale_log2;  // softmax_scale * q_descale * k_descale * log2(e)

  // Once per tile, off the fast path (usable_scale_log2 says why the scale is remapped).
  __device__ __forceinline__ void reset(float scale_log2_) {
    scale_log2 = usable_scale_log2(scale_log2_);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      row_max[r] = -INFINITY;
      row_sum[r] = 0.f;
    }
  }

  // Folds one block of scores into the running state. On return `s` holds
  // p = exp2(s * scale_log2 - max_scaled + kMaxOffset) and `alpha[r]` is the
  // factor by which the O rows accumulated so far must be rescaled.
  //
  // Each warp of a consumer warpgroup shares its SM sub-partition with one
  // warp of the other consumer warpgroup only, so there is little latency
  // hiding: a row max or row sum written as one dependent chain over the
  // kBlockN / 4 values a thread holds per row (48 FMNMX / FADD back to back)
  // would leave the pipes idle. The reductions run as kChains independent
  // chains per row, both rows interleaved, combined at the end.
  //
  // update = update_max then update_exp (two steps, so each reads as one
  // pass over the block).
  //
  // kKeys: the block's first kKeys keys only (flat indices below kKeys / 2; the
  // rest of `s` is neither read nor written). A tile's first block whose upper
  // half no row sees runs on its lower half (consumer.cuh, Traits::kHalfFirstBlock):
  // the masked half would add -inf to the max and exact zeros to the sums, so the
  // state and the lower half's p come out with the same bits either way.
  template <int kKeys = kBlockN, class Frag>
  __device__ __forceinline__ void update(Frag& s, float (&alpha)[2]) {
    float bias[2];
    update_max<kKeys>(s, alpha, bias);
    update_exp<false, kKeys>(s, bias, alpha);
  }

  static constexpr int kChains = 4;

  // The new row max (raw scores), alpha per row and the exp2 bias of this block.
  // With kLazyRescale a row keeps its reference max (alpha = 1: nothing of its O to
  // rescale) while the block raised it by at most kLazyRescaleSlack. Each row decides
  // alone: a decision shared by the rows of a warp (a vote) would make one row's
  // rounding depend on other rows' data, padding and NaN rows included (DESIGN 1.6).
  template <int kKeys = kBlockN, class Frag>
  __device__ __forceinline__ void update_max(const Frag& s, float (&alpha)[2], float (&bias)[2]) {
    static_assert(!kLazyRescale || kMaxOffset + kLazyRescaleSlack < 8.8f,
                  "P against a stale max must fit e4m3 (448)");
    static_assert(kKeys <= kBlockN);
    constexpr int kCols = kKeys / 8;  // column pairs per row held by this thread
    static_assert(kCols % kChains == 0);
    float mx[2][kChains];  // the fmaxf chains (without kIntMax)
    if constexpr (!kIntMax) {
#pragma unroll
      for (int j = 0; j < kCols; ++j) {
#pragma unroll
        for (int r8 = 0; r8 < 2; ++r8) {
          const float pair = fmaxf(s(2 * r8 + 4 * j), s(1 + 2 * r8 + 4 * j));
          mx[r8][j % kChains] = j < kChains ? pair : fmaxf(mx[r8][j % kChains], pair);
        }
      }
    }
    float int_max[2];  // with kIntMax
    if constexpr (kIntMax) {  // both rows' int maxes, then one branch to fmaxf for both rows,
      // taken where a thread's part of a row holds no non-negative live score (the masked
      // edges of diagonal and window blocks, rows of negative scores)
      // row r8's values: s(2 r8 + 4 j), s(1 + 2 r8 + 4 j)
      const auto row = [&](int r8) { return [&s, r8](int i) { return s((i & 1) + 2 * r8 + 4 * (i >> 1)); }; };
      const int32_t r0 = int_max_bits<2 * kCols, kChains>(row(0));
      const int32_t r1 = int_max_bits<2 * kCols, kChains>(row(1));
      if (int_max_is_float_max(r0) && int_max_is_float_max(r1)) {
        int_max[0] = score_of_bits(r0);
        int_max[1] = score_of_bits(r1);
      } else {
        int_max[0] = fmax_of_scores<2 * kCols>(row(0));
        int_max[1] = fmax_of_scores<2 * kCols>(row(1));
      }
    }
#pragma unroll
    for (int r8 = 0; r8 < 2; ++r8) {
      float m;
      if constexpr (kIntMax) {
        m = int_max[r8];
      } else {
        m = fmaxf(fmaxf(mx[r8][0], mx[r8][1]), fmaxf(mx[r8][2], mx[r8][3]));
      }
      m = quad_max(fmaxf(m, row_max[r8]));
      if constexpr (kLazyRescale) {
        // A row that has seen no key yet (max -inf) is never kept. The reference
        // product is rounded on its own, as max_scaled is.
        const float ref_scaled = __fmul_rn(row_max[r8], scale_log2);
        if (row_max[r8] != -INFINITY && m * scale_log2 - ref_scaled <= kLazyRescaleSlack) {
          alpha[r8] = 1.f;
          bias[r8] = kMaxOffset - ref_scaled;
          continue;
        }
      }
      // A row that has seen no key yet keeps max -inf; use 0 so that
      // (-inf) - (-inf) never happens: its p are exp2(-inf) = 0.
      const float max_scaled = m == -INFINITY ? 0.f : m * scale_log2;
      alpha[r8] = rescale_factor<kExactAlpha>(row_max[r8], max_scaled, scale_log2);
      row_max[r8] = m;
      bias[r8] = kMaxOffset - max_scaled;
    }
  }

  // p = exp2(s * scale_log2 + bias) in place, and the row sums rescaled by alpha. With
  // kArgsInS, s already holds the exp2 arguments (update_args) and bias is not read.
  template <bool kArgsInS = false, int kKeys = kBlockN, class Frag>
  __device__ __forceinline__ void update_exp(Frag& s, const float (&bias)[2],
                                             const float (&alpha)[2]) {
    static_assert(kKeys <= kBlockN);
    constexpr int kCols = kKeys / 8;
    float sum[2][kChains];
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
#pragma unroll
      for (int r8 = 0; r8 < 2; ++r8) {
        const auto arg = [&](float x) { return kArgsInS ? x : fmaf(x, scale_log2, bias[r8]); };
        float& x0 = s(2 * r8 + 4 * j);
        float& x1 = s(1 + 2 * r8 + 4 * j);
        x0 = fast_exp2(arg(x0));
        x1 = poly_at(j) ? poly_exp2(arg(x1)) : fast_exp2(arg(x1));
        sum[r8][j % kChains] = j < kChains ? x0 + x1 : sum[r8][j % kChains] + (x0 + x1);
      }
    }
#pragma unroll
    for (int r8 = 0; r8 < 2; ++r8) {
      row_sum[r8] = row_sum[r8] * alpha[r8] + ((sum[r8][0] + sum[r8][1]) + (sum[r8][2] + sum[r8][3]));
    }
  }

  // update_exp in two steps: this, the exp2 arguments s * scale_log2 + bias in place, then
  // update_exp<true>, the exps and row sums (the same FFMAs and MUFU.EX2s, so the same
  // bits). The builds whose P V wait sits between the max and the exps (kPvWaitAfterMax)
  // may issue the FFMAs before that wait (Traits::kArgsBeforePvWait, a tuning knob), so
  // that the MUFU runs from the wait on instead of after a run of FFMAs.
  template <class Frag>
  __device__ __forceinline__ void update_args(Frag& s, const float (&bias)[2]) const {
    static_assert(kPolyEvery == 0, "update_args: MUFU exps only");
    constexpr int kCols = kBlockN / 8;
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s(e + 4 * j) = fmaf(s(e + 4 * j), scale_log2, bias[e >> 1]);
    }
  }

  // 1 / l per row (0 for a row that saw no key) and the natural-log LSE
  // (-inf for such a row, or its sink). A NaN or +inf score (fmaxf skips NaN
  // in the max, but its p = ex2(NaN) is NaN) leaves l = NaN: the row is not
  // empty, its 1 / l and LSE are NaN and so is its output. Only a row with
  // p = 0 at every key it visited (all masked) has l == 0. sink: the tile's
  // sink logit (TileInfo), -inf without sinks (normalize_row).
  __device__ __forceinline__ void finalize(float (&inv_sum)[2], float (&lse)[2],
                                           float sink) const {
#pragma unroll
    for (int r8 = 0; r8 < 2; ++r8) {
      const RowNorm n = normalize_row(quad_sum(row_sum[r8]), row_max[r8] * scale_log2, sink);
      inv_sum[r8] = n.inv_sum;
      lse[r8] = n.lse;
    }
  }
};

}  // namespace torch_fmha::kernel
