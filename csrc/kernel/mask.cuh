// torch_fmha kernel: which KV blocks a q tile visits, and the per-element mask.
//
// Query row i (0-based in its sequence, lengths sq, sk) sees key j iff
//   j < sk
//   j >= i + (sk - sq) - window_left    when window_left  >= 0
//   j <= i + (sk - sq) + window_right   when window_right >= 0
// (params.h; causal = (-1, 0), bottom-right aligned).
#pragma once

#include <cstdint>

namespace torch_fmha::kernel {

// Half-open range [begin, end) of KV block indices a q tile needs.
struct KvBlockRange {
  int32_t begin;
  int32_t end;
  __host__ __device__ __forceinline__ int32_t count() const { return end > begin ? end - begin : 0; }
};

struct MaskInfo {
  int32_t seqlen_q;
  int32_t seqlen_k;
  int32_t window_left;   // < 0: unbounded
  int32_t window_right;  // < 0: unbounded

  __host__ __device__ __forceinline__ int32_t diag_offset() const { return seqlen_k - seqlen_q; }

  // Blocks of kBlockN keys that any of the rows [m0, m0 + kBlockM) ∩ [0, sq) sees.
  template <int kBlockM, int kBlockN>
  __host__ __device__ __forceinline__ KvBlockRange kv_range(int32_t m_block) const {
    const int32_t m0 = m_block * kBlockM;
    const int32_t m_last = min(m0 + kBlockM, seqlen_q) - 1;
    int32_t end = (seqlen_k + kBlockN - 1) / kBlockN;
    int32_t begin = 0;
    if (window_right >= 0) {
      const int32_t last_key = m_last + diag_offset() + window_right;  // inclusive
      end = min(end, last_key < 0 ? 0 : last_key / kBlockN + 1);
    }
    if (window_left >= 0) {
      const int32_t first_key = m0 + diag_offset() - window_left;
      begin = first_key <= 0 ? 0 : first_key / kBlockN;
    }
    return {begin, end};
  }

  // True if some element of block n_block x rows [m0, m0 + kBlockM) is masked,
  // i.e. the block needs the per-element mask. Conservative (counts rows >= sq).
  template <int kBlockM, int kBlockN>
  __device__ __forceinline__ bool block_needs_mask(int32_t m_block, int32_t n_block) const {
    const int32_t m0 = m_block * kBlockM;
    const int32_t n0 = n_block * kBlockN;
    bool need = n0 + kBlockN > seqlen_k;
    if (window_right >= 0) need |= n0 + kBlockN - 1 > m0 + diag_offset() + window_right;
    if (window_left >= 0) need |= n0 < m0 + kBlockM - 1 + diag_offset() - window_left;
    return need;
  }

  // True if no row of [m0, m0 + kBlockM) ∩ [0, sq) sees any key of the upper half
  // [n0 + kBlockN / 2, n0 + kBlockN) of block n_block: past the keys' end, or right of
  // every row's window (a causal tile's diagonal block, whenever the tile's 128 rows end
  // in the lower half of a 256-key block). Rows >= sq are left out: nothing of them is
  // stored.
  template <int kBlockM, int kBlockN>
  __host__ __device__ __forceinline__ bool upper_half_hidden(int32_t m_block, int32_t n_block) const {
    const int32_t upper = n_block * kBlockN + kBlockN / 2;
    if (upper >= seqlen_k) return true;
    if (window_right < 0) return false;
    const int32_t m_last = min(m_block * kBlockM + kBlockM, seqlen_q) - 1;
    return upper > m_last + diag_offset() + window_right;
  }

  // Visible key columns [lo, hi] (inclusive) of query row `row`.
  __host__ __device__ __forceinline__ void row_bounds(int32_t row, int32_t& lo, int32_t& hi) const {
    lo = window_left >= 0 ? row + diag_offset() - window_left : 0;
    hi = seqlen_k - 1;
    if (window_right >= 0) hi = min(hi, row + diag_offset() + window_right);
  }
};

// Bit j of the result is set iff column 8 * j + e lies in [lo, hi] (columns
// relative to the thread's first column, j < 32). For a fixed e the visible j
// are one contiguous run, so the whole row's mask is two shifts; each element
// then costs one bit test and one select. (Comparing every element against lo
// and hi made ptxas park the 96 predicates in register bits: ~4.5 instructions
// per element instead of 2.)
__host__ __device__ __forceinline__ uint32_t visible_column_bits(int32_t lo, int32_t hi, int e) {
  const int32_t j_first = (lo - e + 7) >> 3;  // ceil((lo - e) / 8); >> floors negatives
  const int32_t j_last = (hi - e) >> 3;       // floor((hi - e) / 8)
  if (j_last < 0 || j_first > 31 || j_last < j_first) return 0u;
  const uint32_t upto_last = 0xffffffffu >> (31 - (j_last > 31 ? 31 : j_last));
  const uint32_t from_first = 0xffffffffu << (j_first < 0 ? 0 : j_first);
  return upto_last & from_first;
}

// Sets masked scores to -inf (a select, never an add: a NaN score from keys
// past the sequence is replaced, not propagated).
// s: the thread's S accumulator, flat index i = e + 2 * r8 + 4 * j holds
//    row  = row0 + 8 * r8
//    col  = n0 + 8 * j + col0 + e      (GMMA C layout, col0 = 2 * (lane % 4))
template <int kBlockN, class Frag>
__device__ __forceinline__ void apply_mask(Frag& s, const MaskInfo& mask, int32_t row0,
                                           int32_t col_base) {
  static_assert(kBlockN / 8 <= 32, "one 32-bit mask word per (row, e)");
#pragma unroll
  for (int r8 = 0; r8 < 2; ++r8) {
    int32_t lo, hi;
    mask.row_bounds(row0 + 8 * r8, lo, hi);
    lo -= col_base;  // in-block column bounds
    hi -= col_base;
    const uint32_t bits[2] = {visible_column_bits(lo, hi, 0), visible_column_bits(lo, hi, 1)};
#pragma unroll
    for (int j = 0; j < kBlockN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float& x = s(e + 2 * r8 + 4 * j);
        x = (bits[e] >> j) & 1u ? x : -INFINITY;
      }
    }
  }
}

}  // namespace torch_fmha::kernel
