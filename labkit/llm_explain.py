"""Explaining language-model behaviour: token attributions, probes, neuron explanations, in-context
learning, uncertainty.

Everything works on a :class:`labkit.lm.LanguageModel` (the course model is SmolLM2-135M-Instruct) and is
batched: one forward pass scores many perturbed prompts, one forward pass captures every layer.

* **Token attributions** for a next-token decision f(x) = log p(target | x):
  Integrated Gradients on the token embeddings (Sundararajan et al. 2017; captum's
  ``LayerIntegratedGradients``), φ_i = (e_i − e'_i)·∫₀¹ ∂f(e' + α(e − e'))/∂e_i dα, with completeness
  Σ_i φ_i = f(x) − f(x') and its numerical error reported as the convergence delta;
  leave-one-out occlusion φ_i = f(x) − f(x with token i replaced by a baseline token);
  Shapley values over prompt segments (Shapley 1953; for LLMs e.g. Mohammadi 2024, *Explaining LLM
  decisions using Shapley values*), φ_i = Σ_{S ⊆ N∖{i}} |S|!(n−|S|−1)!/n! [v(S ∪ {i}) − v(S)], exact by
  enumerating all 2ⁿ coalitions, or estimated by permutation sampling (captum ``ShapleyValueSampling``).
* **Probes** (Alain & Bengio 2016; control tasks: Hewitt & Liang 2019): closed-form ridge probes on every
  layer at once; selectivity = task accuracy − control-task accuracy.
* **Neuron explanations** (Bills et al. 2023, *Language models can explain neurons in language models*):
  explain (top-activating tokens) → simulate (a simulator predicts activations from the explanation) →
  score (correlation of simulated and real activations).
* **Uncertainty**: entropy, sequence log-probability, self-consistency, verbalised confidence; expected
  calibration error ECE = Σ_b (n_b/n) |acc_b − conf_b| (Guo et al. 2017).
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from labkit.validation import integer_at_least as _int, language_model as _check_lm


__all__ = [
    "load_questions",
    "load_sentiment",
    "target_logprob",
    "integrated_gradients",
    "leave_one_out",
    "leave_one_out_scores",
    "segment_leave_one_out",
    "shapley_exact",
    "shapley_sampling",
    "segment_ids",
    "probe_scores",
    "probe_accuracy",
    "control_labels",
    "probe_selectivity",
    "agreement_dataset",
    "neuron_activations",
    "token_list_explanations",
    "simulate_token_list",
    "explanation_score",
    "token_saliency",
    "few_shot_prompt",
    "prefixed_next_logits",
    "entropy",
    "expected_calibration_error",
    "reliability_curve",
    "auroc",
]

DATA_DIR = Path(__file__).resolve().parent / "data"


# --------------------------------------------------------------------------------------------------
# Data shipped with the course


def load_questions() -> list[dict]:
    """The course question set (``labkit/data/questions.json``, notes in ``questions.md``): dicts with
    ``id``, ``category``, ``question``, ``answer`` and three ``distractors``."""
    return json.loads((DATA_DIR / "questions.json").read_text())["questions"]


def load_sentiment() -> tuple[list[str], list[int]]:
    """Sentences with sentiment labels (1 positive, 0 negative), from the course's contrast pairs
    (``labkit/data/sentiment_pairs.json``): positive and negative sentences interleaved."""
    pairs = json.loads((DATA_DIR / "sentiment_pairs.json").read_text())["pairs"]
    texts, labels = [], []
    for p in pairs:
        texts += [p["positive"], p["negative"]]
        labels += [1, 0]
    return texts, labels


# --------------------------------------------------------------------------------------------------
# Input checks

#: The default "removed token" of the attribution methods: a frequent word that carries no information about
#: most predictions. With the pad token (``<|im_end|>`` on SmolLM2) as the baseline, 64-step IG missed
#: completeness by 9-125% on four test prompts (BOS held fixed); with " the" by at most 1.2% (tests and
#: notebook 05 measure it).
DEFAULT_BASELINE = " the"


def _real(value, name: str, low: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _tensor(x, name: str, min_dim: int = 1) -> torch.Tensor:
    """A floating tensor with at least ``min_dim`` axes, non-empty and finite (no NaN or inf)."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be a tensor (or an array of numbers), got {type(x).__name__}")
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be a tensor (or an array of numbers): {e}") from None
    if t.is_complex():
        raise TypeError(f"{name} must be real, got a complex tensor")
    if not t.is_floating_point():
        t = t.double()
    if t.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} axis(es), got shape {list(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {list(t.shape)})")
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf")
    return t


def _id_tensor(ids, name: str, vocab_size: int | None = None, dim: int | None = None) -> torch.Tensor:
    """Token ids as a long tensor: integers (not floats), non-empty, inside the vocabulary when it is given."""
    if isinstance(ids, (str, bytes)) or ids is None:
        raise TypeError(f"{name} must be token ids (a tensor or list of ints), got {type(ids).__name__}")
    try:
        t = torch.as_tensor(ids)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be token ids (a tensor or list of ints): {e}") from None
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name} must hold integer token ids, got dtype {t.dtype}")
    if dim is not None and t.dim() != dim:
        raise ValueError(f"{name} must have {dim} axis(es), got shape {list(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty: give at least one token id")
    if (t < 0).any() or (vocab_size is not None and (t >= vocab_size).any()):
        hi = "" if vocab_size is None else f"-{vocab_size - 1}"
        raise ValueError(f"{name} holds ids outside the vocabulary (0{hi}): min {int(t.min())}, max {int(t.max())}")
    return t.long()


