"""``xpnet.graph`` and ``xpnet graph``: the drawn values come from the recorded run, the
recording leaves the nodes as they were, and Graphviz renders PNG and SVG (or, without
its ``dot`` program, a clear error).

Expected numbers are the book's (section 5.4) and CS231n's, or computed here in NumPy.
"""

import inspect
import math
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from numeric import dev

from xpnet import backend, datasets, graph, layers
from xpnet.cli import main
from xpnet.networks import MultiLayerNet, Sequential

X, NEGATE = graph.TIMES, f"{graph.TIMES}-1"  # the multiply gates
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PDF_SIGNATURE = b"%PDF-"
SIGNATURES = {"png": PNG_SIGNATURE, "pdf": PDF_SIGNATURE, "svg": b"<?xml"}
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot program is not installed"
)


def run(argv):
    """``main(argv)``'s exit status, whether it returns or exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def drawn_edges(dot):
    """The edges of DOT text as a set of (source label, target label, forward, backward);
    the output edge's target label is ''."""
    labels = dict(re.findall(r'^  "([^"]+)" \[shape=[^\]]*label="([^"]*)"\];$', dot, re.M))
    forward, backward = {}, {}
    for source, target, attrs, label in re.findall(
        r'^  "([^"]+)" -> "([^"]+)" \[(.*?)label="([^"]*)", tooltip="[^"]*"\];$', dot, re.M
    ):
        (backward if "dir=back" in attrs else forward)[source, target] = label
    return {
        (labels[s], labels[t], value, backward.get((s, t)))
        for (s, t), value in forward.items()
    }  # fmt: skip


def mul_of_two_vectors(xp):
    """A recording of x * y on ``xp``'s arrays, x = [1, -2], y = [3, 0.5], backward from ones."""
    mul = layers.Mul()
    x, y = dev(xp, [1.0, -2.0]), dev(xp, [3.0, 0.5])
    with graph.record([mul], inputs={"x": x, "y": y}) as run:
        mul.forward(x, y)
        mul.backward(dev(xp, [1.0, 1.0]))
    return run


def test_a_gradient_of_a_few_elements_is_drawn_element_by_element(xp):
    # It was drawn as its norm, which loses the signs: y's gradient [1, -2] read "‖·‖ 2.24".
    edges = drawn_edges(mul_of_two_vectors(xp).dot())
    assert {("x", X, "(2,)", "[3, 0.5]"), ("y", X, "(2,)", "[1, -2]")} <= edges


def test_a_gradient_of_more_elements_is_drawn_as_its_norm(xp):
    mul = layers.Mul()
    x, y = dev(xp, [3.0, 0.0, 0.0, 4.0]), dev(xp, [1.0, 1.0, 1.0, 1.0])
    with graph.record([mul], inputs={"x": x, "y": y}) as run:
        mul.forward(x, y)
        mul.backward(dev(xp, [1.0, 1.0, 1.0, 1.0]))
    assert ("y", X, "(4,)", "‖·‖ 5") in drawn_edges(run.dot())


def tooltips(dot):
    """Every edge's tooltip in DOT text."""
    return re.findall(r'tooltip="([^"]*)"', dot)


def test_a_float32_scalar_reads_as_float32_prints_it(xp):
    # A float32 2.2 read 2.200000047683716 in tooltips and input_gradients().
    mul = layers.Mul()
    x, y = dev(xp, np.float32(2.2), "float32"), dev(xp, np.float32(1.1), "float32")
    with graph.record([mul], inputs={"x": x, "y": y}) as run:
        mul.forward(x, y)
        mul.backward(dev(xp, np.float32(1.0), "float32"))
    assert run.input_gradients() == {"x": 1.1, "y": 2.2}
    assert tooltips(run.dot()) == [
        "2.2",
        "gradient: 1.1",
        "1.1",
        "gradient: 2.2",
        "2.42",
        "gradient: 1",
    ]


def test_a_float32_input_used_twice_sums_its_gradients_in_float32(xp):
    # The sum of 0.1 and 0.2 read 0.30000000000000004: it was taken in Python floats.
    first, second = layers.Mul(), layers.Mul()
    x, one = dev(xp, 0.1, "float32"), dev(xp, 1.0, "float32")
    with graph.record([first, second], inputs={"x": x}) as run:
        first.forward(x, one)
        second.forward(x, one)
        second.backward(dev(xp, 0.2, "float32"))
        first.backward(dev(xp, 0.1, "float32"))
    assert run.input_gradients() == {"x": 0.3}
    assert float(np.float32(0.1) + np.float32(0.2)) == float(np.float32(0.3))  # the dtype's sum


def test_a_float64_scalar_reads_to_12_significant_digits(xp):
    # 0.1 * 3 read 0.30000000000000004 in its tooltip, and 1.0 beside an integer's 3.
    mul = layers.Mul()
    x, y = dev(xp, 0.1), dev(xp, 3.0)
    with graph.record([mul], inputs={"x": x, "y": y}) as run:
        mul.forward(x, y)
        mul.backward(dev(xp, 1.0))
    assert tooltips(run.dot()) == ["0.1", "gradient: 3", "3", "gradient: 0.1", "0.3", "gradient: 1"]


def test_the_books_tooltips_read_as_the_book_prints_them():
    # apple-orange's tooltips read 110.00000000000001, 715.0000000000001, and 165.0 beside 650.
    assert tooltips(graph.apple_orange().dot()) == [
        "100", "gradient: 2.2", "2", "gradient: 110", "150", "gradient: 3.3", "3",
        "gradient: 165", "200", "gradient: 1.1", "450", "gradient: 1.1", "650",
        "gradient: 1.1", "1.1", "gradient: 650", "715", "gradient: 1",
    ]  # fmt: skip


def test_apple_graph_draws_the_books_values():
    assert drawn_edges(graph.apple().dot()) == {
        ("apple", X, "100", "2.2"),
        ("apple_num", X, "2", "110"),
        (X, X, "200", "1.1"),
        ("tax", X, "1.1", "200"),
        (X, "", "220", "1"),
    }


def test_apple_orange_graph_draws_the_books_values():
    assert drawn_edges(graph.apple_orange().dot()) == {
        ("apple", X, "100", "2.2"),
        ("apple_num", X, "2", "110"),
        ("orange", X, "150", "3.3"),
        ("orange_num", X, "3", "165"),
        (X, "+", "200", "1.1"),
        (X, "+", "450", "1.1"),
        ("+", X, "650", "1.1"),
        ("tax", X, "1.1", "650"),
        (X, "", "715", "1"),
    }


