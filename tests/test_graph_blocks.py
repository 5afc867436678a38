"""``xpnet.graph`` draws a layer made of layers (a nested Sequential, a residual block) as a
Graphviz cluster holding its inner layers, and backward edges dashed as well as red.

Expected gradients are central differences of NumPy float64 formulas (tests/numeric.py).
"""

import re
import shutil

import numpy as np
import pytest
from numeric import central_difference, dev
from test_nested import Residual

from xpnet import graph
from xpnet.backend import namespace_of, to_numpy
from xpnet.layers import Affine, ReLU, SoftmaxWithLoss, Tanh
from xpnet.networks import Sequential

RNG = np.random.default_rng(3)
W = {k: RNG.standard_normal(shape) for k, shape in enumerate([(4, 3), (3, 3), (3, 3), (3, 2)])}
B = {k: RNG.standard_normal(shape[1:]) for k, shape in enumerate([(4, 3), (3, 3), (3, 3), (3, 2)])}
X, T = RNG.standard_normal((1, 4)), np.array([1])


class Doubled:
    """``out = 2 * inner(x)``: a block whose output is no sum the recording could see."""

    sublayers = ("inner",)

    def __init__(self, inner):
        self.inner = inner

    def forward(self, x, train_flg=False):
        return 2 * self.inner.forward(x, train_flg)

    def backward(self, dout):
        return self.inner.backward(2 * dout)


class AddsInPlace:
    """``y = inner(x); y += x``: a residual block adding in place, as torchvision's ResNet."""

    sublayers = ("inner",)

    def __init__(self, inner):
        self.inner = inner

    def forward(self, x, train_flg=False):
        y = self.inner.forward(x, train_flg)
        y += x
        return y

    def backward(self, dout):
        return dout + self.inner.backward(dout)


class DoublesInPlace:
    """``y = inner(x); y *= 2``: an in-place change that is no sum."""

    sublayers = ("inner",)

    def __init__(self, inner):
        self.inner = inner

    def forward(self, x, train_flg=False):
        y = self.inner.forward(x, train_flg)
        y *= 2
        return y

    def backward(self, dout):
        return self.inner.backward(2 * dout)


class AddsIntoItsInput:
    """``x += inner(x)``: the block writes into the array the previous layer returned."""

    sublayers = ("inner",)

    def __init__(self, inner):
        self.inner = inner

    def forward(self, x, train_flg=False):
        x += self.inner.forward(x, train_flg)
        return x

    def backward(self, dout):
        return dout + self.inner.backward(dout)


class Gate:
    """``out = x * inner(x)``: the block's own code uses its input, a path not drawn."""

    sublayers = ("inner",)

    def __init__(self, inner):
        self.inner = inner

    def forward(self, x, train_flg=False):
        self.x, self.y = x, self.inner.forward(x, train_flg)
        return self.x * self.y

    def backward(self, dout):
        return dout * self.y + self.inner.backward(dout * self.x)


class ScalesBetween:
    """``second(2 * first(x))``, the doubling written in place between the two layers."""

    sublayers = ("first", "second")

    def __init__(self, first, second):
        self.first, self.second = first, second

    def forward(self, x, train_flg=False):
        y = self.first.forward(x)
        y *= 2
        return self.second.forward(y)

    def backward(self, dout):
        return self.first.backward(2 * self.second.backward(dout))


class Scaled:
    """``out = x + alpha * inner(x)``: a block with a parameter of its own (a layer scale)."""

    sublayers = ("inner",)
    params = ("alpha",)

    def __init__(self, inner, alpha):
        self.inner, self.alpha = inner, alpha

    def forward(self, x, train_flg=False):
        self.h = self.inner.forward(x, train_flg)
        return x + self.alpha * self.h

    def backward(self, dout):
        self.dalpha = namespace_of(dout).sum(dout * self.h, axis=0)
        return dout + self.inner.backward(dout * self.alpha)


