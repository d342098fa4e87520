// torch_fmha kernel: varlen prep — one CTA, launched on the op's stream right
// before the forward kernel, turns cu_seqlens into the work list the varlen
// tile scheduler reads (varlen_workspace.cuh):
//   1. per sequence b: offsets and lengths, clamped to the tensors;
//   2. the work order: sequences sorted longest first (by len_k, then len_q,
//      then index: deterministic) when B <= kMaxSortedBatch, else in batch
//      order. Longest first balances the persistent grid: the costly tiles go out
//      first, the cheap ones fill the tail (claimed at run time, or the static
//      round-robin with TORCH_FMHA_TUNE_DYNAMIC_TILES=0);
//   3. the prefix sums of the per-sequence tile counts H * ceil(len_q / kBlockM)
//      in that order (a block-wide scan per 1024 sequences, carried over).
// Key counts: cu_seqlens_k[b + 1] - cu_seqlens_k[b], or seqused_k[b] when
// given (the first keys of the sequence's slot; with a paged KV cache there is
// no cu_seqlens_k, the sequence's keys are addressed through its page-table
// row, and k_offset is 0).
// No host synchronisation: the host never sees the lengths.
#pragma once

#include <cassert>
#include <cstdint>

#include "varlen_workspace.cuh"

namespace torch_fmha::kernel {

inline constexpr int kPrepThreads = 1024;  // 32 warps: the scan below assumes it
// Sorting ranks one sequence per thread by comparing it with all others
// (O(B) per thread, B <= 1024: a few microseconds at most).
inline constexpr int kMaxSortedBatch = kPrepThreads;

struct VarlenPrepArgs {
  const int32_t* cu_seqlens_q;  // [B + 1]
  const int32_t* cu_seqlens_k;  // [B + 1]; nullptr when paged
  const int32_t* seqused_k;     // [B] or nullptr
  const int32_t* page_table;    // [B, max_pages_per_seq] or nullptr (not paged)
  int64_t page_table_batch_stride;
  int32_t page_size;
  int32_t num_pages;
  int32_t max_pages_per_seq;
  int32_t batch;                // B
  int32_t heads;                // H
  int32_t total_q;              // rows of q
  int32_t total_k;              // rows of k / v
  int32_t block_m;              // q rows per tile
  VarlenWorkspace ws;
};

// Sequence b, clamped so that no row outside [0, total) (no page-table entry
// past its row) is ever addressed. Debug builds (no NDEBUG) assert the
// cu_seqlens / seqused_k contract instead.
__device__ __forceinline__ VarlenSeq load_seq(const VarlenPrepArgs& a, int32_t b) {
  const int32_t cq0 = a.cu_seqlens_q[b], cq1 = a.cu_seqlens_q[b + 1];
  assert(cq0 >= 0 && cq0 <= cq1 && cq1 <= a.total_q && "cu_seqlens_q: 0 <= non-decreasing <= total_q");
  VarlenSeq s{};
  s.batch = b;
  s.q_offset = min(max(cq0, 0), a.total_q);
  s.len_q = min(max(cq1, s.q_offset), a.total_q) - s.q_offset;
  if (a.page_table != nullptr) {  // paged: keys through the page table, seqused_k is required
    const int32_t used = a.seqused_k[b];
    assert(used >= 0 && used <= a.max_pages_per_seq * a.page_size &&
           "seqused_k: 0 <= seqused_k[b] <= page_table columns * page_size");
    s.k_offset = 0;
    s.len_k = min(max(used, 0), a.max_pages_per_seq * a.page_size);
    return s;
  }
  const int32_t ck0 = a.cu_seqlens_k[b], ck1 = a.cu_seqlens_k[b + 1];
  assert(ck0 >= 0 && ck0 <= ck1 && ck1 <= a.total_k && "cu_seqlens_k: 0 <= non-decreasing <= total_k");
  s.k_offset = min(max(ck0, 0), a.total_k);
  s.len_k = min(max(ck1, s.k_offset), a.total_k) - s.k_offset;
  if (a.seqused_k != nullptr) {
    const int32_t used = a.seqused_k[b];
    assert(used >= 0 && used <= s.len_k && "seqused_k: 0 <= seqused_k[b] <= the sequence's slot");
    s.len_k = min(max(used, 0), s.len_k);
  }
  return s;
}

// Debug builds (no NDEBUG): every page a sequence reads must be a page of the
// pool (the CPU op checks the same with a clear error; on CUDA the values live
// on the device, so this is the debug check, as for cu_seqlens above). Release
// builds read nothing here; a bad id there makes TMA zero-fill the box (its
// coordinates are outside the pool), never an out-of-bounds access.
__device__ __forceinline__ void debug_check_page_ids(const VarlenPrepArgs& a, const VarlenSeq& s) {
  if (a.page_table == nullptr) return;
  const int32_t* row = a.page_table + int64_t(s.batch) * a.page_table_batch_stride;
  for (int32_t j = 0; j * a.page_size < s.len_k; ++j) {  // empty under NDEBUG
    assert(row[j] >= 0 && row[j] < a.num_pages && "page_table: page id outside [0, num_pages)");
  }
}

// Inclusive sum of x over the 1024 threads of the block; `total` gets the sum
// of all. warp_sums: 32 ints of shared memory, free again on return.
__device__ __forceinline__ int32_t block_inclusive_sum(int32_t x, int32_t* warp_sums,
                                                       int32_t& total) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 1; o < 32; o *= 2) {
    const int32_t y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) warp_sums[warp] = x;
  __syncthreads();
  if (warp == 0) {
    int32_t w = warp_sums[lane];
#pragma unroll
    for (int o = 1; o < 32; o *= 2) {
      const int32_t y = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += y;
    }
    warp_sums[lane] = w;
  }
  __syncthreads();
  if (warp > 0) x += warp_sums[warp - 1];
  total = warp_sums[31];
  __syncthreads();  // everyone has read warp_sums before the next call rewrites it
  return x;
}

