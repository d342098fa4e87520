// torch_fmha: the one struct the host fills and the kernels read.
//
// This header includes no torch headers: kernel translation units include it
// and compile with nvcc alone. The CUDA op (csrc/ops/fwd_cuda.cpp) fills it
// after all checks have passed; the kernels trust it.
#pragma once

#include <cstdint>

#include "host_device.h"

namespace torch_fmha {

// Element types the kernels know about. Mirrors the subset of at::ScalarType
// the ops accept, without pulling torch into kernel code.
enum class ElementType : int32_t {
  kFloat8E4M3 = 0,
  kBFloat16 = 1,
  kFloat16 = 2,
};

// A float32 scale that is either one value for the whole tensor or one value
// per (batch, kv head). The element for (b, hkv) is
//   ptr[b * batch_stride + hkv * head_stride]
// so a per-tensor scale has both strides 0. `ptr == nullptr` means "no scale"
// (1.0), which is how the op passes an omitted optional argument.
struct ScaleTensor {
  const float* ptr = nullptr;
  int32_t batch_stride = 0;
  int32_t head_stride = 0;
};

// The scale of (batch b, kv head hkv); 1 without one.
TORCH_FMHA_HOST_DEVICE float load_scale(const ScaleTensor& s, int b, int hkv) {
  return s.ptr == nullptr ? 1.f : s.ptr[int64_t(b) * s.batch_stride + int64_t(hkv) * s.head_stride];
}

// Forward attention problem. Dense and varlen share it:
//   dense : q [B, Sq, H, D], k/v [B, Sk, Hkv, D], out [B, Sq, H, D],
//           lse [B, H, Sq]; cu_seqlens_* == nullptr.
//   varlen: q [Tq, H, D], k/v [Tk, Hkv, D], out [Tq, H, D], lse [H, Tq];
//           sequence b owns rows cu_seqlens_q[b] .. cu_seqlens_q[b+1] of q
//           (same for k/v), batch strides are unused (0), seqlen_q/seqlen_k
//           are the max-length hints (or 0 when not given: never needed
//           for correctness).
// All strides are in elements. The last dim of every tensor is contiguous,
// except v of a dense call, which may be a packed v [B, Hkv, D, G, 16]
// (csrc/vt_key_order.h): keys contiguous (v_row_stride == 1, along the
// flattened G * 16 key slots), v_dim_stride the stride of the head dim; the
// kernel then loads V^T blocks directly (kernel_traits.cuh, VLayout).
struct FwdParams {
  // ---- tensors -------------------------------------------------------------
  const void* q = nullptr;  // [B, Sq, H, D] or [Tq, H, D]
  const void* k = nullptr;  // [B, Sk, Hkv, D] or [Tk, Hkv, D]
  const void* v = nullptr;  // [B, Sk, Hkv, D] or [Tk, Hkv, D]
  void* out = nullptr;      // [B, Sq, H, D] or [Tq, H, D], out_type
  float* lse = nullptr;     // [B, H, Sq] or [H, Tq], contiguous, natural log

  int64_t q_batch_stride = 0, q_row_stride = 0, q_head_stride = 0;
  int64_t k_batch_stride = 0, k_row_stride = 0, k_head_stride = 0;
  int64_t v_batch_stride = 0, v_row_stride = 0, v_head_stride = 0;
  int64_t v_dim_stride = 1;  // 1 unless v is packed (dense only)
  int64_t out_batch_stride = 0, out_row_stride = 0, out_head_stride = 0;
  int64_t lse_batch_stride = 0, lse_head_stride = 0;  // lse row stride is 1

  // ---- ragged batches (varlen only) ------------------------------------------
  const int32_t* cu_seqlens_q = nullptr;  // [B + 1], device memory
  const int32_t* cu_seqlens_k = nullptr;  // [B + 1], device memory

  // ---- sizes -----------------------------------------------------------------
  int32_t batch = 0;
  int32_t heads_q = 0;   // H
  int32_t heads_kv = 0;  // Hkv, H % Hkv == 0
  int32_t head_dim = 0;  // D
  int32_t seqlen_q = 0;  // dense: Sq; varlen: max hint or 0
  int32_t seqlen_k = 0;  // dense: Sk; varlen: max hint or 0
  int32_t total_q = 0;   // varlen: Tq (rows of q); dense: B * Sq
  int32_t total_k = 0;   // varlen: Tk (rows of k / v); dense: B * Sk

  // ---- math ----------------------------------------------------------------
  float softmax_scale = 0.f;  // multiplies q.k before softmax
  ScaleTensor q_descale, k_descale, v_descale;
  ScaleTensor out_scale;      // FP8 output: out = saturate(o / out_scale)

  // Masking. Query row i of a sequence with lengths (sq, sk) sees key j iff
  //   j >= i + (sk - sq) - window_left   (window_left  < 0: unbounded)
  //   j <= i + (sk - sq) + window_right  (window_right < 0: unbounded)
  // Causal is exactly window (-1, 0): bottom-right aligned.
  int32_t window_left = -1;
  int32_t window_right = -1;

  // Logit soft-capping (Gemma-2, Grok; FlashAttention's convention): with
  // x = softmax_scale * q_descale * k_descale * q.k, the softmax sees
  //   softcap * tanh(x / softcap)          (softcap == 0: off, x as is).
  float softcap = 0.f;
  // Attention sinks (gpt-oss): one logit per query head, float32 [heads_q],
  // in the units of the (soft-capped) scaled scores above. It joins every
  // row's softmax denominator and adds nothing to the output:
  //   out = sum_j e^(x_j - m) v_j / (sum_j e^(x_j - m) + e^(sink - m)),
  //   lse = log(sum_j e^x_j + e^sink).
  // A row that sees no key gives out = 0, lse = sink. nullptr: no sinks.
  const float* sinks = nullptr;

  // ---- paged KV and used key counts (varlen only) ------------------------------
  // seqused_k [B]: sequence b uses only its first seqused_k[b] keys. Without
  // pages they start at row cu_seqlens_k[b] of k / v (seqused_k[b] <= the
  // slot's length); with pages cu_seqlens_k is nullptr and seqused_k gives the
  // key counts. nullptr: the lengths come from cu_seqlens_k.
  const int32_t* seqused_k = nullptr;
  // Paged KV: k / v are page pools [num_pages, page_size, Hkv, D] (row stride
  // k_row_stride between the keys of a page, k_batch_stride between pages);
  // key j of sequence b lives at row j % page_size of page
  //   page_table[b * page_table_batch_stride + j / page_size].
  // page_table == nullptr: not paged (page_size == num_pages == 0).
  const int32_t* page_table = nullptr;  // [B, max_pages_per_seq], device memory
  int64_t page_table_batch_stride = 0;
  int32_t page_size = 0;   // power of two, 16 .. 256
  int32_t num_pages = 0;
  // Columns of page_table: the kernel clamps a sequence's key count to
  // max_pages_per_seq * page_size, so a bad seqused_k never reads past a row.
  int32_t max_pages_per_seq = 0;

  ElementType in_type = ElementType::kFloat8E4M3;
  ElementType out_type = ElementType::kBFloat16;

  // ---- launch ----------------------------------------------------------------
  int32_t num_sms = 0;  // persistent grid size, read once per device by the op
  // Device scratch of fwd_workspace_bytes(params) bytes (launch_fwd.h), 16-byte
  // aligned, allocated by the op on the launch stream (varlen: the tile work
  // list the prep kernel writes). nullptr when that size is 0 (dense).
  void* workspace = nullptr;
};

}  // namespace torch_fmha
