"""labkit.llm_explain against ground truth: completeness, brute force, closed forms, planted neurons."""

import itertools
import math

import pytest
import torch

from labkit import llm_explain as L


def _toy(seed=0, interaction=3.0):
    w = torch.randn(30, generator=torch.Generator().manual_seed(seed))

    def f(batch):
        return w[batch].sum(-1) + interaction * ((batch == 5).any(-1) & (batch == 6).any(-1)).float()

    return f, w


def _brute_shapley(f, ids, seg, baseline):
    n = int(seg.max()) + 1
    phi = torch.zeros(n, dtype=torch.float64)
    perms = list(itertools.permutations(range(n)))
    for perm in perms:
        keep = torch.zeros(n, dtype=torch.bool)
        prev = f(torch.where(keep[seg], ids, torch.full_like(ids, baseline))[None])[0]
        for i in perm:
            keep[i] = True
            cur = f(torch.where(keep[seg], ids, torch.full_like(ids, baseline))[None])[0]
            phi[i] += cur - prev
            prev = cur
    return (phi / len(perms)).float()


def test_leave_one_out_scores_closed_form():
    f, w = _toy(interaction=0.0)
    ids = torch.tensor([3, 7, 9, 0, 12])
    torch.testing.assert_close(L.leave_one_out_scores(f, ids, 0), w[ids] - w[0])


