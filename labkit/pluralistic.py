"""Diverse preferences and pluralistic alignment (notebook 13).

* A mixture of Bradley-Terry annotator groups with planted rewards (:func:`simulate_preferences`), one
  reward for everyone (:func:`fit_bt`) and EM over groups (:func:`e_step`, :func:`em_rewards`) as in
  MaxMin-RLHF (Chakraborty et al., 2024) — with the hidden group per annotator (``unit="annotator"``) or per
  comparison, as the lecture writes the likelihood (``unit="comparison"``).
* KL-regularised policies on a discrete candidate set: the utilitarian policy and the MaxMin policy
  (:func:`tilted_policy`, :func:`utilitarian_policy`, :func:`maxmin_policy`, :func:`maxmin_grid`).
* Welfare functions (:func:`welfare`) and the three notions of pluralism of Sorensen et al. (2024):
  Overton coverage (:func:`overton_coverage`), steerability (the model's answer
  distribution, ``lm.option_logprobs(..., chat=True, normalize=True)``) and distributional
  pluralism (:func:`js_distance`).

Everything takes and returns tensors (float64 for the small synthetic problems) and plain values. Bad input
(wrong shapes, NaN or inf, probabilities that do not sum to one, out-of-range settings) raises a ValueError or
TypeError that names the argument.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from labkit import validation

DATA_DIR = Path(__file__).resolve().parent / "data"

__all__ = [
    "simulate_preferences", "all_pairs", "fit_bt", "pair_loglik", "e_step", "em_rewards", "EMResult",
    "match_groups", "group_accuracy", "reward_cosine", "tilted_policy", "kl", "policy_report",
    "utilitarian_policy", "maxmin_policy", "maxmin_objective", "maxmin_grid", "welfare", "js_distance",
    "check_distribution", "overton_coverage", "answer_sentences", "text_coverage", "load_pluralism",
]


# --------------------------------------------------------------------------------------------------
# Argument checks


def _int(value, name: str, low: int | None = None) -> int:
    """``value`` as an int (bools and floats refused), at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}: {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    return int(value)


def _real(value, name: str, positive: bool = False) -> float:
    """``value`` as a finite float (> 0 with ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        else:
            raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _tensor(x, name: str, dims: tuple[int, ...] | None = None, finite: bool = True) -> torch.Tensor:
    """``x`` as a non-empty float64 tensor with one of the allowed numbers of dimensions, NaN/inf refused."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}")
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be a tensor or array of numbers ({e})") from None
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    t = t.to(torch.float64)
    if dims is not None and t.dim() not in dims:
        want = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{name} must be {want}, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if finite and not torch.isfinite(t).all():
        raise ValueError(f"{name} has NaN or infinite entries")
    return t


