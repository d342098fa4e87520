// torch_fmha: host side of the split-KV decode kernel.
#include <algorithm>
#include <atomic>

#include "../kernel/decode.cuh"
#include "launch_decode.h"

// Developer knob for an A/B on the GPU (TORCH_FMHA_NVCC_EXTRA=
// -DTORCH_FMHA_TUNE_DECODE_CLUSTER_MERGE=N): the most splits whose merge runs inside the
// decode grid, as one thread block cluster (DecodeParams::cluster_merge); 0: never (every
// split count goes through the merge kernel, as before session 34). 16 is the largest
// cluster Hopper runs (with the non-portable attribute).
#ifndef TORCH_FMHA_TUNE_DECODE_CLUSTER_MERGE
#define TORCH_FMHA_TUNE_DECODE_CLUSTER_MERGE 16
#endif

namespace torch_fmha {

constexpr int kDecodeClusterMergeSplits = TORCH_FMHA_TUNE_DECODE_CLUSTER_MERGE;
static_assert(kDecodeClusterMergeSplits >= 0 && kDecodeClusterMergeSplits <= 16, "Hopper clusters hold 1-16 CTAs");

bool decode_kernel_supports(int head_dim, int rows) {
  return (head_dim == 64 || head_dim == 128 || head_dim == 256) && rows >= 1 &&
         rows <= kernel::kDecodeRows;
}

namespace {

constexpr int kPortableClusterSize = 8;  // larger clusters need the non-portable attribute

// Per device and head dim: how many CTAs an SM holds at the kernel's own shared memory
// (kBytes), and the dynamic shared memory that holds it to one CTA fewer (0: none found).
// Both from the occupancy API, once; the launch only reads them.
struct DecodeOccupancy {
  int ctas_per_sm = 0;
  int fewer_smem_bytes = 0;  // dynamic shared memory for ctas_per_sm - 1 CTAs per SM
};

// Dynamic shared memory with which an SM holds one decode CTA (kD): a cluster launch so
// sized puts a cluster's CTAs on distinct SMs. Without it the first cluster launch (session
// 34, one H200) packed them up to three per SM and ran 7-22% slower than the plain grid.
int one_cta_per_sm_smem_bytes(int device, int kernel_bytes) {
  int per_sm = 0, reserved = 0;
  cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device);
  cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, device);
  const int bytes = (per_sm / 2 - reserved + 1 + 127) / 128 * 128;  // two no longer fit
  return bytes > kernel_bytes ? bytes : kernel_bytes;
}

