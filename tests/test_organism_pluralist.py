"""The pluralist model organism (notebook 13): planted persona-conditional answer distributions present on held-out
wordings, the base model unchanged with the adapter off, the build reproducible, the sha256 check enforced."""

from __future__ import annotations

import shutil

import pytest
import torch

from labkit import load_embedder, pluralistic
from labkit.organisms import ADAPTER_DIR, load_organism, pluralist


def test_data_splits_are_disjoint_and_planted_truth_is_valid():
    data = pluralist.load_data()
    assert not set(data["wordings"]["train"]) & set(data["wordings"]["heldout"])
    personas = {p["system"] for q in data["steerable"] for p in q["personas"]}
    assert not personas & {c["system"] for c in data["control_personas"]}
    for k in (0, 1):
        planted = pluralist.planted_distributions(k)
        assert torch.allclose(planted.sum(1), torch.ones(6, dtype=torch.float64))
        own = planted.gather(1, torch.tensor([[q["personas"][k]["option"]] for q in data["steerable"]]))[:, 0]
        assert bool((own >= 0.8).all())


def test_overton_training_data_is_disjoint_and_held_out():
    data = pluralist.load_data()
    assert not set(data["overton_wordings"]["train"]) & set(data["overton_wordings"]["heldout"])
    references = {s for q in pluralistic.load_pluralism()["overton"] for v in q["viewpoints"].values() for s in v}
    for o in data["overton"]:
        assert not set(pluralistic.answer_sentences(o["response"])) & references  # paraphrases, not the references
        assert o["planted_coverage"] == len(o["planted_views"]) / 4
    assert [o["planted_coverage"] for o in data["overton"]] == [1.0, 0.75, 0.5]


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


@pytest.mark.slow
def test_planted_lists_have_the_planted_coverage(embedder):
    """The ground truth of the Overton part: each planted sentence is nearest to its own viewpoint (similarity at
    least 0.5), so the planted list covers exactly the planted viewpoints."""
    data = pluralist.load_data()
    for o, q in zip(data["overton"], pluralistic.load_pluralism()["overton"]):
        r = pluralistic.text_coverage(embedder, pluralistic.answer_sentences(o["response"]), q["viewpoints"])
        assert r["assignment"].tolist() == o["planted_views"] and r["coverage"] == o["planted_coverage"]


def test_generator_is_seeded():
    import json

    from labkit.data import organism_pluralist as gen

    assert gen.build() == json.loads(pluralist.DATA_PATH.read_text())


@pytest.mark.slow
def test_planted_behaviour_on_heldout_wordings_and_base_unchanged(lm, embedder):
    base = pluralist.answer_distributions(lm, 0)
    org = load_organism(lm, "pluralist")
    try:
        assert torch.allclose(pluralist.answer_distributions(lm, 0), base, atol=1e-4)  # loaded but off
        r = pluralist.planted_report(lm, org, embedder)
        assert r["steer_organism"] > 0.25 and r["steer_base"] < 0.1
        assert r["js_persona_organism"] < 0.15 < r["js_persona_base"]
        assert r["control_shift_organism"] < r["persona_shift_organism"] / 2
        assert r["overton_error_organism"] < 0.1 < r["overton_error_base"]
        assert torch.allclose(pluralist.answer_distributions(lm, 0), base, atol=1e-4)  # off again after the block
    finally:
        org.remove()
    assert torch.allclose(pluralist.answer_distributions(lm, 0), base, atol=1e-4)  # removed


@pytest.mark.slow
def test_sha256_refuses_a_changed_file(lm, tmp_path):
    for ext in ("safetensors", "json"):
        shutil.copy(ADAPTER_DIR / f"pluralist.{ext}", tmp_path / f"pluralist.{ext}")
    data = bytearray((tmp_path / "pluralist.safetensors").read_bytes())
    data[-1] ^= 0x01
    (tmp_path / "pluralist.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted or was changed"):
        load_organism(lm, "pluralist", folder=tmp_path)
    assert not hasattr(lm.model, "peft_config")
