// torch_fmha kernel: one decode step against an FP8 KV cache, split-KV (issue 15).
//
// The prefill kernel spends a 128-row wgmma tile on the G = H / Hkv query rows
// of a decode step; this one uses mma.sync, whose M is 16, and streams the
// cache through shared memory with cp.async. CTA (split, row tile, KV head, batch), W = 4
// warps (kDecodeWarps; 8 with a tuning knob at D <= 128); warp w takes the split's
// 32-key tiles w, w + W, ... with its own online softmax, two tiles in flight
// (cp.async double buffer per warp):
//
//   S[16 x 32]  = Q K^T     mma.sync -> f32 (f16 m16n8k16 on converted Q / K at
//                           D = 64 and dense D = 128, e4m3 m16n8k32 elsewhere), K
//                           fragments read straight from the tile's rows
//   softcap, mask (keys past the split; each row's bottom-right causal / window
//   edges); row max, p = 2^(s * scale - max)
//   O[16 x D]  += P V       mma m16n8k16 f16 -> f32: P (f16) is the S
//                           accumulator repacked in place (the C layout of two
//                           n8 tiles is the A layout of one k16 step), V
//                           converted e4m3 -> f16 in shared memory and read
//                           with ldmatrix.trans (FP8 mma wants V^T, which the
//                           cache does not have; f16 mma takes V as stored)
//
// P is f16 (the prefill kernel's is e4m3), so a decode step is at least as
// exact as prefill. At the end the W warps' (max, sum, O) are merged through
// shared memory and the CTA writes o / l and the LSE of its rows (decode_params.h);
// csrc/merge_splits.h merges the splits. A step of more than 16 rows (Sq x G <= 64)
// takes one CTA per 16-row tile and split (kDecodeMaxRowTiles).
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>

#include "../decode_params.h"
#include "decode_ptx.cuh"
#include "grid_dependency.cuh"
#include "softmax.cuh"

