"""Circuits: induction heads and indirect-object identification (IOI), found with the one intervention engine.

**Induction** (Elhage et al. 2021; Olsson et al. 2022). On a random token sequence repeated twice,
``x = [BOS, t_1 … t_T, t_1 … t_T]``, the first half cannot be predicted and the repeat can, by copying: at a
query position ``i`` in the repeat, an *induction head* attends to the token after the previous occurrence of
the current token, position ``i − T + 1``, and copies it. From the attention patterns ``A[l, h, i, j]`` of all
heads (:func:`attention_patterns`):

* induction (prefix-matching) score ``s_ind(l, h) = mean_{batch, i in the repeat} A[l, h, i, i − T + 1]``;
* previous-token score ``s_prev(l, h) = mean_{batch, i ≥ 1} A[l, h, i, i − 1]`` (the heads that feed induction
  heads through K-composition);
* duplicate-token score ``s_dup(l, h) = mean_{batch, i in the repeat} A[l, h, i, i − T]``.

Per-token loss ``ℓ_t = −log p(x_{t+1} | x_{≤t})`` (:func:`per_token_loss`); ablating a set of heads replaces
their outputs ``head.L[:, :, h]`` by zero or by their mean over a reference batch (:func:`head_means`), many
sets per forward pass (:func:`ablate_heads`, through :func:`labkit.lm.interventions.run_interventions`).

**IOI** (Wang et al. 2023). "When Mary and John went to the store, John gave a drink to" → " Mary": the
indirect object (IO) rather than the subject (S). Metric: the logit difference at the final position
``m = logit(IO) − logit(S)``. Prompts come in two orders (ABBA: IO first; BABA: S first) and a corrupted
"ABC" distribution with three other names (:func:`ioi_dataset`). Methods:

* activation patching of every head's output at each relevant position (IO, S1, S1+1, S2, END):
  ``F = m(x_clean | head = head(x_ABC)) − m(x_clean)`` (:func:`head_patching`, exact, batched);
* attribution patching of the same (Nanda 2023; Syed et al. 2023) and its agreement with the exact values
  (:func:`head_attribution`, :func:`compare_estimates`);
* path patching (Wang et al. 2023, §3.1): the sender heads' outputs take their values on x_ABC, every other
  head is frozen at its value on x_clean (MLPs recompute, unless ``freeze_mlps``), and the receivers' query,
  key or value inputs so obtained are patched into an otherwise clean run; the effect on ``m`` flows only
  through sender → receiver (:func:`path_patching`; :func:`path_patching_naive` is the one-pair-at-a-time
  reference);
* faithfulness of a circuit C (Wang et al. 2023, §4): mean-ablate (over the ABC distribution) every head
  outside C; ``F(C) / F(M)`` is the fraction of the model's logit difference it keeps
  (:func:`circuit_faithfulness`); minimality of each head v ∈ C: ``F(C \\ K) − F(C \\ (K ∪ {v}))``
  (:func:`minimality`). Conmy et al. (2023) automate this search (ACDC).

References: Olsson et al. (2022) *In-context learning and induction heads*; Wang, Variengien, Conmy, Shlegeris &
Steinhardt (2023) *Interpretability in the wild: a circuit for indirect object identification in GPT-2 small*,
ICLR; Conmy, Mavor-Parker, Lynch, Heimersheim & Garriga-Alonso (2023) *Towards automated circuit discovery for
mechanistic interpretability*, NeurIPS.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from labkit.lm import hooks
from labkit.lm import interventions as I
from labkit.stats import spearman
from labkit.validation import integer_at_least as _int
from labkit.validation import language_model as _check_lm

__all__ = [
    "IOI_NAMES",
    "IOI_TEMPLATES",
    "ablate_heads",
    "attention_patterns",
    "circuit_faithfulness",
    "compare_estimates",
    "document_start",
    "duplicate_token_scores",
    "edge_attribution",
    "head_attribution",
    "head_means",
    "head_patching",
    "induction_scores",
    "ioi_dataset",
    "ioi_performance",
    "ioi_readout",
    "logprob_readout",
    "minimality",
    "path_patching",
    "path_patching_naive",
    "per_token_loss",
    "previous_token_scores",
    "repeat_halves",
    "repeat_loss_readout",
    "repeated_tokens",
    "single_token_names",
    "top_heads",
]

Head = tuple  # (layer, head)

# --------------------------------------------------------------------------------------------------
# Checks


def _ids(ids, name: str = "ids") -> torch.Tensor:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.numel() == 0:
        raise ValueError(f"{name} must be a non-empty [batch, seq] tensor of token ids, got "
                         f"{getattr(ids, 'shape', type(ids).__name__)}")
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    return ids


def _heads(lm, heads, name: str = "heads") -> list[tuple[int, int]]:
    """A list of (layer, head) pairs valid for ``lm``."""
    if isinstance(heads, (str, bytes)) or not isinstance(heads, Sequence):
        raise TypeError(f"{name} must be a list of (layer, head) pairs, got {type(heads).__name__}")
    out = []
    for pair in heads:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
            raise TypeError(f"{name} must be (layer, head) pairs of ints, got {pair!r}")
        L, h = pair
        if not (0 <= L < lm.n_layers and 0 <= h < lm.n_heads):
            raise ValueError(f"head {tuple(pair)} in {name} is out of range: this model has {lm.n_layers} layers "
                             f"and {lm.n_heads} heads per layer")
        out.append((L, h))
    return out


def _groups(lm, items, name: str) -> list[list[tuple[int, int]]]:
    """Senders or receivers: each item one head (layer, head) or a non-empty list of heads acting together."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or len(items) == 0:
        raise ValueError(f"{name} must be a non-empty list of heads (layer, head) or of lists of heads")
    out = []
    for item in items:
        if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(v, int) for v in item):
            out.append(_heads(lm, [item], name))
        else:
            group = _heads(lm, item, name)
            if not group:
                raise ValueError(f"an item of {name} is an empty list of heads")
            out.append(group)
    return out


def _patterns(patterns) -> torch.Tensor:
    if not isinstance(patterns, torch.Tensor) or patterns.dim() not in (4, 5) or patterns.shape[-1] != patterns.shape[-2]:
        raise ValueError("patterns must be attention patterns [layers, batch, heads, query, key] (or [batch, heads, "
                         f"query, key]) with query = key length, got {getattr(patterns, 'shape', type(patterns).__name__)}")
    if not patterns.is_floating_point():
        raise TypeError(f"patterns must be a floating-point tensor, got dtype {patterns.dtype}")
    return patterns if patterns.dim() == 5 else patterns[None]


def _period(period, seq: int) -> int:
    period = _int(period, "period", 1)
    if 2 * period > seq:
        raise ValueError(f"period {period} does not fit: a sequence repeated twice needs 2·{period} ≤ seq = {seq}")
    return period


# --------------------------------------------------------------------------------------------------
# Induction


