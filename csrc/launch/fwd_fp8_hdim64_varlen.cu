// torch_fmha: SM90 FP8 forward kernel, head dim 64, ragged batch (varlen)
// (one instantiation per translation unit so the variants compile in parallel).
#include "fwd_launch_template.cuh"

namespace torch_fmha {
template cudaError_t launch_fwd_fp8<64, true>(const FwdParams&, cudaStream_t);
}  // namespace torch_fmha
