"""Values and opinions of language models: survey elicitation, prompt sensitivity, tropes, utilities.

Notebook 10 uses this module.

* **Survey elicitation** (Santurkar et al. 2023; Durmus et al. 2023; Röttger et al. 2024; Wright et al. 2024):
  :func:`likert_prompts` crosses propositions × prompt variants × personas (scale shown in either order);
  :func:`likert_logprobs` / :func:`choice_logprobs` score the answer letters in batched forward passes
  through the chat template; :func:`to_scale_order` and :func:`calibrate` (contextual calibration per
  prompt format, Zhao et al. 2021) remove the preference for a letter; :func:`stance_scores` turns option
  probabilities into a stance in [−1, 1]; :func:`open_stance` (keywords) and :func:`embedding_stance` (sentence
  embeddings) read a stance off an open-ended answer.
* **Prompt sensitivity**: :func:`variance_decomposition` (balanced three-way ANOVA sums of squares) and
  :func:`persona_permutation_test` (persona labels permuted within each proposition × variant block).
* **Tropes**: :func:`cluster_texts` (k-means on sentence embeddings) and :func:`describe_clusters`.
* **Utilities** (Mazeika et al. 2025, "Utility engineering"): :func:`pairwise_prompts`,
  :func:`preference_matrix`, :func:`fit_bradley_terry`, :func:`cyclic_triads`.

The course's propositions, prompt variants, personas and outcomes are in ``labkit/data/values.json``
(design notes in ``labkit/data/values_data.md``). Every public function checks its arguments (types, shapes,
ranges, NaN/inf, empty input) and raises a ``TypeError``/``ValueError`` naming the argument.
"""

from __future__ import annotations

import itertools
import math
import numbers
from typing import Sequence

import numpy as np
import torch

from labkit.datasets import load_data  # noqa: F401  (notebook 10 reads its data file as values.load_data)

__all__ = [
    "load_data",
    "LIKERT",
    "LIKERT_SCORES",
    "SURVEY_SYSTEM",
    "likert_prompts",
    "choice_logprobs",
    "likert_logprobs",
    "to_scale_order",
    "calibrate",
    "letter_shares",
    "stance_scores",
    "open_stance",
    "embedding_stance",
    "variance_decomposition",
    "persona_permutation_test",
    "cluster_texts",
    "pairwise_prompts",
    "preference_matrix",
    "fit_bradley_terry",
    "bradley_terry_probs",
    "cyclic_triads",
]

#: answer options of the closed-form question, under the letters A–D (in this order unless reversed)
LIKERT = ("strongly disagree", "disagree", "agree", "strongly agree")
#: their stance scores: equally spaced on [−1, 1]
LIKERT_SCORES = (-1.0, -1 / 3, 1 / 3, 1.0)
LETTERS = ("A", "B", "C", "D")
#: the system message of closed-form chat prompts (short: it is paid for in every prompt)
SURVEY_SYSTEM = "Answer with a single letter."


def _int(value, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _number(value, name: str, minimum: float | None = None, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value}")
    return float(value)


def _tensor(value, name: str, ndim: int | None = None, min_ndim: int = 0, neg_inf: bool = False,
            dtype=torch.float32) -> torch.Tensor:
    """``value`` as a real tensor of ``dtype``, not empty, without NaN or ±inf (−inf allowed where ``neg_inf``)."""
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise TypeError(f"{name} must be a tensor of numbers, got {type(value).__name__}")
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be a tensor of numbers ({e})") from None
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(t.shape)}")
    if t.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    t = t.to(dtype)
    if torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN")
    if ((t == math.inf) if neg_inf else torch.isinf(t)).any():
        raise ValueError(f"{name} contains infinite values")
    return t


def _option_logprobs(value, name: str = "option_logprobs") -> torch.Tensor:
    lp = _tensor(value, name, min_ndim=1, neg_inf=True)
    if lp.shape[-1] < 2:
        raise ValueError(f"{name} must have a last axis of at least two options, got shape {tuple(lp.shape)}")
    if torch.isinf(lp).all(-1).any():
        raise ValueError(f"{name} has a row where every option has log-probability −inf")
    return lp


def _lm(lm):
    if not all(callable(getattr(lm, a, None)) for a in ("option_logprobs", "chat_prompt", "token_id")):
        raise TypeError(f"lm must be a labkit LanguageModel (labkit.load_lm()), got {type(lm).__name__}")
    return lm


