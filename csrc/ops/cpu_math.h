// torch_fmha: the attention math of the CPU kernels, one sequence at a time.
//
// Plain ATen in a float32 (float64 for float64 inputs) accumulator. These are
// the CPU implementations of the ops, not the test oracle: tests/reference.py
// is an independent float64 implementation.
#pragma once

#include <ATen/ATen.h>

namespace torch_fmha::cpu {

struct SequenceMask {
  int64_t window_left = -1;   // -1: unbounded
  int64_t window_right = -1;  // -1: unbounded
};

// What happens to the scaled scores x before the softmax (docs/DESIGN.md 1.5):
// soft-capping to softcap * tanh(x / softcap) (softcap == 0: off), and one sink
// logit per query head that joins every row's denominator (undefined: none).
struct ScoreOptions {
  double softcap = 0.0;
  at::Tensor sinks;  // [H] in the accumulator dtype, or undefined
};

// visible[i, j] for a sequence of sq queries and sk keys, bottom-right
// aligned: key j is visible from query i iff
//   i + (sk - sq) - window_left <= j <= i + (sk - sq) + window_right.
at::Tensor visible_keys(int64_t sq, int64_t sk, SequenceMask mask);

// One sequence of the forward pass.
//   q [Sq, H, D], k/v [Sk, Hkv, D] in any input dtype;
//   score_scale [H] = softmax_scale * q_descale * k_descale per query head;
//   out_scale   [H] = v_descale (/ out_scale for FP8 output) per query head.
// Returns out [Sq, H, D] and lse [H, Sq], both in the accumulator dtype.
// Rows that see no key give out = 0 and lse = -inf (= the sink with sinks).
// With sinks, lse = log(sum_j e^x_j + e^sink). Non-finite values follow
// the NaN / Inf semantics of cpu_math.cpp (docs/DESIGN.md): they reach every
// row that sees them and never a row that does not.
std::pair<at::Tensor, at::Tensor> forward_sequence(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& score_scale, const at::Tensor& out_scale, SequenceMask mask,
    const ScoreOptions& score_options);

// One sequence of the backward pass (no descales: FP8 has no backward).
//   dout/out [Sq, H, D], lse/dlse [H, Sq]; returns dq [Sq, H, D], dk/dv [Sk, Hkv, D]
//   and this sequence's share of dsinks [H] (zeros without sinks), in the
//   accumulator dtype.
struct SequenceGrads {
  at::Tensor dq, dk, dv, dsinks;
};
SequenceGrads backward_sequence(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
    const std::optional<at::Tensor>& dlse, double softmax_scale, SequenceMask mask,
    const ScoreOptions& score_options);

// float64 for float64 inputs, float32 otherwise.
at::ScalarType accumulator_dtype(at::ScalarType input);

}  // namespace torch_fmha::cpu
