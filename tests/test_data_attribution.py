"""labkit.data_attribution against ground truth: closed forms, leave-one-out retraining, brute force."""

import numpy as np
import pytest
import torch

from labkit import data_attribution as da


@pytest.fixture(scope="module")
def task():
    d = da.digits_pair(1, 7, n_train=120, device="cpu")
    X, y = d["X_train"], d["y_train"]
    l2 = 1e-2
    theta = da.fit_logreg(X, y, l2)
    return d, X, y, l2, theta


def test_newton_reaches_the_optimum(task):
    _, X, y, l2, theta = task
    g = torch.func.grad(lambda t: da.objective(da.logreg_forward, t, X, y, l2))(theta)
    assert g.norm() < 1e-5


def test_hessian_closed_form_autodiff_and_hvp_agree(task):
    _, X, y, l2, theta = task
    risk = lambda t: da.objective(da.logreg_forward, t, X, y, l2)  # noqa: E731
    H = da.logreg_hessian(theta, X, l2)
    assert torch.allclose(H, da.hessian_matrix(risk, theta), atol=1e-6)
    V = torch.randn(3, theta.numel())
    assert torch.allclose(da.hvp_fn(risk, theta)(V), V @ H.T, atol=1e-5)


def test_cg_and_lissa_solve_the_system(task):
    _, X, y, l2, theta = task
    H = da.logreg_hessian(theta, X, l2)
    b = torch.randn(theta.numel())
    exact = torch.linalg.solve(H, b)
    hvp = lambda v: v @ H.T  # noqa: E731
    assert torch.allclose(da.conjugate_gradient(hvp, b), exact, rtol=1e-3, atol=1e-4)
    lam_max = float(torch.linalg.eigvalsh(H)[-1])
    approx = da.lissa(hvp, b, scale=1.1 * lam_max, depth=4000)
    assert (approx - exact).norm() / exact.norm() < 1e-3


def test_influence_predicts_leave_one_out(task):
    d, X, y, l2, theta = task
    Xt, yt = d["X_test"], d["y_test"]
    losses = da.per_example_loss(da.logreg_forward, theta, Xt, yt)
    j = int(losses.argmax())
    G = da.per_example_grads(da.logreg_forward, theta, X, y)
    gt = da.per_example_grads(da.logreg_forward, theta, Xt[j:j + 1], yt[j:j + 1])[0]
    pred = -da.influence(G, gt, hessian=da.logreg_hessian(theta, X, l2)) / len(y)
    top = pred.abs().argsort(descending=True)[:15]
    th = da.leave_one_out(X, y, top, l2, theta_full=theta)
    actual = da.per_example_loss(da.logreg_forward, th, Xt[j:j + 1], yt[j:j + 1].expand(1, len(top)))[0] - losses[j]
    assert np.corrcoef(pred[top].numpy(), actual.numpy())[0, 1] > 0.95
    # the predicted size is right too, not only the ranking
    assert torch.allclose(pred[top], actual, rtol=0.3, atol=2e-3)


def test_self_influence_finds_flipped_labels():
    d = da.digits_pair(1, 7, flip=0.1, device="cpu")
    X, y = d["X_train"], d["y_train"]
    theta = da.fit_logreg(X, y, 1e-2)
    s = da.self_influence(da.per_example_grads(da.logreg_forward, theta, X, y), da.logreg_hessian(theta, X, 1e-2))
    k = int(d["flipped"].sum())
    assert d["flipped"][s.argsort(descending=True)[:k]].float().mean() > 0.7


def test_tracin_is_the_sum_of_scaled_dot_products():
    G = torch.randn(3, 5, 4)
    g = torch.randn(3, 4)
    lrs = [0.1, 0.2, 0.3]
    brute = sum(lrs[t] * G[t] @ g[t] for t in range(3))
    assert torch.allclose(da.tracin(G, g, lrs), brute, atol=1e-6)


