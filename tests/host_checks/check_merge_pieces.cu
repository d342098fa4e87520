// Host-only check (no GPU needed) that the merge kernel's way of reducing a row's splits
// (csrc/kernel/merge_splits.cuh) gives bitwise what the serial merge_row gives (the CPU op,
// csrc/merge_splits.h). The kernel's order is emulated here: the max over chunks of 32
// splits, each chunk by the butterfly of warp_merge_max (lane i holds split c + i, the
// lower lanes' value on the left of merge_max; NaN lanes as -inf, lanes past the last split
// -inf), the NaN flag an OR, then merge_row_shift; the weights summed in split order from
// 0, then merge_row_finish. LSE values from {NaN, +-inf, +-0, finite} (ties of -0 / +0
// included), 0..70 splits, no sink or a NaN / +-inf / +-0 / finite sink, float and double.
// Prints one "ok" line; exits 1 on the first failures.
// Build + run: nvcc -std=c++17 --expt-relaxed-constexpr -Icsrc tests/host_checks/check_merge_pieces.cu -o build/cmp && build/cmp
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "merge_splits.h"

using namespace torch_fmha;

template <class Acc>
bool same_bits(Acc a, Acc b) { return std::memcmp(&a, &b, sizeof(Acc)) == 0; }

int lane_disagreements = 0;  // rows whose lanes ended the butterfly with different maxima

// warp_merge_max's butterfly over 32 lanes, on the host.
template <class Acc>
Acc tree_max(const Acc (&lane_value)[32]) {
  Acc v[32];
  for (int i = 0; i < 32; ++i) v[i] = lane_value[i];
  for (int k = 1; k < 32; k <<= 1) {
    Acc next[32];
    for (int lane = 0; lane < 32; ++lane) {
      const Acc other = v[lane ^ k];
      next[lane] = (lane & k) ? merge_max(other, v[lane]) : merge_max(v[lane], other);
    }
    for (int i = 0; i < 32; ++i) v[i] = next[i];
  }
  for (int i = 1; i < 32; ++i) {
    if (!same_bits(v[i], v[0])) {
      ++lane_disagreements;
      break;
    }
  }
  return v[0];
}

template <class Acc>
MergeRow<Acc> kernel_order_row(const std::vector<Acc>& lse, bool has_sink, Acc sink) {
  const int splits = int(lse.size());
  const Acc inf = Acc(INFINITY);
  Acc max_lse = -inf;
  bool any_nan = false;
  for (int c = 0; c < splits; c += 32) {
    Acc lanes[32];
    for (int i = 0; i < 32; ++i) {
      const Acc l = c + i < splits ? lse[c + i] : -inf;
      any_nan |= merge_is_nan(l);
      lanes[i] = merge_is_nan(l) ? -inf : l;
    }
    max_lse = merge_max(max_lse, tree_max(lanes));
  }
  MergeRow<Acc> r = merge_row_shift(max_lse, any_nan, has_sink, sink);
  Acc denom = Acc(0);
  for (int s = 0; s < splits; ++s) denom += r.weight(lse[s]);
  merge_row_finish(r, denom, has_sink, sink);
  return r;
}

template <class Acc>
int check(std::mt19937& rng, int& cases) {
  const Acc inf = Acc(INFINITY);
  const Acc values[] = {Acc(NAN), inf, -inf, Acc(0), -Acc(0), Acc(1.5), Acc(-3), Acc(20), Acc(-80), Acc(2.25)};
  const int n_values = sizeof(values) / sizeof(values[0]);
  const Acc sinks[] = {Acc(NAN), inf, -inf, Acc(0), -Acc(0), Acc(1.5), Acc(-50), Acc(30)};
  int failures = 0;
  for (int splits = 0; splits <= 70; ++splits) {
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<Acc> lse(splits);
      // Mostly from a few values (ties, all -inf, one NaN), sometimes any of them.
      const int kinds = 1 + trial % n_values;
      for (int s = 0; s < splits; ++s) {
        const int pick = int(rng() % kinds);
        lse[s] = trial % 5 == 4 ? values[pick] + Acc(rng() % 1000) / Acc(97) : values[pick];
      }
      for (int si = -1; si < int(sizeof(sinks) / sizeof(sinks[0])); ++si) {
        const bool has_sink = si >= 0;
        const Acc sink = has_sink ? sinks[si] : Acc(0);
        const MergeRow<Acc> a = merge_row<Acc>(splits, [&](int s) { return lse[s]; }, has_sink, sink);
        const MergeRow<Acc> b = kernel_order_row<Acc>(lse, has_sink, sink);
        ++cases;
        const bool ok = same_bits(a.shift, b.shift) && same_bits(a.lse, b.lse) && a.empty == b.empty &&
                        a.defined == b.defined && same_bits(a.denom, b.denom);
        if (!ok && ++failures <= 5) {
          std::printf("mismatch (%s, %d splits, sink %d): shift %g / %g, lse %g / %g, denom %g / %g\n",
                      sizeof(Acc) == 4 ? "float" : "double", splits, si, double(a.shift), double(b.shift),
                      double(a.lse), double(b.lse), double(a.denom), double(b.denom));
        }
      }
    }
  }
  return failures;
}

int main() {
  std::mt19937 rng(15);
  int cases = 0;
  const int failures = check<float>(rng, cases) + check<double>(rng, cases);
  // The tie rule itself: -0 then +0 keeps -0 (the first), as the serial loop.
  const float zeros[32] = {-0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f,
                           0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  const bool tie_ok = std::signbit(tree_max(zeros));
  if (failures != 0 || !tie_ok || lane_disagreements != 0) {
    std::printf("merge pieces: %d of %d cases differ, %d rows' lanes disagree on the max%s\n", failures, cases,
                lane_disagreements, tie_ok ? "" : "; the -0 / +0 tie differs");
    return 1;
  }
  std::printf("merge pieces: ok (%d cases)\n", cases);
  return 0;
}
