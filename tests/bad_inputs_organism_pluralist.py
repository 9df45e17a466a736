"""Bad-input cases for the pluralist model organism's recipe and evaluation helpers (labkit.organisms.pluralist,
notebook 13). Calls with a parameter receive the session's course model (see tests/bad_input.py)."""

from __future__ import annotations

from bad_input import Bad, with_organism
from labkit.organisms import pluralist as pl


CASES = [
    Bad("labkit.organisms.pluralist.question_prompt", "a wording without the {question} field",
        lambda: pl.question_prompt("Should we?", "Answer yes or no."), ValueError, r"wording must contain the field \{question\}"),
    Bad("labkit.organisms.pluralist.question_prompt", "an empty question",
        lambda: pl.question_prompt("  ", "{question}"), ValueError, "question must be a non-empty string"),
    Bad("labkit.organisms.pluralist.training_examples", "not a language model",
        lambda: pl.training_examples("smollm2"), TypeError, "lm must be"),
    Bad("labkit.organisms.pluralist.answer_distributions", "persona index 2 (each question has two personas)",
        lambda lm: pl.answer_distributions(lm, persona=2), ValueError, "persona must be"),
    Bad("labkit.organisms.pluralist.answer_distributions", "an unknown placement",
        lambda lm: pl.answer_distributions(lm, placement="assistant"), ValueError, "placement must be 'system' or 'user'"),
    Bad("labkit.organisms.pluralist.answer_distributions", "an unknown split",
        lambda lm: pl.answer_distributions(lm, split="test"), ValueError, "split must be 'train' or 'heldout'"),
    Bad("labkit.organisms.pluralist.answer_distributions", "an empty persona text",
        lambda lm: pl.answer_distributions(lm, persona=" "), ValueError, "persona must be None, a persona index"),
    Bad("labkit.organisms.pluralist.planted_distributions", "a control persona's text has no planted distribution",
        lambda: pl.planted_distributions("You are a librarian."), ValueError, "only those have a planted distribution"),
    Bad("labkit.organisms.pluralist.planted_distributions", "a float persona index",
        lambda: pl.planted_distributions(0.5), TypeError, "persona must be an integer"),
    Bad("labkit.organisms.pluralist.planted_report", "an organism that is not an Organism",
        lambda lm: pl.planted_report(lm, "pluralist"), TypeError, "org must be an Organism"),
]
CASES += [
    Bad("labkit.organisms.pluralist.planted_distributions", "data that is not load_data()'s dict",
        lambda: pl.planted_distributions(0, data={"questions": []}), TypeError, "data must be None or the dict of load_data"),
    Bad("labkit.organisms.pluralist.overton_answers", "an unknown split",
        lambda lm: pl.overton_answers(lm, split="test"), ValueError, "split must be 'train' or 'heldout'"),
    Bad("labkit.organisms.pluralist.overton_answers", "not a language model",
        lambda: pl.overton_answers("smollm2"), TypeError, "lm must be"),
    Bad("labkit.organisms.pluralist.overton_coverages", "replies for two questions instead of three",
        lambda: pl.overton_coverages(None, [["a reply"], ["another"]]), ValueError, "3 lists of replies"),
    Bad("labkit.organisms.pluralist.planted_report", "a model name instead of an embedder",
        lambda lm: pl.planted_report(lm, None, embedder="all-MiniLM"), TypeError, "embedder must be"),
    Bad("labkit.organisms.pluralist.planted_report", "include_base as a string",
        with_organism(lambda o: pl.planted_report(o.lm, o, include_base="yes")), TypeError, "include_base must be True or False"),
]
