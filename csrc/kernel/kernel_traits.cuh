// torch_fmha kernel: tile shapes, shared-memory layouts, GMMA and TMA types
// per head dim for the SM90 FP8 forward kernel.
//
// One CTA = 3 warpgroups (384 threads):
//   WG0      producer: TMA for Q/K/V + V transpose (all 128 threads)
//   WG1, WG2 consumers: each owns 64 of the kBlockM = 128 query rows of a tile
#pragma once

#include <cute/tensor.hpp>
#include <cute/atom/mma_atom.hpp>
#include <cute/atom/copy_atom.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cutlass/gemm/collective/builders/sm90_common.inl>

// Tuning experiments (tools/gpu_tune.sh) override the per-head-dim choices
// below at compile time, e.g. -DTORCH_FMHA_TUNE_STAGES_128=3; a release
// build defines none of these.
#ifndef TORCH_FMHA_TUNE_BLOCK_N_64
#define TORCH_FMHA_TUNE_BLOCK_N_64 256
#endif
#ifndef TORCH_FMHA_TUNE_BLOCK_N_128
#define TORCH_FMHA_TUNE_BLOCK_N_128 192
#endif
#ifndef TORCH_FMHA_TUNE_BLOCK_N_256
#define TORCH_FMHA_TUNE_BLOCK_N_256 128
#endif
// P V reads P from shared memory (an SS wgmma) instead of registers in the D = 128
// long-key build for a packed v (consumer.cuh, store_p_smem; the build with room for the
// 2 x 64 x kBlockN byte buffer). Measured in session 24 (one H200, same call, 3 rounds,
// DESIGN section 6): with 256-key blocks and the P V wait after the row max, TF/s +4.7 /
// +2.8 / +2.0% at 4k / 8k / 16k non-causal, +0.2 / +0.4 / +1.2% causal; 192-key blocks
// with P from shared memory and the wait pinned below the softmax were 7% slower.
#ifndef TORCH_FMHA_TUNE_P_SMEM_128
#define TORCH_FMHA_TUNE_P_SMEM_128 1
#endif
// The D = 128 long-key build for a packed v (no V scratch, so wider blocks fit in shared
// memory): 256 keys with P from shared memory (S 128 + O 64 registers per thread, P not
// held); with P in registers 192 as the transposing build (224 measured 2-6% slower from
// 2k, 256 serialised the wgmmas).
#ifndef TORCH_FMHA_TUNE_PACKED_V_BLOCK_N_128
#define TORCH_FMHA_TUNE_PACKED_V_BLOCK_N_128 (TORCH_FMHA_TUNE_P_SMEM_128 ? 256 : TORCH_FMHA_TUNE_BLOCK_N_128)
#endif
// The same for D = 256's packed-v build (128-key blocks as before): with P out of the
// registers the consumers have no spill left in sm_90a SASS (29 local-memory
// instructions before, 3 LDL per block in the steady loop). Measured with the wait after
// the max and O's rescale in every block (below): +1.1-4.7% TF/s (session 25, DESIGN
// section 6); with the wait pinned below the softmax it was slower than the release in
// 8 of 10 cells.
#ifndef TORCH_FMHA_TUNE_P_SMEM_256
#define TORCH_FMHA_TUNE_P_SMEM_256 1
#endif
// Where the P V wait of a build with P from shared memory goes: between the row max and
// the exps (1), or where ptxas puts it (0: before the max). At D = 128, in session 24's
// one round, these two were within 1.3% of each other at 4k-16k (1 not measurably
// worse), pinned below the softmax 1.6-3.0% lower but at 16k non-causal.
#ifndef TORCH_FMHA_TUNE_P_SMEM_WAIT_AFTER_MAX_128
#define TORCH_FMHA_TUNE_P_SMEM_WAIT_AFTER_MAX_128 1
#endif
#ifndef TORCH_FMHA_TUNE_P_SMEM_WAIT_AFTER_MAX_256
#define TORCH_FMHA_TUNE_P_SMEM_WAIT_AFTER_MAX_256 1
#endif
// Pin that wait below the softmax instead (kPinPvWait) in the builds with P from shared
// memory, which do not read _PIN_<D>: a tuning experiment, off (session 24's "pinned"
// P-from-shared-memory rows at D = 128, then built with _PIN_128=1).
#ifndef TORCH_FMHA_TUNE_P_SMEM_PIN
#define TORCH_FMHA_TUNE_P_SMEM_PIN 0
#endif
// The short-key build (KvBlocking::kShort below, D = 128).
#ifndef TORCH_FMHA_TUNE_SHORT_BLOCK_N_128
#define TORCH_FMHA_TUNE_SHORT_BLOCK_N_128 128
#endif
#ifndef TORCH_FMHA_TUNE_SHORT_STAGES_128
#define TORCH_FMHA_TUNE_SHORT_STAGES_128 3
#endif
#ifndef TORCH_FMHA_TUNE_STAGES_64
#define TORCH_FMHA_TUNE_STAGES_64 3
#endif
#ifndef TORCH_FMHA_TUNE_STAGES_128
#define TORCH_FMHA_TUNE_STAGES_128 2
#endif
#ifndef TORCH_FMHA_TUNE_STAGES_256
#define TORCH_FMHA_TUNE_STAGES_256 2
#endif