namespace torch_fmha::kernel {

// Warps per CTA: a developer knob for an A/B on the GPU (TORCH_FMHA_NVCC_EXTRA=
// -DTORCH_FMHA_TUNE_DECODE_WARPS=8; measured in session 16, DESIGN 1.11: B = 1 5-7% faster
// at 32k / 128k, B = 8 within 5%; in session 26 its kvcache GPU tests passed, but against today's
// default it was within 4% at B = 1 (8k slower, 32k / 128k 1-2% faster) and 3-13% slower at
// B = 64 with 1k-8k keys: not adopted).
// The kernel is latency-bound on few warps (DESIGN 1.11: B = 1 32k at 11.8% achieved
// occupancy, its 256 CTAs about two per SM); 8 warps give a split twice the warps, so the
// op's rule picks half the splits (one 136 KB CTA per SM at D = 128) for the same warps
// per SM, with half the splits' fixed costs and partials to merge. D = 256 keeps 4
// (8 warps' buffers would take 400 KB).
#ifndef TORCH_FMHA_TUNE_DECODE_WARPS
#define TORCH_FMHA_TUNE_DECODE_WARPS 4
#endif
template <int kD>
inline constexpr int kDecodeWarps = kD == 256 ? 4 : TORCH_FMHA_TUNE_DECODE_WARPS;
static_assert(kDecodeWarps<128> == 4 || kDecodeWarps<128> == 8,
              "the end-of-split merge maps 32 * warps threads on 16 rows");
inline constexpr int kDecodeTileKeys = 32;
inline constexpr int kDecodeRows = 16;  // mma.sync M: a CTA's query rows (one row tile)
// Row tiles of a KV head's Sq x G rows (DecodeParams::row_tiles): a step of up to 64 rows
// (Sq x G; speculative decoding's few tokens at GQA 8, say) runs as up to 4 CTAs per split,
// each its own 16 rows over the same keys (neighbours in the grid, so that the repeated
// reads can come from L2; not measured).
inline constexpr int kDecodeMaxRowTiles = 4;

// The decode tile's alpha rounded so that an unchanged max gives exactly 1
// (softmax.cuh, rescale_factor): a developer knob (TORCH_FMHA_NVCC_EXTRA=
// -DTORCH_FMHA_TUNE_DECODE_EXACT_ALPHA=1), measured within 1% of the default (DESIGN 1.11,
// session 16), so off.
#ifndef TORCH_FMHA_TUNE_DECODE_EXACT_ALPHA
#define TORCH_FMHA_TUNE_DECODE_EXACT_ALPHA 0
#endif

// Pipeline depth of each warp's K / V tiles at D <= 128 (kInPlaceV): a developer knob
// for an A/B on the GPU (TORCH_FMHA_NVCC_EXTRA=-DTORCH_FMHA_TUNE_DECODE_STAGES=3: tiles
// j + 1 and j + 2 in flight while j is computed). 3 stages take 102 KB per CTA at
// D = 128 (two CTAs per SM instead of three), 54 KB at D = 64 (four either way). D = 256
// keeps 2: 3 would take 264 KB, more than an SM has.
#ifndef TORCH_FMHA_TUNE_DECODE_STAGES
#define TORCH_FMHA_TUNE_DECODE_STAGES 2
#endif

// Per-warp shared memory: two stages (kStages) of a 32-key tile, V (FP8, [32][kD]) and K
// (FP8, [32][kKStride]), and the tile's V in f16 ([32][kVhStride]) for ldmatrix.trans.
// Row strides are padded by 16 bytes so that the K fragment loads (8 rows x 4 lanes x
// 4 bytes) and the ldmatrix rows hit 32 distinct banks.
//
// kInPlaceV (D <= 128): once S = Q K^T has read K, V is converted in place, over the
// whole stage (the f16 V is exactly the stage's size), instead of into a third
// buffer: a D = 128 CTA then takes 68 KB instead of 102 KB, three per SM instead of
// two. The tile loop is latency-bound (Nsight Compute, one H200, B = 8 8k keys: issue
// slots 39% busy, warps stalled mostly on fixed-latency dependencies and shared
// memory, 8 warps per SM), so more warps hide more of it. D = 256 stays at one CTA per
// SM either way (255 registers), and converting after S there (S live across the
// conversion) doubled its spills: it keeps the third buffer and converts first.
template <int kD>
struct DecodeSmem {
  static constexpr bool kInPlaceV = kD <= 128;
  static constexpr int kStages = kInPlaceV ? TORCH_FMHA_TUNE_DECODE_STAGES : 2;
  static_assert(kStages >= 2, "one tile in flight while another is computed");
  static constexpr int kKStride = kD + 16;
  static constexpr int kVhStride = 2 * kD + 16;
  static constexpr int kVBytes = kDecodeTileKeys * kD;
  static constexpr int kKBytes = kDecodeTileKeys * kKStride;
  static constexpr int kStageBytes = kVBytes + kKBytes;
  // Where V and K sit in a stage: in place V first (the conversion's order relies on
  // it), else K first.
  static constexpr int kVOffset = kInPlaceV ? 0 : kKBytes;
  static constexpr int kKOffset = kInPlaceV ? kVBytes : 0;
  static constexpr int kVhBytes = kDecodeTileKeys * kVhStride;
  static_assert(kVhBytes == kStageBytes, "the f16 V fills a stage exactly");
  static constexpr int kWarpBytes = kStages * kStageBytes + (kInPlaceV ? 0 : kVhBytes);
  static constexpr int kBytes = kDecodeWarps<kD> * kWarpBytes;
  // The end-of-split merge of the warps reuses it: O [warps][16][D], max and sum [warps][16].
  static constexpr int kMergeBytes = kDecodeWarps<kD> * kDecodeRows * (kD + 2) * 4;
  static_assert(kMergeBytes <= kBytes);
};

// CTAs per SM the decode kernel is built for (__launch_bounds__' register cap): three
// at D = 128 with 4 warps (168 registers, 68 KB of shared memory), one with 8 (136 KB). 0 leaves ptxas unconstrained, as
// before: a minimum of 1 made it spill more at D = 256 (255 registers either way).
template <int kD>
inline constexpr int kDecodeMinBlocks = kD == 128 ? (kDecodeWarps<kD> == 4 ? 3 : 1) : 0;

// Page id of key `key` of batch b in a page pool. The dense cache takes no lookup (its
// rows are a pointer step apart: load_tile); a compile-time choice, as a runtime branch
// per copied chunk, with its integer division, was half of the tile loop's instructions.
// An id outside the pool is the caller's bug (the CPU op reports it; debug builds assert
// here); release builds read such a page as zeros, never outside the pool.
__device__ __forceinline__ int decode_page(const DecodeParams& p, int b, int key) {
  const int page = p.page_table[int64_t(b) * p.page_table_stride + (key >> p.page_shift)];
  assert(page >= 0 && page < p.num_pages && "page_table: page id outside [0, num_pages)");
  return page;
}

// Keys [begin, end) of this CTA's split: the split's share of [first, L) in
// whole 32-key tiles (the last split may get fewer, or none). first is the left
// window's edge of query row 0, max(0, L - Sq - window_left), or 0 without a
// left window; each row's own edges are masked in the tile loop.
struct DecodeRange {
  int begin, end;
};

__host__ __device__ __forceinline__ DecodeRange decode_split_range(int seqlen, int seqlen_q, int window_left,
                                                                   int splits, int split) {
  const int64_t edge = int64_t(seqlen) - seqlen_q - window_left;
  const int first = window_left >= 0 && edge > 0 ? int(edge) : 0;
  const int64_t len = seqlen > first ? seqlen - first : 0;  // int64: no overflow near 2^31 keys
  int64_t chunk = (len + splits - 1) / splits;
  chunk = (chunk + kDecodeTileKeys - 1) / kDecodeTileKeys * kDecodeTileKeys;
  const int64_t lo = int64_t(split) * chunk, hi = lo + chunk;
  return {first + int(lo < len ? lo : len), first + int(hi < len ? hi : len)};
}

// A tile's V, e4m3 -> f16: kChunks = kD / 16 16-byte chunks per lane, 32 / kChunks
// rows per pass (in place, vh == vs's stage: the last rows first). In place, f16 row r
// lands on bytes [r (2 kD + 16), + 2 kD) of the stage, which hold FP8 rows >= 2r (row
// stride kD, V first in the stage) and K: a pass only overwrites rows that an earlier
// pass, or itself before the __syncwarp between its loads and stores, has read.
template <int kD>
__device__ __forceinline__ void convert_v_tile(const uint8_t* vs, uint8_t* vh, int lane) {
  using Smem = DecodeSmem<kD>;
  constexpr int kChunks = kD / 16;
#pragma unroll
  for (int pass = 0; pass < kChunks; ++pass) {
    const int i = Smem::kInPlaceV ? kChunks - 1 - pass : pass;
    const int idx = i * 32 + lane;
    const int r = idx / kChunks, c = idx % kChunks;
    const uint4 raw = *reinterpret_cast<const uint4*>(vs + r * kD + 16 * c);
    if constexpr (Smem::kInPlaceV) __syncwarp();  // the pass's FP8 rows are all read
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
    uint32_t h[8];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const __half2_raw lo = __nv_cvt_fp8x2_to_halfraw2(
          static_cast<__nv_fp8x2_storage_t>(w[q] & 0xffffu), __NV_E4M3);
      const __half2_raw hi = __nv_cvt_fp8x2_to_halfraw2(
          static_cast<__nv_fp8x2_storage_t>(w[q] >> 16), __NV_E4M3);
      h[2 * q] = uint32_t(lo.x) | (uint32_t(lo.y) << 16);
      h[2 * q + 1] = uint32_t(hi.x) | (uint32_t(hi.y) << 16);
    }
    uint4* dst = reinterpret_cast<uint4*>(vh + r * Smem::kVhStride + 32 * c);
    dst[0] = make_uint4(h[0], h[1], h[2], h[3]);
    dst[1] = make_uint4(h[4], h[5], h[6], h[7]);
  }
}

