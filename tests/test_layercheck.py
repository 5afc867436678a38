"""check_layer and check_function: they pass correct backward passes, fail wrong ones, and
report kinks apart. The course notes' hand-written update is the real-world mistake."""

import re
import warnings

import numpy as np
import pytest
from numeric import central_difference
from test_gradcheck import LogShifted, StaleAffine, StaleNormalize, shown_in_ipython

from xpnet import Sequential, check_function, check_layer
from xpnet.backend import BackendMismatchError, library_of, namespace_of, to_device, to_numpy
from xpnet.cli import main
from xpnet.conv import Convolution, Pooling
from xpnet.layers import (
    Add,
    Affine,
    MeanSquaredError,
    Mul,
    ReLU,
    Sigmoid,
    SigmoidWithLoss,
    Softmax,
    SoftmaxWithLoss,
    Tanh,
)


def arr(xp, data, dtype="float64"):
    return to_device(np.asarray(data), dtype=dtype, xp=xp)


def rand(xp, *shape, seed=0, dtype="float64"):
    return arr(xp, np.random.default_rng(seed).standard_normal(shape), dtype)


def layer_cases(xp):
    """(layer, inputs) for every built-in layer, with float32 parameters where it has some."""
    targets = arr(xp, np.random.default_rng(3).random((4, 3)))
    labels = arr(xp, [0, 2, 1, 1], "int64")
    return {
        "Affine": (
            Affine(rand(xp, 5, 3, dtype="float32"), rand(xp, 3, dtype="float32")),
            [rand(xp, 4, 5)],
        ),
        "ReLU": (ReLU(), [rand(xp, 4, 3)]),
        "Sigmoid": (Sigmoid(), [rand(xp, 4, 3)]),
        "Tanh": (Tanh(), [rand(xp, 4, 3)]),
        "Softmax": (Softmax(), [rand(xp, 4, 3)]),
        "SoftmaxWithLoss": (SoftmaxWithLoss(), [rand(xp, 4, 3), labels]),
        "SoftmaxWithLoss-sum": (SoftmaxWithLoss("sum"), [rand(xp, 4, 3), labels]),
        "SigmoidWithLoss-sum": (SigmoidWithLoss("sum"), [rand(xp, 4, 3), targets]),
        "MeanSquaredError": (MeanSquaredError(), [rand(xp, 4, 3), targets]),
        "Mul": (Mul(), [rand(xp, 4, 3), rand(xp, 4, 3, seed=1)]),
        "Add": (Add(), [rand(xp, 4, 3), rand(xp, 4, 3, seed=1)]),
    }


@pytest.mark.parametrize("name", list(layer_cases(np)))  # the names; layers built per backend
def test_every_built_in_layer_passes(xp, name):
    layer, inputs = layer_cases(xp)[name]
    report = check_layer(layer, *inputs)
    assert report, str(report)
    params = set(getattr(layer, "params", ()))
    checked = {p.name for p in report.params}
    assert checked >= params and checked - params  # the parameters and at least one input


def test_scalars_are_checked_too():
    report = check_layer(Mul(), 100.0, 2.0)
    assert report and [p.name for p in report.params] == ["x", "y"]


class Square:
    """A user's layer: ``out = x**2 * a`` with a parameter ``a`` of shape (D,)."""

    params = ("a",)

    def __init__(self, a, wrong=False, sign=1.0):
        self.a, self.wrong, self.sign = a, wrong, sign

    def forward(self, x):
        self.x = x
        return x * x * self.a

    def backward(self, dout):
        self.da = self.sign * namespace_of(dout).sum(dout * self.x * self.x, axis=0)
        return dout * (self.x if self.wrong else 2.0 * self.x) * self.a


def test_a_users_layer_passes_and_keeps_its_parameters(xp):
    a = rand(xp, 3, dtype="float32")
    layer = Square(a)
    report = check_layer(layer, rand(xp, 4, 3))
    assert report and [p.name for p in report.params] == ["x", "a"]
    assert layer.a is a and layer.a.dtype == xp.float32


def test_a_wrong_backward_fails_and_says_where(xp):
    report = check_layer(Square(rand(xp, 3), wrong=True), rand(xp, 4, 3))
    assert not report
    assert [p.name for p in report.params if not p.passed] == ["x"]
    assert str(report).splitlines()[-1] == "FAILED"


class NoDout(Tanh):
    """tanh whose ``backward`` forgets the ``dout *`` of the chain rule."""

    def backward(self, dout):
        return 1.0 - self.out * self.out


def test_a_backward_that_ignores_dout_fails(xp):
    """``dout`` is random, not ones: the input gradient must be multiplied by it."""
    report = check_layer(NoDout(), rand(xp, 4, 3))
    assert not report
    assert [p.name for p in report.params if not p.passed] == ["x"]


class MaskedByDout(ReLU):
    """A ReLU whose ``backward`` masks by the sign of ``dout`` instead of ``x``'s."""

    def backward(self, dout):
        return dout * namespace_of(dout).astype(dout > 0, dout.dtype)


class TransposedDW(Affine):
    """An Affine whose ``backward`` stores ``dW`` transposed (unseen for a square ``W``)."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.dW = self.dW.T
        return dx


@pytest.mark.parametrize(
    "make", [lambda xp: MaskedByDout(), lambda xp: TransposedDW(rand(xp, 3, 3), rand(xp, 3))]
)
def test_a_wrong_backward_fails_on_data_drawn_with_the_checks_seed(xp, make):
    """x drawn with np.random.default_rng(0), as the check's dout would be with its default
    seed 0 from the same generator: dout == x would pass both of these backward passes."""
    assert not check_layer(make(xp), rand(xp, 4, 3, seed=0))


def test_inputs_near_a_kink_are_reported_apart(xp):
    x = arr(xp, [[3e-7, -2e-7, 0.5], [0.3, -0.1, 2.0]])  # within h = 1e-5 of 0, and h / 10
    report = check_layer(ReLU(), x)
    assert report
    assert report.params[0].kinks == 2 and report.params[0].kink_elements == ((0, 0), (0, 1))


class LeakyLie(ReLU):
    """A ReLU whose ``backward`` claims a slope ``leak`` where ``x <= 0``."""

    def __init__(self, leak):
        self.leak = leak

    def backward(self, dout):
        return namespace_of(dout).where(self.mask, dout, self.leak * dout)


def test_a_wrong_slope_beside_a_kink_still_fails(xp):
    report = check_layer(LeakyLie(0.1), arr(xp, [[0.5, -0.4, 1.5], [-2.0, 0.7, -0.3]]))
    assert not report and report.params[0].kinks == 0


def test_a_slope_that_matches_neither_side_of_a_kink_fails(xp):
    # With h = 1e-5 the one-sided slopes of ReLU (times dout) are, at x = 2e-6,
    # (1.2e-5 - 2e-6) / h = 1 and (2e-6 - 0) / h = 0.2: the claimed 1 is one side, a kink.
    # At x = -2e-6 they are (8e-6 - 0) / h = 0.8 and 0: the claimed leak 0.3 is 0.5 and
    # 0.3 away from them, not within a small fraction of their gap 0.8 of either (and at
    # h / 10, where it is retried, the slope is 0).
    report = check_layer(LeakyLie(0.3), arr(xp, [[-2e-6, 2e-6]]))
    assert not report
    assert report.params[0].kink_elements == ((0, 1),)


def test_running_statistics_are_restored(xp):
    class Counting:
        buffers = ("seen",)

        def __init__(self):
            self.seen = arr(xp, [0.0])

        def forward(self, x):
            self.seen = self.seen + 1.0
            return 3.0 * x

        def backward(self, dout):
            return 3.0 * dout

    layer = Counting()
    assert check_layer(layer, rand(xp, 2, 2))
    assert to_numpy(layer.seen).tolist() == [0.0]


def test_the_report_prints_a_table_and_converts_to_a_dict(xp):
    report = check_layer(Affine(rand(xp, 5, 3), rand(xp, 3)), rand(xp, 4, 5))
    lines = str(report).splitlines()
    assert lines[0].startswith("gradient check of layer Affine (loop, float64")
    assert lines[1].split()[:2] == ["param", "shape"] and lines[1].split()[-1] == "result"
    rows = [line.split() for line in lines[2:-1]]
    assert [(r[0], r[1], r[2], r[-1]) for r in rows] == [
        ("x", "4x5", "loop", "ok"),
        ("W", "5x3", "loop", "ok"),
        ("b", "3", "loop", "ok"),
    ]
    assert lines[-1] == "PASSED"
    assert report.as_dict()["passed"] is True
    assert [p["name"] for p in report.as_dict()["params"]] == ["x", "W", "b"]


def test_a_layers_report_is_one_line_in_a_repl_and_its_table_in_ipython(xp):
    report = check_layer(Affine(rand(xp, 5, 3), rand(xp, 3)), rand(xp, 4, 5))
    assert repr(report) == "<GradientReport of layer Affine PASSED: 3 params, loop, float64>"
    assert shown_in_ipython(report) == str(report)


def test_a_functions_report_is_one_line_in_a_repl(xp):
    def square_norm(v):
        return namespace_of(v).sum(v * v)

    x = rand(xp, 3)
    report = check_function(square_norm, x, 2 * x)
    assert repr(report) == "<GradientReport of function square_norm PASSED: 1 param, loop, float64>"


def test_an_input_without_a_returned_gradient_is_not_checked(xp):
    layer = Affine(rand(xp, 5, 3), rand(xp, 3), input_grad=False)
    assert [p.name for p in check_layer(layer, rand(xp, 4, 5)).params] == ["W", "b"]


class Forgetful:
    """A user's layer whose ``backward`` computes ``dx`` but forgets ``return dx``."""

    def forward(self, x):
        return 2.0 * x

    def backward(self, dout):
        dx = 2.0 * dout  # noqa: F841


