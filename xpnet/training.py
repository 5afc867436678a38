"""The training loop: epochs of shuffled mini-batches, evaluated once per epoch.

:class:`Trainer` runs the book's loop (``grads = net.gradient(x, t)``,
``optimizer.update(net.params, grads)``) over shuffled mini-batches and records
train/test accuracy and loss after every epoch in a :class:`History`.

Where the work happens:

- the data stay on the device; each epoch's shuffle is drawn on the host from
  ``seed`` (so one seed gives the same order on every backend), moved to the
  device once, and batches are gathered there with ``take``;
- integer labels are turned into one-hot rows once, up front, so the loss layer
  has no label range to check (a device-to-host read) on every batch;
- nothing is read back to the host inside the per-batch loop: losses and
  accuracies are summed on the device in chunks of ``eval_batch_size`` samples
  and read once per epoch.
"""

from __future__ import annotations

import concurrent.futures
import functools
import inspect
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import asdict, dataclass, field, fields
from itertools import zip_longest
from typing import Any

import array_api_compat
import array_api_extra as xpx
from tqdm import tqdm

from xpnet.backend import (
    dtype_name,
    host_rng,
    namespace_of,
    require_finite,
    synchronize,
    take,
    to_numpy,
    tracked_by_autograd,
    untracked,
)
from xpnet.checks import BookName, is_real, refuses_book_keywords, require_count
from xpnet.layers import (
    BatchNormalization,
    check_labels,
    describe_array,
    is_labels,
    is_real_floating,
    not_labels_or_rows,
    require_array,
)
from xpnet.networks import (
    EVAL_BATCH_SIZE,
    NO_LOSS,
    LayerTypeError,
    Parameters,
    require_scores,
)
from xpnet.optim import Optimizer, hyperparameter
from xpnet.schedules import Schedule


@dataclass(frozen=True)
class EpochResult:
    """What one epoch achieved (accuracies in [0, 1]; losses are the loss layer's); ``lr``
    is the learning rate a schedule set for the epoch (None without one)."""

    epoch: int
    epochs: int
    iterations: int
    train_acc: float
    test_acc: float
    train_loss: float
    test_loss: float
    seconds: float
    lr: float | None = None

    def __str__(self) -> str:
        """One line, as ``xpnet train`` and ``Trainer(verbose=True)`` print each epoch."""
        lr = "" if self.lr is None else f"  lr {self.lr:.4g}"
        return (
            f"epoch {self.epoch}/{self.epochs}  train acc {self.train_acc:.4f}  "
            f"test acc {self.test_acc:.4f}  loss {self.train_loss:.4f}{lr}  "
            f"({format_seconds(self.seconds)})"
        )


def format_seconds(seconds: float) -> str:
    """``seconds`` to two decimals below 10 s, to one above (``"3.14 s"``, ``"31.4 s"``)."""
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


# What computing on arrays placed elsewhere raises when that place lost their data: Dask's
# FutureCancelledError (a worker holding scattered rows died; they cannot be recomputed) is
# one. The standard library's base, so that ``import xpnet`` stays free of Dask.
EVALUATION_LOST = (concurrent.futures.CancelledError,)


class EvaluationResent(RuntimeWarning):
    """An epoch's evaluation lost its data where ``evaluate_on`` put it (a Dask worker
    died) and the :class:`Trainer` sent it again and evaluated the epoch again."""


class TrainingDiverged(FloatingPointError):
    """The train loss of an epoch was NaN or infinite: the parameters have (almost surely)
    stopped being finite, and more epochs cannot bring them back.

    ``result`` is that epoch's :class:`EpochResult`; it is in the trainer's ``history``
    too, but the epoch callback (a checkpoint, say) did not see it.
    """

    def __init__(self, result: EpochResult, optimizer: Any) -> None:
        super().__init__(
            f"training diverged in epoch {result.epoch} (iteration {result.iterations}): the "
            f"train loss is {result.train_loss}; lower the learning rate ({optimizer!r}), "
            "start from smaller weights or compute in float64 where the forward pass "
            "overflows (weights of std 1 through several layers overflow float32), or look "
            "for NaN or huge values in the data"
        )
        self.result = result