__global__ void __launch_bounds__(kPrepThreads, 1) varlen_prep_kernel(const VarlenPrepArgs a) {
  static_assert(kPrepThreads == 1024, "block_inclusive_sum assumes 32 full warps");
  __shared__ int64_t sort_key[kMaxSortedBatch];  // (len_k << 32) | len_q, by batch index
  __shared__ int32_t order[kMaxSortedBatch];     // work position -> batch index
  __shared__ int32_t warp_sums[32];
  const int tid = threadIdx.x;
  const bool sorted = a.batch <= kMaxSortedBatch;

  if (sorted) {
    if (tid < a.batch) {
      const VarlenSeq s = load_seq(a, tid);
      sort_key[tid] = (int64_t(s.len_k) << 32) | uint32_t(s.len_q);
    }
    __syncthreads();
    if (tid < a.batch) {
      // Position of sequence tid: the sequences strictly before it, i.e. with
      // a larger key, or an equal key and a smaller index. Unique: a permutation.
      const int64_t mine = sort_key[tid];
      int32_t rank = 0;
      for (int32_t j = 0; j < a.batch; ++j) {
        const int64_t other = sort_key[j];
        rank += (other > mine) || (other == mine && j < tid);
      }
      order[rank] = tid;
    }
    __syncthreads();
  }

  if (tid == 0) a.ws.tile_prefix[0] = 0;
  if (tid == 0 && a.ws.tile_counter != nullptr) *a.ws.tile_counter = 0;  // kDynamicTiles
  int32_t carry = 0;  // tiles of all earlier chunks
  for (int32_t base = 0; base < a.batch; base += kPrepThreads) {
    const int32_t i = base + tid;  // work position
    int32_t tiles = 0;
    if (i < a.batch) {
      const VarlenSeq s = load_seq(a, sorted ? order[i] : i);
      debug_check_page_ids(a, s);
      a.ws.seqs[i] = s;
      tiles = a.heads * ((s.len_q + a.block_m - 1) / a.block_m);
    }
    int32_t chunk_total;
    const int32_t inclusive = block_inclusive_sum(tiles, warp_sums, chunk_total);
    if (i < a.batch) a.ws.tile_prefix[i + 1] = carry + inclusive;
    carry += chunk_total;
  }
}

}  // namespace torch_fmha::kernel
