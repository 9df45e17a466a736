"""Feature attribution and how to evaluate it (notebook 01).

* data and models: scikit-learn's 8×8 digits (:func:`load_digits`), a synthetic image task whose label depends
  only on known pixels (:func:`make_pixel_task`), a small CNN split into spatial features and a decision head
  (:class:`DigitsCNN`), a trainer (:func:`train_classifier`);
* attributions through ``captum`` (:func:`attribute`: Saliency, Input×Gradient, Integrated Gradients,
  Occlusion, Shapley value sampling, KernelSHAP, and the signed gradient that saliency takes the absolute value of);
* evaluation: deletion and insertion curves and their AUC (:func:`deletion_curve`, :func:`curve_auc`),
  compactness, captum's infidelity (normalised or raw) and sensitivity, the cascading model-parameter
  randomisation sanity check (Adebayo et al. 2018), precision against planted relevant pixels;
* certified stability by multiplicative smoothing (MuS, Xue, Alur & Wong 2023): derandomised masks
  (:func:`mus_masks`), the smoothed classifier (:class:`MuS`), the certified radius and an exhaustive check
  of the certificate over all supersets of an explanation (:func:`verify_certificate`).

Every public function refuses bad input (wrong types and shapes, NaN/inf, out-of-range values) with an error
naming the argument.
"""

from __future__ import annotations

import copy
import itertools
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from labkit.runtime import get_device
from labkit.validation import integer as _integer, number as _number, tensor as _tensor, torch_module as _module

__all__ = [
    "load_digits", "make_pixel_task", "DigitsCNN", "PixelMLP", "train_classifier", "accuracy", "predict_proba",
    "METHODS", "attribute", "random_attributions", "feature_order", "deletion_curve", "curve_auc", "compactness",
    "precision_at_k", "infidelity_score", "sensitivity_score", "randomize_layers", "rank_correlation",
    "cascading_randomization", "patch_groups", "mus_masks", "MuS", "certified_radius", "supersets_within",
    "verify_certificate", "mus_probs_loop", "integrated_gradients",
]

# ----------------------------------------------------------------------------------- argument checks
# Every public function refuses bad input with an error that names the argument and what is expected.


def _groups(groups) -> torch.Tensor:
    """A ``[H, W]`` integer map of feature ids 0 … F−1, each id used (e.g. :func:`patch_groups`)."""
    groups = _tensor("groups", groups, dims=2, floating=False)
    if groups.dtype == torch.bool or groups.is_complex() or groups.is_floating_point():
        raise TypeError(f"groups must be an integer tensor of feature ids, got dtype {groups.dtype}")
    ids = groups.unique()
    if ids.min() < 0 or len(ids) != int(ids.max()) + 1:
        raise ValueError(f"groups must number the features 0 … F−1 with every id used, got ids {ids.tolist()[:20]}")
    return groups.long()


# ----------------------------------------------------------------------------------------------- data


