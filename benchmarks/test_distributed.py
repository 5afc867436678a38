"""Dask: a loop gradient check on 1 and 2 local worker processes, a full-data gradient on
NumPy and on Dask, and the scheduler's overhead per task (docs/scaling.md).

- ``dask_loop``: ``check_gradients(method="loop", client=...)`` of
  ``MultiLayerNet(784, [256, 128], 10)`` (235,146 parameters) in float64 on 100 samples,
  over one parameter (``b2``, 128 elements, quick; ``b1``, 256, full), on a
  ``LocalCluster`` of 1 and 2 worker processes of one thread each, next to the same
  check run in this process without Dask (``framework: local``). The time per element
  times 235,146 is the extrapolated full check. The quick mode times one call (after
  one warm-up call), so that it stays short;
- ``full_gradient``: ``TwoLayerNet(784, 50, 10)`` float32, the gradient over 60,000
  samples: NumPy arrays in this process against a dask array of 4 row chunks kept on a
  2-worker cluster (``client.compute`` of all four gradients at once). The data are
  Debian's Fashion-MNIST when installed, else mnist-5k's 4,000 training digits
  repeated 15 times (``data`` in the record says which);
- ``task_overhead``: ``client.map`` of no-op tasks on 2 workers, gathered; the time per
  task is the scheduler's overhead that every task pays.

Skipped, with the reason, without ``xpnet[dask]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="Dask is not installed: xpnet[dask]")

from xpnet import bench, check_gradients  # noqa: E402
from xpnet import distributed as xd  # noqa: E402
from xpnet.networks import MultiLayerNet, TwoLayerNet  # noqa: E402

LOOP_SIZES = [784, 256, 128, 10]
LOOP_BATCH = 100
FULL_ROWS = 60_000
FULL_CHUNKS = 4
SEED = 0


@pytest.fixture(scope="module")
def clients() -> Iterator[dict[int, Any]]:
    """Clients of local clusters by worker count (1 or 2), started on first use."""
    started: dict[int, Any] = {}
    stack = []

    def client_for(workers: int) -> Any:
        if workers not in started:
            context = xd.connect(f"local:{workers}")
            started[workers] = context.__enter__()
            stack.append(context)
        return started[workers]

    yield client_for
    for context in reversed(stack):
        context.__exit__(None, None, None)


def loop_params(mode: bench.BenchMode) -> list[str]:
    return ["b2"] if mode.name == "quick" else ["b1"]


@pytest.mark.parametrize("workers", [0, 1, 2], ids=["local", "workers1", "workers2"])
def test_loop_check(
    timed: bench.Timed,
    bench_data: bench.BenchData,
    bench_mode: bench.BenchMode,
    clients: Any,
    workers: int,
) -> None:
    net = MultiLayerNet(LOOP_SIZES[0], LOOP_SIZES[1:-1], LOOP_SIZES[-1], dtype="float64", seed=SEED)
    x = bench_data.x_train[:LOOP_BATCH].astype(np.float64)
    t = bench_data.t_train[:LOOP_BATCH].astype(np.float64)
    names = loop_params(bench_mode)
    client = clients(workers) if workers else None
    elements = sum(math.prod(net.params[n].shape) for n in names)
    total = sum(math.prod(p.shape) for p in net.params.values())
    timed.benchmark.group = "dask loop check"
    quick = bench_mode.name == "quick"
    report = timed(
        lambda: check_gradients(
            net, x, t, method="loop", params=names, client=client, progress=False
        ),
        rounds=1 if quick else 5,  # seconds a call: quick mode only shows that it runs
        warmup=1,
        kind="dask_loop",
        framework="local" if client is None else "dask",
        batch=LOOP_BATCH,
        workers=workers,
        network="MultiLayerNet(784, [256, 128], 10)",
        params_timed=elements,
        params_total=total,
    )
    if timed.median_s is not None:
        per_param = timed.median_s / elements
        timed.benchmark.extra_info.update(
            per_param_s=per_param, extrapolated_full_s=per_param * total
        )
    assert report.passed


def full_data(bench_data: bench.BenchData) -> tuple[str, np.ndarray, np.ndarray]:
    """60,000 samples: Fashion-MNIST if installed, else the benchmark data repeated."""
    from xpnet.datasets import load_mnist

    try:
        (x, t), _ = load_mnist(name="fashion-mnist", download=False, device="cpu")
        return "fashion-mnist (60,000 train)", np.asarray(x), np.asarray(t)
    except (FileNotFoundError, OSError):
        repeats = math.ceil(FULL_ROWS / bench_data.x_train.shape[0])
        x = np.tile(bench_data.x_train.astype(np.float32), (repeats, 1))[:FULL_ROWS]
        t = np.tile(np.argmax(bench_data.t_train, axis=1), repeats)[:FULL_ROWS]
        return f"{bench_data.name} train repeated {repeats}x to {FULL_ROWS:,}", x, t


@pytest.mark.parametrize("framework", ["numpy", "dask"])
def test_full_gradient(
    timed: bench.Timed, bench_data: bench.BenchData, clients: Any, framework: str
) -> None:
    name, x, t = full_data(bench_data)
    net = TwoLayerNet(784, 50, 10, dtype="float32", seed=SEED)
    timed.benchmark.group = "full-data gradient"
    info = {"kind": "full_gradient", "framework": framework, "batch": x.shape[0], "data": name}
    if framework == "numpy":
        grads = timed(lambda: net.gradient(x, t), **info)
    else:
        client = clients(2)
        rows = x.shape[0] // FULL_CHUNKS
        lazy_x, lazy_t = (xd.rows(a, client=client, chunk_rows=rows) for a in (x, t))
        grads = timed(
            lambda: client.compute([net.gradient(lazy_x, lazy_t)], sync=True)[0],
            **info,
            workers=2,
            chunks=FULL_CHUNKS,
        )
    expected = net.gradient(x, t)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-4, atol=1e-6)


def _noop(i: int) -> int:
    return i


def test_task_overhead(timed: bench.Timed, bench_mode: bench.BenchMode, clients: Any) -> None:
    client = clients(2)
    n = 200 if bench_mode.name == "quick" else 5000
    timed.benchmark.group = "dask task overhead"
    out = timed(
        lambda: client.gather(client.map(_noop, range(n), pure=False)),
        kind="task_overhead",
        framework="dask",
        batch=n,
        workers=2,
        tasks=n,
    )
    if timed.median_s is not None:
        timed.benchmark.extra_info["per_task_s"] = timed.median_s / n
    assert out == list(range(n))
