"""Chapter 6's layers: BatchNormalization against the book's formulas in NumPy (its backward
against float64 central differences of them) and Dropout's masks, on every backend."""

import math

import numpy as np
import pytest
from numeric import dev, partial_differences

from xpnet import MultiLayerNet, check_layer
from xpnet.backend import DeviceRNG, to_like, to_numpy
from xpnet.layers import BatchNormalization, Dropout

EPS = 1e-6  # the book's 10e-7
TOL = {"rtol": 1e-6, "atol": 1e-8}
SHAPES = {"(N, D)": (4, 3), "NCHW": (3, 2, 2, 3)}


def np_batchnorm_train(x, gamma, beta):
    flat = x.reshape(x.shape[0], -1)
    mu, var = flat.mean(axis=0), flat.var(axis=0)
    return (gamma * (flat - mu) / np.sqrt(var + EPS) + beta).reshape(x.shape)


def np_batchnorm_eval(x, gamma, beta, mean, var):
    flat = x.reshape(x.shape[0], -1)
    return (gamma * (flat - mean) / np.sqrt(var + EPS) + beta).reshape(x.shape)


def batchnorm_case(xp, shape, seed=0):
    rng = np.random.default_rng(seed)
    width = int(np.prod(shape[1:]))
    x = 2.0 * rng.standard_normal(shape) + 1.0
    gamma, beta = rng.standard_normal(width) + 1.5, rng.standard_normal(width)
    return rng, x, gamma, beta, BatchNormalization(dev(xp, gamma), dev(xp, beta))


def batchnorm_eval_case(xp, shape):
    """``batchnorm_case`` with random running statistics given to the layer."""
    rng, x, gamma, beta, _ = batchnorm_case(xp, shape)
    mean, var = rng.standard_normal(gamma.shape), rng.uniform(0.5, 2.0, gamma.shape)
    layer = BatchNormalization(
        dev(xp, gamma), dev(xp, beta), running_mean=dev(xp, mean), running_var=dev(xp, var)
    )
    return rng, x, gamma, beta, mean, var, layer


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES)
def test_batchnorm_train_normalizes_by_the_batch_statistics(xp, shape):
    _, x, gamma, beta, layer = batchnorm_case(xp, shape)
    out = layer.forward(dev(xp, x), train_flg=True)
    np.testing.assert_allclose(to_numpy(out), np_batchnorm_train(x, gamma, beta), **TOL)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES)
def test_batchnorm_train_updates_the_running_averages(xp, shape):
    _, x, _, _, layer = batchnorm_case(xp, shape)
    layer.momentum = 0.8
    layer.forward(dev(xp, x))
    layer.forward(dev(xp, 3 * x))
    flat = x.reshape(x.shape[0], -1)
    mean = 0.8 * (0.2 * flat.mean(axis=0)) + 0.2 * (3 * flat).mean(axis=0)
    var = 0.8 * (0.2 * flat.var(axis=0)) + 0.2 * (3 * flat).var(axis=0)
    np.testing.assert_allclose(to_numpy(layer.running_mean), mean, **TOL)
    np.testing.assert_allclose(to_numpy(layer.running_var), var, **TOL)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES)
def test_batchnorm_eval_uses_the_running_statistics_and_keeps_them(xp, shape):
    _, x, gamma, beta, mean, var, layer = batchnorm_eval_case(xp, shape)
    out = layer.forward(dev(xp, x), train_flg=False)
    np.testing.assert_allclose(to_numpy(out), np_batchnorm_eval(x, gamma, beta, mean, var), **TOL)
    np.testing.assert_array_equal(to_numpy(layer.running_mean), mean)
    np.testing.assert_array_equal(to_numpy(layer.running_var), var)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES)
