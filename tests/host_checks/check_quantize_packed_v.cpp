// Host-only check (no GPU needed) of the packed-v cast of the quantize kernels
// (csrc/kernel/quantize.cuh, cast_packed_v: v written as a packed v [B, H, D, G, 16],
// each 16-key group in the order of csrc/vt_key_order.h, for the fwd kernel's V^T-by-TMA
// path). The kernel's own device code runs here, compiled by the
// host compiler: a thread block is 512 std::threads, __syncthreads a std::barrier, the
// __shared__ buffer a function-local static (one block at a time, as one block's shared
// memory). For every element type and load width (16-byte vectors, scalar loads of a
// strided x), seqlens around the 16-key padding and the 64-key tiles, head dims that
// fill, split and do not fill the tiles, per-tensor and per-head groups split over
// several chunks (blocks), every output byte is checked against a reference written from
// the packed-v definition (vt_key_of_slot, not the kernel's packed_vt_position):
// quantize_value(x, scale) of key 16 g + vt_key_of_slot(j) at (g, j), of column
// packed_v_column_of_row(r) in row r, for keys < S, 0 in
// the slots of the padding keys, each written (0xAA sentinel before). Also the
// shared-memory banks of the byte stores and word reads: none for bf16 / fp16, and for
// every load width no more with the packed order than with the natural one (a warp's
// stores cover keys 2i and 2i + 1, whose slots share a 4-byte word).
// Prints one "ok" line; exits 1 on the first failures.
// Build + run (tests/test_quantize_packed_v_host.py):
//   c++ -std=c++20 -O1 -pthread -I/usr/local/cuda/include -Icsrc
//   tests/host_checks/check_quantize_packed_v.cpp -o build/cqpv && build/cqpv
#include <cuda_runtime.h>

#include <barrier>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

// ---- the CUDA built-ins the kernel header uses, on the host ----
struct HostIndex {
  unsigned x = 0, y = 0, z = 0;
};
thread_local HostIndex threadIdx;
HostIndex blockIdx;
std::barrier<>* block_barrier = nullptr;
#define __syncthreads() block_barrier->arrive_and_wait()
#undef __shared__
#define __shared__ static  // one block at a time: its threads share the statics
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
inline float __shfl_xor_sync(unsigned, float, int) { std::abort(); }  // block_max: not run here

#include "host_float.h"
#include "kernel/quantize.cuh"

using namespace torch_fmha;
using namespace torch_fmha::kernel;

