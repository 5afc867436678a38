"""How often ``check_gradients`` fails correct networks, and catches wrong gradients.

A sweep of 153 small networks (float64, or ``--dtype float32``), each checked by the
batched and the loop method: the book's TwoLayerNet (0.01 init), MultiLayerNet (ReLU,
sigmoid and tanh; He, Xavier and 0.01 inits; one to three hidden layers; BatchNorm,
Dropout and weight decay drawn at random), a sigmoid network under a binary cross-entropy
summed over its outputs, and the conv net (3 filters of 3x3) on 14x14 digits, at batches
of 1, 2, 10 and 100 (the conv net to 10), of random inputs or mnist-5k digits (shrunk to
7x7), three seeds. A correct network that fails is a false alarm; a wrong one (its first
bias's gradient, or for BatchNorm its gamma's, scaled by 1.01 or 1.5) that passes is a
miss, which it can only be where the error is below what a central difference resolves
(a gradient of about 0). Inconclusive checks, neither passed nor failed, are counted
apart::

    python -m benchmarks.tolerance_sweep                     # the defaults
    python -m benchmarks.tolerance_sweep --h 1e-4 --atol 1e-6  # other settings
    python -m benchmarks.tolerance_sweep --dtype float32
    python -m benchmarks.tolerance_sweep --method directional   # another method
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from benchmarks import _cli
from xpnet import (
    DirectionalReport,
    MultiLayerNet,
    Sequential,
    SimpleConvNet,
    TwoLayerNet,
    check_gradients,
)
from xpnet.backend import host_rng, namespace, to_device, to_numpy
from xpnet.datasets import load_mnist
from xpnet.layers import Affine, Sigmoid, SigmoidWithLoss

BATCHES = (1, 2, 10, 100)
SEEDS = (0, 1, 2)
FACTORS = (1.01, 1.5)
METHODS = ("batched", "loop")


def digits(side: int) -> np.ndarray:
    """mnist-5k's training digits averaged down to ``side`` x ``side`` (N, 1, side, side)."""
    (x, _), _ = load_mnist(name="mnist-5k", flatten=False, device="cpu")
    x = np.asarray(to_numpy(x), dtype=np.float64)
    f = 28 // side
    return x.reshape(len(x), 1, side, f, side, f).mean(axis=(3, 5))


def cases(xp: Any, dtype: str = "float64") -> Iterator[tuple[str, Any, Any, Any]]:
    """``(description, net, x, t)`` for every correct network of the sweep, in ``dtype``."""
    images = {7: digits(7), 14: digits(14)}
    draw = np.random.default_rng(0)  # the random architecture choices
    for seed in SEEDS:
        for batch in BATCHES:
            rng = np.random.default_rng(1000 + seed * 10 + batch)
            pick = rng.choice(len(images[7]), batch, replace=False)
            inputs = {
                "random": rng.standard_normal((batch, 49)),
                "mnist": images[7][pick].reshape(batch, 49),
            }
            labels = rng.integers(0, 5, batch)
            for data, x in inputs.items():
                yield (
                    f"TwoLayerNet 0.01 {data} b{batch} s{seed}",
                    TwoLayerNet(49, 10, 5, 0.01, dtype=dtype, seed=seed, xp=xp),
                    x,
                    labels,
                )
            for act in ("relu", "sigmoid", "tanh"):
                for init in ("he", "xavier", 0.01):
                    depth = int(draw.integers(1, 4))
                    bn, dropout = bool(draw.random() < 0.3), bool(draw.random() < 0.3)
                    decay = float(draw.choice([0.0, 0.0, 0.1, 1e-3]))
                    data = str(draw.choice(list(inputs)))
                    net = MultiLayerNet(
                        49, [8] * depth, 5, activation=act, weight_init=init,
                        weight_decay=decay, use_batchnorm=bn, use_dropout=dropout,
                        dtype=dtype, seed=seed, xp=xp,
                    )  # fmt: skip
                    what = f"{act} {init} {depth} hidden{' bn' * bn}{' dropout' * dropout}"
                    what = f"MultiLayerNet {what} wd {decay:g} {data} b{batch} s{seed}"
                    yield what, net, inputs[data], labels
            targets = (rng.random((batch, 4)) < 0.5).astype(np.float64)
            what = f"sigmoid BCE summed b{batch} s{seed}"
            yield what, bce_net(xp, seed, dtype), inputs["mnist"], targets
            if batch <= 10:
                conv = SimpleConvNet(
                    (1, 14, 14), {"filter_num": 3, "filter_size": 3}, 10, 5, 0.1,
                    dtype=dtype, seed=seed, xp=xp,
                )  # fmt: skip
                x = images[14][pick]
                yield f"SimpleConvNet 14x14 b{batch} s{seed}", conv, x, labels