def test_batchnorm_train_backward_matches_central_differences(xp, shape):
    rng, x, gamma, beta, layer = batchnorm_case(xp, shape)
    dout = rng.standard_normal(shape)
    layer.forward(dev(xp, x), train_flg=True)
    dx = layer.backward(dev(xp, dout))

    def objective(x_, g_, b_):
        return np.sum(np_batchnorm_train(x_, g_, b_) * dout)

    expected_dx, expected_dgamma, expected_dbeta = partial_differences(objective, x, gamma, beta)
    np.testing.assert_allclose(to_numpy(dx), expected_dx, **TOL)
    np.testing.assert_allclose(to_numpy(layer.dgamma), expected_dgamma, **TOL)
    np.testing.assert_allclose(to_numpy(layer.dbeta), expected_dbeta, **TOL)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES)
def test_batchnorm_eval_backward_matches_central_differences(xp, shape):
    rng, x, gamma, beta, mean, var, layer = batchnorm_eval_case(xp, shape)
    dout = rng.standard_normal(shape)
    layer.forward(dev(xp, x), train_flg=False)
    dx = layer.backward(dev(xp, dout))

    def objective(x_, g_):
        return np.sum(np_batchnorm_eval(x_, g_, beta, mean, var) * dout)

    expected_dx, expected_dgamma = partial_differences(objective, x, gamma)
    np.testing.assert_allclose(to_numpy(dx), expected_dx, **TOL)
    np.testing.assert_allclose(to_numpy(layer.dgamma), expected_dgamma, **TOL)


def test_batchnorm_rejects_input_of_another_width(xp):
    layer = BatchNormalization(dev(xp, np.ones(6)), dev(xp, np.zeros(6)))
    with pytest.raises(ValueError, match=r"\(2, 2, 2, 2\).*\(6,\)"):
        layer.forward(dev(xp, np.zeros((2, 2, 2, 2))))


def test_batchnorm_given_one_gamma_per_channel_says_images_take_one_per_element(xp):
    # A PyTorch user's BatchNorm2d after a Convolution (N, 4, 3, 3): gamma of shape (4,).
    layer = BatchNormalization(dev(xp, np.ones(4)), dev(xp, np.zeros(4)))
    with pytest.raises(ValueError, match=r"gamma and beta of shape \(36,\) here, not one per"):
        layer.forward(dev(xp, np.zeros((2, 4, 3, 3))))


def test_batchnorm_of_images_with_gamma_not_one_per_channel_gets_no_batchnorm2d_hint(xp):
    layer = BatchNormalization(dev(xp, np.ones(36)), dev(xp, np.zeros(36)))
    with pytest.raises(ValueError, match=r"\(2, 4, 3, 4\)") as info:
        layer.forward(dev(xp, np.zeros((2, 4, 3, 4))))
    assert "per channel" not in str(info.value)


def test_batchnorm_refuses_an_empty_training_batch_and_keeps_its_running_statistics(xp):
    *_, mean, var, layer = batchnorm_eval_case(xp, (4, 3))
    with pytest.raises(ValueError, match="empty batch in training"):
        layer.forward(dev(xp, np.zeros((0, 3))), train_flg=True)
    np.testing.assert_array_equal(to_numpy(layer.running_mean), mean)
    np.testing.assert_array_equal(to_numpy(layer.running_var), var)
    assert layer.forward(dev(xp, np.zeros((0, 3))), train_flg=False).shape == (0, 3)


def test_batchnorm_rejects_gamma_and_beta_of_other_shapes(xp):
    with pytest.raises(ValueError, match=r"\(3,\) and \(4,\)"):
        BatchNormalization(dev(xp, np.ones(3)), dev(xp, np.zeros(4)))


def test_batchnorm_names_its_parameters_buffers_and_config():
    layer = BatchNormalization(np.ones(2), np.zeros(2), momentum=0.7)
    assert layer.params == ("gamma", "beta")
    assert layer.buffers == ("running_mean", "running_var")
    assert layer.config() == {"momentum": 0.7}


