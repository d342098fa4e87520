// torch_fmha kernel: persistent tile schedulers (dense and varlen): a static order, or for
// varlen with kDynamicTiles ids claimed at run time (below).
//
// The grid has min(num_sms, upper bound on the tile count) CTAs, G of them.
// In round r the CTAs take tile ids [r G, (r + 1) G), CTA c the id
// persistent_tile_id(r, c, G): c in even rounds, G - 1 - c in odd ones, until
// get() returns an invalid tile. Tile ids run from the costliest tiles down
// (below), so within a round CTA 0 would always get the costliest tile and
// CTA G - 1 the cheapest; alternating the direction cancels that drift. (With
// plain c + r G the last CTA of a causal launch at D = 128 / 256, S >= 4k
// finished at 1 / 0.94 .. 1 / 0.89 of the ideal time: docs/DESIGN.md section 7.)
//
// The producer warpgroup owns the scheduler: its threads evaluate it (a pure
// function of the tile id) and its elected thread hands each tile to the
// consumers through shared memory (fmha_fwd_kernel.cuh,
// TileSlot), followed by the invalid tile that tells them to stop. So
// producer and consumers see the same tile sequence.
//
// Both schedulers have the one interface `TileInfo get(int32_t tile_id)`, and
// a TileInfo says everything a role needs about its tile (lengths, row
// offsets, tensor batch coordinate): no role reads p.seqlen_* or cu_seqlens.
//
// Dense batches: every batch has ceil(Sq / kBlockM) q blocks per head, so
//   tile id -> (bh = id / num_m_blocks, m = id % num_m_blocks)
// with bh -> (batch = bh / H, head = bh % H). Neighbouring tiles share a
// (batch, kv head), so the K/V they stream is shared in L2. With a bottom-right
// window (causal) tiles cost more for larger m: the order is m-major from the
// last q block down (longest first, and every round of the static round-robin
// gets tiles of about the same cost), heads inner.
//
// Ragged batches (docs/DESIGN.md I4): the prep kernel (varlen_prep.cuh) writes the
// sequences in work order (longest first) and the prefix sums of their tile
// counts H * ceil(len_q / kBlockM). A tile id maps to its sequence by binary
// search over the prefix sums (O(log B)), then to (head, m) inside the sequence
// as in the dense order. No ghost tiles: the tile count is the last prefix sum
// (an id at or past it is the stop signal), an empty q sequence owns no tile.
#pragma once

#include <cstddef>
#include <cstdint>

#include "varlen_workspace.cuh"

namespace torch_fmha::kernel {

// Dynamic order (varlen kernels, kDynamicTiles, varlen_workspace.cuh; on since session 28,
// +5-37% on causal batches there): in round 0 CTA c takes tile c, then each CTA claims the next unclaimed id with an
// atomicAdd on a per-launch counter the prep kernel zeroes, so a CTA that finished early
// takes the next tile: greedy longest-first over the same id order. The claim is issued
// one round ahead (producer.cuh, TileIdSource), off the producer's path. Dense causal
// launches were measured with it too (session 27, docs/DESIGN.md section 6): from +1.8%
// (D = 256 2k) to -2.5% (D = 256 4k), mostly slightly slower, though a cost model (tile cost ceil(keys / kBlockN) + 1 blocks, 132 CTAs) puts the
// static order's makespan at 1 / 0.970 of the ideal at causal 2k / 4k and greedy's at
// 1 / 0.992 / 1 / 0.996: they keep the static order.

// Tile id of CTA `cta` (of `grid`) in round `round` (see the top of the file).
// Every id in round r is below every id in round r + 1, so a CTA may stop at its
// first invalid tile.
__host__ __device__ __forceinline__ int32_t persistent_tile_id(int32_t round, int32_t cta,
                                                               int32_t grid) {
  return round * grid + ((round & 1) ? grid - 1 - cta : cta);
}

struct TileInfo {
  int32_t batch;     // sequence index: descales; dense: also the batch coordinate
  int32_t head;      // q head; kv head = head / (H / Hkv)
  int32_t m_block;   // q rows [m_block * kBlockM, (m_block + 1) * kBlockM) of the sequence
  int32_t seqlen_q;  // this sequence's lengths
  int32_t seqlen_k;
  int32_t q_row0;    // row of the sequence's query 0 in q / out / lse (dense: 0)
  int32_t k_row0;    // row of the sequence's key 0 in k / v (dense: 0)
  int32_t tensor_batch;  // batch coordinate in the tensors (dense: batch; varlen: 0)
  int32_t valid;     // 0: no more tiles, the receiver stops
  // Per-tile scalars, filled in by the producer when it publishes the tile
  // (producer.cuh), so the consumers read them from shared memory instead of
  // loading descales from global memory on their critical path.
  float scale_log2;  // softmax_scale * q_descale * k_descale * log2(e); softcap: softcap * log2(e)
  float v_descale;
  float out_mul;     // 1 / out_scale for FP8 output, else 1
  float softcap_mul;  // softcap: softmax_scale * q_descale * k_descale / softcap (softmax.cuh)
  float sink;         // sinks[head]; -inf without sinks

