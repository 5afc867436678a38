"""What an in-place SGD update of a weight matrix costs right after a multithreaded BLAS
product read that matrix: the course network's ``W1`` (784 x 100 float32) updated by
``W -= lr * g`` after ``x @ W`` (batch 100), against the same update after a product
that read another matrix of that shape, and after no product::

    python -m benchmarks.update_after_product

With more than one BLAS thread, the other threads' cores hold copies of the lines of
``W`` they read; the first write to each line waits for those copies to be dropped.
Run it with ``OPENBLAS_NUM_THREADS=1`` to see the update without that wait. Both
xpnet's step and the hand-written one update in place after such a product (the
book's ``params[key] -= lr * grad``, PyTorch's ``param.add_``), so the wait is in both
sides of the step suite's ratio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks import _cli
from xpnet import backend

STEPS = 2000
LR = 0.3


def update_time(W: np.ndarray, g: np.ndarray, before: Callable[[], Any]) -> float:
    """Median seconds of ``W -= LR * g``, each right after a call of ``before``."""
    times = []
    for _ in range(STEPS):
        before()
        start = time.perf_counter()
        W -= LR * g
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    rng = backend.host_rng(0)
    x = rng.random((100, 784), dtype=np.float32)
    W, other = (rng.standard_normal((784, 100), dtype=np.float32) for _ in range(2))
    g = 1e-6 * rng.standard_normal((784, 100), dtype=np.float32)  # W barely moves
    cases = {
        "after x @ W (the product read W)": lambda: np.dot(x, W),
        "after x @ V (it read another matrix)": lambda: np.dot(x, other),
        "after no product": lambda: None,
    }
    print(f"W -= {LR} * g on a {W.shape[0]}x{W.shape[1]} float32 W, median of {STEPS}:")
    for name, before in cases.items():
        print(f"  {name:38s} {update_time(W, g, before) * 1e6:6.1f} us")


def parse_args(argv: Sequence[str] | None = None) -> None:
    """The command line: no arguments; ``--help`` prints this module's description."""
    _cli.no_arguments("benchmarks.update_after_product", __doc__, argv)


if __name__ == "__main__":
    parse_args()
    main()
