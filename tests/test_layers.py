"""Each layer's forward pass against a NumPy formula, and its backward pass against an
independent float64 central difference of that formula, on every backend."""

import gc
import inspect
import re
import warnings
import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numeric import central_difference, dev, partial_differences

from xpnet import conv, layers
from xpnet.backend import BackendMismatchError, to_device, to_numpy
from xpnet.conv import Convolution, Pooling

SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
shapes = st.tuples(st.integers(1, 5), st.integers(1, 6))
seeds = st.integers(0, 2**32 - 1)


def assert_close(actual, expected, rtol=1e-7, atol=1e-9):
    np.testing.assert_allclose(to_numpy(actual), expected, rtol=rtol, atol=atol)


def away_from_zero(rng, shape, margin=1e-3):
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, margin + np.abs(x), x)


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


ELEMENTWISE = {
    "ReLU": (layers.ReLU, lambda x: np.maximum(x, 0)),
    "Sigmoid": (layers.Sigmoid, np_sigmoid),
    "Tanh": (layers.Tanh, np.tanh),
    "Exp": (layers.Exp, np.exp),
    "Reciprocal": (layers.Reciprocal, lambda x: 1 / x),
}


@pytest.mark.parametrize("name", ELEMENTWISE)
@SETTINGS
@given(shape=shapes, seed=seeds)
def test_elementwise_layer_forward_and_backward(xp, name, shape, seed):
    layer_cls, formula = ELEMENTWISE[name]
    rng = np.random.default_rng(seed)
    # 0.1 from zero: off ReLU's kink, and 1 / x stays smooth within the difference step.
    x, dout = away_from_zero(rng, shape, margin=0.1), rng.standard_normal(shape)
    layer = layer_cls()
    assert_close(layer.forward(dev(xp, x)), formula(x))
    expected = central_difference(lambda v: np.sum(formula(v) * dout), x)
    assert_close(layer.backward(dev(xp, dout)), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_is_finite_for_large_inputs_and_warns_of_no_overflow(xp, dtype):
    """exp(1000) overflows, and NumPy warns of it; below exp's limit the sigmoid is that of
    the limit (6e-39 in float32, 1e-308 in float64), where the true value is 0."""
    x = to_device(np.array([-1000.0, 0.0, 1000.0]), dtype=dtype, xp=xp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = to_numpy(layers.Sigmoid().forward(x))
    assert 0.0 <= out[0] < 1e-38 and out[1:].tolist() == [0.5, 1.0], out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_keeps_its_relative_precision_for_negative_inputs(xp, dtype):
    """0.5 * (1 + tanh(x / 2)) cancels there: 0 at -20 in float32, where it is 2.06e-9."""
    x = np.array([-5.0, -20.0, -40.0, -80.0])
    out = to_numpy(layers.Sigmoid().forward(to_device(x, dtype=dtype, xp=xp)))
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-x)), rtol=4 * np.finfo(dtype).eps, atol=0)


def test_relu_passes_no_gradient_at_exactly_zero(xp):
    # max(x, 0) has no derivative at 0; like the book's mask (x <= 0) and PyTorch, ReLU
    # takes the left one, 0.
    layer = layers.ReLU()
    layer.forward(dev(xp, np.array([-1.0, 0.0, 2.0])))
    np.testing.assert_array_equal(to_numpy(layer.backward(dev(xp, np.ones(3)))), [0.0, 0.0, 1.0])


def test_sigmoid_backward_uses_only_its_output(xp):
    """The layer keeps no hold on its input: it can be freed after forward, and backward
    still gives dout * s * (1 - s), s the sigmoid of the input (here in NumPy float64)."""
    x_np, dout = np.array([0.3, -1.2, 2.5]), np.array([1.0, -2.0, 0.5])
    layer = layers.Sigmoid()
    x = dev(xp, x_np)
    input_alive = weakref.ref(x)
    layer.forward(x)
    del x
    gc.collect()
    assert input_alive() is None, "Sigmoid keeps its input after forward"
    s = np_sigmoid(x_np)
    assert_close(layer.backward(dev(xp, dout)), dout * s * (1 - s), rtol=1e-12)


