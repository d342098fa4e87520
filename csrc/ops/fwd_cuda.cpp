// torch_fmha: the CUDA implementations of fwd and varlen_fwd.
//
// Checks (the same as every backend, csrc/ops/checks.cpp), allocation, the
// params struct, launch on the current stream. No host synchronisation: the
// only device facts read here (SM count, compute capability) are attribute
// queries cached once per device. A configuration the SM90 kernels do not
// cover raises with the kernels' own sentence; it never falls back.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <atomic>
#include <limits>

#include "../launch/launch_fwd.h"
#include "checks.h"
#include "kernel_args.h"

namespace torch_fmha {
namespace {

ElementType element_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat8_e4m3fn: return ElementType::kFloat8E4M3;
    case at::kBFloat16: return ElementType::kBFloat16;
    case at::kHalf: return ElementType::kFloat16;
    default:
      TORCH_CHECK(false, "torch_fmha: the CUDA kernels take torch.float8_e4m3fn, torch.bfloat16 or "
                  "torch.float16 tensors, got ", dtype_name(t));
  }
}

struct DeviceFacts {
  int major = 0, minor = 0, num_sms = 0;
};

// Attribute queries (no device synchronisation), once per device.
const DeviceFacts& device_facts(int device) {
  static std::array<DeviceFacts, 64> facts{};
  static std::array<std::atomic<bool>, 64> known{};
  TORCH_CHECK(device >= 0 && device < 64, "torch_fmha: device index ", device, " out of range");
  if (!known[device].load(std::memory_order_acquire)) {
    DeviceFacts f;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&f.major, cudaDevAttrComputeCapabilityMajor, device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&f.minor, cudaDevAttrComputeCapabilityMinor, device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&f.num_sms, cudaDevAttrMultiProcessorCount, device));
    facts[device] = f;
    known[device].store(true, std::memory_order_release);
  }
  return facts[device];
}

void check_sm90(const char* op, const at::Tensor& q) {
  const DeviceFacts& f = device_facts(q.device().index());
  TORCH_CHECK(f.major == 9 && f.minor == 0, op,
              ": the CUDA kernels need an SM90 (Hopper: H100/H200) GPU; ", q.device(), " is sm_",
              f.major, f.minor);
}

// Everything the dense and varlen ops fill alike. Rows are dim -3 (the
// sequence), heads dim -2, for [B, S, H, D] and [T, H, D] alike.
FwdParams common_params(const FwdProblem& p, const at::Tensor& q, const at::Tensor& k,
                        const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                        const std::optional<at::Tensor>& q_descale,
                        const std::optional<at::Tensor>& k_descale,
                        const std::optional<at::Tensor>& v_descale,
                        const std::optional<at::Tensor>& out_scale) {
  FwdParams params;
  params.q = q.data_ptr();
  params.k = k.data_ptr();
  params.v = v.data_ptr();
  params.out = out.data_ptr();
  params.lse = lse.data_ptr<float>();
  params.q_row_stride = q.stride(-3);
  params.q_head_stride = q.stride(-2);
  params.k_row_stride = k.stride(-3);
  params.k_head_stride = k.stride(-2);
  params.v_row_stride = v.stride(-3);
  params.v_head_stride = v.stride(-2);
  params.v_dim_stride = v.stride(-1);
  params.out_row_stride = out.stride(-3);
  params.out_head_stride = out.stride(-2);
  params.heads_q = static_cast<int32_t>(p.heads_q);
  params.heads_kv = static_cast<int32_t>(p.heads_kv);
  params.head_dim = static_cast<int32_t>(p.head_dim);
  params.batch = static_cast<int32_t>(p.batch);
  params.softmax_scale = static_cast<float>(p.softmax_scale);
  params.q_descale = scale_tensor(q_descale);
  params.k_descale = scale_tensor(k_descale);
  params.v_descale = scale_tensor(v_descale);
  params.out_scale = scale_tensor(out_scale);
  params.window_left = kernel_window(p.window_left);
  params.window_right = kernel_window(p.window_right);
  params.in_type = element_type(q.scalar_type());
  params.out_type = element_type(p.out_dtype);
  params.num_sms = device_facts(q.device().index()).num_sms;
  return params;
}

// The score options the dense and varlen ops fill alike.
void fill_score_options(FwdParams& params, const FwdProblem& p,
                        const std::optional<at::Tensor>& sinks) {
  params.softcap = static_cast<float>(p.softcap);
  params.sinks = sinks.has_value() ? sinks->data_ptr<float>() : nullptr;
}

