"""labkit.values against ground truth: planted effects, brute force, closed forms, known utilities."""

import itertools

import pytest
import torch

from labkit import values


def test_likert_prompts_cross_everything_in_order():
    prompts = values.likert_prompts(["S1.", "S2."], ["Q: {statement}\n{options}", "{statement}? {options}"], [None, "I am P."])
    assert len(prompts) == 8
    assert prompts[0].startswith("Q: S1.") and prompts[1].startswith("I am P. Q: S1.") and prompts[2].startswith("S1.?")
    assert all(p.endswith("D) strongly agree") for p in prompts)
    rev = values.likert_prompts(["S1."], ["{statement} {options}", "{statement} {options} x"], [None], reverse=[False, True])
    assert rev[0].endswith("A) strongly disagree B) disagree C) agree D) strongly agree")
    assert rev[1].endswith("A) strongly agree B) agree C) disagree D) strongly disagree x")


def test_scale_order_and_calibration():
    lp = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]))
    flipped = values.to_scale_order(lp, torch.tensor([False, True]))
    assert torch.allclose(flipped[0], lp[0]) and torch.allclose(flipped[1], lp[0])
    # the same answer shown in the reversed order gets the same stance
    assert torch.allclose(values.stance_scores(flipped)[0], values.stance_scores(flipped)[1])
    # a pure letter preference (identical to the content-free distribution) calibrates to uniform
    bias = torch.log_softmax(torch.tensor([3.0, 0.0, -1.0, 0.5]), -1)
    content = torch.log_softmax(torch.tensor([0.0, 0.0, 1.0, 2.0]), -1)
    cal = values.calibrate(torch.stack([bias, bias + content]), bias)
    assert torch.allclose(cal[0].exp(), torch.full((4,), 0.25), atol=1e-6)
    assert torch.allclose(cal[1], content, atol=1e-5)  # the content survives, the letter bias does not
    # per-format estimates broadcast: [P, V, 4] against [V, 4]
    lp3 = torch.randn(5, 3, 4)
    cf = torch.randn(3, 4)
    assert torch.allclose(values.calibrate(lp3, cf)[:, 1], values.calibrate(lp3[:, 1], cf[1]), atol=1e-6)
    with pytest.raises(ValueError, match="options"):
        values.calibrate(lp3, torch.randn(3, 3))
    with pytest.raises(ValueError, match="broadcast"):
        values.calibrate(lp3, torch.randn(2, 4))
    assert torch.allclose(values.letter_shares(torch.zeros(3, 4)), torch.full((4,), 0.25))


@pytest.mark.parametrize(
    "props, variants, personas, message",
    [
        (["S."], ["{statement} {options}"], ["  "], "personas"),
        (["", "S."], ["{statement} {options}"], [None], "propositions"),
        (["S.", "S."], ["{statement} {options}"], [None], "duplicates"),
        (["S."], ["no slots"], [None], "needs"),
        (["S."], ["{statement} {options}"], [], "no personas"),
        (["S."], ["{statement} {options}"], ["I am P.", "I am P."], "duplicates"),
        (["S."], ["{statement} {options}"], [None], None),
        (["S."], ["{statement} {options}", "{options} {statement}"], [None], "one bool per prompt variant"),
    ],
)
def test_likert_prompts_refuse_bad_input(props, variants, personas, message):
    if message is None:  # the valid baseline of the table
        assert len(values.likert_prompts(props, variants, personas)) == 1
        return
    reverse = [True] if "bool" in message else False
    with pytest.raises(ValueError, match=message):
        values.likert_prompts(props, variants, personas, reverse=reverse)
    with pytest.raises(TypeError):
        values.likert_prompts("S.", ["{statement} {options}"], [None])


def test_stance_is_the_expected_score():
    lp = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]])) - 2.0  # unnormalised is fine
    expected = 0.1 * -1 + 0.2 * -1 / 3 + 0.3 * 1 / 3 + 0.4 * 1
    assert float(values.stance_scores(lp)) == pytest.approx(expected, abs=1e-6)


def test_open_stance_reads_simple_answers():
    assert values.open_stance("I agree, because libraries help everyone.") == 1
    assert values.open_stance("I disagree: it costs too much.") == -1
    assert values.open_stance("I don't agree with that.") == -1
    assert values.open_stance("Libraries are buildings.") == 0
    assert values.open_stance("I'm not sure I agree with that.") == 0  # a hedge is unclear


def test_variance_decomposition_recovers_planted_effects():
    g = torch.Generator().manual_seed(0)
    P, V, K = 20, 10, 3
    a = torch.randn(P, generator=g, dtype=torch.float64)
    b = 0.5 * torch.randn(V, generator=g, dtype=torch.float64)
    c = torch.tensor([0.0, 0.3, -0.3], dtype=torch.float64)
    y = a[:, None, None] + b[None, :, None] + c[None, None, :]
    shares = values.variance_decomposition(y)
    total = ((y - y.mean()) ** 2).sum()
    assert shares["proposition"] == pytest.approx(float(V * K * ((a - a.mean()) ** 2).sum() / total), abs=1e-9)
    assert shares["persona"] == pytest.approx(float(P * V * ((c - c.mean()) ** 2).sum() / total), abs=1e-9)
    assert abs(shares["interactions"]) < 1e-9  # purely additive: no interaction
    with pytest.raises(ValueError, match="identical"):
        values.variance_decomposition(torch.ones(2, 2, 2))
    with pytest.raises(ValueError):
        values.variance_decomposition(torch.ones(4, 4))