def _score_fn(score_fn) -> None:
    if not callable(score_fn):
        raise TypeError(f"score_fn must be a function from token id rows [n, seq] to scores [n], got {type(score_fn).__name__}")


def _scores(values, n: int) -> torch.Tensor:
    """The output of a score function for ``n`` rows: a finite tensor ``[n]``."""
    values = torch.as_tensor(values)
    if values.shape != (n,):
        raise ValueError(f"score_fn must return one score per row: {n} rows, got shape {list(values.shape)}")
    if not torch.isfinite(values).all():
        raise ValueError("score_fn returned NaN or inf scores: an attribution from them would be meaningless")
    return values


def _segments(ids, seg) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Token ids ``[seq]`` and segment indices ``[seq]``: integers, equal lengths, segments 0 … n−1 all present."""
    ids = _id_tensor(ids, "ids", dim=1)
    seg = _id_tensor(seg, "seg", dim=1)
    if seg.shape != ids.shape:
        raise ValueError(f"seg must give one segment index per token: {len(ids)} tokens, {len(seg)} indices")
    n = int(seg.max()) + 1
    missing = sorted(set(range(n)) - set(seg.tolist()))
    if missing:
        raise ValueError(f"segments must be numbered 0 … n−1 without gaps; segment(s) {missing} have no tokens")
    return ids, seg, n


def _ids(lm, prompt) -> torch.Tensor:
    """Token ids ``[1, seq]`` of a prompt (a string or a list of ids), with clear errors for bad input."""
    _check_lm(lm)
    if isinstance(prompt, str):
        if not prompt:
            raise ValueError("the prompt is empty: give a non-empty string")
        ids = lm.encode(prompt)
        if not ids:
            raise ValueError("the prompt is empty: give a non-empty string")
    else:
        if prompt is None or isinstance(prompt, bytes):
            raise TypeError(f"prompt must be a string or a list of token ids, got {type(prompt).__name__}")
        try:
            if len(prompt) == 0:
                raise ValueError("the prompt is empty: give a non-empty string or token ids")
        except TypeError:
            raise TypeError(f"prompt must be a string or a list of token ids, got {type(prompt).__name__}") from None
        ids = _id_tensor(prompt, "prompt", lm.vocab_size, dim=1).tolist()
    if lm.max_length and len(ids) > lm.max_length:
        raise ValueError(f"the prompt has {len(ids)} tokens, more than the model's context of {lm.max_length}")
    return torch.tensor([ids], device=lm.device)


def _target_id(lm, target, name: str = "target") -> int:
    if isinstance(target, str):
        return lm.token_id(target)
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise TypeError(f"{name} must be a one-token string or a token id, got {type(target).__name__}: {target!r}")
    if not 0 <= int(target) < lm.vocab_size:
        raise ValueError(f"{name} token id {target} is outside the vocabulary (0-{lm.vocab_size - 1})")
    return int(target)


def _baseline_id(lm, baseline) -> int:
    return _target_id(lm, DEFAULT_BASELINE if baseline is None else baseline, "baseline")


# --------------------------------------------------------------------------------------------------
# Local token attributions


def target_logprob(lm, target, batch_size: int = 64, prefix: Sequence[int] = ()) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(ids) = log p(target | prefix + ids) at the last position, for a batch of equally long id rows ``[n, seq]``.

    ``prefix``: token ids put in front of every row and never perturbed (e.g. the tokenizer's BOS token, which
    gives the model a fixed first position — its "attention sink" — whatever the attribution method masks).
    """
    _check_lm(lm)
    tid = _target_id(lm, target)
    batch_size = _int(batch_size, "batch_size", 1)
    if isinstance(prefix, (str, bytes)) or prefix is None:
        raise TypeError(f"prefix must be a list of token ids (e.g. [bos_id]), got {type(prefix).__name__}")
    prefix = list(prefix)
    head = _id_tensor(prefix, "prefix", lm.vocab_size, dim=1) if prefix else torch.zeros(0, dtype=torch.long)

    @torch.no_grad()
    def f(ids: torch.Tensor) -> torch.Tensor:
        ids = _id_tensor(ids, "ids", lm.vocab_size)
        if ids.dim() != 2:
            raise ValueError(f"expected a batch of token id rows [n, seq], got shape {list(ids.shape)}")
        if len(head):
            ids = torch.cat([head.expand(len(ids), -1), ids], 1)
        out = []
        for start in range(0, len(ids), batch_size):
            logits = lm.last_logits(input_ids=ids[start : start + batch_size].to(lm.device)).float()
            out.append(torch.log_softmax(logits, -1)[:, tid].cpu())
        return torch.cat(out)

    return f