namespace {

int failures = 0;

// Runs body() on the 512 threads of one block.
void run_block(const std::function<void()>& body) {
  std::barrier<> barrier(kQuantizeThreads);
  block_barrier = &barrier;
  std::vector<std::thread> threads;
  for (int i = 0; i < kQuantizeThreads; ++i) {
    threads.emplace_back([&, i] {
      threadIdx.x = static_cast<unsigned>(i);
      body();
    });
  }
  for (auto& t : threads) t.join();
}

// One case: x [B, S, H, D] with a head-dim stride `dim_stride` (2: scalar loads), its
// QuantizeTensor (as the op's add_tensor fills it), a fixed scale per group, the
// output (0xAA sentinel), and the expected bytes.
struct Case {
  QuantizeTensor t;
  std::string name;
  std::vector<float> scales, descale;
  std::vector<uint8_t> out, want;
  std::shared_ptr<void> x;
};

template <typename T>
Case make_case(const char* type, int B, int S, int H, int D, int dim_stride, bool per_tensor, int chunks,
               std::mt19937& rng) {
  Case c;
  const int64_t stride_head = static_cast<int64_t>(D) * dim_stride + (dim_stride > 1 ? 8 : 0);
  const int64_t stride_row = H * stride_head, stride_batch = S * stride_row;
  auto x = std::make_shared<std::vector<T>>(static_cast<size_t>(B) * stride_batch + 8);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (auto& v : *x) v = from_float<T>(normal(rng));
  c.x = x;
  QuantizeTensor& t = c.t;
  t.x = x->data();
  t.stride_batch = stride_batch;
  t.stride_row = stride_row;
  t.stride_head = stride_head;
  t.stride_dim = dim_stride;
  t.batch = B;
  t.seqlen = S;
  t.heads = H;
  t.head_dim = D;
  const int64_t vec = 16 / static_cast<int64_t>(sizeof(T));
  t.vectorized = dim_stride == 1 && D % vec == 0 && stride_row % vec == 0 && stride_head % vec == 0 &&
                 stride_batch % vec == 0 && reinterpret_cast<uintptr_t>(t.x) % 16 == 0;
  t.in_type = sizeof(T) == 8 ? QuantInType::kFloat64
              : sizeof(T) == 4 ? QuantInType::kFloat32
              : std::is_same_v<T, __half> ? QuantInType::kFloat16 : QuantInType::kBFloat16;
  t.per_tensor = per_tensor;
  t.group_heads = per_tensor ? H : 1;
  t.groups_per_sequence = per_tensor ? 1 : H;
  t.sequences = per_tensor ? 1 : B;
  t.chunks = chunks;
  t.packed_v = true;
  t.packed_keys = packed_v_keys(S);
  const int64_t P = t.packed_keys;  // G * 16
  c.out.assign(static_cast<size_t>(B) * H * D * P, 0xAA);
  c.descale.resize(t.groups());
  for (int64_t g = 0; g < t.groups(); ++g) c.scales.push_back(0.01f * static_cast<float>(g + 1));
  // (b, h, r, g, j) holds key 16 g + vt_key_of_slot(j) of column packed_v_column_of_row(r);
  // zero where that key is >= S.
  c.want.assign(c.out.size(), 0);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < H; ++h) {
      const float scale = c.scales[per_tensor ? 0 : b * H + h];
      for (int r = 0; r < D; ++r) {
        const int d = packed_v_column_of_row(r, D);
        for (int64_t g = 0; g < P / kVtKeyGroup; ++g) {
          for (int j = 0; j < kVtKeyGroup; ++j) {
            const int64_t s = g * kVtKeyGroup + vt_key_of_slot(j);
            if (s >= S) continue;
            c.want[((static_cast<size_t>(b) * H + h) * D + r) * P + g * kVtKeyGroup + j] = quantize_value(
                compute_value((*x)[b * stride_batch + s * stride_row + h * stride_head + d * dim_stride]), scale);
          }
        }
      }
    }
  }
  char name[160];
  std::snprintf(name, sizeof(name), "%s%s B=%d S=%d H=%d D=%d per_tensor=%d chunks=%d", type,
                t.vectorized ? "" : " (scalar loads)", B, S, H, D, int(per_tensor), chunks);
  c.name = name;
  return c;
}

// Every case's every (group, chunk) as the cast kernel runs it, on one block of threads.
void run_cases(std::vector<Case>& cases) {
  run_block([&] {
    for (Case& c : cases) {
      c.t.x_fp8 = c.out.data();
      c.t.descale = c.descale.data();
      for (int64_t g = 0; g < c.t.groups(); ++g) {
        for (int chunk = 0; chunk < c.t.chunks; ++chunk) {
          BlockWork w;
          w.group = g;
          w.chunk = chunk;
          finish_piece(c.t, w, group_extent(c.t, g), 0, 0, c.scales[g]);
        }
      }
    }
  });
  for (const Case& c : cases) {
    int bad = 0;
    for (size_t i = 0; i < c.out.size(); ++i) {
      if (c.out[i] != c.want[i] && bad++ < 3) {
        std::printf("FAIL %s: byte %zu of [B, H, D, %ld, 16] = 0x%02x, want 0x%02x\n", c.name.c_str(), i,
                    static_cast<long>(c.t.packed_keys / kVtKeyGroup), c.out[i], c.want[i]);
      }
    }
    failures += bad != 0;
  }
}

