"""The one intervention engine: many interventions per forward pass, each pass started at its lowest layer.

An **intervention** replaces parts of activations of a *base* run by their values on a *source* run (for
patching: clean and corrupted; for mediation analysis: null and set-gender). It is a list of
``(site, index)`` pairs: ``index`` selects, inside one example's activation (no batch axis), what is
replaced, e.g. ``(slice(None), 3)`` = head 3 at every position of ``head.L``; ``(2,)`` = position 2 of
``resid_pre.L``; ``(1, 117)`` = neuron 117 at position 1 of ``mlp_post.L``. Sites are named as in
:mod:`labkit.lm.hooks`. Builders: :func:`head_interventions`, :func:`neuron_interventions`,
:func:`resid_interventions`.

A **readout** maps the model's logits ``[rows, seq, vocab]`` to one number per row (the engine passes the last
position only, ``seq = 1``, unless ``all_positions=True``): :func:`logit_diff_readout`, :func:`logratio_readout`.

The source may also be given as activations instead of a run: ``{site: tensor}`` with one row per prompt pair
(or one row for all), e.g. the mean of a site over a reference distribution (mean ablation) or zeros (zero
ablation).

How the work is shared (:func:`run_interventions`, built on :func:`run_copies`):

* **batching** — intervention ``j`` of a pass acts on rows ``j·K … j·K + K − 1`` (the K prompt pairs), through
  ``torch.where`` with a per-row mask, so one forward pass tests many heads or neurons;
* **layer skipping** — an intervention at layer L cannot change the blocks below L. The base run's residual
  stream ``resid_pre.L`` is computed once, and each pass runs only blocks L… from it
  (:meth:`LanguageModel.run_from <labkit.lm.model.LanguageModel.run_from>`), about half the work on average
  when the sites span all layers. Interventions are grouped into passes by the layer they start at.

Methods on top (the lecture's notation; Meng et al. 2022, Nanda 2023, Syed et al. 2023, Marks et al. 2024):

* exact activation patching ``F(m; a; x_c, x_p) = m(x_c | a = a_p) − m(x_c)`` (:func:`exact_patching`);
* attribution patching ``F̂ = ∇_a m|_{a_c} · (a_p − a_c)`` for every element of every site from one forward
  and one backward pass (:func:`attribution_patching`);
* its integrated-gradients version ``F̂_IG = (a_p − a_c) · (1/N) Σ_α ∇_a m|_{α a_c + (1 − α) a_p}``,
  ``α ∈ {0, 1/N, …, (N−1)/N}`` (:func:`ig_patching`).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from labkit.lm import hooks

__all__ = [
    "Readout",
    "logit_diff_readout",
    "logratio_readout",
    "paired_ids",
    "head_interventions",
    "neuron_interventions",
    "resid_interventions",
    "run_copies",
    "run_interventions",
    "exact_patching",
    "attribution_patching",
    "ig_patching",
    "reduce_site",
]

Readout = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------------
# Readouts and inputs


def logit_diff_readout(good: int, bad: int) -> Readout:
    """Metric ``m = logit[good] − logit[bad]`` at the last position (= log p(good) − log p(bad)), one per row."""
    for name, t in (("good", good), ("bad", bad)):
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"{name} must be a token id (a non-negative int), got {t!r}")

    def readout(logits: torch.Tensor) -> torch.Tensor:
        return logits[:, -1, good] - logits[:, -1, bad]

    return readout


def logratio_readout(num: Sequence[int] | torch.Tensor, den: Sequence[int] | torch.Tensor) -> Readout:
    """Per-pair metric ``log p(num_k) − log p(den_k)`` at the last position, in float64, for K pairs with their own tokens.

    Rows of a batched run are laid out intervention-major (row = j·K + k), so the K token ids repeat.
    """
    num = torch.as_tensor(num).long().flatten()
    den = torch.as_tensor(den).long().flatten()
    if num.shape != den.shape or num.numel() == 0:
        raise ValueError(f"give one (num, den) token pair per prompt: {num.numel()} and {den.numel()} ids")

    def readout(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        if last.shape[0] % len(num):
            raise ValueError(f"{last.shape[0]} rows are not a multiple of the {len(num)} prompt pairs")
        reps = last.shape[0] // len(num)
        n, d = num.to(last.device).repeat(reps), den.to(last.device).repeat(reps)
        rows = torch.arange(last.shape[0], device=last.device)
        return last[rows, n].double() - last[rows, d].double()

    return readout


def paired_ids(lm, base: str | Sequence[str], source: str | Sequence[str], device=None,
               names: tuple[str, str] = ("clean", "corrupted"),
               hint: str = "pick words that are one token each, like ' nurse' and ' man'"):
    """Token ids of base and source prompts as two ``[K, seq]`` tensors of the same shape.

    Interventions swap activations position by position, so every base prompt must have exactly as many
    tokens as its source partner (and, to share a batch, as the other pairs). Raises ``ValueError`` naming
    the mismatch otherwise; ``names`` and ``hint`` word that message for the caller (notebook 07 calls the
    sides "clean" and "corrupted", notebook 08 "null" and "set-gender").
    """
    a, b = names
    base = [base] if isinstance(base, str) else list(base)
    source = [source] if isinstance(source, str) else list(source)
    if len(base) != len(source) or not base:
        raise ValueError(f"give one {b} prompt per {a} prompt: got {len(base)} {a} and {len(source)} {b}")
    ids_a, ids_b = [lm.encode(t) for t in base], [lm.encode(t) for t in source]
    for ta, tb, x, y in zip(base, source, ids_a, ids_b):
        if not x:
            raise ValueError(f"{a} prompts must be non-empty strings")
        if len(x) != len(y):
            raise ValueError(
                f"{a} prompt {ta!r} has {len(x)} tokens {lm.tokens(ta)} but {b} prompt {tb!r} has "
                f"{len(y)} tokens {lm.tokens(tb)}: interventions need prompts of the same token length ({hint})"
            )
    lengths = sorted({len(x) for x in ids_a})
    if len(lengths) > 1:
        first = {n: next(t for t, x in zip(base, ids_a) if len(x) == n) for n in lengths}
        raise ValueError("all pairs must have one token length to share a batch, got lengths "
                         + ", ".join(f"{n} (e.g. {t!r})" for n, t in first.items()))
    dev = lm.device if device is None else torch.device(device)
    return torch.tensor(ids_a, device=dev), torch.tensor(ids_b, device=dev)


def _check_pair(base_ids, source_ids) -> None:
    if not (isinstance(base_ids, torch.Tensor) and isinstance(source_ids, torch.Tensor)):
        raise TypeError("give token ids as tensors [K, seq] (see paired_ids)")
    if base_ids.dim() != 2 or base_ids.shape != source_ids.shape or base_ids.numel() == 0:
        raise ValueError(
            f"base and source token ids differ in shape: {list(base_ids.shape)} vs {list(source_ids.shape)}; "
            f"interventions need [K, seq] pairs of the same token length (build them with paired_ids)"
        )


# --------------------------------------------------------------------------------------------------
# Builders


def head_interventions(n_layers: int, n_heads: int) -> list[list[tuple[str, tuple]]]:
    """One intervention per attention head: ``head.L``, head ``h``, at every position (layer-major)."""
    for name, v in (("n_layers", n_layers), ("n_heads", n_heads)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return [[(f"head.{L}", (slice(None), h))] for L in range(n_layers) for h in range(n_heads)]


def neuron_interventions(neurons: Sequence[tuple[int, int]], position: int) -> list[list[tuple[str, tuple]]]:
    """One intervention per MLP neuron ``(layer, index)``: ``mlp_post.L`` at ``position``."""
    neurons = list(neurons)
    if not neurons:
        raise ValueError("no neurons given: give (layer, index) pairs")
    return [[(f"mlp_post.{int(L)}", (int(position), int(i)))] for L, i in neurons]


def resid_interventions(n_layers: int, seq_len: int) -> list[list[tuple[str, tuple]]]:
    """One intervention per residual-stream position: ``resid_pre.L`` at position ``t`` (layer-major)."""
    for name, v in (("n_layers", n_layers), ("seq_len", seq_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return [[(f"resid_pre.{L}", (t,))] for L in range(n_layers) for t in range(seq_len)]


# --------------------------------------------------------------------------------------------------
# The engine


def _name(lm, site: str) -> str:
    """The canonical name of a site (validated): ``"head.03"`` → ``"head.3"``."""
    kind, layer = hooks.parse_site(lm, site)
    return kind if layer is None else f"{kind}.{layer}"


def _layer(lm, site: str) -> int:
    """The block a site belongs to; the embedding counts as −1 (nothing below it to skip)."""
    _, layer = hooks.parse_site(lm, site)
    return -1 if layer is None else layer


def _source(lm, ids: torch.Tensor, sites: Sequence[str]) -> dict[str, torch.Tensor]:
    """Activations of ``sites`` on ``ids`` (one pass, no gradients)."""
    with torch.no_grad(), hooks.capture(lm, list(sites)) as cache:
        lm.last_logits(input_ids=ids)
    return dict(cache)


def _resid(lm, ids: torch.Tensor, layers) -> dict[int, torch.Tensor]:
    """``resid_pre.L`` of ``ids`` for every L ≥ 1 in ``layers``: one pass, no gradients."""
    wanted = sorted({L for L in layers if L >= 1})
    if not wanted:
        return {}
    with torch.no_grad(), hooks.capture(lm, [f"resid_pre.{L}" for L in wanted]) as cache, \
            hooks.stop_after(lm, f"resid_pre.{wanted[-1]}"):
        lm.model(input_ids=ids, use_cache=False)
    return {L: cache[f"resid_pre.{L}"] for L in wanted}


def _given_source(lm, acts: Mapping, sites: Sequence[str], K: int) -> dict[str, torch.Tensor]:
    """Source activations given as ``{site: tensor [K or 1, ...]}``: canonical names, K rows each, on the model's device."""
    named = {}
    for site, value in acts.items():
        if not isinstance(value, torch.Tensor) or value.dim() < 2 or value.shape[0] not in (1, K):
            raise ValueError(f"source activation {site!r} must be a tensor with a batch axis of {K} (one row per "
                             f"prompt) or 1, got {getattr(value, 'shape', type(value).__name__)}")
        named[_name(lm, site)] = value.detach().to(lm.device).expand(K, *value.shape[1:])
    missing = [s for s in sites if s not in named]
    if missing:
        raise KeyError(f"no source activation for {', '.join(map(repr, missing))}: the given source covers "
                       f"{', '.join(map(repr, named)) or 'nothing'}")
    return {s: named[s] for s in sites}


