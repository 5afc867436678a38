"""One SGD step in float32, xpnet against hand-written NumPy and PyTorch, and epochs.

- ``step``: ``net.gradient(x, t)`` then ``SGD(lr).update(net.params, grads)`` on a
  fixed batch of 1, 100 or 1000 samples already on the device, for two networks: the
  book's ``TwoLayerNet(784, 50, 10)`` (lr 0.1) and the course notes' 784-100-10 sigmoid
  network built with ``xpnet.Sequential`` (``benchmarks/_course.py``; lr 0.3 / batch:
  its loss is summed over the samples, so this is the per-sample step's size). Peers,
  started from the same weights: ``hand-numpy``, the same step written by hand in plain
  NumPy (``benchmarks/_numpy_peer.py``, the abstraction's floor; CPU only), and the same
  MLP in PyTorch eager mode with autograd and a hand-written in-place update (and, on
  CUDA, that step replayed from a CUDA graph);
- ``epoch``: shuffled mini-batches of 100 over the training set (xpnet's
  ``Trainer.train_epoch`` and the same loop in PyTorch); samples per second. The quick
  mode times part of an epoch and extrapolates (marked in the summary).

Each xpnet benchmark runs right next to its peers (``[two-layer-batch100-xpnet]``,
``[two-layer-batch100-hand-numpy]``, ...), so a ratio compares timings taken seconds
apart, not minutes apart on a machine whose load may have changed. PyTorch is optional:
its benchmarks are skipped when it is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from benchmarks import _course, _numpy_peer
from benchmarks._frameworks import (
    framework_info,
    host_params,
    require_host,
    sgd_step,
    step_array_ops,
    torch_peer,
)
from xpnet import backend, bench
from xpnet.networks import TwoLayerNet
from xpnet.optim import SGD

STEP_BATCHES = [1, 100, 1000]
FRAMEWORKS = ["xpnet", "hand-numpy", "torch-eager", "torch-cudagraph"]
EPOCH_BATCH = 100
DTYPE = "float32"
LR = 0.1
SEED = 0


def make_net(device: str | None = None) -> TwoLayerNet:
    """The book's network (init std 0.01), seeded: the same weights on every device."""
    return TwoLayerNet(784, 50, 10, dtype=DTYPE, seed=SEED, device=device)


@dataclass(frozen=True)
class StepNetwork:
    """One network of the step suite, as each side builds it."""

    name: str
    make: Callable[[str | None], Any]  # device -> the seeded xpnet network
    lr: Callable[[int], float]  # batch -> learning rate
    # (pixels in [0, 1], one-hot) -> (inputs, targets) as this network trains on them
    targets: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    numpy_step: Callable[..., Any]  # (params, x, t, lr), updates params in place
    torch_kwargs: Callable[[Any], dict[str, Any]]  # peer module -> TorchMLP keywords
    torch_labels: bool  # the PyTorch loss takes integer labels (else target rows)


NETWORKS = {
    "two-layer": StepNetwork(
        bench.NETWORK,
        make_net,
        lambda batch: LR,
        lambda x, t: (x, t),
        _numpy_peer.two_layer_step,
        lambda peer: {},
        torch_labels=True,
    ),
    "course": StepNetwork(
        _course.NETWORK,
        lambda device: _course.network(_course.host_params(SEED), DTYPE, device),
        lambda batch: _course.LR / batch,
        _course.inputs_and_targets,
        _numpy_peer.course_step,
        lambda peer: peer.COURSE,
        torch_labels=False,
    ),
}


