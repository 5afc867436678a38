"""Layers made of layers: Sequentials inside Sequentials and a user's residual block. Their
gradients are checked against NumPy formulas differentiated by tests/numeric.py, and against
the flat network of the same layers."""

import shutil
import warnings

import numpy as np
import pytest
from array_api_compat import is_cupy_namespace
from metadata import CUPY_GENERATORS_NOT_SAVED
from numeric import central_difference, dev

import xpnet
from xpnet import Sequential, check_gradients, check_layer, graph
from xpnet.backend import namespace_of, to_numpy
from xpnet.checkpoint import (
    ArgumentsNotSaved,
    load_network,
    load_params,
    register_layer,
    save_params,
)
from xpnet.gradcheck import METHODS
from xpnet.layers import Affine, BatchNormalization, Dropout, ReLU, SoftmaxWithLoss, Tanh
from xpnet.optim import Adam
from xpnet.training import Trainer


@register_layer(name="NestedTestResidual")  # examples/residual_block.py registers Residual
class Residual:
    """``out = x + inner(x)``, a user's layer made of layers."""

    sublayers = ("inner",)

    def __init__(self, inner):
        self.inner = inner

    def forward(self, x, train_flg=False):
        return x + self.inner.forward(x, train_flg)

    def backward(self, dout):
        return dout + self.inner.backward(dout)


@register_layer(name="NestedTestProjected")
class Projected:
    """``out = skip(x) + inner(x)``, a ResNet block whose skip path is the projection
    ``downsample`` or, where that is None (PyTorch's ``self.downsample = None``), ``x``."""

    sublayers = ("inner", "downsample")

    def __init__(self, inner, downsample=None):
        self.inner, self.downsample = inner, downsample

    def forward(self, x, train_flg=False):
        skip = x if self.downsample is None else self.downsample.forward(x)
        return skip + self.inner.forward(x, train_flg)

    def backward(self, dout):
        skip = dout if self.downsample is None else self.downsample.backward(dout)
        return skip + self.inner.backward(dout)


class SkipForgotten(Residual):
    """A wrong backward: the skip path's gradient is left out."""

    def backward(self, dout):
        return self.inner.backward(dout)


class Unaware:
    """A layer made of layers whose forward does not take train_flg."""

    sublayers = ("inner",)

    def __init__(self, inner):
        self.inner = inner

    def forward(self, x):
        return self.inner.forward(x)

    def backward(self, dout):
        return self.inner.backward(dout)


SIZES = {"W1": (4, 3), "b1": (3,), "W2": (3, 3), "b2": (3,), "W3": (3, 3), "b3": (3,)}
SIZES |= {"W4": (3, 2), "b4": (2,)}


def weights(seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape) * 0.7 for name, shape in SIZES.items()}


def batch(xp, n=5):
    rng = np.random.default_rng(9)
    return dev(xp, rng.standard_normal((n, 4))), dev(xp, rng.integers(0, 2, n), "int64")


def affine(xp, w, k):
    return Affine(dev(xp, w[f"W{k}"]), dev(xp, w[f"b{k}"]))


def residual_net(xp, w, block=Residual, act=Tanh):
    """Affine, Residual(Sequential(Affine, act, Affine)), Affine, softmax loss."""
    inner = Sequential([affine(xp, w, 2), act(), affine(xp, w, 3)])
    return Sequential([affine(xp, w, 1), block(inner), affine(xp, w, 4)], loss=SoftmaxWithLoss())


def numpy_residual_loss(x, t, W1, b1, W2, b2, W3, b3, W4, b4):
    """The residual network's loss written out in NumPy."""
    h = x @ W1 + b1
    h = h + np.tanh(h @ W2 + b2) @ W3 + b3
    s = h @ W4 + b4
    s = s - s.max(axis=1, keepdims=True)
    log_p = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(t)), t].mean()


def flat_and_nested(xp, w):
    """Two networks of the same layers' weights: flat, and as two nested stacks."""
    flat = Sequential(
        [affine(xp, w, 1), ReLU(), affine(xp, w, 2), ReLU(), affine(xp, w, 4)],
        loss=SoftmaxWithLoss(),
    )
    first = Sequential([affine(xp, w, 1), ReLU()])
    second = Sequential([affine(xp, w, 2), Sequential([ReLU()]), affine(xp, w, 4)])
    return flat, Sequential([first, second], loss=SoftmaxWithLoss())