def run_copies(lm, base_ids: torch.Tensor, copies: int, edits: Mapping[str, Callable], readout: Readout,
               start: int | None = None, resid: torch.Tensor | None = None, all_positions: bool = False) -> torch.Tensor:
    """Run ``copies`` copies of the K base prompts in one batch with ``edits``; return the readout ``[copies, K]``.

    Row ``j·K + k`` of the batch is copy ``j`` of prompt ``k``; ``edits`` (as for :func:`hooks.patch`) see all
    ``copies · K`` rows and decide what each copy changes. The pass starts at block ``start`` (default: the
    lowest layer among the edited sites; ``start ≤ 0`` runs the whole model from the token ids), from
    ``resid`` = ``resid_pre.start`` of the base prompts when given (computed here otherwise): the blocks
    below cannot be changed by the edits and are not run again. Gradients flow when enabled (float64 result).
    The readout sees the last position's logits ``[rows, 1, vocab]``, or every position's ``[rows, seq, vocab]``
    with ``all_positions=True`` (e.g. a loss over the whole sequence).
    """
    _check_pair(base_ids, base_ids)
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"copies must be a positive integer, got {copies!r}")
    if start is None:
        start = min((_layer(lm, s) for s in edits), default=0)
    K = base_ids.shape[0]
    if start > 0 and resid is None:
        resid = _resid(lm, base_ids, [start])[start]  # the unedited base run, before the edits are installed
    with hooks.patch(lm, dict(edits)):
        if start <= 0 and all_positions:
            logits = lm.model(input_ids=base_ids.repeat(copies, 1), use_cache=False).logits
        elif start <= 0:
            logits = lm.last_logits(input_ids=base_ids.repeat(copies, 1))[:, None]
        else:
            logits = lm.run_from(start, resid.repeat(copies, 1, 1), last_only=not all_positions)
            logits = logits if all_positions else logits[:, None]
    values = readout(logits)
    if values.shape != (copies * K,):
        raise ValueError(f"the readout must return one number per row ({copies * K}), got shape {list(values.shape)}")
    return values.double().view(copies, K)


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


