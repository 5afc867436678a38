"""``xpnet train``: train the network the flags describe, print the learning curves."""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import platform
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from xpnet import backend
from xpnet.cli.common import (
    PIPE_CLOSED,
    add_scheduler,
    check_output,
    check_scheduler,
    cluster,
    error,
    lr_schedule,
    non_negative_float,
    positive_float,
    positive_int,
    schedule_of,
    stdout_closed_calls,
)
from xpnet.cli.network import (
    IMAGES_EVAL_BATCH,
    NETWORK_SETTINGS,
    TRAIN_DEFAULTS,
    add_layers_module,
    add_network_flags,
    checkpoint_metadata,
    describe,
    import_layers,
    load_data,
    loss_words,
    misfit,
    network,
    network_from_the_file,
    takes_images,
    train_settings,
)

SAVE_INTERVAL_S = 60.0  # --save-interval's default
# The signals that stop a run after its epoch (a second stops it at once): how they are named,
# and the word for a run they stopped.
STOPPING = {signal.SIGINT: ("Ctrl-C", "interrupted"), signal.SIGTERM: ("SIGTERM", "terminated")}
# How the end of a run says what stopped it: those signals, or a standard output whose reader
# has gone (`| head`), which stops it after the epoch as they do (Python ignores SIGPIPE).
ENDED = {signum: word for signum, (_, word) in STOPPING.items()} | {signal.SIGPIPE: "stdout closed"}
# The run record's settings that a note does not call a change on resume: the training length
# (counted from the start), the data folder (a note of its own) and what records the changes.
NOT_COMPARED = ("epochs", "iters", "data_dir", "changes")


def add_train(sub: argparse._SubParsersAction) -> None:
    from xpnet.optim import OPTIMIZERS

    p = sub.add_parser(
        "train",
        help="train a network on MNIST-style data (the book's chapter 5 run)",
        description="Train a fully connected network with backprop; print train/test "
        "accuracy per epoch and a summary. The defaults are the book's: 784-50-10 ReLU, "
        "weights std 0.01, SGD lr 0.1, batch 100, 10,000 iterations.",
    )
    add_network_flags(p, command="train", default_dataset="mnist")
    p.add_argument("--optimizer", type=str.lower, choices=list(OPTIMIZERS), help="default sgd")
    p.add_argument(
        "--lr",
        type=positive_float,
        help="learning rate (default 0.1 for sgd, as the book's training script; "
        "the book's default for the others)",
    )
    p.add_argument(
        "--lr-schedule",
        type=lr_schedule,
        metavar="SPEC",
        help="change the lr every epoch, from --lr, as torch's schedulers stepped once an "
        "epoch: step:N[,GAMMA] (StepLR: times GAMMA, default 0.1, every N epochs), "
        "multistep:M1/M2/...[,GAMMA] (MultiStepLR: after epochs M1, M2, ...), exp:GAMMA "
        "(ExponentialLR), cosine:T_MAX[,ETA_MIN] (CosineAnnealingLR) (default none; "
        "--resume keeps the checkpoint's unless given; --lr-schedule none ends it)",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, help="train until this epoch")
    length.add_argument(
        "--iters",
        type=positive_int,
        help="iterations (updates) as in the book, rounded up to whole epochs of "
        "ceil(n_train / batch) updates (default 10000: at batch 100, 250 epochs of mnist-5k's "
        "4,000 samples, 17 of MNIST's 60,000); a batch larger than the training set is "
        "all of it, one update an epoch",
    )
    p.add_argument(
        "--train-samples",
        type=positive_int,
        default=None,
        help="train on the first N training samples (default all; the book's overfitting "
        "runs take 300; --resume keeps the checkpoint's)",
    )
    p.add_argument(
        "--eval-samples",
        type=positive_int,
        default=None,
        help="evaluate on the first N train/test samples per epoch, all of a set with "
        "fewer, as the book's slicing (default all; --resume keeps the checkpoint's)",
    )
    p.add_argument(
        "--save",
        metavar="PATH",
        help="write a checkpoint (.npz) at the end, at the end of the epoch a first Ctrl-C, "
        "SIGTERM or closed stdout (| head) stops after, and during training as "
        "--save-interval says",
    )
    p.add_argument(
        "--save-interval",
        type=non_negative_float,
        metavar="SECONDS",
        help=f"with --save, also write it at the end of an epoch when SECONDS have passed "
        f"since the last write (default {SAVE_INTERVAL_S:g}; 0: after every epoch)",
    )
    p.add_argument(
        "--plot",
        metavar="PATH",
        help="write the learning curves, in the format the suffix names (.png, .svg, .pdf, .jpg, "
        "...: any that matplotlib writes; PNG without one)",
    )
    p.add_argument(
        "--resume",
        metavar="PATH",
        help="continue from a checkpoint: its network, optimizer state, epoch and settings "
        "(flags given override settings, but not the architecture, --dataset, "
        "--train-samples or the initial weights; --epochs/--iters count from the start of "
        "training); a network saved from Python is rebuilt as saved, with the file's layers "
        "and loss",
    )
    p.add_argument(
        "--freeze",
        action="append",
        metavar="NAME",
        help="leave a parameter untrained, by its name (W1, b1, ...) or its layer's path "
        "(layers[0]: all of that layer's), as PyTorch's requires_grad_(False); repeatable "
        "(default none; --resume keeps the checkpoint's unless given; --freeze none "
        "unfreezes them)",
    )
    add_layers_module(p, "--resume")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    add_scheduler(p, "evaluate on the full train and test sets on a Dask cluster every epoch")
    p.set_defaults(run=_train)


