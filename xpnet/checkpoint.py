"""Checkpoints: a network's parameters, its architecture and training state in one ``.npz``.

A checkpoint is a NumPy ``.npz`` archive (no pickle anywhere):

- one array per parameter, under its name (``W1``, ``b1``, ...);
- optimizer state, when given, under ``optimizer/<buffer>/<name>`` (``optimizer/v/W1``);
- a layer's non-trained state (``buffers``, e.g. running statistics) under
  ``buffer/<layer number>/<attribute>``;
- ``__metadata__``: a ``uint8`` array holding UTF-8 JSON with ``format``, the network's
  ``architecture``, the ``optimizer`` (name, hyperparameters, ``iterations``) and
  whatever the caller adds (the trainer adds ``epoch`` and ``history``).

The architecture of a :class:`~xpnet.networks.MultiLayerNet` is its constructor settings
(``sizes``, ``activation``, ``dtype``, ``weight_decay``, and ``output_activation`` and
``loss`` where they are not the defaults). That of any other
:class:`~xpnet.networks.Sequential` lists its layers and loss by registered name, with
their ``config()`` and the names of their parameters; for a ``SimpleConvNet`` or a
MultiLayerNet with BatchNorm or Dropout, also its class and constructor settings
(``network``), from which :func:`load_network` builds it again when that gives the layers
the file lists (else it rebuilds them one by one, in a ``Sequential``). Built-in layers
are registered; a user's layer is registered with :func:`register_layer`, before saving
or before loading (a file names an unregistered class by module and qualified name).
Layers are rebuilt as ``cls(**parameters, **buffers, **config)``: JSON and arrays, never pickle;
saving warns (:class:`ArgumentsNotSaved`) of a constructor argument none of them records,
unless the layer keeps it under its own name at its (plain) default.

Rebuilding is optional: any network, of registered layers or not, is saved, and
:func:`load_params` loads the parameters (and layer buffers) of a file into a network
built by the caller, as PyTorch's ``load_state_dict`` does; :func:`load_network`'s error
for an unregistered layer says so.

Files are written atomically (a temporary file in the target's directory, then
``os.replace``), so a crash never leaves a half-written checkpoint, and read with
``allow_pickle=False``. Reading checks the metadata fields the library writes
(``architecture``, ``optimizer``), and any a caller names, against a small schema
(:mod:`xpnet.schema`), so a malformed one is a :class:`CheckpointError` naming the file and
the field; the rest of the metadata is the caller's, read back as written. Loading checks
names, shapes and dtypes against the network and moves the arrays to the network's
namespace and device.

Every file xpnet has written records its ``format``, ``xpnet-checkpoint/1``; reading
refuses a file without one (or without metadata) and any other format, a newer version
of this one included, with a :class:`CheckpointError` naming the file and both formats.

The state of each layer's random generator (a :class:`~xpnet.backend.DeviceRNG` in its
``rng``, as Dropout's) is in the metadata too, under ``generators`` (``{"<layer number>":
DeviceRNG.state_dict()}``: JSON, no pickle), and loading restores it, so a network with
Dropout resumes drawing the masks an uninterrupted run would (NumPy and PyTorch; CuPy's
state stays on its device and is not saved). Files written before xpnet saved it load as
they did: their layers' generators are left as they are.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import json
import math
import os
import sys
import warnings
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from xpnet.backend import DeviceRNG, dtype_name, to_like, to_numpy
from xpnet.files import atomic_file, not_a_file
from xpnet.layers import inner_layers, walk
from xpnet.schema import (
    Field,
    integer,
    json_object,
    list_of,
    nullable,
    number,
    one_of,
    problem,
    string,
)

FORMAT = "xpnet-checkpoint/1"
METADATA_KEY = "__metadata__"
OPTIMIZER_PREFIX = "optimizer/"
BUFFER_PREFIX = "buffer/"
GENERATORS_KEY = "generators"
_RESERVED = (OPTIMIZER_PREFIX, BUFFER_PREFIX)
_ZIP_START = b"PK\x03\x04"  # a local file header: how every .npz archive begins
_LAYERS: dict[str, type] = {}


class CheckpointError(ValueError):
    """A file that is not a usable xpnet checkpoint: not an ``.npz`` archive, no metadata or
    another ``format``, or metadata that is not JSON or has a malformed field (the message
    names the file and the field)."""


class UnregisteredLayer(CheckpointError):
    """:func:`load_network` met a layer that no registered class rebuilds. ``what`` names the
    file, the layer and its name (``p.npz: layers[2] is a 'Residual', which is not a
    registered layer (registered: ...)``); the message adds how to load it from Python."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}. {fix}")
        self.what = what


def _check_fields(where: str | os.PathLike, meta: Any, fields: Mapping[str, Field]) -> None:
    """Raise :class:`CheckpointError` unless ``meta`` (the metadata of checkpoint ``where``)
    is a JSON object whose ``fields`` are as described; the message reads
    ``<file>: checkpoint field <name> is <value>, expected <what>``."""
    found = problem(meta, json_object(fields), METADATA_KEY)
    if found:
        raise CheckpointError(f"{os.fspath(where)}: checkpoint {found}")


def _layer_spec(*, required: bool = False) -> Field:
    """A layer (or loss) as :func:`architecture` records it."""
    names = Field(
        lambda v: isinstance(v, dict) and all(isinstance(n, str) for n in v.values()),
        "a JSON object of parameter names",
    )
    inner = json_object(
        lambda held: {
            attr: _layer_spec() if isinstance(value, dict) else nullable(list_of(_layer_spec()))
            for attr, value in held.items()
        }
    )
    spec = {
        "layer": string(required=True),
        "config": json_object(),
        "params": names,
        "buffers": list_of(string()),
        "sublayers": inner,
        "unrecorded": list_of(string()),
    }
    return json_object(spec, required=required)