def host(params):
    return {name: to_numpy(value) for name, value in params.items()}


def test_a_nested_network_names_its_parameters_as_the_flat_network(xp):
    flat, nested = flat_and_nested(xp, weights())
    assert list(nested.params) == list(flat.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert nested.params["W2"] is nested[1][0].W  # a live view of the innermost layer's W
    nested.params["b3"] = dev(xp, np.ones(2))
    np.testing.assert_array_equal(to_numpy(nested[1][2].b), np.ones(2))


def test_a_nested_networks_gradient_equals_the_flat_networks(xp):
    flat, nested = flat_and_nested(xp, weights())
    x, t = batch(xp)
    expected, got = host(flat.gradient(x, t)), host(nested.gradient(x, t))
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


@pytest.mark.parametrize("block", [Residual, Projected], ids=["residual", "no-projection"])
def test_a_residual_blocks_gradients_equal_central_differences_of_its_formula(xp, block):
    w = weights()
    net = residual_net(xp, w, block=block)
    x, t = batch(xp)
    grads = host(net.gradient(x, t))
    hx, ht = to_numpy(x), to_numpy(t)
    for name in SIZES:

        def loss(v, name=name):
            return numpy_residual_loss(hx, ht, **{**w, name: v})

        np.testing.assert_allclose(grads[name], central_difference(loss, w[name]), atol=1e-8)


def test_weight_decay_reaches_the_weights_inside_a_block(xp):
    w = weights()
    x, t = batch(xp)
    plain, decayed = residual_net(xp, w), residual_net(xp, w)
    decayed.weight_decay = 0.5  # the network's own _decayed names the W inside too
    extra = 0.25 * sum(float((w[f"W{k}"] ** 2).sum()) for k in range(1, 5))
    assert float(decayed.loss(x, t)) == pytest.approx(float(plain.loss(x, t)) + extra)
    assert decayed.decay_rate("W2") == decayed.decay_rate("W3") == 0.5


def test_a_stack_without_a_loss_is_a_layer(xp):
    w = weights()
    stack = Sequential([affine(xp, w, 1), Tanh()])
    x, _ = batch(xp)
    y = stack.forward(x)
    dx = stack.backward(xp.ones_like(y))
    hx = to_numpy(x)
    expected = central_difference(lambda v: np.tanh(v @ w["W1"] + w["b1"]).sum(), hx)
    np.testing.assert_allclose(to_numpy(dx), expected, atol=1e-8)
    assert stack.sublayers == ("layers",) and list(stack.params) == ["W1", "b1"]


@pytest.mark.parametrize("call", ["loss", "gradient", "accuracy"])
def test_a_stack_without_a_loss_says_so_when_asked_for_one(xp, call):
    stack = Sequential([affine(xp, weights(), 1)])
    with pytest.raises(TypeError, match=r"has no loss: built without loss=.*loss=SoftmaxWithLoss"):
        getattr(stack, call)(*batch(xp))


def test_a_network_with_a_loss_is_refused_inside_another(xp):
    inner = Sequential([affine(xp, weights(), 1)], loss=SoftmaxWithLoss())
    with pytest.raises(TypeError, match=r"layers\[0\] \(Sequential\) has a loss.*without loss="):
        Sequential([inner], loss=SoftmaxWithLoss())


def test_weight_decay_without_a_loss_is_refused(xp):
    with pytest.raises(ValueError, match=r"weight_decay=0\.1 needs a loss"):
        Sequential([affine(xp, weights(), 1)], weight_decay=0.1)


def test_the_same_layer_twice_is_refused_across_nesting(xp):
    relu = ReLU()
    with pytest.raises(
        ValueError, match=r"layers\[1\]\.layers\[1\] \(ReLU\) is the same object as layers\[0\]"
    ):
        Sequential([relu, Sequential([affine(xp, weights(), 2), relu])], loss=SoftmaxWithLoss())


def test_tied_weights_are_refused_across_nesting(xp):
    a = affine(xp, weights(), 2)
    tied = Affine(a.W, dev(xp, np.zeros(3)))
    with pytest.raises(ValueError, match=r"parameter W2 of layers\[1\]\.inner \(Affine\).*W1"):
        Sequential([a, Residual(tied)], loss=SoftmaxWithLoss())


def test_a_parameter_of_another_dtype_inside_a_block_is_named_by_its_path(xp):
    w = weights()
    odd = Affine(dev(xp, w["W2"], "float32"), dev(xp, w["b2"], "float32"))
    block = Residual(Sequential([Tanh(), odd]))
    with pytest.raises(ValueError, match=r"W2 \(layers\[1\]\.inner\.layers\[1\] \(Affine\)\)"):
        Sequential([affine(xp, w, 1), block], loss=SoftmaxWithLoss())


def test_a_block_whose_forward_does_not_pass_train_flg_on_is_refused(xp):
    norm = BatchNormalization(dev(xp, np.ones(3)), dev(xp, np.zeros(3)))
    with pytest.raises(TypeError, match=r"layers\[0\].inner \(BatchNormalization\).*train_flg"):
        Sequential([Unaware(norm)], loss=SoftmaxWithLoss())


def test_a_stack_passes_train_flg_on_to_the_layers_inside(xp):
    norm = BatchNormalization(dev(xp, np.ones(3)), dev(xp, np.zeros(3)))
    block = Residual(Sequential([Tanh(), norm]))
    net = Sequential([affine(xp, weights(), 1), block], loss=SoftmaxWithLoss())
    x, t = batch(xp)
    before = to_numpy(norm.running_mean).copy()
    net.predict(x)
    np.testing.assert_array_equal(to_numpy(norm.running_mean), before)  # evaluation mode
    net.gradient(x, t)
    assert not np.array_equal(to_numpy(norm.running_mean), before)  # training mode


def test_the_repr_nests_and_counts_the_inner_parameters(xp):
    net = residual_net(xp, weights())
    assert repr(net).splitlines()[2:9] == [
        "  (1): Residual(",
        "    (inner): Sequential(",
        "      (0): Affine(W=float64[3, 3], b=float64[3], input_grad=True)",
        "      (1): Tanh()",
        "      (2): Affine(W=float64[3, 3], b=float64[3], input_grad=True)",
        "    )",
        "  )",
    ]
    assert net.num_parameters() == sum(np.prod(s) for s in SIZES.values())
    assert len(net) == 3 and isinstance(net[1], Residual)  # the top level, as PyTorch's


def test_training_a_nested_network_gives_the_flat_networks_parameters(xp):
    flat, nested = flat_and_nested(xp, weights())
    rng = np.random.default_rng(3)
    x, t = dev(xp, rng.standard_normal((40, 4))), dev(xp, rng.integers(0, 2, 40), "int64")
    for net in (flat, nested):
        Trainer(net, Adam(lr=0.01), x, t, x, t, epochs=3, batch_size=8, seed=1).fit()
    for name, value in host(flat.params).items():
        np.testing.assert_array_equal(to_numpy(nested.params[name]), value)


def test_a_nested_network_with_buffers_round_trips_a_checkpoint(xp, tmp_path):
    if is_cupy_namespace(xp):  # its Dropout
        pytest.skip(CUPY_GENERATORS_NOT_SAVED)
    w = weights()
    norm = BatchNormalization(dev(xp, np.ones(3)), dev(xp, np.zeros(3)))
    block = Residual(Sequential([norm, Tanh(), Dropout(0.3, seed=4), affine(xp, w, 3)]))
    net = Sequential([affine(xp, w, 1), block, affine(xp, w, 4)], loss=SoftmaxWithLoss())
    x, t = batch(xp)
    net.gradient(x, t)  # moves the running statistics and the dropout generator
    path = save_params(tmp_path / "nested.npz", net)
    rebuilt, _ = load_network(path, xp=xp)
    assert repr(rebuilt) == repr(net)
    for name, value in host(net.params).items():
        np.testing.assert_array_equal(to_numpy(rebuilt.params[name]), value)
    inner = rebuilt[1].inner[0]
    for attr in ("running_mean", "running_var"):
        np.testing.assert_array_equal(to_numpy(getattr(inner, attr)), to_numpy(getattr(norm, attr)))
    np.testing.assert_array_equal(
        to_numpy(rebuilt.loss(x, t, True)), to_numpy(net.loss(x, t, True))
    )


def test_load_params_fills_a_nested_network_from_a_flat_networks_file(xp, tmp_path):
    flat, _ = flat_and_nested(xp, weights(1))
    _, nested = flat_and_nested(xp, weights(2))
    load_params(save_params(tmp_path / "flat.npz", flat), nested)
    for name, value in host(flat.params).items():
        np.testing.assert_array_equal(to_numpy(nested.params[name]), value)


@pytest.mark.parametrize("method", ["loop", "batched", "directional"])
def test_the_gradient_check_passes_a_correct_residual_network(cpu_xp, method):
    net = residual_net(cpu_xp, weights(), act=ReLU)
    assert check_gradients(net, *batch(cpu_xp), method=method).passed


@pytest.mark.parametrize("method", ["loop", "batched", "directional"])
def test_the_gradient_check_fails_a_block_whose_backward_forgets_the_skip_path(cpu_xp, method):
    net = residual_net(cpu_xp, weights(), block=SkipForgotten, act=ReLU)
    report = check_gradients(net, *batch(cpu_xp), method=method)
    assert not report.passed
    assert "W1" in str(report)


def test_a_gradient_check_puts_back_the_statistics_of_a_batchnorm_inside_a_block(cpu_xp):
    norm = BatchNormalization(dev(cpu_xp, np.ones(3)), dev(cpu_xp, np.zeros(3)))
    net = Sequential([affine(cpu_xp, weights(), 1), Residual(norm)], loss=SoftmaxWithLoss())
    before = to_numpy(norm.running_mean).copy()
    assert check_gradients(net, *batch(cpu_xp)).passed
    np.testing.assert_array_equal(to_numpy(norm.running_mean), before)


def block_input(xp):
    return dev(xp, np.random.default_rng(2).standard_normal((5, 3)))


def test_check_layer_checks_the_parameters_inside_a_block(xp):
    block = residual_net(xp, weights())[1]
    report = check_layer(block, block_input(xp))
    assert report.passed
    assert [p.name for p in report.params] == [
        "x",
        "inner.layers[0].W",
        "inner.layers[0].b",
        "inner.layers[2].W",
        "inner.layers[2].b",
    ]


def test_check_layer_fails_a_block_whose_backward_forgets_the_skip_path(xp):
    block = residual_net(xp, weights(), block=SkipForgotten)[1]
    report = check_layer(block, block_input(xp))
    assert [p.name for p in report.params if not p.passed] == ["x"]


def test_a_block_drawn_as_one_node_has_the_inner_parameters_as_leaves(cpu_xp):
    net = residual_net(cpu_xp, weights())
    x, t = batch(cpu_xp)
    run = graph.record_network(net, x, t, inside=False)
    kinds = [type(run.nodes[call.node]).__name__ for call in run.calls]
    assert kinds == ["Affine", "Residual", "Affine", "SoftmaxWithLoss"]
    block_call = run.calls[1]
    assert list(block_call.params) == ["W2", "b2", "W3", "b3"]
    grads = host(net.gradient(x, t))
    assert block_call.params["W3"][1].norm == pytest.approx(np.linalg.norm(grads["W3"]))


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_a_nested_network_renders_with_dot(cpu_xp, tmp_path):
    _, nested = flat_and_nested(cpu_xp, weights())
    run = graph.record_network(nested, *batch(cpu_xp))
    graph.write(run.dot(), tmp_path / "nested.svg")
    svg = (tmp_path / "nested.svg").read_text()
    assert svg.count("Sequential") >= 2 and "W2" in svg


def test_xpnets_namespace_takes_a_layers_inside_walk():
    net = residual_net(namespace_of(np.zeros(1)), weights())
    paths = [path for path, _ in xpnet.layers.walk(net.layers)]
    assert paths == [
        "layers[0]",
        "layers[1]",
        "layers[1].inner",
        "layers[1].inner.layers[0]",
        "layers[1].inner.layers[1]",
        "layers[1].inner.layers[2]",
        "layers[2]",
    ]


class ShapeLosingReLU(ReLU):
    """A wrong backward: the input gradient of the first sample alone, (D,) for (N, D)."""

    def backward(self, dout):
        return super().backward(dout)[0, ...]


def test_a_layer_refusing_its_input_deep_inside_is_named_by_its_full_path(xp):
    w = weights()
    inner = Sequential([affine(xp, w, 1), Tanh()])  # takes 4 features, gets 3
    net = Sequential([affine(xp, w, 1), Residual(inner)], loss=SoftmaxWithLoss())
    with pytest.raises(
        ValueError, match=r"^layers\[1\]\.inner\.layers\[0\] \(Affine\) cannot take"
    ):
        net.predict(batch(xp)[0])


def test_a_wrong_input_gradient_inside_a_stack_is_named_by_its_full_path(xp):
    w = weights()
    inner = Sequential([affine(xp, w, 2), ShapeLosingReLU(), affine(xp, w, 3)])
    net = Sequential([affine(xp, w, 1), Residual(inner), affine(xp, w, 4)], loss=SoftmaxWithLoss())
    with pytest.raises(ValueError, match=r"^layers\[1\]\.inner\.layers\[1\] \(ShapeLosingReLU\)"):
        net.gradient(*batch(xp))


def test_a_stack_gives_no_input_gradient_where_nothing_before_needs_one(xp):
    w = weights()

    def layers():  # Tanh, then an Affine that computes no input gradient
        first = Affine(dev(xp, w["W1"]), dev(xp, w["b1"]), input_grad=False)
        return [Tanh(), first], [Tanh(), affine(xp, w, 2), affine(xp, w, 4)]

    (a, b), (c, d, e) = layers()
    flat = Sequential([a, b, c, d, e], loss=SoftmaxWithLoss())
    (a, b), (c, d, e) = layers()
    nested = Sequential([Sequential([a, b]), c, d, e], loss=SoftmaxWithLoss())
    x, t = batch(xp)
    expected = host(flat.gradient(x, t))
    for name, value in host(nested.gradient(x, t)).items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-12)