def document_start(tokenizer) -> int | None:
    """The token a pretraining document starts after: ``<|endoftext|>`` where the tokenizer has it (SmolLM2,
    GPT-2, Pythia), else its BOS token. SmolLM2-Instruct's BOS token ``<|im_start|>`` is the chat markup: after it
    the model copies repeated tokens far less well (mean log-probability of the repeat −4.3 instead of −1.8)."""
    vocab = tokenizer.get_vocab()
    if "<|endoftext|>" in vocab:
        return vocab["<|endoftext|>"]
    return tokenizer.bos_token_id


def repeated_tokens(source, n: int, length: int, seed: int = 0, bos: int | None = -1) -> torch.Tensor:
    """``n`` random token sequences of ``length`` tokens, each repeated twice: ``[n, 1 + 2·length]`` (with BOS).

    ``source`` is a :class:`~labkit.lm.LanguageModel` (tokens drawn uniformly from the ids above its special
    tokens; BOS = :func:`document_start`) or a vocabulary size (tokens from all ids; BOS = 0). ``bos=None``
    leaves the BOS out (``[n, 2·length]``); an int sets it. The same ``seed`` gives the same sequences.
    """
    from labkit.lm import LanguageModel

    if isinstance(source, LanguageModel):
        vocab = source.vocab_size
        special = [i for i in source.tokenizer.all_special_ids if i is not None and i < vocab]
        low = max(special, default=-1) + 1
        default_bos = document_start(source.tokenizer)
        default_bos = 0 if default_bos is None else default_bos
    elif isinstance(source, int) and not isinstance(source, bool):
        vocab, low, default_bos = _int(source, "vocab_size", 2), 0, 0
    else:
        raise TypeError(f"source must be a labkit LanguageModel or a vocabulary size (int), got {type(source).__name__}")
    n, length = _int(n, "n", 1), _int(length, "length", 1)
    seed = _int(seed, "seed", 0)
    if bos == -1:
        bos = default_bos
    elif bos is not None and (isinstance(bos, bool) or not isinstance(bos, int) or not 0 <= bos < vocab):
        raise ValueError(f"bos must be None or a token id in 0-{vocab - 1}, got {bos!r}")
    if low >= vocab:
        raise ValueError(f"no ordinary tokens to draw: the vocabulary has {vocab} ids, all special")
    half = torch.randint(low, vocab, (n, length), generator=torch.Generator().manual_seed(seed))
    ids = torch.cat([half, half], dim=1)
    if bos is not None:
        ids = torch.cat([torch.full((n, 1), bos, dtype=torch.long), ids], dim=1)
    return ids