// Builds for a packed v (VLayout::kPackedVt) have no V scratch FIFO; the room
// it frees may go to more stages or a second Q buffer.
#ifndef TORCH_FMHA_TUNE_PACKED_V_STAGES_128
#define TORCH_FMHA_TUNE_PACKED_V_STAGES_128 TORCH_FMHA_TUNE_STAGES_128
#endif
#ifndef TORCH_FMHA_TUNE_PACKED_V_STAGES_256
#define TORCH_FMHA_TUNE_PACKED_V_STAGES_256 TORCH_FMHA_TUNE_STAGES_256
#endif
// Q buffers of the D = 128 long-key builds, both v layouts (2: the tile-boundary
// overlap; 1 frees 16 KB, e.g. for 224-key blocks with the output stage,
// FlashAttention-3's FP8 D = 128 tile).
#ifndef TORCH_FMHA_TUNE_Q_STAGES_128
#define TORCH_FMHA_TUNE_Q_STAGES_128 2
#endif
#ifndef TORCH_FMHA_TUNE_PACKED_V_Q_STAGES_256
#define TORCH_FMHA_TUNE_PACKED_V_Q_STAGES_256 1
#endif

#ifndef TORCH_FMHA_TUNE_WIDE_SPLIT_ABOVE_128
#define TORCH_FMHA_TUNE_WIDE_SPLIT_ABOVE_128 192
#endif
#ifndef TORCH_FMHA_TUNE_PIN_64
#define TORCH_FMHA_TUNE_PIN_64 0
#endif
#ifndef TORCH_FMHA_TUNE_PIN_128
#define TORCH_FMHA_TUNE_PIN_128 0
#endif
#ifndef TORCH_FMHA_TUNE_PIN_256
#define TORCH_FMHA_TUNE_PIN_256 1
#endif
// Pin the P V wait between the row max and the exps instead (kPvWaitAfterMax).
#ifndef TORCH_FMHA_TUNE_PIN_AFTER_MAX_64
#define TORCH_FMHA_TUNE_PIN_AFTER_MAX_64 0
#endif
#ifndef TORCH_FMHA_TUNE_PIN_AFTER_MAX_128
#define TORCH_FMHA_TUNE_PIN_AFTER_MAX_128 0
#endif
#ifndef TORCH_FMHA_TUNE_PIN_AFTER_MAX_256  // takes effect with TORCH_FMHA_TUNE_PIN_256=0
#define TORCH_FMHA_TUNE_PIN_AFTER_MAX_256 0
#endif
// O's rescale in every block, without the vote that skips it (kSkipUnitRescale).
#ifndef TORCH_FMHA_TUNE_RESCALE_ALWAYS_64
#define TORCH_FMHA_TUNE_RESCALE_ALWAYS_64 0
#endif
#ifndef TORCH_FMHA_TUNE_RESCALE_ALWAYS_128
#define TORCH_FMHA_TUNE_RESCALE_ALWAYS_128 0
#endif
#ifndef TORCH_FMHA_TUNE_RESCALE_ALWAYS_256
#define TORCH_FMHA_TUNE_RESCALE_ALWAYS_256 0
#endif
// The same for the builds with P from shared memory (Traits::kPFromSmem), whose P V wait
// sits before the exps: there the multiply need not wait inside the softmax, and ptxas
// spreads it between the MUFU.EX2s. Measured in session 25 (DESIGN section 6): D = 128
// 0-1% slower (off), D = 256 on (with the P tile).
#ifndef TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_128
#define TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_128 0
#endif
#ifndef TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_256
#define TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_256 1
#endif
// The same at D = 128 in the split tail's kernel alone (KernelVariant::kSplitTail: non-causal
// launches of 16 or more 256-key blocks a tile whose plan is active, SplitTail::wanted).
// Session 47 (one H200, 6 rounds alternating, FP8 out; docs/DESIGN.md section 7): the
// every-block rescale in all three kernels read non-causal 1k / 2k -1.5 / -0.4% (whole tiles),
// 4k / 8k / 16k +0.2 / +1.6 / +2.1% (split tail), causal 4k / 8k / 16k -1.4 / -0.9 / -1.0%
// (masked tiles): on in the split kernel only.
#ifndef TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_SPLIT_128
#define TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_SPLIT_128 1
#endif
// One exp in every N of a block on the FMA pipe (softmax.cuh, poly_exp2); 0: all on the MUFU.
#ifndef TORCH_FMHA_TUNE_EXP2_POLY_64
#define TORCH_FMHA_TUNE_EXP2_POLY_64 0
#endif
#ifndef TORCH_FMHA_TUNE_EXP2_POLY_128
#define TORCH_FMHA_TUNE_EXP2_POLY_128 0
#endif
#ifndef TORCH_FMHA_TUNE_EXP2_POLY_256
#define TORCH_FMHA_TUNE_EXP2_POLY_256 0
#endif
// The exp2 arguments (FFMAs) before the P V wait in the builds that wait between the row
// max and the exps (softmax.cuh, update_args): the same bits. Measured in session 26 (one
// H200, 3 rounds, docs/DESIGN.md section 6): D = 128 1.7-3% slower (non-causal 2k-16k,
// causal 4k-16k); D = 256 +0.9 to +4.4% at non-causal 4k-16k, -1.6% / -1.1% at 2k. Session
// 27 repeated D = 256 on the integer row max's release (2 rounds): -0.8% to +0.0% non-causal,
// -3.6% to +0.4% causal. Off in both.
#ifndef TORCH_FMHA_TUNE_ARGS_BEFORE_WAIT_128
#define TORCH_FMHA_TUNE_ARGS_BEFORE_WAIT_128 0
#endif
#ifndef TORCH_FMHA_TUNE_ARGS_BEFORE_WAIT_256
#define TORCH_FMHA_TUNE_ARGS_BEFORE_WAIT_256 0
#endif
// A tile's first KV block whose upper half no row of the tile sees runs its softmax
// on the lower half only (consumer.cuh, Fp8FwdTraits::kHalfFirstBlock), in the builds
// with 256-key blocks (D = 64, D = 128's long packed-v build), in a kernel of its own that
// only causal and windowed launches run (tile_scheduler.cuh, KernelVariant::kMaskedTiles).
// Session 40 (one H200, docs/DESIGN.md section 7) measured it in the one kernel every launch
// ran: the same bits, but with the halved path in the tile-boundary round ptxas scheduled the
// steady KV loop differently (at D = 64 58 of its exp arguments' FFMAs ahead of the
// MUFU.EX2s instead of between them; at D = 128 the row max and exp steps reordered): D = 64
// 9-14% slower from 1k keys, causal too; D = 128 causal -0.2 to +1.9% and non-causal -0.4 to
// -1.0% (most cells within the rounds' spread). Session 41 keeps the non-causal launches on
// the release kernel and gives D = 128's causal ones the halved block (DESIGN section 7).
#ifndef TORCH_FMHA_TUNE_HALF_FIRST_BLOCK_64
#define TORCH_FMHA_TUNE_HALF_FIRST_BLOCK_64 0
#endif
#ifndef TORCH_FMHA_TUNE_HALF_FIRST_BLOCK_128
#define TORCH_FMHA_TUNE_HALF_FIRST_BLOCK_128 1
#endif
// A block's row max from the scores' bits by three-input integer maxes (softmax.cuh,
// int_max_of_scores: VIMNMX3, two scores per instruction; the same max). Session 27 (one
// H200, same call, 3 rounds, TFLOP/s release -> int max, docs/DESIGN.md section 6):
// D = 128 non-causal 1k / 4k / 16k 712 863 888 -> 714 874 908, causal 506 709 855 -> 506 714
// 872; D = 256 non-causal 988 1140 1162 -> 1023 1187 1195, causal 650 993 1127 -> 646 1017
// 1167: on. D = 64 lost 4-12% in every cell (495 568 596 | 309 490 581 -> 477 547 566 |
// 271 442 540): off.
#ifndef TORCH_FMHA_TUNE_INT_MAX_64
#define TORCH_FMHA_TUNE_INT_MAX_64 0
#endif
#ifndef TORCH_FMHA_TUNE_INT_MAX_128
#define TORCH_FMHA_TUNE_INT_MAX_128 1
#endif
#ifndef TORCH_FMHA_TUNE_INT_MAX_256
#define TORCH_FMHA_TUNE_INT_MAX_256 1
#endif
// The online softmax's O rescale (softmax.cuh: rescale_factor, kLazyRescaleSlack):
// alpha rounded so that an unchanged max gives exactly 1, and the lazy rescale.
#ifndef TORCH_FMHA_TUNE_EXACT_ALPHA_64
#define TORCH_FMHA_TUNE_EXACT_ALPHA_64 0
#endif
// D = 128 long-key builds: on since session 18 (with the packed v, same call, 3
// processes each: +0.7 / +1.9% TF/s at 4k / 16k, +0.4 / +2.4% causal; the earlier
// runs with the transposing v were mixed, within their spread; docs/DESIGN.md section 6).
#ifndef TORCH_FMHA_TUNE_EXACT_ALPHA_128
#define TORCH_FMHA_TUNE_EXACT_ALPHA_128 1
#endif
#ifndef TORCH_FMHA_TUNE_EXACT_ALPHA_256
#define TORCH_FMHA_TUNE_EXACT_ALPHA_256 1
#endif
#ifndef TORCH_FMHA_TUNE_SHORT_EXACT_ALPHA_128
#define TORCH_FMHA_TUNE_SHORT_EXACT_ALPHA_128 0
#endif
#ifndef TORCH_FMHA_TUNE_LAZY_RESCALE_64
#define TORCH_FMHA_TUNE_LAZY_RESCALE_64 0
#endif
#ifndef TORCH_FMHA_TUNE_LAZY_RESCALE_128
#define TORCH_FMHA_TUNE_LAZY_RESCALE_128 0
#endif
#ifndef TORCH_FMHA_TUNE_LAZY_RESCALE_256
#define TORCH_FMHA_TUNE_LAZY_RESCALE_256 0
#endif
// A tile's first P V overwrites O (the wgmma's scale-d predicate at 0) instead of
// accumulating into an O cleared at the tile boundary (consumer.cuh, set_pv_starts_o). The
// clear wrote O's registers right after the epilogue's global stores, whose source registers
// ptxas had taken from O (sm_90a SASS of D = 128's long packed-v build: the last STG.E.64
// stores R152-R153, and 64 IMAD.U32 then zero R152-R215), so it waited until the stores had
// read them. The same output bits (tools/bitwise_ab.py: 0 of 488 calls differ). Measured in
// session 45 (one H200, FP8 out, rounds in alternating processes; docs/DESIGN.md section 7):
// D = 128 on: causal 1k / 2k / 4k +2.0 / +1.1 / +3.8% (call 2), the (1024, 0) window +0.9 /
// +1.5% in two calls, non-causal 2k-16k -0.9 to +1.2% and causal 8k -0.6 / -0.1%, mostly
// within the rounds' spread. D = 256 off: -1.2 to +1.5% over the two calls, every cell but
// one within the spread (its tile loop has no boundary overlap; the clear sat at the next
// tile's top). D = 64 off: causal -6%, ptxas then hoisted the exp-argument FFMAs of the steady
// loop ahead of the MUFU.EX2s into one run of 64 (the interleave tests/test_packed_v_sass.py
// keeps). 0: the clear.
#ifndef TORCH_FMHA_TUNE_PV_ZERO_INIT_64
#define TORCH_FMHA_TUNE_PV_ZERO_INIT_64 0
#endif
#ifndef TORCH_FMHA_TUNE_PV_ZERO_INIT_128
#define TORCH_FMHA_TUNE_PV_ZERO_INIT_128 1
#endif
#ifndef TORCH_FMHA_TUNE_PV_ZERO_INIT_256
#define TORCH_FMHA_TUNE_PV_ZERO_INIT_256 0
#endif
#ifndef TORCH_FMHA_TUNE_OVERLAP_256
#define TORCH_FMHA_TUNE_OVERLAP_256 0
#endif

