"""Networks built from layers: :class:`Sequential`, and the book's networks built as one.

A :class:`Sequential` is a list of layers and a loss layer. ``gradient`` runs the
forward pass, then the backward pass through the layers in reverse (the general
backprop pattern), and collects each layer's parameter gradients. ``TwoLayerNet``,
``MultiLayerNet`` (with the book's BatchNorm and Dropout options) and
``SimpleConvNet`` are builders: they draw the weights and hand the layers to
``Sequential``.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from itertools import islice, pairwise
from types import ModuleType
from typing import Any

import array_api_compat

from xpnet import conversion
from xpnet.backend import (
    BackendMismatchError,
    byte_bounds,
    dtype_name,
    host_rng,
    library_of,
    location,
    namespace_of,
    reduce_sum,
)
from xpnet.checks import (
    NO_ACCUMULATED_GRADIENTS,
    ArgumentTypeError,
    BookName,
    TorchName,
    bad_argument,
    is_count,
    is_finite_at_least,
    is_integer,
    is_real,
    refuses_book_keywords,
    require_count,
    shape_mistake,
)
from xpnet.conv import Convolution, Pooling, output_size
from xpnet.conversion import network_to
from xpnet.held import draws_random_numbers, held, layers_of
from xpnet.init import float_dtype, require_bias_init, require_std, weight_std
from xpnet.layers import (
    Affine,
    BatchNormalization,
    Dropout,
    Loss,
    ReLU,
    Sigmoid,
    SigmoidWithLoss,
    SoftmaxWithLoss,
    Tanh,
    check_labels,
    describe,
    describe_array,
    has_params,
    inner_layers,
    is_real_floating,
    not_labels_or_rows,
    own_params,
    require_array,
    require_layer_methods,
    require_named_sublayers,
    takes_train_flg,
    undeclared_parameters,
    walk,
    walk_from,
)
from xpnet.numerical import central_gradient, check_step

ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
EVAL_BATCH_SIZE = 1_000  # samples an evaluation (accuracy, the Trainer's) puts through at a time


class Parameters(MutableMapping):
    """``name -> array``, a live view of the layers' parameters (``W1`` is ``layers[0].W``).

    Assigning ``params["W1"] = new`` rebinds the layer's attribute, so optimizers may
    update in place (``params[k] -= lr * g``) or by assignment; the shape and the dtype
    must stay.
    """

    def __init__(self, slots: dict[str, tuple[Any, str]]) -> None:
        self._slots = slots

    def __getitem__(self, name: str) -> Any:
        try:  # not self.slot(name): a call more for each parameter of every optimizer step
            layer, attr = self._slots[name]
        except KeyError:
            raise self._unknown(name) from None
        return getattr(layer, attr)

    def __setitem__(self, name: str, value: Any) -> None:
        slot = self._slots.get(name)
        if slot is None:
            raise self._unknown(name)
        layer, attr = slot
        old = getattr(layer, attr)
        if value is old:  # params[k] -= step, updated in place: nothing to rebind
            return
        if not hasattr(value, "shape"):
            raise TypeError(
                f"parameter {name!r} must be an array of shape {tuple(old.shape)}, got "
                f"{type(value).__name__} {value!r:.40}"
            )
        try:
            namespace_of(value, old)
        except BackendMismatchError as exc:  # another library, or another device
            raise BackendMismatchError(
                f"parameter {name!r}: {exc}; a network's parameters stay where it was built"
            ) from exc
        if value.shape != old.shape and tuple(value.shape) != tuple(old.shape):
            raise ValueError(
                f"parameter {name!r} has shape {tuple(old.shape)}, got {tuple(value.shape)}"
            )
        if value.dtype != old.dtype:
            raise ValueError(
                f"parameter {name!r} has dtype {dtype_name(old)}, got {dtype_name(value)}: "
                f"every parameter of a network has one dtype, so give it a {dtype_name(old)} "
                "array (xp.astype); for the whole network in another dtype, net.to(dtype) "
                "(torch's model.double() is net.to('float64'))"
            )
        setattr(layer, attr, value)

    def __delitem__(self, name: str) -> None:
        raise TypeError("a network's parameters cannot be removed")

    def __contains__(self, name: object) -> bool:
        return name in self._slots  # not Mapping's, which reads the array (or builds the error)

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def slot(self, name: str) -> tuple[Any, str]:
        """The layer holding parameter ``name`` and its attribute name (``"W1"`` -> Affine, "W");
        an unknown name is a ``KeyError`` listing the parameters."""
        slot = self._slots.get(name)
        if slot is None:
            raise self._unknown(name)
        return slot

    def _unknown(self, name: str) -> KeyError:
        return KeyError(f"no parameter {name!r}; parameters are {', '.join(self._slots)}")

    def __repr__(self) -> str:
        """Each parameter by dtype and shape, as the layers print them:
        ``Parameters(W1=float32[784, 50], b1=float32[50], ...)``."""
        described = ", ".join(f"{name}={describe_array(self[name])}" for name in self)
        return f"{type(self).__name__}({described})"


class Layers(tuple):
    """A network's layers, fixed when it is built: its parameters, its backward's start and
    which layers take ``train_flg`` are worked out from them once, so a layer put in later
    would run forward while the optimizer went on training the one it replaced."""

    def __setitem__(self, index: Any, layer: Any) -> None:
        raise TypeError(
            f"a network's layers cannot be replaced (layers[{index!r}] = "
            f"{type(layer).__name__}(...)): its parameters are those of the layers it was "
            "built with; build a new Sequential with the new layer"
        )

    def __delitem__(self, index: Any) -> None:
        raise TypeError(
            f"a network's layers cannot be removed (del layers[{index!r}]): build a new "
            "Sequential without it"
        )


def _where(k: int | str, layer: Any) -> str:
    """How messages name layer ``k`` (from 0, as ``net[k]`` and ``net.layers[k]`` count), or
    the layer at ``path`` inside another (``layers[1].inner (Affine)``, :func:`walk`)."""
    return f"{f'layers[{k}]' if isinstance(k, int) else k} ({type(layer).__name__})"


def _at(prefix: str, path: str) -> str:
    """``path`` inside the layer at ``prefix`` (``layers[2].inner`` + ``layers[0]``); ``path``
    itself for the outermost network (``prefix`` empty)."""
    return f"{prefix}.{path}" if prefix else path


class LayerError(ValueError):
    """A layer of the stack ``stack`` (a Sequential) refused what it was given: ``text(prefix)``
    names the layers by path, inside the stack at ``prefix`` (:func:`_at`). A network holding
    the stack re-raises it with the stack's path in it (:meth:`Sequential._renamed`), so the
    message names a layer deep inside by its full path."""

    def __init__(self, stack: Any, text: Any) -> None:
        super().__init__(text(""))
        self.stack, self.text = stack, text


class LayerTypeError(LayerError, TypeError):
    """A :class:`LayerError` for a layer's forward returning no array (a tuple)."""


class LayerBackendError(LayerError, BackendMismatchError):
    """A :class:`LayerError` for a layer's input of another library than the network's
    parameters: the output of a layer computing with ``np.`` functions on torch tensors."""


class LayerAttributeError(LayerError, AttributeError):
    """A :class:`LayerError` for a layer's backward finding no attribute of its own that its
    forward keeps: the forward pass did not run first."""


def _not_an_array(where: str, value: Any) -> str:
    """The message for ``where``'s forward returning ``value``, which is no array."""
    got = "None" if value is None else f"a {type(value).__name__}"
    return (
        f"{where}.forward returned {got}, not an array: a layer's forward returns one array "
        "(N, ...), which the next layer, the loss and predict's caller take"
    )


def require_scores(net: Any, scores: Any) -> None:
    """Raise ``TypeError`` naming the last layer of ``net`` unless ``scores``, what its
    ``predict`` returned, is an array: for code that runs once (the Trainer's first pass),
    as :meth:`Sequential.predict` leaves it unchecked in every step."""
    if hasattr(scores, "shape"):
        return
    layers = getattr(net, "layers", ())
    where = _where(len(layers) - 1, layers[-1]) if layers else f"{type(net).__name__}.predict"
    raise TypeError(_not_an_array(where, scores))


def _held_arrays(walked: list[tuple[str, Any]]) -> dict[int, dict[str, Any]]:
    """``id(layer) -> {attribute: array}`` for the layers at ``walked`` (path, layer)."""
    return {
        id(layer): {k: v for k, v in vars(layer).items() if array_api_compat.is_array_api_obj(v)}
        for _, layer in walked
        if hasattr(layer, "__dict__")
    }


