"""``xpnet gradcheck``: a network's backprop gradients against numerical ones."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

from xpnet import backend
from xpnet.cli.common import add_scheduler, cluster, non_negative_int, positive_float, positive_int
from xpnet.cli.network import (
    add_extend_flags,
    add_layers_module,
    checkpoint_network,
    describe,
    import_layers,
    refuse_data_dir,
)
from xpnet.datasets import DATASETS
from xpnet.gradcheck import DEFAULTS, METHODS, Float32Warning
from xpnet.networks import ACTIVATIONS, DTYPES

PIXELS, CLASSES = 784, 10  # MNIST's and Fashion-MNIST's, and the random batch's defaults


def add_gradcheck(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradcheck",
        help="compare backprop gradients with numerical ones",
        description="Build a network (or read one from --checkpoint), compare its analytic "
        "(backprop) gradients with numerical central differences, print a table; exit 1 when "
        "a parameter fails.",
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
        choices=DATASETS,
        default=None,
        help="check on the first --batch-size training samples of this data set, as the "
        "book's gradient_check.py takes x_train[:3] (default: random inputs and labels; with "
        "--checkpoint, the data set of its run)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="the folder holding the data set's IDX files (as for xpnet train)",
    )
    p.add_argument(
        "--input-size", type=positive_int, default=None, help="the network's inputs (default 784)"
    )
    p.add_argument(
        "--hidden",
        type=positive_int,
        action="append",
        help="hidden layer size (repeat; default 50)",
    )
    p.add_argument(
        "--output-size", type=positive_int, default=None, help="the network's classes (default 10)"
    )
    p.add_argument("--activation", choices=list(ACTIVATIONS), help="default relu")
    add_extend_flags(p)
    p.add_argument(
        "--batch-size", type=positive_int, default=3, help="samples in the check (default 3)"
    )
    p.add_argument(
        "--dtype",
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
        choices=METHODS,
        default="batched",
        help="loop: one element at a time; batched (default): the same differences, many at "
        "a time by local perturbations; directional: a few random directions, pass/fail only "
        "(element by element where a direction disagrees or every one crosses a kink)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_scheduler(p, "compute the numerical gradients as tasks on a Dask cluster")
    p.set_defaults(run=_run_gradcheck)


# The flags that describe the network gradcheck builds, refused with --checkpoint.
NETWORK_FLAGS = (
    "input_size",
    "hidden",
    "output_size",
    "activation",
    "batchnorm",
    "dropout",
    "seed",
)


def _run_gradcheck(args: argparse.Namespace) -> int:
    from xpnet.gradcheck import check_gradients
    from xpnet.networks import MultiLayerNet

    import_layers(args, "--checkpoint", args.checkpoint)
    if args.checkpoint is not None:
        net, x, t, checked = _from_the_checkpoint(args)
    else:
        x, t = _batch(args)
        net = MultiLayerNet(
            x.shape[1],
            args.hidden or [50],
            args.output_size or CLASSES,
            activation=args.activation or "relu",
            use_batchnorm=bool(args.batchnorm),
            use_dropout=args.dropout is not None,
            dropout_ratio=args.dropout or 0.0,
            dtype=args.dtype,
            seed=args.seed or 0,
            device=args.device,
        )
        checked = _checked(args, net)
    if args.method == "directional" and args.scheduler is not None:
        raise ValueError("--scheduler runs --method loop or batched; directional runs here")
    if not args.json:
        print(checked, flush=True)
    if args.dtype == "float32":  # the advice in the flags' words, not the library's
        warnings.warn(Float32Warning("give --dtype float64 (the default)"), stacklevel=1)
    try:
        with cluster(args) as client, warnings.catch_warnings():
            warnings.simplefilter("ignore", Float32Warning)
            report = check_gradients(net, x, t, method=args.method, h=args.h, client=client)
    except KeyboardInterrupt:
        print("\ninterrupted: no report", file=sys.stderr)
        return 130
    print(json.dumps(report.as_dict(), indent=2) if args.json else report)
    return 0 if report.passed else 1


def _checked(args: argparse.Namespace, net: Any) -> str:
    """What is checked, in a line: ``784-50-10 relu, 39,760 parameters, at the first 3
    mnist-5k training samples, float64 on cpu``."""
    arch = describe(
        {
            "model": "mlp",
            "activation": args.activation or "relu",
            "output_activation": None,
            "batchnorm": args.batchnorm,
            "dropout": args.dropout,
        },
        net,
    )
    n = args.batch_size
    at = (
        f"{n} random sample{'s' * (n != 1)} (--seed {args.seed or 0})"
        if args.dataset is None
        else f"the first {n} {args.dataset} training sample{'s' * (n != 1)}"
    )
    return (
        f"{arch}, {net.num_parameters():,} parameters, at {at}, {args.dtype} on "
        f"{backend.parse_device(args.device)}"
    )


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


def _batch(args: argparse.Namespace) -> tuple[Any, Any]:
    """The inputs (N, D) and integer labels (N,) to check at: the first ``--batch-size``
    training samples of ``--dataset``, or random ones drawn from ``--seed``."""
    if args.dataset is None:
        if args.data_dir is not None:
            raise ValueError(f"--data-dir {args.data_dir}: give --dataset too")
        rng = backend.host_rng((args.seed or 0) + 1)
        size, classes = args.input_size or PIXELS, args.output_size or CLASSES
        x = rng.random((args.batch_size, size))
        t = rng.integers(0, classes, args.batch_size)
        return (
            backend.to_device(x, dtype=args.dtype, device=args.device),
            backend.to_device(t, dtype="int64", device=args.device),
        )
    for flag, given, fixed in (("--input-size", args.input_size, PIXELS),
                               ("--output-size", args.output_size, CLASSES)):  # fmt: skip
        if given not in (None, fixed):
            raise ValueError(f"{flag} {given}: {args.dataset} has {fixed}; leave it out")
    from xpnet.datasets import load_mnist

    refuse_data_dir(args.dataset, args.data_dir)
    (x, t), _ = load_mnist(name=args.dataset, root=args.data_dir, device=args.device)
    x, t = _first(args.batch_size, x, t, args.dataset)
    xp = backend.namespace_of(x)
    return xp.astype(x, getattr(xp, args.dtype)), t


def _first(n: int, x: Any, t: Any, dataset: str) -> tuple[Any, Any]:
    """The first ``n`` samples ``x[:n]`` and labels ``t[:n]`` of ``dataset``'s training set."""
    if n > x.shape[0]:
        raise ValueError(f"--batch-size {n}: {dataset} has {x.shape[0]} training samples")
    return x[:n, ...], t[:n]
