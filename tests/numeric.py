"""Test helpers: an independent NumPy float64 central difference, so tests never check
xpnet against itself, and ``dev`` to put NumPy data on a test's backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from xpnet.backend import to_device


def dev(xp: Any, a: Any, dtype: str = "float64") -> Any:
    """``a`` as an array of ``xp`` (the ``xp`` fixture's backend) in ``dtype``."""
    return to_device(np.asarray(a), dtype=dtype, xp=xp)


def central_difference(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-6):
    """d f / d x for a scalar NumPy function ``f``, one element at a time, in float64."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        f_plus = f(x.copy())
        x[idx] = old - h
        f_minus = f(x.copy())
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * h)
    return grad


def partial_differences(f: Callable[..., float], *args: np.ndarray) -> list[np.ndarray]:
    """``central_difference`` of a scalar NumPy ``f(*args)`` with respect to each argument
    in turn, the others held at their values."""
    return [
        central_difference(lambda v, k=k: f(*args[:k], v, *args[k + 1 :]), a)
        for k, a in enumerate(args)
    ]
