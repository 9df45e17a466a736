"""labkit.constitutional against ground truth (hand computations, planted groups, direct forward passes); bad input."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from labkit import constitutional as ca


def test_shipped_data_is_consistent():
    c = ca.load_constitution()
    ids = {p["id"] for p in ca.validate_constitution(c)}
    data = ca.load_prompts()
    assert len(data["harmful"]) + len(data["benign"]) >= 30
    assert all(it["principle"] in ids for it in data["harmful"] + data["benign"])
    pairs = ca.load_judge_pairs()
    assert {x["kind"] for x in pairs["labelled"]} == {"harmless", "helpful"}
    assert all(len(x["long"]) > len(x["short"]) and x["short"] in x["long"] for x in pairs["length"])
    pub = ca.load_public_statements()
    assert math.isclose(sum(pub["shares"]), 1.0)
    assert all(len(s["agree"]) == len(pub["groups"]) for s in pub["statements"])


def test_empty_or_broken_constitutions_are_refused():
    with pytest.raises(ValueError, match="empty"):
        ca.validate_constitution({"principles": []})
    with pytest.raises(ValueError, match="empty"):
        ca.validate_constitution([])
    with pytest.raises(ValueError, match="lacks"):
        ca.validate_constitution([{"id": "x", "text": "t", "critique": "", "revision": "r"}])
    with pytest.raises(ValueError, match="empty"):
        ca.make_constitution(["  ", ""])


def test_build_prompt_format():
    p = {"id": "k", "text": "Be kind.", "critique": "CRIT?", "revision": "REV!"}
    assert ca.build_prompt(" Q ", "A\n", p) == "Here is a conversation.\nUser: Q\nAssistant: A\nCRIT?"
    assert ca.build_prompt("Q", "A", p, " c ") == "Here is a conversation.\nUser: Q\nAssistant: A\nCritique: c\nREV!"
    with pytest.raises(ValueError, match="principle"):
        ca.build_prompt("Q", "A", {"id": "k"})


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 30), rng.normal(1.0, 1.0, 3000)
    m, lo, hi = ca.bootstrap_ci(small)
    assert lo < m < hi and m == pytest.approx(small.mean())
    # the percentile interval is close to the normal one, mean ± 1.96 s/√n
    half = 1.96 * large.std() / math.sqrt(len(large))
    _, lo2, hi2 = ca.bootstrap_ci(large, n_boot=2000)
    assert (hi2 - lo2) / 2 == pytest.approx(half, rel=0.1)
    with pytest.raises(ValueError):
        ca.bootstrap_ci([1.0])


def test_bootstrap_ci_refuses_too_few_resamples_and_nan():
    """n_boot = 0 used to fail inside numpy's quantile with an unrelated message; NaN values gave a NaN interval."""
    with pytest.raises(ValueError, match=r"n_boot .* must be an integer >= 100"):
        ca.bootstrap_ci([0.1, 0.2, 0.3], n_boot=0)
    with pytest.raises(TypeError, match="n_boot"):
        ca.bootstrap_ci([0.1, 0.2, 0.3], n_boot=1000.0)
    with pytest.raises(ValueError, match="NaN"):
        ca.bootstrap_ci([0.1, float("nan"), 0.3])


def test_judge_report_by_hand():
    r = ca.judge_report([0.9, 0.6], [0.2, 0.7])  # second pair: judge always says "first"
    assert r["agreement_better_first"] == 1.0 and r["agreement_better_second"] == 0.5
    assert r["position_bias"] == pytest.approx((0.9 + 0.6 + 0.2 + 0.7) / 4 - 0.5)
    assert r["consistency"] == 0.5
    assert r["debiased"].tolist() == pytest.approx([0.85, 0.45])
    lb = ca.length_bias([0.8, 0.6], [0.4, 0.6])
    assert lb["p_longer"] == pytest.approx((0.7 + 0.5) / 2)


