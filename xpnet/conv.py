"""Convolution and max pooling on NCHW images, via im2col and col2im (chapter 7 of the book).

``im2col`` lays every filter-sized window of a padded image batch out as one row,
so a convolution is one matrix product; ``col2im`` is its adjoint, adding each
window's gradient back onto the pixels it came from (overlapping windows add up).
Both are written against the Python Array API: windows are strided slices stacked
along a new axis, and ``col2im`` adds slice by slice into a fresh array
(``array_api_extra.at``), so no integer-array indexing is needed and the same code
runs on NumPy, CuPy, PyTorch and ``array_api_strict``.

Shapes: images (N, C, H, W); filters (FN, C, FH, FW); the output of a window
operation (N, *, OH, OW) with ``OH = (H + 2 pad - FH) // stride + 1`` (and OW alike),
rounded down as the book's ``im2col`` and PyTorch's ``conv2d`` and ``max_pool2d`` round
it: where the stride does not fit the padded image, its last rows and columns are read
by no window and get no gradient.
"""

from __future__ import annotations

from functools import reduce
from types import ModuleType
from typing import TYPE_CHECKING, Any

import array_api_extra as xpx
from array_api_compat import device

from xpnet import init
from xpnet.backend import matmul, namespace_of, reduce_sum
from xpnet.checks import require_count
from xpnet.layers import Layer, require_arrays_not_sizes, require_floating, require_one_dtype

if TYPE_CHECKING:
    import numpy as np


def check_window(filter_h: int, filter_w: int, stride: int, pad: int) -> None:
    """Raise ``ValueError`` naming the values unless the window is at least 1x1, the stride
    at least 1 and the padding at least 0 (integers all)."""
    for name, value, least in (
        ("window height", filter_h, 1),
        ("window width", filter_w, 1),
        ("stride", stride, 1),
        ("pad", pad, 0),
    ):
        require_count(name, value, least)


def output_size(
    input_shape: tuple[int, ...], filter_h: int, filter_w: int, stride: int = 1, pad: int = 0
) -> tuple[int, int]:
    """``(OH, OW)`` of a ``filter_h`` x ``filter_w`` window sliding over images (N, C, H, W).

    Rounded down where the stride does not fit the padded input exactly, as the book's
    ``im2col`` and PyTorch do. Raises ``ValueError`` naming the shapes when the input is
    not 4-D or the window is larger than the padded input.
    """
    if len(input_shape) != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(input_shape)}")
    check_window(filter_h, filter_w, stride, pad)
    h, w = input_shape[2] + 2 * pad, input_shape[3] + 2 * pad
    if filter_h > h or filter_w > w:
        raise ValueError(
            f"a {filter_h}x{filter_w} window is larger than the input {tuple(input_shape)} "
            f"padded by {pad} ({h}x{w})"
        )
    return (h - filter_h) // stride + 1, (w - filter_w) // stride + 1


def _window_slices(i: int, j: int, oh: int, ow: int, stride: int) -> tuple[slice, ...]:
    """The pixels that window offset (i, j) reads at every output position."""
    return (
        slice(None),
        slice(None),
        slice(i, i + stride * (oh - 1) + 1, stride),
        slice(j, j + stride * (ow - 1) + 1, stride),
    )


def window_pieces(x: Any, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> list:
    """What each window offset reads: ``FH * FW`` strided views (N, C, OH, OW) of the
    zero-padded ``x`` (N, C, H, W), offset (i, j) at index ``i * FW + j``."""
    xp = namespace_of(x)
    oh, ow = output_size(tuple(x.shape), filter_h, filter_w, stride, pad)
    if pad:
        x = xpx.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), xp=xp)
    return [
        x[_window_slices(i, j, oh, ow, stride)] for i in range(filter_h) for j in range(filter_w)
    ]


