"""The machinery behind every check: :class:`Exercise`, :class:`Case`, :func:`run`, :class:`CheckFailed`."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch


class CheckFailed(AssertionError):
    """The student's function disagrees with the reference; the message says where and why."""


@dataclass
class Case:
    """One input to a checked function: positional args, keyword args and a short description."""

    description: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass
class Exercise:
    """A checked exercise: the reference, the cases, the known mistakes (hint → wrong implementation)."""

    name: str
    reference: Callable
    cases: list[Case]
    mistakes: dict[str, Callable] = field(default_factory=dict)
    rtol: float = 1e-4
    atol: float = 1e-6

    def __call__(self, student: Callable) -> Callable:
        return run(self, student)


def _to_numpy(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (torch.Tensor, np.ndarray, float, int)) for v in x):
        return np.asarray([_to_numpy(v) for v in x], dtype=float)
    if isinstance(x, (float, int, np.number)) and not isinstance(x, bool):
        return np.asarray(float(x))
    return x


def _compare(got: Any, expected: Any, rtol: float, atol: float) -> str | None:
    """None when ``got`` matches ``expected``; otherwise a sentence saying how it differs."""
    g, e = _to_numpy(got), _to_numpy(expected)
    if isinstance(e, np.ndarray):
        if not isinstance(g, np.ndarray):
            return f"returned {type(got).__name__}, expected a tensor/array of shape {tuple(e.shape)}"
        if g.shape != e.shape:
            return f"returned shape {tuple(g.shape)}, expected {tuple(e.shape)}"
        if np.isnan(g).any() and not np.isnan(e).any():
            return "returned NaN where the reference has finite values"
        if not np.allclose(g, e, rtol=rtol, atol=atol, equal_nan=True):
            worst = float(np.nanmax(np.abs(g - e)))
            return f"values differ from the reference (largest difference {worst:.3g})"
        return None
    return None if got == expected else f"returned {got!r}, expected {expected!r}"


def _copy_args(case: Case) -> tuple[tuple, dict]:
    clone = lambda v: v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)  # noqa: E731
    return tuple(clone(a) for a in case.args), {k: clone(v) for k, v in case.kwargs.items()}


def _matching_mistake(ex: Exercise, got: Any, case: Case) -> str | None:
    for hint, wrong in ex.mistakes.items():
        try:
            args, kwargs = _copy_args(case)
            wrong_out = wrong(*args, **kwargs)
        except Exception:
            continue
        if _compare(got, wrong_out, ex.rtol, ex.atol) is None:
            return hint
    return None


def run(ex: Exercise, student: Callable) -> Callable:
    """Check ``student`` against ``ex``; see the module docstring for what happens."""
    if not callable(student):
        raise TypeError(
            f"check.{ex.name} takes your function itself, e.g. `{ex.name} = check.{ex.name}({ex.name})`, "
            f"not the result of calling it (got a {type(student).__name__})"
        )
    for i, case in enumerate(ex.cases, 1):
        args, kwargs = _copy_args(case)
        try:
            got = student(*args, **kwargs)
        except NotImplementedError:
            print(
                f"⧗ {ex.name}: not done yet — using the reference implementation so the rest of the notebook runs. "
                "Come back to it!"
            )
            return ex.reference
        except Exception as e:
            raise CheckFailed(
                f"✗ {ex.name} raised {type(e).__name__}: {e}\n  on case {i}/{len(ex.cases)}: {case.description}"
            ) from e
        ref_args, ref_kwargs = _copy_args(case)
        expected = ex.reference(*ref_args, **ref_kwargs)
        problem = _compare(got, expected, ex.rtol, ex.atol)
        if problem is not None:
            hint = _matching_mistake(ex, got, case)
            message = f"✗ {ex.name}: {problem}\n  on case {i}/{len(ex.cases)}: {case.description}"
            if hint:
                message += f"\n  Hint: {hint}"
            raise CheckFailed(message)
    print(f"✓ {ex.name}: all {len(ex.cases)} cases agree with the reference.")
    return student
