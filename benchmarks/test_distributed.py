"""Dask: a loop gradient check on 1 and 2 local worker processes, a full-data gradient on
NumPy and on Dask, and the scheduler's overhead per task (docs/scaling.md).

- ``dask_loop``: ``check_gradients(method="loop", client=...)`` of
  ``MultiLayerNet(784, [256, 128], 10)`` (235,146 parameters) in float64 on 100 samples,
  over one parameter (``b2``, 128 elements, quick; ``b1``, 256, full), on a
  ``LocalCluster`` of 1 and 2 worker processes of one thread each (``workers1``,
  ``workers2``), next to the same check run in this process without Dask, with NumPy's
  BLAS threads (``local``) and with one, as the workers have (``local-1thread``). The
  time per element times 235,146 is the extrapolated full check. The quick mode times
  one call (after one warm-up call), so that it stays short; ``dask_loop_small``: the
  same over ``b3`` alone (10 elements), mostly the fixed cost of a call;
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="Dask is not installed: xpnet[dask]")

from benchmarks._numerical import param_count, record_extrapolation  # noqa: E402
from xpnet import backend, bench, check_gradients  # noqa: E402
from xpnet import distributed as xd  # noqa: E402
from xpnet.networks import MultiLayerNet, TwoLayerNet  # noqa: E402

LOOP_SIZES = [784, 256, 128, 10]
LOOP_BATCH = 100
LOOP_DTYPE = "float64"
FULL_ROWS = 60_000
FULL_CHUNKS = 4
SEED = 0


@pytest.fixture(scope="module")
def clients() -> Iterator[Callable[..., Any]]:
    """``clients(workers)``: the client of a local cluster, started on first use."""
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


SETUPS = ["local", "local-1thread", "workers1", "workers2"]


def workers_of(setup: str) -> int | None:
    """The worker processes of ``setup`` (``workers2``: 2), None for one in this process."""
    return int(setup.removeprefix("workers")) if setup.startswith("workers") else None


@contextmanager
def where(setup: str, clients: Any) -> Iterator[Any]:
    """The client for ``setup`` (None: in this process), BLAS limited to one thread for
    ``local-1thread`` (as in Dask's workers, which start with OPENBLAS_NUM_THREADS=1)."""
    if setup == "local":
        yield None
    elif setup == "local-1thread":
        # blas_threads does nothing without threadpoolctl; a "1 thread" record must not.
        pytest.importorskip("threadpoolctl", reason="limits BLAS threads")
        with backend.blas_threads(1):
            yield None
    else:
        yield clients(workers_of(setup))


def loop_net() -> MultiLayerNet:
    """The loop check's network, on the host whatever ``XPNET_DEVICE`` says: its data are
    NumPy arrays, and Dask's workers and ``local`` are CPU setups."""
    return MultiLayerNet(
        LOOP_SIZES[0], LOOP_SIZES[1:-1], LOOP_SIZES[-1], dtype=LOOP_DTYPE, seed=SEED,
        device="cpu",
    )  # fmt: skip


def full_gradient_net(dtype: str) -> TwoLayerNet:
    """The full-data gradient's network, on the host whatever ``XPNET_DEVICE`` says (the
    ``numpy`` side is NumPy arrays in this process, the ``dask`` side NumPy chunks)."""
    return TwoLayerNet(784, 50, 10, dtype=dtype, seed=SEED, device="cpu")


def time_loop_check(
    timed: bench.Timed, data: bench.BenchData, setup: str, clients: Any, names: list[str], **kw: Any
) -> None:
    """Time ``check_gradients(method="loop", params=names)`` of the benchmark network."""
    net = loop_net()
    x = data.x_train[:LOOP_BATCH].astype(LOOP_DTYPE)
    t = data.t_train[:LOOP_BATCH].astype(LOOP_DTYPE)
    elements = sum(math.prod(net.params[n].shape) for n in names)
    total = param_count(net)
    with where(setup, clients) as client:
        report = timed(
            lambda: check_gradients(
                net, x, t, method="loop", params=names, client=client, progress=False
            ),
            framework=setup,
            batch=LOOP_BATCH,
            network="MultiLayerNet(784, [256, 128], 10)",
            dtype=LOOP_DTYPE,
            params=",".join(names),
            params_timed=elements,
            params_total=total,
            workers=workers_of(setup),
            **kw,
        )
    record_extrapolation(timed, elements, total)
    assert report.passed


@pytest.mark.parametrize("setup", SETUPS)
def test_loop_check(
    timed: bench.Timed,
    bench_data: bench.BenchData,
    bench_mode: bench.BenchMode,
    clients: Any,
    setup: str,
) -> None:
    timed.benchmark.group = "dask loop check"
    quick = bench_mode.name == "quick"
    time_loop_check(
        timed, bench_data, setup, clients, loop_params(bench_mode), kind="dask_loop",
        rounds=1 if quick else 5,  # seconds a call: quick mode only shows that it runs
        warmup=1,
    )  # fmt: skip


@pytest.mark.parametrize("setup", ["local-1thread", "workers1"])
def test_loop_check_of_b3(
    timed: bench.Timed, bench_data: bench.BenchData, clients: Any, setup: str
) -> None:
    """``b3`` alone: 10 elements, so a call is mostly its fixed cost (the analytic pass,
    sending the problem, building the plan, on a worker its first copy of the network)."""
    timed.benchmark.group = "dask loop check, 10 elements"
    time_loop_check(timed, bench_data, setup, clients, ["b3"], kind="dask_loop_small")


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
    dtype = "float32"
    net = full_gradient_net(dtype)
    timed.benchmark.group = "full-data gradient"
    info = {
        "kind": "full_gradient",
        "framework": framework,
        "batch": x.shape[0],
        "dtype": dtype,
        "data": name,
        "data_description": name,
    }
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