def test_a_flat_networks_buffers_load_into_the_same_layers_in_stacks(xp, tmp_path):
    w = weights()

    def norm():
        return BatchNormalization(dev(xp, np.ones(3)), dev(xp, np.zeros(3)))

    flat = Sequential([affine(xp, w, 1), norm(), Tanh(), affine(xp, w, 4)], loss=SoftmaxWithLoss())
    flat.gradient(*batch(xp))  # moves the running statistics
    inner = Sequential([Sequential([norm()]), Tanh()])
    nested = Sequential([affine(xp, w, 1), inner, affine(xp, w, 4)], loss=SoftmaxWithLoss())
    load_params(save_params(tmp_path / "flat.npz", flat), nested)
    for attr in ("running_mean", "running_var"):
        np.testing.assert_array_equal(
            to_numpy(getattr(inner[0][0], attr)), to_numpy(getattr(flat[1], attr))
        )


def dead_unit(w):
    """``w`` with hidden unit 2's weights and bias 0: its ReLU input is exactly 0 in every
    sample, a kink that b1[2] moves in every direction."""
    w = {name: value.copy() for name, value in w.items()}
    w["W1"][:, 2], w["b1"][2] = 0.0, 0.0
    return w


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("w", [weights(), dead_unit(weights())], ids=["smooth", "dead-unit"])
def test_a_stacked_networks_gradient_check_reports_as_the_flat_networks(xp, method, w):
    flat, nested = flat_and_nested(xp, w)
    x, t = batch(xp)
    expected = check_gradients(flat, x, t, method=method)
    assert check_gradients(nested, x, t, method=method).as_dict() == expected.as_dict()


