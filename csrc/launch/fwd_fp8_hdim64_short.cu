// torch_fmha: SM90 FP8 forward kernel, head dim 64, dense layout, the short-key
// build (kernel::KvBlocking::kShort; dispatch_fwd.cu picks it for
// seqlen_k <= short_keys_max_seqlen(64)).
#include "fwd_launch_template.cuh"

namespace torch_fmha {
template cudaError_t launch_fwd_fp8<64, false, true>(const FwdParams&, cudaStream_t);
}  // namespace torch_fmha
