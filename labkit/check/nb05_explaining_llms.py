"""Checks for the exercises of notebook 05 · Explaining language-model behaviour."""

from __future__ import annotations

from typing import Callable

import torch

from ._machinery import Case, Exercise, course_model


__all__ = ["leave_one_out", "probe_scores", "probe_selectivity", "ece"]


# -- leave-one-token-out attribution --------------------------------------------------------------


def _loo_reference(score_fn, ids, baseline_id):
    from labkit.llm_explain import leave_one_out_scores

    return leave_one_out_scores(score_fn, ids, baseline_id)


class _Linear:
    """A toy score: Σ_t w[id_t] (+ an interaction between two ids), recording how it was called."""

    def __init__(self, seed: int, interaction: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(50, generator=g)
        self.interaction = interaction

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dim() != 2:
            raise ValueError("score_fn takes a batch [n, seq] of id rows")
        s = self.w[batch].sum(-1)
        if self.interaction:
            s = s + 2.0 * ((batch == 7).any(-1) & (batch == 9).any(-1)).float()
        return s

    def __deepcopy__(self, memo):
        return self


def _loo_cases() -> list[Case]:
    return [
        Case("a linear score over 5 tokens, baseline id 0", (_Linear(0), torch.tensor([3, 7, 9, 12, 5]), 0)),
        Case("a score with an interaction between ids 7 and 9", (_Linear(1, True), torch.tensor([7, 1, 9, 4]), 0)),
        Case("a single token", (_Linear(2), torch.tensor([11]), 3)),
        Case("a token equal to the baseline gets attribution 0", (_Linear(3), torch.tensor([4, 2, 4]), 4)),
    ]


def _loo_mistakes() -> dict[str, Callable]:
    def flipped(score_fn, ids, baseline_id):
        return -_loo_reference(score_fn, ids, baseline_id)

    def deleted(score_fn, ids, baseline_id):
        full = score_fn(ids[None])[0]
        out = []
        for i in range(len(ids)):
            rest = torch.cat([ids[:i], ids[i + 1 :]])
            out.append(full - (score_fn(rest[None])[0] if len(rest) else torch.tensor(0.0)))
        return torch.stack(out)

    def only_ablated(score_fn, ids, baseline_id):
        batch = ids.repeat(len(ids), 1)
        batch[torch.arange(len(ids)), torch.arange(len(ids))] = baseline_id
        return score_fn(batch)

    def keep_one(score_fn, ids, baseline_id):
        batch = torch.full((len(ids), len(ids)), baseline_id)
        batch[torch.arange(len(ids)), torch.arange(len(ids))] = ids
        return score_fn(batch) - score_fn(torch.full((1, len(ids)), baseline_id))[0]

    return {
        "the sign is flipped: φ_i = f(x) − f(x with token i replaced), positive when the token helps.": flipped,
        "return the drop f(x) − f(x₋ᵢ), not the ablated scores f(x₋ᵢ) themselves.": only_ablated,
        "replace token i by the baseline token (same length), do not delete it: deleting shifts every later "
        "position.": deleted,
        "this keeps only token i (a 'leave-one-in' attribution); leave one out means replacing only token i.": keep_one,
    }


leave_one_out = Exercise("leave_one_out", _loo_reference, _loo_cases(), _loo_mistakes())
leave_one_out.__doc__ = "Check ``leave_one_out(score_fn, ids, baseline_id)``: φ_i = f(x) − f(x with i replaced)."


# -- a ridge probe ----------------------------------------------------------------------------------


def _probe_reference(X_train, y_train, X_test, l2=1.0):
    from labkit.llm_explain import probe_scores

    return probe_scores(X_train, y_train, X_test, l2)


def _probe_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)

    def task(n, d, scale, shift, noise, layers=None):
        shape = (n, d) if layers is None else (layers, n, d)
        X = torch.randn(*shape, generator=g) * scale + shift
        w = torch.randn(d, generator=g)
        y = (X @ w if layers is None else X[0] @ w) + noise * torch.randn(n, generator=g)
        return X, (y > y.median()).long()

    Xa, ya = task(60, 8, torch.linspace(0.1, 10, 8), 3.0, 2.0)
    Xb, yb = task(40, 30, 1.0, 0.0, 3.0)
    Xc, yc = task(50, 5, 1.0, 0.0, 0.5, layers=3)
    return [
        Case("60 examples, 8 features on very different scales and offsets", (Xa[:40], ya[:40], Xa[40:]), {"l2": 1.0}),
        Case("more features than examples (d=30, n=25), small λ", (Xb[:25], yb[:25], Xb[25:]), {"l2": 0.1}),
        Case("a strong penalty λ = 100", (Xa[:40], ya[:40], Xa[40:]), {"l2": 100.0}),
        Case("a batch of 3 layers", (Xc[:, :30], yc[:30], Xc[:, 30:]), {"l2": 1.0}),
    ]


