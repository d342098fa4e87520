// torch_fmha kernel: a phase trace of the consumers' steady loop, for tuning
// only (build with -DTORCH_FMHA_TRACE=1 through TORCH_FMHA_NVCC_EXTRA; every
// shipped build compiles it out).
//
// Why: ncu samples say where warps stall on average, not how the two consumer
// warpgroups' phases line up in time, which is what decides whether one's
// softmax (MUFU) runs while the other's GEMMs (tensor core) do. The trace
// records the SM clock at the phase boundaries of the first kBlocks steady-state
// KV blocks of CTA 0's first tile, for warp 0 of each consumer warpgroup, into a
// global array, and the phase boundaries of CTA 0's first kTiles tiles (the
// per-tile fixed cost: first S, last P V, epilogue) into another; a one-thread
// kernel launched after it prints them:
//   trace wg=<w> it=<i> <clock at each of kPoints points>
//   tile wg=<w> n=<tile> <clock at each of kTilePoints points, 0 where not reached>
// tools/prof/phase_trace.py turns the lines into per-phase cycle counts.
// TORCH_FMHA_TRACE=2 adds a grid timeline: for every CTA and both consumer warpgroups,
// the global timer (ns, common to all SMs) at the top, final P V and stored points of
// its first kGridTiles tiles, and each tile's split role and KV blocks, printed as
//   gtile cta=<c> wg=<w> n=<tile> <role> <blocks> <top ns> <pv_final ns> <stored ns>
// (tools/prof/grid_timeline.py): where the last rounds' time goes across the grid
// (the split tail's pieces, the idle CTAs of a last round), which CTA 0's trace cannot say.
// The clock reads and the stores perturb the code a little (SASS differs from
// the release build's); compare its cycles per block with the release speed.
#pragma once

#include <cstdint>
#include <cstdio>

#ifndef TORCH_FMHA_TRACE
#define TORCH_FMHA_TRACE 0
#endif

namespace torch_fmha::kernel {

struct PhaseTrace {
  static constexpr bool kOn = TORCH_FMHA_TRACE != 0;
  static constexpr int kBlocks = 40;
  // Points of one steady-state round (consumer.cuh): loop top, K / V^T ready,
  // GEMMs issued (turn taken and handed over), S done, softmax done, P V done,
  // P converted (round end).
  enum Point : int { kTop, kOperands, kIssued, kSDone, kSoftmax, kPvDone, kEnd, kPoints };

  // Points of one tile (its fixed cost, which short sequences feel most): tile
  // taken from the scheduler, its first S done (where the previous tile's last
  // round did not issue it), its first block's P ready, its last steady round
  // done, its last P V round issued, its last P V done and O finalized (just
  // before the epilogue's stores), its output stored.
  static constexpr int kTiles = 16;
  enum TilePoint : int { kTileTop, kFirstSDone, kFirstP, kSteadyDone, kLastIssued, kPvFinal, kStored, kTilePoints };

  // Grid timeline (TORCH_FMHA_TRACE=2): points of each tile, every CTA.
  static constexpr bool kGrid = TORCH_FMHA_TRACE >= 2;
  static constexpr int kGridCtas = 264;
  static constexpr int kGridTiles = 24;
  enum GridPoint : int { kGTop, kGPvFinal, kGStored, kGInfo, kGPoints };

  bool active;  // this thread records (CTA 0, warp 0 lane 0 of its warpgroup)
  bool grid_active;  // this thread records the grid timeline (every CTA's warpgroup leaders)
  int wg;

  __device__ __forceinline__ PhaseTrace(int wg_, bool wg_leader)
      : active(kOn && blockIdx.x == 0 && wg_leader),
        grid_active(kGrid && wg_leader && blockIdx.x < kGridCtas), wg(wg_) {}

  __device__ __forceinline__ void mark(int it, Point point) const {
    if constexpr (kOn) {
      if (active && it < kBlocks) stamp(slots() + (wg * kBlocks + it) * kPoints + point);
    }
  }

  // Tile `tile` (the warpgroup's count of tiles taken, 0 first) reached `point`.
  __device__ __forceinline__ void mark_tile(int tile, TilePoint point) const {
    if constexpr (kOn) {
      if (active && tile < kTiles) stamp(tile_slots() + (wg * kTiles + tile) * kTilePoints + point);
    }
    if constexpr (kGrid) {
      const int g = point == kTileTop ? kGTop : point == kPvFinal ? kGPvFinal : point == kStored ? kGStored : -1;
      if (grid_active && g >= 0 && tile < kGridTiles) {
        uint64_t t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        grid_slots()[((blockIdx.x * 2 + wg) * kGridTiles + tile) * kGPoints + g] = t;
      }
    }
  }

