"""The peers: the same 784-50-10 ReLU MLP (and the book's SimpleConvNet) in PyTorch,
with a hand-written SGD step.

Weights are copied from an xpnet network (``backend.to_numpy``), so both start
from the same point. The step is autograd for the gradients and an in-place update
under ``torch.no_grad`` (no ``torch.optim``), the same work as xpnet's
``net.gradient`` plus ``SGD.update``. On CUDA the step can also be captured once in
a CUDA graph and replayed. Only the benchmarks import this module (and torch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

PARAM_ORDER = ("W1", "b1", "W2", "b2")
CONV_PARAM_ORDER = ("W1", "b1", "W2", "b2", "W3", "b3")


def torch_device(run_device: str) -> torch.device:
    """The torch device matching xpnet's (``cpu`` or ``cuda:N``)."""
    return torch.device(run_device)


class TorchMLP:
    """``relu(x @ W1 + b1) @ W2 + b2`` with softmax cross-entropy on integer labels."""

    names = PARAM_ORDER

    def __init__(self, params: Mapping[str, np.ndarray], device: torch.device, lr: float) -> None:
        self.device, self.lr = device, lr
        self.params = [
            torch.tensor(np.asarray(params[name]), device=device, requires_grad=True)
            for name in self.names
        ]

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        W1, b1, W2, b2 = self.params
        return F.cross_entropy(torch.relu(x @ W1 + b1) @ W2 + b2, labels)

    def step(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One SGD step; returns the loss (before the update) as a 0-D tensor."""
        loss = self.loss(x, labels)
        grads = torch.autograd.grad(loss, self.params)
        with torch.no_grad():
            for p, g in zip(self.params, grads, strict=True):
                p.sub_(g, alpha=self.lr)
        return loss.detach()


class TorchConvNet(TorchMLP):
    """The book's SimpleConvNet: conv (W1, b1), ReLU, 2x2 max pool, Affine, ReLU, Affine."""

    names = CONV_PARAM_ORDER

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        W1, b1, W2, b2, W3, b3 = self.params
        h = F.max_pool2d(torch.relu(F.conv2d(x, W1, b1)), 2, 2)
        h = torch.relu(h.flatten(1) @ W2 + b2)
        return F.cross_entropy(h @ W3 + b3, labels)


def cuda_graph_step(
    model: TorchMLP, x: torch.Tensor, labels: torch.Tensor, warmup: int = 3
) -> Callable[[], torch.Tensor]:
    """The step captured in a CUDA graph; the callable replays it on ``x``/``labels``.

    Follows PyTorch's whole-network capture recipe: warm up on a side stream, capture,
    then each replay runs the forward, backward and update kernels as one graph.
    """
    side = torch.cuda.Stream(device=x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            model.step(x, labels)
    torch.cuda.current_stream(x.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = model.step(x, labels)

    def replay() -> torch.Tensor:
        graph.replay()
        return static_loss

    return replay


def as_tensors(
    x: np.ndarray, t_one_hot: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 inputs and int64 labels (from one-hot rows) on ``device``."""
    x_t = torch.tensor(np.asarray(x, dtype=np.float32), device=device)
    labels = torch.tensor(np.argmax(t_one_hot, axis=1).astype(np.int64), device=device)
    return x_t, labels


def host_params(net: Any) -> dict[str, np.ndarray]:
    """An xpnet network's parameters as NumPy arrays (copied to the host)."""
    from xpnet.backend import to_numpy

    return {name: np.array(to_numpy(p)) for name, p in net.params.items()}
