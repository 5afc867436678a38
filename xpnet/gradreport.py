"""The element-wise gradient check's report: a row per parameter, printed as a table.

:class:`ParamCheck` is one parameter's comparison; :class:`GradientReport` the whole
check's, with its notes (tolerances, kinks, what went through the loop), as text, in
IPython and as JSON.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from xpnet.checks import TRANSPOSED_PRODUCT
from xpnet.tolerance import NOISE_MARGIN, RETRY, ROUNDING, Atol


@dataclass(frozen=True)
class ParamCheck:
    """How one parameter's analytic gradient compares with its numerical gradient.

    The error statistics and ``passed`` leave out the ``kinks`` elements (None when
    kinks were not looked for); ``kink_max_abs_error`` is the largest error among
    them and ``kink_elements`` their indices. ``via`` says how the numerical
    gradient was computed (``"local"`` or ``"loop"``). ``nonfinite_analytic`` and
    ``nonfinite_numerical`` count the elements where that gradient is inf or nan: any
    makes the parameter fail (at a kink too), and the statistics leave them out.
    ``failing_elements`` are the indices of every element that fails (as ``np.argwhere``
    gives them: those ``failing`` counts, and the non-finite ones). ``unexplained_kinks``
    counts the failing elements at reported kinks whose one-sided differences show no kink
    (of a sample of them, when more than ``ONE_SIDED_LIMIT``): they do not pass the
    parameter, which is ``inconclusive`` where nothing else fails. ``sampled`` is how many
    elements were checked when only a random sample of them was (``max_elements`` of
    :func:`check_gradients`; None: all of them): the counts, statistics and indices are
    those of the sample.
    """

    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    mean_abs_diff: float
    passed: bool
    kinks: int | None = None
    kink_max_abs_error: float = 0.0
    kink_elements: tuple[tuple[int, ...], ...] = ()
    via: str = ""
    nonfinite_analytic: int = 0
    nonfinite_numerical: int = 0
    refined: int = 0
    retried: int = 0
    converged: int = 0  # of the retried: compared with the limit their error fell towards
    factor: float | None = None  # a failing analytic gradient = factor * numerical
    failing: int = 0  # finite elements clear of kinks that fail
    worst: tuple[int, ...] | None = None  # the failing one with the largest error
    worst_analytic: float = 0.0
    worst_numerical: float = 0.0
    # (slope of f, analytic . v) along v moving every kink at once to its matched side,
    # where they disagree (kinks_together: tied maxima)
    kinks_together: tuple[float, float] | None = None
    # the other arrays whose kinks moved with this one's there (check_layer's inputs)
    together_with: tuple[str, ...] = ()
    transposed: bool = False  # a failing square 2-D analytic gradient = numerical.T
    flipped: bool = False  # a failing conv kernel's analytic gradient = numerical rotated 180°
    # a failing conv kernel's analytic gradient = col.T @ dout reshaped, not transposed first
    untransposed: bool = False
    failing_elements: tuple[tuple[int, ...], ...] = ()
    sampled: int | None = None
    # failing elements excused as reported kinks whose one-sided differences show none
    unexplained_kinks: int = 0

    @property
    def inconclusive(self) -> bool:
        """Whether nothing fails but elements excused as kinks that their one-sided
        differences do not explain (``unexplained_kinks``): neither passed nor failed."""
        return (
            bool(self.unexplained_kinks)
            and not self.failing_elements
            and self.kinks_together is None
        )

    @property
    def all_kinks(self) -> bool:
        """Whether every element of the parameter checked (of its sample, with
        ``sampled``) straddles a kink, so none was compared."""
        checked = math.prod(self.shape) if self.sampled is None else self.sampled
        return bool(self.kinks) and self.kinks == checked

    @property
    def unchecked(self) -> bool:
        """Whether nothing tested this parameter's gradient: every element straddles a kink,
        and neither its kinks moved together nor non-finite values failed it."""
        nonfinite = self.nonfinite_analytic or self.nonfinite_numerical
        return self.all_kinks and self.kinks_together is None and not nonfinite

    def nonfinite_notes(self) -> list[str]:
        """One line per gradient of this parameter that has inf or nan values, saying why."""
        notes = []
        if self.nonfinite_numerical:
            notes.append(
                f"{self.name}: the numerical gradient has {self.nonfinite_numerical} non-finite "
                "value(s) (inf or nan): the function overflows or is undefined a step h "
                "away; try a smaller h"
            )
        if self.nonfinite_analytic:
            notes.append(
                f"{self.name}: the analytic gradient has {self.nonfinite_analytic} non-finite "
                "value(s) (inf or nan): backward computed them"
            )
        return notes

    def worst_note(self) -> str | None:
        """Where a failing parameter fails most: how many elements fail, the worst one's
        index and both gradients there (None when no finite element fails)."""
        if self.worst is None:
            return None
        where = f"[{', '.join(map(str, self.worst))}]" if self.worst else ""
        of = math.prod(self.shape) if self.sampled is None else f"{self.sampled} sampled"
        return (
            f"{self.name}: {self.failing} of {of} elements fail; worst "
            f"{self.name}{where}: analytic {self.worst_analytic:.6g}, numerical "
            f"{self.worst_numerical:.6g}"
        )

    def kinks_together_note(self) -> str | None:
        """What kinks that each match a side, but disagree moved together, say (None
        otherwise)."""
        if self.kinks_together is None:
            return None
        slope, claimed = self.kinks_together
        names = ", ".join(sorted((self.name, *self.together_with)))
        whose = f"the kinks of {names}" if self.together_with else f"{self.name}'s kinks"
        return (
            f"{names}: {whose} each match a one-sided difference, but moved together, each "
            f"to the side its gradient matches, f changes at a slope of {slope:.6g} where "
            f"their gradients add up to {claimed:.6g}: a gradient given in full to each of "
            "several tied maxima? Route it to one of them (or split it)"
        )

    def transposed_note(self) -> str | None:
        """What a failing square gradient that is the numerical one transposed says (None
        otherwise)."""
        if not self.transposed:
            return None
        return (
            f"{self.name}: the analytic gradient is the numerical one transposed "
            f"({TRANSPOSED_PRODUCT})"
        )

    def flipped_note(self) -> str | None:
        """What a failing kernel gradient (FN, C, FH, FW) that is the numerical one flipped
        in its last two axes says (None otherwise)."""
        if not self.flipped:
            return None
        return (
            f"{self.name}: the analytic gradient is the numerical one flipped in its last two "
            "axes (rotated 180 degrees): a kernel flipped in one pass and not in the other (a "
            "true convolution against a forward that cross-correlates, as im2col does)?"
        )

    def untransposed_note(self) -> str | None:
        """What a failing kernel gradient (FN, C, FH, FW) that is ``col.T @ dout`` (C * FH *
        FW, FN) reshaped to the kernel's shape without its transpose says (None otherwise)."""
        if not self.untransposed:
            return None
        fn, c, fh, fw = self.shape
        return (
            f"{self.name}: the analytic gradient is the numerical one laid out as "
            f"({c * fh * fw}, {fn}) = (C * FH * FW, FN), as col.T @ dout is, and reshaped to "
            f"{self.shape} without its transpose: the book's "
            "dW.transpose(1, 0).reshape(FN, C, FH, FW)?"
        )

    def factor_note(self, batch: int | None = None) -> str | None:
        """What a failing gradient off by one factor in every element compared says (None
        otherwise); where that factor is the ``batch`` size or its inverse (within 1%), a
        division by it missing from backward, or one too many."""
        if self.factor is None:
            return None
        every = "every element" if self.sampled is None else "every sampled element"
        if abs(self.factor + 1) < 1e-3:
            return f"{self.name}: the analytic gradient has the opposite sign in {every}"
        note = (
            f"{self.name}: the analytic gradient is {self.factor:.4g} times the numerical one "
            f"in {every}: off by a constant factor"
        )
        sizes = (batch, 1 / batch) if batch is not None and batch > 1 else ()
        if any(math.isclose(self.factor, k, rel_tol=0.01) for k in sizes):
            note += f", the batch size of {batch} (a division by it missing from backward, or "
            note += "one too many?)"
        return note