@contextmanager
def _the_flags_hyperparameters() -> Iterator[None]:
    """Load an optimizer's state keeping its hyperparameters, the flags', without the
    warning that they differ from the file's: a flag that differs is meant to."""
    from xpnet.checkpoint import HyperparametersDiffer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HyperparametersDiffer)
        yield


@contextmanager
def _signals_stop_after_the_epoch(
    trainer: Any, running: Callable[[], int], received: list[signal.Signals]
) -> Iterator[None]:
    """While training: the first Ctrl-C (SIGINT) or SIGTERM sets ``trainer.stop_training``
    and says so on stderr at once (``running()``: the epoch it stops after), a second stop
    of the run (either signal, after one of them or a closed stdout) raises
    ``KeyboardInterrupt`` (the parameters are mid-epoch then). The signals are appended to
    ``received``, in order. The previous handlers are back on exit. Nothing changes
    outside the main thread (``signal.signal`` raises there), nor for a signal that is
    ignored (``cmd &`` in a script ignores SIGINT), as Python leaves it."""
    previous = {signum: signal.getsignal(signum) for signum in STOPPING}
    caught = [
        signum
        for signum, handler in previous.items()
        if handler not in (signal.SIG_IGN, None)  # None: not set from Python, not put back
    ]
    if threading.current_thread() is not threading.main_thread():
        caught = []

    def stop_after_the_epoch(signum: int, frame: Any) -> None:
        received.append(signal.Signals(signum))
        if len(received) > 1:
            raise KeyboardInterrupt
        trainer.stop_training = True
        again = "Ctrl-C" if signum == signal.SIGINT else f"{STOPPING[signum][0]} or Ctrl-C"
        line = f"\nstopping after epoch {running()} ({again} again to stop now)\n"
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except RuntimeError:  # the signal came in the middle of a write to stderr
            os.write(2, line.encode())

    for signum in caught:
        signal.signal(signum, stop_after_the_epoch)
    try:
        yield
    finally:
        for signum in caught:
            signal.signal(signum, previous[signum])


def _ended_by(received: list[signal.Signals]) -> tuple[str, int]:
    """How a run stopped by ``received`` (SIGINT when none: a ``KeyboardInterrupt`` raised
    where no handler was installed) ends: ``interrupted``, ``terminated`` or ``stdout
    closed``, and its exit status, 128 plus the number of the signal that ended it (130,
    143, 141 for SIGPIPE), as a shell reports a process that signal killed."""
    signum = received[-1] if received else signal.SIGINT
    return ENDED[signum], 128 + signum


