"""The benchmark suite's support code (``benchmarks/``), checked without timing anything.

- the peers (hand-written NumPy, PyTorch) make the same SGD updates as a plain float64
  NumPy computation written here, and return the loss before the update;
- the course network's weights and data are the course notes' (and ``xpnet train
  --model course``'s);
- the suites' helpers: which samples, learning rates and epochs they take, which peers
  run on which device, what the records say, and the numerical-gradient extrapolation;
- ``benchmarks/spread.py``'s report, and ``benchmarks/conftest.py``'s options and what it
  writes in the JSON file;
- the helper scripts' command lines (``--help``, their arguments), and
  ``benchmarks/checker_peer.py``'s report at its smallest setting.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from xpnet import backend, bench

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``bench_module("_course")``: that module of ``benchmarks/`` (the repository on the path)."""
    monkeypatch.syspath_prepend(str(ROOT))
    return lambda name: importlib.import_module(f"benchmarks.{name}")


@pytest.fixture
def peer(bench_module: Any) -> ModuleType:
    return bench_module("_numpy_peer")


@pytest.fixture
def course(bench_module: Any) -> ModuleType:
    return bench_module("_course")


@pytest.fixture
def torch_peer(bench_module: Any) -> ModuleType:
    pytest.importorskip("torch")
    return bench_module("_torch_peer")


@pytest.fixture
def step_suite(bench_module: Any) -> ModuleType:
    return bench_module("test_training_step")


@pytest.fixture
def per_sample_suite(bench_module: Any) -> ModuleType:
    return bench_module("test_per_sample")


# --------------------------------------------------------------------------- references
# The two networks' SGD steps, written out in float64 NumPy from the maths alone.


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def book_loss_and_update(
    params: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray, lr: float
) -> tuple[float, dict[str, np.ndarray]]:
    """ReLU MLP, softmax cross-entropy averaged over the batch: (loss, params after a step)."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    x, n = np.asarray(x, dtype=np.float64), x.shape[0]
    a1 = x @ p["W1"] + p["b1"]
    h = np.maximum(a1, 0.0)
    s = h @ p["W2"] + p["b2"]
    log_p = s - s.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(n), labels].mean()
    ds = (np.exp(log_p) - np.eye(s.shape[1])[labels]) / n
    dh = (ds @ p["W2"].T) * (a1 > 0)
    grads = {"W1": x.T @ dh, "b1": dh.sum(axis=0), "W2": h.T @ ds, "b2": ds.sum(axis=0)}
    return loss, {k: p[k] - lr * grads[k] for k in p}


def course_loss_and_update(
    params: dict[str, np.ndarray], x: np.ndarray, t: np.ndarray, lr: float
) -> tuple[float, dict[str, np.ndarray]]:
    """Sigmoid MLP, binary cross-entropy of sigmoid outputs summed over every output and
    sample: (loss, params after a step)."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    x, t = np.asarray(x, dtype=np.float64), np.asarray(t, dtype=np.float64)
    h = sigmoid(x @ p["W1"] + p["b1"])
    y = sigmoid(h @ p["W2"] + p["b2"])
    loss = -np.sum(t * np.log(y) + (1 - t) * np.log(1 - y))
    ds = y - t
    dh = (ds @ p["W2"].T) * h * (1 - h)
    grads = {"W1": x.T @ dh, "b1": dh.sum(axis=0), "W2": h.T @ ds, "b2": ds.sum(axis=0)}
    return loss, {k: p[k] - lr * grads[k] for k in p}


def random_params(sizes: tuple[int, int, int], seed: int = 1) -> dict[str, np.ndarray]:
    """Weights (std 0.1) and biases (std 0.1) for a d-h-c MLP, float64."""
    rng = np.random.default_rng(seed)
    d, h, c = sizes
    return {
        "W1": 0.1 * rng.standard_normal((d, h)),
        "b1": 0.1 * rng.standard_normal(h),
        "W2": 0.1 * rng.standard_normal((h, c)),
        "b2": 0.1 * rng.standard_normal(c),
    }


def pixels_and_one_hot(n: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 784)), np.eye(10)[rng.integers(0, 10, n)]


def fake_data(n_train: int) -> bench.BenchData:
    """Numbered samples: pixel row ``i`` is ``i / n_train`` everywhere, its label ``i % 10``."""
    x = np.repeat(np.arange(n_train)[:, None] / n_train, 784, axis=1)
    t = np.eye(10)[np.arange(n_train) % 10]
    return bench.BenchData("fake", "", x, t, x[:10], t[:10])


def assert_params_close(actual: Any, expected: dict[str, np.ndarray], **tol: float) -> None:
    """``actual`` (a mapping, or a list in ``expected``'s order) matches on the host."""
    if not hasattr(actual, "items"):  # the PyTorch peers' list of parameters
        actual = dict(zip(expected, actual, strict=True))
    for name, value in expected.items():
        np.testing.assert_allclose(backend.to_numpy(actual[name]), value, err_msg=name, **tol)


FLOAT32 = {"rtol": 1e-4, "atol": 1e-6}

# --------------------------------------------------------------------------- NumPy peer


def test_the_book_step_returns_the_mean_cross_entropy_before_the_update(peer: ModuleType) -> None:
    params = random_params((784, 50, 10))
    x, t = pixels_and_one_hot(5)
    expected_loss, _ = book_loss_and_update(params, x, t.argmax(axis=1), 0.1)
    loss = peer.two_layer_step(params, x, t, 0.1)
    assert loss == pytest.approx(expected_loss, rel=1e-5)


