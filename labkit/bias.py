"""Bias in learned representations: simplicity bias, shortcuts, WEAT/SEAT, stereotypes, position bias.

Notebook 09 uses this module. Its parts:

* **Simplicity bias and shortcuts** — :func:`simplicity_data` (a linear and a 3-slab feature, each fully
  predictive, Shah et al. 2020), :func:`shortcut_digits` (a corner patch planted on sklearn's digits,
  correlated with the label in training only, Geirhos et al. 2020), :func:`train_mlp` (a small MLP trained
  full-batch, optionally with per-example weights), :func:`group_weights` (group-balanced reweighting,
  Sagawa et al. 2020 / Idrissi et al. 2022) and :func:`last_layer_retrain` (deep feature reweighting,
  Kirichenko et al. 2023).
* **WEAT and SEAT** (Caliskan et al. 2017; May et al. 2019) — :func:`embed`, :func:`association`,
  :func:`weat_effect_size`, :func:`permutation_p_value`, :func:`weat`, :func:`seat_sentences`.
* **Bias in the language model** — answer options are scored by ``lm.option_logprobs`` (the course's one
  scoring path, :mod:`labkit.lm.model`); :func:`minimal_pair_scores` (CrowS-Pairs-style scoring, Nangia et al. 2020),
  :func:`mc_prompts`, :func:`position_bias`, :func:`contextual_calibration` (Zhao et al. 2021).
* The course's word lists, minimal pairs and questions: :func:`load_data` (``labkit/data/*.json``; their
  design is described in ``labkit/data/bias_data.md``).
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch

from labkit.datasets import load_data  # noqa: F401  (notebook 09 reads its data files as bias.load_data)
from labkit.runtime import get_device

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
    "weat",
    "seat_sentences",
    "minimal_pair_scores",
    "mc_prompts",
    "position_bias",
    "contextual_calibration",
]

# --------------------------------------------------------------------------------------------------
# Simplicity bias and shortcut learning


def simplicity_data(n: int = 2000, seed: int = 0, margin: float = 0.1, noise_dims: int = 0):
    """Two features that each predict the label perfectly: a linear one and a 3-slab one (Shah et al. 2020).

    x₀ (linear): ``(2y − 1) · U(margin, 1)`` — a single threshold at 0 separates the classes.
    x₁ (3-slab): class 1 lies in the middle slab ``|x₁| < 1/3 − margin``, class 0 in the two outer slabs
    ``1/3 + margin < |x₁| < 1`` — it needs two thresholds (a non-linear rule).
    Returns ``X [n, 2 + noise_dims]`` (float32) and ``y [n]`` (long). Extra dimensions are N(0, 1) noise.
    """
    if n < 2:
        raise ValueError("n must be at least 2")
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
    g = torch.Generator().manual_seed(seed)
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

    if not 0.0 <= correlation <= 1.0:
        raise ValueError("correlation must lie in [0, 1]")
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
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"X must be [n, d] and y [n]; got {tuple(X.shape)} and {tuple(y.shape)}")
    dev = get_device(device)
    torch.manual_seed(seed)
    n_out = int(y.max()) + 1 if len(y) else 2
    model = MLP(X.shape[1], hidden, depth, max(2, n_out)).to(dev)
    Xd, yd = X.to(dev), y.to(dev)
    w = torch.ones(len(y), device=dev) if weights is None else weights.to(dev, torch.float32)
    if len(w) != len(y) or (w < 0).any():
        raise ValueError("weights must be one non-negative number per example")
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
    dev = next(model.parameters()).device
    return float((model(X.to(dev)).argmax(-1).cpu() == y).float().mean())


@torch.no_grad()
def hidden_features(model, X: torch.Tensor) -> torch.Tensor:
    """The last hidden layer of an :class:`MLP` for ``X`` (on the CPU)."""
    dev = next(model.parameters()).device
    return model.features(X.to(dev)).cpu()


def group_weights(y: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Per-example weights that give every (label, group) cell the same total weight:

    w_i = n / (G · n_{g(i)}), with G non-empty cells and n_g examples in cell g (Sagawa et al. 2020;
    Idrissi et al. 2022, "Simple data balancing achieves competitive worst-group accuracy").
    """
    if len(y) != len(groups):
        raise ValueError("y and groups must have the same length")
    cell = y.long() * (int(groups.max()) + 1) + groups.long()
    _, inverse, counts = torch.unique(cell, return_inverse=True, return_counts=True)
    return len(y) / (len(counts) * counts[inverse].float())


