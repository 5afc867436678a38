"""The fixed cost of xpnet's abstraction: one SGD step of each step-suite network shrunk to
4 inputs, 3 hidden units and 2 outputs, where the arithmetic costs next to nothing, xpnet
against the same step written by hand in NumPy, side by side (``bench.SideBySide``)::

    python -m benchmarks.step_overhead

Both sides make the same array operations (NumPy calls) on the same tiny arrays, so
what xpnet takes more is what its layers, ``Sequential`` and the optimizer do in Python
around them: namespace and shape checks, calls, the parameter mapping. That cost does
not grow with the batch; the step suite's ``xpnet/numpy`` at batch 100 is about
``1 + cost / (hand step at batch 100)``.

A third step splits the cost: the same network's layers called one after the other and
their parameters updated in place by hand (:func:`layers_step`), with no ``Sequential``,
optimizer or parameter mapping. Its cost over the hand-written step is what the layers
themselves add (their namespace lookups and checks); the rest of xpnet's is what drives
them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from benchmarks import _cli, _course, _numpy_peer
from benchmarks._frameworks import host_params, sgd_step
from benchmarks.test_training_step import DTYPE
from xpnet import Sequential, bench
from xpnet.networks import TwoLayerNet

SIZES = (4, 3, 2)
NETS = 4
PAIRS = 400
BLOCK = 200  # steps a block (about 10 ms)


def layers_step(net: Sequential, x: Any, t: Any, lr: float) -> Callable[[], None]:
    """One SGD step of ``net`` (Affine, activation, Affine and a loss layer) through its
    layers' own ``forward`` and ``backward``, updating ``W`` and ``b`` in place."""
    first, activation, second = net.layers
    loss = net.last_layer

    def step() -> None:
        loss.forward(second.forward(activation.forward(first.forward(x))), t)
        first.backward(activation.backward(second.backward(loss.backward(1))))
        for affine in (first, second):
            affine.W -= lr * affine.dW
            affine.b -= lr * affine.db

    return step


def networks() -> dict[str, dict[str, list[Callable[[], Any]]]]:
    """name -> {``"xpnet"``, ``"layers"``, ``"numpy"``: ``NETS`` steps each}, on one tiny batch."""
    rng = np.random.default_rng(0)
    d, h, c = SIZES
    x = rng.random((1, d)).astype(DTYPE)
    t = np.eye(c, dtype=DTYPE)[[1]]
    two = [TwoLayerNet(d, h, c, dtype=DTYPE, seed=k) for k in range(2 * NETS)]
    course = [_course.host_params(k, DTYPE, SIZES) for k in range(NETS)]
    return {
        "two-layer": {
            "xpnet": [sgd_step(net, x, t, 0.1) for net in two[:NETS]],
            "layers": [layers_step(net, x, t, 0.1) for net in two[NETS:]],
            "numpy": [
                partial(_numpy_peer.two_layer_step, host_params(net), x, t, 0.1)
                for net in two[:NETS]
            ],
        },
        "course": {
            "xpnet": [sgd_step(_course.network(p, DTYPE, "cpu"), x, t, _course.LR) for p in course],
            "layers": [
                layers_step(_course.network(p, DTYPE, "cpu"), x, t, _course.LR) for p in course
            ],
            "numpy": [partial(_numpy_peer.course_step, dict(p), x, t, _course.LR) for p in course],
        },
    }


def main() -> None:
    print(
        f"{'network':10s} {'xpnet':>8s} {'layers':>8s} {'numpy':>8s} {'cost':>8s} "
        f"{'layers':>8s} {'driving':>8s}  (us a step, medians; cost = layers + driving)"
    )
    for name, steps in networks().items():
        # Both comparisons against the same hand-written steps, their pairs interleaved.
        whole = bench.SideBySide(steps["xpnet"], steps["numpy"], BLOCK)
        bare = bench.SideBySide(steps["layers"], steps["numpy"], BLOCK)
        for _ in range(PAIRS):
            whole()
            bare()
        costs = [float(np.median(np.subtract(*pairs.times)) * 1e6) for pairs in (whole, bare)]
        xpnet_us, layers_us = (float(np.median(p.times[0])) * 1e6 for p in (whole, bare))
        numpy_us = float(np.median(whole.times[1] + bare.times[1])) * 1e6
        print(
            f"{name:10s} {xpnet_us:8.1f} {layers_us:8.1f} {numpy_us:8.1f} {costs[0]:8.1f} "
            f"{costs[1]:8.1f} {costs[0] - costs[1]:8.1f}"
        )


def parse_args(argv: Sequence[str] | None = None) -> None:
    """The command line: no arguments; ``--help`` prints this module's description."""
    _cli.no_arguments("benchmarks.step_overhead", __doc__, argv)


if __name__ == "__main__":
    parse_args()
    main()
