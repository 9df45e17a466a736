"""Small statistics shared by several notebooks: rank correlation.

* :func:`spearman` — Spearman's rank correlation ρ of two vectors (scipy's ``spearmanr``: ties get average
  ranks), used by notebooks 04 (the linear datamodeling score), 05 (agreement of attribution methods) and 12
  (likelihood displacement against CHES).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["spearman"]


def spearman(a, b) -> float:
    """Spearman's rank correlation ρ of two equally long vectors (Pearson's r of their ranks, ties averaged).

    Raises ``ValueError`` for vectors of different lengths, fewer than two values, NaN/inf, or a constant
    vector (whose ranks carry no order, so ρ is undefined).
    """
    from scipy.stats import spearmanr

    x = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=float).ravel()
    y = np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same length, got {x.size} and {y.size}")
    if x.size < 2:
        raise ValueError(f"need at least two values to rank, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("a and b must be finite (no NaN or inf)")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError("a constant vector has no ranking: Spearman's ρ is undefined")
    return float(spearmanr(x, y).statistic)
