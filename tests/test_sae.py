"""labkit.sae: the loss in closed form, recovery of planted features, superposition, SAE attribution, bad input."""

from __future__ import annotations

import pytest
import torch

from labkit import datasets, patching, sae
from labkit.lm import hooks


def test_dictionary_size_must_be_a_positive_multiple():
    assert sae.SparseAutoencoder(8, n_features=32).n_features == 32
    assert sae.SparseAutoencoder(8, expansion=3).n_features == 24
    for bad in (30, 0, -8):
        with pytest.raises(ValueError, match="positive multiple"):
            sae.SparseAutoencoder(8, n_features=bad)
    with pytest.raises(ValueError, match="positive integer"):
        sae.SparseAutoencoder(8, expansion=0)
    with pytest.raises(ValueError, match="exactly one"):
        sae.SparseAutoencoder(8)
    with pytest.raises(ValueError, match="expects 8"):
        sae.SparseAutoencoder(8, expansion=1).encode(torch.zeros(2, 9))


def test_loss_closed_form():
    x = torch.tensor([[1.0, 2.0]])
    x_hat = torch.tensor([[0.0, 0.0]])
    f = torch.tensor([[1.0, 2.0, 0.0]])
    W_d = torch.tensor([[3.0, 0.0, 1.0], [4.0, 1.0, 0.0]])  # column norms 5, 1, 1
    assert sae.sae_loss(x, x_hat, f, W_d, lam=0.5).item() == pytest.approx(5 + 0.5 * (1 * 5 + 2 * 1))


def test_planted_features_are_recovered():
    X, V, C = sae.planted_features(n_samples=2048, d=16, n_features=32, p_active=0.05, seed=1)
    model, hist = sae.train_sae(X, expansion=4, lam=0.3, epochs=20, batch_size=64, lr=1e-2, seed=0, device="cpu")
    best, rate = sae.feature_recovery(V, model.W_d.detach())
    assert rate >= 0.8, f"recovered only {rate:.0%}"
    assert torch.allclose(model.W_d.norm(dim=0), torch.ones(model.n_features), atol=1e-4)
    m = sae.sae_metrics(model, X)
    assert m["explained_variance"] > 0.8 and m["l0"] < 8
    # a decoder made of the true features recovers all of them
    assert sae.feature_recovery(V, V.T)[1] == 1.0


def test_dense_toy_model_keeps_the_two_most_important_features():
    W, _ = sae.toy_superposition(n_features=5, d_hidden=2, sparsity=0.0, steps=1500, seed=0)
    assert sorted(W.norm(dim=0).topk(2).indices.tolist()) == [0, 1]
    W_s, _ = sae.toy_superposition(n_features=5, d_hidden=2, sparsity=0.9, steps=1500, seed=0)
    assert int((W_s.norm(dim=0) > 0.5).sum()) > 2
    with pytest.raises(ValueError, match="sparsity"):
        sae.toy_superposition(sparsity=1.0)


def test_collect_activations_stops_early_but_matches_a_full_pass(lm):
    tokens = datasets.corpus_token_batches(lm, seq_len=16, max_tokens=32)
    X = sae.collect_activations(lm, tokens, "resid_post.2", skip_first=3)
    with torch.no_grad(), hooks.capture(lm, "resid_post.2") as cache:
        lm.model(input_ids=tokens)
    assert torch.allclose(X, cache["resid_post.2"][:, 3:].reshape(-1, lm.d_model), atol=1e-5)
    with pytest.raises(ValueError, match="unknown site"):
        sae.collect_activations(lm, tokens, "resid.2")


def test_feature_attribution_adds_up_and_matches_exact_patching(lm):
    torch.manual_seed(0)
    tokens = datasets.corpus_token_batches(lm, seq_len=32, max_tokens=128)
    X = sae.collect_activations(lm, tokens, "resid_post.3", skip_first=4)
    model, _ = sae.train_sae(X, expansion=1, lam=3.0, epochs=3, seed=0, device="cpu")
    clean, patch = patching.tokenize_pair(lm, "The nurse said that", "The man said that")
    metric = patching.logit_diff_readout(lm.token_id(" he"), lm.token_id(" she"))
    fa = sae.feature_attribution(lm, model, clean, patch, "resid_post.3", metric)
    assert fa["features"].sum().item() + fa["error"] == pytest.approx(fa["site_total"], rel=1e-3, abs=1e-4)
    top = fa["features"].abs().topk(3).indices.tolist()
    exact = sae.feature_patching(lm, model, clean, patch, "resid_post.3", top, metric)
    assert torch.sign(exact).eq(torch.sign(fa["features"][top])).all()
    with pytest.raises(ValueError, match="feature indices"):
        sae.feature_patching(lm, model, clean, patch, "resid_post.3", [10**6], metric)
    with pytest.raises(ValueError, match="same token length"):
        sae.feature_attribution(lm, model, clean, patch[:, :3], "resid_post.3", metric)
    with pytest.raises(ValueError, match="unknown site"):
        sae.feature_attribution(lm, model, clean, patch, "resid.3", metric)


