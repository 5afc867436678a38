"""Convolution and max pooling on NCHW images, via im2col and col2im (chapter 7 of the book).

``im2col`` lays every filter-sized window of a padded image batch out as one row,
so a convolution is one matrix product; ``col2im`` is its adjoint, adding each
window's gradient back onto the pixels it came from (overlapping windows add up).
Both are written against the Python Array API: windows are strided slices stacked
along a new axis, and ``col2im`` adds slice by slice into a fresh array
(``array_api_extra.at``), so no integer-array indexing is needed and the same code
runs on NumPy, CuPy, PyTorch and ``array_api_strict``.

Shapes: images (N, C, H, W); filters (FN, C, FH, FW); the output of a window
operation (N, *, OH, OW) with ``OH = (H + 2 pad - FH) / stride + 1`` (and OW alike),
which must be a whole number.
"""

from __future__ import annotations

from typing import Any

import array_api_extra as xpx
from array_api_compat import device

from xpnet.backend import namespace_of


def output_size(
    input_shape: tuple[int, ...], filter_h: int, filter_w: int, stride: int = 1, pad: int = 0
) -> tuple[int, int]:
    """``(OH, OW)`` of a ``filter_h`` x ``filter_w`` window sliding over images (N, C, H, W).

    Raises ``ValueError`` naming the shapes when the input is not 4-D, the window is
    larger than the padded input or the stride does not fit it exactly.
    """
    if len(input_shape) != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(input_shape)}")
    if stride < 1 or pad < 0:
        raise ValueError(f"stride must be at least 1 and pad at least 0, got {stride} and {pad}")
    h, w = input_shape[2] + 2 * pad, input_shape[3] + 2 * pad
    if filter_h > h or filter_w > w:
        raise ValueError(
            f"a {filter_h}x{filter_w} window is larger than the input {tuple(input_shape)} "
            f"padded by {pad} ({h}x{w})"
        )
    if (h - filter_h) % stride or (w - filter_w) % stride:
        raise ValueError(
            f"stride {stride} does not fit a {filter_h}x{filter_w} window on the input "
            f"{tuple(input_shape)} padded by {pad} ({h}x{w}): (size - window) must be a "
            f"multiple of the stride"
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


def windows(x: Any, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> Any:
    """Every window of the zero-padded ``x`` (N, C, H, W), as (N, C, FH, FW, OH, OW).

    ``out[n, c, i, j, y, z] = x_padded[n, c, y * stride + i, z * stride + j]``.
    """
    xp = namespace_of(x)
    n, c = x.shape[:2]
    oh, ow = output_size(tuple(x.shape), filter_h, filter_w, stride, pad)
    if pad:
        x = xpx.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), xp=xp)
    pieces = [
        x[_window_slices(i, j, oh, ow, stride)] for i in range(filter_h) for j in range(filter_w)
    ]
    return xp.reshape(xp.stack(pieces, axis=2), (n, c, filter_h, filter_w, oh, ow))


def fold(d: Any, input_shape: tuple[int, ...], stride: int = 1, pad: int = 0) -> Any:
    """The adjoint of :func:`windows`: add window gradients ``d`` (N, C, FH, FW, OH, OW)
    back onto an image of ``input_shape`` (N, C, H, W); the padding's share is dropped."""
    xp = namespace_of(d)
    n, c, filter_h, filter_w, oh, ow = d.shape
    h, w = input_shape[2], input_shape[3]
    img = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=d.dtype, device=device(d))
    for i in range(filter_h):
        for j in range(filter_w):
            img = xpx.at(img, _window_slices(i, j, oh, ow, stride)).add(d[:, :, i, j, :, :])
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
    d = xp.reshape(col, (n, oh, ow, c, filter_h, filter_w))
    return fold(xp.permute_dims(d, (0, 3, 4, 5, 1, 2)), input_shape, stride, pad)


