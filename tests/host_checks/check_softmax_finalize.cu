// Host-only check (no GPU needed) of the kernel's own score-scale and
// row-normalisation math (csrc/kernel/softmax.cuh: score_scales,
// normalize_row), against double-precision references:
//  * soft-capping: scale_log2 * tanh(s * softcap_mul) is log2(e) * softcap *
//    tanh(x / softcap) with x = s * score_scale, also for an infinite or zero
//    score_scale (capped to +-softcap / uniform), and the plain exp2 scale
//    without soft-capping;
//  * sinks: the sink-merged 1 / l and LSE for rows built from score lists,
//    sinks far above and below the scores (no inf / NaN from overflow), a row
//    that saw no key (out = 0, lse = the sink exactly, or -inf), NaN in l or in
//    the sink, and bitwise the pre-sink formula when there is no sink;
//  * poly_exp2 (exps on the FMA pipe) against exp2: relative error, -inf / NaN.
// Prints one "ok" line per group; exits 1 on the first mismatch.
// Build + run: nvcc -std=c++17 -Icsrc tests/host_checks/check_softmax_finalize.cu -o build/check_sf && build/check_sf
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernel/softmax.cuh"

using torch_fmha::kernel::kMaxOffset;
using torch_fmha::kernel::normalize_row;
using torch_fmha::kernel::RowNorm;
using torch_fmha::kernel::score_scales;
using torch_fmha::kernel::ScoreScales;

static int failures = 0;

static void expect(bool ok, const char* what, double a, double b) {
  if (!ok && failures++ < 10) std::printf("FAIL %s: got %.9g, want %.9g\n", what, a, b);
}

static bool close(double got, double want, double rel, double abs_tol = 0) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= abs_tol + rel * std::fabs(want);
}

static bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// What the kernel's online softmax holds for a row with natural-unit scores x
// (scale_log2 = log2 e, raw scores x): m = max y, l = sum 2^(y - m + 8).
static void row_state(const std::vector<double>& x, float& l, float& m) {
  m = -INFINITY;
  for (double v : x) m = std::fmax(m, float(v * M_LOG2E));
  double sum = 0;
  for (double v : x) sum += std::exp2(float(v * M_LOG2E) - double(m) + kMaxOffset);
  l = x.empty() ? 0.f : float(sum);
}

static int check_softcap() {
  int checked = 0;
  const float caps[] = {20.f, 50.f, 1.f};
  const float scales[] = {0.125f, 0.0883883f, 1.f, 3.5f, 0.f, INFINITY};
  for (float cap : caps) {
    for (float sc : scales) {
      const ScoreScales s = score_scales(sc, cap);
      expect(s.scale_log2 == cap * 1.4426950408889634f, "softcap scale_log2", s.scale_log2, cap);
      for (float raw = -300.f; raw <= 300.f; raw += 0.75f) {
        const double x = double(raw) * sc;  // the CPU's scaled score (inf * 0 = NaN)
        const double want = std::isnan(x) ? NAN : M_LOG2E * cap * std::tanh(x / cap);
        const double got = double(s.scale_log2) * std::tanh(double(raw * s.softcap_mul));
        expect(close(got, want, 2e-6, 1e-6), "softcap exp2 argument", got, want);
        ++checked;
      }
    }
  }
  for (float sc : scales) {  // no soft-capping: the plain exp2 scale, bitwise
    const ScoreScales s = score_scales(sc, 0.f);
    expect(same_bits(s.scale_log2, sc * 1.4426950408889634f) && s.softcap_mul == 0.f,
           "no-softcap scale_log2", s.scale_log2, sc);
    ++checked;
  }
  return checked;
}

