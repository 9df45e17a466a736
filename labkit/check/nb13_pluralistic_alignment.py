"""Checks for the exercises of notebook 13 · Diverse preferences and pluralistic alignment."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ._machinery import Case, Exercise

__all__ = ["e_step", "maxmin_grid", "js_distance"]


# -- e_step ----------------------------------------------------------------------------------------


def _e_step_reference(loglik: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """γ[a, u] = η_u exp(ℓ[a, u]) / Σ_v η_v exp(ℓ[a, v])."""
    from labkit.pluralistic import e_step

    return e_step(loglik, eta).to(loglik.dtype)


def _e_step_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    ll = -torch.rand(6, 2, generator=g, dtype=torch.float64) * 5
    return [
        Case("6 annotators, 2 groups, equal shares", (ll, torch.tensor([0.5, 0.5], dtype=torch.float64))),
        Case("6 annotators, 3 groups, unequal shares η = (0.6, 0.3, 0.1)",
             (-torch.rand(6, 3, generator=g, dtype=torch.float64) * 5, torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64))),
        Case("equal log-likelihoods: the answer is η itself",
             (torch.full((3, 2), -4.0, dtype=torch.float64), torch.tensor([0.8, 0.2], dtype=torch.float64))),
        Case("log-likelihoods near −900 (hundreds of labels): exp() underflows to 0",
             (-900 - torch.rand(4, 2, generator=g, dtype=torch.float64) * 3, torch.tensor([0.7, 0.3], dtype=torch.float64))),
    ]


def _e_step_mistakes() -> dict[str, Callable]:
    def no_prior(ll, eta):
        return torch.softmax(ll, -1)

    def wrong_axis(ll, eta):
        return torch.softmax(ll + torch.log(eta), 0)

    def naive(ll, eta):
        w = eta * torch.exp(ll)
        return w / w.sum(-1, keepdim=True)

    def hard(ll, eta):
        return torch.nn.functional.one_hot((ll + torch.log(eta)).argmax(-1), ll.shape[-1]).to(ll.dtype)

    def unnormalised(ll, eta):
        return eta * torch.exp(ll)

    return {
        "the shares η are missing: γ ∝ η_u · exp(ℓ_u), i.e. add log η before normalising.": no_prior,
        "normalise over groups (the last axis, dim=-1), not over annotators.": wrong_axis,
        "exp(ℓ) underflows for large negative log-likelihoods (0/0 = NaN): normalise in log space, e.g. "
        "torch.softmax(loglik + torch.log(eta), dim=-1).": naive,
        "this is hard EM's one-hot assignment; the E-step returns soft responsibilities (probabilities).": hard,
        "the responsibilities must sum to 1 over groups: divide by Σ_v η_v exp(ℓ_v).": unnormalised,
    }


e_step = Exercise("e_step", _e_step_reference, _e_step_cases(), _e_step_mistakes())
e_step.__doc__ = "Check an ``e_step(loglik, eta)`` function: EM responsibilities over groups."


# -- maxmin_grid -----------------------------------------------------------------------------------


def _maxmin_grid_reference(rewards, ref, beta, n_grid=101):
    """Best tilted policy π_λ ∝ ref · exp((λ r0 + (1−λ) r1)/β) for min_u E[r_u] − β KL, λ on a grid."""
    from labkit.pluralistic import maxmin_grid

    return maxmin_grid(rewards, ref, beta, n_grid)


def _maxmin_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    R = torch.randn(2, 12, generator=g, dtype=torch.float64) * 2
    ref = torch.softmax(torch.randn(12, generator=g, dtype=torch.float64), 0)
    R2 = torch.stack([torch.linspace(-1, 1, 8, dtype=torch.float64), torch.linspace(1, -1, 8, dtype=torch.float64)]) * 3
    return [
        Case("2 groups, 12 candidates, β = 1", (R, ref, 1.0)),
        Case("the same with β = 0.2 (a weak leash)", (R, ref, 0.2)),
        Case("opposed rewards, uniform reference, β = 0.5, 51 grid points",
             (R2, torch.full((8,), 1 / 8, dtype=torch.float64), 0.5), {"n_grid": 51}),
        Case("one group's reward dominates the other: the optimum is at an end of the grid",
             (torch.stack([R[0], R[0] + 5]), ref, 1.0)),
    ]


def _maxmin_mistakes() -> dict[str, Callable]:
    from labkit.pluralistic import kl, tilted_policy

    def pis(R, ref, beta, n_grid):
        lams = torch.linspace(0, 1, n_grid, dtype=torch.float64)[:, None]
        return tilted_policy(ref, lams * R[0] + (1 - lams) * R[1], beta)

    def no_kl(R, ref, beta, n_grid=101):
        P = pis(R, ref, beta, n_grid)
        return P[(P @ R.T).min(-1).values.argmax()]

    def optimistic(R, ref, beta, n_grid=101):
        P = pis(R, ref, beta, n_grid)
        return P[((P @ R.T).max(-1).values - beta * kl(P, ref)).argmax()]

    def average(R, ref, beta, n_grid=101):
        P = pis(R, ref, beta, n_grid)
        return P[((P @ R.T).mean(-1) - beta * kl(P, ref)).argmax()]

    def times_beta(R, ref, beta, n_grid=101):
        lams = torch.linspace(0, 1, n_grid, dtype=torch.float64)[:, None]
        P = torch.softmax(torch.log(ref) + (lams * R[0] + (1 - lams) * R[1]) * beta, -1)
        return P[((P @ R.T).min(-1).values - beta * kl(P, ref)).argmax()]

    def argmin(R, ref, beta, n_grid=101):
        P = pis(R, ref, beta, n_grid)
        return P[((P @ R.T).min(-1).values - beta * kl(P, ref)).argmin()]

    return {
        "the KL penalty is missing: the objective is min_u E[r_u] − β·KL(π ‖ π_ref).": no_kl,
        "use the WORST group (min over groups), not the best (max).": optimistic,
        "this maximises the average over groups (the utilitarian objective), not the minimum.": average,
        "divide the rewards by β in the tilted policy (π ∝ π_ref exp(r/β)), do not multiply.": times_beta,
        "return the policy with the LARGEST objective (argmax), not the smallest.": argmin,
    }


maxmin_grid = Exercise("maxmin_grid", _maxmin_grid_reference, _maxmin_cases(), _maxmin_mistakes())
maxmin_grid.__doc__ = "Check a ``maxmin_grid(rewards, ref, beta, n_grid)`` function: the max-min solve by search."


# -- js_distance -----------------------------------------------------------------------------------


def _js_reference(p, q):
    """√(½ KL(p‖m) + ½ KL(q‖m)), m = (p+q)/2, base-2 logs."""
    from labkit.pluralistic import js_distance

    return js_distance(p, q).to(p.dtype)


def _js_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    P = torch.softmax(torch.randn(4, 5, generator=g, dtype=torch.float64), -1)
    Q = torch.softmax(torch.randn(4, 5, generator=g, dtype=torch.float64), -1)
    return [
        Case("two distributions over 3 answers", (torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64),
                                                  torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64))),
        Case("a batch of 4 pairs over 5 answers", (P, Q)),
        Case("identical distributions: distance 0", (P[0], P[0].clone())),
        Case("an answer neither distribution uses (a zero in both)",
             (torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64), torch.tensor([0.2, 0.0, 0.8], dtype=torch.float64))),
        Case("disjoint supports (zeros!): distance 1 in base 2",
             (torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64))),
    ]


def _js_mistakes() -> dict[str, Callable]:
    def natural_log(p, q):
        return _js_reference(p, q) * math.sqrt(math.log(2))

    def divergence(p, q):
        return _js_reference(p, q) ** 2

    def kl_pq(p, q):
        return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum(-1) / math.log(2)

    def naive(p, q):
        m = (p + q) / 2
        return (((p * torch.log2(p / m)).sum(-1) + (q * torch.log2(q / m)).sum(-1)) / 2).sqrt()

    def no_half(p, q):
        return _js_reference(p, q) * math.sqrt(2)

    return {
        "use base-2 logarithms (divide the divergence by log 2) so the distance lies in [0, 1].": natural_log,
        "return the distance, the SQUARE ROOT of the Jensen-Shannon divergence.": divergence,
        "this is KL(p ‖ q); JS compares both distributions to their mixture m = (p + q)/2.": kl_pq,
        "0 · log 0 gives NaN where a distribution has zeros: count those terms as 0 (torch.special.xlogy).": naive,
        "JSD is the AVERAGE of the two KL terms: ½ KL(p ‖ m) + ½ KL(q ‖ m).": no_half,
    }


js_distance = Exercise("js_distance", _js_reference, _js_cases(), _js_mistakes())
js_distance.__doc__ = "Check a ``js_distance(p, q)`` function: the Jensen-Shannon distance in base 2."
