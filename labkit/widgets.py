"""Interactive widgets for the notebooks (ipywidgets).

* :func:`datasheet_form` — an editable form for a :class:`labkit.datasheet.Datasheet`: one collapsible
  panel per section, one text box per question, a live completeness bar, and Save buttons that write
  JSON and Markdown without ever replacing a different file unless "overwrite" is ticked.
* :func:`preference_form` — pairwise preference annotation: a prompt with responses A and B (order drawn per pair
  with a seed and recorded), "A is better" / "B is better" / "skip", "pair i of n"; every click saves all answers
  to a JSON file atomically, and an existing file is resumed or replaced only when the annotator says so. The
  state lives in the plain-Python :class:`PreferenceAnnotations`; :func:`load_preferences` reads the file back.

Widgets render in JupyterLab, Jupyter Notebook, VS Code and Colab. Each widget object is plain Python
state as well, so the tests drive the form by setting ``.value`` and pressing buttons with ``.click()``.
"""

from __future__ import annotations

import html
import json
import os
import random
from pathlib import Path

import ipywidgets as w
from ipywidgets.widgets.widget_string import HTMLStyle, TextStyle

from labkit.files import atomic_write

__all__ = ["datasheet_form", "DatasheetForm", "preference_form", "PreferenceForm", "PreferenceAnnotations",
           "PreferenceFileError", "load_preferences", "PREFERENCE_FORMAT", "PLANTED_PREFERENCES"]


