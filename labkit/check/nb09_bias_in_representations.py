"""Checks for the exercises of notebook 09 · Bias in learned representations."""

from __future__ import annotations

import itertools
from typing import Callable

import torch

from ._machinery import Case, Exercise

__all__ = ["weat_effect_size", "weat_p_value", "seat_test", "position_bias"]


# -- WEAT effect size ------------------------------------------------------------------------------


def _effect_reference(X, Y, A, B):
    """d = (mean_X s − mean_Y s) / std_{X∪Y} s, s(w) = mean_a cos(w, a) − mean_b cos(w, b); sample std."""
    from labkit.bias import weat_effect_size as ref

    return ref(X, Y, A, B)


def _cos(W, V):
    return torch.nn.functional.normalize(W, dim=-1) @ torch.nn.functional.normalize(V, dim=-1).T


def _effect_cases() -> list[Case]:
    g = torch.Generator().manual_seed(9)
    r = lambda n, d=16, scale=1.0: torch.randn(n, d, generator=g) * scale  # noqa: E731
    shift = torch.randn(16, generator=g)
    return [
        Case("8 target words per set, 8 attribute words per set, random 16-dim vectors", (r(8), r(8), r(8), r(8))),
        Case("vectors of very different lengths (use cosines, not dot products)", (r(6, scale=5.0), r(6, scale=0.2), r(5), r(5, scale=3.0))),
        Case("attribute sets of different sizes (A has 3 words, B has 9)", (r(5), r(5), r(3), r(9))),
        Case("a strong planted association: X near A, Y near B", (r(6) + 2 * shift, r(6) - 2 * shift, r(4) + 2 * shift, r(4) - 2 * shift)),
        Case("the smallest test: one word per target set", (r(1), r(1), r(2), r(2))),
    ]


def _effect_mistakes() -> dict[str, Callable]:
    def s(W, A, B):
        return _cos(W, A).mean(1) - _cos(W, B).mean(1)

    def population_std(X, Y, A, B):
        sx, sy = s(X, A, B), s(Y, A, B)
        return (sx.mean() - sy.mean()) / torch.cat([sx, sy]).std(unbiased=False)

    def dot(X, Y, A, B):
        sd = lambda W: (W @ A.T).mean(1) - (W @ B.T).mean(1)  # noqa: E731
        sx, sy = sd(X), sd(Y)
        return (sx.mean() - sy.mean()) / torch.cat([sx, sy]).std()

    def swapped(X, Y, A, B):
        return -_effect_reference(X, Y, A, B)

    def no_std(X, Y, A, B):
        return s(X, A, B).mean() - s(Y, A, B).mean()

    def pooled_within(X, Y, A, B):
        sx, sy = s(X, A, B), s(Y, A, B)
        return (sx.mean() - sy.mean()) / ((sx.var() + sy.var()) / 2).sqrt()

    def mean_of_attributes(X, Y, A, B):
        sa = lambda W: _cos(W, A.mean(0, keepdim=True))[:, 0] - _cos(W, B.mean(0, keepdim=True))[:, 0]  # noqa: E731
        sx, sy = sa(X), sa(Y)
        return (sx.mean() - sy.mean()) / torch.cat([sx, sy]).std()

    return {
        "the sign is flipped: d = (mean over X − mean over Y) / std, and s(w) = mean cos(w, A) − mean cos(w, B).": swapped,
        "divide by the standard deviation of s over X ∪ Y (the effect size is in units of that spread).": no_std,
        "use the sample standard deviation (divide by n − 1; torch's default std()), as Caliskan et al. do.": population_std,
        "the standard deviation is taken over all words of X ∪ Y together, not averaged within X and Y.": pooled_within,
        "use cosine similarity (normalise the vectors), not raw dot products.": dot,
        "s(w, A, B) averages the cosines to each attribute word; the cosine to the mean attribute vector is different.": mean_of_attributes,
    }


weat_effect_size = Exercise("weat_effect_size", _effect_reference, _effect_cases(), _effect_mistakes())


# -- permutation p-value ---------------------------------------------------------------------------


def _p_reference(s_x, s_y):
    """Exact one-sided p = fraction of equal-size partitions (X_i, Y_i) of X ∪ Y with S_i ≥ S observed."""
    from labkit.bias import permutation_p_value

    return permutation_p_value(s_x, s_y, exact_limit=10**9)


def _p_cases() -> list[Case]:
    g = torch.Generator().manual_seed(3)
    return [
        Case("4 + 4 association scores, X clearly higher", (torch.randn(4, generator=g) + 1.0, torch.randn(4, generator=g))),
        Case("6 + 6 scores with no difference", (torch.randn(6, generator=g), torch.randn(6, generator=g))),
        Case("X lower than Y (p should be large)", (torch.randn(5, generator=g) - 1.0, torch.randn(5, generator=g))),
        Case("tied scores (ties count as at least as extreme)", (torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]))),
        Case("one score per set", (torch.tensor([0.3]), torch.tensor([0.1]))),
    ]


