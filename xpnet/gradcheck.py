"""Gradient checking: numerical gradients by central differences, compared with backprop.

``numerical_gradient(f, x)`` is the book's central difference,
``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every element ``i``, written against the
Array API: as the book's, it moves ``x`` itself one element at a time, calls ``f(x)``
and puts the element back, so ``f`` may read ``x`` from its argument or from elsewhere
(the book's ``lambda W: net.loss(x, t)``).

For a network there are three methods (``METHODS``):

- ``"loop"``: the book's loop, two full forward passes per parameter element;
- ``"batched"`` (the default): the same central differences, many at a time, by
  local perturbations (:mod:`xpnet.perturb`): only the layers after the perturbed
  parameter are evaluated, and only the change they see, in chunks that fit a
  memory budget. Parameters the network cannot perturb locally use the loop;
- ``"directional"``: a few random unit directions ``v``, two forward passes each,
  ``(L(p + h v) - L(p - h v)) / 2h`` against the analytic ``grad . v``; a fast
  pass/fail in the spirit of PyTorch's ``gradcheck(fast_mode=True)``, with no
  per-element gradient; where a direction disagrees, or every one crosses a kink and
  disagrees, the element-wise check of ``"batched"`` instead.

ReLU is not differentiable at 0. An element whose perturbation moves some
pre-activation across 0 has a central difference that straddles the kink and can be
wrong by design. One that disagrees with the analytic gradient is differenced again at
a smaller step (:func:`refined_step`), and only one that still straddles a kink there is
reported as a kink and left out of pass/fail (kinks of a layer without a ``kinks``
method are found by one-sided differences), where its one-sided differences show the
kink: else the report is inconclusive; one that agrees is compared as any other,
as is a direction of the directional method. A gradient that is not finite (inf or
nan) is never excused: the parameter (or direction) fails, at a kink too, and the
report says which side (numerical or analytic) has such values.

Every method differentiates the loss that ``net.gradient`` does, the training-mode one,
with the network held still (:mod:`xpnet.held`): Dropout's masks drawn once, from the
check's ``seed``, for every pass, and BatchNorm's running statistics put back at the end.
A loss that still differs between two passes at one point is a ``ValueError``.

``check_gradients(net, x, t, method=...)`` returns a :class:`GradientReport` (or a
:class:`DirectionalReport`) that prints as a table.
"""

from __future__ import annotations

import copy
import math
import os
import re
import sys
import textwrap
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from itertools import product
from typing import Any

import array_api_compat
import numpy as np
from tqdm import tqdm

from xpnet.backend import (
    dtype_name,
    host_rng,
    namespace_of,
    require_finite,
    spread,
    to_device,
    to_like,
    to_numpy,
)
from xpnet.checks import TRANSPOSED_PRODUCT, is_count, is_real
from xpnet.conversion import network_to
from xpnet.held import copy_of, held, layers_of, require_deterministic, same_values
from xpnet.layers import SoftmaxWithLoss, as_one_hot, is_floating_array, walk, walk_from
from xpnet.perturb import (
    LocalNet,
    central_differences,
    crosses_kink,
    loop_differences,
    training_loss,
)
from xpnet.schema import is_number

# Step and tolerances per dtype, for within_tolerance; the default atol is at least
# ``atol``, and grows with the loss (:class:`Atol`).
DEFAULTS = {
    "float64": {"h": 1e-5, "atol": 1e-8, "rtol": 1e-4},
    "float32": {"h": 1e-2, "atol": 1e-3, "rtol": 1e-2},
}
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
METHODS = ("loop", "batched", "directional")
GRADIENT_METHODS = ("loop", "batched")
MEMORY_ENV_VAR = "XPNET_GRADCHECK_MEMORY"
DEFAULT_MEMORY_BUDGET = 64 * 2**20
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


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


def _at_the_point(
    tol: Atol, net: Any, x: Any, t: Any, names: list[str], local: LocalNet | None,
    center: float, h: float, seed: int,
) -> Atol:  # fmt: skip
    """``tol`` for the loss ``center`` at the point checked, and, for the default atol
    (``tol.eps``), that loss's rounding noise there (:func:`_network_noise`)."""
    tol = replace(tol, loss=center)
    if not tol.eps:  # an atol given: the same at every step
        return tol
    return replace(tol, noise=_network_noise(net, x, t, names, local, center, h / RETRY, seed))


def _network_noise(
    net: Any, x: Any, t: Any, names: list[str], local: LocalNet | None, center: float,
    step: float, seed: int,
) -> float:  # fmt: skip
    """:func:`rounding_noise` of ``net``'s training loss at its parameters ``names``, along
    random directions (seeded) that cross no kink of the layers' within ``NOISE_ORDER``
    steps; 0 unless every layer can tell (``local``, :func:`_kinks_known`): a kink that
    none reports, a user's PReLU 2e-7 from it, made a noise that grew the atol to 1.9e-4
    and passed a dW 1% off."""
    if local is None or not all(map(_kinks_known, [*local.layers, net.last_layer])):
        return 0.0
    rng, rows = host_rng(seed + 1), []
    for _ in range(NOISE_DIRECTIONS):
        v = random_direction({n: net.params[n] for n in names}, rng)
        row, moved = [center], []
        for j in range(1, NOISE_ORDER + 1):
            with _moved(net, {n: net.params[n] + (j * step) * v[n] for n in names}):
                row.append(float(training_loss(net, x, t)))
                moved.append(local.inputs_at(local.inputs[0]))
        if not bool(crosses_kink(local.layers, local.inputs, *moved)):
            rows.append(row)
    return rounding_noise(rows)


def _kinks_known(layer: Any) -> bool:
    """Whether ``layer``'s kinks are known: it reports them (``kinks``), or it is one of
    xpnet's own, which have none otherwise; a user's layer may have one it does not report
    (a ReLU inside a residual block of the user's). Asked of :attr:`LocalNet.layers`, in
    which a stack stands replaced by its layers."""
    return hasattr(layer, "kinks") or type(layer).__module__.startswith("xpnet.")


def within_tolerance(analytic: Any, numerical: Any, atol: Any, rtol: float) -> Any:
    """The checks' pass rule, ``|analytic - numerical| <= atol + rtol * |numerical|``
    (as ``numpy.isclose``): element-wise for arrays, a bool for numbers. NaN never passes;
    an infinity is left to the caller (:func:`compare` and the directional check fail it)."""
    return abs(analytic - numerical) <= atol + rtol * abs(numerical)


def values_around(
    f: Callable[[Any], Any],
    x: Any,
    h: float,
    *,
    indices: Iterable[tuple[int, ...]] | None = None,
    in_place: bool = False,
) -> tuple[Any, Any]:
    """``(f(x + h e_i), f(x - h e_i))`` for every element ``i`` of ``x``: two arrays of x's shape.

    ``f`` is called with a perturbed copy of ``x``, or, with ``in_place``, with ``x``
    itself, each element moved and put back as the book does (a copy all the same where
    ``x`` cannot be written, a read-only NumPy array, a tensor that requires grad, or not
    cheaply, a dask array, whose graph would grow by an assignment per element); ``x``
    holds its values again on return, even when ``f`` raises. The values are kept in
    float64, so a float32 ``x`` does not round them. ``indices`` limits the work to some
    elements (index tuples); the others stay zero in both. ``x`` must be a real floating
    array: an integer one cannot move by ``h``.
    """
    xp = namespace_of(x)
    _require_real_floating(x, "x")
    plus = xp.zeros(x.shape, dtype=xp.float64, device=array_api_compat.device(x))
    minus = xp.zeros_like(plus)
    # One copy: the array f is given, or, where x itself is moved, the values it is put
    # back to (x[idx] is a view of x on CuPy and torch).
    work = saved = xp.asarray(x, copy=True)
    if in_place and _writable(x, saved):
        work = x
    else:
        saved = x  # left as it is
    if indices is None:
        indices = product(*(range(n) for n in x.shape))
    for idx in indices:
        original = saved[idx]
        try:
            work[idx] = original + h
            plus[idx] = f(work)
            work[idx] = original - h
            minus[idx] = f(work)
        finally:
            work[idx] = original
    return plus, minus


def _writable(x: Any, values: Any) -> bool:
    """Whether elements of ``x`` can be assigned in place cheaply, tried by writing its first
    element's own value (``values``: a copy of ``x``) back; an empty ``x`` has nothing to
    write, and a lazy one (dask) would record each assignment in its graph, this one too."""
    if math.prod(x.shape) == 0 or array_api_compat.is_lazy_array(x):
        return False
    first = (0,) * x.ndim
    try:
        x[first] = values[first]
    except (ValueError, RuntimeError, TypeError):
        return False
    return True


def _require_real_floating(x: Any, name: str) -> None:
    """Refuse an array ``x`` (called ``name`` in the message) that is not real floating."""
    xp = namespace_of(x)
    if not xp.isdtype(x.dtype, "real floating"):
        raise ValueError(
            f"{name} has dtype {x.dtype}: central differences need a real floating array "
            f"(an integer element cannot move by h); convert it, e.g. xp.astype({name}, xp.float64)"
        )


def numerical_gradient(
    f: Callable[[Any], Any],
    x: Any,
    h: float = 1e-4,
    *,
    indices: Iterable[tuple[int, ...]] | None = None,
) -> Any:
    """Central-difference gradient of the scalar function ``f`` at ``x`` (same shape as ``x``).

    ``f`` is called twice per element of ``x``, with ``x`` itself moved by ``+h`` and
    ``-h`` at that element, as the book's ``numerical_gradient`` does; it may return a
    0-D array or a Python number. Each element is put back after its two calls, so ``x``
    holds its values on return (a read-only or dask ``x`` is moved in a copy instead).
    ``x`` must be a real floating array (ValueError otherwise), of any shape, and ``f``
    scalar-valued (a ValueError naming what it returned otherwise). ``indices`` limits the
    work to some elements (index tuples); the others stay zero. The book's ``h = 1e-4`` is
    for float64: in float32 rounding swamps the differences at that step, with a warning
    saying so, as ``net.numerical_gradient``'s (:func:`check_step`).

    The difference is divided by the step ``x`` actually took, ``(x + h) - (x - h)`` as
    x's dtype rounds the two, not by ``2 h``: in float32, 1000 + 1e-4 is 1000.000122, and
    dividing by 2e-4 would make the gradient 22% too large. A step that rounds away
    entirely (``h`` below half of x's spacing there) is a ``ValueError``.

    So the book's ``f = lambda w: net.loss(x, t)`` with ``numerical_gradient(f, net.W)``
    works: ``f`` ignores its argument and reads the array being moved. A function that
    reads neither (a copy of ``x``, a parameter other than ``x``) gets zeros, with a
    warning when no element moved ``f`` (``f`` is called once more, at ``x``, when the
    gradient is all zeros: at the minimum of ``sum(x**2)``, 0, it is the gradient).
    """
    check_step(h, dtype_name(x), stacklevel=3, alternative="x in float64")
    f = scalar_valued(f, getattr(f, "__name__", type(f).__name__), "numerical_gradient")
    grad, plus, minus = _central(f, x, h, indices, in_place=True)
    xp = namespace_of(x)
    unmoved = indices is None and math.prod(x.shape) and not bool(xp.any(plus != minus))
    if unmoved and bool(xp.all(plus == float(f(x)))):
        warnings.warn(
            f"f returned the same value at x, x + h and x - h for every element of x (shape "
            f"{tuple(x.shape)}), so its numerical gradient is all zeros. numerical_gradient "
            "moves x itself, element by element, and passes it to f, as the book's does: f "
            "depends on neither, reading a copy of x or another array (a network's parameter "
            "other than x, or x converted to another dtype). Compute f from its argument, or "
            "pass the very array f reads (net.params['W1'])",
            stacklevel=2,
        )
    return grad


def scalar_valued(
    f: Callable[[Any], Any], name: str, caller: str, also: str = ""
) -> Callable[[Any], Any]:
    """``f``, refusing with a ``ValueError`` a value that is not a number or a 0-D array:
    ``{caller} needs a scalar function: {name} returned ...``, and ``also`` for advice."""

    def scalar(x: Any) -> Any:
        value = f(x)
        if getattr(value, "ndim", 0) != 0 or not (
            array_api_compat.is_array_api_obj(value) or is_number(value)
        ):
            shape = f"of shape {tuple(value.shape)}" if hasattr(value, "shape") else ""
            raise ValueError(
                f"{caller} needs a scalar function: {name} returned "
                f"{type(value).__name__} {shape}".rstrip()
                + f"; return a number or a 0-D array (e.g. the sum of a loss's terms){also}"
            )
        return value

    return scalar


def central_gradient(
    f: Callable[[Any], Any],
    x: Any,
    h: float = 1e-4,
    *,
    indices: Iterable[tuple[int, ...]] | None = None,
) -> Any:
    """:func:`numerical_gradient` without its warning, for callers whose ``f`` computes from
    its argument, so that a gradient of zeros is the gradient (a bias before BatchNorm)."""
    return _central(f, x, h, indices)[0]


def _central(
    f: Callable[[Any], Any],
    x: Any,
    h: float,
    indices: Iterable[tuple[int, ...]] | None,
    *,
    in_place: bool = False,
) -> tuple[Any, Any, Any]:
    """:func:`central_gradient`, and the values of ``f`` it is made of (:func:`values_around`)."""
    _require_step(h)
    xp = namespace_of(x)
    plus, minus = values_around(f, x, h, indices=indices, in_place=in_place)
    return xp.astype((plus - minus) / _steps_taken(xp, x, h), x.dtype), plus, minus


def steps_of(xp: Any, x: Any, h: float) -> Any:
    """``(x + h) - (x - h)`` element by element, each rounded to x's dtype as the perturbed
    copies are, in float64: the step a central difference at ``x`` takes (0 where ``h``
    rounds away)."""
    return xp.astype(x + h, xp.float64) - xp.astype(x - h, xp.float64)


def _steps_taken(xp: Any, x: Any, h: float) -> Any:
    """:func:`steps_of`, or ``ValueError`` naming the first element where it is 0."""
    steps = steps_of(xp, x, h)
    if bool(xp.any(steps == 0)):
        value = float(xp.reshape(x, (-1,))[int(xp.argmin(xp.reshape(steps, (-1,))))])
        fix = (
            " (an x this large in float64 often means a descent that diverged: a smaller "
            "learning rate)"
            if x.dtype == xp.float64
            else ", or x in float64"
        )
        raise ValueError(
            f"the step h={h:g} rounds away at x={value:g} in {dtype_name(x)}: x + h and x - h "
            f"are both x there; use a larger h{fix}"
        )
    return steps