namespace torch_fmha::kernel {

using namespace cute;

// How a head dim cuts the keys into KV blocks. kLong (every head dim, every
// layout) is tuned for long sequences. kShort (D = 128 only, dense layout,
// chosen by dispatch_fwd.cu for seqlen_k <= short_keys_max_seqlen(128, ...) and for
// windows spanning at most short_keys_max_window_span(128) keys per tile) uses
// 128-key blocks and 3 stages: no partial last block at the power-of-two
// lengths where 192 leaves one (1024 = 5 x 192 + 64), at the price of more
// per-block overhead, which only long sequences feel. D = 64's long build has
// 256-key blocks (no partial block at those lengths) and beat its former
// 128-key short build at 512 / 1024 keys except 512 causal (2% behind);
// D = 256's 64-key variant (two Q buffers, tile overlap) was slower at every
// length measured.
// docs/DESIGN.md section 6.
enum class KvBlocking : int { kLong = 0, kShort = 1 };

// How V lies in global memory. kHeadDimContiguous: [.., keys, Hkv, D] with
// the head dim contiguous (what a projection writes); TMA lands each block
// row-major in the V scratch FIFO and the producer transposes it into V^T
// (transpose_v.cuh). kPackedVt (dense layout only): a packed v from
// quantize_qkv, [B, Hkv, D, G, 16] with the keys contiguous and each 16-key
// group already in the key order of the V^T the P V wgmma reads
// (csrc/vt_key_order.h), so TMA lands V^T as is: no scratch, no transpose, no
// register move of P, and the producer's shared-memory traffic per V block
// drops from 3 tile passes (TMA write, LDSM read, STSM write) to 1.
// docs/DESIGN.md section 6.
enum class VLayout : int { kHeadDimContiguous = 0, kPackedVt = 1 };

template <int kHeadDim_, KvBlocking kBlocking_ = KvBlocking::kLong,
          VLayout kVLayout_ = VLayout::kHeadDimContiguous>
struct Fp8FwdTraits {
  using Element = cute::float_e4m3_t;  // q, k, v in shared memory
  using Accum = float;

