"""labkit.mediation: effects against closed forms and brute force, the professions data, bad input."""

from __future__ import annotations

import pytest
import torch

from labkit import datasets, mediation
from labkit.lm import hooks, interventions


def test_total_effect_closed_form_and_bad_input():
    p_null = torch.tensor([0.031, 0.224], dtype=torch.float64)
    p_set = torch.tensor([0.45, 0.0344], dtype=torch.float64)
    expected = (0.45 / 0.0344) / (0.031 / 0.224) - 1
    assert float(mediation.total_effect(p_null, p_set)) == pytest.approx(expected, rel=1e-9)
    assert float(mediation.total_effect(p_null, p_null)) == 0
    with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
        mediation.total_effect(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        mediation.total_effect(torch.tensor([1.5, 0.2]), p_set)
    with pytest.raises(ValueError, match="positive"):
        mediation.effect_from_ratio(torch.tensor([1.0]), torch.tensor([0.0]))


def test_concentration_closed_forms_and_bad_input():
    assert mediation.concentration(torch.ones(200), top=0.01) == pytest.approx(0.01)
    one = torch.zeros(300)
    one[17] = -2.0  # a single component with a negative effect carries everything
    assert mediation.concentration(one, top=0.01) == pytest.approx(1.0)
    assert mediation.concentration(torch.tensor([3.0, 1.0, 0.0, 0.0]), top=0.25) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="top"):
        mediation.concentration(torch.ones(5), top=0)
    with pytest.raises(ValueError, match="zero"):
        mediation.concentration(torch.zeros(5))


def test_pronouns_follow_the_stereotype(lm):
    anti, stereo = mediation.pronoun_ids(lm, [-0.9, 0.8])
    he, she = lm.token_id(" he"), lm.token_id(" she")
    assert stereo.tolist() == [she, he] and anti.tolist() == [he, she]
    assert mediation.set_gender_word({"stereotypical": 0.8}) == "woman"
    assert mediation.set_gender_word({"stereotypical": -0.9}) == "man"


def test_bad_inputs_are_refused_with_the_reason(lm):
    several = [{"word": "police officer", "definitional": 0.0, "stereotypical": 0.5}]
    with pytest.raises(ValueError, match="'police officer' is 2 tokens"):
        mediation.mediation_inputs(lm, several, ["The {} said that"])
    with pytest.raises(ValueError, match="'police officer' is 2 tokens"):
        mediation.total_effects(lm, several, ["The {} said that"])
    with pytest.raises(ValueError, match="exactly one"):
        mediation.total_effects(lm, [{"word": "nurse", "definitional": 0, "stereotypical": -0.9}], ["The {} and {}"])
    # clean and corrupted prompts of different token lengths: the message names both prompts and lengths
    with pytest.raises(ValueError, match=r"'The nurse said that' has 4 tokens .* 'The police officer said that' has 5"):
        mediation.tokenize_pairs(lm, ["The nurse said that"], ["The police officer said that"])
    with pytest.raises(ValueError, match="one token length"):
        mediation.tokenize_pairs(lm, ["The nurse said that", "The nurse went home because"],
                                 ["The man said that", "The man went home because"])
    with pytest.raises(ValueError, match="one set-gender prompt per null prompt"):
        mediation.tokenize_pairs(lm, ["The nurse said that"], [])


@pytest.fixture(scope="module")
def pair(lm):
    profs = [p for p in datasets.load_professions() if p["word"] in ("nurse", "president")]
    return mediation.mediation_inputs(lm, profs, ["The {} said that"])


def test_bad_neuron_indices_are_refused(lm, pair):
    null_ids, set_ids, anti, stereo = pair
    with pytest.raises(IndexError, match="does not fit 'mlp_post.3'"):
        mediation.neuron_nie(lm, null_ids, set_ids, anti, stereo, [(3, 5000)], position=1)
    with pytest.raises(ValueError, match="one \\(anti, stereo\\) pronoun pair per prompt"):
        mediation.neuron_nie(lm, null_ids, set_ids, anti[:1], stereo, [(3, 5)], position=1)


def test_total_effects_match_direct_probabilities(lm):
    profs = [p for p in datasets.load_professions() if p["word"] in ("nurse", "president", "teacher")]
    templates = ["The {} said that", "The {} went home because"]
    out = mediation.total_effects(lm, profs, templates, batch_size=4)  # shared beginnings, several batches
    he, she = lm.token_id(" he"), lm.token_id(" she")
    for i, t in enumerate(templates):
        for j, p in enumerate(profs):
            pr = lm.next_token_probs([t.format(p["word"]), t.format(mediation.set_gender_word(p))]).double()
            cols = [he, she] if p["stereotypical"] <= 0 else [she, he]  # (anti, stereo)
            te = mediation.total_effect(pr[0, cols], pr[1, cols])
            assert float(out["te"][i, j]) == pytest.approx(float(te), rel=1e-3)


def test_intervening_on_the_whole_input_is_the_total_effect(lm, pair):
    null_ids, set_ids, anti, stereo = pair
    y_null = mediation.log_ratio(lm, null_ids, anti, stereo).exp()
    y_set = mediation.log_ratio(lm, set_ids, anti, stereo).exp()
    te = (y_set / y_null - 1).mean()
    eff = mediation.joint_effects(lm, null_ids, set_ids, anti, stereo, [[("resid_pre.0", (slice(None),))]])
    assert eff["nie"].item() == pytest.approx(te.item(), rel=1e-3)  # the mediator is everything: NIE = TE
    assert eff["nde"].item() == pytest.approx(0.0, abs=1e-3)  # nothing is left for a direct effect