def memory_budget(value: int | str | None = None) -> int:
    """The working-memory budget of the batched method, in bytes.

    ``value``, else the ``XPNET_GRADCHECK_MEMORY`` environment variable, else 64 MiB.
    Strings may carry a binary unit: ``"512K"``, ``"64MiB"``, ``"1G"``.
    """
    if value is None:
        value = os.environ.get(MEMORY_ENV_VAR, DEFAULT_MEMORY_BUDGET)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*", value.lower())
        if match is None:
            raise ValueError(
                f"memory budget {value!r} (argument or {MEMORY_ENV_VAR}) is not a size: "
                "expected bytes, optionally with a unit, e.g. 65536, 512K, 64MiB, 1G"
            )
        value = int(float(match[1]) * _UNITS[match[2]])
    if value < 1:
        raise ValueError(f"memory budget must be positive, got {value}")
    return int(value)


def _check_method(method: str, valid: tuple[str, ...]) -> None:
    if method not in valid:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(valid)}")


def _param_names(net: Any, params: Iterable[str] | None) -> list[str]:
    """The parameter names to work on: ``params``, or all of the network's for None.

    Refuses unknown names and an empty selection (there would be nothing to check); one
    name may come as a string.
    """
    if isinstance(params, str):
        params = [params]
    names = list(net.params) if params is None else list(params)
    unknown = [n for n in names if n not in net.params]
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}: the network has {list(net.params)}")
    if not names and params is not None:
        raise ValueError(
            f"params is empty ({params!r}): nothing to check; name some of the network's "
            f"parameters {list(net.params)}, or pass None for all of them"
        )
    if not names:
        raise ValueError(f"{type(net).__name__} has no parameters: nothing to check")
    return names


@dataclass
class _Numerical:
    grad: Any
    kinks: Any  # bool array of the parameter's shape, or None when not known
    via: str  # "local" (batched) or "loop"
    refined: Any = None  # bool, the elements differenced again at the smaller step
    retried: Any = None  # bool, the failing elements differenced again at h / RETRY


def _numerical(
    net: Any,
    x: Any,
    t: Any,
    names: list[str],
    *,
    method: str,
    h: float,
    budget: int | str | None,
    local: LocalNet | None,
    among: Mapping[str, Any] | None = None,
    done: Callable[[int], None] | None = None,
) -> dict[str, _Numerical]:
    """Numerical gradients of the parameters ``names``, with their kinks where ``local``
    (:meth:`LocalNet.of` the network) is given. ``among`` (name -> bool array of the
    parameter's shape, :func:`sample_elements`) limits a parameter's work to those
    elements; the others are 0 and no kink. ``done(n)`` is called as elements are done,
    where given (:func:`progress_bar`)."""
    budget = memory_budget(budget)
    among = among or {}
    out = {}
    for name in names:
        how = how_differenced(local, name, method)
        mask = among.get(name)
        if how == "local":
            found = central_differences(local, name, h, budget, mask, done)
            out[name] = _Numerical(*found, "local")
        elif how == "loop-inputs":
            out[name] = _Numerical(*_looped(local, name, h, mask, done), "loop")
        else:
            kinks = None
            if how == "loop+kinks":
                kinks = central_differences(local, name, h, budget, mask)[1]
            if how == "loop" and mask is None:  # not layered: the network's own loop
                grad = net.numerical_gradient(x, t, h, params=[name])[name]
                if done is not None:
                    done(math.prod(grad.shape))
            else:
                grad = _loop_of(net, x, t, name, h, mask, done)
            out[name] = _Numerical(grad, kinks, "loop")
    return out


def _loop_of(
    net: Any, x: Any, t: Any, name: str, h: float, mask: Any,
    done: Callable[[int], None] | None,
) -> Any:  # fmt: skip
    """The book's loop over the elements ``mask`` of parameter ``name`` (bool, its shape;
    None for all), moving the parameter itself as the book's ``numerical_gradient`` does
    (a network's layers may hold it), the training loss taken by ``net.loss_at`` where the
    network has it (:func:`_loss_at`); ``done(1)`` after each element."""
    elements = None if mask is None else _indices(mask)
    calls = 0

    def loss(p: Any) -> Any:
        nonlocal calls
        value = _loss_at(net, name, p, x, t)
        calls += 1
        if done is not None and calls % 2 == 0:  # two calls an element
            done(1)
        return value

    return _central(loss, net.params[name], h, elements, in_place=True)[0]


@contextmanager
def progress_bar(progress: Any, total: int, unit: str) -> Iterator[Callable[[int], None]]:
    """Yields ``done(n)``, to call as ``n`` more of ``total`` ``unit``s of a check are done
    (from any thread): a tqdm bar on stderr for ``progress`` True (None: when stderr is a
    terminal, after the check has run for a second, so that a quick one draws nothing;
    False: none), or, for a callable, ``progress(done, total)``."""
    bar = tqdm(
        total=total,
        desc="gradient check",
        unit=unit,
        leave=False,
        file=sys.stderr,
        disable=True if callable(progress) else (None if progress is None else not progress),
        delay=1.0 if progress is None else 0.0,
    )
    count, lock = 0, threading.Lock()

    def done(n: int) -> None:
        nonlocal count
        with lock:
            count += n
            bar.update(n)
            if callable(progress):
                progress(count, total)

    try:
        yield done
    finally:
        bar.close()


def _indices(mask: Any) -> list[tuple[int, ...]]:
    """The indices of the true elements of the bool array ``mask``, as index tuples."""
    return [tuple(int(i) for i in idx) for idx in np.argwhere(to_numpy(mask))]


def _looped(
    local: LocalNet, name: str, h: float, mask: Any, done: Callable[[int], None] | None = None
) -> tuple[Any, Any]:
    """:func:`~xpnet.perturb.loop_differences` of the elements ``mask`` (bool, the
    parameter's shape; None for all) of ``name`` at ``h``: the gradient and kinks in the
    parameter's shape, 0 and no kink elsewhere; ``done(1)`` after each element."""
    if mask is None:
        return loop_differences(local, name, h, done=done)
    xp = namespace_of(mask)
    values, kinked = loop_differences(local, name, h, _indices(mask), done=done)
    flat = xp.reshape(mask, (-1,))
    return tuple(xp.reshape(spread(a, flat), mask.shape) for a in (values, kinked))


def sample_elements(
    net: Any, names: Iterable[str], max_elements: int | None, seed: int
) -> dict[str, Any]:
    """``name -> bool array`` of the parameter's shape, on its device, marking
    ``max_elements`` of its elements drawn without replacement, for each parameter of
    ``names`` that has more; empty for ``max_elements`` None. Each parameter's elements
    come from a NumPy generator of its own on the host, seeded with ``seed`` and the
    parameter's position in ``net.params``: the same elements on every backend, whichever
    other parameters are checked."""
    if max_elements is None:
        return {}
    host_rng(seed)  # refuses a bad seed
    position = {name: k for k, name in enumerate(net.params)}
    out = {}
    for name in names:
        param = net.params[name]
        size = math.prod(param.shape)
        if size > max_elements:
            every = np.ones(param.shape, dtype=bool)
            mask = _sample_of(every, max_elements, [seed, position[name]])
            device = array_api_compat.device(param)
            out[name] = to_device(mask, xp=namespace_of(param), device=device)
    return out


def how_differenced(local: LocalNet | None, name: str, method: str) -> str:
    """How the central differences of parameter ``name`` are computed for ``method``.

    ``"local"``: local perturbations (``batched``, where the layers allow them);
    ``"loop+kinks"``: the book's loop (``net.loss``), with the kinks from local
    perturbations; ``"loop-inputs"``: :func:`xpnet.perturb.loop_differences`, the loop
    through the layers, which finds the kinks on its way; ``"loop"``: the book's loop
    alone, when the network is not layered as :mod:`xpnet.perturb` assumes (``local`` None).
    """
    if local is None:
        return "loop"
    if not local.is_local(name):
        return "loop-inputs"
    return "local" if method == "batched" else "loop+kinks"


