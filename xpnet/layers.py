"""Layers with a forward pass and a hand-derived backward pass (chapters 5 and 6 of the book).

Every layer is written once against the Python Array API standard: the
namespace comes from the input arrays, so the same code runs on NumPy, CuPy,
PyTorch and ``array_api_strict``. ``forward`` caches what ``backward`` needs;
``backward(dout)`` returns the gradient of the output with respect to the
input(s) and stores parameter gradients beside the parameters (``dW``, ``db``).
No layer writes into an array it was given.

The layer protocol that :class:`xpnet.Sequential` relies on is just that, plus a
``params`` attribute naming the parameter attributes (``("W", "b")``; absent when a
layer has none). A layer made of layers (a residual block) names the attributes that
hold them in ``sublayers`` (``("inner",)``; each holds one layer, a sequence of them, or
``None`` for no layer there, as a block's ``self.downsample = None`` in PyTorch), and its
``forward`` and ``backward`` call theirs. A layer that can be rebuilt from a checkpoint
also has ``config()``, the JSON-serialisable keywords of its constructor beside the
parameters, and names its non-trained state (BatchNormalization's running statistics)
in ``buffers``. xpnet's layers derive from :class:`Layer` for their ``repr`` alone.
Layers that act differently in training and in evaluation (``Dropout``,
``BatchNormalization``) take ``forward(x, train_flg=True)`` as in the book.

Two functions go over the layers of a network, those inside others too, as PyTorch's
``named_modules()`` does: :func:`walk` (``for path, layer in walk(net.layers)``, with the
paths the error messages name, ``("layers[1].inner", Affine)``; also
:meth:`xpnet.Sequential.named_layers`) and :func:`flat_layers` (the layers a forward pass
runs one after another, stacks opened). :func:`walk_from`, :func:`inner_layers` and
:func:`own_params` are helpers of xpnet's own modules.

Some layers also opt in to *local perturbations*, used by :mod:`xpnet.perturb`
for fast gradient checks: short ``perturb*`` methods, kept apart below
``backward``, that give the change of a layer's output when its input or a
parameter moves a little, without touching the caches. A layer without them
still works; gradient checks then use the loop for the parameters it affects.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import array_api_extra as xpx
from array_api_compat import device, is_array_api_obj

from xpnet import init
from xpnet.backend import (
    DeviceRNG,
    dot,
    dtype_name,
    namespace_of,
    positive_part,
    reduce_max,
    reduce_sum,
    spread,
)
from xpnet.checks import bad_argument, is_count, is_real, require_count

if TYPE_CHECKING:
    import numpy as np

_KINDS: dict[tuple[Any, Any, str], bool] = {}


def _isdtype(xp: Any, dtype: Any, kind: str) -> bool:
    """``xp.isdtype(dtype, kind)``, remembered: layers ask it on every call."""
    key = (xp, dtype, kind)
    found = _KINDS.get(key)
    if found is None:
        found = _KINDS[key] = bool(xp.isdtype(dtype, kind))
    return found


_EXP_LIMITS: dict[tuple[Any, Any], float] = {}


def _sigmoid(xp: Any, x: Any) -> Any:
    """``1 / (1 + exp(-x))`` of a real floating array (x's shape and dtype).

    Precise relative to its value for negative ``x`` too, where ``0.5 * (1 + tanh(x / 2))``
    cancels (to 0 below about -17 in float32; torch gives 2.06e-9 at -20). ``x`` is first
    raised to ``-L``, ``L`` the largest whole number whose ``exp`` is finite in x's dtype (88
    in float32, 709 in float64), so ``exp(-x)`` never overflows (NumPy would warn); below
    it the value stays ``sigmoid(-L)``, a subnormal number (6e-39 in float32, 1.2e-308 in
    float64, 1.7e-5 in float16, whose L is 11) where the true one is smaller still, or 0.
    """
    key = (xp, x.dtype)
    limit = _EXP_LIMITS.get(key)
    if limit is None:
        limit = _EXP_LIMITS[key] = float(math.floor(math.log(float(xp.finfo(x.dtype).max))))
    e = xp.exp(-xp.maximum(x, -limit))
    e += 1.0
    return 1.0 / e


def takes_train_flg(layer: Any) -> bool:
    """Whether ``layer.forward`` takes ``train_flg`` (acts differently in training)."""
    try:
        return "train_flg" in inspect.signature(layer.forward).parameters
    # A builtin or C method without a signature; or no forward at all (None among a
    # layer's sublayers), which the network refuses by its path.
    except (AttributeError, TypeError, ValueError):
        return False


def require_layer_methods(layer: Any, where: str) -> None:
    """Raise ``TypeError`` naming ``where`` unless ``layer`` has forward() and backward()."""
    for method in ("forward", "backward"):
        if not callable(getattr(layer, method, None)):
            raise TypeError(
                f"{where} has no {method}() method: a layer needs forward(x) and backward(dout)"
            )


def is_real_floating(xp: Any, x: Any) -> bool:
    """Whether the array ``x`` (of namespace ``xp``) has a real floating dtype."""
    return _isdtype(xp, x.dtype, "real floating")


def is_floating_array(value: Any) -> bool:
    """Whether ``value`` is an array of a real floating dtype."""
    return is_array_api_obj(value) and is_real_floating(namespace_of(value), value)


def require_floating(xp: Any, name: str, x: Any, *, data: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` and the dtype unless ``x`` is real floating;
    ``data``: ``x`` may be a network's input, which when integer is likely raw pixels."""
    if not _isdtype(xp, x.dtype, "real floating"):  # directly: a call fewer a forward
        hint = (
            "; raw pixels (0 to 255) go in as floating point divided by 255: "
            "xp.astype(x, xp.float32) / 255, or load_mnist(normalize=True)"
            if data and _isdtype(xp, x.dtype, "integral")
            else ""
        )
        raise ValueError(
            f"{name} must be a real floating-point array, got dtype {dtype_name(x)}{hint}"
        )


def require_array(name: str, a: Any) -> None:
    """Raise ``TypeError`` naming ``name`` unless ``a`` is an array (has a shape): a Python
    number among arrays is taken as a scalar, which targets never are."""
    if not hasattr(a, "shape"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__} {a!r:.40}")


def require_arrays_not_sizes(layer: str, W: Any, b: Any, example: str) -> None:
    """Raise ``TypeError`` unless ``W`` and ``b`` are arrays; sizes given instead (PyTorch's
    ``nn.Linear(784, 50)``) get the ``initialized`` constructor named in ``example``."""
    if is_count(W, 1) and is_count(b, 1):
        raise TypeError(
            f"{layer} takes its parameters, the arrays W and b (the book's layer), got the "
            f"numbers {W!r} and {b!r}: to draw them from sizes, use {example}"
        )
    require_array("W", W)
    require_array("b", b)


def require_one_dtype(layer: str, W: Any, b: Any) -> None:
    """Refuse weights ``W`` and bias ``b`` of different libraries, devices or dtypes: the
    bias added in place would be cast silently into the product's dtype (NumPy), or fail
    in the first forward pass (array_api_strict), as PyTorch's ``F.linear`` refuses them."""
    namespace_of(W, b)  # BackendMismatchError naming both
    if W.dtype != b.dtype:
        raise ValueError(
            f"{layer} needs W and b of one dtype, got {dtype_name(W)} and {dtype_name(b)}: "
            "convert one (xp.astype)"
        )


