// Host-only check (no GPU needed) of the persistent tile order
// (csrc/kernel/tile_scheduler.cuh), running the kernel's own code:
//  * DenseTileScheduler::get: for several batch / head / length shapes every
//    (batch, head, m_block) comes from exactly one tile id below num_tiles,
//    get(num_tiles) is the stop tile, and with reverse_m (bottom-right windows)
//    m_block never increases with the id (longest tiles first);
//  * persistent_tile_id: CTAs that each walk rounds 0, 1, ... and stop at their
//    first id >= num_tiles take every id exactly once, in increasing order per CTA,
//    and alternate direction (CTA 0 gets the first id of even rounds, the last of odd ones);
//  * the split tail's pieces (check_split below).
// Prints one "ok" line per case; exits 1 on the first violation.
// Build + run: nvcc -std=c++17 -Icsrc tests/host_checks/check_tile_order.cu -o build/check_to && build/check_to
#include <cstdio>
#include <vector>

#include "kernel/tile_scheduler.cuh"

using torch_fmha::kernel::DenseTileScheduler;
using torch_fmha::kernel::persistent_tile_id;
using torch_fmha::kernel::SplitRole;
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

// The split tail (DenseTileScheduler<128>::get<true> with a SplitTail plan): CTAs walking their
// rounds as the producer does (stop at the first invalid tile) cover every (tile, KV-walk
// iteration) exactly once; a tile is whole or cut into exactly two pieces, the tail piece
// (it_begin > 0, reaching the end of the walk) a CTA's first piece of the tail, in its own
// slot, the head piece (it_begin = 0) the previous CTA's last piece, in that same slot (the
// two pieces of a slot exchange partials, epilogue.cuh); every share is within one iteration of total / grid; whole-tile rounds are untouched.
static int check_split(int batch, int heads, int seqlen, int grid, int kv_blocks, int min_blocks) {
  using Sched = DenseTileScheduler<128>;
  Sched s = Sched::make(batch, heads, seqlen, seqlen, false);
  s.tail = torch_fmha::kernel::SplitTail::plan(s.num_tiles, grid, kv_blocks, min_blocks);
  auto fail = [&](const char* what, int a, int b) {
    std::printf("FAIL split %s: tiles=%d grid=%d nb=%d (%d, %d)\n", what, s.num_tiles, grid,
                kv_blocks, a, b);
    return 1;
  };
  const bool expect = min_blocks > 0 && kv_blocks >= min_blocks && kv_blocks >= 2 &&
                      s.num_tiles > grid && s.num_tiles % grid != 0;
  if (s.tail.active() != expect) return fail("plan", int(s.tail.active()), int(expect));
  std::vector<std::vector<int>> cover(s.num_tiles, std::vector<int>(kv_blocks, 0));
  std::vector<int> tail_slot(s.num_tiles, -1), head_slot(s.num_tiles, -1);
  const int64_t tail_iters = s.tail.active() ? int64_t(s.num_tiles - s.tail.first_tile) * kv_blocks : 0;
  for (int cta = 0; cta < grid; ++cta) {
    int pieces = 0, share = 0;
    bool headed = false;  // a head piece is the CTA's last
    for (int round = 0;; ++round) {
      const int id = persistent_tile_id(round, cta, grid);
      const TileInfo t = s.get<true>(id);
      if (!t.valid) break;
      const int tile = (t.batch * heads + t.head) * s.num_m_blocks + t.m_block;
      const torch_fmha::kernel::KvBlockRange r = t.piece({0, kv_blocks});
      if (r.count() <= 0) return fail("empty piece", cta, round);
      for (int n = r.begin; n < r.end; ++n) ++cover[tile][n];
      const bool in_tail = s.tail.active() && id >= s.tail.first_tile;
      if (!in_tail && (t.split != SplitRole::kWhole || r.count() != kv_blocks)) return fail("cut outside the tail", cta, round);
      if (in_tail) {
        if (headed) return fail("a piece after the head piece", cta, pieces);
        share += r.count();
        if (t.split == SplitRole::kTailPiece) {
          if (pieces != 0 || t.split_slot != cta || r.begin != 0 || t.it_begin == 0) return fail("tail piece", cta, pieces);
          tail_slot[tile] = t.split_slot;
        } else if (t.split == SplitRole::kHeadPiece) {
          if (t.split_slot != cta + 1 || t.it_begin != 0 || r.end != kv_blocks) return fail("head piece", cta, pieces);
          head_slot[tile] = t.split_slot;
          headed = true;
        } else if (r.count() != kv_blocks) {
          return fail("whole piece not whole", cta, pieces);
        }
        ++pieces;
      } else if (pieces != 0) {
        return fail("whole round after the tail", cta, round);
      }
    }
    if (s.tail.active()) {
      if (pieces > 3) return fail("more than 3 pieces", cta, pieces);
      if (share < tail_iters / grid || share > tail_iters / grid + 1) return fail("unequal share", cta, share);
    }
  }
  for (int t = 0; t < s.num_tiles; ++t) {
    for (int n = 0; n < kv_blocks; ++n)
      if (cover[t][n] != 1) return fail("iteration not covered once", t, n);
    if ((tail_slot[t] < 0) != (head_slot[t] < 0) || tail_slot[t] != head_slot[t]) return fail("unpaired cut", t, tail_slot[t]);
  }
  std::printf("split tiles=%d grid=%d nb=%d min=%d: ok (active %d)\n", s.num_tiles, grid, kv_blocks,
              min_blocks, int(s.tail.active()));
  return 0;
}