// How a CTA finds its query rows: a compile-time choice, one instantiation each.
//   kOneTile   dense q, Sq x G <= 16: grid x is the split, the one row tile all the rows.
//              Its own instantiation, so that the common step keeps the SASS it had before
//              row tiles (the division by row_tiles, kept live across the tile loop or read
//              again after it, moved ptxas's allocation: up to 10 reloads in D = 256's loop,
//              2 in D = 128's).
//   kRowTiles  dense q, Sq x G <= 64: grid x is splits x row tiles, a split's row tiles
//              adjacent (they read the same keys: the repeats can come from L2 when they run
//              together).
//   kPacked    packed q (cu_seqlens_q): grid x as kRowTiles, row_tiles from the
//              max_seqlen_q hint; each sequence has its own Sq_b, and a CTA takes row tiles
//              row_tiles apart until its sequence's Sq_b x G rows are done (a hint too
//              small costs time, never rows).
enum class DecodeRows { kOneTile, kRowTiles, kPacked };

// A CTA's split and the rows [row0, row0 + rows) of its KV head's Sq x G (rows <= 16),
// its sequence's query rows and (packed q) the first of them in q.
struct DecodeCta {
  int split, row0, rows;
  int seqlen_q;
  int q_first;
};
template <DecodeRows kRows>
__device__ __forceinline__ DecodeCta decode_cta(const DecodeParams& p) {
  if constexpr (kRows == DecodeRows::kOneTile) {
    return {int(blockIdx.x), 0, p.seqlen_q * p.group, p.seqlen_q, 0};
  } else if constexpr (kRows == DecodeRows::kRowTiles) {
    const int split = int(blockIdx.x / unsigned(p.row_tiles));
    const int row0 = kDecodeRows * int(blockIdx.x % unsigned(p.row_tiles));
    return {split, row0, min(p.seqlen_q * p.group - row0, kDecodeRows), p.seqlen_q, 0};
  } else {
    // Clamped to [0, total_q] as the varlen kernel does (varlen_prep.cuh, load_seq).
    const int b = blockIdx.z;
    const int q0 = p.cu_seqlens_q[b], q1 = p.cu_seqlens_q[b + 1];
    assert(q0 >= 0 && q0 <= q1 && q1 <= p.total_q && "cu_seqlens_q: 0 <= non-decreasing <= total_q");
    assert((b > 0 || q0 == 0) && (b + 1 < p.batch || q1 == p.total_q) &&
           "cu_seqlens_q: starts at 0, ends at total_q");
    const int first = min(max(q0, 0), p.total_q);
    const int sq = min(max(q1, first), p.total_q) - first;
    const int split = int(blockIdx.x / unsigned(p.row_tiles));
    const int row0 = kDecodeRows * int(blockIdx.x % unsigned(p.row_tiles));
    return {split, row0, min(sq * p.group - row0, kDecodeRows), sq, first};
  }
}