def _as_rows(xp: Any, x: Any, layer: str, param: str, like: Any) -> Any:
    """``x`` (N, D), or (N, ...) with trailing sizes multiplying to D (images, flattened
    as in the book), as rows (N, D), where D = ``like.shape[0]``; else ``ValueError``
    naming both shapes (``param`` and ``like`` the parameter the rows meet)."""
    width = like.shape[0]
    if x.ndim == 2 and x.shape[1] == width:
        return x
    if x.ndim < 2 or math.prod(x.shape[1:]) != width:
        one = ""
        if tuple(x.shape) == (width,):
            one = "; one sample goes as a batch of one, x[None, :] (x_test[i:i+1], not x_test[i])"
        elif tuple(x.shape) == (width, 1):  # the inputs of course notes that write W @ x
            one = "; a column vector: samples go as rows, x.T (W is (inputs, outputs), x @ W)"
        raise ValueError(
            f"{layer} input of shape {tuple(x.shape)} does not fit {param} of shape "
            f"{tuple(like.shape)}: expected (N, {width}) or (N, ...) with trailing sizes "
            f"multiplying to {width}{one}"
        )
    return xp.reshape(x, (x.shape[0], width))


def _in_dtype(xp: Any, a: Any, dtype: Any) -> Any:
    """``a`` itself when it has ``dtype`` (what ``astype(copy=False)`` gives, for less per
    call: losses convert their targets on every step), else a converted copy."""
    return a if a.dtype == dtype else xp.astype(a, dtype)


def _require_targets_like(xp: Any, name: str, y: Any, t: Any) -> None:
    require_floating(xp, name, y)
    require_array("targets", t)
    if t.shape != y.shape:
        raise ValueError(
            f"targets must have the {name}' shape {tuple(y.shape)}, got {tuple(t.shape)}"
        )


def own_params(layer: Any) -> Any:
    """The names of the parameter attributes that ``layer`` holds itself: its ``params``;
    none where ``params`` is a mapping (a :class:`~xpnet.Sequential`'s, name -> array, a
    view of its inner layers' parameters, which :func:`walk` finds)."""
    attrs = getattr(layer, "params", ())
    if isinstance(attrs, str):  # ("W") for ("W",): a string, whose letters read as names
        raise TypeError(
            f"{type(layer).__name__}.params must be a tuple of attribute names, e.g. "
            f"('W', 'b'), got the string {attrs!r} (a tuple of one name needs its comma: "
            f"({attrs!r},))"
        )
    return () if isinstance(attrs, Mapping) else attrs


def undeclared_parameters(layer: Any, kept: Mapping[str, Any]) -> list[str]:
    """The attributes ``w`` among ``kept`` (the arrays ``layer`` held through a pass, the
    same objects) whose gradient ``dw`` of their shape the pass stored, but that its
    ``params`` does not name: parameters a network does not train and a check misses."""
    declared = own_params(layer)
    found = []
    for name, value in kept.items():
        grad = getattr(layer, "d" + name, None)
        if name not in declared and is_array_api_obj(grad) and grad.shape == value.shape:
            found.append(name)
    return found


def inner_layers(layer: Any, *, with_none: bool = False) -> list[tuple[str, Any]]:
    """``(path suffix, layer)`` for each layer held in the attributes that ``layer`` names
    in ``sublayers``: ``(".inner", Affine)`` for one layer, ``(".layers[0]", Affine)`` for
    a sequence of them; none for a layer without ``sublayers``, nor for an attribute
    holding ``None`` (no layer there: a residual block's ``downsample``), unless
    ``with_none`` (``(".downsample", None)``, for the ``repr`` and checkpoints)."""
    names = getattr(layer, "sublayers", ())
    kind = type(layer).__name__
    if isinstance(names, str) or not all(isinstance(a, str) for a in names):
        raise TypeError(
            f"{kind}.sublayers must be a tuple of attribute names, e.g. ('inner',), got {names!r}"
        )
    found = []
    for attr in names:
        if not hasattr(layer, attr):
            raise ValueError(
                f"{kind} names {attr!r} in its sublayers, but has no attribute {attr!r}"
            )
        value = getattr(layer, attr)
        if value is None and not with_none:
            continue
        if isinstance(value, Sequence) and not isinstance(value, str):
            found += [(f".{attr}[{i}]", inner) for i, inner in enumerate(value)]
        else:
            found.append((f".{attr}", value))
    return found


def walk(layers: Iterable[Any], prefix: str = "layers") -> Iterator[tuple[str, Any]]:
    """``(path, layer)`` for each of ``layers`` and, right after each, the layers inside it
    (:func:`inner_layers`), depth first: ``("layers[1]", Residual)``, ``("layers[1].inner",
    Affine)``, ... The order of appearance, in which a network numbers its parameters."""
    for k, layer in enumerate(layers):
        yield from walk_from(f"{prefix}[{k}]", layer)


def walk_from(path: str, layer: Any) -> Iterator[tuple[str, Any]]:
    """:func:`walk` of the one ``layer`` at ``path``: itself first, then the layers inside it."""
    yield path, layer
    for suffix, inner in inner_layers(layer):
        yield from walk_from(path + suffix, inner)


def has_params(layer: Any) -> bool:
    """Whether ``layer`` or a layer inside it (:func:`walk_from`) has parameters."""
    return any(own_params(inner) for _, inner in walk_from("", layer))


def _is_layer(value: Any) -> bool:
    """Whether ``value`` is a layer instance: forward() and backward(), not a class."""
    return not isinstance(value, type) and all(
        callable(getattr(value, m, None)) for m in ("forward", "backward")
    )


def require_named_sublayers(layer: Any, where: str) -> None:
    """Refuse a layer (named ``where`` in the message) holding, in an attribute that its
    ``sublayers`` does not name, a layer with parameters (or a list of them): PyTorch finds
    a module's submodules itself, xpnet only through ``sublayers``, so those parameters
    would go untrained, unsaved and unchecked without a word. Private attributes
    (``_cache``) and second names for layers found through ``sublayers`` pass."""
    named = tuple(getattr(layer, "sublayers", ()))
    found = {id(inner) for _, inner in walk_from("", layer)}  # a second name for one is fine
    for attr, value in vars(layer).items() if hasattr(layer, "__dict__") else ():
        held = value if isinstance(value, (list, tuple)) else [value]
        if attr in named or attr.startswith("_") or not all(map(_is_layer, held)):
            continue
        if all(id(inner) in found for inner in held):
            continue
        if any(map(has_params, held)):
            kinds = ", ".join(dict.fromkeys(type(inner).__name__ for inner in held))
            raise ValueError(
                f"{where} holds layers with parameters in its attribute {attr!r} ({kinds}), "
                f"which its sublayers does not name: a network would not train, save or "
                f"check them, nor check_layer check them; name it in the class, "
                f"sublayers = {(*named, attr)!r}"
            )


def flat_layers(layers: Iterable[Any]) -> list[Any]:
    """``layers`` with each chain among them replaced by the layers inside it, recursively:
    the layers that a forward pass runs one after another. A chain is a layer whose own
    class says ``chain = True`` (a :class:`~xpnet.Sequential` without a loss): its forward
    is its sublayers' forwards in order (``train_flg`` passed to those that take it), its
    backward theirs in reverse. A subclass, which may replace ``forward``, is a chain only
    where its own body says so; any other layer made of layers (a residual block) stays
    one layer."""
    flat = []
    for layer in layers:
        if vars(type(layer)).get("chain", False):
            flat += flat_layers(inner for _, inner in inner_layers(layer))
        else:
            flat.append(layer)
    return flat


