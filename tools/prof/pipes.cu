// Pipe microbenchmark (sm_90): how many of each softmax instruction an SM retires per clock,
// alone and paired with MUFU.EX2 -- does P's conversion to e4m3 (F2FP) compete with the exps?
// Build and run on the GPU machine (nvcc comes with the toolkit there):
//   nvcc -O3 -arch=sm_90a -o /tmp/pipes tools/prof/pipes.cu && /tmp/pipes
// Each thread runs kChains independent chains, kIters times; 4 blocks of 256 threads per SM.
// The rate is from wall time at the clock given on the command line (MHz, default 1980:
// check `nvidia-smi --query-gpu=clocks.sm --format=csv` right after). Operations per clock
// per SM, per type; a pair that shares a pipe takes about the sum of the two alone.
// Session 33 (one H200, 1980 MHz): MUFU.EX2 alone 15.9 / clk / SM (the documented 16);
// F2FP e4m3x2 alone 22 instructions / clk (issue-bound here: an FADD and an IADD per
// conversion); EX2 with F2FP 1.162 ms against 1.067 for EX2 alone (one pipe would take about
// twice as long), so P's conversion does not compete with the exps for the MUFU.
// Session 46 added tanh (softcap's MUFU.TANH) alone and with ex2, and the same three at 8 and
// at 4 warps per SM in one block (two / one per scheduler: the consumer warps a sub-partition
// has, and a single one), to ask whether MUFU.TANH runs at EX2's rate and whether one warp
// alone keeps its scheduler's MUFU busy. The second rate column is from block 0's own clock64
// cycles. One H200 (call 5 of docs/bench_h200_2026-12-01_s46_ab.json): the runs of 4 blocks per
// SM took 4x block 0's cycles in wall time at 1980 MHz, i.e. their blocks ran one after another
// (8 warps per SM at a time, not 32; their clock64 column is then not a rate); the one-block
// runs agree on both columns. MUFU.TANH 15.9 / clk / SM at 8 warps, as EX2; tanh + ex2 at 1:1
// 7.9 + 7.9: one pipe. At 4 warps (one per scheduler) EX2 or TANH alone 14.8, the 1:1 mix 6.3 +
// 6.3 = 12.6, 79% of the MUFU's rate: a single warp does not keep it busy on the mix.
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
constexpr int kIters = 4096;
constexpr int kChains = 8;
__device__ __forceinline__ float ex2(float x) { float y; asm volatile("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y; }
__device__ __forceinline__ float tanh_(float x) { float y; asm volatile("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x)); return y; }
__device__ __forceinline__ uint32_t f2fp(float a, float b) { uint16_t r; asm volatile("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(a), "f"(b)); return r; }
__device__ __forceinline__ uint32_t f2h(float a, float b) { uint32_t r; asm volatile("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(a), "f"(b)); return r; }
__device__ __forceinline__ uint32_t h2e(uint32_t a) { uint16_t r; asm volatile("cvt.rn.satfinite.e4m3x2.f16x2 %0, %1;" : "=h"(r) : "r"(a)); return r; }
// mode: 0 ex2 only, 1 f2fp only, 2 ex2 + f2fp (1:1), 3 f2h only, 4 ex2 + f2h, 5 h2e only, 6 ex2 + h2e,
// 7 four dependent FFMAs per chain step (the rate printed counts the group of four as one
// operation: multiply it by 4 for FFMAs per clock), 8 ex2 + four FFMAs, 9 tanh only,
// 10 tanh + ex2 (1:1, independent)
template <int kMode>
__global__ void k(float* out, float seed, long long* cycles) {
  float x[kChains]; uint32_t acc = 0;
  for (int c = 0; c < kChains; ++c) x[c] = seed * (threadIdx.x + c + 1) * 1e-3f;
  long long t0 = clock64();
  float fi = 0.f;
  for (int i = 0; i < kIters; ++i) {
    fi += 1.f;
#pragma unroll
    for (int c = 0; c < kChains; ++c) {
      if (kMode == 0 || kMode == 2 || kMode == 4 || kMode == 6 || kMode == 8) x[c] = ex2(x[c]) * 0.5f;  // ex2 + fmul
      if (kMode == 1 || kMode == 2) acc += f2fp(x[c], x[(c + 1) % kChains] + fi);
      if (kMode == 3 || kMode == 4) acc += f2h(x[c], x[(c + 1) % kChains] + fi);
      if (kMode == 5 || kMode == 6) acc += h2e(__float_as_uint(x[c]) + i);
      if (kMode == 9 || kMode == 10) x[c] = tanh_(x[c]) * 1.5f;  // tanh + fmul
      if (kMode == 10) acc += __float_as_uint(ex2(x[(c + 1) % kChains] - fi));
      if (kMode == 7 || kMode == 8) { x[c] = fmaf(x[c], 0.999f, 1e-3f); x[c] = fmaf(x[c], 0.999f, 1e-3f); x[c] = fmaf(x[c], 0.999f, 1e-3f); x[c] = fmaf(x[c], 0.999f, 1e-3f);}
    }
  }
  long long t1 = clock64();
  float s = 0; for (int c = 0; c < kChains; ++c) s += x[c];
  out[blockIdx.x * blockDim.x + threadIdx.x] = s + acc;
  if (threadIdx.x == 0 && blockIdx.x == 0) *cycles = t1 - t0;
}
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    fprintf(stderr, "pipes: %s: %s\n", what, cudaGetErrorString(e));
    exit(1);
  }
}
template <int kMode> void run(const char* name, float* out, long long* cyc, int sms, double mhz,
                              int blocks_per_sm = 4, int threads = 256) {
  int blocks = sms * blocks_per_sm;  // 4 per SM (32 warps launched): the header says how they ran
  k<kMode><<<blocks, threads>>>(out, 1.0f, cyc);
  check(cudaDeviceSynchronize(), name);
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  cudaEventRecord(a); k<kMode><<<blocks, threads>>>(out, 1.0f, cyc); cudaEventRecord(b); check(cudaEventSynchronize(b), name);
  float ms; cudaEventElapsedTime(&ms, a, b); long long c; cudaMemcpy(&c, cyc, 8, cudaMemcpyDeviceToHost);
  const double ops_per_sm = double(blocks / sms) * threads * kIters * kChains;  // per op type
  printf("%-22s %2d warps / SM launched %8.3f ms  %6.1f ops / clk / SM  (block 0: %lld cycles, %5.1f ops / clk / SM)\n",
         name, blocks_per_sm * threads / 32, ms, ops_per_sm / (ms * 1e-3 * mhz * 1e6), c, ops_per_sm / double(c));
}
int main(int argc, char** argv) {
  const double mhz = argc > 1 ? atof(argv[1]) : 1980.0;
  int sms; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  float* out; long long* cyc; cudaMalloc(&out, sms * 4 * 256 * 4); cudaMalloc(&cyc, 8);
  run<0>("ex2 (+fmul)", out, cyc, sms, mhz);
  run<1>("f2fp e4m3x2", out, cyc, sms, mhz);
  run<2>("ex2 + f2fp", out, cyc, sms, mhz);
  run<3>("f2h f16x2", out, cyc, sms, mhz);
  run<4>("ex2 + f2h", out, cyc, sms, mhz);
  run<5>("h2e e4m3x2.f16x2", out, cyc, sms, mhz);
  run<6>("ex2 + h2e", out, cyc, sms, mhz);
  run<7>("4 ffma", out, cyc, sms, mhz);
  run<8>("ex2 + 4 ffma", out, cyc, sms, mhz);
  for (int threads : {256, 128}) {  // one block per SM: 2 and 1 warps per scheduler
    run<0>("ex2 (+fmul)", out, cyc, sms, mhz, 1, threads);
    run<9>("tanh (+fmul)", out, cyc, sms, mhz, 1, threads);
    run<10>("tanh + ex2", out, cyc, sms, mhz, 1, threads);
  }
  run<9>("tanh (+fmul)", out, cyc, sms, mhz);
  run<10>("tanh + ex2", out, cyc, sms, mhz);
  return 0;
}
