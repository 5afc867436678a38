"""Numerical differences: the book's central difference and a network's numerical gradient.

``numerical_gradient(f, x)`` differences ``f`` element by element,
``(f(x + h e_i) - f(x - h e_i)) / 2h``, moving ``x`` itself as the book does;
``net_numerical_gradient(net, x, t)`` does it for a network's parameters, by the loop or
by local perturbations (:mod:`xpnet.perturb`) in chunks under a memory budget
(:func:`memory_budget`). Also here: the steps actually taken in a dtype
(:func:`steps_of`), the default step and tolerances per dtype (``DEFAULTS``,
:func:`check_step`), and the values of a function around a point (:func:`values_around`)
that one-sided differences read.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import product
from typing import Any

import array_api_compat
import numpy as np

from xpnet.backend import dtype_name, namespace_of, spread, to_like, to_numpy
from xpnet.checks import is_real
from xpnet.decoy import _held_for_checking
from xpnet.perturb import LocalNet, central_differences, loop_differences, training_loss
from xpnet.schema import is_number

# Step and tolerances per dtype, for within_tolerance; the default atol is at least
# ``atol``, and grows with the loss (:class:`Atol`).
DEFAULTS = {
    "float64": {"h": 1e-5, "atol": 1e-8, "rtol": 1e-4},
    "float32": {"h": 1e-2, "atol": 1e-3, "rtol": 1e-2},
}


GRADIENT_METHODS = ("loop", "batched")
MEMORY_ENV_VAR = "XPNET_GRADCHECK_MEMORY"
DEFAULT_MEMORY_BUDGET = 64 * 2**20
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


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
