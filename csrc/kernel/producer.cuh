// torch_fmha kernel: producer warpgroup (WG0).
//
// One elected thread issues the TMA loads (Q once per tile, K and V per KV
// block into kStages-deep circular buffers, V into the V scratch FIFO; paged
// KV: the lanes of one or two warps, one box each, PagedKvBoxes) and publishes each
// tile to the consumers. All 128 threads then transpose each V tile from the
// scratch FIFO into the V^T buffer (transpose_v.cuh), one block behind the
// loads, so the TMA of block it flies while block it-1 is transposed.
//
// Invariants (docs/DESIGN.md section 5):
//  I1  V scratch FIFO depth == kStages (>= 2, static_assert in kernel_traits),
//      slot i at base + i * kTileKVBytes (VTransposer::run).
//  I2  the transposer waits on / releases the scratch slot captured when the
//      tile was loaded (`pending` below, carried from the load to the
//      transpose), never on an independently advancing read pointer.
//  I3  after reserving the V^T destination slot (wait on vt_empty) all 128
//      producer threads pass NamedBarrier::kProducerSync before any of them
//      transposes or moves on to the next block's barrier phases.
#pragma once

#include "kernel_traits.cuh"
#include "mask.cuh"
#include "pipeline.cuh"
#include "softmax.cuh"
#include "tile_scheduler.cuh"
#include "transpose_v.cuh"