def _nonempty(items, what: str) -> list[str]:
    if isinstance(items, str):
        raise TypeError(f"give a list of {what}, not one string")
    items = list(items)
    if not items:
        raise ValueError(f"no {what} given")
    for t in items:
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"{what} must be non-empty strings; got {t!r}")
    if len(set(items)) != len(items):
        dup = sorted({t for t in items if items.count(t) > 1})
        raise ValueError(f"the {what} contain duplicates {dup}: each must appear once")
    return items


def _reverse_flags(reverse, n: int) -> list[bool]:
    if isinstance(reverse, bool):
        return [reverse] * n
    if isinstance(reverse, (str, bytes)) or not isinstance(reverse, Sequence):
        raise TypeError(f"reverse must be one bool or a list of bools (one per prompt variant), got {type(reverse).__name__}")
    if any(not isinstance(r, bool) for r in reverse):
        raise TypeError(f"reverse must hold bools, got {list(reverse)!r}")
    flags = list(reverse)
    if len(flags) != n:
        raise ValueError(f"reverse must be one bool or one bool per prompt variant ({n}); got {len(flags)}")
    return flags


def likert_prompts(propositions: Sequence[str], variants: Sequence[str], personas: Sequence[str | None],
                   reverse: bool | Sequence[bool] = False) -> list[str]:
    """All questions of a propositions × variants × personas survey, in that (C) order: shape ``[P, V, K]``.

    A variant is a template with ``{statement}`` and ``{options}``; a persona is a sentence put in front
    ("I am a retired farmer.") or ``None`` for no persona. The options are listed as
    ``A) strongly disagree B) disagree C) agree D) strongly agree``, or in the reverse order (A = strongly
    agree) for the variants whose ``reverse`` flag is set (one bool for all, or one per variant). Showing the
    scale in both orders separates a preference for a *letter* from a preference for an *answer*.
    The texts are user messages: :func:`likert_logprobs` wraps them in the chat template.
    """
    props = _nonempty(propositions, "propositions")
    variants = _nonempty(variants, "prompt variants")
    for v in variants:
        if "{statement}" not in v or "{options}" not in v:
            raise ValueError(f"a prompt variant needs '{{statement}}' and '{{options}}': {v!r}")
    flags = _reverse_flags(reverse, len(variants))
    if isinstance(personas, str):
        raise TypeError("give a list of personas, not one string")
    personas = list(personas)
    if not personas:
        raise ValueError("no personas given (use [None] for no persona)")
    for p in personas:
        if p is not None and (not isinstance(p, str) or not p.strip()):
            raise ValueError(f"personas must be non-empty strings or None; got {p!r}")
    if len(set(personas)) != len(personas):
        raise ValueError("the personas contain duplicates: each must appear once")
    scale = {r: " ".join(f"{L}) {o}" for L, o in zip(LETTERS, LIKERT[::-1] if r else LIKERT)) for r in (False, True)}
    out = []
    for s in props:
        for v, r in zip(variants, flags):
            body = v.format(statement=s.strip(), options=scale[r])
            for p in personas:
                out.append(body if p is None else f"{p.strip()} {body}")
    return out


def choice_logprobs(lm, questions: Sequence[str], letters: Sequence[str] = LETTERS, chat: bool = True,
                    system: str | None = SURVEY_SYSTEM, batch_size: int = 32, normalize: bool = True,
                    progress: bool = False) -> torch.Tensor:
    """log p(letter | question) for the answer letters of closed-form questions, ``[n, len(letters)]``:
    batched forward passes reading only the last position (no sampling). Batches of prompts that share a
    long prefix (chat markup, system message, persona) run that prefix once and reuse its key/value cache;
    results come back in the original order.

    With ``chat=True`` (default) each question is the user turn of the model's chat template, with
    ``system`` as the system message, and the letters are read as the assistant's first token ("A");
    with ``chat=False`` the question is continued as plain text after ``"\nAnswer:"`` (letters " A").
    ``normalize=True`` renormalises over the letters: log p(letter | question, letter ∈ letters).
    ``progress=True`` shows a progress bar over the batches.
    """
    _lm(lm)
    if isinstance(questions, str):
        questions = [questions]
    questions = list(questions)
    if not questions or any(not isinstance(q, str) or not q.strip() for q in questions):
        raise ValueError("questions must be a non-empty list of non-empty strings")
    letters = _nonempty(letters, "letters")
    if len(letters) < 2:
        raise ValueError(f"letters must name at least two answer options, got {letters}")
    if system is not None and not isinstance(system, str):
        raise TypeError(f"system must be a string or None, got {type(system).__name__}")
    batch_size = _int(batch_size, "batch_size", minimum=1)
    if chat:
        texts = [lm.chat_prompt(q, system=system) for q in questions]
    else:
        texts = [q + "\nAnswer:" for q in questions]
        letters = [" " + L for L in letters]
    for letter in letters:
        lm.token_id(letter)  # each answer letter must be one token (raises naming it otherwise)
    return lm.option_logprobs(texts, letters, normalize=normalize, shared_prefix=True, batch_size=batch_size,
                              progress=progress)


