"""What a normal user meets: the tests run as root, whom no folder's permissions stop."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest


def raised_as_nobody(func: Callable[[], object]) -> str:
    """Call ``func`` as user ``nobody`` in a child process; what it raised, in words
    (``"PermissionError: ..."``), or ``""``.

    The child is forked, not started anew with ``runuser``: the interpreter may lie where
    ``nobody`` cannot read it (under ``/root``). Skips where no such user can be had.
    """
    if not hasattr(os, "fork") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("becoming user nobody needs root and fork (POSIX)")
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("there is no user nobody here")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's clean-ups
        status = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                func()
                said = ""
            except Exception as exc:
                said = f"{type(exc).__name__}: {exc}"
            with os.fdopen(write, "wb") as f:
                f.write(said.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        said = f.read().decode()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    return said
