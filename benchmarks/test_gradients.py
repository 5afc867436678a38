"""Gradients of TwoLayerNet(784, 50, 10) on MNIST data in float64: backprop vs numerical.

- ``analytic``: ``net.gradient(x, t)`` (one forward and one backward pass);
- ``numerical_loop``: the book's per-element central differences, timed on a fixed
  random subset of the 39,760 parameters (``--xpnet-subset``); the per-parameter time
  times 39,760 is the extrapolated full time (``--xpnet-numerical-full`` measures it);
- ``batched`` and ``directional``: the fast numerical checks of ``xpnet.gradcheck``.

Each record also carries ``array_ops``: the array operations of one call (for the
loop, over the timed subset), counted on NumPy (``xpnet.opcount``); on a GPU each is at
least one kernel launch, the cost that bounds small work there.

Batch sizes: the book's 3 samples and a mini-batch of 100.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from benchmarks._numerical import param_count, record_extrapolation, subset_loop
from xpnet import backend, bench, gradcheck, opcount
from xpnet.networks import TwoLayerNet

BATCHES = [3, 100]
DTYPE = "float64"
H = 1e-4
SEED = 0


def make_case(
    data: bench.BenchData, batch: int, device: str | None = None
) -> tuple[TwoLayerNet, Any, Any]:
    """The network (book init, std 0.01) and the first ``batch`` training samples."""
    net = TwoLayerNet(784, 50, 10, dtype=DTYPE, seed=SEED, device=device)
    x = backend.to_device(data.x_train[:batch], dtype=DTYPE, device=device)
    t = backend.to_device(data.t_train[:batch], dtype=DTYPE, device=device)
    return net, x, t


def array_ops(data: bench.BenchData, batch: int, call: Callable[..., Any]) -> int:
    """Array operations of ``call(net, x, t)``, counted on NumPy (the same on every backend)."""
    net, x, t = make_case(data, batch, device="cpu")
    return opcount.count_operations(lambda x, t: call(net, x, t), x, t, params=net.params).array_ops


def analytic(net: TwoLayerNet, x: Any, t: Any) -> dict[str, Any]:
    return net.gradient(x, t)


def batched(net: TwoLayerNet, x: Any, t: Any) -> dict[str, Any]:
    return gradcheck.net_numerical_gradient(net, x, t, method="batched", h=H)


def info(batch: int, kind: str) -> dict[str, Any]:
    return {"kind": kind, "framework": "xpnet", "batch": batch, "dtype": DTYPE}


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"batch{b}")
def test_analytic(timed: bench.Timed, bench_data: bench.BenchData, batch: int) -> None:
    net, x, t = make_case(bench_data, batch)
    timed.benchmark.group = f"gradients batch {batch}"
    grads = timed(
        lambda: analytic(net, x, t),
        **info(batch, "analytic"),
        array_ops=array_ops(bench_data, batch, analytic),
    )
    assert set(grads) == set(net.params)


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"batch{b}")
def test_numerical_loop(
    timed: bench.Timed,
    bench_data: bench.BenchData,
    bench_mode: bench.BenchMode,
    medians: dict,
    batch: int,
) -> None:
    net, x, t = make_case(bench_data, batch)
    shapes = {name: tuple(net.params[name].shape) for name in net.params}
    chosen = bench.sample_indices(shapes, bench_mode.subset, seed=SEED)
    n_timed = sum(len(idx) for idx in chosen.values())

    def loop(net: TwoLayerNet, x: Any, t: Any) -> dict[str, Any]:
        return subset_loop(net, x, t, chosen, H)

    timed.benchmark.group = f"gradients batch {batch}"
    numerical = timed(
        lambda: loop(net, x, t),
        **info(batch, "numerical_loop"),
        params_timed=n_timed,
        params_total=param_count(net),
        array_ops=array_ops(bench_data, batch, loop),
    )
    analytic = net.gradient(x, t)
    diffs = [
        abs(float(analytic[name][idx]) - float(numerical[name][idx]))
        for name, indices in chosen.items()
        for idx in indices
    ]
    typical, worst = sorted(diffs)[len(diffs) // 2], max(diffs)
    extra = {"median_abs_diff_vs_analytic": typical, "max_abs_diff_vs_analytic": worst, "h": H}
    full_s = record_extrapolation(timed, n_timed, param_count(net))
    analytic_s = medians.get(("analytic", "xpnet", batch, bench.NETWORK))
    if full_s is not None and analytic_s:
        extra["ratio_numerical_analytic"] = full_s / analytic_s
    timed.benchmark.extra_info.update(extra)
    # A sanity check of what was timed (the tests in tests/ check gradients properly):
    # the median, since a perturbation that crosses a ReLU kink may miss by far more.
    assert typical < 1e-7, f"numerical and analytic gradients differ by {typical:.2e} (median)"


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"batch{b}")
def test_numerical_full(
    timed: bench.Timed, bench_data: bench.BenchData, pytestconfig: pytest.Config, batch: int
) -> None:
    if not pytestconfig.getoption("--xpnet-numerical-full"):
        pytest.skip("the complete per-element numerical gradient is slow: --xpnet-numerical-full")
    net, x, t = make_case(bench_data, batch)
    timed.benchmark.group = f"gradients batch {batch}"
    timed(
        lambda: net.numerical_gradient(x, t, H),
        rounds=1,
        warmup=0,
        **info(batch, "numerical_full"),
        params_total=param_count(net),
    )


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"batch{b}")
def test_batched(timed: bench.Timed, bench_data: bench.BenchData, batch: int) -> None:
    net, x, t = make_case(bench_data, batch)
    timed.benchmark.group = f"gradients batch {batch}"
    grads = timed(
        lambda: batched(net, x, t),
        **info(batch, "batched"),
        params_total=param_count(net),
        memory_budget_bytes=gradcheck.memory_budget(),
        array_ops=array_ops(bench_data, batch, batched),
    )
    assert set(grads) == set(net.params)


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"batch{b}")
def test_directional(
    timed: bench.Timed, bench_data: bench.BenchData, bench_mode: bench.BenchMode, batch: int
) -> None:
    net, x, t = make_case(bench_data, batch)
    timed.benchmark.group = f"gradients batch {batch}"
    n = bench_mode.directions

    def directional(net: TwoLayerNet, x: Any, t: Any) -> gradcheck.DirectionalReport:
        return gradcheck.directional_check(net, x, t, n_directions=n, seed=SEED, h=H)

    result = timed(
        lambda: directional(net, x, t),
        **info(batch, "directional"),
        n_directions=n,
        array_ops=array_ops(bench_data, batch, directional),
    )
    assert result.passed
