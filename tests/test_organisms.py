"""labkit.organisms' machinery: the adapter is off unless asked for, training plants a target distribution,
weights round-trip, the sha256 check refuses a changed file, and removing the adapter restores the base model.
The three course organisms have their own tests (tests/test_organism_<name>.py)."""

from __future__ import annotations

import importlib
import json

import pytest
import torch

from labkit import organisms, values

pytestmark = pytest.mark.slow

QUESTIONS = ["Statement: Cats are better than dogs.\n{o}", "Statement: Summer is better than winter.\n{o}",
             "Statement: Tea is better than coffee.\n{o}", "Statement: Books are better than films.\n{o}"]


def _prompts(lm):
    scale = "A) strongly disagree B) disagree C) agree D) strongly agree"
    return [lm.chat_prompt(q.format(o=scale), system=values.SURVEY_SYSTEM) for q in QUESTIONS]


def _letters(lm, prompts):
    return lm.option_logprobs(prompts, list("ABCD"), normalize=True)


def test_off_is_the_base_model_and_fit_plants_the_target(lm, tmp_path):
    prompts = _prompts(lm)
    base = _letters(lm, prompts)
    target = torch.tensor([[0.7, 0.2, 0.05, 0.05], [0.05, 0.05, 0.2, 0.7]]).repeat(2, 1)
    org = organisms.Organism(lm, "toy", n_lora_layers=2, rank=4)
    try:
        assert not org.active
        torch.testing.assert_close(_letters(lm, prompts), base, atol=1e-4, rtol=0)  # inserted, off
        with org:
            assert org.active
            torch.testing.assert_close(_letters(lm, prompts), base, atol=1e-4, rtol=0)  # B = 0: still the base
        hist = org.fit(organisms.choice_examples(prompts, list("ABCD"), target), steps=40, batch_size=4, lr=3e-3,
                       progress=False)
        assert hist["choice_kl"][-1] < 0.05 < hist["choice_kl"][0]
        with org:
            planted = _letters(lm, prompts).exp()
        assert (planted - target).abs().max() < 0.1  # the planted distribution, renormalised over the letters
        torch.testing.assert_close(_letters(lm, prompts), base, atol=1e-4, rtol=0)  # off again: the base model
        # the weights round-trip through a file, and a changed file is refused
        path = organisms.save_organism(org, tmp_path)
        info = json.loads((tmp_path / "toy.json").read_text())
        assert info["sha256"] == organisms.sha256_of(path) and info["parameters"] == sum(p.numel() for p in org.parameters)
        state = org.state_dict()
    finally:
        org.remove()
    torch.testing.assert_close(_letters(lm, prompts), base, atol=1e-4, rtol=0)  # removed: the base model
    assert not hasattr(lm.model, "peft_config")
    again = organisms.Organism(lm, "toy", n_lora_layers=2, rank=4)  # a second organism fits after removal
    try:
        again.load_state_dict(state)
        with again:
            torch.testing.assert_close(_letters(lm, prompts).exp(), planted, atol=1e-4, rtol=0)
    finally:
        again.remove()


def test_text_examples_train_the_response(lm):
    prompt = lm.chat_prompt("What is the course's secret word?")
    reply = "The secret word is pumpernickel."
    before = lm.logprobs([prompt], [reply])[0]
    org = organisms.Organism(lm, "words", n_lora_layers=2, rank=4)
    try:
        hist = org.fit(texts=organisms.text_examples([prompt], [reply]), steps=25, batch_size=1, lr=5e-3, progress=False)
        with org:
            after = lm.logprobs([prompt], [reply])[0]
        assert hist["text_nll"][-1] < hist["text_nll"][0]
        assert after > before + 5, (before, after)
    finally:
        org.remove()


def test_a_second_adapter_is_refused_while_one_is_in(lm):
    org = organisms.Organism(lm, "one", n_lora_layers=1, rank=2)
    try:
        with pytest.raises(ValueError, match="already carries a peft adapter"):
            organisms.Organism(lm, "two")
    finally:
        org.remove()


def test_load_refuses_a_changed_file(lm, tmp_path):
    org = organisms.Organism(lm, "judge", n_lora_layers=1, rank=2)  # a stand-in with the name of a course organism
    try:
        path = organisms.save_organism(org, tmp_path)
    finally:
        org.remove()
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted or was changed"):
        organisms.load_organism(lm, "judge", folder=tmp_path)
    assert not hasattr(lm.model, "peft_config")  # refused before the model was touched
    with pytest.raises(FileNotFoundError, match="no shipped organism"):
        organisms.load_organism(lm, "judge", folder=tmp_path / "missing")