def _versions(device: str | None) -> dict[str, str]:
    """What computed a run: xpnet's, Python's and NumPy's versions, and CuPy's on a GPU."""
    from xpnet import __version__

    versions = {
        "xpnet": __version__,
        "python": platform.python_version(),
        "numpy": importlib.metadata.version("numpy"),
    }
    if backend.parse_device(device).kind == "cuda":  # imported by backend.selected by now
        versions["cupy"] = sys.modules["cupy"].__version__
    return versions


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """What run record ``after`` changes of ``before``: ``{"settings": {key: [old, new]},
    "versions": {name: [old, new]}}``, each holding only what differs (empty when nothing
    does). What ``before`` does not record is not compared: an older file's settings, or a
    run's of another model."""

    def differ(old: dict[str, Any], new: dict[str, Any], skip: tuple[str, ...]) -> dict:
        return {
            k: [old[k], v] for k, v in new.items() if k in old and k not in skip and old[k] != v
        }

    settings = differ(before, after, (*NOT_COMPARED, "versions"))
    versions = differ(before.get("versions", {}), after["versions"], ())
    return {k: v for k, v in (("settings", settings), ("versions", versions)) if v}


def _in_words(changed: dict[str, dict[str, list[Any]]]) -> str:
    """``--seed 0 -> 5, --batch-size 100 -> 50, numpy 2.4.6 -> 2.5.0``."""
    flags = [(f"--{k.replace('_', '-')}", v) for k, v in changed.get("settings", {}).items()]
    return ", ".join(
        f"{name} {_word(old)} -> {_word(new)}"
        for name, (old, new) in [*flags, *changed.get("versions", {}).items()]
    )


def _word(value: Any) -> str:
    """A setting's value as typed: ``0.01,0.99`` for a range, ``none`` for null."""
    if value is None or value == []:
        return "none"
    if isinstance(value, list):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cannot_write(path: str, exc: OSError) -> str:
    """``cannot write PATH: why [Errno N]`` for an error of the file system (the disk
    full), whose message names no file; ``atomic_file``'s own refusals name it already."""
    if exc.strerror:
        return f"cannot write {path}: {exc.strerror} [Errno {exc.errno}]"
    return str(exc)


def epochs_for_iters(iters: int, batch_size: int, n_train: int) -> int:
    """The whole epochs that ``iters`` updates take: an epoch is ``ceil(n_train / batch_size)``
    updates (the last batch smaller, or the only one when the batch exceeds the set)."""
    return math.ceil(iters / math.ceil(n_train / batch_size))


def _evaluation(client: Any, sizes: tuple[int, int], batch: int, quiet: bool) -> dict[str, Any]:
    """Trainer keywords for evaluation: chunks of ``batch`` samples here, or on the cluster
    every set as one dask array (its chunks are Dask's)."""
    if client is None:
        return {"eval_batch_size": batch}
    from xpnet.distributed import rows, threads

    if not quiet:
        print(
            f"evaluating on the Dask cluster at {client.scheduler.address} "
            f"({threads(client)} worker threads)"
        )
    return {"evaluate_on": lambda a: rows(a, client=client), "eval_batch_size": max(sizes)}


def _other_than_a_checkpoint(path: str) -> str | None:
    """What the file at ``path`` is when it holds something other than a checkpoint, which
    ``--save`` would destroy (None for no file, an empty one or a checkpoint)."""
    from xpnet.checkpoint import not_a_checkpoint

    try:
        if os.path.getsize(path) == 0:
            return None
    except FileNotFoundError:
        return None
    return not_a_checkpoint(path)


