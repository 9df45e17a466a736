"""labkit.files.atomic_write: the one atomic writer behind datasheets and preference annotations."""

from __future__ import annotations

import os
import stat

import pytest

from labkit import files


@pytest.fixture(params=["unnamed", "fallback"])
def way(request, monkeypatch):
    """Each test runs twice: with the O_TMPFILE path (where the system has it) and with the portable fallback."""
    if request.param == "fallback":
        monkeypatch.setattr(files, "_UNNAMED_FILES_LINK", False)
    return request.param


def test_writes_bytes_and_text_creates_the_folder_and_leaves_nothing_else(tmp_path, way):
    path = tmp_path / "sub" / "a.json"
    assert files.atomic_write(path, "héllo\n") == path
    assert path.read_bytes() == "héllo\n".encode("utf-8")
    files.atomic_write(str(path), b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_mode_is_kept_from_the_replaced_file_or_given(tmp_path, way):
    path = tmp_path / "a.txt"
    path.write_text("old")
    path.chmod(0o600)
    files.atomic_write(path, "new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "new"
    files.atomic_write(path, "newer", mode=0o640)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    fresh = tmp_path / "fresh.txt"
    umask = os.umask(0)
    os.umask(umask)
    files.atomic_write(fresh, "x")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, way, monkeypatch):
    path = tmp_path / "a.json"
    files.atomic_write(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_dead_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    path = tmp_path / "a.json"
    dead = 2 ** 22 + 12345  # above Linux's pid_max default: no such process
    stale = tmp_path / f".a.json.{dead}.0badcafe.tmp"
    stale.write_text("half")
    mine = tmp_path / f".a.json.{os.getpid()}.0badcafe.tmp"  # this process's: not stale, left alone
    mine.write_text("busy")
    files.atomic_write(path, "done")
    assert not stale.exists() and mine.exists() and path.read_text() == "done"
