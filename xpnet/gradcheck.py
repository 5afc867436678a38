"""Gradient checking: numerical gradients by central differences, compared with backprop.

``numerical_gradient(f, x)`` is the book's central difference,
``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every element ``i``, written against the
Array API: ``f`` receives a perturbed *copy* of ``x`` and must compute its value from
that argument alone.

``check_gradients(net, x, t)`` compares a network's analytic gradients
(``net.gradient``) with numerical ones, parameter by parameter, and returns a
:class:`GradientReport` that prints as a table.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Any

from xpnet.backend import namespace_of

# Tolerances and step per dtype: |analytic - numerical| <= atol + rtol * |numerical|.
DEFAULTS = {
    "float64": {"h": 1e-4, "atol": 1e-6, "rtol": 1e-4},
    "float32": {"h": 1e-2, "atol": 1e-3, "rtol": 1e-2},
}


def numerical_gradient(
    f: Callable[[Any], Any],
    x: Any,
    h: float = 1e-4,
    *,
    indices: Iterable[tuple[int, ...]] | None = None,
) -> Any:
    """Central-difference gradient of the scalar function ``f`` at ``x`` (same shape as ``x``).

    ``f`` is called twice per element of ``x`` with a perturbed copy of ``x``; it may
    return a 0-D array or a Python number. ``x`` is not modified. ``indices`` limits
    the work to some elements (index tuples); the others stay zero.
    """
    xp = namespace_of(x)
    grad = xp.zeros_like(x)
    work = xp.asarray(x, copy=True)
    if indices is None:
        indices = product(*(range(n) for n in x.shape))
    for idx in indices:
        original = x[idx]
        work[idx] = original + h
        f_plus = f(work)
        work[idx] = original - h
        f_minus = f(work)
        work[idx] = original
        grad[idx] = (f_plus - f_minus) / (2 * h)
    return grad


@dataclass(frozen=True)
class ParamCheck:
    """How one parameter's analytic gradient compares with its numerical gradient."""

    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    mean_abs_diff: float
    passed: bool


@dataclass
class GradientReport:
    """The result of :func:`check_gradients`: one :class:`ParamCheck` per parameter."""

    method: str
    h: float
    atol: float
    rtol: float
    dtype: str
    params: list[ParamCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.params)

    def __bool__(self) -> bool:
        return self.passed

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def __str__(self) -> str:
        header = ("param", "shape", "max abs err", "max rel err", "mean abs diff", "result")
        rows = [
            (
                p.name,
                "x".join(map(str, p.shape)) or "scalar",
                f"{p.max_abs_error:.3e}",
                f"{p.max_rel_error:.3e}",
                f"{p.mean_abs_diff:.3e}",
                "ok" if p.passed else "FAIL",
            )
            for p in self.params
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = [
            f"gradient check ({self.method}, {self.dtype}, h={self.h:g}): "
            f"pass when |analytic - numerical| <= {self.atol:g} + {self.rtol:g} * |numerical|",
            "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)


def compare(name: str, analytic: Any, numerical: Any, atol: float, rtol: float) -> ParamCheck:
    """Error statistics of ``analytic`` against ``numerical`` (arrays of one shape)."""
    xp = namespace_of(analytic, numerical)
    diff = xp.abs(analytic - numerical)
    scale = xp.maximum(xp.abs(analytic), xp.abs(numerical))
    tiny = xp.finfo(diff.dtype).smallest_normal
    rel = diff / xp.maximum(scale, xp.full_like(scale, tiny))
    ok = xp.all(diff <= atol + rtol * xp.abs(numerical))
    if math.prod(diff.shape) == 0:
        return ParamCheck(name, tuple(diff.shape), 0.0, 0.0, 0.0, True)
    return ParamCheck(
        name=name,
        shape=tuple(diff.shape),
        max_abs_error=float(xp.max(diff)),
        max_rel_error=float(xp.max(rel)),
        mean_abs_diff=float(xp.mean(diff)),
        passed=bool(ok),
    )


def check_gradients(
    net: Any,
    x: Any,
    t: Any,
    *,
    method: str = "loop",
    h: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    params: Iterable[str] | None = None,
) -> GradientReport:
    """Compare ``net.gradient(x, t)`` with numerical gradients of ``net.loss(x, t)``.

    ``method="loop"`` perturbs one element at a time (the book's method). ``h``,
    ``atol`` and ``rtol`` default by the network's dtype (see ``DEFAULTS``); float64
    is the dtype to check in: float32 rounding swamps the central difference.
    ``params`` restricts the check to some parameter names.
    """
    if method != "loop":
        raise ValueError(f"unknown method {method!r}: expected 'loop'")
    dtype = str(net.dtype)
    if dtype == "float32":
        warnings.warn(
            "checking gradients in float32: expect errors near 1e-3; "
            "build the network with dtype='float64' for a tight check",
            stacklevel=2,
        )
    defaults = DEFAULTS.get(dtype, DEFAULTS["float64"])
    h = defaults["h"] if h is None else h
    atol = defaults["atol"] if atol is None else atol
    rtol = defaults["rtol"] if rtol is None else rtol
    names = list(net.params) if params is None else list(params)
    unknown = [n for n in names if n not in net.params]
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}: the network has {list(net.params)}")
    analytic = net.gradient(x, t)
    numerical = net.numerical_gradient(x, t, h, params=names)
    report = GradientReport(method=method, h=h, atol=atol, rtol=rtol, dtype=dtype)
    report.params = [compare(n, analytic[n], numerical[n], atol, rtol) for n in names]
    return report
