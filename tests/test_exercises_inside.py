"""The implement-it-yourself exercises of notebooks 05-08 (issue 17): a correct solution written differently from
the notebook's (another loop order, another vectorisation) passes its check."""

from __future__ import annotations

import numpy as np
import torch

from labkit import check


def test_probe_selectivity_accepts_a_per_layer_loop(capsys):
    from labkit.llm_explain import probe_scores

    def probe_selectivity(X, y, word_types, train_idx, test_idx, l2=1.0, seed=0):
        draws = np.random.default_rng(seed).integers(0, 2, len(set(word_types)))
        rank = {w: k for k, w in enumerate(sorted(set(word_types)))}
        control = torch.from_numpy(draws[[rank[w] for w in word_types]])
        flat = X.reshape(-1, *X.shape[-2:])  # one probe per layer, in a Python loop
        rows = []
        for labels in (y, control):
            accs = [float(((probe_scores(x[train_idx], labels[train_idx], x[test_idx], l2) > 0).long()
                           == labels[test_idx]).float().mean()) for x in flat]
            rows.append(torch.tensor(accs, dtype=torch.float64).reshape(X.shape[:-2]))
        return torch.stack([rows[0], rows[1], rows[0] - rows[1]])

    assert check.probe_selectivity(probe_selectivity) is probe_selectivity
    assert "✓ probe_selectivity" in capsys.readouterr().out


def test_steered_scores_accepts_a_hook_that_edits_in_place_and_probabilities(capsys):
    from labkit.lm import hooks

    def steered_scores(lm, prompts, v, c, layer, positive, negative, positions=None):
        def edit(act):
            out = act.clone()
            where = slice(None) if positions is None else positions
            out[:, where, :] += c * v.to(out.dtype)
            return out

        with torch.no_grad(), hooks.patch(lm, {f"resid_post.{layer}": edit}):
            p = torch.softmax(lm.next_token_logits(prompts).double(), dim=-1)  # probabilities, summed, then logs
        return (p[:, [lm.token_id(w) for w in positive]].sum(-1).log()
                - p[:, [lm.token_id(w) for w in negative]].sum(-1).log()).float()

    assert check.steered_scores(steered_scores) is steered_scores
    assert "✓ steered_scores" in capsys.readouterr().out


def test_sae_train_loop_accepts_linear_layers_and_an_index_list(capsys):
    from labkit.sae import sae_loss

    def sae_train_loop(params, X, lam, epochs, batch_size, lr, seed=0):
        gen = torch.Generator().manual_seed(seed)
        adam = torch.optim.Adam([params[k] for k in ("W_d", "W_e", "b_e", "b_d")], lr=lr)
        out = []
        for _ in range(epochs):
            order = torch.randperm(X.shape[0], generator=gen).tolist()
            batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
            for rows in batches:
                x = X[rows]
                f = torch.nn.functional.linear(x - params["b_d"], params["W_e"], params["b_e"]).clamp_min(0)
                x_hat = torch.nn.functional.linear(f, params["W_d"], params["b_d"])
                adam.zero_grad()
                loss = sae_loss(x, x_hat, f, params["W_d"], lam)
                loss.backward()
                adam.step()
                with torch.no_grad():
                    params["W_d"].copy_(torch.nn.functional.normalize(params["W_d"], dim=0))
                out.append(loss.detach())
        return torch.stack(out)

    assert check.sae_train_loop(sae_train_loop) is sae_train_loop
    assert "✓ sae_train_loop" in capsys.readouterr().out


def test_neuron_nie_accepts_all_neurons_of_a_layer_in_one_batched_pass(capsys):
    from labkit.lm import hooks

    def neuron_nie(lm, null_ids, set_ids, anti, stereo, neurons, position):
        K = len(null_ids)

        def log_y(ids, edits=None):  # from log-probabilities instead of logits
            with torch.no_grad(), hooks.patch(lm, edits or {}):
                logp = torch.log_softmax(lm.model(input_ids=ids).logits[:, -1].double(), -1)
            k = torch.arange(len(ids)) % K
            return logp[torch.arange(len(ids)), anti[k]] - logp[torch.arange(len(ids)), stereo[k]]

        base = log_y(null_ids)
        out = torch.empty(len(neurons), dtype=torch.float64)
        for layer in sorted({L for L, _ in neurons}):
            which = [j for j, (L, _) in enumerate(neurons) if L == layer]
            idx = torch.tensor([neurons[j][1] for j in which])
            with torch.no_grad(), hooks.capture(lm, f"mlp_post.{layer}") as cache:
                lm.model(input_ids=set_ids)
            z_set = cache[f"mlp_post.{layer}"][:, position][:, idx]  # [K, m]

            def edit(act, idx=idx, z_set=z_set):  # row r = neuron r // K on prompt r % K
                new = act.clone()
                r = torch.arange(act.shape[0])
                new[r, position, idx[r // K]] = z_set[r % K, r // K]
                return new

            ly = log_y(null_ids.repeat(len(idx), 1), {f"mlp_post.{layer}": edit}).view(len(idx), K)
            out[which] = (ly - base).exp().mean(-1) - 1
        return out

    assert check.neuron_nie(neuron_nie) is neuron_nie
    assert "✓ neuron_nie" in capsys.readouterr().out


def test_the_lent_sae_train_loop_trains_the_parameters_in_place(capsys):
    from labkit import sae

    def sae_train_loop(params, X, lam, epochs, batch_size, lr, seed=0):
        raise NotImplementedError()

    lent = check.sae_train_loop(sae_train_loop)
    X, _, _ = sae.planted_features(n_samples=128, d=8, n_features=12, seed=0)
    start = sae.SparseAutoencoder(8, expansion=2, seed=0)
    params = {name: p.detach().clone().requires_grad_() for name, p in start.named_parameters()}
    losses = lent(params, X, 0.1, 2, 32, 1e-2)
    assert losses.shape == (8,) and not torch.equal(params["W_d"], start.W_d)  # the notebook reads the trained W_d
    assert torch.allclose(params["W_d"].norm(dim=0), torch.ones(16), atol=1e-5)
