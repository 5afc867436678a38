"""Convolution and max pooling against direct sums over windows written as NumPy loops,
their backward passes against float64 central differences of those loops, on every backend."""

import re

import numpy as np
import pytest
from numeric import central_difference, dev, partial_differences

from xpnet import check_layer
from xpnet.backend import to_numpy
from xpnet.conv import Convolution, Pooling, col2im, im2col
from xpnet.perturb import crosses_kink, layer_inputs

TOL = {"rtol": 1e-6, "atol": 1e-8}


def np_padded(x, pad):
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def out_size(size, window, stride, pad):
    return (size + 2 * pad - window) // stride + 1


def np_convolution(x, W, b, stride, pad):
    """out[n, f, y, z] = sum over the window at (y, z) of x_padded * W[f], plus b[f]."""
    n, _, h, w = x.shape
    fn, _, fh, fw = W.shape
    xpad = np_padded(x, pad)
    out = np.empty((n, fn, out_size(h, fh, stride, pad), out_size(w, fw, stride, pad)))
    for i, f, y, z in np.ndindex(out.shape):
        window = xpad[i, :, y * stride : y * stride + fh, z * stride : z * stride + fw]
        out[i, f, y, z] = np.sum(window * W[f]) + b[f]
    return out


def np_max_pool(x, ph, pw, stride, pad):
    """out[n, c, y, z] = max of the window at (y, z) of x zero-padded."""
    n, c, h, w = x.shape
    xpad = np_padded(x, pad)
    out = np.empty((n, c, out_size(h, ph, stride, pad), out_size(w, pw, stride, pad)))
    for i, k, y, z in np.ndindex(out.shape):
        out[i, k, y, z] = xpad[
            i, k, y * stride : y * stride + ph, z * stride : z * stride + pw
        ].max()
    return out


# (input shape, filter shape, stride, pad): small shapes; in the "untiled" ones the stride
# does not fit the padded image, whose last rows and columns no window reads.
CONV_CASES = {
    "stride1-pad0": ((2, 2, 5, 6), (3, 2, 3, 2), 1, 0),
    "stride1-pad1": ((2, 1, 4, 4), (2, 1, 3, 3), 1, 1),
    "stride2-pad1": ((1, 2, 5, 5), (2, 2, 3, 3), 2, 1),
    "stride3-pad2": ((2, 1, 5, 4), (2, 1, 3, 2), 3, 2),
    "1x1-filter": ((2, 3, 3, 2), (4, 3, 1, 1), 1, 0),
    "stride2-untiled": ((1, 2, 6, 5), (2, 2, 3, 2), 2, 0),
    "stride3-pad1-untiled": ((2, 1, 7, 6), (2, 1, 2, 3), 3, 1),
}


@pytest.mark.parametrize("case", CONV_CASES)
def test_convolution_forward_is_the_sum_over_each_window(xp, case):
    x_shape, w_shape, stride, pad = CONV_CASES[case]
    rng = np.random.default_rng(0)
    x, W, b = (rng.standard_normal(s) for s in (x_shape, w_shape, w_shape[:1]))
    layer = Convolution(dev(xp, W), dev(xp, b), stride=stride, pad=pad)
    np.testing.assert_allclose(
        to_numpy(layer.forward(dev(xp, x))), np_convolution(x, W, b, stride, pad), rtol=1e-12
    )


@pytest.mark.parametrize("case", CONV_CASES)
def test_convolution_backward_matches_central_differences(xp, case):
    x_shape, w_shape, stride, pad = CONV_CASES[case]
    rng = np.random.default_rng(1)
    x, W, b = (rng.standard_normal(s) for s in (x_shape, w_shape, w_shape[:1]))
    dout = rng.standard_normal(np_convolution(x, W, b, stride, pad).shape)
    layer = Convolution(dev(xp, W), dev(xp, b), stride=stride, pad=pad)
    layer.forward(dev(xp, x))
    dx = layer.backward(dev(xp, dout))

    def objective(x_, W_, b_):
        return np.sum(np_convolution(x_, W_, b_, stride, pad) * dout)

    expected_dx, expected_dW, expected_db = partial_differences(objective, x, W, b)
    np.testing.assert_allclose(to_numpy(dx), expected_dx, **TOL)
    np.testing.assert_allclose(to_numpy(layer.dW), expected_dW, **TOL)
    np.testing.assert_allclose(to_numpy(layer.db), expected_db, **TOL)


