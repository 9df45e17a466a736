"""Causal mediation analysis of gender bias in a language model (Vig et al. 2020).

Outcome: for a prompt x about a profession, ``y(x) = p(anti-stereotypical pronoun | x) / p(stereotypical
pronoun | x)``, e.g. ``y = p(he | "The nurse said that") / p(she | "The nurse said that")``; y = 1 is unbiased.

Intervention *set-gender*: replace the profession by the anti-stereotypical gendered word ("man" for a
female-stereotyped profession, "woman" for a male-stereotyped one). With ``y_null = y(x)`` and
``y_set = y(x with the word replaced)``:

* total effect ``TE = E_x[y_set(x) / y_null(x) − 1]`` (averaged over templates × professions);
* natural indirect effect of a mediator z: ``NIE = E_x[y_{null, z_set}(x) / y_null(x) − 1]`` — the input is
  unchanged, the mediator takes the value it has under set-gender;
* natural direct effect: ``NDE = E_x[y_{set, z_null}(x) / y_null(x) − 1]`` — the input is changed, the
  mediator is held at its null value (Pearl 2001).

Mediators: single MLP neurons at the profession position (``mlp_post.L``), attention heads (``head.L``, the
head's output at every position) and, as in the lecture and Vig et al., the attention weights of a head
(``pattern.L``: α_{l,h,i,j} for every query i and key j, the values still computed from the input); sites are
named as in :mod:`labkit.lm.hooks`.

Interventions go through the course's one intervention engine, :func:`labkit.lm.interventions.run_interventions`
(the same as notebook 07's patching): row ``j·K + k`` of one forward pass is prompt k under intervention j, so one
pass tests many neurons or heads, and each pass starts at the lowest layer it intervenes on, from the cached
residual stream (the layers below cannot change); the result is the same as a full forward pass per
intervention. The outcome is read by :func:`labkit.lm.interventions.logratio_readout` (log y, in float64).

Reference: Vig, Gehrmann, Belinkov, Qian, Nevo, Singer & Shieber (2020), *Investigating gender bias in
language models using causal mediation analysis*, NeurIPS.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch

from labkit.lm.interventions import (
    attribution_patching,
    head_interventions,
    logratio_readout,
    neuron_interventions,
    paired_ids,
    run_interventions,
)
from labkit.validation import integer_at_least as _int, language_model as _check_lm

__all__ = [
    "TEMPLATES",
    "set_gender_word",
    "pronoun_ids",
    "effect_from_ratio",
    "total_effect",
    "tokenize_pairs",
    "log_ratio",
    "total_effects",
    "mediation_inputs",
    "head_effects",
    "attention_effects",
    "neuron_nie",
    "neuron_nie_estimate",
    "neuron_edit",
    "joint_effects",
    "concentration",
]

#: The 17 templates of Vig et al. (2020).
TEMPLATES = [
    "The {} said that",
    "The {} yelled that",
    "The {} whispered that",
    "The {} wanted that",
    "The {} desired that",
    "The {} wished that",
    "The {} ate because",
    "The {} ran because",
    "The {} drove because",
    "The {} slept because",
    "The {} cried because",
    "The {} laughed because",
    "The {} went home because",
    "The {} stayed up because",
    "The {} was fired because",
    "The {} was promoted because",
    "The {} yelled because",
]

# --------------------------------------------------------------------------------------------------
# Input checks


def _numbers(x, name: str) -> torch.Tensor:
    """A non-empty float64 tensor of finite numbers."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be a tensor or a list of numbers, got {type(x).__name__}")
    try:
        t = torch.as_tensor(x, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be a tensor or a list of numbers: {e}") from None
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf")
    return t


def _professions(professions) -> list[dict]:
    if isinstance(professions, (str, bytes, dict)) or not isinstance(professions, Sequence):
        raise TypeError("professions must be a list of dicts with 'word' and 'stereotypical' "
                        "(datasets.load_professions() gives them)")
    professions = list(professions)
    if not professions:
        raise ValueError("professions must not be empty")
    for p in professions:
        if not isinstance(p, dict) or not isinstance(p.get("word"), str) or not p["word"].strip():
            raise ValueError(f"each profession is a dict with a non-empty 'word', got {p!r}")
        set_gender_word(p)  # checks the stereotypical score
    return professions


def _templates(templates) -> list[str]:
    if isinstance(templates, (str, bytes)) or not isinstance(templates, Sequence):
        raise TypeError("templates must be a list of strings with one '{}' each, e.g. mediation.TEMPLATES")
    templates = list(templates)
    if not templates:
        raise ValueError("templates must not be empty")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(f"template {t!r} needs exactly one '{{}}' for the profession")
    return templates


def _position(position, seq_len: int) -> int:
    position = _int(position, "position")
    if not -seq_len <= position < seq_len:
        raise ValueError(f"position {position} is outside the prompts' {seq_len} tokens")
    return position


# --------------------------------------------------------------------------------------------------
# Professions (the data and Vig et al.'s filter are in labkit.datasets: load_professions, filter_professions)


def set_gender_word(profession: dict) -> str:
    """The anti-stereotypical gendered word for set-gender: "woman" for a male-stereotyped profession
    (stereotypical score > 0), "man" otherwise."""
    if not isinstance(profession, dict) or "stereotypical" not in profession:
        raise TypeError(f"profession must be a dict with a 'stereotypical' score (datasets.load_professions), got {profession!r}")
    score = profession["stereotypical"]
    if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
        raise ValueError(f"the stereotypical score must be a finite number (−1 female … +1 male), got {score!r}")
    return "woman" if score > 0 else "man"


def pronoun_ids(lm, stereotypical: Sequence[float] | torch.Tensor):
    """Token ids ``(anti, stereo)`` of the pronouns per profession: stereo = " he" when the score is > 0."""
    _check_lm(lm)
    s = _numbers(stereotypical, "stereotypical").float()
    he, she = lm.token_id(" he"), lm.token_id(" she")
    stereo = torch.where(s > 0, he, she)
    anti = torch.where(s > 0, she, he)
    return anti, stereo


# --------------------------------------------------------------------------------------------------
# Effects from probabilities and ratios


def effect_from_ratio(y_intervened: torch.Tensor, y_null: torch.Tensor) -> torch.Tensor:
    """The effect ``y_intervened / y_null − 1`` (TE, NDE or NIE for one prompt, depending on the intervention)."""
    y_intervened, y_null = _numbers(y_intervened, "y_intervened"), _numbers(y_null, "y_null")
    if (y_null <= 0).any() or (y_intervened <= 0).any():
        raise ValueError("ratios y = p(anti)/p(stereo) must be positive")
    return y_intervened / y_null - 1


def total_effect(p_null: torch.Tensor, p_set: torch.Tensor) -> torch.Tensor:
    """TE from probabilities ``[..., 2]`` = (p(anti), p(stereo)) under the null and the set-gender input.

    ``y = p_anti / p_stereo``; ``TE = y_set / y_null − 1`` per prompt (Vig et al. 2020, eq. 2).
    """
    p_null, p_set = _numbers(p_null, "p_null"), _numbers(p_set, "p_set")
    if p_null.shape[-1] != 2 or p_set.shape[-1] != 2:
        raise ValueError("give probabilities as [..., 2] = (p(anti), p(stereo))")
    if (p_null < 0).any() or (p_set < 0).any() or (p_null > 1).any() or (p_set > 1).any():
        raise ValueError("probabilities must lie in [0, 1]")
    return effect_from_ratio(p_set[..., 0] / p_set[..., 1], p_null[..., 0] / p_null[..., 1])


# --------------------------------------------------------------------------------------------------
# Inputs and the outcome


def tokenize_pairs(lm, null: str | Sequence[str], setg: str | Sequence[str], device=None):
    """Token ids of null and set-gender prompts as two ``[K, seq]`` tensors of the same shape.

    Interventions swap activations position by position, so each null prompt must have exactly as many
    tokens as its set-gender partner, and all pairs one length (to share a batch):
    :func:`labkit.lm.interventions.paired_ids`, with the two sides named as in mediation analysis.
    """
    _check_lm(lm)
    return paired_ids(lm, null, setg, device=device, names=("null", "set-gender"),
                      hint="keep professions that are one token, like ' man'; datasets.filter_professions does this")


def _pronoun_pairs(anti, stereo, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    for name, v in (("anti", anti), ("stereo", stereo)):
        t = torch.as_tensor(v) if not isinstance(v, (str, bytes)) else None
        if t is None or t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError(f"{name} must be integer token ids (from pronoun_ids or mediation_inputs), got {v!r}")
    anti, stereo = torch.as_tensor(anti).long().flatten(), torch.as_tensor(stereo).long().flatten()
    if len(anti) != K or len(stereo) != K:
        raise ValueError(f"one (anti, stereo) pronoun pair per prompt: {K} prompts, {len(anti)} and {len(stereo)} ids")
    return anti, stereo


@torch.no_grad()
def log_ratio(lm, ids: torch.Tensor, anti: torch.Tensor, stereo: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``log y = log p(anti | x) − log p(stereo | x)`` for each row of token ids ``[K, seq]``: a float64 tensor [K]."""
    _check_lm(lm)
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.numel() == 0:
        raise ValueError(f"ids must be a non-empty [K, seq] tensor of token ids, got {getattr(ids, 'shape', ids)!r}")
    anti, stereo = _pronoun_pairs(anti, stereo, len(ids))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    out = []
    for s in range(0, len(ids), batch_size):
        readout = logratio_readout(anti[s : s + batch_size], stereo[s : s + batch_size])
        out.append(readout(lm.last_logits(input_ids=ids[s : s + batch_size].to(lm.device))[:, None]).cpu())
    return torch.cat(out)


def total_effects(lm, professions: Sequence[dict], templates: Sequence[str] = TEMPLATES, batch_size: int = 512,
                  progress: bool = False) -> dict[str, torch.Tensor]:
    """TE of set-gender for every (template, profession): ``{"te", "y_null", "y_set"}``, each ``[templates, professions]``.

    ``TE = y_set / y_null − 1`` per prompt, ``y = p(anti) / p(stereo)``. Every prompt ("The nurse said that")
    and every set-gender prompt ("The man said that", shared by all professions of one direction) is scored
    once by ``lm.option_logprobs`` with a shared-prefix key/value cache (the prompts share their beginnings).
    Raises ``ValueError`` for a profession that is not one token like " man", or a template without exactly
    one ``{}``.
    """
    _check_lm(lm)
    professions = _professions(professions)
    templates = _templates(templates)
    _check_one_token(lm, professions)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    anti, stereo = pronoun_ids(lm, [p["stereotypical"] for p in professions])
    he = lm.token_id(" he")
    words = list(dict.fromkeys([p["word"] for p in professions] + ["man", "woman"]))
    prompts = [(t, w) for t in templates for w in words]
    lp = lm.option_logprobs([t.format(w) for t, w in prompts], [" he", " she"], shared_prefix=True,
                            batch_size=batch_size, progress=progress).double()
    lr = dict(zip(prompts, (lp[:, 0] - lp[:, 1]).tolist()))  # (template, word) -> log p(he) − log p(she)
    sign = torch.where(anti == he, 1.0, -1.0).double()  # log y = ± (log p(he) − log p(she))
    log_null = torch.tensor([[lr[(t, p["word"])] for p in professions] for t in templates], dtype=torch.float64) * sign
    log_set = torch.tensor([[lr[(t, set_gender_word(p))] for p in professions] for t in templates], dtype=torch.float64) * sign
    y_null, y_set = log_null.exp(), log_set.exp()
    return {"te": y_set / y_null - 1, "y_null": y_null, "y_set": y_set}


def _check_one_token(lm, professions: Sequence[dict]) -> None:
    professions = _professions(professions)
    n = len(lm.encode(" man"))
    for p in professions:
        k = len(lm.encode(" " + p["word"]))
        if k != n:
            raise ValueError(
                f"profession {p['word']!r} is {k} tokens {lm.tokens(' ' + p['word'])}; set-gender swaps it for the "
                f"{n}-token ' man'/' woman', so keep professions of that length (datasets.filter_professions does this)"
            )


def mediation_inputs(lm, professions: Sequence[dict], templates: Sequence[str], device=None):
    """Null and set-gender token ids ``[K, seq]`` and pronoun ids ``[K]`` for every (template, profession) pair.

    K = len(templates) × len(professions), template-major. All pairs must share one token length (use
    templates of one length). Raises ``ValueError`` for a profession that is not one token like " man".
    """
    _check_lm(lm)
    professions = _professions(professions)
    templates = _templates(templates)
    _check_one_token(lm, professions)
    null = [t.format(p["word"]) for t in templates for p in professions]
    setg = [t.format(set_gender_word(p)) for t in templates for p in professions]
    null_ids, set_ids = tokenize_pairs(lm, null, setg, device=device)
    anti, stereo = pronoun_ids(lm, [p["stereotypical"] for _ in templates for p in professions])
    return null_ids, set_ids, anti, stereo


# --------------------------------------------------------------------------------------------------
# Effects of interventions on neurons and heads (through labkit.lm.interventions)


def _effects(log_y: torch.Tensor, log_y_null: torch.Tensor) -> torch.Tensor:
    """Mean over prompts of y / y_null − 1 (computed from log ratios, in float64)."""
    return ((log_y - log_y_null).exp() - 1).mean(-1)


def head_effects(lm, null_ids, set_ids, anti, stereo, batch_size: int = 256, progress: bool = False) -> dict:
    """NIE and NDE of every attention head (its output at every position): ``{"nie", "nde"}`` ``[layers, heads]``,
    plus ``"te"``, the per-prompt total effect ``[K]``.

    NIE: null input, the head set to its set-gender value. NDE: set-gender input, the head held at its null
    value. Both are averaged over the K prompts: ``E_x[y / y_null(x) − 1]``.
    """
    _check_lm(lm)
    L, H = lm.n_layers, lm.n_heads
    ivs = head_interventions(L, H)
    y0, y1 = log_ratio(lm, null_ids, anti, stereo), log_ratio(lm, set_ids, anti, stereo)
    readout = logratio_readout(*_pronoun_pairs(anti, stereo, len(null_ids)))
    nie = run_interventions(lm, null_ids, set_ids, ivs, readout, batch_size, progress=progress)
    nde = run_interventions(lm, set_ids, null_ids, ivs, readout, batch_size, progress=progress)
    return {"nie": _effects(nie, y0).view(L, H), "nde": _effects(nde, y0).view(L, H), "te": (y1 - y0).exp() - 1}


def attention_effects(lm, null_ids, set_ids, anti, stereo, batch_size: int = 256, progress: bool = False) -> dict:
    """NIE and NDE of the attention *weights* of every head: ``{"nie", "nde"}`` ``[layers, heads]``.

    The mediator is head h's attention pattern α_{l,h,i,j} = softmax_j(q_i·k_j/√d + mask) for all query positions
    i and keys j (the site ``pattern.L``, index ``(h,)``), as in Vig et al. (2020) and the lecture. NIE: the null
    input with α_{l,h} set to its set-gender value, while the values v_j, and everything else, are computed from
    the null input; NDE: the set-gender input with α_{l,h} held at its null value. Unlike :func:`head_effects`
    (which replaces the head's whole output, ``Σ_j α_{l,h,i,j} v_j``), this isolates *where the head looks* from
    *what it reads*. Averaged over the K prompts: ``E_x[y / y_null(x) − 1]``. Patching a pattern runs the
    model's eager attention, which differs from the fused kernel by float rounding (about 1e-5 in log y).
    """
    _check_lm(lm)
    L, H = lm.n_layers, lm.n_heads
    ivs = [[(f"pattern.{layer}", (h,))] for layer in range(L) for h in range(H)]
    y0 = log_ratio(lm, null_ids, anti, stereo)
    readout = logratio_readout(*_pronoun_pairs(anti, stereo, len(null_ids)))
    nie = run_interventions(lm, null_ids, set_ids, ivs, readout, batch_size, progress=progress)
    nde = run_interventions(lm, set_ids, null_ids, ivs, readout, batch_size, progress=progress)
    return {"nie": _effects(nie, y0).view(L, H), "nde": _effects(nde, y0).view(L, H)}


def neuron_nie(lm, null_ids, set_ids, anti, stereo, neurons: Sequence[tuple[int, int]], position: int,
               batch_size: int = 512, skip_layers: bool = True, progress: bool = False) -> torch.Tensor:
    """Exact NIE of MLP neurons ``(layer, index)`` at ``position``, batched: a float64 tensor ``[n_neurons]``.

    Each neuron is one intervention: the null input with ``mlp_post.L[position, index]`` set to its
    set-gender value; ``batch_size`` neurons share a forward pass (along the batch dimension).
    """
    y0 = log_ratio(lm, null_ids, anti, stereo)
    position = _position(position, null_ids.shape[1])
    neurons = _neurons(lm, neurons)
    readout = logratio_readout(*_pronoun_pairs(anti, stereo, len(null_ids)))
    out = run_interventions(lm, null_ids, set_ids, neuron_interventions(neurons, position), readout,
                            batch_size, skip_layers, progress)
    return _effects(out, y0)


def neuron_nie_estimate(lm, null_ids, set_ids, anti, stereo, position: int, layers: Sequence[int] | None = None):
    """First-order NIE of every MLP neuron at ``position``: ``[layers, d_mlp]`` (attribution patching).

    ``log(1 + NIE_k) ≈ ∂ log y / ∂z · (z_set − z_null)`` per prompt k (Nanda 2023), from
    :func:`labkit.lm.interventions.attribution_patching` (one forward and one backward pass for all neurons of
    all layers, the same method as notebook 07); returns ``mean_k exp(·) − 1``.
    """
    _check_lm(lm)
    if not isinstance(null_ids, torch.Tensor) or null_ids.dim() != 2:
        raise ValueError(f"null_ids must be a [K, seq] tensor of token ids, got {getattr(null_ids, 'shape', null_ids)!r}")
    position = _position(position, null_ids.shape[1])
    if isinstance(layers, (str, bytes, int)):
        raise TypeError(f"layers must be a list of layer indices (or None for all), got {layers!r}")
    layers = list(range(lm.n_layers)) if layers is None else list(layers)
    if not layers:
        raise ValueError("layers must not be empty")
    for L in layers:
        if isinstance(L, bool) or not isinstance(L, numbers.Integral) or not 0 <= L < lm.n_layers:
            raise ValueError(f"layer {L!r} out of range: this model has {lm.n_layers} layers (0-{lm.n_layers - 1})")
    sites = [f"mlp_post.{L}" for L in layers]
    readout = logratio_readout(*_pronoun_pairs(anti, stereo, len(null_ids)))
    est = attribution_patching(lm, null_ids, set_ids, sites, readout, positions=position, per_pair=True)
    return torch.stack([est[s].double().exp() - 1 for s in sites]).mean(1)


def neuron_edit(position: int, index: torch.Tensor | Sequence[int], values: torch.Tensor):
    """An edit for ``hooks.patch`` on ``mlp_post.L`` that sets neurons ``index`` at ``position`` to ``values``.

    Row r of the batch gets neuron ``index[r]`` set to ``values[r]`` (one neuron per row), so one forward
    pass tests as many neurons as the batch has rows.
    """
    position = _int(position, "position")
    if isinstance(index, (str, bytes)) or torch.as_tensor(index).is_floating_point():
        raise TypeError(f"index must hold integer neuron indices, got {index!r}")
    index = torch.as_tensor(index).long()
    values = _numbers(values, "values") if not isinstance(values, torch.Tensor) else values
    if not values.is_floating_point() or not torch.isfinite(values).all():
        raise ValueError("values must be finite floating-point activations")
    if (index < 0).any():
        raise ValueError("neuron indices must be >= 0")
    if index.dim() != 1 or values.shape != index.shape:
        raise ValueError(f"give one value per neuron index: index {list(index.shape)}, values {list(values.shape)}")

    def edit(act: torch.Tensor) -> torch.Tensor:
        if len(index) != act.shape[0]:
            raise ValueError(f"{len(index)} neurons for a batch of {act.shape[0]} rows: give one neuron per row")
        new = act.clone()
        rows = torch.arange(act.shape[0], device=act.device)
        new[rows, position, index.to(act.device)] = values.to(act.device, act.dtype)
        return new

    return edit


def _neurons(lm, neurons) -> list[tuple[int, int]]:
    if isinstance(neurons, (str, bytes)) or not isinstance(neurons, Sequence) or not neurons:
        raise ValueError("neurons must be a non-empty list of (layer, index) pairs")
    out = []
    for n in neurons:
        if not (isinstance(n, (tuple, list)) and len(n) == 2) or any(
                isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in n):
            raise TypeError(f"each neuron is a (layer, index) pair of ints, got {n!r}")
        if not 0 <= n[0] < lm.n_layers:
            raise ValueError(f"neuron {tuple(n)}: layer {n[0]} out of range (0-{lm.n_layers - 1})")
        out.append((int(n[0]), int(n[1])))
    return out


def joint_effects(lm, null_ids, set_ids, anti, stereo, component_sets, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """NIE and NDE of intervening on each *set* of components at once (e.g. the top-k heads together).

    ``component_sets``: a list of interventions (each a list of (site, index) pairs). Returns
    ``{"nie": [n_sets], "nde": [n_sets]}``.
    """
    if isinstance(component_sets, (str, bytes)) or not isinstance(component_sets, Sequence) or not component_sets:
        raise ValueError("component_sets must be a non-empty list of interventions, each a list of (site, index) pairs")
    y0 = log_ratio(lm, null_ids, anti, stereo)
    readout = logratio_readout(*_pronoun_pairs(anti, stereo, len(null_ids)))
    nie = run_interventions(lm, null_ids, set_ids, component_sets, readout, batch_size)
    nde = run_interventions(lm, set_ids, null_ids, component_sets, readout, batch_size)
    return {"nie": _effects(nie, y0), "nde": _effects(nde, y0)}


def concentration(effects: torch.Tensor, top: float = 0.01) -> float:
    """Share of the total absolute effect carried by the top ``top`` fraction of components (by |effect|).

    ``Σ_{top ⌈top·n⌉} |e| / Σ |e|``; equal effects give ``⌈top·n⌉ / n`` (about ``top``), one dominant component
    gives 1.
    """
    e = _numbers(effects, "effects").flatten().abs()
    if isinstance(top, bool) or not isinstance(top, numbers.Real):
        raise TypeError(f"top must be a fraction in (0, 1], got {top!r}")
    if e.numel() == 0 or not 0 < top <= 1:
        raise ValueError(f"need a non-empty tensor of effects and 0 < top <= 1, got {e.numel()} effects and top={top}")
    k = max(1, int(torch.ceil(torch.tensor(top * e.numel())).item()))
    total = e.sum()
    if total == 0:
        raise ValueError("all effects are zero: concentration is undefined")
    return float(e.topk(k).values.sum() / total)
