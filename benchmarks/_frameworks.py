"""Who runs a benchmark: the peers' availability on this run, and the records' fields.

Shared by the suites that time xpnet against its peers (``hand-numpy``, ``torch-eager``,
``torch-cudagraph``), with xpnet's own timed step; the PyTorch peer is imported only when
it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from xpnet import backend, opcount
from xpnet.networks import Parameters
from xpnet.optim import SGD


def torch_peer(run_device: tuple[Any, Any, str], framework: str) -> tuple[Any, Any]:
    """``(torch, the peer module)``; skips when PyTorch or the device is missing."""
    if framework == "torch-cudagraph" and not run_device[2].startswith("cuda"):
        pytest.skip("CUDA graphs need a CUDA device (run with XPNET_DEVICE=cuda)")
    torch = pytest.importorskip(
        "torch", reason="PyTorch is not installed (peer benchmarks): pip install torch"
    )
    from benchmarks import _torch_peer

    if run_device[2].startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"this PyTorch build has no CUDA (torch {torch.__version__})")
    _torch_peer.ieee_float32()  # no TF32: the same float32 work as xpnet's
    return torch, _torch_peer


def require_host(run_device: tuple[Any, Any, str]) -> None:
    """The hand-written NumPy peer is a CPU peer: skip it on other devices, with the reason."""
    if run_device[2] != "cpu":
        pytest.skip(
            f"hand-numpy is plain NumPy on the host, not {run_device[2]}: on a GPU the "
            "peers are PyTorch eager and its CUDA graph"
        )


def framework_info(framework: str, run_info: dict, torch: Any = None) -> dict[str, Any]:
    """Who runs the benchmark: framework, library and device."""
    if framework in ("xpnet", "hand-numpy"):
        return {
            "framework": framework,
            "backend": run_info["run_backend"] if framework == "xpnet" else "numpy",
            "device": run_info["run_device"],
        }
    return {
        "framework": framework,
        "backend": "torch",
        "device": run_info["run_device"],
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_tf32": bool(
            torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
        ),
    }


def host_params(net: Any) -> dict[str, np.ndarray]:
    """A network's parameters as host NumPy arrays of their own (a peer's starting point)."""
    return {name: np.array(backend.to_numpy(value)) for name, value in net.params.items()}


def sgd_step(
    net: Any, x: Any, t: Any, lr: float, frozen: tuple[str, ...] = ()
) -> Callable[[], Any]:
    """xpnet's timed step: ``SGD(lr).update(net.params, net.gradient(x, t))``; with
    ``frozen`` parameter names, the step of ``Trainer(frozen=...)``: the gradients of the
    others only (``gradient(params=...)``), and the optimizer given those."""
    opt = SGD(lr)
    if frozen:
        names = [name for name in net.params if name not in frozen]
        trained = Parameters({name: net.params.slot(name) for name in names})

        def step() -> Any:
            opt.update(trained, net.gradient(x, t, params=names))
            return net.params

        return step

    def step() -> Any:
        opt.update(net.params, net.gradient(x, t))
        return net.params

    return step


def step_array_ops(net: Any, x: Any, t: Any, lr: float, frozen: tuple[str, ...] = ()) -> int:
    """Array operations in one :func:`sgd_step` of ``net`` on NumPy ``x``, ``t`` (the layer
    code issues the same on every backend)."""
    ops = opcount.count_operations(
        lambda x, t: sgd_step(net, x, t, lr, frozen)(), x, t, params=net.params
    )
    return ops.array_ops
