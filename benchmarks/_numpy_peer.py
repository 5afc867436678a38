"""The floor: the same SGD steps written by hand in plain NumPy, as the book and the notes do.

No layers, no namespace, no checks: ``np.dot``, ``np.sum(..., axis=0)`` and an in-place
update (``params[key] -= lr * grads[key]``, the book's ``train_neuralnet.py``), on
NumPy arrays of the benchmark's dtype. What xpnet's abstraction costs is its time over
these. Only the benchmarks import this module; it is a CPU peer (on CUDA the peers
are PyTorch eager and its CUDA graph).
"""

from __future__ import annotations

from collections.abc import MutableMapping

import numpy as np

Params = MutableMapping[str, np.ndarray]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    """The book's ``common/functions.py`` softmax (rows of scores)."""
    x = x - np.max(x, axis=-1, keepdims=True)
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def cross_entropy_error(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The book's cross-entropy of softmax outputs ``y`` (N, C) and one-hot ``t`` (N, C)."""
    t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


def two_layer_step(params: Params, x: np.ndarray, t: np.ndarray, lr: float) -> np.ndarray:
    """One SGD step of the book's TwoLayerNet (Affine, ReLU, Affine, SoftmaxWithLoss).

    ``x`` (N, 784), one-hot ``t`` (N, 10); ``params`` ``W1`` (784, H), ``b1`` (H,),
    ``W2`` (H, 10), ``b2`` (10,) are updated in place. Returns the loss before the
    update. The forward and backward passes are the book's layers' (ReLU's mask,
    ``(y - t) / batch_size``) inlined; like xpnet's first ``Affine(input_grad=False)``
    it does not compute the gradient of the data.
    """
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    # forward
    a1 = np.dot(x, W1) + b1
    mask = a1 <= 0
    z1 = a1.copy()
    z1[mask] = 0
    y = softmax(np.dot(z1, W2) + b2)
    loss = cross_entropy_error(y, t)
    # backward
    da2 = (y - t) / x.shape[0]
    dz1 = np.dot(da2, W2.T)
    dz1[mask] = 0
    grads = {
        "W1": np.dot(x.T, dz1),
        "b1": np.sum(dz1, axis=0),
        "W2": np.dot(z1.T, da2),
        "b2": np.sum(da2, axis=0),
    }
    for key in ("W1", "b1", "W2", "b2"):
        params[key] -= lr * grads[key]
    return loss


def course_train(params: Params, x: np.ndarray, t: np.ndarray, lr: float) -> None:
    """The course notes' ``train()`` as a plain function: sigmoid layers, one SGD step.

    ``x`` (N, 784) inputs in [0.01, 1], ``t`` (N, 10) targets 0.01 / 0.99 (the notes pass
    one sample, N = 1); ``params`` as in :func:`two_layer_step`, updated in place.

    The output delta is ``y - t``, the gradient of the loss the notes state (binary
    cross-entropy summed over the outputs, xpnet's ``SigmoidWithLoss(reduction="sum")``),
    NOT the notes' own ``(y - t) * y * (1 - y)`` (the gradient of half the squared error;
    ``examples/course_network.py``), so that both sides do the same maths. Like the notes,
    it computes no loss value (:func:`course_step` does).
    """
    hidden, y = _course_forward(params, x)
    _course_update(params, x, t, hidden, y, lr)


def course_step(params: Params, x: np.ndarray, t: np.ndarray, lr: float) -> np.ndarray:
    """:func:`course_train` that also computes the loss, as a training step of xpnet (or of
    the book's networks) does in its loss layer's forward pass: the notes' stated loss,
    binary cross-entropy summed over the outputs. Returns it (before the update)."""
    hidden, y = _course_forward(params, x)
    loss = -np.sum(t * np.log(y) + (1 - t) * np.log(1 - y))
    _course_update(params, x, t, hidden, y, lr)
    return loss


def _course_forward(params: Params, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hidden = sigmoid(np.dot(x, params["W1"]) + params["b1"])
    return hidden, sigmoid(np.dot(hidden, params["W2"]) + params["b2"])


def _course_update(
    params: Params, x: np.ndarray, t: np.ndarray, hidden: np.ndarray, y: np.ndarray, lr: float
) -> None:
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    delta2 = y - t
    delta1 = np.dot(delta2, W2.T) * hidden * (1 - hidden)
    W2 -= lr * np.dot(hidden.T, delta2)
    b2 -= lr * np.sum(delta2, axis=0)
    W1 -= lr * np.dot(x.T, delta1)
    b1 -= lr * np.sum(delta1, axis=0)


def course_step_in_xpnets_maths(
    params: Params, x: np.ndarray, t: np.ndarray, lr: float
) -> np.ndarray:
    """:func:`course_step` with the arithmetic of xpnet's layers, in one plain function.

    The sigmoid as ``1 / (1 + exp(-max(x, -88)))`` (88: float32's limit of ``exp``); the loss as
    ``softplus(s) - s * t`` (``SigmoidWithLoss``'s form, which never takes ``log(0)``); the
    bias added in place; sums by ``numpy.add.reduce``; the update in the order of
    ``net.params``. No layers, no checks, no mapping: what xpnet's course network would
    cost with nothing in Python around its arithmetic. Returns the loss.
    """
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    hidden = np.dot(x, W1)
    hidden += b1
    hidden = np.exp(-np.maximum(hidden, -88.0))
    hidden += 1.0
    hidden = 1.0 / hidden
    s = np.dot(hidden, W2)
    s += b2
    y = np.exp(-np.maximum(s, -88.0))
    y += 1.0
    y = 1.0 / y
    terms = np.log1p(np.exp(-np.abs(s)))
    terms += np.maximum(s, np.zeros(s.shape, s.dtype))
    terms -= s * t
    loss = np.add.reduce(terms, axis=None)
    delta2 = y - t
    dW2, db2 = np.dot(hidden.T, delta2), np.add.reduce(delta2, axis=0)
    delta1 = np.dot(delta2, W2.T) * (1.0 - hidden)
    delta1 *= hidden
    dW1, db1 = np.dot(x.T, delta1), np.add.reduce(delta1, axis=0)
    W1 -= lr * dW1
    b1 -= lr * db1
    W2 -= lr * dW2
    b2 -= lr * db2
    return loss