def likert_logprobs(lm, questions: Sequence[str], chat: bool = True, system: str | None = SURVEY_SYSTEM,
                    batch_size: int = 32, normalize: bool = True, progress: bool = False) -> torch.Tensor:
    """:func:`choice_logprobs` for the four Likert letters A–D: ``[n, 4]``."""
    return choice_logprobs(lm, questions, LETTERS, chat=chat, system=system, batch_size=batch_size,
                           normalize=normalize, progress=progress)


def to_scale_order(option_logprobs: torch.Tensor, reverse) -> torch.Tensor:
    """Re-index letter log-probabilities so that position k is always the answer ``LIKERT[k]``:
    the letter axis (last) is flipped where ``reverse`` is True (``reverse`` broadcasts against the leading
    axes, e.g. a ``[1, V, 1]`` tensor for a ``[P, V, K, 4]`` table)."""
    lp = _option_logprobs(option_logprobs)
    rev = torch.as_tensor(reverse)
    if rev.dtype != torch.bool:
        raise TypeError(f"reverse must hold bools (True where the scale was shown reversed), got dtype {rev.dtype}")
    try:
        return torch.where(rev[..., None], lp.flip(-1), lp)
    except RuntimeError:
        raise ValueError(f"reverse {tuple(rev.shape)} does not broadcast against the leading axes of option_logprobs "
                         f"{tuple(lp.shape[:-1])}") from None


def calibrate(option_logprobs: torch.Tensor, content_free_logprobs: torch.Tensor) -> torch.Tensor:
    """Contextual calibration (Zhao et al. 2021, "Calibrate before use") *per prompt format*:

    log q = log p − log p_cf, renormalised over the options, where p_cf is the option distribution of the
    same prompt (same variant, persona, order) with a content-free statement such as "N/A".
    ``content_free_logprobs`` broadcasts against ``option_logprobs`` (e.g. ``[V, K, 4]`` against
    ``[P, V, K, 4]``), so every format gets its own bias estimate; a content-free prompt calibrates to uniform.
    """
    lp = torch.log_softmax(_option_logprobs(option_logprobs), -1)
    cf = torch.log_softmax(_option_logprobs(content_free_logprobs, "content_free_logprobs"), -1)
    if cf.shape[-1] != lp.shape[-1]:
        raise ValueError(f"{lp.shape[-1]} options but {cf.shape[-1]} content-free options")
    try:
        return torch.log_softmax(lp - cf, -1)
    except RuntimeError as e:
        raise ValueError(f"content-free log-probs {tuple(cf.shape)} do not broadcast against {tuple(lp.shape)}") from e


def letter_shares(option_logprobs: torch.Tensor) -> torch.Tensor:
    """Average probability of each letter over all prompts (softmax over the last axis): ``[n_options]``.
    An unbiased model asked a balanced survey has no reason to prefer any letter."""
    lp = _option_logprobs(option_logprobs)
    return torch.softmax(lp, -1).reshape(-1, lp.shape[-1]).mean(0)


def stance_scores(option_logprobs: torch.Tensor, scores: Sequence[float] = LIKERT_SCORES) -> torch.Tensor:
    """Expected stance E_p[score] = Σ_k p_k · score_k with p = softmax over the options (last axis).

    The closed-form stance of Röttger et al. (2024) style surveys: uses the whole distribution over the
    answer options instead of one sampled answer. ``scores`` may be a tensor broadcasting against the
    log-probabilities (one score vector per prompt format).
    """
    lp = _option_logprobs(option_logprobs)
    sc = _tensor(scores, "scores", min_ndim=1)
    if lp.shape[-1] != sc.shape[-1]:
        raise ValueError(f"{lp.shape[-1]} options but {sc.shape[-1]} scores")
    return (torch.softmax(lp, -1) * sc).sum(-1)


