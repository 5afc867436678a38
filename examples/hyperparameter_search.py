"""The book's random hyperparameter search (section 6.5, ``hyperparameter_optimization.py``),
each trial a task on a Dask cluster.

Each trial trains ``MultiLayerNet(784, [100] * 6, 10, weight_decay=wd)`` with ``SGD(lr=lr)``,
batches of 100, on 400 of the first 500 mnist-5k training digits and is scored on the
other 100 (the book's 20 % validation split, after ``shuffle_dataset(seed=0)``); ``lr`` is
``10 ** U(-6, -2)`` and ``wd`` ``10 ** U(-8, -4)``, as the book draws them.

- One seeded Generator draws every trial's settings and its own seed (the network's weights
  and its shuffles) before any trial runs, so a search gives the same results on any number
  of workers, or in this process (``--scheduler none``);
- the data go to every worker once (``client.scatter(..., broadcast=True)``): passed to
  ``client.map`` as they are, they would travel inside the task graph and again with each
  task;
- a trial draws no progress bar (``progress=False``: a ``LocalCluster``'s workers write to
  the terminal they were started from) and prints nothing; the client prints each trial as
  it ends, then the best ones as the book does;
- a trial that diverges (``TrainingDiverged``: a NaN or infinite loss) is reported as
  diverged, without NumPy's overflow warnings, and the search goes on, as the book's keeps
  going past NaN accuracies;
- a trial whose workers all died while running it (Dask's ``KilledWorker``, after
  ``distributed.scheduler.allowed-failures`` tries) is reported as lost, and the search
  goes on;
- when the workers holding the data all die, the data are lost with them and Dask cancels
  the trials not ended: the search says so, sends the data again and runs those trials
  again; lost again before any trial ended, it stops: the trials that ended are ranked,
  the rest counted, and the script exits with status 1;
- Ctrl-C stops the search: the trials that ended are ranked as at the normal end, the
  rest cancelled and counted, and the script exits with status 130; so does a Ctrl-C
  while the cluster stops, after every trial ended;
- a bad argument (``--trials 0``, an ``--lr`` range with LOW > HIGH, a ``--scheduler`` of no
  form Dask takes or where no scheduler answers) exits with status 2 and one line naming
  it, as argparse does, before the data are loaded or a cluster started (but for the
  scheduler that does not answer);
- Dask's nannies start each worker with one BLAS thread (``OPENBLAS_NUM_THREADS=1`` and
  the like), so trials running side by side do not fight over the cores.

    python examples/hyperparameter_search.py                           # 10 x 5 epochs, local:2
    python examples/hyperparameter_search.py --trials 100 --epochs 50  # the book's search
    python examples/hyperparameter_search.py --scheduler tcp://HOST:8786
    python examples/hyperparameter_search.py --scheduler none          # in this process
"""

import argparse
import math
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from xpnet import MultiLayerNet
from xpnet.datasets import load_mnist
from xpnet.optim import SGD
from xpnet.training import Trainer, TrainingDiverged, shuffle_dataset

if TYPE_CHECKING:  # Dask is needed for a cluster only: --scheduler none runs without it
    from distributed import Client

BOOK_SAMPLES = 500  # the book's x_train[:500]
VALIDATION_RATE = 0.20
BOOK_LR_EXPONENTS = (-6.0, -2.0)
SHOWN = 20  # the book's graph_draw_num: the best trials it prints and plots
# How long lost data wait for a worker to send them to: nannies restart their workers in
# seconds, a busy machine's more slowly than require_workers' default 5 s.
WORKERS_BACK_S = 60.0


@dataclass(frozen=True)
class Setting:
    """One trial's hyperparameters and the seed of its weights and shuffles."""

    lr: float
    weight_decay: float
    seed: int

    def __str__(self) -> str:
        return f"lr:{self.lr:.3g}, weight decay:{self.weight_decay:.3g}"


@dataclass(frozen=True)
class Split:
    """Training digits (N, 784) and labels (N,), and the validation digits and labels."""

    x_train: np.ndarray
    t_train: np.ndarray
    x_val: np.ndarray
    t_val: np.ndarray


@dataclass(frozen=True)
class Result:
    """A trial's validation and training accuracy after each epoch; ``diverged``: the epoch
    whose train loss was NaN or infinite, where training stopped (None: it did not);
    ``lost``: the trial's workers all died while running it (no accuracies)."""

    setting: Setting
    val_acc: list[float]
    train_acc: list[float]
    diverged: int | None = None
    lost: bool = False

    @property
    def score(self) -> float:
        """The last validation accuracy; a diverged or lost trial ranks below every other."""
        return -1.0 if self.diverged is not None or self.lost else self.val_acc[-1]

    @property
    def outcome(self) -> str:
        """``val acc:0.713``, ``diverged in epoch 3``, or ``lost with its workers``."""
        if self.lost:
            return "lost with its workers"
        if self.diverged is not None:
            return f"diverged in epoch {self.diverged}"
        return f"val acc:{self.val_acc[-1]:.3f}"

    def __str__(self) -> str:
        return f"{self.outcome} | {self.setting}"


