"""The ``xpnet`` command line: ``info``, ``gradcheck``, ``train``, ``graph``."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from xpnet import backend
from xpnet.graph import NAMED as NAMED_GRAPHS


def _add_gradcheck(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradcheck",
        help="compare backprop gradients with numerical ones",
        description="Build a network, compare its analytic (backprop) gradients with "
        "numerical central differences, print a table; exit 1 when a parameter fails.",
    )
    p.add_argument("--input-size", type=int, default=784)
    p.add_argument(
        "--hidden", type=int, action="append", help="hidden layer size (repeat; default 50)"
    )
    p.add_argument("--output-size", type=int, default=10)
    p.add_argument("--activation", choices=["relu", "sigmoid", "tanh"], default="relu")
    p.add_argument("--batch-size", type=int, default=3, help="samples in the check (default 3)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default XPNET_DEVICE)")
    p.add_argument("--h", type=_positive_float, default=None, help="central-difference step")
    p.add_argument(
        "--method",
        choices=["loop", "batched", "directional"],
        default="batched",
        help="loop: one element at a time; batched (default): the same differences, many at "
        "a time by local perturbations; directional: a few random directions, pass/fail only",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_scheduler(p, "compute the numerical gradients as tasks on a Dask cluster")
    p.set_defaults(run=_run_gradcheck)


def _add_scheduler(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS|local:N",
        help=f"{what}: a running scheduler's address (tcp://host:8786) or local:N to start "
        "N local worker processes (needs xpnet[dask])",
    )


@contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[Any]:
    """A Dask client for ``--scheduler`` (None without it), closed at the end."""
    if args.scheduler is None:
        yield None
        return
    if backend.parse_device(args.device).kind != "cpu":
        raise ValueError("--scheduler runs on NumPy arrays: use it with --device cpu")
    try:
        from xpnet.distributed import connect
    except ImportError as exc:
        raise backend.BackendUnavailableError(f"--scheduler: {exc}") from None
    with connect(args.scheduler) as client:
        yield client


def _run_gradcheck(args: argparse.Namespace) -> int:
    from xpnet.gradcheck import check_gradients
    from xpnet.networks import MultiLayerNet

    hidden = args.hidden or [50]
    net = MultiLayerNet(
        args.input_size,
        hidden,
        args.output_size,
        activation=args.activation,
        dtype=args.dtype,
        seed=args.seed,
        device=args.device,
    )
    rng = backend.host_rng(args.seed + 1)
    x = backend.to_device(
        rng.random((args.batch_size, args.input_size)), dtype=args.dtype, device=args.device
    )
    t = backend.to_device(
        rng.integers(0, args.output_size, args.batch_size), dtype="int64", device=args.device
    )
    with _cluster(args) as client:
        report = check_gradients(net, x, t, method=args.method, h=args.h, client=client)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report)
    return 0 if report.passed else 1


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, backend and devices")
    p.set_defaults(run=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from xpnet import __version__
    from xpnet.datasets import DATA_ENV_VAR, cache_dir

    info = {"xpnet": __version__, "python": sys.version.split()[0], **backend.describe()}
    info["data cache"] = str(cache_dir("mnist").parent)
    info[DATA_ENV_VAR] = os.environ.get(DATA_ENV_VAR, "(not set)")
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key.ljust(width)}  {value}")
    return 0


TRAIN_DEFAULTS = {
    "dataset": "mnist",
    "hidden": [50],
    "activation": "relu",
    "output_activation": None,
    "loss": "softmax-ce",
    "reduction": "mean",
    "bias_init": "zero",
    "input_range": None,
    "target_range": None,
    "dtype": "float32",
    "optimizer": "sgd",
    "batch_size": 100,
    "seed": 0,
    "weight_decay": 0.0,
}
# The per-sample network of many course notes: 784-100-10, sigmoid hidden and output layers,
# binary cross-entropy summed over the outputs, weights randn / sqrt(fan_in / 2), biases
# uniform in [0, 1), inputs x / 255 * 0.99 + 0.01, targets 0.01 / 0.99, SGD lr 0.3, one
# sample a step, one epoch. Flags given override it.
MODELS = {
    "mlp": {},
    "course": {
        "hidden": [100],
        "activation": "sigmoid",
        "loss": "sigmoid-bce",
        "reduction": "sum",
        "weight_init": "he",
        "bias_init": "uniform",
        "input_range": [0.01, 1.0],
        "target_range": [0.01, 0.99],
        "batch_size": 1,
        "lr": 0.3,
        "epochs": 1,
    },
    # The book's SimpleConvNet (chapter 7): conv 30 5x5, ReLU, 2x2 max pool, Affine 100
    # (--hidden), ReLU, Affine 10, softmax cross-entropy; weights std 0.01 (--weight-init);
    # trained as the book's train_convnet.py does: Adam (lr 0.001), batch 100, 20 epochs.
    "convnet": {"hidden": [100], "optimizer": "adam", "epochs": 20},
}
LOSSES = ("softmax-ce", "sigmoid-bce", "mse")
SAVE_INTERVAL_S = 60.0  # --save also writes a checkpoint this often during training
# Samples per evaluation chunk: a convnet's im2col columns are 25x its input (576 MB for
# 10,000 MNIST digits in float32), so it evaluates in smaller chunks.
EVAL_BATCH = {"convnet": 1_000}


def _number(convert: Callable[[str], Any], what: str, accept: Callable[[Any], bool]) -> Any:
    """An argparse ``type`` converting with ``convert`` and refusing values ``accept`` rejects."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, "a positive integer", lambda v: v >= 1)
