"""The ``xpnet`` command line: ``xpnet info``, ``xpnet gradcheck`` (and ``python -m xpnet``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from xpnet import backend


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
    p.add_argument("--h", type=float, default=None, help="central-difference step")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_run_gradcheck)


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
    report = check_gradients(net, x, t, h=args.h)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report)
    return 0 if report.passed else 1


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, backend and devices")
    p.set_defaults(run=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from xpnet import __version__

    info = {"xpnet": __version__, "python": sys.version.split()[0], **backend.describe()}
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key.ljust(width)}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xpnet", description="Backpropagation by hand on NumPy and CuPy."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_info(sub)
    _add_gradcheck(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, backend.BackendUnavailableError) as exc:
        parser.exit(2, f"xpnet {args.command}: error: {exc}\n")