// Bank conflicts of the shared-memory accesses of one warp for load width kVec (tile
// tile_dims<kVec>() dims), each key stored at `slot_of(key)`: the extra 4-byte words a
// byte-store instruction or a word read touches in a bank beyond the first.
template <typename T, int kVec>
int bank_conflicts(int (*slot_of)(int)) {
  using TV = TileValues<T, kVec>;
  int conflicts = 0;
  for (int warp = 0; warp < kQuantizeWarps; ++warp) {
    for (int j = 0; j < kTileLoads; ++j) {
      for (int e = 0; e < kVec; ++e) {
        int word_of_bank[32];
        std::fill(word_of_bank, word_of_bank + 32, -1);
        for (int lane = 0; lane < 32; ++lane) {
          threadIdx.x = warp * 32 + lane;
          const int word = buffer_offset(TV::dim(j) + e, slot_of(TV::key(j))) / 4;
          int& seen = word_of_bank[word % 32];
          conflicts += seen != -1 && seen != word;
          seen = word;
        }
      }
    }
    for (int j = 0; j < TV::kDims * kTileKeys / 4 / kQuantizeThreads; ++j) {
      bool used[32] = {};
      for (int lane = 0; lane < 32; ++lane) {
        const int w = warp * 32 + lane + j * kQuantizeThreads;
        const int word = buffer_offset(w / (kTileKeys / 4), w % (kTileKeys / 4) * 4) / 4;
        conflicts += used[word % 32];
        used[word % 32] = true;
      }
    }
  }
  return conflicts;
}

}  // namespace

int main() {
  std::mt19937 rng(12);
  std::vector<Case> cases;
  const int seqlens[] = {1, 15, 16, 17, 63, 64, 65, 130};
  const int head_dims[] = {64, 128, 256, 8, 200};
  for (int S : seqlens) {
    for (int D : head_dims) {
      for (int per_tensor = 0; per_tensor < 2; ++per_tensor) {
        const int chunks = S == 130 ? 3 : 1;  // 3 chunks: a group's tiles over 3 blocks
        cases.push_back(make_case<__nv_bfloat16>("bf16", 2, S, 2, D, 1, per_tensor, chunks, rng));
        if (S == 17 || S == 130) {
          cases.push_back(make_case<__half>("fp16", 1, S, 3, D, 1, per_tensor, chunks, rng));
          cases.push_back(make_case<float>("fp32", 1, S, 2, D, 1, per_tensor, chunks, rng));
          cases.push_back(make_case<double>("fp64", 1, S, 2, D, 1, per_tensor, chunks, rng));
          cases.push_back(make_case<__nv_bfloat16>("bf16", 1, S, 2, D, 2, per_tensor, chunks, rng));
          cases.push_back(make_case<float>("fp32", 1, S, 2, D, 2, per_tensor, chunks, rng));
        }
      }
    }
  }
  // more chunks than tiles: empty chunks
  cases.push_back(make_case<__nv_bfloat16>("bf16", 1, 300, 2, 256, 1, true, 40, rng));
  run_cases(cases);
  // The kernel's slot (packed order) against the natural order, per load width.
  auto packed = [](int key) { return tile_slot(key); };
  auto natural = [](int key) { return key; };
  const int conflicts[4][2] = {
      {bank_conflicts<__nv_bfloat16, 8>(packed), bank_conflicts<__nv_bfloat16, 8>(natural)},
      {bank_conflicts<float, 4>(packed), bank_conflicts<float, 4>(natural)},
      {bank_conflicts<double, 2>(packed), bank_conflicts<double, 2>(natural)},
      {bank_conflicts<float, 1>(packed), bank_conflicts<float, 1>(natural)}};
  if (conflicts[0][0] != 0) {
    std::printf("FAIL %d shared-memory bank conflicts in the 16-bit packed-v tile\n", conflicts[0][0]);
    ++failures;
  }
  const char* widths[4] = {"16-byte bf16/fp16", "16-byte fp32", "16-byte fp64", "scalar"};
  for (int i = 0; i < 4; ++i) {
    if (conflicts[i][0] > conflicts[i][1]) {
      std::printf("FAIL %s loads: %d bank conflicts with the packed order, %d with the natural one\n", widths[i],
                  conflicts[i][0], conflicts[i][1]);
      ++failures;
    }
  }
  if (failures != 0) return 1;
  std::printf("packed-v cast: ok (%zu cases, every byte; bank conflicts packed / natural order: bf16 %d / %d, "
              "fp32 %d / %d, fp64 %d / %d, scalar %d / %d)\n",
              cases.size(), conflicts[0][0], conflicts[0][1], conflicts[1][0], conflicts[1][1], conflicts[2][0],
              conflicts[2][1], conflicts[3][0], conflicts[3][1]);
  return 0;
}
