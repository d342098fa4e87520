// torch_fmha: parameters of the split-KV decode kernel (csrc/kernel/decode.cuh),
// filled by csrc/ops/kvcache_op.cpp. No torch types.
//
// One decode step of attention_with_kvcache: q [B, 1, H, D] FP8, an FP8 cache
// [B, Smax, Hkv, D] (dense) or a page pool [num_pages, page_size, Hkv, D] with
// page_table [B, pages], cache_seqlens [B]. CTA (split s, KV head h, batch b)
// reads split s of batch b's keys [first, L) (first: the left window's first
// key, else 0) once, for the G = H / Hkv query heads of KV head h, and writes
// their partial results: o normalised over its keys (float16) and the natural-
// log LSE of its scores (float32), merged afterwards by csrc/merge_splits.h.
#pragma once

#include <stdint.h>

#include "params.h"

namespace torch_fmha {

struct DecodeParams {
  const uint8_t* q = nullptr;  // [B, 1, H, D]; query head h * G + r is row r of KV head h
  const uint8_t* k = nullptr;
  const uint8_t* v = nullptr;
  int64_t q_batch_stride = 0, q_head_stride = 0;  // elements (= bytes, FP8)
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
  int32_t batch = 0, heads_kv = 0, group = 0, head_dim = 0, splits = 1;
  int32_t window_left = -1;  // >= 0: the row sees keys [L - 1 - window_left, L)
  float softmax_scale = 0.f;
  float softcap = 0.f;  // 0: off
  ScaleTensor q_descale, k_descale;  // [1] or [B, Hkv]
  void* o_part = nullptr;            // float16 [B, splits, Hkv, G, D], contiguous
  float* lse_part = nullptr;         // [B, splits, Hkv, G], contiguous
};

}  // namespace torch_fmha