class DatasheetForm:
    """The widgets of a datasheet form and the datasheet they edit (see :func:`datasheet_form`).

    ``boxes`` maps question id → ``Textarea``; ``progress`` is the completeness bar, ``status`` the
    line under it; ``path``, ``overwrite``, ``save_button`` and ``message`` are the save controls;
    ``widget`` is the whole form (display it, or let the notebook display this object).
    """

    def __init__(self, sheet, about_people: bool = True, rows: int = 2):
        from labkit.datasheet import Datasheet

        if not isinstance(sheet, Datasheet):
            raise TypeError(f"datasheet_form edits a labkit.datasheet.Datasheet, not a {type(sheet).__name__}")
        if not isinstance(about_people, bool):
            raise TypeError(f"about_people must be True or False, got {type(about_people).__name__}: {about_people!r}")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise ValueError(f"rows (the height of each answer box, in lines) must be an integer >= 1, got {rows!r}")
        self.sheet = sheet
        self.about_people = about_people
        self.boxes: dict[str, w.Textarea] = {}
        self._headers: dict[str, w.HTML] = {}
        panels, titles = [], []
        # One layout and one style shared by all boxes (and by all labels): a form has ~120 widgets instead of
        # ~400, which keeps the widget state a notebook stores small.
        box_layout, box_style = w.Layout(width="98%"), TextStyle()
        label_layout, label_style = w.Layout(), HTMLStyle()
        for s in sheet.sections:
            children = [w.HTML(f"<i>{html.escape(s['about'])}</i>", layout=label_layout, style=label_style)]
            for q in s["questions"]:
                if q["people"] and not about_people:
                    continue
                label = w.HTML(self._label(q), layout=label_layout, style=label_style)
                self._headers[q["id"]] = label
                box = w.Textarea(value=sheet.answers[q["id"]], rows=rows, placeholder="your answer",
                                 layout=box_layout, style=box_style, continuous_update=False)
                box.observe(self._on_change(q["id"]), names="value")
                self.boxes[q["id"]] = box
                children += [label, box]
            panels.append(w.VBox(children))
            titles.append(s["title"])
        self.sections = w.Accordion(children=panels, titles=tuple(titles), selected_index=None)
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="complete",
                                        layout=w.Layout(width="60%"))
        self.status = w.HTML()
        self.path = w.Text(value=f"datasheet_{_slug(sheet.name)}.json", description="save as",
                           layout=w.Layout(width="60%"))
        self.overwrite = w.Checkbox(value=False, description="overwrite an existing file", indent=False)
        self.save_button = w.Button(description="Save JSON + Markdown", icon="save", button_style="primary")
        self.save_button.on_click(lambda _: self.save())
        self.message = w.HTML()
        self.widget = w.VBox([
            w.HTML(f"<b>Datasheet: {html.escape(sheet.name)}</b>"),
            w.HBox([self.progress, self.status]),
            self.sections,
            w.HBox([self.path, self.overwrite]),
            w.HBox([self.save_button, self.message]),
        ])
        self.refresh()

    def _label(self, q: dict) -> str:
        draft = " <span style='color:#b45309'>(audit draft: review it)</span>" if q["id"] in self.sheet.drafts else ""
        people = " <span style='color:#6b7280'>(data about people)</span>" if q["people"] else ""
        return f"<b>{html.escape(q['text'])}</b>{people}{draft}"

    def _on_change(self, qid: str):
        def handler(change):
            if change["new"] != self.sheet.answers[qid]:
                self.sheet.answer(qid, change["new"])  # an edit by a person: no longer a draft
            self.refresh()
        return handler

    def refresh(self) -> None:
        """Redraw the labels and the completeness bar from the datasheet."""
        q_by_id = {q["id"]: q for s in self.sheet.sections for q in s["questions"]}
        for qid, label in self._headers.items():
            label.value = self._label(q_by_id[qid])
            if self.boxes[qid].value != self.sheet.answers[qid]:
                self.boxes[qid].value = self.sheet.answers[qid]
        rep = self.sheet.completeness(self.about_people)
        self.progress.value = rep["fraction"]
        self.progress.bar_style = "success" if rep["answered"] == rep["total"] else "info"
        self.status.value = (f"{rep['answered']} / {rep['total']} answered ({rep['fraction']:.0%}), "
                             f"{len(rep['drafts'])} audit drafts to review")

    def save(self) -> list[Path] | None:
        """Save JSON (and Markdown next to it) to the path in the form; report in ``message``."""
        json_path = Path(self.path.value).with_suffix(".json")
        try:
            written = [self.sheet.save(json_path, overwrite=self.overwrite.value),
                       self.sheet.save(json_path.with_suffix(".md"), overwrite=self.overwrite.value)]
        except (FileExistsError, OSError, ValueError) as e:
            self.message.value = f"<span style='color:#b91c1c'>not saved: {html.escape(str(e))}</span>"
            return None
        self.message.value = "saved " + ", ".join(html.escape(str(p)) for p in written)
        return written

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "dataset"


def datasheet_form(sheet, about_people: bool = True, rows: int = 2) -> DatasheetForm:
    """An ipywidgets form that edits ``sheet`` in place (Gebru et al.'s questions, one panel per section).

    Typing in a box sets the answer (and clears its "audit draft" mark); the bar shows
    ``Datasheet.completeness``; "Save" writes ``<name>.json`` and ``<name>.md`` and refuses to replace a
    different existing file unless "overwrite" is ticked. ``about_people=False`` hides the questions that
    only apply to data about people. Display the returned object (last line of a cell) to show the form.
    """
    return DatasheetForm(sheet, about_people=about_people, rows=rows)


# --------------------------------------------------------------------------------------------------
# Pairwise preference annotation (notebook 12, "your own preferences")

#: The shipped annotations of notebook 12's planted annotator (built by ``python -m tools.build_planted_annotations``;
#: provenance in ``labkit/data/preference_annotations_planted.md``).
PLANTED_PREFERENCES = Path(__file__).resolve().parent / "data" / "preference_annotations_planted.json"
#: The format tag written into every preference file (:class:`PreferenceAnnotations`).
PREFERENCE_FORMAT = "labkit.preferences/1"
_CHOICES = ("A", "B", "skip")
_PAIR_KEYS = ("id", "prompt", "a", "b")


