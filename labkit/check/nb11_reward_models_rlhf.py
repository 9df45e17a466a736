"""Checks for the exercises of notebook 11 · Reward models and RLHF.

Define each check as an :class:`Exercise` and list its name in ``__all__``; ``labkit.check`` re-exports it.
"""

from __future__ import annotations

from ._machinery import Case, Exercise  # noqa: F401

__all__: list[str] = []
