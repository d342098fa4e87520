// torch_fmha kernel: P in the natural key order, for V^T loaded by TMA with
// its keys in order (Traits::kVKeysContiguous).
//
// Why: the FP8 P V wgmma takes P from registers as its A operand, where quad
// lane c holds, for each 16 keys of a 32-key k-block, A columns 4c .. 4c+3 of
// its rows r and r + 8. The S accumulator (GMMA C layout) gives lane c the
// columns 2c, 2c+1, 8+2c, 9+2c instead. convert_p (consumer.cuh) packs them
// as they are, which is right when the transposer has permuted the keys of
// V^T to match (transpose_v.cuh, transpose_key_perm). TMA cannot permute
// bytes, so when V^T arrives from global memory, P is moved to the natural
// order across the quad instead.
//
// Per 16 keys lane c starts with w0 = [A_c | B_c] (row r) and w1 = [A8_c |
// B8_c] (row r + 8), 16-bit halves, A_c = keys (2c, 2c+1), B_c = keys
// (8+2c, 9+2c), lower key in the lower byte. It needs keys 4c .. 4c+3:
//   c = 0: A_0 A_1   c = 1: A_2 A_3   c = 2: B_0 B_1   c = 3: B_2 B_3
// (and the same for row r + 8). Two shuffles fetch them. Each reads one
// source lane per receiver and every lane sends one word, so each shuffle is
// a permutation of the quad: shuffle 1 reads lane src1 = (0, 2, 1, 3)[c],
// which sends x = [A | A8] if even, [B | B8] if odd; shuffle 2 reads
// src1 ^ 1, which sends y, its other halves. The receiver interleaves the two
// words (lanes 2 and 3 got them in the opposite order). 6 instructions per
// 8 bytes of P: 2 PRMT, 2 SHFL, 2 PRMT.
//
// The send / receive halves are plain functions of a lane's words and c, so
// tests/host_checks/check_p_key_order.cu runs the four lanes in lock step on
// the host.
#pragma once

#include <cstdint>

#include "quad_transpose.cuh"  // byte_perm

namespace torch_fmha::kernel {

// One quad lane's selectors and source lanes, computed once per thread.
struct NaturalKeyOrder {
  uint32_t sel_x, sel_y;        // x, y from (w0, w1): low halves 0x5410, high halves 0x7632
  uint32_t sel_row0, sel_row1;  // (r1, r2) -> new w0 / w1
  int src1, src2;               // quad-relative lanes read by shuffles 1 and 2

  __host__ __device__ static NaturalKeyOrder for_quad_lane(int c) {
    const bool even = (c & 1) == 0;
    const bool a_keys = c < 2;  // lanes 0, 1 take A halves, in shuffle order
    const int src1 = ((c & 1) << 1) | (c >> 1);
    return {even ? 0x5410u : 0x7632u, even ? 0x7632u : 0x5410u,
            a_keys ? 0x5410u : 0x1054u, a_keys ? 0x7632u : 0x3276u, src1, src1 ^ 1};
  }

  __host__ __device__ __forceinline__ uint32_t send_x(uint32_t w0, uint32_t w1) const {
    return byte_perm(w0, w1, sel_x);
  }
  __host__ __device__ __forceinline__ uint32_t send_y(uint32_t w0, uint32_t w1) const {
    return byte_perm(w0, w1, sel_y);
  }
  // r1, r2: what shuffles 1 and 2 brought from lanes src1, src2.
  __host__ __device__ __forceinline__ void receive(uint32_t r1, uint32_t r2, uint32_t& w0,
                                                   uint32_t& w1) const {
    w0 = byte_perm(r1, r2, sel_row0);
    w1 = byte_perm(r1, r2, sel_row1);
  }
};

}  // namespace torch_fmha::kernel
