"""The fixed cost of xpnet's abstraction: one SGD step of each step-suite network shrunk to
4 inputs, 3 hidden units and 2 outputs, where the arithmetic costs next to nothing, xpnet
against the same step written by hand in NumPy, side by side (``bench.SideBySide``)::

    python -m benchmarks.step_overhead

Both sides make the same array operations (NumPy calls) on the same tiny arrays, so
what xpnet takes more is what its layers, ``Sequential`` and the optimizer do in Python
around them: namespace and shape checks, calls, the parameter mapping. That cost does
not grow with the batch; the step suite's ``xpnet/numpy`` at batch 100 is about
``1 + cost / (hand step at batch 100)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from benchmarks import _course, _numpy_peer
from benchmarks._frameworks import host_params, sgd_step
from benchmarks.test_training_step import DTYPE
from xpnet import bench
from xpnet.networks import TwoLayerNet

SIZES = (4, 3, 2)
NETS = 4
PAIRS = 400
BLOCK = 200  # steps a block (about 10 ms)


def networks() -> dict[str, tuple[list[Callable[[], Any]], list[Callable[[], Any]]]]:
    """name -> (xpnet steps, hand-written steps), ``NETS`` of each, on one tiny batch."""
    rng = np.random.default_rng(0)
    d, h, c = SIZES
    x = rng.random((1, d)).astype(DTYPE)
    t = np.eye(c, dtype=DTYPE)[[1]]
    out = {}
    two = [TwoLayerNet(d, h, c, dtype=DTYPE, seed=k) for k in range(NETS)]
    out["two-layer"] = (
        [sgd_step(net, x, t, 0.1) for net in two],
        [partial(_numpy_peer.two_layer_step, host_params(net), x, t, 0.1) for net in two],
    )
    course = [_course.host_params(k, DTYPE, SIZES) for k in range(NETS)]
    out["course"] = (
        [sgd_step(_course.network(p, DTYPE, "cpu"), x, t, _course.LR) for p in course],
        [partial(_numpy_peer.course_step, dict(p), x, t, _course.LR) for p in course],
    )
    return out


def main() -> None:
    print(f"{'network':10s} {'xpnet':>9s} {'numpy':>9s} {'cost':>9s}  (us a step, median)")
    for name, (ours, hand) in networks().items():
        pairs = bench.SideBySide(ours, hand, BLOCK)
        for _ in range(PAIRS):
            pairs()
        times = [np.asarray(side) * 1e6 for side in pairs.times]
        cost = float(np.median(times[0] - times[1]))
        xpnet_us, numpy_us = (float(np.median(side)) for side in times)
        print(f"{name:10s} {xpnet_us:9.1f} {numpy_us:9.1f} {cost:9.1f}")


if __name__ == "__main__":
    main()
