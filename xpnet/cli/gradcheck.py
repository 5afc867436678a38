"""``xpnet gradcheck``: a network's backprop gradients against numerical ones."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

import xpnet
from xpnet import backend
from xpnet.cli.common import (
    add_scheduler,
    check_scheduler,
    cluster,
    json_error,
    non_negative_int,
    positive_float,
    positive_int,
)
from xpnet.cli.network import (
    add_layers_module,
    add_model_flags,
    checkpoint_network,
    describe,
    import_layers,
    load_data,
    loss_words,
    network,
    rescale,
    train_settings,
)
from xpnet.datasets import DATASETS
from xpnet.gradcheck import DEFAULTS, METHODS, Float32Warning
from xpnet.init import DTYPES

PIXELS, CLASSES = 784, 10  # MNIST's and Fashion-MNIST's, and the random batch's defaults


def add_gradcheck(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradcheck",
        help="compare backprop gradients with numerical ones",
        description="Build a network (or read one from --checkpoint), compare its analytic "
        "(backprop) gradients with numerical central differences, print a table. Exit "
        "status: 0 passed; 1 a parameter fails, or the check is inconclusive (the atol as "
        "large as every gradient, or kinks that one-sided differences do not show: a wrong "
        "one would pass too), or out of memory; 2 a usage "
        "error, or a refusal (a gradient of the wrong shape, a backward that returns None: one "
        "line on stderr); 3 the check could not run: the network's code raised an exception "
        "(any but xpnet's refusals, MemoryError and KeyboardInterrupt) or called sys.exit, "
        "its traceback on stderr; 130 interrupted (Ctrl-C).",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="check the network this checkpoint (.npz) holds, rebuilt as saved (xpnet train "
        "--save, or xpnet.checkpoint.save_params from Python), at the first --batch-size "
        "training samples of its run's data set (or --dataset), its parameters in --dtype; "
        "the flags that describe a network are refused",
    )
    add_layers_module(p, "--checkpoint")
    p.add_argument(
        "--dataset",
        type=str.lower,
        choices=DATASETS,
        default=None,
        help="check on the first --batch-size training samples of this data set, as the "
        "book's gradient_check.py takes x_train[:3] (default: random inputs and labels; with "
        "--checkpoint, the data set of its run)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="the folder holding the data set's IDX files (as for xpnet train; with --checkpoint, "
        "default: the folder its run read)",
    )
    p.add_argument(
        "--input-size", type=positive_int, default=None, help="the network's inputs (default 784)"
    )
    p.add_argument(
        "--output-size", type=positive_int, default=None, help="the network's classes (default 10)"
    )
    add_model_flags(p, command="gradcheck")
    p.add_argument(
        "--batch-size", type=positive_int, default=3, help="samples in the check (default 3)"
    )
    p.add_argument(
        "--dtype",
        type=str.lower,
        choices=DTYPES,
        default="float64",
        help="default float64, a tight check (float32's rounding errors are near 1e-3); a "
        "--checkpoint's parameters are converted to it",
    )
    p.add_argument(
        "--seed",
        type=non_negative_int,
        help="the network's weights and the random inputs and labels (default 0)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default XPNET_DEVICE)")
    steps = ", ".join(f"{d['h']:g} for {dtype}" for dtype, d in DEFAULTS.items())
    p.add_argument(
        "--h",
        type=positive_float,
        default=None,
        help=f"central-difference step (default per --dtype: {steps})",
    )
    p.add_argument(
        "--method",
        type=str.lower,
        choices=METHODS,
        default="batched",
        help="loop: one element at a time; batched (default): the same differences, many at "
        "a time by local perturbations; directional: a few random directions, pass/fail only "
        "(element by element where a direction disagrees or every one crosses a kink)",
    )
    p.add_argument(
        "--max-elements",
        type=positive_int,
        default=None,
        metavar="K",
        help="check at most K elements of each parameter, drawn at random (the same on every "
        "device), for a faster check of a large network: a pass is the sample's (default: "
        "every element; not with --method directional or --scheduler)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the report as JSON, alone on stdout: what the checked code prints goes to "
        'stderr, and a refusal (exit 2) or an exception of the network\'s (exit 3) is {"error": '
        '..., "exit_status": N}',
    )
    add_scheduler(p, "compute the numerical gradients as tasks on a Dask cluster")
    p.set_defaults(run=_run_gradcheck)
    # What train_settings reads beyond the network flags: no training, no checkpoint.
    p.set_defaults(optimizer=None, lr=None, epochs=None, iters=None, resume=None)
    p.set_defaults(eval_samples=None, train_samples=None)


# The flags that describe the network gradcheck builds, refused with --checkpoint
# (--input-range and --target-range apply to a checkpoint's data too, as for graph).
NETWORK_FLAGS = (
    "input_size",
    "hidden",
    "output_size",
    "model",
    "activation",
    "output_activation",
    "loss",
    "reduction",
    "bias_init",
    "weight_init",
    "weight_decay",
    "batchnorm",
    "dropout",
    "seed",
)


def _run_gradcheck(args: argparse.Namespace) -> int:
    # Under --json, stdout is the JSON alone: a layer's prints go to stderr.
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with quiet:
            report = _check(args)
    except (NetworkRaised, SystemExit) as exc:
        # A layer's sys.exit(0) is not a check that passed: the exit status would say so.
        raised = exc if isinstance(exc, SystemExit) else exc.__cause__
        traceback.print_exception(type(raised), raised, raised.__traceback__, file=sys.stderr)
        what = (
            f"called sys.exit({raised.code!r})"
            if isinstance(raised, SystemExit)
            else f"raised {type(raised).__name__}: {raised}"
        )
        message = f"xpnet gradcheck: error: the check could not run: the network's code {what}"
        print(message, file=sys.stderr)
        if args.json:
            json_error(message, 3)
        return 3
    if report is None:
        return 130
    print(json.dumps(report.as_dict(), indent=2) if args.json else report)
    return 0 if report.passed else 1


class NetworkRaised(Exception):
    """The check could not run: the network's code raised the exception that is its cause."""