def windows(x: Any, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> Any:
    """Every window of the zero-padded ``x`` (N, C, H, W), as (N, C, FH, FW, OH, OW).

    ``out[n, c, i, j, y, z] = x_padded[n, c, y * stride + i, z * stride + j]``.
    """
    xp = namespace_of(x)
    pieces = window_pieces(x, filter_h, filter_w, stride, pad)
    n, c, oh, ow = pieces[0].shape
    return xp.reshape(xp.stack(pieces, axis=2), (n, c, filter_h, filter_w, oh, ow))


def fold(d: Any, input_shape: tuple[int, ...], stride: int = 1, pad: int = 0) -> Any:
    """The adjoint of :func:`windows`: add window gradients ``d`` (N, C, FH, FW, OH, OW)
    back onto an image of ``input_shape`` (N, C, H, W); the padding's share is dropped."""
    filter_h, filter_w = d.shape[2], d.shape[3]
    pieces = [d[:, :, i, j, :, :] for i in range(filter_h) for j in range(filter_w)]
    return fold_pieces(pieces, input_shape, filter_h, filter_w, stride, pad)


def fold_pieces(
    pieces: list, input_shape: tuple[int, ...], filter_h: int, filter_w: int, stride: int, pad: int
) -> Any:
    """The adjoint of :func:`window_pieces`: add each offset's (N, C, OH, OW) gradient back
    where it was read, into a fresh image of ``input_shape``; the padding's share is dropped.

    Windows that do not overlap (``stride`` at least the window) read each pixel at most
    once, so their pieces are set, not added: half the memory traffic.
    """
    xp = namespace_of(*pieces)
    first = pieces[0]
    n, c, oh, ow = first.shape
    h, w = input_shape[2], input_shape[3]
    img = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=first.dtype, device=device(first))
    overlap = stride < filter_h or stride < filter_w
    for k, piece in enumerate(pieces):
        at = xpx.at(img, _window_slices(k // filter_w, k % filter_w, oh, ow, stride))
        img = at.add(piece) if overlap else at.set(piece)
    return img[:, :, pad : pad + h, pad : pad + w] if pad else img


def im2col(input_data: Any, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> Any:
    """The book's im2col: one row per output position (n, y, z), one column per (c, i, j).

    ``input_data`` (N, C, H, W) gives (N * OH * OW, C * FH * FW).
    """
    xp = namespace_of(input_data)
    win = windows(input_data, filter_h, filter_w, stride, pad)
    n, c, _, _, oh, ow = win.shape
    return xp.reshape(
        xp.permute_dims(win, (0, 4, 5, 1, 2, 3)), (n * oh * ow, c * filter_h * filter_w)
    )


def col2im(
    col: Any,
    input_shape: tuple[int, ...],
    filter_h: int,
    filter_w: int,
    stride: int = 1,
    pad: int = 0,
) -> Any:
    """The book's col2im, the adjoint of :func:`im2col`: (N * OH * OW, C * FH * FW) to
    ``input_shape`` (N, C, H, W), adding up where windows overlap."""
    xp = namespace_of(col)
    n, c = input_shape[:2]
    oh, ow = output_size(tuple(input_shape), filter_h, filter_w, stride, pad)
    expected = (n * oh * ow, c * filter_h * filter_w)
    if tuple(col.shape) != expected:  # a reshape would take a transposed col of that size
        raise ValueError(
            f"col2im needs col of shape (N * OH * OW, C * FH * FW) = {expected} for the input "
            f"{tuple(input_shape)}, got {tuple(col.shape)}"
        )
    d = xp.reshape(col, (n, oh, ow, c, filter_h, filter_w))
    return fold(xp.permute_dims(d, (0, 3, 4, 5, 1, 2)), input_shape, stride, pad)


class Convolution(Layer):
    """``out[n, f] = sum_c W[f, c] ⋆ x[n, c] + b[f]``: filters ``W`` (FN, C, FH, FW), ``b`` (FN,).

    ``forward`` takes images (N, C, H, W), zero-pads them by ``pad`` and slides the
    filters with step ``stride``, giving (N, FN, OH, OW). It is im2col and one matrix
    product per image, with the columns laid out channel-first: ``col`` (N, C * FH * FW,
    OH * OW), a reshape of :func:`windows`, so that ``W (FN, C * FH * FW) @ col`` is
    already (N, FN, OH * OW) and neither the columns nor the output need the book's
    transposes. ``backward`` stores ``dW`` (FN, C, FH, FW) and ``db`` (FN,) and returns
    ``dx`` through :func:`fold` (col2im); with ``input_grad=False`` (a network's first
    layer, whose input is data) it skips ``dx`` and returns None.
    """

    params = ("W", "b")

    def __init__(
        self, W: Any, b: Any, stride: int = 1, pad: int = 0, *, input_grad: bool = True
    ) -> None:
        require_arrays_not_sizes("Convolution", W, b, "Convolution.initialized(1, 30, 5)")
        if W.ndim != 4 or tuple(b.shape) != (W.shape[0],):
            raise ValueError(
                f"Convolution needs filters W of shape (FN, C, FH, FW) and b of shape (FN,), "
                f"got {tuple(W.shape)} and {tuple(b.shape)}"
            )
        require_one_dtype("Convolution", W, b)
        check_window(W.shape[2], W.shape[3], stride, pad)
        self.W, self.b = W, b
        self.stride, self.pad, self.input_grad = stride, pad, input_grad
        self.dW = self.db = None

    @classmethod
    def initialized(
        cls,
        channels: int,
        filter_num: int,
        filter_size: int | tuple[int, int],
        stride: int = 1,
        pad: int = 0,
        *,
        weight_init: str | float = "he",
        bias_init: str = "zero",
        rng: np.random.Generator | int | None = None,
        dtype: Any = "float32",
        device: Any = None,
        xp: ModuleType | None = None,
        input_grad: bool = True,
    ) -> Convolution:
        """A new Convolution of ``filter_num`` filters over ``channels`` input channels, as
        PyTorch's ``nn.Conv2d(channels, filter_num, filter_size, stride, pad)``: ``W``
        (filter_num, channels, FH, FW), ``filter_size`` FH = FW or (FH, FW), drawn as
        :meth:`~xpnet.layers.Affine.initialized` draws an Affine's, with fan-in
        ``channels * FH * FW`` (the book's He initialisation of chapter 8); ``b`` zeros
        (filter_num,). ``rng``, ``dtype``, ``device`` and ``xp`` as there."""
        require_count("channels", channels, 1)
        require_count("filter_num", filter_num, 1)
        sizes = tuple(filter_size) if isinstance(filter_size, tuple | list) else (filter_size,) * 2
        if len(sizes) != 2:
            raise ValueError(f"filter_size must be an integer or (FH, FW), got {filter_size!r}")
        for size in sizes:
            require_count("filter_size", size, 1)
        fh, fw = sizes  # stride and pad: checked by the constructor
        W, b = init.weights_and_bias(
            (int(filter_num), int(channels), int(fh), int(fw)), int(channels * fh * fw),
            int(filter_num), weight_init=weight_init, bias_init=bias_init, rng=rng,
            dtype=dtype, device=device, xp=xp,
        )  # fmt: skip
        return cls(W, b, stride, pad, input_grad=input_grad)

    def config(self) -> dict[str, Any]:
        """The constructor keywords besides the parameters."""
        return {"stride": self.stride, "pad": self.pad, "input_grad": self.input_grad}

    def forward(self, x: Any) -> Any:
        """x (N, C, H, W) -> out (N, FN, OH, OW): the filters over x padded by pad, plus b;
        keeps the columns for backward."""
        xp = namespace_of(x, self.W, self.b)
        require_floating(xp, "Convolution input", x, data=True)
        fn, c, fh, fw = self.W.shape
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(
                f"Convolution input of shape {tuple(x.shape)} does not fit filters W of shape "
                f"{tuple(self.W.shape)}: expected (N, {c}, H, W){_not_images(tuple(x.shape), c)}"
            )
        win = windows(x, fh, fw, self.stride, self.pad)
        n, _, _, _, oh, ow = win.shape
        self.x_shape, self.out_shape = tuple(x.shape), (n, fn, oh, ow)
        self.col = xp.reshape(win, (n, c * fh * fw, oh * ow))
        out = matmul(self._rows(), self.col)
        out += self.b[:, None]  # in place: out is this call's own array
        return xp.reshape(out, (n, fn, oh, ow))

    def _rows(self) -> Any:
        """The filters as rows (FN, C*FH*FW), reshaped by their own namespace: NumPy weights
        meet Dask inputs (evaluation on a cluster), whose reshape takes no NumPy array."""
        fn, c, fh, fw = self.W.shape
        return namespace_of(self.W).reshape(self.W, (fn, c * fh * fw))

    def backward(self, dout: Any) -> Any:
        """dout (N, FN, OH, OW) -> dx (N, C, H, W), None when input_grad is False; sets dW
        (FN, C, FH, FW) and db (FN,)."""
        xp = namespace_of(dout, self.W)
        fn, c, fh, fw = self.W.shape
        require_output_shape("Convolution", dout, self.out_shape)
        n, _, oh, ow = dout.shape
        dout = xp.reshape(dout, (n, fn, oh * ow))
        self.db = reduce_sum(dout, axis=(0, 2))
        self.dW = xp.reshape(
            reduce_sum(matmul(dout, xp.matrix_transpose(self.col)), axis=0), self.W.shape
        )
        if not self.input_grad:
            return None
        dcol = matmul(self._rows().T, dout)
        return fold(xp.reshape(dcol, (n, c, fh, fw, oh, ow)), self.x_shape, self.stride, self.pad)


def _not_images(shape: tuple[int, ...], channels: int) -> str:
    """What input of ``shape`` that is not images (N, ``channels``, H, W) most likely is, as
    a clause to end a message with (empty when no usual mistake fits)."""
    if len(shape) == 2:  # load_mnist flattens by default, as the book's does
        return (
            ": rows of flattened images are not images; load them with "
            f"load_mnist(flatten=False) or reshape them to (N, {channels}, H, W)"
        )
    if len(shape) == 3 and channels == 1:
        return f": images without their channel axis; reshape them to {(shape[0], 1, *shape[1:])}"
    if len(shape) == 4 and shape[3] == channels:
        return ": channels last (N, H, W, C)? xp.permute_dims(x, (0, 3, 1, 2)) puts them first"
    return ""


def require_output_shape(layer: str, dout: Any, out_shape: tuple[int, ...]) -> None:
    """Refuse a ``dout`` of another shape than forward's output: a batch of 1 would
    broadcast silently against the layer's cached arrays."""
    if tuple(dout.shape) != out_shape:
        raise ValueError(
            f"{layer}.backward needs dout of the shape of forward's output "
            f"{out_shape}, got {tuple(dout.shape)}"
        )


class Pooling(Layer):
    """Max pooling over ``pool_h`` x ``pool_w`` windows, channel by channel.

    ``forward`` takes (N, C, H, W) and gives (N, C, OH, OW), the maximum of each
    window of the input zero-padded by ``pad`` (the book's padding; PyTorch's ``max_pool2d``
    pads with -inf, which differs where a window's real entries are all negative), stepping by
    ``stride``. It takes the maximum as a knockout tournament over the window's
    offsets, pairwise ``maximum`` of (N, C, OH, OW) views, and keeps the rounds;
    ``backward`` replays them from the final down, sending ``dout`` to the winner of
    each pairing: to the window's maximum, the first one when several are equal (as the
    book's argmax), adding up where windows overlap. No integer indexing, no ``where``.
    """

    def __init__(self, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0) -> None:
        check_window(pool_h, pool_w, stride, pad)
        self.pool_h, self.pool_w, self.stride, self.pad = pool_h, pool_w, stride, pad

    def config(self) -> dict[str, Any]:
        """The constructor keywords."""
        return {
            "pool_h": self.pool_h,
            "pool_w": self.pool_w,
            "stride": self.stride,
            "pad": self.pad,
        }

    def forward(self, x: Any) -> Any:
        """x (N, C, H, W) -> out (N, C, OH, OW), the maximum of each window; keeps the
        tournament's rounds for backward."""
        xp = namespace_of(x)
        # As Convolution's: its gradient is real.
        require_floating(xp, "Pooling input", x, data=True)
        self.x_shape = tuple(x.shape)
        rounds = [window_pieces(x, self.pool_h, self.pool_w, self.stride, self.pad)]
        while len(rounds[-1]) > 1:
            last = rounds[-1]
            pairs = [xp.maximum(last[i], last[i + 1]) for i in range(0, len(last) - 1, 2)]
            rounds.append(pairs + last[len(last) - len(last) % 2 :])  # an odd one out waits
        self.rounds = rounds
        return rounds[-1][0]

    def backward(self, dout: Any) -> Any:
        """dout (N, C, OH, OW) -> dx (N, C, H, W): dout to each window's maximum, added up
        where windows overlap."""
        xp = namespace_of(dout)
        require_output_shape("Pooling", dout, tuple(self.rounds[-1][0].shape))
        grads = [dout]
        for entrants in reversed(self.rounds[:-1]):
            routed = []
            for i in range(0, len(entrants) - 1, 2):
                g = grads[i // 2]
                left = g * xp.astype(entrants[i] >= entrants[i + 1], g.dtype)  # ties: the first
                routed += [left, g - left]
            grads = routed + grads[len(routed) // 2 :]
        return fold_pieces(grads, self.x_shape, self.pool_h, self.pool_w, self.stride, self.pad)

    # Gradient checks (xpnet.perturb): where a central difference straddles a kink.

    def kinks(self, x: Any, dx: Any) -> Any:
        """True per output element (N, C, OH, OW) where moving the input ``x`` along ``dx``
        (x's shape, with its signs), to ``x + s * dx`` for some ``s`` in (-1, 1), hands the
        window's maximum to another element: one that is closer below the maximum than the
        two elements' moves differ, ``top - x_j < |dx_j - dx_top|``. A tie whose elements
        move alike (a blank region's equal outputs, moved by a bias) is no kink: the
        maximum stays their common value."""
        xp = namespace_of(x, dx)
        pieces = window_pieces(x, self.pool_h, self.pool_w, self.stride, self.pad)
        moves = window_pieces(dx, self.pool_h, self.pool_w, self.stride, self.pad)
        top = reduce(xp.maximum, pieces)
        taken = xp.zeros(top.shape, dtype=xp.bool, device=device(top))
        top_move = xp.zeros(top.shape, dtype=moves[0].dtype, device=device(top))
        for piece, move in zip(pieces, moves, strict=True):
            first = (piece == top) & ~taken  # the maximum backward routes to
            taken = taken | first
            top_move = xp.where(first, move, top_move)
        kinked = xp.zeros(top.shape, dtype=xp.bool, device=device(top))
        for piece, move in zip(pieces, moves, strict=True):
            kinked = kinked | (top - piece < xp.abs(move - top_move))
        return kinked