@dataclass
class History:
    """Per-epoch learning curves, one list entry per epoch (``epochs`` are 1-based).

    ``iterations`` is the book's count of parameter updates so far; ``seconds`` the
    wall time of each epoch, evaluation included. Losses are the network's loss layer
    (the mean cross-entropy for the book's networks), per sample, without weight decay.
    """

    epochs: list[int] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def append(self, result: EpochResult) -> None:
        """Add one epoch's numbers."""
        for f in fields(self):
            key = "epoch" if f.name == "epochs" else f.name
            getattr(self, f.name).append(getattr(result, key))

    def as_dict(self) -> dict[str, list]:
        """Plain lists (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """The inverse of :meth:`as_dict` (unknown keys are ignored)."""
        return cls(**{f.name: list(data.get(f.name, [])) for f in fields(cls)})

    def __len__(self) -> int:
        return len(self.epochs)

    def __str__(self) -> str:
        """A table, a row per epoch, the numbers as ``xpnet train`` prints them; past
        ``HISTORY_MAX_ROWS`` epochs, the first and last ``HISTORY_END_ROWS`` with ``...``
        between them, as pandas prints a long DataFrame."""
        from xpnet.bench import table  # the benchmarks' tables: not loaded by import xpnet

        n = len(self)
        if not n:
            return "History: no epochs"
        header = ("epoch", "iterations", "train acc", "test acc", "train loss", "test loss", "time")
        # A list shorter than epochs (a dict from elsewhere, without seconds) reads "-".
        numbers = zip_longest(
            self.epochs, self.iterations, self.train_acc, self.test_acc, self.train_loss,
            self.test_loss, self.seconds,
        )  # fmt: skip
        formats = (str, str, *(lambda v: f"{v:.4f}",) * 4, format_seconds)
        rows = [
            tuple("-" if v is None else show(v) for show, v in zip(formats, row, strict=True))
            for row in numbers
        ]
        if n > HISTORY_MAX_ROWS:
            rows = [*rows[:HISTORY_END_ROWS], ("...",) * len(header), *rows[-HISTORY_END_ROWS:]]
        return f"History: {n} epoch{'s' * (n != 1)}\n" + table(header, rows)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        """IPython and Jupyter show the table that ``print`` gives."""
        p.text(str(self))


#: A :class:`History` of more epochs prints its first and last ``HISTORY_END_ROWS`` only
#: (pandas' ``display.max_rows`` and ``display.min_rows``: 60 and 10).
HISTORY_MAX_ROWS = 60
HISTORY_END_ROWS = 5


def labels_and_targets(
    t: Any, classes: int, dtype: Any, target_range: tuple[float, float] | None = None
) -> tuple[Any, Any]:
    """Integer labels (N,) and target rows (N, classes) from either form, on t's device.

    Labels become one-hot rows, or rows of ``target_range = (low, high)`` (0.01/0.99);
    rows given with a ``target_range`` are a ``ValueError``, as the range would not apply.
    Integer rows (N, classes), the book's one-hot ``[[0, 0, 1]]``, are rows.
    """
    xp = namespace_of(t)
    if is_labels(xp, t):
        if t.ndim != 1:
            raise ValueError(f"integer labels must have shape (N,), got {tuple(t.shape)}")
        check_labels(t, classes)
        one_hot = xpx.one_hot(t, classes, dtype=dtype, xp=xp)
        if target_range is None:
            return t, one_hot
        low, high = target_range
        return t, low + (high - low) * one_hot
    if t.ndim != 2 or t.shape[1] != classes:
        raise not_labels_or_rows(t, "(N,)", f"(N, {classes})")
    if target_range is not None:
        raise ValueError(
            f"target_range {target_range} turns integer labels into target rows, but the "
            f"targets are rows already ({dtype_name(t)} of shape {tuple(t.shape)}): pass "
            "integer labels (load_mnist(one_hot_label=False)), or rows in the range without "
            "target_range"
        )
    return xp.argmax(t, axis=1), xp.astype(t, dtype)


def shuffle_dataset(x: Any, t: Any, *, seed: int | None = None) -> tuple[Any, Any]:
    """``x`` (N, ...) and ``t`` (N, ...) with their samples in one random order, on their
    device: the book's ``common.util.shuffle_dataset`` (which splits off a validation set
    after it). The order is drawn on the host from ``seed`` (fresh entropy when None), so
    a seed gives the same order on every device.
    """
    _require_batch("x", x)
    _require_batch("t", t)
    if x.shape[0] != t.shape[0]:
        raise ValueError(
            f"x and t must hold the same number of samples, got {x.shape[0]} "
            f"(x of shape {tuple(x.shape)}) and {t.shape[0]} (t of shape {tuple(t.shape)})"
        )
    xp = namespace_of(x, t)
    order = host_rng(seed).permutation(x.shape[0])
    order = xp.asarray(order, dtype=xp.int64, device=array_api_compat.device(x))
    return take(x, order, axis=0), take(t, order, axis=0)


def _require_batch(name: str, a: Any) -> None:
    """Raise ``TypeError`` (not an array) or ``ValueError`` (0-D) naming ``name`` unless
    ``a`` is an array of samples, (N, ...)."""
    require_array(name, a)
    if len(a.shape) == 0:
        raise ValueError(f"{name} must be an array of samples (N, ...), got a 0-D array")


def _require_optimizer(optimizer: Any) -> None:
    """Raise ``TypeError`` naming ``optimizer`` unless it has ``update(params, grads)``: the
    book's Trainer takes a name (``optimizer='sgd'``), this one an object."""
    if callable(getattr(optimizer, "update", None)) and not isinstance(optimizer, type):
        return
    if isinstance(optimizer, str):
        got = (
            f"the name {optimizer!r}: make one with "
            f"xpnet.optim.make_optimizer({optimizer!r}, lr=...)"
        )
    elif isinstance(optimizer, type):
        got = f"the class {optimizer.__name__}: pass an instance, {optimizer.__name__}(lr=...)"
    elif hasattr(optimizer, "shape"):
        got = (
            f"an array of shape {tuple(optimizer.shape)}: Trainer takes the optimizer second, "
            "Trainer(net, optimizer, x_train, t_train, x_test, t_test, epochs=...), where the "
            "book's takes the data second and the optimizer by name"
        )
    else:
        got = f"an object of type {type(optimizer).__name__}"
    raise TypeError(
        "optimizer must be an optimizer with update(params, grads), such as "
        f"xpnet.optim.SGD(lr=0.01); got {got}"
    )