def test_a_backward_that_returns_no_input_gradient_is_an_error(xp):
    with pytest.raises(
        ValueError, match=r"Forgetful.backward returned no input gradient .* input\(s\) x,.*dx"
    ):
        check_layer(Forgetful(), rand(xp, 2, 3))


class AffineMistake(Affine):
    """An Affine whose ``backward`` stores ``dW`` transposed, or ``db`` not summed over the
    batch or summed with ``keepdims=True``."""

    def __init__(self, W, b, mistake):
        super().__init__(W, b)
        self.mistake = mistake

    def backward(self, dout):
        dx = super().backward(dout)
        if self.mistake == "dW.T":
            self.dW = self.dW.T
        elif self.mistake == "keepdims":
            self.db = namespace_of(dout).sum(dout, axis=0, keepdims=True)
        else:
            self.db = dout
        return dx


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("dW.T", r"gradient of W has shape \(3, 5\), but W has shape \(5, 3\): transposed"),
        ("db = dout", r"b has shape \(3,\): one row per sample of a batch of 4; sum over the"),
        ("keepdims", r"of b has shape \(1, 3\), but b has shape \(3,\): an axis of size 1 too"),
    ],
)
def test_a_gradient_of_the_wrong_shape_says_what_it_most_likely_forgot(xp, mistake, message):
    layer = AffineMistake(rand(xp, 5, 3), rand(xp, 3), mistake)
    with pytest.raises(ValueError, match=message):
        check_layer(layer, rand(xp, 4, 5))


class ConvMistake(Convolution):
    """A Convolution whose ``backward`` stores ``dW`` as the book's ``col.T @ dout`` (C * FH *
    FW, FN) leaves it: not transposed back, not reshaped, or reshaped without the transpose;
    or doubled."""

    def __init__(self, W, b, mistake):
        super().__init__(W, b)
        self.mistake = mistake

    def backward(self, dout):
        dx = super().backward(dout)
        xp = namespace_of(dout)
        fn = self.W.shape[0]
        rows = xp.reshape(self.dW, (fn, -1))  # the (FN, C * FH * FW) of dout @ col.T
        self.dW = {
            "rows": rows,
            "col.T @ dout": rows.T,
            "no transpose": xp.reshape(rows.T, self.W.shape),
            "doubled": 2 * self.dW,
        }[self.mistake]
        return dx


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("col.T @ dout", r"W has shape \(12, 4\), but W has shape \(4, 3, 2, 2\): the \(C \* FH "
                         r"\* FW, FN\) of col.T @ dout, .* transpose\(1, 0\)"),
        ("rows", r"W has shape \(4, 12\), .*: the filters' rows \(FN, C \* FH \* FW\), not yet "
                 r"reshaped to \(4, 3, 2, 2\)"),
    ],
)  # fmt: skip
def test_a_kernel_gradient_left_as_im2cols_matrix_says_how_to_reshape_it(xp, mistake, message):
    layer = ConvMistake(rand(xp, 4, 3, 2, 2), rand(xp, 4), mistake)
    with pytest.raises(ValueError, match=message):
        check_layer(layer, rand(xp, 2, 3, 4, 4))


def test_a_kernel_gradient_reshaped_without_its_transpose_says_so(xp):
    report = check_layer(
        ConvMistake(rand(xp, 4, 3, 2, 2), rand(xp, 4), "no transpose"), rand(xp, 2, 3, 4, 4)
    )
    assert [p.name for p in report.params if p.untransposed] == ["W"], str(report)
    note = "W: the analytic gradient is the numerical one laid out as (12, 4) = (C * FH * FW, FN)"
    assert note in " ".join(str(report).split())


def test_a_wrong_kernel_gradient_of_another_kind_is_not_called_untransposed(xp):
    report = check_layer(
        ConvMistake(rand(xp, 4, 3, 2, 2), rand(xp, 4), "doubled"), rand(xp, 2, 3, 4, 4)
    )
    assert not report and not any(p.untransposed for p in report.params), str(report)


class MulReturningDxAlone(Mul):
    """A two-input node whose ``backward`` returns ``dx`` and forgets ``dy``."""

    def backward(self, dout=1):
        return dout * self.y


@pytest.mark.parametrize("shape", [(), (4, 3)])  # the book's apples, and arrays
def test_a_two_input_backward_returning_one_array_is_an_error_naming_both(xp, shape):
    with pytest.raises(
        ValueError, match=r"returned one array for its 2 floating inputs x, y: .*\(dx, dy\)"
    ):
        check_layer(MulReturningDxAlone(), rand(xp, *shape), rand(xp, *shape, seed=1))


class BookSoftmaxWithLoss:
    """The book's ``SoftmaxWithLoss`` (one-hot targets): its backward takes ``dout=1``, as
    a network's backward pass starts, and ignores it; ``per_batch=False`` forgets the
    division by the batch size in backward."""

    def __init__(self, per_batch=True):
        self.per_batch = per_batch

    def forward(self, x, t):
        xp = namespace_of(x)
        e = xp.exp(x - xp.max(x, axis=1, keepdims=True))
        self.y, self.t = e / xp.sum(e, axis=1, keepdims=True), t
        return -xp.sum(t * xp.log(self.y + 1e-7)) / x.shape[0]

    def backward(self, dout=1):
        return (self.y - self.t) / (self.t.shape[0] if self.per_batch else 1)


def one_hot_targets(xp):
    return arr(xp, np.eye(3)[[0, 2, 1, 1]])


class MulAndMore(Mul):
    """A two-input node whose ``backward`` returns a third gradient, for no input."""

    def backward(self, dout=1):
        dx, dy = super().backward(dout)
        return dx, dy, dout


def test_a_backward_returning_more_gradients_than_inputs_is_an_error(xp):
    with pytest.raises(
        ValueError, match=r"MulAndMore.backward returned 3 gradients for its 2 input\(s\) x, y"
    ):
        check_layer(MulAndMore(), rand(xp, 2, 3), rand(xp, 2, 3, seed=1))


def test_the_books_loss_layer_passes_without_a_note_on_its_targets(xp):
    report = check_layer(BookSoftmaxWithLoss(), rand(xp, 4, 3), one_hot_targets(xp))
    assert report and not report.notes, str(report)


def test_a_gradient_off_by_the_batch_size_says_by_what_factor(xp):
    report = check_layer(BookSoftmaxWithLoss(per_batch=False), rand(xp, 4, 3), one_hot_targets(xp))
    assert not report and report.params[0].factor == pytest.approx(4.0)
    assert "x: the analytic gradient is 4 times the numerical one in every element" in str(report)


def test_a_gradient_off_by_the_batch_size_names_the_batch_size(xp):
    report = check_layer(BookSoftmaxWithLoss(per_batch=False), rand(xp, 4, 3), one_hot_targets(xp))
    text = " ".join(str(report).split())  # the note wraps
    assert "off by a constant factor, the batch size of 4 (a division by it" in text, text


class ScaledScores:
    """Attention's scores scaled by ``1 / sqrt(d)``, d = 4, whose backward forgets the scale."""

    def forward(self, x):
        return x / 2

    def backward(self, dout):
        return dout


