"""Claims are code: a sentence of a notebook that states what its numbers show is asserted by a cell first.

    claim(r > 0.9, "attribution patching tracks exact patching closely", r=r)
    # ✓ attribution patching tracks exact patching closely (r = 0.996)

:func:`claim` prints a ✓ line with the claim and the numbers it rests on, or raises :class:`ClaimFailed`
with them when the condition is false, so a re-run that changes a result fails the notebook instead of
leaving the prose wrong. State the tolerance in the condition (``abs(x - 0.5) < 0.05``), not in the prose
alone.

The sentences describe the **course model**. A notebook can run on another model (its ``MODEL`` setting: any hub
id or saved folder); once this process has loaded a language model other than the course model
(:func:`labkit.load_lm` records it in :data:`STATE`), a claim that does not hold prints a ✗ line with its
numbers and the notebook goes on, because the sentence was measured on the course model, not on this one.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = ["claim", "ClaimFailed", "STATE"]

#: ``other_model``: the name of a language model other than the course model, once this process has loaded one
#: (set by :func:`labkit.lm.load.load_lm`); None while only the course model (or no model) was loaded.
STATE: dict = {"other_model": None}


class ClaimFailed(AssertionError):
    """A sentence of the notebook does not hold for the numbers this run produced."""


def _format(value) -> str:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.numel() == 1:
            value = value.item()
        else:
            return f"tensor {list(value.shape)} " + np.array2string(value.double().numpy().ravel()[:8], precision=4,
                                                                      separator=", ") + ("…" if value.numel() > 8 else "")
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, (tuple, list)):  # each number inside formatted like a lone one: no 17-digit reprs
        inner = ", ".join(_format(v) for v in value)
        return f"({inner}{',' if len(value) == 1 else ''})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_format(k)}: {_format(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool) or isinstance(value, np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return repr(value) if isinstance(value, str) else str(value)


def claim(condition, text: str, **numbers) -> None:
    """Assert a sentence of the notebook: print ``✓ text (name = value, …)``, or raise :class:`ClaimFailed`.

    ``condition`` is a bool (or a one-element tensor/array); ``text`` is the sentence, as the prose states it;
    ``numbers`` are the values the sentence rests on, shown in both cases so a reader sees the evidence.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be the sentence being claimed, a non-empty string")
    if isinstance(condition, torch.Tensor):
        if condition.numel() != 1:
            raise ValueError(f"condition must be one truth value; got a tensor of shape {list(condition.shape)} "
                             f"(use .all() or .any())")
        condition = condition.item()
    if isinstance(condition, np.ndarray):
        if condition.size != 1:
            raise ValueError(f"condition must be one truth value; got an array of shape {condition.shape} "
                             f"(use .all() or .any())")
        condition = condition.item()
    if not isinstance(condition, (bool, np.bool_)):
        raise TypeError(f"condition must be a bool (a comparison), got {type(condition).__name__}: {condition!r}")
    evidence = ", ".join(f"{name} = {_format(value)}" for name, value in numbers.items())
    if condition:
        print(f"✓ {text}" + (f" ({evidence})" if evidence else ""))
        return
    other = STATE["other_model"]
    if other is not None:
        print(f"✗ not on {other}: {text}" + (f" ({evidence})" if evidence else "")
              + " — this sentence describes the course model; with another model the numbers differ.")
        return
    raise ClaimFailed(f"✗ this run does not support the claim: {text!r}" + (f" — {evidence}" if evidence else "")
                      + ". The numbers changed: update the analysis or the text, do not loosen the claim to fit.")
