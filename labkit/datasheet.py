"""Datasheets for datasets (Gebru et al., 2018/2021): the question set, a :class:`Datasheet`, and an audit.

Gebru, Morgenstern, Vecchione, Wortman Vaughan, Wallach, Daumé III and Crawford, "Datasheets for Datasets",
Communications of the ACM 64(12), 2021 (arXiv:1803.09010), propose that every dataset ship with answers to
a fixed set of questions in seven sections: motivation, composition, collection process, preprocessing /
cleaning / labelling, uses, distribution and maintenance.

* :func:`load_questions` — the full question set, by section, from ``labkit/data/datasheet_questions.json``
  (our transcription; 57 questions). Questions marked ``people`` apply when the data relates to people.
* :class:`Datasheet` — the answers to those questions: :meth:`~Datasheet.answer`,
  :meth:`~Datasheet.completeness`, :meth:`~Datasheet.to_markdown`, :meth:`~Datasheet.to_json`,
  :meth:`~Datasheet.save` (never silently overwrites a different file) and :meth:`Datasheet.load`
  (a damaged file raises :class:`DatasheetError` saying what is wrong). ``labkit.widgets.datasheet_form``
  edits one in an ipywidgets form.
* The automatic audit answers what the data itself can answer: :func:`missing_values`,
  :func:`exact_duplicates`, :func:`near_duplicate_pairs` (cosine similarity of sentence embeddings,
  :func:`embed_texts`), :func:`label_balance`, :func:`subpopulation_stats`, :func:`sensitive_columns`;
  :func:`audit` runs them all and :func:`audit_answers` turns the result into draft answers that
  :meth:`Datasheet.prefill` writes into the empty questions (marked as drafts until someone edits them).
* :func:`toy_dataset` — a small dataset with planted problems (missing values, duplicates, paraphrases,
  an email column) and the ground truth, so the audit can be checked.
* :func:`load_shipped` — the datasheets that ship with the course (``labkit/data/datasheet_<name>.json``).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from labkit.files import atomic_write
from labkit.validation import integer_at_least as _int

__all__ = [
    "DatasheetError",
    "load_questions",
    "question_ids",
    "Datasheet",
    "is_missing",
    "missing_values",
    "exact_duplicates",
    "embed_texts",
    "near_duplicate_pairs",
    "label_balance",
    "subpopulation_stats",
    "label_gaps",
    "sensitive_columns",
    "sensitive_mentions",
    "audit",
    "audit_answers",
    "toy_dataset",
    "COURSE_AUDITS",
    "course_records",
    "shipped_path",
    "load_shipped",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
QUESTIONS_FILE = DATA_DIR / "datasheet_questions.json"
FORMAT = "labkit-datasheet"
FORMAT_VERSION = 1


class DatasheetError(ValueError):
    """A datasheet file is damaged or is not a datasheet, or a question id is unknown."""


# --------------------------------------------------------------------------------------------------
# Argument checks


def _encodable(text: str, what: str) -> str:
    """``text`` if it can be written as UTF-8; a lone surrogate (e.g. from a bad decode) cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} contains {text[e.start:e.end]!a} at position {e.start}, a lone surrogate that cannot "
                         "be saved as UTF-8 (it usually comes from decoding bytes with errors='surrogateescape'); "
                         "remove it or decode the source text properly") from None
    return text


def _strict_json(value: Any, what: str) -> Any:
    """A copy of ``value`` made of plain JSON types, refusing NaN and infinity (JSON has neither: Python's json
    would write bare ``NaN``, which other JSON readers reject) and text that cannot be saved as UTF-8."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError as e:
        raise ValueError(f"{what} holds NaN or infinity ({e}); JSON has no such numbers: use None for a missing "
                         "number") from None
    except TypeError as e:
        raise TypeError(f"{what} must hold only JSON types (dict, list, str, int, float, bool, None): {e}") from None
    _encodable(text, what)
    return json.loads(text)


def _bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}: {value!r}")
    return value


def _str_list(values, name: str) -> list:
    """A list (a single string is refused: it would be read as a list of characters)."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a list, not one string (wrap it in a list: [...])")
    if isinstance(values, dict) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list, got {type(values).__name__}")
    return list(values)


def _field(value, name: str, optional: bool = True) -> None:
    """A column name: a string (or None where the argument is optional)."""
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a column name (a string){' or None' if optional else ''}, got {type(value).__name__}: {value!r}")


# --------------------------------------------------------------------------------------------------
# The question set


def load_questions() -> list[dict]:
    """The Gebru et al. question set: a list of sections ``{"id", "title", "about", "questions"}``.

    Each question is ``{"id": "section.key", "text": ..., "people": bool}``; ``people`` marks the
    questions that only apply when the dataset relates to people. Fresh copies: change them freely.
    """
    with open(QUESTIONS_FILE, encoding="utf-8") as f:
        return json.load(f)["sections"]


def question_ids(sections: list[dict] | None = None) -> list[str]:
    """All question ids in order (``motivation.purpose``, …, ``maintenance.other``)."""
    sections = load_questions() if sections is None else sections
    if not isinstance(sections, list) or not all(isinstance(s, dict) and isinstance(s.get("questions"), list)
                                                 and all(isinstance(q, dict) and "id" in q for q in s["questions"])
                                                 for s in sections):
        raise TypeError("sections must be a list of sections like load_questions(): dicts with a 'questions' list "
                        "of dicts with an 'id'")
    return [q["id"] for s in sections for q in s["questions"]]


def questions_source() -> str:
    """The citation of the question set."""
    with open(QUESTIONS_FILE, encoding="utf-8") as f:
        return json.load(f)["source"]


# --------------------------------------------------------------------------------------------------
# The datasheet


