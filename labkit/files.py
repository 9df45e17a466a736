"""Writing a file so that no reader and no crash ever sees half of it — :func:`atomic_write`.

Used by everything in labkit that saves a student's work: datasheets (:meth:`labkit.datasheet.Datasheet.save`)
and preference annotations (:class:`labkit.widgets.PreferenceAnnotations`). The new content goes to a file that
replaces the target only when it is complete and on disk. On Linux that file is unnamed (``O_TMPFILE``) until
then, so even a killed process leaves nothing behind; elsewhere it is a hidden ``.<name>.<pid>.<random>.tmp``
file next to the target, which the next write to the same target removes if its process is gone.
"""

from __future__ import annotations

import errno
import os
from glob import escape as glob_escape
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, data: bytes | str, mode: int | None = None) -> Path:
    """Write ``data`` (bytes, or text written as UTF-8) to ``path`` atomically and return ``path`` as a Path.

    A reader sees the old file or the new one, never part of one, and a failed write leaves the old file as it
    was. The folder is created if needed. The new file gets ``mode`` (permission bits), by default those of the
    file it replaces, or for a new file the usual ones (0o666 less the process's umask). ``path`` itself is
    replaced: to write through a symbolic link, pass the link's target."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or pathlib.Path), got {type(path).__name__}")
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes or str, got {type(data).__name__}")
    if mode is not None and (isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777):
        raise ValueError(f"mode must be permission bits between 0 and 0o777 (e.g. 0o644) or None, got {mode!r}")
    target = Path(path)
    if str(path) == "" or target.name == "":
        raise ValueError(f"path must name a file, got {str(path)!r}")
    if target.is_dir():
        raise IsADirectoryError(f"path {str(path)!r} is a folder; give a file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        if target.exists():
            mode = target.stat().st_mode & 0o777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
    data = bytes(data)
    _remove_stale_temp_files(target)
    if not _write_unnamed_then_link(target, data, mode):
        _write_temp_then_replace(target, data, mode)
    return target


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


#: Whether an unnamed (O_TMPFILE) file can be linked into place here; None until a save has tried.
_UNNAMED_FILES_LINK: bool | None = None


def _write_unnamed_then_link(target: Path, data: bytes, mode: int) -> bool:
    """Write ``data`` to an unnamed file in ``target``'s folder (``O_TMPFILE``) and give it ``target``'s name
    only when it is complete and on disk. Returns False where the system cannot do this (then nothing happened).

    A process killed before the link leaves nothing (the kernel frees an unnamed file); replacing an existing
    file links a hidden name first and renames it over ``target`` in the next system call."""
    global _UNNAMED_FILES_LINK
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or _UNNAMED_FILES_LINK is False or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        fd = os.open(target.parent, flag | os.O_WRONLY, mode)
    except OSError:  # a file system or kernel without O_TMPFILE
        return False
    try:
        os.fchmod(fd, mode)
        _write_all(fd, data)
        os.fsync(fd)
        try:
            _link_unnamed(fd, target)
            return True
        except FileExistsError:
            pass
        except OSError:  # neither way of linking works here: use the fallback from now on
            _UNNAMED_FILES_LINK = False
            return False
        hidden = _temp_name(target)
        try:
            _link_unnamed(fd, hidden)
        except OSError:
            return False
        try:
            os.replace(hidden, target)
        except BaseException:
            hidden.unlink(missing_ok=True)
            raise
        return True
    finally:
        os.close(fd)


def _link_unnamed(fd: int, dest: Path) -> None:
    """Give the unnamed file open as ``fd`` the name ``dest`` (FileExistsError if ``dest`` exists): linkat through
    ``/proc/self/fd`` (any user), else linkat with AT_EMPTY_PATH (needs CAP_DAC_READ_SEARCH, e.g. root)."""
    try:
        os.link(f"/proc/self/fd/{fd}", dest, follow_symlinks=True)
        return
    except FileExistsError:
        raise
    except OSError as first:
        failure = first
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, at_empty_path = -100, 0x1000
        if libc.linkat(fd, b"", at_fdcwd, os.fsencode(dest), at_empty_path) == 0:
            return
        err = ctypes.get_errno()
    except (OSError, AttributeError):  # no C library with linkat
        raise failure from None
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), str(dest))
    raise failure


def _temp_name(target: Path) -> Path:
    """A hidden name next to ``target`` that records the writing process: ``.<name>.<pid>.<random>.tmp``."""
    return target.parent / f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"


def _remove_stale_temp_files(target: Path) -> None:
    """Remove the temporary files that saves to ``target`` left when their process was killed (their pid is gone)."""
    for leftover in target.parent.glob(f".{glob_escape(target.name)}.*.tmp"):
        parts = leftover.name[len(target.name) + 2:].split(".")
        if len(parts) != 3 or not parts[0].isdigit() or int(parts[0]) == os.getpid():
            continue
        try:
            os.kill(int(parts[0]), 0)
        except ProcessLookupError:  # the writer is dead: its file can never be completed
            leftover.unlink(missing_ok=True)
        except (PermissionError, OSError):
            pass  # alive (another user's process) or unknown: leave it


def _write_temp_then_replace(target: Path, data: bytes, mode: int) -> None:
    """The portable fallback: a hidden temporary file next to ``target``, renamed over it when complete.

    A process killed between creating and renaming it (SIGKILL runs no clean-up) leaves that file behind;
    the next save to the same path removes it (:func:`_remove_stale_temp_files`)."""
    tmp = _temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # created 0600 (private while incomplete); give the file ordinary permissions
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
