// torch_fmha: input validation. Messages mirrored in meta/checks.py.
#include "checks.h"

#include <c10/util/Exception.h>

#include <array>
#include <charconv>
#include <cmath>
#include <sstream>
#include <vector>

namespace torch_fmha {

std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat8_e4m3fn: return "torch.float8_e4m3fn";
    case at::kFloat8_e5m2: return "torch.float8_e5m2";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kHalf: return "torch.float16";
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kInt: return "torch.int32";
    case at::kLong: return "torch.int64";
    case at::kShort: return "torch.int16";
    case at::kChar: return "torch.int8";
    case at::kByte: return "torch.uint8";
    case at::kBool: return "torch.bool";
    default: return std::string("torch.") + c10::toString(t);
  }
}

std::string shape_str(at::IntArrayRef sizes) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < sizes.size(); ++i) s << (i ? ", " : "") << sizes[i];
  s << "]";
  return s.str();
}

namespace {

// Python's repr of a float (meta/checks.py prints with it): the shortest
// round-trip digits, and ".0" on a whole number (-30.0, not -30).
std::string float_str(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), x);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

bool is_supported_input(at::ScalarType t) {
  return t == at::kFloat8_e4m3fn || t == at::kBFloat16 || t == at::kHalf ||
         t == at::kFloat || t == at::kDouble;
}

}  // namespace

void check_rank(const char* op, const char* name, const at::Tensor& t,
                int64_t rank, const char* dims) {
  TORCH_CHECK(t.dim() == rank, op, ": ", name, " must have rank ", rank, " ",
              dims, ", got shape ", shape_str(t.sizes()));
}

void check_same_device(const char* op, const char* name, const at::Tensor& t,
                       const at::Tensor& q) {
  TORCH_CHECK(t.device() == q.device(), op, ": ", name, " is on ", t.device(),
              " but q is on ", q.device(), "; all tensors must be on one device");
}

namespace {

void check_last_dim_contiguous(const char* op, const char* name,
                               const at::Tensor& t) {
  TORCH_CHECK(t.stride(-1) == 1, op, ": ", name,
              " must have a contiguous last dimension (stride 1), got stride ",
              t.stride(-1));
}

}  // namespace

namespace {

// A packed v (dense fwd only, csrc/vt_key_order.h): FP8 [B, Hkv, D, G, 16],
// G = ceil(S_k / 16), contiguous, against k [B, S_k, Hkv, D].
void check_packed_v(const char* op, const at::Tensor& k, const at::Tensor& v) {
  const int64_t groups = (k.size(1) + 15) / 16;
  const std::array<int64_t, 5> expected{k.size(0), k.size(2), k.size(3), groups, 16};  // no heap
  TORCH_CHECK(v.sizes() == at::IntArrayRef(expected), op,
              ": a packed v (rank 5) must have shape [batch, heads_kv, head_dim, ceil(seqlen_k / "
              "16), 16] = ", shape_str(expected), " for k of shape ", shape_str(k.sizes()),
              ", got ", shape_str(v.sizes()));
  TORCH_CHECK(v.scalar_type() == at::kFloat8_e4m3fn, op,
              ": a packed v must have dtype torch.float8_e4m3fn (quantize_qkv(pack_v=True) "
              "writes it), got ", dtype_name(v.scalar_type()));
  TORCH_CHECK(v.is_contiguous(), op, ": a packed v must be contiguous, got strides ",
              shape_str(v.strides()));
}

}  // namespace