// The op sizes the split tail's workspace (fwd_workspace_bytes) with SplitTail::wanted and a
// head dim's narrowest splitting KV block (the launch's static_assert keeps every splitting
// build at least that wide): a plan active for a build's wider block must be wanted with the
// narrowest one (more blocks), or that launch would find no workspace and run its tiles whole.
// Keys run past plan()'s 32-bit bound (about 61k blocks), where plan() turns down what wanted()
// still counts.
// The threshold depends on the v layout (split_tail_min_blocks); the launch and the op's
// sizing take the same layout's.
static int check_workspace_superset() {
  using torch_fmha::kernel::SplitTail;
  for (int d : {64, 128})
    for (bool packed_v : {false, true}) {
    const int narrow = torch_fmha::kernel::split_tail_narrowest_block(d);
    const int min_blocks = torch_fmha::kernel::split_tail_min_blocks(d, packed_v);
    for (int tiles : {133, 134, 200, 272, 2048, 2049})
      for (int64_t keys = 1; keys <= 20000000; keys += keys < 40000 ? 37 : 99991)
        for (int block : {narrow, 192, 256}) {
          const int32_t wide_blocks = int32_t((keys + block - 1) / block);
          const int32_t narrow_blocks = int32_t((keys + narrow - 1) / narrow);
          if (block >= narrow && SplitTail::plan(tiles, 132, wide_blocks, min_blocks).active() &&
              !SplitTail::wanted(tiles, 132, narrow_blocks, min_blocks)) {
            std::printf("FAIL workspace superset: D=%d tiles=%d keys=%lld block=%d\n", d, tiles,
                        (long long)keys, block);
            return 1;
          }
        }
  }
  // The 32-bit piece arithmetic's bound: no plan past 2 grid^2 kv_blocks > INT32_MAX.
  if (SplitTail::plan(2049, 132, 70000, 8).active() || !SplitTail::wanted(2049, 132, 70000, 8)) {
    std::printf("FAIL: the 32-bit bound\n");
    return 1;
  }
  std::printf("workspace superset: ok (d = 64, 128)\n");
  return 0;
}

int main() {
  if (check_workspace_superset()) return 1;
  const int shapes[][3] = {{1, 1, 1}, {1, 16, 16384}, {4, 16, 4096}, {3, 5, 1000}, {2, 7, 129}, {8, 3, 128}};
  for (const auto& sh : shapes) {
    for (bool reverse_m : {false, true})
      if (check_dense(sh[0], sh[1], sh[2], reverse_m)) return 1;
  }
  const int rounds[][2] = {{1, 1}, {5, 132}, {132, 132}, {133, 132}, {2048, 132}, {1000, 7}};
  for (const auto& r : rounds)
    if (check_rounds(r[0], r[1])) return 1;
  // batch, heads, seqlen (q blocks of 128), grid, KV blocks per tile, min blocks
  const int splits[][6] = {{1, 16, 16384, 132, 64, 8}, {1, 16, 16384, 132, 4, 8},   // 2048 tiles
                           {1, 17, 2048, 132, 8, 8},   {1, 17, 2048, 132, 8, 0},    // 272 tiles
                           {2, 4, 2100, 132, 11, 8},   {1, 8, 16384, 132, 64, 8},   // 136, 1024
                           {1, 1, 16384, 132, 2, 2},   {1, 33, 1000, 7, 3, 2},      // 128 on 132; 264 on 7
                           {1, 11, 1536, 132, 9, 2},   {1, 3, 1000, 5, 5, 2}};      // 132 (no rem); 24 on 5
  for (const auto& c : splits)
    if (check_split(c[0], c[1], c[2], c[3], c[4], c[5])) return 1;
  return 0;
}
