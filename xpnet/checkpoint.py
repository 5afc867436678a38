"""Checkpoints: a network's parameters, its architecture and training state in one ``.npz``.

A checkpoint is a NumPy ``.npz`` archive (no pickle anywhere):

- one array per parameter, under its name (``W1``, ``b1``, ...);
- optimizer state, when given, under ``optimizer/<buffer>/<name>`` (``optimizer/v/W1``);
- ``__metadata__``: a ``uint8`` array holding UTF-8 JSON with ``format``, the network's
  ``architecture`` (``sizes``, ``activation``, ``dtype``, ``weight_decay``), the
  ``optimizer`` (name, hyperparameters, ``iterations``) and whatever the caller adds
  (the trainer adds ``epoch`` and ``history``).

Files are written atomically (a temporary file in the target's directory, then
``os.replace``), so a crash never leaves a half-written checkpoint, and read with
``allow_pickle=False``. Loading checks names, shapes and dtypes against the network
and moves the arrays to the network's namespace and device.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from xpnet.backend import namespace_of, to_numpy
from xpnet.files import atomic_file

FORMAT = "xpnet-checkpoint/1"
METADATA_KEY = "__metadata__"
OPTIMIZER_PREFIX = "optimizer/"
_DTYPE_NAMES = (
    "float32", "float64", "float16", "int64", "int32", "int16", "int8",
    "uint64", "uint32", "uint16", "uint8", "bool", "complex64", "complex128",
)  # fmt: skip


def _params_of(net_or_params: Any) -> Mapping[str, Any]:
    return net_or_params.params if hasattr(net_or_params, "params") else net_or_params


def architecture(net: Any) -> dict[str, Any] | None:
    """The constructor settings of a :class:`~xpnet.networks.MultiLayerNet` (else ``None``)."""
    if not all(hasattr(net, a) for a in ("sizes", "activation", "dtype")):
        return None
    return {
        "class": "MultiLayerNet",
        "sizes": list(net.sizes),
        "activation": net.activation,
        "dtype": net.dtype,
        "weight_decay": float(getattr(net, "weight_decay", 0.0)),
    }


def save_params(
    path: str | os.PathLike,
    net_or_params: Any,
    metadata: Mapping[str, Any] | None = None,
    *,
    optimizer: Any = None,
) -> Path:
    """Write a network's (or a ``name -> array`` mapping's) parameters to ``path`` (``.npz``).

    ``metadata`` is any JSON-serialisable mapping (e.g. ``{"epoch": 3}``); the
    architecture (for a network) and ``optimizer``'s hyperparameters and state
    (when given) are added. The file is replaced atomically. Returns the path.
    """
    params = _params_of(net_or_params)
    arrays = {name: to_numpy(value) for name, value in params.items()}
    for name in arrays:
        if name == METADATA_KEY or name.startswith(OPTIMIZER_PREFIX):
            raise ValueError(f"parameter name {name!r} is reserved in checkpoints")
    meta: dict[str, Any] = {**(metadata or {}), "format": FORMAT}
    arch = architecture(net_or_params)
    if arch is not None:
        meta["architecture"] = arch
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = {**optimizer.config(), "iterations": state["iterations"]}
        for buffer, slot in state["buffers"].items():
            for name, value in slot.items():
                arrays[f"{OPTIMIZER_PREFIX}{buffer}/{name}"] = to_numpy(value)
    try:
        text = json.dumps(meta, allow_nan=True)
    except TypeError as exc:
        raise ValueError(f"checkpoint metadata must be JSON-serialisable: {exc}") from exc
    arrays[METADATA_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    with atomic_file(path) as f:
        np.savez(f, **arrays)
    return Path(path)


def _read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All arrays and the metadata of a checkpoint, without pickle."""
    name = os.fspath(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {name} does not exist")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{name} is not an xpnet checkpoint (not an .npz archive)")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                try:
                    arrays[key] = data[key]
                except ValueError as exc:
                    if "pickle" not in str(exc):
                        raise
                    raise ValueError(
                        f"{name}: array {key!r} holds Python objects, which would need pickle; "
                        "xpnet checkpoints never contain pickled data, so it is not loaded"
                    ) from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot read {name} as an xpnet checkpoint (.npz): {exc}") from exc
    raw = arrays.pop(METADATA_KEY, None)
    if raw is None:
        return arrays, {}
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{os.fspath(path)}: the checkpoint metadata is not JSON: {exc}") from exc
    return arrays, meta


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a checkpoint (architecture, optimizer, epoch, ...)."""
    return _read(path)[1]


def _dtype_name(xp: ModuleType, dtype: Any) -> str:
    for name in _DTYPE_NAMES:
        if getattr(xp, name, None) == dtype:
            return name
    return str(dtype)


def _to_like(host: np.ndarray, like: Any) -> Any:
    xp = namespace_of(like)
    return xp.asarray(host, dtype=like.dtype, device=array_api_compat.device(like), copy=True)


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
        want_dtype = _dtype_name(namespace_of(want), want.dtype)
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
    difference and ``net`` is left unchanged. Arrays move to the namespace and device
    of the network's parameters. With ``optimizer``, its state is restored too
    (the file must hold state for an optimizer of the same name). Returns the metadata.
    """
    arrays, meta = _read(path)
    params = _params_of(net)
    stored = {k: v for k, v in arrays.items() if not k.startswith(OPTIMIZER_PREFIX)}
    _check(path, stored, params, "parameters")
    state = None
    if optimizer is not None:
        state = _optimizer_state(path, arrays, meta, params, optimizer)
    for name in list(params):
        params[name] = _to_like(stored[name], params[name])
    if state is not None:
        optimizer.load_state_dict(state)
    return meta


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
        buffers.setdefault(buffer, {})[name] = value
    for buffer, slot in buffers.items():
        _check(path, slot, {n: params[n] for n in slot}, f"optimizer state {buffer!r}")
        for name in slot:
            slot[name] = _to_like(slot[name], params[name])
    return {"iterations": int(saved.get("iterations", 0)), "buffers": buffers}


def load_network(
    path: str | os.PathLike, *, device: str | None = None, xp: ModuleType | None = None
) -> tuple[Any, dict[str, Any]]:
    """Rebuild the :class:`~xpnet.networks.MultiLayerNet` saved in ``path``; ``(net, metadata)``."""
    from xpnet.networks import MultiLayerNet

    meta = read_metadata(path)
    arch = meta.get("architecture")
    if not arch or arch.get("class") != "MultiLayerNet":
        raise ValueError(
            f"{os.fspath(path)} does not record a MultiLayerNet architecture; build the "
            "network yourself and call load_params(path, net)"
        )
    sizes = [int(n) for n in arch["sizes"]]
    net = MultiLayerNet(
        sizes[0],
        sizes[1:-1],
        sizes[-1],
        activation=arch["activation"],
        weight_decay=float(arch.get("weight_decay", 0.0)),
        dtype=arch["dtype"],
        device=device,
        xp=xp,
    )
    load_params(path, net)
    return net, meta
