"""Grading submitted student notebooks: ``python -m labkit grade SUBMISSIONS...``.

Each submission is a student version of a course notebook (``notebooks/exercises/NN_*.ipynb`` with the
exercises filled in). The grader runs it offline, top to bottom, in a fresh kernel, with a time limit per cell
and per notebook, and reads every exercise's check cell (``name = check.name(name)``):

* ``passed``: the check printed ``✓ name``;
* ``not done``: the check printed ``⧗ name`` (the exercise still raises ``NotImplementedError``, or hands the
  reference back);
* ``failed``: the check raised (a wrong answer, with the check's message), the exercise cell raised, a cell ran
  out of time, or the check cell never ran.

A failing cell never stops the grading of the next exercise: cells run with errors allowed and a cell that runs
too long is interrupted. A file that is not a notebook is reported as such. Results: one Markdown report per
submission and a class CSV (one row per submission and exercise) in the output folder.

Points: an exercise's check cell may carry nbgrader metadata (``{"nbgrader": {"points": 2, ...}}``); otherwise
each exercise is worth 1 point.
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["ExerciseResult", "SubmissionResult", "grade_notebook", "grade", "CHECK_CALL"]

#: A check cell: ``name = check.name(name)`` (the exercise's function handed to its check).
CHECK_CALL = re.compile(r"^\s*(\w+)\s*=\s*check\.(\w+)\(\s*\1\s*\)", re.M)


@dataclass
class ExerciseResult:
    """One exercise of one submission."""

    exercise: str
    status: str  # "passed", "failed" or "not done"
    points: float
    max_points: float
    message: str = ""

    def __post_init__(self):
        if self.status not in ("passed", "failed", "not done"):
            raise ValueError(f"status must be 'passed', 'failed' or 'not done', got {self.status!r}")
        if not 0 <= self.points <= self.max_points:
            raise ValueError(f"points must lie in [0, max_points = {self.max_points}], got {self.points}")


@dataclass
class SubmissionResult:
    """One submitted notebook: who, which notebook, and each exercise's result."""

    student: str
    path: str
    notebook: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    error: str = ""  # a problem with the submission as a whole (not a notebook, ran out of time)
    seconds: float = 0.0

    def __post_init__(self):
        if not isinstance(self.student, str) or not self.student:
            raise ValueError(f"student must be a non-empty name, got {self.student!r}")

    @property
    def points(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def max_points(self) -> float:
        return sum(e.max_points for e in self.exercises)


def _text_outputs(cell) -> tuple[str, str]:
    """(printed text, error text) of a code cell's outputs."""
    printed, errors = [], []
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            printed.append("".join(out.get("text", "")))
        elif kind in ("execute_result", "display_data"):
            printed.append("".join(out.get("data", {}).get("text/plain", "")))
        elif kind == "error":
            errors.append(f"{out.get('ename', 'Error')}: {out.get('evalue', '')}")
    return "".join(printed), "\n".join(errors)


def _points(cell) -> float:
    nbgrader = cell.get("metadata", {}).get("nbgrader", {})
    points = nbgrader.get("points", 1)
    return float(points) if isinstance(points, (int, float)) and not isinstance(points, bool) and points >= 0 else 1.0


def _student_of(path: Path) -> str:
    """The student's name: the submission's folder (``submissions/alice/05_x.ipynb`` → ``alice``), else its stem."""
    parent = path.parent.name
    return parent if parent and parent not in (".", "submissions") else path.stem


def grade_notebook(path: str | os.PathLike, cell_timeout: float = 120, notebook_timeout: float = 900,
                   student: str | None = None) -> SubmissionResult:
    """Run one submission and read its exercises' results (see the module docstring)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    path = Path(path)
    for name, value in (("cell_timeout", cell_timeout), ("notebook_timeout", notebook_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    result = SubmissionResult(student=student or _student_of(path), path=str(path), notebook=path.name)
    if not path.is_file():
        result.error = "no such file"
        return result
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # not JSON, not a notebook
        result.error = f"not a readable notebook ({type(e).__name__}: {str(e)[:200]})"
        return result
    checks = []  # (cell index, exercise name, max points)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            for name, checked in CHECK_CALL.findall(cell.source):
                if name == checked:
                    checks.append((i, name, _points(cell)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    from labkit import threads

    env.update(threads.thread_env(env))
    client = NotebookClient(nb, timeout=cell_timeout, allow_errors=True, interrupt_on_timeout=True,
                            error_on_timeout={"ename": "Timeout", "evalue": f"the cell ran longer than {cell_timeout:g} s "
                                              "and was interrupted", "traceback": []},
                            kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    ran = set()
    try:
        with client.setup_kernel(env=env):
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if time.perf_counter() - t0 > notebook_timeout:
                    result.error = f"the notebook ran out of its {notebook_timeout:g} s"
                    break
                try:
                    client.execute_cell(cell, i)
                except CellTimeoutError:
                    cell.outputs.append({"output_type": "error", "ename": "Timeout",
                                         "evalue": f"the cell ran longer than {cell_timeout:g} s", "traceback": []})
                ran.add(i)
    except DeadKernelError as e:
        result.error = f"the kernel died ({str(e)[:200]})"
    result.seconds = time.perf_counter() - t0
    for i, name, points in checks:
        cell = nb.cells[i]
        printed, error = _text_outputs(cell)
        solution_error = ""
        for j in range(i - 1, -1, -1):  # the exercise's own cell: the closest code cell above the check
            if nb.cells[j].cell_type == "code":
                solution_error = _text_outputs(nb.cells[j])[1]
                break
        if i not in ran:
            status, message = "failed", result.error or "the check cell did not run"
        elif f"✓ {name}" in printed and not error:
            status, message = "passed", printed.strip().splitlines()[0]
        elif f"⧗ {name}" in printed and not error:
            status, message = "not done", printed.strip().splitlines()[0]
        elif error:
            status, message = "failed", error
        else:
            status, message = "failed", (solution_error or printed.strip() or "the check printed nothing")
        result.exercises.append(ExerciseResult(name, status, points if status == "passed" else 0.0, points, message))
    return result


def _report(result: SubmissionResult) -> str:
    lines = [f"# {result.student} · {result.notebook}", "",
             f"Score: {result.points:g} / {result.max_points:g} ({result.seconds:.0f} s to run)"]
    if result.error:
        lines += ["", f"**Problem with the submission:** {result.error}"]
    if result.exercises:
        lines += ["", "| exercise | result | points | message |", "|---|---|---:|---|"]
        for e in result.exercises:
            message = e.message.replace("\n", " ").replace("|", "\\|")[:300]
            lines.append(f"| {e.exercise} | {e.status} | {e.points:g}/{e.max_points:g} | {message} |")
    return "\n".join(lines) + "\n"


def grade(submissions, out_dir: str | os.PathLike = "grades", cell_timeout: float = 120,
          notebook_timeout: float = 900, progress: bool = True) -> list[SubmissionResult]:
    """Grade every submission (notebook files, or folders searched for ``*.ipynb``); write one report per
    submission (``<out_dir>/<student>__<notebook>.md``) and ``<out_dir>/grades.csv``. Returns the results."""
    if isinstance(submissions, (str, os.PathLike)):
        submissions = [submissions]
    paths: list[Path] = []
    for s in submissions:
        p = Path(s)
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        else:
            paths.append(p)
    if not paths:
        raise ValueError("no submissions given: pass notebook files or folders that contain them")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for p in paths:
        if progress:
            print(f"grading {p} …", flush=True)
        r = grade_notebook(p, cell_timeout=cell_timeout, notebook_timeout=notebook_timeout)
        results.append(r)
        (out / f"{r.student}__{Path(r.notebook).stem}.md").write_text(_report(r), encoding="utf-8")
        if progress:
            print(f"  {r.student}: {r.points:g}/{r.max_points:g}" + (f" ({r.error})" if r.error else ""), flush=True)
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "notebook", "exercise", "status", "points", "max_points", "message"])
        for r in results:
            if not r.exercises:
                writer.writerow([r.student, r.notebook, "", "failed", 0, 0, r.error])
            for e in r.exercises:
                writer.writerow([r.student, r.notebook, e.exercise, e.status, f"{e.points:g}", f"{e.max_points:g}",
                                 e.message.replace("\n", " ")[:500]])
    (out / "grades.json").write_text(json.dumps([{**asdict(r), "points": r.points, "max_points": r.max_points}
                                                 for r in results], indent=1, ensure_ascii=False) + "\n")
    return results
