"""A network's arrays cast and moved in place: :meth:`xpnet.Sequential.to` (torch's
``model.to``, ``model.double()``) and the float64 copy a float32 gradient check makes of a
network (:mod:`xpnet.gradcheck`)."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

from array_api_compat import device as array_device
from array_api_compat import is_array_api_obj, is_cupy_namespace, is_numpy_namespace

from xpnet.backend import dtype_name, location, namespace_of, require_namespace, selected, to_device
from xpnet.held import layers_of
from xpnet.init import float_dtype
from xpnet.layers import is_floating_array

conversions = 0
"""How many conversions :func:`network_to` has made: a :class:`~xpnet.Sequential` checks
again that its parameters have one dtype, library and device after one, as converting a
stack inside it alone (``inner.to("float64")``) can leave it with two."""


def _is_array(value: Any) -> bool:
    """Whether ``value`` is an array (NumPy's scalar types, ``numpy.float32`` given as a
    dtype, pass array_api_compat's test)."""
    return is_array_api_obj(value) and not isinstance(value, type)


def _arrays_in(value: Any, owner: Any, attr: str) -> Iterator[Any]:
    """The arrays that ``value``, attribute ``attr`` of ``owner``, is or holds in lists,
    tuples, named tuples and dicts, nested too; any other tuple holding arrays is a
    ``TypeError`` naming the attribute, as :func:`_rebuilt` could not make it again."""
    if _is_array(value):
        yield value
    elif isinstance(value, list | tuple | dict):
        items = list(value.values() if isinstance(value, dict) else value)
        found = [a for item in items for a in _arrays_in(item, owner, attr)]
        if found and isinstance(value, tuple) and not _is_rebuilt_tuple(value):
            raise TypeError(
                f"{type(owner).__name__}.{attr} is a {type(value).__name__} holding arrays, "
                "which to() cannot make again in another dtype or place: hold them in "
                "attributes of their own, or in a list, a tuple, a named tuple or a dict"
            )
        yield from found


def _is_rebuilt_tuple(value: tuple) -> bool:
    """Whether :func:`_rebuilt` makes ``value`` again: a tuple or a named tuple."""
    return type(value) is tuple or hasattr(type(value), "_make")


def _rebuilt(value: Any, new: dict[int, Any]) -> Any:
    """``value`` with the arrays in ``new`` (by the id of the old one): a list or a dict
    updated in place (another holder of it sees the new arrays, as of ``params``), a tuple
    made again. A list or dict held twice is reached twice: arrays not in ``new`` are new."""
    if _is_array(value):
        return new.get(id(value), value)
    if isinstance(value, list):
        value[:] = [_rebuilt(item, new) for item in value]
    elif isinstance(value, dict):
        value.update({key: _rebuilt(item, new) for key, item in value.items()})
    elif isinstance(value, tuple):
        items = [_rebuilt(item, new) for item in value]
        return tuple(items) if type(value) is tuple else type(value)._make(items)
    return value


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
    Arrays held in a list, a tuple, a named tuple or a dict (``self.Ws = [W1, W2]``) are
    converted too, the list or dict in place; another tuple holding arrays is a
    ``TypeError`` naming the attribute. Arrays inside other objects are not seen."""
    global conversions
    if device is None and _names_a_device(dtype):  # torch's model.to("cuda")
        dtype, device = None, dtype
    owners = [net, *layers_of(net)]
    holding = {  # (id of the owner, attribute) -> the arrays it is or holds
        (id(owner), attr): list(_arrays_in(value, owner, attr))
        for owner in owners
        for attr, value in vars(owner).items()
    }
    held_values = [*(a for found in holding.values() for a in found), *net.params.values()]
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
        name = None if dtype is None else float_dtype(dtype, target)
    except ValueError as exc:
        raise ValueError(
            f"{exc}; to() casts the floating arrays only, to one of those (xpnet has no "
            "float16 network), integer and bool ones keep their dtype (as torch's Module.to)"
        ) from exc

    def converted(a: Any) -> Any:
        # by name: the dtypes of two libraries (array_api_strict's, NumPy's) are not compared
        cast = name is not None and is_floating_array(a) and dtype_name(a) != name
        wanted = getattr(target, name) if cast else None
        if moving and not _already_on(a, target, device):
            return to_device(a, dtype=wanted, device=device, xp=target)
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
            if holding.get((id(owner), attr)):
                setattr(owner, attr, _rebuilt(value, new))
            elif was is not None and type(value) is type(was) and value == was:
                setattr(owner, attr, now)  # the parameters' dtype, kept beside them
    for name, value in list(net.params.items()):  # a dict of the network's own still holds
        if arrays.get(id(value)) is value and new[id(value)] is not value:  # the old arrays
            net.params[name] = new[id(value)]
    conversions += 1