  __host__ __device__ static TileInfo stop() {
    TileInfo t{};
    t.valid = 0;
    return t;
  }
};

// (head, m_block) of the `local`-th tile of a sequence with num_m_blocks q
// blocks per head, in the order described above.
struct HeadBlock {
  int32_t head;
  int32_t m_block;
};

__device__ __forceinline__ HeadBlock head_and_block(int32_t local, int32_t num_heads,
                                                    int32_t num_m_blocks, bool reverse_m) {
  if (reverse_m) {
    // Bottom-right windows: tile cost grows with m. Walk all heads of the last
    // q block first, then the next one down: each round of gridDim.x tiles
    // has nearly equal costs, so the static round-robin stays balanced.
    const int32_t mi = local / num_heads;
    return {local - mi * num_heads, num_m_blocks - 1 - mi};
  }
  const int32_t head = local / num_m_blocks;
  return {head, local - head * num_m_blocks};
}

template <int kBlockM>
struct DenseTileScheduler {
  static constexpr bool kVarlen = false;  // no paged KV, no seqused_k (compiled out)
  int32_t num_m_blocks;  // ceil(Sq / kBlockM)
  int32_t num_heads;     // H
  int32_t num_tiles;     // B * H * num_m_blocks
  int32_t seqlen_q;
  int32_t seqlen_k;
  bool reverse_m;        // longest-first order for bottom-right windows

  __host__ __device__ static DenseTileScheduler make(int32_t batch, int32_t heads, int32_t seqlen_q,
                                                     int32_t seqlen_k, bool reverse_m) {
    DenseTileScheduler s;
    s.num_m_blocks = (seqlen_q + kBlockM - 1) / kBlockM;
    s.num_heads = heads;
    s.num_tiles = batch * heads * s.num_m_blocks;
    s.seqlen_q = seqlen_q;
    s.seqlen_k = seqlen_k;
    s.reverse_m = reverse_m;
    return s;
  }

  // __host__ too: tests/host_checks/check_tile_order.cu checks the order on the host.
  __host__ __device__ __forceinline__ TileInfo get(int32_t tile_id) const {
    if (tile_id >= num_tiles) return TileInfo::stop();
    int32_t bh, mi;
    if (reverse_m) {
      // m-major across all (batch, head): see head_and_block.
      const int32_t num_bh = num_tiles / num_m_blocks;
      mi = tile_id / num_bh;
      bh = tile_id - mi * num_bh;
    } else {
      bh = tile_id / num_m_blocks;
      mi = tile_id - bh * num_m_blocks;
    }
    TileInfo t;
    t.batch = bh / num_heads;
    t.head = bh - t.batch * num_heads;
    t.m_block = reverse_m ? num_m_blocks - 1 - mi : mi;
    t.seqlen_q = seqlen_q;
    t.seqlen_k = seqlen_k;
    t.q_row0 = 0;
    t.k_row0 = 0;
    t.tensor_batch = t.batch;
    t.valid = 1;
    return t;
  }
};

template <int kBlockM>
struct VarlenTileScheduler {
  static constexpr bool kVarlen = true;
  const VarlenSeq* seqs;       // [B], work order (written by the prep kernel)
  const int32_t* tile_prefix;  // [B + 1]
  int32_t num_batches;         // B
  int32_t num_heads;           // H
  bool reverse_m;              // longest-first order for bottom-right windows

  __host__ __device__ static VarlenTileScheduler make(const VarlenWorkspace& ws, int32_t batch,
                                                      int32_t heads, bool reverse_m) {
    return {ws.seqs, ws.tile_prefix, batch, heads, reverse_m};
  }

  __device__ __forceinline__ TileInfo get(int32_t tile_id) const {
    // The workspace was written by the prep kernel earlier on the stream and
    // is read-only here: the non-coherent (__ldg) path is safe.
    if (tile_id >= __ldg(tile_prefix + num_batches)) return TileInfo::stop();
    // Largest i with tile_prefix[i] <= tile_id; it owns at least one tile
    // because tile_prefix[i + 1] > tile_id.
    int32_t lo = 0, hi = num_batches;  // tile_prefix[lo] <= tile_id < tile_prefix[hi]
    while (hi - lo > 1) {
      const int32_t mid = (lo + hi) / 2;
      if (__ldg(tile_prefix + mid) <= tile_id) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    static_assert(offsetof(VarlenSeq, q_offset) == 4 && offsetof(VarlenSeq, k_offset) == 8 &&
                  offsetof(VarlenSeq, len_q) == 12);
    const int4 s0 = __ldg(reinterpret_cast<const int4*>(seqs + lo));  // batch, q_offset, k_offset, len_q
    const int32_t len_k = __ldg(&seqs[lo].len_k);
    const int32_t num_m_blocks = (s0.w + kBlockM - 1) / kBlockM;
    const HeadBlock hb =
        head_and_block(tile_id - __ldg(tile_prefix + lo), num_heads, num_m_blocks, reverse_m);
    TileInfo t;
    t.batch = s0.x;
    t.head = hb.head;
    t.m_block = hb.m_block;
    t.seqlen_q = s0.w;
    t.seqlen_k = len_k;
    t.q_row0 = s0.y;
    t.k_row0 = s0.z;
    t.tensor_batch = 0;
    t.valid = 1;
    return t;
  }
};

}  // namespace torch_fmha::kernel
