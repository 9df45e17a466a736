"""Timing helpers shared by the benchmark scripts (``from _timing import timed, best_of_pair, peak_rss_mb``).

Every measurement synchronises CUDA before reading the clock, so GPU kernels are timed to completion.
"""

from __future__ import annotations

import time

import torch


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn, repeat: int = 1):
    """Run ``fn`` ``repeat`` times; return ``(its last result, the best wall time in seconds)``."""
    best, out = float("inf"), None
    for _ in range(repeat):
        _sync()
        t0 = time.perf_counter()
        out = fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return out, best


def best_of_pair(fn_a, fn_b, repeats: int = 5, chunk_s: float = 0.1) -> tuple[float, float]:
    """Seconds per call of two functions: each measurement times enough calls to last about ``chunk_s``, the two
    are measured alternately (so both see the same machine load), and the best of ``repeats`` is kept."""
    inner = [max(1, int(chunk_s / max(timed(f)[1], 1e-6))) for f in (fn_a, fn_b)]  # also a warm-up
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(timed(lambda: [fn_a() for _ in range(inner[0])])[1] / inner[0])
        tb.append(timed(lambda: [fn_b() for _ in range(inner[1])])[1] / inner[1])
    return min(ta), min(tb)


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory of process ``pid`` in MB (``VmHWM`` in ``/proc/<pid>/status``); None where there is
    no ``/proc`` (the caller falls back to polling)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
