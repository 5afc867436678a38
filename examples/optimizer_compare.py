"""The book's optimizer comparison on MNIST (section 6.1.8, ``optimizer_compare_mnist.py``):
SGD, Momentum, AdaGrad and Adam, each training its own ``MultiLayerNet(784, [100] * 4, 10)``.

Every network starts from the same weights (seed 0) and sees the same random batches (128
digits drawn with replacement from mnist-5k's 4,000, as the book draws them); each
optimizer has a network of its own, since Momentum, AdaGrad and Adam keep state by
parameter name (``W1``, ...) that two networks would share. The loss of each batch, after
its update, is smoothed with the book's ``smooth_curve``; the script prints each
optimizer's last smoothed loss and its accuracy on the 1,000 test digits.

    python examples/optimizer_compare.py                       # the book's 2,000 batches
    python examples/optimizer_compare.py --batches 500 --plot optimizers.png
"""

import argparse

import numpy as np

from xpnet import MultiLayerNet
from xpnet.backend import take, to_device
from xpnet.cli.common import non_negative_int, plot_path, positive_int
from xpnet.datasets import load_mnist
from xpnet.files import atomic_file
from xpnet.optim import SGD, AdaGrad, Adam, Momentum
from xpnet.plotting import plot_format, smooth_curve

OPTIMIZERS = {"SGD": SGD, "Momentum": Momentum, "AdaGrad": AdaGrad, "Adam": Adam}
MARKERS = {"SGD": "o", "Momentum": "x", "AdaGrad": "s", "Adam": "D"}


def main(
    batches: int = 2000, batch_size: int = 128, seed: int = 0, plot: str | None = None
) -> dict[str, dict]:
    """Train a network per optimizer (its defaults, as the book's) for ``batches`` batches;
    return :func:`side_by_side`'s results by optimizer name."""
    if plot is not None:
        plot_format(plot)  # a bad suffix, or no matplotlib, before the training
    nets = {name: MultiLayerNet(784, [100] * 4, 10, seed=seed) for name in OPTIMIZERS}
    optimizers = {name: make() for name, make in OPTIMIZERS.items()}
    results = side_by_side(nets, optimizers, batches, batch_size, seed)
    if plot is not None:
        title = f"optimizers on mnist-5k: {batches} batches of {batch_size}"
        draw(results, MARKERS, title, 1.0, plot)
    return results


def side_by_side(
    nets: dict[str, MultiLayerNet], optimizers: dict, batches: int, batch_size: int, seed: int
) -> dict[str, dict]:
    """Train each of ``nets`` with the optimizer of its name on the same ``batches`` random
    batches of mnist-5k (``batch_size`` digits drawn with replacement, from ``seed``); print
    and return, by name, ``losses`` (batches,) (each batch's loss after its update),
    ``smoothed_loss`` (the last value of the smoothed curve) and ``test_acc``."""
    (x_train, t_train), (x_test, t_test) = load_mnist(name="mnist-5k")
    losses = {name: [] for name in nets}
    rng = np.random.default_rng(seed)
    for _ in range(batches):
        idx = to_device(rng.choice(x_train.shape[0], batch_size))
        x, t = take(x_train, idx, axis=0), take(t_train, idx, axis=0)
        for name, net in nets.items():
            optimizers[name].update(net.params, net.gradient(x, t))
            losses[name].append(net.loss(x, t))  # 0-D arrays: no wait for a GPU each step
    results = {}
    for name, net in nets.items():
        results[name] = {
            "losses": np.asarray([float(v) for v in losses[name]]),
            "smoothed_loss": float(smooth_curve(losses[name])[-1]),
            "test_acc": float(net.accuracy(x_test, t_test)),
        }
        print(
            f"{name}: smoothed loss {results[name]['smoothed_loss']:.4g}, "
            f"test acc {results[name]['test_acc']:.4f}"
        )
    return results


def draw(results: dict[str, dict], markers: dict[str, str], title: str, top: float, path: str):
    """The book's figure (6-9, 6-15): each network's smoothed loss per batch, from 0 to
    ``top``, into ``path``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for name, result in results.items():
        curve = smooth_curve(result["losses"])
        ax.plot(curve, marker=markers[name], markevery=100, label=name)
    ax.set(xlabel="iterations", ylabel="loss (smoothed)", ylim=(0, top))
    ax.set_title(title)
    ax.legend()
    with atomic_file(path) as f:
        fig.savefig(f, format=plot_format(path), dpi=100)


def arguments(doc: str) -> argparse.Namespace:
    """The command line of this script and of weight_init_compare.py (``doc``: its --help)."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--batches", type=positive_int, default=2000, help="updates (the book: 2,000)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=128, help="digits a batch (128)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="the weights' and batches' seed"
    )
    parser.add_argument(
        "--plot", type=plot_path, metavar="PATH", help="draw the loss curves into PATH (PNG, SVG)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    args = arguments(__doc__)
    main(args.batches, args.batch_size, args.seed, args.plot)
