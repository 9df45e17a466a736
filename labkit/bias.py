"""Bias in learned representations: simplicity bias, shortcuts, WEAT/SEAT, stereotypes, position bias.

Notebook 09 uses this module. Its parts:

* **Simplicity bias and shortcuts** — :func:`simplicity_data` (a linear and a 3-slab feature, each fully
  predictive, Shah et al. 2020), :func:`shortcut_digits` (a corner patch planted on sklearn's digits,
  correlated with the label in training only, Geirhos et al. 2020), :func:`train_mlp` (a small MLP trained
  full-batch, optionally with per-example weights), :func:`group_weights` (group-balanced reweighting,
  Sagawa et al. 2020 / Idrissi et al. 2022) and :func:`last_layer_retrain` (deep feature reweighting,
  Kirichenko et al. 2023).
* **WEAT and SEAT** (Caliskan et al. 2017; May et al. 2019) — :func:`embed`, :func:`association`,
  :func:`weat_effect_size`, :func:`permutation_p_value`, :func:`weat_null_effect_sizes`, :func:`weat`,
  :func:`seat_sentences`, :func:`seat_test` (SEAT with the word as the unit).
* **Bias in the language model** — answer options are scored by ``lm.option_logprobs`` (the course's one
  scoring path, :mod:`labkit.lm.model`); :func:`minimal_pair_scores` (CrowS-Pairs-style scoring, Nangia et al. 2020),
  :func:`mc_prompts`, :func:`position_bias`, :func:`label_bias`, :func:`contextual_calibration` (Zhao et al. 2021)
  and :func:`domain_context_calibration` with :func:`domain_context_texts` (Fei et al. 2023).
* Every public function checks its arguments (types, shapes, ranges, NaN/inf, empty input) and raises a
  ``TypeError``/``ValueError`` that names the argument and what is expected.
* The course's word lists, minimal pairs and questions: :func:`load_data` (``labkit/data/*.json``; their
  design is described in ``labkit/data/bias_data.md``).
"""

from __future__ import annotations

import itertools
import math
import numbers
from typing import Sequence

import torch

from labkit.datasets import load_data  # noqa: F401  (notebook 09 reads its data files as bias.load_data)
from labkit import validation
from labkit.runtime import get_device

#: Association scores lie in [−2, 2]; a standard deviation below this is rounding error (identical words give a
#: spread of 0 or ~1e-8 depending on the CPU's matrix kernels), and d = Δmean / std would be noise over noise.
NO_SPREAD = 1e-6

__all__ = [
    "load_data",
    "simplicity_data",
    "shortcut_digits",
    "train_mlp",
    "accuracy",
    "hidden_features",
    "group_weights",
    "last_layer_retrain",
    "embed",
    "association",
    "weat_effect_size",
    "permutation_p_value",
    "weat_null_effect_sizes",
    "weat",
    "seat_test",
    "seat_sentences",
    "minimal_pair_scores",
    "mc_prompts",
    "position_bias",
    "label_bias",
    "contextual_calibration",
    "domain_context_texts",
    "domain_context_calibration",
]


# --------------------------------------------------------------------------------------------------
# Argument checks (private): every public function refuses bad input with an error naming the argument


def _int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def _number(value, name: str, low: float | None = None, high: float | None = None, low_open: bool = False,
            high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '≥'} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '≤'} {high}, got {value}")
    return value


def _tensor(value, name: str, ndim: int | None = None, min_ndim: int = 0, neg_inf: bool = False) -> torch.Tensor:
    """``value`` as a real tensor without NaN (and without ±inf, except −inf where ``neg_inf``), not empty."""
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise TypeError(f"{name} must be a tensor of numbers, got {type(value).__name__}")
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be a tensor of numbers ({e})") from None
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(t.shape)}")
    if t.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if t.is_floating_point():
        if torch.isnan(t).any():
            raise ValueError(f"{name} contains NaN")
        bad = (t == math.inf) if neg_inf else torch.isinf(t)
        if bad.any():
            raise ValueError(f"{name} contains infinite values" + (" (+inf)" if neg_inf else ""))
    return t


def _labels(value, name: str) -> torch.Tensor:
    t = _tensor(value, name, ndim=1)
    if t.is_floating_point():
        if (t != t.round()).any():
            raise ValueError(f"{name} must hold integer class labels, got fractional values")
        t = t.long()
    if (t < 0).any():
        raise ValueError(f"{name} must hold non-negative integer labels")
    return t.long()