def test_persona_test_is_calibrated_under_the_null_and_powerful_with_an_effect():
    g = torch.Generator().manual_seed(1)
    ps = [values.persona_permutation_test(torch.randn(5, 4, 3, generator=g), n_permutations=300, seed=i)["p_value"] for i in range(40)]
    assert 0.3 < sum(ps) / len(ps) < 0.7
    y = torch.randn(10, 5, 3, generator=g) + torch.tensor([0.0, 0.5, -0.5])
    assert values.persona_permutation_test(y, n_permutations=500)["p_value"] < 0.01
    with pytest.raises(ValueError, match="two personas"):
        values.persona_permutation_test(torch.randn(3, 3, 1))


def test_bradley_terry_maximises_the_likelihood_and_recovers_utilities():
    g = torch.Generator().manual_seed(2)
    u_true = torch.randn(6, generator=g, dtype=torch.float64)
    u_true -= u_true.mean()
    wins = values.bradley_terry_probs(u_true) * 1000
    wins.fill_diagonal_(0)
    u = values.fit_bradley_terry(wins, pseudo_count=0.0)
    assert torch.allclose(u, u_true, atol=1e-6)
    # first-order optimality of the penalised likelihood with pseudo-counts
    W = wins / 1000 + 0.5 * (1 - torch.eye(6, dtype=torch.float64))
    u = values.fit_bradley_terry(wins / 1000)
    P = values.bradley_terry_probs(u)
    grad = (W * (1 - P)).sum(1) - (W.T * P).sum(1)
    assert grad.abs().max() < 1e-8 and abs(float(u.sum())) < 1e-9


def test_bradley_terry_refuses_bad_input():
    with pytest.raises(ValueError, match="square"):
        values.fit_bradley_terry(torch.ones(2, 3))
    with pytest.raises(ValueError, match="non-negative"):
        values.fit_bradley_terry(-torch.ones(3, 3))
    with pytest.raises(ValueError, match="never wins"):
        values.fit_bradley_terry(torch.tensor([[0.0, 0.0], [2.0, 0.0]]), pseudo_count=0)


def _brute_cycles(P):
    n = P.shape[0]
    beats = lambda i, j: bool(P[i, j] > 0.5)  # noqa: E731
    return sum(
        1 for i, j, k in itertools.combinations(range(n), 3)
        if (beats(i, j) and beats(j, k) and beats(k, i)) or (beats(j, i) and beats(k, j) and beats(i, k))
    )


def test_cyclic_triads_closed_form_equals_brute_force():
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        n = 7
        R = torch.rand(n, n, generator=g, dtype=torch.float64)
        P = torch.triu(R, 1) + torch.tril(1 - R.T, -1)
        P.fill_diagonal_(0.5)
        assert values.cyclic_triads(P) == _brute_cycles(P)
    assert values.cyclic_triads(values.bradley_terry_probs(torch.arange(5.0))) == 0  # utilities are transitive


def test_preference_matrix_averages_both_orders():
    prompts, pairs = values.pairwise_prompts(["x", "y", "z"], "A) {a} B) {b}")
    assert len(prompts) == 6 and prompts[0] == "A) x B) y"
    p_first = torch.tensor([0.9 if i < j else 0.3 for i, j in pairs])
    P = values.preference_matrix(p_first, pairs, 3)
    assert torch.allclose(P + P.T, torch.ones(3, 3, dtype=torch.float64))
    assert float(P[0, 1]) == pytest.approx((0.9 + (1 - 0.3)) / 2)
    with pytest.raises(ValueError, match="duplicates"):
        values.pairwise_prompts(["x", "x"], "{a} {b}")
    with pytest.raises(ValueError, match="non-empty"):
        values.pairwise_prompts(["x", ""], "{a} {b}")


def test_cluster_texts_finds_planted_clusters():
    g = torch.Generator().manual_seed(4)
    centres = torch.randn(3, 16, generator=g) * 5
    E = torch.cat([c + 0.1 * torch.randn(10, 16, generator=g) for c in centres])
    labels, reps = values.cluster_texts(E, 3)
    for c in range(3):
        assert len(set(labels[c * 10:(c + 1) * 10])) == 1
    assert len(reps) == 3


def test_likert_logprobs_match_the_next_token_distribution(lm):
    qs = values.likert_prompts(["Governments should fund public libraries.", "Zoos should be closed."],
                               ["Statement: {statement}\n{options}", "{statement} Agree?\n{options}"], [None, "I am a nurse."])
    lp = values.likert_logprobs(lm, qs)
    assert lp.shape == (8, 4) and torch.allclose(lp.exp().sum(-1), torch.ones(8), atol=1e-5)
    # ground truth: the full next-token distribution of each chat prompt, one at a time (sorting + batching change nothing)
    ids = [lm.token_id(L) for L in "ABCD"]
    for i in (0, 5):
        full = torch.log_softmax(lm.next_token_logits(lm.chat_prompt(qs[i], system=values.SURVEY_SYSTEM))[0], -1)[ids]
        assert torch.allclose(lp[i], torch.log_softmax(full, -1), atol=1e-4)
    plain = values.likert_logprobs(lm, qs[:1], chat=False, normalize=False)
    ids = [lm.token_id(" " + L) for L in "ABCD"]
    assert torch.allclose(plain[0], torch.log_softmax(lm.next_token_logits(qs[0] + "\nAnswer:")[0], -1)[ids], atol=1e-4)


def test_choice_scoring_refuses_bad_input(lm):
    with pytest.raises(ValueError, match="duplicates"):
        values.choice_logprobs(lm, ["Pick one."], ["A", "A"])
    with pytest.raises(ValueError, match="non-empty"):
        values.choice_logprobs(lm, ["Pick one.", "  "], ["A", "B"])