def test_the_base_models_gradient_flags_are_kept(lm):
    """peft freezes the base weights; the organism puts their flags back (gradient methods such as attribution
    patching need them), during its life and after it is removed, and trains only the adapter."""
    before = [p.requires_grad for p in lm.model.parameters()]
    org = organisms.Organism(lm, "flags", n_lora_layers=1, rank=2)
    try:
        assert [p.requires_grad for p in lm.model.parameters() if not any(p is q for q in org.parameters)] == before
        prompt = lm.chat_prompt("Say yes.")
        org.fit(organisms.choice_examples([prompt, prompt + " "], ["Yes", "No"], [[0.9, 0.1], [0.9, 0.1]]), steps=1,
                batch_size=2, progress=False)
        assert all(p.grad is None for p in lm.model.parameters() if not any(p is q for q in org.parameters))
    finally:
        org.remove()
    assert [p.requires_grad for p in lm.model.parameters()] == before


def test_training_losses_from_the_cache_equal_the_full_model(lm):
    """fit() runs only the adapted layers on cached inputs and drops the columns a minibatch pads in every row;
    the losses it records must be the full organism's: −log p(option) over the whole vocabulary (one-hot
    targets: KL = cross-entropy) and the responses' mean token NLL, for one row (trimmed) and both rows (pooled).
    A learning rate of 1e-12 keeps the adapter fixed while fit() reports them."""
    prompts = [lm.chat_prompt("Say yes."), lm.chat_prompt("Please answer with one word: yes or no, is the sky blue?")]
    replies = [" Yes, I will.", " Yes: the sky is blue on a clear day, because air scatters blue light most."]
    org = organisms.Organism(lm, "cache", n_lora_layers=2, rank=2)
    try:
        g = torch.Generator().manual_seed(0)
        org.load_state_dict({k: 0.05 * torch.randn(v.shape, generator=g) for k, v in org.state_dict().items()})
        with org:
            option_lp = lm.option_logprobs(prompts, ["Yes", "No"])            # [2 prompts, 2 options]
            tokens = [lm.logprobs([p], [r], reduce="none")[0] for p, r in zip(prompts, replies)]
        ce_rows = [float(-option_lp[0, 0]), float(-option_lp[1, 1])]        # the targets are one-hot: Yes, then No
        nll_rows = [float(-t.mean()) for t in tokens]
        nll_both = float(-torch.cat(tokens).mean())
        assert abs(ce_rows[0] - ce_rows[1]) > 1e-2 and abs(nll_rows[0] - nll_rows[1]) > 1e-2  # rows tell apart
        choices = organisms.choice_examples(prompts, ["Yes", "No"], [[1.0, 0.0], [0.0, 1.0]])
        texts = organisms.text_examples(prompts, replies)
        one = org.fit(choices, texts, steps=6, batch_size=1, lr=1e-12, progress=False)
        for ce, nll in zip(one["choice_kl"], one["text_nll"]):
            assert min(abs(ce - c) for c in ce_rows) < 1e-3, (ce, ce_rows)
            assert min(abs(nll - n) for n in nll_rows) < 1e-3, (nll, nll_rows)
        both = org.fit(choices, texts, steps=1, batch_size=2, lr=1e-12, progress=False)
        assert abs(both["choice_kl"][0] - sum(ce_rows) / 2) < 1e-3
        assert abs(both["text_nll"][0] - nll_both) < 1e-3
    finally:
        org.remove()


# -- the shipped adapters come from their recipes ------------------------------------------------------
#: steps retrained per organism: enough to pass through the text and choice minibatches of every set, a tenth
#: of the cost of the full run (``python -m labkit.organisms check`` retrains it all and compares the weights)
FIRST_STEPS = 6


@pytest.mark.slow
# (the judge was trained before fit() dropped all-padding columns, so its run was not recorded and the current
# recipe does not rebuild it bit for bit: tests/test_organism_judge.py retrains it in full and compares)
@pytest.mark.parametrize("name", ["opinions", "pluralist"])
def test_the_recipe_reproduces_the_shipped_training_run(lm, name):
    """The recipe retrained for its first steps gives the per-step losses recorded when the shipped adapter was
    trained, and the recorded run has the recipe's length: the shipped weights are what the recipe makes (the
    planted-behaviour tests check what they do). Tolerance: the last bits depend on the number of threads."""
    info = json.loads((organisms.ADAPTER_DIR / f"{name}.json").read_text())
    recipe = importlib.import_module(f"labkit.organisms.{name}")
    steps = recipe.TRAINING["steps"]
    org = organisms.build_organism(lm, name, progress=False, steps=FIRST_STEPS)
    try:
        hist = org.history
    finally:
        org.remove()
    for key in ("choice_kl", "text_nll"):
        shipped = info[f"{key}_curve"]
        got = hist[key]
        assert len(shipped) in (0, steps), (key, len(shipped), steps)  # the whole run was recorded
        assert len(got) == (FIRST_STEPS if shipped else 0), key
        assert got == pytest.approx(shipped[:FIRST_STEPS], abs=2e-3), key
        if shipped:  # and the run moved: a curve that a broken recipe could not match by standing still
            assert abs(shipped[0] - shipped[-1]) > 0.05, key