def _model(model, name: str = "model"):
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module (e.g. from bias.train_mlp), got {type(model).__name__}")
    if not hasattr(model, "features") or not hasattr(model, "head"):
        raise TypeError(f"{name} must be an MLP from bias.train_mlp (with .features and .head)")
    return model


def _data(model, X, y=None):
    X = _tensor(X, "X", ndim=2)
    d_in = model.body[0].in_features if len(model.body) else model.head.in_features
    if X.shape[1] != d_in:
        raise ValueError(f"X has {X.shape[1]} columns but the model expects {d_in}")
    if y is not None:
        y = _labels(y, "y")
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")
    return X.float(), y

# --------------------------------------------------------------------------------------------------
# Simplicity bias and shortcut learning


def simplicity_data(n: int = 2000, seed: int = 0, margin: float = 0.1, noise_dims: int = 0):
    """Two features that each predict the label perfectly: a linear one and a 3-slab one (Shah et al. 2020).

    x₀ (linear): ``(2y − 1) · U(margin, 1)`` — a single threshold at 0 separates the classes.
    x₁ (3-slab): class 1 lies in the middle slab ``|x₁| < 1/3 − margin``, class 0 in the two outer slabs
    ``1/3 + margin < |x₁| < 1`` — it needs two thresholds (a non-linear rule).
    Returns ``X [n, 2 + noise_dims]`` (float32) and ``y [n]`` (long). Extra dimensions are N(0, 1) noise.
    """
    n = _int(n, "n", minimum=2)
    seed = _int(seed, "seed")
    margin = _number(margin, "margin", 0.0, 1 / 3, high_open=True)
    noise_dims = _int(noise_dims, "noise_dims", minimum=0)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    lin = (2 * y - 1) * (margin + (1 - margin) * torch.rand(n, generator=g))
    inner = (1 / 3 - margin) * (2 * torch.rand(n, generator=g) - 1)
    outer_mag = (1 / 3 + margin) + (2 / 3 - margin) * torch.rand(n, generator=g)
    outer = outer_mag * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    slab = torch.where(y == 1, inner, outer)
    cols = [lin, slab] + [torch.randn(n, generator=g) for _ in range(noise_dims)]
    return torch.stack(cols, 1).float(), y.long()


def decorrelate(X: torch.Tensor, column: int, seed: int = 0) -> torch.Tensor:
    """Copy of ``X`` with one column shuffled across examples: that feature no longer predicts the label."""
    X = _tensor(X, "X", ndim=2)
    column = _int(column, "column", minimum=-X.shape[1], maximum=X.shape[1] - 1)
    g = torch.Generator().manual_seed(_int(seed, "seed"))
    X = X.clone()
    X[:, column] = X[torch.randperm(len(X), generator=g), column]
    return X


def shortcut_digits(correlation: float = 0.95, seed: int = 0, patch: int = 2, n_val: int = 300, n_test: int = 500):
    """sklearn's 8×8 digits as a binary task (label 1: digit ≥ 5) with a planted shortcut.

    A ``patch × patch`` square of maximal intensity (16) in the top-left corner — where real digits are
    blank — is present with probability ``correlation`` in class 1 and ``1 − correlation`` in class 0 in the
    training split, and present at random (probability ½, independent of the label) in the validation and
    test splits. Returns a dict of splits ``{"train", "val", "test"}``, each ``(X [n, 64] scaled to [0, 1],
    y [n], has_patch [n])``, plus ``"test_flipped"``: the test images with the patch where it is
    *anti*-correlated with the label (present exactly on class 0).
    """
    from sklearn.datasets import load_digits

    correlation = _number(correlation, "correlation", 0.0, 1.0)
    seed = _int(seed, "seed")
    patch = _int(patch, "patch", minimum=1, maximum=8)
    n_val, n_test = _int(n_val, "n_val", minimum=1), _int(n_test, "n_test", minimum=1)
    d = load_digits()
    X = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target >= 5, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(X), generator=g)
    X, y = X[order], y[order]
    n_train = len(X) - n_val - n_test
    if n_train < 100:
        raise ValueError("n_val + n_test leave fewer than 100 training images")
    corner = [r * 8 + c for r in range(patch) for c in range(patch)]

    def add(Xs, has):
        Xs = Xs.clone()
        Xs[has.nonzero()[:, 0].unsqueeze(1), torch.tensor(corner)] = 1.0
        return Xs

    out = {}
    sl = {"train": slice(0, n_train), "val": slice(n_train, n_train + n_val), "test": slice(n_train + n_val, None)}
    for name, s in sl.items():
        Xs, ys = X[s], y[s]
        u = torch.rand(len(ys), generator=g)
        if name == "train":
            has = torch.where(ys == 1, u < correlation, u < 1 - correlation)
        else:
            has = u < 0.5
        out[name] = (add(Xs, has), ys, has)
    Xt, yt, _ = out["test"]
    flipped = yt == 0
    out["test_flipped"] = (add(X[sl["test"]], flipped), yt, flipped)
    out["clean"] = {k: (X[s], y[s]) for k, s in sl.items()}
    return out


