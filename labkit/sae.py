"""Sparse autoencoders: superposition, dictionary learning on activations, and SAE feature attribution.

* Toy model of superposition (Elhage et al. 2022): ``x̂ = ReLU(WᵀW x + b)``, n sparse features squeezed
  through d < n dimensions.
* Sparse autoencoder (Bricken et al. 2023; Cunningham et al. 2023), the lecture's form::

      f(x) = ReLU(W_e (x − b_d) + b_e),   x̂ = Σ_i f_i(x) v_i + b_d = W_d f + b_d,   x = x̂ + ε(x)
      L = ‖x − x̂‖² + λ Σ_i f_i(x) ‖W_d,i‖,      dictionary size S = k × D (k a positive integer)

  with decoder columns ``v_i = W_d,i`` kept at unit norm. Metrics: L0 = E[#{i : f_i > 0}], explained
  variance ``1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²``, dead features (never active), cross-entropy loss recovered
  when the SAE's output replaces the activation inside the model:
  ``(CE_ablated − CE_sae) / (CE_ablated − CE_clean)``.
* Sparse feature circuits (Marks et al. 2024): with the SAE spliced in, ``x = x̂(f) + ε``, attribution
  patching on the features ``f`` and the error term ``ε``; the attributions sum exactly to that of ``x``.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
from torch import nn

from labkit.lm import hooks
from labkit.lm.interventions import run_copies
from labkit.runtime import get_device
from labkit.validation import integer_at_least as _int, language_model as _check_lm

__all__ = [
    "toy_superposition",
    "planted_features",
    "SparseAutoencoder",
    "sae_loss",
    "train_sae",
    "training_loop",
    "feature_recovery",
    "sae_metrics",
    "collect_activations",
    "splice_sae",
    "ce_loss_recovered",
    "top_contexts",
    "logit_effects",
    "feature_attribution",
    "feature_patching",
]


# --------------------------------------------------------------------------------------------------
# Input checks


def _real(value, name: str, low: float | None = None, high: float | None = None, open_low: bool = False,
          open_high: bool = False) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (open_low and value == low)):
        raise ValueError(f"{name} must be {'>' if open_low else '>='} {low}, got {value}")
    if high is not None and (value > high or (open_high and value == high)):
        raise ValueError(f"{name} must be {'<' if open_high else '<='} {high}, got {value}")
    return value


def _matrix(x, name: str, dim: int | None = 2) -> torch.Tensor:
    """A finite, non-empty floating tensor with ``dim`` axes (any number ≥ 1 when ``dim`` is None)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if (dim is not None and x.dim() != dim) or x.dim() == 0:
        raise ValueError(f"{name} must have {dim or 'at least 1'} axes, got shape {list(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {list(x.shape)})")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _check_sae(sae) -> None:
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"sae must be a labkit.sae.SparseAutoencoder (from train_sae), got {type(sae).__name__}")


def _tokens(lm, tokens, name: str = "tokens") -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.numel() == 0:
        raise ValueError(f"{name} must be a non-empty [n, seq] tensor of token ids, got {getattr(tokens, 'shape', tokens)!r}")
    if tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {tokens.dtype}")
    if (tokens < 0).any() or (tokens >= lm.vocab_size).any():
        raise ValueError(f"{name} holds ids outside the vocabulary (0-{lm.vocab_size - 1})")
    return tokens


def _readout(readout) -> None:
    if not callable(readout):
        raise TypeError(f"readout must be a function from logits [rows, 1, vocab] to one number per row, "
                        f"got {type(readout).__name__} (e.g. patching.logit_diff_readout(he, she))")


# --------------------------------------------------------------------------------------------------
# Toy model of superposition


