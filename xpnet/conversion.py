"""A network's arrays cast and moved in place: :meth:`xpnet.Sequential.to` (torch's
``model.to``, ``model.double()``) and the float64 copy a float32 gradient check makes of a
network (:mod:`xpnet.gradcheck`)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from array_api_compat import device as array_device
from array_api_compat import is_array_api_obj, is_cupy_namespace, is_numpy_namespace

from xpnet.backend import location, namespace_of, require_namespace, selected, to_device
from xpnet.held import layers_of
from xpnet.init import float_dtype
from xpnet.layers import is_floating_array


def _is_array(value: Any) -> bool:
    """Whether ``value`` is an array (NumPy's scalar types, ``numpy.float32`` given as a
    dtype, pass array_api_compat's test)."""
    return is_array_api_obj(value) and not isinstance(value, type)


def _names_a_device(value: Any) -> bool:
    """Whether ``value`` given as a dtype is a device instead: ``"cpu"``, ``"cuda"``,
    ``"cuda:1"``, a ``torch.device``."""
    if isinstance(value, str):
        return value == "cpu" or value.partition(":")[0] == "cuda"
    return type(value).__name__ == "device"


def _already_on(a: Any, xp: ModuleType, device: Any) -> bool:
    """Whether the array ``a`` is of namespace ``xp`` and on ``device`` (None: wherever it
    is), where torch's ``to`` keeps a tensor as it is."""
    if namespace_of(a) is not xp:
        return False
    return device is None or is_numpy_namespace(xp) or str(array_device(a)) == str(device)


def network_to(
    net: Any, dtype: Any = None, device: Any = None, *, xp: ModuleType | None = None
) -> None:
    """Cast and move, in place, every array held by ``net``, by its layers
    (:func:`~xpnet.held.layers_of`: the loss layer and inner layers too) and by its
    ``params``, as torch's ``Module.to``:

    - ``dtype`` (``"float32"`` or ``"float64"``, by name or as a dtype, as the builders take
      it): the real floating arrays (parameters, buffers such as BatchNorm's running
      statistics, the layers' caches) are cast to it; integer and bool arrays keep theirs;
    - ``device`` (also as the first argument, as torch's ``model.to("cuda")``): every
      array moves there; without ``xp``, within the parameters' library
      (torch's ``"cuda:1"``), where NumPy and CuPy, xpnet's own backends, are chosen between
      as the builders' ``device=`` does (``"cpu"``: NumPy, ``"cuda"``: CuPy);
    - ``xp``: every array moves to that namespace, on ``device`` (default its default one),
      as :func:`xpnet.backend.to_device` moves host data.

    An array held twice (by two layers, or by a layer and a ``params`` dict of the network's
    own) becomes one new array, still shared; an attribute holding the parameters' dtype (a
    Sequential's input dtype) follows them. Arrays that would not change (already of that
    dtype, namespace and device) are kept, not copied. Every new array is made before any
    is set, so a conversion that fails leaves ``net`` as it was.
    Only attributes that are arrays are seen (not arrays inside a list or a dict)."""
    if device is None and _names_a_device(dtype):  # torch's model.to("cuda")
        dtype, device = None, dtype
    owners = [net, *layers_of(net)]
    held_values = [*(v for owner in owners for v in vars(owner).values()), *net.params.values()]
    arrays = {id(value): value for value in held_values if _is_array(value)}
    if not arrays:
        return
    first = next(iter(net.params.values()), None)
    like = first if first is not None else next(iter(arrays.values()))
    source = namespace_of(like)
    if xp is not None:
        require_namespace(xp)
    elif device is not None and (is_numpy_namespace(source) or is_cupy_namespace(source)):
        xp, device = selected(device)
    target = source if xp is None else xp
    moving = device is not None or target is not source
    try:
        wanted = None if dtype is None else getattr(target, float_dtype(dtype, target))
    except ValueError as exc:
        raise ValueError(
            f"{exc}; to() casts the floating arrays only, integer and bool ones keep their "
            "dtype (as torch's Module.to)"
        ) from exc

    def converted(a: Any) -> Any:
        cast = wanted is not None and is_floating_array(a) and a.dtype != wanted
        if moving and not _already_on(a, target, device):
            return to_device(a, dtype=wanted if cast else None, device=device, xp=target)
        return target.astype(a, wanted) if cast else a

    try:
        new = {key: converted(a) for key, a in arrays.items()}  # all made before any is set
    except ValueError as exc:  # array_api_strict's "Unsupported device 'cuda'", say
        if device is None:
            raise
        raise ValueError(
            f"cannot move the network ({location(like)}) to device {device!r} of "
            f"{getattr(target, '__name__', target)}: {exc}; a device of another library "
            "needs its namespace as xp= too"
        ) from exc
    was, now = (None, None) if first is None else (first.dtype, new[id(first)].dtype)
    for owner in owners:
        for attr, value in list(vars(owner).items()):
            if _is_array(value):
                setattr(owner, attr, new[id(value)])
            elif was is not None and type(value) is type(was) and value == was:
                setattr(owner, attr, now)  # the parameters' dtype, kept beside them
    for name, value in list(net.params.items()):  # a dict of the network's own still holds
        if arrays.get(id(value)) is value and new[id(value)] is not value:  # the old arrays
            net.params[name] = new[id(value)]