def test_convolution_without_input_grad_returns_none_but_keeps_dW_and_db(xp):
    rng = np.random.default_rng(2)
    x, W, b = rng.standard_normal((2, 1, 4, 4)), rng.standard_normal((2, 1, 2, 2)), np.zeros(2)
    dout = rng.standard_normal((2, 2, 3, 3))
    full = Convolution(dev(xp, W), dev(xp, b))
    data_layer = Convolution(dev(xp, W), dev(xp, b), input_grad=False)
    for layer in (full, data_layer):
        layer.forward(dev(xp, x))
    full.backward(dev(xp, dout))
    assert data_layer.backward(dev(xp, dout)) is None
    np.testing.assert_array_equal(to_numpy(data_layer.dW), to_numpy(full.dW))
    np.testing.assert_array_equal(to_numpy(data_layer.db), to_numpy(full.db))


@pytest.mark.parametrize(
    ("make", "out_shape"),
    [
        (
            lambda xp: Convolution(dev(xp, np.ones((2, 1, 2, 2))), dev(xp, np.zeros(2))),
            (2, 2, 3, 3),
        ),
        (lambda xp: Pooling(2, 2, stride=1), (2, 1, 3, 3)),
    ],
    ids=["Convolution", "Pooling"],
)
def test_backward_rejects_dout_of_another_batch_size(xp, make, out_shape):
    # dout (1, ...) for a batch of 2 would broadcast: dW summed twice, dx of one sample.
    layer = make(xp)
    layer.forward(dev(xp, np.random.default_rng(2).standard_normal((2, 1, 4, 4))))
    one_sample = (1, *out_shape[1:])
    with pytest.raises(ValueError, match=re.escape(f"{out_shape}, got {one_sample}")):
        layer.backward(dev(xp, np.ones(one_sample)))


def test_im2col_rows_are_the_windows_in_the_books_layout(xp):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 5))
    col = to_numpy(im2col(dev(xp, x), 2, 3, stride=1, pad=1))
    xpad, rows = np_padded(x, 1), []
    for n, y, z in np.ndindex(2, 5, 5):
        rows.append(xpad[n, :, y : y + 2, z : z + 3].reshape(-1))
    np.testing.assert_array_equal(col, np.stack(rows))


def test_col2im_adds_windows_that_overlap_in_one_direction_only(xp):
    # A 3x1 image, 2x1 windows at stride 1: two windows, rows 0-1 and 1-2, of one column;
    # the middle pixel is in both, so it gets both windows' values.
    image = col2im(dev(xp, np.ones((2, 2))), (1, 1, 3, 1), 2, 1, stride=1)
    np.testing.assert_array_equal(to_numpy(image), np.array([1.0, 2.0, 1.0]).reshape(1, 1, 3, 1))