class _Displayed:
    """A report's display: a one-line ``repr`` (a plain REPL, a list of reports), and in
    IPython or Jupyter the table that ``print`` gives."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._summary()}>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # The table at a cell's top level; inside a list or a dict, whose printer's stack
        # holds the container too, the one line a plain REPL shows.
        nested = len(getattr(p, "stack", ())) > 1
        p.text(repr(self) if cycle or nested else str(self))

    def _summary(self) -> str:
        raise NotImplementedError


def _wrapped(note: str) -> list[str]:
    """A report's note as lines of at most 88 characters, the later ones indented."""
    return textwrap.wrap(note, width=88, subsequent_indent="  ")


def _counted(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


@dataclass(repr=False)
class GradientReport(_Displayed):
    """The result of :func:`check_gradients`: one :class:`ParamCheck` per parameter.

    It passes when every parameter passes, there is at least one, and one at least was
    tested: a check in which each parameter's gradients are within the atol
    (``unresolved_params``; ``unresolved`` when all are) or has every element on a kink
    (``not_compared``) would pass a wrong gradient too, so it is ``inconclusive``,
    neither passed nor failed, and the report is falsy. So is one in which nothing fails
    but elements excused as kinks that their one-sided differences do not explain
    (:attr:`ParamCheck.inconclusive`).
    """

    method: str
    h: float
    atol: float
    rtol: float
    dtype: str
    params: list[ParamCheck] = field(default_factory=list)
    subject: str = ""  # what was checked, when not a network ("layer Affine", "function f")
    notes: list[str] = field(default_factory=list)  # what was left unchecked, and why
    unresolved: bool = False  # the atol is as large as every parameter's gradients
    unresolved_params: list[str] = field(default_factory=list)  # as large as theirs
    batch: int | None = None  # the batch size, where known: the factor notes name it
    # pairs of failing arrays of one shape, each one's analytic gradient the other's numerical
    swapped: list[tuple[str, str]] = field(default_factory=list)
    # a layer's attributes that backward gave gradients (dW) but its params does not name
    undeclared: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.params) and all(p.passed for p in self.params) and not self.inconclusive

    @property
    def inconclusive(self) -> bool:
        """Whether no parameter fails and either one has kinks that nothing explains
        (:attr:`ParamCheck.inconclusive`) or none was tested: each one's gradients are
        within the atol, or every element of it is on a kink (not compared)."""
        untested = {*self.unresolved_params, *self.not_compared}
        return (
            bool(self.params)
            and all(p.passed or p.inconclusive for p in self.params)
            and (
                self.unresolved
                or any(p.inconclusive for p in self.params)
                or all(p.name in untested for p in self.params)
            )
        )

    @property
    def not_compared(self) -> list[str]:
        """The parameters whose every element straddles a kink and that nothing else tested
        (:attr:`ParamCheck.unchecked`): none of their elements was compared."""
        return [p.name for p in self.params if p.unchecked]

    @property
    def sampled(self) -> list[ParamCheck]:
        """The parameters of which only a random sample of elements was checked."""
        return [p for p in self.params if p.sampled is not None]

    def __bool__(self) -> bool:
        return self.passed

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data; each parameter's ``failing_elements`` left out (a
        wrong gradient fails every element: the count is ``failing``)."""
        out = {**asdict(self), "passed": self.passed, "inconclusive": self.inconclusive}
        for check in out["params"]:
            del check["failing_elements"]
        return out

    def note_atol(self, tol: Atol, largest: Mapping[str, float]) -> None:
        """Say what the atol ``tol`` at ``h`` leaves unresolved. A default atol grown above
        its floor becomes the report's atol, with a note saying why. The verdict says
        nothing was resolved when the atol, grown or not, is as large as the ``largest``
        numerical derivative of every parameter (name: value), or names the parameters
        whose derivatives it is as large as: a wrong gradient of theirs passes (b's, twice
        off, beside a's 1e4 times larger; or gradients of 1e-9 under the floor of 1e-8)."""
        grown = tol.at(self.h) > tol.floor
        if grown:
            self.atol = tol.at(self.h)
            self.notes.append(_atol_note(tol, self.h, max(largest.values(), default=0.0)))
        self.unresolved_params = [n for n, v in largest.items() if _unresolved(tol, self.h, v)]
        if not grown:
            # Under the floor, gradients within the loss's rounding (a bias before
            # BatchNorm, whose gradient is 0) are only compared with 0, which a note says.
            # An atol of the user's knows no rounding: nothing is said.
            rounding = max(tol.from_loss(self.h), tol.from_noise(self.h))
            within = {n: v for n, v in largest.items() if v <= rounding}
            if within:
                self.notes.append(_rounding_note(self.h, rounding, within))
            if self.unresolved_params:
                what = f"the numerical gradients of {', '.join(self.unresolved_params)}"
                above = max(largest[n] for n in self.unresolved_params)
                self.notes.append(_floor_note(self.atol, rounding, what, above))
        self.unresolved = bool(largest) and len(self.unresolved_params) == len(largest)

    def __str__(self) -> str:
        header = (
            "param",
            "shape",
            "via",
            "max abs err",
            "max rel err",
            "mean abs diff",
            "kinks",
            "kink max err",
            "result",
        )
        rows = [
            (
                p.name,
                "x".join(map(str, p.shape)) or "scalar",
                p.via,
                f"{p.max_abs_error:.3e}",
                f"{p.max_rel_error:.3e}",
                f"{p.mean_abs_diff:.3e}",
                "-" if p.kinks is None else str(p.kinks),
                f"{p.kink_max_abs_error:.3e}" if p.kinks else "-",
                _param_result(p),
            )
            for p in self.params
        ]
        if self.sampled:
            header = (*header[:3], "checked", *header[3:])
            rows = [(*r[:3], _checked(p), *r[3:]) for r, p in zip(rows, self.params, strict=True)]
        lines = [
            f"gradient check{' of ' + self.subject if self.subject else ''} "
            f"({self.method}, {self.dtype}, h={self.h:g}): "
            f"pass when |analytic - numerical| <= {self.atol:g} + {self.rtol:g} * |numerical|",
            *_table(header, rows),
        ]
        if any(p.kinks for p in self.params):
            lines += [
                "kinks: elements whose central difference straddles a kink (ReLU's at 0, a max",
                "  that changes hands) and disagrees with the analytic gradient; they are left",
                "  out of the errors and of pass/fail, and 'kink max err' is their largest",
                "  |analytic - numerical| (an element across a kink that agrees anyway is",
                "  compared as any other; one whose one-sided differences show no kink is",
                "  'unexplained kinks': INCONCLUSIVE)",
            ]
        if any(p.kinks is None for p in self.params):
            lines.append("kinks '-': not looked for (the network is not layered as assumed)")
        if self.sampled:
            lines += _wrapped(
                "checked: elements sampled at random (max_elements), the same on every "
                "backend for a seed; the errors, kinks and result are the sample's, and a "
                "wrong gradient in the elements left out passes"
            )
        if any(p.passed and p.max_rel_error > self.rtol for p in self.params):
            lines += [
                "max rel err: |analytic - numerical| / max(|analytic|, |numerical|), CS231n's",
                "  relative error; it exceeds rtol where both are near 0, and such an element",
                f"  passes by atol ({self.atol:g})",
            ]
        unchecked = self.not_compared
        if unchecked:
            lines += [
                f"not compared (all kinks): {', '.join(unchecked)}: every element's central",
                "  difference straddles a kink, so the gradient went unchecked (it passes for",
                "  want of a test, unless nothing else was: INCONCLUSIVE); check it at other",
                "  inputs or parameter values (a bias of",
                "  exactly 0 before ReLU sits on the kink at every blank input, and so does",
                "  BatchNorm before ReLU on one sample or on a feature constant in the batch)",
            ]
        retried = [f"{p.name} {p.retried}" for p in self.params if p.retried]
        if retried:
            lines += _wrapped(
                f"retried: elements that failed at h={self.h:g} clear of kinks "
                f"({', '.join(retried)}) were differenced again at h={self.h / RETRY:g} and "
                f"compared there, with the same atol: a truncation error falls {RETRY**2}-fold, "
                "the error of a wrong gradient stays"
            )
        converged = [f"{p.name} {p.converged}" for p in self.params if p.converged]
        if converged:
            lines += _wrapped(
                f"converged: retried elements whose error fell in proportion to the step "
                f"({', '.join(converged)}; at h={self.h:g}, {self.h / RETRY:g} and "
                f"{self.h / RETRY**2:g}: a second derivative that jumps there, as x * |x|'s "
                "at 0) were compared with the limit of their differences"
            )
        explained = dict.fromkeys(  # kinks moved together across arrays: one note
            note
            for p in self.params
            for note in (
                p.worst_note(),
                p.kinks_together_note(),
                p.factor_note(self.batch),
                p.transposed_note(),
                p.flipped_note(),
                p.untransposed_note(),
            )
            if note
        )
        for note in explained:
            lines += _wrapped(note)
        for a, b in self.swapped:
            lines += _wrapped(
                f"{a}, {b}: each analytic gradient matches the other's numerical one: swapped?"
            )
        notes = [note for p in self.params for note in p.nonfinite_notes()]
        if notes:
            lines += [*notes, "non-finite values fail, at a kink too; the errors leave them out"]
        lines += self.notes
        if not self.params:
            lines.append("nothing was checked")
        lines.append(self.verdict())
        return "\n".join(lines)

    def _summary(self) -> str:
        subject = f"of {self.subject} " if self.subject else ""
        return (
            f"{subject}{self.verdict()}: {_counted(len(self.params), 'param')}, "
            f"{self.method}, {self.dtype}"
        )

    def verdict(self) -> str:
        """The report's last line: PASSED, FAILED or INCONCLUSIVE (nothing failed, but kinks
        went unexplained or nothing was tested), and what a pass leaves unchecked."""
        unexplained = [f"{p.name} {p.unexplained_kinks}" for p in self.params if p.inconclusive]
        if self.inconclusive and unexplained:
            return (
                f"INCONCLUSIVE (elements excused as kinks that their one-sided differences do "
                f"not explain: {', '.join(unexplained)})"
            )
        if self.inconclusive and (self.unresolved or not self.not_compared):
            return "INCONCLUSIVE (the atol is as large as the gradients: nothing was resolved)"
        if self.inconclusive and not self.unresolved_params:
            return "INCONCLUSIVE (every element is on a kink: nothing was compared)"
        if self.inconclusive:
            return (
                f"INCONCLUSIVE (nothing was tested: {', '.join(self.not_compared)} not compared, "
                f"on kinks; the atol as large as the gradients of "
                f"{', '.join(self.unresolved_params)})"
            )
        verdict = "PASSED" if self.passed else "FAILED"
        if self.passed and self.not_compared:
            verdict += f" (but {', '.join(self.not_compared)} not compared)"
        if self.passed and self.unresolved_params:
            verdict += (
                f" (but the atol is as large as the gradients of "
                f"{', '.join(self.unresolved_params)}: they were not resolved)"
            )
        if self.passed and self.undeclared:
            verdict += f" (but {', '.join(self.undeclared)} not checked: not in params)"
        if self.passed and self.sampled:
            verdict += (
                " (on sampled elements only: "
                + ", ".join(f"{p.name} {_checked(p)}" for p in self.sampled)
                + ")"
            )
        return verdict


def _checked(p: ParamCheck) -> str:
    """How many of the parameter's elements were checked: ``all``, or ``100 of 78,400``."""
    return "all" if p.sampled is None else f"{p.sampled:,} of {math.prod(p.shape):,}"


def _param_result(p: ParamCheck) -> str:
    if p.nonfinite_analytic or p.nonfinite_numerical:
        return "FAIL (non-finite)"
    if p.kinks_together is not None:
        return "FAIL (kinks together)"
    if p.inconclusive:
        return "unexplained kinks"
    if p.unchecked:
        return "not compared (all kinks)"
    return "ok" if p.passed else "FAIL"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]