def describe(layer: Any, indent: str = "") -> str:
    """``Name(W=float32[784, 50], b=float32[50], input_grad=True)``: the layer's class, its
    parameters (``params``) and buffers (``buffers``: BatchNormalization's running
    statistics) by dtype and shape, then its ``config()`` keywords, as a checkpoint
    rebuilds it. Any layer works, a user's own too (the network's ``repr`` uses it). A
    layer made of layers (``sublayers``) lists them below, one a line, indented by
    ``indent`` and two spaces more, as PyTorch prints its modules: ``(inner): Affine(...)``,
    ``(0)``, ``(1)``, ... where its only sublayer attribute holds a sequence;
    ``(downsample): None`` for an attribute holding no layer."""
    names = (*own_params(layer), *getattr(layer, "buffers", ()))
    parts = [f"{name}={describe_array(getattr(layer, name, None))}" for name in names]
    config = getattr(layer, "config", None)
    if callable(config):
        parts += [f"{key}={value!r}" for key, value in config().items()]
    inner = inner_layers(layer, with_none=True)
    if not inner:
        return f"{type(layer).__name__}({', '.join(parts)})"
    numbered = len(getattr(layer, "sublayers", ())) == 1 and inner[0][0].endswith("[0]")
    lines = [f"{indent}  {', '.join(parts)}"] if parts else []
    for i, (suffix, sub) in enumerate(inner):
        label = i if numbered else suffix[1:]
        shown = "None" if sub is None else describe(sub, indent + "  ")
        lines.append(f"{indent}  ({label}): {shown}")
    return "\n".join([f"{type(layer).__name__}(", *lines, f"{indent})"])


def describe_array(a: Any) -> str:
    """``float32[784, 50]`` for an array; anything else (a parameter not set yet) by its repr."""
    if not hasattr(a, "shape"):
        return repr(a)
    return f"{dtype_name(a)}[{', '.join(str(n) for n in a.shape)}]"


class Layer:
    """The base of xpnet's layers, for their ``repr`` (:func:`describe`) alone: the layer
    protocol needs no base class, and a user's layer may do without it."""

    def __repr__(self) -> str:
        return describe(self)


def _is_python_number(x: Any) -> bool:
    """Whether ``x`` is a Python number, which has no namespace: the book's graph nodes take
    one (Mul, Add and Reciprocal need nothing; Exp, Sigmoid and Tanh use ``math``)."""
    return isinstance(x, (int, float)) and not hasattr(x, "dtype")


class Mul(Layer):
    """``out = x * y`` for arrays or Python scalars; backward gives ``(dout * y, dout * x)``."""

    def forward(self, x: Any, y: Any) -> Any:
        """x, y (one shape, or Python numbers) -> out = x * y (that shape); keeps x and y."""
        self.x, self.y = x, y
        return x * y

    def backward(self, dout: Any = 1) -> tuple[Any, Any]:
        """dout (out's shape) -> (dx, dy) = (dout * y, dout * x), each of out's shape."""
        return dout * self.y, dout * self.x


class Add(Layer):
    """``out = x + y``; the gradient flows unchanged to both inputs."""

    def forward(self, x: Any, y: Any) -> Any:
        """x, y (one shape, or Python numbers) -> out = x + y (that shape)."""
        return x + y

    def backward(self, dout: Any = 1) -> tuple[Any, Any]:
        """dout (out's shape) -> (dx, dy) = (dout, dout): the gradient passes on unchanged."""
        return dout, dout


class Exp(Layer):
    """``out = exp(x)`` for arrays or Python scalars; backward ``dout * out``."""

    def forward(self, x: Any) -> Any:
        """x (any shape, or a Python number) -> out = exp(x) (x's shape); keeps out."""
        self.out = math.exp(x) if _is_python_number(x) else namespace_of(x).exp(x)
        return self.out

    def backward(self, dout: Any = 1) -> Any:
        """dout (out's shape) -> dx = dout * out (x's shape)."""
        return dout * self.out


class Reciprocal(Layer):
    """``out = 1 / x``; backward ``-dout / x**2``, written ``-dout * out**2``."""

    def forward(self, x: Any) -> Any:
        """x (any shape, or a Python number) -> out = 1 / x (x's shape); keeps out."""
        self.out = 1.0 / x
        return self.out

    def backward(self, dout: Any = 1) -> Any:
        """dout (out's shape) -> dx = -dout * out**2 (x's shape)."""
        return -dout * self.out * self.out


class ReLU(Layer):
    """``out = max(x, 0)``; backward lets ``dout`` through where ``x > 0``."""

    def forward(self, x: Any) -> Any:
        """x (any shape) -> out = max(x, 0) (x's shape); keeps the mask x > 0 for backward."""
        self.mask = x > 0
        return positive_part(x)

    def backward(self, dout: Any) -> Any:
        """dout (x's shape) -> dx (x's shape): dout where x > 0, else 0."""
        xp = namespace_of(dout)
        # A product, not xp.where: NumPy's where is 3-10x slower on an irregular mask,
        # for one more operation (the cast).
        return dout * xp.astype(self.mask, dout.dtype)

    # Local perturbations (xpnet.perturb): element-wise, so one changed column stays one column.
    elementwise = True

    def perturb(self, x: Any, dx: Any) -> Any:
        """Output change when the input ``x`` moves by ``dx`` (broadcasting shapes).

        ``max(x + dx, 0) - max(x, 0)`` written as ``max(dx, -x) + min(x, 0)``: exact where
        ``x`` stays on one side of 0 (``dx`` or 0, not ``(x + dx) - x``), and two operations
        on the (P, N, M) change instead of three.
        """
        xp = namespace_of(x, dx)
        return xp.maximum(dx, -x) + xp.minimum(x, 0.0)

    def kinks(self, x: Any, dx: Any) -> Any:
        """True where ``x + s * dx`` crosses the kink at 0 for some ``s`` in (-1, 1)."""
        xp = namespace_of(x, dx)
        return xp.abs(x) < xp.abs(dx)


class Sigmoid(Layer):
    """``out = 1 / (1 + exp(-x))`` for arrays or Python numbers; backward uses only the
    output: ``dout * out * (1 - out)``."""

    def forward(self, x: Any) -> Any:
        """x (any shape, or a Python number) -> out = 1 / (1 + exp(-x)) (x's shape);
        keeps out for backward."""
        try:
            xp = namespace_of(x)
        except TypeError:  # no namespace: tested here, not first, to spare arrays the test
            if not _is_python_number(x):
                raise
            e = math.exp(-abs(x))  # never overflows; precise on both sides of 0
            self.out = (1.0 if x >= 0 else e) / (1.0 + e)
            return self.out
        self.out = _sigmoid(xp, x)
        return self.out

    def backward(self, dout: Any = 1) -> Any:
        """dout (x's shape) -> dx = dout * out * (1 - out) (x's shape)."""
        dx = dout * (1.0 - self.out)
        dx *= self.out  # in place, as in forward
        return dx

    # Local perturbations (xpnet.perturb): element-wise, so one changed column stays one column.
    elementwise = True

    def perturb(self, x: Any, dx: Any) -> Any:
        """Output change when the input ``x`` moves by ``dx`` (broadcasting shapes)."""
        xp = namespace_of(x, dx)
        return 0.5 * (xp.tanh(0.5 * (x + dx)) - xp.tanh(0.5 * x))


class Tanh(Layer):
    """``out = tanh(x)`` for arrays or Python numbers; backward ``dout * (1 - out**2)``."""

    def forward(self, x: Any) -> Any:
        """x (any shape, or a Python number) -> out = tanh(x) (x's shape); keeps out."""
        try:
            self.out = namespace_of(x).tanh(x)
        except TypeError:  # no namespace: tested here, not first, to spare arrays the test
            if not _is_python_number(x):
                raise
            self.out = math.tanh(x)
        return self.out

    def backward(self, dout: Any = 1) -> Any:
        """dout (x's shape) -> dx = dout * (1 - out**2) (x's shape)."""
        return dout * (1.0 - self.out * self.out)

    # Local perturbations (xpnet.perturb): element-wise, so one changed column stays one column.
    elementwise = True

    def perturb(self, x: Any, dx: Any) -> Any:
        """Output change when the input ``x`` moves by ``dx`` (broadcasting shapes)."""
        xp = namespace_of(x, dx)
        return xp.tanh(x + dx) - xp.tanh(x)