class Datasheet:
    """Answers to the datasheet questions for one dataset.

    ``answers`` maps every question id to a string ('' = unanswered). ``drafts`` holds the ids whose
    answer was written by :meth:`prefill` from the automatic audit and not yet edited by a person; they
    count as answered but the report lists them for review. ``audit`` keeps the audit's numbers.
    Everything round-trips exactly through :meth:`to_json` / :meth:`from_json` and :meth:`save` /
    :meth:`load`.
    """

    def __init__(self, name: str, answers: dict[str, str] | None = None, *, audit: dict | None = None,
                 drafts: Iterable[str] = ()):
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a datasheet needs a name: the dataset's name, e.g. Datasheet('course corpus')")
        self.name = _encodable(name, "the datasheet's name")
        if answers is not None and not isinstance(answers, dict):
            raise TypeError(f"answers must be a dict of question id → answer, got {type(answers).__name__}")
        if audit is not None and not isinstance(audit, dict):
            raise TypeError(f"audit must be a dict (an audit() result), got {type(audit).__name__}")
        drafts = _str_list(drafts, "drafts")
        self.sections = load_questions()
        self._ids = question_ids(self.sections)
        self._text = {q["id"]: q["text"] for s in self.sections for q in s["questions"]}
        self.answers: dict[str, str] = {qid: "" for qid in self._ids}
        self.drafts: set[str] = set()
        self.audit: dict = {}
        for qid, text in (answers or {}).items():
            self.answer(qid, text)
        for qid in drafts:
            self._check_id(qid)
            self.drafts.add(qid)
        if audit is not None:
            self.audit = _strict_json(audit, "audit")  # a JSON-clean copy

    # -- answering ---------------------------------------------------------------------------------

    def _check_id(self, qid: str) -> None:
        if not isinstance(qid, str):
            raise TypeError(f"a question id is a string like 'motivation.purpose', got {type(qid).__name__}: {qid!r}")
        if qid not in self._text:
            close = [i for i in self._ids if i.split(".")[-1] == str(qid).split(".")[-1]]
            hint = f" Did you mean {close}?" if close else " See question_ids() for the list."
            raise DatasheetError(f"unknown question id {qid!r}.{hint}")

    def question(self, qid: str) -> str:
        """The text of question ``qid``."""
        self._check_id(qid)
        return self._text[qid]

    def answer(self, qid: str, text: str, *, draft: bool = False) -> None:
        """Set the answer to question ``qid`` ('' clears it). ``draft=True`` marks it for review."""
        self._check_id(qid)
        if not isinstance(text, str):
            raise TypeError(f"an answer is a string; got {type(text).__name__} for {qid!r} (use str(...) for numbers)")
        _encodable(text, f"the answer to {qid!r}")
        _bool(draft, "draft")
        self.answers[qid] = text
        if draft and text.strip():
            self.drafts.add(qid)
        else:
            self.drafts.discard(qid)

    def is_answered(self, qid: str) -> bool:
        self._check_id(qid)
        return bool(self.answers[qid].strip())

    def prefill(self, audit_result: dict, answers: dict[str, str] | None = None) -> list[str]:
        """Write the audit's draft answers (:func:`audit_answers`) into the questions that are still empty.

        Never replaces an answer someone wrote. Returns the ids filled; they are marked as drafts.
        """
        if not isinstance(audit_result, dict):
            raise TypeError(f"audit_result must be the dict that audit() returns, got {type(audit_result).__name__}")
        drafts = audit_answers(audit_result) if answers is None else answers
        if not isinstance(drafts, dict):
            raise TypeError(f"answers must be a dict of question id → draft answer, got {type(drafts).__name__}")
        for qid, text in drafts.items():  # check everything before changing anything
            self._check_id(qid)
            if not isinstance(text, str):
                raise TypeError(f"the draft answer to {qid!r} must be a string, got {type(text).__name__}")
            _encodable(text, f"the draft answer to {qid!r}")
        self.audit = _strict_json(audit_result, "audit_result")
        filled = []
        for qid, text in drafts.items():
            if not self.is_answered(qid) or qid in self.drafts:
                self.answer(qid, text, draft=True)
                filled.append(qid)
        return filled

    # -- completeness ------------------------------------------------------------------------------

    def completeness(self, about_people: bool = True) -> dict:
        """How complete the datasheet is.

        Returns ``{"answered", "total", "fraction", "sections": {id: {"answered", "total", "missing"}},
        "missing": [ids], "drafts": [ids]}``. With ``about_people=False`` the questions that apply only to
        data about people are left out of the totals (Gebru et al. let such datasets skip them).
        "Any other comments?" questions are optional and never counted.
        """
        _bool(about_people, "about_people")
        report = {"sections": {}, "missing": [], "drafts": sorted(self.drafts, key=self._ids.index)}
        answered = total = 0
        for s in self.sections:
            qs = [q for q in s["questions"] if not q["id"].endswith(".other") and (about_people or not q["people"])]
            missing = [q["id"] for q in qs if not self.answers[q["id"]].strip()]
            report["sections"][s["id"]] = {"answered": len(qs) - len(missing), "total": len(qs), "missing": missing}
            report["missing"] += missing
            answered += len(qs) - len(missing)
            total += len(qs)
        report.update(answered=answered, total=total, fraction=answered / total)
        return report

    def completeness_table(self, about_people: bool = True) -> str:
        """The completeness report as a small text table (one line per section)."""
        rep = self.completeness(about_people)
        titles = {s["id"]: s["title"] for s in self.sections}
        lines = [f"{'section':<40} answered"]
        for sid, r in rep["sections"].items():
            lines.append(f"{titles[sid]:<40} {r['answered']:>3} / {r['total']:<3}")
        lines.append(f"{'total':<40} {rep['answered']:>3} / {rep['total']:<3} ({rep['fraction']:.0%}); "
                     f"{len(rep['drafts'])} audit drafts to review")
        return "\n".join(lines)

    # -- export ------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-ready dict holding everything (format tag, name, all answers, drafts, audit)."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "questions": questions_source(),
            "answers": dict(self.answers),
            "drafts": sorted(self.drafts, key=self._ids.index),
            "audit": _strict_json(self.audit, "the datasheet's audit"),
        }

    def to_json(self) -> str:
        """The datasheet as JSON text (UTF-8, unicode kept as is, stable key order)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str = "the data") -> "Datasheet":
        """Rebuild a datasheet from :meth:`to_dict`'s output; anything malformed raises :class:`DatasheetError`."""
        if not isinstance(where, str):
            raise TypeError(f"where must be a string naming the source (for error messages), got {type(where).__name__}")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DatasheetError(f"{where} is not a labkit datasheet (no \"format\": \"{FORMAT}\" field).")
        if data.get("version") != FORMAT_VERSION:
            raise DatasheetError(f"{where} has datasheet format version {data.get('version')!r}; this labkit reads "
                                 f"version {FORMAT_VERSION}. Upgrade labkit or re-export the datasheet.")
        for key, kind in [("name", str), ("answers", dict), ("drafts", list), ("audit", dict)]:
            if not isinstance(data.get(key), kind):
                raise DatasheetError(f"{where}: field {key!r} is missing or not a {kind.__name__}; the file is damaged.")
        known = set(question_ids())
        unknown = sorted(set(data["answers"]) - known)
        if unknown:
            raise DatasheetError(f"{where}: unknown question ids {unknown}; the file is damaged or from another question set.")
        absent = sorted(known - set(data["answers"]))
        if absent:
            raise DatasheetError(f"{where}: answers for {len(absent)} questions are missing (e.g. {absent[:3]}); "
                                 "a saved datasheet holds every question, so the file is damaged or truncated.")
        bad = [k for k, v in data["answers"].items() if not isinstance(v, str)]
        if bad:
            raise DatasheetError(f"{where}: the answers to {bad} are not strings; the file is damaged.")
        bad_drafts = [d for d in data["drafts"] if d not in known]
        if bad_drafts:
            raise DatasheetError(f"{where}: unknown question ids among the drafts: {bad_drafts}.")
        try:
            _strict_json(data, where)
        except (ValueError, TypeError) as e:
            raise DatasheetError(f"{where} is not a clean datasheet: {e}") from None
        sheet = cls(data["name"], audit=data["audit"])
        sheet.answers.update(data["answers"])
        sheet.drafts = set(data["drafts"])
        return sheet

    @classmethod
    def from_json(cls, text: str, where: str = "the text") -> "Datasheet":
        """Parse :meth:`to_json`'s output (strict JSON: bare NaN or Infinity is refused)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be the JSON text (a str), got {type(text).__name__}; for a file use Datasheet.load(path)")

        def no_constants(name):
            raise DatasheetError(f"{where} is not strict JSON: it contains a bare {name}, which JSON does not allow "
                                 "(the file was written by a tool that allows NaN); replace it with null")

        try:
            data = json.loads(text, parse_constant=no_constants)
        except json.JSONDecodeError as e:
            raise DatasheetError(f"{where} is not valid JSON ({e.msg}: line {e.lineno}, column {e.colno}): the file "
                                 "is damaged or not a datasheet. Restore it from your version control or re-export it.") from None
        return cls.from_dict(data, where)

    def to_markdown(self) -> str:
        """The datasheet as a Markdown document: completeness summary, then every section and question."""
        rep = self.completeness()
        out = [f"# Datasheet: {self.name}", "",
               f"Questions from {questions_source()}", "",
               f"Answered: {rep['answered']} of {rep['total']} questions ({rep['fraction']:.0%}); "
               f"\"Any other comments?\" is optional. Answers marked *(audit draft)* were written by the "
               "automatic audit of `labkit.datasheet` and are still to be reviewed.", ""]
        for s in self.sections:
            out += [f"## {s['title']}", ""]
            for q in s["questions"]:
                mark = " *(applies when the data relates to people)*" if q["people"] else ""
                out.append(f"**{q['text']}**{mark}")
                out.append("")
                text = self.answers[q["id"]].strip()
                if not text:
                    out.append("_(not answered)_")
                else:
                    if q["id"] in self.drafts:
                        text = "*(audit draft)* " + text
                    out.append(text)
                out.append("")
        return "\n".join(out).rstrip() + "\n"

    # -- files -------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the datasheet to ``path``: JSON for ``.json`` (lossless, strict JSON), Markdown for ``.md`` (for reading).

        An existing file with the same content is left as it is. An existing file with *different*
        content raises ``FileExistsError`` unless ``overwrite=True``. A symbolic link is followed: the file it
        points to is written and the link stays a link. The text is written to a new file that replaces
        ``path`` only when it is complete and on disk, so a crash never leaves half a datasheet. On Linux that
        file is unnamed (``O_TMPFILE``) until then, so even a killed process leaves nothing behind; where that is
        not possible it is a hidden ``.<name>.<pid>.<random>.tmp`` file, which the next save to the same path
        removes if its process is gone.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path (str or pathlib.Path), got {type(path).__name__}")
        _bool(overwrite, "overwrite")
        path = Path(path)
        if path.suffix == ".json":
            text = self.to_json()
        elif path.suffix == ".md":
            text = self.to_markdown()
        else:
            raise ValueError(f"save to a .json file (lossless, loadable) or a .md file (for reading), not {path.name!r}")
        data = _encodable(text, "the datasheet").encode("utf-8")
        target = path
        if path.is_symlink():
            target = path.resolve()  # write through the link (and any chain of links), keep the link itself
            if not target.parent.is_dir():
                raise FileNotFoundError(f"{path} is a symbolic link to {target}, whose folder does not exist; "
                                        "fix or remove the link")
        if target.exists():
            if target.is_dir():
                raise IsADirectoryError(f"{path} is a folder; give a file name ending in {path.suffix or '.json'}")
            if target.read_bytes() == data:
                return path
            if not overwrite:
                raise FileExistsError(f"{path} already exists and holds something else; nothing was written. Pass "
                                      "overwrite=True to replace it, or choose another file name.")
        atomic_write(target, data)  # labkit.files: complete and on disk before it replaces anything
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Datasheet":
        """Read a datasheet saved with :meth:`save` as ``.json``; a damaged file raises :class:`DatasheetError`."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path (str or pathlib.Path), got {type(path).__name__}")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no datasheet at {path}")
        if path.suffix == ".md":
            raise DatasheetError(f"{path} is the Markdown export, which is for reading; load the .json file instead.")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DatasheetError(f"{path} is not UTF-8 text (byte {e.start}); the file is damaged or not a datasheet.") from None
        return cls.from_json(text, where=str(path))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Datasheet) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        rep = self.completeness()
        return f"Datasheet({self.name!r}: {rep['answered']}/{rep['total']} answered, {len(self.drafts)} audit drafts)"


