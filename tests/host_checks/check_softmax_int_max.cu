// Host-only check (no GPU needed) of the row max from integer three-input maxes
// (csrc/kernel/softmax.cuh, int_max_of_scores: the scores' bits as signed ints, VIMNMX3 on
// sm_90, fmaxf's chain where the int max is not the float max), the tuning knob
// TORCH_FMHA_TUNE_INT_MAX_<D>. Against fmaxf over the same scores for the shapes the
// softmax uses (64, 48 and 32 scores of a row per thread, 4 chains) on: N(0, 16) scores; all
// negative; every score but one negative; +-0 only; masked keys (-inf) with a few live
// ones; +inf; a NaN of either sign among the scores; all masked. The results must be equal
// (+0 and -0 count as equal: the softmax's exp2 bias and its LSE are the same for both) and
// NaN exactly where fmaxf gives NaN (all scores NaN). Counts the cases the int max decided
// and the ones that took fmaxf's chain; both must occur.
// Build + run: nvcc -std=c++17 -Icsrc tests/host_checks/check_softmax_int_max.cu -o build/cim && build/cim
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "kernel/softmax.cuh"

using namespace torch_fmha::kernel;

namespace {

int failures = 0;
long by_int = 0, by_fmax = 0;

float reference_max(const std::vector<float>& v) {
  float m = v[0];
  for (size_t i = 1; i < v.size(); ++i) m = std::fmax(m, v[i]);  // IEEE maxNum, as fmaxf
  return m;
}

struct Scores {  // get(i) for the kernel's helpers (a host + device callable)
  const float* v;
  __host__ __device__ float operator()(int i) const { return v[i]; }
};

template <int kN>
void check(const std::vector<float>& v, const char* what) {
  const Scores get{v.data()};
  const float got = int_max_of_scores<kN, 4>(get);
  const float want = reference_max(v);
  (int_max_is_float_max(int_max_bits<kN, 4>(get)) ? by_int : by_fmax) += 1;
  const bool same = (std::isnan(got) && std::isnan(want)) || got == want;
  if (!same && failures++ < 5) std::printf("FAIL %s (n = %d): got %a, want %a\n", what, kN, got, want);
}

template <int kN>
void cases(std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::uniform_int_distribution<int> pick(0, kN - 1);
  std::vector<float> v(kN);
  for (int rep = 0; rep < 2000; ++rep) {
    for (auto& x : v) x = normal(rng);
    check<kN>(v, "N(0, 16)");
    for (auto& x : v) x = -std::fabs(x) - 1e-3f;
    check<kN>(v, "all negative");
    v[pick(rng)] = std::fabs(normal(rng));
    check<kN>(v, "one non-negative");
    for (auto& x : v) x = rep % 2 ? -0.0f : (pick(rng) % 2 ? 0.0f : -0.0f);
    check<kN>(v, "zeros");
    for (auto& x : v) x = -INFINITY;
    v[pick(rng)] = normal(rng);
    v[pick(rng)] = normal(rng);
    check<kN>(v, "masked, two live");
    check<kN>(std::vector<float>(kN, -INFINITY), "all masked");
    for (auto& x : v) x = normal(rng);
    v[pick(rng)] = INFINITY;
    check<kN>(v, "+inf");
    v[pick(rng)] = std::nanf("");
    check<kN>(v, "+NaN and +inf");
    for (auto& x : v) x = -std::fabs(normal(rng));
    v[pick(rng)] = -std::nanf("");
    check<kN>(v, "-NaN, all negative");
    for (auto& x : v) x = normal(rng);
    v[pick(rng)] = std::nanf("");
    check<kN>(v, "+NaN");
  }
  check<kN>(std::vector<float>(kN, std::nanf("")), "all NaN");
}

}  // namespace

int main() {
  std::mt19937 rng(26);
  cases<64>(rng);  // a 256-key block: 64 scores of a row per thread
  cases<48>(rng);  // 192 keys
  cases<32>(rng);  // 128 keys
  if (by_int == 0 || by_fmax == 0) {
    std::printf("FAIL: int max decided %ld cases, fmaxf %ld: both paths must be checked\n", by_int, by_fmax);
    return 1;
  }
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("int row max: ok (%ld by the int max, %ld by fmaxf's chain)\n", by_int, by_fmax);
  return 0;
}