def load_digits(test_size: float = 0.25, seed: int = 0, device=None) -> dict[str, torch.Tensor]:
    """scikit-learn's 8×8 digits (1797 images, 10 classes) as tensors ``[N, 1, 8, 8]`` scaled to [0, 1].

    Returns ``{"X_train", "y_train", "X_test", "y_test"}``; the split is stratified and seeded.
    """
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    test_size = _number("test_size", test_size, lo=0, hi=1, lo_open=True, hi_open=True)
    seed = _integer("seed", seed)
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
    n, size = _integer("n", n), _integer("size", size)
    if n < 1 or size < 7:
        raise ValueError(f"need n ≥ 1 and size ≥ 7 (the planted pixels lie inside 7×7), got n={n}, size={size}")
    g = torch.Generator().manual_seed(_integer("seed", seed))
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
        n_classes, width = _integer("n_classes", n_classes, lo=2), _integer("width", width, lo=1)
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, width, 3, padding=1)
        self.head = nn.Linear(width * 16, n_classes)
        self.width = width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): ``[B, 1, 8, 8] → [B, width, 4, 4]``."""
        x = _tensor("x", x, dims=4)
        if x.shape[1:] != (1, 8, 8):
            raise ValueError(f"x must be a batch of 8×8 grey images [B, 1, 8, 8], got shape {tuple(x.shape)}")
        return F.avg_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)

    def decide(self, feats: torch.Tensor) -> torch.Tensor:
        """g(f): ``[B, width, 4, 4] → logits [B, classes]``."""
        feats = _tensor("feats", feats, dims=4)
        if feats.shape[1:] != (self.width, 4, 4):
            raise ValueError(f"feats must be feature grids [B, {self.width}, 4, 4] (from .features), got {tuple(feats.shape)}")
        return self.head(feats.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decide(self.features(x))


class PixelMLP(nn.Module):
    """A two-layer MLP on flattened images (for the synthetic pixel task)."""

    def __init__(self, n_pixels: int = 64, hidden: int = 64, n_classes: int = 2):
        super().__init__()
        n_pixels, hidden = _integer("n_pixels", n_pixels, lo=1), _integer("hidden", hidden, lo=1)
        n_classes = _integer("n_classes", n_classes, lo=2)
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
    _module("model", model)
    X = _tensor("X", X, min_dims=2)
    y = _tensor("y", y, dims=1, floating=False)
    if y.dtype == torch.bool or y.is_complex() or y.is_floating_point() or (y < 0).any():
        raise ValueError(f"y must hold class indices 0, 1, … (an integer tensor), got dtype {y.dtype}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    epochs, batch_size = _integer("epochs", epochs, lo=0), _integer("batch_size", batch_size, lo=1)
    lr = _number("lr", lr, lo=0, lo_open=True)
    weight_decay = _number("weight_decay", weight_decay, lo=0)
    seed = _integer("seed", seed)
    if keep_prob is not None:
        _check_lambda(keep_prob)
        if groups is None:
            raise ValueError("keep_prob needs `groups` (e.g. patch_groups(8, 2)) to know which pixels form a feature")
        groups = _groups(groups)
        if groups.shape != X.shape[-2:]:
            raise ValueError(f"groups {tuple(groups.shape)} must match the image size {tuple(X.shape[-2:])}")
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
    _module("model", model)
    X = _tensor("X", X, min_dims=2)
    batch_size = _integer("batch_size", batch_size, lo=1)
    dev = next(model.parameters()).device
    return torch.cat([torch.softmax(model(X[i:i + batch_size].to(dev)), -1) for i in range(0, len(X), batch_size)])


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows where argmax model(X) equals y."""
    X = _tensor("X", X, min_dims=2)
    y = _tensor("y", y, dims=1, floating=False)
    if y.shape[0] != len(X):
        raise ValueError(f"y must hold one label per row of X ({len(X)}), got {y.shape[0]}")
    return (predict_proba(model, X).argmax(-1).cpu() == y.cpu()).float().mean().item()


# ------------------------------------------------------------------------------------------ attribution

METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "occlusion", "shapley_sampling", "kernel_shap")
#: Methods :func:`attribute` accepts beyond :data:`METHODS`: ``"gradient"`` is saliency without the absolute value.
EXTRA_METHODS = ("gradient",)


def _n_outputs(model: nn.Module, inputs: torch.Tensor) -> int:
    with torch.no_grad():
        return model(inputs[:1]).shape[-1]


