"""Sequential: networks from any layers (a user's own too) and a loss layer. Gradients are
checked against NumPy formulas differentiated by tests/numeric.py, never against xpnet."""

import re
import warnings

import numpy as np
import pytest
from numeric import central_difference, dev

import xpnet
from xpnet import Sequential, check_gradients, checkpoint
from xpnet.backend import (
    BackendMismatchError,
    library_of,
    location,
    namespace_of,
    to_device,
    to_numpy,
)
from xpnet.checkpoint import load_network, load_params, register_layer, save_params
from xpnet.layers import (
    Affine,
    MeanSquaredError,
    ReLU,
    Sigmoid,
    SigmoidWithLoss,
    SoftmaxWithLoss,
    Tanh,
)
from xpnet.optim import OPTIMIZERS, SGD, make_optimizer
from xpnet.training import Trainer


class Scale:
    """A user's layer with one parameter: ``out = x * s`` with ``s`` of shape (D,)."""

    params = ("s",)

    def __init__(self, s):
        self.s = s

    def forward(self, x):
        self.x = x
        return x * self.s

    def backward(self, dout):
        self.ds = namespace_of(dout).sum(dout * self.x, axis=0)
        return dout * self.s


def arrays(xp, seed, *shapes, dtype="float64"):
    rng = np.random.default_rng(seed)
    return [to_device(rng.standard_normal(s), dtype=dtype, xp=xp) for s in shapes]


def scaled_net(xp, seed=0, loss=None):
    W1, b1, s, W2, b2 = arrays(xp, seed, (5, 4), (4,), (4,), (4, 3), (3,))
    layers = [Affine(W1, b1), Tanh(), Scale(s), Affine(W2, b2)]
    return Sequential(layers, loss=SoftmaxWithLoss() if loss is None else loss)


def np_scaled_loss(p, x, labels):
    h = np.tanh(x @ p["W1"] + p["b1"]) * p["s1"]
    z = h @ p["W2"] + p["b2"]
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -np.mean(logp[np.arange(len(labels)), labels])


def labels(xp, n=6, classes=3, seed=1):
    return to_device(np.random.default_rng(seed).integers(0, classes, n), dtype="int64", xp=xp)


def test_parameters_are_named_by_order_of_appearance_of_each_attribute(xp):
    net = scaled_net(xp)
    assert list(net.params) == ["W1", "b1", "s1", "W2", "b2"]
    assert net.params.slot("s1") == (net.layers[2], "s")


def assert_gradients_of_the_scaled_net(xp, net, names=None):
    """``net.gradient`` (a :func:`scaled_net`) against central differences of the NumPy loss:
    of every parameter, or of ``names`` only, asked for by ``gradient(params=names)``."""
    (x,) = arrays(xp, 2, (6, 5))
    t = labels(xp)
    params = {k: to_numpy(v) for k, v in net.params.items()}
    grads = net.gradient(x, t) if names is None else net.gradient(x, t, params=names)
    assert list(grads) == (list(params) if names is None else names)
    for name in grads:

        def loss_of(v, name=name):
            return np_scaled_loss({**params, name: v}, to_numpy(x), to_numpy(t))

        expected = central_difference(loss_of, params[name])
        np.testing.assert_allclose(to_numpy(grads[name]), expected, rtol=1e-6, atol=1e-9)


def test_a_users_layer_trains_in_the_gradient_of_a_sequential(xp):
    assert_gradients_of_the_scaled_net(xp, scaled_net(xp))


# gradient(params=...): the gradients of some parameters, as autograd computes only those
# of the tensors that require one.


@pytest.mark.parametrize("names", [["s1", "W2"], ["b2"], ["W2", "W1"]])
def test_gradient_of_some_parameters_gives_theirs_only(xp, names):
    assert_gradients_of_the_scaled_net(xp, scaled_net(xp), names)


def test_the_backward_stops_at_the_first_layer_holding_an_asked_parameter(xp):
    net = scaled_net(xp)
    (x,) = arrays(xp, 2, (6, 5))
    net.gradient(x, labels(xp), params="s1")
    assert net.layers[0].dW is None and net.layers[0].db is None  # never differentiated
    assert net.layers[3].dW is not None  # after it: differentiated, its input gradient needed


def test_gradient_of_some_parameters_adds_their_weight_decay(xp):
    plain = scaled_net(xp)
    net = Sequential(plain.layers, loss=plain.last_layer, weight_decay=0.1)
    (x,) = arrays(xp, 2, (6, 5))
    t = labels(xp)
    full = {k: to_numpy(v).copy() for k, v in net.gradient(x, t).items()}
    some = net.gradient(x, t, params=["s1", "W2"])
    for name, value in some.items():
        np.testing.assert_array_equal(to_numpy(value), full[name])


