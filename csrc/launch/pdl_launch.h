// torch_fmha: a kernel launch as the programmatic dependent of the kernel before it on the
// stream (Programmatic Dependent Launch, sm_90; kernel/grid_dependency.cuh). The merge kernel
// (launch/merge_splits.cu) and the decode kernel (launch/decode.cu) launch so. Nothing here
// includes torch.
#pragma once

#include <cuda_runtime.h>

namespace torch_fmha {

// Enqueues fn<<<grid, block, smem, stream>>>(p) with cudaLaunchAttributeProgrammaticStreamSerialization
// set to `programmatic`: the grid may be scheduled while the kernel before it drains (or, after
// a kernel that allows it, once all its CTAs did); the kernel itself waits (griddepcontrol.wait)
// before it touches what that kernel writes or reads. Captured into a CUDA graph as a
// programmatic edge. `programmatic` false: a stream-ordered launch, as <<<>>>.
template <class Params>
cudaError_t launch_programmatic_dependent(void (*fn)(Params), dim3 grid, dim3 block, size_t smem,
                                          cudaStream_t stream, bool programmatic, const Params& p) {
  cudaLaunchAttribute pdl[1];
  pdl[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  pdl[0].val.programmaticStreamSerializationAllowed = programmatic;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = pdl;
  config.numAttrs = 1;
  const cudaError_t launched = cudaLaunchKernelEx(&config, fn, p);
  // A refused launch is also the thread's last error: read it here (clearing it, as a <<<>>>
  // launch's check with cudaGetLastError would) so that it is reported once, by this launch,
  // and not again by the next launch's check.
  const cudaError_t last = cudaGetLastError();
  return launched != cudaSuccess ? launched : last;
}

}  // namespace torch_fmha
