"""Gradient checks of networks with Dropout and BatchNorm: they differentiate the training-
mode loss that ``net.gradient`` does, with every pass using the same dropout masks, they
still fail a wrong backward pass, and they leave the network as it was."""

import numpy as np
import pytest
from numeric import dev

from xpnet import MultiLayerNet, Sequential, check_gradients, check_layer
from xpnet.backend import to_numpy
from xpnet.gradcheck import METHODS, ONE_SIDED_LIMIT, net_numerical_gradient
from xpnet.held import ReplayedRNG, held, layers_of, require_deterministic
from xpnet.layers import Affine, BatchNormalization, Dropout, ReLU, SoftmaxWithLoss
from xpnet.perturb import layer_inputs

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


def at_relus_kink(xp, hidden=70):
    """A BatchNorm network on one sample: BatchNorm makes every feature 0, so every input of
    the ReLU after it is exactly at its kink; ``hidden`` (more than ``ONE_SIDED_LIMIT``)
    units of it."""
    net = MultiLayerNet(12, [hidden], 4, dtype="float64", seed=0, xp=xp, use_batchnorm=True)
    rng = np.random.default_rng(0)
    return net, dev(xp, rng.random((1, 12))), dev(xp, rng.integers(0, 4, 1), dtype="int64")


@pytest.mark.parametrize("method", ["loop", "batched"])
def test_a_batchnorm_network_on_one_sample_has_its_relu_kinks_found_not_failed(cpu_xp, method):
    net, x, t = at_relus_kink(cpu_xp)
    report = check_gradients(net, x, t, method=method, params=["beta1"])
    (beta,) = report.params
    assert beta.passed and report.inconclusive, str(report)  # not failed: nothing compared
    assert beta.all_kinks and beta.kinks == 70 > ONE_SIDED_LIMIT, str(report)


def test_a_batchnorm_network_on_one_sample_is_at_a_kink_in_every_direction(cpu_xp):
    net, x, t = at_relus_kink(cpu_xp, hidden=5)
    report = check_gradients(net, x, t, method="directional", n_directions=4)
    assert all(d.kink for d in report.directions), str(report)
    assert "BatchNorm on one sample" in str(report)


def test_features_constant_in_the_batch_put_the_relu_after_batchnorm_on_its_kink(cpu_xp):
    # Three ReLU inputs at exactly 0, moved up and down by a direction: a kink in every
    # direction (at the smaller step too), left out; the per-element check passes.
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((6, 3)), np.zeros(3)
    net = Sequential(
        [BatchNormalization(np.ones(6), np.zeros(6)), ReLU(), Affine(W, b)],
        loss=SoftmaxWithLoss(),
    )
    x = rng.standard_normal((5, 6))
    x[:, 1:4] = [0.7, -2.0, 3.0]
    t = rng.integers(0, 3, 5)
    report = check_gradients(net, x, t, method="directional", n_directions=3)
    assert all(d.kink for d in report.directions), str(report)
    assert check_gradients(net, x, t, method="batched").passed


def test_batched_perturbs_every_parameter_of_a_batchnorm_and_dropout_network_locally(cpu_xp):
    # BatchNorm's and Dropout's hooks follow training mode; before them, every parameter
    # up to the last such layer went through the loop (a 784-100-100 network: 115 s).
    net, x, t = case(cpu_xp, "both")
    report = check_gradients(net, x, t, method="batched")
    assert {p.name: p.via for p in report.params} == {name: "local" for name in net.params}
    assert report.passed, str(report)


@pytest.mark.parametrize("name", ["W1", "b1", "gamma1", "beta1", "W2", "gamma2"])
def test_batched_catches_a_wrong_gradient_before_batchnorm_and_dropout(cpu_xp, name):
    net, x, t = case(cpu_xp, "both")
    right = net.gradient

    def wrong(x, t):
        grads = right(x, t)
        return {**grads, name: 1.01 * grads[name] + 1e-6}

    net.gradient = wrong
    report = check_gradients(net, x, t, method="batched", params=[name])
    assert [(p.name, p.via, p.passed) for p in report.params] == [(name, "local", False)]


class SquaredInTraining:
    """A user's layer: ``x**2`` while training, ``x`` in evaluation (its forward's default).
    Its ``perturb`` hook cannot know the mode; it follows the default. ``wrong`` makes
    backward the evaluation-mode derivative, wrong for the training-mode loss."""

    elementwise = True

    def __init__(self, wrong=False):
        self.wrong = wrong

    def forward(self, x, train_flg=False):
        self.x, self.train = x, train_flg
        return x * x if train_flg else x

    def backward(self, dout):
        return dout if self.wrong or not self.train else 2.0 * self.x * dout

    def perturb(self, x, dx):
        return dx