class AllSummed(Scale):
    """A user's layer whose ``ds`` is summed over every axis: 0-D for ``s`` of shape (D,)."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.ds = namespace_of(dout).sum(self.ds)
        return dx


def test_a_layer_left_out_by_params_is_checked_when_a_later_call_reaches_it(xp):
    # The shapes of a (x, t) pair are checked once; a call that skipped a layer did not.
    net, x = around(xp, AllSummed)
    net.gradient(x, labels(xp), params=["W2"])
    with pytest.raises(ValueError, match=r"layers\[1\] \(AllSummed\)\.backward stored ds"):
        net.gradient(x, labels(xp))


@pytest.mark.parametrize(
    ("params", "error", "says"),
    [
        (["W1", "V1"], ValueError, r"unknown parameter\(s\) \['V1'\]; the network has \['W1'"),
        ([], ValueError, r"params is empty \(\); the network has \['W1', 'b1', 's1'"),
        (3, TypeError, r"takes parameter names \(a list, or one name\), got int 3"),
    ],
)
def test_gradient_of_unknown_or_no_parameters_is_refused(cpu_xp, params, error, says):
    net = scaled_net(cpu_xp)
    (x,) = arrays(cpu_xp, 2, (6, 5))
    with pytest.raises(error, match=r"gradient\(params=\.\.\.\)(: )?.*" + says):
        net.gradient(x, labels(cpu_xp), params=params)


def test_a_name_ending_in_a_digit_gets_an_underscore(xp):
    class Conv2:
        params = ("w0",)

        def __init__(self, w0):
            self.w0 = w0

        def forward(self, x):
            return x

        def backward(self, dout):
            return dout

    w, v = arrays(xp, 0, (2,), (2,))
    net = Sequential([Conv2(w), Conv2(v)], loss=MeanSquaredError())
    assert list(net.params) == ["w0_1", "w0_2"]


def test_the_book_networks_are_sequentials_with_the_same_names(xp):
    net = xpnet.MultiLayerNet(4, [3, 3], 2, xp=xp)
    assert isinstance(net, Sequential) and isinstance(xpnet.TwoLayerNet(4, 3, 2), Sequential)
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]


def located(net):
    """How a network's parameter line ends: where its parameters live, NumPy's unsaid (a
    torch or array_api_strict network printed exactly as a NumPy one)."""
    first = net.params["W1"]
    return "" if isinstance(first, np.ndarray) else f", on {location(first)}"


def test_the_repr_lists_the_layers_parameters_and_the_loss(xp):
    net = scaled_net(xp, loss=SigmoidWithLoss(reduction="sum"))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Affine(W=float64[5, 4], b=float64[4], input_grad=True)\n"
        "  (1): Tanh()\n"
        "  (2): Scale(s=float64[4])\n"
        "  (3): Affine(W=float64[4, 3], b=float64[3], input_grad=True)\n"
        "  loss: SigmoidWithLoss(reduction='sum')\n"
        f"  parameters: {5 * 4 + 4 + 4 + 4 * 3 + 3}{located(net)}\n"
        ")"
    )


def test_the_repr_shows_a_weight_decay_and_the_subclass():
    net = xpnet.MultiLayerNet(4, [3], 2, dtype="float64", weight_decay=0.1)
    assert repr(net).splitlines()[0] == "MultiLayerNet("
    assert repr(net).splitlines()[-3:-1] == ["  weight_decay: 0.1", "  parameters: 23"]


def test_the_repr_ends_with_the_parameter_total_in_thousands():
    net = xpnet.MultiLayerNet(784, [50], 10)
    assert repr(net).splitlines()[-2:] == [f"  parameters: {784 * 50 + 50 + 50 * 10 + 10:,}", ")"]


def test_the_repr_shows_batchnorms_running_statistics_and_their_total(xp):
    net = xpnet.MultiLayerNet(4, [3], 2, use_batchnorm=True, dtype="float64", xp=xp)
    lines = repr(net).splitlines()
    assert lines[2] == (
        "  (1): BatchNormalization(gamma=float64[3], beta=float64[3], "
        "running_mean=float64[3], running_var=float64[3], momentum=0.9)"
    )
    total = f"  parameters: {4 * 3 + 3 + 3 + 3 + 3 * 2 + 2}, buffers: {3 + 3}"
    assert lines[-2] == total + located(net)


def test_the_parameters_repr_gives_each_by_name_dtype_and_shape(xp):
    # net.params, last in a notebook cell, showed <xpnet.networks.Parameters at 0x...>.
    net = scaled_net(xp)
    assert repr(net.params) == (
        "Parameters(W1=float64[5, 4], b1=float64[4], s1=float64[4], W2=float64[4, 3], "
        "b2=float64[3])"
    )


def test_len_is_the_number_of_layers_without_the_loss(xp):
    assert len(scaled_net(xp)) == 4
    assert len(xpnet.MultiLayerNet(4, [3, 3], 2, xp=xp)) == 5  # (Affine, ReLU) x 2, Affine


def test_indexing_gives_the_layers_counted_from_zero_and_from_the_end(xp):
    net = scaled_net(xp)
    assert net[0] is net.layers[0] and isinstance(net[0], Affine)
    assert net[2] is net.layers[2] and isinstance(net[2], Scale)
    assert net[-1] is net.layers[3] and net[-4] is net.layers[0]


def test_a_slice_is_a_sequential_of_those_layers_without_loss(xp):
    net = scaled_net(xp)
    part = net[1:3]
    assert type(part) is Sequential and part.last_layer is None
    assert part[0] is net[1] and part[1] is net[2] and len(part) == 2
    assert list(part.params) == ["s1"] and part.params["s1"] is net.params["s1"]
    assert [id(layer) for layer in net[::-1]] == [id(layer) for layer in reversed(net.layers)]


def test_a_slice_of_a_book_network_is_a_stack_computing_those_layers(xp):
    net = xpnet.MultiLayerNet(5, [4], 3, dtype="float64", seed=0, xp=xp)
    (x,) = arrays(xp, 1, (6, 5))
    first_two = net[:2]
    assert type(first_two) is Sequential and list(first_two.params) == ["W1", "b1"]
    np.testing.assert_array_equal(
        to_numpy(net[2:].forward(first_two.forward(x))), to_numpy(net.predict(x))
    )


def test_iterating_goes_over_the_layers_in_order(xp):
    net = scaled_net(xp)
    assert [type(layer) for layer in net] == [Affine, Tanh, Scale, Affine]
    assert net.last_layer not in list(net)


@pytest.mark.parametrize("index", [4, -5])
def test_an_index_out_of_range_names_the_layers_there_are(index):
    with pytest.raises(IndexError, match=rf"index {index} .* has 4 layers, net\[0\] to net\[3\]"):
        scaled_net(np)[index]


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (1.0, r"integer or a slice .*, got float 1\.0$"),
        ((0, 1), r"integer or a slice .*, got tuple \(0, 1\)$"),
        ("W1", r"got str 'W1'; parameter 'W1' is net\.params\['W1'\]"),
        ("relu", r"got str 'relu'$"),
    ],
)
def test_an_index_that_is_no_position_is_a_clear_error(index, message):
    with pytest.raises(TypeError, match=message):
        scaled_net(np)[index]


def test_num_parameters_is_the_number_of_trainable_elements(xp):
    assert (
        xpnet.MultiLayerNet(784, [50], 10, xp=xp).num_parameters() == 784 * 50 + 50 + 50 * 10 + 10
    )
    assert scaled_net(xp).num_parameters() == 5 * 4 + 4 + 4 + 4 * 3 + 3  # a user's layer's s too


def test_num_parameters_is_a_python_int(xp):
    assert type(scaled_net(xp).num_parameters()) is int


def test_num_parameters_leaves_out_batchnorms_running_statistics(xp):
    net = xpnet.MultiLayerNet(6, [5, 4], 3, use_batchnorm=True, use_dropout=True, xp=xp)
    gammas_and_betas = 2 * 5 + 2 * 4
    assert net.num_parameters() == (6 * 5 + 5) + (5 * 4 + 4) + (4 * 3 + 3) + gammas_and_betas


def test_layers_before_the_first_parameter_get_no_backward(xp):
    calls = []

    class Flatten:
        def forward(self, x):
            self.shape = x.shape
            return namespace_of(x).reshape(x, (x.shape[0], -1))

        def backward(self, dout):
            calls.append("backward")
            return namespace_of(dout).reshape(dout, self.shape)

    W, b = arrays(xp, 0, (6, 3), (3,))
    net = Sequential([Flatten(), Affine(W, b)], loss=SoftmaxWithLoss())
    (x,) = arrays(xp, 1, (4, 2, 3))
    net.gradient(x, labels(xp, 4))
    assert calls == []


def test_a_layer_that_returns_no_input_gradient_before_a_parameter_is_named(xp):
    W1, b1, W2, b2 = arrays(xp, 0, (5, 4), (4,), (4, 3), (3,))
    layers = [Affine(W1, b1), Tanh(), Affine(W2, b2, input_grad=False)]
    net = Sequential(layers, loss=SoftmaxWithLoss())
    (x,) = arrays(xp, 1, (6, 5))
    named = r"layers\[2\] \(Affine\) returned no input gradient.*layers\[0\] \(Affine\)"
    with pytest.raises(ValueError, match=named):
        net.gradient(x, labels(xp))


def test_train_flg_reaches_the_layers_that_take_it(xp):
    seen = []

    class Mode:
        def forward(self, x, train_flg=True):
            seen.append(train_flg)
            return x

        def backward(self, dout):
            return dout

    W, b = arrays(xp, 0, (5, 3), (3,))
    net = Sequential([Affine(W, b), Mode()], loss=SoftmaxWithLoss())
    (x,) = arrays(xp, 1, (6, 5))
    t = labels(xp)
    net.gradient(x, t)
    net.predict(x)
    net.loss(x, t)
    net.accuracy(x, t)
    assert seen == [True, False, False, False]


def test_weight_decay_applies_to_every_W(xp):
    net = scaled_net(xp)
    decayed = Sequential(net.layers, loss=net.last_layer, weight_decay=0.1)
    (x,) = arrays(xp, 2, (6, 5))
    t = labels(xp)
    penalty = 0.05 * sum(np.sum(to_numpy(net.params[k]) ** 2) for k in ("W1", "W2"))
    assert float(decayed.loss(x, t)) == pytest.approx(float(net.loss(x, t)) + penalty, rel=1e-12)
    assert [decayed.decay_rate(k) for k in decayed.params] == [0.1, 0, 0, 0.1, 0]


class DecayedScale(Scale):
    decayed = ("s",)


def test_a_layer_names_the_parameters_weight_decay_applies_to(xp):
    # A user's second weight (not called W) got no decay, without a word.
    net = scaled_net(xp)
    layers = [*net.layers[:2], DecayedScale(net.layers[2].s), net.layers[3]]
    decayed = Sequential(layers, loss=net.last_layer, weight_decay=0.1)
    (x,) = arrays(xp, 2, (6, 5))
    t = labels(xp)
    penalty = 0.05 * sum(np.sum(to_numpy(net.params[k]) ** 2) for k in ("W1", "s1", "W2"))
    assert float(decayed.loss(x, t)) == pytest.approx(float(net.loss(x, t)) + penalty, rel=1e-12)
    assert [decayed.decay_rate(k) for k in decayed.params] == [0.1, 0, 0.1, 0.1, 0]
    gradient = decayed.gradient(x, t)["s1"] - net.gradient(x, t)["s1"]
    np.testing.assert_allclose(to_numpy(gradient), 0.1 * to_numpy(net.params["s1"]), rtol=1e-12)


@pytest.mark.parametrize("decayed", ["s", ("W",)])
def test_decayed_names_among_the_params_or_is_refused(decayed):
    class Misnamed(Scale):
        pass

    Misnamed.decayed = decayed
    (s,) = arrays(None, 0, (4,))
    with pytest.raises(
        ValueError, match=r"Misnamed\.decayed must be a tuple of names among its params \('s',\)"
    ):
        Sequential([Misnamed(s)], loss=MeanSquaredError())


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_updates_a_sequential(cpu_xp, name):
    net = scaled_net(cpu_xp)
    (x,) = arrays(cpu_xp, 2, (6, 5))
    t = labels(cpu_xp)
    before = float(net.loss(x, t))
    optimizer = make_optimizer(name, lr=0.05)
    for _ in range(5):
        optimizer.update(net.params, net.gradient(x, t))
    assert float(net.loss(x, t)) < before


def test_the_trainer_trains_a_sequential_of_a_users_layer(cpu_xp):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    centres = np.array([[2.0, 0, 0, 0, 0], [0, 2.0, 0, 0, 0], [0, 0, 2.0, 0, 0]])
    x = to_device(centres[y] + 0.3 * rng.standard_normal((90, 5)), dtype="float64", xp=cpu_xp)
    t = to_device(y, dtype="int64", xp=cpu_xp)
    net = scaled_net(cpu_xp)
    history = Trainer(net, SGD(0.3), x, t, x, t, epochs=15, batch_size=10).fit()
    assert history.train_acc[-1] >= 0.95


def test_checks_use_local_perturbations_where_the_layers_have_them(cpu_xp):
    net = scaled_net(cpu_xp)
    (x,) = arrays(cpu_xp, 2, (6, 5))
    report = check_gradients(net, x, labels(cpu_xp))
    assert report.passed
    via = {p.name: p.via for p in report.params}
    # Scale has no perturbation hooks: its parameter and those before it use the loop.
    assert via == {"W1": "loop", "b1": "loop", "s1": "loop", "W2": "local", "b2": "local"}


def test_check_gradients_fails_a_wrong_users_layer(cpu_xp):
    class WrongScale(Scale):
        def backward(self, dout):
            dx = super().backward(dout)
            self.ds = self.ds * 1.01
            return dx

    net = scaled_net(cpu_xp)
    net.layers[2].__class__ = WrongScale
    (x,) = arrays(cpu_xp, 2, (6, 5))
    report = check_gradients(net, x, labels(cpu_xp))
    assert not report.passed
    assert [p.name for p in report.params if not p.passed] == ["s1"]


# The course network: 784-100-10 in the course notes, sigmoid hidden and output layers.


def course_params(xp, sizes=(6, 5, 4), seed=0):
    rng = np.random.default_rng(seed)
    host = {
        "W1": rng.standard_normal(sizes[:2]) / np.sqrt(sizes[0] / 2),
        "b1": rng.random(sizes[1]),
        "W2": rng.standard_normal(sizes[1:]) / np.sqrt(sizes[1] / 2),
        "b2": rng.random(sizes[2]),
    }
    return host, {k: to_device(v, dtype="float64", xp=xp) for k, v in host.items()}


def np_course_output(p, x):
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    return sig(sig(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"])


def np_bce_sum(p, x, t):
    y = np_course_output(p, x)
    return -np.sum(t * np.log(y) + (1 - t) * np.log(1 - y))


def course_sample(xp, d=6, classes=4):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (1, d)) / 255 * 0.99 + 0.01
    t = np.full((1, classes), 0.01)
    t[0, 2] = 0.99
    return x, t, to_device(x, dtype="float64", xp=xp), to_device(t, dtype="float64", xp=xp)


def test_the_course_network_with_its_stated_loss_matches_bce_summed(xp):
    host, p = course_params(xp)
    net = Sequential(
        [Affine(p["W1"], p["b1"]), Sigmoid(), Affine(p["W2"], p["b2"])],
        loss=SigmoidWithLoss(reduction="sum"),
    )
    x_np, t_np, x, t = course_sample(xp)
    assert float(net.loss(x, t)) == pytest.approx(np_bce_sum(host, x_np, t_np), rel=1e-12)
    grads = net.gradient(x, t)
    for name in host:
        expected = central_difference(
            lambda v, n=name: np_bce_sum({**host, n: v}, x_np, t_np), host[name]
        )
        np.testing.assert_allclose(to_numpy(grads[name]), expected, rtol=1e-6, atol=1e-9)


def np_course_update(p, x, t, lr):
    """The course notes' hand-written update: output delta (y - t) * y * (1 - y)."""
    h = 1 / (1 + np.exp(-(x @ p["W1"] + p["b1"])))
    y = 1 / (1 + np.exp(-(h @ p["W2"] + p["b2"])))
    delta2 = (y - t) * y * (1 - y)
    delta1 = (delta2 @ p["W2"].T) * h * (1 - h)
    grads = {"W2": h.T @ delta2, "b2": delta2.sum(0), "W1": x.T @ delta1, "b1": delta1.sum(0)}
    return {k: p[k] - lr * grads[k] for k in p}


