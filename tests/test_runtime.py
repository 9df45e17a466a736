"""Tests of labkit.runtime: the environment, the device, the seeds, setup() and the cache directory."""

from __future__ import annotations

import random
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import labkit
from labkit import runtime

ENV_MARKERS = ["COLAB_RELEASE_TAG", "BINDER_SERVICE_HOST", "BINDER_REPO_URL", "BINDER_LAUNCH_HOST", "CI"]
HAS_MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


@pytest.fixture
def clean_env(monkeypatch):
    """No Colab, Binder or CI markers, whatever the machine running the tests sets (e.g. a real CI=true)."""
    for name in ENV_MARKERS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    return monkeypatch


@pytest.fixture
def fresh_runtime(monkeypatch):
    """No device chosen by setup() yet; restored after the test."""
    monkeypatch.setattr(runtime, "_DEVICE", None)
    monkeypatch.delenv(runtime.ENV_DEVICE, raising=False)
    return monkeypatch


# --------------------------------------------------------------------------------------------------
# environment()


def test_local(clean_env):
    assert runtime.environment() == "local"


@pytest.mark.parametrize("value", ["1", "true", "True", "YES"])
def test_ci(clean_env, value):
    clean_env.setenv("CI", value)
    assert runtime.environment() == "CI"


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_ci_false_is_local(clean_env, value):
    clean_env.setenv("CI", value)
    assert runtime.environment() == "local"


@pytest.mark.parametrize("name", ["BINDER_SERVICE_HOST", "BINDER_REPO_URL", "BINDER_LAUNCH_HOST"])
def test_binder(clean_env, name):
    clean_env.setenv(name, "https://mybinder.org")
    assert runtime.environment() == "Binder"


def test_colab_from_its_environment_variable(clean_env):
    clean_env.setenv("COLAB_RELEASE_TAG", "release-colab_20250101-060000_RC00")
    clean_env.setenv("CI", "true")  # Colab wins over the other markers
    assert runtime.environment() == "Colab"


def test_colab_from_its_module(clean_env):
    clean_env.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert runtime.environment() == "Colab"


# --------------------------------------------------------------------------------------------------
# Devices


def test_best_device_without_override(fresh_runtime):
    expected = "cuda" if torch.cuda.is_available() else "mps" if HAS_MPS else "cpu"
    assert runtime.best_device() == torch.device(expected)


def test_best_device_honours_labkit_device(fresh_runtime):
    fresh_runtime.setenv("LABKIT_DEVICE", "cpu")
    assert runtime.best_device() == torch.device("cpu")
    assert runtime.get_device() == torch.device("cpu")


def test_labkit_device_that_makes_no_sense(fresh_runtime):
    fresh_runtime.setenv("LABKIT_DEVICE", "banana")
    with pytest.raises(ValueError, match="unknown device 'banana': use 'cpu', 'cuda'"):
        runtime.best_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda")])
def test_cuda_when_there_is_none(fresh_runtime, device):
    with pytest.raises(ValueError, match="CUDA is not available here; use 'cpu'"):
        runtime.get_device(device)
    fresh_runtime.setenv("LABKIT_DEVICE", "cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        runtime.best_device()


@pytest.mark.skipif(HAS_MPS, reason="Apple MPS is available here")
def test_mps_when_there_is_none(fresh_runtime):
    with pytest.raises(ValueError, match="Apple MPS is not available here; use 'cpu'"):
        runtime.get_device("mps")


def test_get_device_explicit_wins(fresh_runtime):
    assert runtime.get_device("cpu") == torch.device("cpu")
    assert runtime.get_device(torch.device("cpu")) == torch.device("cpu")
    assert runtime.get_device() == runtime.best_device()


# --------------------------------------------------------------------------------------------------
# Seeds


def draws():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), torch.randint(0, 10**6, (2,)).tolist()


def test_seed_everything_reproduces_random_numpy_and_torch():
    runtime.seed_everything(123)
    first = draws()
    runtime.seed_everything(123)
    assert draws() == first
    runtime.seed_everything(124)
    second = draws()
    assert all(a != b for a, b in zip(second, first))  # each generator was reseeded


@pytest.mark.parametrize("seed", [-1, 1.5, "3", None])
def test_seed_everything_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        runtime.seed_everything(seed)


# --------------------------------------------------------------------------------------------------
# setup()


def test_setup_prints_one_line_and_returns_the_device(fresh_runtime, capsys):
    fresh_runtime.setenv("LABKIT_DEVICE", "cpu")
    device = labkit.setup(seed=7)
    lines = capsys.readouterr().out.splitlines()
    assert device == torch.device("cpu") and runtime.get_device() == device
    assert len(lines) == 1, lines
    line = lines[0]
    assert f"labkit {labkit.__version__}" in line
    assert f"torch {torch.__version__}" in line
    assert f"device cpu ({torch.get_num_threads()} threads)" in line
    assert f"environment {runtime.environment()}" in line
    # and it seeded everything
    after_setup = draws()
    runtime.seed_everything(7)
    assert draws() == after_setup


def test_setup_with_an_explicit_device_is_used_later(fresh_runtime, capsys):
    assert runtime.setup(device="cpu", quiet=True) == torch.device("cpu")
    assert capsys.readouterr().out == ""
    assert runtime.get_device() == torch.device("cpu")


def test_setup_rejects_a_bad_seed_or_device(fresh_runtime):
    with pytest.raises(ValueError, match="non-negative"):
        runtime.setup(seed=-3, quiet=True)
    with pytest.raises(ValueError, match="unknown device"):
        runtime.setup(device="gpu please", quiet=True)


# --------------------------------------------------------------------------------------------------
# cache_dir()


def test_cache_dir_honours_labkit_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "models"))
    assert runtime.cache_dir() == tmp_path / "models"
    monkeypatch.setenv("LABKIT_CACHE", "~/labkit-models")
    assert runtime.cache_dir() == Path.home() / "labkit-models"


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("LABKIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runtime.cache_dir() == tmp_path / "xdg" / "labkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert runtime.cache_dir() == tmp_path / "home" / ".cache" / "labkit"


def test_lab_command_refuses_a_missing_notebook(tmp_path, monkeypatch, capsys):
    from labkit.__main__ import main

    monkeypatch.chdir(tmp_path)
    assert main(["lab"]) == 2
    assert "no notebook at notebooks/exercises/00_start_here.ipynb" in capsys.readouterr().err  # the student version