def toy_superposition(
    n_features: int = 5,
    d_hidden: int = 2,
    sparsity: float = 0.9,
    importance_decay: float = 0.9,
    steps: int = 3000,
    batch_size: int = 1024,
    lr: float = 1e-2,
    seed: int = 0,
):
    """Train Elhage et al.'s (2022) toy model ``x̂ = ReLU(WᵀW x + b)``; return ``(W [d, n], b [n])``.

    Feature ``i`` is 0 with probability ``sparsity`` and uniform on [0, 1] otherwise; the loss weights it by
    importance ``importance_decay**i``. With dense features (sparsity 0) the model keeps the d most important
    ones; with sparse features it packs more than d features into d dimensions (superposition).
    """
    n_features, d_hidden = _int(n_features, "n_features", 1), _int(d_hidden, "d_hidden", 1)
    sparsity = _real(sparsity, "sparsity (a probability in [0, 1))", 0.0, 1.0, open_high=True)
    importance_decay = _real(importance_decay, "importance_decay", 0.0, 1.0, open_low=True)
    steps, batch_size = _int(steps, "steps", 1), _int(batch_size, "batch_size", 1)
    lr = _real(lr, "lr", 0.0, open_low=True)
    g = torch.Generator().manual_seed(_int(seed, "seed", 0))
    W = (torch.randn(d_hidden, n_features, generator=g) * 0.1).requires_grad_(True)
    b = torch.zeros(n_features, requires_grad=True)
    imp = importance_decay ** torch.arange(n_features, dtype=torch.float32)
    opt = torch.optim.Adam([W, b], lr=lr)
    for _ in range(steps):
        x = torch.rand(batch_size, n_features, generator=g) * (torch.rand(batch_size, n_features, generator=g) >= sparsity)
        x_hat = torch.relu(x @ W.T @ W + b)
        loss = (imp * (x - x_hat) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach(), b.detach()


def planted_features(
    n_samples: int = 4096,
    d: int = 32,
    n_features: int = 64,
    p_active: float = 0.05,
    noise: float = 0.01,
    seed: int = 0,
):
    """Synthetic activations with known features: ``x = Σ_i c_i v_i + noise``.

    ``v_i`` are ``n_features`` random unit vectors in R^d (more features than dimensions: superposition);
    each ``c_i`` is nonzero with probability ``p_active`` and then uniform on [0.5, 1.5]. Returns
    ``(X [n_samples, d], V [n_features, d], C [n_samples, n_features])``.
    """
    n_samples, d, n_features = _int(n_samples, "n_samples", 1), _int(d, "d", 1), _int(n_features, "n_features", 1)
    p_active = _real(p_active, "p_active", 0.0, 1.0, open_low=True)
    noise = _real(noise, "noise", 0.0)
    g = torch.Generator().manual_seed(_int(seed, "seed", 0))
    V = torch.randn(n_features, d, generator=g)
    V = V / V.norm(dim=1, keepdim=True)
    active = torch.rand(n_samples, n_features, generator=g) < p_active
    C = active * (0.5 + torch.rand(n_samples, n_features, generator=g))
    X = C @ V + noise * torch.randn(n_samples, d, generator=g)
    return X, V, C


# --------------------------------------------------------------------------------------------------
# The sparse autoencoder


def _dictionary_size(d: int, n_features: int | None, expansion: int | None) -> int:
    if (n_features is None) == (expansion is None):
        raise ValueError("give exactly one of n_features (the dictionary size S) and expansion (k, with S = k × D)")
    if expansion is not None:
        if not isinstance(expansion, int) or isinstance(expansion, bool) or expansion < 1:
            raise ValueError(f"expansion k must be a positive integer (S = k × D), got {expansion!r}")
        return expansion * d
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1 or n_features % d:
        raise ValueError(
            f"dictionary size {n_features!r} must be a positive multiple of the input width D = {d} "
            f"(S = k × D, e.g. {2 * d} or {4 * d})"
        )
    return n_features


class SparseAutoencoder(nn.Module):
    """``f = ReLU(W_e (x − b_d) + b_e)``, ``x̂ = W_d f + b_d`` with unit-norm decoder columns.

    ``d`` is the input width D; the dictionary size is ``n_features`` (a positive multiple of D) or
    ``expansion × d``. ``scale`` (a buffer) is the factor the inputs were divided by during training:
    :meth:`forward_native` works in the model's own units.
    """

    def __init__(self, d: int, n_features: int | None = None, expansion: int | None = None, seed: int = 0):
        super().__init__()
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"input width d must be a positive integer, got {d!r}")
        seed = _int(seed, "seed", 0)
        S = _dictionary_size(d, n_features, expansion)
        g = torch.Generator().manual_seed(seed)
        W_d = torch.randn(d, S, generator=g)
        W_d = W_d / W_d.norm(dim=0, keepdim=True)
        self.W_d = nn.Parameter(W_d)
        self.W_e = nn.Parameter(W_d.T.clone())  # tied initialisation (Conerly et al. 2024)
        self.b_e = nn.Parameter(torch.zeros(S))
        self.b_d = nn.Parameter(torch.zeros(d))
        self.register_buffer("scale", torch.tensor(1.0))

    @property
    def d(self) -> int:
        return self.W_d.shape[0]

    @property
    def n_features(self) -> int:
        return self.W_d.shape[1]

    def _check(self, x: torch.Tensor, width: int, what: str) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"{what} must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        if x.dim() == 0 or x.shape[-1] != width:
            raise ValueError(f"{what} has width {x.shape[-1] if x.dim() else 'none (a scalar)'}, this SAE expects {width}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{what} contains NaN or inf")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``f = ReLU(W_e (x − b_d) + b_e)`` of inputs ``[..., D]`` in the SAE's training units."""
        self._check(x, self.d, "the input")
        return torch.relu((x - self.b_d) @ self.W_e.T + self.b_e)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``x̂ = W_d f + b_d`` from feature activations ``[..., S]``."""
        self._check(f, self.n_features, "the feature activations f")
        return f @ self.W_d.T + self.b_d

    def forward(self, x: torch.Tensor):
        """``(x̂, f)`` for inputs in the SAE's training units."""
        f = self.encode(x)
        return self.decode(f), f

    def forward_native(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of an activation in the model's units (divides by ``scale``, multiplies back)."""
        self._check(x, self.d, "the input")
        return self(x / self.scale)[0] * self.scale

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_d.div_(self.W_d.norm(dim=0, keepdim=True).clamp_min(1e-8))


def sae_loss(x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor, W_d: torch.Tensor, lam: float) -> torch.Tensor:
    """``L = mean_batch ( ‖x − x̂‖² + λ Σ_i f_i ‖W_d,i‖ )`` — reconstruction plus the L1 sparsity penalty.

    ``x, x_hat``: [batch, D]; ``f``: [batch, S] (non-negative, as after a ReLU); ``W_d``: [D, S] (column i is
    feature i's direction); ``λ ≥ 0`` in the units of x (the penalty is linear in f, the error quadratic in x).
    """
    x, x_hat, f, W_d = (_matrix(t, name) for t, name in ((x, "x"), (x_hat, "x_hat"), (f, "f"), (W_d, "W_d")))
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat must have the shape of x {list(x.shape)}, got {list(x_hat.shape)}")
    if f.shape[0] != x.shape[0] or W_d.shape != (x.shape[1], f.shape[1]):
        raise ValueError(f"shapes do not fit: x [batch, D] = {list(x.shape)}, f [batch, S] = {list(f.shape)}, "
                         f"W_d [D, S] = {list(W_d.shape)}")
    if (f < 0).any():
        raise ValueError("feature activations f must be >= 0 (they come out of a ReLU); with negative f the L1 "
                         "penalty would reward activity")
    lam = _real(lam, "the sparsity coefficient lam", 0.0)
    recon = ((x - x_hat) ** 2).sum(-1)
    sparsity = (f * W_d.norm(dim=0)).sum(-1)
    return (recon + lam * sparsity).mean()


def train_sae(
    X: torch.Tensor,
    n_features: int | None = None,
    expansion: int | None = None,
    lam: float = 1e-2,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 3e-3,
    resample_at: Sequence[int] = (),
    seed: int = 0,
    device=None,
    normalize: bool = False,
):
    """Train a :class:`SparseAutoencoder` on rows of ``X`` with Adam and :func:`sae_loss`.

    **The units of λ.** With ``normalize=False`` (the default) the loss is the lecture's
    ``‖x − x̂‖² + λ Σ_i f_i ‖W_d,i‖`` on X as given: λ is in the units of X. With ``normalize=True`` X is first
    divided by the scalar s = sqrt(mean ‖x‖² / D), so that the mean squared norm is D, and λ applies to the
    rescaled inputs: the same λ then means the same at every layer of a model, and it equals λ·s in the units
    of X (the error term is quadratic in x, the penalty linear). s is stored in ``sae.scale`` (1 without
    normalisation) and ``history["lam_native"]`` = λ·s. Decoder columns are renormalised after each step.
    ``resample_at``: epochs at whose start dead features (no activation in the previous epoch) are
    re-initialised towards inputs the SAE reconstructs worst (Bricken et al. 2023, simplified).
    Returns ``(sae, history)``; ``history`` has per-epoch ``loss``, ``l0``, ``dead`` (fraction), and ``lam_native``.
    """
    X = _matrix(X, "X")
    if len(X) < 2:
        raise ValueError("X must hold at least 2 samples (rows)")
    lam = _real(lam, "the sparsity coefficient lam", 0.0)
    epochs, batch_size = _int(epochs, "epochs", 1), _int(batch_size, "batch_size", 1)
    lr = _real(lr, "lr", 0.0, open_low=True)
    seed = _int(seed, "seed", 0)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be True or False, got {normalize!r}")
    if isinstance(resample_at, (str, bytes, int)) or not isinstance(resample_at, Sequence):
        raise TypeError(f"resample_at must be a list of epoch numbers, got {resample_at!r}")
    resample_at = {_int(e, "every epoch of resample_at", 1) for e in resample_at}
    if any(e >= epochs for e in resample_at):
        raise ValueError(f"resample_at holds epochs {sorted(e for e in resample_at if e >= epochs)} beyond the last "
                         f"epoch ({epochs - 1})")
    dev = get_device(device)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    X = X.float()
    scale = (X.pow(2).sum(-1).mean() / X.shape[1]).sqrt() if normalize else torch.tensor(1.0)
    if scale == 0:
        raise ValueError("X is all zeros: there is nothing to reconstruct")
    Xs = (X / scale).to(dev)
    sae = SparseAutoencoder(X.shape[1], n_features=n_features, expansion=expansion, seed=seed).to(dev)
    sae.scale.fill_(float(scale))
    with torch.no_grad():
        sae.b_d.copy_(Xs.median(dim=0).values)  # geometric-median-like start (Bricken et al.)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    history = {"loss": [], "l0": [], "dead": [], "lam_native": lam * float(scale)}
    n = Xs.shape[0]
    fired = torch.zeros(sae.n_features, dtype=torch.bool, device=dev)
    for epoch in range(epochs):
        if epoch in resample_at:
            _resample(sae, Xs, fired, opt)
        fired = torch.zeros(sae.n_features, dtype=torch.bool, device=dev)
        perm = torch.randperm(n, generator=g).to(dev)
        tot, l0 = 0.0, 0.0
        for start in range(0, n, batch_size):
            xb = Xs[perm[start : start + batch_size]]
            x_hat, f = sae(xb)
            loss = sae_loss(xb, x_hat, f, sae.W_d, lam)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sae.normalize_decoder()
            fired |= (f > 0).any(0)
            tot += float(loss.detach()) * len(xb)
            l0 += float((f > 0).sum())
        history["loss"].append(tot / n)
        history["l0"].append(l0 / n)
        history["dead"].append(1 - float(fired.float().mean()))
    return sae.eval(), history


def training_loop(sae: SparseAutoencoder, X: torch.Tensor, lam: float, epochs: int = 1, batch_size: int = 256,
                  lr: float = 3e-3, seed: int = 0) -> torch.Tensor:
    """The plain training loop of :func:`train_sae`, on an SAE you built: returns the loss of every step ``[steps]``.

    For each epoch a new permutation ``torch.randperm(n, generator=g)`` (one generator ``g`` seeded with
    ``seed``, drawn once per epoch) orders the rows of X (in the SAE's units), which are taken in batches of
    ``batch_size`` (the last one may be smaller). Each step: encode ``f = ReLU(W_e (x − b_d) + b_e)``, decode
    ``x̂ = W_d f + b_d``, the loss ``L = mean_batch(‖x − x̂‖² + λ Σ_i f_i ‖W_d,i‖)`` (:func:`sae_loss`), one
    Adam step (``lr``; a fresh optimiser), then every decoder column renormalised to unit length (Bricken et al.
    2023). ``sae`` is trained in place. On an SAE built as :func:`train_sae` builds it (same ``seed``, ``b_d``
    set to the median of X) this is ``train_sae`` without rescaling or resampling.
    """
    _check_sae(sae)
    X = _matrix(X, "X")
    if X.shape[1] != sae.d:
        raise ValueError(f"X has width {X.shape[1]}, the SAE expects {sae.d}")
    lam = _real(lam, "the sparsity coefficient lam", 0.0)
    epochs, batch_size = _int(epochs, "epochs", 1), _int(batch_size, "batch_size", 1)
    lr = _real(lr, "lr", 0.0, open_low=True)
    g = torch.Generator().manual_seed(_int(seed, "seed", 0))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    X = X.to(sae.W_d.device, sae.W_d.dtype)
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=g).to(X.device)
        for start in range(0, len(X), batch_size):
            xb = X[perm[start : start + batch_size]]
            x_hat, f = sae(xb)
            loss = sae_loss(xb, x_hat, f, sae.W_d, lam)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sae.normalize_decoder()
            losses.append(float(loss.detach()))
    return torch.tensor(losses)


