"""Maintainer commands: ``python -m tools stamp | exercises`` (run from the repository root)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools", description="Maintainer tools for the course repository.")
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("exercises", help="write notebooks/exercises/ from the complete notebooks")
    e.add_argument("--check", action="store_true", help="only report stale student versions (exit 1 if any)")
    e.add_argument("numbers", nargs="*", help="only these notebooks, e.g. 05 06 (default: all)")
    s = sub.add_parser("stamp", help="stamp the title/setup cells into every notebook and refresh the README map")
    s.add_argument("--check", action="store_true", help="only report notebooks that differ (exit 1 if any)")
    s.add_argument("numbers", nargs="*", help="only these notebooks, e.g. 05 06 (default: all); the README map always")
    args = parser.parse_args(argv)

    from tools import notebooks

    if args.command == "exercises":
        stale = notebooks.write_exercises(check=args.check, numbers=args.numbers or None)
        return 1 if (args.check and stale) else 0
    changed = notebooks.stamp_all(check=args.check, numbers=args.numbers or None)
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