// q/k/v: dtype, device, last-dim contiguity; k and v shapes agree (or v is a
// packed v, where packed_v_ok); GQA; D.
// Heads are dim -2 in every layout (dense, packed, page pool). k_name /
// v_name are the arguments' names in the messages ("k_cache" for fwd_kvcache).
void check_qkv(const char* op, const at::Tensor& q, const at::Tensor& k,
               const at::Tensor& v, const char* k_name, const char* v_name,
               bool packed_v_ok) {
  TORCH_CHECK(is_supported_input(q.scalar_type()), op, ": q has dtype ",
              dtype_name(q.scalar_type()),
              ", expected one of torch.float8_e4m3fn, torch.bfloat16, "
              "torch.float16, torch.float32, torch.float64");
  for (auto [name, t] : {std::pair<const char*, const at::Tensor*>{k_name, &k},
                         {v_name, &v}}) {
    TORCH_CHECK(t->scalar_type() == q.scalar_type(), op, ": ", name,
                " has dtype ", dtype_name(t->scalar_type()), " but q has dtype ",
                dtype_name(q.scalar_type()),
                "; q, ", k_name, " and ", v_name, " must share one dtype");
    check_same_device(op, name, *t, q);
  }
  if (packed_v_ok && v.dim() == 5) {
    check_packed_v(op, k, v);
  } else {
    TORCH_CHECK(k.sizes() == v.sizes(), op, ": ", k_name, " and ", v_name,
                " must have the same shape, got ", k_name, " ", shape_str(k.sizes()), " and ",
                v_name, " ", shape_str(v.sizes()));
  }
  const int64_t d = q.size(-1);
  TORCH_CHECK(d == 64 || d == 128 || d == 256, op, ": head_dim (q.size(-1)) is ",
              d, ", expected one of 64, 128, 256");
  TORCH_CHECK(k.size(-1) == d, op, ": ", k_name, " has head_dim ", k.size(-1),
              " but q has head_dim ", d);
  const int64_t h = q.size(-2), hkv = k.size(-2);
  TORCH_CHECK(hkv > 0 && h % hkv == 0, op, ": q has ", h,
              " heads, which is not a multiple of the ", hkv,
              " heads of ", k_name, " and ", v_name);
  check_last_dim_contiguous(op, "q", q);
  check_last_dim_contiguous(op, k_name, k);
  check_last_dim_contiguous(op, v_name, v);
}

namespace {

void check_scale(const char* op, const char* name,
                 const std::optional<at::Tensor>& s, const at::Tensor& q,
                 int64_t batch, int64_t heads_kv, bool per_head_allowed) {
  if (!s.has_value()) return;
  TORCH_CHECK(s->scalar_type() == at::kFloat, op, ": ", name,
              " must have dtype torch.float32, got ", dtype_name(s->scalar_type()));
  check_same_device(op, name, *s, q);
  const bool per_tensor = s->dim() == 1 && s->size(0) == 1;
  const bool per_head = s->dim() == 2 && s->size(0) == batch && s->size(1) == heads_kv;
  if (per_head_allowed) {
    TORCH_CHECK(per_tensor || per_head, op, ": ", name,
                " must have shape [1] or [batch, heads_kv] = [", batch, ", ",
                heads_kv, "], got ", shape_str(s->sizes()));
  } else {
    TORCH_CHECK(per_tensor, op, ": ", name, " must have shape [1], got ",
                shape_str(s->sizes()));
  }
}

}  // namespace

