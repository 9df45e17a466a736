"""Training-data attribution: influence functions, TracIn, datamodels and TRAK (notebook 04).

Which training points made the model predict what it predicts? Three families of answers:

* **Influence functions** (Koh & Liang, ICML 2017, "Understanding black-box predictions via influence
  functions"): upweight a training point z by ε in the empirical risk; at the optimum θ̂ the first-order
  condition gives dθ̂/dε = I_up,params(z) = −H⁻¹∇L(z, θ̂), hence
  I_up,loss(z, z_test) = −∇L(z_test, θ̂)ᵀ H⁻¹ ∇L(z, θ̂), and removing z (ε = −1/n) changes the test loss by
  about −(1/n)·I_up,loss. H is the Hessian of the (regularised) training objective; we get it exactly,
  or only as Hessian-vector products (``torch.func``) fed to conjugate gradient or LiSSA (Agarwal et al.
  2017).
* **TracIn** (Pruthi et al., NeurIPS 2020): TracIn(z, z′) = Σ_t η_t ∇L(θ_t, z)·∇L(θ_t, z′) over checkpoints.
* **Datamodels** (Ilyas et al., ICML 2022): train many models on random α-subsets S of the training set and
  fit, per test input x, a sparse linear model f(x; S) ≈ θ_xᵀ 1_S + b_x (ℓ1-regularised); evaluate any
  attribution τ with the *linear datamodeling score* (LDS): the Spearman correlation, over fresh subsets,
  between Σ_{i∈S} τ_i and the actual output. **TRAK** (Park et al., ICML 2023) approximates datamodels
  from a few models with randomly projected gradients.

Everything works on *flat* parameter vectors θ ∈ R^p and functional models ``forward(θ, X)``, so that
``torch.func`` (``grad``, ``vmap``, ``jvp``, ``hessian``) can differentiate, batch and stack them, in float32 or
float64 (the dtype of the data). Every public function refuses bad input (wrong types and shapes, NaN/inf,
out-of-range values) with an error naming the argument; inside ``torch.func`` transforms only shapes and types
can be checked.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
from torch.func import grad, hessian, jvp, vmap

from labkit.runtime import get_device
from labkit.stats import spearman


# --------------------------------------------------------------------------------------------------
# Argument checks: every public function refuses bad input with an error that names the argument.


def _tensor(name: str, x, dims=None, finite: bool = True, floating: bool = True) -> torch.Tensor:
    """``x`` as a tensor, or a TypeError/ValueError naming ``name`` and what is expected.

    ``dims``: allowed numbers of dimensions (an int or a tuple). ``finite``: refuse NaN/inf (skipped inside
    ``torch.func`` transforms, where data-dependent checks are impossible). Empty tensors are refused.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if dims is not None:
        dims = (dims,) if isinstance(dims, int) else tuple(dims)
        if x.dim() not in dims:
            want = " or ".join(f"{d}-D" for d in dims)
            raise ValueError(f"{name} must be {want}, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if finite and not _transformed(x) and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _transformed(x: torch.Tensor) -> bool:
    """True inside a ``torch.func`` transform (vmap, grad, jvp), where ``bool(tensor)`` is not allowed."""
    return bool(torch._C._functorch.is_functorch_wrapped_tensor(x))


def _number(name: str, v, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
            hi_open: bool = False) -> float:
    """A finite real number within [lo, hi] (open ends with ``lo_open``/``hi_open``), or a clear error."""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}: {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
    bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
    if bad_lo or bad_hi:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(f"{name} must lie in {left}{'-inf' if lo is None else f'{lo:g}'}, "
                         f"{'inf' if hi is None else f'{hi:g}'}{right}, got {v:g}")
    return v


def _integer(name: str, v, lo: int | None = None, hi: int | None = None) -> int:
    """An integer (not a bool, not a float) within [lo, hi], or a clear error."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}: {v!r}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be an integer in [{'-inf' if lo is None else lo}, "
                         f"{'inf' if hi is None else hi}], got {v}")
    return v


def _function(name: str, f) -> Callable:
    if not callable(f):
        raise TypeError(f"{name} must be a function, got {type(f).__name__}")
    return f


def _labels(name: str, y, n: int) -> torch.Tensor:
    """Binary labels (or probabilities) in [0, 1], one per row."""
    y = _tensor(name, y, dims=1, floating=False)
    if y.shape[0] != n:
        raise ValueError(f"{name} must hold one label per row of X ({n}), got {y.shape[0]}")
    if not _transformed(y) and ((y < 0) | (y > 1)).any():
        raise ValueError(f"{name} must hold labels in [0, 1] (0 = first class, 1 = second), got values in "
                         f"[{float(y.min()):g}, {float(y.max()):g}]")
    return y

__all__ = [
    "digits_pair",
    "logreg_forward",
    "mlp_forward",
    "mlp_init",
    "per_example_loss",
    "objective",
    "fit_logreg",
    "logreg_hessian",
    "hessian_matrix",
    "hvp_fn",
    "conjugate_gradient",
    "lissa",
    "inverse_hvp",
    "per_example_grads",
    "output_grads",
    "influence",
    "self_influence",
    "leave_one_out",
    "train_ensemble",
    "train_loop",
    "sgd_checkpoints",
    "tracin",
    "random_subsets",
    "fit_datamodels",
    "lds",
    "trak",
    "margins",
]


# --------------------------------------------------------------------------------------------------
# Data and models


def digits_pair(a: int = 1, b: int = 7, n_train: int | None = None, test_size: float = 0.3, flip: float = 0.0,
                seed: int = 0, device=None) -> dict:
    """scikit-learn's bundled 8×8 digits, two classes: label 1 for digit ``b``, 0 for digit ``a``.

    Pixels are scaled to [0, 1]. A seeded random split gives train and test; ``n_train`` keeps only the first
    ``n_train`` training points; ``flip`` flips that fraction of training labels (the ground truth for
    mislabeled-example detection, returned as the boolean mask ``flipped``).
    """
    from sklearn.datasets import load_digits

    a, b = _integer("a", a), _integer("b", b)
    if a == b or not (0 <= a <= 9 and 0 <= b <= 9):
        raise ValueError(f"pick two different digits between 0 and 9, got {a} and {b}")
    test_size = _number("test_size", test_size)
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must lie in (0, 1), got {test_size}")
    flip = _number("flip", flip)
    if not 0 <= flip < 0.5:
        raise ValueError(f"flip is the fraction of flipped labels and must lie in [0, 0.5), got {flip}")
    if n_train is not None:
        n_train = _integer("n_train", n_train, lo=2)
    seed = _integer("seed", seed)
    dev = get_device(device)
    d = load_digits()
    keep = (d.target == a) | (d.target == b)
    X, y = d.data[keep] / 16.0, (d.target[keep] == b).astype(np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test = int(round(test_size * len(y)))
    test, train = order[:n_test], order[n_test:]
    if n_train is not None:
        if n_train > len(train):
            raise ValueError(f"n_train={n_train} exceeds the {len(train)} training images of digits {a} and {b}")
        train = train[:n_train]
    y_train = y[train].copy()
    flipped = np.zeros(len(train), dtype=bool)
    if flip > 0:
        idx = rng.choice(len(train), size=int(round(flip * len(train))), replace=False)
        flipped[idx] = True
        y_train[idx] = 1 - y_train[idx]
    t = lambda v: torch.tensor(v, dtype=torch.float32, device=dev)  # noqa: E731
    return {"X_train": t(X[train]), "y_train": t(y_train), "X_test": t(X[test]), "y_test": t(y[test]),
            "flipped": torch.tensor(flipped, device=dev), "images_train": d.images[keep][train],
            "images_test": d.images[keep][test], "classes": (a, b)}


def logreg_forward(theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Logits of logistic regression, θ = (w, b): f(x) = wᵀx + b. θ may be stacked [M, p] → logits [n, M]."""
    theta, X = _tensor("theta", theta, dims=(1, 2)), _tensor("X", X, dims=(1, 2))
    if theta.shape[-1] != X.shape[-1] + 1:
        raise ValueError(f"mismatched shapes: θ has {theta.shape[-1]} entries but X has {X.shape[-1]} features "
                         f"(θ must hold {X.shape[-1]} weights and one bias)")
    Xa = torch.nn.functional.pad(X, (0, 1), value=1.0)  # [X, 1]: one matmul (fast under vmap, too)
    return Xa @ theta.transpose(-1, -2) if theta.dim() > 1 else Xa @ theta


def _sizes(sizes) -> tuple[int, ...]:
    if not isinstance(sizes, (tuple, list)) or len(sizes) < 2:
        raise ValueError(f"sizes must be a tuple of at least two layer widths, e.g. (64, 16, 1), got {sizes!r}")
    return tuple(_integer(f"sizes[{i}]", s, lo=1) for i, s in enumerate(sizes))


def mlp_init(sizes: tuple[int, ...], seed: int = 0, device=None) -> torch.Tensor:
    """A flat parameter vector for an MLP with layer ``sizes`` (e.g. (64, 16, 1)), PyTorch's default init."""
    sizes = _sizes(sizes)
    g = torch.Generator().manual_seed(_integer("seed", seed))
    parts = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1 / math.sqrt(fan_in)
        parts += [(torch.rand(fan_out, fan_in, generator=g) * 2 - 1) * bound, (torch.rand(fan_out, generator=g) * 2 - 1) * bound]
    return torch.cat([p.flatten() for p in parts]).to(get_device(device))


def mlp_forward(theta: torch.Tensor, X: torch.Tensor, sizes: tuple[int, ...] = (64, 16, 1)) -> torch.Tensor:
    """Logits of a tanh MLP with layer ``sizes`` and flat parameters θ (one model; vmap it for many)."""
    sizes = _sizes(sizes)
    theta, X = _tensor("theta", theta, dims=1), _tensor("X", X, dims=(1, 2))
    n_params = sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))
    if theta.shape[-1] != n_params:
        raise ValueError(f"mismatched shapes: an MLP {sizes} has {n_params} parameters, θ has {theta.shape[-1]}")
    if X.shape[-1] != sizes[0]:
        raise ValueError(f"mismatched shapes: X has {X.shape[-1]} features but the MLP's input layer takes {sizes[0]}")
    h, at = X, 0
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = theta[at:at + fan_in * fan_out].reshape(fan_out, fan_in)
        at += fan_in * fan_out
        bias = theta[at:at + fan_out]
        at += fan_out
        h = h @ W.T + bias
        if k < len(sizes) - 2:
            h = torch.tanh(h)
    return h.squeeze(-1)


