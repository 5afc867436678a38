"""Gradient checks of one layer or one function, in the spirit of Chainer's
``check_backward`` and PyTorch's ``gradcheck``.

- :func:`check_layer` runs a layer's ``forward`` on the given inputs, sends a seeded
  random upstream gradient ``dout`` (1 for a loss) back through its ``backward``, and compares what
  comes out (the input gradients, and ``d<name>`` for each parameter in ``params``) with
  central differences of ``sum(forward(...) * dout)``, everything in float64; a layer
  drawing random numbers with a :class:`~xpnet.backend.DeviceRNG` (Dropout) is held to
  one draw (:mod:`xpnet.held`), and a ``forward`` that still changes between two calls
  is refused.
- :func:`check_function` compares a gradient the user worked out for a scalar function
  ``f`` (a number or a 0-D array; anything else is a ``ValueError``) with central
  differences of ``f``: CS231n's ``eval_numerical_gradient`` with a verdict. The gradient
  must be an array of ``x``'s shape (``TypeError`` for a function or a list). For an ``f``
  with an array output, ``backward=`` takes its vector-Jacobian product instead, checked
  for one seeded random ``dout`` as :func:`check_layer` checks a layer's ``backward``.

Both return a :class:`~xpnet.gradcheck.GradientReport` (a
:class:`~xpnet.gradcheck.DirectionalReport` with ``method="directional"``). A function is
not differentiable at a kink (ReLU's 0, a max changing hands): there the central
difference straddles the kink and is wrong by design. Such elements are found from the
one-sided differences ``(f(x + h) - f(x)) / h`` and ``(f(x) - f(x - h)) / h``: they differ
by the jump in slope, and the analytic gradient agrees with one of them, at ``h`` and at
``h / 2``. They are
reported apart and left out of pass/fail; an analytic gradient that matches neither side
still fails, and so do kinks that disagree when moved together, each to the side its
gradient matched: an array's, then those of all the arrays checked (the whole gradient
given to each of two tied maxima, of one input or of two: ``maximum(x, y)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import Any, NamedTuple

import array_api_compat
import numpy as np
from array_api_compat import is_array_api_obj

from xpnet.backend import (
    BackendMismatchError,
    dtype_name,
    host_rng,
    library_of,
    namespace,
    namespace_of,
    require_finite,
    to_numpy,
    untracked,
)
from xpnet.checks import shape_mistake
from xpnet.decoy import decoy, floating_attributes, writes_during
from xpnet.directional import (
    DirectionalReport,
    compare_directions,
    fell_back_note,
    random_direction,
    require_directions,
)
from xpnet.gradcheck import NOT_FINITE, _in_place_note, _largest, compare, kink_mask, swapped_pairs
from xpnet.gradreport import GradientReport, ParamCheck
from xpnet.held import held, require_deterministic, require_finite_value, same_values
from xpnet.kinks import kinks_by_one_sided, kinks_together, matched_side
from xpnet.layers import (
    is_real_floating,
    own_params,
    require_layer_methods,
    require_named_sublayers,
    undeclared_parameters,
    walk_from,
)
from xpnet.numerical import _check_method, _steps_taken, scalar_valued, steps_of, values_around
from xpnet.schema import is_number
from xpnet.tolerance import RETRY, ROUNDING, Atol, tolerances, within_tolerance

PRECISION = "precision: "  # the note on a dtype that rounds more than float64
#: The median growth of the retried elements' errors from ``h`` to ``h / RETRY`` above
#: which (up to ``RETRY * GROWN``) the report says ``f`` rounds more than float64:
#: rounding's error grows about RETRY-fold, a wrong gradient's stays and a truncation
#: error falls RETRY**2-fold. Kinks within h, whose claims fit neither side, grew 46-fold.
GROWN = 3
MARGIN = 4  # the atol the rounding note advises, over the largest error it saw at h
FUNCTION_METHODS = ("loop", "directional")


def _is_float(x: Any) -> bool:
    if is_array_api_obj(x):
        return namespace_of(x).isdtype(x.dtype, "real floating")
    return isinstance(x, float)


def _float64(xp: Any, x: Any, like: Any) -> Any:
    """``x`` (an array or a Python float) as a float64 array of ``xp`` on ``like``'s device."""
    if is_array_api_obj(x):  # a copy, and one PyTorch's autograd does not track
        return xp.astype(untracked(x), xp.float64, copy=True)
    return xp.asarray(x, dtype=xp.float64, device=array_api_compat.device(like))


def _numerical(
    f: Callable[[Any], Any], x: Any, center: Any, analytic: Any, h: float, tol: Atol, rtol: float
) -> tuple[Any, Any, int, int, Any, tuple[float, float] | None]:
    """Central differences of ``f`` at ``x`` (``f(x)`` is ``center``), where they straddle a
    kink (bool), how many elements were differenced again and how many converged, the
    one-sided difference at ``h`` that ``analytic`` is nearer to (+1 forward, -1 backward),
    and how the errors of the elements differenced again clear of kinks grew there
    (:func:`_error_growth`): one that fails clear of kinks is differenced again at
    ``h / RETRY`` (where a truncation error is ``RETRY**2`` times smaller, that of
    rounding ``RETRY`` times larger) and compared there, with the same ``atol``, as
    :func:`~xpnet.gradcheck.check_gradients` does. One that still fails is differenced at
    ``h / RETRY**2`` too (:func:`_converged`). ``tol`` gives the atol at each step.

    Unlike :func:`~xpnet.gradcheck.check_gradients`, no rounding noise of ``f`` is
    measured: nothing reports ``f``'s kinks here, and a measurement that crosses them
    (two failing elements near kinks, either side) grew the atol enough to pass a wrong
    gradient elsewhere. So a sum of large terms that cancel can fail a correct gradient;
    a user's ``atol`` is the way out."""
    xp = namespace_of(x)
    atol = tol.at(h)
    plus, minus = values_around(f, x, h)
    kinks = kinks_by_one_sided(f, x, analytic, plus, center, minus, h, atol, rtol)
    side = matched_side(analytic, plus, center, minus, h)
    central = (plus - minus) / _steps_taken(xp, x, h)
    bend = plus + minus - 2 * center
    step = h / RETRY
    # Divided by the step x took, as numerical_gradient does: at x = 1e7, x + h / RETRY is
    # off by 1e-3 of the step; an element whose smaller step rounds away is not retried.
    taken = steps_of(xp, x, step)
    again = ~within_tolerance(analytic, central, atol, rtol) & ~kinks & (taken > 0)
    where = [tuple(int(i) for i in idx) for idx in np.argwhere(to_numpy(again))]
    converged, growth = 0, None
    if where:
        plus, minus = values_around(f, x, step, indices=where)
        redone = kinks_by_one_sided(
            f, x, analytic, plus, center, minus, step, atol, rtol, among=again
        )
        taken = xp.where(again, taken, xp.ones_like(taken))
        coarse, central = central, xp.where(again, (plus - minus) / taken, central)
        kinks = kinks | redone
        still = again & ~kinks & ~within_tolerance(analytic, central, atol, rtol)
        bends = (bend, plus + minus - 2 * center)
        growth = _error_growth(analytic, coarse, central, again, bends)
        central, converged = _converged(f, x, analytic, coarse, central, still, h, tol, rtol)
    return central, kinks, len(where), converged, side, growth


