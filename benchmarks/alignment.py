"""What the placement of the weights costs: xpnet's step with 64-byte-aligned parameters
(what ``backend.to_device`` gives on NumPy) against the same step with parameters at
16 or 48 bytes past a 64-byte boundary (half of what NumPy's own 16-byte-aligned
allocations give), side by side (``bench.SideBySide``), several networks of each::

    python -m benchmarks.alignment

The step suite's networks (``test_training_step.NETWORKS``) on mnist-5k batches,
float32, NumPy; median microseconds a step per placement and the median of the pairs'
ratios (aligned over not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import _cli
from benchmarks._frameworks import sgd_step
from benchmarks.test_training_step import DTYPE, NETWORKS, STEP_BATCHES
from xpnet import backend, bench
from xpnet.datasets import load_mnist

NETS = 4  # networks per placement, taken in turn
PAIRS = 80
BLOCK_S = 2e-3  # the least time of one block of steps


def placed(a: np.ndarray, offset: int) -> np.ndarray:
    """A copy of ``a`` whose data start ``offset`` bytes past a 64-byte boundary: a slice of
    an aligned array from ``backend.to_device``."""
    skip = offset // a.itemsize
    flat = backend.to_device(np.empty(a.size + skip, dtype=a.dtype), device="cpu")
    out = flat[skip:].reshape(a.shape)
    out[...] = a
    return out


def misaligned(net: Any, offset: int) -> Any:
    """``net`` with every parameter moved to ``offset`` bytes past a 64-byte boundary."""
    for name in list(net.params):
        layer, attr = net.params.slot(name)
        setattr(layer, attr, placed(getattr(layer, attr), offset))
    return net


def main() -> None:
    (x_all, t_all), _ = load_mnist(name="mnist-5k", one_hot_label=True, device="cpu")
    print(f"{'network':10s} {'batch':>5s} {'aligned':>9s} {'16/48':>9s} {'ratio':>6s}")
    for name, spec in NETWORKS.items():
        for batch in STEP_BATCHES:
            x, t = (np.asarray(a, dtype=DTYPE) for a in spec.targets(x_all[:batch], t_all[:batch]))
            lr = spec.lr(batch)
            aligned = [sgd_step(spec.make("cpu"), x, t, lr) for _ in range(NETS)]
            other = [
                sgd_step(misaligned(spec.make("cpu"), 16 if k % 2 == 0 else 48), x, t, lr)
                for k in range(NETS)
            ]
            block = bench.calls_per_block(aligned + other, BLOCK_S)
            pairs = bench.SideBySide(aligned, other, block)
            for _ in range(PAIRS):
                pairs()
            f = pairs.figures()
            print(
                f"{name:10s} {batch:5d} {f['first_s'] * 1e6:9.1f} {f['second_s'] * 1e6:9.1f} "
                f"{f['ratio_median']:6.3f}"
            )


def parse_args(argv: Sequence[str] | None = None) -> None:
    """The command line: no arguments; ``--help`` prints this module's description."""
    _cli.no_arguments("benchmarks.alignment", __doc__, argv)


if __name__ == "__main__":
    parse_args()
    main()