@torch.no_grad()
def per_token_loss(lm, ids: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """``ℓ[b, t] = −log p(x_{t+1} | x_{≤t})`` for every position: ``[batch, seq − 1]`` (float32, on the CPU)."""
    _check_lm(lm)
    ids = _ids(ids)
    if ids.shape[1] < 2:
        raise ValueError("ids need at least 2 tokens to have a next token to predict")
    batch_size = _int(batch_size, "batch_size", 1)
    out = []
    for start in range(0, ids.shape[0], batch_size):
        chunk = ids[start: start + batch_size].to(lm.device)
        logits = lm.model(input_ids=chunk, use_cache=False).logits.float()
        out.append(-torch.log_softmax(logits[:, :-1], -1).gather(-1, chunk[:, 1:, None])[..., 0].cpu())
    return torch.cat(out)


def repeat_halves(loss: torch.Tensor, period: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss of the first copy and of the repeat, from :func:`per_token_loss` of repeated sequences.

    With ``seq = loss.shape[1] + 1`` tokens whose last ``2T`` are two copies: the first copy's tokens are
    predicted at ``t = seq − 2T − 1 … seq − T − 2`` (its first token from BOS), the repeat's at
    ``t = seq − T … seq − 2`` (leaving out the repeat's first token, which nothing predicts). Returns the two
    means over the batch and those positions.
    """
    if not isinstance(loss, torch.Tensor) or loss.dim() != 2 or not loss.is_floating_point():
        raise ValueError(f"loss must be a [batch, seq − 1] float tensor from per_token_loss, got "
                         f"{getattr(loss, 'shape', type(loss).__name__)}")
    seq = loss.shape[1] + 1
    T = _period(period, seq)
    first = loss[:, max(seq - 2 * T - 1, 0): seq - T - 1]
    second = loss[:, seq - T: seq - 1]
    return first.mean(), second.mean()


@torch.no_grad()
def attention_patterns(lm, ids: torch.Tensor, layers: Sequence[int] | None = None) -> torch.Tensor:
    """Attention probabilities of every head: ``[layers, batch, heads, query, key]`` (float32, CPU), one pass.

    Row ``i`` of head ``(l, h)`` is ``A[l, h, i, :] = softmax(q_i · k_j / √d + mask)``, read at the ``pattern.L``
    sites of :mod:`labkit.lm.hooks`.
    """
    _check_lm(lm)
    ids = _ids(ids)
    if layers is None:
        layers = list(range(lm.n_layers))
    elif isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers or any(
            isinstance(L, bool) or not isinstance(L, int) or not 0 <= L < lm.n_layers for L in layers):
        raise ValueError(f"layers must be a non-empty list of layer indices in 0-{lm.n_layers - 1}, got {layers!r}")
    sites = [f"pattern.{L}" for L in layers]
    with hooks.capture(lm, sites) as cache:
        lm.model(input_ids=ids.to(lm.device), use_cache=False, logits_to_keep=1)
    return torch.stack([cache[s].float().cpu() for s in sites])


def _diagonal(patterns: torch.Tensor, offset: int, queries: range) -> torch.Tensor:
    """``mean_{batch, i in queries} A[..., i, i − offset]`` per (layer, head): ``[layers, heads]``."""
    q = torch.tensor(list(queries))
    return patterns[:, :, :, q, q - offset].float().mean(dim=(1, 3))


def induction_scores(patterns: torch.Tensor, period: int) -> torch.Tensor:
    """Induction (prefix-matching) score per head, ``[layers, heads]`` (Olsson et al. 2022).

    On sequences whose last ``2T`` tokens are two copies of T random tokens:
    ``s_ind(l, h) = mean_{batch, i = seq − T … seq − 1} A[l, h, i, i − T + 1]``, the attention from each position
    of the repeat to the token after the previous occurrence of its token. 1 = a perfect induction head.
    """
    patterns = _patterns(patterns)
    seq = patterns.shape[-1]
    T = _period(period, seq)
    return _diagonal(patterns, T - 1, range(seq - T, seq))


def previous_token_scores(patterns: torch.Tensor, start: int = 1) -> torch.Tensor:
    """Previous-token score per head, ``[layers, heads]``: ``mean_{batch, i ≥ start} A[l, h, i, i − 1]``."""
    patterns = _patterns(patterns)
    seq = patterns.shape[-1]
    start = _int(start, "start", 1)
    if start >= seq:
        raise ValueError(f"start {start} leaves no query position in sequences of {seq} tokens")
    return _diagonal(patterns, 1, range(start, seq))


def duplicate_token_scores(patterns: torch.Tensor, period: int) -> torch.Tensor:
    """Duplicate-token score per head, ``[layers, heads]``: ``mean_{batch, i in the repeat} A[l, h, i, i − T]``,
    the attention to the previous occurrence of the same token (Wang et al. 2023's duplicate-token heads)."""
    patterns = _patterns(patterns)
    seq = patterns.shape[-1]
    T = _period(period, seq)
    return _diagonal(patterns, T, range(seq - T, seq))


def top_heads(scores: torch.Tensor, k: int = 10, largest: bool = True) -> list[tuple[int, int, float]]:
    """The ``k`` heads with the largest (``largest=False``: smallest) score: ``[(layer, head, score), …]``."""
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or scores.numel() == 0:
        raise ValueError(f"scores must be a [layers, heads] tensor, got {getattr(scores, 'shape', type(scores).__name__)}")
    k = _int(k, "k", 1)
    flat = scores.flatten().float()
    if torch.isnan(flat).any():
        raise ValueError("scores contain NaN")
    values, idx = flat.topk(min(k, flat.numel()), largest=largest)
    H = scores.shape[1]
    return [(int(i) // H, int(i) % H, float(v)) for v, i in zip(values, idx)]


@torch.no_grad()
def head_means(lm, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every head's output averaged over the batch, per position: ``{"head.L": [1, seq, heads, d_head]}``.

    The values mean ablation puts in (Wang et al. 2023: the mean over the ABC distribution; for induction: over
    the repeated sequences), one forward pass.
    """
    _check_lm(lm)
    ids = _ids(ids)
    sites = [f"head.{L}" for L in range(lm.n_layers)]
    with hooks.capture(lm, sites) as cache:
        lm.model(input_ids=ids.to(lm.device), use_cache=False, logits_to_keep=1)
    return {s: cache[s].mean(0, keepdim=True) for s in sites}


def repeat_loss_readout(ids: torch.Tensor, period: int) -> I.Readout:
    """A readout (for :func:`ablate_heads` with ``all_positions=True``): each row's mean loss over the repeat,
    ``mean_{t = seq − T … seq − 2} −log p(x_{t+1} | x_{≤t})`` (the positions :func:`repeat_halves` uses)."""
    ids = _ids(ids)
    seq = ids.shape[1]
    T = _period(period, seq)

    def readout(logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != seq:
            raise ValueError(f"repeat_loss_readout needs every position's logits ({seq}), got {logits.shape[1]}: "
                             "run with all_positions=True")
        reps = logits.shape[0] // ids.shape[0]
        target = ids.to(logits.device).repeat(reps, 1)[:, seq - T + 1:]
        logp = torch.log_softmax(logits[:, seq - T: seq - 1].float(), -1)
        return -logp.gather(-1, target[..., None])[..., 0].double().mean(-1)

    return readout


def logprob_readout(targets) -> I.Readout:
    """A readout: each row's ``log p(target_k)`` at the last position, in float64, for K prompts with their own
    target tokens (rows of a batched run are copy-major, row = j·K + k, as in
    :func:`labkit.lm.interventions.logratio_readout`)."""
    targets = torch.as_tensor(targets)
    if targets.dim() != 1 or targets.numel() == 0 or targets.is_floating_point() or (targets < 0).any():
        raise ValueError(f"targets must be a non-empty 1-D tensor of token ids, got {targets!r}")

    def readout(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1].double().log_softmax(-1)
        if last.shape[0] % len(targets):
            raise ValueError(f"{last.shape[0]} rows are not a multiple of the {len(targets)} prompts")
        t = targets.to(last.device).repeat(last.shape[0] // len(targets))
        return last[torch.arange(last.shape[0], device=last.device), t]

    return readout


def ablate_heads(lm, ids: torch.Tensor, head_sets: Sequence[Sequence[Head]], readout: I.Readout,
                 means: dict[str, torch.Tensor] | None = None, all_positions: bool = False,
                 batch_size: int = 16) -> torch.Tensor:
    """The readout with each set of heads ablated: ``[n_sets, batch]`` (float64).

    Set ``j`` replaces the outputs ``head.L[:, :, h]`` of its heads, at every position, by zero (``means=None``:
    zero ablation) or by ``means["head.L"][:, :, h]`` (mean ablation; :func:`head_means`, e.g. over the ABC
    distribution). Many sets share one forward pass, each pass starting at its lowest layer
    (:func:`labkit.lm.interventions.run_interventions` with the given source activations). An empty set is the
    unablated model.
    """
    _check_lm(lm)
    ids = _ids(ids)
    if isinstance(head_sets, (str, bytes)) or not isinstance(head_sets, Sequence) or len(head_sets) == 0:
        raise ValueError("head_sets must be a non-empty list of sets of (layer, head) pairs")
    sets = [_heads(lm, list(s), "head_sets") for s in head_sets]
    if not callable(readout):
        raise TypeError(f"readout must be a function of the logits, got {type(readout).__name__}")
    batch_size = _int(batch_size, "batch_size", 1)
    sites = sorted({f"head.{L}" for s in sets for L, _ in s}, key=lambda x: int(x.split(".")[1]))
    if means is None:
        d_head = lm.layout.d_head
        source = {s: torch.zeros(1, ids.shape[1], lm.n_heads, d_head, dtype=lm.dtype) for s in sites}
    else:
        if not isinstance(means, dict):
            raise TypeError("means must be a dict {'head.L': [1, seq, heads, d_head]} from head_means")
        missing = [s for s in sites if s not in means]
        if missing:
            raise KeyError(f"means has no {', '.join(missing)}: compute them with head_means")
        source = {s: means[s] for s in sites}
        for s, v in source.items():
            if not isinstance(v, torch.Tensor) or v.dim() != 4 or v.shape[1:] != (ids.shape[1], lm.n_heads, lm.layout.d_head):
                raise ValueError(f"means[{s!r}] must be [1, {ids.shape[1]}, {lm.n_heads}, {lm.layout.d_head}] (the "
                                 f"mean over prompts of the same length as ids), got {getattr(v, 'shape', v)}")
    out = torch.empty(len(sets), ids.shape[0], dtype=torch.float64)
    ivs = {j: [(f"head.{L}", (slice(None), h)) for L, h in s] for j, s in enumerate(sets) if s}
    if len(ivs) < len(sets):
        with torch.no_grad():
            plain = I.run_copies(lm, ids.to(lm.device), 1, {}, readout, start=0, all_positions=all_positions)[0]
        for j, s in enumerate(sets):
            if not s:
                out[j] = plain.cpu()
    if ivs:
        rows = list(ivs)
        out[rows] = I.run_interventions(lm, ids.to(lm.device), source, list(ivs.values()), readout,
                                        batch_size=batch_size, all_positions=all_positions)
    return out


# --------------------------------------------------------------------------------------------------
# IOI: data

#: Templates after Wang et al. (2023), with a fixed place and object each so that all prompts of a template have
#: the same length: ``{A}`` and ``{B}`` are the first two names (ABBA: A = IO, B = S; BABA: A = S, B = IO), ``{S}``
#: the subject's second mention; the answer is the IO name at the end.
IOI_TEMPLATES = [
    "Then, {A} and {B} went to the store. {S} gave a drink to",
    "When {A} and {B} got a snack at the park, {S} decided to give it to",
    "While {A} and {B} were working at the office, {S} gave a book to",
    "After the lunch, {A} and {B} went to the beach. {S} gave a ring to",
    "Then, {A} and {B} had a long argument. Afterwards {S} said to",
    "While {A} and {B} were commuting to the school, {S} gave a pen to",
]

#: Candidate first names; :func:`single_token_names` keeps those that are one token after a space.
IOI_NAMES = ["Mary", "John", "Tom", "James", "Dan", "Sid", "Martin", "Amy", "Kate", "Paul", "Anna", "Mark", "Sarah", "Lisa", "Mike", "David", "Emma", "Alice", "Bob", "Jack", "Ben", "Sam", "Jane", "Max", "Rose", "Luke", "Adam", "Eric", "Ryan", "Tim", "Joe", "Ann", "Ruth", "Carl", "Fred", "Helen", "Peter", "Susan", "Grace", "Laura", "Kevin", "Jason"]


def single_token_names(lm, names: Sequence[str] = IOI_NAMES) -> list[str]:
    """The names that the tokenizer writes as one token after a space (``" Mary"``), in the given order."""
    _check_lm(lm)
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence) or not names:
        raise ValueError("names must be a non-empty list of strings")
    if any(not isinstance(n, str) or not n.strip() for n in names):
        raise ValueError(f"names must be non-empty strings, got {list(names)!r}")
    return [n for n in names if len(lm.encode(" " + n.strip())) == 1]


def ioi_dataset(lm, n: int = 8, templates: Sequence[str] | None = None, names: Sequence[str] | None = None,
                seed: int = 0, orders: Sequence[str] = ("ABBA", "BABA"), bos: bool = True) -> list[dict]:
    """IOI prompts grouped by (template, order): a list of groups, each a dict of ``n`` prompt pairs.

    Each group: ``template``, ``order``; ``prompts`` and ``corrupted`` (texts); ``clean_ids`` and
    ``corrupt_ids`` ``[n, seq]`` (with :func:`document_start` first when ``bos``); ``io`` and ``s`` ``[n]`` (the
    answer's and the subject's token ids); ``positions``: the token positions ``IO``, ``S1``, ``S1+1``, ``S2``,
    ``END`` (the same for every prompt of the group). The corrupted prompt of each pair (Wang et al.'s ABC
    distribution) puts three other distinct names in the three name slots. Names must be single tokens
    (checked with the tokenizer: :func:`single_token_names`); a template must contain ``{A}``, ``{B}``, ``{S}``
    once each.
    """
    _check_lm(lm)
    n, seed = _int(n, "n", 1), _int(seed, "seed", 0)
    templates = list(IOI_TEMPLATES if templates is None else templates)
    if not templates or any(not isinstance(t, str) or any(t.count(k) != 1 for k in ("{A}", "{B}", "{S}")) for t in templates):
        raise ValueError("templates must be a non-empty list of strings with {A}, {B} and {S} once each")
    if isinstance(orders, str) or not orders or any(o not in ("ABBA", "BABA") for o in orders):
        raise ValueError(f"orders must be a list of 'ABBA' and/or 'BABA', got {orders!r}")
    pool = single_token_names(lm, IOI_NAMES if names is None else names)
    if names is not None and len(pool) < len(names):
        bad = [x for x in names if x not in pool]
        raise ValueError(f"names {bad} are not one token after a space in this tokenizer: IOI needs single-token names")
    if len(pool) < 5:
        raise ValueError(f"IOI needs at least 5 single-token names (IO, S and three for ABC), got {len(pool)}")
    bos_id = document_start(lm.tokenizer) if bos else None
    rng = random.Random(seed)
    groups = []
    for template in templates:
        for order in orders:
            prompts, corrupted, io, s = [], [], [], []
            for _ in range(n):
                a, b, x, y, z = rng.sample(pool, 5)  # a = IO, b = S; x, y, z for ABC
                first, second = (a, b) if order == "ABBA" else (b, a)
                prompts.append(template.format(A=first, B=second, S=b))
                corrupted.append(template.format(A=x, B=y, S=z))
                io.append(lm.token_id(" " + a))
                s.append(lm.token_id(" " + b))
            clean_ids, corrupt_ids = I.paired_ids(lm, prompts, corrupted, device="cpu",
                                                  hint="IOI names must be single tokens")
            if bos_id is not None:
                col = torch.full((n, 1), bos_id, dtype=torch.long)
                clean_ids, corrupt_ids = torch.cat([col, clean_ids], 1), torch.cat([col, corrupt_ids], 1)
            io_t, s_t = torch.tensor(io), torch.tensor(s)
            pos = {}
            for k in range(n):
                row = clean_ids[k]
                s_pos = (row == s_t[k]).nonzero().flatten().tolist()
                io_pos = (row == io_t[k]).nonzero().flatten().tolist()
                if len(s_pos) != 2 or len(io_pos) != 1:
                    raise ValueError(f"template {template!r}: the names of {prompts[k]!r} are not found once (IO) "
                                     f"and twice (S) among its tokens")
                here = {"IO": io_pos[0], "S1": s_pos[0], "S1+1": s_pos[0] + 1, "S2": s_pos[1],
                        "END": row.shape[0] - 1}
                if pos and here != pos:
                    raise ValueError(f"template {template!r}: name positions differ between prompts")
                pos = here
            groups.append({"template": template, "order": order, "prompts": prompts, "corrupted": corrupted,
                           "clean_ids": clean_ids, "corrupt_ids": corrupt_ids, "io": io_t, "s": s_t, "positions": pos})
    return groups


def _group(group) -> dict:
    keys = ("clean_ids", "corrupt_ids", "io", "s", "positions")
    if not isinstance(group, dict) or any(k not in group for k in keys):
        raise TypeError(f"group must be one group of ioi_dataset (a dict with {', '.join(keys)})")
    return group


@torch.no_grad()
def ioi_performance(lm, groups: Sequence[dict]) -> list[dict]:
    """Per group: the mean logit difference ``logit(IO) − logit(S)`` at END, the accuracy (share of prompts with
    ``logit(IO) > logit(S)``), the mean p(IO), the same logit difference on the ABC prompts, and the template."""
    _check_lm(lm)
    if isinstance(groups, dict):
        groups = [groups]
    if not groups:
        raise ValueError("groups must be a non-empty list of ioi_dataset groups")
    out = []
    for g in map(_group, groups):
        rows = torch.arange(len(g["io"]))
        res = {}
        for side in ("clean_ids", "corrupt_ids"):
            logits = lm.last_logits(input_ids=g[side].to(lm.device)).float().cpu()
            diff = logits[rows, g["io"]] - logits[rows, g["s"]]
            res[side] = (diff, torch.softmax(logits, -1)[rows, g["io"]])
        diff, p_io = res["clean_ids"]
        out.append({"template": g.get("template", ""), "order": g.get("order", ""),
                    "logit_diff": float(diff.mean()), "accuracy": float((diff > 0).float().mean()),
                    "p_io": float(p_io.mean()), "logit_diff_abc": float(res["corrupt_ids"][0].mean())})
    return out


def _positions(group: dict, positions) -> list[tuple[str, int]]:
    if isinstance(positions, str) or not isinstance(positions, Sequence) or not positions:
        raise ValueError(f"positions must be a non-empty list of names among {list(group['positions'])}")
    bad = [p for p in positions if p not in group["positions"]]
    if bad:
        raise ValueError(f"unknown positions {bad}: the group has {list(group['positions'])}")
    return [(p, group["positions"][p]) for p in positions]


POSITIONS = ("IO", "S1", "S1+1", "S2", "END")


def ioi_readout(group: dict) -> I.Readout:
    """The IOI metric of a group as an engine readout: ``logit(IO) − logit(S)`` at the last position, per prompt
    (:func:`labkit.lm.interventions.logratio_readout` with the group's ``io`` and ``s``)."""
    g = _group(group)
    return I.logratio_readout(g["io"], g["s"])


def head_patching(lm, group: dict, positions: Sequence[str] = POSITIONS, batch_size: int = 256,
                  heads: Sequence[Head] | None = None) -> torch.Tensor:
    """Exact activation patching of every head's output at each position: ``[positions, layers, heads]``
    (``heads`` given: only those, ``[positions, len(heads)]``).

    ``F(l, h, p) = m(x_clean | head_{l,h}[p] = head_{l,h}[p](x_ABC)) − m(x_clean)`` averaged over the group's
    prompts, ``m = logit(IO) − logit(S)`` at END; one intervention per (position, head), batched through
    :func:`labkit.lm.interventions.exact_patching`. Negative = the head at that position carries the IOI signal.
    """
    _check_lm(lm)
    g = _group(group)
    pos = _positions(g, positions)
    chosen = _all_heads(lm) if heads is None else _heads(lm, list(heads))
    if not chosen:
        raise ValueError("heads must not be empty")
    ivs = [[(f"head.{L}", (p, h))] for _, p in pos for L, h in chosen]
    readout = I.logratio_readout(g["io"], g["s"])
    eff = I.exact_patching(lm, g["clean_ids"].to(lm.device), g["corrupt_ids"].to(lm.device), ivs, readout,
                           batch_size=_int(batch_size, "batch_size", 1))
    return eff.view(len(pos), lm.n_layers, lm.n_heads) if heads is None else eff.view(len(pos), len(chosen))


def head_attribution(lm, group: dict, positions: Sequence[str] = POSITIONS) -> torch.Tensor:
    """Attribution-patching estimate of :func:`head_patching`: ``[positions, layers, heads]`` from one forward and
    one backward pass, ``F̂ = ∇_a m|_{a_clean} · (a_ABC − a_clean)`` summed over the head's ``d_head`` entries at
    that position (Nanda 2023; :func:`labkit.lm.interventions.attribution_patching`)."""
    _check_lm(lm)
    g = _group(group)
    pos = _positions(g, positions)
    readout = I.logratio_readout(g["io"], g["s"])
    sites = [f"head.{L}" for L in range(lm.n_layers)]
    attr = I.attribution_patching(lm, g["clean_ids"].to(lm.device), g["corrupt_ids"].to(lm.device), sites, readout)
    return torch.stack([torch.stack([attr[s][p].sum(-1) for s in sites]) for _, p in pos])


def compare_estimates(exact: torch.Tensor, estimate: torch.Tensor, k: int = 10) -> dict[str, float]:
    """How well an estimate ranks and sizes the exact effects: Pearson correlation, Spearman rank correlation,
    (:func:`labkit.stats.spearman`, ties averaged) and the top-k overlap ``|top_k(|exact|) ∩ top_k(|estimate|)| / k``."""
    if not isinstance(exact, torch.Tensor) or not isinstance(estimate, torch.Tensor):
        raise TypeError("exact and estimate must be tensors")
    if exact.shape != estimate.shape or exact.numel() < 2:
        raise ValueError(f"exact and estimate must have one shape with at least 2 entries, got {list(exact.shape)} "
                         f"and {list(estimate.shape)}")
    a, b = exact.flatten().double(), estimate.flatten().double()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("exact and estimate must be finite")
    k = min(_int(k, "k", 1), a.numel())

    def pearson(x, y):
        x, y = x - x.mean(), y - y.mean()
        den = (x.norm() * y.norm()).item()
        return float((x @ y) / den) if den > 0 else float("nan")

    top_a = set(a.abs().topk(k).indices.tolist())
    top_b = set(b.abs().topk(k).indices.tolist())
    return {"pearson": pearson(a, b), "spearman": spearman(a, b), "top_k_overlap": len(top_a & top_b) / k}


# --------------------------------------------------------------------------------------------------
# Path patching


def _via(via) -> tuple[str, ...]:
    via = (via,) if isinstance(via, str) else tuple(via) if isinstance(via, (tuple, list)) else None
    if not via or any(v not in ("q", "k", "v") for v in via) or len(set(via)) != len(via):
        raise ValueError(f"via must be 'q', 'k', 'v' or a list of them (the receiver inputs to patch), got {via!r}")
    return via


def _path_args(lm, clean_ids, corrupt_ids, senders, receivers, readout, via, receiver_positions):
    _check_lm(lm)
    if _ids(clean_ids, "clean_ids").shape != _ids(corrupt_ids, "corrupt_ids").shape:
        raise ValueError(f"clean_ids and corrupt_ids differ in shape: {list(clean_ids.shape)} vs "
                         f"{list(corrupt_ids.shape)}; path patching needs [K, seq] pairs of the same token length")
    senders = _groups(lm, senders, "senders")
    receivers = None if receivers is None else _groups(lm, receivers, "receivers")
    if not callable(readout):
        raise TypeError(f"readout must be a function of the logits, got {type(readout).__name__}")
    via = _via(via)
    seq = clean_ids.shape[1]
    if receiver_positions is not None:
        receiver_positions = [receiver_positions] if isinstance(receiver_positions, int) else list(receiver_positions)
        if not receiver_positions or any(isinstance(p, bool) or not isinstance(p, int) or not -seq <= p < seq
                                         for p in receiver_positions):
            raise ValueError(f"receiver_positions must be positions in 0-{seq - 1} (or negative), got {receiver_positions!r}")
        receiver_positions = sorted({p % seq for p in receiver_positions})
    return senders, receivers, via, receiver_positions


def _head_caches(lm, clean_ids, corrupt_ids, freeze_mlps: bool):
    sites = [f"head.{L}" for L in range(lm.n_layers)] + ([f"mlp_out.{L}" for L in range(lm.n_layers)] if freeze_mlps else [])
    out = []
    for ids in (clean_ids, corrupt_ids):
        with torch.no_grad(), hooks.capture(lm, sites) as cache:
            lm.model(input_ids=ids, use_cache=False, logits_to_keep=1)
        out.append(dict(cache))
    return out


def _constant(value: torch.Tensor):
    """An edit that replaces the activation by ``value``."""
    return lambda act: value


def _replace(mask: torch.Tensor, value: torch.Tensor):
    """An edit that replaces the activation by ``value`` where ``mask`` is true."""
    return lambda act: torch.where(mask, value, act)


def _freeze_edits(lm, clean, corrupt, sender_rows: list[list[tuple[int, int]]], K: int, top: int, freeze_mlps: bool):
    """Edits for the sender runs: row block j (K rows) has the heads of ``sender_rows[j]`` at their ABC values, every
    other head (and, with ``freeze_mlps``, every MLP output) at its clean value, in layers below ``top``."""
    B = len(sender_rows)
    edits = {}
    low = min(L for group in sender_rows for L, _ in group)
    for L in range(low, top):
        site = f"head.{L}"
        mask = torch.zeros(B, 1, lm.n_heads, 1, dtype=torch.bool, device=lm.device)
        for j, group in enumerate(sender_rows):
            for layer, h in group:
                if layer == L:
                    mask[j, 0, h, 0] = True
        value = torch.where(mask.repeat_interleave(K, 0), corrupt[site].repeat(B, 1, 1, 1), clean[site].repeat(B, 1, 1, 1))
        edits[site] = _constant(value)
        if freeze_mlps:
            edits[f"mlp_out.{L}"] = _constant(clean[f"mlp_out.{L}"].repeat(B, 1, 1))
    return edits, low


@torch.no_grad()
def path_patching(lm, clean_ids: torch.Tensor, corrupt_ids: torch.Tensor, senders, receivers, readout: I.Readout,
                  via="q", receiver_positions=None, freeze_mlps: bool = False, batch_size: int = 32) -> torch.Tensor:
    """Path patching (Wang et al. 2023): the effect of each sender on the metric through each receiver's input only.

    For a sender s (a head, or a list of heads patched together) and a receiver r (a head or list of heads):

    1. *sender run*: the clean input, with the senders' outputs ``head.L[:, :, h]`` at their values on the
       corrupted input and every other head's output frozen at its clean value (MLPs recompute; with
       ``freeze_mlps`` they are frozen at their clean values too, leaving only the direct path);
       read the receivers' inputs ``via`` (``q.R``/``k.R``/``v.R`` of :mod:`labkit.lm.hooks`, per query head);
    2. *receiver run*: the clean input with only those receiver inputs replaced by their sender-run values
       (at ``receiver_positions``, default every position); ``F(s → r) = m(patched) − m(x_clean)``, averaged
       over the K prompt pairs.

    With ``receivers=None`` the metric is read at the end of the sender run itself: the effect of s on the
    logits through the residual stream, with every other head frozen (Wang et al.'s "s → logits").
    Returns ``[n_senders, n_receivers]`` (``[n_senders]`` without receivers), float32.

    Batched: one sender run serves all receivers of a sender, ``batch_size`` senders (× K prompts) share a
    forward pass, and each pass starts at the lowest layer it changes; receiver runs batch ``batch_size``
    (sender, receiver) pairs per pass, each starting at the receivers' lowest layer
    (:func:`labkit.lm.interventions.run_copies`). A pair whose senders all sit at or above the receivers' layers
    has no path: its effect is 0. Equal to :func:`path_patching_naive` up to float rounding.
    """
    senders, receivers, via, rpos = _path_args(lm, clean_ids, corrupt_ids, senders, receivers, readout, via,
                                               receiver_positions)
    batch_size = _int(batch_size, "batch_size", 1)
    clean_ids, corrupt_ids = clean_ids.to(lm.device), corrupt_ids.to(lm.device)
    K = clean_ids.shape[0]
    clean, corrupt = _head_caches(lm, clean_ids, corrupt_ids, freeze_mlps)
    base = readout(lm.last_logits(input_ids=clean_ids)[:, None]).double().cpu()
    resids: dict[int, torch.Tensor] = {}

    def resid(layer: int):  # the clean residual stream entering block `layer`, computed once per layer
        if layer > 0 and layer not in resids:
            resids[layer] = lm.run_to(f"resid_pre.{layer}", clean_ids)
        return resids.get(layer)

    if receivers is None:
        out = torch.empty(len(senders), dtype=torch.float64)
        for start in range(0, len(senders), batch_size):
            chunk = senders[start: start + batch_size]
            edits, low = _freeze_edits(lm, clean, corrupt, chunk, K, lm.n_layers, freeze_mlps)
            vals = I.run_copies(lm, clean_ids, len(chunk), edits, readout, start=low, resid=resid(low)).cpu()
            out[start: start + len(chunk)] = (vals - base).mean(1)
        return out.float()

    recv_layer = [min(L for L, _ in r) for r in receivers]
    # what each receiver reads: (input, layer, head) sites of its heads
    reads = sorted({(x, L, h) for r in receivers for L, h in r for x in via}, key=lambda t: (t[1], t[0], t[2]))
    pairs = [(i, j) for i, s in enumerate(senders) for j, r in enumerate(receivers)
             if min(L for L, _ in s) < max(L for L, _ in r)]
    out = torch.zeros(len(senders), len(receivers), dtype=torch.float64)
    if not pairs:
        return out.float()
    # 1. sender runs: the receivers' inputs under each sender
    needed = sorted({i for i, _ in pairs})
    top = max(L for _, L, _ in reads)
    values: dict[tuple[int, str, int, int], torch.Tensor] = {}  # (sender, x, L, h) -> [K, seq, d_head]
    for start in range(0, len(needed), batch_size):
        chunk = needed[start: start + batch_size]
        edits, low = _freeze_edits(lm, clean, corrupt, [senders[i] for i in chunk], K, top, freeze_mlps)
        sites = sorted({f"{x}.{L}" for x, L, _ in reads if L > low})
        start_resid = resid(low)
        with hooks.capture(lm, sites) as cache, hooks.stop_after(lm, f"head.{top}"):  # no need to run further
            I.run_copies(lm, clean_ids, len(chunk), edits, readout, start=low, resid=start_resid)
        for x, L, h in reads:
            site = f"{x}.{L}"
            for row, i in enumerate(chunk):
                if site in cache:
                    values[(i, x, L, h)] = cache[site][row * K: (row + 1) * K, :, h]
    # 2. receiver runs: pairs sorted by the receivers' lowest layer
    pairs.sort(key=lambda p: recv_layer[p[1]])
    seq = clean_ids.shape[1]
    pos_mask = torch.zeros(1, seq, 1, 1, dtype=torch.bool, device=lm.device)
    pos_mask[:, rpos if rpos is not None else slice(None)] = True
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start: start + batch_size]
        P = len(chunk)
        new: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        for row, (i, j) in enumerate(chunk):
            for L, h in receivers[j]:
                for x in via:
                    got = values.get((i, x, L, h))
                    if got is None:  # the senders sit at or above this receiver's layer: its input is clean
                        continue
                    site = f"{x}.{L}"
                    if site not in new:
                        new[site] = torch.zeros(P * K, seq, lm.n_heads, lm.layout.d_head, dtype=lm.dtype, device=lm.device)
                        masks[site] = torch.zeros(P, 1, lm.n_heads, 1, dtype=torch.bool, device=lm.device)
                    new[site][row * K: (row + 1) * K, :, h] = got
                    masks[site][row, 0, h, 0] = True
        edits = {site: _replace(masks[site].repeat_interleave(K, 0) & pos_mask, new[site]) for site in new}
        start_layer = min(int(site.split(".")[1]) for site in new)
        vals = I.run_copies(lm, clean_ids, P, edits, readout, start=start_layer, resid=resid(start_layer)).cpu()
        for row, (i, j) in enumerate(chunk):
            out[i, j] = (vals[row] - base).mean()
    return out.float()


@torch.no_grad()
def path_patching_naive(lm, clean_ids: torch.Tensor, corrupt_ids: torch.Tensor, senders, receivers,
                        readout: I.Readout, via="q", receiver_positions=None, freeze_mlps: bool = False) -> torch.Tensor:
    """The reference for :func:`path_patching`: the same two steps, two full forward passes of the K prompts per
    (sender, receiver) pair (one per sender without receivers), with plain :func:`labkit.lm.hooks.patch`."""
    senders, receivers, via, rpos = _path_args(lm, clean_ids, corrupt_ids, senders, receivers, readout, via,
                                               receiver_positions)
    clean_ids, corrupt_ids = clean_ids.to(lm.device), corrupt_ids.to(lm.device)
    clean, corrupt = _head_caches(lm, clean_ids, corrupt_ids, freeze_mlps)
    base = readout(lm.last_logits(input_ids=clean_ids)[:, None]).double().cpu()

    def sender_edits(group):
        edits = {}
        for L in range(lm.n_layers):
            value = clean[f"head.{L}"].clone()
            for layer, h in group:
                if layer == L:
                    value[:, :, h] = corrupt[f"head.{L}"][:, :, h]
            edits[f"head.{L}"] = _constant(value)
            if freeze_mlps:
                edits[f"mlp_out.{L}"] = _constant(clean[f"mlp_out.{L}"])
        return edits

    if receivers is None:
        out = []
        for group in senders:
            with hooks.patch(lm, sender_edits(group)):
                out.append(float((readout(lm.model(input_ids=clean_ids).logits[:, -1:]).double().cpu() - base).mean()))
        return torch.tensor(out).float()
    out = torch.zeros(len(senders), len(receivers), dtype=torch.float64)
    for i, group in enumerate(senders):
        for j, rec in enumerate(receivers):
            sites = sorted({f"{x}.{L}" for L, _ in rec for x in via})
            with hooks.patch(lm, sender_edits(group)), hooks.capture(lm, sites) as inputs:
                lm.model(input_ids=clean_ids)

            def receive(site, rec=rec):
                heads = [h for layer, h in rec if layer == int(site.split(".")[1])]

                def edit(act):
                    act = act.clone()
                    for h in heads:
                        where = (slice(None), slice(None) if rpos is None else rpos, h)
                        act[where] = inputs[site][where]
                    return act
                return edit

            with hooks.patch(lm, {site: receive(site) for site in sites}):
                m = readout(lm.model(input_ids=clean_ids).logits[:, -1:]).double().cpu()
            out[i, j] = (m - base).mean()
    return out.float()


# --------------------------------------------------------------------------------------------------
# Edge attribution patching


def _attn_contribution(lm, layer: int):
    """The map from a layer's per-head outputs ``head.L`` [rows, seq, heads, d_head] to what the attention sub-layer
    adds to the residual stream (``attn_out.L``): the output projection, then, in Gemma, the post-attention norm."""
    lay = hooks.layout(lm)
    out_proj, _ = lay.locate("head", layer)
    family = hooks.FAMILIES[lay.family]
    post = None if family.attn_out == family.attention else lay.locate("attn_out", layer)[0]

    def contribution(z: torch.Tensor) -> torch.Tensor:
        out = out_proj(z.flatten(-2))
        out = out[0] if isinstance(out, tuple) else out
        return out if post is None else post(out)
    return contribution


def _sender_deltas(lm, senders, clean, corrupt) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """``Δr`` of every (sender group, layer) the group has heads in: what the group's heads in that layer add to the
    residual stream when their outputs take their corrupted values and every other head keeps its clean one,
    ``attn_out(z with the group's heads corrupted) − attn_out(z_clean)`` ([rows, K, seq, d_model]), and the
    (group, layer) of each row."""
    rows, deltas = [], []
    for L in sorted({L for group in senders for L, _ in group}):
        members = [(i, [h for layer, h in group if layer == L]) for i, group in enumerate(senders)]
        members = [(i, hs) for i, hs in members if hs]
        z0, z1 = clean[f"head.{L}"], corrupt[f"head.{L}"]
        mask = torch.zeros(len(members), 1, 1, lm.n_heads, 1, dtype=torch.bool, device=z0.device)
        for row, (_, hs) in enumerate(members):
            mask[row, 0, 0, hs] = True
        z = torch.where(mask, z1, z0)  # [rows, K, seq, heads, d_head]
        f = _attn_contribution(lm, L)
        deltas.append(f(z.flatten(0, 1)).unflatten(0, z.shape[:2]) - f(z0))
        rows += [(i, L) for i, _ in members]
    return torch.cat(deltas), rows


@torch.no_grad()
def edge_attribution(lm, clean_ids: torch.Tensor, corrupt_ids: torch.Tensor, senders, receivers, readout: I.Readout,
                     via="q", receiver_positions=None) -> torch.Tensor:
    """Edge attribution patching (EAP; Syed, Rager & Conmy 2023): a first-order estimate of every sender → receiver
    path effect, from one forward pass on each input and one backward pass.

    The exact quantity is :func:`path_patching` with ``freeze_mlps=True``: only the edge changes, so the receiver's
    input ``x_r`` (its query, key or value, ``via``) is computed from the clean residual stream plus the sender's
    change ``Δr_s = attn_out(z_s = z_s(x_ABC)) − attn_out(z_clean)``. To first order in ``Δr_s``

        ``F(s → r) ≈ ⟨∂m/∂r_r , Δr_s⟩``,  ``∂m/∂r_r = J_{x_r}(r)ᵀ ∂m/∂x_r``,

    the gradient of the metric with respect to the receiver's input ``x_r``, carried back to the residual stream
    ``r`` entering the receiver's layer through that input alone (its norm and projection), averaged over the K
    prompt pairs (sum over positions and d_model). ``∂m/∂x_r`` comes from one backward pass for every receiver;
    the step back to ``r`` is one small vector-Jacobian product per receiver layer (batched over its heads and
    inputs). A sender at or above a receiver's layer has no path: 0. Groups add (the estimate is linear), as do
    the inputs of ``via``. ``receiver_positions`` keeps only the receivers' inputs at those positions; with
    ``receivers=None`` the receiver is the final residual stream (the sender's direct path to the logits).
    Same arguments as :func:`path_patching`; returns ``[n_senders, n_receivers]`` (``[n_senders]`` without
    receivers), float32.
    """
    senders, receivers, via, rpos = _path_args(lm, clean_ids, corrupt_ids, senders, receivers, readout, via,
                                               receiver_positions)
    clean_ids, corrupt_ids = clean_ids.to(lm.device), corrupt_ids.to(lm.device)
    K, seq = clean_ids.shape
    clean, corrupt = _head_caches(lm, clean_ids, corrupt_ids, freeze_mlps=False)
    deltas, rows = _sender_deltas(lm, senders, clean, corrupt)  # [rows, K, seq, d_model]
    row_group = torch.tensor([i for i, _ in rows])
    row_layer = torch.tensor([L for _, L in rows])
    last = f"resid_post.{lm.n_layers - 1}"
    if receivers is None:
        with torch.enable_grad(), hooks.capture(lm, last, detach=False) as cache:
            m = readout(lm.last_logits(input_ids=clean_ids)[:, None]).sum()
            (grad,) = torch.autograd.grad(m, cache[last])
        scores = torch.einsum("ksd,rksd->r", grad.float(), deltas.float()) / K
        return torch.zeros(len(senders)).index_add_(0, row_group, scores.cpu())
    # receiver inputs: one (input, layer, head) per row of the gradient matrix, with the receiver groups they feed
    inputs = sorted({(x, L, h) for r in receivers for L, h in r for x in via if L > 0}, key=lambda t: (t[1], t[0], t[2]))
    out = torch.zeros(len(senders), len(receivers), dtype=torch.float64)
    if not inputs:
        return out.float()
    layers = sorted({L for _, L, _ in inputs})
    x_sites = sorted({f"{x}.{L}" for x, L, _ in inputs})
    r_sites = [f"resid_pre.{L}" for L in layers]
    pos = torch.zeros(1, seq, 1, 1, device=lm.device)
    pos[:, rpos if rpos is not None else slice(None)] = 1
    per_input = torch.zeros(len(inputs), len(rows), dtype=torch.float64)  # ⟨∂m/∂r_r, Δr_s⟩ per input and sender row
    with torch.enable_grad(), hooks.capture(lm, x_sites + r_sites, detach=False) as cache:
        m = readout(lm.last_logits(input_ids=clean_ids)[:, None]).sum()
        grads = dict(zip(x_sites, torch.autograd.grad(m, [cache[s] for s in x_sites], retain_graph=True)))
        for L in layers:
            here = [(n, x, h) for n, (x, layer, h) in enumerate(inputs) if layer == L]
            sites = sorted({f"{x}.{L}" for _, x, _ in here})
            # one grad_output per (input, head): ∂m/∂x at that head (and the chosen positions), zero elsewhere
            outs = {s: torch.zeros(len(here), *cache[s].shape, dtype=cache[s].dtype, device=lm.device) for s in sites}
            for b, (_, x, h) in enumerate(here):
                outs[f"{x}.{L}"][b, :, :, h] = (grads[f"{x}.{L}"] * pos)[:, :, h]
            (back,) = torch.autograd.grad([cache[s] for s in sites], cache[f"resid_pre.{L}"],
                                          [outs[s] for s in sites], retain_graph=True, is_grads_batched=True)
            below = (row_layer < L).nonzero().flatten()
            if len(below):
                dots = back.flatten(1).float() @ deltas[below].flatten(1).float().T / K  # [len(here), rows below]
                per_input[torch.tensor([n for n, _, _ in here])[:, None], below.cpu()[None, :]] = dots.double().cpu()
    index = {t: n for n, t in enumerate(inputs)}
    for j, r in enumerate(receivers):
        mine = [index[(x, L, h)] for L, h in r for x in via if L > 0]
        if mine:
            out[:, j] = torch.zeros(len(senders), dtype=torch.float64).index_add_(0, row_group,
                                                                                     per_input[mine].sum(0))
    return out.float()


# --------------------------------------------------------------------------------------------------
# Faithfulness and minimality


def _all_heads(lm) -> list[tuple[int, int]]:
    return [(L, h) for L in range(lm.n_layers) for h in range(lm.n_heads)]


def circuit_faithfulness(lm, group: dict, circuit: Sequence[Head], means: dict[str, torch.Tensor] | None = None,
                         batch_size: int = 16) -> dict[str, float]:
    """Faithfulness of a circuit (Wang et al. 2023): mean-ablate every head outside ``circuit``.

    ``F(C)`` = the mean logit difference with all heads not in C replaced by their mean over the group's ABC
    prompts (``means``, default :func:`head_means` of ``group["corrupt_ids"]``); ``F(M)`` = the model's;
    ``F(∅)`` = everything ablated. Returns those three and ``fraction = F(C) / F(M)``. One forward pass.
    """
    _check_lm(lm)
    g = _group(group)
    circuit = set(_heads(lm, list(circuit), "circuit"))
    means = head_means(lm, g["corrupt_ids"]) if means is None else means
    everything = _all_heads(lm)
    outside = [hd for hd in everything if hd not in circuit]
    readout = I.logratio_readout(g["io"], g["s"])
    vals = ablate_heads(lm, g["clean_ids"], [[], outside, everything], readout, means=means,
                        batch_size=batch_size).mean(1)
    model, kept, empty = (float(v) for v in vals)
    return {"model": model, "circuit": kept, "empty": empty, "fraction": kept / model if model else float("nan")}


def minimality(lm, group: dict, circuit: Sequence[Head], means: dict[str, torch.Tensor] | None = None,
               remove: dict | None = None, batch_size: int = 16) -> dict[tuple[int, int], float]:
    """Minimality scores (Wang et al. 2023, §4): for each head v in the circuit,
    ``|F(C \\ K_v) − F(C \\ (K_v ∪ {v}))|``, with everything outside the circuit mean-ablated as in
    :func:`circuit_faithfulness`. ``remove`` maps a head v to its set K_v (default ∅: how much the circuit loses
    without v). A head whose score is near 0 is not needed. One batched pass for all heads."""
    _check_lm(lm)
    g = _group(group)
    circuit = _heads(lm, list(circuit), "circuit")
    if not circuit:
        raise ValueError("circuit must not be empty")
    remove = {} if remove is None else remove
    if not isinstance(remove, dict):
        raise TypeError("remove must be a dict {head: list of heads K_v}")
    means = head_means(lm, g["corrupt_ids"]) if means is None else means
    everything = _all_heads(lm)
    inside = set(circuit)
    sets = []
    for v in circuit:
        K = set(_heads(lm, list(remove.get(v, [])), "remove"))
        keep = inside - K
        sets.append([hd for hd in everything if hd not in keep])
        sets.append([hd for hd in everything if hd not in keep - {v}])
    readout = I.logratio_readout(g["io"], g["s"])
    vals = ablate_heads(lm, g["clean_ids"], sets, readout, means=means, batch_size=batch_size).mean(1)
    return {v: abs(float(vals[2 * i] - vals[2 * i + 1])) for i, v in enumerate(circuit)}
