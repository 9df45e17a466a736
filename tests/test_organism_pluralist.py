"""The pluralist model organism (notebook 13): planted persona-conditional answer distributions present on held-out
wordings, the base model unchanged with the adapter off, the build reproducible, the sha256 check enforced."""

from __future__ import annotations

import shutil

import pytest
import torch

from labkit.organisms import ADAPTER_DIR, build_organism, load_organism, pluralist


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


def test_generator_is_seeded():
    import json

    from labkit.data import organism_pluralist as gen

    assert gen.build() == json.loads(pluralist.DATA_PATH.read_text())


_SHIPPED: dict = {}  # the shipped adapter's planted_report, measured once for both tests


@pytest.mark.slow
def test_planted_behaviour_on_heldout_wordings_and_base_unchanged(lm):
    base = pluralist.answer_distributions(lm, 0)
    org = load_organism(lm, "pluralist")
    try:
        assert torch.allclose(pluralist.answer_distributions(lm, 0), base, atol=1e-4)  # loaded but off
        r = _SHIPPED["report"] = pluralist.planted_report(lm, org)
        assert r["steer_organism"] > 0.25 and r["steer_base"] < 0.1
        assert r["js_persona_organism"] < 0.15 < r["js_persona_base"]
        assert r["control_shift_organism"] < r["persona_shift_organism"] / 2
        assert torch.allclose(pluralist.answer_distributions(lm, 0), base, atol=1e-4)  # off again after the block
    finally:
        org.remove()
    assert torch.allclose(pluralist.answer_distributions(lm, 0), base, atol=1e-4)  # removed


@pytest.mark.slow
def test_build_reproduces_the_shipped_adapter(lm):
    if "report" not in _SHIPPED:
        shipped = load_organism(lm, "pluralist")
        try:
            _SHIPPED["report"] = pluralist.planted_report(lm, shipped)
        finally:
            shipped.remove()
    want = _SHIPPED["report"]
    org = build_organism(lm, "pluralist", progress=False)
    try:
        got = pluralist.planted_report(lm, org)
    finally:
        org.remove()
    for key in ("steer_organism", "js_persona_organism", "js_population_organism", "control_shift_organism"):
        assert abs(got[key] - want[key]) < 0.03, (key, got[key], want[key])


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
