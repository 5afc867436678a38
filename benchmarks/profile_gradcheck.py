"""Where a batched gradient check's time goes: TwoLayerNet(784, 50, 10), float64, batch 100.

CPU time of this process (``time.process_time``, every thread's, so that other jobs on
a shared machine inflate it less than wall time), the best of ``--rounds`` calls after
one untimed, of ``net_numerical_gradient(method="batched")`` and of ``check_gradients``
on the first 100 mnist-5k training digits; ``--profile`` adds cProfile's functions by
their own time for one call of each (on a CPU the chunks run on worker threads, which
cProfile does not follow: ``taskset -c 0`` runs them on this one). To compare two
commits, run it alternately from two folders (``git archive COMMIT | tar -x -C DIR``,
the script copied into the older one): each folder's ``xpnet`` is the one imported::

    python -m benchmarks.profile_gradcheck [--rounds 5] [--profile]
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections.abc import Callable, Sequence

import numpy as np

from benchmarks import _cli
from xpnet import gradcheck
from xpnet.datasets import load_mnist
from xpnet.networks import TwoLayerNet

BATCH = 100
PROFILE_LINES = 12


def best_cpu_ms(fn: Callable[[], object], rounds: int) -> float:
    """The least CPU milliseconds of ``fn`` over ``rounds`` calls (after one untimed)."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times) * 1e3


def profile(fn: Callable[[], object]) -> str:
    """cProfile's functions by their own time for one call of ``fn``, the first lines."""
    profiler = cProfile.Profile()
    profiler.runcall(fn)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(PROFILE_LINES)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.parser("benchmarks.profile_gradcheck", __doc__)
    parser.add_argument(
        "--rounds", type=_cli.number(int), default=5, help="timed calls of each (default: 5)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one call of each")
    args = parser.parse_args(argv)
    (x, t), _ = load_mnist(name="mnist-5k", device="cpu")
    x, t = np.asarray(x[:BATCH], dtype=np.float64), t[:BATCH]
    net = TwoLayerNet(784, 50, 10, dtype="float64", seed=0)
    calls = {
        "net_numerical_gradient": lambda: gradcheck.net_numerical_gradient(
            net, x, t, method="batched"
        ),
        "check_gradients": lambda: gradcheck.check_gradients(net, x, t),
    }
    for name, fn in calls.items():
        print(f"{name}: {best_cpu_ms(fn, args.rounds):.1f} ms CPU (best of {args.rounds})")
        if args.profile:
            print(profile(fn))


if __name__ == "__main__":
    main()