@SETTINGS
@given(n=st.integers(1, 4), d=st.integers(1, 6), m=st.integers(1, 5), seed=seeds)
def test_affine_forward_and_backward(xp, n, d, m, seed):
    rng = np.random.default_rng(seed)
    x, W, b = rng.standard_normal((n, d)), rng.standard_normal((d, m)), rng.standard_normal(m)
    dout = rng.standard_normal((n, m))
    layer = layers.Affine(dev(xp, W), dev(xp, b))
    assert_close(layer.forward(dev(xp, x)), x @ W + b)
    dx = layer.backward(dev(xp, dout))

    def objective(x_, W_, b_):
        return np.sum((x_ @ W_ + b_) * dout)

    expected_dx, expected_dW, expected_db = partial_differences(objective, x, W, b)
    assert_close(dx, expected_dx, rtol=1e-6, atol=1e-8)
    assert_close(layer.dW, expected_dW, rtol=1e-6, atol=1e-8)
    assert_close(layer.db, expected_db, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("layer", ["Affine", "Convolution"])
def test_float32_weights_given_float64_data_compute_in_float64_on_every_backend(xp, layer):
    # As the book's chapter 5 does (float64 weights, float32 images), the other way round:
    # NumPy promoted to float64, and PyTorch's matmul refused the two dtypes.
    rng = np.random.default_rng(0)
    if layer == "Affine":
        x, W, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
        made = layers.Affine(dev(xp, W, "float32"), dev(xp, b, "float32"))
    else:
        x, W, b = rng.standard_normal((2, 1, 4, 4)), rng.standard_normal((2, 1, 3, 3)), np.ones(2)
        made = Convolution(dev(xp, W, "float32"), dev(xp, b, "float32"))
    W32, b32 = (a.astype(np.float32).astype(np.float64) for a in (W, b))
    out = made.forward(dev(xp, x))
    dx = made.backward(out)
    numpy_layer = type(made)(W32, b32)  # NumPy's own promotion, on the same weights
    expected = numpy_layer.forward(x)
    assert (out.dtype, dx.dtype, made.dW.dtype) == (xp.float64,) * 3
    assert_close(out, expected)
    assert_close(dx, numpy_layer.backward(expected))
    assert_close(made.dW, numpy_layer.dW)


def test_affine_flattens_image_input_and_returns_dx_in_its_shape(xp):
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((2, 1, 3, 2)), rng.standard_normal((6, 4)), np.zeros(4)
    layer = layers.Affine(dev(xp, W), dev(xp, b))
    assert_close(layer.forward(dev(xp, x)), x.reshape(2, 6) @ W)
    dout = rng.standard_normal((2, 4))
    dx = layer.backward(dev(xp, dout))
    assert tuple(dx.shape) == (2, 1, 3, 2)
    assert_close(dx, (dout @ W.T).reshape(x.shape))


def test_affine_rejects_input_of_the_wrong_width(xp):
    layer = layers.Affine(dev(xp, np.zeros((5, 3))), dev(xp, np.zeros(3)))
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(5, 3\)"):
        layer.forward(dev(xp, np.zeros((2, 4))))


@pytest.mark.parametrize(("w_shape", "b_shape"), [((5,), (5,)), ((5, 3), (5,)), ((5, 3), (3, 1))])
def test_affine_rejects_weights_and_bias_that_do_not_match(xp, w_shape, b_shape):
    expected = rf"W of shape \(D, M\) and b of shape \(M,\), got {re.escape(str(w_shape))}"
    with pytest.raises(ValueError, match=expected):
        layers.Affine(dev(xp, np.zeros(w_shape)), dev(xp, np.zeros(b_shape)))


@pytest.mark.parametrize(
    ("layer", "w_shape"), [(layers.Affine, (4, 3)), (Convolution, (3, 1, 2, 2))]
)
def test_weights_and_bias_of_two_dtypes_are_refused(xp, layer, w_shape):
    # The bias added in place was cast into the product's dtype without a word (NumPy).
    W, b = dev(xp, np.zeros(w_shape), dtype="float32"), dev(xp, np.zeros(3))
    with pytest.raises(ValueError, match="needs W and b of one dtype, got float32 and float64"):
        layer(W, b)


@pytest.mark.parametrize(
    ("layer", "w_shape"), [(layers.Affine, (4, 3)), (Convolution, (3, 1, 2, 2))]
)
def test_weights_and_bias_on_two_devices_are_refused(layer, w_shape):
    strict = pytest.importorskip("array_api_strict")
    W = strict.asarray(np.zeros(w_shape))
    b = strict.asarray(np.zeros(3), device=strict.Device("device1"))
    with pytest.raises(BackendMismatchError, match="different devices"):
        layer(W, b)


@pytest.mark.parametrize("layer", [layers.Affine, Convolution])
def test_weights_given_as_lists_are_named(layer):
    with pytest.raises(TypeError, match=r"W must be an array, got list \[\[0.0, 1.0\]\]"):
        layer([[0.0, 1.0]], np.zeros(2))
    with pytest.raises(TypeError, match=r"b must be an array, got list \[0.0\]"):
        layer(np.zeros((1, 1, 1, 1)), [0.0])


@pytest.mark.parametrize("momentum", [-0.1, 1.5, float("nan")])
def test_batchnorm_rejects_a_momentum_outside_0_to_1(xp, momentum):
    with pytest.raises(ValueError, match=f"momentum must be in \\[0, 1\\].*got {momentum}"):
        layers.BatchNormalization(dev(xp, np.ones(3)), dev(xp, np.zeros(3)), momentum=momentum)


@pytest.mark.parametrize("name", ["running_mean", "running_var"])
def test_batchnorm_rejects_running_statistics_of_another_shape(xp, name):
    # They were taken as given, and broke (or broadcast) in the first forward.
    with pytest.raises(ValueError, match=rf"{name} of gamma's shape \(3,\), got shape \(2,\)"):
        layers.BatchNormalization(
            dev(xp, np.ones(3)), dev(xp, np.zeros(3)), **{name: dev(xp, np.zeros(2))}
        )


def test_batchnorm_and_dropout_name_a_string_for_a_number(xp):
    with pytest.raises(ValueError, match=r"momentum must be in .*got '0\.9'"):
        layers.BatchNormalization(dev(xp, np.ones(3)), dev(xp, np.zeros(3)), momentum="0.9")
    with pytest.raises(ValueError, match=r"dropout_ratio must be in \[0, 1\), got '0.5'"):
        layers.Dropout("0.5")


def test_affine_rejects_integer_input(xp):
    layer = layers.Affine(dev(xp, np.zeros((2, 3))), dev(xp, np.zeros(3)))
    with pytest.raises(ValueError, match=r"floating-point.*int"):
        layer.forward(dev(xp, np.zeros((1, 2)), dtype="int64"))


RAW_PIXELS = (
    "raw pixels (0 to 255) go in as floating point divided by 255: "
    "xp.astype(x, xp.float32) / 255, or load_mnist(normalize=True)"
)


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda xp: layers.Affine(dev(xp, np.zeros((4, 3))), dev(xp, np.zeros(3))), (1, 4)),
        (
            lambda xp: Convolution(dev(xp, np.zeros((2, 1, 3, 3))), dev(xp, np.zeros(2))),
            (1, 1, 4, 4),
        ),
        (lambda xp: Pooling(2, 2, stride=2), (1, 1, 4, 4)),
        (lambda xp: layers.BatchNormalization(dev(xp, np.ones(4)), dev(xp, np.zeros(4))), (2, 4)),
    ],
)
def test_a_layer_that_takes_data_given_integers_says_how_to_convert_raw_pixels(xp, make, shape):
    with pytest.raises(ValueError) as info:
        make(xp).forward(dev(xp, np.zeros(shape), dtype="uint8"))
    assert str(info.value).endswith(f"got dtype uint8; {RAW_PIXELS}")


