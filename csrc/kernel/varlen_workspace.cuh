// torch_fmha kernel: the varlen work list — what the prep kernel
// (varlen_prep.cuh) derives from cu_seqlens on the device and the varlen tile
// scheduler (tile_scheduler.cuh) reads. Torch-free; the op only needs the byte
// count (fwd_workspace_bytes, launch_fwd.h).
//
// Layout of the int32-aligned device scratch for B sequences:
//   seqs        VarlenSeq[B]   sequences in work order (longest first when sorted)
//   tile_prefix int32[B + 1]   tile_prefix[i] = q tiles of seqs[0 .. i-1];
//                              tile_prefix[B] = total tile count
//   tile_counter int32         with kDynamicTiles only: the next tile id to claim, minus
//                              the grid (producer.cuh, TileIdSource); the prep kernel zeroes it
#pragma once

#include <cstddef>
#include <cstdint>

// Varlen tiles claimed at run time (an atomic counter per launch that the prep kernel zeroes;
// tile_scheduler.cuh, producer.cuh TileIdSource) instead of the static round-robin: on since
// session 28. One H200, same call, 2 rounds each (docs/bench_h200_2026-11-29_s28_ab.json):
// ragged causal (64 sequences of U[1, 4096] keys) D = 128 580 -> 611 TF/s, D = 256 692 -> 775;
// 4 sequences of 4096 keys, causal, packed / paged (64-key pages) D = 64 458 / 459 -> 489 / 487,
// D = 128 572 / 550 -> 677 / 653, D = 256 587 / 527 -> 807 / 738; non-causal within -1.2..+1.6%.
// Equal output digests on and off (tools/bitwise_ab.py, 294 calls). -D..=0 restores the order.
#ifndef TORCH_FMHA_TUNE_DYNAMIC_TILES
#define TORCH_FMHA_TUNE_DYNAMIC_TILES 1
#endif

namespace torch_fmha::kernel {

inline constexpr bool kDynamicTiles = TORCH_FMHA_TUNE_DYNAMIC_TILES != 0;

// One sequence of a ragged batch, lengths already clamped to the tensors
// (a malformed cu_seqlens can give wrong results, never out-of-bounds stores).
// 32 bytes: two 16-byte loads per tile.
struct alignas(16) VarlenSeq {
  int32_t batch;     // index into cu_seqlens and the [B, Hkv] descales
  int32_t q_offset;  // cu_seqlens_q[batch]: first row of the sequence in q / out / lse
  int32_t k_offset;  // cu_seqlens_k[batch]: first row in k / v (paged KV: 0, unused)
  int32_t len_q;
  int32_t len_k;     // keys: seqused_k[batch] when given, else from cu_seqlens_k
  int32_t unused[3];
};
static_assert(sizeof(VarlenSeq) == 32);

struct VarlenWorkspace {
  VarlenSeq* seqs;       // [B]
  int32_t* tile_prefix;  // [B + 1]
  int32_t* tile_counter;  // kDynamicTiles: [1]; nullptr otherwise

  __host__ __device__ static size_t bytes(int32_t batch) {
    return sizeof(VarlenSeq) * size_t(batch) + sizeof(int32_t) * (size_t(batch) + 1 + kDynamicTiles);
  }

  // `base` must be 16-byte aligned (torch allocations are).
  __host__ __device__ static VarlenWorkspace carve(void* base, int32_t batch) {
    VarlenWorkspace w;
    w.seqs = static_cast<VarlenSeq*>(base);
    w.tile_prefix = reinterpret_cast<int32_t*>(w.seqs + batch);
    w.tile_counter = kDynamicTiles ? w.tile_prefix + batch + 1 : nullptr;
    return w;
  }
};

}  // namespace torch_fmha::kernel