# --------------------------------------------------------------------------------------------------
# The audit


def _check_records(records: Sequence[dict]) -> None:
    if isinstance(records, (dict, str, bytes)) or not isinstance(records, Sequence):
        raise TypeError("records must be a list of dicts (one per instance), e.g. datasets.load_corpus()")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise TypeError(f"records[{i}] is a {type(r).__name__}; every record must be a dict of column → value")


def _columns(records: Sequence[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        for k in r:
            seen.setdefault(k, None)
    return list(seen)


def is_missing(value: Any) -> bool:
    """Missing = ``None``, a float NaN, or a string that is empty or only whitespace (0 and False are values)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def missing_values(records: Sequence[dict], columns: Sequence[str] | None = None) -> dict[str, int]:
    """Missing values per column: records where the column is absent or :func:`is_missing`.

    ``columns`` defaults to every column seen in any record (in order of first appearance).
    """
    _check_records(records)
    columns = _columns(records) if columns is None else _str_list(columns, "columns")
    return {c: sum(1 for r in records if c not in r or is_missing(r[c])) for c in columns}


def exact_duplicates(texts: Sequence[str]) -> list[list[int]]:
    """Groups of indices whose texts are identical, character for character.

    Only groups of two or more; each group in increasing index order, groups ordered by their first
    index. Missing texts (None, '') are skipped. Redundant copies = Σ (len(group) − 1).
    """
    texts = _str_list(texts, "texts")
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        if t is None or (isinstance(t, str) and not t.strip()):
            continue
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is a {type(t).__name__}, not a string")
        groups.setdefault(t, []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def embed_texts(texts: Sequence[str], embedder=None, max_tokens: int | None = 128, batch_size: int = 64,
                device: str | torch.device | None = None) -> torch.Tensor:
    """Unit-norm sentence embeddings ``[n, d]`` of ``texts`` (all-MiniLM-L6-v2 by default, Reimers & Gurevych 2019).

    ``max_tokens`` truncates each text to its first tokens (the embedder's cost grows with length; near
    duplicates of generated text share their openings). ``None`` keeps the embedder's own limit (256).
    """
    texts = _str_list(texts, "texts")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts[{bad[0]}] is a {type(texts[bad[0]]).__name__}; embed_texts embeds strings "
                        "(drop missing texts first)")
    if max_tokens is not None:
        max_tokens = _int(max_tokens, "max_tokens", 1)
    batch_size = _int(batch_size, "batch_size", 1)
    if embedder is None:
        from labkit.lm import load_embedder

        embedder = load_embedder(device)
    elif not hasattr(embedder, "encode"):
        raise TypeError(f"embedder must be a sentence-transformers model (labkit.load_embedder()), got {type(embedder).__name__}")
    if not texts:
        return torch.zeros(0, embedder.get_sentence_embedding_dimension())
    old = embedder.max_seq_length
    if max_tokens is not None:
        embedder.max_seq_length = min(int(max_tokens), old)
    try:
        emb = embedder.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                              show_progress_bar=False)
    finally:
        embedder.max_seq_length = old
    return emb.float()


def near_duplicate_pairs(embeddings: torch.Tensor, threshold: float = 0.9, block: int = 1024) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, whose cosine similarity cos(e_i, e_j) = e_i·e_j / (‖e_i‖‖e_j‖) is ≥ ``threshold``.

    The similarity matrix is computed in blocks of ``block`` rows, so memory stays O(block · n).
    Sorted by (i, j). Exact duplicates (cosine 1) are included; :func:`audit` reports them separately.
    """
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
        raise ValueError(f"embeddings must be a [n, d] tensor; got {getattr(embeddings, 'shape', type(embeddings))}")
    if not embeddings.is_floating_point():
        raise TypeError(f"embeddings must be a float tensor, got dtype {embeddings.dtype}")
    if not torch.isfinite(embeddings).all():
        bad = sorted({int(i) for i in (~torch.isfinite(embeddings)).any(-1).nonzero().flatten()[:5]})
        raise ValueError(f"embeddings has NaN or infinite entries (rows {bad}…): a similarity with them is undefined; "
                         "re-embed those texts or drop them")
    zero = (embeddings.norm(dim=-1) == 0).nonzero().flatten()
    if len(zero):
        raise ValueError(f"embeddings has all-zero rows ({zero[:5].tolist()}): a zero vector has no direction, so its "
                         "cosine similarity is undefined")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1]; got {threshold!r}")
    block = _int(block, "block", 1)
    e = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    n = e.shape[0]
    pairs: list[tuple[int, int]] = []
    for start in range(0, n, block):
        sim = e[start:start + block] @ e.T
        rows = torch.arange(start, min(start + block, n), device=e.device)[:, None]
        cols = torch.arange(n, device=e.device)[None, :]
        hit = (sim >= threshold) & (cols > rows)
        idx = hit.nonzero().cpu()
        pairs += [(int(i) + start, int(j)) for i, j in idx]
    return sorted(pairs)


def label_balance(labels: Sequence[Any]) -> dict:
    """Counts and shares of each label, the imbalance ratio and the normalised entropy.

    imbalance = n_majority / n_minority; normalised entropy H(p) / log K (1 = perfectly balanced,
    0 = a single label), with p the label shares and K the number of distinct labels. Missing labels
    (:func:`is_missing`) are counted separately and left out of the shares. With no labels at all the
    imbalance is None (JSON null), not NaN.
    """
    labels = _str_list(labels, "labels")
    present = [l for l in labels if not is_missing(l)]
    try:
        counts = Counter(present)
    except TypeError as e:
        raise TypeError(f"labels must be hashable values (strings, numbers, booleans): {e}") from None
    counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0]))))
    n = len(present)
    shares = {str(k): v / n for k, v in counts.items()} if n else {}
    k = len(counts)
    h = -sum(p * math.log(p) for p in shares.values())
    return {
        "counts": {str(k_): v for k_, v in counts.items()},
        "shares": shares,
        "missing": len(labels) - n,
        "imbalance": (max(counts.values()) / min(counts.values())) if counts else None,
        "normalised_entropy": (h / math.log(k)) if k > 1 else 0.0,
    }