def test_affine_rejects_arrays_from_two_backends():
    strict = pytest.importorskip("array_api_strict")
    layer = layers.Affine(dev(strict, np.zeros((2, 3))), dev(strict, np.zeros(3)))
    with pytest.raises(BackendMismatchError):
        layer.forward(np.zeros((1, 2)))


@SETTINGS
@given(shape=shapes, seed=seeds)
def test_softmax_forward_and_backward(xp, shape, seed):
    rng = np.random.default_rng(seed)
    x, dout = rng.standard_normal(shape), rng.standard_normal(shape)
    layer = layers.Softmax()
    assert_close(layer.forward(dev(xp, x)), np_softmax(x))
    expected = central_difference(lambda v: np.sum(np_softmax(v) * dout), x)
    assert_close(layer.backward(dev(xp, dout)), expected, rtol=1e-6, atol=1e-8)


def np_cross_entropy(x, labels):
    p = np_softmax(x)
    return -np.mean(np.log(p[np.arange(len(labels)), labels]))


def test_the_books_activation_functions_give_its_formulas(xp):
    # Chapter 3's step_function, sigmoid and relu, against the book's NumPy lines.
    x = np.array([[-1000.0, -1.0, 0.0], [0.5, 2.0, 1000.0]])
    with np.errstate(over="ignore"):
        expected = {
            "step_function": np.array(x > 0, dtype=np.float64),
            "sigmoid": 1 / (1 + np.exp(-x)),
            "relu": np.maximum(0, x),
        }
    # The sigmoid at -1000 is that of exp's limit, -709 (1.2e-308, subnormal), not 0.
    tiny = np.finfo(np.float64).tiny
    for name, want in expected.items():
        got = getattr(layers, name)(dev(xp, x))
        assert got.dtype == dev(xp, x).dtype and got.shape == x.shape
        np.testing.assert_allclose(to_numpy(got), want, rtol=1e-15, atol=tiny, err_msg=name)


def test_the_books_activation_functions_take_a_python_number():
    assert (layers.step_function(-0.5), layers.step_function(2)) == (0.0, 1.0)
    assert (layers.relu(-0.5), layers.relu(2.5), layers.relu(3)) == (0, 2.5, 3)
    assert layers.sigmoid(0.0) == 0.5
    assert layers.sigmoid(2.0) == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-15, abs=0)


def test_softmax_shifts_each_row_by_its_own_maximum(xp):
    # Softmax is unchanged by a shift of a row, and equal scores share 1/C: a shift by the
    # batch's maximum would take exp(-1000) = 0 in the second row, 0 / 0.
    x = dev(xp, np.array([[0.0, 0.0], [-1000.0, -1000.0]]))
    for y in (layers.softmax(x), layers.Softmax().forward(x)):
        np.testing.assert_array_equal(to_numpy(y), np.full((2, 2), 0.5))


@SETTINGS
@given(n=st.integers(1, 5), classes=st.integers(2, 6), seed=seeds)
def test_softmax_with_loss_on_labels(xp, n, classes, seed):
    rng = np.random.default_rng(seed)
    x, labels = rng.standard_normal((n, classes)), rng.integers(0, classes, n)
    layer = layers.SoftmaxWithLoss()
    loss = layer.forward(dev(xp, x), dev(xp, labels, dtype="int64"))
    assert_close(loss, np_cross_entropy(x, labels))
    expected = central_difference(lambda v: np_cross_entropy(v, labels), x)
    assert_close(layer.backward(), expected, rtol=1e-6, atol=1e-8)


def test_softmax_with_loss_backward_is_y_minus_t_over_n(xp):
    x, labels = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]), np.array([2, 0])
    layer = layers.SoftmaxWithLoss()
    layer.forward(dev(xp, x), dev(xp, labels, dtype="int64"))
    assert_close(layer.backward(1), (np_softmax(x) - np.eye(3)[labels]) / 2)


def test_softmax_with_loss_accepts_one_hot_targets(xp):
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((4, 3)), np.array([0, 2, 1, 2])
    by_label, by_one_hot = layers.SoftmaxWithLoss(), layers.SoftmaxWithLoss()
    a = by_label.forward(dev(xp, x), dev(xp, labels, dtype="int64"))
    b = by_one_hot.forward(dev(xp, x), dev(xp, np.eye(3)[labels]))
    assert_close(a, to_numpy(b), rtol=1e-15)
    assert_close(by_label.backward(), to_numpy(by_one_hot.backward()), rtol=1e-15)


def test_softmax_with_loss_takes_integer_one_hot_rows_as_the_books_t(xp):
    # The book writes t = np.array([0, 0, 1]): one-hot rows of an integer dtype.
    rng = np.random.default_rng(1)
    x, rows = rng.standard_normal((2, 3)), np.array([[0, 0, 1], [1, 0, 0]])
    loss = layers.SoftmaxWithLoss()
    value = loss.forward(dev(xp, x), dev(xp, rows, dtype="int64"))
    assert_close(value, np_soft_cross_entropy(x, rows), rtol=1e-12)
    assert_close(loss.backward(), (np_softmax(x) - rows) / 2, rtol=1e-12)


