"""One fixture, ``xp``, runs a test on every available backend.

- ``numpy``: NumPy through array-api-compat (always);
- ``array_api_strict``: rejects anything outside the standard (always, with the test extra);
- ``cupy``: CuPy on the current CUDA GPU (skipped with the reason when there is none);
- ``torch``: PyTorch CPU tensors (skipped when torch is not installed);
- ``device1``: ``array_api_strict`` whose new arrays live on its second device,
  ``Device("device1")``, which no operation mixes with its default one: as CUDA tensors
  are for PyTorch, where an array made without ``device=`` lands on the CPU.

Tests create arrays with ``to_device(data, dtype=..., xp=xp)`` and compare on the host.
"""

from __future__ import annotations

import importlib
import os
import signal
import tempfile
from collections import Counter
from pathlib import Path

import array_api_compat
import pytest

from xpnet.backend import BackendUnavailableError, namespace
from xpnet.layers import Affine


def _numpy():
    return namespace("cpu")


def _strict():
    return importlib.import_module("array_api_strict")


def _cupy():
    try:
        return namespace("cuda")
    except BackendUnavailableError as exc:
        pytest.skip(f"no CuPy backend here: {exc}")


def _torch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    return array_api_compat.array_namespace(torch.empty(0))


class OnDevice:
    """A namespace whose creation functions put new arrays on ``device`` when given none;
    everything else is ``xp``'s own, so what xpnet does with the arrays' namespace
    (:func:`xpnet.backend.namespace_of`) must pass ``device=`` itself."""

    CREATION = (
        "arange", "asarray", "empty", "eye", "from_dlpack", "full", "linspace", "ones", "zeros",
    )  # fmt: skip

    def __init__(self, xp, device):
        self._xp, self.device = xp, device

    def __getattr__(self, name):
        made = getattr(self._xp, name)
        if name not in self.CREATION:
            return made

        def on_device(*args, device=None, **kwargs):
            return made(*args, device=self.device if device is None else device, **kwargs)

        return on_device


def _device1():
    strict = _strict()
    return OnDevice(strict, strict.Device("device1"))


BACKENDS = {
    "numpy": _numpy,
    "array_api_strict": _strict,
    "cupy": _cupy,
    "torch": _torch,
    "device1": _device1,
}


@pytest.fixture(params=list(BACKENDS))
def xp(request):
    """The Array API namespace of one backend."""
    return BACKENDS[request.param]()


@pytest.fixture(params=["numpy", "array_api_strict"])
def cpu_xp(request):
    """The CPU backends that must always run (for slower tests)."""
    return BACKENDS[request.param]()


@pytest.fixture
def on_the_host(monkeypatch):
    """``XPNET_DEVICE=cpu`` for the test: for tests of what only the host does (Dask, which
    takes NumPy arrays) or that feed NumPy arrays to networks made without ``xp=``, so that
    ``XPNET_DEVICE=cuda pytest`` runs them as they are meant."""
    monkeypatch.setenv("XPNET_DEVICE", "cpu")


@pytest.fixture
def nobodys_tmp_path():
    """An empty folder that user ``nobody`` (``normal_user.raised_as_nobody``) may reach:
    ``tmp_path`` lies in pytest's folder, which only its owner may search, so every path
    in it is refused to him whatever its own mode."""
    with tempfile.TemporaryDirectory() as name:
        os.chmod(name, 0o755)
        yield Path(name)


@pytest.fixture
def read_only_to_this_process(monkeypatch):
    """``read_only_to_this_process(path, writable_checks=0)``: ``os.access`` says ``path``
    cannot be written (after ``writable_checks`` checks that say it can), as a read-only
    file is for any user but root, who runs the tests here. Returns the list of the write
    checks asked of ``path``."""

    def patch(path, writable_checks=0):
        real_access, asked = os.access, []

        def access(p, mode, **kwargs):
            if os.fspath(p) == os.fspath(path) and mode & os.W_OK:
                asked.append(p)
                return len(asked) <= writable_checks
            return real_access(p, mode, **kwargs)

        monkeypatch.setattr(os, "access", access)
        return asked

    return patch


@pytest.fixture
def wrong_gradient_of(monkeypatch):
    """``wrong_gradient_of(cls, grad="dW", factor=1.01)``: ``cls.backward`` stores the
    parameter gradient ``grad`` scaled by ``factor``."""

    def patch(cls, grad="dW", factor=1.01):
        original = cls.backward

        def backward(self, dout):
            dx = original(self, dout)
            setattr(self, grad, getattr(self, grad) * factor)
            return dx

        monkeypatch.setattr(cls, "backward", backward)

    return patch


@pytest.fixture
def wrong_dW(wrong_gradient_of):
    """Affine.backward stores dW scaled by 1.01."""
    wrong_gradient_of(Affine)


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt in this process and in those the test starts, as in a
    terminal. Started in the background (``cmd &`` in a script), pytest had it ignored, which
    the processes it starts inherit: the commands ran on through Ctrl-C, and the caller's
    own workers ignored it as only local:N's should."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The skipped tests counted by reason, a line each, where ``-rs`` (and ``-ra``) lists a
    line per test: about 900 on a machine without a GPU, all saying so."""
    if "s" in config.option.reportchars or "a" in config.option.reportchars:
        return
    reasons = Counter(
        report.longrepr[2].removeprefix("Skipped: ")
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple)
    )
    if reasons:
        terminalreporter.section("skipped, by reason (-rs lists each test)")
        for reason, count in reasons.most_common():
            terminalreporter.write_line(f"{count:5d}  {reason}")
