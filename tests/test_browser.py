"""A real-browser run: JupyterLab on localhost, the student version of notebook 00 opened in headless Chromium,
"Run all".

What a student does first, done by a browser: start JupyterLab (a free port, a token, the repository root
as its root folder), open the exercises version of notebook 00 (what the README's first command opens), run
every cell, and check that no cell shows an error, that the page shows the student title and the ``⧗`` line of
the unfinished exercise's check, and that the ipywidgets progress bars of ``tqdm.auto`` render as widgets
(not as "Error displaying widget" or plain text). A screenshot lands in
``tests/artifacts/browser_00_start_here.png``.

A second test drives notebook 12's preference form (``labkit.widgets.preference_form``) in the same JupyterLab: a
two-cell notebook written to ``tests/artifacts/browser_run/`` shows three pairs; the browser clicks "A is better"
and "B is better", sees "pair 3 of 3", and the JSON file the kernel wrote is read back and checked (choices, the
recorded order, no temporary file left). Screenshot: ``tests/artifacts/browser_preference_form.png``.

The notebook runs from a copy in ``tests/artifacts/`` (git-ignored), so the repository's notebook is never
modified; the test checks that too.

Needs Debian's ``chromium`` (``python -m labkit browser`` installs it with apt-get where it can, as the README's
test command does; another executable via ``LABKIT_CHROMIUM``) and the ``playwright`` Python package driving it
(requirements-test.txt; Playwright's own browser downloads are not used). Without either, the test is skipped
and says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "exercises" / "00_start_here.ipynb"  # the student version: what students open
ARTIFACTS = ROOT / "tests" / "artifacts"
RUN_TIMEOUT_S = int(os.environ.get("LABKIT_BROWSER_TIMEOUT", 900))  # notebook 00: ~20 s alone on 2 cores

pytestmark = pytest.mark.slow


def _chromium() -> str | None:
    from labkit.__main__ import find_chromium

    return find_chromium()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def browser_tools():
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium executable: `python -m labkit browser` installs Debian's chromium where it can "
                    "(root or password-less sudo), or set LABKIT_CHROMIUM=/path/to/chrome")
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed: `pip install -r requirements-test.txt` "
                    "(no `playwright install` needed; the test drives the system Chromium)")
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        pytest.skip("JupyterLab is not installed: `pip install jupyterlab`")
    return chromium


@pytest.fixture(scope="module")
def lab(browser_tools, tmp_path_factory):
    """A JupyterLab server on a free localhost port with a token; yields (base_url, token, notebook path)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    copy = ARTIFACTS / "browser_run" / NOTEBOOK.name
    copy.parent.mkdir(exist_ok=True)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:  # start from a blank run: no stored outputs or counts that could pass for new ones
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, copy)
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path_factory.mktemp("jupyter")
    env = dict(os.environ,
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),  # no user settings or saved workspace
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    # One torch thread in the kernel: on a busy CI machine, spinning thread pools made "Run all" several times
    # slower; this test checks rendering, not speed. Set OMP_NUM_THREADS yourself to override.
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
           "--LabApp.expose_app_in_browser=True",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI images often run as root
    log = open(ARTIFACTS / "browser_jupyterlab.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"JupyterLab did not answer on {base} within 120 s; see {log.name}")
            time.sleep(0.5)
        yield base, token, copy.relative_to(ROOT).as_posix()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# JavaScript run in the page (JupyterLab started with expose_app_in_browser): the open notebook's cells.
_CELLS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.model) return null;
  const cells = panel.content.model.cells, out = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    out.push({source: c.sharedModel.getSource().slice(0, 60), count: c.executionCount,
              outputs: c.outputs.toJSON().map(o => ({type: o.output_type, mime: Object.keys(o.data || {}),
                                                     ename: o.ename || null, evalue: o.evalue || null}))});
  }
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {cells: out, kernel: kernel ? kernel.status : null};
}"""



@contextlib.contextmanager
def _lab_page(chromium: str, base: str, token: str, rel: str, reset: bool = False):
    """A headless Chromium page with notebook ``rel`` open in the test's JupyterLab and its kernel idle (``reset``:
    a fresh workspace); the browser is closed after the block."""
    from playwright.sync_api import sync_playwright

    name = rel.rsplit("/", 1)[-1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/{rel}?{'reset&' if reset else ''}token={token}", wait_until="domcontentloaded")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
            page.wait_for_function(
                "(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                " return !!(w && w.context && w.context.path.endsWith(name) && w.sessionContext"
                " && w.sessionContext.session && w.sessionContext.session.kernel"
                " && w.sessionContext.session.kernel.status === 'idle'); }", arg=name, timeout=120_000)
            yield page
        finally:
            browser.close()


def test_notebook_00_runs_in_a_real_browser(browser_tools, lab):
    base, token, rel = lab
    before = _sha(NOTEBOOK)
    shot = ARTIFACTS / "browser_00_start_here.png"
    with _lab_page(browser_tools, base, token, rel) as page:
        news = page.locator(".Toastify button:has-text('No')")
        if news.count():  # JupyterLab's "get notified about news?" toast would cover the screenshots
            news.first.click()
        assert not any(c["count"] or c["outputs"] for c in page.evaluate(_CELLS_JS)["cells"]), "the copy is not blank"
        started = time.time()
        # start "Run all" without awaiting its promise (it resolves only when every cell has run)
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }")
        state, deadline = None, started + RUN_TIMEOUT_S
        while time.time() < deadline:
            state = page.evaluate(_CELLS_JS)
            code = [c for c in state["cells"] if c["source"].strip()]
            if state["kernel"] == "idle" and code and all(c["count"] is not None for c in code):
                break
            if any(o["type"] == "error" for c in state["cells"] for o in c["outputs"]):
                break  # a failing cell stops "Run all"; report it below
            time.sleep(1)
        elapsed = time.time() - started
        page.screenshot(path=str(ARTIFACTS / "browser_00_last_state.png"))
        assert state is not None, "the notebook never opened"
        if elapsed >= RUN_TIMEOUT_S:
            pending = [c["source"] for c in state["cells"] if c["source"].strip() and c["count"] is None]
            pytest.fail(f"'Run all' did not finish in {RUN_TIMEOUT_S} s (kernel {state['kernel']}); "
                        f"{len(pending)} cells still to run, first: {pending[:1]}")
        (ARTIFACTS / "browser_00_timing.txt").write_text(f"run all: {elapsed:.1f} s\n")

        errors = [f"cell {c['source']!r}: {o['ename']}: {o['evalue']}" for c in state["cells"] for o in c["outputs"]
                  if o["type"] == "error"]
        assert not errors, "cells raised errors in the browser:\n" + "\n".join(errors)
        code = [c for c in state["cells"] if c["source"].strip()]
        counts = [c["count"] for c in code]
        assert counts == list(range(1, len(code) + 1)), f"not every cell ran once, in order: {counts}"
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] "
                            ":text('Traceback')").count() == 0

        # ipywidgets: the model holds widget-view outputs, and the page renders them as widgets
        widget_outputs = [o for c in state["cells"] for o in c["outputs"]
                          if "application/vnd.jupyter.widget-view+json" in o["mime"]]
        assert widget_outputs, "no cell produced an ipywidgets output (tqdm.auto progress bar expected)"
        bar = page.locator(".jp-OutputArea-output .widget-hprogress").first
        bar.wait_for(state="attached", timeout=30_000)
        bar.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        assert bar.is_visible(), "the tqdm progress-bar widget is not visible"
        assert page.locator(":text('Error displaying widget')").count() == 0, "a widget failed to render"
        assert page.locator("h1:has-text('exercises (student version)')").count() >= 1, "no student title shown"
        waiting = page.locator(".jp-OutputArea-output:has-text('⧗')")
        assert waiting.count() >= 1, "the unfinished exercise's check did not print its ⧗ line"
        waiting.first.scroll_into_view_if_needed()
        text = waiting.first.text_content() or ""  # the DOM text: off-screen cells may not be laid out
        assert "not done yet" in text, f"unexpected ⧗ line: {text!r}"
        label = " ".join(page.locator(".jp-OutputArea-output .widget-hbox").first.inner_text()
                         .replace("\u2007", " ").split())  # tqdm pads with figure spaces
        assert "ablating MLPs" in label and "30/30" in label, f"unexpected progress-bar text: {label!r}"
        cell = bar.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' jp-CodeCell ')][1]")
        cell.screenshot(path=str(shot))  # the cell with the rendered progress bar
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert _sha(NOTEBOOK) == before, "the repository's notebook 00 was modified"



# The preference form of notebook 12 in the same JupyterLab: a two-cell notebook written next to the copy of
# notebook 00 (tests/artifacts/, git-ignored), "Run all", then two clicks in the rendered widget.
_PREFERENCE_PAIRS = [{"id": f"q{i}", "prompt": f"Describe thing {i} in one short sentence.",
                      "a": f"Thing {i} is short.", "b": f"Thing {i} is a much longer answer than the other one."}
                     for i in range(3)]


def test_preference_form_clicks_write_the_file_in_a_real_browser(browser_tools, lab):
    base, token, _ = lab
    folder = ARTIFACTS / "browser_run"
    nb_path, out = folder / "preference_form.ipynb", folder / "browser_preferences.json"
    out.unlink(missing_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from labkit import widgets\n"
                                          f"pairs = {_PREFERENCE_PAIRS!r}"),
                nbformat.v4.new_code_cell(f"widgets.preference_form(pairs, {out.name!r}, seed=1)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nb_path)
    rel = nb_path.relative_to(ROOT).as_posix()

    from labkit.widgets import PreferenceAnnotations

    shown = [p["shown"] for p in PreferenceAnnotations(_PREFERENCE_PAIRS, folder / "unused.json", seed=1).pairs]
    shot = ARTIFACTS / "browser_preference_form.png"
    with _lab_page(browser_tools, base, token, rel, reset=True) as page:
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }")
        form = page.locator(".jp-OutputArea-output .widget-vbox").first
        form.wait_for(state="visible", timeout=120_000)
        status = form.locator(".widget-html:has-text('pair ')").last
        page.wait_for_function("() => document.body.innerText.includes('pair 1 of 3')", timeout=30_000)
        assert "Describe thing 0" in form.inner_text()
        assert not out.exists(), "the form wrote its file before any click"

        form.locator("button:has-text('A is better')").click()
        page.wait_for_function("() => document.body.innerText.includes('pair 2 of 3')", timeout=30_000)
        form.locator("button:has-text('B is better')").click()
        page.wait_for_function("() => document.body.innerText.includes('pair 3 of 3')", timeout=30_000)
        page.wait_for_function("() => document.body.innerText.includes('saved 2 answers')", timeout=30_000)
        assert "Describe thing 2" in form.inner_text() and "pair 3 of 3" in status.inner_text()
        form.scroll_into_view_if_needed()
        form.screenshot(path=str(shot))
        assert page.locator(":text('Error displaying widget')").count() == 0, "a widget failed to render"
    from labkit.widgets import load_preferences

    saved = load_preferences(out)  # written by the kernel on each click, read back and validated
    assert saved["answered"] == 2 and [q["choice"] for q in saved["pairs"]] == ["A", "B", None]
    assert [q["shown"] for q in saved["pairs"]] == shown
    assert [q["preferred"] for q in saved["pairs"]] == [shown[0][0], shown[1][1], None]
    assert not [f.name for f in folder.glob(f".{out.name}.*.tmp")], "a temporary file was left behind"
    assert shot.is_file() and shot.stat().st_size > 5_000
