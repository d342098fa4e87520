"""The persistent tile order (csrc/kernel/tile_scheduler.cuh), checked on the host.

tests/host_checks/check_tile_order.cu runs the kernel's own code on the host:
DenseTileScheduler::get for several batch / head / length shapes (every
(batch, head, q block) comes from exactly one tile id, the id past the last is
the stop tile, causal order longest first), persistent_tile_id (CTAs walking
alternating rounds take every tile once), and the split tail's pieces (every KV-walk
iteration of every tile once, cut tiles paired tail / head piece in one slot, equal shares), and
that the op's split workspace covers every launch that splits (SplitTail::wanted with a head dim's
narrowest splitting block) and plan()'s 32-bit bound. Needs nvcc (host compilation only).
"""

from __future__ import annotations

from host_checker import build_and_run, needs_nvcc
from torch_fmha._build import source_root


@needs_nvcc
def test_persistent_tile_order_covers_every_tile_once(tmp_path):
    lines = build_and_run("check_tile_order.cu", tmp_path, [f"-I{source_root()}"])
    # the workspace superset (plans monotone in the block count; the 32-bit bound), 12 dense +
    # 6 rounds + 10 split plans, 6 of them active (the others check it stays off)
    assert len(lines) == 29 and all(": ok (" in ln for ln in lines), "\n".join(lines)
    assert sum("(active 1)" in ln for ln in lines) == 6, "\n".join(lines)