@pytest.fixture(scope="module")
def sim():
    return ca.simulate_votes(n_participants=300, seed=1)


def test_simulated_votes_follow_the_planted_rates(sim):
    v, g, agree = sim["votes"], sim["groups"], sim["agree"]
    assert set(v.unique().tolist()) <= {-1, 0, 1}
    assert (v == 0).double().mean().item() == pytest.approx(0.1, abs=0.02)
    for gid in range(3):
        rows = v[g == gid]
        rate = (rows == 1).double().sum(0) / (rows != 0).double().sum(0)
        assert (rate - agree[gid]).abs().max() < 0.2


def test_opinion_groups_recover_the_planted_groups(sim):
    og = ca.opinion_groups(sim["votes"], k=3, seed=0)
    # the fairness-first group overlaps the others on many statements, so recovery is good but not perfect
    assert adjusted_rand_score(sim["groups"], og["labels"]) > 0.6


def test_group_consensus_by_hand_and_selects_planted_consensus(sim):
    votes = torch.tensor([[1, -1], [1, 0], [-1, 1], [0, 1]])
    groups = torch.tensor([0, 0, 1, 1])
    c = ca.group_consensus(votes, groups)
    assert c.tolist() == pytest.approx([(3 / 4) * (1 / 4), (1 / 4) * (3 / 4)])
    cons = ca.group_consensus(sim["votes"], sim["groups"])
    planted = sim["agree"].min(0).values >= 0.7
    top = torch.argsort(cons, descending=True)[: int(planted.sum())]
    assert planted[top].double().mean() >= 0.9


