// torch_fmha: host side of the split-KV decode kernel.
#include <algorithm>
#include <atomic>

#include "../kernel/decode.cuh"
#include "launch_decode.h"
#include "pdl_launch.h"

// Developer knob for an A/B on the GPU (TORCH_FMHA_NVCC_EXTRA=-DTORCH_FMHA_TUNE_DECODE_ROW_TILES=1):
// the most 16-row tiles per KV head a step may take on the decode kernel; 1 is the kernel
// of session 34 and before (up to 16 rows; steps past them ran the plans of ATen ops).
#ifndef TORCH_FMHA_TUNE_DECODE_ROW_TILES
#define TORCH_FMHA_TUNE_DECODE_ROW_TILES 4
#endif
// Developer knob for an A/B on the GPU (TORCH_FMHA_NVCC_EXTRA=-DTORCH_FMHA_TUNE_DECODE_PDL=0):
// 0 launches the decode kernel stream-ordered, as before session 49 (its griddepcontrol.wait
// is then a no-op).
#ifndef TORCH_FMHA_TUNE_DECODE_PDL
#define TORCH_FMHA_TUNE_DECODE_PDL 1
#endif
static_assert(TORCH_FMHA_TUNE_DECODE_ROW_TILES >= 1 &&
              TORCH_FMHA_TUNE_DECODE_ROW_TILES <= torch_fmha::kernel::kDecodeMaxRowTiles);

namespace torch_fmha {

bool decode_kernel_supports(int head_dim, int rows) {
  return (head_dim == 64 || head_dim == 128 || head_dim == 256) && rows >= 1 &&
         rows <= kernel::kDecodeRows * TORCH_FMHA_TUNE_DECODE_ROW_TILES;
}

int decode_row_tiles(int rows) { return (rows + kernel::kDecodeRows - 1) / kernel::kDecodeRows; }

namespace {

// Per device and head dim: how many CTAs an SM holds at the kernel's own shared memory
// (kBytes), and the dynamic shared memory that holds it to one CTA fewer (0: none found).
// Both from the occupancy API, once; the launch only reads them.
struct DecodeOccupancy {
  int ctas_per_sm = 0;
  int fewer_smem_bytes = 0;  // dynamic shared memory for ctas_per_sm - 1 CTAs per SM
};

template <int kD>
DecodeOccupancy occupancy() {
  static std::atomic<int> cached_ctas[64] = {};   // 0: not read yet
  static std::atomic<int> cached_fewer[64] = {};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return {1, 0};
  if (cached_ctas[device].load(std::memory_order_acquire) == 0) {
    constexpr int kSmem = kernel::DecodeSmem<kD>::kBytes;
    constexpr int kThreads = 32 * kernel::kDecodeWarps<kD>;
    auto fn = kernel::decode_kernel<kD, false, kernel::DecodeRows::kOneTile>;  // the others: the same shared memory
    int per_sm = 0, per_block = 0, reserved = 0;
    cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device);
    cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, device);
    int n = 1, fewer = 0;
    if (cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fn, kThreads, kSmem) != cudaSuccess || n < 1) {
      n = 1;
    }
    if (n >= 2 && per_sm > 0) {
      // The least shared memory with which n CTAs no longer fit, 128-byte aligned.
      const int bytes = (per_sm / n - reserved + 1 + 127) / 128 * 128;
      int m = 0;
      if (bytes > kSmem && bytes <= per_block &&
          cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) == cudaSuccess &&
          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&m, fn, kThreads, bytes) == cudaSuccess && m == n - 1) {
        fewer = bytes;
      }
    }
    cached_fewer[device].store(fewer, std::memory_order_release);
    cached_ctas[device].store(n, std::memory_order_release);
  }
  return {cached_ctas[device].load(std::memory_order_acquire), cached_fewer[device].load(std::memory_order_acquire)};
}

template <int kD, bool kPaged, kernel::DecodeRows kRows>
cudaError_t launch(const DecodeParams& p, bool fewer_ctas_per_sm, cudaStream_t stream) {
  const DecodeOccupancy occ = occupancy<kD>();
  const int smem = fewer_ctas_per_sm && occ.fewer_smem_bytes > 0 ? occ.fewer_smem_bytes
                                                                : kernel::DecodeSmem<kD>::kBytes;
  auto fn = kernel::decode_kernel<kD, kPaged, kRows>;
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  static std::atomic<int> raised[64] = {};  // the dynamic shared memory limit set, per device
  if (device < 0 || device >= 64) return cudaErrorInvalidDevice;
  if (raised[device].load(std::memory_order_acquire) < smem) {
    const int limit = std::max(smem, occ.fewer_smem_bytes);
    err = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, limit);
    if (err != cudaSuccess) return err;
    raised[device].store(limit, std::memory_order_release);
  }
  // Programmatic Dependent Launch: the grid may be scheduled while the kernel before it on
  // the stream drains; the kernel waits for that grid's completion and memory before its
  // first global access (kernel/decode.cuh).
  const dim3 grid(unsigned(p.splits * p.row_tiles), unsigned(p.heads_kv), unsigned(p.batch));
  return launch_programmatic_dependent(fn, grid, dim3(32 * kernel::kDecodeWarps<kD>), size_t(smem), stream,
                                       TORCH_FMHA_TUNE_DECODE_PDL != 0, p);
}

template <kernel::DecodeRows kRows>
cudaError_t launch_head_dim(const DecodeParams& p, bool fewer_ctas_per_sm, cudaStream_t stream) {
  const bool paged = p.page_table != nullptr;
  switch (p.head_dim) {
    case 64:
      return paged ? launch<64, true, kRows>(p, fewer_ctas_per_sm, stream)
                   : launch<64, false, kRows>(p, fewer_ctas_per_sm, stream);
    case 128:
      return paged ? launch<128, true, kRows>(p, fewer_ctas_per_sm, stream)
                   : launch<128, false, kRows>(p, fewer_ctas_per_sm, stream);
    case 256:
      return paged ? launch<256, true, kRows>(p, fewer_ctas_per_sm, stream)
                   : launch<256, false, kRows>(p, fewer_ctas_per_sm, stream);
    default: return cudaErrorInvalidValue;
  }
}

template <int kD>
int ctas_per_sm() {
  return occupancy<kD>().ctas_per_sm;
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

cudaError_t launch_decode(const DecodeParams& p, bool fewer_ctas_per_sm, cudaStream_t stream) {
  if (p.batch == 0 || p.heads_kv == 0 || p.splits == 0) return cudaSuccess;
  if (p.batch > 65535 || p.heads_kv > 65535 || p.splits > 65535 || p.row_tiles < 1 ||
      p.row_tiles > kernel::kDecodeMaxRowTiles || p.row_tiles != decode_row_tiles(p.seqlen_q * p.group)) {
    return cudaErrorInvalidConfiguration;
  }
  using kernel::DecodeRows;
  if (p.cu_seqlens_q != nullptr) {
    if (p.total_q < 0 || p.seqlen_q < 1) return cudaErrorInvalidConfiguration;
    return launch_head_dim<DecodeRows::kPacked>(p, fewer_ctas_per_sm, stream);
  }
  return p.row_tiles > 1 ? launch_head_dim<DecodeRows::kRowTiles>(p, fewer_ctas_per_sm, stream)
                         : launch_head_dim<DecodeRows::kOneTile>(p, fewer_ctas_per_sm, stream);
}

}  // namespace torch_fmha
