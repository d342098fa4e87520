// torch_fmha kernel dev shim: torch-free C entry points over launch_fwd, so
// tools/kernel_dev/harness.py can call the kernel through ctypes.
#include <cstdint>
#include <cstring>
#include <cuda_runtime.h>

#include "launch/launch_fwd.h"

namespace {

// Checks, launches, and reports failures in msg. 0: launched; 1: unsupported; 2: launch error.
int check_and_launch(const torch_fmha::FwdParams& p, void* stream, char* msg, int msg_len) {
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

void set_math(torch_fmha::FwdParams& p, float softmax_scale, const float* q_descale,
              const float* k_descale, const float* v_descale, const float* out_scale,
              const int32_t* scale_strides, int window_left, int window_right, int out_type,
              int num_sms) {
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
}

}  // namespace

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
  p.total_k = batch * seqlen_k;
  set_math(p, softmax_scale, q_descale, k_descale, v_descale, out_scale, scale_strides,
           window_left, window_right, out_type, num_sms);
  return check_and_launch(p, stream, msg, msg_len);
}

// Device scratch bytes tfmha_varlen_fwd needs for `batch` sequences.
extern "C" int64_t tfmha_varlen_workspace_bytes(int batch) {
  torch_fmha::FwdParams p;
  static const int32_t kAny = 0;
  p.cu_seqlens_q = &kAny;  // only "varlen or not" matters for the size
  p.batch = batch;
  return static_cast<int64_t>(torch_fmha::fwd_workspace_bytes(p));
}

// Packed q [Tq, H, D], k/v [Tk, Hkv, D], out [Tq, H, D], lse [H, Tq];
// cu_seqlens_q/k int32 [B + 1] in device memory; workspace of
// tfmha_varlen_workspace_bytes(batch) device bytes.
extern "C" int tfmha_varlen_fwd(const void* q, const void* k, const void* v, void* out, float* lse,
                                const int64_t* strides,  // 9: q(r,h) k(r,h) v(r,h) out(r,h) lse(h)
                                const int32_t* cu_seqlens_q, const int32_t* cu_seqlens_k,
                                int batch, int total_q, int total_k, int heads_q, int heads_kv,
                                int head_dim, int max_seqlen_q, int max_seqlen_k,
                                float softmax_scale, const float* q_descale,
                                const float* k_descale, const float* v_descale,
                                const float* out_scale, const int32_t* scale_strides,
                                int window_left, int window_right, int out_type, int num_sms,
                                void* workspace, void* stream, char* msg, int msg_len) {
  torch_fmha::FwdParams p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.lse = lse;
  p.q_row_stride = strides[0];
  p.q_head_stride = strides[1];
  p.k_row_stride = strides[2];
  p.k_head_stride = strides[3];
  p.v_row_stride = strides[4];
  p.v_head_stride = strides[5];
  p.out_row_stride = strides[6];
  p.out_head_stride = strides[7];
  p.lse_head_stride = strides[8];
  p.cu_seqlens_q = cu_seqlens_q;
  p.cu_seqlens_k = cu_seqlens_k;
  p.batch = batch;
  p.heads_q = heads_q;
  p.heads_kv = heads_kv;
  p.head_dim = head_dim;
  p.seqlen_q = max_seqlen_q;
  p.seqlen_k = max_seqlen_k;
  p.total_q = total_q;
  p.total_k = total_k;
  p.workspace = workspace;
  set_math(p, softmax_scale, q_descale, k_descale, v_descale, out_scale, scale_strides,
           window_left, window_right, out_type, num_sms);
  return check_and_launch(p, stream, msg, msg_len);
}
