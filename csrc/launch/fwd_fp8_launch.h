// torch_fmha: per-head-dim FP8 forward launchers. Declared here, defined in
// fwd_launch_template.cuh, explicitly instantiated one head dim per
// translation unit (fwd_fp8_hdim{64,128,256}.cu) so they compile in parallel.
#pragma once

#include <cuda_runtime.h>

#include "../params.h"

namespace torch_fmha {

template <int kHeadDim>
cudaError_t launch_fwd_fp8(const FwdParams& params, cudaStream_t stream);

extern template cudaError_t launch_fwd_fp8<64>(const FwdParams&, cudaStream_t);
extern template cudaError_t launch_fwd_fp8<128>(const FwdParams&, cudaStream_t);
extern template cudaError_t launch_fwd_fp8<256>(const FwdParams&, cudaStream_t);

}  // namespace torch_fmha