@functools.cache
def _metadata_fields() -> dict[str, Field]:
    """The metadata fields the library writes and loading reads: ``architecture`` and
    ``optimizer`` (:func:`save_params` refuses them in a caller's metadata)."""
    from xpnet.init import DTYPES
    from xpnet.networks import ACTIVATIONS

    classes = {
        "MultiLayerNet": {
            "sizes": list_of(integer(1), min_length=2, required=True),
            "activation": one_of(ACTIVATIONS, required=True),
            "output_activation": nullable(one_of(ACTIVATIONS)),
            "dtype": one_of(DTYPES, required=True),
            "weight_decay": number(0.0),
            "loss": _layer_spec(),
            "network": one_of(("TwoLayerNet",)),
        },
        "Sequential": {
            "layers": list_of(_layer_spec(), required=True),
            "loss": _layer_spec(required=True),
            "dtype": string(),  # any: a Sequential of a user's layers may be float16
            "weight_decay": number(0.0),
            "network": json_object(
                {
                    "class": one_of(BUILT_NETWORKS, required=True),
                    "settings": json_object(required=True),
                }
            ),
        },
    }

    def architecture_fields(arch: Mapping[str, Any]) -> dict[str, Field]:
        return {"class": one_of(classes, required=True), **classes.get(arch.get("class"), {})}

    optimizer = {
        "name": string(required=True),
        "lr": number(0.0, required=True),
        "iterations": integer(0),
        "steps": Field(
            lambda v: isinstance(v, dict) and all(integer(1).test(n) for n in v.values()),
            "a JSON object of parameter names to integers >= 1",
        ),
    }
    generators = Field(
        lambda v: isinstance(v, dict) and all(isinstance(s, dict) for s in v.values()),
        "a JSON object of layer numbers to DeviceRNG states",
    )
    return {
        "architecture": nullable(json_object(architecture_fields)),
        "optimizer": nullable(json_object(optimizer)),
        GENERATORS_KEY: generators,
    }


def _check_format(where: str, meta: Mapping[str, Any]) -> None:
    """Raise :class:`CheckpointError` unless ``meta`` records :data:`FORMAT` (every file
    xpnet has written does)."""
    if "format" not in meta:
        raise CheckpointError(
            f"{where}: the checkpoint records no format; this xpnet reads {FORMAT!r}, "
            "which every file it writes records"
        )
    found = meta["format"]
    if found != FORMAT:
        family, _, version = FORMAT.partition("/")
        found_family, _, found_version = str(found).partition("/")
        newer = found_family == family and found_version.isascii() and found_version.isdigit()
        newer = newer and int(found_version) > int(version)
        raise CheckpointError(
            f"{where}: checkpoint format {found!r} is not supported; this xpnet reads "
            f"{FORMAT!r}" + (" (the file was written by a newer xpnet)" if newer else "")
        )


def _check_metadata(where: str, meta: Any, extra: Mapping[str, Field] | None) -> None:
    """The one check of a checkpoint's metadata: its format, the library's fields, then
    ``extra``."""
    if isinstance(meta, dict):  # anything else: _check_fields says what the metadata is
        _check_format(where, meta)
    _check_fields(where, meta, _metadata_fields())
    if extra:
        _check_fields(where, meta, extra)


def _params_of(net_or_params: Any) -> Mapping[str, Any]:
    return net_or_params.params if hasattr(net_or_params, "params") else net_or_params


def register_layer(cls: type | None = None, *, name: str | None = None) -> Any:
    """Register a layer class under ``name`` (default: its class name) for checkpoints.

    Use as a decorator (``@register_layer`` or ``@register_layer(name="Square")``) or a
    call (``register_layer(Square)``). Loading a checkpoint that names a layer needs the
    name registered first. Returns the class. A class of the same module and qualified
    name replaces the one registered (a notebook cell run again, a module reloaded; of
    classes a function makes, the last one made); another class under a name taken is a
    ``ValueError``.
    """

    def add(layer_cls: type) -> type:
        key = layer_cls.__name__ if name is None else name
        other = _registry().get(key)
        redefined = other is not None and _qualified_name(other) == _qualified_name(layer_cls)
        if other is not None and other is not layer_cls and not redefined:
            raise ValueError(
                f"layer name {key!r} is already registered for {other.__module__}."
                f"{other.__qualname__}; register {layer_cls.__qualname__} under another name"
            )
        _LAYERS[key] = layer_cls
        return layer_cls

    return add if cls is None else add(cls)


def _registry() -> dict[str, type]:
    if not _LAYERS:
        from xpnet import conv, layers, networks

        for layer_cls in (
            layers.Affine, layers.ReLU, layers.Sigmoid, layers.Tanh, layers.Softmax,
            layers.Exp, layers.Reciprocal,
            layers.SoftmaxWithLoss, layers.SigmoidWithLoss, layers.MeanSquaredError,
            layers.Dropout, layers.BatchNormalization, conv.Convolution, conv.Pooling,
            networks.Sequential,  # a stack of layers inside a network
        ):  # fmt: skip
            _LAYERS[layer_cls.__name__] = layer_cls
    return _LAYERS


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _class_named(name: Any) -> type | None:
    """The registered class that a checkpoint names ``name`` (None for none): by its
    registered name, or by :func:`_qualified_name` for one that was not registered when
    the file was saved."""
    registered = _registry()
    found = (cls for cls in registered.values() if _qualified_name(cls) == name)
    return registered.get(name) or next(found, None)


def _layer_name(layer: Any) -> str:
    cls = type(layer)
    for key, registered in _registry().items():
        if registered is cls:
            return key
    return _qualified_name(cls)


def _spec(layer: Any, names: Mapping[int, Mapping[str, str]], path: str = "") -> dict[str, Any]:
    """What rebuilds ``layer`` (at ``path``; ``names``: its parameters' names by the id of
    the layer holding them), the layers inside it (``sublayers``) too, each a spec under its
    attribute (a list of them for a sequence, null for None); warns of what none records."""
    from xpnet.networks import Sequential

    spec: dict[str, Any] = {"layer": _layer_name(layer)}
    config = layer.config() if callable(getattr(layer, "config", None)) else {}
    if config:
        spec["config"] = dict(config)
    if names.get(id(layer)):
        spec["params"] = dict(names[id(layer)])
    if getattr(layer, "buffers", ()):
        spec["buffers"] = list(layer.buffers)
    inner: dict[str, Any] = {}
    for suffix, sub in inner_layers(layer, with_none=True):
        attr, _, index = suffix[1:].partition("[")
        sub_spec = None if sub is None else _spec(sub, names, path + suffix)
        if index:
            inner.setdefault(attr, []).append(sub_spec)
        else:
            inner[attr] = sub_spec
    for attr in getattr(layer, "sublayers", ()):  # an empty sequence of layers
        inner.setdefault(attr, [])
    if inner:
        spec["sublayers"] = inner
    # A stack's layers are recorded, and its loss=None and weight_decay=0 are the only values
    # it can have (a subclass's own constructor may take more).
    if path and type(layer).__init__ is not Sequential.__init__:
        _warn_of_unrecorded_arguments(path, layer, spec)
    return spec


