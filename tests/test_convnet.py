"""SimpleConvNet and MultiLayerNet's BatchNorm/Dropout options: the book's structure, seeded
weights, backprop against an independent NumPy float64 central difference, gradient checks."""

import numpy as np
import pytest
from numeric import central_difference
from test_conv import np_convolution, np_max_pool

from xpnet import MultiLayerNet, SimpleConvNet, check_gradients
from xpnet.backend import to_device, to_numpy
from xpnet.checkpoint import load_network, save_params
from xpnet.conv import Convolution, Pooling
from xpnet.kinks import refined_step
from xpnet.layers import Affine, BatchNormalization, Dropout, ReLU
from xpnet.training import evaluate

SMALL = {"input_dim": (2, 8, 8), "conv_param": {"filter_num": 3, "filter_size": 3}}


def small_net(xp):
    """The float64 conv net of these tests: SMALL, 5 hidden units, 4 classes, seed 0."""
    return SimpleConvNet(**SMALL, hidden_size=5, output_size=4, dtype="float64", seed=0, xp=xp)


def images(xp, n=4, shape=(2, 8, 8), seed=0):
    rng = np.random.default_rng(seed)
    x = to_device(rng.standard_normal((n, *shape)), dtype="float64", xp=xp)
    return x, to_device(rng.integers(0, 4, n), dtype="int64", xp=xp)


def np_conv_net_scores(p, x):
    """The book's SimpleConvNet's scores written out in plain NumPy: the reference."""
    h = np.maximum(np_convolution(x, p["W1"], p["b1"], 1, 0), 0)
    h = np_max_pool(h, 2, 2, 2, 0).reshape(x.shape[0], -1)
    h = np.maximum(h @ p["W2"] + p["b2"], 0)
    return h @ p["W3"] + p["b3"]


def np_conv_net_loss(p, x, labels):
    """The book's SimpleConvNet's loss written out in plain NumPy: the reference."""
    z = np_conv_net_scores(p, x)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -np.mean(logp[np.arange(len(labels)), labels])


def test_simple_conv_net_has_the_books_layers_and_parameters(xp):
    net = SimpleConvNet(seed=0, xp=xp)
    assert [type(layer) for layer in net.layers] == [
        Convolution, ReLU, Pooling, Affine, ReLU, Affine
    ]  # fmt: skip
    shapes = {name: tuple(p.shape) for name, p in net.params.items()}
    assert shapes == {
        "W1": (30, 1, 5, 5), "b1": (30,), "W2": (4320, 100), "b2": (100,),
        "W3": (100, 10), "b3": (10,),
    }  # fmt: skip
    assert np.std(to_numpy(net.params["W2"])) == pytest.approx(0.01, rel=0.02)
    assert not np.any(to_numpy(net.params["b1"]))
    assert net.params["W1"].dtype == xp.float32


@pytest.mark.parametrize(
    ("weight_init", "gain"), [("he", 2.0), ("relu", 2.0), ("Xavier", 1.0), ("sigmoid", 1.0)]
)
def test_a_conv_net_draws_he_or_xavier_weights_by_each_weights_fan_in(xp, weight_init, gain):
    # As MultiLayerNet's weight_init: std sqrt(gain / fan_in), the fan-in of the filters
    # W1 (FN, C, FS, FS) being C * FS * FS, that of W2 and W3 their rows.
    conv = {"filter_num": 200, "filter_size": 5}
    net = SimpleConvNet(
        (8, 8, 8), conv, hidden_size=500, weight_init_std=weight_init, seed=0, xp=xp
    )
    fan_ins = {"W1": 8 * 5 * 5, "W2": 200 * 2 * 2, "W3": 500}
    stds = {name: float(np.std(to_numpy(net.params[name]))) for name in fan_ins}
    assert stds == pytest.approx({k: np.sqrt(gain / n) for k, n in fan_ins.items()}, rel=0.03)


def test_a_conv_nets_parameter_count_follows_its_sizes(xp):
    net = SimpleConvNet((2, 10, 10), {"filter_num": 3, "filter_size": 3}, 7, 4, xp=xp)
    pooled = 3 * 4 * 4  # 3 filters, 8x8 from a 3x3 filter on 10x10, halved by the pooling
    assert net.num_parameters() == (3 * 2 * 3 * 3 + 3) + (pooled * 7 + 7) + (7 * 4 + 4)


