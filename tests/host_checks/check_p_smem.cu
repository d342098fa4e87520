// Host-only check (no GPU needed) of where the consumers store P for an SS P V
// (Traits::kPFromSmem, consumer.cuh: PSmemOffsets, store_p_smem): the D = 128 long-key
// packed-v build as compiled (SmemLayoutP; 256-key blocks: a 128-byte swizzle atom), and the
// same kind of tile with the other atom widths ss_smem_selector picks, 64 bytes (192 keys,
// -DTORCH_FMHA_TUNE_PACKED_V_BLOCK_N_128=192) and 32 bytes (224 keys):
//  * every word w = 4 kb + 2 h + rr of every consumer thread lands where
//    the layout has (row0 + 8 rr, key 32 kb + 16 h + 4 c) and its 4 bytes are
//    contiguous there (one 32-bit store);
//  * the words of all 256 threads cover every byte of the tile exactly once;
//  * each warp's store of one word touches 32 distinct banks (reported; required
//    for the release build's 128-byte atom).
// Build + run: nvcc -std=c++17 --expt-relaxed-constexpr -I<cutlass> -Icsrc \
//   tests/host_checks/check_p_smem.cu -o build/check_p_smem && build/check_p_smem
#include <cstdio>
#include <vector>

#include "kernel/consumer.cuh"
#include "kernel/kernel_traits.cuh"

using namespace torch_fmha::kernel;

template <int kBlockM, int kBlockN, int kAtomBytes, class Layout>
int check(const char* name, const Layout& layout, bool need_no_conflicts) {
  using namespace cute;
  static_assert(cosize_v<Layout> == kBlockM * kBlockN);
  std::vector<int> hits(kBlockM * kBlockN, 0);
  int bad = 0, conflicts = 0;
  for (int warp = 0; warp < 8; ++warp) {
    for (int w = 0; w < kBlockN / 8; ++w) {
      bool bank_used[32] = {};
      for (int lane = 0; lane < 32; ++lane) {
        const int tidx = 32 * warp + lane;  // consumer_run's row0 / col0
        const int row0 = 64 * (tidx / 128) + 16 * ((tidx % 128) / 32) + lane / 4;
        const int c = lane % 4;
        const PSmemOffsets<kBlockM, kAtomBytes> off(row0, c);
        const int m = row0 + 8 * (w % 2), k = 32 * (w / 4) + 16 * ((w / 2) % 2) + 4 * c;
        const int at = off.word(w);
        for (int i = 0; i < 4; ++i) {
          const int want = layout(m, k + i);
          if (want != at + i) {
            if (++bad <= 5) printf("%s: thread %d word %d byte %d at %d, layout %d\n", name, tidx, w, i, at + i, want);
          } else {
            ++hits[want];
          }
        }
        const int bank = (at / 4) % 32;
        conflicts += bank_used[bank];
        bank_used[bank] = true;
      }
    }
  }
  int holes = 0;
  for (int h : hits) holes += h != 1;
  printf("%s: atom %d B, %d misplaced bytes, %d bytes not written exactly once, %d bank conflicts\n", name,
         kAtomBytes, bad, holes, conflicts);
  return bad + holes + (need_no_conflicts ? conflicts : 0);
}

template <int kBlockN, class Atom>
auto p_tile(Atom atom) {
  return cute::tile_to_shape(atom, cute::Shape<cute::_128, cute::Int<kBlockN>>{});
}

int main() {
  using namespace cute;
  using Traits = Fp8FwdTraits<128, KvBlocking::kLong, VLayout::kPackedVt>;
  static_assert(Traits::kPFromSmem, "the release build takes P from shared memory");
  using E = float_e4m3_t;
  int fails = 0;
  fails += check<Traits::kBlockM, Traits::kBlockN, Traits::kPAtomBytes>("D128 long packed-v build (SmemLayoutP)",
                                                          typename Traits::SmemLayoutP{}, true);
  fails += check<128, 192, 64>("192 keys, 64-byte atom", p_tile<192>(GMMA::Layout_K_SW64_Atom<E>{}), false);
  fails += check<128, 224, 32>("224 keys, 32-byte atom", p_tile<224>(GMMA::Layout_K_SW32_Atom<E>{}), false);
  printf(fails ? "FAIL\n" : "OK\n");
  return fails ? 1 : 0;
}
