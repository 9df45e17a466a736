"""labkit.datasheet and labkit.widgets: the question set, the Datasheet (round trips, safe saving, damaged
files), the audit against planted ground truth and brute force, and the ipywidgets form."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from labkit import datasheet as ds
from labkit import widgets


# -- the question set --------------------------------------------------------------------------------


def test_question_set_has_gebru_sections_and_people_questions():
    sections = ds.load_questions()
    assert [s["id"] for s in sections] == ["motivation", "composition", "collection", "preprocessing", "uses",
                                           "distribution", "maintenance"]
    ids = ds.question_ids()
    assert len(ids) == len(set(ids)) == 57
    people = {q["id"] for s in sections for q in s["questions"] if q["people"]}
    for qid in ["composition.subpopulations", "composition.identification", "composition.sensitive",
                "collection.consent", "collection.revocation", "collection.impact_analysis", "collection.notification"]:
        assert qid in people
    assert "collection.ethics_review" in ids and "Gebru" in ds.questions_source()
    assert all(s["questions"][-1]["id"].endswith(".other") for s in sections)


# -- the datasheet -----------------------------------------------------------------------------------


def _filled(name="tiny ✓ dataset") -> ds.Datasheet:
    sheet = ds.Datasheet(name)
    sheet.answer("motivation.purpose", "Für Tests — ünïcødé, emoji 🧪, CJK 数据集, RTL مرحبا, quotes \"'`, <b>html</b>")
    sheet.answer("composition.count", "x" * 20_000 + "\nline two\r\nline three\t tab")  # long, odd whitespace
    sheet.answer("uses.not_for", "   leading and trailing spaces are kept   ")
    sheet.answer("composition.errors", "drafted by the audit", draft=True)
    sheet.audit = {"n_records": 3, "nested": {"list": [1, 2.5, None, "ü"]}, "nan_free": True}
    return sheet


def test_json_round_trip_loses_nothing(tmp_path):
    sheet = _filled()
    path = sheet.save(tmp_path / "sheet.json")
    back = ds.Datasheet.load(path)
    assert back == sheet and back.to_dict() == sheet.to_dict()
    assert back.answers["uses.not_for"] == "   leading and trailing spaces are kept   "
    assert back.answers["composition.count"].endswith("line two\r\nline three\t tab")
    assert back.answers["collection.consent"] == ""  # empty answers survive as empty
    assert back.drafts == {"composition.errors"} and back.audit == sheet.audit and back.name == "tiny ✓ dataset"
    assert back.save(path) == path  # saving identical content again is fine (no error, same bytes)
    assert ds.Datasheet.from_json(sheet.to_json()) == sheet
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # ordinary permissions, not the temp file's 0600


def test_empty_datasheet_round_trips(tmp_path):
    sheet = ds.Datasheet("empty")
    back = ds.Datasheet.load(sheet.save(tmp_path / "e.json"))
    assert back == sheet and back.completeness()["answered"] == 0


def test_saving_never_overwrites_a_different_file_silently(tmp_path):
    path = tmp_path / "sheet.json"
    first = _filled()
    first.save(path)
    before = path.read_bytes()
    other = _filled()
    other.answer("motivation.purpose", "something else")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        other.save(path)
    assert path.read_bytes() == before  # untouched
    other.save(path, overwrite=True)
    assert ds.Datasheet.load(path) == other
    unrelated = tmp_path / "notes.md"
    unrelated.write_text("my own notes")
    with pytest.raises(FileExistsError):
        other.save(unrelated)
    assert unrelated.read_text() == "my own notes"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left behind


def test_saved_audits_are_strict_json(tmp_path):
    """An audit of records without labels used to store imbalance = NaN, which json writes as a bare NaN that
    other JSON readers reject; now it is null, anything non-finite is refused, and a file with NaN does not load."""
    records = [{"text": "a b", "label": None}, {"text": "c d", "label": ""}]
    result = ds.audit(records, text_field="text", label_field="label", embeddings=torch.eye(2))
    assert result["labels"]["imbalance"] is None and "undefined" in ds.audit_answers(result)["composition.labels"]
    sheet = ds.Datasheet("no labels")
    sheet.prefill(result)
    path = sheet.save(tmp_path / "s.json")
    text = path.read_text(encoding="utf-8")
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in a saved datasheet"))
    assert ds.Datasheet.load(path) == sheet
    with pytest.raises(ValueError, match="NaN or infinity"):
        ds.Datasheet("x", audit={"imbalance": float("nan")})
    with pytest.raises(ValueError, match="NaN or infinity"):
        sheet.prefill({**result, "extra": float("inf")})
    path.write_text(text.replace('"imbalance": null', '"imbalance": NaN'), encoding="utf-8")
    with pytest.raises(ds.DatasheetError, match="not strict JSON"):
        ds.Datasheet.load(path)
    rec = [{"x": 1.0, "g": "a"}, {"x": float("inf"), "g": "a"}]
    assert ds.subpopulation_stats(rec, "g", numeric_fields=["x"])["a"]["mean_x"] == 1.0  # ±inf is not averaged (JSON)
    json.dumps(ds.audit(rec, group_fields=["g"]), allow_nan=False)


def test_saving_over_a_symlink_writes_through_and_keeps_the_link(tmp_path):
    real = tmp_path / "real" / "sheet.json"
    real.parent.mkdir()
    first = _filled()
    first.save(real)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    other = _filled()
    other.answer("motivation.purpose", "changed through the link")
    with pytest.raises(FileExistsError):
        other.save(link)
    assert other.save(link, overwrite=True) == link
    assert link.is_symlink() and os.readlink(link) == str(real)  # still a link, to the same file
    assert ds.Datasheet.load(real) == other == ds.Datasheet.load(link)
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "nowhere" / "x.json")
    with pytest.raises(FileNotFoundError, match="symbolic link"):
        other.save(dangling)
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary files


def test_a_lone_surrogate_is_refused_when_answering_not_when_saving(tmp_path):
    sheet = _filled()
    with pytest.raises(ValueError, match="lone surrogate"):
        sheet.answer("motivation.purpose", "caf\udce9")  # from bytes decoded with errors='surrogateescape'
    with pytest.raises(ValueError, match="lone surrogate"):
        ds.Datasheet("bad \ud800 name")
    with pytest.raises(ValueError, match="lone surrogate"):
        sheet.prefill({"n_records": 1, "columns": {}, "missing": {}, "sensitive_columns": []},
                      answers={"composition.count": "\udcff"})
    assert ds.Datasheet.load(sheet.save(tmp_path / "ok.json")) == sheet  # the refused answers changed nothing


_KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys
    from labkit import datasheet as ds
    if sys.argv[2] == "fallback" and hasattr(os, "O_TMPFILE"):
        del os.O_TMPFILE  # as on a system without it: the portable path, a named temporary file
    os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # killed with the data written, before the rename
    sheet = ds.Datasheet("killed while saving")
    sheet.answer("motivation.purpose", "never saved")
    sheet.save(sys.argv[1], overwrite=True)
""")


