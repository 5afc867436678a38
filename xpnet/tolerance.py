"""The gradient checks' tolerances: the pass rule, and an atol that grows with the loss.

:func:`within_tolerance` is the rule, ``|analytic - numerical| <= atol + rtol *
|numerical|``; :class:`Atol` the absolute tolerance at a step, at least what rounding
the loss (``ROUNDING``) or its measured rounding noise (:func:`rounding_noise`) can
make of a correct gradient; :func:`tolerances` the defaults per dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpnet.backend import namespace_of
from xpnet.checks import is_real
from xpnet.numerical import DEFAULTS, _Numerical, check_step

#: The default atol's margin over ``eps * |L| / step``, the error that rounding the loss
#: ``L`` makes in a central difference: the loop's differences of a loss summed over 1,000
#: and 3,000 samples (2,303 and 6,908) were off by up to 0.97 and 0.68 times it, the batched
#: method's by 0.02 times (tests/test_gradcheck.py's summed_loss_problem); at h / RETRY,
#: where a retried element is compared with h's atol, up to about 10 times. 64 passed 23
#: fewer wrong float32 gradients of benchmarks.tolerance_sweep's than 16 (its loss of
#: about 2 raised float32's atol of 1e-3 to 1.5e-3) and failed no fewer correct ones.
ROUNDING = 16
#: How much smaller the step is at which a failing element is differenced again: its
#: truncation error (``h**2`` times the third derivative over 6) falls RETRY**2-fold there,
#: the error of a wrong gradient stays. It is compared there with h's atol, not the larger
#: one of the smaller step: ROUNDING's margin covers the rounding, RETRY times larger
#: there, and a retry must not loosen the check (float32's atol at h / 10 passed a 10%
#: error in a gradient of 0.06).
RETRY = 10
#: The rounding noise of the loss, measured where it is checked (:func:`rounding_noise`):
#: its values at ``p + j * (h / RETRY) * v``, j = 0..NOISE_ORDER, along NOISE_DIRECTIONS
#: random unit directions v. The default atol is at least NOISE_MARGIN * noise / step: a
#: central difference's rounding error has a standard deviation of noise / (sqrt(2) h).
NOISE_DIRECTIONS = 5
NOISE_ORDER = 6
NOISE_MARGIN = 8


@dataclass(frozen=True)
class Atol:
    """The absolute tolerance at a central difference's step: the larger of ``floor`` and
    ``ROUNDING * eps * max(|loss|, 1) / step``, what rounding the loss can make of a
    correct gradient (a summed loss of 2,300 in float64 at h = 1e-5 gets 8.2e-7). The
    default atol is ``Atol(DEFAULTS[dtype]["atol"], eps of dtype, loss)``; an atol the
    user gives is ``Atol(atol)``, ``eps`` 0: the same at every step."""

    floor: float
    eps: float = 0.0
    loss: float = 0.0
    noise: float = 0.0  # the loss's rounding noise, measured (rounding_noise)

    def at(self, step: float) -> float:
        return max(self.floor, self.from_loss(step), self.from_noise(step))

    def from_loss(self, step: float) -> float:
        """What rounding a loss of ``loss``'s size can make of a difference at ``step``."""
        return ROUNDING * self.eps * max(abs(self.loss), 1.0) / step

    def from_noise(self, step: float) -> float:
        """What the loss's measured rounding ``noise`` can make of a difference at ``step``."""
        return NOISE_MARGIN * self.noise / step

    def of(self, found: _Numerical, h: float, small: float | None) -> Any:
        """Per element of ``found``'s parameter (float64): the atol at ``h``, and at
        ``small`` for the elements differenced again there (``found.refined``); those
        retried at ``h / RETRY`` keep h's (see ``RETRY``)."""
        xp = namespace_of(found.grad)
        atol = xp.full_like(found.grad, self.at(h), dtype=xp.float64)
        if found.refined is not None and small is not None:
            atol = xp.where(found.refined, xp.full_like(atol, self.at(small)), atol)
        return atol


def rounding_noise(rows: Sequence[Sequence[float]]) -> float:
    """The standard deviation of the rounding in a function's values, from ``rows`` of
    its values at ``NOISE_ORDER + 1`` evenly spaced points a small step apart along a
    direction (Moré and Wild's ECnoise): a smooth function's ``NOISE_ORDER``-th difference
    there is about 0, its rounding's has a standard deviation of sqrt(C(12, 6)) = 30.4
    times the noise. The median of the rows' differences (0.674 standard deviations), so
    that one row across a kink does not count; rows with a value that is not finite are
    left out; 0 for no rows.

    The loss's own size can hide its rounding: a regression fitted to targets of 1e5 has a
    loss of 0.77 but rounds its terms at 1e-11, and its central differences at h = 1e-5
    were off by 6e-7, 60 times the default atol of 1e-8."""
    finite = [np.asarray(row, dtype=np.float64) for row in rows]
    finite = [row for row in finite if np.isfinite(row).all()]
    if not finite:
        return 0.0
    order = len(finite[0]) - 1
    differences = [abs(float(np.diff(row, order)[0])) for row in finite]
    return float(np.median(differences)) / (0.6745 * math.sqrt(math.comb(2 * order, order)))


def within_tolerance(analytic: Any, numerical: Any, atol: Any, rtol: float) -> Any:
    """The checks' pass rule, ``|analytic - numerical| <= atol + rtol * |numerical|``
    (as ``numpy.isclose``): element-wise for arrays, a bool for numbers. NaN never passes;
    an infinity is left to the caller (:func:`compare` and the directional check fail it)."""
    return abs(analytic - numerical) <= atol + rtol * abs(numerical)


def tolerances(
    dtype: str, h: float | None, atol: float | None, rtol: float | None
) -> tuple[float, Atol, float]:
    """``(h, atol, rtol)``: those given, the others ``DEFAULTS`` for ``dtype`` (float64's
    for another dtype), the default atol to grow with the loss at the point checked, once
    known (:class:`Atol`'s ``loss``); ``h`` is checked by :func:`check_step`."""
    defaults = DEFAULTS.get(dtype, DEFAULTS["float64"])
    h = defaults["h"] if h is None else h
    check_step(h, dtype)
    for name, value in (("atol", atol), ("rtol", rtol)):
        # A negative or NaN tolerance fails every element, a correct gradient too.
        if value is not None and not (is_real(value) and value >= 0):
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    eps = float(np.finfo(dtype if dtype in DEFAULTS else "float64").eps)
    return (
        h,
        Atol(defaults["atol"], eps) if atol is None else Atol(atol),
        defaults["rtol"] if rtol is None else rtol,
    )