  static constexpr int kHeadDim = kHeadDim_;
  static_assert(kHeadDim == 64 || kHeadDim == 128 || kHeadDim == 256);
  static constexpr KvBlocking kBlocking = kBlocking_;
  static constexpr bool kShortKeys = kBlocking == KvBlocking::kShort;
  static constexpr VLayout kVLayout = kVLayout_;
  static constexpr bool kPackedV = kVLayout == VLayout::kPackedVt;
  static_assert(!kShortKeys || kHeadDim == 128,
                "short-key build only at D = 128 (D = 64: 256-key blocks won; D = 256: slower)");

  // ---- tile shape --------------------------------------------------------------
  // kBlockM rows of Q per tile, split 64/64 over the two consumer warpgroups.
  static constexpr int kBlockM = 128;
  // kBlockN keys per KV block. It is the N of S = Q K^T (<= 256, multiple of 8)
  // and the K of O += P V (multiple of 32 for FP8 wgmma). Register budget per
  // consumer thread: S N/2 + P N/8 + O D/2 fp32/b32 registers.
  static constexpr int kBlockN = kShortKeys                  ? TORCH_FMHA_TUNE_SHORT_BLOCK_N_128
                                 : kHeadDim == 64            ? TORCH_FMHA_TUNE_BLOCK_N_64
                                 : kHeadDim == 128 && kPackedV ? TORCH_FMHA_TUNE_PACKED_V_BLOCK_N_128
                                 : kHeadDim == 128           ? TORCH_FMHA_TUNE_BLOCK_N_128
                                                             : TORCH_FMHA_TUNE_BLOCK_N_256;
  static_assert(kBlockN % 32 == 0 && kBlockN <= 256);
  // KV pipeline depth; the V scratch FIFO has the same depth (I1).
  static constexpr int kStages = kShortKeys        ? TORCH_FMHA_TUNE_SHORT_STAGES_128
                                 : kHeadDim == 64  ? TORCH_FMHA_TUNE_STAGES_64
                                 : kHeadDim == 128 ? (kPackedV ? TORCH_FMHA_TUNE_PACKED_V_STAGES_128
                                                               : TORCH_FMHA_TUNE_STAGES_128)
                                 : kPackedV        ? TORCH_FMHA_TUNE_PACKED_V_STAGES_256
                                                   : TORCH_FMHA_TUNE_STAGES_256;
  static_assert(kStages >= 2, "I1: V-scratch FIFO depth (= kStages) must be >= 2");
  // Q buffers. Two where shared memory allows (D = 64, 128 by default): the next
  // tile's Q loads while the consumers finish the current tile (last softmax, last
  // P V, epilogue) instead of after it. D = 256 has no room for a second 32 KB
  // (but with a packed v, a knob); D = 128 can take one (a knob, above).
  static constexpr int kQStages =
      kHeadDim == 128 && !kShortKeys ? TORCH_FMHA_TUNE_Q_STAGES_128
      : kHeadDim != 256              ? 2
      : kPackedV                     ? TORCH_FMHA_TUNE_PACKED_V_Q_STAGES_256
                                     : 1;
  // A tile's last P V is issued together with the next tile's first S, and
  // the epilogue runs after the next tile's first softmax, so the tensor core
  // is not left idle at tile boundaries (consumer.cuh). Needs the next tile's
  // Q in its own buffer: with one Q buffer (D = 256) its load can only start
  // after this tile's last S, and measured, the overlap gained nothing there.
  static constexpr bool kOverlapTiles =
      kQStages >= 2 || (kHeadDim == 256 && TORCH_FMHA_TUNE_OVERLAP_256);
  // P V with P from shared memory (an SS wgmma): the long-key packed-v builds at D = 128
  // and 256 (TORCH_FMHA_TUNE_P_SMEM_<D>). Each warpgroup stores its P (64 x kBlockN bytes)
  // after the P V wait, so P holds no register while P V runs: S (N/2) + O (D/2) fit at
  // 256 keys (D = 128), and D = 256's consumers no longer spill; consumer.cuh, store_p_smem.
  static constexpr bool kPFromSmem =
      kPackedV && !kShortKeys &&
      (kHeadDim == 128 ? TORCH_FMHA_TUNE_P_SMEM_128 : kHeadDim == 256 ? TORCH_FMHA_TUNE_P_SMEM_256 : false);
  // Keep the P V wait below the softmax (consumer.cuh, warpgroup_wait_all_pinned)
  // so a warpgroup's softmax overlaps its own P V. Measured on an H100 (2026-11-27,
  // docs/DESIGN.md section 6): 4-7% slower at D=128 for S <= 4k and no better at
  // D=64, equal at D=256. Left to ptxas, the wait lands before the softmax, which
  // then starts only once P V is done; that staggers the two warpgroups'
  // softmaxes, which share the SM's MUFU (16 ex2 / clk).
  // The builds with P from shared memory place it with their own knobs (above).
  static constexpr bool kPinPvWait = kPFromSmem        ? TORCH_FMHA_TUNE_P_SMEM_PIN
                                     : kHeadDim == 64  ? TORCH_FMHA_TUNE_PIN_64
                                     : kHeadDim == 128 ? TORCH_FMHA_TUNE_PIN_128
                                                       : TORCH_FMHA_TUNE_PIN_256;
  // Pin the steady round's P V wait between the row max and the exps: on in the
  // release only for the builds with P from shared memory (kPFromSmem), a
  // tuning experiment everywhere else. Left to ptxas the wait lands right
  // after the first FMNMX (SASS, session 14), so the max, its shuffles and the
  // exps all wait for the whole P V; pinned below the softmax the exps overlap
  // P V and ran slower (above). Here only the max (FMNMX + 4 shuffles,
  // latency-bound) overlaps the warpgroup's own P V. Measured (one H200, session
  // 15, docs/DESIGN.md section 6): D = 64 1-10% slower, D = 128 within 1.5%
  // either way, D = 256 +0-4% with spreads that overlap; not adopted there.
  static constexpr bool kPvWaitAfterMax =
      !kPinPvWait && (kPFromSmem ? (kHeadDim == 128 ? TORCH_FMHA_TUNE_P_SMEM_WAIT_AFTER_MAX_128
                                                    : TORCH_FMHA_TUNE_P_SMEM_WAIT_AFTER_MAX_256)
                      : kHeadDim == 64  ? TORCH_FMHA_TUNE_PIN_AFTER_MAX_64
                      : kHeadDim == 128 ? TORCH_FMHA_TUNE_PIN_AFTER_MAX_128
                                        : TORCH_FMHA_TUNE_PIN_AFTER_MAX_256);