def _unnamed_files_link_here(folder) -> bool:
    """Whether this system can give an O_TMPFILE file a name (linkat through /proc/self/fd)."""
    if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o644)
    except OSError:
        return False
    probe = os.path.join(folder, "probe")
    try:
        os.link(f"/proc/self/fd/{fd}", probe, follow_symlinks=True)
    except OSError:  # the second way: linkat(fd, "", AT_FDCWD, probe, AT_EMPTY_PATH), for privileged processes
        import ctypes

        if ctypes.CDLL(None, use_errno=True).linkat(fd, b"", -100, os.fsencode(probe), 0x1000) != 0:
            return False
    finally:
        os.close(fd)
    os.unlink(probe)
    return True


@pytest.mark.parametrize("path_taken", ["fallback", "unnamed file"])
def test_a_killed_save_leaves_nothing_behind(tmp_path, path_taken):
    """SIGKILL runs no clean-up. With an unnamed O_TMPFILE file nothing has a name until the data is complete;
    with the portable fallback the dead process's temporary file is removed by the next save to the same path."""
    if path_taken == "unnamed file" and not _unnamed_files_link_here(tmp_path):
        pytest.skip("this system cannot link O_TMPFILE files into place (labkit uses the fallback here)")
    path = tmp_path / "sheet.json"
    before = _filled()
    before.save(path)
    proc = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(path), path_taken], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert ds.Datasheet.load(path) == before  # the old datasheet is intact
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "sheet.json"]
    if path_taken == "unnamed file":
        assert leftovers == []
    else:
        assert len(leftovers) == 1 and leftovers[0].startswith(".sheet.json.")  # the dead writer's file …
        after = _filled()
        after.answer("motivation.purpose", "saved again")
        after.save(path, overwrite=True)  # … is removed by the next save
        assert [p.name for p in tmp_path.iterdir()] == ["sheet.json"] and ds.Datasheet.load(path) == after