// The lse of a row that sees no key: -inf, or its head's sink. lse is
// [B, H, Sq] (dense) or [H, Tq] (varlen); heads are dim -2. No host sync.
void fill_empty_rows(at::Tensor& out, at::Tensor& lse, const std::optional<at::Tensor>& sinks) {
  out.zero_();
  if (sinks.has_value()) {
    lse.copy_(sinks->view({-1, 1}).expand_as(lse));
  } else {
    lse.fill_(-std::numeric_limits<float>::infinity());
  }
}

void launch(const char* op, const FwdParams& params) {
  if (const char* reason = fwd_unsupported_reason(params)) {
    TORCH_CHECK(false, op, ": ", reason);
  }
  const cudaError_t err = launch_fwd(params, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, op, ": kernel launch failed: ", cudaGetErrorString(err));
}

std::tuple<at::Tensor, at::Tensor> fwd_cuda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    std::optional<double> softmax_scale, bool causal, int64_t window_left,
    int64_t window_right, const std::optional<at::Tensor>& q_descale,
    const std::optional<at::Tensor>& k_descale, const std::optional<at::Tensor>& v_descale,
    const std::optional<at::Tensor>& out_scale, std::optional<at::ScalarType> out_dtype,
    double softcap, const std::optional<at::Tensor>& sinks) {
  const char* op = "torch_fmha.fwd";
  const FwdProblem p = check_fwd(op, q, k, v, softmax_scale, causal, window_left, window_right,
                                 q_descale, k_descale, v_descale, out_scale, out_dtype, softcap,
                                 sinks);
  check_sm90(op, q);
  c10::cuda::CUDAGuard guard(q.device());
  at::Tensor out = at::empty({p.batch, p.seqlen_q, p.heads_q, p.head_dim},
                             q.options().dtype(p.out_dtype));  // [B, Sq, H, D]
  at::Tensor lse = at::empty({p.batch, p.heads_q, p.seqlen_q},
                             q.options().dtype(at::kFloat));   // [B, H, Sq]
  FwdParams params = common_params(p, q, k, v, out, lse, q_descale, k_descale, v_descale, out_scale);
  fill_score_options(params, p, sinks);
  params.q_batch_stride = q.stride(0);
  params.k_batch_stride = k.stride(0);
  params.v_batch_stride = v.stride(0);
  if (v.dim() == 5) {
    // A packed v [B, Hkv, D, G, 16], contiguous (check_fwd): keys along the
    // flattened G * 16 slots (csrc/vt_key_order.h), heads dim 1, head dim dim 2.
    params.v_row_stride = v.stride(4);
    params.v_head_stride = v.stride(1);
    params.v_dim_stride = v.stride(2);
  }
  params.out_batch_stride = out.stride(0);
  params.lse_batch_stride = lse.stride(0);
  params.lse_head_stride = lse.stride(1);
  params.seqlen_q = static_cast<int32_t>(p.seqlen_q);
  params.seqlen_k = static_cast<int32_t>(p.seqlen_k);
  params.total_q = static_cast<int32_t>(p.batch * p.seqlen_q);
  params.total_k = static_cast<int32_t>(p.batch * p.seqlen_k);
  if (out.numel() == 0) return {out, lse};
  if (p.seqlen_k == 0) {  // no key anywhere: every row is empty (no launch needed)
    fill_empty_rows(out, lse, sinks);
    return {out, lse};
  }
  // The split tail's partials (launch_fwd.h), where the launch may split; else none.
  at::Tensor workspace;
  if (const size_t bytes = fwd_workspace_bytes(params); bytes > 0) {
    workspace = at::empty({static_cast<int64_t>(bytes)}, q.options().dtype(at::kByte));
    params.workspace = workspace.data_ptr();
  }
  launch(op, params);
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor> varlen_fwd_cuda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& cu_seqlens_q, const std::optional<at::Tensor>& cu_seqlens_k,
    std::optional<int64_t> max_seqlen_q, std::optional<int64_t> max_seqlen_k,
    std::optional<double> softmax_scale, bool causal, int64_t window_left,
    int64_t window_right, const std::optional<at::Tensor>& q_descale,
    const std::optional<at::Tensor>& k_descale, const std::optional<at::Tensor>& v_descale,
    const std::optional<at::Tensor>& out_scale, std::optional<at::ScalarType> out_dtype,
    double softcap, const std::optional<at::Tensor>& sinks,
    const std::optional<at::Tensor>& seqused_k, const std::optional<at::Tensor>& page_table) {
  const char* op = "torch_fmha.varlen_fwd";
  const FwdProblem p = check_varlen_fwd(op, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                        max_seqlen_k, softmax_scale, causal, window_left,
                                        window_right, q_descale, k_descale, v_descale, out_scale,
                                        out_dtype, softcap, sinks, seqused_k, page_table);
  check_sm90(op, q);
  c10::cuda::CUDAGuard guard(q.device());
  at::Tensor out = at::empty({p.seqlen_q, p.heads_q, p.head_dim},
                             q.options().dtype(p.out_dtype));  // [Tq, H, D]
  at::Tensor lse = at::empty({p.heads_q, p.seqlen_q}, q.options().dtype(at::kFloat));  // [H, Tq]
  FwdParams params = common_params(p, q, k, v, out, lse, q_descale, k_descale, v_descale, out_scale);
  fill_score_options(params, p, sinks);
  params.cu_seqlens_q = cu_seqlens_q.data_ptr<int32_t>();
  params.cu_seqlens_k = cu_seqlens_k.has_value() ? cu_seqlens_k->data_ptr<int32_t>() : nullptr;
  params.seqused_k = seqused_k.has_value() ? seqused_k->data_ptr<int32_t>() : nullptr;
  if (p.paged) {
    // k / v [num_pages, page_size, Hkv, D]: the batch stride is the stride
    // between pages, the row stride (common_params: dim -3) between the keys
    // of a page.
    params.page_table = page_table->data_ptr<int32_t>();
    params.page_table_batch_stride = page_table->stride(0);
    params.page_size = static_cast<int32_t>(p.page_size);
    params.num_pages = static_cast<int32_t>(p.num_pages);
    params.max_pages_per_seq = static_cast<int32_t>(page_table->size(1));
    params.k_batch_stride = k.stride(0);
    params.v_batch_stride = v.stride(0);
  }
  params.lse_head_stride = lse.stride(0);
  params.seqlen_q = static_cast<int32_t>(max_seqlen_q.value_or(0));
  params.seqlen_k = static_cast<int32_t>(max_seqlen_k.value_or(0));
  TORCH_CHECK(p.seqlen_q <= std::numeric_limits<int32_t>::max() &&
                  p.seqlen_k <= std::numeric_limits<int32_t>::max(),
              op, ": the CUDA kernels index rows with int32; q has ", p.seqlen_q, " rows and k ",
              p.seqlen_k);
  // FwdProblem's varlen seqlen_* are totals (paged: num_pages * page_size).
  params.total_q = static_cast<int32_t>(p.seqlen_q);
  params.total_k = static_cast<int32_t>(p.seqlen_k);
  if (out.numel() == 0) return {out, lse};
  if (p.seqlen_k == 0) {  // no key in any sequence: every row is empty (no launch needed)
    fill_empty_rows(out, lse, sinks);
    return {out, lse};
  }
  // The tile work list the prep kernel builds from cu_seqlens on the device
  // (no host sync). Stream-ordered allocator: safe to drop after the launch.
  at::Tensor workspace = at::empty({static_cast<int64_t>(fwd_workspace_bytes(params))},
                                   q.options().dtype(at::kByte));
  params.workspace = workspace.data_ptr();
  launch(op, params);
  return {out, lse};
}

// The backward runs on CPU only for now; say so instead of a dispatcher error.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bwd_cuda_unsupported(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
    std::optional<double>, bool, int64_t, int64_t, double, const std::optional<at::Tensor>&) {
  TORCH_CHECK(false, "torch_fmha.bwd: there is no CUDA backward yet; the backward runs on CPU "
              "tensors only (the SM90 kernels are forward/inference kernels)");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> varlen_bwd_cuda_unsupported(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const std::optional<at::Tensor>&, std::optional<int64_t>, std::optional<int64_t>,
    std::optional<double>, bool, int64_t, int64_t, double, const std::optional<at::Tensor>&) {
  TORCH_CHECK(false, "torch_fmha.varlen_bwd: there is no CUDA backward yet; the backward runs on "
              "CPU tensors only (the SM90 kernels are forward/inference kernels)");
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_fmha, CUDA, m) {
  m.impl("fwd", &fwd_cuda);
  m.impl("varlen_fwd", &varlen_fwd_cuda);
  m.impl("bwd", &bwd_cuda_unsupported);
  m.impl("varlen_bwd", &varlen_bwd_cuda_unsupported);
}

}  // namespace torch_fmha
