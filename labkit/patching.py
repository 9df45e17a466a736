"""Patching: exact activation patching, attribution patching and its integrated-gradients version.

Indirect effect of an activation ``a`` on a metric ``m`` (the lecture's notation; Meng et al. 2022,
Nanda 2023 "Attribution patching", Syed et al. 2023, Marks et al. 2024):

* exact activation patching: ``F(m; a; x_c, x_p) = m(x_c | a = a_p) − m(x_c)`` — run the clean input
  ``x_c`` with ``a`` replaced by its value on the patch input ``x_p``; one forward pass per activation;
* attribution patching (first order): ``F̂ = ∇_a m|_{a_c} · (a_p − a_c)`` — one forward and one backward
  pass on ``x_c`` plus one forward pass on ``x_p`` give the estimate for *every* activation at once;
* integrated-gradients version: ``F̂_IG = (a_p − a_c) · (1/N) Σ_α ∇_a m|_{α a_c + (1 − α) a_p}``,
  ``α ∈ {0, 1/N, …, (N−1)/N}`` (N = 10 in the lecture), one forward/backward per α and per layer.

Everything is batched: many interventions go through the model in one forward pass along the batch
dimension (:func:`run_interventions`). Sites are named as in :mod:`labkit.hooks`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable, Sequence

import torch

from labkit.lm import hooks

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

Readout = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------------
# Inputs


def tokenize_pair(lm, clean: str | Sequence[str], corrupted: str | Sequence[str], device=None,
                  names: tuple[str, str] = ("clean", "corrupted"),
                  hint: str = "pick words that are one token each, like ' nurse' and ' man'"):
    """Token ids of clean and corrupted prompts as two ``[K, seq]`` tensors of the same shape.

    Patching swaps activations position by position, so every clean prompt must have exactly as many
    tokens as its corrupted partner (and, to batch them, as the other pairs). Raises ``ValueError``
    naming the mismatch otherwise; ``names`` and ``hint`` word that message for the caller (notebook 08 calls
    the two sides "null" and "set-gender").
    """
    a, b = names
    clean = [clean] if isinstance(clean, str) else list(clean)
    corrupted = [corrupted] if isinstance(corrupted, str) else list(corrupted)
    if len(clean) != len(corrupted) or not clean:
        raise ValueError(f"give one {b} prompt per {a} prompt: got {len(clean)} {a} and {len(corrupted)} {b}")
    ids_c, ids_p = [lm.encode(t) for t in clean], [lm.encode(t) for t in corrupted]
    for tc, tp, x, y in zip(clean, corrupted, ids_c, ids_p):
        if len(x) != len(y):
            raise ValueError(
                f"{a} prompt {tc!r} has {len(x)} tokens {lm.tokens(tc)} but {b} prompt {tp!r} has "
                f"{len(y)} tokens {lm.tokens(tp)}: interventions need prompts of the same token length ({hint})"
            )
    lengths = sorted({len(x) for x in ids_c})
    if len(lengths) > 1:
        first = {n: next(t for t, x in zip(clean, ids_c) if len(x) == n) for n in lengths}
        raise ValueError("all pairs must have one token length to share a batch, got lengths "
                         + ", ".join(f"{n} (e.g. {t!r})" for n, t in first.items()))
    dev = lm.device if device is None else torch.device(device)
    return torch.tensor(ids_c, device=dev), torch.tensor(ids_p, device=dev)


def profession_pairs(
    lm,
    template: str = "The {} said that",
    n: int = 3,
    words: Sequence[str] | None = None,
    max_definitional: float = 0.75,
    like: str = "man",
):
    """Clean prompts with professions, each paired with ``template`` filled by ``like`` (the corrupted prompt).

    Professions and their crowd-rated scores come from ``labkit/data/professions.json`` (Bolukbasi et al.
    2016). As in Vig et al. (2020) we keep words with |definitional| < ``max_definitional`` and, so that a
    profession and ``like`` sit at the same position, only those written as one token after a space, like
    `` man``. ``words=None`` takes the ``n`` most female-stereotyped of them (ties by name); ``words`` picks
    these professions instead and refuses one that is unknown, too gendered by definition, or several tokens.
    Returns ``(clean prompts, corrupted prompts, [(word, stereotypical score)])``.
    """
    if "{}" not in template:
        raise ValueError(f"template must contain '{{}}' where the profession goes, got {template!r}")
    rows = {w: (de, st) for w, de, st in json.loads((Path(__file__).parent / "data" / "professions.json").read_text())["rows"]}
    width = len(lm.encode(" " + like))

    def fits(w):
        return len(lm.encode(" " + w.replace("_", " "))) == width

    if words is None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        kept = sorted(((w, st) for w, (de, st) in rows.items() if abs(de) < max_definitional and fits(w)), key=lambda r: (r[1], r[0]))
        chosen = kept[:n]
    else:
        chosen = []
        for w in words:
            if w not in rows:
                raise ValueError(f"unknown profession {w!r}: it is not in labkit/data/professions.json")
            de, st = rows[w]
            if abs(de) >= max_definitional:
                raise ValueError(f"{w!r} is gendered by definition (|definitional| = {abs(de)} ≥ {max_definitional})")
            if not fits(w):
                raise ValueError(
                    f"{w!r} is {len(lm.encode(' ' + w.replace('_', ' ')))} tokens {lm.tokens(' ' + w.replace('_', ' '))} but "
                    f"{like!r} is {width}: patching swaps activations position by position, so pick one-token professions"
                )
            chosen.append((w, st))
    return [template.format(w.replace("_", " ")) for w, _ in chosen], [template.format(like)] * len(chosen), chosen


def logit_diff_readout(good: int, bad: int) -> Readout:
    """Metric ``m = logit[good] − logit[bad]`` at the last position (= log p(good) − log p(bad)), one per row.

    Readouts receive the logits of the last position only, ``[batch, 1, vocab]`` (the functions of this
    module run the model with ``logits_to_keep=1``), and return one number per row.
    """

    def readout(logits: torch.Tensor) -> torch.Tensor:
        return logits[:, -1, good] - logits[:, -1, bad]

    return readout


def logratio_readout(num: Sequence[int] | torch.Tensor, den: Sequence[int] | torch.Tensor) -> Readout:
    """Per-pair metric ``log p(num_k) − log p(den_k)`` at the last position, for K pairs with their own tokens.

    Rows of a batched run are laid out intervention-major (row = j·K + k), so the token ids repeat.
    """
    num = torch.as_tensor(num).long()
    den = torch.as_tensor(den).long()

    def readout(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1].float()
        reps = last.shape[0] // len(num)
        n, d = num.to(last.device).repeat(reps), den.to(last.device).repeat(reps)
        rows = torch.arange(last.shape[0], device=last.device)
        return last[rows, n] - last[rows, d]

    return readout


# --------------------------------------------------------------------------------------------------
# Interventions
#
# An intervention is a list of (site, index) pairs: ``index`` selects, inside one example's activation (no
# batch axis), what is replaced by the source activation, e.g. ``(slice(None), 3)`` = head 3 at every
# position of ``head.L``; ``(2,)`` = position 2 of ``resid_pre.L``; ``(1, 117)`` = neuron 117 at position 1.


def head_interventions(n_layers: int, n_heads: int) -> list[list[tuple[str, tuple]]]:
    """One intervention per attention head: ``head.L``, head ``h``, at every position (layer-major)."""
    return [[(f"head.{L}", (slice(None), h))] for L in range(n_layers) for h in range(n_heads)]


def resid_interventions(n_layers: int, seq_len: int) -> list[list[tuple[str, tuple]]]:
    """One intervention per residual-stream position: ``resid_pre.L`` at position ``t`` (layer-major)."""
    return [[(f"resid_pre.{L}", (t,))] for L in range(n_layers) for t in range(seq_len)]


def _logits(lm, ids: torch.Tensor) -> torch.Tensor:
    """Logits at the last position only, ``[batch, 1, vocab]`` (readouts look at the last position)."""
    return lm.model(input_ids=ids, logits_to_keep=1, use_cache=False).logits


def _check_ids(clean_ids: torch.Tensor, corrupt_ids: torch.Tensor) -> None:
    if not (isinstance(clean_ids, torch.Tensor) and isinstance(corrupt_ids, torch.Tensor)):
        raise TypeError("give token ids as tensors [K, seq] (see tokenize_pair)")
    if clean_ids.dim() != 2 or clean_ids.shape != corrupt_ids.shape:
        raise ValueError(
            f"clean and corrupted token ids differ in shape: {list(clean_ids.shape)} vs {list(corrupt_ids.shape)}; "
            f"patching needs [K, seq] pairs of the same token length (build them with tokenize_pair)"
        )


def _source(lm, ids: torch.Tensor, sites: Sequence[str]) -> dict[str, torch.Tensor]:
    with torch.no_grad(), hooks.capture(lm, list(sites)) as cache:
        lm.model(input_ids=ids, logits_to_keep=1, use_cache=False)
    return dict(cache)


@torch.no_grad()
def run_interventions(
    lm,
    base_ids: torch.Tensor,
    source_ids: torch.Tensor,
    interventions: Sequence[Sequence[tuple[str, tuple]]],
    readout: Readout,
    batch_size: int = 64,
    progress: bool = False,
) -> torch.Tensor:
    """Run ``base_ids`` with each intervention's activations taken from ``source_ids``; return ``[n, K]`` metrics.

    ``base_ids`` and ``source_ids`` are ``[K, seq]`` (K prompt pairs). Intervention ``j`` replaces, in all K
    examples at once, the selected parts of its sites by their values on the source input. ``batch_size``
    interventions (× K examples) share one forward pass: ``torch.where`` with a per-row mask applies each
    intervention to its own rows only, so many neurons/heads are tested per pass. Interventions are grouped
    by layer, and the blocks below a pass's lowest site run once on the K base rows (the batch is widened at
    that block's input), which gives the same numbers for about half the work when sites span all layers.
    """
    if base_ids.shape != source_ids.shape:
        raise ValueError(
            f"base and source inputs differ in shape: {list(base_ids.shape)} vs {list(source_ids.shape)}; "
            f"patching needs pairs of the same token length (build them with tokenize_pair)"
        )
    interventions = [list(iv) for iv in interventions]
    if not interventions:
        raise ValueError("no interventions given")
    sites = sorted({s for iv in interventions for s, _ in iv})
    for s in sites:
        hooks.parse_site(lm, s)  # unknown sites fail here with a clear message
    src = _source(lm, source_ids, sites)
    K = base_ids.shape[0]
    # Sort interventions by their lowest layer (stable), so that each batched pass can run the blocks below
    # its lowest site once on the K base rows and widen the batch there (see _widen); results are put back
    # in the given order.
    layer_of = {s: hooks.parse_site(lm, s)[1] for s in sites}
    low = [min(-1 if layer_of[s] is None else layer_of[s] for s, _ in iv) for iv in interventions]
    order = sorted(range(len(interventions)), key=low.__getitem__)
    out = []
    starts = range(0, len(interventions), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="interventions")
    for start in starts:
        idx = order[start : start + batch_size]
        chunk = [interventions[i] for i in idx]
        first = low[idx[0]]
        B = len(chunk)
        masks: dict[str, torch.Tensor] = {}
        for j, iv in enumerate(chunk):
            for site, index in iv:
                if site not in masks:
                    masks[site] = torch.zeros((B,) + tuple(src[site].shape[1:]), dtype=torch.bool, device=src[site].device)
                masks[site][(j,) + tuple(index)] = True
        edits = {}
        for site, mask in masks.items():
            mask_rows = mask.repeat_interleave(K, dim=0)  # row j*K + k
            source_rows = src[site].repeat(B, *([1] * (src[site].dim() - 1)))
            edits[site] = (lambda m, s: (lambda act: torch.where(m, s, act)))(mask_rows, source_rows)
        with hooks.patch(lm, edits):
            if first < 0:  # an intervention on the embedding: nothing below to share
                logits = _logits(lm, base_ids.repeat(B, 1))
            else:
                with _widen(lm, first, B):
                    logits = _logits(lm, base_ids)
        out.append(readout(logits).float().view(B, K).cpu())
    result = torch.empty(len(interventions), K)
    result[torch.tensor(order)] = torch.cat(out)
    return result


def exact_patching(lm, clean_ids, corrupt_ids, interventions, readout: Readout, batch_size: int = 64, progress=False):
    """Exact indirect effects ``F = m(x_c | a = a_p) − m(x_c)``, averaged over the K pairs: a tensor ``[n]``.

    One (batched) forward pass per intervention: the ground truth that attribution patching approximates.
    """
    with torch.no_grad():
        base = readout(_logits(lm, clean_ids)).float().cpu()
    patched = run_interventions(lm, clean_ids, corrupt_ids, interventions, readout, batch_size, progress)
    return (patched - base).mean(dim=1)


# --------------------------------------------------------------------------------------------------
# Gradient-based estimates


def attribution_patching(lm, clean_ids, corrupt_ids, sites: Sequence[str], readout: Readout) -> dict[str, torch.Tensor]:
    """First-order estimates ``∇_a m|_{a_c} ⊙ (a_p − a_c)`` for every element of every site (Nanda 2023).

    Returns ``{site: tensor}`` shaped like the site's activation without the batch axis, averaged over the
    K pairs; sum it over the parts an intervention replaces (:func:`reduce_site`) to estimate that
    intervention's effect. Cost: one forward + one backward pass on the clean input, one forward pass on
    the corrupted one, whatever the number of sites.
    """
    sites = list(sites)
    if not sites:
        raise ValueError("no sites given")
    _check_ids(clean_ids, corrupt_ids)
    corrupt = _source(lm, corrupt_ids, sites)
    with torch.enable_grad(), hooks.capture(lm, sites, detach=False) as cache:
        logits = _logits(lm, clean_ids)
        m = readout(logits).sum()
        grads = torch.autograd.grad(m, [cache[s] for s in sites])
    K = clean_ids.shape[0]
    return {s: ((g * (corrupt[s] - cache[s].detach())).sum(0) / K).cpu() for s, g in zip(sites, grads)}


def ig_patching(
    lm,
    clean_ids,
    corrupt_ids,
    sites: Sequence[str],
    readout: Readout,
    n_steps: int = 10,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Integrated-gradients attribution patching (Marks et al. 2024; Hanna et al. 2024).

    For each site separately, ``F̂_IG = (a_p − a_c) ⊙ (1/N) Σ_α ∇_a m|_{α a_c + (1 − α) a_p}`` with
    ``α ∈ {0, 1/N, …, (N−1)/N}`` and all other activations computed by the model (a left Riemann sum of the
    path integral, so ``Σ F̂_IG`` approaches the exact effect of patching the whole site as N grows).
    The sites of one layer share one forward/backward pass (rows = site × step × pair); the pass runs the
    layers below on the K clean rows only and widens the batch at the layer's input. Returns the same layout
    as :func:`attribution_patching`.
    """
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    sites = list(sites)
    if not sites:
        raise ValueError("no sites given")
    groups: dict = {}
    for s in sites:
        _, layer = hooks.parse_site(lm, s)
        groups.setdefault(layer, []).append(s)
    _check_ids(clean_ids, corrupt_ids)
    clean = _source(lm, clean_ids, sites)
    corrupt = _source(lm, corrupt_ids, sites)
    K = clean_ids.shape[0]
    alphas = torch.arange(n_steps, dtype=torch.float32, device=clean_ids.device) / n_steps
    result = {}
    items = list(groups.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="IG patching (one pass per layer)")
    for layer, chunk in items:
        reps = len(chunk) * n_steps  # rows = (site i, step n, pair k)
        R = reps * K
        leaves, edits = {}, {}
        for i, s in enumerate(chunk):
            a_c, a_p = clean[s], corrupt[s]
            shape = (1,) * (a_c.dim() - 1)
            al = alphas.view(n_steps, 1, *shape)
            interp = al * a_c[None] + (1 - al) * a_p[None]
            leaf = interp.reshape(n_steps * K, *a_c.shape[1:]).clone().requires_grad_(True)
            leaves[s] = leaf
            lo, hi = i * n_steps * K, (i + 1) * n_steps * K

            def edit(act, leaf=leaf, lo=lo, hi=hi):
                if act.shape[0] != R:
                    raise RuntimeError("batch not widened")
                return torch.cat([act[:lo], leaf.to(act.dtype), act[hi:]])

            edits[s] = edit
        with torch.enable_grad(), hooks.patch(lm, edits):
            if layer is None:  # the embedding: no layer below to skip
                logits = _logits(lm, clean_ids.repeat(reps, 1))
            else:
                with _widen(lm, layer, reps):
                    logits = _logits(lm, clean_ids)
            m = readout(logits).sum()
            grads = torch.autograd.grad(m, [leaves[s] for s in chunk])
        for s, g in zip(chunk, grads):
            mean_grad = g.view(n_steps, K, *g.shape[1:]).mean(0)
            result[s] = ((mean_grad * (corrupt[s] - clean[s])).sum(0) / K).detach().cpu()
    return {s: result[s] for s in sites}


@contextlib.contextmanager
def _widen(lm, layer: int, reps: int):
    """Repeat the batch ``reps`` times at the input of block ``layer`` (rows j·K + k), so the blocks below run once.

    Valid because the model's remaining inputs (rotary position embeddings, a causal mask without padding)
    broadcast over the batch; the result equals running ``ids.repeat(reps, 1)`` from the start.
    """
    block = hooks.layout(lm).layers[layer]

    def pre(module, args, kwargs):
        if args:
            return ((args[0].repeat(reps, *([1] * (args[0].dim() - 1))), *args[1:]), kwargs)
        h = kwargs["hidden_states"]
        return (args, {**kwargs, "hidden_states": h.repeat(reps, *([1] * (h.dim() - 1)))})

    handle = block.register_forward_pre_hook(pre, with_kwargs=True, prepend=True)
    try:
        yield
    finally:
        handle.remove()


def reduce_site(attr: dict[str, torch.Tensor], interventions) -> torch.Tensor:
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
