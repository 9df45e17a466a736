"""Check that requirements.txt (and requirements-test.txt) resolve on every Python the project allows.

    python -m tools.check_pins            # needs PyPI; dry-run resolution with pip for each Python minor version

pip resolves the pinned set for another Python version from wheels only (``--python-version``,
``--only-binary=:all:``), without installing anything. pyproject.toml's ``requires-python`` must not allow a
version on which the pins fail. Last run (2026-11-30): 3.11, 3.12, 3.13 and 3.14 resolve; 3.10 does not
(annotated-doc 0.0.7, numpy 2.4, scipy 1.17 need 3.11), hence ``requires-python = ">=3.11"``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("3.10", "3.11", "3.12", "3.13", "3.14")


def resolves(version: str, files=("requirements.txt", "requirements-test.txt")) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as target:
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--python-version",
               version, "--only-binary=:all:", "--target", target]
        for f in files:
            cmd += ["-r", str(ROOT / f)]
        run = subprocess.run(cmd, capture_output=True, text=True)
    errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
    return run.returncode == 0, (errors[-1] if errors else "")


def main() -> int:
    for v in VERSIONS:
        ok, why = resolves(v)
        print(f"Python {v}: {'resolves' if ok else 'does not resolve — ' + why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
