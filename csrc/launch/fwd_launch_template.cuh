// torch_fmha: host side of the SM90 FP8 forward kernel for one head dim:
// builds the TMA descriptors and the persistent grid, launches on `stream`.
// No allocation, no host synchronisation.
#pragma once

#include <algorithm>
#include <cuda_runtime.h>

#include "../kernel/fmha_fwd_kernel.cuh"
#include "../params.h"
#include "fwd_fp8_launch.h"

namespace torch_fmha {

namespace detail {

// A TMA descriptor needs every stride a multiple of 16 bytes, also for modes
// of extent 1 whose stride is never used; give those a harmless one.
inline int64_t tma_stride(int64_t stride, int32_t extent) {
  return extent <= 1 ? 16 : stride;
}

}  // namespace detail

template <int kHeadDim>
cudaError_t launch_fwd_fp8(const FwdParams& p, cudaStream_t stream) {
  using namespace cute;
  using Traits = kernel::Fp8FwdTraits<kHeadDim>;
  using Element = typename Traits::Element;
  using Params = kernel::KernelParams<Traits>;

  const bool bottom_right_window = p.window_right >= 0;
  const auto scheduler = kernel::DenseTileScheduler<Traits::kBlockM>::make(
      p.batch, p.heads_q, p.seqlen_q, bottom_right_window);
  if (scheduler.num_tiles <= 0) return cudaSuccess;  // nothing to write

  Params kp;
  kp.fwd = p;
  kp.scheduler = scheduler;
  kp.heads_per_kv = p.heads_q / p.heads_kv;
  kp.seqlen_k_tma = std::max(p.seqlen_k, 1);

  auto gmem = [&](const void* ptr, int32_t seqlen, int32_t heads, int64_t row_stride,
                  int64_t head_stride, int64_t batch_stride) {
    return make_tensor(
        make_gmem_ptr(static_cast<Element const*>(ptr)),
        make_shape(seqlen, int32_t(kHeadDim), heads, p.batch),
        make_stride(detail::tma_stride(row_stride, seqlen), _1{},
                    detail::tma_stride(head_stride, heads),
                    detail::tma_stride(batch_stride, p.batch)));
  };
  auto gQ = gmem(p.q, p.seqlen_q, p.heads_q, p.q_row_stride, p.q_head_stride, p.q_batch_stride);
  auto gK = gmem(p.k, kp.seqlen_k_tma, p.heads_kv, p.k_row_stride, p.k_head_stride,
                 p.k_batch_stride);
  auto gV = gmem(p.v, kp.seqlen_k_tma, p.heads_kv, p.v_row_stride, p.v_head_stride,
                 p.v_batch_stride);
  kp.tma_q = make_tma_copy(SM90_TMA_LOAD{}, gQ, typename Traits::SmemLayoutQ{},
                           Shape<Int<Traits::kBlockM>, Int<kHeadDim>>{}, _1{});
  kp.tma_k = make_tma_copy(SM90_TMA_LOAD{}, gK, take<0, 2>(typename Traits::SmemLayoutK{}),
                           Shape<Int<Traits::kBlockN>, Int<kHeadDim>>{}, _1{});
  kp.tma_v = make_tma_copy(SM90_TMA_LOAD{}, gV, take<0, 2>(typename Traits::SmemLayoutK{}),
                           Shape<Int<Traits::kBlockN>, Int<kHeadDim>>{}, _1{});

  constexpr int kSmemBytes = kernel::shared_storage_bytes<Traits>();
  static_assert(kSmemBytes <= kernel::kMaxSmemPerBlock, "shared memory budget");
  auto kernel_fn = kernel::fmha_fwd_fp8_sm90_kernel<Traits>;

  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  // The dynamic shared memory limit is raised once per device.
  static bool smem_raised[64] = {};
  if (device < 64 && !smem_raised[device]) {
    err = cudaFuncSetAttribute(kernel_fn, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
    if (err != cudaSuccess) return err;
    smem_raised[device] = true;
  }
  int num_sms = p.num_sms;
  if (num_sms <= 0) {
    err = cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device);
    if (err != cudaSuccess) return err;
  }
  const int grid = std::min(num_sms, scheduler.num_tiles);
  kernel_fn<<<grid, Traits::kNumThreads, kSmemBytes, stream>>>(kp);
  return cudaGetLastError();
}

}  // namespace torch_fmha
