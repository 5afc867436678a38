"""Gradients of TwoLayerNet(784, 50, 10) on MNIST data in float64: backprop vs numerical.

- ``analytic``: ``net.gradient(x, t)`` (one forward and one backward pass);
- ``numerical_loop``: the book's per-element central differences, timed on a fixed
  random subset of the 39,760 parameters (``--xpnet-subset``); the per-parameter time
  times 39,760 is the extrapolated full time (``--xpnet-numerical-full`` measures it);
- ``batched`` and ``directional``: the fast numerical checks of
  ``xpnet.gradcheck`` (skipped while that module does not offer them).

Batch sizes: the book's 3 samples and a mini-batch of 100.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from xpnet import backend, bench, gradcheck
from xpnet.networks import TwoLayerNet

BATCHES = [3, 100]
DTYPE = "float64"
H = 1e-4
SEED = 0


def make_case(data: bench.BenchData, batch: int) -> tuple[TwoLayerNet, Any, Any]:
    """The network (book init, std 0.01) and the first ``batch`` training samples."""
    net = TwoLayerNet(784, 50, 10, dtype=DTYPE, seed=SEED)
    x = backend.to_device(data.x_train[:batch], dtype=DTYPE)
    t = backend.to_device(data.t_train[:batch], dtype=DTYPE)
    return net, x, t


def param_count(net: TwoLayerNet) -> int:
    return sum(math.prod(net.params[name].shape) for name in net.params)


def info(batch: int, kind: str) -> dict[str, Any]:
    return {"kind": kind, "framework": "xpnet", "batch": batch, "dtype": DTYPE}


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"batch{b}")
def test_analytic(timed: bench.Timed, bench_data: bench.BenchData, batch: int) -> None:
    net, x, t = make_case(bench_data, batch)
    timed.benchmark.group = f"gradients batch {batch}"
    grads = timed(lambda: net.gradient(x, t), **info(batch, "analytic"))
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

    def loop() -> dict[str, Any]:
        return {
            name: gradcheck.numerical_gradient(
                lambda p, name=name: net.loss_at(name, p, x, t), net.params[name], H, indices=idx
            )
            for name, idx in chosen.items()
        }

    timed.benchmark.group = f"gradients batch {batch}"
    numerical = timed(
        loop, **info(batch, "numerical_loop"), params_timed=n_timed, params_total=param_count(net)
    )
    analytic = net.gradient(x, t)
    diffs = [
        abs(float(analytic[name][idx]) - float(numerical[name][idx]))
        for name, indices in chosen.items()
        for idx in indices
    ]
    typical, worst = sorted(diffs)[len(diffs) // 2], max(diffs)
    extra = {"median_abs_diff_vs_analytic": typical, "max_abs_diff_vs_analytic": worst, "h": H}
    if timed.median_s is not None:
        per_param = timed.median_s / n_timed
        extra["per_param_s"] = per_param
        extra["extrapolated_full_s"] = per_param * param_count(net)
        analytic_s = medians.get(("analytic", "xpnet", batch))
        if analytic_s:
            extra["ratio_numerical_analytic"] = extra["extrapolated_full_s"] / analytic_s
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
        lambda: gradcheck.net_numerical_gradient(net, x, t, method="batched", h=H),
        **info(batch, "batched"),
        params_total=param_count(net),
        memory_budget_bytes=gradcheck.memory_budget(),
    )
    assert set(grads) == set(net.params)


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"batch{b}")
def test_directional(
    timed: bench.Timed, bench_data: bench.BenchData, bench_mode: bench.BenchMode, batch: int
) -> None:
    net, x, t = make_case(bench_data, batch)
    timed.benchmark.group = f"gradients batch {batch}"
    n = bench_mode.directions
    result = timed(
        lambda: gradcheck.directional_check(net, x, t, n_directions=n, seed=SEED, h=H),
        **info(batch, "directional"),
        n_directions=n,
    )
    assert result.passed