@pytest.mark.parametrize("step", ["course_step", "course_step_in_xpnets_maths"])
def test_the_course_steps_return_the_summed_cross_entropy_before_the_update(
    peer: ModuleType, step: str
) -> None:
    params = random_params((784, 100, 10))
    x, t = pixels_and_one_hot(5)
    t = 0.01 + 0.98 * t
    expected_loss, _ = course_loss_and_update(params, x, t, 0.3)
    loss = getattr(peer, step)(params, x, t, 0.3)
    assert float(loss) == pytest.approx(expected_loss, rel=1e-10)


def test_course_train_makes_the_course_notes_sgd_update(peer: ModuleType) -> None:
    params = random_params((784, 100, 10))
    x, t = pixels_and_one_hot(3)
    t = 0.01 + 0.98 * t
    _, expected = course_loss_and_update(params, x, t, 0.3)
    assert peer.course_train(params, x, t, 0.3) is None
    assert_params_close(params, expected, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- PyTorch peer


def test_the_torch_mlp_makes_the_book_networks_sgd_update(torch_peer: ModuleType) -> None:
    params = {k: v.astype(np.float32) for k, v in random_params((784, 50, 10)).items()}
    x, t = pixels_and_one_hot(5)
    _, expected = book_loss_and_update(params, x.astype(np.float32), t.argmax(axis=1), 0.1)
    model = torch_peer.TorchMLP(params, torch_peer.torch_device("cpu"), 0.1)
    model.step(*torch_peer.as_tensors(x, t, model.device))
    assert_params_close(model.params, expected, **FLOAT32)


def test_the_torch_mlp_with_the_course_keywords_makes_the_course_update(
    torch_peer: ModuleType,
) -> None:
    params = {k: v.astype(np.float32) for k, v in random_params((784, 100, 10)).items()}
    x, t = pixels_and_one_hot(5)
    x, t = (a.astype(np.float32) for a in (x, 0.01 + 0.98 * t))
    _, expected = course_loss_and_update(params, x, t, 0.06)
    model = torch_peer.TorchMLP(params, torch_peer.torch_device("cpu"), 0.06, **torch_peer.COURSE)
    model.step(*torch_peer.as_float_tensors(x, t, model.device))
    assert_params_close(model.params, expected, **FLOAT32)


def test_the_torch_mlp_step_returns_the_loss_before_the_update(torch_peer: ModuleType) -> None:
    params = {k: v.astype(np.float32) for k, v in random_params((784, 50, 10)).items()}
    x, t = pixels_and_one_hot(5)
    expected_loss, _ = book_loss_and_update(params, x.astype(np.float32), t.argmax(axis=1), 0.5)
    model = torch_peer.TorchMLP(params, torch_peer.torch_device("cpu"), 0.5)
    loss = model.step(*torch_peer.as_tensors(x, t, model.device))
    assert float(loss) == pytest.approx(expected_loss, rel=1e-5)


def test_the_torch_peer_trains_copies_of_the_weights_it_is_given(torch_peer: ModuleType) -> None:
    params = {k: v.astype(np.float32) for k, v in random_params((784, 50, 10)).items()}
    before = {k: v.copy() for k, v in params.items()}
    x, t = pixels_and_one_hot(5)
    model = torch_peer.TorchMLP(params, torch_peer.torch_device("cpu"), 0.1)
    model.step(*torch_peer.as_tensors(x, t, model.device))
    for name, value in params.items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_the_torch_conv_net_makes_xpnets_simple_conv_net_update(torch_peer: ModuleType) -> None:
    """The same weights and images: xpnet's SimpleConvNet in float64 is the reference."""
    from xpnet.networks import SimpleConvNet
    from xpnet.optim import SGD

    float32_net = SimpleConvNet(seed=0, device="cpu")
    host = {k: np.array(backend.to_numpy(v)) for k, v in float32_net.params.items()}
    net = SimpleConvNet(dtype="float64", seed=0, device="cpu")
    for name, value in host.items():
        net.params[name][...] = value
    rng = np.random.default_rng(3)
    x, t = rng.random((4, 1, 28, 28)).astype(np.float32), np.eye(10)[rng.integers(0, 10, 4)]
    model = torch_peer.TorchConvNet(host, torch_peer.torch_device("cpu"), 0.1)
    model.step(*torch_peer.as_tensors(x, t, model.device))
    SGD(0.1).update(net.params, net.gradient(x.astype(np.float64), t))
    expected = {name: backend.to_numpy(net.params[name]) for name in host}
    assert_params_close(model.params, expected, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- the course network


def preset_course_net(seed: int, dtype: str) -> Any:
    """The network ``xpnet train --model course`` builds (its preset in ``xpnet.cli``)."""
    from xpnet.cli.network import MODELS
    from xpnet.layers import SigmoidWithLoss
    from xpnet.networks import MultiLayerNet

    preset = MODELS["course"]
    return MultiLayerNet(
        784,
        preset["hidden"],
        10,
        activation=preset["activation"],
        loss=SigmoidWithLoss(reduction=preset["reduction"]),
        weight_init=preset["weight_init"],
        bias_init=preset["bias_init"],
        dtype=dtype,
        seed=seed,
        device="cpu",
    )


@pytest.mark.parametrize("seed", [0, 5])
def test_the_course_weights_are_those_of_xpnet_train_model_course(
    course: ModuleType, seed: int
) -> None:
    """``randn / sqrt(fan_in / 2)`` and biases uniform in [0, 1), drawn W1, b1, W2, b2."""
    net = preset_course_net(seed, "float64")
    params = course.host_params(seed, "float64")
    assert list(params) == list(net.params)
    assert_params_close(params, dict(net.params.items()), rtol=1e-12, atol=0)


def test_the_course_networks_step_does_the_work_of_xpnet_train_model_courses(
    bench_module: Any, course: ModuleType
) -> None:
    """The same layers, and no gradient of the data: the same array operations a step."""
    step_array_ops = bench_module("_frameworks").step_array_ops
    x, t = course.inputs_and_targets(*pixels_and_one_hot(3))
    x, t = x.astype(np.float32), t.astype(np.float32)
    ours = course.network(course.host_params(0, "float32"), "float32", "cpu")
    assert step_array_ops(ours, x, t, 0.1) == step_array_ops(
        preset_course_net(0, "float32"), x, t, 0.1
    )


def test_the_course_weights_have_the_dtype_asked_for(course: ModuleType) -> None:
    params = course.host_params(0, "float32")
    assert {name: value.dtype for name, value in params.items()} == dict.fromkeys(
        ("W1", "b1", "W2", "b2"), np.dtype(np.float32)
    )


def test_the_course_data_are_scaled_as_the_notes_scale_them(course: ModuleType) -> None:
    """Pixels ``x / 255 * 0.99 + 0.01`` (here from [0, 1]), targets 0.01 and 0.99."""
    x, t = course.inputs_and_targets(np.array([[0.0, 0.5, 1.0]]), np.array([[0.0, 1.0, 0.0]]))
    np.testing.assert_allclose(x, [[0.01, 0.505, 1.0]], rtol=1e-12)
    np.testing.assert_allclose(t, [[0.01, 0.99, 0.01]], rtol=1e-12)


# --------------------------------------------------------------------------- per-sample suite


@pytest.mark.parametrize("framework", ["xpnet", "hand-numpy", "torch-eager"])
def test_a_per_sample_round_makes_one_update_per_sample_in_order(
    request: pytest.FixtureRequest,
    per_sample_suite: ModuleType,
    course: ModuleType,
    framework: str,
) -> None:
    pixels, one_hot = pixels_and_one_hot(4)
    x, t = (0.01 + 0.99 * pixels).astype(np.float32), (0.01 + 0.98 * one_hot).astype(np.float32)
    expected = course.host_params(0, "float32")
    for i in range(4):
        _, expected = course_loss_and_update(expected, x[i : i + 1], t[i : i + 1], 0.3)
    if framework == "xpnet":
        train_round = per_sample_suite.xpnet_round(x, t)
    elif framework == "hand-numpy":
        train_round = per_sample_suite.numpy_round(x, t)
    else:
        torch_peer = request.getfixturevalue("torch_peer")
        train_round = per_sample_suite.torch_round(torch_peer, "cpu", x, t)
    assert_params_close(train_round(), expected, **FLOAT32)


def test_per_sample_samples_cycle_through_the_data_in_file_order(
    per_sample_suite: ModuleType,
) -> None:
    data = fake_data(4)
    x, t, _ = per_sample_suite.samples(data, 10)
    rows = np.arange(10) % 4
    np.testing.assert_allclose(x, 0.01 + 0.99 * data.x_train[rows], rtol=1e-6)
    np.testing.assert_allclose(t, 0.01 + 0.98 * data.t_train[rows], rtol=1e-6)
    assert x.dtype == t.dtype == np.float32


def test_per_sample_samples_say_whether_they_were_cycled(per_sample_suite: ModuleType) -> None:
    data = fake_data(4)
    assert per_sample_suite.samples(data, 4)[2].endswith("; the first 4 in file order")
    assert per_sample_suite.samples(data, 5)[2].endswith("; cycled to 5 steps")


# --------------------------------------------------------------------------- step suite

STEP_SIDES = ["xpnet", "hand-numpy", "torch-eager"]
LEARNING_RATES = {"two-layer": lambda batch: 0.1, "course": lambda batch: 0.3 / batch}


def recording_torch_peer(torch_peer: ModuleType, made: list[Any]) -> SimpleNamespace:
    """The PyTorch peer module, with ``TorchMLP`` recording each model it makes in ``made``."""

    class RecordedMLP(torch_peer.TorchMLP):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    return SimpleNamespace(**{**vars(torch_peer), "TorchMLP": RecordedMLP})


@pytest.mark.parametrize("network", ["two-layer", "course"])
@pytest.mark.parametrize("side", STEP_SIDES)
def test_each_side_of_the_step_suite_makes_the_networks_sgd_update(
    request: pytest.FixtureRequest, step_suite: ModuleType, network: str, side: str
) -> None:
    """The book's network at lr 0.1; the course network (summed loss) at lr 0.3 / batch."""
    spec = step_suite.NETWORKS[network]
    x, t = spec.targets(*pixels_and_one_hot(5))
    start = {k: np.array(backend.to_numpy(v)) for k, v in spec.make("cpu").params.items()}
    lr = LEARNING_RATES[network](5)
    if network == "two-layer":
        _, expected = book_loss_and_update(start, x.astype(np.float32), t.argmax(axis=1), lr)
    else:
        _, expected = course_loss_and_update(start, x.astype(np.float32), t.astype(np.float32), lr)
    if side == "xpnet":
        params = step_suite.xpnet_step(spec, x, t)()
    elif side == "hand-numpy":
        params = step_suite.numpy_step(spec, x, t)()
    else:
        made: list[Any] = []
        peer = recording_torch_peer(request.getfixturevalue("torch_peer"), made)
        step_suite.torch_step(peer, spec, "torch-eager", "cpu", x, t)()
        params = made[0].params
    assert_params_close(params, expected, **FLOAT32)


class RecordingTimed:
    """Stands in for the ``timed`` fixture: keeps what a call would record."""

    def __init__(self) -> None:
        self.benchmark = SimpleNamespace(group=None)
        self.info: dict[str, Any] = {}

    def __call__(self, fn: Any, **info: Any) -> None:
        self.info = info


def test_the_step_suite_records_the_learning_rate_its_step_uses(step_suite: ModuleType) -> None:
    timed = RecordingTimed()
    step_suite.time_step(timed, lambda: None, "step", "course", 100, framework="xpnet")
    assert timed.info["lr"] == pytest.approx(0.3 / 100)
    assert timed.benchmark.group == "SGD step course batch 100"


def test_batch_of_takes_the_first_samples_with_their_targets(step_suite: ModuleType) -> None:
    data = fake_data(20)
    x, t = step_suite.batch_of(data, 7)
    np.testing.assert_array_equal(x, data.x_train[:7])
    np.testing.assert_array_equal(t, data.t_train[:7])


def test_batch_of_takes_the_whole_training_set_as_one_batch(step_suite: ModuleType) -> None:
    data = fake_data(20)
    try:
        x, _ = step_suite.batch_of(data, 20)
    except pytest.skip.Exception as exc:
        pytest.fail(f"a batch of all 20 samples was skipped: {exc}")
    assert x.shape[0] == 20


def test_a_quick_epoch_is_timed_on_at_most_the_modes_batches(step_suite: ModuleType) -> None:
    data = fake_data(4_000)
    quick = bench.MODES["quick"]
    assert step_suite.epoch_samples(data, quick) == (quick.epoch_batches * 100, 4_000)


def test_an_epoch_is_whole_batches_of_100(step_suite: ModuleType) -> None:
    data = fake_data(4_050)
    assert step_suite.epoch_samples(data, bench.MODES["full"]) == (4_000, 4_000)


def test_the_torch_epoch_makes_the_same_updates_as_xpnets_epoch(
    step_suite: ModuleType, torch_peer: ModuleType
) -> None:
    import torch

    rng = np.random.default_rng(4)
    data = bench.BenchData(
        "fake", "", rng.random((300, 784)), np.eye(10)[rng.integers(0, 10, 300)], None, None
    )
    ours = step_suite.xpnet_epoch(data, 300)()
    theirs = step_suite.torch_epoch(torch, torch_peer, "cpu", data, 300)()
    expected = {name: backend.to_numpy(value) for name, value in ours.items()}
    assert_params_close(theirs, expected, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- _frameworks


@pytest.fixture
def frameworks(bench_module: Any) -> ModuleType:
    return bench_module("_frameworks")


def book_net(dtype: str = "float64") -> Any:
    from xpnet.networks import TwoLayerNet

    return TwoLayerNet(784, 50, 10, dtype=dtype, seed=0, device="cpu")


def test_host_params_are_copies_that_leave_the_network_alone(frameworks: ModuleType) -> None:
    net = book_net()
    params = frameworks.host_params(net)
    for value in params.values():
        value += 1.0
    for name, value in net.params.items():
        np.testing.assert_array_equal(backend.to_numpy(value) + 1.0, params[name], err_msg=name)


def test_sgd_step_makes_one_sgd_update_at_its_learning_rate(frameworks: ModuleType) -> None:
    net = book_net()
    start = {k: np.array(backend.to_numpy(v)) for k, v in net.params.items()}
    x, t = pixels_and_one_hot(5)
    _, expected = book_loss_and_update(start, x, t.argmax(axis=1), 0.5)
    frameworks.sgd_step(net, x, t, 0.5)()
    assert_params_close(dict(net.params.items()), expected, rtol=1e-10, atol=1e-14)


def test_step_array_ops_counts_the_gradient_and_the_update(frameworks: ModuleType) -> None:
    from xpnet import opcount
    from xpnet.optim import SGD

    x, t = (a.astype(np.float32) for a in pixels_and_one_hot(3))
    net = book_net("float32")
    whole_step = opcount.count_operations(
        lambda x, t: SGD(0.1).update(net.params, net.gradient(x, t)), x, t, params=net.params
    )
    assert frameworks.step_array_ops(book_net("float32"), x, t, 0.1) == whole_step.array_ops


def test_framework_info_names_the_library_that_runs_each_side(frameworks: ModuleType) -> None:
    run_info = {"run_backend": "cupy", "run_device": "cuda:0"}
    assert frameworks.framework_info("xpnet", run_info) == {
        "framework": "xpnet",
        "backend": "cupy",
        "device": "cuda:0",
    }
    assert frameworks.framework_info("hand-numpy", run_info)["backend"] == "numpy"


def test_framework_info_records_torchs_version_and_threads(frameworks: ModuleType) -> None:
    backends = SimpleNamespace(
        cuda=SimpleNamespace(matmul=SimpleNamespace(allow_tf32=False)),
        cudnn=SimpleNamespace(allow_tf32=True),
    )
    torch = SimpleNamespace(
        __version__="9.9",
        get_num_threads=lambda: 3,
        get_num_interop_threads=lambda: 1,
        backends=backends,
    )
    info = frameworks.framework_info("torch-eager", {"run_device": "cpu"}, torch)
    assert info == {
        "framework": "torch-eager",
        "backend": "torch",
        "device": "cpu",
        "torch_version": "9.9",
        "torch_threads": 3,
        "torch_tf32": True,  # cuDNN's convolutions may use TF32
    }


def test_the_torch_peer_runs_on_the_cpu(frameworks: ModuleType) -> None:
    torch = pytest.importorskip("torch")
    try:
        found, module = frameworks.torch_peer((None, None, "cpu"), "torch-eager")
    except pytest.skip.Exception as exc:
        pytest.fail(f"torch-eager was skipped on the CPU: {exc}")
    assert found is torch and module.__name__ == "benchmarks._torch_peer"


@pytest.fixture
def tf32_allowed() -> Any:
    """PyTorch allowed TF32 in cuDNN and cuBLAS for the test; the flags restored after."""
    torch = pytest.importorskip("torch")
    flags = (torch.backends.cudnn, torch.backends.cuda.matmul)
    saved = [flag.allow_tf32 for flag in flags]
    for flag in flags:
        flag.allow_tf32 = True  # cuDNN's is PyTorch's default
    yield torch
    for flag, value in zip(flags, saved, strict=True):
        flag.allow_tf32 = value


def test_the_torch_peers_compute_in_full_float32_not_tf32(
    frameworks: ModuleType, tf32_allowed: Any
) -> None:
    # PyTorch's default lets cuDNN convolve float32 in TF32 on an A100/H100/H200, where
    # xpnet's convolution (CuPy's float32 matrix product) never does: less work for the peer.
    torch, _ = frameworks.torch_peer((None, None, "cpu"), "torch-eager")
    assert not torch.backends.cudnn.allow_tf32
    assert not torch.backends.cuda.matmul.allow_tf32
    info = frameworks.framework_info("torch-eager", {"run_device": "cpu"}, torch)
    assert info["torch_tf32"] is False


def test_the_dask_suites_networks_are_on_the_host_whatever_the_device(
    bench_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Their data are NumPy arrays (in this process, or chunks on Dask's workers): a
    # network on XPNET_DEVICE=cuda would mix backends (or time copies) on a GPU machine.
    pytest.importorskip("distributed")
    suite = bench_module("test_distributed")
    monkeypatch.setenv(backend.ENV_VAR, "cuda")
    for net in (suite.loop_net(), suite.full_gradient_net("float32")):
        assert all(type(p) is np.ndarray for p in net.params.values())


def test_the_hand_written_numpy_peer_runs_on_the_cpu_only(frameworks: ModuleType) -> None:
    try:
        frameworks.require_host((None, None, "cpu"))
    except pytest.skip.Exception as exc:
        pytest.fail(f"hand-numpy was skipped on the CPU: {exc}")
    with pytest.raises(pytest.skip.Exception, match="not cuda:0"):
        frameworks.require_host((None, None, "cuda:0"))


# --------------------------------------------------------------------------- _numerical


def test_param_count_counts_every_element(bench_module: Any) -> None:
    numerical = bench_module("_numerical")
    assert numerical.param_count(book_net()) == 784 * 50 + 50 + 50 * 10 + 10


def test_the_loop_time_is_extrapolated_from_the_timed_subset_to_every_parameter(
    bench_module: Any,
) -> None:
    numerical = bench_module("_numerical")
    timed = SimpleNamespace(median_s=0.5, benchmark=SimpleNamespace(extra_info={}))
    assert numerical.record_extrapolation(timed, 10, 1_000) == pytest.approx(50.0)
    assert timed.benchmark.extra_info == pytest.approx(
        {"per_param_s": 0.05, "extrapolated_full_s": 50.0}
    )


def test_the_timed_loop_differentiates_the_chosen_elements_only(bench_module: Any) -> None:
    """Central differences of the loss at the chosen elements (the book's loop), zero
    elsewhere; on a 4-3-2 network, against the float64 backprop gradient written here."""
    from xpnet.networks import TwoLayerNet

    numerical = bench_module("_numerical")
    net = TwoLayerNet(4, 3, 2, weight_init_std=0.5, dtype="float64", seed=0, device="cpu")
    rng = np.random.default_rng(6)
    x, t = rng.random((5, 4)), np.eye(2)[[0, 1, 1, 0, 1]]
    start = {k: np.array(backend.to_numpy(v)) for k, v in net.params.items()}
    _, stepped = book_loss_and_update(start, x, t.argmax(axis=1), 1.0)
    gradient = {k: start[k] - stepped[k] for k in start}
    chosen = {"W1": [(0, 1), (3, 2)], "b2": [(1,)]}
    found = numerical.subset_loop(net, x, t, chosen, 1e-5)
    assert set(found) == set(chosen)
    for name, indices in chosen.items():
        expected = np.zeros_like(gradient[name])
        for idx in indices:
            expected[idx] = gradient[name][idx]
        np.testing.assert_allclose(backend.to_numpy(found[name]), expected, atol=1e-8)


# --------------------------------------------------------------------------- gradient suites


def test_the_gradient_suites_case_is_the_first_samples_with_their_targets(
    bench_module: Any,
) -> None:
    gradients = bench_module("test_gradients")
    data = fake_data(20)
    _, x, t = gradients.make_case(data, 3, device="cpu")
    np.testing.assert_array_equal(backend.to_numpy(x), data.x_train[:3])
    np.testing.assert_array_equal(backend.to_numpy(t), data.t_train[:3])
    assert x.dtype == t.dtype == np.float64


def test_the_conv_suites_images_are_the_rows_reshaped_to_28_by_28(bench_module: Any) -> None:
    convnet = bench_module("test_convnet")
    rng = np.random.default_rng(5)
    data = bench.BenchData("fake", "", rng.random((4, 784)), np.eye(10)[:4], None, None)
    x, t = convnet.images(data, 3, "float64", device="cpu")
    x = backend.to_numpy(x)
    assert x.shape == (3, 1, 28, 28)
    for i in range(3):
        np.testing.assert_array_equal(x[i, 0], data.x_train[i].reshape(28, 28))
    np.testing.assert_array_equal(backend.to_numpy(t), data.t_train[:3])


# --------------------------------------------------------------------------- spread


class FakePairs:
    """What ``side_by_side`` returns, with fixed times: xpnet/numpy ratios 2 and 3, xpnet's
    steps 2 us and 6 us."""

    times = ([2e-6, 6e-6], [1e-6, 2e-6])

    def __call__(self) -> None:
        pass

    def figures(self) -> dict[str, float]:
        return {"ratio_median": 2.5}


@pytest.fixture
def spread_run(
    bench_module: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> Any:
    """``spread_run(network, batch)``: ``spread.main``'s lines and its ``side_by_side`` calls,
    on fake data and fake measurements."""
    spread = bench_module("spread")
    x_all, t_all = pixels_and_one_hot(50)
    calls: list[tuple[Any, ...]] = []

    def side_by_side(spec: Any, x: np.ndarray, t: np.ndarray, step: Any) -> FakePairs:
        calls.append((spec, x, t, step))
        return FakePairs()

    monkeypatch.setattr(spread, "load_mnist", lambda **kw: ((x_all, t_all), (None, None)))
    monkeypatch.setattr(spread, "side_by_side", side_by_side)

    def run(network: str, batch: int) -> SimpleNamespace:
        spread.main(network, batch)
        # "  <step name, 15 wide> <ratio> over all pairs; medians ...; <time> us a step"
        out = capsys.readouterr().out.splitlines()[1:]
        lines = {line[2:17].strip(): line for line in out}
        return SimpleNamespace(lines=lines, calls=calls, x_all=x_all, t_all=t_all)

    return run


def test_spread_reports_the_median_ratio_over_all_pairs(
    spread_run: Any,
) -> None:
    run = spread_run("course", 10)
    assert "2.500 over all pairs" in run.lines["xpnet step"]


def test_spread_reports_xpnets_median_step_time(
    spread_run: Any,
) -> None:
    run = spread_run("course", 10)
    assert run.lines["xpnet step"].endswith("; 4.0 us a step")


@pytest.mark.parametrize(
    ("network", "steps"),
    [
        ("course", ["xpnet step", "layers alone", "arithmetic only"]),
        ("two-layer", ["xpnet step", "layers alone"]),
    ],
)
def test_spread_writes_out_the_arithmetic_of_the_course_network_only(
    spread_run: Any, network: str, steps: list[str]
) -> None:
    assert list(spread_run(network, 10).lines) == steps


def test_spread_measures_the_course_network_on_the_notes_scaled_batch(
    spread_run: Any,
) -> None:
    run = spread_run("course", 10)
    for _, x, t, _ in run.calls:
        assert x.dtype == t.dtype == np.float32
        np.testing.assert_allclose(x, 0.01 + 0.99 * run.x_all[:10], rtol=1e-6)
        np.testing.assert_allclose(t, 0.01 + 0.98 * run.t_all[:10], rtol=1e-6)


def test_the_course_arithmetic_step_updates_the_networks_own_weights_as_its_sgd_step_does(
    bench_module: Any, course: ModuleType
) -> None:
    spread, frameworks = bench_module("spread"), bench_module("_frameworks")
    nets = [course.network(course.host_params(0, "float64"), "float64", "cpu") for _ in range(2)]
    x, t = course.inputs_and_targets(*pixels_and_one_hot(5))
    spread.course_maths_step(nets[0], x, t, 0.06)()
    frameworks.sgd_step(nets[1], x, t, 0.06)()
    expected = {name: backend.to_numpy(value) for name, value in nets[1].params.items()}
    assert_params_close(dict(nets[0].params.items()), expected, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- conftest options

RECORD_FIXTURES = '''
import json
import pytest

@pytest.fixture(scope="session")
def warm_up():
    """Nothing is timed here: no warm-up."""

def test_record(bench_mode, run_info):
    with open("seen.json", "w") as f:
        json.dump({"mode": bench_mode.name, "subset": bench_mode.subset, **run_info}, f)
'''


@pytest.fixture
def bench_session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``bench_session(*options, tests=RECORD_FIXTURES)``: a pytest run (in this process) of
    ``tests`` with ``benchmarks/conftest.py`` as a plugin, on the CPU; its result and what
    ``test_record`` saw (``None`` if it did not run)."""
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("XPNET_DEVICE", "cpu")
    monkeypatch.delenv("XPNET_BENCH", raising=False)
    # pytest-benchmark turns itself off in a pytest-xdist worker, which it tells by this name.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)

    def run(*options: str, tests: str = RECORD_FIXTURES) -> tuple[Any, dict[str, Any] | None]:
        seen = pytester.path / "seen.json"
        seen.unlink(missing_ok=True)
        pytester.makepyfile(test_inner=tests)
        result = pytester.runpytest_inprocess(
            "-p", "benchmarks.conftest", "-p", "no:cacheprovider", *options
        )
        return result, json.loads(seen.read_text()) if seen.exists() else None

    return run


def test_the_benchmarks_run_in_quick_mode_unless_asked_for_the_full_one(
    bench_session: Any,
) -> None:
    assert bench_session("--xpnet-data", "synthetic")[1]["mode"] == "quick"
    assert bench_session("--xpnet-data", "synthetic", "--xpnet-full")[1]["mode"] == "full"


def test_xpnet_subset_sets_the_numerical_gradients_subset(bench_session: Any) -> None:
    _, seen = bench_session("--xpnet-data", "synthetic", "--xpnet-subset", "7")
    assert (seen["mode"], seen["subset"]) == ("quick", 7)


def test_an_xpnet_subset_below_one_is_refused(bench_session: Any) -> None:
    result, seen = bench_session("--xpnet-data", "synthetic", "--xpnet-subset", "0")
    assert seen is None and result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--xpnet-subset must be >= 1, got 0" in result.stdout.str() + result.stderr.str()


def test_xpnet_data_picks_the_data_the_records_name(bench_session: Any) -> None:
    _, seen = bench_session("--xpnet-data", "synthetic")
    assert seen["data"] == "synthetic"
    assert seen["data_description"].startswith("synthetic (4,000 train / 1,000 test")


def test_the_records_name_the_backend_and_device_of_the_run(bench_session: Any) -> None:
    _, seen = bench_session("--xpnet-data", "synthetic")
    assert (seen["run_backend"], seen["run_device"]) == ("numpy", "cpu")


def test_a_benchmarks_median_is_found_by_kind_framework_batch_and_network(
    bench_session: Any,
) -> None:
    tests = (
        RECORD_FIXTURES
        + """
def test_timed(timed):
    timed(lambda: None, kind="analytic", framework="xpnet", batch=3)

def test_medians(medians):
    assert list(medians) == [("analytic", "xpnet", 3, "TwoLayerNet(784, 50, 10)")]
"""
    )
    result, _ = bench_session("--xpnet-data", "synthetic", tests=tests)
    result.assert_outcomes(passed=3)


SLEEPS_2_S = '''
import time

import pytest

@pytest.fixture(scope="session")
def warm_up():
    """Nothing is timed here: no warm-up."""

def test_sleep():
    time.sleep(2.0)
'''


def test_the_tests_timeout_from_the_configuration_is_lifted_from_benchmarks(
    bench_session: Any,
) -> None:
    pytest.importorskip("pytest_timeout")
    ini = ("-o", "timeout=0.5", "-o", "timeout_method=signal")  # signal: fails the test only
    result, _ = bench_session(*ini, tests=SLEEPS_2_S)
    result.assert_outcomes(passed=1)


def test_a_timeout_asked_for_on_the_command_line_applies_to_benchmarks(
    bench_session: Any,
) -> None:
    pytest.importorskip("pytest_timeout")
    result, _ = bench_session("--timeout", "0.5", "-o", "timeout_method=signal", tests=SLEEPS_2_S)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Timeout*>0.5s*"])  # 2.4 adds "(...) from pytest-timeout"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("XPNET_BENCH", "fast", "XPNET_BENCH='fast': expected 'quick' or 'full'"),
        ("XPNET_DEVICE", "gpu", "unknown device 'gpu' (from XPNET_DEVICE or --device)"),
    ],
)
def test_a_bad_mode_or_device_in_the_environment_is_one_usage_error(
    bench_session: Any, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    result, seen = bench_session("--xpnet-data", "synthetic")
    assert seen is None and result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stdout.str() + result.stderr.str()


def test_a_device_that_is_missing_skips_the_benchmarks_with_the_reason(
    bench_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XPNET_DEVICE", "cuda:99")  # no machine has it: parsed, then missing
    result, seen = bench_session("--xpnet-data", "synthetic", "-rs")
    assert seen is None
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*XPNET_DEVICE=cuda:99: *"])


# --------------------------------------------------------------------------- the JSON file


@pytest.fixture
def conftest(bench_module: Any, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """``benchmarks/conftest.py``'s JSON hooks, with a session that began at load 0.5 and a
    load of ``loads[0]`` now (``loads`` may be changed: a fake ``os.getloadavg``)."""
    module = bench_module("conftest")
    loads = [1.25]
    monkeypatch.setattr(module.os, "getloadavg", lambda: (loads[0], 0.0, 0.0))
    config = SimpleNamespace(stash={module.LOAD_AT_START: 0.5})

    def machine_info() -> dict[str, Any]:
        info: dict[str, Any] = {}
        module.pytest_benchmark_update_machine_info(config, info)
        return info

    def output_json() -> dict[str, Any]:
        out: dict[str, Any] = {"benchmarks": []}
        module.pytest_benchmark_update_json(config, [], out)
        return out

    return SimpleNamespace(machine_info=machine_info, output_json=output_json, loads=loads)


def test_machine_info_is_the_same_in_every_run_on_one_machine(
    conftest: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # a run that never imports it
    first = conftest.machine_info()
    conftest.loads[0] = 3.5
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(__version__="imported"))
    assert conftest.machine_info() == first


def test_machine_info_gives_pytorchs_installed_version_without_importing_it(
    conftest: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    try:
        installed = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        installed = "not installed"
    versions = conftest.machine_info()["xpnet"]
    assert versions["torch"] == installed
    assert "torch" not in sys.modules
    assert not any(key.startswith("load_average") for key in versions)


def test_the_load_averages_go_beside_the_summary_in_the_json(conftest: SimpleNamespace) -> None:
    out = conftest.output_json()
    assert out["xpnet_load_average"] == {"start": 0.5, "end": 1.25}
    assert out["xpnet_summary"] == {"runs": []}


def test_an_unknown_load_average_is_none_in_the_json(
    conftest: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_load_average() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", no_load_average)
    assert conftest.output_json()["xpnet_load_average"]["end"] is None


def test_a_benchmark_json_keeps_the_load_averages_out_of_machine_info(
    bench_session: Any, tmp_path: Path
) -> None:
    tests = (
        RECORD_FIXTURES + "\ndef test_timed(timed):\n    timed(lambda: None, kind='x', batch=1)\n"
    )
    out = tmp_path / "out.json"
    result, _ = bench_session(
        "--xpnet-data", "synthetic", "--benchmark-json", str(out), tests=tests
    )
    result.assert_outcomes(passed=2)
    data = json.loads(out.read_text())
    assert set(data["xpnet_load_average"]) == {"start", "end"}
    assert "torch" in data["machine_info"]["xpnet"]
    assert not any(key.startswith("load_average") for key in data["machine_info"]["xpnet"])


# --------------------------------------------------------------------------- helper scripts

HELPER_SCRIPTS = [
    "spread", "step_overhead", "alignment", "instructions", "update_after_product",
    "profile_convnet", "profile_gradcheck", "tolerance_sweep", "checker_peer", "elementwise",
]  # fmt: skip


@pytest.mark.parametrize("name", HELPER_SCRIPTS)
def test_each_helper_script_prints_its_usage_on_help_and_measures_nothing(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m benchmarks.{name} [-h]")
    # the help, the script's description in it, and nothing printed after it: the lines
    # after -h's are other options'
    after_help = proc.stdout.split("show this help message and exit\n", 1)[1]
    assert all(line.startswith("  --") for line in after_help.splitlines())
    doc = ast.get_docstring(ast.parse((ROOT / "benchmarks" / f"{name}.py").read_text()))
    assert doc.splitlines()[0] in proc.stdout


@pytest.mark.parametrize("name", ["spread", "instructions"])
def test_the_step_helpers_take_a_network_and_a_batch_as_before(
    bench_module: Any, name: str
) -> None:
    module = bench_module(name)
    assert vars(module.parse_args([])) == {"network": "course", "batch": 100}
    assert vars(module.parse_args(["two-layer", "10"])) == {"network": "two-layer", "batch": 10}


@pytest.mark.parametrize(
    ("args", "message"),
    [(["gpu"], "invalid choice: 'gpu'"), (["course", "0"], "batch must be >= 1, got 0")],
)
def test_the_step_helpers_name_a_bad_argument(
    bench_module: Any, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_module("spread").parse_args(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


SCRIPT_ARGUMENTS = [  # (script, option, bad value, what the error says it expected)
    ("gradcheck_convnet", "--samples", "0", "expected an integer > 0"),
    ("gradcheck_convnet", "--h", "0", "expected a number > 0"),
    ("gradcheck_convnet", "--h", "nan", "expected a number > 0"),
    ("profile_gradcheck", "--rounds", "0", "expected an integer > 0"),
    ("tolerance_sweep", "--h", "-0.5", "expected a number > 0"),
    ("tolerance_sweep", "--atol", "-1", "expected a number >= 0"),
    ("checker_peer", "--seeds", "0", "expected an integer > 0"),
    ("torch_convnet_train", "--batch-size", "-1", "expected an integer > 0"),
    ("torch_convnet_train", "--epochs", "0", "expected an integer > 0"),
    ("torch_convnet_train", "--epochs", "two", "expected an integer > 0"),
    ("torch_convnet_train", "--lr", "-0.001", "expected a number > 0"),
    ("torch_convnet_train", "--dataset", "cifar", "invalid choice"),
]


@pytest.mark.parametrize(
    ("name", "option", "value", "expected"),
    SCRIPT_ARGUMENTS,
    ids=[" ".join(a[:3]) for a in SCRIPT_ARGUMENTS],
)
def test_the_scripts_name_a_bad_argument_before_doing_any_work(
    bench_module: Any,
    capsys: pytest.CaptureFixture,
    name: str,
    option: str,
    value: str,
    expected: str,
) -> None:
    if name == "torch_convnet_train":
        pytest.importorskip("torch")
    module = bench_module(name)
    parse = module.parse_args if name == "tolerance_sweep" else module.main
    with pytest.raises(SystemExit) as exc:
        parse([option, value])
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert exc.value.code == 2
    assert last_line.startswith(f"python -m benchmarks.{name}: error: argument {option}: ")
    assert expected in last_line and repr(value) in last_line


@pytest.mark.slow
def test_checker_peer_reports_every_case_and_both_checkers_totals_at_one_seed(
    bench_module: Any, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("torch")
    module = bench_module("checker_peer")
    assert module.main(["--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert all(case.name in out for case in module.CASES)
    correct = sum(case.correct for case in module.CASES)
    wrong = len(module.CASES) - correct
    for checker in module.CHECKERS:
        totals = rf"^{checker}: false alarms \d+ of {correct}, misses \d+ of {wrong}, [\d.]+ s$"
        assert re.search(totals, out, re.MULTILINE), out


def test_machine_info_says_a_cuda_device_without_cupy_is_unavailable_and_skipped(
    conftest: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XPNET_DEVICE", "cuda")
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    device = conftest.machine_info()["xpnet"]["device"]
    assert device.startswith(
        "cuda:0 unavailable (device 'cuda' needs CuPy, which is not installed: "
    )
    assert device.endswith("), its benchmarks skipped")
