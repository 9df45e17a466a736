"""labkit.bias against ground truth: brute-force permutation tests, closed forms, planted features."""

import itertools
import math

import pytest
import torch

from labkit import bias


def _sets(seed=0, n=6, d=12):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g) for _ in range(4)]


def test_association_and_effect_size_match_a_hand_computation():
    X, Y, A, B = _sets()
    cos = lambda u, v: float(u @ v / (u.norm() * v.norm()))  # noqa: E731
    s = lambda w: sum(cos(w, a) for a in A) / len(A) - sum(cos(w, b) for b in B) / len(B)  # noqa: E731
    sx, sy = [s(x) for x in X], [s(y) for y in Y]
    allv = torch.tensor(sx + sy)
    d = (sum(sx) / len(sx) - sum(sy) / len(sy)) / float(allv.std())
    assert torch.allclose(bias.association(X, A, B), torch.tensor(sx), atol=1e-6)
    assert abs(float(bias.weat_effect_size(X, Y, A, B)) - d) < 1e-5
    assert abs(float(bias.weat_effect_size(Y, X, A, B)) + d) < 1e-5  # antisymmetric
    assert -2 <= d <= 2


def test_effect_size_is_scale_invariant():
    X, Y, A, B = _sets(1)
    assert torch.allclose(bias.weat_effect_size(X, Y, A, B), bias.weat_effect_size(3 * X, Y / 7, A * 2, B), atol=1e-6)


def test_exact_permutation_p_value_equals_brute_force():
    g = torch.Generator().manual_seed(2)
    sx, sy = torch.randn(5, generator=g) + 0.5, torch.randn(5, generator=g)
    s = torch.cat([sx, sy]).tolist()
    obs = sum(sx.tolist()) - sum(sy.tolist())
    count = total = 0
    for c in itertools.combinations(range(10), 5):
        st = sum(s[i] for i in c) - sum(s[i] for i in range(10) if i not in c)
        count += st >= obs - 1e-12
        total += 1
    assert total == math.comb(10, 5)
    assert bias.permutation_p_value(sx, sy) == pytest.approx(count / total, abs=1e-12)


def test_monte_carlo_p_value_is_close_to_exact():
    g = torch.Generator().manual_seed(3)
    sx, sy = torch.randn(7, generator=g) + 0.4, torch.randn(7, generator=g)
    exact = bias.permutation_p_value(sx, sy)
    mc = bias.permutation_p_value(sx, sy, exact_limit=0, n_permutations=20_000, seed=1)
    assert abs(exact - mc) < 0.015


def test_p_value_is_uniformish_under_the_null_and_small_for_a_planted_effect():
    g = torch.Generator().manual_seed(4)
    ps = [bias.permutation_p_value(torch.randn(5, generator=g), torch.randn(5, generator=g)) for _ in range(60)]
    assert 0.3 < sum(ps) / len(ps) < 0.7
    assert bias.permutation_p_value(torch.arange(6.0) + 10, torch.arange(6.0)) == pytest.approx(1 / math.comb(12, 6))


def test_weat_on_planted_embeddings():
    g = torch.Generator().manual_seed(5)
    axis = torch.randn(32, generator=g)
    noise = lambda n: torch.randn(n, 32, generator=g)  # noqa: E731
    r = bias.weat(noise(8) + 2 * axis, noise(8) - 2 * axis, noise(8) + 2 * axis, noise(8) - 2 * axis)
    assert r["effect_size"] > 1.5 and r["p_value"] < 0.01


@pytest.mark.parametrize(
    "sets, message",
    [
        ((torch.randn(4, 8), torch.randn(5, 8), torch.randn(3, 8), torch.randn(3, 8)), "equal size"),
        ((torch.zeros(0, 8), torch.zeros(0, 8), torch.randn(3, 8), torch.randn(3, 8)), "empty"),
        ((torch.randn(4, 8), torch.randn(4, 8), torch.zeros(0, 8), torch.randn(3, 8)), "empty"),
        ((torch.randn(4, 8), torch.randn(4, 8), torch.randn(3, 8), torch.randn(3, 6)), "different widths"),
    ],
)
def test_weat_refuses_bad_word_sets(sets, message):
    with pytest.raises(ValueError, match=message):
        bias.weat_effect_size(*sets)


