"""Argument checks shared by labkit's modules: each returns the value in a normal form (or nothing) or raises a
clear error that names the argument and says what is expected."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn as nn

__all__ = ["tensor", "number", "integer", "integer_at_least", "torch_module", "language_model"]


def tensor(name: str, x, dims=None, finite: bool = True, floating: bool = True, *,
           min_dims: int | None = None) -> torch.Tensor:
    """``x`` itself if it is a non-empty tensor of the right kind, else a TypeError/ValueError naming ``name``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if dims is not None:
        dims = (dims,) if isinstance(dims, int) else tuple(dims)
        if x.dim() not in dims:
            raise ValueError(f"{name} must be {' or '.join(f'{d}-D' for d in dims)}, got shape {tuple(x.shape)}")
    if min_dims is not None and x.dim() < min_dims:
        raise ValueError(f"{name} must have at least {min_dims} dimensions (a batch axis first), got shape "
                         f"{tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if finite and x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def number(name: str, v, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
            hi_open: bool = False) -> float:
    """A finite real number within [lo, hi] (open ends with ``lo_open``/``hi_open``), else a clear error."""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}: {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and (v >= hi if hi_open else v > hi)):
        interval = (("(" if lo_open else "[") + ("-inf" if lo is None else f"{lo:g}") + ", "
                    + ("inf" if hi is None else f"{hi:g}") + (")" if hi_open else "]"))
        raise ValueError(f"{name} must lie in {interval}, got {v:g}")
    return v


def integer(name: str, v, lo: int | None = None, hi: int | None = None) -> int:
    """An integer (not a bool or a float) within [lo, hi], else a clear error."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}: {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be an integer in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}],"
                         f" got {v}")
    return int(v)


def torch_module(name: str, model) -> nn.Module:
    """``model`` itself if it is a torch module, else a clear error."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module (the classifier), got {type(model).__name__}")
    return model


def integer_at_least(value, name: str, low: int | None = None) -> int:
    """An integer (not a bool or a float), at least ``low`` when it is given, else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}: {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    return int(value)


def language_model(lm) -> None:
    """Refuse anything but a labkit :class:`~labkit.lm.LanguageModel` (e.g. a model name string)."""
    from labkit.lm import LanguageModel

    if not isinstance(lm, LanguageModel):
        raise TypeError(f"lm must be a labkit LanguageModel (from labkit.load_lm()), got {type(lm).__name__}")


def strings(name: str, x) -> list[str]:
    """``x`` as a list of non-empty strings, or a clear error naming ``name``: one string instead of a list, not
    a list at all, an empty list, an item that is not a string, or an empty (all-space) string."""
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a list of strings, not one string")
    try:
        items = list(x)
    except TypeError:
        raise TypeError(f"{name} must be a list of strings, got {type(x).__name__}") from None
    if not items:
        raise ValueError(f"no {name} given: {name} is empty")
    for t in items:
        if not isinstance(t, str):
            raise TypeError(f"{name} must be strings, got {type(t).__name__} {t!r}")
        if not t.strip():
            raise ValueError(f"{name} must be non-empty strings, got {t!r}")
    return items
