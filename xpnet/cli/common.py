"""What the subcommands share: argparse number types, one-line errors, Dask's ``--scheduler``,
a standard output whose reader has gone (``| head``)."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from xpnet import backend
from xpnet.files import special_kind, written_path


def _number(convert: Callable[[str], Any], what: str, accept: Callable[[Any], bool]) -> Any:
    """An argparse ``type`` converting with ``convert`` and refusing values ``accept`` rejects."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = _number(int, "a positive integer", lambda v: v >= 1)
non_negative_int = _number(int, "an integer >= 0", lambda v: v >= 0)
positive_float = _number(float, "a positive number", lambda v: 0.0 < v < math.inf)
non_negative_float = _number(float, "a number >= 0", lambda v: 0.0 <= v < math.inf)
ratio = _number(float, "a number in [0, 1)", lambda v: 0.0 <= v < 1.0)


def plot_path(text: str) -> str:
    """An argparse ``type``: a file to draw a plot into, refused before any work when it
    cannot be written (:func:`check_output`), matplotlib is missing or cannot draw its
    suffix (:func:`xpnet.plotting.plot_format`)."""
    from xpnet.plotting import PlottingUnavailableError, plot_format

    problem = check_output("file", text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    try:
        plot_format(text)
    except (PlottingUnavailableError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def module_name(text: str) -> str:
    """An argparse ``type``: a module name to import, ``my_layers`` or ``package.layers``."""
    if text.endswith(".py"):
        raise argparse.ArgumentTypeError(
            f"expected a module name, not a file name: {text[:-3]!r} for {text!r}"
        )
    if not all(part.isidentifier() for part in text.split(".")):
        raise argparse.ArgumentTypeError(
            f"expected a module name (my_layers, package.layers), got {text!r}"
        )
    return text


# --lr-schedule's forms: kind -> (the form, the schedule's class name, its arguments' types).
LR_SCHEDULES = {
    "step": ("step:N[,GAMMA]", "StepLR", (int, float)),
    "multistep": (
        "multistep:M1/M2/...[,GAMMA]",
        "MultiStepLR",
        (lambda text: [int(m) for m in text.split("/")], float),
    ),
    "exp": ("exp:GAMMA", "ExponentialLR", (float,)),
    "cosine": ("cosine:T_MAX[,ETA_MIN]", "CosineAnnealingLR", (int, float)),
}


def schedule_of(spec: str) -> Any:
    """The :mod:`xpnet.schedules` schedule that an ``--lr-schedule`` ``spec`` names
    (``step:10,0.5`` is ``StepLR(10, 0.5)``); a ``ValueError`` naming ``spec`` for another
    form, or for values the schedule refuses."""
    from xpnet import schedules

    kind, _, rest = spec.partition(":")
    form = LR_SCHEDULES.get(kind)
    values = rest.split(",")
    try:
        if form is None or len(values) > len(form[2]):
            raise ValueError
        args = [convert(text) for convert, text in zip(form[2], values, strict=False)]
    except ValueError:
        forms = ", ".join(form for form, _, _ in LR_SCHEDULES.values())
        raise ValueError(f"expected one of {forms} or none, got {spec!r}") from None
    try:
        return getattr(schedules, form[1])(*args)
    except ValueError as exc:
        raise ValueError(f"{spec!r}: {exc}") from None


def lr_schedule(text: str) -> str:
    """An argparse ``type``: an ``--lr-schedule`` spec (:func:`schedule_of`), or ``none``."""
    if text != "none":
        try:
            schedule_of(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# The exit status of a command whose standard output was closed (`| head`): a shell's for a
# process that SIGPIPE killed, as Python, which ignores SIGPIPE, is not.
PIPE_CLOSED = 128 + signal.SIGPIPE


def quiet_stdout() -> None:
    """Point the standard output at /dev/null once its reader has gone, the Python docs'
    recipe ("Note on SIGPIPE"): what is printed after, and the flush at exit, go nowhere
    instead of raising ``BrokenPipeError`` again."""
    with suppress(OSError, ValueError, AttributeError):  # no file descriptor (a test's stream)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class _WatchedStdout:
    """``stream`` (``sys.stdout``), but a write or flush that finds its reader gone calls
    ``on_close`` (once) instead of raising: the stream then writes to /dev/null."""

    def __init__(self, stream: Any, on_close: Callable[[], None]) -> None:
        self.stream, self.on_close, self.reader_gone = stream, on_close, False

    def write(self, text: str) -> int:
        with self._closing():
            self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        with self._closing():
            self.stream.flush()

    @contextmanager
    def _closing(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            quiet_stdout()
            if not self.reader_gone:
                self.reader_gone = True
                self.on_close()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, isatty, ...
        return getattr(self.stream, name)


@contextmanager
def stdout_closed_calls(on_close: Callable[[], None]) -> Iterator[None]:
    """While in it, ``print`` to a standard output whose reader has gone (``| head``) calls
    ``on_close`` once, and nothing more is written to it, instead of ``BrokenPipeError``
    ending the command (``xpnet train`` stops after the epoch and saves). What is still
    buffered is flushed on the way out, through the same test."""
    watched = _WatchedStdout(sys.stdout, on_close)
    sys.stdout = watched
    try:
        yield
        watched.flush()
    finally:
        sys.stdout = watched.stream


def error(message: str, command: str = "train") -> int:
    print(f"xpnet {command}: error: {message}", file=sys.stderr)
    return 2


def json_error(message: str, status: int) -> None:
    """``{"error": message, "exit_status": status}`` on stdout, where ``--json`` reads a report:
    a command that cannot give one still gives JSON."""
    print(json.dumps({"error": message, "exit_status": status}, indent=2), flush=True)


def check_output(option: str, path: str | None) -> str | None:
    """Why ``path`` cannot be written (None when it can), checked before any work: a file
    is created and removed in its directory, as the atomic write will do at the end."""
    if path is None:
        return None
    if not path:
        return f"{option} needs a file name, got an empty one"
    kind = None
    try:
        target = written_path(path)  # beside which atomic_file writes
        kind = special_kind(target.stat().st_mode)
    except FileNotFoundError:
        pass
    except OSError as exc:  # a name too long, a file where a folder should be, ...
        return f"{option} {path}: {exc.strerror}"
    if target.is_dir():
        return f"{option} {path} is a directory"
    if kind:  # the write would put a file in its place (/dev/null, a named pipe)
        return f"{option} {path} is not a regular file ({kind}); name a file"
    if target.exists() and not os.access(target, os.W_OK):
        return f"{option} {path}: the file is read-only"
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        return f"{option} {path}: directory {directory} does not exist"
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        return f"{option} {path}: cannot write in directory {directory} ({exc.strerror})"
    return None


def add_scheduler(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS|local:N",
        help=f"{what}: a running scheduler's address (tcp://host:8786) or local:N to start "
        "N local worker processes (needs Dask: pip install 'dask[distributed]')",
    )


def check_scheduler(args: argparse.Namespace) -> None:
    """Raise unless ``--scheduler`` (when given) can be used: a CPU device, Dask installed
    and an address of a form Dask takes, or ``local:N``.

    Cheap next to starting a cluster, so commands call it before their other work.
    """
    if args.scheduler is None:
        return
    if backend.parse_device(args.device).kind != "cpu":
        raise ValueError("--scheduler runs on NumPy arrays: use it with --device cpu")
    try:
        from xpnet.distributed import check_address  # needs dask and distributed
    except ImportError as exc:
        raise backend.BackendUnavailableError(f"--scheduler: {exc}") from None
    check_address(args.scheduler)


@contextmanager
def cluster(args: argparse.Namespace) -> Iterator[Any]:
    """A Dask client for ``--scheduler`` (None without it), closed at the end; its workers
    are checked (they run this xpnet) before the command's work starts."""
    check_scheduler(args)
    if args.scheduler is None:
        yield None
        return
    from xpnet.distributed import connect, require_workers

    with connect(args.scheduler) as client:
        require_workers(client)
        yield client