BOOK_Y = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]
BOOK_Y_WRONG = [0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0]


def np_cross_entropy_error(y, labels):
    """The book's batch formula written out: -sum(log(y[i, label_i] + 1e-7)) / N."""
    y = np.atleast_2d(y)
    return -np.sum(np.log(y[np.arange(len(y)), labels] + 1e-7)) / len(y)


@pytest.mark.parametrize(
    ("t", "dtype"),
    [
        (np.eye(10)[2], "int64"),
        (np.eye(10)[2], "float64"),
        (np.eye(10)[2:3], "int64"),
        (2, "int64"),
        ([2], "int64"),
    ],
    ids=["one-hot-int", "one-hot-float", "one-hot-row-(1,C)", "label", "label-(1,)"],
)
@pytest.mark.parametrize(
    ("y", "expected"), [(BOOK_Y, 0.510825457099338), (BOOK_Y_WRONG, 2.302584092994546)]
)
def test_cross_entropy_error_of_one_sample_gives_the_books_values(xp, y, expected, t, dtype):
    assert_close(
        layers.cross_entropy_error(dev(xp, y), dev(xp, t, dtype=dtype)), expected, rtol=1e-12
    )


@pytest.mark.parametrize("one_hot", [False, True])
def test_cross_entropy_error_of_a_batch_is_the_mean_over_its_samples(xp, one_hot):
    rng = np.random.default_rng(2)
    y, labels = np_softmax(rng.standard_normal((5, 4))), rng.integers(0, 4, 5)
    t = np.eye(4)[labels] if one_hot else labels
    value = layers.cross_entropy_error(dev(xp, y), dev(xp, t, dtype="int64"))
    assert_close(value, np_cross_entropy_error(y, labels), rtol=1e-12)


def test_cross_entropy_error_refuses_a_label_out_of_range(xp):
    expected = r"label 10 is out of range \(.*\): expected labels in \[0, 9\]"
    with pytest.raises(ValueError, match=expected):
        layers.cross_entropy_error(dev(xp, BOOK_Y), dev(xp, 10, dtype="int64"))


@pytest.mark.parametrize(("y", "expected"), [(BOOK_Y, 0.0975), (BOOK_Y_WRONG, 0.5975)])
def test_mean_squared_error_of_one_sample_gives_the_books_values(xp, y, expected):
    t = dev(xp, np.eye(10)[2], dtype="int64")
    assert_close(layers.mean_squared_error(dev(xp, y), t), expected, rtol=1e-12)


def test_mean_squared_error_of_a_batch_is_half_the_summed_squares(xp):
    rng = np.random.default_rng(3)
    y, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    assert_close(layers.mean_squared_error(dev(xp, y), dev(xp, t)), 0.5 * np.sum((y - t) ** 2))


def test_affine_given_one_sample_says_to_make_it_a_batch_of_one(xp):
    layer = layers.Affine(dev(xp, np.zeros((4, 2))), dev(xp, np.zeros(2)))
    with pytest.raises(ValueError, match=r"one sample goes as a batch of one, x\[None, :\]"):
        layer.forward(dev(xp, np.zeros(4)))


def test_affine_given_a_column_vector_says_samples_go_as_rows(xp):
    # Course notes write W @ x with inputs as columns (784, 1); xpnet's layers take x @ W.
    layer = layers.Affine(dev(xp, np.zeros((4, 2))), dev(xp, np.zeros(2)))
    with pytest.raises(
        ValueError, match=r"shape \(4, 1\).*a column vector: samples go as rows, x\.T"
    ):
        layer.forward(dev(xp, np.zeros((4, 1))))


def np_soft_cross_entropy(x, t):
    """-sum(t * log_softmax(x)) / N for target rows ``t`` of any sum (PyTorch's
    cross_entropy with class probabilities)."""
    shifted = x - x.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -np.sum(t * logp) / len(x)


def range_rows(labels, classes, low=0.01, high=0.99):
    """Rows of ``low`` with ``high`` at the label, as ``Trainer(target_range=...)`` makes."""
    return low + (high - low) * np.eye(classes)[labels]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_softmax_with_loss_backward_is_the_gradient_for_rows_not_summing_to_1(xp, reduction):
    # 0.01/0.99 rows (Trainer's target_range) sum to 1.02 over 4 classes: backward is
    # then y * sum(t) - t, not y - t.
    rng = np.random.default_rng(11)
    x, t = rng.standard_normal((3, 4)), range_rows([0, 3, 1], 4)
    scale = 3 if reduction == "sum" else 1
    layer = layers.SoftmaxWithLoss(reduction=reduction)
    assert_close(layer.forward(dev(xp, x), dev(xp, t)), scale * np_soft_cross_entropy(x, t))
    expected = scale * central_difference(lambda v: np_soft_cross_entropy(v, t), x)
    assert_close(layer.backward(), expected, rtol=1e-6, atol=1e-8)


