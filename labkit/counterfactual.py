"""Counterfactual explanations and recourse (notebook 02).

* data and models: a synthetic credit table with a known decision rule (:func:`make_credit_data`), its action
  set (:data:`FEATURES`), a logistic regression and an MLP that standardise internally (:class:`TabularModel`);
* Wachter et al. (2017) counterfactuals by gradient descent with a growing penalty (:func:`wachter`) and the
  usual metrics (:func:`validity`, :func:`proximity`, :func:`sparsity`);
* least-cost actionable recourse for a linear model as an integer program (Ustun, Spangher & Liu 2019) solved
  with ``scipy.optimize.milp`` (:func:`recourse_milp`), a brute-force optimum on small grids
  (:func:`brute_force_recourse`), diverse recourse sets (:func:`diverse_recourse`) and a diagnosis of
  infeasible problems (:class:`InfeasibleRecourse`);
* visual counterfactuals (Goyal et al. 2019): greedy minimum-edit cell swaps between a query and a distractor
  image in a CNN's spatial feature map (:func:`greedy_visual_counterfactual`), with an exhaustive check for
  small edit counts (:func:`min_edits_exhaustive`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from labkit.attribution import DigitsCNN, accuracy, load_digits, train_classifier  # noqa: F401  (re-exported)
from labkit.runtime import get_device
from labkit.validation import integer as _integer, number as _number, tensor as _tensor, torch_module as _module

__all__ = [
    "greedy_cell_swaps",
    "FEATURES", "Feature", "make_credit_data", "TabularModel", "fit_logistic", "fit_mlp", "wachter", "validity",
    "proximity", "sparsity", "mad", "step_bounds", "InfeasibleRecourse", "Recourse", "recourse_milp",
    "brute_force_recourse", "diverse_recourse", "greedy_visual_counterfactual", "min_edits_exhaustive",
    "DigitsCNN", "load_digits", "train_classifier", "accuracy",
]


# ----------------------------------------------------------------------------------- argument checks
# Every public function refuses bad input with an error that names the argument and what is expected.


def _vector(name: str, v, d: int | None = None, dtype=torch.float64) -> torch.Tensor:
    """A 1-D tensor (from a tensor, array, list or tuple) of finite numbers, of length ``d`` when given."""
    if not isinstance(v, (torch.Tensor, np.ndarray, list, tuple)):
        raise TypeError(f"{name} must be a tensor (or list) of numbers, got {type(v).__name__}")
    try:
        t = torch.as_tensor(v, dtype=dtype)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must hold numbers, got {v!r}") from None
    if t.dim() > 1:
        t = t.flatten() if t.dim() == 2 and 1 in t.shape else t
    if t.dim() != 1:
        raise ValueError(f"{name} must be a 1-D vector, got shape {tuple(t.shape)}")
    if d is not None and t.shape != (d,):
        raise ValueError(f"{name} must hold one value per feature ({d}), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf")
    return t


# ------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Feature:
    """One column of the credit table and what an applicant can do about it.

    ``direction``: +1 can only increase, −1 can only decrease, 0 either way; ``mutable=False``: cannot change.
    ``step``: the smallest change that counts as one action (integer steps of this size).
    """

    name: str
    unit: str
    lower: float
    upper: float
    step: float
    mutable: bool = True
    direction: int = 0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty string, got {self.name!r}")
        lower, upper = _number("lower", self.lower), _number("upper", self.upper)
        if lower > upper:
            raise ValueError(f"feature {self.name!r}: lower ({lower:g}) must not exceed upper ({upper:g})")
        if _number("step", self.step) <= 0:
            raise ValueError(f"feature {self.name!r}: step must be > 0 (the size of one action), got {self.step}")
        if not isinstance(self.mutable, bool):
            raise TypeError(f"feature {self.name!r}: mutable must be True or False, got {self.mutable!r}")
        if isinstance(self.direction, bool) or self.direction not in (-1, 0, 1):
            raise ValueError(f"feature {self.name!r}: direction must be -1 (only decrease), 0 (either way) or +1 "
                             f"(only increase), got {self.direction!r}")


FEATURES = (
    Feature("income", "k$/year", 10, 200, 5),
    Feature("debt", "k$", 0, 100, 1),
    Feature("late_payments", "count (2 years)", 0, 20, 1, mutable=False),
    Feature("savings", "k$", 0, 100, 1),
    Feature("age", "years", 18, 90, 1, mutable=False),
    Feature("education", "level 0–4", 0, 4, 1, direction=+1),
)

#: The true log-odds of repaying, in raw units: b + Σ w_j x_j (the data's planted rule).
TRUE_WEIGHTS = torch.tensor([0.04, -0.06, -0.45, 0.05, 0.02, 0.35])
TRUE_BIAS = -2.4


def make_credit_data(n: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic credit table ``X [n, 6]`` (columns :data:`FEATURES`, raw units) and labels ``y`` (1 = repays).

    Columns are drawn from plausible, correlated distributions (income rises with age and education, debt with
    income); the label is Bernoulli(σ(b + wᵀx)) with the planted :data:`TRUE_WEIGHTS`, so the "right" model is known.
    """
    if _integer("n", n) < 10:
        raise ValueError(f"n must be at least 10, got {n}")
    rng = np.random.default_rng(_integer("seed", seed))
    age = rng.integers(18, 75, n).astype(float)
    education = rng.integers(0, 5, n).astype(float)
    income = np.clip(np.round(20 + 0.5 * (age - 18) + 8 * education + rng.gamma(2.0, 10.0, n)), 10, 200)
    debt = np.clip(np.round(0.3 * income * rng.uniform(0, 1.5, n)), 0, 100)
    late = np.clip(rng.poisson(1.2, n), 0, 20).astype(float)
    savings = np.clip(np.round(rng.gamma(1.5, 8.0, n) + 0.1 * income), 0, 100)
    X = np.stack([income, debt, late, savings, age, education], 1)
    logit = TRUE_BIAS + X @ TRUE_WEIGHTS.numpy()
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.long)


