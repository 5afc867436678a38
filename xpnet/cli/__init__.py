"""The ``xpnet`` command line (and ``python -m xpnet``): ``info``, ``gradcheck``, ``train``,
``graph``, one module each; ``network`` holds the network flags ``train``, ``graph`` and
``gradcheck`` share."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from xpnet import backend
from xpnet.cli.common import PIPE_CLOSED, json_error, quiet_stdout
from xpnet.cli.gradcheck import add_gradcheck
from xpnet.cli.graph import add_graph
from xpnet.cli.info import add_info
from xpnet.cli.train import add_train


def build_parser() -> argparse.ArgumentParser:
    from xpnet import __version__

    parser = argparse.ArgumentParser(
        prog="xpnet", description="Backpropagation by hand on NumPy and CuPy."
    )
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_info(sub)
    add_gradcheck(sub)
    add_train(sub)
    add_graph(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # file names as given, as ls prints them
        with contextlib.suppress(AttributeError, ValueError):  # not a TextIOWrapper
            stream.reconfigure(errors="surrogateescape")  # type: ignore[union-attr]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _as_a_line(args.command)
            status = args.run(args)
            sys.stdout.flush()  # here, where a reader gone is caught, not at exit
            return status
    except BrokenPipeError:  # `... | head`: quietly, with the status of a process SIGPIPE killed
        quiet_stdout()
        return PIPE_CLOSED
    except MemoryError as exc:  # a network or batch too large for this machine
        print(f"xpnet {args.command}: error: out of memory: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError, backend.BackendUnavailableError) as exc:
        message = f"xpnet {args.command}: error: {exc}"
        if getattr(args, "json", False):  # gradcheck --json: stdout stays JSON
            json_error(message, 2)
        parser.exit(2, message + "\n")
    except KeyboardInterrupt:  # before or after the work that says what it was doing (train)
        print(f"\nxpnet {args.command}: interrupted", file=sys.stderr)
        return 130


def _as_a_line(command: str) -> Callable[..., None]:
    """``warnings.showwarning`` for the command line: one line on stderr, ``xpnet train:
    warning: ...``, without the library's file, line and source that Python adds."""

    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        print(f"xpnet {command}: warning: {message}", file=sys.stderr)

    return show
