// torch_fmha: per-head-dim FP8 forward launchers. Declared here, defined in
// fwd_launch_template.cuh, explicitly instantiated one (head dim, layout) per
// translation unit (fwd_fp8_hdim{64,128,256}{,_varlen}.cu,
// fwd_fp8_hdim128_short.cu) so they compile in parallel.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#include "../params.h"

namespace torch_fmha {

// kVarlen: ragged batch (p.cu_seqlens_* set, varlen tile scheduler + prep
// kernel) or dense layout. Same kernel body; only the scheduler type differs.
// kShortKeys: the dense build with smaller key blocks
// (kernel::KvBlocking::kShort), for seqlen_k <= short_keys_max_seqlen(D, masked, packed v)
// or a window spanning at most short_keys_max_window_span(D) keys per tile.
// kPackedV: v is a packed v (dense only, p.v_dim_stride != 1, csrc/vt_key_order.h):
// TMA loads V^T blocks directly (kernel::VLayout::kPackedVt).
template <int kHeadDim, bool kVarlen, bool kShortKeys = false, bool kPackedV = false>
cudaError_t launch_fwd_fp8(const FwdParams& params, cudaStream_t stream);

// Longest dense key sequence a head dim's short-key build is used for (0:
// none). Measured (docs/DESIGN.md section 6; 2026-11-28, standard v): at D = 128, 128-key
// against 192-key blocks won up to 2048 keys and lost from 4096 on. D = 64 has none
// since its long build went to 256-key blocks (no partial block at any
// power-of-two length from 256 on; 128-key blocks were 2% faster only at 512
// keys causal and 9-15% slower at 512 / 1024 non-causal and 1024 causal);
// D = 256's 64-key variant was slower everywhere. The D = 128 long build for a packed
// v has 256-key blocks since session 24 (P through shared memory). At 2048 keys the
// short build measured 777 / 625 TF/s non-causal / causal, a 256-key long build (its P V
// wait where ptxas puts it, not the release's after the max) 807 / 583 (one H200, one
// round of the long one, DESIGN section 6): a judgement call, non-causal 4% faster and
// causal 7% slower, so the limit stayed 2048 for the masked calls (with a packed v 4096
// from session 31 to 37, 2048 again since session 38, below) and stays 2048 for the
// standard v.
#ifndef TORCH_FMHA_TUNE_SHORT_MAX_SEQLEN_128
#define TORCH_FMHA_TUNE_SHORT_MAX_SEQLEN_128 2048
#endif
// The limit for a packed v without a mask (no causal, no window) alone: 256 since session 41,
// so 257-2048 keys run the 256-key long build. Session 25 (one H200, 3 rounds, DESIGN
// section 6) set 1024: 2048 keys 777 -> 810 TF/s (ours / cuDNN FP8 0.886 -> 0.931), and at
// 1024 keys the long build was as fast as the short one (714 against 716). Since then the
// long build got the fp8 group stores (session 32) among other changes; session 41 (one H200,
// same call, rounds in alternating processes, FP8 out) measured again: 1024 keys short
// 724-727 TF/s, long 784-786 (+8.1%, 4 rounds); 512 keys short 612-614, long 656-663 (+8.3%,
// 3 rounds). 256 keys and fewer (one long block) were not timed and stay short. The check is
// seqlen_k <= limit. The packed / standard bitwise GPU test (test_fwd_sm90.py) compares only
// where both run the same tiling.
#ifndef TORCH_FMHA_TUNE_SHORT_MAX_SEQLEN_PACKED_UNMASKED_128
#define TORCH_FMHA_TUNE_SHORT_MAX_SEQLEN_PACKED_UNMASKED_128 256
#endif
// The limit for a packed v with a causal mask or a window: 2048 (4096 in sessions 31-37). A
// causal 128-row tile ends in one diagonal block; with 128-key blocks nothing past the
// diagonal is computed, with the packed-v long build's 256-key blocks half of every second
// tile's last block is, while 128-key blocks pay their per-block overhead twice as often
// (since session 41 the long build's causal launches run a kernel that softmaxes only the
// visible half, TORCH_FMHA_TUNE_HALF_FIRST_BLOCK_128: kernel_traits.cuh; session 41 measured
// causal 2048 keys on it against the short build: 626-636 against 641-654 TF/s, medians 630 /
// 648, -2.8%).
// Session 31 (one H200, same call, 2 rounds, causal 4096 keys, FP8 out) measured the short
// build 3.1% faster (706 -> 728 TF/s) and moved the limit to 4096; session 32 then gave the
// long build its cheaper fp8 epilogue (the groups). Session 38 (one H200, same call, 4
// rounds in alternating processes, docs/DESIGN.md section 6) measured the long build again:
// causal 4096 keys 724 -> 742 TF/s (+2.4%), 2048 keys 650 -> 634 (-2.4%), so the limit is
// 2048 again. Session 30's build with the limit at 8192 had causal 8192 keys 817 -> 779
// (-4.6%). Windows wider than short_keys_max_window_span come along unmeasured (a
// causal-like mask). The standard v's long build (192-key blocks) keeps 2048 too.
#ifndef TORCH_FMHA_TUNE_SHORT_MAX_SEQLEN_PACKED_MASKED_128
#define TORCH_FMHA_TUNE_SHORT_MAX_SEQLEN_PACKED_MASKED_128 2048
#endif
// masked: causal or a window; packed_v: a packed v (p.v_dim_stride != 1).
constexpr int short_keys_max_seqlen(int head_dim, bool masked, bool packed_v) {
  return head_dim != 128 ? 0
         : !packed_v     ? TORCH_FMHA_TUNE_SHORT_MAX_SEQLEN_128
         : masked        ? TORCH_FMHA_TUNE_SHORT_MAX_SEQLEN_PACKED_MASKED_128
                         : TORCH_FMHA_TUNE_SHORT_MAX_SEQLEN_PACKED_UNMASKED_128;
}

// A window bounds the keys one 128-row tile reads to window_left + window_right
// + 128, whatever seqlen_k is. A dense D = 128 call whose window span is at most
// this many keys runs the short-key build too: its 128-key blocks waste less on a
// window's two partial blocks than 192-key ones (a (1024, 0) window: 1152 keys, 9 x
// 128 against 7 x 192 blocks), and the span is the length the short build wins at
// (above). Measured (one H200, session 19, docs/DESIGN.md section 6): window (1024,
// 0) at S = 16k 519 -> 593 TF/s, full causal unchanged (821 / 823). Dense == varlen
// bitwise does not hold for such windows (a packed batch keeps 192-key blocks).
#ifndef TORCH_FMHA_TUNE_SHORT_WINDOW_SPAN_128
#define TORCH_FMHA_TUNE_SHORT_WINDOW_SPAN_128 2048
#endif
constexpr int short_keys_max_window_span(int head_dim) {
  return head_dim == 128 ? TORCH_FMHA_TUNE_SHORT_WINDOW_SPAN_128 : 0;
}

extern template cudaError_t launch_fwd_fp8<64, false>(const FwdParams&, cudaStream_t);
extern template cudaError_t launch_fwd_fp8<128, false>(const FwdParams&, cudaStream_t);
extern template cudaError_t launch_fwd_fp8<128, false, true>(const FwdParams&, cudaStream_t);
extern template cudaError_t launch_fwd_fp8<256, false>(const FwdParams&, cudaStream_t);
extern template cudaError_t launch_fwd_fp8<64, false, false, true>(const FwdParams&, cudaStream_t);
extern template cudaError_t launch_fwd_fp8<128, false, false, true>(const FwdParams&, cudaStream_t);
extern template cudaError_t launch_fwd_fp8<128, false, true, true>(const FwdParams&, cudaStream_t);
extern template cudaError_t launch_fwd_fp8<256, false, false, true>(const FwdParams&, cudaStream_t);
extern template cudaError_t launch_fwd_fp8<64, true>(const FwdParams&, cudaStream_t);
extern template cudaError_t launch_fwd_fp8<128, true>(const FwdParams&, cudaStream_t);
extern template cudaError_t launch_fwd_fp8<256, true>(const FwdParams&, cudaStream_t);

// Extents of the (rows, heads, batch) modes of q and k/v as the TMA
// descriptors see them: dense (Sq | Sk, H, B); varlen (Tq | Tk, H, 1), all
// sequences being rows of one packed batch. Shared by the launcher and the
// stride checks of fwd_unsupported_reason.
struct TmaExtents {
  int32_t rows_q;
  int32_t rows_k;
  int32_t batch;
};

inline TmaExtents tma_extents(const FwdParams& p) {
  if (p.cu_seqlens_q != nullptr) return {p.total_q, p.total_k, 1};
  return {p.seqlen_q, p.seqlen_k, p.batch};
}

}  // namespace torch_fmha
