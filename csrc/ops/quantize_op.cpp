// torch_fmha: checks, outputs and params of the quantize ops (quantize_op.h).
// Messages mirrored word for word in meta/quantize.py.
#include "quantize_op.h"

#include <c10/util/Exception.h>

#include <cmath>

#include "checks.h"

namespace torch_fmha {
namespace {

constexpr const char* kLayouts =
    "[batch, seqlen, heads, head_dim] (dense) or [total, heads, head_dim] (packed)";

QuantInType quant_in_type(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return QuantInType::kBFloat16;
    case at::kHalf: return QuantInType::kFloat16;
    case at::kFloat: return QuantInType::kFloat32;
    default: return QuantInType::kFloat64;  // the only other dtype check_input lets through
  }
}

void check_input(const char* op, const char* name, const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 || x.dim() == 3, op, ": ", name, " must be ", kLayouts,
              ", got shape ", shape_str(x.sizes()));
  const at::ScalarType t = x.scalar_type();
  TORCH_CHECK(t == at::kBFloat16 || t == at::kHalf || t == at::kFloat || t == at::kDouble, op,
              ": ", name, " has dtype ", dtype_name(t),
              ", expected one of torch.bfloat16, torch.float16, torch.float32, torch.float64");
}

// cu_seqlens is read for per-head scales of a packed tensor, and only then.
void check_cu_seqlens(const char* op, const char* name, const std::optional<at::Tensor>& cu,
                      const at::Tensor& x, const char* x_name, bool per_head) {
  const bool needed = per_head && x.dim() == 3;
  if (!needed) {
    TORCH_CHECK(!cu.has_value(), op, ": ", name,
                " applies to per-head scales of packed [total, heads, head_dim] inputs only");
    return;
  }
  TORCH_CHECK(cu.has_value(), op, ": ", name,
              " is required for per-head scales of packed [total, heads, head_dim] inputs "
              "(one scale per sequence)");
  TORCH_CHECK(cu->scalar_type() == at::kInt, op, ": ", name, " must have dtype torch.int32, got ",
              dtype_name(cu->scalar_type()));
  TORCH_CHECK(cu->dim() == 1 && cu->size(0) >= 1, op, ": ", name,
              " must be a 1-D tensor [batch + 1] with at least one element, got shape ",
              shape_str(cu->sizes()));
  TORCH_CHECK(cu->stride(0) == 1, op, ": ", name, " must be contiguous, got stride ",
              cu->stride(0));
  TORCH_CHECK(cu->device() == x.device(), op, ": ", name, " is on ", cu->device(), " but ",
              x_name, " is on ", x.device(), "; all tensors must be on one device");
}

// Describe x (checked) as a QuantizeTensor and allocate its outputs.
void add_tensor(QuantizeCall& call, const at::Tensor& x, bool per_head, int64_t group_size,
                const std::optional<at::Tensor>& cu, float descale_factor) {
  QuantizeTensor t;
  const bool dense = x.dim() == 4;
  t.x = x.data_ptr();
  t.stride_batch = dense ? x.stride(0) : 0;
  t.stride_row = x.stride(-3);
  t.stride_head = x.stride(-2);
  t.stride_dim = x.stride(-1);
  t.batch = dense ? x.size(0) : 1;
  t.seqlen = x.size(-3);
  t.heads = static_cast<int32_t>(x.size(-2));
  t.head_dim = static_cast<int32_t>(x.size(-1));
  t.in_type = quant_in_type(x.scalar_type());
  t.descale_factor = descale_factor;
  t.per_tensor = !per_head;
  std::vector<int64_t> descale_shape{1};
  if (per_head) {
    t.group_heads = static_cast<int32_t>(group_size);
    t.groups_per_sequence = static_cast<int32_t>(x.size(-2) / group_size);
    t.sequences = static_cast<int32_t>(dense ? x.size(0) : cu->size(0) - 1);
    t.cu_seqlens = dense ? nullptr : cu->data_ptr<int32_t>();
    descale_shape = {t.sequences, t.groups_per_sequence};
  } else {
    t.group_heads = t.heads;
  }
  at::Tensor x8 = at::empty(x.sizes(), x.options().dtype(at::kFloat8_e4m3fn));
  at::Tensor descale = at::empty(descale_shape, x.options().dtype(at::kFloat));
  t.x_fp8 = static_cast<uint8_t*>(x8.data_ptr());
  t.descale = descale.data_ptr<float>();
  call.params.tensors[call.params.num_tensors++] = t;
  call.fp8.push_back(std::move(x8));
  call.descales.push_back(std::move(descale));
  call.cu_seqlens.push_back(per_head && !dense ? cu : std::nullopt);
}

}  // namespace

