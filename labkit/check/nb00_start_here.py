"""Checks for the exercises of notebook 00 · Start here."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ._machinery import Case, Exercise

__all__ = ["entropy"]


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