@pytest.mark.parametrize("shape", [(2, 2, 5, 5), (2, 2, 6, 5)], ids=["tiled", "untiled"])
def test_col2im_is_the_adjoint_of_im2col(xp, shape):
    """<im2col(x), c> == <x, col2im(c)> for all x, c: what backprop needs of it."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    c = rng.standard_normal((2 * 3 * 3, 2 * 3 * 3))  # 3x3 windows at stride 2, pad 1: 3x3 of them
    lhs = np.sum(to_numpy(im2col(dev(xp, x), 3, 3, stride=2, pad=1)) * c)
    rhs = np.sum(x * to_numpy(col2im(dev(xp, c), shape, 3, 3, stride=2, pad=1)))
    assert lhs == pytest.approx(rhs, rel=1e-12)


@pytest.mark.parametrize("shape", [(4, 16), (10, 4)], ids=["transposed", "too-few-rows"])
def test_col2im_refuses_columns_of_another_shape(xp, shape):
    # 4x4 windows of 2x2 at stride 1 on a 5x5 image: col is (16, 4). Its transpose was
    # reshaped without a word into a wrong image.
    with pytest.raises(
        ValueError, match=re.escape(f"= (16, 4) for the input (1, 1, 5, 5), got {shape}")
    ):
        col2im(dev(xp, np.ones(shape)), (1, 1, 5, 5), 2, 2)


def distinct_values(rng, shape):
    """Values at least 0.1 apart and from 0, so no window has a tie, even with a padded 0."""
    size = int(np.prod(shape))
    return (rng.permutation(size) - size / 2 + 0.5).reshape(shape) * 0.1


# (input shape, pool_h, pool_w, stride, pad)
POOL_CASES = {
    "2x2-stride2": ((2, 3, 4, 6), 2, 2, 2, 0),
    "overlapping": ((1, 2, 5, 4), 2, 2, 1, 0),
    "3x2-stride1-pad1": ((2, 1, 3, 4), 3, 2, 1, 1),
    "3x3-stride2-pad1": ((1, 2, 5, 5), 3, 3, 2, 1),
    "2x2-stride2-untiled": ((2, 1, 5, 7), 2, 2, 2, 0),
    "3x3-stride2-untiled": ((1, 2, 6, 8), 3, 3, 2, 0),
}


@pytest.mark.parametrize("case", POOL_CASES)
def test_pooling_forward_is_the_maximum_of_each_window(xp, case):
    x_shape, ph, pw, stride, pad = POOL_CASES[case]
    x = distinct_values(np.random.default_rng(5), x_shape)
    layer = Pooling(ph, pw, stride=stride, pad=pad)
    np.testing.assert_array_equal(
        to_numpy(layer.forward(dev(xp, x))), np_max_pool(x, ph, pw, stride, pad)
    )


@pytest.mark.parametrize("case", POOL_CASES)
def test_pooling_backward_matches_central_differences(xp, case):
    x_shape, ph, pw, stride, pad = POOL_CASES[case]
    rng = np.random.default_rng(6)
    x = distinct_values(rng, x_shape)
    dout = rng.standard_normal(np_max_pool(x, ph, pw, stride, pad).shape)
    layer = Pooling(ph, pw, stride=stride, pad=pad)
    layer.forward(dev(xp, x))
    expected = central_difference(lambda v: np.sum(np_max_pool(v, ph, pw, stride, pad) * dout), x)
    np.testing.assert_allclose(to_numpy(layer.backward(dev(xp, dout))), expected, **TOL)


@pytest.mark.parametrize("first", [(0, 0), (0, 1), (1, 0)])
def test_pooling_sends_a_tied_windows_gradient_to_its_first_maximum(xp, first):
    """As the book's argmax: the first of the equal maxima in row-major order."""
    x = np.zeros((1, 1, 2, 2))
    x[0, 0, first[0] :, :] = 1.0
    x[0, 0, first[0], : first[1]] = 0.0
    layer = Pooling(2, 2, stride=2)
    layer.forward(dev(xp, x))
    dx = to_numpy(layer.backward(dev(xp, [[[[3.0]]]])))
    expected = np.zeros((1, 1, 2, 2))
    expected[0, 0, first[0], first[1]] = 3.0
    np.testing.assert_array_equal(dx, expected)


def test_convolution_rejects_a_filter_larger_than_the_padded_input(xp):
    layer = Convolution(dev(xp, np.zeros((2, 1, 5, 5))), dev(xp, np.zeros(2)), pad=1)
    with pytest.raises(ValueError, match=r"5x5 window is larger than the input \(1, 1, 2, 3\)"):
        layer.forward(dev(xp, np.zeros((1, 1, 2, 3))))


