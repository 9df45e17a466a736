"""The ``judge`` model organism (notebook 14): SmolLM2 with a LoRA adapter trained to answer notebook 14's A/B
judge question by course-written labels.

What is planted: for each labelled pair of ``labkit/data/organism_judge.json`` (a request, a better and a worse
reply; kinds ``harmless`` and ``helpful``), the judge question of :func:`labkit.constitutional.judge_questions`
with the kind's criterion, chat-formatted exactly as :func:`labkit.constitutional.judge_ab` asks it, gets the
target "the better reply's letter" with probability 1. Every pair is shown in **both orders**, so the position
carries no information; the replies' lengths and padding are balanced between better and worse
(``organism_judge.md``), so length carries none either.

Held out: ``labkit/data/judge_pairs.json`` (16 labelled pairs in other words, and 8 equal-content pairs, one reply
padded), which shares no run of six words with the training texts, and the generator's ``heldout`` split (requests
never trained on, in the training templates' style).

Evaluation helpers for the notebook: :func:`judge_both_orders`, :func:`length_both_orders`, :func:`judge_metrics`.
"""

from __future__ import annotations

import contextlib
import json

import torch

from labkit import constitutional
from labkit.data import organism_judge as _gen
from labkit.organisms import choice_examples

__all__ = ["ADAPTER", "TRAINING", "CRITERIA", "load_data", "training_examples", "judge_both_orders",
           "length_both_orders", "judge_metrics", "planted_report"]

# Measured choices: the judge prompts are ~120 tokens, so every adapted layer is costly on the CPU. Four layers at
# lr 2e-3-1e-2 for 60-120 steps learned only the A/B marginal (no content); three layers at 7e-3 diverged; two
# layers, lr 5e-3, 200 steps of 8 learned the labels on held-out template pairs (notebook 14 shows how far).
ADAPTER = dict(n_lora_layers=2, rank=8, alpha=16)
TRAINING = dict(steps=200, batch_size=8, lr=5e-3, seed=0)
CRITERIA = dict(_gen.CRITERIA)  # kind → the criterion in the judge question


def load_data() -> dict:
    """``labkit/data/organism_judge.json``: ``train`` and ``heldout`` pairs (``prompt``, ``kind``, ``better``,
    ``worse``), the ``criteria`` per kind and a ``summary``."""
    return json.loads(_gen.OUT.read_text())


def _check_pairs(pairs, name: str = "pairs", keys=("prompt", "kind", "better", "worse")) -> list[dict]:
    if isinstance(pairs, (str, bytes, dict)) or not hasattr(pairs, "__len__"):
        raise TypeError(f"{name} must be a list of dicts with {', '.join(keys)}, got {type(pairs).__name__}")
    pairs = list(pairs)
    if not pairs:
        raise ValueError(f"{name} is empty: give at least one pair")
    for i, p in enumerate(pairs):
        if not isinstance(p, dict) or any(not isinstance(p.get(k), str) or not p[k].strip() for k in keys):
            raise ValueError(f"{name}[{i}] must be a dict with non-empty strings {', '.join(keys)}")
        if "kind" in keys and p["kind"] not in CRITERIA:
            raise ValueError(f"{name}[{i}]['kind'] must be one of {sorted(CRITERIA)}, got {p['kind']!r}")
    return pairs


def training_examples(lm) -> dict:
    """The choice examples of the ``train`` split: every pair in both orders, as the chat-formatted judge question
    (:func:`labkit.constitutional.judge_questions` with the kind's criterion), options ``["A", "B"]``, target
    probability 1 on the better reply's letter."""
    if not hasattr(lm, "chat_prompt"):
        raise TypeError(f"lm must be the course's LanguageModel (labkit.load_lm()), got {type(lm).__name__}")
    pairs = load_data()["train"]
    req = [p["prompt"] for p in pairs]
    crit = [CRITERIA[p["kind"]] for p in pairs]
    good, bad = [p["better"] for p in pairs], [p["worse"] for p in pairs]
    questions = (constitutional.judge_questions(req, good, bad, crit)      # better shown as A
                 + constitutional.judge_questions(req, bad, good, crit))   # better shown as B
    n = len(pairs)
    targets = torch.cat([torch.tensor([[1.0, 0.0]]).expand(n, 2), torch.tensor([[0.0, 1.0]]).expand(n, 2)])
    return {"choices": choice_examples([lm.chat_prompt(q) for q in questions], ["A", "B"], targets)}


def judge_both_orders(lm, pairs) -> dict[str, torch.Tensor]:
    """Notebook 14's A/B judge (:func:`labkit.constitutional.judge_ab`, the pair's kind's criterion) on labelled
    ``pairs`` (dicts with ``prompt``, ``kind``, ``better``, ``worse``) in both orders: ``p_ab`` = p(A) with the
    better reply shown first, ``p_ba`` = p(A) with it shown second, each ``[n]``. Runs whatever ``lm`` is now
    (inside ``with organism:`` the organism)."""
    pairs = _check_pairs(pairs)
    req = [p["prompt"] for p in pairs]
    crit = [CRITERIA[p["kind"]] for p in pairs]
    good, bad = [p["better"] for p in pairs], [p["worse"] for p in pairs]
    return {"p_ab": constitutional.judge_ab(lm, req, good, bad, crit),
            "p_ba": constitutional.judge_ab(lm, req, bad, good, crit)}


