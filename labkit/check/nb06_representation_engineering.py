"""Checks for the exercises of notebook 06 · Representation engineering: reading and steering."""

from __future__ import annotations

from typing import Callable

import torch

from ._machinery import Case, Exercise, course_model

__all__ = ["reading_vector", "add_steering", "steered_scores"]


# -- the PCA reading vector -----------------------------------------------------------------------


def _reading_vector_reference(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """First PC of the symmetrised pair differences {±d_i} (uncentred SVD of D), unit length, signed along the mean."""
    from labkit.steering import pca_reading_vector

    return pca_reading_vector(pos, neg)


def _reading_vector_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    d = 6
    direction = torch.zeros(d)
    direction[2] = 1.0
    base = torch.randn(20, d, generator=g)
    # pair differences spread along `direction` with a positive mean, plus small noise
    spread = (1.0 + torch.rand(20, 1, generator=g) * 3) * direction + 0.05 * torch.randn(20, d, generator=g)
    # a large shared offset in another direction: the symmetrised PCA follows it, a centred PCA removes it
    offset = torch.zeros(d)
    offset[4] = 5.0
    big = torch.randn(30, d, generator=g)
    spread2 = (torch.randn(30, 1, generator=g) * 2) * direction + offset + 0.05 * torch.randn(30, d, generator=g)
    neg_side = torch.randn(16, d, generator=g)
    flip = -(0.5 + torch.rand(16, 1, generator=g)) * direction + 0.05 * torch.randn(16, d, generator=g)
    return [
        Case("20 pairs whose differences vary along one axis", (base + spread, base)),
        Case("30 pairs whose differences share a large constant offset (do not centre it away)", (big + spread2, big)),
        Case("16 pairs where the positive side lies at lower values (sign must follow the mean difference)",
             (neg_side + flip, neg_side)),
        Case("a batch of 3 layers × 10 pairs × 5 dims", (torch.randn(3, 10, 5, generator=g) * torch.tensor([3.0, 1, 1, 1, 1]),
                                                      torch.randn(3, 10, 5, generator=g))),
    ]


def _reading_vector_mistakes() -> dict[str, Callable]:
    def centred(pos, neg):
        d = (pos - neg).double()
        v = torch.linalg.svd(d - d.mean(-2, keepdim=True), full_matrices=False)[2][..., 0, :]
        s = torch.sign((d.mean(-2) * v).sum(-1, keepdim=True))
        return (v * s).to(pos.dtype)

    def unsigned(pos, neg):
        d = (pos - neg).double()
        v = torch.linalg.svd(d, full_matrices=False)[2][..., 0, :]
        return (-v).to(pos.dtype)

    def mean_diff(pos, neg):
        v = pos.mean(-2) - neg.mean(-2)
        return v / v.norm(dim=-1, keepdim=True)

    def not_normalised_mean(pos, neg):
        return pos.mean(-2) - neg.mean(-2)

    def column(pos, neg):
        d = (pos - neg).double()
        vh = torch.linalg.svd(d, full_matrices=True)[2]
        v = vh[..., :, 0]
        s = torch.sign((d.mean(-2) * v).sum(-1, keepdim=True))
        return (v * s).to(pos.dtype)

    return {
        "do not centre the differences: centring removes their mean, which is the concept direction itself. "
        "PCA of the symmetrised set {d_i, −d_i} has mean 0, so take the SVD of the uncentred D.": centred,
        "this is the difference of means, not the first principal component of the (symmetrised) differences.": mean_diff,
        "return a unit vector: the first right-singular vector of D.": not_normalised_mean,
        "the right-singular vectors are the *rows* of Vh (torch.linalg.svd returns Vᴴ): take Vh[..., 0, :], "
        "not the first column.": column,
        "fix the sign: PCA's sign is arbitrary; flip v so that the mean pair difference has a positive projection "
        "(mean_i d_i · v > 0).": unsigned,
    }


reading_vector = Exercise("reading_vector", _reading_vector_reference, _reading_vector_cases(),
                          _reading_vector_mistakes(), rtol=1e-4, atol=1e-5)
reading_vector.__doc__ = "Check a ``reading_vector(pos, neg)``: the first PC of centred pair differences, signed."


# -- activation addition ----------------------------------------------------------------------------


def _add_steering_reference(act: torch.Tensor, v: torch.Tensor, c: float, positions=None) -> torch.Tensor:
    from labkit.steering import add_steering

    return add_steering(act, v, c, positions)


def _add_steering_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    act = torch.randn(2, 5, 4, generator=g)
    v = torch.randn(4, generator=g) * 3
    return [
        Case("c = 2 at every position", (act, v, 2.0)),
        Case("c = −1.5 (negative steering) at every position", (act, v, -1.5)),
        Case("c = 0 must give back the activation exactly", (act, v, 0.0)),
        Case("c = 3 only at the last position (positions=[-1])", (act, v, 3.0), {"positions": [-1]}),
        Case("c = 1 at positions 0 and 2", (act, v, 1.0), {"positions": [0, 2]}),
    ]


def _add_steering_mistakes() -> dict[str, Callable]:
    def ignores_positions(act, v, c, positions=None):
        return act + c * v

    def normalised(act, v, c, positions=None):
        u = v / v.norm()
        if positions is None:
            return act + c * u
        out = act.clone()
        out[:, positions] += c * u
        return out

    def no_coefficient(act, v, c, positions=None):
        if positions is None:
            return act + v
        out = act.clone()
        out[:, positions] += v
        return out

    def subtract(act, v, c, positions=None):
        if positions is None:
            return act - c * v
        out = act.clone()
        out[:, positions] -= c * v
        return out

    def batch_axis(act, v, c, positions=None):
        if positions is None:
            return act + c * v
        out = act.clone()
        out[positions] += c * v
        return out

    return {
        "multiply the vector by the coefficient c (h + c·v); with c = 0 nothing may change.": no_coefficient,
        "the sign is flipped: activation addition adds c·v, so positive c moves towards the positive side.": subtract,
        "use the vector as given: do not rescale it to unit length (c·v, not c·v/‖v‖).": normalised,
        "positions index the sequence axis (act[:, positions]), not the batch axis.": batch_axis,
        "when positions is given, add the vector only at those sequence positions.": ignores_positions,
    }


add_steering = Exercise("add_steering", _add_steering_reference, _add_steering_cases(), _add_steering_mistakes())
add_steering.__doc__ = "Check an ``add_steering(act, v, c, positions=None)`` function: h + c·v at the positions."


# -- steering as a forward hook, scored ---------------------------------------------------------------


def _steered_reference(lm, prompts, v, c, layer, positive, negative, positions=None):
    from labkit.steering import steered_scores

    return steered_scores(lm, prompts, v, c, layer, positive, negative, positions)


GOOD = [" great", " good", " wonderful", " amazing", " excellent"]
BAD = [" terrible", " bad", " awful", " horrible", " boring"]


def _steered_cases(lm=None) -> list[Case]:
    lm = course_model() if lm is None else lm  # the notebook's model when the check cell passes it
    from labkit.steering import diff_of_means, load_contrast_pairs

    positive, negative = load_contrast_pairs()
    states = lm.last_token_states(positive[:16] + negative[:16])  # [layers, 32, d_model]
    V = diff_of_means(states[:, :16], states[:, 16:], normalize=False)  # the notebook's un-normalised vectors
    prompts = ["I just got back from the new restaurant. Honestly, the food was", "The weather this weekend was",
               "The service at the hotel was"]
    mid, later, early = lm.n_layers // 3, lm.n_layers * 2 // 5, lm.n_layers // 5  # 10, 12, 6 of 30 layers
    return [
        Case(f"the notebook's sentiment vector of layer {mid}, c = 4 at every position, 3 prompts",
             (lm, prompts, V[mid], 4.0, mid, GOOD, BAD)),
        Case(f"layer {later}, c = −6 at the last position only (positions=[-1])",
             (lm, prompts, V[later], -6.0, later, GOOD, BAD), {"positions": [-1]}),
        Case(f"layer {early}, c = 8 on one prompt", (lm, prompts[1:2], V[early], 8.0, early, GOOD, BAD)),
        Case("c = 0 must give the unsteered score", (lm, prompts, V[mid], 0.0, mid, GOOD, BAD)),
    ]


def _steered_mistakes() -> dict[str, Callable]:
    from labkit.steering import behaviour_score, steered

    def score(lm, prompts, positive, negative, mean=False):
        if not mean:
            return behaviour_score(lm, prompts, positive, negative)
        logp = torch.log_softmax(lm.next_token_logits(prompts), -1)
        pos, neg = [lm.token_id(w) for w in positive], [lm.token_id(w) for w in negative]
        return logp[:, pos].mean(-1) - logp[:, neg].mean(-1)

    def run(lm, prompts, v, c, layer, positive, negative, positions=None, shift=0, sign=1.0, all_positions=False,
            mean=False, unit=False):
        v = v / v.norm() if unit else v
        with steered(lm, v, sign * c, [layer + shift], None if all_positions else positions):
            return score(lm, prompts, positive, negative, mean)

    def m(**flags):
        return lambda lm, prompts, v, c, layer, positive, negative, positions=None: run(
            lm, prompts, v, c, layer, positive, negative, positions, **flags)

    def outside(lm, prompts, v, c, layer, positive, negative, positions=None):
        return behaviour_score(lm, prompts, positive, negative)

    return {
        "run the model *inside* the `with hooks.patch(...)` block: outside it the hook is already removed and the "
        "score is the unsteered one.": outside,
        "steer the output of block `layer`, the site f\"resid_post.{layer}\" (you edited the block before it).":
            m(shift=-1),
        "activation addition adds +c·v: positive c must move the score towards the positive words.": m(sign=-1.0),
        "add c·v only at the given positions (act[:, positions]) when positions is not None.": m(all_positions=True),
        "use the vector as given: c counts un-normalised sentiment differences, do not rescale v to unit length.":
            m(unit=True),
        "the score is log Σ_w p(w | x) over each word list (torch.logsumexp of the log-probabilities), not the "
        "mean of the log-probabilities.": m(mean=True),
    }


steered_scores = Exercise("steered_scores", _steered_reference, _steered_cases, _steered_mistakes(),
                               rtol=1e-4, atol=1e-4)
steered_scores.__doc__ = ("Check ``steered_scores(lm, prompts, v, c, layer, positive, negative, positions=None)``: the "
                          "behaviour score with c·v added at resid_post.layer, on the course model and the notebook's prompts.")