def last_layer_retrain(model, X: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, C: float = 1.0, seed: int = 0):
    """Deep feature reweighting (Kirichenko et al. 2023): keep the network's features, refit its last layer.

    A logistic regression is fitted on the hidden features of a small held-out set subsampled so that every
    (label, group) cell has the same size; its weights replace the model's head. Returns a new model.
    """
    import copy

    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(seed)
    cell = y.long() * (int(groups.max()) + 1) + groups.long()
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
        if len(E) == 0:
            raise ValueError(f"the word set {name} is empty: WEAT needs at least one word per set")
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
    return (sx.mean() - sy.mean()) / s.std()


def permutation_p_value(s_x: torch.Tensor, s_y: torch.Tensor, n_permutations: int | None = 100_000, seed: int = 0,
                        exact_limit: int = 100_000) -> float:
    """One-sided permutation p-value of the WEAT test statistic S = Σ_{x} s(x) − Σ_{y} s(y):

    p = Pr_i[S(X_i, Y_i) ≥ S(X, Y)] over the equal-size partitions (X_i, Y_i) of X ∪ Y.

    All C(2n, n) partitions are enumerated when there are at most ``exact_limit`` of them (the exact
    test, as in Caliskan et al.); otherwise ``n_permutations`` random partitions give the Monte-Carlo
    estimate (1 + #{S_i ≥ S}) / (1 + n_permutations). Vectorised: the statistic of every partition is a sum
    of gathered association scores.
    """
    s_x, s_y = torch.as_tensor(s_x, dtype=torch.float64).flatten(), torch.as_tensor(s_y, dtype=torch.float64).flatten()
    if len(s_x) == 0 or len(s_y) == 0:
        raise ValueError("both sets need at least one association score")
    if len(s_x) != len(s_y):
        raise ValueError(f"the permutation test needs sets of equal size; got {len(s_x)} and {len(s_y)}")
    s = torch.cat([s_x, s_y])
    n, total = len(s_x), s.sum()
    observed = 2 * s_x.sum() - total
    tol = 1e-12 * (1 + s.abs().sum())
    if math.comb(2 * n, n) <= exact_limit:
        combos = torch.tensor(list(itertools.combinations(range(2 * n), n)), dtype=torch.long)
        stats = 2 * s[combos].sum(1) - total
        return float((stats >= observed - tol).double().mean())
    if not n_permutations or n_permutations < 1:
        raise ValueError("n_permutations must be a positive integer when the exact test is too large")
    g = torch.Generator().manual_seed(seed)
    count, done, chunk = 0, 0, 10_000
    while done < n_permutations:
        m = min(chunk, n_permutations - done)
        idx = torch.rand(m, 2 * n, generator=g).argsort(1)[:, :n]
        stats = 2 * s[idx].sum(1) - total
        count += int((stats >= observed - tol).sum())
        done += m
    return (1 + count) / (1 + n_permutations)


def weat(X, Y, A, B, n_permutations: int = 100_000, seed: int = 0) -> dict:
    """Effect size, test statistic and permutation p-value of one WEAT (embeddings ``[n, d]`` for each set)."""
    d = weat_effect_size(X, Y, A, B)
    s = association(torch.cat([X, Y]), A, B)
    sx, sy = s[: len(X)], s[len(X):]
    p = permutation_p_value(sx, sy, n_permutations=n_permutations, seed=seed)
    return {"effect_size": float(d), "statistic": float(sx.sum() - sy.sum()), "p_value": p, "n": len(X)}