_NEG = ("disagree", "do not agree", "don't agree", "not agree", "oppose", "reject")
_HEDGE = ("not sure", "unsure", "it depends", "i don't have personal", "i do not have personal", "as an ai")


def open_stance(text: str) -> int:
    """Stance of an open-ended answer from its wording: +1 agree, −1 disagree, 0 unclear.

    A deliberately simple keyword reader: a hedge ("not sure", "it depends", "as an AI") makes the answer
    unclear; otherwise the first of "disagree"/"agree" (and their negations) that occurs decides. The
    notebook reports how many answers stay unclear.
    """
    if not isinstance(text, str):
        raise TypeError("text must be a string")
    t = text.lower()
    if any(h in t for h in _HEDGE):
        return 0
    neg = min((t.find(w) for w in _NEG if w in t), default=-1)
    pos = t.find("agree")
    if neg == -1 and pos == -1:
        return 0
    if neg != -1 and (pos == -1 or neg <= pos + 3):
        return -1
    return 1


def embedding_stance(answers: torch.Tensor, agree: torch.Tensor, disagree: torch.Tensor,
                     margin: float = 0.0) -> torch.Tensor:
    """Stance of open-ended answers from sentence embeddings: +1 agree, −1 disagree, 0 unclear.

    A nearest-prototype classifier in cosine geometry: the prototypes are the means of the unit-normalised
    reference embeddings ``agree`` ``[m, d]`` and ``disagree`` ``[m', d]`` (sentences that plainly agree or
    disagree), and an answer ``a`` (row of ``answers`` ``[n, d]``) scores

    score(a) = cos(a, ā_agree) − cos(a, ā_disagree),  label = sign(score) where |score| > ``margin``, else 0.

    Unlike :func:`open_stance` it reads paraphrases without a keyword; like any embedding it may miss a
    negation, so validate it on answers with a known stance before trusting it.
    """
    A = _tensor(answers, "answers", ndim=2)
    refs = []
    for name, R in (("agree", agree), ("disagree", disagree)):
        R = _tensor(R, name, ndim=2)
        if R.shape[1] != A.shape[1]:
            raise ValueError(f"{name} has embeddings of size {R.shape[1]} but answers of size {A.shape[1]}")
        if (R.norm(dim=-1) == 0).any():
            raise ValueError(f"{name} contains an all-zero row: its direction is undefined")
        refs.append(torch.nn.functional.normalize(torch.nn.functional.normalize(R, dim=-1).mean(0), dim=0))
    if (A.norm(dim=-1) == 0).any():
        raise ValueError("answers contains an all-zero row: its direction is undefined")
    margin = _number(margin, "margin", minimum=0)
    A = torch.nn.functional.normalize(A, dim=-1)
    score = A @ refs[0] - A @ refs[1]
    return torch.where(score.abs() > margin, torch.sign(score), torch.zeros_like(score)).long()


# --------------------------------------------------------------------------------------------------
# Prompt sensitivity


def variance_decomposition(y) -> dict[str, float]:
    """Share of the total variance of a balanced ``[P, V, K]`` table (proposition × variant × persona)
    explained by each main effect and by the rest (interactions), from the ANOVA sums of squares:

    SS_total = Σ (y − ȳ)², SS_P = V·K Σ_p (ȳ_p·· − ȳ)², SS_V = P·K Σ_v (ȳ_·v· − ȳ)², SS_K = P·V Σ_k (ȳ_··k − ȳ)²,
    shares = SS / SS_total; "interactions" = 1 − the three main-effect shares.
    """
    y = np.asarray(_tensor(y, "y", dtype=torch.float64))
    if y.ndim != 3 or min(y.shape) < 1:
        raise ValueError("y must be a [propositions, variants, personas] array")
    P, V, K = y.shape
    m = y.mean()
    total = ((y - m) ** 2).sum()
    if total == 0:
        raise ValueError("all stances are identical: there is no variance to decompose")
    ss = {
        "proposition": V * K * ((y.mean((1, 2)) - m) ** 2).sum(),
        "prompt variant": P * K * ((y.mean((0, 2)) - m) ** 2).sum(),
        "persona": P * V * ((y.mean((0, 1)) - m) ** 2).sum(),
    }
    out = {k: float(v / total) for k, v in ss.items()}
    out["interactions"] = 1.0 - sum(out.values())
    return out