def test_sigmoid_neuron_graph_draws_every_gate_with_cs231n_values():
    w0, w1, w2, x0, x1 = 2.0, -3.0, -3.0, -1.0, -2.0
    z = w0 * x0 + w1 * x1 + w2
    e = math.exp(-z)
    f = 1 / (1 + e)
    # Back through 1/x, +1, exp, x-1: d(1/u)/du = -1/u**2 at u = 1 + e, then times e, times -1.
    du = -1 / (1 + e) ** 2
    dz = -(du * e)
    expected = {
        ("w0", X, w0, dz * x0), ("x0", X, x0, dz * w0),
        ("w1", X, w1, dz * x1), ("x1", X, x1, dz * w1),
        (X, "+", w0 * x0, dz), (X, "+", w1 * x1, dz),
        ("+", "+", w0 * x0 + w1 * x1, dz), ("w2", "+", w2, dz),
        ("+", NEGATE, z, dz), (NEGATE, "exp", -z, -dz), ("exp", "+1", e, du),
        ("+1", "1/x", 1 + e, du), ("1/x", "", f, 1.0),
    }  # fmt: skip
    drawn = drawn_edges(graph.sigmoid_neuron().dot())
    assert drawn == {(s, t, f"{v:.2f}", f"{g:.2f}") for s, t, v, g in expected}
    # The numbers of the CS231n notes: f = 0.73, dw = (-0.20, -0.39, 0.20), dx = (0.39, -0.59).
    assert {(s, b) for s, _, _, b in drawn if s in ("w0", "w1", "w2", "x0", "x1")} == {
        ("w0", "-0.20"), ("w1", "-0.39"), ("w2", "0.20"), ("x0", "0.39"), ("x1", "-0.59"),
    }  # fmt: skip
    assert ("1/x", "", "0.73", "1.00") in drawn