namespace torch_fmha::kernel {

// Paged KV (params.h): k / v are page pools [num_pages, page_size, Hkv, D] and
// the keys of one KV block lie on up to kBlockN / 16 scattered pages. The
// block is loaded as boxes of box_rows(page_size) keys, each inside one page
// (box_rows divides both page_size and kBlockN), through 4D TMA descriptors
// over (D, page_size, Hkv, num_pages) whose box is (kChunk, box_rows, 1, 1)
// (launch: fwd_launch_template.cuh). Every box lands where the dense
// descriptor would have put those rows: box rows start at multiples of 16
// keys, so each box starts on a swizzle atom of SmemLayoutK and the TMA
// swizzle (a function of the smem address) gives the same bytes
// (tests/host_checks/check_paged_boxes.cu checks the offsets).
// Boxes at or past the sequence's key count are not loaded at all (their
// page-table entries are never read: they may be garbage); the stale smem
// rows they leave are keys past the end, masked to -inf (K) and written as
// zeros by the transposer (V), like the unused pool rows of a partial box.
//
// Who issues them: kIssueWarps producer warps, each lane at most one box of one
// head-dim chunk (a "unit"). TMA takes its coordinates in uniform registers, so a
// warp whose lanes hold different page ids issues its boxes one lane after the
// other (a loop of R2UR + UTMALDG per lane in SASS); at 16-key pages that was 32
// boxes per block at D = 256 on one warp while the other three producer warps
// waited for it at the transposer's barrier (Nsight Compute, session 21: 3x the
// issuing warp's time in BAR.SYNC samples, and the consumers waiting on V^T).
// With 2 warps, warp 0 issues K and warp 1 V; with 4, warps 2 / 3 take every
// second unit of K / V (slice 1), so k_full / v_scratch_full then take one
// arrival per slice (fmha_fwd_kernel.cuh), each with its own slice's bytes.
// The knob is the most warps a launch may take; issue_warps picks per page size
// below it, and a launch's slices per tensor reach the issuing warps as a shift
// (slice_shift: 0 or 1), which is a compile-time 0 below the knob's 4.
// Measured in session 21 (one H200, S = 4k, paged / packed non-causal): four warps
// ran 16-key pages at D = 64 / 128 / 256 at 0.985 / 0.954 / 0.862 against two warps'
// 0.959 / 0.950 / 0.792, and 32- / 64-key pages at D = 64 slower (0.954 / 0.963
// against 0.995 / 0.970). A first per-launch build divided by the slice count in
// the issuing warps' per-block path (3 more MUFU.RCP, 13 more spill instructions)
// and ran 64-key pages 4-9% below the two-warp build; the shift replaces that
// division. Measured in session 23 (one H200, S = 4k, two rounds, paged / packed,
// non-causal | causal): page 16 at D = 64 / 128 / 256 0.985 / 0.959 / 0.870 | 0.994 /
// 0.967 / 0.844 against the knob at 2's 0.956 / 0.946 / 0.810 | 0.990 / 0.940 / 0.770,
// page 64 (one round, the same warps in both) paged TF/s within 2%: the release takes up
// to four.
#ifndef TORCH_FMHA_TUNE_PAGED_ISSUE_WARPS
#define TORCH_FMHA_TUNE_PAGED_ISSUE_WARPS 4
#endif
// A leaner paged issue path (session 29, on): a block's box count by a shift (the box is a
// power of two: page sizes are, and so is kMaxBoxRows) instead of an integer division (I2F,
// MUFU.RCP, F2I and ~20 IMAD / ISETP per issuing warp and block, at every head dim); and at
// D = 256 (Traits::kWideSplit, 24 producer registers) each block's page ids loaded in the
// block's own iteration instead of one block ahead, because there the prefetched id was
// spilled right after its load, so the STL waited for the load every block, ahead of the
// issue and of the transposers' barrier (sm_90a, the D = 256 varlen unit: spills 184 / 352
// -> 168 / 328 B, producer loop 433 -> 379 instructions). The same boxes and bytes.
// Measured (one H200, same call, 2 rounds, S = 4k, 4 sequences, paged / packed in one
// process, non-causal | causal, off -> on): 64-key pages D = 64 0.975 -> 0.988 | 1.006 ->
// 1.015, D = 128 0.946 -> 0.963 | 0.964 -> 0.961, D = 256 0.920 -> 0.947 | 0.929 -> 0.932
// (paged TF/s 851 -> 879 | 737 -> 759); 16-key pages D = 64 0.984 -> 0.980 | 0.991 ->
// 0.993, D = 128 0.949 -> 0.980 | 0.964 -> 0.982, D = 256 0.886 -> 0.895 | 0.869 -> 0.923
// (816 -> 858 | 706 -> 744).
#ifndef TORCH_FMHA_TUNE_PAGED_LEAN_ISSUE
#define TORCH_FMHA_TUNE_PAGED_LEAN_ISSUE 1
#endif
template <class Traits>
struct PagedKvBoxes {
  static constexpr int kBlockN = Traits::kBlockN;
  static constexpr int kHeadDim = Traits::kHeadDim;
  // Head-dim bytes per TMA box: the K layout's swizzle width (64 B at D = 64,
  // 128 B otherwise), the most one swizzled TMA box may span.
  static constexpr int kChunk = 16 << decltype(get_swizzle_portion(typename Traits::SmemLayoutK{}))::num_bits;
  static constexpr int kChunks = kHeadDim / kChunk;
  static_assert(kChunk * kChunks == kHeadDim);
  static constexpr int kMinPage = 16;
  static constexpr int kMaxBoxes = kBlockN / kMinPage;
  static_assert(kMaxBoxes * kChunks <= 32, "one unit (box, chunk) per lane of a warp");
  static constexpr int kIssueWarps = TORCH_FMHA_TUNE_PAGED_ISSUE_WARPS;
  static_assert(kIssueWarps == 1 || kIssueWarps == 2 || kIssueWarps == 4,
                "the most issuing warps: 1 (K and V), 2 (a warp per tensor), 4 (two per tensor)");
  // log2 of a launch's warps per tensor ("slices"): 1 with four issuing warps, else 0.
  __host__ __device__ static constexpr int slice_shift(int issue_warps) {
    return kIssueWarps == 4 && issue_warps == 4 ? 1 : 0;
  }
  // Units u = box * kChunks + chunk of a block; slice s of 1 << shift issues units
  // s, s + (1 << shift), ... (lane j the unit s + (j << shift)).
  __host__ __device__ static constexpr int lane_unit(int slice, int lane, int shift) {
    return slice + (lane << shift);
  }
  __host__ __device__ static constexpr int slice_units(int units, int slice, int shift) {
    return units > slice ? (units - slice + (1 << shift) - 1) >> shift : 0;
  }
  // What issuing warp `warp` of a launch's `warps` loads: warp 0 K, warp 1 V, warps 2 / 3
  // their second slices; one warp both when the launch has one. Each tensor thus gets
  // 1 << slice_shift(warps) slices, the arrival count of its full barrier
  // (fmha_fwd_kernel.cuh); tests/host_checks/check_paged_boxes.cu checks the two agree.
  struct IssueRole {
    bool k, v;
    int slice;
  };
  __host__ __device__ static constexpr IssueRole issue_role(int warp, int warps) {
    return {warps == 1 || (warp & 1) == 0, warps == 1 || (warp & 1) == 1, warp >> 1};
  }
  // Issuing warps for a page size (the launch's choice, params.page_issue_warps), at most
  // the knob's: four when a block has more than 8 units per tensor (16-key pages); two
  // above 4 units, or at D = 256, whose V transpose is close to the block period (DESIGN
  // section 7), so issue time on a transposing warp delays it; one otherwise. An issuing
  // warp takes issue slots from the consumers on its SM sub-partition (waits, page ids):
  // D = 64 at 64-key pages (4 units per tensor) ran at 0.94 of packed with two warps,
  // 1.02 with one, causal (session 21).
  __host__ __device__ static int issue_warps(int page_size) {
    const int units = kBlockN / box_rows(page_size) * kChunks;
    const int warps = units > 8 ? 4 : units > 4 || kHeadDim == 256 ? 2 : 1;
    return warps < kIssueWarps ? warps : kIssueWarps;
  }
  // Largest power of two dividing kBlockN (192: 64, 128: 128, 256: 256).
  static constexpr int kMaxBoxRows = kBlockN & -kBlockN;