  // The grid timeline's tile description: split role (0 whole, 1 tail, 2 head piece) and
  // the KV blocks it walks.
  __device__ __forceinline__ void tile_info(int tile, int role, int blocks) const {
    if constexpr (kGrid) {
      if (grid_active && tile < kGridTiles) {
        grid_slots()[((blockIdx.x * 2 + wg) * kGridTiles + tile) * kGPoints + kGInfo] =
            uint64_t(role) << 32 | uint32_t(blocks);
      }
    }
  }

  // The number of steady-state blocks of the traced tile (the rows worth printing).
  __device__ __forceinline__ void set_blocks(int blocks) const {
    if constexpr (kOn) {
      if (active && wg == 0) *count() = blocks;
    }
  }

  // The SM clock into one slot (volatile: kept at its place among the marks).
  __device__ static void stamp(uint32_t* slot) {
    uint32_t t;
    asm volatile("mov.u32 %0, %%clock;" : "=r"(t));
    *slot = t;
  }

  __device__ static uint32_t* slots() {
    static __device__ uint32_t storage[2 * kBlocks * kPoints];
    return storage;
  }
  __device__ static int* count() {
    static __device__ int blocks;
    return &blocks;
  }
  __device__ static uint64_t* grid_slots() {
    static __device__ uint64_t storage[kGridCtas * 2 * kGridTiles * kGPoints];
    return storage;
  }
  __device__ static uint32_t* tile_slots() {
    static __device__ uint32_t storage[2 * kTiles * kTilePoints];
    return storage;
  }
};

// Printed by a separate one-thread launch after the kernel (fwd_launch_template.cuh,
// trace builds only): device printf inside the kernel is an external call, and
// ptxas serialises every wgmma of a function that makes one. A template, so that
// every translation unit including this header may instantiate it.
template <int kUnused = 0>
__global__ void phase_trace_print_kernel() {
  const int n = *PhaseTrace::count() < PhaseTrace::kBlocks ? *PhaseTrace::count() : PhaseTrace::kBlocks;
  for (int wg = 0; wg < 2; ++wg) {
    for (int it = 1; it < n; ++it) {
      const uint32_t* s = PhaseTrace::slots() + (wg * PhaseTrace::kBlocks + it) * PhaseTrace::kPoints;
      static_assert(PhaseTrace::kPoints == 7, "one %u per point");
      printf("trace wg=%d it=%d %u %u %u %u %u %u %u\n", wg, it, s[0], s[1], s[2], s[3], s[4], s[5],
             s[6]);
    }
    for (int tile = 0; tile < PhaseTrace::kTiles; ++tile) {
      uint32_t* s = PhaseTrace::tile_slots() + (wg * PhaseTrace::kTiles + tile) * PhaseTrace::kTilePoints;
      static_assert(PhaseTrace::kTilePoints == 7, "one %u per tile point");
      printf("tile wg=%d n=%d %u %u %u %u %u %u %u\n", wg, tile, s[0], s[1], s[2], s[3], s[4], s[5], s[6]);
      // Cleared for the next launch, whose tiles may not reach every point.
      for (int i = 0; i < PhaseTrace::kTilePoints; ++i) s[i] = 0;
    }
  }
  if constexpr (PhaseTrace::kGrid) {
    for (int cta = 0; cta < PhaseTrace::kGridCtas; ++cta) {
      for (int wg = 0; wg < 2; ++wg) {
        for (int tile = 0; tile < PhaseTrace::kGridTiles; ++tile) {
          uint64_t* s = PhaseTrace::grid_slots() + ((cta * 2 + wg) * PhaseTrace::kGridTiles + tile) * PhaseTrace::kGPoints;
          if (s[PhaseTrace::kGTop] != 0) {
            printf("gtile cta=%d wg=%d n=%d %u %u %llu %llu %llu\n", cta, wg, tile, unsigned(s[3] >> 32),
                   unsigned(s[3] & 0xffffffffu), (unsigned long long)s[0], (unsigned long long)s[1],
                   (unsigned long long)s[2]);
          }
          for (int i = 0; i < PhaseTrace::kGPoints; ++i) s[i] = 0;
        }
      }
    }
  }
}

}  // namespace torch_fmha::kernel
