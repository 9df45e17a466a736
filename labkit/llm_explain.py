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
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch


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


def _ids(lm, prompt) -> torch.Tensor:
    """Token ids ``[1, seq]`` of a prompt (a string or a list of ids), with clear errors for bad input."""
    if isinstance(prompt, str):
        if not prompt:
            raise ValueError("the prompt is empty: give a non-empty string")
        ids = lm.encode(prompt)
    else:
        ids = [int(i) for i in prompt]
    if not ids:
        raise ValueError("the prompt is empty: give a non-empty string")
    if lm.max_length and len(ids) > lm.max_length:
        raise ValueError(f"the prompt has {len(ids)} tokens, more than the model's context of {lm.max_length}")
    return torch.tensor([ids], device=lm.device)


def _target_id(lm, target) -> int:
    if isinstance(target, str):
        return lm.token_id(target)
    if not 0 <= int(target) < lm.vocab_size:
        raise ValueError(f"target token id {target} is outside the vocabulary (0-{lm.vocab_size - 1})")
    return int(target)


def _baseline_id(lm, baseline) -> int:
    if baseline is None:
        return int(lm.tokenizer.pad_token_id)
    return _target_id(lm, baseline)


# --------------------------------------------------------------------------------------------------
# Local token attributions


def target_logprob(lm, target, batch_size: int = 64, prefix: Sequence[int] = ()) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(ids) = log p(target | prefix + ids) at the last position, for a batch of equally long id rows ``[n, seq]``.

    ``prefix``: token ids put in front of every row and never perturbed (e.g. the tokenizer's BOS token, which
    gives the model a fixed first position — its "attention sink" — whatever the attribution method masks).
    """
    tid = _target_id(lm, target)
    head = torch.tensor([int(i) for i in prefix], dtype=torch.long)

    @torch.no_grad()
    def f(ids: torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(ids)
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


def integrated_gradients(lm, prompt, target, n_steps: int = 32, baseline=None, fixed: int = 0, batch_size: int = 16
                         ) -> tuple[torch.Tensor, float, float]:
    """Integrated Gradients of log p(target | prompt) with respect to the token embeddings.

    φ_i = Σ_d (e_id − e'_id) · ∫₀¹ ∂f/∂e_id (e' + α(e − e')) dα, computed by captum's ``LayerIntegratedGradients``
    on the embedding layer with a Gauss-Legendre rule of ``n_steps`` points, all steps in one batch. The
    baseline x' replaces every token by ``baseline`` (a token string or id; default: the pad token) except the
    first ``fixed`` tokens, which stay as they are (so they get φ = 0 and the model keeps its first position,
    e.g. a BOS token). Returns ``(φ [seq], delta, f(x) − f(x'))`` where delta = Σφ − (f(x) − f(x')) is captum's
    convergence delta (completeness error): report it, a large delta means too few steps for this path.
    ``batch_size`` steps go through the model at once (memory grows with it: activations are kept for the
    backward pass).
    """
    from captum.attr import LayerIntegratedGradients

    ids = _ids(lm, prompt)
    tid = _target_id(lm, target)
    if not 0 <= fixed < ids.shape[1]:
        raise ValueError(f"fixed={fixed}: must leave at least one of the prompt's {ids.shape[1]} tokens to attribute")
    if n_steps < 1:
        raise ValueError("n_steps must be >= 1")
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
    return attr[0].sum(-1).detach().float().cpu(), float(delta), gap


def leave_one_out_scores(score_fn: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor, baseline_id: int) -> torch.Tensor:
    """φ_i = f(x) − f(x with token i replaced by ``baseline_id``), for ids ``[seq]``; one batched call of f.

    ``score_fn`` maps a batch of id rows ``[n, seq]`` to scores ``[n]``. Row 0 of the batch is x itself.
    """
    ids = torch.as_tensor(ids).flatten()
    if ids.numel() == 0:
        raise ValueError("the prompt is empty")
    n = ids.numel()
    batch = ids.repeat(n + 1, 1)
    batch[torch.arange(1, n + 1), torch.arange(n)] = baseline_id
    scores = score_fn(batch)
    return scores[0] - scores[1:]


def leave_one_out(lm, prompt, target, baseline=None, prefix: Sequence[int] = ()) -> torch.Tensor:
    """Leave-one-token-out occlusion of log p(target | prefix + prompt): ``[seq]`` (see :func:`leave_one_out_scores`)."""
    ids = _ids(lm, prompt)[0]
    return leave_one_out_scores(target_logprob(lm, target, prefix=prefix), ids.cpu(), _baseline_id(lm, baseline))


def segment_ids(lm, segments: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise a prompt given as segments; return ``(ids [seq], segment index of each token [seq])``.

    Segments are tokenised separately and concatenated, so every token belongs to exactly one segment.
    """
    if isinstance(segments, str) or not segments:
        raise ValueError("segments must be a non-empty list of strings")
    ids, seg = [], []
    for k, s in enumerate(segments):
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
    n = int(seg.max()) + 1
    keep = ~torch.eye(n + 1, n, dtype=torch.bool)[[n] + list(range(n))]  # row 0 keeps all, row k+1 drops k
    keep[0] = True
    values = score_fn(_masked(ids, seg, keep, baseline_id))
    return values[0] - values[1:]


def shapley_exact(score_fn, ids: torch.Tensor, seg: torch.Tensor, baseline_id: int) -> torch.Tensor:
    """Exact Shapley values of the segments: evaluate all 2ⁿ coalitions in batches and apply
    φ_i = Σ_{S ∌ i} |S|!(n−|S|−1)!/n! [v(S ∪ {i}) − v(S)], with v(S) = f(prompt with only S kept). ``[n]``."""
    n = int(seg.max()) + 1
    if n > 14:
        raise ValueError(f"{n} segments need 2^{n} evaluations: use shapley_sampling for more than 14 segments")
    masks = torch.tensor(list(itertools.product([False, True], repeat=n)))  # [2^n, n], row r = binary of r
    values = score_fn(_masked(ids, seg, masks, baseline_id)).double()
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

    n = int(seg.max()) + 1

    def forward(batch):
        return score_fn(batch)

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
    if X_train.shape[-1] != X_test.shape[-1]:
        raise ValueError(f"train features have width {X_train.shape[-1]}, test features {X_test.shape[-1]}")
    if X_train.shape[-2] != len(y_train):
        raise ValueError(f"X_train has {X_train.shape[-2]} rows but there are {len(y_train)} labels")
    if l2 < 0:
        raise ValueError("the ridge penalty l2 must be >= 0")
    Xtr, Xte = X_train.double(), X_test.double()
    mu, sd = Xtr.mean(-2, keepdim=True), Xtr.std(-2, keepdim=True).clamp_min(1e-8)
    Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    ones = lambda X: torch.ones(*X.shape[:-1], 1, dtype=X.dtype)  # noqa: E731
    Xtr, Xte = torch.cat([Xtr, ones(Xtr)], -1), torch.cat([Xte, ones(Xte)], -1)
    t = 2 * torch.as_tensor(y_train).double() - 1
    reg = l2 * torch.eye(Xtr.shape[-1], dtype=Xtr.dtype)
    reg[-1, -1] = 0.0
    w = torch.linalg.solve(Xtr.transpose(-1, -2) @ Xtr + reg, Xtr.transpose(-1, -2) @ t[..., None])
    return (Xte @ w)[..., 0]


def probe_accuracy(X_train, y_train, X_test, y_test, l2: float = 1.0) -> torch.Tensor:
    """Held-out accuracy of :func:`probe_scores`, ``[...]`` (one value per layer when batched)."""
    if X_test.shape[-2] != len(y_test):
        raise ValueError(f"X_test has {X_test.shape[-2]} rows but there are {len(y_test)} labels")
    pred = probe_scores(X_train, y_train, X_test, l2) > 0
    return (pred == torch.as_tensor(y_test).bool()).double().mean(-1)


def control_labels(word_types: Sequence[str], seed: int = 0) -> torch.Tensor:
    """Hewitt & Liang (2019) control task: a random but fixed label in {0, 1} per word *type*; examples
    sharing a word share its label, so a probe can only succeed by memorising word identity."""
    types = sorted(set(word_types))
    rng = np.random.default_rng(seed)
    table = dict(zip(types, rng.integers(0, 2, len(types))))
    return torch.tensor([int(table[w]) for w in word_types])


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
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < lm.n_layers:
        raise ValueError(f"layer {layer} out of range: this model has {lm.n_layers} layers (0-{lm.n_layers - 1})")
    batches = torch.as_tensor(batches)
    if batches.dim() != 2 or batches.numel() == 0:
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
    token_ids = token_ids.flatten()
    types, inverse, counts = torch.unique(token_ids, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(types), acts.shape[-1]).index_add_(0, inverse, acts.float())
    means = sums / counts[:, None]
    means[counts < min_count] = -float("inf")
    return types[means.topk(k, dim=0).indices.T]


def simulate_token_list(token_ids: torch.Tensor, explanation: torch.Tensor) -> torch.Tensor:
    """*Simulate*: predicted activation 1 where the token is in the explanation's list, else 0.
    ``token_ids [N]``, ``explanation [n_neurons, k]`` → ``[N, n_neurons]``."""
    return (token_ids.flatten()[:, None, None] == explanation[None]).any(-1).float()


def explanation_score(simulated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """*Score*: Pearson correlation of simulated and real activations over tokens, per neuron (axis 0)."""
    s = simulated.double() - simulated.double().mean(0)
    r = real.double() - real.double().mean(0)
    den = (s.norm(dim=0) * r.norm(dim=0)).clamp_min(1e-12)
    return ((s * r).sum(0) / den).float()


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
    parts = [f"Review: {x}\nSentiment: {y}\n\n" for x, y in demos]
    return "".join(parts) + f"Review: {query}\nSentiment:"


def prefixed_next_logits(lm, prefix: str, suffixes: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """Next-token logits after ``prefix + suffix`` for every suffix, ``[n, vocab]``, running the shared prefix once
    per batch.

    Few-shot prompts share their demonstrations: prefix and suffix are tokenised separately and concatenated
    (as :func:`segment_ids` does), and ``lm.next_token_logits(..., shared_prefix=True)`` computes the
    prefix's keys and values once and reuses them for every query of a batch.
    """
    if isinstance(suffixes, str):
        suffixes = [suffixes]
    suffixes = list(suffixes)
    if not suffixes or any(not isinstance(x, str) or not x for x in suffixes):
        raise ValueError("suffixes must be a non-empty list of non-empty strings")
    p_ids = _ids(lm, prefix)[0].tolist()
    return lm.next_token_logits([p_ids + lm.encode(x) for x in suffixes], batch_size=batch_size, shared_prefix=True)


# --------------------------------------------------------------------------------------------------
# Uncertainty and calibration


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H = −Σ p log p (nats) of softmax(logits) over the last axis."""
    logp = torch.log_softmax(logits.float(), -1)
    return -(logp.exp() * logp).nan_to_num().sum(-1)


def _calibration_inputs(confidence, correct):
    conf = torch.as_tensor(confidence, dtype=torch.float64).flatten()
    corr = torch.as_tensor(correct, dtype=torch.float64).flatten()
    if conf.shape != corr.shape:
        raise ValueError(f"{conf.numel()} confidences but {corr.numel()} correctness values")
    if conf.numel() == 0:
        raise ValueError("no predictions given")
    if ((conf < 0) | (conf > 1)).any():
        raise ValueError("confidences must lie in [0, 1]")
    return conf, corr


def reliability_curve(confidence, correct, n_bins: int = 10) -> dict[str, torch.Tensor]:
    """Equal-width bins on [0, 1] (the last bin includes 1): per bin the count, mean confidence, accuracy."""
    conf, corr = _calibration_inputs(confidence, correct)
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

    return float(roc_auc_score(np.asarray(correct, dtype=int), np.asarray(score, dtype=float)))
