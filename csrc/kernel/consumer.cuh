// torch_fmha kernel: consumer warpgroups (WG1, WG2).
//
// Each consumer warpgroup owns 64 of the tile's 128 query rows and walks the
// tile's KV blocks from the last down. Per block, with intra-warpgroup
// overlap (S of block it is computed while P of block it-1 meets V):
//
//   wait K[it], V^T[it-1]          (mbarriers)
//   ping-pong: wait for our turn   (NamedBarrier kPingPong<wg>)
//   S  = Q K[it]^T                 (SS wgmma, async)
//   O += P[it-1] V[it-1]           (RS wgmma, async)
//   ping-pong: hand the turn over  (the other warpgroup's GEMMs start while
//                                   we do the softmax below)
//   wait S; release K[it]; mask; online softmax -> p, alpha
//   wait O; release V^T[it-1]; O *= alpha; P[it] = fp8(p)
//
// P V reads P from registers (an RS wgmma), except in the long-key packed-v
// builds at D = 128 and 256 (Traits::kPFromSmem): there P goes to a shared-memory
// tile after the wait for O (store_p_smem) and P V is an SS wgmma, which frees P's
// registers (256-key blocks at D = 128, no spills at D = 256); the wait sits
// between the row max and the exps (Traits::kPvWaitAfterMax).
//
// The middle four lines are `gemm_round`, the releases `release_s_operands`
// and `finish_pv` (all in gemm_round.cuh); the four rounds below (a tile's first
// S alone, the steady state, the tile boundary, the last P V alone) differ only
// around them. Whether "wait O" really stays below the softmax is
// Traits::kPinPvWait (warpgroup_wait_all says why ptxas would otherwise move it up).
// phase_trace.cuh's marks compile to nothing unless TORCH_FMHA_TRACE is set.
//
// Tile boundaries (Traits::kOverlapTiles): a tile's last round issues its
// last P V together with the next tile's first S; this tile's l and max are
// finalized, the softmax is reset for the next tile, and the epilogue (store
// of O) runs after the next tile's first softmax. Without it every tile began
// with an S GEMM whose latency nothing hid (measured: D=64 +8-17%, D=128 +0-5%).
// Where Traits::kPvZeroInit is on (D = 128), O is not cleared after the epilogue: the
// tile's first P V overwrites it (set_pv_starts_o).
//
// Ping-pong bookkeeping: WG1 arrives once on kPingPong0 at start; then every
// GEMM round of WG w is sync(kPingPong<w>) ... arrive(kPingPong<1-w>). Both
// warpgroups run the same number of rounds per tile (tile-level block range),
// so the arrivals balance; WG0 consumes WG1's last arrive before exiting.
#pragma once

#include <cute/tensor.hpp>

#include "epilogue.cuh"
#include "gemm_round.cuh"
#include "kernel_traits.cuh"
#include "mask.cuh"
#include "phase_trace.cuh"
#include "pipeline.cuh"
#include "softmax.cuh"
#include "tile_scheduler.cuh"

namespace torch_fmha::kernel {

// fp32 probabilities (S accumulator, C layout) -> FP8 A operand of P V.
// For k-block kb (32 keys) the thread's 16 accumulator values
// s[16 kb + q] are packed, lowest byte first, as
//   word 4kb+0: q = 0 1 4 5   (row r,   A-operand k = 4c .. 4c+3)
//   word 4kb+1: q = 2 3 6 7   (row r+8)
//   word 4kb+2: q = 8 9 12 13 (row r,   k = 16+4c .. 16+4c+3)
//   word 4kb+3: q = 10 11 14 15 (row r+8)
// which puts key transpose_key_perm(k) at A column k; V^T holds the keys in
// the same order (csrc/vt_key_order.h: the transposer writes it so, a packed v
// arrives so), so no register shuffle is needed.
__device__ __forceinline__ uint32_t pack_fp8x4(float a, float b, float c, float d) {
  const uint32_t lo = __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3);
  const uint32_t hi = __nv_cvt_float2_to_fp8x2(make_float2(c, d), __NV_SATFINITE, __NV_E4M3);
  return lo | (hi << 16);
}

