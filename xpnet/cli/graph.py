"""``xpnet graph``: a computational graph drawn with the values of a real run."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from xpnet.cli.common import check_output, error, positive_float
from xpnet.cli.network import (
    NETWORK_SETTINGS,
    add_layers_module,
    add_network_flags,
    checkpoint_network,
    describe,
    import_layers,
    load_data,
    network,
    train_settings,
)
from xpnet.graph import FORMATS
from xpnet.graph import NAMED as NAMED_GRAPHS

GRAPHS = (*NAMED_GRAPHS, "net")


def add_graph(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "graph",
        help="draw a computational graph with the forward and backward values of a run",
        description="Run a computation node by node, recording it, and draw its graph: the "
        "forward value above each edge (black), the backward value below it (red, dashed). apple, "
        "apple-orange: the book's section 5.4; sigmoid-neuron: the CS231n notes; net: the "
        "network the train flags describe, after one forward/backward pass on real data "
        "(layers as nodes, layers made of layers as boxes of them, shapes on the edges, gradient "
        "norms of every parameter), or the network a --checkpoint holds; the network flags "
        "apply to net only.",
    )
    p.add_argument(
        "name",
        nargs="?",
        type=str.lower,
        choices=GRAPHS,
        help="which graph: %(choices)s (net when --checkpoint is given)",
    )
    p.add_argument(
        "--format",
        type=str.lower,
        choices=FORMATS,
        help="default: the suffix of -o (.dot, .svg, .png, .pdf), dot without one; one that "
        "contradicts the suffix of -o is an error (all but dot need Graphviz's dot program); "
        "png and pdf go to stdout only when it is no terminal (a pipe, a file), or with -o -",
    )
    p.add_argument("-o", "--output", metavar="PATH", help="write here; - or none: stdout (default)")
    p.add_argument(
        "--dpi",
        type=positive_float,
        metavar="N",
        help="a PNG's resolution in dots per inch (default: Graphviz's 96; 300 for slides or "
        "print draws 300/96 times the pixels each way); SVG, a vector drawing, and DOT text "
        "are unchanged",
    )
    before = len(p._actions)
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="draw the network this checkpoint (.npz) holds, rebuilt as saved (xpnet train "
        "--save, or xpnet.checkpoint.save_params from Python), on its run's data set (or "
        "--dataset) and input and target ranges; the flags that describe a network are refused",
    )
    add_layers_module(p, "--checkpoint")
    p.add_argument(
        "--eval",
        action="store_true",
        help="run the pass in evaluation mode, as predict does (model.eval() in PyTorch): "
        "BatchNorm's running statistics instead of the batch's, Dropout's scaling instead of "
        "a mask; those nodes read train_flg=False (default: training mode). Without "
        "--checkpoint the network is untrained, its BatchNorm running statistics zeros: a "
        "note on stderr says so",
    )
    p.add_argument(
        "--blocks-as-nodes",
        action="store_true",
        help="draw each layer made of layers (a nested Sequential, a residual block) as one "
        "node, its inner parameters its leaves (default: a box holding its inner layers)",
    )
    add_network_flags(p, command="graph", default_dataset="mnist-5k")
    # What train_settings reads beyond the network flags: no training, no checkpoint.
    p.set_defaults(run=_run_graph, optimizer=None, lr=None)
    p.set_defaults(epochs=None, iters=None, resume=None, eval_samples=None, train_samples=None)
    # dest -> (flag, default), to refuse network flags given with another graph than net
    p.set_defaults(
        network_flags={
            a.dest: (a.option_strings[0], p.get_default(a.dest)) for a in p._actions[before:]
        }
    )


def _network_recording(args: argparse.Namespace) -> tuple[Any, str]:
    """One forward/backward of the network the flags describe, or that ``--checkpoint``
    holds, on its first batch, recorded."""
    from xpnet.graph import record_network
    from xpnet.held import layers_of
    from xpnet.layers import BatchNormalization
    from xpnet.training import labels_and_targets

    if args.checkpoint is None:
        args.dataset = args.dataset or "mnist-5k"  # graph's default (train's is mnist)
        s = train_settings(args, {})
        (x, t), _ = load_data(s, args)
        net = network(s, args, x.shape[1])
        what = f"{describe(s, net)}, {s['loss']} loss"
        if args.eval and any(isinstance(la, BatchNormalization) for la in layers_of(net)):
            print(
                "xpnet graph: note: --eval without --checkpoint draws an untrained network, "
                "whose BatchNorm running statistics are their initial zeros, so the gradients "
                "drawn mean little; --checkpoint PATH draws a trained one",
                file=sys.stderr,
            )
    else:
        fixed = ("model", *NETWORK_SETTINGS, "weight_init", "seed")
        given = [f"--{key.replace('_', '-')}" for key in fixed if getattr(args, key) is not None]
        net, _, s, (x, t) = checkpoint_network(args, given, "draw it")
        what = f"{describe(s, net)} from {args.checkpoint}"
    n = min(s["batch_size"], x.shape[0])
    # The targets a training step uses: one-hot rows, or rows of --target-range.
    _, targets = labels_and_targets(t[:n], 10, x.dtype, s["target_range"])
    mode = " in evaluation mode" if args.eval else ""
    title = (
        f"{what}, {n} {s['dataset']} sample{'s' * (n > 1)}: one forward and backward pass"
        f"{mode} (red: gradients, ‖·‖ their norm)"
    )
    inside = not args.blocks_as_nodes
    return record_network(net, x[:n, ...], targets, train_flg=not args.eval, inside=inside), title


def _run_graph(args: argparse.Namespace) -> int:
    from xpnet import graph

    if args.name is None and args.checkpoint is None:
        return error(f"give the graph to draw: one of {', '.join(GRAPHS)}", "graph")
    name = args.name or "net"
    given = [
        f for dest, (f, default) in args.network_flags.items() if getattr(args, dest) != default
    ]
    if name != "net" and given:
        return error(f"{', '.join(given)}: the network flags apply to graph net only", "graph")
    to_stdout = args.output in (None, "-")
    problem = None if to_stdout else check_output("-o", args.output)
    if problem:
        return error(problem, "graph")
    suffix = "" if to_stdout else graph.suffix_format(args.output)
    if args.format and suffix in graph.FORMATS and suffix != args.format:
        return error(f"--format {args.format} contradicts -o {args.output} ({suffix})", "graph")
    if not args.format and suffix and suffix not in graph.FORMATS:  # -o g.pdf: not DOT text
        return error(
            f"-o {args.output}: cannot tell the format from its suffix: expected one of "
            f"{', '.join('.' + f for f in graph.FORMATS)}, or give --format",
            "graph",
        )
    fmt = args.format or suffix or "dot"
    if fmt in graph.BINARY_FORMATS and args.output is None and sys.stdout.isatty():
        return error(
            f"--format {fmt} is binary, not for a terminal: give -o PATH, redirect stdout "
            "(> g.png, or a pipe), or -o - to write it to the terminal all the same",
            "graph",
        )
    try:
        if fmt != "dot":  # before the data are loaded and the network run
            graph.require_graphviz(fmt)
    except graph.GraphvizUnavailableError as exc:
        return error(str(exc), "graph")
    import_layers(args, "--checkpoint", args.checkpoint)
    if name == "net":
        recording, title = _network_recording(args)
    else:
        recording, title = graph.NAMED[name](), None
    dot = recording.dot(title=title)
    try:
        if to_stdout:
            sys.stdout.buffer.write(graph.render(dot, fmt, dpi=args.dpi))
        else:
            graph.write(dot, args.output, fmt, dpi=args.dpi)
    except graph.GraphvizUnavailableError as exc:
        return error(str(exc), "graph")
    return 0
