"""Checks for the exercises of notebook 12 · Direct Preference Optimization."""

from __future__ import annotations

from typing import Callable

import torch

from ._machinery import Case, Exercise

__all__ = ["dpo_loss", "sequence_logprobs", "dpo_train_step"]
F = torch.nn.functional


def _dpo_reference(pc, pr, rc, rr, beta):
    from labkit.dpo import dpo_loss

    return dpo_loss(pc, pr, rc, rr, beta)


def _dpo_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    lp = lambda *s: -torch.rand(*s, generator=g) * 40  # noqa: E731  sequence log-probs are negative
    return [
        Case("8 pairs, β = 0.1", (lp(8), lp(8), lp(8), lp(8), 0.1)),
        Case("policy = reference: the loss is log 2", (lp(4), lp(4), None, None, 0.5)),
        Case("one pair, β = 1", (torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]), torch.tensor([-11.0]), 1.0)),
        Case("a margin of −500 (log(sigmoid(·)) underflows)", (torch.tensor([-600.0, -5.0]), torch.tensor([-10.0, -6.0]),
                                                               torch.tensor([-10.0, -5.0]), torch.tensor([-10.0, -5.0]), 1.0)),
        Case("chosen and rejected with different reference values, β = 2", (lp(6), lp(6), lp(6) - 3, lp(6), 2.0)),
    ]


def _fix_cases(cases):
    # "policy = reference": fill the reference with the policy's values
    c = cases[1]
    c.args = (c.args[0], c.args[1], c.args[0].clone(), c.args[1].clone(), c.args[4])
    return cases


def _dpo_mistakes() -> dict[str, Callable]:
    return {
        "β is missing: multiply the log-ratio difference by β.":
            lambda pc, pr, rc, rr, b: -F.logsigmoid((pc - rc) - (pr - rr)).mean(),
        "the margin has the wrong sign: the log-ratio is log π_θ − log π_ref (policy minus reference), and the "
        "chosen response's log-ratio comes first.":
            lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pr - rr) - (pc - rc))).mean(),
        "the reference model is missing: use log π_θ(y|x) − log π_ref(y|x) for each response.":
            lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr)).mean(),
        "the minus sign is missing: the loss is −log σ(·) ≥ 0.":
            lambda pc, pr, rc, rr, b: F.logsigmoid(b * ((pc - rc) - (pr - rr))).mean(),
        "average over pairs (mean), do not sum.":
            lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rc) - (pr - rr))).sum(),
        "torch.log(torch.sigmoid(·)) underflows for large negative margins: use torch.nn.functional.logsigmoid.":
            lambda pc, pr, rc, rr, b: -torch.log(torch.sigmoid(b * ((pc - rc) - (pr - rr)))).mean(),
    }


def _seq_reference(logits, input_ids, response_mask):
    from labkit.dpo import sequence_logprobs

    return sequence_logprobs(logits, input_ids, response_mask)


def _seq_cases() -> list[Case]:
    g = torch.Generator().manual_seed(2)
    B, T, V = 3, 7, 11
    ids = torch.randint(0, V, (B, T), generator=g)
    mask = torch.zeros(B, T, dtype=torch.long)
    mask[0, 3:7] = 1  # prompt of 3 tokens, response of 4
    mask[1, 2:5] = 1  # response of 3, then 2 padding tokens
    mask[2, 5:6] = 1  # a one-token response
    big = torch.randn(2, 5, V, generator=g) * 50 + 1000
    ids2 = torch.randint(0, V, (2, 5), generator=g)
    m2 = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 1, 0, 0]])
    return [
        Case("3 sequences with prompts, responses and right padding", (torch.randn(B, T, V, generator=g), ids, mask)),
        Case("logits near +1000 (normalise with log_softmax)", (big, ids2, m2)),
        Case("one sequence whose response is everything after the first token",
             (torch.randn(1, 4, V, generator=g), ids[:1, :4], torch.tensor([[0, 1, 1, 1]]))),
    ]


