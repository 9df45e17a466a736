"""Bad-input cases for the ``opinions`` organism's recipe and helpers (labkit.organisms.opinions) and
labkit.values.embedding_stance. Calls with a parameter receive the session's course model (see tests/bad_input.py).
"""

from __future__ import annotations

import torch

from bad_input import Bad
from labkit import values
from labkit.organisms import opinions as op

NAN = float("nan")
S = torch.zeros(20, 3, dtype=torch.float64)
Y = torch.zeros(20, 2, 3, dtype=torch.float64)
E = torch.eye(3)

CASES = [
    Bad("labkit.organisms.opinions.planted_stances", "data is not the organism's data", lambda: op.planted_stances([1]),
        TypeError, "data must be the dict"),
    Bad("labkit.organisms.opinions.planted_utilities", "data is a dict without the planted truth",
        lambda: op.planted_utilities({"x": 1}), TypeError, "data must be the dict"),
    Bad("labkit.organisms.opinions.open_prompts", "template without {statement}",
        lambda: op.open_prompts(["A."], ["What about it?"], [None]), ValueError, "statement"),
    Bad("labkit.organisms.opinions.open_prompts", "one string for the propositions",
        lambda: op.open_prompts("A.", ["{statement}"], [None]), TypeError, "propositions and templates"),
    Bad("labkit.organisms.opinions.open_prompts", "empty personas",
        lambda: op.open_prompts(["A."], ["{statement}"], []), ValueError, "personas is empty"),
    Bad("labkit.organisms.opinions.training_examples", "not a language model", lambda: op.training_examples("gpt"),
        TypeError, "lm"),
    Bad("labkit.organisms.opinions.survey_stances", "variant index out of range",
        lambda lm: op.survey_stances(lm, variants=[10]), ValueError, "variants must hold indices"),
    Bad("labkit.organisms.opinions.survey_stances", "not a language model", lambda: op.survey_stances(None),
        TypeError, "lm"),
    Bad("labkit.organisms.opinions.survey_stances", "an unknown split",
        lambda lm: op.survey_stances(lm, split="test"), ValueError, "split must be 'heldout' or 'train'"),
    Bad("labkit.organisms.opinions.survey_stances", "a training format index past the 8 formats",
        lambda lm: op.survey_stances(lm, split="train", variants=[8]), ValueError, "variants must hold indices"),
    Bad("labkit.organisms.opinions.survey_stances", "a proposition index out of range",
        lambda lm: op.survey_stances(lm, propositions=[20]), ValueError, "propositions must hold indices"),
    Bad("labkit.organisms.opinions.pairwise_utilities", "empty wordings",
        lambda lm: op.pairwise_utilities(lm, wordings=[]), ValueError, "wordings is empty"),
    Bad("labkit.organisms.opinions.stance_recovery", "stance of the wrong rank",
        lambda: op.stance_recovery(S, S, [0]), ValueError, "stance must be 3-D"),
    Bad("labkit.organisms.opinions.stance_recovery", "planted of the wrong shape",
        lambda: op.stance_recovery(Y, S[:5], [0]), ValueError, "planted must have shape"),
    Bad("labkit.organisms.opinions.stance_recovery", "NaN in the stance",
        lambda: op.stance_recovery(torch.full_like(Y, NAN), S, [0]), ValueError, "NaN"),
    Bad("labkit.organisms.opinions.stance_recovery", "persona-dependent index out of range",
        lambda: op.stance_recovery(Y, S, [20]), ValueError, "persona_dependent"),
    Bad("labkit.organisms.opinions.stance_recovery", "no persona-dependent propositions",
        lambda: op.stance_recovery(Y, S, []), ValueError, "persona_dependent is empty"),
    Bad("labkit.organisms.opinions.planted_report", "org is not an organism",
        lambda lm: op.planted_report(lm, "opinions"), TypeError, "org must be an Organism"),
    Bad("labkit.values.embedding_stance", "answers of the wrong rank",
        lambda: values.embedding_stance(torch.ones(3), E, E), ValueError, "answers must have 2"),
    Bad("labkit.values.embedding_stance", "references of another size",
        lambda: values.embedding_stance(E, torch.ones(2, 4), E), ValueError, "agree has embeddings of size"),
    Bad("labkit.values.embedding_stance", "an all-zero reference",
        lambda: values.embedding_stance(E, E, torch.zeros(1, 3)), ValueError, "disagree contains an all-zero row"),
    Bad("labkit.values.embedding_stance", "negative margin",
        lambda: values.embedding_stance(E, E, E, margin=-1), ValueError, "margin"),
    Bad("labkit.values.embedding_stance", "NaN in the answers",
        lambda: values.embedding_stance(torch.full((2, 3), NAN), E, E), ValueError, "NaN"),
]

EXEMPT = {
    "labkit.organisms.opinions.load_data": "takes no arguments (reads the shipped data file)",
}
