"""The one place that knows about NumPy and CuPy.

Everything else in xpnet is written against the Python Array API standard and
takes its namespace from the arrays it is given (:func:`namespace_of`). This
module picks the namespace and device that *new* arrays are created on, from the
``XPNET_DEVICE`` environment variable read at call time:

- ``cpu`` (the default): NumPy;
- ``cuda`` or ``cuda:N``: CuPy on GPU ``N`` (0 by default).

It also moves arrays between backends, draws seeded random weights on the host
(the standard has no random numbers, and drawing on the host gives the same
network on every device for one seed), draws seeded random numbers on an array's
own device (:class:`DeviceRNG`, for Dropout masks) and synchronizes a device for
timing. A few calls that layers make on every step (:func:`dot`, :func:`reduce_sum`,
:func:`reduce_max`, :func:`positive_part`) take a cheaper NumPy route here and the
namespace's own elsewhere.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from xpnet.checks import bad_argument, is_count, is_finite_at_least, is_integer
from xpnet.schema import show

ENV_VAR = "XPNET_DEVICE"
VALID_DEVICES = ("cpu", "cuda", "cuda:N")
CUDA_INSTALL_HINT = (
    "install CuPy for your CUDA version: pip install cupy-cuda12x (CUDA 12) or "
    'pip install cupy-cuda13x (CUDA 13), or xpnet\'s extra: pip install -e ".[cuda12]"'
)


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot be used here (CuPy missing, no GPU)."""


