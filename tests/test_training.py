"""The training loop on a tiny separable problem: it learns, batch size 1 works, seeds
reproduce, the history holds what it says, resuming matches an uninterrupted run; plus the
progress bar and the learning-curve plot."""

import math
import re
import sys
import warnings

import numpy as np
import pytest

from xpnet import MultiLayerNet, Sequential
from xpnet.backend import namespace, namespace_of, to_device, to_numpy
from xpnet.checkpoint import HyperparametersDiffer, load_params, read_metadata, save_params
from xpnet.layers import Affine, ReLU, SoftmaxWithLoss
from xpnet.opcount import count_operations, counting
from xpnet.optim import OPTIMIZERS, SGD, Adam, Momentum, Optimizer, make_optimizer
from xpnet.schedules import ExponentialLR, MultiStepLR, StepLR
from xpnet.training import (
    EpochResult,
    History,
    Trainer,
    TrainingDiverged,
    evaluate,
    frozen_names,
    train,
)


def blobs(xp, n_train=60, n_test=20, seed=0, one_hot=False):
    """Two Gaussian blobs in 4-D, linearly separable: class = sign of a fixed direction."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    labels = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 4)) * 0.5 + (2.0 * labels[:, None] - 1.0) * np.array([1, 1, 0, 0])
    t = np.eye(2)[labels] if one_hot else labels
    tdtype = "float64" if one_hot else "int64"
    return (
        to_device(x[:n_train], dtype="float64", xp=xp),
        to_device(t[:n_train], dtype=tdtype, xp=xp),
        to_device(x[n_train:], dtype="float64", xp=xp),
        to_device(t[n_train:], dtype=tdtype, xp=xp),
    )


def make_net(xp, seed=0):
    return MultiLayerNet(4, [6], 2, weight_init=0.1, dtype="float64", seed=seed, xp=xp)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_training_step_never_reads_back_to_the_host(name):
    """On a GPU a read (``float(loss)``, ``if xp.any(...)``) would wait for every kernel."""
    net = make_net(namespace("cpu"))
    x, t, _, _ = blobs(namespace("cpu"), one_hot=True)
    optimizer = make_optimizer(name, lr=0.1)
    for _ in range(2):  # the first update creates the optimizer's state
        ops = count_operations(
            lambda x, t: optimizer.update(net.params, net.gradient(x, t)), x, t, params=net.params
        )
        assert ops.array_ops > 0 and ops.host_reads == 0, dict(ops)


def test_an_epoch_never_reads_back_to_the_host():
    xp = namespace("cpu")
    x, t, x_test, t_test = (counting(a) for a in blobs(xp, one_hot=True))
    net = make_net(xp)
    trainer = Trainer(net, SGD(0.1), x, t, x_test, t_test, epochs=1, batch_size=10, progress=False)
    order = to_device(np.arange(x.shape[0]), dtype="int64", xp=xp)
    ops = count_operations(trainer.train_epoch, order, params=net.params)
    assert ops["take"] == 2 * 6 and ops.host_reads == 0, dict(ops)  # x and t of 6 batches


def test_training_reduces_the_loss_and_learns(xp):
    data = blobs(xp)
    net = make_net(xp)
    history = train(net, SGD(lr=0.5), *data, epochs=5, batch_size=10, seed=0)
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.train_acc[-1] >= 0.95
    assert history.test_acc[-1] >= 0.9
    assert net.params["W1"].dtype == xp.float64  # parameters stay where they were


def test_batch_size_one_trains_per_sample(cpu_xp):
    data = blobs(cpu_xp, n_train=20, n_test=5)
    trainer = Trainer(make_net(cpu_xp), SGD(lr=0.1), *data, epochs=2, batch_size=1, seed=0)
    history = trainer.fit()
    assert trainer.batches_per_epoch == 20
    assert history.iterations == [20, 40]
    assert history.train_loss[-1] < history.train_loss[0]


def forward_by_hand(p, x):
    """make_net's Affine-ReLU-Affine in NumPy: the hidden activations and the softmax."""
    h = np.maximum(x @ p["W1"] + p["b1"], 0.0)
    y = h @ p["W2"] + p["b2"]
    e = np.exp(y - y.max(axis=1, keepdims=True))
    return h, e / e.sum(axis=1, keepdims=True)


def sgd_by_hand(params, batches, lr):
    """Plain SGD in NumPy on make_net's network, softmax cross-entropy (mean over a batch)."""
    p = {k: v.copy() for k, v in params.items()}
    for x, t in batches:
        h, probs = forward_by_hand(p, x)
        dy = (probs - t) / len(t)  # t: one-hot rows, as the trainer passes them
        dh = (dy @ p["W2"].T) * (h > 0)
        grads = {"W1": x.T @ dh, "b1": dh.sum(0), "W2": h.T @ dy, "b2": dy.sum(0)}
        for k in p:
            p[k] -= lr * grads[k]
    return p


def test_a_partial_last_batch_is_used(cpu_xp):
    x, t, x_test, t_test = blobs(cpu_xp, n_train=25)
    net = make_net(cpu_xp)
    initial = {k: to_numpy(v).copy() for k, v in net.params.items()}
    batches = []
    gradient = net.gradient

    def recording_gradient(xb, tb):
        batches.append((to_numpy(xb).copy(), to_numpy(tb).copy()))
        return gradient(xb, tb)

    net.gradient = recording_gradient
    trainer = Trainer(net, SGD(lr=0.1), x, t, x_test, t_test, epochs=1, batch_size=10, seed=0)
    assert trainer.fit().iterations == [3]
    assert [len(tb) for _, tb in batches] == [10, 10, 5]
    seen = np.concatenate([xb for xb, _ in batches])  # every sample once, the remainder too
    np.testing.assert_array_equal(np.unique(seen, axis=0), np.unique(to_numpy(x), axis=0))
    expected = sgd_by_hand(initial, batches, lr=0.1)
    for k in expected:
        np.testing.assert_allclose(to_numpy(net.params[k]), expected[k], rtol=1e-10, atol=1e-12)


def test_seeded_runs_are_reproducible_and_seeds_matter(cpu_xp):
    def run(seed):
        net = make_net(cpu_xp)
        history = train(net, Momentum(lr=0.1), *blobs(cpu_xp), epochs=3, batch_size=7, seed=seed)
        return history, {k: to_numpy(v) for k, v in net.params.items()}

    (h1, p1), (h2, p2), (_, p3) = run(0), run(0), run(1)
    assert h1.train_loss == h2.train_loss and h1.test_acc == h2.test_acc
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    assert any(not np.array_equal(p1[k], p3[k]) for k in p1)


def test_history_content_and_callback(cpu_xp):
    seen = []
    x, t, x_test, t_test = blobs(cpu_xp)
    net = make_net(cpu_xp)
    trainer = Trainer(
        net, SGD(lr=0.3), x, t, x_test, t_test, epochs=3, batch_size=20, seed=0,
        callback=seen.append,
    )  # fmt: skip
    history = trainer.fit()
    assert len(history) == 3
    assert history.epochs == [1, 2, 3]
    assert history.iterations == [3, 6, 9]
    d = history.as_dict()
    assert set(d) == {
        "epochs", "iterations", "train_acc", "test_acc", "train_loss", "test_loss", "seconds"
    }  # fmt: skip
    assert all(len(v) == 3 for v in d.values())
    final = {k: to_numpy(v) for k, v in net.params.items()}  # the last epoch, recomputed
    for xs, ts, acc, loss in (
        (x, t, "train_acc", "train_loss"),
        (x_test, t_test, "test_acc", "test_loss"),
    ):
        labels = to_numpy(ts)
        probs = forward_by_hand(final, to_numpy(xs))[1]
        assert d[acc][-1] == np.mean(probs.argmax(axis=1) == labels)
        cross_entropy = -np.mean(np.log(probs[np.arange(len(labels)), labels]))
        assert d[loss][-1] == pytest.approx(cross_entropy, rel=1e-9)
    assert all(isinstance(v, float) and v > 0 for v in d["train_loss"] + d["seconds"])
    assert History.from_dict(d) == history
    assert [r.epoch for r in seen] == [1, 2, 3]
    assert isinstance(seen[-1], EpochResult)
    assert seen[-1].epochs == 3 and seen[-1].test_acc == history.test_acc[-1]


def test_evaluation_puts_1000_samples_through_the_network_at_a_time(cpu_xp):
    # As accuracy does: the conv net's layers on 10,000 images at once took 1.8 GB more.
    x, t, _, _ = blobs(cpu_xp, n_train=2500)
    net = make_net(cpu_xp)
    targets = to_device(np.eye(2)[to_numpy(t)], dtype="float64", xp=cpu_xp)
    sizes, predict = [], net.predict
    net.predict = lambda x: sizes.append(x.shape[0]) or predict(x)
    evaluate(net, x, t, targets)
    assert sizes == [1000, 1000, 500]