// One row tile of one split: the split's keys streamed through the warps, the warps'
// results merged, the tile's partial o / lse written.
template <int kD, bool kPaged, DecodeRows kRows>
__device__ __forceinline__ void decode_row_tile(const DecodeParams& p, uint8_t* smem, const DecodeCta& cta) {
  using Smem = DecodeSmem<kD>;
  constexpr int kSteps = kD / 32;   // k32 steps of Q K^T
  constexpr int kChunks = kD / 16;  // 16-byte chunks of a cache row
  const int kvh = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;  // fragment row and column group
  const int seqlen_q = kRows == DecodeRows::kPacked ? cta.seqlen_q : p.seqlen_q;

  // Never past the cache (the CPU op rejects such lengths; debug builds assert).
  assert(p.cache_seqlens[b] >= 0 && p.cache_seqlens[b] <= p.capacity &&
         "cache_seqlens: 0 <= cache_seqlens[b] <= the cache's keys");
  const int seqlen = min(max(p.cache_seqlens[b], 0), p.capacity);
  const DecodeRange range = decode_split_range(seqlen, seqlen_q, p.window_left, p.splits, cta.split);
  const int row0 = cta.row0;
  // Tile row r is row row0 + r of the Sq x G: query row (row0 + r) / G, head kvh * G + (row0 + r) % G.
  const int rows = cta.rows;
  // Keys each of this thread's two rows (g, g + 8) may see: [lo, hi] (bottom-right).
  int key_lo[2], key_hi[2];
#pragma unroll
  for (int r8 = 0; r8 < 2; ++r8) {
    const int i = (row0 + g + 8 * r8) / p.group;  // query row (past Sq for padding rows: unused)
    const int64_t diag = int64_t(seqlen) - seqlen_q + i;
    key_lo[r8] = p.window_left >= 0 ? int(max(diag - p.window_left, int64_t(-1))) : -1;
    key_hi[r8] = p.window_right >= 0 ? int(min(diag + p.window_right, int64_t(seqlen) - 1)) : seqlen - 1;
  }
  const int num_tiles = (range.end - range.begin + kDecodeTileKeys - 1) / kDecodeTileKeys;

  // Score scale as the prefill kernel takes it (producer.cuh, OnlineSoftmax::reset).
  const ScoreScales sc = score_scales(
      p.softmax_scale * load_scale(p.q_descale, b, kvh) * load_scale(p.k_descale, b, kvh), p.softcap);
  const float scale_log2 = usable_scale_log2(sc.scale_log2);

  // Q fragments (A of m16n8k32): rows g and g + 8, key bytes 4t.. and 16 + 4t.. of each step.
  // kF16Scores (D <= 128): S = Q K^T as f16 mma (m16n8k16, f32 accumulate) on Q
  // converted once (qh) and K converted per tile. sm_90 has no FP8 mma.sync: ptxas
  // lowers each e4m3 m16n8k32 to two f16 HMMA from a zero accumulator, re-converts
  // both operands and adds the result with 4 FADD, 96 instructions per tile at D = 128
  // that this saves (Q's conversion and the FADDs). The k order inside each 16 bytes is
  // permuted the same way for Q and K (f16 fragment k = 2t, 2t + 1, 2t + 8, 2t + 9 <->
  // bytes 4t .. 4t + 3), which leaves the dot product unchanged. Dense and paged D = 64
  // and dense D = 128 take it. D = 256 keeps the e4m3
  // form: its 64 extra Q registers would not fit (255 registers there already); so does
  // the paged D = 128 build, whose page addressing left no room for 16 more (it spilled
  // in its tile loop).
  constexpr bool kF16Scores = kD < 128 || (kD == 128 && !kPaged);
  uint32_t qa[kSteps][4];
  const uint8_t* qb = p.q + int64_t(b) * p.q_batch_stride + int64_t(cta.q_first) * p.q_row_stride +
                      int64_t(kvh) * p.group * p.q_head_stride;
  const uint8_t* qrow[2];
#pragma unroll
  for (int r8 = 0; r8 < 2; ++r8) {
    const int r = g + 8 * r8, rr = row0 + r;
    qrow[r8] = r < rows ? qb + int64_t(rr / p.group) * p.q_row_stride + int64_t(rr % p.group) * p.q_head_stride
                        : nullptr;
  }
#pragma unroll
  for (int s = 0; s < kSteps; ++s) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint8_t* row = qrow[i & 1];
      const int col = 32 * s + 4 * t + (i >> 1) * 16;
      qa[s][i] = row != nullptr ? *reinterpret_cast<const uint32_t*>(row + col) : 0u;
    }
  }
  // Q in f16 (kF16Scores): qh[s][i][h] = bytes 2h, 2h + 1 of qa[s][i].
  uint32_t qh[kF16Scores ? kSteps : 1][4][2];
  if constexpr (kF16Scores) {
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        e4m3x4_to_f16x2x2(qa[s][i], qh[s][i][0], qh[s][i][1]);
      }
    }
  }

  uint8_t* const wsmem = smem + warp * Smem::kWarpBytes;

  // cp.async of tile `tile` into stage `stage`: 32 rows x kChunks 16-byte chunks of K
  // and V, kChunks per lane: chunk i of a lane is row r = i (32 / kChunks) + lane /
  // kChunks, column chunk c = lane % kChunks. Keys past the split are zero-filled
  // (never read), their source address kept inside the cache. Dense: a lane's rows of a
  // tile are one pass (32 / kChunks rows) apart, so its K / V pointers are computed once
  // per tile and advanced by a pass's stride (the per-chunk 64-bit offset arithmetic was
  // ~1 in 6 of the tile loop's instructions at D = 128); a key past the split reads from
  // row 0 of the sequence. Paged: per chunk, through the page table.
  constexpr int kRowsPerPass = 32 / kChunks;
  const int lane_row = lane / kChunks, lane_col = lane % kChunks;
  auto load_tile = [&](int tile, int stage) {
    uint8_t* ks = wsmem + stage * Smem::kStageBytes + Smem::kKOffset;
    uint8_t* vs = wsmem + stage * Smem::kStageBytes + Smem::kVOffset;
    const int first_key = range.begin + tile * kDecodeTileKeys + lane_row;  // chunk 0's
    const uint8_t* const k_row0 = p.k + int64_t(b) * p.k_batch_stride + int64_t(kvh) * p.k_head_stride + 16 * lane_col;
    const uint8_t* const v_row0 = p.v + int64_t(b) * p.v_batch_stride + int64_t(kvh) * p.v_head_stride + 16 * lane_col;
    const uint8_t* k_row = k_row0 + int64_t(first_key) * p.k_row_stride;
    const uint8_t* v_row = v_row0 + int64_t(first_key) * p.v_row_stride;
    const int64_t k_pass_step = int64_t(kRowsPerPass) * p.k_row_stride;
    const int64_t v_pass_step = int64_t(kRowsPerPass) * p.v_row_stride;
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const int r = i * kRowsPerPass + lane_row, c = lane_col;
      const int rel = tile * kDecodeTileKeys + r;  // key - range.begin
      bool valid = range.begin + rel < range.end;
      const uint8_t* ksrc;
      const uint8_t* vsrc;
      if constexpr (!kPaged) {
        ksrc = valid ? k_row : k_row0;
        vsrc = valid ? v_row : v_row0;
        k_row += k_pass_step;
        v_row += v_pass_step;
      } else {
        const int row = valid ? range.begin + rel : range.begin;
        int page = decode_page(p, b, row);
        if (unsigned(page) >= unsigned(p.num_pages)) valid = false, page = 0;  // zeros (decode_page)
        const int64_t in_page = row & (p.page_size - 1);
        ksrc = p.k + int64_t(page) * p.k_batch_stride + in_page * p.k_row_stride + int64_t(kvh) * p.k_head_stride + 16 * c;
        vsrc = p.v + int64_t(page) * p.v_batch_stride + in_page * p.v_row_stride + int64_t(kvh) * p.v_head_stride + 16 * c;
      }
      cp_async_16(ks + r * Smem::kKStride + 16 * c, ksrc, valid);
      cp_async_16(vs + r * kD + 16 * c, vsrc, valid);
    }
  };

  float o[kD / 8][4];
