"""Checks for the exercises of notebook 08 · Causal mediation analysis of gender bias."""

from __future__ import annotations

from typing import Callable

import torch

from ._machinery import Case, Exercise

__all__ = ["total_effect", "natural_indirect_effect", "set_neurons"]


# -- TE from probabilities ---------------------------------------------------------------------------


def _te_reference(p_null, p_set):
    """y = p_anti / p_stereo per prompt; TE = y_set / y_null − 1 (columns: 0 = anti, 1 = stereo)."""
    from labkit.mediation import total_effect

    return total_effect(p_null, p_set)


def _te_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    u = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64) * 0.5 + 0.01  # noqa: E731
    return [
        Case("the lecture's example: p(he|nurse) 0.031, p(she|nurse) 0.224; p(he|man) 0.45, p(she|man) 0.0344",
             (torch.tensor([0.031, 0.224], dtype=torch.float64), torch.tensor([0.45, 0.0344], dtype=torch.float64))),
        Case("a batch of 6 prompts", (u(6, 2), u(6, 2))),
        Case("no effect: the intervention leaves both probabilities unchanged (TE = 0)",
             (torch.tensor([[0.2, 0.1]], dtype=torch.float64), torch.tensor([[0.2, 0.1]], dtype=torch.float64))),
    ]


def _te_mistakes() -> dict[str, Callable]:
    y = lambda p: p[..., 0] / p[..., 1]  # noqa: E731
    return {
        "TE = y_set / y_null − 1 with y = p(anti) / p(stereo) (column 0 over column 1): you inverted a ratio "
        "(y_null / y_set, or p(stereo) / p(anti), which give the same wrong number).": lambda a, b: y(a) / y(b) - 1,
        "subtract 1: TE = y_set / y_null − 1, so no effect gives 0.": lambda a, b: y(b) / y(a),
        "TE is a ratio of ratios, not a difference y_set − y_null.": lambda a, b: y(b) - y(a),
    }


total_effect = Exercise("total_effect", _te_reference, _te_cases(), _te_mistakes(), rtol=1e-6)
total_effect.__doc__ = "Check ``total_effect(p_null, p_set)`` with probabilities [..., 2] = (anti, stereo)."


# -- NIE from ratios ---------------------------------------------------------------------------------


def _nie_reference(y_null, y_intervened):
    """NIE = E_prompts[ y_{null, z_set} / y_null − 1 ] over the last axis (prompts)."""
    return (y_intervened / y_null - 1).mean(-1)


def _nie_cases() -> list[Case]:
    g = torch.Generator().manual_seed(2)
    u = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64) * 2 + 0.05  # noqa: E731
    yn = u(5)
    return [
        Case("5 prompts, one mediator", (yn, u(5))),
        Case("3 mediators (rows) × 5 prompts", (yn, u(3, 5))),
        Case("an intervention that changes nothing: NIE = 0", (yn, yn.clone())),
        Case("prompts with very different y_null (mean of ratios ≠ ratio of means)",
             (torch.tensor([0.01, 1.0, 5.0], dtype=torch.float64), torch.tensor([0.05, 1.2, 4.0], dtype=torch.float64))),
    ]


def _nie_mistakes() -> dict[str, Callable]:
    return {
        "average the per-prompt effects y_int / y_null − 1; a ratio of averages weights prompts unequally.":
            lambda yn, yi: yi.mean(-1) / yn.mean(-1) - 1,
        "subtract 1 from each ratio: no change must give NIE = 0.": lambda yn, yi: (yi / yn).mean(-1),
        "divide the intervened ratio by the null ratio, not the other way round.": lambda yn, yi: (yn / yi - 1).mean(-1),
        "the effect is a ratio (y_int / y_null − 1), not a difference.": lambda yn, yi: (yi - yn).mean(-1),
    }


natural_indirect_effect = Exercise("natural_indirect_effect", _nie_reference, _nie_cases(), _nie_mistakes(), rtol=1e-6)


# -- a neuron intervention ---------------------------------------------------------------------------


def _set_neurons_reference(act, position, index, values):
    """Copy of act [batch, seq, d_mlp] with neuron index[r] at `position` of row r set to values[r]."""
    new = act.clone()
    rows = torch.arange(act.shape[0])
    new[rows, position, index] = values.to(act.dtype)
    return new


def _set_neurons_cases() -> list[Case]:
    g = torch.Generator().manual_seed(4)
    act = torch.randn(6, 5, 12, generator=g)
    return [
        Case("6 rows, each row its own neuron, position 1", (act, 1, torch.tensor([0, 3, 3, 7, 11, 2]), torch.randn(6, generator=g))),
        Case("position −1 (the last token)", (act, -1, torch.tensor([5, 4, 3, 2, 1, 0]), torch.randn(6, generator=g))),
        Case("a single row", (act[:1], 2, torch.tensor([9]), torch.tensor([4.0]))),
    ]


def _set_neurons_mistakes() -> dict[str, Callable]:
    def all_rows(act, position, index, values):
        new = act.clone()
        new[:, position, index] = values
        return new

    def all_positions(act, position, index, values):
        new = act.clone()
        rows = torch.arange(act.shape[0])
        new[rows, :, index] = values[:, None]
        return new

    def add(act, position, index, values):
        new = act.clone()
        rows = torch.arange(act.shape[0])
        new[rows, position, index] += values
        return new

    return {
        "row r gets only its own neuron index[r]: index rows with torch.arange(batch) together with index "
        "(act[:, position, index] sets every listed neuron in every row).": all_rows,
        "set the neuron at the given position only, not at every position.": all_positions,
        "set the neuron to the value (replace it), do not add the value.": add,
    }


set_neurons = Exercise("set_neurons", _set_neurons_reference, _set_neurons_cases(), _set_neurons_mistakes())
