"""The element-by-element numerical gradient and the gradient-check report."""

import json

import numpy as np
import pytest

from xpnet import MultiLayerNet, TwoLayerNet, check_gradients, numerical_gradient
from xpnet.backend import namespace_of, to_device, to_numpy
from xpnet.cli import main


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


def test_numerical_gradient_on_chosen_indices_leaves_the_rest_zero(xp):
    x = to_device(np.arange(6.0).reshape(2, 3), dtype="float64", xp=xp)
    grad = numerical_gradient(lambda v: namespace_of(v).sum(v * v), x, indices=[(0, 1), (1, 2)])
    expected = np.zeros((2, 3))
    expected[0, 1], expected[1, 2] = 2.0, 10.0
    np.testing.assert_allclose(to_numpy(grad), expected, rtol=1e-9, atol=1e-12)


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


def test_check_gradients_catches_a_wrong_backward(cpu_xp, wrong_dW):
    report = check_gradients(*small_problem(cpu_xp, activation="tanh"), method="loop")
    assert not report.passed
    failed = {p.name for p in report.params if not p.passed}
    assert failed == {"W1", "W2"}
    assert "FAIL" in str(report)


def test_report_prints_a_table_with_every_parameter(cpu_xp):
    text = str(check_gradients(*small_problem(cpu_xp), method="loop"))
    for column in ("param", "max abs err", "max rel err", "mean abs diff"):
        assert column in text
    assert text.splitlines()[-1] == "PASSED"


def test_check_gradients_warns_in_float32():
    net = TwoLayerNet(4, 3, 2, dtype="float32", seed=0)
    x = to_device(np.ones((2, 4)), dtype="float32")
    t = to_device([0, 1], dtype="int64")
    with pytest.warns(UserWarning, match="float64"):
        check_gradients(net, x, t, method="loop")


def test_check_gradients_rejects_unknown_parameter_names(cpu_xp):
    with pytest.raises(ValueError, match="W7"):
        check_gradients(*small_problem(cpu_xp), params=["W7"])


def test_cli_gradcheck_passes_and_prints_json(capsys):
    code = main(["gradcheck", "--input-size", "8", "--hidden", "5", "--output-size", "3", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True
    assert {p["name"] for p in report["params"]} == {"W1", "b1", "W2", "b2"}


def test_cli_gradcheck_rejects_an_unknown_device(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", "--device", "tpu"])
    assert exit_info.value.code == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err