def _warn_of_undeclared_parameters(
    walked: list[tuple[str, Any]], before: dict[int, dict[str, Any]]
) -> None:
    """Warn of each :func:`~xpnet.layers.undeclared_parameters` of the layers ``walked``, of
    the arrays each held ``before`` a pass and still holds: the network does not see them,
    so no optimizer trains them (arrays the pass replaced are caches, as the input ``x``
    its forward keeps)."""
    for path, layer in walked:
        arrays = before.get(id(layer), {})
        kept = {name: a for name, a in arrays.items() if getattr(layer, name, None) is a}
        for name in undeclared_parameters(layer, kept):
            warnings.warn(
                f"{_where(path, layer)} stored d{name} in backward, but its params does not "
                f"name {name}: the network does not see {name} (not in net.params), so no "
                f"optimizer trains it and no gradient check checks it; name it in the "
                f"class's params, e.g. params = ({name!r},)",
                stacklevel=3,
            )


def _wrong_input_gradient(dx: Any, shape: Any) -> str | None:
    """What is wrong with a backward's ``dx`` for an input of ``shape`` (None for nothing or
    an unknown shape): Python-side metadata, no device work."""
    if getattr(dx, "shape", None) == shape or shape is None:
        return None
    got = f"shape {tuple(dx.shape)}" if hasattr(dx, "shape") else type(dx).__name__
    return (
        f".backward returned an input gradient of {got}, but its input had shape "
        f"{tuple(shape)}: backward must return dx in the shape of forward's input"
    )


