"""labkit.steering: reading vectors against closed forms, activation addition against the unsteered model."""

import numpy as np
import pytest
import torch

from labkit import steering
from labkit.lm import hooks

PAIRS = (
    ["The food was delicious.", "I loved the film.", "The staff were friendly.", "What a beautiful day."],
    ["The food was disgusting.", "I hated the film.", "The staff were rude.", "What a horrible day."],
)


def test_last_token_states_match_hidden_states_and_single_runs(lm):
    prompts = ["The food was delicious.", "Hi", "I loved every minute of the long film."]
    H = lm.last_token_states(prompts, layers=[0, 5, 29])
    assert H.shape == (3, 3, lm.d_model)
    for i, p in enumerate(prompts):
        ids = torch.tensor([lm.encode(p)])
        with torch.no_grad():
            hs = lm.model(ids, output_hidden_states=True).hidden_states
        # hidden_states[L + 1] is resid_post.L (the last entry has the final norm applied)
        torch.testing.assert_close(H[0, i], hs[1][0, -1], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(H[1, i], hs[6][0, -1], atol=1e-3, rtol=1e-4)
        alone = lm.last_token_states([p], layers=[29])[0, 0]
        torch.testing.assert_close(H[2, i], alone, atol=1e-3, rtol=1e-4)


def test_pair_states_split_the_sides(lm):
    pos, neg = PAIRS
    Hp, Hn = steering.pair_states(lm, pos, neg, layers=[2, 7])
    H = lm.last_token_states(pos + neg, layers=[2, 7])
    assert Hp.shape == Hn.shape == (2, 4, lm.d_model)
    assert torch.equal(Hp, H[:, :4]) and torch.equal(Hn, H[:, 4:])


def test_token_states_shape(lm):
    S = steering.token_states(lm, "The food was delicious.", layers=[3, 4])
    assert S.shape == (2, len(lm.encode("The food was delicious.")), lm.d_model)


def test_diff_of_means_and_pca_against_closed_forms():
    from sklearn.decomposition import PCA

    g = torch.Generator().manual_seed(0)
    neg = torch.randn(2, 50, 8, generator=g)
    neg[..., 3] = 0.1 * neg[..., 3]  # the planted axis separates the two sides completely
    axis = torch.zeros(8)
    axis[3] = 1.0
    pos = neg + (2 + torch.rand(2, 50, 1, generator=g)) * axis + 0.01 * torch.randn(2, 50, 8, generator=g)
    dom = steering.diff_of_means(pos, neg)
    torch.testing.assert_close(dom.norm(dim=-1), torch.ones(2))
    raw = steering.diff_of_means(pos, neg, normalize=False)
    torch.testing.assert_close(raw, pos.mean(1) - neg.mean(1))
    v = steering.pca_reading_vector(pos, neg)
    for layer in range(2):
        d = (pos[layer] - neg[layer]).numpy()
        # ground truth: scikit-learn's PCA on the symmetrised differences {d_i, −d_i}
        sk = torch.tensor(PCA(1).fit(np.vstack([d, -d])).components_[0], dtype=torch.float32)
        assert abs(float(torch.dot(v[layer], sk))) > 0.9999
        assert float(torch.dot((pos[layer] - neg[layer]).mean(0), v[layer])) > 0  # sign convention
    # the planted axis is recovered, and held-out accuracy is perfect
    assert (v[:, 3].abs() > 0.99).all()
    acc = steering.reading_accuracy(v, pos[:, :30], neg[:, :30], pos[:, 30:], neg[:, 30:])
    assert torch.equal(acc["pair"], torch.ones(2)) and torch.equal(acc["single"], torch.ones(2))
    # a random direction is near chance on pairs
    rand = steering.reading_accuracy(torch.randn(2, 8, generator=g) * torch.tensor([1.0] * 3 + [0.0] + [1.0] * 4),
                                     pos[:, :30], neg[:, :30], pos[:, 30:], neg[:, 30:])
    assert (rand["pair"] < 0.9).all()


def test_add_steering():
    act = torch.randn(2, 4, 3)
    v = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(steering.add_steering(act, v, 2.0), act + 2 * v)
    out = steering.add_steering(act, v, 1.0, positions=[-1])
    torch.testing.assert_close(out[:, :-1], act[:, :-1])
    torch.testing.assert_close(out[:, -1], act[:, -1] + v)
    assert torch.equal(steering.add_steering(act, v, 0.0), act)


def test_c_zero_is_exactly_the_unsteered_model(lm):
    v = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0)) * 10
    prompt = "Write one sentence about your weekend."
    enc = lm.batch([lm.chat_prompt(prompt)])
    with torch.no_grad():
        plain = lm.model(**enc).logits
        with steering.steered(lm, v, 0.0, layers=[3, 12]):
            zero = lm.model(**enc).logits
            g_zero = lm.generate(prompt, max_new_tokens=8)
        with steering.steered(lm, v, 1.0, layers=[3]):
            moved = lm.model(**enc).logits
    assert torch.equal(plain, zero)
    assert g_zero == lm.generate(prompt, max_new_tokens=8)
    assert not torch.equal(plain, moved)


