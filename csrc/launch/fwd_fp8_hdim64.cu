// torch_fmha: SM90 FP8 forward kernel, head dim 64 (one instantiation per
// translation unit so the head dims compile in parallel).
#include "fwd_launch_template.cuh"

namespace torch_fmha {
template cudaError_t launch_fwd_fp8<64>(const FwdParams&, cudaStream_t);
}  // namespace torch_fmha
