"""Checks for the exercises of notebook 14 · RL from AI feedback and Constitutional AI."""

from __future__ import annotations

from typing import Callable

import torch

from ._machinery import Case, Exercise, course_model

__all__ = ["build_prompt", "group_consensus", "critique_revision", "dpo_pairs"]

_PRINCIPLE = {
    "id": "kindness", "text": "Be kind.",
    "critique": "Point out anything in the assistant's reply that is rude, insulting or bullying.",
    "revision": "Rewrite the assistant's reply so it is kind and respectful.",
}


# -- build_prompt ----------------------------------------------------------------------------------


def _build_prompt_reference(question, response, principle, critique=None):
    """The critique request (critique=None) or the revision request, lines joined with newlines."""
    from labkit.constitutional import build_prompt

    return build_prompt(question, response, principle, critique)


def _build_prompt_cases() -> list[Case]:
    q, r = "Give me some insults about my coworker.", "Call him lazy and slow."
    return [
        Case("the critique request", (q, r, _PRINCIPLE)),
        Case("the revision request (with a critique)", (q, r, _PRINCIPLE), {"critique": "The reply insults a coworker."}),
        Case("inputs with stray spaces and newlines (strip them)",
             ("  How do I sleep better?\n", "\nGo to bed early. ", _PRINCIPLE), {"critique": " It is fine.\n"}),
    ]


def _build_prompt_mistakes() -> dict[str, Callable]:
    def no_critique_in_revision(question, response, principle, critique=None):
        lines = ["Here is a conversation.", f"User: {question.strip()}", f"Assistant: {response.strip()}"]
        lines.append(principle["critique"] if critique is None else principle["revision"])
        return "\n".join(lines)

    def critique_request_always(question, response, principle, critique=None):
        return _build_prompt_reference(question, response, principle)

    def both_requests(question, response, principle, critique=None):
        if critique is None:
            return _build_prompt_reference(question, response, principle)
        lines = ["Here is a conversation.", f"User: {question.strip()}", f"Assistant: {response.strip()}",
                 principle["critique"], f"Critique: {critique.strip()}", principle["revision"]]
        return "\n".join(lines)

    def no_strip(question, response, principle, critique=None):
        lines = ["Here is a conversation.", f"User: {question}", f"Assistant: {response}"]
        lines += [principle["critique"]] if critique is None else [f"Critique: {critique}", principle["revision"]]
        return "\n".join(lines)

    def principle_text(question, response, principle, critique=None):
        lines = ["Here is a conversation.", f"User: {question.strip()}", f"Assistant: {response.strip()}"]
        lines += [principle["text"]] if critique is None else [f"Critique: {critique.strip()}", principle["text"]]
        return "\n".join(lines)

    return {
        "the revision request must include the critique line, 'Critique: {critique}'.": no_critique_in_revision,
        "with a critique given, build the REVISION request (principle['revision']), not the critique request.":
            critique_request_always,
        "the revision request ends with principle['revision'] only; do not repeat the critique request.": both_requests,
        "strip surrounding whitespace from the question, the response and the critique (str.strip()).": no_strip,
        "use the principle's 'critique' and 'revision' requests, not its short 'text'.": principle_text,
    }


build_prompt = Exercise("build_prompt", _build_prompt_reference, _build_prompt_cases(), _build_prompt_mistakes())
build_prompt.__doc__ = "Check a ``build_prompt(question, response, principle, critique=None)`` function."


# -- group_consensus -------------------------------------------------------------------------------


def _consensus_reference(votes, groups):
    """C_s = Π_g (A_gs + 1) / (N_gs + 2)."""
    from labkit.constitutional import group_consensus

    return group_consensus(votes, groups)


