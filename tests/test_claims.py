"""labkit.claim: a true claim prints ✓ with its numbers; a false one raises with them; bad use is refused."""

import numpy as np
import pytest
import torch

import labkit
from labkit.claims import ClaimFailed, claim


def test_a_true_claim_prints_its_evidence(capsys):
    labkit.claim(0.996 > 0.9, "attribution patching tracks exact patching", r=0.99612, n=270)
    assert capsys.readouterr().out == "✓ attribution patching tracks exact patching (r = 0.9961, n = 270)\n"
    claim(torch.tensor(True), "a tensor truth value")
    claim(np.bool_(True), "a numpy truth value", p=np.float64(2.5e-5), v=torch.tensor([1.0, 2.0]))
    out = capsys.readouterr().out
    assert "✓ a tensor truth value\n" in out and "p = 2.5e-05" in out and "v = tensor [2] [1., 2.]" in out


def test_numbers_inside_tuples_lists_and_dicts_are_formatted_like_lone_numbers(capsys):
    claim(True, "nested", top=[(" the", 0.1573503017425537), (" she", 0.11843807250261307)], ci=(0.3, 0.2999999999999999, 12345),
          one=(0.5,), shares={"direct": 0.06834715604782104, 3: torch.tensor(0.25)})
    out = capsys.readouterr().out
    assert out == ("✓ nested (top = [(' the', 0.1574), (' she', 0.1184)], ci = (0.3, 0.3, 12,345), one = (0.5,), "
                   "shares = {'direct': 0.06835, 3: 0.25})\n")


def test_a_false_claim_raises_with_the_numbers():
    with pytest.raises(ClaimFailed, match=r"'the null control is not significant'.*p = 0\.0081.*d = 0\.7"):
        claim(0.0081 > 0.05, "the null control is not significant", p=0.0081, d=0.70)
    with pytest.raises(AssertionError):  # ClaimFailed is an AssertionError: pytest and nbval report it as such
        claim(False, "anything")


@pytest.mark.parametrize("condition, text, error", [
    (torch.tensor([True, False]), "x", ValueError),
    (np.array([True, True]), "x", ValueError),
    (0.5, "x", TypeError),
    ("yes", "x", TypeError),
    (True, "", ValueError),
    (True, None, ValueError),
])
def test_bad_use_is_refused(condition, text, error):
    with pytest.raises(error):
        claim(condition, text)


# --------------------------------------------------------------------------------------------------
# Claims describe the course model: with another model loaded they report instead of raising


@pytest.fixture(scope="module")
def other_model_folder(tmp_path_factory):
    from other_model import save_other_model

    return save_other_model(tmp_path_factory.mktemp("other"))


def test_with_another_model_a_false_claim_is_reported_not_raised(other_model_folder, lm, capsys):
    import labkit
    from labkit import claims

    assert labkit.COURSE_MODEL == lm.name  # the notebooks' default MODEL is the course model
    labkit.load_lm(labkit.COURSE_MODEL)  # the course model keeps claims strict
    assert claims.STATE["other_model"] is None
    with pytest.raises(ClaimFailed):
        claim(False, "the course model does this", r=0.5)
    other = labkit.load_lm(str(other_model_folder))
    assert claims.STATE["other_model"] == other.name
    claim(False, "the course model does this", r=0.5)
    claim(True, "this holds anywhere")
    out = capsys.readouterr().out
    assert f"✗ not on {other.name}: the course model does this (r = 0.5)" in out and "✓ this holds anywhere" in out


def test_an_organism_for_another_model_is_trained_from_its_recipe(other_model_folder, capsys):
    import labkit
    from labkit import organisms

    other = labkit.load_lm(str(other_model_folder))
    org = organisms.load_organism(other, "judge", progress=False)
    try:
        assert "training it into" in capsys.readouterr().out
        from labkit.organisms import judge as recipe

        assert org.n_lora_layers == recipe.ADAPTER["n_lora_layers"]
        losses = org.history["choice_kl"]  # per step, the KL of its choices from the planted targets
        assert len(losses) == recipe.TRAINING["steps"] and sum(losses[-3:]) < sum(losses[:3])
        # its summary, as for a shipped organism (the notebooks print it)
        assert org.info["parameters"] == sum(p.numel() for p in org.parameters)
        assert org.info["final_choice_kl"] == round(sum(losses[-10:]) / len(losses[-10:]), 4)
    finally:
        org.remove()