// Everything after the shapes: scale, windows, descales, output type.
void check_options(const char* op, FwdProblem& p, const at::Tensor& q,
                   std::optional<double> softmax_scale, bool causal,
                   int64_t window_left, int64_t window_right,
                   const std::optional<at::Tensor>& q_descale,
                   const std::optional<at::Tensor>& k_descale,
                   const std::optional<at::Tensor>& v_descale,
                   const std::optional<at::Tensor>& out_scale,
                   std::optional<at::ScalarType> out_dtype, double softcap,
                   const std::optional<at::Tensor>& sinks) {
  if (softmax_scale.has_value()) {
    TORCH_CHECK(std::isfinite(*softmax_scale), op,
                ": softmax_scale must be a finite number, got ",
                float_str(*softmax_scale));
    // The kernel keeps a running max of the unscaled scores, which is the max
    // of the scaled ones only for a scale >= 0; refused everywhere so that CPU
    // and CUDA accept the same calls.
    TORCH_CHECK(*softmax_scale >= 0.0, op, ": softmax_scale must be >= 0, got ",
                float_str(*softmax_scale));
    p.softmax_scale = *softmax_scale;
  } else {
    p.softmax_scale = 1.0 / std::sqrt(static_cast<double>(p.head_dim));
  }
  TORCH_CHECK(window_left >= -1, op,
              ": window_left must be -1 (unbounded) or >= 0, got ", window_left);
  TORCH_CHECK(window_right >= -1, op,
              ": window_right must be -1 (unbounded) or >= 0, got ", window_right);
  if (causal) {
    TORCH_CHECK(window_right <= 0, op,
                ": causal=True fixes window_right to 0, got window_right=",
                window_right);
    window_right = 0;
  }
  p.window_left = window_left;
  p.window_right = window_right;

  const bool fp8 = q.scalar_type() == at::kFloat8_e4m3fn;
  for (auto [name, s] :
       {std::pair<const char*, const std::optional<at::Tensor>*>{"q_descale", &q_descale},
        {"k_descale", &k_descale},
        {"v_descale", &v_descale}}) {
    TORCH_CHECK(!s->has_value() || fp8, op, ": ", name,
                " applies to torch.float8_e4m3fn inputs only, but q has dtype ",
                dtype_name(q.scalar_type()));
    check_scale(op, name, *s, q, p.batch, p.heads_kv, /*per_head_allowed=*/true);
  }

  if (fp8) {
    p.out_dtype = out_dtype.value_or(at::kBFloat16);
    TORCH_CHECK(p.out_dtype == at::kBFloat16 || p.out_dtype == at::kHalf ||
                    p.out_dtype == at::kFloat8_e4m3fn,
                op, ": out_dtype for torch.float8_e4m3fn inputs must be one of "
                "torch.bfloat16, torch.float16, torch.float8_e4m3fn, got ",
                dtype_name(p.out_dtype));
  } else {
    p.out_dtype = out_dtype.value_or(q.scalar_type());
    TORCH_CHECK(p.out_dtype == q.scalar_type(), op,
                ": out_dtype must equal the input dtype ", dtype_name(q.scalar_type()),
                " for non-FP8 inputs, got ", dtype_name(p.out_dtype));
  }
  if (p.out_dtype == at::kFloat8_e4m3fn) {
    TORCH_CHECK(out_scale.has_value(), op,
                ": out_scale is required when out_dtype is torch.float8_e4m3fn");
    check_scale(op, "out_scale", out_scale, q, p.batch, p.heads_kv,
                /*per_head_allowed=*/false);
  } else {
    TORCH_CHECK(!out_scale.has_value(), op,
                ": out_scale applies to out_dtype torch.float8_e4m3fn only, got out_dtype ",
                dtype_name(p.out_dtype));
  }
  TORCH_CHECK(std::isfinite(softcap) && softcap >= 0.0, op,
              ": softcap must be a finite number >= 0 (0 = off), got ", float_str(softcap));
  p.softcap = softcap;
  if (sinks.has_value()) {
    // float32, or float64 for float64 inputs (lse's rule, so gradcheck can see it).
    const at::ScalarType want = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    TORCH_CHECK(sinks->scalar_type() == want, op, ": sinks must have dtype ", dtype_name(want),
                " (one logit per query head), got ", dtype_name(sinks->scalar_type()));
    TORCH_CHECK(sinks->dim() == 1 && sinks->size(0) == p.heads_q, op,
                ": sinks must have shape [heads] = [", p.heads_q, "], got ",
                shape_str(sinks->sizes()));
    TORCH_CHECK(sinks->stride(0) == 1, op, ": sinks must be contiguous, got stride ",
                sinks->stride(0));
    check_same_device(op, "sinks", *sinks, q);
  }
}

