"""Benchmark of labkit.data_attribution, measured in one run (writes data_attribution.md / .json next to itself).

1. Datamodels ensemble: models trained per second with torch.func.vmap vs a Python loop (same Adam steps).
2. Influence of every training point on one test loss vs leave-one-out retraining of every point:
   time ratio and Pearson correlation (logistic regression, digits 1 vs 7).
3. labkit influence vs captum.influence.NaiveInfluenceFunction on the same task: time and correlation.

Usage: python benchmarks/data_attribution.py
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

import labkit
from labkit import data_attribution as da

from _timing import timed  # benchmarks/_timing.py

HERE = Path(__file__).resolve().parent


def main():
    device = labkit.setup(seed=0)
    f = da.logreg_forward
    rows, raw = [], {}

    # 1. vmap ensemble vs loop
    d = da.digits_pair(1, 7, device=device)
    X, y, Xt, yt = d["X_train"], d["y_train"], d["X_test"], d["y_test"]
    Xd, yd = X[:100], y[:100]
    masks = da.random_subsets(100, 1000, 0.5, seed=0, device=device)
    theta0 = torch.zeros(65, device=device)
    ens, t_vmap = timed(lambda: da.train_ensemble(f, theta0, Xd, yd, masks, 1e-2, steps=150, lr=0.1))
    n_loop = 20
    loop, t_loop = timed(lambda: da.train_loop(f, theta0, Xd, yd, masks[:n_loop], 1e-2, steps=150, lr=0.1))
    vmap_rate, loop_rate = 1000 / t_vmap, n_loop / t_loop
    raw["ensemble"] = {"models": 1000, "steps": 150, "vmap_s": t_vmap, "loop_models": n_loop, "loop_s": t_loop,
                       "vmap_models_per_s": vmap_rate, "loop_models_per_s": loop_rate,
                       "max_param_diff": float((ens[:n_loop] - loop).abs().max())}
    rows.append(("1000 logistic regressions on half-subsets (150 Adam steps)", f"{loop_rate:.1f} models/s (Python loop)",
                 f"{vmap_rate:.0f} models/s (torch.func.vmap)", f"{vmap_rate / loop_rate:.0f}× faster",
                 f"same parameters to {raw['ensemble']['max_param_diff']:.0e}"))

    # 2. influence for all training points vs leave-one-out retraining
    l2, n = 1e-2, len(y)
    theta = da.fit_logreg(X, y, l2)
    losses = da.per_example_loss(f, theta, Xt, yt)
    j = int(losses.argmax())

    def influence_all():
        G = da.per_example_grads(f, theta, X, y)
        gt = da.per_example_grads(f, theta, Xt[j:j + 1], yt[j:j + 1])[0]
        return -da.influence(G, gt, hessian=da.logreg_hessian(theta, X, l2)) / n

    pred, t_inf = timed(influence_all, repeat=3)

    def loo_all():
        th = da.leave_one_out(X, y, torch.arange(n), l2, theta_full=theta)
        return da.per_example_loss(f, th, Xt[j:j + 1], yt[j:j + 1].expand(1, n))[0] - losses[j]

    actual, t_loo = timed(loo_all)

    def loo_loop(k=20):
        out = []
        for i in range(k):
            w = torch.ones(n, device=device)
            w[i] = 0
            th = da.fit_logreg(X, y, l2, weights=w[None])[0]
            out.append(th)
        return out

    _, t_loo_loop20 = timed(loo_loop)
    t_loo_loop = t_loo_loop20 / 20 * n
    r = float(np.corrcoef(pred.cpu().numpy(), actual.cpu().numpy())[0, 1])
    top = actual.abs().argsort(descending=True)[:40]
    r40 = float(np.corrcoef(pred[top].cpu().numpy(), actual[top].cpu().numpy())[0, 1])
    raw["influence_vs_loo"] = {"n_train": n, "influence_s": t_inf, "loo_batched_s": t_loo, "loo_loop_s_extrapolated": t_loo_loop,
                               "pearson_all": r, "pearson_top40": r40}
    rows.append((f"influence of all {n} training points on one test loss", f"{t_loo:.2f} s (LOO retraining, batched Newton); "
                 f"{t_loo_loop:.1f} s (one Newton fit per point, extrapolated from 20)", f"{t_inf * 1000:.0f} ms (exact H)",
                 f"{t_loo / t_inf:.0f}× / {t_loo_loop / t_inf:.0f}× faster", f"Pearson r = {r:.4f} (all), {r40:.4f} (top 40 by |actual|)"))

    # 3. captum.influence
    from captum.influence import NaiveInfluenceFunction
    from torch.utils.data import TensorDataset

    class LogReg(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(64, 1)
            with torch.no_grad():
                self.lin.weight.copy_(theta[:-1][None])
                self.lin.bias.copy_(theta[-1:])

        def forward(self, x):
            return self.lin(x).squeeze(-1)

    model = LogReg().to(device)
    ckpt = os.path.join(tempfile.mkdtemp(), "m.pt")
    torch.save(model.state_dict(), ckpt)

    def captum_run():
        nif = NaiveInfluenceFunction(model, TensorDataset(X, y), ckpt, loss_fn=torch.nn.BCEWithLogitsLoss(reduction="none"),
                                     batch_size=n, hessian_reg=n * l2, projection_dim=65, hessian_inverse_tol=0.0)
        return nif.influence((Xt[j:j + 1], yt[j:j + 1]))[0].to(device)

    cap, t_cap = timed(captum_run, repeat=3)
    r_cap_loo = float(np.corrcoef(cap.cpu().numpy(), actual.cpu().numpy())[0, 1])
    r_cap_ours = float(np.corrcoef(cap.cpu().numpy(), pred.cpu().numpy())[0, 1])
    raw["captum"] = {"captum_s": t_cap, "labkit_s": t_inf, "pearson_captum_loo": r_cap_loo, "pearson_captum_labkit": r_cap_ours}
    rows.append(("same influence: captum.influence.NaiveInfluenceFunction", f"{t_cap * 1000:.0f} ms (captum), r = {r_cap_loo:.4f} with LOO",
                 f"{t_inf * 1000:.0f} ms (labkit), r = {r:.4f} with LOO", f"{t_cap / t_inf:.1f}× faster",
                 f"captum vs labkit r = {r_cap_ours:.6f}"))

    env = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {device}"
    lines = ["# Benchmark: labkit.data_attribution", "", f"Measured in one run by `python benchmarks/data_attribution.py` ({env}).",
             "Times are wall-clock seconds on a shared machine; the ratios are what matters.", "",
             "| task | baseline | labkit | ratio | accuracy |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(r_)} |" for r_ in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "data_attribution.md").write_text(text)
    (HERE / "data_attribution.json").write_text(json.dumps({"environment": env, **raw}, indent=2) + "\n")


if __name__ == "__main__":
    main()
