"""One SGD step of TwoLayerNet(784, 50, 10) in float32, xpnet against PyTorch, and epochs.

- ``step``: ``net.gradient(x, t)`` then ``SGD(lr).update(net.params, grads)`` on a
  fixed batch of 1, 100 or 1000 samples already on the device; the peer is the same
  MLP, started from the same weights, in PyTorch eager mode with autograd and a
  hand-written in-place update (and, on CUDA, that step replayed from a CUDA graph);
- ``epoch``: shuffled mini-batches of 100 over the training set (xpnet's
  ``Trainer.train_epoch`` and the PyTorch loop); samples per second. The quick mode
  times part of an epoch and extrapolates (marked in the summary).

PyTorch is optional: its benchmarks are skipped when it is not installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from xpnet import backend, bench
from xpnet.networks import TwoLayerNet
from xpnet.optim import SGD

STEP_BATCHES = [1, 100, 1000]
EPOCH_BATCH = 100
DTYPE = "float32"
LR = 0.1
SEED = 0


def make_net(device: str | None = None) -> TwoLayerNet:
    return TwoLayerNet(784, 50, 10, dtype=DTYPE, seed=SEED, device=device)


def batch_of(data: bench.BenchData, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``batch`` training samples (host arrays; one-hot targets)."""
    if batch > data.x_train.shape[0]:
        pytest.skip(f"{data.name} has only {data.x_train.shape[0]} training samples")
    return data.x_train[:batch], data.t_train[:batch]


def step_info(batch: int, framework: str, backend_name: str, device: str) -> dict[str, Any]:
    return {
        "kind": "step",
        "framework": framework,
        "backend": backend_name,
        "device": device,
        "batch": batch,
        "dtype": DTYPE,
        "lr": LR,
    }


