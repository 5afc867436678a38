"""The book's SimpleConvNet (conv 30 5x5, ReLU, 2x2 max pool, Affine 100, ReLU, Affine 10).

- ``step``: ``net.gradient(x, t)`` then ``SGD(lr).update`` in float32 on a fixed batch of
  100 images, against the same network (same weights) in PyTorch eager with autograd
  and a hand-written in-place update, timed seconds apart; and the same with the
  convolution frozen (fine-tuning the classifier: ``Trainer(frozen="layers[0]")``'s step,
  against ``requires_grad_(False)`` on PyTorch's), a table of its own in the summary;
- gradients in float64 on the first 10 images (the gradient-check size):
  ``analytic``, the per-element loop on a random subset of the 434,290 parameters
  (extrapolated), and ``batched``: a whole ``check_gradients`` (local perturbations for
  the Affine layers after the pooling, the loop with kink detection for the
  convolution's 780 parameters), in the full mode only (several seconds a call).

Records carry ``array_ops`` (``xpnet.opcount``, counted on NumPy) where cheap to count.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks._frameworks import framework_info, host_params, sgd_step, step_array_ops, torch_peer
from benchmarks._numerical import param_count, record_extrapolation, subset_loop
from xpnet import backend, bench, gradcheck, opcount
from xpnet.networks import SimpleConvNet

NETWORK = "SimpleConvNet(30 5x5, pool 2, 100, 10)"
STEP_BATCH = 100
CHECK_BATCH = 10
LR = 0.01
H = 1e-4
SEED = 0


def images(data: bench.BenchData, n: int, dtype: str, device: str | None = None) -> tuple:
    """The first ``n`` training images (N, 1, 28, 28) and one-hot targets, on the device."""
    x = data.x_train[:n].reshape(n, 1, 28, 28)
    return (backend.to_device(a, dtype=dtype, device=device) for a in (x, data.t_train[:n]))


def info(kind: str, batch: int, dtype: str, **more: Any) -> dict[str, Any]:
    return {"kind": kind, "framework": "xpnet", "batch": batch, "dtype": dtype,
            "network": NETWORK, **more}  # fmt: skip


def step_operations(data: bench.BenchData, frozen: tuple[str, ...] = ()) -> int:
    """Array operations in one step, counted on NumPy: the same on every backend."""
    net = SimpleConvNet(seed=SEED, device="cpu")
    x, t = images(data, STEP_BATCH, "float32", device="cpu")
    return step_array_ops(net, x, t, LR, frozen)


STEPS = [("xpnet", ()), ("torch-eager", ()), ("xpnet", ("W1", "b1")), ("torch-eager", ("W1", "b1"))]


@pytest.mark.parametrize(
    ("framework", "frozen"),
    STEPS,
    ids=[framework + ("-conv-frozen" if frozen else "") for framework, frozen in STEPS],
)
def test_step(
    timed: bench.Timed,
    bench_data: bench.BenchData,
    run_device: tuple,
    run_info: dict,
    framework: str,
    frozen: tuple[str, ...],
) -> None:
    """The SGD step; ``-conv-frozen``: fine-tuning the classifier, the step of
    ``Trainer(frozen="layers[0]")``, whose backward stops after the pooling, against
    PyTorch's with the convolution's ``requires_grad_(False)``."""
    timed_step(timed, bench_data, run_device, run_info, framework, frozen)


def timed_step(
    timed: bench.Timed,
    bench_data: bench.BenchData,
    run_device: tuple,
    run_info: dict,
    framework: str,
    frozen: tuple[str, ...] = (),
) -> None:
    """Time ``framework``'s SGD step, the ``frozen`` parameters left out of it."""
    torch, more = None, {}
    if framework == "xpnet":
        x, t = images(bench_data, STEP_BATCH, "float32")
        step = sgd_step(SimpleConvNet(seed=SEED), x, t, LR, frozen)
        more["array_ops"] = step_operations(bench_data, frozen)
    else:
        torch, peer = torch_peer(run_device, framework)
        device = peer.torch_device(run_device[2])
        params = host_params(SimpleConvNet(seed=SEED, device="cpu"))
        model = peer.TorchConvNet(params, device, LR, frozen)
        x_host = bench_data.x_train[:STEP_BATCH].reshape(STEP_BATCH, 1, 28, 28)
        xt, labels = peer.as_tensors(x_host, bench_data.t_train[:STEP_BATCH], device)
        step = lambda: model.step(xt, labels)  # noqa: E731
    suffix = ", conv frozen" if frozen else ""
    if frozen:
        more["frozen"] = list(frozen)
    timed.benchmark.group = f"SimpleConvNet SGD step{suffix}"
    timed(step, kind="step", batch=STEP_BATCH, dtype="float32", lr=LR, network=NETWORK + suffix,
          **more, **framework_info(framework, run_info, torch))  # fmt: skip


def conv_case(data: bench.BenchData, device: str | None = None) -> tuple:
    net = SimpleConvNet(dtype="float64", seed=SEED, device=device)
    return (net, *images(data, CHECK_BATCH, "float64", device=device))


def test_analytic(timed: bench.Timed, bench_data: bench.BenchData) -> None:
    net, x, t = conv_case(bench_data)
    cpu_net, cx, ct = conv_case(bench_data, device="cpu")
    ops = opcount.count_operations(lambda x, t: cpu_net.gradient(x, t), cx, ct,
                                   params=cpu_net.params).array_ops  # fmt: skip
    timed.benchmark.group = "SimpleConvNet gradients"
    timed(lambda: net.gradient(x, t), **info("analytic", CHECK_BATCH, "float64", array_ops=ops))


def test_numerical_loop(
    timed: bench.Timed, bench_data: bench.BenchData, bench_mode: bench.BenchMode
) -> None:
    net, x, t = conv_case(bench_data)
    shapes = {name: tuple(p.shape) for name, p in net.params.items()}
    chosen = bench.sample_indices(shapes, bench_mode.subset, seed=SEED)
    n_timed = sum(len(idx) for idx in chosen.values())
    timed.benchmark.group = "SimpleConvNet gradients"
    timed(
        lambda: subset_loop(net, x, t, chosen, H),
        rounds=3 if bench_mode.name == "full" else None,  # 1,000 parameters: seconds a call
        **info("numerical_loop", CHECK_BATCH, "float64", params_timed=n_timed,
               params_total=param_count(net)),
    )  # fmt: skip
    record_extrapolation(timed, n_timed, param_count(net))


def test_batched(
    timed: bench.Timed, bench_data: bench.BenchData, bench_mode: bench.BenchMode
) -> None:
    if bench_mode.name != "full":
        pytest.skip("a whole conv-net gradient check takes seconds a call: --xpnet-full")
    net, x, t = conv_case(bench_data)
    timed.benchmark.group = "SimpleConvNet gradients"
    report = timed(
        lambda: gradcheck.check_gradients(net, x, t, h=H),
        rounds=3,
        warmup=1,
        **info("batched", CHECK_BATCH, "float64", params_total=param_count(net),
               timed="check_gradients: numerical (batched + loop), analytic, comparison"),
    )  # fmt: skip
    timed.benchmark.extra_info.update(
        passed=report.passed, kinks={p.name: p.kinks for p in report.params},
        via={p.name: p.via for p in report.params},
    )  # fmt: skip
    assert report.passed, str(report)
