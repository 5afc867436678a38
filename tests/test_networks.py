"""TwoLayerNet and MultiLayerNet: the book's surface, seeded weights, and backprop gradients
checked against an independent NumPy float64 central difference."""

import inspect
import re
import warnings

import array_api_compat
import array_api_strict
import numpy as np
import pytest
from numeric import central_difference

from xpnet import MultiLayerNet, SimpleConvNet, TwoLayerNet
from xpnet.backend import BackendMismatchError, namespace_of, to_device, to_numpy
from xpnet.layers import BatchNormalization, Dropout, SigmoidWithLoss, SoftmaxWithLoss
from xpnet.networks import ACTIVATIONS


def batch(xp, n=4, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = to_device(rng.standard_normal((n, d)), dtype="float64", xp=xp)
    t = to_device(rng.integers(0, classes, n), dtype="int64", xp=xp)
    return x, t


#: Each of xpnet.networks.ACTIVATIONS written in NumPy: one added there without its
#: formula here fails the tests parametrized over it.
NP_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
}


def np_scores(params, x, activation="relu"):
    """The network's scores written out in plain NumPy, for rows ``x`` (N, D)."""
    depth = len(params) // 2
    h = x
    for k in range(1, depth + 1):
        h = h @ params[f"W{k}"] + params[f"b{k}"]
        if k < depth:
            h = NP_ACTIVATIONS[activation](h)
    return h


def np_forward_loss(params, x, labels, activation, weight_decay):
    """The same network written out in plain NumPy: the reference for loss and gradients."""
    depth = len(params) // 2
    h = np_scores(params, x, activation)
    z = h - h.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -np.mean(logp[np.arange(len(labels)), labels])
    return loss + 0.5 * weight_decay * sum(
        np.sum(params[f"W{k}"] ** 2) for k in range(1, depth + 1)
    )


def reference_gradient(net, x, t, activation, weight_decay):
    """Every parameter's gradient by ``central_difference`` of ``np_forward_loss``, on the host."""
    params = {name: to_numpy(p) for name, p in net.params.items()}
    x_np, t_np = to_numpy(x), to_numpy(t)

    def gradient_of(name):
        def loss_of(value):
            return np_forward_loss({**params, name: value}, x_np, t_np, activation, weight_decay)

        return central_difference(loss_of, params[name])

    return {name: gradient_of(name) for name in params}


def test_two_layer_net_has_the_books_parameters(xp):
    net = TwoLayerNet(784, 50, 10, seed=0, xp=xp)
    shapes = {name: tuple(p.shape) for name, p in net.params.items()}
    assert shapes == {"W1": (784, 50), "b1": (50,), "W2": (50, 10), "b2": (10,)}
    assert np.std(to_numpy(net.params["W1"])) == pytest.approx(0.01, rel=0.05)
    assert not np.any(to_numpy(net.params["b1"]))


def test_a_sigmoid_output_before_sigmoid_with_loss_is_refused(xp):
    with pytest.raises(ValueError, match=r"layers\[3\] \(Sigmoid\) feeds SigmoidWithLoss"):
        MultiLayerNet(4, [3], 2, output_activation="sigmoid", loss=SigmoidWithLoss(), xp=xp)


def test_default_dtype_is_float32_and_float64_is_available(xp):
    assert TwoLayerNet(4, 3, 2, xp=xp).params["W1"].dtype == xp.float32
    assert TwoLayerNet(4, 3, 2, dtype="float64", xp=xp).params["W1"].dtype == xp.float64


@pytest.mark.parametrize("name", ["float32", "float64"])
def test_builders_take_the_namespaces_own_dtype(xp, name):
    # A user of xp= writes dtype=xp.float64 (torch.float64, array_api_strict.float64), as
    # to_device and random_normal take it; the builders refused all but NumPy's.
    dtype = getattr(xp, name)
    nets = [
        TwoLayerNet(4, 3, 2, dtype=dtype, xp=xp),
        MultiLayerNet(4, [3], 2, dtype=dtype, xp=xp),
        SimpleConvNet((1, 6, 6), {"filter_num": 2, "filter_size": 3}, 3, 2, dtype=dtype, xp=xp),
    ]
    for net in nets:
        assert net.dtype == name
        assert all(p.dtype == dtype for p in net.params.values())