_positive_float = _number(float, "a positive number", lambda v: 0.0 < v < math.inf)
_non_negative_float = _number(float, "a number >= 0", lambda v: 0.0 <= v < math.inf)


def _value_range(text: str) -> list[float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        low = high = math.nan
    if not low < high:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with LOW < HIGH, got {text!r}")
    return [low, high]


def _weight_init(text: str) -> str | float:
    if text in ("he", "xavier"):
        return text
    try:
        return _positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 'he', 'xavier' or a positive standard deviation, got {text!r}"
        ) from None


def _add_network_flags(p: argparse.ArgumentParser, *, default_dataset: str) -> None:
    """The flags that describe a network and its data, shared by ``train`` and ``graph``."""
    p.add_argument(
        "--dataset",
        choices=["mnist", "fashion-mnist", "mnist-5k"],
        help=f"data set (default {default_dataset})",
    )
    p.add_argument("--data-dir", default=None, help="folder holding the IDX .gz files")
    p.add_argument(
        "--hidden",
        type=_positive_int,
        action="append",
        help="hidden layer size (repeat for more layers; default 50)",
    )
    p.add_argument(
        "--model",
        choices=list(MODELS),
        default="mlp",
        help="mlp (default: the flags describe it), course: the course notes' per-sample "
        "784-100-10 sigmoid network with summed binary cross-entropy (its settings become "
        "the defaults; flags given override them), or convnet: the book's SimpleConvNet "
        "(conv 30 5x5, ReLU, 2x2 max pool, 100 (--hidden), ReLU, 10; weights std 0.01; "
        "Adam lr 0.001, 20 epochs, as the book trains it)",
    )
    p.add_argument("--activation", choices=["relu", "sigmoid", "tanh"], help="default relu")
    p.add_argument(
        "--output-activation",
        choices=["relu", "sigmoid", "tanh"],
        help="an activation after the last Affine (default none)",
    )
    p.add_argument(
        "--loss",
        choices=LOSSES,
        help="softmax-ce (softmax and cross-entropy, default), sigmoid-bce (sigmoid and binary "
        "cross-entropy) or mse (squared error)",
    )
    p.add_argument(
        "--reduction",
        choices=["mean", "sum"],
        help="the loss over a batch's terms: mean (default) or sum",
    )
    p.add_argument("--bias-init", choices=["zero", "uniform"], help="default zero")
    p.add_argument(
        "--input-range",
        type=_value_range,
        metavar="LOW,HIGH",
        help="rescale pixels from [0, 1] to [LOW, HIGH] (course notes: 0.01,1)",
    )
    p.add_argument(
        "--target-range",
        type=_value_range,
        metavar="LOW,HIGH",
        help="train towards HIGH for the label and LOW elsewhere instead of one-hot "
        "(course notes: 0.01,0.99)",
    )
    p.add_argument(
        "--weight-init",
        type=_weight_init,
        default=None,
        help="he, xavier or a standard deviation (default: 0.01 with one hidden "
        "layer, as the book's TwoLayerNet; he for deeper ReLU nets, else xavier)",
    )
    p.add_argument("--weight-decay", type=_non_negative_float, help="L2 strength (default 0)")
    p.add_argument("--batch-size", type=_positive_int, help="default 100")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default XPNET_DEVICE)")
    p.add_argument("--dtype", choices=["float32", "float64"], help="default float32")
    p.add_argument("--seed", type=int, help="initial weights and shuffling (default 0)")