def test_convolution_rejects_input_with_other_channels_than_its_filters(xp):
    layer = Convolution(dev(xp, np.zeros((4, 3, 2, 2))), dev(xp, np.zeros(4)))
    with pytest.raises(ValueError, match=r"\(1, 2, 5, 5\).*\(4, 3, 2, 2\).*\(N, 3, H, W\)"):
        layer.forward(dev(xp, np.zeros((1, 2, 5, 5))))


def test_convolution_rejects_input_that_is_not_images(xp):
    layer = Convolution(dev(xp, np.zeros((4, 1, 2, 2))), dev(xp, np.zeros(4)))
    with pytest.raises(ValueError, match=r"\(3, 16\).*\(N, 1, H, W\)"):
        layer.forward(dev(xp, np.zeros((3, 16))))


def test_convolution_says_how_to_get_images_for_flattened_rows(xp):
    # load_mnist gives rows (N, 784) unless flatten=False, as the book's does.
    layer = Convolution(dev(xp, np.zeros((4, 1, 2, 2))), dev(xp, np.zeros(4)))
    with pytest.raises(ValueError, match=r"load_mnist\(flatten=False\) or reshape them to \(N, 1"):
        layer.forward(dev(xp, np.zeros((3, 16))))


def test_convolution_says_to_add_the_channel_axis_to_grayscale_images_without_it(xp):
    layer = Convolution(dev(xp, np.zeros((4, 1, 2, 2))), dev(xp, np.zeros(4)))
    with pytest.raises(
        ValueError, match=r"without their channel axis; reshape them to \(3, 1, 5, 6\)"
    ):
        layer.forward(dev(xp, np.zeros((3, 5, 6))))


def test_convolution_says_to_move_the_channels_of_channels_last_images_first(xp):
    layer = Convolution(dev(xp, np.zeros((4, 3, 2, 2))), dev(xp, np.zeros(4)))
    with pytest.raises(ValueError, match=r"channels last \(N, H, W, C\)\? xp.permute_dims"):
        layer.forward(dev(xp, np.zeros((2, 5, 5, 3))))


def test_convolution_rejects_filters_and_bias_that_do_not_match(xp):
    with pytest.raises(ValueError, match=r"\(FN, C, FH, FW\).*\(4, 1, 2, 2\) and \(3,\)"):
        Convolution(dev(xp, np.zeros((4, 1, 2, 2))), dev(xp, np.zeros(3)))


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"pool_h": 0, "pool_w": 2}, "window height must be an integer >= 1, got 0"),
        ({"pool_h": 2, "pool_w": 2.5}, "window width must be an integer >= 1, got 2.5"),
        ({"pool_h": 2, "pool_w": 2, "stride": 0}, "stride must be an integer >= 1, got 0"),
        ({"pool_h": 2, "pool_w": 2, "pad": -1}, "pad must be an integer >= 0, got -1"),
    ],
)
def test_pooling_refuses_a_window_that_cannot_slide(window, message):
    with pytest.raises(ValueError, match=message):
        Pooling(**window)


def test_convolution_refuses_a_stride_of_zero(xp):
    with pytest.raises(ValueError, match="stride must be an integer >= 1, got 0"):
        Convolution(dev(xp, np.zeros((4, 1, 2, 2))), dev(xp, np.zeros(4)), stride=0)


def test_pooling_rejects_a_window_larger_than_the_input(xp):
    with pytest.raises(ValueError, match=r"3x3 window is larger than the input \(1, 2, 2, 2\)"):
        Pooling(3, 3).forward(dev(xp, np.zeros((1, 2, 2, 2))))


def test_layer_configs_rebuild_the_layer():
    W, b = np.zeros((2, 1, 3, 3)), np.zeros(2)
    conv = Convolution(W, b, stride=2, pad=1)
    pool = Pooling(2, 3, stride=2, pad=1)
    assert Convolution(W, b, **conv.config()).config() == conv.config()
    assert Pooling(**pool.config()).config() == pool.config()
    assert conv.params == ("W", "b")