def test_softmax_with_loss_perturbations_hold_for_rows_not_summing_to_1(xp):
    """The local perturbations that fast gradient checks use agree with the loss itself,
    so a check does not pass a backward that is wrong in the same way."""
    rng = np.random.default_rng(12)
    x, t = rng.standard_normal((3, 4)), range_rows([2, 0, 1], 4)
    dx = 1e-3 * rng.standard_normal((2, 3, 4))
    u, v = 1e-3 * rng.standard_normal((2, 3)), 1e-3 * rng.standard_normal((2, 4))
    base = np_soft_cross_entropy(x, t)
    layer = layers.SoftmaxWithLoss()
    dense = [np_soft_cross_entropy(x + d, t) - base for d in dx]
    got = layer.perturb(dev(xp, x), dev(xp, t), dev(xp, dx))
    assert_close(got, dense, rtol=1e-9, atol=1e-15)
    rank_one = [
        np_soft_cross_entropy(x + np.outer(a, b), t) - base for a, b in zip(u, v, strict=True)
    ]
    got = layer.perturb_rank_one(dev(xp, x), dev(xp, t), dev(xp, u), dev(xp, v))
    assert_close(got, rank_one, rtol=1e-9, atol=1e-15)


def test_softmax_with_loss_rank_one_perturbation_skips_rows_that_do_not_move(xp):
    """A rank-one change whose ``u`` is 0 in some samples (a pixel that is blank there, a
    ReLU that is off) moves the loss by the other samples' rows alone; a ``u`` of zeros
    moves it by exactly 0."""
    rng = np.random.default_rng(13)
    x, t = rng.standard_normal((5, 4)), np.eye(4)[[1, 0, 3, 3, 2]]
    u, v = 1e-3 * rng.standard_normal((3, 5)), 1e-3 * rng.standard_normal((3, 4))
    u[0, [1, 3]] = 0.0
    u[2] = 0.0
    base = np_soft_cross_entropy(x, t)
    expected = [
        np_soft_cross_entropy(x + np.outer(a, b), t) - base for a, b in zip(u, v, strict=True)
    ]
    got = layers.SoftmaxWithLoss().perturb_rank_one(dev(xp, x), dev(xp, t), dev(xp, u), dev(xp, v))
    assert_close(got, expected, rtol=1e-9, atol=1e-15)
    assert float(got[2]) == 0.0


def test_relu_perturbation_is_exact_where_the_input_stays_on_one_side(xp):
    """A gradient check's change through ReLU is the move itself above 0 and nothing below
    it, not ``(x + dx) - x``, which loses a move smaller than x's rounding."""
    x = np.array([1.0, 1.0, -1.0, -1.0, 0.5])
    dx = np.array([[1e-17, -3e-12, 1e-17, 1.25, -2.0]])  # the last two cross 0
    expected = [[1e-17, -3e-12, 0.0, 0.25, -0.5]]
    got = layers.ReLU().perturb(dev(xp, x), dev(xp, dx))
    np.testing.assert_array_equal(to_numpy(got), expected)


def np_batchnorm_training(x, gamma, beta, eps=1e-6):
    """The book's BatchNormalization in training mode: each feature over the batch."""
    xc = x - x.mean(axis=0)
    return gamma * xc / np.sqrt((xc * xc).mean(axis=0) + eps) + beta


def test_batchnorm_perturbations_are_the_training_pass_of_the_moved_batch(xp):
    """A gradient check's changes through BatchNorm (dense, one column, a parameter
    element) renormalize the moved batch, as the training-mode loss it differentiates."""
    rng = np.random.default_rng(13)
    x, gamma, beta = rng.standard_normal((5, 3)), rng.standard_normal(3), rng.standard_normal(3)
    layer = layers.BatchNormalization(dev(xp, gamma), dev(xp, beta))
    base = np_batchnorm_training(x, gamma, beta)
    dx = 1e-3 * rng.standard_normal((2, 5, 3))
    dense = [np_batchnorm_training(x + d, gamma, beta) - base for d in dx]
    assert_close(layer.perturb(dev(xp, x), dev(xp, dx)), dense, rtol=1e-9, atol=1e-15)
    cols, d = np.array([2, 0]), 1e-3 * rng.standard_normal((2, 5))
    moved = [x + np.outer(d[p], np.eye(3)[c]) for p, c in enumerate(cols)]
    column = [
        (np_batchnorm_training(m, gamma, beta) - base)[:, c]
        for m, c in zip(moved, cols, strict=True)
    ]
    got = layer.perturb_columns(dev(xp, x), dev(xp, cols, dtype="int64"), dev(xp, d))
    assert_close(got, column, rtol=1e-9, atol=1e-15)
    index, step = np.array([1, 2]), np.array([1e-3, -2e-3])
    for attr in ("gamma", "beta"):
        moved = [
            np_batchnorm_training(x, gamma + s * np.eye(3)[i] * (attr == "gamma"),
                                  beta + s * np.eye(3)[i] * (attr == "beta")) - base
            for i, s in zip(index, step, strict=True)
        ]  # fmt: skip
        got_cols, got = layer.perturb_param(
            dev(xp, x), attr, dev(xp, index, dtype="int64"), dev(xp, step)
        )
        assert to_numpy(got_cols).tolist() == index.tolist()
        assert_close(
            got, [m[:, i] for m, i in zip(moved, index, strict=True)], rtol=1e-9, atol=1e-15
        )


def test_dropout_perturbations_go_through_the_last_training_mask(xp):
    rng = np.random.default_rng(14)
    x, dx = 1.0 + rng.random((4, 6)), rng.standard_normal((3, 4, 6))
    layer = layers.Dropout(0.5, seed=0)
    kept = to_numpy(layer.forward(dev(xp, x), train_flg=True)) != 0
    assert_close(layer.perturb(dev(xp, x), dev(xp, dx)), dx * kept, rtol=0, atol=0)
    cols, d = np.array([5, 1, 5]), rng.standard_normal((3, 4))
    got = layer.perturb_columns(dev(xp, x), dev(xp, cols, dtype="int64"), dev(xp, d))
    assert_close(got, d * kept[:, cols].T, rtol=0, atol=0)
    layer.forward(dev(xp, x), train_flg=False)
    with pytest.raises(ValueError, match="not a training pass on an input of this shape"):
        layer.perturb(dev(xp, x), dev(xp, dx))


