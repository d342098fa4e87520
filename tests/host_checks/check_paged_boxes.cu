// Host-only check (no GPU needed) of the paged-KV box split
// (csrc/kernel/producer.cuh, PagedKvBoxes) for every head-dim config and
// every page size 16 .. 256:
//  * box_rows divides the page size and kBlockN, is at most 256 (a TMA box
//    dimension), and a block has at most 32 boxes (one page id per lane);
//  * no box of any block crosses a page;
//  * every box, written by TMA at smem_offset(row0, chunk) with the K
//    layout's swizzle (16-byte chunk ^= bits 7.. of the offset), puts each
//    (key, d) byte exactly where SmemLayoutK has it, i.e. where the dense
//    descriptor puts it and the consumers' wgmma / the V transposer read it;
//    box starts are swizzle-atom aligned; the boxes of a block cover a stage
//    once; stage s is stage 0 plus s * kTileKVBytes;
//  * the launch's issuing warps (issue_warps: at most the knob's, four at 16-key
//    pages when the knob allows four); for every warp count the build can take,
//    the warps' roles (issue_role) give each tensor its slices once each, as many
//    as its full barrier counts arrivals; and for every slice shift the slices
//    issue every (box, chunk) of a block exactly once, one per lane, and arrive
//    with the block's bytes in all.
// Prints one "ok" line per head dim; exits 1 on the first mismatch.
// Build + run: nvcc -std=c++17 --expt-relaxed-constexpr -I<cutlass> -Icsrc \
//   tests/host_checks/check_paged_boxes.cu -o build/check_pb && build/check_pb
#include <cstdio>
#include <vector>

#include "kernel/fmha_fwd_kernel.cuh"