def test_permutation_test_refuses_unequal_or_empty_sets():
    with pytest.raises(ValueError, match="equal size"):
        bias.permutation_p_value(torch.randn(3), torch.randn(4))
    with pytest.raises(ValueError, match="at least one"):
        bias.permutation_p_value(torch.zeros(0), torch.zeros(0))


@pytest.fixture(scope="module")
def embedder():
    import labkit

    return labkit.load_embedder(device="cpu")


def test_embed_gives_unit_vectors_and_refuses_what_it_cannot_embed(embedder):
    E = bias.embed(embedder, ["rose", "tulip"])
    assert E.shape == (2, 384) and torch.allclose(E.norm(dim=-1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match="empty or blank"):
        bias.embed(embedder, ["rose", "  "])
    with pytest.raises(ValueError, match="UNK"):
        bias.embed(embedder, ["rose", "\u2603\u2603"])  # snowmen: unknown to the WordPiece vocabulary
    with pytest.raises(TypeError):
        bias.embed(embedder, ["rose", 3])
    with pytest.raises(ValueError, match="empty"):
        bias.embed(embedder, [])


def test_flowers_insects_sanity_test_on_the_course_embedder(embedder):
    w = bias.load_data("weat_words")
    E = {k: bias.embed(embedder, w[k]) for k in ("flowers", "insects", "pleasant", "unpleasant")}
    r = bias.weat(E["flowers"], E["insects"], E["pleasant"], E["unpleasant"], n_permutations=5000)
    assert r["effect_size"] > 1.0 and r["p_value"] < 0.01


def test_seat_sentences_and_bad_templates():
    assert bias.seat_sentences(["rose", "ant"], ["This is {}.", "That is {}."]) == [
        "This is rose.", "That is rose.", "This is ant.", "That is ant."]
    with pytest.raises(ValueError, match="template"):
        bias.seat_sentences(["rose"], ["no slot"])
    with pytest.raises(ValueError, match="words must be non-empty"):
        bias.seat_sentences(["rose", ""], ["This is {}."])


def test_simplicity_data_features_are_each_perfectly_predictive():
    X, y = bias.simplicity_data(500, seed=0)
    assert ((X[:, 0] > 0).long() == y).all()
    assert ((X[:, 1].abs() < 1 / 3).long() == y).all()
    Xd = bias.decorrelate(X, 1)
    assert sorted(Xd[:, 1].tolist()) == sorted(X[:, 1].tolist()) and torch.equal(Xd[:, 0], X[:, 0])


def test_shortcut_digits_plants_the_patch_as_specified():
    d = bias.shortcut_digits(correlation=0.9, seed=0)
    X, y, has = d["train"]
    assert abs(float(has[y == 1].float().mean()) - 0.9) < 0.05 and abs(float(has[y == 0].float().mean()) - 0.1) < 0.05
    assert (X[has][:, [0, 1, 8, 9]] == 1).all()
    Xf, yf, hf = d["test_flipped"]
    assert torch.equal(hf, yf == 0)
    with pytest.raises(ValueError):
        bias.shortcut_digits(correlation=1.5)


def test_group_weights_balance_the_cells():
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    g = torch.tensor([0, 0, 1, 1, 1, 1, 1, 0])
    w = bias.group_weights(y, g)
    cell = y * 2 + g
    totals = [float(w[cell == c].sum()) for c in torch.unique(cell)]
    assert max(totals) - min(totals) < 1e-6 and abs(float(w.sum()) - len(y)) < 1e-5


def test_train_mlp_learns_and_refuses_bad_shapes():
    X, y = bias.simplicity_data(400, seed=0)
    model, _ = bias.train_mlp(X, y, steps=60, hidden=16, device="cpu")
    assert bias.accuracy(model, X, y) > 0.95
    with pytest.raises(ValueError):
        bias.train_mlp(X, y[:10])


def test_position_bias_closed_forms():
    K = 3
    assert float(bias.position_bias(torch.full((4, K), -2.0))) == pytest.approx(0.0, abs=1e-6)
    always_a = torch.tensor([[0.0, -50.0, -50.0]]).expand(5, K)
    assert float(bias.position_bias(always_a)) == pytest.approx(1 - 1 / K, abs=1e-5)


def test_contextual_calibration_removes_a_pure_label_bias():
    prior = torch.tensor([0.6, 0.3, 0.1])
    g = torch.Generator().manual_seed(0)
    content = torch.softmax(torch.randn(20, 3, generator=g), -1)
    biased = torch.log(content * prior)  # the model multiplies the content signal by a label prior
    cal = bias.contextual_calibration(biased, prior.log()[None])
    assert torch.allclose(cal.exp(), content, atol=1e-5)


def test_mc_prompts_enumerate_all_orders_and_refuse_duplicates():
    out = bias.mc_prompts("Which?", ["x", "y", "z"])
    assert len(out) == 6 and len({o for _, o in out}) == 6
    with pytest.raises(ValueError, match="duplicates"):
        bias.mc_prompts("Which?", ["x", "x", "z"])
    with pytest.raises(ValueError, match="non-empty"):
        bias.mc_prompts("", ["x", "y", "z"])


def test_minimal_pair_scores_match_logprobs_and_refuse_empty_text(lm):
    pairs = [{"more": "Fish", "less": "Cats", "continuation": " breathe underwater."}]
    d = bias.minimal_pair_scores(lm, pairs)
    ref = lm.logprobs("Fish", " breathe underwater.") - lm.logprobs("Cats", " breathe underwater.")
    assert torch.allclose(d, ref.reshape(1), atol=1e-4)
    with pytest.raises(ValueError, match="non-empty"):
        bias.minimal_pair_scores(lm, [{"more": "Fish", "less": "", "continuation": " swim."}])


def test_weat_null_effect_sizes_equal_brute_force_and_give_the_p_value():
    g = torch.Generator().manual_seed(7)
    sx, sy = torch.randn(4, generator=g) + 0.3, torch.randn(4, generator=g)
    s = torch.cat([sx, sy]).double()
    brute = []
    for c in itertools.combinations(range(8), 4):
        rest = [i for i in range(8) if i not in c]
        brute.append(float((s[list(c)].mean() - s[rest].mean()) / s.std()))
    null = bias.weat_null_effect_sizes(sx, sy)
    assert torch.allclose(null, torch.tensor(brute, dtype=torch.float64), atol=1e-12)
    d_obs = float((sx.double().mean() - sy.double().mean()) / s.std())
    assert null[0] == pytest.approx(d_obs)  # the first combination is the observed split
    assert float((null >= d_obs - 1e-12).double().mean()) == pytest.approx(bias.permutation_p_value(sx, sy), abs=1e-12)
    assert null.mean() == pytest.approx(0.0, abs=1e-12)  # every split and its mirror image
    sampled = bias.weat_null_effect_sizes(sx, sy, exact_limit=0, n_permutations=5000, seed=1)
    assert len(sampled) == 5000 and abs(float(sampled.quantile(0.95)) - float(null.quantile(0.95))) < 0.1


def _planted_bias_classifier(artifact):
    """A simulated 3-way classifier with a known label bias b: log p(y | text) = log softmax(b + 0.3 · counts of
    y's evidence words in the text (+ ``artifact`` when the text contains the content-free token "N/A"))."""
    b = torch.tensor([1.5, 0.0, -1.0])
    words = [f"w{k}_{i}" for k in range(3) for i in range(10)]
    label_of = {w: i // 10 for i, w in enumerate(words)}
    g = torch.Generator().manual_seed(0)
    texts, labels = [], []
    for n in range(300):  # a balanced test set: each text has 4 words of its label and 2 random ones
        y = n % 3
        own = [words[y * 10 + int(i)] for i in torch.randint(10, (4,), generator=g)]
        texts.append(" ".join(own + [words[int(i)] for i in torch.randint(30, (2,), generator=g)]))
        labels.append(y)

    def model(text):
        logit = b.clone()
        for w in text.split():
            if w in label_of:
                logit[label_of[w]] += 0.3
            if w == "N/A":
                logit += artifact
        return torch.log_softmax(logit, -1)

    return b, texts, torch.tensor(labels), model


def test_domain_context_calibration_recovers_a_planted_label_bias():
    b, texts, labels, model = _planted_bias_classifier(artifact=torch.tensor([-2.0, 2.0, 0.0]))
    lp = torch.stack([model(t) for t in texts])
    dc = torch.stack([model(t) for t in bias.domain_context_texts(texts, n=200, seed=0)])
    cf = torch.stack([model("N/A")])
    centred = lambda v: v - v.mean()  # noqa: E731  a bias is known up to a constant in log space
    # the domain-context estimate recovers the planted bias; the content-free token adds its own
    assert (centred(bias.label_bias(dc).log()) - centred(b)).abs().max() < 0.1
    assert torch.allclose(centred(bias.label_bias(cf).log()) - centred(b), torch.tensor([-2.0, 2.0, 0.0]), atol=1e-5)
    raw_bias, raw_acc = bias.position_bias(lp), (lp.argmax(-1) == labels).float().mean()
    dcc = bias.domain_context_calibration(lp, dc)
    ccc = bias.contextual_calibration(lp, cf)
    assert raw_bias > 0.3 and raw_acc < 0.5  # the planted bias decides most answers
    assert bias.position_bias(dcc) < 0.03 and (dcc.argmax(-1) == labels).float().mean() > 0.95
    assert bias.position_bias(ccc) > raw_bias  # dividing by a wrong estimate makes it worse
    # with a neutral content-free token both estimates are right
    b, texts, labels, model = _planted_bias_classifier(artifact=torch.zeros(3))
    lp = torch.stack([model(t) for t in texts])
    assert torch.allclose(bias.contextual_calibration(lp, model("N/A")[None]), torch.log_softmax(lp - b, -1), atol=1e-5)


def test_domain_context_texts_draw_words_of_the_domain():
    texts = ["the cat sat", "a dog ran far away"]
    out = bias.domain_context_texts(texts, n=30, seed=3)
    bag = {w for t in texts for w in t.split()}
    assert len(out) == 30 and all(len(t.split()) == 4 for t in out)  # mean length (3 + 5) / 2
    assert all(set(t.split()) <= bag for t in out)
    assert out == bias.domain_context_texts(texts, n=30, seed=3) and out != bias.domain_context_texts(texts, n=30, seed=4)
    assert all(len(t.split()) == 2 for t in bias.domain_context_texts(texts, n=5, length=2))


def test_nan_and_silent_results_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        bias.position_bias(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        bias.contextual_calibration(torch.zeros(2, 3), torch.tensor([[0.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="all-zero embedding"):  # a zero vector has no cosine: not a silent 0
        bias.weat_effect_size(torch.zeros(2, 3), torch.ones(2, 3), torch.eye(3)[:2], torch.eye(3)[1:])
    with pytest.raises(ValueError, match="binary head"):  # a 3-class y would silently use only class 0's weights
        X, y = bias.simplicity_data(30)
        model, _ = bias.train_mlp(X, y, hidden=4, steps=1, device="cpu")
        bias.last_layer_retrain(model, X, torch.arange(30) % 3, torch.arange(30) % 2)


def test_seat_test_is_weat_on_per_word_mean_embeddings_with_an_exact_word_level_p_value():
    """Ground truth: a brute-force loop over the partitions of the words, with hand-averaged word vectors."""
    g = torch.Generator().manual_seed(5)
    k, n = 3, 4
    sets = [torch.randn(n * k, 8, generator=g) for _ in range(4)]
    r = bias.seat_test(*sets, n_templates=k)
    words = [torch.stack([E[i * k:(i + 1) * k].mean(0) for i in range(n)]) for E in sets]
    unit = lambda V: V / V.norm(dim=-1, keepdim=True)  # noqa: E731
    Xw, Yw, Aw, Bw = (unit(W) for W in words)
    s = [float((w @ Aw.T).mean() - (w @ Bw.T).mean()) for w in torch.cat([Xw, Yw])]
    sd = float(torch.tensor(s).std())
    assert r["effect_size"] == pytest.approx((sum(s[:n]) / n - sum(s[n:]) / n) / sd, abs=1e-5)
    observed = sum(s[:n]) - sum(s[n:])
    parts = list(itertools.combinations(range(2 * n), n))
    count = sum(sum(s[i] for i in c) - sum(s[i] for i in range(2 * n) if i not in c) >= observed - 1e-9 for c in parts)
    assert r["p_value"] == pytest.approx(count / len(parts))
    one = bias.seat_test(*words, n_templates=1)   # one template: SEAT is WEAT on the words
    assert one["p_value"] == r["p_value"] and one["effect_size"] == pytest.approx(r["effect_size"], abs=1e-6)
