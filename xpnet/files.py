"""Atomic file writes: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # Windows: no locks, so temporary files of dead writers are not removed
    fcntl = None  # type: ignore[assignment]

#: A temporary file is ``.<name>.<8 random characters>.tmp``, ``<name>`` the target's name
#: cut to this many bytes, so that a target name of up to 255 bytes can be written.
_NAME_BYTES = 128
_SUFFIX = ".tmp"
_RANDOM = 8  # the length of tempfile's random part


def _temp_prefix(name: str) -> str:
    while len(os.fsencode(name)) > _NAME_BYTES:
        name = name[:-1]
    return f".{name}."


def _lock(fd: int, *, wait: bool) -> bool:
    """Lock ``fd`` for as long as it is open; False if another process holds the lock (or
    the file system has no locks)."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def _same_file(path: str, fd: int) -> bool:
    try:
        return os.path.samestat(os.stat(path, follow_symlinks=False), os.fstat(fd))
    except OSError:
        return False


def _new_temp(directory: Path, prefix: str) -> tuple[int, str]:
    """A temporary file in ``directory``, locked while it is written: a writer that dies
    leaves it unlocked, so that a later write removes it (:func:`_remove_dead_temps`)."""
    while True:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=_SUFFIX)
        if not _lock(fd, wait=True) or _same_file(tmp, fd):
            return fd, tmp
        os.close(fd)  # a cleaner removed it before it was locked: make another


def _remove_dead_temps(directory: Path, prefix: str, own: str) -> None:
    """Remove the temporary files for the same target that no live writer holds."""
    if fcntl is None:
        return
    length = len(prefix) + _RANDOM + len(_SUFFIX)
    try:
        names = [
            entry.name
            for entry in os.scandir(directory)
            if entry.name.startswith(prefix) and entry.name.endswith(_SUFFIX)
            and len(entry.name) == length and entry.name != own
            and entry.is_file(follow_symlinks=False)
        ]  # fmt: skip
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            # Non-blocking: a FIFO put there since the scan would block the open for ever.
            fd = os.open(
                path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
            )
        except OSError:
            continue
        try:
            if _lock(fd, wait=False) and _same_file(path, fd):
                os.unlink(path)
        except OSError:
            pass
        finally:
            os.close(fd)


def written_path(path: str | os.PathLike[str]) -> Path:
    """The file :func:`atomic_file` replaces for ``path``: ``path`` itself, or the file a
    symbolic link there points to."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def special_kind(st_mode: int) -> str | None:
    """What a file of ``os.stat`` mode ``st_mode`` is when it is neither a regular file nor
    a folder: a device, a pipe (``/dev/stdout`` in a pipeline), a socket; else None."""
    if stat.S_ISREG(st_mode) or stat.S_ISDIR(st_mode):
        return None
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a pipe"), (stat.S_ISSOCK, "a socket"))  # fmt: skip
    return next((kind for test, kind in kinds if test(st_mode)), "not a file")


def not_a_file(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as a regular file, in words (None when it can): ``no such
    file``, ``a directory``, ``a broken link to <target>``, ``a pipe``, ...

    Raises ``PermissionError`` naming ``path`` and the folder on its way that cannot be
    searched (one listed but not entered, ``chmod 444``): the file may well be there, so it
    is not "not found"."""
    try:
        st_mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"a broken link to {os.readlink(path)}"
        return "no such file"
    except PermissionError as exc:
        raise PermissionError(
            exc.errno,
            f"{exc.strerror}: cannot look into the folder {_unsearchable_folder(path)} "
            "(it lacks search permission, x, for this user)",
            os.fspath(path),
        ) from exc
    except OSError as exc:  # a file where a folder should be, a loop of links, ...
        return f"not found ({exc.strerror or exc})"
    return "a directory" if stat.S_ISDIR(st_mode) else special_kind(st_mode)


def _unsearchable_folder(path: str | os.PathLike[str]) -> Path:
    """The first folder on the way to ``path``, from the top, that this process cannot
    search; ``path``'s own folder when none says so (a network file system may refuse
    what the permission bits allow)."""
    absolute = Path(os.path.abspath(path))
    folders = reversed(absolute.parents)
    return next((f for f in folders if not os.access(f, os.X_OK)), absolute.parent)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the block succeeds, and vanishes if not.

    The data go to a temporary file beside ``path``, are flushed to disk, and the file
    is renamed over ``path``. A new file gets the usual permissions (``0o666`` less the
    umask); a file replaced keeps its own, and a read-only one is not replaced
    (``PermissionError``), nor a device or a pipe (``ValueError``). A symbolic link is
    followed: the file it points to is replaced. On any error the temporary file is
    removed and ``path`` is left as it was; the temporary files of writers that died
    (``SIGKILL``) are removed by the next write.
    """
    path = written_path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot write {path}: directory {directory} does not exist")
    try:
        st_mode = os.stat(path).st_mode
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    else:
        mode = stat.S_IMODE(st_mode)
        kind = special_kind(st_mode)  # a folder fails at the rename
        if kind:  # the rename would put a file in its place (/dev/null, as root)
            raise ValueError(f"cannot write {path}: not a regular file ({kind})")
        if not os.access(path, os.W_OK):
            raise PermissionError(f"cannot write {path}: the file is read-only")
    prefix = _temp_prefix(path.name)
    fd, tmp = _new_temp(directory, prefix)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
            os.replace(tmp, path)  # still open, so still locked: no cleaner removes it
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_directory(directory)
    _remove_dead_temps(directory, prefix, os.path.basename(tmp))


def _sync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries to disk, so that after a power loss the new name is
    there too, not only the old file (POSIX; elsewhere, and where it fails, nothing)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
