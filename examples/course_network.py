"""A gradient checker catching a real mistake: the per-sample network of many course notes.

The notes build 784-100-10 with sigmoid hidden and output layers, say that it minimises
binary cross-entropy summed over the 10 outputs, and train it one sample at a time with a
hand-written NumPy update whose output delta is ``(y - t) * y * (1 - y)``. That delta is
the gradient of half the squared error, ``0.5 * sum((y - t)**2)``, not of the stated loss
(whose delta is ``y - t``): ``check_function`` shows it on a real mnist-5k digit.

The network trains either way (a different loss, not a broken one); in xpnet the two are
``xpnet train --model course`` (the stated loss) and the same with ``--loss mse --lr 0.15``
(the code's update, on the course network's sigmoid output: the sum of squares has twice
the gradient of half of it).
"""

import argparse

import numpy as np

import xpnet
from xpnet.backend import to_numpy
from xpnet.datasets import load_mnist


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def course_gradient(p, x, t):
    """The notes' backward pass as their code writes it (plain NumPy, one sample)."""
    hidden = sigmoid(x @ p["W1"] + p["b1"])
    y = sigmoid(hidden @ p["W2"] + p["b2"])
    delta2 = (y - t) * y * (1 - y)
    delta1 = (delta2 @ p["W2"].T) * hidden * (1 - hidden)
    return {"W1": x.T @ delta1, "b1": delta1.sum(0), "W2": hidden.T @ delta2, "b2": delta2.sum(0)}


def main(hidden: int = 100, seed: int = 0) -> dict[str, object]:
    (x_train, t_train), _ = load_mnist(name="mnist-5k")
    x = to_numpy(x_train[:1, ...]).astype(np.float64) * 0.99 + 0.01  # x / 255 * 0.99 + 0.01
    t = np.full((1, 10), 0.01)
    t[0, int(to_numpy(t_train[:1])[0])] = 0.99
    rng = np.random.default_rng(seed)
    p = {  # the notes' initialisation: randn / sqrt(fan_in / 2), biases uniform in [0, 1)
        "W1": rng.standard_normal((784, hidden)) / np.sqrt(784 / 2),
        "b1": rng.random(hidden),
        "W2": rng.standard_normal((hidden, 10)) / np.sqrt(hidden / 2),
        "b2": rng.random(10),
    }

    def output(q):
        return sigmoid(sigmoid(x @ q["W1"] + q["b1"]) @ q["W2"] + q["b2"])

    def binary_cross_entropy(q):  # the loss the notes state
        y = output(q)
        return -np.sum(t * np.log(y) + (1 - t) * np.log(1 - y))

    def half_squared_error(q):  # the loss their update descends
        return 0.5 * np.sum((output(q) - t) ** 2)

    claimed = course_gradient(p, x, t)
    reports = {}
    for loss in (binary_cross_entropy, half_squared_error):
        reports[loss.__name__] = report = xpnet.check_function(loss, p, claimed)
        print(report, end="\n\n")
    return reports


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # --help, and no other argument
    main()
