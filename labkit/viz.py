"""Plotting helpers shared by the notebooks: every figure gets a title, labelled axes and units."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np


def _check_title(title) -> None:
    if not isinstance(title, str) or not title.strip():
        raise ValueError("title must be a non-empty string: every figure says what it shows")


def bar_tokens(pairs: Sequence[tuple[str, float]], title: str, xlabel: str = "probability", ax=None):
    """Horizontal bars for (token, value) pairs, largest on top; tokens are shown with visible spaces."""
    pairs = list(pairs) if not isinstance(pairs, (str, bytes)) else None
    if not pairs or any(not (isinstance(p, (tuple, list)) and len(p) == 2) for p in pairs):
        raise ValueError("pairs must be a non-empty list of (token, value) pairs, e.g. lm.top_tokens(prompt)")
    if any(not np.isfinite(float(v)) for _, v in pairs):
        raise ValueError("the values of pairs must be finite numbers")
    _check_title(title)
    ax = ax or plt.subplots(figsize=(6, 0.35 * len(pairs) + 1))[1]
    labels = [repr(t) for t, _ in pairs][::-1]
    values = [v for _, v in pairs][::-1]
    ax.barh(labels, values, color="tab:blue")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("next token")
    ax.set_xlim(0, max(values) * 1.2 if values else 1)
    return ax


def per_layer(values, title: str, ylabel: str, ax=None, label: str | None = None, marker: str = "o"):
    """A line over layers 0…L−1."""
    values = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence (one number per layer), got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("values must be finite (no NaN or inf): a missing layer would be drawn as a gap")
    _check_title(title)
    ax = ax or plt.subplots(figsize=(7, 3.2))[1]
    ax.plot(np.arange(len(values)), values, marker=marker, markersize=3, label=label)
    ax.set_title(title)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if label:
        ax.legend()
    return ax


def heatmap(matrix, row_labels, col_labels, title: str, cbar_label: str, ax=None, fmt: str = "{:.2f}", cmap="viridis",
            vmin=None, vmax=None, figsize=None, annotate: bool | None = None):
    """A heatmap with labelled rows and columns; values are printed in the cells of small matrices
    (``annotate=None``: up to 100 cells). NaN cells are left blank."""
    matrix = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=float)
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(f"matrix must be a non-empty 2-D array, got shape {matrix.shape}")
    if len(row_labels) != matrix.shape[0] or len(col_labels) != matrix.shape[1]:
        raise ValueError(f"row_labels ({len(row_labels)}) and col_labels ({len(col_labels)}) must match the matrix's "
                         f"shape {matrix.shape}")
    _check_title(title)
    if ax is None:
        size = figsize or (min(14.0, 1.0 + 0.9 * len(col_labels)), min(10.0, 0.8 + 0.5 * len(row_labels)))
        ax = plt.subplots(figsize=size)[1]
    im = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    if len(col_labels) <= 20:
        ax.set_xticks(range(len(col_labels)), col_labels, rotation=30, ha="right")
    else:  # long axes (layers, positions): label every few columns
        step = -(-len(col_labels) // 15)
        ax.set_xticks(range(0, len(col_labels), step), list(col_labels)[::step])
    ax.set_yticks(range(len(row_labels)), row_labels)
    if annotate if annotate is not None else matrix.size <= 100:
        mid = (np.nanmax(matrix) + np.nanmin(matrix)) / 2
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8, color="white" if v < mid else "black")
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, label=cbar_label)
    return ax