def _outputs_for(net: Any, name: str, x: Any) -> int:
    """How many outputs ``net`` gives for the first sample of the inputs ``x`` (named
    ``name``); a ``ValueError`` naming ``x`` and its shape where the network cannot take
    them, with the conversion integer pixels need."""
    try:
        scores = net.predict(x[:1, ...])
    except LayerTypeError:  # a layer's output (a tuple), named by the network: x fits
        raise
    except ValueError as exc:
        hint = ""
        if not is_real_floating(namespace_of(x), x):
            hint = "; convert it first (pixels of 0 to 255: x.astype('float32') / 255)"
        raise ValueError(
            f"{name} ({dtype_name(x)} of shape {tuple(x.shape)}) does not fit the network, "
            f"tried on its first sample: {exc}{hint}"
        ) from exc
    require_scores(net, scores)
    return scores.shape[1]


def _require_finite(net: Any, optimizer: Any) -> None:
    """Raise unless the network's parameters and an xpnet optimizer's state are finite: from NaN
    or infinity (a damaged checkpoint, say) training gives NaN, and the first epoch would
    end blaming the learning rate (:class:`TrainingDiverged`)."""
    arrays = [(f"parameter {name!r}", p) for name, p in net.params.items()]
    if isinstance(optimizer, Optimizer):  # one with update() alone (the book's) keeps its own
        for buffer, slot in optimizer.state_dict()["buffers"].items():
            arrays += [(f"optimizer state {buffer!r} of {name!r}", a) for name, a in slot.items()]
    require_finite(
        arrays,
        " before training: training from it gives NaN; build the network again, or load a "
        "checkpoint saved before it diverged",
    )


def _warn_of_batches_of_one(net: Any, n: int, batch_size: int) -> None:
    """Warn when a batch of every epoch is one sample and ``net`` holds a
    :class:`~xpnet.layers.BatchNormalization`: in training it normalizes one sample to 0, so
    that batch passes no gradient below it (PyTorch's ``BatchNorm1d`` refuses it)."""
    if batch_size > 1 and n % batch_size != 1:
        return
    named = getattr(net, "named_layers", None)
    found = (
        [path for path, layer in named() if isinstance(layer, BatchNormalization)] if named else []
    )
    if found:
        which = "every batch" if batch_size == 1 or n == 1 else "the last batch of every epoch"
        warnings.warn(
            f"{which} is one sample ({n} samples, batch_size {batch_size}), which "
            f"BatchNormalization ({found[0]}) normalizes to 0 in training: it passes no "
            "gradient below it; pick a batch_size that leaves two samples or more, or "
            "drop a sample",
            stacklevel=5,  # the caller of Trainer(), past __init__'s two decorators
        )


