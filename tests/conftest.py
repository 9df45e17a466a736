"""Shared test setup: no network for the whole session, and the course model loaded once."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config):
    # Set before any test module imports huggingface_hub / transformers (they read these at import time),
    # so no test can reach the network: the course must work offline.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # The OpenMP thread settings (passive waiting, threads within the CPU budget) for this process and the
    # notebook kernels nbval starts from it: a busy machine must not make the suite crawl (labkit/threads.py).
    from labkit import threads

    os.environ.update(threads.thread_env())


@pytest.fixture(scope="session")
def lm():
    """The course model (SmolLM2-135M-Instruct, float32, from the labkit cache), loaded once per session.

    Treat it as read-only: tests share it. A test that needs a modified model loads its own.
    """
    from labkit.lm import load_lm

    return load_lm()


@pytest.fixture(autouse=True)
def _claims_describe_the_course_model():
    """A test that loads another model makes this process's claims lenient (labkit.claims.STATE); reset it so
    that no other test sees it."""
    from labkit import claims

    yield
    claims.STATE["other_model"] = None