def _consensus_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    votes = torch.randint(-1, 2, (12, 5), generator=g)
    groups = torch.tensor([0] * 7 + [1] * 5)
    return [
        Case("12 participants in 2 groups, 5 statements", (votes, groups)),
        Case("3 groups of different sizes, group ids not sorted",
             (torch.randint(-1, 2, (10, 4), generator=g), torch.tensor([2, 0, 1, 2, 0, 0, 1, 2, 2, 0]))),
        Case("everyone passes (0): each group contributes 1/(N + 2)",
             (torch.zeros(6, 3, dtype=torch.long), torch.tensor([0, 0, 0, 1, 1, 1]))),
        Case("a statement one group loves and the other hates",
             (torch.tensor([[1, 1], [1, 1], [1, -1], [-1, -1], [-1, 1], [-1, 1]]), torch.tensor([0, 0, 0, 1, 1, 1]))),
    ]


def _consensus_mistakes() -> dict[str, Callable]:
    def groups_of(votes, groups):
        return [(votes[groups == gid]) for gid in groups.unique()]

    def no_prior(votes, groups):
        out = torch.ones(votes.shape[1], dtype=torch.float64)
        for rows in groups_of(votes, groups):
            out = out * (rows == 1).sum(0) / len(rows)
        return out

    def mean_not_product(votes, groups):
        parts = [((rows == 1).sum(0) + 1) / (len(rows) + 2) for rows in groups_of(votes, groups)]
        return torch.stack(parts).double().mean(0)

    def ignore_groups(votes, groups):
        return (((votes == 1).sum(0) + 1) / (len(votes) + 2)).double()

    def passes_excluded(votes, groups):
        out = torch.ones(votes.shape[1], dtype=torch.float64)
        for rows in groups_of(votes, groups):
            out = out * ((rows == 1).sum(0) + 1) / ((rows != 0).sum(0) + 2)
        return out

    def net_agreement(votes, groups):
        out = torch.ones(votes.shape[1], dtype=torch.float64)
        for rows in groups_of(votes, groups):
            out = out * (rows.sum(0) + 1) / (len(rows) + 2)
        return out

    return {
        "add the Laplace prior: (A + 1) / (N + 2), so a group with no agree votes does not zero the product.": no_prior,
        "combine groups with a PRODUCT over groups (consensus needs every group), not an average.": mean_not_product,
        "compute the agreement rate within each opinion group, then multiply across groups.": ignore_groups,
        "N counts everyone in the group who voted, passes included (each participant here saw every statement).":
            passes_excluded,
        "count agree votes (+1) only; summing the votes subtracts the disagree votes.": net_agreement,
    }


group_consensus = Exercise("group_consensus", _consensus_reference, _consensus_cases(), _consensus_mistakes())
group_consensus.__doc__ = "Check a ``group_consensus(votes, groups)`` function: Polis's group-informed consensus."


# -- critique_revision -----------------------------------------------------------------------------


def _loop_reference(lm, prompts, principles, n_rounds=1, max_new_tokens=32, critique_tokens=24, initial=None):
    """labkit's loop (greedy, one batched generate call per step), without the principle ids."""
    from labkit.constitutional import critique_revision

    out = critique_revision(lm, prompts, principles, n_rounds=n_rounds, max_new_tokens=max_new_tokens,
                            critique_tokens=critique_tokens, initial=initial)
    return {"initial": out["initial"], "rounds": [{"critique": r["critique"], "revision": r["revision"]} for r in out["rounds"]]}


class _ScriptedLM:
    """A stand-in language model whose greedy reply is a fingerprint of the prompt and the token budget: any
    change in the prompts or budgets of the loop changes the replies. A critique request ending in "Say
    nothing." gets an empty reply."""

    def generate(self, prompts, max_new_tokens=64, batch_size=16, **kwargs):
        import hashlib

        single = isinstance(prompts, str)
        out = []
        for p in [prompts] if single else prompts:
            if p.rstrip().endswith("Say nothing."):
                out.append("   ")
                continue
            tag = hashlib.md5(p.encode()).hexdigest()[:6]
            out.append(f"  Revised reply: [{max_new_tokens} tokens] reply {tag} to '{p.splitlines()[-1][:24]}' ")
        return out[0] if single else out

    def option_logprobs(self, *args, **kwargs):  # present so the loop accepts it as a language model
        raise NotImplementedError

    def __repr__(self):
        return "<a scripted stand-in model>"


