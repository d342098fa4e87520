// torch_fmha: input validation shared by every backend of every op.
//
// The messages here are mirrored word for word by meta/checks.py, which the
// fake (meta) implementations run, so torch.compile reports the same error at
// trace time that eager reports at run time. tests/test_errors.py asserts the
// two agree. Change both or neither.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

namespace torch_fmha {

// The problem a forward call describes, after validation.
struct FwdProblem {
  int64_t batch = 0;
  int64_t seqlen_q = 0;  // dense: Sq; varlen: total_q (rows of q)
  int64_t seqlen_k = 0;  // dense: Sk; varlen: total_k
  int64_t heads_q = 0;
  int64_t heads_kv = 0;
  int64_t head_dim = 0;
  double softmax_scale = 0.0;  // resolved: 1/sqrt(D) when not given
  int64_t window_left = -1;    // resolved: causal folded in (right = 0)
  int64_t window_right = -1;
  at::ScalarType out_dtype = at::kBFloat16;  // resolved default
  double softcap = 0.0;        // 0: off
  // Paged KV (varlen with page_table): k / v are [num_pages, page_size, Hkv, D]
  // and seqlen_k is num_pages * page_size (rows of the pool).
  bool paged = false;
  int64_t page_size = 0;
  int64_t num_pages = 0;
};

// `op` is the name used as the message prefix ("torch_fmha.fwd").
FwdProblem check_fwd(const char* op, const at::Tensor& q, const at::Tensor& k,
                     const at::Tensor& v, std::optional<double> softmax_scale,
                     bool causal, int64_t window_left, int64_t window_right,
                     const std::optional<at::Tensor>& q_descale,
                     const std::optional<at::Tensor>& k_descale,
                     const std::optional<at::Tensor>& v_descale,
                     const std::optional<at::Tensor>& out_scale,
                     std::optional<at::ScalarType> out_dtype, double softcap,
                     const std::optional<at::Tensor>& sinks);

// cu_seqlens_k is None exactly when page_table is given (then k / v are page
// pools and seqused_k is required).
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
    const std::optional<at::Tensor>& page_table);

// Value checks of cu_seqlens (starts at 0, non-decreasing, ends at `total`).
// They read the data, so they run only where that costs no host sync: on CPU
// tensors. CUDA runs them as device assertions in debug builds.
void check_cu_seqlens_values(const char* op, const char* name,
                             const at::Tensor& cu_seqlens, int64_t total,
                             const char* total_name);

// Value checks of seqused_k (0 <= seqused_k[b] <= the keys of sequence b's
// slot, or the keys page_table's columns can hold) and of the page ids a call
// reads (0 <= id < num_pages; entries past a sequence's last page are never
// read and not checked). CPU tensors only, as above. cu_seqlens_k is None for
// a paged call.
void check_seqused_and_pages(const char* op, const FwdProblem& p,
                             const std::optional<at::Tensor>& cu_seqlens_k,
                             const std::optional<at::Tensor>& seqused_k,
                             const std::optional<at::Tensor>& page_table);

// Backward, after the forward's checks on q/k/v and the options: no FP8;
// dout/out match q's shape, lse (and dlse) the forward's lse.
void check_bwd(const char* op, const at::Tensor& dout, const at::Tensor& q,
               const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
               const at::Tensor& lse, const std::optional<at::Tensor>& dlse);

// The rules the forward ops share, for ops built on them (fwd_kvcache):
// rank, device, q / k / v (k_name, v_name name k and v in the messages), the
// options after the shapes (fills p's scale, window, out_dtype, softcap; needs
// p.batch, heads and head_dim), and cu_seqlens metadata.
void check_rank(const char* op, const char* name, const at::Tensor& t, int64_t rank,
                const char* dims);
void check_same_device(const char* op, const char* name, const at::Tensor& t,
                       const at::Tensor& q);
// packed_v_ok (dense attention only): v may be a packed v, FP8 [B, Hkv, D,
// ceil(S_k / 16), 16], contiguous (csrc/vt_key_order.h).
void check_qkv(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
               const char* k_name, const char* v_name, bool packed_v_ok = false);
void check_options(const char* op, FwdProblem& p, const at::Tensor& q,
                   std::optional<double> softmax_scale, bool causal, int64_t window_left,
                   int64_t window_right, const std::optional<at::Tensor>& q_descale,
                   const std::optional<at::Tensor>& k_descale,
                   const std::optional<at::Tensor>& v_descale,
                   const std::optional<at::Tensor>& out_scale,
                   std::optional<at::ScalarType> out_dtype, double softcap,
                   const std::optional<at::Tensor>& sinks);
void check_cu_seqlens_meta(const char* op, const char* name, const at::Tensor& cu,
                           const at::Tensor& q);
// page_table int32 [p.batch, max_pages_per_seq] over the page pool k
// ([num_pages, page_size, Hkv, D], named k_name in the message): dtype, shape,
// the strides the kernel assumes, device, page size; sets p's paged fields.
void check_page_table_meta(const char* op, FwdProblem& p, const at::Tensor& q,
                           const at::Tensor& k, const char* k_name,
                           const at::Tensor& page_table);

// Python spellings ("torch.bfloat16", "[2, 3]") so both sides print alike.
std::string dtype_name(at::ScalarType t);
std::string shape_str(at::IntArrayRef sizes);

}  // namespace torch_fmha