  // The O rescale's skip (consumer.cuh) fires only when every alpha of a warp is
  // exactly 1. kExactAlpha rounds alpha's exponent so that an unchanged max gives 1;
  // kLazyRescale keeps a row's reference max through small rises (softmax.cuh).
  // Measured (one H200, session 16, docs/DESIGN.md section 6): exact alpha +0-3% TF/s
  // at D = 256 (S >= 4k), 1-3% slower at D = 64, within the spread at D = 128 (long
  // build) and 3% slower in the short build: on at D = 256 only. Exact alpha with a
  // warp-wide lazy rescale gained 2-4% TF/s over neither at D = 256, S >= 4k, but that
  // form couples a warp's rows (DESIGN 1.6); the per-row form it has now is not
  // measured: off.
  static constexpr bool kExactAlpha = kShortKeys        ? TORCH_FMHA_TUNE_SHORT_EXACT_ALPHA_128
                                      : kHeadDim == 64  ? TORCH_FMHA_TUNE_EXACT_ALPHA_64
                                      : kHeadDim == 128 ? TORCH_FMHA_TUNE_EXACT_ALPHA_128
                                                        : TORCH_FMHA_TUNE_EXACT_ALPHA_256;
  // The prefill consumer's steady round skips O *= alpha when a warp vote says every
  // alpha is exactly 1 (the same O bits: x * 1 is exact, no FTZ). Off (multiply in every
  // block) in D = 256's P-from-shared-memory build, whose P V wait sits before the
  // exps, so the multiply waits for nothing there (session 25: +0.2-2.8% TF/s), and in the
  // split tail's kernel of D = 128's (kSkipUnitRescaleInSplit, session 47); a tuning
  // experiment elsewhere (the decode kernel keeps its own skip). Without the vote's branch, in sm_90a SASS of the D = 64 and D = 128
  // (packed v) builds, ptxas moves the 64 FMULs and nearly all of P's F2FP / PRMT between
  // the MUFU.EX2s, and the loop ends 11 instructions after its last exp instead of 147 /
  // 156, as cuDNN's FP8 kernel has it (docs/DESIGN.md section 6). Blocks the vote skipped
  // then run 64 more FMULs. Measured in session 23 (one H200): 8-11% slower at D = 64, 4-9% at 128
  // (the multiply reads O and so waits for the previous P V inside the softmax; DESIGN
  // section 6). tests/gpu/test_sass_sm90.py reads the knob.
  static constexpr bool kSkipUnitRescale = !(kHeadDim == 64    ? TORCH_FMHA_TUNE_RESCALE_ALWAYS_64
                                             : kHeadDim == 128 ? TORCH_FMHA_TUNE_RESCALE_ALWAYS_128
                                                               : TORCH_FMHA_TUNE_RESCALE_ALWAYS_256) &&
                                           !(kPFromSmem && (kHeadDim == 128 ? TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_128
                                                                            : TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_256));
  // The split tail's kernel (consumer.cuh reads this one there): TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_SPLIT_128.
  static constexpr bool kSkipUnitRescaleInSplit =
      kSkipUnitRescale && !(kPFromSmem && kHeadDim == 128 && TORCH_FMHA_TUNE_P_SMEM_RESCALE_ALWAYS_SPLIT_128);
  // One exp in every kExp2PolyEvery of a softmax block as a polynomial on the FMA pipe
  // instead of MUFU.EX2 (softmax.cuh, poly_exp2); 0 in the release builds. Measured in
  // session 23 (one H200, N = 4 and 8): 3-9% slower at D = 128, 12-17% at D = 64 (DESIGN
  // section 6): what they cost in the softmax's schedule outweighs the MUFU time they free.
  static constexpr int kExp2PolyEvery = kHeadDim == 64    ? TORCH_FMHA_TUNE_EXP2_POLY_64
                                        : kHeadDim == 128 ? TORCH_FMHA_TUNE_EXP2_POLY_128
                                                          : TORCH_FMHA_TUNE_EXP2_POLY_256;
  // The exp2 arguments before the P V wait (kPvWaitAfterMax builds; softmax.cuh, update_args).
  static constexpr bool kArgsBeforePvWait =
      kPvWaitAfterMax && kExp2PolyEvery == 0 &&
      (kHeadDim == 128 ? TORCH_FMHA_TUNE_ARGS_BEFORE_WAIT_128 : kHeadDim == 256 ? TORCH_FMHA_TUNE_ARGS_BEFORE_WAIT_256 : 0);
  // A tile's first P V starts O from zero itself (consumer.cuh; the knob above says why).
  static constexpr bool kPvZeroInit = kHeadDim == 64    ? TORCH_FMHA_TUNE_PV_ZERO_INIT_64
                                      : kHeadDim == 128 ? TORCH_FMHA_TUNE_PV_ZERO_INIT_128
                                                        : TORCH_FMHA_TUNE_PV_ZERO_INIT_256;
  // The row max by integer three-input maxes (softmax.cuh, int_max_of_scores).
  static constexpr bool kIntRowMax = kHeadDim == 64    ? TORCH_FMHA_TUNE_INT_MAX_64
                                     : kHeadDim == 128 ? TORCH_FMHA_TUNE_INT_MAX_128
                                                       : TORCH_FMHA_TUNE_INT_MAX_256;
  // 128-row tiles and 256-key blocks: the causal diagonal of every other tile (the
  // tiles whose rows end 128 keys into a block) lies in the lower half of the tile's
  // first (highest) block, and the upper half is masked for every row. With this on,
  // that block's softcap, mask, softmax and P conversion run on the lower 128 keys
  // only and P's upper half is written as zeros; S and P V stay whole GEMMs (a wgmma
  // behind a runtime branch would serialise them, gemm_round), which the softmax's
  // issue slots, not the tensor core, pace at these head dims. The output has the
  // same bits either way (softmax.cuh, OnlineSoftmax::update). Only the masked-tiles
  // kernel has it (above: ptxas reschedules the steady loop). 256-key blocks only: with
  // 128-key blocks a causal diagonal hides no half block where Sk - Sq and Sk are
  // multiples of 128 (the grid's shapes); 192-key blocks do have hidden upper parts
  // (rows 128-255 and keys 256-383), not measured.
  static constexpr bool kHalfFirstBlock =
      kBlockN == 256 && (kHeadDim == 64    ? TORCH_FMHA_TUNE_HALF_FIRST_BLOCK_64
                         : kHeadDim == 128 ? TORCH_FMHA_TUNE_HALF_FIRST_BLOCK_128
                                           : false);
  static constexpr bool kLazyRescale = kHeadDim == 64    ? TORCH_FMHA_TUNE_LAZY_RESCALE_64
                                       : kHeadDim == 128 ? TORCH_FMHA_TUNE_LAZY_RESCALE_128
                                                         : TORCH_FMHA_TUNE_LAZY_RESCALE_256;

