"""The sigmoid neuron of the CS231n backprop notes, node by node.

f(w, x) = 1 / (1 + exp(-(w0*x0 + w1*x1 + w2)))  at  w = (2, -3, -3), x = (-1, -2)
gradients: w = (-0.20, -0.39, 0.20), x = (0.39, -0.59)

The computation is ``xpnet.graph.sigmoid_neuron``: multiply, add, ×-1, exp, +1 and 1/x
nodes, recorded as they run; draw it with ``xpnet graph sigmoid-neuron -o neuron.png``.
"""

import argparse

from xpnet import graph


def main() -> dict[str, float]:
    run = graph.sigmoid_neuron()
    result = {"f": float(run.output), **{f"d{n}": g for n, g in run.input_gradients().items()}}
    for name, value in result.items():
        print(f"{name}: {value:.2f}")
    return result


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # --help, and no other argument
    main()