def test_the_course_code_update_is_sgd_on_summed_squared_error_at_half_the_rate(xp):
    host, p = course_params(xp)
    net = Sequential(
        [Affine(p["W1"], p["b1"]), Sigmoid(), Affine(p["W2"], p["b2"]), Sigmoid()],
        loss=MeanSquaredError(reduction="sum"),
    )
    x_np, t_np, x, t = course_sample(xp)
    SGD(lr=0.15).update(net.params, net.gradient(x, t))
    expected = np_course_update(host, x_np, t_np, lr=0.3)
    for name in host:
        np.testing.assert_allclose(to_numpy(net.params[name]), expected[name], rtol=1e-13)


# Checkpoints of any Sequential.


@register_layer
class Shift:
    """A registered user layer with a parameter and a setting: ``out = x + factor * c``."""

    params = ("c",)

    def __init__(self, c, *, factor=1.0):
        self.c, self.factor = c, factor

    def config(self):
        return {"factor": self.factor}

    def forward(self, x):
        return x + self.factor * self.c

    def backward(self, dout):
        self.dc = self.factor * namespace_of(dout).sum(dout, axis=0)
        return dout


def test_a_sequential_of_registered_layers_round_trips(cpu_xp, tmp_path):
    W, b, c = arrays(cpu_xp, 0, (5, 3), (3,), (3,), dtype="float32")
    net = Sequential([Affine(W, b), ReLU(), Shift(c, factor=2.0)], loss=MeanSquaredError("sum"))
    save_params(tmp_path / "n.npz", net)
    rebuilt, meta = load_network(tmp_path / "n.npz", xp=cpu_xp)
    assert meta["architecture"]["layers"][2] == {
        "layer": "Shift",
        "config": {"factor": 2.0},
        "params": {"c": "c1"},
    }
    assert [type(layer).__name__ for layer in rebuilt.layers] == ["Affine", "ReLU", "Shift"]
    assert rebuilt.last_layer.reduction == "sum" and rebuilt.dtype == "float32"
    (x,) = arrays(cpu_xp, 1, (4, 5), dtype="float32")
    np.testing.assert_array_equal(to_numpy(rebuilt.predict(x)), to_numpy(net.predict(x)))


