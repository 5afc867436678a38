"""What the CLI's tests share: ``run`` (main's exit status), a tiny synthetic data set in
place of ``xpnet.datasets`` (``fake_data``), a module of the user's that registers a layer
(``user_layers``), networks saved from Python (``nested_network``, ``save_from_python``), and
``xpnet_command``, the command in a process of its own as a terminal starts it
(``mnist_5k_training``: one at work, for Ctrl-C)."""

import subprocess
import sys
import time
import types

import numpy as np
import pytest

from xpnet import Sequential, backend, checkpoint, datasets
from xpnet.checkpoint import save_params
from xpnet.cli import main
from xpnet.layers import Affine, BatchNormalization, Dropout, ReLU, SoftmaxWithLoss
from xpnet.training import History


def xpnet_command(argv, **kwargs):
    """``python -m xpnet argv`` in a process group of its own, as a terminal starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "xpnet", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )


# Epochs of 4,000 single-sample steps, 0.24 s each on an idle core.
# Epochs of 0.3-0.7 s on a 2-core machine: a second Ctrl-C sent as soon as the first is
# answered lands in the epoch the first one named.
ONE_SAMPLE_STEPS = ["train", "--dataset", "mnist-5k", "--batch-size", "1", "--lr", "0.01",
                    "--hidden", "100"]  # fmt: skip


def mnist_5k_training(argv):
    """``xpnet train ONE_SAMPLE_STEPS argv`` at work: its process, in the second epoch."""
    try:
        datasets.mnist_5k_path()
    except FileNotFoundError as exc:
        pytest.skip(f"mnist-5k is not available: {exc}")
    proc = xpnet_command([*ONE_SAMPLE_STEPS, *argv])
    first = next((line for line in proc.stdout if line.startswith("epoch 1/")), None)
    if first is None:
        proc.kill()
        pytest.fail(f"no first epoch: {proc.communicate()}")
    # The line is printed just before the epoch's callback: a signal sent as soon as it is
    # read landed there, in 3 runs of 3, and ended the run after epoch 1, not mid-epoch.
    time.sleep(0.1)
    return proc


def run(argv):
    """``main(argv)``'s exit status, whether it returns or exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture
def fake_data(monkeypatch):
    """A tiny learnable 10-class data set (200 train / 50 test, 784 features or 1x28x28
    images) as xpnet.datasets."""
    calls = []

    def load_mnist(normalize=True, flatten=True, one_hot_label=False, *, name="mnist",
                   root=None, device=None, xp=None):  # fmt: skip
        calls.append(name)
        if name == "fashion-mnist":
            raise FileNotFoundError("fashion-mnist not found in /nowhere")
        rng = np.random.default_rng(0)
        labels = np.arange(250) % 10
        x = rng.random((250, 784)) * 0.2
        x[np.arange(250), labels * 78] += 1.0
        if not flatten:  # images, as load_mnist gives them
            x = x.reshape(250, 1, 28, 28)
        x, t = (backend.to_device(x, dtype="float32", device=device),
                backend.to_device(labels, dtype="int64", device=device))  # fmt: skip
        return (x[:200, ...], t[:200]), (x[200:, ...], t[200:])

    module = types.ModuleType("xpnet.datasets")
    module.load_mnist = load_mnist
    module.DATASETS = ("mnist", "fashion-mnist", "mnist-5k")
    monkeypatch.setitem(sys.modules, "xpnet.datasets", module)
    return calls


# A module of the user's that registers a layer made of layers when imported.
USER_LAYERS = '''
import xpnet


@xpnet.register_layer(name="CliTestResidual")
class Residual:
    """out = x + inner(x)"""

    sublayers = ("inner",)

    def __init__(self, inner):
        self.inner = inner

    def forward(self, x, train_flg=False):
        return x + self.inner.forward(x, train_flg)

    def backward(self, dout):
        return dout + self.inner.backward(dout)
'''


@pytest.fixture
def user_layers(tmp_path, monkeypatch):
    """The name of the user's module (USER_LAYERS), importable from ``tmp_path``; the layer
    registry and the imported modules are put back after the test."""
    name = "xpnet_cli_test_layers"
    (tmp_path / f"{name}.py").write_text(USER_LAYERS)
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.setattr(checkpoint, "_LAYERS", dict(checkpoint._registry()))
    yield name
    sys.modules.pop(name, None)


def nested_network(block=None, n_in=784, n_out=10):
    """n_in-16-(a stack: Affine, BatchNorm, ReLU, Dropout, Affine)-n_out with softmax
    cross-entropy, the stack inside ``block(stack)`` when given (a user's residual block)."""

    def affine(fan_in, fan_out, seed):
        W = backend.random_normal((fan_in, fan_out), std=(2 / fan_in) ** 0.5, rng=seed)
        return Affine(W, backend.to_device(np.zeros(fan_out), dtype="float32"))

    ones, zeros = (backend.to_device(np.full(16, v), dtype="float32") for v in (1.0, 0.0))
    stack = Sequential([affine(16, 16, 1), BatchNormalization(ones, zeros), ReLU(),
                        Dropout(0.3, seed=0), affine(16, 16, 2)])  # fmt: skip
    inner = stack if block is None else block(stack)
    return Sequential([affine(n_in, 16, 0), ReLU(), inner, affine(16, n_out, 3)],
                      loss=SoftmaxWithLoss())  # fmt: skip


def save_from_python(path, net, optimizer=None):
    """``net`` saved before its first epoch, as docs/training.md saves one from Python."""
    return save_params(path, net, {"epoch": 0, "history": History().as_dict()}, optimizer=optimizer)