def persona_permutation_test(y, n_permutations: int = 10_000, seed: int = 0) -> dict:
    """Does the persona change the stance? A permutation test blocked by proposition × variant.

    Statistic T = Σ_k (ȳ_··k − ȳ)² (spread of the persona means). Under the null "personas do not matter"
    the K stances within each (proposition, variant) block are exchangeable, so each permutation shuffles
    the persona labels inside every block independently. p = (1 + #{T_i ≥ T}) / (1 + n_permutations).
    """
    y = _tensor(y, "y", dtype=torch.float64)
    if y.ndim != 3 or y.shape[2] < 2:
        raise ValueError("y must be [propositions, variants, personas] with at least two personas")
    n_permutations, seed = _int(n_permutations, "n_permutations", minimum=1), _int(seed, "seed")
    P, V, K = y.shape
    blocks = y.reshape(P * V, K)
    stat = lambda b: ((b.mean(-2) - b.mean((-1, -2), keepdim=True)[..., 0]) ** 2).sum(-1)  # noqa: E731
    observed = stat(blocks)
    g = torch.Generator().manual_seed(seed)
    count, done = 0, 0
    while done < n_permutations:
        m = min(2000, n_permutations - done)
        idx = torch.rand(m, P * V, K, generator=g).argsort(-1)
        perm = blocks.expand(m, -1, -1).gather(-1, idx)
        count += int((stat(perm) >= observed - 1e-12).sum())
        done += m
    return {"statistic": float(observed), "p_value": (1 + count) / (1 + n_permutations),
            "persona_means": blocks.mean(0).tolist()}


# --------------------------------------------------------------------------------------------------
# Tropes


def cluster_texts(embeddings: torch.Tensor, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means on unit-norm sentence embeddings (cosine geometry). Returns ``(labels [n], centre index [k])``
    where ``centre index[c]`` is the member of cluster c closest to its centroid (its representative text)."""
    from sklearn.cluster import KMeans

    E = _tensor(embeddings, "embeddings", ndim=2)
    if (E.norm(dim=-1) == 0).any():
        raise ValueError("embeddings contains an all-zero row: its direction (cosine geometry) is undefined")
    E = torch.nn.functional.normalize(E, dim=-1).numpy()
    k, seed = _int(k, "k"), _int(seed, "seed")
    if not 1 <= k <= len(E):
        raise ValueError(f"k must lie between 1 and the number of texts ({len(E)})")
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(E)
    reps = []
    for c in range(k):
        members = np.flatnonzero(km.labels_ == c)
        dist = ((E[members] - km.cluster_centers_[c]) ** 2).sum(1)
        reps.append(int(members[dist.argmin()]))
    return km.labels_, np.array(reps)


# --------------------------------------------------------------------------------------------------
# Utilities


def pairwise_prompts(outcomes: Sequence[str], template: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Both orders of every pair of outcomes: prompts with ``{a}`` (option A) and ``{b}`` (option B), and
    the ``(i, j)`` index pairs shown as (A, B). Showing both orders cancels a preference for a letter."""
    outcomes = _nonempty(outcomes, "outcomes")
    if len(outcomes) < 2:
        raise ValueError("pairwise comparisons need at least two outcomes")
    if not isinstance(template, str) or "{a}" not in template or "{b}" not in template:
        raise ValueError("the template needs '{a}' and '{b}'")
    pairs = [(i, j) for i, j in itertools.permutations(range(len(outcomes)), 2)]
    return [template.format(a=outcomes[i], b=outcomes[j]) for i, j in pairs], pairs


def preference_matrix(p_first: torch.Tensor, pairs: Sequence[tuple[int, int]], n: int) -> torch.Tensor:
    """P[i, j] = probability that i is preferred to j, averaged over the two orders in which the pair was shown.

    ``p_first[m]`` is p(option A | prompt m) (renormalised over A and B), for the ordered pair ``pairs[m]``.
    P[i, j] + P[j, i] = 1; the diagonal is 0.5.
    """
    n = _int(n, "n", minimum=2)
    p_first = _tensor(p_first, "p_first", ndim=1, dtype=torch.float64)
    if ((p_first < 0) | (p_first > 1)).any():
        raise ValueError("p_first must hold probabilities in [0, 1] (p(option A) renormalised over A and B)")
    if isinstance(pairs, (str, bytes)):
        raise TypeError("pairs must be a list of (i, j) index pairs")
    pairs = [tuple(q) for q in pairs]
    if len(pairs) != len(p_first):
        raise ValueError(f"{len(p_first)} probabilities in p_first but {len(pairs)} pairs: give one per shown pair")
    for q in pairs:
        if len(q) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in q):
            raise TypeError(f"each pair must be two integer indices (i, j), got {q!r}")
        if not (0 <= q[0] < n and 0 <= q[1] < n) or q[0] == q[1]:
            raise ValueError(f"pair {q} must hold two different indices in [0, {n - 1}]")
    P = torch.full((n, n), float("nan"), dtype=torch.float64)
    for (i, j), p in zip(pairs, p_first):
        P[i, j] = p if torch.isnan(P[i, j]) else (P[i, j] + p) / 2
        P[j, i] = 1 - P[i, j]
    P.fill_diagonal_(0.5)
    if torch.isnan(P).any():
        raise ValueError("some pairs were never shown")
    return P