#pragma unroll
  for (int n = 0; n < kD / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY};  // raw scores (after softcap's tanh)
  float row_sum[2] = {0.f, 0.f};              // this thread's part of sum p

  const int my_tiles = num_tiles > warp ? (num_tiles - warp + kDecodeWarps<kD> - 1) / kDecodeWarps<kD> : 0;
  // kStages - 1 tiles in flight ahead of the one computed, one commit group per tile (an
  // empty group past the last): waiting for all but the newest kAhead groups waits for
  // tile j. Tile j's stage is j mod kStages, in unsigned arithmetic: at two stages that
  // is `j & 1`, the code before the pipeline depth was a knob.
  constexpr int kAhead = Smem::kStages - 1;
  if (my_tiles > 0) load_tile(warp, 0);
  cp_async_commit();
#pragma unroll
  for (int i = 1; i < kAhead; ++i) {
    if (my_tiles > i) load_tile(warp + kDecodeWarps<kD> * i, i);
    cp_async_commit();
  }
  for (int j = 0; j < my_tiles; ++j) {
    const int tile = warp + kDecodeWarps<kD> * j;
    if (j + kAhead < my_tiles) load_tile(tile + kDecodeWarps<kD> * kAhead, int(unsigned(j + kAhead) % Smem::kStages));
    cp_async_commit();
    cp_async_wait<kAhead>();  // tile j has landed (this lane's copies) ...
    __syncwarp();             // ... and every lane's
    uint8_t* const stage = wsmem + int(unsigned(j) % Smem::kStages) * Smem::kStageBytes;
    const uint8_t* ks = stage + Smem::kKOffset;
    const uint8_t* vs = stage + Smem::kVOffset;
    // The tile's V in f16, [32][kVhStride]: over the stage itself (kInPlaceV) or the
    // warp's third buffer.
    uint8_t* const vh = Smem::kInPlaceV ? stage : wsmem + Smem::kStages * Smem::kStageBytes;

    if constexpr (!Smem::kInPlaceV) convert_v_tile<kD>(vs, vh, lane);

    // S = Q K^T: n8 tile n holds keys 8n + 2t, 8n + 2t + 1 of rows g (0, 1) and g + 8 (2, 3).
    float s[4][4];
#pragma unroll
    for (int n = 0; n < 4; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
      const uint8_t* krow = ks + (8 * n + g) * Smem::kKStride + 4 * t;
#pragma unroll
      for (int st = 0; st < kSteps; ++st) {
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(krow + 32 * st);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(krow + 32 * st + 16);
        if constexpr (kF16Scores) {
          const uint32_t a_lo[4] = {qh[st][0][0], qh[st][1][0], qh[st][0][1], qh[st][1][1]};
          const uint32_t a_hi[4] = {qh[st][2][0], qh[st][3][0], qh[st][2][1], qh[st][3][1]};
          uint32_t k0[2], k1[2];
          e4m3x4_to_f16x2x2(b0, k0[0], k0[1]);
          e4m3x4_to_f16x2x2(b1, k1[0], k1[1]);
          mma_f16_16816(s[n], a_lo, k0[0], k0[1]);
          mma_f16_16816(s[n], a_hi, k1[0], k1[1]);
        } else {
          mma_e4m3_16832(s[n], qa[st], b0, b1);
        }
      }
    }
    if constexpr (Smem::kInPlaceV) {
      __syncwarp();  // every lane's K reads are done: the conversion overwrites K
      convert_v_tile<kD>(vs, vh, lane);
    }

    // Soft-capping, then keys past the split or outside the row's window -> -inf
    // (softmax.cuh's order).
    const int key0 = range.begin + tile * kDecodeTileKeys;
#pragma unroll
    for (int n = 0; n < 4; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (p.softcap > 0.f) s[n][e] = fast_tanh(s[n][e] * sc.softcap_mul);
        const int key = key0 + 8 * n + 2 * t + (e & 1);
        if (key >= range.end || key < key_lo[e >> 1] || key > key_hi[e >> 1]) s[n][e] = -INFINITY;
      }
    }

    // Online softmax, rows g (r8 = 0) and g + 8 (r8 = 1).
    float alpha[2];