def test_softmax_with_loss_is_stable_for_large_logits(xp):
    x = dev(xp, [[1000.0, 0.0, -1000.0], [0.0, 800.0, 0.0]])
    layer = layers.SoftmaxWithLoss()
    loss = float(layer.forward(x, dev(xp, [1, 1], dtype="int64")))
    assert loss == pytest.approx(500.0)
    # In float64 the softmax rows are exactly one-hot: [1, 0, 0] (e^-1000 and e^-2000
    # underflow) and [0, 1, 0] (e^-800 underflows). With targets [0, 1, 0] in both rows,
    # (y - t) / N is [0.5, -0.5, 0] and [0, 0, 0].
    assert_close(layer.backward(), [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], rtol=0, atol=1e-15)


def test_softmax_with_loss_ignores_a_class_masked_out_with_minus_inf_on_labels(xp):
    # A -inf score is a class ruled out (PyTorch's cross_entropy on labels gives a finite
    # loss there): its probability is 0, and it adds nothing to the loss or its gradient.
    x, labels = np.array([[0.5, -np.inf, 2.0], [-np.inf, 1.0, 0.0]]), np.array([0, 2])
    kept = [np.array([0.5, 2.0]), np.array([1.0, 0.0])]  # the rows without the masked class
    expected_loss = (-np.log(np_softmax(kept[0])[0]) - np.log(np_softmax(kept[1])[1])) / 2
    layer = layers.SoftmaxWithLoss()
    loss = layer.forward(dev(xp, x), dev(xp, labels, dtype="int64"))
    assert_close(loss, expected_loss)
    y = [np.insert(np_softmax(kept[0]), 1, 0.0), np.insert(np_softmax(kept[1]), 0, 0.0)]
    assert_close(layer.backward(), (np.array(y) - np.eye(3)[labels]) / 2)


def test_softmax_with_loss_takes_uint8_labels_of_more_than_256_classes(xp):
    # MNIST's IDX labels are uint8; an arange of 300 classes in uint8 wraps at 256, so
    # label 1 also matched class 257 and the loss counted that class too.
    x, labels = np.random.default_rng(0).standard_normal((3, 300)), np.array([1, 7, 255])
    expected = -np.mean(np.log(np_softmax(x)[np.arange(3), labels]))
    layer = layers.SoftmaxWithLoss()
    assert_close(layer.forward(dev(xp, x), dev(xp, labels, dtype="uint8")), expected)
    assert_close(layer.backward(), (np_softmax(x) - np.eye(300)[labels]) / 3)


@pytest.mark.parametrize("label", [-1, 3])
def test_softmax_with_loss_rejects_labels_out_of_range(xp, label):
    with pytest.raises(ValueError, match=rf"label {label} is out of range.*\[0, 2\]"):
        layers.SoftmaxWithLoss().forward(
            dev(xp, np.zeros((2, 3))), dev(xp, [0, label], dtype="int64")
        )


@pytest.mark.parametrize(
    ("t_shape", "message"),
    [
        ((3,), r"integer labels must have shape \(2,\) to match scores of shape \(2, 3\), "
               r"got \(3,\)"),
        ((2, 2), r"one-hot targets must have the scores' shape \(2, 3\), got \(2, 2\)"),
        ((2, 3, 1), r"one-hot targets must have the scores' shape \(2, 3\), got \(2, 3, 1\)"),
    ],
)  # fmt: skip
def test_softmax_with_loss_rejects_targets_of_the_wrong_shape(xp, t_shape, message):
    dtype = "int64" if len(t_shape) == 1 else "float64"
    with pytest.raises(ValueError, match=message):
        layers.SoftmaxWithLoss().forward(
            dev(xp, np.zeros((2, 3))), dev(xp, np.zeros(t_shape), dtype=dtype)
        )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_float_labels_are_named_with_their_dtype_and_how_to_convert_them(xp, dtype):
    """Labels read with numpy.loadtxt are float64: the error says so, not 'one-hot'."""
    with pytest.raises(
        ValueError,
        match=rf"integer labels of shape \(4,\) or target rows of shape \(4, 10\).*"
        rf"got {dtype} of shape \(4,\).*astype.*int64",
    ):
        layers.SoftmaxWithLoss().forward(
            dev(xp, np.zeros((4, 10))), dev(xp, [1.0, 2.0, 3.0, 4.0], dtype=dtype)
        )


def np_binary_cross_entropy(x, t):
    y = np_sigmoid(x)
    return -np.mean(t * np.log(y) + (1 - t) * np.log(1 - y))


@SETTINGS
@given(shape=shapes, seed=seeds)
def test_sigmoid_with_loss(xp, shape, seed):
    rng = np.random.default_rng(seed)
    x, t = rng.standard_normal(shape), rng.integers(0, 2, shape).astype(np.float64)
    layer = layers.SigmoidWithLoss()
    assert_close(layer.forward(dev(xp, x), dev(xp, t)), np_binary_cross_entropy(x, t))
    expected = central_difference(lambda v: np_binary_cross_entropy(v, t), x)
    assert_close(layer.backward(), expected, rtol=1e-6, atol=1e-8)


def test_sigmoid_with_loss_is_finite_for_confident_wrong_scores(xp):
    loss = layers.SigmoidWithLoss().forward(dev(xp, [[50.0], [-50.0]]), dev(xp, [[0.0], [1.0]]))
    assert float(loss) == pytest.approx(50.0)