def test_the_batched_check_perturbs_the_layers_inside_stacks_locally(xp):
    _, nested = flat_and_nested(xp, weights())
    report = check_gradients(nested, *batch(xp))
    assert report.passed and {p.via for p in report.params} == {"local"}


@pytest.mark.parametrize("method", METHODS)
def test_a_wrong_backward_inside_a_stack_fails_every_method(xp, wrong_dW, method):
    _, nested = flat_and_nested(xp, weights())
    assert not check_gradients(nested, *batch(xp), method=method).passed


def stacked_residual_net(xp, w, block=Residual):
    """``residual_net``'s layers with ReLU, the first Affine and the block in a stack."""
    inner = Sequential([affine(xp, w, 2), ReLU(), affine(xp, w, 3)])
    stack = Sequential([affine(xp, w, 1), block(inner)])
    return Sequential([stack, affine(xp, w, 4)], loss=SoftmaxWithLoss())


def test_a_residual_block_inside_a_stack_is_looped_from_its_own_layer_on(xp):
    report = check_gradients(stacked_residual_net(xp, weights()), *batch(xp))
    assert report.passed
    assert {p.name: p.via for p in report.params} == {
        "W1": "loop", "b1": "loop", "W2": "loop", "b2": "loop", "W3": "loop", "b3": "loop",
        "W4": "local", "b4": "local",
    }  # fmt: skip