def _p_mistakes() -> dict[str, Callable]:
    def stats(s_x, s_y):
        s = torch.cat([s_x, s_y]).double()
        n = len(s_x)
        parts = [list(c) for c in itertools.combinations(range(2 * n), n)]
        st = torch.stack([s[c].sum() - s[[i for i in range(2 * n) if i not in c]].sum() for c in parts])
        obs = s_x.double().sum() - s_y.double().sum()
        return st, obs

    def strict(s_x, s_y):
        st, obs = stats(s_x, s_y)
        return float((st > obs + 1e-12).double().mean())

    def two_sided(s_x, s_y):
        st, obs = stats(s_x, s_y)
        return float((st.abs() >= obs.abs() - 1e-12).double().mean())

    def other_tail(s_x, s_y):
        st, obs = stats(s_x, s_y)
        return float((st <= obs + 1e-12).double().mean())

    def exclude_observed(s_x, s_y):
        st, obs = stats(s_x, s_y)
        return float(((st >= obs - 1e-12).double().sum() - 1) / (len(st) - 1)) if len(st) > 1 else 0.0

    return {
        "count partitions whose statistic is at least as large (≥), not strictly larger: ties count.": strict,
        "WEAT's test is one-sided: count S_i ≥ S, not |S_i| ≥ |S|.": two_sided,
        "wrong tail: the p-value is the fraction of partitions with S_i ≥ S (as large or larger).": other_tail,
        "the observed partition is one of the C(2n, n) partitions: count it and divide by all of them.": exclude_observed,
    }


weat_p_value = Exercise("weat_p_value", _p_reference, _p_cases(), _p_mistakes())


# -- position bias ---------------------------------------------------------------------------------


def _pb_reference(letter_logprobs):
    """½ Σ_k |q_k − 1/K|, q = mean over prompts of softmax over the K letters."""
    from labkit.bias import position_bias as ref

    return ref(letter_logprobs)


def _pb_cases() -> list[Case]:
    g = torch.Generator().manual_seed(5)
    raw = torch.randn(10, 6, 3, generator=g) * 2 - 4.0  # log p over the whole vocabulary: sums to less than one
    skew = torch.log(torch.tensor([0.7, 0.2, 0.1])).expand(4, 6, 3).clone() + 0.1 * torch.randn(4, 6, 3, generator=g)
    return [
        Case("10 questions × 6 permutations × 3 letters, log-probs over the whole vocabulary", (raw,)),
        Case("a model that prefers the first letter", (skew - 2.0,)),
        Case("4 letters, 5 prompts (a flat batch)", (torch.randn(5, 4, generator=g) - 5.0,)),
        Case("already uniform over the letters: bias 0", (torch.full((3, 3), -3.0),)),
        Case("a single prompt", (torch.tensor([-1.0, -2.0, -6.0]),)),
    ]


def _pb_mistakes() -> dict[str, Callable]:
    def no_renorm(lp):
        q = lp.exp().reshape(-1, lp.shape[-1]).mean(0)
        return 0.5 * (q - 1 / lp.shape[-1]).abs().sum()

    def no_half(lp):
        return 2 * _pb_reference(lp)

    def argmax_counts(lp):
        K = lp.shape[-1]
        q = torch.nn.functional.one_hot(lp.reshape(-1, K).argmax(-1), K).float().mean(0)
        return 0.5 * (q - 1 / K).abs().sum()

    def max_dev(lp):
        q = torch.softmax(lp, -1).reshape(-1, lp.shape[-1]).mean(0)
        return (q - 1 / lp.shape[-1]).abs().max()

    def mean_of_tv(lp):
        p = torch.softmax(lp, -1).reshape(-1, lp.shape[-1])
        return (0.5 * (p - 1 / lp.shape[-1]).abs().sum(-1)).mean()

    return {
        "renormalise over the letters first (softmax of the letter log-probs): the letters' raw probabilities do not sum to one.": no_renorm,
        "total variation has a factor ½: ½ Σ_k |q_k − 1/K|.": no_half,
        "average the probabilities, not the arg-max choices: the metric uses the full distribution over letters.": argmax_counts,
        "sum the deviations over all letters, not only the largest one.": max_dev,
        "average the distributions over prompts first, then compare the average with uniform (a confident but "
        "balanced model has no position bias).": mean_of_tv,
    }


position_bias = Exercise("position_bias", _pb_reference, _pb_cases(), _pb_mistakes())


# -- SEAT with the word as the unit ------------------------------------------------------------------


def _seat_reference(X, Y, A, B, n_templates):
    """labkit.bias.seat_test: average each word's sentence embeddings, then WEAT d and the exact p over words."""
    from labkit.bias import seat_test as ref

    r = ref(X, Y, A, B, n_templates)
    return torch.tensor([r["effect_size"], r["p_value"]], dtype=torch.float64)