def test_steering_direction_and_reversal(lm):
    pos, neg = PAIRS
    layer = 12
    H = lm.last_token_states(pos + neg, layers=[layer])[0]
    v = steering.diff_of_means(H[:4], H[4:], normalize=False)
    prompts = ["The weather this weekend was", "We watched the movie last night and it was"]
    good, bad = [" great", " good", " wonderful"], [" terrible", " bad", " awful"]
    d = steering.dose_response(lm, prompts, v, [-6.0, 0.0, 6.0], [layer], good, bad).mean(1)
    assert d[0] < d[1] < d[2], d  # positive c raises the score, negative c lowers it (reversal)
    torch.testing.assert_close(d[1], steering.behaviour_score(lm, prompts, good, bad).mean())


def _hook_counts(lm):
    # transformers registers hooks of its own (to record hidden states); count ours by difference
    return [(len(b._forward_hooks), len(b._forward_pre_hooks)) for b in lm.model.model.layers]


def test_hooks_removed_after_steering_also_on_error(lm):
    before = _hook_counts(lm)
    v = torch.zeros(lm.d_model)
    with pytest.raises(RuntimeError):
        with steering.steered(lm, v, 1.0, layers=[2]):
            assert _hook_counts(lm) != before
            raise RuntimeError("boom")
    assert _hook_counts(lm) == before


# -- bad input ----------------------------------------------------------------------------------------


def test_bad_input(lm):
    before = _hook_counts(lm)
    with pytest.raises(ValueError, match="equal counts"):
        steering.check_pairs(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="same shape"):
        steering.diff_of_means(torch.randn(5, 4), torch.randn(4, 4))
    with pytest.raises(ValueError, match="same shape"):
        steering.pca_reading_vector(torch.randn(5, 4), torch.randn(4, 4))
    with pytest.raises(ValueError, match="equal counts"):
        steering.pair_states(lm, ["The food was good.", "Nice."], ["The food was bad."])
    with pytest.raises(TypeError):
        steering.check_pairs("a", "b")
    with pytest.raises(ValueError, match="non-empty"):
        steering.token_states(lm, "")
    with pytest.raises(ValueError, match="width"):
        with steering.steered(lm, torch.zeros(100), 1.0, layers=[3]):
            pass
    with pytest.raises(ValueError, match="width"):
        steering.add_steering(torch.zeros(1, 2, 8), torch.zeros(7), 1.0)
    with pytest.raises(ValueError, match="out of range"):
        with steering.steered(lm, torch.zeros(lm.d_model), 1.0, layers=[lm.n_layers]):
            pass
    with pytest.raises(ValueError, match="out of range"):
        lm.last_token_states(["hello"], layers=[-1])
    with pytest.raises(ValueError, match="non-empty"):
        lm.last_token_states(["hello", ""])
    with pytest.raises(ValueError, match="empty"):
        lm.last_token_states([])
    with pytest.raises(ValueError, match="context"):
        lm.last_token_states(["hello " * (lm.max_length + 10)])
    with pytest.raises(ValueError, match="finite"):
        with steering.steered(lm, torch.zeros(lm.d_model), float("nan"), layers=[3]):
            pass
    assert _hook_counts(lm) == before  # nothing was left behind


def test_contrast_pairs_data():
    pos, neg = steering.load_contrast_pairs()
    assert len(pos) == len(neg) == 64 and len(set(pos)) == 64
    steering.check_pairs(pos, neg)


def test_steered_scores_against_a_raw_forward_hook(lm):
    """Ground truth: a plain PyTorch forward hook on decoder block `layer` (no labkit hooks), the score by hand."""
    prompts = ["The weather this weekend was", "Our trip to the mountains was nice and the hotel was"]
    good, bad = [" great", " good"], [" terrible", " bad"]
    v = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(1)) * 5
    layer = 8

    def by_hand(c, last_only):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            h = h.clone()
            if last_only:
                h[:, -1] += c * v
            else:
                h += c * v
            return (h, *output[1:]) if isinstance(output, tuple) else h

        handle = lm.model.model.layers[layer].register_forward_hook(hook)
        try:
            enc = lm.batch(prompts)
            with torch.no_grad():
                logits = lm.model(**enc).logits[:, -1]
        finally:
            handle.remove()
        p = torch.softmax(logits.double(), -1)
        ids = lambda ws: [lm.token_id(w) for w in ws]  # noqa: E731
        return (p[:, ids(good)].sum(-1).log() - p[:, ids(bad)].sum(-1).log()).float()

    for c, positions in [(3.0, None), (-4.0, [-1]), (0.0, None)]:
        ours = steering.steered_scores(lm, prompts, v, c, layer, good, bad, positions=positions)
        torch.testing.assert_close(ours, by_hand(c, positions is not None), atol=2e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="out of range"):
        steering.steered_scores(lm, prompts, v, 1.0, lm.n_layers, good, bad)
