"""The directional gradient check's parts: random directions and their report.

A few random unit directions ``v`` of all the parameters together, ``(L(p + h v) - L(p -
h v)) / 2h`` against the analytic ``grad . v`` (:func:`compare_directions`), in the spirit
of PyTorch's ``gradcheck(fast_mode=True)``; :class:`DirectionalReport` a row per
direction. :func:`xpnet.gradcheck.directional_check` runs it on a network, falling back on
the element-wise check that it shares with ``check_gradients``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from xpnet.backend import to_like
from xpnet.gradreport import (
    GradientReport,
    _atol_note,
    _counted,
    _Displayed,
    _floor_note,
    _table,
    _unresolved,
)
from xpnet.kinks import kinks_by_one_sided
from xpnet.tolerance import RETRY, Atol, within_tolerance


@dataclass(frozen=True)
class DirectionCheck:
    """One random direction ``v``: numerical and analytic derivative of the loss along it."""

    numerical: float
    analytic: float
    abs_error: float
    kink: bool | None  # the central difference reaches a ReLU kink (None: not looked for)
    passed: bool
    step: float | None = None  # of the central difference: the report's h, or a smaller one
    retried: bool = False  # failed at h clear of kinks, differenced again at h / RETRY

    @property
    def finite(self) -> bool:
        """Whether both derivatives are finite; one that is inf or nan fails, at a kink too."""
        return math.isfinite(self.numerical) and math.isfinite(self.analytic)


@dataclass(repr=False)
class DirectionalReport(_Displayed):
    """The result of :func:`directional_check`: one :class:`DirectionCheck` per direction.

    It passes when every direction compared passes, there is at least one, and no
    derivative (kinks included) is inf or nan. A direction across a kink is compared when
    it agrees anyway, as :func:`compare` does elements: a float32 check of ReLU networks
    crosses one in nearly every direction. When one compared disagrees, or none is
    compared, ``fallback`` is the element-wise check of the parameters
    (:func:`directional_check`), and it passes when that does and no derivative is inf or
    nan.
    """

    h: float
    atol: float
    rtol: float
    dtype: str
    seed: int
    params: list[str]
    directions: list[DirectionCheck] = field(default_factory=list)
    method: str = "directional"
    notes: list[str] = field(default_factory=list)
    fallback: GradientReport | None = None  # element by element, when directions failed
    unresolved: bool = False  # the atol is as large as every derivative compared

    @property
    def compared(self) -> list[DirectionCheck]:
        """The directions free of kinks, and those across one that agree anyway."""
        return [d for d in self.directions if not d.kink or d.passed]

    @property
    def disagreeing(self) -> list[int]:
        """The indices of the directions compared that fail: free of kinks, and beyond the
        tolerance."""
        return [i for i, d in enumerate(self.directions) if not (d.kink or d.passed)]

    @property
    def passed(self) -> bool:
        finite = all(d.finite for d in self.directions)
        if self.fallback is not None:
            return finite and self.fallback.passed
        compared = self.compared
        return bool(compared) and finite and all(d.passed for d in compared) and not self.unresolved

    @property
    def inconclusive(self) -> bool:
        """Whether every derivative is finite and nothing was tested: every direction
        compared passes within an atol as large as all their derivatives (``unresolved``),
        or the element-wise check it fell back to is inconclusive
        (:attr:`GradientReport.inconclusive`)."""
        if not all(d.finite for d in self.directions):
            return False
        if self.fallback is not None:
            return self.fallback.inconclusive
        return self.unresolved and all(d.passed for d in self.compared)

    def note_atol(self, tol: Atol) -> None:
        """Say what the atol ``tol`` at ``h`` leaves unresolved, as
        :meth:`GradientReport.note_atol` does: why a default atol grew above its floor, and
        ``unresolved`` when it is as large as every numerical derivative compared (a wrong
        gradient would pass as well)."""
        largest = max((abs(d.numerical) for d in self.compared), default=0.0)
        grown = tol.at(self.h) > tol.floor
        if grown:
            self.notes.append(_atol_note(tol, self.h, largest))
        self.unresolved = bool(self.compared) and _unresolved(tol, self.h, largest)
        if self.unresolved and not grown:
            rounding = max(tol.from_loss(self.h), tol.from_noise(self.h))
            what = "every directional derivative compared"
            self.notes.append(_floor_note(self.atol, rounding, what, largest))

    def __bool__(self) -> bool:
        return self.passed

    def as_dict(self) -> dict[str, Any]:
        fallback = None if self.fallback is None else self.fallback.as_dict()
        return {
            **asdict(self),
            "fallback": fallback,
            "passed": self.passed,
            "inconclusive": self.inconclusive,
        }

    def __str__(self) -> str:
        header = ("direction", "numerical", "analytic", "abs err", "result")
        rows = [
            (
                str(i),
                f"{d.numerical:.6e}",
                f"{d.analytic:.6e}",
                f"{d.abs_error:.3e}",
                _direction_result(d),
            )
            for i, d in enumerate(self.directions)
        ]
        lines = [
            f"directional gradient check ({self.dtype}, h={self.h:g}, "
            f"{len(self.directions)} random unit directions over {', '.join(self.params)}, "
            f"seed {self.seed}): (L(p + h v) - L(p - h v)) / 2h against grad . v, "
            f"pass when |analytic - numerical| <= {self.atol:g} + {self.rtol:g} * |numerical|",
            *_table(header, rows),
        ]
        again = [
            i
            for i, d in enumerate(self.directions)
            if d.step not in (None, self.h) and not d.retried
        ]
        if again:
            lines.append(
                f"refined: direction {', '.join(map(str, again))} crossed a kink at "
                f"h={self.h:g} and disagreed; differenced again at "
                f"h={self.directions[again[0]].step:g}"
            )
        retried = [str(i) for i, d in enumerate(self.directions) if d.retried]
        if retried:
            lines.append(
                f"retried: direction {', '.join(retried)} failed at h={self.h:g} clear of kinks; "
                f"differenced again at h={self.h / RETRY:g}, where a truncation error is "
                f"{RETRY**2} times smaller, and compared there with h's atol"
            )
        if not all(d.finite for d in self.directions):
            lines.append(
                "non-finite: a derivative is inf or nan; numerical: the loss overflows or is "
                "undefined at p +- h v (try a smaller h); analytic: backward computed it"
            )
        lines += self.notes
        if self.fallback is not None:  # the element-wise check's table and notes
            lines += ["  " + line for line in str(self.fallback).splitlines()[:-1]]
        lines.append(self.verdict())
        return "\n".join(lines)

    def verdict(self) -> str:
        """The report's last line: PASSED or FAILED; after a fallback, the element-wise
        check's verdict (INCONCLUSIVE too) unless a derivative is not finite."""
        if self.fallback is not None and all(d.finite for d in self.directions):
            return self.fallback.verdict()
        if self.inconclusive:
            return (
                "INCONCLUSIVE (the atol is as large as the directional derivatives: nothing "
                "was resolved)"
            )
        return "PASSED" if self.passed else "FAILED"

    def _summary(self) -> str:
        return (
            f"{self.verdict()}: {_counted(len(self.directions), 'direction')} over "
            f"{_counted(len(self.params), 'param')}, {self.method}, {self.dtype}"
        )


