// torch_fmha: SM90 FP8 forward kernel, head dim 128, dense layout, short-key
// build (<= short_keys_max_seqlen(128, masked, true) keys, or a narrow window), packed v
// (csrc/vt_key_order.h: TMA loads V^T blocks directly; kernel_traits.cuh, VLayout).
#include "fwd_launch_template.cuh"

namespace torch_fmha {
template cudaError_t launch_fwd_fp8<128, false, true, true>(const FwdParams&, cudaStream_t);
}  // namespace torch_fmha
