"""Checks for the exercises of notebook 04 · Training-data attribution: influence functions and datamodels."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ._machinery import Case, Exercise

__all__ = ["conjugate_gradient", "influence_hvp", "lds"]


# -- conjugate gradient ------------------------------------------------------------------------------


def _cg_reference(hvp: Callable, b: torch.Tensor, n_steps: int) -> torch.Tensor:
    """x ≈ H⁻¹ b after at most n_steps CG iterations from x = 0, using only hvp."""
    from labkit.data_attribution import conjugate_gradient

    return conjugate_gradient(hvp, b, max_iter=n_steps, tol=0.0)


def _spd(dim: int, seed: int, cond: float = 20.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    ev = torch.logspace(0, np.log10(cond), dim, dtype=torch.float64)
    return (Q * ev) @ Q.T


class _MatVec:
    """v ↦ A v, with a readable repr (the check prints case descriptions, not this object)."""

    def __init__(self, A):
        self.A = A

    def __call__(self, v):
        return self.A @ v


def _cg_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    A5, A8 = _spd(5, 0), _spd(8, 1, cond=100.0)
    b5 = torch.randn(5, generator=g, dtype=torch.float64)
    b8 = torch.randn(8, generator=g, dtype=torch.float64)
    return [
        Case("a 5×5 positive-definite H, 5 steps (CG is exact here)", (_MatVec(A5), b5, 5)),
        Case("an 8×8 H with condition number 100, only 3 steps (not converged yet)", (_MatVec(A8), b8, 3)),
        Case("an 8×8 H, 8 steps", (_MatVec(A8), b8, 8)),
        Case("H = 3·I: one step solves it", (_MatVec(3 * torch.eye(4, dtype=torch.float64)), torch.ones(4, dtype=torch.float64), 4)),
        Case("b = 0: the answer is x = 0 (no division 0/0)", (_MatVec(A5), torch.zeros(5, dtype=torch.float64), 5)),
    ]


def _cg_mistakes() -> dict[str, Callable]:
    def steepest(hvp, b, n_steps):  # p ← r (no conjugation): steepest descent with exact line search
        x, r = torch.zeros_like(b), b.clone()
        for _ in range(n_steps):
            rs = r @ r
            if rs == 0:
                break
            Hr = hvp(r)
            a = rs / (r @ Hr)
            x, r = x + a * r, r - a * Hr
        return x

    def plus_residual(hvp, b, n_steps):  # r ← r + αHp
        x, r = torch.zeros_like(b), b.clone()
        p, rs = r.clone(), r @ r
        for _ in range(n_steps):
            if rs == 0:
                break
            Hp = hvp(p)
            a = rs / (p @ Hp)
            x, r = x + a * p, r + a * Hp
            rs_new = r @ r
            p, rs = r + rs_new / rs * p, rs_new
        return x

    def alpha_pp(hvp, b, n_steps):  # α = pᵀp / pᵀHp
        x, r = torch.zeros_like(b), b.clone()
        p, rs = r.clone(), r @ r
        for _ in range(n_steps):
            if rs == 0:
                break
            Hp = hvp(p)
            a = (p @ p) / (p @ Hp)
            x, r = x + a * p, r - a * Hp
            rs_new = r @ r
            p, rs = r + rs_new / rs * p, rs_new
        return x

    def returns_residual(hvp, b, n_steps):
        return b - hvp(_cg_reference(hvp, b, n_steps))

    def no_zero_guard(hvp, b, n_steps):
        x, r = torch.zeros_like(b), b.clone()
        p, rs = r.clone(), r @ r
        for _ in range(n_steps):
            Hp = hvp(p)
            a = rs / (p @ Hp)
            x, r = x + a * p, r - a * Hp
            rs_new = r @ r
            p, rs = r + rs_new / rs * p, rs_new
        return x

    return {
        "the residual update is r ← r − αHp (minus): the residual is b − Hx and x just moved by αp.": plus_residual,
        "α must be rᵀr / pᵀHp (the residual's squared norm on top), not pᵀp / pᵀHp.": alpha_pp,
        "the search direction must be p ← r_new + βp with β = r_newᵀr_new / rᵀr; with p ← r you get steepest "
        "descent, which converges much more slowly.": steepest,
        "return the solution x, not the residual b − Hx.": returns_residual,
        "when b = 0 (or the residual reaches exactly 0) stop and return x: otherwise 0/0 gives NaN.": no_zero_guard,
    }


conjugate_gradient = Exercise("conjugate_gradient", _cg_reference, _cg_cases(), _cg_mistakes(), rtol=1e-6, atol=1e-8)
conjugate_gradient.__doc__ = "Check ``conjugate_gradient(hvp, b, n_steps)``: CG for H x = b with Hessian-vector products."


# -- LDS -----------------------------------------------------------------------------------------------


def _lds_reference(predicted: torch.Tensor, actual: torch.Tensor) -> float:
    """Mean over columns of the Spearman correlation across rows (average ranks for ties)."""
    from labkit.data_attribution import lds

    return lds(predicted, actual)


def _lds_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 4, generator=g)
    noisy = a + 0.7 * torch.randn(50, 4, generator=g)
    monotone = torch.exp(3 * a)  # a monotone transform: Spearman 1, Pearson < 1
    ties = torch.randint(0, 4, (40, 3), generator=g).float()
    return [
        Case("50 subsets × 4 test inputs, noisy predictions", (noisy, a)),
        Case("predictions that are a monotone transform of the outputs (LDS = 1)", (monotone, a)),
        Case("anti-correlated predictions", (-noisy, a)),
        Case("outputs with many ties (average ranks)", (ties + 0.3 * torch.randn(40, 3, generator=g), ties)),
        Case("very different sizes of the columns", (noisy * torch.tensor([1.0, 100.0, 0.01, 5.0]), a)),
    ]


def _lds_mistakes() -> dict[str, Callable]:
    def pearson(P, A):
        return float(np.mean([np.corrcoef(P[:, c].numpy(), A[:, c].numpy())[0, 1] for c in range(P.shape[1])]))

    def rows(P, A):
        from scipy.stats import spearmanr

        return float(np.mean([spearmanr(P[r].numpy(), A[r].numpy())[0] for r in range(P.shape[0])]))

    def flat(P, A):
        from scipy.stats import spearmanr

        return float(spearmanr(P.flatten().numpy(), A.flatten().numpy())[0])

    def ordinal_ranks(P, A):
        rk = lambda v: v.argsort(0).argsort(0).double()  # noqa: E731
        return float(np.mean([np.corrcoef(rk(P[:, c]).numpy(), rk(A[:, c]).numpy())[0, 1] for c in range(P.shape[1])]))

    return {
        "this is the Pearson correlation of the values; the LDS is a rank (Spearman) correlation.": pearson,
        "correlate each column (one test input, across subsets), not each row.": rows,
        "compute one correlation per test input and average them; do not flatten all columns together.": flat,
        "tied outputs must get their average rank (as scipy.stats.spearmanr does), not arbitrary distinct ranks.": ordinal_ranks,
    }


lds = Exercise("lds", _lds_reference, _lds_cases(), _lds_mistakes())
lds.__doc__ = "Check ``lds(predicted, actual)``: the linear datamodeling score (mean Spearman over test inputs)."


# -- influence with Hessian-vector products ------------------------------------------------------------


def _influence_reference(forward, theta, X, y, x_test, y_test, l2, n_steps):
    """I_up,loss(z_i, z_test) = −∇L(z_test)ᵀ H⁻¹ ∇L(z_i) for every training point, H⁻¹∇L(z_test) by n_steps CG
    iterations on jvp-of-grad HVPs of R(θ) = (1/n) Σ L(z_i, θ) + (l2/2)‖θ‖²."""
    from labkit import data_attribution as da

    G = da.per_example_grads(forward, theta, X, y)
    g_test = da.per_example_grads(forward, theta, x_test[None], y_test[None])[0]
    hvp = da.hvp_fn(lambda th: da.objective(forward, th, X, y, l2), theta)
    return da.influence(G, g_test, hvp=hvp, method="cg", max_iter=n_steps, tol=0.0)


def _influence_cases() -> list[Case]:
    from labkit import data_attribution as da

    data = da.digits_pair(1, 7, device="cpu")
    X, y = data["X_train"].double(), data["y_train"].double()
    Xt, yt = data["X_test"].double(), data["y_test"].double()
    theta = da.fit_logreg(X, y, 1e-2)
    j = int(da.per_example_loss(da.logreg_forward, theta, Xt, yt).argmax())
    g = torch.Generator().manual_seed(8)
    Xs = torch.randn(20, 3, generator=g, dtype=torch.float64)
    ys = (torch.rand(20, generator=g) < 0.5).double()
    th = torch.randn(4, generator=g, dtype=torch.float64)
    return [
        Case("the notebook's digits 1 vs 7 logistic regression (float64), its hardest test image, λ = 0.01, 30 CG steps",
             (da.logreg_forward, theta, X, y, Xt[j], yt[j], 1e-2, 30)),
        Case("the same model, test image 0, only 4 CG steps (not yet converged)",
             (da.logreg_forward, theta, X, y, Xt[0], yt[0], 1e-2, 4)),
        Case("20 points with 3 features, θ not at the optimum, λ = 0.1, 10 CG steps",
             (da.logreg_forward, th, Xs, ys, Xs[0] + 0.5, ys[0], 0.1, 10)),
    ]


def _plain_cg(hvp, b, n_steps):
    x, r = torch.zeros_like(b), b.clone()
    p, rs = r.clone(), r @ r
    for _ in range(n_steps):
        if rs == 0:
            break
        Hp = hvp(p)
        alpha = rs / (p @ Hp)
        x, r = x + alpha * p, r - alpha * Hp
        rs_new = r @ r
        p, rs = r + (rs_new / rs) * p, rs_new
    return x


def _influence_wrong(forward, theta, X, y, x_test, y_test, l2, n_steps, identity=False, hvp_l2=True, sign=-1.0,
                     per_n=False, reg_grads=False):
    from torch.func import grad, jvp, vmap

    from labkit import data_attribution as da

    def loss_one(th, x, t):
        out = da.per_example_loss(forward, th, x[None], t[None]).sum()
        return out + 0.5 * l2 * (th ** 2).sum() if reg_grads else out

    G = vmap(grad(loss_one), in_dims=(None, 0, 0))(theta, X, y)
    g_test = grad(loss_one)(theta, x_test, y_test)
    g_risk = grad(lambda th: da.objective(forward, th, X, y, l2 if hvp_l2 else 0.0))
    s = g_test if identity else _plain_cg(lambda v: jvp(g_risk, (theta,), (v,))[1], g_test, n_steps)
    out = sign * (G @ s)
    return out / len(X) if per_n else out


def _influence_mistakes() -> dict[str, Callable]:
    return {
        "solve H s = ∇L(z_test) with conjugate gradient on the HVPs before the dot products; without H⁻¹ you get the "
        "plain gradient dot product.": lambda *a: _influence_wrong(*a, identity=True),
        "H is the Hessian of the regularised objective R(θ) = (1/n)Σ L(z_i, θ) + (λ/2)‖θ‖²: include the λ term in "
        "the function you differentiate for the HVP.": lambda *a: _influence_wrong(*a, hvp_l2=False),
        "mind the sign: I_up,loss = −∇L(z_test)ᵀ H⁻¹ ∇L(z_i).": lambda *a: _influence_wrong(*a, sign=1.0),
        "return I_up,loss itself; dividing by n gives the predicted change of the loss when a point is removed "
        "(−I/n), which the notebook computes afterwards.": lambda *a: _influence_wrong(*a, per_n=True),
        "∇L(z_i) is the gradient of one example's loss, without the regulariser (λθ belongs to H, not to the "
        "per-example gradients).": lambda *a: _influence_wrong(*a, reg_grads=True),
    }


influence_hvp = Exercise("influence_hvp", _influence_reference, _influence_cases, _influence_mistakes(), rtol=1e-6,
                         atol=1e-9)
influence_hvp.__doc__ = ("Check ``influence_hvp(forward, theta, X, y, x_test, y_test, l2, n_steps)``: influence of "
                         "every training point through CG on Hessian-vector products.")
