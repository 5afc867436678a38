"""check_gradients(max_elements=K): a random sample of each parameter's elements, and the
indices of the failing elements (ParamCheck.failing_elements)."""

import json

import numpy as np
import pytest
from numeric import central_difference, dev

from xpnet import Sequential, check_gradients
from xpnet.backend import to_like, to_numpy
from xpnet.cli import main
from xpnet.layers import Affine, ReLU, SoftmaxWithLoss, Tanh

RNG = np.random.default_rng(0)
W1, B1 = RNG.standard_normal((5, 4)), RNG.standard_normal(4)
W2, B2 = RNG.standard_normal((4, 3)), RNG.standard_normal(3)
X, T = RNG.standard_normal((6, 5)), np.array([0, 1, 2, 1, 0, 2])


class WrongAffine(Affine):
    """An Affine whose backward adds ``error`` (NumPy, W's shape) to dW."""

    error = np.zeros((5, 4))

    def backward(self, dout):
        dx = super().backward(dout)
        self.dW = self.dW + to_like(self.error, self.dW)
        return dx


class MovesRecorded(Affine):
    """An Affine that records, at each forward, which single element of W was moved from
    ``start`` (passes where W moved in one element only, as the loop's differences)."""

    def forward(self, x):
        moved = np.argwhere(to_numpy(self.W) != self.start)
        if len(moved) == 1:
            self.moved.add(tuple(int(i) for i in moved[0]))
        return super().forward(x)


def problem(xp, error=None, first=Affine):
    layer = first(dev(xp, W1), dev(xp, B1))
    if error is not None:
        layer.error = error
    net = Sequential([layer, Tanh(), Affine(dev(xp, W2), dev(xp, B2))], loss=SoftmaxWithLoss())
    return net, dev(xp, X), dev(xp, T, "int64")


def numpy_loss(w1):
    """The network's loss as a function of W1, written out in NumPy."""
    scores = np.tanh(X @ w1 + B1) @ W2 + B2
    scores = scores - scores.max(axis=1, keepdims=True)
    log_p = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(T)), T].mean()


@pytest.mark.parametrize("method", ["loop", "batched"])
def test_a_sample_passes_a_correct_network_and_says_it_is_a_sample(xp, method):
    report = check_gradients(*problem(xp), method=method, max_elements=3)
    assert report.passed
    only = "W1 3 of 20, b1 3 of 4, W2 3 of 12"
    assert report.verdict() == f"PASSED (on sampled elements only: {only})"
    assert "checked: elements sampled at random" in str(report)


def test_the_report_counts_the_elements_checked_of_each_parameter(xp):
    report = check_gradients(*problem(xp), max_elements=4)
    assert {p.name: p.sampled for p in report.params} == {
        "W1": 4, "b1": None, "W2": 4, "b2": None,
    }  # fmt: skip
    assert "W1     5x4    local  4 of 20" in str(report)


@pytest.mark.parametrize("method", ["loop", "batched"])
def test_a_sample_fails_a_gradient_wrong_in_each_sampled_element(xp, method):
    report = check_gradients(*problem(xp, np.full((5, 4), 0.5), WrongAffine), max_elements=6)
    w1 = report.params[0]
    assert not report.passed
    assert (w1.name, w1.failing, len(w1.failing_elements), w1.sampled) == ("W1", 6, 6, 6)
    assert "W1: 6 of 6 sampled elements fail" in str(report)
    assert all(p.passed for p in report.params[1:])


@pytest.mark.parametrize("method", ["loop", "batched"])
def test_a_parameter_whose_every_sampled_element_is_a_kink_was_not_compared(xp, method):
    # b1 = 0 before ReLU and a blank sample: each b1 element straddles ReLU's kink there
    x = np.vstack([np.zeros((1, 5)), X[1:]])
    layers = [Affine(dev(xp, W1), dev(xp, np.zeros(4))), ReLU(), Affine(dev(xp, W2), dev(xp, B2))]
    net = Sequential(layers, loss=SoftmaxWithLoss())
    report = check_gradients(net, dev(xp, x), dev(xp, T, "int64"), method=method, max_elements=2)
    b1 = report.params[1]
    assert (b1.name, b1.sampled, b1.kinks) == ("b1", 2, 2)
    assert report.not_compared == ["b1"]
    row = next(line for line in str(report).splitlines() if line.startswith("b1 "))
    assert row.rstrip().endswith("not compared (all kinks)")
    assert report.verdict().startswith("PASSED (but b1 not compared) (on sampled elements only")