def frozen_names(
    net: Any, frozen: str | Iterable[str] | None, what: str = "frozen"
) -> tuple[str, ...]:
    """The names of ``net.params`` that ``frozen`` names, in the network's order: a
    parameter's name (``"W1"``) or a layer's path as :meth:`~xpnet.Sequential.named_layers`
    gives it (``"layers[0]"``: every parameter of that layer and of the layers inside it).
    A ``ValueError`` naming an unknown name and listing the valid ones, a layer without
    parameters, or when every parameter is frozen; a ``TypeError`` for a name that is not a
    string. The messages begin with ``what``, the option that gave the names. None names
    none."""
    params = net.params
    paths: dict[str, str] = {}  # a layer's path -> its class's name, depth first
    layer_of: dict[str, str] = {}  # parameter name -> the path of the layer holding it
    if isinstance(params, Parameters) and callable(getattr(net, "named_layers", None)):
        named = list(net.named_layers())
        paths = {path: type(layer).__name__ for path, layer in named}
        path_of = {id(layer): path for path, layer in named}
        layer_of = {name: path_of[id(params.slot(name)[0])] for name in params}
    if isinstance(frozen, bytes | bytearray) or not (
        frozen is None or isinstance(frozen, str | Iterable)
    ):
        raise TypeError(
            f"{what} takes a name or a list of names of parameters or layers (strings), got "
            f"{type(frozen).__name__} {frozen!r:.40}"
        )
    chosen: set[str] = set()
    for item in (frozen,) if isinstance(frozen, str) else frozen or ():
        if not isinstance(item, str):
            raise TypeError(
                f"{what} takes names of parameters or layers (strings), got "
                f"{type(item).__name__} {item!r:.40}"
            )
        named = {item} if item in params else set()
        named |= {n for n, path in layer_of.items() if path == item or path.startswith(item + ".")}
        if not named and item in paths:
            raise ValueError(
                f"{what}: layer {item} ({paths[item]}) has no parameters to freeze; those "
                f"with parameters: {', '.join(_holding(paths, layer_of.values()))}"
            )
        if not named:
            holding = ", ".join(_holding(paths, layer_of.values()))
            layers = f", or a layer's path ({holding})" if layer_of else ""
            raise ValueError(
                f"{what}: the network has no parameter or layer {item!r}; expected a "
                f"parameter's name ({', '.join(params)}){layers}"
            )
        chosen |= named
    if chosen and len(chosen) == len(params):
        raise ValueError(
            f"{what} freezes every parameter ({', '.join(params)}): nothing would train; "
            "leave at least one out (to evaluate only, call xpnet.training.evaluate)"
        )
    trained = {id(params[name]): name for name in params if name not in chosen}
    for name in chosen:
        if id(params[name]) in trained:  # tied: training the other name would move it
            raise ValueError(
                f"{what}: {name} is the same array as {trained[id(params[name])]}, which is "
                "trained: freeze both names or neither"
            )
    return tuple(name for name in params if name in chosen)


def _holding(paths: Iterable[str], holders: Iterable[str]) -> list[str]:
    """The ``paths`` (in order) of the layers that hold a parameter, themselves or inside
    them: the ``holders`` and the blocks around them."""
    holders = set(holders)
    return [p for p in paths if any(h == p or h.startswith(p + ".") for h in holders)]


class _Subset(MutableMapping):
    """The parameters ``names`` of the mapping ``params``, live: reads and writes go to it."""

    def __init__(self, params: MutableMapping[str, Any], names: tuple[str, ...]) -> None:
        self._params, self._names, self._kept = params, names, frozenset(names)

    def __getitem__(self, name: str) -> Any:
        if name not in self._kept:
            raise KeyError(name)
        return self._params[name]

    def __setitem__(self, name: str, value: Any) -> None:
        if name not in self._kept:
            raise KeyError(name)
        self._params[name] = value

    def __delitem__(self, name: str) -> None:
        raise TypeError("a network's parameters cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _trainable(params: MutableMapping[str, Any], frozen: tuple[str, ...]) -> MutableMapping:
    """The mapping the optimizer updates: ``params`` without the ``frozen`` names, a live view
    made once, so that the optimizer checks it at the first update only (its signature is the
    mapping's identity and length). A network's :class:`~xpnet.networks.Parameters` gives
    one of its own kind, which costs a step nothing more than ``net.params`` does."""
    if not frozen:
        return params
    kept = tuple(name for name in params if name not in frozen)
    if isinstance(params, Parameters):
        return Parameters({name: params.slot(name) for name in kept})
    return _Subset(params, kept)


def _selects(net: Any) -> bool:
    """Whether ``net.gradient`` takes ``params=`` (:meth:`~xpnet.Sequential.gradient`): the
    names whose gradients are wanted, so that the backward skips the layers before them."""
    try:
        return "params" in inspect.signature(net.gradient).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin, a C extension)
        return False