def test_vmap_ensemble_equals_loop(task):
    _, X, y, l2, _ = task
    masks = da.random_subsets(len(y), 4, alpha=0.5, seed=0, device="cpu")
    assert torch.all(masks.sum(1) == 60)
    a = da.train_ensemble(da.logreg_forward, torch.zeros(65), X, y, masks, l2, steps=50, lr=0.1)
    b = da.train_loop(da.logreg_forward, torch.zeros(65), X, y, masks, l2, steps=50, lr=0.1)
    assert torch.allclose(a, b, atol=1e-4)
    # and long training reaches the Newton optimum of each subset
    c = da.train_ensemble(da.logreg_forward, torch.zeros(65), X, y, masks, l2, steps=400, lr=0.1)
    assert torch.allclose(c, da.fit_logreg(X, y, l2, weights=masks), atol=1e-3)


def test_datamodels_recover_a_planted_linear_model():
    g = torch.Generator().manual_seed(0)
    masks = da.random_subsets(30, 400, alpha=0.5, seed=1, device="cpu")
    true_w = torch.zeros(30)
    true_w[[2, 7, 11]] = torch.tensor([1.0, -0.5, 0.8])
    out = (masks @ true_w + 0.3 + 0.01 * torch.randn(400, generator=g))[:, None]
    W, b = da.fit_datamodels(masks, out, l1=1e-3)
    assert torch.allclose(W[0], true_w, atol=0.05) and abs(float(b[0]) - 0.3) < 0.05
    assert da.lds(masks @ W.T + b, out) > 0.99


def test_lds_is_spearman():
    from scipy.stats import spearmanr

    a, b = torch.randn(20, 2), torch.randn(20, 2)
    expected = np.mean([spearmanr(a[:, i], b[:, i])[0] for i in range(2)])
    assert abs(da.lds(a, b) - expected) < 1e-12
    assert da.lds(a.exp(), a) == pytest.approx(1.0)


def test_trak_with_a_square_projection_is_the_exact_least_squares_influence():
    # an invertible projection (proj_dim = p) loses nothing: τ = g_test (GᵀG)⁻¹ Gᵀ · Q
    g = torch.Generator().manual_seed(0)
    G = torch.randn(50, 8, generator=g, dtype=torch.float64)
    gt = torch.randn(3, 8, generator=g, dtype=torch.float64)
    q = torch.rand(50, generator=g, dtype=torch.float64)
    scores = da.trak(G, gt, q, proj_dim=8, seed=0)
    brute = gt @ torch.linalg.solve(G.T @ G, G.T) * q
    assert torch.allclose(scores, brute, rtol=1e-4, atol=1e-6)


# -- bad input --------------------------------------------------------------------------------------


def test_singular_hessian_is_refused_with_damping_advice():
    H = torch.diag(torch.tensor([1.0, 0.5, 0.0]))
    with pytest.raises(ValueError, match="singular or indefinite.*damping"):
        da.inverse_hvp(torch.ones(3), hessian=H)
    out = da.inverse_hvp(torch.ones(3), hessian=H, damping=0.1)
    assert torch.allclose(out, torch.tensor([1 / 1.1, 1 / 0.6, 10.0]))


def test_indefinite_hessian_is_refused_by_exact_and_cg():
    H = torch.diag(torch.tensor([1.0, -0.5]))
    with pytest.raises(ValueError, match="indefinite.*damping"):
        da.influence(torch.ones(4, 2), torch.ones(2), hessian=H)
    with pytest.raises(ValueError, match="indefinite.*damping"):
        da.inverse_hvp(torch.ones(2), hessian=H, method="cg")


def test_lissa_divergence_is_explained():
    H = torch.diag(torch.tensor([4.0, 1.0]))
    with pytest.raises(ValueError, match="diverged.*scale"):
        da.lissa(lambda v: v @ H, torch.ones(2), scale=1.0, depth=500)


