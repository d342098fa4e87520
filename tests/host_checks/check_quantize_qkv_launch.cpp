// Host-only check (no GPU needed) of a whole CUDA quantize_qkv call: q, k and v in one
// QuantizeParams, planned as the op plans it, every block of every kernel of the launch
// run, and q8, k8, v8 and the descales compared with a plain reference computed here.
//
// What runs is the kernels' own device code (csrc/kernel/quantize.cuh) compiled by the
// host compiler: a thread block is 512 std::threads (one persistent pool), __syncthreads
// a std::barrier over them, __shfl_xor_sync a per-warp exchange through a slot array and
// a 32-thread barrier, __shared__ a function-local static (blocks run one at a time, so
// the statics are one block's shared memory), blockIdx a thread-local set per block.
// The tensors are described as csrc/ops/quantize_op.cpp (add_tensor, plan_quantize_qkv)
// does, the grid planned by the op's own functions (csrc/quantize.h: plan_quantize_blocks,
// quantize_in_one_launch, assign_partial_amax) and launched as csrc/launch/quantize.cu
// does (quantize_group_kernel when every tensor has one chunk, else quantize_amax_kernel
// then quantize_cast_kernel over the whole grid); add_tensor and the launch need ATen /
// the CUDA launch syntax, so their few lines are mirrored here (marked "mirror of"). Blocks run in a shuffled order (a GPU runs them in
// any order). Outputs start poisoned (FP8 bytes 0xAA, descales and scratch NaN), so an
// unwritten byte shows, and sit between guard regions, so a write outside them shows.
//
// Cases: bf16 inputs with outliers (as tests/gpu/test_quantize_sm90.py's _data:
// 0.1% x10, channel 3 x30, head 0 x1e-4), B = 2, H = 4, Hkv = 2, S in {1, 63, 129, 1023},
// D in {64, 128, 256}, per-tensor and per-head (q's groups GQA's), pack_v true and
// false; plus fp32 and scalar-load (strided bf16) cases. Each call: every byte of q8, k8,
// v8 (a packed v [B, Hkv, D, G, 16] with pack_v, in csrc/vt_key_order.h's key order,
// padding slots zero), every descale, bitwise against the reference; and the pack_v call's
// q8 / k8 / descales == the standard call's (what the GPU test
// test_packed_v_through_attention relies on).
// With TORCH_FMHA_QUANTIZE_DUMP=<dir> set, each call's inputs (raw buffers, strides
// included) and outputs go to <dir> with a manifest, and
// tests/test_quantize_qkv_launch_host.py runs the CPU op on the same inputs and compares
// every byte: the emulated CUDA launch == the CPU op.
// Prints one "ok" line; exits 1 after printing the failures.
// Build + run (tests/test_quantize_qkv_launch_host.py):
//   c++ -std=c++20 -O1 -pthread -I/usr/local/cuda/include -Icsrc
//   tests/host_checks/check_quantize_qkv_launch.cpp -o build/cqql && build/cqql
#include <cuda_runtime.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
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
thread_local HostIndex blockIdx;
std::barrier<>* block_barrier = nullptr;
#define __syncthreads() block_barrier->arrive_and_wait()
#undef __shared__
#define __shared__ static  // one block at a time: its threads share the statics
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

constexpr int kHostThreads = 512;  // == kernel::kQuantizeThreads (static_assert below)
std::barrier<>* warp_barriers[kHostThreads / 32];
float shuffle_slots[kHostThreads / 32][32];

// Every lane of the warp calls it (as block_max does): publish, wait, read the partner, wait.
inline float __shfl_xor_sync(unsigned mask, float v, int lane_mask) {
  if (mask != 0xffffffffu) std::abort();
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  shuffle_slots[warp][lane] = v;
  warp_barriers[warp]->arrive_and_wait();
  const float got = shuffle_slots[warp][lane ^ static_cast<unsigned>(lane_mask)];
  warp_barriers[warp]->arrive_and_wait();
  return got;
}