  __host__ __device__ static int box_rows(int page_size) {
    return page_size < kMaxBoxRows ? page_size : kMaxBoxRows;
  }
  // Byte offset, within a K / V-scratch stage, of the box whose first key row
  // is row0 (a multiple of 8) and whose head-dim chunk is `chunk`: SmemLayoutK
  // stacks the rows of one chunk (kChunk bytes each), then the next chunk
  // (tests/host_checks/check_paged_boxes.cu checks this against the layout).
  __host__ __device__ static constexpr int smem_offset(int row0, int chunk) {
    return (chunk * kBlockN + row0) * kChunk;
  }

#if defined(__CUDA_ARCH__)
  // Run by the 32 lanes of an issuing warp together. The lane loads the page id
  // of its unit's box in the block starting at key n0 if that box holds a key
  // below seqlen_k (0 otherwise: the table entry is never read). One register
  // per lane; producer_run loads a block's ids one block ahead (at D = 256 in the block's
  // own iteration: TORCH_FMHA_TUNE_PAGED_LEAN_ISSUE).
  __device__ __forceinline__ static int32_t lane_page_id(const FwdParams& p, int box, int batch,
                                                         int n0, int seqlen_k, int slice, int shift,
                                                         int lane) {
    const int j = lane_unit(slice, lane, shift) / kChunks;  // the lane's box
    const int key0 = n0 + j * box;
    if (j * box >= kBlockN || key0 >= seqlen_k) return 0;
    const int32_t* row = p.page_table + int64_t(batch) * p.page_table_batch_stride;
    return __ldg(row + (key0 >> (__ffs(p.page_size) - 1)));
  }

  // Loads slice `slice` of K or V rows [n0, n0 + kBlockN) ∩ [0, seqlen_k)
  // (rounded up to whole boxes) of kv head hkv into one stage, arriving on `bar`
  // with exactly the slice's bytes. All 32 lanes of the issuing warp (page_id:
  // lane_page_id's): lane 0 arrives with the byte count, then each lane with a
  // unit issues its box with its own page id.
  __device__ __forceinline__ static void load(const void* desc, uint64_t* bar, uint8_t* stage,
                                              int32_t page_id, int box, int page_size, int n0,
                                              int seqlen_k, int hkv, int slice, int shift,
                                              int lane) {
    const int live = min(seqlen_k - n0, kBlockN);  // > 0: the block is in the tile's range
    const int boxes = TORCH_FMHA_TUNE_PAGED_LEAN_ISSUE ? (live + box - 1) >> (__ffs(box) - 1)  // box: 2^k
                                                      : (live + box - 1) / box;
    const int units = slice_units(boxes * kChunks, slice, shift);
    if (lane == 0) mbar_arrive_expect_tx(bar, units * box * kChunk);  // 0 bytes: a plain arrival
    __syncwarp();
    if (lane < units) {
      const int u = lane_unit(slice, lane, shift), j = u / kChunks, c = u % kChunks;
      const int row_in_page = (n0 + j * box) & (page_size - 1);
      SM90_TMA_LOAD_4D::copy(desc, bar, static_cast<uint64_t>(TMA::CacheHintSm90::EVICT_NORMAL),
                             stage + smem_offset(j * box, c), c * kChunk, row_in_page, hkv, page_id);
    }
  }
#endif
};

// Where the producer warpgroup's threads get their tile ids (tile_scheduler.cuh): the static
// order, or with a tile counter (kDynamicTiles) ids claimed one round ahead by the elected
// thread and handed to all 128 producer threads through shared memory (ids[2], written in
// round r to slot r & 1 before the round's barrier and read after it; the slot is written
// again two rounds later, after every thread has passed the barrier that follows its read).
// kDynamic: compiled in (varlen kernels with kDynamicTiles); the order is still static where
// the launch passes no counter.
template <bool kDynamic>
struct TileIdSource {
  int32_t* counter;  // nullptr: static order
  int32_t* ids;      // [2] in shared memory
  int32_t claimed = 0;  // the elected thread's claim for the next round (in flight)

