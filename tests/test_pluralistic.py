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


@pytest.fixture(scope="module")
def per_comparison():
    """A planted truth for the lecture's likelihood: every comparison is labelled by a fresh person (one label per
    annotator), drawn from a 70/30 mixture of two groups."""
    return pl.simulate_preferences(n_responses=30, dim=3, group_sizes=(2100, 900), comparisons_per_annotator=1,
                                   cosine=-0.2, scale=4.0, seed=1)


def test_per_comparison_em_recovers_a_planted_per_comparison_mixture(per_comparison):
    d = per_comparison
    em = pl.em_rewards(d["features"], d["pairs"], d["labels"], k=2, n_iter=30, n_restarts=2, seed=0, unit="comparison")
    assert em.unit == "comparison" and em.resp.shape == (len(d["pairs"]), 2)
    perm = pl.match_groups(d["groups"], em.assignment, k=2)
    assert (pl.reward_cosine(em.weights[perm], d["weights"]) > 0.95).all()
    assert em.eta[perm].tolist() == pytest.approx([0.7, 0.3], abs=0.1)
    # the lecture's L = Σ_z log Σ_u η_u σ(r_u(y_w) − r_u(y_l)) at the learned rewards beats one reward for everyone
    mix = lambda W, eta: float(torch.logsumexp(pl.pair_loglik(W, d["features"], d["pairs"], d["labels"])  # noqa: E731
                                               + torch.log(eta), -1).sum())
    single = pl.fit_bt(d["features"], d["pairs"], d["labels"])
    assert mix(em.weights, em.eta) > mix(single[None], torch.ones(1, dtype=torch.float64)) + 50


def test_one_label_per_annotator_makes_the_two_likelihoods_one(per_comparison):
    d = per_comparison
    sub = slice(0, 600)
    args = (d["features"], d["pairs"][sub], d["labels"][sub])
    by_annotator = pl.em_rewards(*args, d["annotator"][sub], k=2, n_iter=5, n_restarts=1, seed=3)
    by_comparison = pl.em_rewards(*args, k=2, n_iter=5, n_restarts=1, seed=3, unit="comparison")
    assert torch.allclose(by_annotator.weights, by_comparison.weights) and by_annotator.loglik == pytest.approx(by_comparison.loglik)


def test_per_annotator_em_needs_annotators_who_keep_their_group(data):
    """The same comparisons, with annotator ids that carry the group (as planted) or not (shuffled, so each id's
    labels come from both groups): per-annotator EM loses the minority without meaningful ids; per-comparison EM
    does not use the ids at all."""
    X, P, y, a = data["features"], data["pairs"], data["labels"], data["annotator"]
    shuffled = a[torch.randperm(len(a), generator=torch.Generator().manual_seed(0))]
    cos = {}
    for name, ids in (("planted ids", a), ("shuffled ids", shuffled)):
        em = pl.em_rewards(X, P, y, ids, k=2, n_iter=10, n_restarts=2, seed=0)
        cos[name] = max(pl.reward_cosine(em.weights[list(p)], data["weights"])[1].item() for p in ((0, 1), (1, 0)))
    assert cos["planted ids"] > 0.95 and cos["shuffled ids"] < cos["planted ids"] - 0.3


def test_more_groups_than_annotators_is_refused(data):
    with pytest.raises(ValueError, match="annotators"):
        pl.em_rewards(data["features"], data["pairs"], data["labels"], data["annotator"], k=25)
    with pytest.raises(ValueError, match=r"k \(the number of groups\) must be an integer >= 1"):
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