@SETTINGS
@given(shape=shapes, seed=seeds)
def test_mean_squared_error(xp, shape, seed):
    rng = np.random.default_rng(seed)
    y, t = rng.standard_normal(shape), rng.standard_normal(shape)
    layer = layers.MeanSquaredError()
    assert_close(layer.forward(dev(xp, y), dev(xp, t)), np.mean((y - t) ** 2))
    expected = central_difference(lambda v: np.mean((v - t) ** 2), y)
    assert_close(layer.backward(), expected, rtol=1e-6, atol=1e-8)


LOSSES = {
    "SoftmaxWithLoss": (layers.SoftmaxWithLoss, lambda x, t: np_cross_entropy(x, t.argmax(1))),
    "SigmoidWithLoss": (layers.SigmoidWithLoss, np_binary_cross_entropy),
    "MeanSquaredError": (layers.MeanSquaredError, lambda y, t: np.mean((y - t) ** 2)),
}


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("as_array", [False, True], ids=["float", "0-D array"])
def test_loss_backward_scales_by_dout(xp, name, as_array):
    """The chain rule: ``backward(dout)`` is ``dout`` times the loss's gradient."""
    loss_cls, np_loss = LOSSES[name]
    rng = np.random.default_rng(7)
    x, t = rng.standard_normal((3, 4)), np.eye(4)[[0, 3, 1]]
    layer = loss_cls()
    layer.forward(dev(xp, x), dev(xp, t))
    dout = dev(xp, -2.5) if as_array else -2.5
    expected = -2.5 * central_difference(lambda v: np_loss(v, t), x)
    assert_close(layer.backward(dout), expected, rtol=1e-6, atol=1e-8)


SUMMED = {  # the same losses summed instead of averaged, as PyTorch's reduction="sum"
    "SoftmaxWithLoss": lambda x, t: len(x) * np_cross_entropy(x, t.argmax(1)),
    "SigmoidWithLoss": lambda x, t: x.size * np_binary_cross_entropy(x, t),
    "MeanSquaredError": lambda y, t: np.sum((y - t) ** 2),
}


