// torch_fmha kernel: barrier ids, mbarrier wrappers, pipeline state, and the
// single bounded wait helper every mbarrier wait goes through (docs/DESIGN.md I5).
//
// Two kinds of barrier are used:
//  * mbarriers in shared memory (TMA completion, buffer full/empty hand-offs).
//    Every wait on one goes through `mbar_wait`, which in debug builds
//    (-DTORCH_FMHA_DEBUG_HANG=1) gives up after a few seconds, reports the
//    barrier's name, stage, phase, tile and role (hang_report.cuh), and traps.
//  * hardware named barriers (bar.sync / bar.arrive), ids in `NamedBarrier`.
//    They cannot be polled, so they are only used where both sides execute
//    the same, statically balanced sequence (see consumer.cuh / producer.cuh).
#pragma once

#include <cstdint>
#include <cstdio>

#include "hang_report.cuh"

#ifndef TORCH_FMHA_DEBUG_HANG
#define TORCH_FMHA_DEBUG_HANG 0
#endif

namespace torch_fmha::kernel {
inline constexpr bool kDebugHang = TORCH_FMHA_DEBUG_HANG != 0;
}  // namespace torch_fmha::kernel

namespace torch_fmha::kernel {

// Hardware named barrier ids. 0 is __syncthreads() and is not used after setup.
enum class NamedBarrier : uint32_t {
  kProducerSync = 1,  // 128 producer threads, after reserving a V^T slot (I3)
  kPingPong0 = 2,     // "consumer WG0 may issue its GEMMs" (256 consumer threads)
  kPingPong1 = 3,     // "consumer WG1 may issue its GEMMs" (256 consumer threads)
  kConsumerWG0 = 4,   // consumer WG0 alone (128 threads): the split tail's exchange (epilogue.cuh)
  kConsumerWG1 = 5,   // consumer WG1 alone (the output stage's barriers until session 44)
  kProducerTileId = 6,  // 128 producer threads, a claimed tile id (producer.cuh, TileIdSource)
};

// Names of the mbarriers; only used for the debug hang report.
enum class MbarId : int {
  kQFull = 0,
  kQEmpty,
  kKFull,
  kKEmpty,
  kVScratchFull,
  kVScratchEmpty,
  kVtFull,
  kVtEmpty,
  kTileFull,
  kTileEmpty,
};

// Who is waiting; only used for the debug hang report.
enum class Role : int { kProducerTma = 0, kTransposer, kConsumer };

// Names for the hang report (debug builds).
__host__ __device__ constexpr const char* mbar_name(MbarId id) {
  constexpr const char* kNames[] = {"q_full",          "q_empty",          "k_full",
                                    "k_empty",         "v_scratch_full",   "v_scratch_empty",
                                    "vt_full",         "vt_empty",         "tile_full",
                                    "tile_empty"};
  return kNames[static_cast<int>(id)];
}
__host__ __device__ constexpr const char* role_name(Role r) {
  constexpr const char* kNames[] = {"producer (TMA)", "producer (V transpose)", "consumer"};
  return kNames[static_cast<int>(r)];
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t arrive_count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(arrive_count)
               : "memory");
}

// Makes the barrier inits visible to the async proxy (TMA) and other threads.
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}

// Arrive once and announce `bytes` of TMA traffic that must land before the
// phase completes.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)),
               "r"(bytes)
               : "memory");
}

// try_wait's suspend-time hint, in ns (0: none, the release default). With a
// hint, a try_wait that fails compiles to TRYWAIT; NANOSLEEP.SYNCS; PHASECHK
// (SASS, sm_90a): the warp sleeps until the barrier's phase changes or the hint
// runs out, as CUTLASS's ClusterBarrier::wait (10 ms) and cuDNN's FP8 kernel do.
// Without one a failed wait retries in a loop (YIELD; TRYWAIT; BRA). Measured
// (one H200, same call, 2 processes each; docs/DESIGN.md section 6): 10 ms
// against none moved D = 64 / 128 / 256 by at most 2.1% either way (D = 64 0-1.2%
// down), no gain. The retry loop looked large only in Nsight Compute's
// per-instruction counts, which come from an instrumented replay; the hardware
// counts of the same profile leave it well under 1% of the issued instructions.
// So the knob stays off; the release SASS is byte for byte the one before it.
#ifndef TORCH_FMHA_TUNE_WAIT_SUSPEND_NS
#define TORCH_FMHA_TUNE_WAIT_SUSPEND_NS 0
#endif