def test_saving_a_layer_whose_settings_the_file_cannot_record_warns_naming_them(tmp_path):
    # Without config(), Shift(c, factor=2.0) came back from load_network as Shift(c), with
    # factor 1.0: another network, without a word.
    class Forgetful(Shift):
        config = None

    W, b, c = arrays(None, 0, (5, 3), (3,), (3,))
    net = Sequential([Affine(W, b), ReLU(), Forgetful(c, factor=2.0)], loss=MeanSquaredError())
    with pytest.warns(
        checkpoint.ArgumentsNotSaved,
        match=r"layers\[2\] \(Forgetful\): its constructor takes factor, which the checkpoint "
        r"does not record.*defaults of factor.*config\(\) returning them, e.g. "
        r"\{'factor': self.factor\}",
    ):
        save_params(tmp_path / "n.npz", net)


def test_the_warning_of_an_unrecorded_setting_names_the_callers_line(tmp_path):
    class Forgetful(Shift):
        config = None

    W, b, c = arrays(None, 0, (5, 3), (3,), (3,))
    inner = Sequential([ReLU(), Forgetful(c, factor=2.0)])
    net = Sequential([Affine(W, b), inner], loss=MeanSquaredError())  # deeper in xpnet's calls
    with pytest.warns(checkpoint.ArgumentsNotSaved, match=r"layers\[1\]\.layers\[1\]") as got:
        save_params(tmp_path / "n.npz", net)
    assert got[0].filename == __file__


def test_loading_a_layer_saved_without_a_setting_warns_that_it_takes_the_default(tmp_path):
    # The file loaded without a word, as Forgetful(c) with factor 1.0: other predictions.
    @register_layer
    class Forgetful(Shift):
        config = None

    W, b, c = arrays(None, 0, (5, 3), (3,), (3,))
    net = Sequential([Affine(W, b), ReLU(), Forgetful(c, factor=2.0)], loss=MeanSquaredError())
    with pytest.warns(checkpoint.ArgumentsNotSaved):
        save_params(tmp_path / "n.npz", net)
    with pytest.warns(
        checkpoint.ArgumentsNotSaved,
        match=r"n\.npz: layers\[2\] \(.*Forgetful\) was saved without its constructor's "
        r"factor.*rebuilt with their defaults.*load_params\(path, net\)",
    ) as got:
        rebuilt, meta = load_network(tmp_path / "n.npz")
    assert got[0].filename == __file__
    assert meta["architecture"]["layers"][2]["unrecorded"] == ["factor"]
    assert rebuilt.layers[2].factor == 1.0


def test_a_setting_at_its_default_that_the_file_does_not_record_needs_no_warning(tmp_path):
    class Forgetful(Shift):
        config = None

    W, b, c = arrays(None, 0, (5, 3), (3,), (3,))
    net = Sequential([Affine(W, b), Forgetful(c)], loss=MeanSquaredError())
    with warnings.catch_warnings():
        warnings.simplefilter("error", checkpoint.ArgumentsNotSaved)
        save_params(tmp_path / "n.npz", net)  # factor=1.0: rebuilding gives it back


def test_a_setting_json_cannot_write_is_named_where_it_sits(tmp_path):
    # It said "Object of type float32 is not JSON serializable", naming no layer.
    W, b, c = arrays(None, 0, (5, 3), (3,), (3,))
    net = Sequential([Affine(W, b), Shift(c, factor=np.float32(2.0))], loss=MeanSquaredError())
    with pytest.raises(
        ValueError, match=r"architecture\.layers\[1\]\.config\.factor is float32 2\.0"
    ):
        save_params(tmp_path / "n.npz", net)
    with pytest.raises(ValueError, match=r"JSON-serialisable: epoch is int64 3 \(convert"):
        save_params(tmp_path / "p.npz", {"W": np.ones(2)}, {"epoch": np.int64(3)})
    assert list(tmp_path.iterdir()) == []


def test_loading_an_unknown_layer_is_a_clear_error(tmp_path):
    class Unregistered(Shift):
        pass

    W, b, c = arrays(None, 0, (5, 3), (3,), (3,))
    save_params(
        tmp_path / "n.npz", Sequential([Affine(W, b), Unregistered(c)], loss=MeanSquaredError())
    )
    with pytest.raises(ValueError, match=r"layers\[1\] is a '.*Unregistered'.*register_layer"):
        load_network(tmp_path / "n.npz")


@pytest.mark.usefixtures("on_the_host")  # networks of arrays(None, ...), read by NumPy
def test_loading_an_unknown_layer_says_how_to_load_its_parameters(tmp_path):
    class Unregistered(Shift):
        pass

    def network(seed):
        W, b, c = arrays(None, seed, (5, 3), (3,), (3,))
        return Sequential([Affine(W, b), Unregistered(c)], loss=MeanSquaredError())

    saved = network(0)
    save_params(tmp_path / "n.npz", saved)
    with pytest.raises(ValueError, match=r"build the network yourself.*load_params\("):
        load_network(tmp_path / "n.npz")
    built = network(1)  # what the message says: build it, then load_params(path, net)
    load_params(tmp_path / "n.npz", built)
    (x,) = arrays(None, 2, (4, 5))
    np.testing.assert_array_equal(built.predict(x), saved.predict(x))


