"""A layer made of layers: a residual block, ``out = x + inner(x)`` (He et al., 2016).

The block names the attribute holding its inner layers in ``sublayers``, as a layer names
its arrays in ``params``; its forward and backward call theirs. The network finds the
inner parameters itself (``W2, b2, W3, b3`` below, numbered as in a flat network), so the
optimizer trains them, checkpoints save them and the gradient check checks them.

1. ``check_layer`` compares the block's backward pass with central differences, for its
   input and for every inner parameter;
2. ``check_gradients`` checks a small network with the block, in float64;
3. ``Sequential`` trains 784-100-(block)-10 with Adam on mnist-5k, and ``load_network``
   rebuilds it from its checkpoint (``register_layer``, as for any layer of yours).
"""

import argparse
import tempfile
from pathlib import Path

import xpnet
from xpnet.backend import random_normal
from xpnet.checkpoint import load_network, save_params
from xpnet.datasets import load_mnist
from xpnet.layers import Affine, ReLU, SoftmaxWithLoss
from xpnet.optim import Adam
from xpnet.training import Trainer


@xpnet.register_layer
class Residual:
    """``out = x + inner(x)`` for a layer ``inner`` whose output has its input's shape."""

    sublayers = ("inner",)

    def __init__(self, inner):
        self.inner = inner

    def forward(self, x, train_flg=False):
        return x + self.inner.forward(x, train_flg)

    def backward(self, dout):
        return dout + self.inner.backward(dout)  # the skip path, plus the inner layers'


def network(sizes, seed, dtype="float32"):
    """Affine, ReLU, Residual(Affine, ReLU, Affine), Affine; He initialisation."""
    n_in, hidden, n_out = sizes

    def affine(fan_in, fan_out, k):
        return Affine.initialized(fan_in, fan_out, rng=seed + k, dtype=dtype, input_grad=k > 1)

    block = xpnet.Sequential([affine(hidden, hidden, 2), ReLU(), affine(hidden, hidden, 3)])
    layers = [affine(n_in, hidden, 1), ReLU(), Residual(block), affine(hidden, n_out, 4)]
    return xpnet.Sequential(layers, loss=SoftmaxWithLoss())


def main(epochs: int = 3, seed: int = 0) -> dict[str, float]:
    (x_train, t_train), (x_test, t_test) = load_mnist(name="mnist-5k")

    # 1. The block alone, on a small random batch.
    block = network((4, 4, 4), seed, "float64")[2]
    report = xpnet.check_layer(block, random_normal((5, 4), rng=seed, dtype="float64"))
    print(report, end="\n\n")

    # 2. A small network with the block, every parameter checked.
    small = network((784, 8, 10), seed, "float64")
    checked = xpnet.check_gradients(small, x_train[:3, ...], t_train[:3])
    print(checked, end="\n\n")

    # 3. Train 784-100-(block)-10, then save and rebuild it.
    net = network((784, 100, 10), seed)
    print(net, list(net.params))
    history = Trainer(
        net, Adam(lr=0.001), x_train, t_train, x_test, t_test, epochs=epochs, seed=seed
    ).fit()
    print(f"mnist-5k after {epochs} epochs: test accuracy {history.test_acc[-1]:.4f}")
    with tempfile.TemporaryDirectory() as folder:
        path = save_params(Path(folder) / "residual.npz", net)
        rebuilt, _ = load_network(path)
    return {
        "layer_check_passed": report.passed,
        "network_check_passed": checked.passed,
        "test_acc": history.test_acc[-1],
        "rebuilt_acc": rebuilt.accuracy(x_test, t_test),
    }


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # --help, and no other argument
    main()