def test_batched_neuron_nie_equals_one_pass_per_neuron(lm, pair):
    null_ids, set_ids, anti, stereo = pair
    neurons = [(3, 5), (3, 700), (10, 42), (20, 1000), (29, 7)]
    batched = mediation.neuron_nie(lm, null_ids, set_ids, anti, stereo, neurons, position=1, batch_size=5)
    single = mediation.neuron_nie(lm, null_ids, set_ids, anti, stereo, neurons, position=1, batch_size=1,
                                  skip_layers=False)
    assert torch.allclose(batched, single, atol=1e-5)
    # brute force with neuron_edit and hooks.patch for the first neuron
    L, i = neurons[0]
    with torch.no_grad(), hooks.capture(lm, f"mlp_post.{L}") as cache:
        lm.model(input_ids=set_ids)
    value = cache[f"mlp_post.{L}"][:, 1, i]
    with torch.no_grad(), hooks.patch(lm, {f"mlp_post.{L}": mediation.neuron_edit(1, [i, i], value)}):
        last = lm.model(input_ids=null_ids).logits[:, -1]
        y_int = (last[torch.arange(2), anti] - last[torch.arange(2), stereo]).double().exp()
    with torch.no_grad():
        last = lm.model(input_ids=null_ids).logits[:, -1]
        y0 = (last[torch.arange(2), anti] - last[torch.arange(2), stereo]).double().exp()
    assert float((y_int / y0 - 1).mean()) == pytest.approx(batched[0].item(), abs=1e-5)


def test_head_interventions_match_brute_force(lm, pair):
    null_ids, set_ids, anti, stereo = pair
    heads = [(0, 4), (17, 2), (29, 8)]
    ivs = [[(f"head.{L}", (slice(None), h))] for L, h in heads]
    readout = interventions.logratio_readout(anti, stereo)
    fast = interventions.run_interventions(lm, set_ids, null_ids, ivs, readout, batch_size=2)  # NDE rows
    for (L, h), row in zip(heads, fast):
        with torch.no_grad(), hooks.capture(lm, f"head.{L}") as c:
            lm.model(input_ids=null_ids)

        def hold(x, L=L, h=h, c=c):
            x = x.clone()
            x[:, :, h] = c[f"head.{L}"][:, :, h]
            return x

        with torch.no_grad(), hooks.patch(lm, {f"head.{L}": hold}):
            last = lm.model(input_ids=set_ids).logits[:, -1]
        brute = (last[torch.arange(2), anti] - last[torch.arange(2), stereo]).double()
        assert torch.allclose(row, brute, atol=1e-4)


def test_neuron_estimate_tracks_exact_values(lm, pair):
    null_ids, set_ids, anti, stereo = pair
    est = mediation.neuron_nie_estimate(lm, null_ids, set_ids, anti, stereo, position=1, layers=[2])
    assert est.shape == (1, 1536)
    top = est[0].abs().topk(5).indices.tolist()
    exact = mediation.neuron_nie(lm, null_ids, set_ids, anti, stereo, [(2, i) for i in top], position=1)
    assert torch.sign(exact).eq(torch.sign(est[0, top])).double().mean() >= 0.8


def test_neuron_edit_needs_one_neuron_per_row():
    edit = mediation.neuron_edit(1, [0, 1, 2], torch.zeros(3))
    with pytest.raises(ValueError, match="one neuron per row"):
        edit(torch.zeros(2, 4, 8))
    out = edit(torch.ones(3, 4, 8))
    assert out[0, 1, 0] == 0 and out[1, 1, 1] == 0 and out[0, 1, 1] == 1 and out.sum() == 3 * 4 * 8 - 3
    with pytest.raises(ValueError, match="one value per neuron"):
        mediation.neuron_edit(1, [0, 1], torch.zeros(3))


def test_attention_weight_effects_match_a_hand_written_patch(lm, pair):
    """NIE of one head's attention weights α_{l,h,i,j} against patching them by hand; and identical inputs have no effect."""
    null_ids, set_ids, anti, stereo = pair
    eff = mediation.attention_effects(lm, null_ids, set_ids, anti, stereo)
    assert eff["nie"].shape == (lm.n_layers, lm.n_heads) and eff["nde"].shape == (lm.n_layers, lm.n_heads)
    layer, head = divmod(int(eff["nie"].flatten().abs().argmax()), lm.n_heads)
    site = f"pattern.{layer}"
    with torch.no_grad(), hooks.capture(lm, site) as cache:
        lm.last_logits(input_ids=set_ids)

    def edit(act):
        new = act.clone()
        new[:, head] = cache[site][:, head]
        return new

    with torch.no_grad(), hooks.patch(lm, {site: edit}):
        logits = lm.last_logits(input_ids=null_ids)
    rows = torch.arange(len(null_ids))
    log_y = logits[rows, anti].double() - logits[rows, stereo].double()
    expected = ((log_y - mediation.log_ratio(lm, null_ids, anti, stereo)).exp() - 1).mean()
    assert float(eff["nie"][layer, head]) == pytest.approx(float(expected), abs=1e-4)
    assert abs(float(expected)) > 1e-3  # the chosen head has a real effect
    same = mediation.attention_effects(lm, null_ids, null_ids, anti, stereo)
    assert same["nie"].abs().max() < 1e-3 and same["nde"].abs().max() < 1e-3  # eager vs fused attention: rounding only
