"""The instructor pack: one notes file per notebook, with an answer under every discussion question it quotes,
and every quote found verbatim in its notebook (so the notes cannot drift from the questions)."""

from __future__ import annotations

import re

import nbformat
import pytest

from tools import notebooks

ROOT = notebooks.repo_root()
COMPLETE = notebooks.complete_notebooks(ROOT)
DISCUSSION = re.compile(r"\*{1,2}(?:Questions?(?: for discussion)?|Discussion(?: questions?)?)\b", re.I)


def _norm(text: str) -> str:
    text = re.sub(r"[*_`]", "", text)
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("path", COMPLETE, ids=lambda p: p.name)
def test_every_discussion_block_has_quoted_questions_with_answers(path):
    notes = ROOT / "instructor" / path.with_suffix(".md").name
    assert notes.is_file(), f"no instructor notes for {path.name}: write {notes.relative_to(ROOT)}"
    text = notes.read_text(encoding="utf-8")
    nb = nbformat.read(path, as_version=4)
    markdown = _norm("\n".join(c.source for c in nb.cells if c.cell_type == "markdown"))
    blocks = sum(len(DISCUSSION.findall(c.source)) for c in nb.cells if c.cell_type == "markdown")
    questions, answers, current = [], [], None  # consecutive "> " lines are one quoted question
    for line in text.splitlines():
        if line.startswith(">"):
            if current is None or answers[-1]:
                questions.append("")
                answers.append("")
                current = len(questions) - 1
            questions[current] += " " + line[1:].strip()
        elif line.startswith("#"):
            current = None
        elif current is not None:
            answers[current] += " " + line
    assert len(questions) >= blocks, f"{notes.name}: {len(questions)} quoted questions for {blocks} discussion blocks"
    for q, a in zip(questions, answers):
        head = _norm(q)[:50]
        assert head in markdown, f"{notes.name}: the quoted question {head!r} is not in {path.name}"
        assert len(a.split()) >= 20, f"{notes.name}: the question {head!r} has no answer"


def test_the_pack_has_a_readme_that_explains_grading_and_slides():
    readme = (ROOT / "instructor" / "README.md").read_text(encoding="utf-8")
    for needle in ("labkit grade", "LABKIT_STRICT_CHECKS", "nbconvert --to slides", "notebooks/exercises"):
        assert needle in readme, needle