@pytest.mark.usefixtures("on_the_host")  # networks of arrays(None, ...), read by NumPy
def test_a_layer_registered_after_saving_is_rebuilt_by_loading(tmp_path, monkeypatch):
    """The file names an unregistered class by module and qualified name; registering
    the class before loading (as the loading error says) finds it under that name."""
    monkeypatch.setattr(checkpoint, "_LAYERS", dict(checkpoint._registry()))

    class Late(Shift):
        pass

    W, b, c = arrays(None, 0, (5, 3), (3,), (3,))
    net = Sequential([Affine(W, b), Late(c, factor=2.0)], loss=MeanSquaredError())
    save_params(tmp_path / "n.npz", net)
    register_layer(Late)
    rebuilt, _ = load_network(tmp_path / "n.npz")
    assert type(rebuilt.layers[1]) is Late and rebuilt.layers[1].factor == 2.0
    (x,) = arrays(None, 1, (4, 5))
    np.testing.assert_array_equal(rebuilt.predict(x), net.predict(x))


def test_a_layer_name_is_registered_once():
    class Other:
        pass

    with pytest.raises(ValueError, match="'Shift' is already registered"):
        register_layer(Other, name="Shift")


def test_a_class_defined_again_replaces_its_registration(monkeypatch):
    # A notebook cell run again (or a module reloaded) defines the class anew: registering
    # it raised "already registered", and its edits were lost.
    monkeypatch.setattr(checkpoint, "_LAYERS", dict(checkpoint._registry()))

    def define(scale):
        class Scaled:
            def forward(self, x):
                return scale * x

        return register_layer(Scaled)

    first, again = define(2.0), define(3.0)
    assert first is not again and checkpoint._registry()["Scaled"] is again


@register_layer(name="Centre")
class Centre:
    """A registered user layer with a buffer (state that is saved but not trained)."""

    buffers = ("mean",)

    def __init__(self, mean):
        self.mean = mean

    def forward(self, x):
        return x - self.mean

    def backward(self, dout):
        return dout


def test_layer_buffers_are_saved_and_restored(cpu_xp, tmp_path):
    W, b, m = arrays(cpu_xp, 0, (3, 2), (2,), (3,))
    net = Sequential([Centre(m), Affine(W, b)], loss=MeanSquaredError())
    save_params(tmp_path / "n.npz", net)
    rebuilt, _ = load_network(tmp_path / "n.npz", xp=cpu_xp)
    np.testing.assert_array_equal(to_numpy(rebuilt.layers[0].mean), to_numpy(m))


# Bad input names the layer's position and class.


def test_a_layer_without_backward_is_named():
    class NoBackward:
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match=r"layers\[1\] \(NoBackward\) has no backward\(\) method"):
        Sequential([ReLU(), NoBackward()], loss=SoftmaxWithLoss())


def test_a_loss_that_is_not_a_loss_layer_is_refused():
    with pytest.raises(TypeError, match=r"loss ReLU is not a loss layer.*forward\(y, t\)"):
        Sequential([ReLU()], loss=ReLU())


def test_a_loss_class_instead_of_an_instance_is_refused():
    with pytest.raises(
        TypeError,
        match=r"loss is the class SoftmaxWithLoss, not an instance: pass SoftmaxWithLoss\(\)",
    ):
        Sequential([ReLU()], loss=SoftmaxWithLoss)


def test_a_layer_class_instead_of_an_instance_is_refused():
    with pytest.raises(
        TypeError, match=r"layers\[1\] is the class Tanh, not an instance: pass Tanh\(\)"
    ):
        Sequential([ReLU(), Tanh], loss=SoftmaxWithLoss())


def test_a_loss_layer_among_the_layers_is_refused():
    with pytest.raises(TypeError, match=r"layers\[1\] \(SoftmaxWithLoss\) is a loss layer"):
        Sequential([ReLU(), SoftmaxWithLoss()], loss=SoftmaxWithLoss())


def test_a_sigmoid_before_sigmoid_with_loss_is_refused(xp):
    # The course notes' network has a sigmoid output and states a BCE loss; SigmoidWithLoss
    # applies the sigmoid itself, so the two trained on sigmoid(sigmoid(scores)) silently.
    W1, b1, W2, b2 = arrays(xp, 0, (5, 4), (4,), (4, 3), (3,))
    layers = [Affine(W1, b1), Sigmoid(), Affine(W2, b2), Sigmoid()]
    with pytest.raises(
        ValueError,
        match=r"layers\[3\] \(Sigmoid\) feeds SigmoidWithLoss, which applies the sigmoid itself"
        r".*MeanSquaredError",
    ):
        Sequential(layers, loss=SigmoidWithLoss(reduction="sum"))


def test_a_stack_ending_in_a_sigmoid_before_sigmoid_with_loss_is_refused(xp):
    W1, b1, W2, b2 = arrays(xp, 0, (5, 4), (4,), (4, 3), (3,))
    stack = Sequential([Affine(W2, b2), Sigmoid()])
    with pytest.raises(ValueError, match=r"layers\[2\]\.layers\[1\] \(Sigmoid\) feeds"):
        Sequential([Affine(W1, b1), Sigmoid(), stack], loss=SigmoidWithLoss())


def test_a_sigmoid_output_takes_the_squared_error(xp):
    W1, b1, W2, b2 = arrays(xp, 0, (5, 4), (4,), (4, 3), (3,))
    net = Sequential(
        [Affine(W1, b1), Sigmoid(), Affine(W2, b2), Sigmoid()],
        loss=MeanSquaredError(reduction="sum"),
    )
    (x,) = arrays(xp, 1, (2, 5))
    y = to_numpy(net.predict(x))
    assert np.all((y > 0) & (y < 1))


def test_shapes_that_do_not_chain_name_both_layers_and_shapes(xp):
    W1, b1, W2, b2 = arrays(xp, 0, (5, 4), (4,), (3, 2), (2,))
    net = Sequential([Affine(W1, b1), ReLU(), Affine(W2, b2)], loss=SoftmaxWithLoss())
    (x,) = arrays(xp, 1, (6, 5))
    with pytest.raises(
        ValueError,
        match=r"layers\[2\] \(Affine\) cannot take the output of layers\[1\] \(ReLU\), of shape "
        r"\(6, 4\).*W of shape \(3, 2\)",
    ):
        net.predict(x)


def test_a_params_name_the_layer_lacks_is_named(xp):
    class Typo(Scale):
        params = ("scale",)

    (s,) = arrays(xp, 0, (3,))
    with pytest.raises(ValueError, match=r"layers\[0\] \(Typo\) names 'scale' in its params"):
        Sequential([Typo(s)], loss=MeanSquaredError())