def _broadcastable(z: torch.Tensor, y: torch.Tensor) -> None:
    try:
        torch.broadcast_shapes(z.shape, y.shape)
    except RuntimeError:
        raise ValueError(f"mismatched shapes: the model's outputs have shape {tuple(z.shape)} but y has "
                         f"{tuple(y.shape)}; pass one label per row of X") from None


def per_example_loss(forward: Callable, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of each example, L(z, θ) = −y log σ(f) − (1−y) log(1−σ(f)) = softplus(f) − y·f."""
    _function("forward", forward)
    y = _tensor("y", y, floating=False)
    z = forward(theta, X)
    _broadcastable(z, y)
    return torch.nn.functional.softplus(z) - y * z


def objective(forward: Callable, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, l2: float,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """Regularised empirical risk R(θ) = (1/n) Σ_i w_i L(z_i, θ) + (l2/2)‖θ‖².

    ``weights`` (default all ones) up- or down-weights examples; n is always the full training-set size, so
    removing z_i (w_i = 0) is exactly the ε = −1/n upweighting of the influence-function derivation.
    """
    l2 = _number("l2", l2, lo=0)
    losses = per_example_loss(forward, theta, X, y)
    if weights is not None:
        weights = _tensor("weights", weights, dims=1)
        if weights.shape != losses.shape:
            raise ValueError(f"weights must hold one weight per example ({tuple(losses.shape)}), got {tuple(weights.shape)}")
        losses = losses * weights
    return losses.sum() / X.shape[0] + 0.5 * l2 * (theta ** 2).sum()


def margins(forward: Callable, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct-class margin (2y−1)·f(x) (= log p(correct)/p(wrong)): the output datamodels and TRAK explain."""
    _function("forward", forward)
    y = _tensor("y", y, floating=False)
    z = forward(theta, X)
    _broadcastable(z, y)
    return (2 * y - 1) * z


# --------------------------------------------------------------------------------------------------
# Training: Newton for logistic regression, vmapped Adam for anything


def fit_logreg(X: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, weights: torch.Tensor | None = None,
               iters: int = 25, init: torch.Tensor | None = None) -> torch.Tensor:
    """Minimise R(θ) of :func:`objective` for logistic regression by Newton's method (to machine precision).

    ``weights`` of shape [M, n] trains M models at once (batched linear algebra); returns θ of shape [p]
    or [M, p]. Steps are halved where a full Newton step would not decrease R. Works in the dtype of ``X``
    (float32 or float64).
    """
    X = _tensor("X", X, dims=2)
    n, d = X.shape
    y = _labels("y", y, n).to(X)
    if _number("l2", l2) <= 0:
        raise ValueError("l2 must be > 0: without it the Hessian of separable data is singular and θ diverges")
    iters = _integer("iters", iters, lo=1)
    single = weights is None or weights.dim() == 1
    if weights is not None:
        weights = _tensor("weights", weights, dims=(1, 2))
        if weights.shape[-1] != n:
            raise ValueError(f"weights must be [n] or [M, n] with n = {n} training points, got {tuple(weights.shape)}")
        if (weights < 0).any():
            raise ValueError("weights must be ≥ 0 (0 removes a training point, 1 keeps it)")
    opts = dict(device=X.device, dtype=X.dtype)  # every internal tensor in X's dtype: float64 data stays float64
    W = torch.ones(1, n, **opts) if weights is None else weights.reshape(-1, n).to(X)
    M = W.shape[0]
    Xa = torch.cat([X, torch.ones(n, 1, **opts)], 1)
    if init is None:
        theta = torch.zeros(M, d + 1, **opts)
    else:
        init = _tensor("init", init, dims=(1, 2))
        if init.shape[-1] != d + 1 or (init.dim() == 2 and init.shape[0] not in (1, M)):
            raise ValueError(f"init must be θ of shape [{d + 1}] or [{M}, {d + 1}], got {tuple(init.shape)}")
        theta = init.to(X).expand(M, d + 1).clone()
    eye = torch.eye(d + 1, **opts)

    def risk(th):
        z = th @ Xa.T
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y.expand_as(z), reduction="none")
        return (W * loss).sum(1) / n + 0.5 * l2 * (th ** 2).sum(1)

    for _ in range(iters):
        p = torch.sigmoid(theta @ Xa.T)
        g = ((W * (p - y)) @ Xa) / n + l2 * theta
        H = (Xa.T.unsqueeze(0) * (W * p * (1 - p)).unsqueeze(1)) @ Xa / n + l2 * eye
        step = torch.linalg.solve(H, g.unsqueeze(-1)).squeeze(-1)
        r0, t = risk(theta), torch.ones(M, 1, **opts)
        for _ in range(20):
            worse = risk(theta - t * step) > r0 + 1e-6 * r0.abs()
            if not worse.any():
                break
            t = torch.where(worse[:, None], t / 2, t)
        theta = theta - t * step
        if step.abs().max() < 1e-6:
            break
    return theta[0] if single else theta


