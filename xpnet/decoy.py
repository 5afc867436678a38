"""What a check does first to a network: a decoy pass, and watching for in-place writes.

A check's passes are all at one batch, so a backward that reads what the *previous* forward
cached would go unseen; a pass on the :func:`decoy` of the batch first makes it show
(:func:`gradient_after_decoy`). :func:`writes_during` names the layers that wrote into
the arrays they were given. :func:`_held_for_checking` is the setup every check of a
network shares: held still (:mod:`xpnet.held`), the decoy pass, the targets made once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import array_api_compat

from xpnet.backend import namespace_of
from xpnet.held import copy_of, held, layers_of, require_deterministic, same_values
from xpnet.layers import SoftmaxWithLoss, as_one_hot, is_floating_array, walk_from
from xpnet.perturb import training_loss


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
