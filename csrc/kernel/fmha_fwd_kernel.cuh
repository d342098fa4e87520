// torch_fmha kernel: the SM90 warp-specialized FP8 forward kernel — roles,
// shared storage and the persistent loop entry. The work itself lives in
// producer.cuh (TMA + V transpose), consumer.cuh (GEMMs + softmax) and
// epilogue.cuh; the tile order in tile_scheduler.cuh.
#pragma once

#include <cstdint>
#include <cutlass/arch/reg_reconfig.h>

#include "../params.h"
#include "consumer.cuh"
#include "kernel_traits.cuh"
#include "pipeline.cuh"
#include "producer.cuh"
#include "tile_scheduler.cuh"

namespace torch_fmha::kernel {

// Everything the kernel reads, passed by value as a __grid_constant__ (the TMA
// descriptors must live in parameter / constant space).
// Scheduler: DenseTileScheduler or VarlenTileScheduler (tile_scheduler.cuh);
// the only difference between the dense and the varlen kernel.
template <class Traits, class Scheduler>
struct KernelParams {
  FwdParams fwd;
  typename Traits::TmaQ tma_q;  // over (rows_q_tma, D, H, batch_tma)
  typename Traits::TmaKV tma_k;  // over (rows_k_tma, D, Hkv, batch_tma)
  typename Traits::TmaV tma_v;    // kPackedVt: over (D, rows_k_tma, Hkv, batch_tma)
  // Paged KV (varlen with p.fwd.page_table): K / V pools as
  // (D, page_size, Hkv, num_pages), box (chunk, page_box_rows, 1, 1)
  // (producer.cuh, PagedKvBoxes), instead of tma_k / tma_v; unused otherwise.
  cute::TmaDescriptor paged_k;
  cute::TmaDescriptor paged_v;
  int32_t page_box_rows;
  int32_t page_issue_warps;  // producer warps issuing the boxes (PagedKvBoxes::issue_warps)
  Scheduler scheduler;
  int32_t heads_per_kv;  // H / Hkv
  // TMA tensor extents (never 0): dense (Sq, Sk, B), varlen (Tq, Tk, 1).
  int32_t rows_q_tma;
  int32_t rows_k_tma;
  int32_t batch_tma;
  // Test hook of the bounded-wait debug build (I5), ignored otherwise: the
  // producer leaves out the first K load of its first tile, so the consumers'
  // k_full wait can never complete and must be reported, not hang.
  int32_t debug_lose_first_k_load;
  // Test hook of the debug build, 0 otherwise: a split tile's tail piece waits, at most
  // this many ns, for the head piece to count in first, so that the tail piece merges
  // (epilogue.cuh, exchange_split_partial; tests/gpu/test_debug_hang.py).
  int32_t debug_split_tail_wait_ns;
  // Debug build: host-mapped hang report (hang_report.cuh); null otherwise.
  HangReport* debug_hang_report;
  // kDynamicTiles, varlen: the tile counter the prep kernel zeroed (producer.cuh,
  // TileIdSource); null: the static order (dense launches always).
  int32_t* tile_counter;
  // Dense builds with a split tail (tile_scheduler.cuh): partial O's and flags, in the
  // op's workspace, flags cleared by the launch; unused unless scheduler.tail is active.
  SplitTailBuffers split;
};

template <class Traits>
struct SharedStorage {
  static constexpr int kStages = Traits::kStages;
  // 1024-byte alignment: 128-byte swizzle atoms span 8 rows x 128 bytes.
  alignas(1024) uint8_t q[Traits::kQStages * Traits::kTileQBytes];  // (M, D, kQStages), SmemLayoutQStages
  alignas(1024) uint8_t k[kStages * Traits::kTileKVBytes];       // (N, D, kStages), SmemLayoutK
  alignas(1024) uint8_t vt[kStages * Traits::kTileKVBytes];      // (D, N, kStages), SmemLayoutVt
  // (N, D, kStages) FIFO (I1); a placeholder when TMA lands V^T directly.
  alignas(1024) uint8_t v_scratch[Traits::kVScratchBytes > 0 ? Traits::kVScratchBytes : 16];
  struct Barriers {
    uint64_t q_full[Traits::kQStages];     // TMA tx; 1 arrival (producer)
    uint64_t q_empty[Traits::kQStages];    // 1 arrival per consumer WG
    uint64_t k_full[kStages];              // TMA tx; 1 arrival (paged: 1 per slice)
    uint64_t k_empty[kStages];             // 1 arrival per consumer WG
    uint64_t v_scratch_full[kStages];      // TMA tx; 1 arrival (paged: 1 per slice)
    uint64_t v_scratch_empty[kStages];     // 128 arrivals (all transposer threads)
    uint64_t vt_full[kStages];             // 128 arrivals (all transposer threads)
    uint64_t vt_empty[kStages];            // 1 arrival per consumer WG
    uint64_t tile_full[2];                 // 1 arrival (producer's elected thread)
    uint64_t tile_empty[2];                // 256 arrivals (all consumer threads)
  } bar;
  TileInfo tile[2];                        // tile hand-off ring (producer -> consumers)
  int32_t tile_ids[2];                     // kDynamicTiles: claimed ids (producer.cuh, TileIdSource)
  int32_t split_arrival[2];                // kSplit: per consumer WG (epilogue.cuh, exchange_split_partial)
  // (M, N), SmemLayoutP: P of both consumer warpgroups (Traits::kPFromSmem; one
  // unused byte otherwise, last so that nothing before it moves).
  alignas(Traits::kPBytes > 0 ? 1024 : 1) uint8_t p[Traits::kPBytes > 0 ? Traits::kPBytes : 1];
};

template <class Traits>
constexpr int shared_storage_bytes() {
  return static_cast<int>(sizeof(SharedStorage<Traits>));
}

// H100 / H200: at most 227 KB of shared memory per block.
inline constexpr int kMaxSmemPerBlock = 227 * 1024;

// kVariant (tile_scheduler.cuh, KernelVariant): kSplitTail for launches with an active split
// tail, kMaskedTiles for causal / windowed launches of builds with Traits::kHalfFirstBlock
// (dense only both), so the pieces' code and the halved first block never sit in the kernel
// the other launches run.
template <class Traits, class Scheduler, KernelVariant kVariant = KernelVariant::kWholeTiles>
__global__ void __launch_bounds__(Traits::kNumThreads, 1)
    fmha_fwd_fp8_sm90_kernel(const __grid_constant__ KernelParams<Traits, Scheduler> params) {
  constexpr bool kSplit = kVariant == KernelVariant::kSplitTail;
  static_assert(kVariant == KernelVariant::kWholeTiles || !Scheduler::kVarlen,
                "varlen launches run the kernel of whole tiles");
  static_assert(kVariant != KernelVariant::kMaskedTiles || Traits::kHalfFirstBlock,
                "the masked-tiles kernel differs only by the half first block");
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900)
  static_assert(shared_storage_bytes<Traits>() <= kMaxSmemPerBlock, "shared memory budget");
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  auto& ss = *reinterpret_cast<SharedStorage<Traits>*>(smem_raw);
  constexpr int kStages = Traits::kStages;

