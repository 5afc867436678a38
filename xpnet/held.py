"""Holding a network still while its gradients are checked.

Central differences compare losses of many forward passes with the gradient of one, so
every pass must compute the same function of the parameters as the pass that
:meth:`gradient` differentiated. Two kinds of layer break that:

- a layer that draws random numbers in each training-mode pass (``Dropout``'s mask):
  a new mask per pass turns the differences into noise. While a network is held, a
  layer whose ``rng`` is a :class:`~xpnet.backend.DeviceRNG` draws from a replay
  instead: the first draw of each shape comes from a generator of the check's own
  (seeded), every later pass gets the same numbers again, and the layer's own
  generator does not move;
- a layer that updates state in each training-mode pass (BatchNormalization's running
  statistics, named in its ``buffers``): the check's passes would move it hundreds of
  times. Held, the buffers are put back as they were at the end.

A user's layer that draws random numbers some other way cannot be held;
:func:`require_deterministic` then refuses the check with a message saying so, instead
of reporting a correct backward pass as wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from array_api_compat import device, is_array_api_obj

from xpnet.backend import DeviceRNG, namespace_of
from xpnet.layers import walk
from xpnet.perturb import rounding_tolerance


class ReplayedRNG:
    """Stands in for a layer's :class:`~xpnet.backend.DeviceRNG` while a network is held.

    ``uniform`` draws each (shape, device) once, from a ``DeviceRNG(seed)`` of its own, and
    returns that draw again on every later call, in ``like``'s dtype: all forward passes see
    the numbers of the first, those of a float64 copy of the network too (the gradient
    check's float64 recheck). (A layer applied twice in one pass to inputs of one shape
    gets the same numbers twice.)
    """

    def __init__(self, seed: int) -> None:
        self._rng = DeviceRNG(seed)
        self._draws: dict[tuple[Any, ...], Any] = {}

    def uniform(self, shape: int | tuple[int, ...], *, like: Any) -> Any:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)  # as DeviceRNG takes it
        key = (shape, type(like), str(device(like)))
        draw = self._draws.get(key)
        if draw is None:
            draw = self._draws[key] = self._rng.uniform(shape, like=like)
        return draw if draw.dtype == like.dtype else namespace_of(like).astype(draw, like.dtype)


def copy_of(value: Any) -> Any:
    """A copy of the array ``value`` in its own namespace (anything else as it is)."""
    return namespace_of(value).asarray(value, copy=True) if is_array_api_obj(value) else value


def same_values(xp: Any, old: Any, new: Any) -> bool:
    """Whether the arrays ``old`` and ``new`` (``old`` a :func:`copy_of`) hold the same
    values (NaN as NaN): nothing wrote into ``new`` since the copy."""
    return bool(xp.all((old == new) | (xp.isnan(old) & xp.isnan(new))))


@contextmanager
def held(layers: Iterable[Any], seed: int = 0) -> Iterator[None]:
    """Hold ``layers`` still for a ``with`` block: replayed random numbers (seeded by
    ``seed``, one stream per random layer) and, at the end, the ``buffers`` as they were."""
    layers = list(layers)
    drawing = [layer for layer in layers if draws_random_numbers(layer)]
    buffers = [
        (layer, name, copy_of(getattr(layer, name)))
        for layer in layers
        for name in getattr(layer, "buffers", ())
    ]
    own_rngs = [layer.rng for layer in drawing]
    try:
        for k, layer in enumerate(drawing):
            layer.rng = ReplayedRNG(seed + k)
        yield
    finally:
        for layer, rng in zip(drawing, own_rngs, strict=True):
            layer.rng = rng
        for layer, name, value in buffers:
            setattr(layer, name, value)


def draws_random_numbers(layer: Any) -> bool:
    """Whether ``layer`` draws from a :class:`~xpnet.backend.DeviceRNG` (Dropout), which
    :func:`held` replays."""
    return isinstance(getattr(layer, "rng", None), DeviceRNG)


def layers_of(net: Any) -> list[Any]:
    """The layers of ``net``, those inside them too (:func:`~xpnet.layers.walk`), and its
    loss layer (none for a network without ``layers``)."""
    layers = [layer for _, layer in walk(getattr(net, "layers", ()))]
    loss = getattr(net, "last_layer", None)
    return layers if loss is None else [*layers, loss]


def require_finite_value(subject: str, value: float) -> None:
    """Refuse a check of ``subject`` whose ``value`` at the point checked is NaN or
    infinite: no central difference of it is finite, whatever the step."""
    if not math.isfinite(value):
        raise ValueError(
            f"{subject} is {value} at the point checked, whose inputs and parameters are "
            "finite: no central difference of it is finite, whatever h (a log of 0 or of a "
            "negative number, a division by 0, an overflow?)"
        )


def require_deterministic(value: Callable[[], Any], subject: str) -> float:
    """``value()`` (a 0-D array) as a float, refusing a check of ``subject`` when it differs
    between two calls at one point (a layer draws new random numbers in every pass), or
    when it is NaN or infinite there: no difference of it is finite, whatever the step.

    Two evaluations and one host read each; the tolerance is
    :func:`xpnet.perturb.rounding_tolerance`, as :meth:`xpnet.perturb.LocalNet.of` uses.
    """
    first, second = value(), value()
    a, b = float(first), float(second)
    require_finite_value(subject, b if math.isfinite(a) else a)
    if a == b:
        return b
    if abs(a - b) <= rounding_tolerance(namespace_of(first), first.dtype, a):
        return b
    raise ValueError(
        f"{subject} is not a function of its inputs and parameters alone: two passes at the "
        f"same point gave {a!r} and {b!r}, so central differences would be noise. A layer "
        "draws new random numbers in every pass (one that draws them with "
        "xpnet.backend.DeviceRNG in an attribute named rng, as Dropout does, is held fixed "
        "during a check), or updates state that its forward pass reads (state named in its "
        "buffers is put back after a check, not between passes)"
    )