def test_a_gradient_off_by_another_factor_than_the_batch_size_says_just_the_factor(xp):
    report = check_layer(ScaledScores(), rand(xp, 4, 3))
    assert report.params[0].factor == pytest.approx(2.0), str(report)
    text = " ".join(str(report).split())  # the note wraps
    note = "x: the analytic gradient is 2 times the numerical one in every element: off by a "
    assert note + "constant factor FAILED" in text, text


def test_a_gradient_of_the_opposite_sign_says_so(xp):
    report = check_layer(Square(rand(xp, 3), sign=-1.0), rand(xp, 4, 3))
    assert [p.factor for p in report.params] == [None, pytest.approx(-1.0)]
    assert "a: the analytic gradient has the opposite sign in every element" in str(report)


class MulSlipped(Mul):
    """A Mul whose backward returns ``(dy, dx)`` ("swapped"), both gradients doubled
    ("doubled"), or each 1 off in one element ("one element")."""

    def __init__(self, slip):
        self.slip = slip

    def backward(self, dout):
        dx, dy = super().backward(dout)
        if self.slip == "swapped":
            return dy, dx
        if self.slip == "doubled":
            return 2 * dx, 2 * dy
        off = namespace_of(dout).zeros_like(dout)
        off[0, 1] = 1.0
        return dx + off, dy + off


SWAPPED = "x, y: each analytic gradient matches the other's numerical one: swapped?"
TRANSPOSED = "the analytic gradient is the numerical one transposed (a product's factors"


def test_a_two_input_layer_returning_its_gradients_swapped_names_the_pair(xp):
    report = check_layer(MulSlipped("swapped"), rand(xp, 4, 3), rand(xp, 4, 3, seed=1))
    assert not report and report.swapped == [("x", "y")]
    assert SWAPPED in " ".join(str(report).split()), str(report)  # the note wraps


def test_a_square_weights_gradient_stored_transposed_says_so(xp):
    report = check_layer(TransposedDW(rand(xp, 3, 3), rand(xp, 3)), rand(xp, 4, 3, seed=2))
    assert [p.name for p in report.params if p.transposed] == ["W"], str(report)
    assert "W: " + TRANSPOSED in " ".join(str(report).split()), str(report)


@pytest.mark.parametrize("slip", ["doubled", "one element"])
def test_other_wrong_gradients_of_square_inputs_are_neither_swapped_nor_transposed(xp, slip):
    report = check_layer(MulSlipped(slip), rand(xp, 3, 3), rand(xp, 3, 3, seed=1))
    assert [p.passed for p in report.params] == [False, False], str(report)
    assert report.swapped == [] and not any(p.transposed for p in report.params)
    assert "swapped?" not in str(report) and "transposed" not in str(report)


def test_a_function_of_a_mapping_whose_gradients_are_swapped_names_the_pair(xp):
    a, b = rand(xp, 3, 4), rand(xp, 3, 4, seed=1)
    report = check_function(
        lambda p: namespace_of(p["a"]).sum(p["a"] ** 2 * p["b"]),
        {"a": a, "b": b},
        {"a": a**2, "b": 2 * a * b},
    )
    assert not report and report.swapped == [("a", "b")], str(report)
    assert "a, b: each analytic gradient matches the other's numerical one: swapped?" in " ".join(
        str(report).split()
    )


def test_a_swap_between_arrays_of_different_shapes_is_not_claimed(xp):
    """sum(a * reshape(b)): the gradient of a is b reshaped, and that of b a reshaped, so
    the swapped gradients are a and b themselves, of the other's size but not its shape."""
    a, b = rand(xp, 2, 3), rand(xp, 3, 2, seed=1)

    def f(p):
        xp = namespace_of(p["a"])
        return xp.sum(p["a"] * xp.reshape(p["b"], (2, 3)))

    report = check_function(f, {"a": a, "b": b}, {"a": a, "b": b})
    assert not report and report.swapped == [], str(report)
    assert "swapped?" not in str(report)


def test_a_passing_check_of_symmetric_equal_arrays_names_no_swap_and_no_transpose(xp):
    """Each gradient equals the other's and its own transpose: that is no slip when they
    pass."""
    s = rand(xp, 3, 3)
    s = s + s.T
    report = check_function(
        lambda p: namespace_of(s).sum(p["a"] * p["b"]), {"a": s, "b": s}, {"a": s, "b": s}
    )
    assert report and report.swapped == [], str(report)
    assert not any(p.transposed for p in report.params)


def test_integer_inputs_alone_are_nothing_to_check(xp):
    with pytest.raises(
        ValueError, match=r"nothing to check: no floating inputs or .*x \(\S*int64\)"
    ):
        check_layer(ReLU(), arr(xp, [[1, 2]], "int64"))


def test_check_layer_refuses_a_list_input_naming_it_and_asarray(xp):
    with pytest.raises(TypeError, match=r"input x must be an array .* got list .*xp\.asarray\(x\)"):
        check_layer(Tanh(), to_numpy(rand(xp, 2, 3)).tolist())


def test_check_layer_refuses_list_labels_naming_the_targets(xp):
    with pytest.raises(TypeError, match=r"check_layer\(SoftmaxWithLoss\): input t must be an"):
        check_layer(SoftmaxWithLoss(), rand(xp, 2, 3), [0, 1])


def test_check_function_refuses_a_list_in_a_mapping_naming_its_key(xp):
    W = rand(xp, 2)
    with pytest.raises(TypeError, match=r"x\['b'\] must be an array, got list"):
        check_function(lambda p: namespace_of(W).sum(p["W"] ** 2), {"W": W, "b": [0.0]}, {})


class OnTheHost:
    """A user's square layer written with ``np.`` functions: NumPy arrays out of any
    library's arrays in, in ``forward`` or in ``backward``."""

    def __init__(self, where):
        self.where = where

    def forward(self, x):
        self.x = x
        return np.square(to_numpy(x)) if self.where == "forward" else x * x

    def backward(self, dout):
        dx = 2.0 * self.x * dout
        return to_numpy(dx) if self.where == "backward" else dx


def skip_on_numpy(xp):
    if library_of(xp.asarray(0.0)) == "numpy":
        pytest.skip("np. functions are NumPy's own namespace")


@pytest.mark.parametrize(
    "where, what",
    [("forward", r"OnTheHost\.forward returned"), ("backward", r"the gradient of x is")],
)
def test_a_layer_computing_with_np_functions_on_another_librarys_arrays_says_so(xp, where, what):
    skip_on_numpy(xp)
    with pytest.raises(
        BackendMismatchError,
        match=rf"{what} an array of numpy, but the inputs are arrays of \w+: compute with the "
        r"inputs' namespace, xp = xpnet.backend.namespace_of\(x\).*not NumPy's np\. functions",
    ):
        check_layer(OnTheHost(where), rand(xp, 2, 3))


def test_a_function_computing_with_np_functions_on_another_librarys_arrays_says_so(xp):
    skip_on_numpy(xp)
    x = rand(xp, 2, 3)

    def square_sum(x):
        return np.sum(to_numpy(x) ** 2)

    with pytest.raises(BackendMismatchError, match=r"square_sum returned an array of numpy, but"):
        check_function(square_sum, x, 2.0 * x)


def test_a_non_finite_input_gradient_fails_and_says_so(xp):
    class Overflowing(Tanh):
        def backward(self, dout):
            return super().backward(dout) * namespace_of(dout).inf

    report = check_layer(Overflowing(), rand(xp, 2, 3))
    assert not report and report.params[0].nonfinite_analytic == 6
    assert "x: the analytic gradient has 6 non-finite value(s)" in str(report)