class AddsThenActivates:
    """``out = relu(x + inner(x))``: ResNet v1's block, the add feeding a layer inside it."""

    sublayers = ("inner", "relu")

    def __init__(self, inner):
        self.inner, self.relu = inner, ReLU()

    def forward(self, x, train_flg=False):
        return self.relu.forward(x + self.inner.forward(x, train_flg))

    def backward(self, dout):
        dsum = self.relu.backward(dout)
        return dsum + self.inner.backward(dsum)


class PreActivated:
    """``h = act(x); out = h + inner(h)``: a pre-activation block, ``h`` used twice."""

    sublayers = ("act", "inner")

    def __init__(self, inner):
        self.act, self.inner = Tanh(), inner

    def forward(self, x, train_flg=False):
        h = self.act.forward(x)
        return h + self.inner.forward(h, train_flg)

    def backward(self, dout):
        return self.act.backward(dout + self.inner.backward(dout))


def affine(xp, k):
    return Affine(dev(xp, W[k]), dev(xp, B[k]))


def residual_net(xp, block=Residual):
    """Affine, block(Sequential(Affine, Tanh, Affine)), Affine, softmax loss."""
    inner = Sequential([affine(xp, 1), Tanh(), affine(xp, 2)])
    return Sequential([affine(xp, 0), block(inner), affine(xp, 3)], loss=SoftmaxWithLoss())


def recorded(xp, net):
    return graph.record_network(net, dev(xp, X), dev(xp, T, "int64"))


def clusters(dot):
    """``{cluster label: (labels of the nodes in it, its own clusters' labels)}``, the nodes
    of inner clusters included."""
    found, open_ = {}, []
    for line in dot.splitlines():
        if line.strip().startswith("subgraph cluster_"):
            open_.append(None)
        elif open_ and open_[-1] is None and (m := re.match(r'\s+label="([^"]*)";', line)):
            open_[-1] = m[1]
            found[m[1]] = ([], [])
            if len(open_) > 1:
                found[open_[-2]][1].append(m[1])
        elif open_ and line.strip() == "}":
            open_.pop()
        elif m := re.match(r'\s+"[^"]+" \[.*label="([^"]*)"\];$', line):
            for label in open_:
                found[label][0].append(m[1])
    return found


def test_a_residual_block_is_a_cluster_of_its_inner_layers_parameters_and_add(xp):
    drawn = clusters(recorded(xp, residual_net(xp)).dot())
    nodes, inner = drawn["Residual layers[1]"]
    assert inner == ["Sequential layers[1].inner"]
    assert sorted(nodes) == sorted(["+", "W2", "b2", "W3", "b3", "Affine", "Tanh", "Affine"])
    assert sorted(drawn["Sequential layers[1].inner"][0]) == sorted(nodes[1:])


def test_the_skip_path_and_the_inner_output_feed_the_add_with_the_blocks_gradient(xp):
    run = recorded(xp, residual_net(xp))
    _, edges = run.edges()
    into_add = [e for e in edges if isinstance(e.target, str)]
    kinds = [type(run.nodes[run.calls[e.source].node]).__name__ for e in into_add]
    assert kinds == ["Affine", "Affine"]  # the inner Affine, and the skip from layers[0]
    assert [e.source for e in into_add][1] == 0
    block = next(call for call in run.calls if type(run.nodes[call.node]) is Residual)
    assert [e.backward for e in into_add] == [block.dout, block.dout]


def test_blocks_nested_twice_are_clusters_in_clusters(xp):
    innermost = Sequential([affine(xp, 2), Tanh()])
    middle = Sequential([affine(xp, 1), Residual(innermost)])
    net = Sequential([affine(xp, 0), middle, affine(xp, 3)], loss=SoftmaxWithLoss())
    drawn = clusters(recorded(xp, net).dot())
    assert drawn["Sequential layers[1]"][1] == ["Residual layers[1].layers[1]"]
    assert drawn["Residual layers[1].layers[1]"][1] == ["Sequential layers[1].layers[1].inner"]
    assert drawn["Sequential layers[1].layers[1].inner"] == (["W3", "b3", "Affine", "Tanh"], [])