def test_a_layer_object_used_twice_is_refused(xp):
    # Reusing one ReLU() as PyTorch users do: its forward caches the second mask, so the
    # first ReLU's backward would use it and the gradients below it be silently wrong.
    W1, b1, W2, b2, W3, b3 = arrays(xp, 0, (5, 4), (4,), (4, 4), (4,), (4, 3), (3,))
    relu = ReLU()
    layers = [Affine(W1, b1), relu, Affine(W2, b2), relu, Affine(W3, b3)]
    with pytest.raises(ValueError, match=r"layers\[3\] \(ReLU\) is the same object as layers\[1\]"):
        Sequential(layers, loss=SoftmaxWithLoss())


def test_an_array_shared_by_two_layers_is_refused(xp):
    # Tied weights: Adam kept two states for one array, weight decay counted it twice, and
    # load_params untied it, without a word.
    W, b1, b2 = arrays(xp, 0, (4, 4), (4,), (4,))
    with pytest.raises(
        ValueError, match=r"parameter W2 of layers\[2\] \(Affine\) is the same array as W1"
    ):
        Sequential([Affine(W, b1), ReLU(), Affine(W, b2)], loss=SoftmaxWithLoss())


def test_a_view_of_another_parameter_is_refused_as_tied_weights(xp):
    # A tied decoder written Affine(W.T, b2): the optimizer updated W through both names,
    # the gradient check and load_params treated W1 and W2 as two arrays, without a word.
    W, b1, b2 = arrays(xp, 0, (4, 3), (3,), (4,))
    with pytest.raises(
        ValueError,
        match=r"parameter W2 of layers\[2\] \(Affine\) shares memory with W1 \(one is a view",
    ):
        Sequential([Affine(W, b1), ReLU(), Affine(W.T, b2)], loss=SoftmaxWithLoss())


def test_parameters_in_disjoint_parts_of_one_array_are_not_tied(xp):
    (s,) = arrays(xp, 0, (2, 3))
    net = Sequential([Scale(s[0, :]), Scale(s[1, :])], loss=MeanSquaredError())
    assert list(net.params) == ["s1", "s2"]


def test_torch_tensors_on_the_meta_device_are_not_taken_for_tied_weights():
    # Every meta tensor reports address 0: b2 "shared memory with" b1.
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    W1, b1, W2, b2 = (torch.empty(shape, device="meta") for shape in ((4, 3), (3,), (3, 2), (2,)))
    net = Sequential([Affine(W1, b1), Affine(W2, b2)], loss=MeanSquaredError())
    assert list(net.params) == ["W1", "b1", "W2", "b2"]


def test_parameters_read_as_new_views_each_time_are_not_taken_for_tied_weights(xp):
    # Each read of ViewedScale.s is a new array object; one freed after its check could
    # hand its id to the next layer's, which was then refused as the same array.
    class ViewedScale(Scale):
        params = ("s",)

        def __init__(self, s):
            self._s = s

        @property
        def s(self):
            return self._s[...]

    layers = [ViewedScale(s) for s in arrays(xp, 0, *[(3,)] * 6)]
    net = Sequential(layers, loss=MeanSquaredError())
    assert list(net.params) == [f"s{k}" for k in range(1, 7)]


def test_a_layer_cannot_be_replaced_after_the_network_is_built(xp):
    # net.layers[3] = Affine(...) ran the new head forward while the optimizer went on
    # training the old one's W2, b2 with its last gradients, without a word.
    net = scaled_net(xp)
    W, b = arrays(xp, 1, (4, 3), (3,))
    with pytest.raises(TypeError, match=r"layers cannot be replaced \(layers\[3\] = Affine"):
        net.layers[3] = Affine(W, b)
    with pytest.raises(TypeError, match=r"layers cannot be removed"):
        del net.layers[2]
    assert net.params["W2"] is net.layers[3].W


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (0.25, r"parameter 's' is float 0.25, expected a real floating array"),
        (None, r"parameter 's' is NoneType None, expected a real floating array"),
        (np.arange(4), r"parameter 's' has dtype int64, expected a real floating array"),
    ],
)
def test_a_parameter_that_is_not_a_floating_array_is_named(value, says):
    # A Python float failed with "'float' object has no attribute 'dtype'".
    with pytest.raises(TypeError, match=r"layers\[0\] \(Scale\): " + says):
        Sequential([Scale(value)], loss=MeanSquaredError())


def around(xp, scale_layer, *below):
    """``Affine, *below, scale_layer(s), Affine``, 5 inputs, 3 classes, and a batch of 6."""
    W1, b1, s, W2, b2 = arrays(xp, 0, (5, 4), (4,), (4,), (4, 3), (3,))
    layers = [Affine(W1, b1), *below, scale_layer(s), Affine(W2, b2)]
    (x,) = arrays(xp, 1, (6, 5))
    return Sequential(layers, loss=SoftmaxWithLoss()), x


def test_a_backward_returning_a_gradient_of_another_shape_is_named(xp):
    # (D,) for an (N, D) input: ReLU's dout * mask below would broadcast it without a word.
    class Summed(Scale):
        def backward(self, dout):
            return namespace_of(dout).sum(super().backward(dout), axis=0)

    net, x = around(xp, Summed, ReLU())
    with pytest.raises(
        ValueError,
        match=r"layers\[2\] \(Summed\)\.backward returned an input gradient of shape "
        r"\(4,\), but its input had shape \(6, 4\)",
    ):
        net.gradient(x, labels(xp))


def test_a_parameter_gradient_of_another_shape_is_named(xp):
    # A sum over every axis (a 0-D ds for s of shape (4,)): an optimizer would broadcast it.
    net, x = around(xp, AllSummed)
    with pytest.raises(
        ValueError,
        match=r"layers\[1\] \(AllSummed\)\.backward stored ds of shape \(\), but its "
        r"parameter s \(s1\) has shape \(4,\)",
    ):
        net.gradient(x, labels(xp))


