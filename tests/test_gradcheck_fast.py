"""Fast numerical gradients: batched local perturbations against the loop, kinks, directions."""

from __future__ import annotations

import json
import math
import tracemalloc
import warnings
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpnet import MultiLayerNet, Sequential, perturb
from xpnet.backend import host_rng, namespace, namespace_of, to_device, to_numpy
from xpnet.cli import main
from xpnet.gradcheck import (
    METHODS,
    DirectionalReport,
    GradientReport,
    check_gradients,
    directional_check,
    memory_budget,
    net_numerical_gradient,
)
from xpnet.kinks import refined_step
from xpnet.layers import Affine, MeanSquaredError, ReLU, SigmoidWithLoss, SoftmaxWithLoss, Tanh
from xpnet.networks import ACTIVATIONS
from xpnet.opcount import count_operations
from xpnet.perturb import LocalNet, central_differences, loop_differences

H = 1e-4


def problem(xp, activation="relu", *, weight_decay=0.1, hidden=(7, 5), batch=6, seed=0):
    """A small float64 network (12 inputs, 4 classes) with random biases, inputs and labels."""
    net = MultiLayerNet(
        12,
        list(hidden),
        4,
        activation=activation,
        weight_decay=weight_decay,
        dtype="float64",
        seed=seed,
        xp=xp,
    )
    rng = host_rng(seed + 1)
    for name in net.params:
        if name.startswith("b"):
            shape = tuple(net.params[name].shape)
            net.params[name] = to_device(0.1 * rng.standard_normal(shape), dtype="float64", xp=xp)
    x = to_device(rng.random((batch, 12)), dtype="float64", xp=xp)
    t = to_device(rng.integers(0, 4, batch), dtype="int64", xp=xp)
    return net, x, t


def assert_same_differences(net, x, t, batched, loop):
    """Equal element by element to 1e-10, relative, above the loop's own rounding.

    The loop's ``L(p + h e_i) - L(p - h e_i)`` loses about ``eps * |L|``, so each of its
    elements is only known to about ``eps * |L| / h`` (~1e-11 here): that is the floor.
    """
    floor = 8 * np.finfo(np.float64).eps * max(1.0, abs(float(net.loss(x, t)))) / H
    assert batched.keys() == loop.keys()
    for name in loop:
        np.testing.assert_allclose(
            to_numpy(batched[name]), to_numpy(loop[name]), rtol=1e-10, atol=floor, err_msg=name
        )


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_batched_equals_the_loop(xp, activation):
    net, x, t = problem(xp, activation)
    batched = net_numerical_gradient(net, x, t, method="batched", h=H)
    loop = net_numerical_gradient(net, x, t, method="loop", h=H)
    assert_same_differences(net, x, t, batched, loop)


def test_the_layer_input_loop_includes_weight_decay(xp):
    net, x, t = problem(xp, "sigmoid", weight_decay=0.3)
    grad, kinks = loop_differences(LocalNet.of(net, x, t), "W2", H)
    book = net.numerical_gradient(x, t, h=H, params=["W2"])["W2"]
    np.testing.assert_allclose(to_numpy(grad), to_numpy(book), rtol=1e-8, atol=1e-10)
    assert not np.any(to_numpy(kinks))


