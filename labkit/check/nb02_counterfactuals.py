"""Checks for the exercises of notebook 02 · Counterfactual explanations and recourse."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ._machinery import Case, Exercise

__all__ = ["wachter_counterfactual", "step_bounds", "greedy_edits"]


# ------------------------------------------------------------------------------------ recourse constraints


def _step_bounds_reference(x, lower, upper, step, mutable, direction):
    from labkit import counterfactual

    return counterfactual.step_bounds(x, lower, upper, step, mutable, direction)


def _t(*v):
    return torch.tensor(v, dtype=torch.float64)


def _step_bounds_cases() -> list[Case]:
    return [
        Case("six features: free, free, immutable, free, immutable, only-increase",
             (_t(42, 18, 2, 7, 35, 1), _t(10, 0, 0, 0, 18, 0), _t(200, 100, 20, 100, 90, 4), _t(5, 1, 1, 1, 1, 1),
              torch.tensor([True, True, False, True, False, True]), torch.tensor([0, 0, 0, 0, 0, 1]))),
        Case("values off the step grid (42 with steps of 5: round inwards, never leave the bounds)",
             (_t(42, 3.5), _t(10, 0), _t(200, 10), _t(5, 2), torch.tensor([True, True]), torch.tensor([0, 0]))),
        Case("an only-decrease feature and an only-increase feature already at its upper bound",
             (_t(30, 4), _t(0, 0), _t(100, 4), _t(1, 1), torch.tensor([True, True]), torch.tensor([-1, 1]))),
    ]


def _step_bounds_mistakes() -> dict[str, Callable]:
    from labkit import counterfactual as cf

    def no_immutable(x, lo, up, st, mut, dirn):
        return cf.step_bounds(x, lo, up, st, torch.ones_like(mut), dirn)

    def no_direction(x, lo, up, st, mut, dirn):
        return cf.step_bounds(x, lo, up, st, mut, torch.zeros_like(dirn))

    def swapped(x, lo, up, st, mut, dirn):
        return cf.step_bounds(x, lo, up, st, mut, -dirn)

    def rounded(x, lo, up, st, mut, dirn):
        b = torch.stack([torch.round((lo - x) / st), torch.round((up - x) / st)])
        b[0] = torch.where(dirn > 0, b[0].clamp_min(0), b[0])
        b[1] = torch.where(dirn < 0, b[1].clamp_max(0), b[1])
        return torch.where(mut, b, torch.zeros_like(b))

    def floor_both(x, lo, up, st, mut, dirn):
        b = torch.stack([torch.floor((lo - x) / st), torch.floor((up - x) / st)])
        b[0] = torch.where(dirn > 0, b[0].clamp_min(0), b[0])
        b[1] = torch.where(dirn < 0, b[1].clamp_max(0), b[1])
        return torch.where(mut, b, torch.zeros_like(b))

    return {
        "an immutable feature (mutable = False) allows no step at all: set k_lo = k_hi = 0.": no_immutable,
        "monotone features: direction +1 means only increase (k_lo ≥ 0), −1 only decrease (k_hi ≤ 0).": no_direction,
        "the directions are swapped: +1 (only increase) must clamp k_lo at 0, −1 must clamp k_hi at 0.": swapped,
        "round inwards so x + k·step stays within the bounds: k_lo = ceil((lower − x)/step), "
        "k_hi = floor((upper − x)/step); round() can step outside.": rounded,
        "the lower end must be rounded up (ceil), or x + k_lo·step falls below the lower bound.": floor_both,
    }


step_bounds = Exercise("step_bounds", _step_bounds_reference, _step_bounds_cases(), _step_bounds_mistakes())
step_bounds.__doc__ = "Check ``step_bounds(x, lower, upper, step, mutable, direction)``: the actionable integer steps."


# ------------------------------------------------------------------------------------- greedy minimum edit


def _greedy_reference(g, fq, fd, target, max_edits):
    from labkit.counterfactual import greedy_cell_swaps

    with torch.no_grad():
        return greedy_cell_swaps(g, fq, fd, int(target), max_edits)[0]


def _head(C, n, classes, seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(C * n, classes))


def _greedy_cases() -> list[Case]:
    cases = []
    specs = [(0, 100, 3, 2, 2, 3, 4), (1, 101, 4, 3, 3, 4, 9), (2, 102, 2, 3, 3, 5, 9), (3, 103, 3, 2, 3, 3, 2),
             (22, 1022, 1, 2, 2, 3, 4), (34, 1034, 2, 2, 2, 4, 4)]  # the last two need more than one pass per cell
    for seed, gen_seed, C, h, w, classes, k in specs:
        g = _head(C, h * w, classes, seed)
        gen = torch.Generator().manual_seed(gen_seed)
        fq = torch.randn(C, h, w, generator=gen)
        fd = torch.randn(C, h, w, generator=gen) * 2
        with torch.no_grad():
            current = int(g(fq[None]).argmax())
            target = int(g(fd[None]).argmax())
        if target == current:
            target = (current + 1) % classes
        cases.append(Case(f"{C} channels on a {h}×{w} grid, {classes} classes, at most {k} edits", (g, fq, fd, target, k)))
    return cases


def _greedy_variant(g, fq, fd, target, max_edits, score="logp", reuse_d=False, reuse_q=False, never_stop=False):
    C, h, w = fq.shape
    n = h * w
    cur, src = fq.reshape(C, n).clone(), fd.reshape(C, n)
    used_q, used_d, edits = set(), set(), []
    with torch.no_grad():
        while len(edits) < max_edits and (never_stop or int(g(cur.reshape(1, C, h, w)).argmax()) != target):
            pairs = [(i, j) for i in range(n) if reuse_q or i not in used_q for j in range(n) if reuse_d or j not in used_d]
            if not pairs:
                break
            cand = cur[None].repeat(len(pairs), 1, 1)
            for r, (i, j) in enumerate(pairs):
                cand[r, :, i] = src[:, j]
            out = g(cand.reshape(-1, C, h, w))
            s = out[:, target] if score == "logit" else torch.log_softmax(out, -1)[:, target]
            i, j = pairs[int(s.argmax())]
            cur[:, i] = src[:, j]
            used_q.add(i); used_d.add(j); edits.append((i, j))
    return torch.tensor(edits, dtype=torch.long).reshape(-1, 2)


def _greedy_mistakes() -> dict[str, Callable]:
    return {
        "stop as soon as the class flips to the target: check argmax before every new edit.":
            lambda *a: _greedy_variant(*a, never_stop=True),
        "each distractor cell may be used once (P is a permutation): remove used distractor cells from the candidates.":
            lambda *a: _greedy_variant(*a, reuse_d=True),
        "each query cell is replaced at most once (a is a 0/1 gate): remove edited query cells from the candidates.":
            lambda *a: _greedy_variant(*a, reuse_q=True),
        "rank candidate edits by log p(target) (log-softmax), not by the raw target logit: a logit can rise while "
        "the other classes rise more.": lambda *a: _greedy_variant(*a, score="logit"),
    }


greedy_edits = Exercise("greedy_edits", _greedy_reference, _greedy_cases(), _greedy_mistakes())
greedy_edits.__doc__ = "Check ``greedy_edits(g, fq, fd, target, max_edits)``: the greedy minimum-edit cell swaps."


# -------------------------------------------------------------------------------- Wachter counterfactuals


def _wachter_reference(model, x, target, scale, lam0=0.1, growth=3.0, rounds=8, steps=150, lr=0.05):
    """x′ = x + z ⊙ scale; per round a fresh Adam on z minimises Σ_rows λ(p_t(x′) − 1)² + Σ_j |z_j|, then λ grows
    by ``growth`` for the rows not yet classified as their target."""
    from labkit import counterfactual

    return counterfactual.wachter(model, x, target, scale, lam0=lam0, growth=growth, rounds=rounds, steps=steps,
                                  lr=lr)[0]  # on the runtime device, like the notebook's model


def _wachter_cases() -> list[Case]:
    from labkit import counterfactual

    X, y = counterfactual.make_credit_data(2000, seed=0)
    logreg = counterfactual.fit_logistic(X[:1500], y[:1500], device="cpu")
    scale = counterfactual.mad(X[:1500])
    with torch.no_grad():
        logits = logreg(X[1500:])
    is_denied = logits.argmax(-1) == 0
    denied, margin = X[1500:][is_denied], (logits[:, 0] - logits[:, 1])[is_denied]
    order = margin.argsort()
    mixed = denied[torch.cat([order[:3], order[-3:]])]  # three near the boundary, three far: valid at different rounds
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    g = torch.Generator().manual_seed(5)
    x3 = torch.randn(4, 3, generator=g)
    with torch.no_grad():
        t3 = (net(x3).argmax(-1) + 1) % 3  # a class other than the current prediction
    return [
        Case("6 denied applicants of the notebook (3 near the boundary, 3 far), its logistic model, target 1 "
             "(repay), λ₀ = 1, 4 rounds of 40 steps", (logreg, mixed, 1, scale), dict(lam0=1.0, rounds=4, steps=40)),
        Case("4 other denied applicants, one round of 40 steps, λ₀ = 1",
             (logreg, denied[:4], 1, scale), dict(lam0=1.0, rounds=1, steps=40)),
        Case("a 3-class tanh network, one target per row, unequal scales, 4 rounds of 30 steps",
             (net, x3, t3, torch.tensor([0.5, 1.0, 2.0])),
             dict(rounds=4, steps=30, lr=0.1, growth=4.0)),
    ]


def _wachter_wrong(model, x, target, scale, lam0=0.1, growth=3.0, rounds=8, steps=150, lr=0.05, *, mad=True,
                   lam_on="prediction", grow_all=False, logits=False, one_adam=False):
    B = x.shape[0]
    t = torch.as_tensor(target).expand(B) if torch.as_tensor(target).dim() == 0 else torch.as_tensor(target)
    z = torch.zeros_like(x, requires_grad=True)
    lam = torch.full((B,), float(lam0))
    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(rounds):
        if not one_adam:
            opt = torch.optim.Adam([z], lr=lr)
        for _ in range(steps):
            out = model(x + z * scale)
            f_t = (out if logits else torch.softmax(out, -1))[torch.arange(B), t]
            dist = (z if mad else z * scale).abs().sum(1)
            if lam_on == "prediction":
                loss = (lam * (f_t - 1) ** 2 + dist).sum()
            else:
                loss = ((f_t - 1) ** 2 + lam * dist).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            valid = model(x + z * scale).argmax(-1) == t
        if valid.all():
            break
        lam = lam * growth if grow_all else torch.where(valid, lam, lam * growth)
    return (x + z * scale).detach()


def _wachter_mistakes() -> dict[str, Callable]:
    return {
        "measure the distance in MADs: Σ_j |x′_j − x_j| / MAD_j = Σ_j |z_j|, not in raw units (|z_j · MAD_j|).":
            lambda *a, **k: _wachter_wrong(*a, mad=False, **k),
        "λ weighs the prediction term λ(p_t(x′) − 1)², not the distance; growing λ must push towards validity.":
            lambda *a, **k: _wachter_wrong(*a, lam_on="distance", **k),
        "grow λ only for the rows that are not yet valid (torch.where(valid, λ, λ · growth)).":
            lambda *a, **k: _wachter_wrong(*a, grow_all=True, **k),
        "the prediction term uses the probability p_t = softmax(model(x′))[t], not the raw logit.":
            lambda *a, **k: _wachter_wrong(*a, logits=True, **k),
        "start a fresh Adam optimiser each round (its moment estimates belong to the previous λ).":
            lambda *a, **k: _wachter_wrong(*a, one_adam=True, **k),
    }


wachter_counterfactual = Exercise("wachter_counterfactual", _wachter_reference, _wachter_cases, _wachter_mistakes(),
                                  rtol=1e-3, atol=1e-3)
wachter_counterfactual.__doc__ = ("Check ``wachter_counterfactual(model, x, target, scale, lam0, growth, rounds, steps, "
                                  "lr)``: Wachter et al.'s counterfactual search.")