def test_the_gradient_on_an_edge_inside_a_block_is_the_losss_gradient_of_its_value(xp):
    run = recorded(xp, residual_net(xp))
    _, edges = run.edges()
    tanh = next(k for k, call in enumerate(run.calls) if type(run.nodes[call.node]) is Tanh)
    edge = next(e for e in edges if e.source == tanh)

    def softmax_loss(scores):
        shifted = scores - scores.max(axis=1, keepdims=True)
        return -np.mean(shifted[0, T] - np.log(np.exp(shifted).sum(axis=1)))

    h0 = X @ W[0] + B[0]

    def loss_of_tanh(a):  # the loss as a function of the value on that edge
        return softmax_loss((h0 + a @ W[2] + B[2]) @ W[3] + B[3])

    expected = central_difference(loss_of_tanh, np.tanh(h0 @ W[1] + B[1]))
    assert edge.backward.elements == pytest.approx(expected.ravel(), rel=1e-6)


def test_an_inner_parameters_gradient_is_the_networks(xp):
    net = residual_net(xp)
    run = recorded(xp, net)
    _, edges = run.edges()
    edge = next(e for e in edges if e.source == "param:W3")
    assert run.calls[edge.target].parent is not None  # a leaf of the inner Affine
    expected = to_numpy(net.gradient(dev(xp, X), dev(xp, T, "int64"))["W3"])
    assert edge.backward.norm == pytest.approx(np.linalg.norm(expected), rel=1e-12)


def test_a_blocks_output_that_is_no_sum_is_drawn_as_its_forward_fed_by_the_inner_output(xp):
    run = recorded(xp, residual_net(xp, block=Doubled))
    nodes, _ = clusters(run.dot())["Doubled layers[1]"]
    assert "Doubled.forward" in nodes and "+" not in nodes
    _, edges = run.edges()
    into_join = [e.source for e in edges if isinstance(e.target, str)]
    assert into_join == [3]  # the inner Affine (calls: Affine, Affine, Tanh, Affine, ...) only


def test_a_blocks_own_parameter_feeds_its_forward_with_the_losss_gradient(xp):
    alpha = np.ones(3)  # x + 1 * inner(x) is a sum to the last bit: still no "+"
    run = recorded(xp, residual_net(xp, block=lambda inner: Scaled(inner, dev(xp, alpha))))
    nodes, _ = clusters(run.dot())["Scaled layers[1]"]
    assert "Scaled.forward" in nodes and "alpha1" in nodes and "+" not in nodes
    _, edges = run.edges()
    edge = next(e for e in edges if e.source == "param:alpha1")
    assert edge.target.startswith("join:")

    h0 = X @ W[0] + B[0]
    inner = np.tanh(h0 @ W[1] + B[1]) @ W[2] + B[2]

    def loss_of_alpha(a):
        scores = (h0 + a * inner) @ W[3] + B[3]
        shifted = scores - scores.max(axis=1, keepdims=True)
        return -np.mean(shifted[0, T] - np.log(np.exp(shifted).sum(axis=1)))

    expected = central_difference(loss_of_alpha, alpha)
    assert edge.backward.elements == pytest.approx(expected, rel=1e-6)


def test_inside_false_draws_a_block_as_one_node(xp):
    net = residual_net(xp)
    run = graph.record_network(net, dev(xp, X), dev(xp, T, "int64"), inside=False)
    assert clusters(run.dot()) == {}
    assert "Residual" in [run.labels[call.node] for call in run.calls]


def test_backward_edges_are_dashed_and_forward_edges_solid():
    edges = [line for line in graph.apple().dot().splitlines() if " -> " in line]
    backward = [line for line in edges if "dir=back" in line]
    assert len(backward) == 5 and all("style=dashed" in line for line in backward)
    assert not any("dashed" in line for line in edges if line not in backward)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_a_block_renders_as_a_box_labelled_by_class_and_path(cpu_xp, tmp_path):
    graph.write(recorded(cpu_xp, residual_net(cpu_xp)).dot(), tmp_path / "block.svg")
    svg = (tmp_path / "block.svg").read_text()
    assert svg.count('class="cluster"') == 2
    assert "Residual layers[1]" in svg and "Sequential layers[1].inner" in svg


