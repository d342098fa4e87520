// torch_fmha: host side of the split-KV decode kernel.
#include <atomic>

#include "../kernel/decode.cuh"
#include "launch_decode.h"

namespace torch_fmha {

bool decode_kernel_supports(int head_dim, int rows) {
  return (head_dim == 64 || head_dim == 128 || head_dim == 256) && rows >= 1 &&
         rows <= kernel::kDecodeRows;
}

namespace {

template <int kD, bool kPaged>
cudaError_t launch(const DecodeParams& p, cudaStream_t stream) {
  constexpr int kSmem = kernel::DecodeSmem<kD>::kBytes;
  auto fn = kernel::decode_kernel<kD, kPaged>;
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  static std::atomic<bool> raised[64] = {};  // the dynamic shared memory limit, once per device
  if (device < 0 || device >= 64) return cudaErrorInvalidDevice;
  if (!raised[device].load(std::memory_order_acquire)) {
    err = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    if (err != cudaSuccess) return err;
    raised[device].store(true, std::memory_order_release);
  }
  const dim3 grid(unsigned(p.splits), unsigned(p.heads_kv), unsigned(p.batch));
  fn<<<grid, 32 * kernel::kDecodeWarps, kSmem, stream>>>(p);
  return cudaGetLastError();
}

template <int kD>
int ctas_per_sm() {
  static std::atomic<int> cached[64] = {};  // 0: not read yet
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return 1;
  if (cached[device].load(std::memory_order_acquire) == 0) {
    constexpr int kSmem = kernel::DecodeSmem<kD>::kBytes;
    auto fn = kernel::decode_kernel<kD, false>;  // the paged build has the same shared memory
    int n = 1;
    if (cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fn, 32 * kernel::kDecodeWarps, kSmem) != cudaSuccess) {
      n = 1;
    }
    cached[device].store(n > 0 ? n : 1, std::memory_order_release);
  }
  return cached[device].load(std::memory_order_acquire);
}

}  // namespace

int decode_ctas_per_sm(int head_dim) {
  switch (head_dim) {
    case 64: return ctas_per_sm<64>();
    case 128: return ctas_per_sm<128>();
    case 256: return ctas_per_sm<256>();
    default: return 1;
  }
}

cudaError_t launch_decode(const DecodeParams& p, cudaStream_t stream) {
  if (p.batch == 0 || p.heads_kv == 0 || p.splits == 0) return cudaSuccess;
  if (p.batch > 65535 || p.heads_kv > 65535 || p.splits > 65535 || p.seqlen_q * p.group > kernel::kDecodeRows) {
    return cudaErrorInvalidConfiguration;
  }
  const bool paged = p.page_table != nullptr;
  switch (p.head_dim) {
    case 64: return paged ? launch<64, true>(p, stream) : launch<64, false>(p, stream);
    case 128: return paged ? launch<128, true>(p, stream) : launch<128, false>(p, stream);
    case 256: return paged ? launch<256, true>(p, stream) : launch<256, false>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace torch_fmha