def test_a_seed_samples_the_same_elements_on_every_backend(xp):
    def sample(xp, seed):
        report = check_gradients(
            *problem(xp, np.full((5, 4), 0.5), WrongAffine), max_elements=6, seed=seed
        )
        return report.params[0].failing_elements

    assert sample(xp, 0) == sample(np, 0)
    assert sample(np, 0) != sample(np, 1)


def test_a_parameters_sample_does_not_depend_on_the_others_checked(cpu_xp):
    def w2_failing(params):
        wrong = WrongAffine(dev(cpu_xp, W2), dev(cpu_xp, B2))
        wrong.error = np.full((4, 3), 0.5)
        layers = [Affine(dev(cpu_xp, W1), dev(cpu_xp, B1)), Tanh(), wrong]
        net = Sequential(layers, loss=SoftmaxWithLoss())
        x, t = dev(cpu_xp, X), dev(cpu_xp, T, "int64")
        report = check_gradients(net, x, t, params=params, max_elements=5, seed=3)
        return next(p.failing_elements for p in report.params if p.name == "W2")

    assert w2_failing(["W2"]) == w2_failing(["W1", "W2"])


def test_the_loop_moves_only_the_sampled_elements(xp):
    net, x, t = problem(xp, first=MovesRecorded)
    net.layers[0].start, net.layers[0].moved = to_numpy(net.layers[0].W), set()
    check_gradients(net, x, t, method="loop", params=["W1"], max_elements=3)
    assert len(net.layers[0].moved) == 3


@pytest.mark.parametrize("method", ["loop", "batched"])
def test_failing_elements_are_where_backprop_and_an_independent_difference_disagree(xp, method):
    error = np.zeros((5, 4))
    error[0, 1], error[2, 3], error[4, 0] = 0.5, -0.2, 1e-3
    net, x, t = problem(xp, error, WrongAffine)
    report = check_gradients(net, x, t, method=method)
    analytic = to_numpy(net.gradient(x, t)["W1"])
    mismatch = ~np.isclose(analytic, central_difference(numpy_loss, W1), rtol=1e-4, atol=1e-6)
    assert report.params[0].failing_elements == tuple(map(tuple, np.argwhere(mismatch).tolist()))
    assert report.params[0].failing_elements == ((0, 1), (2, 3), (4, 0))


def test_failing_elements_are_left_out_of_the_json_data(cpu_xp):
    report = check_gradients(*problem(cpu_xp, np.full((5, 4), 0.5), WrongAffine))
    assert len(report.params[0].failing_elements) == 20
    assert "failing_elements" not in report.as_dict()["params"][0]
    assert report.as_dict()["params"][0]["failing"] == 20


def test_max_elements_with_the_directional_method_is_refused(xp):
    with pytest.raises(
        ValueError, match=r"max_elements=5 samples elements for method 'loop' or 'batched'"
    ):
        check_gradients(*problem(xp), method="directional", max_elements=5)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10"])
def test_max_elements_must_be_a_positive_integer(cpu_xp, bad):
    with pytest.raises(ValueError, match=rf"max_elements must be an integer >= 1 .*got {bad!r}"):
        check_gradients(*problem(cpu_xp), max_elements=bad)


def test_cli_max_elements_checks_a_sample_of_each_parameter(capsys):
    argv = ["gradcheck", "--input-size", "8", "--hidden", "5", "--output-size", "3", "--json"]
    assert main([*argv, "--max-elements", "4"]) == 0
    sampled = {p["name"]: p["sampled"] for p in json.loads(capsys.readouterr().out)["params"]}
    assert sampled == {"W1": 4, "b1": 4, "W2": 4, "b2": None}


def test_cli_max_elements_with_the_directional_method_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["gradcheck", "--method", "directional", "--max-elements", "4"])
    assert exc.value.code == 2
    assert "--max-elements samples the elements that --method loop or batched" in (
        capsys.readouterr().err
    )


class DoubledAffine(Affine):
    """An Affine whose backward returns twice dW."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.dW = 2 * self.dW
        return dx


def test_a_constant_factor_found_on_a_sample_is_said_of_the_sampled_elements(xp):
    report = check_gradients(*problem(xp, first=DoubledAffine), max_elements=6)
    assert "W1: the analytic gradient is 2 times the numerical one in every sampled element" in (
        str(report)
    )
