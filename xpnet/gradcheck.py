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
a smaller step (:func:`~xpnet.kinks.refined_step`), and only one that still straddles a
kink there is reported as a kink and left out of pass/fail (kinks of a layer without a
``kinks`` method are found by one-sided differences), where its one-sided differences
show the kink: else the report is inconclusive; one that agrees is compared as any other,
as is a direction of the directional method. A gradient that is not finite (inf or
nan) is never excused: the parameter (or direction) fails, at a kink too, and the
report says which side (numerical or analytic) has such values.

Every method differentiates the loss that ``net.gradient`` does, the training-mode one,
with the network held still (:mod:`xpnet.held`): Dropout's masks drawn once, from the
check's ``seed``, for every pass, and BatchNorm's running statistics put back at the end.
A loss that still differs between two passes at one point is a ``ValueError``.

``check_gradients(net, x, t, method=...)`` returns a :class:`GradientReport` (or a
:class:`DirectionalReport`) that prints as a table.

This module runs the checks; their parts are modules of their own: the differences
(:mod:`xpnet.numerical`), the pass rule and the atol (:mod:`xpnet.tolerance`), kinks and
the float64 re-check (:mod:`xpnet.kinks`), the decoy pass and in-place writes
(:mod:`xpnet.decoy`), the reports (:mod:`xpnet.gradreport`, :mod:`xpnet.directional`).
The public names among them are importable from here as before.
"""

from __future__ import annotations

import math
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import array_api_compat
import numpy as np
from tqdm import tqdm

from xpnet.backend import host_rng, namespace_of, require_finite, to_device, to_numpy
from xpnet.checks import is_count
from xpnet.decoy import _held_for_checking, gradient_after_decoy, in_place_writes
from xpnet.directional import (
    DirectionalReport,
    compare_directions,
    fell_back_note,
    random_direction,
    require_directions,
)
from xpnet.directional import DirectionCheck as DirectionCheck
from xpnet.gradreport import GradientReport, ParamCheck
from xpnet.held import copy_of, same_values
from xpnet.kinks import ONE_SIDED_LIMIT as ONE_SIDED_LIMIT
from xpnet.kinks import (
    _count,
    _differenced_in_float64,
    _float64_copy,
    _with_one_sided_kinks,
    _worst,
    refined_step,
)
from xpnet.kinks import kinks_together as kinks_together
from xpnet.layers import walk
from xpnet.numerical import (
    DEFAULTS,
    _check_method,
    _looped,
    _moved,
    _Numerical,
    _numerical,
    _param_names,
    _sample_of,
    memory_budget,
)
from xpnet.numerical import net_numerical_gradient as net_numerical_gradient
from xpnet.numerical import numerical_gradient as numerical_gradient
from xpnet.perturb import LocalNet, central_differences, crosses_kink, training_loss
from xpnet.tolerance import (
    NOISE_DIRECTIONS,
    NOISE_ORDER,
    RETRY,
    Atol,
    rounding_noise,
    tolerances,
    within_tolerance,
)

METHODS = ("loop", "batched", "directional")


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
        untransposed=bool(failed)
        and len(shape) == 4
        and _matches(_transposed_rows(whole), numerical, atol, rtol, ~counted),
        worst=worst,
        worst_analytic=float(analytic[worst]) if worst is not None else 0.0,
        worst_numerical=float(numerical[worst]) if worst is not None else 0.0,
        failing_elements=tuple(tuple(int(i) for i in idx) for idx in failed_elements),
        sampled=None if sampled is None else int(_count(sampled)),
    )


def _transposed_rows(kernel: Any) -> Any:
    """A kernel gradient (FN, C, FH, FW) read as the (C * FH * FW, FN) of ``col.T @ dout``
    and transposed: what it is were it that product reshaped without the transpose."""
    xp = namespace_of(kernel)
    fn = kernel.shape[0]
    rows = xp.reshape(kernel, (math.prod(kernel.shape[1:]), fn))
    return xp.reshape(xp.matrix_transpose(rows), kernel.shape)


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


def _largest(values: Iterable[Any]) -> float:
    """The largest finite absolute value in the arrays ``values`` (0 for none)."""
    largest = 0.0
    for a in values:
        xp = namespace_of(a)
        finite = xp.where(xp.isfinite(a), xp.abs(a), xp.zeros_like(a))
        largest = max(largest, float(xp.max(finite)) if math.prod(a.shape) else 0.0)
    return largest


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