def test_the_loop_runs_no_layer_before_the_parameters(cpu_xp, monkeypatch):
    """Moving W2 changes nothing before its Affine: the loop's passes start there, from the
    input LocalNet kept, not at the first Affine, twice per element."""
    net, x, t = problem(cpu_xp, "relu")
    local = LocalNet.of(net, x, t)
    first, calls = net.layers[0], []
    forward = first.forward
    monkeypatch.setattr(first, "forward", lambda a: calls.append(a) or forward(a))
    grad, _ = loop_differences(local, "W2", H)
    assert calls == []
    monkeypatch.undo()
    book = net.numerical_gradient(x, t, h=H, params=["W2"])["W2"]
    np.testing.assert_allclose(to_numpy(grad), to_numpy(book), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("pass_", ["+h", "-h"])
def test_the_loop_finds_a_kink_that_only_one_pass_reaches(xp, pass_):
    """Affine, Tanh, Affine, ReLU: tanh is concave at 1 and convex at -1, so moving
    ``W1[0, k]`` by -h (at 1) or +h (at -1) moves the ReLU input further than the other
    pass does. Unit 0's ReLU input sits between the two moves, on the side where only the
    further pass crosses its kink; unit 1's sits far from it."""
    h, w = 1e-2, (1.0 if pass_ == "-h" else -1.0)
    up, down = np.tanh(w + h) - np.tanh(w), np.tanh(w) - np.tanh(w - h)
    between = (up + down) / 2
    assert (down > between > up) if pass_ == "-h" else (up > between > down)  # by NumPy
    relu_input = np.array([between if pass_ == "-h" else -between, 1.0])

    def array(values):
        return to_device(np.asarray(values, dtype=np.float64), dtype="float64", xp=xp)

    net = Sequential(
        [
            Affine(array([[w, w]]), array([0.0, 0.0])),
            Tanh(),
            Affine(array(np.eye(2)), array(relu_input - np.tanh(w))),
            ReLU(),
            Affine(array([[1.0, -1.0], [0.5, 2.0]]), array([0.0, 0.0])),
        ],
        loss=SoftmaxWithLoss(),
    )
    x, t = array([[1.0]]), to_device(np.array([1]), dtype="int64", xp=xp)
    _, kinks = loop_differences(LocalNet.of(net, x, t), "W1", h)
    np.testing.assert_array_equal(to_numpy(kinks), [[True, False]])


def test_blank_input_pixels_are_skipped_and_still_equal_the_loop(xp, monkeypatch):
    net, x, t = problem(xp, "relu", weight_decay=0.0)
    blank = to_numpy(x).copy()
    blank[:, :5] = 0.0  # like MNIST's border: columns that are zero in every sample
    x = to_device(blank, dtype="float64", xp=xp)
    computed = []
    original = LocalNet.loss_change

    def counting(self, name, index, step):
        computed.append((name, int(index.shape[0]) // 2))
        return original(self, name, index, step)

    monkeypatch.setattr(LocalNet, "loss_change", counting)
    batched = net_numerical_gradient(net, x, t, method="batched", h=H)
    loop = net_numerical_gradient(net, x, t, method="loop", h=H)
    assert_same_differences(net, x, t, batched, loop)
    assert sum(n for name, n in computed if name == "W1") == (12 - 5) * 7
    np.testing.assert_array_equal(to_numpy(batched["W1"])[:5], 0.0)


def test_batched_equals_the_loop_for_image_shaped_inputs(cpu_xp):
    net, x, t = problem(cpu_xp, "tanh", hidden=(6,))
    images = cpu_xp.reshape(x, (6, 1, 3, 4))  # Affine flattens (N, 1, 3, 4) to (N, 12)
    batched = net_numerical_gradient(net, images, t, h=H)
    loop = net_numerical_gradient(net, images, t, method="loop", h=H)
    assert_same_differences(net, images, t, batched, loop)


def test_a_tiny_memory_budget_gives_the_same_gradients(cpu_xp):
    net, x, t = problem(cpu_xp)
    roomy = net_numerical_gradient(net, x, t, h=H)
    for budget in (1, 2048):  # one element per chunk, then a few
        tight = net_numerical_gradient(net, x, t, h=H, memory_budget=budget)
        for name in roomy:
            np.testing.assert_allclose(
                to_numpy(tight[name]), to_numpy(roomy[name]), rtol=1e-13, atol=1e-16
            )


def test_host_reads_do_not_grow_with_the_number_of_chunks():
    """More, smaller chunks mean more array operations, never more waits for a GPU."""
    counts = {}
    for budget in (2048, None):
        net, x, t = problem(namespace("cpu"))

        def gradient(x, t, net=net, budget=budget):
            return net_numerical_gradient(net, x, t, memory_budget=budget)

        counts[budget] = count_operations(gradient, x, t, params=net.params)
    assert counts[2048].array_ops > counts[None].array_ops
    assert counts[2048].host_reads == counts[None].host_reads


def wide_problem():
    """A network whose W2 elements move 64 scores of 512 samples: 256 KiB per dense
    perturbation, so a chunk of a few elements already takes megabytes."""
    net = MultiLayerNet(8, [4], 64, dtype="float64", seed=0, xp=namespace("cpu"))
    rng = host_rng(1)
    return net, rng.random((512, 8)), rng.integers(0, 64, 512)


def traced_peak(net, x, t, budget):
    """Peak traced memory of the batched W2 check, after one call has warmed the caches."""
    net_numerical_gradient(net, x, t, params=["W2"], memory_budget=budget)
    tracemalloc.start()
    try:
        net_numerical_gradient(net, x, t, params=["W2"], memory_budget=budget)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_stays_within_the_budget():
    net, x, t = wide_problem()
    peaks = {}
    for budget in (8 * 2**20, 32 * 2**20):
        peaks[budget] = traced_peak(net, x, t, budget)
        assert peaks[budget] <= budget
    assert peaks[32 * 2**20] > 8 * 2**20  # the larger budget is used, not just respected


def test_threads_share_the_memory_budget(monkeypatch):
    """Chunks that run at once on several threads hold the budget together, not each."""
    monkeypatch.setattr(perturb, "_workers", lambda x: 4)  # as on a 4-core CPU
    net, x, t = wide_problem()
    budget = 12 * 2**20  # 3 MiB per W2 element: one element per chunk on each of 4 threads
    assert traced_peak(net, x, t, budget) <= budget


def test_memory_budget_reads_sizes_and_the_environment(monkeypatch):
    assert memory_budget(4096) == 4096
    assert memory_budget("512K") == 512 * 2**10
    assert memory_budget("64MiB") == 64 * 2**20
    monkeypatch.setenv("XPNET_GRADCHECK_MEMORY", "1g")
    assert memory_budget() == 2**30
    monkeypatch.delenv("XPNET_GRADCHECK_MEMORY")
    assert memory_budget() == 64 * 2**20
    with pytest.raises(ValueError, match="not a size"):
        memory_budget("lots")
    with pytest.raises(ValueError, match="positive"):
        memory_budget(0)


def kinked_problem(xp, hidden=(4,)):
    """A ReLU network where pre-activation z1[0, 2] = 1e-8, well within h = 1e-4 of the kink
    (and within h / 100, where check_gradients differences again what straddles one).

    With ``hidden=(4, 4)`` a second ReLU follows, whose pre-activations are all at least
    0.07 away from 0: the kink is then in the first of two ReLUs.
    """
    net = MultiLayerNet(3, list(hidden), 2, dtype="float64", seed=3, xp=xp)
    x_host = np.array([[0.5, 0.8, 0.3], [0.9, 0.1, 0.6]])
    W1 = to_numpy(net.params["W1"])
    b1 = np.full(4, 0.5)
    b1[2] = 1e-8 - x_host[0] @ W1[:, 2]
    b1[b1 == 0.5] = 0.5 - np.minimum(0.0, (x_host @ W1).min(axis=0))[b1 == 0.5]  # others active
    net.params["b1"] = to_device(b1, dtype="float64", xp=xp)
    x = to_device(x_host, dtype="float64", xp=xp)
    t = to_device([1, 0], dtype="int64", xp=xp)
    return net, x, t


DEPTHS = pytest.mark.parametrize("hidden", [(4,), (4, 4)], ids=["one-relu", "two-relus"])


@DEPTHS
@pytest.mark.parametrize("method", ["batched", "loop"])
def test_kinks_are_reported_apart(cpu_xp, method, hidden):
    net, x, t = kinked_problem(cpu_xp, hidden)
    report = check_gradients(net, x, t, method=method, h=H)
    checks = {p.name: p for p in report.params}
    assert checks["b1"].kinks == 1 and checks["b1"].kink_elements == ((2,),)
    assert checks["W1"].kink_elements == ((0, 2), (1, 2), (2, 2))  # every W1[i, 2] moves z1[0, 2]
    later = [p for p in report.params if p.name not in ("W1", "b1")]  # moves no z1
    assert later and all(p.kinks == 0 for p in later)
    # The central difference across the kink is wrong by about half the slope ...
    assert checks["b1"].kink_max_abs_error > 100 * report.atol
    # ... and is reported, not failed: the other elements pass.
    assert report.passed
    text = str(report)
    assert "straddles a kink" in text and text.splitlines()[-1] == "PASSED"


@pytest.mark.parametrize("method", ["batched", "loop"])
def test_an_element_clear_of_the_kink_at_the_smaller_step_is_not_excused_at_h(
    cpu_xp, method, monkeypatch
):
    # z1[0, 2] = 2e-6: b1[2] straddles the kink at h = 1e-4, not at h / 100, where it is
    # compared. A ReLU mask at the wrong threshold is off there: the analytic gradient
    # matches the side of the kink at h, which excused it.
    net, x, t = kinked_problem(cpu_xp)
    b1 = to_numpy(net.params["b1"]).copy()  # a host array may be a read-only view
    b1[2] += 2e-6 - 1e-8
    net.params["b1"] = to_device(b1, dtype="float64", xp=cpu_xp)
    original = ReLU.forward

    def forward(self, z):
        out = original(self, z)
        self.mask = z > 1e-5  # ReLU's slope is 1 on (0, 1e-5) too
        return out

    monkeypatch.setattr(ReLU, "forward", forward)
    report = check_gradients(net, x, t, method=method, h=H, params=["b1"])
    (b,) = report.params
    assert b.refined == 1 and not b.kinks, str(report)
    assert not report.passed, str(report)


@pytest.mark.parametrize("method", ["batched", "loop"])
def test_an_element_across_a_kink_that_agrees_is_not_differenced_again(cpu_xp, method):
    # ReLU unit 2 barely feeds the scores (W2[2] scaled by 1e-8): b1[2] straddles its kink
    # and agrees all the same, so it is compared at h without a second difference.
    net, x, t = kinked_problem(cpu_xp)
    W2 = to_numpy(net.params["W2"]).copy()
    W2[2] *= 1e-8
    net.params["W2"] = to_device(W2, dtype="float64", xp=cpu_xp)
    report = check_gradients(net, x, t, method=method, h=H, params=["b1"])
    (b,) = report.params
    assert b.refined == 0 and not b.kinks and b.passed, str(report)
    assert "refined" not in str(report)


@pytest.mark.parametrize("method", ["batched", "loop"])
def test_a_kink_stays_reported_beside_an_element_that_fails_without_one(
    cpu_xp, method, monkeypatch
):
    # b1[2] straddles the kink at h and at h / 100; b1[0]'s gradient is wrong, and it has
    # no kink flagged, so the one-sided differences look at it: what they find adds to
    # the kinks found, it does not replace them.
    net, x, t = kinked_problem(cpu_xp)
    original = net.gradient

    def gradient(x, t):
        grads = original(x, t)
        grads["b1"] = grads["b1"] + to_device(np.eye(4)[0], dtype="float64", xp=cpu_xp)
        return grads

    monkeypatch.setattr(net, "gradient", gradient)
    report = check_gradients(net, x, t, method=method, h=H, params=["b1"])
    (b,) = report.params
    assert b.kink_elements == ((2,),), str(report)
    assert not b.passed, str(report)


@pytest.mark.parametrize(
    ("h", "dtype", "expected"),
    [
        (1e-4, "float64", 1e-6),  # h / 100
        (1e-6, "float64", 10 * np.sqrt(np.finfo("float64").eps)),  # not below rounding's
        (1e-2, "float32", 10 * math.sqrt(np.finfo("float32").eps)),  # float32's, not float64's
    ],
)
def test_refined_step_is_a_hundredth_of_h_but_not_below_ten_root_eps(h, dtype, expected):
    assert refined_step(h, dtype) == pytest.approx(expected, rel=1e-12)


def test_refined_step_is_none_when_the_floor_is_not_twice_smaller_than_h():
    # 10 * sqrt(eps) = 1.49e-7 of float64 is above h / 2 = 1.25e-7, below h / 1.5.
    assert refined_step(2.5e-7, "float64") is None


def test_a_zero_pre_activation_that_does_not_move_is_no_kink(xp, wrong_dW):
    """A wrong dW2 fails even where a sample sits on every ReLU's kink without moving."""
    net = MultiLayerNet(5, [4, 4], 3, dtype="float64", seed=0, xp=xp)  # zero biases
    x_host = host_rng(6).standard_normal((3, 5))
    x_host[0] = 0.0  # so z1[0] = 0, a1[0] = 0 and z2[0] = a1[0] @ W2 + b2 = 0: all on kinks
    x = to_device(x_host, dtype="float64", xp=xp)
    t = to_device([0, 1, 2], dtype="int64", xp=xp)
    report = check_gradients(net, x, t, params=["W2"], h=H)
    # Moving W2[i, j] by h moves z2[0, j] by h * a1[0, i] = 0: it stays at 0 and never
    # crosses the kink, so the loss is smooth along every W2 element (the other samples'
    # pre-activations are all more than 0.1 away from 0, out of reach of steps of h).
    assert report.params[0].kinks == 0
    assert not report.passed


def test_directional_check_passes_a_correct_network(xp):
    report = directional_check(*problem(xp, "sigmoid"), n_directions=3, seed=0)
    assert isinstance(report, DirectionalReport)
    assert report.passed and len(report.directions) == 3
    assert all(d.abs_error < 1e-9 for d in report.directions)
    assert str(report).splitlines()[-1] == "PASSED"


def test_directional_check_catches_a_wrong_backward(cpu_xp, wrong_dW):
    report = directional_check(*problem(cpu_xp, "sigmoid"), n_directions=3, seed=0)
    assert not report.passed
    assert all(not d.passed for d in report.directions)
    assert "FAIL" in str(report) and str(report).splitlines()[-1] == "FAILED"


@DEPTHS
def test_directional_check_leaves_out_directions_across_a_kink(cpu_xp, hidden):
    net, x, t = kinked_problem(cpu_xp, hidden)
    report = directional_check(net, x, t, n_directions=4, seed=0, params=["b1"])
    assert all(d.kink for d in report.directions)  # b1[2] moves z1[0, 2] in every direction
    assert not report.compared and "kink (left out)" in str(report)


def dead_unit_problem(xp):
    """``kinked_problem`` with ReLU unit 2's weights and bias 0: its input z1[:, 2] is
    exactly 0 for both samples, a kink at every step, that b1[2] moves in every direction."""
    net, x, t = kinked_problem(xp)
    W1, b1 = to_numpy(net.params["W1"]).copy(), to_numpy(net.params["b1"]).copy()
    W1[:, 2], b1[2] = 0.0, 0.0
    net.params["W1"] = to_device(W1, dtype="float64", xp=xp)
    net.params["b1"] = to_device(b1, dtype="float64", xp=xp)
    return net, x, t


def test_directional_check_with_no_direction_compared_passes_element_by_element(xp):
    net, x, t = dead_unit_problem(xp)
    report = directional_check(net, x, t, n_directions=4, seed=0, params=["b1"])
    assert not report.compared  # every direction crosses the kink and disagrees
    assert report.passed, str(report)
    assert report.fallback.params[0].kink_elements == ((2,),)  # the others compared
    text = str(report)
    assert "fell back: no direction was compared" in text and "parameters (b1) were checked" in text
    assert text.splitlines()[-1] == "PASSED"


def test_directional_check_falling_back_says_which_parameter_no_element_checked(xp):
    net, x, _ = dead_unit_problem(xp)
    for name in ("W1", "b1"):  # every ReLU input exactly 0: every b1 element at a kink
        net.params[name] = xp.zeros_like(net.params[name])
    t = to_device([1, 1], dtype="int64", xp=xp)  # [1, 0] has a loss flat in the outputs
    report = directional_check(net, x, t, n_directions=4, seed=0, params=["b1"])
    assert report.fallback.params[0].all_kinks
    last = "INCONCLUSIVE (every element is on a kink: nothing was compared)"
    assert str(report).splitlines()[-1] == last and report.inconclusive and not report


def test_directional_check_with_no_direction_compared_fails_a_wrong_gradient(xp, wrong_gradient_of):
    net, x, t = dead_unit_problem(xp)
    wrong_gradient_of(Affine, "db")
    report = directional_check(net, x, t, n_directions=4, seed=0, params=["b1"])
    assert not report.compared and report.fallback is not None
    assert not report.passed and not report.fallback.params[0].passed
    assert str(report).splitlines()[-1] == "FAILED"


class BookReLU:
    """The book's ReLU as a user writes it: no hooks, so no layer reports its kinks."""

    def forward(self, x):
        self.mask = x <= 0
        return namespace_of(x).where(self.mask, 0.0, x)

    def backward(self, dout):
        return namespace_of(dout).where(self.mask, 0.0, dout)


def test_a_direction_failing_at_a_kink_no_layer_reports_falls_back_element_by_element(xp):
    # Every ReLU input is exactly 0 (zero inputs and biases): a direction moves some units
    # up and others down, so neither one-sided difference agrees and the kink goes unseen.
    rng = host_rng(0)
    W1, W2 = (to_device(rng.standard_normal(s), dtype="float64", xp=xp) for s in ((4, 3), (3, 2)))
    b1, b2 = (to_device(np.zeros(n), dtype="float64", xp=xp) for n in (3, 2))
    net = Sequential([Affine(W1, b1), BookReLU(), Affine(W2, b2)], loss=SoftmaxWithLoss())
    x = to_device(np.zeros((2, 4)), dtype="float64", xp=xp)
    t = to_device([0, 0], dtype="int64", xp=xp)
    report = directional_check(net, x, t, n_directions=4, seed=0)
    assert any(not d.kink and not d.passed for d in report.directions)  # unseen: compared
    assert report.fallback is not None and report.passed, str(report)
    assert "fell back: direction" in str(report)


def test_a_direction_across_a_kink_that_agrees_is_not_taken_again(cpu_xp):
    # ReLU unit 2 feeds nothing (W2[2] = 0): every direction crosses its kink at z1[0, 2]
    # and agrees all the same, so none is differenced again at the smaller step.
    net, x, t = kinked_problem(cpu_xp)
    W2 = to_numpy(net.params["W2"]).copy()
    W2[2] = 0.0
    net.params["W2"] = to_device(W2, dtype="float64", xp=cpu_xp)
    report = directional_check(net, x, t, n_directions=4, seed=0, params=["b1"])
    assert all(d.kink and d.passed for d in report.directions), str(report)
    assert all(d.step == report.h for d in report.directions), str(report)
    assert "refined" not in str(report)


def test_directions_across_a_kink_that_agree_are_compared(cpu_xp, wrong_gradient_of):
    # As test_a_direction_across_a_kink_that_agrees_is_not_taken_again: every direction
    # crosses the kink of a unit that feeds nothing and agrees, which is a check passed by
    # the directions, not one left to the element-wise fallback (a float32 check of a ReLU
    # network failed so, correct, when no direction compared was a failure).
    net, x, t = kinked_problem(cpu_xp)
    W2 = to_numpy(net.params["W2"]).copy()
    W2[2] = 0.0
    net.params["W2"] = to_device(W2, dtype="float64", xp=cpu_xp)
    report = directional_check(net, x, t, n_directions=4, seed=0, params=["b1"])
    assert report.passed, str(report)
    assert "ok (across a kink)" in str(report) and report.fallback is None
    wrong_gradient_of(Affine, "db")
    assert not directional_check(net, x, t, n_directions=4, seed=0, params=["b1"])


@pytest.mark.parametrize("method", METHODS)
def test_check_gradients_runs_every_method(cpu_xp, method):
    report = check_gradients(*problem(cpu_xp, "tanh"), method=method)
    assert isinstance(report, DirectionalReport if method == "directional" else GradientReport)
    assert report.passed and report.method == method
    json.dumps(report.as_dict())


@pytest.mark.parametrize("method", METHODS)
def test_check_gradients_fails_a_wrong_backward_with_every_method(cpu_xp, wrong_dW, method):
    assert not check_gradients(*problem(cpu_xp, "tanh"), method=method).passed


def test_unknown_methods_name_the_valid_ones(cpu_xp):
    net, x, t = problem(cpu_xp)
    with pytest.raises(ValueError, match=r"'fast'.*loop, batched, directional"):
        check_gradients(net, x, t, method="fast")
    with pytest.raises(ValueError, match=r"'directional'.*loop, batched$"):
        net_numerical_gradient(net, x, t, method="directional")


class PlainTanh:
    """tanh without the local-perturbation hooks: only forward and backward."""

    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, dout=1):
        return dout * (1.0 - self.out**2)


class Leaky(ReLU):
    """A user's leaky ReLU (slope 0.1 below 0), right, that inherits ReLU's hooks."""

    def forward(self, x):
        self.mask = x > 0
        return namespace_of(x).where(self.mask, x, 0.1 * x)

    def backward(self, dout):
        return namespace_of(dout).where(self.mask, dout, 0.1 * dout)


def test_a_subclass_that_replaces_forward_is_not_perturbed_by_the_hooks_it_inherits(cpu_xp):
    # Trusted, ReLU's hooks (max(x, 0)) failed the right W1 and b1 of the leaky one.
    net, x, t = problem(cpu_xp)
    net = Sequential([net.layers[0], Leaky(), *net.layers[2:]], loss=net.last_layer)
    report = check_gradients(net, x, t, method="batched")
    assert report.passed, str(report)
    assert [p.via for p in report.params][:3] == ["loop", "loop", "local"], str(report)


class BackwardOff(ReLU):
    """A ReLU whose backward lets a tenth of ``dout`` through where ``x <= 0`` (wrong)."""

    def backward(self, dout):
        return namespace_of(dout).where(self.mask, dout, 0.1 * dout)


def test_a_subclass_that_replaces_only_backward_keeps_the_hooks(cpu_xp):
    net, x, t = problem(cpu_xp)
    net = Sequential([net.layers[0], BackwardOff(), *net.layers[2:]], loss=net.last_layer)
    report = check_gradients(net, x, t, method="batched", params=["W1"])
    assert [(p.via, p.passed) for p in report.params] == [("local", False)], str(report)


def test_a_layer_without_hooks_falls_back_to_the_loop_before_it():
    net, x, t = problem(namespace("cpu"), "tanh")
    net = Sequential(
        [net.layers[0], PlainTanh(), *net.layers[2:]],
        loss=net.last_layer,
        weight_decay=net.weight_decay,
    )
    report = check_gradients(net, x, t, h=H)
    assert report.passed
    assert {p.name: p.via for p in report.params} == {
        "W1": "loop", "b1": "loop", "W2": "local", "b2": "local", "W3": "local", "b3": "local"
    }  # fmt: skip
    assert_same_differences(
        net,
        x,
        t,
        net_numerical_gradient(net, x, t, h=H),
        net_numerical_gradient(net, x, t, method="loop", h=H),
    )


class ShiftedLoss(MultiLayerNet):
    """A network whose loss adds a term the layers do not know about."""

    def loss(self, x, t):
        b = self.params["b1"]
        return super().loss(x, t) + 0.5 * namespace_of(b).sum(b**3)


def test_a_loss_the_layers_do_not_explain_falls_back_to_the_loop(cpu_xp):
    net = ShiftedLoss(12, [7], 4, dtype="float64", seed=0, xp=cpu_xp)
    _, x, t = problem(cpu_xp)
    net.params["b1"] = to_device(np.linspace(0.1, 0.7, 7), dtype="float64", xp=cpu_xp)
    with pytest.warns(UserWarning, match="by the loop"):
        batched = net_numerical_gradient(net, x, t, h=H)
    loop = net_numerical_gradient(net, x, t, method="loop", h=H)
    assert_same_differences(net, x, t, batched, loop)


@pytest.mark.parametrize("method", METHODS)
def test_cli_gradcheck_method_passes(capsys, method):
    args = ["gradcheck", "--input-size", "12", "--hidden", "7", "--output-size", "4"]
    assert main([*args, "--batch-size", "5", "--method", method]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "PASSED"


@pytest.mark.parametrize("method", ["batched", "directional"])
def test_cli_gradcheck_method_fails_a_wrong_backward(capsys, wrong_dW, method):
    args = ["gradcheck", "--input-size", "12", "--hidden", "7", "--output-size", "4"]
    assert main([*args, "--activation", "tanh", "--method", method]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "FAILED"


def test_cli_gradcheck_rejects_an_unknown_method(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", "--method", "fast"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err


# Found by a GPU-readiness review: what CuPy would pay for, caught on the CPU.


def _labelled(xp, hidden, *, batch=6, **kwargs):
    net = MultiLayerNet(12, hidden, 4, dtype="float64", seed=0, xp=xp, **kwargs)
    rng = host_rng(1)
    x = to_device(rng.random((batch, 12)), dtype="float64", xp=xp)
    t = to_device(rng.integers(0, 4, batch), dtype="int64", xp=xp)
    return net, x, t


def test_batched_chunks_slice_within_bounds_on_strict_arrays(cpu_xp, monkeypatch):
    # W1's 60 elements in chunks of 7 (one worker; 2,304 bytes an element here): the last
    # chunk's slice must stop at the end, as the standard leaves a stop past it undefined
    # (array_api_strict refuses it; NumPy and CuPy clamp it).
    monkeypatch.setattr(perturb, "_workers", lambda x: 1)
    net, x, t = _labelled(cpu_xp, [5])
    local = perturb.LocalNet.of(net, x, t)
    budget = 7 * local.bytes_per_element("W1")
    grads = net_numerical_gradient(net, x, t, method="batched", memory_budget=budget)
    loop = net_numerical_gradient(net, x, t, method="loop")
    for name in loop:
        np.testing.assert_allclose(
            to_numpy(grads[name]), to_numpy(loop[name]), rtol=1e-6, atol=1e-9
        )


@pytest.mark.parametrize("method", ["loop", "batched"])
@pytest.mark.parametrize("options", [{}, {"use_dropout": True}, {"use_batchnorm": True}])
def test_integer_labels_are_read_to_the_host_a_fixed_number_of_times(method, options):
    # SoftmaxWithLoss checks integer labels' range with two host reads per forward pass; a
    # gradient check makes two passes per parameter element, so it must check them once.
    reads = []
    for hidden in ([3], [6]):
        net, x, t = _labelled(namespace("cpu"), hidden, **options)  # opcount counts NumPy
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ops = count_operations(
                lambda x, t, net=net: check_gradients(net, x, t, method=method), x, t,
                params=net.params,
            )  # fmt: skip
        reads.append(ops["to host: int"])
    assert reads[0] == reads[1] <= 12, reads


ELEMENTWISE_LOSSES = {
    "sigmoid-bce mean": lambda: SigmoidWithLoss(),
    "sigmoid-bce sum": lambda: SigmoidWithLoss(reduction="sum"),
    "mse mean": lambda: MeanSquaredError(),
    "mse sum": lambda: MeanSquaredError(reduction="sum"),
}


def elementwise_loss_problem(xp, loss):
    """A sigmoid MLP with weight decay on targets 0.01 / 0.99, as the course network trains."""
    rng = np.random.default_rng(0)
    x = to_device(rng.random((9, 12)), dtype="float64", xp=xp)
    t = to_device(0.01 + 0.98 * np.eye(4)[rng.integers(0, 4, 9)], dtype="float64", xp=xp)
    net = MultiLayerNet(
        12, [6], 4, activation="sigmoid", loss=loss, weight_decay=0.1, dtype="float64",
        seed=0, xp=xp,
    )  # fmt: skip
    return net, x, t


@pytest.mark.parametrize("loss", ELEMENTWISE_LOSSES)
def test_sigmoid_bce_and_mse_nets_are_differenced_locally_as_the_loop_does(cpu_xp, loss):
    net, x, t = elementwise_loss_problem(cpu_xp, ELEMENTWISE_LOSSES[loss]())
    batched = net_numerical_gradient(net, x, t, method="batched")
    loop = net_numerical_gradient(net, x, t, method="loop")
    for name in loop:
        np.testing.assert_allclose(
            to_numpy(batched[name]), to_numpy(loop[name]), rtol=1e-6, atol=1e-8
        )
    report = check_gradients(net, x, t)
    assert report.passed and {p.via for p in report.params} == {"local"}


@pytest.mark.parametrize("loss", ELEMENTWISE_LOSSES)
def test_a_wrong_elementwise_loss_backward_fails_the_batched_check(cpu_xp, loss, monkeypatch):
    layer = ELEMENTWISE_LOSSES[loss]()
    original = type(layer).backward
    monkeypatch.setattr(type(layer), "backward", lambda self, dout=1: 1.01 * original(self, dout))
    assert not check_gradients(*elementwise_loss_problem(cpu_xp, layer)).passed


def test_a_softmax_net_on_target_range_rows_passes_and_a_wrong_backward_fails(cpu_xp, monkeypatch):
    """0.01/0.99 rows (Trainer's target_range) do not sum to 1: the loss's gradient is
    y * sum(t) - t, and the check, local perturbations included, compares against it."""
    rng = np.random.default_rng(3)
    x = to_device(rng.standard_normal((5, 6)), dtype="float64", xp=cpu_xp)
    t = to_device(0.01 + 0.98 * np.eye(4)[[0, 3, 1, 2, 2]], dtype="float64", xp=cpu_xp)
    net = MultiLayerNet(6, [5], 4, activation="tanh", dtype="float64", seed=0, xp=cpu_xp)
    assert check_gradients(net, x, t).passed
    # y - t, the gradient only for rows that sum to 1 (the layer before the fix):
    monkeypatch.setattr(SoftmaxWithLoss, "backward", lambda self, dout=1: (self.y - self.t) / 5)
    assert not check_gradients(net, x, t).passed


FAR_LOSSES = {
    "softmax": (lambda: SoftmaxWithLoss(), [[1.0, -1.0]], [0, 0]),
    "sigmoid-bce": (lambda: SigmoidWithLoss(), [[1.0]], [[1.0], [1.0]]),
}


@pytest.mark.parametrize("loss", FAR_LOSSES)
def test_batched_equals_the_loop_when_a_step_moves_a_score_far(cpu_xp, loss):
    """Inputs of 2e5 and 1e6 move the scores by 20 and 100 per step h of W: the samples'
    dominant score moves far down in one of the two passes. The loss is flat there (0, to
    the last bit), so the loop's differences and backprop are 0; local perturbations
    computed log1p(y * expm1(dx)) with y = 1, which loses every digit at dx = -20 (1e-4
    instead of 0) and is log1p(-1) = -inf at dx = -100, failing a correct network."""
    make, W, t = FAR_LOSSES[loss]
    W = to_device(W, dtype="float64", xp=cpu_xp)
    net = Sequential([Affine(W, cpu_xp.zeros(W.shape[1], dtype=cpu_xp.float64))], loss=make())
    x = to_device([[2e5], [1e6]], dtype="float64", xp=cpu_xp)
    t = to_device(t, dtype="int64" if loss == "softmax" else "float64", xp=cpu_xp)
    batched = net_numerical_gradient(net, x, t, method="batched")
    loop = net_numerical_gradient(net, x, t, method="loop")
    for name in loop:
        np.testing.assert_allclose(to_numpy(batched[name]), to_numpy(loop[name]), atol=1e-12)
    report = check_gradients(net, x, t)
    assert report.passed and {p.via for p in report.params} == {"local"}, report


def test_batched_differences_a_float32_network_in_float32_on_float64_data(cpu_xp):
    """A float32 network computes in float32 on float64 data (Sequential.predict converts
    it), and so does the loop; local perturbations must not compute in float64 instead:
    another function, and another dtype of gradient."""
    net = MultiLayerNet(4, [5], 3, dtype="float32", seed=0, xp=cpu_xp)
    rng = host_rng(0)
    x = to_device(rng.standard_normal((3, 4)), dtype="float64", xp=cpu_xp)
    t = to_device([0, 1, 2], dtype="int64", xp=cpu_xp)
    batched = net_numerical_gradient(net, x, t, method="batched", h=1e-2)
    loop = net_numerical_gradient(net, x, t, method="loop", h=1e-2)
    as32 = net_numerical_gradient(net, cpu_xp.astype(x, cpu_xp.float32), t, h=1e-2)
    for name in loop:
        assert batched[name].dtype == loop[name].dtype == cpu_xp.float32, name
        np.testing.assert_array_equal(to_numpy(batched[name]), to_numpy(as32[name]), err_msg=name)


RANDOM_LOSSES = {
    "softmax labels": (lambda: SoftmaxWithLoss(), "labels"),
    "softmax rows summing to 1.5": (lambda: SoftmaxWithLoss(reduction="sum"), "rows"),
    "sigmoid-bce": (lambda: SigmoidWithLoss(), "rows"),
    "mse sum": (lambda: MeanSquaredError(reduction="sum"), "values"),
}


@st.composite
def random_layered_problems(draw):
    """A random stack of Affine, ReLU, Tanh and Sigmoid layers with a random loss, on values
    that are multiples of 1/2 (ReLU inputs exactly at 0, blank input columns), at a random
    scale, and a random memory budget."""
    widths = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    activations = [draw(st.sampled_from([ReLU, Tanh, None])) for _ in widths]
    output = draw(st.sampled_from([None, ReLU, Tanh]))
    return {
        "sizes": [draw(st.integers(1, 5)), *widths],
        "activations": [*activations[:-1], output],
        "loss": draw(st.sampled_from(list(RANDOM_LOSSES))),
        "batch": draw(st.integers(1, 5)),
        "scale": draw(st.sampled_from([1.0, 1e-3, 30.0, 2e5])),
        "decay": draw(st.sampled_from([0.0, 0.5])),
        "budget": draw(st.sampled_from([1, 1024, None])),
        "seed": draw(st.integers(0, 2**16)),
    }


def build_random_problem(xp, spec):
    rng = np.random.default_rng(spec["seed"])

    def halves(*shape):
        return np.round(2 * rng.standard_normal(shape)) / 2

    layers, sizes = [], spec["sizes"]
    for k, (fan_in, fan_out) in enumerate(pairwise(sizes)):
        W, b = (
            to_device(a, dtype="float64", xp=xp) for a in (halves(fan_in, fan_out), halves(fan_out))
        )
        layers.append(Affine(W, b, input_grad=k > 0))
        if spec["activations"][k] is not None:
            layers.append(spec["activations"][k]())
    make, targets = RANDOM_LOSSES[spec["loss"]]
    net = Sequential(layers, loss=make(), weight_decay=spec["decay"])
    n, c = spec["batch"], sizes[-1]
    x = spec["scale"] * halves(n, sizes[0])
    x[:, rng.integers(0, sizes[0])] = 0.0  # a blank input column
    t = {
        "labels": lambda: rng.integers(0, c, n),
        "rows": lambda: 1.5 * rng.random((n, c)),
        "values": lambda: halves(n, c),
    }[targets]()
    dtype = "int64" if targets == "labels" else "float64"
    return net, to_device(x, dtype="float64", xp=xp), to_device(t, dtype=dtype, xp=xp)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(spec=random_layered_problems())
def test_random_layered_networks_difference_locally_as_the_loop_does(cpu_xp, spec):
    """On random networks, the batched differences equal the loop's (beyond the loop's own
    rounding, about eps * |L| / h with L the largest value in the forward pass), and the kinks
    that local perturbations flag are the ones the loop through the layers meets."""
    net, x, t = build_random_problem(cpu_xp, spec)
    batched = net_numerical_gradient(net, x, t, memory_budget=spec["budget"])
    loop = net_numerical_gradient(net, x, t, method="loop")
    local = LocalNet.of(net, x, t)
    largest = max([1.0, *(float(cpu_xp.max(cpu_xp.abs(a))) for a in local.inputs[1:])])
    floor = 64 * np.finfo(np.float64).eps * largest / H
    for name in loop:
        np.testing.assert_allclose(
            to_numpy(batched[name]), to_numpy(loop[name]), rtol=1e-7, atol=floor, err_msg=name
        )
        _, kinks = central_differences(local, name, H, 1024)
        _, met = loop_differences(local, name, H)
        np.testing.assert_array_equal(to_numpy(kinks), to_numpy(met), err_msg=name)
