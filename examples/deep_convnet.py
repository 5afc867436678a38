"""The book's DeepConvNet (chapter 8, ``deep_convnet.py``) as a Sequential of xpnet's layers.

    conv - relu - conv - relu - pool -
    conv - relu - conv - relu - pool -
    conv - relu - conv - relu - pool -
    affine - relu - dropout - affine - dropout - softmax

The book's 3x3 filters (16, 16, 32, 32, 64, 64; the fourth padded by 2, so that the 14x14
maps grow to 16x16 and pool evenly down to 4x4) and its He initialisation, std
sqrt(2 / fan_in) with fan_in = C * 3 * 3 for a convolution (``Convolution.initialized``'s
default); biases zero. The network names the parameters W1, b1, ..., W8, b8, as the
book's does.

1. ``check_gradients`` checks a narrow copy (an eighth of the filters, 10 hidden units) in
   float64 at two random images, as chapter 7's ``gradient_check.py`` checks SimpleConvNet.
   The full network checks the same way in minutes. At real digits the zero biases of the
   first convolutions sit on ReLU's kink at every blank pixel, and the report says that
   they went unchecked; random images have no blank pixels;
2. it trains as ``train_deepnet.py`` does (Adam, lr 0.001, batches of 100), on the first
   ``train_samples`` mnist-5k digits, evaluated on the first ``eval_samples`` training and
   test digits, and saves a checkpoint with Adam's state after the first epoch;
3. ``load_network`` rebuilds it from the checkpoint (Dropout's generators too) and
   restores Adam's state, so that training resumes up to ``epochs``;
4. ``xpnet.graph`` records one forward and backward pass: ``graph.write(dot,
   "deep_convnet.svg")`` draws it with Graphviz.
"""

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np

import xpnet
from xpnet import graph
from xpnet.backend import random_normal
from xpnet.checkpoint import load_network, save_params
from xpnet.conv import Convolution, Pooling
from xpnet.datasets import load_mnist
from xpnet.layers import Affine, Dropout, ReLU, SoftmaxWithLoss
from xpnet.optim import Adam
from xpnet.training import History, Trainer

BOOK_CONV_PARAMS = [  # the book's conv_param_1 to conv_param_6; a pooling after every second
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
]


def deep_convnet(
    input_dim=(1, 28, 28),
    conv_params=BOOK_CONV_PARAMS,
    hidden_size=50,
    output_size=10,
    *,
    seed=0,
    dtype="float32",
):
    """The DeepConvNet for images (N, *input_dim); the Affine's input size follows the
    convolutions and poolings (the book writes 64 * 4 * 4)."""
    on = {"rng": np.random.default_rng(seed), "dtype": dtype}  # one Generator, layer by layer
    layers, shape = [], (1, *input_dim)
    for k, p in enumerate(conv_params):
        fn, fs, channels = p["filter_num"], p["filter_size"], shape[1]
        # The first convolution's input is data: no gradient to send it.
        conv = Convolution.initialized(
            channels, fn, fs, p["stride"], p["pad"], input_grad=k > 0, **on
        )
        layers += [conv, ReLU()]
        shape = (1, fn, *xpnet.conv.output_size(shape, fs, fs, p["stride"], p["pad"]))
        if k % 2 == 1:
            layers.append(Pooling(2, 2, stride=2))
            shape = (1, fn, *xpnet.conv.output_size(shape, 2, 2, 2))
    flat = math.prod(shape)
    layers += [
        Affine.initialized(flat, hidden_size, **on),
        ReLU(),
        Dropout(0.5, seed=seed),
        Affine.initialized(hidden_size, output_size, **on),
        Dropout(0.5, seed=seed + 1),
    ]
    return xpnet.Sequential(layers, loss=SoftmaxWithLoss())


def main(
    epochs: int = 2, train_samples: int = 1000, eval_samples: int = 1000, seed: int = 0
) -> dict[str, object]:
    (x_train, t_train), (x_test, t_test) = load_mnist(name="mnist-5k", flatten=False)
    x_train, t_train = x_train[:train_samples, ...], t_train[:train_samples]

    # 1. The gradient check of a narrow copy, at two random images.
    narrow = [{**p, "filter_num": p["filter_num"] // 8} for p in BOOK_CONV_PARAMS]
    small = deep_convnet(conv_params=narrow, hidden_size=10, seed=seed, dtype="float64")
    images = random_normal((2, 1, 28, 28), rng=seed, dtype="float64")
    report = xpnet.check_gradients(small, images, t_train[:2])
    print(report, end="\n\n")

    # 2. One epoch as train_deepnet.py trains, then a checkpoint with Adam's state.
    net, adam = deep_convnet(seed=seed), Adam(lr=0.001)
    print(net)
    data = (x_train, t_train, x_test, t_test)
    settings = {"eval_samples": eval_samples, "verbose": True}
    first = Trainer(net, adam, *data, epochs=1, **settings).fit()
    with tempfile.TemporaryDirectory() as folder:
        path = save_params(
            Path(folder) / "deep_convnet.npz", net, {"history": first.as_dict()}, optimizer=adam
        )

        # 3. Rebuilt from the file, trained on from where it stopped.
        resumed_adam = Adam(lr=0.001)
        resumed, meta = load_network(path, optimizer=resumed_adam)
        rebuilt_acc = resumed.accuracy(x_test[:eval_samples, ...], t_test[:eval_samples])
        history = History.from_dict(meta["history"])
        if epochs > 1:
            Trainer(
                resumed, resumed_adam, *data, epochs=epochs, start_epoch=1, history=history,
                **settings,
            ).fit()  # fmt: skip

    # 4. One forward and backward pass, recorded as xpnet graph draws networks.
    dot = graph.record_network(resumed, x_train[:10, ...], t_train[:10]).dot(title="DeepConvNet")
    return {
        "check_passed": report.passed,
        "first_epoch_acc": first.test_acc[0],
        "rebuilt_acc": rebuilt_acc,
        "history": history,
        "dot": dot,
    }


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # --help, and no other argument
    main()