def _numeric(v: Any) -> bool:
    """A finite int or float (bools, NaN and ±inf are not averaged: JSON could not hold the result)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def subpopulation_stats(records: Sequence[dict], group_field: str, label_field: str | None = None,
                        numeric_fields: Sequence[str] | None = None, text_field: str | None = None) -> dict:
    """Per value of ``group_field``: its count and share, the mean of each numeric column, the mean text
    length in words, and (with ``label_field``) the share of each label inside the group.

    Large gaps between groups (one group much smaller, or labelled differently) are what a datasheet's
    "subpopulations" and "impacts" answers should discuss.
    """
    _check_records(records)
    _field(group_field, "group_field", optional=False)
    _field(label_field, "label_field")
    _field(text_field, "text_field")
    if numeric_fields is not None:
        numeric_fields = _str_list(numeric_fields, "numeric_fields")
    if not any(group_field in r for r in records):
        raise KeyError(f"no record has the column {group_field!r}; columns: {_columns(records)}")
    if numeric_fields is None:
        numeric_fields = [c for c in _columns(records) if c != group_field
                          and all(_numeric(r[c]) for r in records if c in r and not is_missing(r[c]))
                          and any(c in r for r in records)]
    groups: dict[str, list[dict]] = {}
    for r in records:
        g = r.get(group_field)
        groups.setdefault("(missing)" if is_missing(g) else str(g), []).append(r)
    out = {}
    for g, rows in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        st: dict[str, Any] = {"n": len(rows), "share": len(rows) / len(records)}
        for c in numeric_fields:
            vals = [r[c] for r in rows if c in r and _numeric(r[c])]
            st[f"mean_{c}"] = sum(vals) / len(vals) if vals else None
        if text_field:
            lens = [len(r[text_field].split()) for r in rows if isinstance(r.get(text_field), str)]
            st["mean_words"] = sum(lens) / len(lens) if lens else None
        if label_field:
            st["label_shares"] = label_balance([r.get(label_field) for r in rows])["shares"]
        out[g] = st
    return out


def label_gaps(records: Sequence[dict], group_field: str, label_field: str, threshold: float = 0.2) -> list[tuple]:
    """Groups whose labels differ from the whole dataset's: label balance per subpopulation.

    Records whose label is missing (:func:`is_missing`) are left out. For each value g of ``group_field`` (a
    missing value is the group ``"(missing)"``) and each label k of the dataset, the share of k among g's
    labelled records, p_{g,k} = n_{g,k} / n_g, is compared with its share in the whole dataset, p_k = n_k / n.
    Returns every (group, label, p_{g,k}, p_k) with |p_{g,k} − p_k| ≥ ``threshold`` (groups and labels as
    strings), largest gap first, ties by group then label. A large gap in a small group may be chance: report
    the group's size next to it (:func:`subpopulation_stats`).
    """
    _check_records(records)
    _field(group_field, "group_field", optional=False)
    _field(label_field, "label_field", optional=False)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a number between 0 and 1 (a difference of shares), got {threshold!r}")
    present = [r for r in records if not is_missing(r.get(label_field))]
    if not present:
        raise ValueError(f"no record has a label in {label_field!r}: there is no label balance to compare")
    overall = Counter(str(r[label_field]) for r in present)
    groups: dict[str, Counter] = {}
    for r in present:
        g = r.get(group_field)
        groups.setdefault("(missing)" if is_missing(g) else str(g), Counter())[str(r[label_field])] += 1
    out = []
    for g, counts in groups.items():
        n_g = sum(counts.values())
        for k, n_k in overall.items():
            share, base = counts[k] / n_g, n_k / len(present)
            if abs(share - base) >= threshold:
                out.append((g, k, share, base))
    return sorted(out, key=lambda t: (-abs(t[2] - t[3]), t[0], t[1]))


# Column names that suggest personal or sensitive data (GDPR art. 9 categories, identifiers, contact data).
_SENSITIVE_NAMES = {
    "identifier": r"(^|_)(name|first_?name|last_?name|surname|user(name)?|user_?id|email|e_?mail|phone|address|"
                  r"zip|postcode|postal|ssn|passport|ip(_?address)?|device_?id|account)($|_)",
    "demographic": r"(^|_)(age|birth|dob|gender|sex|race|ethnic\w*|nationality|country_of_origin|marital)($|_)",
    "special category": r"(^|_)(religion|religious|politic\w*|union|health|disability|diagnos\w*|medical|"
                        r"sexual\w*|orientation|biometric|genetic|criminal|income|salary|credit)($|_)",
    "location": r"(^|_)(location|lat|latitude|lon|lng|longitude|gps|city|home)($|_)",
}
# Patterns in values that identify people or reach them.
_SENSITIVE_VALUES = {
    "email addresses": r"[\w.+-]+@[\w-]+\.[\w.-]+",
    "phone numbers": r"(?<![\w.+-])\+?\d[\d ()-]{7,16}\d(?![\w-])",  # then filtered by _is_phone
    "URLs": r"https?://\S+|www\.\S+",
}
# Words that mark a text as touching a sensitive category (for "does it mention …" statistics).
_SENSITIVE_TOPICS = {
    "gender": r"\b(he|she|him|her|his|hers|man|men|woman|women|boy|girl|male|female|husband|wife|mother|father)\b",
    "religion": r"\b(god|church|mosque|temple|synagogue|christian\w*|muslim\w*|islam\w*|jewish|judaism|hindu\w*|"
                r"buddhis\w*|atheis\w*|religio\w*|pray\w*)\b",
    "ethnicity or nationality": r"\b(race|racial|ethnic\w*|black|white|asian|african|european|american|chinese|"
                                r"indian|mexican|arab\w*|latin[oa]|immigrant\w*|nationality)\b",
    "health": r"\b(illness|disease|cancer|diabetes|depress\w*|anxiety|disorder|disabilit\w*|diagnos\w*|"
              r"patient|hospital|medication|therapy)\b",
    "sexual orientation": r"\b(gay|lesbian|bisexual|transgender|queer|lgbt\w*|homosexual\w*|heterosexual\w*)\b",
    "politics": r"\b(democrat\w*|republican\w*|conservative|liberal|socialis\w*|communis\w*|election|vote|voting|"
                r"political|politician\w*)\b",
}


def _is_phone(candidate: str) -> bool:
    """9–15 digits with single spaces, hyphens or brackets between them; dates and year ranges are not phones."""
    digits = sum(ch.isdigit() for ch in candidate)
    if not 9 <= digits <= 15 or "  " in candidate:
        return False
    return not re.fullmatch(r"\d{4}-\d{2}-\d{2}.*|\d{4} ?- ?\d{4}", candidate)


def sensitive_columns(records: Sequence[dict], max_scan: int = 5000) -> list[dict]:
    """Columns that look sensitive: by name (identifiers, demographics, special categories of personal
    data as in GDPR art. 9, locations) or by content (email addresses, phone numbers, URLs in the values).

    Returns ``[{"column", "reason"}]``, one entry per column and reason. A heuristic: it finds candidates
    for a person to judge, and misses what it has no pattern for (names inside free text, for example).
    """
    _check_records(records)
    max_scan = _int(max_scan, "max_scan", 1)
    found = []
    for c in _columns(records):
        key = re.sub(r"[^a-z0-9]+", "_", c.lower())
        for why, pat in _SENSITIVE_NAMES.items():
            if re.search(pat, key):
                found.append({"column": c, "reason": f"name suggests {why} data"})
                break
        values = [r[c] for r in records[:max_scan] if isinstance(r.get(c), str)]
        for what, pat in _SENSITIVE_VALUES.items():
            if what == "phone numbers":
                n = sum(1 for v in values if any(_is_phone(m) for m in re.findall(pat, v)))
            else:
                n = sum(1 for v in values if re.search(pat, v))
            if n:
                found.append({"column": c, "reason": f"{n} value{'s' if n > 1 else ''} contain{'' if n > 1 else 's'} {what}"})
    return found


def sensitive_mentions(texts: Sequence[str]) -> dict[str, int]:
    """How many texts mention each sensitive topic (gender, religion, ethnicity or nationality, health,
    sexual orientation, politics), by a small word list. Mentioning is not the same as being about a
    person; the counts say where a human reader should look."""
    texts = _str_list(texts, "texts")
    compiled = {k: re.compile(p, re.IGNORECASE) for k, p in _SENSITIVE_TOPICS.items()}
    return {k: sum(1 for t in texts if isinstance(t, str) and pat.search(t)) for k, pat in compiled.items()}


def audit(records: Sequence[dict], text_field: str | None = None, label_field: str | None = None,
          group_fields: Sequence[str] = (), embedder=None, near_threshold: float = 0.9,
          max_tokens: int | None = 128, embeddings: torch.Tensor | None = None,
          device: str | torch.device | None = None) -> dict:
    """The automatic part of a datasheet: everything the data itself can answer.

    counts (records, columns and their types), missing values per column (:func:`missing_values`),
    exact duplicates (:func:`exact_duplicates`) and near duplicates of ``text_field``
    (:func:`near_duplicate_pairs` on :func:`embed_texts`, cosine ≥ ``near_threshold``, exact copies
    excluded), label balance of ``label_field`` (:func:`label_balance`), subpopulation statistics for each of
    ``group_fields`` (:func:`subpopulation_stats`), likely-sensitive columns (:func:`sensitive_columns`) and
    sensitive topics mentioned in the text (:func:`sensitive_mentions`). Returns a JSON-ready dict.
    Pass ``embeddings`` to reuse embeddings you already have.
    """
    _check_records(records)
    if not records:
        raise ValueError("nothing to audit: records is empty")
    _field(text_field, "text_field")
    _field(label_field, "label_field")
    group_fields = _str_list(group_fields, "group_fields")
    for g in group_fields:
        _field(g, "every entry of group_fields", optional=False)
    if isinstance(near_threshold, bool) or not isinstance(near_threshold, (int, float)) or not -1 <= near_threshold <= 1:
        raise ValueError(f"near_threshold is a cosine similarity in [-1, 1]; got {near_threshold!r}")
    if embeddings is not None and not isinstance(embeddings, torch.Tensor):
        raise TypeError(f"embeddings must be a torch tensor [n, d] (or None to embed here), got {type(embeddings).__name__}")
    columns = _columns(records)
    for f in [text_field, label_field, *group_fields]:
        if f is not None and f not in columns:
            raise KeyError(f"no column {f!r}; the records have {columns}")
    types = {}
    for c in columns:
        vals = [r[c] for r in records if c in r and not is_missing(r[c])]
        kinds = {("bool" if isinstance(v, bool) else "number" if _numeric(v) else "text" if isinstance(v, str)
                  else type(v).__name__) for v in vals}
        types[c] = {"type": "/".join(sorted(kinds)) or "empty", "distinct": len({json.dumps(v, sort_keys=True, default=str) for v in vals})}
    result: dict[str, Any] = {
        "n_records": len(records),
        "columns": types,
        "missing": missing_values(records, columns),
        "sensitive_columns": sensitive_columns(records),
    }
    if text_field:
        texts = [r.get(text_field) for r in records]
        groups = exact_duplicates(texts)
        result["exact_duplicates"] = {"field": text_field, "groups": groups,
                                      "redundant": sum(len(g) - 1 for g in groups)}
        ok = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
        if embeddings is None:
            embeddings = embed_texts([texts[i] for i in ok], embedder, max_tokens=max_tokens, device=device)
        elif embeddings.shape[0] != len(ok):
            raise ValueError(f"embeddings has {embeddings.shape[0]} rows; expected one per non-missing text ({len(ok)})")
        e = torch.nn.functional.normalize(embeddings.float(), dim=-1)
        pairs = []
        for a, b in near_duplicate_pairs(e, near_threshold):
            i, j = ok[a], ok[b]
            if texts[i] != texts[j]:
                pairs.append([i, j, round(float(e[a] @ e[b]), 4)])
        result["near_duplicates"] = {"field": text_field, "threshold": near_threshold, "max_tokens": max_tokens,
                                     "pairs": pairs}
        result["text_words"] = _summary([len(texts[i].split()) for i in ok])
        result["sensitive_mentions"] = {"field": text_field, "counts": sensitive_mentions(texts)}
    if label_field:
        result["labels"] = {"field": label_field, **label_balance([r.get(label_field) for r in records])}
    result["subpopulations"] = {g: subpopulation_stats(records, g, label_field, text_field=text_field)
                                for g in group_fields}
    return _strict_json(result, "the audit")  # plain JSON types only (tuples → lists), never NaN


def _summary(xs: list[float]) -> dict:
    if not xs:
        return {}
    s = sorted(xs)
    return {"min": s[0], "median": s[len(s) // 2], "max": s[-1], "mean": round(sum(s) / len(s), 2)}


def _fmt_share(p: float) -> str:
    return f"{100 * p:.1f}%"


def audit_answers(result: dict) -> dict[str, str]:
    """Draft answers to the questions the audit can answer (composition.count, .missing, .errors,
    .labels, .subpopulations, .sensitive), written from an :func:`audit` result."""
    needed = ("n_records", "columns", "missing", "sensitive_columns")
    if not isinstance(result, dict) or any(k not in result for k in needed):
        raise ValueError(f"result must be what audit() returns (a dict with {list(needed)}), got "
                         f"{type(result).__name__ if not isinstance(result, dict) else sorted(result)}")
    out = {}
    n = result["n_records"]
    cols = ", ".join(f"{c} ({v['type']})" for c, v in result["columns"].items())
    out["composition.count"] = f"{n} instances, each with {len(result['columns'])} fields: {cols}."
    if "text_words" in result:
        w = result["text_words"]
        out["composition.count"] += (f" Text length ({result['exact_duplicates']['field']}): {w['min']}–{w['max']} words, "
                                     f"median {w['median']}, mean {w['mean']}.")
    miss = {c: k for c, k in result["missing"].items() if k}
    out["composition.missing"] = ("No field is missing or empty in any instance." if not miss else
                                  "Missing or empty values: " + ", ".join(f"{c}: {k} of {n} ({_fmt_share(k / n)})"
                                                                          for c, k in miss.items()) + ".")
    errs = []
    if "exact_duplicates" in result:
        d = result["exact_duplicates"]
        errs.append(f"Exact duplicates of {d['field']}: {len(d['groups'])} groups, {d['redundant']} redundant copies"
                    + (f" (e.g. instances {d['groups'][0]})" if d["groups"] else "") + ".")
        nd = result["near_duplicates"]
        errs.append(f"Near duplicates (cosine similarity ≥ {nd['threshold']} of all-MiniLM-L6-v2 embeddings of the first "
                    f"{nd['max_tokens']} tokens, exact copies excluded): {len(nd['pairs'])} pair{'' if len(nd['pairs']) == 1 else 's'}"
                    + (f", e.g. instances {nd['pairs'][0][:2]} (cosine {nd['pairs'][0][2]})" if nd["pairs"] else "") + ".")
    if errs:
        out["composition.errors"] = " ".join(errs)
    if "labels" in result:
        lb = result["labels"]
        shares = ", ".join(f"{k}: {v} ({_fmt_share(lb['shares'][k])})" for k, v in lb["counts"].items())
        imbalance = "undefined (no labels)" if lb["imbalance"] is None else f"{lb['imbalance']:.2f}"
        out["composition.labels"] = (f"Label field {lb['field']!r} with {len(lb['counts'])} values — {shares}; "
                                     f"imbalance (largest/smallest) {imbalance}, normalised entropy "
                                     f"{lb['normalised_entropy']:.3f}" + (f"; {lb['missing']} missing" if lb["missing"] else "") + ".")
    subs = []
    for g, stats in result.get("subpopulations", {}).items():
        parts = ", ".join(f"{v}: {s['n']} ({_fmt_share(s['share'])})" for v, s in stats.items())
        subs.append(f"By {g}: {parts}.")
    if subs:
        out["composition.subpopulations"] = " ".join(subs)
    sens = [f"{s['column']} ({s['reason']})" for s in result["sensitive_columns"]]
    text = ("Columns that look sensitive: " + "; ".join(sens) + "." if sens else
            "No column looks sensitive by its name or by email addresses, phone numbers or URLs in its values.")
    if "sensitive_mentions" in result:
        m = result["sensitive_mentions"]
        text += (f" Texts ({m['field']}) mentioning sensitive topics (word list): "
                 + ", ".join(f"{k} {v} ({_fmt_share(v / n)})" for k, v in m["counts"].items()) + ".")
    out["composition.sensitive"] = text
    return out


# --------------------------------------------------------------------------------------------------
# A toy dataset with planted problems (ground truth for the audit)

_TOY_REVIEWS = [
    "The battery lasts two full days and charges in under an hour.",
    "Delivery took three weeks and the box arrived crushed.",
    "The blender is loud but crushes ice in seconds.",
    "I returned the jacket because the zipper broke on the first day.",
    "Customer service answered my email within ten minutes.",
    "The paint colour looks nothing like the photo on the website.",
    "These running shoes are light and my knees no longer hurt.",
    "The instructions were missing, so assembling the desk took all evening.",
    "Great coffee grinder: even grind and easy to clean.",
    "The headphones stopped working after a month.",
    "The tent kept us dry through a night of heavy rain.",
    "The kettle smells of plastic every time it boils.",
    "My daughter loves this puzzle and finishes it every weekend.",
    "The app crashes whenever I try to upload a photo.",
    "Solid frying pan; nothing sticks, even eggs.",
    "The mattress was too firm and gave me back pain.",
    "The garden hose leaks at the connector.",
    "Fast shipping and the plant arrived healthy.",
    "The keyboard keys feel cheap and rattle.",
    "This lamp gives a warm light that is perfect for reading.",
    "The vacuum loses suction after a few minutes.",
    "Comfortable chair, and it was easy to put together.",
    "The watch strap gave me a rash.",
    "The printer jams on every second page.",
    "Lovely soft towels that dry quickly.",
    "The suitcase wheel snapped at the airport.",
    "The board game is fun for the whole family.",
    "Overpriced for such a small bottle of shampoo.",
    "The camera takes sharp pictures even in low light.",
    "The sofa cover faded after one wash.",
]
# Paraphrases of some reviews above (planted near duplicates): index in _TOY_REVIEWS → paraphrase.
_TOY_PARAPHRASES = {
    0: "The battery lasts for two full days and charges in less than an hour.",
    3: "I sent the jacket back because its zipper broke on day one.",
    9: "The headphones stopped working after one month.",
    13: "The app crashes every time I try to upload a photo.",
    23: "The printer jams on every other page.",
}


def toy_dataset(seed: int = 0) -> tuple[list[dict], dict]:
    """A small product-review dataset with planted problems, and the ground truth about them.

    Columns: ``id``, ``text``, ``label`` (positive/negative), ``rating`` (1–5), ``age_group``, ``email``.
    Planted: exact duplicates (some reviews copied verbatim), near duplicates (paraphrases), missing
    values (None, '' and NaN in several columns), an email column (sensitive), an imbalanced label.
    Returns ``(records, truth)``; ``truth`` holds what a correct audit must find.
    """
    import random

    rng = random.Random(_int(seed, "seed"))
    negative = {1, 3, 5, 9, 11, 13, 15, 16, 18, 20, 22, 23, 25, 27, 29}
    groups = ["18-29", "30-49", "50+"]
    records = []
    for i, text in enumerate(_TOY_REVIEWS):
        records.append({"text": text, "label": "negative" if i in negative else "positive", "src": i})
    for i, text in _TOY_PARAPHRASES.items():
        records.append({"text": text, "label": records[i]["label"], "src": i})
    copies = [2, 7, 7, 19]  # review 7 appears three times in all
    for i in copies:
        records.append(dict(records[i]))
    rng.shuffle(records)
    for k, r in enumerate(records):
        r["id"] = f"r{k:03d}"
        r["rating"] = (rng.randint(1, 2) if r["label"] == "negative" else rng.randint(4, 5))
        r["age_group"] = groups[rng.choices([0, 1, 2], weights=[5, 3, 1])[0]]
        r["email"] = f"user{rng.randint(100, 999)}@example.com"
    # planted missing values
    missing_plan = {"label": [3, 17], "rating": [5, 11, 20], "age_group": [8], "email": [0, 1, 2, 4]}
    for col, rows in missing_plan.items():
        for k in rows:
            records[k][col] = {"label": "", "rating": float("nan"), "age_group": None, "email": "  "}[col]
    del records[12]["age_group"]  # an absent key is missing too
    src = [r.pop("src") for r in records]
    records = [{c: r[c] for c in ("id", "text", "label", "rating", "age_group", "email") if c in r} for r in records]
    exact = [sorted(k for k, s in enumerate(src) if s == i and records[k]["text"] == _TOY_REVIEWS[i]) for i in (2, 7, 19)]
    where = {r["text"]: k for k, r in enumerate(records)}
    near = sorted(tuple(sorted((where[_TOY_REVIEWS[i]], where[p]))) for i, p in _TOY_PARAPHRASES.items())
    labels = [r["label"] for r in records]
    truth = {
        "n_records": len(records),
        "missing": {"id": 0, "text": 0, "label": 2, "rating": 3, "age_group": 2, "email": 4},
        "exact_duplicates": sorted(exact, key=lambda g: g[0]),
        "near_duplicates": near,
        "label_counts": dict(Counter(l for l in labels if l)),
        "sensitive_columns": ["age_group", "email"],
    }
    return records, truth


# --------------------------------------------------------------------------------------------------
# The shipped datasheets


#: How the shipped datasheets audit each course dataset (``tools/build_datasheets.py`` uses these).
COURSE_AUDITS = {
    "corpus": dict(text_field="text", label_field="genre", group_fields=["topic", "finished"],
                   near_threshold=0.9, max_tokens=64),
    "preference": dict(text_field="response", label_field="finished", group_fields=["prompt"],
                       near_threshold=0.95, max_tokens=64),
}


def course_records(name: str) -> list[dict]:
    """The records of a course dataset that has a shipped datasheet.

    ``"corpus"``: :func:`labkit.datasets.load_corpus` (the generated text corpus). ``"preference"``: the
    responses of the course preference data, :func:`labkit.preference.load_responses` (notebook 11).
    ``"toy"``: the records of :func:`toy_dataset`.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string ('corpus', 'preference' or 'toy'), got {type(name).__name__}")
    if name == "corpus":
        from labkit.datasets import load_corpus

        return load_corpus()
    if name == "preference":
        from labkit.preference import load_responses

        return load_responses()
    if name == "toy":
        return toy_dataset()[0]
    raise ValueError(f"unknown course dataset {name!r}; known: 'corpus', 'preference', 'toy'")


def shipped_path(name: str, suffix: str = ".json") -> Path:
    """Where the shipped datasheet ``name`` lives: ``labkit/data/datasheet_<name>.json`` (or ``.md``)."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"name must be a datasheet name like 'corpus' (lower-case letters, digits, _), got {name!r}")
    if suffix not in (".json", ".md"):
        raise ValueError(f"suffix must be '.json' or '.md', got {suffix!r}")
    return DATA_DIR / f"datasheet_{name}{suffix}"


def load_shipped(name: str) -> Datasheet:
    """A datasheet shipped with the course, e.g. ``load_shipped("corpus")``."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string like 'corpus', got {type(name).__name__}")
    path = shipped_path(name) if re.fullmatch(r"[a-z0-9_]+", name) else None
    if path is None or not path.is_file():
        known = sorted(p.stem[len("datasheet_"):] for p in DATA_DIR.glob("datasheet_*.json") if p.stem != "datasheet_questions")
        raise FileNotFoundError(f"no shipped datasheet {name!r}; shipped: {known}")
    return Datasheet.load(path)