def _seat_variant(X, Y, A, B, k, units="words", grouping="word", ddof=1, strict=False):
    """SEAT written out, with switches for the known mistakes."""
    unit = lambda E: torch.nn.functional.normalize(E.double(), dim=-1)  # noqa: E731

    def per_word(E):
        d = E.shape[1]
        G = E.reshape(-1, k, d) if grouping == "word" else E.reshape(k, -1, d).transpose(0, 1)
        return unit(G.mean(1))

    def assoc(W, A_, B_):
        return (unit(W) @ unit(A_).T).mean(1) - (unit(W) @ unit(B_).T).mean(1)

    if units == "sentences":
        s_x, s_y = assoc(X, A, B), assoc(Y, A, B)
    elif units == "mean_scores":       # s per sentence, then averaged per word
        s_x, s_y = assoc(X, A, B).reshape(-1, k).mean(1), assoc(Y, A, B).reshape(-1, k).mean(1)
    else:
        Aw, Bw = per_word(A), per_word(B)
        s_x, s_y = assoc(per_word(X), Aw, Bw), assoc(per_word(Y), Aw, Bw)
    s = torch.cat([s_x, s_y])
    n = len(s_x)
    d = (s_x.mean() - s_y.mean()) / s.std(correction=ddof)
    total = s.sum()
    observed = 2 * s_x.sum() - total
    chosen = torch.tensor(list(itertools.combinations(range(2 * n), n)))
    S = 2 * s[chosen].sum(1) - total
    tol = 1e-12 * (1 + s.abs().sum())
    p = (S > observed + tol).double().mean() if strict else (S >= observed - tol).double().mean()
    return torch.stack([d, p])


def _seat_cases() -> list[Case]:
    """Built on first use: the last case embeds the notebook's flower sentences with the course embedder."""
    g = torch.Generator().manual_seed(17)
    shift = torch.randn(12, generator=g)

    def sentences(n_words, k, sign=0.0, d=12):   # word-major: each word's k sentences share the word's vector
        words = torch.randn(n_words, d, generator=g) + sign * shift
        return (words[:, None, :] + 0.7 * torch.randn(n_words, k, d, generator=g)).reshape(n_words * k, d)

    import labkit
    from labkit import bias

    words = bias.load_data("weat_words")
    templates = words.pop("seat_templates")
    embedder = labkit.load_embedder()
    t = len(templates)
    S = {name: bias.embed(embedder, bias.seat_sentences(words[name], templates)) for name in ("flowers", "pleasant", "unpleasant")}
    half = torch.randperm(len(words["flowers"]), generator=torch.Generator().manual_seed(0))   # the notebook's null split
    fl = S["flowers"].reshape(-1, t, S["flowers"].shape[1])
    X, Y = fl[half[:6]].reshape(-1, fl.shape[2]), fl[half[6:]].reshape(-1, fl.shape[2])
    return [
        Case("3 words × 2 templates per set, random 12-dim embeddings", (sentences(3, 2), sentences(3, 2), sentences(3, 2), sentences(3, 2), 2)),
        Case("a planted association: X near A, Y near B; 4 words × 3 templates", (sentences(4, 3, 1.5), sentences(4, 3, -1.5),
             sentences(4, 3, 1.5), sentences(4, 3, -1.5), 3)),
        Case("one template (SEAT is then WEAT); A with 2 words, B with 5", (sentences(5, 1), sentences(5, 1), sentences(2, 1), sentences(5, 1), 1)),
        Case(f"the notebook's null control: flower half 1 vs half 2 (6 words × {t} templates), pleasant vs unpleasant, "
             "all-MiniLM sentence embeddings", (X, Y, S["pleasant"], S["unpleasant"], t)),
    ]


def _seat_mistakes() -> dict[str, Callable]:
    return {
        "the unit of the test is the word: average each word's n_templates sentence embeddings first. Testing the "
        "sentences themselves counts each word n_templates times (pseudo-replication).":
            lambda X, Y, A, B, k: _seat_variant(X, Y, A, B, k, units="sentences"),
        "average the sentence embeddings of each word (then compute s), not the association scores of its sentences.":
            lambda X, Y, A, B, k: _seat_variant(X, Y, A, B, k, units="mean_scores"),
        "the rows are word-major (word 0's n_templates sentences first): group them with reshape(n_words, n_templates, "
        "dim), not reshape(n_templates, n_words, dim).": lambda X, Y, A, B, k: _seat_variant(X, Y, A, B, k, grouping="template"),
        "d divides by the sample standard deviation (n − 1) of the word scores of X ∪ Y.":
            lambda X, Y, A, B, k: _seat_variant(X, Y, A, B, k, ddof=0),
        "ties count: the p-value is the fraction of partitions with S_i ≥ S (the observed split is one of them).":
            lambda X, Y, A, B, k: _seat_variant(X, Y, A, B, k, strict=True),
    }


seat_test = Exercise("seat_test", _seat_reference, _seat_cases, _seat_mistakes(), rtol=1e-4, atol=1e-5)
seat_test.__doc__ = ("Check ``seat_test(X, Y, A, B, n_templates)``: tensor([d, p]) of WEAT on per-word averaged sentence "
                     "embeddings, exact p over partitions of the words.")
