"""What every ``xpnet`` subcommand shares in ``xpnet.cli.main``: a pipe closed early
(``... | head``), a network too large for memory, a file-system error, each without a
traceback."""

import sys

import pytest

from xpnet import networks
from xpnet.cli import main

SMALL = ["gradcheck", "--input-size", "4", "--hidden", "3", "--output-size", "2"]


def run(argv):
    """``main(argv)``'s exit status, whether it returns or exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


class ClosedPipe:
    """A stdout whose reader has gone, as after ``xpnet gradcheck | head -1``."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass


def test_a_closed_pipe_ends_the_command_quietly(monkeypatch, capsys):
    # It was "xpnet gradcheck: error: [Errno 32] Broken pipe" and status 2, a usage error.
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert run(SMALL) == 1
    assert capsys.readouterr().err == ""


def test_a_network_too_large_for_memory_is_a_one_line_error(monkeypatch, capsys):
    def too_large(*args, **kwargs):
        raise MemoryError("Unable to allocate 74.5 GiB for an array with shape (100000, 100000)")

    monkeypatch.setattr(networks, "MultiLayerNet", too_large)
    assert run(SMALL) == 1
    assert capsys.readouterr().err == (
        "xpnet gradcheck: error: out of memory: Unable to allocate 74.5 GiB for an array "
        "with shape (100000, 100000)\n"
    )


@pytest.mark.parametrize("errno, text", [(28, "No space left on device"), (5, "I/O error")])
def test_an_os_error_is_a_one_line_error(monkeypatch, capsys, errno, text):
    def failing(*args, **kwargs):
        raise OSError(errno, text)

    monkeypatch.setattr(networks, "MultiLayerNet", failing)
    assert run(SMALL) == 2
    assert capsys.readouterr().err == f"xpnet gradcheck: error: [Errno {errno}] {text}\n"


def test_graph_names_and_formats_are_taken_in_any_case():
    from xpnet.cli import build_parser

    args = build_parser().parse_args(["graph", "Apple", "--format", "SVG"])
    assert (args.name, args.format) == ("apple", "svg")
