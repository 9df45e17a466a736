"""Concepts: concept bottleneck models, test-time intervention, TCAV, label-free CBMs (notebook 03).

* **Concept bottleneck models** (Koh et al., ICML 2020, "Concept bottleneck models"): x → ĉ = g(x) → ŷ = f(ĉ).
  *Independent*: g fits the concepts, f fits the label from the **true** concepts; *sequential*: f fits the
  label from g's **predicted** concepts; *joint*: min L_y(f(g(x)), y) + λ·Σ_j L_c(g_j(x), c_j).
  *Test-time intervention*: replace some predicted concepts by their true values and predict again.
* **TCAV** (Kim et al., ICML 2018, "Interpretability beyond feature attribution"): a concept activation
  vector (CAV) v_C is the normal of a linear classifier separating a layer's activations h(x) on concept
  examples from those on random examples; the conceptual sensitivity is S_C,k(x) = ∇_h logit_k(h(x))·v_C,
  the TCAV score is the fraction of class-k inputs with S > 0, and a concept is *significant* when its
  scores over many random counterpart sets differ from random-vs-random scores (two-sided t-test).
  We use ``captum.concept`` for activations, CAVs and scores. Kim et al. (and the lecture) differentiate the
  class *logit* z_k; our networks output log p_k = z_k − log Σ_j exp z_j, whose gradient
  ∇log p_k = ∇z_k − Σ_j p_j ∇z_j drops what raises every logit at once (:func:`output_view` gives both).
* **Label-free CBMs** (Oikarinen et al., ICLR 2023): no concept labels; concept activations are similarities
  between an input's embedding and the embedding of each concept's text (CLIP there, the sentence embedder
  here), followed by a sparse linear layer.
"""

from __future__ import annotations

import tempfile
import warnings

import numpy as np
import torch
from torch import nn

from labkit.runtime import get_device
from labkit.validation import integer as _integer, number as _number, tensor as _tensor

__all__ = [
    "tcav_test",
    "CONCEPT_NAMES",
    "templates",
    "label_rule",
    "planted_concepts",
    "CBM",
    "train_cbm",
    "train_blackbox",
    "intervene",
    "intervention_curve",
    "cav",
    "directional_derivatives",
    "tcav_score",
    "tcav_significance",
    "cav_classifier",
    "animal_texts",
    "ANIMAL_CONCEPTS",
    "ANIMAL_DESCRIPTIONS",
    "label_free_cbm",
    "output_view",
]

# --------------------------------------------------------------------------------------------------
# Argument checks: every public function refuses bad input with an error that names the argument.


def _binary(name: str, x, n: int | None = None, width: int | None = None) -> torch.Tensor:
    """A tensor of 0/1 values (labels or concepts; probabilities in [0, 1] are allowed), checked against a shape."""
    x = _tensor(name, x, floating=False)
    if x.is_complex() or ((x < 0) | (x > 1)).any():
        raise ValueError(f"{name} must hold values in [0, 1] (0 = absent, 1 = present)")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name} must have one row per input ({n}), got {x.shape[0]}")
    if width is not None and (x.dim() != 2 or x.shape[1] != width):
        raise ValueError(f"{name} must have shape [n, {width}], got {tuple(x.shape)}")
    return x


SIDE = 10
#: The eight planted concepts of the synthetic images (10×10 pixels).
CONCEPT_NAMES = ["top bar", "left bar", "diagonal", "centre square", "bottom bar", "right bar", "anti-diagonal",
                 "corner dot"]


def templates() -> torch.Tensor:
    """The 8 concept templates, [8, 10, 10] with values in {0, 1}: a rendered image adds the templates of the
    concepts that are present."""
    T = torch.zeros(8, SIDE, SIDE)
    T[0, 1, 2:8] = 1
    T[1, 2:8, 1] = 1
    T[2, range(2, 8), range(2, 8)] = 1
    T[3, 4:6, 4:6] = 1
    T[4, 8, 2:8] = 1
    T[5, 2:8, 8] = 1
    T[6, range(2, 8), range(7, 1, -1)] = 1
    T[7, 0:2, 8:10] = 1
    return T