def bce_net(xp: Any, seed: int, dtype: str) -> Sequential:
    """49-8-4 with a sigmoid hidden layer and binary cross-entropy summed over 4 outputs."""
    rng = host_rng(seed)
    arrays = [
        rng.standard_normal((49, 8)) / 7, rng.standard_normal(8) * 0.1,
        rng.standard_normal((8, 4)) / 3, rng.standard_normal(4) * 0.1,
    ]  # fmt: skip
    W1, b1, W2, b2 = (to_device(a, dtype=dtype, xp=xp) for a in arrays)
    return Sequential(
        [Affine(W1, b1, input_grad=False), Sigmoid(), Affine(W2, b2)],
        loss=SigmoidWithLoss(reduction="sum"),
    )


def with_gradient_scaled(net: Any, name: str, factor: float) -> Any:
    """``net`` whose ``gradient`` returns parameter ``name``'s scaled by ``factor``."""
    gradient = net.gradient

    def scaled(x: Any, t: Any) -> dict[str, Any]:
        grads = gradient(x, t)
        return {**grads, name: factor * grads[name]}

    net.gradient = scaled
    return net


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    xp = namespace("cpu")
    settings = {"h": args.h, "atol": args.atol, "rtol": args.rtol}
    false_alarms, unsure, checks, caught, inconclusive, wrong = [], 0, 0, 0, 0, 0
    start = time.perf_counter()
    for what, net, x, t in cases(xp, args.dtype):
        x = to_device(x, dtype=args.dtype, xp=xp)
        t = to_device(t, dtype=args.dtype if t.ndim == 2 else "int64", xp=xp)
        name = "gamma1" if "gamma1" in net.params else list(net.params)[1]  # b1's is 0 there
        for method in args.method or METHODS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # about networks without kink hooks
                report = check_gradients(net, x, t, method=method, **settings)
                checks += 1
                unsure += report.inconclusive  # neither passed nor failed
                if not report.passed and not report.inconclusive:
                    false_alarms.append(f"{method} {what}: {_failures(report)}")
                for factor in FACTORS:
                    wrong_net = with_gradient_scaled(net, name, factor)
                    wrong += 1
                    checked = check_gradients(
                        wrong_net, x, t, method=method, params=[name], **settings
                    )
                    inconclusive += checked.inconclusive  # neither caught nor passed
                    caught += not checked.passed and not checked.inconclusive
                    del wrong_net.gradient  # back to the class's
    given = ", ".join(f"{k}={v:g}" for k, v in settings.items() if v is not None)
    elapsed = time.perf_counter() - start
    print(f"check_gradients ({given or 'defaults'}), {args.dtype}, {elapsed:.0f} s:")
    print(f"  correct networks failed: {len(false_alarms)} of {checks} checks")
    print(f"  correct networks inconclusive: {unsure} of {checks} checks")
    print(f"  wrong gradients caught:  {caught} of {wrong} checks")
    print(f"  wrong gradients inconclusive: {inconclusive} of {wrong} checks")
    for line in false_alarms:
        print(f"  FAILED {line}")


def _failures(report: Any) -> str:
    """What failed in a report: its parameters' largest errors, or its directions'."""
    if isinstance(report, DirectionalReport):
        if report.fallback is not None:  # a direction disagreed, or none was compared
            failures = _failures(report.fallback) or "a derivative that is not finite"
            return f"element by element, {failures}"
        failed = [report.directions[i] for i in report.disagreeing]
        if not failed:
            return "a derivative that is not finite"
        return f"{len(failed)} directions, largest error {max(d.abs_error for d in failed):.1e}"
    failed = [c for c in report.params if not c.passed]
    return ", ".join(f"{c.name} {c.max_abs_error:.1e}" for c in failed)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``--h``, ``--atol``, ``--rtol`` (default: check_gradients' own), ``--dtype``,
    ``--method`` (repeated; default batched and loop)."""
    p = _cli.parser("benchmarks.tolerance_sweep", __doc__)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument(
        "--method",
        action="append",
        choices=("batched", "loop", "directional"),
        metavar="METHOD",
        help="batched, loop or directional (repeatable)",
    )
    p.add_argument("--h", type=_cli.number(float), default=None, help="check_gradients' h (> 0)")
    for name in ("atol", "rtol"):
        p.add_argument(
            f"--{name}", type=_cli.number(float, 0, or_equal=True), default=None,
            help=f"check_gradients' {name} (>= 0)",
        )  # fmt: skip
    return p.parse_args(argv)


if __name__ == "__main__":
    main()
