"""Where a SimpleConvNet training step spends its time: per layer, forward and backward.

CPU time of this process (``time.process_time``), so that other jobs on a shared machine
inflate it less than wall time; run with one BLAS thread for a per-core figure, and the
same step in PyTorch eager with one thread as the reference::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.profile_convnet

Batch 100 of mnist-5k digits, float32, NumPy; SGD step (``net.gradient`` + update).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

import xpnet
from benchmarks import _cli
from xpnet.datasets import load_mnist
from xpnet.optim import SGD

ROUNDS = 30


def cpu_ms(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    """Median CPU milliseconds of ``fn`` over ``rounds`` calls (after two untimed ones)."""
    fn(), fn()
    times = []
    for _ in range(rounds):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return float(np.median(times)) * 1e3


def main() -> None:
    (x, t), _ = load_mnist(name="mnist-5k", flatten=False, device="cpu")
    x, t = x[:100], t[:100]
    net, opt = xpnet.SimpleConvNet(seed=0, device="cpu"), SGD(0.01)
    step_ms = cpu_ms(lambda: opt.update(net.params, net.gradient(x, t)))
    inputs = [x]
    for layer in net.layers:
        inputs.append(layer.forward(inputs[-1]))
    print(f"xpnet step: {step_ms:.2f} ms CPU (batch 100, float32)")
    for k, layer in enumerate(net.layers):
        forward = cpu_ms(lambda k=k, layer=layer: layer.forward(inputs[k]))
        dout = np.ones_like(inputs[k + 1])
        backward = cpu_ms(lambda layer=layer, dout=dout: layer.backward(dout))
        name = type(layer).__name__
        print(f"  {name:12s} forward {forward:6.2f} ms  backward {backward:6.2f} ms")
    loss = net.last_layer
    print(f"  {'loss':12s} forward {cpu_ms(lambda: loss.forward(inputs[-1], t)):6.2f} ms")
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
    from benchmarks._frameworks import host_params
    from benchmarks._torch_peer import TorchConvNet

    model = TorchConvNet(host_params(net), torch.device("cpu"), 0.01)
    xt, labels = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(t))
    print(f"torch eager step, 1 thread: {cpu_ms(lambda: model.step(xt, labels)):.2f} ms CPU")


def parse_args(argv: Sequence[str] | None = None) -> None:
    """The command line: no arguments; ``--help`` prints this module's description."""
    _cli.no_arguments("benchmarks.profile_convnet", __doc__, argv)


if __name__ == "__main__":
    parse_args()
    main()
