"""Part A's "implement it yourself" exercises (issue 17): a correct solution written differently from the
reference (another loop order, vectorised instead of looped) passes each check."""

import torch

from labkit import check


def test_integrated_gradients_accepts_a_vectorised_solution(capsys):
    def integrated_gradients(model, inputs, target, baseline, n_steps):
        # every point of the path in one batch: [m·B, ...], then one backward pass
        B = inputs.shape[0]
        target = torch.as_tensor(target).expand(B) if torch.as_tensor(target).dim() == 0 else torch.as_tensor(target)
        alphas = torch.linspace(0.5 / n_steps, 1 - 0.5 / n_steps, n_steps, dtype=inputs.dtype)
        shape = (n_steps,) + (1,) * inputs.dim()
        path = (baseline + alphas.view(shape) * (inputs - baseline)).reshape(n_steps * B, *inputs.shape[1:])
        path.requires_grad_(True)
        logits = model(path).reshape(n_steps, B, -1)
        picked = logits.gather(2, target.view(1, B, 1).expand(n_steps, B, 1)).sum()
        (grads,) = torch.autograd.grad(picked, path)
        return (inputs - baseline) * grads.reshape(n_steps, *inputs.shape).mean(0)

    assert check.integrated_gradients(integrated_gradients) is integrated_gradients
    assert "✓ integrated_gradients" in capsys.readouterr().out


def test_wachter_counterfactual_accepts_a_per_row_loss_and_a_mask(capsys):
    def wachter_counterfactual(model, x, target, scale, lam0=0.1, growth=3.0, rounds=8, steps=150, lr=0.05):
        # the loss as a mean of per-row terms times B (the same gradient), λ updated through a mask
        n = len(x)
        t = torch.full((n,), int(target)) if isinstance(target, int) else target
        z = torch.zeros(x.shape, requires_grad=True)
        lam = lam0 * torch.ones(n)
        for _ in range(rounds):
            adam = torch.optim.Adam([z], lr=lr)
            for _ in range(steps):
                probs = model(x + scale * z).softmax(dim=1)
                per_row = lam * (1 - probs.gather(1, t.view(-1, 1)).squeeze(1)) ** 2 + z.abs().sum(dim=1)
                adam.zero_grad()
                (per_row.mean() * n).backward()
                adam.step()
            with torch.no_grad():
                ok = model(x + scale * z).argmax(1).eq(t)
            if bool(ok.all()):
                break
            lam[~ok] *= growth
        return (x + scale * z).detach()

    assert check.wachter_counterfactual(wachter_counterfactual) is wachter_counterfactual
    assert "✓ wachter_counterfactual" in capsys.readouterr().out


def test_tcav_significance_accepts_a_vectorised_hand_written_solution(capsys):
    import numpy as np
    from scipy import stats
    from sklearn.linear_model import LogisticRegression

    def tcav_significance(grads, acts_concept, acts_random):
        # CAVs fitted by hand, all directional derivatives in one matrix product, Welch's test from its formula
        def unit_cav(a, r):
            X = torch.cat([a, r]).double().numpy()
            w = LogisticRegression(C=0.01, max_iter=2000).fit(X, np.r_[np.ones(len(a)), np.zeros(len(r))]).coef_[0]
            return torch.from_numpy(w / np.linalg.norm(w))

        m = len(acts_random) - 1
        V = torch.stack([unit_cav(acts_concept, acts_random[i]) for i in range(1, m + 1)]
                        + [unit_cav(acts_random[i - 1], acts_random[i]) for i in range(1, m + 1)], 1)  # [d, 2m]
        frac = (grads.double() @ V > 0).double().mean(0)
        scores, null = frac[:m].numpy(), frac[m:].numpy()
        v1, v2 = scores.var(ddof=1) / m, null.var(ddof=1) / m
        if v1 + v2 == 0:
            p = 0.0 if scores.mean() != null.mean() else 1.0
        else:
            t = (scores.mean() - null.mean()) / np.sqrt(v1 + v2)
            df = (v1 + v2) ** 2 / (v1 ** 2 / (m - 1) + v2 ** 2 / (m - 1))
            p = 2 * stats.t.sf(abs(t), df)
        return torch.tensor([scores.mean(), null.mean(), p], dtype=torch.float64)

    assert check.tcav_significance(tcav_significance) is tcav_significance
    assert "✓ tcav_significance" in capsys.readouterr().out


def test_influence_hvp_accepts_a_vhp_and_explicit_gradients(capsys):
    from torch.func import grad, vjp

    from labkit import data_attribution as da

    def conjugate_gradient(hvp, b, n_steps):  # written with a residual-norm loop instead of the textbook order
        x = torch.zeros_like(b)
        r = b - hvp(x)
        d = r.clone()
        for _ in range(n_steps):
            rr = torch.dot(r, r)
            if rr == 0:
                break
            Hd = hvp(d)
            a = rr / torch.dot(d, Hd)
            x += a * d
            r -= a * Hd
            d = r + torch.dot(r, r) / rr * d
        return x

    def influence_hvp(forward, theta, X, y, x_test, y_test, l2, n_steps):
        # per-example gradients in a Python loop, the HVP as a vjp of the gradient (reverse-over-reverse; H = Hᵀ)
        loss = lambda th, x, t: da.per_example_loss(forward, th, x[None], t[None]).sum()  # noqa: E731
        train_grads = torch.stack([grad(loss)(theta, X[i], y[i]) for i in range(len(X))])
        risk = lambda th: da.objective(forward, th, X, y, l2)  # noqa: E731
        _, pullback = vjp(grad(risk), theta)
        s_test = conjugate_gradient(lambda v: pullback(v)[0], grad(loss)(theta, x_test, y_test), n_steps)
        return -torch.einsum("np,p->n", train_grads, s_test)

    assert check.influence_hvp(influence_hvp) is influence_hvp
    assert "✓ influence_hvp" in capsys.readouterr().out