__device__ __forceinline__ bool mbar_try_wait(uint32_t addr, uint32_t phase) {
  uint32_t done;
  if constexpr (TORCH_FMHA_TUNE_WAIT_SUSPEND_NS > 0) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2, %3;\n"
        "selp.u32 %0, 1, 0, p;\n"
        "}\n"
        : "=r"(done)
        : "r"(addr), "r"(phase), "n"(TORCH_FMHA_TUNE_WAIT_SUSPEND_NS)
        : "memory");
  } else {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n"
        "}\n"
        : "=r"(done)
        : "r"(addr), "r"(phase)
        : "memory");
  }
  return done != 0;
}

// Where a wait happens; carried only so that a debug hang can say so.
struct WaitSite {
  MbarId bar;
  int stage;
  int tile;
  Role role;
};

#if TORCH_FMHA_DEBUG_HANG
// ~5 s at 1.98 GHz: far beyond any legitimate wait of this kernel.
inline constexpr long long kHangBudgetCycles = 10'000'000'000LL;
// ~0.5 s for the host watcher (polling every 10 ms) to print the report.
inline constexpr long long kReportGraceCycles = 1'000'000'000LL;

// Set by every CTA's thread 0 at kernel entry (KernelParams::debug_hang_report).
// One copy per translation unit (static): each kernel variant sets its own.
static __device__ HangReport* g_hang_report = nullptr;
static __device__ int g_hang_claimed = 0;

// Writes the report (first caller only), gives the host watcher a grace
// period to print it, traps. No printf: a device printf is a function call,
// and a call in the kernel makes ptxas serialize the wgmma pipeline and
// ignore setmaxnreg, so the debug build would no longer run the release
// build's schedule.
__device__ __forceinline__ void report_hang_and_trap(WaitSite site, uint32_t phase) {
  HangReport* report = g_hang_report;
  if (report != nullptr && atomicCAS(&g_hang_claimed, 0, 1) == 0) {
    volatile HangReport* r = report;
    r->block = static_cast<int32_t>(blockIdx.x);
    r->thread = static_cast<int32_t>(threadIdx.x);
    r->barrier = static_cast<int32_t>(site.bar);
    r->stage = site.stage;
    r->tile = site.tile;
    r->role = static_cast<int32_t>(site.role);
    r->phase = phase;
    __threadfence_system();
    r->written = 1;
    __threadfence_system();
  }
  const long long t0 = clock64();
  while (clock64() - t0 < kReportGraceCycles) {
  }
  __trap();
}
#endif

// The one wait helper (I5): wait until the phase with parity `phase` of `bar`
// has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t phase, WaitSite site) {
  const uint32_t addr = smem_addr(bar);
#if TORCH_FMHA_DEBUG_HANG
  const long long start = clock64();
  while (!mbar_try_wait(addr, phase)) {
    if (clock64() - start > kHangBudgetCycles) report_hang_and_trap(site, phase);
  }
#else
  (void)site;
  while (!mbar_try_wait(addr, phase)) {
  }
#endif
}

// Counts the caller's warpgroup in on a flag in global memory that one other warpgroup of
// the launch counts in on too (the split tail, epilogue.cuh), and returns how many had
// counted in before it (0 or 1). acq_rel: the release publishes the partial every thread
// of the warpgroup wrote before its barrier (each fences its own writes, then the barrier,
// then this), and the acquire makes the other side's partial visible to the second to
// count in. Nothing ever waits on the flag, so no CTA depends on another being resident.
__device__ __forceinline__ int32_t flag_arrive(int32_t* flag) {
  int32_t before;
  asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;\n" : "=r"(before) : "l"(flag) : "memory");
  return before;
}

// bar.sync is barrier.sync.aligned: every thread of a warp must execute it
// together, so callers reconverge diverged warps first (__syncwarp). Arrivals
// are counted per warp: a warp that reaches a named barrier in two divergent
// parts is counted twice, which breaks the barrier's generations.
__device__ __forceinline__ void named_barrier_sync(NamedBarrier id, uint32_t num_threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(static_cast<uint32_t>(id)), "r"(num_threads) : "memory");
}

__device__ __forceinline__ void named_barrier_arrive(NamedBarrier id, uint32_t num_threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(static_cast<uint32_t>(id)), "r"(num_threads)
               : "memory");
}

// Orders this thread's generic-proxy shared-memory writes (st.shared) before
// later async-proxy reads (wgmma operands, TMA).
__device__ __forceinline__ void fence_view_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Position in a circular buffer of kStages slots: slot index + phase parity.
// A consumer of a "full" barrier waits on `phase`; a producer of an "empty"
// barrier waits on `phase ^ 1` (a fresh barrier counts as "previous phase
// done", so the first round of empty waits passes at once).
template <int kStages>
struct PipelineState {
  int index = 0;
  uint32_t phase = 0;
  __device__ __forceinline__ void advance() {
    if (++index == kStages) {
      index = 0;
      phase ^= 1u;
    }
  }
};

}  // namespace torch_fmha::kernel
