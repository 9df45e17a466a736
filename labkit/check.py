"""Checks that follow every exercise.

Each exercise asks the student to write a function; the cell after it hands that function to a check::

    entropy = check.entropy(entropy)

The check runs the student's function on several cases (edge cases included) and compares it with the
reference implementation:

* all cases agree → it prints one line starting with ``✓`` and returns the student's function;
* a case disagrees → it raises :class:`CheckFailed` with a hint. Hints come from *known mistakes*:
  each check carries small wrong implementations (a missing minus sign, log base 2, the wrong axis …);
  when the student's output matches one of them, the hint names that mistake;
* the function still raises ``NotImplementedError`` (the exercise is not done yet) → it says so and
  returns the reference implementation, so the rest of the notebook runs.

Adding a check for a new exercise means writing its reference, its cases and its known mistakes, and
one test that the check passes the reference and catches every known mistake (``tests/test_check.py``).
"""

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


# ==================================================================================================
# Notebook 00 · warm-up: the entropy of a next-token distribution


def _entropy_reference(logits: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ_v p_v log p_v (nats), p = softmax(logits) over the last axis; 0·log 0 counts as 0."""
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    return -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(dim=-1)


def _entropy_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    vocab = 50
    masked = torch.randn(3, vocab, generator=g)
    masked[:, 10:] = float("-inf")  # tokens the model rules out entirely
    return [
        Case("a batch of 4 random logit vectors over 50 tokens", (torch.randn(4, vocab, generator=g),)),
        Case("a single logit vector (no batch axis)", (torch.randn(vocab, generator=g) * 3,)),
        Case("uniform logits: the answer is log(50)", (torch.zeros(2, vocab),)),
        Case("logits near +1000 (a naive exp() overflows)", (torch.randn(2, vocab, generator=g) + 1000,)),
        Case("logits of −inf for tokens that are ruled out (0·log 0 must count as 0)", (masked,)),
    ]


def _entropy_mistakes() -> dict[str, Callable]:
    def bits(logits):
        return _entropy_reference(logits) / math.log(2)

    def sign(logits):
        return -_entropy_reference(logits)

    def no_softmax(logits):
        return -(logits * torch.log(logits.abs() + 1e-12)).sum(-1)

    def first_axis(logits):
        if logits.dim() < 2:
            raise ValueError
        logp = torch.log_softmax(logits, dim=0)
        return -(logp.exp() * logp).sum(dim=-1)

    def naive(logits):
        p = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
        return -(p * torch.log(p)).sum(-1)

    def naive_stable(logits):
        p = torch.softmax(logits, -1)
        return -(p * torch.log(p)).sum(-1)

    # order matters: the first known mistake that reproduces the student's output names the hint
    return {
        "this is the entropy in bits (log base 2); the course measures entropy in nats: use the natural log.": bits,
        "the sign is flipped: H = −Σ p log p is never negative.": sign,
        "turn logits into probabilities first (softmax over the last axis).": no_softmax,
        "0 · log 0 gives NaN for ruled-out tokens (p = 0): count those terms as 0, e.g. with torch.where or "
        "torch.special.xlogy, or compute with log_softmax.": naive_stable,
        "exp(logits) overflows for large logits: use torch.softmax / torch.log_softmax, which subtract the "
        "maximum first.": naive,
        "normalise over the vocabulary, the last axis (dim=-1), not the batch axis.": first_axis,
    }


entropy = Exercise("entropy", _entropy_reference, _entropy_cases(), _entropy_mistakes())
entropy.__doc__ = "Check an ``entropy(logits)`` function: H = −Σ p log p in nats over the last axis."