def test_a_dtype_of_another_namespace_is_refused_by_name(xp):
    strict = array_api_compat.is_array_api_strict_namespace(xp)
    other = pytest.importorskip("torch") if strict else array_api_strict
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        TwoLayerNet(4, 3, 2, dtype=other.float64, xp=xp)


def test_a_network_built_with_xp_and_device_lives_on_that_device():
    device1 = array_api_strict.Device("device1")
    net = MultiLayerNet(4, [3], 2, use_batchnorm=True, seed=0, device=device1, xp=array_api_strict)
    batchnorm = net[1]
    arrays = [*net.params.values(), batchnorm.running_mean, batchnorm.running_var]
    assert [a.device for a in arrays] == [device1] * 8


def test_a_seed_gives_the_same_network_on_every_backend(xp):
    here = MultiLayerNet(5, [4, 3], 2, seed=42, xp=xp)
    reference = MultiLayerNet(5, [4, 3], 2, seed=42, device="cpu")
    for name in reference.params:
        np.testing.assert_array_equal(to_numpy(here.params[name]), reference.params[name])


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_backprop_matches_an_independent_numerical_gradient(xp, activation, weight_decay):
    net = MultiLayerNet(
        6, [5, 4], 3, activation=activation, weight_init="xavier",
        weight_decay=weight_decay, dtype="float64", seed=1, xp=xp,
    )  # fmt: skip
    x, t = batch(xp)
    grads = net.gradient(x, t)
    for name, expected in reference_gradient(net, x, t, activation, weight_decay).items():
        np.testing.assert_allclose(to_numpy(grads[name]), expected, rtol=1e-5, atol=1e-8)


def test_loss_matches_the_numpy_reference(xp):
    net = MultiLayerNet(6, [5], 3, weight_decay=0.05, dtype="float64", seed=2, xp=xp)
    x, t = batch(xp)
    params = {name: to_numpy(p) for name, p in net.params.items()}
    expected = np_forward_loss(params, to_numpy(x), to_numpy(t), "relu", 0.05)
    assert float(net.loss(x, t)) == pytest.approx(expected, rel=1e-12)


def test_one_hot_targets_give_the_same_gradient_as_labels(xp):
    net = TwoLayerNet(6, 5, 3, dtype="float64", seed=3, xp=xp)
    x, t = batch(xp)
    one_hot = to_device(np.eye(3)[to_numpy(t)], dtype="float64", xp=xp)
    by_label, by_one_hot = net.gradient(x, t), net.gradient(x, one_hot)
    for name in by_label:
        np.testing.assert_allclose(to_numpy(by_one_hot[name]), to_numpy(by_label[name]))


def test_numerical_gradient_method_matches_an_independent_numerical_gradient(cpu_xp):
    net = TwoLayerNet(6, 4, 3, weight_init_std=0.5, dtype="float64", seed=4, xp=cpu_xp)
    x, t = batch(cpu_xp)
    numerical = net.numerical_gradient(x, t)
    for name, expected in reference_gradient(net, x, t, "relu", 0.0).items():
        np.testing.assert_allclose(to_numpy(numerical[name]), expected, rtol=1e-5, atol=1e-9)


def test_numerical_gradient_method_warns_of_the_books_step_on_a_float32_network(cpu_xp):
    # float32 rounds a loss of about 1 at 1e-7: divided by 2e-4, errors of about 1e-3.
    net = TwoLayerNet(6, 4, 3, dtype="float32", seed=4, xp=cpu_xp)
    x, t = batch(cpu_xp)
    message = r"h=0.0001 is too small for float32: .* build the network with dtype='float64'"
    with pytest.warns(UserWarning, match=message) as caught:
        net.numerical_gradient(cpu_xp.astype(x, cpu_xp.float32), t, params=["b2"])
    assert caught[0].filename == __file__


