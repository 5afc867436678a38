"""One SGD step of TwoLayerNet(784, 50, 10) in float32, xpnet against PyTorch, and epochs.

- ``step``: ``net.gradient(x, t)`` then ``SGD(lr).update(net.params, grads)`` on a
  fixed batch of 1, 100 or 1000 samples already on the device; the peer is the same
  MLP, started from the same weights, in PyTorch eager mode with autograd and a
  hand-written in-place update (and, on CUDA, that step replayed from a CUDA graph);
- ``epoch``: shuffled mini-batches of 100 over the training set (xpnet's
  ``Trainer.train_epoch`` and the same loop in PyTorch); samples per second. The quick
  mode times part of an epoch and extrapolates (marked in the summary).

Each xpnet benchmark runs right next to its peers (``[batch100-xpnet]``,
``[batch100-torch-eager]``, ...), so a ratio compares timings taken seconds apart,
not minutes apart on a machine whose load may have changed. PyTorch is optional:
its benchmarks are skipped when it is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from xpnet import backend, bench, opcount
from xpnet.networks import TwoLayerNet
from xpnet.optim import SGD

STEP_BATCHES = [1, 100, 1000]
FRAMEWORKS = ["xpnet", "torch-eager", "torch-cudagraph"]
EPOCH_BATCH = 100
DTYPE = "float32"
LR = 0.1
SEED = 0


def make_net(device: str | None = None) -> TwoLayerNet:
    """The book's network (init std 0.01), seeded: the same weights on every device."""
    return TwoLayerNet(784, 50, 10, dtype=DTYPE, seed=SEED, device=device)


def batch_of(data: bench.BenchData, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``batch`` training samples (host arrays; one-hot targets)."""
    if batch > data.x_train.shape[0]:
        pytest.skip(f"{data.name} has only {data.x_train.shape[0]} training samples")
    return data.x_train[:batch], data.t_train[:batch]


def torch_peer(run_device: tuple[Any, Any, str], framework: str) -> tuple[Any, Any]:
    """``(torch, the peer module)``; skips when PyTorch or the device is missing."""
    if framework == "torch-cudagraph" and not run_device[2].startswith("cuda"):
        pytest.skip("CUDA graphs need a CUDA device (run with XPNET_DEVICE=cuda)")
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (peer benchmarks)")
    from benchmarks import _torch_peer

    if run_device[2].startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"this PyTorch build has no CUDA (torch {torch.__version__})")
    return torch, _torch_peer


def framework_info(framework: str, run_info: dict, torch: Any = None) -> dict[str, Any]:
    """Who runs the benchmark: framework, library and device."""
    if framework == "xpnet":
        return {
            "framework": framework,
            "backend": run_info["run_backend"],
            "device": run_info["run_device"],
        }
    return {
        "framework": framework,
        "backend": "torch",
        "device": run_info["run_device"],
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------- one step


def sgd_step(net: TwoLayerNet, x: Any, t: Any) -> Callable[[], Any]:
    opt = SGD(LR)

    def step() -> Any:
        opt.update(net.params, net.gradient(x, t))
        return net.params

    return step


def xpnet_step(x_host: np.ndarray, t_host: np.ndarray) -> Callable[[], Any]:
    x, t = (backend.to_device(a, dtype=DTYPE) for a in (x_host, t_host))
    return sgd_step(make_net(), x, t)


def step_operations(x_host: np.ndarray, t_host: np.ndarray) -> int:
    """Array operations in one xpnet step, counted on NumPy: the same on every backend."""
    net = make_net("cpu")
    x, t = (np.asarray(a, dtype=DTYPE) for a in (x_host, t_host))
    ops = opcount.count_operations(lambda x, t: sgd_step(net, x, t)(), x, t, params=net.params)
    return ops.array_ops


def torch_step(
    peer: Any, framework: str, device_name: str, x_host: np.ndarray, t_host: np.ndarray
) -> Callable[[], Any]:
    device = peer.torch_device(device_name)
    model = peer.TorchMLP(peer.host_params(make_net("cpu")), device, LR)
    x, labels = peer.as_tensors(x_host, t_host, device)
    if framework == "torch-cudagraph":
        return peer.cuda_graph_step(model, x, labels)
    return lambda: model.step(x, labels)


@pytest.mark.parametrize(
    ("batch", "framework"),
    [(b, f) for b in STEP_BATCHES for f in FRAMEWORKS],
    ids=[f"batch{b}-{f}" for b in STEP_BATCHES for f in FRAMEWORKS],
)
def test_step(
    timed: bench.Timed,
    bench_data: bench.BenchData,
    run_device: tuple,
    run_info: dict,
    batch: int,
    framework: str,
) -> None:
    torch, counted = None, {}
    if framework == "xpnet":
        x_host, t_host = batch_of(bench_data, batch)
        step = xpnet_step(x_host, t_host)
        counted = {"array_ops": step_operations(x_host, t_host)}
    else:
        torch, peer = torch_peer(run_device, framework)
        x_host, t_host = batch_of(bench_data, batch)
        step = torch_step(peer, framework, run_device[2], x_host, t_host)
    timed.benchmark.group = f"SGD step batch {batch}"
    timed(
        step,
        kind="step",
        batch=batch,
        dtype=DTYPE,
        lr=LR,
        **counted,
        **framework_info(framework, run_info, torch),
    )


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
        net, SGD(LR), x, t, x[:1], t[:1], epochs=1, batch_size=EPOCH_BATCH, progress=False
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
    model = peer.TorchMLP(peer.host_params(make_net("cpu")), device, LR)
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
