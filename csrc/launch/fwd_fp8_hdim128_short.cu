// torch_fmha: SM90 FP8 forward kernel, head dim 128, dense layout, 128-key
// blocks for short key sequences (kernel::KvBlocking::kShort; dispatch_fwd.cu
// picks it for seqlen_k <= kShortKeysMaxSeqlen).
#include "fwd_launch_template.cuh"

namespace torch_fmha {
template cudaError_t launch_fwd_fp8<128, false, true>(const FwdParams&, cudaStream_t);
}  // namespace torch_fmha