def label_rule(C: torch.Tensor) -> torch.Tensor:
    """The planted label: y = 1 iff c₀ + c₁ + c₂ − c₃ ≥ 2 (top bar, left bar, diagonal count for; centre square
    against). Concepts 4–7 are irrelevant to the label."""
    C = _binary("C", C)
    if C.shape[-1] != 8:
        raise ValueError(f"expected 8 concepts in the last axis, got {C.shape[-1]}")
    return ((C[..., 0] + C[..., 1] + C[..., 2] - C[..., 3]) >= 2).float()


def planted_concepts(n: int, noise: float = 0.8, seed: int = 0, p: float = 0.5, device=None,
                     force: dict[int, int] | None = None) -> dict:
    """Seeded synthetic data with planted concepts: c ~ Bernoulli(p)⁸, x = Σ_j c_j·a_j·T_j + ε (flattened 10×10),
    with per-example stroke intensities a_j ~ U(0.5, 1.5) and pixel noise ε ~ N(0, noise²); y = label_rule(c).

    ``force={j: 0 or 1}`` fixes concept j (to build concept example sets for TCAV). Returns X [n, 100],
    C [n, 8], y [n].
    """
    if _integer("n", n) < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    if _number("noise", noise) < 0:
        raise ValueError(f"noise must be ≥ 0, got {noise}")
    p = _number("p", p, lo=0, hi=1)
    if force is not None and not isinstance(force, dict):
        raise TypeError(f"force must be a dict {{concept index: 0 or 1}}, got {type(force).__name__}")
    for j, v in (force or {}).items():
        _integer("a concept index in force", j, lo=0, hi=7)
        if isinstance(v, bool) or v not in (0, 1):
            raise ValueError(f"force[{j}] must be 0 or 1 (concept absent or present), got {v!r}")
    g = torch.Generator().manual_seed(_integer("seed", seed))
    C = (torch.rand(n, 8, generator=g) < p).float()
    for j, v in (force or {}).items():
        C[:, j] = float(v)
    amp = 0.5 + torch.rand(n, 8, generator=g)
    X = torch.einsum("nk,kd->nd", C * amp, templates().flatten(1)) + noise * torch.randn(n, SIDE * SIDE, generator=g)
    dev = get_device(device)
    return {"X": X.to(dev), "C": C.to(dev), "y": label_rule(C).to(dev)}


# --------------------------------------------------------------------------------------------------
# Concept bottleneck models


class CBM(nn.Module):
    """x → concept logits g(x) [n, k] → concept probabilities σ(g(x)) → label logit f(·) [n]."""

    def __init__(self, d_in: int = 100, n_concepts: int = 8, hidden: int = 64):
        super().__init__()
        d_in, n_concepts = _integer("d_in", d_in, lo=1), _integer("n_concepts", n_concepts, lo=1)
        hidden = _integer("hidden", hidden, lo=1)
        self.d_in, self.n_concepts = d_in, n_concepts
        self.g = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, n_concepts))
        self.f = nn.Linear(n_concepts, 1)

    def concept_probs(self, x: torch.Tensor) -> torch.Tensor:
        """ĉ = σ(g(x)) for inputs ``x`` [n, d_in]: the predicted concept probabilities [n, k]."""
        x = _tensor("x", x, dims=2)
        if x.shape[1] != self.d_in:
            raise ValueError(f"x must have {self.d_in} features per row, got shape {tuple(x.shape)}")
        return torch.sigmoid(self.g(x))

    def head(self, c: torch.Tensor) -> torch.Tensor:
        """The label logit f(c) for concept values ``c`` [n, k] (predicted probabilities or true 0/1 concepts)."""
        c = _tensor("c", c, dims=2)
        if c.shape[1] != self.n_concepts:
            raise ValueError(f"c must hold {self.n_concepts} concepts per row, got shape {tuple(c.shape)}")
        return self.f(c).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.concept_probs(x))


def _fit(params, loss_fn, epochs: int, lr: float):
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()