def test_the_batched_check_names_the_block_that_made_it_loop(xp):
    report = check_gradients(stacked_residual_net(xp, weights()), *batch(xp))
    text = str(report)
    assert "via loop: layers[0].layers[1] (Residual) is not one xpnet can difference" in text
    assert "the parameters in and before it (W1, b1, W2, b2, W3, b3)" in text, text


def test_the_via_loop_note_is_left_out_where_no_block_made_the_batched_check_loop(xp):
    _, nested = flat_and_nested(xp, weights())
    x, t = batch(xp)
    assert "via loop:" not in str(check_gradients(nested, x, t))  # stacks: every one local
    assert "via loop:" not in str(check_gradients(residual_net(xp, weights()), x, t, method="loop"))


@pytest.mark.parametrize("method", METHODS)
def test_a_residual_block_inside_a_stack_forgetting_the_skip_path_fails_every_method(xp, method):
    net = stacked_residual_net(xp, weights(), block=SkipForgotten)
    report = check_gradients(net, *batch(xp), method=method)
    assert not report.passed


@register_layer(name="NestedTestDoubled")
class Doubled(Sequential):
    """A stack whose output is twice its layers': a forward that is not their chain."""

    def forward(self, x, train_flg=False):
        return 2 * super().forward(x, train_flg)

    def backward(self, dout):
        return super().backward(2 * dout)


