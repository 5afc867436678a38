"""What the element-wise functions of the course network's step cost on this machine, in
nanoseconds an element, float32: those xpnet's layers call (``exp`` for the sigmoid and
the loss's softplus, ``log1p`` for the softplus) beside those the hand-written step calls
(``exp`` for its sigmoid, ``log`` for its loss), ``tanh`` (xpnet's sigmoid until
2026-12-02: ``0.5 * (1 + tanh(x / 2))``), and a multiply for scale::

    python -m benchmarks.elementwise

NumPy's loops for these functions differ from CPU to CPU: on a Zen 3 VM without AVX-512
(docs/benchmarks.md) ``tanh`` and ``log1p`` took 1.7x and 4-7x as long as ``exp`` and
``log``, and the course network's arithmetic (``spread.py``'s "arithmetic only") cost
more than the hand-written step's, before any Python around it. The sizes are the
step's arrays at batch 1000: the hidden layer (1000 x 100) and the outputs (1000 x 10).
"""

from __future__ import annotations

import timeit
from collections.abc import Callable, Sequence

import numpy as np

from benchmarks import _cli
from xpnet import backend

SIZES = {"hidden, batch 1000": 100_000, "outputs, batch 1000": 10_000}
FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exp (both sigmoids)": np.exp,
    "log1p (xpnet's loss)": np.log1p,
    "tanh (xpnet's old sigmoid)": np.tanh,
    "log (hand-written loss)": np.log,
    "multiply (for scale)": lambda a: a * a,
}
CALLS = 100
REPEATS = 7


def ns_per_element(function: Callable[[np.ndarray], np.ndarray], size: int) -> float:
    """The least time of ``REPEATS`` runs of ``CALLS`` calls of ``function`` on ``size``
    float32 numbers in (0.1, 1.1), where every function here is finite, per element."""
    a = (np.random.default_rng(0).random(size) + 0.1).astype(np.float32)
    best = min(timeit.repeat(lambda: function(a), number=CALLS, repeat=REPEATS))
    return best / CALLS / size * 1e9


def main() -> None:
    print(f"CPU: {backend.cpu()}; NumPy {np.__version__}")
    sizes = "; ".join(f"{name} = {size:,}" for name, size in SIZES.items())
    print(f"ns an element, float32 (least of {REPEATS} runs of {CALLS} calls); elements: {sizes}")
    width = max(map(len, FUNCTIONS))
    print(f"{'':{width}}  " + "  ".join(f"{k:>20}" for k in SIZES))
    for name, function in FUNCTIONS.items():
        cells = "  ".join(f"{ns_per_element(function, size):20.2f}" for size in SIZES.values())
        print(f"{name:{width}}  {cells}")


def parse_args(argv: Sequence[str] | None = None) -> None:
    """The command line: no arguments; ``--help`` prints this module's description."""
    _cli.no_arguments("benchmarks.elementwise", __doc__, argv)


if __name__ == "__main__":
    parse_args()
    main()
