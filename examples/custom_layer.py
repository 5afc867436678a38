"""Your own layer in xpnet: write forward and backward, check them, train a network with it.

The layer is PReLU (He et al., 2015), a ReLU whose negative side has a learnt slope ``a``
per unit: ``out = x`` where ``x > 0``, else ``a * x``. It is written once against the
Array API (the namespace comes from the inputs), so it runs wherever the data live.

1. ``check_layer`` compares its backward pass with central differences of its forward
   pass, in float64, for the input and for the parameter ``a``;
2. ``Sequential`` puts it between two Affine layers and trains it with Adam on mnist-5k's
   4,000 training digits (tested on the other 1,000);
3. ``register_layer`` lets a checkpoint name it, so ``load_network`` can rebuild the net.
"""

import argparse
import tempfile
from pathlib import Path

import xpnet
from xpnet.backend import namespace_of, random_normal, to_device
from xpnet.checkpoint import load_network, save_params
from xpnet.datasets import load_mnist
from xpnet.layers import Affine, SoftmaxWithLoss
from xpnet.optim import Adam
from xpnet.training import Trainer


@xpnet.register_layer
class PReLU:
    """``out = where(x > 0, x, a * x)`` with a slope ``a`` of shape (D,) for inputs (N, D)."""

    params = ("a",)

    def __init__(self, a):
        self.a = a

    def forward(self, x):
        xp = namespace_of(x, self.a)
        self.x, self.mask = x, x > 0
        return xp.where(self.mask, x, self.a * x)

    def backward(self, dout):
        xp = namespace_of(dout, self.a)
        self.da = xp.sum(xp.where(self.mask, 0.0, dout * self.x), axis=0)
        return xp.where(self.mask, dout, self.a * dout)


def main(epochs: int = 3, seed: int = 0) -> dict[str, float]:
    (x_train, t_train), (x_test, t_test) = load_mnist(name="mnist-5k")

    # 1. Check the layer on a small random batch (float64 copies are made by the check).
    a = to_device([0.25] * 4, dtype="float32")
    x = random_normal((5, 4), rng=seed, dtype="float64")
    report = xpnet.check_layer(PReLU(a), x)
    print(report, end="\n\n")

    # 2. Train 784-100-10 with a PReLU hidden layer (He initialisation, as for ReLU: the
    # default of Affine.initialized; the data need no gradient).
    net = xpnet.Sequential(
        [
            Affine.initialized(784, 100, rng=seed + 1, input_grad=False),
            PReLU(to_device([0.25] * 100, dtype="float32")),
            Affine.initialized(100, 10, rng=seed + 2),
        ],
        loss=SoftmaxWithLoss(),
    )
    print(net, list(net.params))
    history = Trainer(
        net, Adam(lr=0.001), x_train, t_train, x_test, t_test, epochs=epochs, seed=seed
    ).fit()
    print(f"mnist-5k after {epochs} epochs: test accuracy {history.test_acc[-1]:.4f}")

    # 3. Save and rebuild it from the checkpoint (JSON architecture + arrays, no pickle).
    with tempfile.TemporaryDirectory() as folder:
        path = save_params(Path(folder) / "prelu.npz", net)
        rebuilt, _ = load_network(path)
    return {
        "check_passed": report.passed,
        "test_acc": history.test_acc[-1],
        "rebuilt_acc": rebuilt.accuracy(x_test, t_test),
    }


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # --help, and no other argument
    main()