def net_numerical_gradient(
    net: Any,
    x: Any,
    t: Any,
    *,
    method: str = "batched",
    h: float = 1e-4,
    params: Iterable[str] | None = None,
    memory_budget: int | str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Central-difference gradients of ``net.loss(x, t)``: ``{name: array}`` per parameter.

    ``method="loop"`` runs ``net.numerical_gradient`` (two forward passes per
    element). ``method="batched"`` computes the same differences through local
    perturbations (:mod:`xpnet.perturb`), in chunks whose working memory stays within
    ``memory_budget`` bytes (default: ``XPNET_GRADCHECK_MEMORY`` or 64 MiB; one
    forward pass of cached layer inputs and the gradients themselves come on top).
    Parameters the network cannot perturb locally (a layer from theirs on without
    the hooks, a ``loss`` that is not the layers' plus weight decay) fall back to the
    loop. ``params`` limits the work to some parameter names (default: all).

    The loss is the training-mode one that ``net.gradient`` differentiates, with the
    network held still (:mod:`xpnet.held`): Dropout masks drawn once, from ``seed``, for
    every pass; BatchNorm's running statistics as they were at the end. A loss that still
    differs between two passes at one point is a ``ValueError``.
    """
    _check_method(method, GRADIENT_METHODS)
    names = _param_names(net, params)
    with _held_for_checking(net, x, t, seed) as (t, _):
        local = LocalNet.of(net, x, t) if method == "batched" else None
        found = _numerical(net, x, t, names, method=method, h=h, budget=memory_budget, local=local)
    return {name: found[name].grad for name in names}


def _targets_once(net: Any, x: Any, t: Any) -> Any:
    """``t`` as the rows that ``net``'s :class:`~xpnet.layers.SoftmaxWithLoss` makes of
    integer labels, their range checked here, once: the layer checks it in every forward
    pass (two host reads, each a device synchronize), and a check makes two passes per
    parameter element. Other targets, and other losses, are returned as they are."""
    if not isinstance(getattr(net, "last_layer", None), SoftmaxWithLoss):
        return t
    if not array_api_compat.is_array_api_obj(t) or t.ndim != 1:
        return t
    predict = getattr(net, "predict", None)
    if not callable(predict) or not namespace_of(t).isdtype(t.dtype, "integral"):
        return t
    return as_one_hot(t, predict(x))  # evaluation mode: no draw, no running statistics


def decoy(a: Any, *, pulled: bool = True) -> Any:
    """``a`` with its samples in reverse order (axis 0), for :func:`gradient_after_decoy`,
    and, where ``pulled`` and ``a`` is floating, each pulled halfway to the first of them:
    a batch's mean and spread are those of any order of its samples, and a backward reading
    them from a previous call (a BatchNorm of the user's caching its std) went unseen; the
    samples stay within the batch's range. Anything that is not an array of at least one
    axis is returned as it is."""
    if not array_api_compat.is_array_api_obj(a) or a.ndim == 0:
        return a
    xp = namespace_of(a)
    reversed_ = xp.flip(a, axis=0)
    if not pulled or not xp.isdtype(a.dtype, "real floating"):
        return reversed_
    return (reversed_ + reversed_[:1, ...]) / 2


def gradient_after_decoy(net: Any, x: Any, t: Any) -> dict[str, Any]:
    """``net.gradient(x, t)`` right after a training-mode pass on the :func:`decoy` of the
    batch (its targets only reversed, so that they stay targets).

    Every other pass of a check is at ``x`` too, so a backward that reads the input cached
    by the *previous* forward call (a stale cache) would give the right gradient there and
    wrong ones in training; after the decoy pass it gives wrong ones here as well. (A batch
    of one sample, or of identical samples, is its own decoy: such a bug goes unseen.)
    The network is held (:func:`_held_for_checking`): the decoy's Dropout masks are the
    check's, BatchNorm's running statistics are put back."""
    _decoy_pass(net, x, t)
    return net.gradient(x, t)


def in_place_writes(net: Any, x: Any, t: Any) -> list[str]:
    """What the layers of ``net`` wrote into the arrays they were given, in one
    ``net.gradient(x, t)``: a line per layer (the innermost, where layers are made of
    layers) whose ``forward`` changed a floating input or whose ``backward`` changed its
    ``dout`` or an array the layer holds (its cached input; gradients such as ``dW`` are
    its own to write). Such a write corrupts the gradients of the layers before it, which
    the check then blames, when another layer still holds the array (a cached output, the
    ``dout`` of a residual block's skip path). See :func:`writes_during`."""
    return writes_during(layers_of(net), lambda: net.gradient(x, t))


def writes_during(layers: list[Any], run: Callable[[], Any]) -> list[str]:
    """What ``layers`` wrote into the arrays they were given while ``run()`` ran, a line
    per layer as :func:`in_place_writes` says. Each layer's methods are wrapped on the
    instance for the run, and unwrapped after (a layer without a ``__dict__``, its class's
    ``__slots__``, is not watched); a copy of each array given costs one pass's memory."""
    found: dict[int, str] = {}

    def watched(layer: Any, method: str) -> Callable[..., Any]:
        call = getattr(layer, method)
        inner = {id(below) for _, below in walk_from("", layer)} - {id(layer)}

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = [(a, copy_of(a)) for a in args if is_floating_array(a)]
            cached = _cached_arrays(layer) if method == "backward" else {}
            out = call(*args, **kwargs)
            if any(not same_values(namespace_of(a), c, a) for a, c in given):
                what = "its input" if method == "forward" else "the dout it was given"
            else:
                written = [
                    name
                    for name, (a, c) in cached.items()
                    if vars(layer).get(name) is a and not same_values(namespace_of(a), c, a)
                ]
                what = f"the array it cached as {', '.join(written)}" if written else None
            # A layer made of layers whose inner layer wrote is not named: the innermost
            # call returns first.
            if what and id(layer) not in found and not inner & found.keys():
                found[id(layer)] = f"{type(layer).__name__}.{method} wrote into {what}"
            return out

        return wrapper

    layers = [layer for layer in layers if hasattr(layer, "__dict__")]
    own = [
        {m: vars(layer)[m] for m in ("forward", "backward") if m in vars(layer)} for layer in layers
    ]
    try:
        for layer in layers:
            for method in ("forward", "backward"):
                setattr(layer, method, watched(layer, method))
        run()
    finally:
        for layer, methods in zip(layers, own, strict=True):
            for method in ("forward", "backward"):
                vars(layer).pop(method, None)
            vars(layer).update(methods)
    return list(dict.fromkeys(found.values()))


def floating_attributes(layer: Any) -> dict[str, tuple[Any, Any]]:
    """``name -> (array, a copy of it)`` for the floating array attributes of ``layer``."""
    return {
        name: (value, copy_of(value))
        for name, value in getattr(layer, "__dict__", {}).items()
        if is_floating_array(value)
    }


def _cached_arrays(layer: Any) -> dict[str, tuple[Any, Any]]:
    """:func:`floating_attributes` of ``layer`` but for the gradients it may write into
    (``dW`` beside ``W``)."""
    return {
        name: pair
        for name, pair in floating_attributes(layer).items()
        if not (name[:1] == "d" and name[1:] in vars(layer))
    }


def _decoy_pass(net: Any, x: Any, t: Any) -> None:
    """A training-mode pass of ``net`` on the :func:`decoy` of a batch of several samples."""
    if getattr(x, "ndim", 0) and x.shape[0] > 1:
        training_loss(net, decoy(x), decoy(t, pulled=False))


@contextmanager
def _held_for_checking(net: Any, x: Any, t: Any, seed: int) -> Iterator[tuple[Any, float]]:
    """What every check of a network does first: the network held still
    (:func:`xpnet.held.held`), a pass on the :func:`decoy` of the batch before any other,
    integer labels made one-hot rows once (:func:`_targets_once`), and its training loss
    refused unless two passes agree. Yields the targets to use and that
    loss at the unmoved parameters (the centre of one-sided differences)."""
    with held(layers_of(net), seed):
        _decoy_pass(net, x, t)  # first: a backward reading what the first call cached fails
        t = _targets_once(net, x, t)
        loss = require_deterministic(
            lambda: training_loss(net, x, t), f"{type(net).__name__}'s loss"
        )
        yield t, loss


@dataclass(frozen=True)
class ParamCheck:
    """How one parameter's analytic gradient compares with its numerical gradient.

    The error statistics and ``passed`` leave out the ``kinks`` elements (None when
    kinks were not looked for); ``kink_max_abs_error`` is the largest error among
    them and ``kink_elements`` their indices. ``via`` says how the numerical
    gradient was computed (``"local"`` or ``"loop"``). ``nonfinite_analytic`` and
    ``nonfinite_numerical`` count the elements where that gradient is inf or nan: any
    makes the parameter fail (at a kink too), and the statistics leave them out.
    ``failing_elements`` are the indices of every element that fails (as ``np.argwhere``
    gives them: those ``failing`` counts, and the non-finite ones). ``unexplained_kinks``
    counts the failing elements at reported kinks whose one-sided differences show no kink
    (of a sample of them, when more than ``ONE_SIDED_LIMIT``): they do not pass the
    parameter, which is ``inconclusive`` where nothing else fails. ``sampled`` is how many
    elements were checked when only a random sample of them was (``max_elements`` of
    :func:`check_gradients`; None: all of them): the counts, statistics and indices are
    those of the sample.
    """

    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    mean_abs_diff: float
    passed: bool
    kinks: int | None = None
    kink_max_abs_error: float = 0.0
    kink_elements: tuple[tuple[int, ...], ...] = ()
    via: str = ""
    nonfinite_analytic: int = 0
    nonfinite_numerical: int = 0
    refined: int = 0
    retried: int = 0
    converged: int = 0  # of the retried: compared with the limit their error fell towards
    factor: float | None = None  # a failing analytic gradient = factor * numerical
    failing: int = 0  # finite elements clear of kinks that fail
    worst: tuple[int, ...] | None = None  # the failing one with the largest error
    worst_analytic: float = 0.0
    worst_numerical: float = 0.0
    # (slope of f, analytic . v) along v moving every kink at once to its matched side,
    # where they disagree (kinks_together: tied maxima)
    kinks_together: tuple[float, float] | None = None
    # the other arrays whose kinks moved with this one's there (check_layer's inputs)
    together_with: tuple[str, ...] = ()
    transposed: bool = False  # a failing square 2-D analytic gradient = numerical.T
    flipped: bool = False  # a failing conv kernel's analytic gradient = numerical rotated 180°
    failing_elements: tuple[tuple[int, ...], ...] = ()
    sampled: int | None = None
    # failing elements excused as reported kinks whose one-sided differences show none
    unexplained_kinks: int = 0

    @property
    def inconclusive(self) -> bool:
        """Whether nothing fails but elements excused as kinks that their one-sided
        differences do not explain (``unexplained_kinks``): neither passed nor failed."""
        return (
            bool(self.unexplained_kinks)
            and not self.failing_elements
            and self.kinks_together is None
        )

    @property
    def all_kinks(self) -> bool:
        """Whether every element of the parameter checked (of its sample, with
        ``sampled``) straddles a kink, so none was compared."""
        checked = math.prod(self.shape) if self.sampled is None else self.sampled
        return bool(self.kinks) and self.kinks == checked

    @property
    def unchecked(self) -> bool:
        """Whether nothing tested this parameter's gradient: every element straddles a kink,
        and neither its kinks moved together nor non-finite values failed it."""
        nonfinite = self.nonfinite_analytic or self.nonfinite_numerical
        return self.all_kinks and self.kinks_together is None and not nonfinite

    def nonfinite_notes(self) -> list[str]:
        """One line per gradient of this parameter that has inf or nan values, saying why."""
        notes = []
        if self.nonfinite_numerical:
            notes.append(
                f"{self.name}: the numerical gradient has {self.nonfinite_numerical} non-finite "
                "value(s) (inf or nan): the function overflows or is undefined a step h "
                "away; try a smaller h"
            )
        if self.nonfinite_analytic:
            notes.append(
                f"{self.name}: the analytic gradient has {self.nonfinite_analytic} non-finite "
                "value(s) (inf or nan): backward computed them"
            )
        return notes

    def worst_note(self) -> str | None:
        """Where a failing parameter fails most: how many elements fail, the worst one's
        index and both gradients there (None when no finite element fails)."""
        if self.worst is None:
            return None
        where = f"[{', '.join(map(str, self.worst))}]" if self.worst else ""
        of = math.prod(self.shape) if self.sampled is None else f"{self.sampled} sampled"
        return (
            f"{self.name}: {self.failing} of {of} elements fail; worst "
            f"{self.name}{where}: analytic {self.worst_analytic:.6g}, numerical "
            f"{self.worst_numerical:.6g}"
        )

    def kinks_together_note(self) -> str | None:
        """What kinks that each match a side, but disagree moved together, say (None
        otherwise)."""
        if self.kinks_together is None:
            return None
        slope, claimed = self.kinks_together
        names = ", ".join(sorted((self.name, *self.together_with)))
        whose = f"the kinks of {names}" if self.together_with else f"{self.name}'s kinks"
        return (
            f"{names}: {whose} each match a one-sided difference, but moved together, each "
            f"to the side its gradient matches, f changes at a slope of {slope:.6g} where "
            f"their gradients add up to {claimed:.6g}: a gradient given in full to each of "
            "several tied maxima? Route it to one of them (or split it)"
        )

    def transposed_note(self) -> str | None:
        """What a failing square gradient that is the numerical one transposed says (None
        otherwise)."""
        if not self.transposed:
            return None
        return (
            f"{self.name}: the analytic gradient is the numerical one transposed "
            f"({TRANSPOSED_PRODUCT})"
        )

    def flipped_note(self) -> str | None:
        """What a failing kernel gradient (FN, C, FH, FW) that is the numerical one flipped
        in its last two axes says (None otherwise)."""
        if not self.flipped:
            return None
        return (
            f"{self.name}: the analytic gradient is the numerical one flipped in its last two "
            "axes (rotated 180 degrees): a kernel flipped in one pass and not in the other (a "
            "true convolution against a forward that cross-correlates, as im2col does)?"
        )

    def factor_note(self, batch: int | None = None) -> str | None:
        """What a failing gradient off by one factor in every element says (None otherwise);
        where that factor is the ``batch`` size or its inverse (within 1%), a division by it
        missing from backward, or one too many."""
        if self.factor is None:
            return None
        if abs(self.factor + 1) < 1e-3:
            return f"{self.name}: the analytic gradient has the opposite sign in every element"
        note = (
            f"{self.name}: the analytic gradient is {self.factor:.4g} times the numerical one "
            "in every element: off by a constant factor"
        )
        sizes = (batch, 1 / batch) if batch is not None and batch > 1 else ()
        if any(math.isclose(self.factor, k, rel_tol=0.01) for k in sizes):
            note += f", the batch size of {batch} (a division by it missing from backward, or "
            note += "one too many?)"
        return note


class _Displayed:
    """A report's display: a one-line ``repr`` (a plain REPL, a list of reports), and in
    IPython or Jupyter the table that ``print`` gives."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._summary()}>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # The table at a cell's top level; inside a list or a dict, whose printer's stack
        # holds the container too, the one line a plain REPL shows.
        nested = len(getattr(p, "stack", ())) > 1
        p.text(repr(self) if cycle or nested else str(self))

    def _summary(self) -> str:
        raise NotImplementedError


def _wrapped(note: str) -> list[str]:
    """A report's note as lines of at most 88 characters, the later ones indented."""
    return textwrap.wrap(note, width=88, subsequent_indent="  ")


def _counted(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


@dataclass(repr=False)
class GradientReport(_Displayed):
    """The result of :func:`check_gradients`: one :class:`ParamCheck` per parameter.

    It passes when every parameter passes, there is at least one, and one at least was
    tested: a check in which each parameter's gradients are within the atol
    (``unresolved_params``; ``unresolved`` when all are) or has every element on a kink
    (``not_compared``) would pass a wrong gradient too, so it is ``inconclusive``,
    neither passed nor failed, and the report is falsy. So is one in which nothing fails
    but elements excused as kinks that their one-sided differences do not explain
    (:attr:`ParamCheck.inconclusive`).
    """

    method: str
    h: float
    atol: float
    rtol: float
    dtype: str
    params: list[ParamCheck] = field(default_factory=list)
    subject: str = ""  # what was checked, when not a network ("layer Affine", "function f")
    notes: list[str] = field(default_factory=list)  # what was left unchecked, and why
    unresolved: bool = False  # the atol is as large as every parameter's gradients
    unresolved_params: list[str] = field(default_factory=list)  # as large as theirs
    batch: int | None = None  # the batch size, where known: the factor notes name it
    # pairs of failing arrays of one shape, each one's analytic gradient the other's numerical
    swapped: list[tuple[str, str]] = field(default_factory=list)
    # a layer's attributes that backward gave gradients (dW) but its params does not name
    undeclared: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.params) and all(p.passed for p in self.params) and not self.inconclusive

    @property
    def inconclusive(self) -> bool:
        """Whether no parameter fails and either one has kinks that nothing explains
        (:attr:`ParamCheck.inconclusive`) or none was tested: each one's gradients are
        within the atol, or every element of it is on a kink (not compared)."""
        untested = {*self.unresolved_params, *self.not_compared}
        return (
            bool(self.params)
            and all(p.passed or p.inconclusive for p in self.params)
            and (
                self.unresolved
                or any(p.inconclusive for p in self.params)
                or all(p.name in untested for p in self.params)
            )
        )

    @property
    def not_compared(self) -> list[str]:
        """The parameters whose every element straddles a kink and that nothing else tested
        (:attr:`ParamCheck.unchecked`): none of their elements was compared."""
        return [p.name for p in self.params if p.unchecked]

    @property
    def sampled(self) -> list[ParamCheck]:
        """The parameters of which only a random sample of elements was checked."""
        return [p for p in self.params if p.sampled is not None]

    def __bool__(self) -> bool:
        return self.passed

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data; each parameter's ``failing_elements`` left out (a
        wrong gradient fails every element: the count is ``failing``)."""
        out = {**asdict(self), "passed": self.passed, "inconclusive": self.inconclusive}
        for check in out["params"]:
            del check["failing_elements"]
        return out

    def note_atol(self, tol: Atol, largest: Mapping[str, float]) -> None:
        """Say what the atol ``tol`` at ``h`` leaves unresolved. A default atol grown above
        its floor becomes the report's atol, with a note saying why. The verdict says
        nothing was resolved when the atol, grown or not, is as large as the ``largest``
        numerical derivative of every parameter (name: value), or names the parameters
        whose derivatives it is as large as: a wrong gradient of theirs passes (b's, twice
        off, beside a's 1e4 times larger; or gradients of 1e-9 under the floor of 1e-8)."""
        grown = tol.at(self.h) > tol.floor
        if grown:
            self.atol = tol.at(self.h)
            self.notes.append(_atol_note(tol, self.h, max(largest.values(), default=0.0)))
        self.unresolved_params = [n for n, v in largest.items() if _unresolved(tol, self.h, v)]
        if not grown:
            # Under the floor, gradients within the loss's rounding (a bias before
            # BatchNorm, whose gradient is 0) are only compared with 0, which a note says.
            # An atol of the user's knows no rounding: nothing is said.
            rounding = max(tol.from_loss(self.h), tol.from_noise(self.h))
            within = {n: v for n, v in largest.items() if v <= rounding}
            if within:
                self.notes.append(_rounding_note(self.h, rounding, within))
            if self.unresolved_params:
                what = f"the numerical gradients of {', '.join(self.unresolved_params)}"
                above = max(largest[n] for n in self.unresolved_params)
                self.notes.append(_floor_note(self.atol, rounding, what, above))
        self.unresolved = bool(largest) and len(self.unresolved_params) == len(largest)

    def __str__(self) -> str:
        header = (
            "param",
            "shape",
            "via",
            "max abs err",
            "max rel err",
            "mean abs diff",
            "kinks",
            "kink max err",
            "result",
        )
        rows = [
            (
                p.name,
                "x".join(map(str, p.shape)) or "scalar",
                p.via,
                f"{p.max_abs_error:.3e}",
                f"{p.max_rel_error:.3e}",
                f"{p.mean_abs_diff:.3e}",
                "-" if p.kinks is None else str(p.kinks),
                f"{p.kink_max_abs_error:.3e}" if p.kinks else "-",
                _param_result(p),
            )
            for p in self.params
        ]
        if self.sampled:
            header = (*header[:3], "checked", *header[3:])
            rows = [(*r[:3], _checked(p), *r[3:]) for r, p in zip(rows, self.params, strict=True)]
        lines = [
            f"gradient check{' of ' + self.subject if self.subject else ''} "
            f"({self.method}, {self.dtype}, h={self.h:g}): "
            f"pass when |analytic - numerical| <= {self.atol:g} + {self.rtol:g} * |numerical|",
            *_table(header, rows),
        ]
        if any(p.kinks for p in self.params):
            lines += [
                "kinks: elements whose central difference straddles a kink (ReLU's at 0, a max",
                "  that changes hands) and disagrees with the analytic gradient; they are left",
                "  out of the errors and of pass/fail, and 'kink max err' is their largest",
                "  |analytic - numerical| (an element across a kink that agrees anyway is",
                "  compared as any other; one whose one-sided differences show no kink is",
                "  'unexplained kinks': INCONCLUSIVE)",
            ]
        if any(p.kinks is None for p in self.params):
            lines.append("kinks '-': not looked for (the network is not layered as assumed)")
        if self.sampled:
            lines += _wrapped(
                "checked: elements sampled at random (max_elements), the same on every "
                "backend for a seed; the errors, kinks and result are the sample's, and a "
                "wrong gradient in the elements left out passes"
            )
        if any(p.passed and p.max_rel_error > self.rtol for p in self.params):
            lines += [
                "max rel err: |analytic - numerical| / max(|analytic|, |numerical|), CS231n's",
                "  relative error; it exceeds rtol where both are near 0, and such an element",
                f"  passes by atol ({self.atol:g})",
            ]
        unchecked = self.not_compared
        if unchecked:
            lines += [
                f"not compared (all kinks): {', '.join(unchecked)}: every element's central",
                "  difference straddles a kink, so the gradient went unchecked (it passes for",
                "  want of a test, unless nothing else was: INCONCLUSIVE); check it at other",
                "  inputs or parameter values (a bias of",
                "  exactly 0 before ReLU sits on the kink at every blank input, and so does",
                "  BatchNorm before ReLU on one sample or on a feature constant in the batch)",
            ]
        retried = [f"{p.name} {p.retried}" for p in self.params if p.retried]
        if retried:
            lines += _wrapped(
                f"retried: elements that failed at h={self.h:g} clear of kinks "
                f"({', '.join(retried)}) were differenced again at h={self.h / RETRY:g} and "
                f"compared there, with the same atol: a truncation error falls {RETRY**2}-fold, "
                "the error of a wrong gradient stays"
            )
        converged = [f"{p.name} {p.converged}" for p in self.params if p.converged]
        if converged:
            lines += _wrapped(
                f"converged: retried elements whose error fell in proportion to the step "
                f"({', '.join(converged)}; at h={self.h:g}, {self.h / RETRY:g} and "
                f"{self.h / RETRY**2:g}: a second derivative that jumps there, as x * |x|'s "
                "at 0) were compared with the limit of their differences"
            )
        explained = dict.fromkeys(  # kinks moved together across arrays: one note
            note
            for p in self.params
            for note in (
                p.worst_note(),
                p.kinks_together_note(),
                p.factor_note(self.batch),
                p.transposed_note(),
                p.flipped_note(),
            )
            if note
        )
        for note in explained:
            lines += _wrapped(note)
        for a, b in self.swapped:
            lines += _wrapped(
                f"{a}, {b}: each analytic gradient matches the other's numerical one: swapped?"
            )
        notes = [note for p in self.params for note in p.nonfinite_notes()]
        if notes:
            lines += [*notes, "non-finite values fail, at a kink too; the errors leave them out"]
        lines += self.notes
        if not self.params:
            lines.append("nothing was checked")
        lines.append(self.verdict())
        return "\n".join(lines)

    def _summary(self) -> str:
        subject = f"of {self.subject} " if self.subject else ""
        return (
            f"{subject}{self.verdict()}: {_counted(len(self.params), 'param')}, "
            f"{self.method}, {self.dtype}"
        )

    def verdict(self) -> str:
        """The report's last line: PASSED, FAILED or INCONCLUSIVE (nothing failed, but kinks
        went unexplained or nothing was tested), and what a pass leaves unchecked."""
        unexplained = [f"{p.name} {p.unexplained_kinks}" for p in self.params if p.inconclusive]
        if self.inconclusive and unexplained:
            return (
                f"INCONCLUSIVE (elements excused as kinks that their one-sided differences do "
                f"not explain: {', '.join(unexplained)})"
            )
        if self.inconclusive and (self.unresolved or not self.not_compared):
            return "INCONCLUSIVE (the atol is as large as the gradients: nothing was resolved)"
        if self.inconclusive and not self.unresolved_params:
            return "INCONCLUSIVE (every element is on a kink: nothing was compared)"
        if self.inconclusive:
            return (
                f"INCONCLUSIVE (nothing was tested: {', '.join(self.not_compared)} not compared, "
                f"on kinks; the atol as large as the gradients of "
                f"{', '.join(self.unresolved_params)})"
            )
        verdict = "PASSED" if self.passed else "FAILED"
        if self.passed and self.not_compared:
            verdict += f" (but {', '.join(self.not_compared)} not compared)"
        if self.passed and self.unresolved_params:
            verdict += (
                f" (but the atol is as large as the gradients of "
                f"{', '.join(self.unresolved_params)}: they were not resolved)"
            )
        if self.passed and self.undeclared:
            verdict += f" (but {', '.join(self.undeclared)} not checked: not in params)"
        if self.passed and self.sampled:
            verdict += (
                " (on sampled elements only: "
                + ", ".join(f"{p.name} {_checked(p)}" for p in self.sampled)
                + ")"
            )
        return verdict


def _checked(p: ParamCheck) -> str:
    """How many of the parameter's elements were checked: ``all``, or ``100 of 78,400``."""
    return "all" if p.sampled is None else f"{p.sampled:,} of {math.prod(p.shape):,}"


def _param_result(p: ParamCheck) -> str:
    if p.nonfinite_analytic or p.nonfinite_numerical:
        return "FAIL (non-finite)"
    if p.kinks_together is not None:
        return "FAIL (kinks together)"
    if p.inconclusive:
        return "unexplained kinks"
    if p.unchecked:
        return "not compared (all kinks)"
    return "ok" if p.passed else "FAIL"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]


# An analytic gradient within this fraction of the gap between the one-sided differences
# of one of them is taken to sit on that side of a kink.
KINK_SIDE = 0.1
# Failing elements of one parameter, not flagged by the layers' kinks methods, that are
# tested for a kink by one-sided differences; more is a wrong gradient, not kinks.
ONE_SIDED_LIMIT = 64


def straddles_kink(
    analytic: Any, plus: Any, center: Any, minus: Any, h: float, atol: float, rtol: float,
    half: tuple[Any, Any] | None = None,
) -> Any:  # fmt: skip
    """Where the central difference straddles a kink, found from the one-sided differences
    ``(f(x + h) - f(x)) / h`` and ``(f(x) - f(x - h)) / h`` (arrays or 0-D, broadcasting):
    the central difference fails, the two one-sided ones differ by more than the tolerance,
    and ``analytic`` agrees with one of them (within ``KINK_SIDE`` of their gap). An
    analytic gradient that matches neither side is no kink: it fails.

    Curvature alone also separates the one-sided differences of a smooth function, by
    ``h * f''``, and a gradient wrong by about half of that matches one side. ``half``,
    ``(f(x + h/2), f(x - h/2))``, tells the two apart: on the side away from a kink the
    one-sided difference stays where it was when the step halves, while a smooth
    function's moves halfway to ``f'`` (a quarter of the gap). With ``half``, ``analytic``
    must match the same side's difference at ``h/2`` too; without it, the result is only
    the candidates (:func:`kinks_by_one_sided` runs both steps)."""
    xp = namespace_of(analytic, plus)
    central = (plus - minus) / (2 * h)
    forward, backward = (plus - center) / h, (center - minus) / h
    gap = xp.abs(forward - backward)
    to_forward, to_backward = xp.abs(analytic - forward), xp.abs(analytic - backward)
    nearest = xp.minimum(to_forward, to_backward)
    fails = ~within_tolerance(analytic, central, atol, rtol)
    found = fails & kink_shown(plus, center, minus, h, atol, rtol) & (nearest <= KINK_SIDE * gap)
    if half is None:
        return found
    plus_half, minus_half = half
    side = xp.where(
        to_forward <= to_backward, (plus_half - center) / (h / 2), (center - minus_half) / (h / 2)
    )
    return found & (xp.abs(analytic - side) <= KINK_SIDE * gap)


def kink_shown(plus: Any, center: Any, minus: Any, h: float, atol: float, rtol: float) -> Any:
    """Where the one-sided differences ``(f(x + h) - f(x)) / h`` and ``(f(x) - f(x - h)) / h``
    differ by more than the tolerance of the central difference: evidence of a kink within
    ``h`` (or of curvature, :func:`straddles_kink`). Where they agree, no kink explains a
    central difference that fails."""
    xp = namespace_of(plus)
    gap = xp.abs((plus - center) / h - (center - minus) / h)
    return gap > atol + rtol * xp.abs((plus - minus) / (2 * h))


def kinks_by_one_sided(
    f: Callable[[Any], Any], x: Any, analytic: Any, plus: Any, center: Any, minus: Any,
    h: float, atol: float, rtol: float, among: Any = None,
) -> Any:  # fmt: skip
    """:func:`straddles_kink` for the array ``x`` of the function ``f`` (``f(x)`` is
    ``center``; ``plus``, ``minus`` are :func:`values_around` at ``h``), confirmed at ``h/2``:
    ``f`` is evaluated twice more per candidate only. ``among`` (bool, x's shape) limits the
    candidates to those elements, where ``plus`` and ``minus`` were computed."""
    candidates = straddles_kink(analytic, plus, center, minus, h, atol, rtol)
    if among is not None:
        candidates = candidates & among
    where = _indices(candidates)
    if not where:
        return candidates
    half = values_around(f, x, h / 2, indices=where)
    return candidates & straddles_kink(analytic, plus, center, minus, h, atol, rtol, half=half)


def matched_side(analytic: Any, plus: Any, center: Any, minus: Any, h: float) -> Any:
    """The one-sided difference at ``h`` that ``analytic`` is nearer to, element by element:
    +1 for the forward ``(f(x + h) - f(x)) / h``, -1 for the backward ``(f(x) - f(x - h)) / h``
    (``plus``, ``minus``: :func:`values_around`)."""
    xp = namespace_of(analytic, plus)
    forward = xp.abs(analytic - (plus - center) / h)
    backward = xp.abs(analytic - (center - minus) / h)
    return xp.where(forward <= backward, xp.ones_like(forward), -xp.ones_like(forward))


def kinks_together(
    f: Callable[[list[Any]], Any], xs: Sequence[Any], center: Any, analytic: Sequence[Any],
    kinks: Sequence[Any], side: Sequence[Any], h: float, atol: float, rtol: float,
    kink_error: float,
) -> tuple[float, float] | None:  # fmt: skip
    """``(slope, claimed)`` where the ``kinks`` of the arrays ``xs`` disagree moved together,
    else None. ``f`` takes one value per array (``f(xs)`` is ``center``); per array,
    ``analytic`` is its claimed gradient, ``kinks`` (bool) its kinks and ``side``
    (:func:`matched_side`) the side each matched.

    Each kink is excused alone because ``analytic`` matches one of its one-sided
    differences, but a backward giving the whole gradient to each of two tied maxima
    matches a side at both, while moving both together (each to its matched side) moves
    the maximum once: ``f`` changes at half the slope their gradients claim. Along such a
    direction ``v`` the one-sided slope of ``f`` must be ``analytic . v``, as it is at
    independent kinks (ReLU's zeros). The kinks go in two groups by the sign of their
    claimed slopes, which would otherwise cancel (tied maxima under upstream gradients of
    both signs); each group of two or more is compared at ``h`` and ``h / 2`` (two
    evaluations of ``f``), where curvature's error halves and a wrong gradient's stays,
    within the tolerance that excuses each kink alone summed over the group (``KINK_SIDE``
    of a gap, twice ``kink_error``, the largest error of a kink)."""
    xp = namespace_of(*xs)
    for sign in (1.0, -1.0):
        group = [k & (a * s * sign > 0) for k, a, s in zip(kinks, analytic, side, strict=True)]
        count = sum(int(xp.sum(xp.astype(g, xp.int64))) for g in group)
        if count < 2:
            continue
        v = [xp.where(g, s, xp.zeros_like(s)) for g, s in zip(group, side, strict=True)]
        claimed = sum(float(xp.sum(a * d)) for a, d in zip(analytic, v, strict=True))
        slopes = [
            float(f([x + xp.astype(step * d, x.dtype) for x, d in zip(xs, v, strict=True)])
            - center) / step
            for step in (h, h / 2)
        ]  # fmt: skip
        tol = count * (atol + KINK_SIDE * 2 * kink_error) + rtol * abs(claimed)
        errors = [abs(slope - claimed) for slope in slopes]
        if errors[1] > tol and errors[1] > 0.75 * errors[0]:
            return slopes[1], claimed
    return None


@dataclass(frozen=True)
class _Unexplained:
    """Failing elements excused as kinks that the layers' ``kinks`` methods report but that
    their one-sided differences do not explain (:func:`_with_one_sided_kinks`): ``count`` of
    the ``tested`` such elements (a sample, when fewer than ``excused``), and the one with
    the largest error, ``worst``: its ``analytic`` gradient and its ``forward`` and
    ``backward`` one-sided differences; ``elements`` (bool, the parameter's shape) marks
    the ``count``."""

    count: int
    tested: int
    excused: int
    worst: tuple[int, ...]
    analytic: float
    forward: float
    backward: float
    elements: Any

    def note(self, name: str, dtype: str) -> str:
        where = f"[{', '.join(map(str, self.worst))}]" if self.worst else ""
        of = str(self.excused)
        if self.tested < self.excused:
            of = f"{self.tested} (a sample of the {self.excused})"
        advice = (
            "check in float64: copy.deepcopy(net).to('float64') for a Sequential, a network "
            "built with dtype='float64', load_network(path, dtype=\"float64\"), or xpnet "
            "gradcheck --checkpoint at the default --dtype float64"
            if dtype != "float64"
            else "check at other inputs or parameter values"
        )
        return (
            f"unexplained kinks: {name}: {self.count} of {of} failing elements that the "
            f"layers report at kinks show no kink: their one-sided differences agree "
            f"within the tolerance and the analytic gradient matches neither; worst "
            f"{name}{where}: analytic {self.analytic:.6g}, one-sided {self.forward:.6g} "
            f"(forward) and {self.backward:.6g} (backward). A wrong gradient, or {self.count} "
            f"correct ones that {dtype}'s rounding blurs near many kinks: {advice}"
        )


def _with_one_sided_kinks(
    net: Any, x: Any, t: Any, name: str, analytic: Any, found: _Numerical, center: float,
    h: float, tol: Atol, rtol: float, small: float | None = None, seed: int = 0,
) -> tuple[Any, tuple[float, float] | None, _Unexplained | None]:  # fmt: skip
    """``found.kinks``, plus the kinks that one-sided differences find among the elements
    that fail without a kink flagged: a kink in a layer without a ``kinks`` method (a
    user's PReLU, or max pool) that the layers' hooks cannot see. Two loss evaluations per
    such element, done only when there are at most ``ONE_SIDED_LIMIT`` of them, at the step
    of its central difference: ``small`` for one differenced again there
    (:func:`_refined_at_kinks`), where it is clear of the kink it straddled at ``h``, which
    must not excuse it; ``h / RETRY`` for one retried (:func:`_retried`). ``tol`` gives the
    atols (:meth:`Atol.of`).

    Second, the failing elements that the layers' ``kinks`` methods report
    (``found.kinks``), two loss evaluations each at that step: up to ``ONE_SIDED_LIMIT``
    of them, else a sample of that many drawn from ``seed``. One whose one-sided
    differences agree within the tolerance (:func:`kink_shown`) is no kink that explains
    its failure: in float32 a conv filter's weight moves so many ReLU inputs that every
    element is reported at h and at the refined step, and a gradient 1e-2 off passed
    so. Those are returned as :class:`_Unexplained` (None for none).

    Third, :func:`kinks_together` of the kinks at one step, each moved to the side it
    matched (None where they agree, or are fewer than two): those found so, and those
    reported, tested and failing that have a gradient other than 0 (which claims no slope)
    and match a side (:func:`straddles_kink`). A correct backward's matched side keeps
    every kink the element crosses on the side backward took (a ReLU input below 0, the
    maximum with the one it was routed to), so such kinks agree moved together, ReLU's
    independent ones too; a gradient given in full to each of two tied maxima does not.
    A reported kink matching neither side (a move across kinks of several samples) is
    left out of that move."""
    xp = namespace_of(analytic)
    numerical = xp.astype(found.grad, analytic.dtype)
    failing = ~within_tolerance(analytic, numerical, tol.of(found, h, small), rtol)
    excused = xp.zeros_like(failing)
    if found.kinks is not None:
        excused = found.kinks & failing
        failing = failing & ~found.kinks
    counts = to_numpy(xp.stack([_count(failing), _count(excused)]))
    n_failing, n_excused = (int(n) for n in counts)
    if n_failing > ONE_SIDED_LIMIT or not (n_failing or n_excused):
        return found.kinks, None, None
    param = net.params[name]
    tested = _sample_of(excused, ONE_SIDED_LIMIT, [seed, list(net.params).index(name)])
    reported = tested & (analytic != 0)
    analytic = xp.astype(analytic, xp.float64)  # as values_around keeps plus and minus

    def loss_at(p: Any) -> Any:
        return _loss_at(net, name, p, x, t)

    among = failing | tested
    steps = []  # (elements, the step of their central difference, their atol)
    if found.refined is not None:  # differenced again at small (_refined_at_kinks)
        steps.append((among & found.refined, small, tol.at(small)))
        among = among & ~found.refined
    if found.retried is not None:  # at h / RETRY, compared with h's atol (_retried)
        steps.append((among & found.retried, h / RETRY, tol.at(h)))
        among = among & ~found.retried
    steps.append((among, h, tol.at(h)))
    kinked, together = found.kinks, None
    unexplained = xp.zeros_like(tested)
    forward, backward = xp.zeros_like(analytic), xp.zeros_like(analytic)
    for among, step, atol in steps:
        elements = _indices(among)
        if not elements:
            continue
        plus, minus = values_around(loss_at, param, step, indices=elements)
        found_here = kinks_by_one_sided(
            loss_at, param, analytic, plus, center, minus, step, atol, rtol,
            among=among & failing,
        )  # fmt: skip
        kinked = found_here if kinked is None else kinked | found_here
        shown = kink_shown(plus, center, minus, step, atol, rtol)
        unexplained = unexplained | (tested & among & ~shown)
        forward = xp.where(among, (plus - center) / step, forward)
        backward = xp.where(among, (center - minus) / step, backward)
        sided = reported & among & straddles_kink(analytic, plus, center, minus, step, atol, rtol)
        kinks_here = found_here | sided
        if together is None and len(elements) > 1:
            error = xp.where(kinks_here, xp.abs(analytic - numerical), xp.zeros_like(analytic))
            together = kinks_together(
                lambda moved: loss_at(moved[0]), [param], center, [analytic], [kinks_here],
                [matched_side(analytic, plus, center, minus, step)], step, atol, rtol,
                float(xp.max(error)),
            )  # fmt: skip
    count = int(_count(unexplained))
    if not count:
        return kinked, together, None
    worst = _worst(xp.abs(analytic - xp.astype(numerical, xp.float64)), unexplained)
    return kinked, together, _Unexplained(
        count, min(n_excused, ONE_SIDED_LIMIT), n_excused, worst,
        float(analytic[worst]), float(forward[worst]), float(backward[worst]), unexplained,
    )  # fmt: skip


def _float64_copy(net: Any, x: Any, t: Any) -> tuple[Any, Any, Any]:
    """``(net, x, t)`` in float64: a ``copy.deepcopy`` of the held network cast up in place
    (:func:`~xpnet.conversion.network_to`: the same weights, every floating array of it and of its
    layers in float64), and ``x`` and ``t`` (its floating ones) cast up. Its Dropout layers
    replay the check's draws (:class:`~xpnet.held.ReplayedRNG`)."""
    net, xp = copy.deepcopy(net), namespace_of(x)
    network_to(net, "float64")
    return net, xp.astype(x, xp.float64), xp.astype(t, xp.float64) if is_floating_array(t) else t


@dataclass(frozen=True)
class _InFloat64:
    """Unexplained kinks (:class:`_Unexplained`) differenced again on a float64 copy of
    the network (:func:`_differenced_in_float64`) at float64's ``h``: their central
    differences ``numerical`` and one-sided ``forward`` and ``backward`` ones (float64,
    the parameter's shape), and, of them (bool masks), those whose one-sided differences
    show a kink that the analytic gradient matches a side of (``kinks``) and those that
    neither match it nor show one (``disagree``)."""

    h: float
    numerical: Any
    forward: Any
    backward: Any
    kinks: Any
    disagree: Any

    def note(self, name: str, analytic: Any, of: _Unexplained) -> str:
        xp = namespace_of(self.numerical)
        counts = to_numpy(xp.stack([_count(self.kinks), _count(self.disagree)]))
        kinks, disagree = (int(n) for n in counts)
        sample = ""
        if of.tested < of.excused:
            sample = f" (of a sample of {of.tested} of the {of.excused} failing elements at kinks)"
        said = (
            f"float64: {name}: the {of.count} unexplained kinks{sample} were differenced "
            f"again on a float64 copy of the network and data at h={self.h:g}: "
            f"{of.count - kinks - disagree} match the analytic gradient, {kinks} show a kink "
            f"it matches a side of, {disagree} disagree"
        )
        if not disagree:
            return said
        at = _worst(xp.abs(analytic - self.numerical), self.disagree)
        return (
            f"{said} (a wrong gradient); worst {name}[{', '.join(map(str, at))}]: analytic "
            f"{float(analytic[at]):.6g}, float64 central {float(self.numerical[at]):.6g}, "
            f"one-sided {float(self.forward[at]):.6g} (forward) and "
            f"{float(self.backward[at]):.6g} (backward)"
        )


def _differenced_in_float64(
    copied: tuple[Any, Any, Any], name: str, analytic: Any, elements: Any, atol: float,
    rtol: float,
) -> _InFloat64:  # fmt: skip
    """The ``elements`` (bool) of parameter ``name`` differenced on ``copied``
    (:func:`_float64_copy`) at float64's default h, two loss evaluations each: those whose
    central difference matches ``analytic`` within ``atol`` and ``rtol`` (the check's, at
    its h), else whose one-sided differences show a kink at float64's tolerances
    (:func:`straddles_kink`), else disagreeing. ``ValueError`` when the copy's loss is not
    float64 (a layer that computes in its own dtype)."""
    net, x, t = copied
    h, tol, rtol64 = tolerances("float64", None, None, None)
    center = training_loss(net, x, t)
    if dtype_name(center) != "float64":
        raise ValueError(f"its loss is {dtype_name(center)} in the float64 copy")
    center, param, xp = float(center), net.params[name], namespace_of(analytic)

    def loss_at(p: Any) -> Any:
        return _loss_at(net, name, p, x, t)

    plus, minus = values_around(loss_at, param, h, indices=_indices(elements))
    analytic = xp.astype(analytic, xp.float64)
    numerical = (plus - minus) / _steps_taken(xp, param, h)
    off = elements & ~within_tolerance(analytic, numerical, atol, rtol)
    atol64 = replace(tol, loss=center).at(h)
    kinks = off & straddles_kink(analytic, plus, center, minus, h, atol64, rtol64)
    return _InFloat64(h, numerical, (plus - center) / h, (center - minus) / h, kinks, off & ~kinks)


def _sample_of(mask: Any, k: int, seed: Sequence[int]) -> Any:
    """``mask`` (bool) where it has at most ``k`` true elements, else ``k`` of them drawn
    without replacement by a NumPy generator seeded with ``seed``, on mask's device."""
    host = to_numpy(mask)
    where = np.flatnonzero(host)
    if len(where) <= k:
        return mask
    chosen = np.zeros(host.size, dtype=bool)
    chosen[np.random.default_rng(seed).choice(where, k, replace=False)] = True
    return to_like(chosen.reshape(host.shape), mask)


def _loss_at(net: Any, name: str, value: Any, x: Any, t: Any) -> Any:
    """The training loss with parameter ``name`` at ``value`` (``net.loss_at`` where the
    network has it, as :class:`~xpnet.Sequential` does)."""
    if hasattr(net, "loss_at"):
        return net.loss_at(name, value, x, t)
    with _moved(net, {name: value}):
        return training_loss(net, x, t)


def compare(
    name: str,
    analytic: Any,
    numerical: Any,
    atol: float,
    rtol: float,
    *,
    kinks: Any = None,
    via: str = "",
    sampled: Any = None,
) -> ParamCheck:
    """Error statistics of ``analytic`` against ``numerical`` (arrays of one shape).

    ``kinks`` (bool, same shape) marks elements to report apart: they are left out of
    the statistics and of ``passed``; ``sampled`` (bool, same shape; None for all) the
    elements compared, the others being left out of everything. An element where either
    gradient is inf or nan fails, at a kink too (no tolerance covers it); the statistics
    leave it out and ``nonfinite_analytic`` / ``nonfinite_numerical`` count such elements.
    A few host reads per call, none per element.
    """
    xp = namespace_of(analytic, numerical)
    shape = tuple(analytic.shape)
    if math.prod(shape) == 0:
        return ParamCheck(name, shape, 0.0, 0.0, 0.0, True, kinks=0, via=via)
    given = analytic
    analytic, numerical = _in_sample(analytic, sampled), _in_sample(numerical, sampled)
    finite_analytic, finite_numerical = xp.isfinite(analytic), xp.isfinite(numerical)
    finite = finite_analytic & finite_numerical
    # Zeros in place of the non-finite elements: their errors would be inf or nan.
    analytic = xp.where(finite, analytic, xp.zeros_like(analytic))
    numerical = xp.where(finite, numerical, xp.zeros_like(numerical))
    # The analytic gradient is known outside a sample too: the transposed and flipped
    # notes compare the sampled numerical elements with the analytic ones they came from.
    whole = analytic
    if sampled is not None:
        whole = xp.where(xp.isfinite(given), given, xp.zeros_like(given))
    diff = xp.abs(analytic - numerical)
    scale = xp.maximum(xp.abs(analytic), xp.abs(numerical))
    tiny = xp.finfo(diff.dtype).smallest_normal
    rel = diff / xp.maximum(scale, xp.full_like(scale, tiny))
    within = finite & within_tolerance(analytic, numerical, atol, rtol)
    looked = kinks is not None
    # A kink excuses only an element it could explain: one whose central difference agrees
    # anyway is compared as any other (a conv filter's weight moves so many positions that
    # some ReLU input nearly always crosses 0, harmlessly).
    kinks = xp.zeros_like(within) if not looked else kinks & ~within
    counted = finite & ~kinks  # the elements of the error statistics
    if sampled is not None:
        counted = counted & sampled
    zero = xp.zeros_like(diff)
    kept = xp.where(counted, diff, zero)
    failing = counted & ~within
    bad_analytic, bad_numerical, n_counted, failed = (
        int(n)
        for n in to_numpy(
            xp.stack(
                [
                    _count(~finite_analytic),
                    _count(~finite_numerical),
                    _count(counted),
                    _count(failing),
                ]
            )
        )
    )
    hits = np.argwhere(to_numpy(kinks))
    failed_elements = np.argwhere(to_numpy(~(within | (kinks & finite))))
    passed = not len(failed_elements)
    worst = None
    if failed:
        worst = _worst(diff, failing)
    return ParamCheck(
        name=name,
        shape=shape,
        max_abs_error=float(xp.max(kept)),
        max_rel_error=float(xp.max(xp.where(counted, rel, zero))),
        mean_abs_diff=float(xp.sum(kept)) / max(n_counted, 1),
        passed=passed,
        kinks=len(hits) if looked else None,
        kink_max_abs_error=float(xp.max(xp.where(kinks & finite, diff, zero))),
        kink_elements=tuple(tuple(int(i) for i in idx) for idx in hits),
        via=via,
        nonfinite_analytic=bad_analytic,
        nonfinite_numerical=bad_numerical,
        factor=None if passed else _constant_factor(xp, analytic, numerical, counted, atol, rtol),
        failing=failed,
        transposed=bool(failed)
        and len(shape) == 2
        and shape[0] == shape[1]
        and _matches(xp.matrix_transpose(whole), numerical, atol, rtol, ~counted),
        flipped=bool(failed)
        and len(shape) == 4
        and math.prod(shape[-2:]) > 1
        and _matches(xp.flip(whole, axis=(-2, -1)), numerical, atol, rtol, ~counted),
        worst=worst,
        worst_analytic=float(analytic[worst]) if worst is not None else 0.0,
        worst_numerical=float(numerical[worst]) if worst is not None else 0.0,
        failing_elements=tuple(tuple(int(i) for i in idx) for idx in failed_elements),
        sampled=None if sampled is None else int(_count(sampled)),
    )


def _worst(error: Any, among: Any) -> tuple[int, ...]:
    """The index of the largest of the ``error`` elements (>= 0) that ``among`` (bool, same
    shape, some true) marks: the first, where several tie."""
    xp = namespace_of(error)
    flat = int(xp.argmax(xp.reshape(xp.where(among, error, -xp.ones_like(error)), (-1,))))
    return tuple(int(i) for i in np.unravel_index(flat, tuple(error.shape)))


def _in_sample(a: Any, sampled: Any) -> Any:
    """``a`` with 0 in the elements that ``sampled`` (bool, a's shape; None for all) leaves
    out: both gradients are 0 there, so nothing fails, retries or refines them."""
    if sampled is None:
        return a
    xp = namespace_of(a)
    return xp.where(sampled, a, xp.zeros_like(a))


def _matches(analytic: Any, numerical: Any, atol: Any, rtol: float, excused: Any) -> bool:
    """Whether ``analytic`` is within the check's tolerance of ``numerical`` in every
    element, but those ``excused`` (bool, same shape; None for none)."""
    xp = namespace_of(analytic, numerical)
    within = within_tolerance(analytic, numerical, atol, rtol)
    return bool(xp.all(within if excused is None else within | excused))


def kink_mask(check: ParamCheck, like: Any) -> Any:
    """``check``'s kinks as a bool array of its shape on ``like``'s device (None for none)."""
    if not check.kink_elements:
        return None
    mask = np.zeros(check.shape, dtype=bool)
    mask[tuple(np.asarray(check.kink_elements).T)] = True
    return namespace_of(like).asarray(mask, device=array_api_compat.device(like))


def swapped_pairs(
    checks: Sequence[ParamCheck],
    analytic: Mapping[str, Any],
    numerical: Mapping[str, Any],
    atol: Mapping[str, Any],
    rtol: float,
    sampled: Mapping[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """The pairs of ``checks`` of one shape, both failing clear of kinks with finite
    gradients, whose ``analytic`` gradients are each within the tolerance (``atol`` of
    the other's, ``rtol``) of the other's ``numerical`` one, all by name, away from the
    other's kinks and, where ``sampled`` (name -> bool array, :func:`sample_elements`)
    names it, in the other's sample: gradients returned in each other's place."""
    failing = [
        c for c in checks if c.failing and not (c.nonfinite_analytic or c.nonfinite_numerical)
    ]

    def matches(a: ParamCheck, b: ParamCheck) -> bool:
        """Whether ``a``'s analytic gradient is within tolerance of ``b``'s numerical one."""
        excused = kink_mask(b, numerical[b.name])
        among = (sampled or {}).get(b.name)
        if among is not None:
            excused = ~among if excused is None else excused | ~among
        return _matches(analytic[a.name], numerical[b.name], atol[b.name], rtol, excused)

    return [
        (a.name, b.name)
        for i, a in enumerate(failing)
        for b in failing[i + 1 :]
        if a.shape == b.shape and matches(a, b) and matches(b, a)
    ]


def _constant_factor(
    xp: Any, analytic: Any, numerical: Any, counted: Any, atol: float, rtol: float
) -> float | None:
    """``k`` when ``analytic`` is within tolerance of ``k * numerical`` in every ``counted``
    element (``k`` fitted by least squares), else None: a gradient off by one factor
    everywhere (a loss's missing division by the batch size, a flipped sign). None too
    when the counted elements pass as they are (k = 1): what fails is elsewhere (a
    non-finite value)."""
    a = xp.where(counted, analytic, xp.zeros_like(analytic))
    n = xp.where(counted, numerical, xp.zeros_like(numerical))
    norm = float(xp.sum(n * n))
    if norm == 0.0 or bool(xp.all(within_tolerance(a, n, atol, rtol))):
        return None
    k = float(xp.sum(a * n)) / norm
    return k if bool(xp.all(within_tolerance(a, k * n, atol, rtol))) else None


def _count(mask: Any) -> Any:
    """How many elements of the bool array ``mask`` are true: a 0-D int64 array."""
    xp = namespace_of(mask)
    return xp.sum(xp.astype(mask, xp.int64))


def _require_step(h: float) -> None:
    """Refuse a central-difference step that is not a positive finite number."""
    if not (is_real(h) and 0 < h < math.inf):
        raise ValueError(f"the step h must be a positive number, got {h!r}")


def check_step(h: float, dtype: str, *, stacklevel: int = 4, alternative: str = "") -> None:
    """Refuse a central-difference step that is not a positive number; warn when it is so
    small that rounding (about ``eps * |f| / h``) swamps the difference in ``dtype``
    (``stacklevel``: the caller's caller's caller, the user's, by default), naming the
    step to use or the caller's ``alternative``."""
    _require_step(h)
    eps = float(np.finfo(dtype).eps) if dtype in DEFAULTS else float(np.finfo("float64").eps)
    if h < math.sqrt(eps):
        warnings.warn(
            f"h={h:g} is too small for {dtype}: rounding errors of about eps * |f| / h "
            f"(eps = {eps:.1e}) swamp the central difference; use about "
            f"{DEFAULTS.get(dtype, DEFAULTS['float64'])['h']:g}"
            + (f", or {alternative}" if alternative else ""),
            stacklevel=stacklevel,
        )


def _require_samples(x: Any) -> None:
    """Refuse an empty batch: the loss of no samples (NaN, or 0 summed) has no gradient."""
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) and shape[0] == 0:
        raise ValueError(
            f"x is an empty batch, of shape {tuple(shape)}: there is no loss to differentiate; "
            "check the gradients on at least one sample"
        )


#: Why a checker refuses a parameter or an input that holds NaN or infinity.
NOT_FINITE = (
    ": the function is not finite there, nor is any central difference of it, so no "
    "gradient can be checked; check at finite values"
)


def require_finite_point(net: Any, x: Any, t: Any) -> None:
    """Refuse a network parameter, an input or a target holding NaN or infinity, naming it
    and where (one pass over each, once per check): the loss is not finite there."""
    require_finite(
        [*((f"parameter {n!r}", p) for n, p in net.params.items()), ("x", x), ("t", t)],
        f"{NOT_FINITE} (a network saved before its training diverged)",
    )


@contextmanager
def _input_restored(x: Any) -> Iterator[Any]:
    """Yields a copy of the input ``x`` as given, and writes it back into ``x`` after the
    check where a layer wrote into its input or the input it cached: the caller's data
    stay as they were."""
    if not array_api_compat.is_array_api_obj(x):
        yield x
        return
    given = copy_of(x)
    try:
        yield given
    finally:
        if not same_values(namespace_of(x), given, x):
            x[...] = given


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


class Float32Warning(UserWarning):
    """Gradients checked in float32, whose rounding errors are near 1e-3; ``alternative``
    says how to check in float64 instead."""

    def __init__(self, alternative: str = "build the network with dtype='float64'") -> None:
        super().__init__(
            f"checking gradients in float32: expect errors near 1e-3; {alternative} for a "
            "tight check"
        )


def _settings(
    net: Any, h: float | None, atol: float | None, rtol: float | None
) -> tuple[str, float, Atol, float]:
    dtype = str(net.dtype)
    if dtype not in DEFAULTS:
        # float16's steps and losses round at about 1e-3: a correct gradient fails, and
        # float64's defaults (h = 1e-5) would move no parameter at all.
        raise ValueError(
            f"cannot check the gradients of a {dtype} network: its rounding swamps a central "
            f"difference; check a copy with float64 parameters (or float32, loosely)"
        )
    if dtype == "float32":
        warnings.warn(Float32Warning(), stacklevel=3)
    return (dtype, *tolerances(dtype, h, atol, rtol))


def _require_eager_inputs(net: Any, x: Any, t: Any) -> None:
    """Refuse dask arrays for ``x`` or ``t``: the check moves parameters and compares
    element by element on the arrays themselves (with ``client=`` it sends them to the
    workers itself), which failed deep inside for lazy ones."""
    lazy = [name for name, a in (("x", x), ("t", t)) if array_api_compat.is_dask_array(a)]
    if lazy:
        param = next(iter(net.params.values()), None)
        library = type(param).__module__.split(".")[0] if param is not None else "its own"
        raise TypeError(
            f"check_gradients takes x and t as arrays of the network's library ({library}), "
            f"got {' and '.join(lazy)} as {'dask arrays' if len(lazy) > 1 else 'a dask array'}: "
            "pass the arrays themselves (x_train[:3], not rows(x_train[:3])); with client= the "
            "check sends them to the cluster itself"
        )


def address_given_as_client(address: str) -> TypeError:
    """The error for a scheduler's address passed where a ``distributed.Client`` goes."""
    return TypeError(
        f"client must be a distributed.Client, got the address {address!r}: connect first, "
        "e.g. with xpnet.distributed.connect(address) as client"
    )


def check_gradients(
    net: Any,
    x: Any,
    t: Any,
    *,
    method: str = "batched",
    h: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    params: Iterable[str] | None = None,
    memory_budget: int | str | None = None,
    n_directions: int = 3,
    seed: int = 0,
    client: Any = None,
    progress: Any = None,
    max_elements: int | None = None,
) -> GradientReport | DirectionalReport:
    """Compare ``net.gradient(x, t)`` with numerical gradients of ``net.loss(x, t)``.

    ``method`` is ``"batched"`` (the default: local perturbations within
    ``memory_budget``, the loop where the network does not allow them), ``"loop"``
    (one element at a time, the book's method) or ``"directional"`` (see
    :func:`directional_check`, which takes ``n_directions`` and ``seed``; it returns a
    :class:`DirectionalReport`; ``seed`` also draws the Dropout masks). ``h``, ``atol`` and
    ``rtol`` default by the network's dtype (see ``DEFAULTS``), the default atol grown with
    the loss to cover its rounding (:class:`Atol`); float64 is the dtype to check in:
    float32 rounding swamps the central difference. An element that fails clear of kinks
    is differenced again at ``h / RETRY`` and compared there, with the same atol, where an
    error from curvature is ``RETRY**2`` times smaller (BatchNorm on two samples failed
    without); as kinks are, only where the network is layered as :mod:`xpnet.perturb`
    assumes.
    ``params`` restricts the check to some parameter names. Elements whose central
    difference straddles a kink (ReLU's 0, a max pool's maximum changing hands) are
    reported apart and left out of pass/fail (both ``loop``
    and ``batched`` look for them where the network is layered as :mod:`xpnet.perturb`
    assumes, for the parameters computed by the loop too; a kink in a layer without a
    ``kinks`` method is found by one-sided differences of the elements that fail, at most
    ``ONE_SIDED_LIMIT`` of them a parameter; those, and those the layers' ``kinks``
    methods report that match a side, are then moved together, each to the side it
    matched, and a parameter whose kinks disagree so fails: :func:`kinks_together`, the
    whole gradient given to each of two tied maxima). A failing element a ``kinks`` method
    reports whose one-sided differences agree (no kink to explain its failure, as
    float32's rounding leaves a conv filter's weights) does not pass: a float32 check
    differences it again on a float64 copy of the network (:func:`_float64_copy`), where it
    matches or fails; where no such copy can and nothing fails, the report is
    ``inconclusive``.

    The check differentiates what ``net.gradient`` does, the training-mode loss, with the
    network held still (:mod:`xpnet.held`): every pass uses the same Dropout masks (drawn
    from ``seed``, not from the layers' own generators), and BatchNorm's running
    statistics are put back at the end, so the network is left as it was. A loss that
    differs between two passes at one point (a layer drawing random numbers some other
    way) is a ``ValueError``.

    ``progress`` shows how far the numerical gradients of ``loop`` and ``batched`` are: a
    tqdm bar on stderr (True; None, the default: when stderr is a terminal, once the
    check has run for a second; False: none)
    or a callable ``progress(done, total)``, over the elements differenced (after each
    element of the loop, each chunk of the batched method), or over the tasks of a cluster.
    ``client`` (a ``dask.distributed.Client``) computes them as tasks on its cluster,
    with the same report (:func:`xpnet.distributed.numerical`; ``memory_budget`` is then
    per task). ``x`` and ``t`` are arrays of the network's library either way (the check
    sends them to the workers itself): a dask array is a ``TypeError``.

    ``max_elements`` checks at most that many elements of each parameter (``loop`` and
    ``batched``), drawn at random without replacement from ``seed`` on the host, the same
    ones on every backend, as cs231n's ``grad_check_sparse`` does: only those are
    perturbed, so a large network's check takes a fraction of the time. The report gives
    each parameter's count (:attr:`ParamCheck.sampled`), and its verdict says a pass is
    a sample's: a wrong gradient in elements left out passes. ``None`` (the default)
    checks every element.

    A parameter, ``x`` or ``t`` holding NaN or infinity is a ``ValueError`` naming it and
    where. A check that tested nothing, the default atol as large as every parameter's
    gradients or every element on a kink, is ``inconclusive``, and falsy, as a failed one
    is (an ``atol`` you pass is used as it is, and is not judged).
    """
    _check_method(method, METHODS)
    _require_eager_inputs(net, x, t)
    if method == "directional" and client is not None:
        raise ValueError("client= runs the loop and batched methods; directional runs locally")
    _require_max_elements(max_elements, method, client)
    if isinstance(client, str):
        raise address_given_as_client(client)
    if method == "directional" and progress not in (None, False):
        raise ValueError(
            f"progress={progress!r} shows the elements that method 'loop' or 'batched' "
            "differences; 'directional' takes a few passes: leave progress out"
        )
    if method == "directional":
        return directional_check(
            net,
            x,
            t,
            n_directions=n_directions,
            seed=seed,
            h=h,
            atol=atol,
            rtol=rtol,
            params=params,
            memory_budget=memory_budget,
        )
    _require_samples(x)
    require_finite_point(net, x, t)
    dtype, h, tol, rtol = _settings(net, h, atol, rtol)
    names = _param_names(net, params)
    sampled = sample_elements(net, names, max_elements, seed)
    with _input_restored(x) as given, _held_for_checking(net, x, t, seed) as (t, center):
        analytic = gradient_after_decoy(net, x, t)
        budget = memory_budget  # the parameter hides the function of that name
        if client is None:
            local = LocalNet.of(net, x, t)
            total = sum(
                math.prod(net.params[n].shape) if n not in sampled else max_elements for n in names
            )
            with progress_bar(progress, total, "element") as done:
                found = _numerical(
                    net, x, t, names, method=method, h=h, budget=budget, local=local,
                    among=sampled, done=done,
                )  # fmt: skip
        else:
            from xpnet.distributed import numerical  # imports Dask

            found = numerical(
                client, net, x, t, names, method=method, h=h, budget=budget, progress=progress
            )
            # The workers found kinks only where the network is layered as LocalNet assumes.
            layered = any(f.kinks is not None for f in found.values())
            local = LocalNet.of(net, x, t) if layered else None
        tol = _at_the_point(tol, net, x, t, names, local, center, h, seed)
        return _element_wise(
            net, x, t, names, analytic, found, local, tol, center,
            method=method, h=h, rtol=rtol, dtype=dtype, budget=budget, given=given,
            sampled=sampled, seed=seed,
        )  # fmt: skip


def _require_max_elements(max_elements: Any, method: str, client: Any) -> None:
    """Refuse a ``max_elements`` that is not None or an integer >= 1, and one given with
    the directional method or a cluster, which do not sample elements."""
    if max_elements is None:
        return
    if not is_count(max_elements, 1):
        raise ValueError(
            f"max_elements must be an integer >= 1 (elements checked per parameter) or None "
            f"(all of them), got {max_elements!r}"
        )
    if method == "directional":
        raise ValueError(
            f"max_elements={max_elements} samples elements for method 'loop' or 'batched'; "
            "'directional' perturbs every element along random directions: pass one or the "
            "other"
        )
    if client is not None:
        raise ValueError(
            f"max_elements={max_elements} samples elements in this process; a check on a "
            "cluster (client=) checks every element: pass one or the other"
        )


def _in_place_note(write: str) -> str:
    """The note of a failed check whose network wrote in place (:func:`in_place_writes`)."""
    return (
        f"{write}: where another layer or the check still reads that array (a cached "
        "output, a residual block's skip path, the input x), it reads the changed values, "
        "and gradients fail for it; compute into a new array"
    )


def _element_wise(
    net: Any, x: Any, t: Any, names: list[str], analytic: Mapping[str, Any],
    found: dict[str, _Numerical], local: LocalNet | None, tol: Atol, center: float, *,
    method: str, h: float, rtol: float, dtype: str, budget: int | str | None, given: Any,
    sampled: Mapping[str, Any] | None = None, seed: int = 0,
) -> GradientReport:  # fmt: skip
    """:func:`check_gradients`' comparison of the ``analytic`` gradients of ``names`` with
    their central differences ``found`` at ``h``, inside the check's held network: the
    elements across a kink that disagree differenced again at :func:`refined_step`, those
    failing clear of kinks at ``h / RETRY``, kinks that no hook sees found by one-sided
    differences, and the reported kinks that these do not explain made inconclusive
    (:class:`_Unexplained`, a sample of them drawn from ``seed``); ``found`` is updated in
    place. A failing report names the layers that
    wrote into arrays they were given or hold (:func:`in_place_writes`, on a copy of the
    input as ``given``: ``x`` may be what a layer wrote into). ``sampled`` (name -> bool
    array, :func:`sample_elements`) limits a parameter's comparison to those elements."""
    sampled = sampled or {}
    whole = analytic  # for compare and swapped_pairs, which read the sample's themselves
    analytic = {n: _in_sample(analytic[n], sampled.get(n)) for n in names}
    atol = tol.at(h)
    small = refined_step(h, dtype)
    refined = {
        n: _refined_at_kinks(local, n, analytic[n], found[n], small, atol, rtol, budget)
        for n in names
    }
    retried = {n: _retried(local, n, analytic[n], found[n], h, atol, rtol, budget) for n in names}
    one_sided = {
        n: _with_one_sided_kinks(
            net, x, t, n, analytic[n], found[n], center, h, tol, rtol, small, seed
        )
        for n in names
    }
    report = GradientReport(
        method=method, h=h, atol=atol, rtol=rtol, dtype=dtype, batch=int(x.shape[0])
    )
    atols = {n: tol.of(found[n], h, small) for n in names}
    numerical = {n: found[n].grad for n in names}
    copied = None  # the float64 copy, made for the first parameter that needs one
    for n in names:
        kinks, together, unexplained = one_sided[n]
        why = ""
        if unexplained is not None and dtype != "float64":
            xp = namespace_of(analytic[n])
            try:
                copied = copied or _float64_copy(net, x, t)
                again = _differenced_in_float64(
                    copied, n, analytic[n], unexplained.elements, atol, rtol
                )
            except Exception as exc:  # a user's layer may refuse float64 in any way
                why = f"; no float64 copy could check them ({type(exc).__name__}: {exc})"
            else:
                report.notes.append(again.note(n, xp.astype(analytic[n], xp.float64), unexplained))
                # Compared as any element, at the check's atol, with float64's difference
                moved = unexplained.elements & ~again.kinks
                numerical[n] = xp.where(
                    moved, xp.astype(again.numerical, numerical[n].dtype), numerical[n]
                )
                atols[n] = xp.where(moved, xp.full_like(atols[n], atol), atols[n])
                kinks = kinks & ~moved
                unexplained = None
        check = compare(
            n, whole[n], numerical[n], atols[n], rtol, kinks=kinks, via=found[n].via,
            sampled=sampled.get(n),
        )  # fmt: skip
        if together is not None:
            check = replace(check, passed=False, kinks_together=together)
        if unexplained is not None:
            check = replace(check, passed=False, unexplained_kinks=unexplained.count)
            report.notes.append(unexplained.note(n, dtype) + why)
        report.params.append(replace(check, refined=refined[n], retried=retried[n]))
    report.swapped = swapped_pairs(report.params, whole, numerical, atols, rtol, sampled)
    report.note_atol(tol, {n: _largest([found[n].grad]) for n in names})
    if any(refined.values()):
        counts = ", ".join(f"{n} {k}" for n, k in refined.items() if k)
        report.notes.append(
            f"refined: elements that straddled a kink at h={h:g} and disagreed were differenced "
            f"again at h={small:g} ({counts}); those clear of kinks there are compared at that "
            f"step (atol {tol.at(small):.2g}), the others stay kinks"
        )
    if method == "batched" and local is not None:
        report.notes += _looped_notes(net, local, [n for n in names if found[n].via == "loop"])
    if not report.passed:
        writes = in_place_writes(net, copy_of(given), t)
        report.notes += [_in_place_note(w) for w in writes]
    return report


def _looped_notes(net: Any, local: LocalNet, names: list[str]) -> list[str]:
    """Why the batched method differenced the parameters ``names`` by the loop, where a
    layer made of layers is why (:meth:`~xpnet.perturb.LocalNet.looping_block`): a line per
    such layer, naming it by its path and the parameters it made the loop's."""
    looped: dict[int, tuple[Any, list[str]]] = {}
    for name in names:
        block = local.looping_block(name)
        if block is not None:
            looped.setdefault(id(block), (block, []))[1].append(name)
    paths = {id(layer): path for path, layer in walk(net.layers)}
    return [
        f"via loop: {paths[key]} ({type(block).__name__}) is not one xpnet can difference "
        "layer by layer (a layer made of layers that is not a stack), so the parameters in "
        f"and before it ({', '.join(params)}) are differenced by the loop"
        for key, (block, params) in looped.items()
    ]


def _unresolved(tol: Atol, h: float, largest: float) -> bool:
    """Whether ``tol``'s atol at ``h`` leaves numerical derivatives of at most ``largest``
    unresolved, so that a wrong one within it would pass: a default atol grown above its
    floor, when it is as large as ``largest``; else when ``largest`` is above what the
    loss's rounding makes of a difference (those within it are compared with 0) and within
    the atol. An atol of the user's knows no rounding and leaves nothing unresolved."""
    atol = tol.at(h)
    if atol > tol.floor:
        return atol >= largest
    rounding = max(tol.from_loss(h), tol.from_noise(h))
    return 0 < rounding < largest <= atol


def _atol_note(tol: Atol, h: float, largest: float) -> str:
    """The report's line on a default atol above its floor, grown with the loss or its
    measured rounding noise; and when it is as large as the ``largest`` numerical
    derivative, that the check resolves nothing (a loss of 1e10 + sum(sin p) has an atol
    of 3.6: a gradient twice off passes)."""
    if tol.from_loss(h) >= tol.from_noise(h):
        why = f"for the loss of {tol.loss:.4g}: {ROUNDING} * eps * |loss| / h"
    else:
        why = f"for the loss's rounding noise of {tol.noise:.2g}: {NOISE_MARGIN} * noise / h"
    note = f"atol: {tol.at(h):.2g}, above {tol.floor:g} {why}, what rounding can make of "
    note += "a correct gradient"
    if tol.at(h) >= largest:
        note += (
            f"; it is as large as the numerical gradients (at most {largest:.2g}), which the "
            "check cannot tell from 0 with this rounding: pass a larger h, or check a loss "
            "of smaller magnitude (a mean rather than a sum, without a constant term)"
        )
    return note


def _floor_note(atol: float, rounding: float, what: str, largest: float) -> str:
    """The report's line on an ``atol`` that was not grown but is as large as ``what``
    (numerical derivatives, at most ``largest``), which are above what the loss's
    ``rounding`` makes of a difference: a smaller atol checks them."""
    return (
        f"atol: {atol:g} is as large as {what} (at most {largest:.2g}), so a wrong gradient "
        f"within the atol passes there: pass a smaller atol (the loss's rounding allows "
        f"{rounding:.2g}), or check at inputs or parameters of larger magnitude"
    )


def _rounding_note(h: float, rounding: float, within: Mapping[str, float]) -> str:
    """The report's line on parameters whose numerical derivatives (``within``: name -> the
    largest) are no larger than what the loss's ``rounding`` makes of a difference at ``h``."""
    return (
        f"rounding: the numerical gradients of {', '.join(within)} (at most "
        f"{max(within.values()):.2g}) are within what the loss's rounding makes of a "
        f"difference at h={h:g} ({rounding:.2g}), so they were compared with 0 only, which "
        "is right for a bias before BatchNorm; if they should not be 0 here (a ReLU off for "
        "every sample of the batch passes no gradient to the layers before it), check at "
        "other inputs, more samples, or parameters of larger magnitude"
    )


def _largest(values: Iterable[Any]) -> float:
    """The largest finite absolute value in the arrays ``values`` (0 for none)."""
    largest = 0.0
    for a in values:
        xp = namespace_of(a)
        finite = xp.where(xp.isfinite(a), xp.abs(a), xp.zeros_like(a))
        largest = max(largest, float(xp.max(finite)) if math.prod(a.shape) else 0.0)
    return largest


#: How much smaller the step is at which check_gradients differences again the elements
#: that straddle a kink at h (:func:`refined_step`).
REFINEMENT = 100


def refined_step(h: float, dtype: str) -> float | None:
    """The smaller step at which :func:`check_gradients` differences again the elements
    that straddle a kink at ``h``: ``h / REFINEMENT``, but not below ``10 * sqrt(eps)`` of
    ``dtype``, where the loss's rounding would swamp the loop's differences; None when that
    is not at least twice smaller than ``h``."""
    eps = float(np.finfo(dtype if dtype in DEFAULTS else "float64").eps)
    small = max(h / REFINEMENT, 10 * math.sqrt(eps))
    return small if small <= h / 2 else None


def _refined_at_kinks(
    local: LocalNet | None, name: str, analytic: Any, found: _Numerical, small: float | None,
    atol: float, rtol: float, budget: int | str | None,
) -> int:  # fmt: skip
    """Difference again, at the step ``small``, the elements of ``name`` that straddle a
    kink and disagree; update ``found`` in place with the new differences and kinks of
    those elements; return how many there were.

    A kink excuses its element from pass/fail, whatever its error: it must be one the step
    cannot avoid. A ReLU input within ``h`` times a pixel of 0 (a conv filter's weight
    moves thousands) straddles at ``h`` and not at ``h / 100``, where the element is
    compared; an input at exactly 0 (a zero bias on blank pixels) straddles at every step
    and stays a kink. Without this a wrong gradient of most of a conv filter's weights
    passed as kinks.
    """
    if local is None or found.kinks is None or small is None:
        return 0
    xp = namespace_of(analytic)
    numerical = xp.astype(found.grad, analytic.dtype)
    again = found.kinks & ~within_tolerance(analytic, numerical, atol, rtol)
    count = _differenced_again(local, name, found, again, small, budget)
    if count:
        found.refined = again
    return count


def _retried(
    local: LocalNet | None, name: str, analytic: Any, found: _Numerical, h: float,
    atol: float, rtol: float, budget: int | str | None,
) -> int:  # fmt: skip
    """Difference again, at ``h / RETRY``, the elements of ``name`` that fail at ``h``
    (neither kinks nor refined at kinks); update ``found`` in place; return how many (0
    where the kinks are not known, ``local`` None: the retry would not know them either).

    Curvature alone can fail a correct gradient at ``h``: BatchNorm on two samples is a
    step about 1e-3 wide, and its central differences were off by 4% at h = 1e-5. Their
    error falls ``RETRY**2``-fold at the smaller step; that of a wrong gradient does not.
    """
    if local is None or found.kinks is None:
        return 0
    xp = namespace_of(analytic)
    numerical = xp.astype(found.grad, analytic.dtype)
    again = ~within_tolerance(analytic, numerical, atol, rtol) & ~found.kinks
    if found.refined is not None:
        again = again & ~found.refined
    count = _differenced_again(local, name, found, again, h / RETRY, budget)
    if count:
        found.retried = again
    return count


def _differenced_again(
    local: LocalNet, name: str, found: _Numerical, again: Any, step: float,
    budget: int | str | None,
) -> int:  # fmt: skip
    """Central differences of the elements ``again`` (bool, the parameter's shape) of
    ``name`` at ``step``, by ``found``'s way, written into ``found.grad`` and
    ``found.kinks``; returns how many elements."""
    xp = namespace_of(again)
    host = to_numpy(again)
    count = int(np.count_nonzero(host))
    if not count:
        return 0
    if found.via == "local":
        grad, kinks = central_differences(local, name, step, memory_budget(budget), among=again)
    else:
        grad, kinks = _looped(local, name, step, again)
    found.grad = xp.where(again, xp.astype(grad, found.grad.dtype), found.grad)
    found.kinks = xp.where(again, kinks, found.kinks)
    return count


@dataclass(frozen=True)
class DirectionCheck:
    """One random direction ``v``: numerical and analytic derivative of the loss along it."""

    numerical: float
    analytic: float
    abs_error: float
    kink: bool | None  # the central difference reaches a ReLU kink (None: not looked for)
    passed: bool
    step: float | None = None  # of the central difference: the report's h, or a smaller one
    retried: bool = False  # failed at h clear of kinks, differenced again at h / RETRY

    @property
    def finite(self) -> bool:
        """Whether both derivatives are finite; one that is inf or nan fails, at a kink too."""
        return math.isfinite(self.numerical) and math.isfinite(self.analytic)


@dataclass(repr=False)
class DirectionalReport(_Displayed):
    """The result of :func:`directional_check`: one :class:`DirectionCheck` per direction.

    It passes when every direction compared passes, there is at least one, and no
    derivative (kinks included) is inf or nan. A direction across a kink is compared when
    it agrees anyway, as :func:`compare` does elements: a float32 check of ReLU networks
    crosses one in nearly every direction. When one compared disagrees, or none is
    compared, ``fallback`` is the element-wise check of the parameters
    (:func:`directional_check`), and it passes when that does and no derivative is inf or
    nan.
    """

    h: float
    atol: float
    rtol: float
    dtype: str
    seed: int
    params: list[str]
    directions: list[DirectionCheck] = field(default_factory=list)
    method: str = "directional"
    notes: list[str] = field(default_factory=list)
    fallback: GradientReport | None = None  # element by element, when directions failed
    unresolved: bool = False  # the atol is as large as every derivative compared

    @property
    def compared(self) -> list[DirectionCheck]:
        """The directions free of kinks, and those across one that agree anyway."""
        return [d for d in self.directions if not d.kink or d.passed]

    @property
    def disagreeing(self) -> list[int]:
        """The indices of the directions compared that fail: free of kinks, and beyond the
        tolerance."""
        return [i for i, d in enumerate(self.directions) if not (d.kink or d.passed)]

    @property
    def passed(self) -> bool:
        finite = all(d.finite for d in self.directions)
        if self.fallback is not None:
            return finite and self.fallback.passed
        compared = self.compared
        return bool(compared) and finite and all(d.passed for d in compared) and not self.unresolved

    @property
    def inconclusive(self) -> bool:
        """Whether every derivative is finite and nothing was tested: every direction
        compared passes within an atol as large as all their derivatives (``unresolved``),
        or the element-wise check it fell back to is inconclusive
        (:attr:`GradientReport.inconclusive`)."""
        if not all(d.finite for d in self.directions):
            return False
        if self.fallback is not None:
            return self.fallback.inconclusive
        return self.unresolved and all(d.passed for d in self.compared)

    def note_atol(self, tol: Atol) -> None:
        """Say what the atol ``tol`` at ``h`` leaves unresolved, as
        :meth:`GradientReport.note_atol` does: why a default atol grew above its floor, and
        ``unresolved`` when it is as large as every numerical derivative compared (a wrong
        gradient would pass as well)."""
        largest = max((abs(d.numerical) for d in self.compared), default=0.0)
        grown = tol.at(self.h) > tol.floor
        if grown:
            self.notes.append(_atol_note(tol, self.h, largest))
        self.unresolved = bool(self.compared) and _unresolved(tol, self.h, largest)
        if self.unresolved and not grown:
            rounding = max(tol.from_loss(self.h), tol.from_noise(self.h))
            what = "every directional derivative compared"
            self.notes.append(_floor_note(self.atol, rounding, what, largest))

    def __bool__(self) -> bool:
        return self.passed

    def as_dict(self) -> dict[str, Any]:
        fallback = None if self.fallback is None else self.fallback.as_dict()
        return {
            **asdict(self),
            "fallback": fallback,
            "passed": self.passed,
            "inconclusive": self.inconclusive,
        }

    def __str__(self) -> str:
        header = ("direction", "numerical", "analytic", "abs err", "result")
        rows = [
            (
                str(i),
                f"{d.numerical:.6e}",
                f"{d.analytic:.6e}",
                f"{d.abs_error:.3e}",
                _direction_result(d),
            )
            for i, d in enumerate(self.directions)
        ]
        lines = [
            f"directional gradient check ({self.dtype}, h={self.h:g}, "
            f"{len(self.directions)} random unit directions over {', '.join(self.params)}, "
            f"seed {self.seed}): (L(p + h v) - L(p - h v)) / 2h against grad . v, "
            f"pass when |analytic - numerical| <= {self.atol:g} + {self.rtol:g} * |numerical|",
            *_table(header, rows),
        ]
        again = [
            i
            for i, d in enumerate(self.directions)
            if d.step not in (None, self.h) and not d.retried
        ]
        if again:
            lines.append(
                f"refined: direction {', '.join(map(str, again))} crossed a kink at "
                f"h={self.h:g} and disagreed; differenced again at "
                f"h={self.directions[again[0]].step:g}"
            )
        retried = [str(i) for i, d in enumerate(self.directions) if d.retried]
        if retried:
            lines.append(
                f"retried: direction {', '.join(retried)} failed at h={self.h:g} clear of kinks; "
                f"differenced again at h={self.h / RETRY:g}, where a truncation error is "
                f"{RETRY**2} times smaller, and compared there with h's atol"
            )
        if not all(d.finite for d in self.directions):
            lines.append(
                "non-finite: a derivative is inf or nan; numerical: the loss overflows or is "
                "undefined at p +- h v (try a smaller h); analytic: backward computed it"
            )
        lines += self.notes
        if self.fallback is not None:  # the element-wise check's table and notes
            lines += ["  " + line for line in str(self.fallback).splitlines()[:-1]]
        lines.append(self.verdict())
        return "\n".join(lines)

    def verdict(self) -> str:
        """The report's last line: PASSED or FAILED; after a fallback, the element-wise
        check's verdict (INCONCLUSIVE too) unless a derivative is not finite."""
        if self.fallback is not None and all(d.finite for d in self.directions):
            return self.fallback.verdict()
        if self.inconclusive:
            return (
                "INCONCLUSIVE (the atol is as large as the directional derivatives: nothing "
                "was resolved)"
            )
        return "PASSED" if self.passed else "FAILED"

    def _summary(self) -> str:
        return (
            f"{self.verdict()}: {_counted(len(self.directions), 'direction')} over "
            f"{_counted(len(self.params), 'param')}, {self.method}, {self.dtype}"
        )


def _direction_result(d: DirectionCheck) -> str:
    if not d.finite:
        return "FAIL (non-finite)"
    if d.kink:
        return "ok (across a kink)" if d.passed else "kink (left out)"
    return "ok" if d.passed else "FAIL"


@contextmanager
def _moved(net: Any, values: dict[str, Any]) -> Iterator[None]:
    """Set some parameters for the duration of a ``with`` block, then restore them."""
    old = {name: net.params[name] for name in values}
    try:
        for name, value in values.items():
            net.params[name] = value
        yield
    finally:
        for name, value in old.items():
            net.params[name] = value


def require_directions(n_directions: int) -> None:
    if n_directions < 1:
        raise ValueError(f"n_directions must be at least 1, got {n_directions}")


def random_direction(arrays: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """A random direction of unit length over ``arrays`` (name -> array; a direction of
    their shapes, on their devices), drawn on the host."""
    host = {name: rng.standard_normal(tuple(a.shape)) for name, a in arrays.items()}
    norm = math.sqrt(sum(float(np.sum(v * v)) for v in host.values()))
    return {name: to_like(v / norm, arrays[name]) for name, v in host.items()}


def compare_directions(
    along: Callable[[int, float], tuple[float, float, bool]],
    loss_along: Callable[[np.ndarray], float],
    exact: np.ndarray, center: float, h: float, tol: Atol, rtol: float, small: float | None,
) -> list[DirectionCheck]:  # fmt: skip
    """One :class:`DirectionCheck` per random direction ``i``, whose analytic derivative
    is ``exact[i]``: ``along(i, step)`` gives the losses at ``p + step v_i`` and
    ``p - step v_i`` and whether going there crosses a kink that the layers report
    (False where nothing reports kinks); ``loss_along(moves)`` the loss after ``moves[i]``
    along each direction ``i``; ``center`` the loss at ``p``; ``tol`` the atol at each
    step; ``small`` the :func:`refined_step` (None for none)."""
    n = len(exact)
    found = [along(i, h) for i in range(n)]
    plus, minus = (np.array([f[k] for f in found]) for k in (0, 1))
    hooked = np.array([f[2] for f in found])
    steps = np.full(n, h)
    refined, retried = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    failing = ~within_tolerance(exact, (plus - minus) / (2 * h), tol.at(h), rtol)
    # A direction that crosses a kink at h and disagrees is taken again at the smaller
    # step, as check_gradients does elements: a ReLU input merely near 0 is clear there;
    # one that fails clear of kinks, again at h / RETRY, where a truncation error is
    # RETRY**2 times smaller.
    for i in np.flatnonzero(hooked & failing) if small is not None else ():
        plus[i], minus[i], hooked[i] = along(i, small)
        steps[i], refined[i] = small, True
    for i in np.flatnonzero(~hooked & ~refined & failing):
        plus[i], minus[i], hooked[i] = along(i, h / RETRY)
        steps[i], retried[i] = h / RETRY, True
    # Each direction's atol: at its step where refined, else h's (see RETRY).
    atol = np.where(refined, tol.at(small) if small is not None else 0.0, tol.at(h))
    # A kink the layers' hooks do not see (a layer of the user's) shows in the one-sided
    # differences, as in check_gradients, confirmed at half the step (two more passes
    # each), at the step of the direction's central difference.
    one_sided = np.zeros(n, dtype=bool)
    for group in (refined, retried, ~refined & ~retried):
        if group.any():  # one step and one atol a group
            step, group_atol = float(steps[group][0]), float(atol[group][0])
            one_sided |= kinks_by_one_sided(
                loss_along, np.zeros(n), exact, plus, center, minus, step,
                group_atol, rtol, among=~hooked & group,
            )  # fmt: skip
    numeric = (plus - minus) / (2 * steps)
    checks = []
    for i in range(n):
        num, ana = float(numeric[i]), float(exact[i])
        err = abs(num - ana)
        checks.append(
            DirectionCheck(
                numerical=num,
                analytic=ana,
                abs_error=err,
                kink=bool(one_sided[i] or hooked[i]),
                passed=math.isfinite(err) and within_tolerance(ana, num, float(atol[i]), rtol),
                step=float(steps[i]),
                retried=bool(retried[i]),
            )
        )
    return checks


def fell_back_note(
    report: DirectionalReport, unseen_kink: str, what: str = "parameters"
) -> str | None:
    """Why ``report`` needs the element-wise check of its ``what`` (None where it does
    not): a direction compared disagreed (a wrong gradient, or ``unseen_kink``: a kink the
    check did not see), or none was compared; None too where a derivative is not finite,
    which fails whatever the elements say."""
    failed = [str(i) for i in report.disagreeing]
    if (report.compared and not failed) or not all(d.finite for d in report.directions):
        return None
    why = (
        f"direction{'s' * (len(failed) > 1)} {', '.join(failed)} disagreed (a wrong "
        f"gradient, or {unseen_kink})"
        if failed
        else "no direction was compared (every one crossed a kink and disagreed: a ReLU "
        "input of exactly 0, as BatchNorm on one sample or on a feature constant in "
        "the batch, or a zero bias on blank inputs, gives one in every direction)"
    )
    return (
        f"fell back: {why}, so the {what} ({', '.join(report.params)}) were checked element "
        "by element, their elements at kinks reported apart; the verdict is that check's"
    )


def directional_check(
    net: Any,
    x: Any,
    t: Any,
    *,
    n_directions: int = 3,
    seed: int = 0,
    h: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    params: Iterable[str] | None = None,
    memory_budget: int | str | None = None,
) -> DirectionalReport:
    """Check backprop along ``n_directions`` random unit directions ``v`` (seeded).

    Per direction, two forward passes give ``(L(p + h v) - L(p - h v)) / 2h``, compared
    with the analytic ``sum(grad * v)``: a fast check of the whole backward pass that
    gives no per-element gradient. ``params`` limits the directions to some parameters.
    A direction whose step reaches a kink and disagrees is reported and left out of
    pass/fail, as in :func:`check_gradients`: found by the layers' ``kinks`` methods
    (ReLU, max pooling; layered networks), a direction that crosses one and disagrees
    being taken again at the smaller step of :func:`refined_step` (two more passes), where
    a ReLU input merely near 0 is clear; or, for any layer, by the one-sided differences
    along ``v`` (confirmed at half the step, two more passes per direction they flag). The
    loss is the training-mode one, the network held still as in :func:`check_gradients`.

    When a direction compared disagrees (a wrong gradient, or a kink that no layer
    reports and the one-sided differences miss: a ReLU of the user's own whose inputs sit
    at 0 on both sides of a direction), or none is compared, every one across a kink and
    disagreeing (a ReLU input of exactly 0 moves in every direction: BatchNorm on one
    sample, a zero bias on blank pixels), the parameters are checked element by element
    instead, as :func:`check_gradients` does by default (local perturbations within
    ``memory_budget``, the loop where the layers do not allow them): the elements at kinks
    are reported apart, and the report's ``fallback`` gives the verdict.
    """
    require_directions(n_directions)
    _require_samples(x)
    require_finite_point(net, x, t)
    dtype, h, tol, rtol = _settings(net, h, atol, rtol)
    names = _param_names(net, params)
    with _input_restored(x) as given, _held_for_checking(net, x, t, seed) as (t, center):
        analytic = gradient_after_decoy(net, x, t)
        local = LocalNet.of(net, x, t)
        tol = _at_the_point(tol, net, x, t, names, local, center, h, seed)
        rng = host_rng(seed)
        xp = namespace_of(analytic[names[0]])
        small = refined_step(h, dtype)

        def along(i: int, step: float) -> tuple[float, float, bool]:
            """The losses at ``p + step v`` and ``p - step v`` along direction ``i``, and
            whether going there crosses a kink of the layers' (False where they are not
            looked at)."""
            losses, moved = [], []
            for s in (step, -step):
                with _moved(net, {n: net.params[n] + s * directions[i][n] for n in names}):
                    losses.append(float(training_loss(net, x, t)))
                    if local is not None:
                        moved.append(local.inputs_at(local.inputs[0]))
            crossed = local is not None and crosses_kink(local.layers, local.inputs, *moved)
            return losses[0], losses[1], bool(crossed)

        directions = [
            random_direction({n: net.params[n] for n in names}, rng) for _ in range(n_directions)
        ]
        exact = np.array(
            [float(sum(xp.sum(analytic[n] * v[n]) for n in names)) for v in directions]
        )

        def loss_along(moves: np.ndarray) -> float:
            """The loss after ``moves[i]`` along direction ``i``, for each i."""
            taken = [(float(s), v) for s, v in zip(moves, directions, strict=True) if s]
            moved_to = {n: net.params[n] + sum(s * v[n] for s, v in taken) for n in names}
            with _moved(net, moved_to):
                return float(training_loss(net, x, t))

        report = DirectionalReport(
            h=h, atol=tol.at(h), rtol=rtol, dtype=dtype, seed=seed, params=names
        )
        report.directions = compare_directions(
            along, loss_along, exact, center, h, tol, rtol, small
        )
        report.note_atol(tol)
        note = fell_back_note(
            report,
            "a kink no layer reports: a ReLU of your own whose inputs sit at 0 on both sides "
            "of a direction",
        )
        if note is not None:
            differences = _numerical(
                net, x, t, names, method="batched", h=h, budget=memory_budget, local=local
            )
            report.fallback = _element_wise(
                net, x, t, names, analytic, differences, local, tol, center,
                method="batched", h=h, rtol=rtol, dtype=dtype, budget=memory_budget,
                given=given, seed=seed,
            )  # fmt: skip
            report.notes.append(note)
    return report
