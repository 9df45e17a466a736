"""Checks for the exercises of notebook 01 · Feature attribution and how to evaluate it."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ._machinery import Case, Exercise

__all__ = ["integrated_gradients", "deletion_auc", "mus_predict", "certified_radius"]


# ------------------------------------------------------------------------------------------ deletion AUC


def _deletion_auc_reference(model, inputs, attributions, target):
    """AUC of the deletion curve: features set to 0 one at a time, most attributed first, p(target) after each."""
    from labkit import attribution

    curve = attribution.deletion_curve(model, inputs, target, attributions, device="cpu")
    return attribution.curve_auc(curve)


def _tiny_model(d_in: int, n_out: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d_in, 8), nn.Tanh(), nn.Linear(8, n_out))


def _deletion_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 2, 3, generator=g) + 0.5
    a = torch.randn(4, 1, 2, 3, generator=g)
    ties = torch.zeros(2, 1, 2, 3)
    ties[:, 0, 0, 0] = 1.0
    return [
        Case("4 images of 2×3 pixels, a 3-class model", (_tiny_model(6, 3, 0), x, a, torch.tensor([0, 1, 2, 0]))),
        Case("one image, one int target", (_tiny_model(6, 3, 1), x[:1], a[:1], 2)),
        Case("tied attributions (keep the pixel order for ties: a stable sort)",
             (_tiny_model(6, 2, 2), x[:2], ties, torch.tensor([1, 0]))),
        Case("8 features, 2 classes", (_tiny_model(8, 2, 3), torch.rand(3, 1, 2, 4, generator=g),
                                       torch.randn(3, 1, 2, 4, generator=g), torch.tensor([0, 1, 1]))),
    ]


def _curve(model, inputs, attributions, target, ascending=False, logits=False, start=0):
    B = inputs.shape[0]
    D = inputs[0].numel()
    t = torch.as_tensor(target).expand(B) if torch.as_tensor(target).dim() == 0 else torch.as_tensor(target)
    flat_a = attributions.flatten(1)
    order = torch.sort(flat_a, dim=1, descending=not ascending, stable=True).indices
    x = inputs.flatten(1).clone()
    rows = []
    with torch.no_grad():
        for k in range(D + 1):
            out = model(x.reshape(inputs.shape))
            val = out if logits else torch.softmax(out, -1)
            rows.append(val[torch.arange(B), t])
            if k < D:
                x[torch.arange(B), order[:, k]] = 0.0
    return torch.stack(rows, 1)[:, start:]


def _deletion_mistakes() -> dict[str, Callable]:
    def trapz(c):
        n = c.shape[1] - 1
        return (c[:, :-1] + c[:, 1:]).sum(1) / (2 * n)

    return {
        "you delete the least important features first: sort the attributions in descending order.":
            lambda m, x, a, t: trapz(_curve(m, x, a, t, ascending=True)),
        "the curve must use probabilities p(target) = softmax(logits)[target], not raw logits.":
            lambda m, x, a, t: trapz(_curve(m, x, a, t, logits=True)),
        "the curve starts at k = 0 (nothing deleted yet): include p(target | x) as its first point.":
            lambda m, x, a, t: (lambda c: (c[:, :-1] + c[:, 1:]).sum(1) / (2 * (c.shape[1] - 1)))(_curve(m, x, a, t, start=1)),
        "the x axis is the fraction of features deleted, from 0 to 1: divide the trapezoid sum by the number of "
        "steps D (torch.trapz(curve) alone integrates over 0…D).":
            lambda m, x, a, t: torch.trapz(_curve(m, x, a, t), dim=1),
        "use the trapezoid rule (average neighbouring points), not the plain mean of the curve.":
            lambda m, x, a, t: _curve(m, x, a, t).mean(1),
        "order by the signed attribution, not by its absolute value.":
            lambda m, x, a, t: trapz(_curve(m, x, a.abs(), t)),
    }


deletion_auc = Exercise("deletion_auc", _deletion_auc_reference, _deletion_cases(), _deletion_mistakes())
deletion_auc.__doc__ = "Check ``deletion_auc(model, inputs, attributions, target)``: the AUC of the deletion curve."


# --------------------------------------------------------------------------------------- MuS smoothing


def _mus_reference(h, x, masks, groups):
    """f(x) = (1/q) Σ_v softmax h(x ⊙ s(v)), s(v) = masks[v] expanded from feature groups to pixels."""
    from labkit import attribution

    return attribution.mus_probs_loop(h, x, masks, groups)


def _mus_cases() -> list[Case]:
    from labkit import attribution

    g = torch.Generator().manual_seed(2)
    groups = attribution.patch_groups(4, 2)
    return [
        Case("3 images of 4×4 pixels, 4 patches, λ = 1/4, q = 8",
             (_tiny_model(16, 3, 4), torch.rand(3, 1, 4, 4, generator=g), attribution.mus_masks(4, 0.25, 8, seed=0), groups)),
        Case("λ = 1 (every mask keeps everything: f = softmax h)",
             (_tiny_model(16, 2, 5), torch.rand(2, 1, 4, 4, generator=g), attribution.mus_masks(4, 1.0, 4), groups)),
        Case("one image, λ = 1/2, q = 16",
             (_tiny_model(16, 4, 6), torch.rand(1, 1, 4, 4, generator=g), attribution.mus_masks(4, 0.5, 16, seed=3), groups)),
    ]


def _mus_mistakes() -> dict[str, Callable]:
    def mean_logits(h, x, masks, groups):
        return torch.softmax(torch.stack([h(x * s.float()[groups]) for s in masks]).mean(0), -1).detach()

    def inverted(h, x, masks, groups):
        return torch.stack([torch.softmax(h(x * (1 - s.float()[groups])), -1) for s in masks]).mean(0).detach()

    def logits(h, x, masks, groups):
        return torch.stack([h(x * s.float()[groups]) for s in masks]).mean(0).detach()

    return {
        "average the probabilities softmax h(x ⊙ s) over the masks; the softmax of the average logits is not "
        "E_s[h] and loses the Lipschitz guarantee.": mean_logits,
        "a mask entry s_j = 1 means *keep* feature j (probability λ): multiply by s, not by 1 − s.": inverted,
        "h's outputs must be probabilities in [0, 1] (apply softmax) before averaging: the Lipschitz bound needs "
        "a bounded h.": logits,
    }


mus_predict = Exercise("mus_predict", _mus_reference, _mus_cases(), _mus_mistakes(), rtol=1e-4, atol=1e-5)
mus_predict.__doc__ = "Check ``mus_predict(h, x, masks, groups)``: the MuS smoothed class probabilities."


# ---------------------------------------------------------------------------------------- certified radius


def _radius_reference(probs, lam):
    from labkit import attribution

    return attribution.certified_radius(probs, lam)


def _radius_cases() -> list[Case]:
    g = torch.Generator().manual_seed(3)
    p = torch.softmax(torch.randn(5, 10, generator=g) * 2, -1)
    return [
        Case("5 distributions over 10 classes, λ = 1/4", (p, 0.25)),
        Case("a tie between the top two classes: radius 0", (torch.tensor([[0.4, 0.4, 0.2]]), 0.5)),
        Case("one distribution without a batch axis, λ = 1/8", (torch.tensor([0.7, 0.1, 0.2]), 0.125)),
        Case("λ = 1 (no smoothing)", (torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.5, 0.3]]), 1.0)),
    ]


def _radius_mistakes() -> dict[str, Callable]:
    def top2(p):
        v = p.topk(2, dim=-1).values
        return v[..., 0], v[..., 1]

    return {
        "the bound needs a factor 2: the top class can lose λr while the runner-up gains λr, so r = (p₁ − p₂)/(2λ).":
            lambda p, lam: (top2(p)[0] - top2(p)[1]) / lam,
        "compare the top class with the runner-up p₂, not with everything else (1 − p₁).":
            lambda p, lam: (2 * top2(p)[0] - 1) / (2 * lam),
        "divide by λ (each added feature moves f by at most λ), do not multiply.":
            lambda p, lam: (top2(p)[0] - top2(p)[1]) * lam / 2,
    }


certified_radius = Exercise("certified_radius", _radius_reference, _radius_cases(), _radius_mistakes())
certified_radius.__doc__ = "Check ``certified_radius(probs, lam)``: r = (p_top − p_second) / (2λ)."


# ---------------------------------------------------------------------------------- integrated gradients


def _ig_reference(model, inputs, target, baseline, n_steps):
    """IG as the midpoint Riemann sum (x − x̄) ⊙ (1/m) Σ_k ∇f_t(x̄ + α_k(x − x̄)), α_k = (k − ½)/m."""
    from labkit import attribution

    return attribution.integrated_gradients(model, inputs, target, baseline, n_steps, rule="middle")  # runtime device


def _ig_cases() -> list[Case]:
    from labkit import attribution

    digits = attribution.load_digits(device="cpu")
    torch.manual_seed(0)
    mlp = attribution.train_classifier(attribution.PixelMLP(64, 32, 10), digits["X_train"], digits["y_train"],
                                       epochs=3, batch_size=128, device="cpu").eval()
    x, y = digits["X_test"][:6], digits["y_test"][:6]
    g = torch.Generator().manual_seed(4)
    xs = torch.rand(3, 1, 2, 3, generator=g)
    return [
        Case("6 test digits, an MLP trained on digits, their true classes, black baseline, 16 steps",
             (mlp, x, y, torch.zeros_like(x), 16)),
        Case("the same digits, a gray baseline 0.5 and class 3 for all (one int target), 8 steps",
             (mlp, x, 3, torch.full_like(x, 0.5), 8)),
        Case("a tanh network on 2×3 images, random baseline, two steps (α = ¼, ¾)",
             (_tiny_model(6, 3, 7), xs, torch.tensor([0, 2, 1]), torch.rand(3, 1, 2, 3, generator=g), 2)),
    ]


def _ig_wrong(model, x, target, baseline, n_steps, alphas=None, factor=True, probs=False, mean=True):
    B = x.shape[0]
    t = torch.as_tensor(target).expand(B) if torch.as_tensor(target).dim() == 0 else torch.as_tensor(target)
    if alphas is None:
        alphas = (torch.arange(n_steps, dtype=x.dtype) + 0.5) / n_steps
    total = torch.zeros_like(x)
    for a in alphas:
        point = (baseline + a * (x - baseline)).detach().requires_grad_(True)
        out = model(point)
        if probs:
            out = torch.softmax(out, -1)
        (grad,) = torch.autograd.grad(out[torch.arange(B), t].sum(), point)
        total += grad
    avg = total / n_steps if mean else total
    return (avg * (x - baseline) if factor else avg).detach()


def _ig_mistakes() -> dict[str, Callable]:
    return {
        "multiply the averaged gradient by (x − x̄): without it you return the mean gradient along the path, which "
        "does not satisfy completeness.":
            lambda m, x, t, b, n: _ig_wrong(m, x, t, b, n, factor=False),
        "use the midpoints α_k = (k − ½)/m, k = 1…m (the left rule α = 0, 1/m, … starts at the baseline and is "
        "biased).":
            lambda m, x, t, b, n: _ig_wrong(m, x, t, b, n, alphas=torch.arange(n, dtype=x.dtype) / n),
        "differentiate the logit f_t, not the softmax probability: completeness is stated for the logit.":
            lambda m, x, t, b, n: _ig_wrong(m, x, t, b, n, probs=True),
        "average the m gradients (divide the sum by m; the step length along the path is 1/m).":
            lambda m, x, t, b, n: _ig_wrong(m, x, t, b, n, mean=False),
    }


integrated_gradients = Exercise("integrated_gradients", _ig_reference, _ig_cases, _ig_mistakes(), rtol=1e-4,
                                atol=1e-5)
integrated_gradients.__doc__ = ("Check ``integrated_gradients(model, inputs, target, baseline, n_steps)``: IG as the "
                                "midpoint Riemann sum along the straight path.")