class MLP(torch.nn.Module):
    """A ReLU multilayer perceptron; ``features(x)`` is the last hidden layer."""

    def __init__(self, d_in: int, hidden: int = 64, depth: int = 2, n_out: int = 2):
        super().__init__()
        layers, d = [], d_in
        for _ in range(depth):
            layers += [torch.nn.Linear(d, hidden), torch.nn.ReLU()]
            d = hidden
        self.body = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(d, n_out)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def train_mlp(
    X: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor | None = None,
    hidden: int = 64,
    depth: int = 2,
    steps: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    seed: int = 0,
    device=None,
    monitor: dict | None = None,
    every: int = 10,
):
    """Train an MLP classifier full-batch with Adam on the (weighted) cross-entropy

    L(θ) = Σ_i w_i · CE(f_θ(x_i), y_i) / Σ_i w_i        (w_i = 1 without ``weights``).

    ``monitor`` maps names to ``(X, y)`` evaluation sets; their accuracy is recorded every ``every`` steps
    and returned in ``history`` (``{"step": [...], name: [...]}``). Returns ``(model, history)``; the model
    is in eval mode on ``device``.
    """
    X = _tensor(X, "X", ndim=2).float()
    y = _labels(y, "y")
    if len(X) != len(y):
        raise ValueError(f"X must be [n, d] and y [n]; got {tuple(X.shape)} and {tuple(y.shape)}")
    hidden, depth = _int(hidden, "hidden", minimum=1), _int(depth, "depth", minimum=1)
    steps, every, seed = _int(steps, "steps", minimum=0), _int(every, "every", minimum=1), _int(seed, "seed")
    lr = _number(lr, "lr", 0.0, low_open=True)
    weight_decay = _number(weight_decay, "weight_decay", 0.0)
    if monitor is not None and not isinstance(monitor, dict):
        raise TypeError(f"monitor must be a dict of name -> (X, y) evaluation sets, got {type(monitor).__name__}")
    for name, pair in (monitor or {}).items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"monitor[{name!r}] must be a pair (X, y)")
        Xm, ym = _tensor(pair[0], f"monitor[{name!r}] X", ndim=2), _labels(pair[1], f"monitor[{name!r}] y")
        if Xm.shape[1] != X.shape[1] or len(Xm) != len(ym):
            raise ValueError(f"monitor[{name!r}] must be (X [m, {X.shape[1]}], y [m]); got {tuple(Xm.shape)} and {tuple(ym.shape)}")
    if weights is not None:
        weights = _tensor(weights, "weights", ndim=1)
        if len(weights) != len(y) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be one non-negative number per example, not all zero")
    dev = get_device(device)
    torch.manual_seed(seed)
    n_out = int(y.max()) + 1
    model = MLP(X.shape[1], hidden, depth, max(2, n_out)).to(dev)
    Xd, yd = X.to(dev), y.to(dev)
    w = torch.ones(len(y), device=dev) if weights is None else weights.to(dev, torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history: dict[str, list] = {"step": []}
    monitor = monitor or {}
    for name in monitor:
        history[name] = []
    for step in range(steps + 1):
        if monitor and step % every == 0:
            model.eval()
            history["step"].append(step)
            for name, (Xm, ym) in monitor.items():
                history[name].append(accuracy(model, Xm, ym))
            model.train()
        if step == steps:
            break
        loss = (torch.nn.functional.cross_entropy(model(Xd), yd, reduction="none") * w).sum() / w.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), history


