"""The "implement it yourself" exercises of notebooks 12-15 (issue 17): each check accepts a correct solution
written differently from the notebook's, so it tests the result, not the code."""

from collections import defaultdict

import torch

from labkit import check, constitutional, datasheet, pluralistic


def test_dpo_train_step_accepts_a_backward_and_optimizer_solution(capsys):
    """A solution with .backward() and torch.optim.SGD, per-pair losses averaged by hand, log-probs by a loop."""

    def dpo_train_step(params, logits_fn, input_ids, response_mask, chosen, rejected, ref_logps, beta, lr):
        theta = torch.nn.Parameter(params.detach().clone())
        opt = torch.optim.SGD([theta], lr=lr)
        logits = logits_fn(theta)
        logps = []
        for n in range(len(input_ids)):
            total = 0.0
            for t in range(1, input_ids.shape[1]):
                if response_mask[n, t]:
                    total = total + torch.log_softmax(logits[n, t - 1].double(), -1)[input_ids[n, t]]
            logps.append(total)
        logps = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in logps])
        losses = [-torch.nn.functional.logsigmoid(beta * ((logps[w] - ref_logps[w]) - (logps[l] - ref_logps[l])))
                  for w, l in zip(chosen.tolist(), rejected.tolist())]
        loss = torch.stack(losses).sum() / len(losses)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return theta.detach().to(params.dtype)

    assert check.dpo_train_step(dpo_train_step) is dpo_train_step
    assert "✓ dpo_train_step" in capsys.readouterr().out


def test_em_groups_accepts_a_per_annotator_loop_solution(capsys):
    """A solution that loops over annotators for the E-step and writes the responsibilities by hand."""

    def em_groups(features, pairs, labels, annotator, init, n_iter, history=None):
        resp = init.clone()
        A, K = resp.shape
        rows = defaultdict(list)
        for z, a in enumerate(annotator.tolist()):
            rows[a].append(z)
        for _ in range(n_iter):
            eta = resp.sum(0) / A
            weights = []
            for u in range(K):
                weights.append(pluralistic.fit_bt(features, pairs, labels, sample_weight=resp[annotator][:, u]))
            W = torch.stack(weights)
            per = pluralistic.pair_loglik(W, features, pairs, labels)
            new = torch.empty(A, K, dtype=torch.float64)
            total = 0.0
            for a in range(A):
                ll = per[rows[a]].sum(0) + eta.log()
                total += float(torch.logsumexp(ll, 0))
                new[a] = torch.exp(ll - ll.max()) / torch.exp(ll - ll.max()).sum()
            if history is not None:
                history.append(total)
            resp = new
        return W

    assert check.em_groups(em_groups) is em_groups
    assert "✓ em_groups" in capsys.readouterr().out
    # and the history it records rises, like labkit's
    d = pluralistic.simulate_preferences(n_responses=20, dim=4, group_sizes=(12, 6), comparisons_per_annotator=10, seed=3)
    init = torch.full((18, 2), 0.5, dtype=torch.float64)
    init[:, 0] += torch.linspace(-0.3, 0.3, 18, dtype=torch.float64)
    init[:, 1] = 1 - init[:, 0]
    mine, ref = [], []
    em_groups(d["features"], d["pairs"], d["labels"], d["annotator"], init, 5, mine)
    check.em_groups.reference(d["features"], d["pairs"], d["labels"], d["annotator"], init, 5, ref)
    torch.testing.assert_close(torch.tensor(mine), torch.tensor(ref), rtol=1e-4, atol=1e-3)
    assert all(b >= a - 1e-6 for a, b in zip(mine, mine[1:]))


def test_em_rewards_from_the_true_groups_gives_the_per_group_fits():
    """Ground truth: started from one-hot true groups, the first M-step is each group's own Bradley-Terry fit."""
    d = pluralistic.simulate_preferences(n_responses=20, dim=4, group_sizes=(10, 5), comparisons_per_annotator=20, seed=4)
    init = torch.nn.functional.one_hot(d["groups"], 2).double()
    em = pluralistic.em_rewards(d["features"], d["pairs"], d["labels"], d["annotator"], k=2, n_iter=1, init=init)
    of = d["groups"][d["annotator"]]
    for u in range(2):
        own = pluralistic.fit_bt(d["features"][:, :], d["pairs"][of == u], d["labels"][of == u])
        torch.testing.assert_close(em.weights[u], own, rtol=1e-3, atol=1e-4)