def batch_of(data: bench.BenchData, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``batch`` training samples (host arrays; one-hot targets)."""
    if batch > data.x_train.shape[0]:
        pytest.skip(f"{data.name} has only {data.x_train.shape[0]} training samples")
    return data.x_train[:batch], data.t_train[:batch]


# --------------------------------------------------------------------------- one step


def xpnet_step(spec: StepNetwork, x_host: np.ndarray, t_host: np.ndarray) -> Callable[[], Any]:
    x, t = (backend.to_device(a, dtype=DTYPE) for a in (x_host, t_host))
    return sgd_step(spec.make(None), x, t, spec.lr(x_host.shape[0]))


def step_operations(spec: StepNetwork, x_host: np.ndarray, t_host: np.ndarray) -> int:
    """Array operations in one xpnet step, counted on NumPy: the same on every backend."""
    x, t = (np.asarray(a, dtype=DTYPE) for a in (x_host, t_host))
    return step_array_ops(spec.make("cpu"), x, t, spec.lr(x_host.shape[0]))


def numpy_step(spec: StepNetwork, x_host: np.ndarray, t_host: np.ndarray) -> Callable[[], Any]:
    params = host_params(spec.make("cpu"))
    x, t = (np.asarray(a, dtype=DTYPE) for a in (x_host, t_host))
    lr = spec.lr(x_host.shape[0])

    def step() -> Any:
        spec.numpy_step(params, x, t, lr)
        return params

    return step


def torch_step(
    peer: Any,
    spec: StepNetwork,
    framework: str,
    device_name: str,
    x_host: np.ndarray,
    t_host: np.ndarray,
) -> Callable[[], Any]:
    device = peer.torch_device(device_name)
    params = host_params(spec.make("cpu"))
    model = peer.TorchMLP(params, device, spec.lr(x_host.shape[0]), **spec.torch_kwargs(peer))
    to_tensors = peer.as_tensors if spec.torch_labels else peer.as_float_tensors
    x, target = to_tensors(x_host, t_host, device)
    if framework == "torch-cudagraph":
        return peer.cuda_graph_step(model, x, target)
    return lambda: model.step(x, target)


def time_step(
    timed: bench.Timed, fn: Callable[[], Any], kind: str, network: str, batch: int, **info: Any
) -> None:
    """Time ``fn`` as one SGD step of ``network`` at ``batch``, in that step's group."""
    spec = NETWORKS[network]
    timed.benchmark.group = f"SGD step {network} batch {batch}"
    timed(fn, kind=kind, network=spec.name, batch=batch, dtype=DTYPE, lr=spec.lr(batch), **info)


STEP_CASES = [(n, b, f) for n in NETWORKS for b in STEP_BATCHES for f in FRAMEWORKS]


@pytest.mark.parametrize(
    ("network", "batch", "framework"),
    STEP_CASES,
    ids=[f"{n}-batch{b}-{f}" for n, b, f in STEP_CASES],
)
def test_step(
    timed: bench.Timed,
    bench_data: bench.BenchData,
    run_device: tuple,
    run_info: dict,
    network: str,
    batch: int,
    framework: str,
) -> None:
    spec = NETWORKS[network]
    torch, counted = None, {}
    if framework == "hand-numpy":
        require_host(run_device)
    elif framework != "xpnet":
        torch, peer = torch_peer(run_device, framework)
    x_host, t_host = spec.targets(*batch_of(bench_data, batch))
    if framework == "xpnet":
        step = xpnet_step(spec, x_host, t_host)
        counted = {"array_ops": step_operations(spec, x_host, t_host)}
    elif framework == "hand-numpy":
        step = numpy_step(spec, x_host, t_host)
    else:
        step = torch_step(peer, spec, framework, run_device[2], x_host, t_host)
    time_step(
        timed, step, "step", network, batch, **counted, **framework_info(framework, run_info, torch)
    )


SIDE_BY_SIDE_BLOCK_S = 1e-3  # the least time of one side's block of steps
SIDE_BY_SIDE_NETS = 4  # networks (and hand-written parameter sets) per side, taken in turn
SIDE_BY_SIDE_CASES = [(n, b) for n in NETWORKS for b in STEP_BATCHES]


def side_by_side(
    spec: StepNetwork,
    x: np.ndarray,
    t: np.ndarray,
    step: Callable[..., Callable[[], Any]] = sgd_step,
) -> bench.SideBySide:
    """xpnet's step and the hand-written one on the batch ``x``, ``t`` (NumPy arrays of
    ``DTYPE``, read by both sides), ``SIDE_BY_SIDE_NETS`` fresh networks a side.
    ``step(net, x, t, lr)`` makes xpnet's side (default :func:`sgd_step`)."""
    lr = spec.lr(x.shape[0])
    ours = [step(spec.make(None), x, t, lr) for _ in range(SIDE_BY_SIDE_NETS)]
    hand = [numpy_step(spec, x, t) for _ in range(SIDE_BY_SIDE_NETS)]
    return bench.SideBySide(ours, hand, bench.calls_per_block(ours + hand, SIDE_BY_SIDE_BLOCK_S))


@pytest.mark.parametrize(
    ("network", "batch"),
    SIDE_BY_SIDE_CASES,
    ids=[f"{n}-batch{b}" for n, b in SIDE_BY_SIDE_CASES],
)
def test_step_side_by_side(
    timed: bench.Timed,
    bench_data: bench.BenchData,
    run_device: tuple,
    run_info: dict,
    network: str,
    batch: int,
) -> None:
    """xpnet's step against the hand-written one, in alternating blocks of steps.

    The summary's ``xpnet/numpy`` is the median of the pairs' ratios: each pair is a
    block of xpnet steps and a block of hand-written steps, a millisecond or more each,
    so the machine's load is nearly the same for both sides of a ratio. Both sides read
    the same NumPy arrays (xpnet takes them as they are on the CPU). Each side has
    ``SIDE_BY_SIDE_NETS`` networks, used in turn: where the weights lie in memory moves
    a step's time by a few per cent (``benchmarks/alignment.py``), and xpnet aligns its
    weights while the hand-written step has NumPy's placement, which varies.
    """
    require_host(run_device)
    spec = NETWORKS[network]
    # One copy of the batch for both sides: where an array lies in memory moves a step's
    # time by a few per cent here, and that is no part of what xpnet costs.
    x, t = (np.asarray(a, dtype=DTYPE) for a in spec.targets(*batch_of(bench_data, batch)))
    pairs = side_by_side(spec, x, t)
    time_step(
        timed, pairs, "step_side_by_side", network, batch,
        **framework_info("xpnet", run_info), peer="hand-numpy",
    )  # fmt: skip
    timed.benchmark.extra_info.update(pairs.figures())


# --------------------------------------------------------------------------- epochs


def epoch_samples(data: bench.BenchData, mode: bench.BenchMode) -> tuple[int, int]:
    """(samples timed per round, samples in a whole epoch), whole batches only."""
    per_epoch = data.x_train.shape[0] // EPOCH_BATCH * EPOCH_BATCH
    if mode.epoch_batches is None:
        return per_epoch, per_epoch
    return min(per_epoch, mode.epoch_batches * EPOCH_BATCH), per_epoch


def xpnet_epoch(data: bench.BenchData, n: int) -> Callable[[], Any]:
    """One pass of ``Trainer.train_epoch`` over the first ``n`` samples, freshly shuffled."""
    from xpnet.training import Trainer

    x = backend.to_device(data.x_train[:n], dtype=DTYPE)
    t = backend.to_device(data.t_train[:n], dtype=DTYPE)
    net = make_net()
    trainer = Trainer(
        net, SGD(LR), x, t, x[:1, ...], t[:1, ...], epochs=1, batch_size=EPOCH_BATCH, progress=False
    )
    rng = backend.host_rng(SEED)

    def epoch() -> Any:
        trainer.train_epoch(backend.to_device(rng.permutation(n), dtype="int64"))
        return net.params

    return epoch


def torch_epoch(
    torch: Any, peer: Any, device_name: str, data: bench.BenchData, n: int
) -> Callable[[], Any]:
    """The same loop in PyTorch: shuffle on the host, gather on the device, step."""
    device = peer.torch_device(device_name)
    model = peer.TorchMLP(host_params(make_net("cpu")), device, LR)
    x, labels = peer.as_tensors(data.x_train[:n], data.t_train[:n], device)
    rng = backend.host_rng(SEED)

    def epoch() -> Any:
        order = torch.as_tensor(rng.permutation(n), device=device)
        for start in range(0, n, EPOCH_BATCH):
            idx = order[start : start + EPOCH_BATCH]
            model.step(x.index_select(0, idx), labels.index_select(0, idx))
        return model.params

    return epoch


@pytest.mark.parametrize("framework", ["xpnet", "torch-eager"])
def test_epoch(
    timed: bench.Timed,
    bench_data: bench.BenchData,
    bench_mode: bench.BenchMode,
    run_device: tuple,
    run_info: dict,
    framework: str,
) -> None:
    n, total = epoch_samples(bench_data, bench_mode)
    torch = None
    if framework == "xpnet":
        epoch = xpnet_epoch(bench_data, n)
    else:
        torch, peer = torch_peer(run_device, framework)
        epoch = torch_epoch(torch, peer, run_device[2], bench_data, n)
    timed.benchmark.group = "epoch"
    timed(
        epoch,
        kind="epoch",
        batch=EPOCH_BATCH,
        dtype=DTYPE,
        samples_timed=n,
        samples_per_epoch=total,
        **framework_info(framework, run_info, torch),
    )