class Convolution:
    """``out[n, f] = sum_c W[f, c] ⋆ x[n, c] + b[f]``: filters ``W`` (FN, C, FH, FW), ``b`` (FN,).

    ``forward`` takes images (N, C, H, W), zero-pads them by ``pad`` and slides the
    filters with step ``stride``, giving (N, FN, OH, OW), as one matrix product of
    ``im2col(x)`` (N * OH * OW, C * FH * FW) with the flattened filters. ``backward``
    stores ``dW`` (FN, C, FH, FW) and ``db`` (FN,) and returns ``dx`` through
    ``col2im``; with ``input_grad=False`` (a network's first layer, whose input is
    data) it skips ``dx`` and returns None.
    """

    params = ("W", "b")

    def __init__(
        self, W: Any, b: Any, stride: int = 1, pad: int = 0, *, input_grad: bool = True
    ) -> None:
        if W.ndim != 4 or tuple(b.shape) != (W.shape[0],):
            raise ValueError(
                f"Convolution needs filters W of shape (FN, C, FH, FW) and b of shape (FN,), "
                f"got {tuple(W.shape)} and {tuple(b.shape)}"
            )
        self.W, self.b = W, b
        self.stride, self.pad, self.input_grad = stride, pad, input_grad
        self.dW = self.db = None

    def config(self) -> dict[str, Any]:
        """The constructor keywords besides the parameters."""
        return {"stride": self.stride, "pad": self.pad, "input_grad": self.input_grad}

    def forward(self, x: Any) -> Any:
        xp = namespace_of(x, self.W, self.b)
        if not xp.isdtype(x.dtype, "real floating"):
            raise ValueError(f"Convolution input must be floating-point, got dtype {x.dtype}")
        fn, c, fh, fw = self.W.shape
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(
                f"Convolution input of shape {tuple(x.shape)} does not fit filters W of shape "
                f"{tuple(self.W.shape)}: expected (N, {c}, H, W)"
            )
        oh, ow = output_size(tuple(x.shape), fh, fw, self.stride, self.pad)
        self.x_shape = tuple(x.shape)
        self.col = im2col(x, fh, fw, self.stride, self.pad)
        out = self.col @ xp.reshape(self.W, (fn, c * fh * fw)).T + self.b
        return xp.permute_dims(xp.reshape(out, (x.shape[0], oh, ow, fn)), (0, 3, 1, 2))

    def backward(self, dout: Any) -> Any:
        xp = namespace_of(dout, self.W)
        fn, c, fh, fw = self.W.shape
        dout = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (-1, fn))
        self.db = xp.sum(dout, axis=0)
        self.dW = xp.reshape(dout.T @ self.col, self.W.shape)
        if not self.input_grad:
            return None
        dcol = dout @ xp.reshape(self.W, (fn, c * fh * fw))
        return col2im(dcol, self.x_shape, fh, fw, self.stride, self.pad)


class Pooling:
    """Max pooling over ``pool_h`` x ``pool_w`` windows, channel by channel.

    ``forward`` takes (N, C, H, W) and gives (N, C, OH, OW), the maximum of each
    window of the input zero-padded by ``pad`` (the book's padding), stepping by
    ``stride``. ``backward`` routes each ``dout`` element to the window's maximum
    (the first one when several are equal), adding up where windows overlap.
    """

    def __init__(self, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0) -> None:
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
        xp = namespace_of(x)
        win = windows(x, self.pool_h, self.pool_w, self.stride, self.pad)
        n, c, _, _, oh, ow = win.shape
        win = xp.reshape(win, (n, c, self.pool_h * self.pool_w, oh, ow))
        self.x_shape = tuple(x.shape)
        self.arg_max = xp.argmax(win, axis=2)  # (N, C, OH, OW), the first maximum
        return xp.max(win, axis=2)

    def backward(self, dout: Any) -> Any:
        xp = namespace_of(dout, self.arg_max)
        n, c, oh, ow = dout.shape
        k = self.pool_h * self.pool_w
        slot = xp.reshape(xp.arange(k, dtype=self.arg_max.dtype, device=device(dout)), (k, 1, 1))
        dwin = xp.where(self.arg_max[:, :, None, :, :] == slot, dout[:, :, None, :, :], 0.0)
        dwin = xp.reshape(dwin, (n, c, self.pool_h, self.pool_w, oh, ow))
        return fold(dwin, self.x_shape, self.stride, self.pad)
