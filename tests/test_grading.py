"""python -m labkit grade on synthetic submissions: all done, all stubs, one wrong answer, a cell that raises,
an infinite loop, a file that is not a notebook; each exercise graded whatever happened to the others."""

from __future__ import annotations

import csv
import subprocess
import sys

import nbformat
import pytest

from labkit import grading

SETUP = "import torch\nfrom labkit import check"
ENTROPY_DONE = ("def entropy(logits):\n    logp = torch.log_softmax(logits, -1)\n    return -(logp.exp() * logp).nan_to_num().sum(-1)")
ENTROPY_WRONG = ("def entropy(logits):\n    p = torch.softmax(logits, -1)\n    return -(p * torch.log2(p)).sum(-1)")  # log base 2
ENTROPY_STUB = "def entropy(logits):\n    raise NotImplementedError()"
ECE_DONE = '''def ece(confidence, correct, n_bins=10):
    conf, corr = torch.as_tensor(confidence, dtype=torch.float64), torch.as_tensor(correct, dtype=torch.float64)
    b = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    total = torch.tensor(0.0, dtype=torch.float64)
    for k in range(n_bins):
        m = b == k
        if m.any():
            total += m.double().mean() * (corr[m].mean() - conf[m].mean()).abs()
    return total'''
ECE_STUB = "def ece(confidence, correct, n_bins=10):\n    raise NotImplementedError()"


def submission(path, *exercise_cells, points=None):
    """A notebook like a student version: setup, then (exercise cell, check cell) pairs."""
    cells = [nbformat.v4.new_code_cell(SETUP)]
    for name, source in exercise_cells:
        cells.append(nbformat.v4.new_code_cell(source))
        check = nbformat.v4.new_code_cell(f"{name} = check.{name}({name})")
        if points:
            check.metadata["nbgrader"] = {"grade": True, "grade_id": f"check_{name}", "points": points[name], "solution": False}
        cells.append(check)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("submissions")
    submission(root / "alice" / "05_explaining.ipynb", ("entropy", ENTROPY_DONE), ("ece", ECE_DONE),
               points={"entropy": 2, "ece": 3})
    submission(root / "bob" / "05_explaining.ipynb", ("entropy", ENTROPY_STUB), ("ece", ECE_STUB))
    submission(root / "carol" / "05_explaining.ipynb", ("entropy", ENTROPY_WRONG), ("ece", ECE_DONE))
    submission(root / "dan" / "05_explaining.ipynb", ("entropy", "def entropy(logits):\n    return 1 / 0"), ("ece", ECE_DONE))
    submission(root / "erin" / "05_explaining.ipynb", ("entropy", "while True:\n    pass"), ("ece", ECE_DONE))
    (root / "frank").mkdir()
    (root / "frank" / "05_explaining.ipynb").write_text("this is not JSON {")
    out = tmp_path_factory.mktemp("grades")
    results = grading.grade([root], out_dir=out, cell_timeout=5, notebook_timeout=120, progress=False)
    return {r.student: r for r in results}, out


def statuses(result):
    return {e.exercise: e.status for e in result.exercises}


def test_all_done_passes_with_its_points(graded):
    alice = graded[0]["alice"]
    assert statuses(alice) == {"entropy": "passed", "ece": "passed"}
    assert (alice.points, alice.max_points) == (5, 5) and not alice.error


def test_stubs_are_not_done(graded):
    bob = graded[0]["bob"]
    assert statuses(bob) == {"entropy": "not done", "ece": "not done"} and bob.points == 0


def test_a_wrong_answer_fails_with_the_checks_hint_and_the_next_exercise_is_still_graded(graded):
    carol = graded[0]["carol"]
    assert statuses(carol) == {"entropy": "failed", "ece": "passed"}
    entropy = carol.exercises[0]
    assert "CheckFailed" in entropy.message and "log" in entropy.message.lower() and carol.points == 1


def test_a_cell_that_raises_fails_its_exercise_only(graded):
    dan = graded[0]["dan"]
    assert statuses(dan) == {"entropy": "failed", "ece": "passed"}
    assert "ZeroDivisionError" in dan.exercises[0].message


def test_an_infinite_loop_is_interrupted(graded):
    erin = graded[0]["erin"]
    assert statuses(erin)["ece"] == "passed" and statuses(erin)["entropy"] in ("failed", "not done")


def test_a_file_that_is_not_a_notebook_is_reported(graded):
    frank = graded[0]["frank"]
    assert "not a readable notebook" in frank.error and frank.exercises == []


def test_reports_and_the_class_csv(graded):
    results, out = graded
    rows = list(csv.DictReader(open(out / "grades.csv", encoding="utf-8")))
    table = {(r["student"], r["exercise"]): r["status"] for r in rows}
    assert table[("alice", "entropy")] == "passed" and table[("carol", "entropy")] == "failed"
    assert table[("bob", "ece")] == "not done" and table[("frank", "")] == "failed"
    assert len(rows) == 2 * 5 + 1
    report = (out / "carol__05_explaining.md").read_text()
    assert "Score: 1 / 2" in report and "| entropy | failed |" in report


def test_the_command_line_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="no submissions given"):
        grading.grade([tmp_path], out_dir=tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="cell_timeout must be a positive number"):
        grading.grade_notebook(tmp_path / "x.ipynb", cell_timeout=0)
    path = submission(tmp_path / "zoe" / "00_start.ipynb", ("entropy", ENTROPY_DONE))
    done = subprocess.run([sys.executable, "-m", "labkit", "grade", str(path), "--out", str(tmp_path / "g")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "zoe: 1/1" in done.stdout and (tmp_path / "g" / "grades.csv").is_file()
