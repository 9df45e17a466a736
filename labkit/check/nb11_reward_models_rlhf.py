"""Checks for the exercises of notebook 11 · Reward models and RLHF."""

from __future__ import annotations

from typing import Callable

import torch

from ._machinery import Case, Exercise

__all__ = ["bt_loss", "reward_model_step", "kl_regularised_policy", "rloo_advantages"]


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


def _step_reference(w, feat_chosen, feat_rejected, lr, l2=0.0):
    from labkit.preference import reward_model_step

    return reward_model_step(w, feat_chosen, feat_rejected, lr, l2)


def _step_cases() -> list[Case]:
    """Built on first use: the notebook's 672 training pairs need the sentence embedder."""
    from labkit import preference

    data = preference.load_preference_data()
    responses, pairs = data["responses"], data["pairs"]
    phi = preference.embed_responses([r["response"] for r in responses]).double()
    prompt_of = torch.tensor([r["prompt_id"] for r in responses])
    ia = torch.tensor([p["chosen_index"] for p in pairs])
    ib = torch.tensor([p["rejected_index"] for p in pairs])
    train = prompt_of[ia] < 24
    fc, fr = phi[ia[train]], phi[ib[train]]
    g = torch.Generator().manual_seed(3)
    w_real = torch.randn(phi.shape[1], generator=g, dtype=torch.float64)
    small_c, small_r = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    return [
        Case("the notebook's 672 training pairs (all-MiniLM features [672, 384]), a random w, lr = 20, l2 = 1e-3",
             (w_real, fc, fr, 20.0), {"l2": 1e-3}),
        Case("5 pairs × 3 features, w = 0 (every pair a coin flip), lr = 1, l2 = 0.1",
             (torch.zeros(3, dtype=torch.float64), small_c, small_r, 1.0), {"l2": 0.1}),
        Case("one pair, w = (1, −2), lr = 0.5, no penalty",
             (torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([[1.0, 0.0]], dtype=torch.float64),
              torch.tensor([[0.0, 1.0]], dtype=torch.float64), 0.5)),
        Case("margins of ±40 (σ saturates; log(sigmoid(·)) would give inf/NaN), lr = 0.1, l2 = 0.01",
             (torch.tensor([20.0, -20.0], dtype=torch.float64), torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64),
              torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64), 0.1), {"l2": 0.01}),
    ]


def _grad(w, fc, fr, l2, loss="bt", reduce="mean", penalty=2.0):
    d = fc - fr
    m = d @ w
    if loss == "bt":
        coef = torch.sigmoid(-m)                       # −∂/∂m log σ(m) = 1 − σ(m)
    else:                                              # loss −σ(m): −∂/∂m σ(m) = −σ(m)(1 − σ(m))
        coef = torch.sigmoid(m) * torch.sigmoid(-m)
    g = -(coef[:, None] * d)
    g = g.mean(0) if reduce == "mean" else g.sum(0)
    return g + penalty * l2 * w


def _step_mistakes() -> dict[str, Callable]:
    return {
        "step downhill: w_new = w − lr · ∇L(w); adding the gradient climbs the loss (gradient ascent).":
            lambda w, c, r, lr, l2=0.0: w + lr * _grad(w, c, r, l2),
        "chosen and rejected are swapped: the margin is r(y_w) − r(y_l) = φ(y_w)·w − φ(y_l)·w.":
            lambda w, c, r, lr, l2=0.0: w - lr * _grad(w, r, c, l2),
        "the L2 penalty l2 · ‖w‖² is part of the loss: add it before calling backward().":
            lambda w, c, r, lr, l2=0.0: w - lr * _grad(w, c, r, l2, penalty=0.0),
        "the penalty is l2 · ‖w‖² (its gradient 2 · l2 · w), not l2 · ‖w‖² / 2.":
            lambda w, c, r, lr, l2=0.0: w - lr * _grad(w, c, r, l2, penalty=1.0),
        "average the loss over pairs (bt_loss takes the mean), do not sum: summing scales the step by n_pairs.":
            lambda w, c, r, lr, l2=0.0: w - lr * _grad(w, c, r, l2, reduce="sum"),
        "the loss is −log σ(margin) (use your bt_loss), not −σ(margin).":
            lambda w, c, r, lr, l2=0.0: w - lr * _grad(w, c, r, l2, loss="sigma"),
    }


reward_model_step = Exercise("reward_model_step", _step_reference, _step_cases, _step_mistakes(), rtol=1e-5, atol=1e-7)
reward_model_step.__doc__ = ("Check ``reward_model_step(w, feat_chosen, feat_rejected, lr, l2=0.0)``: "
                             "w − lr ∇[bt_loss(φ_w·w, φ_l·w) + l2 ‖w‖²].")


def _rloo_reference(rewards: torch.Tensor) -> torch.Tensor:
    from labkit.rlhf import rloo_advantages

    return rloo_advantages(rewards)


def _rloo_cases() -> list[Case]:
    g = torch.Generator().manual_seed(4)
    return [
        Case("4 prompts × 6 samples of random rewards", (torch.randn(4, 6, generator=g),)),
        Case("2 samples per prompt: each baseline is the other sample's reward", (torch.tensor([[1.0, 3.0], [-2.0, 0.5]]),)),
        Case("one prompt, 4 samples", (torch.tensor([[0.0, 1.0, 2.0, 5.0]]),)),
        Case("equal rewards within a prompt: no signal, all advantages 0", (torch.tensor([[2.0, 2.0, 2.0], [1.0, 0.0, -1.0]]),)),
        Case("8 prompts × 3 samples, rewards of very different scale per prompt",
             (torch.randn(8, 3, generator=g) * torch.logspace(-2, 2, 8)[:, None],)),
    ]


def _rloo_mistakes() -> dict[str, Callable]:
    return {
        "leave the sample's own reward out of its baseline: the baseline of r_i is the mean of the OTHER k − 1 "
        "rewards, so A_i = k/(k − 1) (r_i − mean r); r_i − mean r (own reward included) is biased towards 0.":
            lambda r: r - r.mean(1, keepdim=True),
        "the advantage is reward minus baseline, r_i − b_i, not b_i − r_i.":
            lambda r: (r.sum(1, keepdim=True) - r) / (r.shape[1] - 1) - r,
        "the baseline averages over the samples of the SAME prompt (dim=1), not over prompts (dim=0).":
            lambda r: r - (r.sum(0, keepdim=True) - r) / max(r.shape[0] - 1, 1),
        "divide the sum of the others by k − 1 (there are k − 1 of them), not by k.":
            lambda r: r - (r.sum(1, keepdim=True) - r) / r.shape[1],
        "do not divide by the standard deviation: that is GRPO's normalisation (Shao et al. 2024), not RLOO's "
        "leave-one-out baseline.":
            lambda r: (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4),
        "the baseline is the mean of the others, not their sum.": lambda r: r - (r.sum(1, keepdim=True) - r),
    }


rloo_advantages = Exercise("rloo_advantages", _rloo_reference, _rloo_cases(), _rloo_mistakes())
rloo_advantages.__doc__ = ("Check ``rloo_advantages(rewards)``: A_i = r_i − mean_{j≠i} r_j over the k samples of each "
                           "prompt (rewards [n_prompts, k]).")