// P's words from the thread's scores (above). kKeys < kBlockN: only the block's first
// kKeys keys are converted and the words of the rest are zero (a half block,
// Traits::kHalfFirstBlock: p = 0 there, as the softmax would have made it).
template <int kBlockN, int kKeys = kBlockN, class FragS, class WordsP>
__device__ __forceinline__ void convert_p(const FragS& s, WordsP&& p32) {
  using namespace cute;
  static_assert(decltype(size(p32))::value * 4 == kBlockN * 64 / 128);
  static_assert(kKeys % 32 == 0 && kKeys <= kBlockN);
#pragma unroll
  for (int w = 4 * (kKeys / 32); w < 4 * (kBlockN / 32); ++w) p32(w) = 0u;
#pragma unroll
  for (int kb = 0; kb < kKeys / 32; ++kb) {
    const int b = 16 * kb;
    p32(4 * kb + 0) = pack_fp8x4(s(b + 0), s(b + 1), s(b + 4), s(b + 5));
    p32(4 * kb + 1) = pack_fp8x4(s(b + 2), s(b + 3), s(b + 6), s(b + 7));
    p32(4 * kb + 2) = pack_fp8x4(s(b + 8), s(b + 9), s(b + 12), s(b + 13));
    p32(4 * kb + 3) = pack_fp8x4(s(b + 10), s(b + 11), s(b + 14), s(b + 15));
  }
}

// Where P's words go in the shared-memory A operand of P V (Traits::kPFromSmem).
// convert_p leaves word w = 4 kb + 2 h + rr of a thread holding row row0 + 8 rr,
// keys 32 kb + 16 h + 4 c .. + 3 (c = lane % 4) of the tile. SmemLayoutP is
// tile_to_shape of a K-major atom of 8 rows x kAtomBytes (W = 64 or 128 bytes,
// Swizzle<log2(W / 16), 4, 3>: 16-byte unit u of row m lands at u ^ ((m W / 128)
// mod W / 16)), atoms along M first, so
//   offset(m, k) = (k / W) kBlockM W + m W + 16 ((k mod W) / 16 ^ (m W / 128 mod W / 16)) + k mod 16
// and row m + 8 adds 8 W (same xor). A thread keeps the W / 16 offsets of its
// (row0, unit u) and every word is one of them plus a constant.
// tests/host_checks/check_p_smem.cu compares word() with SmemLayoutP at every
// thread and word.
template <int kBlockM, int kAtomBytes>
struct PSmemOffsets {
  static constexpr int kUnits = kAtomBytes / 16;
  int unit_base[kUnits];

  __host__ __device__ PSmemOffsets(int row0, int c) {
    const int swizzle = (row0 * kAtomBytes / 128) % kUnits;
    for (int u = 0; u < kUnits; ++u) unit_base[u] = row0 * kAtomBytes + 16 * (u ^ swizzle) + 4 * c;
  }
  // Byte offset of word w (convert_p's order) in the (kBlockM, kBlockN) tile.
  __host__ __device__ int word(int w) const {
    const int k = 32 * (w / 4) + 16 * ((w / 2) % 2);
    return (k / kAtomBytes) * kBlockM * kAtomBytes + unit_base[(k % kAtomBytes) / 16] +
           8 * kAtomBytes * (w % 2);
  }
};

// Stores P's words (convert_p) for the SS P V and makes them visible to the
// wgmma's async proxy. The warpgroup's four warps meet at the next round's
// ping-pong barrier before the wgmma reads the tile.
template <int kBlockM, int kAtomBytes, class WordsP>
__device__ __forceinline__ void store_p_smem(const WordsP& p32, uint32_t p_tile,
                                             const PSmemOffsets<kBlockM, kAtomBytes>& off) {
  using namespace cute;
#pragma unroll
  for (int w = 0; w < decltype(size(p32))::value; ++w) {
    asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(p_tile + off.word(w)), "r"(p32(w)) : "memory");
  }
  fence_view_async_shared();
}

