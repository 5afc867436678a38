"""check_function and check_layer with method="directional": a few random directions
instead of every element, falling back to the element-wise check where one disagrees."""

import array_api_compat
import numpy as np
import pytest

from xpnet import DirectionalReport, check_function, check_layer
from xpnet.backend import namespace_of, to_device
from xpnet.layers import Affine, ReLU


def arr(xp, data):
    return to_device(np.asarray(data), dtype="float64", xp=xp)


def counted(f):
    """``f``, counting its calls in ``calls``."""

    def wrapped(v):
        wrapped.calls += 1
        return f(v)

    wrapped.calls = 0
    return wrapped


def wave(v):
    """sum(sin(v) * v), whose gradient is cos(v) * v + sin(v)."""
    xp = namespace_of(v)
    return xp.sum(xp.sin(v) * v)


def wave_gradient(host):
    return np.cos(host) * host + np.sin(host)


def point(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_a_correct_gradient_passes_in_a_few_calls_whatever_the_size(xp):
    host = point((100, 100))
    f = counted(wave)
    report = check_function(f, arr(xp, host), arr(xp, wave_gradient(host)), method="directional")
    assert isinstance(report, DirectionalReport) and report.fallback is None, str(report)
    assert report and len(report.directions) == 3
    assert f.calls <= 1 + 2 * 3, f.calls  # f(x), then f(x +- h v) per direction


def test_n_directions_sets_how_many_directions_are_compared(xp):
    host = point(50)
    x, g = arr(xp, host), arr(xp, wave_gradient(host))
    report = check_function(wave, x, g, method="directional", n_directions=5, seed=2)
    assert report and len(report.directions) == 5 and report.seed == 2


def test_a_gradient_one_percent_off_fails_element_by_element(xp):
    host = point((20, 30))
    report = check_function(
        wave, arr(xp, host), arr(xp, 1.01 * wave_gradient(host)), method="directional"
    )
    assert not report and report.disagreeing == [0, 1, 2], str(report)
    assert not report.fallback and "600 of 600 elements fail" in str(report), str(report)


def test_one_element_off_by_a_lot_fails_naming_the_element(xp):
    host = point((20, 30))
    claimed = wave_gradient(host)
    claimed[3, 4] += 1.0
    report = check_function(wave, arr(xp, host), arr(xp, claimed), method="directional")
    assert not report and report.fallback is not None, str(report)
    assert "1 of 600 elements fail; worst x[3, 4]" in str(report), str(report)
    assert str(report).endswith("FAILED")


def an_element_off_by_a_thousandth_among_10000():
    """A point of ``wave`` with 10,000 elements, and its gradient with x[3, 4] off by 1e-3."""
    host = point((100, 100))
    claimed = wave_gradient(host)
    claimed[3, 4] += 1e-3
    return host, claimed


def test_one_element_off_by_a_thousandth_among_10000_is_diluted_below_the_tolerance(xp):
    """Along a unit direction an element's error is weighed by its component, about
    1 / sqrt(10000): 1e-3 of error moves grad . v by about 1e-5, within its tolerance."""
    host, claimed = an_element_off_by_a_thousandth_among_10000()
    report = check_function(wave, arr(xp, host), arr(xp, claimed), method="directional")
    assert report and report.fallback is None, "directions now see it"


def test_the_element_wise_check_fails_the_element_that_directions_dilute():
    """The case above, element by element: 20,000 calls of f, so on NumPy alone (the other
    backends' loop is tested on smaller arrays above)."""
    host, claimed = an_element_off_by_a_thousandth_among_10000()
    report = check_function(wave, host, claimed)
    assert not report and "1 of 10000 elements fail; worst x[3, 4]" in str(report), str(report)


def relu_sum(v):
    """sum(relu(v) * w) for a fixed w: kinks where v is 0."""
    xp = namespace_of(v)
    w = xp.arange(1, v.shape[0] + 1, dtype=xp.float64, device=array_api_compat.device(v))
    return xp.sum(xp.maximum(v, 0.0) * w)


def relu_point(zeros):
    """A point of relu_sum with ``zeros`` exact zeros, and a gradient taking 0 there."""
    host = point(12)
    host[:zeros] = 0.0
    return host, np.where(host > 0, np.arange(1, 13, dtype=np.float64), 0.0)


@pytest.mark.parametrize("zeros", [1, 4])
def test_relu_at_exact_zeros_is_no_false_alarm(xp, zeros):
    host, grad = relu_point(zeros)
    report = check_function(relu_sum, arr(xp, host), arr(xp, grad), method="directional")
    assert report, str(report)


def test_several_kinks_along_a_direction_fall_back_to_elements_reporting_them(xp):
    """Each direction moves the 4 zeros to both sides: the gradient (0 at each) matches
    neither one-sided difference along it, so it disagrees, and the elements decide."""
    host, grad = relu_point(4)
    report = check_function(relu_sum, arr(xp, host), arr(xp, grad), method="directional")
    assert report and report.fallback.params[0].kinks == 4, str(report)


def test_a_wrong_gradient_beside_a_kink_still_fails(xp):
    host, grad = relu_point(1)
    grad[5] += 1.0
    report = check_function(relu_sum, arr(xp, host), arr(xp, grad), method="directional")
    assert not report and "worst x[5]" in str(report), str(report)


def test_a_dict_of_arrays_is_checked_along_directions_over_all_of_them(xp):
    host = {"a": point((3, 2)), "b": point(2, seed=1)}

    def f(q):
        return namespace_of(q["a"]).sum((q["a"] @ q["b"]) ** 2)

    r = host["a"] @ host["b"]
    grad = {"a": 2 * r[:, None] * host["b"][None, :], "b": 2 * (r @ host["a"])}
    x = {k: arr(xp, v) for k, v in host.items()}
    report = check_function(f, x, {k: arr(xp, v) for k, v in grad.items()}, method="directional")
    assert report and report.params == ["a", "b"], str(report)
    wrong = {"a": arr(xp, grad["a"]), "b": arr(xp, 2 * grad["b"])}
    assert not check_function(f, x, wrong, method="directional")


def test_the_report_prints_as_the_networks_directional_check_does(xp):
    host = point(10)
    report = check_function(wave, arr(xp, host), arr(xp, wave_gradient(host)), method="directional")
    text = str(report)
    assert text.startswith("directional gradient check (float64, h=1e-05, 3 random unit")
    assert "over x, seed 0" in text and text.endswith("PASSED"), text


def test_an_unknown_method_is_refused_naming_the_valid_ones(xp):
    with pytest.raises(ValueError, match=r"unknown method 'batched': expected one of loop, "):
        check_function(wave, arr(xp, point(3)), arr(xp, point(3)), method="batched")


def test_no_directions_is_refused(xp):
    with pytest.raises(ValueError, match=r"n_directions must be at least 1, got 0"):
        check_function(wave, arr(xp, point(3)), arr(xp, point(3)), method="directional",
                       n_directions=0)  # fmt: skip


def test_a_gradient_of_the_wrong_shape_is_refused_before_any_direction(xp):
    with pytest.raises(ValueError, match=r"gradient of x has shape \(2,\), but x has shape"):
        check_function(wave, arr(xp, point(3)), arr(xp, point(2)), method="directional")


class ScaledDW(Affine):
    """An Affine whose ``backward`` stores ``dW`` 1% too large."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.dW = 1.01 * self.dW
        return dx


def test_check_layer_passes_a_correct_layer_along_directions(xp):
    layer = Affine(arr(xp, point((5, 3))), arr(xp, point(3, seed=1)))
    report = check_layer(layer, arr(xp, point((4, 5), seed=2)), method="directional")
    assert isinstance(report, DirectionalReport) and report, str(report)
    assert report.params == ["x", "W", "b"] and report.fallback is None


def test_check_layer_fails_a_wrong_dW_naming_it_element_by_element(xp):
    layer = ScaledDW(arr(xp, point((5, 3))), arr(xp, point(3, seed=1)))
    report = check_layer(layer, arr(xp, point((4, 5), seed=2)), method="directional")
    assert not report and report.fallback is not None, str(report)
    assert [p.name for p in report.fallback.params if not p.passed] == ["W"], str(report)


def test_check_layer_at_relu_zeros_is_no_false_alarm(xp):
    report = check_layer(ReLU(), arr(xp, [[0.0, -0.5, 0.0], [0.3, 0.0, 2.0]]),
                         method="directional")  # fmt: skip
    assert report, str(report)


def in_float32(v):
    """sum(v ** 2) computed in float32: a precision note, found before any direction."""
    xp = namespace_of(v)
    return xp.sum(xp.astype(v, xp.float32) ** 2)


def test_a_note_found_before_falling_back_is_printed_once(xp):
    host = point(5)
    report = check_function(in_float32, arr(xp, host), arr(xp, 3 * host), method="directional")
    assert not report and report.fallback is not None, str(report)
    assert str(report).count("precision: ") == 1, str(report)


class Float32ScaledDW(ScaledDW):
    """A :class:`ScaledDW` whose output is float32."""

    def forward(self, x):
        out = super().forward(x)
        return namespace_of(out).astype(out, namespace_of(out).float32)


def test_check_layer_prints_a_note_found_before_falling_back_once(xp):
    layer = Float32ScaledDW(arr(xp, point((5, 3))), arr(xp, point(3, seed=1)))
    report = check_layer(layer, arr(xp, point((4, 5), seed=2)), method="directional")
    assert not report and report.fallback is not None, str(report)
    assert str(report).count("precision: ") == 1, str(report)


def tiny_wave(v):
    """1e-9 * wave(v): derivatives of about 1e-9, above the loss's rounding at h = 1e-5
    (about 4e-10) and under float64's default atol of 1e-8."""
    return 1e-9 * wave(v)


@pytest.mark.parametrize("factor", [1.0, 3.0], ids=["correct", "three-times-off"])
def test_directions_all_within_the_default_atol_are_inconclusive(xp, factor):
    # The atol passes a gradient three times off as well as the right one: neither passes.
    host = point(10)
    grad = arr(xp, factor * 1e-9 * wave_gradient(host))
    report = check_function(tiny_wave, arr(xp, host), grad, method="directional")
    assert report.fallback is None and report.unresolved, str(report)
    assert report.inconclusive and not report and not report.passed
    assert report.verdict().startswith("INCONCLUSIVE (the atol is as large as the directional")
    assert "atol: 1e-08 is as large as every directional derivative compared" in str(report)
    assert report.as_dict()["inconclusive"] is True


def test_an_atol_of_the_users_is_used_as_it_is_and_resolves_what_it_can(xp):
    host = point(10)
    x, grad = arr(xp, host), arr(xp, 1e-9 * wave_gradient(host))
    report = check_function(tiny_wave, x, grad, method="directional", atol=1e-13)
    assert report.passed and not report.inconclusive and not report.unresolved, str(report)
    # Even an atol as large as the derivatives: the user chose it.
    report = check_function(tiny_wave, x, grad, method="directional", atol=1e-8)
    assert report.passed and not report.inconclusive, str(report)


def test_a_fallback_names_swapped_gradients_and_a_transposed_one(xp):
    """sum(sin(a) * b) + sum(W * x.T): grad a = cos(a) * b, grad b = sin(a), grad W = x.T."""
    a, b = arr(xp, point((3, 3))), arr(xp, point((3, 3), seed=1))
    W, x = arr(xp, point((3, 3), seed=2)), arr(xp, point((3, 3), seed=3))

    def f(p):
        xp = namespace_of(p["a"])
        return xp.sum(xp.sin(p["a"]) * p["b"]) + xp.sum(p["W"] * x.T)

    grad = {"a": xp.sin(a), "b": xp.cos(a) * b, "W": x}
    report = check_function(f, {"a": a, "b": b, "W": W}, grad, method="directional")
    assert not report and report.fallback.swapped == [("a", "b")], str(report)
    assert [p.name for p in report.fallback.params if p.transposed] == ["W"], str(report)