@torch.no_grad()
def _resample(sae: SparseAutoencoder, Xs: torch.Tensor, fired: torch.Tensor, opt) -> None:
    dead = (~fired).nonzero().flatten()
    if len(dead) == 0:
        return
    x_hat, _ = sae(Xs)
    err = ((Xs - x_hat) ** 2).sum(-1)
    idx = torch.multinomial(err / err.sum(), len(dead), replacement=len(dead) > len(err))
    dirs = Xs[idx] - sae.b_d
    dirs = dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-8)
    alive_norm = sae.W_e[fired].norm(dim=1).mean() if fired.any() else torch.tensor(1.0)
    sae.W_d[:, dead] = dirs.T
    sae.W_e[dead] = dirs * alive_norm * 0.2
    sae.b_e[dead] = 0
    for p in (sae.W_d, sae.W_e, sae.b_e):  # reset Adam's moments for the resampled parameters
        state = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                if p is sae.W_d:
                    state[key][:, dead] = 0
                else:
                    state[key][dead] = 0


def feature_recovery(V_true: torch.Tensor, W_d: torch.Tensor, threshold: float = 0.9):
    """For each planted feature, the best cosine similarity with any learned decoder column.

    ``V_true``: [n_true, D]; ``W_d``: [D, S]. Returns ``(max_cos [n_true], recovered_rate)`` where a feature
    counts as recovered when its best match exceeds ``threshold``.
    """
    V_true, W_d = _matrix(V_true, "V_true"), _matrix(W_d, "W_d")
    threshold = _real(threshold, "threshold (a cosine similarity)", -1.0, 1.0)
    if (V_true.norm(dim=1) == 0).any() or (W_d.norm(dim=0) == 0).any():
        raise ValueError("V_true rows and W_d columns must be non-zero directions (a zero vector has no cosine)")
    if V_true.shape[1] != W_d.shape[0]:
        raise ValueError(f"planted features have width {V_true.shape[1]} but decoder columns {W_d.shape[0]}")
    Vn = V_true / V_true.norm(dim=1, keepdim=True)
    Wn = W_d / W_d.norm(dim=0, keepdim=True)
    best = (Vn.to(Wn.device) @ Wn).max(dim=1).values.cpu()
    return best, float((best > threshold).float().mean())


