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
    assert events == [("fsync", inode), ("replace", inode, os.fspath(target))]
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