def test_a_seed_gives_the_same_conv_net_on_every_backend(xp):
    here = SimpleConvNet(**SMALL, hidden_size=5, output_size=4, seed=3, xp=xp)
    reference = SimpleConvNet(**SMALL, hidden_size=5, output_size=4, seed=3, device="cpu")
    for name in reference.params:
        np.testing.assert_array_equal(to_numpy(here.params[name]), reference.params[name])


@pytest.mark.parametrize("side", [6, 7], ids=["tiled", "untiled"])
def test_conv_net_backprop_matches_an_independent_numerical_gradient(xp, side):
    # On 7x7 images the 5x5 convolution output pools to 2x2, its last row and column unread.
    net = SimpleConvNet(
        (1, side, side), {"filter_num": 2, "filter_size": 3}, 4, 4, 0.3, dtype="float64", seed=1,
        xp=xp,
    )  # fmt: skip
    x, t = images(xp, n=3, shape=(1, side, side))
    host = {name: to_numpy(p) for name, p in net.params.items()}
    x_host, labels = to_numpy(x), to_numpy(t)
    assert float(net.loss(x, t)) == pytest.approx(np_conv_net_loss(host, x_host, labels), rel=1e-12)
    grads = net.gradient(x, t)
    for name in host:

        def loss_at(v, name=name):
            return np_conv_net_loss({**host, name: v}, x_host, labels)

        expected = central_difference(loss_at, host[name])
        np.testing.assert_allclose(to_numpy(grads[name]), expected, rtol=1e-5, atol=1e-8)


def test_check_gradients_passes_on_a_conv_net(cpu_xp):
    net = small_net(cpu_xp)
    report = check_gradients(net, *images(cpu_xp))
    assert report, str(report)
    assert {p.name: p.via for p in report.params} == {
        "W1": "loop", "b1": "loop", "W2": "local", "b2": "local", "W3": "local", "b3": "local"
    }  # fmt: skip
    assert all(p.kinks is not None for p in report.params)  # looked for in the loop too


def test_check_gradients_fails_on_a_wrong_convolution_gradient(cpu_xp, wrong_gradient_of):
    wrong_gradient_of(Convolution)
    net = small_net(cpu_xp)
    report = check_gradients(net, *images(cpu_xp))
    assert not report
    assert [p.name for p in report.params if not p.passed] == ["W1"]


def blank_bordered(xp):
    """A conv net with biases b1 = 0.1 (as after training) and images with a blank border:
    every pooling window there ties at 0.1, and moving b1 moves its four alike, so no
    maximum changes hands: no kink."""
    net = SimpleConvNet(
        **SMALL, hidden_size=5, output_size=4, weight_init_std=0.3, dtype="float64", seed=0,
        xp=xp,
    )  # fmt: skip
    net.params["b1"] = to_device(np.full(3, 0.1), dtype="float64", xp=xp)
    x = np.zeros((4, 2, 8, 8))
    x[:, :, 3:5, 3:5] = np.random.default_rng(0).random((4, 2, 2, 2))
    return net, to_device(x, dtype="float64", xp=xp), to_device([0, 1, 2, 3], dtype="int64", xp=xp)


@pytest.mark.parametrize("method", ["batched", "loop", "directional"])
def test_check_gradients_passes_where_blank_windows_tie(cpu_xp, method):
    report = check_gradients(*blank_bordered(cpu_xp), method=method, params=["W1", "b1"])
    assert report, str(report)
    assert all(not d.kink for d in getattr(report, "directions", []))


@pytest.mark.parametrize("method", ["batched", "loop"])
def test_check_gradients_fails_a_wrong_bias_gradient_where_blank_windows_tie(
    cpu_xp, wrong_gradient_of, method
):
    wrong_gradient_of(Convolution, "db", 2.0)
    report = check_gradients(*blank_bordered(cpu_xp), method=method, params=["b1"])
    assert not report, str(report)


def many_positions(xp):
    """The small conv net (weights of the book's scale, 0.01) on 100 images: each filter
    weight moves 3,600 ReLU inputs, and at the default h nearly every weight's central
    difference straddles a kink at one of them (none at h / 100)."""
    return small_net(xp), *images(xp, n=100)


def test_kinks_at_h_are_differenced_again_at_a_smaller_step(cpu_xp):
    report = check_gradients(*many_positions(cpu_xp), params=["W1"])
    (w1,) = report.params
    assert report, str(report)
    small = refined_step(report.h, "float64")
    assert w1.refined > w1.kinks and f"differenced again at h={small:g}" in str(report)