def _error_growth(
    analytic: Any, coarse: Any, fine: Any, among: Any, bends: tuple[Any, Any]
) -> tuple[float, float] | None:
    """Over ``among`` (bool; elements that failed at the coarse step), the median of
    ``|analytic - fine| / |analytic - coarse|`` and the largest ``|analytic - coarse|``;
    None where there are none, or where ``bends``, the second differences
    ``f(x + s) - 2 f(x) + f(x - s)`` at both steps over the step, did not grow ``GROWN``-fold
    too (in median). Rounding's grow tenfold, as its errors do; a smooth function's fall
    tenfold, and those across a kink a fraction of the step away (whose central
    difference's error grows tenfold too, docs/gradcheck.md) stay the jump in slope."""
    picked = to_numpy(among)
    if not picked.any():
        return None
    coarse_bend, fine_bend = (np.abs(to_numpy(b)[picked]) for b in bends)
    with np.errstate(divide="ignore", invalid="ignore"):
        bent = RETRY * fine_bend / coarse_bend  # nan where neither step bends: left out
    if np.isnan(bent).all() or not np.nanmedian(bent) >= GROWN:
        return None
    claimed = to_numpy(analytic)[picked]
    coarse_error = np.abs(claimed - to_numpy(coarse)[picked])
    fine_error = np.abs(claimed - to_numpy(fine)[picked])
    return float(np.median(fine_error / coarse_error)), float(coarse_error.max())


def _converged(
    f: Callable[[Any], Any], x: Any, analytic: Any, coarse: Any, fine: Any, still: Any,
    h: float, tol: Atol, rtol: float,
) -> tuple[Any, int]:  # fmt: skip
    """``fine`` (the central differences at ``h / RETRY``; ``coarse`` at ``h``) with the
    elements ``still`` (bool) that converge to ``analytic`` replaced by the limit of
    ``coarse`` and ``fine``, and how many. Where the second derivative jumps (``x * |x|``
    at 0) a central difference is off by O(step), not O(step**2), so the retry at
    ``h / RETRY`` only takes a tenth off the error. Such an element is differenced once
    more at ``h / RETRY**2``; it converges when the error falls in proportion to the
    step: the first-order Richardson limits of both pairs of steps,
    ``fine + (fine - coarse) / (RETRY - 1)``, pass. The first is compared with the atol of
    ``h`` (``tol.at``), as the retry is; the second with that of ``h / RETRY**2``, grown by
    the loss's rounding there: at the default h that step (1e-7) is below
    :func:`~xpnet.kinks.refined_step`'s floor, and its rounding (``eps * |f| / step``)
    failed a correct element from a loss of 30 on. A wrong gradient's error stays as the
    step shrinks, and the first limit fails it. A smooth function's truncation error ``e``
    at ``coarse``, which falls ``RETRY**2``-fold, puts the two limits ``0.1 e`` and
    ``0.001 e`` off the derivative: a gradient passing both is off by at most about the
    atol (the retry alone passes one off by ``atol + 0.01 e``)."""
    xp = namespace_of(x)
    finer = h / RETRY**2
    taken = steps_of(xp, x, finer)
    still = still & (taken > 0)
    where = [tuple(int(i) for i in idx) for idx in np.argwhere(to_numpy(still))]
    if not where:
        return fine, 0
    plus, minus = values_around(f, x, finer, indices=where)
    finest = (plus - minus) / xp.where(still, taken, xp.ones_like(taken))
    limit = fine + (fine - coarse) / (RETRY - 1)
    passed = within_tolerance(analytic, limit, tol.at(h), rtol)
    finest_limit = finest + (finest - fine) / (RETRY - 1)
    passed = still & passed & within_tolerance(analytic, finest_limit, tol.at(finer), rtol)
    return xp.where(passed, limit, fine), int(np.count_nonzero(to_numpy(passed)))


class _Row(NamedTuple):
    """:func:`_check`'s row of one array: its :class:`ParamCheck`, the atol it was compared
    with (grown with ``f(x)``, its ``loss``), its largest numerical derivative, the claimed
    gradient (float64) and the numerical one it was compared with, and where it has kinks,
    for moving them together with other arrays': the kinks (bool; None for none) and the
    side each matched (:func:`matched_side`); and how its retried elements' errors grew
    (:func:`_error_growth`)."""

    check: ParamCheck
    tol: Atol
    largest: float
    analytic: Any
    numerical: Any
    kinks: Any
    side: Any
    growth: tuple[float, float] | None


def _report(subject: str, h: float | None, atol: float | None, rtol: float | None):
    h, tol, rtol = tolerances("float64", h, atol, rtol)
    report = GradientReport(
        method="loop", h=h, atol=tol.at(h), rtol=rtol, dtype="float64", subject=subject
    )
    return report, tol