def _optimizer_checked_first(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` checking its second positional argument, the optimizer, before Python binds
    the others: in the book's order, ``Trainer(net, x_train, t_train, x_test, t_test)``, it
    would say only that ``t_test`` is missing."""

    @functools.wraps(init)
    def checked(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > 1:
            _require_optimizer(args[1])
        init(self, *args, **kwargs)

    return checked


def _checked_range(value: Any) -> tuple[float, float] | None:
    """``target_range`` as a pair of floats (``None`` stays ``None``); a ``ValueError`` or
    ``TypeError`` naming it unless it is two finite numbers, low < high."""
    if value is None:
        return None
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"target_range must be a pair (low, high), got {value!r}") from None
    if not (is_real(low) and is_real(high)):
        raise TypeError(f"target_range must hold two numbers (low, high), got {value!r}")
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"target_range must be finite, got {value!r}")
    if not low < high:
        raise ValueError(f"target_range must be (low, high) with low < high, got {value!r}")
    return float(low), float(high)


def evaluate(
    net: Any, x: Any, labels: Any, targets: Any, *, batch_size: int = EVAL_BATCH_SIZE
) -> tuple[float, float]:
    """``(accuracy, mean loss)`` of ``net`` on ``x`` (N, D), in chunks of ``batch_size``.

    ``labels`` are integer labels (N,), ``targets`` the same as one-hot (or smoothed)
    rows (N, C). Sums stay on the device; the two results are read to the host once, at
    the end (on dask arrays: one computation of the whole graph). The loss is the
    network's last layer without weight decay, per sample (a ``"sum"`` loss summed over
    each sample's outputs, a ``"mean"`` one as it is).
    """
    n = x.shape[0]
    if n == 0:
        return math.nan, math.nan
    xp = namespace_of(x, labels, targets)
    hits = loss_sum = None
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        y = net.predict(x[start:stop, ...])
        chunk_hits = xp.sum(xp.astype(xp.argmax(y, axis=1) == labels[start:stop], xp.int64))
        chunk_loss = net.last_layer.forward(y, targets[start:stop, ...])
        if getattr(net.last_layer, "reduction", "mean") == "mean":
            chunk_loss = chunk_loss * (stop - start)
        hits = chunk_hits if hits is None else hits + chunk_hits
        loss_sum = chunk_loss if loss_sum is None else loss_sum + chunk_loss
    totals = to_numpy(xp.stack([xp.astype(hits, xp.float64), xp.astype(loss_sum, xp.float64)]))
    return float(totals[0]) / n, float(totals[1]) / n


class Trainer:
    """Train ``net`` with ``optimizer`` on mini-batches; evaluate after every epoch.

    - ``x_train`` (N, D) and ``t_train`` (N,) integer labels or (N, C) target rows
      (one-hot, or smoothed such as 0.01/0.99), on the network's device; the same for
      the test set (PyTorch tensors that require grad are read detached: xpnet computes
      the gradients, and a parameter that requires grad, a ``torch.nn.Parameter``, is a
      ``ValueError``);
    - ``epochs``: train until this epoch number (``start_epoch`` counts the epochs
      already done, for resuming; at most ``epochs``); ``batch_size``: samples per
      update (1 works; one larger than N makes one update of all N an epoch);
      the last batch of an epoch is smaller when ``batch_size`` does not divide N;
    - ``seed``: the shuffling order; epoch ``k`` gets the ``k``-th permutation of a
      generator seeded once, so a resumed run shuffles as an uninterrupted one would;
    - ``eval_samples``: evaluate on the first so many train and test samples, all of a
      set with fewer, as the book's slicing (default: all); ``eval_batch_size`` bounds
      the memory evaluation uses;
    - ``evaluate_on``: applied once to each array evaluation reads (inputs, integer
      labels, targets), e.g. ``lambda a: xpnet.distributed.rows(a, client=c)`` to
      evaluate on a Dask cluster (default: the arrays as they are); when an epoch's
      evaluation raises ``concurrent.futures.CancelledError`` (Dask's error for rows lost
      with a worker), it is applied again and that epoch evaluated again, once;
    - ``progress``: a progress bar (tqdm) on stderr for each epoch (``None``: when stderr
      is a terminal);
    - ``verbose``: print a line for each epoch to stdout (``str(result)``: epoch, train
      and test accuracy, train loss, the lr with a schedule, seconds), as ``xpnet train``
      does;
    - ``lr_schedule``: an :mod:`xpnet.schedules` schedule (torch's ``StepLR``, ...; any
      object with ``lr(base_lr, epoch)``); before each epoch ``optimizer.lr`` is set to
      ``lr_schedule.lr(base_lr, epoch)``, ``base_lr`` being the one given, else
      ``optimizer.lr`` when the Trainer is built (kept as ``trainer.base_lr``);
    - ``base_lr``: the schedule's base lr, a finite number >= 0, for resuming a scheduled
      run with an optimizer that holds a later epoch's lr (one restored from a checkpoint
      keeps the lr of the last epoch saved); without an ``lr_schedule`` it is a
      ``ValueError`` (the optimizer's ``lr`` is the run's lr then);
    - ``callback(result)`` is called with an :class:`EpochResult` after every epoch; it
      ends training by setting ``trainer.stop_training = True`` (Keras's name): ``fit()``
      then returns the history after that epoch, with ``trainer.epoch`` that epoch;
    - ``target_range=(low, high)``, two finite numbers with low < high, turns integer labels
      into rows of ``low`` with ``high`` at the label (course notes train sigmoid outputs
      towards 0.01 / 0.99), else one-hot; target rows (N, C) are used as they are, and
      refused with a ``target_range``;
    - ``frozen``: parameters left untrained (PyTorch's ``p.requires_grad_(False)``, Keras's
      ``layer.trainable = False``), by their names in ``net.params`` (``"W1"``) or by a
      layer's path in ``net.named_layers()`` (``"layers[0]"``, that layer's parameters and
      those of the layers inside it); kept as ``trainer.frozen``, the parameter names. An
      unknown name, or one freezing every parameter, is a ``ValueError``. The optimizer is
      given the other parameters only, so a frozen one stays bit for bit as it was, with
      every optimizer, weight decay included, and the optimizer makes no state for it
      (state it already held, from a checkpoint, is kept unchanged). A network whose
      ``gradient`` takes ``params=`` (:meth:`~xpnet.Sequential.gradient`) is asked for the
      trained ones only: the backward stops at the first layer holding one, as autograd
      skips the layers before the first parameter that requires a gradient, so freezing the
      first layers saves their backward; frozen layers after it still compute theirs, which
      the layers before them need.
      BatchNormalization's running mean and variance are not parameters: a frozen one's
      keep updating in training, as PyTorch's do in train mode (Keras's ``trainable =
      False`` on a BatchNormalization stops them too; xpnet has no per-layer eval mode).

    ``fit()`` returns the :class:`History` (also kept as ``trainer.history``);
    ``trainer.epoch`` and ``trainer.iterations`` count the epochs and updates done. Each
    ``fit()`` sets ``stop_training`` to False first, as Keras's and Lightning's do, so a
    later call goes on from ``epoch + 1`` (a signal handler or another thread may set it
    too: training stops after the epoch in progress). The
    book's keywords (``mini_batch_size``, ``optimizer_param``, ...) are a ``TypeError``
    naming xpnet's. An epoch whose train loss is NaN or infinite stops training with
    :class:`TrainingDiverged` (after it is in the history, before the callback sees it),
    as Keras's ``TerminateOnNaN`` stops: a diverged network only trains on NaN.
    Pass the same optimizer object (or one restored from a checkpoint) and the
    previous ``history`` when resuming, with ``start_epoch`` its last epoch (another is a
    ``ValueError``). Labels are validated once, up front, and so are that the network takes
    the test inputs (an empty test set is allowed) and that its parameters and the
    optimizer's state are finite, before any weight moves.
    """

    @refuses_book_keywords
    @_optimizer_checked_first
    def __init__(
        self,
        net: Any,
        optimizer: Optimizer,
        x_train: Any,
        t_train: Any,
        x_test: Any,
        t_test: Any,
        *,
        epochs: int,
        batch_size: int = 100,
        seed: int | None = 0,
        eval_samples: int | None = None,
        eval_batch_size: int = EVAL_BATCH_SIZE,
        evaluate_on: Callable[[Any], Any] | None = None,
        start_epoch: int = 0,
        history: History | None = None,
        progress: bool | None = None,
        verbose: bool = False,
        callback: Callable[[EpochResult], None] | None = None,
        target_range: tuple[float, float] | None = None,
        frozen: str | Iterable[str] | None = None,
        lr_schedule: Schedule | None = None,
        base_lr: float | None = None,
    ) -> None:
        counts = [
            ("epochs", epochs, 0),
            ("start_epoch", start_epoch, 0),
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
        ]
        optional = [("eval_samples", eval_samples, 1), ("seed", seed, 0)]
        for name, value, least in counts + [c for c in optional if c[1] is not None]:
            require_count(name, value, least)
        if start_epoch > epochs:  # equal is a finished run: nothing left to train
            raise ValueError(
                f"start_epoch {start_epoch} is past epochs {epochs}: training runs until "
                "epoch `epochs`, counting the `start_epoch` already done"
            )
        if history is not None and len(history) and history.epochs[-1] != start_epoch:
            raise ValueError(
                f"the history ends at epoch {history.epochs[-1]}, but start_epoch is "
                f"{start_epoch}: to resume, pass start_epoch={history.epochs[-1]} (the epochs "
                "would repeat, and their shuffles, otherwise); to start afresh, no history"
            )
        _require_optimizer(optimizer)
        if lr_schedule is not None and not callable(getattr(lr_schedule, "lr", None)):
            raise TypeError(
                "lr_schedule must be a schedule with lr(base_lr, epoch), such as "
                f"xpnet.schedules.StepLR(10); got an object of type {type(lr_schedule).__name__}"
            )
        if lr_schedule is not None and not is_real(getattr(optimizer, "lr", None)):
            raise TypeError(
                f"lr_schedule {lr_schedule!r} sets optimizer.lr, but the optimizer "
                f"({type(optimizer).__name__}) has no number lr"
            )
        if base_lr is not None:
            if lr_schedule is None:
                raise ValueError(
                    f"base_lr={base_lr!r} is an lr_schedule's base lr, but no lr_schedule is "
                    "given: without one, every epoch runs at optimizer.lr (set it instead)"
                )
            base_lr = hyperparameter("base_lr", base_lr)
        target_range = _checked_range(target_range)
        given = {"x_train": x_train, "t_train": t_train, "x_test": x_test, "t_test": t_test}
        for name, a in given.items():
            _require_batch(name, a)
        x_train, t_train, x_test, t_test = map(untracked, given.values())
        if x_train.shape[0] == 0:
            raise ValueError("the training set is empty")
        if x_train.shape[0] != t_train.shape[0] or x_test.shape[0] != t_test.shape[0]:
            raise ValueError(
                f"inputs and labels differ in length: train {x_train.shape[0]} vs "
                f"{t_train.shape[0]}, test {x_test.shape[0]} vs {t_test.shape[0]}"
            )
        if getattr(net, "last_layer", True) is None:  # a stack: fit() would fail in its loss
            raise TypeError(NO_LOSS)
        first = next(iter(net.params.values()), None)
        if first is None:
            raise ValueError(f"{type(net).__name__} has no parameters: there is nothing to train")
        for name, p in net.params.items():  # updated in place: NumPy's read-only arrays fail
            if not getattr(getattr(p, "flags", None), "writeable", True):
                raise ValueError(
                    f"parameter {name!r} is a read-only array (writeable=False, as "
                    "numpy.broadcast_to gives): the optimizer updates parameters in place; "
                    "give the layer a writable copy (numpy.array(a))"
                )
            if tracked_by_autograd(p):
                raise ValueError(
                    f"parameter {name!r} is a PyTorch tensor with requires_grad=True (as "
                    "torch.nn.Parameter is): the optimizer updates parameters in place, which "
                    "autograd refuses, and xpnet computes the gradients itself; give the layer "
                    "the tensor's .detach()"
                )
        self.frozen = frozen_names(net, frozen)
        self._trainable = _trainable(net.params, self.frozen)
        # The names whose gradients a step needs, for a network that can skip the others.
        self._wanted = tuple(self._trainable) if self.frozen and _selects(net) else None
        _require_finite(net, optimizer)
        _warn_of_batches_of_one(net, x_train.shape[0], batch_size)
        self.xp = namespace_of(first, x_train, t_train, x_test, t_test)
        # Fail now, not after an epoch has moved the weights (or made them NaN).
        classes = _outputs_for(net, "x_train", x_train)
        if x_test.shape[0]:
            _outputs_for(net, "x_test", x_test)
        require_finite(
            [("x_train", x_train), ("x_test", x_test)],
            ": training on it makes the weights NaN, and evaluating on it the losses; drop "
            "or fill those samples first (numpy.isfinite(x).all(axis=1) marks the finite ones)",
        )
        self.net, self.optimizer = net, optimizer
        self.x_train, self.x_test = x_train, x_test
        sets = []
        for name, t in (("t_train", t_train), ("t_test", t_test)):
            try:
                sets.append(labels_and_targets(t, classes, first.dtype, target_range))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from exc
        (self.labels_train, self.t_train), (self.labels_test, self.t_test) = sets
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
        self.eval_samples, self.eval_batch_size = eval_samples, eval_batch_size
        self.evaluate_on = evaluate_on
        self._eval_sets = self._placed_eval_sets()
        self.epoch = start_epoch  # epochs completed so far
        self.history = History() if history is None else history
        self.iterations = (
            self.history.iterations[-1]
            if len(self.history)
            else (start_epoch * self.batches_per_epoch)
        )
        self.progress, self.verbose = progress, verbose
        self.callback = callback
        self.lr_schedule = lr_schedule
        self.base_lr = getattr(optimizer, "lr", None) if base_lr is None else base_lr
        self.stop_training = False  # True ends fit() after the current epoch

    def _placed_eval_sets(self) -> list[tuple[Any, ...]]:
        """The first ``eval_samples`` of the train and test sets' inputs, labels and targets,
        where evaluation reads them (``evaluate_on`` applied to each)."""
        place = (lambda a: a) if self.evaluate_on is None else self.evaluate_on
        sets = []
        for arrays in (
            (self.x_train, self.labels_train, self.t_train),
            (self.x_test, self.labels_test, self.t_test),
        ):
            n = arrays[0].shape[0]
            k = n if self.eval_samples is None else min(self.eval_samples, n)
            sets.append(tuple(place(a[:k, ...]) for a in arrays))
        return sets

    def _evaluate_epoch(self, epoch: int) -> list[tuple[float, float]]:
        """``[(train accuracy, loss), (test accuracy, loss)]`` after ``epoch``. Where
        ``evaluate_on`` placed the sets, a set that place lost (:data:`EVALUATION_LOST`) is
        placed again from the arrays here and the epoch evaluated again, once, with a
        :class:`EvaluationResent` warning; a second loss is raised."""

        def evaluate_sets() -> list[tuple[float, float]]:
            return [
                evaluate(self.net, *arrays, batch_size=self.eval_batch_size)
                for arrays in self._eval_sets
            ]

        try:
            return evaluate_sets()
        except EVALUATION_LOST as exc:
            if self.evaluate_on is None:
                raise
            self._eval_sets = self._placed_eval_sets()
            warnings.warn(  # once the data is back where evaluation reads it
                f"epoch {epoch}: the evaluation data was lost where evaluate_on had put it "
                f"({type(exc).__name__}: a Dask worker holding it died); sent again, and the "
                "epoch evaluated again",
                EvaluationResent,
                stacklevel=2,
            )
            return evaluate_sets()

    def __repr__(self) -> str:
        """One line: the network's class, the optimizer, the data by dtype and shape, the
        settings, and the epochs and updates done (``Trainer(net=TwoLayerNet, optimizer=
        SGD(lr=0.1), x_train=float32[5000, 784], ..., epoch=0, iterations=0)``)."""
        settings = {
            "net": type(self.net).__name__,
            "optimizer": repr(self.optimizer),
            "x_train": describe_array(self.x_train),
            "x_test": describe_array(self.x_test),
            **{
                key: repr(getattr(self, key))
                for key in ("epochs", "batch_size", "seed", "epoch", "iterations")
            },
        }
        if self.frozen:
            settings["frozen"] = repr(self.frozen)
        if self.lr_schedule is not None:
            settings["lr_schedule"] = repr(self.lr_schedule)
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in settings.items())})"

    # The book's names for what xpnet spells otherwise: reading one says what to use.
    train = BookName("history = trainer.fit()")
    train_acc_list = BookName("history.train_acc (history = trainer.fit())")
    test_acc_list = BookName("history.test_acc (history = trainer.fit())")
    train_loss_list = BookName("history.train_loss (history = trainer.fit(), per epoch)")

    @property
    def batches_per_epoch(self) -> int:
        """Parameter updates per epoch: ``ceil(N / batch_size)``."""
        return math.ceil(self.x_train.shape[0] / self.batch_size)

    def train_epoch(self, order: Any, label: str = "") -> None:
        """One pass over the training set in the order ``order`` (N,) (indices on the device)."""
        net, bs, params, wanted = self.net, self.batch_size, self._trainable, self._wanted
        n = self.x_train.shape[0]
        bar = tqdm(
            total=self.batches_per_epoch,
            desc=label,
            unit="batch",
            leave=False,
            file=sys.stderr,
            disable=None if self.progress is None else not self.progress,  # None: TTY only
        )
        with bar:
            for start in range(0, n, bs):
                idx = order[start : min(start + bs, n)]  # in-bounds stop: the standard's rule
                x = take(self.x_train, idx, axis=0)
                t = take(self.t_train, idx, axis=0)
                grads = net.gradient(x, t) if wanted is None else net.gradient(x, t, params=wanted)
                self.optimizer.update(params, grads)
                self.iterations += 1
                bar.update()

    def fit(self) -> History:
        """Train epochs ``epoch + 1 .. epochs`` (``epoch``: those done), or until an epoch
        ends with ``stop_training`` set; return the history. With every epoch done it
        trains nothing and warns: raise ``epochs`` to go on.

        A ``KeyboardInterrupt`` (Ctrl-C) inside an epoch leaves that epoch's updates so far
        in the parameters and ``iterations``, while ``epoch`` and the history count whole
        epochs: a later ``fit()`` trains that epoch again from the changed parameters. For
        a run that resumes as if uninterrupted, save a checkpoint after each epoch (the
        ``callback``) and resume from it, as ``xpnet train`` does."""
        if self.epoch >= self.epochs:
            done = f"all {self.epochs} epochs are done" if self.epochs else "epochs=0"
            warnings.warn(
                f"fit(): {done}, nothing to train; set epochs above {self.epochs} to go on "
                f"from epoch {self.epoch + 1}",
                stacklevel=2,
            )
        self.stop_training = False
        rng = host_rng(self.seed)
        n = self.x_train.shape[0]
        for _ in range(self.epoch):  # replay the shuffles of the epochs already done
            rng.permutation(n)
        device = array_api_compat.device(self.x_train)
        for epoch in range(self.epoch + 1, self.epochs + 1):
            began = time.perf_counter()
            order = self.xp.asarray(rng.permutation(n), dtype=self.xp.int64, device=device)
            lr = None
            if self.lr_schedule is not None:
                lr = self.optimizer.lr = self.lr_schedule.lr(self.base_lr, epoch)
            self.train_epoch(order, f"epoch {epoch}/{self.epochs}")
            (train_acc, train_loss), (test_acc, test_loss) = self._evaluate_epoch(epoch)
            synchronize(*self.net.params.values())
            result = EpochResult(
                epoch=epoch,
                epochs=self.epochs,
                iterations=self.iterations,
                train_acc=train_acc,
                test_acc=test_acc,
                train_loss=train_loss,
                test_loss=test_loss,
                seconds=time.perf_counter() - began,
                lr=lr,
            )
            self.history.append(result)
            self.epoch = epoch
            if not math.isfinite(train_loss):  # read once an epoch, on the host already
                raise TrainingDiverged(result, self.optimizer)
            if self.verbose:
                print(result, flush=True)
            if self.callback is not None:
                self.callback(result)
            if self.stop_training:
                break
        return self.history


def train(
    net: Any,
    optimizer: Optimizer,
    x_train: Any,
    t_train: Any,
    x_test: Any,
    t_test: Any,
    **kwargs: Any,
) -> History:
    """``Trainer(net, optimizer, x_train, t_train, x_test, t_test, **kwargs).fit()``."""
    return Trainer(net, optimizer, x_train, t_train, x_test, t_test, **kwargs).fit()