def test_numerical_gradient_method_takes_a_larger_step_on_a_float32_network_quietly(cpu_xp):
    net = TwoLayerNet(6, 4, 3, dtype="float32", seed=4, xp=cpu_xp)
    x, t = batch(cpu_xp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.numerical_gradient(cpu_xp.astype(x, cpu_xp.float32), t, 1e-2, params=["b2"])


def test_numerical_gradient_method_leaves_batchnorm_statistics_and_matches_backprop(cpu_xp):
    # Each of its passes moved the running statistics (0.56 in one call of 784 inputs).
    net = MultiLayerNet(6, [5], 3, use_batchnorm=True, dtype="float64", seed=0, xp=cpu_xp)
    x, t = batch(cpu_xp)
    batchnorm = net[1]
    before = [to_numpy(batchnorm.running_mean).copy(), to_numpy(batchnorm.running_var).copy()]
    numerical = net.numerical_gradient(x, t, 1e-5, params=["W1", "gamma1"])
    after = [to_numpy(batchnorm.running_mean), to_numpy(batchnorm.running_var)]
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(new, old)
    analytic = net.gradient(x, t)
    for name, grad in numerical.items():
        np.testing.assert_allclose(to_numpy(grad), to_numpy(analytic[name]), atol=1e-8)


def test_numerical_gradient_method_holds_one_dropout_mask_and_warns_it_is_not_gradients(cpu_xp):
    # A new mask per pass made its differences noise of about 2,000 in every parameter.
    def net():
        return MultiLayerNet(6, [5], 3, use_dropout=True, dtype="float64", seed=0, xp=cpu_xp)

    x, t = batch(cpu_xp)
    held, untouched = net(), net()
    with pytest.warns(UserWarning, match=r"Dropout draws new.*xpnet.check_gradients"):
        at_h = held.numerical_gradient(x, t, 1e-5, params=["W1"])["W1"]
    with pytest.warns(UserWarning):
        at_half_h = held.numerical_gradient(x, t, 5e-6, params=["W1"])["W1"]
    # One smooth function of W1 (one mask), not noise:
    np.testing.assert_allclose(to_numpy(at_half_h), to_numpy(at_h), rtol=1e-5, atol=1e-9)
    # and Dropout's own generator did not move: the next gradient is as without the calls.
    np.testing.assert_array_equal(
        to_numpy(held.gradient(x, t)["W1"]), to_numpy(untouched.gradient(x, t)["W1"])
    )


def test_predict_flattens_images_in_row_major_order(xp):
    net = TwoLayerNet(12, 4, 3, weight_init_std=0.5, dtype="float64", seed=0, xp=xp)
    images = np.random.default_rng(5).standard_normal((2, 1, 3, 4))
    params = {name: to_numpy(p) for name, p in net.params.items()}
    expected = np_scores(params, images.reshape(2, -1))
    scores = net.predict(to_device(images, dtype="float64", xp=xp))
    np.testing.assert_allclose(to_numpy(scores), expected, rtol=1e-12, atol=1e-15)


def test_accuracy_counts_the_top_scoring_class(xp):
    net = TwoLayerNet(2, 2, 2, dtype="float64", seed=0, xp=xp)
    net.params["W1"] = to_device(np.eye(2), dtype="float64", xp=xp)
    net.params["W2"] = to_device(np.eye(2), dtype="float64", xp=xp)
    x = to_device([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [1.0, 4.0]], dtype="float64", xp=xp)
    t = to_device([0, 1, 1, 1], dtype="int64", xp=xp)
    assert net.accuracy(x, t) == 0.75
    assert net.accuracy(x, to_device(np.eye(2)[[0, 1, 1, 1]], xp=xp)) == 0.75


def test_accuracy_puts_batch_size_samples_through_the_network_at_a_time(xp):
    net = TwoLayerNet(6, 4, 3, weight_init_std=0.5, dtype="float64", seed=0, xp=xp)
    x, t = batch(xp, n=5)
    expected = np.mean(to_numpy(net.predict(x)).argmax(axis=1) == to_numpy(t))
    sizes, predict = [], net.predict
    net.predict = lambda x: sizes.append(x.shape[0]) or predict(x)
    assert net.accuracy(x, t, batch_size=2) == expected
    assert sizes == [2, 2, 1]


def test_accuracy_counts_the_hits_of_every_batch(xp):
    net = TwoLayerNet(6, 4, 3, weight_init_std=0.5, dtype="float64", seed=0, xp=xp)
    x, _ = batch(xp, n=5)
    top = to_device(to_numpy(net.predict(x)).argmax(axis=1), dtype="int64", xp=xp)
    assert net.accuracy(x, top, batch_size=2) == 1.0


def test_accuracy_refuses_a_batch_size_below_one(xp):
    net = TwoLayerNet(6, 4, 3, dtype="float64", seed=0, xp=xp)
    x, t = batch(xp)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        net.accuracy(x, t, batch_size=0)


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([0], r"integer labels of shape \(4,\) or target rows of shape \(4, 3\), got "
              r"int64 of shape \(1,\)"),
        ([[0], [1], [2], [1]], r"got int64 of shape \(4, 1\)"),
        ([0.0, 1.0, 2.0, 1.0], r"got float64 of shape \(4,\)"),
        ([0, 1, 3, 1], r"label 3 is out of range \(at index 2; 1 of 4 labels are\): expected "
                       r"labels in \[0, 2\]"),
        ([0, -1, 2, 1], r"label -1 is out of range"),
    ],
)  # fmt: skip
def test_accuracy_refuses_targets_that_do_not_fit_the_scores(xp, targets, message):
    net = TwoLayerNet(6, 4, 3, dtype="float64", seed=0, xp=xp)
    x, _ = batch(xp)
    dtype = "float64" if isinstance(np.asarray(targets).flat[0], float) else "int64"
    with pytest.raises(ValueError, match=message):
        net.accuracy(x, to_device(targets, dtype=dtype, xp=xp))