class SquareNanAtZero:
    """``x * x``, whose backward ``2 * x * dout * (x / x)`` is right except at ``x == 0``,
    where it is NaN."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, dout):
        return 2 * self.x * dout * (self.x / self.x)


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
def test_a_gradient_failing_at_a_non_finite_value_alone_notes_no_factor(xp):
    x = arr(xp, [[0.0, 1.0, -2.0], [0.5, 3.0, -1.5]])
    report = check_layer(SquareNanAtZero(), x)
    assert not report and report.params[0].nonfinite_analytic == 1
    assert report.params[0].factor is None and "times the numerical" not in str(report)


class CubeSum:
    """The loss ``sum(x**3)``, whose backward adds 1 to the gradient of its largest input."""

    def forward(self, x):
        self.x = x
        return namespace_of(x).sum(x**3)

    def backward(self, dout=1):
        xp = namespace_of(self.x)
        return 3 * self.x**2 + xp.astype(self.x == xp.max(self.x), self.x.dtype)


def test_a_failing_gradient_names_how_many_elements_fail_and_the_worst(xp):
    data = np.random.default_rng(5).standard_normal((3, 4))
    worst = np.unravel_index(np.argmax(data), data.shape)
    numerical = central_difference(lambda v: float(np.sum(v**3)), data)[worst]
    report = check_layer(CubeSum(), arr(xp, data))
    row = report.params[0]
    assert (row.failing, row.worst) == (1, worst)
    assert row.worst_analytic == pytest.approx(numerical + 1, rel=1e-6)
    assert row.worst_numerical == pytest.approx(numerical, rel=1e-6)
    assert f"x: 1 of 12 elements fail; worst x[{worst[0]}, {worst[1]}]: analytic " in str(report)


class PairMax:
    """The larger of each row's two inputs, ``x`` of shape (N, 2) to (N,); backward routes
    the gradient to the first of two tied maxima, or, ``to_every_tie``, to both (the
    naive ``mask = (x == max)``, which doubles the gradient of a tie)."""

    def __init__(self, to_every_tie=False):
        self.to_every_tie = to_every_tie

    def forward(self, x):
        self.first, self.second = x[:, 0], x[:, 1]
        return namespace_of(x).maximum(self.first, self.second)

    def backward(self, dout):
        xp = namespace_of(dout)
        zero = xp.zeros_like(dout)
        to_first = self.first >= self.second
        to_second = self.second >= self.first if self.to_every_tie else ~to_first
        return xp.stack([xp.where(to_first, dout, zero), xp.where(to_second, dout, zero)], axis=1)


def tied_pairs(xp):
    return arr(xp, [[1.0, 1.0], [0.5, 0.5], [2.0, -1.0], [-3.0, -3.0], [0.0, 0.0], [1.5, 2.5]])


def test_a_gradient_routed_to_one_of_tied_maxima_passes_with_the_ties_as_kinks(xp):
    report = check_layer(PairMax(), tied_pairs(xp))
    assert report and report.params[0].kinks == 8, str(report)


def test_a_gradient_given_in_full_to_every_tied_maximum_fails(xp):
    report = check_layer(PairMax(to_every_tie=True), tied_pairs(xp))
    row = report.params[0]
    assert not report and row.kinks == 8 and row.kinks_together is not None, str(report)
    slope, claimed = row.kinks_together
    assert claimed == pytest.approx(2 * slope, rel=1e-6)  # the maximum moves once, not twice
    assert "FAIL (kinks together)" in str(report) and "tied maxima" in str(report)


class Maximum:
    """``maximum(x, y)``; backward routes the gradient of a tie to ``x``, or, ``to_both``,
    to both inputs (``dx = dout * (x >= y)``, ``dy = dout * (y >= x)``)."""

    def __init__(self, to_both=False):
        self.to_both = to_both

    def forward(self, x, y):
        self.x, self.y = x, y
        return namespace_of(x).maximum(x, y)

    def backward(self, dout):
        xp = namespace_of(dout)
        zero = xp.zeros_like(dout)
        to_y = self.y >= self.x if self.to_both else self.y > self.x
        return xp.where(self.x >= self.y, dout, zero), xp.where(to_y, dout, zero)


def tied_inputs(xp):
    x = [[1.0, 0.5, 2.0], [-3.0, 0.0, 1.5]]
    y = [[1.0, 0.5, -1.0], [-3.0, 0.0, 2.5]]
    return arr(xp, x), arr(xp, y)


def test_a_maximum_routing_a_tie_to_one_input_passes_with_the_ties_as_kinks(xp):
    report = check_layer(Maximum(), *tied_inputs(xp))
    assert report and [p.kinks for p in report.params] == [4, 4], str(report)


def test_a_maximum_giving_a_tie_to_both_inputs_fails(xp):
    report = check_layer(Maximum(to_both=True), *tied_inputs(xp))
    x, y = report.params
    assert not report and (x.together_with, y.together_with) == (("y",), ("x",)), str(report)
    slope, claimed = x.kinks_together
    assert claimed == pytest.approx(2 * slope, rel=1e-6)  # the maximum moves once, not twice
    assert str(report).count("x, y: the kinks of x, y each match a one-sided difference") == 1


# check_function. The course notes' update, checked against its two losses, is in
# examples/course_network.py (tests/test_examples.py runs it).


def test_a_retry_keeps_the_atol_of_the_step_for_a_large_function(xp):
    # f of 1e6 raises the default atol with it; an element off by 3 times that fails at h
    # and is retried at h / 10, whose atol (10 times more) passed it.
    x = rand(xp, 6)

    def f(v):
        return 1e6 + xp.sum(xp.sin(v))

    atol = check_function(f, x, xp.cos(x)).atol
    grad = to_numpy(xp.cos(x)).copy()
    grad[2] += 3 * atol
    report = check_function(f, x, arr(xp, grad))
    assert not report and report.params[0].retried == 1


def test_check_function_divides_by_the_step_that_x_took(xp):
    # At x near 1e7, x + h is off by up to 1e-9 (float64's spacing there is 1.9e-9): the
    # differences of sum(sin(x)) divided by 2h were off by 1e-3 of cos(x), 10 times rtol.
    host = 1e7 + np.random.default_rng(0).random(5) * 1e7
    x = arr(xp, host)
    assert check_function(lambda v: xp.sum(xp.sin(v)), x, arr(xp, np.cos(host)))
    assert not check_function(lambda v: xp.sum(xp.sin(v)), x, arr(xp, 1.001 * np.cos(host)))


def test_an_atol_as_large_as_the_gradients_is_inconclusive_saying_nothing_was_resolved(xp):
    # f of 1e10 rounds at 2e-6: at h = 1e-5 its differences are good to about 1, the size
    # of the gradient itself, so a gradient twice off passes, and the verdict says why.
    x = rand(xp, 6)
    report = check_function(lambda v: 1e10 + xp.sum(xp.sin(v)), x, 2 * xp.cos(x))
    assert not report and report.unresolved and report.inconclusive
    verdict = "INCONCLUSIVE (the atol is as large as the gradients: nothing was resolved)"
    assert str(report).endswith(verdict)


def test_a_grown_atol_below_the_gradients_resolves_them(xp):
    x = rand(xp, 6)
    report = check_function(lambda v: 1e3 + xp.sum(xp.sin(v)), x, xp.cos(x))
    assert report.passed and not report.unresolved and "atol: 3.6e-07" in str(report)


def test_a_grown_atol_resolves_the_check_when_any_array_has_larger_gradients(xp):
    # 1e10's rounding gives an atol of about 3.6: a's gradients (about 1e-3) are under it,
    # b's (about 1e3) far above, whichever of them comes first.
    a, b = rand(xp, 3), rand(xp, 3, seed=1)

    def f(q):
        return 1e10 + 1e-3 * xp.sum(xp.sin(q["a"])) + 1e3 * xp.sum(q["b"] ** 2)

    grad = {"a": 1e-3 * xp.cos(a), "b": 2e3 * b}
    for point in ({"a": a, "b": b}, {"b": b, "a": a}):
        report = check_function(f, point, grad)
        assert report.passed and not report.unresolved
        assert len([n for n in report.notes if n.startswith("atol:")]) == 1


def test_a_grown_atol_names_the_arrays_whose_gradients_it_is_as_large_as(xp):
    # As above: a's gradients (about 1e-3) are under the atol of about 3.6, so a gradient of
    # a twice off passes, and the verdict says that a was not resolved.
    a, b = rand(xp, 3), rand(xp, 3, seed=1)

    def f(q):
        return 1e10 + 1e-3 * xp.sum(xp.sin(q["a"])) + 1e3 * xp.sum(q["b"] ** 2)

    report = check_function(f, {"a": a, "b": b}, {"a": 2e-3 * xp.cos(a), "b": 2e3 * b})
    assert report.passed and report.unresolved_params == ["a"]
    verdict = "PASSED (but the atol is as large as the gradients of a: they were not resolved)"
    assert str(report).endswith(verdict)


def test_gradients_all_under_the_atol_floor_are_inconclusive_saying_so(xp):
    # f = 1e-9 * sum(sin(x)): its gradient, 1e-9 cos(x), is under the floor atol of 1e-8,
    # so a gradient three times off passes, and the verdict must say so.
    host = np.random.default_rng(0).standard_normal(6)
    true = central_difference(lambda v: 1e-9 * np.sum(np.sin(v)), host)
    claimed = 3e-9 * np.cos(host)
    assert np.allclose(claimed, 3 * true, rtol=1e-3)
    report = check_function(lambda v: 1e-9 * xp.sum(xp.sin(v)), arr(xp, host), arr(xp, claimed))
    assert not report and report.unresolved and report.inconclusive
    verdict = "INCONCLUSIVE (the atol is as large as the gradients: nothing was resolved)"
    assert str(report).endswith(verdict)
    assert "pass a smaller atol" in str(report)


def test_a_layers_parameter_with_gradients_under_the_atol_floor_is_named(xp):
    # Square at inputs of 3e-5: da = sum(dout * x**2) is about 1e-9, under the atol of
    # 1e-8 (above the loss's rounding, 4e-10), and a's gradient given with the wrong sign
    # passes; dx (about 1e-5) is resolved.
    host = 3e-5 * np.random.default_rng(1).standard_normal((4, 3))
    a = np.array([0.5, -1.0, 2.0])
    dout = np.random.default_rng(2).standard_normal((4, 3))
    true = central_difference(lambda v: np.sum(host * host * v * dout), a)
    assert 5e-10 < np.max(np.abs(true)) < 1e-8
    report = check_layer(Square(arr(xp, a), sign=-1.0), arr(xp, host))
    assert report.passed and report.unresolved_params == ["a"]
    verdict = "PASSED (but the atol is as large as the gradients of a: they were not resolved)"
    assert str(report).endswith(verdict)


class TwoOutputs:
    """A layer returning two outputs, (2x, 3x), outside the one-output protocol."""

    def forward(self, x):
        return 2.0 * x, 3.0 * x

    def backward(self, dout):
        return 2.0 * dout


def test_a_forward_with_several_outputs_is_refused_saying_what_to_check_instead(xp):
    with pytest.raises(ValueError, match=r"TwoOutputs.forward returned a tuple of 2: .*"):
        check_layer(TwoOutputs(), rand(xp, 4, 3))


def test_check_function_takes_one_array(xp):
    x = rand(xp, 3, 2)
    assert check_function(lambda v: namespace_of(v).sum(v**3), x, 3 * x**2)
    assert not check_function(lambda v: namespace_of(v).sum(v**3), x, 3 * x)


@pytest.mark.parametrize("x", [2.0, [2.0, 3.0]])
def test_check_function_given_a_python_number_or_list_says_to_make_an_array(x):
    with pytest.raises(
        TypeError, match=r"got (float 2\.0|list \[2\.0, 3\.0\]): pass numpy\.asarray"
    ):
        check_function(lambda v: v**3, x, x)


def test_check_function_takes_a_dict_of_arrays(xp):
    point = {"a": rand(xp, 3, 2), "b": rand(xp, 2, seed=1)}

    def f(q):
        return namespace_of(q["a"]).sum((q["a"] @ q["b"]) ** 2)

    a, b = point["a"], point["b"]
    r = a @ b
    grad = {"a": 2 * r[:, None] * b[None, :], "b": 2 * (r @ a)}
    report = check_function(f, point, grad)
    assert report and [p.name for p in report.params] == ["a", "b"]
    assert not check_function(f, point, {"a": grad["a"], "b": 2 * grad["b"]})


def test_check_function_works_in_float64_at_a_float32_point(xp):
    """f is differenced at a float64 copy of x: float32 steps of h would lose the check."""
    host = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
    exact = 3 * host.astype(np.float64) ** 2  # d/dv sum(v**3) at the float32 point
    x = arr(xp, host, "float32")
    report = check_function(lambda v: namespace_of(v).sum(v**3), x, arr(xp, exact))
    assert report, str(report)


def wavy(v):
    """sum(sin(5000 v)): a central difference of its slope at h = 1e-5 is off by a relative
    h**2 5000**2 / 6 = 4e-4 from curvature (above rtol 1e-4), at h / 10 by 4e-6."""
    xp = namespace_of(v)
    return xp.sum(xp.sin(5000 * v))


def test_check_function_retries_an_element_failing_from_curvature_at_a_tenth_of_the_step(xp):
    host = np.random.default_rng(0).random(4)
    slope = arr(xp, 5000 * np.cos(5000 * host))
    report = check_function(wavy, arr(xp, host), slope)
    assert report and report.params[0].retried >= 1, str(report)


def test_check_function_fails_a_wrong_slope_at_a_tenth_of_the_step_too(xp):
    host = np.random.default_rng(0).random(4)
    slope = arr(xp, 1.01 * 5000 * np.cos(5000 * host))
    report = check_function(wavy, arr(xp, host), slope)
    assert not report and report.params[0].retried >= 1, str(report)


def test_check_functions_default_atol_grows_with_the_value_of_f(xp):
    # Rounding f's value of about 1e4 moves a central difference by about eps * 1e4 / h.
    host = np.random.default_rng(0).standard_normal(3)
    value = float(np.sum(host**3)) + 1e4
    report = check_function(
        lambda v: namespace_of(v).sum(v**3) + 1e4, arr(xp, host), arr(xp, 3 * host**2)
    )
    assert report.atol == pytest.approx(16 * np.finfo(np.float64).eps * value / 1e-5)
    assert report and f"atol: {report.atol:.2g}, above 1e-08" in str(report), str(report)


def test_check_function_names_a_gradient_of_the_wrong_shape(xp):
    with pytest.raises(ValueError, match=r"gradient of x has shape \(2,\), but x has shape \(3,\)"):
        check_function(lambda v: namespace_of(v).sum(v), rand(xp, 3), rand(xp, 2))


def test_check_function_wants_the_keys_of_x(xp):
    with pytest.raises(ValueError, match=r"grad must have the keys of x, \['a', 'b'\]"):
        check_function(lambda q: 0.0, {"a": rand(xp, 2), "b": rand(xp, 2)}, {"a": rand(xp, 2)})


def test_check_function_refuses_a_function_that_returns_an_array(xp):
    with pytest.raises(ValueError, match=r"scalar function: <lambda> returned .* \(3,\)"):
        check_function(lambda v: v**2, rand(xp, 3), rand(xp, 3))


def test_check_function_wants_the_gradients_value_not_the_gradient_function(xp):
    x = rand(xp, 3)
    with pytest.raises(TypeError, match=r"array of x's shape \(3,\), got function: pass its"):
        check_function(lambda v: namespace_of(v).sum(v**2), x, lambda v: 2 * v)


def test_check_function_refuses_a_list_for_a_gradient():
    with pytest.raises(TypeError, match=r"gradient of x must be an array .* got list"):
        check_function(lambda v: float(np.sum(v**2)), np.ones(3), [2.0, 2.0, 2.0])


def test_check_function_takes_a_function_that_returns_a_python_float():
    x = np.array([0.5, -1.0, 2.0])
    assert check_function(lambda v: float(np.sum(v**2)), x, 2 * x)


def test_check_function_refuses_a_function_that_returns_a_bool():
    with pytest.raises(ValueError, match="scalar function: <lambda> returned bool"):
        check_function(lambda v: bool(np.sum(v) > 0), np.ones(3), np.zeros(3))


def test_check_function_refuses_an_empty_mapping():
    with pytest.raises(ValueError, match="x is an empty mapping: nothing to check"):
        check_function(lambda q: 0.0, {}, {})


@pytest.mark.parametrize("h", [0.0, -1e-4, float("nan")])
def test_a_step_that_is_not_positive_is_refused(h):
    with pytest.raises(ValueError, match="the step h must be a positive number"):
        check_layer(ReLU(), np.ones((2, 2)), h=h)


def test_a_step_too_small_for_the_dtype_warns():
    with pytest.warns(UserWarning, match="too small for float64"):
        check_layer(Tanh(), np.ones((2, 2)), h=1e-12)


def test_cli_gradcheck_refuses_a_zero_step(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", "--h", "0"])
    assert exit_info.value.code == 2
    assert "--h: expected a positive number, got '0'" in capsys.readouterr().err


class TripleInPlace:
    """``3 x``, whose correct backward scales ``dout`` in place, as the book's Relu writes it."""

    def forward(self, x):
        return 3 * x

    def backward(self, dout):
        dout *= 3
        return dout