def test_mismatched_parameter_and_gradient_shapes():
    with pytest.raises(ValueError, match="mismatched"):
        da.influence(torch.ones(5, 4), torch.ones(3), hessian=torch.eye(4))
    with pytest.raises(ValueError, match="mismatched"):
        da.inverse_hvp(torch.ones(3), hessian=torch.eye(4))
    with pytest.raises(ValueError, match="mismatched"):
        da.logreg_forward(torch.ones(10), torch.ones(2, 64))
    with pytest.raises(ValueError, match="mismatched"):
        da.tracin(torch.ones(2, 3, 4), torch.ones(2, 5), [0.1, 0.1])


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.2])
def test_subset_fraction_outside_0_1(alpha):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        da.random_subsets(10, 5, alpha=alpha)


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="l2 must be > 0"):
        da.fit_logreg(torch.ones(4, 2), torch.ones(4), l2=0)
    with pytest.raises(ValueError, match="unknown method"):
        da.inverse_hvp(torch.ones(2), hessian=torch.eye(2), method="newton")
    with pytest.raises(ValueError, match="same shape"):
        da.lds(torch.ones(5, 2), torch.ones(5, 3))
    with pytest.raises(ValueError, match="different digits"):
        da.digits_pair(3, 3)


def test_device_default_follows_runtime(task):
    d, *_ = task
    assert d["X_train"].device.type == "cpu"
    assert da.random_subsets(5, 2, device="cpu").device.type == "cpu"


# -- the silent results: NaN through CG, float64 data, constant LDS columns ---------------------------


def test_conjugate_gradient_refuses_nan_instead_of_returning_zeros():
    H = torch.diag(torch.tensor([2.0, 1.0, 0.5]))
    for b in (torch.tensor([1.0, float("nan"), 0.0]), torch.tensor([[1.0, 0.0, 0.0], [float("inf"), 0.0, 1.0]])):
        with pytest.raises(ValueError, match="b contains NaN or inf"):
            da.conjugate_gradient(lambda v: v @ H, b)
    with pytest.raises(ValueError, match="hvp returned NaN"):
        da.conjugate_gradient(lambda v: v * float("nan"), torch.ones(3))
    # b = 0 is fine and gives x = 0
    assert torch.equal(da.conjugate_gradient(lambda v: v @ H, torch.zeros(3)), torch.zeros(3))


def test_float64_data_works_throughout(task):
    d, X32, y32, l2, theta32 = task
    X, y = X32.double(), y32.double()
    theta = da.fit_logreg(X, y, l2)
    assert theta.dtype == torch.float64 and torch.allclose(theta.float(), theta32, atol=1e-4)
    # the float64 optimum is tighter: its gradient is at float64 round-off
    g = torch.func.grad(lambda t: da.objective(da.logreg_forward, t, X, y, l2))(theta)
    assert g.norm() < 1e-10
    loo = da.leave_one_out(X, y, [0, 5], l2, theta_full=theta)
    assert loo.dtype == torch.float64
    assert torch.allclose(loo[1], da.fit_logreg(X, y, l2, weights=(torch.arange(len(y)) != 5).double()), atol=1e-10)
    masks = da.random_subsets(len(y), 3, seed=0, dtype=torch.float64)
    assert masks.dtype == torch.float64 and torch.equal(masks.float(), da.random_subsets(len(y), 3, seed=0))
    assert da.fit_logreg(X, y, l2, weights=masks).dtype == torch.float64
    H = da.logreg_hessian(theta, X, l2)
    assert H.dtype == torch.float64
    G = da.per_example_grads(da.logreg_forward, theta, X, y)
    assert da.influence(G, G[0], hessian=H).dtype == torch.float64


def test_lds_refuses_a_constant_column_instead_of_nan():
    good = torch.randn(10, 2)
    const = good.clone()
    const[:, 1] = 0.3
    with pytest.raises(ValueError, match="test input 1.*constant"):
        da.lds(const, good)
    with pytest.raises(ValueError, match="test input 1.*constant"):
        da.lds(good, const)
