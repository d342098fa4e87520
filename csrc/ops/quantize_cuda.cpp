// torch_fmha: CUDA implementations of quantize_fp8 and quantize_qkv: the
// shared checks, the outputs (and, when a group spans several blocks, one
// float32 scratch for the partial amaxes), then one or two kernel launches for
// all tensors of the call (launch_quantize.h) on the current stream. No host synchronisation: cu_seqlens is read by the
// kernels only (clamped into range; its values are checked on CPU tensors,
// as for varlen_fwd).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../launch/launch_quantize.h"
#include "quantize_op.h"

namespace torch_fmha {
namespace {

void run(const char* op, QuantizeCall& call, const at::Tensor& first) {
  const c10::cuda::CUDAGuard guard(first.device());
  QuantizeParams& p = call.params;
  const int64_t scratch = plan_quantize_blocks(p);
  at::Tensor partial;  // held until the launch is enqueued; the allocator orders its reuse on the stream
  if (!quantize_in_one_launch(p)) {
    partial = at::empty({scratch}, first.options().dtype(at::kFloat));
    assign_partial_amax(p, partial.data_ptr<float>());
  }
  const cudaError_t err = launch_quantize(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, op, ": kernel launch failed: ", cudaGetErrorString(err));
}

Fp8AndDescale quantize_fp8_cuda(const at::Tensor& x, bool per_head, int64_t group_size,
                                const std::optional<at::Tensor>& cu_seqlens) {
  const char* op = "torch_fmha.quantize_fp8";
  QuantizeCall call = plan_quantize_fp8(op, x, per_head, group_size, cu_seqlens);
  run(op, call, x);
  return fp8_outputs(call);
}

QuantizedQkv quantize_qkv_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               bool per_head, bool qk_rotated,
                               const std::optional<at::Tensor>& cu_seqlens_q,
                               const std::optional<at::Tensor>& cu_seqlens_k, bool pack_v) {
  const char* op = "torch_fmha.quantize_qkv";
  QuantizeCall call = plan_quantize_qkv(op, q, k, v, per_head, qk_rotated, cu_seqlens_q, cu_seqlens_k,
                                        pack_v);
  run(op, call, q);
  return qkv_outputs(call);
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_fmha, CUDA, m) {
  m.impl("quantize_fp8", &quantize_fp8_cuda);
  m.impl("quantize_qkv", &quantize_qkv_cuda);
}

}  // namespace torch_fmha