def mad(X: torch.Tensor) -> torch.Tensor:
    """Median absolute deviation of each column (Wachter et al.'s scale), floored at 1e-3·(std+1) to avoid 0."""
    X = _tensor("X", X, dims=2)
    if len(X) < 2:
        raise ValueError(f"X needs at least two rows to measure a spread, got {len(X)}")
    med = X.median(0).values
    m = (X - med).abs().median(0).values
    return torch.where(m > 0, m, 1e-3 * (X.std(0) + 1))


class TabularModel(nn.Module):
    """``net((x − μ)/σ)``: a classifier on raw feature units that standardises internally. Outputs logits [B, 2]."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        _module("net", net)
        mean, std = _tensor("mean", mean, dims=1), _tensor("std", std, dims=1)
        if mean.shape != std.shape:
            raise ValueError(f"mean and std must have one entry per feature each, got {tuple(mean.shape)} and {tuple(std.shape)}")
        if not (std > 0).all():
            raise ValueError("std must be > 0 for every feature (it divides the inputs); drop constant columns")
        self.net = net
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    def linear_score(self) -> tuple[torch.Tensor, float]:
        """For a linear net: (a, c) with logit₁ − logit₀ = aᵀx + c in raw units."""
        lin = self.net
        if not isinstance(lin, nn.Linear):
            raise TypeError("linear_score needs a model whose net is one nn.Linear layer (the logistic regression)")
        w = (lin.weight[1] - lin.weight[0]).detach()
        b = float((lin.bias[1] - lin.bias[0]).detach())
        a = w / self.std
        return a.cpu(), b - float((a * self.mean).sum())


def _data(X, y) -> tuple[torch.Tensor, torch.Tensor]:
    X = _tensor("X", X, dims=2)
    y = _tensor("y", y, dims=1, floating=False)
    if len(y) != len(X):
        raise ValueError(f"y must hold one label per row of X ({len(X)}), got {len(y)}")
    if y.is_floating_point() or y.dtype == torch.bool or not ((y == 0) | (y == 1)).all():
        raise ValueError("y must hold integer labels 0 (default) and 1 (repays)")
    if len(y.unique()) < 2:
        raise ValueError("y holds only one class: a classifier needs examples of both")
    if not (X.std(0) > 0).all():
        raise ValueError("a column of X is constant: it cannot be standardised (drop it)")
    return X, y


def fit_logistic(X: torch.Tensor, y: torch.Tensor, C: float = 1.0, device=None) -> TabularModel:
    """scikit-learn's LogisticRegression on standardised columns, wrapped as a :class:`TabularModel`."""
    from sklearn.linear_model import LogisticRegression

    X, y = _data(X, y)
    C = _number("C", C, lo=0, lo_open=True)
    mean, std = X.mean(0), X.std(0)
    clf = LogisticRegression(C=C, max_iter=1000).fit(((X - mean) / std).numpy(), y.numpy())
    lin = nn.Linear(X.shape[1], 2)
    with torch.no_grad():
        w = torch.tensor(clf.coef_[0], dtype=torch.float32)
        lin.weight.copy_(torch.stack([torch.zeros_like(w), w]))
        lin.bias.copy_(torch.tensor([0.0, float(clf.intercept_[0])]))
    return TabularModel(lin, mean, std).to(get_device(device)).eval()


