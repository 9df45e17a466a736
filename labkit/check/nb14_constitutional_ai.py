"""Checks for the exercises of notebook 14 · RL from AI feedback and Constitutional AI."""

from __future__ import annotations

from typing import Callable

import torch

from ._machinery import Case, Exercise

__all__ = ["build_prompt", "group_consensus"]

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