def integrated_gradients(lm, prompt, target, n_steps: int = 32, baseline=None, fixed: int = 0, batch_size: int = 16,
                         warn_above: float = 0.05) -> tuple[torch.Tensor, float, float]:
    """Integrated Gradients of log p(target | prompt) with respect to the token embeddings.

    φ_i = Σ_d (e_id − e'_id) · ∫₀¹ ∂f/∂e_id (e' + α(e − e')) dα, computed by captum's ``LayerIntegratedGradients``
    on the embedding layer with a Gauss-Legendre rule of ``n_steps`` points, all steps in one batch. The
    baseline x' replaces every token by ``baseline`` (a token string or id; default :data:`DEFAULT_BASELINE`,
    " the", which converges far better than the pad token) except the first ``fixed`` tokens, which stay as they
    are (so they get φ = 0 and the model keeps its first position, e.g. a BOS token). Returns
    ``(φ [seq], delta, f(x) − f(x'))`` where delta = Σφ − (f(x) − f(x')) is captum's convergence delta
    (completeness error): report it, a large delta means too few steps for this path. A ``UserWarning`` says so
    when |delta| exceeds ``warn_above`` × |f(x) − f(x')| (5% by default; ``warn_above=None`` never warns).
    ``batch_size`` steps go through the model at once (memory grows with it: activations are kept for the
    backward pass).
    """
    from captum.attr import LayerIntegratedGradients

    ids = _ids(lm, prompt)
    tid = _target_id(lm, target)
    fixed = _int(fixed, "fixed", 0)
    if not fixed < ids.shape[1]:
        raise ValueError(f"fixed={fixed}: must leave at least one of the prompt's {ids.shape[1]} tokens to attribute")
    n_steps = _int(n_steps, "n_steps", 1)
    batch_size = _int(batch_size, "batch_size", 1)
    if warn_above is not None:
        warn_above = _real(warn_above, "warn_above", 0.0)
    base = torch.full_like(ids, _baseline_id(lm, baseline))
    base[:, :fixed] = ids[:, :fixed]

    def forward(input_ids):
        logits = lm.last_logits(input_ids=input_ids).float()
        return torch.log_softmax(logits, -1)[:, tid]

    lig = LayerIntegratedGradients(forward, lm.model.get_input_embeddings())
    attr, delta = lig.attribute(ids, baselines=base, n_steps=n_steps, internal_batch_size=min(n_steps, batch_size),
                                return_convergence_delta=True)
    with torch.no_grad():
        gap = float(forward(ids) - forward(base))
    delta = float(delta)
    if warn_above is not None and abs(delta) > warn_above * abs(gap):
        warnings.warn(
            f"Integrated Gradients misses completeness by {abs(delta) / max(abs(gap), 1e-12):.1%} of f(x) − f(x') "
            f"(delta {delta:+.3f}, gap {gap:+.3f}) with n_steps={n_steps}: use more steps, hold a leading BOS token "
            f"fixed (fixed=1), or try another baseline", UserWarning, stacklevel=2)
    return attr[0].sum(-1).detach().float().cpu(), delta, gap


def leave_one_out_scores(score_fn: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor, baseline_id: int) -> torch.Tensor:
    """φ_i = f(x) − f(x with token i replaced by ``baseline_id``), for ids ``[seq]``; one batched call of f.

    ``score_fn`` maps a batch of id rows ``[n, seq]`` to scores ``[n]``. Row 0 of the batch is x itself.
    """
    _score_fn(score_fn)
    ids = _id_tensor(ids, "ids", dim=1)
    baseline_id = _int(baseline_id, "baseline_id", 0)
    n = ids.numel()
    batch = ids.repeat(n + 1, 1)
    batch[torch.arange(1, n + 1), torch.arange(n)] = baseline_id
    scores = _scores(score_fn(batch), n + 1)
    return scores[0] - scores[1:]


def leave_one_out(lm, prompt, target, baseline=None, prefix: Sequence[int] = ()) -> torch.Tensor:
    """Leave-one-token-out occlusion of log p(target | prefix + prompt): ``[seq]`` (see :func:`leave_one_out_scores`)."""
    ids = _ids(lm, prompt)[0]
    return leave_one_out_scores(target_logprob(lm, target, prefix=prefix), ids.cpu(), _baseline_id(lm, baseline))