class ArgumentsNotSaved(UserWarning):
    """:func:`save_params` saved a layer whose constructor takes arguments that the file does
    not record (neither its ``params``, its ``buffers`` nor its ``config()``) and that the
    layer does not keep under their own names at their plain defaults. The file names them
    (``unrecorded`` in the layer's architecture entry), and :func:`load_network` warns again
    when it rebuilds the layer with their defaults."""


def _unrecorded(layer: Any, spec: Mapping[str, Any]) -> list[inspect.Parameter]:
    """The arguments of ``layer``'s constructor that its checkpoint ``spec`` does not record."""
    try:
        taken = inspect.signature(type(layer)).parameters.values()
    except (TypeError, ValueError):  # a class without a signature Python can read
        return []
    recorded = {*spec.get("params", {}), *spec.get("buffers", ()), *spec.get("config", {})}
    recorded |= {*spec.get("sublayers", {})}
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [
        p
        for p in taken
        if p.kind not in variadic and p.name not in recorded and not _at_default(layer, p)
    ]


def _at_default(layer: Any, argument: inspect.Parameter) -> bool:
    """Whether ``layer`` keeps ``argument`` under its name at its default, a plain value that
    rebuilding gives back anyway (``Softplus(beta=1.0)`` without ``config()``)."""
    plain = (bool, int, float, str, type(None))
    default, kept = argument.default, getattr(layer, argument.name, inspect.Parameter.empty)
    return isinstance(default, plain) and type(kept) is type(default) and kept == default


def _warn_of_unrecorded_arguments(what: str, layer: Any, spec: dict[str, Any]) -> None:
    """Warn, naming them, of constructor arguments of ``layer`` that ``spec`` lacks, and
    name them in ``spec`` (``unrecorded``) for :func:`load_network` to warn of again: a
    ``Softplus(beta=5.0)`` without ``config()`` came back as ``Softplus()``, another
    function of its input, without a word."""
    missing = _unrecorded(layer, spec)
    if not missing:
        return
    spec["unrecorded"] = [p.name for p in missing]
    names = ", ".join(p.name for p in missing)
    defaulted = [p.name for p in missing if p.default is not p.empty]
    outcome = (
        f"load_network will rebuild it with the defaults of {', '.join(defaulted)}"
        if len(defaulted) == len(missing)
        else "load_network cannot rebuild it"
    )
    warnings.warn(
        f"{what} ({type(layer).__name__}): its constructor takes {names}, which the checkpoint "
        f"does not record (not in its params, buffers or config()), so {outcome}; "
        "give the class a config() returning them, e.g. "
        f"{{{', '.join(f'{p.name!r}: self.{p.name}' for p in missing)}}}",
        ArgumentsNotSaved,
        stacklevel=_outside_xpnet(),
    )


