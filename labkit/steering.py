"""Representation engineering: reading a concept from the residual stream and steering with it.

Reading (Zou et al. 2023, *Representation Engineering: a top-down approach to AI transparency*): run
contrastive prompt pairs (x⁺_i, x⁻_i) through the model, take the last token's residual stream h_l(x) at every
layer l (all layers captured in one forward pass with :mod:`labkit.lm.hooks`), and find a direction v_l that
separates the two sides:

* difference of means  v_l = mean_i h_l(x⁺_i) − mean_i h_l(x⁻_i);
* PCA on pair differences  d_i = h_l(x⁺_i) − h_l(x⁻_i): v_l = first principal component of the
  symmetrised differences {±d_i} (Zou et al. randomise the order within a pair), signed so that
  mean_i d_i · v_l > 0.

A reading vector is judged by held-out accuracy: project h_l(x)·v_l and classify at the midpoint between the
training sides' mean projections (single examples), or ask which member of a held-out pair projects higher
(pairs).

Control (Turner et al. 2023, *Activation addition: steering language models without optimization*):
add c·v to the residual stream at chosen layers and positions through a forward hook,
h_l ← h_l + c·v. With c = 0 the output is bit-for-bit the unsteered output; c < 0 pushes the other way.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Sequence

import torch

from labkit.lm import hooks
from labkit.validation import language_model as _check_lm

__all__ = [
    "check_pairs",
    "pair_states",
    "token_states",
    "diff_of_means",
    "pca_reading_vector",
    "project",
    "reading_accuracy",
    "add_steering",
    "steered",
    "behaviour_score",
    "dose_response",
    "steered_scores",
    "load_contrast_pairs",
]


# --------------------------------------------------------------------------------------------------
# Inputs


def _coefficient(c, name: str = "the steering coefficient c") -> float:
    if isinstance(c, torch.Tensor) and c.numel() == 1:
        c = c.item()
    if isinstance(c, bool) or not isinstance(c, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(c).__name__}: {c!r}")
    c = float(c)
    if not math.isfinite(c):
        raise ValueError(f"{name} must be finite, got {c}")
    return c


def _states(x, name: str, min_dim: int = 1) -> torch.Tensor:
    """A real, finite, non-empty tensor with at least ``min_dim`` axes."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (activations), got dtype {x.dtype}")
    if x.dim() < min_dim or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty tensor with at least {min_dim} axes, got shape {list(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _strings(xs, name: str) -> list[str]:
    if isinstance(xs, str) or xs is None or not isinstance(xs, Sequence):
        raise TypeError(f"{name} must be a list of strings, got {type(xs).__name__}")
    xs = list(xs)
    if not xs:
        raise ValueError(f"{name} must not be empty")
    for x in xs:
        if not isinstance(x, str) or not x.strip():
            raise ValueError(f"every entry of {name} must be a non-empty string, got {x!r}")
    return xs


def _check_layers(lm, layers) -> list[int]:
    _check_lm(lm)
    n = lm.n_layers
    if layers is None:
        return list(range(n))
    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers:
        raise ValueError("layers must not be empty")
    for layer in layers:
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise TypeError(f"layer indices must be ints, got {layer!r}")
        if not 0 <= layer < n:
            raise ValueError(f"layer {layer} out of range: this model has {n} layers (0-{n - 1})")
    return layers


def check_pairs(positive: Sequence[str], negative: Sequence[str]) -> tuple[list[str], list[str]]:
    """Validate contrast pairs: two equally long lists of non-empty strings (pair i = positive[i], negative[i])."""
    if isinstance(positive, str) or isinstance(negative, str):
        raise TypeError("positive and negative must be lists of prompts, not single strings")
    positive, negative = list(positive), list(negative)
    if len(positive) != len(negative):
        raise ValueError(
            f"contrast pairs need equal counts: {len(positive)} positive but {len(negative)} negative prompts "
            f"(pair i is positive[i] with negative[i])"
        )
    if not positive:
        raise ValueError("no contrast pairs given")
    for p in positive + negative:
        if not isinstance(p, str) or not p.strip():
            raise ValueError("every prompt of a contrast pair must be a non-empty string")
    return positive, negative


# --------------------------------------------------------------------------------------------------
# Activations


def pair_states(lm, positive: Sequence[str], negative: Sequence[str], layers=None, batch_size: int = 32):
    """Last-token residual streams of contrast pairs: ``(H⁺, H⁻)``, each ``[n_layers, n_pairs, d_model]``.

    Validates the pairs (:func:`check_pairs`: equal counts, non-empty prompts) and runs both sides through
    ``lm.last_token_states`` together, so all layers come from one forward pass per batch.
    """
    _check_lm(lm)
    positive, negative = check_pairs(positive, negative)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    H = lm.last_token_states(positive + negative, layers=layers, batch_size=batch_size)
    return H[:, : len(positive)], H[:, len(positive) :]


@torch.no_grad()
def token_states(lm, prompt: str, layers=None) -> torch.Tensor:
    """Residual stream after each layer at every token of one prompt: ``[n_layers, seq, d_model]`` (CPU)."""
    layers = _check_layers(lm, layers)
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    enc = lm.batch([prompt])
    sites = [f"resid_post.{layer}" for layer in layers]
    with hooks.capture(lm, sites) as cache:
        lm.model(**enc)
    return torch.stack([cache[s][0] for s in sites]).float().cpu()


# --------------------------------------------------------------------------------------------------
# Reading vectors


def _paired(pos: torch.Tensor, neg: torch.Tensor) -> None:
    _states(pos, "pos")
    _states(neg, "neg")
    if pos.shape != neg.shape:
        raise ValueError(
            f"positive and negative states must have the same shape [..., n_pairs, d_model]; got "
            f"{list(pos.shape)} and {list(neg.shape)} (contrast pairs of unequal counts?)"
        )
    if pos.dim() < 2 or pos.shape[-2] < 2:
        raise ValueError("need at least two contrast pairs, shaped [..., n_pairs, d_model]")


def diff_of_means(pos: torch.Tensor, neg: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """v = mean(h⁺) − mean(h⁻) over the pair axis (−2); ``[..., n, d] → [..., d]``, unit length by default.

    Pos and neg need not be paired, but the course passes paired states; shapes must agree.
    """
    _paired(pos, neg)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be True or False, got {normalize!r}")
    v = pos.mean(-2) - neg.mean(-2)
    if not normalize:
        return v
    norm = v.norm(dim=-1, keepdim=True)
    if (norm == 0).any():
        raise ValueError("the two sides have identical means: the difference of means is 0 and has no direction")
    return v / norm


def pca_reading_vector(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """PCA on pair differences (Zou et al. 2023): the first principal component of the symmetrised
    differences {d_i, −d_i}, d_i = h⁺_i − h⁻_i.

    Zou et al. put the two members of each pair in random order before taking differences, so the
    differences have mean ≈ 0 and their first PC is the direction along which the pairs differ most.
    Symmetrising makes the mean exactly 0; the covariance is then (1/n) Σ_i d_i d_iᵀ, so v is the first right
    singular vector of the *uncentred* difference matrix D. (Centring D instead would remove the mean
    difference — the very signal we want.) ``[..., n, d] → [..., d]``, unit length, signed so that
    mean_i d_i · v > 0 (PCA fixes no sign). Batched over leading axes (e.g. layers) with ``torch.linalg.svd``.
    """
    _paired(pos, neg)
    d = (pos - neg).double()
    _, _, vh = torch.linalg.svd(d, full_matrices=False)
    v = vh[..., 0, :]
    sign = torch.sign((d.mean(-2) * v).sum(-1, keepdim=True))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (v * sign).to(pos.dtype)


def project(states: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scores h·v: states ``[..., n, d]`` with vectors ``[..., d]`` → ``[..., n]``."""
    _states(states, "states", 2)
    _states(v, "v", 1)
    if v.dim() > 1 and states.shape[:-2] != v.shape[:-1]:
        raise ValueError(f"states {list(states.shape)} and vectors {list(v.shape)} must share their leading axes "
                         f"(e.g. one vector per layer: states [layers, n, d], v [layers, d])")
    if states.shape[-1] != v.shape[-1]:
        raise ValueError(f"states have width {states.shape[-1]} but the vector has width {v.shape[-1]}")
    return torch.einsum("...nd,...d->...n", states, v)


def reading_accuracy(v, train_pos, train_neg, test_pos, test_neg) -> dict[str, torch.Tensor]:
    """Held-out accuracy of reading vectors ``v`` ([..., d], e.g. one per layer).

    * ``"single"``: classify each held-out example as positive when h·v > t, with t the midpoint of the
      training sides' mean projections; accuracy over both sides;
    * ``"pair"``: fraction of held-out pairs with h⁺·v > h⁻·v.
    """
    _paired(train_pos, train_neg)
    _paired(test_pos, test_neg)
    _states(v, "v", 1)
    t = (project(train_pos, v).mean(-1) + project(train_neg, v).mean(-1)) / 2
    sp, sn = project(test_pos, v), project(test_neg, v)
    single = ((sp > t[..., None]).float().mean(-1) + (sn <= t[..., None]).float().mean(-1)) / 2
    pair = (sp > sn).float().mean(-1)
    return {"single": single, "pair": pair}


# --------------------------------------------------------------------------------------------------
# Steering


def add_steering(act: torch.Tensor, v: torch.Tensor, c: float, positions=None) -> torch.Tensor:
    """Activation addition h ← h + c·v (Turner et al. 2023) at every position, or only at ``positions``.

    ``act`` is ``[batch, seq, d]``, ``v`` is ``[d]``. Returns a new tensor (the input is not modified).
    """
    if not isinstance(act, torch.Tensor) or act.dim() != 3:
        raise ValueError(f"act must be a residual stream [batch, seq, d], got {getattr(act, 'shape', type(act).__name__)}")
    _states(v, "the steering vector v", 1)
    c = _coefficient(c)
    if v.dim() != 1 or v.shape[0] != act.shape[-1]:
        raise ValueError(
            f"the steering vector has shape {list(v.shape)}, but the residual stream has width {act.shape[-1]}: "
            f"give a vector of shape [{act.shape[-1]}]"
        )
    v = v.to(device=act.device, dtype=act.dtype)
    if positions is None:
        return act + c * v
    if isinstance(positions, (str, bytes, float)):
        raise TypeError(f"positions must be an int, a list of ints or a slice, got {positions!r}")
    try:
        act[:, positions]
    except (IndexError, TypeError, RuntimeError) as e:
        raise ValueError(f"positions {positions!r} do not fit a sequence of length {act.shape[1]}: {e}") from None
    out = act.clone()
    out[:, positions] = out[:, positions] + c * v
    return out


@contextlib.contextmanager
def steered(lm, v: torch.Tensor, c: float, layers, positions=None):
    """Run the ``with`` block with c·v added to ``resid_post.l`` for every l in ``layers``.

    ``with steered(lm, v, 4.0, layers=[8]): lm.generate(...)``. A vector of the wrong width, a layer out of
    range or a non-finite coefficient raise ``ValueError`` before any hook is installed.
    """
    layers = _check_layers(lm, layers)
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"the steering vector must be a tensor [{lm.d_model}], got {type(v).__name__}")
    if v.dim() != 1 or v.shape[0] != lm.d_model:
        raise ValueError(
            f"the steering vector has shape {list(v.shape)}, but {lm.name} has a residual stream of width "
            f"{lm.d_model}: give a vector of shape [{lm.d_model}] (e.g. a reading vector of one layer)"
        )
    c = _coefficient(c)
    if not torch.isfinite(v).all():
        raise ValueError("the steering vector must be finite (it contains NaN or inf)")
    v = v.to(device=lm.device, dtype=next(lm.model.parameters()).dtype)
    edits = {f"resid_post.{layer}": (lambda act: add_steering(act, v, c, positions)) for layer in layers}
    with hooks.patch(lm, edits):
        yield


def behaviour_score(lm, prompts: Sequence[str], positive: Sequence[str], negative: Sequence[str]) -> torch.Tensor:
    """log Σ_{t∈positive} p(t | x) − log Σ_{t∈negative} p(t | x) for the next token of each prompt, ``[n]``.

    ``positive``/``negative`` are single-token strings (e.g. ``" great"``, ``" terrible"``).
    """
    _check_lm(lm)
    prompts = _strings(prompts, "prompts")
    pos_ids = [lm.token_id(t) for t in _strings(positive, "positive")]
    neg_ids = [lm.token_id(t) for t in _strings(negative, "negative")]
    if set(pos_ids) & set(neg_ids):
        raise ValueError(f"positive and negative share tokens {sorted(set(positive) & set(negative))}: the score would cancel")
    logp = torch.log_softmax(lm.next_token_logits(list(prompts)), dim=-1)
    return torch.logsumexp(logp[:, pos_ids], -1) - torch.logsumexp(logp[:, neg_ids], -1)


def dose_response(lm, prompts, v, coefficients: Sequence[float], layers, positive, negative) -> torch.Tensor:
    """Behaviour score under steering for each coefficient: ``[len(coefficients), len(prompts)]``."""
    if isinstance(coefficients, (str, bytes)) or not isinstance(coefficients, Sequence) or not coefficients:
        raise ValueError("coefficients must be a non-empty list of numbers")
    coefficients = [_coefficient(c, "every coefficient") for c in coefficients]
    return torch.stack([_scored(lm, prompts, v, c, layers, positive, negative) for c in coefficients])


def steered_scores(lm, prompts: Sequence[str], v: torch.Tensor, c: float, layer: int, positive: Sequence[str],
                   negative: Sequence[str], positions=None) -> torch.Tensor:
    """The behaviour score of each prompt while c·v is added to the residual stream after block ``layer``: ``[n]``.

    A forward hook on ``resid_post.layer`` replaces h by h + c·v (Turner et al. 2023) at every position, or only
    at ``positions`` (e.g. ``[-1]``, the last token; prompts are left-padded so -1 is every prompt's last
    token); the next-token distribution then gives
    ``score(x) = log Σ_{w∈positive} p(w | x) − log Σ_{w∈negative} p(w | x)`` (:func:`behaviour_score`).
    The hook is removed afterwards, also on error.
    """
    layer = _check_layers(lm, [layer])[0]
    with steered(lm, v, c, [layer], positions):
        return behaviour_score(lm, prompts, positive, negative)


def _scored(lm, prompts, v, c, layers, positive, negative):
    with steered(lm, v, c, layers):
        return behaviour_score(lm, prompts, positive, negative)


# --------------------------------------------------------------------------------------------------
# Data


def load_contrast_pairs() -> tuple[list[str], list[str]]:
    """The course's sentiment contrast pairs (``labkit/data/sentiment_pairs.json``, notes in the ``.md``).

    Returns ``(positive, negative)``: 64 sentences each, pair i differing only in the sentiment of a few words.
    """
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent / "data" / "sentiment_pairs.json"
    pairs = json.loads(path.read_text())["pairs"]
    return [p["positive"] for p in pairs], [p["negative"] for p in pairs]