static int check_sinks() {
  int checked = 0;
  // Rows of scores vs the float64 reference: lse = log(sum e^x + e^sink),
  // weight of key j = e^(x_j - lse) = inv_sum * p_j.
  const std::vector<std::vector<double>> rows = {
      {0.0}, {1.5, -2.0, 0.25}, {-30.0, -31.0}, {40.0, 39.0, 10.0}, {-0.5, 0.5, 3.0, 3.0, -7.0}};
  const double sinks[] = {-INFINITY, -1e4, -50.0, -3.0, 0.0, 0.7, 5.0, 40.0, 88.0, 200.0, 1e4};
  for (const auto& x : rows) {
    float l, m;
    row_state(x, l, m);
    for (double sink : sinks) {
      const RowNorm n = normalize_row(l, m, float(sink));
      double mx = float(sink);
      for (double v : x) mx = std::fmax(mx, v);
      double sum = std::exp(float(sink) - mx);
      for (double v : x) sum += std::exp(v - mx);
      const double lse = mx + std::log(sum);
      expect(std::isfinite(n.lse) && std::isfinite(n.inv_sum) && n.inv_sum >= 0.f,
             "finite normalisation", n.lse, lse);
      expect(close(n.lse, lse, 2e-6, 2e-5), "sink lse", n.lse, lse);
      for (double v : x) {
        const double p = std::exp2(float(v * M_LOG2E) - double(m) + kMaxOffset);
        const double w = std::exp(v - lse);
        expect(close(double(n.inv_sum) * p, w, 1e-5, 1e-30), "sink weight", n.inv_sum * p, w);
      }
      checked += 1 + int(x.size());
    }
    // No sink: bitwise the kernel's finalize before sinks.
    const RowNorm n = normalize_row(l, m, -INFINITY);
    const float lse_old = (m - kMaxOffset + std::log2(l)) * 0.6931471805599453f;
    expect(same_bits(n.inv_sum, 1.f / l) && same_bits(n.lse, lse_old), "no-sink formula", n.lse,
           lse_old);
    ++checked;
  }
  // A row that saw no key: out = 0, lse = the sink exactly (or -inf, or NaN).
  const float empty_sinks[] = {-INFINITY, -2.5f, 0.f, 3.25f, 1e30f, NAN};
  for (float sink : empty_sinks) {
    const RowNorm n = normalize_row(0.f, -INFINITY, sink);
    expect(n.inv_sum == 0.f && (same_bits(n.lse, sink) || (std::isnan(sink) && std::isnan(n.lse))),
           "empty row", n.lse, sink);
    ++checked;
  }
  // NaN propagates: a NaN score (l = NaN) or a NaN sink makes the row NaN;
  // a +inf sink leaves the softmax undefined (NaN, as on the CPU).
  const float l1 = 256.f, m1 = 0.f;
  const RowNorm a = normalize_row(NAN, m1, 1.f), b = normalize_row(l1, m1, NAN),
                c = normalize_row(l1, m1, INFINITY), d = normalize_row(NAN, m1, -INFINITY);
  expect(std::isnan(a.inv_sum) && std::isnan(a.lse), "NaN l", a.lse, NAN);
  expect(std::isnan(b.inv_sum) && std::isnan(b.lse), "NaN sink", b.lse, NAN);
  expect(std::isnan(c.inv_sum) && std::isnan(c.lse), "+inf sink", c.lse, NAN);
  expect(std::isnan(d.inv_sum) && std::isnan(d.lse), "NaN l, no sink", d.lse, NAN);
  return checked + 4;
}

// poly_exp2 (the exps the softmax may run on the FMA pipe) against exp2 in double:
// relative error <= 1e-4 wherever 2^x is a normal float, exactly 0 at x <= -127
// (masked keys are -inf), in between a value in [0, 2^-125], NaN for NaN, and
// integers within 1e-4 too (p(0) = 1 - 7.2e-5: the row max's own p, 2^8, comes out
// 255.98, which e4m3 still rounds to 256). The host branch only (softmax.cuh).
static int check_poly_exp2() {
  using torch_fmha::kernel::poly_exp2;
  int checked = 0;
  double worst = 0;
  for (double x = -140.0; x <= 8.81; x += 1.0 / 1024) {
    const float xf = float(x);
    const double got = poly_exp2(xf), want = std::exp2(double(xf));
    if (xf >= -125.5f) {
      worst = std::fmax(worst, std::fabs(got / want - 1));
      expect(close(got, want, 1e-4), "poly_exp2", got, want);
    } else if (xf <= -127.f) {
      expect(got == 0.0 && !std::signbit(got), "poly_exp2 below -127", got, 0);
    } else {
      expect(got >= 0.0 && got <= std::exp2(-125.0), "poly_exp2 near -127", got, want);
    }
    ++checked;
  }
  for (int j = -126; j <= 8; ++j) {
    expect(close(poly_exp2(float(j)), std::exp2(j), 1e-4), "poly_exp2 at an integer",
           poly_exp2(float(j)), std::exp2(j));
    ++checked;
  }
  expect(poly_exp2(-INFINITY) == 0.f, "poly_exp2(-inf)", poly_exp2(-INFINITY), 0);
  expect(std::isnan(poly_exp2(NAN)), "poly_exp2(NaN)", poly_exp2(NAN), NAN);
  expect(std::isnan(poly_exp2(-NAN)), "poly_exp2(-NaN)", poly_exp2(-NAN), NAN);
  expect(worst > 1e-6, "poly_exp2 is a polynomial, not exp2 itself", worst, 1e-6);
  return checked + 4;
}

int main() {
  const int a = check_softcap();
  if (failures == 0) std::printf("score_scales (softcap): ok (%d checks)\n", a);
  const int b = check_sinks();
  if (failures == 0) std::printf("normalize_row (sinks): ok (%d checks)\n", b);
  const int c = check_poly_exp2();
  if (failures == 0) std::printf("poly_exp2: ok (%d checks)\n", c);
  return failures == 0 ? 0 : 1;
}
