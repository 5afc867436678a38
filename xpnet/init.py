"""Initial parameters, as ``torch.nn.init``: weights drawn on the host and moved, so that one
seed gives the same layer on every backend and device.

:func:`weight_std` turns a ``weight_init`` (the book's ``weight_init_std``: ``"he"``,
``"xavier"`` or a number) into a standard deviation; :func:`weights_and_bias` draws a
layer's; :func:`float_dtype` reads the builders' ``dtype`` argument. The layers'
``initialized`` constructors (``Affine.initialized(784, 50)``) and the networks use them.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import TYPE_CHECKING, Any

from xpnet.backend import generator, random_normal, require_namespace, to_device
from xpnet.checks import is_finite_at_least, is_real

if TYPE_CHECKING:
    import numpy as np

DTYPES = ("float32", "float64")
WEIGHT_INITS = ("he", "xavier")
BIAS_INITS = ("zero", "uniform")


def float_dtype(dtype: Any, xp: ModuleType | None = None) -> str:
    """The builders' ``dtype`` argument by name (``"float32"``): given as that name, a NumPy
    dtype (``numpy.dtype("float32")``), a type of that name (``numpy.float32``) or, with
    ``xp``, that namespace's own (``xp.float32``: ``torch.float32`` for PyTorch's); anything
    else is a ``ValueError`` naming it, and an ``xp`` that is no namespace a ``TypeError``."""
    if xp is not None:
        require_namespace(xp)
    name = dtype.__name__ if isinstance(dtype, type) else getattr(dtype, "name", dtype)
    if not isinstance(name, str) and xp is not None:  # dtypes are singletons: no cross-library ==
        name = next((n for n in DTYPES if getattr(xp, n, None) is dtype), name)
    if not (isinstance(name, str) and name in DTYPES):
        raise ValueError(
            "dtype must be 'float32' or 'float64' (by name, as a NumPy dtype, as "
            f"numpy.float32 / numpy.float64 or as the xp= namespace's own), got {dtype!r}"
        )
    return name


def require_std(value: Any, argument: str) -> float:
    """``value`` as a float when it is a finite standard deviation >= 0 (0: all-zero
    weights, the book's example of what not to do), else ``ValueError`` naming ``argument``."""
    if not is_finite_at_least(value, 0.0):
        raise ValueError(f"{argument} must be a finite standard deviation >= 0, got {value!r}")
    return float(value)


def weight_std(
    weight_init: str | float, fan_in: int, name: str = "W", argument: str = "weight_init"
) -> float:
    """The standard deviation of weights ``name`` with ``fan_in`` inputs per output (an
    Affine's D_in, a Convolution's C * FH * FW), by ``weight_init`` (the keyword
    ``argument`` that messages name): ``'he'`` (or ``'relu'``) sqrt(2/fan_in), ``'xavier'``
    (or ``'sigmoid'``) sqrt(1/fan_in), in any case, or a number."""
    if is_real(weight_init):
        return require_std(weight_init, argument)
    kind = weight_init.lower() if isinstance(weight_init, str) else weight_init
    if kind in ("he", "relu"):
        return math.sqrt(2.0 / fan_in)
    if kind in ("xavier", "sigmoid"):
        return math.sqrt(1.0 / fan_in)
    raise ValueError(
        f"unknown {argument} {weight_init!r} for {name}: expected 'he' (or 'relu'), "
        "'xavier' (or 'sigmoid'), in any case, or a standard deviation (float)"
    )


def require_bias_init(bias_init: Any) -> None:
    """Raise ``ValueError`` naming ``bias_init`` unless it is one of :data:`BIAS_INITS`."""
    if bias_init not in BIAS_INITS:
        raise ValueError(
            f"unknown bias_init {bias_init!r}: expected one of {', '.join(BIAS_INITS)}"
        )


def weights_and_bias(
    shape: tuple[int, ...],
    fan_in: int,
    outputs: int,
    *,
    weight_init: str | float,
    bias_init: str,
    rng: np.random.Generator | int | None,
    dtype: Any,
    device: Any = None,
    xp: ModuleType | None = None,
) -> tuple[Any, Any]:
    """A layer's ``W`` of ``shape``, with ``fan_in`` inputs per output, and its bias
    (outputs,), drawn from ``rng`` (a seed or a NumPy ``Generator``) on the host
    and moved as :func:`~xpnet.backend.to_device` moves (``dtype`` as :func:`float_dtype`
    reads it, ``device``, ``xp``).

    ``W`` is ``std * N(0, 1)`` with the :func:`weight_std` of ``weight_init`` for
    ``fan_in``; the bias is zeros for ``"zero"``, and uniform in [0, 1) for ``"uniform"``
    (as some course notes draw it), drawn after ``W``.
    """
    require_bias_init(bias_init)
    std = weight_std(weight_init, fan_in)
    gen = generator(rng)
    where = {"dtype": float_dtype(dtype, xp), "device": device, "xp": xp}
    W = random_normal(shape, std=std, rng=gen, **where)
    b = gen.random(outputs) if bias_init == "uniform" else [0.0] * outputs
    return W, to_device(b, **where)


def constant(size: int, value: float, *, dtype: Any, device: Any = None, xp: Any = None) -> Any:
    """``value`` repeated (size,) (BatchNormalization's ``gamma`` ones and ``beta`` zeros)."""
    return to_device([value] * size, dtype=float_dtype(dtype, xp), device=device, xp=xp)