  if (threadIdx.x == 0) {
#if TORCH_FMHA_DEBUG_HANG
    g_hang_report = params.debug_hang_report;  // same value from every CTA
#endif
    for (int s = 0; s < Traits::kQStages; ++s) {
      mbar_init(&ss.bar.q_full[s], 1);
      mbar_init(&ss.bar.q_empty[s], Traits::kNumConsumerWG);
    }
    // Paged KV: one arrival per issuing slice of K / V (producer.cuh, PagedKvBoxes), on the
    // producer's own condition for the paged branch (varlen kernels only).
    const uint32_t kv_full_arrivals =
        Scheduler::kVarlen && params.fwd.page_table != nullptr
            ? 1u << PagedKvBoxes<Traits>::slice_shift(params.page_issue_warps) : 1u;
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&ss.bar.k_full[s], kv_full_arrivals);
      mbar_init(&ss.bar.k_empty[s], Traits::kNumConsumerWG);
      mbar_init(&ss.bar.v_scratch_full[s], kv_full_arrivals);
      mbar_init(&ss.bar.v_scratch_empty[s], 128);
      // kPackedVt: TMA tx + the producer's 1 arrival; else the 128 transposer threads.
      mbar_init(&ss.bar.vt_full[s], Traits::kPackedV ? 1 : 128);
      mbar_init(&ss.bar.vt_empty[s], Traits::kNumConsumerWG);
    }
    for (int s = 0; s < 2; ++s) {
      mbar_init(&ss.bar.tile_full[s], 1);
      mbar_init(&ss.bar.tile_empty[s], Traits::kNumConsumerThreads);
    }
    fence_barrier_init();
    cute::prefetch_tma_descriptor(params.tma_q.get_tma_descriptor());
    if (params.fwd.page_table == nullptr) {
      cute::prefetch_tma_descriptor(params.tma_k.get_tma_descriptor());
      cute::prefetch_tma_descriptor(params.tma_v.get_tma_descriptor());
    } else {  // paged KV: tma_k / tma_v are not encoded
      cute::prefetch_tma_descriptor(&params.paged_k);
      cute::prefetch_tma_descriptor(&params.paged_v);
    }
  }
  __syncthreads();

  // Each role is one branch of a single if/else so that setmaxnreg applies.
  if (threadIdx.x < 128) {
    cutlass::arch::warpgroup_reg_dealloc<Traits::kProducerRegs>();
    producer_run<Traits, kSplit>(params, ss);
  } else {
    cutlass::arch::warpgroup_reg_alloc<Traits::kConsumerRegs>();
    consumer_run<Traits, kVariant>(params, ss);
  }
#endif
}

}  // namespace torch_fmha::kernel