def test_a_wrong_filter_gradient_fails_where_its_weights_straddle_kinks_at_h(
    cpu_xp, wrong_gradient_of
):
    # Every straddling element was excused whatever its error: a sign-flipped dW1 passed.
    wrong_gradient_of(Convolution, "dW", -1.0)
    report = check_gradients(*many_positions(cpu_xp), params=["W1"])
    assert not report, str(report)


def test_the_loop_reports_a_conv_nets_kinks(cpu_xp):
    """Blank images give conv outputs of exactly b1 = 0: moving b1 crosses ReLU's kink."""
    net = small_net(cpu_xp)
    x = to_device(np.zeros((2, 2, 8, 8)), dtype="float64", xp=cpu_xp)
    t = to_device([0, 1], dtype="int64", xp=cpu_xp)
    report = check_gradients(net, x, t, params=["b1"])
    assert report.params[0].kinks == 3


def test_conv_net_predicts_from_images_and_rejects_flat_input(xp):
    net = small_net(xp)
    x, _ = images(xp, n=3)
    host = {name: to_numpy(p) for name, p in net.params.items()}
    expected = np_conv_net_scores(host, to_numpy(x))
    np.testing.assert_allclose(to_numpy(net.predict(x)), expected, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=r"layers\[0\] \(Convolution\).*\(3, 128\)"):
        net.predict(to_device(np.zeros((3, 128)), dtype="float64", xp=xp))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conv_param": {"filter_count": 3}}, r"unknown conv_param key\(s\) \['filter_count'\]"),
        ({"conv_param": {1: 2, "FN": 3}}, r"unknown conv_param key\(s\) \[1, 'FN'\]"),
        (
            {"conv_param": [30, 5, 0, 1]},
            r"conv_param must be a dict such as .* got \[30, 5, 0, 1\]",
        ),
        ({"conv_param": "filter_num"}, r"conv_param must be a dict such as .* got 'filter_num'"),
        ({"input_dim": (1, 4, 4)}, r"5x5 window is larger than the input \(1, 1, 4, 4\)"),
        ({"dtype": "float16"}, r"dtype must be 'float32' or 'float64'"),
    ],
)
def test_bad_conv_net_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimpleConvNet(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conv_param": {"filter_num": 0}}, r"conv_param\['filter_num'\] must be an integer >= 1, "
                                            r"got 0"),
        ({"conv_param": {"filter_num": True}}, r"conv_param\['filter_num'\] .* got True"),
        ({"conv_param": {"filter_size": 0}}, r"conv_param\['filter_size'\] .* >= 1, got 0"),
        ({"conv_param": {"filter_size": 2.0}}, r"conv_param\['filter_size'\] .* got 2\.0"),
        ({"conv_param": {"stride": 0}}, r"conv_param\['stride'\] must be an integer >= 1, got 0"),
        ({"conv_param": {"pad": -1}}, r"conv_param\['pad'\] must be an integer >= 0, got -1"),
        ({"hidden_size": 0}, r"hidden_size must be an integer >= 1, got 0"),
        ({"output_size": 0}, r"output_size must be an integer >= 1, got 0"),
        ({"output_size": 10.0}, r"output_size must be an integer >= 1, got 10\.0"),
        ({"input_dim": (0, 28, 28)}, r"input_dim must be \(C, H, W\).* got \(0, 28, 28\)"),
        ({"input_dim": (28, 28)}, r"input_dim must be \(C, H, W\).* got \(28, 28\)"),
        ({"input_dim": 784}, r"input_dim must be \(C, H, W\).* got 784"),
        ({"input_dim": (1, 1, 28, 28)}, r"input_dim must be \(C, H, W\).* got \(1, 1, 28, 28\)"),
    ],
)  # fmt: skip
def test_conv_net_sizes_are_checked_when_it_is_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimpleConvNet(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_dim": (1, 4, 4)}, r"the convolution \(filter_size 5, stride 1, pad 0\) does "
                                   r"not fit input_dim \(1, 4, 4\)"),
        ({"input_dim": (1, 5, 5)}, r"the 2x2 max pooling \(stride 2\) does not fit the "
                                   r"convolution's 1x1 output"),
    ],
)  # fmt: skip
def test_a_convolution_or_pooling_that_does_not_fit_the_image_names_the_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimpleConvNet(**kwargs)


def test_conv_net_sizes_may_be_numpy_integers():
    net = SimpleConvNet(
        np.array([1, 6, 6]), {"filter_num": np.int64(2), "filter_size": np.int32(3)},
        np.int64(3), np.int64(2),
    )  # fmt: skip
    assert net.input_dim == (1, 6, 6) and net.sizes == [36, 8, 3, 2]
    assert all(type(v) is int for v in (*net.input_dim, *net.conv_param.values(), *net.sizes))


