"""How precise the step suite's ``xpnet/numpy`` is, and how much of it the driving takes:
several side-by-side measurements of one step (``test_training_step.side_by_side``),
each with networks and hand-written parameter sets of its own, all their pairs
interleaved in one process::

    python -m benchmarks.spread [network] [batch]     # default: course 100

Every measurement meets the same machine at the same moments; what differs is where
each one's arrays lie in memory. The spread of their medians is how far that alone
moves the ratio: a figure of the suite is known to about that much, and a target
closer to it than that cannot be shown in one run.

Beside xpnet's step (``SGD.update(net.params, net.gradient(x, t))``), the same number
of measurements time its layers alone (``step_overhead.layers_step``: the layers'
``forward`` and ``backward`` called one after the other, the parameters updated in
place by hand), the floor of what ``Sequential``, the optimizer and the parameter
mapping can be cut to, and, for the course network, xpnet's arithmetic written out in
one plain function (``_numpy_peer.course_step_in_xpnets_maths``, on the network's own
weights), the floor of what the layers can be cut to. On a real batch the Python
around the arithmetic costs more than on ``step_overhead``'s tiny network: the step's
arrays push the code and data it uses out of the caches.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from benchmarks import _cli, _numpy_peer
from benchmarks._frameworks import sgd_step
from benchmarks.step_overhead import layers_step
from benchmarks.test_training_step import DTYPE, NETWORKS, side_by_side
from xpnet.datasets import load_mnist

MEASUREMENTS = 4  # of each step
PAIRS = 200
STEPS = {"xpnet step": sgd_step, "layers alone": layers_step}


def course_maths_step(net: Any, x: np.ndarray, t: np.ndarray, lr: float) -> Any:
    """The course network's arithmetic as xpnet's layers do it, by hand, on ``net``'s weights."""
    return partial(_numpy_peer.course_step_in_xpnets_maths, dict(net.params), x, t, lr)


ARITHMETIC = {"course": course_maths_step}  # networks whose arithmetic is written out


def main(network: str = "course", batch: int = 100) -> None:
    spec = NETWORKS[network]
    (x_all, t_all), _ = load_mnist(name="mnist-5k", one_hot_label=True, device="cpu")
    x, t = (np.asarray(a, dtype=DTYPE) for a in spec.targets(x_all[:batch], t_all[:batch]))
    steps = dict(STEPS)
    if network in ARITHMETIC:
        steps["arithmetic only"] = ARITHMETIC[network]
    runs = {
        name: [side_by_side(spec, x, t, step) for _ in range(MEASUREMENTS)]
        for name, step in steps.items()
    }
    for _ in range(PAIRS):
        for measurements in runs.values():
            for pairs in measurements:
                pairs()
    print(f"{network} batch {batch}, xpnet/numpy: {MEASUREMENTS} measurements of {PAIRS} pairs")
    for name, measurements in runs.items():
        medians = [pairs.figures()["ratio_median"] for pairs in measurements]
        ratios = np.concatenate([np.divide(*pairs.times) for pairs in measurements])
        step_us = np.median(np.concatenate([pairs.times[0] for pairs in measurements])) * 1e6
        print(
            f"  {name:15s} {np.median(ratios):.3f} over all pairs; medians "
            f"{', '.join(f'{m:.3f}' for m in medians)}; {step_us:.1f} us a step"
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: ``[network] [batch]``; ``--help`` prints this module's description."""
    return _cli.network_and_batch("benchmarks.spread", __doc__, NETWORKS, argv)


if __name__ == "__main__":
    args = parse_args()
    main(args.network, args.batch)