class Affine(Layer):
    """``out = x @ W + b`` with ``W`` of shape (D, M) and ``b`` of shape (M,).

    ``x`` has shape (N, ...) with the trailing sizes multiplying to D (images are
    flattened as in the book); ``backward`` returns ``dx`` in ``x``'s shape and
    stores ``dW`` (D, M) and ``db`` (M,). With ``input_grad=False`` (a network's first
    layer, whose input is data) ``backward`` skips ``dx`` and returns None, as PyTorch
    skips inputs that do not require a gradient.
    """

    params = ("W", "b")

    def __init__(self, W: Any, b: Any, *, input_grad: bool = True) -> None:
        require_arrays_not_sizes("Affine", W, b, "Affine.initialized(784, 50)")
        if W.ndim != 2 or tuple(b.shape) != (W.shape[1],):
            raise ValueError(
                f"Affine needs W of shape (D, M) and b of shape (M,), "
                f"got {tuple(W.shape)} and {tuple(b.shape)}"
            )
        require_one_dtype("Affine", W, b)
        self.W, self.b = W, b
        self.input_grad = input_grad
        self.dW = self.db = None

    @classmethod
    def initialized(
        cls,
        input_size: int,
        output_size: int,
        *,
        weight_init: str | float = "he",
        bias_init: str = "zero",
        rng: np.random.Generator | int | None = None,
        dtype: Any = "float32",
        device: Any = None,
        xp: ModuleType | None = None,
        input_grad: bool = True,
    ) -> Affine:
        """A new Affine from ``input_size`` to ``output_size`` features, as PyTorch's
        ``nn.Linear(input_size, output_size)``: ``W`` (input_size, output_size) drawn from
        ``std * N(0, 1)`` with ``std`` by ``weight_init`` (:func:`xpnet.init.weight_std`:
        ``"he"`` sqrt(2 / input_size), ``"xavier"`` sqrt(1 / input_size), or a number, the
        book's ``weight_init_std``), ``b`` zeros (``bias_init="uniform"``: uniform in [0, 1)).

        ``rng`` is a NumPy ``Generator`` or a seed (None: fresh entropy). The numbers are
        drawn on the host, so one seed gives the same layer on every backend and device;
        the layers of one network share a Generator, each drawing the next numbers (layers
        given one seed draw the same numbers). ``dtype``, ``device`` and ``xp`` are as for
        :class:`~xpnet.MultiLayerNet`. PyTorch's own ``nn.Linear`` draws from a uniform
        distribution of std sqrt(1 / (3 * input_size)), bias too.
        """
        require_count("input_size", input_size, 1)
        require_count("output_size", output_size, 1)
        W, b = init.weights_and_bias(
            (int(input_size), int(output_size)), int(input_size), int(output_size),
            weight_init=weight_init,
            bias_init=bias_init, rng=rng, dtype=dtype, device=device, xp=xp,
        )  # fmt: skip
        return cls(W, b, input_grad=input_grad)

    def config(self) -> dict[str, Any]:
        return {"input_grad": self.input_grad}

    def forward(self, x: Any) -> Any:
        """x (N, D), or (N, ...) flattened to it -> out (N, M) = x @ W + b; keeps x for
        backward."""
        xp = namespace_of(x, self.W, self.b)
        require_floating(xp, "Affine input", x, data=True)
        self.x_shape = x.shape
        self.x = _as_rows(xp, x, "Affine", "W", self.W)
        out = dot(self.x, self.W)
        out += self.b  # in place: out is this call's own array
        return out

    def backward(self, dout: Any) -> Any:
        """dout (N, M) -> dx in x's shape, None when input_grad is False; sets dW (D, M) and
        db (M,)."""
        xp = namespace_of(dout, self.W)
        self.dW = dot(self.x.T, dout)
        self.db = reduce_sum(dout, axis=0)
        if not self.input_grad:
            return None
        dx = dot(dout, self.W.T)
        return dx if len(self.x_shape) == 2 else xp.reshape(dx, self.x_shape)

    # Local perturbations (xpnet.perturb): P perturbations ride on a leading axis.

    def perturb(self, x: Any, dx: Any) -> Any:
        """Output change (P, N, M) when the input ``x`` (N, ...) moves by ``dx`` (P, N, ...)."""
        xp = namespace_of(dx, self.W)
        return xp.reshape(dx, (dx.shape[0], x.shape[0], self.W.shape[0])) @ self.W

    def perturb_column(self, cols: Any, d: Any) -> tuple[Any, Any]:
        """Output change when input column ``cols[p]`` moves by ``d[p]`` (P, N).

        Only row ``cols[p]`` of ``W`` meets it: the change is the rank-one d[p] ⊗ W[cols[p], :],
        returned as its factors ``(d, W[cols])``, (P, N) and (P, M).
        """
        return d, namespace_of(d, self.W).take(self.W, cols, axis=0)

    def perturb_param(self, x: Any, attr: str, index: Any, step: Any) -> tuple[Any, Any]:
        """Changed output columns (P,) and their change (P, N) when a parameter element moves.

        Element ``index[p]`` (row-major flat index) of ``attr`` (``"W"`` or ``"b"``) moves by
        ``step[p]``, at the input ``x`` (N, ...). ``W[i, j]`` moves output column j by
        ``step * x[:, i]``; ``b[j]`` moves it by ``step``.
        """
        xp = namespace_of(x, step, self.W)
        x = xp.reshape(x, (x.shape[0], self.W.shape[0]))
        if attr == "b":
            return index, xp.broadcast_to(step[:, None], (step.shape[0], x.shape[0]))
        width = self.W.shape[1]
        return index % width, step[:, None] * xp.take(x, index // width, axis=1).T

    def inert_elements(self, x: Any, attr: str) -> Any:
        """Flat bool mask of the elements of ``attr`` that cannot move the output at ``x``.

        ``W[i, j]`` meets only input column i: where that column is zero in every sample,
        moving it changes nothing. Every element of ``b`` moves the output.
        """
        xp = namespace_of(x, self.W)
        param = self.W if attr == "W" else self.b
        if attr == "b":
            return xp.zeros(param.shape, dtype=xp.bool, device=device(param))
        blank = xp.all(xp.reshape(x, (x.shape[0], self.W.shape[0])) == 0, axis=0)
        return xp.reshape(xp.broadcast_to(blank[:, None], param.shape), (-1,))


def step_function(x: Any) -> Any:
    """The book's step function (chapter 3): 1 where ``x > 0``, else 0, in ``x``'s dtype
    (the book's gives integers; a float curve plots beside ``sigmoid``'s); for a Python
    number, ``1.0`` or ``0.0``."""
    if _is_python_number(x):
        return float(x > 0)
    xp = namespace_of(x)
    return xp.astype(x > 0, x.dtype)


def sigmoid(x: Any) -> Any:
    """The book's ``1 / (1 + exp(-x))``, element-wise, for an array or a Python number, as
    :class:`Sigmoid` computes it: no overflow at -1000, and precise for negative ``x``."""
    return Sigmoid().forward(x)


def relu(x: Any) -> Any:
    """The book's ``max(0, x)``, element-wise, as :class:`ReLU` computes it, for an array or
    a Python number."""
    return max(x, 0) if _is_python_number(x) else positive_part(x)


def softmax(x: Any) -> Any:
    """Softmax over the last axis, shifted by the row maximum so large logits do not overflow."""
    xp = namespace_of(x)
    e = xp.exp(x - reduce_max(x, axis=-1, keepdims=True))
    return e / reduce_sum(e, axis=-1, keepdims=True)


def log_softmax(x: Any) -> Any:
    """``log(softmax(x))`` over the last axis, computed without taking the log of a tiny number."""
    return _log_softmax(namespace_of(x), x)


def _log_softmax(xp: Any, x: Any) -> Any:
    shifted = x - reduce_max(x, axis=-1, keepdims=True)
    return shifted - xp.log(reduce_sum(xp.exp(shifted), axis=-1, keepdims=True))


def mean_squared_error(y: Any, t: Any) -> Any:
    """The book's ``0.5 * sum((y - t)**2)`` over every element, as a 0-D array: one sample
    (C,) or a batch (N, C), targets ``t`` of ``y``'s shape (one-hot, integer or floating).

    Not divided by the batch size, as in the book (:class:`MeanSquaredError` is the mean,
    as PyTorch's ``mse_loss``).
    """
    xp = namespace_of(y, t)
    _require_targets_like(xp, "predictions", y, t)
    diff = y - _in_dtype(xp, t, y.dtype)
    return 0.5 * reduce_sum(diff * diff)


def cross_entropy_error(y: Any, t: Any) -> Any:
    """The book's ``-sum(t * log(y + 1e-7)) / N`` of probabilities ``y`` (softmax's output),
    as a 0-D array.

    ``y`` is one sample (C,) or a batch (N, C); ``t`` is one-hot (or any target rows) of
    ``y``'s shape (a sample's may be a row (1, C)), or integer labels: one label (0-D or
    (1,)) for a sample, (N,) for a batch. The 1e-7 keeps ``log(0)`` finite, so the values
    are the book's; from scores rather than probabilities, :class:`SoftmaxWithLoss` needs
    no such term.
    """
    xp = namespace_of(y, t)
    require_floating(xp, "probabilities", y)
    require_array("targets", t)
    if y.ndim not in (1, 2):
        raise ValueError(f"probabilities must have shape (C,) or (N, C), got {tuple(y.shape)}")
    if y.ndim == 1:
        y = xp.reshape(y, (1, y.shape[0]))
        if t.ndim < 2:  # a row (1, C) is one sample's already, as the book's reshape makes it
            t = xp.reshape(t, (1, -1) if t.shape == (y.shape[1],) else (-1,))
    rows = _as_one_hot(xp, t, y, check=True)
    return reduce_sum(rows * xp.log(y + 1e-7)) / -y.shape[0]


class Softmax(Layer):
    """Softmax over the last axis; backward ``y * (dout - sum(dout * y))``."""

    def forward(self, x: Any) -> Any:
        """x (..., C) -> y = softmax(x) over the last axis (x's shape); keeps y."""
        self.y = softmax(x)
        return self.y

    def backward(self, dout: Any = 1) -> Any:
        """dout (y's shape) -> dx = y * (dout - sum(dout * y) over the last axis) (x's shape)."""
        return self.y * (dout - reduce_sum(dout * self.y, axis=-1, keepdims=True))


def check_labels(t: Any, classes: int) -> None:
    """Raise ``ValueError`` naming a label of ``t`` outside ``[0, classes)`` (a host sync)."""
    if t.shape[0] == 0:
        return
    xp = namespace_of(t)
    low, high = int(xp.min(t)), int(xp.max(t))
    if low < 0 or high >= classes:
        # The error path only: where the first bad label is, and how many there are.
        bad = xp.astype((t < 0) | (t >= classes), xp.int32)
        first, count = int(xp.argmax(bad)), int(xp.sum(bad))
        raise ValueError(
            f"label {int(t[first])} is out of range (at index {first}; {count:,} of "
            f"{t.shape[0]:,} labels are): expected labels in [0, {classes - 1}] for "
            f"{classes} classes"
        )


def as_one_hot(t: Any, like: Any, *, check: bool = True) -> Any:
    """Targets ``t`` as one-hot rows shaped like the scores ``like`` (N, C).

    ``t`` is either integer labels of shape (N,) in ``[0, C)`` or already one-hot
    (N, C); other 1-D targets (float labels) are a ``ValueError`` naming their dtype.
    Label range is checked when ``check`` is true (a device-to-host sync).
    """
    return _as_one_hot(namespace_of(t, like), t, like, check)


def not_labels_or_rows(t: Any, labels: str, rows: str) -> ValueError:
    """The error for targets ``t`` that are neither integer labels of shape ``labels`` nor
    target rows of shape ``rows`` (both as text, ``"(N,)"``); 1-D targets are told how to
    become labels (float labels, often float64 from ``numpy.loadtxt``), and a column (N, 1)
    how to become 1-D; integer labels of another length need no hint."""
    if t.ndim == 1 and not _isdtype(namespace_of(t), t.dtype, "integral"):
        hint = ": convert labels to integers first (t.astype('int64'), or xp.astype(t, xp.int64))"
    elif is_column(t):
        hint = ": a column of labels; pass t.ravel() (or t.reshape(-1)) for labels of shape (N,)"
    else:
        hint = ""
    return ValueError(
        f"targets must be integer labels of shape {labels} or target rows of shape {rows}, "
        f"got {dtype_name(t)} of shape {tuple(t.shape)}{hint}"
    )


def is_column(t: Any) -> bool:
    """Whether targets ``t`` are a column (N, 1), as labels read from a table often are."""
    return t.ndim == 2 and t.shape[1] == 1


def is_labels(xp: Any, t: Any) -> bool:
    """Whether targets ``t`` are integer labels (N,); integer rows (N, C), the book's
    ``t = np.array([[0, 0, 1]])``, are one-hot targets."""
    return _isdtype(xp, t.dtype, "integral") and t.ndim != 2


def _as_one_hot(xp: Any, t: Any, like: Any, check: bool) -> Any:
    if is_labels(xp, t):
        return xp.astype(_label_mask(xp, t, like, check), like.dtype)
    if t.shape != like.shape:
        if t.ndim == 1 or is_column(t):  # labels of another dtype or shape: said how to fix
            raise not_labels_or_rows(t, f"({like.shape[0]},)", str(tuple(like.shape)))
        raise ValueError(
            f"one-hot targets must have the scores' shape {tuple(like.shape)}, got {tuple(t.shape)}"
        )
    return _in_dtype(xp, t, like.dtype)


def _label_mask(xp: Any, t: Any, like: Any, check: bool) -> Any:
    """Integer labels ``t`` (N,) as a boolean (N, C) array, true at each row's label."""
    n, classes = like.shape
    if t.shape != (n,):
        raise ValueError(
            f"integer labels must have shape ({n},) to match scores of shape "
            f"{tuple(like.shape)}, got {tuple(t.shape)}"
        )
    if check:
        check_labels(t, classes)
    if xp.iinfo(t.dtype).max < classes - 1:  # uint8 labels of 300 classes: arange would wrap
        t = xp.astype(t, xp.int64)
    return xp.reshape(t, (n, 1)) == xp.arange(classes, dtype=t.dtype, device=device(t))


REDUCTIONS = ("mean", "sum")


def _per_perturbation(xp: Any, terms: Any) -> Any:
    """``terms`` (P, ...) summed over all but the leading axis: one loss change per perturbation."""
    return xp.sum(xp.reshape(terms, (terms.shape[0], -1)), axis=1)


class Loss(Layer):
    """Base of the loss layers: ``reduction`` is ``"mean"`` (the default) or ``"sum"``.

    As in PyTorch's losses, ``"mean"`` divides the summed loss by the number of terms
    (samples for :class:`SoftmaxWithLoss`, elements for the others) and ``"sum"`` does not.
    """

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"unknown reduction {reduction!r} for {type(self).__name__}: "
                f"expected one of {', '.join(REDUCTIONS)}"
            )
        self.reduction = reduction

    def config(self) -> dict[str, Any]:
        return {"reduction": self.reduction}

    def _divisor(self, terms: int) -> int:
        """What the summed loss is divided by: the number of ``terms``, or 1 for ``"sum"``."""
        return terms if self.reduction == "mean" else 1

    def _reduced(self, total: Any, terms: int) -> Any:
        """The summed loss ``total`` of ``terms`` terms over :meth:`_divisor`; dividing by 1
        (a summed loss) costs no operation."""
        divisor = self._divisor(terms)
        return total if divisor == 1 else total / divisor

    def _scaled(self, delta: Any, dout: Any, terms: int, factor: float = 1.0) -> Any:
        """``delta * factor * dout / divisor``: the chain rule with the reduction's scale.

        A scale of exactly 1 (a summed loss at the end of a graph) costs no multiply, nor
        does an empty batch (whose mean loss is NaN, as NumPy's mean of nothing).
        """
        if terms == 0:
            return delta
        scale = factor * dout / self._divisor(terms)
        return delta if type(scale) is float and scale == 1.0 else delta * scale