@pytest.mark.parametrize("name", LOSSES)
def test_loss_reduction_sum_sums_instead_of_averaging(xp, name):
    loss_cls, _ = LOSSES[name]
    rng = np.random.default_rng(8)
    x, t = rng.standard_normal((3, 4)), np.eye(4)[[2, 0, 1]]
    layer = loss_cls(reduction="sum")
    assert_close(layer.forward(dev(xp, x), dev(xp, t)), SUMMED[name](x, t))
    expected = central_difference(lambda v: SUMMED[name](v, t), x)
    assert_close(layer.backward(), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", LOSSES)
def test_an_unknown_reduction_is_refused(name):
    with pytest.raises(ValueError, match=r"unknown reduction 'none'.*mean, sum"):
        LOSSES[name][0](reduction="none")


@pytest.mark.parametrize("loss_cls", [layers.SigmoidWithLoss, layers.MeanSquaredError])
def test_losses_reject_targets_of_another_shape(xp, loss_cls):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        loss_cls().forward(dev(xp, np.zeros((2, 3))), dev(xp, np.zeros((3, 2))))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("t", [3, 0.5])
def test_losses_refuse_a_python_number_as_targets(xp, name, t):
    scores = dev(xp, np.zeros((2, 3)))
    with pytest.raises(TypeError, match=f"targets must be an array, got {type(t).__name__} {t}"):
        LOSSES[name][0]().forward(scores, t)


def test_a_python_list_among_arrays_is_refused_as_not_an_array(xp):
    with pytest.raises(TypeError, match="expected arrays, got list: convert with"):
        layers.SoftmaxWithLoss().forward(dev(xp, np.zeros((2, 3))), [0, 1])


def test_mul_and_add_take_python_scalars():
    mul, add = layers.Mul(), layers.Add()
    assert mul.forward(3.0, 4.0) == 12.0
    assert mul.backward(2.0) == (8.0, 6.0)
    assert add.forward(3.0, 4.0) == 7.0
    assert add.backward(2.0) == (2.0, 2.0)


@pytest.mark.parametrize(
    ("node", "f"),
    [
        (layers.Sigmoid, lambda x: 1 / (1 + np.exp(-x))),
        (layers.Tanh, np.tanh),
        (layers.Exp, np.exp),
    ],
)
def test_sigmoid_tanh_and_exp_take_a_python_number(node, f):
    """The book's graph nodes on plain numbers (x = 0.5), as Mul and Add take them."""
    layer = node()
    out = layer.forward(0.5)
    assert type(out) is float and out == pytest.approx(float(f(0.5)), rel=1e-12)
    grad = central_difference(lambda x: 2.0 * f(x[()]), 0.5)
    assert layer.backward(2.0) == pytest.approx(float(grad), rel=1e-8)


def test_mul_on_arrays(xp):
    rng = np.random.default_rng(3)
    x, y, dout = (rng.standard_normal(4) for _ in range(3))
    mul = layers.Mul()
    assert_close(mul.forward(dev(xp, x), dev(xp, y)), x * y)
    dx, dy = mul.backward(dev(xp, dout))
    assert_close(dx, dout * y)
    assert_close(dy, dout * x)


def _unary(cls):
    return lambda xp, x, dout: (cls(), (dev(xp, x),), dev(xp, dout))


CASES = {
    "ReLU": _unary(layers.ReLU),
    "Sigmoid": _unary(layers.Sigmoid),
    "Tanh": _unary(layers.Tanh),
    "Exp": _unary(layers.Exp),
    "Reciprocal": _unary(layers.Reciprocal),
    "Softmax": _unary(layers.Softmax),
    "Affine": lambda xp, x, dout: (
        layers.Affine(dev(xp, np.ones((3, 3))), dev(xp, np.ones(3))),
        (dev(xp, x),),
        dev(xp, dout),
    ),
    "SoftmaxWithLoss": lambda xp, x, dout: (
        layers.SoftmaxWithLoss(),
        (dev(xp, x), dev(xp, [0, 2], dtype="int64")),
        dev(xp, 1.0),
    ),
    "SigmoidWithLoss": lambda xp, x, dout: (
        layers.SigmoidWithLoss(),
        (dev(xp, x), dev(xp, np.ones((2, 3)))),
        dev(xp, 1.0),
    ),
    "MeanSquaredError": lambda xp, x, dout: (
        layers.MeanSquaredError(),
        (dev(xp, x), dev(xp, np.ones((2, 3)))),
        dev(xp, 1.0),
    ),
    "Dropout": _unary(layers.Dropout),
    "BatchNormalization": lambda xp, x, dout: (
        layers.BatchNormalization(dev(xp, np.ones(3)), dev(xp, np.zeros(3))),
        (dev(xp, x),),
        dev(xp, dout),
    ),
    # The images are x and dout reshaped: (1, 1, 2, 3) in, (1, 2, 1, 3) and (1, 1, 1, 2) out.
    "Convolution": lambda xp, x, dout: (
        Convolution(dev(xp, np.ones((2, 1, 2, 1))), dev(xp, np.ones(2))),
        (dev(xp, x.reshape(1, 1, 2, 3)),),
        dev(xp, dout.reshape(1, 2, 1, 3)),
    ),
    "Pooling": lambda xp, x, dout: (
        Pooling(2, 2, stride=1),
        (dev(xp, x.reshape(1, 1, 2, 3)),),
        dev(xp, dout[:1, :2].reshape(1, 1, 1, 2)),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_no_layer_writes_into_its_inputs(xp, name):
    x = np.array([[-1.0, 0.5, 2.0], [3.0, -0.2, 0.1]])
    dout = np.array([[1.0, -2.0, 3.0], [0.5, 0.25, -1.0]])
    layer, inputs, dout_dev = CASES[name](xp, x, dout)
    before = [to_numpy(a).copy() for a in (*inputs, dout_dev)]
    layer.forward(*inputs)
    layer.backward(dout_dev)
    for original, array in zip(before, (*inputs, dout_dev), strict=True):
        np.testing.assert_array_equal(to_numpy(array), original)


@pytest.mark.parametrize("name", CASES)
def test_backward_before_forward_fails_instead_of_returning_a_gradient(xp, name):
    x = np.array([[-1.0, 0.5, 2.0], [3.0, -0.2, 0.1]])
    layer, _, dout = CASES[name](xp, x, np.ones((2, 3)))
    with pytest.raises(AttributeError, match="has no attribute"):
        layer.backward(dout)


def test_affine_without_input_grad_skips_dx_but_keeps_dW_and_db(xp):
    rng = np.random.default_rng(5)
    x, W, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    dout = rng.standard_normal((3, 2))
    full, data_layer = (layers.Affine(dev(xp, W), dev(xp, b), input_grad=g) for g in (True, False))
    for layer in (full, data_layer):
        layer.forward(dev(xp, x))
    full.backward(dev(xp, dout))
    assert data_layer.backward(dev(xp, dout)) is None
    assert_close(data_layer.dW, to_numpy(full.dW), rtol=0)
    assert_close(data_layer.db, to_numpy(full.db), rtol=0)


def test_a_layers_repr_gives_its_parameters_by_dtype_and_shape_then_its_keywords(xp):
    W, b = (to_device(np.zeros(s), dtype="float32", xp=xp) for s in ((2, 1, 3, 3), (2,)))
    conv = Convolution(W, b, stride=2, pad=1, input_grad=False)
    assert (
        repr(conv)
        == "Convolution(W=float32[2, 1, 3, 3], b=float32[2], stride=2, pad=1, input_grad=False)"
    )
    assert repr(Pooling(2, 2, stride=2)) == "Pooling(pool_h=2, pool_w=2, stride=2, pad=0)"
    assert repr(layers.Dropout(0.25, seed=3)) == "Dropout(dropout_ratio=0.25, seed=3)"
    assert repr(layers.ReLU()) == "ReLU()"


def test_describe_takes_a_users_layer_whose_parameter_is_not_set_yet():
    class Gate:
        params = ("g",)
        g = None

    assert layers.describe(Gate()) == "Gate(g=None)"


def layer_classes():
    """Every public class of xpnet.layers and xpnet.conv with forward and backward, those
    added later too."""
    return [
        cls
        for module in (layers, conv)
        for name, cls in vars(module).items()
        if isinstance(cls, type)
        and cls.__module__ == module.__name__
        and not name.startswith("_")
        and all(callable(getattr(cls, m, None)) for m in ("forward", "backward"))
    ]


def test_the_layer_classes_include_those_of_both_modules():
    assert {layers.Affine, layers.SoftmaxWithLoss, Convolution, Pooling} <= set(layer_classes())


@pytest.mark.parametrize("method", ["forward", "backward"])
@pytest.mark.parametrize("cls", layer_classes(), ids=lambda cls: cls.__name__)
def test_help_on_a_layers_forward_and_backward_gives_the_shapes(cls, method):
    # help(Affine.forward) showed only the signature: "x (N, D) ... -> out (N, M) = x @ W + b".
    doc = inspect.getdoc(getattr(cls, method)) or ""
    assert re.search(r"\(.+?\).*? -> ", doc), f"{cls.__name__}.{method}: {doc!r}"
