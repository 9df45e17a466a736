"""Course tooling for the notebooks themselves (used by maintainers, not by the lessons).

* **Stamping** (``python -m tools stamp``): the title cell and the setup cell of every notebook are
  rendered from one template (below) and written into the notebooks, so all notebooks open the same way
  and their Colab/Binder links and measured runtimes come from one place (``labkit.course`` and
  ``benchmarks/notebooks/NN.json``). The README's course map is refreshed at the same time.
* **Student versions** (``python -m tools exercises``): ``notebooks/exercises/NN_*.ipynb`` is generated
  from the complete notebook: code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (the nbgrader
  markers) becomes ``raise NotImplementedError()``, outputs and execution counts are cleared. Solutions
  must sit inside a function body, so that the exercise's check can hand back the reference
  implementation and "Run all" continues.

Cells are recognised by tags in their metadata: ``labkit-title``, ``labkit-setup``, ``labkit-course-map``.
"""

from __future__ import annotations

import copy
import json
import ast
import re
from pathlib import Path

import nbformat

from tools import course

TITLE_TAG = "labkit-title"
SETUP_TAG = "labkit-setup"
MAP_TAG = "labkit-course-map"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
#: The one line of a language-model notebook that names its model (``lm = labkit.load_lm(MODEL)`` follows);
#: the tests run the student versions with another model by replacing it.
MODEL_SETTING = re.compile(r"^MODEL = labkit\.COURSE_MODEL\b.*$", re.M)
MAP_START, MAP_END = "<!-- course-map:start -->", "<!-- course-map:end -->"
EXERCISES_START, EXERCISES_END = "<!-- exercises:start -->", "<!-- exercises:end -->"
MODULES_START, MODULES_END = "<!-- modules:start -->", "<!-- modules:end -->"
#: labkit's shared core: every other module a notebook imports is a topic module.
CORE_MODULES = {"runtime", "lm", "datasets", "stats", "check", "viz"}
STUDENT_NOTE = (
    "> **Student version — exercises.** Solutions are removed: fill in each cell that raises "
    "`NotImplementedError`, then run the check below it (`⧗` = not done yet: the check lends you the reference "
    "implementation so the rest of the notebook runs; `✓` = your function agrees with it; `✗` = it does not, "
    "with the case, the expected and returned values, a hint and the line that re-runs that case).\n>\n"
    "> **Getting help.** Read the hints the exercise unfolds, re-run a failing case with "
    "`check.<name>.run_case(i, <name>)`, ask in your course's forum or open an issue at "
    "https://github.com/{repository}/issues. The solutions are in the complete notebook, "
    "[`../{filename}`](../{filename}) — try first.\n>\n"
    "> Generated from `../{filename}` by `python -m tools exercises`; do not edit by hand."
)
COMPLETE_NOTE = (
    "> **Complete version — with solutions** (the instructor's copy). Students start from the exercises: "
    "[`exercises/{filename}`](exercises/{filename})."
)

SETUP_TEMPLATE = '''\
# Setup — the same cell opens every notebook (stamped by `python -m tools stamp`; edit the template, not this cell).
import subprocess, sys
if "google.colab" in sys.modules:  # On Colab only: install this course's labkit (pinned) and its offline models.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "{install_spec}"], check=True)
    subprocess.run([sys.executable, "-m", "labkit", "download", "--quiet"], check=True)
import labkit
device = labkit.setup(seed=0)'''


class NotebookError(ValueError):
    """A notebook that breaks the course's conventions."""


# --------------------------------------------------------------------------------------------------
# Locations


def repo_root() -> Path:
    """The repository root (the folder holding ``notebooks/`` and ``labkit/``)."""
    for candidate in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (candidate / "notebooks").is_dir() and (candidate / "labkit").is_dir():
            return candidate
    raise NotebookError("run this from the course repository (a folder with notebooks/ and labkit/)")