def seat_sentences(words: Sequence[str], templates: Sequence[str]) -> list[str]:
    """SEAT (May et al. 2019): put every word into every semantically bleached template (``"This is {}."``)."""
    if not templates or any("{}" not in t for t in templates):
        raise ValueError("each template must contain one '{}' where the word goes")
    for w in words:
        if not isinstance(w, str) or not w.strip():
            raise ValueError(f"cannot build sentences from the empty word {w!r}")
    return [t.format(w) for w in words for t in templates]


# --------------------------------------------------------------------------------------------------
# Bias in the language model


def minimal_pair_scores(lm, pairs: Sequence[dict], batch_size: int = 32) -> torch.Tensor:
    """Stereotype preference of minimal pairs (CrowS-Pairs, Nangia et al. 2020, adapted to a causal LM).

    Each pair is ``{"more": prefix, "less": prefix, "continuation": text}``: the two sentences differ only
    in the group named in the prefix, and the shared continuation is scored given each prefix,

    Δ = log p(continuation | more-stereotypical prefix) − log p(continuation | less-stereotypical prefix).

    Δ > 0 means the model finds the stereotype more likely. Conditioning on the differing part (as
    CrowS-Pairs scores only the unmodified tokens) keeps word frequency of the group term out of the score.
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no minimal pairs")
    for p in pairs:
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
    options = list(options)
    if not isinstance(question, str) or not question.strip():
        raise ValueError("the question must be a non-empty string")
    if len(options) != len(letters):
        raise ValueError(f"{len(options)} options but {len(letters)} letters")
    if len(set(options)) != len(options):
        raise ValueError("the option list has duplicates: each option must appear once")
    if any(not isinstance(o, str) or not o.strip() for o in options):
        raise ValueError("options must be non-empty strings")
    out = []
    for order in itertools.permutations(range(len(options))):
        body = "\n".join(f"{letters[k]}) {options[i]}" for k, i in enumerate(order))
        out.append((template.format(question=question, options=body), order))
    return out


def position_bias(letter_logprobs: torch.Tensor) -> torch.Tensor:
    """How far the model's average answer distribution over letters is from uniform (total variation):

    q_k = mean over prompts of p(letter k | prompt, letters),  bias = ½ Σ_k |q_k − 1/K|.

    ``letter_logprobs [..., K]`` are log-probabilities of the K letter tokens (need not sum to one; they are
    renormalised over the letters). When every option appears under every letter equally often (all
    permutations), an unbiased model has q = uniform and bias 0; always answering one letter gives 1 − 1/K.
    """
    lp = torch.as_tensor(letter_logprobs, dtype=torch.float32)
    if lp.ndim < 1 or lp.shape[-1] < 2:
        raise ValueError("letter_logprobs must have a last axis of at least two letters")
    p = torch.softmax(lp, -1).reshape(-1, lp.shape[-1])
    q = p.mean(0)
    return 0.5 * (q - 1.0 / lp.shape[-1]).abs().sum()


def contextual_calibration(letter_logprobs: torch.Tensor, content_free_logprobs: torch.Tensor) -> torch.Tensor:
    """Contextual calibration (Zhao et al. 2021): divide out the answer distribution on content-free inputs.

    p̂_cf = mean over content-free prompts of p(letter | prompt), then q ∝ diag(p̂_cf)⁻¹ p, i.e.
    log q = log p − log p̂_cf, renormalised. Returns calibrated log-probabilities over the letters.
    """
    lp = torch.log_softmax(torch.as_tensor(letter_logprobs, dtype=torch.float32), -1)
    cf = torch.softmax(torch.as_tensor(content_free_logprobs, dtype=torch.float32), -1).reshape(-1, lp.shape[-1])
    if cf.shape[-1] != lp.shape[-1]:
        raise ValueError("content-free and real prompts must have the same letters")
    return torch.log_softmax(lp - cf.mean(0).log(), -1)
