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
// Both schedulers have the one interface `TileInfo get<kSplit>(int32_t tile_id)` (kSplit:
// the split tail's kernel, dense only, below), and
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
// Split tail (dense launches whose tiles all cost the same: no causal mask, no window;
// split_tail_min_blocks, below): when the tile count is not a multiple of the grid, the last round
// would leave CTAs idle (2048 tiles on 132 CTAs: 15 full rounds and one of 68 tiles). The
// last two rounds' tiles then run as pieces: their KV-block iterations are cut into one
// contiguous, equal share per CTA (stream-K), so a tile may be cut in two. The CTA that
// runs a tile's tail piece (the lower KV blocks) does it first in its share, the CTA with
// the head piece does it last. Each piece leaves its normalized partial O and its LSE in its
// side of a workspace slot and counts in on the slot's flag; the second to count in merges
// the two and stores the tile (epilogue.cuh, exchange_split_partial). Nobody waits.
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

#include "mask.cuh"
#include "varlen_workspace.cuh"

namespace torch_fmha::kernel {

// Dynamic order (varlen kernels, kDynamicTiles, varlen_workspace.cuh; on since session 28,
// +5-40% TF/s on causal batches there): in round 0 CTA c takes tile c, then each CTA
// claims the next unclaimed id with an atomicAdd on a per-launch counter the prep kernel zeroes, so a CTA that finished early
// takes the next tile: greedy longest-first over the same id order. The claim is issued
// one round ahead (producer.cuh, TileIdSource), off the producer's path. Dense causal
// launches were measured with it too (session 27, docs/DESIGN.md section 6): from +1.8%
// (D = 256 2k) to -2.5% (D = 256 4k), mostly slightly slower, though a cost model (tile
// cost ceil(keys / kBlockN) + 1 blocks, 132 CTAs) puts the static order's makespan at 1 / 0.970 of the ideal at causal 2k / 4k and greedy's at
// 1 / 0.992 / 1 / 0.996: they keep the static order.

// Tile id of CTA `cta` (of `grid`) in round `round` (see the top of the file).
// Every id in round r is below every id in round r + 1, so a CTA may stop at its
// first invalid tile.
__host__ __device__ __forceinline__ int32_t persistent_tile_id(int32_t round, int32_t cta,
                                                               int32_t grid) {
  return round * grid + ((round & 1) ? grid - 1 - cta : cta);
}

// The split tail (top of the file) in dense launches of equal tiles with at least this many
// KV blocks per tile, per head dim (0: never). Each cut tile costs a second Q load and
// first-block round, two 34 KB (D = 64) / 66 KB (D = 128) partials written, both read back
// and merged, and the two pieces end without the tile-boundary overlap (consumer.cuh), so a
// tile of few blocks gains less than its cut costs. The split runs in a kernel instantiation
// of its own (KernelVariant::kSplitTail, below); the other launches run kernels without it.
// Measured (session 29, one H200, same call, 2 rounds, FP8 out, B * S = 16k, H * D = 2048;
// docs/DESIGN.md section 7), TF/s, S = 1k / 2k / 4k / 8k / 16k:
//   D = 64 non-causal:  495 540 565 586 597 -> min 8: 494 555 586 604 617 (1k: 4 blocks, no
//                       split); causal (never split) within 0.6%: on at 8;
//   D = 128 non-causal: 718 811 861 889 897 -> min 8: 702 793 856 892 907 (-2.2% at 1k / 2k,
//                       +1.0% at 16k).
// Session 30 (same kind of call, S = 1k .. 16k): D = 128 non-causal 719 826 879 907 916 ->
// min 8: 701 806 879 917 927, and with the split kernel but no plan
// (TORCH_FMHA_TUNE_SPLIT_KERNEL_WITHOUT_PLAN) 723 820 875 905 908: the split kernel's own code
// costs under 1%; the cut itself loses on tiles of 8 blocks, breaks even at 16, is about even
// at 32 (8k: +0.4 / +1.1 / -0.3% in sessions 29 / 30 / 30) and gains at 64 (16k: +1.0 / +1.2 /
// +2.4%). So D = 128 split from 32 blocks (8k keys in the packed-v build's 256-key blocks, 6k
// in 192-key ones). Session 32 gave the long D = 128 builds the fp8 group stores (a cheaper
// tile epilogue); with them a packed v splits from 16 blocks (below). The short-key build
// (at most 16 blocks without a mask; masked launches never split) has no split kernel
// (fwd_launch_template.cuh).
// D = 256 is not offered: its consumer has no registers to spare (with the merge compiled
// in, ptxas spilled 350 words there in sm_90a SASS, none in the steady loop).
#ifndef TORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_64
#define TORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_64 8
#endif
#ifndef TORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_128
#define TORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_128 32
#endif
// D = 128 with a packed v (256-key blocks) alone: from 16 blocks (4096 keys) since session 32,
// the layout it was measured with. Session 32 (one H200, same call, 2 rounds, non-causal
// D = 128, fp8 output in groups, with the peek), TF/s at 4k: 894 / 896 -> 901 / 907 (+1.0%);
// from 8 blocks 2k lost (864 / 854 -> 840 / 843) and 4k gained less (902 / 899). Session 33's
// A/B without the peek read 4k 883 / 881 (with / without), so the threshold stands without it.
// The standard v keeps 32 (its 192-key blocks: 3k keys at 16, not timed).
#ifndef TORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_PACKED_128
#define TORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_PACKED_128 16
#endif
// A developer knob for an A/B: 1 runs every dense launch of a head dim's builds with a split
// tail (above; not D = 128's short-key build) in the split kernel (kSplitTail) with no plan, so
// all its tiles whole. It measures what the split kernel's own code costs apart from what the
// split does; the split kernel runs every tile of a launch whose plan is active. At D = 128
// the packed-v build's split producer spilled 71 instructions' worth against 22 with 64-bit
// piece arithmetic, 45 since session 30 (the standard-v build's 53 -> 42 against 28); its
// steady loop is scheduled differently, same length. Measured in session 30: under 1% (above).
// (test_split_tail_kernel_choice fails under it by design: causal launches take that kernel,
// except in a build with the masked-tiles kernel, which its causal launches run instead.)
#ifndef TORCH_FMHA_TUNE_SPLIT_KERNEL_WITHOUT_PLAN
#define TORCH_FMHA_TUNE_SPLIT_KERNEL_WITHOUT_PLAN 0
#endif
__host__ __device__ constexpr int split_tail_min_blocks(int head_dim, bool packed_v) {
  return head_dim == 64    ? TORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_64
         : head_dim == 128 ? (packed_v ? TORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_PACKED_128
                                       : TORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_128)
                           : 0;
}

// The narrowest KV block of a build that may split at `head_dim` (kernel_traits.cuh; D = 128's
// short-key build never splits). The op sizes the split tail's workspace with it before it
// knows which build runs (fwd_workspace_bytes, with SplitTail::wanted): more blocks than any
// build has, so a launch that splits has its slots; fwd_launch_template.cuh checks the builds
// against it (an experiment with narrower blocks must turn its head dim's split off; the
// assert's message says how).
__host__ __device__ constexpr int split_tail_narrowest_block(int head_dim) {
  return head_dim == 64 ? 256 : head_dim == 128 ? 192 : 64;
}

// The kernel instantiations of a dense build; fwd_launch_template.cuh picks one per launch.
//   kWholeTiles:  every launch the other two do not take (and all varlen launches);
//   kSplitTail:   launches whose split tail (above) is active; the pieces' code lives only here;
//   kMaskedTiles: causal and windowed launches of the builds with Traits::kHalfFirstBlock
//                 (consumer.cuh, first_block_softmax): the halved first-block softmax lives only
//                 here, since with it in the kernel ptxas schedules the steady KV loop differently
//                 (docs/DESIGN.md section 7), and non-causal launches never meet a half-hidden block.
// A masked launch never splits (only tiles of equal cost do), so the two never combine.
enum class KernelVariant : int32_t { kWholeTiles = 0, kSplitTail = 1, kMaskedTiles = 2 };

// What a tile (or piece) does with its result.
enum class SplitRole : int32_t {
  kWhole = 0,      // the whole tile: the epilogue stores it
  kTailPiece = 1,  // the tile's lower KV blocks, first in its CTA's share (slot split_slot)
  kHeadPiece = 2,  // the tile's upper KV blocks, last in its CTA's share; carries the sink
};

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
  float sink;         // sinks[head]; -inf without sinks (and for a split tile's tail piece)
  // The piece of the tile's KV walk this TileInfo covers (split tail): walk iterations
  // [it_begin, it_end) of the tile's KV range, whose blocks are walked from the last down;
  // a whole tile is [0, kWholeWalk).
  int32_t it_begin;
  int32_t it_end;
  SplitRole split;
  int32_t split_slot;  // workspace slot of the partial (SplitRole != kWhole)