// kVariant: which kernel instantiation this is (tile_scheduler.cuh, KernelVariant): the split
// tails' pieces (kSplitTail) and the halved first block (kMaskedTiles) exist only in theirs.
template <class Traits, KernelVariant kVariant, class Params, class Storage>
__device__ __forceinline__ void consumer_run(const Params& params, Storage& ss) {
  using namespace cute;
  constexpr bool kSplit = kVariant == KernelVariant::kSplitTail;
  constexpr bool kHalfFirstBlock = kVariant == KernelVariant::kMaskedTiles;
  constexpr bool kSkipUnitRescale = kSplit ? Traits::kSkipUnitRescaleInSplit : Traits::kSkipUnitRescale;
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM;
  constexpr int kBlockN = Traits::kBlockN;
  constexpr int kHeadDim = Traits::kHeadDim;
  constexpr int kStages = Traits::kStages;

  const FwdParams& p = params.fwd;
  const int tidx = threadIdx.x - 128;  // 0..255 over both consumer warpgroups
  const int wg = tidx / 128;
  const int lane = tidx % 32;
  // This thread's rows (tile-relative) are row0 and row0 + 8; its columns in
  // every 8-column group are col0, col0 + 1 (GMMA C layout).
  const int row0 = 64 * wg + 16 * ((tidx % 128) / 32) + lane / 4;
  const int col0 = 2 * (lane % 4);
  const bool wg_leader = (tidx % 128) == 0;
  const NamedBarrier my_turn = wg == 0 ? NamedBarrier::kPingPong0 : NamedBarrier::kPingPong1;
  const NamedBarrier their_turn = wg == 0 ? NamedBarrier::kPingPong1 : NamedBarrier::kPingPong0;
  // Always true (H / Hkv >= 1, checked on the host), but not to ptxas.
  const bool pin = params.heads_per_kv > 0;
  const PhaseTrace trace(wg, wg_leader);  // compiled out unless TORCH_FMHA_TRACE (phase_trace.cuh)
  int traced_blocks = -1;                 // KV blocks of the traced (first) tile, -1 before it
  int traced_tile = 0;                    // tiles this warpgroup has taken (trace only)

  Tensor sQ = make_tensor(make_smem_ptr(reinterpret_cast<Element*>(ss.q)),
                          typename Traits::SmemLayoutQStages{});  // (M, D, kQStages)
  Tensor sK = make_tensor(make_smem_ptr(reinterpret_cast<Element*>(ss.k)),
                          typename Traits::SmemLayoutK{});   // (N, D, kStages)
  Tensor sVt = make_tensor(make_smem_ptr(reinterpret_cast<Element*>(ss.vt)),
                           typename Traits::SmemLayoutVt{});  // (D, N, kStages)

  typename Traits::TiledMmaQK mma_qk;
  typename Traits::TiledMmaPV mma_pv;
  auto thr_qk = mma_qk.get_thread_slice(tidx);
  auto thr_pv = mma_pv.get_thread_slice(tidx);
  Tensor tSrQ = thr_qk.partition_fragment_A(sQ);   // (MMA, 1, D/32, kQStages) descriptors
  Tensor tSrK = thr_qk.partition_fragment_B(sK);   // (MMA, 1, D/32, kStages)
  Tensor tOrV = thr_pv.partition_fragment_B(sVt);  // (MMA, 1, N/32, kStages)
  Tensor tSrS = partition_fragment_C(mma_qk, Shape<Int<kBlockM>, Int<kBlockN>>{});   // ((2,2,N/8),1,1) fp32
  Tensor tOrO = partition_fragment_C(mma_pv, Shape<Int<kBlockM>, Int<kHeadDim>>{});  // ((2,2,D/8),1,1) fp32
  // P V's A operand: P in registers, ((4,2,2),1,N/32) fp8 (RS wgmma), or with
  // Traits::kPFromSmem descriptors of the P tile in shared memory (SS wgmma).
  Tensor tOrP = [&] {
    if constexpr (Traits::kPFromSmem) {
      return thr_pv.partition_fragment_A(make_tensor(
          make_smem_ptr(reinterpret_cast<Element*>(ss.p)), typename Traits::SmemLayoutP{}));
    } else {
      return thr_pv.partition_fragment_A(make_tensor(
          make_smem_ptr(static_cast<Element*>(nullptr)),
          make_layout(Shape<Int<kBlockM>, Int<kBlockN>>{})));
    }
  }();
  // P's words as convert_p writes them: the register operand itself, or registers
  // that store_p_smem copies to the tile.
  Tensor tOrPWords = [&] {
    if constexpr (Traits::kPFromSmem) {
      return make_tensor<uint32_t>(Int<kBlockN / 8>{});
    } else {
      return recast<uint32_t>(tOrP);
    }
  }();
  const PSmemOffsets<kBlockM, Traits::kPAtomBytes> p_offsets(row0, col0 / 2);
  const uint32_t p_tile = smem_addr(ss.p);
  static_assert(decltype(size(tSrS))::value == kBlockN / 2);
  static_assert(decltype(size(tOrO))::value == kHeadDim / 2);

  OnlineSoftmax<kBlockN, Traits::kExactAlpha, Traits::kLazyRescale, Traits::kExp2PolyEvery, Traits::kIntRowMax>
      softmax;
  // P (fp8 A operand of P V) from the softmax's p in tSrS, in the key order of V^T.
  // With kPFromSmem only after the previous P V completed (it reads the tile):
  // every call below follows a finish_pv or a round without P V.
  // upper_half_zero: the block ran its softmax on the lower half (first_block_softmax).
  auto make_p = [&](bool upper_half_zero) {
    if constexpr (kHalfFirstBlock) {  // instantiated only there: kBlockN / 2 is a P group multiple
      if (upper_half_zero) {
        convert_p<kBlockN, kBlockN / 2>(tSrS, tOrPWords);
      } else {
        convert_p<kBlockN>(tSrS, tOrPWords);
      }
    } else {
      convert_p<kBlockN>(tSrS, tOrPWords);
    }
    if constexpr (Traits::kPFromSmem) store_p_smem(tOrPWords, p_tile, p_offsets);
  };

  // Whether the next P V writes O or adds to it (Traits::kPvZeroInit): a tile's first P V
  // starts O itself, so no clear of O follows the previous tile's epilogue. Without the
  // knob O is cleared and every P V accumulates (accumulate_ stays One).
  auto set_pv_starts_o = [&](bool first_pv_of_tile) {
    if constexpr (Traits::kPvZeroInit) {
      mma_pv.accumulate_ = first_pv_of_tile ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
    }
  };

  PipelineState<kStages> kv_read;
  PipelineState<2> tile_slot;
  PipelineState<Traits::kQStages> q_read;

  if (wg == 1) named_barrier_arrive(NamedBarrier::kPingPong0, 256);  // WG0 goes first

  auto fetch_tile = [&]() {
    mbar_wait(&ss.bar.tile_full[tile_slot.index], tile_slot.phase,
              {MbarId::kTileFull, tile_slot.index, -1, Role::kConsumer});
    const TileInfo t = ss.tile[tile_slot.index];
    mbar_arrive(&ss.bar.tile_empty[tile_slot.index]);  // 256 arrivals free the slot
    tile_slot.advance();
    return t;
  };
  auto tile_mask = [&](const TileInfo& t) {
    return MaskInfo{t.seqlen_q, t.seqlen_k, p.window_left, p.window_right};
  };
  auto tile_range = [&](const TileInfo& t) {  // the piece's blocks (split tail) or all of them
    const KvBlockRange all = tile_mask(t).template kv_range<kBlockM, kBlockN>(t.m_block);
    // Without kSplit every tile is whole: its walk fields, read back from shared memory,
    // are not something the compiler can fold, so leave them out of the path.
    if constexpr (kSplit) return t.piece(all);
    return all;
  };
  // The warpgroup's named barrier (the split tail's exchange, epilogue.cuh).
  const NamedBarrier wg_barrier = wg == 0 ? NamedBarrier::kConsumerWG0 : NamedBarrier::kConsumerWG1;
  auto store_tile_output = [&](const TileInfo& t, const float (&inv_sum)[2], const float (&lse)[2]) {
    // Lane chunks where V^T's rows come permuted (every build but D = 64's of a standard v),
    // else column pairs (kernel_traits.cuh, kLaneChunkStores, says why).
    if constexpr (Traits::kLaneChunkStores) {
      store_output_lane_chunks<kHeadDim, kBlockM>(p, tOrO, inv_sum, lse, t, row0);
    } else {
      store_output_pairs<kHeadDim, kBlockM>(p, tOrO, inv_sum, lse, t, row0, col0);
    }
  };

  // A finished tile's output. With the split tail (tile_scheduler.cuh) a piece of a tile
  // stores it only if it is the second of the two to finish, after merging the other's
  // partial (epilogue.cuh, exchange_split_partial).
  auto finish_tile = [&](const TileInfo& t, float (&inv_sum)[2], float (&lse)[2]) {
    if constexpr (kSplit) {
      if (t.split != SplitRole::kWhole &&
          !exchange_split_partial<kHeadDim>(params.split, t.split_slot, t.split, tidx, tOrO, inv_sum,
                                            lse, &ss.split_arrival[wg], wg_barrier, wg_leader,
                                            kDebugHang ? params.debug_split_tail_wait_ns : 0)) {
        return;
      }
    }
    store_tile_output(t, inv_sum, lse);
  };

  // S of a tile's first KV block: the mask (if the block needs one) and the
  // softmax on a freshly reset state. Leaves P in tOrP's source (tSrS). Returns
  // whether it ran on the block's lower half only (Traits::kHalfFirstBlock: no row
  // of the tile sees the upper half), which make_p must be told. The two arms stay
  // written out: one generic helper over the key count for both (tried in session 41's
  // final read) changed ptxas's output in 7 of the 11 forward units, the masked-tiles
  // kernel 72 instructions longer, i.e. not the kernels that were measured.
  auto first_block_softmax = [&](const TileInfo& t, int n_block) {
    const MaskInfo m = tile_mask(t);
    if constexpr (kHalfFirstBlock) {
      if (m.upper_half_hidden<kBlockM, kBlockN>(t.m_block, n_block)) {  // the lower half alone
        if (p.softcap > 0.f) apply_softcap<kBlockN / 4>(tSrS, t.softcap_mul);
        if (m.block_needs_mask<kBlockM, kBlockN>(t.m_block, n_block)) {
          apply_mask<kBlockN / 2>(tSrS, m, t.m_block * kBlockM + row0, n_block * kBlockN + col0);
        }
        float alpha_unused[2];
        softmax.template update<kBlockN / 2>(tSrS, alpha_unused);
        return true;
      }
    }
    if (p.softcap > 0.f) apply_softcap(tSrS, t.softcap_mul);  // before the mask (softmax.cuh)
    if (m.block_needs_mask<kBlockM, kBlockN>(t.m_block, n_block)) {
      apply_mask<kBlockN>(tSrS, m, t.m_block * kBlockM + row0, n_block * kBlockN + col0);
    }
    float alpha_unused[2];
    softmax.update(tSrS, alpha_unused);  // O is zero: nothing to rescale
    return false;
  };

  // Q buffer of the current tile (its S GEMMs read it; released after the last one).
  int q_index = 0;
  // True when the current tile's first S was already issued and softmaxed in
  // the previous tile's last GEMM round (tOrP then holds P of block 0).
  bool first_s_done = false;
  PipelineState<kStages> v_pending;  // V^T stage of the block whose P is in tOrP (I2)

  TileInfo tile = fetch_tile();
  while (tile.valid) {
    trace.mark_tile(traced_tile, PhaseTrace::kTileTop);
    const int tile_tag = tile.m_block;  // for hang reports
    const MaskInfo mask = tile_mask(tile);
    const KvBlockRange range = tile_range(tile);
    const int num_blocks = range.count();
    trace.tile_info(traced_tile, int(tile.split), num_blocks);
    float inv_sum[2], lse[2];
    if (num_blocks == 0) {  // no key visible: out = 0, lse = -inf (or the sink)
      clear(tOrO);
      inv_sum[0] = inv_sum[1] = 0.f;
      lse[0] = lse[1] = tile.sink;
      store_tile_output(tile, inv_sum, lse);
      tile = fetch_tile();
      ++traced_tile;
      continue;
    }

    // ---- first block: S only (unless the previous tile's last round did it) ----
    if (!first_s_done) {
      softmax.reset(tile.scale_log2);
      if constexpr (!Traits::kPvZeroInit) clear(tOrO);
      mbar_wait(&ss.bar.q_full[q_read.index], q_read.phase,
                {MbarId::kQFull, q_read.index, tile_tag, Role::kConsumer});
      q_index = q_read.index;
      q_read.advance();
      mbar_wait(&ss.bar.k_full[kv_read.index], kv_read.phase,
                {MbarId::kKFull, kv_read.index, tile_tag, Role::kConsumer});
      gemm_round</*S*/ true, /*PV*/ false>(my_turn, their_turn,
                                       mma_qk, tSrQ(_, _, _, q_index), tSrK(_, _, _, kv_read.index), tSrS,
                                       mma_pv, tOrP, tOrV(_, _, _, v_pending.index), tOrO);
      warpgroup_wait<0>();
      warpgroup_fence_operand(tSrS);
      trace.mark_tile(traced_tile, PhaseTrace::kFirstSDone);
      release_s_operands(wg_leader, ss.bar.k_empty, ss.bar.q_empty, kv_read.index, q_index,
                         num_blocks == 1);
      const bool half = first_block_softmax(tile, range.end - 1);
      make_p(half);
      trace.mark_tile(traced_tile, PhaseTrace::kFirstP);
      v_pending = kv_read;
      kv_read.advance();
    }

    // ---- steady state: S(it) overlapped with P(it-1) V(it-1) ---------------------
    float alpha[2];
    const int trace_it = traced_blocks < 0 ? 0 : PhaseTrace::kBlocks;  // first tile only
    if (traced_blocks < 0) traced_blocks = num_blocks;
    for (int it = 1; it < num_blocks; ++it) {
      const int n_block = range.end - 1 - it;
      trace.mark(trace_it + it, PhaseTrace::kTop);
      mbar_wait(&ss.bar.k_full[kv_read.index], kv_read.phase,
                {MbarId::kKFull, kv_read.index, tile_tag, Role::kConsumer});
      mbar_wait(&ss.bar.vt_full[v_pending.index], v_pending.phase,
                {MbarId::kVtFull, v_pending.index, tile_tag, Role::kConsumer});
      trace.mark(trace_it + it, PhaseTrace::kOperands);
      set_pv_starts_o(it == 1);
      gemm_round</*S*/ true, /*PV*/ true>(my_turn, their_turn,
                                      mma_qk, tSrQ(_, _, _, q_index), tSrK(_, _, _, kv_read.index), tSrS,
                                      mma_pv, tOrP, tOrV(_, _, _, v_pending.index), tOrO);
      trace.mark(trace_it + it, PhaseTrace::kIssued);
      warpgroup_wait<1>();  // S done (P V may still run)
      warpgroup_fence_operand(tSrS);  // S reads below stay after the wait
      trace.mark(trace_it + it, PhaseTrace::kSDone);
      release_s_operands(wg_leader, ss.bar.k_empty, ss.bar.q_empty, kv_read.index, q_index,
                         it == num_blocks - 1);
      if (p.softcap > 0.f) apply_softcap(tSrS, tile.softcap_mul);  // before the mask
      if (mask.block_needs_mask<kBlockM, kBlockN>(tile.m_block, n_block)) {
        apply_mask<kBlockN>(tSrS, mask, tile.m_block * kBlockM + row0, n_block * kBlockN + col0);
      }
      if constexpr (Traits::kPvWaitAfterMax) {  // the same two steps, the wait between them
        float bias[2];
        softmax.update_max(tSrS, alpha, bias);
        if constexpr (Traits::kArgsBeforePvWait) {
          softmax.update_args(tSrS, bias);
          finish_pv<true>(pin, wg_leader, &ss.bar.vt_empty[v_pending.index], tOrO, tOrPWords);
          softmax.template update_exp</*kArgsInS=*/true>(tSrS, bias, alpha);
        } else {
          finish_pv<true>(pin, wg_leader, &ss.bar.vt_empty[v_pending.index], tOrO, tOrPWords);
          softmax.update_exp(tSrS, bias, alpha);
        }
      } else {
        softmax.update(tSrS, alpha);
        if constexpr (Traits::kPinPvWait) trace.mark(trace_it + it, PhaseTrace::kSoftmax);
        finish_pv<Traits::kPinPvWait>(pin, wg_leader, &ss.bar.vt_empty[v_pending.index], tOrO, tOrPWords);
      }
      trace.mark(trace_it + it, PhaseTrace::kPvDone);
      // The multiply is skipped only when every alpha of the warp is exactly 1,
      // so the skip is bitwise exact; the vote makes the branch warp-uniform.
      // Once a row has seen many keys its max rarely moves, but in the release
      // builds without Traits::kExactAlpha an unchanged max does not give
      // alpha == 1 reliably: ptxas contracts its exponent into one FFMA
      // (softmax.cuh, rescale_factor).
      // kSkipUnitRescale off: every block multiplies (x * 1 is exact, so O is
      // the same bits) and ptxas may interleave the multiplies with the exps.
      if (!kSkipUnitRescale || __any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
        for (int i = 0; i < kHeadDim / 2; ++i) tOrO(i) *= alpha[(i >> 1) & 1];
      }
      make_p(false);
      trace.mark(trace_it + it, PhaseTrace::kEnd);
      v_pending = kv_read;
      kv_read.advance();
    }

    // ---- last P V, together with the next tile's first S where there is one -----
    // Both consumer warpgroups fetch the same tiles, so they take the same
    // branch and the ping-pong rounds stay balanced.
    trace.mark_tile(traced_tile, PhaseTrace::kSteadyDone);
    const TileInfo next = fetch_tile();
    const KvBlockRange next_range = tile_range(next);
    const int next_blocks = next.valid ? next_range.count() : 0;
    mbar_wait(&ss.bar.vt_full[v_pending.index], v_pending.phase,
              {MbarId::kVtFull, v_pending.index, tile_tag, Role::kConsumer});
    set_pv_starts_o(num_blocks == 1);
    // A piece of a split tile (tile_scheduler.cuh, split tail; at most 2 per CTA) ends
    // without the overlap: its partial store or merge would share the registers of the
    // next tile's first S (ptxas spilled there).
    if (Traits::kOverlapTiles && next_blocks > 0 && (!kSplit || tile.split == SplitRole::kWhole)) {
      mbar_wait(&ss.bar.q_full[q_read.index], q_read.phase,
                {MbarId::kQFull, q_read.index, next.m_block, Role::kConsumer});
      q_index = q_read.index;
      q_read.advance();
      mbar_wait(&ss.bar.k_full[kv_read.index], kv_read.phase,
                {MbarId::kKFull, kv_read.index, next.m_block, Role::kConsumer});
      gemm_round</*S*/ true, /*PV*/ true>(my_turn, their_turn,
                                      mma_qk, tSrQ(_, _, _, q_index), tSrK(_, _, _, kv_read.index), tSrS,
                                      mma_pv, tOrP, tOrV(_, _, _, v_pending.index), tOrO);
      trace.mark_tile(traced_tile, PhaseTrace::kLastIssued);
      softmax.finalize(inv_sum, lse, tile.sink);  // this tile's l and max are final
      softmax.reset(next.scale_log2);
      warpgroup_wait<1>();  // next tile's S done
      warpgroup_fence_operand(tSrS);
      release_s_operands(wg_leader, ss.bar.k_empty, ss.bar.q_empty, kv_read.index, q_index,
                         next_blocks == 1);
      const bool half = first_block_softmax(next, next_range.end - 1);
      finish_pv<Traits::kPinPvWait>(pin, wg_leader, &ss.bar.vt_empty[v_pending.index], tOrO, tOrPWords);
      make_p(half);
      trace.mark_tile(traced_tile, PhaseTrace::kPvFinal);
      store_tile_output(tile, inv_sum, lse);  // a whole tile (above)
      trace.mark_tile(traced_tile, PhaseTrace::kStored);
      if constexpr (!Traits::kPvZeroInit) clear(tOrO);
      v_pending = kv_read;
      kv_read.advance();
      first_s_done = true;
    } else {
      gemm_round</*S*/ false, /*PV*/ true>(my_turn, their_turn,
                                       mma_qk, tSrQ(_, _, _, q_index), tSrK(_, _, _, kv_read.index), tSrS,
                                       mma_pv, tOrP, tOrV(_, _, _, v_pending.index), tOrO);
      trace.mark_tile(traced_tile, PhaseTrace::kLastIssued);
      finish_pv<false>(pin, wg_leader, &ss.bar.vt_empty[v_pending.index], tOrO, tOrPWords);
      softmax.finalize(inv_sum, lse, tile.sink);
      trace.mark_tile(traced_tile, PhaseTrace::kPvFinal);
      finish_tile(tile, inv_sum, lse);
      trace.mark_tile(traced_tile, PhaseTrace::kStored);
      first_s_done = false;
    }
    tile = next;
    ++traced_tile;
  }
  if (wg == 0) named_barrier_sync(NamedBarrier::kPingPong0, 256);  // balance WG1's last arrive
  trace.set_blocks(traced_blocks);
}

}  // namespace torch_fmha::kernel
