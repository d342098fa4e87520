// Host-only check (no GPU needed) that every TMA descriptor the launcher
// builds with CuTe's make_tma_copy is encoded through
// torch_fmha::tma_encode_tiled (csrc/launch/tma_encode.h), whose driver entry
// point is looked up once per process, and not through CUTLASS's wrapper,
// which looks it up (cudaGetDriverEntryPoint) on every descriptor.
//
// fwd_launch_template.cuh sets up the redirect; this file defines
// tma_encode_tiled itself (counting calls) instead of linking tma_encode.cu,
// so it needs no driver. Without the redirect the count stays 0.
// Build + run: nvcc -std=c++17 --expt-relaxed-constexpr -I<cutlass> -Icsrc \
//   tests/host_checks/check_tma_encode_redirect.cu -o build/check_tma && build/check_tma
#include "launch/fwd_launch_template.cuh"

#include <cstdio>

namespace torch_fmha {

static int g_encode_calls = 0;

CUresult tma_encode_tiled(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                          const cuuint64_t*, const cuuint32_t*, const cuuint32_t*,
                          CUtensorMapInterleave, CUtensorMapSwizzle, CUtensorMapL2promotion,
                          CUtensorMapFloatOOBfill) {
  ++g_encode_calls;
  return CUDA_SUCCESS;
}

cudaError_t take_tma_encode_error() { return cudaSuccess; }

}  // namespace torch_fmha

template <int kHeadDim>
int check() {
  using namespace cute;
  using Traits = torch_fmha::kernel::Fp8FwdTraits<kHeadDim>;
  using Element = typename Traits::Element;
  constexpr int kRows = 256, kHeads = 2;
  alignas(128) static unsigned char buf[kRows * kHeads * kHeadDim];
  // (rows, D, heads, batch) as the launcher lays out q and k/v.
  auto g = make_tensor(make_gmem_ptr(reinterpret_cast<Element const*>(buf)),
                       make_shape(kRows, int32_t(kHeadDim), kHeads, 1),
                       make_stride(int64_t(kHeads * kHeadDim), _1{}, int64_t(kHeadDim),
                                   int64_t(kRows * kHeads * kHeadDim)));
  const int before = torch_fmha::g_encode_calls;
  auto tma_q = make_tma_copy(SM90_TMA_LOAD{}, g, typename Traits::SmemLayoutQ{},
                             Shape<Int<Traits::kBlockM>, Int<kHeadDim>>{}, _1{});
  auto tma_k = make_tma_copy(SM90_TMA_LOAD{}, g, take<0, 2>(typename Traits::SmemLayoutK{}),
                             Shape<Int<Traits::kBlockN>, Int<kHeadDim>>{}, _1{});
  (void)tma_q;
  (void)tma_k;
  const int calls = torch_fmha::g_encode_calls - before;
  const bool ok = calls == 2;
  std::printf("head_dim %d: %s (%d of 2 descriptors encoded through tma_encode_tiled)\n", kHeadDim,
              ok ? "ok" : "FAILED", calls);
  return ok ? 0 : 1;
}

int main() { return check<64>() | check<128>() | check<256>(); }