namespace {

bool is_power_of_two(int64_t x) { return x > 0 && (x & (x - 1)) == 0; }

// seqused_k int32 [batch] and page_table int32 [batch, max_pages_per_seq]:
// the metadata (dtype, shape, strides the kernel assumes, device).
void check_seqused_and_page_table_meta(const char* op, FwdProblem& p, const at::Tensor& q,
                                       const at::Tensor& k,
                                       const std::optional<at::Tensor>& seqused_k,
                                       const std::optional<at::Tensor>& page_table) {
  if (p.paged) {
    TORCH_CHECK(seqused_k.has_value(), op,
                ": seqused_k is required with page_table (it gives each sequence's number of keys)");
  }
  if (seqused_k.has_value()) {
    TORCH_CHECK(seqused_k->scalar_type() == at::kInt, op,
                ": seqused_k must have dtype torch.int32, got ", dtype_name(seqused_k->scalar_type()));
    TORCH_CHECK(seqused_k->dim() == 1 && seqused_k->size(0) == p.batch, op,
                ": seqused_k must have shape [batch] = [", p.batch, "], got ",
                shape_str(seqused_k->sizes()));
    TORCH_CHECK(seqused_k->stride(0) == 1, op, ": seqused_k must be contiguous, got stride ",
                seqused_k->stride(0));
    check_same_device(op, "seqused_k", *seqused_k, q);
  }
  if (!p.paged) return;
  check_page_table_meta(op, p, q, k, "k", *page_table);
}

}  // namespace

void check_page_table_meta(const char* op, FwdProblem& p, const at::Tensor& q,
                           const at::Tensor& k, const char* k_name,
                           const at::Tensor& page_table) {
  TORCH_CHECK(page_table.scalar_type() == at::kInt, op,
              ": page_table must have dtype torch.int32, got ", dtype_name(page_table.scalar_type()));
  TORCH_CHECK(page_table.dim() == 2 && page_table.size(0) == p.batch, op,
              ": page_table must have shape [batch, max_pages_per_seq] = [", p.batch, ", *], got ",
              shape_str(page_table.sizes()));
  TORCH_CHECK(page_table.stride(1) == 1, op,
              ": page_table must have a contiguous last dimension (stride 1), got stride ",
              page_table.stride(1));
  check_same_device(op, "page_table", page_table, q);
  p.paged = true;
  p.page_size = k.size(1);
  p.num_pages = k.size(0);
  TORCH_CHECK(is_power_of_two(p.page_size) && p.page_size >= 16 && p.page_size <= 256, op,
              ": page_size (", k_name, ".size(1)) is ", p.page_size,
              ", expected a power of two from 16 to 256");
}

void check_cu_seqlens_meta(const char* op, const char* name, const at::Tensor& cu,
                           const at::Tensor& q) {
  TORCH_CHECK(cu.scalar_type() == at::kInt, op, ": ", name,
              " must have dtype torch.int32, got ", dtype_name(cu.scalar_type()));
  TORCH_CHECK(cu.dim() == 1 && cu.size(0) >= 1, op, ": ", name,
              " must be a 1-D tensor [batch + 1] with at least one element, got shape ",
              shape_str(cu.sizes()));
  TORCH_CHECK(cu.stride(0) == 1, op, ": ", name, " must be contiguous, got stride ",
              cu.stride(0));
  check_same_device(op, name, cu, q);
}


FwdProblem check_fwd(const char* op, const at::Tensor& q, const at::Tensor& k,
                     const at::Tensor& v, std::optional<double> softmax_scale,
                     bool causal, int64_t window_left, int64_t window_right,
                     const std::optional<at::Tensor>& q_descale,
                     const std::optional<at::Tensor>& k_descale,
                     const std::optional<at::Tensor>& v_descale,
                     const std::optional<at::Tensor>& out_scale,
                     std::optional<at::ScalarType> out_dtype, double softcap,
                     const std::optional<at::Tensor>& sinks) {
  check_rank(op, "q", q, 4, "[batch, seqlen_q, heads, head_dim]");
  check_rank(op, "k", k, 4, "[batch, seqlen_k, heads_kv, head_dim]");
  TORCH_CHECK(v.dim() == 4 || v.dim() == 5, op,
              ": v must have rank 4 [batch, seqlen_k, heads_kv, head_dim], or rank 5 for a packed "
              "v [batch, heads_kv, head_dim, ceil(seqlen_k / 16), 16] from "
              "quantize_qkv(pack_v=True), got shape ", shape_str(v.sizes()));
  check_qkv(op, q, k, v, "k", "v", /*packed_v_ok=*/true);
  TORCH_CHECK(k.size(0) == q.size(0), op, ": k has batch size ", k.size(0),
              " but q has batch size ", q.size(0));
  FwdProblem p;
  p.batch = q.size(0);
  p.seqlen_q = q.size(1);
  p.seqlen_k = k.size(1);
  p.heads_q = q.size(2);
  p.heads_kv = k.size(2);
  p.head_dim = q.size(3);
  check_options(op, p, q, softmax_scale, causal, window_left, window_right,
                q_descale, k_descale, v_descale, out_scale, out_dtype, softcap, sinks);
  return p;
}

