"""Layers built from sizes (``Affine.initialized(784, 50)``, as PyTorch's ``nn.Linear``):
weights drawn on the host as documented, the same on every backend, and the networks'
own draws unchanged."""

import math

import numpy as np
import pytest
from array_api_compat import device

import xpnet
from xpnet.backend import to_numpy
from xpnet.conv import Convolution
from xpnet.layers import Affine, BatchNormalization, ReLU, SoftmaxWithLoss
from xpnet.networks import MultiLayerNet


def test_affine_draws_he_weights_and_zero_bias_from_the_seed(xp):
    layer = Affine.initialized(6, 4, rng=7, dtype="float64", xp=xp)
    expected = np.random.default_rng(7).standard_normal((6, 4)) * math.sqrt(2 / 6)
    np.testing.assert_array_equal(to_numpy(layer.W), expected)
    np.testing.assert_array_equal(to_numpy(layer.b), np.zeros(4))
    assert layer.W.dtype == xp.float64 and layer.b.dtype == xp.float64
    assert layer.input_grad


def test_affine_is_float32_where_the_namespace_puts_new_arrays(xp):
    layer = Affine.initialized(3, 2, rng=0, xp=xp)
    assert layer.W.dtype == xp.float32
    assert device(layer.W) == device(layer.b) == device(xp.asarray([0.0]))


@pytest.mark.parametrize(
    ("weight_init", "std"),
    [("xavier", math.sqrt(1 / 5)), ("Sigmoid", math.sqrt(1 / 5)), (0.01, 0.01)],
)
def test_affine_takes_the_networks_weight_inits(weight_init, std):
    layer = Affine.initialized(5, 3, weight_init=weight_init, rng=1, dtype="float64", xp=np)
    np.testing.assert_array_equal(layer.W, np.random.default_rng(1).standard_normal((5, 3)) * std)


def test_a_uniform_bias_is_drawn_after_the_weights():
    layer = Affine.initialized(5, 3, bias_init="uniform", rng=2, dtype="float64", xp=np)
    rng = np.random.default_rng(2)
    rng.standard_normal((5, 3))
    np.testing.assert_array_equal(layer.b, rng.random(3))


def test_layers_sharing_a_generator_draw_the_next_numbers():
    rng = np.random.default_rng(3)
    first = Affine.initialized(4, 4, rng=rng, dtype="float64", xp=np)
    second = Affine.initialized(4, 4, rng=rng, dtype="float64", xp=np)
    assert not np.array_equal(first.W, second.W)
    again = np.random.default_rng(3)
    again.standard_normal((4, 4))
    np.testing.assert_array_equal(second.W, again.standard_normal((4, 4)) * math.sqrt(2 / 4))


def test_one_seed_gives_the_same_layer_on_every_backend(xp):
    ours = Affine.initialized(7, 3, rng=5, xp=xp)
    on_numpy = Affine.initialized(7, 3, rng=5, xp=np)
    np.testing.assert_array_equal(to_numpy(ours.W), on_numpy.W)


def test_a_sequential_of_initialized_layers_is_the_multilayer_net_of_that_seed(xp):
    rng = xpnet.backend.host_rng(4)
    built = xpnet.Sequential(
        [
            Affine.initialized(8, 5, rng=rng, input_grad=False, xp=xp),
            ReLU(),
            Affine.initialized(5, 3, rng=rng, xp=xp),
        ],
        loss=SoftmaxWithLoss(),
    )
    reference = MultiLayerNet(8, [5], 3, seed=4, xp=xp)
    assert list(built.params) == list(reference.params)
    for name in reference.params:
        np.testing.assert_array_equal(
            to_numpy(built.params[name]), to_numpy(reference.params[name])
        )


def test_an_initialized_affine_passes_its_gradient_check(xp):
    layer = Affine.initialized(4, 3, rng=0, dtype="float64", xp=xp)
    x = xpnet.backend.to_device(np.random.default_rng(1).standard_normal((2, 4)), xp=xp)
    assert xpnet.check_layer(layer, x)


def test_sizes_given_to_the_constructor_point_to_initialized():
    with pytest.raises(TypeError, match=r"got the numbers 784 and 50.*Affine\.initialized"):
        Affine(784, 50)
    with pytest.raises(TypeError, match=r"Convolution\.initialized"):
        Convolution(1, 30)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": 0, "output_size": 3}, "input_size"),
        ({"input_size": 3, "output_size": 2.5}, "output_size"),
        (
            {"input_size": 3, "output_size": 2, "weight_init": "lecun"},
            "unknown weight_init 'lecun'",
        ),
        ({"input_size": 3, "output_size": 2, "weight_init": -1.0}, "weight_init must be a finite"),
        ({"input_size": 3, "output_size": 2, "bias_init": "ones"}, "unknown bias_init 'ones'"),
        ({"input_size": 3, "output_size": 2, "dtype": "float16"}, "dtype must be 'float32'"),
        ({"input_size": 3, "output_size": 2, "rng": -1}, "rng must be a seed .* got int -1"),
    ],
)
def test_affine_refuses_bad_settings_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Affine.initialized(**kwargs)


def test_convolution_draws_he_filters_with_the_fan_in_of_a_window(xp):
    conv = Convolution.initialized(3, 8, 5, 1, 2, rng=9, dtype="float64", xp=xp)
    expected = np.random.default_rng(9).standard_normal((8, 3, 5, 5)) * math.sqrt(2 / (3 * 25))
    np.testing.assert_array_equal(to_numpy(conv.W), expected)
    np.testing.assert_array_equal(to_numpy(conv.b), np.zeros(8))
    assert (conv.stride, conv.pad) == (1, 2)


def test_convolution_takes_a_rectangular_filter_size():
    conv = Convolution.initialized(2, 4, (3, 1), rng=0, xp=np)
    assert conv.W.shape == (4, 2, 3, 1)


@pytest.mark.parametrize(
    ("filter_size", "stride", "message"),
    [((3, 3, 3), 1, r"filter_size must be an integer or \(FH, FW\), got \(3, 3, 3\)"),
     (0, 1, "filter_size"),
     (3, 0, "stride")],
)  # fmt: skip
def test_convolution_refuses_bad_windows_naming_them(filter_size, stride, message):
    with pytest.raises(ValueError, match=message):
        Convolution.initialized(1, 2, filter_size, stride)


def test_batch_normalization_starts_at_ones_and_zeros(xp):
    bn = BatchNormalization.initialized(5, 0.8, dtype="float64", xp=xp)
    np.testing.assert_array_equal(to_numpy(bn.gamma), np.ones(5))
    np.testing.assert_array_equal(to_numpy(bn.beta), np.zeros(5))
    assert bn.momentum == 0.8 and bn.gamma.dtype == xp.float64


def test_a_layer_refuses_the_name_of_a_namespace_for_xp():
    with pytest.raises(TypeError, match=r"xp must be an array namespace .* got str 'torch'"):
        Affine.initialized(6, 5, xp="torch")


def test_float_dtype_refuses_the_name_of_a_namespace_before_looking_a_dtype_up_in_it():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    with pytest.raises(TypeError, match=r"xp must be an array namespace .* got str 'torch'"):
        xpnet.init.float_dtype(torch.float32, xp="torch")