def test_accuracy_refuses_a_python_number_as_targets(xp):
    net = TwoLayerNet(6, 4, 3, dtype="float64", seed=0, xp=xp)
    x, _ = batch(xp)
    with pytest.raises(TypeError, match="targets must be an array, got int 2"):
        net.accuracy(x, 2)


def test_an_empty_batch_has_nan_loss_and_accuracy_and_zero_gradients(xp):
    net = TwoLayerNet(6, 4, 3, dtype="float64", seed=0, xp=xp)
    x = to_device(np.zeros((0, 6)), dtype="float64", xp=xp)
    t = to_device(np.zeros(0), dtype="int64", xp=xp)
    with np.errstate(invalid="ignore"):  # NumPy warns of the mean of nothing, as np.mean does
        assert np.isnan(float(net.loss(x, t)))
        grads = net.gradient(x, t)
    assert np.isnan(net.accuracy(x, t))
    assert all(not np.any(to_numpy(g)) for g in grads.values())


def test_params_is_a_live_view_of_the_layers(xp):
    net = TwoLayerNet(3, 2, 2, dtype="float64", seed=0, xp=xp)
    new = to_device(np.full((3, 2), 0.5), dtype="float64", xp=xp)
    net.params["W1"] = new
    assert net.layers[0].W is new
    with pytest.raises(ValueError, match=r"'W1' has shape \(3, 2\), got \(2, 3\)"):
        net.params["W1"] = to_device(np.zeros((2, 3)), xp=xp)
    with pytest.raises(KeyError, match="W9"):
        net.params["W9"] = new


@pytest.mark.parametrize("read", [lambda p: p["w1"], lambda p: p.slot("w1")])
def test_reading_an_unknown_parameter_names_the_parameters(read):
    params = TwoLayerNet(3, 2, 2, seed=0).params
    with pytest.raises(KeyError, match=r"no parameter 'w1'; parameters are W1, b1, W2, b2"):
        read(params)
    assert "w1" not in params and params.get("w1") is None


def test_a_parameter_keeps_its_dtype(xp):
    net = TwoLayerNet(3, 2, 2, dtype="float32", seed=0, xp=xp)
    with pytest.raises(
        ValueError,
        match=r"'W1' has dtype float32, got float64: .*give it a float32 array .*for the whole "
        r"network in another dtype, net\.to\(dtype\)",
    ):
        net.params["W1"] = to_device(np.zeros((3, 2)), dtype="float64", xp=xp)


def test_a_parameter_must_be_an_array_of_the_networks_backend(xp):
    net = TwoLayerNet(3, 2, 2, dtype="float64", seed=0, xp=xp)
    with pytest.raises(TypeError, match=r"'b1' must be an array of shape \(2,\), got float"):
        net.params["b1"] = 0.0
    other = to_device(np.zeros(2), dtype="float64", xp=array_api_strict)
    if namespace_of(other) is not namespace_of(net.params["b1"]):
        with pytest.raises(BackendMismatchError, match="different backends"):
            net.params["b1"] = other