def _check(args: argparse.Namespace) -> Any | None:
    """The report of the check the flags ask for, None when Ctrl-C interrupted it; an
    exception the network's code raises while it runs comes out as :class:`NetworkRaised`,
    xpnet's refusals as they are."""
    from xpnet.gradcheck import check_gradients

    if args.method == "directional" and args.scheduler is not None:
        raise ValueError("--scheduler runs --method loop or batched; directional runs here")
    if args.max_elements is not None and (args.method == "directional" or args.scheduler):
        raise ValueError(
            "--max-elements samples the elements that --method loop or batched checks here; "
            "leave it out with --method directional or --scheduler"
        )
    check_scheduler(args)  # before the network is built: the header line is for a check that runs
    import_layers(args, "--checkpoint", args.checkpoint)
    if args.checkpoint is not None:
        net, x, t, checked = _from_the_checkpoint(args)
    else:
        net, x, t, checked = _from_the_flags(args)
    if not args.json:
        print(checked, flush=True)
    if args.dtype == "float32":  # the advice in the flags' words, not the library's
        warnings.warn(Float32Warning("give --dtype float64 (the default)"), stacklevel=1)
    try:
        with cluster(args) as client, warnings.catch_warnings():
            if client is not None and not args.json:
                print(_where_it_runs(client, args.method), flush=True)
            warnings.simplefilter("ignore", Float32Warning)
            try:
                return check_gradients(
                    net, x, t, method=args.method, h=args.h, client=client,
                    max_elements=args.max_elements,
                )  # fmt: skip
            except Exception as exc:
                if _left_to_main(exc):
                    raise
                raise NetworkRaised from exc
    except KeyboardInterrupt:
        print("\ninterrupted: no report", file=sys.stderr)
        return None


XPNET_DIR = Path(xpnet.__file__).resolve().parent


def _left_to_main(exc: Exception) -> bool:
    """Whether ``main`` says what ``exc`` is in one line: out of memory (exit 1), a closed
    pipe, or a refusal (exit 2), a ``ValueError``, ``OSError`` or
    ``BackendUnavailableError`` raised by xpnet's own code (a gradient of the wrong shape).
    The same types raised elsewhere (a student's ``backward``, or NumPy called from it)
    are the network's code raising."""
    if isinstance(exc, (MemoryError, BrokenPipeError)):
        return True
    if not isinstance(exc, (ValueError, OSError, backend.BackendUnavailableError)):
        return False
    innermost = exc.__traceback__
    while innermost is not None and innermost.tb_next is not None:
        innermost = innermost.tb_next
    if innermost is None:
        return True
    return Path(innermost.tb_frame.f_code.co_filename).resolve().is_relative_to(XPNET_DIR)


def _where_it_runs(client: Any, method: str) -> str:
    """Which part of the check the cluster runs, as ``xpnet train`` says where it evaluates:
    the numerical gradients, as ``method`` (``loop`` or ``batched``) computes them."""
    from xpnet.distributed import threads

    n = threads(client)
    how = "element by element" if method == "loop" else "by local perturbations"
    return (
        f"checking on the Dask cluster at {client.scheduler.address} ({n} worker "
        f"thread{'s' * (n != 1)}): the numerical gradients run there ({how}), backprop and "
        "any element differenced again here"
    )


