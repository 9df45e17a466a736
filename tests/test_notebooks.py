"""The notebook machinery: stamped cells match the template, student versions are fresh and run.

The complete notebooks themselves are run by nbval (``pytest`` collects ``notebooks/*.ipynb`` with
``--nbval``; outputs are compared after ``tests/sanitize.cfg``). Every student version runs top to bottom, as
a student's "Run all" would: each check must say its exercise is not done yet (``⧗``) and lend the reference, so
the rest of the notebook runs. ``LABKIT_QUICK_STUDENT_RUNS=1`` runs only their setup, import, exercise and check
cells, in isolation (a quick pass while editing).
"""

from __future__ import annotations

import ast
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

from tools import course, notebooks

ROOT = notebooks.repo_root()
COMPLETE = notebooks.complete_notebooks(ROOT)
FULL = os.environ.get("LABKIT_QUICK_STUDENT_RUNS", "") in ("", "0")


def test_every_catalogue_entry_is_unique_and_named_by_number():
    numbers = [nb.number for nb in course.NOTEBOOKS]
    assert numbers == sorted(set(numbers)) and numbers[0] == "00"
    for path in COMPLETE:
        assert path.name in {nb.filename for nb in course.NOTEBOOKS}, path.name


def test_stamped_cells_and_readme_map_are_current():
    stale = notebooks.stamp_all(check=True, root=ROOT)
    assert not stale, f"run `python -m tools stamp`: {[str(p) for p in stale]}"


def test_student_versions_are_current():
    stale = notebooks.write_exercises(check=True, root=ROOT)
    assert not stale, f"run `python -m tools exercises`: {[str(p) for p in stale]}"


@pytest.mark.parametrize("path", COMPLETE, ids=lambda p: p.name)
def test_complete_notebook_shape(path):
    nb = nbformat.read(path, as_version=4)
    assert notebooks.TITLE_TAG in nb.cells[0].metadata.get("tags", [])
    setup = [c for c in nb.cells if notebooks.SETUP_TAG in c.metadata.get("tags", [])]
    assert len(setup) == 1 and setup[0].source == notebooks.setup_source()
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), "outputs must come from one fresh top-to-bottom run"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    # every exercise is followed by its check
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and notebooks.BEGIN in cell.source:
            later = [c for c in nb.cells[i + 1 :] if c.cell_type == "code"]
            assert later and "check." in later[0].source, f"cell {i}: an exercise must be followed by its check"


def anatomy_problems(nb, number: str) -> list[str]:
    """What a complete notebook lacks of the anatomy in the conventions: an intro with learning goals,
    prerequisites and the lecture; numbered sections ("## 1 · …"); exercises headed "### Exercise N · …";
    "what to notice" and discussion questions; a summary followed by further reading."""
    problems = []
    setup_at = next(i for i, c in enumerate(nb.cells) if notebooks.SETUP_TAG in c.metadata.get("tags", []))
    intro = "\n".join(c.source for c in nb.cells[:setup_at] if c.cell_type == "markdown")
    needs = [("learning goals", r"learning (goals|objectives)|you will"), ("prerequisites", r"prerequisite")]
    if number != "00":  # notebook 00 is the orientation, not a lecture
        needs.append(("the lecture", r"lecture"))
    problems += [f"the intro names no {what}" for what, pattern in needs if not re.search(pattern, intro, re.I)]
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    heads = [line for line in text.splitlines() if line.startswith("#")]
    for h in heads:
        if h.startswith("## ") and not re.match(r"## (\d+ · |Summary|Course map)", h):
            problems.append(f"section heading not numbered: {h!r}")
        if h.startswith("###") and re.search(r"exercise", h, re.I) and not re.match(r"### (Exercise \d+|Warm-up exercise) · ", h):
            problems.append(f"exercise heading not 'Exercise N · …': {h!r}")
    if number != "00" and not re.search(r"what to notice", text, re.I):
        problems.append("no 'what to notice'")
    if not re.search(r"\*{1,2}Questions?\b|discussion", text, re.I):
        problems.append("no discussion questions")
    summary = text.find("## Summary")
    if summary < 0:
        problems.append("no '## Summary'")
    elif not re.search(r"further reading", text[summary:], re.I):
        problems.append("no further reading after the summary")
    return problems


@pytest.mark.parametrize("path", COMPLETE, ids=lambda p: p.name)
def test_complete_notebook_anatomy(path):
    problems = anatomy_problems(nbformat.read(path, as_version=4), path.name[:2])
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_anatomy_check_notices_what_is_missing():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 05 · X\n\nIntro without the things."),
                nbformat.v4.new_code_cell("", metadata={"tags": [notebooks.SETUP_TAG]}),
                nbformat.v4.new_markdown_cell("## Part one\n\n### Exercise · unnumbered")]
    problems = anatomy_problems(nb, "05")
    for expected in ["learning goals", "prerequisites", "lecture", "not numbered", "Exercise N", "what to notice",
                     "discussion", "Summary"]:
        assert any(expected in p for p in problems), expected