def nonzero(rng, shape):
    return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def test_dropout_train_keeps_or_zeroes_each_element_unscaled(xp):
    x = nonzero(np.random.default_rng(0), (50, 40))
    out = to_numpy(Dropout(0.3, seed=1).forward(dev(xp, x), train_flg=True))
    kept = out != 0
    np.testing.assert_array_equal(out[kept], x[kept])
    # 2,000 draws with P(keep) = 0.7: the kept fraction is within 5 standard deviations.
    assert abs(kept.mean() - 0.7) < 5 * np.sqrt(0.7 * 0.3 / x.size)


def test_dropout_eval_scales_by_the_kept_fraction(xp):
    x = nonzero(np.random.default_rng(0), (3, 4))
    layer = Dropout(0.25)
    np.testing.assert_allclose(to_numpy(layer.forward(dev(xp, x), train_flg=False)), 0.75 * x)
    dout = np.full((3, 4), 2.0)
    np.testing.assert_allclose(to_numpy(layer.backward(dev(xp, dout))), 1.5)


def test_dropout_backward_uses_the_forward_mask(xp):
    rng = np.random.default_rng(2)
    x, dout = nonzero(rng, (20, 30)), rng.standard_normal((20, 30))
    layer = Dropout(0.5, seed=3)
    kept = to_numpy(layer.forward(dev(xp, x))) != 0
    np.testing.assert_array_equal(to_numpy(layer.backward(dev(xp, dout))), np.where(kept, dout, 0))


def test_dropout_masks_are_reproducible_from_the_seed_and_change_each_step(xp):
    x = dev(xp, np.ones((10, 20)))
    first, second = Dropout(0.5, seed=7), Dropout(0.5, seed=7)
    steps = [[to_numpy(layer.forward(x)) for _ in range(2)] for layer in (first, second)]
    np.testing.assert_array_equal(steps[0][0], steps[1][0])
    np.testing.assert_array_equal(steps[0][1], steps[1][1])
    assert not np.array_equal(steps[0][0], steps[0][1])


@pytest.mark.parametrize("ratio", [-0.1, 1.0])
def test_dropout_rejects_a_ratio_outside_0_1(ratio):
    with pytest.raises(ValueError, match=rf"dropout_ratio must be in \[0, 1\), got {ratio}"):
        Dropout(ratio)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_device_rng_draws_uniform_numbers_like_the_given_array(xp, dtype):
    like = dev(xp, np.zeros(1), dtype=dtype)
    u = DeviceRNG(0).uniform((200, 3), like=like)
    assert u.dtype == like.dtype
    assert tuple(u.shape) == (200, 3)
    assert str(getattr(u, "device", "")) == str(getattr(like, "device", ""))
    host = to_numpy(u)
    assert host.min() >= 0.0 and host.max() < 1.0
    assert 0.4 < host.mean() < 0.6


def on_float16(xp, a):
    """``a`` as float16 on ``xp``; skipped where the library has none (array_api_strict)."""
    if not hasattr(xp, "float16"):
        pytest.skip(f"{xp.__name__} has no float16")
    return dev(xp, a, dtype="float16")


def test_device_rng_draws_float16_numbers_below_one(xp):
    like = on_float16(xp, np.zeros(1))
    u = DeviceRNG(0).uniform((100_000,), like=like)  # float32 draws may round to 1.0 in float16
    assert u.dtype == like.dtype
    host = to_numpy(u).astype(np.float64)
    assert host.min() >= 0.0 and host.max() < 1.0
    assert 0.49 < host.mean() < 0.51


def test_dropout_trains_on_float16_input(xp):
    x = on_float16(xp, np.ones((20, 30)))
    out = Dropout(0.5, seed=0).forward(x)
    assert out.dtype == x.dtype
    assert set(np.unique(to_numpy(out))) == {0.0, 1.0}


class GridDraws:
    """A stand-in for a Dropout layer's generator: the draws 0, 1/4, 1/2, 3/4, repeated."""

    def uniform(self, shape, *, like):
        grid = np.resize(np.arange(4) / 4, math.prod(shape)).reshape(shape)
        return to_like(grid, like)


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75])
def test_dropout_keeps_the_fraction_one_minus_ratio_of_evenly_spaced_draws(xp, ratio):
    # Draws are multiples of a grid step (2**-24 in float32); keeping those above the ratio
    # dropped one step too many: at a ratio of 0, every draw of exactly 0.
    layer = Dropout(ratio)
    layer.rng = GridDraws()
    kept = to_numpy(layer.forward(dev(xp, np.ones((4, 8))))) != 0
    assert kept.mean() == 1.0 - ratio


