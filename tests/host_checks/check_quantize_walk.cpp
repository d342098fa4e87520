// Host-only check (no GPU needed) of the quantize kernels' walk over a group's vectors
// (csrc/kernel/quantize.cuh, for_each_vector with kLoads > 0: SegmentCursor of
// csrc/quantize.h instead of three 64-bit divisions per vector, kLoads loads in flight).
// The kernel's own device code runs here, compiled by the host compiler, the 512 threads
// of a block one after another (the walk has no barrier). For every case, group and chunk
// (as the amax and cast kernels split them), each thread's visits with kLoads = 1 and 4
// must be exactly those of the strided loop (kLoads = 0), in the strided loop's order per
// thread: the same x_fp8 offsets with the same loaded values (random data, so a wrong x
// offset shows as wrong values).
// Cases: bf16 / fp32 / fp64 16-byte loads at head dims 32-256, one that the walk leaves
// to the strided loop (per_segment not dividing the block), padded strides, per-tensor and
// per-head groups of 1, 2 and 3 heads, head counts that do not divide a step (the head
// carry) and more heads than a step, packed rows with cu_seqlens (an empty sequence
// included), several chunks per group, rows shorter than a step and steps spanning
// several sequences (heads = 1, seqlen 1-5).
// Every thread calls for_each_vector's ready() exactly once, before its first visit (threads
// with nothing to visit too: in the kernel it holds warp shuffles).
// Prints one "ok" line; exits 1 on the first failures.
// Build + run (tests/test_quantize_walk_host.py):
//   c++ -std=c++20 -O1 -pthread -I/usr/local/cuda/include -Icsrc
//   tests/host_checks/check_quantize_walk.cpp -o build/cqw && build/cqw
#include <cuda_runtime.h>

#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

// ---- the CUDA built-ins the kernel header uses, on the host ----
struct HostIndex {
  unsigned x = 0, y = 0, z = 0;
};
thread_local HostIndex threadIdx;
HostIndex blockIdx;
#define __syncthreads() std::abort()  // not reached: for_each_vector has no barrier
#undef __shared__
#define __shared__ static
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
inline float __shfl_xor_sync(unsigned, float, int) { std::abort(); }

#include "host_float.h"
#include "kernel/quantize.cuh"

using namespace torch_fmha;
using namespace torch_fmha::kernel;

namespace {

int failures = 0;
int64_t visits_checked = 0;
int64_t ready_checked = 0;  // threads whose ready() call was checked

struct Visit {
  int64_t out;
  std::vector<unsigned char> bytes;
  bool operator==(const Visit& o) const { return out == o.out && bytes == o.bytes; }
};

// The visits of each of the block's threads for one (group extent, segment range).
template <typename T, int kVec, int kLoads>
std::vector<std::vector<Visit>> visits(const QuantizeTensor& t, const GroupExtent& e, int64_t begin, int64_t end) {
  std::vector<std::vector<Visit>> per_thread(kQuantizeThreads);
  for (int i = 0; i < kQuantizeThreads; ++i) {  // one after another: the walk has no barrier
    threadIdx.x = static_cast<unsigned>(i);
    // ready() (the cast's scale from the partial maxes, warp shuffles in the kernel) must
    // run exactly once per thread, before its first visit, also in a thread with no visit.
    int ready_calls = 0;
    bool visit_before_ready = false;
    for_each_vector<T, kVec, kLoads>(
        t, e, begin, end,
        [&](const Values<T, kVec>& v, int64_t out) {
          visit_before_ready |= ready_calls == 0;
          Visit w{out, std::vector<unsigned char>(sizeof(v))};
          std::memcpy(w.bytes.data(), &v, sizeof(v));
          per_thread[i].push_back(std::move(w));
        },
        [&] { ++ready_calls; });
    if ((ready_calls != 1 || visit_before_ready) && failures++ < 5) {
      std::printf("FAIL kLoads %d thread %d of segments [%ld, %ld): ready() called %d times%s\n", kLoads, i,
                  static_cast<long>(begin), static_cast<long>(end), ready_calls,
                  visit_before_ready ? ", a visit before it" : "");
    }
    ++ready_checked;
  }
  return per_thread;
}

// x [B, S, H, D] (or packed [T, H, D] with cu_seqlens: B = 1, S = T) with head_pad
// elements after each head (a multiple of the vector), its QuantizeTensor as the op
// fills it, and every (group, chunk) of `chunks` checked for each kLoads.
template <typename T>
void check_case(const char* type, int B, int S, int H, int D, int head_pad, int group_heads, int chunks,
                const std::vector<int32_t>* cu_seqlens, std::mt19937& rng) {
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  const int64_t stride_head = D + head_pad, stride_row = H * stride_head, stride_batch = S * stride_row;
  std::vector<T> x(static_cast<size_t>(B) * stride_batch + 16);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (auto& v : x) v = from_float<T>(normal(rng));
  QuantizeTensor t;
  t.x = x.data();
  t.stride_batch = stride_batch;
  t.stride_row = stride_row;
  t.stride_head = stride_head;
  t.stride_dim = 1;
  t.batch = B;
  t.seqlen = S;
  t.heads = H;
  t.head_dim = D;
  t.vectorized = true;
  t.in_type = sizeof(T) == 8 ? QuantInType::kFloat64
              : sizeof(T) == 4 ? QuantInType::kFloat32 : QuantInType::kBFloat16;
  t.per_tensor = group_heads == 0;
  t.group_heads = t.per_tensor ? H : group_heads;
  t.groups_per_sequence = H / t.group_heads;
  t.cu_seqlens = cu_seqlens ? cu_seqlens->data() : nullptr;
  t.sequences = t.per_tensor ? 1 : (cu_seqlens ? static_cast<int32_t>(cu_seqlens->size()) - 1 : B);
  t.chunks = chunks;
  for (int64_t g = 0; g < t.groups(); ++g) {
    const GroupExtent e = group_extent(t, g);
    for (int chunk = 0; chunk < chunks; ++chunk) {
      int64_t begin, end;
      chunk_range(e.segments(), chunk, chunks, begin, end);
      const auto want = visits<T, kVec, 0>(t, e, begin, end);
      const std::vector<std::vector<Visit>> got[2] = {visits<T, kVec, 1>(t, e, begin, end),
                                                      visits<T, kVec, 4>(t, e, begin, end)};
      for (int k = 0; k < 2; ++k) {
        for (int i = 0; i < kQuantizeThreads; ++i) {
          if (got[k][i] != want[i] && failures++ < 5) {
            std::printf("FAIL %s B=%d S=%d H=%d D=%d pad=%d group_heads=%d chunks=%d%s group %ld chunk %d, "
                        "kLoads %d, thread %d: %zu visits, want %zu%s\n",
                        type, B, S, H, D, head_pad, group_heads, chunks, cu_seqlens ? " (packed)" : "",
                        static_cast<long>(g), chunk, k == 0 ? 1 : 4, i, got[k][i].size(), want[i].size(),
                        got[k][i].size() == want[i].size() ? " (different offsets or values)" : "");
          }
          if (k == 0) visits_checked += static_cast<int64_t>(want[i].size());
        }
      }
    }
  }
}

}  // namespace

