"""Count the array operations a call makes: on a GPU, each is at least one kernel launch.

A small network's training step on a GPU is bound by kernel launches, not by
arithmetic, so the number of array operations per step is the figure to cut; and a
read back to the host (``float(loss)``, ``if xp.any(...)``) waits for the GPU to
finish. The layer code is backend-generic, so the operations it issues are the same
on every backend; this module counts them on NumPy, without a GPU::

    with counting_operations() as ops:
        step()                     # arrays made with ``counting(a)``
    ops.array_ops, ops.host_reads  # e.g. 32 and 0 for a TwoLayerNet SGD step

Arrays taking part must be :class:`CountingArray` views (``counting(a)``); results of
operations on them are counting arrays too, 0-D results included (CuPy keeps those
on the device, so an operation on a loss value is a launch as well), and so is one
element taken by indexing (``a[0]``; converting it is a host read). Counted once per
operation (not the operations a NumPy function runs inside itself), in every active
:func:`counting_operations` block, nested ones included: every ufunc call (operators,
``exp``, ``@``, reductions), every other NumPy function except those that only change
the view (``reshape``, ``permute_dims``, ...), the array methods that compute or copy
(``a.copy()``, ``a.argmax()``, ``a.sum()``: :data:`ARRAY_METHODS`, named as the
functions are), ``astype`` when it copies, indexing other than basic indexing
(``a[[0, 2]]``, ``a[mask]``: a gather) and item assignment. Not counted: basic
indexing (integers, slices, ``...``, ``None``: a view), and the extra kernels a library
may launch inside one operation (cuBLAS can use two for one matmul). Host reads are the
conversions ``bool()``, ``int()``, ``float()``, ``operator.index()``, ``.item()`` and
``.tolist()`` of a counting array; copying a whole array out (``np.asarray``,
``backend.to_numpy``) is not seen. Writing a 0-D counting array into an element of a
plain NumPy array (``plain[i] = loss``) counts as a ``float`` host read, as NumPy
converts it so; on a GPU that copy stays on the device.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import numpy as np

VIEW_ONLY = frozenset(
    {"reshape", "transpose", "permute_dims", "matrix_transpose", "broadcast_to", "expand_dims",
     "squeeze", "result_type", "shape", "ndim", "size"}
)  # fmt: skip

# ndarray methods that compute or copy (a kernel on a GPU), counted by name as the
# functions are (``a.sum()`` as ``np.sum(a)``); the rest are views or host reads.
ARRAY_METHODS = (
    "all", "any", "argmax", "argmin", "argpartition", "argsort", "choose", "clip", "compress",
    "conj", "conjugate", "copy", "cumprod", "cumsum", "dot", "fill", "flatten", "max", "mean",
    "min", "nonzero", "partition", "prod", "put", "repeat", "round", "searchsorted", "sort",
    "std", "sum", "take", "trace", "var", "__copy__", "__deepcopy__",
)  # fmt: skip

HOST_READ = "to host: "  # the prefix of host-read names, e.g. "to host: float"
HOST_CONVERSIONS = ("__bool__", "__int__", "__float__", "__index__", "item", "tolist")


class Operations(Counter):
    """``{operation name: calls}``; host reads are named ``"to host: <conversion>"``."""

    @property
    def host_reads(self) -> int:
        return sum(n for name, n in self.items() if name.startswith(HOST_READ))

    @property
    def array_ops(self) -> int:
        return self.total() - self.host_reads


_counters: list[Operations] = []  # the active counters, innermost last
_lock = threading.Lock()  # operations in worker threads (xpnet.perturb's chunks) count too
_running = threading.local()  # .depth > 0 while an operation runs: its inner ones don't count


def counting(a: Any) -> CountingArray:
    """A :class:`CountingArray` view of ``a`` (a NumPy array or anything ``asarray`` takes)."""
    return np.asarray(a).view(CountingArray)


@contextmanager
def counting_operations() -> Iterator[Operations]:
    """Count operations on counting arrays inside the block."""
    counter = Operations()
    _counters.append(counter)
    try:
        yield counter
    finally:  # by identity: counters that saw the same operations are equal
        _counters[:] = [c for c in _counters if c is not counter]


def count_operations(
    call: Callable[..., Any], *arrays: Any, params: MutableMapping[str, Any] | None = None
) -> Operations:
    """The operations of ``call(*arrays)``, with ``arrays`` and ``params`` made counting.

    ``params`` (e.g. a network's live ``net.params``, NumPy arrays) are replaced by
    counting views of themselves for the call, so the network's own operations count,
    and get their own arrays back afterwards (also when ``call`` raises); updates in
    place reach them through the views. A parameter that ``call`` rebinds keeps its new
    value, as a plain NumPy array.
    """
    originals = dict(params) if params is not None else {}
    views = {name: counting(value) for name, value in originals.items()}
    try:
        for name, view in views.items():
            params[name] = view
        args = [counting(a) for a in arrays]
        with counting_operations() as ops:
            call(*args)
    finally:
        for name, view in views.items():
            value = params[name]
            params[name] = originals[name] if value is view else _plain(value)
    return ops


def _plain(obj: Any) -> Any:
    if isinstance(obj, CountingArray):
        return obj.view(np.ndarray)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_plain(o) for o in obj)
    return obj


def _counting(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and not isinstance(obj, CountingArray):
        return np.asarray(obj).view(CountingArray)
    if isinstance(obj, tuple):
        return tuple(_counting(o) for o in obj)
    return obj


def _run(name: str, operation: Any, *args: Any, **kwargs: Any) -> Any:
    depth = getattr(_running, "depth", 0)
    if depth == 0 and _counters and name not in VIEW_ONLY:
        with _lock:
            for counter in _counters:
                counter[name] += 1
    _running.depth = depth + 1
    try:
        return _counting(operation(*args, **kwargs))
    finally:
        _running.depth = depth


class CountingArray(np.ndarray):
    """A NumPy array whose operations are counted inside :func:`counting_operations`."""

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        out = kwargs.get("out")
        if out is None:
            return _run(name, getattr(ufunc, method), *_plain(inputs), **kwargs)
        kwargs["out"] = _plain(out)
        _run(name, getattr(ufunc, method), *_plain(inputs), **kwargs)
        return out[0] if len(out) == 1 else out  # as NumPy: a += b keeps a (the same object)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return _run(func.__name__, super().__array_function__, func, types, args, kwargs)

    def astype(self, dtype: Any, *args: Any, copy: bool = True, **kwargs: Any) -> Any:
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        return _run("astype", np.ndarray.astype, self.view(np.ndarray), dtype, *args, **kwargs)

    def __getitem__(self, key: Any) -> Any:
        if _is_basic_index(key):  # a view, or one element kept as a 0-D counting array
            return _counting(np.ndarray.__getitem__(self, key))
        return _run("getitem", np.ndarray.__getitem__, self.view(np.ndarray), _plain(key))

    def __setitem__(self, key: Any, value: Any) -> None:
        _run("setitem", np.ndarray.__setitem__, self.view(np.ndarray), _plain(key), _plain(value))


def _is_basic_index(key: Any) -> bool:
    """Whether indexing with ``key`` is basic (integers, slices, ``...``, ``None``): a view."""
    keys = key if isinstance(key, tuple) else (key,)
    return all(
        k is None or k is Ellipsis or isinstance(k, slice)
        or (isinstance(k, (int, np.integer)) and not isinstance(k, bool))
        for k in keys
    )  # fmt: skip


def _array_method(name: str) -> Callable[..., Any]:
    def method(self: CountingArray, *args: Any, **kwargs: Any) -> Any:
        if "out" in kwargs:
            kwargs["out"] = _plain(kwargs["out"])
        operation = getattr(np.ndarray, name)
        return _run(name.strip("_"), operation, self.view(np.ndarray), *_plain(args), **kwargs)

    method.__name__ = name
    return method


for _name in ARRAY_METHODS:
    setattr(CountingArray, _name, _array_method(_name))


def _host_read(conversion: str) -> Callable[..., Any]:
    def read(self: CountingArray, *args: Any) -> Any:
        return _run(HOST_READ + conversion.strip("_"), getattr(np.ndarray, conversion), self, *args)

    read.__name__ = conversion
    return read


for _conversion in HOST_CONVERSIONS:
    setattr(CountingArray, _conversion, _host_read(_conversion))
