"""check_function(f, x, backward=vjp): the vector-Jacobian product of a function with an
array output, checked for one seeded random dout against central differences of
sum(f(x) * dout)."""

import array_api_compat
import numpy as np
import pytest
from numeric import dev

from xpnet import DirectionalReport, GradientReport, check_function
from xpnet.backend import namespace_of, to_numpy


def point(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def tanh_affine(p):
    """tanh(x @ W) of the mapping p = {"x": (4, 3), "W": (3, 3)}: a (4, 3) output."""
    xp = namespace_of(p["x"], p["W"])
    return xp.tanh(p["x"] @ p["W"])


def tanh_affine_backward(x, W, transposed=False, missing_factor=False):
    """The hand-derived backward of tanh_affine at (x, W); optionally with a slip: dx
    through W instead of W.T, or dW without tanh's factor 1 - y**2."""

    def backward(dout):
        xp = namespace_of(dout)
        y = xp.tanh(x @ W)
        dz = dout * (1 - y**2)
        dx = dz @ (W if transposed else W.T)
        dW = x.T @ (dout if missing_factor else dz)
        return {"x": dx, "W": dW}

    return backward


def softmax_rows(x):
    xp = namespace_of(x)
    e = xp.exp(x - xp.max(x, axis=1, keepdims=True))
    return e / xp.sum(e, axis=1, keepdims=True)


def softmax_rows_backward(x):
    """dx = y * (dout - sum(dout * y, axis=1)), the book's Softmax backward."""

    def backward(dout):
        xp = namespace_of(dout)
        y = softmax_rows(x)
        return y * (dout - xp.sum(dout * y, axis=1, keepdims=True))

    return backward


def softmax_rows_jacobian(host):
    """d y[i, a] / d x[j, b] of softmax_rows as a (size, size) matrix, built by hand in
    float64 NumPy: y[i, a] * (a == b) - y[i, a] * y[i, b] within a row, 0 across rows."""
    e = np.exp(host - host.max(axis=1, keepdims=True))
    y = e / e.sum(axis=1, keepdims=True)
    rows, cols = host.shape
    jacobian = np.zeros((host.size, host.size))
    for i in range(rows):
        block = np.diag(y[i]) - np.outer(y[i], y[i])
        jacobian[i * cols : (i + 1) * cols, i * cols : (i + 1) * cols] = block
    return jacobian


def tanh_affine_point(xp):
    return {"x": dev(xp, point(4, 3)), "W": dev(xp, point(3, 3, seed=1))}


def test_a_correct_backward_of_tanh_of_an_affine_map_passes_for_both_arrays(xp):
    p = tanh_affine_point(xp)
    report = check_function(tanh_affine, p, backward=tanh_affine_backward(p["x"], p["W"]))
    assert isinstance(report, GradientReport)
    assert report.passed, str(report)
    assert [row.name for row in report.params] == ["x", "W"]


def test_a_correct_backward_of_a_row_wise_softmax_passes(xp):
    x = dev(xp, point(3, 5))
    assert check_function(softmax_rows, x, backward=softmax_rows_backward(x))


def test_a_backward_missing_a_factor_fails_naming_that_array(xp):
    p = tanh_affine_point(xp)
    wrong = tanh_affine_backward(p["x"], p["W"], missing_factor=True)
    report = check_function(tanh_affine, p, backward=wrong)
    assert not report.passed
    assert {row.name: row.passed for row in report.params} == {"x": True, "W": False}


def test_a_backward_through_the_untransposed_weights_fails_naming_that_array(xp):
    p = tanh_affine_point(xp)
    wrong = tanh_affine_backward(p["x"], p["W"], transposed=True)
    report = check_function(tanh_affine, p, backward=wrong)
    assert {row.name: row.passed for row in report.params} == {"x": False, "W": True}


def test_directional_passes_a_correct_backward_without_falling_back(xp):
    p = tanh_affine_point(xp)
    backward = tanh_affine_backward(p["x"], p["W"])
    report = check_function(tanh_affine, p, backward=backward, method="directional")
    assert isinstance(report, DirectionalReport)
    assert report.passed and report.fallback is None, str(report)


def test_directional_fails_a_wrong_backward_and_its_fallback_names_the_array(xp):
    p = tanh_affine_point(xp)
    wrong = tanh_affine_backward(p["x"], p["W"], missing_factor=True)
    report = check_function(tanh_affine, p, backward=wrong, method="directional")
    assert not report.passed
    assert [row.name for row in report.fallback.params if not row.passed] == ["W"]


def recording(backward):
    """``backward``, keeping a host copy of each dout it is given in ``douts``."""

    def recorded(dout):
        recorded.douts.append(np.array(to_numpy(dout)))
        return backward(dout)

    recorded.douts = []
    return recorded


def test_every_element_of_the_product_is_compared_with_the_jacobian_built_by_hand(xp):
    host = point(2, 3)
    jacobian = softmax_rows_jacobian(host)
    off = jacobian.copy()
    off[4, 1] += 0.5  # d y[1, 1] / d x[0, 1]: one wrong entry, across rows

    def backward_from(matrix):
        def backward(dout):
            flat = to_numpy(dout).reshape(-1)
            return dev(xp, (matrix.T @ flat).reshape(host.shape))

        return recording(backward)

    right = backward_from(jacobian)
    assert check_function(softmax_rows, dev(xp, host), backward=right)
    wrong = backward_from(off)
    report = check_function(softmax_rows, dev(xp, host), backward=wrong)
    (row,) = report.params
    assert not row.passed and row.failing == 1 and row.worst == (0, 1), str(report)
    (dout,) = wrong.douts
    expected = (jacobian.T @ dout.reshape(-1)).reshape(host.shape)
    assert row.worst_numerical == pytest.approx(expected[0, 1], abs=1e-8)
    assert row.worst_analytic - row.worst_numerical == pytest.approx(0.5 * dout[1, 1])


def test_backward_is_called_once_with_a_float64_dout_of_the_outputs_shape_on_xs_device(xp):
    x = dev(xp, point(3, 5))
    backward = recording(softmax_rows_backward(x))
    devices = []
    check_function(softmax_rows, x, backward=lambda d: devices.append(d.device) or backward(d))
    (dout,) = backward.douts
    assert dout.shape == (3, 5) and dout.dtype == np.float64
    assert devices == [array_api_compat.device(x)]


def test_the_dout_is_seeded_and_the_report_names_the_seed(xp):
    x = dev(xp, point(3, 5))
    drawn = {}
    for seed in (0, 0, 7):
        backward = recording(softmax_rows_backward(x))
        report = check_function(softmax_rows, x, backward=backward, seed=seed)
        drawn.setdefault(seed, []).append(backward.douts[0])
        assert f"one dout of shape (3, 5), drawn from a standard normal with seed {seed}" in (
            str(report)
        )
    np.testing.assert_array_equal(drawn[0][0], drawn[0][1])
    assert not np.allclose(drawn[0][0], drawn[7][0])


def test_a_0d_output_gets_dout_1(xp):
    x = dev(xp, point(4))
    backward = recording(lambda dout: 3 * x**2 * dout)
    report = check_function(lambda v: namespace_of(v).sum(v**3), x, backward=backward)
    assert report.passed
    assert [d.tolist() for d in backward.douts] == [1.0]
    assert "dout = 1" in str(report)


def test_a_function_computing_in_float32_gets_its_dout_in_float32(xp):
    # A float64 dout made a float32 torch product (dz @ W.T) raise torch's dtype error.
    W = dev(xp, point(5, 5, seed=1), dtype="float32")

    def f(v):
        vx = namespace_of(v)
        return vx.tanh(vx.astype(v, vx.float32) @ W)

    def backward(dout):
        y = f(x)
        return (dout * (1 - y**2)) @ W.T

    x = dev(xp, point(3, 5))
    recorded = recording(backward)
    report = check_function(f, x, backward=recorded, h=1e-2, atol=1e-2, rtol=1e-2)
    (dout,) = recorded.douts
    assert dout.dtype == np.float32
    expected = np.random.default_rng(0).spawn(1)[0].standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_array_equal(dout, expected)  # the float64 draw, rounded
    assert report.passed, str(report)


def test_a_float32_backward_is_read_as_float64(xp):
    x = dev(xp, point(3, 5))
    correct = softmax_rows_backward(x)
    assert check_function(
        softmax_rows, x, backward=lambda d: namespace_of(d).astype(correct(d), xp.float32)
    )


@pytest.mark.parametrize("given", [{}, {"grad": 1.0, "backward": lambda d: d}])
def test_grad_and_backward_are_exactly_one_of_them(xp, given):
    with pytest.raises(TypeError, match=r"exactly one of grad .* and backward .*"):
        check_function(softmax_rows, dev(xp, point(2, 3)), **given)


def test_a_gradient_passed_as_backward_is_refused_saying_to_pass_it_as_grad(xp):
    x = dev(xp, point(3))
    with pytest.raises(TypeError, match=r"backward must be a function of dout, got .*: .* as grad"):
        check_function(lambda v: namespace_of(v).sum(v**2), x, backward=2 * x)


def test_a_tuple_output_is_refused_naming_what_f_returned(xp):
    x = dev(xp, point(3))
    with pytest.raises(ValueError, match=r"<lambda> returned tuple of 2"):
        check_function(lambda v: (v, 2 * v), x, backward=lambda d: d)


def test_a_backward_of_the_wrong_shape_names_both_shapes(xp):
    x = dev(xp, point(4, 3))
    with pytest.raises(ValueError, match=r"the gradient of x has shape \(3, 4\), but x has shape"):
        check_function(softmax_rows, x, backward=lambda d: d.T)


def test_a_backward_missing_a_key_of_x_names_the_keys(xp):
    p = tanh_affine_point(xp)
    with pytest.raises(ValueError, match=r"backward\(dout\) must have the keys of x, \['W', 'x'\]"):
        check_function(tanh_affine, p, backward=lambda d: {"x": d})


def test_a_scalar_check_of_an_array_output_points_to_backward(xp):
    with pytest.raises(ValueError, match="backward="):
        check_function(lambda v: v**2, dev(xp, point(3)), dev(xp, point(3)))