  static constexpr int32_t kWholeWalk = INT32_MAX;

  __host__ __device__ static TileInfo stop() {
    TileInfo t{};
    t.valid = 0;
    return t;
  }

  // The blocks of the tile's KV range `r` this piece visits.
  __host__ __device__ KvBlockRange piece(KvBlockRange r) const {
    const int32_t lo = r.end - it_end;  // no overflow: r.end >= 0
    return {lo > r.begin ? lo : r.begin, r.end - it_begin};
  }
  __host__ __device__ void set_whole() {
    it_begin = 0;
    it_end = kWholeWalk;
    split = SplitRole::kWhole;
    split_slot = 0;
  }
};

// The split tail's plan (top of the file): tiles [first_tile, num_tiles) run as pieces of
// kv_blocks-iteration tiles on `grid` CTAs. first_tile = num_tiles: no split. The tail has
// grid + (num_tiles mod grid) tiles, so each CTA's share is at least one tile's iterations
// and a tile is cut at most once.
struct SplitTail {
  int32_t first_tile;
  int32_t kv_blocks;  // 0: no split
  int32_t grid;

  __host__ __device__ static SplitTail none(int32_t num_tiles) { return {num_tiles, 0, 1}; }
  // Whether the launch shape asks for a split, before plan()'s 32-bit bound: monotone in
  // kv_blocks, so the op's workspace sizing (fwd_workspace_bytes) may count blocks of any width
  // up to the build's and still cover every launch that splits.
  __host__ __device__ static bool wanted(int32_t num_tiles, int32_t grid, int32_t kv_blocks,
                                         int32_t min_blocks) {
    return min_blocks > 0 && grid > 0 && kv_blocks >= min_blocks && kv_blocks >= 2 &&
           num_tiles / grid >= 1 && num_tiles % grid != 0;
  }
  __host__ __device__ static SplitTail plan(int32_t num_tiles, int32_t grid, int32_t kv_blocks,
                                            int32_t min_blocks) {
    if (!wanted(num_tiles, grid, kv_blocks, min_blocks)) return none(num_tiles);
    // piece() computes in 32 bits (64-bit divisions spilled in the 24-register producer: the
    // knob above); its largest product is below 2 grid^2 kv_blocks. So no split past that: about 61k blocks per tile on
    // 132 CTAs (11.8M keys in 192-key blocks), where a cut's few percent of one round are
    // nothing next to the tile.
    if (int64_t(2) * grid * grid * kv_blocks > INT32_MAX) return none(num_tiles);
    return {(num_tiles / grid - 1) * grid, kv_blocks, grid};
  }
  __host__ __device__ bool active() const { return kv_blocks > 0; }