class BackendMismatchError(TypeError):
    """Arrays from different backends or devices were mixed in one call."""


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed ``XPNET_DEVICE`` value: ``kind`` is ``"cpu"`` or ``"cuda"``."""

    kind: str
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"


def parse_device(value: str | None = None) -> DeviceSpec:
    """Parse a device string (``cpu``, ``cuda``, ``cuda:N``); ``None`` reads ``XPNET_DEVICE``
    (unset or empty: ``cpu``)."""
    if value is None:
        value = os.environ.get(ENV_VAR) or "cpu"
    if not isinstance(value, str):
        raise TypeError(
            f"device {value!r} is not a device name: expected one of {', '.join(VALID_DEVICES)}, "
            "or pass its namespace as xp= too (xp=torch's with device='cuda:1')"
        )
    text = value.strip().lower()
    if text == "cpu":
        return DeviceSpec("cpu")
    if text == "cuda":
        return DeviceSpec("cuda", 0)
    if text.startswith("cuda:") and text[5:].isascii() and text[5:].isdigit():
        return DeviceSpec("cuda", int(text[5:]))
    raise ValueError(
        f"unknown device {value!r} (from {ENV_VAR} or --device); "
        f"expected one of {', '.join(VALID_DEVICES)}"
    )


def _import_cupy(given: str = "cuda") -> ModuleType:
    """CuPy, or ``BackendUnavailableError`` naming the device ``given`` that needs it."""
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(
            f"device {given!r} needs CuPy, which is not installed: {CUDA_INSTALL_HINT}"
        ) from exc
    return cupy


def _cuda_device(spec: DeviceSpec, given: str | None = None) -> Any:
    cupy = _import_cupy(str(spec) if given is None else given)
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken: CuPy raises its own types
        raise BackendUnavailableError(
            f"device '{spec}' needs a CUDA GPU, but CUDA reports none ({exc}); "
            f"use XPNET_DEVICE=cpu, or {CUDA_INSTALL_HINT}"
        ) from exc
    if spec.index >= count:
        have = f" (cuda:0 to cuda:{count - 1})" if count else "; use XPNET_DEVICE=cpu"
        raise BackendUnavailableError(
            f"device '{spec}' does not exist: this machine has {count} CUDA GPU(s){have}"
        )
    return cupy.cuda.Device(spec.index)


def selected(device: str | None = None) -> tuple[ModuleType, Any]:
    """The Array API namespace and device object for ``device`` (default: ``XPNET_DEVICE``).

    Pass the device object as ``device=`` when creating arrays.
    """
    spec = parse_device(device)
    if spec.kind == "cpu":
        return array_api_compat.array_namespace(np.empty(0)), "cpu"
    dev = _cuda_device(spec, os.environ.get(ENV_VAR) if device is None else device)
    return array_api_compat.array_namespace(_import_cupy().empty(0)), dev


def namespace(device: str | None = None) -> ModuleType:
    """The Array API namespace for ``device`` (default: ``XPNET_DEVICE``)."""
    return selected(device)[0]


# Layers call namespace_of on every forward and backward, so its answer is remembered per
# signature (the type of a single argument, else the tuple of their types): the namespace,
# and which arguments are arrays whose devices must be compared on every call (none for
# NumPy's, which live on the host).
_BY_SIGNATURE: dict[type | tuple[type, ...], tuple[ModuleType, tuple[int, ...]]] = {}


def namespace_of(*arrays: Any) -> ModuleType:
    """The namespace shared by ``arrays`` (Python scalars and ``None`` are ignored).

    Raises :class:`BackendMismatchError` when the arrays come from different
    libraries or live on different devices, and ``TypeError`` naming anything else that
    is not an array (a list, a string).
    """
    if len(arrays) == 1:
        signature = type(arrays[0])
    elif len(arrays) == 2:  # a layer's backward: a tuple display costs half of tuple(map())
        signature = (type(arrays[0]), type(arrays[1]))
    else:
        signature = tuple(map(type, arrays))
    known = _BY_SIGNATURE.get(signature)
    if known is None:
        known = _BY_SIGNATURE[signature] = _resolve(arrays)
    xp, compare = known
    if compare:
        _require_one_device([arrays[i] for i in compare])
    return xp


def _resolve(arrays: tuple[Any, ...]) -> tuple[ModuleType, tuple[int, ...]]:
    """The namespace of ``arrays`` and the positions of the arrays whose devices to compare."""
    at = [i for i, a in enumerate(arrays) if a is not None and not _is_python_scalar(a)]
    if not at:
        raise TypeError("namespace_of needs at least one array")
    present = [arrays[i] for i in at]
    others = [a for a in present if not array_api_compat.is_array_api_obj(a)]
    if others:
        kinds = ", ".join(sorted({type(a).__name__ for a in others}))
        raise TypeError(
            f"expected arrays, got {kinds}: convert with the backend's asarray first "
            "(numpy.asarray, or xpnet.backend.to_device for the current device)"
        )
    try:
        xp = array_api_compat.array_namespace(*present)
    except TypeError as exc:
        xp = _dask_with_numpy(present)
        if xp is None:
            kinds = sorted({f"{type(a).__module__}.{type(a).__qualname__}" for a in present})
            raise BackendMismatchError(
                f"arrays from different backends were mixed in one call ({', '.join(kinds)}); "
                "move them to one backend first, e.g. with xpnet.backend.to_device"
            ) from exc
    host_only = all(_is_numpy(a) for a in present)
    return xp, () if host_only or len(at) == 1 else tuple(at)


def _require_one_device(present: list[Any]) -> None:
    first = array_api_compat.device(present[0])
    if any(array_api_compat.device(a) != first for a in present[1:]):
        devices = sorted({str(array_api_compat.device(a)) for a in present})
        raise BackendMismatchError(
            f"arrays on different devices were mixed in one call ({', '.join(devices)}); put "
            "them on one device first: load the data and build the network with device= (and "
            "xp=), or move an array with array_api_compat.to_device(x, device)"
        )


def dot(a: Any, b: Any) -> Any:
    """``a @ b`` for 2-D ``a`` (N, D) and ``b`` (D, M), as the book's ``np.dot``.

    NumPy gets ``numpy.dot``: its ``matmul`` costs more per call, and takes no BLAS path
    when the shared size D is 1 (``x.T @ dout`` for a batch of one sample), where it is
    several times slower. Other libraries get ``matmul``.
    """
    if type(a) is np.ndarray and type(b) is np.ndarray:
        return np.dot(a, b)
    return matmul(a, b)


def matmul(a: Any, b: Any) -> Any:
    """``a @ b``, promoting two floating dtypes to one as the Array API does (float32 with
    float64 gives float64, as NumPy and CuPy do): PyTorch's ``@`` refuses them instead, so
    that a float32 layer given float64 data (the book's float64 weights meet float32 images)
    computed on NumPy and failed on PyTorch."""
    if a.dtype != b.dtype:
        xp = namespace_of(a, b)
        dtype = xp.result_type(a, b)
        a, b = xp.astype(a, dtype, copy=False), xp.astype(b, dtype, copy=False)
    return a @ b


# NumPy's sum and max handle their arguments in Python (array-function dispatch, then
# ``_wrapreduction``) before calling the ufunc's reduce; on the arrays of a small step
# that costs more than the arithmetic, several times a step.


def reduce_sum(x: Any, axis: int | tuple[int, ...] | None = None, *, keepdims: bool = False) -> Any:
    """``xp.sum(x, axis=axis, keepdims=keepdims)``; NumPy gets ``numpy.add.reduce``."""
    if type(x) is np.ndarray:
        return np.add.reduce(x, axis=axis, keepdims=keepdims)
    return namespace_of(x).sum(x, axis=axis, keepdims=keepdims)


def reduce_max(x: Any, axis: int | tuple[int, ...] | None = None, *, keepdims: bool = False) -> Any:
    """``xp.max(x, axis=axis, keepdims=keepdims)``; NumPy gets ``numpy.maximum.reduce``."""
    if type(x) is np.ndarray:
        return np.maximum.reduce(x, axis=axis, keepdims=keepdims)
    return namespace_of(x).max(x, axis=axis, keepdims=keepdims)


def take(x: Any, indices: Any, *, axis: int) -> Any:
    """``xp.take(x, indices, axis=axis)``: the elements of ``x`` at the integer ``indices``
    along ``axis``. NumPy gets the array's own ``take`` method, which skips ``numpy.take``'s
    dispatch (about 0.8 us a call, twice a step when the trainer gathers one sample)."""
    if type(x) is np.ndarray:
        return x.take(indices, axis=axis)
    return namespace_of(x).take(x, indices, axis=axis)


def spread(values: Any, mask: Any) -> Any:
    """Put ``values`` (in order) where ``mask`` is true, zero elsewhere: the inverse of
    ``values = x[mask]`` (the standard has no scatter, so a cumulative sum finds each
    slot's value)."""
    xp = namespace_of(values, mask)
    zeros = xp.zeros(mask.shape, dtype=values.dtype, device=array_api_compat.device(values))
    if values.shape[0] == 0:
        return zeros
    slot = xp.cumulative_sum(xp.astype(mask, xp.int64)) - 1
    return xp.where(mask, xp.take(values, xp.clip(slot, min=0), axis=0), zeros)


def positive_part(x: Any) -> Any:
    """``max(x, 0)`` element-wise, in ``x``'s dtype: ``xp.maximum(x, 0.0)``.

    NumPy gets the maximum with an array of zeros: its ``maximum`` against a scalar takes
    a loop that is not vectorized, 2-3x slower from 50,000 float32 elements up on this
    project's CPU machine (and no faster below). Other libraries get ``maximum(x, 0.0)``.
    """
    if type(x) is np.ndarray:
        return np.maximum(x, np.zeros(x.shape, x.dtype))
    return namespace_of(x).maximum(x, 0.0)


def _dask_with_numpy(arrays: list[Any]) -> ModuleType | None:
    """Dask's namespace when ``arrays`` are dask arrays and NumPy arrays, else None.

    Dask takes NumPy operands as constants of one chunk, so a network with NumPy
    weights runs on dask inputs; every other mix of libraries stays an error.
    """
    lazy = [a for a in arrays if array_api_compat.is_dask_array(a)]
    if lazy and all(array_api_compat.is_dask_array(a) or _is_numpy(a) for a in arrays):
        return array_api_compat.array_namespace(*lazy)
    return None


def _is_numpy(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


_DTYPE_NAMES = (
    "float32", "float64", "float16", "int64", "int32", "int16", "int8",
    "uint64", "uint32", "uint16", "uint8", "bool", "complex64", "complex128",
)  # fmt: skip


def library_of(x: Any) -> str:
    """The name of the library of array ``x``: ``numpy``, ``torch``, ``array_api_strict``."""
    return namespace_of(x).__name__.removeprefix("array_api_compat.")


def location(array: Any) -> str:
    """The library and device of ``array``: ``numpy cpu``, ``torch cuda:0``,
    ``array_api_strict device1``; the device as its library prints it."""
    library = type(array).__module__.partition(".")[0]
    text = str(array_api_compat.device(array))
    if library == "array_api_strict":  # array_api_strict.Device('device1')
        text = text.partition("('")[2].rstrip("')") or text
    return f"{library} {text}"


def dtype_name(array: Any) -> str:
    """The standard's name of ``array``'s dtype (``"float32"``), in any namespace."""
    xp = namespace_of(array)
    for name in _DTYPE_NAMES:
        if getattr(xp, name, None) == array.dtype:
            return name
    return str(array.dtype)


def _is_python_scalar(x: Any) -> bool:
    # NumPy's float64 scalars subclass float, but they belong to NumPy.
    return isinstance(x, (int, float, complex)) and not isinstance(x, np.generic)


def to_device(
    x: Any, *, dtype: Any = None, device: Any = None, xp: ModuleType | None = None
) -> Any:
    """Copy host data (NumPy array, list, scalar) to the selected backend and device.

    By default the namespace and device come from ``device`` / ``XPNET_DEVICE`` (``cpu``,
    ``cuda``, ``cuda:N``). ``xp`` overrides the namespace (PyTorch's, ``array_api_strict``);
    ``device`` is then one of that namespace's devices (``"cuda:1"`` or a ``torch.device``,
    ``array_api_strict.Device("device1")``), by default its default one.
    ``dtype`` may be a dtype of the target namespace or a name such as ``"float32"``
    (``ValueError`` naming the valid names otherwise). An ``xp`` that is no namespace (the
    name ``"torch"``) is a ``TypeError``; with PyTorch's, a ``device`` that is not one of its
    devices, or ``"meta"`` (which holds no data), is a ``ValueError`` and one that this
    machine lacks (``"cuda"`` on a CPU build) a :class:`BackendUnavailableError`.
    The result is always a new array, even from a NumPy array to NumPy: optimizers
    train parameters in place, and the caller's data must not change with them.
    """
    if xp is None:
        xp, dev = selected(device)
    else:
        require_namespace(xp)
        dev = device
        if dev is not None and array_api_compat.is_torch_namespace(xp):
            _require_torch_device(dev)
    if isinstance(dtype, str):
        dtype = _dtype_named(xp, dtype)
    host = _native(to_numpy(x) if _is_array(x) else x)
    if array_api_compat.is_numpy_namespace(xp):
        if dev not in (None, "cpu"):
            raise ValueError(f"NumPy arrays live on the host: device {dev!r} with xp=NumPy")
        return _aligned_copy(np.asarray(host), dtype)
    if dtype is not None and isinstance(host, np.ndarray | np.generic) and host.ndim == 0:
        # PyTorch's asarray refuses to convert a 0-D array's dtype with copy=True ("can't
        # alias tensor with dtype 'Double' into dtype 'Float'"): copy first, then convert.
        return xp.astype(xp.asarray(host, device=dev, copy=True), dtype)
    return xp.asarray(host, dtype=dtype, device=dev, copy=True)


def require_namespace(xp: Any) -> None:
    """Refuse an ``xp=`` argument that is not an Array API namespace (a module with
    ``asarray``): ``TypeError`` naming it."""
    if not callable(getattr(xp, "asarray", None)):
        hint = f": import {xp} and pass the module, xp={xp}" if isinstance(xp, str) else ""
        raise TypeError(
            "xp must be an array namespace such as numpy or torch (the module), got "
            f"{type(xp).__name__} {xp!r:.40}{hint}"
        )


def _require_torch_device(device: Any) -> None:
    """Refuse a PyTorch ``device=`` that is none of its devices, holds no data (``"meta"``)
    or that this machine lacks (``"cuda:1"`` with one GPU), naming it, before PyTorch's
    own, less telling error (a list of device types, or a missing operator)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        lower = device.lower() if isinstance(device, str) else device
        hint = f" (names are lower case: {lower!r})" if lower != device else ""
        if not isinstance(device, str):  # PyTorch's reason (an ordinal needs an accelerator)
            hint = f" ({exc})"
        raise ValueError(
            f"device={device!r} is not a PyTorch device: expected 'cpu', 'cuda', 'cuda:N' "
            f"or a torch.device{hint}"
        ) from exc
    if dev.type == "meta":
        raise ValueError(
            f"device {device!r} holds no data; xpnet computes with its arrays: use 'cpu' "
            "or a GPU ('cuda')"
        )
    library = getattr(torch, dev.type, None)  # torch.cuda, torch.mps, torch.xpu
    if dev.type == "cpu" or not callable(getattr(library, "device_count", None)):
        return
    count, kind = library.device_count(), dev.type.upper()
    if not count:
        raise BackendUnavailableError(
            f"device={device!r}: torch has no {kind} device here "
            f"(torch.{dev.type}.device_count() is 0); use device='cpu'"
        )
    if (dev.index or 0) >= count:
        raise BackendUnavailableError(
            f"device={device!r} does not exist: torch sees {count} {kind} device(s) "
            f"({dev.type}:0 to {dev.type}:{count - 1})"
        )


def _native(host: Any) -> Any:
    """``host`` in the machine's byte order when it is a NumPy array of the other one
    (``.npy`` files keep the writer's, IDX data is big-endian): PyTorch refuses such arrays
    and ``array_api_strict`` has no dtype for them. Anything else is returned as it is."""
    if isinstance(host, np.ndarray) and not host.dtype.isnative:
        return host.astype(host.dtype.newbyteorder("="))
    return host


def _dtype_named(xp: ModuleType, name: str) -> Any:
    """The dtype of ``xp`` called ``name`` (``"float32"``); ValueError naming the valid names."""
    dtype = getattr(xp, name, None) if name in _DTYPE_NAMES else None
    if dtype is None:
        valid = ", ".join(n for n in _DTYPE_NAMES if hasattr(xp, n))
        raise ValueError(f"unknown dtype {name!r}: expected one of {valid}")
    return dtype


ALIGNMENT = 64  # bytes: a cache line, as PyTorch aligns its CPU tensors


def _aligned_copy(a: np.ndarray, dtype: Any = None) -> np.ndarray:
    """A C-ordered copy of ``a`` (in ``dtype``, default ``a``'s) whose data start on a
    multiple of ``ALIGNMENT`` bytes.

    NumPy's allocations are 16-byte aligned. On this project's CPU machine, with two BLAS
    threads, TwoLayerNet's batch-100 step with aligned weights took 0.86-0.96 of the time
    of one with weights 16 or 48 bytes past a 64-byte boundary (half of NumPy's
    placements), and no step took measurably longer; ``python -m benchmarks.alignment``,
    recorded in ``docs/benchmarks.md``.
    """
    dtype = a.dtype if dtype is None else np.dtype(dtype)
    nbytes = a.size * dtype.itemsize
    buffer = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT
    out = buffer[start : start + nbytes].view(dtype).reshape(a.shape)
    out[...] = a  # one copy, converting to dtype on the way
    return out


def _is_array(x: Any) -> bool:
    return array_api_compat.is_array_api_obj(x)


def to_numpy(x: Any) -> np.ndarray:
    """Any array (NumPy, CuPy, array_api_strict, PyTorch, ...) as a NumPy array on the host.

    Copied from a GPU; an array already on the host may share its memory (as
    ``np.asarray`` and ``Tensor.numpy()`` do), so copy the result before writing into it.
    """
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x)
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if array_api_compat.is_dask_array(x):
        return np.asarray(x.compute())
    if _is_array(x):
        try:
            return np.from_dlpack(x)
        except BufferError:  # a read-only array, which NumPy < 2.1 cannot export by DLPack
            return np.from_dlpack(namespace_of(x).asarray(x, copy=True))
    return np.asarray(x)


def byte_bounds(a: Any) -> tuple[str, int, int] | None:
    """``(device, first byte, one past the last byte)`` of the memory the array ``a`` spans,
    as ``numpy.lib.array_utils.byte_bounds``: arrays on one device whose bounds overlap may
    share memory (a view, as ``W.T`` is of ``W``). None for an empty or a dask array, and
    for a PyTorch tensor on the ``meta`` device, which holds no memory (its address is 0)."""
    if array_api_compat.is_dask_array(a) or not math.prod(a.shape):
        return None
    if array_api_compat.is_torch_array(a):
        if a.is_meta:
            return None
        size = a.element_size()
        start, strides = a.data_ptr(), [s * size for s in a.stride()]
    elif array_api_compat.is_cupy_array(a):
        size, start, strides = a.itemsize, a.data.ptr, a.strides
    else:
        host = to_numpy(a)  # no copy on the host
        size, start, strides = host.itemsize, host.ctypes.data, host.strides
    low = sum((n - 1) * s for n, s in zip(a.shape, strides, strict=True) if s < 0)
    high = sum((n - 1) * s for n, s in zip(a.shape, strides, strict=True) if s > 0)
    return str(array_api_compat.device(a)), start + low, start + high + size


def non_finite(x: Any) -> str | None:
    """How many elements of the floating array ``x`` are NaN or infinite, and the first:
    ``2 non-finite values of 39200, the first nan at [3, 4]``; None when all are finite, and
    for other dtypes. Tested where ``x`` lies; copied to the host only when some are not."""
    xp = namespace_of(x)
    if not xp.isdtype(x.dtype, ("real floating", "complex floating")):
        return None
    if bool(xp.all(xp.isfinite(x))):
        return None
    host = to_numpy(x)
    bad = ~np.isfinite(host)
    count = int(np.count_nonzero(bad))
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f" at {list(first)}" if first else ""
    return (
        f"{count} non-finite value{'s' * (count != 1)} of {host.size}, the first "
        f"{host[first]}{where}"
    )


def require_finite(arrays: Iterable[tuple[str, Any]], why: str) -> None:
    """Raise a ``ValueError`` for the first of ``arrays`` (``(what, array)`` pairs; what is
    not an array is skipped) holding NaN or infinity: ``{what} holds {non_finite}{why}``,
    ``parameter 'W1' holds 1 non-finite value of 39200, the first nan at [0, 0]: ...``."""
    for what, a in arrays:
        fault = non_finite(a) if array_api_compat.is_array_api_obj(a) else None
        if fault:
            raise ValueError(f"{what} holds {fault}{why}")


def tracked_by_autograd(x: Any) -> bool:
    """Whether ``x`` is a PyTorch tensor with ``requires_grad=True`` (``torch.nn.Parameter``)."""
    return array_api_compat.is_torch_array(x) and x.requires_grad


def untracked(x: Any) -> Any:
    """``x`` without PyTorch's autograd tracking: a tensor with ``requires_grad=True`` is
    detached (the same memory, no copy); any other array is returned as it is.

    xpnet computes gradients itself; a tracked input makes every result tracked too, and a
    parameter updated in place with such a result holds the graph of every step before.
    """
    return x.detach() if tracked_by_autograd(x) else x


def to_like(x: Any, like: Any, *, copy: bool | None = None) -> Any:
    """``x`` (an array of any library, or host data) as an array of ``like``'s namespace,
    dtype and device, through the host when ``x`` is another library's; ``copy`` as in
    ``asarray`` (True: always a new array)."""
    xp = namespace_of(like)
    if _is_array(x) and namespace_of(x) is not xp:
        x = to_numpy(x)
    x = _native(x)
    return xp.asarray(x, dtype=like.dtype, device=array_api_compat.device(like), copy=copy)


def random_normal(
    shape: tuple[int, ...],
    *,
    std: float = 1.0,
    rng: np.random.Generator | int | None = None,
    dtype: Any = "float32",
    device: Any = None,
    xp: ModuleType | None = None,
) -> Any:
    """Normal random numbers ``std * N(0, 1)`` of ``shape``, drawn on the host and moved
    (``dtype``, ``device`` and ``xp`` as for :func:`to_device`).

    ``rng`` is a NumPy ``Generator`` or a seed; the same seed gives bit-identical
    values on every backend and device.
    """
    if not is_finite_at_least(std, 0.0):
        raise ValueError(f"std must be a finite number >= 0, got {std!r}")
    return to_device(std * generator(rng).standard_normal(shape), dtype=dtype, device=device, xp=xp)


def host_rng(seed: int | None) -> np.random.Generator:
    """A seeded NumPy random generator (for shuffling and initial weights); ``seed`` is an
    integer >= 0 or None (fresh entropy)."""
    _require_seed(seed)
    return np.random.default_rng(seed)


def generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """``rng`` as a NumPy ``Generator``: itself, or :func:`host_rng` of a seed (None: fresh
    entropy), as SciPy's ``rng`` arguments (SPEC 7) take either."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is not None and not is_count(rng, 0):
        raise bad_argument(is_integer(rng))(
            f"rng must be a seed (an integer >= 0), a numpy.random.Generator or None, got "
            f"{type(rng).__name__} {rng!r:.40}"
        )
    return host_rng(rng)


def _require_seed(seed: Any) -> None:
    if seed is not None and not is_count(seed, 0):
        raise bad_argument(is_integer(seed))(f"seed must be an integer >= 0 or None, got {seed!r}")


class DeviceRNG:
    """Seeded uniform random numbers drawn on the device of a given array.

    The standard has no random numbers, so this is the one place that knows each
    library's generator: NumPy's ``Generator`` for NumPy arrays, CuPy's
    ``cupy.random.default_rng`` for CuPy arrays and ``torch.Generator`` for PyTorch
    tensors, each seeded with ``seed`` and created on first use per backend and
    device, so a step draws its numbers where the arrays live (no host round trip).
    Any other Array API library (``array_api_strict``) gets NumPy's numbers moved to
    the array's device: the fallback, a host-to-device copy per draw.
    One seed gives a reproducible sequence per backend, not the same numbers on
    every backend.
    """

    def __init__(self, seed: int | None = None) -> None:
        _require_seed(seed)
        self.seed = seed
        self._generators: dict[tuple[str, str], Any] = {}
        self._pending: dict[tuple[str, str], str] = {}  # loaded states of generators not made yet

    def uniform(self, shape: int | tuple[int, ...], *, like: Any) -> Any:
        """Uniform numbers in [0, 1) of ``shape`` (a tuple, or an int for 1-D), with ``like``'s
        dtype, backend and device."""
        shape = (shape,) if is_integer(shape) else tuple(shape)
        if array_api_compat.is_cupy_array(like):
            with like.device:
                return _cupy_uniform(self._generator("cupy", like), shape, like.dtype)
        if array_api_compat.is_torch_array(like):
            import torch

            gen = self._generator("torch", like)
            return torch.rand(shape, generator=gen, dtype=like.dtype, device=like.device)
        gen = self._generator("numpy", like)
        if isinstance(like, np.ndarray):
            return _host_uniform(gen, shape, like.dtype)
        # Drawn in like's precision for float32 and float16: a float64 draw can round up to 1.0.
        return to_like(
            _host_uniform(gen, shape, _NARROW_DRAWS.get(dtype_name(like), np.float64)), like
        )

    def state_dict(self) -> dict[str, Any]:
        """The state of each generator drawn from (or loaded) so far, JSON-serialisable, under
        ``"<backend>/<device>"``: NumPy's ``bit_generator.state`` (``"numpy/host"``) and
        PyTorch's ``get_state()`` bytes in hex (``"torch/cpu"``). CuPy's is on its device,
        out of reach, and not given: a CuPy generator restarts from ``seed``."""
        states = {f"{kind}/{device}": state for (kind, device), state in self._pending.items()}
        for (kind, device), gen in self._generators.items():
            if kind == "numpy":
                states[f"{kind}/{device}"] = gen.bit_generator.state
            elif kind == "torch":
                states[f"{kind}/{device}"] = bytes(gen.get_state().numpy()).hex()
        return states

    def load_state_dict(self, states: Mapping[str, Any]) -> None:
        """Continue from ``states`` (:meth:`state_dict`'s): each generator it names draws on
        from there, the others start again from ``seed``. ``ValueError`` names a state that
        is not one; a PyTorch state for a GPU is checked when its device is first drawn on."""
        generators, pending = {}, {}
        for name, state in states.items():
            kind, _, device = str(name).partition("/")
            if kind == "numpy" and device == "host":
                gen = np.random.default_rng(self.seed)
                try:
                    gen.bit_generator.state = state
                except (TypeError, ValueError, KeyError) as exc:
                    raise ValueError(
                        f"random generator state {name!r} is not a NumPy "
                        f"{type(gen.bit_generator).__name__} state: {exc}"
                    ) from exc
                generators[(kind, device)] = gen
            elif kind == "torch" and isinstance(state, str) and _is_hex(state):
                # A CPU state is checked now; a GPU's waits for its device's first draw, and
                # without PyTorch the state is only kept (a NumPy network never draws with it).
                torch = _torch_or_none() if device == "cpu" else None
                if torch is not None:
                    _set_torch_state(torch.Generator(), (kind, device), state)
                pending[(kind, device)] = state
            else:
                raise ValueError(
                    f"random generator state {name!r} is not one DeviceRNG saves: expected "
                    "'numpy/host' with a NumPy bit_generator.state, or 'torch/<device>' with "
                    f"the bytes of a torch.Generator's state in hex, got {show(state)}"
                )
        self._generators, self._pending = generators, pending

    def _generator(self, kind: str, like: Any) -> Any:
        key = (kind, str(array_api_compat.device(like)) if kind != "numpy" else "host")
        gen = self._generators.get(key)
        if gen is None:
            if kind == "cupy":
                gen = _import_cupy().random.default_rng(self.seed)
            elif kind == "torch":
                import torch

                gen = torch.Generator(device=like.device)
                state = self._pending.pop(key, None)
                if state is not None:
                    _set_torch_state(gen, key, state)
                elif self.seed is None:
                    gen.seed()  # its own fresh seed: torch.seed() would reseed torch's global one
                else:
                    gen.manual_seed(self.seed)
            else:
                gen = np.random.default_rng(self.seed)
            self._generators[key] = gen
        return gen


def _torch_or_none() -> ModuleType | None:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _is_hex(text: str) -> bool:
    return len(text) % 2 == 0 and all(c in "0123456789abcdef" for c in text)


def _set_torch_state(gen: Any, key: tuple[str, str], state: str) -> None:
    import torch

    try:
        gen.set_state(torch.frombuffer(bytearray.fromhex(state), dtype=torch.uint8))
    except (RuntimeError, ValueError) as exc:  # a state of another size or device kind
        raise ValueError(
            f"random generator state '{key[0]}/{key[1]}' does not fit a torch.Generator on "
            f"{key[1]}: {exc}"
        ) from exc


_NARROW_DRAWS = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16)}
_BELOW_ONE_FLOAT16 = np.float16(1 - 2**-11)  # the largest float16 below 1.0


def _host_uniform(gen: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """NumPy's uniform numbers in [0, 1) in ``dtype``. NumPy draws no float16: those are
    drawn in float32 and rounded, kept below the 1.0 that rounding may reach."""
    if dtype != np.float16:
        return gen.random(shape, dtype=dtype)
    return np.minimum(gen.random(shape, dtype=np.float32).astype(np.float16), _BELOW_ONE_FLOAT16)


def _cupy_uniform(gen: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """CuPy's uniform numbers in [0, 1) in ``dtype``; float16, as :func:`_host_uniform`, drawn
    in float32 and rounded below 1.0 (CuPy's own float16 draws reached 1.0 on an H200)."""
    if dtype != np.float16:
        return gen.random(shape, dtype=dtype)
    import cupy

    drawn = gen.random(shape, dtype=cupy.float32).astype(cupy.float16)
    return cupy.minimum(drawn, _BELOW_ONE_FLOAT16)


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit the host BLAS library (OpenBLAS, MKL) to ``n`` threads inside a ``with`` block.

    Many small matrix products in a row (a gradient check's loop) run several times
    faster on one BLAS thread than on threads that start, spin and wait for each tiny
    product, the more so on a machine shared with other jobs. Uses ``threadpoolctl``;
    without it this does nothing. GPU libraries are not affected. ``n`` is an integer >= 1
    (``TypeError`` for a non-integer, ``ValueError`` below 1).
    """
    if not is_integer(n):
        raise TypeError(f"blas_threads needs an integer number of threads >= 1, got {n!r}")
    if n < 1:
        raise ValueError(f"blas_threads needs an integer number of threads >= 1, got {n!r}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def synchronize(*arrays: Any) -> None:
    """Wait until all queued work on the arrays' device (or the selected one) has finished.

    NumPy and other synchronous backends return at once. Call this before
    reading a clock around GPU work.
    """
    if arrays:
        for a in arrays:
            if array_api_compat.is_cupy_array(a):
                a.device.synchronize()
            elif array_api_compat.is_torch_array(a) and a.is_cuda:
                import torch

                torch.cuda.synchronize(a.device)
        return
    spec = parse_device()
    if spec.kind == "cuda":
        _cuda_device(spec).synchronize()


def describe() -> dict[str, str]:
    """Versions and the selected backend, for ``xpnet info`` and benchmark records.

    ``device`` is the selected device (``cuda:0``), or says why it cannot be used
    (``cuda:0 unavailable (...)``, ``invalid: ...``).
    """
    info = {
        "XPNET_DEVICE": os.environ.get(ENV_VAR, "cpu"),
        "numpy": np.__version__,
        "array_api_compat": array_api_compat.__version__,
        "cpu": cpu(),
    }
    try:
        spec = parse_device()
        info["device"] = str(spec)
    except ValueError as exc:
        info["device"] = f"invalid: {exc}"
        return info
    try:
        selected()
    except BackendUnavailableError as exc:  # a valid name this machine cannot use
        info["device"] = f"{spec} unavailable ({exc})"
    try:
        cupy = _import_cupy()
        info["cupy"] = cupy.__version__
        count = cupy.cuda.runtime.getDeviceCount()
        names = [cupy.cuda.runtime.getDeviceProperties(i)["name"].decode() for i in range(count)]
        info["cuda_devices"] = ", ".join(names) if names else "none"
    except BackendUnavailableError:
        info["cupy"] = "not installed"
    except Exception as exc:  # a CUDA driver error: report it, do not fail `xpnet info`
        info["cuda_devices"] = f"unavailable ({exc})"
    return info


# The widest SIMD extension first: how fast NumPy's loops for tanh, log1p and others run
# depends on it, and so does a benchmark's ratio against hand-written NumPy.
_SIMD = ("AVX512_SPR", "AVX512_ICL", "AVX512_SKX", "AVX512F", "AVX2", "AVX", "SVE", "ASIMD")


def cpu() -> str:
    """The host CPU, for records: its model name with family and model where Linux's
    ``/proc/cpuinfo`` gives them (VMs named alike can differ there), and the widest SIMD
    extension NumPy uses on it, e.g. ``"AMD EPYC (family 25, model 1), NumPy SIMD AVX2"``."""
    try:
        with open("/proc/cpuinfo") as info:
            fields: dict[str, str] = {}
            for line in info:
                if not line.strip():  # the first processor's block is enough
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        name = f"{fields['model name']} (family {fields['cpu family']}, model {fields['model']})"
    except (OSError, KeyError):  # not Linux, or not x86
        name = platform.processor() or platform.machine() or "unknown CPU"
    try:  # NumPy's own record of what it found, which it keeps private
        from numpy._core._multiarray_umath import __cpu_features__ as found
    except ImportError:
        return f"{name}, NumPy SIMD unknown"
    widest = next((ext for ext in _SIMD if found.get(ext)), "none of " + "/".join(_SIMD))
    return f"{name}, NumPy SIMD {widest}"