  // The output path (epilogue.cuh). V^T's rows come in a packed v's row order (csrc/vt_key_order.h,
  // packed_v_column_of_row) in every build but D = 64's of a standard v: the TMA copy of a
  // packed v, or the producer's transpose (transpose_v.cuh, vt_row). Then each lane of O holds
  // 8 consecutive output columns per 32 and stores them whole from the registers (lane
  // chunks: 8 bytes for fp8, 16 for bf16 / fp16), every output type, no stage. Measured on an
  // H200 (session 44, docs/DESIGN.md section 7) against what the builds had before:
  // - a packed v (against fp8 quad-transposed groups and, for 16-bit output, the shared-memory
  //   stage at D = 128 and column pairs at D = 256): bf16 out +1.7..+11.9% at D = 128 and
  //   +5.7..+28.9% at D = 256 (512-4k keys; 16k -0.2..+3.5%), fp8 out -0.7..+1.2% / -0.7..+3.2%;
  //   D = 64 (not its default layout) -2.8 / -2.4% at 1k, +1.7 / +1.8% at 4k, kept for one
  //   packed-v row order at every head dim;
  // - a standard v at D = 128 / 256 (2 rounds): bf16 out +5.8..+11.6% at 1k, -2.8..+3.6% from
  //   4k (dense); fp8 out -1.9..+4.0% (dense; the +4.0 within the spread), ragged -0.9..+1.6%;
  // - a standard v at D = 64: 0.6-9.7% slower (fp8 and bf16), so D = 64's transposer keeps the
  //   natural row order and its output the column pairs (2 or 4 bytes a store).
  // The paths these replaced (fp8 in quad-transposed groups and 16-bit output through a
  // shared-memory stage at D = 128, both from 2026-11-28 to session 43) and their
  // measurements: DESIGN section 7.
  static constexpr bool kVtRowsPermuted = kPackedV || kHeadDim != 64;
  static constexpr bool kLaneChunkStores = kVtRowsPermuted;