def train_cbm(X: torch.Tensor, C: torch.Tensor, y: torch.Tensor, mode: str = "joint", lam: float = 1.0,
              epochs: int = 400, lr: float = 0.01, hidden: int = 64, seed: int = 0) -> CBM:
    """Train a concept bottleneck model (Koh et al. 2020), full batch with Adam.

    mode: ``"independent"`` (g on concepts; f on the true concepts C), ``"sequential"`` (g on concepts; then f
    on g's predicted probabilities), ``"joint"`` (L_y + lam·L_c, end to end).
    """
    if mode not in ("independent", "sequential", "joint"):
        raise ValueError(f"unknown mode {mode!r}: use 'independent', 'sequential' or 'joint'")
    X = _tensor("X", X, dims=2)
    C, y = _tensor("C", C, dims=2), _tensor("y", y, dims=1)
    if not (len(X) == len(C) == len(y)):
        raise ValueError(f"X, C and y must have the same number of rows, got {len(X)}, {len(C)}, {len(y)}")
    _binary("C", C), _binary("y", y)
    lam, lr = _number("lam", lam, lo=0), _number("lr", lr, lo=0, lo_open=True)
    epochs, hidden = _integer("epochs", epochs, lo=1), _integer("hidden", hidden, lo=1)
    torch.manual_seed(_integer("seed", seed))
    model = CBM(X.shape[1], C.shape[1], hidden).to(X.device)
    bce = nn.functional.binary_cross_entropy_with_logits
    if mode == "joint":
        _fit(model.parameters(), lambda: bce(model(X), y) + lam * bce(model.g(X), C), epochs, lr)
        return model
    _fit(model.g.parameters(), lambda: bce(model.g(X), C), epochs, lr)
    # the label head is tiny (k + 1 parameters): train it longer and faster, close to its optimum
    if mode == "independent":
        _fit(model.f.parameters(), lambda: bce(model.head(C), y), 3 * epochs, 5 * lr)
    else:
        with torch.no_grad():
            c_hat = model.concept_probs(X)
        _fit(model.f.parameters(), lambda: bce(model.head(c_hat), y), 3 * epochs, 5 * lr)
    return model


class _Blackbox(nn.Module):
    """x → layer1 → layer2 → logits z = out(h₂) + (s·h₂)·1 → log-probabilities (``output="log_prob"``) or logits.

    The shift s (zero unless :func:`output_view` sets it) adds the same number to every logit, so the class
    probabilities do not depend on it; the logits, and TCAV computed on them, do.
    """

    def __init__(self, d_in: int, hidden: int, output: str = "log_prob"):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, 2)
        self.register_buffer("shift", torch.zeros(hidden))
        self.d_in, self.hidden, self.output = d_in, hidden, output

    def forward(self, x):
        h = self.layer2(self.layer1(x))
        z = self.out(h) + (h @ self.shift)[..., None]
        return z if self.output == "logit" else torch.log_softmax(z, dim=-1)


def train_blackbox(X: torch.Tensor, y: torch.Tensor, hidden: int = 32, epochs: int = 400, lr: float = 0.01,
                   seed: int = 0) -> nn.Module:
    """A standard end-to-end classifier (no bottleneck): 100 → hidden → hidden → 2 log-probabilities. Its
    layers ``layer1`` and ``layer2`` are where TCAV reads activations. (Log-probabilities, not logits: the
    gradient of log p_k points along what separates the classes, not along what raises every logit.)"""
    X = _tensor("X", X, dims=2)
    y = _binary("y", _tensor("y", y, dims=1, floating=False), n=len(X))
    hidden, epochs = _integer("hidden", hidden, lo=1), _integer("epochs", epochs, lo=1)
    lr = _number("lr", lr, lo=0, lo_open=True)
    torch.manual_seed(_integer("seed", seed))
    model = _Blackbox(X.shape[1], hidden).to(X.device)
    _fit(model.parameters(), lambda: nn.functional.nll_loss(model(X), y.long()), epochs, lr)
    return model