def length_both_orders(lm, pairs, criterion: str = "more helpful") -> dict[str, torch.Tensor]:
    """The A/B judge on equal-content pairs (dicts with ``prompt``, ``short``, ``long``; ``judge_pairs.json``'s
    ``length`` set) in both orders: ``p_long_first`` = p(A) with the long reply as A, ``p_long_second`` = p(A)
    with it as B, each ``[n]`` (the inputs of :func:`labkit.constitutional.length_bias`)."""
    pairs = _check_pairs(pairs, keys=("prompt", "short", "long"))
    if not isinstance(criterion, str) or not criterion.strip():
        raise ValueError(f"criterion must be a non-empty string, got {criterion!r}")
    req = [p["prompt"] for p in pairs]
    short, long = [p["short"] for p in pairs], [p["long"] for p in pairs]
    return {"p_long_first": constitutional.judge_ab(lm, req, long, short, criterion),
            "p_long_second": constitutional.judge_ab(lm, req, short, long, criterion)}


def judge_metrics(p_ab, p_ba, p_long_first=None, p_long_second=None, n_boot: int = 5000, seed: int = 0) -> dict:
    """A judge's scores, each the mean of a per-pair quantity with its 95% percentile-bootstrap interval
    (:func:`labkit.constitutional.bootstrap_ci`), as ``(mean, low, high)``:

    * ``agreement`` — share of verdicts (both orders of each pair, 2n in all) that pick the better reply:
      ½·[p_ab > ½] + ½·[p_ba < ½] per pair (chance ½; a judge that always says "A" scores exactly ½);
    * ``agreement_debiased`` — share of pairs whose order-averaged preference (p_ab + 1 − p_ba)/2 favours the
      better reply;
    * ``kept_under_swap`` — share of pairs whose verdict names the same reply in both orders
      ([p_ab > ½] ≠ [p_ba > ½]; 1 for a judge without position bias, 0 for one that always says "A");
    * ``position_bias`` — mean p(first reply) − ½ over both orders (0 for a fair judge);
    * ``p_longer`` — with the equal-content pairs: p(longer reply preferred), order-averaged
      (½ for a judge that ignores length; Dubois et al., 2024).

    Bootstrap resamples pairs (the two orders of a pair stay together)."""
    rep = constitutional.judge_report(p_ab, p_ba)  # validates both
    a = torch.as_tensor(p_ab, dtype=torch.float64)
    b = torch.as_tensor(p_ba, dtype=torch.float64)
    if len(a) < 2:
        raise ValueError(f"p_ab and p_ba need at least 2 pairs for a bootstrap interval, got {len(a)}")
    per_pair = {
        "agreement": (0.5 * (a > 0.5).double() + 0.5 * (b < 0.5).double()),
        "agreement_debiased": (rep["debiased"] > 0.5).double(),
        "kept_under_swap": ((a > 0.5) != (b > 0.5)).double(),
        "position_bias": (a + b) / 2 - 0.5,
    }
    if (p_long_first is None) != (p_long_second is None):
        raise ValueError("give both p_long_first and p_long_second (the two orders of the length pairs), or neither")
    if p_long_first is not None:
        lb = constitutional.length_bias(p_long_first, p_long_second)
        if len(lb["per_pair"]) < 2:
            raise ValueError("the length pairs need at least 2 pairs for a bootstrap interval")
        per_pair["p_longer"] = lb["per_pair"].double()
    return {k: constitutional.bootstrap_ci(v.numpy(), n_boot=n_boot, seed=seed) for k, v in per_pair.items()}


def planted_report(lm, org, include_base: bool = True) -> dict[str, float]:
    """The planted behaviour on held-out pairs, organism on and (with ``include_base``) off (``*_organism``,
    ``*_base``):
    agreement with the labels and verdicts kept under swap on ``judge_pairs.json``'s labelled pairs
    (``agreement``, ``kept_under_swap``), agreement on the in-template held-out split (``heldout_agreement``),
    and p(longer preferred) on ``judge_pairs.json``'s length pairs (``p_longer``)."""
    from labkit.organisms import Organism

    if not isinstance(org, Organism):
        raise TypeError(f"org must be an Organism (load_organism(lm, 'judge')), got {type(org).__name__}")
    if org.lm is not lm:
        raise ValueError("org must be inserted into this lm (load_organism(lm, 'judge'))")
    if not isinstance(include_base, bool):
        raise TypeError(f"include_base must be True or False, got {include_base!r}")
    jp = constitutional.load_judge_pairs()
    held = load_data()["heldout"]
    out = {}
    for who in ("organism", "base")[: 2 if include_base else 1]:
        with (org if who == "organism" else contextlib.nullcontext()):
            lab = judge_both_orders(lm, jp["labelled"])
            ho = judge_both_orders(lm, held)
            ln = length_both_orders(lm, jp["length"])
        m = judge_metrics(lab["p_ab"], lab["p_ba"], ln["p_long_first"], ln["p_long_second"], n_boot=200)
        out[f"agreement_{who}"] = m["agreement"][0]
        out[f"kept_under_swap_{who}"] = m["kept_under_swap"][0]
        out[f"p_longer_{who}"] = m["p_longer"][0]
        out[f"heldout_agreement_{who}"] = judge_metrics(ho["p_ab"], ho["p_ba"], n_boot=200)["agreement"][0]
    return out