def _index(x, name: str, dims: tuple[int, ...] = (1,)) -> torch.Tensor:
    """``x`` as a long tensor of non-negative whole numbers."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be a tensor of integer ids, got {type(x).__name__}")
    t = torch.as_tensor(x)
    if t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer ids, got booleans")
    if t.is_floating_point():
        if not torch.isfinite(t).all() or (t != t.round()).any():
            raise ValueError(f"{name} must hold whole numbers (integer ids), got fractional, NaN or inf values")
    t = t.long()
    if t.dim() not in dims:
        raise ValueError(f"{name} must be {' or '.join(f'{d}-D' for d in dims)}, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    if (t < 0).any():
        raise ValueError(f"{name} must hold non-negative ids, got {int(t.min())}")
    return t


def _beta(beta) -> float:
    return _real(beta, "beta (the KL coefficient)", positive=True)


def _rewards(rewards, n: int | None = None, name: str = "rewards") -> torch.Tensor:
    R = _tensor(rewards, name, dims=(2,))
    if n is not None and R.shape[1] != n:
        raise ValueError(f"{name} must be [K groups, n candidates] with n = {n} (the candidates of ref), "
                         f"got shape {tuple(R.shape)}")
    return R


# --------------------------------------------------------------------------------------------------
# Planted groups of annotators


def simulate_preferences(
    n_responses: int = 40,
    dim: int = 6,
    group_sizes: Sequence[int] = (40, 10),
    comparisons_per_annotator: int = 40,
    cosine: float = -0.2,
    scale: float = 3.0,
    seed: int = 0,
) -> dict:
    """Pairwise preferences of annotators from planted groups, each with its own linear reward.

    Response j has features x_j ~ N(0, I_dim). Group u has reward r_u(y) = w_u·x_y with ‖w_u‖ = ``scale``;
    w_0 and w_1 have cosine ``cosine`` (further groups are random). Annotator a of group g(a) compares
    random pairs (i, j) and prefers i with the Bradley-Terry probability σ(r_g(i) − r_g(j)).

    Returns a dict: ``features`` [n, dim], ``pairs`` [N, 2] (long), ``labels`` [N] (1.0 when the first
    response won), ``annotator`` [N] (long), ``groups`` [A] (true group of each annotator), ``weights``
    [K, dim] (true w_u), ``eta`` [K] (group shares).
    """
    if isinstance(group_sizes, (str, bytes, dict)) or not hasattr(group_sizes, "__iter__") or len(list(group_sizes)) == 0:
        raise ValueError(f"group_sizes must be a non-empty list of positive integers, got {group_sizes!r}")
    sizes = [_int(s.item() if isinstance(s, torch.Tensor) else s, "every entry of group_sizes", 1) for s in group_sizes]
    n_responses = _int(n_responses, "n_responses", 2)
    dim = _int(dim, "dim (the number of features)", 2)
    comparisons_per_annotator = _int(comparisons_per_annotator, "comparisons_per_annotator", 1)
    cosine = _real(cosine, "cosine")
    if not -1 <= cosine <= 1:
        raise ValueError(f"cosine must be in [-1, 1], got {cosine}")
    scale = _real(scale, "scale (the norm of each reward vector)", positive=True)
    seed = _int(seed, "seed")
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n_responses, dim, generator=g, dtype=torch.float64)
    e0 = torch.zeros(dim, dtype=torch.float64)
    e0[0] = 1
    e1 = torch.zeros(dim, dtype=torch.float64)
    e1[1] = 1
    W = [e0, cosine * e0 + math.sqrt(1 - cosine**2) * e1]
    for _ in range(2, len(sizes)):
        w = torch.randn(dim, generator=g, dtype=torch.float64)
        W.append(w / w.norm())
    W = torch.stack(W[: len(sizes)]) * scale
    groups = torch.cat([torch.full((s,), u, dtype=torch.long) for u, s in enumerate(sizes)])
    A = len(groups)
    annot = torch.arange(A).repeat_interleave(comparisons_per_annotator)
    i = torch.randint(0, n_responses, (len(annot),), generator=g)
    j = (i + torch.randint(1, n_responses, (len(annot),), generator=g)) % n_responses  # j != i
    diff = ((X[i] - X[j]) * W[groups[annot]]).sum(-1)
    labels = (torch.rand(len(annot), generator=g, dtype=torch.float64) < torch.sigmoid(diff)).double()
    eta = torch.tensor(sizes, dtype=torch.float64) / A
    return {"features": X, "pairs": torch.stack([i, j], 1), "labels": labels, "annotator": annot,
            "groups": groups, "weights": W, "eta": eta}


def all_pairs(n: int) -> torch.Tensor:
    """Every unordered pair (i, j), i < j, of n responses: shape [n(n−1)/2, 2]."""
    n = _int(n, "n (the number of responses)", 2)
    return torch.combinations(torch.arange(n), 2)


def _check_pairs(features, pairs, labels=None):
    X = _tensor(features, "features", dims=(2,))
    P = _index(pairs, "pairs", dims=(2,))
    if P.shape[1] != 2:
        raise ValueError(f"pairs must be [n_pairs, 2] indices, got shape {tuple(P.shape)}")
    if P.max() >= len(X):
        raise ValueError(f"pairs index responses that do not exist: the largest index is {int(P.max())} but there "
                         f"are {len(X)} responses (rows of features)")
    if (P[:, 0] == P[:, 1]).any():
        raise ValueError("pairs compare a response with itself (i == j): every pair needs two different responses")
    y = None
    if labels is not None:
        y = _tensor(labels, "labels", dims=(1,), finite=False)
        if y.shape != (len(P),):
            raise ValueError(f"labels must be one per pair ({len(P)}), got shape {tuple(y.shape)}")
        if ((y != 0) & (y != 1)).any():
            raise ValueError("labels must be 1 (first response preferred) or 0 (second preferred); "
                             "found other values (or NaN)")
    return X, P, y


def fit_bt(features, pairs, labels, sample_weight=None, l2: float = 1e-3) -> torch.Tensor:
    """A linear Bradley-Terry reward r(y) = w·x_y by maximum likelihood (Bradley & Terry, 1952).

    Minimises −Σ_z s_z log σ(w·(x_i − x_j)) − (1 − s_z)… , the logistic loss on feature differences,
    weighted by ``sample_weight`` (EM's responsibilities), plus (l2/2)‖w‖². Solved by scikit-learn's
    ``LogisticRegression`` without intercept (a reward is defined up to a constant). Returns w [dim].
    """
    from sklearn.linear_model import LogisticRegression

    X, P, y = _check_pairs(features, pairs, labels)
    l2 = _real(l2, "l2 (the ridge penalty)", positive=True)
    sw = None
    if sample_weight is not None:
        sw = _tensor(sample_weight, "sample_weight", dims=(1,))
        if sw.shape != (len(P),):
            raise ValueError(f"sample_weight must be one weight per pair ({len(P)}), got shape {tuple(sw.shape)}")
        if (sw < 0).any() or sw.sum() <= 0:
            raise ValueError("sample_weight must be >= 0 and not all zero")
        sw = np.tile(sw.numpy(), 2)
    D = (X[P[:, 0]] - X[P[:, 1]]).numpy()
    # symmetrise (both orders) so the two classes always exist and the fit has no side preference
    D2 = np.concatenate([D, -D])
    y2 = np.concatenate([y.numpy(), 1 - y.numpy()])
    clf = LogisticRegression(fit_intercept=False, C=1.0 / (2 * l2), max_iter=1000)
    clf.fit(D2, y2, sample_weight=sw)
    return torch.tensor(clf.coef_[0], dtype=torch.float64)


def pair_loglik(weights, features, pairs, labels) -> torch.Tensor:
    """log p(label_z | w_u) = log σ(±w_u·(x_i − x_j)) for every pair z and reward u: shape [N, K]."""
    X, P, y = _check_pairs(features, pairs, labels)
    W = _tensor(weights, "weights", dims=(1, 2))
    if W.shape[-1] != X.shape[1]:
        raise ValueError(f"weights must be [dim] or [K, dim] with dim = {X.shape[1]} (columns of features), "
                         f"got shape {tuple(W.shape)}")
    W = W.reshape(-1, X.shape[1])
    margin = (X[P[:, 0]] - X[P[:, 1]]) @ W.T  # [N, K]
    sign = (2 * y - 1)[:, None]
    return torch.nn.functional.logsigmoid(sign * margin)


def e_step(loglik: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """EM's E-step: responsibilities γ_{a,u} = η_u exp(ℓ_{a,u}) / Σ_v η_v exp(ℓ_{a,v}).

    ``loglik`` [A, K] holds ℓ_{a,u} = Σ_{z by a} log σ(r_u(y_w) − r_u(y_l)), the log-likelihood of all of
    annotator a's labels under group u's reward; ``eta`` [K] the mixing weights. Computed with a
    log-sum-exp (log-likelihoods of hundreds of comparisons underflow exp()). Rows of the result sum to 1.
    """
    ll = _tensor(loglik, "loglik", dims=(2,), finite=False)
    if torch.isnan(ll).any() or (ll == math.inf).any():
        raise ValueError("loglik has NaN or +inf entries: log-likelihoods are finite numbers <= 0 (or −inf)")
    eta = check_distribution(eta, "eta")
    if eta.dim() != 1 or eta.shape[0] != ll.shape[1]:
        raise ValueError(f"eta must be one share per group ({ll.shape[1]} columns of loglik), got shape {tuple(eta.shape)}")
    joint = ll + torch.log(eta)
    if (joint == -math.inf).all(-1).any():
        raise ValueError("some row of loglik is impossible under every group with η > 0 (all −inf): "
                         "responsibilities are undefined")
    return torch.softmax(joint, dim=-1)


@dataclass
class EMResult:
    """What :func:`em_rewards` learned: per-group rewards, shares, responsibilities, log-likelihoods.

    ``resp`` has one row per unit of the hidden group: per annotator (``unit="annotator"``) or per comparison
    (``unit="comparison"``).
    """

    weights: torch.Tensor  # [K, dim]
    eta: torch.Tensor  # [K]
    resp: torch.Tensor  # [A, K] (or [N, K])
    loglik: list  # the mixture log-likelihood after each iteration
    unit: str = "annotator"

    def __post_init__(self):
        self.weights = _tensor(self.weights, "weights", dims=(2,))
        K = self.weights.shape[0]
        self.eta = check_distribution(self.eta, "eta")
        if self.eta.shape != (K,):
            raise ValueError(f"eta must have one share per group ({K} rows of weights), got shape {tuple(self.eta.shape)}")
        self.resp = check_distribution(self.resp, "every row of resp")
        if self.resp.dim() != 2 or self.resp.shape[1] != K:
            raise ValueError(f"resp must be [units, {K}] (one responsibility per group), got shape {tuple(self.resp.shape)}")
        if isinstance(self.loglik, (str, bytes)) or not isinstance(self.loglik, Sequence) or not self.loglik:
            raise ValueError("loglik must be a non-empty list of log-likelihoods, one per EM iteration")
        if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in self.loglik):
            raise ValueError("loglik must hold finite numbers")
        if self.unit not in ("annotator", "comparison"):
            raise ValueError(f"unit must be 'annotator' or 'comparison', got {self.unit!r}")

    @property
    def assignment(self) -> torch.Tensor:
        return self.resp.argmax(-1)


def em_rewards(features, pairs, labels, annotator=None, k: int = 2, n_iter: int = 25, hard: bool = False,
               n_restarts: int = 3, l2: float = 1e-3, seed: int = 0, unit: str = "annotator",
               init=None) -> EMResult:
    """EM for a mixture of Bradley-Terry rewards (MaxMin-RLHF, Chakraborty et al. 2024).

    ``unit`` says what carries the hidden group u:

    * ``"annotator"`` (default): every label of annotator a comes from the same group,
      L(φ, η) = Σ_a log Σ_u η_u Π_{z by a} σ(r_φu(y_w) − r_φu(y_l)). Right when annotators are known (ids)
      and hold stable preferences: a's 40 labels are pooled as evidence for a's group.
    * ``"comparison"``: each comparison draws its own group, as the lecture writes the likelihood,
      L(φ, η) = Σ_z log Σ_u η_u σ(r_φu(y_w) − r_φu(y_l)). Right when comparisons are anonymous (no ids; one
      label per person) or a person's group may change from comparison to comparison; ``annotator`` is then
      not needed. One binary label says little about its group, so this is much weaker evidence per unit.
      With one comparison per annotator the two coincide.

    E-step: :func:`e_step` gives γ_{unit,u}; with ``hard=True`` each unit goes wholly to its most likely group
    (hard EM, as in the paper's clustering). M-step: η_u = mean γ_{·,u}; w_u = :func:`fit_bt` with each
    comparison weighted by its unit's γ_u. Starts from random responsibilities; keeps the best of
    ``n_restarts`` runs (largest final L). With ``init`` ([units, K] responsibilities, rows summing to one) it
    makes a single run from ``init`` instead (``n_restarts`` and ``seed`` are then not used).
    """
    X, P, y = _check_pairs(features, pairs, labels)
    if unit not in ("annotator", "comparison"):
        raise ValueError(f"unit must be 'annotator' (one hidden group per annotator) or 'comparison' "
                         f"(one per comparison), got {unit!r}")
    if unit == "comparison":
        owner = torch.arange(len(P))
    else:
        if annotator is None:
            raise ValueError("annotator (one annotator id per pair) is needed with unit='annotator'; "
                             "pass unit='comparison' when there are no annotator ids")
        owner = _index(annotator, "annotator")
        if owner.shape != (len(P),):
            raise ValueError(f"annotator must give one annotator id per pair ({len(P)}), got shape {tuple(owner.shape)}")
        seen = torch.bincount(owner)
        if (seen == 0).any():
            raise ValueError(f"annotator ids must be 0 … A−1 with every id used; id {int((seen == 0).nonzero()[0])} "
                             "has no comparisons (renumber them, e.g. with torch.unique(..., return_inverse=True))")
    A = int(owner.max()) + 1
    k = _int(k, "k (the number of groups)", 1)
    if k > A:
        raise ValueError(f"k = {k} groups but only {A} {unit}s: every group needs one; use k <= {A}")
    n_iter = _int(n_iter, "n_iter", 1)
    n_restarts = _int(n_restarts, "n_restarts", 1)
    if not isinstance(hard, bool):
        raise TypeError(f"hard must be True or False, got {hard!r}")
    l2 = _real(l2, "l2 (the ridge penalty)", positive=True)
    seed = _int(seed, "seed")
    if init is not None:
        init = check_distribution(init, "every row of init").double()
        if init.shape != (A, k):
            raise ValueError(f"init must be [{A} {unit}s, {k} groups] of responsibilities, got shape {tuple(init.shape)}")
        n_restarts = 1
    best = None
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_restarts):
        if init is not None:
            resp = init.clone()
        else:
            resp = -torch.log(torch.rand(A, k, generator=g, dtype=torch.float64))  # Dirichlet(1, …, 1) draws
            resp = resp / resp.sum(-1, keepdim=True)
        history = []
        for _ in range(n_iter):
            if hard:
                resp = torch.nn.functional.one_hot(resp.argmax(-1), k).double()
            eta = resp.mean(0).clamp_min(1e-12)
            eta = eta / eta.sum()
            W = torch.stack([fit_bt(X, P, y, sample_weight=resp[owner, u] + 1e-9, l2=l2) for u in range(k)])
            ll = torch.zeros(A, k, dtype=torch.float64).index_add_(0, owner, pair_loglik(W, X, P, y))  # [A, K]
            history.append(float(torch.logsumexp(ll + torch.log(eta), -1).sum()))
            resp = e_step(ll, eta)
        if hard:
            resp = torch.nn.functional.one_hot(resp.argmax(-1), k).double()
        if best is None or history[-1] > best.loglik[-1]:
            best = EMResult(W, resp.mean(0), resp, history, unit)
    return best


def match_groups(true_groups, assignment, k: int | None = None) -> torch.Tensor:
    """The permutation of learned group ids that best matches the true ids (Hungarian algorithm):
    ``perm[u]`` is the learned group that plays true group u."""
    from scipy.optimize import linear_sum_assignment

    t = _index(true_groups, "true_groups")
    a = _index(assignment, "assignment")
    if t.shape != a.shape:
        raise ValueError(f"true_groups and assignment must have one entry per unit each, got {len(t)} and {len(a)}")
    need = int(max(t.max(), a.max())) + 1
    k = need if k is None else _int(k, "k", 1)
    if k < need:
        raise ValueError(f"k = {k} but the group ids go up to {need - 1}: k must be at least {need}")
    counts = torch.zeros(k, k)
    counts.index_put_((t, a), torch.ones(len(t)), accumulate=True)
    rows, cols = linear_sum_assignment(-counts.numpy())
    perm = torch.empty(k, dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return perm


def group_accuracy(weights, true_weights, features, pairs=None) -> torch.Tensor:
    """Accuracy of reward(s) ``weights`` against each group's TRUE preference on ``pairs`` (default: all
    pairs): fraction of pairs where sign(w·(x_i − x_j)) = sign(w_u*·(x_i − x_j)). ``weights`` is one reward
    [dim] (used for every group) or one per group [K, dim]. Returns [K]."""
    X = _tensor(features, "features", dims=(2,))
    T = _tensor(true_weights, "true_weights", dims=(2,))
    W = _tensor(weights, "weights", dims=(1, 2))
    if T.shape[1] != X.shape[1]:
        raise ValueError(f"true_weights must be [K, dim] with dim = {X.shape[1]}, got shape {tuple(T.shape)}")
    W = W.expand_as(T) if W.dim() == 1 and W.shape[0] == T.shape[1] else W
    if W.shape != T.shape:
        raise ValueError(f"weights {tuple(W.shape)} must be [dim] or match true_weights {tuple(T.shape)}")
    P = all_pairs(len(X)) if pairs is None else _check_pairs(X, pairs)[1]
    D = X[P[:, 0]] - X[P[:, 1]]
    return ((D @ W.T > 0) == (D @ T.T > 0)).double().mean(0)


def reward_cosine(weights, true_weights) -> torch.Tensor:
    """Cosine between learned and true reward directions, row by row: [K]."""
    W = _tensor(weights, "weights", dims=(1, 2))
    T = _tensor(true_weights, "true_weights", dims=(1, 2))
    if W.shape[-1] != T.shape[-1]:
        raise ValueError(f"weights and true_weights must have the same number of features, got {tuple(W.shape)} "
                         f"and {tuple(T.shape)}")
    for name, M in (("weights", W), ("true_weights", T)):
        if (M.reshape(-1, M.shape[-1]).norm(dim=-1) == 0).any():
            raise ValueError(f"{name} has a row of zeros: a zero reward has no direction, so its cosine is undefined")
    try:
        W, T = torch.broadcast_tensors(W, T)
    except RuntimeError:
        raise ValueError(f"weights {tuple(W.shape)} and true_weights {tuple(T.shape)} must have the same rows "
                         "(or one of them a single row)") from None
    return torch.nn.functional.cosine_similarity(W, T, dim=-1)


# --------------------------------------------------------------------------------------------------
# Policies on a candidate set


def check_distribution(p, name: str = "distribution", atol: float = 1e-6) -> torch.Tensor:
    """Return ``p`` as float64 after checking it is a probability vector (last axis): ≥ 0, sums to 1."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string (used in error messages), got {type(name).__name__}")
    atol = _real(atol, "atol", positive=True)
    p = _tensor(p, name, finite=False)
    if p.dim() == 0 or p.shape[-1] == 0:
        raise ValueError(f"{name} must be a non-empty vector of probabilities")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError(f"{name} has negative, NaN or infinite entries: probabilities must be >= 0")
    s = p.sum(-1)
    if not torch.allclose(s, torch.ones_like(s), atol=atol):
        shown = s.flatten()[:5].tolist()
        raise ValueError(f"{name} sums to {shown if s.numel() > 1 else s.item()}, not 1: normalise it first (p / p.sum())")
    return p


