"""The helper scripts' command lines: ``python -m benchmarks.NAME --help`` prints the
script's module docstring, the step helpers take ``[network] [batch]``, and a number out
of its range (a step, a count, a tolerance) is a usage error naming it, not a traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Sequence


def parser(module: str, description: str | None) -> argparse.ArgumentParser:
    """A parser for ``python -m module`` whose help is ``description`` as written."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def number(
    kind: Callable[[str], float], least: float = 0, *, or_equal: bool = False
) -> Callable[[str], float]:
    """An argparse ``type``: ``kind(text)`` (``int`` or ``float``), finite and above ``least``
    (or equal to it with ``or_equal``), else a usage error naming the value and what was
    expected."""
    what = f"{'an integer' if kind is int else 'a number'} {'>=' if or_equal else '>'} {least:g}"

    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (math.isfinite(value) and (value >= least if or_equal else value > least)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return convert


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
