"""What the placement of the weights costs: xpnet's step with 64-byte-aligned parameters
(what ``backend.to_device`` gives on NumPy) against the same step with parameters at
16 or 48 bytes past a 64-byte boundary (half of what NumPy's own 16-byte-aligned
allocations give), in alternating blocks, several networks of each::

    python -m benchmarks.alignment

The step suite's networks (``test_training_step.NETWORKS``) on mnist-5k batches,
float32, NumPy; median microseconds a step per placement and their ratio.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks._frameworks import sgd_step
from benchmarks.test_training_step import DTYPE, NETWORKS, STEP_BATCHES
from xpnet import backend
from xpnet.datasets import load_mnist

NETS = 4  # networks per placement, made in turn
ROUNDS = 40  # alternating rounds; each times a block of steps of every network
BLOCK_S = 2e-3  # the least time of one block


def placed(a: np.ndarray, offset: int) -> np.ndarray:
    """A copy of ``a`` whose data start ``offset`` bytes past a 64-byte boundary."""
    buffer = np.empty(a.nbytes + 2 * backend.ALIGNMENT, dtype=np.uint8)
    start = -buffer.ctypes.data % backend.ALIGNMENT + offset
    out = buffer[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def misaligned(net: Any, offset: int) -> Any:
    """``net`` with every parameter moved to ``offset`` bytes past a 64-byte boundary."""
    for name in list(net.params):
        layer, attr = net.params.slot(name)
        setattr(layer, attr, placed(getattr(layer, attr), offset))
    return net


def median_us(steps: dict[str, Callable[[], Any]], block: int) -> dict[str, float]:
    """Median microseconds a step of each callable, timed in alternating order."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for k in range(ROUNDS):
        for name in order if k % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            for _ in range(block):
                steps[name]()
            times[name].append((time.perf_counter() - start) / block * 1e6)
    return {name: float(np.median(t)) for name, t in times.items()}


def main() -> None:
    (x_all, t_all), _ = load_mnist(name="mnist-5k", one_hot_label=True, device="cpu")
    print(f"{'network':10s} {'batch':>5s} {'aligned':>9s} {'16/48':>9s} {'ratio':>6s}")
    for name, spec in NETWORKS.items():
        for batch in STEP_BATCHES:
            x, t = (np.asarray(a, dtype=DTYPE) for a in spec.targets(x_all[:batch], t_all[:batch]))
            lr, steps = spec.lr(batch), {}
            for k in range(NETS):
                steps[f"aligned{k}"] = sgd_step(spec.make("cpu"), x, t, lr)
                net = misaligned(spec.make("cpu"), 16 if k % 2 == 0 else 48)
                steps[f"misaligned{k}"] = sgd_step(net, x, t, lr)
            start = time.perf_counter()
            for step in steps.values():
                step()
            block = max(1, round(BLOCK_S / ((time.perf_counter() - start) / len(steps))))
            us = median_us(steps, block)
            aligned = float(np.median([us[f"aligned{k}"] for k in range(NETS)]))
            other = float(np.median([us[f"misaligned{k}"] for k in range(NETS)]))
            print(f"{name:10s} {batch:5d} {aligned:9.1f} {other:9.1f} {aligned / other:6.3f}")


if __name__ == "__main__":
    main()