  static constexpr int kNumConsumerWG = 2;
  static constexpr int kNumThreads = 128 * (1 + kNumConsumerWG);
  static constexpr int kNumConsumerThreads = 128 * kNumConsumerWG;
  // setmaxnreg split. The CTA starts with 168 registers per thread
  // (__launch_bounds__(384, 1): 65536 / 384 rounded down to a multiple of 8);
  // setmaxnreg only moves registers between warpgroups of that pool, so the
  // split must fit in 384 * 168 = 64512 (asking for more blocks the consumers'
  // setmaxnreg.inc forever). The consumers hold S (N/2), P (N/8; none with
  // kPFromSmem) and O (D/2) per thread; D = 256 needs 208 of them.
  // The consumers' need grows with D (D = 256: 208 accumulator registers), the
  // producer's (TMA issue + V transpose state) does not; what the consumers do
  // not need goes to the producer.
  static constexpr int kLaunchRegs = 168;
  // 24 / 240 where the consumers' accumulators need it: D = 256, and D = 128
  // blocks wider than TORCH_FMHA_TUNE_WIDE_SPLIT_ABOVE_128 keys (a tuning knob:
  // with P in registers, at 224 keys the producer then spilled in its loop and at
  // 256 ptxas serialised the wgmmas anyway; the 256-key packed-v build with P from
  // shared memory takes this split: no consumer spill, 24 / 24 B of producer spill
  // stores / loads; docs/DESIGN.md section 6).
  static constexpr bool kWideSplit =
      kHeadDim == 256 || (kHeadDim == 128 && kBlockN > TORCH_FMHA_TUNE_WIDE_SPLIT_ABOVE_128);
  static constexpr int kProducerRegs = kWideSplit ? 24 : kHeadDim == 64 ? 56 : 40;
  static constexpr int kConsumerRegs = kWideSplit ? 240 : kHeadDim == 64 ? 224 : 232;
  static_assert(128 * kProducerRegs + kNumConsumerThreads * kConsumerRegs <= kNumThreads * kLaunchRegs,
                "setmaxnreg split exceeds the CTA's register pool");