def _check_target(model: nn.Module, inputs: torch.Tensor, target) -> torch.Tensor:
    _module("model", model)
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point() or inputs.dim() < 2:
        raise TypeError("inputs must be a floating-point tensor with a batch axis first, e.g. [B, 1, 8, 8]")
    _tensor("inputs", inputs)  # non-empty, no NaN or inf: an attribution of a NaN input is meaningless
    n_out = _n_outputs(model, inputs)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer, torch.Tensor, list, tuple, np.ndarray)):
        raise TypeError(f"target must hold integer class indices (one, or one per input), got "
                        f"{type(target).__name__}: {target!r}")
    t = torch.as_tensor(target, device=inputs.device)
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
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

    * ``saliency``:  |∂f_t/∂x| (Simonyan et al. 2014; captum's default ``abs=True``);
    * ``gradient``:  ∂f_t/∂x, the signed gradient (saliency without the absolute value: it says whether raising a
      pixel raises or lowers the logit, which a first-order model of f needs);
    * ``input_x_gradient``:  x ⊙ ∂f_t/∂x (Shrikumar et al. 2016);
    * ``integrated_gradients``:  (x − x̄) ⊙ ∫₀¹ ∂f_t(x̄ + a(x − x̄))/∂x da, ``n_steps`` Gauss-Legendre points
      (Sundararajan et al. 2017); the attributions sum to f_t(x) − f_t(x̄) (completeness);
    * ``occlusion``:  f_t(x) − f_t(x with a ``window`` patch set to the baseline), sliding with stride 1
      (Zeiler & Fergus 2014);
    * ``shapley_sampling``:  Shapley values of the features of ``feature_mask`` (default: every pixel),
      averaged over ``n_samples`` random permutations (Štrumbelj & Kononenko 2010);
    * ``kernel_shap``:  KernelSHAP's weighted linear regression on ``n_samples`` coalitions (Lundberg & Lee 2017).

    ``target``: one class index or one per input. The baseline x̄ (default 0, black) is what "absent" means.
    Inputs and baselines with NaN or inf are refused (their attributions would be meaningless).
    """
    if method not in METHODS + EXTRA_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS + EXTRA_METHODS}")
    from captum import attr as ca

    dev = get_device(device)
    _module("model", model)
    model = model.to(dev).eval()
    target = _check_target(model, inputs.to(dev) if isinstance(inputs, torch.Tensor) else inputs, target)
    inputs = inputs.to(dev)
    if isinstance(baseline, torch.Tensor):
        baseline = _tensor("baseline", baseline)
        try:
            torch.broadcast_shapes(baseline.shape, inputs.shape)
        except RuntimeError:
            raise ValueError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to inputs "
                             f"{tuple(inputs.shape)}") from None
        baseline = baseline.to(dev)
    else:
        baseline = _number("baseline", baseline)
    n_steps, n_samples = _integer("n_steps", n_steps, lo=1), _integer("n_samples", n_samples, lo=1)
    if method == "occlusion":
        if not isinstance(window, (tuple, list)) or len(window) != inputs.dim() - 1:
            raise ValueError(f"window must give one size per input axis after the batch ({inputs.dim() - 1}), "
                             f"e.g. (1, 2, 2), got {window!r}")
        window = tuple(_integer(f"window[{i}]", w, lo=1, hi=inputs.shape[i + 1]) for i, w in enumerate(window))
    torch.manual_seed(_integer("seed", seed))
    if method in ("saliency", "gradient", "input_x_gradient", "integrated_gradients"):
        inputs = inputs.detach().clone().requires_grad_(True)
    if method == "saliency":
        out = ca.Saliency(model).attribute(inputs, target=target)
    elif method == "gradient":
        out = ca.Saliency(model).attribute(inputs, target=target, abs=False)
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
        feature_mask = _tensor("feature_mask", feature_mask, floating=False)
        if feature_mask.dtype == torch.bool or feature_mask.is_complex() or (feature_mask < 0).any():
            raise ValueError(f"feature_mask must hold non-negative integer feature ids, got dtype {feature_mask.dtype}")
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


IG_RULES = ("left", "right", "middle")


def integrated_gradients(model: nn.Module, inputs: torch.Tensor, target, baseline: float | torch.Tensor = 0.0,
                         n_steps: int = 32, rule: str = "middle", device=None) -> torch.Tensor:
    """Integrated Gradients as a Riemann sum over the straight path x̄ → x (Sundararajan et al. 2017):

        φ_i = (x_i − x̄_i) · (1/m) Σ_{k=1..m} ∂f_t(x̄ + α_k (x − x̄))/∂x_i,

    with the ``middle`` rule α_k = (k − ½)/m (also ``left`` (k − 1)/m or ``right`` k/m), computed by
    ``captum``'s ``IntegratedGradients(method="riemann_<rule>")``. Same shape as ``inputs``; f_t is the logit of
    class ``target`` (one index or one per input). Completeness: Σ_i φ_i → f_t(x) − f_t(x̄) as m grows (exact for
    a model that is linear or quadratic along the path with the middle rule). :func:`attribute` uses captum's
    default Gauss-Legendre points instead; both converge to the same integral.
    """
    if rule not in IG_RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {IG_RULES}")
    from captum import attr as ca

    dev = get_device(device)
    _module("model", model)
    model = model.to(dev).eval()
    inputs = _tensor("inputs", inputs, min_dims=2)
    target = _check_target(model, inputs.to(dev), target)
    inputs = inputs.to(dev).detach().clone().requires_grad_(True)
    if isinstance(baseline, torch.Tensor):
        baseline = _tensor("baseline", baseline)
        try:
            torch.broadcast_shapes(baseline.shape, inputs.shape)
        except RuntimeError:
            raise ValueError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to inputs "
                             f"{tuple(inputs.shape)}") from None
        baseline = baseline.to(dev).expand_as(inputs).contiguous()
    else:
        baseline = _number("baseline", baseline)
    n_steps = _integer("n_steps", n_steps, lo=2)  # captum needs at least two points
    out = ca.IntegratedGradients(model).attribute(inputs, baselines=baseline, target=target, n_steps=n_steps,
                                                  method=f"riemann_{rule}", internal_batch_size=4096)
    return out.detach()


def random_attributions(like: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Uniform random scores shaped like ``like``: the ordering every real method must beat."""
    like = _tensor("like", like, finite=False)
    g = torch.Generator().manual_seed(_integer("seed", seed))
    return torch.rand(like.shape, generator=g).to(like.device)


def feature_order(attributions: torch.Tensor) -> torch.Tensor:
    """Per example, the flat feature indices sorted by attribution, most important first (stable on ties)."""
    attributions = _tensor("attributions", attributions, min_dims=2)
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
    attributions = _tensor("attributions", attributions, min_dims=2)
    _tensor("inputs", inputs, min_dims=2)
    baseline = _number("baseline", baseline)
    batch_size = _integer("batch_size", batch_size, lo=1)
    if attributions.shape != inputs.shape:
        raise ValueError(f"attributions {tuple(attributions.shape)} must have the shape of inputs {tuple(inputs.shape)}")
    dev = get_device(device)
    model = model.to(dev).eval()
    inputs, attributions = inputs.to(dev), attributions.to(dev)
    target = _check_target(model, inputs, target)
    B, D = inputs.shape[0], inputs[0].numel()
    n = D if n_steps is None else _integer("n_steps", n_steps)
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
    if not isinstance(curve, (torch.Tensor, np.ndarray, list, tuple)):
        raise TypeError(f"curve must be a tensor (or array) of curve values, got {type(curve).__name__}")
    curve = _tensor("curve", torch.as_tensor(curve, dtype=torch.float64) if not isinstance(curve, torch.Tensor) else curve,
                    min_dims=1)
    if curve.shape[-1] < 2:
        raise ValueError("a curve needs at least two points")
    n = curve.shape[-1] - 1
    return (curve[..., :-1] + curve[..., 1:]).sum(-1) / (2 * n)


def compactness(insertion: torch.Tensor, fraction: float = 0.9) -> torch.Tensor:
    """How many inserted features (steps of the curve) are needed before p(target) first reaches
    ``fraction`` × its value on the full input. Returns one integer per curve."""
    insertion = _tensor("insertion", insertion, min_dims=1)
    fraction = _number("fraction", fraction, lo=0, hi=1, lo_open=True)
    target = fraction * insertion[..., -1:]
    reached = insertion >= target
    return reached.float().argmax(-1)


def precision_at_k(attributions: torch.Tensor, relevant: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Fraction of the top-k features by |attribution| that lie in the planted ``relevant`` set (k = its size)."""
    attributions = _tensor("attributions", attributions, min_dims=2)
    relevant = _tensor("relevant", relevant, floating=False)
    if relevant.dtype != torch.bool:
        raise TypeError(f"relevant must be a bool mask of the planted features, got dtype {relevant.dtype}")
    if relevant.numel() != attributions[0].numel():
        raise ValueError(f"relevant has {relevant.numel()} entries but each attribution map has "
                         f"{attributions[0].numel()} features")
    rel = relevant.flatten().to(attributions.device)
    if not rel.any():
        raise ValueError("relevant marks no feature: precision against an empty ground truth is undefined")
    k = int(rel.sum()) if k is None else _integer("k", k, lo=1, hi=rel.numel())
    top = feature_order(attributions.abs())[:, :k]
    return rel[top].float().mean(1)


def infidelity_score(model: nn.Module, inputs: torch.Tensor, target, attributions: torch.Tensor,
                     noise_std: float = 0.1, n_perturb: int = 32, seed: int = 0, normalize: bool = True,
                     device=None) -> torch.Tensor:
    """captum's infidelity (Yeh et al. 2019): INFD(φ) = E_I[(Iᵀφ(x) − (f(x) − f(x − I)))²] for Gaussian
    perturbations I ~ N(0, σ²) (``noise_std`` σ), f the logit of ``target``. Lower is better. One value per input.

    Two conventions, and the choice can decide a comparison:

    * ``normalize=True`` (captum's option, the default here): φ is first rescaled by its best scalar fit
      β* = E[Iᵀφ·Δf] / E[(Iᵀφ)²], i.e. INFD = E[(β*Iᵀφ − Δf)²], so maps that differ only in scale compare fairly;
    * ``normalize=False`` (Yeh et al.'s definition): φ is used as given, so its *units* count too — a gradient
      predicts Δf = Iᵀ∇f to first order, while a map such as |∇f| or x ⊙ ∇f is not in units of "change of f
      per unit of input" and pays for it.
    """
    from captum.metrics import infidelity

    dev = get_device(device)
    _module("model", model)
    model = model.to(dev).eval()
    inputs = _tensor("inputs", inputs, min_dims=2).to(dev)
    attributions = _tensor("attributions", attributions, min_dims=2).to(dev)
    if attributions.shape != inputs.shape:
        raise ValueError(f"attributions {tuple(attributions.shape)} must have the shape of inputs {tuple(inputs.shape)}")
    target = _check_target(model, inputs, target)
    noise_std = _number("noise_std", noise_std, lo=0, lo_open=True)
    n_perturb = _integer("n_perturb", n_perturb, lo=1)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be True or False, got {normalize!r}")
    torch.manual_seed(_integer("seed", seed))

    def perturb(x):
        noise = noise_std * torch.randn_like(x)
        return noise, x - noise

    return infidelity(model, perturb, inputs, attributions, target=target, n_perturb_samples=n_perturb,
                      normalize=normalize).detach()


def sensitivity_score(model: nn.Module, inputs: torch.Tensor, target, method: str, radius: float = 0.05,
                      n_perturb: int = 8, seed: int = 0, device=None, **kwargs) -> torch.Tensor:
    """captum's sensitivity_max (Yeh et al. 2019): max over inputs x′ with ‖x′ − x‖_∞ ≤ r (``n_perturb``
    uniform samples) of ‖φ(x′) − φ(x)‖ / ‖φ(x)‖. Lower means a more stable explanation. One value per input."""
    from captum.metrics import sensitivity_max

    dev = get_device(device)
    _module("model", model)
    if method not in METHODS + EXTRA_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS + EXTRA_METHODS}")
    model = model.to(dev).eval()
    inputs = _tensor("inputs", inputs, min_dims=2).to(dev)
    target = _check_target(model, inputs, target)
    radius = _number("radius", radius, lo=0, lo_open=True)
    n_perturb = _integer("n_perturb", n_perturb, lo=1)
    torch.manual_seed(_integer("seed", seed))

    def explain(x, target):  # captum hands inputs over as a tuple
        single = x[0] if isinstance(x, tuple) else x
        out = attribute(model, single, target, method, device=dev, **kwargs)
        return (out,) if isinstance(x, tuple) else out

    return sensitivity_max(explain, inputs, perturb_radius=radius, n_perturb_samples=n_perturb, target=target).detach()


# ------------------------------------------------------------------------------------------ sanity checks


def randomize_layers(model: nn.Module, names: Sequence[str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` whose named submodules get fresh random weights (``reset_parameters``)."""
    _module("model", model)
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be a list of layer names (strings), e.g. ['head', 'conv2'], got {names!r}")
    seed = _integer("seed", seed)
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
    a, b = _tensor("a", a, min_dims=2), _tensor("b", b, min_dims=2)
    if a.shape[0] != b.shape[0] or a[0].numel() != b[0].numel():
        raise ValueError(f"a and b must have the same number of rows and features, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a[0].numel() < 2:
        raise ValueError("each row needs at least two features to rank")

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
    _module("model", model)
    if isinstance(layers_top_down, str) or not isinstance(layers_top_down, (list, tuple)) or not layers_top_down:
        raise TypeError(f"layers_top_down must be a non-empty list of layer names, got {layers_top_down!r}")
    if isinstance(methods, str) or not isinstance(methods, (list, tuple)) or not methods:
        raise TypeError(f"methods must be a non-empty list of method names, e.g. ['saliency'], got {methods!r}")
    for m in methods:
        if m not in METHODS + EXTRA_METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {METHODS + EXTRA_METHODS}")
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
    size, patch = _integer("size", size, lo=1), _integer("patch", patch, lo=1)
    if size % patch:
        raise ValueError(f"patch {patch} must divide the image size {size}")
    r = torch.arange(size) // patch
    return r[:, None] * (size // patch) + r[None, :]


def _check_lambda(lam: float) -> None:
    if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not 0 < lam <= 1:  # (NaN fails 0 < lam)
        raise ValueError(f"λ must be a number in (0, 1] (the probability of keeping a feature), got {lam!r}")


def mus_masks(n_features: int, lam: float, q: int = 64, seed: int = 0) -> torch.Tensor:
    """Derandomised (quantised) MuS masks, ``[q, n_features]`` bool.

    Xue et al. (2023): with a fixed seeded offset u_j ∈ {0, 1/q, …, (q−1)/q} per feature and v running over
    {0, 1/q, …, (q−1)/q}, s_j(v) = 1[(v + u_j) mod 1 < λ]. Each s_j is Bernoulli(λ) over v (λq must be an integer),
    so the smoothed classifier f(x) = E_s h(x ⊙ s) is an exact average over these q masks, and the union bound
    P(s_j = 1 for some j where α, α′ differ) ≤ λ‖α − α′‖₁ makes f λ-Lipschitz in the mask without sampling error.
    """
    _check_lambda(lam)
    n_features = _integer("n_features", n_features, lo=1)
    if isinstance(q, bool) or not isinstance(q, int) or q < 1:
        raise ValueError(f"q must be a positive integer, got {q!r}")
    if abs(lam * q - round(lam * q)) > 1e-9:
        raise ValueError(f"λ·q must be an integer so each mask entry is exactly Bernoulli(λ); got λ={lam}, q={q}")
    g = torch.Generator().manual_seed(_integer("seed", seed))
    u = torch.randint(0, q, (n_features,), generator=g)
    v = torch.arange(q)[:, None]
    return ((v + u[None, :]) % q) < round(lam * q)


def _check_alpha(alpha: torch.Tensor, batch: int, n_features: int) -> torch.Tensor:
    if not isinstance(alpha, (torch.Tensor, np.ndarray, list, tuple)):
        raise TypeError(f"mask α must be a 0/1 tensor, got {type(alpha).__name__}")
    alpha = torch.as_tensor(alpha)
    if alpha.numel() and not ((alpha == 0) | (alpha == 1)).all():
        raise ValueError("mask α must hold only 0s and 1s (feature hidden / shown); the MuS certificate is about "
                         "binary masks")
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
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer (masked copies per forward pass), got {batch_size!r}")
        _module("base", base)
        groups = _groups(groups)
        self.base, self.lam, self.q, self.batch_size = base, lam, q, batch_size
        self.register_buffer("groups", groups.long())
        self.n_features = int(groups.max()) + 1
        self.register_buffer("masks", mus_masks(self.n_features, lam, q, seed).float())

    def forward(self, x: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        x = _tensor("x", x, dims=4)
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
    _module("base", base)
    x = _tensor("x", x, dims=4)
    groups = _groups(groups)
    masks = _tensor("masks", masks, dims=2, floating=False)
    if masks.shape[1] != int(groups.max()) + 1:
        raise ValueError(f"masks must be [q, F] with F = {int(groups.max()) + 1} features (the ids in groups), "
                         f"got {tuple(masks.shape)}")
    if x.shape[-2:] != groups.shape:
        raise ValueError(f"images {tuple(x.shape[-2:])} do not match the feature map {tuple(groups.shape)}")
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
    probs = _tensor("probs", probs, min_dims=1)
    if probs.shape[-1] < 2:
        raise ValueError(f"probs must hold at least two class probabilities in its last axis, got {tuple(probs.shape)}")
    if (probs < 0).any() or (probs > 1).any() or not torch.allclose(probs.sum(-1), torch.ones((), dtype=probs.dtype,
                                                                                           device=probs.device), atol=1e-4):
        raise ValueError("probs must be probability vectors (entries in [0, 1] summing to 1 over the last axis); "
                         "apply softmax to logits first")
    top2 = probs.topk(2, dim=-1).values
    return (top2[..., 0] - top2[..., 1]) / (2 * lam)


def supersets_within(alpha: torch.Tensor, radius: int) -> torch.Tensor:
    """Every α′ ≥ α (0/1, same length) that switches on at most ``radius`` extra features: ``[M, F]`` bool,
    α itself first. M = Σ_{k≤r} C(#zeros of α, k)."""
    if not isinstance(alpha, (torch.Tensor, np.ndarray, list, tuple)):
        raise TypeError(f"α must be a 0/1 mask (tensor of shape [F]), got {type(alpha).__name__}")
    alpha = torch.as_tensor(alpha)
    if alpha.dim() != 1 or alpha.numel() == 0:
        raise ValueError(f"α must be one mask of shape [F], got {tuple(alpha.shape)}")
    if not ((alpha == 0) | (alpha == 1)).all():
        raise ValueError("α must hold only 0s and 1s (feature hidden / shown)")
    alpha = alpha.bool()
    radius = _integer("radius", radius)
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
    if not callable(classify):
        raise TypeError(f"classify must be a function (x, α) → probabilities, e.g. a MuS model, got {type(classify).__name__}")
    x = _tensor("x", x)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image [1, C, H, W], got {tuple(x.shape)}")
    sup = supersets_within(alpha, radius)
    probs = classify(x.expand(len(sup), *x.shape[1:]), sup.float().to(x.device))
    pred = probs.argmax(-1)
    return len(sup) - 1, int((pred[1:] != pred[0]).sum())


def masked_classifier(model: nn.Module, groups: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """classify(x, α) = softmax h(x ⊙ α) for an unsmoothed model, in the same calling form as :class:`MuS`."""
    _module("model", model)
    groups = _groups(groups)

    @torch.no_grad()
    def classify(x, alpha):
        x = _tensor("x", x, dims=4)
        if x.shape[-2:] != groups.shape:
            raise ValueError(f"images {tuple(x.shape[-2:])} do not match the feature map {tuple(groups.shape)}")
        alpha = _check_alpha(alpha, x.shape[0], int(groups.max()) + 1).to(x.device).float()
        return torch.softmax(model(x * alpha[:, groups.to(x.device)].unsqueeze(1)), -1)

    return classify


__all__.append("masked_classifier")