def test_a_backward_that_writes_into_dout_is_checked_on_the_dout_it_was_given():
    assert check_layer(TripleInPlace(), np.random.default_rng(0).random((3, 4)))


class ScaleShiftWithoutReturn:
    """``x * g + c`` whose backward stores dg and dc but forgets ``return dx``."""

    params = ("g", "c")

    def __init__(self):
        self.g, self.c = np.full(3, 2.0), np.zeros(3)

    def forward(self, x):
        self.x = x
        return x * self.g + self.c

    def backward(self, dout):
        self.dg, self.dc = (dout * self.x).sum(axis=0), dout.sum(axis=0)


def test_a_floating_input_without_a_gradient_is_named_as_not_checked():
    report = check_layer(ScaleShiftWithoutReturn(), np.random.default_rng(0).random((4, 3)))
    assert [p.name for p in report.params] == ["g", "c"]
    assert "x: backward returned no gradient for it; not checked" in str(report).splitlines()


@pytest.mark.parametrize(
    ("name", "value"), [("atol", -1.0), ("rtol", float("nan")), ("atol", "1e-6")]
)
def test_a_tolerance_that_is_not_a_number_at_least_0_is_refused(name, value):
    # A negative or NaN tolerance failed a correct gradient; a string failed deep in NumPy.
    x = np.array([0.5, -1.0, 2.0])
    with pytest.raises(ValueError, match=f"{name} must be a number >= 0, got {value!r}"):
        check_function(lambda v: float(np.sum(v**2)), x, 2 * x, **{name: value})