def test_vote_matrices_with_unknown_values_are_refused():
    with pytest.raises(ValueError, match="missing"):
        ca.group_consensus(torch.tensor([[1.0, float("nan")]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="unknown vote values"):
        ca.group_consensus(torch.tensor([[1, 2], [0, -1]]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="one group id"):
        ca.group_consensus(torch.tensor([[1, 0]]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="between 1"):
        ca.opinion_groups(torch.zeros(3, 2), k=5)


def test_deduplicate_keeps_the_best_of_each_near_duplicate_group():
    E = torch.tensor([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0]])
    assert ca.deduplicate(E, [0.2, 0.9, 0.5], threshold=0.9) == [1, 2]
    assert ca.deduplicate(E, [0.2, 0.9, 0.5], threshold=1.0) == [1, 2, 0]
    # brute force: the greedy pass keeps exactly the items with no better-scored kept item within the threshold
    g = torch.Generator().manual_seed(0)
    E = torch.randn(40, 3, generator=g)
    scores = torch.rand(40, generator=g)
    kept = ca.deduplicate(E, scores, threshold=0.8)
    cos = torch.nn.functional.cosine_similarity(E[:, None], E[None], dim=-1)
    for i in range(40):
        blockers = [j for j in kept if scores[j] > scores[i] and cos[i, j] >= 0.8]
        assert (i in kept) == (not blockers)
    with pytest.raises(ValueError, match="NaN"):
        ca.deduplicate(torch.tensor([[float("nan"), 1.0], [1.0, 0.0]]), [1.0, 0.5])


@pytest.mark.slow
def test_judges_match_direct_next_token_probabilities(lm):
    q = ["How do I keep my passwords safe?"]
    r = ["Use a password manager."]
    got = ca.harmlessness_score(lm, q, r)
    text = lm.chat_prompt(f"User: {q[0]}\nAssistant: {r[0]}\n\n{ca.HARMLESS_Q}")
    probs = lm.next_token_probs(text)[0]
    yes, no = probs[lm.token_id("Yes")], probs[lm.token_id("No")]
    assert got.item() == pytest.approx((yes / (yes + no)).item(), abs=1e-4)
    ab = ca.judge_ab(lm, q, r, ["Passwords are strings."], "more helpful")
    assert 0 <= ab.item() <= 1
    with pytest.raises(ValueError, match="same, non-zero length"):
        ca.judge_ab(lm, q, r, [], "more helpful")


@pytest.mark.slow
def test_critique_revision_is_batched_and_shaped(lm):
    c = ca.load_constitution()["principles"]
    prompts = ["How can I study better?", "Write a mean message to my classmate."]
    out = ca.critique_revision(lm, prompts, [c[-1], c[3]], n_rounds=1, max_new_tokens=6, critique_tokens=4)
    assert len(out["initial"]) == 2 and len(out["rounds"]) == 1
    assert out["rounds"][0]["principle"] == [c[-1]["id"], c[3]["id"]]
    # batching does not change greedy output: the first prompt alone gives the same initial reply
    alone = ca.critique_revision(lm, prompts[:1], [c[-1]], n_rounds=1, max_new_tokens=6, critique_tokens=4)
    assert alone["initial"][0] == out["initial"][0]
    with pytest.raises(ValueError, match="empty"):
        ca.critique_revision(lm, prompts, [], n_rounds=1)
    with pytest.raises(ValueError, match="one per prompt"):
        ca.critique_revision(lm, prompts, [c[0]], n_rounds=1)


# ---------------------------------------------------------------------------------------------------------------
# The two training stages: AI preference pairs, the SL data filter, the judge-independent evaluator


def test_eval_set_is_consistent_and_independent_of_the_judge():
    """The shipped file is what the seeded script writes, has both kinds, labels and splits, and shares no run of six
    words with the judge's data or the loop's prompts."""
    from tools import build_cai_eval

    ev = ca.load_eval_set()
    assert ev == json_roundtrip(build_cai_eval.build())
    assert build_cai_eval.overlap(ev) == []
    for kind in ("harmless", "helpful"):
        for split in ("train", "test"):
            items = [x for x in ev["labelled"] if x["kind"] == kind and x["split"] == split]
            assert {x["label"] for x in items} == {0, 1}
        train_prompts = {x["prompt"] for x in ev["labelled"] if x["kind"] == kind and x["split"] == "train"}
        test_prompts = {x["prompt"] for x in ev["labelled"] if x["kind"] == kind and x["split"] == "test"}
        assert train_prompts and test_prompts and not train_prompts & test_prompts  # held out by request
    loop = {p["prompt"] for g in ca.load_prompts().values() for p in g}
    labelled = {x["prompt"] for x in ev["labelled"]}
    evalp = set(ev["eval_prompts"]["harmful"] + ev["eval_prompts"]["benign"])
    assert not (evalp & loop) and not (evalp & labelled) and not (labelled & loop)


def json_roundtrip(x):
    import json

    return json.loads(json.dumps(x))


def test_the_overlap_check_catches_a_copied_sentence():
    from tools import build_cai_eval

    copied = ca.load_judge_pairs()["labelled"][0]["better"]
    assert build_cai_eval.overlap({"labelled": [{"response": copied}]})


def test_ai_preference_pairs_average_the_orders_by_hand():
    # pair 0: X preferred in both orders; pair 1: a pure position bias (says A both times) -> p = 1/2, dropped;
    # pair 2: Y preferred; pair 3: a weak preference for X inside the margin
    p_ab = torch.tensor([0.9, 0.8, 0.3, 0.53])
    p_ba = torch.tensor([0.2, 0.8, 0.6, 0.49])
    out = ca.ai_preference_pairs(p_ab, p_ba, margin=0.05)
    assert torch.allclose(out["p"], torch.tensor([0.85, 0.5, 0.35, 0.52], dtype=torch.float64))
    assert out["keep"].tolist() == [0, 2]
    assert out["first_chosen"].tolist() == [True, False]
    assert ca.ai_preference_pairs(p_ab, p_ba)["keep"].tolist() == [0, 2, 3]  # margin 0 keeps every non-tie
    # the swap symmetry: exchanging the replies (and so the two orders) flips every verdict
    swapped = ca.ai_preference_pairs(p_ba, p_ab)
    assert torch.allclose(swapped["p"], 1 - ca.ai_preference_pairs(p_ab, p_ba)["p"])


def test_ai_preference_pairs_refuse_bad_input():
    with pytest.raises(ValueError, match="both orders of the same pairs"):
        ca.ai_preference_pairs([0.5, 0.6], [0.5])
    with pytest.raises(ValueError, match="margin"):
        ca.ai_preference_pairs([0.5], [0.5], margin=0.5)
    with pytest.raises(ValueError, match="probabilities"):
        ca.ai_preference_pairs([1.5], [0.5])


def test_cut_echo_cuts_at_the_first_echoed_line():
    assert ca.cut_echo("Be kind to her.\nRewrite the assistant's reply\nmore") == "Be kind to her."
    assert ca.cut_echo("Line one.\nLine two.\nUser: How do I ...") == "Line one.\nLine two."
    assert ca.cut_echo("User: How can I cheat?\nCritique: none") == "(no reply)"
    assert ca.cut_echo("  Rewritten reply: Ask your teacher for help.  ") == "Ask your teacher for help."
    assert ca.cut_echo("Nothing to cut here.") == "Nothing to cut here."
    assert ca.cut_echo("A.\nSTOP here", markers=["STOP"]) == "A."
    with pytest.raises(TypeError, match="text must be a string"):
        ca.cut_echo(None)


class _BagOfWords:
    """A deterministic stand-in for the sentence embedder: hashed word counts, unit norm."""

    def encode(self, texts, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False):
        out = torch.zeros(len(texts), 64)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, sum(map(ord, w)) % 64] += 1
        return torch.nn.functional.normalize(out, dim=-1)


def test_embedding_features_are_reply_and_product():
    emb = _BagOfWords()
    X = ca.embedding_features(emb, ["a b", "c"], ["a b", "d e"])
    e = emb.encode(["a b", "c", "a b", "d e"])
    assert X.shape == (2, 128)
    assert torch.allclose(X[:, :64], e[2:])
    assert torch.allclose(X[:, 64:], e[:2] * e[2:])
    assert torch.allclose(X[0, 64:].sum(), torch.tensor(1.0))  # the product sums to the cosine: same text -> 1


def test_fit_scorer_separates_a_planted_direction_and_generalises():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, generator=g)
    X = torch.randn(200, 8, generator=g)
    y = (X @ w > 0).long()
    scorer = ca.fit_scorer(X[:150], y[:150], C=10.0)
    p = ca.scorer_probability(scorer, X[150:])
    assert p.shape == (50,) and p.dtype == torch.float64 and ((p >= 0) & (p <= 1)).all()
    assert ((p > 0.5).long() == y[150:]).double().mean() > 0.9
    # and the probability is the logistic of the fitted linear score
    z = torch.as_tensor(scorer.decision_function(X[150:].double().numpy()))
    assert torch.allclose(p, torch.sigmoid(z), atol=1e-10)


def test_scorer_refuses_bad_input():
    X = torch.randn(6, 3)
    with pytest.raises(ValueError, match="one class only"):
        ca.fit_scorer(X, [1] * 6)
    with pytest.raises(ValueError, match="0 \\(bad reply\\) or 1"):
        ca.fit_scorer(X, [0, 1, 2, 0, 1, 0])
    with pytest.raises(ValueError, match="one 0/1 label per row"):
        ca.fit_scorer(X, [0, 1])
    s = ca.fit_scorer(X, [0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match="columns"):
        ca.scorer_probability(s, torch.randn(2, 4))
    with pytest.raises(TypeError, match="fitted scorer"):
        ca.scorer_probability("probe", X)
    with pytest.raises(TypeError, match="embedder must be"):
        ca.embedding_features("all-MiniLM", ["q"], ["a"])
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        ca.embedding_features(_BagOfWords(), ["q", "r"], ["a"])