def test_a_stack_subclass_that_replaces_forward_is_checked_as_one_layer(xp):
    w = weights()
    doubled = Doubled([affine(xp, w, 1), Tanh()])
    net = Sequential([doubled, affine(xp, w, 2)], loss=SoftmaxWithLoss())
    report = check_gradients(net, *batch(xp))
    assert report.passed and [p.via for p in report.params] == ["loop", "loop", "local", "local"]


def doubled_net_with_norms(xp, w):
    """Doubled(Affine, BatchNorm), BatchNorm, Affine: buffers inside a stack subclass and
    after it."""

    def norm():
        return BatchNormalization(dev(xp, np.ones(3)), dev(xp, np.zeros(3)))

    doubled = Doubled([affine(xp, w, 1), norm()])
    return Sequential([doubled, norm(), affine(xp, w, 4)], loss=SoftmaxWithLoss())


def test_a_stack_subclass_with_buffers_round_trips_a_checkpoint(xp, tmp_path):
    net = doubled_net_with_norms(xp, weights())
    x, t = batch(xp)
    net.gradient(x, t)  # moves the running statistics
    rebuilt, _ = load_network(save_params(tmp_path / "doubled.npz", net), xp=xp)
    for before, after in ((net[0][1], rebuilt[0][1]), (net[1], rebuilt[1])):
        for attr in ("running_mean", "running_var"):
            np.testing.assert_array_equal(
                to_numpy(getattr(after, attr)), to_numpy(getattr(before, attr))
            )
    np.testing.assert_array_equal(to_numpy(rebuilt.predict(x)), to_numpy(net.predict(x)))


def test_saving_a_stack_subclass_warns_of_no_unrecorded_argument(xp, tmp_path):
    net = doubled_net_with_norms(xp, weights())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ArgumentsNotSaved)
        save_params(tmp_path / "doubled.npz", net)


def norm_and_dropout(xp, w, nested):
    """Affine, BatchNorm, ReLU, Dropout, Affine; with ``nested``, as stacks in stacks."""
    norm = BatchNormalization(dev(xp, np.ones(3)), dev(xp, np.zeros(3)))
    first, drop, last = affine(xp, w, 1), Dropout(0.3, seed=4), affine(xp, w, 4)
    if nested:
        layers = [Sequential([first, Sequential([norm, ReLU()])]), Sequential([drop]), last]
    else:
        layers = [first, norm, ReLU(), drop, last]
    return Sequential(layers, loss=SoftmaxWithLoss()), norm


@pytest.mark.parametrize("method", METHODS)
def test_batchnorm_and_dropout_inside_stacks_are_held_as_in_the_flat_network(xp, method):
    x, t = batch(xp, 8)
    flat, _ = norm_and_dropout(xp, weights(), nested=False)
    nested, norm = norm_and_dropout(xp, weights(), nested=True)
    before = to_numpy(norm.running_mean).copy()
    expected = check_gradients(flat, x, t, method=method)
    report = check_gradients(nested, x, t, method=method)
    assert report.passed and report.as_dict() == expected.as_dict()
    np.testing.assert_array_equal(to_numpy(norm.running_mean), before)
    if method == "batched":
        assert {p.via for p in report.params} == {"local"}