def test_a_parameter_on_another_device_is_refused_by_name():
    net = TwoLayerNet(
        3, 2, 2, seed=0, device=array_api_strict.Device("device1"), xp=array_api_strict
    )
    with pytest.raises(BackendMismatchError, match="parameter 'b1': arrays on different devices"):
        net.params["b1"] = to_device(np.zeros(2), dtype="float32", xp=array_api_strict)


def test_predict_names_an_input_of_another_backend(xp):
    net = TwoLayerNet(3, 2, 2, dtype="float64", seed=0, xp=xp)
    x = to_device(np.ones((4, 3)), dtype="float64", xp=array_api_strict)
    if namespace_of(x) is namespace_of(net.params["W1"]):
        x = np.ones((4, 3))  # the strict network gets a NumPy batch
    with pytest.raises(BackendMismatchError, match="different backends"):
        net.predict(x)


def test_loss_at_leaves_the_network_unchanged(xp):
    net = TwoLayerNet(6, 4, 3, dtype="float64", seed=0, xp=xp)
    x, t = batch(xp)
    before = float(net.loss(x, t))
    original = net.params["W2"]
    changed = float(net.loss_at("W2", original * 2.0, x, t))
    assert changed != before
    assert net.params["W2"] is original
    assert float(net.loss(x, t)) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation": "gelu"}, "unknown activation 'gelu'"),
        ({"weight_init": "orthogonal"}, "unknown weight_init 'orthogonal'"),
        ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
        ({"weight_init": float("nan")}, "weight_init must be a finite standard deviation "
                                        ">= 0, got nan"),
        ({"weight_init": -0.1}, "finite standard deviation >= 0, got -0.1"),
        ({"seed": -1}, "seed must be an integer >= 0 or None, got -1"),
        ({"weight_decay": "0.1"}, "weight_decay must be a finite number >= 0, got '0.1'"),
        ({"weight_decay": float("inf")}, "weight_decay must be a finite number >= 0, got inf"),
    ],
)  # fmt: skip
def test_bad_network_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiLayerNet(4, [3], 2, **kwargs)


def _batchnorm(xp, momentum):
    return BatchNormalization(to_device(np.ones(3), xp=xp), to_device(np.zeros(3), xp=xp), momentum)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda xp: TwoLayerNet("4", 3, 2, xp=xp), r"layer sizes must be .*, got \['4', 3, 2\]"),
        (lambda xp: TwoLayerNet(4, 3.0, 2, xp=xp), r"layer sizes must be .*, got \[4, 3\.0, 2\]"),
        (lambda xp: MultiLayerNet(4, [3], 2, seed="0", xp=xp), "seed must be .*, got '0'"),
        (lambda xp: MultiLayerNet(4, [3], 2, seed=1.5, xp=xp), "seed must be .*, got 1.5"),
        (lambda xp: MultiLayerNet(4, [3], 2, weight_decay="0", xp=xp), "weight_decay .*, got '0'"),
        (lambda xp: SimpleConvNet(hidden_size=10.0, xp=xp), "hidden_size must be .*, got 10.0"),
        (lambda xp: Dropout("0.5"), r"dropout_ratio must be in \[0, 1\), got '0.5'"),
        (lambda xp: _batchnorm(xp, momentum="0.9"), "momentum must be in .*got '0.9'"),
    ],
)
def test_an_argument_of_the_wrong_type_is_a_type_error_that_is_still_a_value_error(
    xp, build, message
):
    """NumPy and PyTorch raise ``TypeError`` for a string or a float given as a count; xpnet's
    error is that, and the ``ValueError`` its other argument errors are."""
    with pytest.raises(TypeError, match=message) as raised:
        build(xp)
    assert isinstance(raised.value, ValueError)


def test_a_loss_class_instead_of_an_instance_is_refused_when_the_net_is_built():
    with pytest.raises(TypeError, match=r"class SoftmaxWithLoss, not an instance"):
        MultiLayerNet(4, [3], 2, loss=SoftmaxWithLoss)


BUILDERS = {
    "TwoLayerNet": lambda **kw: TwoLayerNet(4, 3, 2, **kw),
    "MultiLayerNet": lambda **kw: MultiLayerNet(4, [3], 2, **kw),
    "SimpleConvNet": lambda **kw: SimpleConvNet((1, 6, 6), {"filter_num": 2}, 3, 2, **kw),
}


DTYPE_SPELLINGS = {"name": str, "numpy dtype": np.dtype, "numpy type": lambda n: getattr(np, n)}


