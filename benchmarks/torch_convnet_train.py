"""The peer for ``xpnet train --model convnet``: the book's SimpleConvNet trained in PyTorch.

Same data (``xpnet.datasets.load_mnist``, the same split), same initial weights (copied
from ``xpnet.SimpleConvNet(seed=...)``), same shuffles (``host_rng(seed).permutation``
per epoch, as ``xpnet.training.Trainer``), Adam, softmax cross-entropy; PyTorch eager on
the CPU. Prints the per-epoch test accuracy and a summary line::

    python -m benchmarks.torch_convnet_train --dataset mnist-5k --seed 0 --epochs 20
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

import xpnet
from benchmarks import _cli
from xpnet.backend import host_rng, to_numpy
from xpnet.datasets import DATASETS, load_mnist


def accuracy(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> float:
    with torch.no_grad():
        hits = sum(
            int((model(x[i : i + 1000]).argmax(1) == t[i : i + 1000]).sum())
            for i in range(0, x.shape[0], 1000)
        )
    return hits / x.shape[0]


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.parser("benchmarks.torch_convnet_train", __doc__)
    parser.add_argument("--dataset", choices=DATASETS, default="mnist-5k")
    parser.add_argument("--seed", type=_cli.number(int, 0, or_equal=True), default=0)
    parser.add_argument("--epochs", type=_cli.number(int), default=20)
    parser.add_argument("--batch-size", type=_cli.number(int), default=100)
    parser.add_argument("--lr", type=_cli.number(float), default=0.001)
    parser.add_argument(
        "--threads", type=_cli.number(int), default=None, help="torch threads (default all)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    (x_train, t_train), (x_test, t_test) = load_mnist(
        name=args.dataset, flatten=False, device="cpu"
    )
    x_train, x_test = (torch.from_numpy(np.array(to_numpy(a))) for a in (x_train, x_test))
    t_train, t_test = (torch.from_numpy(np.array(to_numpy(a))) for a in (t_train, t_test))
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 30, 5),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2, 2),
        torch.nn.Flatten(),
        torch.nn.Linear(4320, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 10),
    )
    start = xpnet.SimpleConvNet(seed=args.seed, device="cpu").params
    with torch.no_grad():  # xpnet's Affine W is (in, out), torch's Linear weight (out, in)
        for layer, (w, b) in zip(
            (model[0], model[4], model[6]), (("W1", "b1"), ("W2", "b2"), ("W3", "b3")), strict=True
        ):
            weight = np.array(to_numpy(start[w]))
            layer.weight.copy_(torch.from_numpy(weight if weight.ndim == 4 else weight.T))
            layer.bias.copy_(torch.from_numpy(np.array(to_numpy(start[b]))))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = host_rng(args.seed)
    n, steps = x_train.shape[0], 0
    began = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = torch.from_numpy(rng.permutation(n))
        for i in range(0, n, args.batch_size):
            idx = order[i : i + args.batch_size]
            optimizer.zero_grad()
            F.cross_entropy(model(x_train[idx]), t_train[idx]).backward()
            optimizer.step()
            steps += 1
        print(f"epoch {epoch}/{args.epochs}  test acc {accuracy(model, x_test, t_test):.4f}")
    seconds = time.perf_counter() - began
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), {args.dataset}, seed "
        f"{args.seed}: train acc {accuracy(model, x_train, t_train):.4f}, test acc "
        f"{accuracy(model, x_test, t_test):.4f}; {steps} steps in {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
