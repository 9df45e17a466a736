"""labkit.widgets: the pairwise preference annotation (notebook 12, "your own preferences").

The state (:class:`PreferenceAnnotations`) is tested without a browser: recording, the randomised order and its
mapping back to the responses, saving after every answer (atomically), resuming, never overwriting silently, and
damaged files. The form is driven the way a notebook user drives it, with ``.click()``; the real-browser test is in
``tests/test_browser.py``. The shipped annotations of the planted annotator are checked against a rebuild and
against the rule they claim to follow.
"""

from __future__ import annotations

import json
import os
import random

import pytest

from labkit import preference, widgets


def _pairs(n=4):
    return [{"id": f"q{i}", "prompt": f"prompt {i}", "a": f"answer a{i}", "b": f"answer b{i} is longer",
             "source": i} for i in range(n)]


def test_order_is_seeded_recorded_and_choices_map_back(tmp_path):
    path = tmp_path / "prefs.json"
    ann = widgets.PreferenceAnnotations(_pairs(6), path, seed=3)
    rng = random.Random(3)
    expected = [["b", "a"] if rng.random() < 0.5 else ["a", "b"] for _ in range(6)]
    assert [p["shown"] for p in ann.pairs] == expected and {tuple(s) for s in expected} == {("a", "b"), ("b", "a")}
    assert widgets.PreferenceAnnotations(_pairs(6), tmp_path / "other.json", seed=3).pairs == ann.pairs  # same seed
    assert not path.exists()  # nothing written before the first answer
    assert ann.current()["index"] == 0 and ann.n == 6 and ann.answered == 0
    answers = ["A", "B", "skip", "A", "B", "A"]
    for k, c in enumerate(answers):
        cur = ann.current()
        shown = ann.pairs[k]["shown"]
        assert cur["A"] == ann.pairs[k][shown[0]] and cur["B"] == ann.pairs[k][shown[1]]
        ann.choose(c)
        saved = widgets.load_preferences(path)  # written after every answer
        assert saved["answered"] == k + 1 and [p["choice"] for p in saved["pairs"]][: k + 1] == answers[: k + 1]
    assert ann.done and ann.current() is None and ann.index is None
    for p, c in zip(saved["pairs"], answers):
        assert p["preferred"] == (None if c == "skip" else p["shown"][0 if c == "A" else 1])
        assert p["source"] == int(p["id"][1:])  # extra keys are kept
    with pytest.raises(RuntimeError, match="all 6 pairs are answered"):
        ann.choose("A")
    assert [f.name for f in tmp_path.iterdir()] == ["prefs.json"]  # no temporary files left behind


def test_an_existing_file_is_never_replaced_silently(tmp_path):
    path = tmp_path / "prefs.json"
    first = widgets.PreferenceAnnotations(_pairs(), path)
    first.choose("A")
    first.choose("skip")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="if_exists='resume'"):
        widgets.PreferenceAnnotations(_pairs(), path)
    assert path.read_bytes() == before
    resumed = widgets.PreferenceAnnotations(_pairs(), path, if_exists="resume")
    assert resumed.answered == 2 and resumed.index == 2 and resumed.pairs == first.pairs
    resumed.choose("B")
    assert widgets.load_preferences(path)["answered"] == 3
    # other pairs, or another seed, cannot be resumed: refused, file untouched
    before = path.read_bytes()
    for kwargs in ({"pairs": _pairs(5)}, {"pairs": _pairs(), "seed": 1}):
        with pytest.raises(widgets.PreferenceFileError, match="cannot be resumed"):
            widgets.PreferenceAnnotations(kwargs.pop("pairs"), path, if_exists="resume", **kwargs)
    assert path.read_bytes() == before
    fresh = widgets.PreferenceAnnotations(_pairs(), path, if_exists="overwrite")
    assert fresh.answered == 0 and path.read_bytes() == before  # replaced only at the first answer
    fresh.choose("B")
    assert widgets.load_preferences(path)["answered"] == 1


def test_save_is_atomic_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "prefs.json"
    ann = widgets.PreferenceAnnotations(_pairs(), path)
    ann.choose("A")
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        ann.choose("B")
    assert path.read_bytes() == before and [f.name for f in tmp_path.iterdir()] == ["prefs.json"]


def test_damaged_files_get_a_clear_error(tmp_path):
    path = tmp_path / "prefs.json"
    ann = widgets.PreferenceAnnotations(_pairs(), path)
    ann.choose("A")
    good = json.loads(path.read_text())
    path.write_text("{not json")
    with pytest.raises(widgets.PreferenceFileError, match="not a readable JSON file"):
        widgets.load_preferences(path)
    for spoil, match in [(lambda d: d.update(format="other"), "not a preference file"),
                         (lambda d: d["pairs"][0].update(preferred="a" if d["pairs"][0]["preferred"] == "b" else "b"),
                          "means"),
                         (lambda d: d["pairs"][1].update(choice="C"), "choice"),
                         (lambda d: d["pairs"][2].update(shown=["a", "a"]), "shown"),
                         (lambda d: d.update(pairs=[]), "holds no pairs"),
                         (lambda d: d.update(answered=3), "but 1 pairs hold a choice")]:
        bad = json.loads(json.dumps(good))
        spoil(bad)
        path.write_text(json.dumps(bad))
        with pytest.raises(widgets.PreferenceFileError, match=match):
            widgets.load_preferences(path)
    with pytest.raises(FileNotFoundError):
        widgets.load_preferences(tmp_path / "missing.json")