def softmax_loss(scores):
    """SoftmaxWithLoss of NumPy ``scores`` for the labels ``T``, in float64."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    return -np.mean(shifted[0, T] - np.log(np.exp(shifted).sum(axis=1)))


def inner_of(h):
    """The inner Sequential of ``residual_net`` (Affine, Tanh, Affine) in NumPy."""
    return np.tanh(h @ W[1] + B[1]) @ W[2] + B[2]


H0 = X @ W[0] + B[0]  # layers[0]'s output


def into_join(run):
    """The calls (their node's class) and the edges feeding the block's join."""
    _, edges = run.edges()
    joined = [e for e in edges if isinstance(e.target, str)]
    return [type(run.nodes[run.calls[e.source].node]).__name__ for e in joined], joined


def test_a_residual_block_adding_in_place_is_drawn_as_an_add_with_its_skip_path(xp):
    run = recorded(xp, residual_net(xp, block=AddsInPlace))
    nodes, _ = clusters(run.dot())["AddsInPlace layers[1]"]
    assert "+" in nodes
    kinds, joined = into_join(run)
    assert kinds == ["Affine", "Affine"] and joined[1].source == 0  # the skip from layers[0]


def test_the_inner_output_added_into_in_place_is_drawn_as_it_was_returned(xp):
    _, joined = into_join(recorded(xp, residual_net(xp, block=AddsInPlace)))
    assert joined[0].forward.elements == pytest.approx(inner_of(H0).ravel(), rel=1e-12)


def test_the_gradients_drawn_out_of_the_layer_before_an_in_place_add_sum_to_its_gradient(xp):
    run = recorded(xp, residual_net(xp, block=AddsInPlace))
    _, edges = run.edges()
    drawn = sum(np.array(e.backward.elements) for e in edges if e.source == 0)

    def loss_of_h0(h):  # the loss as a function of layers[0]'s output
        return softmax_loss((h + inner_of(h)) @ W[3] + B[3])

    expected = central_difference(loss_of_h0, H0)
    assert drawn == pytest.approx(expected.ravel(), rel=1e-6)


def test_an_in_place_change_that_is_no_sum_is_drawn_as_the_blocks_forward(xp):
    run = recorded(xp, residual_net(xp, block=DoublesInPlace))
    nodes, _ = clusters(run.dot())["DoublesInPlace layers[1]"]
    assert "DoublesInPlace.forward" in nodes and "+" not in nodes
    kinds, joined = into_join(run)
    assert kinds == ["Affine"]  # the inner Affine, with its value as it returned it
    assert joined[0].forward.elements == pytest.approx(inner_of(H0).ravel(), rel=1e-12)


def test_a_block_adding_into_its_input_draws_the_input_as_it_got_it_on_the_skip_path(xp):
    run = recorded(xp, residual_net(xp, block=AddsIntoItsInput))
    kinds, joined = into_join(run)
    assert kinds == ["Affine", "Affine"] and joined[1].source == 0
    assert joined[1].forward.elements == pytest.approx(H0.ravel(), rel=1e-12)
    _, edges = run.edges()
    into_inner = next(e for e in edges if e.source == 0 and e.target == 1)
    assert into_inner.forward.elements == pytest.approx(H0.ravel(), rel=1e-12)


def test_a_value_changed_in_place_between_two_layers_is_drawn_from_neither(xp):
    block = ScalesBetween(affine(xp, 1), affine(xp, 2))
    net = Sequential([affine(xp, 0), block, affine(xp, 3)], loss=SoftmaxWithLoss())
    run = recorded(xp, net)
    _, edges = run.edges()
    into_second = next(e for e in edges if e.target == 2 and e.forward.shape == (1, 3))
    assert into_second.source != 1  # what flowed is 2 * first's output, not first's output
    assert into_second.forward.elements == pytest.approx((2 * (H0 @ W[1] + B[1])).ravel())


def test_a_gate_says_under_the_title_that_the_gradients_into_it_are_its_inner_layers_shares(xp):
    heading = re.search(r'label="([^"]*)";', recorded(xp, residual_net(xp, block=Gate)).dot())[1]
    assert heading == (
        "Gate layers[1]: its own code between its layers is not drawn; gradients drawn into "
        "it are its inner layers' shares"
    )


def calls_of(run, cls):
    """The indices of the calls of ``cls``'s nodes, in order."""
    return [k for k, call in enumerate(run.calls) if type(run.nodes[call.node]) is cls]


def test_an_add_feeding_a_layer_inside_a_block_is_drawn_as_a_plus_with_the_skip_path(xp):
    run = recorded(xp, residual_net(xp, block=AddsThenActivates))
    nodes, _ = clusters(run.dot())["AddsThenActivates layers[1]"]
    assert "+" in nodes and "(1, 3)" not in nodes  # no leaf for the sum
    [relu] = calls_of(run, ReLU)
    _, edges = run.edges()
    [into_relu] = [e for e in edges if e.target == relu]
    into_add = [e for e in edges if e.target == into_relu.source]
    kinds = [type(run.nodes[run.calls[e.source].node]).__name__ for e in into_add]
    assert kinds == ["Affine", "Affine"] and into_add[1].source == 0  # inner, skip from layers[0]


def test_the_add_feeding_a_layer_passes_back_the_gradient_that_layer_returned(xp):
    run = recorded(xp, residual_net(xp, block=AddsThenActivates))
    [relu] = calls_of(run, ReLU)
    _, edges = run.edges()
    [into_relu] = [e for e in edges if e.target == relu]
    into_add = [e for e in edges if e.target == into_relu.source]
    assert into_relu.forward.elements == pytest.approx((H0 + inner_of(H0)).ravel(), rel=1e-12)
    assert [e.backward for e in into_add] == [run.calls[relu].dinputs[0]] * 2


def test_the_gradients_drawn_out_of_the_layer_before_an_add_then_relu_sum_to_its_gradient(xp):
    run = recorded(xp, residual_net(xp, block=AddsThenActivates))
    _, edges = run.edges()
    drawn = sum(np.array(e.backward.elements) for e in edges if e.source == 0)

    def loss_of_h0(h):  # the loss as a function of layers[0]'s output
        return softmax_loss(np.maximum(h + inner_of(h), 0) @ W[3] + B[3])

    expected = central_difference(loss_of_h0, H0)
    assert drawn == pytest.approx(expected.ravel(), rel=1e-6)


def test_a_pre_activation_block_is_drawn_as_a_plus_with_the_skip_path_from_its_activation(xp):
    run = recorded(xp, residual_net(xp, block=PreActivated))
    nodes, _ = clusters(run.dot())["PreActivated layers[1]"]
    assert "+" in nodes and "PreActivated.forward" not in nodes
    kinds, joined = into_join(run)
    block = run.calls[calls_of(run, PreActivated)[0]]
    assert kinds == ["Affine", "Tanh"] and joined[1].source == block.children[0]  # h's producer
    assert [e.backward for e in joined] == [block.dout, block.dout]


def test_the_gradients_drawn_out_of_the_layers_feeding_a_pre_activation_add_sum_to_theirs(xp):
    run = recorded(xp, residual_net(xp, block=PreActivated))
    _, edges = run.edges()
    act = run.calls[calls_of(run, PreActivated)[0]].children[0]

    def loss_of_h(h):  # the loss as a function of the activation's output
        return softmax_loss((h + inner_of(h)) @ W[3] + B[3])

    for source, expected in [
        (0, central_difference(lambda h0: loss_of_h(np.tanh(h0)), H0)),
        (act, central_difference(loss_of_h, np.tanh(H0))),
    ]:
        drawn = sum(np.array(e.backward.elements) for e in edges if e.source == source)
        assert drawn == pytest.approx(expected.ravel(), rel=1e-6, abs=1e-9)
