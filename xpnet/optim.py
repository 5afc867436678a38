"""Parameter update rules (chapter 6 of the book): SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam.

Each optimizer has ``update(params, grads)``: ``params`` is a mutable mapping
``name -> array`` (a network's live ``net.params`` or a plain ``dict``) and
``grads`` maps the same names to gradients of the same shapes. The formulas are
the book's (``common/optimizer.py``), including its ``1e-7`` added to the square
root in the denominators.

The code is backend-generic: per-parameter state (velocities, squared-gradient
sums) is made with ``zeros_like`` of the parameter, so it has the parameter's
dtype and lives on its device; nothing is copied to the host. Parameters are
updated in place (``params[k] -= step``), as the book's training script and
PyTorch's optimizers do: an array given to a layer is the array that is trained
(copy it first to keep the original), and a step writes no new parameter arrays.

Hyperparameters are checked when an optimizer is made (also by :func:`make_optimizer`),
as PyTorch's optimizers do: a real number (not ``bool``), stored as a Python ``float``;
``lr`` finite and ``>= 0`` (``lr=0`` is allowed, as in PyTorch: the state still advances
but no parameter moves); ``momentum``, ``beta1``, ``beta2`` and ``decay_rate`` in
``[0, 1)``. A bad one raises ``ValueError`` (``TypeError`` for a non-number) naming it,
its value and the valid range.

:meth:`Optimizer.update` refuses gradients that do not fit their parameters before it moves
any parameter (``iterations`` unchanged), naming the parameter, what it got and what was
expected:

- a name of ``params`` without a gradient in ``grads``, or with ``None`` (``ValueError``).
  PyTorch's optimizers skip a parameter whose ``.grad`` is None; here gradients come from
  ``net.gradient``, which gives every one, so a missing one is a mistake (a layer's backward
  that stored none). To train some parameters only, pass ``params`` without the others:
  gradients of names not in ``params`` are ignored.
- a parameter array that is not real floating (``ValueError``): ``np.array([-7, 2])``
  holds integers, which no step of a fraction of a gradient fits;
- a gradient that is not an array (``TypeError``), but for a number where the parameter has
  shape ``()`` (the book's ``optimizer_compare_naive.py``), or is one (``SGD`` only);
- a gradient of another library or on another device (:class:`BackendMismatchError`), of
  another shape (``ValueError``; none is broadcast, not even a (1,) one for (D,) or (D,) for
  (1, D)), or of another dtype, a float64 one for float32 parameters or an integer one
  (``ValueError``): as PyTorch refuses to take such a ``.grad`` (NumPy would compute the
  steps, and Momentum's or Adam's state, in float64);
- a parameter replaced since its state was made by an array of another shape, dtype, library
  or device (the same errors): its velocity or moments are the old array's. A name added to
  ``params`` starts with no state (zeros), as a parameter added to a PyTorch optimizer does;
- state loaded for a parameter (:meth:`Optimizer.load_state_dict`) of another shape
  (``ValueError``).

An optimizer with state steps one network's parameters, as a PyTorch optimizer is bound to
its own. Its state is kept by name, as the book's is, so a mapping in which a name with
state holds another array than the one that state was made for (another network's ``W1``)
is refused (``ValueError``), rather than stepped with this network's velocity or moments;
make one optimizer per network. A new mapping of the same arrays (``dict(net.params)``,
some of them) goes on with their state, as do arrays replaced in the mapping updated last
(what :func:`xpnet.checkpoint.load_params` does to an array it cannot write into).
:meth:`Optimizer.load_state_dict` (a checkpoint restored into a new network) gives the state
to the parameters of the next update, and a copy of an optimizer (``copy.deepcopy``) is bound
to none until its first update. ``SGD``, without state, may step any parameters.

These checks are Python-side metadata, no device work. They run at the first update, the
first after a :meth:`Optimizer.load_state_dict`, and again whenever another mapping is
passed as ``params`` or the number of parameters or of gradients changes, as
``Sequential.gradient`` checks a shape of input once: an update is the inner loop of
training, and a network's gradients keep their shapes and dtypes from step to step. So a
gradient whose shape or dtype changes later, or a parameter replaced in the same mapping
by an array of another shape or dtype, is left to the arithmetic (a NumPy broadcast
error, or a silent broadcast or promotion): pass a new mapping, or a new optimizer, then.

:meth:`Optimizer.state_dict` holds the hyperparameters too, and
:meth:`Optimizer.load_state_dict` restores them, as PyTorch's optimizers do. State loaded
for a parameter is checked against it the first time an update uses it (the optimizer
meets its parameters only then): its shape must be the parameter's (else ``ValueError``),
and it is converted to the parameter's dtype and device, as PyTorch converts loaded state.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, ClassVar

import array_api_compat

from xpnet.backend import BackendMismatchError, dtype_name, library_of, namespace_of, to_like
from xpnet.checks import (
    NO_ACCUMULATED_GRADIENTS,
    BookName,
    TorchName,
    is_integer,
    is_real,
    shape_mistake,
)
from xpnet.layers import is_floating_array

EPS = 1e-7  # the book's constant in AdaGrad, RMSprop and Adam
_BELOW_ONE = ("momentum", "beta1", "beta2", "decay_rate")  # the others: [0, inf)


def hyperparameter(name: str, value: Any) -> float:
    """``value`` as a ``float`` when it is a real number in ``name``'s range (so finite):
    ``[0, 1)`` for those in ``_BELOW_ONE``, ``[0, inf)`` for the others.

    ``TypeError`` for a non-number (``bool`` included), ``ValueError`` out of range; both
    name the argument, the value and what was expected.
    """
    high = 1.0 if name in _BELOW_ONE else math.inf
    expected = "a finite number >= 0" if high == math.inf else f"a number in [0, {high:g})"
    if not is_real(value):
        raise TypeError(
            f"Invalid {name}: {value!r} (expected {expected}, got {type(value).__name__})"
        )
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float's range: out of every range
        number = math.inf
    if not 0.0 <= number < high:  # also rejects nan and inf
        raise ValueError(f"Invalid {name}: {value!r} (expected {expected})")
    return number


def _signature(params: Mapping[str, Any], grads: Mapping[str, Any]) -> tuple[int, int, int]:
    """What :meth:`Optimizer.update` checks again when it changes: the mapping ``params`` and
    how many names it and ``grads`` hold. Reading every gradient's shape and dtype would
    cost a microsecond a step more, 1.5-2 % of a batch-1 step (issue #12's budget); a
    network's gradients keep their parameters' shapes and dtypes from step to step."""
    return id(params), len(params), len(grads)


def _misfit(value: Any, param: Any) -> tuple[str, str] | None:
    """How the array ``value`` (a gradient, a state) does not fit the array ``param``: the
    first of ``"library"``, ``"device"``, ``"shape"``, ``"dtype"`` that differs and a clause
    saying how (``"has shape (3, 2), but the parameter (2, 3)"``); None when all fit."""
    if namespace_of(value) is not namespace_of(param):
        return (
            "library",
            f"is an array of {library_of(value)}, but the parameter of {library_of(param)}",
        )
    device, expected = array_api_compat.device(value), array_api_compat.device(param)
    if device != expected:
        return "device", f"is on device {device}, but the parameter on {expected}"
    if tuple(value.shape) != tuple(param.shape):
        return "shape", f"has shape {tuple(value.shape)}, but the parameter {tuple(param.shape)}"
    if value.dtype != param.dtype:
        return "dtype", f"has dtype {dtype_name(value)}, but the parameter {dtype_name(param)}"
    return None


_ERRORS = {"library": BackendMismatchError, "device": BackendMismatchError}  # else ValueError
_MOVE = ": a gradient lives where its parameter does (xpnet.backend.to_like(grad, param))"
_GRADIENT_HINTS = {
    "library": _MOVE,
    "device": _MOVE,
    "shape": ": a gradient has its parameter's shape, and is not broadcast to it",
    "dtype": ": a gradient has its parameter's dtype (convert it with xp.astype), as PyTorch "
    "requires of a .grad",
}


class Optimizer:
    """Base class: hyperparameters, per-parameter state buffers and an update counter.

    ``buffers`` names the per-parameter state (e.g. ``("v",)`` for Momentum);
    ``state[buffer][name]`` is created lazily by :meth:`_buffer`: with
    ``zeros_like(params[name])``, or from what :meth:`load_state_dict` loaded, which waits
    unchecked in ``_loaded`` until then. ``iterations`` counts calls to :meth:`update`.
    A subclass writes its step in ``_step(params, grads)``, which :meth:`update` calls once
    the gradients are checked.
    """

    name: ClassVar[str] = ""
    buffers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, lr: float) -> None:
        if isinstance(lr, Mapping | Iterator | list | tuple):  # PyTorch's SGD(model.parameters())
            raise TypeError(
                f"{type(self).__name__} takes its settings, not the parameters: xpnet's "
                f"optimizers are given them at every step, opt = {type(self).__name__}(lr=0.01); "
                f"opt.update(net.params, grads), where PyTorch's take them when made; got lr="
                f"{type(lr).__name__}"
            )
        self.lr = hyperparameter("lr", lr)
        self.iterations = 0
        self.state: dict[str, dict[str, Any]] = {b: {} for b in self.buffers}
        self._loaded: dict[str, dict[str, Any]] = {b: {} for b in self.buffers}
        self._checked: tuple[int, int, int] | None = None  # the last _signature checked
        self._unbind()

    # The book's names for what xpnet spells otherwise: reading one says what to use.
    iter = BookName("opt.iterations")
    v = BookName("opt.state['v'], a dict by parameter name")
    h = BookName("opt.state['h'], a dict by parameter name")
    m = BookName("opt.state['m'], a dict by parameter name")

    # PyTorch's optimizer names that xpnet spells otherwise (docs/pytorch.md), not aliases.
    step = TorchName("opt.update(net.params, grads), with grads = net.gradient(x, t)")
    zero_grad = TorchName(NO_ACCUMULATED_GRADIENTS)
    param_groups = TorchName(
        "opt.lr, one for every parameter, read and set; the other settings are attributes "
        "too (opt.momentum)"
    )

    def update(self, params: MutableMapping[str, Any], grads: Mapping[str, Any]) -> None:
        """Move every parameter of ``params`` (``name -> array``) one step against its
        gradient ``grads[name]``, an array of the parameter's library, device, shape and dtype
        (``grads`` may hold more names), in the mapping.

        Raises, moving nothing, when a gradient does not fit its parameter or a parameter no
        longer fits its state (the module's docstring lists the errors and when they are
        checked).
        """
        signature = _signature(params, grads)
        if signature != self._checked:
            self._require_fit(params, grads)
            self._require_same_network(params)
            self._bind(params)
            self._checked = signature
        self.iterations += 1
        self._step(params, grads)

    def _step(self, params: MutableMapping[str, Any], grads: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _require_fit(self, params: Mapping[str, Any], grads: Mapping[str, Any]) -> None:
        """Raise unless every parameter has a gradient that fits it, and fits its own state."""
        missing = [key for key in params if key not in grads]
        if missing:
            raise ValueError(
                f"{type(self).__name__}.update: grads has no gradient for parameter(s) "
                f"{', '.join(map(repr, missing))}; expected one for every name in params "
                "(to train some parameters only, pass params without the others)"
            )
        for key in params:
            param = params[key]
            if array_api_compat.is_array_api_obj(param):
                self._require_gradient(key, param, grads[key])
                self._require_state(key, param)
            else:
                self._require_number_gradient(key, param, grads[key])

    def _require_same_network(self, params: Mapping[str, Any]) -> None:
        """Raise unless every parameter of ``params`` that has state is the array the state
        was made for: state is kept by name, so another network's ``W1`` would take this
        one's velocity. The mapping updated last is read again first, for its arrays
        replaced since (:func:`xpnet.checkpoint.load_params` into a read-only array)."""
        if self._params is not None:
            self._arrays.update(self._params)
        for key in params:
            known = self._arrays.get(key)
            if known is None or params[key] is known:
                continue
            buffer = next((b for b in self.buffers if key in self.state[b]), None)
            if buffer is not None:
                raise ValueError(
                    f"{type(self).__name__}.update: parameter {key!r} is not the array whose "
                    f"state {buffer!r} this optimizer holds: params are another network's "
                    "(or this one's, replaced by new arrays), and the state, kept by name, "
                    "would mix them; make one optimizer per network (or load_state_dict "
                    "to start this one on other parameters)"
                )

    def _bind(self, params: Mapping[str, Any]) -> None:
        """Remember ``params`` and its arrays, for :meth:`_require_same_network`."""
        self._params: Mapping[str, Any] | None = params
        self._arrays.update(params)

    def _unbind(self) -> None:
        """Forget the parameters updated so far: the next update's are the state's."""
        self._params = None
        self._arrays: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        """A copy (``copy.deepcopy``, pickle) without the parameters this optimizer updated:
        it updates the copy of the network, which would not be theirs."""
        state = {**vars(self), "_checked": None}
        state["_params"], state["_arrays"] = None, {}
        return state

    def _require_gradient(self, key: str, param: Any, grad: Any) -> None:
        """Raise unless ``param`` is real floating and ``grad`` fits it: an array of its
        library, device, shape and dtype, or a number where ``param`` has shape ``()``."""
        cls = type(self).__name__
        if not is_floating_array(param):
            raise ValueError(
                f"{cls}.update: parameter {key!r} has dtype {dtype_name(param)}, expected a real "
                "floating one, which a step can move by a fraction: write its values as floats "
                "(numpy.array([-7.0, 2.0])) or convert it (x.astype('float64'))"
            )
        if not array_api_compat.is_array_api_obj(grad):
            if param.shape == () and is_real(grad):
                return  # the book's optimizer_compare_naive.py: NumPy scalars, Python floats
            expected = (
                f"expected an array of {library_of(param)}, of shape {tuple(param.shape)} and "
                f"dtype {dtype_name(param)}, as the parameter"
            )
            if grad is None:
                raise ValueError(
                    f"{cls}.update: the gradient of parameter {key!r} is None (a layer's "
                    f"backward that stored none?), {expected} (to train some parameters only, "
                    "pass params without the others)"
                )
            raise TypeError(
                f"{cls}.update: the gradient of parameter {key!r} is {type(grad).__name__} "
                f"{grad!r:.40}, {expected}"
            )
        misfit = _misfit(grad, param)
        if misfit is not None:
            kind, clause = misfit
            hint = _GRADIENT_HINTS[kind]
            if kind == "shape":
                hint = shape_mistake(tuple(grad.shape), tuple(param.shape)) or hint
            raise _ERRORS.get(kind, ValueError)(
                f"{cls}.update: the gradient of parameter {key!r} {clause}{hint}"
            )

    def _require_state(self, key: str, param: Any) -> None:
        """Raise unless the state kept for ``key`` fits ``param``: not so when the parameter
        was replaced by an array of another shape, dtype, library or device, or when state
        loaded for it (:meth:`load_state_dict`), which takes its dtype and device at its
        first use, has another shape."""
        for buffer in self.buffers:
            loaded = self._loaded[buffer].get(key)
            if loaded is not None and tuple(loaded.shape) != tuple(param.shape):
                raise ValueError(
                    f"{type(self).__name__} state {buffer!r} of parameter {key!r} has shape "
                    f"{tuple(loaded.shape)}, but the parameter has shape {tuple(param.shape)}"
                )
            state = self.state[buffer].get(key)
            misfit = None if state is None else _misfit(state, param)
            if misfit is not None:
                kind, clause = misfit
                raise _ERRORS.get(kind, ValueError)(
                    f"{type(self).__name__} state {buffer!r} of parameter {key!r} {clause}: "
                    "the parameter was replaced since the state was made; a new optimizer "
                    "starts afresh"
                )

    def _require_number_gradient(self, key: str, param: Any, grad: Any) -> None:
        """Raise unless ``grad`` is a number for the parameter ``param`` that is not an array
        (a Python float, which only an optimizer without state steps)."""
        cls = type(self).__name__
        if self.buffers:
            # The book's optimizer_compare_naive.py keeps x and y as Python floats.
            raise TypeError(
                f"{cls}: parameter {key!r} is {type(param).__name__} {param!r:.40}, expected "
                "an array, in whose shape the optimizer keeps its state "
                f"{self.buffers[0]!r}; a NumPy scalar (numpy.float64({param!r:.20})) steps as "
                "a Python float would"
            )
        if not is_real(grad):
            got = (
                f"an array of {library_of(grad)}, of shape {tuple(grad.shape)}"
                if array_api_compat.is_array_api_obj(grad)
                else f"{type(grad).__name__} {grad!r:.40}"
            )
            raise TypeError(
                f"{cls}.update: the gradient of parameter {key!r} is {got}, expected a number, "
                f"as the parameter is {param!r:.40}"
            )

    def _buffer(self, buffer: str, key: str, like: Any) -> Any:
        slot = self.state[buffer]
        if key not in slot:
            slot[key] = self._first(buffer, key, like)
        return slot[key]

    def _first(self, buffer: str, key: str, like: Any) -> Any:
        """The state ``buffer`` of parameter ``key`` (array ``like``) at its first use: zeros,
        or the loaded array (its shape checked by :meth:`_require_state`) in the parameter's
        dtype and device."""
        loaded = self._loaded[buffer].get(key)
        if loaded is None:
            return namespace_of(like).zeros_like(like)
        del self._loaded[buffer][key]
        return to_like(loaded, like)

    def config(self) -> dict[str, Any]:
        """The optimizer's name and hyperparameters (JSON-serialisable)."""
        hyper = {k: v for k, v in vars(self).items() if isinstance(v, (int, float))}
        hyper.pop("iterations", None)
        return {"name": self.name, **hyper}

    def hyperparameters(self) -> dict[str, Any]:
        """:meth:`config` without the name: ``{"lr": 0.01, ...}``."""
        return {k: v for k, v in self.config().items() if k != "name"}

    def state_dict(self) -> dict[str, Any]:
        """``{"iterations": int, "buffers": {buffer: {name: array}}, "hyperparameters":
        {name: float}}`` (arrays not copied; the hyperparameters are :meth:`config`'s)."""
        return {
            "iterations": self.iterations,
            "buffers": {b: {**self._loaded[b], **slot} for b, slot in self.state.items()},
            "hyperparameters": self.hyperparameters(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, hyperparameters included (as PyTorch does).

        A missing ``iterations`` is 0, a missing buffer is empty and missing
        ``hyperparameters`` leave the optimizer's own. The arrays are checked against the
        parameters by the next update, before it moves any, and moved to their dtype and
        device when an update first uses them.
        ``TypeError`` for a non-mapping, a non-integer ``iterations``, a value that is not an
        array or a hyperparameter that is not a number; ``ValueError`` for unexpected keys,
        buffers or hyperparameters, a negative ``iterations`` and a hyperparameter out of its
        range; nothing is changed then.
        """
        cls = type(self).__name__
        if not isinstance(state, Mapping):
            raise TypeError(
                f"{cls}.load_state_dict expects a mapping like state_dict() returns "
                f"({{'iterations': int, 'buffers': {{buffer: {{name: array}}}}, "
                f"'hyperparameters': {{name: number}}}}), got {type(state).__name__}"
            )
        unexpected = set(state) - {"iterations", "buffers", "hyperparameters"}
        if unexpected:
            raise ValueError(
                f"{cls}.load_state_dict: unexpected key(s) "
                f"{', '.join(sorted(map(repr, unexpected)))}; "
                "expected 'iterations', 'buffers', 'hyperparameters'"
            )
        iterations = state.get("iterations", 0)
        if not is_integer(iterations):
            raise TypeError(
                f"Invalid iterations: {iterations!r} (expected an integer >= 0, "
                f"got {type(iterations).__name__})"
            )
        if iterations < 0:
            raise ValueError(f"Invalid iterations: {iterations!r} (expected an integer >= 0)")
        buffers = self._checked_buffers(state.get("buffers", {}))
        hyper = self._checked_hyperparameters(state.get("hyperparameters", {}))
        self.iterations = int(iterations)
        self.state = {b: {} for b in self.buffers}
        self._loaded = {b: dict(buffers.get(b, {})) for b in self.buffers}
        self._checked = None  # the next update checks the loaded state
        self._unbind()  # which is for the parameters of the next update
        for name, value in hyper.items():
            setattr(self, name, value)

    def _checked_buffers(self, buffers: Any) -> Mapping[str, Mapping[str, Any]]:
        """``buffers`` of a state dict, when they are this optimizer's and hold arrays."""
        cls = type(self).__name__
        if not isinstance(buffers, Mapping) or not all(
            isinstance(slot, Mapping) for slot in buffers.values()
        ):
            raise TypeError(
                f"{cls}.load_state_dict: 'buffers' must map buffer names to mappings "
                f"name -> array, got {buffers!r:.80}"
            )
        unknown = set(buffers) - set(self.buffers)
        if unknown:
            raise ValueError(
                f"{cls} has no state buffer(s) {', '.join(sorted(unknown))}; "
                f"expected {', '.join(self.buffers) or 'none'}"
            )
        for buffer, slot in buffers.items():
            for name, value in slot.items():
                if not array_api_compat.is_array_api_obj(value):
                    raise TypeError(
                        f"{cls}.load_state_dict: state {buffer!r} of {name!r} is a "
                        f"{type(value).__name__}, expected an array"
                    )
        return buffers

    def _checked_hyperparameters(self, hyper: Any) -> dict[str, float]:
        """``hyperparameters`` of a state dict, checked as the constructors check them."""
        cls = type(self).__name__
        if not isinstance(hyper, Mapping):
            raise TypeError(
                f"{cls}.load_state_dict: 'hyperparameters' must map names to numbers, "
                f"got {hyper!r:.80}"
            )
        own = list(self.hyperparameters())
        unknown = set(hyper) - set(own)
        if unknown:
            raise ValueError(
                f"{cls} has no hyperparameter(s) {', '.join(sorted(unknown))}; "
                f"expected {', '.join(own)}"
            )
        return {name: hyperparameter(name, value) for name, value in hyper.items()}

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({hyper})"


class SGD(Optimizer):
    """Stochastic gradient descent: ``W <- W - lr * dW``."""

    name = "sgd"

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr)

    def _step(self, params: MutableMapping[str, Any], grads: Mapping[str, Any]) -> None:
        for key in params:
            params[key] -= self.lr * grads[key]


class Momentum(Optimizer):
    """Momentum: ``v <- momentum * v - lr * dW``; ``W <- W + v``."""

    name = "momentum"
    buffers = ("v",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = hyperparameter("momentum", momentum)

    def _step(self, params: MutableMapping[str, Any], grads: Mapping[str, Any]) -> None:
        for key in params:
            v = self._buffer("v", key, params[key])
            v = self.momentum * v - self.lr * grads[key]
            self.state["v"][key] = v
            params[key] += v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient in the book's form (http://arxiv.org/abs/1212.0901):
    Momentum's settings and velocity, another step.

    ``v <- momentum * v - lr * dW``;
    ``W <- W + momentum**2 * v - (1 + momentum) * lr * dW``.

    This is the book's code (``common/optimizer.py``), which takes the *updated* ``v``.
    The paper's equation 7, and PyTorch's ``SGD(nesterov=True)``, take the velocity
    before the update: their first step from ``v = 0`` is ``-(1 + momentum) * lr * dW``,
    this one's ``-(1 + momentum + momentum**2) * lr * dW``, so the trajectories differ.
    """

    name = "nesterov"

    def _step(self, params: MutableMapping[str, Any], grads: Mapping[str, Any]) -> None:
        m = self.momentum
        for key in params:
            g = grads[key]
            v = m * self._buffer("v", key, params[key]) - self.lr * g
            self.state["v"][key] = v
            params[key] += m * m * v - (1 + m) * self.lr * g


class AdaGrad(Optimizer):
    """AdaGrad: ``h <- h + dW**2``; ``W <- W - lr * dW / (sqrt(h) + 1e-7)``."""

    name = "adagrad"
    buffers = ("h",)

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr)

    def _accumulate(self, h: Any, g: Any) -> Any:
        """The new squared-gradient sum ``h`` after gradient ``g``."""
        return h + g * g

    def _step(self, params: MutableMapping[str, Any], grads: Mapping[str, Any]) -> None:
        for key in params:
            g = grads[key]
            h = self._accumulate(self._buffer("h", key, params[key]), g)
            xp = namespace_of(params[key], g)
            self.state["h"][key] = h
            params[key] -= self.lr * g / (xp.sqrt(h) + EPS)


class RMSprop(AdaGrad):
    """RMSprop: AdaGrad with a decaying sum, ``h <- d * h + (1 - d) * dW**2``.

    ``W <- W - lr * dW / (sqrt(h) + 1e-7)``; ``d`` is ``decay_rate``.
    """

    name = "rmsprop"

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        super().__init__(lr)
        self.decay_rate = hyperparameter("decay_rate", decay_rate)

    def _accumulate(self, h: Any, g: Any) -> Any:
        d = self.decay_rate
        return d * h + (1 - d) * g * g


class Adam(Optimizer):
    """Adam (http://arxiv.org/abs/1412.6980v8) in the book's form, with the step ``t`` from 1.

    ``t`` counts each parameter's own updates (``steps[name]``), as PyTorch's
    ``state[p]["step"]`` does: the book's counts the optimizer's, the same while every
    parameter is updated at every step, but a parameter updated first later (unfrozen,
    :class:`~xpnet.training.Trainer`'s ``frozen``) would start with ``m`` and ``v`` at zero
    past their bias correction, and take first steps up to about ``3 * lr``.

    ``lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)``;
    ``m <- m + (1 - beta1) * (dW - m)``; ``v <- beta2 * v + (1 - beta2) * dW**2``;
    ``W <- W - lr_t * m / (sqrt(v) + 1e-7)``.

    The book's ``1e-7`` is added to ``sqrt(v)`` before the bias correction; PyTorch's
    ``Adam`` adds its ``eps`` (default 1e-8) to ``sqrt(v / (1 - beta2**t))``, after it, so
    this one's epsilon is ``1e-7 / sqrt(1 - beta2**t)`` in PyTorch's terms (3.2e-6 at the
    first step). Steps agree for large gradients but not for small ones (a first step on
    a gradient of 1e-6 is 0.24 * lr here, 0.99 * lr in PyTorch), so the trajectories differ.
    """

    name = "adam"
    buffers = ("m", "v")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        super().__init__(lr)
        self.beta1 = hyperparameter("beta1", beta1)
        self.beta2 = hyperparameter("beta2", beta2)
        self.steps: dict[str, int] = {}  # name -> its updates so far

    def _step(self, params: MutableMapping[str, Any], grads: Mapping[str, Any]) -> None:
        for key in params:
            t = self.steps.get(key)
            t = self.steps[key] = (self._steps_before(key) if t is None else t) + 1
            lr_t = self.lr * math.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
            g = grads[key]
            m = self._buffer("m", key, params[key])
            v = self._buffer("v", key, params[key])
            xp = namespace_of(params[key], g)
            m = m + (1 - self.beta1) * (g - m)
            # The book's v + (1 - beta2) * (g * g - v) in as many operations, but g is scaled
            # before it is squared, as PyTorch does: a float32 gradient above 1.8e19 squares
            # to inf, and the next step's inf - inf would make the parameter NaN.
            v = self.beta2 * v + (1 - self.beta2) * g * g
            self.state["m"][key], self.state["v"][key] = m, v
            params[key] -= lr_t * m / (xp.sqrt(v) + EPS)

    def _steps_before(self, key: str) -> int:
        """The updates of parameter ``key`` before this one, when ``steps`` does not count
        them: none for a parameter without state, and for state loaded without ``steps``
        (from a file of an older xpnet), the optimizer's."""
        held = key in self._loaded["m"] or key in self.state["m"]
        return self.iterations - 1 if held else 0

    def state_dict(self) -> dict[str, Any]:
        """:meth:`Optimizer.state_dict` with ``"steps"``: ``{name: int}``, each parameter's
        updates."""
        return {**super().state_dict(), "steps": dict(self.steps)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """:meth:`Optimizer.load_state_dict`, and ``"steps"`` (``{name: int >= 1}``; without
        it, a parameter with loaded state counts the optimizer's ``iterations``)."""
        if not isinstance(state, Mapping):
            super().load_state_dict(state)  # raises, naming what it expects
        steps = state.get("steps", {})
        if not isinstance(steps, Mapping) or not all(
            isinstance(k, str) and is_integer(n) and n >= 1 for k, n in steps.items()
        ):
            raise ValueError(
                f"Adam.load_state_dict: 'steps' must map parameter names to integers >= 1 "
                f"(each parameter's updates), got {steps!r:.80}"
            )
        super().load_state_dict({k: v for k, v in state.items() if k != "steps"})
        self.steps = {k: int(n) for k, n in steps.items()}


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)
}


def make_optimizer(name: str, **kwargs: Any) -> Optimizer:
    """An optimizer by name (case-insensitive: ``sgd``, ``momentum``, ``nesterov``, ...).

    ``kwargs`` are its hyperparameters (``lr=0.1``), checked as the constructors check
    them; ``None`` values are dropped, so the optimizer's own default is used. A name
    that is not a string, or a hyperparameter the optimizer does not take, is a
    ``TypeError`` saying what it takes (``weight_decay`` is the network's setting).
    """
    if not isinstance(name, str):
        raise TypeError(
            f"make_optimizer: name must be a string, one of {', '.join(OPTIMIZERS)}; "
            f"got {name!r} ({type(name).__name__})"
        )
    key = name.strip().lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}")
    cls, given = OPTIMIZERS[key], {k: v for k, v in kwargs.items() if v is not None}
    taken = list(inspect.signature(cls).parameters)
    unknown = [k for k in given if k not in taken]
    if unknown:
        hint = (
            "; weight_decay is a setting of the network (weight_decay= of MultiLayerNet or "
            "Sequential, --weight-decay of xpnet train), not of the optimizer"
            if "weight_decay" in unknown
            else ""
        )
        raise TypeError(f"{key} takes {', '.join(taken)}, not {', '.join(unknown)}{hint}")
    return cls(**given)