def test_critique_revision_accepts_a_differently_written_loop(capsys):
    """A solution with explicit loops and a helper for one generate step."""

    def critique_revision(lm, prompts, principles, n_rounds=1, max_new_tokens=32, critique_tokens=24, initial=None):
        def step(requests, budget):
            return lm.generate(list(requests), max_new_tokens=budget, batch_size=len(prompts))

        responses = list(initial) if initial is not None else step(prompts, max_new_tokens)
        responses = [constitutional.clean_reply(r) for r in responses]
        result = {"initial": list(responses), "rounds": []}
        r = 0
        while r < n_rounds:
            critiques = []
            for text in step((build(q, a, p) for q, a, p in zip(prompts, responses, principles)), critique_tokens):
                critiques.append(text.strip() if text.strip() else "(no critique)")
            revised = step((build(prompts[i], responses[i], principles[i], critiques[i]) for i in range(len(prompts))),
                           max_new_tokens)
            responses = [constitutional.clean_reply(x) for x in revised]
            result["rounds"].append({"revision": responses, "critique": critiques})
            r += 1
        return result

    def build(q, a, p, c=None):
        head = f"Here is a conversation.\nUser: {q.strip()}\nAssistant: {a.strip()}\n"
        return head + (p["critique"] if c is None else f"Critique: {c.strip()}\n{p['revision']}")

    assert check.critique_revision(critique_revision) is critique_revision
    assert "✓ critique_revision" in capsys.readouterr().out


def test_clean_reply_removes_labels_and_whitespace():
    assert constitutional.clean_reply("  Rewritten reply: Be kind. ") == "Be kind."
    assert constitutional.clean_reply("Here is the revised response: ok") == "ok"
    assert constitutional.clean_reply("   ") == "(no reply)"
    assert constitutional.clean_reply("Reply: x") == "x"


def test_label_gaps_accepts_a_pandas_style_solution(capsys):
    """A solution that builds the full group × label table first, then filters it."""

    def label_gaps(records, group_field, label_field, threshold=0.2):
        rows = [("(missing)" if datasheet.is_missing(r.get(group_field)) else str(r.get(group_field)), str(r[label_field]))
                for r in records if not datasheet.is_missing(r.get(label_field))]
        labels = sorted({k for _, k in rows})
        groups = sorted({g for g, _ in rows})
        table = {(g, k): sum(1 for gg, kk in rows if gg == g and kk == k) for g in groups for k in labels}
        out = []
        for g in groups:
            n_g = sum(table[g, k] for k in labels)
            for k in labels:
                base = sum(table[h, k] for h in groups) / len(rows)
                if abs(table[g, k] / n_g - base) >= threshold:
                    out.append((g, k, table[g, k] / n_g, base))
        out.sort(key=lambda t: (-abs(t[2] - t[3]), t[0], t[1]))
        return out

    assert check.label_gaps(label_gaps) is label_gaps
    assert "✓ label_gaps" in capsys.readouterr().out


def test_label_gaps_against_hand_counts():
    records = ([{"g": "a", "y": "x"}] * 3 + [{"g": "a", "y": "z"}] + [{"g": "b", "y": "z"}] * 4
               + [{"g": None, "y": "x"}] + [{"g": "b", "y": ""}])
    # labelled: 9; x: 4/9, z: 5/9; a: x 3/4; b: x 0; (missing): x 1
    got = datasheet.label_gaps(records, "g", "y", 0.3)
    assert set(got) == {("(missing)", "x", 1.0, 4 / 9), ("(missing)", "z", 0.0, 5 / 9), ("b", "x", 0.0, 4 / 9),
                        ("b", "z", 1.0, 5 / 9), ("a", "x", 0.75, 4 / 9), ("a", "z", 0.25, 5 / 9)}
    assert [g for g, *_ in got] == ["(missing)", "(missing)", "b", "b", "a", "a"]
    assert datasheet.label_gaps(records, "g", "y", 0.4) == [t for t in got if t[0] != "a"]
    assert datasheet.label_gaps(records, "g", "y", 1.0) == []
