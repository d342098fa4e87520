// torch_fmha: cuTensorMapEncodeTiled with a cached driver entry point
// (tma_encode.h says why).
#include "tma_encode.h"

namespace torch_fmha {

namespace {

struct EncodeEntry {
  PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  cudaError_t error = cudaSuccess;  // why fn is null
};

// The same query CUTLASS 4.2's CUTLASS_CUDA_DRIVER_WRAPPER_DECL makes on
// every call (cutlass/cuda_host_adapter.hpp), made once per process.
EncodeEntry lookup_encode_tiled() {
  void* pfn = nullptr;
  cudaDriverEntryPointQueryResult status = cudaDriverEntryPointSymbolNotFound;
#if (__CUDACC_VER_MAJOR__ > 12)
  const cudaError_t err = cudaGetDriverEntryPointByVersion(
      "cuTensorMapEncodeTiled", &pfn, 12000, cudaEnableDefault, &status);
#else
  const cudaError_t err =
      cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &pfn, cudaEnableDefault, &status);
#endif
  EncodeEntry e;
  if (err != cudaSuccess) {
    e.error = err;
  } else if (status != cudaDriverEntryPointSuccess || pfn == nullptr) {
    e.error = cudaErrorSymbolNotFound;
  } else {
    e.fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(pfn);
  }
  return e;
}

thread_local cudaError_t t_encode_error = cudaSuccess;

void note_error(cudaError_t e) {
  if (t_encode_error == cudaSuccess) t_encode_error = e;
}

}  // namespace

CUresult tma_encode_tiled(CUtensorMap* tensor_map, CUtensorMapDataType data_type,
                          cuuint32_t rank, void* global_address, const cuuint64_t* global_dim,
                          const cuuint64_t* global_strides, const cuuint32_t* box_dim,
                          const cuuint32_t* element_strides, CUtensorMapInterleave interleave,
                          CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2_promotion,
                          CUtensorMapFloatOOBfill oob_fill) {
  // Thread-safe one-time initialisation (function-local static). A failed
  // lookup is not retried: the driver does not gain the symbol later.
  static const EncodeEntry entry = lookup_encode_tiled();
  if (entry.fn == nullptr) {
    note_error(entry.error);
    return CUDA_ERROR_UNKNOWN;
  }
  const CUresult r = entry.fn(tensor_map, data_type, rank, global_address, global_dim,
                              global_strides, box_dim, element_strides, interleave, swizzle,
                              l2_promotion, oob_fill);
  if (r != CUDA_SUCCESS) note_error(cudaErrorInvalidValue);
  return r;
}

cudaError_t take_tma_encode_error() {
  const cudaError_t e = t_encode_error;
  t_encode_error = cudaSuccess;
  return e;
}

}  // namespace torch_fmha