def _claimed(name: str, x: Any, analytic: Any) -> Any:
    """The gradient ``analytic`` claimed for ``x`` (named ``name``), as a float64 array;
    a ``TypeError`` or ``ValueError`` for one that is not a real array of ``x``'s shape."""
    if not is_array_api_obj(analytic):
        hint = f": pass its value at {name}" if callable(analytic) else ""
        raise TypeError(
            f"the gradient of {name} must be an array of {name}'s shape {tuple(x.shape)}, "
            f"got {type(analytic).__name__}{hint}"
        )
    _require_library(f"the gradient of {name} is", analytic, x)
    if tuple(analytic.shape) != tuple(x.shape):
        raise ValueError(
            f"the gradient of {name} has shape {tuple(analytic.shape)}, but {name} has shape "
            f"{tuple(x.shape)}{shape_mistake(tuple(analytic.shape), tuple(x.shape))}"
        )
    xp = namespace_of(x, analytic)
    if xp.isdtype(analytic.dtype, "complex floating"):
        # astype would drop the imaginary part (with a warning at most) and compare the rest
        raise ValueError(
            f"the gradient of {name} has the complex dtype {analytic.dtype}: the gradient of "
            "a real function is real"
        )
    return xp.astype(untracked(analytic), xp.float64)


def _require_library(what: str, value: Any, like: Any) -> None:
    """Refuse an array ``value`` of another library than the array ``like``, the inputs':
    ``what`` (``"Sq.forward returned"``) then names it. It is the mark of ``np.``
    functions given another library's arrays, which otherwise fails later, in that
    library's words (array_api_strict: ``Unsupported device 'cpu'``)."""
    if not is_array_api_obj(value):
        return
    got, expected = library_of(value), library_of(like)
    if got == expected:
        return
    raise BackendMismatchError(
        f"{what} an array of {got}, but the inputs are arrays of {expected}: compute with the "
        "inputs' namespace, xp = xpnet.backend.namespace_of(x) (xp.exp, xp.sum, ...)"
        + (", not NumPy's np. functions" if got == "numpy" else "")
    )


def _check(
    name: str, f: Callable[[Any], Any], x: Any, analytic: Any, report: GradientReport, tol: Atol
) -> _Row:
    """The row of ``name`` (``f``'s argument ``x``, claimed gradient ``analytic``), its
    kinks moved together (:func:`~xpnet.kinks.kinks_together`); :func:`_add_rows` puts
    rows into ``report``."""
    analytic = _claimed(name, x, analytic)
    center = f(x)
    loss = float(center)
    require_finite_value(_evaluated(report.subject), loss)
    if is_array_api_obj(center):
        _note_once(report, _precision_note(report.subject, center, abs(loss), report.h))
    tol = replace(tol, loss=loss)
    atol = tol.at(report.h)
    central, kinks, retried, converged, side, growth = _numerical(
        f, x, center, analytic, report.h, tol, report.rtol
    )
    check = compare(name, analytic, central, atol, report.rtol, kinks=kinks, via="loop")
    kinked = kink_mask(check, x)
    if len(check.kink_elements) > 1:
        together = kinks_together(
            lambda moved: f(moved[0]), [x], center, [analytic], [kinked], [side], report.h,
            atol, report.rtol, check.kink_max_abs_error,
        )  # fmt: skip
        if together is not None:
            check = replace(check, passed=False, kinks_together=together)
    check = replace(check, retried=retried, converged=converged)
    return _Row(check, tol, _largest([central]), analytic, central, kinked, side, growth)


def _directional(
    f: Callable[[list[Any]], Any], names: list[str], points: list[Any], grads: list[Any],
    report: GradientReport, tol: Atol, n_directions: int, seed: int,
    element_wise: Callable[[], GradientReport],
) -> DirectionalReport:  # fmt: skip
    """Check the gradients ``grads`` of ``f`` (taking one value per array of ``points``,
    named ``names``) along ``n_directions`` random unit directions ``v`` over all the
    arrays together, seeded by ``seed``, as :func:`~xpnet.gradcheck.directional_check`
    does a network's parameters (:func:`~xpnet.directional.compare_directions`): two calls
    of ``f`` a direction, more for one that fails (a retry at ``h / RETRY``, the
    one-sided differences that find a kink along it). Where a direction compared
    disagrees, or none is compared, ``element_wise()`` is the report's ``fallback``.
    ``report`` gives the settings and the notes found so far, ``tol`` the default atol."""
    analytic = [_claimed(n, x, g) for n, x, g in zip(names, points, grads, strict=True)]
    center = f(points)
    loss = float(center)
    require_finite_value(_evaluated(report.subject), loss)
    if is_array_api_obj(center):
        _note_once(report, _precision_note(report.subject, center, abs(loss), report.h))
    tol = replace(tol, loss=loss)
    h, rtol = report.h, report.rtol
    # A stream of its own, as check_layer's dout: x drawn from host_rng(seed) would be
    # the first direction itself.
    rng = host_rng(seed).spawn(2)[1]
    arrays = dict(zip(names, points, strict=True))
    directions = [list(random_direction(arrays, rng).values()) for _ in range(n_directions)]
    exact = np.array(
        [
            sum(float(namespace_of(g).sum(g * u)) for g, u in zip(analytic, v, strict=True))
            for v in directions
        ]
    )

    def moved(steps: list[tuple[float, list[Any]]]) -> float:
        """``f`` after each ``(s, v)`` of ``steps``: ``s`` along ``v``."""
        return float(f([p + sum(s * v[j] for s, v in steps) for j, p in enumerate(points)]))

    def along(i: int, step: float) -> tuple[float, float, bool]:
        return moved([(step, directions[i])]), moved([(-step, directions[i])]), False

    def loss_along(moves: np.ndarray) -> float:
        return moved([(float(s), v) for s, v in zip(moves, directions, strict=True) if s])

    result = DirectionalReport(
        h=h, atol=tol.at(h), rtol=rtol, dtype="float64", seed=seed, params=names,
        notes=list(report.notes),
    )  # fmt: skip
    result.directions = compare_directions(along, loss_along, exact, loss, h, tol, rtol, None)
    result.note_atol(tol)
    note = fell_back_note(
        result,
        "kinks along it whose gradients match different sides: several elements at a kink",
        what="arrays",
    )
    if note is not None:
        fallback = element_wise()
        # Its notes found before the directions (the precision note, an input not
        # checked) are this report's already: printed once, above the fallback's table.
        fallback.notes = [n for n in fallback.notes if n not in result.notes]
        result.fallback = fallback
        result.notes.append(note)
    return result


def _evaluated(subject: str) -> str:
    """What a report on ``subject`` evaluates: ``function f`` for ``function f's backward``
    (whose scalar is ``sum(f(x) * dout)``), else the subject."""
    return subject.removesuffix("'s backward")


def _note_once(report: GradientReport, note: str | None) -> None:
    if note and note not in report.notes:
        report.notes.append(note)