def tilted_policy(ref, reward, beta: float) -> torch.Tensor:
    """The KL-regularised optimum π(y) = π_ref(y) exp(r(y)/β) / Z for J(π) = E_π[r] − β KL(π ‖ π_ref)."""
    beta = _beta(beta)
    ref = check_distribution(ref, "ref")
    reward = _tensor(reward, "reward")
    if reward.shape[-1] != ref.shape[-1]:
        raise ValueError(f"reward must have one value per candidate ({ref.shape[-1]}), got shape {tuple(reward.shape)}")
    return torch.softmax(torch.log(ref) + reward / beta, dim=-1)


def kl(p, q) -> torch.Tensor:
    """D_KL(p ‖ q) = Σ p log(p/q) in nats (0 log 0 = 0; +inf where q = 0 < p)."""
    p = check_distribution(p, "p")
    q = check_distribution(q, "q")
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(f"p and q must have the same number of outcomes, got {p.shape[-1]} and {q.shape[-1]}")
    return torch.special.xlogy(p, p).sum(-1) - torch.special.xlogy(p, q).sum(-1)


def utilitarian_policy(rewards, ref, beta: float, weights=None) -> torch.Tensor:
    """argmax_π Σ_u η_u E_π[r_u] − β KL(π ‖ π_ref) = the tilted policy for the average reward Σ_u η_u r_u."""
    ref = check_distribution(ref, "ref")
    R = _rewards(rewards, ref.shape[-1])
    eta = torch.full((R.shape[0],), 1.0 / R.shape[0], dtype=torch.float64) if weights is None else check_distribution(weights, "weights")
    if eta.shape != (R.shape[0],):
        raise ValueError(f"weights must be one share per group ({R.shape[0]}), got shape {tuple(eta.shape)}")
    return tilted_policy(ref, eta @ R, beta)


