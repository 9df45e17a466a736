"""Checks for the exercises of notebook 11 · Reward models and RLHF."""

from __future__ import annotations

from typing import Callable

import torch

from ._machinery import Case, Exercise

__all__ = ["bt_loss", "kl_regularised_policy"]


def _bt_reference(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    from labkit.preference import bt_loss

    return bt_loss(r_chosen, r_rejected)


def _bt_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    return [
        Case("8 pairs of random rewards", (torch.randn(8, generator=g), torch.randn(8, generator=g))),
        Case("equal rewards: the loss is log 2", (torch.zeros(4), torch.zeros(4))),
        Case("one pair", (torch.tensor([2.0]), torch.tensor([-1.0]))),
        Case("a margin of −200 (log(sigmoid(·)) underflows to −inf; the loss must be 200)",
             (torch.tensor([-100.0, 0.5]), torch.tensor([100.0, 0.0]))),
        Case("rewards with a batch of 2 × 3 pairs", (torch.randn(2, 3, generator=g) * 3, torch.randn(2, 3, generator=g))),
    ]


def _bt_mistakes() -> dict[str, Callable]:
    F = torch.nn.functional
    return {
        "chosen and rejected are swapped: the loss is −log σ(r_chosen − r_rejected), chosen first.":
            lambda c, r: -F.logsigmoid(r - c).mean(),
        "the minus sign is missing: the loss is −log σ(Δ), a number ≥ 0.": lambda c, r: F.logsigmoid(c - r).mean(),
        "average over pairs (mean), do not sum.": lambda c, r: -F.logsigmoid(c - r).sum(),
        "take the log of the probability: the loss is −log σ(Δ), not −σ(Δ) or 1 − σ(Δ).":
            lambda c, r: (1 - torch.sigmoid(c - r)).mean(),
        "torch.log(torch.sigmoid(Δ)) underflows to −inf for large negative margins: use "
        "torch.nn.functional.logsigmoid.": lambda c, r: -torch.log(torch.sigmoid(c - r)).mean(),
    }


def _policy_reference(ref_logprobs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    from labkit.preference import kl_regularised_policy

    return kl_regularised_policy(ref_logprobs, rewards, beta)


def _policy_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    ref = torch.log_softmax(torch.randn(3, 6, generator=g), -1)
    r = torch.randn(3, 6, generator=g)
    return [
        Case("3 prompts × 6 candidates, β = 0.5", (ref, r, 0.5)),
        Case("β = 100: the policy stays close to π_ref", (ref, r, 100.0)),
        Case("β = 0.01 with rewards up to ±300 (exp(R/β) overflows unless you use softmax)",
             (ref, r * 100, 0.01)),
        Case("one prompt, 4 candidates, uniform reference", (torch.full((4,), -1.3862944), torch.tensor([0.0, 1.0, 2.0, 0.5]), 1.0)),
        Case("log π_ref not normalised over the candidates (they are a subset of all responses)", (ref - 5.0, r, 2.0)),
    ]


def _policy_mistakes() -> dict[str, Callable]:
    return {
        "divide the reward by β (exp(R/β)); multiplying by β inverts the strength of the KL penalty.":
            lambda lp, r, b: torch.softmax(lp + r * b, -1),
        "π* is π_ref reweighted: include log π_ref (π* ∝ π_ref · exp(R/β)), not just softmax(R/β).":
            lambda lp, r, b: torch.softmax(r / b, -1),
        "normalise over the candidates (divide by Z(x) = Σ_y π_ref(y) exp(R(y)/β)).":
            lambda lp, r, b: lp.exp() * torch.exp(r / b),
        "add log π_ref, not π_ref itself: π_ref · exp(R/β) = exp(log π_ref + R/β).":
            lambda lp, r, b: torch.softmax(lp.exp() + r / b, -1),
        "normalise over the candidates, the last axis (dim=-1), not over prompts.":
            lambda lp, r, b: torch.softmax(lp + r / b, 0),
        "exp(R/β) overflows for small β: compute softmax(log π_ref + R/β) instead of exponentiating first.":
            lambda lp, r, b: (lambda w: w / w.sum(-1, keepdim=True))(lp.exp() * torch.exp(r / b)),
    }


bt_loss = Exercise("bt_loss", _bt_reference, _bt_cases(), _bt_mistakes())
bt_loss.__doc__ = "Check ``bt_loss(r_chosen, r_rejected)``: −mean log σ(r_chosen − r_rejected)."
kl_regularised_policy = Exercise("kl_regularised_policy", _policy_reference, _policy_cases(), _policy_mistakes())
kl_regularised_policy.__doc__ = "Check ``kl_regularised_policy(ref_logprobs, rewards, beta)``: softmax(log π_ref + R/β) over the last axis."