def segment_ids(lm, segments: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise a prompt given as segments; return ``(ids [seq], segment index of each token [seq])``.

    Segments are tokenised separately and concatenated, so every token belongs to exactly one segment.
    """
    _check_lm(lm)
    if isinstance(segments, str) or not segments:
        raise ValueError("segments must be a non-empty list of strings")
    ids, seg = [], []
    for k, s in enumerate(segments):
        if not isinstance(s, str):
            raise TypeError(f"segment {k} must be a string, got {type(s).__name__}")
        if not s:
            raise ValueError(f"segment {k} is empty")
        t = lm.encode(s)
        ids += t
        seg += [k] * len(t)
    if lm.max_length and len(ids) > lm.max_length:
        raise ValueError(f"the prompt has {len(ids)} tokens, more than the model's context of {lm.max_length}")
    return torch.tensor(ids), torch.tensor(seg)


def _masked(ids: torch.Tensor, seg: torch.Tensor, keep: torch.Tensor, baseline_id: int) -> torch.Tensor:
    """Rows of ids where the segments with keep[r, k] = False are replaced by the baseline token."""
    token_keep = keep[:, seg]  # [rows, seq]
    return torch.where(token_keep, ids.expand_as(token_keep), torch.full_like(token_keep, baseline_id, dtype=ids.dtype))


def segment_leave_one_out(score_fn, ids: torch.Tensor, seg: torch.Tensor, baseline_id: int) -> torch.Tensor:
    """Leave-one-segment-out: φ_k = f(x) − f(x with every token of segment k replaced), one batch. ``[n]``."""
    _score_fn(score_fn)
    ids, seg, n = _segments(ids, seg)
    baseline_id = _int(baseline_id, "baseline_id", 0)
    keep = ~torch.eye(n + 1, n, dtype=torch.bool)[[n] + list(range(n))]  # row 0 keeps all, row k+1 drops k
    keep[0] = True
    values = _scores(score_fn(_masked(ids, seg, keep, baseline_id)), n + 1)
    return values[0] - values[1:]


def shapley_exact(score_fn, ids: torch.Tensor, seg: torch.Tensor, baseline_id: int) -> torch.Tensor:
    """Exact Shapley values of the segments: evaluate all 2ⁿ coalitions in batches and apply
    φ_i = Σ_{S ∌ i} |S|!(n−|S|−1)!/n! [v(S ∪ {i}) − v(S)], with v(S) = f(prompt with only S kept). ``[n]``."""
    _score_fn(score_fn)
    ids, seg, n = _segments(ids, seg)
    baseline_id = _int(baseline_id, "baseline_id", 0)
    if n > 14:
        raise ValueError(f"{n} segments need 2^{n} evaluations: use shapley_sampling for more than 14 segments")
    masks = torch.tensor(list(itertools.product([False, True], repeat=n)))  # [2^n, n], row r = binary of r
    values = _scores(score_fn(_masked(ids, seg, masks, baseline_id)), len(masks)).double()
    index = {tuple(m.tolist()): r for r, m in enumerate(masks)}
    phi = torch.zeros(n, dtype=torch.float64)
    for r, m in enumerate(masks):
        size = int(m.sum())
        for i in range(n):
            if not m[i]:
                with_i = list(m.tolist())
                with_i[i] = True
                w = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                phi[i] += w * (values[index[tuple(with_i)]] - values[r])
    return phi.float()


def shapley_sampling(score_fn, ids: torch.Tensor, seg: torch.Tensor, baseline_id: int, n_samples: int = 20,
                     seed: int = 0) -> torch.Tensor:
    """Shapley values of the segments estimated by captum's ``ShapleyValueSampling`` (random permutations;
    ``n_samples`` permutations, all perturbations of one permutation evaluated in one batch). ``[n]``."""
    from captum.attr import ShapleyValueSampling

    _score_fn(score_fn)
    ids, seg, n = _segments(ids, seg)
    baseline_id = _int(baseline_id, "baseline_id", 0)
    n_samples = _int(n_samples, "n_samples", 1)
    seed = _int(seed, "seed", 0)

    def forward(batch):
        return _scores(score_fn(batch), len(batch))

    torch.manual_seed(seed)
    svs = ShapleyValueSampling(forward)
    attr = svs.attribute(ids[None], baselines=baseline_id, feature_mask=seg[None], n_samples=n_samples,
                         perturbations_per_eval=n + 1)
    # every token of a segment carries the segment's value
    return torch.stack([attr[0][seg == k][0] for k in range(n)]).float()


# --------------------------------------------------------------------------------------------------
# Probes


def probe_scores(X_train: torch.Tensor, y_train: torch.Tensor, X_test: torch.Tensor, l2: float = 1.0) -> torch.Tensor:
    """Decision values x·w of a closed-form ridge probe on held-out features, batched over leading axes (layers).

    Features are standardised with the *training* mean and standard deviation; labels y ∈ {0, 1} become
    t = 2y − 1; w = (XᵀX + λI)⁻¹Xᵀt with an unpenalised bias column (Alain & Bengio 2016). The probe predicts
    y = 1 where the score is > 0. ``X_train [..., n, d]``, ``y_train [n]``, ``X_test [..., m, d]`` → ``[..., m]``.
    """
    X_train, X_test = _tensor(X_train, "X_train", 2), _tensor(X_test, "X_test", 2)
    y_train = _labels(y_train, "y_train")
    if X_train.shape[-1] != X_test.shape[-1]:
        raise ValueError(f"train features have width {X_train.shape[-1]}, test features {X_test.shape[-1]}")
    if X_train.shape[-2] != len(y_train):
        raise ValueError(f"X_train has {X_train.shape[-2]} rows but there are {len(y_train)} labels")
    if X_train.shape[-2] < 2:
        raise ValueError("the probe needs at least 2 training examples (the features are standardised)")
    if X_train.shape[:-2] != X_test.shape[:-2]:
        raise ValueError(f"X_train and X_test must share their leading (layer) axes: {list(X_train.shape[:-2])} vs "
                         f"{list(X_test.shape[:-2])}")
    l2 = _real(l2, "the ridge penalty l2", 0.0)
    Xtr, Xte = X_train.double(), X_test.double()
    mu, sd = Xtr.mean(-2, keepdim=True), Xtr.std(-2, keepdim=True).clamp_min(1e-8)
    Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    ones = lambda X: torch.ones(*X.shape[:-1], 1, dtype=X.dtype)  # noqa: E731
    Xtr, Xte = torch.cat([Xtr, ones(Xtr)], -1), torch.cat([Xte, ones(Xte)], -1)
    t = 2 * y_train.double() - 1
    reg = l2 * torch.eye(Xtr.shape[-1], dtype=Xtr.dtype)
    reg[-1, -1] = 0.0
    w = torch.linalg.solve(Xtr.transpose(-1, -2) @ Xtr + reg, Xtr.transpose(-1, -2) @ t[..., None])
    return (Xte @ w)[..., 0]


def probe_accuracy(X_train, y_train, X_test, y_test, l2: float = 1.0) -> torch.Tensor:
    """Held-out accuracy of :func:`probe_scores`, ``[...]`` (one value per layer when batched)."""
    X_test = _tensor(X_test, "X_test", 2)
    y_test = _labels(y_test, "y_test")
    if X_test.shape[-2] != len(y_test):
        raise ValueError(f"X_test has {X_test.shape[-2]} rows but there are {len(y_test)} labels")
    pred = probe_scores(X_train, y_train, X_test, l2) > 0
    return (pred == y_test.bool()).double().mean(-1)


def _labels(y, name: str) -> torch.Tensor:
    """Binary labels ``[n]`` in {0, 1}."""
    y = _tensor(y, name)
    if y.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of labels, got shape {list(y.shape)}")
    if not ((y == 0) | (y == 1)).all():
        raise ValueError(f"{name} must hold binary labels 0 and 1, got values {sorted(set(y.tolist()))[:6]}")
    return y


def control_labels(word_types: Sequence[str], seed: int = 0) -> torch.Tensor:
    """Hewitt & Liang (2019) control task: a random but fixed label in {0, 1} per word *type*; examples
    sharing a word share its label, so a probe can only succeed by memorising word identity."""
    if isinstance(word_types, str) or not isinstance(word_types, Sequence) or not word_types:
        raise ValueError("word_types must be a non-empty list of words (one per example)")
    if not all(isinstance(w, str) for w in word_types):
        raise TypeError("word_types must hold strings (the word of each example)")
    seed = _int(seed, "seed", 0)
    types = sorted(set(word_types))
    rng = np.random.default_rng(seed)
    table = dict(zip(types, rng.integers(0, 2, len(types))))
    return torch.tensor([int(table[w]) for w in word_types])


def probe_selectivity(X: torch.Tensor, y: torch.Tensor, word_types: Sequence[str], train_idx, test_idx,
                      l2: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Task accuracy, control-task accuracy and selectivity of a ridge probe, ``[3, ...]`` (Hewitt & Liang 2019).

    The control task gives every word type a random but fixed label (:func:`control_labels` with ``seed``); the
    same probe (:func:`probe_scores`, penalty ``l2``) is trained on ``train_idx`` and scored on ``test_idx``
    once with the task labels ``y`` and once with the control labels. Selectivity = acc_task − acc_control: how
    much of the probe's accuracy is not explained by memorising word identities. ``X [..., n, d]`` (leading
    axes, e.g. layers, are a batch), ``y [n]`` in {0, 1}, ``word_types``: n strings. Returns
    ``torch.stack([acc_task, acc_control, selectivity])`` (float64).
    """
    X = _tensor(X, "X", 2)
    y = _labels(y, "y")
    if isinstance(word_types, str) or not isinstance(word_types, Sequence) or len(word_types) != X.shape[-2]:
        raise ValueError(f"word_types must be a list of one word per example ({X.shape[-2]}), "
                         f"got {len(word_types) if isinstance(word_types, Sequence) else type(word_types).__name__}")
    if len(y) != X.shape[-2]:
        raise ValueError(f"X has {X.shape[-2]} examples but there are {len(y)} labels")
    idx = []
    for name, ix in (("train_idx", train_idx), ("test_idx", test_idx)):
        ix = torch.as_tensor(ix)
        if ix.dim() != 1 or len(ix) == 0 or ix.is_floating_point() or ix.dtype == torch.bool:
            raise ValueError(f"{name} must be a non-empty 1-D tensor of example indices")
        if (ix < 0).any() or (ix >= X.shape[-2]).any():
            raise ValueError(f"{name} holds indices outside 0..{X.shape[-2] - 1}")
        idx.append(ix.long())
    tr, te = idx
    y_control = control_labels(list(word_types), seed)
    accs = [probe_accuracy(X[..., tr, :], labels[tr], X[..., te, :], labels[te], l2) for labels in (y, y_control)]
    return torch.stack([accs[0], accs[1], accs[0] - accs[1]])


