"""Gradient checks of networks with Dropout and BatchNorm: they differentiate the training-
mode loss that ``net.gradient`` does, with every pass using the same dropout masks, they
still fail a wrong backward pass, and they leave the network as it was."""

import numpy as np
import pytest
from numeric import dev

from xpnet import MultiLayerNet, check_gradients, check_layer
from xpnet.backend import to_numpy
from xpnet.gradcheck import METHODS, net_numerical_gradient
from xpnet.held import held, layers_of
from xpnet.layers import BatchNormalization, Dropout

KINDS = {
    "batchnorm": {"use_batchnorm": True},
    "dropout": {"use_dropout": True},
    "both": {"use_batchnorm": True, "use_dropout": True},
}


def case(xp, kind, seed=0):
    rng = np.random.default_rng(seed)
    x, t = dev(xp, rng.random((8, 12))), dev(xp, rng.integers(0, 4, 8), dtype="int64")
    net = MultiLayerNet(12, [7, 6], 4, dtype="float64", seed=seed, xp=xp, **KINDS[kind])
    return net, x, t


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_correct_network_with_dropout_or_batchnorm_passes_every_method(cpu_xp, kind, method):
    net, x, t = case(cpu_xp, kind)
    report = check_gradients(net, x, t, method=method)
    assert report.passed, str(report)


@pytest.mark.parametrize("method", METHODS)
def test_a_dropout_backward_that_ignores_the_mask_fails(cpu_xp, method, monkeypatch):
    monkeypatch.setattr(Dropout, "backward", lambda self, dout: dout)
    net, x, t = case(cpu_xp, "dropout")
    assert not check_gradients(net, x, t, method=method).passed


@pytest.mark.parametrize("method", METHODS)
def test_a_batchnorm_backward_without_the_batch_statistics_fails(cpu_xp, method, monkeypatch):
    original = BatchNormalization.backward

    def backward(self, dout):
        self.train = False  # as if the batch statistics were constants
        return original(self, dout)

    monkeypatch.setattr(BatchNormalization, "backward", backward)
    net, x, t = case(cpu_xp, "batchnorm")
    assert not check_gradients(net, x, t, method=method).passed


@pytest.mark.parametrize("method", METHODS)
def test_a_check_leaves_the_running_statistics_and_predictions_as_they_were(cpu_xp, method):
    net, x, t = case(cpu_xp, "batchnorm")
    net.gradient(x, t)  # running statistics that are not the initial zeros
    before = to_numpy(net.predict(x))
    check_gradients(net, x, t, method=method)
    np.testing.assert_array_equal(to_numpy(net.predict(x)), before)


def test_a_check_does_not_move_the_networks_own_dropout_masks(cpu_xp):
    checked, x, t = case(cpu_xp, "dropout")
    untouched, _, _ = case(cpu_xp, "dropout")
    check_gradients(checked, x, t)
    after = checked.gradient(x, t)
    for name, grad in untouched.gradient(x, t).items():
        np.testing.assert_array_equal(to_numpy(after[name]), to_numpy(grad))


def test_numerical_gradients_of_a_dropout_network_use_the_masks_drawn_from_seed(cpu_xp):
    net, x, t = case(cpu_xp, "dropout")
    numerical = net_numerical_gradient(net, x, t, method="loop", seed=5)
    with held(layers_of(net), seed=5):
        analytic = net.gradient(x, t)
    for name, grad in numerical.items():
        np.testing.assert_allclose(to_numpy(grad), to_numpy(analytic[name]), atol=1e-8)


class NumpyDropout:
    """A user's dropout drawing with NumPy's global generator: a new mask each pass."""

    def forward(self, x, train_flg=True):
        self.mask = np.random.default_rng().random(x.shape) > 0.5
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


def test_a_layer_drawing_new_random_numbers_each_pass_is_refused_with_the_reason():
    net, x, t = case(np, "dropout")
    net.layers[2] = NumpyDropout()
    with pytest.raises(ValueError, match="is not a function of its inputs and parameters alone"):
        check_gradients(net, x, t)
    with pytest.raises(ValueError, match=r"NumpyDropout\.forward is not a function"):
        check_layer(NumpyDropout(), np.random.default_rng(0).random((3, 4)))


def test_check_layer_holds_a_dropout_mask_in_training_mode(xp):
    x = dev(xp, np.random.default_rng(4).uniform(0.5, 2.0, (3, 5)))
    assert check_layer(Dropout(0.3, seed=2), x)


def test_check_layer_fails_a_dropout_backward_that_ignores_the_mask(xp, monkeypatch):
    monkeypatch.setattr(Dropout, "backward", lambda self, dout: dout)
    x = dev(xp, np.random.default_rng(4).uniform(0.5, 2.0, (3, 5)))
    assert not check_layer(Dropout(0.3, seed=2), x)