def _load_data(settings: dict, args: argparse.Namespace) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """The data set of ``settings`` on ``args.device``: images in the settings' dtype,
    rescaled to ``input_range`` when one is set."""
    from xpnet.datasets import load_mnist

    xp, _ = backend.selected(args.device)
    (x_train, t_train), (x_test, t_test) = load_mnist(
        name=settings["dataset"], root=args.data_dir, device=args.device
    )
    dtype = getattr(xp, settings["dtype"])
    if x_train.dtype != dtype:
        x_train, x_test = xp.astype(x_train, dtype), xp.astype(x_test, dtype)
    if settings["input_range"] is not None:
        low, high = settings["input_range"]
        x_train, x_test = (low + (high - low) * x for x in (x_train, x_test))
    if settings["model"] == "convnet":  # images (N, 1, 28, 28)
        x_train, x_test = (xp.reshape(x, (x.shape[0], 1, 28, 28)) for x in (x_train, x_test))
    return (x_train, t_train), (x_test, t_test)


def _convnet_problem(settings: dict, args: argparse.Namespace) -> str | None:
    """Why the flags do not fit ``--model convnet`` (None when they do)."""
    given = {
        "--activation": args.activation,
        "--output-activation": args.output_activation,
        "--loss": args.loss,
        "--reduction": args.reduction,
        "--bias-init": args.bias_init,
        "--weight-decay": args.weight_decay,
    }
    extra = [flag for flag, value in given.items() if value]
    if extra:
        return f"{', '.join(extra)}: not settings of the book's convnet; leave them out"
    if len(settings["hidden"]) != 1:
        return "--hidden: the convnet has one hidden Affine layer; give --hidden once"
    if isinstance(settings["weight_init"], str):
        return "--weight-init: the convnet takes a standard deviation (default 0.01)"
    return None


def _describe(settings: dict, net: Any) -> str:
    """The network in a few words: ``784-50-10 relu`` or ``SimpleConvNet conv30-pool-100-10``."""
    if settings["model"] == "convnet":
        return f"SimpleConvNet conv{net.conv_param['filter_num']}-pool-{net.sizes[2]}-10"
    output = f"/{settings['output_activation']}" if settings["output_activation"] else ""
    return f"{'-'.join(map(str, net.sizes))} {settings['activation']}{output}"


def _network(settings: dict, args: argparse.Namespace, input_size: int) -> Any:
    """The ``MultiLayerNet`` (or ``SimpleConvNet``) the settings describe (``weight_init``
    defaults as the book's)."""
    from xpnet.layers import MeanSquaredError, SigmoidWithLoss, SoftmaxWithLoss
    from xpnet.networks import MultiLayerNet, SimpleConvNet

    if settings["model"] == "convnet":
        return SimpleConvNet(
            hidden_size=settings["hidden"][0],
            weight_init_std=settings["weight_init"] or 0.01,
            dtype=settings["dtype"],
            seed=settings["seed"],
            device=args.device,
        )
    if settings["weight_init"] is not None:
        weight_init = settings["weight_init"]
    elif len(settings["hidden"]) == 1:
        weight_init = 0.01
    else:
        weight_init = "he" if settings["activation"] == "relu" else "xavier"
    loss_cls = {"softmax-ce": SoftmaxWithLoss, "sigmoid-bce": SigmoidWithLoss}.get(
        settings["loss"], MeanSquaredError
    )
    return MultiLayerNet(
        input_size,
        settings["hidden"],
        10,
        activation=settings["activation"],
        output_activation=settings["output_activation"],
        loss=loss_cls(reduction=settings["reduction"]),
        weight_init=weight_init,
        bias_init=settings["bias_init"],
        weight_decay=settings["weight_decay"],
        dtype=settings["dtype"],
        seed=settings["seed"],
        device=args.device,
    )