def draw_settings(
    trials: int, seed: int = 0, lr_exponents: tuple[float, float] = BOOK_LR_EXPONENTS
) -> list[Setting]:
    """``trials`` settings from one Generator seeded with ``seed``, each with a seed of its
    own; ``lr`` is ``10 ** U(*lr_exponents)``."""
    rng = np.random.default_rng(seed)
    settings = []
    for _ in range(trials):
        weight_decay = 10 ** rng.uniform(-8, -4)
        lr = 10 ** rng.uniform(*lr_exponents)
        settings.append(Setting(float(lr), float(weight_decay), int(rng.integers(2**31))))
    return settings


def book_split(samples: int = BOOK_SAMPLES) -> Split:
    """The first ``samples`` mnist-5k training digits, shuffled (seed 0), the first 20 % of
    them for validation: 400 + 100 for the book's 500."""
    (x, t), _ = load_mnist(name="mnist-5k", xp=np)
    x, t = shuffle_dataset(x[:samples, ...], t[:samples], seed=0)
    val = int(x.shape[0] * VALIDATION_RATE)
    return Split(x[val:, ...], t[val:], x[:val, ...], t[:val])


def trial(setting: Setting, data: Split, epochs: int) -> Result:
    """Train the book's network with ``setting`` for ``epochs`` epochs, quietly."""
    net = MultiLayerNet(
        784, [100] * 6, 10, weight_decay=setting.weight_decay, seed=setting.seed, xp=np
    )
    trainer = Trainer(
        net,
        SGD(lr=setting.lr),
        data.x_train,
        data.t_train,
        data.x_val,
        data.t_val,
        epochs=epochs,
        seed=setting.seed,
        progress=False,
    )
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging trial's, on a worker
            history, diverged = trainer.fit(), None
    except TrainingDiverged as exc:
        history, diverged = trainer.history, exc.result.epoch
    return Result(setting, history.test_acc, history.train_acc, diverged)


class SearchStopped(Exception):
    """The cluster lost the trials' data and could not be given it again; ``results``: the
    trials that ended, in the order of the settings."""

    def __init__(self, why: str, results: list[Result]) -> None:
        super().__init__(why)
        self.results = results


def search(client: "Client", data: Split, settings: list[Setting], epochs: int) -> list[Result]:
    """Every setting's trial as a task on ``client``'s cluster, printed as each ends;
    the results in the order of ``settings``, only those that ended if Ctrl-C stopped
    the search (the other trials are cancelled).

    When the workers holding the data all die, the data are lost with them (scattered
    data cannot be recomputed) and Dask cancels the trials not ended: the data are sent
    again and those trials run again. :class:`SearchStopped` when the data sent again are
    lost before any trial ended, or no worker is left to take them.
    """
    from concurrent.futures import CancelledError

    from distributed import KilledWorker

    from xpnet.distributed import SchedulerUnavailableError, completed, require_workers

    ended: dict[int, Result] = {}
    waiting = list(range(len(settings)))  # the trials to run, by their place in settings
    ended_when_resent, stopped = None, None
    require_workers(client)
    try:
        while waiting:
            shared = client.scatter(data, broadcast=True, hash=False)  # once per worker
            futures = client.map(trial, [settings[i] for i in waiting], data=shared, epochs=epochs)
            place = {future.key: i for future, i in zip(futures, waiting, strict=True)}
            lost = []
            with closing(completed(client, futures, raise_errors=False)) as results:
                for future, result in results:
                    i = place[future.key]
                    if isinstance(result, CancelledError):  # the data lost with the workers
                        lost.append(i)
                        continue
                    if isinstance(result, KilledWorker):
                        result = Result(settings[i], [], [], lost=True)
                    elif isinstance(result, BaseException):
                        raise result
                    ended[i] = result
                    print(result, flush=True)
            waiting = sorted(lost)
            if not waiting:
                break
            if ended_when_resent == len(ended):
                stopped = (
                    "the Dask cluster lost the trials' data again before any trial ended "
                    "(the workers holding it died)"
                )
                break
            ended_when_resent = len(ended)
            print(
                "the Dask cluster lost the trials' data with the workers holding it: "
                f"sending it again for the {len(waiting)} trial{'s' * (len(waiting) > 1)} "
                "not ended",
                file=sys.stderr,
                flush=True,
            )
            try:
                require_workers(client, timeout=WORKERS_BACK_S)
            except SchedulerUnavailableError as exc:  # no worker left to send the data to
                stopped = str(exc)
                break
    except KeyboardInterrupt:
        pass
    results = [ended[i] for i in sorted(ended)]
    if stopped is not None:
        raise SearchStopped(stopped, results)
    return results


