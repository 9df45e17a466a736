"""Checks for the exercises of notebook 07 · Sparse autoencoders and circuits."""

from __future__ import annotations

from typing import Callable

import torch

from ._machinery import Case, Exercise

__all__ = ["sae_loss", "sae_train_loop", "attribution_estimate"]


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


# -- the SAE training loop ----------------------------------------------------------------------------


def _as_sae(params):
    """A SparseAutoencoder holding copies of ``params`` (a dict W_e [S, D], b_e [S], W_d [D, S], b_d [D])."""
    from labkit.sae import SparseAutoencoder

    D, S = params["W_d"].shape
    model = SparseAutoencoder(D, n_features=S)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name])
    return model


def _train_loop_reference(params, X, lam, epochs, batch_size, lr, seed=0):
    """Per-step losses of labkit.sae.training_loop (Adam, decoder columns renormalised after each step); like the
    exercise, it leaves the trained values in ``params``."""
    from labkit.sae import training_loop

    model = _as_sae(params)
    losses = training_loop(model, X, lam, epochs, batch_size, lr, seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            params[name].copy_(p)
    return losses


def _fresh_params(X, expansion, seed=0):
    from labkit.sae import SparseAutoencoder

    model = SparseAutoencoder(X.shape[1], expansion=expansion, seed=seed)
    with torch.no_grad():
        model.b_d.copy_(X.median(dim=0).values)  # as train_sae starts
    return {name: p.detach().clone().requires_grad_() for name, p in model.named_parameters()}


def _train_loop_cases() -> list[Case]:
    from labkit.sae import planted_features

    X, _, _ = planted_features(n_samples=256, d=16, n_features=32, p_active=0.05, seed=1)  # the notebook's data, smaller
    return [
        Case("the notebook's planted features (256 samples, D = 16), S = 64, λ = 0.3, 2 epochs of 4 batches",
             (_fresh_params(X, 4), X, 0.3, 2, 64, 1e-2), {"seed": 0}),
        Case("λ = 0 (reconstruction only), batches of 100: the last batch of each epoch is smaller",
             (_fresh_params(X, 2, seed=3), X, 0.0, 2, 100, 5e-3), {"seed": 2}),
        Case("a strong penalty λ = 2, 3 epochs", (_fresh_params(X[:96], 4, seed=1), X[:96], 2.0, 3, 32, 1e-2), {"seed": 5}),
    ]


def _train_loop_core(params, X, lam, epochs, batch_size, lr, seed=0, renorm="columns", zero_grad=True, shuffle="epoch",
                     optimiser="adam"):
    from labkit.sae import sae_loss as loss_fn

    model = _as_sae(params)
    g = torch.Generator().manual_seed(seed)
    opt = (torch.optim.Adam if optimiser == "adam" else torch.optim.SGD)(model.parameters(), lr=lr)
    losses = []
    perm = torch.randperm(len(X), generator=g) if shuffle == "once" else None
    for epoch in range(epochs):
        if shuffle == "epoch":
            perm = torch.randperm(len(X), generator=g)
        order = perm if perm is not None else torch.arange(len(X))
        for start in range(0, len(X), batch_size):
            xb = X[order[start : start + batch_size]]
            x_hat, f = model(xb)
            loss = loss_fn(xb, x_hat, f, model.W_d, lam)
            if zero_grad:
                opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                if renorm == "columns":
                    model.W_d /= model.W_d.norm(dim=0, keepdim=True)
                elif renorm == "rows":
                    model.W_d /= model.W_d.norm(dim=1, keepdim=True)
            losses.append(float(loss.detach()))
    return torch.tensor(losses)


def _train_loop_mistakes() -> dict[str, Callable]:
    def m(**flags):
        return lambda params, X, lam, epochs, batch_size, lr, seed=0: _train_loop_core(params, X, lam, epochs, batch_size,
                                                                                         lr, seed, **flags)

    return {
        "call opt.zero_grad() before loss.backward() in every step: otherwise gradients of earlier steps pile up.":
            m(zero_grad=False),
        "renormalise the decoder columns to unit length after every optimiser step (W_d /= W_d.norm(dim=0, "
        "keepdim=True), under torch.no_grad()): the penalty's ‖W_d,i‖ is only meaningful with unit columns.":
            m(renorm=None),
        "feature i's direction is column i of W_d [D, S]: normalise over dim=0, not the rows.": m(renorm="rows"),
        "draw a new permutation at the start of every epoch (torch.randperm(n, generator=g) inside the epoch loop).":
            m(shuffle="once"),
        "shuffle: take the batches in the order of perm = torch.randperm(n, generator=g), not in the rows' order.":
            m(shuffle=None),
        "use Adam, torch.optim.Adam(params.values(), lr=lr), as train_sae does.": m(optimiser="sgd"),
    }


sae_train_loop = Exercise("sae_train_loop", _train_loop_reference, _train_loop_cases, _train_loop_mistakes(),
                          rtol=1e-3, atol=1e-4)
sae_train_loop.__doc__ = ("Check ``sae_train_loop(params, X, lam, epochs, batch_size, lr, seed=0)``: the per-step "
                          "losses of the SAE training loop on the parameters W_e, b_e, W_d, b_d.")


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