def test_near_duplicates_of_nan_embeddings_are_an_error_not_an_empty_list():
    e = torch.tensor([[1.0, 0.0], [float("nan"), 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"NaN or infinite entries \(rows \[1\]"):
        ds.near_duplicate_pairs(e, 0.9)
    with pytest.raises(ValueError, match="NaN"):
        ds.audit([{"text": "a"}, {"text": "b"}], text_field="text", embeddings=torch.tensor([[float("nan"), 0.0], [1.0, 0.0]]))


@pytest.mark.parametrize("content, message", [
    ('{"format": "labkit-datasheet", "version": 1, "name": "x", "answers": {', "not valid JSON"),
    ("[1, 2, 3]", "not a labkit datasheet"),
    ('{"format": "labkit-datasheet", "version": 99}', "version 99"),
    (None, "unknown question ids"),
    (None, "missing"),
    (None, "not strings"),
])
def test_damaged_file_gives_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is None:
        data = _filled().to_dict()
        if message == "unknown question ids":
            data["answers"]["motivation.why_not"] = "?"
        elif message == "missing":
            del data["answers"]["uses.not_for"]
        else:
            data["answers"]["uses.not_for"] = 42
        content = json.dumps(data)
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ds.DatasheetError, match=message):
        ds.Datasheet.load(path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ds.DatasheetError, match="not UTF-8"):
        ds.Datasheet.load(path)


def test_bad_input_is_refused_clearly(tmp_path):
    sheet = ds.Datasheet("x")
    with pytest.raises(ds.DatasheetError, match="unknown question id.*Did you mean"):
        sheet.answer("purpose", "typo'd id")
    with pytest.raises(TypeError, match="string"):
        sheet.answer("composition.count", 12)
    with pytest.raises(ValueError, match="name"):
        ds.Datasheet("  ")
    with pytest.raises(ValueError, match=r"\.json.*\.md"):
        sheet.save(tmp_path / "sheet.txt")
    md = sheet.save(tmp_path / "sheet.md")
    with pytest.raises(ds.DatasheetError, match="Markdown export"):
        ds.Datasheet.load(md)
    with pytest.raises(FileNotFoundError):
        ds.Datasheet.load(tmp_path / "absent.json")


def test_completeness_counts_answers_and_skips_optional_and_people_questions():
    sheet = ds.Datasheet("x")
    n_all = sum(1 for q in ds.question_ids() if not q.endswith(".other"))
    n_people = sum(1 for s in ds.load_questions() for q in s["questions"] if q["people"])
    assert sheet.completeness()["total"] == n_all
    assert sheet.completeness(about_people=False)["total"] == n_all - n_people
    sheet.answer("motivation.purpose", "a reason")
    sheet.answer("motivation.other", "optional comment")  # never counted
    sheet.answer("motivation.funding", "   ")  # blank is not an answer
    rep = sheet.completeness()
    assert rep["answered"] == 1 and rep["sections"]["motivation"] == {"answered": 1, "total": 3,
                                                                      "missing": ["motivation.creators", "motivation.funding"]}
    assert math.isclose(rep["fraction"], 1 / n_all)
    assert "total" in sheet.completeness_table()


def test_markdown_export_has_every_question_and_marks_drafts():
    sheet = _filled()
    md = sheet.to_markdown()
    assert md.startswith("# Datasheet: tiny ✓ dataset")
    for s in sheet.sections:
        assert f"## {s['title']}" in md
        for q in s["questions"]:
            assert q["text"] in md
    assert "*(audit draft)* drafted by the audit" in md and "_(not answered)_" in md and "🧪" in md


def test_prefill_fills_only_empty_answers_and_editing_clears_the_draft_mark():
    records, _ = ds.toy_dataset()
    result = ds.audit(records, "text", "label", ["age_group"], embeddings=_bag_of_words([r["text"] for r in records]))
    sheet = ds.Datasheet("toy")
    sheet.answer("composition.missing", "written by a person")
    filled = sheet.prefill(result)
    assert "composition.missing" not in filled and sheet.answers["composition.missing"] == "written by a person"
    assert {"composition.count", "composition.errors", "composition.labels", "composition.sensitive"} <= set(filled)
    assert set(filled) == sheet.drafts and sheet.audit == result
    sheet.answer("composition.count", "checked by hand")
    assert "composition.count" not in sheet.drafts


# -- the audit ---------------------------------------------------------------------------------------


def _bag_of_words(texts):
    """A deterministic stand-in embedder for fast tests: word counts (cosine = word overlap)."""
    vocab = sorted({w for t in texts for w in t.lower().split()})
    index = {w: i for i, w in enumerate(vocab)}
    e = torch.zeros(len(texts), len(vocab))
    for k, t in enumerate(texts):
        for w in t.lower().split():
            e[k, index[w]] += 1
    return e


def test_missing_values_follow_the_definition():
    nan = float("nan")
    records = [{"a": 0, "b": False, "c": "0"}, {"a": None, "b": nan, "c": "  "}, {"a": "", "d": "x"}]
    assert ds.missing_values(records) == {"a": 2, "b": 2, "c": 2, "d": 2}
    assert ds.missing_values(records, ["z"]) == {"z": 3}
    with pytest.raises(TypeError, match="list of dicts"):
        ds.missing_values({"a": [1, 2]})
    with pytest.raises(TypeError, match=r"records\[1\]"):
        ds.missing_values([{"a": 1}, "oops"])


def test_exact_duplicates_against_brute_force():
    texts = ["a", "b", "a", "c", "b", "a", "", None, "A", "a "]
    groups = ds.exact_duplicates(texts)
    brute = sorted({tuple(j for j in range(len(texts)) if texts[j] == t) for t in texts if t}, key=lambda g: g[0])
    assert groups == [list(g) for g in brute if len(g) > 1] == [[0, 2, 5], [1, 4]]


def test_near_duplicate_pairs_against_brute_force_in_blocks():
    g = torch.Generator().manual_seed(0)
    e = torch.randn(50, 8, generator=g)
    e[30] = 2 * e[3] + 0.01 * torch.randn(8, generator=g)
    cos = torch.nn.functional.cosine_similarity(e[:, None], e[None], dim=-1)
    for t in (0.5, 0.8, 0.99):
        brute = [(i, j) for i, j in itertools.combinations(range(50), 2) if cos[i, j] >= t - 1e-6]
        assert ds.near_duplicate_pairs(e, t, block=7) == brute
    assert (3, 30) in ds.near_duplicate_pairs(e, 0.99)
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        ds.near_duplicate_pairs(torch.zeros(3), 0.9)
    with pytest.raises(ValueError, match="cosine"):
        ds.near_duplicate_pairs(e, 1.5)


def test_label_balance_closed_form():
    lb = ds.label_balance(["a"] * 6 + ["b"] * 2 + [None, ""])
    assert lb["counts"] == {"a": 6, "b": 2} and lb["missing"] == 2 and lb["imbalance"] == 3.0
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert math.isclose(lb["normalised_entropy"], h / math.log(2))
    assert ds.label_balance(["x"] * 4)["normalised_entropy"] == 0.0
    assert math.isclose(ds.label_balance(list("abcabc"))["normalised_entropy"], 1.0)


def test_subpopulation_stats_by_hand():
    records = [{"g": "u", "y": 1, "t": "one two"}, {"g": "u", "y": 3, "t": "x"}, {"g": "v", "y": 5, "t": "a b c"},
               {"y": 7, "t": "z"}]
    st = ds.subpopulation_stats(records, "g", text_field="t")
    assert st["u"]["n"] == 2 and st["u"]["share"] == 0.5 and st["u"]["mean_y"] == 2 and st["u"]["mean_words"] == 1.5
    assert st["(missing)"]["n"] == 1 and st["v"]["mean_y"] == 5
    with pytest.raises(KeyError, match="no record has the column"):
        ds.subpopulation_stats(records, "nope")


def test_sensitive_columns_by_name_and_content():
    records = [{"user_email": "a@b.org", "Gender": "f", "comment": "call me on +44 20 7946 0958", "colour": "red",
                "home page": "see https://example.org"}]
    found = {(s["column"], s["reason"].split()[-1]) for s in ds.sensitive_columns(records)}
    assert ("user_email", "data") in found and ("Gender", "data") in found
    assert any(c == "comment" for c, _ in found) and not any(c == "colour" for c, _ in found)
    assert any(c == "home page" for c, _ in found)
    assert ds.sensitive_mentions(["She prayed at the church.", "A cat."])["religion"] == 1


def test_audit_recovers_the_planted_problems_of_the_toy_dataset():
    records, truth = ds.toy_dataset()
    texts = [r["text"] for r in records]
    result = ds.audit(records, "text", "label", ["age_group"], embeddings=_bag_of_words(texts), near_threshold=0.7)
    assert result["n_records"] == truth["n_records"]
    assert result["missing"] == truth["missing"]
    assert result["exact_duplicates"]["groups"] == truth["exact_duplicates"]
    assert result["labels"]["counts"] == truth["label_counts"]
    sensitive = {s["column"] for s in result["sensitive_columns"]}
    assert sensitive == set(truth["sensitive_columns"])
    assert json.loads(json.dumps(result)) == result  # JSON-ready
    answers = ds.audit_answers(result)
    assert str(truth["n_records"]) in answers["composition.count"] and "email" in answers["composition.sensitive"]


@pytest.mark.slow
def test_audit_with_the_real_embedder_finds_exactly_the_planted_paraphrases():
    import labkit

    records, truth = ds.toy_dataset()
    result = ds.audit(records, "text", "label", ["age_group"], embedder=labkit.load_embedder("cpu"), near_threshold=0.9)
    assert [tuple(p[:2]) for p in result["near_duplicates"]["pairs"]] == truth["near_duplicates"]


def test_audit_refuses_bad_input():
    with pytest.raises(ValueError, match="empty"):
        ds.audit([])
    with pytest.raises(KeyError, match="no column 'txt'"):
        ds.audit([{"text": "a"}], text_field="txt")
    with pytest.raises(ValueError, match="one per non-missing text"):
        ds.audit([{"text": "a"}, {"text": "b"}], text_field="text", embeddings=torch.zeros(3, 4))


# -- the shipped datasheets --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["corpus", "preference"])
def test_shipped_datasheets_load_are_complete_and_match_their_markdown(name):
    path = ds.shipped_path(name)
    if name == "preference" and not path.is_file():
        pytest.skip("the preference datasheet is not built yet")
    sheet = ds.load_shipped(name)
    rep = sheet.completeness()
    assert rep["answered"] == rep["total"], rep["missing"]
    assert not sheet.drafts, "every audit draft of a shipped datasheet has been reviewed"
    assert ds.shipped_path(name, ".md").read_text(encoding="utf-8") == sheet.to_markdown()


@pytest.mark.parametrize("name", ["corpus", "preference"])
def test_shipped_audit_is_current(name):
    """The cheap parts of the shipped audit agree with the data as it is now (a stale datasheet fails here:
    rebuild it with `python -m tools.build_datasheets NAME --overwrite`)."""
    if name == "preference" and not ds.shipped_path(name).is_file():
        pytest.skip("the preference datasheet is not built yet")
    settings = ds.COURSE_AUDITS[name]
    sheet = ds.load_shipped(name)
    records = ds.course_records(name)
    a = sheet.audit
    assert a["n_records"] == len(records) and a["missing"] == ds.missing_values(records)
    assert a["labels"]["counts"] == ds.label_balance([r[settings["label_field"]] for r in records])["counts"]
    assert a["exact_duplicates"]["groups"] == ds.exact_duplicates([r[settings["text_field"]] for r in records])
    assert a["near_duplicates"]["threshold"] == settings["near_threshold"]


# -- the form ----------------------------------------------------------------------------------------


def test_form_edits_the_datasheet_and_saves_safely(tmp_path):
    sheet = ds.Datasheet("form test")
    sheet.answer("composition.count", "draft", draft=True)
    form = widgets.datasheet_form(sheet)
    assert len(form.boxes) == 57 and form.progress.value == pytest.approx(1 / sheet.completeness()["total"])
    form.boxes["motivation.purpose"].value = "typed in the form — ü"
    assert sheet.answers["motivation.purpose"] == "typed in the form — ü"
    form.boxes["composition.count"].value = "edited"
    assert "composition.count" not in sheet.drafts
    assert form.progress.value == pytest.approx(2 / sheet.completeness()["total"]) and "2 /" in form.status.value
    sheet.answer("uses.not_for", "set in code")
    form.refresh()
    assert form.boxes["uses.not_for"].value == "set in code"

    form.path.value = str(tmp_path / "sheet.json")
    form.save_button.click()
    assert "saved" in form.message.value and ds.Datasheet.load(tmp_path / "sheet.json") == sheet
    assert (tmp_path / "sheet.md").read_text(encoding="utf-8") == sheet.to_markdown()
    form.boxes["uses.not_for"].value = "changed"
    form.save_button.click()
    assert "not saved" in form.message.value and "overwrite" in form.message.value
    form.overwrite.value = True
    form.save_button.click()
    assert ds.Datasheet.load(tmp_path / "sheet.json").answers["uses.not_for"] == "changed"

    fewer = widgets.datasheet_form(ds.Datasheet("not about people"), about_people=False)
    assert "collection.consent" not in fewer.boxes and "motivation.purpose" in fewer.boxes
    with pytest.raises(TypeError, match="Datasheet"):
        widgets.datasheet_form({"answers": {}})