@pytest.mark.parametrize("builder", list(BUILDERS))
@pytest.mark.parametrize("name", ["float32", "float64"])
@pytest.mark.parametrize("spelling", list(DTYPE_SPELLINGS))
def test_the_builders_take_a_numpy_dtype_or_type_as_well_as_its_name(xp, builder, name, spelling):
    net = BUILDERS[builder](dtype=DTYPE_SPELLINGS[spelling](name), xp=xp)
    assert net.dtype == name
    assert all(p.dtype == getattr(xp, name) for p in net.params.values())


@pytest.mark.parametrize("builder", list(BUILDERS))
@pytest.mark.parametrize(
    "dtype", ["float16", np.float16, np.dtype("int64"), np.int32, "int64", float, None]
)
def test_the_builders_refuse_other_dtypes_naming_them(builder, dtype):
    with pytest.raises(
        ValueError, match=rf"dtype must be .*float32.*, got {re.escape(repr(dtype))}"
    ):
        BUILDERS[builder](dtype=dtype)


@pytest.mark.parametrize(("weight_init", "gain"), [("he", 2.0), ("xavier", 1.0)])
def test_he_and_xavier_draw_weights_of_std_sqrt_gain_over_fan_in(weight_init, gain):
    # He: std sqrt(2 / fan_in); Xavier (the book's form): sqrt(1 / fan_in). 4 million
    # draws put the sample std within 0.1 % of its value.
    net = MultiLayerNet(2000, [2000], 2, weight_init=weight_init, dtype="float64", seed=0)
    W1 = to_numpy(net.params["W1"])
    assert W1.std() == pytest.approx(np.sqrt(gain / 2000), rel=0.01)


@pytest.mark.parametrize(
    ("book_name", "name"),
    [("relu", "he"), ("He", "he"), ("sigmoid", "xavier"), ("Xavier", "xavier")],
)
def test_weight_init_takes_the_books_names_in_any_case(book_name, name):
    # The book's MultiLayerNet lowercases weight_init_std and takes 'relu' for He's init,
    # 'sigmoid' for Xavier's.
    book = MultiLayerNet(6, [5], 3, weight_init=book_name, dtype="float64", seed=0)
    ours = MultiLayerNet(6, [5], 3, weight_init=name, dtype="float64", seed=0)
    for key in ours.params:
        np.testing.assert_array_equal(to_numpy(book.params[key]), to_numpy(ours.params[key]))


@pytest.mark.parametrize(
    ("book", "xpnet"),
    [
        ("hidden_size_list", "hidden_sizes"),
        ("weight_init_std", "weight_init"),
        ("weight_decay_lambda", "weight_decay"),
        ("dropout_ration", "dropout_ratio"),
    ],
)
def test_the_books_multilayernet_keywords_are_refused_naming_xpnets(book, xpnet):
    # The book's MultiLayerNet(Extend) keyword, as its chapter 6 scripts pass them.
    kwargs = {"input_size": 4, "hidden_sizes": [3], "output_size": 2, book: [5]}
    with pytest.raises(TypeError, match=rf"MultiLayerNet\(\).* {xpnet}=\[5\] \(not {book}\)"):
        MultiLayerNet(**kwargs)


def test_every_book_keyword_of_a_call_is_named_at_once():
    book = {"hidden_size_list": [3], "weight_decay_lambda": 0.1}
    with pytest.raises(TypeError) as refused:
        MultiLayerNet(input_size=4, output_size=2, **book)
    assert "hidden_sizes=[3] (not hidden_size_list)" in str(refused.value)
    assert "weight_decay=0.1 (not weight_decay_lambda)" in str(refused.value)


def test_multilayernet_shows_its_own_signature():
    assert "hidden_sizes" in inspect.signature(MultiLayerNet).parameters


def test_the_book_networks_name_a_bad_weight_init_std():
    with pytest.raises(ValueError, match="weight_init_std must be a finite standard deviation"):
        TwoLayerNet(4, 3, 2, weight_init_std=float("inf"))
    with pytest.raises(ValueError, match=r"weight_init_std must be .* >= 0, got -1"):
        SimpleConvNet(weight_init_std=-1)


def test_a_conv_net_names_an_unknown_initialisation_and_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown weight_init_std 'kaiming' for W1: .*'he'"):
        SimpleConvNet(weight_init_std="kaiming")


