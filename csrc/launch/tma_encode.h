// torch_fmha: cuTensorMapEncodeTiled through a driver entry point looked up
// once per process.
//
// CuTe's make_tma_copy encodes each TMA descriptor with
// CUTLASS_CUDA_DRIVER_WRAPPER_CALL(cuTensorMapEncodeTiled), which (without
// CUTLASS_ENABLE_DIRECT_CUDA_DRIVER_CALL) asks the runtime for the driver
// entry point on every call: three cudaGetDriverEntryPoint lookups per launch
// (q, k, v), host time on every attention call. fwd_launch_template.cuh
// points CuTe's direct-call path at tma_encode_tiled instead (see there), so
// the lookup runs once; the encoding itself is unchanged (same arguments,
// same driver function; a failed lookup returns CUDA_ERROR_UNKNOWN, as
// CUTLASS does).
//
// CuTe ignores the result in release builds (it only asserts), so a failure
// is also kept for the launcher: take_tma_encode_error() returns the first
// failure on this thread since the last call (cudaSuccess if none) and
// clears it; the launcher returns it instead of launching with a descriptor
// that was never written. (Before, a failed lookup surfaced through
// cudaGetLastError after the launch; an encode failure not at all.)
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

namespace torch_fmha {

CUresult tma_encode_tiled(CUtensorMap* tensor_map, CUtensorMapDataType data_type,
                          cuuint32_t rank, void* global_address, const cuuint64_t* global_dim,
                          const cuuint64_t* global_strides, const cuuint32_t* box_dim,
                          const cuuint32_t* element_strides, CUtensorMapInterleave interleave,
                          CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2_promotion,
                          CUtensorMapFloatOOBfill oob_fill);

cudaError_t take_tma_encode_error();

}  // namespace torch_fmha