def test_a_numpy_float32_step_is_a_positive_number():
    x = np.array([0.5, -1.0, 2.0])
    assert check_function(lambda v: float(np.sum(v**2)), x, 2 * x, h=np.float32(1e-4))


def test_check_function_refuses_a_complex_gradient(xp):
    # astype(float64) dropped the imaginary part: ones + 1j passed as the gradient of sum.
    if not hasattr(xp, "complex128"):
        pytest.skip("no complex dtype")
    x = rand(xp, 3)
    grad = xp.astype(arr(xp, np.ones(3)), xp.complex128) * (1 + 1j)
    with pytest.raises(ValueError, match="gradient of x has the complex dtype"):
        check_function(lambda v: namespace_of(v).sum(v), x, grad)


def test_a_smooth_function_s_curvature_is_no_kink(xp):
    # f = 50 * sum(x**2): its one-sided differences at h = 1e-4 are f' +- h * f'' / 2 =
    # 100 x +- 5e-3, a gap of 1e-2, well above the tolerance 1e-6 + 1e-4 * 30. A gradient
    # off by 5e-3 (relative 1.7e-4 > rtol) is the forward difference exactly: curvature,
    # not a kink, so it fails (it was called a kink and passed).
    x = arr(xp, [0.3, -0.2])
    grad = arr(xp, [30.0 + 5e-3, -20.0])
    report = check_function(lambda v: 50.0 * namespace_of(v).sum(v * v), x, grad)
    assert not report, str(report)
    assert report.params[0].kinks == 0
    assert report.params[0].max_abs_error == pytest.approx(5e-3, rel=1e-4)


def test_a_backward_that_reads_a_stale_cache_fails(xp):
    # Every forward pass of the check was at x, so the stale input was x itself and the
    # gradients came out right; in training they are those of the previous batch.
    rng = np.random.default_rng(0)
    layer = StaleAffine(arr(xp, rng.standard_normal((3, 2))), arr(xp, np.zeros(2)))
    report = check_layer(layer, arr(xp, rng.standard_normal((4, 3))))
    assert not report, str(report)
    assert {p.name for p in report.params if not p.passed} == {"W"}


def test_a_backward_that_reads_a_stale_batch_statistic_fails(xp):
    # The batch in reverse order has the same std: the decoy pulls its samples together too.
    report = check_layer(StaleNormalize(), rand(xp, 5, 3))
    assert not report, str(report)


def test_a_layer_whose_every_element_is_at_a_kink_says_none_was_compared(xp):
    report = check_layer(Pooling(2, 2, stride=2), arr(xp, np.ones((1, 1, 2, 2))))
    text = str(report)
    assert report.params[0].kinks == 4 and "not compared (all kinks)" in text
    assert "not compared (all kinks): x: every element's central" in text
    assert text.endswith("INCONCLUSIVE (every element is on a kink: nothing was compared)")
    assert not report and report.inconclusive and report.as_dict()["passed"] is False


def test_a_layer_with_a_parameter_compared_passes_naming_the_one_all_on_kinks(xp):
    # Pooling's input all on ties; the Affine's parameters after it compared.
    inner = Sequential(
        [Pooling(2, 2, stride=2), Affine(arr(xp, [[2.0, -1.0]]), arr(xp, [0.5, 0.0]))]
    )
    report = check_layer(inner, arr(xp, np.ones((1, 1, 2, 2))))
    assert report and not report.inconclusive
    assert str(report).endswith("PASSED (but x not compared)")


class ReLUWithoutCopy:
    """The book's ReLU without its ``x.copy()``: forward zeroes the negative inputs in place."""

    def forward(self, x):
        self.mask = x > 0
        x[...] = namespace_of(x).where(self.mask, x, 0.0)
        return x

    def backward(self, dout):
        return namespace_of(dout).where(self.mask, dout, 0.0)


def test_a_forward_that_writes_into_its_input_is_refused_naming_it(xp):
    # It passed, every negative input zeroed into a kink at 0 and left out of the check.
    with pytest.raises(ValueError, match=r"ReLUWithoutCopy\.forward wrote into its input x"):
        check_layer(ReLUWithoutCopy(), rand(xp, 4, 3))


def test_a_backward_that_writes_into_its_cached_input_is_refused_naming_it(xp):
    class Zeroing:
        def forward(self, x):
            self.x = x
            return 2.0 * x

        def backward(self, dout):
            self.x *= 0.0
            return 2.0 * dout

    with pytest.raises(
        ValueError, match=r"Zeroing\.backward wrote into its input x, which forward cached"
    ):
        check_layer(Zeroing(), rand(xp, 4, 3))


class ScaleWithoutParams:
    """``x * w`` whose backward stores ``dw`` but whose class does not name ``w`` in params."""

    def __init__(self, w):
        self.w = w

    def forward(self, x):
        self.x = x
        return x * self.w

    def backward(self, dout):
        self.dw = namespace_of(dout).sum(dout * self.x, axis=0)
        return dout * self.w


def test_a_parameter_missing_from_params_is_named_as_not_checked(xp):
    # Only x was checked, silently; a network would not have trained w either.
    report = check_layer(ScaleWithoutParams(rand(xp, 3, seed=1)), rand(xp, 4, 3))
    assert [p.name for p in report.params] == ["x"]
    assert any(
        line.startswith("w: backward stored dw, but ScaleWithoutParams.params does not")
        for line in str(report).splitlines()
    )


def test_a_parameter_missing_from_params_qualifies_the_verdict(xp):
    # It read a plain PASSED, "passed": true in the JSON, with w unchecked.
    report = check_layer(ScaleWithoutParams(rand(xp, 3, seed=1)), rand(xp, 4, 3))
    assert report.verdict() == "PASSED (but w not checked: not in params)"
    assert report.as_dict()["undeclared"] == ["w"]


class SquareKeepingDx:
    """``x ** 2`` that caches its input as ``self.x`` and keeps ``self.dx`` as well."""

    def forward(self, x):
        self.x = x
        return x**2

    def backward(self, dout):
        self.dx = 2 * self.x * dout
        return self.dx


def test_a_cached_input_and_its_kept_gradient_are_no_parameter_missing_from_params(xp):
    layer = SquareKeepingDx()
    layer.forward(rand(xp, 4, 3, seed=2))  # a cache from an earlier call, as in a network
    report = check_layer(layer, rand(xp, 4, 3))
    assert report.notes == []


class SquareIntoItsCache(SquareKeepingDx):
    """:class:`SquareKeepingDx` whose cache is an array of its own, made on the first call
    and written into after it (``self.x[...] = x``)."""

    def forward(self, x):
        if getattr(self, "x", None) is None or self.x.shape != x.shape:
            self.x = namespace_of(x).zeros_like(x)
        self.x[...] = x
        return x**2


def test_a_cache_written_into_and_its_kept_gradient_are_no_parameter_missing_from_params(xp):
    # It was noted as a parameter x missing from params: the same array before and after
    # forward, with a dx of its shape, though forward had changed its values.
    layer = SquareIntoItsCache()
    layer.forward(rand(xp, 4, 3, seed=2))
    report = check_layer(layer, rand(xp, 4, 3))
    assert report.notes == []


def test_check_function_takes_tensors_that_autograd_tracks_without_warnings():
    torch = pytest.importorskip("torch")
    x = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(torch.sum(x**3), x, create_graph=True)  # tracked too
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyTorch warned twice of reading tracked tensors
        assert check_function(lambda v: torch.sum(v**3), x, grad)


class SignedSquare:
    """``x * |x|``: its gradient ``2 |x|`` is exact, but its second derivative jumps at 0,
    where a central difference is off by O(h) (it is ``h`` there), not O(h**2)."""

    def forward(self, x):
        self.x = x
        return x * namespace_of(x).abs(x)

    def backward(self, dout):
        return dout * 2 * namespace_of(dout).abs(self.x)


