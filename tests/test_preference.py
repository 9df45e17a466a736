"""labkit.preference against ground truth: closed forms, brute force, sklearn, Monte Carlo; bad input."""

import gzip
import math

import pytest
import torch

from labkit import preference as P


def test_true_reward_by_hand():
    r = P.true_reward(["A happy, sunny day!", "A sad and cold night.", "It is a day."])
    assert r.tolist() == [2.0, -2.0, 0.0]
    long = " ".join(["word"] * 25) + " happy"  # 26 words: 11 over the limit of 15
    assert P.true_reward(long).item() == pytest.approx(1 - 0.1 * 11)
    assert P.lexicon_words("Happy and sad, so happy") == (["happy", "happy"], ["sad"])


def test_bt_loss_closed_form_and_stability():
    a, b = torch.tensor([1.0, 0.0, -2.0]), torch.tensor([0.0, 0.0, 1.0])
    expected = -torch.log(torch.sigmoid(a - b)).mean()
    assert torch.allclose(P.bt_loss(a, b), expected)
    assert P.bt_loss(torch.zeros(5), torch.zeros(5)).item() == pytest.approx(math.log(2))
    assert P.bt_loss(torch.tensor([-500.0]), torch.tensor([500.0])).item() == pytest.approx(1000.0)


def test_bt_labels_follow_sigmoid():
    ra, rb = torch.full((40000,), 1.0), torch.zeros(40000)
    frac = P.sample_bt_labels(ra, rb, seed=3).float().mean().item()
    assert frac == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item(), abs=0.01)


def test_reward_model_recovers_planted_reward_and_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    d, n = 8, 2000
    w_true = torch.randn(d, generator=g)
    fa, fb = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    a_wins = P.sample_bt_labels(fa @ w_true, fb @ w_true, seed=1)
    fw, fl = torch.where(a_wins[:, None], fa, fb), torch.where(a_wins[:, None], fb, fa)
    l2 = 1e-3
    w = P.train_reward_model(fw, fl, l2=l2, device="cpu")
    assert torch.nn.functional.cosine_similarity(w, w_true, dim=0) > 0.98
    # the same objective in sklearn: symmetrised pairs, no intercept, C = 1 / (4 n l2)
    diff = (fw - fl).double().numpy()
    X = torch.cat([torch.from_numpy(diff), -torch.from_numpy(diff)]).numpy()
    y = [1] * n + [0] * n
    sk = LogisticRegression(C=1 / (4 * n * l2), fit_intercept=False, tol=1e-8, max_iter=2000).fit(X, y)
    assert torch.allclose(w.double(), torch.from_numpy(sk.coef_[0]), atol=2e-3)


def test_noise_ceiling_is_the_true_rewards_expected_agreement():
    g = torch.Generator().manual_seed(0)
    ra, rb = torch.randn(20000, generator=g) * 2, torch.randn(20000, generator=g) * 2
    labels = P.sample_bt_labels(ra, rb, seed=5)
    agree = ((ra > rb) == labels).float().mean().item()
    assert P.noise_ceiling(ra, rb) == pytest.approx(agree, abs=0.01)
    assert P.preference_accuracy(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])) == 0.75


def test_kl_regularised_policy_maximises_the_objective():
    g = torch.Generator().manual_seed(0)
    ref = torch.softmax(torch.randn(6, generator=g), -1)
    r = torch.randn(6, generator=g)
    beta = 0.7
    pi = P.kl_regularised_policy(ref.log(), r, beta).double()

    def J(p):
        return (p * r.double()).sum(-1) - beta * P.kl_divergence(p, ref.double().expand_as(p))

    random_policies = torch.distributions.Dirichlet(torch.ones(6, dtype=torch.float64)).sample((5000,))
    assert (J(random_policies) <= J(pi) + 1e-9).all()
    assert J(pi).item() == pytest.approx(beta * torch.logsumexp(ref.log().double() + r.double() / beta, 0).item(), abs=1e-6)
    assert torch.allclose(P.kl_regularised_policy(ref.log(), r, 1e6), ref, atol=1e-5)
    assert P.kl_regularised_policy(ref.log(), r, 1e-4).argmax() == r.argmax()


def test_best_of_n_exact_against_monte_carlo_and_analytic_kl():
    r = torch.tensor([0.3, -1.0, 2.0, 0.5, 1.1])
    pi3 = P.best_of_n_policy(r, 3)
    g = torch.Generator().manual_seed(0)
    draws = torch.randint(0, 5, (200000, 3), generator=g)
    best = draws.gather(1, r[draws].argmax(1, keepdim=True))[:, 0]
    mc = torch.bincount(best, minlength=5).float() / len(best)
    assert torch.allclose(pi3, mc, atol=0.005)
    assert torch.allclose(P.best_of_n_policy(r, 1), torch.full((5,), 0.2))
    big = torch.randn(50000, generator=g)
    for n in (2, 4, 16):
        kl = P.kl_divergence(P.best_of_n_policy(big, n), torch.full_like(big, 1 / len(big))).item()
        assert kl == pytest.approx(P.best_of_n_kl(n), abs=2e-3)


def test_policy_curve_limits():
    r = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    ref = torch.full_like(r, -math.log(8))
    c = P.policy_curve(ref, r, {"r": r}, [1e6, 1e-4])
    assert c["kl"][0] == pytest.approx(0, abs=1e-6) and c["kl"][1] == pytest.approx(math.log(8), abs=1e-4)
    assert c["r"][1] == pytest.approx(r.max(-1).values.mean().item(), abs=1e-4)


