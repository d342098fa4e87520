// torch_fmha kernel: one consumer GEMM round and the waits that end it.
//
// A consumer warpgroup's round (consumer.cuh) is: wait for its turn, issue S = Q K^T
// and / or O += P V as wgmma groups, hand the turn over (gemm_round); later wait
// for S and release K (release_s_operands), and wait for P V and release V^T
// (finish_pv). The wait for P V can be pinned below the softmax
// (warpgroup_wait_all says why ptxas would otherwise move it up).
#pragma once

#include <cute/tensor.hpp>

#include "pipeline.cuh"

namespace torch_fmha::kernel {

// Issues (and commits as one wgmma group) C (+)= A B over all k-blocks.
// kWait >= 0 waits for all but kWait outstanding groups before returning.
template <bool kZeroInit, int kWait, class TiledMma, class TA, class TB, class TC>
__device__ __forceinline__ void gemm(TiledMma& mma, TA& tA, const TB& tB, TC& tC) {
  using namespace cute;
  constexpr bool kIsRS = !cute::is_base_of<cute::GMMA::DescriptorIterator,
                                           typename TA::engine_type::iterator>::value;
  if constexpr (kIsRS) warpgroup_fence_operand(tA);
  warpgroup_fence_operand(tC);
  warpgroup_arrive();
  if constexpr (kZeroInit) mma.accumulate_ = GMMA::ScaleOut::Zero;
#pragma unroll
  for (int k = 0; k < size<2>(tA); ++k) {
    cute::gemm(mma, tA(_, _, k), tB(_, _, k), tC);
    mma.accumulate_ = GMMA::ScaleOut::One;
  }
  warpgroup_commit_batch();
  if constexpr (kWait >= 0) warpgroup_wait<kWait>();
  warpgroup_fence_operand(tC);
  if constexpr (kIsRS) warpgroup_fence_operand(tA);
}

// One GEMM round of a consumer warpgroup: take the turn (ping-pong), issue
// S = Q K^T and / or O += P V as separate wgmma groups without waiting for
// them, hand the turn to the other warpgroup. Which GEMMs a round issues is a
// compile-time choice per call site: a wgmma behind a runtime branch makes
// ptxas serialize every wgmma of the kernel.
template <bool kIssueS, bool kIssuePV, class MmaQK, class FragQ, class FragK, class FragS,
          class MmaPV, class FragP, class FragV, class FragO>
__device__ __forceinline__ void gemm_round(NamedBarrier my_turn, NamedBarrier their_turn,
                                           MmaQK& mma_qk, FragQ&& q, FragK&& k, FragS& s,
                                           MmaPV& mma_pv, FragP& p, FragV&& vt, FragO& o) {
  named_barrier_sync(my_turn, 256);
  if constexpr (kIssueS) gemm<true, -1>(mma_qk, q, k, s);
  if constexpr (kIssuePV) gemm<false, -1>(mma_pv, p, vt, o);
  named_barrier_arrive(their_turn, 256);
}

// Waits for all committed wgmma groups (the P V of a round).
//
// kPinned: at this point of the program. ptxas does not keep a plain
// `wgmma.wait_group 0` where it is written: P V reads P from registers
// asynchronously, and once the PTX no longer uses those registers ptxas hands
// them to the softmax as temporaries and moves the wait up to just before the
// first such reuse, i.e. before the whole softmax (in SASS: every MUFU.EX2 of
// the block after the WARPGROUP.DEPBAR). The softmax then no longer overlaps
// the warpgroup's own P V. A wait inside a branch that ptxas cannot prove
// taken (both arms wait, `always_true` is warpgroup-uniform) cannot be
// hoisted, so ptxas must leave P's registers alone until here instead.
// !kPinned: a plain wait, placed by ptxas. Traits::kPinPvWait chooses per head
// dim (measured); tests/gpu/test_sass_sm90.py checks the pinned placement in
// the built kernel.
template <bool kPinned>
__device__ __forceinline__ void warpgroup_wait_all(bool always_true) {
  if (!kPinned || always_true) {
    cute::warpgroup_wait<0>();
  } else {
    cute::warpgroup_wait<0>();
  }
}

// After a round's S group completed: the warpgroup's arrival frees K stage
// k_stage and, after the last S of a Q tile, Q buffer q_buffer.
__device__ __forceinline__ void release_s_operands(bool leader, uint64_t* k_empty,
                                                   uint64_t* q_empty, int k_stage, int q_buffer,
                                                   bool last_s_of_q_tile) {
  if (leader) {
    mbar_arrive(&k_empty[k_stage]);
    if (last_s_of_q_tile) mbar_arrive(&q_empty[q_buffer]);
  }
}

// Ends a round's P V: waits for it (pinned below the softmax or not, see
// warpgroup_wait_all), fences O and P (the wait's asm names no registers:
// without the fences the compiler may move the O rescale or the next P's
// write above it, racing the RS wgmma), and frees the V^T stage.
template <bool kPinned, class FragO, class FragP>
__device__ __forceinline__ void finish_pv(bool pin, bool leader, uint64_t* vt_empty, FragO& o,
                                          FragP& p) {
  warpgroup_wait_all<kPinned>(pin);
  warpgroup_fence_operand(o);
  warpgroup_fence_operand(p);
  if (leader) mbar_arrive(vt_empty);
}

}  // namespace torch_fmha::kernel