_NOUNS = [
    ("key", "keys"), ("dog", "dogs"), ("teacher", "teachers"), ("car", "cars"), ("book", "books"),
    ("doctor", "doctors"), ("bird", "birds"), ("house", "houses"), ("student", "students"), ("painting", "paintings"),
    ("girl", "girls"), ("boy", "boys"), ("lamp", "lamps"), ("tree", "trees"), ("farmer", "farmers"),
    ("window", "windows"), ("singer", "singers"), ("bottle", "bottles"), ("player", "players"), ("cat", "cats"),
    ("chair", "chairs"), ("nurse", "nurses"), ("flower", "flowers"), ("river", "rivers"), ("engine", "engines"),
    ("writer", "writers"), ("apple", "apples"), ("horse", "horses"), ("computer", "computers"), ("soldier", "soldiers"),
    ("table", "tables"), ("letter", "letters"), ("baker", "bakers"), ("box", "boxes"), ("garden", "gardens"),
    ("child", "children"), ("woman", "women"), ("man", "men"), ("mouse", "mice"), ("person", "people"),
]
_PREPS = [" near", " behind", " next to", " beside", " with", " under"]


def agreement_dataset(seed: int = 0) -> dict:
    """A subject-number probing set with a known answer: ``"The {subject}{prep} the {attractor}"``.

    The label is whether the *subject* is plural (1) or singular (0); the attractor noun's number is drawn
    independently, so the last token alone does not reveal the label. Returns a dict with ``prompts``,
    ``labels``, ``subjects`` (the subject word, for control tasks) and ``attractor_plural``.
    """
    seed = _int(seed, "seed", 0)
    rng = np.random.default_rng(seed)
    prompts, labels, subjects, attr = [], [], [], []
    for k, (sing, plur) in enumerate(_NOUNS):
        for number, subject in ((0, sing), (1, plur)):
            for prep in rng.choice(len(_PREPS), 4, replace=False):
                other = _NOUNS[(k + 1 + rng.integers(0, len(_NOUNS) - 1)) % len(_NOUNS)]
                a = int(rng.integers(0, 2))
                prompts.append(f"The {subject}{_PREPS[prep]} the {other[a]}")
                labels.append(number)
                subjects.append(subject)
                attr.append(a)
    return {"prompts": prompts, "labels": torch.tensor(labels), "subjects": subjects,
            "attractor_plural": torch.tensor(attr)}