template <int kD>
DecodeOccupancy occupancy() {
  static std::atomic<int> cached_ctas[64] = {};   // 0: not read yet
  static std::atomic<int> cached_fewer[64] = {};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return {1, 0};
  if (cached_ctas[device].load(std::memory_order_acquire) == 0) {
    constexpr int kSmem = kernel::DecodeSmem<kD>::kBytes;
    constexpr int kThreads = 32 * kernel::kDecodeWarps<kD>;
    auto fn = kernel::decode_kernel<kD, false>;  // the paged build has the same shared memory
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

template <int kD, bool kPaged>
cudaError_t launch(const DecodeParams& p, bool fewer_ctas_per_sm, cudaStream_t stream) {
  const DecodeOccupancy occ = occupancy<kD>();
  auto fn = kernel::decode_kernel<kD, kPaged>;
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  const int smem = p.cluster_merge ? one_cta_per_sm_smem_bytes(device, kernel::DecodeSmem<kD>::kBytes)
                   : fewer_ctas_per_sm && occ.fewer_smem_bytes > 0 ? occ.fewer_smem_bytes
                                                                   : kernel::DecodeSmem<kD>::kBytes;
  static std::atomic<int> raised[64] = {};  // the dynamic shared memory limit set, per device
  if (device < 0 || device >= 64) return cudaErrorInvalidDevice;
  if (raised[device].load(std::memory_order_acquire) < smem) {
    const int limit = std::max(smem, occ.fewer_smem_bytes);
    err = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, limit);
    if (err != cudaSuccess) return err;
    raised[device].store(limit, std::memory_order_release);
  }
  const dim3 grid(unsigned(p.splits), unsigned(p.heads_kv), unsigned(p.batch));
  if (!p.cluster_merge) {
    fn<<<grid, 32 * kernel::kDecodeWarps<kD>, smem, stream>>>(p);
    return cudaGetLastError();
  }
  // The splits of one (KV head, batch) as one cluster: x is the split, the cluster's rank.
  if (p.splits > kPortableClusterSize) {
    err = cudaFuncSetAttribute(fn, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (err != cudaSuccess) return err;
  }
  cudaLaunchAttribute cluster[1];
  cluster[0].id = cudaLaunchAttributeClusterDimension;
  cluster[0].val.clusterDim.x = unsigned(p.splits);
  cluster[0].val.clusterDim.y = 1;
  cluster[0].val.clusterDim.z = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = dim3{unsigned(32 * kernel::kDecodeWarps<kD>)};
  config.dynamicSmemBytes = unsigned(smem);
  config.stream = stream;
  config.attrs = cluster;
  config.numAttrs = 1;
  const cudaError_t launched = cudaLaunchKernelEx(&config, fn, p);
  const cudaError_t last = cudaGetLastError();  // read (and cleared) here, as after <<<>>>
  return launched != cudaSuccess ? launched : last;
}

// The largest cluster of decode CTAs (kD, default shared memory) that the current
// device can run: the sizes kDecodeClusterMergeSplits allows, from the largest down,
// until the occupancy API finds room for one such cluster. Once per device.
template <int kD>
int cluster_merge_max_splits() {
  static std::atomic<int> cached[64] = {};  // 0: not read yet; -1: none
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return 0;
  int n = cached[device].load(std::memory_order_acquire);
  if (n != 0) return n < 0 ? 0 : n;
  n = -1;
  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  const int kSmem = one_cta_per_sm_smem_bytes(device, kernel::DecodeSmem<kD>::kBytes);
  if (major >= 9 && kernel::kClusterMerge<kD>) {
    for (int size = kDecodeClusterMergeSplits; size >= 1; --size) {
      bool set = true;
      for (auto fn : {kernel::decode_kernel<kD, false>, kernel::decode_kernel<kD, true>}) {
        set = set && cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem) == cudaSuccess;
        if (size > kPortableClusterSize) {
          set = set && cudaFuncSetAttribute(fn, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) == cudaSuccess;
        }
      }
      cudaLaunchAttribute cluster[1];
      cluster[0].id = cudaLaunchAttributeClusterDimension;
      cluster[0].val.clusterDim.x = unsigned(size);
      cluster[0].val.clusterDim.y = 1;
      cluster[0].val.clusterDim.z = 1;
      cudaLaunchConfig_t config = {};
      config.gridDim = dim3{unsigned(size)};
      config.blockDim = dim3{unsigned(32 * kernel::kDecodeWarps<kD>)};
      config.dynamicSmemBytes = kSmem;
      config.attrs = cluster;
      config.numAttrs = 1;
      int clusters = 0;
      if (set && cudaOccupancyMaxActiveClusters(&clusters, kernel::decode_kernel<kD, false>, &config) == cudaSuccess &&
          clusters > 0) {
        n = size;
        break;
      }
    }
  }
  cudaGetLastError();  // a refused size is an answer, not an error for the next launch
  cached[device].store(n, std::memory_order_release);
  return n < 0 ? 0 : n;
}

template <int kD>
int ctas_per_sm() {
  return occupancy<kD>().ctas_per_sm;
}

}  // namespace

int decode_cluster_merge_max_splits(int head_dim) {
  switch (head_dim) {
    case 64: return cluster_merge_max_splits<64>();
    case 128: return cluster_merge_max_splits<128>();
    case 256: return cluster_merge_max_splits<256>();
    default: return 0;
  }
}

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
  if (p.batch > 65535 || p.heads_kv > 65535 || p.splits > 65535 || p.seqlen_q * p.group > kernel::kDecodeRows) {
    return cudaErrorInvalidConfiguration;
  }
  const bool paged = p.page_table != nullptr;
  switch (p.head_dim) {
    case 64: return paged ? launch<64, true>(p, fewer_ctas_per_sm, stream) : launch<64, false>(p, fewer_ctas_per_sm, stream);
    case 128: return paged ? launch<128, true>(p, fewer_ctas_per_sm, stream) : launch<128, false>(p, fewer_ctas_per_sm, stream);
    case 256: return paged ? launch<256, true>(p, fewer_ctas_per_sm, stream) : launch<256, false>(p, fewer_ctas_per_sm, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace torch_fmha
