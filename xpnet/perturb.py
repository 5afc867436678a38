"""Local perturbations: a layered network's loss under many small parameter changes at once.

A central difference needs ``L(p + s e_i)`` for ``s = ±h`` and every parameter element
``i``. Moving an element of layer k's parameters leaves layers before k alone, so
:class:`LocalNet` runs the forward pass once, keeps the input of every layer, and
pushes only the *change* through layers k, k+1, ... for P perturbations at once
(a leading axis of length P; :func:`central_differences` sizes these chunks to a
memory budget):

1. the layer holding the parameter (``perturb_param``) says which output column each
   perturbation moves and by how much: in ``Affine``, ``W[i, j] += s`` moves column j
   by ``s * x[:, i]`` and ``b[j] += s`` moves it by ``s``, a *column change* (P, N);
2. an element-wise layer (``elementwise = True``, ``perturb``) keeps a column change a
   column change: ``f(z[:, j] + d) - f(z[:, j])``; so does a layer that works feature by
   feature through ``perturb_columns`` (BatchNorm, over the batch; Dropout's mask);
3. the next ``Affine`` (``perturb_column``) turns it into the rank-one change
   ``d ⊗ W[j, :]``, kept as its two factors;
4. the loss layer turns a rank-one change of the scores (``perturb_rank_one``) or a
   dense one (``perturb``) into the change of the loss. Any other layer that meets a
   column or rank-one change gets it dense, (P, N, M), and maps it with ``perturb``
   (``dx @ W``, ``f(z + dz) - f(z)``).

Every step computes a change, not a new value, so rounding errors scale with the
changes (and with ``f(z)`` in element-wise layers) instead of with the loss: the
central difference ``(dL(+h) - dL(-h)) / 2h`` is the loop's number, computed with far
fewer operations and a little more accurately (the loop's ``L(p + h e_i) - L(p - h e_i)``
loses about ``eps * |L|``). It is not an approximation of it.

Layers with a ``kinks(x, dx)`` method (``ReLU``, max ``Pooling``) flag perturbations
whose change of their input reaches a point where they are not differentiable: those
central differences straddle a kink.

A network takes part when it has ``layers`` (applied in order), ``last_layer`` (the
loss, ``forward(scores, t)``), ``params.slot(name) -> (layer, attribute)`` and
``decay_rate(name)``, and its loss is ``last_layer(layers(x)) + sum(0.5 * rate * p**2)``
(checked once, by :meth:`LocalNet.of`). Every pass is a training-mode one, as the
gradient's: a layer whose ``forward`` takes ``train_flg`` (Dropout, BatchNormalization)
gets ``train_flg=True``, and the caller holds the network still (:mod:`xpnet.held`:
the same Dropout masks in every pass, BatchNorm's running statistics put back). A
parameter is *local* when its layer has ``perturb_param`` and an output of (N, M), every
later layer has ``perturb``, the loss layer has ``perturb``, no layer from its own on
takes ``train_flg`` unless its hooks follow training mode (``perturbs_in_training =
True``, as BatchNorm's and Dropout's do; a user's may describe the evaluation-mode
forward), and none has hooks inherited from above a ``forward`` that a subclass replaced
(:func:`hooks_follow_forward`); the callers in :mod:`xpnet.gradcheck` compute the others
by the loop, :func:`loop_differences`, which keeps each forward pass's layer inputs to
find the kinks there too (a convolution's parameters, before ReLU and max pooling).
The layers are those of the chain a forward pass runs (:func:`~xpnet.layers.flat_layers`):
a stack (a Sequential without a loss) is replaced by its layers, which are perturbed as
in a flat network. Any other layer made of layers (``sublayers``: a residual block) has
no hooks: the parameters inside it and before it are looped, from its own layer on.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import reduce
from itertools import product
from typing import Any

import array_api_compat
import array_api_extra as xpx

from xpnet.backend import blas_threads, namespace_of, spread
from xpnet.layers import flat_layers, takes_train_flg, walk_from

# Arrays of one perturbation's widest change (N, width) alive at once, for chunk sizes.
TEMPORARIES = 6


def training_loss(net: Any, x: Any, t: Any) -> Any:
    """``net``'s loss as its ``gradient`` sees it: :meth:`~xpnet.Sequential.training_loss`
    for a network that has one (a :class:`~xpnet.Sequential`), else ``net.loss(x, t)``."""
    in_training = getattr(net, "training_loss", None)
    return in_training(x, t) if callable(in_training) else net.loss(x, t)


def rounding_tolerance(xp: Any, dtype: Any, loss: float) -> float:
    """How far two computations of one ``loss`` value (of ``dtype``, in namespace ``xp``) may
    differ by rounding alone: 64 machine epsilons, relative (absolute below 1)."""
    return 64 * xp.finfo(dtype).eps * (1 + abs(loss))


@dataclass
class Change:
    """How P perturbations change one layer's output (N, M), in the cheapest form that fits.

    - column (``cols`` given): perturbation p moves only column ``cols[p]``, by ``delta[p]``;
    - rank-one (``row`` given): perturbation p moves the output by ``delta[p] ⊗ row[p]``;
    - dense (neither): ``delta`` is the change itself, (P, N, M).

    ``delta`` is (P, N) in the first two forms; ``row`` is (P, M).
    """

    delta: Any
    cols: Any = None
    row: Any = None

    def rank_one(self, out: Any) -> tuple[Any, Any]:
        """The factors ``(delta, row)`` of a column or rank-one change of the output ``out``."""
        if self.row is not None:
            return self.delta, self.row
        xp = namespace_of(self.delta, out)
        return self.delta, xpx.one_hot(self.cols, out.shape[1], dtype=out.dtype, xp=xp)

    def dense(self, out: Any) -> Any:
        """The change as a dense (P, N, M) array, for the unperturbed output ``out`` (N, M)."""
        if self.cols is None and self.row is None:
            return self.delta
        u, v = self.rank_one(out)
        return u[:, :, None] * v[:, None, :]


def layer_inputs(layers: Sequence[Any], x: Any, modal: Sequence[bool] | None = None) -> list[Any]:
    """The input of every layer for the batch ``x`` in training mode, followed by the last
    layer's output. ``modal[k]``: whether layer k takes ``train_flg`` (default: asked of
    each layer, :func:`~xpnet.layers.takes_train_flg`); those get ``train_flg=True``."""
    if modal is None:
        modal = [takes_train_flg(layer) for layer in layers]
    inputs = [x]
    for layer, training in zip(layers, modal, strict=True):
        x = inputs[-1]
        inputs.append(layer.forward(x, train_flg=True) if training else layer.forward(x))
    return inputs


def propagate(layer: Any, x: Any, change: Change) -> tuple[Change, Any]:
    """The change of ``layer``'s output when its input ``x`` changes by ``change``.

    Also returns, per perturbation, whether the change reaches one of the layer's
    kinks: a (P,) bool array, or None for a layer without ``kinks``.
    """
    xp = namespace_of(x, change.delta)
    if change.cols is not None and keeps_columns(layer):
        column = xp.take(x, change.cols, axis=1).T  # each perturbation's own column, (P, N)
        dx = change.delta
        if hasattr(layer, "perturb_columns"):
            out = Change(layer.perturb_columns(x, change.cols, dx), change.cols)
        else:
            out = Change(layer.perturb(column, dx), change.cols)
        x = column
    elif change.cols is not None and hasattr(layer, "perturb_column"):
        u, v = layer.perturb_column(change.cols, change.delta)
        return Change(u, row=v), None
    else:
        dx = change.dense(x)
        out = Change(layer.perturb(x, dx))
    if not hasattr(layer, "kinks"):
        return out, None
    kinked = layer.kinks(x, dx)
    return out, xp.any(kinked, axis=tuple(range(1, kinked.ndim)))


def keeps_columns(layer: Any) -> bool:
    """Whether ``layer`` turns a change of one input column into a change of that column
    alone: an element-wise layer (``elementwise = True``, its ``perturb`` taken column by
    column), or one with ``perturb_columns(x, cols, d)`` (BatchNorm: per feature)."""
    return getattr(layer, "elementwise", False) or hasattr(layer, "perturb_columns")


#: The attributes through which LocalNet perturbs a layer instead of calling its forward.
HOOKS = (
    "perturb",
    "perturb_columns",
    "perturb_column",
    "perturb_param",
    "perturb_rank_one",
    "perturbs_in_training",
)


def _defined_by(layer: Any, attr: str) -> Any:
    """The class whose body defines ``attr`` for ``layer``; None where the instance itself
    holds it, or nothing does."""
    if attr in getattr(layer, "__dict__", {}):
        return None
    return next((cls for cls in type(layer).__mro__ if attr in vars(cls)), None)


def hooks_follow_forward(layer: Any) -> bool:
    """Whether ``layer``'s perturbation hooks (``HOOKS``) may describe its ``forward``: none
    of them is inherited from a class whose ``forward`` a subclass (or the instance) has
    replaced. A user's subclass of BatchNormalization without gamma, or of Dropout that
    rescales, inherits hooks of the base's function: trusted, they passed its wrong
    backward and failed its right one."""
    forward = _defined_by(layer, "forward")
    for hook in HOOKS:
        owner = _defined_by(layer, hook)
        if owner is None:
            continue
        if forward is None or (forward is not owner and issubclass(forward, owner)):
            return False
    return True


def crosses_kink(layers: Sequence[Any], center: Sequence[Any], *moved: Sequence[Any]) -> Any:
    """Whether going from the layer inputs ``center`` to any of ``moved`` reaches a kink.

    All are :func:`layer_inputs` lists. Each move goes to a layer's ``kinks`` with its
    signs, ``moved[k] - center[k]``: elements that move alike keep their order (a max
    pooling's tie stays a tie), which their sizes alone cannot tell. Returns a 0-D bool
    array, or None when no layer has ``kinks``.
    """
    found = None
    for k, layer in enumerate(layers):
        if hasattr(layer, "kinks"):
            x = center[k]
            xp = namespace_of(x)
            hit = reduce(lambda a, b: a | b, [xp.any(layer.kinks(x, m[k] - x)) for m in moved])
            found = hit if found is None else found | hit
    return found


def _width(a: Any) -> int:
    return math.prod(a.shape[1:])


class LocalNet:
    """A layered network at one point ``(x, t)``: the input of every layer, computed once.

    ``layers`` is the network's chain of layers, stacks replaced by theirs
    (:func:`~xpnet.layers.flat_layers`); every index ``k`` here counts in it, and
    ``inputs[k]`` is the input of ``layers[k]``. Build it with :meth:`of`, which checks
    that the network fits this module's model.
    """

    def __init__(self, net: Any, x: Any, t: Any) -> None:
        self.net, self.t = net, t
        self.layers = flat_layers(net.layers)
        self.modal = [takes_train_flg(layer) for layer in self.layers]
        # In the parameters' dtype, as Sequential.predict converts floating input: a float32
        # network on float64 data computes in float32, in the loop too.
        convert = getattr(net, "_in_parameter_dtype", None)
        self.inputs = self.inputs_at(convert(x) if callable(convert) else x)

    def inputs_at(self, x: Any) -> list[Any]:
        """:func:`layer_inputs` of :attr:`layers` (as they are now) for the batch ``x``."""
        return layer_inputs(self.layers, x, self.modal)

    @classmethod
    def of(cls, net: Any, x: Any, t: Any) -> LocalNet | None:
        """A :class:`LocalNet` for ``net``, or None when ``net`` is not layered as assumed.

        Compares the loss rebuilt from the layers with the network's training loss
        (:func:`training_loss`; one host read) and warns when they differ, so
        that a network whose ``loss`` adds something else is never perturbed locally. A
        network with Dropout or BatchNorm must be held (:mod:`xpnet.held`) first.
        """
        needed = ("layers", "last_layer", "decay_rate", "params")
        if not all(hasattr(net, a) for a in needed) or not hasattr(net.params, "slot"):
            return None
        local = cls(net, x, t)
        xp = namespace_of(local.inputs[-1])
        rebuilt = net.last_layer.forward(local.inputs[-1], t)
        for name in net.params:
            rate = net.decay_rate(name)
            if rate:
                p = net.params[name]
                rebuilt = rebuilt + 0.5 * rate * xp.sum(p * p)
        reference = training_loss(net, x, t)
        tolerance = rounding_tolerance(xp, reference.dtype, float(reference))
        if abs(float(rebuilt - reference)) > tolerance:
            warnings.warn(
                f"{type(net).__name__}.loss is not last_layer(layers(x)) plus weight decay; "
                "its numerical gradients are computed by the loop",
                stacklevel=3,
            )
            return None
        return local

    def _layer_index(self, name: str) -> int | None:
        """The index in :attr:`layers` of the layer that holds parameter ``name``, or of the
        layer made of layers (``sublayers``: a residual block) that holds it inside; None
        for neither."""
        layer, _ = self.net.params.slot(name)
        return next(
            (
                k
                for k, top in enumerate(self.layers)
                if any(inner is layer for _, inner in walk_from("", top))
            ),
            None,
        )

    def is_local(self, name: str) -> bool:
        """Whether every layer from ``name``'s on (and the loss) can perturb locally, and
        none of those layers takes ``train_flg`` unless its hooks say they follow training
        mode (``perturbs_in_training = True``: BatchNorm, Dropout); a user's may describe
        the evaluation-mode forward. No layer's hooks may be inherited from above the
        forward they describe (:func:`hooks_follow_forward`). The parameter's layer gives a
        column change, so its output must be (N, M) (BatchNorm's gammas after a
        convolution are not local)."""
        k = self._layer_index(name)
        if k is None or self.layers[k] is not self.net.params.slot(name)[0]:
            return False  # a parameter inside a layer made of layers: the loop from that layer
        if not hasattr(self.layers[k], "perturb_param"):
            return False
        if self.inputs[k + 1].ndim != 2:
            return False
        modes = zip(self.layers[k:], self.modal[k:], strict=True)
        if any(
            modal and not getattr(layer, "perturbs_in_training", False) for layer, modal in modes
        ):
            return False
        if not all(map(hooks_follow_forward, [*self.layers[k:], self.net.last_layer])):
            return False
        later = [*self.layers[k + 1 :], self.net.last_layer]
        return all(hasattr(layer, "perturb") for layer in later)

    def looping_block(self, name: str) -> Any:
        """The layer made of layers that no perturbation goes through (``sublayers``, not a
        stack, no ``perturb``: a residual block) holding ``name``'s layer, or the first after
        it, which makes the batched method difference ``name`` by the loop; None for none."""
        k = self._layer_index(name)
        later = [] if k is None else self.layers[k:]
        blocks = (b for b in later if hasattr(b, "sublayers") and not hasattr(b, "perturb"))
        return next(blocks, None)

    def bytes_per_element(self, name: str) -> int:
        """Working memory to difference one element of ``name`` (two perturbations).

        Changes stay (P, N) columns up to the first layer that is not element-wise, then
        are dense (P, N, width); the loss layer sees them dense. ``TEMPORARIES`` arrays of
        the widest change per perturbation bound what a chunk holds at once.
        """
        k = self._layer_index(name)
        widths, dense = [1], False
        for layer, out in zip(self.layers[k + 1 :], self.inputs[k + 2 :], strict=True):
            dense = dense or not keeps_columns(layer)
            if dense:
                widths.append(_width(out))
        widths.append(_width(self.inputs[-1]))
        scores = self.inputs[-1]
        itemsize = namespace_of(scores).finfo(scores.dtype).bits // 8
        return 2 * TEMPORARIES * itemsize * scores.shape[0] * max(widths)

    def loss_change(self, name: str, index: Any, step: Any) -> tuple[Any, Any]:
        """Loss change (P,) when flat element ``index[p]`` of ``name`` moves by ``step[p]``.

        Also returns which perturbations reach a kink (P,) bool.
        """
        net = self.net
        k = self._layer_index(name)
        layer, attr = net.params.slot(name)
        xp = namespace_of(step)
        cols, delta = layer.perturb_param(self.inputs[k], attr, index, step)
        change = Change(delta, cols)
        kinks = xp.zeros(step.shape, dtype=xp.bool, device=array_api_compat.device(step))
        for later, x in zip(self.layers[k + 1 :], self.inputs[k + 1 :], strict=False):
            change, kinked = propagate(later, x, change)
            if kinked is not None:
                kinks = kinks | kinked
        scores, loss = self.inputs[-1], net.last_layer
        if change.delta.ndim == 2 and hasattr(loss, "perturb_rank_one"):
            dloss = loss.perturb_rank_one(scores, self.t, *change.rank_one(scores))
        else:
            dloss = loss.perturb(scores, self.t, change.dense(scores))
        rate = net.decay_rate(name)
        if rate:
            p = xp.take(xp.reshape(net.params[name], (-1,)), index)
            # 0.5 * rate * ((p + s)**2 - p**2), written without the cancellation.
            dloss = dloss + 0.5 * rate * step * (2 * p + step)
        return dloss, kinks


def loop_differences(
    local: LocalNet,
    name: str,
    h: float,
    elements: Iterable[tuple[int, ...]] | None = None,
    *,
    net: Any = None,
    done: Callable[[int], None] | None = None,
) -> tuple[Any, Any]:
    """``(L(p + h e_i) - L(p - h e_i)) / 2h`` for every element of ``name``, by the loop.

    Two forward passes per element, as the book's loop, for a parameter that cannot be
    perturbed locally; they start at the parameter's layer, from its input in ``local``
    (the layers before it see no change). Each pass keeps its layer inputs, and
    :func:`crosses_kink` compares them with the unperturbed ones, so the elements whose
    central difference straddles a kink are known here too. Returns the gradient and that
    bool array, both in the parameter's shape; nothing is read back to the host.
    ``elements`` (index tuples) limits the work to some elements: both results are then
    (m,), in their order.
    ``net`` is the network whose parameter the loop moves and puts back: ``local.net`` by
    default, or a copy of it where threads share ``local``. ``done(1)`` is called after
    each element, where given (a progress bar).
    """
    net = local.net if net is None else net
    param = net.params[name]
    xp = namespace_of(param)
    device = array_api_compat.device(param)
    rate = net.decay_rate(name)
    work = xp.asarray(param, copy=True)
    grads, kinks = [], []
    k = local._layer_index(name) or 0  # deeper parameters skip the first Affine, the costliest
    layers, center = flat_layers(net.layers)[k:], local.inputs[k:]  # net: maybe a copy

    def loss_and_inputs() -> tuple[Any, list[Any]]:
        inputs = layer_inputs(layers, center[0], local.modal[k:])
        return net.last_layer.forward(inputs[-1], local.t), inputs

    net.params[name] = work
    try:
        with blas_threads(1):  # small products one after another: one BLAS thread is faster
            for idx in product(*map(range, param.shape)) if elements is None else elements:
                original = param[idx]
                work[idx] = original + h
                plus, moved_up = loss_and_inputs()
                work[idx] = original - h
                minus, moved_down = loss_and_inputs()
                work[idx] = original
                # Weight decay 0.5 * rate * sum(p**2) moves by exactly 2 * rate * p * h
                # between the passes (the other parameters' decay cancels): its part of the
                # difference is rate * p, added in closed form, as LocalNet adds it.
                grads.append((plus - minus) / (2 * h) + rate * original)
                kinked = crosses_kink(layers, center, moved_up, moved_down)
                kinks.append(xp.asarray(False, device=device) if kinked is None else kinked)
                if done is not None:
                    done(1)
    finally:
        net.params[name] = param
    if elements is not None:
        return xp.stack(grads), xp.stack(kinks)
    return xp.reshape(xp.stack(grads), param.shape), xp.reshape(xp.stack(kinks), param.shape)


def _workers(x: Any) -> int:
    """Threads for the chunks: the usable cores on a CPU, one on a GPU (which queues work)."""
    if "cpu" not in str(array_api_compat.device(x)).lower():
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def moving_elements(local: LocalNet, name: str) -> Any:
    """A (size,) bool array: which flat elements of ``name`` can move the loss at this batch.

    A layer may say, with ``inert_elements(x, attr)``, which of its parameter elements
    cannot change its output at the input ``x`` (in ``Affine``, the rows of ``W`` whose
    input column is zero in every sample, such as MNIST's blank border pixels). Their
    central difference is exactly 0, in the loop too, so they need no work. Weight decay
    moves the loss through every element, so then all of them count.
    """
    layer, attr = local.net.params.slot(name)
    param = local.net.params[name]
    xp = namespace_of(param)
    if not hasattr(layer, "inert_elements") or local.net.decay_rate(name):
        return xp.ones(
            (math.prod(param.shape),), dtype=xp.bool, device=array_api_compat.device(param)
        )
    return ~layer.inert_elements(local.inputs[local._layer_index(name)], attr)


def chunk_differences(local: LocalNet, name: str, index: Any, h: float) -> tuple[Any, Any]:
    """``(L(p + h e_i) - L(p - h e_i)) / 2h`` for the flat elements ``index`` (m,) of ``name``.

    Returns the differences (m,) and which of them straddle a kink (m,) bool. The
    hooks only read the network, so chunks may run at once on one network.
    """
    param = local.net.params[name]
    xp = namespace_of(param)
    m = index.shape[0]
    step = xp.full((m,), h, dtype=param.dtype, device=array_api_compat.device(param))
    dloss, kinked = local.loss_change(name, xp.concat([index, index]), xp.concat([step, -step]))
    return (dloss[:m] - dloss[m:]) / (2 * h), kinked[:m] | kinked[m:]


def central_differences(
    local: LocalNet,
    name: str,
    h: float,
    budget: int,
    among: Any = None,
    done: Callable[[int], None] | None = None,
) -> tuple[Any, Any]:
    """``(L(p + h e_i) - L(p - h e_i)) / 2h`` for every element of ``name``, in chunks.

    The chunks together hold at most ``budget`` bytes of working memory
    (:meth:`LocalNet.bytes_per_element`, at least one element per chunk). On a CPU they
    run on one thread per core: the hooks only read the network, and NumPy releases the
    GIL in its loops. Returns the numerical gradient in the parameter's shape and a bool
    array of that shape marking the elements whose central difference straddles a kink.
    ``among`` (bool, the parameter's shape) limits the work to those elements; the others
    are 0 and no kink. ``done(n)`` is called as the elements are done, where given (a
    progress bar): at once for those that need no work, then after each chunk.
    """
    param = local.net.params[name]
    xp = namespace_of(param)
    device = array_api_compat.device(param)
    moving = moving_elements(local, name)
    if among is not None:
        moving = moving & xp.reshape(among, (-1,))
    active = xp.astype(xp.nonzero(moving)[0], xp.int64)  # one host read: how many move
    size = active.shape[0]
    if done is not None:
        asked = math.prod(param.shape) if among is None else int(xp.sum(xp.astype(among, xp.int64)))
        done(asked - size)
    per_element = local.bytes_per_element(name)
    workers = min(_workers(param), max(1, budget // per_element))
    chunk = max(1, min(size, budget // workers // per_element))
    starts = range(0, size, chunk)
    workers = max(1, min(workers, len(starts)))
    # Allocate (and at once free) one chunk's memory first: glibc's malloc then keeps
    # blocks up to that size on its heap instead of handing them back to the OS after
    # every chunk, and faulting those pages in again cost more than the arithmetic (3x
    # slower on a 2-core VM). Pooling allocators (CuPy's) simply keep the block.
    xp.empty((min(budget, chunk * per_element),), dtype=xp.uint8, device=device)

    def chunk_at(start: int) -> tuple[Any, Any]:
        stop = min(start + chunk, size)  # in bounds: the standard leaves a stop past it open
        found = chunk_differences(local, name, active[start:stop], h)
        if done is not None:
            done(stop - start)
        return found

    if workers == 1:
        results = list(map(chunk_at, starts))
    else:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(chunk_at, starts))
    grads = [g for g, _ in results] or [xp.zeros((0,), dtype=param.dtype, device=device)]
    kinks = [k for _, k in results] or [xp.zeros((0,), dtype=xp.bool, device=device)]
    grad, kinked = (spread(xp.concat(parts), moving) for parts in (grads, kinks))
    return xp.reshape(grad, param.shape), xp.reshape(kinked, param.shape)
