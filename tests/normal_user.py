"""What a normal user meets: the tests run as root, whom no folder's permissions stop."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from typing import Any

import pytest


def raised_as_nobody(func: Callable[..., object], *args: Any, **kwargs: Any) -> str:
    """Call ``func(*args, **kwargs)`` as user ``nobody`` in a child process; what it raised,
    in words (``"PermissionError: ..."``), or ``""``. ``func`` must be importable (a
    module-level function) and its arguments picklable.

    The child comes from a fork server, itself single-threaded: forking the test process,
    whose threads (pytest-timeout's, BLAS's, Dask's) may hold locks, could deadlock the
    child (Python 3.12 warns of it). It is not started anew as ``nobody`` (``runuser``):
    the interpreter may lie where ``nobody`` cannot read it (under ``/root``). Skips where
    no such user can be had.
    """
    if not hasattr(os, "fork") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("becoming user nobody needs root and fork (POSIX)")
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("there is no user nobody here")
    with multiprocessing.get_context("forkserver").Pool(1) as pool:
        return pool.apply(_as_user, (nobody.pw_uid, nobody.pw_gid, func, args, kwargs))


def _as_user(uid: int, gid: int, func: Callable[..., object], args: Any, kwargs: Any) -> str:
    """In the pool's child: become ``uid``/``gid`` for good, call ``func``, say what it raised."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    try:
        func(*args, **kwargs)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""