def torch_peer(run_device: tuple[Any, Any, str]) -> tuple[Any, Any]:
    """``(torch, the peer module)``; skips when PyTorch is missing or lacks the device."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (peer benchmarks)")
    from benchmarks import _torch_peer

    device = run_device[2]
    if device.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"this PyTorch build has no CUDA (torch {torch.__version__})")
    return torch, _torch_peer


# --------------------------------------------------------------------------- one step


@pytest.mark.parametrize("batch", STEP_BATCHES, ids=lambda b: f"batch{b}")
def test_step_xpnet(
    timed: bench.Timed, bench_data: bench.BenchData, run_info: dict, batch: int
) -> None:
    x_host, t_host = batch_of(bench_data, batch)
    net = make_net()
    x = backend.to_device(x_host, dtype=DTYPE)
    t = backend.to_device(t_host, dtype=DTYPE)
    opt = SGD(LR)

    def step() -> Any:
        opt.update(net.params, net.gradient(x, t))
        return net.params

    timed.benchmark.group = f"SGD step batch {batch}"
    timed(step, **step_info(batch, "xpnet", run_info["run_backend"], run_info["run_device"]))


# --------------------------------------------------------------------------- epochs


def epoch_samples(data: bench.BenchData, mode: bench.BenchMode) -> tuple[int, int]:
    """(samples timed per round, samples in a whole epoch), whole batches only."""
    per_epoch = data.x_train.shape[0] // EPOCH_BATCH * EPOCH_BATCH
    if mode.epoch_batches is None:
        return per_epoch, per_epoch
    return min(per_epoch, mode.epoch_batches * EPOCH_BATCH), per_epoch


def epoch_info(framework: str, backend_name: str, device: str, timed_n: int, total: int) -> dict:
    return {
        "kind": "epoch",
        "framework": framework,
        "backend": backend_name,
        "device": device,
        "batch": EPOCH_BATCH,
        "dtype": DTYPE,
        "samples_timed": timed_n,
        "samples_per_epoch": total,
    }


def test_epoch_xpnet(
    timed: bench.Timed, bench_data: bench.BenchData, bench_mode: bench.BenchMode, run_info: dict
) -> None:
    from xpnet.training import Trainer

    n, total = epoch_samples(bench_data, bench_mode)
    x = backend.to_device(bench_data.x_train[:n], dtype=DTYPE)
    t = backend.to_device(bench_data.t_train[:n], dtype=DTYPE)
    net = make_net()
    trainer = Trainer(
        net, SGD(LR), x, t, x[:1], t[:1], epochs=1, batch_size=EPOCH_BATCH, progress=False
    )
    xp = backend.namespace_of(x)
    rng = backend.host_rng(SEED)

    def epoch() -> Any:
        order = backend.to_device(rng.permutation(n), dtype="int64")
        trainer.train_epoch(order)
        return net.params

    timed.benchmark.group = "epoch"
    timed(
        epoch,
        **epoch_info("xpnet", run_info["run_backend"], run_info["run_device"], n, total),
        namespace=xp.__name__,
    )


# --------------------------------------------------------------------------- PyTorch peers
# (after the xpnet benchmarks: PyTorch's idle OpenMP threads must not slow NumPy's)


@pytest.mark.parametrize("batch", STEP_BATCHES, ids=lambda b: f"batch{b}")
def test_step_torch_eager(
    timed: bench.Timed, bench_data: bench.BenchData, run_device: tuple, batch: int
) -> None:
    torch, peer = torch_peer(run_device)
    x_host, t_host = batch_of(bench_data, batch)
    device = peer.torch_device(run_device[2])
    model = peer.TorchMLP(peer.host_params(make_net("cpu")), device, LR)
    x, labels = peer.as_tensors(x_host, t_host, device)
    timed.benchmark.group = f"SGD step batch {batch}"
    timed(
        lambda: model.step(x, labels),
        **step_info(batch, "torch-eager", "torch", str(device)),
        torch_version=torch.__version__,
        torch_threads=torch.get_num_threads(),
    )


@pytest.mark.parametrize("batch", STEP_BATCHES, ids=lambda b: f"batch{b}")
def test_step_torch_cudagraph(
    timed: bench.Timed, bench_data: bench.BenchData, run_device: tuple, batch: int
) -> None:
    if not run_device[2].startswith("cuda"):
        pytest.skip("CUDA graphs need a CUDA device (run with XPNET_DEVICE=cuda)")
    torch, peer = torch_peer(run_device)
    x_host, t_host = batch_of(bench_data, batch)
    device = peer.torch_device(run_device[2])
    model = peer.TorchMLP(peer.host_params(make_net("cpu")), device, LR)
    x, labels = peer.as_tensors(x_host, t_host, device)
    replay = peer.cuda_graph_step(model, x, labels)
    timed.benchmark.group = f"SGD step batch {batch}"
    timed(
        replay,
        **step_info(batch, "torch-cudagraph", "torch", str(device)),
        torch_version=torch.__version__,
    )


def test_epoch_torch_eager(
    timed: bench.Timed,
    bench_data: bench.BenchData,
    bench_mode: bench.BenchMode,
    run_device: tuple,
) -> None:
    torch, peer = torch_peer(run_device)
    n, total = epoch_samples(bench_data, bench_mode)
    device = peer.torch_device(run_device[2])
    model = peer.TorchMLP(peer.host_params(make_net("cpu")), device, LR)
    x, labels = peer.as_tensors(bench_data.x_train[:n], bench_data.t_train[:n], device)
    rng = backend.host_rng(SEED)

    def epoch() -> Any:
        order = torch.as_tensor(rng.permutation(n), device=device)
        for start in range(0, n, EPOCH_BATCH):
            idx = order[start : start + EPOCH_BATCH]
            model.step(x.index_select(0, idx), labels.index_select(0, idx))
        return model.params

    timed.benchmark.group = "epoch"
    timed(epoch, **epoch_info("torch-eager", "torch", str(device), n, total))
