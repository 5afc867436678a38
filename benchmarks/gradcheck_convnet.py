"""The book's SimpleConvNet checked numerically, all 433,890 parameters, on 10 digits.

``check_gradients(SimpleConvNet(dtype="float64", seed=0), 10 mnist-5k digits)``: local
perturbations for the Affine layers after the pooling, the loop (with kink detection)
for the convolution's 780 parameters. Prints the report, the wall and CPU time and the
1-minute load average (other jobs on the machine inflate the wall time)::

    python -m benchmarks.gradcheck_convnet [--h 1e-6] [--samples 10]
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import xpnet
from benchmarks import _cli
from xpnet.datasets import load_mnist


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.parser("benchmarks.gradcheck_convnet", __doc__)
    parser.add_argument(
        "--h", type=_cli.number(float), default=None, help="central-difference step (> 0)"
    )
    parser.add_argument(
        "--samples", type=_cli.number(int), default=10, help="digits checked (default: 10)"
    )
    args = parser.parse_args(argv)
    (x, t), _ = load_mnist(name="mnist-5k", flatten=False, device="cpu")
    x, t = x[: args.samples, ...].astype("float64"), t[: args.samples]
    net = xpnet.SimpleConvNet(dtype="float64", seed=0, device="cpu")
    load, wall, cpu = os.getloadavg()[0], time.perf_counter(), time.process_time()
    report = xpnet.check_gradients(net, x, t, h=args.h)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(report)
    print(
        f"check_gradients: {wall:.1f} s wall, {cpu:.1f} s CPU, {args.samples} samples; "
        f"1-minute load average {load:.2f} before, {os.getloadavg()[0]:.2f} after, "
        f"on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