@torch.no_grad()
def run_interventions(
    lm,
    base_ids: torch.Tensor,
    source_ids: torch.Tensor,
    interventions: Sequence[Sequence[tuple[str, tuple]]],
    readout: Readout,
    batch_size: int = 256,
    skip_layers: bool = True,
    progress: bool = False,
    all_positions: bool = False,
) -> torch.Tensor:
    """The readout of ``base_ids`` under each intervention, with activations taken from ``source_ids``: ``[n, K]`` (float64).

    ``base_ids`` and ``source_ids`` are ``[K, seq]`` (K prompt pairs). Intervention ``j`` replaces, in all K
    examples at once, the selected parts of its sites by their values on the source input. Up to
    ``batch_size`` interventions (× K prompts) share one forward pass (``torch.where`` with a per-row mask
    applies each intervention to its own rows only). With ``skip_layers`` each pass starts at the lowest
    layer its interventions touch, from the base run's residual stream computed once (:func:`run_copies`).
    ``batch_size=1, skip_layers=False`` is one full forward pass per intervention; all settings give the same
    numbers up to float rounding.

    ``source_ids`` may instead be the source activations themselves, ``{site: tensor}`` shaped like the site's
    activation with a batch axis of K (one row per prompt) or 1 (the same for every prompt), covering every
    site the interventions name: e.g. a site's mean over a reference distribution (mean ablation) or zeros
    (zero ablation). ``all_positions=True`` gives the readout every position's logits (see :func:`run_copies`).
    """
    given = isinstance(source_ids, Mapping)
    _check_pair(base_ids, base_ids if given else source_ids)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    interventions = [list(iv) for iv in interventions]
    if not interventions or any(not iv for iv in interventions):
        raise ValueError("give at least one intervention, each a non-empty list of (site, index) pairs")
    layer_of: dict[str, int] = {}
    for iv in interventions:
        for pair in iv:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise TypeError(f"an intervention is a list of (site, index) pairs, got {pair!r}")
            site, index = pair
            if not isinstance(index, tuple):
                raise TypeError(f"the index of {site!r} must be a tuple, e.g. (position, neuron), got {index!r}")
            if site not in layer_of:
                layer_of[site] = _layer(lm, site)  # an unknown site fails here, with a clear message
    K = base_ids.shape[0]
    src = _given_source(lm, source_ids, list(layer_of), K) if given else _source(lm, source_ids, list(layer_of))
    for iv in interventions:
        for site, index in iv:
            try:
                src[site][(0,) + index]
            except IndexError as e:
                raise IndexError(f"index {index} does not fit {site!r}, whose activation per prompt is "
                                 f"{list(src[site].shape[1:])}: {e}") from None
    start_of = [max(0, min(layer_of[s] for s, _ in iv)) if skip_layers else 0 for iv in interventions]
    resid = _resid(lm, base_ids, start_of)
    order = sorted(range(len(interventions)), key=start_of.__getitem__)
    chunks = _chunks(order, start_of, batch_size, min_rows=max(1, 128 // K))
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="interventions")
    out = torch.empty(len(interventions), K, dtype=torch.float64)
    for chunk in chunks:
        B = len(chunk)
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
        start = min(start_of[j] for j in chunk)
        out[chunk] = run_copies(lm, base_ids, B, edits, readout, start=start, resid=resid.get(start),
                                all_positions=all_positions).cpu()
    return out


def exact_patching(lm, clean_ids, corrupt_ids, interventions, readout: Readout, batch_size: int = 256,
                   progress: bool = False) -> torch.Tensor:
    """Exact indirect effects ``F = m(x_c | a = a_p) − m(x_c)``, averaged over the K pairs: a tensor ``[n]``.

    One (batched, layer-skipping) forward pass per intervention: the ground truth that attribution patching
    approximates.
    """
    _check_pair(clean_ids, corrupt_ids)
    with torch.no_grad():
        base = readout(lm.last_logits(input_ids=clean_ids)[:, None]).double().cpu()
    patched = run_interventions(lm, clean_ids, corrupt_ids, interventions, readout, batch_size, progress=progress)
    return (patched - base).mean(dim=1).float()


# --------------------------------------------------------------------------------------------------
# Gradient-based estimates


def attribution_patching(lm, clean_ids, corrupt_ids, sites: Sequence[str], readout: Readout, positions=None,
                         per_pair: bool = False) -> dict[str, torch.Tensor]:
    """First-order estimates ``∇_a m|_{a_c} ⊙ (a_p − a_c)`` for every element of every site (Nanda 2023).

    Returns ``{site: tensor}`` shaped like the site's activation without the batch axis, averaged over the K
    pairs (``per_pair=True``: one row per pair, ``[K, ...]``); sum it over the parts an intervention replaces
    (:func:`reduce_site`) to estimate that intervention's effect. ``positions`` keeps only these sequence
    positions (as in :func:`hooks.capture`). Cost: one forward and one backward pass on the clean input and
    one forward pass on the corrupted one, whatever the number of sites.
    """
    sites = [sites] if isinstance(sites, str) else list(sites)
    if not sites:
        raise ValueError("no sites given")
    _check_pair(clean_ids, corrupt_ids)
    names = [_name(lm, s) for s in sites]
    with torch.no_grad(), hooks.capture(lm, names, positions=positions) as corrupt:
        lm.last_logits(input_ids=corrupt_ids)
    with torch.enable_grad(), hooks.capture(lm, names, detach=False, positions=positions) as cache:
        m = readout(lm.last_logits(input_ids=clean_ids)[:, None]).sum()
        grads = torch.autograd.grad(m, [cache[s] for s in names])
    est = {s: (g * (corrupt[s] - cache[s].detach())).detach() for s, g in zip(names, grads)}
    K = clean_ids.shape[0]
    return {s: (e.cpu() if per_pair else (e.sum(0) / K).cpu()) for s, e in est.items()}


def ig_patching(lm, clean_ids, corrupt_ids, sites: Sequence[str], readout: Readout, n_steps: int = 10,
                progress: bool = False, rule: str = "left") -> dict[str, torch.Tensor]:
    """Integrated-gradients attribution patching (Marks et al. 2024; Hanna et al. 2024).

    For each site separately, ``F̂_IG = (a_p − a_c) ⊙ (1/N) Σ_α ∇_a m|_{α a_c + (1 − α) a_p}`` with all other
    activations computed by the model: a Riemann sum of the path integral, so ``Σ F̂_IG`` approaches the
    exact effect of patching the whole site as N grows. ``rule="left"`` takes the lecture's grid
    ``α ∈ {0, 1/N, …, (N−1)/N}`` (it never evaluates the clean end α = 1; the error shrinks like 1/N);
    ``rule="midpoint"`` takes ``α = (k + ½)/N`` at the same cost (the error shrinks like 1/N²).
    The sites of one layer share one forward/backward pass (rows = site × step × pair), which starts at that
    layer from the clean run's residual stream (:func:`run_copies`). Returns the same layout as
    :func:`attribution_patching`.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    if rule not in ("left", "midpoint"):
        raise ValueError(f"rule must be 'left' (the lecture's α = k/N) or 'midpoint' (α = (k + ½)/N), not {rule!r}")
    sites = [sites] if isinstance(sites, str) else list(sites)
    if not sites:
        raise ValueError("no sites given")
    _check_pair(clean_ids, corrupt_ids)
    sites = list(dict.fromkeys(_name(lm, s) for s in sites))
    groups: dict[int, list[str]] = {}
    for s in sites:
        groups.setdefault(_layer(lm, s), []).append(s)
    clean = _source(lm, clean_ids, sites)
    corrupt = _source(lm, corrupt_ids, sites)
    resid = _resid(lm, clean_ids, list(groups))
    K = clean_ids.shape[0]
    alphas = (torch.arange(n_steps, dtype=torch.float32, device=clean_ids.device) + (0.5 if rule == "midpoint" else 0.0)) / n_steps
    result = {}
    items = list(groups.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="IG patching (one pass per layer)")
    for layer, chunk in items:
        copies = len(chunk) * n_steps  # rows = (site i, step n, pair k)
        leaves, edits = {}, {}
        for i, s in enumerate(chunk):
            a_c, a_p = clean[s], corrupt[s]
            al = alphas.view(n_steps, 1, *(1,) * (a_c.dim() - 1))
            interp = al * a_c[None] + (1 - al) * a_p[None]
            leaf = interp.reshape(n_steps * K, *a_c.shape[1:]).clone().requires_grad_(True)
            leaves[s] = leaf
            lo, hi = i * n_steps * K, (i + 1) * n_steps * K

            def edit(act, leaf=leaf, lo=lo, hi=hi):
                return torch.cat([act[:lo], leaf.to(act.dtype), act[hi:]])

            edits[s] = edit
        with torch.enable_grad():
            m = run_copies(lm, clean_ids, copies, edits, readout, start=layer, resid=resid.get(layer)).sum()
            grads = torch.autograd.grad(m, [leaves[s] for s in chunk])
        for s, g in zip(chunk, grads):
            mean_grad = g.view(n_steps, K, *g.shape[1:]).mean(0)
            result[s] = ((mean_grad * (corrupt[s] - clean[s])).sum(0) / K).detach().cpu()
    return {s: result[s] for s in sites}


def reduce_site(attr: Mapping[str, torch.Tensor], interventions) -> torch.Tensor:
    """Sum element-wise attributions over what each intervention replaces: a tensor ``[n]``.

    ``attr`` comes from :func:`attribution_patching` or :func:`ig_patching`; ``interventions`` as for
    :func:`run_interventions` (e.g. :func:`head_interventions`).
    """
    out = []
    for iv in interventions:
        total = 0.0
        for site, index in iv:
            if site not in attr:
                raise KeyError(f"no attribution for site {site!r}: attributions cover {', '.join(attr)}")
            total = total + attr[site][tuple(index)].sum()
        out.append(torch.as_tensor(total, dtype=torch.float32))
    return torch.stack(out)