@torch.no_grad()
def accuracy(model, X: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of examples whose arg-max prediction equals the label."""
    X, y = _data(_model(model), X, y)
    dev = next(model.parameters()).device
    return float((model(X.to(dev)).argmax(-1).cpu() == y).float().mean())


@torch.no_grad()
def hidden_features(model, X: torch.Tensor) -> torch.Tensor:
    """The last hidden layer of an :class:`MLP` for ``X`` (on the CPU)."""
    X, _ = _data(_model(model), X)
    dev = next(model.parameters()).device
    return model.features(X.to(dev)).cpu()


def group_weights(y: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Per-example weights that give every (label, group) cell the same total weight:

    w_i = n / (G · n_{g(i)}), with G non-empty cells and n_g examples in cell g (Sagawa et al. 2020;
    Idrissi et al. 2022, "Simple data balancing achieves competitive worst-group accuracy").
    """
    y, groups = _labels(y, "y"), _labels(groups, "groups")
    if len(y) != len(groups):
        raise ValueError(f"y and groups must have the same length, got {len(y)} and {len(groups)}")
    cell = y * (int(groups.max()) + 1) + groups
    _, inverse, counts = torch.unique(cell, return_inverse=True, return_counts=True)
    return len(y) / (len(counts) * counts[inverse].float())


def last_layer_retrain(model, X: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, C: float = 1.0, seed: int = 0):
    """Deep feature reweighting (Kirichenko et al. 2023): keep the network's features, refit its last layer.

    A logistic regression is fitted on the hidden features of a small held-out set subsampled so that every
    (label, group) cell has the same size; its weights replace the model's head. Returns a new model.
    """
    import copy

    from sklearn.linear_model import LogisticRegression

    X, y = _data(_model(model), X, y)
    groups = _labels(groups, "groups")
    if len(groups) != len(y):
        raise ValueError(f"groups must have one entry per example ({len(y)}), got {len(groups)}")
    if model.head.out_features != 2 or int(y.max()) > 1 or len(torch.unique(y)) < 2:
        raise ValueError("last_layer_retrain refits a binary head: y must hold both labels 0 and 1 and the model two outputs")
    C = _number(C, "C", 0.0, low_open=True)
    g = torch.Generator().manual_seed(_int(seed, "seed"))
    cell = y * (int(groups.max()) + 1) + groups
    cells = torch.unique(cell)
    m = min(int((cell == c).sum()) for c in cells)
    if m == 0:
        raise ValueError("a (label, group) cell of the held-out set is empty")
    idx = torch.cat([(cell == c).nonzero()[:, 0][torch.randperm(int((cell == c).sum()), generator=g)[:m]] for c in cells])
    F = hidden_features(model, X[idx]).numpy()
    clf = LogisticRegression(C=C, max_iter=2000).fit(F, y[idx].numpy())
    new = copy.deepcopy(model)
    dev = next(model.parameters()).device
    coef = torch.tensor(clf.coef_[0], dtype=torch.float32, device=dev)
    b = float(clf.intercept_[0])
    with torch.no_grad():  # two logits whose difference is the logistic regression's score
        new.head.weight.copy_(torch.stack([-coef / 2, coef / 2]))
        new.head.bias.copy_(torch.tensor([-b / 2, b / 2], device=dev))
    return new


# --------------------------------------------------------------------------------------------------
# WEAT and SEAT


def embed(embedder, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Unit-norm sentence-embedder vectors of ``texts`` (``[n, d]``, float32, on the CPU).

    Refuses texts the embedder cannot embed: non-strings, empty or blank strings, and texts that its
    tokenizer maps to nothing but unknown tokens (``[UNK]``), whose vectors would be meaningless.
    """
    if not callable(getattr(embedder, "encode", None)):
        raise TypeError(f"embedder must be a sentence embedder with .encode (labkit.load_embedder()), got {type(embedder).__name__}")
    batch_size = _int(batch_size, "batch_size", minimum=1)
    if isinstance(texts, str):
        raise TypeError("give a list of texts, not one string")
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to embed: the list is empty")
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"texts must be strings, got {type(t).__name__} {t!r}")
        if not t.strip():
            raise ValueError("cannot embed an empty or blank text: remove it from the list")
    tok = getattr(embedder, "tokenizer", None)
    if tok is not None and tok.unk_token_id is not None:
        for t in texts:
            ids = tok(t, add_special_tokens=False)["input_ids"]
            if ids and all(i == tok.unk_token_id for i in ids):
                raise ValueError(f"the embedder cannot embed {t!r}: its tokenizer knows none of its pieces ([UNK])")
    E = embedder.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                        show_progress_bar=False)
    return E.float().cpu()


def _unit(E: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(E.float(), dim=-1)


def _check_sets(**sets):
    for name, E in sets.items():
        if not isinstance(E, torch.Tensor) or E.ndim != 2:
            raise TypeError(f"{name} must be a 2-D tensor of embeddings [n, d]")
        if len(E) == 0 or E.shape[1] == 0:
            raise ValueError(f"the word set {name} is empty: WEAT needs at least one word per set")
        _tensor(E, name)
        if (E.norm(dim=-1) == 0).any():
            raise ValueError(f"{name} contains an all-zero embedding: its cosine similarity is undefined")
    dims = {E.shape[1] for E in sets.values()}
    if len(dims) > 1:
        raise ValueError(f"embeddings of different widths {sorted(dims)}: embed every set with one embedder")


def association(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """s(w, A, B) = mean_{a∈A} cos(w, a) − mean_{b∈B} cos(w, b) for each row w of ``W`` (Caliskan et al. 2017)."""
    _check_sets(W=W, A=A, B=B)
    W, A, B = _unit(W), _unit(A), _unit(B)
    return (W @ A.T).mean(1) - (W @ B.T).mean(1)


def weat_effect_size(X: torch.Tensor, Y: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """WEAT effect size (Caliskan et al. 2017):

    d = (mean_{x∈X} s(x, A, B) − mean_{y∈Y} s(y, A, B)) / std_{w∈X∪Y} s(w, A, B),

    with the sample standard deviation (n − 1). Targets X, Y must have the same size; d lies in [−2, 2].
    """
    _check_sets(X=X, Y=Y, A=A, B=B)
    if len(X) != len(Y):
        raise ValueError(f"WEAT needs target sets of equal size; got {len(X)} and {len(Y)} words")
    s = association(torch.cat([X, Y]), A, B)
    sx, sy = s[: len(X)], s[len(X):]
    if not float(s.std()) > NO_SPREAD:
        raise ValueError("the association scores of X ∪ Y have no spread (identical or too few words): d is undefined")
    return (sx.mean() - sy.mean()) / s.std()


def _scores(s_x, s_y) -> tuple[torch.Tensor, torch.Tensor]:
    for name, v in (("s_x", s_x), ("s_y", s_y)):
        if isinstance(v, (torch.Tensor, list, tuple)) and torch.as_tensor(v).numel() == 0:
            raise ValueError(f"both sets need at least one association score; {name} is empty")
    s_x = _tensor(s_x, "s_x").double().flatten()
    s_y = _tensor(s_y, "s_y").double().flatten()
    if len(s_x) != len(s_y):
        raise ValueError(f"the permutation test needs sets of equal size; got {len(s_x)} and {len(s_y)}")
    return s_x, s_y


def _partitions(n: int, n_permutations, seed: int, exact_limit: int):
    """Index sets of the "X" half of equal-size partitions of 2n items, in chunks: all C(2n, n) of them (in
    ``itertools.combinations`` order) when there are at most ``exact_limit``, else ``n_permutations`` random ones.
    Yields ``(exact, indices [m, n])``."""
    if math.comb(2 * n, n) <= exact_limit:
        yield True, torch.tensor(list(itertools.combinations(range(2 * n), n)), dtype=torch.long)
        return
    if n_permutations is None:
        raise ValueError("n_permutations must be a positive integer when the exact test is too large")
    n_permutations = _int(n_permutations, "n_permutations", minimum=1)
    g = torch.Generator().manual_seed(seed)
    done, chunk = 0, 10_000
    while done < n_permutations:
        m = min(chunk, n_permutations - done)
        yield False, torch.rand(m, 2 * n, generator=g).argsort(1)[:, :n]
        done += m


def permutation_p_value(s_x: torch.Tensor, s_y: torch.Tensor, n_permutations: int | None = 100_000, seed: int = 0,
                        exact_limit: int = 100_000) -> float:
    """One-sided permutation p-value of the WEAT test statistic S = Σ_{x} s(x) − Σ_{y} s(y):

    p = Pr_i[S(X_i, Y_i) ≥ S(X, Y)] over the equal-size partitions (X_i, Y_i) of X ∪ Y.

    All C(2n, n) partitions are enumerated when there are at most ``exact_limit`` of them (the exact
    test, as in Caliskan et al.); otherwise ``n_permutations`` random partitions give the Monte-Carlo
    estimate (1 + #{S_i ≥ S}) / (1 + n_permutations). Vectorised: the statistic of every partition is a sum
    of gathered association scores.
    """
    s_x, s_y = _scores(s_x, s_y)
    seed, exact_limit = _int(seed, "seed"), _int(exact_limit, "exact_limit", minimum=0)
    s = torch.cat([s_x, s_y])
    n, total = len(s_x), s.sum()
    observed = 2 * s_x.sum() - total
    tol = 1e-12 * (1 + s.abs().sum())
    count = done = 0
    for exact, idx in _partitions(n, n_permutations, seed, exact_limit):
        stats = 2 * s[idx].sum(1) - total
        if exact:
            return float((stats >= observed - tol).double().mean())
        count += int((stats >= observed - tol).sum())
        done += len(idx)
    return (1 + count) / (1 + done)


def weat_null_effect_sizes(s_x: torch.Tensor, s_y: torch.Tensor, n_permutations: int | None = 100_000, seed: int = 0,
                           exact_limit: int = 100_000) -> torch.Tensor:
    """The permutation (null) distribution of the WEAT effect size: d of every equal-size partition of X ∪ Y,

    d_i = (mean_{X_i} s − mean_{Y_i} s) / std_{X∪Y} s   (the same n − 1 standard deviation for every partition).

    Under the null that the target labels are exchangeable, the observed d is one draw from this distribution,
    so its quantiles say how large d gets *by chance* at this set size (e.g. the 95 % quantile is the one-sided
    5 % critical value), and ``(d_null >= d_observed).mean()`` equals :func:`permutation_p_value` (d is an
    increasing function of S for a fixed pool of scores). Partitions as in :func:`permutation_p_value`: all
    C(2n, n) of them (``itertools.combinations`` order, the first n indices being X) when there are at most
    ``exact_limit``, else ``n_permutations`` random ones. Returns a float64 tensor.
    """
    s_x, s_y = _scores(s_x, s_y)
    seed, exact_limit = _int(seed, "seed"), _int(exact_limit, "exact_limit", minimum=0)
    s = torch.cat([s_x, s_y])
    n, total, sd = len(s_x), s.sum(), s.std()
    if not float(sd) > NO_SPREAD:
        raise ValueError("the association scores have no spread (identical or too few): d is undefined")
    parts = [(2 * s[idx].sum(1) - total) / (n * sd) for _, idx in _partitions(n, n_permutations, seed, exact_limit)]
    return torch.cat(parts)


def weat(X, Y, A, B, n_permutations: int = 100_000, seed: int = 0) -> dict:
    """Effect size, test statistic and permutation p-value of one WEAT (embeddings ``[n, d]`` for each set)."""
    d = weat_effect_size(X, Y, A, B)
    s = association(torch.cat([X, Y]), A, B)
    sx, sy = s[: len(X)], s[len(X):]
    p = permutation_p_value(sx, sy, n_permutations=n_permutations, seed=seed)
    return {"effect_size": float(d), "statistic": float(sx.sum() - sy.sum()), "p_value": p, "n": len(X)}


def seat_test(X: torch.Tensor, Y: torch.Tensor, A: torch.Tensor, B: torch.Tensor, n_templates: int,
              n_permutations: int = 100_000, seed: int = 0) -> dict:
    """SEAT at the level of words (May et al. 2019, with the word as the unit of the permutation test).

    Each set holds sentence embeddings ``[n_words · n_templates, d]``, word-major as :func:`seat_sentences` makes
    them (word 0's ``n_templates`` sentences first). The sentences of one word are averaged and renormalised,
    ē_w = normalise(mean_t e_(w,t)); then :func:`weat` runs on the word vectors: effect size
    d = (mean_X s − mean_Y s) / std_{X∪Y} s and the permutation p-value over equal-size partitions of the *words*.
    Testing the sentences as units instead treats a word's sentences as independent observations
    (pseudo-replication) and rejects a true null far more often than the nominal level.
    Returns ``{"effect_size", "statistic", "p_value", "n"}`` (n = words per target set).
    """
    k = _int(n_templates, "n_templates", minimum=1)
    _check_sets(X=X, Y=Y, A=A, B=B)
    words = {}
    for name, E in (("X", X), ("Y", Y), ("A", A), ("B", B)):
        if len(E) % k:
            raise ValueError(f"{name} has {len(E)} sentences, not a multiple of n_templates = {k}: "
                             "give every word's sentences for every template, word-major")
        words[name] = torch.nn.functional.normalize(E.float().reshape(-1, k, E.shape[1]).mean(1), dim=-1)
    return weat(words["X"], words["Y"], words["A"], words["B"], n_permutations=n_permutations, seed=seed)


def seat_sentences(words: Sequence[str], templates: Sequence[str]) -> list[str]:
    """SEAT (May et al. 2019): put every word into every semantically bleached template (``"This is {}."``)."""
    templates = validation.strings("templates", templates)
    for t in templates:
        if t.count("{}") != 1 or t.replace("{}", "").count("{") or t.replace("{}", "").count("}"):
            raise ValueError(f"each template must contain exactly one '{{}}' where the word goes (and no other braces): {t!r}")
    words = validation.strings("words", words)
    return [t.format(w) for w in words for t in templates]


# --------------------------------------------------------------------------------------------------
# Bias in the language model


def _lm(lm):
    if not all(callable(getattr(lm, a, None)) for a in ("logprobs", "option_logprobs")):
        raise TypeError(f"lm must be a labkit LanguageModel (labkit.load_lm()), got {type(lm).__name__}")
    return lm


def minimal_pair_scores(lm, pairs: Sequence[dict], batch_size: int = 32) -> torch.Tensor:
    """Stereotype preference of minimal pairs (CrowS-Pairs, Nangia et al. 2020, adapted to a causal LM).

    Each pair is ``{"more": prefix, "less": prefix, "continuation": text}``: the two sentences differ only
    in the group named in the prefix, and the shared continuation is scored given each prefix,

    Δ = log p(continuation | more-stereotypical prefix) − log p(continuation | less-stereotypical prefix).

    Δ > 0 means the model finds the stereotype more likely. Conditioning on the differing part (as
    CrowS-Pairs scores only the unmodified tokens) keeps word frequency of the group term out of the score.
    """
    _lm(lm)
    batch_size = _int(batch_size, "batch_size", minimum=1)
    if isinstance(pairs, dict):
        raise TypeError("pairs must be a list of dicts, not one dict")
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no minimal pairs")
    for p in pairs:
        if not isinstance(p, dict):
            raise TypeError(f"every pair must be a dict with 'more', 'less' and 'continuation'; got {type(p).__name__}")
        for key in ("more", "less", "continuation"):
            if not isinstance(p.get(key), str) or not p[key].strip():
                raise ValueError(f"every pair needs a non-empty {key!r} text; got {p!r}")
    prompts = [p["more"] for p in pairs] + [p["less"] for p in pairs]
    conts = [p["continuation"] for p in pairs] * 2
    lp = lm.logprobs(prompts, conts, batch_size=batch_size)
    return lp[: len(pairs)] - lp[len(pairs):]


def mc_prompts(question: str, options: Sequence[str], letters: Sequence[str] = ("A", "B", "C"),
               template: str = "Question: {question}\n{options}\nAnswer:") -> list[tuple[str, tuple[int, ...]]]:
    """One multiple-choice prompt per permutation of the options (all K! orders).

    Returns ``[(prompt, order)]`` where ``order[k]`` is the index of the option shown under letter k.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError("the question must be a non-empty string")
    options = validation.strings("options", options)
    letters = validation.strings("letters", letters)
    if not isinstance(template, str) or "{question}" not in template or "{options}" not in template:
        raise ValueError("template must be a string with '{question}' and '{options}'")
    if len(options) != len(letters):
        raise ValueError(f"{len(options)} options but {len(letters)} letters")
    if len(options) < 2:
        raise ValueError("a multiple-choice question needs at least two options")
    if len(options) > 8:
        raise ValueError(f"{len(options)} options give {math.factorial(len(options)):,} orders: use at most 8")
    if len(set(options)) != len(options):
        raise ValueError("the option list has duplicates: each option must appear once")
    if len(set(letters)) != len(letters):
        raise ValueError("the letters have duplicates: each letter must appear once")
    out = []
    for order in itertools.permutations(range(len(options))):
        body = "\n".join(f"{letters[k]}) {options[i]}" for k, i in enumerate(order))
        out.append((template.format(question=question, options=body), order))
    return out


def _letter_logprobs(x, name: str) -> torch.Tensor:
    lp = _tensor(x, name, min_ndim=1, neg_inf=True).float()
    if lp.shape[-1] < 2:
        raise ValueError(f"{name} must have a last axis of at least two letters, got shape {tuple(lp.shape)}")
    if torch.isinf(lp).all(-1).any():
        raise ValueError(f"{name} has a row where every letter has log-probability −inf")
    return lp


def position_bias(letter_logprobs: torch.Tensor) -> torch.Tensor:
    """How far the model's average answer distribution over letters is from uniform (total variation):

    q_k = mean over prompts of p(letter k | prompt, letters),  bias = ½ Σ_k |q_k − 1/K|.

    ``letter_logprobs [..., K]`` are log-probabilities of the K letter tokens (need not sum to one; they are
    renormalised over the letters). When every option appears under every letter equally often (all
    permutations), an unbiased model has q = uniform and bias 0; always answering one letter gives 1 − 1/K.
    """
    lp = _letter_logprobs(letter_logprobs, "letter_logprobs")
    q = label_bias(lp)
    return 0.5 * (q - 1.0 / lp.shape[-1]).abs().sum()


def label_bias(letter_logprobs: torch.Tensor) -> torch.Tensor:
    """The average label distribution p̂_k = mean over prompts of p(label k | prompt), ``[K]``.

    Softmax over the last axis (log-probabilities need not be normalised), then the mean over all other
    axes. On content-free or random in-domain prompts it is the bias estimate that :func:`contextual_calibration`
    and :func:`domain_context_calibration` divide out; on a balanced design (every option under every letter
    equally often) it is the bias the model actually shows.
    """
    lp = _letter_logprobs(letter_logprobs, "letter_logprobs")
    return torch.softmax(lp, -1).reshape(-1, lp.shape[-1]).mean(0)


def _calibrate(letter_logprobs, reference_logprobs, reference_name: str) -> torch.Tensor:
    lp = torch.log_softmax(_letter_logprobs(letter_logprobs, "letter_logprobs"), -1)
    ref = _letter_logprobs(reference_logprobs, reference_name)
    if ref.shape[-1] != lp.shape[-1]:
        raise ValueError(f"{reference_name} has {ref.shape[-1]} letters but letter_logprobs has {lp.shape[-1]}: "
                         "score the same letters on both")
    p_hat = label_bias(ref)
    if (p_hat == 0).any():
        raise ValueError(f"{reference_name} gives a letter probability 0: the bias estimate cannot be divided out")
    return torch.log_softmax(lp - p_hat.log(), -1)


def contextual_calibration(letter_logprobs: torch.Tensor, content_free_logprobs: torch.Tensor) -> torch.Tensor:
    """Contextual calibration (Zhao et al. 2021): divide out the answer distribution on content-free inputs.

    p̂_cf = mean over content-free prompts of p(letter | prompt), then q ∝ diag(p̂_cf)⁻¹ p, i.e.
    log q = log p − log p̂_cf, renormalised. Returns calibrated log-probabilities over the letters.
    Assumes that a content-free input ("N/A", "[MASK]") shows the same label bias as a real one.
    """
    return _calibrate(letter_logprobs, content_free_logprobs, "content_free_logprobs")


def domain_context_texts(texts: Sequence[str], n: int = 50, length: int | None = None, seed: int = 0) -> list[str]:
    """Random in-domain texts for domain-context calibration (Fei et al. 2023, "Mitigating label biases for
    in-context learning").

    Each text is ``length`` words drawn independently and uniformly from the bag of words of ``texts`` (the
    task's unlabelled inputs, split on white space, so frequent domain words are drawn more often); ``length``
    defaults to the mean number of words per text, rounded. Such a text uses the task's vocabulary but says
    nothing, so the model's label distribution on it estimates the bias that the *domain* induces — which a
    content-free token such as "N/A" (itself an unusual input, with its own bias) may not show.
    """
    texts = validation.strings("texts", texts)
    n, seed = _int(n, "n", minimum=1), _int(seed, "seed")
    bag = [w for t in texts for w in t.split()]
    if length is None:
        length = max(1, round(len(bag) / len(texts)))
    length = _int(length, "length", minimum=1)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(bag), (n, length), generator=g)
    return [" ".join(bag[i] for i in row) for row in idx.tolist()]


def domain_context_calibration(letter_logprobs: torch.Tensor, domain_logprobs: torch.Tensor) -> torch.Tensor:
    """Domain-context calibration (Fei et al. 2023): divide out the label distribution on random in-domain texts.

    p̂_dc = mean over prompts built from :func:`domain_context_texts` (the same template, random domain words in
    place of the input) of p(label | prompt); log q = log p − log p̂_dc, renormalised over the labels. The
    formula is contextual calibration's; the bias estimate differs. Fei et al. average about 20 random texts.
    """
    return _calibrate(letter_logprobs, domain_logprobs, "domain_logprobs")
