"""Checks for the exercises of the circuits notebook (induction heads and IOI; draft, number to be assigned)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._machinery import Case, Exercise

__all__ = ["induction_score", "receiver_edit"]


# -- the induction score from attention patterns ----------------------------------------------------------


def _induction_reference(patterns, period):
    """s_ind(l, h) = mean over batch and repeat positions i of A[l, b, h, i, i − T + 1]: [layers, heads]."""
    from labkit.circuits import induction_scores

    return induction_scores(patterns, period)


def _patterns(*shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).softmax(-1)


def _induction_cases() -> list[Case]:
    planted = torch.full((1, 2, 1, 7, 7), 0.0)
    for i in range(7):  # BOS + 3 + 3 tokens: an induction head attends from i to i − 2 in the repeat
        planted[0, :, 0, i, i - 2 if i >= 4 else 0] = 1.0
    return [
        Case("3 layers, batch 2, 4 heads; BOS + two copies of 5 tokens (seq 11), T = 5",
             (_patterns(3, 2, 4, 11, 11, seed=1), 5)),
        Case("no BOS: two copies of 4 tokens (seq 8), T = 4", (_patterns(2, 3, 2, 8, 8, seed=2), 4)),
        Case("a planted perfect induction head (score 1), T = 3", (planted, 3)),
        Case("a prefix before the two copies (seq 9, T = 3)", (_patterns(1, 2, 3, 9, 9, seed=3), 3)),
    ]


def _diag(patterns, offset, queries):
    q = torch.tensor(list(queries))
    return patterns[:, :, :, q, q - offset].mean(dim=(1, 3))


def _induction_mistakes() -> dict[str, Callable]:
    def rep(p, T):
        return range(p.shape[-1] - T, p.shape[-1])

    return {
        "the induction target is the token *after* the previous occurrence, i − T + 1; i − T is the previous "
        "occurrence itself (that is a duplicate-token head).": lambda p, T: _diag(p, T, rep(p, T)),
        "i − 1 is the previous token; the induction head looks T − 1 positions back.": lambda p, T: _diag(p, 1, rep(p, T)),
        "average over the query positions of the repeat only (the last T positions): in the first copy there is "
        "no previous occurrence.": lambda p, T: _diag(p, T - 1, range(T - 1, p.shape[-1])),
        "count the repeat from the end of the sequence (the last T positions), not from position T: a BOS or a "
        "prefix shifts the copies.": lambda p, T: _diag(p, T - 1, range(T, 2 * T)),
    }


induction_score = Exercise("induction_score", _induction_reference, _induction_cases(), _induction_mistakes(),
                           rtol=1e-5)
induction_score.__doc__ = "Check ``induction_score(patterns, period)`` with patterns [layers, batch, heads, seq, seq]."


# -- the receiver step of path patching -------------------------------------------------------------------


def _receiver_reference(act, new, heads, position):
    """Copy of act [batch, seq, heads, d_head] with act[:, position, h] = new[:, position, h] for h in heads
    (``position=None``: every position)."""
    out = act.clone()
    where = slice(None) if position is None else position
    for h in heads:
        out[:, where, h] = new[:, where, h]
    return out


def _receiver_cases() -> list[Case]:
    g = torch.Generator().manual_seed(5)
    act, new = torch.randn(3, 6, 4, 5, generator=g), torch.randn(3, 6, 4, 5, generator=g)
    return [
        Case("one receiver head (2) at the last position (−1)", (act, new, [2], -1)),
        Case("two receiver heads (0 and 3) at position 4", (act, new, [0, 3], 4)),
        Case("one head at every position (position None, as for keys and values)", (act, new, [1], None)),
    ]


def _receiver_mistakes() -> dict[str, Callable]:
    def all_heads(act, new, heads, position):
        out = act.clone()
        where = slice(None) if position is None else position
        out[:, where] = new[:, where]
        return out

    def all_positions(act, new, heads, position):
        out = act.clone()
        for h in heads:
            out[:, :, h] = new[:, :, h]
        return out

    def heads_first(act, new, heads, position):
        out = act.clone()
        where = slice(None) if position is None else position
        for h in heads:
            out[:, h, where] = new[:, h, where]
        return out

    return {
        "replace only the receiver heads: the other heads of the layer keep their clean input.": all_heads,
        "replace the receiver's input at the given position only (the query at END), not at every position.":
            all_positions,
        "q.L, k.L and v.L are [batch, seq, heads, d_head]: the position is axis 1, the head axis 2.": heads_first,
    }


receiver_edit = Exercise("receiver_edit", _receiver_reference, _receiver_cases(), _receiver_mistakes())
receiver_edit.__doc__ = "Check ``receiver_edit(act, new, heads, position)`` (the receiver run of path patching)."