def _probe_core(X_train, y_train, X_test, l2, test_stats=False, bias=True, zero_one=False, standardise=True,
                penalise_bias=False):
    Xtr, Xte = X_train.double(), X_test.double()
    if standardise:
        mu, sd = Xtr.mean(-2, keepdim=True), Xtr.std(-2, keepdim=True).clamp_min(1e-8)
        Xtr = (Xtr - mu) / sd
        if test_stats:
            mu, sd = Xte.mean(-2, keepdim=True), Xte.std(-2, keepdim=True).clamp_min(1e-8)
        Xte = (Xte - mu) / sd
    if bias:
        Xtr = torch.cat([Xtr, torch.ones(*Xtr.shape[:-1], 1, dtype=Xtr.dtype)], -1)
        Xte = torch.cat([Xte, torch.ones(*Xte.shape[:-1], 1, dtype=Xte.dtype)], -1)
    t = y_train.double() if zero_one else 2 * y_train.double() - 1
    reg = l2 * torch.eye(Xtr.shape[-1], dtype=Xtr.dtype)
    if bias and not penalise_bias:
        reg[-1, -1] = 0
    w = torch.linalg.solve(Xtr.transpose(-1, -2) @ Xtr + reg, Xtr.transpose(-1, -2) @ t[..., None])
    return (Xte @ w)[..., 0]


def _probe_mistakes() -> dict[str, Callable]:
    return {
        "standardise the test features with the training set's mean and std (the test set must not inform the "
        "probe).": lambda X_train, y_train, X_test, l2=1.0: _probe_core(X_train, y_train, X_test, l2, test_stats=True),
        "add a bias (a column of ones): without it the decision boundary must pass through the origin.":
            lambda X_train, y_train, X_test, l2=1.0: _probe_core(X_train, y_train, X_test, l2, bias=False),
        "regress on t = 2y − 1 ∈ {−1, +1}, so that the decision threshold is 0 (0/1 targets put it at 0.5).":
            lambda X_train, y_train, X_test, l2=1.0: _probe_core(X_train, y_train, X_test, l2, zero_one=True),
        "standardise the features (training mean and std) before the ridge solve: λ penalises every feature "
        "alike only when they share a scale.":
            lambda X_train, y_train, X_test, l2=1.0: _probe_core(X_train, y_train, X_test, l2, standardise=False),
        "do not penalise the bias: set the last diagonal entry of λI to 0.":
            lambda X_train, y_train, X_test, l2=1.0: _probe_core(X_train, y_train, X_test, l2, penalise_bias=True),
    }


probe_scores = Exercise("probe_scores", _probe_reference, _probe_cases(), _probe_mistakes())
probe_scores.__doc__ = "Check ``probe_scores(X_train, y_train, X_test, l2)``: a closed-form ridge probe's test scores."


# -- a probe with a control task: selectivity ------------------------------------------------------


