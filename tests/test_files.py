"""Specification of xpnet.files.atomic_file: durable, permission-correct, all-or-nothing writes.

(Its missing-directory error is specified in test_checkpoint.py.)
"""

from __future__ import annotations

import os

import pytest

from xpnet.files import atomic_file


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring the old one afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def test_atomic_file_fsyncs_the_data_before_renaming_it_over_the_target(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def recording_fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def recording_replace(src, dst):
        events.append(("replace", os.stat(src).st_ino, os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    with atomic_file(target) as f:
        f.write(b"payload")
    inode = target.stat().st_ino
    # the data, the rename, then the folder's entry (so that a power loss keeps the name)
    folder = tmp_path.stat().st_ino
    assert events == [("fsync", inode), ("replace", inode, os.fspath(target)), ("fsync", folder)]
    assert target.read_bytes() == b"payload"


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_file_gives_the_new_file_0o666_less_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    target = tmp_path / "out.bin"
    with atomic_file(target) as f:
        f.write(b"x")
    assert target.stat().st_mode & 0o777 == mode


def test_keyboard_interrupt_in_the_block_propagates_and_leaves_no_file(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(KeyboardInterrupt), atomic_file(target) as f:
        f.write(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_in_the_block_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old contents")
    with pytest.raises(KeyboardInterrupt), atomic_file(target) as f:
        f.write(b"half")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert target.read_bytes() == b"old contents"


# A writer that dies (SIGKILL, SIGTERM, power loss) cannot remove its temporary file.
WRITER = """
import sys
from xpnet.files import atomic_file
with atomic_file(sys.argv[1]) as f:
    f.write(b"half of a new file")
    f.flush()
    print("writing", flush=True)
    sys.stdin.readline()  # the test says when to go on, or kills it here
    f.write(b", and the rest")
"""


def start_writer(target):
    """A real process in the middle of ``atomic_file(target)``: its temporary file exists."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__import__("xpnet").__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, os.fspath(target)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    assert proc.stdout.readline() == "writing\n"
    return proc


def test_the_temporary_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old contents")
    writer = start_writer(target)
    writer.kill()
    writer.wait()
    assert len(list(tmp_path.iterdir())) == 2  # the target and the dead writer's temp file
    assert target.read_bytes() == b"old contents"
    with atomic_file(target) as f:
        f.write(b"new contents")
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert target.read_bytes() == b"new contents"


def test_the_temporary_file_of_a_live_writer_is_left_alone(tmp_path):
    target = tmp_path / "out.bin"
    writer = start_writer(target)
    try:
        with atomic_file(target) as f:
            f.write(b"first")
        assert len(list(tmp_path.iterdir())) == 2  # the other writer's temp file is kept
    finally:
        writer.communicate("go on\n")
    assert writer.returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert target.read_bytes() == b"half of a new file, and the rest"


def test_a_target_name_of_255_bytes_is_written(tmp_path):
    if os.pathconf(tmp_path, "PC_NAME_MAX") < 255:
        pytest.skip("the file system takes shorter names")
    for name in ("a" * 251 + ".npz", "é" * 125 + ".npz"):  # 255 and 254 bytes
        target = tmp_path / name
        with atomic_file(target) as f:
            f.write(b"x")
        assert target.read_bytes() == b"x"
    assert len(list(tmp_path.iterdir())) == 2


def test_replacing_a_file_keeps_its_permissions(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "private.bin"
    target.write_bytes(b"old")
    target.chmod(0o600)
    with atomic_file(target) as f:
        f.write(b"new")
    assert target.stat().st_mode & 0o777 == 0o600
    assert target.read_bytes() == b"new"


def test_a_read_only_file_is_not_replaced(tmp_path):
    target = tmp_path / "keep.bin"
    target.write_bytes(b"keep me")
    target.chmod(0o444)
    if os.access(target, os.W_OK):
        pytest.skip("this user may write read-only files (root)")
    message = f"cannot write {target}: the file is read-only"
    with pytest.raises(PermissionError, match=message), atomic_file(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]


def test_writing_to_a_symlink_replaces_the_file_it_points_to(tmp_path):
    (tmp_path / "runs").mkdir()
    real = tmp_path / "runs" / "model.npz"
    real.write_bytes(b"old")
    link = tmp_path / "latest.npz"
    link.symlink_to(real)
    with atomic_file(link) as f:
        f.write(b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.npz", "runs"]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["model.npz"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_named_like_a_temporary_file_is_left_alone_without_blocking(tmp_path):
    target = tmp_path / "out.bin"
    os.mkfifo(tmp_path / ".out.bin.abcdefgh.tmp")
    with atomic_file(target) as f:
        f.write(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.bin.abcdefgh.tmp", "out.bin"]


def test_the_temporary_file_is_named_after_the_target(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_file(target) as f:
        (temp,) = [p.name for p in tmp_path.iterdir()]
        f.write(b"x")
    # .<name>.<8 random characters>.tmp, beside the target
    assert temp.startswith(".out.bin.") and temp.endswith(".tmp")
    assert len(temp) == len(".out.bin.") + 8 + len(".tmp")
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_files_that_are_not_dead_temporary_files_of_the_target_are_kept(tmp_path):
    others = {
        ".out.bin.backup.tmp": b"a name of another length",
        ".out.bin.abcdefgh.bak": b"another suffix",
        ".out.npz.abcdefgh.tmp": b"another target's",
        ".xut.bin.abcdefgh.tmp": b"another prefix",
    }
    for name, data in others.items():
        (tmp_path / name).write_bytes(data)
    target = tmp_path / "out.bin"
    with atomic_file(target) as f:
        f.write(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, "out.bin"])
    for name, data in others.items():
        assert (tmp_path / name).read_bytes() == data


def test_a_temporary_file_removed_before_it_was_locked_is_made_again(tmp_path, monkeypatch):
    # A cleaner may remove a new temporary file between its creation and its lock.
    import tempfile

    real_mkstemp, made = tempfile.mkstemp, []

    def mkstemp(**kwargs):
        fd, name = real_mkstemp(**kwargs)
        made.append(name)
        if len(made) == 1:
            os.unlink(name)  # as a cleaner would, before the writer locks it
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    target = tmp_path / "out.bin"
    with atomic_file(target) as f:
        f.write(b"new")
    assert len(made) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert target.read_bytes() == b"new"


def test_a_temporary_file_replaced_while_it_was_being_locked_is_kept(tmp_path, monkeypatch):
    # The cleaner locks what it opened; if the name now holds another file (a new writer's),
    # that file is not removed.
    import xpnet.files

    dead = tmp_path / ".out.bin.abcdefgh.tmp"
    dead.write_bytes(b"dead")
    newer = tmp_path / "newer"
    newer.write_bytes(b"a live writer's")
    real_lock = xpnet.files._lock

    def lock(fd, *, wait):
        if not wait and newer.exists():
            os.replace(newer, dead)
        return real_lock(fd, wait=wait)

    monkeypatch.setattr(xpnet.files, "_lock", lock)
    target = tmp_path / "out.bin"
    with atomic_file(target) as f:
        f.write(b"new")
    assert dead.read_bytes() == b"a live writer's"


def test_a_file_this_process_may_not_write_is_not_replaced(tmp_path, read_only_to_this_process):
    # test_a_read_only_file_is_not_replaced for root too, who may write read-only files
    target = tmp_path / "keep.bin"
    target.write_bytes(b"keep me")
    read_only_to_this_process(target)
    message = f"cannot write {target}: the file is read-only"
    with pytest.raises(PermissionError, match=message), atomic_file(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]


def test_a_pipe_put_in_place_of_a_dead_temporary_file_does_not_block(tmp_path, monkeypatch):
    # Between the scan of the folder and the open, a dead writer's temporary file is
    # replaced by a pipe (that no one writes): the clean-up must not wait on it.
    import threading

    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    dead = tmp_path / ".out.bin.abcdefgh.tmp"
    dead.write_bytes(b"dead")
    real_scandir = os.scandir

    def scandir(directory):
        entries = list(real_scandir(directory))  # a regular file when scanned
        if dead.exists() and not dead.is_fifo():
            dead.unlink()
            os.mkfifo(dead)
        return iter(entries)

    monkeypatch.setattr(os, "scandir", scandir)
    target = tmp_path / "out.bin"

    def write():
        with atomic_file(target) as f:
            f.write(b"new")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout=10)
    blocked = writer.is_alive()
    if blocked:  # let it go: open the pipe for writing, which lets its reader's open return
        fd = os.open(dead, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        writer.join()
    assert not blocked
    assert target.read_bytes() == b"new"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_or_device_is_not_replaced_by_a_file(tmp_path):
    # The rename would put a regular file in its place: /dev/null, for root.
    target = tmp_path / "out.bin"
    os.mkfifo(target)
    error = r"^cannot write .*out\.bin: not a regular file"
    with pytest.raises(ValueError, match=error), atomic_file(target) as f:
        f.write(b"new")
    assert target.is_fifo() and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_folder_in_the_way_is_an_is_a_directory_error_leaving_no_temporary_file(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError), atomic_file(tmp_path / "out") as f:
        f.write(b"data")
    assert os.listdir(tmp_path) == ["out"]
