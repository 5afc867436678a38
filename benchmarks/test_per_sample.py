"""Per-sample training of the course network: one sample a step, on real data.

The course notes train their 784-100-10 sigmoid network one sample per SGD step, 50,000
steps in a run. Here each framework trains that network (``benchmarks/_course.py``: the
same starting weights, float32, lr 0.3, binary cross-entropy summed over the outputs) on
the same samples in the same order, one at a time. A round is ``per_sample_steps``
steps: 50,000 in full mode, 2,000 in quick mode, where the summary extrapolates to
50,000 (marked ``*``). Three rounds, each continuing the training; the median counts,
so a first round that pays one-time costs does not.

Data: Fashion-MNIST's 60,000 training samples where they are on disk (Debian's
``dataset-fashion-mnist``; never downloaded), in file order; else mnist-5k's 4,000,
cycled. Inputs ``x / 255 * 0.99 + 0.01``, targets 0.01 / 0.99, all scaled before the
timing (the notes parse a CSV line per step; no side does that here).

- ``xpnet``: ``Trainer.train_epoch`` with ``batch_size=1``, what ``xpnet train --model
  course`` runs: per step the sample is gathered on the device (``take``), then
  ``net.gradient`` and ``SGD.update``;
- ``hand-numpy``: the notes' ``train()`` as a plain NumPy function called on each sample
  row (``_numpy_peer.course_train``), with the output delta ``y - t`` of the binary
  cross-entropy the notes state, NOT their ``(y - t) * y * (1 - y)``, so that it does the
  same maths as xpnet; it computes no loss value (xpnet's ``net.gradient`` does);
- ``torch-eager``: the same network in PyTorch (``_torch_peer.TorchMLP``), one ``step``
  (autograd and an in-place update) per sample row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from benchmarks import _course, _numpy_peer
from benchmarks._frameworks import framework_info, require_host, torch_peer
from xpnet import backend, bench
from xpnet.optim import SGD
from xpnet.training import Trainer

FRAMEWORKS = ["xpnet", "hand-numpy", "torch-eager"]
ROUNDS = 3
DTYPE = "float32"
SEED = 0
METHODS = {
    "xpnet": "Trainer.train_epoch with batch_size=1 (a take, net.gradient, SGD.update a step)",
    "hand-numpy": "the course notes' train() as a plain NumPy function, one sample a call, "
    "with the output delta y - t of the BCE they state (not their (y - t) * y * (1 - y))",
    "torch-eager": "TorchMLP.step (autograd, in-place update) on one sample row a call",
}


@pytest.fixture(scope="module")
def per_sample_data() -> bench.BenchData:
    """Fashion-MNIST where on disk, else mnist-5k (host arrays)."""
    return bench.choose_per_sample_data()


def samples(data: bench.BenchData, steps: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``steps`` samples in file order (cycled when there are fewer), scaled as the notes do."""
    n = data.x_train.shape[0]
    index = np.arange(steps) % n
    x, t = _course.inputs_and_targets(data.x_train[index], data.t_train[index])
    order = f"the first {steps:,} in file order" if steps <= n else f"cycled to {steps:,} steps"
    return x.astype(DTYPE), t.astype(DTYPE), f"{data.describe()}; {order}"


def xpnet_round(x_host: np.ndarray, t_host: np.ndarray) -> Callable[[], Any]:
    x, t = (backend.to_device(a, dtype=DTYPE) for a in (x_host, t_host))
    net = _course.network(_course.host_params(SEED), DTYPE)
    trainer = Trainer(
        net, SGD(_course.LR), x, t, x[:1, ...], t[:1, ...], epochs=1, batch_size=1, progress=False
    )
    order = backend.to_device(np.arange(x_host.shape[0]), dtype="int64")

    def train_round() -> Any:
        trainer.train_epoch(order)
        return net.params

    return train_round


def numpy_round(x: np.ndarray, t: np.ndarray) -> Callable[[], Any]:
    params = _course.host_params(SEED, DTYPE)

    def train_round() -> Any:
        # The notes' 1 / (1 + exp(-z)) overflows for z < -88 in float32 (a saturated hidden
        # unit) and still gives the right 0: NumPy's warning is silenced for the round.
        with np.errstate(over="ignore"):
            for i in range(x.shape[0]):
                _numpy_peer.course_train(params, x[i : i + 1], t[i : i + 1], _course.LR)
        return params

    return train_round


def torch_round(peer: Any, device_name: str, x_host: np.ndarray, t_host: np.ndarray) -> Any:
    device = peer.torch_device(device_name)
    model = peer.TorchMLP(_course.host_params(SEED, DTYPE), device, _course.LR, **peer.COURSE)
    x, t = peer.as_float_tensors(x_host, t_host, device)

    def train_round() -> Any:
        for i in range(x.shape[0]):
            model.step(x[i : i + 1], t[i : i + 1])
        return model.params

    return train_round


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_per_sample(
    timed: bench.Timed,
    per_sample_data: bench.BenchData,
    bench_mode: bench.BenchMode,
    run_device: tuple,
    run_info: dict,
    framework: str,
) -> None:
    steps = bench_mode.per_sample_steps
    torch = None
    if framework == "hand-numpy":
        require_host(run_device)
    elif framework != "xpnet":
        torch, peer = torch_peer(run_device, framework)
    x, t, description = samples(per_sample_data, steps)
    if framework == "xpnet":
        train_round = xpnet_round(x, t)
    elif framework == "hand-numpy":
        train_round = numpy_round(x, t)
    else:
        train_round = torch_round(peer, run_device[2], x, t)
    timed.benchmark.group = "per-sample training"
    timed(
        train_round,
        rounds=ROUNDS,
        warmup=0,
        kind="per_sample",
        network=_course.NETWORK,
        batch=1,
        dtype=DTYPE,
        lr=_course.LR,
        steps_timed=steps,
        steps_target=bench.PER_SAMPLE_STEPS,
        method=METHODS[framework],
        data=per_sample_data.name,
        data_description=description,
        **framework_info(framework, run_info, torch),
    )
