"""The peer: the same two-layer MLPs (and the book's SimpleConvNet) in PyTorch, with a
hand-written SGD step.

The book's 784-50-10 ReLU network with softmax cross-entropy on integer labels, and the
course notes' 784-100-10 sigmoid network with binary cross-entropy (on the logits,
summed) against 0.01/0.99 target rows. Weights are copied from the xpnet side (host
arrays, or ``backend.to_numpy`` of a network's), so both start from the same point.
The step is autograd for the gradients and an in-place update under ``torch.no_grad``
(no ``torch.optim``), the same work as xpnet's ``net.gradient`` plus ``SGD.update``.
On CUDA the step can also be captured once in a CUDA graph and replayed. Only the
benchmarks import this module (and torch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

PARAM_ORDER = ("W1", "b1", "W2", "b2")


def ieee_float32() -> None:
    """float32 matrix products and convolutions in full float32, as xpnet's on CuPy.

    PyTorch lets cuDNN run float32 convolutions in TF32 by default
    (``torch.backends.cudnn.allow_tf32``: 10-bit mantissas on the tensor cores of an
    A100, H100 or H200; ``SimpleConvNet``'s peer), where xpnet's convolution is CuPy's
    float32 matrix product, never TF32 unless ``CUPY_TF32=1``: a peer in TF32 does less
    precise, faster work. The records' ``torch_tf32`` says what was in force (True where
    ``TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1`` overrides this).
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def torch_device(run_device: str) -> torch.device:
    """The torch device matching xpnet's (``cpu`` or ``cuda:N``)."""
    return torch.device(run_device)


def sum_bce_with_logits(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sigmoid and binary cross-entropy summed over all outputs (the course network's loss)."""
    return F.binary_cross_entropy_with_logits(scores, targets, reduction="sum")


def leaf_tensors(
    params: Mapping[str, np.ndarray], names: Sequence[str], device: torch.device
) -> list[torch.Tensor]:
    """``params[name]`` for each of ``names``, copied to ``device`` as tensors to train."""
    return [
        torch.tensor(np.asarray(params[name]), device=device, requires_grad=True) for name in names
    ]


class TorchMLP:
    """``loss(activation(x @ W1 + b1) @ W2 + b2, target)``.

    By default the book's network: ReLU and softmax cross-entropy on integer labels;
    the course network is ``activation=torch.sigmoid, loss=sum_bce_with_logits``.
    """

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        device: torch.device,
        lr: float,
        *,
        activation: Callable[[torch.Tensor], torch.Tensor] = torch.relu,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    ) -> None:
        self.device, self.lr = device, lr
        self.activation, self.loss_fn = activation, loss
        self.params = self.trained = leaf_tensors(params, PARAM_ORDER, device)

    def loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        W1, b1, W2, b2 = self.params
        return self.loss_fn(self.activation(x @ W1 + b1) @ W2 + b2, target)

    def step(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """One SGD step; returns the loss (before the update) as a 0-D tensor."""
        loss = self.loss(x, target)
        grads = torch.autograd.grad(loss, self.trained)
        with torch.no_grad():
            for p, g in zip(self.trained, grads, strict=True):
                p.sub_(g, alpha=self.lr)
        return loss.detach()


class TorchConvNet:
    """The book's SimpleConvNet: conv (W1, b1), ReLU, 2x2 max pool, Affine, ReLU, Affine,
    softmax cross-entropy on integer labels; the same hand-written SGD step as ``TorchMLP``.
    The ``frozen`` parameters get ``requires_grad_(False)``: autograd skips what only they
    need (the convolution's backward, when it is frozen), and the step updates the others."""

    step = TorchMLP.step

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        device: torch.device,
        lr: float,
        frozen: tuple[str, ...] = (),
    ) -> None:
        self.device, self.lr = device, lr
        names = ("W1", "b1", "W2", "b2", "W3", "b3")
        self.params = leaf_tensors(params, names, device)
        for name, p in zip(names, self.params, strict=True):
            p.requires_grad_(name not in frozen)
        self.trained = [p for p in self.params if p.requires_grad]

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        W1, b1, W2, b2, W3, b3 = self.params
        h = F.max_pool2d(torch.relu(F.conv2d(x, W1, b1)), 2, 2)
        return F.cross_entropy(torch.relu(h.flatten(1) @ W2 + b2) @ W3 + b3, labels)


#: ``TorchMLP`` keywords for the course network.
COURSE = {"activation": torch.sigmoid, "loss": sum_bce_with_logits}


def cuda_graph_step(
    model: TorchMLP, x: torch.Tensor, target: torch.Tensor, warmup: int = 3
) -> Callable[[], torch.Tensor]:
    """The step captured in a CUDA graph; the callable replays it on ``x``/``target``.

    Follows PyTorch's whole-network capture recipe: warm up on a side stream, capture,
    then each replay runs the forward, backward and update kernels as one graph.
    """
    side = torch.cuda.Stream(device=x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            model.step(x, target)
    torch.cuda.current_stream(x.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = model.step(x, target)

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


def as_float_tensors(
    x: np.ndarray, targets: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 inputs and float32 target rows on ``device``."""
    return tuple(torch.tensor(np.asarray(a, dtype=np.float32), device=device) for a in (x, targets))