#include "host_float.h"
#include "kernel/quantize.cuh"

using namespace torch_fmha;
using namespace torch_fmha::kernel;
static_assert(kQuantizeThreads == kHostThreads, "one host thread per CUDA thread");

namespace {

int failures = 0;

// ---------------------------------------------------------------- the block pool ---
// 512 persistent threads; run(body) has each of them run body() once.
class Pool {
 public:
  Pool() : start_(kQuantizeThreads + 1), done_(kQuantizeThreads + 1), block_(kQuantizeThreads) {
    block_barrier = &block_;
    for (auto& w : warps_) w = std::make_unique<std::barrier<>>(32);
    for (int i = 0; i < kQuantizeWarps; ++i) warp_barriers[i] = warps_[i].get();
    for (int i = 0; i < kQuantizeThreads; ++i) {
      threads_.emplace_back([this, i] {
        threadIdx.x = static_cast<unsigned>(i);
        for (;;) {
          start_.arrive_and_wait();
          if (quit_) return;
          body_();
          done_.arrive_and_wait();
        }
      });
    }
  }
  ~Pool() {
    quit_ = true;
    start_.arrive_and_wait();
    for (auto& t : threads_) t.join();
  }
  void run(std::function<void()> body) {
    body_ = std::move(body);
    start_.arrive_and_wait();
    done_.arrive_and_wait();
  }

 private:
  std::barrier<> start_, done_, block_;
  std::unique_ptr<std::barrier<>> warps_[kQuantizeWarps];
  std::function<void()> body_;
  bool quit_ = false;
  std::vector<std::thread> threads_;
};

// One kernel launch of `blocks` blocks, in the order `order`; each block ends with a barrier
// so the next one starts on a quiet shared memory.
void launch(Pool& pool, void (*kernel)(QuantizeParams), const QuantizeParams& p, const std::vector<int64_t>& order) {
  pool.run([&] {
    for (int64_t b : order) {
      blockIdx.x = static_cast<unsigned>(b);
      kernel(p);
      __syncthreads();
    }
  });
}

// ------------------------------------------------------------------- the inputs ---
// A dense [B, S, H, D] input, head-dim stride dim_stride (2: scalar loads), 16-byte aligned.
template <typename T>
struct Input {
  std::shared_ptr<T> data;
  int64_t B, S, H, D, stride_batch, stride_row, stride_head, stride_dim;
  float at(int64_t b, int64_t s, int64_t h, int64_t d) const {
    return static_cast<float>(compute_value(
        data.get()[b * stride_batch + s * stride_row + h * stride_head + d * stride_dim]));
  }
};

// tests/gpu/test_quantize_sm90.py's _data(kind="outliers"): N(0, 1), 0.1% of entries x10,
// channel 3 x30, head 0 x1e-4.
template <typename T>
Input<T> make_input(int64_t B, int64_t S, int64_t H, int64_t D, int64_t dim_stride, std::mt19937& rng) {
  Input<T> in{nullptr, B, S, H, D, 0, 0, 0, dim_stride};
  in.stride_head = D * dim_stride;
  in.stride_row = H * in.stride_head;
  in.stride_batch = S * in.stride_row;
  const size_t n = static_cast<size_t>(std::max<int64_t>(B * in.stride_batch, 1));
  const size_t bytes = (2 * n * sizeof(T) + 65536 + 63) / 64 * 64;  // x, then as much again: reads past x stay in it
  in.data = std::shared_ptr<T>(static_cast<T*>(std::aligned_alloc(64, bytes)), std::free);
  std::memset(in.data.get(), 0, bytes);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t d = 0; d < D; ++d) {
          float x = normal(rng);
          if (uniform(rng) < 1e-3f) x *= 10.0f;
          if (d == 3) x *= 30.0f;
          if (h == 0) x *= 1e-4f;
          in.data.get()[b * in.stride_batch + s * in.stride_row + h * in.stride_head + d * dim_stride] =
              from_float<T>(x);
        }
      }
    }
  }
  return in;
}