def test_lambda_is_in_the_units_of_the_inputs_unless_normalised():
    """λ multiplies a penalty linear in x and an error quadratic in x: rescaling x by 1/s turns λ into λ·s in the
    units of x. The default (normalize=False) is the lecture's loss on x as given."""
    X, V, _ = sae.planted_features(n_samples=2048, d=16, n_features=32, p_active=0.05, seed=1)
    s = float((X.pow(2).sum(-1).mean() / X.shape[1]).sqrt())
    raw, h_raw = sae.train_sae(X, expansion=4, lam=0.3, epochs=20, batch_size=64, lr=1e-2, seed=0)
    norm, h_norm = sae.train_sae(X, expansion=4, lam=0.3, epochs=20, batch_size=64, lr=1e-2, seed=0, normalize=True)
    assert float(raw.scale) == 1.0 and h_raw["lam_native"] == pytest.approx(0.3)
    assert float(norm.scale) == pytest.approx(s, rel=1e-5) and h_norm["lam_native"] == pytest.approx(0.3 * s, rel=1e-5)
    # the same number λ = 0.3 is a 3x weaker penalty after normalisation (s ≈ 0.32 here): L0 higher, recovery lost
    assert sae.sae_metrics(norm, X)["l0"] > 2 * sae.sae_metrics(raw, X)["l0"]
    assert sae.feature_recovery(V, raw.W_d.detach())[1] >= 0.9
    assert sae.feature_recovery(V, norm.W_d.detach())[1] < 0.5
    # λ in native units decides: normalised λ = 1 is native λ·s ≈ 0.32, and recovers the features like raw λ = 0.3
    norm1, h1 = sae.train_sae(X, expansion=4, lam=1.0, epochs=20, batch_size=64, lr=1e-2, seed=0, normalize=True)
    assert h1["lam_native"] == pytest.approx(s, rel=1e-5)
    assert sae.feature_recovery(V, norm1.W_d.detach())[1] >= 0.9


def test_train_sae_refuses_settings_that_train_nonsense():
    X = torch.randn(64, 4)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        sae.train_sae(X, expansion=1, lam=-1)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        sae.train_sae(X, expansion=1, epochs=-1)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        sae.train_sae(X, expansion=1, epochs=0)
    with pytest.raises(ValueError, match="X contains NaN"):
        sae.train_sae(torch.full((8, 4), float("nan")), expansion=1)
    with pytest.raises(TypeError, match="normalize must be True or False"):
        sae.train_sae(X, expansion=1, normalize="yes")


def test_training_loop_is_train_sae_without_rescaling_or_resampling():
    S = sae
    X, _, _ = S.planted_features(n_samples=300, d=8, n_features=12, p_active=0.1, seed=2)
    ref, hist = S.train_sae(X, expansion=2, lam=0.2, epochs=3, batch_size=64, lr=1e-2, seed=4)
    model = S.SparseAutoencoder(8, expansion=2, seed=4)
    with torch.no_grad():
        model.b_d.copy_(X.median(dim=0).values)
    losses = S.training_loop(model, X, 0.2, epochs=3, batch_size=64, lr=1e-2, seed=4)
    assert losses.shape == (3 * 5,)  # 300 rows in batches of 64: 5 steps per epoch, the last of 44 rows
    torch.testing.assert_close(model.W_d.detach(), ref.W_d.detach())
    sizes = torch.tensor([64.0, 64, 64, 64, 44])
    per_epoch = (losses.view(3, 5) * sizes).sum(1) / 300  # train_sae records the per-sample mean of each epoch
    torch.testing.assert_close(per_epoch, torch.tensor(hist["loss"]), rtol=1e-5, atol=1e-6)
    assert torch.allclose(model.W_d.norm(dim=0), torch.ones(16), atol=1e-5)
    with pytest.raises(ValueError, match="width"):
        S.training_loop(model, torch.randn(10, 5), 0.1)


def test_loss_recovered_is_undefined_where_ablation_does_not_raise_the_loss(tmp_path):
    """In an untrained model mean-ablating the last residual stream lowers the next-token loss (flatter predictions):
    the fraction recovered (CE_abl − CE_sae) / (CE_abl − CE_clean) is undefined, so it is NaN (notebook 07 runs on
    another model), while the three cross-entropies are still reported; the clean one is the model's own loss."""
    import math

    from other_model import save_other_model

    from labkit.lm import load_lm

    other = load_lm(str(save_other_model(tmp_path)))
    tokens = datasets.corpus_token_batches(other, seq_len=32, max_tokens=32 * 4)
    site = f"resid_post.{other.n_layers - 1}"
    r = sae.ce_loss_recovered(other, sae.SparseAutoencoder(other.d_model, expansion=1, seed=0), tokens, site, skip_first=1)
    assert r["ce_ablated"] < r["ce_clean"] - 0.01 and math.isnan(r["recovered"])
    with torch.no_grad():
        logits = other.model(input_ids=tokens).logits[:, 1:-1]
    own = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 2:].flatten())
    assert r["ce_clean"] == pytest.approx(float(own), rel=1e-5)
