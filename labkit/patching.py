"""Patching: exact activation patching, attribution patching and its integrated-gradients version (notebook 07).

Indirect effect of an activation ``a`` on a metric ``m`` (the lecture's notation; Meng et al. 2022,
Nanda 2023 "Attribution patching", Syed et al. 2023, Marks et al. 2024):

* exact activation patching: ``F(m; a; x_c, x_p) = m(x_c | a = a_p) − m(x_c)`` — run the clean input
  ``x_c`` with ``a`` replaced by its value on the patch input ``x_p``; one forward pass per activation;
* attribution patching (first order): ``F̂ = ∇_a m|_{a_c} · (a_p − a_c)`` — one forward and one backward
  pass on ``x_c`` plus one forward pass on ``x_p`` give the estimate for *every* activation at once;
* integrated-gradients version: ``F̂_IG = (a_p − a_c) · (1/N) Σ_α ∇_a m|_{α a_c + (1 − α) a_p}``,
  ``α ∈ {0, 1/N, …, (N−1)/N}`` (N = 10 in the lecture), one forward/backward per α and per layer.

The methods are those of the course's one intervention engine, :mod:`labkit.lm.interventions` (batched
interventions that start at their lowest layer); notebook 08's mediation analysis uses the same engine.
This module adds notebook 07's inputs: prompt pairs built from the professions data.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

from labkit import datasets
from labkit.lm.interventions import (  # noqa: F401  (notebook 07 uses them as patching.*)
    attribution_patching,
    exact_patching,
    head_interventions,
    ig_patching,
    logit_diff_readout,
    logratio_readout,
    paired_ids,
    reduce_site,
    resid_interventions,
    run_interventions,
)

__all__ = [
    "tokenize_pair",
    "profession_pairs",
    "logit_diff_readout",
    "logratio_readout",
    "run_interventions",
    "head_interventions",
    "resid_interventions",
    "exact_patching",
    "attribution_patching",
    "ig_patching",
    "reduce_site",
]


def _check_lm(lm) -> None:
    from labkit.lm import LanguageModel

    if not isinstance(lm, LanguageModel):
        raise TypeError(f"lm must be a labkit LanguageModel (from labkit.load_lm()), got {type(lm).__name__}")


def tokenize_pair(lm, clean: str | Sequence[str], corrupted: str | Sequence[str], device=None):
    """Token ids of clean and corrupted prompts as two ``[K, seq]`` tensors of the same shape.

    Patching swaps activations position by position, so every clean prompt must have exactly as many
    tokens as its corrupted partner (and, to batch them, as the other pairs); :func:`paired_ids` raises
    ``ValueError`` naming the mismatch otherwise.
    """
    _check_lm(lm)
    for name, v in (("clean", clean), ("corrupted", corrupted)):
        if not isinstance(v, str) and (isinstance(v, bytes) or not isinstance(v, Sequence)
                                       or not all(isinstance(t, str) for t in v)):
            raise TypeError(f"{name} must be a prompt or a list of prompts (strings), got {v!r}")
    return paired_ids(lm, clean, corrupted, device=device)


def profession_pairs(
    lm,
    template: str = "The {} said that",
    n: int = 3,
    words: Sequence[str] | None = None,
    max_definitional: float = 0.75,
    like: str = "man",
):
    """Clean prompts with professions, each paired with ``template`` filled by ``like`` (the corrupted prompt).

    Professions and their crowd-rated scores come from :func:`labkit.datasets.load_professions` (Bolukbasi
    et al. 2016). As in Vig et al. (2020) we keep words with |definitional| < ``max_definitional`` and, so that
    a profession and ``like`` sit at the same position, only those written as one token after a space, like
    `` man`` (:func:`labkit.datasets.filter_professions`). ``words=None`` takes the ``n`` most
    female-stereotyped of them (ties by name); ``words`` picks these professions instead and refuses one that
    is unknown, too gendered by definition, or several tokens. Returns
    ``(clean prompts, corrupted prompts, [(word, stereotypical score)])``.
    """
    _check_lm(lm)
    if isinstance(max_definitional, bool) or not isinstance(max_definitional, numbers.Real) \
            or not math.isfinite(max_definitional) or not 0 < max_definitional <= 1:
        raise ValueError(f"max_definitional must be a number in (0, 1] (|definitional| is at most 1), got {max_definitional!r}")
    if not isinstance(like, str) or not like.strip():
        raise ValueError(f"like must be the corrupting word, a non-empty string such as 'man', got {like!r}")
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"template must contain '{{}}' once, where the profession goes, got {template!r}")
    professions = datasets.load_professions()
    if words is None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        kept = datasets.filter_professions(lm, professions, max_definitional=max_definitional, like=like)
        chosen = sorted(((p["word"], p["stereotypical"]) for p in kept), key=lambda r: (r[1], r[0]))[:n]
    else:
        if isinstance(words, (str, bytes)) or not isinstance(words, Sequence) or not list(words):
            raise ValueError("words must be a non-empty list of professions")
        if not all(isinstance(w, str) for w in words):
            raise TypeError(f"words must be profession names (strings), got {list(words)!r}")
        by_word = {p["word"]: p for p in professions}
        chosen = []
        for w in words:
            if w not in by_word:
                raise ValueError(f"unknown profession {w!r}: it is not in labkit/data/professions.json")
            kept, dropped = datasets.filter_professions(lm, [by_word[w]], max_definitional=max_definitional, like=like,
                                                        return_dropped=True)
            if dropped["definitional"]:
                raise ValueError(f"{w!r} is gendered by definition "
                                 f"(|definitional| = {abs(by_word[w]['definitional'])} ≥ {max_definitional})")
            if dropped["several_tokens"]:
                raise ValueError(
                    f"{w!r} is {len(lm.encode(' ' + w))} tokens {lm.tokens(' ' + w)} but {like!r} is "
                    f"{len(lm.encode(' ' + like))}: patching swaps activations position by position, so pick "
                    f"one-token professions"
                )
            chosen.append((w, by_word[w]["stereotypical"]))
    return [template.format(w) for w, _ in chosen], [template.format(like)] * len(chosen), chosen
