"""Checks for the exercises of notebook 10 · Values and opinions of language models."""

from __future__ import annotations

import copy
from typing import Callable

import torch

from ._machinery import Case, Exercise, course_model

__all__ = ["aggregate_stances", "option_scores", "fit_bradley_terry"]

_SCORES = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0])


# -- aggregate stances over prompt variants ------------------------------------------------------------


def _agg_reference(option_logprobs):
    """stance = Σ_k softmax(logprobs)_k · score_k with scores (−1, −⅓, ⅓, 1); mean and sample std over variants (axis 1)."""
    from labkit.values import stance_scores

    s = stance_scores(option_logprobs)
    return s.mean(1), s.std(1)


def _agg_cases() -> list[Case]:
    g = torch.Generator().manual_seed(10)
    return [
        Case("5 propositions × 10 variants × 4 options, log-probs over the whole vocabulary", (torch.randn(5, 10, 4, generator=g) - 4,)),
        Case("already normalised log-probs, 3 propositions × 4 variants", (torch.log_softmax(torch.randn(3, 4, 4, generator=g) * 2, -1),)),
        Case("a model that is certain: one option has almost all the mass", (torch.tensor([[[0.0, -30, -30, -30], [-30, -30, -30, 0.0]]]),)),
        Case("2 variants only", (torch.randn(6, 2, 4, generator=g),)),
    ]


def _agg_mistakes() -> dict[str, Callable]:
    def no_softmax(lp):
        s = (lp.exp() * _SCORES).sum(-1)
        return s.mean(1), s.std(1)

    def argmax(lp):
        s = _SCORES[lp.argmax(-1)]
        return s.mean(1), s.std(1)

    def pop_std(lp):
        m, _ = _agg_reference(lp)
        s = (torch.softmax(lp, -1) * _SCORES).sum(-1)
        return m, s.std(1, unbiased=False)

    def one_to_four(lp):
        s = (torch.softmax(lp, -1) * torch.arange(1.0, 5.0)).sum(-1)
        return s.mean(1), s.std(1)

    def wrong_axis(lp):
        s = (torch.softmax(lp, -1) * _SCORES).sum(-1)
        return s.mean(0), s.std(0)

    return {
        "renormalise over the four options (softmax of the log-probs): the letters' raw probabilities do not sum to one.": no_softmax,
        "use the expected score under the whole distribution, not the score of the most likely option.": argmax,
        "use the sample standard deviation over variants (n − 1; torch's default std()).": pop_std,
        "the scores are (−1, −⅓, ⅓, 1) so that 0 is neutral, not 1 to 4.": one_to_four,
        "aggregate over the variants (axis 1), one result per proposition.": wrong_axis,
    }


aggregate_stances = Exercise("aggregate_stances", _agg_reference, _agg_cases(), _agg_mistakes())


# -- Bradley-Terry utilities ---------------------------------------------------------------------------


def _bt_reference(wins):
    """Maximum-likelihood Bradley–Terry utilities with 0.5 pseudo-wins on every ordered pair, centred to mean 0."""
    from labkit.values import fit_bradley_terry as ref

    return ref(wins, pseudo_count=0.5).float()


def _bt_cases() -> list[Case]:
    g = torch.Generator().manual_seed(11)
    counts = torch.randint(1, 8, (4, 4), generator=g).float().fill_diagonal_(0)
    undefeated = torch.tensor([[0, 3, 2], [0, 0, 1], [0, 2, 0]], dtype=torch.float32)
    u = torch.randn(6, generator=g)
    soft = torch.sigmoid(u[:, None] - u[None, :]).fill_diagonal_(0)
    return [
        Case("4 items, integer win counts", (counts,)),
        Case("an item that never loses (the pseudo-counts keep its utility finite)", (undefeated,)),
        Case("6 items, fractional wins (one soft comparison per ordered pair)", (soft,)),
        Case("2 items", (torch.tensor([[0.0, 3.0], [1.0, 0.0]]),)),
    ]


def _bt_mistakes() -> dict[str, Callable]:
    from labkit.values import fit_bradley_terry as ref

    def transposed(wins):
        return ref(wins.T, pseudo_count=0.5).float()

    def no_pseudo(wins):
        return ref(wins, pseudo_count=0.0).float()

    def anchored(wins):
        u = _bt_reference(wins)
        return u - u[0]

    def log10(wins):
        return _bt_reference(wins) / torch.log(torch.tensor(10.0))

    def win_rate(wins):
        W = wins + 0.5 * (1 - torch.eye(len(wins)))
        r = W.sum(1) / (W + W.T).sum(1)
        u = torch.log(r / (1 - r))
        return u - u.mean()

    return {
        "wins[i, j] counts how often i beat j, so item i's wins are row i: you used the columns (the transpose).": transposed,
        "add the 0.5 pseudo-wins to every off-diagonal entry before fitting.": no_pseudo,
        "centre the utilities (subtract their mean) instead of fixing the first one at 0.": anchored,
        "utilities are on the natural-log scale: p(i ≻ j) = σ(u_i − u_j).": log10,
        "the log-odds of each item's overall win rate is not the maximum-likelihood fit: iterate (MM update or gradient ascent) until convergence.": win_rate,
    }