def complete_notebooks(root: Path | None = None, numbers=None) -> list[Path]:
    """The complete notebooks ``notebooks/NN_*.ipynb``, optionally only those numbered in ``numbers``."""
    root = root or repo_root()
    paths = sorted(p for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return [p for p in paths if not numbers or p.name[:2] in numbers]


def student_path(path: Path) -> Path:
    return path.parent / "exercises" / path.name


def benchmark_results(root: Path | None = None) -> dict:
    """Measured runtimes, one file per notebook in ``benchmarks/notebooks/`` (``NN.json``, ``NN@gpu.json``),
    as ``{"NN": {...}}`` (``{}`` when none were measured)."""
    folder = (root or repo_root()) / "benchmarks" / "notebooks"
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


# --------------------------------------------------------------------------------------------------
# Rendering


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def runtime_line(number: str, results: dict) -> str:
    r = results.get(number)
    if not r:
        return "**Runtime:** not measured yet (`python benchmarks/notebooks.py`)."
    line = (
        f"**Runtime:** {format_duration(r['wall_s'])} and {r['peak_mb'] / 1024:.2f} GB peak memory on a "
        f"{r['cpus']}-core CPU"
    )
    gpu = results.get(f"{number}@gpu")
    if gpu:
        line += f"; {format_duration(gpu['wall_s'])} on {gpu['device']}"
    return line + " (measured by `benchmarks/notebooks.py`)."


def title_source(nb: course.Notebook, student: bool, results: dict) -> str:
    path = f"notebooks/{'exercises/' if student else ''}{nb.filename}"
    version = "exercises (student version)" if student else "complete, with solutions"
    lines = [f"# {nb.number} · {nb.title} — {version}", "", course.badges(path), "", runtime_line(nb.number, results)]
    if student:
        lines += ["", STUDENT_NOTE.format(filename=nb.filename, repository=course.REPOSITORY)]
    else:
        lines += ["", COMPLETE_NOTE.format(filename=nb.filename)]
    return "\n".join(lines)


def setup_source() -> str:
    return SETUP_TEMPLATE.format(install_spec=course.install_spec())


def course_map_markdown(results: dict, root: Path | None = None, links: bool = True) -> str:
    """The course map as a Markdown table: one row per notebook, with measured runtime and memory."""
    root = root or repo_root()
    header = ("| # | Notebook (exercises) | What it covers | CPU time | Peak memory | Open the exercises | Solutions |\n"
              "|---|---|---|---|---|---|---|")
    rows, total = [], 0.0
    for nb in course.NOTEBOOKS:
        exists = (root / "notebooks" / nb.filename).exists()
        r = results.get(nb.number)
        name = f"[{nb.title}](notebooks/exercises/{nb.filename})" if (exists and links) else nb.title
        if not exists:
            rows.append(f"| {nb.number} | {name} | {nb.topic} | — | — | not written yet | — |")
            continue
        time_cell = format_duration(r["wall_s"]) if r else "not measured"
        mem_cell = f"{r['peak_mb'] / 1024:.2f} GB" if r else "not measured"
        total += r["wall_s"] if r else 0.0
        student, complete = f"notebooks/exercises/{nb.filename}", f"notebooks/{nb.filename}"
        open_cell = f"[Colab]({course.colab_url(student)}) · [Binder]({course.binder_url(student)})"
        solutions = f"[notebook]({complete}) · [Colab]({course.colab_url(complete)})"
        rows.append(f"| {nb.number} | {name} | {nb.topic} | {time_cell} | {mem_cell} | {open_cell} | {solutions} |")
    footer = f"\n\nTotal measured CPU time: {format_duration(total)}." if total else ""
    return header + "\n" + "\n".join(rows) + footer


def exercises_in(notebook) -> list[tuple[str, str]]:
    """``(heading, check name)`` for each exercise of a notebook: the check is the ``check.<name>(`` call in the
    cell after the exercise, the heading the last Markdown heading above the exercise."""
    found, heading = [], ""
    cells = notebook.cells
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown":
            titles = [line.lstrip("#").strip() for line in cell.source.splitlines() if line.startswith("#")]
            heading = titles[-1] if titles else heading
        elif BEGIN in cell.source:
            later = [c for c in cells[i + 1 :] if c.cell_type == "code"]
            match = re.search(r"\bcheck\.(\w+)\(", later[0].source) if later else None
            if match:
                found.append((heading, match.group(1)))
    return found


def exercises_markdown(root: Path | None = None) -> str:
    """The README's table of every exercise: notebook, topic (the heading above it), difficulty, time and its
    check, with each notebook's total time."""
    root = root or repo_root()
    rows = ["| notebook | exercise | difficulty | time | check |", "|---|---|---|---|---|"]
    grand = 0
    for path in complete_notebooks(root):
        entry = _catalogue_entry(path)
        total = 0
        for heading, name in exercises_in(nbformat.read(path, as_version=4)):
            level, minutes = course.EXERCISE_LEVELS.get(name, (0, 0))
            total += minutes
            rows.append(f"| {entry.number} · {entry.title} | {LEVEL_SUFFIX.sub('', heading)} | "
                        f"{'●' * level}{'○' * (3 - level)} {level}/3 | {minutes} min | `check.{name}` |")
        rows.append(f"| {entry.number} · total | | | **{format_minutes(total)}** | |")
        grand += total
    rows.append(f"| **all notebooks** | | | **{format_minutes(grand)}** | |")
    return "\n".join(rows)


def labkit_imports(notebook) -> list[str]:
    """The labkit modules a notebook imports (``from labkit import a, b`` / ``import labkit.a``), in order."""
    found = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for names in re.findall(r"^[ \t]*from labkit import ([\w, ]+)", cell.source, re.M):
            found += [n.split(" as ")[0].strip() for n in names.split(",") if n.strip()]
        found += re.findall(r"^\s*import labkit\.(\w+)", cell.source, re.M)
    return list(dict.fromkeys(found))


def module_summary(name: str, root: Path | None = None) -> str:
    """The first sentence of a labkit module's docstring, without its "(notebook NN)" tag; read, not imported."""
    root = root or repo_root()
    path = root / "labkit" / f"{name}.py"
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) if path.exists() else None
    if not doc:
        return ""
    first = " ".join(doc.split("\n\n")[0].split())
    first = re.split(r"(?<!\bal\.)(?<=\.)\s", first)[0]
    first = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", first)
    return re.sub(r"\s*(\(notebook \d+\)|[—-] notebook \d+)\.?$", "", first).rstrip(".") + "."


