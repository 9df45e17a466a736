"""Checks for the exercises of notebook 13 · Diverse preferences and pluralistic alignment."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ._machinery import Case, Exercise

__all__ = ["e_step", "maxmin_grid", "js_distance", "em_groups"]


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


# -- em_groups -------------------------------------------------------------------------------------


def _em_reference(features, pairs, labels, annotator, init, n_iter, history=None):
    """labkit's EM (soft, per annotator) from the given responsibilities; the rewards of the last M-step."""
    from labkit.pluralistic import em_rewards

    em = em_rewards(features, pairs, labels, annotator, k=init.shape[1], n_iter=n_iter, init=init)
    if history is not None:
        history.extend(em.loglik)
    return em.weights


def _dirichlet(a: int, k: int, seed: int) -> torch.Tensor:
    r = -torch.log(torch.rand(a, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return r / r.sum(-1, keepdim=True)


def _em_cases() -> list[Case]:
    from labkit.pluralistic import simulate_preferences

    def problem(**kw):
        d = simulate_preferences(**kw)
        return d["features"], d["pairs"], d["labels"], d["annotator"], len(d["groups"])

    # notebook 13's planted mixture: 40 + 10 annotators, 40 labels each, cosine −0.2
    X, P, y, ann, A = problem(n_responses=40, dim=6, group_sizes=(40, 10), comparisons_per_annotator=40,
                              cosine=-0.2, scale=3.0, seed=0)
    X2, P2, y2, ann2, A2 = problem(n_responses=20, dim=4, group_sizes=(12, 6), comparisons_per_annotator=3,
                                   cosine=-0.5, scale=2.0, seed=1)
    X3, P3, y3, ann3, A3 = problem(n_responses=16, dim=3, group_sizes=(8, 6, 4), comparisons_per_annotator=6,
                                   cosine=0.0, scale=3.0, seed=2)
    return [
        Case("the notebook's planted mixture (2,000 labels by 50 annotators), random start, 3 iterations",
             (X, P, y, ann, _dirichlet(A, 2, 0), 3)),
        Case("few labels per annotator (3 each): the shares η matter, 4 iterations",
             (X2, P2, y2, ann2, _dirichlet(A2, 2, 1), 4)),
        Case("three groups, 2 iterations", (X3, P3, y3, ann3, _dirichlet(A3, 3, 2), 2)),
        Case("one group (k = 1): a single Bradley-Terry fit", (X2, P2, y2, ann2, torch.ones(A2, 1, dtype=torch.float64), 1)),
    ]


def _em_mistakes() -> dict[str, Callable]:
    from labkit.pluralistic import e_step, fit_bt, pair_loglik

    def run(X, P, y, ann, resp, n_iter, weighted=True, pooled=True, prior=True, update_eta=True):
        A, K = resp.shape
        eta = resp.mean(0)
        per_comparison = False  # after an unpooled E-step, resp has one row per comparison
        for _ in range(n_iter):
            if update_eta:
                eta = resp.mean(0)
            gamma = resp if per_comparison else resp[ann]
            W = torch.stack([fit_bt(X, P, y, sample_weight=gamma[:, u] + 1e-9) if weighted else fit_bt(X, P, y)
                             for u in range(K)])
            ll = pair_loglik(W, X, P, y)
            if pooled:
                ll = torch.zeros(A, K, dtype=torch.float64).index_add_(0, ann, ll)
            else:
                per_comparison = True
            resp = e_step(ll, eta) if prior else torch.softmax(ll, -1)
        return W

    return {
        "the M-step must weight each comparison by its annotator's responsibility γ_{a,u} "
        "(fit_bt(..., sample_weight=γ[annotator, u])); unweighted, every group learns the same reward.":
            lambda *a: run(*a, weighted=False),
        "pool each annotator's labels: ℓ_{a,u} is the SUM of log σ(·) over a's comparisons "
        "(index_add over annotator), not one responsibility per comparison.":
            lambda *a: run(*a, pooled=False),
        "the E-step needs the shares: γ ∝ η_u exp(ℓ_{a,u}) (use your e_step(loglik, eta)).":
            lambda *a: run(*a, prior=False),
        "update the shares in every M-step: η_u = mean over annotators of γ_{a,u}.":
            lambda *a: run(*a, update_eta=False),
    }


em_groups = Exercise("em_groups", _em_reference, _em_cases, _em_mistakes(), rtol=1e-3, atol=1e-4)
em_groups.__doc__ = ("Check ``em_groups(features, pairs, labels, annotator, init, n_iter, history=None)``: EM over "
                     "annotator groups, returning the rewards of the last M-step.")
