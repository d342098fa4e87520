// torch_fmha: operator schemas, defined once. Kernels register per dispatch key
// next to their code (fwd_cpu.cpp, bwd_cpu.cpp, fwd_cuda.cpp); fake
// implementations are registered in Python (meta/fake.py), autograd in C++
// (autograd.cpp).
#include <torch/library.h>

TORCH_LIBRARY(torch_fmha, m) {
  // Dense attention. q [B, Sq, H, D], k/v [B, Sk, Hkv, D]
  //   -> out [B, Sq, H, D] (out_dtype), lse [B, H, Sq] (float32).
  m.def(
      "fwd(Tensor q, Tensor k, Tensor v, float? softmax_scale=None, "
      "bool causal=False, int window_left=-1, int window_right=-1, "
      "Tensor? q_descale=None, Tensor? k_descale=None, Tensor? v_descale=None, "
      "Tensor? out_scale=None, ScalarType? out_dtype=None, float softcap=0.0, "
      "Tensor? sinks=None) -> (Tensor out, Tensor lse)");
  // Ragged batch. q [Tq, H, D], k/v [Tk, Hkv, D], cu_seqlens_* int32 [B + 1]
  //   -> out [Tq, H, D], lse [H, Tq]. max_seqlen_* are hints only.
  // seqused_k int32 [B]: keys used per sequence. Paged KV: k/v are page pools
  // [num_pages, page_size, Hkv, D], page_table int32 [B, max_pages_per_seq],
  // cu_seqlens_k None and seqused_k required.
  m.def(
      "varlen_fwd(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens_q, "
      "Tensor? cu_seqlens_k, SymInt? max_seqlen_q=None, SymInt? max_seqlen_k=None, "
      "float? softmax_scale=None, bool causal=False, int window_left=-1, "
      "int window_right=-1, Tensor? q_descale=None, Tensor? k_descale=None, "
      "Tensor? v_descale=None, Tensor? out_scale=None, ScalarType? out_dtype=None, "
      "float softcap=0.0, Tensor? sinks=None, Tensor? seqused_k=None, Tensor? page_table=None) "
      "-> (Tensor out, Tensor lse)");
  // Backward of fwd (non-FP8 inputs). dlse is the gradient of lse, if any.
  // dsinks has sinks' shape and dtype, or shape [0] (lse's dtype) without sinks.
  m.def(
      "bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, "
      "Tensor? dlse=None, float? softmax_scale=None, bool causal=False, "
      "int window_left=-1, int window_right=-1, float softcap=0.0, Tensor? sinks=None) "
      "-> (Tensor dq, Tensor dk, Tensor dv, Tensor dsinks)");
  // No seqused_k / page_table: those are inference features without a backward.
  m.def(
      "varlen_bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, "
      "Tensor cu_seqlens_q, Tensor cu_seqlens_k, Tensor? dlse=None, "
      "SymInt? max_seqlen_q=None, SymInt? max_seqlen_k=None, float? softmax_scale=None, "
      "bool causal=False, int window_left=-1, int window_right=-1, float softcap=0.0, "
      "Tensor? sinks=None) -> (Tensor dq, Tensor dk, Tensor dv, Tensor dsinks)");
  // FP8 quantization (torch_fmha/quantize.py; kernels: quantize_cpu.cpp,
  // quantize_cuda.cpp). x [B, S, H, D] or [T, H, D] (cu_seqlens int32 [B + 1]
  // for per-head scales of a packed x) -> x_fp8 float8_e4m3fn (x's shape,
  // contiguous), descale float32 [1] (per tensor) or [B, H // group_size].
  m.def(
      "quantize_fp8(Tensor x, bool per_head, int group_size=1, Tensor? cu_seqlens=None) "
      "-> (Tensor x_fp8, Tensor descale)");
  // q, k and v in one call; descales float32 [3, 1] or [3, B, Hkv]: q's, k's
  // and v's (q's groups are GQA's, so the three shapes agree); qk_rotated: q
  // and k are x @ H (+-1 Hadamard), their descales carry 1 / sqrt(D).
  // pack_v (dense only): v_fp8 is a packed v [B, Hkv, D, ceil(S / 16), 16],
  // contiguous, each 16-key group in the P V wgmma's key order, padding slots
  // zero (csrc/quantize.h, csrc/vt_key_order.h): what the SM90 fwd kernel
  // loads as V^T by TMA.
  m.def(
      "quantize_qkv(Tensor q, Tensor k, Tensor v, bool per_head, bool qk_rotated=False, "
      "Tensor? cu_seqlens_q=None, Tensor? cu_seqlens_k=None, bool pack_v=False) -> "
      "(Tensor q_fp8, Tensor k_fp8, Tensor v_fp8, Tensor descales)");
}