def test_an_empty_stack_is_the_identity(xp):
    x, _ = batch(xp)
    stack = Sequential([])
    assert stack.forward(x) is x and stack.backward(x) is x
    assert len(stack.params) == 0 and stack.num_parameters() == 0


def with_empty_stacks(xp, w):
    """``flat_and_nested``'s flat network with an empty stack first and one in the middle."""
    layers = [affine(xp, w, 1), ReLU(), Sequential([]), affine(xp, w, 2), ReLU(), affine(xp, w, 4)]
    return Sequential([Sequential([]), *layers], loss=SoftmaxWithLoss())


def test_an_empty_stack_in_a_network_shows_as_pytorchs(xp):
    assert "  (3): Sequential()" in repr(with_empty_stacks(xp, weights())).splitlines()


@pytest.mark.parametrize("method", METHODS)
def test_empty_stacks_leave_a_networks_gradient_check_as_the_flat_networks(xp, method):
    flat, _ = flat_and_nested(xp, weights())
    x, t = batch(xp)
    expected = check_gradients(flat, x, t, method=method).as_dict()
    assert check_gradients(with_empty_stacks(xp, weights()), x, t, method=method).as_dict() == (
        expected
    )


def test_a_network_with_empty_stacks_round_trips_a_checkpoint(xp, tmp_path):
    net = with_empty_stacks(xp, weights())
    rebuilt, _ = load_network(save_params(tmp_path / "empty.npz", net), xp=xp)
    assert repr(rebuilt) == repr(net)
    x, t = batch(xp)
    np.testing.assert_array_equal(to_numpy(rebuilt.loss(x, t)), to_numpy(net.loss(x, t)))


def test_a_network_with_a_loss_and_no_layers_is_refused(xp):
    with pytest.raises(ValueError, match=r"with a loss needs at least one layer.*identity"):
        Sequential([], loss=SoftmaxWithLoss())


def test_a_block_holding_no_projection_shows_none_in_the_repr(xp):
    lines = repr(residual_net(xp, weights(), block=Projected)).splitlines()
    assert lines[2:4] == ["  (1): Projected(", "    (inner): Sequential("]
    assert lines[8:10] == ["    (downsample): None", "  )"]


def test_a_walk_passes_over_an_attribute_holding_no_layer(xp):
    net = residual_net(xp, weights(), block=Projected)
    paths = [path for path, _ in xpnet.layers.walk(net.layers)]
    assert "layers[1].downsample" not in paths and "layers[1].inner" in paths


def test_none_among_a_sequence_of_inner_layers_is_refused_by_its_path(xp):
    class Blocks(Residual):
        sublayers = ("blocks",)

        def __init__(self, *blocks):
            self.blocks = list(blocks)

    with pytest.raises(TypeError, match=r"layers\[1\]\.blocks\[1\] \(NoneType\) has no forward"):
        Sequential([affine(xp, weights(), 1), Blocks(Tanh(), None)], loss=SoftmaxWithLoss())


def test_a_block_holding_no_projection_round_trips_a_checkpoint(xp, tmp_path):
    net = residual_net(xp, weights(), block=Projected)
    rebuilt, _ = load_network(save_params(tmp_path / "projected.npz", net), xp=xp)
    assert rebuilt[1].downsample is None and repr(rebuilt) == repr(net)
    x, t = batch(xp)
    np.testing.assert_array_equal(to_numpy(rebuilt.loss(x, t)), to_numpy(net.loss(x, t)))


def projected_net(xp, w, projection):
    """``residual_net`` with a ``Projected`` block, whose ``downsample`` is an Affine (W4,
    b4: the last Affine is then W5, b5) or None."""
    downsample = Affine(dev(xp, w["W2"].T), dev(xp, w["b3"])) if projection else None
    inner = Sequential([affine(xp, w, 2), ReLU(), affine(xp, w, 3)])
    block = Projected(inner, downsample)
    return Sequential([affine(xp, w, 1), block, affine(xp, w, 4)], loss=SoftmaxWithLoss())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("projection", [True, False], ids=["projection", "no-projection"])
def test_the_gradient_check_passes_a_block_with_or_without_its_projection(xp, method, projection):
    net = projected_net(xp, weights(), projection)
    report = check_gradients(net, *batch(xp), method=method)
    assert report.passed and len(report.params) == (10 if projection else 8)


