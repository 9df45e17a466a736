"""Feature attribution and how to evaluate it (notebook 01).

* data and models: scikit-learn's 8×8 digits (:func:`load_digits`), a synthetic image task whose label depends
  only on known pixels (:func:`make_pixel_task`), a small CNN split into spatial features and a decision head
  (:class:`DigitsCNN`), a trainer (:func:`train_classifier`);
* attributions through ``captum`` (:func:`attribute`: Saliency, Input×Gradient, Integrated Gradients,
  Occlusion, Shapley value sampling, KernelSHAP);
* evaluation: deletion and insertion curves and their AUC (:func:`deletion_curve`, :func:`curve_auc`),
  compactness, captum's infidelity and sensitivity, the cascading model-parameter randomisation sanity check
  (Adebayo et al. 2018), precision against planted relevant pixels;
* certified stability by multiplicative smoothing (MuS, Xue, Alur & Wong 2023): derandomised masks
  (:func:`mus_masks`), the smoothed classifier (:class:`MuS`), the certified radius and an exhaustive check
  of the certificate over all supersets of an explanation (:func:`verify_certificate`).
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from labkit.runtime import get_device

__all__ = [
    "load_digits", "make_pixel_task", "DigitsCNN", "PixelMLP", "train_classifier", "accuracy", "predict_proba",
    "METHODS", "attribute", "random_attributions", "feature_order", "deletion_curve", "curve_auc", "compactness",
    "precision_at_k", "infidelity_score", "sensitivity_score", "randomize_layers", "rank_correlation",
    "cascading_randomization", "patch_groups", "mus_masks", "MuS", "certified_radius", "supersets_within",
    "verify_certificate", "mus_probs_loop",
]

# ----------------------------------------------------------------------------------------------- data


def load_digits(test_size: float = 0.25, seed: int = 0, device=None) -> dict[str, torch.Tensor]:
    """scikit-learn's 8×8 digits (1797 images, 10 classes) as tensors ``[N, 1, 8, 8]`` scaled to [0, 1].

    Returns ``{"X_train", "y_train", "X_test", "y_test"}``; the split is stratified and seeded.
    """
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    d = _load()
    X = d.images.astype(np.float32) / 16.0
    Xtr, Xte, ytr, yte = train_test_split(X, d.target, test_size=test_size, random_state=seed, stratify=d.target)
    dev = get_device(device)
    t = lambda a, dt: torch.as_tensor(a, dtype=dt, device=dev)  # noqa: E731
    return {"X_train": t(Xtr, torch.float32)[:, None], "y_train": t(ytr, torch.long),
            "X_test": t(Xte, torch.float32)[:, None], "y_test": t(yte, torch.long)}


#: The planted pixels of :func:`make_pixel_task`: label = 1 iff the sum over ``POSITIVE`` exceeds the sum over ``NEGATIVE``.
POSITIVE = ((1, 1), (1, 2), (2, 1))
NEGATIVE = ((5, 5), (5, 6), (6, 6))


def make_pixel_task(n: int = 2000, seed: int = 0, size: int = 8, device=None):
    """A synthetic image task with a known answer to "which pixels matter?".

    Pixels are i.i.d. uniform on [0, 1]; the label is 1 iff Σ_{p∈POSITIVE} x_p > Σ_{p∈NEGATIVE} x_p. Only those
    six pixels carry information, so a faithful attribution puts its mass there.

    Returns ``(X [n, 1, size, size], y [n], relevant [size, size] bool)``.
    """
    if n < 1 or size < 7:
        raise ValueError(f"need n ≥ 1 and size ≥ 7 (the planted pixels lie inside 7×7), got n={n}, size={size}")
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 1, size, size, generator=g)
    pos = sum(X[:, 0, i, j] for i, j in POSITIVE)
    neg = sum(X[:, 0, i, j] for i, j in NEGATIVE)
    y = (pos > neg).long()
    relevant = torch.zeros(size, size, dtype=torch.bool)
    for i, j in POSITIVE + NEGATIVE:
        relevant[i, j] = True
    dev = get_device(device)
    return X.to(dev), y.to(dev), relevant.to(dev)


# --------------------------------------------------------------------------------------------- models


class DigitsCNN(nn.Module):
    """A small CNN for 8×8 images, split as in Goyal et al. (2019): ``features`` f maps an image to a 4×4 grid
    of 32-dim cells, ``head`` g (one linear layer on the flattened grid) decides. ``forward = head ∘ features``."""

    def __init__(self, n_classes: int = 10, width: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, width, 3, padding=1)
        self.head = nn.Linear(width * 16, n_classes)
        self.width = width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): ``[B, 1, 8, 8] → [B, width, 4, 4]``."""
        return F.avg_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)

    def decide(self, feats: torch.Tensor) -> torch.Tensor:
        """g(f): ``[B, width, 4, 4] → logits [B, classes]``."""
        return self.head(feats.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decide(self.features(x))


class PixelMLP(nn.Module):
    """A two-layer MLP on flattened images (for the synthetic pixel task)."""

    def __init__(self, n_pixels: int = 64, hidden: int = 64, n_classes: int = 2):
        super().__init__()
        self.fc1 = nn.Linear(n_pixels, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def train_classifier(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int = 30, batch_size: int = 64,
                     lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0, keep_prob: float | None = None,
                     groups: torch.Tensor | None = None, device=None) -> nn.Module:
    """Minibatch Adam on cross-entropy; returns the model in eval mode on ``device``.

    With ``keep_prob`` λ (and ``groups``, a ``[H, W]`` map of feature ids) every training image is multiplied by a
    fresh random mask that keeps each feature group with probability λ: the base classifier h of MuS must
    be accurate on such masked inputs, since the smoothed f averages h over them.
    """
    dev = get_device(device)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    if keep_prob is not None:
        _check_lambda(keep_prob)
        if groups is None:
            raise ValueError("keep_prob needs `groups` (e.g. patch_groups(8, 2)) to know which pixels form a feature")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = model.to(dev).train()
    X, y = X.to(dev), y.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = X.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g).to(dev)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb = X[idx]
            if keep_prob is not None:
                n_feat = int(groups.max()) + 1
                s = (torch.rand(len(idx), n_feat, generator=g) < keep_prob).float().to(dev)
                xb = xb * s[:, groups.to(dev)].unsqueeze(1)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def predict_proba(model: nn.Module, X: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """softmax(model(X)) in batches, on the model's device; returns probabilities ``[N, classes]``."""
    dev = next(model.parameters()).device
    return torch.cat([torch.softmax(model(X[i:i + batch_size].to(dev)), -1) for i in range(0, len(X), batch_size)])


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows where argmax model(X) equals y."""
    return (predict_proba(model, X).argmax(-1).cpu() == y.cpu()).float().mean().item()


# ------------------------------------------------------------------------------------------ attribution

METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "occlusion", "shapley_sampling", "kernel_shap")


def _n_outputs(model: nn.Module, inputs: torch.Tensor) -> int:
    with torch.no_grad():
        return model(inputs[:1]).shape[-1]


def _check_target(model: nn.Module, inputs: torch.Tensor, target) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point() or inputs.dim() < 2:
        raise TypeError("inputs must be a floating-point tensor with a batch axis first, e.g. [B, 1, 8, 8]")
    n_out = _n_outputs(model, inputs)
    t = torch.as_tensor(target, device=inputs.device)
    if t.is_floating_point():
        raise TypeError(f"target must hold integer class indices, got {t.dtype}")
    if t.dim() == 0:
        t = t.expand(inputs.shape[0])
    if t.dim() != 1 or t.shape[0] != inputs.shape[0]:
        raise ValueError(f"target must be one class index or one per input ({inputs.shape[0]}), got shape {tuple(t.shape)}")
    if (t < 0).any() or (t >= n_out).any():
        bad = int(t[(t < 0) | (t >= n_out)][0])
        raise ValueError(f"target {bad} is out of range: the model has {n_out} outputs (classes 0…{n_out - 1})")
    return t.long()


def attribute(model: nn.Module, inputs: torch.Tensor, target, method: str, baseline: float | torch.Tensor = 0.0,
              feature_mask: torch.Tensor | None = None, n_steps: int = 32, n_samples: int = 32,
              window: Sequence[int] = (1, 2, 2), seed: int = 0, device=None) -> torch.Tensor:
    """Attribution maps (same shape as ``inputs``) for the logit of class ``target``, computed by ``captum``.

    * ``saliency``:  |∂f_t/∂x| (Simonyan et al. 2014);
    * ``input_x_gradient``:  x ⊙ ∂f_t/∂x (Shrikumar et al. 2016);
    * ``integrated_gradients``:  (x − x̄) ⊙ ∫₀¹ ∂f_t(x̄ + a(x − x̄))/∂x da, ``n_steps`` Gauss-Legendre points
      (Sundararajan et al. 2017); the attributions sum to f_t(x) − f_t(x̄) (completeness);
    * ``occlusion``:  f_t(x) − f_t(x with a ``window`` patch set to the baseline), sliding with stride 1
      (Zeiler & Fergus 2014);
    * ``shapley_sampling``:  Shapley values of the features of ``feature_mask`` (default: every pixel),
      averaged over ``n_samples`` random permutations (Štrumbelj & Kononenko 2010);
    * ``kernel_shap``:  KernelSHAP's weighted linear regression on ``n_samples`` coalitions (Lundberg & Lee 2017).

    ``target``: one class index or one per input. The baseline x̄ (default 0, black) is what "absent" means.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    from captum import attr as ca

    dev = get_device(device)
    model = model.to(dev).eval()
    inputs = inputs.to(dev)
    target = _check_target(model, inputs, target)
    if isinstance(baseline, torch.Tensor):
        baseline = baseline.to(dev)
    torch.manual_seed(seed)
    if method in ("saliency", "input_x_gradient", "integrated_gradients"):
        inputs = inputs.detach().clone().requires_grad_(True)
    if method == "saliency":
        out = ca.Saliency(model).attribute(inputs, target=target)
    elif method == "input_x_gradient":
        out = ca.InputXGradient(model).attribute(inputs, target=target)
    elif method == "integrated_gradients":
        out = ca.IntegratedGradients(model).attribute(inputs, baselines=baseline, target=target, n_steps=n_steps,
                                                      internal_batch_size=4096)
    elif method == "occlusion":
        out = ca.Occlusion(model).attribute(inputs, sliding_window_shapes=tuple(window), baselines=baseline,
                                            target=target, perturbations_per_eval=64)
    else:
        if feature_mask is None:
            feature_mask = torch.arange(inputs[0].numel(), device=dev).reshape(inputs.shape[1:])
        feature_mask = feature_mask.to(dev).long()
        if feature_mask.shape != inputs.shape[1:] and feature_mask.shape != inputs.shape[-feature_mask.dim():]:
            raise ValueError(f"feature_mask of shape {tuple(feature_mask.shape)} does not fit inputs {tuple(inputs.shape)}")
        fm = feature_mask.expand(inputs.shape[1:]).unsqueeze(0)
        if method == "shapley_sampling":
            out = ca.ShapleyValueSampling(model).attribute(inputs, baselines=baseline, target=target, feature_mask=fm,
                                                           n_samples=n_samples, perturbations_per_eval=64)
        else:
            rows = [ca.KernelShap(model).attribute(inputs[i:i + 1], baselines=baseline, target=target[i:i + 1],
                                                   feature_mask=fm, n_samples=n_samples, perturbations_per_eval=64)
                    for i in range(inputs.shape[0])]
            out = torch.cat(rows)
    return out.detach()


def random_attributions(like: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Uniform random scores shaped like ``like``: the ordering every real method must beat."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(like.shape, generator=g).to(like.device)


def feature_order(attributions: torch.Tensor) -> torch.Tensor:
    """Per example, the flat feature indices sorted by attribution, most important first (stable on ties)."""
    flat = attributions.flatten(1)
    return torch.sort(flat, dim=1, descending=True, stable=True).indices


@torch.no_grad()
def deletion_curve(model: nn.Module, inputs: torch.Tensor, target, attributions: torch.Tensor, mode: str = "deletion",
                   baseline: float = 0.0, n_steps: int | None = None, batch_size: int = 8192, device=None) -> torch.Tensor:
    """Deletion / insertion curves (Petsiuk et al. 2018): p(target) as features are removed / inserted in
    attribution order.

    With k_0 = 0 < k_1 < … < k_n = D features (``n_steps`` = n, default D), the deletion curve at step i is
    p_t(x with its top-k_i features set to ``baseline``) and the insertion curve p_t(baseline with the top-k_i
    features of x). All B·(n+1) copies are evaluated in batches. Returns ``[B, n + 1]``.
    A faithful attribution makes the deletion curve fall fast (low AUC) and the insertion curve rise fast (high AUC).
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if attributions.shape != inputs.shape:
        raise ValueError(f"attributions {tuple(attributions.shape)} must have the shape of inputs {tuple(inputs.shape)}")
    dev = get_device(device)
    model = model.to(dev).eval()
    inputs, attributions = inputs.to(dev), attributions.to(dev)
    target = _check_target(model, inputs, target)
    B, D = inputs.shape[0], inputs[0].numel()
    n = D if n_steps is None else int(n_steps)
    if not 1 <= n <= D:
        raise ValueError(f"n_steps must be between 1 and the number of features {D}, got {n}")
    ks = torch.round(torch.linspace(0, D, n + 1, device=dev)).long()
    order = feature_order(attributions)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(D, device=dev).expand(B, D))  # rank[b, j] = position of feature j
    chosen = rank[:, None, :] < ks[None, :, None]  # [B, n+1, D]: feature among the top-k
    x = inputs.flatten(1)[:, None, :]
    base = torch.full_like(x, float(baseline))
    copies = torch.where(chosen, base, x) if mode == "deletion" else torch.where(chosen, x, base)
    copies = copies.reshape(B * (n + 1), *inputs.shape[1:])
    probs = torch.cat([torch.softmax(model(copies[i:i + batch_size]), -1) for i in range(0, len(copies), batch_size)])
    return probs.reshape(B, n + 1, -1).gather(2, target[:, None, None].expand(B, n + 1, 1))[..., 0]


def curve_auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under a curve sampled at n + 1 evenly spaced points of [0, 1] (trapezoid rule): Σ (c_i + c_{i+1}) / 2n."""
    curve = torch.as_tensor(curve)
    if curve.shape[-1] < 2:
        raise ValueError("a curve needs at least two points")
    n = curve.shape[-1] - 1
    return (curve[..., :-1] + curve[..., 1:]).sum(-1) / (2 * n)


def compactness(insertion: torch.Tensor, fraction: float = 0.9) -> torch.Tensor:
    """How many inserted features (steps of the curve) are needed before p(target) first reaches
    ``fraction`` × its value on the full input. Returns one integer per curve."""
    target = fraction * insertion[..., -1:]
    reached = insertion >= target
    return reached.float().argmax(-1)


def precision_at_k(attributions: torch.Tensor, relevant: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Fraction of the top-k features by |attribution| that lie in the planted ``relevant`` set (k = its size)."""
    rel = relevant.flatten().to(attributions.device)
    k = int(rel.sum()) if k is None else k
    top = feature_order(attributions.abs())[:, :k]
    return rel[top].float().mean(1)


def infidelity_score(model: nn.Module, inputs: torch.Tensor, target, attributions: torch.Tensor,
                     noise_std: float = 0.1, n_perturb: int = 32, seed: int = 0, device=None) -> torch.Tensor:
    """captum's infidelity (Yeh et al. 2019): E_I[(Iᵀφ(x) − (f(x) − f(x − I)))²] for Gaussian perturbations
    I ~ N(0, σ²), with the attribution rescaled by its best scalar fit (``normalize=True``), so methods whose
    maps differ only in scale compare fairly. Lower is better. One value per input."""
    from captum.metrics import infidelity

    dev = get_device(device)
    model = model.to(dev).eval()
    inputs, attributions = inputs.to(dev), attributions.to(dev)
    target = _check_target(model, inputs, target)
    torch.manual_seed(seed)

    def perturb(x):
        noise = noise_std * torch.randn_like(x)
        return noise, x - noise

    return infidelity(model, perturb, inputs, attributions, target=target, n_perturb_samples=n_perturb,
                      normalize=True).detach()


def sensitivity_score(model: nn.Module, inputs: torch.Tensor, target, method: str, radius: float = 0.05,
                      n_perturb: int = 8, seed: int = 0, device=None, **kwargs) -> torch.Tensor:
    """captum's sensitivity_max (Yeh et al. 2019): max over inputs x′ with ‖x′ − x‖_∞ ≤ r (``n_perturb``
    uniform samples) of ‖φ(x′) − φ(x)‖ / ‖φ(x)‖. Lower means a more stable explanation. One value per input."""
    from captum.metrics import sensitivity_max

    dev = get_device(device)
    model = model.to(dev).eval()
    inputs = inputs.to(dev)
    target = _check_target(model, inputs, target)
    torch.manual_seed(seed)

    def explain(x, target):  # captum hands inputs over as a tuple
        single = x[0] if isinstance(x, tuple) else x
        out = attribute(model, single, target, method, device=dev, **kwargs)
        return (out,) if isinstance(x, tuple) else out

    return sensitivity_max(explain, inputs, perturb_radius=radius, n_perturb_samples=n_perturb, target=target).detach()


# ------------------------------------------------------------------------------------------ sanity checks


def randomize_layers(model: nn.Module, names: Sequence[str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` whose named submodules get fresh random weights (``reset_parameters``)."""
    new = copy.deepcopy(model)
    modules = dict(new.named_modules())
    torch.manual_seed(seed)
    for name in names:
        if name not in modules or not hasattr(modules[name], "reset_parameters"):
            raise ValueError(f"no resettable layer named {name!r}; layers: {[n for n, m in modules.items() if hasattr(m, 'reset_parameters')]}")
        modules[name].reset_parameters()
    return new


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between the flattened rows of ``a`` and ``b`` (one value per row)."""
    def ranks(x):
        x = x.flatten(1)
        r = torch.empty_like(x)
        r.scatter_(1, torch.argsort(x, dim=1, stable=True), torch.arange(x.shape[1], dtype=x.dtype, device=x.device).expand_as(x))
        return r
    ra, rb = ranks(a.float()), ranks(b.float())
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)


def cascading_randomization(model: nn.Module, layers_top_down: Sequence[str], inputs: torch.Tensor, target,
                            methods: Sequence[str], seed: int = 0, device=None, **kwargs) -> dict[str, torch.Tensor]:
    """Adebayo et al. (2018): randomise the layers from the output down, one more at each stage, and measure
    how much each explanation still resembles the original one (Spearman correlation of |attribution|).

    Returns ``{method: [stages + 1, B]}`` (stage 0 is the trained model, correlation 1). An explanation whose
    correlation stays high while the weights are destroyed does not explain the model.
    """
    out = {}
    originals = {m: attribute(model, inputs, target, m, device=device, **kwargs).abs() for m in methods}
    stages = [copy.deepcopy(model)] + [randomize_layers(model, layers_top_down[:i + 1], seed=seed)
                                       for i in range(len(layers_top_down))]
    for m in methods:
        rows = [rank_correlation(originals[m], attribute(s, inputs, target, m, device=device, **kwargs).abs())
                for s in stages]
        out[m] = torch.stack(rows)
    return out


# ---------------------------------------------------------------------------------------------------- MuS


def patch_groups(size: int = 8, patch: int = 2) -> torch.Tensor:
    """A ``[size, size]`` map of feature ids: non-overlapping ``patch``×``patch`` squares, numbered row by row."""
    if size % patch:
        raise ValueError(f"patch {patch} must divide the image size {size}")
    r = torch.arange(size) // patch
    return r[:, None] * (size // patch) + r[None, :]


def _check_lambda(lam: float) -> None:
    if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not 0 < lam <= 1:
        raise ValueError(f"λ must be a number in (0, 1] (the probability of keeping a feature), got {lam!r}")


def mus_masks(n_features: int, lam: float, q: int = 64, seed: int = 0) -> torch.Tensor:
    """Derandomised (quantised) MuS masks, ``[q, n_features]`` bool.

    Xue et al. (2023): with a fixed seeded offset u_j ∈ {0, 1/q, …, (q−1)/q} per feature and v running over
    {0, 1/q, …, (q−1)/q}, s_j(v) = 1[(v + u_j) mod 1 < λ]. Each s_j is Bernoulli(λ) over v (λq must be an integer),
    so the smoothed classifier f(x) = E_s h(x ⊙ s) is an exact average over these q masks, and the union bound
    P(s_j = 1 for some j where α, α′ differ) ≤ λ‖α − α′‖₁ makes f λ-Lipschitz in the mask without sampling error.
    """
    _check_lambda(lam)
    if not isinstance(q, int) or q < 1:
        raise ValueError(f"q must be a positive integer, got {q!r}")
    if abs(lam * q - round(lam * q)) > 1e-9:
        raise ValueError(f"λ·q must be an integer so each mask entry is exactly Bernoulli(λ); got λ={lam}, q={q}")
    g = torch.Generator().manual_seed(seed)
    u = torch.randint(0, q, (n_features,), generator=g)
    v = torch.arange(q)[:, None]
    return ((v + u[None, :]) % q) < round(lam * q)


def _check_alpha(alpha: torch.Tensor, batch: int, n_features: int) -> torch.Tensor:
    alpha = torch.as_tensor(alpha)
    if alpha.dim() == 1:
        alpha = alpha.expand(batch, -1)
    if alpha.dim() != 2 or alpha.shape != (batch, n_features):
        raise ValueError(f"mask α must have shape [{n_features}] or [{batch}, {n_features}] (one entry per feature "
                         f"group), got {tuple(alpha.shape)}")
    return alpha


class MuS(nn.Module):
    """The MuS smoothed classifier f(x ⊙ α) = (1/q) Σ_v softmax h(x ⊙ α ⊙ s(v)) (Xue et al. 2023).

    ``groups`` (``[H, W]`` feature ids, e.g. :func:`patch_groups`) says which pixels form each maskable feature.
    All B·q masked copies go through h in batches of ``batch_size`` copies. By default that is 96 on a CPU, where
    small convolution batches stay in cache (benchmarks/attribution.md: on 2 cores the DigitsCNN evaluates 64-copy
    batches about twice as fast per copy as 1,024-copy ones), and 8,192 on a GPU. ``forward(x, alpha=None)``
    returns probabilities ``[B, classes]``; α (``[F]`` or ``[B, F]``, 0/1) is the explanation mask, all ones by
    default.
    """

    def __init__(self, base: nn.Module, lam: float, groups: torch.Tensor, q: int = 64, seed: int = 0,
                 batch_size: int | None = None):
        super().__init__()
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer (masked copies per forward pass), got {batch_size!r}")
        self.base, self.lam, self.q, self.batch_size = base, lam, q, batch_size
        self.register_buffer("groups", groups.long())
        self.n_features = int(groups.max()) + 1
        self.register_buffer("masks", mus_masks(self.n_features, lam, q, seed).float())

    def forward(self, x: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        B = x.shape[0]
        if x.shape[-2:] != self.groups.shape:
            raise ValueError(f"images {tuple(x.shape[-2:])} do not match the feature map {tuple(self.groups.shape)}")
        alpha = torch.ones(B, self.n_features, device=x.device) if alpha is None else \
            _check_alpha(alpha, B, self.n_features).to(x.device).float()
        keep = alpha[:, None, :] * self.masks[None]  # [B, q, F]
        pix = keep[..., self.groups]  # [B, q, H, W]
        copies = (x[:, None] * pix[:, :, None]).reshape(B * self.q, *x.shape[1:])
        chunk = self.batch_size or (8192 if x.device.type == "cuda" else 96)
        with torch.no_grad():
            probs = torch.cat([torch.softmax(self.base(copies[i:i + chunk]), -1)
                               for i in range(0, len(copies), chunk)])
        return probs.reshape(B, self.q, -1).mean(1)


@torch.no_grad()
def mus_probs_loop(base: nn.Module, x: torch.Tensor, masks: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """The naive MuS: one forward pass per mask (what :class:`MuS` batches). For the benchmark and tests."""
    total = 0
    for s in masks.float():
        total = total + torch.softmax(base(x * s[groups.long()]), -1)
    return total / masks.shape[0]


def certified_radius(probs: torch.Tensor, lam: float) -> torch.Tensor:
    """The MuS certificate (Xue et al. 2023): r = (p_top − p_second) / (2λ).

    f is λ-Lipschitz in the mask, so adding up to r features to α moves every class probability by at most λr
    and the top class keeps the lead. Returns one radius per row of ``probs`` (in features; floor it to count them).
    """
    _check_lambda(lam)
    top2 = probs.topk(2, dim=-1).values
    return (top2[..., 0] - top2[..., 1]) / (2 * lam)


def supersets_within(alpha: torch.Tensor, radius: int) -> torch.Tensor:
    """Every α′ ≥ α (0/1, same length) that switches on at most ``radius`` extra features: ``[M, F]`` bool,
    α itself first. M = Σ_{k≤r} C(#zeros of α, k)."""
    alpha = torch.as_tensor(alpha).bool()
    if alpha.dim() != 1:
        raise ValueError(f"α must be one mask of shape [F], got {tuple(alpha.shape)}")
    if radius < 0:
        raise ValueError(f"radius must be ≥ 0, got {radius}")
    zeros = (~alpha).nonzero().flatten().tolist()
    rows = []
    for k in range(min(int(radius), len(zeros)) + 1):
        for extra in itertools.combinations(zeros, k):
            a = alpha.clone()
            a[list(extra)] = True
            rows.append(a)
    return torch.stack(rows)


def verify_certificate(classify: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                       alpha: torch.Tensor, radius: int) -> tuple[int, int]:
    """Exhaustive check of a stability claim for one image ``x`` ([1, C, H, W]) and explanation ``α`` ([F]):
    evaluate ``classify(x_batch, alpha_batch) → probs`` on every superset within ``radius`` in one batch and
    count how many change the predicted class. Returns ``(supersets checked, violations)``."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image [1, C, H, W], got {tuple(x.shape)}")
    sup = supersets_within(alpha, radius)
    probs = classify(x.expand(len(sup), *x.shape[1:]), sup.float().to(x.device))
    pred = probs.argmax(-1)
    return len(sup) - 1, int((pred[1:] != pred[0]).sum())


def masked_classifier(model: nn.Module, groups: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """classify(x, α) = softmax h(x ⊙ α) for an unsmoothed model, in the same calling form as :class:`MuS`."""
    groups = groups.long()

    @torch.no_grad()
    def classify(x, alpha):
        alpha = _check_alpha(alpha, x.shape[0], int(groups.max()) + 1).to(x.device).float()
        return torch.softmax(model(x * alpha[:, groups.to(x.device)].unsqueeze(1)), -1)

    return classify


__all__.append("masked_classifier")