def _adam_steps(grad_fn, theta, steps, lr, betas=(0.9, 0.999), eps=1e-8):
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    for t in range(1, steps + 1):
        g = grad_fn(theta)
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        theta = theta - lr * (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + eps)
    return theta


def _momentum_steps(grad_fn, theta, steps, lr, momentum=0.9):
    v = torch.zeros_like(theta)
    for _ in range(steps):
        v = momentum * v - lr * grad_fn(theta)
        theta = theta + v
    return theta


def _training_args(forward, theta0, X, y, weights, l2, steps, lr):
    """The checks shared by :func:`train_ensemble` and :func:`train_loop`."""
    _function("forward", forward)
    theta0 = _tensor("theta0", theta0, dims=(1, 2))
    X = _tensor("X", X, dims=2)
    _labels("y", y, X.shape[0])
    weights = _tensor("weights", weights, dims=2)
    if weights.shape[1] != X.shape[0]:
        raise ValueError(f"weights must have shape [M, n] = [models, {X.shape[0]}], got {tuple(weights.shape)}")
    if (weights < 0).any():
        raise ValueError("weights must be ≥ 0 (0 removes a training point, 1 keeps it)")
    if theta0.dim() == 2 and theta0.shape[0] != weights.shape[0]:
        raise ValueError(f"theta0 has {theta0.shape[0]} rows but weights describe {weights.shape[0]} models")
    return (theta0, weights, _number("l2", l2, lo=0), _integer("steps", steps, lo=0),
            _number("lr", lr, lo=0, lo_open=True))


