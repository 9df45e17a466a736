"""Checks for the exercises of notebook 03 · Concepts: concept bottleneck models and TCAV."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ._machinery import Case, Exercise

__all__ = ["conceptual_sensitivity", "intervene", "tcav_significance"]


# -- the CAV and the directional derivative ----------------------------------------------------------


def _sensitivity_reference(grads: torch.Tensor, acts_concept: torch.Tensor, acts_random: torch.Tensor) -> torch.Tensor:
    """S(x) = ∇h·v for each row of grads, v = unit normal of LogisticRegression(C=0.01) (concept = 1)."""
    from labkit.concepts import cav, directional_derivatives

    return directional_derivatives(grads, cav(acts_concept, acts_random))


def _sensitivity_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    d = 6
    direction = torch.tensor([1.0, -1.0, 0.5, 0.0, 0.0, 2.0])
    concept = torch.randn(30, d, generator=g) + direction
    random = torch.randn(40, d, generator=g)
    grads = torch.randn(8, d, generator=g)
    big = torch.randn(25, 3, generator=g) * 5 + torch.tensor([4.0, 0.0, 0.0])
    return [
        Case("30 concept vs 40 random activations (6 dims), 8 gradients", (grads, concept, random)),
        Case("the same with the activations scaled by 5 (the CAV is a unit vector)", (grads, concept * 5, random * 5)),
        Case("3-dimensional activations, a single gradient", (torch.tensor([[1.0, 2.0, -1.0]]), big, torch.randn(25, 3, generator=g) * 5)),
    ]


def _sensitivity_mistakes() -> dict[str, Callable]:
    from sklearn.linear_model import LogisticRegression

    def fit(a, r, C=0.01, swap=False):
        Z = torch.cat([a, r]).double().numpy()
        lab = np.r_[np.ones(len(a)), np.zeros(len(r))]
        if swap:
            lab = 1 - lab
        return torch.tensor(LogisticRegression(C=C, max_iter=2000).fit(Z, lab).coef_[0], dtype=a.dtype)

    def swapped(grads, a, r):
        v = fit(a, r, swap=True)
        return grads @ (v / v.norm())

    def unnormalised(grads, a, r):
        return grads @ fit(a, r)

    def default_c(grads, a, r):
        v = fit(a, r, C=1.0)
        return grads @ (v / v.norm())

    def mean_diff(grads, a, r):
        v = a.mean(0) - r.mean(0)
        return grads @ (v / v.norm())

    return {
        "the CAV points the wrong way: label the concept examples 1 and the random ones 0, so v points towards the concept.": swapped,
        "normalise the CAV to unit length (v / ‖v‖) before the dot product.": unnormalised,
        "use LogisticRegression(C=0.01, max_iter=2000) as asked; the default C=1.0 regularises less and gives another normal.": default_c,
        "this is the difference of the class means; the CAV is the normal of the fitted linear classifier (coef_).": mean_diff,
    }


conceptual_sensitivity = Exercise("conceptual_sensitivity", _sensitivity_reference, _sensitivity_cases(),
                                  _sensitivity_mistakes(), rtol=1e-3, atol=1e-5)
conceptual_sensitivity.__doc__ = "Check ``conceptual_sensitivity(grads, acts_concept, acts_random)``: S = ∇h·v_C."


# -- test-time intervention ----------------------------------------------------------------------------


def _intervene_reference(concept_probs: torch.Tensor, true_concepts: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    from labkit.concepts import intervene

    return intervene(concept_probs, true_concepts, mask)


def _intervene_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(5, 4, generator=g)
    true = (torch.rand(5, 4, generator=g) > 0.5).float()
    mask = torch.rand(5, 4, generator=g) > 0.5
    return [
        Case("a per-input mask [5, 4]", (probs, true, mask)),
        Case("one mask [4] for every input (broadcast)", (probs, true, torch.tensor([True, False, False, True]))),
        Case("nothing to correct (all False)", (probs, true, torch.zeros(5, 4, dtype=torch.bool))),
        Case("correct everything (all True)", (probs, true, torch.ones(5, 4, dtype=torch.bool))),
    ]


def _intervene_mistakes() -> dict[str, Callable]:
    def inverted(p, t, m):
        return torch.where(torch.as_tensor(m).expand_as(p), p, t)

    def ones(p, t, m):
        return torch.where(torch.as_tensor(m).expand_as(p), torch.ones_like(p), p)

    def rounded(p, t, m):
        return torch.where(torch.as_tensor(m).expand_as(p), t, (p > 0.5).float())

    return {
        "the mask is inverted: replace the entries where mask is True by the true concepts, keep the others.": inverted,
        "set the corrected concepts to their TRUE values (0 or 1), not always to 1.": ones,
        "leave the concepts you do not correct as predicted probabilities; do not round them.": rounded,
    }


intervene = Exercise("intervene", _intervene_reference, _intervene_cases(), _intervene_mistakes())
intervene.__doc__ = "Check ``intervene(concept_probs, true_concepts, mask)``: test-time intervention."


# -- the TCAV score with the random-concept significance test -------------------------------------------


def _tcav_reference(grads, acts_concept, acts_random):
    """[mean TCAV score over [C, R_i], mean null score over [R_{i−1}, R_i], Welch two-sided p-value]."""
    from labkit.concepts import tcav_test

    r = tcav_test(grads, acts_concept, list(acts_random))
    return torch.tensor([r["mean"], float(np.mean(r["null"])), r["p_value"]], dtype=torch.float64)


def _tcav_cases() -> list[Case]:
    from labkit import concepts

    train = concepts.planted_concepts(2000, noise=0.5, seed=0, device="cpu")
    test = concepts.planted_concepts(400, noise=0.5, seed=1, device="cpu")
    model = concepts.train_blackbox(train["X"], train["y"], seed=0).double()
    layer2 = lambda x: model.layer2(model.layer1(x.double())).detach()  # noqa: E731
    h = layer2(test["X"][test["y"] == 1][:80]).requires_grad_(True)
    grads = torch.autograd.grad(torch.log_softmax(model.out(h), -1)[:, 1].sum(), h)[0]
    names = concepts.CONCEPT_NAMES
    concept = lambda j: layer2(concepts.planted_concepts(60, noise=0.5, seed=10 + j, force={j: 1})["X"])  # noqa: E731
    randoms = [layer2(concepts.planted_concepts(60, noise=0.5, seed=100 + i)["X"]) for i in range(7)]
    g = torch.Generator().manual_seed(6)
    d = 5
    rand = [torch.randn(30, d, generator=g, dtype=torch.float64) for _ in range(5)]
    return [
        Case(f"the notebook's network (float64), 80 class-1 inputs, concept '{names[5]}', 6 random counterparts",
             (grads, concept(5), randoms)),
        Case(f"the same, concept '{names[0]}' (every score 1)", (grads, concept(0), randoms[:4])),
        Case("random gradients [40, 5] (scores are fractions), a shifted Gaussian concept, 4 random counterparts",
             (torch.randn(40, d, generator=g, dtype=torch.float64),
              torch.randn(30, d, generator=g, dtype=torch.float64) + torch.tensor([1.0, -1.0, 0.5, 0.0, 0.0]),
              rand)),
    ]


def _tcav_wrong(grads, acts_concept, acts_random, null_from_r0=False, welch=True, mean_s=False,
                same_random=False):
    from scipy.stats import ttest_ind

    from labkit.concepts import cav

    def score(a, r):
        s = grads @ cav(a, r).to(grads.dtype)
        return float(s.mean()) if mean_s else float((s > 0).double().mean())

    m = len(acts_random) - 1
    scores = [score(acts_concept, acts_random[0 if same_random else i]) for i in range(1, m + 1)]
    null = [score(acts_random[0 if null_from_r0 else i - 1], acts_random[i]) for i in range(1, m + 1)]
    p = float(ttest_ind(scores, null, equal_var=not welch).pvalue)
    if np.isnan(p):
        p = 0.0 if np.mean(scores) != np.mean(null) else 1.0
    return torch.tensor([np.mean(scores), np.mean(null), p], dtype=torch.float64)


def _tcav_mistakes() -> dict[str, Callable]:
    return {
        "the null pairs consecutive random sets [R_{i−1}, R_i]; pairing every R_i with R₀ lets one random set's "
        "quirks enter every null experiment.": lambda g, a, r: _tcav_wrong(g, a, r, null_from_r0=True),
        "use Welch's t-test (scipy.stats.ttest_ind(..., equal_var=False)): the concept's and the null's scores need "
        "not have the same variance.": lambda g, a, r: _tcav_wrong(g, a, r, welch=False),
        "the TCAV score is the fraction of inputs with S > 0, not the mean of S.":
            lambda g, a, r: _tcav_wrong(g, a, r, mean_s=True),
        "fit each concept CAV against a different random set R_i (i = 1…m): m experiments, not one repeated m times.":
            lambda g, a, r: _tcav_wrong(g, a, r, same_random=True),
    }


tcav_significance = Exercise("tcav_significance", _tcav_reference, _tcav_cases, _tcav_mistakes(), rtol=1e-6,
                             atol=1e-9)
tcav_significance.__doc__ = ("Check ``tcav_significance(grads, acts_concept, acts_random)``: TCAV scores against "
                             "random counterparts and Welch's t-test.")