def fit_bradley_terry(wins, pseudo_count: float = 0.5, tol: float = 1e-12, max_iter: int = 100_000) -> torch.Tensor:
    """Bradley–Terry utilities from a matrix of (possibly fractional) wins, ``wins[i, j]`` = times i beat j:

    p(i ≻ j) = σ(u_i − u_j), maximise Σ_{i≠j} w̃_ij log σ(u_i − u_j) with w̃ = wins + pseudo_count
    (off the diagonal; the pseudo-counts keep the maximum finite when an item never loses),
    centred so that Σ u_i = 0 (natural-log scale). Solved with the minorise–maximise update of Hunter
    (2004): π_i ← W_i / Σ_{j≠i} n_ij / (π_i + π_j), u = log π.
    """
    if isinstance(wins, torch.Tensor) and torch.isnan(wins).any():
        raise ValueError("wins must be non-negative numbers (it contains NaN)")
    W = _tensor(wins, "wins", dtype=torch.float64).clone()
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] < 2:
        raise ValueError("wins must be a square [n, n] matrix with n ≥ 2")
    if (W < 0).any():
        raise ValueError("wins must be non-negative numbers")
    pseudo_count = _number(pseudo_count, "pseudo_count")
    if pseudo_count < 0:
        raise ValueError("pseudo_count must be ≥ 0")
    tol = _number(tol, "tol", positive=True)
    max_iter = _int(max_iter, "max_iter", minimum=1)
    n = W.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    W = torch.where(off, W + pseudo_count, torch.zeros_like(W))
    N = W + W.T
    w = W.sum(1)
    if (w == 0).any():
        raise ValueError("an item never wins: its utility is −∞ (use pseudo_count > 0)")
    pi = torch.ones(n, dtype=torch.float64)
    for _ in range(max_iter):
        denom = (N / (pi[:, None] + pi[None, :])).masked_fill(~off, 0).sum(1)
        new = w / denom
        new = new / torch.exp(torch.log(new).mean())
        if (new - pi).abs().max() < tol:
            pi = new
            break
        pi = new
    u = torch.log(pi)
    return u - u.mean()


def bradley_terry_probs(u: torch.Tensor) -> torch.Tensor:
    """P[i, j] = σ(u_i − u_j)."""
    u = _tensor(u, "u", ndim=1, dtype=torch.float64)
    return torch.sigmoid(u[:, None] - u[None, :])


def cyclic_triads(P) -> int:
    """Number of intransitive (cyclic) triads i ≻ j ≻ k ≻ i in the majority tournament of ``P``
    (i ≻ j when P[i, j] > ½), by Kendall & Babington Smith's (1940) closed form

    c = n(n − 1)(2n − 1)/12 − ½ Σ_i s_i²,   s_i = number of items that i beats.

    Requires a complete tournament (no exact ties P[i, j] = ½ off the diagonal).
    """
    P = _tensor(P, "P", ndim=2, dtype=torch.float64)
    if P.shape[0] != P.shape[1] or P.shape[0] < 3:
        raise ValueError(f"P must be a square [n, n] matrix with n ≥ 3, got shape {tuple(P.shape)}")
    if ((P < 0) | (P > 1)).any():
        raise ValueError("P must hold probabilities in [0, 1]")
    n = P.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    if not torch.allclose((P + P.T)[off], torch.ones(()).double(), atol=1e-6):
        raise ValueError("P must be a preference matrix with P[i, j] + P[j, i] = 1 (values.preference_matrix)")
    if (P[off] == 0.5).any():
        raise ValueError("a pair is tied at exactly 1/2: the tournament is incomplete")
    s = ((P > 0.5) & off).sum(1).double()
    return int(round(n * (n - 1) * (2 * n - 1) / 12 - 0.5 * float((s**2).sum())))
