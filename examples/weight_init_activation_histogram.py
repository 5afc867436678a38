"""The book's activation histograms (section 6.2.2, ``weight_init_activation_histogram.py``):
1,000 random inputs through five layers of 100 units, and how the activations spread in
each layer for a weight initialization and an activation.

The network is ``MultiLayerNet(100, [100] * 5, 10, activation=..., weight_init=...)``
(seed 0; zero biases, as the book's layers have none); the inputs are standard normal
(seed 0). The script prints each layer's standard deviation of its activations (all
1,000 x 100 values), and ``--plot`` draws their histograms, a panel per layer. The book's
cases:

    python examples/weight_init_activation_histogram.py                        # sigmoid, std 1
    python examples/weight_init_activation_histogram.py --weight-init 0.01     # piled at 0.5
    python examples/weight_init_activation_histogram.py --weight-init xavier
    python examples/weight_init_activation_histogram.py --activation relu --weight-init he
    python examples/weight_init_activation_histogram.py --plot histogram.png
"""

import argparse

import numpy as np

from xpnet import MultiLayerNet
from xpnet.backend import to_device, to_numpy
from xpnet.cli.common import non_negative_int, plot_path, positive_int
from xpnet.files import atomic_file
from xpnet.init import weight_std
from xpnet.layers import Affine
from xpnet.networks import ACTIVATIONS
from xpnet.plotting import plot_format


def activations(net: MultiLayerNet, x) -> list[np.ndarray]:
    """The output of each activation layer of ``net`` for the inputs ``x`` (N, D): host
    arrays (N, units), first layer first."""
    kept = []
    for layer in net:
        x = layer.forward(x)
        if not isinstance(layer, Affine):
            kept.append(to_numpy(x))
    return kept


def main(
    activation: str = "sigmoid",
    weight_init: str | float = 1.0,
    samples: int = 1000,
    units: int = 100,
    layers: int = 5,
    seed: int = 0,
    plot: str | None = None,
) -> list[float]:
    """Print and return the standard deviation of each hidden layer's activations for
    ``samples`` standard normal inputs of ``units`` values."""
    if plot is not None:
        plot_format(plot)  # a bad suffix, or no matplotlib, before the work
    net = MultiLayerNet(
        units, [units] * layers, 10, activation=activation, weight_init=weight_init, seed=seed
    )
    x = to_device(np.random.default_rng(seed).standard_normal((samples, units)), dtype="float32")
    hidden = activations(net, x)
    stds = [float(a.std()) for a in hidden]
    for k, std in enumerate(stds, start=1):
        print(f"layer {k}: std {std:.3g}")
    if plot is not None:
        draw(hidden, f"{activation}, weight init {weight_init}", plot)
    return stds


def draw(hidden: list[np.ndarray], title: str, path: str) -> None:
    """The book's figures 6-10 to 6-14: a histogram of each layer's activations (30 bins
    over the range of them all), into ``path``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3 * len(hidden), 3.5), layout="constrained")
    span = (min(a.min() for a in hidden), max(a.max() for a in hidden))
    axes = fig.subplots(1, len(hidden), sharey=True, squeeze=False)[0]
    for k, (ax, a) in enumerate(zip(axes, hidden, strict=True), start=1):
        ax.hist(a.ravel(), 30, range=span, label=f"std {a.std():.3g}")
        ax.set(title=f"{k}-layer", xlabel="activation")
        ax.legend()
    fig.axes[0].set_ylabel("count")
    fig.suptitle(title)
    with atomic_file(path) as f:
        fig.savefig(f, format=plot_format(path), dpi=100)


def weight_init_arg(text: str) -> str | float:
    """A standard deviation (``0.01``) as a number, a name (``he``, ``xavier``, the book's
    ``relu``, ``sigmoid``) as it is; refused at the command line as MultiLayerNet would."""
    try:
        value: str | float = float(text)
    except ValueError:
        value = text
    try:
        weight_std(value, fan_in=1, name="the weights", argument="--weight-init")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--activation", default="sigmoid", choices=sorted(ACTIVATIONS), help="(default: sigmoid)"
    )
    parser.add_argument(
        "--weight-init",
        type=weight_init_arg,
        default=1.0,
        help="a standard deviation (the book: 1, then 0.01), xavier or he",
    )
    parser.add_argument("--samples", type=positive_int, default=1000, help="random inputs (1,000)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="the weights' and inputs' seed"
    )
    parser.add_argument(
        "--plot", type=plot_path, metavar="PATH", help="draw the histograms into PATH (PNG, SVG)"
    )
    args = parser.parse_args()
    main(args.activation, args.weight_init, args.samples, seed=args.seed, plot=args.plot)