def _add_train(sub: argparse._SubParsersAction) -> None:
    from xpnet.optim import OPTIMIZERS

    p = sub.add_parser(
        "train",
        help="train a network on MNIST-style data (the book's chapter 5 run)",
        description="Train a fully connected network with backprop; print train/test "
        "accuracy per epoch and a summary. The defaults are the book's: 784-50-10 ReLU, "
        "weights std 0.01, SGD lr 0.1, batch 100, 10,000 iterations.",
    )
    _add_network_flags(p, default_dataset="mnist")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), help="default sgd")
    p.add_argument(
        "--lr",
        type=_positive_float,
        help="learning rate (default 0.1 for sgd, as the book's training script; "
        "the book's default for the others)",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=_positive_int, help="train until this epoch")
    length.add_argument(
        "--iters",
        type=_positive_int,
        help="iterations as in the book (default 10000); epochs = ceil(iters * batch / n_train)",
    )
    p.add_argument(
        "--eval-samples",
        type=_positive_int,
        default=None,
        help="evaluate on the first N train/test samples per epoch (default all)",
    )
    p.add_argument(
        "--save",
        metavar="PATH",
        help="write a checkpoint (.npz) at the end and "
        f"every {SAVE_INTERVAL_S:.0f} s during training",
    )
    p.add_argument("--plot", metavar="PATH", help="write the learning curves (PNG)")
    p.add_argument(
        "--resume",
        metavar="PATH",
        help="continue from a checkpoint: its "
        "network, optimizer state, epoch and settings (flags given override "
        "settings; --epochs/--iters count from the start of training)",
    )
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    _add_scheduler(p, "evaluate on the full train and test sets on a Dask cluster every epoch")
    p.set_defaults(run=_run_train)