def _is_import_cell(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return bool(tree.body) and all(isinstance(s, (ast.Import, ast.ImportFrom)) for s in tree.body)


#: An exercise's check cell (``name = check.name(name)``), not other uses of labkit.check such as check.yours(...).
CHECK_CALL = re.compile(r"^\s*(\w+)\s*=\s*check\.(\w+)\(\s*\1\s*(?:,\s*\w+\s*)?\)", re.M)


def _isolated(nb):
    keep = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        src = cell.source
        if (
            notebooks.SETUP_TAG in cell.metadata.get("tags", [])
            or _is_import_cell(src)
            or "raise NotImplementedError()" in src
            or CHECK_CALL.search(src)
        ):
            keep.append(cell)
    reduced = nbformat.v4.new_notebook(metadata=nb.metadata)
    reduced.cells = keep
    return reduced


@pytest.fixture(scope="session")
def other_model(tmp_path_factory) -> str:
    """A tiny random Qwen2 model with the course tokenizer, saved in a folder (tests/other_model.py)."""
    from other_model import save_other_model

    return str(save_other_model(tmp_path_factory.mktemp("other-model")))


def _with_model(nb, folder: str):
    """The notebook with its MODEL setting pointing at ``folder``."""
    for cell in nb.cells:
        if cell.cell_type == "code" and notebooks.MODEL_SETTING.search(cell.source):
            cell.source = notebooks.MODEL_SETTING.sub(f"MODEL = {folder!r}  # a tiny random model of another family",
                                                      cell.source)
    return nb


def _uses_a_language_model(nb) -> bool:
    return any(c.cell_type == "code" and "load_lm(" in c.source for c in nb.cells)


@pytest.mark.parametrize("path", COMPLETE, ids=lambda p: p.name)
def test_every_language_model_notebook_reads_its_model_from_one_setting(path):
    nb = nbformat.read(path, as_version=4)
    if not _uses_a_language_model(nb):
        pytest.skip("no language model")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert len(notebooks.MODEL_SETTING.findall(code)) == 1, "one `MODEL = labkit.COURSE_MODEL` line at the top"
    calls = re.findall(r"load_lm\(([^)]*)\)", code)
    assert calls and all(c.split(",")[0].strip() == "MODEL" for c in calls), f"load_lm must load MODEL: {calls}"


@pytest.mark.parametrize("path", COMPLETE, ids=lambda p: p.name)
def test_student_version_runs(path, request):
    """A student's "Run all". A language-model notebook runs with its MODEL set to a tiny random model of another
    architecture (Qwen2, tests/other_model.py): every labkit call it makes must work for a model that is not the
    course model, and its claims (which describe the course model) print instead of failing. The complete
    notebook runs on the course model (nbval), so both are covered, at a fraction of the time of a second full pass."""
    student = nbformat.read(notebooks.student_path(path), as_version=4)
    if _uses_a_language_model(student) and notebooks.MODEL_SETTING.search(
            "\n".join(c.source for c in student.cells if c.cell_type == "code")):
        student = _with_model(student, request.getfixturevalue("other_model"))
    nb = student if FULL else _isolated(student)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "stream")
    n_checks = sum(1 for c in nb.cells if CHECK_CALL.search(c.source))
    assert n_checks >= 1
    waiting = [line for line in text.splitlines() if line.startswith("⧗ ") and "not done yet" in line]
    assert len(waiting) == n_checks, text


# -- the generator itself -------------------------------------------------------------------------


def test_clear_solutions_keeps_indentation_and_surrounding_code():
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\nprint('after')"
    out = notebooks.clear_solutions(src)
    assert out == "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint('after')"


@pytest.mark.parametrize(
    "src, message",
    [
        ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "top level"),
        ("def f():\n    ### BEGIN SOLUTION\n    return 1", "without ### END"),
        ("def f():\n    return 1\n    ### END SOLUTION", "without ### BEGIN"),
        ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n", "nested"),
    ],
)
def test_clear_solutions_refuses_broken_markers(src, message):
    with pytest.raises(notebooks.NotebookError, match=message):
        notebooks.clear_solutions(src)