def test_evaluation_matches_the_network_and_chunks_do_not_matter(cpu_xp):
    x, t, _, _ = blobs(cpu_xp, n_train=23)
    net = make_net(cpu_xp)
    targets = to_device(np.eye(2)[to_numpy(t)], dtype="float64", xp=cpu_xp)
    whole = evaluate(net, x, t, targets, batch_size=100)
    chunked = evaluate(net, x, t, targets, batch_size=4)
    assert whole[0] == chunked[0] == net.accuracy(x, t)
    assert whole[1] == pytest.approx(chunked[1], rel=1e-12)
    assert whole[1] == pytest.approx(float(net.loss(x, t)), rel=1e-12)


def test_one_hot_labels_and_eval_samples(cpu_xp):
    history = train(
        make_net(cpu_xp), SGD(lr=0.5), *blobs(cpu_xp, one_hot=True), epochs=2, batch_size=10,
        seed=0, eval_samples=10,
    )  # fmt: skip
    assert all(round(a * 10) == a * 10 for a in history.train_acc)  # accuracies out of 10


def test_bad_labels_and_shapes_are_reported(cpu_xp):
    x, t, xt, tt = blobs(cpu_xp)
    bad = to_device([5] * x.shape[0], dtype="int64", xp=cpu_xp)
    with pytest.raises(ValueError, match=r"label 5 is out of range.*\[0, 1\]"):
        Trainer(make_net(cpu_xp), SGD(), x, bad, xt, tt, epochs=1)
    with pytest.raises(ValueError, match="differ in length"):
        Trainer(make_net(cpu_xp), SGD(), x, tt, xt, tt, epochs=1)
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(make_net(cpu_xp), SGD(), x, t, xt, tt, epochs=1, batch_size=0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": 1.5}, "epochs must be an integer >= 0, got 1.5"),
        ({"epochs": -1}, "epochs must be an integer >= 0, got -1"),
        ({"batch_size": True}, "batch_size must be an integer >= 1, got True"),
        ({"eval_samples": 0}, "eval_samples must be an integer >= 1, got 0"),
        ({"eval_samples": -1}, "eval_samples must be an integer >= 1, got -1"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"target_range": (1.0, 0.0)}, r"low < high, got \(1.0, 0.0\)"),
        ({"target_range": (0.5, 0.5)}, r"low < high, got \(0.5, 0.5\)"),
        ({"target_range": [0.1]}, r"target_range must be a pair \(low, high\), got \[0.1\]"),
        ({"target_range": (0.0, 1.0, 2.0)}, r"target_range must be a pair"),
        ({"target_range": 0.5}, r"target_range must be a pair \(low, high\), got 0.5"),
        ({"target_range": (0.0, math.inf)}, r"target_range must be finite"),
        ({"target_range": (math.nan, 1.0)}, r"target_range must be finite"),
        ({"epochs": 1, "start_epoch": 3}, r"start_epoch 3 is past epochs 1"),
        ({"epochs": 1, "start_epoch": 2}, r"start_epoch 2 is past epochs 1"),
    ],
)
def test_bad_trainer_settings_name_the_setting_and_value(cpu_xp, settings, message):
    x, t, xt, tt = blobs(cpu_xp)
    with pytest.raises(ValueError, match=message):
        Trainer(make_net(cpu_xp), SGD(), x, t, xt, tt, **{"epochs": 1, **settings})


@pytest.mark.parametrize(
    "settings", [{"epochs": 1.5}, {"epochs": "1"}, {"batch_size": True}, {"seed": "0"}]
)
def test_a_trainer_setting_of_the_wrong_type_is_a_type_error(cpu_xp, settings):
    x, t, xt, tt = blobs(cpu_xp)
    ((name, value),) = settings.items()
    with pytest.raises(TypeError, match=rf"{name} must be an integer >= \d, got {value!r}"):
        Trainer(make_net(cpu_xp), SGD(), x, t, xt, tt, **{"epochs": 1, **settings})


def test_a_trainers_repr_gives_the_network_optimizer_data_settings_and_progress(xp):
    x, t, xt, tt = blobs(xp)
    trainer = Trainer(make_net(xp), SGD(lr=0.5), x, t, xt, tt, epochs=2, batch_size=20, seed=3)
    trainer.fit()
    assert repr(trainer) == (
        "Trainer(net=MultiLayerNet, optimizer=SGD(lr=0.5), x_train=float64[60, 4], "
        "x_test=float64[20, 4], epochs=2, batch_size=20, seed=3, epoch=2, iterations=6)"
    )


@pytest.mark.parametrize(
    "target_range", [("0.1", "0.9"), (None, 1.0), (False, True), (0.0, "1"), (0.0, None)]
)
def test_a_target_range_of_other_than_numbers_is_a_type_error(cpu_xp, target_range):
    x, t, xt, tt = blobs(cpu_xp)
    with pytest.raises(TypeError, match=r"target_range must hold two numbers"):
        Trainer(make_net(cpu_xp), SGD(), x, t, xt, tt, epochs=1, target_range=target_range)


@pytest.mark.parametrize(
    ("optimizer", "message"),
    [
        ("sgd", r"got the name 'sgd': make one with xpnet.optim.make_optimizer\('sgd', lr=...\)"),
        (SGD, r"got the class SGD: pass an instance, SGD\(lr=...\)"),
        (0.01, r"got an object of type float"),
    ],
)  # fmt: skip
def test_an_optimizer_that_is_not_one_is_refused_naming_it(cpu_xp, optimizer, message):
    # The book's Trainer takes optimizer='sgd', optimizer_param={'lr': 0.01}: a name.
    x, t, xt, tt = blobs(cpu_xp)
    expected = r"optimizer must be an optimizer with update\(params, grads\), such as .*; "
    with pytest.raises(TypeError, match=expected + message):
        Trainer(make_net(cpu_xp), optimizer, x, t, xt, tt, epochs=1)


def test_the_books_argument_order_is_refused_naming_xpnets(cpu_xp):
    # The book's Trainer(network, x_train, t_train, x_test, t_test, epochs=20, ...): one
    # positional argument short of xpnet's, which Python would report as t_test missing.
    x, t, xt, tt = blobs(cpu_xp)
    with pytest.raises(
        TypeError,
        match=rf"got an array of shape \({x.shape[0]}, {x.shape[1]}\): Trainer takes the "
        r"optimizer second, Trainer\(net, optimizer, x_train",
    ):
        Trainer(make_net(cpu_xp), x, t, xt, tt, epochs=1)


def test_a_target_range_with_target_rows_is_refused_not_ignored(cpu_xp):
    x, t, xt, tt = blobs(cpu_xp, one_hot=True)
    with pytest.raises(
        ValueError,
        match=r"t_train: target_range \(0.01, 0.99\).*rows already \(float64 of shape \(60, 2\)\)",
    ):
        Trainer(make_net(cpu_xp), SGD(), x, t, xt, tt, epochs=1, target_range=(0.01, 0.99))


def test_a_start_epoch_equal_to_epochs_trains_nothing_and_warns(cpu_xp):
    net = make_net(cpu_xp)
    before = {k: to_numpy(v).copy() for k, v in net.params.items()}
    trainer = Trainer(net, SGD(lr=0.1), *blobs(cpu_xp), epochs=2, start_epoch=2)
    with pytest.warns(UserWarning, match=r"all 2 epochs are done, nothing to train; set epochs"):
        history = trainer.fit()
    assert len(history) == 0
    for k, v in before.items():
        np.testing.assert_array_equal(to_numpy(net.params[k]), v)


def test_fit_again_once_done_warns_and_raising_epochs_goes_on(cpu_xp):
    # A second fit() returned the same history silently (Keras trains epochs more).
    trainer = Trainer(make_net(cpu_xp), SGD(lr=0.1), *blobs(cpu_xp), epochs=1, batch_size=20)
    trainer.fit()
    with pytest.warns(UserWarning, match=r"set epochs above 1 to go on from epoch 2") as w:
        assert trainer.fit().epochs == [1]
    assert w[0].filename == __file__
    trainer.epochs = 2
    assert trainer.fit().epochs == [1, 2]


@pytest.mark.parametrize("bad", ["features", "uint8"])
def test_a_test_set_the_network_cannot_take_fails_before_any_update(cpu_xp, bad):
    x, t, xt, tt = blobs(cpu_xp)
    xt = xt[:, :3] if bad == "features" else cpu_xp.astype(xt, cpu_xp.uint8)
    net = make_net(cpu_xp)
    before = {k: to_numpy(v).copy() for k, v in net.params.items()}
    with pytest.raises(ValueError, match="x_test"):
        Trainer(net, SGD(lr=0.1), x, t, xt, tt, epochs=3, progress=False).fit()
    for k, v in before.items():  # nothing moved
        np.testing.assert_array_equal(to_numpy(net.params[k]), v)