def _seq_mistakes() -> dict[str, Callable]:
    def lsm(logits):
        return torch.log_softmax(logits.float(), -1)

    def no_shift(logits, ids, m):
        return (lsm(logits).gather(-1, ids[..., None])[..., 0] * m).sum(-1)

    def mean(logits, ids, m):
        lp = lsm(logits[:, :-1]).gather(-1, ids[:, 1:, None])[..., 0]
        return (lp * m[:, 1:]).sum(-1) / m[:, 1:].sum(-1)

    def no_mask(logits, ids, m):
        return lsm(logits[:, :-1]).gather(-1, ids[:, 1:, None])[..., 0].sum(-1)

    def mask_unshifted(logits, ids, m):
        lp = lsm(logits[:, :-1]).gather(-1, ids[:, 1:, None])[..., 0]
        return (lp * m[:, :-1]).sum(-1)

    def raw_logits(logits, ids, m):
        lp = logits[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
        return (lp * m[:, 1:]).sum(-1)

    def naive(logits, ids, m):
        p = torch.exp(logits[:, :-1]) / torch.exp(logits[:, :-1]).sum(-1, keepdim=True)
        lp = torch.log(p).gather(-1, ids[:, 1:, None])[..., 0]
        return (lp * m[:, 1:]).sum(-1)

    return {
        "shift by one: the token at position t is predicted by the logits at position t − 1 (logits[:, :-1] "
        "scores input_ids[:, 1:]).": no_shift,
        "the mask must move with the tokens: multiply by response_mask[:, 1:], the mask of the scored tokens.": mask_unshifted,
        "sum the log-probabilities over the response, do not average them.": mean,
        "apply the response mask: prompt and padding tokens must not count.": no_mask,
        "turn logits into log-probabilities first (log_softmax over the vocabulary).": raw_logits,
        "exp(logits) overflows for large logits: use torch.log_softmax.": naive,
    }


dpo_loss = Exercise("dpo_loss", _dpo_reference, _fix_cases(_dpo_cases()), _dpo_mistakes())
dpo_loss.__doc__ = "Check ``dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)`` (mean over pairs)."
sequence_logprobs = Exercise("sequence_logprobs", _seq_reference, _seq_cases(), _seq_mistakes())
sequence_logprobs.__doc__ = "Check ``sequence_logprobs(logits, input_ids, response_mask)``: Σ_t m_t log p(x_t | x_<t)."


# -- dpo_train_step --------------------------------------------------------------------------------


def _step_reference(params, logits_fn, input_ids, response_mask, chosen, rejected, ref_logps, beta, lr):
    from labkit.dpo import dpo_step

    return dpo_step(params, logits_fn, input_ids, response_mask, chosen, rejected, ref_logps, beta, lr)


def _step_cases() -> list[Case]:
    from labkit import preference
    from labkit.dpo import bandit_as_sequences, tabular_dpo

    # the bandit of notebook 12, section 2 (seed 0, K = 10, β = 0.5) and 100 of its Bradley-Terry-labelled pairs
    g = torch.Generator().manual_seed(0)
    K = 10
    ref_probs = torch.softmax(torch.randn(K, generator=g), -1)
    R = torch.randn(K, generator=g)
    pairs = tabular_dpo(ref_probs, R, 0.5, n_pairs=100, steps=1, seed=0)["pairs"]
    ids, mask, fn = bandit_as_sequences(K)
    ref_lp = ref_probs.double().log()
    theta_half = ref_lp + 0.5 * preference.kl_regularised_policy(ref_probs.log(), R, 0.5).double().log()
    # a bigram "language model" on 4 token sequences of length 6 with prompts of different lengths
    g2 = torch.Generator().manual_seed(3)
    V = 7
    seq = torch.randint(0, V, (4, 6), generator=g2)
    m = torch.zeros(4, 6, dtype=torch.long)
    m[0, 2:6] = 1
    m[1, 3:5] = 1
    m[2, 1:6] = 1
    m[3, 4:5] = 1
    W0 = torch.randn(V, V, generator=g2, dtype=torch.float64)
    bigram = _Bigram(seq)
    ref_seq = torch.tensor([-9.0, -6.0, -11.0, -2.5], dtype=torch.float64)
    return [
        Case("the notebook's bandit (K = 10, β = 0.5): 100 labelled pairs, θ half-way to π*, lr = 5",
             (theta_half, fn, ids, mask, pairs[:, 0], pairs[:, 1], ref_lp.clone(), 0.5, 5.0)),
        Case("the same pairs from the start, θ = log π_ref, β = 0.1, lr = 1",
             (ref_lp.clone(), fn, ids, mask, pairs[:, 0], pairs[:, 1], ref_lp.clone(), 0.1, 1.0)),
        Case("a bigram language model: 4 responses after prompts of different lengths, 3 pairs sharing responses",
             (W0, bigram, seq, m, torch.tensor([0, 2, 0]), torch.tensor([1, 3, 3]), ref_seq, 0.2, 0.5)),
        Case("one pair, β = 2", (W0, bigram, seq, m, torch.tensor([3]), torch.tensor([2]), ref_seq, 2.0, 0.1)),
    ]


class _Bigram:
    """logits[n, t] = θ[seq[n, t]]: a bigram language model whose parameters θ [V, V] are the logit table."""

    def __init__(self, seq):
        self.seq = seq

    def __call__(self, theta):
        return theta[self.seq]


def _step_mistakes() -> dict[str, Callable]:
    from labkit.dpo import dpo_loss as loss_fn, sequence_logprobs as seq_fn

    def grad_of(params, logits_fn, ids, m, c, r, ref, beta, swap=False, no_ref=False):
        theta = params.detach().clone().requires_grad_(True)
        lp = seq_fn(logits_fn(theta), ids, m)
        if swap:
            c, r = r, c
        rc, rr = (torch.zeros_like(ref[c]), torch.zeros_like(ref[r])) if no_ref else (ref[c], ref[r])
        (g,) = torch.autograd.grad(loss_fn(lp[c], lp[r], rc, rr, beta), theta)
        return theta.detach(), g

    def ascent(params, f, ids, m, c, r, ref, beta, lr):
        theta, g = grad_of(params, f, ids, m, c, r, ref, beta)
        return theta + lr * g

    def no_lr(params, f, ids, m, c, r, ref, beta, lr):
        theta, g = grad_of(params, f, ids, m, c, r, ref, beta)
        return theta - g

    def swapped(params, f, ids, m, c, r, ref, beta, lr):
        theta, g = grad_of(params, f, ids, m, c, r, ref, beta, swap=True)
        return theta - lr * g

    def no_ref(params, f, ids, m, c, r, ref, beta, lr):
        theta, g = grad_of(params, f, ids, m, c, r, ref, beta, no_ref=True)
        return theta - lr * g

    def no_step(params, f, ids, m, c, r, ref, beta, lr):
        return params.detach().clone()

    return {
        "step DOWN the gradient: θ' = θ − lr·∇L (you added the gradient: that is ascent, the loss rises).": ascent,
        "multiply the gradient by the learning rate lr.": no_lr,
        "chosen and rejected are swapped: the first log-probabilities passed to dpo_loss are the CHOSEN responses'.": swapped,
        "the reference log-probabilities are missing: pass ref_logps[chosen] and ref_logps[rejected] to dpo_loss.": no_ref,
        "the parameters did not move: compute the gradient of the loss (torch.autograd.grad or .backward()) and "
        "return θ − lr·∇L.": no_step,
    }


dpo_train_step = Exercise("dpo_train_step", _step_reference, _step_cases, _step_mistakes(), rtol=1e-5, atol=1e-7)
dpo_train_step.__doc__ = ("Check ``dpo_train_step(params, logits_fn, input_ids, response_mask, chosen, rejected, ref_logps, "
                          "beta, lr)``: one gradient step on the DPO loss, returning the new parameters.")
