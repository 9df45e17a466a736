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

Mediators: single MLP neurons at the profession position (``mlp_post.L``) and attention heads (``head.L``, the
head's output at every position); sites are named as in :mod:`labkit.hooks`.

Interventions are batched (:func:`run_interventions`): row ``j·K + k`` of one forward pass is prompt k under
intervention j, so one pass tests many neurons or heads. An intervention at layer L cannot change layers
below L, so for Llama-family models the pass starts at layer L from the cached residual stream (about half the
work on average); the result is the same as a full forward pass.

Reference: Vig, Gehrmann, Belinkov, Qian, Nevo, Singer & Shieber (2020), *Investigating gender bias in
language models using causal mediation analysis*, NeurIPS.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Sequence

import torch

from labkit import patching
from labkit.lm import hooks
from labkit.patching import head_interventions  # one intervention per head, shared with notebook 07

__all__ = [
    "TEMPLATES",
    "load_professions",
    "filter_professions",
    "set_gender_word",
    "pronoun_ids",
    "effect_from_ratio",
    "total_effect",
    "tokenize_pairs",
    "log_ratio",
    "total_effects",
    "mediation_inputs",
    "head_interventions",
    "neuron_interventions",
    "run_interventions",
    "head_effects",
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

DATA = Path(__file__).resolve().parent / "data" / "professions.json"


# --------------------------------------------------------------------------------------------------
# Data


def load_professions(path: str | Path | None = None) -> list[dict]:
    """The Bolukbasi et al. (2016) professions: ``[{"word", "definitional", "stereotypical"}]``.

    Scores run from −1 (female) to +1 (male). Multi-word entries use spaces (the file's underscores
    are replaced). See ``labkit/data/professions.md`` for the provenance.
    """
    file = Path(path) if path is not None else DATA
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing: reinstall labkit (it ships labkit/data/professions.json)")
    data = json.loads(file.read_text())
    cols = data["columns"]
    return [
        {"word": r[cols.index("word")].replace("_", " "), "definitional": float(r[cols.index("definitional")]),
         "stereotypical": float(r[cols.index("stereotypical")])}
        for r in data["rows"]
    ]


def filter_professions(lm, professions: Sequence[dict], max_definitional: float = 0.75, like: str = "man",
                       return_dropped: bool = False):
    """Vig et al.'s filter: keep |definitional| < ``max_definitional``; then keep the professions that
    tokenise (after a space) to as many tokens as ``" " + like``, so that set-gender can swap the profession
    for "man"/"woman" position by position.

    With ``return_dropped=True`` also returns ``{"definitional": [...], "several_tokens": [...]}``, the words
    each rule dropped.
    """
    n = len(lm.encode(" " + like))
    for w in ("man", "woman"):
        if len(lm.encode(" " + w)) != n:
            raise ValueError(f"' {w}' is {len(lm.encode(' ' + w))} tokens but ' {like}' is {n}: set-gender needs both the same length")
    kept, dropped = [], {"definitional": [], "several_tokens": []}
    for p in professions:
        if abs(p["definitional"]) >= max_definitional:
            dropped["definitional"].append(p["word"])
        elif len(lm.encode(" " + p["word"])) != n:
            dropped["several_tokens"].append(p["word"])
        else:
            kept.append(p)
    return (kept, dropped) if return_dropped else kept


def set_gender_word(profession: dict) -> str:
    """The anti-stereotypical gendered word for set-gender: "woman" for a male-stereotyped profession
    (stereotypical score > 0), "man" otherwise."""
    return "woman" if profession["stereotypical"] > 0 else "man"


def pronoun_ids(lm, stereotypical: Sequence[float] | torch.Tensor):
    """Token ids ``(anti, stereo)`` of the pronouns per profession: stereo = " he" when the score is > 0."""
    he, she = lm.token_id(" he"), lm.token_id(" she")
    s = torch.as_tensor(stereotypical, dtype=torch.float32)
    stereo = torch.where(s > 0, he, she)
    anti = torch.where(s > 0, she, he)
    return anti, stereo


# --------------------------------------------------------------------------------------------------
# Effects from probabilities and ratios


def effect_from_ratio(y_intervened: torch.Tensor, y_null: torch.Tensor) -> torch.Tensor:
    """The effect ``y_intervened / y_null − 1`` (TE, NDE or NIE for one prompt, depending on the intervention)."""
    y_intervened, y_null = torch.as_tensor(y_intervened), torch.as_tensor(y_null)
    if (y_null <= 0).any() or (y_intervened <= 0).any():
        raise ValueError("ratios y = p(anti)/p(stereo) must be positive")
    return y_intervened / y_null - 1


def total_effect(p_null: torch.Tensor, p_set: torch.Tensor) -> torch.Tensor:
    """TE from probabilities ``[..., 2]`` = (p(anti), p(stereo)) under the null and the set-gender input.

    ``y = p_anti / p_stereo``; ``TE = y_set / y_null − 1`` per prompt (Vig et al. 2020, eq. 2).
    """
    p_null, p_set = torch.as_tensor(p_null, dtype=torch.float64), torch.as_tensor(p_set, dtype=torch.float64)
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
    :func:`labkit.patching.tokenize_pair`, with the two sides named as in mediation analysis.
    """
    return patching.tokenize_pair(lm, null, setg, device=device, names=("null", "set-gender"),
                                  hint="keep professions that are one token, like ' man'; filter_professions does this")


def _last_logits(hf, **inputs) -> torch.Tensor:
    try:
        return hf(**inputs, logits_to_keep=1, use_cache=False).logits[:, -1]
    except TypeError:  # a model without logits_to_keep
        return hf(**inputs, use_cache=False).logits[:, -1]


def _logratio_rows(logits: torch.Tensor, anti: torch.Tensor, stereo: torch.Tensor) -> torch.Tensor:
    """log y = logit[anti] − logit[stereo] per row; rows are laid out j·K + k, so the K token pairs repeat."""
    reps = logits.shape[0] // len(anti)
    a, s = anti.to(logits.device).repeat(reps), stereo.to(logits.device).repeat(reps)
    rows = torch.arange(logits.shape[0], device=logits.device)
    return (logits[rows, a].double() - logits[rows, s].double()).cpu()


@torch.no_grad()
def log_ratio(lm, ids: torch.Tensor, anti: torch.Tensor, stereo: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``log y = log p(anti | x) − log p(stereo | x)`` for each row of token ids ``[K, seq]``: a float64 tensor [K]."""
    anti, stereo = torch.as_tensor(anti).long(), torch.as_tensor(stereo).long()
    if len(anti) != len(ids) or len(stereo) != len(ids):
        raise ValueError(f"one (anti, stereo) pronoun pair per prompt: {len(ids)} prompts, {len(anti)} and {len(stereo)} ids")
    out = []
    for s in range(0, len(ids), batch_size):
        logits = _last_logits(lm.model, input_ids=ids[s : s + batch_size])
        out.append(_logratio_rows(logits, anti[s : s + batch_size], stereo[s : s + batch_size]))
    return torch.cat(out)


@torch.no_grad()
def total_effects(lm, professions: Sequence[dict], templates: Sequence[str] = TEMPLATES, batch_size: int = 512,
                  progress: bool = False) -> dict[str, torch.Tensor]:
    """TE of set-gender for every (template, profession): ``{"te", "y_null", "y_set"}``, each ``[templates, professions]``.

    ``TE = y_set / y_null − 1`` per prompt, ``y = p(anti) / p(stereo)``. The prompts share their beginnings:
    "The nurse" is run once and its keys and values are reused for all templates' endings (" said that",
    " ate because", …), which the model runs in batches of up to ``batch_size`` rows; the set-gender prompts
    ("The man said that") serve all professions of one direction. Raises ``ValueError`` for a profession that
    is not one token like " man", or a template without exactly one ``{}``.
    """
    _check_one_token(lm, professions)
    for t in templates:
        if t.count("{}") != 1:
            raise ValueError(f"template {t!r} needs exactly one '{{}}' for the profession")
    anti, stereo = pronoun_ids(lm, [p["stereotypical"] for p in professions])
    he, she = lm.token_id(" he"), lm.token_id(" she")
    words = list(dict.fromkeys([p["word"] for p in professions] + ["man", "woman"]))
    # split each prompt into head ("The nurse") and ending (" said that"); group by token lengths
    groups: dict[tuple, dict] = {}  # (head text of the template, head length, ending length) -> {heads, endings}
    for t in templates:
        before, after = t.split("{}")
        for w in words:
            head, end = lm.encode(before + w), lm.encode(after)
            if not end or head + end != lm.encode(t.format(w)):  # the split changes the tokens: run whole
                head, end = lm.encode(t.format(w))[:-1], lm.encode(t.format(w))[-1:]
                key = (t.format(w), len(head), 1)
            else:
                key = (before, len(head), len(end))
            g = groups.setdefault(key, {"heads": {}, "ends": {}})
            g["heads"].setdefault(tuple(head), []).append((t, w))
            g["ends"].setdefault(tuple(end), []).append(t)
    jobs = []  # (head ids chunk, end ids, [(template, word) per row]), rows = head-major
    for g in groups.values():
        heads = list(g["heads"])
        per = max(1, batch_size // len(g["ends"]))
        for s in range(0, len(heads), per):
            jobs.append((heads[s : s + per], g))
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="total effects")
    lr = {}  # (template, word) -> log p(he) − log p(she)
    hf = hooks.hf_module(lm)
    for heads, g in jobs:
        ends = list(g["ends"])
        past = hf(input_ids=torch.tensor(heads, device=lm.device), use_cache=True).past_key_values
        past.batch_repeat_interleave(len(ends))
        ids = torch.tensor([e for _ in heads for e in ends], device=lm.device)
        logits = _last_logits_cached(hf, ids, past)
        he_she = (logits[:, he].double() - logits[:, she].double()).cpu().tolist()
        r = 0
        for h in heads:
            for e in ends:
                for t, w in g["heads"][h]:
                    if t in g["ends"][e]:
                        lr[(t, w)] = he_she[r]
                r += 1
    sign = torch.where(anti == he, 1.0, -1.0).double()  # log y = ± (log p(he) − log p(she))
    log_null = torch.tensor([[lr[(t, p["word"])] for p in professions] for t in templates], dtype=torch.float64) * sign
    log_set = torch.tensor([[lr[(t, set_gender_word(p))] for p in professions] for t in templates], dtype=torch.float64) * sign
    y_null, y_set = log_null.exp(), log_set.exp()
    return {"te": y_set / y_null - 1, "y_null": y_null, "y_set": y_set}


def _last_logits_cached(hf, ids: torch.Tensor, past) -> torch.Tensor:
    try:
        return hf(input_ids=ids, past_key_values=past, use_cache=True, logits_to_keep=1).logits[:, -1]
    except TypeError:
        return hf(input_ids=ids, past_key_values=past, use_cache=True).logits[:, -1]


def _check_one_token(lm, professions: Sequence[dict]) -> None:
    n = len(lm.encode(" man"))
    for p in professions:
        k = len(lm.encode(" " + p["word"]))
        if k != n:
            raise ValueError(
                f"profession {p['word']!r} is {k} tokens {lm.tokens(' ' + p['word'])}; set-gender swaps it for the "
                f"{n}-token ' man'/' woman', so keep professions of that length (filter_professions does this)"
            )


def mediation_inputs(lm, professions: Sequence[dict], templates: Sequence[str], device=None):
    """Null and set-gender token ids ``[K, seq]`` and pronoun ids ``[K]`` for every (template, profession) pair.

    K = len(templates) × len(professions), template-major. All pairs must share one token length (use
    templates of one length). Raises ``ValueError`` for a profession that is not one token like " man".
    """
    _check_one_token(lm, professions)
    null = [t.format(p["word"]) for t in templates for p in professions]
    setg = [t.format(set_gender_word(p)) for t in templates for p in professions]
    null_ids, set_ids = tokenize_pairs(lm, null, setg, device=device)
    anti, stereo = pronoun_ids(lm, [p["stereotypical"] for _ in templates for p in professions])
    return null_ids, set_ids, anti, stereo


# --------------------------------------------------------------------------------------------------
# Batched interventions
#
# An intervention is a list of (site, index) pairs: ``index`` selects, inside one example's activation (no
# batch axis), what takes its value from the source run, e.g. ``(slice(None), 3)`` = head 3 at every position
# of ``head.L``; ``(1, 117)`` = neuron 117 at position 1 of ``mlp_post.L``.


def neuron_interventions(neurons: Sequence[tuple[int, int]], position: int) -> list[list[tuple[str, tuple]]]:
    """One intervention per MLP neuron ``(layer, index)``: ``mlp_post.L`` at ``position``."""
    return [[(f"mlp_post.{int(L)}", (position, int(i)))] for L, i in neurons]


def _llama_base(hf):
    base = getattr(hf, "model", None)
    layers = getattr(base, "layers", None)
    ok = isinstance(layers, torch.nn.ModuleList) and hasattr(base, "embed_tokens") and hasattr(base, "norm")
    return base if ok else None


@contextlib.contextmanager
def _layers_from(base, start: int):
    """Run only decoder blocks ``start..`` (the model's own forward, with inputs_embeds = resid_pre.start)."""
    saved = base.layers
    base.layers = saved[start:]
    try:
        yield
    finally:
        base.layers = saved


@torch.no_grad()
def run_interventions(
    lm,
    base_ids: torch.Tensor,
    source_ids: torch.Tensor,
    interventions: Sequence[Sequence[tuple[str, tuple]]],
    anti: torch.Tensor,
    stereo: torch.Tensor,
    batch_size: int = 256,
    skip_layers: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """``log y`` of ``base_ids`` under each intervention, with activations taken from ``source_ids``: ``[n, K]``.

    ``base_ids``, ``source_ids``: ``[K, seq]``. Intervention j replaces, in all K prompts at once, the selected
    parts of its sites by their values on the source input. ``batch_size`` interventions (× K prompts) share one
    forward pass; ``torch.where`` with a per-row mask applies each intervention to its own rows only. With
    ``skip_layers`` (Llama family) a pass starts at the lowest layer its interventions touch, from the base
    run's cached residual stream. ``batch_size=1, skip_layers=False`` is one full forward pass per intervention.
    """
    if base_ids.shape != source_ids.shape:
        raise ValueError(f"base and source inputs differ in shape: {list(base_ids.shape)} vs {list(source_ids.shape)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    interventions = [list(iv) for iv in interventions]
    if not interventions or any(not iv for iv in interventions):
        raise ValueError("give at least one intervention, each a non-empty list of (site, index) pairs")
    anti, stereo = torch.as_tensor(anti).long(), torch.as_tensor(stereo).long()
    K = base_ids.shape[0]
    if len(anti) != K or len(stereo) != K:
        raise ValueError(f"one (anti, stereo) pronoun pair per prompt: {K} prompts, {len(anti)} and {len(stereo)} ids")
    layer_of = {}
    for iv in interventions:
        for site, index in iv:
            kind, layer = hooks.parse_site(lm, site)  # an unknown site fails here, with a clear message
            if kind == "embed":
                layer = 0
            layer_of[site] = layer
            if not isinstance(index, tuple):
                raise TypeError(f"the index of {site!r} must be a tuple, e.g. (position, neuron), got {index!r}")
    sites = sorted(layer_of)
    hf = hooks.hf_module(lm)
    base_model = _llama_base(hf) if skip_layers else None
    # activations of the source run, and the residual stream of the base run at every start layer
    starts = sorted({min(layer_of[s] for s, _ in iv) for iv in interventions}) if base_model is not None else [0]
    resid_sites = [f"resid_pre.{L}" for L in starts if L > 0]
    with hooks.capture(lm, sites) as src:
        hf(input_ids=source_ids, use_cache=False)
    with hooks.capture(lm, resid_sites) as resid:
        if resid_sites:
            hf(input_ids=base_ids, use_cache=False)
    for site, index in ((s, i) for iv in interventions for s, i in iv):
        try:
            src[site][(0,) + index]
        except IndexError as e:
            raise IndexError(f"index {index} does not fit {site!r}, whose activation per prompt is {list(src[site].shape[1:])}: {e}") from None
    # order interventions by the layer their pass can start at; keep the caller's order in the output
    start_of = [min(layer_of[s] for s, _ in iv) if base_model is not None else 0 for iv in interventions]
    order = sorted(range(len(interventions)), key=lambda j: start_of[j])
    chunks = _chunks(order, start_of, batch_size, min_rows=max(1, 128 // K))
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="interventions")
    out = torch.empty(len(interventions), K, dtype=torch.float64)
    for chunk in chunks:
        B = len(chunk)
        start = min(start_of[j] for j in chunk)
        masks: dict[str, torch.Tensor] = {}
        for row, j in enumerate(chunk):
            for site, index in interventions[j]:
                if site not in masks:
                    masks[site] = torch.zeros((B,) + tuple(src[site].shape[1:]), dtype=torch.bool, device=src[site].device)
                masks[site][(row,) + index] = True
        edits = {}
        for site, mask in masks.items():
            m = mask.repeat_interleave(K, dim=0)  # row j·K + k
            s = src[site].repeat(B, *([1] * (src[site].dim() - 1)))
            edits[site] = (lambda m, s: (lambda act: torch.where(m, s, act)))(m, s)
        with hooks.patch(lm, edits):
            if start == 0:
                logits = _last_logits(hf, input_ids=base_ids.repeat(B, 1))
            else:
                with _layers_from(base_model, start):
                    logits = _last_logits(hf, inputs_embeds=resid[f"resid_pre.{start}"].repeat(B, 1, 1))
        out[chunk] = _logratio_rows(logits, anti, stereo).view(B, K)
    return out


def _chunks(order: list[int], start_of: list[int], batch_size: int, min_rows: int) -> list[list[int]]:
    """Split interventions (sorted by start layer) into passes: a new pass at each start layer, except that a
    pass smaller than ``min_rows`` interventions takes in the next layer's too; at most ``batch_size`` each."""
    chunks: list[list[int]] = []
    for j in order:
        if chunks and len(chunks[-1]) < batch_size and (
            start_of[chunks[-1][-1]] == start_of[j] or len(chunks[-1]) < min_rows
        ):
            chunks[-1].append(j)
        else:
            chunks.append([j])
    return chunks


def _effects(log_y: torch.Tensor, log_y_null: torch.Tensor) -> torch.Tensor:
    """Mean over prompts of y / y_null − 1 (computed from log ratios, in float64)."""
    return ((log_y - log_y_null).exp() - 1).mean(-1)


def head_effects(lm, null_ids, set_ids, anti, stereo, batch_size: int = 256, progress: bool = False) -> dict:
    """NIE and NDE of every attention head (its output at every position): ``{"nie", "nde"}`` ``[layers, heads]``,
    plus ``"te"``, the per-prompt total effect ``[K]``.

    NIE: null input, the head set to its set-gender value. NDE: set-gender input, the head held at its null
    value. Both are averaged over the K prompts: ``E_x[y / y_null(x) − 1]``.
    """
    L, H = lm.model.config.num_hidden_layers, lm.model.config.num_attention_heads
    ivs = head_interventions(L, H)
    y0, y1 = log_ratio(lm, null_ids, anti, stereo), log_ratio(lm, set_ids, anti, stereo)
    nie = run_interventions(lm, null_ids, set_ids, ivs, anti, stereo, batch_size, progress=progress)
    nde = run_interventions(lm, set_ids, null_ids, ivs, anti, stereo, batch_size, progress=progress)
    return {"nie": _effects(nie, y0).view(L, H), "nde": _effects(nde, y0).view(L, H), "te": (y1 - y0).exp() - 1}


def neuron_nie(lm, null_ids, set_ids, anti, stereo, neurons: Sequence[tuple[int, int]], position: int,
               batch_size: int = 512, skip_layers: bool = True, progress: bool = False) -> torch.Tensor:
    """Exact NIE of MLP neurons ``(layer, index)`` at ``position``, batched: a float64 tensor ``[n_neurons]``.

    Each neuron is one intervention: the null input with ``mlp_post.L[position, index]`` set to its
    set-gender value; ``batch_size`` neurons share a forward pass (along the batch dimension).
    """
    y0 = log_ratio(lm, null_ids, anti, stereo)
    out = run_interventions(lm, null_ids, set_ids, neuron_interventions(neurons, position), anti, stereo,
                            batch_size, skip_layers, progress)
    return _effects(out, y0)


def neuron_nie_estimate(lm, null_ids, set_ids, anti, stereo, position: int, layers: Sequence[int] | None = None):
    """First-order NIE of every MLP neuron at ``position``: ``[layers, d_mlp]`` (attribution patching).

    ``log(1 + NIE_k) ≈ ∂ log y / ∂z · (z_set − z_null)`` per prompt k (Nanda 2023); returns
    ``mean_k exp(·) − 1``. One forward and one backward pass for all neurons of all layers.
    """
    n_layers = lm.model.config.num_hidden_layers
    layers = list(range(n_layers)) if layers is None else list(layers)
    sites = [f"mlp_post.{L}" for L in layers]
    anti, stereo = torch.as_tensor(anti).long(), torch.as_tensor(stereo).long()
    hf = hooks.hf_module(lm)
    with torch.no_grad(), hooks.capture(lm, sites, positions=position) as corrupt:
        hf(input_ids=set_ids, use_cache=False)
    with torch.enable_grad(), hooks.capture(lm, sites, detach=False, positions=position) as cache:
        logits = _last_logits(hf, input_ids=null_ids)
        rows = torch.arange(len(anti), device=logits.device)
        m = (logits[rows, anti.to(logits.device)] - logits[rows, stereo.to(logits.device)]).sum()
        grads = torch.autograd.grad(m, [cache[s] for s in sites])
    est = torch.stack([g * (corrupt[s] - cache[s].detach()) for s, g in zip(sites, grads)])  # [layers, K, d_mlp]
    return (est.double().exp() - 1).mean(1).cpu()


def neuron_edit(position: int, index: torch.Tensor | Sequence[int], values: torch.Tensor):
    """An edit for ``hooks.patch`` on ``mlp_post.L`` that sets neurons ``index`` at ``position`` to ``values``.

    Row r of the batch gets neuron ``index[r]`` set to ``values[r]`` (one neuron per row), so one forward
    pass tests as many neurons as the batch has rows.
    """
    index = torch.as_tensor(index).long()
    values = torch.as_tensor(values)
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


def joint_effects(lm, null_ids, set_ids, anti, stereo, component_sets, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """NIE and NDE of intervening on each *set* of components at once (e.g. the top-k heads together).

    ``component_sets``: a list of interventions (each a list of (site, index) pairs). Returns
    ``{"nie": [n_sets], "nde": [n_sets]}``.
    """
    y0 = log_ratio(lm, null_ids, anti, stereo)
    nie = run_interventions(lm, null_ids, set_ids, component_sets, anti, stereo, batch_size)
    nde = run_interventions(lm, set_ids, null_ids, component_sets, anti, stereo, batch_size)
    return {"nie": _effects(nie, y0), "nde": _effects(nde, y0)}


def concentration(effects: torch.Tensor, top: float = 0.01) -> float:
    """Share of the total absolute effect carried by the top ``top`` fraction of components (by |effect|).

    ``Σ_{top ⌈top·n⌉} |e| / Σ |e|``; equal effects give ``⌈top·n⌉ / n`` (about ``top``), one dominant component
    gives 1.
    """
    e = torch.as_tensor(effects).flatten().abs().double()
    if e.numel() == 0 or not 0 < top <= 1:
        raise ValueError(f"need a non-empty tensor of effects and 0 < top <= 1, got {e.numel()} effects and top={top}")
    k = max(1, int(torch.ceil(torch.tensor(top * e.numel())).item()))
    total = e.sum()
    if total == 0:
        raise ValueError("all effects are zero: concentration is undefined")
    return float(e.topk(k).values.sum() / total)