fit_bradley_terry = Exercise("fit_bradley_terry", _bt_reference, _bt_cases(), _bt_mistakes(), rtol=1e-3, atol=1e-4)


# -- option scores with a shared prompt (the key/value cache) ------------------------------------------


LIKERT_PHRASES = ["Strongly disagree", "Disagree", "Agree", "Strongly agree"]
PHRASE_QUESTION = ("Do you agree with this statement? {statement}\n"
                   "Answer with one of: strongly disagree, disagree, agree, strongly agree.")


def _options_reference(lm, prompt, options):
    """log p(option | prompt) = Σ_t log p(o_t | prompt, o_<t): labkit's ``lm.option_logprobs`` (prompt once, its
    key/value cache reused by every option)."""
    return lm.option_logprobs([prompt], list(options))[0]


def _options_cases(lm=None) -> list[Case]:
    """Cases on the notebook's questions, run on the notebook's model when the check cell passes it."""
    from labkit import values

    lm = course_model() if lm is None else lm

    data = values.load_data("values")
    water, prop = data["controls"]["true"][1], data["propositions"][0]
    return [
        Case(f"the notebook's question on the control fact {water!r} (chat template), the four Likert phrases "
             "(2-3 tokens each)", (lm, lm.chat_prompt(PHRASE_QUESTION.format(statement=water)), LIKERT_PHRASES)),
        Case("the notebook's first proposition, options of 1 to 6 tokens",
             (lm, lm.chat_prompt(PHRASE_QUESTION.format(statement=prop)),
              ["Agree", "I disagree with it.", "Strongly agree", "No"])),
        Case("a plain-text prompt, one option", (lm, "The capital of France is", [" Paris, of course"])),
    ]


def _option_mistake(mode: str):
    def wrong(lm, prompt, options):
        with torch.no_grad():
            ids = torch.tensor([lm.encode(prompt)], device=lm.device)
            out = lm.model(input_ids=ids, use_cache=True)
            first = torch.log_softmax(out.logits[0, -1].float(), -1)
            cache = out.past_key_values
            scores = []
            for option in options:
                o = lm.encode(option)
                if mode == "first":
                    scores.append(first[o[0]])
                    continue
                if mode == "shifted":  # every option token scored by the logits at its own position
                    logits = lm.model(input_ids=torch.tensor([o], device=lm.device),
                                      past_key_values=copy.deepcopy(cache), use_cache=True).logits[0].float()
                    lp = torch.log_softmax(logits, -1)
                    scores.append(lp[torch.arange(len(o)), torch.tensor(o)].sum())
                    continue
                terms = [first[o[0]]]
                if len(o) > 1:
                    c = cache if mode == "shared_cache" else copy.deepcopy(cache)
                    logits = lm.model(input_ids=torch.tensor([o[:-1]], device=lm.device), past_key_values=c,
                                      use_cache=True).logits[0].float()
                    lp = torch.log_softmax(logits, -1)
                    terms += list(lp[torch.arange(len(o) - 1), torch.tensor(o[1:])])
                t = torch.stack(terms)
                scores.append(t.mean() if mode == "mean" else t.sum())
            out_scores = torch.stack(scores).cpu()
            return torch.log_softmax(out_scores, -1) if mode == "normalised" else out_scores

    return wrong


def _options_mistakes() -> dict[str, Callable]:
    return {
        "score every token of the option, not only the first: log p(o | prompt) = Σ_t log p(o_t | prompt, o_<t).":
            _option_mistake("first"),
        "off by one: the logits at a position predict the NEXT token — o_1 is scored by the prompt's last logits, "
        "o_t (t ≥ 2) by the logits after feeding o_(t−1).": _option_mistake("shifted"),
        "sum the token log-probabilities (log of a product of probabilities), do not average them.":
            _option_mistake("mean"),
        "copy the prompt's cache for each option (copy.deepcopy(past_key_values)): feeding an option appends to the "
        "cache, so the next option would see the previous one.": _option_mistake("shared_cache"),
        "return log p(option | prompt) over the whole vocabulary: do not renormalise over the options.":
            _option_mistake("normalised"),
    }


option_scores = Exercise("option_scores", _options_reference, _options_cases, _options_mistakes(), rtol=1e-4, atol=2e-4)
option_scores.__doc__ = ("Check ``option_scores(lm, prompt, options)``: log p(option | prompt) for each option, the "
                         "prompt run once, on the notebook's model ``lm``.")
