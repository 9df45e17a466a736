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