class PreferenceFileError(ValueError):
    """A preference file that is damaged, or that does not belong to the pairs being annotated."""


def _check_pairs(pairs) -> list[dict]:
    """Validate the pairs to annotate: a non-empty list of dicts with string ``id``, ``prompt``, ``a``, ``b``."""
    if isinstance(pairs, (str, bytes, dict)) or not isinstance(pairs, (list, tuple)):
        raise TypeError(f"pairs must be a list of dicts with keys 'id', 'prompt', 'a', 'b', got {type(pairs).__name__}")
    if not pairs:
        raise ValueError("pairs is empty: give at least one pair of responses to compare")
    out, seen = [], set()
    for i, p in enumerate(pairs):
        if not isinstance(p, dict):
            raise TypeError(f"pairs[{i}] must be a dict with keys 'id', 'prompt', 'a', 'b', got {type(p).__name__}")
        missing = [k for k in _PAIR_KEYS if k not in p]
        if missing:
            raise ValueError(f"pairs[{i}] lacks {missing}: each pair needs 'id', 'prompt', 'a' and 'b'")
        for k in _PAIR_KEYS:
            if not isinstance(p[k], str) or not p[k].strip():
                raise ValueError(f"pairs[{i}][{k!r}] must be a non-empty string, got {p[k]!r}")
        if p["a"] == p["b"]:
            raise ValueError(f"pairs[{i}] (id {p['id']!r}) shows the same response twice: there is nothing to choose")
        if p["id"] in seen:
            raise ValueError(f"pairs[{i}] repeats the id {p['id']!r}: every pair needs its own id")
        seen.add(p["id"])
        reserved = {"shown", "choice", "preferred"} & set(p)
        if reserved:
            raise ValueError(f"pairs[{i}] uses the reserved keys {sorted(reserved)}: the annotation writes them")
        try:  # extra keys (e.g. where the pair comes from) are kept in the file: they must be JSON
            json.dumps(p, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"pairs[{i}] holds a value that cannot be written to JSON ({e})") from None
        out.append(dict(p))
    return out