// --------------------------------------------- the plan (mirror of the op's code) ---
QuantInType in_type_of(size_t element_size, bool is_bf16) {
  return element_size == 8 ? QuantInType::kFloat64
         : element_size == 4 ? QuantInType::kFloat32
         : is_bf16 ? QuantInType::kBFloat16 : QuantInType::kFloat16;
}

// Mirror of add_tensor (csrc/ops/quantize_op.cpp) for a dense input: the QuantizeTensor
// and the size of its FP8 output.
template <typename T>
QuantizeTensor describe(const Input<T>& x, bool per_head, int32_t group_size, float descale_factor,
                        bool packed_v, size_t& fp8_bytes) {
  QuantizeTensor t;
  t.x = x.data.get();
  t.stride_batch = x.stride_batch;
  t.stride_row = x.stride_row;
  t.stride_head = x.stride_head;
  t.stride_dim = x.stride_dim;
  t.batch = x.B;
  t.seqlen = x.S;
  t.heads = static_cast<int32_t>(x.H);
  t.head_dim = static_cast<int32_t>(x.D);
  t.in_type = in_type_of(sizeof(T), std::is_same_v<T, __nv_bfloat16>);
  const int64_t vec = 16 / static_cast<int64_t>(sizeof(T));
  t.vectorized = t.stride_dim == 1 && t.head_dim % vec == 0 && t.stride_row % vec == 0 &&
                 t.stride_head % vec == 0 && t.stride_batch % vec == 0 &&
                 reinterpret_cast<uintptr_t>(t.x) % 16 == 0;
  t.descale_factor = descale_factor;
  t.per_tensor = !per_head;
  t.group_heads = per_head ? group_size : t.heads;
  if (per_head) {
    t.groups_per_sequence = t.heads / group_size;
    t.sequences = static_cast<int32_t>(x.B);
  }
  if (packed_v) {
    t.packed_v = true;
    t.packed_keys = packed_v_keys(t.seqlen);
    fp8_bytes = static_cast<size_t>(x.B * x.H * x.D * t.packed_keys);
  } else {
    fp8_bytes = static_cast<size_t>(x.B * x.S * x.H * x.D);
  }
  return t;
}

// A buffer between two guard regions as large as itself (at least 64 KB), so a kernel that
// writes outside its output (a wrong block or group index) fails the check instead of
// corrupting the host heap.
class Guarded {
 public:
  static constexpr uint8_t kGuard = 0x5C;
  Guarded() = default;
  Guarded(size_t bytes, uint8_t fill) : bytes_(bytes), guard_(std::max<size_t>(bytes, 65536)) {
    mem_.assign(bytes_ + 2 * guard_, kGuard);
    std::fill(mem_.begin() + guard_, mem_.begin() + guard_ + bytes_, fill);
  }
  uint8_t* data() { return mem_.data() + guard_; }
  const uint8_t* data() const { return mem_.data() + guard_; }
  std::vector<uint8_t> bytes() const { return {data(), data() + bytes_}; }
  size_t guard_bytes_written() const {
    size_t n = 0;
    for (size_t i = 0; i < mem_.size(); ++i) n += (i < guard_ || i >= guard_ + bytes_) && mem_[i] != kGuard;
    return n;
  }

 private:
  size_t bytes_ = 0, guard_ = 0;
  std::vector<uint8_t> mem_;
};

constexpr uint8_t kNanByte = 0xFF;  // every float of a buffer filled with it is a NaN

struct Outputs {
  Guarded fp8[3];
  Guarded descales;  // float [3, per_tensor]
  Guarded partial;   // the amax scratch (two launches)
  int64_t blocks = 0;
  bool two_launches = false;
  const float* descale(int64_t i) const { return reinterpret_cast<const float*>(descales.data()) + i; }
};

