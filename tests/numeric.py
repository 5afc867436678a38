"""An independent NumPy float64 central difference, so tests never check xpnet against itself."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


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
