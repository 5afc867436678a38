"""Checks of plain arguments that several modules share (counts, sizes, seeds, scales):
NumPy's integer and float scalars are numbers here as Python's are; a ``bool`` is not."""

from __future__ import annotations

import math
import numbers
from typing import Any


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer (``int`` or a NumPy integer), not a ``bool``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (``int``, ``float`` or a NumPy one), not a ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_count(value: Any, least: int) -> bool:
    """Whether ``value`` is an integer >= ``least``."""
    return is_integer(value) and value >= least


def require_count(name: str, value: Any, least: int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer >= ``least``."""
    if not is_count(value, least):
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


def is_finite_at_least(value: Any, least: float) -> bool:
    """Whether ``value`` is a finite real number >= ``least``."""
    return is_real(value) and least <= value < math.inf