@torch.no_grad()
def sae_metrics(sae: SparseAutoencoder, X: torch.Tensor) -> dict[str, float]:
    """L0, explained variance and the fraction of dead features of ``sae`` on rows of ``X`` (model units)."""
    _check_sae(sae)
    X = _matrix(X, "X")
    if X.shape[1] != sae.d:
        raise ValueError(f"X has width {X.shape[1]}, this SAE expects {sae.d}")
    if len(X) < 2:
        raise ValueError("explained variance needs at least 2 rows of X")
    X = X.float().to(sae.W_d.device)
    Xs = X / sae.scale
    x_hat, f = sae(Xs)
    resid = ((Xs - x_hat) ** 2).sum()
    total = ((Xs - Xs.mean(0)) ** 2).sum()
    return {
        "l0": float((f > 0).float().sum(-1).mean()),
        "explained_variance": float(1 - resid / total),
        "dead_fraction": float(1 - (f > 0).any(0).float().mean()),
        "mse": float(((Xs - x_hat) ** 2).sum(-1).mean()),
    }


# --------------------------------------------------------------------------------------------------
# Activations of the language model


@torch.no_grad()
def collect_activations(lm, tokens: torch.Tensor, site: str, skip_first: int = 4, batch_size: int = 16, progress=False):
    """Activations of ``site`` on rows of corpus ``tokens`` [n, seq]: returns ``[n × (seq − skip_first), D]``.

    The forward pass stops right after the site (``lm.run_to``: later layers are not run). The first
    ``skip_first`` positions of each row are dropped: they have little context and position 0 is the
    attention sink, whose activation is hundreds of times larger than the others.
    """
    _check_lm(lm)
    hooks.parse_site(lm, site)
    _tokens(lm, tokens)
    skip_first = _int(skip_first, "skip_first", 0)
    if not 0 <= skip_first < tokens.shape[1]:
        raise ValueError(f"skip_first must be in [0, {tokens.shape[1]}), got {skip_first}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    out = []
    starts = range(0, tokens.shape[0], batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"activations at {site}")
    for start in starts:
        act = lm.run_to(site, tokens[start : start + batch_size])
        out.append(act[:, skip_first:].reshape(-1, act.shape[-1]).float().cpu())
    return torch.cat(out)


def splice_sae(lm, sae: SparseAutoencoder, site: str, skip_first: int = 0):
    """A ``hooks.patch`` context that replaces ``site`` by the SAE's reconstruction at positions ≥ skip_first."""
    _check_lm(lm)
    _check_sae(sae)
    hooks.parse_site(lm, site)
    skip_first = _int(skip_first, "skip_first", 0)

    def edit(act):
        if act.shape[-1] != sae.d:
            raise ValueError(f"site {site!r} has width {act.shape[-1]}, the SAE expects {sae.d}: splice it where it was trained")
        new = act.clone()
        new[:, skip_first:] = sae.forward_native(act[:, skip_first:].float()).to(act.dtype)
        return new

    return hooks.patch(lm, {site: edit})


@torch.no_grad()
def ce_loss_recovered(lm, sae: SparseAutoencoder, tokens: torch.Tensor, site: str, skip_first: int = 4, mean_act=None):
    """Next-token cross-entropy (nats) clean, with the SAE spliced in, and with the site mean-ablated.

    Positions ≥ ``skip_first`` are replaced and scored. ``mean_act`` ([D], model units) is the ablation
    value (default: the mean of the site on ``tokens``). Returns a dict with ``ce_clean``, ``ce_sae``,
    ``ce_ablated`` and ``recovered = (CE_ablated − CE_sae) / (CE_ablated − CE_clean)``, NaN where mean-ablation
    does not raise the loss (CE_ablated ≤ CE_clean: the fraction is undefined, as in an untrained model).
    """
    _check_lm(lm)
    _check_sae(sae)
    hooks.parse_site(lm, site)
    _tokens(lm, tokens)
    skip_first = _int(skip_first, "skip_first", 0)
    if not skip_first < tokens.shape[1] - 1:
        raise ValueError(f"skip_first={skip_first} leaves no position to score in rows of {tokens.shape[1]} tokens")
    if mean_act is not None:
        mean_act = _matrix(mean_act, "mean_act", 1)
        if mean_act.shape != (sae.d,):
            raise ValueError(f"mean_act must be one activation [{sae.d}], got shape {list(mean_act.shape)}")
    tokens = tokens.to(lm.device)

    def ce(logits):
        lp = torch.log_softmax(logits[:, skip_first:-1].float(), -1)
        return float(-lp.gather(-1, tokens[:, skip_first + 1 :, None]).mean())

    with hooks.capture(lm, site) as cache:
        clean = ce(lm.model(input_ids=tokens).logits)
    if mean_act is None:
        mean_act = cache[site][:, skip_first:].reshape(-1, cache[site].shape[-1]).mean(0)
    with splice_sae(lm, sae, site, skip_first):
        spliced = ce(lm.model(input_ids=tokens).logits)

    def ablate(act):
        new = act.clone()
        new[:, skip_first:] = mean_act.to(act.dtype)
        return new

    with hooks.patch(lm, {site: ablate}):
        ablated = ce(lm.model(input_ids=tokens).logits)
    return {
        "ce_clean": clean,
        "ce_sae": spliced,
        "ce_ablated": ablated,
        # undefined (NaN) where ablating the site does not raise the loss, e.g. in an untrained model
        "recovered": (ablated - spliced) / (ablated - clean) if ablated > clean else float("nan"),
    }


def top_contexts(lm, tokens: torch.Tensor, feature_acts: torch.Tensor, skip_first: int = 4, k: int = 5, window: int = 8):
    """The ``k`` contexts where a feature fires most: ``[(activation, text before, the token)]``.

    ``feature_acts`` is the feature's activation for every row of :func:`collect_activations` (same order).
    """
    _check_lm(lm)
    _tokens(lm, tokens)
    skip_first, k, window = _int(skip_first, "skip_first", 0), _int(k, "k", 1), _int(window, "window", 0)
    if not skip_first < tokens.shape[1]:
        raise ValueError(f"skip_first must be in [0, {tokens.shape[1]}), got {skip_first}")
    seq = tokens.shape[1] - skip_first
    feature_acts = _matrix(feature_acts, "feature_acts", 1)
    if len(feature_acts) != tokens.shape[0] * seq:
        raise ValueError(f"feature_acts must have one value per collected position: {tokens.shape[0]} rows × {seq} "
                         f"positions = {tokens.shape[0] * seq}, got {len(feature_acts)} (same skip_first as collect_activations?)")
    if k > len(feature_acts):
        raise ValueError(f"k={k} is more than the {len(feature_acts)} positions")
    vals, idx = feature_acts.topk(k)
    out = []
    for v, i in zip(vals.tolist(), idx.tolist()):
        row, pos = divmod(i, seq)
        pos += skip_first
        before = lm.tokenizer.decode(tokens[row, max(0, pos - window) : pos])
        out.append((v, before, lm.tokenizer.decode(tokens[row, pos : pos + 1])))
    return out


@torch.no_grad()
def logit_effects(lm, direction: torch.Tensor, k: int = 5):
    """Tokens whose logits a feature's decoder direction raises and lowers most (direct path ``W_U v``)."""
    _check_lm(lm)
    direction = _matrix(direction, "direction", 1)
    if direction.shape != (lm.d_model,):
        raise ValueError(f"direction must be one vector [{lm.d_model}] (a decoder column), got shape {list(direction.shape)}")
    k = _int(k, "k", 1)
    W_U = lm.model.lm_head.weight
    scores = (W_U @ direction.to(W_U.device, W_U.dtype)).float().cpu()
    top = scores.topk(k)
    bottom = (-scores).topk(k)
    dec = lambda ids: [lm.tokenizer.decode([int(i)]) for i in ids]  # noqa: E731
    return list(zip(dec(top.indices), top.values.tolist())), list(zip(dec(bottom.indices), (-bottom.values).tolist()))


# --------------------------------------------------------------------------------------------------
# Sparse feature circuits


def _pair_check(clean_ids, corrupt_ids) -> None:
    if not (isinstance(clean_ids, torch.Tensor) and isinstance(corrupt_ids, torch.Tensor)):
        raise TypeError("clean_ids and corrupt_ids must be token id tensors [K, seq] (labkit.patching.tokenize_pair)")
    if clean_ids.dim() != 2 or clean_ids.shape != corrupt_ids.shape or clean_ids.numel() == 0:
        raise ValueError(
            f"clean and corrupted token ids differ in shape: {list(clean_ids.shape)} vs {list(corrupt_ids.shape)}; "
            f"patching needs [K, seq] pairs of the same token length (labkit.patching.tokenize_pair builds them)"
        )


def _nodes(sae: SparseAutoencoder, x: torch.Tensor, skip_first: int):
    """``(f, ε)`` with ``x = decode(f)·scale + ε``; at positions < skip_first ``f = 0`` (all of x is error)."""
    f = sae.encode(x.float() / sae.scale)
    if skip_first:
        f = f.clone()
        f[:, :skip_first] = 0
    return f, x.float() - sae.decode(f) * sae.scale


def feature_attribution(lm, sae: SparseAutoencoder, clean_ids, corrupt_ids, site: str, readout, skip_first: int = 1):
    """Attribution patching through an SAE spliced in at ``site`` (Marks et al. 2024).

    At every position ``x = x̂(f) + ε`` with ``f = encode(x)`` and ``ε = x − x̂`` treated as two nodes.
    Returns a dict: ``features`` [S] = Σ_positions ∇_f m ⊙ (f_p − f_c) (mean over pairs), ``error`` (scalar)
    = Σ ∇_ε m · (ε_p − ε_c), ``site_total`` = Σ ∇_x m · (x_p − x_c), and ``f_clean``/``f_corrupt`` [K, seq, S].
    Because x̂ is linear in f, ``features.sum() + error == site_total`` exactly. Positions before
    ``skip_first`` (default: the attention sink at position 0, which SAEs are not trained on) are not
    decomposed: their features are set to 0 and the whole activation counts as error.
    """
    _check_lm(lm)
    _check_sae(sae)
    hooks.parse_site(lm, site)
    _pair_check(clean_ids, corrupt_ids)
    _readout(readout)
    skip_first = _int(skip_first, "skip_first", 0)

    def nodes(x):
        return _nodes(sae, x, skip_first)

    with torch.no_grad():
        x_p = lm.run_to(site, corrupt_ids)
    f_p, e_p = nodes(x_p)
    x_p = x_p.float()
    store = {}

    def edit(act):
        f, e = nodes(act.detach())
        f = f.clone().requires_grad_(True)
        e = e.clone().requires_grad_(True)
        store.update(f=f, e=e, x=act.detach().float())
        return (sae.decode(f) * sae.scale + e).to(act.dtype)

    with torch.enable_grad(), hooks.patch(lm, {site: edit}), hooks.capture(lm, site, detach=False) as cache2:
        m = readout(lm.last_logits(input_ids=clean_ids)[:, None]).sum()
        gf, ge, gx = torch.autograd.grad(m, [store["f"], store["e"], cache2[site]])
    K = clean_ids.shape[0]
    feats = (gf * (f_p - store["f"].detach())).sum((0, 1)) / K
    err = (ge * (e_p - store["e"].detach())).sum() / K
    total = (gx.float() * (x_p - store["x"])).sum() / K
    return {
        "features": feats.detach().cpu(),
        "error": float(err.detach()),
        "site_total": float(total.detach()),
        "f_clean": store["f"].detach().cpu(),
        "f_corrupt": f_p.detach().cpu(),
    }


@torch.no_grad()
def feature_patching(
    lm, sae: SparseAutoencoder, clean_ids, corrupt_ids, site: str, features: Sequence[int], readout, skip_first: int = 1
):
    """Exact effect of patching single SAE features: ``m(x_c | f_i = f_i(x_p)) − m(x_c)`` for each ``i``.

    With the SAE spliced in at ``site`` (``x = x̂(f) + ε``, the error ε held at its clean value), feature
    ``i`` is set to its corrupted value at every position; one batched forward pass for all features.
    Returns ``[len(features)]`` (mean over the K pairs): the ground truth for :func:`feature_attribution`
    (with the same ``skip_first``).
    """
    _check_lm(lm)
    _check_sae(sae)
    hooks.parse_site(lm, site)
    _pair_check(clean_ids, corrupt_ids)
    _readout(readout)
    skip_first = _int(skip_first, "skip_first", 0)
    if isinstance(features, torch.Tensor):
        if features.is_floating_point() or features.dtype == torch.bool:
            raise TypeError(f"features must be integer feature indices, got dtype {features.dtype}")
        features = features.flatten().tolist()
    if isinstance(features, (str, bytes)) or not isinstance(features, Sequence):
        raise TypeError(f"features must be a list of feature indices, got {type(features).__name__}")
    if any(isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in features):
        raise TypeError("features must be integer feature indices")
    features = torch.as_tensor(list(features)).long()
    if len(features) == 0:
        raise ValueError("no features given")
    if (features < 0).any() or (features >= sae.n_features).any():
        raise ValueError(f"feature indices must lie in [0, {sae.n_features})")
    f_p, _ = _nodes(sae, lm.run_to(site, corrupt_ids), skip_first)  # [K, seq, S]
    K, B = clean_ids.shape[0], len(features)
    base = readout(lm.last_logits(input_ids=clean_ids)[:, None]).double().cpu()
    rows_feat = features.repeat_interleave(K).to(f_p.device)  # row j*K + k patches feature j
    src = f_p.repeat(B, 1, 1)

    def edit(act):
        f, err = _nodes(sae, act, skip_first)
        rows = torch.arange(f.shape[0], device=f.device)
        f[rows, :, rows_feat] = src[rows, :, rows_feat]
        return (sae.decode(f) * sae.scale + err).to(act.dtype)

    # one batched pass for all features, started at the site's layer (labkit's one intervention engine)
    out = run_copies(lm, clean_ids, B, {site: edit}, readout).cpu()
    return (out - base).mean(1).float()