def with_squared_in_training(xp, wrong):
    rng = np.random.default_rng(0)
    layers = [
        Affine(dev(xp, rng.standard_normal((5, 4))), dev(xp, rng.standard_normal(4))),
        SquaredInTraining(wrong),
        ReLU(),
        Affine(dev(xp, rng.standard_normal((4, 3))), dev(xp, rng.standard_normal(3))),
    ]
    x, t = dev(xp, rng.standard_normal((6, 5))), dev(xp, rng.integers(0, 3, 6), dtype="int64")
    return Sequential(layers, loss=SoftmaxWithLoss()), x, t


def test_a_layers_perturb_hook_is_not_trusted_in_training_mode(cpu_xp):
    net, x, t = with_squared_in_training(cpu_xp, wrong=True)
    report = check_gradients(net, x, t, method="batched")
    assert not report.passed, str(report)


def test_parameters_before_a_user_layer_that_takes_train_flg_are_looped(cpu_xp):
    net, x, t = with_squared_in_training(cpu_xp, wrong=False)
    report = check_gradients(net, x, t, method="batched")
    assert [p.via for p in report.params] == ["loop", "loop", "local", "local"], str(report)
    assert report.passed, str(report)


class WithoutGamma(BatchNormalization):
    """A user's BatchNorm whose forward leaves gamma out, its backward inherited (wrong:
    it still scales by gamma and gives gamma a gradient)."""

    def forward(self, x, train_flg=True):
        super().forward(x, train_flg)
        return self.xn + self.beta


class InvertedDropout(Dropout):
    """A user's Dropout that scales the kept elements by 1 / (1 - ratio) in training, its
    backward too (right)."""

    def forward(self, x, train_flg=True):
        return super().forward(x, train_flg) / (1.0 - self.dropout_ratio) if train_flg else x

    def backward(self, dout):
        return super().backward(dout) / (1.0 - self.dropout_ratio)


def with_layer(xp, layer):
    rng = np.random.default_rng(0)
    layers = [
        Affine(dev(xp, rng.standard_normal((5, 4))), dev(xp, rng.standard_normal(4))),
        layer,
        ReLU(),
        Affine(dev(xp, rng.standard_normal((4, 3))), dev(xp, rng.standard_normal(3))),
    ]
    x, t = dev(xp, rng.standard_normal((6, 5))), dev(xp, rng.integers(0, 3, 6), dtype="int64")
    return Sequential(layers, loss=SoftmaxWithLoss()), x, t


def test_a_batchnorm_subclass_with_another_forward_is_not_perturbed_by_the_inherited_hooks(
    cpu_xp,
):
    # Trusted, BatchNorm's hooks differentiated the forward with gamma: W1 and gamma1 passed.
    layer = WithoutGamma(dev(cpu_xp, np.full(4, 1.5)), dev(cpu_xp, np.full(4, 0.1)))
    report = check_gradients(*with_layer(cpu_xp, layer), method="batched")
    assert {p.name for p in report.params if not p.passed} == {"W1", "gamma1"}, str(report)


def test_a_dropout_subclass_with_another_forward_is_not_perturbed_by_the_inherited_hooks(
    cpu_xp,
):
    # Trusted, Dropout's hooks left out the scale: the right W1 and b1 failed.
    report = check_gradients(*with_layer(cpu_xp, InvertedDropout(0.5, seed=1)), method="batched")
    assert report.passed, str(report)
    assert [p.via for p in report.params] == ["loop", "loop", "local", "local"], str(report)


def test_layer_inputs_are_those_of_the_training_mode_pass(cpu_xp):
    # Asked of the layer, not its forward's default (evaluation, here).
    _, out = layer_inputs([SquaredInTraining()], dev(cpu_xp, [[1.0, -2.0, 3.0]]))
    np.testing.assert_array_equal(to_numpy(out), [[1.0, 4.0, 9.0]])


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
    net = Sequential([*net.layers[:2], NumpyDropout(), *net.layers[3:]], loss=net.last_layer)
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


# The holding itself (xpnet.held), one behaviour each.


