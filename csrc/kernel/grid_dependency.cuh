// torch_fmha: Programmatic Dependent Launch (PDL, sm_90) between two kernels of one
// stream: the split-KV decode kernel (primary, decode.cuh) and the merge kernel
// (dependent, merge_splits.cuh), launched with cudaLaunchAttributeProgrammaticStreamSerialization
// (csrc/launch/merge_splits.cu). The decode kernel is also launched so (csrc/launch/decode.cu,
// session 49): the dependent of whatever kernel precedes it on the stream, which need not
// trigger anything (its CTAs' exit does).
//
// - wait_for_primary_grid (griddepcontrol.wait, SASS ACQBULK): blocks until every CTA of
//   the primary grid has completed and its memory operations are visible. Nothing in
//   the dependent may read what the primary writes, or write what it reads, before it.
//   A no-op when the kernel was launched without the attribute.
// - allow_dependent_launch (griddepcontrol.launch_dependents, SASS PREEXIT): the
//   dependent grid may be scheduled once every CTA of this grid has executed it or
//   exited. It gives no memory guarantee (the dependent's wait does), so where it sits
//   only decides how early the dependent's CTAs take SM slots. A no-op without a
//   dependent launched with the attribute.
#pragma once

namespace torch_fmha::kernel {

// Both are sm_90 instructions; an older target (a host-side checker compiled for the
// default arch) gets nothing, as a launch without the attribute would.
__device__ __forceinline__ void wait_for_primary_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // "memory": no load or store of the dependent is moved above the wait.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // No "memory" clobber: the trigger orders nothing, and leaving the primary's loads and
  // stores free keeps its code as it was without it.
  asm volatile("griddepcontrol.launch_dependents;\n");
#endif
}

}  // namespace torch_fmha::kernel
