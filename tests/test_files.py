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
