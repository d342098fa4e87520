// torch_fmha: SM90 FP8 forward kernel, head dim 128, dense layout, the short-key
// build (kernel::KvBlocking::kShort; dispatch_fwd.cu picks it for
// seqlen_k <= short_keys_max_seqlen(128, ...) and for narrow windows,
// short_keys_max_window_span(128)).
#include "fwd_launch_template.cuh"

namespace torch_fmha {
template cudaError_t launch_fwd_fp8<128, false, true>(const FwdParams&, cudaStream_t);
}  // namespace torch_fmha