def _direction_result(d: DirectionCheck) -> str:
    if not d.finite:
        return "FAIL (non-finite)"
    if d.kink:
        return "ok (across a kink)" if d.passed else "kink (left out)"
    return "ok" if d.passed else "FAIL"


def require_directions(n_directions: int) -> None:
    if n_directions < 1:
        raise ValueError(f"n_directions must be at least 1, got {n_directions}")


def random_direction(arrays: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """A random direction of unit length over ``arrays`` (name -> array; a direction of
    their shapes, on their devices), drawn on the host."""
    host = {name: rng.standard_normal(tuple(a.shape)) for name, a in arrays.items()}
    norm = math.sqrt(sum(float(np.sum(v * v)) for v in host.values()))
    return {name: to_like(v / norm, arrays[name]) for name, v in host.items()}


def compare_directions(
    along: Callable[[int, float], tuple[float, float, bool]],
    loss_along: Callable[[np.ndarray], float],
    exact: np.ndarray, center: float, h: float, tol: Atol, rtol: float, small: float | None,
) -> list[DirectionCheck]:  # fmt: skip
    """One :class:`DirectionCheck` per random direction ``i``, whose analytic derivative
    is ``exact[i]``: ``along(i, step)`` gives the losses at ``p + step v_i`` and
    ``p - step v_i`` and whether going there crosses a kink that the layers report
    (False where nothing reports kinks); ``loss_along(moves)`` the loss after ``moves[i]``
    along each direction ``i``; ``center`` the loss at ``p``; ``tol`` the atol at each
    step; ``small`` the :func:`refined_step` (None for none)."""
    n = len(exact)
    found = [along(i, h) for i in range(n)]
    plus, minus = (np.array([f[k] for f in found]) for k in (0, 1))
    hooked = np.array([f[2] for f in found])
    steps = np.full(n, h)
    refined, retried = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    failing = ~within_tolerance(exact, (plus - minus) / (2 * h), tol.at(h), rtol)
    # A direction that crosses a kink at h and disagrees is taken again at the smaller
    # step, as check_gradients does elements: a ReLU input merely near 0 is clear there;
    # one that fails clear of kinks, again at h / RETRY, where a truncation error is
    # RETRY**2 times smaller.
    for i in np.flatnonzero(hooked & failing) if small is not None else ():
        plus[i], minus[i], hooked[i] = along(i, small)
        steps[i], refined[i] = small, True
    for i in np.flatnonzero(~hooked & ~refined & failing):
        plus[i], minus[i], hooked[i] = along(i, h / RETRY)
        steps[i], retried[i] = h / RETRY, True
    # Each direction's atol: at its step where refined, else h's (see RETRY).
    atol = np.where(refined, tol.at(small) if small is not None else 0.0, tol.at(h))
    # A kink the layers' hooks do not see (a layer of the user's) shows in the one-sided
    # differences, as in check_gradients, confirmed at half the step (two more passes
    # each), at the step of the direction's central difference.
    one_sided = np.zeros(n, dtype=bool)
    for group in (refined, retried, ~refined & ~retried):
        if group.any():  # one step and one atol a group
            step, group_atol = float(steps[group][0]), float(atol[group][0])
            one_sided |= kinks_by_one_sided(
                loss_along, np.zeros(n), exact, plus, center, minus, step,
                group_atol, rtol, among=~hooked & group,
            )  # fmt: skip
    numeric = (plus - minus) / (2 * steps)
    checks = []
    for i in range(n):
        num, ana = float(numeric[i]), float(exact[i])
        err = abs(num - ana)
        checks.append(
            DirectionCheck(
                numerical=num,
                analytic=ana,
                abs_error=err,
                kink=bool(one_sided[i] or hooked[i]),
                passed=math.isfinite(err) and within_tolerance(ana, num, float(atol[i]), rtol),
                step=float(steps[i]),
                retried=bool(retried[i]),
            )
        )
    return checks


def fell_back_note(
    report: DirectionalReport, unseen_kink: str, what: str = "parameters"
) -> str | None:
    """Why ``report`` needs the element-wise check of its ``what`` (None where it does
    not): a direction compared disagreed (a wrong gradient, or ``unseen_kink``: a kink the
    check did not see), or none was compared; None too where a derivative is not finite,
    which fails whatever the elements say."""
    failed = [str(i) for i in report.disagreeing]
    if (report.compared and not failed) or not all(d.finite for d in report.directions):
        return None
    why = (
        f"direction{'s' * (len(failed) > 1)} {', '.join(failed)} disagreed (a wrong "
        f"gradient, or {unseen_kink})"
        if failed
        else "no direction was compared (every one crossed a kink and disagreed: a ReLU "
        "input of exactly 0, as BatchNorm on one sample or on a feature constant in "
        "the batch, or a zero bias on blank inputs, gives one in every direction)"
    )
    return (
        f"fell back: {why}, so the {what} ({', '.join(report.params)}) were checked element "
        "by element, their elements at kinks reported apart; the verdict is that check's"
    )