FwdProblem check_varlen_fwd(
    const char* op, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& cu_seqlens_q,
    const std::optional<at::Tensor>& cu_seqlens_k, std::optional<int64_t> max_seqlen_q,
    std::optional<int64_t> max_seqlen_k, std::optional<double> softmax_scale,
    bool causal, int64_t window_left, int64_t window_right,
    const std::optional<at::Tensor>& q_descale,
    const std::optional<at::Tensor>& k_descale,
    const std::optional<at::Tensor>& v_descale,
    const std::optional<at::Tensor>& out_scale,
    std::optional<at::ScalarType> out_dtype, double softcap,
    const std::optional<at::Tensor>& sinks, const std::optional<at::Tensor>& seqused_k,
    const std::optional<at::Tensor>& page_table) {
  const bool paged = page_table.has_value();
  const char* kv_dims = paged ? "[num_pages, page_size, heads_kv, head_dim] (a page pool: page_table is given)"
                              : "[total_k, heads_kv, head_dim] (a page pool needs page_table)";
  check_rank(op, "q", q, 3, "[total_q, heads, head_dim]");
  check_rank(op, "k", k, paged ? 4 : 3, kv_dims);
  check_rank(op, "v", v, paged ? 4 : 3, kv_dims);
  check_qkv(op, q, k, v, "k", "v");
  check_cu_seqlens_meta(op, "cu_seqlens_q", cu_seqlens_q, q);
  if (paged) {
    TORCH_CHECK(!cu_seqlens_k.has_value(), op,
                ": cu_seqlens_k must be None when page_table is given (seqused_k gives the "
                "number of keys of each sequence)");
  } else {
    TORCH_CHECK(cu_seqlens_k.has_value(), op,
                ": cu_seqlens_k is required unless page_table is given");
    check_cu_seqlens_meta(op, "cu_seqlens_k", *cu_seqlens_k, q);
    TORCH_CHECK(cu_seqlens_k->size(0) == cu_seqlens_q.size(0), op,
                ": cu_seqlens_k has ", cu_seqlens_k->size(0),
                " elements but cu_seqlens_q has ", cu_seqlens_q.size(0),
                "; both must have batch + 1");
  }
  TORCH_CHECK(!max_seqlen_q.has_value() || *max_seqlen_q >= 0, op,
              ": max_seqlen_q must be >= 0, got ", max_seqlen_q.value_or(0));
  TORCH_CHECK(!max_seqlen_k.has_value() || *max_seqlen_k >= 0, op,
              ": max_seqlen_k must be >= 0, got ", max_seqlen_k.value_or(0));
  FwdProblem p;
  p.batch = cu_seqlens_q.size(0) - 1;
  p.paged = paged;
  check_seqused_and_page_table_meta(op, p, q, k, seqused_k, page_table);
  p.seqlen_q = q.size(0);
  p.seqlen_k = paged ? p.num_pages * p.page_size : k.size(0);
  p.heads_q = q.size(1);
  p.heads_kv = k.size(-2);
  p.head_dim = q.size(2);
  check_options(op, p, q, softmax_scale, causal, window_left, window_right,
                q_descale, k_descale, v_descale, out_scale, out_dtype, softcap, sinks);
  return p;
}

void check_cu_seqlens_values(const char* op, const char* name,
                             const at::Tensor& cu_seqlens, int64_t total,
                             const char* total_name) {
  TORCH_INTERNAL_ASSERT(cu_seqlens.device().is_cpu());
  const int32_t* c = cu_seqlens.data_ptr<int32_t>();
  const int64_t n = cu_seqlens.size(0);
  TORCH_CHECK(c[0] == 0, op, ": ", name, "[0] must be 0, got ", c[0]);
  for (int64_t i = 1; i < n; ++i) {
    TORCH_CHECK(c[i] >= c[i - 1], op, ": ", name, " must be non-decreasing, but ",
                name, "[", i, "] = ", c[i], " < ", name, "[", i - 1, "] = ", c[i - 1]);
  }
  TORCH_CHECK(c[n - 1] == total, op, ": ", name, "[-1] = ", c[n - 1],
              " must equal ", total_name, " = ", total);
}

