"""Learning curves as a matplotlib figure (shown inline in a notebook) or a PNG (SVG, PDF):
accuracy and loss per epoch, train and test, in two panels, of one run or several on shared
axes; and the book's ``smooth_curve``
for noisy per-iteration losses.

Needs matplotlib (``pip install matplotlib``, xpnet's ``plot`` extra). The figure is
drawn with the Agg canvas directly, so the global pyplot backend of the caller is not touched, and
the file is written atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xpnet.backend import to_numpy
from xpnet.checks import is_count
from xpnet.files import atomic_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install matplotlib"
# What a history holds that the figure draws (a History's ``as_dict()`` holds more).
CURVES = ("epochs", "train_acc", "test_acc", "train_loss", "test_loss")


class PlottingUnavailableError(ImportError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    """Raise :class:`PlottingUnavailableError` (with the install command) without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise PlottingUnavailableError(
            f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}"
        ) from exc


def history_figure(
    history: Any, *, title: str | None = None, labels: Sequence[Any] | None = None
) -> Figure:
    """The learning curves of ``history``: a matplotlib ``Figure``, accuracy and loss per
    epoch in two panels, train and test in each.

    ``history`` is a :class:`~xpnet.training.History` or its ``as_dict()``: lists
    ``epochs``, ``train_acc``, ``test_acc``, ``train_loss``, ``test_loss`` of equal length.
    Several runs share the panels, each in a colour of its own (train solid, test dashed,
    in the legend as ``"adam train"``, ``"adam test"``): a mapping label -> history
    (``{"sgd": h1, "adam": h2}``), or a list of histories and ``labels`` (default ``run 1``,
    ``run 2``, ...). An empty mapping or list, ``labels`` of another length, two runs
    whose labels read the same in the legend, or a history of no epochs (one not yet
    trained: there are no curves to draw, as pandas' ``plot`` of an empty frame refuses
    too) is a ``ValueError``; a value that is not a history a ``TypeError`` naming its label.

    The figure has its own Agg canvas and is not one of pyplot's (``plt.show()`` and
    ``plt.close`` leave it alone): last in a Jupyter cell it shows once, as the cell's
    value, through matplotlib's inline backend, which a kernel loads with its first pyplot
    figure or ``%matplotlib inline``. ``fig.savefig(path)`` writes it.
    """
    runs = _runs(history, labels)
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    acc_ax, loss_ax = fig.subplots(1, 2)
    marker = "o" if max(len(data["epochs"]) for _, data in runs) <= 30 else None
    for ax, key, name in ((acc_ax, "acc", "accuracy"), (loss_ax, "loss", "loss")):
        for i, (label, data) in enumerate(runs):
            color = None if label is None else f"C{i}"  # one run: train and test apart
            prefix = "" if label is None else f"{label} "
            epochs = list(data["epochs"])
            style = {"marker": marker, "color": color}
            ax.plot(epochs, data[f"train_{key}"], **style, label=f"{prefix}train")
            ax.plot(epochs, data[f"test_{key}"], **style, linestyle="--", label=f"{prefix}test")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 2.5
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    acc_ax.set_ylim(0.0, 1.02)
    loss_ax.set_ylim(bottom=0.0)
    if title:
        fig.suptitle(title)
    return fig


def _runs(history: Any, labels: Sequence[Any] | None) -> list[tuple[Any, Mapping[str, Any]]]:
    """:func:`history_figure`'s ``history`` as ``(label, curves)`` pairs: one, labelled
    None, for a single history."""
    if isinstance(history, list | tuple):
        names = [f"run {i}" for i in range(1, len(history) + 1)] if labels is None else labels
        if len(names) != len(history):
            raise ValueError(f"{len(names)} labels for {len(history)} histories")
        runs = list(zip(names, history, strict=True))
    elif labels is not None:
        raise ValueError(
            "labels= names the histories of a list; a mapping's keys label its histories, "
            "and a single history has none"
        )
    elif hasattr(history, "as_dict") or (isinstance(history, Mapping) and "epochs" in history):
        runs = [(None, history)]
    elif isinstance(history, Mapping):
        runs = list(history.items())
    else:
        raise TypeError(
            "expected a History, its as_dict(), a mapping label -> history or a list of "
            f"histories, got {type(history).__name__}"
        )
    if not runs:
        raise ValueError(f"no history to draw: got an empty {type(history).__name__}")
    shown = [str(label) for label, _ in runs]
    twice = next((name for name in shown if shown.count(name) > 1), None)
    if twice is not None:
        raise ValueError(
            f"{shown.count(twice)} runs are labelled {twice!r}: the legend could not tell their "
            "curves apart; give each run a label of its own"
        )
    return [(label, _curves(run, label)) for label, run in runs]


