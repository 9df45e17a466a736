"""Checks for the exercises of notebook 08 · Causal mediation analysis of gender bias."""

from __future__ import annotations

from typing import Callable

import torch

from ._machinery import Case, Exercise, course_model

__all__ = ["total_effect", "natural_indirect_effect", "set_neurons", "neuron_nie"]


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


# -- the exact NIE of neurons, with hooks.patch ---------------------------------------------------------


def _neuron_nie_reference(lm, null_ids, set_ids, anti, stereo, neurons, position):
    from labkit.mediation import neuron_nie

    return neuron_nie(lm, null_ids, set_ids, anti, stereo, neurons, position)


def _neuron_nie_cases(lm=None) -> list[Case]:
    lm = course_model() if lm is None else lm  # the notebook's model when the check cell passes it
    from labkit.datasets import load_professions
    from labkit.mediation import mediation_inputs

    by_word = {p["word"]: p for p in load_professions()}
    four = [by_word[w] for w in ("nurse", "librarian", "president", "warrior")]
    null_ids, set_ids, anti, stereo = mediation_inputs(lm, four, ["The {} said that"])
    two = [0, 2]
    # neurons (21, 780), (24, 115), (7, 310), (24, 343), (20, 5) of the course model (30 layers, d_mlp 1536), as fractions
    # of the layers and modulo d_mlp so that any model has them
    n = lm.n_layers
    a, b, c, d, e = [(layer, i % lm.d_mlp) for layer, i in [(n * 7 // 10, 780), (n * 4 // 5, 115), (n // 4, 310),
                                                          (n * 4 // 5, 343), (n * 2 // 3, 5)]]
    return [
        Case("the notebook's four prompts, four neurons of three layers at the profession's position",
             (lm, null_ids, set_ids, anti, stereo, [a, b, c, d], 1)),
        Case("the last position (position = −1)", (lm, null_ids, set_ids, anti, stereo, [b, e], -1)),
        Case("two prompts, one neuron", (lm, null_ids[two], set_ids[two], anti[two], stereo[two], [a], 1)),
    ]


def _nie_core(lm, null_ids, set_ids, anti, stereo, neurons, position, source="set", base="null", where="position",
              read=-1, average="ratios", minus_one=True):
    from labkit.lm import hooks

    rows = torch.arange(len(null_ids))
    inputs = {"null": null_ids, "set": set_ids}
    sites = sorted({f"mlp_post.{L}" for L, _ in neurons})

    def y_of(logits):
        return (logits[rows, anti] - logits[rows, stereo]).double().exp()

    with torch.no_grad(), hooks.capture(lm, sites) as cache:
        lm.model(input_ids=inputs[source])
    with torch.no_grad():
        y_null = y_of(lm.model(input_ids=null_ids).logits[:, -1])
    ys = []
    for L, i in neurons:
        acts = cache[f"mlp_post.{L}"]

        def edit(a, acts=acts, i=i):
            new = a.clone()
            if where == "position":
                new[rows, position, i] = acts[rows, position, i].to(a.dtype)
            else:
                new[:, :, i] = acts[:, :, i].to(a.dtype)
            return new

        with torch.no_grad(), hooks.patch(lm, {f"mlp_post.{L}": edit}):
            ys.append(y_of(lm.model(input_ids=inputs[base]).logits[:, read]))
    y = torch.stack(ys)
    if average == "means":
        out = y.mean(-1) / y_null.mean(-1)
    else:
        out = (y / y_null).mean(-1)
    return out - 1 if minus_one else out


def _neuron_nie_mistakes() -> dict[str, Callable]:
    def m(**flags):
        return lambda lm, n, s, a, st, neurons, position: _nie_core(lm, n, s, a, st, neurons, position, **flags)

    return {
        "the neuron's new value comes from the *set-gender* run (capture mlp_post.L on set_ids); the null run's own "
        "value changes nothing.": m(source="null"),
        "that is the natural *direct* effect (set-gender input, neuron held at its null value): the NIE runs the "
        "*null* input with the neuron set to its set-gender value.": m(source="null", base="set"),
        "set the neuron only at `position` (act[:, position, i]), not at every position.": m(where="all"),
        "read the pronoun probabilities at the last position (logits[:, -1]), where the next token is predicted.":
            m(read=1),
        "average the per-prompt ratios y_int / y_null − 1 over the prompts; a ratio of averages weights prompts "
        "unequally.": m(average="means"),
        "subtract 1: NIE = E[y_int / y_null] − 1, so a neuron that changes nothing has NIE 0.": m(minus_one=False),
    }


neuron_nie = Exercise("neuron_nie", _neuron_nie_reference, _neuron_nie_cases, _neuron_nie_mistakes(),
                           rtol=1e-3, atol=1e-4)
neuron_nie.__doc__ = ("Check ``neuron_nie(lm, null_ids, set_ids, anti, stereo, neurons, position)``: the exact NIE of "
                      "each (layer, index) neuron, on the course model and the notebook's prompts.")