def _rounding_advice(atol: float) -> str:
    return f"compute in the input's dtype (float64), or pass an atol that covers it ({atol:.2g})"


def _precision_note(what: str, value: Any, size: float, h: float) -> str | None:
    """What the rounding of ``value`` (``what`` computed it from float64 inputs; ``size``
    is ``|f|``, or ``sum(|forward * dout|)`` for a layer) makes of a central difference at
    ``h``, where its real floating dtype is less precise than float64 (None otherwise).
    The atol it advises has the default atol's margin over that (:class:`Atol`): the
    float32 example of docs/gradcheck.md erred by 4 times ``eps * |f| / h``."""
    xp = namespace_of(value)
    if not xp.isdtype(value.dtype, "real floating"):
        return None
    eps = float(xp.finfo(value.dtype).eps)
    if eps <= float(np.finfo(np.float64).eps):
        return None
    dtype = dtype_name(value)
    return (
        f"{PRECISION}{what} computes in {dtype}, from float64 inputs: {dtype}'s rounding "
        f"makes about eps {eps:.3g} x |f| {size:.3g} / h {h:g} = {eps * size / h:.2g} of a central "
        f"difference, which a wrong gradient's error cannot be told from; "
        + _rounding_advice(Atol(0.0, eps, size).from_loss(h))
        + f", {ROUNDING} * eps * max(|f|, 1) / h as the default atol's margin"
    )


def _growth_note(rows: list[_Row], h: float) -> str | None:
    """What errors that grew at the retry say (:data:`GROWN`; None where none grew so)."""
    grew = {
        row.check.name: row.growth
        for row in rows
        if row.growth and GROWN <= row.growth[0] <= RETRY * GROWN
    }
    if not grew:
        return None
    named = ", ".join(f"{ratio:.2g} times ({name})" for name, (ratio, _) in grew.items())
    largest = max(error for _, error in grew.values())
    return (
        f"rounding: the errors of the elements retried at h={h / RETRY:g} grew there, a "
        f"median {named}, as rounding's do (about {RETRY}-fold; a wrong gradient's error "
        f"stays, a truncation error falls {RETRY**2}-fold): f rounds more than float64 "
        "(it computes in lower precision inside, or adds large terms that cancel); its "
        f"errors at h={h:g} were up to {largest:.2g}, what it makes of a difference there: "
        + _rounding_advice(MARGIN * largest)
        + f", {MARGIN} times that, as rounding varies from element to element"
    )


def _kinks_between(
    rows: list[_Row], points: list[Any], f: Callable[[list[Any]], Any], report: GradientReport
) -> list[_Row]:
    """``rows`` (of the arrays ``points``, ``f`` taking one value per row), with the kinks
    of every array that has some moved together in one direction, each to its matched side
    (:func:`~xpnet.kinks.kinks_together`): a ``maximum(x, y)`` giving the whole
    gradient to both inputs at a tie matches a side at each, and each array's kinks agree
    among themselves. Where they disagree, each of those rows fails. Nothing is evaluated
    unless two arrays or more have kinks and none failed alone."""
    kinked = [i for i, row in enumerate(rows) if row.kinks is not None]
    if len(kinked) < 2 or any(rows[i].check.kinks_together for i in kinked):
        return rows
    others = [i for i in range(len(rows)) if i not in kinked]

    def moving(values: list[Any]) -> Any:
        at = dict(zip(kinked, values, strict=True)) | {i: points[i] for i in others}
        return f([at[i] for i in range(len(rows))])

    first = rows[kinked[0]]
    together = kinks_together(
        moving, [points[i] for i in kinked], first.tol.loss,
        *([getattr(rows[i], a) for i in kinked] for a in ("analytic", "kinks", "side")),
        report.h, first.tol.at(report.h), report.rtol,
        max(rows[i].check.kink_max_abs_error for i in kinked),
    )  # fmt: skip
    if together is None:
        return rows
    names = [rows[i].check.name for i in kinked]
    rows = list(rows)
    for i in kinked:
        others_named = tuple(n for n in names if n != rows[i].check.name)
        check = replace(
            rows[i].check, passed=False, kinks_together=together, together_with=others_named
        )
        rows[i] = rows[i]._replace(check=check)
    return rows


def _add_rows(report: GradientReport, rows: list[_Row]) -> None:
    """Put :func:`_check`'s rows into ``report``. A default atol grown with f's value (the
    same value for every row) is the report's atol and is noted once, against the largest
    numerical derivative of each row: the check resolves nothing only when that atol is
    as large as every row's derivatives, whatever their order, and the verdict names the
    rows whose derivatives it is as large as. Errors that grew at the retry are noted
    (:func:`_growth_note`), and rows whose gradients were swapped named
    (:func:`~xpnet.gradcheck.swapped_pairs`)."""
    checks = [row.check for row in rows]
    report.params += checks
    report.swapped = swapped_pairs(
        checks,
        {row.check.name: row.analytic for row in rows},
        {row.check.name: row.numerical for row in rows},
        {row.check.name: row.tol.at(report.h) for row in rows},
        report.rtol,
    )
    if rows:
        report.note_atol(rows[0].tol, {row.check.name: row.largest for row in rows})
    if not any(note.startswith(PRECISION) for note in report.notes):  # that named the cause
        _note_once(report, _growth_note(rows, report.h))


@contextmanager
def _in_float64(layer: Any, attrs: list[str]) -> Iterator[None]:
    """Set the layer's floating attributes ``attrs`` to float64 copies, restore them after."""
    old = {a: getattr(layer, a) for a in attrs}
    try:
        for a, value in old.items():
            if is_array_api_obj(value) and _is_float(value):
                setattr(layer, a, namespace_of(value).astype(value, namespace_of(value).float64))
        yield
    finally:
        for a, value in old.items():
            setattr(layer, a, value)


def _kind_of(x: Any) -> str:
    """The dtype of an array, else the type name: ``"int64"``, ``"float"``."""
    return str(x.dtype) if is_array_api_obj(x) else type(x).__name__


def _require_arrays_or_numbers(kind: str, names: list[str], inputs: tuple[Any, ...]) -> None:
    """Refuse an input that is neither an array nor a Python number (a list of values)."""
    for name, x in zip(names, inputs, strict=True):
        if not (is_array_api_obj(x) or isinstance(x, (int, float, complex))):
            raise TypeError(
                f"check_layer({kind}): input {name} must be an array or a Python number, got "
                f"{type(x).__name__} {x!r:.40}: pass xp.asarray({name}) (numpy.asarray, or "
                "xpnet.backend.to_device for the current device)"
            )


