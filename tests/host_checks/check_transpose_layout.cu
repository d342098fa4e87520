// Host-only check (no GPU needed) of the V transposer (transpose_v.cuh) for
// every head-dim config:
//  * the address split: every lane address == base(warp, lane) ^ step offset,
//    and for loads base & step == 0 (so the kernel may add instead of XOR);
//  * the whole data movement, with LDSM.T.x4 / STSM.x4 emulated per the PTX
//    ISA fragment layouts: V^T[vt_row(d)][k] == V[transpose_key_perm(k)][d] in the
//    SmemLayoutVt swizzle, keys >= valid_rows zeroed, every V^T byte written once;
//  * bank conflicts: each LDSM matrix (8 rows x 16 bytes) touches 32 distinct banks,
//    each STSM matrix too where V^T's rows are natural (D = 64), and at most 2 rows per
//    bank where they are permuted (Traits::kVtRowsPermuted: 4 swizzle phases per matrix).
// Build + run: nvcc -std=c++17 --expt-relaxed-constexpr -I<cutlass> -Icsrc \
//   tests/host_checks/check_transpose_layout.cu -o build/check_tl && build/check_tl
#include <cstdint>
#include <cstdio>
#include <vector>

#include "kernel/fmha_fwd_kernel.cuh"
#include "kernel/kernel_traits.cuh"
#include "kernel/transpose_v.cuh"

using torch_fmha::kernel::transpose_key_perm;

static uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
  const uint64_t x = (uint64_t(b) << 32) | a;
  uint32_t out = 0;
  for (int i = 0; i < 4; ++i) out |= uint32_t((x >> (8 * ((sel >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return out;
}

// The most rows of one 8-row x 16-byte matrix store that share a bank (1: conflict-free).
static int bank_ways(const int (&row_addr)[8]) {
  int count[32] = {};
  int ways = 0;
  for (int r = 0; r < 8; ++r) {
    for (int b = 0; b < 4; ++b) ways = std::max(ways, ++count[(row_addr[r] / 4 + b) % 32]);
  }
  return ways;
}

using torch_fmha::kernel::KvBlocking;

template <int D, KvBlocking kBlocking = KvBlocking::kLong>
int check(int valid_rows) {
  using T = torch_fmha::kernel::Fp8FwdTraits<D, kBlocking>;
  using X = torch_fmha::kernel::VTransposer<T>;
  constexpr int N = T::kBlockN;
  auto lvs = typename T::SmemLayoutVScratch{};
  auto lvt = typename T::SmemLayoutVt{};
  std::vector<uint8_t> vs(T::kTileKVBytes), vt(T::kTileKVBytes, 0xAA);
  std::vector<int> writes(T::kTileKVBytes, 0);
  auto v_val = [](int key, int d) { return uint8_t((key * 131 + d * 7 + 1) & 0xff); };
  for (int key = 0; key < N; ++key)
    for (int d = 0; d < D; ++d) vs[int(lvs(key, d, 0))] = v_val(key, d);

  int bad_split = 0, bad_banks = 0, stsm_ways = 0;
  for (int w = 0; w < 4; ++w) {
    for (int j = 0; j < X::kStepsD; ++j) {
      for (int i = 0; i < X::kStepsK; ++i) {
        int ld[32], st[32];
        for (int lane = 0; lane < 32; ++lane) {
          const int key = X::warp_key0(w) + X::step_key(i) + X::ldsm_key(lane);
          const int d = X::warp_d0(w) + X::step_d(j) + X::ldsm_d(lane);
          // exactly as VTransposer::steps forms them (j: loop increments, i: immediates)
          const int ld_j = X::load_base(w, lane) + j * X::load_step(0, 1);
          ld[lane] = ld_j + X::load_step(i, 0);
          if (ld[lane] != int(lvs(key, d, 0)) || (ld_j & X::load_step(i, 0))) ++bad_split;
          const int sd = X::vt_row(X::warp_d0(w) + X::step_d(j) + X::stsm_d(lane));
          st[lane] = (X::store_base(w, lane) ^ (j ? X::store_step(0, 1) : 0)) ^ X::store_step(i, 0);
          if (st[lane] != int(lvt(sd, X::warp_key0(w) + X::step_key(i), 0))) ++bad_split;
        }
        for (int m = 0; m < 4; ++m) {
          int la[8], sa[8];
          for (int r = 0; r < 8; ++r) {
            la[r] = ld[8 * m + r];
            sa[r] = st[8 * m + r];
          }
          bad_banks += bank_ways(la) > 1;
          stsm_ways = std::max(stsm_ways, bank_ways(sa));
        }
        // Emulated LDSM.T.x4: lane (q, c) gets from matrix m the 16-bit element
        // (row 2c, col q) in its low half and (row 2c+1, col q) in its high half.
        uint32_t regs[32][4];
        for (int lane = 0; lane < 32; ++lane) {
          const int q = lane / 4, c = lane % 4;
          for (int m = 0; m < 4; ++m) {
            const int r0 = ld[8 * m + 2 * c], r1 = ld[8 * m + 2 * c + 1];
            regs[lane][m] = uint32_t(vs[r0 + 2 * q]) | uint32_t(vs[r0 + 2 * q + 1]) << 8 |
                            uint32_t(vs[r1 + 2 * q]) << 16 | uint32_t(vs[r1 + 2 * q + 1]) << 24;
          }
        }
        // The kernel's PRMT + mask, then emulated STSM.x4: lane (q, c)'s register
        // m goes to bytes 4c..4c+3 of row q of matrix m (row address from lane 8m + q).
        for (int lane = 0; lane < 32; ++lane) {
          const int q = lane / 4, c = lane % 4;
          const uint32_t se = X::sel_even_matrix(lane), so = X::sel_odd_matrix(lane);
          uint32_t s[4] = {prmt(regs[lane][0], regs[lane][1], se), prmt(regs[lane][0], regs[lane][1], so),
                           prmt(regs[lane][2], regs[lane][3], se), prmt(regs[lane][2], regs[lane][3], so)};
          const uint32_t keep = X::valid_mask(lane, X::warp_key0(w) + X::step_key(i), valid_rows);
          for (int m = 0; m < 4; ++m) {
            if (valid_rows < N) s[m] &= keep;
            const int a = st[8 * m + q] + 4 * c;
            for (int b = 0; b < 4; ++b) {
              vt[a + b] = uint8_t(s[m] >> (8 * b));
              ++writes[a + b];
            }
          }
        }
      }
    }
  }
  int bad_data = 0, bad_writes = 0;
  for (int d = 0; d < D; ++d) {
    for (int k = 0; k < N; ++k) {
      const int key = transpose_key_perm(k);
      const uint8_t want = key < valid_rows ? v_val(key, d) : 0;
      const int a = int(lvt(X::vt_row(d), k, 0));  // V column d sits in row vt_row(d)
      bad_data += vt[a] != want;
      bad_writes += writes[a] != 1;
    }
  }
  // The permuted V^T rows (vt_row) put 4 swizzle phases in each 8-row STSM matrix: 2-way.
  const int bad = bad_split + bad_banks + bad_data + bad_writes + (stsm_ways > (T::kVtRowsPermuted ? 2 : 1));
  std::printf("D=%d N=%d stages=%d valid_rows=%d smem(Q,K,Vt,Vs)=%dx%d+3x%d, SharedStorage %d bytes: "
              "%s (split %d, banks %d, data %d, writes %d, STSM %d-way)\n",
              D, N, T::kStages, valid_rows, T::kQStages, T::kTileQBytes, T::kStages * T::kTileKVBytes,
              torch_fmha::kernel::shared_storage_bytes<T>(), bad ? "FAIL" : "ok", bad_split, bad_banks,
              bad_data, bad_writes, stsm_ways);
  return bad;
}

template <int D, KvBlocking kBlocking = KvBlocking::kLong>
int check_all() {
  constexpr int N = torch_fmha::kernel::Fp8FwdTraits<D, kBlocking>::kBlockN;
  int bad = 0;
  for (int valid : {N, N + 5, 1, 7, 8, 9, 17, N - 1, N / 2 + 3}) bad += check<D, kBlocking>(valid);
  return bad;
}

int main() {
  // The short-key build (smaller key blocks, D = 128) has its own V^T layout
  // and shared-memory budget.
  const int bad = check_all<64>() + check_all<128>() + check_all<256>() +
                  check_all<128, KvBlocking::kShort>();
  return bad ? 1 : 0;
}
