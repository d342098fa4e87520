// torch_fmha: host side of the SM90 FP8 forward kernel for one head dim and
// layout: builds the TMA descriptors and the persistent grid, launches on
// `stream` (varlen: after the prep kernel that writes the tile work list).
// No allocation, no host synchronisation.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <cuda_runtime.h>
#include <type_traits>

// TMA descriptors: CuTe's "direct driver call" path, pointed at
// tma_encode_tiled (driver entry point looked up once, not per descriptor;
// tma_encode.h). CUTLASS spells the call `func(args...)` inside
// CUTLASS_CUDA_DRIVER_WRAPPER_DECL(cuTensorMapEncodeTiled, ...), expanded
// when cutlass/cuda_host_adapter.hpp is first included, so the redirect must
// be defined then, and only then: before any CUTLASS header, after cuda.h
// (whose declaration it must not rename).
#if defined(CUTLASS_CUDA_DRIVER_WRAPPER_CALL)
#error "fwd_launch_template.cuh must come before every CUTLASS header in its translation unit"
#endif
#include "tma_encode.h"
#define CUTLASS_ENABLE_DIRECT_CUDA_DRIVER_CALL 1
#define cuTensorMapEncodeTiled ::torch_fmha::tma_encode_tiled
#include <cutlass/cuda_host_adapter.hpp>
#undef cuTensorMapEncodeTiled
#undef CUTLASS_ENABLE_DIRECT_CUDA_DRIVER_CALL

#include "../kernel/fmha_fwd_kernel.cuh"
#include "../params.h"
#include "../vt_key_order.h"
#include "fwd_fp8_launch.h"
#include "hang_watch.h"
#include "varlen_prep.h"