@pytest.mark.parametrize("case", ["stride1-pad1", "stride3-pad2"])
def test_check_layer_passes_on_convolution(xp, case):
    x_shape, w_shape, stride, pad = CONV_CASES[case]
    rng = np.random.default_rng(7)
    x, W, b = (rng.standard_normal(s) for s in (x_shape, w_shape, w_shape[:1]))
    layer = Convolution(dev(xp, W), dev(xp, b), stride=stride, pad=pad)
    report = check_layer(layer, dev(xp, x))
    assert report, str(report)
    assert [p.name for p in report.params] == ["x", "W", "b"]


@pytest.mark.parametrize("case", ["overlapping", "3x3-stride2-pad1"])
def test_check_layer_passes_on_pooling(xp, case):
    x_shape, ph, pw, stride, pad = POOL_CASES[case]
    x = distinct_values(np.random.default_rng(8), x_shape)
    assert check_layer(Pooling(ph, pw, stride=stride, pad=pad), dev(xp, x))


def test_check_layer_reports_a_tied_windows_elements_as_kinks(xp):
    report = check_layer(Pooling(2, 2, stride=2), dev(xp, np.ones((1, 1, 2, 2))))
    assert report.params[0].kinks == 4 and report.params[0].passed
    assert report.inconclusive  # its only array all on kinks: nothing was compared


def test_pooling_kinks_where_the_two_largest_are_within_reach(xp):
    # The maximum 1.0 moving down and the runner-up 0.99 up close their gap of 0.01 by
    # 0.012 (a kink) or by 0.008 (none).
    x = dev(xp, [[[[1.0, 0.99], [0.0, -1.0]]]])
    layer = Pooling(2, 2, stride=2)
    near = to_numpy(layer.kinks(x, dev(xp, [[[[-0.006, 0.006], [0.0, 0.0]]]])))
    far = to_numpy(layer.kinks(x, dev(xp, [[[[-0.004, 0.004], [0.0, 0.0]]]])))
    assert near.tolist() == [[[[True]]]] and far.tolist() == [[[[False]]]]


def test_pooling_kinks_where_the_maximum_is_tied(xp):
    # Channel 0 ties all four: the smallest move of one of them hands its maximum on.
    # Channel 1 has one clear maximum, 0.5 above the rest: moves of 1e-6 cannot.
    x = dev(xp, [[[[1.0, 1.0], [1.0, 1.0]], [[1.0, 0.5], [0.0, -1.0]]]])
    dx = np.zeros((1, 2, 2, 2))
    dx[0, :, 1, 1] = 1e-6
    kinks = Pooling(2, 2, stride=2).kinks(x, dev(xp, dx))
    assert to_numpy(kinks).tolist() == [[[[True]], [[False]]]]


def test_pooling_a_tie_whose_elements_move_alike_is_no_kink(xp):
    # A blank region's equal outputs, all moved by one bias: the maximum stays their value.
    x = dev(xp, np.full((1, 1, 2, 2), 0.1))
    kinks = Pooling(2, 2, stride=2).kinks(x, dev(xp, np.full((1, 1, 2, 2), 1e-4)))
    assert to_numpy(kinks).tolist() == [[[[False]]]]


def np_pool_kinks(x, dx, ph, pw, stride, pad):
    """Per window of the zero-padded x: does some element lie closer below the (first)
    maximum than its move dx differs from the maximum's?"""
    xpad, move = np_padded(x, pad), np_padded(dx, pad)
    n, c, h, w = x.shape
    out = np.empty((n, c, out_size(h, ph, stride, pad), out_size(w, pw, stride, pad)), bool)
    for i, k, y, z in np.ndindex(out.shape):
        rows, cols = slice(y * stride, y * stride + ph), slice(z * stride, z * stride + pw)
        window, moves = xpad[i, k, rows, cols].ravel(), move[i, k, rows, cols].ravel()
        top = np.argmax(window)
        out[i, k, y, z] = np.any(window[top] - window < np.abs(moves - moves[top]))
    return out