def test_a_replayed_generator_gives_a_float64_pass_the_numbers_of_a_float32_one(xp):
    # The gradient check's float64 copy of a float32 network must keep its Dropout masks.
    rng = ReplayedRNG(0)
    single = rng.uniform((4,), like=dev(xp, np.zeros(4), dtype="float32"))
    double = rng.uniform((4,), like=dev(xp, np.zeros(4), dtype="float64"))
    assert single.dtype == xp.float32
    assert double.dtype == xp.float64
    np.testing.assert_array_equal(to_numpy(double), to_numpy(single).astype(np.float64))


def test_two_held_dropout_layers_draw_different_masks(cpu_xp):
    first, second = Dropout(0.5, seed=1), Dropout(0.5, seed=1)  # the same own generator
    like = dev(cpu_xp, np.zeros(64))
    with held([first, second], seed=0):
        a = to_numpy(first.rng.uniform((64,), like=like))
        b = to_numpy(second.rng.uniform((64,), like=like))
    assert not np.array_equal(a, b)


class InPlaceCounter:
    """A user's layer whose buffer ``seen`` is updated in place in every pass."""

    buffers = ("seen",)

    def __init__(self):
        self.seen = np.zeros(1)

    def forward(self, x, train_flg=True):
        self.seen += 1  # in place: the same array object
        return x

    def backward(self, dout):
        return dout


def test_held_puts_back_a_buffer_that_a_pass_updated_in_place():
    layer = InPlaceCounter()
    with held([layer]):
        layer.forward(np.ones(2))
        layer.forward(np.ones(2))
    np.testing.assert_array_equal(layer.seen, [0.0])


def test_layers_of_a_network_end_with_its_loss_layer(cpu_xp):
    net, _, _ = case(cpu_xp, "dropout")
    assert layers_of(net) == [*net.layers, net.last_layer]


def test_differences_within_rounding_of_a_large_loss_are_not_refused(xp):
    # Two sums of one large loss in another order differ in the last bits: 1e6 and the
    # next float64 but two differ by about 2.3e-10, 1e-16 of it, far below 64 epsilons.
    values = iter([1e6, np.nextafter(np.nextafter(1e6, 2e6), 2e6)])
    require_deterministic(lambda: dev(xp, next(values)), "a large loss")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_loss_that_is_not_finite_at_the_point_is_refused_as_such(xp, value):
    # Not as a random layer: every difference of it would be non-finite, whatever h.
    with pytest.raises(ValueError, match=rf"^a bad loss is {value} at the point checked"):
        require_deterministic(lambda: dev(xp, value), "a bad loss")


def test_a_loss_that_differs_beyond_rounding_is_refused(xp):
    values = iter([1.0, 1.0 + 1e-9])
    with pytest.raises(ValueError, match="a noisy loss is not a function of its inputs"):
        require_deterministic(lambda: dev(xp, next(values)), "a noisy loss")


def test_check_gradients_draws_the_dropout_masks_from_its_seed(cpu_xp):
    checked, x, t = case(cpu_xp, "dropout")
    reference, _, _ = case(cpu_xp, "dropout")
    check_gradients(checked, x, t, method="loop", seed=5)
    with held(layers_of(reference), seed=5):
        reference.gradient(x, t)
    dropouts = [k for k, layer in enumerate(reference.layers) if isinstance(layer, Dropout)]
    assert dropouts
    for k in dropouts:
        np.testing.assert_array_equal(
            to_numpy(checked.layers[k].mask), to_numpy(reference.layers[k].mask)
        )


class RunningCenter:
    """Subtracts a running mean that every training pass updates (and reads)."""

    buffers = ("mean",)

    def __init__(self):
        self.mean = np.zeros(7)

    def forward(self, x, train_flg=True):
        if train_flg:
            self.mean = 0.9 * self.mean + 0.1 * x.mean(axis=0)
        return x - self.mean

    def backward(self, dout):
        return dout


def test_a_layer_whose_forward_reads_state_it_updates_is_refused_naming_that_cause():
    net, x, t = case(np, "dropout")  # Affine, ReLU, Dropout, ...: no BatchNorm to undo it
    net = Sequential([net.layers[0], RunningCenter(), *net.layers[2:]], loss=net.last_layer)
    with pytest.raises(ValueError, match="updates state that its forward pass reads"):
        check_gradients(net, x, t)


def test_a_replayed_generator_takes_an_int_shape_as_a_device_rng_does():
    from xpnet.held import ReplayedRNG

    replay, like = ReplayedRNG(0), np.zeros(1)
    assert replay.uniform(3, like=like) is replay.uniform((3,), like=like)