# --------------------------------------------------------------------------------------------------
# Neuron explanations: explain, simulate, score


@torch.no_grad()
def neuron_activations(lm, batches: torch.Tensor, layer: int, batch_size: int = 16) -> torch.Tensor:
    """MLP neuron activations ``mlp_post.layer`` on token rows ``[n, seq]`` (no padding): ``[n, seq, d_mlp]``.

    The forward pass stops right after the site (``lm.run_to``: the later layers cannot change it), which
    saves most of the compute for an early layer.
    """
    _check_lm(lm)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < lm.n_layers:
        raise ValueError(f"layer {layer} out of range: this model has {lm.n_layers} layers (0-{lm.n_layers - 1})")
    batches = _id_tensor(batches, "batches", lm.vocab_size)
    if batches.dim() != 2:
        raise ValueError(f"expected token rows [n, seq], got shape {list(batches.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    out = [lm.run_to(f"mlp_post.{layer}", batches[start : start + batch_size]).float().cpu()
           for start in range(0, len(batches), batch_size)]
    return torch.cat(out)


def token_list_explanations(token_ids: torch.Tensor, acts: torch.Tensor, k: int = 5, min_count: int = 3) -> torch.Tensor:
    """*Explain*: for every neuron, the ``k`` token types with the highest mean activation (types seen at
    least ``min_count`` times). ``token_ids [N]``, ``acts [N, n_neurons]`` → ``[n_neurons, k]`` token ids.

    This is the explanation "the neuron fires on these tokens", written from the top-activating contexts.
    """
    token_ids = _id_tensor(token_ids, "token_ids").flatten()
    acts = _tensor(acts, "acts", 2)
    if acts.dim() != 2 or len(acts) != len(token_ids):
        raise ValueError(f"acts must be [N, n_neurons] with one row per token: {len(token_ids)} tokens, acts "
                         f"{list(acts.shape)}")
    k, min_count = _int(k, "k", 1), _int(min_count, "min_count", 1)
    types, inverse, counts = torch.unique(token_ids, return_inverse=True, return_counts=True)
    if int((counts >= min_count).sum()) < k:
        raise ValueError(f"only {int((counts >= min_count).sum())} token types occur at least min_count={min_count} "
                         f"times, fewer than k={k}: lower k or min_count, or give more tokens")
    sums = torch.zeros(len(types), acts.shape[-1]).index_add_(0, inverse, acts.float())
    means = sums / counts[:, None]
    means[counts < min_count] = -float("inf")
    return types[means.topk(k, dim=0).indices.T]