def test_a_gradient_at_a_jump_of_the_second_derivative_passes_as_the_error_converges(xp):
    # It failed: at x = 0 the error fell only tenfold at h / 10, as a wrong one's might.
    report = check_layer(SignedSquare(), arr(xp, [0.0, 0.5, -1.0, 0.0, 2.0]))
    assert report and report.params[0].converged >= 1, str(report)
    assert "converged: retried elements whose error fell in proportion" in str(report)


class OffAtZero(SignedSquare):
    """``x * |x|`` whose gradient is off by 3e-6 where x is 0."""

    def backward(self, dout):
        xp = namespace_of(dout)
        return dout * (2 * xp.abs(self.x) + 3e-6 * xp.astype(self.x == 0, self.x.dtype))


def test_a_gradient_off_at_a_jump_of_the_second_derivative_still_fails(xp):
    report = check_layer(OffAtZero(), arr(xp, [0.0, 0.5, -1.0, 0.0, 2.0]))
    assert not report and report.params[0].converged == 0, str(report)


def signed_square_plus_100(v):
    """``sum(v * |v|) + 100``: the loss of 100 rounds its central differences at h / 100
    (1e-7) by about eps * 100 / 1e-7 = 2e-7, above the atol of h (3.7e-8)."""
    return namespace_of(v).sum(v * namespace_of(v).abs(v)) + 100.0


def test_a_gradient_at_a_jump_of_the_second_derivative_converges_under_a_large_loss(xp):
    # It failed from a loss of about 30: the limit at h / 100 was compared with h's atol,
    # which the loss's rounding there passed.
    x = arr(xp, [0.0, 0.5, -1.0, 0.0, 2.0])
    report = check_function(signed_square_plus_100, x, arr(xp, [0.0, 1.0, 2.0, 0.0, 4.0]))
    assert report and report.params[0].converged == 2, str(report)


def test_a_gradient_off_at_a_jump_of_the_second_derivative_fails_under_a_large_loss(xp):
    x = arr(xp, [0.0, 0.5, -1.0, 0.0, 2.0])
    report = check_function(signed_square_plus_100, x, arr(xp, [3e-6, 1.0, 2.0, 0.0, 4.0]))
    row = report.params[0]  # x[3], the right one at 0, converges
    assert not report and (row.failing, row.worst, row.converged) == (1, (0,), 1), str(report)


def test_an_error_that_falls_tenfold_once_by_chance_does_not_pass_as_converging(xp):
    # 1e5 x**3 at 0: its central differences are 1e5 h**2, 1e-5 at h and 1e-7 at h / 10.
    # A gradient of -1e-6 is off by 1.1e-5 and 1.1e-6 there, tenfold less, as a converging
    # error; at h / 100 it is still off by 1e-6 (the differences' own limit is 0).
    x = arr(xp, [0.0])
    report = check_function(lambda v: 1e5 * namespace_of(v).sum(v**3), x, arr(xp, [-1e-6]))
    assert not report and report.params[0].converged == 0, str(report)


def test_a_layer_inside_a_block_writing_into_the_blocks_dout_is_named_not_the_block(xp):
    from test_gradcheck import DoubleInPlace  # doubles the dout it is given, in place
    from test_nested import Residual  # its skip path adds the dout the inner layers got

    from xpnet import Sequential

    inner = Sequential([Affine(rand(xp, 4, 4, seed=3), rand(xp, 4, seed=4)), DoubleInPlace()])
    report = check_layer(Residual(inner), rand(xp, 5, 4, seed=2))
    text = str(report)
    assert not report and [p.name for p in report.params if not p.passed] == ["x"], text
    assert "DoubleInPlace.backward wrote into the dout it was given: where another" in text
    assert "Residual.backward wrote" not in text and "Sequential.backward wrote" not in text
    assert "backward" not in vars(inner.layers[1]), "the layer's own method is back"


class ReLUWithoutCopyInside(ReLUWithoutCopy):
    """:class:`ReLUWithoutCopy` taking the ``train_flg`` that a block passes on."""

    def forward(self, x, train_flg=False):
        return super().forward(x)


def test_a_layer_inside_a_block_writing_into_the_blocks_input_is_named_too(xp):
    from test_nested import Residual  # x + inner(x), the inner layer given x itself

    named = r"Residual\.forward wrote into its input x \(inside it, ReLUWithoutCopyInside\."
    with pytest.raises(ValueError, match=named + r"forward wrote into its input\)"):
        check_layer(Residual(ReLUWithoutCopyInside()), rand(xp, 4, 3))


def relu_times_5_plus_square(v):
    """``sum(5 relu(v) + 0.3 v**2)``, whose gradient is ``5 (v > 0) + 0.6 v``."""
    xp = namespace_of(v)
    return xp.sum(5 * xp.maximum(v, 0.0) + 0.3 * v**2)


def test_kinks_either_side_of_the_point_do_not_pass_for_rounding_noise(xp):
    # A rounding noise measured along every element crossed one of the ReLU inputs 2e-7
    # either side of 0 in each direction: a "noise" of 4.9e-8 grew the atol to 0.039 and
    # passed x[3] 0.02 off.
    x = np.random.default_rng(0).standard_normal(6)
    x[:2] = [-2e-7, 3e-7]
    grad = np.where(x > 0, 5.0, 0.0) + 0.6 * x
    grad[3] += 0.02
    report = check_function(relu_times_5_plus_square, arr(xp, x), arr(xp, grad))
    assert not report and report.params[0].worst == (3,), str(report)


def test_kinks_failing_on_both_sides_do_not_pass_a_wrong_gradient_elsewhere(xp):
    # Measured along the failing elements only, each way of each direction crossed one of
    # the two kinks whose claims fit neither side: the atol grew to 0.039, and x[3], 0.02
    # off, passed.
    h = 1e-5
    x = np.random.default_rng(0).standard_normal(6)
    x[:2] = [-2e-7, 3e-7]
    grad = np.where(x > 0, 5.0, 0.0) + 0.6 * x
    grad[:2] = 5 * (h + x[:2]) / (2 * h) + 0.01
    grad[3] += 0.02
    report = check_function(relu_times_5_plus_square, arr(xp, x), arr(xp, grad), h=h)
    assert not report and report.atol < 1e-6, str(report)
    assert report.params[0].failing >= 1, str(report)


# A central difference's rounding error grows tenfold at a tenth of the step; so does the
# error of one straddling a kink a fraction of the step away, and a larger step averages
# the slopes either side of it. Retrying at 10 h and 100 h the elements whose error grew
# so passed each wrong gradient below.


def test_a_slope_halfway_between_the_sides_of_a_kink_beside_x_fails(xp):
    # 5e-9 below ReLU's kink the central differences at a step s are 0.5 - 5e-9 / (2 s)
    # (times dout): 2.5e-4 off the claimed 0.5 at h, 2.5e-3 at h / 10, and 2.5e-5 and
    # 2.5e-6 at 10 h and 100 h, within the tolerance of 5e-5 there.
    report = check_layer(LeakyLie(0.5), arr(xp, [[-5e-9, 0.7], [1.2, 0.4]]))
    assert not report and report.params[0].worst == (0, 0), str(report)


def test_a_gradient_off_beside_a_small_kink_within_a_tenth_of_the_step_fails(xp):
    # A slope jump of 5e-3 at h / 20 above each x: the central differences at h, h / 10,
    # 10 h and 100 h are cos(x) plus 0.475, 0.25, 0.4975 and 0.49975 times the jump. A
    # gradient 0.475 jumps + 1.5e-4 off fails by 1.5e-4 at h and by 1.3e-3 at h / 10, and
    # is within 4e-5 at 10 h and 100 h.
    x = np.array([0.3, -0.7, 0.1])
    kink = arr(xp, x + 1e-5 / 20)

    def sine_with_a_small_kink(v):
        vx = namespace_of(v)
        return vx.sum(vx.sin(v) + 5e-3 * vx.maximum(v - kink, 0.0))

    grad = arr(xp, np.cos(x) + 0.475 * 5e-3 + 1.5e-4)
    report = check_function(sine_with_a_small_kink, arr(xp, x), grad)
    assert not report and report.params[0].failing == 3, str(report)


def cancelling_cube(v):
    """``sum((1e8 v + v**3) - 1e8 v)``: terms of 1e8 that cancel, whose rounding moves a
    central difference at h = 1e-5 by up to 0.3 ``eps * 1e8 * max|v| / h`` (about 1e-3)."""
    return namespace_of(v).sum((1e8 * v + v**3) - 1e8 * v)


