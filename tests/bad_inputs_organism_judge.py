"""Bad-input cases for the judge model organism's recipe and evaluation helpers (labkit.organisms.judge, notebook
14) and for labkit.constitutional.judge_questions. Calls with a parameter receive the session's course model (see
tests/bad_input.py)."""

from __future__ import annotations

import torch

from bad_input import Bad, with_organism
from labkit import constitutional as ca
from labkit.organisms import judge as jg

PAIR = {"prompt": "How do I boil an egg?", "kind": "helpful", "better": "Six minutes in boiling water.",
        "worse": "Eggs are food."}
P = torch.tensor([0.9, 0.2, 0.7])


CASES = [
    Bad("labkit.constitutional.judge_questions", "two first replies for one prompt",
        lambda: ca.judge_questions(["q"], ["a", "b"], ["c"]), ValueError, "same, non-zero length"),
    Bad("labkit.constitutional.judge_questions", "one string instead of a list of prompts",
        lambda: ca.judge_questions("q", ["a"], ["b"]), TypeError, "prompts must be a list of strings"),
    Bad("labkit.organisms.judge.training_examples", "not a language model",
        lambda: jg.training_examples("smollm2"), TypeError, "lm must be"),
    Bad("labkit.organisms.judge.judge_both_orders", "no pairs",
        lambda lm: jg.judge_both_orders(lm, []), ValueError, "pairs is empty"),
    Bad("labkit.organisms.judge.judge_both_orders", "an unknown kind",
        lambda lm: jg.judge_both_orders(lm, [dict(PAIR, kind="honest")]), ValueError, r"\['kind'\] must be one of"),
    Bad("labkit.organisms.judge.judge_both_orders", "a pair without its worse reply",
        lambda lm: jg.judge_both_orders(lm, [{k: v for k, v in PAIR.items() if k != "worse"}]), ValueError,
        r"pairs\[0\] must be a dict"),
    Bad("labkit.organisms.judge.length_both_orders", "labelled pairs instead of short/long pairs",
        lambda lm: jg.length_both_orders(lm, [PAIR]), ValueError, "short, long"),
    Bad("labkit.organisms.judge.length_both_orders", "an empty criterion",
        lambda lm: jg.length_both_orders(lm, [{"prompt": "q", "short": "a", "long": "a b"}], criterion=" "),
        ValueError, "criterion must be a non-empty string"),
    Bad("labkit.organisms.judge.judge_metrics", "a NaN probability",
        lambda: jg.judge_metrics(torch.tensor([0.9, float("nan"), 0.1]), P), ValueError, "p_ab must hold probabilities"),
    Bad("labkit.organisms.judge.judge_metrics", "one order of the length pairs only",
        lambda: jg.judge_metrics(P, P, p_long_first=P), ValueError, "give both p_long_first and p_long_second"),
    Bad("labkit.organisms.judge.judge_metrics", "a single pair (no bootstrap interval)",
        lambda: jg.judge_metrics(torch.tensor([0.9]), torch.tensor([0.2])), ValueError, "at least 2 pairs"),
    Bad("labkit.organisms.judge.planted_report", "an organism that is not an Organism",
        lambda lm: jg.planted_report(lm, "judge"), TypeError, "org must be an Organism"),
    Bad("labkit.organisms.judge.planted_report", "include_base as a string",
        with_organism(lambda o: jg.planted_report(o.lm, o, include_base="yes")), TypeError, "include_base must be True or False"),
]