def test_shipped_data_loads_and_labels_are_reproducible():
    data = P.load_preference_data()
    assert len(data["responses"]) == 256
    assert len({r["prompt_id"] for r in data["responses"]}) == 32
    assert 0 < len(data["pairs"]) <= 32 * 28
    p = data["pairs"][0]
    assert {"chosen", "rejected", "chosen_reward", "rejected_reward", "p_chosen"} <= set(p)
    assert all(q["chosen"] != q["rejected"] for q in data["pairs"])
    assert data["pairs"] == P.load_preference_data()["pairs"]


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0, -1.0, float("nan"), float("inf")])
def test_nonpositive_beta_is_refused(beta):
    with pytest.raises(ValueError, match="beta must be a positive"):
        P.kl_regularised_policy(torch.zeros(3), torch.zeros(3), beta)


def test_mismatched_batch_sizes_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        P.bt_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="same shape"):
        P.kl_regularised_policy(torch.zeros(3), torch.zeros(4), 1.0)
    with pytest.raises(ValueError, match=r"\[n_pairs, dim\]"):
        P.train_reward_model(torch.zeros(3, 2), torch.zeros(4, 2))


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match="empty"):
        P.bt_loss(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="empty"):
        P.true_reward([])
    with pytest.raises(ValueError, match="non-empty"):
        P.embed_responses(["fine", "  "])


def test_identical_responses_make_no_pair():
    rows = [{"prompt_id": 0, "prompt": "p", "system": "s", "response": t} for t in ["same", "same"]]
    with pytest.raises(ValueError, match="no pairs"):
        P.make_pairs(rows)
    rows.append({"prompt_id": 0, "prompt": "p", "system": "s", "response": "happy"})
    assert len(P.make_pairs(rows)) == 2


def test_probabilities_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to one"):
        P.kl_divergence(torch.tensor([0.5, 0.6]), torch.tensor([0.5, 0.5]))


def test_missing_and_corrupted_data_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_preferences"):
        P.load_responses(tmp_path / "nope.jsonl.gz")
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="corrupted"):
        P.load_responses(bad)
    partial = tmp_path / "partial.jsonl.gz"
    with gzip.open(partial, "wt") as f:
        f.write('{"prompt_id": 0}\n')
    with pytest.raises(ValueError, match="lacks fields"):
        P.load_responses(partial)


def test_best_of_n_needs_positive_integer():
    with pytest.raises(ValueError):
        P.best_of_n_policy(torch.zeros(3), 0)
    with pytest.raises(ValueError):
        P.best_of_n_kl(0)


def test_best_of_n_refuses_a_reference_that_is_not_a_distribution():
    # issue 15: a reference summing to 1.5 used to give a "distribution" summing to 1.94
    rewards = torch.tensor([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="sum to one"):
        P.best_of_n_policy(rewards, 2, torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="sum to one"):
        P.best_of_n_policy(rewards, 2, torch.tensor([1.2, -0.1, -0.1]))
    ref = torch.tensor([0.2, 0.3, 0.5])
    pi = P.best_of_n_policy(rewards, 3, ref)
    # brute force over all 27 draws of 3 candidates
    import itertools

    brute = torch.zeros(3, dtype=torch.float64)
    for draw in itertools.product(range(3), repeat=3):
        brute[max(draw, key=lambda i: (rewards[i], i))] += float(ref[list(draw)].prod())
    assert torch.allclose(pi.double(), brute, atol=1e-6) and float(pi.sum()) == pytest.approx(1.0)


def test_nan_rewards_and_probabilities_are_refused():
    nan = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        P.bt_loss(torch.tensor([nan]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="NaN"):
        P.kl_regularised_policy(torch.zeros(2), torch.tensor([0.0, nan]), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        P.preference_accuracy(torch.tensor([nan, 1.0]), torch.zeros(2))  # NaN > 0 is False: a silent wrong count
    with pytest.raises(ValueError, match="NaN"):
        P.train_reward_model(torch.tensor([[nan, 1.0]]), torch.zeros(1, 2))


def test_reward_model_step_is_gradient_descent_on_the_bt_loss():
    """Ground truth: autograd's gradient of the penalised BT loss, and convergence to the L-BFGS optimum."""
    g = torch.Generator().manual_seed(0)
    fc, fr = torch.randn(30, 4, generator=g, dtype=torch.float64), torch.randn(30, 4, generator=g, dtype=torch.float64)
    w = torch.randn(4, generator=g, dtype=torch.float64)
    leaf = w.clone().requires_grad_(True)
    (P.bt_loss(fc @ leaf, fr @ leaf) + 0.05 * (leaf * leaf).sum()).backward()
    assert torch.allclose(P.reward_model_step(w, fc, fr, lr=0.3, l2=0.05), w - 0.3 * leaf.grad, atol=1e-12)
    v = torch.zeros(4, dtype=torch.float64)
    for _ in range(500):
        v = P.reward_model_step(v, fc, fr, lr=1.0, l2=1e-2)
    w_star = P.train_reward_model(fc, fr, l2=1e-2).double()
    assert torch.allclose(v, w_star, atol=1e-4)
    assert P.reward_model_step(v, fc, fr, lr=1.0).dtype == torch.float64


def test_reward_model_step_bad_input():
    with pytest.raises(ValueError, match="lr must be > 0"):
        P.reward_model_step(torch.zeros(2), torch.zeros(3, 2), torch.zeros(3, 2), lr=0.0)
    with pytest.raises(ValueError, match="dim = len"):
        P.reward_model_step(torch.zeros(3), torch.zeros(3, 2), torch.zeros(3, 2), lr=1.0)