@pytest.mark.parametrize("off", [1e-3, 1e-2, 1e-1])
def test_a_gradient_off_under_cancelling_terms_fails_at_the_elements_rounding_leaves(xp, off):
    # The terms' rounding can cover an offset of 1e-3 at h, as it did at one element of 6
    x = np.random.default_rng(0).standard_normal(6)
    report = check_function(cancelling_cube, arr(xp, x), arr(xp, 3 * x**2 + off))
    assert not report and report.params[0].failing >= (5 if off < 2e-3 else 6), str(report)


def test_a_gradient_off_beside_a_kink_under_cancelling_terms_fails(xp):
    # A slope jump of 1e-3 at 2 h above x = 0.8: the error of a gradient 4.5e-4 off grows
    # from the terms' rounding as the step shrinks, and the differences at 10 h and 100 h,
    # straddling the jump (0.4 and 0.49 of it), are within the tolerance of it.
    def cancelling_cube_with_a_kink(v):
        vx = namespace_of(v)
        return cancelling_cube(v) + 1e-3 * vx.sum(vx.maximum(v - (0.8 + 2e-5), 0.0))

    x = np.array([0.8])
    report = check_function(cancelling_cube_with_a_kink, arr(xp, x), arr(xp, 3 * x**2 + 4.5e-4))
    assert not report, str(report)


def cancelling_atol(x):
    """What rounding terms of ``1e8 * max|x|`` makes of a central difference at h = 1e-5."""
    return float(np.finfo(np.float64).eps * 1e8 * np.abs(x).max() / 1e-5)


def test_a_function_whose_large_terms_cancel_passes_with_the_atol_of_their_rounding(xp):
    x = np.random.default_rng(0).standard_normal(20)
    report = check_function(cancelling_cube, arr(xp, x), arr(xp, 3 * x**2), atol=cancelling_atol(x))
    assert report, str(report)


def test_the_atol_of_cancelling_terms_rounding_still_fails_a_gradient_off_by_more(xp):
    x = np.random.default_rng(0).standard_normal(20)
    grad = arr(xp, 3 * x**2 + 1e-2)
    assert not check_function(cancelling_cube, arr(xp, x), grad, atol=cancelling_atol(x))


# A function that rounds more than float64 fails its correct gradient at the default atol;
# the report says why. Every backend computes in float32, so each runs these.


def square_in_float32(v):
    """``sum(v**2)`` computed in float32: its rounding swamps a difference at h = 1e-5."""
    vx = namespace_of(v)
    return vx.sum(vx.astype(v, vx.float32) ** 2)


def rounding_notes(report):
    return [note for note in report.notes if note.startswith("rounding:")]


class Float32Square:
    """``x**2`` computed in float32, with the right backward."""

    params = ()

    def forward(self, x):
        self.x = x
        return namespace_of(x).astype(x, namespace_of(x).float32) ** 2

    def backward(self, dout):
        return 2 * self.x * dout


def test_a_function_returning_float32_is_noted_with_what_its_rounding_makes_of_a_difference(xp):
    x = np.random.default_rng(0).standard_normal(5)
    report = check_function(square_in_float32, arr(xp, x), arr(xp, 2 * x))
    eps_f_over_h = np.finfo(np.float32).eps * float(np.sum(x.astype(np.float32) ** 2)) / 1e-5
    assert not report, str(report)  # the note changes no verdict
    [note] = [n for n in report.notes if "computes in float32" in n]
    assert f"= {eps_f_over_h:.2g} of a central difference" in note, note


def test_a_layer_whose_forward_returns_float32_is_noted_as_a_function_is(xp):
    report = check_layer(Float32Square(), rand(xp, 4, 3))
    assert any("layer Float32Square computes in float32" in n for n in report.notes), str(report)


def test_a_function_returning_float64_gets_no_precision_note(xp):
    x = np.random.default_rng(0).standard_normal(5)
    report = check_function(lambda v: namespace_of(v).sum(v**2), arr(xp, x), arr(xp, 2 * x))
    assert report and not report.notes, str(report)


def test_errors_that_grow_at_the_retry_are_noted_for_a_float_computed_in_float32(xp):
    # A Python float hides the dtype; the retry's errors grow about tenfold, as rounding's
    x = np.random.default_rng(0).standard_normal(5)
    report = check_function(lambda v: float(square_in_float32(v)), arr(xp, x), arr(xp, 2 * x))
    assert not report and len(rounding_notes(report)) == 1, str(report)


def test_errors_that_grow_at_the_retry_are_noted_for_large_terms_that_cancel(xp):
    x = np.random.default_rng(0).standard_normal(20)
    report = check_function(cancelling_cube, arr(xp, x), arr(xp, 3 * x**2))
    assert not report and len(rounding_notes(report)) == 1, str(report)


@pytest.mark.parametrize("off", [0.1, 1e-3])
def test_a_wrong_gradient_of_a_smooth_function_gets_no_rounding_note(xp, off):
    x = np.random.default_rng(0).standard_normal(5)
    report = check_function(lambda v: namespace_of(v).sum(v**2), arr(xp, x), arr(xp, 2 * x + off))
    assert not report and not rounding_notes(report), str(report)


def test_a_relu_with_a_wrong_slope_gets_no_rounding_note(xp):
    report = check_layer(LeakyLie(0.1), rand(xp, 6, 4) * 1e-5)  # inputs within h of the kink
    assert not report and not rounding_notes(report), str(report)


def test_the_rounding_note_is_left_out_where_the_precision_note_names_the_cause(xp):
    x = np.random.default_rng(0).standard_normal(5)
    report = check_function(square_in_float32, arr(xp, x), arr(xp, 2 * x))
    assert not rounding_notes(report) and len(report.notes) == 1, str(report)


def test_the_atol_the_rounding_note_gives_passes_the_correct_gradient(xp):
    x = np.random.default_rng(0).standard_normal(5)
    f = lambda v: float(square_in_float32(v))  # noqa: E731
    [note] = rounding_notes(check_function(f, arr(xp, x), arr(xp, 2 * x)))
    atol = float(re.search(r"an atol that covers it \(([^)]+)\)", note).group(1))
    assert check_function(f, arr(xp, x), arr(xp, 2 * x), atol=atol)


def test_check_function_refuses_an_x_holding_nan_naming_it_and_where(xp):
    # It failed "(non-finite)", advising a smaller h.
    x = arr(xp, [1.0, np.nan, 2.0])
    with pytest.raises(
        ValueError, match=r"^x holds 1 non-finite value of 3, the first nan at \[1\]"
    ):
        check_function(lambda v: xp.sum(v * v), x, 2 * x)
    point = {"a": arr(xp, [1.0]), "b": arr(xp, [np.inf])}
    with pytest.raises(ValueError, match=r"^x\['b'\] holds 1 non-finite value of 1, the first inf"):
        check_function(lambda q: xp.sum(q["a"] * q["b"]), point, point)


def test_check_layer_refuses_a_parameter_holding_nan_naming_it_and_where(xp):
    layer = Square(arr(xp, [0.5, np.nan, 2.0]))
    with pytest.raises(
        ValueError, match=r"^parameter 'a' holds 1 non-finite value of 3, the first"
    ):
        check_layer(layer, rand(xp, 4, 3))


def test_a_layer_undefined_at_the_point_is_refused_saying_so(xp):
    # It failed every element as "undefined a step h away; try a smaller h".
    with (
        np.errstate(invalid="ignore"),
        pytest.raises(
            ValueError, match=r"LogShifted.forward is nan at the point checked.*whatever h"
        ),
    ):
        check_layer(LogShifted(), rand(xp, 4, 3))


def test_a_function_undefined_at_the_point_is_refused_saying_so(xp):
    def log_shifted(v):
        return namespace_of(v).sum(namespace_of(v).log(v - 10.0))

    x = rand(xp, 4, 3)
    with (
        np.errstate(invalid="ignore"),
        pytest.raises(ValueError, match=r"^function log_shifted is nan at the point checked"),
    ):
        check_function(log_shifted, x, x)


def test_params_given_as_a_string_is_refused_naming_the_missing_comma(xp):
    # ("w") is the string "w": it named ['w'] ... or, for "weight", its six letters.
    class Scale:
        params = "weight"

        def __init__(self):
            self.weight = rand(xp, 3)

        def forward(self, x):
            return x * self.weight

        def backward(self, dout):
            return dout * self.weight

    with pytest.raises(TypeError, match=r"a tuple of one name needs its comma: \('weight',\)"):
        check_layer(Scale(), rand(xp, 4, 3))
