"""Bad-input cases for labkit.organisms' machinery (the course organisms' recipes have their own files,
tests/bad_inputs_organism_<name>.py). Calls with a parameter receive the session's course model; a case that
needs an organism inserts one and always removes it, so the shared model stays the base model."""

from __future__ import annotations

import torch

from bad_input import Bad, with_organism
from labkit import organisms as org

NAN = float("nan")
P2 = ["a question?", "another question?"]
T2 = torch.tensor([[0.5, 0.5], [1.0, 0.0]])


CASES = [
    Bad("labkit.organisms.Organism", "a model name instead of a model", lambda: org.Organism("SmolLM2"), TypeError, "lm must be"),
    Bad("labkit.organisms.Organism", "more LoRA layers than the model has", lambda lm: org.Organism(lm, n_lora_layers=99), ValueError, "n_lora_layers"),
    Bad("labkit.organisms.Organism", "rank 0", lambda lm: org.Organism(lm, rank=0), ValueError, "rank"),
    Bad("labkit.organisms.Organism", "negative alpha", lambda lm: org.Organism(lm, alpha=-1.0), ValueError, "alpha"),
    Bad("labkit.organisms.Organism", "empty name", lambda lm: org.Organism(lm, name=" "), ValueError, "name"),
    Bad("labkit.organisms.Organism", "one target module as a string", lambda lm: org.Organism(lm, target_modules="q_proj"), TypeError, "target_modules"),
    Bad("labkit.organisms.Organism.fit", "nothing to train on", with_organism(lambda o: o.fit()), ValueError, "nothing to train on"),
    Bad("labkit.organisms.Organism.fit", "choices not made by choice_examples", with_organism(lambda o: o.fit(choices={"prompts": P2})), TypeError, "choices must be"),
    Bad("labkit.organisms.Organism.fit", "texts as a list", with_organism(lambda o: o.fit(texts=["x"])), TypeError, "texts must be"),
    Bad("labkit.organisms.Organism.fit", "zero steps", with_organism(lambda o: o.fit(org.choice_examples(P2, ["A", "B"], T2), steps=0)), ValueError, "steps"),
    Bad("labkit.organisms.Organism.fit", "NaN learning rate", with_organism(lambda o: o.fit(org.choice_examples(P2, ["A", "B"], T2), lr=NAN)), ValueError, "lr"),
    Bad("labkit.organisms.Organism.fit", "negative text weight", with_organism(lambda o: o.fit(org.choice_examples(P2, ["A", "B"], T2), text_weight=-1.0)), ValueError, "text_weight"),
    Bad("labkit.organisms.Organism.fit", "zero text batch size", with_organism(lambda o: o.fit(org.choice_examples(P2, ["A", "B"], T2), text_batch_size=0)), ValueError, "text_batch_size"),
    Bad("labkit.organisms.Organism.load_state_dict", "a list instead of a dict", with_organism(lambda o: o.load_state_dict([1])), TypeError, "state must be a dict"),
    Bad("labkit.organisms.Organism.load_state_dict", "missing weights", with_organism(lambda o: o.load_state_dict({})), ValueError, "does not match"),
    Bad("labkit.organisms.Organism.load_state_dict", "a weight of the wrong shape",
        with_organism(lambda o: o.load_state_dict({k: torch.zeros(1) for k in o.state_dict()})), ValueError, "has shape"),
    Bad("labkit.organisms.Organism.load_state_dict", "a NaN weight",
        with_organism(lambda o: o.load_state_dict({k: torch.full_like(v, NAN) for k, v in o.state_dict().items()})), ValueError, "NaN"),
    Bad("labkit.organisms.choice_examples", "one prompt as a string", lambda: org.choice_examples("a?", ["A", "B"], T2[:1]), TypeError, "prompts"),
    Bad("labkit.organisms.choice_examples", "an empty prompt", lambda: org.choice_examples(["", "b?"], ["A", "B"], T2), ValueError, "prompts"),
    Bad("labkit.organisms.choice_examples", "one option", lambda: org.choice_examples(P2, ["A"], T2[:, :1]), ValueError, "options"),
    Bad("labkit.organisms.choice_examples", "repeated options", lambda: org.choice_examples(P2, ["A", "A"], T2), ValueError, "options"),
    Bad("labkit.organisms.choice_examples", "targets of the wrong shape", lambda: org.choice_examples(P2, ["A", "B"], T2[:1]), ValueError, "targets must have shape"),
    Bad("labkit.organisms.choice_examples", "rows not summing to one", lambda: org.choice_examples(P2, ["A", "B"], T2 * 2), ValueError, "probability distribution"),
    Bad("labkit.organisms.choice_examples", "negative target", lambda: org.choice_examples(P2, ["A", "B"], torch.tensor([[1.5, -0.5], [1.0, 0.0]])), ValueError, "probability distribution"),
    Bad("labkit.organisms.choice_examples", "NaN target", lambda: org.choice_examples(P2, ["A", "B"], torch.tensor([[NAN, 1.0], [1.0, 0.0]])), ValueError, "NaN"),
    Bad("labkit.organisms.text_examples", "mismatched lengths", lambda: org.text_examples(P2, ["only one"]), ValueError, "mismatched"),
    Bad("labkit.organisms.text_examples", "an empty response", lambda: org.text_examples(P2[:1], [" "]), ValueError, "responses"),
    Bad("labkit.organisms.load_organism", "an unknown organism", lambda lm: org.load_organism(lm, "dragon"), ValueError, "unknown organism"),
    Bad("labkit.organisms.load_organism", "a name that is not a string", lambda lm: org.load_organism(lm, 3), TypeError, "name must be"),
    Bad("labkit.organisms.load_organism", "a folder that is a number", lambda lm: org.load_organism(lm, "judge", folder=3), TypeError, "folder"),
    Bad("labkit.organisms.load_organism", "a model name instead of a model", lambda: org.load_organism("SmolLM2", "judge"), TypeError, "lm must be"),
    Bad("labkit.organisms.build_organism", "an unknown organism", lambda lm: org.build_organism(lm, "dragon"), ValueError, "unknown organism"),
    Bad("labkit.organisms.build_organism", "a model name instead of a model", lambda: org.build_organism("SmolLM2", "judge"), TypeError, "lm must be"),
    Bad("labkit.organisms.build_organism", "zero steps", lambda lm: org.build_organism(lm, "pluralist", steps=0), ValueError, "steps must be"),
    Bad("labkit.organisms.build_organism", "more steps than the recipe", lambda lm: org.build_organism(lm, "pluralist", steps=10_000), ValueError, "steps must be"),
    Bad("labkit.organisms.build_organism", "a float number of steps", lambda lm: org.build_organism(lm, "pluralist", steps=2.5), TypeError, "steps must be"),
    Bad("labkit.organisms.rebuild_difference", "an unknown organism", lambda lm: org.rebuild_difference(lm, "dragon"), ValueError, "unknown organism"),
    Bad("labkit.organisms.rebuild_difference", "a folder without the adapter", lambda lm: org.rebuild_difference(lm, "judge", "/nonexistent"), FileNotFoundError, "no shipped organism"),
    Bad("labkit.organisms.save_organism", "not an organism", lambda: org.save_organism({"w": 1}), TypeError, "org must be an Organism"),
    Bad("labkit.organisms.sha256_of", "a number", lambda: org.sha256_of(3), TypeError, "path must be"),
    Bad("labkit.organisms.sha256_of", "a missing file", lambda: org.sha256_of("/no/such/file"), FileNotFoundError, "not a file"),
]
CASES += [
    Bad("labkit.organisms.main", "an unknown command", lambda: org.main(["fly"]), SystemExit, "2"),
    Bad("labkit.organisms.main", "an unknown organism", lambda: org.main(["build", "dragon"]), SystemExit, "2"),
]
