"""The sigmoid neuron of the CS231n backprop notes, node by node.

f(w, x) = 1 / (1 + exp(-(w0*x0 + w1*x1 + w2)))  at  w = (2, -3, -3), x = (-1, -2)
gradients: w = (-0.20, -0.39, 0.20), x = (0.39, -0.59)
"""

from xpnet.backend import to_device
from xpnet.layers import Add, Mul, Sigmoid


def main() -> dict[str, float]:
    w0, w1, w2 = 2.0, -3.0, -3.0
    x0, x1 = -1.0, -2.0
    mul0, mul1, add0, add1, sigmoid = Mul(), Mul(), Add(), Add(), Sigmoid()

    dot = add0.forward(mul0.forward(w0, x0), mul1.forward(w1, x1))
    f = sigmoid.forward(to_device(add1.forward(dot, w2), dtype="float64"))

    ddot_plus_bias = sigmoid.backward(1.0)
    ddot, dw2 = add1.backward(ddot_plus_bias)
    dw0x0, dw1x1 = add0.backward(ddot)
    dw0, dx0 = mul0.backward(dw0x0)
    dw1, dx1 = mul1.backward(dw1x1)

    result = {
        "f": f,
        "dw0": dw0,
        "dw1": dw1,
        "dw2": dw2,
        "dx0": dx0,
        "dx1": dx1,
    }
    result = {name: float(value) for name, value in result.items()}
    for name, value in result.items():
        print(f"{name}: {value:.2f}")
    return result


if __name__ == "__main__":
    main()