def test_a_parameter_the_layer_does_not_declare_is_named_as_never_trained(xp):
    # Its gradient was stored, the network did not see it, and fit() left it as it was.
    class Undeclared(Scale):
        params = ()

        def backward(self, dout):
            self.dx = super().backward(dout)  # a gradient of its input x, a cache: not named
            return self.dx

    net, x = around(xp, Undeclared)
    with pytest.warns(
        UserWarning,
        match=r"layers\[1\] \(Undeclared\) stored ds in backward, but its params does not "
        r"name s: .*no optimizer trains it.*params = \('s',\)",
    ) as got:
        net.gradient(x, labels(xp))
    assert len(got) == 1 and got[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.gradient(x, labels(xp))  # once: later steps of that shape are not checked


def test_a_parameter_gradient_not_summed_over_the_batch_says_so(xp):
    class NotSummed(Scale):
        def backward(self, dout):
            dx = super().backward(dout)
            self.ds = dout * self.x  # a row per sample
            return dx

    net, x = around(xp, NotSummed)
    with pytest.raises(
        ValueError,
        match=r"stored ds of shape \(6, 4\), but its parameter s \(s1\) has shape \(4,\): one "
        r"row per sample of a batch of 6; sum over the batch \(axis=0\)",
    ):
        net.gradient(x, labels(xp))


def test_a_parameter_gradient_never_stored_is_named(xp):
    class Forgetful(Scale):
        def backward(self, dout):
            return dout * self.s

    W, b, s = arrays(xp, 0, (5, 4), (4,), (4,))
    net = Sequential([Affine(W, b), Forgetful(s)], loss=SoftmaxWithLoss())
    (x,) = arrays(xp, 1, (6, 5))
    with pytest.raises(
        ValueError, match=r"layers\[1\] \(Forgetful\)\.backward stored no gradient ds"
    ):
        net.gradient(x, labels(xp, classes=4))


def test_shapes_are_checked_for_each_new_shape_of_the_batch(xp):
    # Right at batch 6, wrong at batch 1: a squeeze drops the batch axis of a single sample.
    class Squeezing(Scale):
        def backward(self, dout):
            dx = super().backward(dout)
            return namespace_of(dx).squeeze(dx, axis=0) if dx.shape[0] == 1 else dx

    net, x = around(xp, Squeezing, ReLU())
    net.gradient(x, labels(xp))
    net.gradient(x, labels(xp))  # the same shapes: checked once
    with pytest.raises(ValueError, match=r"layers\[2\] \(Squeezing\)\.backward .* shape \(4,\), "):
        net.gradient(x[:1, ...], labels(xp)[:1])


class SummedLoss(SoftmaxWithLoss):
    def backward(self, dout=1):
        return namespace_of(self.y).sum(super().backward(dout), axis=0)


class NoGradientLoss(SoftmaxWithLoss):
    def backward(self, dout=1):
        return None


@pytest.mark.parametrize(
    ("loss", "returned"),
    [(SummedLoss, r"of shape \(3,\)"), (NoGradientLoss, "of NoneType")],
    ids=["another-shape", "none"],
)
def test_a_loss_returning_a_wrong_input_gradient_is_named(xp, loss, returned):
    net = scaled_net(xp, loss=loss())
    (x,) = arrays(xp, 2, (6, 5))
    with pytest.raises(
        ValueError,
        match=rf"loss {loss.__name__}\.backward returned an input gradient {returned}, but its "
        r"input had shape \(6, 3\)",
    ):
        net.gradient(x, labels(xp))


def test_the_shapes_are_checked_again_for_targets_of_another_shape(xp):
    # Labels (N,), then target rows (N, C) of the same x: the loss's backward goes wrong
    # only for rows, and is named then.
    class WrongForRows(SoftmaxWithLoss):
        def backward(self, dout=1):
            dx = super().backward(dout)
            return dx if self.t_sum is None else namespace_of(dx).sum(dx, axis=0)

    net = scaled_net(xp, loss=WrongForRows())
    (x,) = arrays(xp, 2, (6, 5))
    t = labels(xp)
    net.gradient(x, t)
    rows = to_device(np.eye(3)[to_numpy(t)], dtype="float64", xp=xp)
    with pytest.raises(ValueError, match=r"loss WrongForRows\.backward returned an input gradient"):
        net.gradient(x, rows)


def test_a_subclass_whose_loss_does_not_call_predict_gets_its_gradient(xp):
    # No shapes are recorded without predict: the check is skipped, not an IndexError.
    class OwnForward(Sequential):
        def training_loss(self, x, t):
            for layer in self.layers:
                x = layer.forward(x)
            return self.last_layer.forward(x, t)

    W1, b1, s, W2, b2 = arrays(xp, 0, (5, 4), (4,), (4,), (4, 3), (3,))
    net = OwnForward([Affine(W1, b1), Tanh(), Scale(s), Affine(W2, b2)], loss=SoftmaxWithLoss())
    assert_gradients_of_the_scaled_net(xp, net)


def test_layers_on_two_devices_are_refused():
    strict = pytest.importorskip("array_api_strict")
    other = strict.Device("device1")
    first = Affine(strict.asarray(np.zeros((4, 3))), strict.asarray(np.zeros(3)))
    second = Affine(
        strict.asarray(np.zeros((3, 2)), device=other), strict.asarray(np.zeros(2), device=other)
    )
    with pytest.raises(BackendMismatchError, match="different devices"):
        Sequential([first, ReLU(), second], loss=SoftmaxWithLoss())


def test_a_failed_gradient_leaves_predict_recording_nothing(xp):
    # White-box: gradient() has predict record the layers' input shapes only while it runs.
    net = scaled_net(xp)
    (x,) = arrays(xp, 2, (6, 5))
    bad = to_device(np.full(6, 7), dtype="int64", xp=xp)  # labels out of range
    with pytest.raises(ValueError):
        net.gradient(x, bad)
    assert net._shapes is None


def test_layers_of_two_dtypes_are_refused_naming_the_parameter(xp):
    # A float64 layer after float32 ones promoted the scores without a word (NumPy).
    single = Affine(dev(xp, np.zeros((4, 3)), "float32"), dev(xp, np.zeros(3), "float32"))
    double = Affine(dev(xp, np.zeros((3, 2)), "float64"), dev(xp, np.zeros(2), "float64"))
    with pytest.raises(
        ValueError,
        match=r"parameter W2 \(layers\[2\] \(Affine\)\) has dtype float64, but W1 has float32",
    ):
        Sequential([single, ReLU(), double], loss=SoftmaxWithLoss())


def test_calling_a_network_gives_its_scores_as_predict_does(xp):
    net = scaled_net(xp)
    (x,) = arrays(xp, 1, (6, 5))
    assert net(x).shape == (6, 3)
    np.testing.assert_array_equal(to_numpy(net(x)), to_numpy(net.predict(x)))


def test_calling_a_network_passes_train_flg_on_as_predict_does(xp):
    class Mode:
        def forward(self, x, train_flg=False):
            return x + (1.0 if train_flg else 0.0)

        def backward(self, dout):
            return dout

    net = Sequential([Mode()], loss=MeanSquaredError())
    (x,) = arrays(xp, 1, (2, 3))
    np.testing.assert_array_equal(to_numpy(net(x, train_flg=True)), to_numpy(x) + 1.0)
    np.testing.assert_array_equal(to_numpy(net(x)), to_numpy(x))


def test_layers_given_one_by_one_as_to_torchs_sequential_are_a_type_error_showing_the_list():
    with pytest.raises(TypeError, match=r"layers must be a list of layers, got ReLU: "
                                        r"Sequential\(\[a, b\], loss=\.\.\.\)"):  # fmt: skip
        Sequential(ReLU())


# What backward takes, and the layers' own mistakes, for a PyTorch user's habits.

DOUT_TAKES = (
    r"Sequential\.backward\(dout\) takes dout, the gradient of the network's output: an array "
    r"of the shape of the scores of the last forward, \(N, C\) .*; the gradients of the loss, "
    r"torch's loss\.backward\(\), are grads = net\.gradient\(x, t\)$"
)


def after_a_forward(xp, last_activation):
    """The scaled net (ending in an Affine) or one ending in Tanh, which broadcasts a number,
    after ``net.loss(x, t)``."""
    net = scaled_net(xp)
    if last_activation:
        W, b = arrays(xp, 0, (5, 3), (3,))
        net = Sequential([Affine(W, b), Tanh()], loss=MeanSquaredError())
    (x,) = arrays(xp, 1, (6, 5))
    (t,) = arrays(xp, 2, (6, 3)) if last_activation else (labels(xp),)
    net.loss(x, t, train_flg=True)
    return net


@pytest.mark.parametrize("last_activation", [False, True], ids=["Affine", "Tanh"])
def test_backward_without_dout_says_what_it_takes(xp, last_activation):
    with pytest.raises(TypeError, match=r"^no dout: " + DOUT_TAKES):
        after_a_forward(xp, last_activation).backward()


@pytest.mark.parametrize("last_activation", [False, True], ids=["Affine", "Tanh"])
def test_backward_of_the_losss_gradient_1_says_what_it_takes(xp, last_activation):
    net = after_a_forward(xp, last_activation)
    with pytest.raises(TypeError, match=r"^got dout int 1: " + DOUT_TAKES):
        net.backward(1)
    with pytest.raises(ValueError, match=r"^got dout of shape \(\), a 0-D array: " + DOUT_TAKES):
        net.backward(xp.asarray(1.0, dtype=xp.float64))


def test_backward_of_a_dout_the_last_layer_refuses_names_it_and_says_what_it_takes(xp):
    net = after_a_forward(xp, last_activation=False)
    with pytest.raises(
        ValueError, match=r"^layers\[3\] \(Affine\)\.backward cannot take dout of shape \(6,\): "
    ) as info:
        net.backward(xp.ones((6,), dtype=xp.float64))
    assert re.search(DOUT_TAKES, str(info.value))


class Block:
    """A user's layer made of one layer: ``inner(x) + x``."""

    sublayers = ("inner",)

    def __init__(self, inner):
        self.inner = inner

    def forward(self, x):
        return self.inner.forward(x) + x

    def backward(self, dout):
        return self.inner.backward(dout) + dout


def test_backward_before_any_forward_names_the_layer_and_says_to_call_forward_first(xp):
    with pytest.raises(
        AttributeError,
        match=r"^layers\[3\] \(Affine\)\.backward found no x: call forward first "
        r"\(net\.loss\(x, t\) or net\.predict\(x, train_flg=True\)\)",
    ) as info:
        scaled_net(xp).backward(xp.ones((6, 3), dtype=xp.float64))
    assert type(info.value.__cause__) is AttributeError


def test_backward_before_any_forward_names_a_layer_inside_another_by_its_path(xp):
    W1, b1, W2, b2 = arrays(xp, 0, (4, 4), (4,), (4, 3), (3,))
    net = Sequential([Block(Affine(W1, b1)), Sequential([Tanh(), Affine(W2, b2)])])
    with pytest.raises(
        AttributeError, match=r"^layers\[1\]\.layers\[1\] \(Affine\)\.backward found"
    ):
        net.backward(xp.ones((6, 3), dtype=xp.float64))
    with pytest.raises(
        AttributeError, match=r"^layers\[0\]\.inner \(Affine\)\.backward found no x"
    ):
        Sequential([Block(Affine(W1, b1))]).backward(xp.ones((6, 4), dtype=xp.float64))


def test_an_attribute_error_of_something_else_than_the_layer_passes_as_it_is(xp):
    class ReadsTheGradient:
        def forward(self, x):
            return x

        def backward(self, dout):
            return dout.not_an_attribute

    with pytest.raises(AttributeError, match="not_an_attribute") as info:
        Sequential([ReadsTheGradient()]).backward(xp.ones((6, 3), dtype=xp.float64))
    assert type(info.value) is AttributeError


class Pair:
    """A user's layer whose forward returns a tuple."""

    def forward(self, x):
        return x, x

    def backward(self, dout):
        return dout


TUPLE = (
    r"^layers\[1\] \(Pair\)\.forward returned a tuple, not an array: a layer's forward returns one"
)


def pair_net(xp, *after):
    W, b = arrays(xp, 0, (5, 3), (3,))
    (x,) = arrays(xp, 1, (6, 5))
    return Sequential([Affine(W, b), Pair(), *after], loss=SoftmaxWithLoss()), x


def test_a_forward_returning_a_tuple_is_named_when_the_next_layer_refuses_it(xp):
    net, x = pair_net(xp, Tanh())
    with pytest.raises(TypeError, match=TUPLE):
        net.predict(x)


@pytest.mark.parametrize("call", ["loss", "gradient"])
def test_a_last_layer_returning_a_tuple_is_named_when_the_loss_refuses_it(xp, call):
    net, x = pair_net(xp)
    with pytest.raises(TypeError, match=TUPLE):
        getattr(net, call)(x, labels(xp))


def test_a_forward_returning_a_tuple_inside_a_stack_is_named_by_its_path(xp):
    W, b = arrays(xp, 0, (5, 3), (3,))
    (x,) = arrays(xp, 1, (6, 5))
    net = Sequential([Affine(W, b), Sequential([Pair(), Tanh()])], loss=SoftmaxWithLoss())
    with pytest.raises(TypeError, match=r"^layers\[1\]\.layers\[0\] \(Pair\)\.forward returned a"):
        net.loss(x, labels(xp))


class TanhOnTheHost:
    """A user's tanh written with ``np.`` functions: NumPy arrays out of any library's."""

    def forward(self, x):
        return np.tanh(to_numpy(x))

    def backward(self, dout):
        return dout


def host_net(xp, *layers):
    """``layers`` between two Affine layers (5 -> 3 -> 2) on ``xp``, and an input (6, 5)."""
    if library_of(xp.asarray(0.0)) == "numpy":
        pytest.skip("np. functions are NumPy's own namespace")
    W1, b1, W2, b2 = arrays(xp, 0, (5, 3), (3,), (3, 2), (2,))
    (x,) = arrays(xp, 1, (6, 5))
    return Sequential([Affine(W1, b1), *layers, Affine(W2, b2)]), x


def test_a_layer_computing_with_np_functions_is_named_by_the_layer_that_refuses_its_output(xp):
    net, x = host_net(xp, TanhOnTheHost(), ReLU())
    with pytest.raises(BackendMismatchError) as info:
        net.predict(x)
    assert str(info.value) == (
        "the input of layers[3] (Affine), the output of layers[2] (ReLU), is an array of "
        f"numpy, but the parameters are {library_of(x)}'s: a layer at or before layers[2] "
        "computed with np. functions (use xp = xpnet.backend.namespace_of(x))"
    )


def test_a_layer_computing_with_np_functions_inside_a_stack_is_named_by_its_path(xp):
    net, x = host_net(xp, Sequential([TanhOnTheHost(), Affine(*arrays(xp, 2, (3, 3), (3,)))]))
    with pytest.raises(
        BackendMismatchError,
        match=r"^the input of layers\[1\]\.layers\[1\] \(Affine\), the output of "
        r"layers\[1\]\.layers\[0\] \(TanhOnTheHost\), is an array of numpy, .* at or before "
        r"layers\[1\]\.layers\[0\] computed",
    ):
        net.predict(x)


def test_the_trainer_names_a_last_layer_returning_a_tuple(cpu_xp):
    net, x = pair_net(cpu_xp)
    with pytest.raises(TypeError, match=TUPLE):
        Trainer(net, SGD(lr=0.1), x, labels(cpu_xp), x, labels(cpu_xp), epochs=1)
