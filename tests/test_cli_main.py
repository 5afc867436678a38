"""What every ``xpnet`` subcommand shares in ``xpnet.cli.main``: a pipe closed early
(``... | head``), a network too large for memory, a file-system error, each without a
traceback; and what ``xpnet gradcheck --json`` gives an autograder checking a student's
layer (``--layers-module``): JSON alone on stdout, whatever the layer prints, refuses or
raises."""

import json
import sys

import pytest
from cli_helpers import fake_data, nested_network, save_from_python, xpnet_command

from xpnet import Sequential, checkpoint, networks
from xpnet.cli import main
from xpnet.layers import SoftmaxWithLoss

__all__ = ["fake_data"]  # the fixture this module takes from cli_helpers

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
    assert run(SMALL) == 141  # 128 + SIGPIPE, a shell's status for a process SIGPIPE killed
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv", [["info"], SMALL], ids=["info", "gradcheck"])
def test_a_real_pipe_closed_by_its_reader_exits_141_without_a_traceback(argv):
    # `xpnet info | head -0`: the reader is gone before the first write, as it is
    # before the second line with `head -1`.
    proc = xpnet_command(argv)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""


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


STUDENT_LAYER = """
import numpy as np
import xpnet


@xpnet.register_layer(name="CliTestStudent")
class Student:
    def forward(self, x, train_flg=False):
        print("forward of", x.shape)
        return x

    def backward(self, dout):
        print("backward of", dout.shape)
        {backward}
"""


@pytest.fixture
def student(tmp_path, monkeypatch):
    """``write(backward)``: the ``xpnet gradcheck --checkpoint`` arguments of a network
    784-16-(a student's layer, its backward's body ``backward``, in a module of its own)-10,
    on the synthetic data set; the layer registry is put back after the test."""
    name = "xpnet_cli_student_layer"
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.setattr(checkpoint, "_LAYERS", dict(checkpoint._registry()))

    def write(backward):
        (tmp_path / f"{name}.py").write_text(STUDENT_LAYER.format(backward=backward))
        layer = __import__(name).Student()
        first, _, _, last = nested_network().layers
        net = Sequential([first, layer, last], loss=SoftmaxWithLoss())
        path = save_from_python(tmp_path / "student.npz", net)
        return ["gradcheck", "--checkpoint", str(path), "--dataset", "mnist",
                "--layers-module", name]  # fmt: skip

    yield write
    sys.modules.pop(name, None)


def test_gradcheck_json_sends_what_the_checked_layer_prints_to_stderr(fake_data, student, capsys):
    assert run([*student("return dout"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["passed"]
    assert "forward of (3, 16)\nbackward of (3, 16)\n" in err


@pytest.mark.parametrize(
    "backward, error",
    [
        ("return None", "xpnet gradcheck: error: layers[1] (Student) returned no input gradient"),
        ("return dout[:, :1]", "xpnet gradcheck: error: layers[1] (Student)"),
    ],
)
def test_gradcheck_json_says_what_it_refused_on_stdout_too(
    fake_data, student, capsys, backward, error
):
    assert run([*student(backward), "--json"]) == 2
    out, err = capsys.readouterr()
    line = err.splitlines()[-1]
    assert line.startswith(error)
    assert json.loads(out) == {"error": line, "exit_status": 2}


@pytest.mark.parametrize(
    "backward, raised",
    [
        ("raise RuntimeError('not written yet')", "RuntimeError: not written yet"),
        # NumPy's refusal, in the student's code: not one of xpnet's
        ("return dout @ np.ones((3, 3))", "ValueError: matmul: Input operand 1 has a mismatch"),
    ],
)
@pytest.mark.parametrize("as_json", [True, False])
def test_an_exception_of_the_checked_layer_is_exit_status_3_with_its_traceback(
    fake_data, student, capsys, backward, raised, as_json
):
    assert run([*student(backward), *["--json"] * as_json]) == 3
    out, err = capsys.readouterr()
    assert "Traceback (most recent call last):" in err
    assert 'xpnet_cli_student_layer.py", line 14, in backward' in err
    line = err.splitlines()[-1]
    assert line.startswith(
        f"xpnet gradcheck: error: the check could not run: the network's code raised {raised}"
    )
    if as_json:
        assert json.loads(out) == {"error": line, "exit_status": 3}
    else:
        assert out.splitlines()[-1] == "backward of (3, 16)"  # its prints, no report


@pytest.mark.parametrize("status", [0, 5])
def test_a_checked_layer_that_exits_is_a_check_that_could_not_run(
    fake_data, student, capsys, status
):
    # It exited with its own status: 0 read as PASSED to an autograder.
    assert run([*student(f"raise SystemExit({status})"), "--json"]) == 3
    out, err = capsys.readouterr()
    line = err.splitlines()[-1]
    assert line == (
        "xpnet gradcheck: error: the check could not run: the network's code called "
        f"sys.exit({status})"
    )
    assert json.loads(out) == {"error": line, "exit_status": 3}
