"""Interactive widgets for the notebooks (ipywidgets).

* :func:`datasheet_form` — an editable form for a :class:`labkit.datasheet.Datasheet`: one collapsible
  panel per section, one text box per question, a live completeness bar, and Save buttons that write
  JSON and Markdown without ever replacing a different file unless "overwrite" is ticked.

Widgets render in JupyterLab, Jupyter Notebook, VS Code and Colab. Each widget object is plain Python
state as well, so the tests drive the form by setting ``.value`` and pressing buttons with ``.click()``.
"""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as w
from ipywidgets.widgets.widget_string import HTMLStyle, TextStyle

__all__ = ["datasheet_form", "DatasheetForm"]


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