def _selectivity_reference(X, y, word_types, train_idx, test_idx, l2=1.0, seed=0):
    from labkit.llm_explain import probe_selectivity

    return probe_selectivity(X, y, word_types, train_idx, test_idx, l2, seed)


def _selectivity_cases(lm=None) -> list[Case]:
    lm = course_model() if lm is None else lm  # the notebook's model when the check cell passes it
    from labkit.llm_explain import agreement_dataset

    # the notebook's real activations: last-token states of 96 agreement prompts at three layers (2, 10 and 20 of
    # the course model's 30; the same fractions of another model's depth)
    data = agreement_dataset(seed=0)
    pick = torch.randperm(len(data["prompts"]), generator=torch.Generator().manual_seed(1))[:96]
    layers = [lm.n_layers // 15, lm.n_layers // 3, 2 * lm.n_layers // 3]
    X = lm.last_token_states([data["prompts"][i] for i in pick])[layers].double()
    y, words = data["labels"][pick], [data["subjects"][i] for i in pick]
    # a toy set: 8 word types, each repeated, the label readable along feature 0
    g = torch.Generator().manual_seed(5)
    toy_words = [w for w in ["ant", "bee", "cow", "dog", "eel", "fox", "gnu", "hen"] for _ in range(5)]
    y_toy = torch.tensor([i % 2 for i in range(40)])
    X_toy = torch.randn(40, 6, generator=g, dtype=torch.float64)
    X_toy[:, 0] += 1.5 * (2 * y_toy - 1)
    order = torch.randperm(40, generator=g)
    return [
        Case(f"the model's last-token states of 96 agreement prompts, layers {layers} (the notebook's task)",
             (X, y, words, torch.arange(64), torch.arange(64, 96)), {"l2": 10.0, "seed": 0}),
        Case("the same, another control seed", (X[1:2], y, words, torch.arange(32, 96), torch.arange(32)),
             {"l2": 10.0, "seed": 3}),
        Case("a toy set without a layer axis: 40 examples of 8 words, types not in sorted order",
             (X_toy, y_toy, [toy_words[i] for i in order], torch.arange(28), torch.arange(28, 40)),
             {"l2": 1.0, "seed": 1}),
    ]


def _selectivity_core(X, y, word_types, train_idx, test_idx, l2=1.0, seed=0, per_example=False, first_seen=False,
                      on_train=False, reversed_=False, task_labels=False, only=False):
    import numpy as np
    from labkit.llm_explain import probe_scores as ps

    types = list(dict.fromkeys(word_types)) if first_seen else sorted(set(word_types))
    rng = np.random.default_rng(seed)
    if per_example:
        y_control = torch.as_tensor(rng.integers(0, 2, len(word_types)))
    else:
        table = dict(zip(types, rng.integers(0, 2, len(types))))
        y_control = torch.tensor([int(table[w]) for w in word_types])
    te = train_idx if on_train else test_idx
    accs = []
    for k, labels in enumerate((y, y_control)):
        scores = ps(X[..., train_idx, :], labels[train_idx], X[..., te, :], l2)
        truth = y[te] if task_labels else labels[te]
        accs.append(((scores > 0) == truth.bool()).double().mean(-1))
    sel = accs[1] - accs[0] if reversed_ else accs[0] - accs[1]
    return sel if only else torch.stack([accs[0], accs[1], sel])


def _selectivity_mistakes() -> dict[str, Callable]:
    def m(**flags):
        return lambda X, y, w, tr, te, l2=1.0, seed=0: _selectivity_core(X, y, w, tr, te, l2, seed, **flags)

    return {
        "the control task gives each word *type* one random label (all examples of 'keys' share it); drawing a "
        "label per example makes it a random-label task that no probe can learn.": m(per_example=True),
        "draw the control labels for the word types in sorted order (types = sorted(set(word_types))), one "
        "rng.integers(0, 2, len(types)) call: the order of first appearance gives other labels.": m(first_seen=True),
        "score both probes on the held-out examples (test_idx): accuracy on the training examples rewards "
        "memorisation, which is what the control task measures.": m(on_train=True),
        "selectivity is task accuracy minus control accuracy, not the other way round.": m(reversed_=True),
        "score the control probe against the control labels of the test examples, not the task labels.":
            m(task_labels=True),
        "return the three rows torch.stack([acc_task, acc_control, selectivity]), not the selectivity alone.": m(only=True),
    }


probe_selectivity = Exercise("probe_selectivity", _selectivity_reference, _selectivity_cases, _selectivity_mistakes())
probe_selectivity.__doc__ = ("Check ``probe_selectivity(X, y, word_types, train_idx, test_idx, l2, seed)``: "
                             "[acc_task, acc_control, acc_task − acc_control], one case on SmolLM2's activations.")


# -- expected calibration error ---------------------------------------------------------------------


def _ece_reference(confidence, correct, n_bins=10):
    from labkit.llm_explain import expected_calibration_error

    return expected_calibration_error(confidence, correct, n_bins)


def _ece_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(200, generator=g)
    correct = (torch.rand(200, generator=g) < conf ** 2).float()
    return [
        Case("200 random predictions, overconfident", (conf, correct), {"n_bins": 10}),
        Case("5 bins", (conf, correct), {"n_bins": 5}),
        Case("confidences exactly 1.0 belong to the last bin", (torch.tensor([1.0, 1.0, 0.95, 0.3]), torch.tensor([1.0, 0.0, 1.0, 0.0])), {"n_bins": 10}),
        Case("under- and over-confident bins must not cancel", (torch.tensor([0.2, 0.2, 0.2, 0.9]), torch.tensor([1.0, 1.0, 1.0, 0.0])), {"n_bins": 10}),
        Case("empty bins are skipped (all confidences in one bin)", (torch.tensor([0.71, 0.72, 0.75]), torch.tensor([1.0, 0.0, 1.0])), {"n_bins": 10}),
    ]


def _ece_mistakes() -> dict[str, Callable]:
    def unweighted(confidence, correct, n_bins=10):
        from labkit.llm_explain import reliability_curve

        c = reliability_curve(confidence, correct, n_bins)
        full = c["count"] > 0
        return (c["accuracy"] - c["confidence"])[full].abs().mean()

    def signed(confidence, correct, n_bins=10):
        from labkit.llm_explain import reliability_curve

        c = reliability_curve(confidence, correct, n_bins)
        return (c["count"] / c["count"].sum() * (c["confidence"] - c["accuracy"])).sum()

    def drop_one(confidence, correct, n_bins=10):
        conf = torch.as_tensor(confidence, dtype=torch.float64)
        corr = torch.as_tensor(correct, dtype=torch.float64)
        b = (conf * n_bins).long()
        keep = b < n_bins
        total = 0.0
        for k in range(n_bins):
            m = keep & (b == k)
            if m.any():
                total += m.sum() / len(conf) * (corr[m].mean() - conf[m].mean()).abs()
        return torch.as_tensor(total, dtype=torch.float64)

    def global_gap(confidence, correct, n_bins=10):
        conf = torch.as_tensor(confidence, dtype=torch.float64)
        return (conf.mean() - torch.as_tensor(correct, dtype=torch.float64).mean()).abs()

    return {
        "weight each bin by its share of the examples (n_b / n), not equally.": unweighted,
        "take the absolute gap |acc_b − conf_b| in each bin before summing (over- and under-confidence must not "
        "cancel).": signed,
        "a confidence of exactly 1.0 falls outside the bins: put it into the last bin (clamp the bin index).": drop_one,
        "bin the predictions by confidence: one global |mean confidence − accuracy| hides miscalibration.": global_gap,
    }


ece = Exercise("ece", _ece_reference, _ece_cases(), _ece_mistakes())
ece.__doc__ = "Check ``ece(confidence, correct, n_bins)``: the expected calibration error."