def test_shapley_exact_matches_permutation_brute_force_and_efficiency():
    f, w = _toy()
    ids = torch.tensor([5, 1, 6, 2, 3, 8])
    seg = torch.tensor([0, 0, 1, 2, 2, 3])
    exact = L.shapley_exact(f, ids, seg, 0)
    torch.testing.assert_close(exact, _brute_shapley(f, ids, seg, 0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(exact.sum(), (f(ids[None]) - f(torch.zeros(1, 6, dtype=torch.long)))[0], atol=1e-5, rtol=1e-5)
    # the interaction of ids 5 (segment 0) and 6 (segment 1) is split equally
    torch.testing.assert_close(exact[0], w[5] + w[1] - 2 * w[0] + 1.5, atol=1e-5, rtol=1e-5)
    loo = L.segment_leave_one_out(f, ids, seg, 0)
    torch.testing.assert_close(loo[0], w[5] + w[1] - 2 * w[0] + 3.0, atol=1e-5, rtol=1e-5)


def test_shapley_sampling_converges_to_exact():
    f, _ = _toy()
    ids = torch.tensor([5, 1, 6, 2, 3])
    seg = torch.tensor([0, 0, 1, 2, 3])
    exact = L.shapley_exact(f, ids, seg, 0)
    sampled = L.shapley_sampling(f, ids, seg, 0, n_samples=400)
    assert (sampled - exact).abs().max() < 0.3
    torch.testing.assert_close(sampled.sum(), exact.sum(), atol=1e-4, rtol=1e-4)  # efficiency per permutation


@pytest.fixture(scope="module")
def tiny_lm(lm):
    """A 2-layer random Llama with the course tokenizer: smooth enough for IG to converge in few steps."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from labkit.lm import LanguageModel

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=lm.model.config.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True)
    return LanguageModel(LlamaForCausalLM(cfg).eval(), lm.tokenizer, name="tiny")


def test_integrated_gradients_completeness(tiny_lm):
    prompt = "The capital of France is"
    phi, delta, gap = L.integrated_gradients(tiny_lm, prompt, " Paris", n_steps=64)
    assert phi.shape == (len(tiny_lm.encode(prompt)),)
    assert abs(float(phi.sum()) - gap - delta) < 1e-4  # delta is defined as Σφ − (f(x) − f(x'))
    assert abs(delta) < 0.01 * abs(gap) + 1e-3  # completeness holds once the integral has converged
    with pytest.warns(UserWarning, match="misses completeness"):  # 2 points are too few, and labkit says so
        _, delta_coarse, _ = L.integrated_gradients(tiny_lm, prompt, " Paris", n_steps=2)
    assert abs(delta) <= abs(delta_coarse) + 1e-6


def test_integrated_gradients_identity_and_loo_brute_force(lm):
    prompt = "The capital of France is"
    phi, delta, gap = L.integrated_gradients(lm, prompt, " Paris", n_steps=8, warn_above=None)
    assert abs(float(phi.sum()) - gap - delta) < 1e-2 * max(1.0, abs(gap))
    loo = L.leave_one_out(lm, prompt, " Paris")
    ids = lm.encode(prompt)
    pad = lm.token_id(L.DEFAULT_BASELINE)  # the default "removed token"
    f = L.target_logprob(lm, " Paris")
    full = f(torch.tensor([ids]))[0]
    for i in range(len(ids)):
        variant = list(ids)
        variant[i] = pad
        assert abs(float(full - f(torch.tensor([variant]))[0] - loo[i])) < 1e-3


def test_saliency_shape_and_segment_ids(lm):
    ids, seg = L.segment_ids(lm, ["Anna", " lives in Rome.", " Anna speaks"])
    assert len(ids) == len(seg) and seg.tolist() == sorted(seg.tolist()) and int(seg.max()) == 2
    sal = L.token_saliency(lm, ids.tolist(), " Italian")
    assert sal.shape == ids.shape and (sal >= 0).all()


def test_probe_matches_sklearn_and_control_labels():
    from sklearn.linear_model import RidgeClassifier
    from sklearn.preprocessing import StandardScaler

    g = torch.Generator().manual_seed(0)
    X = torch.randn(80, 6, generator=g) * torch.tensor([1.0, 5, 0.1, 2, 1, 3]) + 2
    y = (X[:, 0] - 0.2 * X[:, 1] + 0.3 * torch.randn(80, generator=g) > 1.5).long()
    ours = L.probe_scores(X[:50], y[:50], X[50:], l2=2.0)
    sc = StandardScaler().fit(X[:50].double().numpy())
    sk = RidgeClassifier(alpha=2.0 * 50 / 49).fit(sc.transform(X[:50].double().numpy()), y[:50].numpy())
    theirs = torch.tensor(sk.decision_function(sc.transform(X[50:].double().numpy())))
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
    batched = L.probe_accuracy(torch.stack([X[:50], X[:50]]), y[:50], torch.stack([X[50:], X[50:]]), y[50:], 2.0)
    assert batched.shape == (2,) and batched[0] == batched[1] > 0.8
    labels = L.control_labels(["a", "b", "a", "c", "b"], seed=1)
    assert labels[0] == labels[2] and labels[1] == labels[4]


def test_probe_selectivity_against_sklearn_and_hand_drawn_control_labels():
    import numpy as np
    from sklearn.linear_model import RidgeClassifier
    from sklearn.preprocessing import StandardScaler

    g = torch.Generator().manual_seed(3)
    words = [w for w in "ant bee cow dog eel fox gnu hen".split() for _ in range(6)]
    y = torch.tensor([i % 2 for i in range(48)])
    X = torch.randn(2, 48, 5, generator=g, dtype=torch.float64)
    X[0, :, 0] += 2.0 * (2 * y - 1)  # layer 0 reads the task label, layer 1 is noise
    tr, te = torch.arange(32), torch.arange(32, 48)
    out = L.probe_selectivity(X, y, words, tr, te, l2=2.0, seed=4)
    types = sorted(set(words))  # the control task by hand: one fixed random label per word type
    table = dict(zip(types, np.random.default_rng(4).integers(0, 2, len(types))))
    y_control = np.array([table[w] for w in words])
    expected = []
    for labels in (y.numpy(), y_control):
        accs = []
        for layer in range(2):
            sc = StandardScaler().fit(X[layer, tr].numpy())
            sk = RidgeClassifier(alpha=2.0 * 32 / 31).fit(sc.transform(X[layer, tr].numpy()), labels[tr.numpy()])
            accs.append((sk.predict(sc.transform(X[layer, te].numpy())) == labels[te.numpy()]).mean())
        expected.append(accs)
    expected = torch.tensor(expected)
    torch.testing.assert_close(out[:2], expected)
    torch.testing.assert_close(out[2], expected[0] - expected[1])
    assert out[0, 0] > 0.9 and out[2, 0] > out[2, 1]


def test_agreement_dataset():
    data = L.agreement_dataset()
    assert len(data["prompts"]) == len(data["labels"]) == len(data["subjects"]) == 320
    assert 0.4 < data["labels"].float().mean() < 0.6
    assert 0.3 < data["attractor_plural"].float().mean() < 0.7


def test_neuron_explanation_recovers_a_planted_neuron():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 40, (2000,), generator=g)
    acts = torch.randn(2000, 3, generator=g) * 0.1
    acts[:, 1] += 2.0 * ((tokens == 3) | (tokens == 7)).float()  # neuron 1 fires on tokens 3 and 7
    expl = L.token_list_explanations(tokens[:1000], acts[:1000], k=2)
    assert set(expl[1].tolist()) == {3, 7}
    score = L.explanation_score(L.simulate_token_list(tokens[1000:], expl), acts[1000:])
    assert score[1] > 0.95 and score[0].abs() < 0.2
    torch.testing.assert_close(L.explanation_score(acts[:, :1], acts[:, :1]), torch.ones(1))


def test_neuron_activations_shape(lm):
    rows = torch.randint(100, 1000, (2, 5))
    a = L.neuron_activations(lm, rows, layer=3)
    assert a.shape == (2, 5, lm.model.config.intermediate_size)


def test_calibration_closed_forms():
    conf = torch.tensor([0.15, 0.15, 0.85, 0.85, 1.0])
    correct = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0])
    # bins: [0.1,0.2): conf .15 acc .5 (2 items); [0.8,0.9): conf .85 acc 1 (2); last bin: conf 1, acc 0 (1)
    expected = 2 / 5 * 0.35 + 2 / 5 * 0.15 + 1 / 5 * 1.0
    assert abs(float(L.expected_calibration_error(conf, correct)) - expected) < 1e-6
    curve = L.reliability_curve(conf, correct)
    assert curve["count"].sum() == 5 and curve["count"][9] == 1
    # perfectly calibrated in expectation: ECE small with many samples
    g = torch.Generator().manual_seed(0)
    c = torch.rand(20000, generator=g)
    y = (torch.rand(20000, generator=g) < c).float()
    assert float(L.expected_calibration_error(c, y)) < 0.02
    torch.testing.assert_close(L.entropy(torch.zeros(4, 10)), torch.full((4,), math.log(10)))
    assert L.auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0


def test_question_set():
    qs = L.load_questions()
    assert len(qs) >= 100
    for q in qs:
        assert q["question"] and q["answer"] and len(q["distractors"]) == 3 and q["answer"] not in q["distractors"]
    texts, labels = L.load_sentiment()
    assert len(texts) == len(labels) == 128 and sum(labels) == 64


def test_prefixed_next_logits_equal_plain_forward_passes(lm):
    prefix = "Review: Great film.\nSentiment: positive\n\n"
    suffixes = ["Review: Awful food.\nSentiment:", "Review: A wonderful, warm and funny book.\nSentiment:"]
    got = L.prefixed_next_logits(lm, prefix, suffixes)
    for row, sfx in zip(got, suffixes):
        with torch.no_grad():
            full = lm.model(input_ids=torch.tensor([lm.encode(prefix) + lm.encode(sfx)])).logits[0, -1]
        torch.testing.assert_close(row, full, atol=1e-3, rtol=1e-4)


def test_neuron_activations_stop_early_but_match_a_full_pass(lm):
    from labkit.lm import hooks

    rows = torch.randint(100, 1000, (3, 7), generator=torch.Generator().manual_seed(0))
    with hooks.capture(lm, "mlp_post.4") as cache, torch.no_grad():
        lm.model(input_ids=rows)
    torch.testing.assert_close(L.neuron_activations(lm, rows, 4, batch_size=2), cache["mlp_post.4"])


def test_integrated_gradients_fixed_prefix_gets_zero(tiny_lm):
    ids = [1] + tiny_lm.encode("The capital of France is")
    phi, delta, gap = L.integrated_gradients(tiny_lm, ids, " Paris", n_steps=16, baseline=" the", fixed=1)
    assert phi[0] == 0
    assert abs(float(phi.sum()) - gap - delta) < 1e-4


# -- bad input ----------------------------------------------------------------------------------------


def test_bad_input(lm):
    with pytest.raises(ValueError, match="empty"):
        L.leave_one_out(lm, "", " Paris")
    with pytest.raises(ValueError, match="empty"):
        L.integrated_gradients(lm, "", " Paris")
    with pytest.raises(ValueError, match="context"):
        L.leave_one_out(lm, "hello " * (lm.max_length + 10), " Paris")
    with pytest.raises(ValueError, match="not one"):
        L.token_saliency(lm, "The capital of France is", " Paris and Rome")
    with pytest.raises(ValueError, match="vocabulary"):
        L.leave_one_out(lm, "Hello", 10**7)
    with pytest.raises(ValueError, match="out of range"):
        L.neuron_activations(lm, torch.zeros(1, 4, dtype=torch.long), layer=lm.n_layers)
    with pytest.raises(ValueError, match="out of range"):
        lm.last_token_states(["hi"], layers=[99])
    with pytest.raises(ValueError, match="segment 1 is empty"):
        L.segment_ids(lm, ["a", ""])
    with pytest.raises(ValueError, match="non-empty list"):
        L.segment_ids(lm, "just a string")
    with pytest.raises(ValueError, match="width"):
        L.probe_scores(torch.zeros(5, 3), torch.zeros(5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="labels"):
        L.probe_scores(torch.zeros(5, 3), torch.zeros(4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="confidences but"):
        L.expected_calibration_error(torch.rand(5), torch.ones(4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        L.expected_calibration_error(torch.tensor([1.5]), torch.ones(1))
    with pytest.raises(ValueError, match="no predictions"):
        L.expected_calibration_error(torch.tensor([]), torch.tensor([]))
    with pytest.raises(ValueError, match="at least one"):
        L.integrated_gradients(lm, "Hello there", " Paris", fixed=2)
    with pytest.raises(ValueError, match="empty"):
        lm.next_token_logits([])
    with pytest.raises(ValueError, match="non-empty"):
        L.prefixed_next_logits(lm, "Review: good.", ["x", ""])
    with pytest.raises(ValueError, match="context"):
        lm.next_token_logits(["hello " * (lm.max_length + 10)])
    with pytest.raises(ValueError, match="2\\^15"):
        L.shapley_exact(lambda b: b.sum(-1).float(), torch.arange(15), torch.arange(15), 0)


def test_default_baseline_converges_where_the_pad_token_does_not(lm):
    """On notebook 05's prompt (BOS held fixed, 64 steps) the pad token as IG baseline misses completeness by
    about 9%, the default " the" by about 1%: the default is the better-converging one, and a large gap warns."""
    ids = [lm.tokenizer.bos_token_id] + lm.encode("Anna grew up in Rome and Tom grew up in Oslo. Anna speaks fluent")
    _, delta, gap = L.integrated_gradients(lm, ids, " Italian", n_steps=64, fixed=1)
    assert abs(delta) < 0.02 * abs(gap)
    with pytest.warns(UserWarning, match="misses completeness"):
        _, delta_pad, gap_pad = L.integrated_gradients(lm, ids, " Italian", n_steps=64, fixed=1,
                                                       baseline=lm.tokenizer.pad_token_id)
    assert abs(delta_pad) > 0.05 * abs(gap_pad)


def test_entropy_closed_forms_and_nan():
    torch.testing.assert_close(L.entropy(torch.zeros(3, 4)), torch.full((3,), math.log(4)))
    masked = torch.tensor([0.0, 0.0, -float("inf")])  # a masked token has p = 0 and adds nothing
    assert float(L.entropy(masked)) == pytest.approx(math.log(2))
    assert float(L.entropy(torch.tensor([0.0, -float("inf")]))) == 0.0
    with pytest.raises(ValueError, match="NaN"):  # NaN logits used to give an entropy of 0.0
        L.entropy(torch.tensor([[1.0, float("nan")], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        L.entropy(torch.tensor([float("inf"), 0.0]))


def test_calibration_needs_bins_and_binary_correctness():
    conf, corr = torch.tensor([0.9, 0.2, 0.6]), torch.tensor([1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="n_bins must be an integer >= 1"):  # n_bins=0 used to fail obscurely
        L.expected_calibration_error(conf, corr, n_bins=0)
    with pytest.raises(TypeError, match="n_bins must be an integer"):
        L.reliability_curve(conf, corr, n_bins=2.5)
    with pytest.raises(ValueError, match="NaN"):
        L.expected_calibration_error(torch.tensor([float("nan"), 0.2, 0.6]), corr)
    with pytest.raises(ValueError, match="0 \\(wrong\\) and 1"):
        L.expected_calibration_error(conf, torch.tensor([1.0, 0.5, 0.0]))
    # one bin: ECE = |accuracy − mean confidence|
    assert float(L.expected_calibration_error(conf, corr, n_bins=1)) == pytest.approx(abs(2 / 3 - (0.9 + 0.2 + 0.6) / 3))


def test_attribution_scores_must_be_finite():
    ids, seg = torch.tensor([1, 2, 3]), torch.tensor([0, 1, 1])
    nan_fn = lambda b: torch.full((len(b),), float("nan"))  # noqa: E731
    for call in (lambda: L.leave_one_out_scores(nan_fn, ids, 0), lambda: L.segment_leave_one_out(nan_fn, ids, seg, 0),
                 lambda: L.shapley_exact(nan_fn, ids, seg, 0)):
        with pytest.raises(ValueError, match="NaN or inf scores"):
            call()


def test_explanation_score_of_a_constant_is_undefined():
    real = torch.tensor([[1.0, 2.0], [3.0, 1.0], [0.0, 5.0]])
    score = L.explanation_score(torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]]), real)
    assert torch.isnan(score[0]) and score[1] == pytest.approx(float(torch.corrcoef(torch.stack([torch.tensor([0.0, 1, 0]), real[:, 1]]))[0, 1]))