def simulate_token_list(token_ids: torch.Tensor, explanation: torch.Tensor) -> torch.Tensor:
    """*Simulate*: predicted activation 1 where the token is in the explanation's list, else 0.
    ``token_ids [N]``, ``explanation [n_neurons, k]`` → ``[N, n_neurons]``."""
    token_ids = _id_tensor(token_ids, "token_ids").flatten()
    explanation = _id_tensor(explanation, "explanation", dim=2)
    return (token_ids[:, None, None] == explanation[None]).any(-1).float()


def explanation_score(simulated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """*Score*: Pearson correlation of simulated and real activations over tokens, per neuron (axis 0).

    A neuron whose simulated or real activation is constant has no defined correlation: its score is NaN.
    """
    simulated, real = _tensor(simulated, "simulated"), _tensor(real, "real")
    if simulated.shape != real.shape:
        raise ValueError(f"simulated and real activations differ in shape: {list(simulated.shape)} vs {list(real.shape)}")
    if len(simulated) < 2:
        raise ValueError("a correlation needs at least 2 tokens (axis 0)")
    s = simulated.double() - simulated.double().mean(0)
    r = real.double() - real.double().mean(0)
    den = s.norm(dim=0) * r.norm(dim=0)
    return torch.where(den > 0, (s * r).sum(0) / den.clamp_min(1e-300), torch.nan).float()


# --------------------------------------------------------------------------------------------------
# Saliency, in-context learning


def token_saliency(lm, prompt, target) -> torch.Tensor:
    """Gradient × input saliency of log p(target | prompt): |Σ_d e_id ∂f/∂e_id| per token, ``[seq]``
    (Simonyan et al. 2014; Shrikumar et al. 2017). One forward and one backward pass."""
    ids = _ids(lm, prompt)
    tid = _target_id(lm, target)
    emb = lm.model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logp = torch.log_softmax(lm.last_logits(inputs_embeds=emb)[0].float(), -1)[tid]
    (grad,) = torch.autograd.grad(logp, emb)
    return (grad * emb).sum(-1)[0].abs().detach().cpu()


def few_shot_prompt(demos: Sequence[tuple[str, str]], query: str) -> str:
    """``Review: …\\nSentiment: label\\n\\n`` for each demonstration, then the query without its label."""
    if isinstance(demos, (str, bytes)) or not isinstance(demos, Sequence):
        raise TypeError("demos must be a list of (review, label) pairs of strings")
    for k, d in enumerate(demos):
        if not (isinstance(d, (tuple, list)) and len(d) == 2 and all(isinstance(v, str) and v.strip() for v in d)):
            raise ValueError(f"demonstration {k} must be a (review, label) pair of non-empty strings, got {d!r}")
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query must be a non-empty string, got {query!r}")
    parts = [f"Review: {x}\nSentiment: {y}\n\n" for x, y in demos]
    return "".join(parts) + f"Review: {query}\nSentiment:"


def prefixed_next_logits(lm, prefix: str, suffixes: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """Next-token logits after ``prefix + suffix`` for every suffix, ``[n, vocab]``, running the shared prefix once
    per batch.

    Few-shot prompts share their demonstrations: prefix and suffix are tokenised separately and concatenated
    (as :func:`segment_ids` does), and ``lm.next_token_logits(..., shared_prefix=True)`` computes the
    prefix's keys and values once and reuses them for every query of a batch.
    """
    _check_lm(lm)
    if isinstance(suffixes, str):
        suffixes = [suffixes]
    if suffixes is None or isinstance(suffixes, bytes):
        raise TypeError("suffixes must be a list of strings")
    suffixes = list(suffixes)
    batch_size = _int(batch_size, "batch_size", 1)
    if not suffixes or any(not isinstance(x, str) or not x for x in suffixes):
        raise ValueError("suffixes must be a non-empty list of non-empty strings")
    p_ids = _ids(lm, prefix)[0].tolist()
    return lm.next_token_logits([p_ids + lm.encode(x) for x in suffixes], batch_size=batch_size, shared_prefix=True)


# --------------------------------------------------------------------------------------------------
# Uncertainty and calibration


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H = −Σ p log p (nats) of softmax(logits) over the last axis.

    Logits of −inf (masked tokens, p = 0) contribute 0 · log 0 = 0; NaN or +inf logits, or a row without a
    finite logit, raise ``ValueError`` (there is no distribution to measure).
    """
    if not isinstance(logits, torch.Tensor):
        logits = _tensor(logits, "logits")
    if logits.is_complex() or not logits.is_floating_point():
        logits = _tensor(logits, "logits")
    if logits.dim() < 1 or logits.shape[-1] == 0:
        raise ValueError(f"logits must have a non-empty last axis (the vocabulary), got shape {list(logits.shape)}")
    if torch.isnan(logits).any() or torch.isposinf(logits).any():
        raise ValueError("logits contain NaN or +inf: there is no distribution whose entropy could be measured")
    if not torch.isfinite(logits).any(-1).all():
        raise ValueError("a row of logits is all −inf: no token has positive probability")
    logp = torch.log_softmax(logits.double(), -1)
    terms = torch.where(torch.isneginf(logits), torch.zeros_like(logp), logp.exp() * logp)
    return (0.0 - terms.sum(-1)).to(logits.dtype if logits.dtype == torch.float64 else torch.float32)


def _calibration_inputs(confidence, correct, n_bins=None):
    for name, v in (("confidence", confidence), ("correct", correct)):
        if isinstance(v, (str, bytes)) or v is None:
            raise TypeError(f"{name} must be a tensor or a list of numbers, got {type(v).__name__}")
    conf = torch.as_tensor(confidence, dtype=torch.float64).flatten()
    corr = torch.as_tensor(correct, dtype=torch.float64).flatten()
    if conf.shape != corr.shape:
        raise ValueError(f"{conf.numel()} confidences but {corr.numel()} correctness values")
    if conf.numel() == 0:
        raise ValueError("no predictions given")
    if torch.isnan(conf).any() or torch.isnan(corr).any():
        raise ValueError("confidence and correct must not contain NaN")
    if ((conf < 0) | (conf > 1)).any():
        raise ValueError("confidences must lie in [0, 1]")
    if not ((corr == 0) | (corr == 1)).all():
        raise ValueError("correct must hold 0 (wrong) and 1 (right) only")
    if n_bins is not None:
        _int(n_bins, "n_bins", 1)
    return conf, corr


def reliability_curve(confidence, correct, n_bins: int = 10) -> dict[str, torch.Tensor]:
    """Equal-width bins on [0, 1] (the last bin includes 1): per bin the count, mean confidence, accuracy."""
    conf, corr = _calibration_inputs(confidence, correct, n_bins)
    b = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    count = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b, torch.ones_like(conf))
    sconf = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b, conf)
    sacc = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b, corr)
    safe = count.clamp_min(1)
    return {"count": count, "confidence": sconf / safe, "accuracy": sacc / safe}


def expected_calibration_error(confidence, correct, n_bins: int = 10) -> torch.Tensor:
    """ECE = Σ_b (n_b / n) · |acc_b − conf_b| over equal-width confidence bins (Guo et al. 2017)."""
    curve = reliability_curve(confidence, correct, n_bins)
    n = curve["count"].sum()
    return (curve["count"] / n * (curve["accuracy"] - curve["confidence"]).abs()).sum()


def auroc(score, correct) -> float:
    """Area under the ROC curve of ``score`` for separating correct from wrong answers (scikit-learn)."""
    from sklearn.metrics import roc_auc_score

    for name, v in (("score", score), ("correct", correct)):
        if isinstance(v, (str, bytes)) or v is None:
            raise TypeError(f"{name} must be a tensor or a list of numbers, got {type(v).__name__}")
    s = torch.as_tensor(score, dtype=torch.float64).flatten()
    c = torch.as_tensor(correct, dtype=torch.float64).flatten()
    if s.shape != c.shape or s.numel() == 0:
        raise ValueError(f"give one score per answer: {s.numel()} scores but {c.numel()} correctness values")
    if not torch.isfinite(s).all():
        raise ValueError("score contains NaN or inf")
    if not ((c == 0) | (c == 1)).all():
        raise ValueError("correct must hold 0 (wrong) and 1 (right) only")
    if c.min() == c.max():
        raise ValueError("the AUROC needs both right and wrong answers; all answers are " + ("right" if c[0] else "wrong"))
    return float(roc_auc_score(c.numpy().astype(int), s.numpy()))