def fit_mlp(X: torch.Tensor, y: torch.Tensor, hidden: int = 32, epochs: int = 300, lr: float = 1e-2, seed: int = 0,
            device=None) -> TabularModel:
    """A one-hidden-layer MLP, full-batch Adam on cross-entropy, as a :class:`TabularModel`."""
    dev = get_device(device)
    X, y = _data(X, y)
    hidden, epochs = _integer("hidden", hidden, lo=1), _integer("epochs", epochs, lo=1)
    lr = _number("lr", lr, lo=0, lo_open=True)
    torch.manual_seed(_integer("seed", seed))
    mean, std = X.mean(0), X.std(0)
    model = TabularModel(nn.Sequential(nn.Linear(X.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 2)), mean, std).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    Xd, yd = X.to(dev), y.to(dev)
    for _ in range(epochs):
        loss = F.cross_entropy(model(Xd), yd)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# -------------------------------------------------------------------------------------------- Wachter


def _check_targets(model: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    with torch.no_grad():
        logits = model(x)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer, torch.Tensor, list, tuple)):
        raise TypeError(f"target must be a class index (or one per row), got {type(target).__name__}: {target!r}")
    t = torch.as_tensor(target, device=x.device)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
    t = t.long()
    t = t.expand(x.shape[0]) if t.dim() == 0 else t
    if t.shape != (x.shape[0],):
        raise ValueError(f"target must be one class or one per row ({x.shape[0]}), got shape {tuple(t.shape)}")
    if (t < 0).any() or (t >= logits.shape[-1]).any():
        raise ValueError(f"target out of range: the model has {logits.shape[-1]} classes")
    same = (logits.argmax(-1) == t).nonzero().flatten().tolist()
    if same:
        raise ValueError(f"rows {same} are already classified as their target class: a counterfactual needs a "
                         "target class different from the current prediction (drop those rows or pick another class)")
    return t