def main(
    trials: int = 10,
    epochs: int = 5,
    scheduler: str | None = "local:2",
    seed: int = 0,
    lr_exponents: tuple[float, float] = BOOK_LR_EXPONENTS,
) -> tuple[list[Result], int]:
    """Run the search (``scheduler``: an address, ``local:N``, or None for this process)
    and print the best trials; return every trial's result (those that ended, after
    Ctrl-C or losing the trials' data), best first, and the exit status: 0, 130 after
    Ctrl-C, 1 when the cluster lost the trials' data for good."""
    data, settings = book_split(), draw_settings(trials, seed, lr_exponents)
    began = time.perf_counter()
    results, stopped, interrupted = None, None, False
    if scheduler is None:
        results = []
        try:
            for setting in settings:
                results.append(trial(setting, data, epochs))
                print(results[-1], flush=True)
        except KeyboardInterrupt:
            pass
    else:
        from xpnet.distributed import connect

        try:
            with connect(scheduler) as client:
                try:
                    results = search(client, data, settings, epochs)
                except SearchStopped as exc:
                    results, stopped = exc.results, exc
        except KeyboardInterrupt:
            if results is None:  # before the first trial: starting the cluster
                raise
            interrupted = True  # as the cluster stopped, the search over
    seconds = time.perf_counter() - began
    left = trials - len(results)
    if stopped is not None:
        print(f"stopped: {stopped}: {left} of {trials} trials not finished", file=sys.stderr)
    interrupted = interrupted or (left > 0 and stopped is None)
    if interrupted:  # after the terminal's ^C, on a line of its own
        if left:
            print(f"\ninterrupted: {left} of {trials} trials not finished", file=sys.stderr)
        else:
            print(
                f"\ninterrupted as the cluster stopped: all {trials} trials had ended",
                file=sys.stderr,
            )
    ranked = sorted(results, key=lambda r: r.score, reverse=True)
    print("=========== Hyper-Parameter Optimization Result ===========")
    for i, result in enumerate(ranked[:SHOWN]):
        print(f"Best-{i + 1}({result.outcome}) | {result.setting}")
    where = "in this process" if scheduler is None else f"on {scheduler}"
    print(f"{len(results)} trials x {epochs} epochs {where}: {seconds:.1f} s")
    return ranked, 130 if interrupted else 1 if stopped is not None else 0


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit as argparse does (status 2, one line naming the value) for an ``--lr`` range that
    is not two finite exponents LOW <= HIGH, or a ``--scheduler`` of a form Dask does not
    take, or without Dask: before the data are loaded or a cluster started."""
    low, high = args.lr
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        parser.error(f"--lr {low:g} {high:g}: expected two finite exponents LOW <= HIGH")
    if args.scheduler == "none":
        return
    try:
        from xpnet.distributed import check_address
    except ImportError as exc:
        parser.error(
            f"--scheduler {args.scheduler}: {exc}; or run the trials here with --scheduler none"
        )
    try:
        check_address(args.scheduler)
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    from xpnet.backend import BackendUnavailableError
    from xpnet.cli.common import non_negative_int, positive_int

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=positive_int, default=10, help="trials (the book: 100)")
    parser.add_argument(
        "--epochs", type=positive_int, default=5, help="epochs a trial (the book: 50)"
    )
    parser.add_argument(
        "--scheduler",
        default="local:2",
        help="a scheduler's address (tcp://host:8786), local:N to start N worker processes "
        "here, or none to run the trials one after another in this process",
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="the seed of the trials' settings"
    )
    parser.add_argument(
        "--lr",
        type=float,
        nargs=2,
        default=BOOK_LR_EXPONENTS,
        metavar=("LOW", "HIGH"),
        help="draw lr as 10 ** U(LOW, HIGH) (the book: -6 -2)",
    )
    args = parser.parse_args()
    check_arguments(parser, args)
    scheduler = None if args.scheduler == "none" else args.scheduler
    try:
        _, status = main(args.trials, args.epochs, scheduler, args.seed, tuple(args.lr))
    except KeyboardInterrupt:  # before the first trial: loading the data, starting the cluster
        print("\ninterrupted: no trial run", file=sys.stderr)
        sys.exit(130)
    # No scheduler answering, no workers, workers that cannot run xpnet: one line, as
    # xpnet's own commands say it (xpnet.distributed's SchedulerUnavailableError is a
    # ConnectionError, its WorkerEnvironmentError a BackendUnavailableError).
    except (ConnectionError, BackendUnavailableError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    sys.exit(status)