  struct Piece {
    int32_t tile;  // tile id (below num_tiles); -1: this CTA has no such piece
    int32_t it_begin, it_end;
    SplitRole split;
    int32_t slot;
  };
  // Piece j (0, 1, 2) of CTA `cta`'s share, in the order the CTA runs them.
  __host__ __device__ Piece piece(int32_t num_tiles, int32_t cta, int32_t j) const {
    // No overflow: the tail has fewer than 2 grid tiles, and plan() bounds 2 grid^2 kv_blocks.
    const int32_t nb = kv_blocks;
    const int32_t total = (num_tiles - first_tile) * nb;
    const int32_t s = total * cta / grid, e = total * (cta + 1) / grid;  // the share
    const int32_t t = s / nb + j;  // tail tile
    if (t * nb >= e) return {-1, 0, 0, SplitRole::kWhole, 0};
    const int32_t ka = s > t * nb ? s - t * nb : 0;
    const int32_t kb = e < (t + 1) * nb ? e - t * nb : nb;
    Piece pc{first_tile + t, ka, kb, SplitRole::kWhole, 0};
    if (ka > 0) {  // the tile's tail, this CTA's first piece: CTA cta - 1 runs its head
      pc.split = SplitRole::kTailPiece;
      pc.slot = cta;
    } else if (kb < nb) {  // the tile's head, this CTA's last piece: CTA cta + 1 runs its tail
      pc.split = SplitRole::kHeadPiece;
      pc.slot = cta + 1;
    }
    return pc;
  }
};

