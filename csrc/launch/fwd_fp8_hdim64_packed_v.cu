// torch_fmha: SM90 FP8 forward kernel, head dim 64, dense layout, packed v
// (csrc/vt_key_order.h: TMA loads V^T blocks directly; kernel_traits.cuh, VLayout).
#include "fwd_launch_template.cuh"

namespace torch_fmha {
template cudaError_t launch_fwd_fp8<64, false, false, true>(const FwdParams&, cudaStream_t);
}  // namespace torch_fmha