int main() {
  std::mt19937 rng(26);
  for (int D : {64, 128, 256}) {
    for (int group_heads : {0, 1, 2}) {  // 0: per-tensor
      check_case<__nv_bfloat16>("bf16", 2, 37, 4, D, 0, group_heads, 3, nullptr, rng);
      check_case<__nv_bfloat16>("bf16", 3, 5, 2, D, 8, group_heads, 2, nullptr, rng);
      check_case<float>("fp32", 1, 300, 2, D, 4, group_heads, 7, nullptr, rng);
      check_case<double>("fp64", 2, 9, 2, D, 2, group_heads, 1, nullptr, rng);
    }
  }
  // One head: a step of 512 / per_segment segments spans several sequences of 1-5 rows.
  for (int S : {1, 2, 5}) {
    check_case<__nv_bfloat16>("bf16", 40, S, 1, 128, 0, 0, 1, nullptr, rng);
    check_case<__nv_bfloat16>("bf16", 40, S, 1, 64, 0, 1, 2, nullptr, rng);
    check_case<float>("fp32", 30, S, 1, 32, 0, 0, 3, nullptr, rng);
  }
  // Head counts that do not divide a step (bf16 D = 128: 32 segments per step; D = 256: 16),
  // so the head carry of SegmentCursor::advance runs, and groups with more heads than a step.
  for (int H : {3, 5, 12}) {
    check_case<__nv_bfloat16>("bf16", 2, 21, H, 128, 0, 0, 2, nullptr, rng);
  }
  // In a contiguous per-tensor group (row, H) and (row + 1, 0) are the same place, so a head
  // that misses its carry shows only where a group has fewer heads than the tensor.
  check_case<__nv_bfloat16>("bf16", 2, 100, 6, 128, 8, 3, 2, nullptr, rng);  // 3-head groups
  check_case<__nv_bfloat16>("bf16", 1, 7, 40, 256, 0, 0, 3, nullptr, rng);   // 40 heads > 16 per step
  check_case<__nv_bfloat16>("bf16", 2, 9, 40, 256, 0, 20, 1, nullptr, rng);  // 20-head groups
  check_case<float>("fp32", 2, 11, 7, 64, 0, 0, 1, nullptr, rng);
  // Head dims whose vectors per segment do not divide the block (bf16 D = 48: 6): the strided loop.
  check_case<__nv_bfloat16>("bf16", 2, 20, 3, 48, 0, 0, 2, nullptr, rng);
  check_case<float>("fp32", 1, 50, 2, 24, 4, 1, 1, nullptr, rng);
  // Packed rows with cu_seqlens, per-head groups (one per sequence and head); an empty sequence.
  const std::vector<int32_t> cu = {0, 7, 7, 40, 41, 100};
  for (int group_heads : {1, 2}) {
    check_case<__nv_bfloat16>("bf16", 1, 100, 2, 128, 0, group_heads, 3, &cu, rng);
    check_case<float>("fp32", 1, 100, 2, 64, 4, group_heads, 1, &cu, rng);
  }
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("quantize walk: ok (%ld visits matched, ready() once before them in %ld threads)\n",
              static_cast<long>(visits_checked), static_cast<long>(ready_checked));
  return 0;
}