def test_a_test_set_of_one_sample_the_network_cannot_take_fails_up_front(cpu_xp):
    x, t, xt, tt = blobs(cpu_xp)
    with pytest.raises(ValueError, match=r"x_test \(float64 of shape \(1, 3\)\) does not fit"):
        Trainer(make_net(cpu_xp), SGD(lr=0.1), x, t, xt[:1, :3], tt[:1], epochs=1)


def test_a_training_set_the_network_cannot_take_is_named_with_its_shape(cpu_xp):
    # It was a LayerError naming only the probe's shape, (1, 3), and not x_train.
    x, t, xt, tt = blobs(cpu_xp)
    with pytest.raises(ValueError, match=r"^x_train \(float64 of shape \(60, 3\)\) does not fit"):
        Trainer(make_net(cpu_xp), SGD(lr=0.1), x[:, :3], t, xt, tt, epochs=1)


def test_integer_pixels_are_refused_saying_how_to_convert_them(cpu_xp):
    x, t, xt, tt = blobs(cpu_xp)
    with pytest.raises(ValueError, match=r"x_train \(uint8 .*x.astype\('float32'\) / 255"):
        Trainer(make_net(cpu_xp), SGD(lr=0.1), cpu_xp.astype(x, cpu_xp.uint8), t, xt, tt, epochs=1)


def test_an_empty_test_set_is_allowed(cpu_xp):
    x, t, xt, tt = blobs(cpu_xp)
    history = Trainer(make_net(cpu_xp), SGD(lr=0.1), x, t, xt[:0, :], tt[:0], epochs=1).fit()
    assert len(history) == 1 and math.isnan(history.test_acc[0])


def test_resuming_continues_the_epoch_count_and_matches_one_run(cpu_xp):
    data = blobs(cpu_xp)
    straight_net, straight_opt = make_net(cpu_xp), Momentum(lr=0.1)
    straight = train(straight_net, straight_opt, *data, epochs=4, batch_size=8, seed=3)

    net, opt = make_net(cpu_xp), Momentum(lr=0.1)
    first = train(net, opt, *data, epochs=2, batch_size=8, seed=3)
    resumed = Trainer(
        net, opt, *data, epochs=4, batch_size=8, seed=3, start_epoch=2, history=first
    ).fit()
    assert resumed.epochs == [1, 2, 3, 4]
    assert resumed.iterations == straight.iterations
    assert resumed.train_loss == straight.train_loss
    for k in net.params:
        np.testing.assert_array_equal(to_numpy(net.params[k]), to_numpy(straight_net.params[k]))


def test_a_schedule_sets_the_optimizers_lr_before_each_epoch(xp):
    optimizer = SGD(lr=0.4)
    seen = []
    trainer = Trainer(make_net(xp), optimizer, *blobs(xp), epochs=4, batch_size=10,
                      lr_schedule=StepLR(2, gamma=0.5),
                      callback=lambda r: seen.append((r.epoch, optimizer.lr, r.lr)))  # fmt: skip
    trainer.fit()
    assert seen == [(1, 0.4, 0.4), (2, 0.4, 0.4), (3, 0.2, 0.2), (4, 0.2, 0.2)]
    assert trainer.base_lr == 0.4


def test_an_epoch_without_a_schedule_records_no_lr_and_leaves_the_optimizers(xp):
    optimizer = SGD(lr=0.4)
    history = []
    Trainer(make_net(xp), optimizer, *blobs(xp), epochs=2, batch_size=10,
            callback=history.append).fit()  # fmt: skip
    assert [r.lr for r in history] == [None, None] and optimizer.lr == 0.4


def a_scheduled_run_and_its_checkpoint_at_epoch_2(xp, tmp_path):
    """``(data, schedule, straight, straight_net, path)``: 4 epochs of a scheduled run in one
    go (its history and network), and the file of the same run saved after epoch 2."""
    data, schedule = blobs(xp), MultiStepLR([1, 3], gamma=0.5)
    straight_net = make_net(xp)
    straight = train(straight_net, Momentum(lr=0.1), *data, epochs=4, batch_size=8, seed=3,
                     lr_schedule=schedule)  # fmt: skip
    net, opt = make_net(xp), Momentum(lr=0.1)
    first = train(net, opt, *data, epochs=2, batch_size=8, seed=3, lr_schedule=schedule)
    path = save_params(tmp_path / "part.npz", net, {"epoch": 2, "history": first.as_dict()},
                       optimizer=opt)  # fmt: skip
    return data, schedule, straight, straight_net, path


def test_a_scheduled_run_resumed_from_a_checkpoint_matches_one_run(cpu_xp, tmp_path):
    # The resumed optimizer is made with the base lr; the file holds epoch 2's.
    data, schedule, straight, straight_net, path = a_scheduled_run_and_its_checkpoint_at_epoch_2(
        cpu_xp, tmp_path
    )
    net, opt = make_net(cpu_xp, seed=1), Momentum(lr=0.1)
    with pytest.warns(HyperparametersDiffer, match=r"lr 0\.1 \(file: 0\.05\)"):
        meta = load_params(path, net, optimizer=opt)
    history = History.from_dict(meta["history"])
    resumed = Trainer(net, opt, *data, epochs=4, batch_size=8, seed=3, start_epoch=2,
                      history=history, lr_schedule=schedule).fit()  # fmt: skip
    assert resumed.train_loss == straight.train_loss
    assert_same_params(net, straight_net)


