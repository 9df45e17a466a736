"""The machinery behind every check: :class:`Exercise`, :class:`Case`, :func:`run`, :class:`CheckFailed`."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import torch


#: Set to 1 for grading with nbgrader: an unfinished exercise then fails its check cell (raises) instead of
#: handing the reference back, because nbgrader counts a check cell that does not raise as passed.
STRICT_ENV = "LABKIT_STRICT_CHECKS"


class CheckFailed(AssertionError):
    """The student's function disagrees with the reference; the message says where and why."""


@dataclass
class Case:
    """One input to a checked function: positional args, keyword args and a short description."""

    description: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


class LazyCases(Sequence):
    """Cases built on first use by ``make(*context)`` — for cases drawn from a notebook's real data or the course
    model, which should cost nothing until the check runs. ``context`` is what the check cell passes after the
    student's function, e.g. the notebook's model in ``option_scores = check.option_scores(option_scores, lm)``
    (so the check runs on the notebook's own model instead of loading a second copy); without it, ``make()``
    gets nothing and loads what it needs. The cases are rebuilt when the context changes."""

    def __init__(self, make: Callable[..., list[Case]]):
        self._make, self._cases, self._context = make, None, None
        self.context: tuple = ()

    def _get(self) -> list[Case]:
        key = tuple(id(c) for c in self.context)
        if self._cases is None or key != self._context:
            cases = list(self._make(*self.context))
            if not cases or not all(isinstance(c, Case) for c in cases):
                raise TypeError("a check's case builder must return a non-empty list of Case")
            self._cases, self._context = cases, key
        return self._cases

    def __getitem__(self, i):
        return self._get()[i]

    def __len__(self) -> int:
        return len(self._get())


@dataclass
class Exercise:
    """A checked exercise: the reference, the cases, the known mistakes (hint → wrong implementation).

    ``cases`` is a list of :class:`Case`, or a function returning one, called the first time the check runs
    (use it for cases built from the notebook's real data or the course model)."""

    name: str
    reference: Callable
    cases: list[Case] | Callable[[], list[Case]]
    mistakes: dict[str, Callable] = field(default_factory=dict)
    rtol: float = 1e-4
    atol: float = 1e-6

    def __post_init__(self):
        if callable(self.cases):
            self.cases = LazyCases(self.cases)

    def __call__(self, student: Callable, *context) -> Callable:
        return run(self, student, *context)

    def run_case(self, i: int, student: Callable):
        """Run case ``i`` (1-based, as failure messages number them) on ``student`` and print what it returned
        next to the reference's result; raises :class:`CheckFailed` when they differ. Returns the output."""
        if isinstance(i, bool) or not isinstance(i, int) or not 1 <= i <= len(self.cases):
            raise ValueError(f"i must be a case number between 1 and {len(self.cases)}, got {i!r}")
        if not callable(student):
            raise TypeError(f"run_case takes your function itself, e.g. check.{self.name}.run_case({i}, {self.name})")
        case = self.cases[i - 1]
        got = _run_one(self, student, i)
        print(f"case {i}/{len(self.cases)}: {case.description}\n  input:    {_describe_inputs(case)}\n"
              f"  returned: {_abbrev(got)} (agrees with the reference)")
        return got


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


_COURSE_LM = []


def course_model():
    """The course model for checks run outside a notebook (the tests): loaded once per process. In a notebook, the
    check cell passes the notebook's own model instead (``check.f(f, lm)``), so no second copy is loaded."""
    if not _COURSE_LM:
        from labkit import load_lm

        _COURSE_LM.append(load_lm())
    return _COURSE_LM[0]


def _shared(v: Any) -> bool:
    """Models are passed as they are, never copied (a copy of the course model would double the memory)."""
    from labkit.lm import LanguageModel

    return isinstance(v, (LanguageModel, torch.nn.Module))


def _copy_args(case: Case) -> tuple[tuple, dict]:
    def clone(v):
        if isinstance(v, torch.Tensor):
            return v.clone()
        return v if _shared(v) else copy.deepcopy(v)

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


def _abbrev(x: Any, width: int = 160) -> str:
    """A short readable form of a value for a failure message: shapes and the first values of tensors."""
    if isinstance(x, torch.Tensor):
        flat = x.detach().cpu().flatten()
        head = ", ".join(f"{float(v):.4g}" if flat.is_floating_point() else str(int(v)) for v in flat[:6])
        return f"tensor{list(x.shape)} [{head}{', …' if flat.numel() > 6 else ''}]"
    if isinstance(x, np.ndarray):
        return _abbrev(torch.as_tensor(x), width)
    if isinstance(x, (list, tuple)):
        text = type(x)(_abbrev(v, 40) for v in x[:6])
        text = repr(list(text) if isinstance(x, list) else tuple(text)).replace("'", "")
        return text if len(x) <= 6 else text[:-1] + ", …" + text[-1]
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {_abbrev(v, 40)}" for k, v in list(x.items())[:6]) + (", …}" if len(x) > 6 else "}")
    text = repr(x)
    return text if len(text) <= width else text[: width - 1] + "…"


