// torch_fmha: operator schemas, defined once. Kernels register per dispatch key
// next to their code (fwd_cpu.cpp, bwd_cpu.cpp, fwd_cuda.cpp); fake
// implementations are registered in Python (meta/fake.py), autograd in C++
// (autograd.cpp).
#include <torch/library.h>

// No argument has a default value, here or in kvcache_op.cpp: the Python API
// (torch_fmha/api.py, quantize.py) is where the defaults live, and it passes
// every argument. A schema default makes every trace drop the trailing
// arguments equal to it, and Inductor then calls the op with each of them
// spelled as a keyword (`out_scale=None, out_dtype=None, softcap=0.0,
// sinks=None` on every fwd of a compiled model); keyword parsing took 16.5k
// (fwd's) and 24k (with quantize_qkv's) of a compiled layer's 228.6k host
// instructions (callgrind on the CPU twin of tools/overhead.py --stack;
// tests/test_api_dispatch.py checks the generated calls).

TORCH_LIBRARY(torch_fmha, m) {
  // Dense attention. q [B, Sq, H, D], k/v [B, Sk, Hkv, D]
  //   -> out [B, Sq, H, D] (out_dtype), lse [B, H, Sq] (float32).
  m.def(
      "fwd(Tensor q, Tensor k, Tensor v, float? softmax_scale, "
      "bool causal, int window_left, int window_right, "
      "Tensor? q_descale, Tensor? k_descale, Tensor? v_descale, "
      "Tensor? out_scale, ScalarType? out_dtype, float softcap, "
      "Tensor? sinks) -> (Tensor out, Tensor lse)");
  // Ragged batch. q [Tq, H, D], k/v [Tk, Hkv, D], cu_seqlens_* int32 [B + 1]
  //   -> out [Tq, H, D], lse [H, Tq]. max_seqlen_* are hints only.
  // seqused_k int32 [B]: keys used per sequence. Paged KV: k/v are page pools
  // [num_pages, page_size, Hkv, D], page_table int32 [B, max_pages_per_seq],
  // cu_seqlens_k None and seqused_k required.
  m.def(
      "varlen_fwd(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens_q, "
      "Tensor? cu_seqlens_k, SymInt? max_seqlen_q, SymInt? max_seqlen_k, "
      "float? softmax_scale, bool causal, int window_left, "
      "int window_right, Tensor? q_descale, Tensor? k_descale, "
      "Tensor? v_descale, Tensor? out_scale, ScalarType? out_dtype, "
      "float softcap, Tensor? sinks, Tensor? seqused_k, Tensor? page_table) "
      "-> (Tensor out, Tensor lse)");
  // Backward of fwd (non-FP8 inputs). dlse is the gradient of lse, if any.
  // dsinks has sinks' shape and dtype, or shape [0] (lse's dtype) without sinks.
  m.def(
      "bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, "
      "Tensor? dlse, float? softmax_scale, bool causal, "
      "int window_left, int window_right, float softcap, Tensor? sinks) "
      "-> (Tensor dq, Tensor dk, Tensor dv, Tensor dsinks)");
  // No seqused_k / page_table: those are inference features without a backward.
  m.def(
      "varlen_bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, "
      "Tensor cu_seqlens_q, Tensor cu_seqlens_k, Tensor? dlse, "
      "SymInt? max_seqlen_q, SymInt? max_seqlen_k, float? softmax_scale, "
      "bool causal, int window_left, int window_right, float softcap, "
      "Tensor? sinks) -> (Tensor dq, Tensor dk, Tensor dv, Tensor dsinks)");
  // FP8 quantization (torch_fmha/quantize.py; kernels: quantize_cpu.cpp,
  // quantize_cuda.cpp). x [B, S, H, D] or [T, H, D] (cu_seqlens int32 [B + 1]
  // for per-head scales of a packed x) -> x_fp8 float8_e4m3fn (x's shape,
  // contiguous), descale float32 [1] (per tensor) or [B, H // group_size].
  m.def(
      "quantize_fp8(Tensor x, bool per_head, int group_size, Tensor? cu_seqlens) "
      "-> (Tensor x_fp8, Tensor descale)");
  // q, k and v in one call; descales float32 [3, 1] or [3, B, Hkv]: q's, k's
  // and v's (q's groups are GQA's, so the three shapes agree); qk_rotated: q
  // and k are x @ H (+-1 Hadamard), their descales carry 1 / sqrt(D).
  // pack_v (dense only): v_fp8 is a packed v [B, Hkv, D, ceil(S / 16), 16],
  // contiguous, each 16-key group in the P V wgmma's key order, padding slots
  // zero (csrc/quantize.h, csrc/vt_key_order.h): what the SM90 fwd kernel
  // loads as V^T by TMA.
  m.def(
      "quantize_qkv(Tensor q, Tensor k, Tensor v, bool per_head, bool qk_rotated, "
      "Tensor? cu_seqlens_q, Tensor? cu_seqlens_k, bool pack_v) -> "
      "(Tensor q_fp8, Tensor k_fp8, Tensor v_fp8, Tensor descales)");
}