def _unresolved(tol: Atol, h: float, largest: float) -> bool:
    """Whether ``tol``'s atol at ``h`` leaves numerical derivatives of at most ``largest``
    unresolved, so that a wrong one within it would pass: a default atol grown above its
    floor, when it is as large as ``largest``; else when ``largest`` is above what the
    loss's rounding makes of a difference (those within it are compared with 0) and within
    the atol. An atol of the user's knows no rounding and leaves nothing unresolved."""
    atol = tol.at(h)
    if atol > tol.floor:
        return atol >= largest
    rounding = max(tol.from_loss(h), tol.from_noise(h))
    return 0 < rounding < largest <= atol


def _atol_note(tol: Atol, h: float, largest: float) -> str:
    """The report's line on a default atol above its floor, grown with the loss or its
    measured rounding noise; and when it is as large as the ``largest`` numerical
    derivative, that the check resolves nothing (a loss of 1e10 + sum(sin p) has an atol
    of 3.6: a gradient twice off passes)."""
    if tol.from_loss(h) >= tol.from_noise(h):
        why = f"for the loss of {tol.loss:.4g}: {ROUNDING} * eps * |loss| / h"
    else:
        why = f"for the loss's rounding noise of {tol.noise:.2g}: {NOISE_MARGIN} * noise / h"
    note = f"atol: {tol.at(h):.2g}, above {tol.floor:g} {why}, what rounding can make of "
    note += "a correct gradient"
    if tol.at(h) >= largest:
        note += (
            f"; it is as large as the numerical gradients (at most {largest:.2g}), which the "
            "check cannot tell from 0 with this rounding: pass a larger h, or check a loss "
            "of smaller magnitude (a mean rather than a sum, without a constant term)"
        )
    return note