// Workspace of the split tail: per slot (one per CTA) two sides, the head piece's partial
// then the tail piece's, each the partial O of both consumer warpgroups in the threads'
// register order, then their LSEs; then one flag per slot and warpgroup (epilogue.cuh). The
// flags must be zero at launch (the launch clears them).
struct SplitTailBuffers {
  float* partials;
  int32_t* flags;  // [grid][2]

  __host__ __device__ static constexpr int64_t side_floats(int head_dim) {
    return 256 * (int64_t(head_dim) / 2 + 2);
  }
  __host__ __device__ static int64_t bytes(int32_t grid, int head_dim) {
    return int64_t(grid) * (2 * side_floats(head_dim) * 4 + 2 * 4);
  }
  __host__ __device__ static SplitTailBuffers carve(void* base, int32_t grid, int head_dim) {
    SplitTailBuffers b;
    b.partials = static_cast<float*>(base);
    b.flags = reinterpret_cast<int32_t*>(b.partials + int64_t(grid) * 2 * side_floats(head_dim));
    return b;
  }
  __host__ __device__ static int64_t flag_bytes(int32_t grid) { return int64_t(grid) * 2 * 4; }
  // The start of side `role` (kHeadPiece or kTailPiece) of slot `slot`.
  __host__ __device__ float* side(int32_t slot, SplitRole role, int head_dim) const {
    return partials + (2 * int64_t(slot) + (role == SplitRole::kHeadPiece ? 0 : 1)) * side_floats(head_dim);
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
  SplitTail tail;        // the split tail's plan (none: first_tile = num_tiles)

  __host__ __device__ static DenseTileScheduler make(int32_t batch, int32_t heads, int32_t seqlen_q,
                                                     int32_t seqlen_k, bool reverse_m) {
    DenseTileScheduler s;
    s.num_m_blocks = (seqlen_q + kBlockM - 1) / kBlockM;
    s.num_heads = heads;
    s.num_tiles = batch * heads * s.num_m_blocks;
    s.seqlen_q = seqlen_q;
    s.seqlen_k = seqlen_k;
    s.reverse_m = reverse_m;
    s.tail = SplitTail::none(s.num_tiles);
    return s;
  }

  // __host__ too: tests/host_checks/check_tile_order.cu checks the order on the host.
  // kSplit: the kernel instantiation that runs split tails (launched only when `tail` is
  // active, fwd_launch_template.cuh, or under TORCH_FMHA_TUNE_SPLIT_KERNEL_WITHOUT_PLAN with
  // no plan: whole tiles); the other one has none of the pieces' code.
  template <bool kSplit = false>
  __host__ __device__ __forceinline__ TileInfo get(int32_t tile_id) const {
    if (kSplit && tail.active() && tile_id >= tail.first_tile) {
      // Round r of CTA c (persistent_tile_id) -> piece r - first_tile / grid of c's share.
      const int32_t round = tile_id / tail.grid;
      const int32_t pos = tile_id - round * tail.grid;
      const int32_t cta = (round & 1) ? tail.grid - 1 - pos : pos;
      const SplitTail::Piece pc = tail.piece(num_tiles, cta, round - tail.first_tile / tail.grid);
      if (pc.tile < 0) return TileInfo::stop();
      TileInfo t = whole_tile(pc.tile);
      t.it_begin = pc.it_begin;
      t.it_end = pc.it_end;
      t.split = pc.split;
      t.split_slot = pc.slot;
      return t;
    }
    if (tile_id >= num_tiles) return TileInfo::stop();
    return whole_tile(tile_id);
  }

  __host__ __device__ __forceinline__ TileInfo whole_tile(int32_t tile_id) const {
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
    t.set_whole();
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

  template <bool kSplit = false>  // never split (the same interface as the dense scheduler)
  __device__ __forceinline__ TileInfo get(int32_t tile_id) const {
    static_assert(!kSplit, "varlen launches have no split tail");
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
    t.set_whole();
    return t;
  }
};

}  // namespace torch_fmha::kernel
