"""Diverse preferences and pluralistic alignment (notebook 13).

* A mixture of Bradley-Terry annotator groups with planted rewards (:func:`simulate_preferences`), one
  reward for everyone (:func:`fit_bt`) and EM over groups (:func:`e_step`, :func:`em_rewards`) as in
  MaxMin-RLHF (Chakraborty et al., 2024).
* KL-regularised policies on a discrete candidate set: the utilitarian policy and the MaxMin policy
  (:func:`tilted_policy`, :func:`utilitarian_policy`, :func:`maxmin_policy`, :func:`maxmin_grid`).
* Welfare functions (:func:`welfare`) and the three notions of pluralism of Sorensen et al. (2024):
  Overton coverage (:func:`overton_coverage`), steerability (the model's answer
  distribution, ``lm.option_logprobs(..., chat=True, normalize=True)``) and distributional
  pluralism (:func:`js_distance`).

Everything takes and returns tensors (float64 for the small synthetic problems) and plain values.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

DATA_DIR = Path(__file__).resolve().parent / "data"

__all__ = [
    "simulate_preferences", "all_pairs", "fit_bt", "pair_loglik", "e_step", "em_rewards", "EMResult",
    "match_groups", "group_accuracy", "reward_cosine", "tilted_policy", "kl", "policy_report",
    "utilitarian_policy", "maxmin_policy", "maxmin_objective", "maxmin_grid", "welfare", "js_distance",
    "check_distribution", "overton_coverage", "load_pluralism",
]


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
    sizes = [int(s) for s in group_sizes]
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"group_sizes must be positive integers, got {group_sizes!r}")
    if not -1 <= cosine <= 1:
        raise ValueError(f"cosine must be in [-1, 1], got {cosine}")
    if n_responses < 2 or dim < 2:
        raise ValueError("need at least 2 responses and 2 feature dimensions")
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
    return torch.combinations(torch.arange(n), 2)


def _check_pairs(features, pairs, labels=None):
    features = torch.as_tensor(features)
    pairs = torch.as_tensor(pairs)
    if features.dim() != 2:
        raise ValueError(f"features must be [n_responses, dim], got shape {tuple(features.shape)}")
    if pairs.dim() != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must be [n_pairs, 2] indices, got shape {tuple(pairs.shape)}")
    if pairs.numel() and (pairs.min() < 0 or pairs.max() >= len(features)):
        raise ValueError("pairs index responses that do not exist")
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.float64)
        if labels.shape != (len(pairs),):
            raise ValueError(f"labels must be one per pair ({len(pairs)}), got shape {tuple(labels.shape)}")
        if ((labels != 0) & (labels != 1)).any():
            raise ValueError("labels must be 1 (first response preferred) or 0 (second preferred)")
    return features.double(), pairs.long(), labels


def fit_bt(features, pairs, labels, sample_weight=None, l2: float = 1e-3) -> torch.Tensor:
    """A linear Bradley-Terry reward r(y) = w·x_y by maximum likelihood (Bradley & Terry, 1952).

    Minimises −Σ_z s_z log σ(w·(x_i − x_j)) − (1 − s_z)… , the logistic loss on feature differences,
    weighted by ``sample_weight`` (EM's responsibilities), plus (l2/2)‖w‖². Solved by scikit-learn's
    ``LogisticRegression`` without intercept (a reward is defined up to a constant). Returns w [dim].
    """
    from sklearn.linear_model import LogisticRegression

    X, P, y = _check_pairs(features, pairs, labels)
    D = (X[P[:, 0]] - X[P[:, 1]]).numpy()
    # symmetrise (both orders) so the two classes always exist and the fit has no side preference
    D2 = np.concatenate([D, -D])
    y2 = np.concatenate([y.numpy(), 1 - y.numpy()])
    sw = None if sample_weight is None else np.tile(np.asarray(torch.as_tensor(sample_weight, dtype=torch.float64)), 2)
    clf = LogisticRegression(fit_intercept=False, C=1.0 / (2 * l2), max_iter=1000)
    clf.fit(D2, y2, sample_weight=sw)
    return torch.tensor(clf.coef_[0], dtype=torch.float64)


def pair_loglik(weights, features, pairs, labels) -> torch.Tensor:
    """log p(label_z | w_u) = log σ(±w_u·(x_i − x_j)) for every pair z and reward u: shape [N, K]."""
    X, P, y = _check_pairs(features, pairs, labels)
    W = torch.as_tensor(weights, dtype=torch.float64).reshape(-1, X.shape[1])
    margin = (X[P[:, 0]] - X[P[:, 1]]) @ W.T  # [N, K]
    sign = (2 * y - 1)[:, None]
    return torch.nn.functional.logsigmoid(sign * margin)


def e_step(loglik: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """EM's E-step: responsibilities γ_{a,u} = η_u exp(ℓ_{a,u}) / Σ_v η_v exp(ℓ_{a,v}).

    ``loglik`` [A, K] holds ℓ_{a,u} = Σ_{z by a} log σ(r_u(y_w) − r_u(y_l)), the log-likelihood of all of
    annotator a's labels under group u's reward; ``eta`` [K] the mixing weights. Computed with a
    log-sum-exp (log-likelihoods of hundreds of comparisons underflow exp()). Rows of the result sum to 1.
    """
    loglik = torch.as_tensor(loglik, dtype=torch.float64)
    eta = torch.as_tensor(eta, dtype=torch.float64)
    return torch.softmax(loglik + torch.log(eta), dim=-1)


@dataclass
class EMResult:
    """What :func:`em_rewards` learned: per-group rewards, shares, responsibilities, log-likelihoods."""

    weights: torch.Tensor  # [K, dim]
    eta: torch.Tensor  # [K]
    resp: torch.Tensor  # [A, K]
    loglik: list  # the mixture log-likelihood after each iteration

    @property
    def assignment(self) -> torch.Tensor:
        return self.resp.argmax(-1)


def em_rewards(features, pairs, labels, annotator, k: int, n_iter: int = 25, hard: bool = False,
               n_restarts: int = 3, l2: float = 1e-3, seed: int = 0) -> EMResult:
    """EM for a mixture of Bradley-Terry rewards over annotators (MaxMin-RLHF, Chakraborty et al. 2024).

    L(φ) = Σ_a log Σ_u η_u Π_{z by a} σ(r_φu(y_w) − r_φu(y_l)). E-step: :func:`e_step` gives γ_{a,u};
    with ``hard=True`` each annotator goes wholly to its most likely group (hard EM, as in the paper's
    clustering). M-step: η_u = mean_a γ_{a,u}; w_u = :func:`fit_bt` with each comparison weighted by its
    annotator's γ_{a,u}. Starts from random responsibilities; keeps the best of ``n_restarts`` runs.
    """
    X, P, y = _check_pairs(features, pairs, labels)
    annotator = torch.as_tensor(annotator, dtype=torch.long)
    if annotator.shape != (len(P),):
        raise ValueError("annotator must give one annotator id per pair")
    A = int(annotator.max()) + 1
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (the number of groups) must be a positive integer, got {k!r}")
    if k > A:
        raise ValueError(f"k = {k} groups but only {A} annotators: every group needs an annotator; use k <= {A}")
    onehot = torch.nn.functional.one_hot(annotator, A).double()  # [N, A]
    best = None
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_restarts):
        resp = -torch.log(torch.rand(A, k, generator=g, dtype=torch.float64))  # Dirichlet(1, …, 1) draws
        resp = resp / resp.sum(-1, keepdim=True)
        history = []
        for _ in range(n_iter):
            if hard:
                resp = torch.nn.functional.one_hot(resp.argmax(-1), k).double()
            eta = resp.mean(0).clamp_min(1e-12)
            W = torch.stack([fit_bt(X, P, y, sample_weight=resp[annotator, u] + 1e-9, l2=l2) for u in range(k)])
            ll = onehot.T @ pair_loglik(W, X, P, y)  # [A, K]
            history.append(float(torch.logsumexp(ll + torch.log(eta), -1).sum()))
            resp = e_step(ll, eta)
        if hard:
            resp = torch.nn.functional.one_hot(resp.argmax(-1), k).double()
        if best is None or history[-1] > best.loglik[-1]:
            best = EMResult(W, resp.mean(0), resp, history)
    return best


def match_groups(true_groups, assignment, k: int | None = None) -> torch.Tensor:
    """The permutation of learned group ids that best matches the true ids (Hungarian algorithm):
    ``perm[u]`` is the learned group that plays true group u."""
    from scipy.optimize import linear_sum_assignment

    t = torch.as_tensor(true_groups).long()
    a = torch.as_tensor(assignment).long()
    k = k or int(max(t.max(), a.max())) + 1
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
    X = torch.as_tensor(features, dtype=torch.float64)
    T = torch.as_tensor(true_weights, dtype=torch.float64)
    W = torch.as_tensor(weights, dtype=torch.float64)
    W = W.expand_as(T) if W.dim() == 1 else W
    if W.shape != T.shape:
        raise ValueError(f"weights {tuple(W.shape)} must be [dim] or match true_weights {tuple(T.shape)}")
    P = all_pairs(len(X)) if pairs is None else torch.as_tensor(pairs).long()
    D = X[P[:, 0]] - X[P[:, 1]]
    return ((D @ W.T > 0) == (D @ T.T > 0)).double().mean(0)


def reward_cosine(weights, true_weights) -> torch.Tensor:
    """Cosine between learned and true reward directions, row by row: [K]."""
    W = torch.as_tensor(weights, dtype=torch.float64)
    T = torch.as_tensor(true_weights, dtype=torch.float64)
    return torch.nn.functional.cosine_similarity(W.expand_as(T), T, dim=-1)


# --------------------------------------------------------------------------------------------------
# Policies on a candidate set


def check_distribution(p, name: str = "distribution", atol: float = 1e-6) -> torch.Tensor:
    """Return ``p`` as float64 after checking it is a probability vector (last axis): ≥ 0, sums to 1."""
    p = torch.as_tensor(p, dtype=torch.float64)
    if p.dim() == 0 or p.shape[-1] == 0:
        raise ValueError(f"{name} must be a non-empty vector of probabilities")
    if torch.isnan(p).any() or (p < 0).any():
        raise ValueError(f"{name} has negative or NaN entries: probabilities must be >= 0")
    s = p.sum(-1)
    if not torch.allclose(s, torch.ones_like(s), atol=atol):
        raise ValueError(f"{name} sums to {s.tolist()}, not 1: normalise it first (p / p.sum())")
    return p


def tilted_policy(ref, reward, beta: float) -> torch.Tensor:
    """The KL-regularised optimum π(y) = π_ref(y) exp(r(y)/β) / Z for J(π) = E_π[r] − β KL(π ‖ π_ref)."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    ref = check_distribution(ref, "ref")
    reward = torch.as_tensor(reward, dtype=torch.float64)
    return torch.softmax(torch.log(ref) + reward / beta, dim=-1)


def kl(p, q) -> torch.Tensor:
    """D_KL(p ‖ q) = Σ p log(p/q) in nats (0 log 0 = 0)."""
    p = torch.as_tensor(p, dtype=torch.float64)
    q = torch.as_tensor(q, dtype=torch.float64)
    return torch.special.xlogy(p, p).sum(-1) - torch.special.xlogy(p, q).sum(-1)


def utilitarian_policy(rewards, ref, beta: float, weights=None) -> torch.Tensor:
    """argmax_π Σ_u η_u E_π[r_u] − β KL(π ‖ π_ref) = the tilted policy for the average reward Σ_u η_u r_u."""
    R = torch.as_tensor(rewards, dtype=torch.float64)
    eta = torch.full((R.shape[0],), 1.0 / R.shape[0], dtype=torch.float64) if weights is None else check_distribution(weights, "weights")
    return tilted_policy(ref, eta @ R, beta)


def maxmin_objective(policy, rewards, ref, beta: float) -> torch.Tensor:
    """min_u E_π[r_u] − β KL(π ‖ π_ref) for one policy [n] or a batch of policies [..., n]."""
    R = torch.as_tensor(rewards, dtype=torch.float64)
    pi = torch.as_tensor(policy, dtype=torch.float64)
    return (pi @ R.T).min(-1).values - beta * kl(pi, torch.as_tensor(ref, dtype=torch.float64))


def maxmin_policy(rewards, ref, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The MaxMin policy argmax_π min_u E_π[r_u] − β KL(π ‖ π_ref) (Chakraborty et al., 2024), exactly.

    The objective is concave in π and linear in the group mixture λ ∈ Δ_K, so (minimax theorem)
    max_π min_λ Σ_u λ_u E_π[r_u] − β KL = min_λ β log Σ_y π_ref(y) exp(λ·r(y)/β), a smooth convex problem
    in K numbers solved by scipy (SLSQP on the simplex); the policy is the tilted policy for λ·r.
    Returns (policy [n], λ [K]).
    """
    from scipy.optimize import minimize

    R = torch.as_tensor(rewards, dtype=torch.float64)
    ref = check_distribution(ref, "ref")
    if R.dim() != 2 or R.shape[1] != ref.shape[0]:
        raise ValueError(f"rewards must be [K groups, n candidates] with n = {ref.shape[0]}, got {tuple(R.shape)}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
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


def maxmin_grid(rewards, ref, beta: float, n_grid: int = 101) -> torch.Tensor:
    """MaxMin for two groups by search: among the tilted policies π_λ ∝ π_ref exp((λ r_0 + (1−λ) r_1)/β),
    λ on a grid of ``n_grid`` points in [0, 1], return the one with the largest min_u E[r_u] − β KL."""
    R = torch.as_tensor(rewards, dtype=torch.float64)
    lams = torch.linspace(0, 1, n_grid, dtype=torch.float64)
    mix = lams[:, None] * R[0] + (1 - lams[:, None]) * R[1]
    pis = tilted_policy(ref, mix, beta)
    return pis[maxmin_objective(pis, R, ref, beta).argmax()]


def policy_report(policy, rewards, ref) -> dict:
    """Each group's expected reward E_π[r_u] and the policy's KL to the reference."""
    pi = torch.as_tensor(policy, dtype=torch.float64)
    return {"expected_reward": pi @ torch.as_tensor(rewards, dtype=torch.float64).T, "kl": kl(pi, ref)}


# --------------------------------------------------------------------------------------------------
# Welfare and distances


def welfare(utilities, kind: str = "utilitarian", weights=None) -> torch.Tensor:
    """Social welfare of group utilities u [..., K] (last axis: groups), weights η (default equal):

    utilitarian W = Σ_u η_u u_u;  Nash W = Σ_u η_u log u_u (= log of the weighted geometric mean; needs
    u > 0);  egalitarian (Rawlsian) W = min_u u_u.
    """
    U = torch.as_tensor(utilities, dtype=torch.float64)
    K = U.shape[-1]
    eta = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else check_distribution(weights, "weights")
    if kind == "utilitarian":
        return U @ eta
    if kind == "nash":
        if (U <= 0).any():
            raise ValueError("Nash welfare needs strictly positive utilities (it takes their log): shift or rescale them")
        return torch.log(U) @ eta
    if kind == "egalitarian":
        return U.min(-1).values
    raise ValueError(f"kind must be 'utilitarian', 'nash' or 'egalitarian', not {kind!r}")


def js_distance(p, q, base: float = 2.0) -> torch.Tensor:
    """Jensen-Shannon distance √JSD(p, q), JSD = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = ½(p + q), logs in ``base``
    (base 2: between 0 and 1). The measure of distributional pluralism in Sorensen et al. (2024)."""
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
    A = torch.nn.functional.normalize(torch.as_tensor(answer_emb, dtype=torch.float32), dim=-1)
    V = torch.nn.functional.normalize(torch.as_tensor(viewpoint_emb, dtype=torch.float32), dim=-1)
    labels = torch.as_tensor(viewpoint_labels).long()
    if labels.shape != (len(V),):
        raise ValueError("viewpoint_labels must give one viewpoint id per reference statement")
    k = int(labels.max()) + 1
    cent = torch.nn.functional.normalize(torch.stack([V[labels == u].mean(0) for u in range(k)]), dim=-1)
    sim = A @ cent.T
    best, which = sim.max(-1)
    which = torch.where(best >= threshold, which, torch.full_like(which, -1))
    covered = sorted({int(w) for w in which if w >= 0})
    return {"coverage": len(covered) / k, "covered": covered, "assignment": which, "similarity": sim}


def load_pluralism() -> dict:
    """The course's pluralism items (``labkit/data/pluralism.json``; see ``pluralism.md``)."""
    return json.loads((DATA_DIR / "pluralism.json").read_text())