template <int kHeadDim>
static bool check() {
  using Traits = torch_fmha::kernel::Fp8FwdTraits<kHeadDim>;
  using Paged = torch_fmha::kernel::PagedKvBoxes<Traits>;
  constexpr int kBlockN = Traits::kBlockN;
  constexpr int kChunk = Paged::kChunk;
  const typename Traits::SmemLayoutK layout{};
  const int atom_bytes = 8 * kChunk;  // 8 rows of one swizzle width
  const int swizzle_mask = kChunk / 16 - 1;  // 16-byte chunks per swizzled row
  long checked = 0;
  for (int s = 0; s < Traits::kStages; ++s) {
    for (int r = 0; r < kBlockN; r += 7) {
      for (int d = 0; d < kHeadDim; d += 5) {
        if (int(layout(r, d, s)) != int(layout(r, d, 0)) + s * Traits::kTileKVBytes) {
          std::printf("FAIL D=%d: stage %d offset of (%d, %d)\n", kHeadDim, s, r, d);
          return false;
        }
      }
    }
  }
  for (int page = 16; page <= 256; page *= 2) {
    const int box = Paged::box_rows(page);
    if (box <= 0 || page % box != 0 || kBlockN % box != 0 || box > 256 || kBlockN / box > 32 ||
        kBlockN / box > Paged::kMaxBoxes) {
      std::printf("FAIL D=%d page %d: box_rows %d\n", kHeadDim, page, box);
      return false;
    }
    for (int n0 = 0; n0 < 4 * kBlockN; n0 += kBlockN) {
      for (int j = 0; j < kBlockN / box; ++j) {
        const int key0 = n0 + j * box;
        if (key0 / page != (key0 + box - 1) / page) {
          std::printf("FAIL D=%d page %d: box %d of block at %d crosses a page\n", kHeadDim, page, j, n0);
          return false;
        }
      }
    }
    std::vector<int> written(Traits::kTileKVBytes, 0);
    for (int j = 0; j < kBlockN / box; ++j) {
      for (int c = 0; c < Paged::kChunks; ++c) {
        const int base = Paged::smem_offset(j * box, c);
        if (base % atom_bytes != 0) {
          std::printf("FAIL D=%d page %d: box %d chunk %d starts at %d, not on a swizzle atom\n",
                      kHeadDim, page, j, c, base);
          return false;
        }
        for (int i = 0; i < box; ++i) {
          for (int b = 0; b < kChunk; ++b) {
            const int o = i * kChunk + b;  // byte of the box as TMA lays it out, unswizzled
            const int tma = base + (o ^ (((o >> 7) & swizzle_mask) << 4));
            const int want = int(layout(j * box + i, c * kChunk + b, 0));
            if (tma != want) {
              std::printf("FAIL D=%d page %d: key %d d %d lands at %d, layout has %d\n", kHeadDim,
                          page, j * box + i, c * kChunk + b, tma, want);
              return false;
            }
            ++written[tma];
            ++checked;
          }
        }
      }
    }
    for (int v : written) {
      if (v != 1) {
        std::printf("FAIL D=%d page %d: a stage byte written %d times\n", kHeadDim, page, v);
        return false;
      }
    }
    // The launch's warp count for this page size: 1, 2 or 4, at most the knob's, and four
    // at 16-key pages (more than 8 units per tensor at every head dim) exactly when the knob
    // allows four.
    const int warps = Paged::issue_warps(page);
    if (!(warps == 1 || warps == 2 || warps == 4) || warps > Paged::kIssueWarps ||
        (page == 16 && (warps == 4) != (Paged::kIssueWarps == 4))) {
      std::printf("FAIL D=%d page %d: %d issuing warps (knob %d)\n", kHeadDim, page, warps,
                  Paged::kIssueWarps);
      return false;
    }
    // For every warp count a launch of this build can take: the warps' roles (issue_role,
    // as producer_run assigns them) give each tensor the slices 0 .. (1 << shift) - 1 once
    // each, and 1 << shift is the arrival count the full barriers are initialised with.
    for (int w = 1; w <= Paged::kIssueWarps; w *= 2) {
      const int shift = Paged::slice_shift(w);
      for (int tensor = 0; tensor < 2; ++tensor) {
        std::vector<int> slices(4, 0);
        int arrivals = 0;
        for (int warp = 0; warp < w; ++warp) {
          const auto role = Paged::issue_role(warp, w);
          if (tensor == 0 ? role.k : role.v) {
            if (role.slice < 0 || role.slice >= (1 << shift)) {
              std::printf("FAIL D=%d: %d warps, warp %d issues slice %d of %d\n", kHeadDim, w, warp,
                          role.slice, 1 << shift);
              return false;
            }
            ++slices[role.slice];
            ++arrivals;
          }
        }
        for (int sl = 0; sl < (1 << shift); ++sl) {
          if (slices[sl] != 1 || arrivals != (1 << shift)) {
            std::printf("FAIL D=%d: %d warps, %s slice %d issued %d times, %d arrivals for %d\n",
                        kHeadDim, w, tensor == 0 ? "K" : "V", sl, slices[sl], arrivals, 1 << shift);
            return false;
          }
        }
      }
    }
    // The issuing slices (1 << shift warps per tensor), for the launch's shift and for every
    // shift the build can take: for every number of live boxes, each (box, chunk) unit is
    // issued by exactly one (slice, lane), every lane below its slice's count holds a unit
    // inside the block, and the slices' byte counts add up to the block's.
    for (int shift = 0; shift <= Paged::slice_shift(Paged::kIssueWarps); ++shift) {
      for (int boxes = 1; boxes <= kBlockN / box; ++boxes) {
        const int units = boxes * Paged::kChunks;
        std::vector<int> issued(units, 0);
        int bytes = 0;
        for (int slice = 0; slice < (1 << shift); ++slice) {
          const int n = Paged::slice_units(units, slice, shift);
          bytes += n * box * kChunk;
          for (int lane = 0; lane < n; ++lane) {
            const int u = Paged::lane_unit(slice, lane, shift);
            if (lane >= 32 || u < 0 || u >= units) {
              std::printf("FAIL D=%d page %d shift %d: slice %d lane %d gets unit %d of %d\n", kHeadDim,
                          page, shift, slice, lane, u, units);
              return false;
            }
            ++issued[u];
          }
        }
        for (int u = 0; u < units; ++u) {
          if (issued[u] != 1) {
            std::printf("FAIL D=%d page %d shift %d: unit %d of %d boxes issued %d times\n", kHeadDim,
                        page, shift, u, boxes, issued[u]);
            return false;
          }
        }
        if (bytes != boxes * box * kHeadDim) {
          std::printf("FAIL D=%d page %d shift %d: slices post %d bytes for %d boxes\n", kHeadDim, page,
                      shift, bytes, boxes);
          return false;
        }
      }
    }
  }
  std::printf("paged boxes D=%d (kBlockN %d, chunk %d B, %d issuing warps): ok (%ld bytes)\n",
              kHeadDim, kBlockN, kChunk, Paged::kIssueWarps, checked);
  return true;
}

int main() {
  const bool ok = check<64>() && check<128>() && check<256>();
  return ok ? 0 : 1;
}
