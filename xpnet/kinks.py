"""Kinks: telling a central difference that straddles a kink from a wrong gradient.

An element whose perturbation crosses a kink (ReLU's at 0) has a central difference that
can be wrong by design. It is differenced again at a smaller step (:func:`refined_step`);
one that still straddles a kink there (:func:`straddles_kink`, by one-sided differences
where a layer cannot tell, up to ``ONE_SIDED_LIMIT`` a parameter) is reported as a kink
and left out of pass/fail, kinks moved together (:func:`kinks_together`); those left
unexplained in float32 are differenced again on a float64 copy of the network
(:func:`_differenced_in_float64`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from xpnet.backend import dtype_name, namespace_of, to_numpy
from xpnet.conversion import network_to
from xpnet.layers import is_floating_array
from xpnet.numerical import (
    DEFAULTS,
    _indices,
    _loss_at,
    _Numerical,
    _sample_of,
    _steps_taken,
    values_around,
)
from xpnet.perturb import training_loss
from xpnet.tolerance import RETRY, Atol, tolerances, within_tolerance

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


def _worst(error: Any, among: Any) -> tuple[int, ...]:
    """The index of the largest of the ``error`` elements (>= 0) that ``among`` (bool, same
    shape, some true) marks: the first, where several tie."""
    xp = namespace_of(error)
    flat = int(xp.argmax(xp.reshape(xp.where(among, error, -xp.ones_like(error)), (-1,))))
    return tuple(int(i) for i in np.unravel_index(flat, tuple(error.shape)))


def _count(mask: Any) -> Any:
    """How many elements of the bool array ``mask`` are true: a 0-D int64 array."""
    xp = namespace_of(mask)
    return xp.sum(xp.astype(mask, xp.int64))


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