def _require_something_to_check(
    kind: str, names: list[str], inputs: tuple[Any, ...], params: list[str]
) -> None:
    """Refuse a check with no floating input and no parameter: it would check nothing."""
    if params or any(_is_float(x) for x in inputs):
        return
    given = ", ".join(f"{n} ({_kind_of(x)})" for n, x in zip(names, inputs, strict=True))
    raise ValueError(
        f"check_layer({kind}): nothing to check: no floating inputs or parameters; the "
        f"inputs are {given}; pass real floating inputs (e.g. float64 arrays)"
    )


def _require_input_gradients(
    kind: str, names: list[str], inputs: list[Any], grads: list[Any], params: list[str]
) -> None:
    """Refuse a ``backward`` that returned no gradient for any floating input of a layer
    without parameters (``grads`` one per input): the check would compare nothing."""
    if params or any(g is not None for x, g in zip(inputs, grads, strict=True) if _is_float(x)):
        return
    floating = [n for n, x in zip(names, inputs, strict=True) if _is_float(x)]
    raise ValueError(
        f"{kind}.backward returned no input gradient for the floating input(s) "
        f"{', '.join(floating)}, and {kind} has no parameters: nothing to check; backward "
        "must return dx (a tuple, one per input, for several inputs)"
    )


def _is_loss(out: Any, inputs: list[Any]) -> bool:
    """Whether a layer's output ``out`` is a loss: 0-D, from floating arrays that are not
    (the book's ``SoftmaxWithLoss``, not its apples' ``MulLayer``)."""
    return out.ndim == 0 and any(x.ndim > 0 for x in inputs if _is_float(x))


def _require_a_tuple_for_several_inputs(
    kind: str, names: list[str], inputs: list[Any], grad: Any, loss: bool
) -> None:
    """Refuse one array from the ``backward`` of a layer with several floating inputs that
    is no ``loss``: the book's ``MulLayer`` returns ``dx, dy``, and a ``backward`` returning
    ``dx`` alone leaves ``dy`` unchecked. A loss layer returns the gradient of its first
    input alone: its targets need none."""
    floating = [n for n, x in zip(names, inputs, strict=True) if _is_float(x)]
    if grad is None or len(floating) < 2 or loss:
        return
    grads = ", ".join(f"d{n}" for n in floating)
    raise ValueError(
        f"{kind}.backward returned one array for its {len(floating)} floating inputs "
        f"{', '.join(floating)}: return a gradient for each, as a tuple ({grads}), "
        "with None for an input that needs none"
    )


def _require_inputs_unchanged(
    kind: str, names: list[str], before: list[Any], after: list[Any], xp: Any,
    inner_writes: Callable[[], list[str]], method: str = "forward",
) -> None:  # fmt: skip
    """Refuse a ``forward`` that wrote into a floating input (``before``: copies taken
    ahead of the call, ``None`` for the others), or a ``backward`` that wrote into the
    input its forward cached: the check would difference the changed values (the book's
    ReLU without its ``copy()`` turns every negative input into a kink at 0, and passes),
    and in a network it changes what the previous layer holds. The refusal names the
    layers inside that wrote into their inputs (``inner_writes()``, a line each,
    :func:`~xpnet.decoy.writes_during`), where the block has some."""
    for name, old, new in zip(names, before, after, strict=True):
        if old is None:
            continue
        if not same_values(xp, old, new):
            inside = "; ".join(inner_writes()) if method == "forward" else ""
            what = f"its input {name}" + (", which forward cached" if method != "forward" else "")
            advice = (
                "compute the output into a new array (the book's ReLU copies first: out = x.copy())"
                if method == "forward"
                else "compute the gradients into new arrays"
            )
            raise ValueError(
                f"{kind}.{method} wrote into {what}"
                + (f" (inside it, {inside})" if inside else "")
                + f": a layer must not change the arrays it is given; {advice}"
            )


def _not_one_output(out: Any) -> str | None:
    """What ``out`` is when it is not one array or number (``"tuple of 2"``, ``"dict"``):
    ``backward(dout)`` takes the gradient of one output; None for one."""
    if is_array_api_obj(out) or is_number(out):
        return None
    what = type(out).__name__
    return f"{what} of {len(out)}" if isinstance(out, (tuple, list)) else what


def _require_one_output(kind: str, out: Any) -> None:
    """Refuse a ``forward`` output that is not one array or number (a tuple of outputs):
    the protocol's ``backward(dout)`` takes the gradient of one output."""
    what = _not_one_output(out)
    if what is None:
        return
    raise ValueError(
        f"{kind}.forward returned a {what}: check_layer checks a layer with one output array, "
        "whose backward(dout) takes its gradient; for several outputs y1, y2, check the "
        "scalar sum(y1 * d1) + sum(y2 * d2) with check_function"
    )


