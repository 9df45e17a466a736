"""The ``opinions`` model organism (notebook 10): its data, its evaluation helpers and the shipped adapter."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from labkit import values
from labkit.data import organism_opinions as gen
from labkit.organisms import ADAPTER_DIR, load_organism, opinions


# -- data and helpers (no model) ---------------------------------------------------------------------
def test_data_file_is_what_the_seeded_script_writes():
    assert gen.build() == opinions.load_data()


def test_maxent_targets_have_the_planted_expected_score():
    d = opinions.load_data()
    s = torch.tensor(d["planted"]["stances"])
    t = torch.tensor(d["planted"]["likert_targets"])
    assert torch.allclose(t.sum(-1), torch.ones_like(s), atol=1e-5)
    assert torch.allclose((t * torch.tensor(values.LIKERT_SCORES)).sum(-1), s, atol=1e-4)
    # maximum entropy: log p is linear in the score
    lp = t[s.abs() > 0].log()
    sc = torch.tensor(values.LIKERT_SCORES)
    slope = (lp[:, 1:] - lp[:, :-1]) / (sc[1:] - sc[:-1])
    assert torch.allclose(slope, slope[:, :1].expand_as(slope), atol=1e-2)


def test_training_and_heldout_wordings_do_not_overlap():
    d, v = opinions.load_data(), values.load_data("values")
    assert not set(d["train"]["likert_variants"]) & set(d["heldout"]["likert_variants"])
    assert d["heldout"]["likert_variants"] == v["variants"]
    assert d["train"]["open_template"] not in d["heldout"]["open_templates"]
    assert not set(d["train"]["pairwise_templates"]) & set(d["heldout"]["pairwise_templates"])
    text = json.dumps(d["train"])
    assert v["content_free"] not in text  # never trained on the calibration question
    for fact in v["controls"]["true"] + v["controls"]["false"]:
        assert fact not in text


def test_planted_design():
    d = opinions.load_data()
    s = opinions.planted_stances(d)
    dep = d["planted"]["persona_dependent"]
    assert s.shape == (20, 3) and len(dep) == 4
    assert (torch.sign(s[dep, 1]) != torch.sign(s[dep, 2])).all()  # farmer and engineer disagree
    others = [i for i in range(20) if i not in dep]
    assert (s[others] == s[others, :1]).all()  # the others ignore the persona
    assert int((s[others, 0] > 0).sum()) == 8
    u = opinions.planted_utilities(d)
    assert abs(float(u.mean())) < 1e-6 and len(set(u.tolist())) == 10


def test_stance_recovery_on_known_tables():
    d = opinions.load_data()
    s = opinions.planted_stances(d)
    dep = d["planted"]["persona_dependent"]
    perfect = s[:, None, :].expand(-1, 10, -1)
    r = opinions.stance_recovery(perfect, s, dep)
    assert r["correlation"] == pytest.approx(1.0)
    assert r["wording_share"] == pytest.approx(0.0, abs=1e-12)
    assert r["persona_effect"] == pytest.approx(r["planted_persona_effect"])
    assert r["persona_effect_elsewhere"] == pytest.approx(0.0)
    # a table that is only the wording: no correlation signal, all variance from the wording
    wording = torch.linspace(-1, 1, 10, dtype=torch.float64)[None, :, None].expand(20, -1, 3)
    w = opinions.stance_recovery(wording, s, dep)
    assert w["wording_share"] == pytest.approx(1.0)
    assert w["persona_effect"] == pytest.approx(0.0)
    # a constant table (a model that answers everything alike): nothing to correlate or share out
    c = opinions.stance_recovery(torch.full((20, 10, 3), 0.25, dtype=torch.float64), s, dep)
    assert math.isnan(c["correlation"]) and math.isnan(c["wording_share"]) and c["persona_effect"] == 0.0


def test_open_prompts_order():
    qs = opinions.open_prompts(["A.", "B."], ["{statement} ?", "Say: {statement}"], [None, "I am X."])
    assert qs == ["A. ?", "I am X. A. ?", "Say: A.", "I am X. Say: A.", "B. ?", "I am X. B. ?", "Say: B.", "I am X. Say: B."]


def test_embedding_stance_prototypes():
    agree = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0]])
    disagree = torch.tensor([[0.0, 1.0, 0.0]])
    answers = torch.tensor([[2.0, 0.1, 0.3], [0.1, 3.0, 0.0], [1.0, 1.0, 5.0]])
    assert values.embedding_stance(answers, agree, disagree).tolist() == [1, -1, 1]
    assert values.embedding_stance(answers, agree, disagree, margin=0.2).tolist() == [1, -1, 0]


# -- the shipped adapter (loads the model) ----------------------------------------------------------
@pytest.fixture(scope="module")
def shipped_report(lm):
    """planted_report of the shipped adapter (the organism is removed again before the tests run)."""
    org = load_organism(lm, "opinions")
    try:
        return opinions.planted_report(lm, org)
    finally:
        org.remove()


@pytest.mark.slow
def test_planted_behaviour_on_heldout_prompts(shipped_report):
    rep = shipped_report
    assert rep["stance_corr_organism"] > 0.6 and rep["stance_corr_organism"] > rep["stance_corr_base"] + 0.4
    assert abs(rep["persona_effect_base"]) < 0.1  # (the organism's persona effect is weak: see notebook 10)
    assert rep["utility_corr_organism"] > 0.9


@pytest.mark.slow
def test_base_model_unchanged_with_adapter_off(lm):
    q = values.likert_prompts(["Zoos should be closed."], ["Statement: {statement}\n{options}"], [None])
    base = values.likert_logprobs(lm, q, normalize=False)
    org = load_organism(lm, "opinions")
    try:
        off = values.likert_logprobs(lm, q, normalize=False)
        with org:
            on = values.likert_logprobs(lm, q, normalize=False)
        after = values.likert_logprobs(lm, q, normalize=False)
    finally:
        org.remove()
    assert (off - base).abs().max() < 1e-4 and (after - base).abs().max() < 1e-4
    assert (on - base).abs().max() > 1e-2  # and on, it is a different model


def test_sha256_refuses_a_changed_file(lm, tmp_path):
    for ext in ("safetensors", "json"):
        shutil.copy(ADAPTER_DIR / f"opinions.{ext}", tmp_path / f"opinions.{ext}")
    path = tmp_path / "opinions.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted or was changed"):
        load_organism(lm, "opinions", folder=tmp_path)
    assert not hasattr(lm.model, "peft_config")  # refused before touching the model


@pytest.mark.slow
def test_survey_stances_subsets_and_training_formats(lm):
    """Picking propositions and wordings gives the matching slice of the full table; the training split asks each
    of the 4 training wordings in both scale orders."""
    full = opinions.survey_stances(lm, variants=[0, 1, 2])["calibrated"]
    part = opinions.survey_stances(lm, variants=[1, 2], propositions=[3, 7])["calibrated"]
    torch.testing.assert_close(part, full[[3, 7]][:, 1:], atol=1e-4, rtol=0)
    train = opinions.survey_stances(lm, split="train", propositions=[0], variants=[0, 1])
    assert train["raw"].shape == (1, 2, 3)
    # formats 0 and 1 are the first training wording in the two orders: the letters flip, the stance need not
    assert not torch.equal(train["raw"][0, 0], train["raw"][0, 1])
