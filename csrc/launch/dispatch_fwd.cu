// torch_fmha: runtime parameters -> kernel instantiation, and the list of what
// the SM90 forward kernels cover. One explicit switch; no fallbacks.
#include <cstdint>

#include "fwd_fp8_launch.h"
#include "launch_fwd.h"

namespace torch_fmha {

namespace {

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// TMA: every stride of a mode with extent > 1 must be a multiple of 16 bytes.
bool tma_stride_ok(int64_t stride_bytes, int32_t extent) {
  return extent <= 1 || (stride_bytes > 0 && stride_bytes % 16 == 0);
}

}  // namespace

const char* fwd_unsupported_reason(const FwdParams& p) {
  if (p.in_type != ElementType::kFloat8E4M3) {
    return "torch_fmha CUDA forward: only float8_e4m3fn q/k/v are implemented on SM90; bfloat16 "
           "and float16 inputs are not supported by the CUDA kernel yet";
  }
  if (p.head_dim != 64 && p.head_dim != 128 && p.head_dim != 256) {
    return "torch_fmha CUDA forward: head_dim must be 64, 128 or 256 for float8_e4m3fn inputs";
  }
  const bool varlen = p.cu_seqlens_q != nullptr;
  const bool paged = p.page_table != nullptr;
  if (!varlen && (p.cu_seqlens_k != nullptr || paged || p.seqused_k != nullptr)) {
    return "torch_fmha CUDA forward: cu_seqlens_k, seqused_k and page_table need varlen "
           "(cu_seqlens_q)";
  }
  if (varlen && (paged ? p.seqused_k == nullptr : p.cu_seqlens_k == nullptr)) {
    return "torch_fmha CUDA forward: varlen needs cu_seqlens_k, or page_table with seqused_k";
  }
  if (paged && (p.page_size < 16 || p.page_size > 256 || (p.page_size & (p.page_size - 1)) != 0 ||
                p.num_pages < 1 || p.max_pages_per_seq < 0)) {
    return "torch_fmha CUDA forward: page_size must be a power of two from 16 to 256, with at "
           "least one page";
  }
  if (paged && (!tma_stride_ok(p.k_batch_stride, p.num_pages) ||
                !tma_stride_ok(p.v_batch_stride, p.num_pages) ||
                !tma_stride_ok(p.k_row_stride, p.page_size) ||
                !tma_stride_ok(p.v_row_stride, p.page_size))) {
    return "torch_fmha CUDA forward: k and v page pools need page and row strides that are "
           "multiples of 16 elements for float8_e4m3fn (TMA)";
  }
  if (varlen && (p.total_q < 0 || p.total_k < 0 ||
                 int64_t(p.heads_q) * ((int64_t(p.total_q) + int64_t(p.batch) * 127) / 128) >
                     INT32_MAX)) {
    // Tile ids are int32 (the prep kernel's prefix sums).
    return "torch_fmha CUDA forward: varlen needs heads * (total_q / 128 + batch) < 2^31 tiles";
  }
  if (p.out_type != ElementType::kBFloat16 && p.out_type != ElementType::kFloat16 &&
      p.out_type != ElementType::kFloat8E4M3) {
    return "torch_fmha CUDA forward: out dtype must be bfloat16, float16 or float8_e4m3fn";
  }
  if (p.batch < 0 || p.heads_q <= 0 || p.heads_kv <= 0 || p.heads_q % p.heads_kv != 0) {
    return "torch_fmha CUDA forward: heads_q must be a positive multiple of heads_kv";
  }
  if (p.seqlen_q < 0 || p.seqlen_k < 0) {
    return "torch_fmha CUDA forward: sequence lengths must be >= 0";
  }
  if (!aligned16(p.q) || !aligned16(p.k) || !aligned16(p.v)) {
    return "torch_fmha CUDA forward: q, k and v data pointers must be 16-byte aligned (TMA)";
  }
  // A packed v (v_dim_stride != 1, csrc/vt_key_order.h): dense only (the keys
  // past a packed sequence's end are another sequence's, which only the
  // transposer zeroes), keys contiguous, and the head-dim stride is a TMA stride.
  const bool packed_v = p.v_dim_stride != 1;
  if (packed_v && (varlen || p.v_row_stride != 1)) {
    return "torch_fmha CUDA forward: a packed v (v_dim_stride != 1) must have contiguous keys "
           "(v_row_stride 1), and only the dense layout (attention) takes it";
  }
  if (packed_v && !tma_stride_ok(p.v_dim_stride, p.head_dim)) {
    return "torch_fmha CUDA forward: a packed v needs a head-dim stride that is a multiple of "
           "16 elements for float8_e4m3fn (TMA)";
  }
  // FP8 inputs: element strides are byte strides. Varlen: the rows are all
  // of q's (k's) rows and the batch stride is unused (tma_extents).
  const TmaExtents ext = tma_extents(p);
  if (!tma_stride_ok(p.q_row_stride, ext.rows_q) || !tma_stride_ok(p.q_head_stride, p.heads_q) ||
      !tma_stride_ok(p.q_batch_stride, ext.batch)) {
    return "torch_fmha CUDA forward: q strides (batch, seq, head) must be multiples of 16 "
           "elements for float8_e4m3fn (TMA)";
  }
  if (!tma_stride_ok(p.k_row_stride, ext.rows_k) || !tma_stride_ok(p.k_head_stride, p.heads_kv) ||
      !tma_stride_ok(p.k_batch_stride, ext.batch) ||
      (!packed_v && !tma_stride_ok(p.v_row_stride, ext.rows_k)) ||
      !tma_stride_ok(p.v_head_stride, p.heads_kv) || !tma_stride_ok(p.v_batch_stride, ext.batch)) {
    return "torch_fmha CUDA forward: k and v strides (batch, seq, head) must be multiples of 16 "
           "elements for float8_e4m3fn (TMA)";
  }
  // The epilogue stores up to 16 bytes at a time: 16-byte chunks of rows from
  // shared memory (D = 128 long-key build) or 8-byte fp8 groups (D = 256, the
  // D = 128 short-key build), epilogue.cuh. The op allocates out contiguous,
  // so this holds; the check keeps the assumption written down.
  const int out_elem_bytes = p.out_type == ElementType::kFloat8E4M3 ? 1 : 2;
  if ((reinterpret_cast<uintptr_t>(p.out) % 16) != 0 || (p.out_batch_stride * out_elem_bytes) % 16 != 0 ||
      (p.out_row_stride * out_elem_bytes) % 16 != 0 || (p.out_head_stride * out_elem_bytes) % 16 != 0) {
    return "torch_fmha CUDA forward: out must have a 16-byte aligned pointer and strides (in bytes) "
           "that are multiples of 16";
  }
  return nullptr;
}

cudaError_t launch_fwd(const FwdParams& p, cudaStream_t stream) {
  // Dense only: the key length is a shape there. For a packed batch the
  // lengths live on the device and max_seqlen_k is a hint that must not
  // change the result (dense == varlen bitwise needs the same blocking).
  const bool varlen = p.cu_seqlens_q != nullptr;
  const int64_t window_span =  // keys one 128-row tile can see; -1: unbounded
      p.window_left >= 0 && p.window_right >= 0 ? int64_t{p.window_left} + p.window_right + 128 : -1;
  const bool packed_v = p.v_dim_stride != 1;  // dense only (fwd_unsupported_reason)
  const bool unmasked = p.window_left < 0 && p.window_right < 0;  // neither causal nor a window
  const bool short_keys =
      !varlen && (p.seqlen_k <= short_keys_max_seqlen(p.head_dim, !unmasked, packed_v) ||
                  (window_span >= 0 && window_span <= short_keys_max_window_span(p.head_dim)));
  switch (p.head_dim) {
    case 64:
      if (varlen) return launch_fwd_fp8<64, true>(p, stream);
      return packed_v ? launch_fwd_fp8<64, false, false, true>(p, stream)
                               : launch_fwd_fp8<64, false>(p, stream);
    case 128:
      if (varlen) return launch_fwd_fp8<128, true>(p, stream);
      if (short_keys) {
        return packed_v ? launch_fwd_fp8<128, false, true, true>(p, stream)
                                 : launch_fwd_fp8<128, false, true>(p, stream);
      }
      return packed_v ? launch_fwd_fp8<128, false, false, true>(p, stream)
                               : launch_fwd_fp8<128, false>(p, stream);
    case 256:
      if (varlen) return launch_fwd_fp8<256, true>(p, stream);
      return packed_v ? launch_fwd_fp8<256, false, false, true>(p, stream)
                               : launch_fwd_fp8<256, false>(p, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace torch_fmha