def _check_path(path, suffix: str = ".json") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or pathlib.Path), got {type(path).__name__}")
    path = Path(path)
    if path.suffix != suffix:
        raise ValueError(f"path must name a {suffix} file, got {str(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(f"path {str(path)!r} is a folder; give a file name ending in {suffix}")
    return path


def load_preferences(path) -> dict:
    """Read a preference file written by :class:`PreferenceAnnotations` (or shipped with labkit) and check it.

    Returns the dict as stored: ``format``, ``annotator``, ``seed`` and ``pairs``, each pair with its ``id``,
    ``prompt``, ``a``, ``b``, ``shown`` (the order it was shown in, e.g. ``["b", "a"]``), ``choice`` (``"A"``,
    ``"B"``, ``"skip"`` or ``None`` when not answered yet) and ``preferred`` (``"a"``, ``"b"`` or ``None``).
    A damaged or inconsistent file raises :class:`PreferenceFileError` saying what is wrong.
    """
    path = _check_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no preference file at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PreferenceFileError(f"{path} is not a readable JSON file ({e}); it is damaged or not a preference file") from None
    _check_record(data, str(path))
    return data


def _check_record(data, where: str) -> None:
    if not isinstance(data, dict) or data.get("format") != PREFERENCE_FORMAT:
        raise PreferenceFileError(f"{where} is not a preference file (its 'format' is not {PREFERENCE_FORMAT!r})")
    if not isinstance(data.get("annotator"), str) or isinstance(data.get("seed"), bool) or not isinstance(data.get("seed"), int):
        raise PreferenceFileError(f"{where} lacks a string 'annotator' or an integer 'seed'")
    pairs = data.get("pairs")
    if not isinstance(pairs, list) or not pairs:
        raise PreferenceFileError(f"{where} holds no pairs")
    try:
        _check_pairs([{k: v for k, v in p.items() if k not in ("shown", "choice", "preferred")} if isinstance(p, dict) else p
                      for p in pairs])
    except (TypeError, ValueError) as e:
        raise PreferenceFileError(f"{where}: {e}") from None
    for i, p in enumerate(pairs):
        if p.get("shown") not in (["a", "b"], ["b", "a"]):
            raise PreferenceFileError(f"{where}: pairs[{i}]['shown'] must be ['a', 'b'] or ['b', 'a'], got {p.get('shown')!r}")
        choice = p.get("choice")
        if choice is not None and choice not in _CHOICES:
            raise PreferenceFileError(f"{where}: pairs[{i}]['choice'] must be 'A', 'B', 'skip' or null, got {choice!r}")
        expected = None if choice in (None, "skip") else p["shown"][_CHOICES.index(choice)]
        if p.get("preferred") != expected:
            raise PreferenceFileError(f"{where}: pairs[{i}]['preferred'] is {p.get('preferred')!r} but the choice "
                                      f"{choice!r} with shown order {p['shown']} means {expected!r}")
    answered = sum(p.get("choice") is not None for p in pairs)
    if "answered" in data and data["answered"] != answered:
        raise PreferenceFileError(f"{where} says 'answered': {data['answered']!r}, but {answered} pairs hold a choice")


class PreferenceAnnotations:
    """The state of a pairwise annotation, in plain Python (the form of :func:`preference_form` is a view of it).

    Pair i is shown as response A and response B in an order drawn with ``random.Random(seed)`` (recorded as
    ``shown``, so position bias can be studied and the choice mapped back to ``a``/``b``). :meth:`choose` records
    "A", "B" or "skip" for the current pair and saves the whole file at once (a temporary file in the same folder,
    then ``os.replace``), so the file on disk always holds every answer given so far.

    An existing file at ``path`` is never replaced silently: ``if_exists="ask"`` (the default) raises
    ``FileExistsError``; ``"resume"`` loads its answers (it must hold the same pairs, in the same order, with the
    same seed) and continues at the first unanswered pair; ``"overwrite"`` starts afresh and replaces the file at
    the first answer.
    """

    def __init__(self, pairs, path, seed: int = 0, annotator: str = "you", if_exists: str = "ask"):
        pairs = _check_pairs(pairs)
        self.path = _check_path(path)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
        if not isinstance(annotator, str) or not annotator.strip():
            raise ValueError(f"annotator must be a non-empty string (a name or a description), got {annotator!r}")
        if if_exists not in ("ask", "resume", "overwrite"):
            raise ValueError(f"if_exists must be 'ask', 'resume' or 'overwrite', got {if_exists!r}")
        self.seed, self.annotator = seed, annotator
        rng = random.Random(seed)
        self.pairs = [dict(p, shown=["b", "a"] if rng.random() < 0.5 else ["a", "b"], choice=None, preferred=None)
                      for p in pairs]
        if self.path.exists():
            if if_exists == "ask":
                raise FileExistsError(f"{self.path} already exists; nothing was changed. Pass if_exists='resume' to "
                                      "continue its annotation, if_exists='overwrite' to start again and replace it, "
                                      "or choose another file name.")
            if if_exists == "resume":
                self._resume(load_preferences(self.path))

    def _resume(self, data: dict) -> None:
        old = data["pairs"]
        same = (data["seed"] == self.seed and len(old) == len(self.pairs)
                and all(all(o.get(k) == p[k] for k in p if k not in ("choice", "preferred")) for o, p in zip(old, self.pairs)))
        if not same:
            raise PreferenceFileError(f"{self.path} holds other pairs (or another seed) than the ones given: it cannot be "
                                      "resumed; choose another file name, or pass if_exists='overwrite' to replace it")
        for o, p in zip(old, self.pairs):
            p["choice"], p["preferred"] = o["choice"], o["preferred"]

    @property
    def n(self) -> int:
        """Number of pairs."""
        return len(self.pairs)

    @property
    def answered(self) -> int:
        """Number of pairs answered so far (skips included)."""
        return sum(p["choice"] is not None for p in self.pairs)

    @property
    def index(self) -> int | None:
        """Index of the current pair (the first one not answered yet), or ``None`` when all are answered."""
        return next((i for i, p in enumerate(self.pairs) if p["choice"] is None), None)

    @property
    def done(self) -> bool:
        """Whether every pair has been answered."""
        return self.index is None

    def current(self) -> dict | None:
        """The current pair as shown: ``{"index", "id", "prompt", "A", "B"}``, or ``None`` when all are answered."""
        i = self.index
        if i is None:
            return None
        p = self.pairs[i]
        return {"index": i, "id": p["id"], "prompt": p["prompt"], "A": p[p["shown"][0]], "B": p[p["shown"][1]]}

    def choose(self, choice: str) -> Path:
        """Record ``"A"``, ``"B"`` or ``"skip"`` for the current pair, save the file, move to the next pair."""
        if choice not in _CHOICES:
            raise ValueError(f"choice must be 'A', 'B' or 'skip', got {choice!r}")
        i = self.index
        if i is None:
            raise RuntimeError(f"all {self.n} pairs are answered already; nothing to choose")
        p = self.pairs[i]
        p["choice"] = choice
        p["preferred"] = None if choice == "skip" else p["shown"][_CHOICES.index(choice)]
        return self.save()

    def to_dict(self) -> dict:
        """What the file holds (see :func:`load_preferences`)."""
        return {"format": PREFERENCE_FORMAT, "annotator": self.annotator, "seed": self.seed,
                "answered": self.answered, "pairs": [dict(p) for p in self.pairs]}

    def save(self) -> Path:
        """Write the file now (atomically); :meth:`choose` calls it after every answer."""
        atomic_write(self.path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")
        return self.path


class PreferenceForm:
    """The widgets of a pairwise annotation form and the :class:`PreferenceAnnotations` they drive.

    ``prompt``, ``response_a`` and ``response_b`` show the current pair; ``a_button``, ``b_button`` and
    ``skip_button`` answer it; ``progress`` and ``status`` say "pair i of n"; ``message`` reports what was saved.
    When ``path`` exists at the start the pair buttons stay off and ``resume_button`` / ``restart_button`` ask what
    to do (resume its answers, or start again and replace it); nothing is written before that choice.
    ``annotations`` is ``None`` until then.
    """

    def __init__(self, pairs, path, seed: int = 0, annotator: str = "you"):
        self._pairs = _check_pairs(pairs)
        self._path = _check_path(path)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
        if not isinstance(annotator, str) or not annotator.strip():
            raise ValueError(f"annotator must be a non-empty string (a name or a description), got {annotator!r}")
        self._seed, self._annotator = seed, annotator
        self.annotations: PreferenceAnnotations | None = None
        box = w.Layout(width="48%", border="1px solid #d1d5db", padding="4px 8px")
        self.prompt = w.HTML()
        self.response_a, self.response_b = w.HTML(layout=box), w.HTML(layout=box)
        self.a_button = w.Button(description="A is better", button_style="primary")
        self.b_button = w.Button(description="B is better", button_style="primary")
        self.skip_button = w.Button(description="skip")
        for b, c in ((self.a_button, "A"), (self.b_button, "B"), (self.skip_button, "skip")):
            b.on_click(lambda _, c=c: self.choose(c))
        self.progress = w.IntProgress(value=0, min=0, max=len(self._pairs), description="answered")
        self.status = w.HTML()
        self.message = w.HTML()
        self.resume_button = w.Button(description="Resume", icon="play")
        self.restart_button = w.Button(description="Start over (replace the file)", button_style="danger")
        self.resume_button.on_click(lambda _: self.start("resume"))
        self.restart_button.on_click(lambda _: self.start("overwrite"))
        self.ask = w.HBox([self.resume_button, self.restart_button])
        self.widget = w.VBox([
            w.HTML(f"<b>Which response do you prefer?</b> Answers go to <code>{html.escape(str(self._path))}</code> "
                   "after every click."),
            self.ask, self.prompt, w.HBox([self.response_a, self.response_b]),
            w.HBox([self.a_button, self.b_button, self.skip_button]),
            w.HBox([self.progress, self.status]), self.message,
        ])
        if self._path.exists():
            self.ask.layout.display = None
            self._enable(False)
            self.message.value = (f"<span style='color:#b45309'>{html.escape(str(self._path))} already exists: resume "
                                  "its answers, or start over and replace it.</span>")
        else:
            self.ask.layout.display = "none"
            self.start("ask")

    def _enable(self, on: bool) -> None:
        for b in (self.a_button, self.b_button, self.skip_button):
            b.disabled = not on

    def start(self, if_exists: str) -> PreferenceAnnotations | None:
        """Begin the annotation (``"resume"`` or ``"overwrite"`` an existing file; ``"ask"`` when there is none)."""
        if if_exists not in ("ask", "resume", "overwrite"):
            raise ValueError(f"if_exists must be 'ask', 'resume' or 'overwrite', got {if_exists!r}")
        try:
            self.annotations = PreferenceAnnotations(self._pairs, self._path, seed=self._seed,
                                                     annotator=self._annotator, if_exists=if_exists)
        except (FileExistsError, PreferenceFileError, OSError, ValueError) as e:
            self.message.value = f"<span style='color:#b91c1c'>{html.escape(str(e))}</span>"
            return None
        self.ask.layout.display = "none"
        self.message.value = ""
        self.refresh()
        return self.annotations

    def choose(self, choice: str) -> Path | None:
        """Answer the current pair with ``"A"``, ``"B"`` or ``"skip"`` (what the buttons do); saves the file."""
        if self.annotations is None:
            raise RuntimeError("the file exists: press Resume or Start over first")
        try:
            written = self.annotations.choose(choice)
        except OSError as e:
            self.message.value = f"<span style='color:#b91c1c'>not saved: {html.escape(str(e))}</span>"
            return None
        self.message.value = f"saved {self.annotations.answered} answers to {html.escape(str(written))}"
        self.refresh()
        return written

    def refresh(self) -> None:
        """Show the current pair and the progress."""
        ann = self.annotations
        self.progress.value = ann.answered
        cur = ann.current()
        if cur is None:
            self.prompt.value = "<b>All pairs answered — thank you.</b> Run the next cell to train on your labels."
            self.response_a.value = self.response_b.value = ""
            self.status.value = f"{ann.answered} of {ann.n} answered"
            self._enable(False)
            return
        self.prompt.value = f"<b>Prompt:</b> {html.escape(cur['prompt'])}"
        self.response_a.value = f"<b>A</b><br>{html.escape(cur['A'])}"
        self.response_b.value = f"<b>B</b><br>{html.escape(cur['B'])}"
        self.status.value = f"pair {cur['index'] + 1} of {ann.n}"
        self._enable(True)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def preference_form(pairs, path, seed: int = 0, annotator: str = "you") -> PreferenceForm:
    """An ipywidgets form to annotate pairs of responses: shows a prompt with responses A and B (in an order drawn
    per pair with ``seed`` and recorded), buttons "A is better", "B is better", "skip", and "pair i of n".

    Every click saves all answers so far to ``path`` (JSON, written atomically: see
    :class:`PreferenceAnnotations`). An existing file is never replaced silently: the form asks whether to resume
    it or start over. ``pairs`` is a list of dicts with string ``id``, ``prompt``, ``a``, ``b`` (extra keys are
    kept in the file). Read the result with :func:`load_preferences`. Display the returned object to show it.
    """
    return PreferenceForm(pairs, path, seed=seed, annotator=annotator)
