// torch_fmha kernel: static persistent tile scheduler.
//
// The grid has min(num_sms, num_tiles) CTAs; CTA c processes tiles
// c, c + gridDim.x, c + 2 * gridDim.x, ... The producer warpgroup owns the
// scheduler: its threads evaluate it (it is a pure function of the tile id)
// and its elected thread hands each tile to the consumers through shared
// memory (fmha_fwd_kernel.cuh, TileSlot), followed by one invalid tile that
// tells them to stop. So producer and consumers see the same tile sequence.
//
// Dense batches: every batch has ceil(Sq / kBlockM) q blocks per head, so
//   tile id -> (bh = id / num_m_blocks, m = id % num_m_blocks)
// with bh -> (batch = bh / H, head = bh % H). Neighbouring tiles share a
// (batch, kv head), so the K/V they stream is shared in L2. With a bottom-right
// window (causal) tiles cost more for larger m: the order is m-major from the
// last q block down (longest first, and every round of the static round-robin
// gets tiles of about the same cost), heads inner.
//
// Ragged batches (DESIGN.md I4, follow-up): the same interface, with
// tile id -> batch by a binary search over per-batch prefix sums of
// H * ceil(len_q[b] / kBlockM) (computed on the device from cu_seqlens_q),
// then (head, m) inside the batch exactly as above. No ghost tiles: the tile
// count is the last prefix sum, and an empty sequence owns no tile.
#pragma once

#include <cstdint>

namespace torch_fmha::kernel {

struct TileInfo {
  int32_t batch;
  int32_t head;      // q head; kv head = head / (H / Hkv)
  int32_t m_block;   // q rows [m_block * kBlockM, (m_block + 1) * kBlockM)
  int32_t valid;     // 0: no more tiles, the receiver stops
};

template <int kBlockM>
struct DenseTileScheduler {
  int32_t num_m_blocks;  // ceil(Sq / kBlockM)
  int32_t num_heads;     // H
  int32_t num_tiles;     // B * H * num_m_blocks
  bool reverse_m;        // longest-first order for bottom-right windows

  __host__ __device__ static DenseTileScheduler make(int32_t batch, int32_t heads, int32_t seqlen_q,
                                                     bool reverse_m) {
    DenseTileScheduler s;
    s.num_m_blocks = (seqlen_q + kBlockM - 1) / kBlockM;
    s.num_heads = heads;
    s.num_tiles = batch * heads * s.num_m_blocks;
    s.reverse_m = reverse_m;
    return s;
  }

  __device__ __forceinline__ TileInfo get(int32_t tile_id) const {
    TileInfo t;
    if (tile_id >= num_tiles) {
      t.batch = 0;
      t.head = 0;
      t.m_block = 0;
      t.valid = 0;
      return t;
    }
    int32_t bh, mi;
    if (reverse_m) {
      // Bottom-right windows: tile cost grows with m. Walk all (batch, head)
      // of the last q block first, then the next one down: each round of
      // gridDim.x tiles has nearly equal costs, so the static round-robin
      // stays balanced (bh-major order gave CTAs 3x different work).
      const int32_t num_bh = num_tiles / num_m_blocks;
      mi = tile_id / num_bh;
      bh = tile_id - mi * num_bh;
    } else {
      bh = tile_id / num_m_blocks;
      mi = tile_id - bh * num_m_blocks;
    }
    t.batch = bh / num_heads;
    t.head = bh - t.batch * num_heads;
    t.m_block = reverse_m ? num_m_blocks - 1 - mi : mi;
    t.valid = 1;
    return t;
  }
};

}  // namespace torch_fmha::kernel