def wachter(model: nn.Module, x: torch.Tensor, target, scale: torch.Tensor, lam0: float = 0.1, growth: float = 3.0,
            rounds: int = 8, steps: int = 150, lr: float = 0.05, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Wachter, Mittelstadt & Russell (2017): argmin_x′ max_λ λ(f_t(x′) − 1)² + d(x, x′), d = Σ_j |x_j − x′_j| / MAD_j.

    Solved by Adam on x′ (in units of ``scale``) for ``steps`` steps per round; after each round λ is multiplied by
    ``growth`` for every row that is not yet classified as its target (a growing penalty, as in the paper).
    Batched over rows. Knows nothing about actionability: any feature may move. Returns ``(x′, valid)``.
    """
    dev = get_device(device)
    model = _module("model", model).to(dev).eval()
    x = _tensor("x", x, dims=2).to(dev).float()
    scale = _tensor("scale", scale).to(dev).float()
    if scale.shape != x.shape[-1:] or (scale <= 0).any():
        raise ValueError(f"scale must be {x.shape[-1]} positive numbers (one per feature, e.g. the MAD)")
    lam0, growth = _number("lam0", lam0, lo=0, lo_open=True), _number("growth", growth, lo=1, lo_open=True)
    rounds, steps = _integer("rounds", rounds, lo=1), _integer("steps", steps, lo=1)
    lr = _number("lr", lr, lo=0, lo_open=True)
    t = _check_targets(model, x, target)
    for p in model.parameters():
        p.requires_grad_(False)
    z = torch.zeros_like(x, requires_grad=True)  # x′ = x + z·scale
    lam = torch.full((x.shape[0],), float(lam0), device=dev)
    try:
        for _ in range(rounds):
            opt = torch.optim.Adam([z], lr=lr)
            for _ in range(steps):
                xp = x + z * scale
                p_t = torch.softmax(model(xp), -1).gather(1, t[:, None])[:, 0]
                loss = (lam * (p_t - 1) ** 2 + z.abs().sum(1)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                valid = model(x + z * scale).argmax(-1) == t
            if valid.all():
                break
            lam = torch.where(valid, lam, lam * growth)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    xp = (x + z * scale).detach()
    with torch.no_grad():
        valid = model(xp).argmax(-1) == t
    return xp, valid


def validity(model: nn.Module, x_cf: torch.Tensor, target) -> torch.Tensor:
    """1 where the counterfactual is classified as its target class."""
    _module("model", model)
    x_cf = _tensor("x_cf", x_cf, dims=2)
    with torch.no_grad():
        logits = model(x_cf)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer, torch.Tensor, list, tuple)):
        raise TypeError(f"target must be a class index (or one per row), got {type(target).__name__}: {target!r}")
    t = torch.as_tensor(target, device=x_cf.device)
    if t.is_floating_point() or t.dtype == torch.bool or (t < 0).any() or (t >= logits.shape[-1]).any():
        raise ValueError(f"target must hold class indices in [0, {logits.shape[-1]}), got {target!r}")
    if t.dim() > 0 and t.shape != (len(x_cf),):
        raise ValueError(f"target must be one class or one per row ({len(x_cf)}), got shape {tuple(t.shape)}")
    return (logits.argmax(-1) == t).float()


def _pair(x, x_cf, scale):
    x, x_cf = _tensor("x", x, dims=(1, 2)), _tensor("x_cf", x_cf, dims=(1, 2))
    if x.shape[-1] != x_cf.shape[-1]:
        raise ValueError(f"x and x_cf must have the same features, got shapes {tuple(x.shape)} and {tuple(x_cf.shape)}")
    try:
        torch.broadcast_shapes(x.shape, x_cf.shape)
    except RuntimeError:
        raise ValueError(f"x {tuple(x.shape)} and x_cf {tuple(x_cf.shape)} must have the same number of rows") from None
    if scale is not None:
        scale = _tensor("scale", scale, dims=1)
        if scale.shape[0] != x.shape[-1] or not (scale > 0).all():
            raise ValueError(f"scale must be {x.shape[-1]} positive numbers (one per feature, e.g. the MAD)")
    return x, x_cf, scale


def proximity(x: torch.Tensor, x_cf: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """d(x, x′) = Σ_j |x_j − x′_j| / scale_j (scale = MAD: Wachter et al.'s distance)."""
    x, x_cf, scale = _pair(x, x_cf, scale)
    if scale is None:
        raise ValueError("scale is needed (one positive number per feature, e.g. mad(X))")
    return ((x - x_cf).abs() / scale).sum(-1)


def sparsity(x: torch.Tensor, x_cf: torch.Tensor, tol: float = 1e-2, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Number of features changed by more than ``tol`` (in units of ``scale`` when given)."""
    x, x_cf, scale = _pair(x, x_cf, scale)
    tol = _number("tol", tol, lo=0)
    diff = (x - x_cf).abs()
    if scale is not None:
        diff = diff / scale
    return (diff > tol).sum(-1)


# ------------------------------------------------------------------------------------------- recourse ILP


def step_bounds(x, lower, upper, step, mutable, direction) -> torch.Tensor:
    """The actionable set A as integer step ranges: ``[2, d]`` = (k_lo, k_hi) with x′_j = x_j + k_j·step_j.

    k_lo = ⌈(lower − x)/step⌉, k_hi = ⌊(upper − x)/step⌋ (stay within bounds); an immutable feature has
    k_lo = k_hi = 0; direction +1 (only increase) sets k_lo ≥ 0, −1 (only decrease) sets k_hi ≤ 0.
    All arguments are 1-D with one entry per feature; lower > upper, step ≤ 0, NaN and directions outside
    {−1, 0, +1} are refused.
    """
    x = _vector("x", x)
    d = x.shape[0]
    lower, upper, step = (_vector(name, v, d) for name, v in (("lower", lower), ("upper", upper), ("step", step)))
    bad = (lower > upper).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"lower must not exceed upper: feature(s) {bad} have lower {lower[bad].tolist()} > upper "
                         f"{upper[bad].tolist()}")
    if not (step > 0).all():
        raise ValueError(f"step must be > 0 for every feature (the size of one action), got {step.tolist()}")
    mutable = _vector("mutable", mutable, d, dtype=None)
    if mutable.dtype != torch.bool:
        raise TypeError(f"mutable must be a bool per feature (True = can change), got dtype {mutable.dtype}")
    direction = _vector("direction", direction, d, dtype=None)
    if direction.is_floating_point() or direction.dtype == torch.bool or not ((direction.abs() <= 1).all()):
        raise ValueError(f"direction must be an integer per feature in {{-1, 0, +1}}, got {direction.tolist()}")
    lo = torch.ceil((lower - x) / step - 1e-9)
    hi = torch.floor((upper - x) / step + 1e-9)
    lo = torch.where(direction > 0, lo.clamp_min(0), lo)
    hi = torch.where(direction < 0, hi.clamp_max(0), hi)
    lo = torch.where(mutable, lo, torch.zeros_like(lo))
    hi = torch.where(mutable, hi, torch.zeros_like(hi))
    return torch.stack([lo, hi])


class InfeasibleRecourse(ValueError):
    """No action in the actionable set reaches the target; ``blocking`` names the constraints to blame."""

    def __init__(self, message: str, blocking: list[str]):
        super().__init__(message)
        self.blocking = blocking


@dataclass
class Recourse:
    """A least-cost action: the new point, the integer steps per feature, the cost, the features changed."""

    x_new: torch.Tensor
    steps: torch.Tensor
    cost: float
    changed: list[str] = field(default_factory=list)

    def __post_init__(self):
        _tensor("x_new", self.x_new, dims=1)
        steps = _tensor("steps", self.steps, dims=1, floating=False)
        if steps.is_floating_point() or steps.dtype == torch.bool or steps.shape != self.x_new.shape:
            raise ValueError(f"steps must be integers, one per feature of x_new ({self.x_new.shape[0]}), got "
                             f"{steps.dtype} of shape {tuple(steps.shape)}")
        _number("cost", self.cost, lo=0)
        if not isinstance(self.changed, list) or not all(isinstance(n, str) for n in self.changed):
            raise TypeError(f"changed must be a list of feature names, got {self.changed!r}")


def _spec(features, x):
    if not isinstance(features, (tuple, list)) or not features or not all(isinstance(f, Feature) for f in features):
        raise TypeError("features must be a non-empty tuple of Feature (e.g. FEATURES or with_bounds(...))")
    d = len(features)
    x = _vector("x", x)
    if x.shape != (d,):
        raise ValueError(f"x must hold one value per feature ({d}), got shape {tuple(x.shape)}")
    arr = lambda attr: torch.tensor([getattr(f, attr) for f in features], dtype=torch.float64)  # noqa: E731
    return x, arr("lower"), arr("upper"), arr("step"), [f.mutable for f in features], [f.direction for f in features]


def _max_score(a, step, bounds):
    gain = a * step
    return torch.where(gain > 0, gain * bounds[1], gain * bounds[0]).sum()


def _diagnose(a, c, x, features, margin):
    x, lower, upper, step, mutable, direction = _spec(features, x)
    needed = margin - (float(a @ x) + c)
    best = float(_max_score(a, step, step_bounds(x, lower, upper, step, mutable, direction)))
    if best >= needed - 1e-12:
        return None
    blocking = []
    for j, f in enumerate(features):
        relaxations = []
        if not f.mutable:
            relaxations.append((f"{f.name} is immutable", dict(mutable=True)))
        elif f.direction != 0:
            relaxations.append((f"{f.name} can only {'increase' if f.direction > 0 else 'decrease'}", dict(direction=0)))
        if f.mutable:
            relaxations.append((f"{f.name} must stay within [{f.lower:g}, {f.upper:g}] {f.unit}",
                                dict(lower=-1e12, upper=1e12)))
        for label, change in relaxations:
            mut, dirs, lo_b, up_b = list(mutable), list(direction), lower.clone(), upper.clone()
            mut[j] = change.get("mutable", mut[j])
            dirs[j] = change.get("direction", dirs[j])
            lo_b[j] = change.get("lower", lo_b[j])
            up_b[j] = change.get("upper", up_b[j])
            if float(_max_score(a, step, step_bounds(x, lo_b, up_b, step, mut, dirs))) >= needed:
                blocking.append(label)
    msg = (f"no recourse exists: the score must rise by {needed:.3f}, but the best action inside the actionable set "
           f"raises it by only {best:.3f}. ")
    msg += ("Relaxing any one of these constraints would make it feasible: " + "; ".join(blocking) + "."
            if blocking else "No single constraint is to blame: several must be relaxed together.")
    return InfeasibleRecourse(msg, blocking)


def _score_args(a, c, cost_per_step, margin, d):
    a = _vector("a", a, d)
    c = _number("c", c)
    cost = torch.ones(d, dtype=torch.float64) if cost_per_step is None else _vector("cost_per_step", cost_per_step)
    if cost.shape != (d,) or (cost <= 0).any():
        raise ValueError(f"cost_per_step must be {d} positive numbers (one per feature)")
    return a, c, cost, _number("margin", margin, lo=0)


def recourse_milp(a, c: float, x, features=FEATURES, cost_per_step=None, margin: float = 1e-4,
                  exclude_supports: list[set[int]] | None = None) -> Recourse:
    """Least-cost actionable recourse for a linear classifier (Ustun, Spangher & Liu 2019), as an integer program:

        minimise Σ_j c_j (k⁺_j + k⁻_j)   over integers k⁺, k⁻ ≥ 0 (steps up / down) and binaries u
        s.t.  aᵀ(x + step ⊙ (k⁺ − k⁻)) + c ≥ margin          (the decision flips to 1)
              k⁺_j ≤ max(k_hi_j, 0),  k⁻_j ≤ max(−k_lo_j, 0)    (the actionable set, :func:`step_bounds`)
              k⁺_j + k⁻_j ≤ (k_hi_j − k_lo_j) u_j                 (u_j = 1 iff feature j changes)
              Σ_{j∈S} u_j ≤ |S| − 1 for each S in ``exclude_supports`` (a different set of features)

    solved by ``scipy.optimize.milp`` (HiGHS). ``a, c``: the score aᵀx + c in raw units
    (:meth:`TabularModel.linear_score`); ``cost_per_step`` c_j defaults to 1 (count the steps).
    Raises :class:`InfeasibleRecourse` naming the constraints that make the problem infeasible.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    x, lower, upper, step, mutable, direction = _spec(features, x)
    d = len(features)
    a, c, cost, margin = _score_args(a, c, cost_per_step, margin, d)
    if exclude_supports is not None and (not isinstance(exclude_supports, (list, tuple)) or not all(
            isinstance(S, (set, frozenset, list, tuple)) and S and all(isinstance(j, int) and 0 <= j < d for j in S)
            for S in exclude_supports)):
        raise ValueError(f"exclude_supports must be a list of non-empty sets of feature indices in [0, {d})")
    if float(a @ x) + c >= margin:
        raise ValueError("x is already classified as the target class (score ≥ 0): there is nothing to recourse")
    bad = _diagnose(a, c, x, features, margin)
    if bad is not None:
        raise bad
    kb = step_bounds(x, lower, upper, step, mutable, direction).numpy()
    up_max, down_max = np.maximum(kb[1], 0), np.maximum(-kb[0], 0)
    gain = (a * step).numpy()
    obj = np.concatenate([cost.numpy(), cost.numpy(), np.zeros(d)])
    rows, lbs, ubs = [np.concatenate([gain, -gain, np.zeros(d)])], [margin - (float(a @ x) + c)], [np.inf]
    for j in range(d):
        r = np.zeros(3 * d)
        r[j] = r[d + j] = 1
        r[2 * d + j] = -(up_max[j] + down_max[j])
        rows.append(r); lbs.append(-np.inf); ubs.append(0)
    for S in exclude_supports or []:
        r = np.zeros(3 * d)
        r[[2 * d + j for j in S]] = 1
        rows.append(r); lbs.append(-np.inf); ubs.append(len(S) - 1)
    res = milp(obj, constraints=LinearConstraint(np.array(rows), lbs, ubs), integrality=np.ones(3 * d),
               bounds=Bounds(np.zeros(3 * d), np.concatenate([up_max, down_max, np.ones(d)])))
    if res.status != 0 or res.x is None:
        raise InfeasibleRecourse(f"no recourse with a new set of features: {res.message}", ["the diversity constraints"])
    k = np.round(res.x[:d] - res.x[d:2 * d])
    x_new = x + step * torch.tensor(k)
    return Recourse(x_new.float(), torch.tensor(k, dtype=torch.long), float(cost @ torch.tensor(np.abs(k))),
                    [features[j].name for j in range(d) if k[j] != 0])


def brute_force_recourse(a, c: float, x, features=FEATURES, cost_per_step=None, margin: float = 1e-4,
                         max_steps: int = 6) -> tuple[float, torch.Tensor]:
    """The same problem by enumeration: every integer action with |k_j| ≤ ``max_steps`` inside the actionable set.

    Returns ``(least cost, steps)`` (cost ``inf`` when none of the enumerated actions flips the decision). The
    grid is complete when the MILP optimum lies inside it, which makes it a proof of optimality there.
    """
    x, lower, upper, step, mutable, direction = _spec(features, x)
    d = len(features)
    a, c, cost, margin = _score_args(a, c, cost_per_step, margin, d)
    max_steps = _integer("max_steps", max_steps, lo=0)
    kb = step_bounds(x, lower, upper, step, mutable, direction)
    ranges = [np.arange(max(int(kb[0, j]), -max_steps), min(int(kb[1, j]), max_steps) + 1) for j in range(d)]
    size = math.prod(len(r) for r in ranges)
    if size > 1_000_000:
        raise ValueError(f"max_steps={max_steps} makes a grid of {size:,} actions, too many to enumerate; lower it")
    grid = torch.tensor(np.array(list(itertools.product(*ranges))), dtype=torch.float64)  # [M, d]
    score = (x + grid * step) @ a + c
    ok = score >= margin
    if not ok.any():
        return float("inf"), torch.zeros(d, dtype=torch.long)
    costs = torch.where(ok, grid.abs() @ cost, torch.full_like(score, float("inf")))
    i = int(costs.argmin())
    return float(costs[i]), grid[i].long()


def diverse_recourse(a, c: float, x, k: int = 3, features=FEATURES, cost_per_step=None, margin: float = 1e-4) -> list[Recourse]:
    """Up to ``k`` least-cost actions, each forbidden from using all the features of an earlier one
    (Σ_{j∈S} u_j ≤ |S| − 1), so every new action drops at least one earlier lever: a diverse set."""
    k = _integer("k", k, lo=1)
    found: list[Recourse] = []
    supports: list[set[int]] = []
    names = [f.name for f in features]
    for _ in range(k):
        try:
            r = recourse_milp(a, c, x, features, cost_per_step, margin, exclude_supports=supports)
        except InfeasibleRecourse:
            if not found:
                raise
            break
        found.append(r)
        supports.append({names.index(n) for n in r.changed})
    return found


# ---------------------------------------------------------------------------------- visual counterfactuals


def _split_images(model, query, distractor, dev):
    """The query's and the distractor's feature grids f(I), f(I′), each [C, h, w], after checking the inputs."""
    _module("model", model)
    if not (hasattr(model, "features") and hasattr(model, "decide")):
        raise TypeError("model must be split into .features (f) and .decide (g), like DigitsCNN")
    query, distractor = _tensor("query", query), _tensor("distractor", distractor)
    if query.shape[-2:] != distractor.shape[-2:] or query.numel() != query.shape[-2] * query.shape[-1] \
            or distractor.numel() != distractor.shape[-2] * distractor.shape[-1]:
        raise ValueError(f"query and distractor must be one grey image each, of the same size, got shapes "
                         f"{tuple(query.shape)} and {tuple(distractor.shape)}")
    model = model.to(dev).eval()
    fq = model.features(query.to(dev).reshape(1, 1, *query.shape[-2:]))[0]
    fd = model.features(distractor.to(dev).reshape(1, 1, *distractor.shape[-2:]))[0]
    return fq, fd


@torch.no_grad()
def greedy_visual_counterfactual(model: DigitsCNN, query: torch.Tensor, distractor: torch.Tensor, target: int,
                                 max_edits: int | None = None, device=None) -> dict:
    """Goyal et al. (2019), greedy search. Split the CNN as g(f(I)); f(I) is a grid of n cells. Replace cells of
    f(I) by cells of the distractor's f(I′): f* = (1 − a) ∘ f(I) + a ∘ P f(I′) with a gating vector a and a
    permutation P; minimise ‖a‖₁ s.t. argmax g(f*) = c′. Greedy: at each step try every unused (query cell i,
    distractor cell j) pair in one batch and keep the one with the largest log p(c′); stop when the class flips.

    Returns ``{"edits": LongTensor [k, 2], "p_target": [k + 1], "flipped": bool}``.
    """
    dev = get_device(device)
    fq, fd = _split_images(model, query, distractor, dev)
    n_classes = model.decide(fq[None]).shape[-1]
    target = _integer("target", target)
    if max_edits is not None:
        max_edits = _integer("max_edits", max_edits, lo=1)
    if not 0 <= int(target) < n_classes:
        raise ValueError(f"target {target} is out of range: the model has {n_classes} classes")
    if int(model.decide(fq[None]).argmax()) == int(target):
        raise ValueError(f"the query is already classified as {target}: pick a different target class")
    edits, probs = greedy_cell_swaps(model.decide, fq, fd, int(target), max_edits)
    return {"edits": edits, "p_target": probs, "flipped": bool(probs.numel() and _is_target(model.decide, fq, fd, edits, target))}


def _apply(fq, fd, edits):
    C, h, w = fq.shape
    out = fq.reshape(C, h * w).clone()
    src = fd.reshape(C, h * w)
    for i, j in edits:
        out[:, int(i)] = src[:, int(j)]
    return out.reshape(C, h, w)


def _is_target(g, fq, fd, edits, target):
    return int(g(_apply(fq, fd, edits.tolist())[None]).argmax()) == int(target)


def greedy_cell_swaps(g, fq, fd, target: int, max_edits: int | None = None):
    """The greedy search of :func:`greedy_visual_counterfactual` on feature grids: ``(edits [k, 2], p_target [k + 1])``.

    ``g`` maps feature grids ``[n, C, h, w]`` to logits; ``fq`` and ``fd`` are the query's and the distractor's
    grids ``[C, h, w]``. Each step swaps in the (query cell, distractor cell) pair that raises log p(target)
    most, trying every unused pair in one batch, until the class is ``target`` or ``max_edits`` swaps are made.
    """
    if not callable(g):
        raise TypeError(f"g must be a function from feature grids to logits, got {type(g).__name__}")
    fq, fd = _tensor("fq", fq, dims=3), _tensor("fd", fd, dims=3)
    if fq.shape != fd.shape:
        raise ValueError(f"fq and fd must be feature grids of the same shape [C, h, w], got {tuple(fq.shape)} and {tuple(fd.shape)}")
    C, h, w = fq.shape
    n = h * w
    max_edits = n if max_edits is None else _integer("max_edits", max_edits, lo=0, hi=n)
    with torch.no_grad():
        n_classes = g(fq[None]).shape[-1]
    target = _integer("target", target, lo=0, hi=n_classes - 1)
    cur = fq.reshape(C, n).clone()
    src = fd.reshape(C, n)
    used_q, used_d, edits = set(), set(), []
    probs = [torch.log_softmax(g(cur.reshape(1, C, h, w)), -1)[0, target].exp()]
    while len(edits) < max_edits and int(g(cur.reshape(1, C, h, w)).argmax()) != target:
        pairs = [(i, j) for i in range(n) if i not in used_q for j in range(n) if j not in used_d]
        cand = cur[None].repeat(len(pairs), 1, 1)
        ii = torch.tensor([p[0] for p in pairs])
        jj = torch.tensor([p[1] for p in pairs])
        cand[torch.arange(len(pairs)), :, ii] = src[:, jj].T
        logp = torch.log_softmax(g(cand.reshape(-1, C, h, w)), -1)[:, target]
        best = int(logp.argmax())
        i, j = pairs[best]
        cur[:, i] = src[:, j]
        used_q.add(i); used_d.add(j); edits.append((i, j))
        probs.append(logp[best].exp())
    return torch.tensor(edits, dtype=torch.long).reshape(-1, 2), torch.stack(probs).cpu()


@torch.no_grad()
def min_edits_exhaustive(model: DigitsCNN, query: torch.Tensor, distractor: torch.Tensor, target: int, max_k: int = 2,
                         device=None, batch_size: int = 8192) -> int | None:
    """The true minimum number of cell swaps (≤ ``max_k``) that makes g predict ``target``, by trying every set of
    k query cells with every assignment of distinct distractor cells; ``None`` if none with k ≤ max_k works."""
    dev = get_device(device)
    fq, fd = _split_images(model, query, distractor, dev)
    max_k = _integer("max_k", max_k, lo=1, hi=4)
    batch_size = _integer("batch_size", batch_size, lo=1)
    n_classes = model.decide(fq[None]).shape[-1]
    target = _integer("target", target, lo=0, hi=n_classes - 1)
    C, h, w = fq.shape
    n = h * w
    for k in range(1, max_k + 1):
        combos = [(qs, ds) for qs in itertools.combinations(range(n), k) for ds in itertools.permutations(range(n), k)]
        for s in range(0, len(combos), batch_size):
            chunk = combos[s:s + batch_size]
            cand = fq.reshape(C, n)[None].repeat(len(chunk), 1, 1)
            for slot in range(k):
                qi = torch.tensor([c[0][slot] for c in chunk])
                di = torch.tensor([c[1][slot] for c in chunk])
                cand[torch.arange(len(chunk)), :, qi] = fd.reshape(C, n)[:, di].T
            if (model.decide(cand.reshape(-1, C, h, w)).argmax(-1) == target).any():
                return k
    return None


def with_bounds(features=FEATURES, **bounds: tuple[float, float]) -> tuple[Feature, ...]:
    """A copy of the action set with new ``(lower, upper)`` bounds for the named features (e.g. an
    applicant-specific limit: ``with_bounds(income=(10, 40))``)."""
    import dataclasses

    if not isinstance(features, (tuple, list)) or not all(isinstance(f, Feature) for f in features):
        raise TypeError("features must be a tuple of Feature (e.g. FEATURES)")
    names = [f.name for f in features]
    unknown = set(bounds) - set(names)
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}; known: {names}")
    for name, b in bounds.items():
        if not isinstance(b, (tuple, list)) or len(b) != 2:
            raise ValueError(f"{name} needs a (lower, upper) pair, got {b!r}")
    return tuple(dataclasses.replace(f, lower=bounds[f.name][0], upper=bounds[f.name][1]) if f.name in bounds else f
                 for f in features)


__all__.append("with_bounds")