namespace torch_fmha {

namespace detail {

// A TMA descriptor needs every stride a multiple of 16 bytes, also for modes
// of extent 1 whose stride is never used; give those a harmless one.
inline int64_t tma_stride(int64_t stride, int32_t extent) {
  return extent <= 1 ? 16 : stride;
}

// A paged FP8 pool [num_pages, page_size, heads, D] (strides in elements =
// bytes) as a 4D TMA tensor (D, page_size, heads, num_pages) with box
// (chunk, box_rows, 1, 1): producer.cuh, PagedKvBoxes. A failed encode is kept
// for take_tma_encode_error (tma_encode.h).
inline void encode_paged_pool(CUtensorMap* map, const void* pool, int32_t head_dim,
                              int32_t page_size, int32_t heads, int32_t num_pages,
                              int64_t row_stride, int64_t head_stride, int64_t page_stride,
                              int32_t chunk, int32_t box_rows, CUtensorMapSwizzle swizzle) {
  const cuuint64_t dims[4] = {cuuint64_t(head_dim), cuuint64_t(page_size), cuuint64_t(heads),
                              cuuint64_t(num_pages)};
  const cuuint64_t strides[3] = {cuuint64_t(tma_stride(row_stride, page_size)),
                                 cuuint64_t(tma_stride(head_stride, heads)),
                                 cuuint64_t(tma_stride(page_stride, num_pages))};
  const cuuint32_t box[4] = {cuuint32_t(chunk), cuuint32_t(box_rows), 1, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  tma_encode_tiled(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 4, const_cast<void*>(pool), dims, strides,
                   box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                   CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

}  // namespace detail

template <int kHeadDim, bool kVarlen, bool kShortKeys, bool kPackedV>
cudaError_t launch_fwd_fp8(const FwdParams& p, cudaStream_t stream) {
  using namespace cute;
  static_assert(!kShortKeys || !kVarlen, "the short-key build is dense only (dispatch_fwd.cu)");
  static_assert(!kPackedV || !kVarlen,
                "packed v is dense only: its padding keys are zero (quantize_qkv writes "
                "them), the transposer zeroes those past a packed sequence's end");
  using Traits = kernel::Fp8FwdTraits<kHeadDim,
                                      kShortKeys ? kernel::KvBlocking::kShort : kernel::KvBlocking::kLong,
                                      kPackedV ? kernel::VLayout::kPackedVt
                                                       : kernel::VLayout::kHeadDimContiguous>;
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM;
  // Dense builds with a split tail (tile_scheduler.cuh) have a second kernel for the launches
  // whose plan is active; the others run the kernel without the pieces' code.
  // The short-key build never splits: without a mask it runs at most 2048 keys (16 of its
  // 128-key blocks); causal and windowed launches (up to 2048 keys there, 4096 with a packed v
  // in sessions 31-37) never split. So it has no split kernel.
  constexpr int kSplitMinBlocks = kVarlen || kShortKeys ? 0 : kernel::split_tail_min_blocks(kHeadDim, kPackedV);
  static_assert(kSplitMinBlocks == 0 || Traits::kBlockN >= kernel::split_tail_narrowest_block(kHeadDim),
                "fwd_workspace_bytes sizes the split tail's slots for key blocks of "
                "split_tail_narrowest_block(D) or more (tile_scheduler.cuh): an experiment with "
                "narrower blocks sets -DTORCH_FMHA_TUNE_SPLIT_TAIL_MIN_BLOCKS_<D>=0 too");
  using Scheduler = std::conditional_t<kVarlen, kernel::VarlenTileScheduler<kBlockM>,
                                       kernel::DenseTileScheduler<kBlockM>>;
  using Params = kernel::KernelParams<Traits, Scheduler>;

  const bool bottom_right_window = p.window_right >= 0;
  const TmaExtents ext = tma_extents(p);
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  int num_sms = p.num_sms;
  if (num_sms <= 0) {
    err = cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device);
    if (err != cudaSuccess) return err;
  }
  Params kp;
  kp.split = {};  // the split tail's buffers: only where its plan is active (below)
  // Upper bound on the tile count, known on the host. Dense: exact. Varlen:
  // sum_b ceil(len_b / M) <= (Tq + B (M - 1)) / M; only the grid size depends
  // on it (CTAs beyond the real count get the stop tile at once).
  int64_t max_tiles = 0;
  if constexpr (kVarlen) {
    max_tiles = int64_t(p.heads_q) * ((int64_t(p.total_q) + int64_t(p.batch) * (kBlockM - 1)) / kBlockM);
    if (max_tiles <= 0) return cudaSuccess;  // no query row: nothing to write
    kernel::VarlenWorkspace ws;
    err = launch_varlen_prep(p, kBlockM, stream, ws);
    if (err != cudaSuccess) return err;
    kp.scheduler = Scheduler::make(ws, p.batch, p.heads_q, bottom_right_window);
    kp.tile_counter = ws.tile_counter;  // zeroed by the prep kernel (kDynamicTiles), else null
  } else {
    kp.scheduler = Scheduler::make(p.batch, p.heads_q, p.seqlen_q, p.seqlen_k, bottom_right_window);
    max_tiles = kp.scheduler.num_tiles;
    if (max_tiles <= 0) return cudaSuccess;  // nothing to write
    kp.tile_counter = nullptr;  // dense launches keep the static order (tile_scheduler.cuh)
    // The split tail: tiles of equal cost only (no causal mask, no window).
    const int32_t grid = static_cast<int32_t>(std::min<int64_t>(num_sms, max_tiles));
    const bool equal_tiles = p.window_left < 0 && p.window_right < 0;
    kp.scheduler.tail = kernel::SplitTail::plan(
        kp.scheduler.num_tiles, grid, (p.seqlen_k + Traits::kBlockN - 1) / Traits::kBlockN,
        equal_tiles ? kSplitMinBlocks : 0);
    // fwd_workspace_bytes sized the workspace for every launch the op makes that may split;
    // a caller without one (num_sms unset there) runs the tiles whole.
    if ((kp.scheduler.tail.active() && p.workspace == nullptr) || TORCH_FMHA_TUNE_SPLIT_KERNEL_WITHOUT_PLAN) {
      kp.scheduler.tail = kernel::SplitTail::none(kp.scheduler.num_tiles);
    }
    if (kp.scheduler.tail.active()) {
      kp.split = kernel::SplitTailBuffers::carve(p.workspace, grid, kHeadDim);
      err = cudaMemsetAsync(kp.split.flags, 0, kernel::SplitTailBuffers::flag_bytes(grid), stream);
      if (err != cudaSuccess) return err;
    }
  }

  kp.fwd = p;
  kp.heads_per_kv = p.heads_q / p.heads_kv;
  // I5 test hook, debug builds only (tests/gpu/test_debug_hang.py).
  kp.debug_lose_first_k_load =
      kernel::kDebugHang && std::getenv("TORCH_FMHA_DEBUG_TEST_LOSE_K_LOAD") != nullptr;
  kp.debug_hang_report = kernel::kDebugHang ? debug_hang_report() : nullptr;
  const char* tail_wait = kernel::kDebugHang ? std::getenv("TORCH_FMHA_DEBUG_TEST_SPLIT_TAIL_WAIT_NS") : nullptr;
  kp.debug_split_tail_wait_ns = tail_wait != nullptr ? std::atoi(tail_wait) : 0;
  // TMA tensor extents (never 0: a descriptor needs extents >= 1; a tile of
  // a sequence without keys issues no K/V load).
  kp.rows_q_tma = std::max(ext.rows_q, 1);
  kp.rows_k_tma = std::max(ext.rows_k, 1);
  kp.batch_tma = std::max(ext.batch, 1);

  auto gmem = [&](const void* ptr, int32_t rows, int32_t heads, int64_t row_stride,
                  int64_t head_stride, int64_t batch_stride) {
    return make_tensor(
        make_gmem_ptr(static_cast<Element const*>(ptr)),
        make_shape(rows, int32_t(kHeadDim), heads, kp.batch_tma),
        make_stride(detail::tma_stride(row_stride, rows), _1{},
                    detail::tma_stride(head_stride, heads),
                    detail::tma_stride(batch_stride, kp.batch_tma)));
  };
  // (rows, D, heads, batch): [B, S, H, D] dense, or [T, H, D] as one batch.
  auto gQ = gmem(p.q, kp.rows_q_tma, p.heads_q, p.q_row_stride, p.q_head_stride, p.q_batch_stride);
  kp.tma_q = make_tma_copy(SM90_TMA_LOAD{}, gQ, typename Traits::SmemLayoutQ{},
                           Shape<Int<kBlockM>, Int<kHeadDim>>{}, _1{});
  kp.page_box_rows = 0;
  kp.page_issue_warps = 0;
  if (!kVarlen || p.page_table == nullptr) {
    auto gK = gmem(p.k, kp.rows_k_tma, p.heads_kv, p.k_row_stride, p.k_head_stride,
                   p.k_batch_stride);
    kp.tma_k = make_tma_copy(SM90_TMA_LOAD{}, gK, take<0, 2>(typename Traits::SmemLayoutK{}),
                             Shape<Int<Traits::kBlockN>, Int<kHeadDim>>{}, _1{});
    if constexpr (kPackedV) {
      // (D, keys, heads, batch), keys contiguous: (D, kBlockN) boxes into V^T
      // stages. The key extent is the packed v's, rounded up to its 16-key
      // groups: a group's keys are permuted (csrc/vt_key_order.h), so the last
      // keys of a sequence may lie past its length, the padding slots between
      // them zero.
      const int32_t packed_keys = (kp.rows_k_tma + kVtKeyGroup - 1) / kVtKeyGroup * kVtKeyGroup;
      auto gVt = make_tensor(
          make_gmem_ptr(static_cast<Element const*>(p.v)),
          make_shape(int32_t(kHeadDim), packed_keys, p.heads_kv, kp.batch_tma),
          make_stride(p.v_dim_stride, _1{}, detail::tma_stride(p.v_head_stride, p.heads_kv),
                      detail::tma_stride(p.v_batch_stride, kp.batch_tma)));
      kp.tma_v = make_tma_copy(SM90_TMA_LOAD{}, gVt, take<0, 2>(typename Traits::SmemLayoutVt{}),
                               Shape<Int<kHeadDim>, Int<Traits::kBlockN>>{}, _1{});
    } else {
      auto gV = gmem(p.v, kp.rows_k_tma, p.heads_kv, p.v_row_stride, p.v_head_stride,
                     p.v_batch_stride);
      kp.tma_v = make_tma_copy(SM90_TMA_LOAD{}, gV, take<0, 2>(typename Traits::SmemLayoutK{}),
                               Shape<Int<Traits::kBlockN>, Int<kHeadDim>>{}, _1{});
    }
  } else {
    // Paged KV: boxes inside one page (producer.cuh, PagedKvBoxes), in the K
    // layout's swizzle (the one CuTe picks for tma_k / tma_v). tma_k / tma_v
    // stay unencoded: the kernel neither prefetches nor uses them then.
    using Paged = kernel::PagedKvBoxes<Traits>;
    using Swizzle = decltype(get_swizzle_portion(typename Traits::SmemLayoutK{}));
    const CUtensorMapSwizzle swizzle = TMA::to_CUtensorMapSwizzle(
        cute::detail::get_tma_swizzle_bits(Swizzle{}), cute::detail::get_tma_swizzle_base(Swizzle{}));
    kp.page_box_rows = Paged::box_rows(p.page_size);
    kp.page_issue_warps = Paged::issue_warps(p.page_size);
    detail::encode_paged_pool(&kp.paged_k, p.k, kHeadDim, p.page_size, p.heads_kv, p.num_pages,
                              p.k_row_stride, p.k_head_stride, p.k_batch_stride, Paged::kChunk,
                              kp.page_box_rows, swizzle);
    detail::encode_paged_pool(&kp.paged_v, p.v, kHeadDim, p.page_size, p.heads_kv, p.num_pages,
                              p.v_row_stride, p.v_head_stride, p.v_batch_stride, Paged::kChunk,
                              kp.page_box_rows, swizzle);
  }
  // CuTe ignores a failed encode in release builds; never launch on one.
  if (cudaError_t err = take_tma_encode_error(); err != cudaSuccess) return err;

  constexpr int kSmemBytes = kernel::shared_storage_bytes<Traits>();
  static_assert(kSmemBytes <= kernel::kMaxSmemPerBlock, "shared memory budget");
  // The build's kernels (tile_scheduler.cuh, KernelVariant): the split tail's where its plan
  // is active, the masked tiles' for causal and windowed launches where the build halves a
  // tile's half-hidden first block (Traits::kHalfFirstBlock), else the plain one.
  using kernel::KernelVariant;
  constexpr bool kMaskedKernel = !kVarlen && Traits::kHalfFirstBlock;
  auto kernel_fn = kernel::fmha_fwd_fp8_sm90_kernel<Traits, Scheduler, KernelVariant::kWholeTiles>;
  if constexpr (kSplitMinBlocks > 0) {
    if (kp.scheduler.tail.active() || TORCH_FMHA_TUNE_SPLIT_KERNEL_WITHOUT_PLAN) {
      kernel_fn = kernel::fmha_fwd_fp8_sm90_kernel<Traits, Scheduler, KernelVariant::kSplitTail>;
    }
  }
  if constexpr (kMaskedKernel) {
    if (bottom_right_window || p.window_left >= 0) {  // a masked launch never splits (above)
      kernel_fn = kernel::fmha_fwd_fp8_sm90_kernel<Traits, Scheduler, KernelVariant::kMaskedTiles>;
    }
  }

  // The dynamic shared memory limit is raised once per device, for each kernel of the build.
  static bool smem_raised[64] = {};
  if (device < 64 && !smem_raised[device]) {
    err = cudaFuncSetAttribute(kernel::fmha_fwd_fp8_sm90_kernel<Traits, Scheduler, KernelVariant::kWholeTiles>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
    if (err != cudaSuccess) return err;
    if constexpr (kSplitMinBlocks > 0) {
      err = cudaFuncSetAttribute(kernel::fmha_fwd_fp8_sm90_kernel<Traits, Scheduler, KernelVariant::kSplitTail>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
      if (err != cudaSuccess) return err;
    }
    if constexpr (kMaskedKernel) {
      err = cudaFuncSetAttribute(kernel::fmha_fwd_fp8_sm90_kernel<Traits, Scheduler, KernelVariant::kMaskedTiles>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
      if (err != cudaSuccess) return err;
    }
    smem_raised[device] = true;
  }
  const int grid = static_cast<int>(std::min<int64_t>(num_sms, max_tiles));
  kernel_fn<<<grid, Traits::kNumThreads, kSmemBytes, stream>>>(kp);
  if constexpr (kernel::PhaseTrace::kOn) kernel::phase_trace_print_kernel<<<1, 1, 0, stream>>>();
  return cudaGetLastError();
}

}  // namespace torch_fmha