def test_a_std_of_zero_gives_all_zero_weights(xp):
    """The book's example of what not to do (chapter 6), so it can be shown."""
    net = TwoLayerNet(4, 3, 2, weight_init_std=0.0, xp=xp)
    assert not np.any(to_numpy(net.params["W1"])) and not np.any(to_numpy(net.params["W2"]))


def test_layer_sizes_are_any_positive_integers_but_bools():
    assert MultiLayerNet(np.int64(4), [np.int32(3)], 2).sizes == [4, 3, 2]
    with pytest.raises(ValueError, match=r"positive integers, got \[True, 3, 2\]"):
        MultiLayerNet(True, [3], 2)
    with pytest.raises(TypeError, match=r"hidden_sizes must be a sequence .* \[50\], got 3"):
        MultiLayerNet(4, 3, 2)


def test_wrong_input_width_names_the_shapes(xp):
    net = TwoLayerNet(6, 4, 3, dtype="float64", xp=xp)
    x = to_device(np.zeros((2, 5)), dtype="float64", xp=xp)
    with pytest.raises(ValueError, match=r"\(2, 5\).*\(6, 4\)"):
        net.loss(x, to_device([0, 1], dtype="int64", xp=xp))


def test_each_dropout_layer_draws_its_own_mask(xp):
    """A seeded net's dropout layers must not repeat one another's mask: two equal-shaped
    layers drawing the same 4 x 50 mask would drop the same units together (the chance
    that independent masks agree is 2**-200)."""
    net = MultiLayerNet(6, [50, 50], 3, use_dropout=True, seed=0, xp=xp, dtype="float64")
    net.predict(batch(xp)[0], train_flg=True)
    first, second = (to_numpy(layer.mask) for layer in net.layers if isinstance(layer, Dropout))
    assert first.shape == second.shape == (4, 50)
    assert not np.array_equal(first, second)


def test_uniform_bias_init_draws_from_zero_to_one(xp):
    """The documented range is [0, 1): of 53 biases, none is negative."""
    net = MultiLayerNet(6, [50], 3, bias_init="uniform", seed=0, xp=xp)
    b = np.concatenate([to_numpy(net.params["b1"]), to_numpy(net.params["b2"])])
    assert b.min() >= 0.0 and b.max() < 1.0


def test_dropout_ratio_reaches_the_dropout_layers(xp):
    """In eval mode dropout scales its input by 1 - ratio = 0.8, so the scores are
    relu(x W1 + b1) * 0.8 @ W2 + b2, written out in NumPy."""
    net = MultiLayerNet(
        6, [5], 3, use_dropout=True, dropout_ratio=0.2, seed=0, xp=xp, dtype="float64"
    )
    x = batch(xp)[0]
    p = {k: to_numpy(v) for k, v in net.params.items()}
    expected = np.maximum(to_numpy(x) @ p["W1"] + p["b1"], 0) * 0.8 @ p["W2"] + p["b2"]
    np.testing.assert_allclose(to_numpy(net.predict(x)), expected, rtol=1e-10, atol=1e-14)