#pragma unroll
    for (int r8 = 0; r8 < 2; ++r8) {
      float mx = row_max[r8];
#pragma unroll
      for (int n = 0; n < 4; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * r8], s[n][2 * r8 + 1]));
      mx = quad_max(mx);
      const float max_scaled = mx == -INFINITY ? 0.f : mx * scale_log2;
      alpha[r8] = rescale_factor<TORCH_FMHA_TUNE_DECODE_EXACT_ALPHA != 0>(row_max[r8], max_scaled,
                                                                         scale_log2);
      row_max[r8] = mx;
      float sum = 0.f;
#pragma unroll
      for (int n = 0; n < 4; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = s[n][2 * r8 + e];
          x = fast_exp2(fmaf(x, scale_log2, -max_scaled));
          sum += x;
        }
      }
      row_sum[r8] = row_sum[r8] * alpha[r8] + sum;
    }
    // Skipped only where every alpha of the warp is exactly 1, so the skip is bitwise
    // exact; the vote keeps the branch warp-uniform (consumer.cuh does the same). How
    // often it fires in the release build is open (softmax.cuh, rescale_factor: the
    // contracted exponent; TORCH_FMHA_TUNE_DECODE_EXACT_ALPHA above). Not at D = 256,
    // where the branch took registers the tile loop then spilled (4 -> 9 reloads).
    if (kD > 128 || __any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
      for (int n = 0; n < kD / 8; ++n) {
        o[n][0] *= alpha[0];
        o[n][1] *= alpha[0];
        o[n][2] *= alpha[1];
        o[n][3] *= alpha[1];
      }
    }

    __syncwarp();  // every lane's f16 V is in place
    // O += P V, two k16 steps of keys.