// One quantize_qkv call on the "GPU": plan_quantize_qkv + run (quantize_cuda.cpp) + launch_quantize.
template <typename T>
Outputs quantize_qkv_call(Pool& pool, const Input<T>& q, const Input<T>& k, const Input<T>& v, bool per_head,
                          bool pack_v, std::mt19937& rng) {
  Outputs out;
  const int64_t per_tensor = per_head ? k.B * k.H : 1;
  out.descales = Guarded(static_cast<size_t>(3 * per_tensor) * sizeof(float), kNanByte);
  float* descales = reinterpret_cast<float*>(out.descales.data());
  QuantizeParams p;
  const Input<T>* xs[3] = {&q, &k, &v};
  for (int i = 0; i < 3; ++i) {
    size_t bytes = 0;
    QuantizeTensor t = describe(*xs[i], per_head, i == 0 ? static_cast<int32_t>(q.H / k.H) : 1, 1.0f,
                                i == 2 && pack_v, bytes);
    out.fp8[i] = Guarded(bytes, 0xAA);
    t.x_fp8 = out.fp8[i].data();
    t.descale = descales + i * per_tensor;
    p.tensors[p.num_tensors++] = t;
  }
  // run() of csrc/ops/quantize_cuda.cpp: the op's own block planning (csrc/quantize.h)
  const int64_t scratch = plan_quantize_blocks(p);
  if (!quantize_in_one_launch(p)) {
    out.partial = Guarded(static_cast<size_t>(scratch) * sizeof(float), kNanByte);
    assign_partial_amax(p, reinterpret_cast<float*>(out.partial.data()));
  }
  // launch_quantize of csrc/launch/quantize.cu, blocks in a shuffled order
  out.blocks = p.num_blocks;
  std::vector<int64_t> order(static_cast<size_t>(p.num_blocks));
  for (int64_t b = 0; b < p.num_blocks; ++b) order[b] = b;
  std::shuffle(order.begin(), order.end(), rng);
  if (p.num_blocks == 0) return out;
  if (quantize_in_one_launch(p)) {
    launch(pool, &quantize_group_kernel, p, order);
  } else {
    out.two_launches = true;
    launch(pool, &quantize_amax_kernel, p, order);
    std::shuffle(order.begin(), order.end(), rng);
    launch(pool, &quantize_cast_kernel, p, order);
  }
  return out;
}

// ------------------------------------------------------------- the reference ---
// The bytes and descales of one tensor: groups (b, g) of group_heads heads (per head) or
// one group; standard [B, S, H, D] or packed-v [B, H, D, G, 16] output.
template <typename T>
void reference(const Input<T>& x, bool per_head, int64_t group_heads, bool packed_v,
               std::vector<uint8_t>& fp8, std::vector<float>& descale) {
  const int64_t gh = per_head ? group_heads : x.H;
  const int64_t groups_per_b = x.H / gh;
  const int64_t groups = per_head ? x.B * groups_per_b : 1;
  std::vector<float> amax(static_cast<size_t>(groups), 0.0f);
  auto group_of = [&](int64_t b, int64_t h) { return per_head ? b * groups_per_b + h / gh : 0; };
  for (int64_t b = 0; b < x.B; ++b)
    for (int64_t s = 0; s < x.S; ++s)
      for (int64_t h = 0; h < x.H; ++h)
        for (int64_t d = 0; d < x.D; ++d) {
          float& m = amax[group_of(b, h)];
          m = std::max(m, finite_abs(x.at(b, s, h, d)));
        }
  descale.resize(static_cast<size_t>(groups));
  for (int64_t g = 0; g < groups; ++g) descale[g] = descale_from_amax(amax[g]);  // factor 1
  // packed v: key s at group s / 16, slot vt_slot_of_key(s % 16) (the inverse of the
  // definition's vt_key_of_slot, which the header checks), column d in row
  // packed_v_column_of_row(d) (its own inverse, which the header checks); zeros elsewhere.
  const int64_t P = (x.S + 15) / 16 * 16;
  fp8.assign(static_cast<size_t>(packed_v ? x.B * x.H * x.D * P : x.B * x.S * x.H * x.D), 0);
  for (int64_t b = 0; b < x.B; ++b)
    for (int64_t s = 0; s < x.S; ++s)
      for (int64_t h = 0; h < x.H; ++h)
        for (int64_t d = 0; d < x.D; ++d) {
          const uint8_t byte = quantize_value(x.at(b, s, h, d), descale[group_of(b, h)]);
          const int64_t row = packed_v_column_of_row(static_cast<int>(d), static_cast<int>(x.D));
          const int64_t at = packed_v ? ((b * x.H + h) * x.D + row) * P + s / 16 * 16 + vt_slot_of_key(s % 16)
                                      : ((b * x.S + s) * x.H + h) * x.D + d;
          fp8[at] = byte;
        }
}