def maxmin_objective(policy, rewards, ref, beta: float) -> torch.Tensor:
    """min_u E_π[r_u] − β KL(π ‖ π_ref) for one policy [n] or a batch of policies [..., n]."""
    beta = _beta(beta)
    ref = check_distribution(ref, "ref")
    R = _rewards(rewards, ref.shape[-1])
    pi = check_distribution(policy, "policy")
    if pi.shape[-1] != R.shape[1]:
        raise ValueError(f"policy must be a distribution over the {R.shape[1]} candidates, got shape {tuple(pi.shape)}")
    return (pi @ R.T).min(-1).values - beta * kl(pi, ref)


def maxmin_policy(rewards, ref, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The MaxMin policy argmax_π min_u E_π[r_u] − β KL(π ‖ π_ref) (Chakraborty et al., 2024), exactly.

    The objective is concave in π and linear in the group mixture λ ∈ Δ_K, so (minimax theorem)
    max_π min_λ Σ_u λ_u E_π[r_u] − β KL = min_λ β log Σ_y π_ref(y) exp(λ·r(y)/β), a smooth convex problem
    in K numbers solved by scipy (SLSQP on the simplex); the policy is the tilted policy for λ·r.
    Returns (policy [n], λ [K]).
    """
    from scipy.optimize import minimize

    ref = check_distribution(ref, "ref")
    if ref.dim() != 1:
        raise ValueError(f"ref must be one distribution over candidates [n], got shape {tuple(ref.shape)}")
    R = _rewards(rewards, ref.shape[0])
    beta = _beta(beta)
    Rn, logref = R.numpy(), torch.log(ref).numpy()
    K = R.shape[0]

    def dual(lam):
        z = logref + lam @ Rn / beta
        m = z.max()
        p = np.exp(z - m)
        s = p.sum()
        return beta * (m + np.log(s)), Rn @ (p / s)

    res = minimize(dual, np.full(K, 1.0 / K), jac=True, method="SLSQP", bounds=[(0, 1)] * K,
                   constraints=[{"type": "eq", "fun": lambda l: l.sum() - 1, "jac": lambda l: np.ones(K)}],
                   options={"ftol": 1e-12, "maxiter": 500})
    lam = torch.tensor(np.clip(res.x, 0, None), dtype=torch.float64)
    lam = lam / lam.sum()
    return tilted_policy(ref, lam @ R, beta), lam


#: The most mixtures :func:`maxmin_grid` searches (the simplex lattice grows as n_grid^(K−1)).
MAX_GRID_POINTS = 500_000


def _simplex_lattice(k: int, n_grid: int) -> torch.Tensor:
    """Every λ ∈ Δ_k whose entries are multiples of 1/(n_grid − 1): [C(n_grid + k − 2, k − 1), k]. For k = 2
    the rows are (λ, 1 − λ) with λ = 0, 1/(n_grid − 1), …, 1."""
    m = n_grid - 1
    if k == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    if k == 2:
        lam = torch.linspace(0, 1, n_grid, dtype=torch.float64)
        return torch.stack([lam, 1 - lam], 1)
    # stars and bars: choose k − 1 bar positions among m + k − 1 slots
    rows = []
    for bars in itertools.combinations(range(m + k - 1), k - 1):
        edges = (-1, *bars, m + k - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(k)])
    return torch.tensor(rows, dtype=torch.float64) / m


def maxmin_grid(rewards, ref, beta: float, n_grid: int = 101) -> torch.Tensor:
    """MaxMin by search over group mixtures: among the tilted policies π_λ ∝ π_ref exp(λ·r/β), λ on the simplex
    lattice with spacing 1/(n_grid − 1) (for two groups, λ r_0 + (1 − λ) r_1 with λ on ``n_grid`` points in
    [0, 1]), return the one with the largest min_u E[r_u] − β KL. Any number K of groups; the lattice has
    C(n_grid + K − 2, K − 1) points, and more than ``MAX_GRID_POINTS`` is refused (use :func:`maxmin_policy`,
    which is exact for any K)."""
    ref = check_distribution(ref, "ref")
    if ref.dim() != 1:
        raise ValueError(f"ref must be one distribution over candidates [n], got shape {tuple(ref.shape)}")
    R = _rewards(rewards, ref.shape[0])
    beta = _beta(beta)
    n_grid = _int(n_grid, "n_grid", 2)
    K = R.shape[0]
    size = math.comb(n_grid + K - 2, K - 1)
    if size > MAX_GRID_POINTS:
        raise ValueError(f"a grid with n_grid = {n_grid} for {K} groups has {size:,} mixtures (more than "
                         f"{MAX_GRID_POINTS:,}): lower n_grid, or use maxmin_policy, which is exact for any number of groups")
    lams = _simplex_lattice(K, n_grid)
    mix = lams[:, :1] * R[0] + lams[:, 1:] * R[1] if K == 2 else lams @ R  # (two groups: λ r_0 + (1 − λ) r_1)
    pis = tilted_policy(ref, mix, beta)
    return pis[maxmin_objective(pis, R, ref, beta).argmax()]


def policy_report(policy, rewards, ref) -> dict:
    """Each group's expected reward E_π[r_u] and the policy's KL to the reference."""
    ref = check_distribution(ref, "ref")
    R = _rewards(rewards, ref.shape[-1])
    pi = check_distribution(policy, "policy")
    if pi.shape[-1] != R.shape[1]:
        raise ValueError(f"policy must be a distribution over the {R.shape[1]} candidates, got shape {tuple(pi.shape)}")
    return {"expected_reward": pi @ R.T, "kl": kl(pi, ref)}


# --------------------------------------------------------------------------------------------------
# Welfare and distances


def welfare(utilities, kind: str = "utilitarian", weights=None) -> torch.Tensor:
    """Social welfare of group utilities u [..., K] (last axis: groups), weights η (default equal):

    utilitarian W = Σ_u η_u u_u;  Nash W = Σ_u η_u log u_u (= log of the weighted geometric mean; needs
    u > 0);  egalitarian (Rawlsian) W = min_u u_u.
    """
    if kind not in ("utilitarian", "nash", "egalitarian"):
        raise ValueError(f"kind must be 'utilitarian', 'nash' or 'egalitarian', not {kind!r}")
    U = _tensor(utilities, "utilities")
    if U.dim() == 0:
        raise ValueError("utilities must have a last axis of groups, got a single number")
    K = U.shape[-1]
    eta = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else check_distribution(weights, "weights")
    if eta.shape != (K,):
        raise ValueError(f"weights must be one share per group ({K}, the last axis of utilities), got shape {tuple(eta.shape)}")
    if kind == "utilitarian":
        return U @ eta
    if kind == "nash":
        if (U <= 0).any():
            raise ValueError("Nash welfare needs strictly positive utilities (it takes their log): shift or rescale them")
        return torch.log(U) @ eta
    return U.min(-1).values


def js_distance(p, q, base: float = 2.0) -> torch.Tensor:
    """Jensen-Shannon distance √JSD(p, q), JSD = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = ½(p + q), logs in ``base``
    (base 2: between 0 and 1). The measure of distributional pluralism in Sorensen et al. (2024)."""
    base = _real(base, "base", positive=True)
    if base == 1:
        raise ValueError("base must be a logarithm base > 0 and != 1 (2 gives distances in [0, 1])")
    p = check_distribution(p, "p")
    q = check_distribution(q, "q")
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(f"p and q must have the same number of outcomes, got {p.shape[-1]} and {q.shape[-1]}")
    m = (p + q) / 2
    jsd = (kl(p, m) + kl(q, m)) / 2 / math.log(base)
    return jsd.clamp_min(0).sqrt()


# --------------------------------------------------------------------------------------------------
# Pluralism with a language model


def overton_coverage(answer_emb, viewpoint_emb, viewpoint_labels, threshold: float = 0.5) -> dict:
    """Overton pluralism: the share of reasonable viewpoints that a set of answers covers.

    Each answer (unit-norm embedding) goes to the viewpoint whose reference statements it is most similar
    to (cosine to the viewpoint's mean embedding), if that similarity reaches ``threshold``; coverage =
    |viewpoints with at least one answer| / |viewpoints|. Returns coverage, the covered viewpoints and
    each answer's viewpoint (−1: none).
    """
    A = _tensor(answer_emb, "answer_emb", dims=(2,))
    V = _tensor(viewpoint_emb, "viewpoint_emb", dims=(2,))
    if A.shape[1] != V.shape[1]:
        raise ValueError(f"answer_emb and viewpoint_emb must have the same embedding size, got {A.shape[1]} and {V.shape[1]}")
    for name, M in (("answer_emb", A), ("viewpoint_emb", V)):
        if (M.norm(dim=-1) == 0).any():
            raise ValueError(f"{name} has an all-zero row: an embedding of zeros has no direction")
    labels = _index(viewpoint_labels, "viewpoint_labels")
    if labels.shape != (len(V),):
        raise ValueError("viewpoint_labels must give one viewpoint id per reference statement (row of viewpoint_emb)")
    k = int(labels.max()) + 1
    empty = sorted(set(range(k)) - set(labels.tolist()))
    if empty:
        raise ValueError(f"viewpoint ids must be 0 … {k - 1} with statements for each; ids {empty} have none")
    threshold = _real(threshold, "threshold")
    if not -1 <= threshold <= 1:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    A = torch.nn.functional.normalize(A.float(), dim=-1)
    V = torch.nn.functional.normalize(V.float(), dim=-1)
    cent = torch.nn.functional.normalize(torch.stack([V[labels == u].mean(0) for u in range(k)]), dim=-1)
    sim = A @ cent.T
    best, which = sim.max(-1)
    which = torch.where(best >= threshold, which, torch.full_like(which, -1))
    covered = sorted({int(w) for w in which if w >= 0})
    return {"coverage": len(covered) / k, "covered": covered, "assignment": which, "similarity": sim}


def answer_sentences(text: str, min_words: int = 3) -> list[str]:
    """A generated answer split into its sentences and lines (list items), keeping those of at least
    ``min_words`` words (a list's "1." or a stray "Yes." is not a viewpoint); the whole text if none is left."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    min_words = _int(min_words, "min_words", 1)
    parts = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text)]
    return [s for s in parts if len(s.split()) >= min_words] or [text.strip()]


def text_coverage(embedder, answers: Sequence[str], viewpoints: dict, threshold: float = 0.5) -> dict:
    """:func:`overton_coverage` of answer texts: the ``answers`` (e.g. :func:`answer_sentences` of one reply)
    and the reference statements of ``viewpoints`` (``{viewpoint name: [statements]}``, as in
    ``pluralism.json``) are embedded with ``embedder`` (a sentence-transformers model, e.g.
    ``labkit.load_embedder()``), normalised; returns overton_coverage's dict."""
    if isinstance(embedder, (str, bytes)) or not callable(getattr(embedder, "encode", None)):
        raise TypeError(f"embedder must be a sentence embedder with .encode (labkit.load_embedder()), got {type(embedder).__name__}")
    answers = validation.strings("answers", answers)
    if not isinstance(viewpoints, dict) or not viewpoints:
        raise TypeError("viewpoints must be a non-empty dict {viewpoint name: [reference statements]}")
    statements, labels = [], []
    for i, (name, refs) in enumerate(viewpoints.items()):
        refs = validation.strings(f"viewpoints[{name!r}]", refs)
        statements += refs
        labels += [i] * len(refs)
    emb = embedder.encode(answers + statements, convert_to_tensor=True, normalize_embeddings=True).float().cpu()
    return overton_coverage(emb[: len(answers)], emb[len(answers):], torch.tensor(labels), threshold)


def load_pluralism() -> dict:
    """The course's pluralism items (``labkit/data/pluralism.json``; see ``pluralism.md``)."""
    return json.loads((DATA_DIR / "pluralism.json").read_text())