#pragma unroll
    for (int kc = 0; kc < 2; ++kc) {
      const uint32_t pa[4] = {pack_half2(s[2 * kc][0], s[2 * kc][1]), pack_half2(s[2 * kc][2], s[2 * kc][3]),
                              pack_half2(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                              pack_half2(s[2 * kc + 1][2], s[2 * kc + 1][3])};
      // Lanes 0-7 / 8-15 / 16-23 / 24-31: keys 0-7 / 8-15 of the step, d columns 0-7 / 0-7 / 8-15 / 8-15
      // of each 16-column group: r[0], r[1] are b0, b1 of n8 tile 2 dt, r[2], r[3] of tile 2 dt + 1.
      const uint8_t* vrow = vh + (16 * kc + (lane & 15)) * Smem::kVhStride + (lane >> 4) * 16;
#pragma unroll
      for (int dt = 0; dt < kD / 16; ++dt) {
        uint32_t r[4];
        ldmatrix_x4_trans(r, vrow + 32 * dt);
        mma_f16_16816(o[2 * dt], pa, r[0], r[1]);
        mma_f16_16816(o[2 * dt + 1], pa, r[2], r[3]);
      }
    }
    __syncwarp();  // the stage and vh are free for the next tile's copies and conversion
  }
  cp_async_wait<0>();

  // Merge the warps: each writes its rows' max (log2 units), sum and O; all read them back.
  __syncthreads();
  float* red_o = reinterpret_cast<float*>(smem);             // [warps][16][kD]
  float* red_m = red_o + kDecodeWarps<kD> * kDecodeRows * kD;    // [warps][16]
  float* red_l = red_m + kDecodeWarps<kD> * kDecodeRows;         // [warps][16]
#pragma unroll
  for (int r8 = 0; r8 < 2; ++r8) {
    const int row = g + 8 * r8;
    const float l = quad_sum(row_sum[r8]);
    if (t == 0) {
      red_m[warp * kDecodeRows + row] = row_max[r8] == -INFINITY ? -INFINITY : row_max[r8] * scale_log2;
      red_l[warp * kDecodeRows + row] = l;
    }
#pragma unroll
    for (int n = 0; n < kD / 8; ++n) {
      float* dst = red_o + (warp * kDecodeRows + row) * kD + 8 * n + 2 * t;
      dst[0] = o[n][2 * r8];
      dst[1] = o[n][2 * r8 + 1];
    }
  }
  __syncthreads();
  // kRowThreads threads per row (8 at 4 warps): row = tid / kRowThreads, columns
  // tid % kRowThreads + kRowThreads c.
  constexpr int kRowThreads = 32 * kDecodeWarps<kD> / kDecodeRows;
  const int row = threadIdx.x / kRowThreads, col0 = threadIdx.x % kRowThreads;
  if (row >= rows) return;
  float m = -INFINITY;
#pragma unroll
  for (int w = 0; w < kDecodeWarps<kD>; ++w) m = fmaxf(m, red_m[w * kDecodeRows + row]);
  // A warp that saw a key has sum >= 1 (its max key's p is 1) or NaN; so the split saw
  // none exactly when every sum is 0 (decided by the keys, not by a max that a NaN
  // scale made NaN: fmaxf skips those, their weights below are NaN).
  float weight[kDecodeWarps<kD>], l = 0.f, seen = 0.f;