def numpy_two_layer_gradients(x, t, W1, b1, W2, b2):
    """Loss and gradients of affine-ReLU-affine-softmax-cross-entropy, written out in NumPy."""
    z = x @ W1 + b1
    h = np.maximum(z, 0)
    y = h @ W2 + b2
    p = np.exp(y - y.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = -np.log(p[np.arange(n), t]).mean()
    dy = p.copy()
    dy[np.arange(n), t] -= 1
    dy /= n
    dz = (dy @ W2.T) * (z > 0)
    return loss, {"W1": x.T @ dz, "b1": dz.sum(0), "W2": h.T @ dy, "b2": dy.sum(0)}


def norm_of(label):
    match = re.fullmatch(r"‖·‖ (\S+)", label)
    assert match, label
    return float(match.group(1))


@pytest.fixture(scope="module")
def digits():
    try:
        (x, t), _ = datasets.load_mnist(name="mnist-5k", device="cpu")
    except FileNotFoundError as exc:
        pytest.skip(f"mnist-5k is not available: {exc}")
    return backend.to_numpy(x[:20, ...]).astype(np.float64), backend.to_numpy(t[:20])


def test_network_graph_shows_shapes_and_parameter_gradient_norms(digits):
    x, t = digits
    net = MultiLayerNet(784, [8], 10, weight_init="he", dtype="float64", seed=1, device="cpu")
    params = {name: backend.to_numpy(value).copy() for name, value in net.params.items()}
    loss, grads = numpy_two_layer_gradients(x, t, **params)
    drawn = {(s, d): (f, b) for s, d, f, b in drawn_edges(graph.record_network(net, x, t).dot())}

    assert drawn["x", "Affine"] == ("(20, 784)", None)  # the data need no gradient
    assert drawn["Affine", "ReLU"][0] == drawn["ReLU", "Affine"][0] == "(20, 8)"
    assert drawn["Affine", "SoftmaxWithLoss"][0] == "(20, 10)"
    assert drawn["t", "SoftmaxWithLoss"] == ("(20,)", None)
    assert float(drawn["SoftmaxWithLoss", ""][0]) == pytest.approx(loss, rel=1e-3)
    for name, grad in grads.items():
        shape, norm = drawn[name, "Affine"]
        assert shape == str(grad.shape)
        assert norm_of(norm) == pytest.approx(np.linalg.norm(grad), rel=5e-3)


def title_of(dot):
    """The ``label`` of the graph in DOT text: its title lines, joined by newlines."""
    (label,) = re.findall(r'^  labelloc=t; label="([^"]*)";', dot, re.M)
    return label.replace("\\n", "\n")


def test_a_network_with_weight_decay_is_drawn_as_its_layers_compute_it(xp):
    # The loss edge showed the data loss, but each W's gradient had the decay's decay * W
    # added, from a term the drawing has no node for.
    rng = np.random.default_rng(3)
    x, labels = rng.random((6, 5)), rng.integers(0, 4, 6)  # 4 classes: b2's norm is drawn
    net = MultiLayerNet(5, [4], 4, dtype="float64", seed=2, xp=xp, weight_decay=0.5)
    params = {name: backend.to_numpy(value).copy() for name, value in net.params.items()}
    loss, grads = numpy_two_layer_gradients(x, labels, **params)
    t = dev(xp, labels, "int64")
    dot = graph.record_network(net, dev(xp, x), t).dot()
    drawn = {(s, d): (f, b) for s, d, f, b in drawn_edges(dot)}
    assert float(drawn["SoftmaxWithLoss", ""][0]) == pytest.approx(loss, rel=1e-3)
    for name, grad in grads.items():  # the layers' own gradients, of the loss drawn
        assert norm_of(drawn[name, "Affine"][1]) == pytest.approx(np.linalg.norm(grad), rel=5e-3)


def test_a_network_drawing_says_its_weight_decay_is_not_drawn_and_what_it_adds(xp):
    rng = np.random.default_rng(3)
    x, t = dev(xp, rng.random((6, 5))), dev(xp, rng.integers(0, 3, 6), "int64")
    net = MultiLayerNet(5, [4], 3, dtype="float64", seed=2, xp=xp, weight_decay=0.5)
    run_ = graph.record_network(net, x, t)
    data_loss, total = float(run_.output), float(net.loss(x, t, train_flg=True))
    assert title_of(run_.dot()) == (
        "weight decay (λ = 0.5) not drawn: MultiLayerNet.loss = the loss drawn + 0.5·λ·ΣW² = "
        f"{data_loss:.4g} + {total - data_loss:.4g} = {total:.4g}; MultiLayerNet.gradient "
        "adds λ·W to W1, W2, drawn as their layers' own gradients"
    )


def test_a_network_drawing_without_weight_decay_has_no_note(xp):
    rng = np.random.default_rng(3)
    x, t = dev(xp, rng.random((6, 5))), dev(xp, rng.integers(0, 3, 6), "int64")
    net = MultiLayerNet(5, [4], 3, dtype="float64", seed=2, xp=xp)
    assert graph.record_network(net, x, t).note is None


def test_cli_net_with_weight_decay_says_it_is_not_drawn(capsys, digits):
    argv = ["graph", "net", "--hidden", "4", "--batch-size", "5", "--weight-decay", "0.1"]
    assert run(argv) == 0
    title = title_of(capsys.readouterr().out)
    assert title.startswith("784-4-10 relu, softmax-ce loss, 5 mnist-5k samples")
    assert "\nweight decay (λ = 0.1) not drawn: " in title


def test_the_input_of_a_network_that_converts_it_is_the_leaf_x_without_a_gradient(xp):
    # A float32 x given to a float64 network was drawn as an unnamed constant, and
    # input_gradients() read {'t': None}: the network's copy in float64 was not x.
    rng = np.random.default_rng(3)
    x = dev(xp, rng.random((6, 5)), "float32")
    t = dev(xp, rng.integers(0, 3, 6), "int64")
    run_ = graph.record_network(MultiLayerNet(5, [4], 3, dtype="float64", seed=2, xp=xp), x, t)
    assert ("x", "Affine", "(6, 5)", None) in drawn_edges(run_.dot())  # the data: no gradient
    assert run_.input_gradients() == {"x": None, "t": None}


def test_input_gradients_name_every_named_input():
    mul, a, b, unused = layers.Mul(), 2.0, 3.0, 4.0
    with graph.record([mul], inputs={"a": a, "b": b, "unused": unused}) as run_:
        mul.forward(a, b)
        mul.backward(1)
    assert run_.input_gradients() == {"a": 3.0, "b": 2.0, "unused": None}


def test_arrays_are_recorded_as_shape_norm_min_and_max(xp):
    a = np.random.default_rng(6).standard_normal((3, 4))
    value = graph.Value.of(backend.to_device(a, dtype="float64", xp=xp))
    assert value.shape == (3, 4) and value.number is None
    assert value.norm == pytest.approx(np.linalg.norm(a), rel=1e-12)
    assert (value.min, value.max) == (a.min(), a.max())
    assert graph.Value.of(backend.to_device(2.5, dtype="float64", xp=xp)).number == 2.5


def test_a_forward_only_recording_draws_parameters_without_gradients():
    affine = layers.Affine(np.ones((4, 3)), np.zeros(3))
    x = np.ones((2, 4))
    with graph.record([affine], inputs={"x": x}) as run:
        affine.forward(x)
    assert drawn_edges(run.dot()) == {
        ("x", "Affine", "(2, 4)", None), ("W", "Affine", "(4, 3)", None),
        ("b", "Affine", "(3,)", None), ("Affine", "", "(2, 3)", None),
    }  # fmt: skip


def test_recording_changes_no_result(xp):
    rng = np.random.default_rng(0)
    x = backend.to_device(rng.random((6, 5)), dtype="float64", xp=xp)
    t = backend.to_device(rng.integers(0, 3, 6), dtype="int64", xp=xp)
    plain, recorded = (MultiLayerNet(5, [4], 3, dtype="float64", seed=2, xp=xp) for _ in "ab")
    expected = plain.gradient(x, t)
    run_ = graph.record_network(recorded, x, t)
    got = recorded.gradient(x, t)
    for name, grad in expected.items():
        np.testing.assert_array_equal(backend.to_numpy(got[name]), backend.to_numpy(grad))
    assert float(run_.output) == float(plain.last_layer.forward(plain.predict(x), t))


def test_recording_leaves_running_statistics_and_dropout_draws_as_they_were(xp):
    # Drawing a trained network's graph moved BatchNorm's running mean, and the masks of
    # its next Dropout step.
    rng = np.random.default_rng(0)
    x = backend.to_device(rng.random((6, 5)), dtype="float64", xp=xp)
    t = backend.to_device(rng.integers(0, 3, 6), dtype="int64", xp=xp)
    plain, recorded = (
        MultiLayerNet(5, [4], 3, use_batchnorm=True, use_dropout=True, dtype="float64",
                      seed=2, xp=xp)
        for _ in "ab"
    )  # fmt: skip
    graph.record_network(recorded, x, t)
    expected, got = plain.gradient(x, t), recorded.gradient(x, t)
    for name, grad in expected.items():
        np.testing.assert_array_equal(backend.to_numpy(got[name]), backend.to_numpy(grad))
    for a, b in zip(plain.layers, recorded.layers, strict=True):
        for buffer in getattr(a, "buffers", ()):
            np.testing.assert_array_equal(
                backend.to_numpy(getattr(b, buffer)), backend.to_numpy(getattr(a, buffer))
            )


def layer_states(net):
    """Every attribute of every layer of ``net`` but its generator, arrays on the host."""
    return [
        {
            name: backend.to_numpy(value) if hasattr(value, "shape") else value
            for name, value in vars(layer).items()
            if name != "rng"
        }
        for layer in [*net.layers, net.last_layer]
    ]


def test_recording_in_eval_mode_leaves_the_layers_as_the_plain_eval_pass_does(xp):
    # Dropout's mask is None afterwards, as after net.gradient(x, t, train_flg=False): its
    # backward in evaluation mode scales by 1 - ratio, which a training mask kept would not.
    (plain, x, t), (recorded, _, _) = batchnorm_dropout_net(xp), batchnorm_dropout_net(xp)
    for net in (plain, recorded):
        net.gradient(x, t)  # a training step first: a mask and caches to overwrite
    plain.gradient(x, t, train_flg=False)
    graph.record_network(recorded, x, t, train_flg=False)
    expected, got = layer_states(plain), layer_states(recorded)
    for want, have in zip(expected, got, strict=True):
        assert want.keys() == have.keys()
        for name, value in want.items():
            np.testing.assert_array_equal(have[name], value, err_msg=name)
    assert [layer.mask for layer in recorded.layers if isinstance(layer, layers.Dropout)] == [None]


class Mode:
    """The identity, noting the ``train_flg`` it got (a stand-in for Dropout)."""

    def forward(self, x, train_flg=True):
        self.train_flg = train_flg
        return x

    def backward(self, dout):
        return dout


def test_any_sequential_is_drawn_and_its_layers_still_get_train_flg(cpu_xp):
    rng = np.random.default_rng(4)
    x, W, b = (
        backend.to_device(rng.random(shape), dtype="float64", xp=cpu_xp)
        for shape in ((5, 4), (4, 3), (3,))
    )
    t = backend.to_device([0, 1, 2, 0, 1], dtype="int64", xp=cpu_xp)
    mode = Mode()
    net = Sequential([layers.Affine(W, b), mode], loss=layers.SoftmaxWithLoss())
    edges = {(s, d, f) for s, d, f, _ in drawn_edges(graph.record_network(net, x, t).dot())}
    assert mode.train_flg is True
    assert edges >= {
        ("x", "Affine", "(5, 4)"),
        ("W1", "Affine", "(4, 3)"),
        ("b1", "Affine", "(3,)"),
    }
    assert edges >= {("Affine", "Mode", "(5, 3)"), ("Mode", "SoftmaxWithLoss", "(5, 3)")}

    mul, add, other = layers.Mul(), layers.Add(), layers.Mul()
    with pytest.raises(ZeroDivisionError), graph.record([mul, add]):
        assert "forward" in vars(mul) and "backward" in vars(add)
        add.forward(mul.forward(1, 2), 1 / 0)
    for node in (mul, add, other):
        assert "forward" not in vars(node) and "backward" not in vars(node)
    assert mul.forward.__func__ is layers.Mul.forward
    assert add.backward.__func__ is layers.Add.backward


class BookRelu:
    """The book's ``Relu`` (common/layers.py): its backward writes into the ``dout`` it got."""

    def forward(self, x):
        self.mask = x <= 0
        out = backend.namespace_of(x).asarray(x, copy=True)
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout[self.mask] = 0
        return dout


def test_a_gradient_that_backward_writes_into_is_drawn_as_it_came(xp):
    # The book's Relu zeroes dout in place: its incoming gradient was drawn already masked.
    relu = BookRelu()
    x = backend.to_device([-1.0, 2.0], dtype="float64", xp=xp)
    dout = backend.to_device([3.0, 4.0], dtype="float64", xp=xp)
    with graph.record([relu], inputs={"x": x}) as run:
        relu.forward(x)
        relu.backward(dout)
    (call,) = run.calls
    assert (call.dout.norm, call.dout.min, call.dout.max) == (5.0, 3.0, 4.0)
    assert (call.dinputs[0].norm, call.dinputs[0].min, call.dinputs[0].max) == (4.0, 0.0, 4.0)


class AddOneInPlace:
    """``x += 1``: a forward that writes into its input."""

    def forward(self, x):
        x += 1
        return x

    def backward(self, dout):
        return dout


def test_an_input_that_forward_writes_into_is_drawn_as_it_came(xp):
    node = AddOneInPlace()
    x = backend.to_device([1.0, 2.0], dtype="float64", xp=xp)
    with graph.record([node], inputs={"x": x}) as run:
        node.forward(x)
    (call,) = run.calls
    assert (call.input_values[0].min, call.input_values[0].max) == (1.0, 2.0)
    assert (call.output_value.min, call.output_value.max) == (2.0, 3.0)


@pytest.mark.parametrize("by", ["position", "keyword"])
def test_a_node_in_eval_mode_says_so_and_its_mode_is_no_input(xp, by):
    # dropout.forward(x, False) drew the False as a constant input "0"; and Dropout in eval
    # mode was drawn as in training.
    dropout, x = layers.Dropout(0.5), backend.to_device(np.ones((2, 3)), dtype="float64", xp=xp)
    with graph.record([dropout], inputs={"x": x}) as run:
        y = dropout.forward(x, False) if by == "position" else dropout.forward(x, train_flg=False)
        dropout.backward(backend.to_device(np.ones((2, 3)), dtype="float64", xp=xp))
    eval_mode = "Dropout\\ntrain_flg=False"
    assert drawn_edges(run.dot()) == {
        ("x", eval_mode, "(2, 3)", "‖·‖ 1.22"), (eval_mode, "", "(2, 3)", "‖·‖ 2.45"),
    }  # fmt: skip
    np.testing.assert_array_equal(backend.to_numpy(y), np.full((2, 3), 0.5))  # x * (1 - 0.5)


def test_a_node_in_training_mode_keeps_its_label_and_its_mode_is_no_input(xp):
    dropout, x = layers.Dropout(0.5), backend.to_device(np.ones((2, 3)), dtype="float64", xp=xp)
    with graph.record([dropout], inputs={"x": x}) as run:
        dropout.forward(x, True)
    assert {(s, d) for s, d, _, _ in drawn_edges(run.dot())} == {("x", "Dropout"), ("Dropout", "")}


def test_a_recorded_forward_keeps_its_signature():
    # Sequential passes train_flg to layers whose forward takes it, found by the signature.
    relu = layers.ReLU()
    original = inspect.signature(relu.forward)
    with graph.record([relu]):
        assert inspect.signature(relu.forward) == original


def test_a_named_input_used_twice_is_one_leaf_with_the_summed_gradient():
    square, x = layers.Mul(), 3.0
    with graph.record([square], inputs={"x": x}) as run:
        square.forward(x, x)
        square.backward(1)
    assert run.input_gradients() == {"x": 6.0}
    assert drawn_edges(run.dot()) == {("x", X, "3", "3"), (X, "", "9", "1")}


def test_a_backward_belongs_to_the_latest_forward_of_its_node():
    mul = layers.Mul()
    a, b, c, d = 2.0, 3.0, 4.0, 5.0
    with graph.record([mul], inputs={"a": a, "b": b, "c": c, "d": d}) as run:
        mul.forward(a, b)
        mul.forward(c, d)  # Mul keeps only these inputs: backward differentiates c * d
        mul.backward(1)
    # d(c*d)/dc = d = 5, d(c*d)/dd = c = 4; the first forward got no backward
    assert run.input_gradients() == {"a": None, "b": None, "c": 5.0, "d": 4.0}


def test_a_node_used_twice_gets_each_backward_for_its_forwards_in_reverse_order():
    add, mul = layers.Add(), layers.Mul()
    with graph.record([add, mul], inputs={"a": 1.0, "b": 2.0, "c": 3.0}) as run:
        u = add.forward(add.forward(1.0, 2.0), 3.0)  # (a + b) + c
        mul.forward(u, 10.0)
        du, _ = mul.backward(1.0)
        ds, _ = add.backward(du)  # answers the second add
        add.backward(ds)  # answers the first add
    assert [call.dout for call in run.calls] == [graph.Value(number=n) for n in (10.0, 10.0, 1.0)]
    assert run.input_gradients() == {"a": 10.0, "b": 10.0, "c": 10.0}


def test_a_backward_without_a_forward_left_to_answer_is_refused():
    mul = layers.Mul()
    with graph.record([mul]):
        mul.forward(2.0, 3.0)
        mul.backward(1.0)
        with pytest.raises(RuntimeError, match=r"Mul\.backward .*no forward call .*left"):
            mul.backward(1.0)


class MulForgettingDy(layers.Mul):
    """A student's multiplication node whose ``backward`` returns ``dx`` alone."""

    def backward(self, dout=1):
        return dout * self.y


def test_a_two_input_node_whose_backward_returns_one_gradient_is_refused():
    mul = MulForgettingDy()
    with graph.record([mul], inputs={"apple": 100, "apple_num": 2}):
        mul.forward(100, 2)
        with pytest.raises(
            ValueError,
            match=r"MulForgettingDy node 0: backward returned one gradient for its 2 inputs: "
            r"return one for each, as a tuple \(dx, dy\)",
        ):
            mul.backward(1)


def test_a_node_called_twice_keeps_both_calls_gradients():
    # A Sequential refuses one layer object twice (its caches would clash); a graph of
    # nodes may call one twice, as the book's square x * x does.
    rng = np.random.default_rng(5)
    W1, b1, W2, b2 = (rng.standard_normal(s) for s in ((4, 3), (3,), (3, 3), (3,)))
    affine1, affine2, relu = layers.Affine(W1, b1), layers.Affine(W2, b2), layers.ReLU()
    with graph.record([affine1, relu, affine2]) as run_:
        relu.forward(affine2.forward(relu.forward(affine1.forward(rng.standard_normal((5, 4))))))
        affine1.backward(relu.backward(affine2.backward(relu.backward(np.ones((5, 3))))))
    first, relu1, affine2_, relu2 = run_.calls
    assert relu1.dout is not None and relu2.dout is not None
    assert relu1.dinputs[0] == first.dout  # what the first ReLU call passed back
    assert relu2.dinputs[0] == affine2_.dout


def test_one_object_with_several_names_gives_them_in_order_of_use():
    a, b = 5.0, 7.0
    w1 = w2 = -3.0  # Python may share equal constants, as CPython does within one function
    mul1, mul2 = layers.Mul(), layers.Mul()
    with graph.record([mul1, mul2], inputs={"a": a, "b": b, "w1": w1, "w2": w2}) as run:
        mul1.forward(w1, a)
        mul2.forward(w2, b)
        mul1.backward(1)
        mul2.backward(1)
    assert run.input_gradients() == {"w1": 5.0, "a": -3.0, "w2": 7.0, "b": -3.0}


def test_recording_a_node_that_is_already_being_recorded_is_refused():
    mul = layers.Mul()
    with (
        graph.record([mul]),
        pytest.raises(ValueError, match="Mul node 0 already has an instance attribute"),
        graph.record([mul]),  # the same node again, while the first recording runs
    ):
        pass


def batchnorm_dropout_net(xp):
    """A 5-4-3 network with BatchNorm (running statistics away from their initial zeros)
    and Dropout (ratio 0.3), and a batch of 6 to run it on."""
    rng = np.random.default_rng(0)
    x = dev(xp, rng.random((6, 5)))
    t = backend.to_device(rng.integers(0, 3, 6), dtype="int64", xp=xp)
    net = MultiLayerNet(5, [4], 3, use_batchnorm=True, use_dropout=True, dropout_ratio=0.3,
                        dtype="float64", seed=2, xp=xp)  # fmt: skip
    net.layers[1].running_mean = dev(xp, rng.standard_normal(4))
    net.layers[1].running_var = dev(xp, rng.random(4) + 0.5)
    return net, x, t


def call_of(run_, cls):
    """The recorded call of the node of class ``cls`` (one in the network)."""
    return next(call for call in run_.calls if isinstance(run_.nodes[call.node], cls))


def test_eval_mode_records_the_scores_and_loss_of_predict(xp):
    net, x, t = batchnorm_dropout_net(xp)
    run_ = graph.record_network(net, x, t, train_flg=False)
    scores = call_of(run_, layers.SoftmaxWithLoss).inputs[0]
    expected = net.predict(x, train_flg=False)
    np.testing.assert_array_equal(backend.to_numpy(scores), backend.to_numpy(expected))
    assert float(run_.output) == float(net.loss(x, t, train_flg=False))
    assert [call.train_flg for call in run_.calls if call.train_flg is not None] == [False] * 2


def test_dropout_in_eval_mode_scales_where_training_mode_masks(xp):
    net, x, t = batchnorm_dropout_net(xp)
    evaluated = call_of(graph.record_network(net, x, t, train_flg=False), layers.Dropout)
    trained = call_of(graph.record_network(net, x, t), layers.Dropout)
    got_in, got_out = (backend.to_numpy(a) for a in (evaluated.inputs[0], evaluated.output))
    np.testing.assert_allclose(got_out, 0.7 * got_in, rtol=1e-15)  # the kept fraction
    train_in, train_out = (backend.to_numpy(a) for a in (trained.inputs[0], trained.output))
    assert np.all((train_out == train_in) | (train_out == 0))  # a mask, unscaled
    assert np.any((train_out == 0) & (train_in != 0))
    assert not np.allclose(train_out, got_out)


def test_eval_mode_of_a_network_whose_gradient_takes_no_train_flg_is_refused_by_name(xp):
    net, x, t = batchnorm_dropout_net(xp)

    class BookNet:  # the book's networks: gradient(x, t), always in training mode
        layers, last_layer, params = net.layers, net.last_layer, net.params

        def gradient(self, x, t):
            return net.gradient(x, t)

    with pytest.raises(TypeError, match=r"BookNet.gradient\(x, t\) takes no train_flg"):
        graph.record_network(BookNet(), x, t, train_flg=False)
    assert graph.record_network(BookNet(), x, t).calls  # training mode records it


def test_a_stack_without_loss_is_refused_saying_so(xp):
    net, x, t = batchnorm_dropout_net(xp)
    stack = net[:2]  # a slice: a Sequential without loss, as torch's model[:2]
    expected = r"records net\.gradient\(x, t\), and this Sequential has no loss: .* stack"
    with pytest.raises(TypeError, match=expected):
        graph.record_network(stack, x, t)


def test_a_node_with_slots_is_refused_naming_what_to_add():
    class Slotted:  # a node of the user's, without a __dict__
        __slots__ = ("x",)

        def forward(self, x):
            self.x = x
            return 2 * x

        def backward(self, dout):
            return 2 * dout

    with (
        pytest.raises(TypeError, match=r"Slotted node 0 has __slots__ .* add '__dict__'"),
        graph.record([Slotted()]),
    ):
        pass


def test_cli_net_in_eval_mode_draws_the_evaluation_pass(capsys, digits):
    argv = ["graph", "net", "--hidden", "4", "--batchnorm", "--dropout", "0.5", "--batch-size", "3"]
    assert run([*argv, "--eval"]) == 0
    dot = capsys.readouterr().out
    assert "3 mnist-5k samples: one forward and backward pass in evaluation mode" in dot
    assert "BatchNormalization\\ntrain_flg=False" in dot
    assert "Dropout\\ntrain_flg=False" in dot
    assert run(argv) == 0
    dot = capsys.readouterr().out
    assert "train_flg=False" not in dot and "evaluation mode" not in dot


def test_cli_refuses_eval_for_a_graph_other_than_net(capsys):
    assert run(["graph", "apple-orange", "--eval"]) == 2
    assert "--eval: the network flags apply to graph net only" in capsys.readouterr().err


def test_a_network_given_as_nodes_is_refused_naming_record_network():
    # A Sequential iterates over its layers: recorded so, it would lose its loss and names.
    with (
        pytest.raises(TypeError, match=r"got a MultiLayerNet network: record_network\(net, x, t\)"),
        graph.record(MultiLayerNet(4, [3], 2)),
    ):
        pass


def test_a_named_number_that_may_be_a_shared_constant_is_warned_about():
    # x = 1.0 and the sigmoid's "+ 1.0" are one object when Python shares the constant:
    # the + node's 1 was drawn as x, and x's gradient summed in the +'s, without a word.
    exp, add, x = layers.Exp(), layers.Add(), 1.0
    with (
        pytest.warns(UserWarning, match=r"^x = 1\.0 was drawn for 2 inputs of several nodes"),
        graph.record([exp, add], inputs={"x": x}),
    ):
        add.forward(exp.forward(x), x)  # the second x: the object a shared 1.0 would be


def test_a_named_number_used_twice_by_one_node_is_not_warned_about(recwarn):
    square, x = layers.Mul(), 3.0
    with graph.record([square], inputs={"x": x}):
        square.forward(x, x)
    assert not recwarn.list


def test_a_named_0d_array_used_by_several_nodes_is_not_warned_about(xp, recwarn):
    exp, add = layers.Exp(), layers.Add()
    x = backend.to_device(1.0, dtype="float64", xp=xp)
    with graph.record([exp, add], inputs={"x": x}):
        add.forward(exp.forward(x), x)
    assert not recwarn.list


def test_unnamed_constants_are_drawn_as_their_value():
    mul = layers.Mul()
    with graph.record([mul]) as run:
        mul.forward(4, -1)
        mul.backward(1)
    assert drawn_edges(run.dot()) == {
        ("4", X, "4", "-1"), ("-1", X, "-1", "4"), (X, "", "-4", "1"),
    }  # fmt: skip


def test_unnamed_constants_are_drawn_in_the_number_format_of_their_edges():
    # Constants were drawn with {:g}: the leaf read 0.666667 and its edge 0.6667.
    mul = layers.Mul()
    with graph.record([mul]) as run:
        mul.forward(2 / 3, -1)
        mul.backward(1)
    assert drawn_edges(run.dot()) == {
        ("0.6667", X, "0.6667", "-1"), ("-1", X, "-1", "0.6667"), (X, "", "-0.6667", "1"),
    }  # fmt: skip
    run.number_format = "{:.2f}"
    assert drawn_edges(run.dot()) == {
        ("0.67", X, "0.67", "-1.00"), ("-1.00", X, "-1.00", "0.67"), (X, "", "-0.67", "1.00"),
    }  # fmt: skip


def test_integers_are_drawn_as_written(xp):
    # 12345 yen read 1.234e+04: every number was drawn with {:.4g}.
    mul, price, count = layers.Mul(), 12345, dev(xp, 2, "int32")
    with graph.record([mul], inputs={"price": price, "count": count}) as run:
        mul.forward(price, count)
        mul.backward(1)
    assert drawn_edges(run.dot()) == {
        ("price", X, "12345", "2"), ("count", X, "2", "12345"), (X, "", "24690", "1"),
    }  # fmt: skip


def test_floats_holding_an_integer_below_a_million_are_drawn_as_integers(xp):
    mul, x, y = layers.Mul(), dev(xp, 123456.0), dev(xp, 0.5)
    with graph.record([mul], inputs={"x": x, "y": y}) as run:
        mul.forward(x, y)
        mul.backward(dev(xp, 1e6))
    assert drawn_edges(run.dot()) == {
        ("x", X, "123456", "500000"), ("y", X, "0.5", "1.235e+11"), (X, "", "61728", "1e+06"),
    }  # fmt: skip


def test_a_number_format_of_ones_own_applies_to_integers_too():
    mul, price = layers.Mul(), 12345
    with graph.record([mul], inputs={"price": price}) as run:
        mul.forward(price, 2)
    run.number_format = "{:.4g}"
    assert ("price", X, "1.234e+04", None) in drawn_edges(run.dot())


def png_width(data):
    """A PNG's width in pixels, from its header (the IHDR chunk's first field)."""
    assert data.startswith(PNG_SIGNATURE)
    return struct.unpack(">I", data[16:20])[0]


@needs_dot
def test_dpi_scales_a_pngs_pixels_and_leaves_svg_as_it_is():
    dot = graph.apple().dot()
    default, sharp = (png_width(graph.render(dot, "png", dpi=d)) for d in (None, 300))
    assert sharp / default == pytest.approx(300 / 96, rel=0.01)
    assert graph.render(dot, "svg", dpi=300) == graph.render(dot, "svg")


@needs_dot
def test_dpi_wins_over_the_dpi_of_the_dot_text():
    dot = graph.apple().dot().replace("rankdir=LR;", "rankdir=LR; dpi=48;")
    assert png_width(graph.render(dot, "png", dpi=96)) == png_width(
        graph.render(graph.apple().dot(), "png")
    )


@pytest.mark.parametrize("dpi", [0, -1, math.nan, "300", 10**400])  # 10**400: no float
def test_a_dpi_that_is_not_a_positive_number_is_refused_naming_it(dpi, tmp_path):
    with pytest.raises(ValueError, match=rf"dpi must be a positive number .*got {dpi!r}$"):
        graph.write(graph.apple().dot(), tmp_path / "g.png", dpi=dpi)
    assert not (tmp_path / "g.png").exists()


@needs_dot
def test_cli_dpi_scales_the_png(tmp_path):
    default, sharp = tmp_path / "default.png", tmp_path / "sharp.png"
    assert run(["graph", "apple", "-o", str(default)]) == 0
    assert run(["graph", "apple", "-o", str(sharp), "--dpi", "300"]) == 0
    ratio = png_width(sharp.read_bytes()) / png_width(default.read_bytes())
    assert ratio == pytest.approx(300 / 96, rel=0.01)


@pytest.mark.parametrize("dpi", ["0", "-1", "abc"])
def test_cli_refuses_a_dpi_that_is_not_a_positive_number(dpi, tmp_path, capsys):
    assert run(["graph", "apple", "-o", str(tmp_path / "g.png"), f"--dpi={dpi}"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(
        f"xpnet graph: error: argument --dpi: expected a positive number, got {dpi!r}\n"
    )
    assert not (tmp_path / "g.png").exists()


@needs_dot
@pytest.mark.parametrize("name", graph.NAMED)
def test_named_graphs_render_png_pdf_and_svg(name, tmp_path):
    dot = graph.NAMED[name]().dot()
    graph.write(dot, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes().startswith(PNG_SIGNATURE)
    graph.write(dot, tmp_path / "g.pdf")  # .pdf was refused: "cannot tell the format"
    assert (tmp_path / "g.pdf").read_bytes().startswith(PDF_SIGNATURE)
    graph.write(dot, tmp_path / "g.svg")
    assert ET.parse(tmp_path / "g.svg").getroot().tag == "{http://www.w3.org/2000/svg}svg"


@needs_dot
@pytest.mark.parametrize("name", ["apple", "apple-orange", "sigmoid-neuron", "net"])
def test_cli_renders_every_named_graph(name, tmp_path, digits):
    small = ["--hidden", "8", "--batch-size", "10"] if name == "net" else []
    assert run(["graph", name, "-o", str(tmp_path / "g.png"), *small]) == 0
    assert (tmp_path / "g.png").read_bytes().startswith(PNG_SIGNATURE)
    assert run(["graph", name, "-o", str(tmp_path / "g.pdf"), *small]) == 0
    assert (tmp_path / "g.pdf").read_bytes().startswith(PDF_SIGNATURE)
    assert run(["graph", name, "--format", "pdf", "-o", str(tmp_path / "g"), *small]) == 0
    assert (tmp_path / "g").read_bytes().startswith(PDF_SIGNATURE)
    assert run(["graph", name, "--format", "svg", "-o", str(tmp_path / "g.out"), *small]) == 0
    assert ET.parse(tmp_path / "g.out").getroot().tag == "{http://www.w3.org/2000/svg}svg"


@needs_dot
def test_leaf_names_with_quotes_and_backslashes_are_drawn(tmp_path):
    # A quote in an input's name ended the DOT node's name: stray nodes, the leaf unjoined
    # (or, with a trailing backslash, Graphviz's syntax error).
    mul, a, b = layers.Mul(), 2.0, 3.0
    with graph.record([mul], inputs={'price "net"': a, "c:\\b": b}) as run:
        mul.forward(a, b)
    graph.write(run.dot(), tmp_path / "g.svg")
    svg = "{http://www.w3.org/2000/svg}"
    texts = {t.text for t in ET.parse(tmp_path / "g.svg").iter(f"{svg}text")}
    assert texts == {'price "net"', "c:\\b", X, "2", "3", "6"}  # and no stray nodes


def test_cli_prints_dot_without_output_path(capsys):
    assert run(["graph", "apple-orange"]) == 0
    out = capsys.readouterr().out
    assert out == graph.apple_orange().dot()


def test_cli_refuses_network_flags_for_a_graph_other_than_net(capsys):
    # They were ignored without a word.
    assert run(["graph", "apple", "--hidden", "10", "--dtype", "float64"]) == 2
    err = capsys.readouterr().err
    assert "--hidden, --dtype: the network flags apply to graph net only" in err


def test_cli_net_follows_the_train_flags(capsys, digits):
    argv = ["graph", "net", "--hidden", "6", "--hidden", "4", "--activation", "tanh"]
    assert run([*argv, "--batch-size", "12", "--seed", "3"]) == 0
    dot = capsys.readouterr().out
    assert "784-6-4-10 tanh, softmax-ce loss, 12 mnist-5k samples" in dot
    edges = {(s, d, f) for s, d, f, _ in drawn_edges(dot)}
    assert edges >= {("W1", "Affine", "(784, 6)"), ("W2", "Affine", "(6, 4)")}
    assert edges >= {("W3", "Affine", "(4, 10)"), ("x", "Affine", "(12, 784)")}
    assert edges >= {("Affine", "Tanh", "(12, 6)"), ("Affine", "Tanh", "(12, 4)")}


def test_cli_net_with_a_batch_larger_than_the_data_draws_every_sample(capsys, digits):
    assert run(["graph", "net", "--hidden", "3", "--batch-size", "5000"]) == 0
    dot = capsys.readouterr().out
    # mnist-5k trains on 4,000 samples: the batch is all of them, and the title says so
    assert "784-3-10 relu, softmax-ce loss, 4000 mnist-5k samples" in dot
    assert ("x", "Affine", "(4000, 784)") in {(s, d, f) for s, d, f, _ in drawn_edges(dot)}


def test_cli_net_refuses_mlp_flags_for_the_convnet_as_train_does(capsys):
    assert run(["graph", "net", "--model", "convnet", "--activation", "tanh"]) == 2
    assert "--activation: not settings of the book's convnet" in capsys.readouterr().err


def test_cli_net_takes_the_loss_and_targets_of_training(capsys, digits):
    argv = ["graph", "net", "--hidden", "5", "--loss", "mse", "--target-range", "0.1,0.9"]
    assert run([*argv, "--batch-size", "7"]) == 0
    edges = {(s, d, f) for s, d, f, _ in drawn_edges(capsys.readouterr().out)}
    assert edges >= {
        ("Affine", "MeanSquaredError", "(7, 10)"),
        ("t", "MeanSquaredError", "(7, 10)"),
    }


def test_without_dot_png_and_svg_say_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without Graphviz's dot
    dot = graph.apple().dot()
    assert graph.render(dot, "dot") == dot.encode()
    for fmt in ("png", "svg"):
        with pytest.raises(graph.GraphvizUnavailableError, match="apt-get install graphviz"):
            graph.write(dot, tmp_path / f"apple.{fmt}")
        assert not (tmp_path / f"apple.{fmt}").exists()
    assert run(["graph", "apple", "-o", str(tmp_path / "apple.png")]) == 2
    assert "apt-get install graphviz" in capsys.readouterr().err


def test_without_dot_the_command_says_so_before_loading_any_data(tmp_path, monkeypatch, capsys):
    # It loaded the data set and ran the network first: here, a missing folder of IDX files.
    monkeypatch.setenv("PATH", str(tmp_path))
    argv = ["graph", "net", "--dataset", "mnist", "--data-dir", str(tmp_path / "absent")]
    assert run([*argv, "-o", str(tmp_path / "net.svg")]) == 2
    err = capsys.readouterr().err
    assert "needs Graphviz's dot program, which is not on PATH" in err and "absent" not in err


@needs_dot
def test_a_recording_displays_in_a_notebook_as_its_drawing(xp):
    # A Recording left last in a Jupyter cell showed <xpnet.graph.Recording object at 0x...>.
    bundle = mul_of_two_vectors(xp)._repr_mimebundle_()
    assert list(bundle) == ["image/svg+xml"]
    svg = ET.fromstring(bundle["image/svg+xml"])
    texts = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    assert texts == {"x", "y", X, "(2,)", "[3, 0.5]", "[1, -2]", "[1, 1]"}  # [1, 1]: dout


@needs_dot
def test_a_notebook_drawing_of_a_forward_without_backward_says_so_in_its_title():
    # A notebook showed only the drawing: the repr's "0 answered by backward" went unseen.
    mul, a, b = layers.Mul(), 2.0, 3.0
    with graph.record([mul], inputs={"a": a}) as run:
        mul.forward(a, b)
    svg = ET.fromstring(run._repr_mimebundle_()["image/svg+xml"])
    texts = " ".join(t.text for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    assert "1 of 1 forward call not answered by backward" in texts, texts


@needs_dot
def test_a_notebook_drawing_of_a_whole_run_has_no_title():
    svg = ET.fromstring(graph.apple()._repr_mimebundle_()["image/svg+xml"])
    texts = " ".join(t.text for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    assert "answered" not in texts


def test_a_recording_of_nothing_displays_as_text_saying_so():
    # An empty with block displayed as a blank 8x8 pt drawing.
    with graph.record([layers.Mul()]) as run:
        pass
    bundle = run._repr_mimebundle_()
    assert list(bundle) == ["text/plain"]
    assert bundle["text/plain"] == (
        f"{run!r}\nNothing to draw: no node's forward ran inside the block"
    )


def test_a_display_that_asks_for_text_only_draws_nothing():
    # display(run, include=["text/plain"]) asks for text only: the repr, without running dot.
    assert graph.apple()._repr_mimebundle_(include={"text/plain"}) is None
    assert graph.apple()._repr_mimebundle_(exclude={"image/svg+xml"}) is None


def test_without_dot_a_recording_displays_as_text_saying_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without Graphviz's dot
    run = graph.apple()
    bundle = run._repr_mimebundle_()  # IPython shows a traceback for a display that raises
    assert list(bundle) == ["text/plain"]
    text = bundle["text/plain"]
    assert text.startswith(f"{run!r}\nNot drawn: ")
    assert "dot program, which is not on PATH" in text and "apt-get install graphviz" in text


def test_a_recording_repr_names_its_nodes_calls_and_inputs():
    assert repr(graph.apple_orange()) == (
        f"<Recording: 4 nodes ({X}, {X}, +, {X}), 4 forward calls, 4 answered by backward; "
        "inputs: apple, apple_num, orange, orange_num, tax>"
    )


def test_a_recording_repr_counts_forward_calls_that_backward_did_not_answer():
    mul, a, b = layers.Mul(), 2.0, 3.0
    with graph.record([mul], inputs={"a": a}) as run:
        mul.forward(a, b)
    assert (
        repr(run) == f"<Recording: 1 node ({X}), 1 forward call, 0 answered by backward; inputs: a>"
    )


def test_a_recording_repr_of_a_deep_network_elides_the_middle_layers():
    net = MultiLayerNet(4, [3] * 5, 2, dtype="float64", seed=0, device="cpu")
    x, t = np.ones((2, 4)), np.array([0, 1])
    assert repr(graph.record_network(net, x, t)) == (
        "<Recording: 12 nodes (Affine, ReLU, Affine, ReLU, ..., Affine, SoftmaxWithLoss), "
        "12 forward calls, 12 answered by backward; inputs: x, t>"
    )


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_dot_text_that_graphviz_cannot_read_is_its_message_not_a_traceback(tmp_path):
    expected = r"Graphviz's dot cannot draw this DOT text as svg: .*line"
    with pytest.raises(ValueError, match=expected):
        graph.write("digraph { a -> }", tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


def test_unknown_graph_name_lists_the_known_ones(capsys):
    assert run(["graph", "pear"]) == 2
    err = capsys.readouterr().err
    assert "pear" in err
    assert all(name in err for name in ("apple", "apple-orange", "sigmoid-neuron", "net"))


def test_a_binary_format_is_refused_on_a_terminal():
    # --format png without -o was refused even with stdout redirected to a file.
    primary, replica = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "xpnet", "graph", "apple", "--format", "png"],
            stdout=replica,
            stderr=subprocess.PIPE,
            check=False,
        )
    finally:
        os.close(replica)
        os.close(primary)
    assert done.returncode == 2
    assert done.stderr.decode() == (
        "xpnet graph: error: --format png is binary, not for a terminal: give -o PATH, "
        "redirect stdout (> g.png, or a pipe), or -o - to write it to the terminal all the same\n"
    )


@needs_dot
@pytest.mark.parametrize("fmt", ["png", "pdf"])
def test_a_binary_format_goes_to_stdout_that_is_no_terminal(fmt, capsysbinary):
    assert run(["graph", "apple", "--format", fmt]) == 0
    assert capsysbinary.readouterr().out.startswith(SIGNATURES[fmt])


@needs_dot
@pytest.mark.parametrize("fmt", graph.FORMATS)
def test_output_dash_writes_every_format_to_stdout(fmt, tmp_path, monkeypatch, capsysbinary):
    # -o - wrote a file named "-".
    monkeypatch.chdir(tmp_path)
    assert run(["graph", "apple", "-o", "-", "--format", fmt]) == 0
    out = capsysbinary.readouterr().out
    if fmt == "dot":
        assert out.decode() == graph.apple().dot()
    else:
        assert out.startswith(SIGNATURES[fmt])
    assert list(tmp_path.iterdir()) == []


def test_unknown_suffix_or_format_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"apple\.gif.*\.dot, \.svg, \.png"):
        graph.write("digraph {}", tmp_path / "apple.gif")
    with pytest.raises(ValueError, match=r"'jpg'.*dot, svg, png"):
        graph.render("digraph {}", "jpg")


def test_a_format_that_contradicts_the_suffix_is_refused(tmp_path):
    # graph.write(dot, "g.png", format="svg") wrote SVG text into g.png.
    with pytest.raises(ValueError, match=r"format 'svg' contradicts the suffix of .*g\.png"):
        graph.write("digraph {}", tmp_path / "g.png", format="svg")
    assert list(tmp_path.iterdir()) == []
    graph.write("digraph {}", tmp_path / "g.DOT", format="dot")  # the same, in another case
    assert (tmp_path / "g.DOT").read_text() == "digraph {}"


def test_a_given_format_is_read_in_any_case(tmp_path):
    graph.write("digraph {}", tmp_path / "g", format="DOT")
    assert (tmp_path / "g").read_text() == "digraph {}"
    assert graph.render("digraph {}", "Dot") == b"digraph {}"


@needs_dot
def test_an_upper_case_svg_format_draws_svg(tmp_path):
    graph.write(graph.apple().dot(), tmp_path / "g", format="SVG")
    assert ET.parse(tmp_path / "g").getroot().tag == "{http://www.w3.org/2000/svg}svg"


def test_writing_to_a_directory_names_the_directory_given(tmp_path):
    folder = tmp_path / "g.dot"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=rf"^cannot write {re.escape(str(folder))}: it is"):
        graph.write("digraph {}", folder)
    assert list(folder.iterdir()) == [] and list(tmp_path.iterdir()) == [folder]


def test_a_format_that_contradicts_the_output_suffix_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "g.svg"
    assert run(["graph", "apple", "-o", str(out), "--format", "dot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpnet graph: error: --format dot") and f"-o {out}" in err
    assert err.count("\n") == 1
    assert not out.exists()


def test_an_output_suffix_of_another_format_is_a_usage_error(tmp_path, capsys):
    # -o g.gif wrote DOT text into g.gif; graph.write refuses such a name too.
    out = tmp_path / "g.gif"
    assert run(["graph", "apple", "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"xpnet graph: error: -o {out}: cannot tell the format from its suffix: expected one "
        "of .dot, .svg, .png, .pdf, or give --format\n"
    )
    assert not out.exists()
    assert run(["graph", "apple", "-o", str(tmp_path / "g"), "--format", "dot"]) == 0
    assert run(["graph", "apple", "-o", str(tmp_path / "g.txt"), "--format", "dot"]) == 0
    assert (tmp_path / "g.txt").read_text() == graph.apple().dot()


def test_a_format_matching_the_output_suffix_is_accepted(tmp_path):
    out = tmp_path / "g.DOT"
    assert run(["graph", "apple", "-o", str(out), "--format", "dot"]) == 0
    assert out.read_text() == graph.apple().dot()


def help_text(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere


def test_graph_help_says_nothing_about_training(capsys):
    text = help_text(capsys, "graph")
    for training_only in ("--resume", "epochs", "shuffling", "lr 0.001"):
        assert training_only not in text


def test_train_help_keeps_what_the_network_flags_mean_for_training(capsys):
    text = help_text(capsys, "train")
    for training in ("--resume: the checkpoint's", "Adam lr 0.001, 20 epochs", "shuffling"):
        assert training in text


def test_a_numpy_scalar_is_recorded_as_a_plain_number():
    recorded = graph.Value.of(np.float64(-0.5))
    assert type(recorded.number) is float and recorded.number == -0.5


def test_small_integers_that_python_shares_are_still_separate_leaves():
    # CS231n's f = (x + y) * z at x, y, z = 1, 2, 3: CPython's 1 + 2 *is* the object 3 of
    # z, so an edge found by identity alone drew (x + y) * (x + y) and lost the leaf z.
    x, y, z = 1, 2, 3
    add, mul = layers.Add(), layers.Mul()
    with graph.record([add, mul], inputs={"x": x, "y": y, "z": z}) as run:
        q = add.forward(x, y)
        f = mul.forward(q, z)
        dq, _dz = mul.backward(1)
        add.backward(dq)
    assert f == 9 and q == 3 and repr(q) == "3"
    assert run.input_gradients() == {"x": 3, "y": 3, "z": 3}
    assert drawn_edges(run.dot()) == {
        ("x", "+", "1", "3"), ("y", "+", "2", "3"), ("+", X, "3", "3"), ("z", X, "3", "3"),
        (X, "", "9", "1"),
    }  # fmt: skip


def test_exp_and_reciprocal_gates_take_python_floats():
    # 1 / (1 + exp(x)) at x = 0.5, gate by gate on plain floats, as Mul and Add take them.
    x = 0.5
    exp, add, reciprocal = layers.Exp(), layers.Add(), layers.Reciprocal()
    with graph.record([exp, add, reciprocal], inputs={"x": x}) as run:
        reciprocal.forward(add.forward(exp.forward(x), 1.0))
        d, _ = add.backward(reciprocal.backward(1.0))
        exp.backward(d)
    s = 1 / (1 + math.exp(x))
    assert run.output == pytest.approx(s)
    assert run.input_gradients()["x"] == pytest.approx(-s * s * math.exp(x))


def test_a_value_that_cannot_be_drawn_names_its_node(xp):
    # A forward returning two values failed with "cannot record a tuple", naming no node.
    class Split:
        def forward(self, x):
            return x, x

        def backward(self, dx1, dx2):
            return dx1 + dx2

    split = Split()
    with (
        pytest.raises(TypeError, match=r"^Split node 0, output: cannot record a tuple"),
        graph.record([split]),
    ):
        split.forward(backend.to_device([1.0, 2.0], dtype="float64", xp=xp))


def test_a_node_without_backward_is_named_before_recording():
    class Double:
        def forward(self, x):
            return 2 * x

    node = Double()
    with (
        pytest.raises(TypeError, match="Double node 0 has no backward method"),
        graph.record([node]),
    ):
        pass
    assert "forward" not in vars(node)


class _Scale:
    """A node with an optional positional argument: ``x * k``, k = 2 when left out."""

    def forward(self, x, k=None):
        self.k = 2.0 if k is None else k
        return x * self.k

    def backward(self, dout):
        return dout * self.k, None


def test_a_none_given_for_an_optional_argument_draws_no_edge(xp):
    # Its edge was looked up as a constant's value, and dot() raised AttributeError.
    scale, x = _Scale(), dev(xp, 3.0)
    with graph.record({scale: "scale"}, inputs={"x": x}) as run:
        scale.forward(x, None)
        scale.backward(dev(xp, 1.0))
    assert drawn_edges(run.dot()) == {("x", "scale", "3", "2"), ("scale", "", "6", "1")}