@pytest.mark.parametrize("pairs, error, match", [
    ([], ValueError, "pairs is empty"),
    ("a string", TypeError, "pairs must be a list"),
    ([{"id": "x", "prompt": "p", "a": "y"}], ValueError, r"lacks \['b'\]"),
    ([{"id": "x", "prompt": "p", "a": "y", "b": 3}], ValueError, "must be a non-empty string"),
    ([{"id": "x", "prompt": "p", "a": "y", "b": "y"}], ValueError, "same response twice"),
    ([{"id": "x", "prompt": "p", "a": "y", "b": "z"}] * 2, ValueError, "repeats the id"),
    ([{"id": "x", "prompt": "p", "a": "y", "b": "z", "choice": "A"}], ValueError, "reserved keys"),
    ([{"id": "x", "prompt": "p", "a": "y", "b": "z", "extra": object()}], ValueError, "cannot be written to JSON"),
])
def test_bad_pairs_are_refused(tmp_path, pairs, error, match):
    with pytest.raises(error, match=match):
        widgets.PreferenceAnnotations(pairs, tmp_path / "p.json")
    with pytest.raises(error, match=match):
        widgets.preference_form(pairs, tmp_path / "p.json")
    assert not any(tmp_path.iterdir())


def test_bad_path_seed_and_choice(tmp_path):
    with pytest.raises(ValueError, match="must name a .json file"):
        widgets.PreferenceAnnotations(_pairs(), tmp_path / "p.txt")
    with pytest.raises(TypeError, match="path must be a file path"):
        widgets.PreferenceAnnotations(_pairs(), 3)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(IsADirectoryError):
        widgets.PreferenceAnnotations(_pairs(), tmp_path / "dir.json")
    with pytest.raises(TypeError, match="seed must be an integer"):
        widgets.PreferenceAnnotations(_pairs(), tmp_path / "p.json", seed=0.5)
    with pytest.raises(ValueError, match="if_exists must be"):
        widgets.PreferenceAnnotations(_pairs(), tmp_path / "p.json", if_exists="yes")
    ann = widgets.PreferenceAnnotations(_pairs(), tmp_path / "p.json")
    with pytest.raises(ValueError, match="choice must be 'A', 'B' or 'skip'"):
        ann.choose("a")
    assert ann.answered == 0 and not (tmp_path / "p.json").exists()


def test_form_clicks_save_and_show_progress(tmp_path):
    path = tmp_path / "prefs.json"
    form = widgets.preference_form(_pairs(3), path, seed=5)
    assert form.ask.layout.display == "none" and not form.a_button.disabled
    assert form.status.value == "pair 1 of 3" and "prompt 0" in form.prompt.value
    shown = form.annotations.pairs[0]["shown"]
    assert f"answer {shown[0]}0" in form.response_a.value and f"answer {shown[1]}0" in form.response_b.value
    form.a_button.click()
    assert form.status.value == "pair 2 of 3" and form.progress.value == 1 and "saved 1 answers" in form.message.value
    form.b_button.click()
    form.skip_button.click()
    saved = widgets.load_preferences(path)
    assert [p["choice"] for p in saved["pairs"]] == ["A", "B", "skip"] and saved["pairs"][0]["preferred"] == shown[0]
    assert form.a_button.disabled and "All pairs answered" in form.prompt.value

    # the file exists now: a new form asks, writes nothing until told
    before = path.read_bytes()
    again = widgets.preference_form(_pairs(3), path, seed=5)
    assert again.annotations is None and again.a_button.disabled and again.ask.layout.display != "none"
    assert "already exists" in again.message.value and path.read_bytes() == before
    with pytest.raises(RuntimeError, match="Resume or Start over"):
        again.choose("A")
    again.resume_button.click()
    assert again.annotations.answered == 3 and "All pairs answered" in again.prompt.value
    other = widgets.preference_form(_pairs(4), path, seed=5)  # other pairs: resuming is refused, in the form
    other.resume_button.click()
    assert other.annotations is None and "cannot be resumed" in other.message.value and path.read_bytes() == before
    other.restart_button.click()
    assert other.annotations.answered == 0 and other.status.value == "pair 1 of 4" and path.read_bytes() == before
    other.skip_button.click()
    assert widgets.load_preferences(path)["answered"] == 1


def test_shipped_planted_annotations_follow_the_stated_rule_and_match_a_rebuild(tmp_path):
    from tools import build_planted_annotations as build

    shipped = widgets.load_preferences(widgets.PLANTED_PREFERENCES)
    assert build.build(tmp_path / "rebuilt.json").read_bytes() == widgets.PLANTED_PREFERENCES.read_bytes()
    assert shipped["annotator"].startswith("planted: prefers the shorter response") and shipped["seed"] == build.SEED
    assert len(shipped["pairs"]) == 40 and shipped["answered"] == 40
    rows = {(r["prompt_id"], r["response_id"]): r["response"] for r in preference.load_responses()}
    n_pref = 0
    for p in shipped["pairs"]:
        assert p["a"] == rows[(p["prompt_id"], p["response_a"])] and p["b"] == rows[(p["prompt_id"], p["response_b"])]
        assert p["prompt_id"] < 20 and p["response_a"] < 5 and p["response_b"] < 5  # notebook 12's training split
        na, nb = preference.n_words([p["a"], p["b"]]).tolist()
        if abs(na - nb) < build.MIN_GAP:
            assert p["choice"] == "skip" and p["preferred"] is None
        else:
            n_pref += 1
            assert p["preferred"] == ("a" if na < nb else "b")
    assert n_pref == 28