def train_ensemble(forward: Callable, theta0: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                   weights: torch.Tensor, l2: float = 1e-2, steps: int = 200, lr: float = 0.05,
                   optimizer: str = "adam", momentum: float = 0.9) -> torch.Tensor:
    """Train M models at once: full-batch Adam on R(θ_m) with example weights ``weights[m]`` (e.g. a subset's
    indicator 1_S). ``torch.func.vmap`` stacks the M gradient computations into one batched call.

    theta0: [p] (same start for all) or [M, p]; weights: [M, n]. Returns [M, p].
    ``optimizer="gd"`` uses full-batch gradient descent with heavy-ball ``momentum`` instead (better for
    retraining from a warm start, where Adam's first steps jump by ``lr`` in every coordinate).
    """
    theta0, weights, l2, steps, lr = _training_args(forward, theta0, X, y, weights, l2, steps, lr)
    momentum = _number("momentum", momentum, lo=0, hi=1, hi_open=True)
    if optimizer not in ("adam", "gd"):
        raise ValueError(f"unknown optimizer {optimizer!r}: use 'adam' or 'gd'")
    M = weights.shape[0]
    theta = theta0.expand(M, -1).clone() if theta0.dim() == 1 else theta0.clone()
    g = vmap(grad(lambda th, w: objective(forward, th, X, y, l2, w)))
    if optimizer == "gd":
        return _momentum_steps(lambda th: g(th, weights), theta, steps, lr, momentum)
    return _adam_steps(lambda th: g(th, weights), theta, steps, lr)


def train_loop(forward: Callable, theta0: torch.Tensor, X: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
               l2: float = 1e-2, steps: int = 200, lr: float = 0.05) -> torch.Tensor:
    """The naive baseline of :func:`train_ensemble`: the same Adam training, one model after another."""
    theta0, weights, l2, steps, lr = _training_args(forward, theta0, X, y, weights, l2, steps, lr)
    out = []
    for w in weights:
        g = grad(lambda th: objective(forward, th, X, y, l2, w))
        th = theta0.clone() if theta0.dim() == 1 else theta0[len(out)].clone()
        out.append(_adam_steps(g, th, steps, lr))
    return torch.stack(out)


# --------------------------------------------------------------------------------------------------
# Hessians and inverse-Hessian-vector products


def logreg_hessian(theta: torch.Tensor, X: torch.Tensor, l2: float) -> torch.Tensor:
    """Closed-form Hessian of R for logistic regression: H = (1/n) X̃ᵀ diag(p(1−p)) X̃ + l2·I, X̃ = [X, 1]."""
    theta, X = _tensor("theta", theta, dims=1), _tensor("X", X, dims=2)
    if theta.shape[0] != X.shape[1] + 1:
        raise ValueError(f"mismatched shapes: θ has {theta.shape[0]} entries but X has {X.shape[1]} features "
                         f"(θ must hold {X.shape[1]} weights and one bias)")
    l2 = _number("l2", l2, lo=0)
    Xa = torch.cat([X, torch.ones(X.shape[0], 1, device=X.device, dtype=X.dtype)], 1)
    p = torch.sigmoid(Xa @ theta.to(X))
    return (Xa.T * (p * (1 - p))) @ Xa / X.shape[0] + l2 * torch.eye(Xa.shape[1], device=X.device, dtype=X.dtype)


def hessian_matrix(fn: Callable, theta: torch.Tensor) -> torch.Tensor:
    """The exact Hessian ∇²fn(θ) [p, p] by ``torch.func.hessian`` (forward-over-reverse autodiff)."""
    _function("fn", fn)
    theta = _tensor("theta", theta, dims=1)
    H = hessian(fn)(theta)
    if H.shape != (theta.numel(), theta.numel()):
        raise ValueError(f"fn must return one number (the objective); its Hessian has shape {tuple(H.shape)}")
    if not torch.isfinite(H).all():
        raise ValueError("the Hessian contains NaN or inf: fn is not twice differentiable (or overflows) at θ")
    return H


def hvp_fn(fn: Callable, theta: torch.Tensor) -> Callable:
    """v ↦ ∇²fn(θ)·v without forming the Hessian: ``torch.func.jvp`` of ``torch.func.grad`` (Pearlmutter 1994).

    The returned function accepts one vector [p] or a batch [k, p] (vmapped).
    """
    _function("fn", fn)
    theta = _tensor("theta", theta, dims=1)
    g = grad(fn)

    def one(v):
        return jvp(g, (theta,), (v,))[1]

    batched = vmap(one)

    def hvp(v):
        v = _tensor("v", v, dims=(1, 2))
        if v.shape[-1] != theta.shape[-1]:
            raise ValueError(f"mismatched shapes: vector has {v.shape[-1]} entries, θ has {theta.shape[-1]}")
        return one(v) if v.dim() == 1 else batched(v)

    return hvp


