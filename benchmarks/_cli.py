"""The helper scripts' command lines: ``python -m benchmarks.NAME --help`` prints the
script's module docstring, and the step helpers take ``[network] [batch]``."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence


def parser(module: str, description: str | None) -> argparse.ArgumentParser:
    """A parser for ``python -m module`` whose help is ``description`` as written."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def no_arguments(module: str, description: str | None, argv: Sequence[str] | None) -> None:
    """Parse a command line that takes no arguments (``--help`` only)."""
    parser(module, description).parse_args(argv)


def network_and_batch(
    module: str, description: str | None, networks: Iterable[str], argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse ``[network] [batch]`` (default ``course 100``): a step suite's network and a
    batch size >= 1, else a usage error naming it."""
    p = parser(module, description)
    p.add_argument(
        "network", nargs="?", default="course", choices=list(networks),
        help="the step suite's network (default: course)",
    )  # fmt: skip
    p.add_argument("batch", nargs="?", type=int, default=100, help="samples (default: 100)")
    args = p.parse_args(argv)
    if args.batch < 1:
        p.error(f"batch must be >= 1, got {args.batch}")
    return args