def _seconds(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def _error(message: str, command: str = "train") -> int:
    print(f"xpnet {command}: error: {message}", file=sys.stderr)
    return 2


def _check_output(option: str, path: str | None) -> str | None:
    if path is None:
        return None
    from pathlib import Path

    target = Path(path)
    if target.is_dir():
        return f"{option} {path} is a directory"
    if not (target.parent if str(target.parent) else Path(".")).is_dir():
        return f"{option} {path}: directory {target.parent} does not exist"
    return None


def _train_settings(args: argparse.Namespace, saved: dict) -> dict:
    """Defaults, overridden by the ``--model`` preset, by the checkpoint's settings, and by
    the flags given.

    The training length is ``epochs`` or ``iters`` (one of them), taken the same way.
    """
    resumed = dict(saved.get("run", {}))
    model = resumed.get("model", args.model)
    preset = MODELS[model]
    saved_opt = saved.get("optimizer") or {}
    if saved_opt.get("name"):
        resumed["optimizer"] = saved_opt["name"]
    arch = saved.get("architecture")
    if arch and arch.get("class") == "MultiLayerNet":
        resumed.update(
            hidden=arch["sizes"][1:-1],
            activation=arch["activation"],
            dtype=arch["dtype"],
            weight_decay=arch.get("weight_decay", 0.0),
        )
        for key in ("hidden", "activation", "dtype", "output_activation"):
            given = getattr(args, key)
            if given is not None and given != resumed.get(key):
                raise ValueError(
                    f"--{key} {given} does not match the checkpoint's {resumed[key]} "
                    f"({args.resume}); leave it out to resume"
                )
    settings = {k: resumed.get(k, preset.get(k, v)) for k, v in TRAIN_DEFAULTS.items()}
    settings.update({k: getattr(args, k) for k in TRAIN_DEFAULTS if getattr(args, k) is not None})
    settings["model"] = model
    settings["weight_init"] = args.weight_init or preset.get("weight_init")
    if args.epochs is not None or args.iters is not None:
        settings["length"] = ("epochs", args.epochs) if args.epochs else ("iters", args.iters)
    elif "epochs" in resumed or "iters" in resumed:
        unit = "epochs" if "epochs" in resumed else "iters"
        settings["length"] = (unit, int(resumed[unit]))
    elif "epochs" in preset:
        settings["length"] = ("epochs", preset["epochs"])
    else:
        settings["length"] = ("iters", 10_000)
    if args.lr is not None:
        settings["lr"] = args.lr
    elif saved_opt.get("name") == settings["optimizer"]:
        settings["lr"] = saved_opt["lr"]
    elif settings["optimizer"] == "sgd":
        settings["lr"] = preset.get("lr", 0.1)
    else:
        settings["lr"] = None
    return settings


def _run_train(args: argparse.Namespace) -> int:
    if args.scheduler and args.model == "convnet":
        # Dask takes NumPy weights as operands, but Convolution reshapes its weights with
        # the namespace of its (dask) input, which Dask refuses.
        return _error("--scheduler evaluates fully connected models (mlp, course), not convnet")
    with _cluster(args) as client:
        return _train(args, client)


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


def _train(args: argparse.Namespace, client: Any) -> int:
    import math
    import time

    from xpnet import checkpoint
    from xpnet.optim import make_optimizer
    from xpnet.training import EpochResult, History, Trainer

    for option, path in (("--save", args.save), ("--plot", args.plot)):
        problem = _check_output(option, path)
        if problem:
            return _error(problem)
    if args.plot:
        from xpnet.plotting import PlottingUnavailableError, plot_history, require_matplotlib

        try:
            require_matplotlib()
        except PlottingUnavailableError as exc:
            return _error(f"--plot: {exc}")
    backend.selected(args.device)  # an unknown or unavailable device fails here

    saved = checkpoint.read_metadata(args.resume) if args.resume else {}
    if args.resume and not saved.get("architecture"):
        return _error(f"--resume {args.resume}: the checkpoint records no network architecture")
    s = _train_settings(args, saved)
    problem = _convnet_problem(s, args) if s["model"] == "convnet" else None
    if problem:
        return _error(problem)

    (x_train, t_train), (x_test, t_test) = _load_data(s, args)
    n_train, input_size = x_train.shape[0], x_train.shape[1]
    net = _network(s, args, input_size)
    optimizer = make_optimizer(s["optimizer"], lr=s["lr"])
    start_epoch, history = 0, History()
    if args.resume:
        if s["model"] != "convnet" and saved["architecture"].get("sizes") != net.sizes:
            return _error(
                f"--resume {args.resume}: the checkpoint's network {saved['architecture']['sizes']}"
                f" does not fit {s['dataset']} ({input_size} inputs)"
            )
        same = (saved.get("optimizer") or {}).get("name") == optimizer.name
        checkpoint.load_params(args.resume, net, optimizer=optimizer if same else None)
        start_epoch = int(saved.get("epoch", 0))
        history = History.from_dict(saved.get("history", {}))
        if not args.quiet:
            note = "" if same else f"; {optimizer.name} starts with fresh state"
            print(f"resuming {args.resume} after epoch {start_epoch}{note}")
    unit, length = s["length"]
    epochs = length if unit == "epochs" else math.ceil(length * s["batch_size"] / n_train)
    arch = _describe(s, net)
    if not args.quiet:
        loss = "" if s["loss"] == "softmax-ce" else f" {s['loss']} ({s['reduction']})"
        print(
            f"{s['dataset']}: {n_train} train / {x_test.shape[0]} test; {arch}"
            f"{loss}, {optimizer!r}, batch {s['batch_size']}, "
            f"{epochs} epoch{'s' * (epochs != 1)}, "
            f"{s['dtype']} on {backend.parse_device(args.device)}"
        )
    if start_epoch >= epochs:
        print(f"already trained {start_epoch} epochs (target {epochs}); nothing to do")
        return 0

    run = {k: s[k] for k in ("model", *TRAIN_DEFAULTS) if k not in ("hidden", "dtype")}
    if s["model"] == "convnet":  # its checkpoint records layers, not MultiLayerNet's sizes
        run.update(hidden=s["hidden"], dtype=s["dtype"])
    run[unit] = length
    last_save, saved_epoch = time.perf_counter(), 0

    def save(epoch: int) -> None:
        nonlocal last_save, saved_epoch
        meta = {"epoch": epoch, "history": history.as_dict(), "run": run}
        checkpoint.save_params(args.save, net, meta, optimizer=optimizer)
        last_save, saved_epoch = time.perf_counter(), epoch

    def report(r: EpochResult) -> None:
        if not args.quiet:
            print(
                f"epoch {r.epoch}/{r.epochs}  train acc {r.train_acc:.4f}  "
                f"test acc {r.test_acc:.4f}  loss {r.train_loss:.4f}  ({_seconds(r.seconds)})",
                flush=True,
            )
        if args.save and r.epoch < r.epochs and time.perf_counter() - last_save > SAVE_INTERVAL_S:
            save(r.epoch)

    trainer = Trainer(
        net, optimizer, x_train, t_train, x_test, t_test,
        epochs=epochs,
        batch_size=s["batch_size"],
        seed=s["seed"],
        eval_samples=args.eval_samples,
        start_epoch=start_epoch,
        history=history,
        progress=False if args.quiet else None,
        callback=report,
        target_range=s["target_range"],
        **_evaluation(client, (n_train, x_test.shape[0]), EVAL_BATCH.get(s["model"], 10_000),
                      args.quiet),
    )  # fmt: skip
    began, first_iteration = time.perf_counter(), trainer.iterations
    try:
        trainer.fit()
    except KeyboardInterrupt:
        # The parameters are mid-epoch now; only the last periodic checkpoint is consistent.
        hint = f"; {args.save} holds epoch {saved_epoch}" if saved_epoch else ""
        print(f"\ninterrupted during epoch {trainer.epoch + 1}{hint}", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - began
    print(
        f"done: epochs {start_epoch + 1}-{epochs}, "
        f"{trainer.iterations - first_iteration} iterations in "
        f"{_seconds(seconds)}; train acc {history.train_acc[-1]:.4f}, test acc "
        f"{history.test_acc[-1]:.4f} (best {max(history.test_acc):.4f}, epoch "
        f"{history.epochs[history.test_acc.index(max(history.test_acc))]})"
    )
    if args.save:
        save(epochs)
        print(f"saved {args.save}")
    if args.plot:
        plot_history(history, args.plot, title=f"{s['dataset']} {arch} {optimizer.name}")
        print(f"wrote {args.plot}")
    return 0


GRAPHS = (*NAMED_GRAPHS, "net")


def _add_graph(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "graph",
        help="draw a computational graph with the forward and backward values of a run",
        description="Run a computation node by node, recording it, and draw its graph: the "
        "forward value above each edge (black), the backward value below it (red). apple, "
        "apple-orange: the book's section 5.4; sigmoid-neuron: the CS231n notes; net: the "
        "network the train flags describe, after one forward/backward pass on real data "
        "(layers as nodes, shapes on the edges, gradient norms of every parameter); the "
        "network flags apply to net only.",
    )
    p.add_argument("name", choices=GRAPHS, help="which graph: %(choices)s")
    p.add_argument(
        "--format",
        choices=["dot", "svg", "png"],
        help="default: the suffix of -o, else dot (svg and png need Graphviz's dot program)",
    )
    p.add_argument("-o", "--output", metavar="PATH", help="write here (default: stdout)")
    _add_network_flags(p, default_dataset="mnist-5k")
    # What _train_settings reads beyond the network flags: no training, no checkpoint.
    p.set_defaults(run=_run_graph, dataset="mnist-5k", optimizer=None, lr=None)
    p.set_defaults(epochs=None, iters=None, resume=None)


def _network_recording(args: argparse.Namespace) -> tuple[Any, str]:
    """One forward/backward of the network the flags describe, on its first batch, recorded."""
    from xpnet.graph import record_network
    from xpnet.training import labels_and_targets

    s = _train_settings(args, {})
    (x, t), _ = _load_data(s, args)
    n = min(s["batch_size"], x.shape[0])
    net = _network(s, args, x.shape[1])
    # The targets a training step uses: one-hot rows, or rows of --target-range.
    _, targets = labels_and_targets(t[:n], 10, x.dtype, s["target_range"])
    title = (
        f"{_describe(s, net)}, {s['loss']} loss, {n} {s['dataset']} "
        f"sample{'s' * (n > 1)}: one forward and backward pass (red: gradients, ‖·‖ their norm)"
    )
    return record_network(net, x[:n, ...], targets), title


def _run_graph(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xpnet import graph

    problem = _check_output("-o", args.output)
    if problem:
        return _error(problem, "graph")
    suffix = Path(args.output).suffix.lstrip(".").lower() if args.output else ""
    fmt = args.format or (suffix if suffix in graph.FORMATS else "dot")
    if fmt == "png" and not args.output:
        return _error("--format png needs -o PATH", "graph")
    if args.name == "net":
        recording, title = _network_recording(args)
    else:
        recording, title = graph.NAMED[args.name](), None
    dot = recording.dot(title=title)
    try:
        if args.output:
            graph.write(dot, args.output, fmt)
        else:
            sys.stdout.buffer.write(graph.render(dot, fmt))
    except graph.GraphvizUnavailableError as exc:
        return _error(str(exc), "graph")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from xpnet import __version__

    parser = argparse.ArgumentParser(
        prog="xpnet", description="Backpropagation by hand on NumPy and CuPy."
    )
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_info(sub)
    _add_gradcheck(sub)
    _add_train(sub)
    _add_graph(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, ConnectionError, backend.BackendUnavailableError) as exc:
        parser.exit(2, f"xpnet {args.command}: error: {exc}\n")