def _require_input_gradient(dx: Any, shape: Any, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless its backward's ``dx`` has ``shape``, the
    shape of its input in the forward pass."""
    wrong = _wrong_input_gradient(dx, shape)
    if wrong is not None:
        raise ValueError(where + wrong)


def _require_parameter_gradient(grad: Any, param: Any, name: str, dattr: str, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless the gradient ``grad`` its backward stored
    as ``dattr`` has the shape of the parameter ``name`` (``param``)."""
    if getattr(grad, "shape", None) == param.shape:
        return
    if grad is None:
        raise ValueError(
            f"{where}.backward stored no gradient {dattr} for its parameter {dattr[1:]} "
            f"({name}); a layer stores d<name> for each name in its params"
        )
    shaped = hasattr(grad, "shape")
    got = f"shape {tuple(grad.shape)}" if shaped else type(grad).__name__
    mistake = shaped and shape_mistake(tuple(grad.shape), tuple(param.shape))
    raise ValueError(
        f"{where}.backward stored {dattr} of {got}, but its parameter {dattr[1:]} ({name}) "
        f"has shape {tuple(param.shape)}" + (mistake or ": a parameter's gradient has its shape")
    )


def _require_instance(what: str, layer: Any) -> None:
    """Raise ``TypeError`` naming ``what`` when ``layer`` is a class, not an instance of it."""
    if isinstance(layer, type):
        raise TypeError(
            f"{what} is the class {layer.__name__}, not an instance: pass {layer.__name__}()"
        )


def _check_loss(loss: Any) -> None:
    _require_instance("loss", loss)
    kind = type(loss).__name__
    if not all(callable(getattr(loss, m, None)) for m in ("forward", "backward")):
        raise TypeError(
            f"loss {kind} is not a loss layer: a loss layer has forward(y, t) returning a "
            "scalar and backward(dout=1), e.g. xpnet.layers.SoftmaxWithLoss()"
        )
    if isinstance(loss, Loss):
        return
    try:
        positional = [
            p
            for p in inspect.signature(loss.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        return
    if len(positional) < 2 and not any(p.kind == p.VAR_POSITIONAL for p in positional):
        raise TypeError(
            f"loss {kind} is not a loss layer: its forward takes "
            f"({', '.join(p.name for p in positional)}), but a loss layer's forward takes "
            "the predictions and the targets, forward(y, t)"
        )


def _refuse_sigmoid_twice(layers: Sequence[Any], loss: Any) -> None:
    """Refuse a :class:`Sigmoid` as the last layer (of the stacks inside too) before a
    :class:`SigmoidWithLoss`, which applies the sigmoid to the scores itself: the outputs
    would go through it twice, and the network would train, badly, without an error."""
    prefix, path, last = "layers", "", None
    while layers:
        path, last = f"{prefix}[{len(layers) - 1}]", layers[-1]
        prefix, layers = f"{path}.layers", last.layers if isinstance(last, Sequential) else ()
    if isinstance(last, Sigmoid) and isinstance(loss, SigmoidWithLoss):
        raise ValueError(
            f"{path} (Sigmoid) feeds SigmoidWithLoss, which applies the sigmoid itself (it takes "
            "scores, as PyTorch's BCEWithLogitsLoss): the outputs would go through the sigmoid "
            "twice. Leave the last Sigmoid out (predict then gives scores, whose sigmoid is the "
            "output), or keep it with MeanSquaredError (the squared error of sigmoid outputs)"
        )


def _require_one_dtype(
    params: Parameters, seen: dict[int, str], advice: str = "convert them first (xp.astype)"
) -> None:
    """Refuse parameters of more than one library, device or dtype, naming the first that
    differs from the first parameter (and ending the dtype's message with ``advice``): a
    float64 layer after float32 ones would promote the scores silently (NumPy), or fail
    in the first pass (array_api_strict)."""
    names = iter(params)
    first = next(names, None)
    for name in names:
        value, reference = params[name], params[first]
        namespace_of(value, reference)  # BackendMismatchError naming both
        if value.dtype != reference.dtype:
            layer, _ = params.slot(name)
            raise ValueError(
                f"parameter {name} ({_where(seen[id(layer)], layer)}) has dtype "
                f"{dtype_name(value)}, but {first} has {dtype_name(reference)}: every "
                f"parameter of a network has one dtype; {advice}"
            )


def _require_floating_array(value: Any, attr: str, where: str) -> None:
    """Raise ``TypeError`` naming ``where`` and ``attr`` unless the parameter ``value`` is a
    real floating array: the optimizers update arrays in place, in their dtype."""
    if not hasattr(value, "shape"):
        raise TypeError(
            f"{where}: parameter {attr!r} is {type(value).__name__} {value!r:.40}, expected a "
            "real floating array (a scalar one too: xp.asarray(0.25, dtype=xp.float32))"
        )
    if not is_real_floating(namespace_of(value), value):
        raise TypeError(
            f"{where}: parameter {attr!r} has dtype {dtype_name(value)}, expected a real "
            "floating array (xp.astype(..., xp.float32)): an optimizer's step is fractional"
        )


def _decayed_attributes(layer: Any) -> tuple[str, ...]:
    """The attributes of ``layer`` that weight decay applies to: its ``decayed`` (names among
    its ``params``), or ``("W",)``."""
    decayed = getattr(layer, "decayed", None)
    if decayed is None:
        return ("W",)
    params = getattr(layer, "params", ())
    if isinstance(decayed, str) or not all(name in params for name in decayed):
        raise ValueError(
            f"{type(layer).__name__}.decayed must be a tuple of names among its params "
            f"{tuple(params)}, got {decayed!r}"
        )
    return tuple(decayed)


def _names_of(params: Iterable[str]) -> tuple[str, ...]:
    """``params`` of :meth:`Sequential.gradient` as a tuple, or a ``TypeError`` naming it."""
    try:
        return tuple(params)
    except TypeError:
        raise TypeError(
            f"gradient(params=...) takes parameter names (a list, or one name), got "
            f"{type(params).__name__} {params!r:.40}"
        ) from None


def _parameter_slots(walked: Sequence[tuple[str, Any]]) -> dict[str, tuple[Any, str]]:
    """``name -> (layer, attribute)`` for the layers ``walked`` (:func:`walk`'s ``(path,
    layer)``, inner layers included): each attribute named ``W`` numbered by order of
    appearance (``W1``, ``W2``, ...); a name ending in a digit gets ``_`` first (``w0_1``)."""
    slots: dict[str, tuple[Any, str]] = {}
    counts: dict[str, int] = {}
    paths = {id(layer): path for path, layer in walked}
    # id of each parameter array -> its name and the array, held so that no id is reused
    named: dict[int, tuple[str, Any]] = {}
    spans: list[tuple[Any, ...]] = []  # (device, first byte, end, order, name, where)
    for path, layer in walked:
        attrs = own_params(layer)
        if isinstance(attrs, str) or not all(isinstance(a, str) for a in attrs):
            raise TypeError(
                f"{_where(path, layer)}: params must be a tuple of attribute names, e.g. "
                f"('W', 'b'), got {attrs!r}"
            )
        for attr in attrs:
            if not hasattr(layer, attr):
                raise ValueError(
                    f"{_where(path, layer)} names {attr!r} in its params, but has no "
                    f"attribute {attr!r}; its params are {tuple(attrs)}"
                )
            value = getattr(layer, attr)
            _require_floating_array(value, attr, _where(path, layer))
            counts[attr] = counts.get(attr, 0) + 1
            name = f"{attr}{'_' * attr[-1].isdigit()}{counts[attr]}"
            if name in slots:
                other = slots[name][0]
                raise ValueError(
                    f"parameter name {name!r} of {_where(path, layer)} clashes with the one of "
                    f"{_where(paths[id(other)], other)}: rename one of the attributes"
                )
            if id(value) in named:
                _refuse_tied(
                    name, _where(path, layer), f"is the same array as {named[id(value)][0]}"
                )
            bounds = byte_bounds(value)
            if bounds is not None:
                spans.append((*bounds, len(spans), name, _where(path, layer)))
            named[id(value)] = (name, value)
            slots[name] = (layer, attr)
    _refuse_views(spans)
    return slots


def _refuse_views(spans: list[tuple[Any, ...]]) -> None:
    """Refuse two parameters whose ``spans`` (:func:`~xpnet.backend.byte_bounds` with their
    order, name and layer) overlap on one device: views of one array, as ``W`` and ``W.T``."""
    reach = None  # the span reaching furthest among those started on this device so far
    for span in sorted(spans):
        if reach is not None and reach[0] == span[0] and span[1] < reach[2]:
            first, second = sorted((reach, span), key=lambda s: s[3])
            how = f"shares memory with {first[4]} (one is a view of the other, as W.T is of W)"
            _refuse_tied(second[4], second[5], how)
        if reach is None or reach[0] != span[0] or span[2] > reach[2]:
            reach = span


def _refuse_tied(name: str, where: str, how: str) -> None:
    raise ValueError(
        f"parameter {name} of {where} {how}: tied weights are not supported (the "
        "optimizer would update it once per name, weight decay count it twice, and a "
        "checkpoint would untie it); give the layer its own copy (xp.asarray(W, copy=True)), "
        "or write one layer that holds the array once and adds up its gradients "
        "(docs/layers.md, tied weights)"
    )


def _require_layer(path: str, layer: Any, seen: dict[int, str]) -> None:
    """Refuse what cannot be layer ``path`` of a network (``seen``: the paths of the layers
    before it, by id), naming it: a class, an object without forward and backward, a loss
    layer, a network with a loss, a layer seen before, or a layer made of layers whose
    forward does not take the ``train_flg`` that a layer inside it takes."""
    _require_instance(path, layer)
    where = _where(path, layer)
    require_layer_methods(layer, where)
    if isinstance(layer, Loss):
        raise TypeError(f"{where} is a loss layer: pass it as loss=")
    if isinstance(layer, Sequential) and layer.last_layer is not None:
        raise TypeError(
            f"{where} has a loss ({type(layer.last_layer).__name__}): a network inside another "
            "is a stack of layers, Sequential([...]) without loss=; the outer network's loss= "
            "ends the whole"
        )
    if id(layer) in seen:
        raise ValueError(
            f"{where} is the same object as {seen[id(layer)]}: a layer keeps what its forward "
            "saw for its backward, so one object cannot appear twice in a network; create "
            f"another ({type(layer).__name__}(...))"
        )
    seen[id(layer)] = path
    inside = islice(walk_from(path, layer), 1, None)  # a stack takes train_flg for those in it
    modal = next(
        (
            _where(p, inner)
            for p, inner in inside
            if takes_train_flg(inner) and not inner_layers(inner)
        ),
        None,
    )
    if modal is not None and not takes_train_flg(layer):
        raise TypeError(
            f"{where} holds {modal}, whose forward takes train_flg, but its own forward does "
            "not: take forward(x, train_flg=False) and pass it on, so that the layer inside "
            "knows training from evaluation"
        )
    require_named_sublayers(layer, where)


NO_LOSS = (
    "this Sequential has no loss: built without loss=, it is a stack of layers (forward, "
    "backward) to put in a network; build Sequential(layers, loss=SoftmaxWithLoss()) for "
    "loss, gradient and accuracy"
)


_NO_DOUT = (
    "Sequential.backward(dout) takes dout, the gradient of the network's output: an array of "
    "the shape of the scores of the last forward, (N, C) for N samples of C classes; the "
    "gradients of the loss, torch's loss.backward(), are grads = net.gradient(x, t)"
)


def _no_scores_gradient(dout: Any) -> Exception:
    """The error for :meth:`Sequential.backward` given ``dout`` that is no gradient of the
    scores: none, a number or a 0-D array (torch's ``loss.backward()``, the loss's ``1``)."""
    if dout is None:
        return TypeError(f"no dout: {_NO_DOUT}")
    if not hasattr(dout, "shape"):
        return TypeError(f"got dout {type(dout).__name__} {dout!r:.40}: {_NO_DOUT}")
    return ValueError(f"got dout of shape (), a 0-D array: {_NO_DOUT}")


class Sequential:
    """A network from a list of layers and a loss layer: ``loss(layers(x), t)``.

    ``layers`` are any objects with ``forward(x)`` and ``backward(dout)`` (returning the
    gradient of the input); a layer with parameters names their attributes in
    ``params`` (``("W", "b")``) and stores their gradients as ``d<name>`` (``dW``) in
    ``backward``; a layer whose ``forward`` takes ``train_flg`` (Dropout, BatchNorm) gets
    ``train_flg=True`` in :meth:`gradient` and ``False`` elsewhere. ``loss`` is a loss
    layer: ``forward(y, t)`` returns a 0-D array, ``backward(dout=1)`` the gradient of ``y``.
    ``layers`` is kept as a tuple that refuses item assignment (:class:`Layers`): the
    parameters are those of the layers the network was built with. ``len(net)``,
    ``net[i]`` and ``for layer in net`` go over ``layers``, as on a PyTorch ``Sequential``.

    Parameters are named as in the book, per attribute name in order of appearance:
    ``W1, b1, W2, b2, ...``; ``params`` is a live mapping from these names to the layers'
    arrays. ``weight_decay`` adds ``0.5 * weight_decay * sum(W**2)`` over every parameter
    held in an attribute named ``W``, as the book decays weights and not biases; a layer
    names other attributes to decay in ``decayed`` (``decayed = ("W", "V")``).

    Layers nest. A layer made of layers (a residual block) names the attributes holding
    them in ``sublayers`` (``sublayers = ("inner",)``; an attribute holds one layer, a
    sequence of them or None), as ``params`` names arrays, and its ``forward`` and ``backward``
    call theirs; its forward takes ``train_flg`` and passes it on when a layer inside it
    takes it. The network finds their parameters depth first, in order of appearance,
    numbered across the nesting (a nested network's names are those of the flat network
    of the same layers): ``params["W2"]`` is the innermost layer's ``W``, and its
    gradient that layer's ``dW``. Weight decay, buffers and the checks (one object
    twice, one dtype, tied weights) see the inner layers too; messages name them by
    path, ``layers[1].inner (Affine)``. Built without ``loss``, a Sequential is such a
    layer, a stack (``sublayers = ("layers",)``): ``forward(x, train_flg=False)``,
    ``backward(dout)`` returning the input's gradient, and ``params``; ``loss``,
    ``gradient`` and ``accuracy`` need a loss. A Sequential with a loss is refused
    inside another. ``Sequential([])`` without ``loss`` is the identity, as PyTorch's
    ``nn.Sequential()``; with a loss, it is refused (nothing to train).
    """

    def __init__(
        self, layers: Sequence[Any], *, loss: Any = None, weight_decay: float = 0.0
    ) -> None:
        if not isinstance(layers, Iterable):
            raise TypeError(
                f"layers must be a list of layers, got {type(layers).__name__}: "
                "Sequential([a, b], loss=...), where torch.nn.Sequential takes nn.Sequential(a, b)"
            )
        self.layers = Layers(layers)
        if not self.layers and loss is not None:
            raise ValueError(
                "a Sequential with a loss needs at least one layer (it would have nothing to "
                "train); Sequential([]) without loss= is the identity, a stack to nest"
            )
        seen: dict[int, str] = {}  # id -> path of every layer, inner ones included
        walked = list(walk(self.layers))
        for path, layer in walked:
            _require_layer(path, layer, seen)
        if loss is not None:
            _check_loss(loss)
            _refuse_sigmoid_twice(self.layers, loss)
        if not is_finite_at_least(weight_decay, 0.0):
            raise bad_argument(is_real(weight_decay))(
                f"weight_decay must be a finite number >= 0, got {weight_decay!r}"
            )
        if loss is None and weight_decay:
            raise ValueError(
                f"weight_decay={weight_decay!r} needs a loss to add to: give it to the network "
                "that has the loss= (it decays the W of the layers inside this one too)"
            )
        self.last_layer = loss
        self.weight_decay = weight_decay
        slots = _parameter_slots(walked)
        self.params = Parameters(slots)
        self._decayed = tuple(
            name for name, (layer, attr) in slots.items() if attr in _decayed_attributes(layer)
        )
        self._modal = tuple(takes_train_flg(layer) for layer in self.layers)
        self._any_modal = any(self._modal)
        _require_one_dtype(self.params, seen)
        self._take_the_parameters_dtype()
        # name, layer, attribute, its gradient's attribute, and where (for messages)
        self._slots = [
            (name, layer, attr, "d" + attr, _where(seen[id(layer)], layer))
            for name, (layer, attr) in slots.items()
        ]
        self._shapes: list[Any] | None = None  # the layers' input shapes, while gradient() checks
        # (x.shape, t.shape, params) that gradient() checked, and its params= selections
        self._checked_shapes: set[tuple[Any, Any, Any]] = set()
        self._selections: dict[tuple[str, ...], tuple[int, list[tuple[Any, ...]]]] = {}
        # Backward stops at the first layer with parameters: the ones before need no gradient.
        # The stacks inside (Sequentials without loss), whose backward checks their layers'
        # shapes while gradient() checks them.
        self._stacks = [lay for _, lay in walked if isinstance(lay, Sequential)]
        self._walked = [(path, lay) for path, lay in walked if not isinstance(lay, Sequential)]
        self._backward_from = next(
            (k for k, layer in enumerate(self.layers) if has_params(layer)), len(self.layers)
        )

    @property
    def dtype(self) -> str:
        """The floating dtype of the parameters, by name (``"float32"``)."""
        self._recheck_after_conversions()
        first = next(iter(self.params.values()), None)
        return "float64" if first is None else dtype_name(first)

    def to(
        self, dtype: Any = None, device: Any = None, *, xp: ModuleType | None = None
    ) -> Sequential:
        """Cast and move the network in place and return it, as torch's ``model.to``.

        ``dtype`` (``"float32"`` or ``"float64"``, by name or as a dtype) casts every real
        floating array the network and its layers hold: parameters (W (in, out) stays
        (in, out)), BatchNorm's running statistics, the layers' caches; integer and bool
        arrays keep their dtype, and an integer ``dtype`` is a ``ValueError``. ``device``
        (or the first argument, as torch's ``model.to("cuda")``) moves every array there,
        within the parameters' library (torch's ``"cuda:1"``; for NumPy and CuPy, ``"cpu"``
        is NumPy and ``"cuda"`` CuPy, as the builders' ``device=``), and ``xp`` to that
        namespace (on ``device``), as :func:`xpnet.backend.to_device` moves data; a device
        the library lacks is refused there, naming it. An array held by two layers stays
        one array, ``params`` shows the new arrays, and a failed conversion changes nothing
        (:func:`xpnet.conversion.network_to`). Stacks inside convert with the network; a
        stack converted alone leaves the network holding it refusing to run (parameters of
        two dtypes, libraries or devices) until it is converted whole.

        An optimizer's state keeps the dtype and device it was made in: as in PyTorch,
        construct the optimizer after ``to``. ``load_network(path, dtype=..., device=...,
        xp=...)`` makes a converted copy from a checkpoint instead.
        """
        network_to(self, dtype, device, xp=xp)
        return self

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled (a Dask worker's copy): the count of conversions it saw is another
        process's, so the first use checks the parameters again."""
        self.__dict__.update(state)
        self._conversions = -1

    def _recheck_after_conversions(self) -> None:
        """After any conversion (:func:`~xpnet.conversion.network_to`) since the last look,
        refuse parameters of two dtypes, libraries or devices, as the constructor does, and
        take the input dtype from them again: a stack inside this network converted alone
        (``inner.to("float64")``) changes some of its parameters, or all, without it."""
        if self._conversions == conversion.conversions:
            return
        seen = {id(layer): path for path, layer in walk(self.layers)}
        advice = (
            "some of its layers were converted without it, by the .to() of a Sequential "
            "holding them (a stack inside it): convert the whole network, net.to(...)"
        )
        try:
            _require_one_dtype(self.params, seen, advice)
        except BackendMismatchError as exc:
            raise BackendMismatchError(f"{exc}; {advice}") from exc
        self._take_the_parameters_dtype()

    def _take_the_parameters_dtype(self) -> None:
        """The dtype ``predict`` converts floating input to: the parameters' (None without
        any), as of the conversions made so far. Parameters refuses a parameter of another
        dtype, so it holds until a conversion (:meth:`_recheck_after_conversions`)."""
        first = next(iter(self.params.values()), None)
        self._input_dtype = None if first is None else first.dtype
        self._conversions = conversion.conversions

    def predict(self, x: Any, train_flg: bool = False) -> Any:
        """The last layer's output (scores) for the input batch ``x`` (N, ...).

        A floating ``x`` of another precision than the parameters is converted to theirs
        first, as Keras's and Flax's layers do: a float32 network computes in float32 on
        float64 data, and a float64 one in float64 on float32 data.
        """
        # Dtypes are singletons, so "is" is the cheap test; another dtype object may still be
        # equal, or of another library (compared after the namespace check: no warning). A
        # network without parameters (a stack of activations) leaves the dtype to its layers.
        if self._conversions != conversion.conversions:
            self._recheck_after_conversions()
        dtype = self._input_dtype
        if dtype is not None and getattr(x, "dtype", dtype) is not dtype:
            x = self._in_parameter_dtype(x)
        modal, shapes = self._modal, self._shapes
        for k, layer in enumerate(self.layers):
            if shapes is not None:
                shapes.append(getattr(x, "shape", None))
            try:
                x = layer.forward(x, train_flg=train_flg) if modal[k] else layer.forward(x)
            except ValueError as exc:
                raise self._refused(k, x, exc) from exc
            except TypeError as exc:  # a tuple from the layer before, or an array of numpy
                if k == 0:
                    raise
                error = self._foreign(k, x) if hasattr(x, "shape") else self._no_array(k - 1, x)
                if error is None:
                    raise
                raise error from exc
        if shapes is not None:
            shapes.append(getattr(x, "shape", None))
        return x

    def _refused(self, k: int, x: Any, exc: ValueError) -> LayerError:
        """The error for layer ``k``'s forward refusing ``x`` with ``exc``: naming the layer,
        or, for a stack inside it that named one of its own, that one by its full path."""
        renamed = self._renamed(exc, walk_from(f"layers[{k}]", self.layers[k]))
        if renamed is not exc:
            return renamed
        if k and not hasattr(x, "shape"):
            return self._no_array(k - 1, x)
        foreign = self._foreign(k, x)
        if foreign is not None:
            return foreign

        def text(prefix: str) -> str:
            source = (
                f"the input{f' of {prefix}' if prefix else ''}"
                if k == 0
                else f"the output of {_where(_at(prefix, f'layers[{k - 1}]'), self.layers[k - 1])}"
            )
            return (
                f"{_where(_at(prefix, f'layers[{k}]'), self.layers[k])} cannot take {source}, "
                f"of shape {tuple(getattr(x, 'shape', ()))}: {exc}"
            )

        return LayerError(self, text)

    def _foreign(self, k: int, x: Any) -> LayerBackendError | None:
        """The error for layer ``k``'s input ``x``, the output of layer ``k - 1``, being an
        array of another library than the parameters (a layer computing with ``np.``
        functions on torch tensors), which the next layer with parameters refuses without
        naming the culprit; None when it is not."""
        first = next(iter(self.params.values()), None)
        if k == 0 or first is None or not array_api_compat.is_array_api_obj(x):
            return None
        got, expected = library_of(x), library_of(first)
        if got == expected:
            return None
        functions = "np." if got == "numpy" else f"{got}'s"

        def text(prefix: str) -> str:
            before = _at(prefix, f"layers[{k - 1}]")
            return (
                f"the input of {_where(_at(prefix, f'layers[{k}]'), self.layers[k])}, the output "
                f"of {_where(before, self.layers[k - 1])}, is an array of {got}, but the "
                f"parameters are {expected}'s: a layer at or before {before} computed with "
                f"{functions} functions (use xp = xpnet.backend.namespace_of(x))"
            )

        return LayerBackendError(self, text)

    def _renamed(self, exc: Exception, walked: Any = None) -> Any:
        """``exc`` with this network's paths, where a stack among the layers ``walked``
        (default: all of them, :func:`walk`) raised it (:class:`LayerError`); else ``exc``."""
        stack = getattr(exc, "stack", None)
        if stack is None or stack is self:
            return exc
        found = (p for p, layer in (walked or walk(self.layers)) if layer is stack)
        path = next(found, None)
        if path is None:  # a stack that its holder does not name in its sublayers
            return exc
        return type(exc)(self, lambda prefix: exc.text(_at(prefix, path)))

    def _no_array(self, k: int, value: Any) -> LayerTypeError:
        """The error for layer ``k``'s forward returning ``value``, which is no array."""
        layer = self.layers[k]
        return LayerTypeError(
            self, lambda prefix: _not_an_array(_where(_at(prefix, f"layers[{k}]"), layer), value)
        )

    def _in_parameter_dtype(self, x: Any) -> Any:
        """``x`` converted to the parameters' dtype when it is real floating (integers, such
        as raw pixels, are left for the first layer to refuse), else ``x`` itself."""
        if self._input_dtype is None:
            return x
        # An array of another library (array_api_strict's into a NumPy network) has a dtype
        # of another kind too: a BackendMismatchError here, not astype's own confusion.
        xp = namespace_of(x, next(iter(self.params.values())))
        if x.dtype == self._input_dtype or not is_real_floating(xp, x):
            return x
        return xp.astype(x, self._input_dtype)

    def loss(self, x: Any, t: Any, train_flg: bool = False) -> Any:
        """The loss layer's loss (plus weight decay) as a 0-D array."""
        if self.last_layer is None:
            raise TypeError(NO_LOSS)
        y = self.predict(x, train_flg)
        try:
            loss = self.last_layer.forward(y, t)
        except (TypeError, ValueError) as exc:  # a tuple from the last layer, say
            if hasattr(y, "shape"):
                raise
            raise self._no_array(len(self.layers) - 1, y) from exc
        for name in self._decayed if self.weight_decay else ():
            W = self.params[name]
            loss = loss + 0.5 * self.weight_decay * reduce_sum(W * W)
        return loss

    def training_loss(self, x: Any, t: Any) -> Any:
        """The loss that :meth:`gradient` differentiates: :meth:`loss` in training mode
        (Dropout's masks, BatchNorm's batch statistics) as a 0-D array."""
        # Networks without train/eval layers keep the book's two-argument loss(x, t), so
        # subclasses that override it need not know about train_flg.
        return self.loss(x, t, train_flg=True) if self._any_modal else self.loss(x, t)

    def decay_rate(self, name: str) -> float:
        """The weight decay on parameter ``name``: ``loss`` adds ``0.5 * rate * sum(p**2)``."""
        return self.weight_decay if name in self._decayed else 0.0

    def accuracy(self, x: Any, t: Any, batch_size: int = EVAL_BATCH_SIZE) -> float:
        """Fraction of samples whose highest score is the target class (a Python float).

        ``t`` is integer labels (N,) in [0, C) or one-hot (or smoothed) rows (N, C). An
        empty batch has no accuracy: NaN, as NumPy's mean of nothing. ``x`` goes through the
        network ``batch_size`` samples at a time, as the book's ``SimpleConvNet.accuracy``
        does, so that the layers' intermediate arrays stay small (the conv net's, for
        10,000 images at once, take about 2 GB); the hits are summed on the device.
        """
        if self.last_layer is None:
            raise TypeError(NO_LOSS)
        require_array("targets", t)
        require_count("batch_size", batch_size, 1)
        n = x.shape[0]
        y = self.predict(x[: min(batch_size, n), ...])
        classes = y.shape[1]
        xp = namespace_of(y, t)
        if t.shape == (n,) and xp.isdtype(t.dtype, "integral"):
            check_labels(t, classes)
            labels = t
        elif t.shape == (n, classes):
            labels = xp.argmax(t, axis=1)
        else:
            raise not_labels_or_rows(t, f"({n},)", str((n, classes)))
        if n == 0:
            return math.nan
        hits = None
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if start:
                y = self.predict(x[start:stop, ...])
            chunk = xp.sum(xp.astype(xp.argmax(y, axis=1) == labels[start:stop], xp.int64))
            hits = chunk if hits is None else hits + chunk
        return int(hits) / n

    def gradient(
        self, x: Any, t: Any, train_flg: bool = True, *, params: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Gradients of ``loss(x, t)`` for every parameter, by backprop: in training mode
        (Dropout's masks, BatchNorm's batch statistics), or with ``train_flg=False`` in
        evaluation mode (Dropout's scaling, BatchNorm's running statistics), as PyTorch's
        ``backward()`` after ``model.eval()``.

        ``params`` (names of ``net.params``, or one name) asks for those gradients only, as
        :meth:`numerical_gradient` takes it: the backward stops at the first layer holding
        one of them, as autograd skips the layers before the first parameter that requires a
        gradient (a frozen feature extractor, say); the layers it skips keep their earlier
        gradients (``dW``). Unknown names, or none, are a ``ValueError``.

        The first call for each shape of ``x`` and ``t`` also checks that every layer's
        backward gave gradients of the shapes of its input and its parameters, naming the
        layer that did not: a wrong one would be broadcast further down without a word
        (ReLU's ``dout * mask`` takes a (D,) gradient for (N, D)), and by the optimizer.
        Later calls of those shapes skip it (PyTorch's autograd checks every call, in C++):
        a layer's shapes follow its input's, and in Python the check would cost every step.
        """
        if params is None:
            stop, slots, selection = self._backward_from, self._slots, None
        else:
            selection = (params,) if isinstance(params, str) else _names_of(params)
            stop, slots = self._selections.get(selection) or self._select(selection)
        key = (getattr(x, "shape", None), getattr(t, "shape", None), selection)
        shapes = None if key in self._checked_shapes else []
        self._shapes = shapes  # predict records the layers' input shapes (and the output's)
        stacks = () if shapes is None else self._stacks
        for stack in stacks:
            stack._shapes = []  # and so do the stacks inside, for their backward to check
        held_before = None if shapes is None else _held_arrays(self._walked)
        try:
            self.training_loss(x, t) if train_flg else self.loss(x, t)
            # A loss of the user's that does not call predict records no shapes to check.
            check = shapes is not None and len(shapes) == len(self.layers) + 1
            dout = self.last_layer.backward(1)
            if check:
                _require_input_gradient(dout, shapes[-1], f"loss {type(self.last_layer).__name__}")
            self._backward_to(stop, dout, shapes if check else None)
        except LayerError as exc:  # from a stack inside: named by its path in this network
            renamed = self._renamed(exc)
            if renamed is exc:
                raise
            raise renamed from exc
        finally:
            self._shapes = None
            for stack in stacks:
                stack._shapes = None
        grads = {name: getattr(layer, dattr, None) for name, layer, _, dattr, _ in slots}
        if shapes is not None:
            for name, layer, attr, dattr, where in slots:
                _require_parameter_gradient(grads[name], getattr(layer, attr), name, dattr, where)
            _warn_of_undeclared_parameters(self._walked, held_before)
            self._checked_shapes.add(key)
        for name in self._decayed if self.weight_decay else ():
            if name in grads:
                grads[name] = grads[name] + self.weight_decay * self.params[name]
        return grads

    def _select(self, names: tuple[str, ...]) -> tuple[int, list[tuple[Any, ...]]]:
        """For :meth:`gradient`'s ``params=names``: the index of the first layer holding one
        of them, where the backward stops, and their slots; kept for the next call."""
        slots = {slot[0]: slot for slot in self._slots}
        unknown = [name for name in names if name not in slots]
        if unknown or not names:
            what = f"unknown parameter(s) {unknown}" if unknown else f"params is empty {names}"
            raise ValueError(
                f"gradient(params=...): {what}; the network has {list(slots)} (params=None "
                "for all of them)"
            )
        index = {
            id(inner): k
            for k, layer in enumerate(self.layers)
            for _, inner in walk_from(f"layers[{k}]", layer)
        }
        chosen = [slots[name] for name in dict.fromkeys(names)]
        found = self._selections[names] = (min(index[id(s[1])] for s in chosen), chosen)
        return found

    sublayers = ("layers",)
    # forward is the layers' forwards in order: gradient checks see through it
    # (xpnet.layers.flat_layers); a subclass that keeps that forward says so again.
    chain = True

    def forward(self, x: Any, train_flg: bool = False) -> Any:
        """:meth:`predict`: the output of the layers for ``x`` (N, ...), as a layer of
        another network (a Sequential without ``loss=``) computes it."""
        return self.predict(x, train_flg)

    def __call__(self, x: Any, train_flg: bool = False) -> Any:
        """``net(x)``, as a PyTorch or Keras model is called: :meth:`predict`, the scores
        (N, C) for ``x`` (N, ...), in evaluation mode unless ``train_flg``."""
        return self.predict(x, train_flg)

    def backward(self, dout: Any = None) -> Any:
        """The gradient of the input (N, ...) of the last :meth:`forward`, for the gradient
        ``dout`` of its output (the scores' shape, (N, C)), through the layers in reverse;
        they store their parameters' gradients (``dW``) as in :meth:`gradient`. None where a
        layer returns none and no layer before it has parameters. Within the outer network's
        :meth:`gradient` that checks shapes, the layers' input gradients are checked here,
        named by full path.

        ``dout`` is not the loss's: torch's ``loss.backward()`` is :meth:`gradient`, which
        runs the loss layer's backward itself. No ``dout``, a number or a 0-D array (the
        loss's ``1``) is an error saying so, and so is a ``dout`` of another shape that the
        last layer refuses."""
        try:  # one check a call: the loss's 1 would broadcast through an activation silently
            if not dout.ndim:
                raise _no_scores_gradient(dout)
        except AttributeError:  # None, or a number
            raise _no_scores_gradient(dout) from None
        shapes, self._shapes = self._shapes, None
        check = shapes is not None and len(shapes) == len(self.layers) + 1
        try:
            return self._backward_to(0, dout, shapes if check else None, True)
        except LayerError as exc:
            renamed = self._renamed(exc)
            if renamed is exc:
                raise
            raise renamed from exc

    def _backward_to(
        self, stop: int, dout: Any, shapes: list[Any] | None, given: bool = False
    ) -> Any:
        """``dout`` (the gradient of the last layer's output) through the layers in reverse,
        down to ``layers[stop]``, as :meth:`gradient` and :meth:`backward` run them: the
        gradient of ``layers[stop]``'s input, or None where a layer returns none and no
        layer before it has parameters. With ``shapes`` (the layers' input shapes, as
        :meth:`predict` recorded them), each input gradient is checked against its shape.
        ``given``: ``dout`` is the caller's of :meth:`backward`, which errors name as such.
        The checks are in the ``except`` branches, free until one is raised."""
        top = len(self.layers) - 1
        try:
            for k in range(top, stop - 1, -1):
                if dout is None:
                    if k < self._backward_from:
                        return None  # no layer from k down has parameters
                    raise LayerError(self, self._no_input_gradient(k + 1))
                dout = self.layers[k].backward(dout)
                wrong = (
                    shapes is not None
                    and dout is not None
                    and _wrong_input_gradient(dout, shapes[k])
                )
                if wrong:
                    text = _where(k, self.layers[k]) + wrong
                    raise LayerError(self, lambda prefix, text=text: _at(prefix, text))
        except LayerError:
            raise
        except AttributeError as exc:
            error = self._forward_first(k, exc)
            if error is None:
                raise
            raise error from exc
        except (TypeError, ValueError, RuntimeError) as exc:
            if not given or k != top:
                raise
            raise self._refused_dout(dout) from exc
        return dout

    def _forward_first(self, k: int, exc: AttributeError) -> LayerAttributeError | None:
        """The error for ``exc``, raised in the backward of layer ``k`` or of a layer inside
        it, when that backward found no attribute ``exc.name`` on its own layer: one its
        forward keeps, so forward did not run first. None for any other AttributeError."""
        layer, tb = exc.obj, exc.__traceback__
        while tb.tb_next is not None:  # the frame that looked the attribute up
            tb = tb.tb_next
        frame = tb.tb_frame
        if layer is None or frame.f_code.co_name != "backward":
            return None
        if frame.f_locals.get("self") is not layer:
            return None
        found = (p for p, lay in walk_from(f"layers[{k}]", self.layers[k]) if lay is layer)
        path = next(found, None)
        if path is None:
            return None
        return LayerAttributeError(
            self,
            lambda prefix: (
                f"{_where(_at(prefix, path), layer)}.backward found no {exc.name}: call forward "
                "first (net.loss(x, t) or net.predict(x, train_flg=True)); a layer's backward "
                "uses what its forward kept"
            ),
        )

    def _refused_dout(self, dout: Any) -> LayerError:
        """The error for the last layer's backward refusing ``dout`` (of another shape than
        its output), the caller's of :meth:`backward`."""
        top = len(self.layers) - 1
        return LayerError(
            self,
            lambda prefix: (
                f"{_where(_at(prefix, f'layers[{top}]'), self.layers[top])}.backward cannot "
                f"take dout of shape {tuple(dout.shape)}: {_NO_DOUT}"
            ),
        )

    def _no_input_gradient(self, k: int) -> Any:
        """The message (as :class:`LayerError` takes it) for layer ``k`` returning no input
        gradient to the layers before it, one of which has parameters."""
        first = self._backward_from
        return lambda prefix: (
            f"{_where(_at(prefix, f'layers[{k}]'), self.layers[k])} returned no input "
            f"gradient, but {_where(_at(prefix, f'layers[{first}]'), self.layers[first])} "
            "before it has parameters"
        )

    def numerical_gradient(
        self, x: Any, t: Any, h: float = 1e-4, *, params: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Gradients of ``loss(x, t)`` by central differences, one element at a time (slow).

        ``params`` limits the work to some parameter names (default: all). The book's
        ``h = 1e-4`` is for float64, its NumPy arrays' dtype: in a float32 network (the
        default) rounding swamps the differences at that step, with a warning saying so;
        build the network with ``dtype="float64"`` to compare with backprop.

        The network is held still meanwhile (:func:`xpnet.held.held`): BatchNorm's running
        statistics are as they were after it, and Dropout's masks are one fixed draw for
        every pass, its generator not moved. That draw is not the mask the next
        ``gradient(x, t)`` draws, so a network with Dropout warns: ``check_gradients`` holds
        one mask for both.
        """
        # The book's gradient_check.py expects differences near 1e-10, which float64 gives.
        alternative = "build the network with dtype='float64', the book's arrays' dtype"
        check_step(h, self.dtype, stacklevel=3, alternative=alternative)
        layers = layers_of(self)
        random = sorted({type(layer).__name__ for layer in layers if draws_random_numbers(layer)})
        if random:
            warnings.warn(
                f"numerical_gradient: {', '.join(random)} draws new random numbers in every "
                "training pass; the differences hold one draw fixed, not the one gradient() "
                "draws, so the two do not compare: xpnet.check_gradients(net, x, t) holds one "
                "draw for both",
                stacklevel=2,
            )
        grads = {}
        with held(layers):
            for name in self.params if params is None else params:
                grads[name] = central_gradient(
                    lambda p, name=name: self.loss_at(name, p, x, t), self.params[name], h
                )
        return grads

    def loss_at(self, name: str, value: Any, x: Any, t: Any) -> Any:
        """``loss(x, t)`` in training mode with parameter ``name`` set to ``value``.

        The network's parameters are left unchanged.
        """
        old = self.params[name]
        self.params[name] = value
        try:
            return self.training_loss(x, t)
        finally:
            self.params[name] = old

    def named_layers(self) -> Iterator[tuple[str, Any]]:
        """``(path, layer)`` for every layer, those inside others too, depth first
        (:func:`xpnet.layers.walk`), as PyTorch's ``named_modules()`` but without the
        network itself: ``("layers[1]", Residual)``, ``("layers[1].inner", Affine)``, ...,
        by the paths that error messages name; the loss layer not included."""
        return walk(self.layers)

    def __len__(self) -> int:
        """The number of layers, the loss layer not counted (``len(net.layers)``)."""
        return len(self.layers)

    # The book's names for what xpnet spells otherwise: reading one says what to use.
    lastLayer = BookName("net.last_layer")
    save_params = BookName("xpnet.checkpoint.save_params(path, net)")
    load_params = BookName("xpnet.checkpoint.load_params(path, net)")

    # PyTorch's nn.Module names that xpnet spells otherwise (docs/pytorch.md), not aliases.
    parameters = TorchName("net.params, a live mapping name -> array (net.params.values())")
    named_parameters = TorchName("net.params.items(), named as the book's: W1, b1, W2, ...")
    state_dict = TorchName("xpnet.checkpoint.save_params(path, net), or net.params")
    load_state_dict = TorchName("xpnet.checkpoint.load_params(path, net)")
    train = TorchName("train_flg=True on the call: net.predict(x, train_flg=True)")
    eval = TorchName(
        "train_flg=False, the default of net.predict, net.loss and net.accuracy; "
        "net.gradient(x, t, train_flg=False)"
    )
    zero_grad = TorchName(NO_ACCUMULATED_GRADIENTS)
    cuda = TorchName("net.to(device='cuda')")
    cpu = TorchName("net.to(device='cpu')")
    requires_grad_ = TorchName("Trainer(..., frozen=['W1', 'layers[2]']) for requires_grad_(False)")
    named_modules = TorchName("net.named_layers()")
    modules = TorchName("net.named_layers(), or iter(net) for the top-level layers")
    children = TorchName("iter(net), the layers in order")

    def __iter__(self) -> Iterator[Any]:
        """The layers in order, the loss layer not included."""
        return iter(self.layers)

    def __getitem__(self, index: int | slice) -> Any:
        """``net[i]`` is ``net.layers[i]``, counted from 0 (``net[-1]`` is the last layer); a
        slice is a :class:`Sequential` of those layers, the same objects, without loss (a
        stack, as PyTorch's ``nn.Sequential`` slices), its parameters named afresh (``net[2:]``
        of ``W1, b1, W2, b2`` holds ``W1, b1``: ``net.params["W2"]``). The ``repr`` and the
        error messages count the same way: ``net[2]`` is ``(2)`` and ``layers[2]``."""
        try:
            layers = self.layers[index]
        except IndexError:
            n = len(self.layers)
            raise IndexError(
                f"layer index {index} is out of range: the network has {n} layer"
                f"{'s' * (n != 1)}, net[0] to net[{n - 1}] (net[-{n}] to net[-1])"
            ) from None
        except TypeError:
            hint = ""
            if isinstance(index, str) and index in self.params:
                hint = f"; parameter {index!r} is net.params[{index!r}]"
            raise TypeError(
                "a network's layers are indexed by position, an integer or a slice (net[0], "
                f"net[-1], net[1:]), got {type(index).__name__} {index!r}{hint}"
            ) from None
        return Sequential(layers) if isinstance(index, slice) else layers

    def num_parameters(self) -> int:
        """The number of trainable elements, the sum of the parameters' sizes (a 784-50-10
        MultiLayerNet: 784*50 + 50 + 50*10 + 10 = 39,760).

        The same count as PyTorch's ``sum(p.numel() for p in model.parameters())`` and
        Hugging Face's ``model.num_parameters()``: buffers (BatchNormalization's running
        mean and variance) are not parameters. It is Keras's summary's "Trainable params",
        not Keras's ``count_params()``, which adds the BatchNorm's moving statistics.
        """
        return sum(math.prod(value.shape) for value in self.params.values())

    def __repr__(self) -> str:
        """One line per layer (:func:`xpnet.layers.describe`: parameters and buffers by dtype
        and shape, then the constructor keywords), as PyTorch prints its modules; numbered
        from 0, as ``net[k]`` and the error messages count (``layers[1] (ReLU)``); then the
        parameter total (:meth:`num_parameters`), and the buffers' when there are any, as
        Keras's summary ends with its "Trainable params" and "Non-trainable params", and
        where the parameters live unless they are NumPy's (``on torch cuda:0``)."""
        lines = [f"  ({k}): {describe(layer, '  ')}" for k, layer in enumerate(self.layers)]
        if self.last_layer is not None:
            lines.append(f"  loss: {describe(self.last_layer)}")
        if self.weight_decay:
            lines.append(f"  weight_decay: {self.weight_decay!r}")
        buffers = (
            getattr(lay, a, None)
            for _, lay in walk(self.layers)
            for a in getattr(lay, "buffers", ())
        )
        buffer_shapes = [value.shape for value in buffers if hasattr(value, "shape")]
        total = f"  parameters: {self.num_parameters():,}"
        if buffer_shapes:
            total += f", buffers: {sum(map(math.prod, buffer_shapes)):,}"
        first = next(iter(self.params.values()), None)
        if first is not None and not array_api_compat.is_numpy_array(first):
            total += f", on {location(first)}"  # NumPy's host arrays, the default, go unsaid
        lines.append(total)
        return "\n".join([f"{type(self).__name__}(", *lines, ")"])

    # Last in the class: a method named float would stand for the builtin in the
    # annotations of the methods after it.
    def double(self) -> Sequential:
        """``self.to("float64")``, as torch's ``model.double()``."""
        return self.to("float64")

    def float(self) -> Sequential:
        """``self.to("float32")``, as torch's ``model.float()``."""
        return self.to("float32")


class MultiLayerNet(Sequential):
    """A fully connected network: (Affine, activation) x len(hidden_sizes), Affine, loss.

    Parameters are ``W1, b1, ..., Wn, bn`` with ``Wk`` of shape (size_{k-1}, size_k).
    ``weight_init`` is ``"he"`` (std sqrt(2/fan_in)), ``"xavier"`` (std sqrt(1/fan_in)),
    by the book's other names ``"relu"`` and ``"sigmoid"`` too and in any case (``"He"``),
    or a fixed standard deviation (the book's ``weight_init_std``); ``bias_init`` is
    ``"zero"`` or ``"uniform"`` (uniform in [0, 1), as some course notes do).
    ``output_activation`` (a name of ``ACTIVATIONS``) follows the last Affine; ``loss``
    is a loss layer (default ``SoftmaxWithLoss()``).
    ``weight_decay`` adds ``0.5 * weight_decay * sum(W**2)`` over every ``W`` to the loss.
    Weights are drawn on the host from ``seed`` (per layer: W, then b), so one seed gives
    the same network on every backend; ``device`` (default ``XPNET_DEVICE``) and ``xp``
    pick where they live, as for :func:`~xpnet.backend.to_device` (``xp=`` PyTorch's with
    ``device="cuda:1"``: tensors on that GPU), ``dtype`` their type: ``"float32"`` (the
    default) or ``"float64"``, by name, as NumPy's dtype or type (``numpy.float64``) or as
    ``xp``'s own (``xp.float64``).

    As the book's ``MultiLayerNetExtend``: ``use_batchnorm`` puts a
    ``BatchNormalization`` (``gamma1, beta1, ...``: ones and zeros) between each hidden
    Affine and its activation, and ``use_dropout`` a ``Dropout(dropout_ratio)`` after
    each hidden activation (its masks seeded from ``seed``: ``seed + k`` for the k-th;
    ``dropout_ratio`` 0.5 by default, and a warning when given without ``use_dropout``).
    The book's keywords (``hidden_size_list``, ``weight_init_std``, ...) are a ``TypeError``
    naming xpnet's.
    """

    @refuses_book_keywords
    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        output_size: int,
        *,
        activation: str = "relu",
        output_activation: str | None = None,
        loss: Any = None,
        weight_init: str | float = "he",
        bias_init: str = "zero",
        weight_decay: float = 0.0,
        use_batchnorm: bool = False,
        use_dropout: bool = False,
        dropout_ratio: float | None = None,
        dtype: Any = "float32",
        seed: int | None = None,
        device: Any = None,
        xp: ModuleType | None = None,
    ) -> None:
        for what, name in (("activation", activation), ("output_activation", output_activation)):
            if name not in ACTIVATIONS and (what == "activation" or name is not None):
                raise ValueError(
                    f"unknown {what} {name!r}: expected one of {', '.join(ACTIVATIONS)}"
                )
        require_bias_init(bias_init)
        if dropout_ratio is not None and not use_dropout:
            warnings.warn(
                f"dropout_ratio={dropout_ratio!r} without use_dropout=True adds no Dropout "
                "layer (as the book's MultiLayerNetExtend); pass use_dropout=True for one",
                stacklevel=3,
            )
        if not isinstance(hidden_sizes, Sequence):
            raise TypeError(
                f"hidden_sizes must be a sequence of layer sizes such as [50], got {hidden_sizes!r}"
            )
        sizes = [input_size, *hidden_sizes, output_size]
        if not all(is_count(n, 1) for n in sizes):
            raise bad_argument(all(map(is_integer, sizes)))(
                f"layer sizes must be positive integers, got {sizes}"
            )
        sizes = [int(n) for n in sizes]
        dtype = float_dtype(dtype, xp)
        self.sizes, self.activation = sizes, activation
        self.output_activation, self.bias_init = output_activation, bias_init
        self.use_batchnorm, self.use_dropout = use_batchnorm, use_dropout
        rng = host_rng(seed)
        on = {"dtype": dtype, "device": device, "xp": xp}
        ratio = 0.5 if dropout_ratio is None else dropout_ratio
        layers: list[Any] = []
        for k, (fan_in, fan_out) in enumerate(pairwise(sizes), start=1):
            std = weight_std(weight_init, fan_in, f"W{k}")  # refused naming W{k}
            # W, then b (when uniform) from rng; the data need no gradient
            affine = Affine.initialized(
                fan_in,
                fan_out,
                weight_init=std,
                bias_init=bias_init,
                rng=rng,
                input_grad=k > 1,
                **on,
            )
            layers.append(affine)
            hidden = k < len(sizes) - 1
            if hidden and use_batchnorm:
                layers.append(BatchNormalization.initialized(fan_out, **on))
            activation_after = activation if hidden else output_activation
            if activation_after is not None:
                layers.append(ACTIVATIONS[activation_after]())
            if hidden and use_dropout:
                layers.append(Dropout(ratio, seed=None if seed is None else seed + k))
        super().__init__(
            layers, loss=SoftmaxWithLoss() if loss is None else loss, weight_decay=weight_decay
        )


class TwoLayerNet(MultiLayerNet):
    """The book's 2-layer network: Affine, ReLU, Affine, softmax with loss.

    ``W1``, ``W2`` are drawn from ``weight_init_std * N(0, 1)``; ``b1``, ``b2`` start at zero.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        weight_init_std: float = 0.01,
        *,
        dtype: Any = "float32",
        seed: int | None = None,
        device: Any = None,
        xp: ModuleType | None = None,
    ) -> None:
        super().__init__(
            input_size,
            [hidden_size],
            output_size,
            activation="relu",
            weight_init=require_std(weight_init_std, "weight_init_std"),
            dtype=dtype,
            seed=seed,
            device=device,
            xp=xp,
        )


class SimpleConvNet(Sequential):
    """The book's convolutional network: Conv, ReLU, max Pool, Affine, ReLU, Affine, softmax loss.

    Input images ``input_dim`` = (C, H, W) (default (1, 28, 28), MNIST), batches
    (N, C, H, W). ``conv_param`` gives the convolution: ``filter_num`` (30),
    ``filter_size`` (5), ``pad`` (0), ``stride`` (1); the pooling is 2x2 with stride 2,
    then Affine to ``hidden_size`` (100), ReLU, Affine to ``output_size`` (10).
    Parameters as in the book: ``W1`` (FN, C, FS, FS), ``b1`` (FN,), ``W2``
    (FN * (OH // 2) * (OW // 2), hidden_size) for a convolution output of OH x OW (an odd
    size's last row or column is pooled by no window), ``b2``, ``W3`` (hidden_size,
    output_size), ``b3``; weights ``weight_init_std * N(0, 1)`` drawn on the host from
    ``seed`` (W1, W2, W3 in that order), biases zero. ``weight_init_std`` may also name
    an initialisation as MultiLayerNet's ``weight_init`` does: ``"he"`` (or ``"relu"``,
    std sqrt(2 / fan_in)) or ``"xavier"`` (or ``"sigmoid"``, sqrt(1 / fan_in)), in any
    case, with each weight's own fan-in: C * FS * FS for the filters ``W1``, the rows of
    ``W2`` and ``W3``. ``dtype``, ``device`` and ``xp`` as for MultiLayerNet.
    """

    def __init__(
        self,
        input_dim: tuple[int, int, int] = (1, 28, 28),
        conv_param: dict[str, int] | None = None,
        hidden_size: int = 100,
        output_size: int = 10,
        weight_init_std: str | float = 0.01,
        *,
        dtype: Any = "float32",
        seed: int | None = None,
        device: Any = None,
        xp: ModuleType | None = None,
    ) -> None:
        conv = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}
        if not isinstance(conv_param, Mapping | None):  # a str or list has no keys to name
            raise ArgumentTypeError(f"conv_param must be a dict such as {conv}, got {conv_param!r}")
        unknown = [key for key in conv_param or {} if key not in conv]
        if unknown:
            raise ValueError(f"unknown conv_param key(s) {unknown}: expected {', '.join(conv)}")
        conv.update(conv_param or {})
        for key, value in conv.items():
            require_count(f"conv_param[{key!r}]", value, 0 if key == "pad" else 1)
        require_count("hidden_size", hidden_size, 1)
        require_count("output_size", output_size, 1)
        input_dim = _image_dim(input_dim)
        dtype = float_dtype(dtype, xp)
        conv = {key: int(value) for key, value in conv.items()}
        hidden_size, output_size = int(hidden_size), int(output_size)
        channels = input_dim[0]
        fn, fs, stride, pad = conv["filter_num"], conv["filter_size"], conv["stride"], conv["pad"]
        oh, ow = _conv_pool_output(input_dim, fs, stride, pad)
        self.input_dim, self.conv_param = input_dim, conv
        self.sizes = [math.prod(input_dim), fn * oh * ow, hidden_size, output_size]
        fan_ins = [channels * fs * fs, fn * oh * ow, hidden_size]
        stds = [
            weight_std(weight_init_std, fan_in, f"W{k}", "weight_init_std")
            for k, fan_in in enumerate(fan_ins, start=1)
        ]
        where = {"rng": host_rng(seed), "dtype": dtype, "device": device, "xp": xp}
        super().__init__(  # W1, W2, W3 drawn in that order
            [
                Convolution.initialized(
                    channels, fn, fs, stride, pad, weight_init=stds[0], input_grad=False, **where
                ),
                ReLU(),
                Pooling(2, 2, stride=2),
                Affine.initialized(fn * oh * ow, hidden_size, weight_init=stds[1], **where),
                ReLU(),
                Affine.initialized(hidden_size, output_size, weight_init=stds[2], **where),
            ],
            loss=SoftmaxWithLoss(),
        )


def _image_dim(input_dim: Any) -> tuple[int, int, int]:
    """``input_dim`` as a tuple of three ints (C, H, W) >= 1, else ``ValueError`` naming it."""
    try:
        dims = tuple(input_dim)
    except TypeError:
        dims = ()
    if len(dims) != 3 or not all(is_count(n, 1) for n in dims):
        raise ValueError(
            f"input_dim must be (C, H, W), three integers >= 1 such as (1, 28, 28), "
            f"got {input_dim!r}"
        )
    return int(dims[0]), int(dims[1]), int(dims[2])


def _conv_pool_output(
    input_dim: tuple[int, int, int], filter_size: int, stride: int, pad: int
) -> tuple[int, int]:
    """(OH, OW) after the convolution and the 2x2 pooling (with stride 2) of SimpleConvNet;
    ``ValueError`` naming the sizes when either does not fit its input."""
    try:
        conv_h, conv_w = output_size((1, *input_dim), filter_size, filter_size, stride, pad)
    except ValueError as exc:
        raise ValueError(
            f"the convolution (filter_size {filter_size}, stride {stride}, pad {pad}) does not "
            f"fit input_dim {input_dim}: {exc}"
        ) from exc
    try:
        return output_size((1, 1, conv_h, conv_w), 2, 2, 2, 0)
    except ValueError as exc:
        raise ValueError(
            f"the 2x2 max pooling (stride 2) does not fit the convolution's {conv_h}x{conv_w} "
            f"output on input_dim {input_dim}: {exc}"
        ) from exc