def test_student_version_clears_outputs_and_marks_title():
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION")
    code.outputs = [nbformat.v4.new_output("stream", text="secret\n")]
    code.execution_count = 3
    heading = nbformat.v4.new_markdown_cell("### Exercise 1 · entropy\n\nWrite `f`.")
    nb.cells = [heading, code, nbformat.v4.new_code_cell("f = check.entropy(f)")]
    entry = course.NOTEBOOKS[0]
    student = notebooks.student_version(nb, entry, results={}, root=ROOT)
    assert "Student version" in student.cells[0].source
    assert all(c.get("outputs", []) == [] for c in student.cells if c.cell_type == "code")
    assert "return x" not in "".join(c.source for c in student.cells)
    title = student.cells[0].source
    assert course.colab_url("notebooks/exercises/00_start_here.ipynb") in title
    assert course.binder_url("notebooks/exercises/00_start_here.ipynb") in title


def test_notebook_without_exercise_is_refused():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(1)")]
    with pytest.raises(notebooks.NotebookError, match="no exercise"):
        notebooks.student_version(nb, course.NOTEBOOKS[0], results={}, root=ROOT)


def test_runtime_line_uses_measurements():
    line = notebooks.runtime_line("00", {"00": {"wall_s": 75.4, "peak_mb": 1200, "cpus": 2}})
    assert "1 min 15 s" in line and "1.17 GB" in line and "2-core CPU" in line
    assert "not measured" in notebooks.runtime_line("00", {})


def test_module_table_reads_imports_and_docstrings():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import torch\nfrom labkit import check, data_attribution as da, viz\n"
                                          "import labkit.steering")]
    assert notebooks.labkit_imports(nb) == ["check", "data_attribution", "viz", "steering"]
    assert notebooks.module_summary("datasheet") == ("Datasheets for datasets (Gebru et al., 2018/2021): the "
                                                     "question set, a `Datasheet`, and an audit.")
    assert notebooks.module_summary("attribution") == "Feature attribution and how to evaluate it."
    table = notebooks.modules_markdown()
    assert "| `labkit.attribution` | 01 |" in table and "labkit.check" not in table


def test_exercise_table_finds_each_exercise_with_its_heading_and_check():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## 2 · Scoring\n\n### Exercise · masked log-probabilities"),
        nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"),
        nbformat.v4.new_code_cell("f = check.logprob_sum(f)"),
        nbformat.v4.new_markdown_cell("### Exercise · entropy"),
        nbformat.v4.new_code_cell("def g(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"),
        nbformat.v4.new_code_cell("g = check.entropy(g)"),
    ]
    assert notebooks.exercises_in(nb) == [("Exercise · masked log-probabilities", "logprob_sum"),
                                          ("Exercise · entropy", "entropy")]
    table = notebooks.exercises_markdown(ROOT)
    assert "`check.entropy`" in table


# --------------------------------------------------------------------------------------------------
# Teaching metadata: levels, nbgrader, lab times, slides


@pytest.mark.parametrize("path", COMPLETE, ids=lambda p: p.name)
def test_exercises_carry_level_time_and_nbgrader_points(path):
    nb = nbformat.read(path, as_version=4)
    solutions = [c for c in nb.cells if c.cell_type == "code" and notebooks.BEGIN in c.source]
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(graded) == len(solutions) >= 1
    for cell in solutions:
        meta = cell.metadata["nbgrader"]
        assert meta["solution"] and not meta["grade"] and meta["grade_id"].endswith("_solution")
    for cell in graded:
        name = cell.metadata["nbgrader"]["grade_id"].removesuffix("_check")
        assert f"check.{name}(" in cell.source and cell.metadata["nbgrader"]["points"] == course.EXERCISE_LEVELS[name][0]
    headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if re.match(r"### (Exercise \d+|Warm-up exercise) · ", line)]
    assert headings and all(re.search(r"\(difficulty [123]/3 · about \d+ min\)$", h) for h in headings), headings
    assert re.search(r"\*\*Lab time:\*\* about ", nb.cells[0].source)
    sections = [c for c in nb.cells if c.cell_type == "markdown" and re.match(r"## \d+ · ", c.source)]
    assert sections and all("*Lab time: about " in c.source for c in sections)


@pytest.mark.parametrize("path", COMPLETE, ids=lambda p: p.name)
def test_every_notebook_builds_a_slide_deck(path):
    from nbconvert import SlidesExporter

    nb = nbformat.read(path, as_version=4)
    body, _ = SlidesExporter().from_notebook_node(nb)
    n_sections = sum(1 for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## "))
    slides = body.count("<section")
    assert slides >= n_sections + 1, f"{path.name}: {slides} slides for {n_sections} sections"
    setup = next(c for c in nb.cells if notebooks.SETUP_TAG in c.metadata.get("tags", []))
    assert setup.metadata["slideshow"]["slide_type"] == "skip"