void check_seqused_and_pages(const char* op, const FwdProblem& p,
                             const std::optional<at::Tensor>& cu_seqlens_k,
                             const std::optional<at::Tensor>& seqused_k,
                             const std::optional<at::Tensor>& page_table) {
  if (!seqused_k.has_value()) return;
  TORCH_INTERNAL_ASSERT(seqused_k->device().is_cpu());
  const int32_t* used = seqused_k->data_ptr<int32_t>();
  for (int64_t b = 0; b < p.batch; ++b) {
    TORCH_CHECK(used[b] >= 0, op, ": seqused_k[", b, "] = ", used[b], " must be >= 0");
    if (!p.paged) {
      const int32_t* ck = cu_seqlens_k->data_ptr<int32_t>();
      const int64_t slot = int64_t(ck[b + 1]) - ck[b];
      TORCH_CHECK(used[b] <= slot, op, ": seqused_k[", b, "] = ", used[b], " exceeds the ", slot,
                  " keys of sequence ", b, " (cu_seqlens_k[", b + 1, "] - cu_seqlens_k[", b, "])");
      continue;
    }
    const int64_t pages = (int64_t(used[b]) + p.page_size - 1) / p.page_size;
    const int64_t columns = page_table->size(1);
    TORCH_CHECK(pages <= columns, op, ": seqused_k[", b, "] = ", used[b], " needs ", pages,
                " pages of ", p.page_size, " keys but page_table has ", columns, " columns");
    const at::Tensor row = (*page_table)[b];
    const int32_t* ids = row.data_ptr<int32_t>();  // last dim contiguous (checked)
    for (int64_t j = 0; j < pages; ++j) {
      TORCH_CHECK(ids[j] >= 0 && ids[j] < p.num_pages, op, ": page_table[", b, ", ", j, "] = ",
                  ids[j], " is not a page of the pool: sequence ", b, " reads ", pages,
                  " pages and page ids must be in [0, num_pages) = [0, ", p.num_pages, ")");
    }
  }
}

void check_bwd(const char* op, const at::Tensor& dout, const at::Tensor& q,
               const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
               const at::Tensor& lse, const std::optional<at::Tensor>& dlse) {
  TORCH_CHECK(q.scalar_type() != at::kFloat8_e4m3fn, op,
              ": backward of torch.float8_e4m3fn attention is not supported; "
              "use bfloat16, float16, float32 or float64 inputs for training");
  TORCH_CHECK(dout.sizes() == q.sizes(), op, ": dout has shape ",
              shape_str(dout.sizes()), ", expected q's shape ", shape_str(q.sizes()));
  TORCH_CHECK(out.sizes() == q.sizes(), op, ": out has shape ",
              shape_str(out.sizes()), ", expected q's shape ", shape_str(q.sizes()));
  // lse is float32, or float64 for float64 inputs (so gradcheck can see it).
  const at::ScalarType lse_type = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(lse.scalar_type() == lse_type, op, ": lse must have dtype ",
              dtype_name(lse_type), ", got ", dtype_name(lse.scalar_type()));
  const std::vector<int64_t> lse_shape =
      q.dim() == 4 ? std::vector<int64_t>{q.size(0), q.size(2), q.size(1)}
                   : std::vector<int64_t>{q.size(1), q.size(0)};
  TORCH_CHECK(lse.sizes() == at::IntArrayRef(lse_shape), op, ": lse has shape ",
              shape_str(lse.sizes()), ", expected ", shape_str(lse_shape));
  if (dlse.has_value()) {
    TORCH_CHECK(dlse->sizes() == lse.sizes(), op, ": dlse has shape ",
                shape_str(dlse->sizes()), ", expected lse's shape ",
                shape_str(lse.sizes()));
  }
}

}  // namespace torch_fmha