# (input shape, pool_h, pool_w, stride, pad, shift of x): non-square windows, padding,
# and all-negative inputs whose runner-up is no zero.
POOL_KINK_CASES = {
    "2x3-stride1": ((2, 2, 4, 5), 2, 3, 1, 0, 0.0),
    "3x2-stride2-pad1": ((1, 3, 5, 4), 3, 2, 2, 1, 0.0),
    "negative-2x2": ((2, 2, 4, 4), 2, 2, 2, 0, -10.0),
    "2x2-stride2-untiled": ((2, 2, 5, 7), 2, 2, 2, 0, 0.0),
}


@pytest.mark.parametrize("case", POOL_KINK_CASES)
def test_pooling_kinks_match_each_windows_elements_and_moves(xp, case):
    x_shape, ph, pw, stride, pad, shift = POOL_KINK_CASES[case]
    rng = np.random.default_rng(11)
    x = distinct_values(rng, x_shape) + shift
    dx = rng.uniform(-0.3, 0.3, x_shape)  # moves of either sign
    expected = np_pool_kinks(x, dx, ph, pw, stride, pad)
    assert expected.any() and not expected.all()
    kinks = Pooling(ph, pw, stride=stride, pad=pad).kinks(dev(xp, x), dev(xp, dx))
    np.testing.assert_array_equal(to_numpy(kinks), expected)


@pytest.mark.parametrize("step", [0.2, 0.01])
def test_crosses_kink_takes_each_moved_input_with_its_signs(xp, step):
    x = distinct_values(np.random.default_rng(12), (2, 2, 4, 4))
    dx = np.zeros(x.shape)
    dx[:, :, ::2, ::2] = -step  # the only move: each window's first element, downwards
    layers = [Pooling(2, 2, stride=2)]
    center, still = (layer_inputs(layers, dev(xp, x)) for _ in range(2))
    down = layer_inputs(layers, dev(xp, x + dx))
    expected = np_pool_kinks(x, dx, 2, 2, 2, 0).any()
    assert bool(crosses_kink(layers, center, still, down)) == expected


def test_crosses_kink_finds_the_two_largest_moving_toward_each_other(xp):
    # 1.0 up by 0.1 and 0.85 down by 0.1: they tie at three quarters of the way back,
    # though the moves are of one size.
    x = np.full((1, 1, 2, 2), -5.0)
    x[0, 0, 0, :] = [1.0, 0.85]
    dx = np.zeros(x.shape)
    dx[0, 0, 0, :] = [0.1, -0.1]
    layers = [Pooling(2, 2, stride=2)]
    center, still = (layer_inputs(layers, dev(xp, x)) for _ in range(2))
    moved = layer_inputs(layers, dev(xp, x + dx))
    assert bool(crosses_kink(layers, center, still, moved))


def test_crosses_kink_finds_none_where_every_element_moves_alike(xp):
    # Equal moves keep every window's order: no maximum changes hands, however close.
    x = distinct_values(np.random.default_rng(12), (2, 2, 4, 4))
    layers = [Pooling(2, 2, stride=2)]
    center, still = (layer_inputs(layers, dev(xp, x)) for _ in range(2))
    down = layer_inputs(layers, dev(xp, x - 0.2))
    assert not bool(crosses_kink(layers, center, still, down))


@pytest.mark.parametrize("dtype", ["int64", "bool"])
def test_pooling_refuses_input_that_is_not_real_floating(xp, dtype):
    # It pooled integers and booleans, whose gradient no check could take.
    x = dev(xp, np.ones((1, 1, 4, 4)), dtype=dtype)
    with pytest.raises(
        ValueError, match=f"Pooling input must be a real floating-point array, got dtype {dtype}"
    ):
        Pooling(2, 2, stride=2).forward(x)
