"""Checks for the exercises of notebook 07 · Sparse autoencoders and circuits."""

from __future__ import annotations

from typing import Callable

import torch

from ._machinery import Case, Exercise

__all__ = ["sae_loss", "attribution_estimate"]


# -- the SAE loss ------------------------------------------------------------------------------------


def _sae_loss_reference(x, x_hat, f, W_d, lam):
    """L = mean over the batch of ‖x − x̂‖² + λ Σ_i f_i ‖W_d,i‖."""
    from labkit.sae import sae_loss

    return sae_loss(x, x_hat, f, W_d, lam)


def _sae_loss_cases() -> list[Case]:
    g = torch.Generator().manual_seed(7)
    cases = []
    for n, d, s, lam, note in [(8, 5, 20, 0.1, "8 samples, D = 5, S = 20, λ = 0.1, decoder columns not unit norm"),
                               (1, 3, 6, 2.0, "a single sample, λ = 2"),
                               (4, 6, 12, 0.0, "λ = 0: the loss is the reconstruction error alone")]:
        x = torch.randn(n, d, generator=g)
        x_hat = torch.randn(n, d, generator=g)
        f = torch.relu(torch.randn(n, s, generator=g))
        W_d = torch.randn(d, s, generator=g) * 2
        cases.append(Case(note, (x, x_hat, f, W_d, lam)))
    f0 = torch.zeros(3, 8)
    x = torch.randn(3, 4, generator=g)
    cases.append(Case("no feature active (f = 0): only the reconstruction term remains", (x, x * 0.5, f0, torch.randn(4, 8, generator=g), 1.0)))
    return cases


def _sae_loss_mistakes() -> dict[str, Callable]:
    def no_norm(x, x_hat, f, W_d, lam):
        return (((x - x_hat) ** 2).sum(-1) + lam * f.sum(-1)).mean()

    def mse_mean(x, x_hat, f, W_d, lam):
        return ((x - x_hat) ** 2).mean() + lam * (f * W_d.norm(dim=0)).sum(-1).mean()

    def no_square(x, x_hat, f, W_d, lam):
        return ((x - x_hat).abs().sum(-1) + lam * (f * W_d.norm(dim=0)).sum(-1)).mean()

    def l2(x, x_hat, f, W_d, lam):
        return (((x - x_hat) ** 2).sum(-1) + lam * (f ** 2 * W_d.norm(dim=0)).sum(-1)).mean()

    def batch_sum(x, x_hat, f, W_d, lam):
        return (((x - x_hat) ** 2).sum(-1) + lam * (f * W_d.norm(dim=0)).sum(-1)).sum()

    def row_norm(x, x_hat, f, W_d, lam):
        return (((x - x_hat) ** 2).sum(-1) + lam * (f * W_d.norm(dim=1).mean()).sum(-1)).mean()

    def no_lam(x, x_hat, f, W_d, lam):
        return (((x - x_hat) ** 2).sum(-1) + (f * W_d.norm(dim=0)).sum(-1)).mean()

    return {
        "the reconstruction error is the squared norm Σ_j (x_j − x̂_j)² per sample (sum over D), then the mean "
        "over the batch — not the mean over all entries.": mse_mean,
        "use the squared error ‖x − x̂‖², not the absolute error.": no_square,
        "the sparsity penalty is L1: λ Σ_i f_i ‖W_d,i‖, not f_i².": l2,
        "weight each feature's activation by the norm of its decoder column ‖W_d,i‖ (column i of W_d, "
        "dim=0); otherwise the SAE can shrink f and grow W_d to dodge the penalty.": no_norm,
        "feature i's decoder direction is column i of W_d ([D, S]): take norms over dim=0.": row_norm,
        "average over the batch, do not sum.": batch_sum,
        "multiply the sparsity term by λ.": no_lam,
    }


sae_loss = Exercise("sae_loss", _sae_loss_reference, _sae_loss_cases(), _sae_loss_mistakes())
sae_loss.__doc__ = "Check ``sae_loss(x, x_hat, f, W_d, lam)``: mean_batch(‖x − x̂‖² + λ Σ_i f_i ‖W_d,i‖)."


# -- the attribution-patching estimate ---------------------------------------------------------------


def _attribution_reference(grad, a_clean, a_patch):
    """F̂ = ∇_a m|_{a_c} · (a_p − a_c), the dot product over the last axis (one estimate per component)."""
    return (grad * (a_patch - a_clean)).sum(-1)


def _attribution_cases() -> list[Case]:
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    a = r(5, 9, 64)
    return [
        Case("9 heads at 5 positions, d_head = 64", (r(5, 9, 64), a, a + 0.3 * r(5, 9, 64))),
        Case("one residual-stream vector of width 576", (r(576), r(576), r(576))),
        Case("patch equals clean: every estimate must be 0", (r(4, 16), a[0, :4, :16], a[0, :4, :16].clone())),
        Case("a batch of 3 examples × 7 positions × width 10", (r(3, 7, 10), r(3, 7, 10), r(3, 7, 10))),
    ]


def _attribution_mistakes() -> dict[str, Callable]:
    return {
        "the sign is flipped: the estimate uses (a_p − a_c), the change the patch makes, not (a_c − a_p).":
            lambda g, c, p: (g * (c - p)).sum(-1),
        "multiply the gradient by the difference a_p − a_c, not by a_p alone.": lambda g, c, p: (g * p).sum(-1),
        "sum the product over the last axis (a dot product per component): one number per head/position.":
            lambda g, c, p: g * (p - c),
        "that sums everything to a single number: keep one estimate per component (sum over the last axis only).":
            lambda g, c, p: (g * (p - c)).sum(),
    }


attribution_estimate = Exercise("attribution_estimate", _attribution_reference, _attribution_cases(), _attribution_mistakes())
attribution_estimate.__doc__ = "Check ``attribution_estimate(grad, a_clean, a_patch)``: (∇m · (a_p − a_c)) over the last axis."