  // ---- GMMA -----------------------------------------------------------------------
  // S = Q K^T: both operands K-major (head dim contiguous), SS wgmma (QGMMA).
  using TiledMmaQK = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, Accum, Shape<_64, Int<kBlockN>, Int<kHeadDim>>>(),
      Layout<Shape<Int<kNumConsumerWG>, _1, _1>>{}));
  // O += P V: A = P from registers (FP8; from shared memory with kPFromSmem), B = V^T
  // in smem, K-major (keys contiguous).
  using TiledMmaPVFromRegs = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, Accum, Shape<_64, Int<kHeadDim>, Int<kBlockN>>>(),
      Layout<Shape<Int<kNumConsumerWG>, _1, _1>>{}));
  using TiledMmaPVFromSmem = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, Accum, Shape<_64, Int<kHeadDim>, Int<kBlockN>>>(),
      Layout<Shape<Int<kNumConsumerWG>, _1, _1>>{}));
  using TiledMmaPV = cute::conditional_t<kPFromSmem, TiledMmaPVFromSmem, TiledMmaPVFromRegs>;

  // ---- shared memory layouts (all byte-sized elements) ---------------------------
  using SmemAtomQ = decltype(cutlass::gemm::collective::detail::ss_smem_selector<
                             GMMA::Major::K, Element, Int<kBlockM>, Int<kHeadDim>>());
  using SmemLayoutQ = decltype(tile_to_shape(SmemAtomQ{}, Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  using SmemLayoutQStages = decltype(tile_to_shape(
      SmemAtomQ{}, Shape<Int<kBlockM>, Int<kHeadDim>, Int<kQStages>>{}));  // (M, D, kQStages)
  // K: [kBlockN, D] per stage, head dim contiguous.
  using SmemAtomK = decltype(cutlass::gemm::collective::detail::ss_smem_selector<
                             GMMA::Major::K, Element, Int<kBlockN>, Int<kHeadDim>>());
  using SmemLayoutK = decltype(tile_to_shape(
      SmemAtomK{}, Shape<Int<kBlockN>, Int<kHeadDim>, Int<kStages>>{}));
  // V scratch: [kBlockN, D] per slot as TMA lands it (row-major V). Same layout as K.
  using SmemLayoutVScratch = SmemLayoutK;
  // V^T: [D, kBlockN] per stage, keys contiguous (the K-major B operand of P V).
  // Column k of V^T holds key row transpose_key_perm(k) of the block (transpose_v.cuh).
  using SmemAtomVt = decltype(cutlass::gemm::collective::detail::ss_smem_selector<
                              GMMA::Major::K, Element, Int<kHeadDim>, Int<kBlockN>>());
  using SmemLayoutVt = decltype(tile_to_shape(
      SmemAtomVt{}, Shape<Int<kHeadDim>, Int<kBlockN>, Int<kStages>>{}));

  // P (kPFromSmem): [kBlockM, kBlockN] e4m3, keys contiguous (the K-major A operand of
  // P V); rows 64 w .. 64 w + 63 belong to consumer warpgroup w. Column k holds key
  // transpose_key_perm(k), as V^T (convert_p's order).
  using SmemAtomP = decltype(cutlass::gemm::collective::detail::ss_smem_selector<
                             GMMA::Major::K, Element, Int<kBlockM>, Int<kBlockN>>());
  using SmemLayoutP = decltype(tile_to_shape(SmemAtomP{}, Shape<Int<kBlockM>, Int<kBlockN>>{}));
  static constexpr int kPBytes = kPFromSmem ? kBlockM * kBlockN : 0;
  static constexpr int kPAtomBytes = decltype(size<1>(SmemAtomP{}))::value;  // the swizzle atom's width (PSmemOffsets)

  static constexpr int kTileQBytes = kBlockM * kHeadDim;
  static constexpr int kTileKVBytes = kBlockN * kHeadDim;  // = TILE_V of the scratch FIFO
  static_assert(cosize_v<SmemLayoutQ> == kTileQBytes);
  static_assert(cosize_v<SmemLayoutQStages> == kTileQBytes * kQStages);
  static_assert(cosize_v<SmemLayoutK> == kTileKVBytes * kStages);
  static_assert(cosize_v<SmemLayoutVt> == kTileKVBytes * kStages);
  // V scratch FIFO bytes (I1: kStages slots; none when TMA lands V^T directly).
  static constexpr int kVScratchBytes = kPackedV ? 0 : kStages * kTileKVBytes;

  // ---- TMA ------------------------------------------------------------------------
  // Global tensors are viewed as (seq, d, head, batch) with strides in elements.
  using GmemShape = Shape<int32_t, int32_t, int32_t, int32_t>;
  using GmemStride = Stride<int64_t, _1, int64_t, int64_t>;
  using GmemTensor = decltype(make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)),
                                          GmemShape{}, GmemStride{}));
  using TmaQ = decltype(make_tma_copy(SM90_TMA_LOAD{}, GmemTensor{}, SmemLayoutQ{},
                                      Shape<Int<kBlockM>, Int<kHeadDim>>{}, _1{}));
  using TmaKV = decltype(make_tma_copy(SM90_TMA_LOAD{}, GmemTensor{},
                                       take<0, 2>(SmemLayoutK{}),
                                       Shape<Int<kBlockN>, Int<kHeadDim>>{}, _1{}));
  // kPackedVt: V viewed as (d, keys, head, batch), keys contiguous, one
  // (D, kBlockN) box per block straight into a V^T stage.
  using TmaVt = decltype(make_tma_copy(SM90_TMA_LOAD{}, GmemTensor{},
                                       take<0, 2>(SmemLayoutVt{}),
                                       Shape<Int<kHeadDim>, Int<kBlockN>>{}, _1{}));
  using TmaV = cute::conditional_t<kPackedV, TmaVt, TmaKV>;
};

}  // namespace torch_fmha::kernel