def _floor_note(atol: float, rounding: float, what: str, largest: float) -> str:
    """The report's line on an ``atol`` that was not grown but is as large as ``what``
    (numerical derivatives, at most ``largest``), which are above what the loss's
    ``rounding`` makes of a difference: a smaller atol checks them."""
    return (
        f"atol: {atol:g} is as large as {what} (at most {largest:.2g}), so a wrong gradient "
        f"within the atol passes there: pass a smaller atol (the loss's rounding allows "
        f"{rounding:.2g}), or check at inputs or parameters of larger magnitude"
    )


def _rounding_note(h: float, rounding: float, within: Mapping[str, float]) -> str:
    """The report's line on parameters whose numerical derivatives (``within``: name -> the
    largest) are no larger than what the loss's ``rounding`` makes of a difference at ``h``."""
    return (
        f"rounding: the numerical gradients of {', '.join(within)} (at most "
        f"{max(within.values()):.2g}) are within what the loss's rounding makes of a "
        f"difference at h={h:g} ({rounding:.2g}), so they were compared with 0 only, which "
        "is right for a bias before BatchNorm; if they should not be 0 here (a ReLU off for "
        "every sample of the batch passes no gradient to the layers before it), check at "
        "other inputs, more samples, or parameters of larger magnitude"
    )