def _indefinite(lam_min: float, lam_max: float, damping: float) -> ValueError:
    return ValueError(
        f"the Hessian is singular or indefinite (smallest eigenvalue {lam_min:.3g}, largest {lam_max:.3g}, "
        f"damping {damping:.3g}): H⁻¹ is undefined or the influence has the wrong sign. This happens at a "
        f"non-convex or not fully trained model. Add damping λ > {max(-lam_min, 0):.3g} (H + λI), e.g. "
        f"damping={max(-lam_min, 0) + 0.01 * max(abs(lam_max), 1e-3):.3g}, or regularise the training objective."
    )


def conjugate_gradient(hvp: Callable, b: torch.Tensor, max_iter: int | None = None, tol: float = 1e-10) -> torch.Tensor:
    """Solve H x = b with only Hessian-vector products (Hestenes & Stiefel 1952), H symmetric positive definite.

    x₀ = 0, r₀ = p₀ = b; α = rᵀr / pᵀHp; x ← x + αp; r ← r − αHp; β = r_newᵀr_new / rᵀr; p ← r + βp.
    Exact after at most p steps in exact arithmetic. ``b`` may be [p] or a batch [k, p] (solved row by row
    in parallel). Stops when ‖r‖ ≤ ``tol``·‖b‖ or after ``max_iter`` steps (default p). Raises ValueError when
    pᵀHp ≤ 0 (H is not positive definite: add damping), and when b or a Hessian-vector product is not finite.
    """
    _function("hvp", hvp)
    b = _tensor("b", b, dims=(1, 2))
    if max_iter is not None:
        max_iter = _integer("max_iter", max_iter, lo=1)
    tol = _number("tol", tol, lo=0)
    single = b.dim() == 1
    B = b.reshape(1, -1) if single else b
    x = torch.zeros_like(B)
    r = B.clone()
    p = r.clone()
    rs = (r * r).sum(1)
    scale = B.norm(dim=1).clamp_min(1e-30)
    for _ in range(max_iter or B.shape[1]):
        active = rs.sqrt() > tol * scale
        if not active.any():
            break
        Hp = hvp(p[0]) if single else hvp(p)
        if not isinstance(Hp, torch.Tensor) or Hp.shape != (p.shape[1:] if single else p.shape):
            raise ValueError(f"hvp must return H·v shaped like v {tuple(p.shape[1:] if single else p.shape)}, got "
                             f"{tuple(Hp.shape) if isinstance(Hp, torch.Tensor) else type(Hp).__name__}")
        Hp = Hp.reshape(p.shape)
        if not torch.isfinite(Hp).all():
            raise ValueError("hvp returned NaN or inf: the Hessian-vector product is not finite at this θ")
        curv = (p * Hp).sum(1)
        if (curv[active] <= 0).any():
            raise ValueError("conjugate gradient met pᵀHp ≤ 0: the Hessian is singular or indefinite here. "
                             "Add damping (H + λI with λ larger than minus the smallest eigenvalue).")
        alpha = torch.where(active, rs / torch.where(active, curv, torch.ones_like(curv)), torch.zeros_like(rs))
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * Hp
        rs_new = (r * r).sum(1)
        beta = torch.where(active, rs_new / torch.where(active, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = r + beta[:, None] * p
        rs = rs_new
    return x[0] if single else x


def lissa(hvp: Callable, b: torch.Tensor, scale: float, damping: float = 0.0, depth: int = 1000,
          batch_hvps: list[Callable] | None = None) -> torch.Tensor:
    """LiSSA (Agarwal, Bullins & Hazan 2017): (H + λI)⁻¹b by the Neumann series of A = (H + λI)/s,

    h₀ = b, h_j = b + h_{j−1} − (H h_{j−1} + λ h_{j−1})/s, and (H + λI)⁻¹b ≈ h_J / s.
    Converges when s exceeds the largest eigenvalue of H + λI and H + λI is positive definite.
    With ``batch_hvps`` (HVPs of minibatch Hessians) step j uses ``batch_hvps[j % len]``: the stochastic
    LiSSA of the paper; otherwise the full-batch ``hvp``.
    """
    _function("hvp", hvp)
    b = _tensor("b", b, dims=(1, 2))
    if _number("scale", scale) <= 0:
        raise ValueError(f"scale must be > 0 (larger than the largest eigenvalue of H), got {scale}")
    damping = _number("damping", damping, lo=0)
    depth = _integer("depth", depth, lo=1)
    if batch_hvps is not None:
        if not isinstance(batch_hvps, (list, tuple)) or not batch_hvps:
            raise ValueError("batch_hvps must be a non-empty list of Hessian-vector-product functions (or None)")
        for i, f in enumerate(batch_hvps):
            _function(f"batch_hvps[{i}]", f)
    h = b.clone()
    for j in range(depth):
        Hh = (batch_hvps[j % len(batch_hvps)] if batch_hvps else hvp)(h)
        h = b + h - (Hh + damping * h) / scale
        if not torch.isfinite(h).all() or h.norm() > 1e12 * (b.norm() + 1e-30):
            raise ValueError(f"LiSSA diverged after {j + 1} steps: either scale={scale} is smaller than the largest "
                             "eigenvalue of H + λI, or H + λI is indefinite (then add damping).")
    return h / scale


def inverse_hvp(v: torch.Tensor, hessian: torch.Tensor | None = None, hvp: Callable | None = None,
                method: str = "exact", damping: float = 0.0, **kwargs) -> torch.Tensor:
    """(H + λI)⁻¹ v by ``method`` = ``"exact"`` (needs ``hessian``; Cholesky solve), ``"cg"`` or ``"lissa"``
    (need ``hvp``, or take it from ``hessian``). v: [p] or [k, p]. Checks that H + λI is positive definite
    (exact) and says to add damping when it is not."""
    v = _tensor("v", v, dims=(1, 2))
    damping = _number("damping", damping, lo=0)
    if method not in ("exact", "cg", "lissa"):
        raise ValueError(f"unknown method {method!r}: use 'exact', 'cg' or 'lissa'")
    if hvp is not None:
        _function("hvp", hvp)
    if hessian is not None:
        hessian = _tensor("hessian", hessian)
        if hessian.dim() != 2 or hessian.shape[0] != hessian.shape[1]:
            raise ValueError(f"the Hessian must be a square matrix [p, p], got shape {tuple(hessian.shape)}")
        if hessian.shape[0] != v.shape[-1]:
            raise ValueError(f"mismatched shapes: the Hessian is {tuple(hessian.shape)} but the vector has "
                             f"{v.shape[-1]} entries; both must refer to the same parameters")
    if method == "exact":
        if hessian is None:
            raise ValueError("method='exact' needs the Hessian matrix (hessian=...); with only HVPs use 'cg' or 'lissa'")
        H = 0.5 * (hessian + hessian.T) + damping * torch.eye(hessian.shape[0], device=hessian.device, dtype=hessian.dtype)
        ev = torch.linalg.eigvalsh(H)
        if ev[0] <= 1e-10 * ev[-1].abs().clamp_min(1e-30):
            raise _indefinite(float(ev[0]) - damping, float(ev[-1]) - damping, damping)
        L = torch.linalg.cholesky(H)
        out = torch.cholesky_solve(v.reshape(-1, v.shape[-1]).T, L).T
        return out.reshape(v.shape)
    if hvp is None:
        if hessian is None:
            raise ValueError(f"method={method!r} needs hvp=... (or hessian=...)")
        hvp = lambda u: u @ hessian.T  # noqa: E731
    damped = (lambda u: hvp(u) + damping * u) if damping else hvp
    if method == "cg":
        return conjugate_gradient(damped, v, **kwargs)
    return lissa(hvp, v, damping=damping, **kwargs)


# --------------------------------------------------------------------------------------------------
# Influence, self-influence, leave-one-out, TracIn


def _example_args(forward, theta, X, y) -> None:
    _function("forward", forward)
    _tensor("theta", theta, dims=1)
    X = _tensor("X", X)
    if X.dim() < 2:
        raise ValueError(f"X must hold one example per row ([n, features]), got shape {tuple(X.shape)}")
    _labels("y", y, X.shape[0])


def per_example_grads(forward: Callable, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇_θ L(z_i, θ) for every example at once, [n, p] (``torch.func.vmap`` over ``torch.func.grad``)."""
    _example_args(forward, theta, X, y)

    def one(th, x, t):
        return per_example_loss(forward, th, x[None], t[None]).sum()

    return vmap(grad(one), in_dims=(None, 0, 0))(theta, X, y)


def _check_grads(train_grads, test_grad, names=("train_grads", "test_grad")):
    _tensor(names[0], train_grads)
    _tensor(names[1], test_grad, dims=(1, 2))
    if train_grads.dim() != 2:
        raise ValueError(f"{names[0]} must be [n, p] (one gradient per training point), got {tuple(train_grads.shape)}")
    if test_grad.shape[-1] != train_grads.shape[-1]:
        raise ValueError(f"mismatched parameter and gradient shapes: test gradient has {test_grad.shape[-1]} entries, "
                         f"training gradients {train_grads.shape[-1]}; compute both at the same θ of the same model")


def output_grads(forward: Callable, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇_θ of each example's correct-class margin (2y−1)·f(x), [n, p]: the gradients TRAK projects."""
    _example_args(forward, theta, X, y)

    def one(th, x, t):
        return margins(forward, th, x[None], t[None]).sum()

    return vmap(grad(one), in_dims=(None, 0, 0))(theta, X, y)


def influence(train_grads: torch.Tensor, test_grad: torch.Tensor, hessian: torch.Tensor | None = None,
              hvp: Callable | None = None, method: str = "exact", damping: float = 0.0, **kwargs) -> torch.Tensor:
    """I_up,loss(z_i, z_test) = −∇L(z_test)ᵀ (H + λI)⁻¹ ∇L(z_i) for every training point (Koh & Liang 2017).

    Computes s_test = (H + λI)⁻¹∇L(z_test) once (one solve per test point), then one dot product per
    training point. train_grads: [n, p]; test_grad: [p] → [n], or [m, p] → [m, n].
    Removing z_i changes the test loss by about −I_up,loss / n; ``method='identity'`` drops H (H = I:
    the plain gradient dot product, for comparison).
    """
    _check_grads(train_grads, test_grad)
    if method not in ("exact", "cg", "lissa", "identity"):
        raise ValueError(f"unknown method {method!r}: use 'exact', 'cg', 'lissa' or 'identity'")
    if method == "identity":
        s_test = test_grad
    else:
        s_test = inverse_hvp(test_grad, hessian=hessian, hvp=hvp, method=method, damping=damping, **kwargs)
    return -(s_test @ train_grads.T)


def self_influence(train_grads: torch.Tensor, hessian: torch.Tensor, damping: float = 0.0) -> torch.Tensor:
    """Self-influence ∇L(z_i)ᵀ (H + λI)⁻¹ ∇L(z_i): how much z_i's own loss depends on keeping z_i.

    Large for points the model must bend to fit, e.g. mislabeled ones (Koh & Liang 2017, section 5.4).
    """
    train_grads = _tensor("train_grads", train_grads, dims=2)
    if hessian is None:
        raise ValueError("self_influence needs the Hessian matrix (hessian=...), e.g. logreg_hessian(θ, X, l2)")
    return (inverse_hvp(train_grads, hessian=hessian, damping=damping) * train_grads).sum(1)


def leave_one_out(X: torch.Tensor, y: torch.Tensor, indices, l2: float = 1e-2, theta_full: torch.Tensor | None = None,
                  iters: int = 25) -> torch.Tensor:
    """Ground truth for influence: retrain logistic regression without each training point in ``indices``.

    All retrainings run as one batched Newton solve (warm-started at ``theta_full`` when given); returns [k, p].
    """
    X = _tensor("X", X, dims=2)
    _labels("y", y, X.shape[0])
    if isinstance(indices, torch.Tensor):
        indices = indices.reshape(-1)
    elif isinstance(indices, (list, tuple, range, np.ndarray)):
        indices = torch.as_tensor(np.asarray(indices).reshape(-1))
    else:
        raise TypeError(f"indices must be a list or tensor of training-point indices, got {type(indices).__name__}")
    if indices.numel() == 0:
        raise ValueError("indices is empty: name at least one training point to leave out")
    if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
        raise TypeError(f"indices must be integers (positions of training points), got dtype {indices.dtype}")
    indices = indices.to(X.device)
    if indices.min() < 0 or indices.max() >= len(y):
        raise ValueError(f"indices must lie in [0, {len(y)}), got range [{int(indices.min())}, {int(indices.max())}]")
    W = torch.ones(len(indices), len(y), device=X.device, dtype=X.dtype)
    W[torch.arange(len(indices)), indices] = 0
    init = None if theta_full is None else _tensor("theta_full", theta_full, dims=1)
    return fit_logreg(X, y, l2, weights=W, iters=iters, init=init)


def sgd_checkpoints(forward: Callable, theta0: torch.Tensor, X: torch.Tensor, y: torch.Tensor, l2: float = 1e-2,
                    epochs: int = 10, lr: float = 0.5, batch_size: int = 32, seed: int = 0) -> tuple[list, list]:
    """Minibatch SGD on R(θ), keeping a checkpoint θ_t and its learning rate η_t after every epoch (for TracIn)."""
    _example_args(forward, theta0, X, y)
    l2 = _number("l2", l2, lo=0)
    epochs = _integer("epochs", epochs, lo=1)
    lr = _number("lr", lr, lo=0, lo_open=True)
    batch_size = _integer("batch_size", batch_size, lo=1)
    g = torch.Generator().manual_seed(_integer("seed", seed))
    theta, ckpts, lrs = theta0.clone(), [], []
    step = grad(lambda th, xb, yb: objective(forward, th, xb, yb, l2))
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g).to(X.device)
        for s in range(0, len(y), batch_size):
            idx = order[s:s + batch_size]
            theta = theta - lr * step(theta, X[idx], y[idx])
        ckpts.append(theta.clone())
        lrs.append(lr)
    return ckpts, lrs


def tracin(train_grads: torch.Tensor, test_grads: torch.Tensor, lrs) -> torch.Tensor:
    """TracInCP (Pruthi et al. 2020): TracIn(z_i, z_test) = Σ_t η_t ∇L(θ_t, z_i)·∇L(θ_t, z_test).

    train_grads: [T, n, p] per-example gradients at T checkpoints; test_grads: [T, p] or [T, m, p];
    lrs: T learning rates. Returns [n] or [m, n]. Positive = z_i is a proponent (its steps lowered the test loss).
    """
    train_grads = _tensor("train_grads", train_grads, dims=3)
    test_grads = _tensor("test_grads", test_grads, dims=(2, 3))
    try:
        lrs = torch.as_tensor(lrs, dtype=train_grads.dtype, device=train_grads.device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"lrs must be a list of learning rates (numbers), got {type(lrs).__name__}") from None
    if lrs.dim() != 1 or not torch.isfinite(lrs).all() or (lrs <= 0).any():
        raise ValueError("lrs must be a 1-D list of positive, finite learning rates (one per checkpoint)")
    if train_grads.dim() != 3 or test_grads.shape[0] != train_grads.shape[0] or len(lrs) != train_grads.shape[0]:
        raise ValueError("train_grads must be [T, n, p], test_grads [T, (m,) p] and lrs of length T (one per checkpoint)")
    if test_grads.shape[-1] != train_grads.shape[-1]:
        raise ValueError("mismatched parameter and gradient shapes between train_grads and test_grads")
    if test_grads.dim() == 2:
        return torch.einsum("t,tnp,tp->n", lrs, train_grads, test_grads)
    return torch.einsum("t,tnp,tmp->mn", lrs, train_grads, test_grads)


# --------------------------------------------------------------------------------------------------
# Datamodels, LDS, TRAK


def random_subsets(n: int, m: int, alpha: float = 0.5, seed: int = 0, device=None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """m random subsets of {0..n−1}, each of exactly round(αn) points, as a 0/1 mask [m, n] of ``dtype``
    (match it to the data: float64 data needs float64 masks to multiply them)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (float, int)) or not 0 < alpha < 1:
        raise ValueError(f"the subset fraction α must lie strictly between 0 and 1, got {alpha!r}")
    n, m = _integer("n", n), _integer("m", m)
    if n < 2 or m < 1:
        raise ValueError(f"need n ≥ 2 training points and m ≥ 1 subsets, got n={n}, m={m}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch dtype (torch.float32, torch.float64), got {dtype!r}")
    g = torch.Generator().manual_seed(_integer("seed", seed))
    k = max(1, min(n - 1, round(alpha * n)))
    idx = torch.rand(m, n, generator=g).argsort(1)[:, :k]
    mask = torch.zeros(m, n, dtype=dtype)
    mask.scatter_(1, idx, 1.0)
    return mask.to(get_device(device))


def fit_datamodels(masks: torch.Tensor, outputs: torch.Tensor, l1: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear datamodels (Ilyas et al. 2022): per test input x, min_θ Σ_S (θᵀ1_S + b − f(x; S))² / (2m) + l1‖θ‖₁.

    masks: [m, n] subset indicators; outputs: [m, k] the trained models' outputs on k test inputs.
    Fitted with scikit-learn's Lasso (coordinate descent). Returns weights [k, n] and intercepts [k].
    """
    from sklearn.linear_model import Lasso

    masks = _tensor("masks", masks, dims=2)
    outputs = _tensor("outputs", outputs, dims=(1, 2))
    if masks.shape[0] != outputs.shape[0]:
        raise ValueError(f"masks [m, n] and outputs [m, k] must have the same m, got {masks.shape[0]} and {outputs.shape[0]}")
    if _number("l1", l1) <= 0:
        raise ValueError("l1 must be > 0 (use a small value such as 1e-3); without it the fit is ordinary least squares")
    A = masks.detach().cpu().double().numpy()
    Y = outputs.detach().cpu().double().numpy().reshape(len(A), -1)
    W, b = [], []
    for j in range(Y.shape[1]):
        las = Lasso(alpha=l1, max_iter=5000, tol=1e-6).fit(A, Y[:, j])
        W.append(las.coef_)
        b.append(las.intercept_)
    dev = outputs.device
    return torch.tensor(np.array(W), dtype=torch.float32, device=dev), torch.tensor(np.array(b), dtype=torch.float32, device=dev)


def lds(predicted: torch.Tensor, actual: torch.Tensor) -> float:
    """Linear datamodeling score (Park et al. 2023): mean over test inputs of the Spearman rank correlation,
    across subsets, between predicted outputs Σ_{i∈S} τ_i and actual outputs f(x; S).

    predicted, actual: [m subsets, k test inputs] (or [m]). Ties get average ranks (:func:`labkit.stats.spearman`).
    A constant column (of either) has no ranking, so its correlation is undefined: that raises ``ValueError``
    naming the column instead of averaging a NaN.
    """
    predicted = _tensor("predicted", predicted, dims=(1, 2))
    actual = _tensor("actual", actual, dims=(1, 2))
    if predicted.shape != actual.shape:
        raise ValueError(f"predicted and actual must have the same shape [subsets, test inputs], got "
                         f"{tuple(predicted.shape)} and {tuple(actual.shape)}")
    P = predicted.detach().cpu().double().numpy().reshape(predicted.shape[0], -1)
    A = actual.detach().cpu().double().numpy().reshape(actual.shape[0], -1)
    if P.shape[0] < 3:
        raise ValueError("the LDS needs at least 3 subsets to rank")
    rhos = []
    for j in range(P.shape[1]):
        try:
            rhos.append(spearman(P[:, j], A[:, j]))
        except ValueError as e:
            raise ValueError(f"test input {j} (column {j} of predicted/actual): {e}") from None
    return float(np.mean(rhos))


def trak(train_out_grads: torch.Tensor, test_out_grads: torch.Tensor, q: torch.Tensor, proj_dim: int = 32,
         seed: int = 0) -> torch.Tensor:
    """TRAK scores for one model (Park et al. 2023): τ(x, z_i) = φ(x)ᵀ (ΦᵀΦ)⁻¹ φ(z_i) · Q_ii.

    φ = Pᵀ∇_θ f is the randomly projected gradient of the model *output* (the margin), P ~ N(0, 1/k)
    of shape [p, k]; Φ stacks the training φ's; Q_ii = 1 − p_i (probability of the wrong class... i.e. one
    minus the probability of the correct label). Average the scores over several models for an ensemble.
    train_out_grads: [n, p]; test_out_grads: [m, p]; q: [n]. Returns [m, n].
    """
    _check_grads(train_out_grads, test_out_grads, ("train_out_grads", "test_out_grads"))
    q = _tensor("q", q, dims=1)
    if q.shape[0] != train_out_grads.shape[0]:
        raise ValueError(f"q must hold one weight 1 − p_i per training point ({train_out_grads.shape[0]}), got {q.shape[0]}")
    proj_dim = _integer("proj_dim", proj_dim, lo=1)
    g = torch.Generator().manual_seed(_integer("seed", seed))
    P = (torch.randn(train_out_grads.shape[1], proj_dim, generator=g) / math.sqrt(proj_dim)).to(train_out_grads)
    Phi, phi = train_out_grads @ P, test_out_grads @ P
    K = Phi.T @ Phi
    K = K + 1e-6 * K.diagonal().mean() * torch.eye(proj_dim, device=K.device, dtype=K.dtype)
    return (phi @ torch.linalg.solve(K, Phi.T)) * q


def timed(fn: Callable, *args, **kwargs):
    """(result, seconds) of one call — for the notebook's time comparisons."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