def test_batchnorm_layers_use_the_books_momentum(xp):
    """One training pass from zero running means gives 0.1 * the batch mean of x W1 + b1
    (running = 0.9 * running + 0.1 * batch)."""
    net = MultiLayerNet(6, [5], 3, use_batchnorm=True, seed=0, xp=xp, dtype="float64")
    x = batch(xp)[0]
    net.predict(x, train_flg=True)
    (bn,) = (layer for layer in net.layers if isinstance(layer, BatchNormalization))
    h = to_numpy(x) @ to_numpy(net.params["W1"]) + to_numpy(net.params["b1"])
    np.testing.assert_allclose(to_numpy(bn.running_mean), 0.1 * h.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize(("network", "data"), [("float32", "float64"), ("float64", "float32")])
def test_a_network_computes_in_its_own_dtype_on_data_of_another_precision(xp, network, data):
    rng = np.random.default_rng(3)
    x, labels = rng.random((5, 6)), rng.integers(0, 3, 5)
    t = to_device(labels, dtype="int64", xp=xp)
    net = TwoLayerNet(6, 4, 3, weight_init_std=0.5, dtype=network, seed=1, xp=xp)
    given = to_device(x, dtype=data, xp=xp)
    converted = to_device(to_numpy(given), dtype=network, xp=xp)  # by hand
    assert to_numpy(net.predict(given)).dtype == np.dtype(network)
    np.testing.assert_array_equal(to_numpy(net.predict(given)), to_numpy(net.predict(converted)))
    grads, expected = net.gradient(given, t), net.gradient(converted, t)
    for name, grad in grads.items():
        assert to_numpy(grad).dtype == np.dtype(network)
        np.testing.assert_array_equal(to_numpy(grad), to_numpy(expected[name]))


def test_integer_data_is_still_refused_naming_its_dtype(xp):
    net = TwoLayerNet(6, 4, 3, seed=1, xp=xp)
    with pytest.raises(ValueError, match="real floating-point array, got dtype uint8"):
        net.predict(to_device(np.ones((2, 6)), dtype="uint8", xp=xp))


def test_raw_pixels_given_to_a_network_are_refused_saying_how_to_convert_them(xp):
    net = TwoLayerNet(6, 4, 3, seed=1, xp=xp)
    with pytest.raises(ValueError) as info:
        net.predict(to_device(np.ones((2, 6)), dtype="uint8", xp=xp))
    assert str(info.value) == (
        "layers[0] (Affine) cannot take the input, of shape (2, 6): Affine input must be a "
        "real floating-point array, got dtype uint8; raw pixels (0 to 255) go in as floating "
        "point divided by 255: xp.astype(x, xp.float32) / 255, or load_mnist(normalize=True)"
    )


@pytest.mark.parametrize(
    ("name", "use"),
    [
        ("lastLayer", "net.last_layer"),
        ("save_params", r"xpnet.checkpoint.save_params\(path, net\)"),
        ("load_params", r"xpnet.checkpoint.load_params\(path, net\)"),
    ],
)
def test_the_books_network_attributes_name_xpnets(name, use):
    net = TwoLayerNet(4, 3, 2, seed=0)
    with pytest.raises(
        AttributeError, match=rf"no attribute '{name}'; for the book's {name}, use {use}"
    ):
        getattr(net, name)


@pytest.mark.parametrize(
    ("name", "use"),
    [
        ("parameters", r"net\.params, a live mapping"),
        ("named_parameters", r"net\.params\.items\(\)"),
        ("state_dict", r"xpnet\.checkpoint\.save_params\(path, net\)"),
        ("load_state_dict", r"xpnet\.checkpoint\.load_params\(path, net\)"),
        ("train", "train_flg=True"),
        ("eval", "train_flg=False"),
        ("zero_grad", r"nothing: net\.gradient\(x, t\) returns new gradients"),
        ("cuda", r"net\.to\(device='cuda'\)"),
        ("cpu", r"net\.to\(device='cpu'\)"),
        ("requires_grad_", r"Trainer\(\.\.\., frozen="),
        ("named_modules", r"net\.named_layers\(\)"),
        ("modules", r"net\.named_layers\(\)"),
        ("children", r"iter\(net\)"),
    ],
)
def test_pytorchs_module_attributes_name_xpnets(name, use):
    net = TwoLayerNet(4, 3, 2, seed=0)
    with pytest.raises(
        AttributeError,
        match=rf"no attribute '{name}'; for PyTorch's {name}, use {use}.* \(docs/pytorch\.md\)$",
    ):
        getattr(net, name)


def test_another_missing_network_attribute_is_a_plain_attribute_error():
    with pytest.raises(
        AttributeError, match=r"^'TwoLayerNet' object has no attribute 'lastlayer'$"
    ):
        getattr(TwoLayerNet(4, 3, 2, seed=0), "lastlayer")  # noqa: B009


def test_a_dropout_ratio_without_use_dropout_warns_that_no_dropout_was_added():
    # It silently built Affine, ReLU, Affine.
    with pytest.warns(UserWarning, match=r"dropout_ratio=0\.3 without use_dropout=True") as w:
        net = MultiLayerNet(4, [3], 2, dropout_ratio=0.3)
    assert w[0].filename == __file__
    assert [type(layer).__name__ for layer in net] == ["Affine", "ReLU", "Affine"]


def test_use_dropout_alone_drops_half_as_the_book():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = MultiLayerNet(4, [3], 2, use_dropout=True)
    assert [layer.dropout_ratio for layer in net if hasattr(layer, "dropout_ratio")] == [0.5]
