"""How the benchmarks time a callable: ``make_timer`` (``triton.testing.do_bench``'s median,
or CUDA events without triton) and ``alternating_rounds``, the order of interleaved repeats.
Only torch: ``bench.py`` loads it by path when it runs as a script without the package, and
re-exports both names (``torch_fmha.bench.make_timer`` is what the other benchmarks import)."""

from __future__ import annotations

import statistics
from typing import Callable, List

import torch


def alternating_rounds(names: List[str], rounds: int):
    """(round, name) in timing order for ``--repeat``: `rounds` rounds over `names`, the
    order reversed every other round, so that a slow drift of the GPU does not always land
    on the same column (the grid, the serving and the decode tables all time so)."""
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            yield r, name


def make_timer(warmup_ms: int, rep_ms: int):
    """Return ``(time_ms(fn) -> median ms, description)``."""
    try:
        from triton.testing import do_bench
    except Exception:
        do_bench = None
    if do_bench is not None:
        def time_ms(fn: Callable[[], object]) -> float:
            return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))
        return time_ms, f"triton.testing.do_bench(warmup={warmup_ms}, rep={rep_ms}, median)"

    def time_ms(fn: Callable[[], object]) -> float:  # CUDA-event median fallback
        fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        est = max(start.elapsed_time(end), 1e-3)
        for _ in range(max(1, int(warmup_ms / est))):
            fn()
        times = []
        for _ in range(max(5, int(rep_ms / est))):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            times.append((s, e))
        torch.cuda.synchronize()
        return statistics.median(s.elapsed_time(e) for s, e in times)
    return time_ms, f"CUDA events median (triton missing; warmup~{warmup_ms} ms, rep~{rep_ms} ms)"
