"""Runtime: the device, the seeds, the environment, the cache directory.

Every notebook starts with ``labkit.setup()``: it fixes the seeds, picks the device (CUDA, then Apple MPS,
then the CPU) and prints one line saying where the notebook runs. Everything else in labkit asks this
module for the device, so a notebook that was set up on a GPU runs its labkit calls there too.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from labkit import threads

_DEVICE: torch.device | None = None

#: Environment variables labkit reads (all optional).
ENV_DEVICE = "LABKIT_DEVICE"  # force a device: "cpu", "cuda", "cuda:1", "mps"
ENV_CACHE = "LABKIT_CACHE"  # where converted models live


def environment() -> str:
    """Where this process runs: ``"Colab"``, ``"Binder"``, ``"CI"`` or ``"local"``."""
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
        return "Colab"
    if "BINDER_SERVICE_HOST" in os.environ or "BINDER_REPO_URL" in os.environ or "BINDER_LAUNCH_HOST" in os.environ:
        return "Binder"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        return "CI"
    return "local"


def best_device() -> torch.device:
    """The fastest device available: CUDA, then Apple MPS, then the CPU (``LABKIT_DEVICE`` overrides)."""
    forced = os.environ.get(ENV_DEVICE)
    if forced:
        return _parse_device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _parse_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'mps'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here; use 'cpu'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} was asked for but Apple MPS is not available here; use 'cpu'")
    return dev


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Resolve a ``device`` argument: an explicit value wins, else the one ``setup()`` chose, else the best one."""
    if device is not None:
        return _parse_device(device)
    return _DEVICE if _DEVICE is not None else best_device()


def seed_everything(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (all devices) with ``seed``."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators


def cache_dir() -> Path:
    """Directory for converted models: ``$LABKIT_CACHE``, else the user cache directory (``~/.cache/labkit``)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "labkit"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "labkit"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "labkit" / "Cache"
    return Path.home() / ".cache" / "labkit"


def describe(device: torch.device | None = None) -> str:
    """One line: environment, device, labkit and torch versions."""
    from labkit import __version__

    dev = get_device(device)
    if dev.type == "cuda":
        where = f"cuda ({torch.cuda.get_device_name(dev)})"
    elif dev.type == "cpu":
        where = f"cpu ({torch.get_num_threads()} threads)"
    else:
        where = dev.type
    return f"labkit {__version__} · torch {torch.__version__} · device {where} · environment {environment()}"


def setup(seed: int = 0, device: str | torch.device | None = None, quiet: bool = False) -> torch.device:
    """Prepare a notebook: fix the seeds, choose the device, print one line about the environment.

    Returns the device; labkit functions called later default to it. A warning says when torch was imported
    before labkit with spinning OpenMP threads or more threads than the CPU budget (see :mod:`labkit.threads`).
    """
    global _DEVICE
    _DEVICE = get_device(device) if device is not None else best_device()
    seed_everything(seed)
    threads.check()  # warn if torch was loaded with spinning threads or more threads than the CPU budget
    if not quiet:
        print(describe(_DEVICE))
    return _DEVICE