#pragma unroll
  for (int w = 0; w < kDecodeWarps<kD>; ++w) {
    const float mw = red_m[w * kDecodeRows + row];
    weight[w] = mw == -INFINITY ? 0.f : fast_exp2(mw - m);
    l += red_l[w * kDecodeRows + row] * weight[w];
    seen += red_l[w * kDecodeRows + row];
  }
  const bool empty = seen == 0.f;
  // [B, splits, Sq, Hkv, G]; packed q: [Tq, splits, 1, Hkv, G] (decode_params.h)
  const int rr = row0 + row;  // of the Sq x G
  const int64_t out_row =
      kRows == DecodeRows::kPacked
          ? ((int64_t(cta.q_first + rr / p.group) * p.splits + cta.split) * p.heads_kv + kvh) * p.group + rr % p.group
          : (((int64_t(b) * p.splits + cta.split) * p.seqlen_q + rr / p.group) * p.heads_kv + kvh) * p.group +
                rr % p.group;
  const float inv_l = empty ? 0.f : 1.f / l;
  __half* o_out = static_cast<__half*>(p.o_part) + out_row * kD;
#pragma unroll
  for (int c = 0; c < kD / kRowThreads; ++c) {
    const int d = col0 + kRowThreads * c;
    float acc = 0.f;
#pragma unroll
    for (int w = 0; w < kDecodeWarps<kD>; ++w) acc += red_o[(w * kDecodeRows + row) * kD + d] * weight[w];
    o_out[d] = __float2half_rn(acc * inv_l);
  }
  if (col0 == 0) {
    constexpr float kLn2 = 0.6931471805599453f;
    p.lse_part[out_row] = empty ? -INFINITY : (m + log2_approx(l)) * kLn2;
  }
}

// Packed q: the v_descale of sequence b, KV head kvh for each of its `sq` query tokens
// from `first` on (decode_params.h), by the sequence's first CTA of each KV head, before
// its tiles. It moves ptxas's allocation of the tile loop wherever it goes: here one
// reload per tile at D = 128 paged and 8 local accesses outside the loop at D = 128 dense;
// in a tile's epilogue 5 reloads per tile at D = 256 dense (1 here), after the tiles 5
// too (a separate ATen gather instead cost 9-12 us per step at batch 1 and 8).
__device__ __forceinline__ void copy_v_descale_to_tokens(const DecodeParams& p, int b, int kvh, int first, int sq) {
  const float vd = load_scale(p.v_descale, b, kvh);
  for (int i = threadIdx.x; i < sq; i += blockDim.x) p.v_descale_tokens[int64_t(first + i) * p.heads_kv + kvh] = vd;
}

template <int kD, bool kPaged, DecodeRows kRows>
__global__ void __launch_bounds__(32 * kDecodeWarps<kD>, kDecodeMinBlocks<kD>) decode_kernel(const __grid_constant__ DecodeParams p) {
  // The merge kernel, this grid's programmatic dependent (launch/merge_splits.cu), may be
  // scheduled from here on: its CTAs start once every CTA of this grid has started, take
  // only slots this grid leaves free and block in griddepcontrol.wait until this grid has
  // completed and its o / lse are visible. At B = 1 (one wave) that hides the merge's
  // launch behind the split loop; after the tile loop (as FlashAttention-3 does) it would
  // hide at most the epilogue. The memory guarantee is the wait's, not this trigger's.
  allow_dependent_launch();
  // This grid is the programmatic dependent of the kernel before it (launch/decode.cu), which may
  // still write q, the cache or cu_seqlens_q: no global access before this wait (SASS-tested).
  wait_for_primary_grid();
  extern __shared__ __align__(128) uint8_t smem[];
  DecodeCta cta = decode_cta<kRows>(p);
  if constexpr (kRows != DecodeRows::kPacked) {
    decode_row_tile<kD, kPaged, kRows>(p, smem, cta);
  } else {
    if (p.v_descale_tokens != nullptr && blockIdx.x == 0) {
      copy_v_descale_to_tokens(p, blockIdx.z, blockIdx.y, cta.q_first, cta.seqlen_q);
    }
    // Sq_b x G < 2^31 (the op takes total_q x G < 2^31).
    const int rows = cta.seqlen_q * p.group;
    for (; cta.row0 < rows; cta.row0 += kDecodeRows * p.row_tiles) {
      cta.rows = min(rows - cta.row0, kDecodeRows);
      decode_row_tile<kD, kPaged, kRows>(p, smem, cta);
      __syncthreads();  // the warps' merge read shared memory that the next tile's copies reuse
    }
  }
}

}  // namespace torch_fmha::kernel