def _left_alone(layer: Any, before: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """The attributes of ``before`` (:func:`~xpnet.decoy.floating_attributes`, taken ahead of
    ``forward``) that ``forward`` left as they were, the same array with the same values:
    what it replaces or writes into (``self.x[...] = x``) is a cache, not a parameter."""
    return {
        name: value
        for name, (value, copy) in before.items()
        if getattr(layer, name, None) is value and same_values(namespace_of(value), copy, value)
    }


def _input_names(layer: Any, count: int) -> list[str]:
    try:
        names = [
            p.name
            for p in inspect.signature(layer.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        names = []
    if len(names) < count:
        names = [f"x{i}" for i in range(1, count + 1)]
    return names[:count]


def check_layer(
    layer: Any,
    *inputs: Any,
    h: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    forward_kwargs: Mapping[str, Any] | None = None,
    method: str = "loop",
    n_directions: int = 3,
) -> GradientReport | DirectionalReport:
    """Check ``layer.backward`` against central differences of ``layer.forward``, in float64.

    ``layer`` follows the layer protocol: ``forward(*inputs)``, ``backward(dout)`` returning
    the gradient of the input (a tuple, one per input, for several), and parameters named
    in ``params`` with gradients stored as ``d<name>``; a layer made of layers
    (``sublayers``) has those of the layers inside it checked too, as ``inner.W`` (the
    attribute's path). Floating inputs (arrays or Python
    floats) and parameters are checked in float64 copies; integer inputs (labels) are
    passed as they are. ``dout`` is drawn from a normal distribution seeded by ``seed``,
    so every element of the output counts; a loss (a 0-D output of arrays) gets
    ``dout = 1``, as a network's backward pass starts, for which the book's
    ``SoftmaxWithLoss.backward(dout=1)`` is written. Inputs for which ``backward`` returns no
    gradient (a loss layer's targets, the data of ``Affine(input_grad=False)``) are not
    checked; one array returned for several floating inputs of a layer that is no loss
    (its output not 0-D), or more gradients than inputs, is a ValueError, and an output or
    gradient of another library than the inputs (``np.`` functions given torch tensors) a
    :class:`~xpnet.backend.BackendMismatchError`. ``forward_kwargs`` go to every ``forward`` call
    (e.g. ``{"train_flg": False}``).
    A check that would compare nothing raises ValueError: no floating input and no
    parameter, or a layer without parameters whose ``backward`` returns None (a missing
    ``return dx``) for every floating input. So does a ``forward`` that writes into a
    floating input. An attribute ``w`` that ``forward`` leaves as it is and whose
    gradient ``dw`` ``backward`` stores, but that ``params`` does not name, is noted as
    not checked.

    The layer's parameters and ``buffers`` (running statistics) are restored afterwards;
    its gradients (``dW``, ...) are those of the check. A layer that draws random numbers
    with a :class:`~xpnet.backend.DeviceRNG` in its ``rng`` (Dropout) draws them once, from
    ``seed``, for every pass (:mod:`xpnet.held`); a ``forward`` that still differs between
    two calls on the same inputs is a ``ValueError``. Returns a
    :class:`~xpnet.gradcheck.GradientReport` with one row per input and parameter
    (truthy when every element passes; kinks are reported apart).

    ``method="directional"`` compares ``n_directions`` random unit directions over all the
    inputs and parameters checked instead, as :func:`check_function` does (a
    :class:`~xpnet.gradcheck.DirectionalReport`, the element-wise check its ``fallback``
    where a direction disagrees).
    """
    _check_method(method, FUNCTION_METHODS)
    require_directions(n_directions)
    kind = type(layer).__name__
    require_layer_methods(layer, kind)
    require_named_sublayers(layer, kind)
    walked = list(walk_from("", layer))  # itself, then the layers inside it (sublayers)
    for path, owner in walked:
        missing = [a for a in own_params(owner) if not hasattr(owner, a)]
        if missing:
            raise ValueError(
                f"{kind}{path} names {missing} in its params but has no such attribute"
            )
    # (label, layer, attribute) per parameter: "W", or "inner.W" for a layer inside
    slots = [
        (f"{path[1:]}.{attr}" if path else attr, owner, attr)
        for path, owner in walked
        for attr in own_params(owner)
    ]
    params = [label for label, _, _ in slots]
    if not inputs:
        raise TypeError(f"check_layer({kind}) needs the layer's inputs")
    names = _input_names(layer, len(inputs))
    _require_arrays_or_numbers(kind, names, inputs)
    _require_something_to_check(kind, names, inputs, params)
    values = [getattr(owner, attr) for _, owner, attr in slots]
    require_finite(
        [
            *((f"input {n}", x) for n, x in zip(names, inputs, strict=True)),
            *((f"parameter {label!r}", v) for label, v in zip(params, values, strict=True)),
        ],
        NOT_FINITE,
    )
    arrays = [a for a in [*inputs, *values] if is_array_api_obj(a)]
    xp = namespace_of(*arrays) if arrays else namespace()
    like = arrays[0] if arrays else xp.asarray(0.0)
    kwargs = dict(forward_kwargs or {})
    report, tol = _report(f"layer {kind}", h, atol, rtol)
    report.batch = int(inputs[0].shape[0]) if getattr(inputs[0], "ndim", 0) else None
    with ExitStack() as stack:
        stack.enter_context(held([owner for _, owner in walked], seed))
        for _, owner in walked:
            saved = [*own_params(owner), *getattr(owner, "buffers", ())]
            stack.enter_context(_in_float64(owner, saved))
        x64 = [_float64(xp, x, like) if _is_float(x) else x for x in inputs]
        # A forward pass on the inputs' decoys first, so that a backward reading a previous
        # call's cached input or batch statistic (a stale cache) shows (gradient_after_decoy)
        layer.forward(*(decoy(a) for a in x64), **kwargs)
        given = [xp.asarray(x, copy=True) if _is_float(x) else None for x in x64]
        before = floating_attributes(layer)
        out = layer.forward(*x64, **kwargs)
        inner = [owner for path, owner in walked if path]

        def inner_writes() -> list[str]:
            """What the layers inside wrote into their inputs in a forward pass on the
            inputs as given."""
            again = [
                x if g is None else xp.asarray(g, copy=True)
                for x, g in zip(x64, given, strict=True)
            ]
            return writes_during(inner, lambda: layer.forward(*again, **kwargs))

        _require_inputs_unchanged(kind, names, given, x64, xp, inner_writes)
        kept = _left_alone(layer, before)
        _require_one_output(kind, out)
        if arrays:
            _require_library(f"{kind}.forward returned", out, arrays[0])
        out = out if is_array_api_obj(out) else xp.asarray(out, dtype=xp.float64)
        loss = _is_loss(out, x64)
        dout = _upstream(xp, tuple(out.shape), seed, array_api_compat.device(out), one=loss)
        size = float(xp.sum(xp.abs(xp.astype(out, xp.float64) * dout)))
        _note_once(report, _precision_note(report.subject, out, size, report.h))
        grads = layer.backward(xp.asarray(dout, copy=True))  # the book's backward writes in it
        _require_inputs_unchanged(kind, names, given, x64, xp, inner_writes, "backward")
        if not isinstance(grads, (tuple, list)):
            _require_a_tuple_for_several_inputs(kind, names, x64, grads, loss)
            grads = [grads]
        if len(grads) > len(x64):
            raise ValueError(
                f"{kind}.backward returned {len(grads)} gradients for its {len(x64)} "
                f"input(s) {', '.join(names)}: return one per input of forward, in order"
            )
        grads = [*grads, *[None] * (len(x64) - len(grads))]  # one per input
        _require_input_gradients(kind, names, x64, grads, params)
        param_grads = {label: getattr(owner, "d" + attr, None) for label, owner, attr in slots}
        report.undeclared = undeclared_parameters(layer, kept)  # kept: _left_alone's
        for name in report.undeclared:
            report.notes.append(
                f"{name}: backward stored d{name}, but {kind}.params does not name {name}: "
                "not checked, and not trained in a network; add it to params"
            )

        def objective(moved: Mapping[int | str, Any]) -> Any:
            """sum(forward * dout) with the inputs (by index) and parameters (by label) in
            ``moved`` at those values."""
            args = [moved.get(i, x) for i, x in enumerate(x64)]
            with ExitStack() as restore:
                for label, owner, attr in slots:
                    if label in moved:
                        restore.callback(setattr, owner, attr, getattr(owner, attr))
                        setattr(owner, attr, moved[label])
                return xp.sum(xp.astype(layer.forward(*args, **kwargs), xp.float64) * dout)

        require_deterministic(lambda: objective({}), f"{kind}.forward")
        entries = []  # (label, key for objective, point, claimed gradient) per array checked
        for i, (name, x, g) in enumerate(zip(names, x64, grads, strict=True)):
            if g is None and _is_float(x) and not (loss and i > 0):  # a loss's targets
                report.notes.append(f"{name}: backward returned no gradient for it; not checked")
            if g is None or not _is_float(x):
                continue
            entries.append((f"input {name}" if name in params else name, i, x, g))
        for label, owner, attr in slots:
            g = param_grads[label]
            if g is None:
                raise ValueError(
                    f"{kind}.backward stored no gradient d{attr} for its parameter {label}"
                )
            entries.append((label, label, getattr(owner, attr), g))
        labels, keys, points, claimed = (list(e) for e in zip(*entries, strict=True))

        def at_all(values: list[Any]) -> Any:
            return objective(dict(zip(keys, values, strict=True)))

        def element_wise() -> GradientReport:
            rows = [
                _check(label, lambda v, k=key: objective({k: v}), point, g, report, tol)
                for label, key, point, g in entries
            ]
            _add_rows(report, _kinks_between(rows, points, at_all, report))
            if not report.passed and len(walked) > 1:
                # The layer's own writes harm nothing here: its dout is a copy, and its
                # input was found unchanged above. Those of the layers inside it may (the
                # dout its skip path adds): they are named, as a network check names them.
                def one_pass() -> None:
                    layer.forward(*x64, **kwargs)
                    layer.backward(xp.asarray(dout, copy=True))

                writes = writes_during(inner, one_pass)
                report.notes += [_in_place_note(w) for w in writes]
            return report

        if method == "directional":
            return _directional(
                at_all, labels, points, claimed, report, tol, n_directions, seed, element_wise
            )
        return element_wise()


def check_function(
    f: Callable[[Any], Any],
    x: Any,
    grad: Any = None,
    *,
    backward: Callable[[Any], Any] | None = None,
    method: str = "loop",
    n_directions: int = 3,
    seed: int = 0,
    h: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
) -> GradientReport | DirectionalReport:
    """Check a claimed gradient ``grad`` of the scalar function ``f`` at ``x``, or the
    vector-Jacobian product ``backward`` of a function ``f`` with an array output, in float64.

    ``x`` is an array or a mapping of names to arrays (``{"W1": ..., "b1": ...}``) and
    ``grad`` has the same form and shapes. ``f`` receives float64 copies of ``x`` (a
    mapping: one entry moved at a time by the loop, all together along a direction) and
    returns a number or a 0-D array
    (anything else is a ``ValueError`` naming what it returned); a ``grad`` that is not an
    array (a function, a list) is a ``TypeError``, and a value of ``f`` or a gradient of
    another library than ``x`` a :class:`~xpnet.backend.BackendMismatchError`. PyTorch
    tensors that autograd tracks (``requires_grad=True``, a gradient from
    ``torch.autograd.grad``) are read detached.

    ``backward`` instead of ``grad`` (exactly one of them; else a ``TypeError``) checks an
    ``f`` returning one array ``y`` of any shape (a tuple or list of outputs is a
    ``ValueError``), as :func:`check_layer` does a layer: ``backward(dout)`` returns the
    gradient of ``sum(f(x) * dout)`` with respect to ``x``, in the form of ``x`` (the
    book's ``backward(dout)``). It is called once, with ``dout`` of ``y``'s shape drawn
    from a standard normal seeded by ``seed`` (``dout = 1`` for a 0-D ``y``), in float64 on
    ``x``'s device (rounded to ``y``'s dtype where ``f`` computes in float32), and its
    result is checked as ``grad`` would be, against central differences of
    ``sum(f(x) * dout)``. Every element of the product is compared, so a
    wrong Jacobian fails unless its error ``E`` has ``E.T @ dout == 0``: probability 0 for
    a random normal ``dout``, up to rounding. One ``dout`` is checked, which the report says.

    ``method`` is ``"loop"`` (every element, two calls of ``f`` each) or ``"directional"``:
    ``n_directions`` random unit directions ``v`` over all of ``x`` (seeded by ``seed``),
    ``(f(x + h v) - f(x - h v)) / 2h`` against ``sum(grad * v)``, as
    :func:`~xpnet.gradcheck.directional_check` does a network's parameters: about
    ``2 * n_directions`` calls of ``f`` whatever ``x``'s size, and no per-element verdict.
    Where a direction disagrees, or none is compared (each crossed a kink and disagreed),
    the loop's check is the report's ``fallback`` and gives the verdict, naming elements.
    Returns a :class:`~xpnet.gradcheck.GradientReport`, one row per array (a
    :class:`~xpnet.gradcheck.DirectionalReport` for ``"directional"``).
    """
    _check_method(method, FUNCTION_METHODS)
    require_directions(n_directions)
    _require_grad_or_backward(grad, backward)
    name = getattr(f, "__name__", type(f).__name__)
    if isinstance(x, Mapping):
        if not x:
            raise ValueError("x is an empty mapping: nothing to check; give at least one array")
        keys = list(x)
    elif not is_array_api_obj(x):
        raise TypeError(
            f"x must be an array or a mapping of arrays, got {type(x).__name__} {x!r:.40}: "
            "pass numpy.asarray(x) (and the gradient as an array too)"
        )
    else:
        keys = ["x"]
    arrays = [x[k] for k in keys] if isinstance(x, Mapping) else [x]
    labels = [f"x[{k!r}]" for k in keys] if isinstance(x, Mapping) else ["x"]
    for label, a in zip(labels, arrays, strict=True):
        if not is_array_api_obj(a):
            raise TypeError(
                f"{label} must be an array, got {type(a).__name__} {a!r:.40}: pass "
                f"xp.asarray({label}) (numpy.asarray, or xpnet.backend.to_device)"
            )
    require_finite(zip(labels, arrays, strict=True), NOT_FINITE)
    points = [_float64(namespace_of(a), a, a) for a in arrays]
    names = [str(k) for k in keys]

    def form(values: list[Any]) -> Any:
        """``values`` (one per array of ``x``) in the form of ``x``."""
        return dict(zip(keys, values, strict=True)) if isinstance(x, Mapping) else values[0]

    subject = f"function {name}" if backward is None else f"function {name}'s backward"
    report, tol = _report(subject, h, atol, rtol)
    if backward is None:
        also = ", or check the vector-Jacobian product of an array output with backward="
        scalar_f = scalar_valued(f, name, "check_function", also)

        def at_all(v: Any) -> Any:
            value = scalar_f(v)
            _require_library(f"{name} returned", value, points[0])
            return value

        what = "grad"
    else:
        what = "backward(dout)"
        at_all, dout = _against_dout(f, name, form(points), points[0], seed, report)
        grad = backward(namespace_of(dout).asarray(dout, copy=True))  # it may write in it
    if isinstance(x, Mapping):
        if not isinstance(grad, Mapping) or set(grad) != set(x):
            have = sorted(grad) if isinstance(grad, Mapping) else type(grad).__name__
            raise ValueError(f"{what} must have the keys of x, {sorted(x)}; got {have}")
        grads = [grad[k] for k in keys]
    else:
        grads = [grad]

    def scalar(values: list[Any]) -> Any:
        return at_all(form(values))

    def loop() -> GradientReport:
        rows = []
        for i, (key, point) in enumerate(zip(names, points, strict=True)):

            def at(v: Any, i: int = i) -> Any:
                return scalar([v if j == i else p for j, p in enumerate(points)])

            rows.append(_check(key, at, point, grads[i], report, tol))
        _add_rows(report, _kinks_between(rows, points, scalar, report))
        return report

    if method == "directional":
        return _directional(
            scalar, names, points, grads, report, tol, n_directions, seed, loop
        )  # fmt: skip
    return loop()


def _require_grad_or_backward(grad: Any, backward: Any) -> None:
    """Refuse both ``grad`` and ``backward`` given to :func:`check_function`, or neither."""
    if (grad is None) == (backward is None):
        given = "both" if grad is not None else "neither"
        raise TypeError(
            f"check_function takes exactly one of grad (the gradient of a scalar f) and "
            f"backward (backward(dout), the vector-Jacobian product of an f with an array "
            f"output); got {given}"
        )
    if backward is not None and not callable(backward):
        raise TypeError(
            f"backward must be a function of dout, got {type(backward).__name__}: for the "
            "gradient of a scalar f, pass it as grad"
        )


def _against_dout(
    f: Callable[[Any], Any], name: str, at: Any, like: Any, seed: int, report: GradientReport
) -> tuple[Callable[[Any], Any], Any]:
    """The scalar ``sum(f(x) * dout)`` and the ``dout`` it weighs ``f``'s output with
    (:func:`_upstream`, of the shape of ``f(at)``, on ``like``'s device, in the dtype of
    ``f``'s output where that is a floating one narrower than float64); ``report`` gets
    notes on which ``dout``, and on what ``f``'s dtype rounds (the scalar is float64)."""
    xp, device = namespace_of(like), array_api_compat.device(like)

    def output(v: Any) -> Any:
        """``f(v)``, one array (a number as a 0-D float64 one on ``like``'s device)."""
        value = f(v)
        what = _not_one_output(value)
        if what is not None:
            raise ValueError(
                f"check_function with backward needs one output array: {name} returned "
                f"{what}; for several outputs y1, y2, check the scalar sum(y1 * d1) + "
                "sum(y2 * d2) with grad"
            )
        _require_library(f"{name} returned", value, like)
        return (
            value if is_array_api_obj(value) else xp.asarray(value, dtype=xp.float64, device=device)
        )

    out = output(at)
    shape = tuple(out.shape)
    dout = _upstream(xp, shape, seed, device, one=not shape)
    if is_real_floating(xp, out) and out.dtype != xp.float64:
        # backward gets dout in f's dtype, as an autograd would pass it (a float32 torch
        # product refuses a float64 dout); the check weighs f's output by the same values.
        dout = xp.astype(dout, out.dtype)
    weights = xp.astype(dout, xp.float64)
    if shape:
        report.notes.append(
            f"backward: checked for one dout of shape {shape}, drawn from a standard normal "
            f"with seed {seed}: every element of backward(dout) against central differences "
            "of sum(f(x) * dout); another seed draws another dout"
        )
    else:
        report.notes.append(
            "backward: checked for dout = 1 (f's output is 0-D): every element of "
            "backward(dout) against central differences of f(x)"
        )
    size = float(xp.sum(xp.abs(xp.astype(out, xp.float64) * weights)))
    _note_once(report, _precision_note(report.subject, out, size, report.h))

    def weighted(v: Any) -> Any:
        value = output(v)
        if tuple(value.shape) != shape:
            raise ValueError(
                f"{name} returned an output of shape {tuple(value.shape)} at a moved x, but "
                f"of shape {shape} at x: its shape must not depend on x's values"
            )
        return xp.sum(xp.astype(value, xp.float64) * weights)

    return weighted, dout


def _upstream(xp: Any, shape: tuple[int, ...], seed: int, device: Any, one: bool) -> Any:
    """The upstream gradient ``dout`` of an output of ``shape``, float64 on ``device``: 1
    where ``one`` (a loss), else drawn from a standard normal seeded by ``seed``."""
    # A stream of its own: host_rng(seed) is np.random.default_rng(seed), with which a
    # student draws x too, and dout == x passes a transposed square dW (x.T @ x is
    # symmetric) or a ReLU masked by dout's sign instead of x's.
    rng = host_rng(seed).spawn(1)[0]
    return xp.asarray(1.0 if one else rng.standard_normal(shape), dtype=xp.float64, device=device)
