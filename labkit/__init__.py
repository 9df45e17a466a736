"""labkit: the implementations behind the Trustworthy & Aligned Deep Learning lab notebooks.

A notebook imports ``labkit`` and the module of its topic. The shared core:

* ``labkit.runtime``  — ``setup()`` (seeds, device, environment line), ``get_device()``, the cache folder;
* ``labkit.lm``       — the language-model layer: ``load_lm()``, ``load_embedder()``, ``python -m labkit download``,
  the ``LanguageModel`` wrapper, ``lm.hooks`` (``capture()`` and ``patch()`` on named activation sites such as
  ``resid_post.12``, ``head.3``) and ``lm.interventions`` (the one intervention engine);
* ``labkit.datasets`` — the course corpus and data loaders;
* ``labkit.stats``    — Spearman's rank correlation;
* ``labkit.claim``    — claims are code: ``claim(condition, "the sentence", x=x)`` prints ✓ or raises with the numbers;
* ``labkit.check``    — the checks that follow every exercise;
* ``labkit.viz``      — plotting helpers.
"""

__version__ = "0.1.0"

from labkit import threads  # noqa: E402  (imports no torch)

threads.prepare()  # the OpenMP thread variables, before torch loads (see labkit/threads.py)

from labkit.claims import claim  # noqa: E402
from labkit.runtime import get_device, seed_everything, setup  # noqa: E402

__all__ = ["__version__", "setup", "get_device", "seed_everything", "claim", "load_lm", "load_embedder",
           "COURSE_MODEL"]

#: The course language model (SmolLM2-135M-Instruct, offline): every language-model notebook's default ``MODEL``.
COURSE_MODEL = "smollm2-135m-instruct"


def load_lm(*args, **kwargs):
    """Shortcut for :func:`labkit.lm.load.load_lm` (imports transformers on first use)."""
    from labkit.lm.load import load_lm as _load_lm

    return _load_lm(*args, **kwargs)


def load_embedder(*args, **kwargs):
    """Shortcut for :func:`labkit.lm.load.load_embedder`."""
    from labkit.lm.load import load_embedder as _load_embedder

    return _load_embedder(*args, **kwargs)