def modules_markdown(root: Path | None = None) -> str:
    """The README's table of topic modules: each labkit module (beyond the core) with the notebooks using it."""
    root = root or repo_root()
    users: dict[str, list[str]] = {}
    for path in complete_notebooks(root):
        for name in labkit_imports(nbformat.read(path, as_version=4)):
            if name not in CORE_MODULES and (root / "labkit" / f"{name}.py").exists():
                users.setdefault(name, []).append(path.name[:2])
    rows = ["| module | notebooks | what it holds |", "|---|---|---|"]
    for name, numbers in sorted(users.items(), key=lambda kv: (kv[1][0], kv[0])):
        rows.append(f"| `labkit.{name}` | {', '.join(numbers)} | {module_summary(name, root)} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------------
# Stamping


def _tagged(cell, tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def _catalogue_entry(path: Path) -> course.Notebook:
    number = path.name[:2]
    nb = course.BY_NUMBER.get(number)
    if nb is None or nb.filename != path.name:
        raise NotebookError(f"{path.name} is not in labkit.course.NOTEBOOKS (expected {nb.filename if nb else 'an entry'})")
    return nb


def stamp(notebook, entry: course.Notebook, student: bool, results: dict, root: Path | None = None):
    """Return a copy of ``notebook`` with its title, setup and course-map cells rendered from the template."""
    nb = copy.deepcopy(notebook)
    cells = nb.cells
    if not cells or not _tagged(cells[0], TITLE_TAG):
        cells.insert(0, nbformat.v4.new_markdown_cell(metadata={"tags": [TITLE_TAG]}))
    setup = [c for c in cells if _tagged(c, SETUP_TAG)]
    if not setup:
        new = nbformat.v4.new_code_cell(metadata={"tags": [SETUP_TAG]})
        # the setup cell follows the title and the notebook's introduction (its first markdown cells)
        at = 1
        while at < len(cells) and cells[at].cell_type == "markdown":
            at += 1
        cells.insert(at, new)
        setup = [new]
    cells[0].source = title_source(entry, student, results)
    for cell in setup:
        cell.source = setup_source()
    for cell in cells:
        if _tagged(cell, MAP_TAG):
            cell.source = "## Course map\n\n" + course_map_markdown(results, root, links=False)
    _split_at_headings(nb)
    exercise_minutes = _stamp_exercises(nb, entry)
    section_minutes = _stamp_sections(nb)
    _stamp_slides(nb)
    total = sum(section_minutes)
    cells[0].source += (f"\n\n**Lab time:** about {format_minutes(total)} for a student working through it "
                        f"(exercises {format_minutes(sum(exercise_minutes.values()))}); each section says its own.")
    return nb


# --------------------------------------------------------------------------------------------------
# Teaching metadata: exercise levels and nbgrader, section times, slides

LEVEL_SUFFIX = re.compile(r"\s*\(difficulty \d/3 · about \d+ min\)\s*$")
EXERCISE_HEADING = re.compile(r"^### (Exercise \d+|Warm-up exercise) · .*$", re.M)
LAB_TIME = re.compile(r"\n*^\*Lab time: about .*\*$", re.M)
WORDS_PER_MINUTE = 130  # reading (and explaining) prose
MINUTES_PER_CODE_CELL = 1.5  # reading, running and looking at the output of one code cell


def format_minutes(minutes: float) -> str:
    minutes = int(round(minutes))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _split_at_headings(nb) -> None:
    """Give every ``##``/``###`` heading its own markdown cell start: a cell with prose before a heading (a "what to
    notice" paragraph followed by the next section) is split in two, so sections and slides begin at headings."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "markdown" or _tagged(cell, TITLE_TAG) or _tagged(cell, MAP_TAG):
            out.append(cell)
            continue
        lines = cell.source.split("\n")
        cuts = [i for i, line in enumerate(lines) if i > 0 and re.match(r"#{2,3} ", line)]
        start, pieces = 0, 0
        for cut in cuts + [len(lines)]:
            part = "\n".join(lines[start:cut]).strip("\n")
            if part:
                if start == 0:
                    cell.source = part
                    out.append(cell)
                else:  # a deterministic id, so stamping twice gives the same file
                    pieces += 1
                    new = nbformat.v4.new_markdown_cell(part)
                    new.id = f"{getattr(cell, 'id', None) or 'cell'}-{pieces}"[:64]
                    out.append(new)
            start = cut
    nb.cells = out


def _check_name(cells, i: int, filename: str) -> str:
    later = [c for c in cells[i + 1 :] if c.cell_type == "code"]
    match = re.search(r"\bcheck\.(\w+)\(", later[0].source) if later else None
    if not match:
        raise NotebookError(f"{filename}, cell {i}: an exercise must be followed by its check cell")
    return match.group(1)


def _stamp_exercises(nb, entry: course.Notebook) -> dict[str, int]:
    """Difficulty and time on each exercise heading; nbgrader metadata on solution and check cells (points =
    difficulty). Returns ``{check name: minutes}``."""
    cells, minutes = nb.cells, {}
    for cell in cells:
        cell.metadata.pop("nbgrader", None)
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or BEGIN not in cell.source:
            continue
        name = _check_name(cells, i, entry.filename)
        if name not in course.EXERCISE_LEVELS:
            raise NotebookError(f"{entry.filename}: exercise {name!r} has no level: add (difficulty, minutes) to "
                                f"tools/course.py EXERCISE_LEVELS")
        level, time = course.EXERCISE_LEVELS[name]
        minutes[name] = time
        heading = next((c for c in reversed(cells[:i]) if c.cell_type == "markdown" and EXERCISE_HEADING.search(c.source)),
                       None)
        if heading is None:
            raise NotebookError(f"{entry.filename}, cell {i}: no '### Exercise N · …' heading above the exercise")
        heading.source = EXERCISE_HEADING.sub(
            lambda m: LEVEL_SUFFIX.sub("", m.group(0)) + f" (difficulty {level}/3 · about {time} min)",
            heading.source, count=1)
        check = next(c for c in cells[i + 1 :] if c.cell_type == "code")
        cell.metadata["nbgrader"] = {"grade": False, "grade_id": f"{name}_solution", "locked": False,
                                     "schema_version": 3, "solution": True, "task": False}
        check.metadata["nbgrader"] = {"grade": True, "grade_id": f"{name}_check", "locked": True, "points": level,
                                      "schema_version": 3, "solution": False, "task": False}
    return minutes


def _stamp_sections(nb) -> list[float]:
    """A "Lab time" line under each numbered section's heading: prose at WORDS_PER_MINUTE, MINUTES_PER_CODE_CELL
    per code cell, plus the exercises' minutes. Returns each section's minutes."""
    cells = nb.cells
    starts = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and re.match(r"## \d+ · ", c.source)]
    out = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(cells)
        if k + 1 == len(starts):  # the last section ends where the summary begins
            end = next((j for j in range(start + 1, len(cells)) if cells[j].cell_type == "markdown"
                        and cells[j].source.startswith("## ")), len(cells))
        words = sum(len(LAB_TIME.sub("", c.source).split()) for c in cells[start:end] if c.cell_type == "markdown")
        code = sum(1 for c in cells[start:end] if c.cell_type == "code" and c.source.strip())
        exercises = sum(course.EXERCISE_LEVELS[_check_name(cells, j, "")][1]
                        for j in range(start, end) if cells[j].cell_type == "code" and BEGIN in cells[j].source)
        reading = words / WORDS_PER_MINUTE + code * MINUTES_PER_CODE_CELL
        total = max(5, 5 * round((reading + exercises) / 5))
        out.append(total)
        detail = f"reading and running {format_minutes(max(1, reading))}" + (
            f", exercises {format_minutes(exercises)}" if exercises else "")
        head, _, rest = LAB_TIME.sub("", cells[start].source).partition("\n")
        cells[start].source = f"{head}\n\n*Lab time: about {format_minutes(total)} ({detail}).*" + (
            f"\n{rest}" if rest.strip() else "")
    return out


def _stamp_slides(nb) -> None:
    """Slide-show metadata for ``jupyter nbconvert --to slides``: the title and each numbered section open a slide,
    each ``###`` heading a sub-slide; the setup cell is skipped; everything else continues the current slide."""
    for i, cell in enumerate(nb.cells):
        if i == 0 or (cell.cell_type == "markdown" and cell.source.startswith("## ")):
            kind = "slide"
        elif _tagged(cell, SETUP_TAG):
            kind = "skip"
        elif cell.cell_type == "markdown" and cell.source.startswith("### "):
            kind = "subslide"
        else:
            kind = "-"
        cell.metadata["slideshow"] = {"slide_type": kind}


def _dumps(nb) -> str:
    return nbformat.writes(nb) + "\n"


def stamp_all(check: bool = False, root: Path | None = None, numbers=None) -> list[Path]:
    """Stamp every complete notebook (or those in ``numbers``) and refresh the README map; return the files
    that changed (or would)."""
    root = root or repo_root()
    results = benchmark_results(root)
    changed = []
    for path in complete_notebooks(root, numbers):
        entry = _catalogue_entry(path)
        text = path.read_text(encoding="utf-8")
        new = _dumps(stamp(nbformat.reads(text, as_version=4), entry, False, results, root))
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new, encoding="utf-8")
    readme = root / "README.md"
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        new = replace_between(text, MAP_START, MAP_END, course_map_markdown(results, root))
        new = replace_between(new, EXERCISES_START, EXERCISES_END, exercises_markdown(root))
        if MODULES_START in new:
            new = replace_between(new, MODULES_START, MODULES_END, modules_markdown(root))
        if new != text:
            changed.append(readme)
            if not check:
                readme.write_text(new, encoding="utf-8")
    for path in changed:
        print(f"{'stale' if check else 'stamped'}: {path.relative_to(root)}")
    if not check:
        write_exercises(root=root, numbers=numbers)
    return changed


def replace_between(text: str, start: str, end: str, body: str) -> str:
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise NotebookError(f"markers {start} … {end} not found")
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)