def test_a_conv_net_keeps_the_height_and_width_of_a_non_square_input_apart():
    # 6x10 input, 3x3 filter: a 4x8 convolution output, pooled to 2x4 with 2 filters.
    net = SimpleConvNet((1, 6, 10), {"filter_num": 2, "filter_size": 3}, 3, 2)
    assert net.input_dim == (1, 6, 10)
    assert net.sizes == [60, 2 * 2 * 4, 3, 2]


def test_a_conv_net_checkpoint_rebuilds_the_network(tmp_path, cpu_xp):
    net = small_net(cpu_xp)
    x, _ = images(cpu_xp)
    save_params(tmp_path / "conv.npz", net)
    loaded, _ = load_network(tmp_path / "conv.npz", xp=cpu_xp)
    np.testing.assert_array_equal(to_numpy(loaded.predict(x)), to_numpy(net.predict(x)))


def test_multilayer_net_extend_layers_are_the_books(xp):
    net = MultiLayerNet(6, [5, 4], 3, use_batchnorm=True, use_dropout=True, seed=0, xp=xp)
    assert [type(layer) for layer in net.layers] == [
        Affine, BatchNormalization, ReLU, Dropout,
        Affine, BatchNormalization, ReLU, Dropout,
        Affine,
    ]  # fmt: skip
    assert list(net.params) == [
        "W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"
    ]  # fmt: skip
    np.testing.assert_array_equal(to_numpy(net.params["gamma2"]), np.ones(4))


def test_multilayer_net_runs_dropout_and_batchnorm_in_eval_mode_to_predict(xp):
    net = MultiLayerNet(
        6, [5], 4, use_batchnorm=True, use_dropout=True, dtype="float64", seed=0, xp=xp
    )
    x, t = images(xp, n=8, shape=(6,))
    net.gradient(x, t)  # training mode: moves BatchNorm's running statistics, draws masks
    bn = net.layers[1]
    before = (to_numpy(bn.running_mean), to_numpy(bn.running_var))
    first, second = to_numpy(net.predict(x)), to_numpy(net.predict(x))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(to_numpy(bn.running_mean), before[0])
    assert net.accuracy(x, t) == np.mean(first.argmax(axis=1) == to_numpy(t))  # eval mode too
    np.testing.assert_array_equal(to_numpy(net.predict(x)), first)


def test_a_batchnorm_net_checkpoint_keeps_the_running_statistics(tmp_path, cpu_xp):
    net = MultiLayerNet(6, [5], 4, use_batchnorm=True, dtype="float64", seed=0, xp=cpu_xp)
    x, t = images(cpu_xp, n=8, shape=(6,))
    net.gradient(x, t)
    save_params(tmp_path / "bn.npz", net)
    loaded, _ = load_network(tmp_path / "bn.npz", xp=cpu_xp)
    np.testing.assert_array_equal(to_numpy(loaded.predict(x)), to_numpy(net.predict(x)))


def test_the_trainer_evaluates_in_eval_mode(cpu_xp):
    net = MultiLayerNet(
        6, [5], 4, use_batchnorm=True, use_dropout=True, dtype="float64", seed=0, xp=cpu_xp
    )
    x, t = images(cpu_xp, n=8, shape=(6,))
    targets = to_device(np.eye(4)[to_numpy(t)], dtype="float64", xp=cpu_xp)
    net.gradient(x, t)
    running = to_numpy(net.layers[1].running_mean)
    first, second = (evaluate(net, x, t, targets, batch_size=3) for _ in range(2))
    assert first == second
    np.testing.assert_array_equal(to_numpy(net.layers[1].running_mean), running)


@pytest.mark.slow
def test_check_gradients_passes_on_the_books_conv_net_with_10_digits():
    """The issue's check: all 433,890 parameters of the book's sizes, on 10 real digits."""
    from xpnet import datasets

    try:
        (x, t), _ = datasets.load_mnist(name="mnist-5k", flatten=False, device="cpu")
    except datasets.DatasetNotFoundError as exc:
        pytest.skip(f"mnist-5k is not available: {exc}")
    net = SimpleConvNet(dtype="float64", seed=0, device="cpu")
    report = check_gradients(net, x[:10, ...].astype("float64"), t[:10])
    assert report, str(report)
    assert [p.via for p in report.params] == ["loop", "loop", *["local"] * 4]
