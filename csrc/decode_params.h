// torch_fmha: parameters of the split-KV decode kernel (csrc/kernel/decode.cuh),
// filled by csrc/ops/kvcache_op.cpp. No torch types.
//
// One decode step of attention_with_kvcache: q [B, Sq, H, D] FP8, an FP8 cache
// [B, Smax, Hkv, D] (dense) or a page pool [num_pages, page_size, Hkv, D] with
// page_table [B, pages], cache_seqlens [B]. CTA (split s, row tile t, KV head h,
// batch b) reads split s of batch b's keys [first, L) (first: the first row's left
// window edge, else 0) once, for rows [16 t, 16 t + 16) of the Sq x G query rows of KV
// head h (G = H / Hkv), and writes their partial results: o normalised over its keys (float16) and the natural-
// log LSE of its scores (float32), merged afterwards by csrc/merge_splits.h. Packed q
// (cu_seqlens_q): q [Tq, H, D], sequence b's Sq_b query rows are rows
// [cu_seqlens_q[b], cu_seqlens_q[b + 1]) of it.
#pragma once

#include <stdint.h>

#include "params.h"

namespace torch_fmha {

struct DecodeParams {
  // [B, Sq, H, D]; query row i, head h * G + g is row i * G + g of KV head h's Sq x G,
  // row r % 16 of row tile r / 16 (16 rows: one mma.sync tile).
  const uint8_t* q = nullptr;
  const uint8_t* k = nullptr;
  const uint8_t* v = nullptr;
  int64_t q_batch_stride = 0, q_row_stride = 0, q_head_stride = 0;  // elements (= bytes, FP8)
  // Dense: batch, row (key) and head strides. Paged: the batch stride is the
  // stride between pages, the row stride between the keys of a page.
  int64_t k_batch_stride = 0, k_row_stride = 0, k_head_stride = 0;
  int64_t v_batch_stride = 0, v_row_stride = 0, v_head_stride = 0;
  const int32_t* cache_seqlens = nullptr;  // [B]: keys [0, L) of each sequence are used
  const int32_t* page_table = nullptr;     // [B, max_pages] or null (dense)
  int64_t page_table_stride = 0;
  int32_t page_size = 0;
  int32_t page_shift = 0;  // log2(page_size): page sizes are powers of two (16 .. 256)
  int32_t capacity = 0;  // keys a sequence can hold (Smax, or page_size * max_pages): L is clamped to it
  int32_t batch = 0, seqlen_q = 1, heads_kv = 0, group = 0, head_dim = 0, splits = 1;
  int32_t row_tiles = 1;  // ceil(Sq * G / 16), at most kDecodeMaxRowTiles: CTAs per split
  // Packed q: cu_seqlens_q [B + 1] (clamped to [0, total_q] in the kernel, as the varlen
  // kernel does; debug builds assert the contract), total_q = Tq, and seqlen_q the caller's
  // max_seqlen_q hint (>= 1), from which row_tiles comes. A CTA takes row tiles row_tiles
  // apart until its sequence's Sq_b x G rows are done, so a sequence longer than the hint
  // is still computed whole (by fewer CTAs than it would have had). q_batch_stride is 0.
  const int32_t* cu_seqlens_q = nullptr;
  int32_t total_q = 0;
  // Paged: pages in the pool. A page id outside [0, num_pages) reads as zeros (the
  // prefill kernel's TMA zero-fills such a box too); debug builds assert instead.
  int32_t num_pages = 0;
  // Bottom-right masks against L: query row i sees keys
  // [L - Sq + i - window_left, L - Sq + i + window_right] of [0, L); -1: unbounded
  // on that side (causal is window_right = 0).
  int32_t window_left = -1, window_right = -1;
  float softmax_scale = 0.f;
  float softcap = 0.f;  // 0: off
  ScaleTensor q_descale, k_descale;  // [1] or [B, Hkv]
  // Packed q with a [B, Hkv] v_descale (else null): the kernel copies each query token's
  // sequence's v_descale to v_descale_tokens [Tq, Hkv], which the merge then reads as its
  // per-"batch" descale (the partials have a token in place of a batch).
  ScaleTensor v_descale;
  float* v_descale_tokens = nullptr;
  // Dense q: float16 [B, splits, Sq, Hkv, G, D] and [B, splits, Sq, Hkv, G], contiguous.
  // Packed q: [Tq, splits, 1, Hkv, G(, D)] (a query row's token in place of its batch, so
  // that the merge reads a per-batch v_descale expanded to tokens).
  void* o_part = nullptr;
  float* lse_part = nullptr;
};

}  // namespace torch_fmha
