// torch_fmha: host entry point of the split-KV decode kernel
// (csrc/kernel/decode.cuh). csrc/ops/kvcache_op.cpp calls it; nothing here
// includes torch.
#pragma once

#include <cuda_runtime.h>

#include "../decode_params.h"

namespace torch_fmha {

// Whether the decode kernel takes this head dim (64, 128, 256) and number of
// query rows per KV head (Sq x H / Hkv <= 64: up to 4 tiles of 16 rows, one mma.sync
// tile each).
bool decode_kernel_supports(int head_dim, int rows);

// The 16-row tiles (CTAs per split) of `rows` query rows per KV head: DecodeParams::row_tiles.
int decode_row_tiles(int rows);

// CTAs of the decode kernel for this head dim that one SM holds at once
// (cudaOccupancyMaxActiveBlocksPerMultiprocessor on the current device, read
// once per device and head dim; an attribute query, no synchronisation).
int decode_ctas_per_sm(int head_dim);

// Enqueues the decode kernel on `stream`: grid (splits x row tiles, Hkv, B). No host
// synchronisation, no allocation. fewer_ctas_per_sm: launch it with more dynamic
// shared memory than it uses, so that an SM holds one CTA fewer than
// decode_ctas_per_sm (when a grid of several waves fills its last wave better
// that way, decode_fewer_ctas_per_sm); the result does not depend on it.
// Returns the launch status.
cudaError_t launch_decode(const DecodeParams& params, bool fewer_ctas_per_sm, cudaStream_t stream);

}  // namespace torch_fmha