class SoftmaxWithLoss(Loss):
    """Softmax followed by cross-entropy; ``backward`` gives ``(y - t) / N`` (``"sum"``: ``y - t``)
    for targets that sum to 1 per row.

    ``forward(x, t)`` takes scores ``x`` (N, C) and targets ``t``: integer labels
    (N,) or target rows (N, C), one-hot or not. It returns the loss
    ``-sum(t * log_softmax(x)) / N`` as a 0-D array, the mean over the N samples (or
    their sum). The loss uses log-softmax, so it stays finite for large logits; with
    integer labels, a -inf score (a class masked out) adds nothing, as in PyTorch (target
    rows, which the ``Trainer`` passes, give nan there, as PyTorch's do). Target
    rows that do not sum to 1 (0.01/0.99 rows) are taken as they are, as PyTorch's
    ``cross_entropy`` takes them: the gradient is then ``(y * sum(t) - t) / N``, row by row.
    """

    def forward(self, x: Any, t: Any) -> Any:
        """scores x (N, C), targets t: labels (N,) or rows (N, C) -> loss (0-D), the mean
        (or sum) cross-entropy of softmax(x); keeps softmax(x) and t."""
        xp = namespace_of(x, t)
        require_floating(xp, "scores", x)
        require_array("targets", t)
        if x.ndim != 2:
            raise ValueError(f"scores must have shape (N, C), got {tuple(x.shape)}")
        labels = is_labels(xp, t)
        if labels:
            chosen = _label_mask(xp, t, x, check=True)
            self.t = xp.astype(chosen, x.dtype)
        else:
            self.t = _as_one_hot(xp, t, x, check=True)
        # Target rows may sum to other than 1 (0.01/0.99 rows), which weighs each row's
        # log-sum-exp, so its gradient; rows made from integer labels sum to 1.
        self.t_sum = None if labels else reduce_sum(self.t, axis=-1, keepdims=True)
        logp = _log_softmax(xp, x)
        self.y = xp.exp(logp)
        # Labels pick each row's log-probability, so that a class masked out by a -inf score
        # adds nothing (as in PyTorch's cross_entropy); t * logp would make 0 * -inf = nan.
        picked = xp.where(chosen, logp, 0.0) if labels else self.t * logp
        return reduce_sum(picked) / -self._divisor(x.shape[0])

    def backward(self, dout: Any = 1) -> Any:
        """dout (0-D, 1 by default) -> dx (N, C) = dout * (y - t) / N for rows t that sum to 1
        (no / N for ``"sum"``)."""
        delta = self.y - self.t if self.t_sum is None else self.y * self.t_sum - self.t
        return self._scaled(delta, dout, self.t.shape[0])

    # Local perturbations (xpnet.perturb).

    def perturb(self, x: Any, t: Any, dx: Any) -> Any:
        """Loss change (P,) when the scores ``x`` (N, C) move by ``dx`` (P, N, C).

        Per row, sum(t) * (logsumexp(x + dx) - logsumexp(x)) - dx . t, with the logsumexp change
        log(sum(y * exp(dx))) (y = softmax(x)) written around the row's top class r as
        dx_r + log1p(sum(y * expm1(dx - dx_r))), so that a small change keeps its relative
        precision and a large one its value: the sum is at least y_r - 1 >= 1/C - 1, never
        the log1p(-1) that log1p(sum(y * expm1(dx))) meets when the top class moves far down.
        (A score moved up past the top one by more than the dtype's exponent range, 709 in
        float64, still overflows: the difference is then inf or nan, reported as non-finite.)
        """
        xp = namespace_of(x, dx)
        t = as_one_hot(t, x, check=False)
        top = xpx.one_hot(xp.argmax(x, axis=-1), x.shape[-1], dtype=x.dtype, xp=xp)
        dx_top = xp.vecdot(dx, top)  # (P, N)
        dlse = dx_top + xp.log1p(xp.vecdot(xp.expm1(dx - dx_top[..., None]), softmax(x)))
        return xp.sum(dlse * xp.sum(t, axis=-1) - xp.vecdot(dx, t), axis=-1) / self._divisor(
            x.shape[0]
        )

    def perturb_rank_one(self, x: Any, t: Any, u: Any, v: Any) -> Any:
        """Loss change (P,) when the scores ``x`` (N, C) move by the rank-one ``u[p] ⊗ v[p]``.

        ``u`` is (P, N), ``v`` is (P, C). The sums of ``perturb`` with ``dx = u ⊗ v``: the
        target term, summed over the rows, is ``(u @ t) . v``, and ``dx - dx_r`` is built as
        (C, K) for the K pairs (p, n) with ``u[p, n] != 0``, ``(v[p] - v[p, r]) u[p, n]``,
        which keeps the element-wise work on rows of K. The other pairs' rows do not move
        (their logsumexp change is 0), and they are most of them: a first layer's weight
        meets only the samples where its pixel is not 0, and a ReLU passes no change where
        it is off.
        """
        xp = namespace_of(x, u, v)
        t = as_one_hot(t, x, check=False)
        dx_top = xp.take(v, xp.argmax(x, axis=-1), axis=1) * u  # (P, N): at each row's top class
        moving = xp.reshape(u != 0, (-1,))
        pairs = xp.nonzero(moving)[0]  # flat indices p * N + n, (K,)
        rows = xp.take(softmax(x).T, pairs % x.shape[0], axis=1)  # (C, K)
        # (C, K) in row-major order, as the sum over C must be: NumPy sums a (K, C) layout
        # pairwise, which rounds differently from the dense (P, C, N) sum's order.
        moved = xp.take(v.T, pairs // x.shape[0], axis=1)
        moved *= xp.take(xp.reshape(u, (-1,)), pairs)
        top = xp.take(xp.reshape(dx_top, (-1,)), pairs)
        moved -= top
        change = xp.expm1(moved)
        change *= rows
        dlse = xp.reshape(spread(top + xp.log1p(xp.sum(change, axis=0)), moving), u.shape)
        return (dlse @ xp.sum(t, axis=-1) - xp.vecdot(u @ t, v)) / self._divisor(x.shape[0])


class SigmoidWithLoss(Loss):
    """Sigmoid followed by binary cross-entropy, averaged (or summed) over all elements.

    ``forward(x, t)`` takes scores and targets in [0, 1] of the same shape and
    returns a 0-D loss; ``backward`` gives ``(sigmoid(x) - t) / x.size`` (``"sum"``:
    ``sigmoid(x) - t``).
    """

    def forward(self, x: Any, t: Any) -> Any:
        """scores x, targets t in [0, 1] (one shape) -> loss (0-D), the mean (or sum)
        binary cross-entropy; keeps sigmoid(x) and t."""
        xp = namespace_of(x, t)
        _require_targets_like(xp, "scores", x, t)
        self.t = _in_dtype(xp, t, x.dtype)
        self.y = _sigmoid(xp, x)
        # -[t log y + (1 - t) log(1 - y)] written as softplus so it never takes log(0).
        terms = xp.log1p(xp.exp(-xp.abs(x)))
        terms += positive_part(x)
        terms -= x * self.t
        return self._reduced(reduce_sum(terms), math.prod(x.shape))

    def backward(self, dout: Any = 1) -> Any:
        """dout (0-D, 1 by default) -> dx (x's shape) = dout * (sigmoid(x) - t) / x.size
        (no / x.size for ``"sum"``)."""
        return self._scaled(self.y - self.t, dout, math.prod(self.y.shape))

    # Local perturbations (xpnet.perturb).

    def perturb(self, x: Any, t: Any, dx: Any) -> Any:
        """Loss change (P,) when the scores ``x`` move by ``dx`` (P, *x.shape).

        Per element, ``softplus(x + dx) - softplus(x) - dx t``, with the softplus change
        written as ``log1p(sigmoid(x) * expm1(dx))`` for ``x <= 0`` and, by symmetry, as
        ``dx + log1p(sigmoid(-x) * expm1(-dx))`` for ``x > 0``: a small change keeps its
        relative precision, and a large one its value (the argument of log1p stays above
        -1/2, where ``log1p(sigmoid(x) * expm1(dx))`` reaches log1p(-1) when a large ``x``
        moves far down). ``sigmoid(-|x|)`` is ``exp(-|x|) / (1 + exp(-|x|))``, which keeps
        its relative precision where 0.5 * (1 + tanh(x / 2)) loses it.
        """
        xp = namespace_of(x, dx)
        e = xp.exp(-xp.abs(x))
        low = e / (1.0 + e)  # sigmoid(-|x|)
        up = xp.astype(x > 0, x.dtype)  # the side whose softplus is about x
        flip = 1.0 - 2.0 * up  # dx seen from the low side: -dx where x > 0
        terms = xp.log1p(low * xp.expm1(flip * dx)) + dx * (up - _in_dtype(xp, t, x.dtype))
        return _per_perturbation(xp, terms) / self._divisor(math.prod(x.shape))


class MeanSquaredError(Loss):
    """``mean((y - t)**2)`` over all elements (``"sum"``: the sum).

    Backward gives ``2 (y - t) / y.size`` (``"sum"``: ``2 (y - t)``).
    """

    def forward(self, y: Any, t: Any) -> Any:
        """predictions y, targets t (one shape) -> loss (0-D) = mean((y - t)**2) (or the
        sum); keeps y - t."""
        xp = namespace_of(y, t)
        _require_targets_like(xp, "predictions", y, t)
        self.diff = y - _in_dtype(xp, t, y.dtype)
        return self._reduced(reduce_sum(self.diff * self.diff), math.prod(y.shape))

    def backward(self, dout: Any = 1) -> Any:
        """dout (0-D, 1 by default) -> dy (y's shape) = dout * 2 (y - t) / y.size
        (no / y.size for ``"sum"``)."""
        return self._scaled(self.diff, dout, math.prod(self.diff.shape), factor=2.0)

    # Local perturbations (xpnet.perturb).

    def perturb(self, y: Any, t: Any, dy: Any) -> Any:
        """Loss change (P,) when the predictions ``y`` move by ``dy`` (P, *y.shape):
        ``(y + dy - t)**2 - (y - t)**2``, written as ``dy (2 (y - t) + dy)``."""
        xp = namespace_of(y, dy)
        terms = dy * (2.0 * (y - _in_dtype(xp, t, y.dtype)) + dy)
        return _per_perturbation(xp, terms) / self._divisor(math.prod(y.shape))


class Dropout(Layer):
    """Zero each input element with probability ``dropout_ratio`` while training.

    As in the book, ``forward(x, train_flg=True)`` keeps an element where a uniform
    number in [0, 1) is at least ``dropout_ratio`` and zeroes the rest (no rescaling), and
    ``forward(x, train_flg=False)`` multiplies by ``1 - dropout_ratio``, the expected
    fraction kept. ``backward`` lets ``dout`` through the same mask (or the same
    scale). The masks are drawn on ``x``'s device by a :class:`~xpnet.backend.DeviceRNG`
    seeded with ``seed``, so a run is reproducible. Checkpoints save the generator's state
    (:mod:`xpnet.checkpoint`), so a resumed run draws the masks an uninterrupted one would.
    """

    def __init__(self, dropout_ratio: float = 0.5, *, seed: int | None = None) -> None:
        if not (is_real(dropout_ratio) and 0.0 <= dropout_ratio < 1.0):
            raise bad_argument(is_real(dropout_ratio))(
                f"dropout_ratio must be in [0, 1), got {dropout_ratio!r}"
            )
        self.dropout_ratio, self.seed = float(dropout_ratio), seed
        self.rng = DeviceRNG(seed)

    def config(self) -> dict[str, Any]:
        """The constructor keywords."""
        return {"dropout_ratio": self.dropout_ratio, "seed": self.seed}

    def forward(self, x: Any, train_flg: bool = True) -> Any:
        """x (any shape) -> out (x's shape): x times a new 0/1 mask in training, else
        x * (1 - dropout_ratio); keeps the mask."""
        if not train_flg:
            self.mask = None
            return x * (1.0 - self.dropout_ratio)
        xp = namespace_of(x)
        # ">=", not the book's ">": the draws are multiples of 2**-24 (float32) or 2**-11
        # (PyTorch's float16), so ">" dropped the draws of exactly 0 at a ratio of 0 and kept
        # one grid step too few at any ratio; ">=" keeps 1 - ratio of them exactly.
        self.mask = xp.astype(self.rng.uniform(x.shape, like=x) >= self.dropout_ratio, x.dtype)
        return x * self.mask

    def backward(self, dout: Any) -> Any:
        """dout (x's shape) -> dx (x's shape): dout through the same mask, or the same scale."""
        if self.mask is None:
            return dout * (1.0 - self.dropout_ratio)
        return dout * self.mask

    # Local perturbations (xpnet.perturb), in training mode: through the mask of the last
    # training pass, which a held network (xpnet.held) draws again in every pass.
    perturbs_in_training = True

    def perturb(self, x: Any, dx: Any) -> Any:
        """Output change (P, *x.shape) when the input ``x`` moves by ``dx``: ``dx * mask``."""
        return dx * self._training_mask(x)

    def perturb_columns(self, x: Any, cols: Any, d: Any) -> Any:
        """Change (P, N) of output column ``cols[p]`` when that input column of ``x`` (N, D)
        moves by ``d[p]`` (P, N)."""
        return d * namespace_of(x, d).take(self._training_mask(x), cols, axis=1).T

    def _training_mask(self, x: Any) -> Any:
        if self.mask is None or tuple(self.mask.shape) != tuple(x.shape):
            raise ValueError(
                "Dropout's perturbations follow the mask of its last forward pass, which was "
                "not a training pass on an input of this shape: run one first"
            )
        return self.mask


class BatchNormalization(Layer):
    """``out = gamma * (x - mean) / sqrt(var + eps) + beta``, per feature (the book's layer).

    ``x`` is (N, D), or (N, C, H, W) images, which, as in the book, are normalized
    per feature of the flattened (N, C * H * W), so ``gamma`` and ``beta`` have shape
    (D,) with D = C * H * W. ``forward(x, train_flg=True)`` uses the batch's mean and
    (biased) variance and updates ``running_mean``/``running_var`` to
    ``momentum * running + (1 - momentum) * batch``; ``train_flg=False`` uses the
    running statistics (zeros until the first training step, as in the book).
    ``eps`` is the book's 1e-6. Unlike PyTorch's ``BatchNorm1d`` (``momentum=0.1`` is the
    weight of the batch; running variance from 1 and updated with the unbiased batch
    variance), ``momentum`` here weighs the old statistics (0.9 is PyTorch's 0.1) and the
    running variance starts at 0 and follows the biased one, so evaluation differs even
    where training agrees. ``backward`` stores ``dgamma`` and ``dbeta`` and
    returns ``dx`` in ``x``'s shape: in training, through the batch statistics too,
    ``dx = (dxn - mean(dxn) - xn * mean(dxn * xn)) / std`` with ``dxn = gamma * dout``.
    A training batch of one sample normalizes to 0 (its variance is 0), so it passes no
    gradient to the layers below (PyTorch refuses it); an empty one is refused, as its
    statistics would turn the running ones into NaN.
    """

    params = ("gamma", "beta")
    buffers = ("running_mean", "running_var")
    eps = 1e-6

    @classmethod
    def initialized(
        cls,
        features: int,
        momentum: float = 0.9,
        *,
        dtype: Any = "float32",
        device: Any = None,
        xp: ModuleType | None = None,
    ) -> BatchNormalization:
        """A new BatchNormalization of ``features`` (D) features, as PyTorch's
        ``nn.BatchNorm1d(features)``: ``gamma`` ones and ``beta`` zeros (D,), as the book's
        ``MultiLayerNetExtend`` starts them. ``dtype``, ``device`` and ``xp`` as for
        :meth:`Affine.initialized`; ``momentum`` as for the constructor (this layer's
        meaning, not PyTorch's)."""
        require_count("features", features, 1)
        where = {"dtype": dtype, "device": device, "xp": xp}
        gamma, beta = (init.constant(int(features), v, **where) for v in (1.0, 0.0))
        return cls(gamma, beta, momentum)

    def __init__(
        self,
        gamma: Any,
        beta: Any,
        momentum: float = 0.9,
        running_mean: Any = None,
        running_var: Any = None,
    ) -> None:
        if gamma.ndim != 1 or tuple(beta.shape) != tuple(gamma.shape):
            raise ValueError(
                f"BatchNormalization needs gamma and beta of one shape (D,), "
                f"got {tuple(gamma.shape)} and {tuple(beta.shape)}"
            )
        if not (is_real(momentum) and 0.0 <= momentum <= 1.0):
            raise bad_argument(is_real(momentum))(
                f"BatchNormalization momentum must be in [0, 1] (the weight of the old "
                f"running statistics), got {momentum!r}"
            )
        for name, stat in (("running_mean", running_mean), ("running_var", running_var)):
            if stat is not None and tuple(getattr(stat, "shape", ())) != tuple(gamma.shape):
                got = (
                    f"shape {tuple(stat.shape)}" if hasattr(stat, "shape") else type(stat).__name__
                )
                raise ValueError(
                    f"BatchNormalization needs {name} of gamma's shape {tuple(gamma.shape)}, "
                    f"got {got}"
                )
        self.gamma, self.beta, self.momentum = gamma, beta, float(momentum)
        xp = namespace_of(gamma)
        self.running_mean = xp.zeros_like(gamma) if running_mean is None else running_mean
        self.running_var = xp.zeros_like(gamma) if running_var is None else running_var
        self.dgamma = self.dbeta = None

    def config(self) -> dict[str, Any]:
        """The constructor keywords besides the parameters and buffers."""
        return {"momentum": self.momentum}

    def forward(self, x: Any, train_flg: bool = True) -> Any:
        """x (N, D), or images (N, C, H, W) with D = C * H * W -> out (x's shape),
        normalized per feature by the batch's statistics (training) or the running ones."""
        xp = namespace_of(x, self.gamma, self.beta)
        require_floating(xp, "BatchNormalization input", x, data=True)
        self.x_shape, self.train = x.shape, train_flg
        try:
            x = _as_rows(xp, x, "BatchNormalization", "gamma", self.gamma)
        except ValueError as exc:
            if x.ndim != 4 or tuple(self.gamma.shape) != (x.shape[1],):
                raise
            raise ValueError(
                f"{exc}; images are normalized per element of the flattened image, as the "
                f"book's layer does: gamma and beta of shape ({math.prod(x.shape[1:])},) here, "
                "not one per channel as PyTorch's BatchNorm2d"
            ) from None
        if train_flg:
            if x.shape[0] == 0:
                raise ValueError(
                    "BatchNormalization got an empty batch in training: it has no mean or "
                    "variance to normalize by (evaluate with train_flg=False)"
                )
            mu = xp.mean(x, axis=0)
            xc = x - mu
            var = xp.mean(xc * xc, axis=0)
            m = self.momentum
            self.running_mean = m * self.running_mean + (1.0 - m) * mu
            self.running_var = m * self.running_var + (1.0 - m) * var
        else:
            xc, var = x - self.running_mean, self.running_var
        self.std = xp.sqrt(var + self.eps)
        self.xn = xc / self.std
        return xp.reshape(self.gamma * self.xn + self.beta, self.x_shape)

    def backward(self, dout: Any) -> Any:
        """dout (x's shape) -> dx (x's shape); sets dgamma (D,) and dbeta (D,)."""
        xp = namespace_of(dout, self.gamma)
        dout = xp.reshape(dout, self.xn.shape)
        self.dbeta = reduce_sum(dout, axis=0)
        self.dgamma = reduce_sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        if self.train:
            dxn = dxn - xp.mean(dxn, axis=0) - self.xn * xp.mean(dxn * self.xn, axis=0)
        return xp.reshape(dxn / self.std, self.x_shape)

    # Local perturbations (xpnet.perturb), in training mode, the loss a gradient check
    # differentiates: each perturbed batch is normalized by its own mean and variance.
    perturbs_in_training = True

    def _normalized(self, xp: Any, x: Any) -> Any:
        """``x`` (P, N, ...) normalized over its samples (axis 1), as a training pass does."""
        xc = x - xp.mean(x, axis=1, keepdims=True)
        return xc / xp.sqrt(xp.mean(xc * xc, axis=1, keepdims=True) + self.eps)

    def perturb(self, x: Any, dx: Any) -> Any:
        """Output change (P, *x.shape) when the input ``x`` (N, ...) moves by ``dx`` (P, N, ...)."""
        xp = namespace_of(x, dx, self.gamma)
        rows = xp.reshape(x, (1, x.shape[0], self.gamma.shape[0]))
        moved = rows + xp.reshape(dx, (dx.shape[0], *rows.shape[1:]))
        change = self.gamma * (self._normalized(xp, moved) - self._normalized(xp, rows))
        return xp.reshape(change, dx.shape)

    def perturb_columns(self, x: Any, cols: Any, d: Any) -> Any:
        """Change (P, N) of output column ``cols[p]`` when input column ``cols[p]`` of ``x``
        (N, D) moves by ``d[p]`` (P, N): features are normalized one by one."""
        xp = namespace_of(x, d, self.gamma)
        column = xp.take(x, cols, axis=1).T
        change = self._normalized(xp, column + d) - self._normalized(xp, column)
        return xp.take(self.gamma, cols)[:, None] * change

    def perturb_param(self, x: Any, attr: str, index: Any, step: Any) -> tuple[Any, Any]:
        """Changed output columns (P,) and their change (P, N) when ``gamma[j]`` or
        ``beta[j]`` (``j = index[p]``) moves by ``step[p]`` at the input ``x`` (N, D):
        ``gamma[j]`` moves column j by ``step * xn[:, j]`` (x normalized over the batch),
        ``beta[j]`` by ``step``."""
        xp = namespace_of(x, step, self.gamma)
        if attr == "beta":
            return index, xp.broadcast_to(step[:, None], (step.shape[0], x.shape[0]))
        xn = self._normalized(xp, xp.reshape(x, (1, x.shape[0], self.gamma.shape[0])))[0, ...]
        return index, step[:, None] * xp.take(xn, index, axis=1).T