int compare_bytes(const std::string& what, const std::vector<uint8_t>& got, const std::vector<uint8_t>& want) {
  if (got.size() != want.size()) {
    std::printf("FAIL %s: %zu bytes, want %zu\n", what.c_str(), got.size(), want.size());
    return 1;
  }
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i] && bad++ == 0) first = i;
  }
  if (bad != 0) {
    std::printf("FAIL %s: %zu of %zu bytes differ, first at %zu: 0x%02x, want 0x%02x\n", what.c_str(), bad,
                got.size(), first, got[first], want[first]);
  }
  return bad != 0;
}

int compare_floats(const std::string& what, const float* got, const std::vector<float>& want) {
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0 && bad++ < 3) {
      std::printf("FAIL %s: descale %zu = %.9g, want %.9g\n", what.c_str(), i, got[i], want[i]);
    }
  }
  return bad != 0;
}

int64_t blocks_run = 0, launches_two = 0, calls = 0;

// TORCH_FMHA_QUANTIZE_DUMP: <dir>/manifest.txt gets one line per call,
//   <index> <dtype> <B> <S> <H> <Hkv> <D> <stride_batch> <stride_row> <stride_head> <stride_dim> <per_head> <pack_v>
// (strides of q; k's and v's are those with Hkv heads), and <dir>/<index>_<name>.bin the raw
// bytes of q, k, v (their whole buffers) and of q8, k8, v8 and the descales [3, ...].
const char* dump_dir = nullptr;

void write_file(const std::string& path, const void* data, size_t bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!f) {
    std::printf("FAIL cannot write %s\n", path.c_str());
    ++failures;
  }
}

template <typename T>
void dump_call(const char* type, const Input<T>* xs[3], int64_t Hkv, bool per_head, bool pack_v, const Outputs& o) {
  const int64_t index = calls;
  const std::string stem = std::string(dump_dir) + "/" + std::to_string(index) + "_";
  const char* in_names[3] = {"q", "k", "v"};
  const char* out_names[3] = {"q8", "k8", "v8"};
  for (int i = 0; i < 3; ++i) {
    write_file(stem + in_names[i] + ".bin", xs[i]->data.get(),
               static_cast<size_t>(xs[i]->B * xs[i]->stride_batch) * sizeof(T));
    const std::vector<uint8_t> bytes = o.fp8[i].bytes();
    write_file(stem + out_names[i] + ".bin", bytes.data(), bytes.size());
  }
  const std::vector<uint8_t> descales = o.descales.bytes();
  write_file(stem + "descales.bin", descales.data(), descales.size());
  const Input<T>& q = *xs[0];
  std::ofstream manifest(std::string(dump_dir) + "/manifest.txt", std::ios::app);
  manifest << index << ' ' << type << ' ' << q.B << ' ' << q.S << ' ' << q.H << ' ' << Hkv << ' ' << q.D << ' '
           << q.stride_batch << ' ' << q.stride_row << ' ' << q.stride_head << ' ' << q.stride_dim << ' '
           << int(per_head) << ' ' << int(pack_v) << '\n';
}

