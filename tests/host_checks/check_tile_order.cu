// Host-only check (no GPU needed) of the persistent tile order
// (csrc/kernel/tile_scheduler.cuh), running the kernel's own code:
//  * DenseTileScheduler::get: for several batch / head / length shapes every
//    (batch, head, m_block) comes from exactly one tile id below num_tiles,
//    get(num_tiles) is the stop tile, and with reverse_m (bottom-right windows)
//    m_block never increases with the id (longest tiles first);
//  * persistent_tile_id: CTAs that each walk rounds 0, 1, ... and stop at their
//    first id >= num_tiles take every id exactly once, in increasing order per CTA,
//    and alternate direction (CTA 0 gets the first id of even rounds, the last of odd ones).
// Prints one "ok" line per case; exits 1 on the first violation.
// Build + run: nvcc -std=c++17 -Icsrc tests/host_checks/check_tile_order.cu -o build/check_to && build/check_to
#include <cstdio>
#include <vector>

#include "kernel/tile_scheduler.cuh"

using torch_fmha::kernel::DenseTileScheduler;
using torch_fmha::kernel::persistent_tile_id;
using torch_fmha::kernel::TileInfo;

static int check_dense(int batch, int heads, int seqlen_q, bool reverse_m) {
  const auto s = DenseTileScheduler<128>::make(batch, heads, seqlen_q, seqlen_q, reverse_m);
  const int num_m = (seqlen_q + 127) / 128;
  auto fail = [&](const char* what, int id) {
    std::printf("FAIL %s: B=%d H=%d Sq=%d reverse_m=%d tile %d\n", what, batch, heads, seqlen_q,
                int(reverse_m), id);
    return 1;
  };
  if (s.num_tiles != batch * heads * num_m) return fail("num_tiles", -1);
  std::vector<int> seen(s.num_tiles, 0);
  int prev_m = num_m;
  for (int id = 0; id < s.num_tiles; ++id) {
    const TileInfo t = s.get(id);
    if (!t.valid || t.batch < 0 || t.batch >= batch || t.head < 0 || t.head >= heads ||
        t.m_block < 0 || t.m_block >= num_m || t.seqlen_q != seqlen_q || t.tensor_batch != t.batch)
      return fail("out of range", id);
    if (seen[(t.batch * heads + t.head) * num_m + t.m_block]++) return fail("visited twice", id);
    if (reverse_m && t.m_block > prev_m) return fail("m_block increases", id);
    prev_m = t.m_block;
  }
  if (s.get(s.num_tiles).valid) return fail("no stop tile", s.num_tiles);
  std::printf("dense B=%d H=%d Sq=%d reverse_m=%d: ok (%d tiles)\n", batch, heads, seqlen_q,
              int(reverse_m), s.num_tiles);
  return 0;
}

static int check_rounds(int num_tiles, int grid) {
  std::vector<int> seen(num_tiles, 0);
  for (int cta = 0; cta < grid; ++cta) {
    int prev = -1;
    for (int round = 0;; ++round) {
      const int id = persistent_tile_id(round, cta, grid);
      if (id <= prev) { std::printf("FAIL ids not increasing: cta %d round %d\n", cta, round); return 1; }
      if (id % grid != (round % 2 == 0 ? cta : grid - 1 - cta)) {
        std::printf("FAIL direction: cta %d round %d id %d\n", cta, round, id);
        return 1;
      }
      if (id >= num_tiles) break;
      ++seen[id];
      prev = id;
    }
  }
  for (int id = 0; id < num_tiles; ++id) {
    if (seen[id] != 1) { std::printf("FAIL tile %d taken %d times (grid %d)\n", id, seen[id], grid); return 1; }
  }
  std::printf("rounds tiles=%d grid=%d: ok (%d tiles)\n", num_tiles, grid, num_tiles);
  return 0;
}

int main() {
  const int shapes[][3] = {{1, 1, 1}, {1, 16, 16384}, {4, 16, 4096}, {3, 5, 1000}, {2, 7, 129}, {8, 3, 128}};
  for (const auto& sh : shapes) {
    for (bool reverse_m : {false, true})
      if (check_dense(sh[0], sh[1], sh[2], reverse_m)) return 1;
  }
  const int rounds[][2] = {{1, 1}, {5, 132}, {132, 132}, {133, 132}, {2048, 132}, {1000, 7}};
  for (const auto& r : rounds)
    if (check_rounds(r[0], r[1])) return 1;
  return 0;
}
