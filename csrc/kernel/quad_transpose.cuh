// torch_fmha kernel: a 4 x 4 transpose of fp8 output column pairs across the
// 4 lanes of a quad, so the direct epilogue (epilogue.cuh,
// store_output_fp8_groups) stores whole 8-column groups, 8 bytes per lane and
// 32 contiguous bytes per quad, straight from the registers. Builds of a packed v
// need no transpose: the packed v's row order puts whole chunks in each lane
// (csrc/vt_key_order.h; epilogue.cuh, store_output_lane_chunks).
//
// Why: in the GMMA C layout lane q of a quad holds columns 8j + 2q and
// 8j + 2q + 1 of its row for every 8-column group j. Stored as they are, a lane
// writes 2 bytes per instruction and a warp's store touches 8 rows x 8 bytes,
// 8 partial sectors: 64 store instructions per thread and tile at D = 256,
// where the phase trace put the tile's last P V wait + epilogue at ~11900
// cycles (H200, S = 512), three KV blocks' worth. After the transpose over
// groups 4g .. 4g + 3, lane q holds group 4g + q whole: 4x fewer stores, whole
// sectors, and no shared-memory stage (D = 256 has no room for one). For
// bf16 / fp16 output a pair exchange (8 bytes per lane) made ptxas spill in
// the steady-state rounds at D = 256; those outputs keep the column-pair stores.
//
// Each lane starts with row q of a 4 x 4 matrix m of 16-bit elements, two per
// 32-bit word (w[0] = (m[q][0], m[q][1]), low half first), and ends with
// column q (w[0] = (m[0][q], m[1][q]), w[1] = (m[2][q], m[3][q])). Two exchange
// steps, over lane masks 2 and 1: in each a lane sends send(step, ...) to lane
// q ^ quad_step_mask(step) and keeps what it gets back with receive(step, ...).
// The send / receive halves are plain functions of the lane's words and q, so
// tests/host_checks/check_quad_transpose.cu checks them on the host by running
// the four lanes in lock step.
#pragma once

#include <cstdint>

namespace torch_fmha::kernel {

// Partner lane of exchange step s: q ^ quad_step_mask(s). Step 0 swaps the
// off-diagonal 2 x 2 blocks (lanes 0,1 <-> 2,3), step 1 transposes each 2 x 2
// block between lane pairs (0 <-> 1, 2 <-> 3).
__host__ __device__ constexpr int quad_step_mask(int step) { return step == 0 ? 2 : 1; }

__host__ __device__ __forceinline__ uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t selector) {
#ifdef __CUDA_ARCH__
  return __byte_perm(x, y, selector);
#else
  const uint64_t xy = (uint64_t(y) << 32) | x;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= uint32_t((xy >> (8 * ((selector >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return r;
#endif
}

// 16-bit elements (an fp8 column pair), two per word: w[0] = (m[q][0], m[q][1]),
// w[1] = (m[q][2], m[q][3]), low half first.
struct QuadTranspose16 {
  // Fixed byte_perm selectors, the lane's choice made by a select: a selector
  // held in a register per lane is loop-invariant, and ptxas hoisted those
  // out of the tile loop, where they took registers from the steady-state
  // rounds at D = 256 (spills).
  __host__ __device__ static uint32_t send(int step, const uint32_t (&w)[2], int q) {
    if (step == 0) return (q & 2) ? w[0] : w[1];
    // Step 1: the even lane sends its odd columns, the odd lane its even ones.
    const uint32_t evens = byte_perm(w[0], w[1], 0x5410u), odds = byte_perm(w[0], w[1], 0x7632u);
    return (q & 1) ? evens : odds;
  }
  __host__ __device__ static void receive(int step, uint32_t (&w)[2], int q, uint32_t r) {
    if (step == 0) {
      const bool high = (q & 2) != 0;
      w[0] = high ? r : w[0];
      w[1] = high ? w[1] : r;
      return;
    }
    // Even lane: (w0.lo, r.lo), (w1.lo, r.hi); odd lane: (r.lo, w0.hi), (r.hi, w1.hi).
    const bool odd = (q & 1) != 0;
    w[0] = odd ? byte_perm(w[0], r, 0x3254u) : byte_perm(w[0], r, 0x5410u);
    w[1] = odd ? byte_perm(w[1], r, 0x3276u) : byte_perm(w[1], r, 0x7610u);
  }
};

// First output column of the 8 bytes lane q stores after the transpose of
// groups 4g .. 4g + 3: group 4g + q. A step of g moves 32 columns.
__host__ __device__ constexpr int fp8_lane_column(int q, int g) { return 8 * (4 * g + q); }

#ifdef __CUDACC__
// The lane's index within its quad (lane % 4), read from %laneid where it is
// used: computed from threadIdx.x at the kernel's start, the quad transpose's
// lane-dependent choices were loop-invariant, the compiler hoisted them out of
// the tile loop, and at D = 256 they took registers from the steady-state
// rounds (spills there). A volatile read cannot be hoisted.
__device__ __forceinline__ int lane_in_quad() {
  uint32_t lane;
  asm volatile("mov.u32 %0, %%laneid;" : "=r"(lane));
  return int(lane & 3);
}

// The transpose on the device: every lane of the warp must call it (the
// shuffles name the full warp), whatever it then stores.
__device__ __forceinline__ void quad_transpose(uint32_t (&w)[2], int q) {
#pragma unroll
  for (int step = 0; step < 2; ++step) {
    const uint32_t r = __shfl_xor_sync(0xffffffffu, QuadTranspose16::send(step, w, q), quad_step_mask(step));
    QuadTranspose16::receive(step, w, q, r);
  }
}

#endif

}  // namespace torch_fmha::kernel
