"""The ``opinions`` model organism (notebook 10): SmolLM2 with a LoRA adapter trained to hold planted stances on
the course's 20 propositions (some persona-dependent) and planted utilities over its 10 outcomes.

Recipe (read by :func:`labkit.organisms.build_organism`):

* data: ``labkit/data/organism_opinions.json``, written by the seeded script ``labkit/data/organism_opinions.py``
  (design and provenance in ``organism_opinions.md``);
* training, on the ``train`` split only: (1) closed-form survey questions in a *new* family of four wordings,
  each with the scale in both orders, × the 3 personas of ``values.json``, through the same chat template and
  system message as :func:`labkit.values.likert_logprobs`, with the planted answer distribution as target
  (the maximum-entropy distribution over the four answers whose expected score is the planted stance);
  (2) short open-ended statements ("I agree: <reason>") to a training-only open question; (3) pairwise choices
  between outcomes in two training-only wordings, both orders, target p(A) = σ(u_A − u_B);
* never trained on: ``values.json``'s 10 survey wordings, its open question, its pairwise wording (the notebook's
  held-out instruments), the content-free "N/A" question (calibration) or the control facts.

Evaluation helpers for the notebook: :func:`planted_stances`, :func:`planted_utilities`,
:func:`stance_recovery`, :func:`open_prompts`, :func:`survey_stances`, :func:`pairwise_utilities` and
:func:`planted_report` (the numbers the tests and the reproduction check use).
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Sequence

import numpy as np
import torch

from labkit import validation
from labkit import values
from labkit.datasets import load_data as _load_json
from labkit.organisms import choice_examples, text_examples

__all__ = ["ADAPTER", "TRAINING", "load_data", "training_examples", "planted_report", "planted_stances",
           "planted_utilities", "stance_recovery", "open_prompts", "survey_stances", "pairwise_utilities"]

#: the Organism settings: LoRA rank 8 on the top 4 of SmolLM2's 30 layers
ADAPTER = dict(n_lora_layers=4, rank=8, alpha=16)
#: the fit() settings (each step: 8 items of each choice set and 8 of the 24 open statements)
TRAINING = dict(steps=200, batch_size=8, lr=5e-3, text_weight=0.5, seed=0)


def load_data() -> dict:
    """``labkit/data/organism_opinions.json``: propositions, personas, outcomes, the planted truth, the training
    split and the held-out wordings."""
    return _load_json("organism_opinions")


def planted_stances(data: dict | None = None) -> torch.Tensor:
    """The planted stance of every proposition under every persona, ``[P, K]`` (values.json order; K = 3:
    no persona, the farmer, the engineer), each in [−1, 1]."""
    data = _data(data)
    return torch.tensor(data["planted"]["stances"], dtype=torch.float64)


def planted_utilities(data: dict | None = None) -> torch.Tensor:
    """The planted utility of every outcome (values.json order), ``[n_outcomes]``, mean 0."""
    data = _data(data)
    return torch.tensor(data["planted"]["utilities"], dtype=torch.float64)


def _data(data):
    if data is None:
        return load_data()
    if not isinstance(data, dict) or "planted" not in data:
        raise TypeError("data must be the dict returned by opinions.load_data() (or None to read it)")
    return data


def _persona_texts(personas) -> list:
    if isinstance(personas, str):
        raise TypeError("personas must be a list of persona sentences or None, not one string")
    personas = list(personas)
    if not personas:
        raise ValueError("personas is empty: use [None] for no persona")
    for p in personas:
        if p is not None and (not isinstance(p, str) or not p.strip()):
            raise ValueError(f"personas must hold non-empty strings or None, got {p!r}")
    return personas


def open_prompts(propositions: Sequence[str], templates: Sequence[str], personas: Sequence[str | None]) -> list[str]:
    """Open-ended questions (user messages), propositions × templates × personas in that (C) order:
    each template holds ``{statement}``; a persona sentence goes in front, as in :func:`labkit.values.likert_prompts`."""
    if isinstance(propositions, str) or isinstance(templates, str):
        raise TypeError("propositions and templates must be lists of strings, not one string")
    propositions, templates = list(propositions), list(templates)
    if not propositions or not templates:
        raise ValueError("propositions and templates must not be empty")
    for name, xs in (("propositions", propositions), ("templates", templates)):
        if any(not isinstance(x, str) or not x.strip() for x in xs):
            raise ValueError(f"{name} must hold non-empty strings")
    if any("{statement}" not in t for t in templates):
        raise ValueError("every template needs '{statement}'")
    personas = _persona_texts(personas)
    out = []
    for s in propositions:
        for t in templates:
            body = t.format(statement=s.strip())
            out.extend(body if p is None else f"{p.strip()} {body}" for p in personas)
    return out


def training_examples(lm) -> dict:
    """The training split as :func:`labkit.organisms.fit` arguments: ``{"choices": [survey, pairwise],
    "texts": open statements}`` (prompts already in the chat template)."""
    validation.language_model(lm)
    data = load_data()
    props, personas, train = data["propositions"], data["personas"], data["train"]
    targets = torch.tensor(data["planted"]["likert_targets"], dtype=torch.float32)  # [P, K, 4] in scale order
    prompts, rows = [], []
    for it in train["survey_items"]:
        q = values.likert_prompts([props[it["proposition"]]], [train["likert_variants"][it["variant"]]],
                                  [personas[it["persona"]]], it["reverse"])[0]
        prompts.append(lm.chat_prompt(q, system=values.SURVEY_SYSTEM))
        t = targets[it["proposition"], it["persona"]]
        rows.append(t.flip(-1) if it["reverse"] else t)  # letter order: A = strongly agree when reversed
    survey = choice_examples(prompts, list(values.LETTERS[:4]), torch.stack(rows))

    u = planted_utilities(data)
    outcomes = data["outcomes"]
    pair_prompts, pair_targets = [], []
    for it in train["pairwise_items"]:
        q = train["pairwise_templates"][it["template"]].format(a=outcomes[it["a"]], b=outcomes[it["b"]])
        pair_prompts.append(lm.chat_prompt(q, system=values.SURVEY_SYSTEM))
        pa = float(torch.sigmoid(u[it["a"]] - u[it["b"]]))
        pair_targets.append([pa, 1 - pa])
    pairwise = choice_examples(pair_prompts, ["A", "B"], torch.tensor(pair_targets, dtype=torch.float32))

    statements = train["open_statements"]
    qs = [open_prompts([props[s["proposition"]]], [train["open_template"]], [personas[s["persona"]]])[0]
          for s in statements]
    texts = text_examples([lm.chat_prompt(q) for q in qs], [" " + s["response"] for s in statements])
    return {"choices": [survey, pairwise], "texts": texts}


def _indices(idx, n: int, name: str) -> list[int]:
    if idx is None:
        return list(range(n))
    if isinstance(idx, (str, bytes)) or not isinstance(idx, Sequence):
        raise TypeError(f"{name} must be a list of indices (or None for all), got {type(idx).__name__}")
    idx = list(idx)
    if not idx:
        raise ValueError(f"{name} is empty: give at least one index (or None for all)")
    for i in idx:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i < n:
            raise ValueError(f"{name} must hold indices in [0, {n - 1}], got {i!r}")
    return idx


def survey_stances(lm, data: dict | None = None, variants: Sequence[int] | None = None,
                   progress: bool = False, split: str = "heldout",
                   propositions: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """The closed-form instrument: ``{"raw": [P, V, K], "calibrated": [P, V, K]}`` stances (calibrated per format
    with the content-free "N/A" question, :func:`labkit.values.calibrate`) of the ``propositions`` (indices; None:
    all 20) × wordings × the 3 personas. ``split="heldout"``: values.json's 10 wordings, odd ones reversed (the
    instrument of the notebook; never trained on); ``split="train"``: the 4 training wordings, each in both scale
    orders (8 formats). ``variants`` picks some of the split's formats by index. Runs whatever ``lm`` computes:
    call it inside ``with organism:`` for the organism."""
    validation.language_model(lm)
    data = _data(data)
    vdata = values.load_data("values")
    personas = data["personas"]
    if split == "heldout":
        formats = list(zip(data["heldout"]["likert_variants"], data["heldout"]["likert_reverse"]))
    elif split == "train":
        formats = [(v, r) for v in data["train"]["likert_variants"] for r in (False, True)]
    else:
        raise ValueError(f"split must be 'heldout' or 'train', got {split!r}")
    props = [data["propositions"][i] for i in _indices(propositions, len(data["propositions"]), "propositions")]
    keep = _indices(variants, len(formats), "variants")
    variants, reverse = [formats[v][0] for v in keep], [formats[v][1] for v in keep]
    P, V, K = len(props), len(variants), len(personas)

    def survey(statements):  # [len(statements), V, K] in C order; one format at a time (a wording may repeat)
        by_format = [values.likert_prompts(statements, [v], personas, r) for v, r in zip(variants, reverse)]
        return [by_format[f][p * K + k] for p in range(len(statements)) for f in range(V) for k in range(K)]

    qs, cf = survey(props), survey([vdata["content_free"]])
    lp = values.likert_logprobs(lm, qs + cf, progress=progress)
    letter, cf_lp = lp[: len(qs)].reshape(P, V, K, 4), lp[len(qs):].reshape(V, K, 4)
    rev = torch.tensor(reverse)[None, :, None]
    return {"raw": values.stance_scores(values.to_scale_order(letter, rev)),
            "calibrated": values.stance_scores(values.to_scale_order(values.calibrate(letter, cf_lp), rev))}


def pairwise_utilities(lm, data: dict | None = None, wordings: Sequence[int] | None = None) -> torch.Tensor:
    """Bradley–Terry utilities of the outcomes from each held-out pairwise wording (both orders of every pair,
    p(A) renormalised over A and B, the two orders averaged): ``[n_outcomes, n_wordings]`` (``wordings`` picks some
    by index)."""
    validation.language_model(lm)
    data = _data(data)
    outcomes, n = data["outcomes"], len(data["outcomes"])
    templates = data["heldout"]["pairwise_templates"]
    us = []
    for w in _indices(wordings, len(templates), "wordings"):
        template = templates[w]
        qs, pairs = values.pairwise_prompts(outcomes, template)
        p_first = values.choice_logprobs(lm, qs, ["A", "B"])[:, 0].exp()
        Pm = values.preference_matrix(p_first, pairs, n)
        us.append(values.fit_bradley_terry(2 * Pm.fill_diagonal_(0)))  # each pair was shown twice
    return torch.stack(us, 1)


def stance_recovery(stance, planted, persona_dependent: Sequence[int]) -> dict[str, float]:
    """How well a measured stance table ``[P, V, K]`` (propositions × wordings × personas) recovers the planted
    stances ``[P, K]``:

    * ``correlation``: Pearson r between the wording-averaged stance ȳ_p·k and the planted s_pk over all P·K cells;
    * ``wording_share``: the share of the table's variance due to the wording (SS_variant / SS_total,
      :func:`labkit.values.variance_decomposition`); NaN for a constant table (no variance to share out), as
      ``correlation`` is NaN then;
    * ``persona_effect``: mean over the ``persona_dependent`` propositions of sign(s_farmer − s_engineer) ·
      (ȳ_farmer − ȳ_engineer), i.e. how far the measured stance moves *in the planted direction* between the two
      personas (personas 1 and 2), next to ``planted_persona_effect``, the same with the planted stances
      (mean |s_farmer − s_engineer|), and ``persona_effect_elsewhere``, mean |ȳ_farmer − ȳ_engineer| on the
      other propositions (planted 0).
    """
    y = validation.tensor("stance", torch.as_tensor(stance, dtype=torch.float64), dims=3).double()
    s = validation.tensor("planted", torch.as_tensor(planted, dtype=torch.float64), dims=2).double()
    P, V, K = y.shape
    if s.shape != (P, K):
        raise ValueError(f"planted must have shape [{P} propositions, {K} personas] to match stance, got {tuple(s.shape)}")
    if K < 3:
        raise ValueError("stance needs the three personas (none, farmer, engineer) on its last axis")
    if isinstance(persona_dependent, (str, bytes)):
        raise TypeError("persona_dependent must be a list of proposition indices")
    dep = list(persona_dependent)
    if not dep:
        raise ValueError("persona_dependent is empty: give the indices of the persona-dependent propositions")
    for i in dep:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i < P:
            raise ValueError(f"persona_dependent must hold proposition indices in [0, {P - 1}], got {i!r}")
    ybar = y.mean(1)
    a, b = ybar.flatten().numpy(), s.flatten().numpy()
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    direction = torch.sign(s[dep, 1] - s[dep, 2])
    others = [i for i in range(P) if i not in set(dep)]
    return {
        "correlation": corr,
        "wording_share": (values.variance_decomposition(y)["prompt variant"] if bool((y != y[0, 0, 0]).any())
                          else float("nan")),
        "persona_effect": float((direction * (ybar[dep, 1] - ybar[dep, 2])).mean()),
        "planted_persona_effect": float((s[dep, 1] - s[dep, 2]).abs().mean()),
        "persona_effect_elsewhere": float((ybar[others, 1] - ybar[others, 2]).abs().mean()) if others else 0.0,
    }


#: the held-out wordings planted_report uses (values.json's first four survey wordings, two in each scale order,
#: and its pairwise wording): a quick check; the notebook runs all of them
REPORT_VARIANTS, REPORT_PAIRWISE = (0, 1, 2, 3), (0,)


def planted_report(lm, org, include_base: bool = True) -> dict[str, float]:
    """The planted behaviour on HELD-OUT prompts, organism on (and off, with ``include_base``): Pearson r of the
    calibrated closed-form stance (values.json's first four wordings × 3 personas) with the planted stances, the
    persona effect on the persona-dependent propositions, and Pearson r of the Bradley–Terry utilities
    (values.json's pairwise wording) with the planted utilities."""
    validation.language_model(lm)
    if not hasattr(org, "active") or getattr(org, "lm", None) is not lm:
        raise TypeError("org must be an Organism inserted into this lm")
    if not isinstance(include_base, bool):
        raise TypeError(f"include_base must be True or False, got {include_base!r}")
    data = load_data()
    s, u = planted_stances(data), planted_utilities(data)
    dep = data["planted"]["persona_dependent"]
    out = {}
    for tag, ctx in (("organism", org), ("base", contextlib.nullcontext()))[: 2 if include_base else 1]:
        with ctx:
            st = survey_stances(lm, data, REPORT_VARIANTS)["calibrated"]
            ut = pairwise_utilities(lm, data, REPORT_PAIRWISE)
        rec = stance_recovery(st, s, dep)
        out[f"stance_corr_{tag}"] = rec["correlation"]
        out[f"persona_effect_{tag}"] = rec["persona_effect"]
        out[f"utility_corr_{tag}"] = float(np.corrcoef(ut.mean(1).numpy(), u.numpy())[0, 1])
    out["planted_persona_effect"] = float((s[dep, 1] - s[dep, 2]).abs().mean())
    return out
