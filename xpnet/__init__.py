"""xpnet: backpropagation by hand, written once against the Python Array API.

The same layers run on NumPy (CPU), CuPy (CUDA GPU), PyTorch tensors and
``array_api_strict``; ``XPNET_DEVICE`` picks the device (``cpu``, ``cuda``, ``cuda:N``).
"""

from xpnet import (
    backend,
    checkpoint,
    conv,
    datasets,
    gradcheck,
    graph,
    layers,
    optim,
    schedules,
    training,
)
from xpnet.checkpoint import register_layer
from xpnet.gradcheck import (
    DirectionalReport,
    GradientReport,
    check_gradients,
    directional_check,
    net_numerical_gradient,
    numerical_gradient,
)
from xpnet.layercheck import check_function, check_layer
from xpnet.networks import MultiLayerNet, Sequential, SimpleConvNet, TwoLayerNet

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it

__all__ = [
    "DirectionalReport",
    "GradientReport",
    "MultiLayerNet",
    "Sequential",
    "SimpleConvNet",
    "TwoLayerNet",
    "__version__",
    "backend",
    "check_function",
    "check_gradients",
    "check_layer",
    "checkpoint",
    "conv",
    "datasets",
    "directional_check",
    "gradcheck",
    "graph",
    "layers",
    "net_numerical_gradient",
    "numerical_gradient",
    "optim",
    "register_layer",
    "schedules",
    "training",
]