def test_maxmin_grid_searches_every_group():
    """Three groups, one of them the worst off only for mixtures that ignore it: the grid must search all three
    (the former version mixed only the first two groups' rewards and returned a policy that starves the third)."""
    g = torch.Generator().manual_seed(7)
    ref = torch.softmax(torch.randn(9, generator=g, dtype=torch.float64), 0)
    R3 = torch.randn(3, 9, generator=g, dtype=torch.float64) * 2
    grid = pl.maxmin_grid(R3, ref, 0.5, n_grid=61)
    exact, lam = pl.maxmin_policy(R3, ref, 0.5)
    assert (lam > 0.1).all()  # all three groups bind at the optimum
    v_grid, v_exact = pl.maxmin_objective(grid, R3, ref, 0.5).item(), pl.maxmin_objective(exact, R3, ref, 0.5).item()
    assert v_grid <= v_exact + 1e-9 and v_grid == pytest.approx(v_exact, abs=5e-3)
    # brute force over the same lattice: the grid's answer is its best point
    lattice = torch.tensor([[i, j, 60 - i - j] for i in range(61) for j in range(61 - i)], dtype=torch.float64) / 60
    best = pl.maxmin_objective(pl.tilted_policy(ref, lattice @ R3, 0.5), R3, ref, 0.5).max().item()
    assert v_grid == pytest.approx(best, abs=1e-12)
    two_only = pl.maxmin_grid(R3[:2], ref, 0.5, n_grid=61)
    assert pl.maxmin_objective(two_only, R3, ref, 0.5).item() < v_grid - 0.05  # what searching two groups missed
    # two groups: the same λ grid as before, λ r_0 + (1 − λ) r_1
    lams = torch.linspace(0, 1, 11, dtype=torch.float64)[:, None]
    pis = pl.tilted_policy(ref, lams * R3[0] + (1 - lams) * R3[1], 0.5)
    assert torch.equal(pl.maxmin_grid(R3[:2], ref, 0.5, n_grid=11), pis[pl.maxmin_objective(pis, R3[:2], ref, 0.5).argmax()])


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


class WordEmbedder:
    """A stand-in sentence embedder: a text's embedding counts the words cat, dog and fish (plus a constant)."""

    WORDS = ("cat", "dog", "fish")

    def encode(self, texts, convert_to_tensor=True, normalize_embeddings=True):
        e = torch.tensor([[t.lower().count(w) for w in self.WORDS] + [0.1] for t in texts], dtype=torch.float32)
        return torch.nn.functional.normalize(e, dim=-1) if normalize_embeddings else e


def test_answer_sentences_splits_lists_and_sentences():
    reply = "1. Cats are calm pets.\n2. Dogs need long walks. Fish need clean water!\nYes."
    assert pl.answer_sentences(reply) == ["Cats are calm pets.", "Dogs need long walks.", "Fish need clean water!"]
    assert pl.answer_sentences("Yes.") == ["Yes."]  # nothing long enough: the whole reply


def test_text_coverage_ground_truth():
    views = {"cats": ["I like cats.", "A cat is best."], "dogs": ["Dogs are loyal."], "fish": ["Fish are quiet."]}
    emb = WordEmbedder()
    both = pl.text_coverage(emb, ["My cat sleeps.", "The dog barks."], views)
    assert both["coverage"] == pytest.approx(2 / 3) and both["assignment"].tolist() == [0, 1]
    assert pl.text_coverage(emb, ["Nothing relevant here."], views)["coverage"] == 0.0
    # the same as embedding by hand and calling overton_coverage
    statements = [s for v in views.values() for s in v]
    manual = pl.overton_coverage(emb.encode(["My cat sleeps."]), emb.encode(statements), torch.tensor([0, 0, 1, 2]))
    assert pl.text_coverage(emb, ["My cat sleeps."], views)["covered"] == manual["covered"] == [0]


def test_overton_coverage_ground_truth():
    V = torch.eye(4)[[0, 0, 1, 1, 2, 2]] + 0.01
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert pl.overton_coverage(V, V, labels)["coverage"] == 1.0
    assert pl.overton_coverage(V[:2], V, labels)["coverage"] == pytest.approx(1 / 3)
    far = pl.overton_coverage(torch.eye(4)[3:], V, labels, threshold=0.5)
    assert far["coverage"] == 0.0 and far["assignment"].tolist() == [-1]