def _from_the_flags(args: argparse.Namespace) -> tuple[Any, Any, Any, str]:
    """The network the flags describe, built as ``xpnet train`` builds it, the inputs
    (N, ...) and labels (N,) or target rows (N, classes) to check it at, and what is
    checked, in a line: ``784-50-10 relu, 39,760 parameters, at the first 3 mnist-5k
    training samples, float64 on cpu``."""
    from xpnet.training import labels_and_targets

    s = train_settings(args, {})
    images = s["model"] == "convnet"
    if images:
        for flag, given in (("--input-size", args.input_size), ("--output-size", args.output_size)):
            if given is not None:
                raise ValueError(
                    f"{flag} {given}: the convnet takes 28x28 images to 10 classes; leave it out"
                )
    if s["model"] == "mlp" and s["weight_init"] is None:  # the book's 0.01 for train
        s["weight_init"] = "he"  # gradcheck's documented default, MultiLayerNet's
    classes = args.output_size or CLASSES
    x, t = _batch(args, s, images)
    net = network(s, args, x.shape[1], classes)
    if s["target_range"] is not None:  # the targets a training step uses
        _, t = labels_and_targets(t, classes, x.dtype, s["target_range"])
    n = args.batch_size
    at = (
        f"{n} random sample{'s' * (n != 1)} (--seed {s['seed']})"
        if args.dataset is None
        else f"the first {n} {args.dataset} training sample{'s' * (n != 1)}"
    )
    checked = (
        f"{describe(s, net)}{loss_words(s)}, {net.num_parameters():,} parameters, at {at}, "
        f"{args.dtype} on {backend.parse_device(args.device)}"
    )
    return net, x, t, checked


def _from_the_checkpoint(args: argparse.Namespace) -> tuple[Any, Any, Any, str]:
    """The network ``--checkpoint`` holds, rebuilt as saved with its parameters in
    ``--dtype``, the inputs (N, ...) and labels (N,) to check it at (the first
    ``--batch-size`` training samples of its data set, as its run fed them), and what is
    checked, in a line."""
    from xpnet.training import labels_and_targets

    given = [f"--{k.replace('_', '-')}" for k in NETWORK_FLAGS if getattr(args, k) is not None]
    net, saved, settings, (x, t) = checkpoint_network(args, given, "check it", dtype=args.dtype)
    n, dataset = args.batch_size, settings["dataset"]
    x, t = _first(n, x, t, dataset)
    # The targets its training steps used: one-hot rows, or rows of its run's --target-range.
    _, t = labels_and_targets(t, 10, x.dtype, settings["target_range"])
    saved_dtype = (saved.get("architecture") or {}).get("dtype", args.dtype)
    converted = (
        ""
        if saved_dtype == args.dtype
        else f" ({saved_dtype} parameters converted; --dtype {saved_dtype} checks them as saved)"
    )
    checked = (
        f"{describe(settings, net)} from {args.checkpoint}, {net.num_parameters():,} "
        f"parameters, at the first {n} {dataset} training sample{'s' * (n != 1)}, {args.dtype} "
        f"on {backend.parse_device(args.device)}{converted}"
    )
    return net, x, t, checked


def _batch(args: argparse.Namespace, settings: dict, images: bool) -> tuple[Any, Any]:
    """The inputs (N, D), or images (N, 1, 28, 28) where ``images``, rescaled to the
    settings' ``input_range``, and integer labels (N,) to check at: the first
    ``--batch-size`` training samples of ``--dataset``, or random ones drawn from ``--seed``."""
    if args.dataset is None:
        if args.data_dir is not None:
            raise ValueError(f"--data-dir {args.data_dir}: give --dataset too")
        rng = backend.host_rng(settings["seed"] + 1)
        size, classes = args.input_size or PIXELS, args.output_size or CLASSES
        x = rng.random((args.batch_size, 1, 28, 28) if images else (args.batch_size, size))
        t = rng.integers(0, classes, args.batch_size)
        x = backend.to_device(x, dtype=args.dtype, device=args.device)
        t = backend.to_device(t, dtype="int64", device=args.device)
        return rescale(x, settings["input_range"]), t
    for flag, given, fixed in (("--input-size", args.input_size, PIXELS),
                               ("--output-size", args.output_size, CLASSES)):  # fmt: skip
        if given not in (None, fixed):
            raise ValueError(f"{flag} {given}: {args.dataset} has {fixed}; leave it out")
    (x, t), _ = load_data(settings, args, images=images)
    return _first(args.batch_size, x, t, args.dataset)


def _first(n: int, x: Any, t: Any, dataset: str) -> tuple[Any, Any]:
    """The first ``n`` samples ``x[:n]`` and labels ``t[:n]`` of ``dataset``'s training set."""
    if n > x.shape[0]:
        raise ValueError(f"--batch-size {n}: {dataset} has {x.shape[0]} training samples")
    return x[:n, ...], t[:n]
