"""labkit.pluralistic against ground truth: planted groups, closed forms, scipy, brute force; bad input."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import adjusted_rand_score

from labkit import pluralistic as pl


@pytest.fixture(scope="module")
def data():
    return pl.simulate_preferences(n_responses=30, dim=4, group_sizes=(16, 8), comparisons_per_annotator=40, seed=3)


def test_simulation_plants_what_it_says(data):
    assert data["pairs"].shape == (24 * 40, 2) and (data["pairs"][:, 0] != data["pairs"][:, 1]).all()
    assert torch.allclose(data["weights"].norm(dim=-1), torch.full((2,), 3.0, dtype=torch.float64))
    assert math.isclose(pl.reward_cosine(data["weights"][:1], data["weights"][1:]).item(), -0.2, abs_tol=1e-9)
    assert data["eta"].tolist() == pytest.approx([16 / 24, 8 / 24])


def test_fit_bt_recovers_a_single_planted_reward():
    d = pl.simulate_preferences(n_responses=30, dim=4, group_sizes=(30,), comparisons_per_annotator=60, seed=1)
    w = pl.fit_bt(d["features"], d["pairs"], d["labels"])
    assert pl.reward_cosine(w, d["weights"]).item() > 0.98


def test_e_step_is_bayes_rule_and_stable():
    ll = torch.tensor([[-1.0, -2.0], [-900.0, -905.0]], dtype=torch.float64)
    eta = torch.tensor([0.3, 0.7], dtype=torch.float64)
    g = pl.e_step(ll, eta)
    by_hand = 0.3 * math.exp(-1) / (0.3 * math.exp(-1) + 0.7 * math.exp(-2))
    assert g[0, 0].item() == pytest.approx(by_hand)
    assert torch.isfinite(g).all() and torch.allclose(g.sum(-1), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("hard", [False, True])
def test_em_recovers_planted_groups_and_rewards(data, hard):
    em = pl.em_rewards(data["features"], data["pairs"], data["labels"], data["annotator"], k=2, n_iter=10,
                       hard=hard, n_restarts=2, seed=0)
    assert adjusted_rand_score(data["groups"], em.assignment) > 0.9
    perm = pl.match_groups(data["groups"], em.assignment, k=2)
    assert (pl.reward_cosine(em.weights[perm], data["weights"]) > 0.95).all()
    single = pl.group_accuracy(pl.fit_bt(data["features"], data["pairs"], data["labels"]), data["weights"], data["features"])
    mixture = pl.group_accuracy(em.weights[perm], data["weights"], data["features"])
    assert mixture[1] > single[1] + 0.2  # the minority is served only by the mixture


def test_more_groups_than_annotators_is_refused(data):
    with pytest.raises(ValueError, match="annotators"):
        pl.em_rewards(data["features"], data["pairs"], data["labels"], data["annotator"], k=25)
    with pytest.raises(ValueError, match="positive integer"):
        pl.em_rewards(data["features"], data["pairs"], data["labels"], data["annotator"], k=0)


def test_bad_pairs_and_labels_are_refused(data):
    with pytest.raises(ValueError, match="do not exist"):
        pl.fit_bt(data["features"], data["pairs"] + 100, data["labels"])
    with pytest.raises(ValueError, match="1 .*or 0"):
        pl.fit_bt(data["features"], data["pairs"], data["labels"] * 2)


def test_tilted_policy_is_the_kl_regularised_optimum():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(7, generator=g, dtype=torch.float64)
    ref = torch.softmax(torch.randn(7, generator=g, dtype=torch.float64), 0)
    pi = pl.tilted_policy(ref, r, 0.5)
    J = lambda p: p @ r - 0.5 * pl.kl(p, ref)  # noqa: E731
    others = torch.softmax(torch.log(pi) + 0.2 * torch.randn(500, 7, generator=g, dtype=torch.float64), -1)
    assert (J(others) <= J(pi) + 1e-12).all()
    assert J(pi).item() == pytest.approx(0.5 * torch.logsumexp(torch.log(ref) + r / 0.5, 0).item())


def test_maxmin_matches_duality_grid_and_perturbations():
    g = torch.Generator().manual_seed(0)
    R = torch.randn(2, 15, generator=g, dtype=torch.float64) * 2
    ref = torch.softmax(torch.randn(15, generator=g, dtype=torch.float64), 0)
    pi, lam = pl.maxmin_policy(R, ref, 0.7)
    val = pl.maxmin_objective(pi, R, ref, 0.7)
    dual = 0.7 * torch.logsumexp(torch.log(ref) + lam @ R / 0.7, 0)
    assert val.item() == pytest.approx(dual.item(), abs=1e-6)
    assert pl.maxmin_objective(pl.maxmin_grid(R, ref, 0.7, 4001), R, ref, 0.7).item() <= val.item() + 1e-9
    others = torch.softmax(torch.log(pi) + 0.3 * torch.randn(1000, 15, generator=g, dtype=torch.float64), -1)
    assert (pl.maxmin_objective(others, R, ref, 0.7) <= val + 1e-9).all()
    # three groups too
    R3 = torch.randn(3, 15, generator=g, dtype=torch.float64)
    pi3, lam3 = pl.maxmin_policy(R3, ref, 0.5)
    v3 = pl.maxmin_objective(pi3, R3, ref, 0.5)
    assert v3.item() == pytest.approx((0.5 * torch.logsumexp(torch.log(ref) + lam3 @ R3 / 0.5, 0)).item(), abs=1e-6)


def test_utilitarian_policy_maximises_the_average():
    R = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    ref = torch.full((3,), 1 / 3, dtype=torch.float64)
    pi = pl.utilitarian_policy(R, ref, 1.0, weights=[0.25, 0.75])
    assert torch.allclose(pi, torch.softmax(torch.tensor([0.25, 1.5, -0.25], dtype=torch.float64), 0))


def test_welfare_closed_forms_and_errors():
    U = torch.tensor([[0.2, 0.8], [0.5, 0.5]], dtype=torch.float64)
    assert pl.welfare(U, "utilitarian").tolist() == pytest.approx([0.5, 0.5])
    assert pl.welfare(U, "nash").tolist() == pytest.approx([0.5 * math.log(0.16), math.log(0.5)])
    assert pl.welfare(U, "egalitarian").tolist() == pytest.approx([0.2, 0.5])
    with pytest.raises(ValueError, match="positive"):
        pl.welfare(torch.tensor([[0.0, 1.0]]), "nash")
    with pytest.raises(ValueError, match="kind"):
        pl.welfare(U, "majority")


def test_js_distance_matches_scipy():
    g = torch.Generator().manual_seed(0)
    P = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), -1)
    Q = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), -1)
    expected = [jensenshannon(p, q, base=2) for p, q in zip(P.numpy(), Q.numpy())]
    assert np.allclose(pl.js_distance(P, Q).numpy(), expected)
    assert pl.js_distance(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(1.0)


def test_distributions_that_do_not_sum_to_one_are_refused():
    with pytest.raises(ValueError, match="sums to"):
        pl.js_distance(torch.tensor([0.5, 0.4]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="negative"):
        pl.js_distance(torch.tensor([1.5, -0.5]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="sums to"):
        pl.tilted_policy(torch.tensor([0.2, 0.2]), torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match="beta"):
        pl.tilted_policy(torch.tensor([0.5, 0.5]), torch.zeros(2), 0.0)


def test_overton_coverage_ground_truth():
    V = torch.eye(4)[[0, 0, 1, 1, 2, 2]] + 0.01
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert pl.overton_coverage(V, V, labels)["coverage"] == 1.0
    assert pl.overton_coverage(V[:2], V, labels)["coverage"] == pytest.approx(1 / 3)
    far = pl.overton_coverage(torch.eye(4)[3:], V, labels, threshold=0.5)
    assert far["coverage"] == 0.0 and far["assignment"].tolist() == [-1]