# --------------------------------------------------------------------------------------------------
# Student versions


def clear_solutions(source: str, where: str = "a cell") -> str:
    """Replace each ``### BEGIN SOLUTION`` … ``### END SOLUTION`` block by ``raise NotImplementedError()``.

    The replacement keeps the indentation of the ``BEGIN`` line. A block at the top level of a cell is
    refused: a solution must live inside a function so that "Run all" survives the missing code.
    """
    lines = source.split("\n")
    out, inside, indent = [], False, ""
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise NotebookError(f"{where}, line {number}: nested {BEGIN}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            if not indent:
                raise NotebookError(
                    f"{where}, line {number}: {BEGIN} at the top level of a cell; put the solution inside a "
                    "function body so the student version can still run"
                )
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f"{indent}raise NotImplementedError()")
        elif stripped.startswith(END):
            if not inside:
                raise NotebookError(f"{where}, line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise NotebookError(f"{where}: {BEGIN} without {END}")
    return "\n".join(out)


def student_version(notebook, entry: course.Notebook, results: dict, root: Path | None = None):
    """The student version of a complete notebook: solutions cleared, outputs removed, title marked."""
    nb = stamp(notebook, entry, True, results, root)
    n_exercises = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            if BEGIN in cell.source:
                n_exercises += 1
                cell.source = clear_solutions(cell.source, where=f"{entry.filename}, cell {index}")
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        elif BEGIN in cell.source:
            raise NotebookError(f"{entry.filename}, cell {index}: solution markers belong in code cells")
    if n_exercises == 0:
        raise NotebookError(f"{entry.filename} has no exercise ({BEGIN} … {END})")
    nb.metadata.pop("widgets", None)
    return nb


def write_exercises(check: bool = False, root: Path | None = None, numbers=None) -> list[Path]:
    """Write (or, with ``check``, compare) ``notebooks/exercises/`` from the complete notebooks (or those
    numbered in ``numbers``)."""
    root = root or repo_root()
    results = benchmark_results(root)
    stale = []
    for path in complete_notebooks(root, numbers):
        entry = _catalogue_entry(path)
        target = student_path(path)
        new = _dumps(student_version(nbformat.read(path, as_version=4), entry, results, root))
        old = target.read_text(encoding="utf-8") if target.exists() else None
        if new != old:
            stale.append(target)
            if not check:
                target.parent.mkdir(exist_ok=True)
                target.write_text(new, encoding="utf-8")
        print(f"{'stale' if (check and new != old) else 'ok' if new == old else 'wrote'}: {target.relative_to(root)}")
    if numbers:
        return stale
    expected = {student_path(p).name for p in complete_notebooks(root)}
    for orphan in sorted((root / "notebooks" / "exercises").glob("*.ipynb")):
        if orphan.name not in expected:
            stale.append(orphan)
            print(f"orphan (no complete notebook): {orphan.relative_to(root)}")
    return stale