def intervene(concept_probs: torch.Tensor, true_concepts: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Test-time intervention: ĉ with the entries where ``mask`` is True replaced by the true concepts.

    concept_probs, true_concepts: [n, k]; mask: bool [n, k] or [k] (same concepts for every input).
    Returns a new tensor; the inputs are not modified.
    """
    concept_probs = _tensor("concept_probs", concept_probs, dims=2)
    true_concepts = _tensor("true_concepts", true_concepts, floating=False)
    if concept_probs.shape != true_concepts.shape:
        raise ValueError(f"predicted and true concepts must have the same shape, got {tuple(concept_probs.shape)} "
                         f"and {tuple(true_concepts.shape)}")
    _binary("concept_probs", concept_probs), _binary("true_concepts", true_concepts)
    if not isinstance(mask, (torch.Tensor, np.ndarray, list, tuple)):
        raise TypeError(f"mask must be a bool tensor of shape [n, k] or [k], got {type(mask).__name__}")
    mask = torch.as_tensor(mask)
    if mask.is_floating_point() and not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask must be boolean (True = replace this concept by its true value)")
    if mask.shape not in (concept_probs.shape, concept_probs.shape[1:]):
        raise ValueError(f"mask must have shape {tuple(concept_probs.shape)} or {tuple(concept_probs.shape[1:])}, "
                         f"got {tuple(mask.shape)}")
    mask = mask.to(dtype=torch.bool, device=concept_probs.device)
    return torch.where(mask.expand_as(concept_probs), true_concepts.to(concept_probs), concept_probs)


def intervention_curve(model: CBM, X: torch.Tensor, C: torch.Tensor, y: torch.Tensor, n_orders: int = 5,
                       seed: int = 0) -> torch.Tensor:
    """Task accuracy after correcting k = 0 … K concepts, [K + 1]: for each input a random order of concepts
    (``n_orders`` orders, averaged); the first k in the order are replaced by their true values."""
    if not isinstance(model, CBM):
        raise TypeError(f"model must be a CBM (from train_cbm), got {type(model).__name__}")
    X = _tensor("X", X, dims=2)
    C = _binary("C", C, n=len(X), width=model.n_concepts)
    y = _binary("y", y, n=len(X))
    n_orders = _integer("n_orders", n_orders, lo=1)
    g = torch.Generator().manual_seed(_integer("seed", seed))
    n, K = C.shape
    with torch.no_grad():
        probs = model.concept_probs(X)
        acc = torch.zeros(K + 1)
        for _ in range(n_orders):
            rank = torch.rand(n, K, generator=g).argsort(1).argsort(1).to(X.device)  # position of each concept
            for k in range(K + 1):
                pred = model.head(intervene(probs, C, rank < k)) > 0
                acc[k] += (pred.float() == y).float().mean().cpu() / n_orders
    return acc


# --------------------------------------------------------------------------------------------------
# TCAV


def cav(acts_concept: torch.Tensor, acts_random: torch.Tensor, C: float = 0.01) -> torch.Tensor:
    """Concept activation vector (Kim et al. 2018): the unit normal w/‖w‖ of an L2-regularised logistic
    regression (scikit-learn, lbfgs, inverse regularisation ``C``) separating concept activations (label 1)
    from random activations (label 0). Points *towards* the concept."""
    from sklearn.linear_model import LogisticRegression

    acts_concept, acts_random = _tensor("acts_concept", acts_concept), _tensor("acts_random", acts_random)
    if _number("C", C) <= 0:
        raise ValueError(f"C (the inverse regularisation strength) must be > 0, got {C}")
    a, r = acts_concept.reshape(len(acts_concept), -1), acts_random.reshape(len(acts_random), -1)
    if a.shape[1] != r.shape[1]:
        raise ValueError(f"concept and random activations must have the same width, got {a.shape[1]} and {r.shape[1]}")
    if len(a) < 2 or len(r) < 2:
        raise ValueError("need at least 2 concept and 2 random examples to fit a CAV (use dozens)")
    Z = torch.cat([a, r]).detach().cpu().double().numpy()
    lab = np.r_[np.ones(len(a)), np.zeros(len(r))]
    w = LogisticRegression(C=C, max_iter=2000).fit(Z, lab).coef_[0]
    if not np.linalg.norm(w) > 0:
        raise ValueError("the concept and random activations cannot be told apart (the classifier's normal is 0): "
                         "no CAV exists; are the two example sets identical or constant?")
    return torch.tensor(w / np.linalg.norm(w), dtype=acts_concept.dtype, device=acts_concept.device)


def directional_derivatives(grads: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Conceptual sensitivity S(x) = ∇_h logit(h(x)) · v/‖v‖ for each input; grads: [n, d] (or [n, ...]).

    (∇_h of whatever output the gradients were taken of: the logit z_k in Kim et al., log p_k in this course.)
    A zero vector has no direction and is refused.
    """
    grads, v = _tensor("grads", grads), _tensor("v", v)
    if grads.dim() < 2:
        raise ValueError(f"grads must hold one gradient per input ([n, d]), got shape {tuple(grads.shape)}")
    grads = grads.reshape(len(grads), -1)
    if grads.shape[1] != v.numel():
        raise ValueError(f"mismatched shapes: gradients have width {grads.shape[1]}, the CAV {v.numel()}")
    if not v.norm() > 0:
        raise ValueError("the CAV v is the zero vector: it has no direction, so no conceptual sensitivity (refit it)")
    return grads @ (v.flatten() / v.norm())


def tcav_score(grads: torch.Tensor, v: torch.Tensor) -> float:
    """TCAV score: the fraction of inputs whose conceptual sensitivity S = ∇h·v is positive.

    A zero CAV (or a NaN in either argument) raises instead of returning a score of 0.
    """
    return float((directional_derivatives(grads, v) > 0).float().mean())


def tcav_test(grads: torch.Tensor, acts_concept: torch.Tensor, acts_random: list[torch.Tensor],
              alpha: float = 0.05) -> dict:
    """TCAV with the random-concept significance test, from gradients and activations (Kim et al. 2018).

    ``grads`` [n, d]: ∇_h of the explained output at the layer, one row per class input; ``acts_concept`` [a, d]:
    the layer's activations of the concept examples; ``acts_random``: the activations of m + 1 random sets
    R₀ … R_m. For i = 1 … m: the CAV v_i of [C, R_i] (:func:`cav`) and the score
    TCAV_i = mean_x 1[grads(x) · v_i > 0]; the null: the score of the CAV of [R_{i−1}, R_i]. A two-sided Welch
    t-test (``scipy.stats.ttest_ind(equal_var=False)``) compares the m concept scores with the m null scores
    (both lists constant: p = 0 if their means differ, else 1). The same computation as
    :func:`tcav_significance` (which goes through ``captum.concept.TCAV`` from a model), here from tensors.
    Returns ``scores``, ``null`` (lists of m floats), ``mean``, ``p_value``, ``significant`` (p < alpha).
    """
    from scipy.stats import ttest_ind

    grads = _tensor("grads", grads)
    if grads.dim() != 2:
        raise ValueError(f"grads must be [n, d] (one gradient per class input), got shape {tuple(grads.shape)}")
    acts_concept = _tensor("acts_concept", acts_concept, dims=2)
    if not isinstance(acts_random, (list, tuple)):
        raise TypeError(f"acts_random must be a list of [r, d] activation tensors, got {type(acts_random).__name__}")
    if len(acts_random) < 3:
        raise ValueError(f"the significance test needs at least 3 random sets (R₀ and two counterparts); got "
                         f"{len(acts_random)}. Use 10 or more.")
    acts_random = [_tensor(f"acts_random[{i}]", r, dims=2) for i, r in enumerate(acts_random)]
    for name, a in [("acts_concept", acts_concept)] + [(f"acts_random[{i}]", r) for i, r in enumerate(acts_random)]:
        if a.shape[1] != grads.shape[1]:
            raise ValueError(f"{name} has width {a.shape[1]}, the gradients {grads.shape[1]}: use the same layer")
    alpha = _number("alpha", alpha, lo=0, hi=1, lo_open=True, hi_open=True)

    def score(a, r):
        return float((directional_derivatives(grads, cav(a, r).to(grads.dtype)) > 0).float().mean())

    scores = [score(acts_concept, acts_random[i]) for i in range(1, len(acts_random))]
    null = [score(acts_random[i - 1], acts_random[i]) for i in range(1, len(acts_random))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_ind(scores, null, equal_var=False).pvalue)
    if np.isnan(p):
        p = 0.0 if np.mean(scores) != np.mean(null) else 1.0
    return {"scores": scores, "null": null, "mean": float(np.mean(scores)), "p_value": p, "significant": p < alpha}


def cav_classifier():
    """A ``captum.concept`` classifier whose CAV is :func:`cav` (logistic regression on all examples).

    captum's default (an SGD classifier on a random two-thirds split) gives noisy CAVs on small concept sets.
    """
    from captum.concept._utils.classifier import Classifier

    class LogisticCAV(Classifier):
        def __init__(self):
            self._w, self._classes = None, []

        def train_and_eval(self, dataloader, **kwargs):
            xs, ys = zip(*dataloader)
            x, lab = torch.cat(xs), torch.cat(ys)
            self._classes = sorted(int(v) for v in lab.unique())
            if len(self._classes) != 2:
                raise ValueError("TCAV compares exactly two concept sets per experiment")
            v = cav(x[lab == self._classes[0]], x[lab == self._classes[1]])  # points towards the first class
            self._w = torch.stack([v, -v]).cpu()
            pred = torch.where((x.cpu() @ v.cpu()) > (x.cpu() @ v.cpu()).median(), self._classes[0], self._classes[1])
            return {"accs": (pred == lab.cpu()).float().mean()}

        def weights(self):
            return self._w

        def classes(self):
            return self._classes

    return LogisticCAV()


def tcav_significance(model: nn.Module, layer: str, class_inputs: torch.Tensor, concept_examples: dict[str, torch.Tensor],
                      random_sets: list[torch.Tensor], target: int, alpha: float = 0.05, batch_size: int = 64) -> dict:
    """TCAV with significance testing, through ``captum.concept.TCAV`` (Kim et al. 2018).

    For every concept C and random sets R₀ … R_m: TCAV scores of [C, R_i] (i = 1 … m) and, as the null,
    of [R_{i−1}, R_i]; a two-sided Welch t-test (``scipy.stats.ttest_ind``) compares the two lists. A concept is
    significant when p < alpha. Returns, per concept, ``scores`` (its m TCAV scores), ``null`` (the m
    random-vs-random scores), ``mean``, ``p_value``, ``significant``.
    """
    from captum.concept import TCAV, Concept
    from scipy.stats import ttest_ind
    from torch.utils.data import DataLoader

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(layer, str) or layer not in dict(model.named_modules()):
        raise ValueError(f"layer must name a module of the model, got {layer!r}; modules: "
                         f"{[n for n, _ in model.named_modules() if n][:12]}")
    class_inputs = _tensor("class_inputs", class_inputs)
    if not isinstance(concept_examples, dict) or not concept_examples:
        raise TypeError("concept_examples must be a non-empty dict {concept name: example inputs}")
    if not isinstance(random_sets, (list, tuple)):
        raise TypeError(f"random_sets must be a list of example tensors, got {type(random_sets).__name__}")
    for name, ex in list(concept_examples.items()) + [(f"random {i}", r) for i, r in enumerate(random_sets)]:
        _tensor(f"the examples of {name!r}", ex)
        if ex.shape[1:] != class_inputs.shape[1:]:
            raise ValueError(f"the examples of {name!r} have shape {tuple(ex.shape)}; inputs of the model have "
                             f"shape [n, {', '.join(map(str, class_inputs.shape[1:]))}]")
    with torch.no_grad():
        n_out = model(class_inputs[:1].to(next(model.parameters()).device)).shape[-1]
    target = _integer("target", target, lo=0, hi=n_out - 1)
    alpha = _number("alpha", alpha, lo=0, hi=1, lo_open=True, hi_open=True)
    batch_size = _integer("batch_size", batch_size, lo=1)
    if len(random_sets) < 3:
        raise ValueError(f"a significance test needs several random concept sets; got {len(random_sets)}. "
                         "Use at least 10 (Kim et al. use up to 500).")
    for name, ex in list(concept_examples.items()) + [(f"random {i}", r) for i, r in enumerate(random_sets)]:
        if len(ex) < 10:
            raise ValueError(f"concept set {name!r} has only {len(ex)} examples: too few to fit a CAV and test "
                             "its significance. Use at least 10 (dozens are better).")
    dev = next(model.parameters()).device
    mk = lambda i, name, t: Concept(i, name, DataLoader(t.to(dev), batch_size=batch_size))  # noqa: E731
    randoms = [mk(100 + i, f"random_{i}", r) for i, r in enumerate(random_sets)]
    tcav = TCAV(model, layers=[layer], classifier=cav_classifier(), save_path=tempfile.mkdtemp(prefix="labkit-tcav-"))
    # the null: random-vs-random CAVs on disjoint consecutive pairs (R₀,R₁), (R₁,R₂), …, so no one random
    # set's quirks enter every null experiment
    null_sets = [[randoms[i], randoms[i + 1]] for i in range(len(randoms) - 1)]
    out = {}
    null = tcav.interpret(class_inputs.to(dev), null_sets, target=target)
    null_scores = [float(null[f"{s[0].id}-{s[1].id}"][layer]["sign_count"][0]) for s in null_sets]
    for i, (name, ex) in enumerate(concept_examples.items()):
        c = mk(i, name, ex)
        sets = [[c, r] for r in randoms[1:]]
        res = tcav.interpret(class_inputs.to(dev), sets, target=target)
        scores = [float(res[f"{s[0].id}-{s[1].id}"][layer]["sign_count"][0]) for s in sets]
        with warnings.catch_warnings():  # identical scores (e.g. all 1.0) trigger a precision warning; handled below
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(ttest_ind(scores, null_scores, equal_var=False).pvalue)
        if np.isnan(p):  # both lists constant: significant exactly when they differ
            p = 0.0 if np.mean(scores) != np.mean(null_scores) else 1.0
        out[name] = {"scores": scores, "null": null_scores, "mean": float(np.mean(scores)), "p_value": p,
                     "significant": p < alpha}
    return out


# --------------------------------------------------------------------------------------------------
# Label-free CBM on text

ANIMAL_CONCEPTS = {
    "bird": ["has feathers", "has wings and flies", "lays eggs in a nest", "has a beak"],
    "fish": ["has fins", "lives under water", "has scales", "breathes with gills"],
    "mammal": ["has fur", "feeds its young with milk", "has four legs", "gives birth to live young"],
}
_NAMES = {"bird": ["sparrow", "robin", "eagle", "parrot", "owl", "finch", "crow", "heron"],
          "fish": ["salmon", "trout", "tuna", "carp", "cod", "perch", "pike", "herring"],
          "mammal": ["dog", "horse", "rabbit", "deer", "fox", "goat", "bear", "mouse"]}
ANIMAL_DESCRIPTIONS = {
    "bird": ["Its body is covered in soft feathers.", "It spreads its wings and flies over the field.",
             "It builds a nest and sits on its eggs.", "It picks up seeds with its beak."],
    "fish": ["It moves through the water with its fins.", "It spends its whole life under water.",
             "Its body is covered with shiny scales.", "It takes oxygen from the water through its gills."],
    "mammal": ["Its body is covered in thick fur.", "The mother feeds her young with milk.",
               "It walks on four legs.", "Its young are born alive."],
}
_FILLER = ["It is often seen in the early morning.", "People in the village know it well.",
           "It was spotted near the old bridge.", "Children like to watch it.", "It is quite common in spring."]


def animal_texts(n_per_class: int = 40, seed: int = 0) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """A seeded text task with planted concepts: short descriptions of a bird, fish or mammal (label 0/1/2).

    Each text names an animal (hidden as "the animal" half the time) and states 1–2 of its class's four
    concept facts plus a neutral sentence. Returns texts, labels [n], and the planted concept matrix [n, 12]
    (which of the 12 ``ANIMAL_CONCEPTS`` facts each text states).
    """
    n_per_class = _integer("n_per_class", n_per_class, lo=1)
    rng = np.random.default_rng(_integer("seed", seed))
    classes = list(ANIMAL_CONCEPTS)
    texts, labels, planted = [], [], []
    for _ in range(n_per_class):
        for ci, cls in enumerate(classes):
            facts = rng.choice(4, size=rng.integers(1, 3), replace=False)
            name = "The animal" if rng.random() < 0.5 else f"The {rng.choice(_NAMES[cls])}"
            parts = [ANIMAL_DESCRIPTIONS[cls][k] for k in facts] + [rng.choice(_FILLER)]
            rng.shuffle(parts)
            texts.append(f"{name} is here. " + " ".join(parts))
            labels.append(ci)
            row = np.zeros(12)
            row[ci * 4 + facts] = 1
            planted.append(row)
    return texts, torch.tensor(labels), torch.tensor(np.array(planted), dtype=torch.float32)


def label_free_cbm(text_emb: torch.Tensor, concept_emb: torch.Tensor, labels: torch.Tensor, l1_C: float = 0.5,
                   mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
    """Label-free CBM (Oikarinen et al. 2023) with a sentence embedder in place of CLIP.

    Concept activations a_j(x) = cos(E(x), E(concept_j)), standardised per concept (with ``mean``/``std``
    from the training set when given); then a sparse (ℓ1, scikit-learn ``LogisticRegression``, inverse
    strength ``l1_C``) linear layer from concepts to classes. Returns (classifier, activations, mean, std).
    """
    from sklearn.linear_model import LogisticRegression

    text_emb, concept_emb = _tensor("text_emb", text_emb, dims=2), _tensor("concept_emb", concept_emb, dims=2)
    if text_emb.shape[1] != concept_emb.shape[1]:
        raise ValueError("texts and concepts must be embedded by the same model (same width)")
    if not (text_emb.norm(dim=1) > 0).all() or not (concept_emb.norm(dim=1) > 0).all():
        raise ValueError("an embedding is the zero vector: its cosine similarity is undefined")
    l1_C = _number("l1_C", l1_C, lo=0, lo_open=True)
    k = concept_emb.shape[0]
    for name, stat in (("mean", mean), ("std", std)):
        if stat is not None and (_tensor(name, stat, dims=1).shape[0] != k):
            raise ValueError(f"{name} must hold one value per concept ({k}), got shape {tuple(stat.shape)}")
    if std is not None and not (std > 0).all():
        raise ValueError("std must be > 0 for every concept (it divides the activations)")
    if labels is not None:
        labels = _tensor("labels", labels, dims=1, floating=False)
        if len(labels) != len(text_emb) or labels.is_floating_point():
            raise ValueError(f"labels must hold one integer class per text ({len(text_emb)}), got "
                             f"{len(labels)} values of dtype {labels.dtype}")
    t = torch.nn.functional.normalize(text_emb.float(), dim=1)
    c = torch.nn.functional.normalize(concept_emb.float(), dim=1)
    A = t @ c.T
    mean = A.mean(0) if mean is None else mean
    std = A.std(0) + 1e-6 if std is None else std
    A = (A - mean) / std
    clf = None
    if labels is not None:
        clf = LogisticRegression(l1_ratio=1.0, C=l1_C, solver="saga", max_iter=5000, random_state=0)
        clf.fit(A.cpu().numpy(), labels.cpu().numpy())
    return clf, A, mean, std


def output_view(model: nn.Module, output: str = "logit", shift: torch.Tensor | None = None) -> nn.Module:
    """A copy of a :func:`train_blackbox` network that outputs ``"logit"`` z or ``"log_prob"`` log p, optionally
    with a ``shift`` s (one number per unit of ``layer2``) whose projection s·h₂ is added to *every* logit.

    Kim et al. (2018), and the lecture, compute TCAV on the class logit: S = ∇_h z_k · v. This course's networks
    output log-probabilities, S = ∇_h log p_k · v = (∇_h z_k − Σ_j p_j ∇_h z_j) · v. The two differ by a term
    shared by all classes, which the probabilities ignore: adding s·h₂ to every logit leaves p(y | x) unchanged
    (softmax is shift-invariant) but moves ∇_h z_k by s, so a logit TCAV score can change while the model's
    behaviour does not. The copy has the same layer names, so ``captum.concept`` and :func:`tcav_significance`
    read the same activations.
    """
    if not isinstance(model, _Blackbox):
        raise TypeError(f"model must be a network from train_blackbox, got {type(model).__name__}")
    if output not in ("logit", "log_prob"):
        raise ValueError(f"output must be 'logit' or 'log_prob', got {output!r}")
    view = _Blackbox(model.d_in, model.hidden, output=output).to(model.shift.device)
    view.load_state_dict(model.state_dict())
    if shift is not None:
        shift = _tensor("shift", shift, dims=1)
        if shift.shape[0] != model.hidden:
            raise ValueError(f"shift must hold one number per unit of layer2 ({model.hidden}), got {shift.shape[0]}")
        view.shift.copy_(shift.to(view.shift))
    return view.eval()
