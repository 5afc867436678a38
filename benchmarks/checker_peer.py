"""xpnet's ``check_function`` against ``torch.autograd.gradcheck`` on the same cases.

Each case is a scalar function ``f`` of one array and a hand-derived gradient ``grad``,
written once against the Array API (the namespace taken from the input), run on torch
float64 tensors drawn from a seeded generator. xpnet checks ``check_function(f, x,
grad(x))`` at its defaults (h 1e-5, atol 1e-8 grown with the loss's rounding, rtol
1e-4); torch checks a ``torch.autograd.Function`` whose forward is ``f`` and whose
backward returns ``dout * grad(x)``, with ``gradcheck(..., raise_exception=False)`` at
its defaults (eps 1e-6, atol 1e-5, rtol 1e-3), and again with ``fast_mode=True`` (one
random direction instead of element by element: "torch fast"); xpnet's directional
mode, ``check_function(..., method="directional")`` (3 random directions, the
element-wise check where one disagrees: "xpnet directional"), is its counterpart. A
correct gradient that fails is a false alarm; a wrong one that passes is a miss. PyTorch
is needed (the script says so and exits without it)::

    python -m benchmarks.checker_peer             # every case, 3 seeds
    python -m benchmarks.checker_peer --seeds 1   # the smallest setting
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from benchmarks import _cli
from xpnet import check_function
from xpnet.backend import namespace_of, to_like

Draw = Callable[[np.random.Generator], np.ndarray]


class Case(NamedTuple):
    """A scalar function ``f``, the gradient claimed for it, and how its input is drawn;
    ``correct`` says whether ``grad`` is right (a subgradient at a kink counts)."""

    name: str
    correct: bool
    f: Callable[[Any], Any]
    grad: Callable[[Any], Any]
    draw: Draw


# ------------------------------------------------------------------------ the functions

_weights = np.random.default_rng(12345)
W1, W2 = _weights.standard_normal((4, 6)) / 2, _weights.standard_normal((6, 3)) / 2
SQUARE = _weights.standard_normal((4, 4)) / 2  # not symmetric: its transpose is another
TARGET = _weights.standard_normal(8)
SCALES = 10.0 ** np.linspace(2, 4, 8)  # terms scale * x**2 of about 1e4 to 1e8


def tanh_square(x: Any) -> Any:
    """``sum(tanh(x) * x**2)``, any shape."""
    xp = namespace_of(x)
    return xp.sum(xp.tanh(x) * x**2)


def tanh_square_grad(x: Any) -> Any:
    xp = namespace_of(x)
    t = xp.tanh(x)
    return (1 - t**2) * x**2 + 2 * x * t


def softplus(x: Any) -> Any:
    """``sum(log(1 + exp(x)))``, any shape."""
    xp = namespace_of(x)
    return xp.sum(xp.logaddexp(xp.zeros_like(x), x))


def sigmoid(x: Any) -> Any:
    xp = namespace_of(x)
    return 1 / (1 + xp.exp(-x))


def mlp(x: Any) -> Any:
    """``sum(y**2) / 2`` for ``y = tanh(x @ W1) @ W2``, x (N, 4)."""
    xp = namespace_of(x)
    y = xp.tanh(x @ to_like(W1, x)) @ to_like(W2, x)
    return xp.sum(y**2) / 2


def mlp_grad(x: Any) -> Any:
    xp = namespace_of(x)
    hidden = xp.tanh(x @ to_like(W1, x))
    dy = hidden @ to_like(W2, x)
    dhidden = (dy @ to_like(W2, x).T) * (1 - hidden**2)
    return dhidden @ to_like(W1, x).T


def relu(x: Any) -> Any:
    xp = namespace_of(x)
    return xp.sum(xp.where(x > 0, x, xp.zeros_like(x)))


def relu_grad(x: Any) -> Any:
    xp = namespace_of(x)
    return xp.astype(x > 0, x.dtype)  # 0 at 0, as torch.relu's backward


def absolute(x: Any) -> Any:
    xp = namespace_of(x)
    return xp.sum(xp.abs(x))


def absolute_grad(x: Any) -> Any:
    return namespace_of(x).sign(x)  # 0 at 0, as torch.abs's backward


def pair_max(x: Any) -> Any:
    """``sum(max(x[:, 0], x[:, 1]))``: 2-wide max pooling, x (N, 2)."""
    xp = namespace_of(x)
    return xp.sum(xp.max(x, axis=1))


def pair_max_grad(x: Any) -> Any:
    xp = namespace_of(x)
    first = xp.astype(x[:, 0] >= x[:, 1], x.dtype)  # a tie goes to the first, as argmax
    return xp.stack([first, 1 - first], axis=1)


def large(x: Any) -> Any:
    """``sum(scale * x**2)``, x (8,): scales 1e2..1e4, |x| 10..100 (large_inputs)."""
    return namespace_of(x).sum(to_like(SCALES, x) * x**2)


def large_grad(x: Any) -> Any:
    return 2 * to_like(SCALES, x) * x


def tiny(x: Any) -> Any:
    """``1e-8 * sum(tanh(x) * x**2)``."""
    return 1e-8 * tanh_square(x)


def tiny_grad(x: Any) -> Any:
    return 1e-8 * tanh_square_grad(x)


def in_float32(x: Any) -> Any:
    """``sum(tanh(x) * x**2)`` computed in float32, the result cast back to x's dtype."""
    xp = namespace_of(x)
    return xp.astype(tanh_square(xp.astype(x, xp.float32)), x.dtype)


