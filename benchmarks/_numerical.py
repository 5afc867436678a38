"""The book's per-element numerical gradient timed on a random subset of a network's
parameters, and extrapolated to all of them: shared by the gradient suites of
TwoLayerNet (``test_gradients``), the conv net (``test_convnet``) and the Dask loop
check (``test_distributed``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from xpnet import bench, gradcheck


def param_count(net: Any) -> int:
    """Elements in all of ``net``'s parameters."""
    return sum(math.prod(p.shape) for p in net.params.values())


def subset_loop(net: Any, x: Any, t: Any, chosen: Mapping[str, Any], h: float) -> dict[str, Any]:
    """The book's loop (``gradcheck.numerical_gradient`` of ``net.loss_at``) over the flat
    indices ``chosen[name]`` of each parameter ``name``."""
    return {
        name: gradcheck.numerical_gradient(
            lambda p, name=name: net.loss_at(name, p, x, t), net.params[name], h, indices=idx
        )
        for name, idx in chosen.items()
    }


def record_extrapolation(timed: bench.Timed, elements: int, total: int) -> float | None:
    """Store ``per_param_s`` (the median time over the ``elements`` timed) and
    ``extrapolated_full_s`` (times ``total``) in the record; return the latter (None when
    the benchmark was not timed)."""
    if timed.median_s is None:
        return None
    per_param = timed.median_s / elements
    timed.benchmark.extra_info.update(per_param_s=per_param, extrapolated_full_s=per_param * total)
    return per_param * total
