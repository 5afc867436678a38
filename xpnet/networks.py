"""Networks built from layers: the book's ``TwoLayerNet`` and an any-depth ``MultiLayerNet``.

A network is a list of layers ending in ``SoftmaxWithLoss``. ``gradient``
runs the forward pass, then the backward pass through the layers in reverse
(the general backprop pattern), and collects each layer's parameter gradients.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, MutableMapping, Sequence
from itertools import pairwise
from types import ModuleType
from typing import Any

from xpnet.backend import host_rng, namespace_of, random_normal, to_device
from xpnet.gradcheck import numerical_gradient
from xpnet.layers import Affine, ReLU, Sigmoid, SoftmaxWithLoss, Tanh

ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
WEIGHT_INITS = ("he", "xavier")


class Parameters(MutableMapping):
    """``name -> array``, a live view of the layers' parameters (``W1`` is ``layers[0].W``).

    Assigning ``params["W1"] = new`` rebinds the layer's attribute, so optimizers may
    update in place (``params[k] -= lr * g``) or by assignment; the shape must stay.
    """

    def __init__(self, slots: dict[str, tuple[Any, str]]) -> None:
        self._slots = slots

    def __getitem__(self, name: str) -> Any:
        layer, attr = self._slots[name]
        return getattr(layer, attr)

    def __setitem__(self, name: str, value: Any) -> None:
        if name not in self._slots:
            raise KeyError(f"no parameter {name!r}; parameters are {', '.join(self._slots)}")
        old = self[name]
        if tuple(value.shape) != tuple(old.shape):
            raise ValueError(
                f"parameter {name!r} has shape {tuple(old.shape)}, got {tuple(value.shape)}"
            )
        layer, attr = self._slots[name]
        setattr(layer, attr, value)

    def __delitem__(self, name: str) -> None:
        raise TypeError("a network's parameters cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def gradient_of(self, name: str) -> Any:
        """The gradient stored beside parameter ``name`` by the last backward pass."""
        layer, attr = self._slots[name]
        return getattr(layer, "d" + attr)

    def slot(self, name: str) -> tuple[Any, str]:
        """The layer holding parameter ``name`` and its attribute name (``"W1"`` -> Affine, "W")."""
        return self._slots[name]


def _init_std(weight_init: str | float, fan_in: int, name: str) -> float:
    if isinstance(weight_init, (int, float)) and not isinstance(weight_init, bool):
        return float(weight_init)
    if weight_init in ("he", "relu"):
        return math.sqrt(2.0 / fan_in)
    if weight_init in ("xavier", "sigmoid"):
        return math.sqrt(1.0 / fan_in)
    raise ValueError(
        f"unknown weight_init {weight_init!r} for {name}: expected 'he', 'xavier' or a "
        "standard deviation (float)"
    )


class MultiLayerNet:
    """A fully connected network: (Affine, activation) x len(hidden_sizes), Affine, softmax loss.

    Parameters are ``W1, b1, ..., Wn, bn`` with ``Wk`` of shape (size_{k-1}, size_k).
    ``weight_init`` is ``"he"`` (std sqrt(2/fan_in)), ``"xavier"`` (std sqrt(1/fan_in))
    or a fixed standard deviation; biases start at zero. ``weight_decay`` adds
    ``0.5 * weight_decay * sum(W**2)`` over every ``W`` to the loss.
    Weights are drawn on the host from ``seed``, so one seed gives the same network
    on every backend; ``device`` (default ``XPNET_DEVICE``) or ``xp`` picks where they live.
    """

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        output_size: int,
        *,
        activation: str = "relu",
        weight_init: str | float = "he",
        weight_decay: float = 0.0,
        dtype: str = "float32",
        seed: int | None = None,
        device: str | None = None,
        xp: ModuleType | None = None,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}: expected one of {', '.join(ACTIVATIONS)}"
            )
        sizes = [input_size, *hidden_sizes, output_size]
        if any(not isinstance(n, int) or n < 1 for n in sizes):
            raise ValueError(f"layer sizes must be positive integers, got {sizes}")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.sizes, self.activation, self.dtype = sizes, activation, dtype
        self.weight_decay = weight_decay
        rng = host_rng(seed)
        self.layers: list[Any] = []
        slots: dict[str, tuple[Any, str]] = {}
        for k, (fan_in, fan_out) in enumerate(pairwise(sizes), start=1):
            std = _init_std(weight_init, fan_in, f"W{k}")
            W = random_normal(
                (fan_in, fan_out), std=std, rng=rng, dtype=dtype, device=device, xp=xp
            )
            b = to_device([0.0] * fan_out, dtype=dtype, device=device, xp=xp)
            affine = Affine(W, b, input_grad=k > 1)  # the data need no gradient
            slots[f"W{k}"], slots[f"b{k}"] = (affine, "W"), (affine, "b")
            self.layers.append(affine)
            if k < len(sizes) - 1:
                self.layers.append(ACTIVATIONS[activation]())
        self.last_layer = SoftmaxWithLoss()
        self.params = Parameters(slots)

    def predict(self, x: Any) -> Any:
        """Scores (N, output_size) for inputs (N, input_size) (or (N, ...) images)."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss(self, x: Any, t: Any) -> Any:
        """Mean cross-entropy (plus weight decay) as a 0-D array; ``t`` labels (N,) or one-hot."""
        loss = self.last_layer.forward(self.predict(x), t)
        if self.weight_decay:
            for name in self.params:
                if name.startswith("W"):
                    W = self.params[name]
                    loss = loss + 0.5 * self.weight_decay * namespace_of(W).sum(W * W)
        return loss

    def decay_rate(self, name: str) -> float:
        """The weight decay on parameter ``name``: ``loss`` adds ``0.5 * rate * sum(p**2)``."""
        return self.weight_decay if name.startswith("W") else 0.0

    def accuracy(self, x: Any, t: Any) -> float:
        """Fraction of samples whose highest score is the target class (a Python float)."""
        y = self.predict(x)
        xp = namespace_of(y, t)
        labels = t if t.ndim == 1 else xp.argmax(t, axis=1)
        hits = xp.sum(xp.astype(xp.argmax(y, axis=1) == labels, xp.int64))
        return int(hits) / y.shape[0]

    def gradient(self, x: Any, t: Any) -> dict[str, Any]:
        """Gradients of ``loss(x, t)`` for every parameter, by backpropagation."""
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        grads = {name: self.params.gradient_of(name) for name in self.params}
        if self.weight_decay:
            for name in grads:
                if name.startswith("W"):
                    grads[name] = grads[name] + self.weight_decay * self.params[name]
        return grads

    def numerical_gradient(
        self, x: Any, t: Any, h: float = 1e-4, *, params: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Gradients of ``loss(x, t)`` by central differences, one element at a time (slow).

        ``params`` limits the work to some parameter names (default: all).
        """
        grads = {}
        for name in self.params if params is None else params:
            grads[name] = numerical_gradient(
                lambda p, name=name: self.loss_at(name, p, x, t), self.params[name], h
            )
        return grads

    def loss_at(self, name: str, value: Any, x: Any, t: Any) -> Any:
        """``loss(x, t)`` with parameter ``name`` set to ``value``; the network stays unchanged."""
        old = self.params[name]
        self.params[name] = value
        try:
            return self.loss(x, t)
        finally:
            self.params[name] = old


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
        dtype: str = "float32",
        seed: int | None = None,
        device: str | None = None,
        xp: ModuleType | None = None,
    ) -> None:
        super().__init__(
            input_size,
            [hidden_size],
            output_size,
            activation="relu",
            weight_init=float(weight_init_std),
            dtype=dtype,
            seed=seed,
            device=device,
            xp=xp,
        )
