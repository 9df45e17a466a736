"""labkit.attribution: captum wrappers, deletion/insertion, sanity checks and MuS against ground truth."""

import math

import pytest
import torch
import torch.nn as nn

from labkit import attribution as A


@pytest.fixture(scope="module")
def linear():
    """A linear 3-class model on 2×3 images: every attribution has a closed form."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    x = torch.rand(4, 1, 2, 3) + 0.1
    return model.eval(), x


def test_closed_forms_on_a_linear_model(linear):
    model, x = linear
    w = model[1].weight.detach()  # [3, 6]
    t = torch.tensor([0, 1, 2, 0])
    grad = w[t].reshape(4, 1, 2, 3)
    assert torch.allclose(A.attribute(model, x, t, "saliency", device="cpu"), grad.abs(), atol=1e-6)
    assert torch.allclose(A.attribute(model, x, t, "input_x_gradient", device="cpu"), x * grad, atol=1e-6)
    # for a linear model IG, occlusion (1×1), and exact Shapley all equal x ⊙ w (baseline 0)
    assert torch.allclose(A.attribute(model, x, t, "integrated_gradients", device="cpu"), x * grad, atol=1e-5)
    assert torch.allclose(A.attribute(model, x, t, "occlusion", window=(1, 1, 1), device="cpu"), x * grad, atol=1e-5)
    assert torch.allclose(A.attribute(model, x, t, "shapley_sampling", n_samples=5, device="cpu"), x * grad, atol=1e-5)
    ks = A.attribute(model, x, t, "kernel_shap", n_samples=200, device="cpu")
    assert torch.allclose(ks, x * grad, atol=1e-3)


def test_bad_targets_and_methods_are_refused(linear):
    model, x = linear
    with pytest.raises(ValueError, match="out of range.*3 outputs"):
        A.attribute(model, x, 3, "saliency", device="cpu")
    with pytest.raises(ValueError, match="out of range"):
        A.attribute(model, x, torch.tensor([0, 1, -1, 0]), "saliency", device="cpu")
    with pytest.raises(ValueError, match="one per input"):
        A.attribute(model, x, torch.tensor([0, 1]), "saliency", device="cpu")
    with pytest.raises(TypeError, match="integer class"):
        A.attribute(model, x, 0.5, "saliency", device="cpu")
    with pytest.raises(ValueError, match="unknown method"):
        A.attribute(model, x, 0, "lime", device="cpu")
    with pytest.raises(ValueError, match="out of range"):
        A.deletion_curve(model, x, 7, x, device="cpu")


def test_deletion_curve_matches_a_loop(linear):
    model, x = linear
    a = torch.randn_like(x)
    t = torch.tensor([2, 1, 0, 1])
    dele = A.deletion_curve(model, x, t, a, device="cpu")
    ins = A.deletion_curve(model, x, t, a, mode="insertion", device="cpu")
    order = a.flatten(1).argsort(1, descending=True)
    for b in range(4):
        cur, base = x[b].flatten().clone(), torch.zeros(6)
        for k in range(7):
            with torch.no_grad():
                pd = torch.softmax(model(cur.reshape(1, 1, 2, 3)), -1)[0, t[b]]
                pi = torch.softmax(model(base.reshape(1, 1, 2, 3)), -1)[0, t[b]]
            assert math.isclose(dele[b, k].item(), pd.item(), abs_tol=1e-6)
            assert math.isclose(ins[b, k].item(), pi.item(), abs_tol=1e-6)
            if k < 6:
                cur[order[b, k]] = 0
                base[order[b, k]] = x[b].flatten()[order[b, k]]
    assert torch.allclose(dele[:, 0], ins[:, -1]) and torch.allclose(dele[:, -1], ins[:, 0])
    with pytest.raises(ValueError, match="shape of inputs"):
        A.deletion_curve(model, x, t, a[:, :, :1], device="cpu")
    with pytest.raises(ValueError, match="mode"):
        A.deletion_curve(model, x, t, a, mode="both", device="cpu")


def test_curve_auc_and_compactness():
    assert torch.allclose(A.curve_auc(torch.tensor([1.0, 0.0])), torch.tensor(0.5))
    assert torch.allclose(A.curve_auc(torch.linspace(0, 1, 11)), torch.tensor(0.5))
    assert A.compactness(torch.tensor([[0.0, 0.5, 0.95, 1.0]])).item() == 2


def test_attributions_find_planted_pixels():
    X, y, rel = A.make_pixel_task(1200, seed=0, device="cpu")
    mlp = A.train_classifier(A.PixelMLP(64, 32, 2), X[:1000], y[:1000], epochs=25, batch_size=100, device="cpu")
    assert A.accuracy(mlp, X[1000:], y[1000:]) > 0.9
    ig = A.attribute(mlp, X[1000:1050], y[1000:1050], "integrated_gradients", device="cpu")
    rnd = A.random_attributions(ig)
    assert A.precision_at_k(ig, rel).mean() > 0.8 > 0.2 > A.precision_at_k(rnd, rel).mean()


def test_randomisation_and_rank_correlation(linear):
    model, x = linear
    assert torch.allclose(A.rank_correlation(x, 2 * x + 1), torch.ones(4))
    assert torch.allclose(A.rank_correlation(x, -x), -torch.ones(4))
    new = A.randomize_layers(model, ["1"], seed=3)
    assert not torch.equal(new[1].weight, model[1].weight)
    with pytest.raises(ValueError, match="no resettable layer"):
        A.randomize_layers(model, ["nope"])
    out = A.cascading_randomization(model, ["1"], x, 0, ["saliency"], device="cpu")
    assert out["saliency"].shape == (2, 4) and torch.allclose(out["saliency"][0], torch.ones(4))


def test_mus_masks_are_exactly_bernoulli_and_bad_lambda_is_refused():
    m = A.mus_masks(16, 0.25, 64, seed=1)
    assert m.shape == (64, 16) and torch.all(m.float().mean(0) == 0.25)
    for lam in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            A.mus_masks(16, lam, 64)
    with pytest.raises(ValueError, match="integer"):
        A.mus_masks(16, 0.3, 64)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        A.certified_radius(torch.tensor([[0.6, 0.4]]), 0.0)


def test_mus_batched_equals_loop_and_is_lipschitz():
    torch.manual_seed(0)
    h = A.PixelMLP(16, 16, 3).eval()
    groups = A.patch_groups(4, 2)
    f = A.MuS(h, 0.25, groups, q=8, seed=0)
    x = torch.rand(5, 1, 4, 4)
    assert torch.allclose(f(x), A.mus_probs_loop(h, x, f.masks, groups), atol=1e-6)
    # the 40 masked copies in chunks of 3 (last chunk short) give the same probabilities as one pass
    assert torch.allclose(A.MuS(h, 0.25, groups, q=8, seed=0, batch_size=3)(x), f(x), atol=1e-6)
    # exhaustive: every pair of masks over 4 features obeys |Δf| ≤ λ‖Δα‖₁
    alphas = torch.tensor([[(i >> j) & 1 for j in range(4)] for i in range(16)], dtype=torch.float32)
    for b in range(5):
        p = f(x[b:b + 1].expand(16, -1, -1, -1), alphas)
        diff = (p[:, None] - p[None]).abs().max(-1).values
        dist = (alphas[:, None] - alphas[None]).abs().sum(-1)
        assert (diff <= 0.25 * dist + 1e-6).all()


def test_mask_shapes_are_checked():
    torch.manual_seed(0)
    f = A.MuS(A.PixelMLP(16, 8, 3).eval(), 0.5, A.patch_groups(4, 2), q=4)
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="mask α must have shape"):
        f(x, torch.ones(3))
    with pytest.raises(ValueError, match="mask α must have shape"):
        f(x, torch.ones(3, 4))
    with pytest.raises(ValueError, match="do not match the feature map"):
        f(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="one mask"):
        A.supersets_within(torch.ones(2, 4), 1)
    with pytest.raises(ValueError, match="patch"):
        A.patch_groups(8, 3)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        A.MuS(A.PixelMLP(16, 8, 3), 0.5, A.patch_groups(4, 2), q=4, batch_size=0)


def test_certificate_verification_finds_no_violation_for_mus():
    torch.manual_seed(0)
    h = A.PixelMLP(16, 16, 3).eval()
    f = A.MuS(h, 0.25, A.patch_groups(4, 2), q=8)
    sup = A.supersets_within(torch.tensor([1, 0, 0, 0]), 2)
    assert len(sup) == 1 + 3 + 3
    for seed in range(10):
        x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
        alpha = torch.tensor([1, 0, 0, 0]).bool()
        r = int(A.certified_radius(f(x, alpha.float()), 0.25))
        checked, violations = A.verify_certificate(f, x, alpha, r)
        assert violations == 0 and checked == len(A.supersets_within(alpha, r)) - 1


def test_device_default_follows_runtime(linear):
    model, x = linear
    out = A.attribute(model, x, 0, "saliency")
    assert out.device.type == A.get_device().type


# -- the silent results, and the signed/absolute saliency and infidelity conventions ---------------------


def test_nan_inputs_are_refused_instead_of_giving_a_finite_map(linear):
    model, x = linear
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    for method in ("saliency", "gradient", "integrated_gradients", "occlusion"):
        with pytest.raises(ValueError, match="inputs contains NaN"):
            A.attribute(model, bad, 0, method, device="cpu")
    with pytest.raises(ValueError, match="baseline"):
        A.attribute(model, x, 0, "integrated_gradients", baseline=torch.full_like(x, float("inf")), device="cpu")


def test_signed_gradient_is_saliency_without_the_absolute_value(linear):
    model, x = linear
    t = torch.tensor([0, 1, 2, 0])
    w = model[1].weight.detach()[t].reshape(4, 1, 2, 3)
    signed = A.attribute(model, x, t, "gradient", device="cpu")
    assert torch.allclose(signed, w, atol=1e-6)
    assert torch.allclose(A.attribute(model, x, t, "saliency", device="cpu"), signed.abs(), atol=1e-6)


def test_infidelity_conventions_against_closed_forms(linear):
    """On a linear model f(x) − f(x − I) = Iᵀw exactly, so the signed gradient has infidelity 0 under both
    conventions; |w| does not, and without normalisation a rescaled gradient pays (c − 1)² E[(Iᵀw)²]."""
    model, x = linear
    t = torch.tensor([0, 1, 2, 0])
    w = model[1].weight.detach()[t].reshape(4, 1, 2, 3)
    for normalize in (True, False):
        assert A.infidelity_score(model, x, t, w, normalize=normalize, device="cpu").abs().max() < 1e-7  # float32 round-off
    assert A.infidelity_score(model, x, t, 3 * w, normalize=True, device="cpu").abs().max() < 1e-7  # scale fitted away
    raw = A.infidelity_score(model, x, t, 3 * w, noise_std=0.1, n_perturb=4000, normalize=False, device="cpu")
    expected = 4 * 0.01 * (w.flatten(1) ** 2).sum(1)  # (3 − 1)² σ² ‖w‖²
    assert torch.allclose(raw, expected, rtol=0.1)
    assert (A.infidelity_score(model, x, t, w.abs(), normalize=True, device="cpu") > 1e-4).all()
    with pytest.raises(TypeError, match="normalize"):
        A.infidelity_score(model, x, t, w, normalize="yes", device="cpu")


class _Quadratic(nn.Module):
    """f_c(x) = Σ_i C[c, i] x_i²: along the path from 0 the gradient grows linearly, so IG has a closed form."""

    def __init__(self, C):
        super().__init__()
        self.C = C

    def forward(self, x):
        return (x.flatten(1) ** 2) @ self.C.T


def test_riemann_integrated_gradients_closed_forms(linear):
    model, x = linear
    w = model[1].weight.detach()
    t = torch.tensor([0, 1, 2, 0])
    grad = w[t].reshape(4, 1, 2, 3)
    for rule in A.IG_RULES:  # a linear model: every rule is exact, φ = (x − x̄) ⊙ w
        assert torch.allclose(A.integrated_gradients(model, x, t, 0.3, n_steps=3, rule=rule, device="cpu"),
                              (x - 0.3) * grad, atol=1e-5)
    torch.manual_seed(1)
    C = torch.randn(3, 6)
    quad = _Quadratic(C)
    exact = C[t].reshape(4, 1, 2, 3) * x ** 2  # (x − 0) · ∫ 2 C x α dα = C x²
    for m in (2, 5):
        mid = A.integrated_gradients(quad, x, t, 0.0, n_steps=m, rule="middle", device="cpu")
        left = A.integrated_gradients(quad, x, t, 0.0, n_steps=m, rule="left", device="cpu")
        assert torch.allclose(mid, exact, atol=1e-5)  # the midpoint rule is exact for a linear integrand
        assert torch.allclose(left, exact * (m - 1) / m, atol=1e-5)  # the left rule misses half a step
    with pytest.raises(ValueError, match="unknown rule"):
        A.integrated_gradients(model, x, t, rule="simpson", device="cpu")