def _outside_xpnet() -> int:
    """The ``stacklevel`` at which a warning issued by this function's caller names the
    first frame outside xpnet: the user's line, however deep the layers nest."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("xpnet."):
        frame, level = frame.f_back, level + 1
    return level


def architecture(net: Any) -> dict[str, Any] | None:
    """What rebuilds ``net`` (JSON-serialisable), or None for a plain mapping of arrays."""
    from xpnet.networks import MultiLayerNet, Sequential, TwoLayerNet

    if not isinstance(net, Sequential):
        return None
    if net.last_layer is None:
        raise ValueError(
            "a Sequential without loss= is a stack of layers, not a network: save the network "
            "it is part of, or its parameters alone with save_params(path, dict(stack.params))"
        )
    loss = _spec(net.last_layer, {})
    _warn_of_unrecorded_arguments("the loss", net.last_layer, loss)
    if isinstance(net, MultiLayerNet) and not (net.use_batchnorm or net.use_dropout):
        arch = {
            "class": "MultiLayerNet",
            "sizes": list(net.sizes),
            "activation": net.activation,
            "dtype": net.dtype,
            "weight_decay": float(net.weight_decay),
        }
        if net.output_activation is not None:
            arch["output_activation"] = net.output_activation
        if loss != {"layer": "SoftmaxWithLoss", "config": {"reduction": "mean"}}:
            arch["loss"] = loss
        plain = arch.keys() == _TWO_LAYER_NET_KEYS and arch["activation"] == "relu"
        if type(net) is TwoLayerNet and plain and not net.weight_decay:
            arch["network"] = "TwoLayerNet"  # the subclass, when its constructor builds it
        return arch
    names: dict[int, dict[str, str]] = {}
    for name in net.params:
        layer, attr = net.params.slot(name)
        names.setdefault(id(layer), {})[attr] = name
    specs = [_spec(layer, names, f"layers[{k}]") for k, layer in enumerate(net.layers)]
    arch = {
        "class": "Sequential",
        "layers": specs,
        "loss": loss,
        "dtype": net.dtype,
        "weight_decay": float(net.weight_decay),
    }
    built = _built_by(net)
    if built is not None:
        arch["network"] = built
    return arch


BUILT_NETWORKS = ("MultiLayerNet", "SimpleConvNet")  # rebuilt from their settings
_TWO_LAYER_NET_KEYS = {"class", "sizes", "activation", "dtype", "weight_decay"}


def _built_by(net: Any) -> dict[str, Any] | None:
    """The class of ``net`` and the constructor settings that build its layers again, for a
    MultiLayerNet with BatchNorm or Dropout and a SimpleConvNet (those classes exactly: a
    subclass's constructor may take other settings); None for other networks.
    :func:`load_network` builds such a network when it has the layers the file records."""
    from xpnet.layers import Dropout
    from xpnet.networks import MultiLayerNet, SimpleConvNet

    if type(net) is SimpleConvNet:
        settings = {
            "input_dim": list(net.input_dim),
            "conv_param": dict(net.conv_param),
            "hidden_size": net.sizes[2],
            "output_size": net.sizes[3],
        }
        return {"class": "SimpleConvNet", "settings": settings}
    if type(net) is not MultiLayerNet:
        return None
    settings = {
        "input_size": net.sizes[0],
        "hidden_sizes": net.sizes[1:-1],
        "output_size": net.sizes[-1],
        "activation": net.activation,
        "output_activation": net.output_activation,
        "use_batchnorm": net.use_batchnorm,
        "use_dropout": net.use_dropout,
    }
    dropout = next((layer for layer in net.layers if isinstance(layer, Dropout)), None)
    if dropout is not None:  # the k-th hidden layer's Dropout is seeded with seed + k
        settings["dropout_ratio"] = dropout.dropout_ratio
        settings["seed"] = None if dropout.seed is None else dropout.seed - 1
    return {"class": "MultiLayerNet", "settings": settings}


def _built_again(arch: Mapping[str, Any], dtype: str | None, on: dict[str, Any], where: str) -> Any:
    """The network of class ``arch["network"]`` built from its settings (``on``: its
    ``device`` and ``xp``), when it has the architecture the file records; else None, and
    the file's layers are rebuilt one by one into a :class:`~xpnet.networks.Sequential`."""
    from xpnet import networks

    built = arch.get("network")
    if built is None:
        return None
    cls = getattr(networks, built["class"])
    settings = {**built["settings"], "dtype": dtype or arch["dtype"], **on}
    if cls is networks.MultiLayerNet:
        settings["loss"] = _build(arch["loss"], {}, "the loss", where)
        settings["weight_decay"] = float(arch.get("weight_decay", 0.0))
    try:
        net = cls(**settings)
    except (TypeError, ValueError):  # settings this xpnet no longer takes
        return None
    return net if architecture(net) == {**arch, "dtype": net.dtype} else None


def _buffer_key(k: int, attr: str) -> str:
    """The file's name for buffer ``attr`` of layer ``k``, numbered from 1 in the file
    (``net.layers[k - 1]``); where layers nest, as :func:`_numbered` counts them."""
    return f"{BUFFER_PREFIX}{k}/{attr}"


def _numbered(net: Any) -> list[tuple[int, str, Any]]:
    """``(number, path, layer)`` for the layers of ``net`` and those inside them, numbered
    from 1 in :func:`~xpnet.layers.walk`'s order (the top-level ones alone: 1 to n). A
    stack (a Sequential inside) has no number of its own, its layers are numbered as if
    they stood in its place, as the network names parameters: a flat network's buffers
    load into the network of the same layers in stacks."""
    from xpnet.networks import Sequential

    walked = walk(getattr(net, "layers", ()))
    layers = [(path, layer) for path, layer in walked if not isinstance(layer, Sequential)]
    return [(k, path, layer) for k, (path, layer) in enumerate(layers, 1)]


def _buffer_slots(net: Any) -> dict[str, tuple[Any, str]]:
    """``buffer/<k>/<attr> -> (layer, attr)`` for the layers that have buffers."""
    return {
        _buffer_key(k, attr): (layer, attr)
        for k, _, layer in _numbered(net)
        for attr in getattr(layer, "buffers", ())
    }


def _generator_slots(net: Any) -> dict[str, tuple[str, Any]]:
    """``<layer number> -> (path, layer)`` (numbered as buffers are) for the layers that
    draw with a :class:`~xpnet.backend.DeviceRNG` in ``rng`` (Dropout)."""
    return {
        str(k): (path, layer)
        for k, path, layer in _numbered(net)
        if isinstance(getattr(layer, "rng", None), DeviceRNG)
    }


def _loaded_generators(path: Any, meta: Mapping[str, Any], net: Any) -> list[tuple[Any, DeviceRNG]]:
    """``(layer, generator)`` for each layer of ``net`` that draws with a DeviceRNG: a new one
    in the state the file holds for that layer number (from its seed if none), checked.
    Nothing for a file written before xpnet saved the states: its layers draw on as they
    were."""
    saved = meta.get(GENERATORS_KEY)
    if saved is None:
        return []
    loaded = []
    for k, (where, layer) in _generator_slots(net).items():
        rng = DeviceRNG(layer.rng.seed)
        try:
            rng.load_state_dict(saved.get(k, {}))
        except ValueError as exc:
            raise CheckpointError(f"{os.fspath(path)}: {where}: {exc}") from exc
        loaded.append((layer, rng))
    return loaded


def require_file_name(path: Any) -> None:
    """Refuse, naming its type, a ``path`` that is not a file name (``str`` or
    ``os.PathLike``): an open file or ``io.BytesIO`` cannot be replaced atomically."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"a checkpoint path must be a file name (str or os.PathLike), got "
            f"{type(path).__name__}: checkpoints are files, replaced atomically; to copy a "
            "network in memory, use copy.deepcopy(net)"
        )


def require_not_a_pickle_name(path: str | os.PathLike) -> None:
    """Refuse a checkpoint name ending in ``.pkl`` or ``.pickle`` (the book's
    ``params.pkl``): the file would be an ``.npz`` archive that pickle cannot read."""
    if Path(path).suffix.lower() in (".pkl", ".pickle"):
        raise ValueError(
            f"checkpoint {os.fspath(path)}: xpnet writes .npz archives, never pickles; "
            f"name it {Path(path).with_suffix('.npz')}"
        )


def not_a_checkpoint(path: str | os.PathLike) -> str | None:
    """Why the existing file ``path`` is not an xpnet checkpoint, or None when it is one (an
    ``.npz`` archive holding xpnet's metadata array); its arrays are not read."""
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = {name.removesuffix(".npy") for name in archive.namelist()}
    except zipfile.BadZipFile:
        return "not an .npz archive"
    return _without_metadata(arrays)


def _without_metadata(arrays: Collection[str]) -> str | None:
    """Why an ``.npz`` archive holding the arrays named ``arrays`` is not an xpnet
    checkpoint, or None when xpnet's metadata array is among them."""
    if METADATA_KEY in arrays:
        return None
    return (
        f"an .npz archive without xpnet's {METADATA_KEY} array, which records the format "
        f"({FORMAT!r}) in every file xpnet writes"
    )


def save_params(
    path: str | os.PathLike,
    net_or_params: Any,
    metadata: Mapping[str, Any] | None = None,
    *,
    optimizer: Any = None,
) -> Path:
    """Write a network's (or a ``name -> array`` mapping's) parameters to ``path`` (``.npz``).

    ``metadata`` is any JSON-serialisable mapping (e.g. ``{"epoch": 3}``) without the keys
    ``architecture``, ``optimizer``, ``generators`` and ``format``: the architecture (for a
    network), ``optimizer``'s hyperparameters and state (when given), the layers' random
    generators' states and the format are added.
    Arrays must be numeric (bool, integer, float or complex). The file is replaced
    atomically. Returns the path.

    A network with layers that are not registered (:func:`register_layer`) is saved too:
    :func:`load_params` loads it into a network you build, and :func:`load_network`
    rebuilds it once its layer classes are registered.
    """
    require_file_name(path)
    if Path(path).is_dir():
        raise IsADirectoryError(f"cannot write checkpoint {os.fspath(path)}: it is a directory")
    require_not_a_pickle_name(path)
    params = _params_of(net_or_params)
    arrays = {name: to_numpy(value) for name, value in params.items()}
    for name in arrays:
        if name == METADATA_KEY or name.startswith(_RESERVED):
            raise ValueError(f"parameter name {name!r} is reserved in checkpoints")
    arrays.update(
        {
            key: to_numpy(getattr(layer, attr))
            for key, (layer, attr) in _buffer_slots(net_or_params).items()
        }
    )
    written = {"architecture", "optimizer", GENERATORS_KEY, "format"}
    reserved = sorted(set(metadata or {}) & written)
    if reserved:
        raise ValueError(
            f"metadata key(s) {', '.join(map(repr, reserved))} are written by save_params "
            "itself (the network's architecture, optimizer=, its layers' random generators, "
            "the file format); use other names"
        )
    meta: dict[str, Any] = {**(metadata or {}), "format": FORMAT}
    arch = architecture(net_or_params)
    if arch is not None:
        meta["architecture"] = arch
    generators = {
        k: layer.rng.state_dict() for k, (_, layer) in _generator_slots(net_or_params).items()
    }
    if generators:
        meta[GENERATORS_KEY] = generators
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = {**optimizer.config(), "iterations": state["iterations"]}
        if "steps" in state:  # Adam's, each parameter's updates
            meta["optimizer"]["steps"] = state["steps"]
        for buffer, slot in state["buffers"].items():
            for name, value in slot.items():
                arrays[f"{OPTIMIZER_PREFIX}{buffer}/{name}"] = to_numpy(value)
    _check_numeric(arrays)
    try:
        text = json.dumps(meta, allow_nan=True)
    except TypeError as exc:
        raise ValueError(
            f"checkpoint metadata must be JSON-serialisable: {_unserialisable(meta) or exc} "
            "(convert NumPy scalars and arrays with float(), int() or .tolist())"
        ) from exc
    arrays[METADATA_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    with atomic_file(path) as f:
        np.savez(f, **arrays)
    return Path(path)


def _unserialisable(value: Any, where: str = "") -> str | None:
    """Where in ``value`` (dicts and lists) the first value JSON cannot write sits, and what
    it is: ``architecture.layers[2].config.beta is float32 1.5`` (None when nowhere)."""
    if isinstance(value, Mapping):
        items = [(f"{where}.{key}" if where else str(key), v) for key, v in value.items()]
    elif isinstance(value, list | tuple):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    else:
        try:
            json.dumps(value)
        except TypeError:
            return f"{where} is {type(value).__name__} {value!s:.40}"
        return None
    return next((found for key, v in items if (found := _unserialisable(v, key))), None)


def _check_numeric(arrays: Mapping[str, np.ndarray]) -> None:
    """Refuse arrays that :func:`load_params` could not read back (``object`` needs pickle)."""
    for key, value in arrays.items():
        if value.dtype.kind not in "biufc":
            raise ValueError(
                f"cannot save {key!r} in a checkpoint: its dtype {value.dtype} is not numeric"
            )


def _members(name: str, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by array name, from its directory alone (no data read): a
    member that is not a ``.npy`` or two of one name is a :class:`CheckpointError`."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise CheckpointError(
                f"{name}: member {info.filename!r} is not a NumPy array (.npy); xpnet "
                "checkpoints hold nothing else"
            )
        key = info.filename[: -len(".npy")]
        if key in members:
            raise CheckpointError(f"{name}: the archive holds two arrays named {key!r}")
        members[key] = info
    return members


def _header(name: str, f: Any, key: str, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], Any]:
    """The shape and dtype in the ``.npy`` header of array ``key`` (``f``: its member, opened
    at its start), checked: an object dtype (pickle), a malformed header or a shape the
    member's bytes do not fill is a :class:`CheckpointError` naming the file and the array.
    ``f`` is left after the header."""
    if f.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
        raise CheckpointError(f"{name}: array {key!r} is not a NumPy array (.npy)")
    f.seek(0)
    try:
        version = np.lib.format.read_magic(f)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }[version]
        shape, _, dtype = read_header(f)
    except Exception as exc:  # ValueError, SyntaxError, KeyError, tokenize's errors
        raise CheckpointError(
            f"{name}: array {key!r} has a malformed .npy header ({exc!r})"
        ) from exc
    if dtype.hasobject:
        raise CheckpointError(
            f"{name}: array {key!r} holds Python objects, which would need pickle; "
            "xpnet checkpoints never contain pickled data, so it is not loaded"
        )
    needed = math.prod(shape) * dtype.itemsize
    held = info.file_size - f.tell()
    if needed != held:
        raise CheckpointError(
            f"{name}: array {key!r} of shape {shape} and dtype {dtype} needs "
            f"{needed} bytes; the file holds {held}"
        )
    return shape, dtype


def _read_array(name: str, archive: zipfile.ZipFile, key: str, info: zipfile.ZipInfo) -> np.ndarray:
    """Array ``key`` of an ``.npz`` archive, its ``.npy`` header checked (:func:`_header`)
    before its data is read."""
    with archive.open(info) as f:
        _header(name, f, key, info)
        f.seek(0)
        return np.lib.format.read_array(f, allow_pickle=False)


def _shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The shape of each array of a checkpoint (its metadata read and checked already), from
    the ``.npy`` headers alone: no array's data is read."""
    name = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            shapes = {}
            for key, info in _members(name, archive).items():
                with archive.open(info) as f:
                    shapes[key] = _header(name, f, key, info)[0]
    except (OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"cannot read {name} as an xpnet checkpoint (.npz): {exc}") from exc
    return shapes


def _archive(path: str | os.PathLike, wanted: Any) -> dict[str, np.ndarray]:
    """The arrays of a checkpoint whose names ``wanted(name)`` accepts, without pickle, each
    ``.npy`` header checked first (:func:`_read_array`)."""
    name = os.fspath(path)
    fault = not_a_file(path)
    if fault == "no such file":
        raise FileNotFoundError(f"checkpoint {name} does not exist")
    if fault == "a directory":
        raise IsADirectoryError(f"checkpoint {name} is a directory, not a file")
    if fault is not None:  # a pipe would block the read below for ever
        missing = not os.path.exists(path)
        raise (FileNotFoundError if missing else CheckpointError)(
            f"checkpoint {name} is not a file: {fault}"
        )
    with open(path, "rb") as f:  # an unreadable file is a PermissionError, not "not an .npz"
        is_zip = zipfile.is_zipfile(f)
        f.seek(0)
        head = f.read(len(_ZIP_START))
    if not is_zip:
        what = "not an .npz archive"
        if not head:
            what = "an empty file"
        elif head == _ZIP_START:
            what = "an .npz archive cut short: it begins as one, but its end is missing"
        raise CheckpointError(f"{name} is not an xpnet checkpoint ({what})")
    try:
        with zipfile.ZipFile(path) as archive:
            return {
                key: _read_array(name, archive, key, info)
                for key, info in _members(name, archive).items()
                if wanted(key)
            }
    except (OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"cannot read {name} as an xpnet checkpoint (.npz): {exc}") from exc


def _arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a checkpoint whose metadata was read already (:func:`_read`)."""
    return _archive(path, lambda key: key != METADATA_KEY)


def _read(
    path: str | os.PathLike, fields: Mapping[str, Field] | None = None, *, arrays: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays (none unless ``arrays``) and the metadata of a checkpoint, without pickle;
    the metadata checked (:func:`_check_metadata`, with the caller's ``fields``)."""
    require_file_name(path)
    name = os.fspath(path)
    read = _archive(path, lambda key: arrays or key == METADATA_KEY)
    missing = _without_metadata(read)
    if missing:
        raise CheckpointError(f"{name} is not an xpnet checkpoint ({missing})")
    try:
        meta = json.loads(read.pop(METADATA_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{name}: the checkpoint metadata is not JSON: {exc}") from exc
    _check_metadata(name, meta, fields)
    return read, meta


def read_metadata(
    path: str | os.PathLike, fields: Mapping[str, Field] | None = None
) -> dict[str, Any]:
    """The JSON metadata of a checkpoint (architecture, optimizer, epoch, ...), read without
    reading its arrays.

    The fields the library uses are checked, and ``fields`` too: what the caller's own
    metadata must hold (a :class:`Field` per name). A malformed one is a
    :class:`CheckpointError` naming the file and the field.
    """
    return _read(path, fields, arrays=False)[1]


def _check(path: Any, stored: Mapping[str, np.ndarray], params: Mapping[str, Any], what: str):
    problems = []
    missing = [n for n in params if n not in stored]
    extra = [n for n in stored if n not in params]
    if missing:
        problems.append(f"missing from the file: {', '.join(missing)}")
    if extra:
        problems.append(f"not in the network: {', '.join(extra)}")
    for name in params:
        if name not in stored:
            continue
        have, want = stored[name], params[name]
        if tuple(have.shape) != tuple(want.shape):
            problems.append(
                f"{name} has shape {tuple(have.shape)} in the file but "
                f"{tuple(want.shape)} in the network"
            )
        want_dtype = dtype_name(want)
        if have.dtype.name != want_dtype:
            problems.append(
                f"{name} has dtype {have.dtype.name} in the file but {want_dtype} in the network"
            )
    if problems:
        raise ValueError(
            f"{what} in {os.fspath(path)} do not match the network: " + "; ".join(problems)
        )


def load_params(path: str | os.PathLike, net: Any, *, optimizer: Any = None) -> dict[str, Any]:
    """Load parameters from ``path`` into ``net`` (a network or a ``name -> array`` mapping).

    Names, shapes and dtypes must match exactly, else ``ValueError`` lists every
    difference. Arrays move to the namespace and device of the network's parameters.
    With ``optimizer``, its state (iterations and buffers) is restored too: the file must
    hold state for an optimizer of the same name, with the optimizer's buffers, for the
    network's parameters. Everything is checked before anything is assigned, so on any
    error ``net`` and ``optimizer`` are left unchanged. The layers that draw random numbers
    (Dropout) go on from the generator states in the file, by layer number (from their
    seed where it has none for them; as they were for a file without any). Returns the
    metadata.

    The optimizer keeps its own hyperparameters (``lr``, ``momentum``, ...), since they are
    the caller's choice (``xpnet train --resume`` takes the file's unless a flag overrides
    them); a :class:`HyperparametersDiffer` warning (a ``UserWarning``) names those that
    differ from the file's. To continue with the file's, build the optimizer from
    ``read_metadata(path)["optimizer"]``.
    """
    arrays, meta = _read(path)
    _load_into(path, arrays, meta, net, optimizer)
    return meta


def _load_into(
    path: Any, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], net: Any, optimizer: Any
) -> None:
    """:func:`load_params` on a file already read (``arrays``, ``meta``): every array
    checked and converted, the optimizer loaded (which changes nothing if it refuses the
    state), and only then the network's arrays replaced."""
    params = _params_of(net)
    stored = {k: v for k, v in arrays.items() if not k.startswith(_RESERVED)}
    _check(path, stored, params, "parameters")
    slots = _buffer_slots(net)
    buffers = {key: getattr(layer, attr) for key, (layer, attr) in slots.items()}
    stored_buffers = {k: v for k, v in arrays.items() if k.startswith(BUFFER_PREFIX)}
    _check(path, stored_buffers, buffers, "layer buffers")
    # No copy=True: these arrays were read for this load alone, and copies of them held
    # the file's arrays twice at the peak.
    new_params = {name: to_like(stored[name], params[name]) for name in params}
    new_buffers = {key: to_like(stored_buffers[key], buffers[key]) for key in slots}
    generators = _loaded_generators(path, meta, net)
    if optimizer is not None:
        optimizer.load_state_dict(_optimizer_state(path, arrays, meta, params, optimizer))
    for name, value in new_params.items():
        _assign(params, name, value)
    for key, (layer, attr) in slots.items():
        setattr(layer, attr, new_buffers[key])
    for layer, rng in generators:
        layer.rng = rng
    if optimizer is not None:  # last: a warning turned into an error leaves a whole load
        _warn_of_other_hyperparameters(path, meta["optimizer"], optimizer)


def _assign(params: Any, name: str, value: Any) -> None:
    """``params[name]`` takes ``value`` (its shape and dtype, checked), written into the
    parameter's own array as PyTorch's ``load_state_dict`` copies: the array keeps its
    64-byte alignment (:func:`xpnet.backend.to_device`; the file's arrays have NumPy's 16)
    and whoever holds it sees the loaded values. An array that cannot be written (read-only,
    a PyTorch leaf that requires grad) is replaced instead."""
    try:
        params[name][...] = value
    except (ValueError, TypeError, RuntimeError):
        params[name] = value


def _optimizer_state(
    path: Any, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], params: Any, opt: Any
) -> dict[str, Any]:
    saved = meta.get("optimizer")
    if not saved:
        raise ValueError(f"{os.fspath(path)} holds no optimizer state")
    if saved.get("name") != opt.name:
        raise ValueError(
            f"{os.fspath(path)} holds state for optimizer {saved.get('name')!r}, not {opt.name!r}"
        )
    buffers: dict[str, dict[str, Any]] = {}
    for key, value in arrays.items():
        if not key.startswith(OPTIMIZER_PREFIX):
            continue
        buffer, _, name = key[len(OPTIMIZER_PREFIX) :].partition("/")
        if name not in params:
            raise ValueError(f"optimizer state {key} in {os.fspath(path)} names no parameter")
        if buffer not in opt.buffers:
            raise ValueError(
                f"optimizer state {key} in {os.fspath(path)} is for a buffer {buffer!r}, "
                f"which {opt.name} does not have (its buffers: {', '.join(opt.buffers) or 'none'})"
            )
        buffers.setdefault(buffer, {})[name] = value
    held = {name for slot in buffers.values() for name in slot}
    for buffer in opt.buffers:
        lacking = sorted(held - set(buffers.get(buffer, {})))
        if lacking:  # else the optimizer would start that state afresh, without a word
            raise ValueError(
                f"{os.fspath(path)}: optimizer state {buffer!r} is missing for "
                f"{', '.join(lacking)}, whose other state the file holds; {opt.name} keeps "
                f"{', '.join(map(repr, opt.buffers))} for every parameter it has updated"
            )
    for buffer, slot in buffers.items():
        _check(path, slot, {n: params[n] for n in slot}, f"optimizer state {buffer!r}")
        for name in slot:
            slot[name] = to_like(slot[name], params[name])
    state = {"iterations": int(saved.get("iterations", 0)), "buffers": buffers}
    if "steps" in saved:
        unknown = sorted(set(saved["steps"]) - set(params))
        if unknown:
            raise ValueError(
                f"{os.fspath(path)}: optimizer steps name no parameter: {', '.join(unknown)}"
            )
        state["steps"] = saved["steps"]
    return state


class HyperparametersDiffer(UserWarning):
    """:func:`load_params` kept an optimizer's hyperparameters that differ from the file's."""


def _warn_of_other_hyperparameters(path: Any, saved: Mapping[str, Any], opt: Any) -> None:
    """Warn, naming them, when ``opt``'s hyperparameters differ from the ``saved`` ones."""
    own = opt.hyperparameters()
    file = {k: v for k, v in saved.items() if k not in ("name", "iterations", "steps")}
    differing = [
        f"{k} {own.get(k, 'unset')} (file: {file.get(k, 'unset')})"
        for k in {**file, **own}
        if own.get(k) != file.get(k)
    ]
    if differing:
        warnings.warn(
            f"{os.fspath(path)}: loading the optimizer's state, keeping its own "
            f"hyperparameters, which differ from the file's: {', '.join(differing)}",
            HyperparametersDiffer,
            stacklevel=4,
        )


def load_network(
    path: str | os.PathLike,
    *,
    device: Any = None,
    xp: ModuleType | None = None,
    optimizer: Any = None,
    dtype: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Rebuild the network saved in ``path`` (a TwoLayerNet, a MultiLayerNet, a SimpleConvNet,
    or any Sequential whose layers are registered), of the class saved; ``(net, metadata)``.
    ``device`` and ``xp`` pick where it lives, as for :func:`xpnet.backend.to_device`
    (``xp=`` PyTorch's with ``device="cuda:1"``). With ``optimizer``, its state is loaded
    too, as :func:`load_params` loads it. ``dtype`` (``"float32"`` or ``"float64"``, as the
    builders take it; default the file's) converts every floating array of the file,
    parameters, layer buffers and optimizer state, as PyTorch's ``model.double()`` does:
    ``dtype="float64"`` for a tight gradient check of a float32 network (a network in
    memory: ``net.to("float64")``).

    A layer class that is not registered is an :class:`UnregisteredLayer` naming it: register
    it (:func:`register_layer`), or build the network yourself and call ``load_params(path,
    net)``."""
    from xpnet.init import float_dtype
    from xpnet.networks import MultiLayerNet, TwoLayerNet

    wanted = None if dtype is None else float_dtype(dtype, xp)
    _, meta = _read(path, arrays=False)
    arch = meta.get("architecture") or {}
    where = os.fspath(path)
    if arch.get("class") == "MultiLayerNet":
        sizes = [int(n) for n in arch["sizes"]]
        _check_sizes(where, sizes, _shapes(path))  # before building a network of those sizes
        loss = arch.get("loss")
        on = {"dtype": wanted or arch["dtype"], "device": device, "xp": xp}
        if arch.get("network") == "TwoLayerNet" and len(sizes) == 3:
            net = TwoLayerNet(*sizes, **on)
        else:
            net = MultiLayerNet(
                sizes[0],
                sizes[1:-1],
                sizes[-1],
                activation=arch["activation"],
                output_activation=arch.get("output_activation"),
                loss=None if loss is None else _build(loss, {}, "the loss", where),
                weight_decay=float(arch.get("weight_decay", 0.0)),
                **on,
            )
        # Read after building: the network's random weights, drawn on the host, and the
        # file's arrays were held together (+440 MB at the peak for a 160 MB file).
        _load_into(path, _in_dtype(_arrays(path), wanted), meta, net, optimizer)
        return net, meta
    if arch.get("class") != "Sequential":
        raise CheckpointError(
            f"{where} records no network architecture; build the network yourself and call "
            "load_params(path, net)"
        )
    net = _built_again(arch, wanted, {"device": device, "xp": xp}, where)
    if net is not None:  # read after building, as above
        _load_into(path, _in_dtype(_arrays(path), wanted), meta, net, optimizer)
        return net, meta
    from xpnet.backend import to_device
    from xpnet.networks import Sequential

    arrays = _in_dtype(_arrays(path), wanted)

    def array(key: str, layer: str) -> Any:
        if key not in arrays:
            raise CheckpointError(f"{where}: {layer} needs array {key!r}, which is not in the file")
        a = arrays[key]
        return to_device(a, dtype=a.dtype.name, device=device, xp=xp)

    numbers = itertools.count(1)  # as _numbered counts: walk's order, stacks left out

    def layer(spec: Mapping[str, Any], path: str) -> Any:
        cls = _layer_class(spec, path, where)
        k = 0 if issubclass(cls, Sequential) else next(numbers)
        given = {attr: array(name, path) for attr, name in spec.get("params", {}).items()}
        for attr in spec.get("buffers", ()):
            given[attr] = array(_buffer_key(k, attr), path)
        for attr, inner in spec.get("sublayers", {}).items():
            if isinstance(inner, list):
                given[attr] = [layer(s, f"{path}.{attr}[{i}]") for i, s in enumerate(inner)]
            else:
                given[attr] = None if inner is None else layer(inner, f"{path}.{attr}")
        return _construct(cls, spec, given, path, where)

    layers = [layer(spec, f"layers[{k}]") for k, spec in enumerate(arch["layers"])]
    loss = _build(arch["loss"], {}, "the loss", where)
    try:
        net = Sequential(layers, loss=loss, weight_decay=float(arch.get("weight_decay", 0.0)))
    except (TypeError, ValueError) as exc:  # a loss that is not a loss layer, say
        raise CheckpointError(f"{where}: cannot rebuild the network: {exc}") from exc
    for owner, rng in _loaded_generators(path, meta, net):
        owner.rng = rng
    if optimizer is not None:
        _load_optimizer(path, arrays, meta, net.params, optimizer)
    return net, meta


def _in_dtype(arrays: dict[str, np.ndarray], dtype: str | None) -> dict[str, np.ndarray]:
    """``arrays`` with the floating ones in ``dtype`` (all as they are for None)."""
    if dtype is None:
        return arrays
    return {k: a.astype(dtype, copy=False) if a.dtype.kind == "f" else a for k, a in arrays.items()}


def _load_optimizer(
    path: Any, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], params: Any, opt: Any
) -> None:
    """The state of ``opt`` from a file already read, for a network just built from it; the
    warning of other hyperparameters after (:func:`_load_into` splits the two)."""
    opt.load_state_dict(_optimizer_state(path, arrays, meta, params, opt))
    _warn_of_other_hyperparameters(path, meta["optimizer"], opt)


def _check_sizes(where: str, sizes: list[int], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Raise :class:`CheckpointError` unless the weights ``W1``, ``W2``, ... of the file have
    the ``shapes`` (:func:`_shapes`) a MultiLayerNet of ``sizes`` gives them."""
    for k, shape in enumerate(itertools.pairwise(sizes), start=1):
        name = f"W{k}"
        if name not in shapes:
            raise CheckpointError(
                f"{where}: {name} is missing from the file, but the architecture's sizes "
                f"{sizes} need it"
            )
        if tuple(shapes[name]) != shape:
            raise CheckpointError(
                f"{where}: {name} has shape {tuple(shapes[name])} in the file, but the "
                f"architecture's sizes {sizes} make it {shape}"
            )


def _layer_class(spec: Mapping[str, Any], what: str, where: str) -> type:
    """The registered class of layer ``what``'s checkpoint ``spec``; else an
    :class:`UnregisteredLayer` saying how to load it."""
    name = spec.get("layer")
    cls = _class_named(name)
    if cls is None:
        raise UnregisteredLayer(
            f"{where}: {what} is a {name!r}, which is not a registered layer (registered: "
            f"{', '.join(_registry())})",
            "Register the class with xpnet.register_layer before loading, or build the "
            "network yourself and load the parameters into it: "
            f"xpnet.checkpoint.load_params({where!r}, net)",
        )
    return cls


def _construct(
    cls: type, spec: Mapping[str, Any], arrays: Mapping[str, Any], what: str, where: str
) -> Any:
    """Layer ``what`` of class ``cls`` from its checkpoint ``spec`` and its arrays
    (parameters, buffers and inner layers); warns (:class:`ArgumentsNotSaved`) when the
    file names constructor arguments it could not record, now at their defaults."""
    try:
        layer = cls(**arrays, **spec.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{where}: cannot rebuild {what} ({spec.get('layer')}) from its parameters "
            f"{sorted(arrays)} and config {spec.get('config', {})}: {exc}"
        ) from exc
    if spec.get("unrecorded"):
        names = ", ".join(spec["unrecorded"])
        warnings.warn(
            f"{where}: {what} ({spec['layer']}) was saved without its constructor's {names} "
            "(not in its params, buffers or config()), so it is rebuilt with their defaults "
            "and may compute another function than the layer saved; give the class a "
            "config() returning them and save again, or build the network yourself and "
            "call load_params(path, net)",
            ArgumentsNotSaved,
            stacklevel=_outside_xpnet(),
        )
    return layer


def _build(spec: Mapping[str, Any], arrays: Mapping[str, Any], what: str, where: str) -> Any:
    """A layer from its checkpoint ``spec`` and its arrays (parameters and buffers)."""
    return _construct(_layer_class(spec, what, where), spec, arrays, what, where)
