"""``xpnet info``: versions, the selected backend and devices, where data is looked for."""

from __future__ import annotations

import argparse
import os
import sys

from xpnet import backend


def add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, backend and devices")
    p.set_defaults(run=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from xpnet import __version__
    from xpnet.datasets import DATA_ENV_VAR, cache_dir

    info = {"xpnet": __version__, "python": sys.version.split()[0], **backend.describe()}
    if os.environ.get(backend.ENV_VAR) == "":
        info[backend.ENV_VAR] = "(empty: the default, cpu)"
    info["data cache"] = str(cache_dir("mnist").parent)
    info[DATA_ENV_VAR] = os.environ.get(DATA_ENV_VAR, "(not set)")
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key.ljust(width)}  {value}")
    return 0