def _loop_cases(lm=None) -> list[Case]:
    """Stand-in cases (each mistake gets its own hint), then one on SmolLM2: the notebook's model when the check
    cell passes it (``check.critique_revision(critique_revision, lm)``), otherwise the course model."""
    from labkit.constitutional import load_constitution, load_prompts

    by_id = {p["id"]: p for p in load_constitution()["principles"]}
    items = load_prompts()["harmful"]
    quiet = {"id": "quiet", "text": "Be quiet.", "critique": "Say nothing.", "revision": "Rewrite the reply."}
    fake = _ScriptedLM()
    two = [items[0]["prompt"], items[1]["prompt"]]
    two_p = [by_id[items[0]["principle"]], by_id[items[1]["principle"]]]
    return [
        Case("a scripted stand-in model: 2 prompts, 2 rounds, 32 and 24 tokens", (fake, two, two_p),
             {"n_rounds": 2, "max_new_tokens": 32, "critique_tokens": 24}),
        Case("the stand-in, given initial responses, 1 round, 16 and 8 tokens", (fake, two, two_p),
             {"n_rounds": 1, "max_new_tokens": 16, "critique_tokens": 8, "initial": ["  Sure, here you go.", "No."]}),
        Case("an empty critique becomes '(no critique)'", (fake, two[:1], [quiet]), {"n_rounds": 1}),
        Case("SmolLM2 on the notebook's first prompt, one round, 8 and 6 tokens (greedy)",
             (course_model() if lm is None else lm, [items[0]["prompt"]], [by_id[items[0]["principle"]]]),
             {"n_rounds": 1, "max_new_tokens": 8, "critique_tokens": 6}),
    ]


def _loop_mistakes() -> dict[str, Callable]:
    from labkit.constitutional import build_prompt, clean_reply

    def loop(lm, prompts, principles, n_rounds=1, max_new_tokens=32, critique_tokens=24, initial=None,
             keep_first=False, no_critique_in_revision=False, clean=True, same_budget=False, fill=True):
        kw = dict(batch_size=len(prompts))
        tidy = clean_reply if clean else (lambda t: t)
        first = [tidy(r) for r in (initial if initial is not None else lm.generate(prompts, max_new_tokens=max_new_tokens, **kw))]
        current, out = first, {"initial": first, "rounds": []}
        for _ in range(n_rounds):
            base = first if keep_first else current
            crit = lm.generate([build_prompt(q, a, p) for q, a, p in zip(prompts, base, principles)],
                               max_new_tokens=max_new_tokens if same_budget else critique_tokens, **kw)
            crit = [(c.strip() or "(no critique)") if fill else c.strip() for c in crit]
            asks = [build_prompt(q, a, p) if no_critique_in_revision else build_prompt(q, a, p, c)
                    for q, a, p, c in zip(prompts, base, principles, crit)]
            current = [tidy(x) for x in lm.generate(asks, max_new_tokens=max_new_tokens, **kw)]
            out["rounds"].append({"critique": crit, "revision": current})
        return out

    return {
        "each round revises the CURRENT response (the previous round's revision), not the initial one.":
            lambda *a, **k: loop(*a, **k, keep_first=True),
        "the revision request must contain the critique: build_prompt(question, response, principle, critique).":
            lambda *a, **k: loop(*a, **k, no_critique_in_revision=True),
        "clean every generated response with constitutional.clean_reply (it strips labels like 'Revised reply:').":
            lambda *a, **k: loop(*a, **k, clean=False),
        "critiques get their own budget: max_new_tokens=critique_tokens for the critique step.":
            lambda *a, **k: loop(*a, **k, same_budget=True),
        "an empty critique must become '(no critique)'.":
            lambda *a, **k: loop(*a, **k, fill=False),
    }


