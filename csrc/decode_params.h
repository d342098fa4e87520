// torch_fmha: parameters of the split-KV decode kernel (csrc/kernel/decode.cuh),
// filled by csrc/ops/kvcache_op.cpp. No torch types.
//
// One decode step of attention_with_kvcache: q [B, Sq, H, D] FP8, an FP8 cache
// [B, Smax, Hkv, D] (dense) or a page pool [num_pages, page_size, Hkv, D] with
// page_table [B, pages], cache_seqlens [B]. CTA (split s, row tile t, KV head h,
// batch b) reads split s of batch b's keys [first, L) (first: the first row's left
// window edge, else 0) once, for rows [16 t, 16 t + 16) of the Sq x G query rows of KV
// head h (G = H / Hkv), and writes their partial results: o normalised over its keys (float16) and the natural-
// log LSE of its scores (float32), merged afterwards by csrc/merge_splits.h.
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
  // Bottom-right masks against L: query row i sees keys
  // [L - Sq + i - window_left, L - Sq + i + window_right] of [0, L); -1: unbounded
  // on that side (causal is window_right = 0).
  int32_t window_left = -1, window_right = -1;
  float softmax_scale = 0.f;
  float softcap = 0.f;  // 0: off
  ScaleTensor q_descale, k_descale;  // [1] or [B, Hkv]
  void* o_part = nullptr;            // float16 [B, splits, Sq, Hkv, G, D], contiguous
  float* lse_part = nullptr;         // [B, splits, Sq, Hkv, G], contiguous
};

}  // namespace torch_fmha