def _curves(history: Any, label: Any) -> Mapping[str, Any]:
    """``history``'s ``as_dict()`` (or ``history``, a mapping), checked to hold
    :data:`CURVES`; ``label`` names it in errors (None: the only one)."""
    what = "history" if label is None else f"history {label!r}"
    if hasattr(history, "as_dict"):
        history = history.as_dict()
    elif not isinstance(history, Mapping):
        raise TypeError(
            f"{what} is a {type(history).__name__}, expected a History or its as_dict()"
        )
    missing = [key for key in CURVES if key not in history]
    if missing:
        raise ValueError(f"{what} has no {', '.join(missing)}: expected a History's as_dict()")
    if not len(history["epochs"]):
        raise ValueError(f"{what} has no epochs to draw: a History fills as Trainer.fit() trains")
    return history


def plot_format(path: str | os.PathLike) -> str:
    """The image format of ``path``'s suffix (``"png"``, ``"svg"``, ``"pdf"``, ``"jpg"``, any
    that matplotlib writes, in any case), ``"png"`` for a name without one; ``ValueError``
    naming the suffix and those it takes for another (a typo should not cost a run), and
    :class:`PlottingUnavailableError` without matplotlib, whatever the name."""
    require_matplotlib()
    suffix = Path(path).suffix.lstrip(".").lower()
    if not suffix:
        return "png"
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if suffix not in formats:
        raise ValueError(
            f"cannot draw a plot into {os.fspath(path)}: matplotlib writes "
            f"{', '.join('.' + f for f in sorted(formats))}, not .{suffix}"
        )
    return suffix


def plot_history(
    history: Any,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    labels: Sequence[Any] | None = None,
) -> Path:
    """Write :func:`history_figure` of ``history`` (one run, or several: a mapping label ->
    history, or a list and ``labels``) to ``path`` in the format its suffix names
    (:func:`plot_format`: PNG without one); return the path."""
    fmt = plot_format(path)
    fig = history_figure(history, title=title, labels=labels)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=100)
    with atomic_file(path) as f:
        f.write(buffer.getvalue())
    return Path(path)


def smooth_curve(values: Any, window: int = 11) -> np.ndarray:
    """``values`` (T,), a curve such as per-iteration losses (an array, or a list of numbers
    or 0-D arrays), smoothed: a host float64 array (T,).

    The book's ``common.util.smooth_curve``: a normalized Kaiser window (beta 2) of
    ``window`` points (odd) slides along the curve, extended at both ends by its values in
    reverse, exactly as the book extends it; a curve shorter than the window is smoothed
    by the longest odd window it holds (the book's gives fewer values back).
    """
    if not is_count(window, 1) or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 1, got {window!r}")
    # A list of 0-D losses (net.loss per step) on a GPU cannot go through np.asarray whole.
    host = [to_numpy(v) for v in values] if isinstance(values, list | tuple) else to_numpy(values)
    curve = np.asarray(host, dtype=np.float64)
    if curve.ndim != 1:
        raise ValueError(f"smooth_curve takes a curve of shape (T,), got shape {curve.shape}")
    window = min(window, curve.size - 1 + curve.size % 2)
    if window <= 1:
        return curve.copy()
    half = window // 2
    extended = np.concatenate([curve[window - 1 : 0 : -1], curve, curve[-1:-window:-1]])
    weights = np.kaiser(window, 2)
    smoothed = np.convolve(weights / weights.sum(), extended, mode="valid")
    return smoothed[half : smoothed.size - half]