critique_revision = Exercise("critique_revision", _loop_reference, _loop_cases, _loop_mistakes())
critique_revision.__doc__ = ("Check ``critique_revision(lm, prompts, principles, n_rounds, max_new_tokens, critique_tokens, "
                             "initial=None)``: the critique → revision loop around the generation call.")


# -- dpo_pairs -------------------------------------------------------------------------------------


def _pairs_reference(p_ab, p_ba, margin=0.0):
    """Order-averaged AI labels → [k, 2] (chosen, rejected) indices into the replies stored as X + Y."""
    from labkit.constitutional import ai_preference_pairs

    out = ai_preference_pairs(p_ab, p_ba, margin)
    n, keep, first = len(out["p"]), out["keep"], out["first_chosen"]
    return torch.stack([torch.where(first, keep, keep + n), torch.where(first, keep + n, keep)], dim=1)


def _pairs_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    return [
        Case("four pairs by hand, margin 0.05 (a pure position bias, a preference each way, one inside the margin)",
             (torch.tensor([0.9, 0.8, 0.3, 0.53], dtype=torch.float64), torch.tensor([0.1, 0.8, 0.6, 0.49], dtype=torch.float64)),
             {"margin": 0.05}),
        Case("a judge biased towards A: p(A) high in both orders", (torch.tensor([0.95, 0.9, 0.7], dtype=torch.float64),
                                                                   torch.tensor([0.6, 0.92, 0.97], dtype=torch.float64))),
        Case("20 random pairs, margin 0.1", (torch.rand(20, generator=g, dtype=torch.float64),
                                            torch.rand(20, generator=g, dtype=torch.float64)), {"margin": 0.1}),
    ]


def _pairs_mistakes() -> dict[str, Callable]:
    def pairs(p, keep, swap=False):
        n, first = len(p), p[keep] > 0.5
        if swap:
            first = ~first
        return torch.stack([torch.where(first, keep, keep + n), torch.where(first, keep + n, keep)], dim=1)

    def kept(p, margin, absolute=True):
        d = (p - 0.5).abs() if absolute else p - 0.5
        return torch.nonzero(d > margin).flatten()

    def one_order(p_ab, p_ba, margin=0.0):
        p = p_ab.double()
        return pairs(p, kept(p, margin))

    def plain_mean(p_ab, p_ba, margin=0.0):
        p = ((p_ab + p_ba) / 2).double()
        return pairs(p, kept(p, margin))

    def keep_all(p_ab, p_ba, margin=0.0):
        p = ((p_ab + 1 - p_ba) / 2).double()
        return pairs(p, kept(p, -1.0))

    def swapped(p_ab, p_ba, margin=0.0):
        p = ((p_ab + 1 - p_ba) / 2).double()
        return pairs(p, kept(p, margin), swap=True)

    def one_sided(p_ab, p_ba, margin=0.0):
        p = ((p_ab + 1 - p_ba) / 2).double()
        return pairs(p, kept(p, margin, absolute=False))

    return {
        "average BOTH orders: p = (p_ab + 1 − p_ba) / 2; p_ab alone carries the judge's position bias.": one_order,
        "in the swapped order p_ba is p(A) for the OTHER reply: use 1 − p_ba, not p_ba.": plain_mean,
        "drop the pairs whose label is within the margin of ½ (keep |p − ½| > margin).": keep_all,
        "p > ½ means reply X (index i) is CHOSEN: the row is (i, n + i); the rejected reply is n + i.": swapped,
        "keep pairs that lean either way: |p − ½| > margin, with the absolute value.": one_sided,
    }


dpo_pairs = Exercise("dpo_pairs", _pairs_reference, _pairs_cases(), _pairs_mistakes())
dpo_pairs.__doc__ = ("Check ``dpo_pairs(p_ab, p_ba, margin=0.0)``: order-averaged AI labels → a [k, 2] tensor of "
                     "(chosen, rejected) indices into the replies stored as X + Y.")