def square_product(x: Any) -> Any:
    """``sum(tanh(x @ A))``, x and A (4, 4)."""
    xp = namespace_of(x)
    return xp.sum(xp.tanh(x @ to_like(SQUARE, x)))


def square_product_grad(x: Any) -> Any:
    xp = namespace_of(x)
    a = to_like(SQUARE, x)
    return (1 - xp.tanh(x @ a) ** 2) @ a.T


def squared_error(x: Any) -> Any:
    """``sum((x - t)**2)``, x (8,)."""
    return namespace_of(x).sum((x - to_like(TARGET, x)) ** 2)


def squared_error_grad(x: Any) -> Any:
    return 2 * (x - to_like(TARGET, x))


def signed_square(x: Any) -> Any:
    """``sum(x * |x|)``, whose derivative is ``2 |x|``."""
    xp = namespace_of(x)
    return xp.sum(x * xp.abs(x))


def signed_square_grad(x: Any) -> Any:
    return 2 * namespace_of(x).abs(x)


# ------------------------------------------------------------------- the wrong gradients


def scaled(grad: Callable[[Any], Any], factor: float) -> Callable[[Any], Any]:
    return lambda x: factor * grad(x)


def first_element_off(grad: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``grad`` with its first element (in C order) 1.1 times as large."""

    def wrong(x: Any) -> Any:
        g = grad(x)
        first = np.zeros(tuple(g.shape))
        first.flat[0] = 0.1
        return g * to_like(1 + first, g)

    return wrong


def transposed(x: Any) -> Any:
    return square_product_grad(x).T


def without_factor_2(x: Any) -> Any:
    return squared_error_grad(x) / 2


def sign_lost_below_0(x: Any) -> Any:
    return 2 * x  # 2 |x| for x >= 0 only


def zero_at_0(x: Any) -> Any:
    """softplus's gradient, but 0 where x is exactly 0 (a ReLU-style mask kept)."""
    xp = namespace_of(x)
    return xp.where(x == 0, xp.zeros_like(x), sigmoid(x))


def relu_mask_below_0(x: Any) -> Any:
    """ReLU's gradient with the mask ``x > -1e-5``: slope 1 just below the kink."""
    xp = namespace_of(x)
    return xp.astype(x > -1e-5, x.dtype)


# ------------------------------------------------------------------------ the inputs


def normal(*shape: int) -> Draw:
    return lambda rng: rng.standard_normal(shape)


def with_zeros(*shape: int) -> Draw:
    """Normal, a third of the elements exactly 0."""
    return lambda rng: np.where(rng.random(shape) < 1 / 3, 0.0, rng.standard_normal(shape))


def pairs_with_ties(rows: int) -> Draw:
    """(rows, 2), normal, a third of the rows (0, 0): tied maxima."""
    return lambda rng: with_zeros(rows, 1)(rng) * np.ones(2)


def just_below_0(size: int) -> Draw:
    """Normal, a quarter of the elements -3e-6: below ReLU's kink by less than xpnet's h
    (1e-5), more than torch's eps (1e-6)."""
    return lambda rng: np.where(rng.random(size) < 1 / 4, -3e-6, rng.standard_normal(size))


def large_inputs(rng: np.random.Generator) -> np.ndarray:
    return rng.choice([-1.0, 1.0], 8) * 10 ** rng.uniform(1, 2, 8)


CASES = (
    Case("smooth: sum(tanh(x) x^2), 10", True, tanh_square, tanh_square_grad, normal(10)),
    Case("smooth: softplus, 10", True, softplus, sigmoid, normal(10)),
    Case("smooth: MLP loss of its inputs, 5x4", True, mlp, mlp_grad, normal(5, 4)),
    Case("kink: relu, zeros in x", True, relu, relu_grad, with_zeros(10)),
    Case("kink: abs, zeros in x", True, absolute, absolute_grad, with_zeros(10)),
    Case("kink: max over pairs, tied zeros", True, pair_max, pair_max_grad, pairs_with_ties(6)),
    Case("large: terms 1e4..1e8", True, large, large_grad, large_inputs),
    Case("tiny: 1e-8 sum(tanh(x) x^2)", True, tiny, tiny_grad, normal(10)),
    Case("float32 inside", True, in_float32, tanh_square_grad, normal(10)),
    Case("summed loss: softplus, 10,000", True, softplus, sigmoid, normal(10_000)),
    Case("smooth x 1.001", False, tanh_square, scaled(tanh_square_grad, 1.001), normal(10)),
    Case("smooth x 1.01", False, tanh_square, scaled(tanh_square_grad, 1.01), normal(10)),
    Case("smooth x 1.5", False, tanh_square, scaled(tanh_square_grad, 1.5), normal(10)),
    Case("tiny x 1.5", False, tiny, scaled(tiny_grad, 1.5), normal(10)),
    Case("MLP, one element x 1.1", False, mlp, first_element_off(mlp_grad), normal(5, 4)),
    Case("transposed, 4x4", False, square_product, transposed, normal(4, 4)),
    Case("missing factor 2", False, squared_error, without_factor_2, normal(8)),
    Case("sign error for x < 0", False, signed_square, sign_lost_below_0, normal(10)),
    Case("wrong only at x = 0", False, softplus, zero_at_0, with_zeros(10)),
    Case("relu slope 1 at -3e-6", False, relu, relu_mask_below_0, just_below_0(10)),
)


# ------------------------------------------------------------------------ the checkers


def xpnet_passes(case: Case, x: Any) -> bool:
    return check_function(case.f, x, case.grad(x)).passed


def xpnet_directional_passes(case: Case, x: Any) -> bool:
    return check_function(case.f, x, case.grad(x), method="directional").passed


def torch_passes(case: Case, x: Any, fast_mode: bool = False) -> bool:
    import torch

    class Hand(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return case.f(x)

        @staticmethod
        def backward(ctx: Any, dout: Any) -> Any:
            (x,) = ctx.saved_tensors
            return dout * case.grad(x)

    x = x.detach().clone().requires_grad_(True)
    return torch.autograd.gradcheck(Hand.apply, (x,), raise_exception=False, fast_mode=fast_mode)


CHECKERS = {
    "xpnet": xpnet_passes,
    "xpnet directional": xpnet_directional_passes,
    "torch": torch_passes,
    "torch fast": partial(torch_passes, fast_mode=True),
}


class Row(NamedTuple):
    """One case's verdicts over the seeds: how many checks failed, and the seconds taken,
    per checker."""

    case: Case
    failed: dict[str, int]
    seconds: dict[str, float]


def run(cases: Sequence[Case], seeds: int) -> list[Row]:
    import torch

    rows = []
    for i, case in enumerate(cases):
        failed, seconds = dict.fromkeys(CHECKERS, 0), dict.fromkeys(CHECKERS, 0.0)
        inputs = [case.draw(np.random.default_rng([i, seed])) for seed in range(seeds)]
        for seed, x in enumerate([inputs[0], *inputs]):  # the first, untimed: a warm-up
            x = torch.asarray(x, dtype=torch.float64)
            for name, passes in CHECKERS.items():
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch's on float32 inside, xpnet's notes
                    passed = passes(case, x)
                if seed > 0:
                    failed[name] += not passed
                    seconds[name] += time.perf_counter() - start
        rows.append(Row(case, failed, seconds))
    return rows


def report(rows: Sequence[Row], seeds: int) -> str:
    """The table of verdicts and times, per case and in total."""
    width = max(len(r.case.name) for r in rows)
    wide = {name: max(10, len(name)) for name in CHECKERS}  # a column per checker
    failed = "  ".join(f"{name:>{wide[name]}}" for name in CHECKERS)
    ms = "  ".join(f"{name + ' ms':>{wide[name] + 3}}" for name in CHECKERS)
    lines = [
        f"{seeds} seed(s) a case; failed: checks failed of {seeds} (a correct gradient "
        "should fail none, a wrong one all); ms: their time together",
        f"{'case':<{width}}  {'gradient':<8}  {failed}  {ms}",
    ]
    for r in rows:
        kind = "correct" if r.case.correct else "wrong"
        failed = "  ".join(f"{r.failed[name]:>{wide[name]}}" for name in CHECKERS)
        ms = "  ".join(f"{1e3 * r.seconds[name]:>{wide[name] + 3}.1f}" for name in CHECKERS)
        lines.append(f"{r.case.name:<{width}}  {kind:<8}  {failed}  {ms}")
    for name in CHECKERS:
        correct = [r for r in rows if r.case.correct]
        wrong = [r for r in rows if not r.case.correct]
        alarms = sum(r.failed[name] for r in correct)
        misses = sum(seeds - r.failed[name] for r in wrong)
        lines.append(
            f"{name}: false alarms {alarms} of {seeds * len(correct)}, misses {misses} of "
            f"{seeds * len(wrong)}, {sum(r.seconds[name] for r in rows):.1f} s"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``--seeds`` (default 3)."""
    p = _cli.parser("benchmarks.checker_peer", __doc__)
    p.add_argument(
        "--seeds", type=_cli.number(int), default=3, help="inputs drawn per case (default: 3)"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("benchmarks.checker_peer compares with torch.autograd.gradcheck: install torch")
        return 0
    print(f"torch {torch.__version__}, check_function against gradcheck at their defaults")
    print(report(run(CASES, args.seeds), args.seeds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
