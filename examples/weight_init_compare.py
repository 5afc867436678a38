"""The book's weight initialization comparison on MNIST (section 6.2.4,
``weight_init_compare.py``): ``MultiLayerNet(784, [100] * 4, 10)`` (ReLU) with weights of
standard deviation 0.01, Xavier's sqrt(1 / fan_in) and He's sqrt(2 / fan_in).

The three networks (seed 0) see the same random batches (128 digits drawn with
replacement from mnist-5k's 4,000, as the book draws them), each trained by an
``SGD(lr=0.01)`` of its own (the book shares one, which works because SGD keeps no
state). The loss of each batch, after its update, is smoothed with the book's
``smooth_curve``; the script prints each initialization's last smoothed loss and its
accuracy on the 1,000 test digits: with std 0.01 the network does not learn.

    python examples/weight_init_compare.py                       # the book's 2,000 batches
    python examples/weight_init_compare.py --batches 500 --plot weight_init.png
"""

from optimizer_compare import arguments, draw, side_by_side  # the script beside this one

from xpnet import MultiLayerNet
from xpnet.optim import SGD
from xpnet.plotting import plot_format

WEIGHT_INITS = {"std=0.01": 0.01, "Xavier": "sigmoid", "He": "relu"}  # the book's values
MARKERS = {"std=0.01": "o", "Xavier": "s", "He": "D"}


def main(
    batches: int = 2000, batch_size: int = 128, seed: int = 0, plot: str | None = None
) -> dict[str, dict]:
    """Train a network per initialization for ``batches`` batches; return, by the book's
    names, :func:`optimizer_compare.side_by_side`'s results."""
    if plot is not None:
        plot_format(plot)  # a bad suffix, or no matplotlib, before the training
    nets = {
        name: MultiLayerNet(784, [100] * 4, 10, weight_init=init, seed=seed)
        for name, init in WEIGHT_INITS.items()
    }
    optimizers = {name: SGD(lr=0.01) for name in WEIGHT_INITS}
    results = side_by_side(nets, optimizers, batches, batch_size, seed)
    if plot is not None:
        title = f"weight initialization, SGD(lr=0.01): {batches} batches of {batch_size}"
        draw(results, MARKERS, title, 2.5, plot)
    return results


if __name__ == "__main__":
    args = arguments(__doc__)
    main(args.batches, args.batch_size, args.seed, args.plot)