  __device__ __forceinline__ int32_t next(int round, bool elected) {
    if (!kDynamic || counter == nullptr) return persistent_tile_id(round, blockIdx.x, gridDim.x);
    int32_t id = blockIdx.x;
    if (round > 0) {
      if (elected) ids[round & 1] = claimed;
      __syncwarp();
      named_barrier_sync(NamedBarrier::kProducerTileId, 128);
      id = ids[round & 1];
    }
    if (elected) claimed = atomicAdd(counter, 1) + static_cast<int32_t>(gridDim.x);
    return id;
  }
};

// kSplit: the instantiation that runs split tails (tile_scheduler.cuh).
template <class Traits, bool kSplit, class Params, class Storage>
__device__ __forceinline__ void producer_run(const Params& params, Storage& ss) {
  using namespace cute;
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM;
  constexpr int kBlockN = Traits::kBlockN;
  constexpr int kHeadDim = Traits::kHeadDim;
  constexpr int kStages = Traits::kStages;

  const int ptid = threadIdx.x;  // 0..127, the producer warpgroup is WG0
  const bool elected = ptid == 0;
  const FwdParams& p = params.fwd;

  // TMA coordinate tensors: (rows, d, head, batch); varlen: all sequences are
  // rows of one batch, a tile's sequence starts at row tile.q_row0 / k_row0.
  Tensor mQ = params.tma_q.get_tma_tensor(
      make_shape(params.rows_q_tma, kHeadDim, p.heads_q, params.batch_tma));
  Tensor mK = params.tma_k.get_tma_tensor(
      make_shape(params.rows_k_tma, kHeadDim, p.heads_kv, params.batch_tma));
  // kPackedVt: V as (d, keys, head, batch), loaded as V^T blocks.
  Tensor mV = params.tma_v.get_tma_tensor(
      Traits::kPackedV
          ? make_shape(int32_t(kHeadDim), params.rows_k_tma, p.heads_kv, params.batch_tma)
          : make_shape(params.rows_k_tma, int32_t(kHeadDim), p.heads_kv, params.batch_tma));

  Tensor sQ = make_tensor(make_smem_ptr(reinterpret_cast<Element*>(ss.q)),
                          typename Traits::SmemLayoutQStages{});   // (M, D, kQStages)
  Tensor sK = make_tensor(make_smem_ptr(reinterpret_cast<Element*>(ss.k)),
                          typename Traits::SmemLayoutK{});         // (N, D, kStages)
  Tensor sVs = make_tensor(make_smem_ptr(reinterpret_cast<Element*>(ss.v_scratch)),
                           typename Traits::SmemLayoutVScratch{});  // (N, D, kStages)
  Tensor sVt = make_tensor(make_smem_ptr(reinterpret_cast<Element*>(ss.vt)),
                           typename Traits::SmemLayoutVt{});        // (D, N, kStages)

  PipelineState<kStages> kv_load;  // next K / V-scratch slot to fill
  PipelineState<2> tile_slot;      // next TileSlot to publish
  PipelineState<Traits::kQStages> q_load;  // next Q buffer to fill

  // The transpose of one V block: waits on the scratch slot the block was
  // loaded into (I2), reserves the same-index V^T stage, syncs (I3).
  // valid_rows: keys of the block inside the sequence (the rest become zeros).
  auto transpose_block = [&](PipelineState<kStages> slot, int valid_rows, int tile_id) {
    mbar_wait(&ss.bar.v_scratch_full[slot.index], slot.phase,
              {MbarId::kVScratchFull, slot.index, tile_id, Role::kTransposer});
    mbar_wait(&ss.bar.vt_empty[slot.index], slot.phase ^ 1u,
              {MbarId::kVtEmpty, slot.index, tile_id, Role::kTransposer});
    // Warp 0 arrives here diverged: lane 0 issued the TMA loads (paged: the
    // lanes below the block's box count, in each issuing warp) while the other
    // lanes came straight here. Named-barrier arrivals are counted per warp, so
    // two partial arrivals of one warp count as two warps: the barrier then
    // completes a warp early and the next block's barrier a generation off.
    // That was the head_dim 64 deadlock (cuda-gdb: warp 0's lane 0 and lanes
    // 1..31 in different barrier generations, warps 1..3 a block ahead waiting
    // for a V load lane 0 never got to issue). Reconverge the warp first.
    __syncwarp();
    named_barrier_sync(NamedBarrier::kProducerSync, 128);  // I3
    VTransposer<Traits>::run(ss.v_scratch, ss.vt, slot.index, valid_rows, ptid);
    fence_view_async_shared();  // st.shared -> wgmma (async proxy) reads of V^T
    mbar_arrive(&ss.bar.vt_full[slot.index]);         // 128 arrivals complete it
    mbar_arrive(&ss.bar.v_scratch_empty[slot.index]);  // 128 arrivals complete it
  };

  using Scheduler = std::remove_cv_t<decltype(params.scheduler)>;
  TileIdSource<kDynamicTiles && Scheduler::kVarlen> tile_ids{params.tile_counter, ss.tile_ids};
  for (int round = 0;; ++round) {
    const int tile_id = tile_ids.next(round, elected);
    TileInfo tile = params.scheduler.template get<kSplit>(tile_id);
    if (elected) {
      if (tile.valid) {  // per-tile scalars, loaded here, off the consumers' critical path
        const int h = tile.head / params.heads_per_kv;
        const ScoreScales sc = score_scales(p.softmax_scale * load_scale(p.q_descale, tile.batch, h) *
                                                load_scale(p.k_descale, tile.batch, h),
                                            p.softcap);
        tile.scale_log2 = sc.scale_log2;
        tile.softcap_mul = sc.softcap_mul;
        // The sink joins a row's denominator once: in the tile's head piece (split tail).
        tile.sink = p.sinks != nullptr && (!kSplit || tile.split != SplitRole::kTailPiece)
                        ? p.sinks[tile.head] : -INFINITY;
        tile.v_descale = load_scale(p.v_descale, tile.batch, h);
        tile.out_mul = p.out_type == ElementType::kFloat8E4M3
                           ? 1.f / load_scale(p.out_scale, tile.batch, h) : 1.f;
      }
      mbar_wait(&ss.bar.tile_empty[tile_slot.index], tile_slot.phase ^ 1u,
                {MbarId::kTileEmpty, tile_slot.index, tile_id, Role::kProducerTma});
      ss.tile[tile_slot.index] = tile;
      mbar_arrive(&ss.bar.tile_full[tile_slot.index]);  // release: the tile write is visible
    }
    tile_slot.advance();
    if (!tile.valid) break;

    const MaskInfo mask{tile.seqlen_q, tile.seqlen_k, p.window_left, p.window_right};
    const KvBlockRange range = tile.piece(mask.template kv_range<kBlockM, kBlockN>(tile.m_block));
    const int num_blocks = range.count();
    if (num_blocks == 0) continue;  // consumers write zeros / -inf, no loads

    const int hkv = tile.head / params.heads_per_kv;
    if (elected) {
      mbar_wait(&ss.bar.q_empty[q_load.index], q_load.phase ^ 1u,
                {MbarId::kQEmpty, q_load.index, tile_id, Role::kProducerTma});
      // Rows past the sequence end belong to the next sequence (or are
      // zero-filled past the tensor); their outputs are never stored.
      Tensor gQ = local_tile(domain_offset(make_coord(tile.q_row0, _0{}),
                                           mQ(_, _, tile.head, tile.tensor_batch)),
                             Shape<Int<kBlockM>, Int<kHeadDim>>{},
                             make_coord(tile.m_block, _0{}));  // (M, D)
      auto [tQgQ, tQsQ] = tma_partition(params.tma_q, _0{}, Layout<_1>{}, group_modes<0, 2>(sQ),
                                        group_modes<0, 2>(gQ));  // (TMA), (TMA, kQStages)
      mbar_arrive_expect_tx(&ss.bar.q_full[q_load.index], Traits::kTileQBytes);
      copy(params.tma_q.with(ss.bar.q_full[q_load.index]), tQgQ, tQsQ(_, q_load.index));
    }
    q_load.advance();

    // Keys past the sequence end are masked to -inf by the consumers and the
    // matching V rows are written as zeros by the transposer: whatever those
    // rows hold (the next sequence, NaN) cannot reach the output.
    Tensor gK = local_tile(domain_offset(make_coord(tile.k_row0, _0{}),
                                         mK(_, _, hkv, tile.tensor_batch)),
                           Shape<Int<kBlockN>, Int<kHeadDim>>{},
                           make_coord(_, _0{}));  // (N, D, n_blocks)
    auto [tKgK, tKsK] = tma_partition(params.tma_k, _0{}, Layout<_1>{}, group_modes<0, 2>(sK),
                                      group_modes<0, 2>(gK));  // (TMA, n_blocks), (TMA, kStages)
    // V blocks: row-major into the scratch FIFO, or (kPackedVt) V^T
    // blocks straight into the V^T stages.
    auto [tVgV, tVsV] = [&] {
      if constexpr (Traits::kPackedV) {
        Tensor gVt = local_tile(domain_offset(make_coord(_0{}, tile.k_row0),
                                              mV(_, _, hkv, tile.tensor_batch)),
                                Shape<Int<kHeadDim>, Int<kBlockN>>{},
                                make_coord(_0{}, _));  // (D, N, n_blocks)
        return tma_partition(params.tma_v, _0{}, Layout<_1>{}, group_modes<0, 2>(sVt),
                             group_modes<0, 2>(gVt));
      } else {
        Tensor gV = local_tile(domain_offset(make_coord(tile.k_row0, _0{}),
                                             mV(_, _, hkv, tile.tensor_batch)),
                               Shape<Int<kBlockN>, Int<kHeadDim>>{},
                               make_coord(_, _0{}));  // (N, D, n_blocks)
        return tma_partition(params.tma_v, _0{}, Layout<_1>{}, group_modes<0, 2>(sVs),
                             group_modes<0, 2>(gV));
      }
    }();

    // KV blocks are walked from the last one down (the masked ones first).
    using Paged = PagedKvBoxes<Traits>;
    // Varlen only (the op refuses it dense): compiled out of the dense kernel.
    const bool paged = decltype(params.scheduler)::kVarlen && p.page_table != nullptr;
    PipelineState<kStages> pending;  // scratch slot of the block loaded last iteration (I2)
    // Paged: the launch's issuing warps (PagedKvBoxes::issue_role: warp 0 K, warp 1 V,
    // warps 2 / 3 their second slices; one warp both when the launch has one). A lane's
    // page id is loaded one block ahead so the page-table read does not stall the warp
    // that issues the boxes and then joins the transposer (not at D = 256, whose 24
    // registers spilled the id right after its load: TORCH_FMHA_TUNE_PAGED_LEAN_ISSUE).
    const int issue_warp = ptid / 32;
    const bool issues = paged && issue_warp < params.page_issue_warps;
    const typename Paged::IssueRole role = Paged::issue_role(issue_warp, params.page_issue_warps);
    const int slice = role.slice;
    const int shift = Paged::slice_shift(params.page_issue_warps);  // 0 below the knob's 4
    const bool issues_k = role.k;
    const bool issues_v = role.v;
    const int lane = ptid % 32;
    // The page ids of a block: loaded one block ahead, or in the block's own iteration
    // (TORCH_FMHA_TUNE_PAGED_LEAN_ISSUE at D = 256, above).
    constexpr bool kIdsAhead = !(TORCH_FMHA_TUNE_PAGED_LEAN_ISSUE && Traits::kWideSplit);
    int32_t page_id = 0;
    if (kIdsAhead && issues) {
      page_id = Paged::lane_page_id(p, params.page_box_rows, tile.batch, (range.end - 1) * kBlockN,
                                    tile.seqlen_k, slice, shift, lane);
    }
    for (int it = 0; it < num_blocks; ++it) {
      const int n_block = range.end - 1 - it;
      if (issues) {
        const int n0 = n_block * kBlockN;
        const int box = params.page_box_rows;
        if constexpr (!kIdsAhead) {
          page_id = Paged::lane_page_id(p, box, tile.batch, n0, tile.seqlen_k, slice, shift, lane);
        }
        const int32_t next_page_id =
            kIdsAhead && it + 1 < num_blocks
                ? Paged::lane_page_id(p, box, tile.batch, n0 - kBlockN, tile.seqlen_k, slice, shift,
                                      lane)
                : 0;
        if (issues_k) {
          mbar_wait(&ss.bar.k_empty[kv_load.index], kv_load.phase ^ 1u,
                    {MbarId::kKEmpty, kv_load.index, tile_id, Role::kProducerTma});
          Paged::load(&params.paged_k, &ss.bar.k_full[kv_load.index],
                      ss.k + kv_load.index * Traits::kTileKVBytes, page_id, box, p.page_size, n0,
                      tile.seqlen_k, hkv, slice, shift, lane);
        }
        if (issues_v) {
          mbar_wait(&ss.bar.v_scratch_empty[kv_load.index], kv_load.phase ^ 1u,
                    {MbarId::kVScratchEmpty, kv_load.index, tile_id, Role::kProducerTma});
          Paged::load(&params.paged_v, &ss.bar.v_scratch_full[kv_load.index],
                      ss.v_scratch + kv_load.index * Traits::kTileKVBytes, page_id, box,
                      p.page_size, n0, tile.seqlen_k, hkv, slice, shift, lane);
        }
        page_id = next_page_id;
      } else if (!paged && elected) {
        mbar_wait(&ss.bar.k_empty[kv_load.index], kv_load.phase ^ 1u,
                  {MbarId::kKEmpty, kv_load.index, tile_id, Role::kProducerTma});
        const bool lose_this_load = kDebugHang && params.debug_lose_first_k_load != 0 &&
                                    round == 0 && it == 0;
        if (!lose_this_load) {  // always taken outside the debug build's test hook
          mbar_arrive_expect_tx(&ss.bar.k_full[kv_load.index], Traits::kTileKVBytes);
          copy(params.tma_k.with(ss.bar.k_full[kv_load.index]), tKgK(_, n_block),
               tKsK(_, kv_load.index));
        }
        if constexpr (Traits::kPackedV) {
          // Keys past seqlen_k are outside the dense tensor: TMA fills them
          // with zeros, as the transposer would have written them.
          mbar_wait(&ss.bar.vt_empty[kv_load.index], kv_load.phase ^ 1u,
                    {MbarId::kVtEmpty, kv_load.index, tile_id, Role::kProducerTma});
          mbar_arrive_expect_tx(&ss.bar.vt_full[kv_load.index], Traits::kTileKVBytes);
          copy(params.tma_v.with(ss.bar.vt_full[kv_load.index]), tVgV(_, n_block),
               tVsV(_, kv_load.index));
        } else {
          mbar_wait(&ss.bar.v_scratch_empty[kv_load.index], kv_load.phase ^ 1u,
                    {MbarId::kVScratchEmpty, kv_load.index, tile_id, Role::kProducerTma});
          mbar_arrive_expect_tx(&ss.bar.v_scratch_full[kv_load.index], Traits::kTileKVBytes);
          copy(params.tma_v.with(ss.bar.v_scratch_full[kv_load.index]), tVgV(_, n_block),
               tVsV(_, kv_load.index));
        }
      }
      if constexpr (!Traits::kPackedV) {
        if (it > 0) transpose_block(pending, tile.seqlen_k - (n_block + 1) * kBlockN, tile_id);
      }
      pending = kv_load;
      kv_load.advance();
    }
    if constexpr (!Traits::kPackedV) {
      transpose_block(pending, tile.seqlen_k - range.begin * kBlockN, tile_id);
    }
  }
}

}  // namespace torch_fmha::kernel