def test_base_lr_resumes_a_scheduled_run_with_the_optimizer_the_file_holds(cpu_xp, tmp_path):
    # The optimizer is built as the file has it, at epoch 2's lr (0.05); base_lr is the run's.
    data, schedule, straight, straight_net, path = a_scheduled_run_and_its_checkpoint_at_epoch_2(
        cpu_xp, tmp_path
    )
    net, opt = make_net(cpu_xp, seed=1), Momentum(lr=read_metadata(path)["optimizer"]["lr"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no HyperparametersDiffer: the lrs agree
        meta = load_params(path, net, optimizer=opt)
    assert opt.lr == 0.05
    seen = []
    resumed = Trainer(net, opt, *data, epochs=4, batch_size=8, seed=3, start_epoch=2,
                      history=History.from_dict(meta["history"]), lr_schedule=schedule,
                      base_lr=0.1, callback=lambda r: seen.append(r.lr)).fit()  # fmt: skip
    assert seen == [0.05, 0.025]
    assert resumed.train_loss == straight.train_loss
    assert_same_params(net, straight_net)


def test_base_lr_without_a_schedule_is_a_value_error(cpu_xp):
    with pytest.raises(ValueError, match=r"base_lr=0\.1 is an lr_schedule's base lr, but no "):
        Trainer(make_net(cpu_xp), SGD(0.1), *blobs(cpu_xp), epochs=1, base_lr=0.1)


@pytest.mark.parametrize(
    ("base_lr", "error", "message"),
    [
        (-0.1, ValueError, r"Invalid base_lr: -0\.1 \(expected a finite number >= 0\)"),
        (math.inf, ValueError, r"Invalid base_lr: inf \(expected a finite number >= 0\)"),
        ("0.1", TypeError, r"Invalid base_lr: '0\.1' \(expected a finite number >= 0, got str\)"),
    ],
)
def test_a_base_lr_that_is_no_learning_rate_is_named(cpu_xp, base_lr, error, message):
    with pytest.raises(error, match=message):
        Trainer(make_net(cpu_xp), SGD(0.1), *blobs(cpu_xp), epochs=1, lr_schedule=StepLR(1),
                base_lr=base_lr)  # fmt: skip


def test_verbose_gives_the_lr_only_with_a_schedule(xp, capsys):
    for schedule in (None, ExponentialLR(0.5)):
        Trainer(make_net(xp), SGD(0.1), *blobs(xp), epochs=2, batch_size=10, verbose=True,
                progress=False, lr_schedule=schedule).fit()  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert ["  lr " in line for line in lines] == [False, False, True, True]
    assert re.search(r"  loss \d\.\d{4}  lr 0\.05  \(\d", lines[3]), lines[3]


def test_a_schedule_without_an_lr_method_is_a_type_error(cpu_xp):
    with pytest.raises(TypeError, match=r"lr_schedule must be .* got an object of type float"):
        Trainer(make_net(cpu_xp), SGD(0.1), *blobs(cpu_xp), epochs=1, lr_schedule=0.5)


def test_a_schedule_for_an_optimizer_without_an_lr_is_a_type_error(cpu_xp):
    class BooksSGD:  # update() alone, its rate under another name
        def update(self, params, grads):
            pass

    with pytest.raises(TypeError, match=r"sets optimizer.lr, but the optimizer \(BooksSGD\) has"):
        Trainer(make_net(cpu_xp), BooksSGD(), *blobs(cpu_xp), epochs=1, lr_schedule=StepLR(1))


def overfitting_data(xp):
    """Two overlapping blobs, 30% of the training labels flipped: the test loss falls, then
    rises as a network of 32 hidden units learns the flips."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 80)
    x = rng.standard_normal((80, 4)) + (labels[:, None] - 0.5) * np.array([1, 1, 0, 0])
    flipped = np.where(rng.random(80) < 0.3, 1 - labels, labels)
    arrays = ((x[:50], "float64"), (flipped[:50], "int64"), (x[50:], "float64"),
              (labels[50:], "int64"))  # fmt: skip
    return [to_device(a, dtype=dtype, xp=xp) for a, dtype in arrays]


def overfitting_net(xp):
    return MultiLayerNet(4, [32], 2, weight_init=0.1, dtype="float64", seed=0, xp=xp)


def overfitting_trainer(xp, data, epochs):
    return Trainer(overfitting_net(xp), Momentum(lr=0.1), *data, epochs=epochs, batch_size=10)


def assert_same_params(net, other):
    for k in net.params:
        np.testing.assert_array_equal(to_numpy(net.params[k]), to_numpy(other.params[k]))


def test_stop_training_is_false_until_set_and_a_later_fit_goes_on(xp):
    data = overfitting_data(xp)
    trainer = overfitting_trainer(xp, data, epochs=5)
    assert trainer.stop_training is False
    trainer.callback = lambda result: setattr(trainer, "stop_training", result.epoch == 2)
    assert trainer.fit().epochs == [1, 2] and trainer.stop_training
    trainer.callback = None  # fit() clears the flag, as Keras's and Lightning's fit do
    assert trainer.fit().epochs == [1, 2, 3, 4, 5] and not trainer.stop_training
    straight = overfitting_trainer(xp, data, epochs=5)
    assert straight.fit().test_loss == trainer.history.test_loss
    assert_same_params(trainer.net, straight.net)


def test_a_stop_asked_before_fit_is_cleared_as_kerass_fit_clears_it(xp):
    data = overfitting_data(xp)
    trainer = overfitting_trainer(xp, data, epochs=3)
    trainer.stop_training = True  # before fit(), with no callback to set it again
    assert trainer.fit().epochs == [1, 2, 3] and trainer.epoch == 3


@pytest.mark.parametrize("start_epoch", [0, 1, 3])
def test_a_history_that_does_not_end_at_start_epoch_is_refused(cpu_xp, start_epoch):
    """Resuming with the history but without start_epoch would train epochs 1, 2, ... again,
    on the same shuffles, and append them to the history."""
    data = blobs(cpu_xp)
    first = train(make_net(cpu_xp), SGD(lr=0.1), *data, epochs=2, batch_size=8, seed=3)
    message = f"the history ends at epoch 2, but start_epoch is {start_epoch}"
    with pytest.raises(ValueError, match=message):
        Trainer(make_net(cpu_xp), SGD(lr=0.1), *data, epochs=4, start_epoch=start_epoch,
                history=first)  # fmt: skip
    assert first.epochs == [1, 2]


def test_progress_bar_is_drawn_when_asked_and_not_on_a_pipe(xp, capsys):
    data = blobs(xp)
    Trainer(make_net(xp), SGD(0.1), *data, epochs=1, batch_size=10, progress=True).fit()
    assert "epoch 1/1" in capsys.readouterr().err
    Trainer(make_net(xp), SGD(0.1), *data, epochs=1, batch_size=10).fit()  # stderr: no TTY
    assert capsys.readouterr().err == ""


def test_verbose_prints_a_line_per_epoch_to_stdout(xp, capsys):
    trainer = Trainer(make_net(xp), SGD(0.1), *blobs(xp), epochs=2, batch_size=10, verbose=True)
    history = trainer.fit()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for k, line in enumerate(lines):
        assert line.startswith(f"epoch {k + 1}/2  train acc {history.train_acc[k]:.4f}  ")
        assert f"test acc {history.test_acc[k]:.4f}  loss {history.train_loss[k]:.4f}" in line


def test_a_trainer_prints_nothing_unless_verbose(xp, capsys):
    Trainer(make_net(xp), SGD(0.1), *blobs(xp), epochs=1, batch_size=10, progress=False).fit()
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("book", "xpnet"),
    [
        ({"mini_batch_size": 10}, "batch_size=10 (not mini_batch_size)"),
        (
            {"evaluate_sample_num_per_epoch": 5},
            "eval_samples=5 (not evaluate_sample_num_per_epoch)",
        ),
        (
            {"optimizer": "Momentum", "optimizer_param": {"lr": 0.1, "momentum": 0.8}},
            "Trainer(network, xpnet.optim.make_optimizer('Momentum', lr=0.1, momentum=0.8), "
            "x_train, ...) (not optimizer_param)",
        ),
        (
            {"optimizer": "Adam", "optimizer_param": {}},
            "Trainer(network, xpnet.optim.make_optimizer('Adam'), x_train, ...)",
        ),
    ],
)
def test_the_books_trainer_keywords_are_refused_naming_xpnets(cpu_xp, book, xpnet):
    # The book's Trainer(network, x_train, t_train, x_test, t_test, ...): the data second.
    with pytest.raises(TypeError, match=re.escape(xpnet)):
        Trainer(make_net(cpu_xp), *blobs(cpu_xp), epochs=1, **book)


def two_epochs():
    return History([1, 2], [10, 20], [0.5, 0.8], [0.4, 0.7], [1.0, 0.5], [1.1, 0.6], [0.1] * 2)


@pytest.mark.parametrize("as_dict", [False, True])
def test_history_figure_draws_train_and_test_accuracy_and_loss_per_epoch(as_dict):
    pytest.importorskip("matplotlib")
    from xpnet.plotting import history_figure

    history = two_epochs()
    fig = history_figure(history.as_dict() if as_dict else history, title="mnist-5k")
    panels = {
        ax.get_ylabel(): [(line.get_label(), list(line.get_xdata()), list(line.get_ydata()))
                          for line in ax.get_lines()]
        for ax in fig.axes
    }  # fmt: skip
    assert panels == {
        "accuracy": [("train", [1, 2], [0.5, 0.8]), ("test", [1, 2], [0.4, 0.7])],
        "loss": [("train", [1, 2], [1.0, 0.5]), ("test", [1, 2], [1.1, 0.6])],
    }
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch", "epoch"]
    assert fig._suptitle.get_text() == "mnist-5k"  # Figure.get_suptitle is matplotlib 3.8's


def three_epochs():
    return History([1, 2, 3], [5, 10, 15], [0.3, 0.6, 0.9], [0.2, 0.5, 0.8], [2.0, 1.0, 0.4],
                   [2.1, 1.2, 0.7], [0.1] * 3)  # fmt: skip


def lines_by_panel(fig):
    """``{ylabel: [(label, colour, style, xdata, ydata), ...]}``, a panel's lines in order."""
    return {
        ax.get_ylabel(): [(line.get_label(), line.get_color(), line.get_linestyle(),
                           list(line.get_xdata()), list(line.get_ydata()))
                          for line in ax.get_lines()]
        for ax in fig.axes
    }  # fmt: skip


@pytest.mark.parametrize("given", ["mapping", "list"])
def test_history_figure_overlays_several_runs_on_shared_axes_with_a_legend(given):
    pytest.importorskip("matplotlib")
    from xpnet.plotting import history_figure

    sgd, adam = two_epochs(), three_epochs().as_dict()  # a History or its as_dict(), any length
    if given == "mapping":
        fig = history_figure({"sgd": sgd, "adam": adam}, title="optimizers")
    else:
        fig = history_figure([sgd, adam], labels=["sgd", "adam"], title="optimizers")
    assert lines_by_panel(fig) == {
        "accuracy": [
            ("sgd train", "C0", "-", [1, 2], [0.5, 0.8]),
            ("sgd test", "C0", "--", [1, 2], [0.4, 0.7]),
            ("adam train", "C1", "-", [1, 2, 3], [0.3, 0.6, 0.9]),
            ("adam test", "C1", "--", [1, 2, 3], [0.2, 0.5, 0.8]),
        ],
        "loss": [
            ("sgd train", "C0", "-", [1, 2], [1.0, 0.5]),
            ("sgd test", "C0", "--", [1, 2], [1.1, 0.6]),
            ("adam train", "C1", "-", [1, 2, 3], [2.0, 1.0, 0.4]),
            ("adam test", "C1", "--", [1, 2, 3], [2.1, 1.2, 0.7]),
        ],
    }
    for ax in fig.axes:  # one axes a panel, its legend naming every line
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert legend == ["sgd train", "sgd test", "adam train", "adam test"]


def test_history_figure_labels_a_list_without_labels_by_its_order():
    pytest.importorskip("matplotlib")
    from xpnet.plotting import history_figure

    (acc_ax, _) = history_figure([two_epochs(), two_epochs()]).axes
    assert [line.get_label() for line in acc_ax.get_lines()] == [
        "run 1 train", "run 1 test", "run 2 train", "run 2 test"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("runs", "kwargs", "error", "message"),
    [
        ({}, {}, ValueError, "no history to draw: got an empty dict"),
        ([], {}, ValueError, "no history to draw: got an empty list"),
        (History(), {}, ValueError, "history has no epochs to draw"),
        ({"sgd": two_epochs(), "adam": History()}, {}, ValueError,
         "history 'adam' has no epochs to draw"),
        ([two_epochs(), three_epochs()], {"labels": ["adam", "adam"]}, ValueError,
         "2 runs are labelled 'adam': the legend could not tell their curves apart"),
        ({1: two_epochs(), "1": three_epochs()}, {}, ValueError, "2 runs are labelled '1'"),
        ({"sgd": two_epochs(), "adam": 0.9}, {}, TypeError,
         "history 'adam' is a float, expected a History or its as_dict()"),
        ({"sgd": {"epochs": [1], "train_acc": [0.5]}}, {}, ValueError,
         "history 'sgd' has no test_acc, train_loss, test_loss: expected a History's as_dict()"),
        ("run.npz", {}, TypeError, "expected a History, its as_dict(), a mapping label -> "
         "history or a list of histories, got str"),
        ([two_epochs()], {"labels": ["sgd", "adam"]}, ValueError, "2 labels for 1 histories"),
        ({"sgd": two_epochs()}, {"labels": ["adam"]}, ValueError,
         "labels= names the histories of a list"),
    ],
    ids=["empty mapping", "empty list", "no epochs", "a run of no epochs", "a label twice",
         "keys shown alike", "not a history", "curves missing", "a file name",
         "labels too many", "labels with a mapping"],
)  # fmt: skip
def test_history_figure_refuses_what_is_not_histories_naming_it(runs, kwargs, error, message):
    pytest.importorskip("matplotlib")
    from xpnet.plotting import history_figure

    with pytest.raises(error, match=re.escape(message)):
        history_figure(runs, **kwargs)


def test_plot_history_writes_several_runs_to_one_file(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from xpnet import plotting

    drawn, draw = [], plotting.history_figure

    def recorded(*args, **kwargs):
        drawn.append(draw(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(plotting, "history_figure", recorded)
    runs = [two_epochs(), three_epochs()]
    path = plotting.plot_history(runs, tmp_path / "runs.png", labels=["a", "b"])
    assert path.read_bytes().startswith(b"\x89PNG")
    (fig,) = drawn
    assert [len(ax.get_lines()) for ax in fig.axes] == [4, 4]


def test_plot_history_of_no_epochs_writes_no_file(tmp_path):
    pytest.importorskip("matplotlib")
    from xpnet.plotting import plot_history

    with pytest.raises(ValueError, match="history has no epochs to draw"):
        plot_history(History(), tmp_path / "curves.png")
    assert list(tmp_path.iterdir()) == []


def test_history_figure_is_not_one_of_pyplots_so_a_notebook_shows_it_once():
    plt = pytest.importorskip("matplotlib.pyplot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from xpnet.plotting import history_figure

    before = plt.get_fignums()
    fig = history_figure(two_epochs())
    assert plt.get_fignums() == before  # the inline backend shows pyplot's figures again
    assert isinstance(fig.canvas, FigureCanvasAgg)  # drawn without pyplot's backend


def test_a_history_prints_a_row_per_epoch_as_xpnet_train_prints_its_numbers():
    history = History([1, 2], [10, 20], [0.5, 0.81234], [0.4, 0.7], [1.0, 0.5], [1.1, 0.6],
                      [0.123, 12.34])  # fmt: skip
    assert str(history) == (
        "History: 2 epochs\n"
        "epoch  iterations  train acc  test acc  train loss  test loss    time\n"
        "-----  ----------  ---------  --------  ----------  ---------  ------\n"
        "    1          10     0.5000    0.4000      1.0000     1.1000  0.12 s\n"
        "    2          20     0.8123    0.7000      0.5000     0.6000  12.3 s"
    )


@pytest.mark.parametrize(("epochs", "shown"), [
    (60, list(range(1, 61))),
    (61, [1, 2, 3, 4, 5, "...", 57, 58, 59, 60, 61]),
    (300, [1, 2, 3, 4, 5, "...", 296, 297, 298, 299, 300]),
])  # fmt: skip
def test_a_long_history_prints_its_first_and_last_epochs_as_pandas_prints_a_long_frame(
    epochs, shown
):
    n = range(1, epochs + 1)
    history = History(list(n), [10 * e for e in n], *([0.5] * epochs,) * 4, [0.1] * epochs)
    lines = str(history).splitlines()
    assert lines[0] == f"History: {epochs} epochs"
    rows = lines[3:]  # after the header and its rule
    assert [row.split()[0] for row in rows] == [str(e) for e in shown]
    if "..." in shown:
        assert rows[5].split() == ["..."] * 7


def test_an_empty_history_says_so():
    assert str(History()) == "History: no epochs"


def test_a_history_missing_a_column_prints_every_epoch_with_a_dash_there():
    data = two_epochs().as_dict()
    del data["seconds"]  # a dict kept from elsewhere
    rows = str(History.from_dict(data)).splitlines()[3:]
    assert [row.split()[0] for row in rows] == ["1", "2"]
    assert all(row.split()[-1] == "-" for row in rows)


def test_a_history_shows_its_table_in_ipython_and_keeps_the_dataclass_repr():
    from test_gradcheck import shown_in_ipython

    history = two_epochs()
    assert shown_in_ipython(history) == str(history)
    assert str(history).startswith("History: 2 epochs\nepoch  iterations")
    assert repr(history).startswith("History(epochs=[1, 2], iterations=[10, 20], train_acc=")
    assert eval(repr(history)) == history


def test_a_trained_history_prints_the_numbers_it_holds(xp):
    history = train(make_net(xp), SGD(lr=0.5), *blobs(xp), epochs=2, batch_size=10, seed=0)
    rows = str(history).splitlines()[3:]
    assert [row.split()[:6] for row in rows] == [
        [str(e), str(i), f"{a:.4f}", f"{b:.4f}", f"{c:.4f}", f"{d:.4f}"]
        for e, i, a, b, c, d in zip(
            history.epochs, history.iterations, history.train_acc, history.test_acc,
            history.train_loss, history.test_loss, strict=True,
        )
    ]  # fmt: skip


def test_plot_history_writes_a_png_atomically(tmp_path):
    pytest.importorskip("matplotlib")
    from xpnet.plotting import plot_history

    history = two_epochs()
    path = plot_history(history, tmp_path / "curve.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_history(history.as_dict(), tmp_path / "curve.png")  # a dict works too; overwrites
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]


@pytest.mark.parametrize("as_dict", [False, True])
def test_plot_history_draws_train_and_test_accuracy_and_loss(tmp_path, monkeypatch, as_dict):
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    from xpnet.plotting import plot_history

    drawn = []
    original = Axes.plot

    def recording_plot(ax, x, y, *args, **kwargs):
        drawn.append((ax, kwargs.get("label"), list(x), list(y)))
        return original(ax, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", recording_plot)
    history = two_epochs()
    plot_history(history.as_dict() if as_dict else history, tmp_path / "curve.png")
    panels = {ax.get_ylabel(): [(label, x, y) for a, label, x, y in drawn if a is ax]
              for ax, *_ in drawn}  # fmt: skip
    assert panels == {
        "accuracy": [("train", [1, 2], [0.5, 0.8]), ("test", [1, 2], [0.4, 0.7])],
        "loss": [("train", [1, 2], [1.0, 0.5]), ("test", [1, 2], [1.1, 0.6])],
    }


def test_plot_history_marks_whole_epochs_only(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from xpnet.plotting import plot_history

    saved = []
    original = Figure.savefig

    def recording_savefig(fig, *args, **kwargs):
        saved.append(fig)
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    epochs = [1, 2, 3, 4, 5]  # matplotlib's default ticks for these are 1.0, 1.5, ..., 5.0
    history = History(epochs, [10] * 5, [0.5] * 5, [0.4] * 5, [1.0] * 5, [1.1] * 5, [0.1] * 5)
    plot_history(history, tmp_path / "curve.png")
    (fig,) = saved
    for ax in fig.axes:
        assert all(float(tick).is_integer() for tick in ax.get_xticks())


def test_plot_history_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    from xpnet.plotting import PlottingUnavailableError, history_figure, plot_history

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlottingUnavailableError, match=r"pip install matplotlib"):
        plot_history(two_epochs(), tmp_path / "curve.png")
    assert not list(tmp_path.iterdir())
    with pytest.raises(PlottingUnavailableError, match=r"pip install matplotlib"):
        history_figure(two_epochs())


def test_a_fresh_start_at_a_later_epoch_counts_the_updates_of_the_epochs_done(cpu_xp):
    data = blobs(cpu_xp, n_train=60)  # 6 batches of 10 per epoch
    trainer = Trainer(make_net(cpu_xp), SGD(lr=0.1), *data, epochs=3, batch_size=10, start_epoch=2)
    assert trainer.batches_per_epoch == 6
    assert trainer.iterations == 2 * 6  # no history: the epochs done are full epochs
    assert trainer.fit().iterations == [3 * 6]


def test_each_epoch_has_its_own_shuffle(cpu_xp):
    x, t, x_test, t_test = blobs(cpu_xp, n_train=30)
    trainer = Trainer(make_net(cpu_xp), SGD(lr=0.1), x, t, x_test, t_test, epochs=3,
                      batch_size=10, seed=5)  # fmt: skip
    orders = []
    train_epoch = trainer.train_epoch

    def recording_train_epoch(order, label=""):
        orders.append(to_numpy(order).copy())
        return train_epoch(order, label)

    trainer.train_epoch = recording_train_epoch
    trainer.fit()
    rng = np.random.default_rng(5)  # epoch k: the k-th permutation of one seeded generator
    expected = [rng.permutation(30) for _ in range(3)]
    assert len(orders) == 3
    for got, want in zip(orders, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])


def test_eval_samples_limits_the_test_set_to_its_first_samples(cpu_xp):
    x, t, x_test, t_test = blobs(cpu_xp, n_train=30, n_test=25)
    net = make_net(cpu_xp)
    history = train(net, SGD(lr=0.5), x, t, x_test, t_test, epochs=1, batch_size=10, seed=0,
                    eval_samples=10)  # fmt: skip
    final = {k: to_numpy(v) for k, v in net.params.items()}
    labels = to_numpy(t_test)[:10]
    probs = forward_by_hand(final, to_numpy(x_test)[:10])[1]
    assert history.test_acc == [np.mean(probs.argmax(axis=1) == labels)]
    cross_entropy = -np.mean(np.log(probs[np.arange(10), labels]))
    assert history.test_loss[0] == pytest.approx(cross_entropy, rel=1e-9)


def test_target_range_applies_to_the_test_targets_too(cpu_xp):
    x, t, _, _ = blobs(cpu_xp, n_train=20)
    net = make_net(cpu_xp)
    history = train(net, SGD(lr=0.1), x, t, x, t, epochs=1, batch_size=10, seed=0,
                    target_range=(0.01, 0.99))  # fmt: skip
    assert history.test_loss == history.train_loss  # the same samples, the same targets
    final = {k: to_numpy(v) for k, v in net.params.items()}
    probs = forward_by_hand(final, to_numpy(x))[1]
    targets = 0.01 + 0.98 * np.eye(2)[to_numpy(t)]  # 0.99 at the label, 0.01 elsewhere
    cross_entropy = -np.mean(np.sum(targets * np.log(probs), axis=1))
    assert history.test_loss[0] == pytest.approx(cross_entropy, rel=1e-9)


def test_a_loss_that_turns_nan_stops_training_in_that_epoch(cpu_xp):
    seen = []
    x, t, x_test, t_test = blobs(cpu_xp)
    trainer = Trainer(
        make_net(cpu_xp), SGD(lr=1e100), x, t, x_test, t_test, epochs=5, batch_size=20,
        callback=seen.append,
    )  # fmt: skip
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged) as raised:
        trainer.fit()
    message = str(raised.value)
    assert "diverged in epoch 1 (iteration 3): the train loss is nan" in message
    assert "SGD(lr=1e+100)" in message and "start from smaller weights or compute in" in message
    assert raised.value.result.epoch == 1 and math.isnan(raised.value.result.train_loss)
    assert trainer.epoch == 1 and trainer.history.epochs == [1]
    assert seen == []  # the callback (a checkpoint, say) never sees the diverged epoch


@pytest.mark.parametrize("which", ["x_train", "x_test"])
def test_nan_in_the_data_is_refused_before_training_naming_where(cpu_xp, which):
    # It trained an epoch into NaN weights, and ended "diverged ... lower the learning
    # rate"; NaN in x_test gave NaN test losses without a word.
    data = dict(zip(["x_train", "t_train", "x_test", "t_test"], blobs(cpu_xp), strict=True))
    host = to_numpy(data[which]).copy()
    host[7, 1] = np.nan
    data[which] = to_device(host, xp=cpu_xp)
    with pytest.raises(ValueError, match=rf"^{which} holds 1 non-finite value of \d+, the first "
                       r"nan at \[7, 1\]: training on it"):  # fmt: skip
        Trainer(make_net(cpu_xp), SGD(lr=0.1), **data, epochs=3)


@pytest.mark.parametrize("value", [np.nan, -np.inf])
def test_a_non_finite_parameter_is_refused_before_training_naming_it_and_where(xp, value):
    # It trained, and the first epoch ended "diverged ... lower the learning rate".
    x, t, x_test, t_test = blobs(xp)
    net = make_net(xp)
    W2 = to_numpy(net.params["W2"]).copy()
    W2[1, 0] = value
    net.params["W2"] = to_device(W2, dtype=net.dtype, xp=xp)
    with pytest.raises(ValueError) as raised:
        Trainer(net, SGD(lr=0.1), x, t, x_test, t_test, epochs=1)
    assert str(raised.value) == (
        f"parameter 'W2' holds 1 non-finite value of {W2.size}, the first {value} at [1, 0] "
        "before training: training from it gives NaN; build the network again, or load a "
        "checkpoint saved before it diverged"
    )


def test_a_non_finite_optimizer_state_is_refused_before_training(xp):
    x, t, x_test, t_test = blobs(xp)
    net = make_net(xp)
    v = np.zeros(tuple(net.params["W1"].shape))
    v[0, :2] = np.nan
    opt = Momentum(lr=0.1)
    opt.load_state_dict({"buffers": {"v": {"W1": to_device(v, dtype=net.dtype, xp=xp)}}})
    with pytest.raises(ValueError, match=r"^optimizer state 'v' of 'W1' holds 2 non-finite "):
        Trainer(net, opt, x, t, x_test, t_test, epochs=1)


class BookSGD:
    """The book's ``common/optimizer.py`` SGD: ``update(params, grads)`` and nothing else."""

    def __init__(self, lr):
        self.lr = lr

    def update(self, params, grads):
        for key in params:
            params[key] -= self.lr * grads[key]


def test_an_optimizer_with_update_alone_trains_as_sgd_does(xp):
    # The finite check read every optimizer's state_dict(): AttributeError for the book's.
    x, t, x_test, t_test = blobs(xp)
    histories = [
        train(make_net(xp), optimizer, x, t, x_test, t_test, epochs=2)
        for optimizer in (SGD(lr=0.1), BookSGD(lr=0.1))
    ]
    first, second = (dict(h.as_dict(), seconds=None) for h in histories)
    assert first == second


def test_labels_out_of_range_are_named_with_where_the_first_is_and_how_many(xp):
    x, t, x_test, t_test = blobs(xp)
    labels = to_numpy(t).copy()
    labels[[7, 9, 30]] = [255, 2, 255]
    with pytest.raises(ValueError) as raised:
        Trainer(make_net(xp), SGD(lr=0.1), x, to_device(labels, xp=xp), x_test, t_test, epochs=1)
    assert str(raised.value) == (
        "t_train: label 255 is out of range (at index 7; 3 of 60 labels are): expected labels "
        "in [0, 1] for 2 classes"
    )


def test_integer_one_hot_rows_train_as_float_rows_do(cpu_xp):
    # The book's one-hot t = np.array([[0, 0, 1]]): SoftmaxWithLoss takes them, and so
    # does the Trainer, where they were "integer labels must have shape (N,)".
    x, t, x_test, t_test = blobs(cpu_xp, one_hot=True)
    histories = [
        train(make_net(cpu_xp), SGD(lr=0.1), x, rows, x_test, rows_test, epochs=2)
        for rows, rows_test in [
            (t, t_test),
            (cpu_xp.astype(t, cpu_xp.int64), cpu_xp.astype(t_test, cpu_xp.int64)),
        ]
    ]
    first, second = (dict(h.as_dict(), seconds=None) for h in histories)
    assert first == second


def test_a_large_but_finite_loss_is_not_divergence(cpu_xp):
    x, t, x_test, t_test = blobs(cpu_xp)
    history = Trainer(make_net(cpu_xp), SGD(lr=1e10), x, t, x_test, t_test, epochs=2).fit()
    assert history.epochs == [1, 2] and history.train_loss[-1] > 1e6


class InfiniteLoss:
    """A user's loss layer whose value is +inf while its gradient is finite (zero)."""

    def forward(self, y, t):
        self.zero = y * 0.0
        return namespace_of(y).sum(self.zero) + math.inf

    def backward(self, dout=1):
        return self.zero


def test_an_infinite_loss_stops_training_too(cpu_xp):
    x, t, x_test, t_test = blobs(cpu_xp)
    net = make_net(cpu_xp)
    net = Sequential(list(net.layers), loss=InfiniteLoss())
    trainer = Trainer(net, SGD(lr=0.1), x, t, x_test, t_test, epochs=3)
    with pytest.raises(TrainingDiverged, match="the train loss is inf"):
        trainer.fit()
    assert trainer.epoch == 1


def test_the_training_module_is_reached_from_the_package():
    import xpnet

    assert xpnet.training.TrainingDiverged is TrainingDiverged


def test_a_network_without_parameters_is_refused_by_name(cpu_xp):
    # next(iter(net.params.values())) raised a bare StopIteration.
    from xpnet.layers import ReLU, SoftmaxWithLoss

    x, t, x_test, t_test = blobs(cpu_xp)
    net = Sequential([ReLU()], loss=SoftmaxWithLoss())
    with pytest.raises(ValueError, match="Sequential has no parameters: there is nothing to train"):
        Trainer(net, SGD(0.1), x, t, x_test, t_test, epochs=1)


@pytest.mark.parametrize(
    "stack",
    [lambda net: Sequential(net.layers), lambda net: net[:3]],
    ids=["built-without-loss", "slice"],
)
def test_a_sequential_without_a_loss_is_refused_when_the_trainer_is_built(cpu_xp, stack):
    with pytest.raises(TypeError, match="this Sequential has no loss: built without loss="):
        Trainer(stack(make_net(cpu_xp)), SGD(0.1), *blobs(cpu_xp), epochs=1)


def test_labels_that_are_not_an_array_of_samples_are_named(cpu_xp):
    x, t, x_test, t_test = blobs(cpu_xp)
    with pytest.raises(TypeError, match="t_train must be an array, got list"):
        Trainer(make_net(cpu_xp), SGD(0.1), x, [0, 1] * 30, x_test, t_test, epochs=1)
    with pytest.raises(ValueError, match=r"t_test must be an array of samples .* 0-D"):
        Trainer(make_net(cpu_xp), SGD(0.1), x, t, x_test, t_test[0], epochs=1)


def test_float_labels_are_named_with_their_dtype_and_the_fix(cpu_xp):
    x, t, x_test, t_test = blobs(cpu_xp)
    floats = cpu_xp.astype(t, cpu_xp.float64)
    with pytest.raises(
        ValueError, match=r"t_train: .*got float64 of shape \(60,\): convert labels to integers"
    ):
        Trainer(make_net(cpu_xp), SGD(0.1), x, floats, x_test, t_test, epochs=1)


def test_a_column_of_labels_is_named_as_one_with_the_fix(xp):
    # It was refused as neither labels nor target rows, the column unmentioned.
    x, t, x_test, t_test = blobs(xp)
    column = xp.reshape(t, (-1, 1))
    with pytest.raises(
        ValueError,
        match=r"t_train: .*got int64 of shape \(60, 1\): a column of labels; pass t\.ravel\(\) "
        r"\(or t\.reshape\(-1\)\)",
    ):
        Trainer(make_net(xp), SGD(0.1), x, column, x_test, t_test, epochs=1)


def test_a_read_only_parameter_is_named_before_training():
    # numpy.broadcast_to's weights failed in the first update with NumPy's bare
    # "output array is read-only", naming no parameter.
    from xpnet.layers import Affine, SoftmaxWithLoss

    xp = namespace("cpu")
    x, t, x_test, t_test = blobs(xp)
    W = np.broadcast_to(np.float64(0.1), (4, 2))
    net = Sequential([Affine(W, np.zeros(2))], loss=SoftmaxWithLoss())
    with pytest.raises(ValueError, match="parameter 'W1' is a read-only array"):
        Trainer(net, SGD(0.1), x, t, x_test, t_test, epochs=1)


def test_inputs_that_require_grad_train_as_their_values_and_leave_no_autograd_graph():
    # Tracked inputs made every gradient tracked, and each in-place update chained the
    # parameters to the graph of every step before: memory grew by the step, unbounded.
    torch = pytest.importorskip("torch")
    xp = namespace_of(torch.empty(0))
    x, t, x_test, t_test = blobs(xp, one_hot=True)
    tracked = [a.clone().requires_grad_() for a in (x, t, x_test, t_test)]
    nets = make_net(xp), make_net(xp)
    for net, arrays in zip(nets, (tracked, (x, t, x_test, t_test)), strict=True):
        Trainer(net, SGD(0.1), *arrays, epochs=2, batch_size=10, progress=False).fit()
    for name, p in nets[0].params.items():
        assert not p.requires_grad, name
        assert torch.equal(p, nets[1].params[name]), name


def test_a_parameter_that_requires_grad_is_named_before_training():
    # A torch.nn.Parameter failed in the first update with autograd's "a leaf Variable
    # that requires grad is being used in an in-place operation", naming no parameter.
    torch = pytest.importorskip("torch")
    from xpnet.layers import Affine, SoftmaxWithLoss

    xp = namespace_of(torch.empty(0))
    x, t, x_test, t_test = blobs(xp)
    W = torch.nn.Parameter(torch.full((4, 2), 0.1, dtype=torch.float64))
    net = Sequential([Affine(W, torch.zeros(2, dtype=torch.float64))], loss=SoftmaxWithLoss())
    with pytest.raises(ValueError, match="parameter 'W1' is a PyTorch tensor with requires_grad"):
        Trainer(net, SGD(0.1), x, t, x_test, t_test, epochs=1)


def book_smooth_curve(x):
    """The book's ``common/util.py`` smooth_curve, verbatim (curves of 11 points or more)."""
    window_len = 11
    s = np.r_[x[window_len - 1 : 0 : -1], x, x[-1:-window_len:-1]]
    w = np.kaiser(window_len, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5 : len(y) - 5]


@pytest.mark.parametrize("length", [11, 12, 200])
def test_smooth_curve_is_the_books(length):
    from xpnet.plotting import smooth_curve

    losses = np.random.default_rng(length).random(length)
    np.testing.assert_allclose(smooth_curve(list(losses)), book_smooth_curve(losses), rtol=1e-15)


@pytest.mark.parametrize("length", range(11))
def test_smooth_curve_keeps_every_point_of_a_short_curve(length):
    from xpnet.plotting import smooth_curve

    # The book's gives fewer points back below 11; a constant stays itself under any window.
    assert smooth_curve([2.5] * length) == pytest.approx([2.5] * length, rel=1e-15)


def test_smooth_curve_takes_a_device_array(xp):
    from xpnet.plotting import smooth_curve

    losses = np.linspace(3.0, 1.0, 30) ** 2
    np.testing.assert_allclose(smooth_curve(to_device(losses, xp=xp)), book_smooth_curve(losses))


def test_smooth_curve_takes_a_list_of_0d_device_arrays():
    # net.loss per step, kept in a list: on a GPU np.asarray refused the whole list (an
    # array_api_strict device other than the CPU refuses it the same way).
    from xpnet.plotting import smooth_curve

    strict = pytest.importorskip("array_api_strict")
    losses = np.linspace(3.0, 1.0, 30) ** 2
    on_device = [strict.asarray(v, device=strict.Device("device1")) for v in losses]
    np.testing.assert_allclose(smooth_curve(on_device), book_smooth_curve(losses))


@pytest.mark.parametrize(
    ("values", "window", "message"),
    [
        ([1.0] * 20, 4, "window must be an odd integer >= 1, got 4"),
        ([1.0] * 20, 0, "window must be an odd integer >= 1, got 0"),
        ([[1.0, 2.0]] * 20, 11, r"a curve of shape \(T,\), got shape \(20, 2\)"),
    ],
)
def test_smooth_curve_rejects_a_bad_window_or_curve(values, window, message):
    from xpnet.plotting import smooth_curve

    with pytest.raises(ValueError, match=message):
        smooth_curve(values, window)


def test_shuffle_dataset_keeps_each_sample_with_its_target(xp):
    from xpnet.training import shuffle_dataset

    x = to_device(np.arange(40.0).reshape(10, 2, 2), xp=xp)  # sample k holds 4k .. 4k+3
    t = to_device(np.arange(10), dtype="int64", xp=xp)
    xs, ts = shuffle_dataset(x, t, seed=3)
    xs, ts = to_numpy(xs), to_numpy(ts)
    assert sorted(ts.tolist()) == list(range(10)) and ts.tolist() != list(range(10))
    np.testing.assert_array_equal(xs, 4.0 * ts[:, None, None] + np.arange(4.0).reshape(2, 2))


def test_shuffle_dataset_gives_a_seed_one_order_on_every_backend(xp):
    from xpnet.training import shuffle_dataset

    t = np.arange(50)
    on_host = shuffle_dataset(t[:, None] * 1.0, t, seed=7)[1]
    here = shuffle_dataset(to_device(t[:, None], xp=xp), to_device(t, dtype="int64", xp=xp), seed=7)
    np.testing.assert_array_equal(to_numpy(here[1]), on_host)
    assert not np.array_equal(shuffle_dataset(t, t, seed=8)[1], on_host)


def test_shuffle_dataset_refuses_sets_of_different_lengths(xp):
    from xpnet.training import shuffle_dataset

    x, t = to_device(np.zeros((5, 3)), xp=xp), to_device(np.zeros(4), xp=xp)
    with pytest.raises(ValueError, match=r"same number of samples, got 5 .*\(5, 3\).* 4 .*\(4,\)"):
        shuffle_dataset(x, t)


@pytest.mark.parametrize(
    ("n_train", "batch_size", "which"),
    [(61, 10, "the last batch of every epoch"), (1, 10, "every batch"), (60, 1, "every batch")],
)
def test_batches_of_one_sample_through_batchnorm_are_warned_of(xp, n_train, batch_size, which):
    x, t, xt, tt = blobs(xp, n_train=n_train)
    net = MultiLayerNet(4, [6], 2, use_batchnorm=True, dtype="float64", seed=0, xp=xp)
    with pytest.warns(UserWarning, match=rf"^{which} is one sample .* \(layers\[1\]\) normalizes"):
        Trainer(net, SGD(), x, t, xt, tt, epochs=1, batch_size=batch_size)


@pytest.mark.parametrize(("n_train", "use_batchnorm"), [(62, True), (61, False)])
def test_batches_of_two_or_more_or_no_batchnorm_train_without_that_warning(
    xp, n_train, use_batchnorm
):
    x, t, xt, tt = blobs(xp, n_train=n_train)
    net = MultiLayerNet(4, [6], 2, use_batchnorm=use_batchnorm, dtype="float64", seed=0, xp=xp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(net, SGD(), x, t, xt, tt, epochs=1, batch_size=10)


@pytest.mark.parametrize("name", ["train", "train_acc_list", "test_acc_list", "train_loss_list"])
def test_the_books_trainer_attributes_name_fit_and_its_history(cpu_xp, name):
    trainer = Trainer(make_net(cpu_xp), SGD(), *blobs(cpu_xp), epochs=1)
    with pytest.raises(AttributeError, match=rf"for the book's {name}, use .*trainer\.fit\(\)"):
        getattr(trainer, name)


# Trainer(frozen=...): parameters left untrained, as PyTorch's requires_grad_(False) and
# Keras's trainable = False leave them: bit for bit, with no optimizer state.


def _snapshot(net):
    return {name: to_numpy(p).copy() for name, p in net.params.items()}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_frozen_parameters_stay_bit_for_bit_while_the_others_train(xp, name):
    net = MultiLayerNet(
        4, [6], 2, weight_init=0.1, dtype="float64", seed=0, weight_decay=0.1, xp=xp
    )
    before = _snapshot(net)
    Trainer(
        net, make_optimizer(name, lr=0.1), *blobs(xp), epochs=2, batch_size=10, frozen=["W1", "b1"]
    ).fit()
    after = _snapshot(net)
    np.testing.assert_array_equal(after["W1"], before["W1"])
    np.testing.assert_array_equal(after["b1"], before["b1"])
    assert not np.array_equal(after["W2"], before["W2"])
    assert not np.array_equal(after["b2"], before["b2"])


def test_the_layers_before_the_first_trained_one_are_not_differentiated(xp):
    # As autograd skips the layers before the first parameter that requires a gradient.
    net = make_net(xp)
    Trainer(net, SGD(0.1), *blobs(xp), epochs=1, batch_size=10, frozen="layers[0]").fit()
    assert net.layers[0].dW is None and net.layers[2].dW is not None


def test_a_layers_path_freezes_its_parameters(cpu_xp):
    net = MultiLayerNet(4, [6], 2, use_batchnorm=True, dtype="float64", seed=0, xp=cpu_xp)
    trainer = Trainer(net, SGD(0.1), *blobs(cpu_xp), epochs=1, frozen="layers[1]")
    assert trainer.frozen == ("gamma1", "beta1")


def test_the_optimizer_keeps_no_state_for_frozen_parameters(xp):
    net, optimizer = make_net(xp), Adam(lr=0.01)
    Trainer(net, optimizer, *blobs(xp), epochs=1, batch_size=10, frozen=("W2",)).fit()
    for buffer in ("m", "v"):
        assert set(optimizer.state[buffer]) == {"W1", "b1", "b2"}


def test_the_optimizer_checks_the_parameters_it_is_given_once(cpu_xp, monkeypatch):
    checked = []
    require_fit = Optimizer._require_fit
    monkeypatch.setattr(
        Optimizer, "_require_fit", lambda self, *a: checked.append(1) or require_fit(self, *a)
    )
    trainer = Trainer(
        make_net(cpu_xp), Adam(), *blobs(cpu_xp), epochs=2, batch_size=10, frozen="W1"
    )
    trainer.fit()
    assert trainer.iterations == 12 and len(checked) == 1


def test_a_network_with_a_plain_dict_of_parameters_can_freeze_them(cpu_xp):
    class BookNet:  # the book's networks keep their parameters in a dict
        def __init__(self, net):
            self.net, self.params, self.last_layer = net, dict(net.params), net.last_layer

        def predict(self, x, train_flg=False):
            return self.net.predict(x, train_flg=train_flg)

        def gradient(self, x, t):
            return self.net.gradient(x, t)

    net = BookNet(make_net(cpu_xp))
    before = _snapshot(net)
    Trainer(net, Adam(0.1), *blobs(cpu_xp), epochs=1, batch_size=10, frozen="W2").fit()
    after = _snapshot(net)
    np.testing.assert_array_equal(after["W2"], before["W2"])
    assert not np.array_equal(after["W1"], before["W1"])


def test_freezing_one_name_of_a_tied_array_is_refused(cpu_xp):
    class TiedNet:  # a book-style network whose dict holds one array under two names
        def __init__(self, net):
            self.params = {**net.params, "W1b": net.params["W1"]}

    with pytest.raises(ValueError, match=r"frozen: W1 is the same array as W1b, which is trained"):
        frozen_names(TiedNet(make_net(cpu_xp)), "W1")


def test_batchnorm_running_statistics_of_a_frozen_layer_keep_updating(cpu_xp):
    net = MultiLayerNet(4, [6], 2, use_batchnorm=True, dtype="float64", seed=0, xp=cpu_xp)
    norm = net[1]
    mean = to_numpy(norm.running_mean).copy()
    Trainer(net, SGD(0.1), *blobs(cpu_xp), epochs=1, frozen="layers[1]").fit()
    assert not np.array_equal(to_numpy(norm.running_mean), mean)


def test_an_unknown_name_is_refused_naming_it_and_the_valid_ones(cpu_xp):
    expected = (
        r"no parameter or layer 'W9'; expected a parameter's name \(W1, b1, W2, b2\), "
        r"or a layer's path \(layers\[0\], layers\[2\]\)"
    )
    with pytest.raises(ValueError, match=expected):
        Trainer(make_net(cpu_xp), SGD(), *blobs(cpu_xp), epochs=1, frozen=["W1", "W9"])


def test_a_layer_without_parameters_is_refused_naming_it(cpu_xp):
    with pytest.raises(ValueError, match=r"layer layers\[1\] \(ReLU\) has no parameters to freeze"):
        Trainer(make_net(cpu_xp), SGD(), *blobs(cpu_xp), epochs=1, frozen="layers[1]")


def test_the_paths_listed_include_the_blocks_holding_parameters(cpu_xp):
    def affine(n_in, n_out):
        return Affine(
            to_device(np.ones((n_in, n_out)), xp=cpu_xp), to_device(np.zeros(n_out), xp=cpu_xp)
        )

    block = Sequential([affine(3, 3), ReLU(), affine(3, 3)])
    net = Sequential([affine(4, 3), block, affine(3, 2)], loss=SoftmaxWithLoss())
    paths = (
        r"layers\[0\], layers\[1\], layers\[1\]\.layers\[0\], layers\[1\]\.layers\[2\], layers\[2\]"
    )
    with pytest.raises(ValueError, match=rf"or a layer's path \({paths}\)"):
        frozen_names(net, "layers[3]")


@pytest.mark.parametrize(("frozen", "got"), [([0], "int 0"), (b"W1", "bytes b'W1'"), (1, "int 1")])
def test_a_name_that_is_not_a_string_is_a_type_error(cpu_xp, frozen, got):
    with pytest.raises(TypeError, match=rf"frozen takes .*names .*\(strings\), got {got}"):
        Trainer(make_net(cpu_xp), SGD(), *blobs(cpu_xp), epochs=1, frozen=frozen)


def test_freezing_every_parameter_is_refused(cpu_xp):
    with pytest.raises(ValueError, match=r"freezes every parameter \(W1, b1, W2, b2\)"):
        Trainer(make_net(cpu_xp), SGD(), *blobs(cpu_xp), epochs=1, frozen=["layers[0]", "W2", "b2"])
