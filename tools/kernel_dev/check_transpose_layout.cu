// Host-only check (no GPU needed) of the XOR-split address identities the V
// transposer relies on (transpose_v.cuh), for every head-dim config:
//   layout_vt(d0 + m, k0) == layout_vt(d0, k0) ^ layout_vt(m, 0)
//   layout_vs(kb + o, d0) == layout_vs(kb, d0) ^ layout_vs(o, 0)
// Build + run: nvcc -std=c++17 --expt-relaxed-constexpr -I<cutlass> -Icsrc \
//   tools/kernel_dev/check_transpose_layout.cu -o build/check_tl && build/check_tl
#include <cstdio>

#include "kernel/kernel_traits.cuh"
#include "kernel/transpose_v.cuh"
#include "kernel/fmha_fwd_kernel.cuh"

template <int D>
int check() {
  using T = torch_fmha::kernel::Fp8FwdTraits<D>;
  using X = torch_fmha::kernel::VTransposer<T>;
  auto lvs = typename T::SmemLayoutVScratch{};
  auto lvt = typename T::SmemLayoutVt{};
  int bad = 0;
  for (int kg = 0; kg < X::kKGroups; ++kg) {
    for (int dg = 0; dg < X::kDGroups; ++dg) {
      const int k0 = 4 * kg, d0 = 8 * dg;
      const int kb = torch_fmha::kernel::transpose_key_perm(k0);
      for (int i = 0; i < 4; ++i) {
        const int o = X::key_offset(i);
        if (kb + o != torch_fmha::kernel::transpose_key_perm(k0 + i)) ++bad;
        if (int(lvs(kb + o, d0, 0)) != (int(lvs(kb, d0, 0)) ^ int(lvs(o, 0, 0)))) ++bad;
      }
      for (int m = 0; m < 8; ++m) {
        if (int(lvt(d0 + m, k0, 0)) != (int(lvt(d0, k0, 0)) ^ int(lvt(m, 0, 0)))) ++bad;
      }
    }
  }
  std::printf("D=%d N=%d stages=%d smem(Q,K,Vt,Vs)=%d+3x%d, SharedStorage %d bytes: %s (%d bad)\n",
              D, T::kBlockN, T::kStages, T::kTileQBytes, T::kStages * T::kTileKVBytes,
              torch_fmha::kernel::shared_storage_bytes<T>(), bad ? "FAIL" : "ok", bad);
  return bad;
}

int main() { return (check<64>() + check<128>() + check<256>()) ? 1 : 0; }