def test_dropout_ratio_0_keeps_every_float16_element(xp):
    # PyTorch draws float16 numbers on a grid of 2**-11: one in 2,048 was exactly 0, dropped.
    x = on_float16(xp, np.ones((100, 1000)))
    assert (to_numpy(Dropout(0.0, seed=0).forward(x)) == 1.0).all()


def test_device_rng_takes_an_int_as_a_1d_shape(xp):
    like = dev(xp, np.zeros(1))
    assert tuple(DeviceRNG(0).uniform(3, like=like).shape) == (3,)
    np.testing.assert_array_equal(
        to_numpy(DeviceRNG(5).uniform(3, like=like)),
        to_numpy(DeviceRNG(5).uniform((3,), like=like)),
    )


@pytest.mark.parametrize("seed", [-1, 2.5, True, "0"])
def test_a_bad_dropout_seed_is_refused_when_the_layer_is_made(seed):
    with pytest.raises(ValueError, match=rf"seed must be an integer >= 0 or None, got {seed!r}"):
        Dropout(0.5, seed=seed)
    with pytest.raises(ValueError, match=rf"seed must be an integer >= 0 or None, got {seed!r}"):
        DeviceRNG(seed)


@pytest.mark.parametrize("seed", [None, 0, np.int64(3)])
def test_device_rng_takes_none_or_an_integer_seed_from_0(seed):
    assert DeviceRNG(seed).seed == seed


@pytest.mark.parametrize("train_flg", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES)
def test_check_layer_passes_on_batchnorm(xp, shape, train_flg):
    _, x, *_, layer = batchnorm_eval_case(xp, shape)
    report = check_layer(layer, dev(xp, x), forward_kwargs={"train_flg": train_flg})
    assert report, str(report)
    assert [p.name for p in report.params] == ["x", "gamma", "beta"]


def test_check_layer_passes_on_dropout_in_eval_mode(xp):
    x = dev(xp, nonzero(np.random.default_rng(4), (3, 5)))
    assert check_layer(Dropout(0.3), x, forward_kwargs={"train_flg": False})


def test_a_network_gradient_in_eval_mode_is_that_of_the_evaluation_loss(xp):
    # As PyTorch's backward() after model.eval(): running statistics, Dropout's scaling.
    rng = np.random.default_rng(0)
    x, t = rng.random((6, 5)), rng.integers(0, 3, 6)
    mean, var = rng.standard_normal(4), rng.random(4) + 0.5
    net = MultiLayerNet(5, [4], 3, use_batchnorm=True, use_dropout=True, dropout_ratio=0.3,
                        dtype="float64", seed=2, xp=xp)  # fmt: skip
    bn = net.layers[1]
    bn.running_mean, bn.running_var = dev(xp, mean), dev(xp, var)
    names = ("W1", "b1", "gamma1", "beta1", "W2", "b2")
    values = [to_numpy(net.params[name]) for name in names]

    def loss(W1, b1, gamma, beta, W2, b2):
        h = np.maximum(np_batchnorm_eval(x @ W1 + b1, gamma, beta, mean, var), 0.0)
        y = (0.7 * h) @ W2 + b2
        y = y - y.max(axis=1, keepdims=True)
        log_p = y - np.log(np.exp(y).sum(axis=1, keepdims=True))
        return -log_p[np.arange(6), t].mean()

    grads = net.gradient(dev(xp, x), dev(xp, t, "int64"), train_flg=False)
    for name, expected in zip(names, partial_differences(loss, *values), strict=True):
        np.testing.assert_allclose(to_numpy(grads[name]), expected, rtol=1e-5, atol=1e-8)
