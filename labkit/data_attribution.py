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
``torch.func`` (``grad``, ``vmap``, ``jvp``, ``hessian``) can differentiate, batch and stack them.
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

    if a == b or not (0 <= a <= 9 and 0 <= b <= 9):
        raise ValueError(f"pick two different digits between 0 and 9, got {a} and {b}")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must lie in (0, 1), got {test_size}")
    if not 0 <= flip < 0.5:
        raise ValueError(f"flip is the fraction of flipped labels and must lie in [0, 0.5), got {flip}")
    dev = get_device(device)
    d = load_digits()
    keep = (d.target == a) | (d.target == b)
    X, y = d.data[keep] / 16.0, (d.target[keep] == b).astype(np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test = int(round(test_size * len(y)))
    test, train = order[:n_test], order[n_test:]
    if n_train is not None:
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
    if theta.shape[-1] != X.shape[-1] + 1:
        raise ValueError(f"mismatched shapes: θ has {theta.shape[-1]} entries but X has {X.shape[-1]} features "
                         f"(θ must hold {X.shape[-1]} weights and one bias)")
    Xa = torch.nn.functional.pad(X, (0, 1), value=1.0)  # [X, 1]: one matmul (fast under vmap, too)
    return Xa @ theta.transpose(-1, -2) if theta.dim() > 1 else Xa @ theta


def mlp_init(sizes: tuple[int, ...], seed: int = 0, device=None) -> torch.Tensor:
    """A flat parameter vector for an MLP with layer ``sizes`` (e.g. (64, 16, 1)), PyTorch's default init."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1 / math.sqrt(fan_in)
        parts += [(torch.rand(fan_out, fan_in, generator=g) * 2 - 1) * bound, (torch.rand(fan_out, generator=g) * 2 - 1) * bound]
    return torch.cat([p.flatten() for p in parts]).to(get_device(device))


def mlp_forward(theta: torch.Tensor, X: torch.Tensor, sizes: tuple[int, ...] = (64, 16, 1)) -> torch.Tensor:
    """Logits of a tanh MLP with layer ``sizes`` and flat parameters θ (one model; vmap it for many)."""
    n_params = sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))
    if theta.shape[-1] != n_params:
        raise ValueError(f"mismatched shapes: an MLP {sizes} has {n_params} parameters, θ has {theta.shape[-1]}")
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


def per_example_loss(forward: Callable, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of each example, L(z, θ) = −y log σ(f) − (1−y) log(1−σ(f)) = softplus(f) − y·f."""
    z = forward(theta, X)
    return torch.nn.functional.softplus(z) - y * z


def objective(forward: Callable, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, l2: float,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """Regularised empirical risk R(θ) = (1/n) Σ_i w_i L(z_i, θ) + (l2/2)‖θ‖².

    ``weights`` (default all ones) up- or down-weights examples; n is always the full training-set size, so
    removing z_i (w_i = 0) is exactly the ε = −1/n upweighting of the influence-function derivation.
    """
    losses = per_example_loss(forward, theta, X, y)
    if weights is not None:
        losses = losses * weights
    return losses.sum() / X.shape[0] + 0.5 * l2 * (theta ** 2).sum()


def margins(forward: Callable, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct-class margin (2y−1)·f(x) (= log p(correct)/p(wrong)): the output datamodels and TRAK explain."""
    return (2 * y - 1) * forward(theta, X)


# --------------------------------------------------------------------------------------------------
# Training: Newton for logistic regression, vmapped Adam for anything


def fit_logreg(X: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, weights: torch.Tensor | None = None,
               iters: int = 25, init: torch.Tensor | None = None) -> torch.Tensor:
    """Minimise R(θ) of :func:`objective` for logistic regression by Newton's method (to machine precision).

    ``weights`` of shape [M, n] trains M models at once (batched linear algebra); returns θ of shape [p]
    or [M, p]. Steps are halved where a full Newton step would not decrease R.
    """
    if l2 <= 0:
        raise ValueError("l2 must be > 0: without it the Hessian of separable data is singular and θ diverges")
    single = weights is None or weights.dim() == 1
    n, d = X.shape
    W = torch.ones(1, n, device=X.device) if weights is None else weights.reshape(-1, n).to(X)
    M = W.shape[0]
    Xa = torch.cat([X, torch.ones(n, 1, device=X.device)], 1)
    theta = torch.zeros(M, d + 1, device=X.device) if init is None else init.reshape(M, d + 1).clone()
    eye = torch.eye(d + 1, device=X.device)

    def risk(th):
        z = th @ Xa.T
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y.expand_as(z), reduction="none")
        return (W * loss).sum(1) / n + 0.5 * l2 * (th ** 2).sum(1)

    for _ in range(iters):
        p = torch.sigmoid(theta @ Xa.T)
        g = ((W * (p - y)) @ Xa) / n + l2 * theta
        H = (Xa.T.unsqueeze(0) * (W * p * (1 - p)).unsqueeze(1)) @ Xa / n + l2 * eye
        step = torch.linalg.solve(H, g.unsqueeze(-1)).squeeze(-1)
        r0, t = risk(theta), torch.ones(M, 1, device=X.device)
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


def train_ensemble(forward: Callable, theta0: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                   weights: torch.Tensor, l2: float = 1e-2, steps: int = 200, lr: float = 0.05,
                   optimizer: str = "adam", momentum: float = 0.9) -> torch.Tensor:
    """Train M models at once: full-batch Adam on R(θ_m) with example weights ``weights[m]`` (e.g. a subset's
    indicator 1_S). ``torch.func.vmap`` stacks the M gradient computations into one batched call.

    theta0: [p] (same start for all) or [M, p]; weights: [M, n]. Returns [M, p].
    ``optimizer="gd"`` uses full-batch gradient descent with heavy-ball ``momentum`` instead (better for
    retraining from a warm start, where Adam's first steps jump by ``lr`` in every coordinate).
    """
    if weights.dim() != 2 or weights.shape[1] != X.shape[0]:
        raise ValueError(f"weights must have shape [M, n] = [models, {X.shape[0]}], got {tuple(weights.shape)}")
    M = weights.shape[0]
    theta = theta0.expand(M, -1).clone() if theta0.dim() == 1 else theta0.clone()
    if theta.shape[0] != M:
        raise ValueError(f"theta0 has {theta.shape[0]} rows but weights describe {M} models")
    g = vmap(grad(lambda th, w: objective(forward, th, X, y, l2, w)))
    if optimizer == "gd":
        return _momentum_steps(lambda th: g(th, weights), theta, steps, lr, momentum)
    if optimizer != "adam":
        raise ValueError(f"unknown optimizer {optimizer!r}: use 'adam' or 'gd'")
    return _adam_steps(lambda th: g(th, weights), theta, steps, lr)


def train_loop(forward: Callable, theta0: torch.Tensor, X: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
               l2: float = 1e-2, steps: int = 200, lr: float = 0.05) -> torch.Tensor:
    """The naive baseline of :func:`train_ensemble`: the same Adam training, one model after another."""
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
    Xa = torch.cat([X, torch.ones(X.shape[0], 1, device=X.device)], 1)
    p = torch.sigmoid(Xa @ theta)
    return (Xa.T * (p * (1 - p))) @ Xa / X.shape[0] + l2 * torch.eye(Xa.shape[1], device=X.device)


def hessian_matrix(fn: Callable, theta: torch.Tensor) -> torch.Tensor:
    """The exact Hessian ∇²fn(θ) [p, p] by ``torch.func.hessian`` (forward-over-reverse autodiff)."""
    return hessian(fn)(theta)


def hvp_fn(fn: Callable, theta: torch.Tensor) -> Callable:
    """v ↦ ∇²fn(θ)·v without forming the Hessian: ``torch.func.jvp`` of ``torch.func.grad`` (Pearlmutter 1994).

    The returned function accepts one vector [p] or a batch [k, p] (vmapped).
    """
    g = grad(fn)

    def one(v):
        return jvp(g, (theta,), (v,))[1]

    batched = vmap(one)

    def hvp(v):
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
    in parallel). Raises ValueError when pᵀHp ≤ 0 (H is not positive definite: add damping).
    """
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
        Hp = hvp(p[0]).reshape(1, -1) if single else hvp(p)
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
    if scale <= 0:
        raise ValueError(f"scale must be > 0 (larger than the largest eigenvalue of H), got {scale}")
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
    if hessian is not None:
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
    if method == "lissa":
        return lissa(hvp, v, damping=damping, **kwargs)
    raise ValueError(f"unknown method {method!r}: use 'exact', 'cg' or 'lissa'")


# --------------------------------------------------------------------------------------------------
# Influence, self-influence, leave-one-out, TracIn


def per_example_grads(forward: Callable, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇_θ L(z_i, θ) for every example at once, [n, p] (``torch.func.vmap`` over ``torch.func.grad``)."""
    def one(th, x, t):
        return per_example_loss(forward, th, x[None], t[None]).sum()

    return vmap(grad(one), in_dims=(None, 0, 0))(theta, X, y)


def _check_grads(train_grads, test_grad):
    if train_grads.dim() != 2:
        raise ValueError(f"train_grads must be [n, p] (one gradient per training point), got {tuple(train_grads.shape)}")
    if test_grad.shape[-1] != train_grads.shape[-1]:
        raise ValueError(f"mismatched parameter and gradient shapes: test gradient has {test_grad.shape[-1]} entries, "
                         f"training gradients {train_grads.shape[-1]}; compute both at the same θ of the same model")


def output_grads(forward: Callable, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇_θ of each example's correct-class margin (2y−1)·f(x), [n, p]: the gradients TRAK projects."""
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
    if method == "identity":
        s_test = test_grad
    else:
        s_test = inverse_hvp(test_grad, hessian=hessian, hvp=hvp, method=method, damping=damping, **kwargs)
    return -(s_test @ train_grads.T)


def self_influence(train_grads: torch.Tensor, hessian: torch.Tensor, damping: float = 0.0) -> torch.Tensor:
    """Self-influence ∇L(z_i)ᵀ (H + λI)⁻¹ ∇L(z_i): how much z_i's own loss depends on keeping z_i.

    Large for points the model must bend to fit, e.g. mislabeled ones (Koh & Liang 2017, section 5.4).
    """
    _check_grads(train_grads, train_grads[0])
    return (inverse_hvp(train_grads, hessian=hessian, damping=damping) * train_grads).sum(1)


def leave_one_out(X: torch.Tensor, y: torch.Tensor, indices, l2: float = 1e-2, theta_full: torch.Tensor | None = None,
                  iters: int = 25) -> torch.Tensor:
    """Ground truth for influence: retrain logistic regression without each training point in ``indices``.

    All retrainings run as one batched Newton solve (warm-started at ``theta_full`` when given); returns [k, p].
    """
    indices = torch.as_tensor(indices, device=X.device).reshape(-1)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(y)):
        raise ValueError(f"indices must lie in [0, {len(y)}), got range [{int(indices.min())}, {int(indices.max())}]")
    W = torch.ones(len(indices), len(y), device=X.device)
    W[torch.arange(len(indices)), indices] = 0
    init = None if theta_full is None else theta_full.expand(len(indices), -1)
    return fit_logreg(X, y, l2, weights=W, iters=iters, init=init)


def sgd_checkpoints(forward: Callable, theta0: torch.Tensor, X: torch.Tensor, y: torch.Tensor, l2: float = 1e-2,
                    epochs: int = 10, lr: float = 0.5, batch_size: int = 32, seed: int = 0) -> tuple[list, list]:
    """Minibatch SGD on R(θ), keeping a checkpoint θ_t and its learning rate η_t after every epoch (for TracIn)."""
    g = torch.Generator().manual_seed(seed)
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
    lrs = torch.as_tensor(lrs, dtype=train_grads.dtype, device=train_grads.device)
    if train_grads.dim() != 3 or test_grads.shape[0] != train_grads.shape[0] or len(lrs) != train_grads.shape[0]:
        raise ValueError("train_grads must be [T, n, p], test_grads [T, (m,) p] and lrs of length T (one per checkpoint)")
    if test_grads.shape[-1] != train_grads.shape[-1]:
        raise ValueError("mismatched parameter and gradient shapes between train_grads and test_grads")
    if test_grads.dim() == 2:
        return torch.einsum("t,tnp,tp->n", lrs, train_grads, test_grads)
    return torch.einsum("t,tnp,tmp->mn", lrs, train_grads, test_grads)


# --------------------------------------------------------------------------------------------------
# Datamodels, LDS, TRAK


def random_subsets(n: int, m: int, alpha: float = 0.5, seed: int = 0, device=None) -> torch.Tensor:
    """m random subsets of {0..n−1}, each of exactly round(αn) points, as a 0/1 float mask [m, n]."""
    if not (isinstance(alpha, (float, int)) and 0 < alpha < 1):
        raise ValueError(f"the subset fraction α must lie strictly between 0 and 1, got {alpha!r}")
    if n < 2 or m < 1:
        raise ValueError(f"need n ≥ 2 training points and m ≥ 1 subsets, got n={n}, m={m}")
    g = torch.Generator().manual_seed(seed)
    k = max(1, min(n - 1, round(alpha * n)))
    idx = torch.rand(m, n, generator=g).argsort(1)[:, :k]
    mask = torch.zeros(m, n)
    mask.scatter_(1, idx, 1.0)
    return mask.to(get_device(device))


def fit_datamodels(masks: torch.Tensor, outputs: torch.Tensor, l1: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear datamodels (Ilyas et al. 2022): per test input x, min_θ Σ_S (θᵀ1_S + b − f(x; S))² / (2m) + l1‖θ‖₁.

    masks: [m, n] subset indicators; outputs: [m, k] the trained models' outputs on k test inputs.
    Fitted with scikit-learn's Lasso (coordinate descent). Returns weights [k, n] and intercepts [k].
    """
    from sklearn.linear_model import Lasso

    if masks.shape[0] != outputs.shape[0]:
        raise ValueError(f"masks [m, n] and outputs [m, k] must have the same m, got {masks.shape[0]} and {outputs.shape[0]}")
    if l1 <= 0:
        raise ValueError("l1 must be > 0 (use a small value such as 1e-3); without it the fit is ordinary least squares")
    A = masks.detach().cpu().double().numpy()
    Y = outputs.detach().cpu().double().numpy()
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
    _check_grads(train_out_grads, test_out_grads)
    g = torch.Generator().manual_seed(seed)
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