def _describe_inputs(case: Case) -> str:
    parts = [_abbrev(a, 80) for a in case.args] + [f"{k}={_abbrev(v, 80)}" for k, v in case.kwargs.items()]
    return "(" + ", ".join(parts) + ")"


def _handed_back(ex: Exercise) -> Callable:
    """The reference, marked as such: the notebook runs on with it, and checking it again says so."""

    def reference(*args, **kwargs):
        return ex.reference(*args, **kwargs)

    reference.__name__ = reference.__qualname__ = ex.name
    reference.__doc__ = f"labkit's reference implementation of {ex.name} (handed back while the exercise is not done)."
    reference.labkit_reference_for = ex.name
    return reference


def yours(fn: Callable) -> str:
    """How a notebook line should name an exercise's function: ``"your deletion_auc"``, or, while the check lends
    the reference, ``"the reference deletion_auc (your exercise is not done yet)"`` — so no line claims a
    student's result that is really labkit's."""
    if not callable(fn):
        raise TypeError(f"yours takes the exercise's function, got {type(fn).__name__}")
    name = getattr(fn, "labkit_reference_for", None)
    if name:
        return f"the reference {name} (your exercise is not done yet)"
    return f"your {getattr(fn, '__name__', 'function')}"


def _is_reference(ex: Exercise, student: Callable) -> bool:
    return student is ex.reference or getattr(student, "labkit_reference_for", None) == ex.name


def _run_one(ex: Exercise, student: Callable, i: int) -> Any:
    """Run case ``i`` (1-based) on ``student``; return its output or raise :class:`CheckFailed` saying why."""
    case = ex.cases[i - 1]
    args, kwargs = _copy_args(case)
    rerun = f"check.{ex.name}.run_case({i}, {ex.name})"
    try:
        got = student(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as e:
        raise CheckFailed(
            f"✗ {ex.name} raised {type(e).__name__}: {e}\n  on case {i}/{len(ex.cases)}: {case.description}\n"
            f"  input: {_describe_inputs(case)}\n  re-run this case: {rerun}"
        ) from e
    ref_args, ref_kwargs = _copy_args(case)
    expected = ex.reference(*ref_args, **ref_kwargs)
    problem = _compare(got, expected, ex.rtol, ex.atol)
    if problem is not None:
        hint = _matching_mistake(ex, got, case)
        message = (f"✗ {ex.name}: {problem}\n  on case {i}/{len(ex.cases)}: {case.description}\n"
                   f"  input:    {_describe_inputs(case)}\n  expected: {_abbrev(expected)}\n  returned: {_abbrev(got)}")
        if hint:
            message += f"\n  Hint: {hint}"
        message += f"\n  re-run this case: {rerun}"
        raise CheckFailed(message)
    return got


def run(ex: Exercise, student: Callable, *context) -> Callable:
    """Check ``student`` against ``ex``; see the module docstring for what happens. ``context`` (e.g. the notebook's
    model) goes to a check whose cases are built on first use; it is kept for later ``run_case`` calls."""
    if not callable(student):
        raise TypeError(
            f"check.{ex.name} takes your function itself, e.g. `{ex.name} = check.{ex.name}({ex.name})`, "
            f"not the result of calling it (got a {type(student).__name__})"
        )
    if context:
        if not isinstance(ex.cases, LazyCases):
            raise TypeError(f"check.{ex.name} takes only your function: `{ex.name} = check.{ex.name}({ex.name})`")
        ex.cases.context = context
    strict = os.environ.get(STRICT_ENV, "") not in ("", "0")
    if _is_reference(ex, student):
        message = f"⧗ {ex.name}: still the reference implementation — write your own {ex.name}, then run this check again."
        if strict:
            raise CheckFailed(message)
        print(message)
        return student if getattr(student, "labkit_reference_for", None) == ex.name else _handed_back(ex)
    for i in range(1, len(ex.cases) + 1):
        try:
            _run_one(ex, student, i)
        except NotImplementedError:
            if strict:
                raise CheckFailed(f"⧗ {ex.name}: not done (the exercise still raises NotImplementedError)") from None
            print(
                f"⧗ {ex.name}: not done yet — using the reference implementation so the rest of the notebook runs. "
                "Come back to it!"
            )
            return _handed_back(ex)
    print(f"✓ {ex.name}: all {len(ex.cases)} cases agree with the reference.")
    return student