def _saved_hyperparameters(saved: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The resumed optimizer's hyperparameters besides ``lr`` (momentum, betas, ...), when
    the run goes on with the same optimizer; the CLI has flags for none of them. Only the
    ones its class takes: a subclass saved under a built-in name may have recorded more."""
    from xpnet.optim import make_optimizer

    saved_opt = saved.get("optimizer") or {}
    if saved_opt.get("name") != settings["optimizer"]:
        return {}
    taken = set(make_optimizer(settings["optimizer"]).config()) - {"name", "lr"}
    return {k: v for k, v in saved_opt.items() if k in taken}


def _lost_on_cluster(client: Any) -> tuple[type[BaseException], ...]:
    """What ends a run whose evaluation data died with a worker (``rows`` keeps the sets'
    chunks on the workers; the trainer sends them again once): Dask's error for lost data,
    or no worker left to send them to; nothing without a cluster."""
    if client is None:
        return ()
    from xpnet.distributed import SchedulerUnavailableError
    from xpnet.training import EVALUATION_LOST

    return (*EVALUATION_LOST, SchedulerUnavailableError)


def _fits(saved: dict[str, Any], net: Any) -> bool:
    """Whether ``net``, built from the settings, has the layers of the checkpoint's network
    (``saved``, its architecture); the shapes of their parameters are ``load_params``'s to check."""
    from xpnet.checkpoint import architecture

    rebuilt = architecture(net)
    if rebuilt is None or saved["class"] != rebuilt["class"]:
        return False
    if rebuilt["class"] == "MultiLayerNet":
        return saved["sizes"] == rebuilt["sizes"]
    return [spec["layer"] for spec in saved["layers"]] == [
        spec["layer"] for spec in rebuilt["layers"]
    ]


def _same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one file (through links too), existing or not."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


# Optimizers whose step grows with the gradient (AdaGrad, RMSprop and Adam divide by its size).
SCALED_BY_THE_GRADIENT = ("sgd", "momentum", "nesterov")


def _summed_loss_advice(settings: dict[str, Any], lr_given: float | None, lr: float) -> str | None:
    """Advice when a summed loss meets a batch and a learning rate ``lr`` (the optimizer's)
    chosen for a mean (or for one sample a step, the course network's): the gradient, and
    so the step, is ``batch_size`` times the mean's. ``--model course --batch-size 100`` at
    lr 0.3 otherwise saturates every sigmoid and stays at chance, without a NaN to stop it."""
    batch = settings["batch_size"]
    if (
        settings.get("reduction") != "sum"
        or batch == 1
        or lr_given is not None
        or settings["optimizer"] not in SCALED_BY_THE_GRADIENT
    ):
        return None
    if settings["lr"] is None:  # --optimizer momentum without --lr: the optimizer's own default
        chosen = f"{settings['optimizer']}'s default"
    elif settings.get("model") == "course":
        chosen = "the course's, for one sample a step"
    else:
        chosen = "the default"
    return (
        f"--reduction sum adds up the batch's {batch} losses, so each step is {batch} times "
        f"the mean's; lr {lr:g} is {chosen}: try --lr {lr / batch:g} or --reduction mean"
    )


def _train(args: argparse.Namespace) -> int:
    import time

    from xpnet import checkpoint
    from xpnet.optim import make_optimizer
    from xpnet.training import (
        EVAL_BATCH_SIZE,
        EpochResult,
        History,
        Trainer,
        TrainingDiverged,
        format_seconds,
        frozen_names,
    )

    check_scheduler(args)
    if args.save_interval is not None and not args.save:
        return error(f"--save-interval {args.save_interval:g}: nothing to save without --save")
    save_interval = SAVE_INTERVAL_S if args.save_interval is None else args.save_interval
    for option, path in (("--save", args.save), ("--plot", args.plot)):
        problem = check_output(option, path)
        if problem:
            return error(problem)
    if args.save:
        try:
            checkpoint.require_not_a_pickle_name(args.save)
        except ValueError as exc:
            return error(f"--save {exc}")
        other = _other_than_a_checkpoint(args.save)
        if other:
            return error(
                f"--save {args.save} exists and is {other}: train replaces only a checkpoint "
                "(or an empty file); move it away or name another file"
            )
    for option, path in (("--save", args.save), ("--resume", args.resume)):
        if args.plot and path and _same_file(args.plot, path):  # the plot would replace it
            return error(f"--plot {args.plot} is the checkpoint {option} names ({path})")
    if args.plot:
        from xpnet.plotting import PlottingUnavailableError, plot_format, plot_history

        try:
            plot_format(args.plot)  # before training: no matplotlib, or a suffix it cannot write
        except (PlottingUnavailableError, ValueError) as exc:
            return error(f"--plot: {exc}")
    backend.selected(args.device)  # an unknown or unavailable device fails here
    import_layers(args, "--resume", args.resume)

    saved = checkpoint_metadata(args.resume, "--resume") if args.resume else {}
    s = train_settings(args, saved)
    read = saved.get("run", {}).get("data_dir", s["data_dir"])  # (old files record none)
    if read != s["data_dir"]:  # allowed, as data moved is the same data; said, as it may not be
        print(
            f"xpnet train: note: --data-dir {s['data_dir']}: the checkpoint's run read "
            f"{s['dataset']} from {read or 'the places looked in without --data-dir'}; "
            f"resuming on the files in {s['data_dir']}",
            file=sys.stderr,
        )
    try:
        optimizer = make_optimizer(s["optimizer"], lr=s["lr"], **_saved_hyperparameters(saved, s))
    except (TypeError, ValueError) as exc:  # only a checkpoint's hyperparameters can be bad here
        return error(f"--resume {args.resume}: checkpoint field optimizer: {exc}")
    same = (saved.get("optimizer") or {}).get("name") == optimizer.name
    rebuilt, images = s["model"] is None, s["model"] == "convnet"
    if rebuilt:  # the checkpoint's network as saved: its dtype and input are the data's
        with _the_flags_hyperparameters():
            net = network_from_the_file(args.resume, args, optimizer=optimizer if same else None)
        s["dtype"] = net.dtype
        images = takes_images(net)

    (x_train, t_train), (x_test, t_test) = load_data(s, args, images=images)
    n_train, input_size = x_train.shape[0], x_train.shape[1]
    if rebuilt:
        problem = misfit(net, x_train, s["dataset"])
        if problem:
            return error(f"--resume {args.resume}: {problem}")
    else:
        net = network(s, args, input_size)
    if args.resume and not rebuilt:
        arch = saved["architecture"]
        if not _fits(arch, net):
            layered = "sizes" not in arch  # a Sequential: its layers by name
            held = ", ".join(spec["layer"] for spec in arch["layers"]) if layered else ""
            return error(
                f"--resume {args.resume}: the checkpoint's network "
                f"{f'(a Sequential of {held})' if layered else arch['sizes']} does not fit "
                f"{s['model']} on {s['dataset']} ({input_size} inputs), the model of its run "
                "settings"
            )
        with _the_flags_hyperparameters():
            checkpoint.load_params(args.resume, net, optimizer=optimizer if same else None)
    before = saved.get("run", {})
    given = args.freeze is not None
    nothing = given and any(name.lower() == "none" for name in args.freeze)
    if nothing and len(args.freeze) > 1:
        return error(f"--freeze none freezes nothing: give it alone, got {' '.join(args.freeze)}")
    try:
        frozen = frozen_names(
            net,
            ([] if nothing else args.freeze) if given else before.get("freeze", []),
            "--freeze" if given else f"--resume {args.resume}: the run's freeze",
        )
    except ValueError as exc:
        return error(str(exc))
    spec = before.get("lr_schedule") if args.lr_schedule is None else args.lr_schedule
    spec = None if spec == "none" else spec
    schedule = None if spec is None else schedule_of(spec)
    start_epoch, history = 0, History()
    unit, length = s["length"]
    epochs = length if unit == "epochs" else epochs_for_iters(length, s["batch_size"], n_train)
    if args.resume:
        start_epoch = int(saved.get("epoch", 0))
        history = History.from_dict(saved.get("history", {}))
        # Resumed, done, from a file saved from Python without a history: before --save.
        if args.plot and start_epoch >= epochs and not len(history):
            return error(f"--plot {args.plot}: {args.resume} records no epochs to draw")
        if not args.quiet:
            note = "" if same else f"; {optimizer.name} starts with fresh state"
            print(f"resuming {args.resume} after epoch {start_epoch}{note}")
    arch = describe(s, net)
    if not args.quiet:
        whole = f" (all {n_train} samples)" if s["batch_size"] > n_train else ""
        held = f"frozen {', '.join(frozen)}, " if frozen else ""
        print(
            f"{s['dataset']}: {n_train} train / {x_test.shape[0]} test; {arch}"
            f"{loss_words(s)}, {net.num_parameters():,} parameters, {optimizer!r}, "
            f"{f'{schedule!r}, ' if schedule else ''}"
            f"batch {s['batch_size']}{whole}, "
            f"{epochs} epoch{'s' * (epochs != 1)}, seed {s['seed']}, "
            f"{held}"
            f"{s['dtype']} on {backend.parse_device(args.device)}"
        )
    advice = None if args.resume else _summed_loss_advice(s, args.lr, optimizer.lr)  # at start
    if advice:
        print(f"xpnet train: note: {advice}", file=sys.stderr)
    # hidden and dtype too: a convnet's checkpoint records its layers, not MultiLayerNet's
    # sizes (for a MultiLayerNet, resuming takes them from the architecture). A network
    # rebuilt from its checkpoint has neither a model nor settings of its layers.
    keys = [k for k in TRAIN_DEFAULTS if k not in NETWORK_SETTINGS] if rebuilt else TRAIN_DEFAULTS
    run = ({} if rebuilt else {"model": s["model"]}) | {k: s[k] for k in keys}
    run[unit] = length
    if before:  # a run of an xpnet train without --freeze (--lr-schedule) had none
        before = {"freeze": [], "lr_schedule": None, **before}
    if not rebuilt and (not args.resume or "weight_init" in before):  # (an older file's: unknown)
        run["weight_init"] = before.get("weight_init", s["weight_init"])  # null: the default
    run |= {
        "lr": optimizer.lr,  # the base lr, which a schedule changes every epoch
        "lr_schedule": spec,
        "freeze": list(frozen),
        "device": str(backend.parse_device(args.device)),
    }
    run["versions"] = _versions(args.device)
    changed = _changes(before, run) if args.resume else {}
    run["changes"] = before.get("changes", [])
    if changed:
        run["changes"] = [*run["changes"], {"epoch": start_epoch} | changed]
        print(
            f"xpnet train: note: --resume {args.resume} changes the run after epoch "
            f"{start_epoch}: {_in_words(changed)}; it no longer continues bit for bit as the "
            "uninterrupted run (the run record of --save lists the changes)",
            file=sys.stderr,
        )
    last_save, saved_epoch = time.perf_counter(), 0

    def save(epoch: int) -> None:
        nonlocal last_save, saved_epoch
        meta = {"epoch": epoch, "history": history.as_dict(), "run": run}
        try:
            checkpoint.save_params(args.save, net, meta, optimizer=optimizer)
        except OSError as exc:  # the disk full: the file written before is whole, as it was
            if saved_epoch:
                left = f"{args.save} holds epoch {saved_epoch}, the last checkpoint written"
            elif os.path.exists(args.save):
                left = f"{args.save} is left as it was"
            else:
                left = "nothing was saved"
            raise OSError(f"{_cannot_write(args.save, exc)}; {left}") from exc
        last_save, saved_epoch = time.perf_counter(), epoch

    def kept() -> str:
        """What a run stopped mid-training leaves: the last periodic checkpoint, if any."""
        return f"; {args.save} holds epoch {saved_epoch}" if saved_epoch else ""

    def write_outputs(epoch: int) -> None:
        if args.save:
            save(epoch)
            print(f"saved {args.save}")
        if args.plot:
            try:
                plot_history(history, args.plot, title=f"{s['dataset']} {arch} {optimizer.name}")
            except OSError as exc:
                raise OSError(_cannot_write(args.plot, exc)) from exc
            print(f"wrote {args.plot}")

    if start_epoch >= epochs:  # --save and --plot are still written, from the checkpoint
        print(f"already trained {start_epoch} epochs (target {epochs}); nothing to do")
        write_outputs(start_epoch)
        return 0

    ended = start_epoch  # the epochs whose callback has returned: a stop asked now ends the next

    def save_now_and_then(r: EpochResult) -> None:
        nonlocal ended
        due = time.perf_counter() - last_save >= save_interval
        if args.save and r.epoch < r.epochs and due:
            save(r.epoch)
        ended = r.epoch

    received: list[signal.Signals] = []  # what stopped the run, in order
    trainer = None  # made once the cluster is up

    def stdout_closed() -> None:
        """``| head`` has gone: the run stops after this epoch, as on a first signal."""
        if not received:  # else a signal stops it already and ends it with its status
            received.append(signal.SIGPIPE)
        if trainer is not None:
            trainer.stop_training = True

    with stdout_closed_calls(stdout_closed):  # the outputs are written after it closes too
        with cluster(args) as client:  # started once everything else has been checked
            trainer = Trainer(
                net, optimizer, x_train, t_train, x_test, t_test,
                epochs=epochs,
                batch_size=s["batch_size"],
                seed=s["seed"],
                eval_samples=s["eval_samples"],
                start_epoch=start_epoch,
                history=history,
                progress=False if args.quiet else None,
                verbose=not args.quiet,
                callback=save_now_and_then,
                target_range=s["target_range"],
                frozen=frozen,
                lr_schedule=schedule,
                **_evaluation(client, (n_train, x_test.shape[0]),
                              IMAGES_EVAL_BATCH if images else EVAL_BATCH_SIZE, args.quiet),
            )  # fmt: skip
            began, first_iteration = time.perf_counter(), trainer.iterations
            try:
                with _signals_stop_after_the_epoch(trainer, lambda: ended + 1, received):
                    trainer.fit()
            except KeyboardInterrupt:
                # The parameters are mid-epoch now; only the last periodic checkpoint is consistent.
                how, status = _ended_by(received)
                print(f"\n{how} during epoch {trainer.epoch + 1}{kept()}", file=sys.stderr)
                return status
            except TrainingDiverged as exc:  # nothing is saved: the parameters are not finite
                print(f"xpnet train: error: {exc}{kept()}", file=sys.stderr)
                return 1
            except _lost_on_cluster(client) as exc:
                from xpnet.distributed import WorkLostError

                raise WorkLostError(
                    f"the Dask cluster lost the evaluation data during epoch {trainer.epoch + 1} "
                    f"(a worker holding it died), and sending it again did not help: {exc}{kept()}"
                ) from exc
        elapsed = time.perf_counter() - began
        stopped = trainer.epoch < epochs
        print(
            f"{'stopped' if stopped else 'done'}: epochs {start_epoch + 1}-{trainer.epoch}"
            f"{f' of {epochs}' if stopped else ''}, "
            f"{trainer.iterations - first_iteration} iterations in "
            f"{format_seconds(elapsed)}; train acc {history.train_acc[-1]:.4f}, test acc "
            f"{history.test_acc[-1]:.4f} (best {max(history.test_acc):.4f}, epoch "
            f"{history.epochs[history.test_acc.index(max(history.test_acc))]})"
        )
        write_outputs(trainer.epoch)
    if stopped:  # by Ctrl-C, SIGTERM or a closed stdout; a signal in the last epoch lets it end
        how, status = _ended_by(received)
        print(f"{how} after epoch {trainer.epoch}{kept()}", file=sys.stderr)
        return status
    return PIPE_CLOSED if signal.SIGPIPE in received else 0
