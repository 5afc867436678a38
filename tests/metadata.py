"""Editing a checkpoint's JSON metadata in place, for tests of malformed checkpoints."""

import json

import numpy as np

from xpnet.checkpoint import METADATA_KEY

#: Why a Dropout network on CuPy does not draw on as saved: the limitation docs/training.md
#: states, skipped there rather than failed.
CUPY_GENERATORS_NOT_SAVED = (
    "CuPy's generator state stays on the GPU and is not saved (docs/training.md): a loaded "
    "Dropout network draws its masks again from the seed"
)


def rewrite_metadata(path, edit):
    """Replace the metadata of checkpoint ``path`` with ``edit(metadata)`` (as JSON)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = edit(json.loads(arrays.pop(METADATA_KEY).tobytes().decode("utf-8")))
    arrays[METADATA_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    np.savez(path, **arrays)


def parent(meta, field):
    """The object holding the dotted ``field`` of ``meta``, and the field's own name."""
    *parents, key = field.split(".")
    for name in parents:
        meta = meta[name]
    return meta, key


def setting(field, value):
    """An edit setting the dotted ``field`` (``""``: the whole metadata) to ``value``."""

    def edit(meta):
        if not field:
            return value
        node, key = parent(meta, field)
        node[key] = value
        return meta

    return edit


def without(field):
    """An edit removing the dotted ``field``."""

    def edit(meta):
        node, key = parent(meta, field)
        del node[key]
        return meta

    return edit
