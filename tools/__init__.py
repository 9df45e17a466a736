"""Maintainer tooling for the course repository (not part of the ``labkit`` package students install).

* :mod:`tools.course` — the course catalogue: notebooks, titles, where the course is published;
* :mod:`tools.notebooks` — stamping the title/setup cells and the README tables, generating the student
  versions; ``python -m tools stamp`` and ``python -m tools exercises``;
* :mod:`tools.build_corpus`, :mod:`tools.build_preferences`, :mod:`tools.build_datasheets` — the scripts that
  built the data files shipped in ``labkit/data/`` (``python -m tools.build_corpus``, …).

Run them from the repository root.
"""