QuantizeCall plan_quantize_fp8(const char* op, const at::Tensor& x, bool per_head,
                               int64_t group_size, const std::optional<at::Tensor>& cu_seqlens) {
  check_input(op, "x", x);
  if (per_head) {
    TORCH_CHECK(group_size >= 1 && x.size(-2) % group_size == 0, op,
                ": group_size must be >= 1 and divide the ", x.size(-2), " heads of x, got ",
                group_size);
  }
  check_cu_seqlens(op, "cu_seqlens", cu_seqlens, x, "x", per_head);
  QuantizeCall call;
  add_tensor(call, x, per_head, group_size, cu_seqlens, 1.0f);
  return call;
}

QuantizeCall plan_quantize_qkv(const char* op, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, bool per_head, bool qk_rotated,
                               const std::optional<at::Tensor>& cu_seqlens_q,
                               const std::optional<at::Tensor>& cu_seqlens_k) {
  check_input(op, "q", q);
  for (auto [name, t] : {std::pair<const char*, const at::Tensor*>{"k", &k}, {"v", &v}}) {
    check_input(op, name, *t);
    TORCH_CHECK(t->dim() == q.dim(), op, ": ", name, " must have q's rank ", q.dim(),
                ", got shape ", shape_str(t->sizes()));
    TORCH_CHECK(t->device() == q.device(), op, ": ", name, " is on ", t->device(),
                " but q is on ", q.device(), "; all tensors must be on one device");
  }
  TORCH_CHECK(k.sizes() == v.sizes(), op, ": k and v must have the same shape, got k ",
              shape_str(k.sizes()), " and v ", shape_str(v.sizes()));
  if (q.dim() == 4) {
    TORCH_CHECK(k.size(0) == q.size(0), op, ": k has batch size ", k.size(0),
                " but q has batch size ", q.size(0));
  }
  TORCH_CHECK(k.size(-1) == q.size(-1), op, ": k has head_dim ", k.size(-1),
              " but q has head_dim ", q.size(-1));
  const int64_t h = q.size(-2), hkv = k.size(-2);
  TORCH_CHECK(hkv > 0 && h % hkv == 0, op, ": q has ", h,
              " heads, which is not a multiple of the ", hkv, " heads of k and v");
  check_cu_seqlens(op, "cu_seqlens_q", cu_seqlens_q, q, "q", per_head);
  check_cu_seqlens(op, "cu_seqlens_k", cu_seqlens_k, k, "k", per_head);
  if (cu_seqlens_q.has_value()) {
    TORCH_CHECK(cu_seqlens_k->size(0) == cu_seqlens_q->size(0), op, ": cu_seqlens_k has ",
                cu_seqlens_k->size(0), " elements but cu_seqlens_q has ", cu_seqlens_q->size(0),
                "; both must have batch + 1");
  }
  // After a Hadamard rotation (x @ H with the +-1 matrix, torch_fmha/quantize.py)
  // q and k carry a factor sqrt(D) that their descales take back: 1 / sqrt(D)
  // rounded to float32, one float32 multiply (exact for D = 64, 256).
  const float rotated = static_cast<float>(1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  QuantizeCall call;
  add_tensor(call, q, per_head, h / hkv, cu_seqlens_q, qk_rotated ? rotated : 1.0f);
  add_tensor(call, k, per_head, 1, cu_seqlens_k, qk_rotated ? rotated : 1.0f);
  add_tensor(call, v, per_head, 1, cu_seqlens_k, 1.0f);
  return call;
}

}  // namespace torch_fmha
