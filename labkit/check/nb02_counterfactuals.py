"""Checks for the exercises of notebook 02 · Counterfactual explanations and recourse."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ._machinery import Case, Exercise

__all__ = ["step_bounds", "greedy_edits"]


# ------------------------------------------------------------------------------------ recourse constraints


def _step_bounds_reference(x, lower, upper, step, mutable, direction):
    from labkit import counterfactual

    return counterfactual.step_bounds(x, lower, upper, step, mutable, direction)


def _t(*v):
    return torch.tensor(v, dtype=torch.float64)


def _step_bounds_cases() -> list[Case]:
    return [
        Case("six features: free, free, immutable, free, immutable, only-increase",
             (_t(42, 18, 2, 7, 35, 1), _t(10, 0, 0, 0, 18, 0), _t(200, 100, 20, 100, 90, 4), _t(5, 1, 1, 1, 1, 1),
              torch.tensor([True, True, False, True, False, True]), torch.tensor([0, 0, 0, 0, 0, 1]))),
        Case("values off the step grid (42 with steps of 5: round inwards, never leave the bounds)",
             (_t(42, 3.5), _t(10, 0), _t(200, 10), _t(5, 2), torch.tensor([True, True]), torch.tensor([0, 0]))),
        Case("an only-decrease feature and an only-increase feature already at its upper bound",
             (_t(30, 4), _t(0, 0), _t(100, 4), _t(1, 1), torch.tensor([True, True]), torch.tensor([-1, 1]))),
    ]


def _step_bounds_mistakes() -> dict[str, Callable]:
    from labkit import counterfactual as cf

    def no_immutable(x, lo, up, st, mut, dirn):
        return cf.step_bounds(x, lo, up, st, torch.ones_like(mut), dirn)

    def no_direction(x, lo, up, st, mut, dirn):
        return cf.step_bounds(x, lo, up, st, mut, torch.zeros_like(dirn))

    def swapped(x, lo, up, st, mut, dirn):
        return cf.step_bounds(x, lo, up, st, mut, -dirn)

    def rounded(x, lo, up, st, mut, dirn):
        b = torch.stack([torch.round((lo - x) / st), torch.round((up - x) / st)])
        b[0] = torch.where(dirn > 0, b[0].clamp_min(0), b[0])
        b[1] = torch.where(dirn < 0, b[1].clamp_max(0), b[1])
        return torch.where(mut, b, torch.zeros_like(b))

    def floor_both(x, lo, up, st, mut, dirn):
        b = torch.stack([torch.floor((lo - x) / st), torch.floor((up - x) / st)])
        b[0] = torch.where(dirn > 0, b[0].clamp_min(0), b[0])
        b[1] = torch.where(dirn < 0, b[1].clamp_max(0), b[1])
        return torch.where(mut, b, torch.zeros_like(b))

    return {
        "an immutable feature (mutable = False) allows no step at all: set k_lo = k_hi = 0.": no_immutable,
        "monotone features: direction +1 means only increase (k_lo ≥ 0), −1 only decrease (k_hi ≤ 0).": no_direction,
        "the directions are swapped: +1 (only increase) must clamp k_lo at 0, −1 must clamp k_hi at 0.": swapped,
        "round inwards so x + k·step stays within the bounds: k_lo = ceil((lower − x)/step), "
        "k_hi = floor((upper − x)/step); round() can step outside.": rounded,
        "the lower end must be rounded up (ceil), or x + k_lo·step falls below the lower bound.": floor_both,
    }


step_bounds = Exercise("step_bounds", _step_bounds_reference, _step_bounds_cases(), _step_bounds_mistakes())
step_bounds.__doc__ = "Check ``step_bounds(x, lower, upper, step, mutable, direction)``: the actionable integer steps."


# ------------------------------------------------------------------------------------- greedy minimum edit


def _greedy_reference(g, fq, fd, target, max_edits):
    from labkit.counterfactual import greedy_cell_swaps

    with torch.no_grad():
        return greedy_cell_swaps(g, fq, fd, int(target), max_edits)[0]


def _head(C, n, classes, seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(C * n, classes))


def _greedy_cases() -> list[Case]:
    cases = []
    specs = [(0, 100, 3, 2, 2, 3, 4), (1, 101, 4, 3, 3, 4, 9), (2, 102, 2, 3, 3, 5, 9), (3, 103, 3, 2, 3, 3, 2),
             (22, 1022, 1, 2, 2, 3, 4), (34, 1034, 2, 2, 2, 4, 4)]  # the last two need more than one pass per cell
    for seed, gen_seed, C, h, w, classes, k in specs:
        g = _head(C, h * w, classes, seed)
        gen = torch.Generator().manual_seed(gen_seed)
        fq = torch.randn(C, h, w, generator=gen)
        fd = torch.randn(C, h, w, generator=gen) * 2
        with torch.no_grad():
            current = int(g(fq[None]).argmax())
            target = int(g(fd[None]).argmax())
        if target == current:
            target = (current + 1) % classes
        cases.append(Case(f"{C} channels on a {h}×{w} grid, {classes} classes, at most {k} edits", (g, fq, fd, target, k)))
    return cases


def _greedy_variant(g, fq, fd, target, max_edits, score="logp", reuse_d=False, reuse_q=False, never_stop=False):
    C, h, w = fq.shape
    n = h * w
    cur, src = fq.reshape(C, n).clone(), fd.reshape(C, n)
    used_q, used_d, edits = set(), set(), []
    with torch.no_grad():
        while len(edits) < max_edits and (never_stop or int(g(cur.reshape(1, C, h, w)).argmax()) != target):
            pairs = [(i, j) for i in range(n) if reuse_q or i not in used_q for j in range(n) if reuse_d or j not in used_d]
            if not pairs:
                break
            cand = cur[None].repeat(len(pairs), 1, 1)
            for r, (i, j) in enumerate(pairs):
                cand[r, :, i] = src[:, j]
            out = g(cand.reshape(-1, C, h, w))
            s = out[:, target] if score == "logit" else torch.log_softmax(out, -1)[:, target]
            i, j = pairs[int(s.argmax())]
            cur[:, i] = src[:, j]
            used_q.add(i); used_d.add(j); edits.append((i, j))
    return torch.tensor(edits, dtype=torch.long).reshape(-1, 2)


def _greedy_mistakes() -> dict[str, Callable]:
    return {
        "stop as soon as the class flips to the target: check argmax before every new edit.":
            lambda *a: _greedy_variant(*a, never_stop=True),
        "each distractor cell may be used once (P is a permutation): remove used distractor cells from the candidates.":
            lambda *a: _greedy_variant(*a, reuse_d=True),
        "each query cell is replaced at most once (a is a 0/1 gate): remove edited query cells from the candidates.":
            lambda *a: _greedy_variant(*a, reuse_q=True),
        "rank candidate edits by log p(target) (log-softmax), not by the raw target logit: a logit can rise while "
        "the other classes rise more.": lambda *a: _greedy_variant(*a, score="logit"),
    }


greedy_edits = Exercise("greedy_edits", _greedy_reference, _greedy_cases(), _greedy_mistakes())
greedy_edits.__doc__ = "Check ``greedy_edits(g, fq, fd, target, max_edits)``: the greedy minimum-edit cell swaps."
