// torch_fmha kernel dev shim: a torch-free C entry point over launch_fwd, so
// tools/kernel_dev/harness.py can call the kernel through ctypes.
#include <cstdint>
#include <cstring>
#include <cuda_runtime.h>

#include "launch/launch_fwd.h"

extern "C" int tfmha_fwd(const void* q, const void* k, const void* v, void* out, float* lse,
                         const int64_t* strides,  // 14: q(b,r,h) k(b,r,h) v(b,r,h) out(b,r,h) lse(b,h)
                         int batch, int heads_q, int heads_kv, int head_dim, int seqlen_q,
                         int seqlen_k, float softmax_scale, const float* q_descale,
                         const float* k_descale, const float* v_descale, const float* out_scale,
                         const int32_t* scale_strides,  // 8: (b,h) for q, k, v, out scales
                         int window_left, int window_right, int out_type, int num_sms,
                         void* stream, char* msg, int msg_len) {
  torch_fmha::FwdParams p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.lse = lse;
  p.q_batch_stride = strides[0];
  p.q_row_stride = strides[1];
  p.q_head_stride = strides[2];
  p.k_batch_stride = strides[3];
  p.k_row_stride = strides[4];
  p.k_head_stride = strides[5];
  p.v_batch_stride = strides[6];
  p.v_row_stride = strides[7];
  p.v_head_stride = strides[8];
  p.out_batch_stride = strides[9];
  p.out_row_stride = strides[10];
  p.out_head_stride = strides[11];
  p.lse_batch_stride = strides[12];
  p.lse_head_stride = strides[13];
  p.batch = batch;
  p.heads_q = heads_q;
  p.heads_kv = heads_kv;
  p.head_dim = head_dim;
  p.seqlen_q = seqlen_q;
  p.seqlen_k = seqlen_k;
  p.total_q = batch * seqlen_q;
  p.softmax_scale = softmax_scale;
  p.q_descale = {q_descale, scale_strides[0], scale_strides[1]};
  p.k_descale = {k_descale, scale_strides[2], scale_strides[3]};
  p.v_descale = {v_descale, scale_strides[4], scale_strides[5]};
  p.out_scale = {out_scale, scale_strides[6], scale_strides[7]};
  p.window_left = window_left;
  p.window_right = window_right;
  p.in_type = torch_fmha::ElementType::kFloat8E4M3;
  p.out_type = static_cast<torch_fmha::ElementType>(out_type);
  p.num_sms = num_sms;
  if (const char* why = torch_fmha::fwd_unsupported_reason(p)) {
    std::strncpy(msg, why, msg_len - 1);
    msg[msg_len - 1] = 0;
    return 1;
  }
  cudaError_t err = torch_fmha::launch_fwd(p, static_cast<cudaStream_t>(stream));
  if (err != cudaSuccess) {
    std::strncpy(msg, cudaGetErrorString(err), msg_len - 1);
    msg[msg_len - 1] = 0;
    return 2;
  }
  return 0;
}
