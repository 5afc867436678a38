"""The course notes' per-sample network, built with ``xpnet.Sequential``, and its data.

784-100-10 with sigmoid hidden and output layers, binary cross-entropy summed over the
10 outputs (``SigmoidWithLoss(reduction="sum")``: the sigmoid output is inside the loss
layer), SGD lr 0.3, one sample a step; weights ``randn / sqrt(fan_in / 2)`` and biases
uniform in [0, 1) as the notes draw them; inputs ``x / 255 * 0.99 + 0.01``, targets
0.01 / 0.99.
"""

from __future__ import annotations

import numpy as np

from xpnet import Sequential, backend
from xpnet.layers import Affine, Sigmoid, SigmoidWithLoss

NETWORK = "course Sequential(784, 100, 10), sigmoid, BCE summed"
SIZES = (784, 100, 10)
LR = 0.3


def host_params(
    seed: int = 0, dtype: str = "float32", sizes: tuple[int, int, int] = SIZES
) -> dict[str, np.ndarray]:
    """``W1`` (784, 100), ``b1`` (100,), ``W2`` (100, 10), ``b2`` (10,) on the host (other
    ``sizes``: (inputs, hidden, outputs))."""
    rng = backend.host_rng(seed)
    d, h, c = sizes
    params = {
        "W1": rng.standard_normal((d, h)) / np.sqrt(d / 2),
        "b1": rng.random(h),
        "W2": rng.standard_normal((h, c)) / np.sqrt(h / 2),
        "b2": rng.random(c),
    }
    return {name: value.astype(dtype) for name, value in params.items()}


def network(
    params: dict[str, np.ndarray], dtype: str = "float32", device: str | None = None
) -> Sequential:
    """The course network on ``device`` (default ``XPNET_DEVICE``), from host ``params``."""
    W1, b1, W2, b2 = (
        backend.to_device(params[k], dtype=dtype, device=device) for k in ("W1", "b1", "W2", "b2")
    )
    return Sequential(
        [Affine(W1, b1, input_grad=False), Sigmoid(), Affine(W2, b2)],
        loss=SigmoidWithLoss(reduction="sum"),
    )


def inputs_and_targets(x01: np.ndarray, t_one_hot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The notes' scaling: ``x / 255 * 0.99 + 0.01`` (from pixels in [0, 1]), targets 0.01/0.99."""
    return x01 * 0.99 + 0.01, 0.01 + 0.98 * t_one_hot