template <typename T>
void check_case(Pool& pool, const char* type, int64_t B, int64_t S, int64_t H, int64_t Hkv, int64_t D,
                int64_t dim_stride, bool per_head, std::mt19937& rng) {
  const Input<T> q = make_input<T>(B, S, H, D, dim_stride, rng);
  const Input<T> k = make_input<T>(B, S, Hkv, D, dim_stride, rng);
  const Input<T> v = make_input<T>(B, S, Hkv, D, dim_stride, rng);
  char name[160];
  std::snprintf(name, sizeof(name), "%s B=%ld S=%ld H=%ld Hkv=%ld D=%ld dim_stride=%ld %s", type, long(B), long(S),
                long(H), long(Hkv), long(D), long(dim_stride), per_head ? "per-head" : "per-tensor");
  const Input<T>* xs[3] = {&q, &k, &v};
  const char* names[3] = {"q8", "k8", "v8"};
  Outputs by_layout[2];
  for (int keys = 0; keys < 2; ++keys) {
    Outputs o = quantize_qkv_call(pool, q, k, v, per_head, keys != 0, rng);
    if (dump_dir != nullptr) dump_call(type, xs, Hkv, per_head, keys != 0, o);
    ++calls;
    blocks_run += o.blocks * (o.two_launches ? 2 : 1);
    launches_two += o.two_launches;
    const std::string what = std::string(name) + (keys ? " pack_v" : " standard");
    const int64_t per_tensor = per_head ? B * Hkv : 1;
    for (int i = 0; i < 3; ++i) {
      std::vector<uint8_t> fp8;
      std::vector<float> descale;
      reference(*xs[i], per_head, i == 0 ? H / Hkv : 1, i == 2 && keys, fp8, descale);
      failures += compare_bytes(what + " " + names[i] + (o.two_launches ? " (2 launches)" : " (1 launch)"),
                                o.fp8[i].bytes(), fp8);
      failures += compare_floats(what + " " + names[i] + " descales", o.descale(i * per_tensor), descale);
    }
    const Guarded* buffers[5] = {&o.fp8[0], &o.fp8[1], &o.fp8[2], &o.descales, &o.partial};
    const char* buffer_names[5] = {"q8", "k8", "v8", "descales", "amax scratch"};
    for (int i = 0; i < 5; ++i) {
      if (const size_t n = buffers[i]->guard_bytes_written()) {
        std::printf("FAIL %s: %zu bytes written outside %s\n", what.c_str(), n, buffer_names[i]);
        ++failures;
      }
    }
    by_layout[keys] = std::move(o);
  }
  // The pack_v call's q8, k8, descales are the standard call's.
  const std::string what = std::string(name) + " pack_v vs standard";
  failures += compare_bytes(what + " q8", by_layout[1].fp8[0].bytes(), by_layout[0].fp8[0].bytes());
  failures += compare_bytes(what + " k8", by_layout[1].fp8[1].bytes(), by_layout[0].fp8[1].bytes());
  failures += compare_bytes(what + " descales", by_layout[1].descales.bytes(), by_layout[0].descales.bytes());
}

}  // namespace

int main() {
  dump_dir = std::getenv("TORCH_FMHA_QUANTIZE_DUMP");
  std::mt19937 rng(2026);
  Pool pool;
  int cases = 0;
  for (int64_t S : {1, 63, 129, 1023}) {
    for (int64_t D : {64, 128, 256}) {
      for (bool per_head : {false, true}) {
        check_case<__nv_bfloat16>(pool, "bf16", 2, S, 4, 2, D, 1, per_head, rng);
        ++cases;
      }
    }
  }
  // other element types and the scalar loads, a few shapes
  for (bool per_head : {false, true}) {
    check_case<float>(pool, "fp32", 2, 129, 4, 2, 64, 1, per_head, rng);
    check_case<__nv_bfloat16>(pool, "bf16", 2, 129, 4, 2, 128, 2, per_head, rng);
    cases += 2;
  }
  if (failures != 0) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("quantize_qkv launch: ok (%d cases, %ld calls, %ld blocks run, %ld calls in 2 launches; every byte "
              "and descale)\n",
              cases, long(calls), long(blocks_run), long(launches_two));
  return 0;
}