def test_check_layer_checks_a_block_holding_no_projection(xp):
    block = projected_net(xp, weights(), projection=False)[1]
    report = check_layer(block, block_input(xp))
    assert report.passed and [p.name for p in report.params][1:] == [
        "inner.layers[0].W",
        "inner.layers[0].b",
        "inner.layers[2].W",
        "inner.layers[2].b",
    ]


def test_a_networks_named_layers_are_its_layers_and_those_inside_by_path(xp):
    net = residual_net(xp, weights())
    assert [(path, type(layer).__name__) for path, layer in net.named_layers()] == [
        ("layers[0]", "Affine"),
        ("layers[1]", "Residual"),
        ("layers[1].inner", "Sequential"),
        ("layers[1].inner.layers[0]", "Affine"),
        ("layers[1].inner.layers[1]", "Tanh"),
        ("layers[1].inner.layers[2]", "Affine"),
        ("layers[2]", "Affine"),
    ]


class Unnamed(Residual):
    """A block that forgot ``sublayers``: PyTorch would find ``inner`` itself."""

    sublayers = ()


class SecondName(Residual):
    """A block keeping a second name for a layer that ``sublayers`` already reaches."""

    def __init__(self, inner):
        super().__init__(inner)
        self.first = inner[0]


def test_a_block_holding_layers_with_parameters_its_sublayers_do_not_name_is_refused(xp):
    w = weights()
    block = Unnamed(Sequential([affine(xp, w, 2), Tanh(), affine(xp, w, 3)]))
    with pytest.raises(
        ValueError, match=r"layers\[1\] \(Unnamed\).*'inner'.*sublayers = \('inner',\)"
    ):
        Sequential([affine(xp, w, 1), block, affine(xp, w, 4)], loss=SoftmaxWithLoss())


def test_check_layer_refuses_a_block_hiding_layers_with_parameters_from_its_sublayers(xp):
    w = weights()
    block = Unnamed(Sequential([affine(xp, w, 2), Tanh(), affine(xp, w, 3)]))
    with pytest.raises(ValueError, match=r"Unnamed holds .*'inner'.*sublayers = \('inner',\)"):
        check_layer(block, block_input(xp))


def test_a_second_name_for_a_layer_inside_a_block_is_allowed(xp):
    w = weights()
    block = SecondName(Sequential([affine(xp, w, 2), Tanh(), affine(xp, w, 3)]))
    net = Sequential([affine(xp, w, 1), block, affine(xp, w, 4)], loss=SoftmaxWithLoss())
    assert list(net.params) == list(residual_net(xp, w).params)


def test_a_nested_network_resumed_from_a_checkpoint_ends_where_an_uninterrupted_run_does(
    xp, tmp_path
):
    if is_cupy_namespace(xp):  # its Dropout
        pytest.skip(CUPY_GENERATORS_NOT_SAVED)

    def network():
        w = weights()
        norm = BatchNormalization(dev(xp, np.ones(3)), dev(xp, np.zeros(3)))
        inner = Sequential([affine(xp, w, 2), norm, Tanh(), Dropout(0.3, seed=4), affine(xp, w, 3)])
        block = Projected(inner, downsample=Affine(dev(xp, np.eye(3)), dev(xp, np.zeros(3))))
        return Sequential([affine(xp, w, 1), block, affine(xp, w, 4)], loss=SoftmaxWithLoss())

    rng = np.random.default_rng(3)
    x, t = dev(xp, rng.standard_normal((40, 4))), dev(xp, rng.integers(0, 2, 40), "int64")
    straight = network()
    Trainer(straight, Adam(lr=0.01), x, t, x, t, epochs=4, batch_size=8).fit()
    first, opt = network(), Adam(lr=0.01)
    history = Trainer(first, opt, x, t, x, t, epochs=2, batch_size=8).fit()
    path = save_params(tmp_path / "mid.npz", first, optimizer=opt)
    resumed, opt = network(), Adam(lr=0.01)
    load_params(path, resumed, optimizer=opt)
    trainer = Trainer(
        resumed, opt, x, t, x, t, epochs=4, batch_size=8, start_epoch=2, history=history
    )
    trainer.fit()
    for name, value in host(straight.params).items():
        np.testing.assert_array_equal(to_numpy(resumed.params[name]), value)
    norms = (straight[1].inner[1], resumed[1].inner[1])  # running statistics, saved too
    np.testing.assert_array_equal(to_numpy(norms[1].running_var), to_numpy(norms[0].running_var))
