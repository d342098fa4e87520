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

// The descale shape of x: [1] per tensor, [sequences, heads / group_size] per head.
// A DimVector (inline storage): no heap allocation per call.
at::DimVector descale_shape(const at::Tensor& x, bool per_head, int64_t group_size,
                            const std::optional<at::Tensor>& cu) {
  if (!per_head) return {1};
  return {x.dim() == 4 ? x.size(0) : cu->size(0) - 1, x.size(-2) / group_size};
}

// Describe x (checked) as a QuantizeTensor and allocate its FP8 output; its
// descales go to `descale` (the op's output, or q's / k's / v's part of it).
// packed_v (dense x only): the output is a packed v [B, H, D, G, 16],
// G = ceil(S / 16), contiguous (csrc/quantize.h); the kernels write its
// padding slots. Its own 5-D shape, not a view: it cannot pass for [B, S, H, D].
void add_tensor(QuantizeCall& call, const at::Tensor& x, bool per_head, int64_t group_size,
                const std::optional<at::Tensor>& cu, float descale_factor, float* descale,
                bool packed_v = false) {
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
  // 16-byte loads in the CUDA kernels (the CPU loops vectorize either way).
  const int64_t vec = 16 / static_cast<int64_t>(x.element_size());
  t.vectorized = t.stride_dim == 1 && t.head_dim % vec == 0 && t.stride_row % vec == 0 &&
                 t.stride_head % vec == 0 && t.stride_batch % vec == 0 &&
                 reinterpret_cast<uintptr_t>(t.x) % 16 == 0;
  t.descale_factor = descale_factor;
  t.per_tensor = !per_head;
  t.group_heads = per_head ? static_cast<int32_t>(group_size) : t.heads;
  if (per_head) {
    t.groups_per_sequence = static_cast<int32_t>(x.size(-2) / group_size);
    t.sequences = static_cast<int32_t>(dense ? x.size(0) : cu->size(0) - 1);
    t.cu_seqlens = dense ? nullptr : cu->data_ptr<int32_t>();
  }
  const at::TensorOptions fp8 = x.options().dtype(at::kFloat8_e4m3fn);
  at::Tensor x8;
  if (packed_v) {
    t.packed_v = true;
    t.packed_keys = packed_v_keys(t.seqlen);
    x8 = at::empty({x.size(0), x.size(2), x.size(3), t.packed_keys / kVtKeyGroup, kVtKeyGroup}, fp8);
  } else {
    x8 = at::empty(x.sizes(), fp8);
  }
  t.x_fp8 = static_cast<uint8_t*>(x8.data_ptr());
  t.descale = descale;
  call.params.tensors[call.params.num_tensors++] = t;
  call.fp8.push_back(std::move(x8));
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
  call.descales = at::empty(descale_shape(x, per_head, group_size, cu_seqlens), x.options().dtype(at::kFloat));
  add_tensor(call, x, per_head, group_size, cu_seqlens, 1.0f, call.descales.data_ptr<float>());
  return call;
}

QuantizeCall plan_quantize_qkv(const char* op, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, bool per_head, bool qk_rotated,
                               const std::optional<at::Tensor>& cu_seqlens_q,
                               const std::optional<at::Tensor>& cu_seqlens_k,
                               bool pack_v) {
  check_input(op, "q", q);
  for (auto [name, t] : {std::pair<const char*, const at::Tensor*>{"k", &k}, {"v", &v}}) {
    check_input(op, name, *t);
    TORCH_CHECK(t->dim() == q.dim(), op, ": ", name, " must have q's rank ", q.dim(),
                ", got shape ", shape_str(t->sizes()));
    TORCH_CHECK(t->device() == q.device(), op, ": ", name, " is on ", t->device(),
                " but q is on ", q.device(), "; all tensors must be on one device");
  }
  TORCH_CHECK(!pack_v || v.dim() == 4, op,
              ": pack_v applies to dense [batch, seqlen, heads, head_dim] inputs only, "
              "got v of shape ", shape_str(v.sizes()));
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
  // One descale output [3, ...] for q, k and v (their shapes agree: q's groups
  // are GQA's): one allocation and, in a compiled graph, one output instead of
  // three (each extern output costs Inductor's wrapper a getitem and two asserts).
  QuantizeCall call;
  call.fp8.reserve(3);  // add_tensor's three push_backs without regrowing the vectors
  call.cu_seqlens.reserve(3);
  at::DimVector shape = descale_shape(k, per_head, 1, cu_seqlens_k);
  const int64_t per_tensor = shape.size() == 1 ? 1 : shape[0] * shape[1];
  shape.insert(shape.begin(), 3);
  call.descales = at::empty(shape, q.options().dtype(at::kFloat));
  float* descales = call.descales.data_ptr<float>();
  add_tensor(call, q, per_head, h / hkv, cu_seqlens_q, qk_rotated ? rotated : 1.0f, descales);
  add_tensor(call, k, per_head, 1, cu_seqlens_k, qk_rotated ? rotated : 1.0f, descales + per_tensor);
  add_tensor(call, v, per_head, 1, cu_seqlens_k, 1.0f, descales + 2 * per_tensor, pack_v);
  return call;
}

}  // namespace torch_fmha
