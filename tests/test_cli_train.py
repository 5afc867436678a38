"""``xpnet train``: a real end-to-end run on mnist-5k (skipped without the data), and the
rest on a tiny synthetic data set put in place of ``xpnet.datasets``: per-epoch lines,
--iters, --save/--plot, --resume, and exit status 2 with a one-line message for bad input."""

import importlib
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import (
    ONE_SAMPLE_STEPS,
    fake_data,
    mnist_5k_training,
    nested_network,
    run,
    save_from_python,
    user_layers,
    xpnet_command,
)
from metadata import CUPY_GENERATORS_NOT_SAVED, rewrite_metadata, setting, without

from xpnet import MultiLayerNet, SimpleConvNet, backend, checkpoint, datasets
from xpnet.checkpoint import read_metadata, save_params
from xpnet.optim import Adam, Momentum

__all__ = ["fake_data", "user_layers"]  # the fixtures this module takes from cli_helpers


def epoch_lines(text):
    return re.findall(r"^epoch (\d+)/(\d+)  train acc [01]\.\d{4}  test acc [01]\.\d{4}  "
                      r"loss \d+\.\d{4}  \(\d+\.\d+ s\)$", text, flags=re.MULTILINE)  # fmt: skip


def test_mnist_5k_end_to_end_writes_checkpoint_and_plot(tmp_path, capsys):
    try:
        datasets.mnist_5k_path()
    except FileNotFoundError as exc:
        pytest.skip(f"mnist-5k is not available: {exc}")
    pytest.importorskip("matplotlib")
    save, plot = tmp_path / "params.npz", tmp_path / "curve.png"
    argv = ["train", "--dataset", "mnist-5k", "--iters", "80", "--save", str(save),
            "--plot", str(plot)]  # fmt: skip
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert epoch_lines(out) == [("1", "2"), ("2", "2")]  # 80 iterations, 40 an epoch of 4,000
    assert "784-50-10 relu" in out and "80 iterations" in out
    meta = read_metadata(save)
    assert meta["epoch"] == 2 and meta["run"]["dataset"] == "mnist-5k"
    assert meta["history"]["test_acc"][-1] > 0.5
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_iters_become_epochs_and_lines_are_printed(fake_data, capsys):
    assert run(["train", "--iters", "5", "--batch-size", "100", "--lr", "0.5"]) == 0
    out = capsys.readouterr().out
    assert epoch_lines(out) == [("1", "3"), ("2", "3"), ("3", "3")]  # 5 iterations, 2 an epoch
    assert re.search(r"^done: epochs 1-3, 6 iterations in .* test acc", out, re.MULTILINE)
    assert fake_data == ["mnist"]


def test_the_run_line_gives_the_networks_parameter_count(fake_data, capsys):
    assert run(["train", "--hidden", "20", "--epochs", "1"]) == 0
    count = 784 * 20 + 20 + 20 * 10 + 10
    assert f"; 784-20-10 relu, {count:,} parameters, SGD(" in capsys.readouterr().out


def test_quiet_prints_only_the_summary(fake_data, capsys):
    assert run(["train", "--epochs", "2", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("done: epochs 1-2")
    assert captured.out.count("\n") == 1 and captured.err == ""


def test_resume_continues_from_the_saved_epoch(fake_data, tmp_path, capsys):
    common = ["train", "--optimizer", "momentum", "--batch-size", "32", "--hidden", "20"]
    straight = tmp_path / "straight.npz"
    assert run([*common, "--epochs", "3", "--save", str(straight)]) == 0
    part = tmp_path / "part.npz"
    assert run([*common, "--epochs", "2", "--save", str(part)]) == 0
    capsys.readouterr()

    assert run(["train", "--resume", str(part), "--epochs", "3", "--save", str(part)]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "after epoch 2" in out
    assert epoch_lines(out) == [("3", "3")]
    meta = read_metadata(part)
    assert meta["epoch"] == 3 and meta["history"]["epochs"] == [1, 2, 3]
    assert meta["architecture"]["sizes"] == [784, 20, 10]
    assert meta["optimizer"]["name"] == "momentum"
    with np.load(part) as a, np.load(straight) as b:  # same as one uninterrupted run
        for name in ("W1", "b1", "W2", "b2", "optimizer/v/W1"):
            np.testing.assert_array_equal(a[name], b[name])


def scheduled_lrs(text):
    """The lr of each epoch line, as printed with --lr-schedule."""
    return re.findall(r"^epoch \d+/\d+  .*  loss \d+\.\d{4}  lr (\S+)  \(", text, re.MULTILINE)


def test_an_lr_schedule_sets_each_epochs_lr_from_lr(fake_data, tmp_path, capsys):
    path = tmp_path / "p.npz"
    argv = ["train", "--lr", "0.4", "--lr-schedule", "step:2,0.5", "--epochs", "5"]
    assert run([*argv, "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert "SGD(lr=0.4), StepLR(step_size=2, gamma=0.5), batch 100" in out
    assert scheduled_lrs(out) == ["0.4", "0.4", "0.2", "0.2", "0.1"]
    meta = read_metadata(path)
    assert (meta["run"]["lr"], meta["run"]["lr_schedule"]) == (0.4, "step:2,0.5")
    assert meta["optimizer"]["lr"] == 0.1  # the last epoch's


def test_a_scheduled_run_resumes_at_the_next_epochs_lr_as_one_run(fake_data, tmp_path, capsys):
    # Epoch 3's lr, 0.1: not the last saved epoch's (0.2) nor the base (0.4).
    common = ["train", "--optimizer", "momentum", "--lr", "0.4", "--batch-size", "32",
              "--hidden", "20", "--lr-schedule", "exp:0.5"]  # fmt: skip
    straight, part = tmp_path / "straight.npz", tmp_path / "part.npz"
    assert run([*common, "--epochs", "3", "--save", str(straight)]) == 0
    assert run([*common, "--epochs", "2", "--save", str(part)]) == 0
    capsys.readouterr()
    assert run(["train", "--resume", str(part), "--epochs", "3", "--save", str(part)]) == 0
    captured = capsys.readouterr()
    assert scheduled_lrs(captured.out) == ["0.1"] and captured.err == ""
    assert read_metadata(part)["run"]["changes"] == []
    with np.load(part) as a, np.load(straight) as b:
        for name in ("W1", "b1", "W2", "b2", "optimizer/v/W1"):
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_resume_with_lr_schedule_none_ends_the_schedule_and_says_so(fake_data, tmp_path, capsys):
    part, resumed = tmp_path / "part.npz", tmp_path / "resumed.npz"
    assert run(["train", "--epochs", "1", "--quiet", "--lr-schedule", "step:1,0.5",
                "--save", str(part)]) == 0  # fmt: skip
    capsys.readouterr()
    assert run(["train", "--resume", str(part), "--epochs", "2", "--lr-schedule", "none",
                "--save", str(resumed)]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "--lr-schedule step:1,0.5 -> none; it no longer continues" in captured.err
    assert epoch_lines(captured.out) == [("2", "2")]  # at the base lr, printed without it
    meta = read_metadata(resumed)
    assert (meta["run"]["lr_schedule"], meta["optimizer"]["lr"]) == (None, 0.1)


def test_batchnorm_and_dropout_build_the_books_extended_network(fake_data, tmp_path, capsys):
    path = tmp_path / "p.npz"
    argv = ["train", "--hidden", "8", "--batchnorm", "--dropout", "0.2", "--epochs", "1"]
    assert run([*argv, "--save", str(path)]) == 0
    count = (784 * 8 + 8) + (8 + 8) + (8 * 10 + 10)  # the BatchNorm's gamma and beta too
    assert f"784-8-10 relu, batchnorm, dropout 0.2, {count:,} parameters, SGD" in (
        capsys.readouterr().out
    )
    layers = read_metadata(path)["architecture"]["layers"]
    assert [spec["layer"] for spec in layers] == [
        "Affine", "BatchNormalization", "ReLU", "Dropout", "Affine"
    ]  # fmt: skip
    assert layers[3]["config"]["dropout_ratio"] == 0.2


@pytest.mark.parametrize(
    "layers",
    [
        ["--batchnorm"],
        ["--dropout", "0.5"],
        ["--batchnorm", "--dropout", "0.5"],
        "a nested Sequential saved from Python",
        "a user's block saved from Python",
    ],
)
def test_a_resumed_network_trains_as_an_uninterrupted_one(
    fake_data, tmp_path, capsys, user_layers, layers
):
    # The flags build the network, or it is rebuilt from the file it was saved in before
    # training (BatchNorm and Dropout inside a stack, the stack inside the user's block).
    if backend.parse_device().kind == "cuda" and layers != ["--batchnorm"]:
        pytest.skip(CUPY_GENERATORS_NOT_SAVED)  # each of the others holds a Dropout
    modules = []
    if isinstance(layers, list):
        common = ["train", *layers, "--hidden", "20", "--batch-size", "32"]
    else:
        block = None
        if "block" in layers:
            block = importlib.import_module(user_layers).Residual
            modules = ["--layers-module", user_layers]
        start = save_from_python(tmp_path / "start.npz", nested_network(block), Adam(lr=0.01))
        common = [
            "train",
            "--resume",
            str(start),
            *modules,
            "--dataset",
            "mnist",
            "--batch-size",
            "32",
        ]
    straight, part = tmp_path / "straight.npz", tmp_path / "part.npz"
    assert run([*common, "--epochs", "3", "--save", str(straight)]) == 0
    assert run([*common, "--epochs", "2", "--save", str(part)]) == 0
    capsys.readouterr()
    assert (
        run(["train", "--resume", str(part), *modules, "--epochs", "3", "--save", str(part)]) == 0
    )
    assert "after epoch 2" in capsys.readouterr().out
    # the weights and running statistics; with Dropout, after the same masks
    with np.load(part) as a, np.load(straight) as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            if name != "__metadata__":
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize(
    ("saved", "given", "message"),
    [
        ([], ["--batchnorm"], "--batchnorm does not match the checkpoint's network (no batch"),
        (["--dropout", "0.2"], ["--dropout", "0.5"], "0.5 does not match the checkpoint's "
         "network (dropout 0.2)"),
        ([], ["--dropout", "0"], "--dropout 0 does not match the checkpoint's network (no drop"),
        (["--batchnorm"], ["--hidden", "9"], "--hidden 9 does not match the checkpoint's [8]"),
    ],
)  # fmt: skip
def test_resume_refuses_other_layers(fake_data, tmp_path, capsys, saved, given, message):
    path = tmp_path / "p.npz"
    argv = ["train", "--hidden", "8", "--epochs", "1", "--quiet", "--save", str(path), *saved]
    assert run(argv) == 0
    capsys.readouterr()
    assert run(["train", "--resume", str(path), "--epochs", "2", *given]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpnet train: error: ") and message in err and err.count("\n") == 1


def test_a_batchnorm_network_saved_from_python_resumes_as_saved(fake_data, tmp_path, capsys):
    # Its layers come from the file, its hidden size too: no --hidden 8 to give.
    path = tmp_path / "p.npz"
    save_params(path, MultiLayerNet(784, [8], 10, use_batchnorm=True, seed=0), {"epoch": 1})
    assert run(["train", "--resume", str(path), "--dataset", "mnist", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "MultiLayerNet(Affine, BatchNormalization, ReLU, Affine) with SoftmaxWithLoss" in out
    assert epoch_lines(out) == [("2", "2")]


def test_a_network_saved_from_python_resumes_with_its_own_dropout_and_weight_decay(
    fake_data, tmp_path
):
    path, resumed = tmp_path / "p.npz", tmp_path / "resumed.npz"
    net = MultiLayerNet(784, [8], 10, use_batchnorm=True, use_dropout=True, dropout_ratio=0.2,
                        weight_decay=0.1, seed=0)  # fmt: skip
    save_params(path, net, {"epoch": 1})
    argv = ["train", "--resume", str(path), "--dataset", "mnist", "--epochs", "2"]
    assert run([*argv, "--save", str(resumed)]) == 0
    assert read_metadata(resumed)["architecture"] == read_metadata(path)["architecture"]


@pytest.mark.parametrize(
    "flags",
    [
        ["--hidden", "16"],
        ["--model", "mlp"],
        ["--loss", "mse", "--reduction", "sum"],
        ["--dtype", "float64"],
        ["--batchnorm", "--dropout", "0.3"],
        ["--weight-decay", "0.1"],
        ["--weight-init", "he"],
    ],
)
def test_resuming_a_network_of_your_own_refuses_the_flags_of_a_network(
    fake_data, tmp_path, capsys, flags
):
    # They describe the network the flags build; this one's layers and loss are the file's.
    path = save_from_python(tmp_path / "p.npz", nested_network())
    assert run(["train", "--resume", str(path), "--epochs", "1", *flags]) == 2
    given = [flag for flag in flags if flag.startswith("--")]
    assert capsys.readouterr().err == (
        f"xpnet train: error: {', '.join(given)}: the network (layers and loss) comes from the "
        f"checkpoint ({path}); leave {'them' if len(given) > 1 else 'it'} out to resume\n"
    )


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"n_in": 100}, "does not fit mnist: layers[0] (Affine) cannot take the input, of "
         "shape (1, 784): Affine input of shape (1, 784) does not fit W of shape (100, 16)"),
        ({"n_out": 5}, "gives scores of shape (1, 5) for one mnist sample of shape (784,); its "
         "10 classes need (1, 10)"),
    ],
)  # fmt: skip
def test_a_network_of_your_own_that_does_not_fit_the_data_is_a_one_line_error(
    fake_data, tmp_path, capsys, sizes, message
):
    path = save_from_python(tmp_path / "p.npz", nested_network(**sizes))
    assert run(["train", "--resume", str(path), "--dataset", "mnist", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xpnet train: error: --resume {path}: the checkpoint's network ")
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (without("architecture.loss"), "checkpoint field architecture.loss is missing"),
        (setting("architecture.loss", {"layer": "ReLU"}), "cannot rebuild the network: loss "
         "ReLU is not a loss layer"),
    ],
)  # fmt: skip
def test_a_network_of_your_own_without_a_loss_layer_is_a_one_line_error(
    fake_data, tmp_path, capsys, edit, message
):
    path = save_from_python(tmp_path / "p.npz", nested_network())
    rewrite_metadata(path, edit)
    assert run(["train", "--resume", str(path), "--dataset", "mnist", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xpnet train: error: {path}: ") and message in err
    assert err.count("\n") == 1


def test_a_layer_class_of_your_own_is_found_through_layers_module(
    fake_data, tmp_path, capsys, monkeypatch, user_layers
):
    path = save_from_python(
        tmp_path / "p.npz", nested_network(importlib.import_module(user_layers).Residual)
    )
    # As a new process sees it: the module not imported, its class not registered.
    monkeypatch.setattr(checkpoint, "_LAYERS", {})
    del sys.modules[user_layers]
    argv = ["train", "--resume", str(path), "--dataset", "mnist", "--epochs", "1"]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"xpnet train: error: {path}: layers[2] is a 'CliTestResidual', which is not a "
        "registered layer (registered: Affine, "
    )
    assert err.endswith(
        "Give --layers-module MODULE, the module that registers the class with "
        "xpnet.register_layer, importable here (installed, or its folder on PYTHONPATH)\n"
    )
    assert run([*argv, "--layers-module", "json"]) == 2
    assert "--layers-module json did not register it; give --layers-module MODULE" in (
        capsys.readouterr().err
    )
    assert run([*argv, "--layers-module", user_layers]) == 0
    assert epoch_lines(capsys.readouterr().out) == [("1", "1")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--layers-module", "no_such_module_here"], "--layers-module no_such_module_here: No "
         "module named 'no_such_module_here'; the module is imported as Python imports modules, "
         "from the current folder too: install it, or put its folder on PYTHONPATH\n"),
        (["--layers-module", "my_layers.py"], "argument --layers-module: expected a module "
         "name, not a file name: 'my_layers' for 'my_layers.py'\n"),
        (["--layers-module", "my-layers"], "argument --layers-module: expected a module name "
         "(my_layers, package.layers), got 'my-layers'\n"),
    ],
)  # fmt: skip
def test_a_layers_module_that_cannot_be_imported_is_a_one_line_error(
    fake_data, tmp_path, capsys, argv, message
):
    path = save_from_python(tmp_path / "p.npz", nested_network())
    assert run(["train", "--resume", str(path), *argv]) == 2
    assert capsys.readouterr().err.endswith(f"xpnet train: error: {message}")
    assert fake_data == []


def test_a_layers_module_in_the_current_folder_is_found_without_pythonpath(
    fake_data, tmp_path, capsys, monkeypatch, user_layers
):
    # It needed PYTHONPATH=., where python -m finds a module in the current folder.
    block = importlib.import_module(user_layers).Residual
    save_from_python(tmp_path / "p.npz", nested_network(block))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    del sys.modules[user_layers], checkpoint._LAYERS["CliTestResidual"]  # as a new process
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--resume", "p.npz", "--dataset", "mnist", "--epochs", "1"]
    assert run([*argv, "--layers-module", user_layers]) == 0
    assert epoch_lines(capsys.readouterr().out) == [("1", "1")]


def test_layers_module_without_resume_is_refused(fake_data, capsys):
    assert run(["train", "--epochs", "1", "--layers-module", "json"]) == 2
    assert capsys.readouterr().err == (
        "xpnet train: error: --layers-module imports the layer classes of a checkpoint: use it "
        "with --resume\n"
    )


def test_a_conv_net_saved_from_python_resumes_on_images(fake_data, tmp_path, capsys):
    path = tmp_path / "conv.npz"
    save_from_python(path, SimpleConvNet(hidden_size=8, seed=0))
    assert run(["train", "--resume", str(path), "--dataset", "mnist", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "SimpleConvNet(Convolution, ReLU, Pooling, Affine, ReLU, Affine)" in out
    assert epoch_lines(out) == [("1", "1")]


def test_train_samples_trains_on_the_first_n_samples(fake_data, tmp_path, capsys):
    path = tmp_path / "p.npz"
    assert run(["train", "--train-samples", "30", "--epochs", "1", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert "mnist: 30 train / 50 test" in out and "1 epoch," in out
    assert read_metadata(path)["history"]["iterations"] == [1]  # 30 samples: one batch of 100
    assert read_metadata(path)["run"]["train_samples"] == 30


def test_train_samples_beyond_the_training_set_is_a_one_line_error(fake_data, capsys):
    assert run(["train", "--train-samples", "201", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err == "xpnet train: error: --train-samples 201: mnist has 200 training samples\n"


def test_resuming_a_run_that_reached_its_target_trains_nothing(fake_data, tmp_path, capsys):
    part = tmp_path / "part.npz"
    assert run(["train", "--epochs", "2", "--save", str(part)]) == 0
    capsys.readouterr()
    assert run(["train", "--resume", str(part), "--epochs", "2", "--save", str(part)]) == 0
    out = capsys.readouterr().out
    assert "already trained 2 epochs (target 2); nothing to do" in out
    assert epoch_lines(out) == [] and read_metadata(part)["epoch"] == 2


def test_the_course_network_trains_one_sample_at_a_time(fake_data, tmp_path, capsys):
    path = tmp_path / "course.npz"
    assert run(["train", "--model", "course", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    count = 784 * 100 + 100 + 100 * 10 + 10
    assert (
        f"784-100-10 sigmoid sigmoid-bce (sum), {count:,} parameters, SGD(lr=0.3), batch 1, 1 epoch"
        in out
    )
    assert "200 iterations" in out and len(epoch_lines(out)) == 1
    meta = read_metadata(path)
    assert meta["architecture"]["loss"] == {
        "layer": "SigmoidWithLoss",
        "config": {"reduction": "sum"},
    }
    assert "output_activation" not in meta["architecture"]  # the loss applies the sigmoid
    assert meta["run"]["target_range"] == [0.01, 0.99] and meta["run"]["model"] == "course"
    with np.load(path) as saved:
        assert np.all(saved["b1"] != 0)  # biases drawn uniform in [0, 1), not zero


def test_flags_override_the_course_preset(fake_data, tmp_path, capsys):
    path = tmp_path / "course.npz"
    argv = ["train", "--model", "course", "--output-activation", "sigmoid", "--loss", "mse",
            "--lr", "0.15", "--batch-size", "10", "--save", str(path)]  # fmt: skip
    assert run(argv) == 0
    count = 784 * 100 + 100 + 100 * 10 + 10
    line = f"784-100-10 sigmoid/sigmoid mse (sum), {count:,} parameters, SGD(lr=0.15), batch 10"
    assert line in capsys.readouterr().out
    architecture = read_metadata(path)["architecture"]  # the network trained, not just the line
    assert architecture.get("output_activation") == "sigmoid"
    assert architecture["loss"] == {"layer": "MeanSquaredError", "config": {"reduction": "sum"}}
    assert read_metadata(path)["optimizer"]["lr"] == 0.15


def test_a_summed_loss_at_a_batch_with_the_preset_lr_gets_advice(fake_data, capsys):
    # lr 0.3 is the course's for one sample a step; summed over 100 samples it saturates.
    assert run(["train", "--model", "course", "--batch-size", "100"]) == 0
    err = capsys.readouterr().err
    assert "note: --reduction sum adds up the batch's 100 losses" in err
    assert "lr 0.3 is the course's, for one sample a step: try --lr 0.003" in err


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov"])
def test_a_summed_loss_at_a_batch_with_the_optimizers_own_lr_gets_advice(
    fake_data, capsys, optimizer
):
    # No --lr: the course's 0.3 is SGD's, these take their own 0.01 (it was a traceback).
    assert run(["train", "--model", "course", "--batch-size", "100", "--optimizer", optimizer]) == 0
    err = capsys.readouterr().err
    assert f"lr 0.01 is {optimizer}'s default: try --lr 0.0001 or --reduction mean" in err


@pytest.mark.parametrize(
    "flags",
    [
        ["--model", "course"],  # one sample a step, as the preset's lr is meant for
        ["--model", "course", "--batch-size", "100", "--lr", "0.003"],  # the user's own lr
        ["--model", "course", "--batch-size", "100", "--optimizer", "adam"],  # scale-free
        ["--batch-size", "100"],  # the mean
    ],
    ids=["batch-1", "lr-given", "adam", "mean"],
)
def test_no_advice_where_the_step_does_not_grow_with_the_batch(fake_data, capsys, flags):
    # One epoch: the advice comes from the settings alone (the book's 10,000 iterations on
    # the 200 fake samples took 53 s on a slow VM)
    assert run(["train", *flags, "--epochs", "1"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_the_course_network_keeps_its_sigmoid_output_with_the_squared_error(
    fake_data, tmp_path, capsys
):
    # The notes' own update: their sigmoid output, as a layer now that the loss has none.
    path = tmp_path / "course.npz"
    assert run(["train", "--model", "course", "--loss", "mse", "--save", str(path)]) == 0
    assert "784-100-10 sigmoid/sigmoid mse (sum)" in capsys.readouterr().out
    assert read_metadata(path)["architecture"].get("output_activation") == "sigmoid"


def test_a_sigmoid_output_before_sigmoid_bce_is_a_one_line_error(fake_data, capsys):
    assert run(["train", "--model", "course", "--output-activation", "sigmoid"]) == 2
    err = capsys.readouterr().err
    assert (
        "--output-activation sigmoid with --loss sigmoid-bce would apply the sigmoid twice" in err
    )
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (["--hidden", "100"], "--hidden 100 does not match the checkpoint's [50]"),
        (["--model", "convnet"], "--model convnet does not match the checkpoint's mlp"),
        # It trained on the other data set, and joined the two histories.
        (
            ["--dataset", "fashion-mnist"],
            "--dataset fashion-mnist does not match the checkpoint's mnist",
        ),
        # It joined epochs on 30 samples to epochs on all 200 in one history.
        (["--train-samples", "30"], "--train-samples 30 does not match the checkpoint's all"),
    ],
)
def test_resume_rejects_another_architecture_or_data_set(
    fake_data, tmp_path, capsys, flag, message
):
    path = tmp_path / "p.npz"
    assert run(["train", "--epochs", "1", "--quiet", "--save", str(path)]) == 0
    assert run(["train", "--resume", str(path), *flag]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "abc"], "argument --lr: expected a positive number"),
        (["--lr", "inf"], "argument --lr: expected a positive number, got 'inf'"),
        (["--lr", "nan"], "argument --lr: expected a positive number, got 'nan'"),
        (["--epochs", "0"], "argument --epochs: expected a positive integer"),
        (["--epochs", "2", "--iters", "5"], "not allowed with argument"),
        (["--dataset", "cifar"], "invalid choice: 'cifar'"),
        (["--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
        (["--weight-init", "big"], "expected 'he', 'xavier' or a positive standard deviation"),
        (
            ["--target-range", "0.99,0.01"],
            "expected LOW,HIGH, two finite numbers with LOW < HIGH, got '0.99,0.01'",
        ),
        (["--target-range", "0,inf"], "two finite numbers with LOW < HIGH, got '0,inf'"),
        (["--input-range=-inf,1"], "two finite numbers with LOW < HIGH, got '-inf,1'"),
        (["--loss", "hinge"], "invalid choice: 'hinge'"),
        (["--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
        (["--dropout", "1"], "argument --dropout: expected a number in [0, 1), got '1'"),
        (["--train-samples", "0"], "argument --train-samples: expected a positive integer"),
        (["--lr-schedule", "warmup:3"], "argument --lr-schedule: expected one of step:N[,GAMMA], "
         "multistep:M1/M2/...[,GAMMA], exp:GAMMA, cosine:T_MAX[,ETA_MIN] or none, got 'warmup:3'"),
        (["--lr-schedule", "step:2,0.5,1"], "or none, got 'step:2,0.5,1'"),
        (["--lr-schedule", "step:0"], "--lr-schedule: 'step:0': step_size must be an integer >= 1"),
        (["--lr-schedule", "multistep:4/2"], "'multistep:4/2': milestones must be increasing"),
        (["--lr-schedule", "exp:0"], "--lr-schedule: 'exp:0': gamma must be a number > 0, got 0.0"),
        (["--lr-schedule", "cosine:5,-1"], "'cosine:5,-1': eta_min must be a number >= 0"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_with_usage(argv, message, capsys):
    assert run(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: xpnet train") and message in err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_directory_that_takes_no_files_is_refused_before_training(fake_data, capsys):
    # /proc takes no new files, even from root (for whom permission bits do not count).
    for option in ("--save", "--plot"):
        assert run(["train", "--epochs", "1", option, "/proc/p.npz"]) == 2
        err = capsys.readouterr().err
        assert f"{option} /proc/p.npz: cannot write in directory /proc" in err, err
    assert fake_data == []  # refused before loading any data


def test_problems_found_after_parsing_exit_2_with_one_line(fake_data, tmp_path, capsys):
    cases = [
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--dataset", "fashion-mnist"], "fashion-mnist not found"),
        (["--save", str(tmp_path / "no" / "p.npz")], "does not exist"),
        (["--resume", str(tmp_path / "missing.npz")], "does not exist"),
        (["--resume", str(tmp_path)], "is a directory, not a file"),
        (["--save", ""], "--save needs a file name, got an empty one"),
    ]
    for argv, message in cases:
        assert run(["train", "--epochs", "1", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("xpnet train: error: ") and message in err, err
        assert err.count("\n") == 1
    assert fake_data == ["fashion-mnist"]  # the other errors came before loading any data


def test_a_save_path_that_is_a_directory_is_refused_before_training(fake_data, tmp_path, capsys):
    assert run(["train", "--epochs", "1", "--save", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"xpnet train: error: --save {tmp_path} is a directory\n"
    assert fake_data == []  # refused before loading any data


def test_invalid_device_in_a_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "xpnet", "train", "--device", "gpu:0", "--epochs", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("xpnet train: error: unknown device 'gpu:0'")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_periodic_checkpoints_survive_an_interrupt(fake_data, tmp_path, capsys, monkeypatch):
    from xpnet.training import Trainer

    original = Trainer.train_epoch

    def interrupt_in_epoch_3(self, order, label=""):
        if self.epoch == 2:
            raise KeyboardInterrupt
        original(self, order, label)

    monkeypatch.setattr(Trainer, "train_epoch", interrupt_in_epoch_3)
    path = tmp_path / "p.npz"
    assert run(["train", "--epochs", "5", "--save", str(path), "--save-interval", "0"]) == 130
    assert f"interrupted during epoch 3; {path} holds epoch 2" in capsys.readouterr().err
    assert read_metadata(path)["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]


def stopped_by(signum, save):
    """``(exit status, stdout, stderr)`` of a mnist-5k training of 1,000 epochs saving to
    ``save``, sent ``signum`` once as it trains."""
    proc = mnist_5k_training(["--epochs", "1000", "--save", str(save)])
    try:
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, out, err


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_once_ends_the_epoch_saves_it_and_exits_130(tmp_path):
    save = tmp_path / "p.npz"
    status, out, err = stopped_by(signal.SIGINT, save)
    assert status == 130, err
    epoch = int(re.match(r"\nstopping after epoch (\d+) \(Ctrl-C again to stop now\)\n", err)[1])
    assert err.endswith(f"\ninterrupted after epoch {epoch}; {save} holds epoch {epoch}\n"), err
    assert [int(e) for e, _ in epoch_lines(out)] == list(range(2, epoch + 1))  # after the 1st
    assert re.search(rf"^stopped: epochs 1-{epoch} of 1000, {4000 * epoch} iterations", out, re.M)
    assert f"saved {save}\n" in out
    assert read_metadata(save)["epoch"] == epoch

    # The checkpoint goes on as the uninterrupted run does, bit for bit.
    resumed, straight = tmp_path / "resumed.npz", tmp_path / "straight.npz"
    for argv in (["--resume", str(save), "--save", str(resumed)], ["--save", str(straight)]):
        done = subprocess.run([sys.executable, "-m", "xpnet", *ONE_SAMPLE_STEPS, "--quiet",
                               "--epochs", str(epoch + 1), *argv],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
    with np.load(resumed) as a, np.load(straight) as b:  # the weights and optimizer state
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            if name != "__metadata__":  # which records the seconds each epoch took
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_sigterm_ends_the_epoch_saves_it_and_exits_143(tmp_path):
    # What `timeout`, Slurm and `kill` send: the run stops as after a first Ctrl-C.
    save = tmp_path / "p.npz"
    status, out, err = stopped_by(signal.SIGTERM, save)
    assert status == 143, err
    stopping = r"\nstopping after epoch (\d+) \(SIGTERM or Ctrl-C again to stop now\)\n"
    epoch = int(re.match(stopping, err)[1])
    assert err.endswith(f"\nterminated after epoch {epoch}; {save} holds epoch {epoch}\n"), err
    assert re.search(rf"^stopped: epochs 1-{epoch} of 1000, ", out, re.M), out
    assert f"saved {save}\n" in out
    assert read_metadata(save)["epoch"] == epoch


def test_a_second_sigterm_stops_the_run_at_once_with_143(tmp_path):
    save = tmp_path / "p.npz"
    proc = mnist_5k_training(["--epochs", "1000", "--save", str(save)])
    try:
        proc.send_signal(signal.SIGTERM)
        said = proc.stderr.readline() + proc.stderr.readline()  # "\nstopping after epoch N ..."
        proc.send_signal(signal.SIGTERM)  # epochs of 0.3-0.7 s: within epoch N
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, said + err
    epoch = int(re.match(r"\nstopping after epoch (\d+) ", said)[1])
    assert err == f"\nterminated during epoch {epoch}\n"
    assert "saved" not in out and not save.exists()  # mid-epoch: nothing to save


def full_disk_command(tmp_path, size, argv):
    """``python -m xpnet argv`` with ``tmp_path / "disk"`` a file system of ``size`` (a
    tmpfs, in a mount namespace of its own); skips where this user cannot make one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["unshare", "--mount", "--map-root-user", "sh", "-c",
             f'mount -t tmpfs -o size={size} xpnet-test "$0" && exec "$@"', str(disk)]  # fmt: skip
    try:
        probe = subprocess.run([*mount, "true"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("no unshare command to mount a small file system with")
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {probe.stderr.strip()}")
    return subprocess.run([*mount, sys.executable, "-m", "xpnet", *argv],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


# A checkpoint of 784-50-10 takes 161 kB: none fits in 100 kB; one fits in 240 kB, but not
# the next beside it, which replaces it once whole.
@pytest.mark.parametrize(
    ("size", "flags", "left"),
    [
        ("100k", ["--epochs", "1"], "nothing was saved"),
        ("240k", ["--epochs", "3", "--save-interval", "0"], "{path} holds epoch 1, the last "
         "checkpoint written"),
    ],
)  # fmt: skip
def test_a_full_disk_names_the_checkpoint_and_what_it_holds(tmp_path, size, flags, left):
    try:
        datasets.mnist_5k_path()
    except FileNotFoundError as exc:
        pytest.skip(f"mnist-5k is not available: {exc}")
    path = tmp_path / "disk" / "p.npz"
    argv = ["train", "--dataset", "mnist-5k", "--quiet", "--save", str(path), *flags]
    done = full_disk_command(tmp_path, size, argv)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"xpnet train: error: cannot write {path}: No space left on device [Errno 28]; "
        f"{left.format(path=path)}\n"
    )


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_a_save_interval_that_is_not_a_number_of_seconds_is_refused(value, capsys):
    assert run(["train", "--save", "p.npz", "--save-interval", value]) == 2
    assert (
        f"xpnet train: error: argument --save-interval: expected a number >= 0, got {value!r}\n"
        in capsys.readouterr().err
    )


def test_a_save_interval_without_save_is_refused(fake_data, capsys):
    assert run(["train", "--epochs", "1", "--save-interval", "0"]) == 2
    assert capsys.readouterr().err == (
        "xpnet train: error: --save-interval 0: nothing to save without --save\n"
    )
    assert fake_data == []  # before the data are read


def test_a_save_interval_of_zero_saves_after_every_epoch(fake_data, tmp_path, monkeypatch):
    from xpnet import checkpoint as ckpt

    saved_epochs = []
    original = ckpt.save_params

    def recorded(path, net, meta, **kwargs):
        saved_epochs.append(meta["epoch"])
        original(path, net, meta, **kwargs)

    monkeypatch.setattr(ckpt, "save_params", recorded)
    path = tmp_path / "p.npz"
    assert run(["train", "--epochs", "3", "--quiet", "--save", str(path),
                "--save-interval", "0"]) == 0  # fmt: skip
    assert saved_epochs == [1, 2, 3]


def ctrl_c_in_epoch(monkeypatch, epoch, presses):
    """Trainer's epoch ``epoch`` starts with ``presses`` real SIGINTs to this process, each
    handled before the next is sent: a signal at a known point, where a subprocess's lands
    where the machine's load puts it."""
    from xpnet.training import Trainer

    original = Trainer.train_epoch

    def pressed(self, order, label=""):
        if self.epoch == epoch - 1:
            for _ in range(presses):
                os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode
        original(self, order, label)

    monkeypatch.setattr(Trainer, "train_epoch", pressed)


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_once_in_the_last_epoch_lets_the_run_end_as_it_would_have(
    fake_data, tmp_path, capsys, monkeypatch
):
    ctrl_c_in_epoch(monkeypatch, epoch=3, presses=1)
    save = tmp_path / "p.npz"
    assert run(["train", "--epochs", "3", "--save", str(save)]) == 0
    out, err = capsys.readouterr()
    assert err == "\nstopping after epoch 3 (Ctrl-C again to stop now)\n"
    assert re.search(r"^done: epochs 1-3, ", out, re.M), out
    assert read_metadata(save)["epoch"] == 3


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_twice_in_an_epoch_stops_it_at_once(fake_data, tmp_path, capsys, monkeypatch):
    ctrl_c_in_epoch(monkeypatch, epoch=2, presses=2)
    save = tmp_path / "p.npz"
    assert run(["train", "--epochs", "3", "--save", str(save)]) == 130
    out, err = capsys.readouterr()
    stopping = "\nstopping after epoch 2 (Ctrl-C again to stop now)\n"
    assert err == f"{stopping}\ninterrupted during epoch 2\n"
    assert "saved" not in out and not save.exists()  # mid-epoch: nothing to save


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_training_puts_back_the_signal_handler_it_found(fake_data, signum):
    def handler(signum, frame):
        raise AssertionError("not called")

    previous = signal.signal(signum, handler)
    try:
        assert run(["train", "--epochs", "1", "--quiet"]) == 0
        assert signal.getsignal(signum) is handler
    finally:
        signal.signal(signum, previous)


def test_an_interrupt_while_the_data_load_is_one_line_and_status_130(
    fake_data, monkeypatch, capsys
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["xpnet.datasets"], "load_mnist", interrupted)
    assert run(["train", "--epochs", "1"]) == 130
    assert capsys.readouterr().err == "\nxpnet train: interrupted\n"


def test_resume_keeps_the_optimizers_other_hyperparameters(fake_data, tmp_path):
    path = tmp_path / "old.npz"
    net = MultiLayerNet(784, [50], 10, seed=0)
    optimizer = Momentum(lr=0.05, momentum=0.5)
    run_settings = {"dataset": "mnist", "model": "mlp", "optimizer": "momentum"}
    save_params(path, net, {"epoch": 1, "run": run_settings}, optimizer=optimizer)
    resumed = tmp_path / "new.npz"
    assert run(["train", "--resume", str(path), "--epochs", "2", "--save", str(resumed)]) == 0
    assert read_metadata(resumed)["optimizer"] | {"iterations": 0} == {
        "name": "momentum", "lr": 0.05, "momentum": 0.5, "iterations": 0
    }  # fmt: skip


def test_resume_names_the_file_when_its_optimizer_settings_are_refused(fake_data, tmp_path, capsys):
    path = tmp_path / "p.npz"
    run_settings = {"dataset": "mnist", "model": "mlp", "optimizer": "momentum"}
    save_params(path, MultiLayerNet(784, [50], 10, seed=0), {"epoch": 1, "run": run_settings},
                optimizer=Momentum(lr=0.05))  # fmt: skip
    rewrite_metadata(path, setting("optimizer.momentum", 2))
    assert run(["train", "--resume", str(path), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"xpnet train: error: --resume {path}: checkpoint field optimizer: "
        "Invalid momentum: 2 (expected a number in [0, 1))\n"
    )


def test_resume_checks_the_output_activation_against_the_architecture(fake_data, tmp_path, capsys):
    path = tmp_path / "old.npz"
    net = MultiLayerNet(784, [50], 10, seed=0)
    save_params(path, net, {"epoch": 1, "run": {"dataset": "mnist", "model": "mlp"}})
    assert run(["train", "--resume", str(path), "--output-activation", "sigmoid"]) == 2
    err = capsys.readouterr().err
    assert "--output-activation sigmoid does not match the checkpoint's None" in err
    assert "Traceback" not in err


def test_convnet_trains_on_images_and_resumes(fake_data, tmp_path, capsys):
    path = tmp_path / "conv.npz"
    common = ["train", "--model", "convnet", "--hidden", "8", "--optimizer", "adam"]
    assert run([*common, "--lr", "0.01", "--epochs", "1", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert "SimpleConvNet conv30-pool-8-10" in out and epoch_lines(out) == [("1", "1")]
    meta = read_metadata(path)
    assert meta["run"]["model"] == "convnet"
    assert [layer["layer"] for layer in meta["architecture"]["layers"]] == [
        "Convolution", "ReLU", "Pooling", "Affine", "ReLU", "Affine"
    ]  # fmt: skip
    assert run(["train", "--resume", str(path), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "after epoch 1" in out and epoch_lines(out) == [("2", "2")]


def test_convnet_takes_he_weights_by_each_weights_fan_in(fake_data, tmp_path):
    path = tmp_path / "conv.npz"  # Adam's steps of about lr: the file holds the initial weights
    argv = ["train", "--model", "convnet", "--weight-init", "he", "--lr", "1e-12", "--epochs", "1"]
    assert run([*argv, "--save", str(path)]) == 0
    with np.load(path) as saved:
        stds = {name: float(saved[name].std()) for name in ("W1", "W2", "W3")}
    fan_ins = {"W1": 5 * 5, "W2": 30 * 12 * 12, "W3": 100}
    assert stds == pytest.approx({k: np.sqrt(2 / n) for k, n in fan_ins.items()}, rel=0.1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--activation", "tanh"], "--activation: not settings of the book's convnet"),
        (["--loss", "mse", "--weight-decay", "0.1"], "--loss, --weight-decay: not settings"),
        (["--hidden", "8", "--hidden", "4"], "--hidden: the convnet has one hidden Affine"),
        (["--batchnorm", "--dropout", "0.5"], "--batchnorm, --dropout: not settings"),
    ],
)
def test_convnet_rejects_options_of_the_mlp(fake_data, argv, message, capsys):
    assert run(["train", "--model", "convnet", "--epochs", "1", *argv]) == 2
    assert message in capsys.readouterr().err


# The commands that read a checkpoint, each checking it as the others do.
READING_A_CHECKPOINT = [["train", "--epochs", "2", "--resume"], ["gradcheck", "--checkpoint"]]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda meta: None, "field __metadata__ is null, expected a JSON object"),
        (setting("architecture.sizes", None), "architecture.sizes is null, expected a list"),
        (setting("history.epochs", [1, 2]), "history.iterations is [2], expected a list of 2"),
        (setting("epoch", "three"), 'field epoch is "three", expected an integer >= 0'),
        (setting("optimizer.lr", -1), "field optimizer.lr is -1, expected a finite number >= 0"),
        (setting("optimizer.name", "lbfgs"), 'optimizer.name is "lbfgs", expected one of'),
        (setting("run.model", "resnet"), 'field run.model is "resnet", expected one of "mlp"'),
        (setting("run.batch_size", "100"), 'run.batch_size is "100", expected an integer >= 1'),
        (setting("run.target_range", [1, 0]), "run.target_range is [1, 0], expected null or"),
        (setting("run.eval_samples", 0), "run.eval_samples is 0, expected an integer >= 1 or null"),
        (setting("run.dropout", 1), "run.dropout is 1, expected a number in [0, 1) or null"),
        (setting("run.batchnorm", 1), "run.batchnorm is 1, expected true or false"),
        (setting("run.lr", -0.1), "field run.lr is -0.1, expected a finite number >= 0"),
        (setting("run.freeze", "W1"), 'field run.freeze is "W1", expected a list'),
        (
            setting("run.lr_schedule", "step:0"),
            'field run.lr_schedule is "step:0", expected null '
            "or an --lr-schedule spec (step:10,0.5)",
        ),
    ],
)
@pytest.mark.parametrize("argv", READING_A_CHECKPOINT)
def test_a_checkpoint_with_malformed_metadata_is_refused_alike_by_resume_and_gradcheck(
    fake_data, tmp_path, capsys, edit, message, argv
):
    path = tmp_path / "p.npz"
    assert run(["train", "--epochs", "1", "--quiet", "--save", str(path)]) == 0
    capsys.readouterr()
    rewrite_metadata(path, edit)
    assert run([*argv, str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xpnet {argv[0]}: error: {path}: checkpoint field ") and message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv", READING_A_CHECKPOINT)
def test_a_checkpoint_without_its_architecture_is_refused_alike_by_resume_and_gradcheck(
    fake_data, tmp_path, capsys, argv
):
    path = tmp_path / "p.npz"
    assert run(["train", "--epochs", "1", "--quiet", "--save", str(path)]) == 0
    capsys.readouterr()
    rewrite_metadata(path, without("architecture"))
    assert run([*argv, str(path)]) == 2
    assert capsys.readouterr().err == (
        f"xpnet {argv[0]}: error: {argv[-1]} {path}: the checkpoint records no network "
        "architecture\n"
    )


def test_resume_of_a_layered_network_as_an_mlp_is_a_one_line_error(fake_data, tmp_path, capsys):
    path = tmp_path / "conv.npz"
    assert run(["train", "--model", "convnet", "--hidden", "8", "--epochs", "1", "--quiet",
                "--save", str(path)]) == 0  # fmt: skip
    capsys.readouterr()
    rewrite_metadata(path, setting("run", {"dataset": "mnist", "model": "mlp"}))
    assert run(["train", "--resume", str(path), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "the checkpoint's network (a Sequential of Convolution, ReLU, Pooling, Affine, " in err
    assert "does not fit mlp on mnist (784 inputs), the model of its run settings\n" in err
    assert err.count("\n") == 1


def settings_of(argv, saved=None):
    """The settings ``xpnet train`` builds from ``argv`` (and a checkpoint's metadata)."""
    from xpnet.cli import build_parser
    from xpnet.cli.network import train_settings

    args = build_parser().parse_args(["train", *argv])
    return args, train_settings(args, saved or {})


def test_a_weight_decay_of_zero_is_accepted(fake_data):
    assert run(["train", "--epochs", "1", "--quiet", "--weight-decay", "0"]) == 0


def test_an_empty_value_range_is_refused(capsys):
    assert run(["train", "--input-range", "0.5,0.5"]) == 2
    assert (
        "expected LOW,HIGH, two finite numbers with LOW < HIGH, got '0.5,0.5'"
        in capsys.readouterr().err
    )


def test_the_convnet_preset_trains_with_adam_for_20_epochs():
    _, s = settings_of(["--model", "convnet"])
    assert s["optimizer"] == "adam" and s["lr"] is None  # Adam's own default, 0.001
    assert s["length"] == ("epochs", 20)


def test_the_default_length_is_the_books_10000_iterations():
    _, s = settings_of([])
    assert s["length"] == ("iters", 10_000) and s["batch_size"] == 100 and s["lr"] == 0.1


def test_a_zero_flag_overrides_the_checkpoints_setting():
    _, s = settings_of(["--seed", "0"], {"run": {"seed": 5, "model": "mlp"}})
    assert s["seed"] == 0


def test_input_range_rescales_the_pixels_linearly(fake_data):
    from xpnet.cli.network import load_data

    plain_args, plain = settings_of(["--dtype", "float64"])
    args, ranged = settings_of(["--dtype", "float64", "--input-range", "0.01,1"])
    (x, _), (x_test, _) = load_data(plain, plain_args)
    (y, _), (y_test, _) = load_data(ranged, args)
    x, x_test, y, y_test = map(backend.to_numpy, (x, x_test, y, y_test))  # on the default device
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, 0.01 + 0.99 * x)
    np.testing.assert_allclose(y_test, 0.01 + 0.99 * x_test)


@pytest.mark.parametrize(
    ("argv", "std"),
    [
        (["--hidden", "50"], 0.01),  # the book's TwoLayerNet
        (["--hidden", "50", "--hidden", "50"], np.sqrt(2 / 784)),  # he for deeper ReLU nets
        (["--hidden", "50", "--hidden", "50", "--activation", "tanh"], np.sqrt(1 / 784)),
        (["--model", "course"], np.sqrt(2 / 784)),  # the course's randn / sqrt(fan_in / 2)
        (["--model", "convnet", "--hidden", "8"], 0.01),  # the book's SimpleConvNet
    ],
)
def test_default_weight_init_gives_the_documented_first_layer_std(argv, std):
    from xpnet.cli.network import network

    args, s = settings_of(argv)
    net = network(s, args, 784)
    assert float(np.std(backend.to_numpy(net.params["W1"]))) == pytest.approx(std, rel=0.1)


def test_eval_samples_limits_the_samples_evaluated(fake_data, tmp_path):
    path = tmp_path / "p.npz"
    argv = ["train", "--epochs", "2", "--lr", "0.1", "--eval-samples", "7", "--quiet",
            "--save", str(path)]  # fmt: skip
    assert run(argv) == 0
    history = read_metadata(path)["history"]
    for acc in history["train_acc"] + history["test_acc"]:
        assert acc * 7 == pytest.approx(round(acc * 7))  # a fraction of 7 samples
    assert any(0 < acc < 1 for acc in history["train_acc"] + history["test_acc"])


def test_target_range_changes_what_the_network_trains_towards(fake_data, tmp_path):
    one_hot, ranged = tmp_path / "one_hot.npz", tmp_path / "ranged.npz"
    common = ["train", "--epochs", "1", "--quiet", "--loss", "mse"]
    assert run([*common, "--save", str(one_hot)]) == 0
    assert run([*common, "--target-range", "0.2,0.8", "--save", str(ranged)]) == 0
    with np.load(one_hot) as a, np.load(ranged) as b:
        assert not np.allclose(a["W2"], b["W2"])


def test_iters_count_batches_of_the_given_size(fake_data, capsys):
    assert run(["train", "--iters", "6", "--batch-size", "50", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("done: epochs 1-2, 8 iterations")  # 6, 4 an epoch


def test_iters_count_updates_when_the_batch_does_not_divide_the_training_set(fake_data, capsys):
    # 200 samples in batches of 150 and 50: 2 updates an epoch, so 4 iterations are 2 epochs
    assert run(["train", "--iters", "4", "--batch-size", "150", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("done: epochs 1-2, 4 iterations")


def test_a_batch_larger_than_the_training_set_is_one_update_an_epoch(fake_data, capsys):
    # as PyTorch's DataLoader: one smaller batch, all 200 samples, per epoch
    assert run(["train", "--iters", "3", "--batch-size", "500", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("done: epochs 1-3, 3 iterations")


@pytest.mark.parametrize(("n_train", "epochs"), [(4_000, 250), (60_000, 17)])
def test_the_books_10000_iterations_of_100_are_whole_epochs(n_train, epochs):
    from xpnet.cli.train import epochs_for_iters

    # mnist-5k's 4,000 samples: 40 updates an epoch; MNIST's 60,000: 600 (16.7 epochs, rounded up)
    assert epochs_for_iters(10_000, 100, n_train) == epochs


def test_data_dir_with_mnist_5k_is_a_usage_error(fake_data, tmp_path, capsys):
    argv = ["train", "--dataset", "mnist-5k", "--data-dir", str(tmp_path), "--epochs", "1"]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpnet train: error: --data-dir") and "mnist-5k" in err
    assert err.count("\n") == 1
    assert fake_data == []  # refused before loading any data


def test_a_data_dir_without_the_data_is_an_error_naming_it(tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere"  # a complete copy the run must not fall back on
    rng = np.random.default_rng(0)
    for role, file in datasets.FILES.items():
        n = 20 if role.startswith("train") else 10
        labels = np.arange(n, dtype=np.uint8) % 10
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        datasets.write_idx(elsewhere / file, images if role.endswith("images") else labels)
    monkeypatch.setenv("XPNET_DATA", str(elsewhere))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    typo = tmp_path / "typo"
    argv = ["train", "--dataset", "fashion-mnist", "--data-dir", str(typo), "--epochs", "1"]
    assert run([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpnet train: error: ") and err.count("\n") == 1
    assert f"{typo} (no such folder)" in err


@pytest.fixture
def own_data(tmp_path, monkeypatch):
    """``mydir``, in the current folder: a tiny mnist of one's own (20 train / 10 test),
    and no other copy anywhere (no $XPNET_DATA, an empty cache, no mirrors)."""
    from test_datasets import make_idx_set

    monkeypatch.delenv("XPNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [])
    monkeypatch.chdir(tmp_path)
    make_idx_set(tmp_path / "mydir")
    return tmp_path / "mydir"


SAVED_ON_OWN_DATA = ["train", "--data-dir", "mydir", "--epochs", "1", "--save", "run.npz"]


def test_a_reader_that_closes_the_pipe_stops_the_run_after_the_epoch_and_keeps_it(own_data):
    # `xpnet train ... --save run.npz | head -1`, on IDX files read as the command reads them.
    argv = ["train", "--data-dir", "mydir", "--epochs", "100000", "--save", "run.npz"]
    proc = xpnet_command(argv)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err  # 128 + SIGPIPE, as a shell reports `| head`
    assert first.startswith("mnist: 20 train / 10 test; 784-50-10")
    stopped = re.fullmatch(r"stdout closed after epoch (\d+); run\.npz holds epoch \1\n", err)
    assert stopped, err  # and no traceback
    net, meta = checkpoint.load_network("run.npz")
    assert meta["epoch"] == int(stopped[1])
    assert meta["history"]["epochs"] == list(range(1, meta["epoch"] + 1))
    assert net.predict(np.zeros((1, 784), dtype=np.float32)).shape == (1, 10)


def test_a_run_records_its_data_folder_as_an_absolute_path(own_data):
    assert run([*SAVED_ON_OWN_DATA, "--quiet"]) == 0
    assert read_metadata("run.npz")["run"]["data_dir"] == str(own_data)


def test_a_run_without_data_dir_records_a_null_data_folder(fake_data, tmp_path):
    assert run(["train", "--epochs", "1", "--save", str(tmp_path / "run.npz"), "--quiet"]) == 0
    assert read_metadata(tmp_path / "run.npz")["run"]["data_dir"] is None


def test_resume_reads_the_data_folder_of_its_run(own_data, capsys):
    # It looked in the places used without --data-dir, and tried to download MNIST.
    assert run([*SAVED_ON_OWN_DATA, "--quiet"]) == 0
    assert run(["train", "--resume", "run.npz", "--epochs", "2"]) == 0
    assert "mnist: 20 train / 10 test" in capsys.readouterr().out


def test_resume_from_a_data_folder_that_is_gone_names_it_and_data_dir(own_data, capsys):
    assert run([*SAVED_ON_OWN_DATA, "--quiet"]) == 0
    own_data.rename("moved")
    assert run(["train", "--resume", "run.npz", "--epochs", "2", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"xpnet train: error: --resume run.npz: its run read mnist from {own_data}, which is "
        "no longer a folder; give --data-dir FOLDER, where the data set's files are now\n"
    )


def test_resume_with_another_data_dir_reads_it_and_says_so(own_data, capsys):
    assert run([*SAVED_ON_OWN_DATA, "--quiet"]) == 0
    moved = own_data.rename(own_data.with_name("moved"))
    argv = ["train", "--resume", "run.npz", "--data-dir", "moved", "--epochs", "2"]
    assert run([*argv, "--save", "run.npz", "--quiet"]) == 0
    assert capsys.readouterr().err == (
        f"xpnet train: note: --data-dir {moved}: the checkpoint's run read mnist from "
        f"{own_data}; resuming on the files in {moved}\n"
    )
    assert read_metadata("run.npz")["run"]["data_dir"] == str(moved)


def test_gradcheck_of_a_checkpoint_reads_the_data_folder_of_its_run(own_data, capsys):
    assert run([*SAVED_ON_OWN_DATA, "--quiet"]) == 0
    assert run(["gradcheck", "--checkpoint", "run.npz", "--batch-size", "2"]) == 0
    assert "at the first 2 mnist training samples" in capsys.readouterr().out


def test_the_summary_names_the_best_epoch_of_the_resumed_history(fake_data, tmp_path, capsys):
    path = tmp_path / "old.npz"
    history = {"epochs": [1], "iterations": [2], "train_acc": [0.99], "test_acc": [0.995],
               "train_loss": [0.1], "test_loss": [0.1], "seconds": [1.0]}  # fmt: skip
    meta = {"epoch": 1, "history": history, "run": {"dataset": "mnist", "model": "mlp"}}
    save_params(path, MultiLayerNet(784, [50], 10, seed=0, weight_init=0.01), meta)
    assert run(["train", "--resume", str(path), "--epochs", "2", "--lr", "0.001", "--quiet"]) == 0
    assert "(best 0.9950, epoch 1)" in capsys.readouterr().out


def test_resuming_with_another_optimizer_starts_it_fresh(fake_data, tmp_path, capsys):
    path = tmp_path / "old.npz"
    save_params(path, MultiLayerNet(784, [50], 10, seed=0), {"epoch": 1, "run": {"model": "mlp"}},
                optimizer=Momentum(lr=0.05, momentum=0.5))  # fmt: skip
    new = tmp_path / "new.npz"
    argv = ["train", "--resume", str(path), "--dataset", "mnist", "--optimizer", "nesterov",
            "--epochs", "2", "--save", str(new)]  # fmt: skip
    assert run(argv) == 0
    assert "; nesterov starts with fresh state" in capsys.readouterr().out
    saved = read_metadata(new)["optimizer"]
    assert saved["name"] == "nesterov" and saved["momentum"] == 0.9  # its default, not 0.5


def test_resume_with_other_settings_names_each_change_on_stderr(fake_data, tmp_path, capsys):
    part = tmp_path / "part.npz"
    assert run(["train", "--epochs", "1", "--quiet", "--save", str(part)]) == 0
    capsys.readouterr()
    assert run(["train", "--resume", str(part), "--epochs", "2", "--quiet",
                "--seed", "5", "--batch-size", "50"]) == 0  # fmt: skip
    assert capsys.readouterr().err == (
        f"xpnet train: note: --resume {part} changes the run after epoch 1: "
        "--batch-size 100 -> 50, --seed 0 -> 5; it no longer continues bit for bit as the "
        "uninterrupted run (the run record of --save lists the changes)\n"
    )


def test_resume_with_the_same_settings_says_nothing_and_records_no_change(
    fake_data, tmp_path, capsys
):
    part, resumed = tmp_path / "part.npz", tmp_path / "resumed.npz"
    assert run(["train", "--epochs", "1", "--quiet", "--seed", "3", "--save", str(part)]) == 0
    assert run(["train", "--resume", str(part), "--epochs", "2", "--quiet", "--seed", "3",
                "--lr", "0.1", "--save", str(resumed)]) == 0  # fmt: skip
    assert capsys.readouterr().err == ""
    assert read_metadata(resumed)["run"]["changes"] == []


def test_the_run_record_lists_each_change_with_the_epoch_it_took_effect_after(fake_data, tmp_path):
    # The record's settings are the last epochs'; "changes" says since when.
    first, second, third = (tmp_path / f"{k}.npz" for k in (1, 2, 3))
    assert run(["train", "--epochs", "1", "--quiet", "--save", str(first)]) == 0
    assert run(["train", "--resume", str(first), "--epochs", "2", "--quiet", "--seed", "5",
                "--batch-size", "50", "--save", str(second)]) == 0  # fmt: skip
    assert run(["train", "--resume", str(second), "--epochs", "3", "--quiet", "--lr", "0.05",
                "--save", str(third)]) == 0  # fmt: skip
    record = read_metadata(third)["run"]
    assert (record["seed"], record["batch_size"], record["lr"]) == (5, 50, 0.05)
    assert record["changes"] == [
        {"epoch": 1, "settings": {"batch_size": [100, 50], "seed": [0, 5]}},
        {"epoch": 2, "settings": {"lr": [0.1, 0.05]}},
    ]


def test_a_version_changed_on_resume_is_named_and_recorded(fake_data, tmp_path, capsys):
    part, resumed = tmp_path / "part.npz", tmp_path / "resumed.npz"
    assert run(["train", "--epochs", "1", "--quiet", "--save", str(part)]) == 0
    rewrite_metadata(part, setting("run.versions.numpy", "1.26.4"))
    capsys.readouterr()
    assert run(["train", "--resume", str(part), "--epochs", "2", "--quiet",
                "--save", str(resumed)]) == 0  # fmt: skip
    numpy_now = read_metadata(resumed)["run"]["versions"]["numpy"]
    note = f"changes the run after epoch 1: numpy 1.26.4 -> {numpy_now}; "
    assert note in capsys.readouterr().err
    assert read_metadata(resumed)["run"]["changes"] == [
        {"epoch": 1, "versions": {"numpy": ["1.26.4", numpy_now]}}
    ]


def test_the_run_record_holds_the_initial_weights_lr_device_and_versions(fake_data, tmp_path):
    import platform

    import xpnet

    path = tmp_path / "p.npz"
    assert run(["train", "--epochs", "1", "--quiet", "--weight-init", "xavier",
                "--bias-init", "uniform", "--lr", "0.05", "--save", str(path)]) == 0  # fmt: skip
    record = read_metadata(path)["run"]
    assert (record["weight_init"], record["bias_init"]) == ("xavier", "uniform")
    assert (record["lr"], record["device"]) == (0.05, "cpu")
    assert record["versions"] == {
        "xpnet": xpnet.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def test_the_run_record_of_the_default_weights_is_null(fake_data, tmp_path):
    # null: the default, 0.01 with one hidden layer as the book's, he or xavier deeper.
    path = tmp_path / "p.npz"
    assert run(["train", "--epochs", "1", "--quiet", "--save", str(path)]) == 0
    assert read_metadata(path)["run"]["weight_init"] is None


def test_resume_from_a_malformed_version_record_is_a_one_line_error(fake_data, tmp_path, capsys):
    path = tmp_path / "p.npz"
    assert run(["train", "--epochs", "1", "--quiet", "--save", str(path)]) == 0
    rewrite_metadata(path, setting("run.versions.numpy", 2))
    capsys.readouterr()
    assert run(["train", "--resume", str(path), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "field run.versions.numpy is 2, expected a string" in err and err.count("\n") == 1


def test_the_run_line_gives_the_seed(fake_data, capsys):
    assert run(["train", "--epochs", "1", "--seed", "7"]) == 0
    assert ", 1 epoch, seed 7, float32 on cpu\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flag", "value", "recorded"),
    [
        ("--weight-init", 0.05, ("run", "weight_init")),  # of the run that drew the weights
        ("--weight-decay", 0.1, ("architecture", "weight_decay")),
    ],
)
def test_resume_keeps_what_the_checkpoint_records(fake_data, tmp_path, flag, value, recorded):
    path, resumed = tmp_path / "old.npz", tmp_path / "new.npz"
    assert run(["train", "--epochs", "1", "--quiet", flag, str(value), "--save", str(path)]) == 0
    assert run(["train", "--resume", str(path), "--epochs", "2", "--quiet",
                "--save", str(resumed)]) == 0  # fmt: skip
    section, key = recorded
    assert read_metadata(resumed)[section][key] == value


def test_resume_evaluates_on_the_checkpoints_eval_samples(fake_data, tmp_path):
    # The resumed epoch's numbers are those of a resume told --eval-samples 7 outright.
    path, resumed, told = tmp_path / "old.npz", tmp_path / "new.npz", tmp_path / "told.npz"
    assert run(["train", "--epochs", "1", "--quiet", "--eval-samples", "7",
                "--save", str(path)]) == 0  # fmt: skip
    assert run(["train", "--resume", str(path), "--epochs", "2", "--quiet",
                "--save", str(resumed)]) == 0  # fmt: skip
    assert run(["train", "--resume", str(path), "--epochs", "2", "--quiet",
                "--eval-samples", "7", "--save", str(told)]) == 0  # fmt: skip
    meta = read_metadata(resumed)
    assert meta["run"]["eval_samples"] == 7
    for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert meta["history"][key] == read_metadata(told)["history"][key], key
    for key in ("train_acc", "test_acc"):  # accuracies of 7 samples: multiples of 1/7
        assert all(abs(7 * a - round(7 * a)) < 1e-9 for a in meta["history"][key]), key


def test_the_seed_decides_the_shuffling_of_a_resumed_run(fake_data, tmp_path):
    finals = []
    for seed in (1, 2):
        path, resumed = tmp_path / f"old{seed}.npz", tmp_path / f"new{seed}.npz"
        run_settings = {"dataset": "mnist", "model": "mlp", "seed": seed, "batch_size": 32}
        save_params(path, MultiLayerNet(784, [50], 10, seed=0), {"epoch": 1, "run": run_settings})
        assert run(["train", "--resume", str(path), "--epochs", "2", "--quiet",
                    "--save", str(resumed)]) == 0  # fmt: skip
        with np.load(resumed) as saved:
            finals.append(saved["W1"])
    assert not np.array_equal(*finals)  # same start, batches drawn in another order


def test_a_diverged_run_exits_1_and_keeps_the_last_finite_checkpoint(
    fake_data, tmp_path, capsys, monkeypatch
):
    from xpnet.training import Trainer

    original = Trainer.train_epoch

    def poison_in_epoch_3(self, order, label=""):
        original(self, order, label)
        if self.epoch == 2:  # as a too-large step would leave them
            self.net.params["W1"][...] = float("nan")

    monkeypatch.setattr(Trainer, "train_epoch", poison_in_epoch_3)
    path = tmp_path / "p.npz"
    with np.errstate(all="ignore"):
        assert run(["train", "--epochs", "5", "--save", str(path), "--save-interval", "0"]) == 1
    out, err = capsys.readouterr()
    assert [e for e, _ in epoch_lines(out)] == ["1", "2"]
    assert err.startswith("xpnet train: error: training diverged in epoch 3")
    assert err.rstrip().endswith(f"{path} holds epoch 2") and err.count("\n") == 1
    assert read_metadata(path)["epoch"] == 2
    with np.load(path) as saved:
        assert np.isfinite(saved["W1"]).all()


def test_a_run_that_diverges_at_once_saves_nothing(fake_data, tmp_path, capsys):
    path = tmp_path / "p.npz"
    with np.errstate(all="ignore"):
        assert run(["train", "--epochs", "2", "--lr", "1e30", "--save", str(path)]) == 1
    assert "the train loss is nan" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_resuming_from_a_checkpoint_with_a_nan_weight_is_one_line_naming_it(
    fake_data, tmp_path, capsys
):
    # It trained, and failed in the next epoch: "diverged ... lower the learning rate".
    path = tmp_path / "p.npz"
    assert run(["train", "--epochs", "1", "--quiet", "--save", str(path)]) == 0
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["W2"][7, 3] = np.nan
    np.savez(path, **arrays)
    capsys.readouterr()
    assert run(["train", "--epochs", "2", "--resume", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "xpnet train: error: parameter 'W2' holds 1 non-finite value of 500, the first nan "
        "at [7, 3] before training: training from it gives NaN; build the network again, or "
        "load a checkpoint saved before it diverged\n"
    )


def test_a_learning_rate_given_on_resume_is_used_without_a_warning(fake_data, tmp_path, capsys):
    path = tmp_path / "old.npz"
    assert run(["train", "--epochs", "1", "--optimizer", "momentum", "--lr", "0.05", "--quiet",
                "--save", str(path)]) == 0  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run(["train", "--resume", str(path), "--epochs", "2", "--lr", "0.01", "--quiet",
                    "--save", str(path)]) == 0  # fmt: skip
    assert read_metadata(path)["optimizer"]["lr"] == 0.01


@pytest.mark.parametrize("other", ["--save", "--resume"])
def test_a_plot_onto_the_checkpoint_is_refused_before_training(fake_data, tmp_path, capsys, other):
    path = tmp_path / "p.npz"
    save_params(path, MultiLayerNet(784, [50], 10, seed=0), {"epoch": 1})
    before = path.read_bytes()
    same = tmp_path / "." / "p.npz"  # the same file, named otherwise
    assert run(["train", "--epochs", "2", other, str(path), "--plot", str(same)]) == 2
    assert capsys.readouterr().err == (
        f"xpnet train: error: --plot {same} is the checkpoint {other} names ({path})\n"
    )
    assert path.read_bytes() == before and fake_data == []


def test_a_save_name_too_long_for_the_file_system_is_refused_before_training(
    fake_data, tmp_path, capsys
):
    path = tmp_path / ("p" * 300 + ".npz")
    assert run(["train", "--epochs", "1", "--save", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xpnet train: error: --save {path}: File name too long"), err
    assert fake_data == []


def test_a_read_only_save_file_is_refused_before_training(fake_data, tmp_path, capsys):
    path = tmp_path / "p.npz"
    path.write_bytes(b"keep me")
    path.chmod(0o444)
    if os.access(path, os.W_OK):
        pytest.skip("this user may write read-only files (root)")
    assert run(["train", "--epochs", "1", "--save", str(path)]) == 2
    assert capsys.readouterr().err == f"xpnet train: error: --save {path}: the file is read-only\n"
    assert path.read_bytes() == b"keep me" and fake_data == []


def test_a_save_link_into_a_missing_directory_is_refused_before_training(
    fake_data, tmp_path, capsys
):
    # The checkpoint is written beside the file the link points to (atomic_file follows it).
    link = tmp_path / "latest.npz"
    link.symlink_to(tmp_path / "runs" / "p.npz")
    assert run(["train", "--epochs", "1", "--save", str(link)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"xpnet train: error: --save {link}: directory {tmp_path / 'runs'} does not exist\n"
    )
    assert fake_data == []


def test_a_save_file_this_user_may_not_write_is_refused_before_training(
    fake_data, tmp_path, capsys, read_only_to_this_process
):
    # test_a_read_only_save_file_is_refused_before_training for root too
    path = tmp_path / "p.npz"
    path.write_bytes(b"keep me")
    read_only_to_this_process(path)
    assert run(["train", "--epochs", "1", "--save", str(path)]) == 2
    assert capsys.readouterr().err == f"xpnet train: error: --save {path}: the file is read-only\n"
    assert path.read_bytes() == b"keep me" and fake_data == []


def test_a_plot_onto_a_checkpoint_not_written_yet_is_refused_before_training(
    fake_data, tmp_path, capsys
):
    path = tmp_path / "runs" / "p.npz"
    path.parent.mkdir()
    same = tmp_path / "runs" / ".." / "runs" / "p.npz"  # neither exists yet
    assert run(["train", "--epochs", "1", "--save", str(path), "--plot", str(same)]) == 2
    assert capsys.readouterr().err == (
        f"xpnet train: error: --plot {same} is the checkpoint --save names ({path})\n"
    )
    assert not path.exists() and fake_data == []


def test_a_plot_onto_a_link_to_the_checkpoint_is_refused_before_training(
    fake_data, tmp_path, capsys
):
    path = tmp_path / "p.npz"
    save_params(path, MultiLayerNet(784, [50], 10, seed=0), {"epoch": 1})
    before = path.read_bytes()
    link = tmp_path / "latest.npz"
    link.symlink_to(path)
    assert run(["train", "--epochs", "2", "--resume", str(path), "--plot", str(link)]) == 2
    assert capsys.readouterr().err == (
        f"xpnet train: error: --plot {link} is the checkpoint --resume names ({path})\n"
    )
    assert path.read_bytes() == before and fake_data == []


def test_a_checkpoint_made_read_only_during_training_is_a_one_line_error(
    fake_data, tmp_path, capsys, read_only_to_this_process
):
    # --save, a checkpoint, passes the check before training; the file is read-only when it
    # is written.
    path = save_params(tmp_path / "p.npz", {"W": np.zeros(2)})
    before = path.read_bytes()
    asked = read_only_to_this_process(path, writable_checks=1)
    assert run(["train", "--epochs", "1", "--quiet", "--save", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"xpnet train: error: cannot write {path}: the file is read-only; {path} is left as it "
        "was\n"
    )
    assert path.read_bytes() == before and len(asked) == 2


@pytest.mark.parametrize("flags", [["--weight-init", "he"], ["--bias-init", "uniform"]])
def test_resume_refuses_the_initial_weight_flags_it_cannot_use(fake_data, tmp_path, capsys, flags):
    # The weights come from the checkpoint: the flags were ignored, and --bias-init was
    # recorded in the new checkpoint's settings as though it had been used.
    part = tmp_path / "part.npz"
    assert run(["train", "--epochs", "1", "--save", str(part)]) == 0
    capsys.readouterr()
    assert run(["train", "--resume", str(part), "--epochs", "2", *flags]) == 2
    assert capsys.readouterr().err == (
        f"xpnet train: error: {flags[0]}: the weights come from the checkpoint ({part}); "
        "leave it out to resume\n"
    )
    assert read_metadata(part)["epoch"] == 1


def test_resuming_a_finished_run_still_writes_save_and_plot(fake_data, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    part, copy, plot = tmp_path / "part.npz", tmp_path / "copy.npz", tmp_path / "curve.png"
    assert run(["train", "--epochs", "2", "--save", str(part)]) == 0
    capsys.readouterr()
    argv = ["train", "--resume", str(part), "--save", str(copy), "--plot", str(plot)]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out and f"saved {copy}" in out and f"wrote {plot}" in out
    assert read_metadata(copy)["history"] == read_metadata(part)["history"]
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_a_plot_of_a_finished_run_that_records_no_epochs_is_refused_before_anything_is_written(
    fake_data, tmp_path, capsys
):
    pytest.importorskip("matplotlib")
    path, copy, plot = tmp_path / "p.npz", tmp_path / "copy.npz", tmp_path / "curve.png"
    save_params(path, MultiLayerNet(784, [8], 10, seed=0), {"epoch": 1})  # no history
    argv = ["train", "--resume", str(path), "--dataset", "mnist", "--epochs", "1"]
    assert run([*argv, "--save", str(copy), "--plot", str(plot)]) == 2
    assert capsys.readouterr().err == (
        f"xpnet train: error: --plot {plot}: {path} records no epochs to draw\n"
    )
    assert not copy.exists() and not plot.exists()


@pytest.mark.parametrize(
    "suffix, start",
    [
        (".svg", b"<?xml"),
        (".pdf", b"%PDF"),
        (".SVG", b"<?xml"),
        (".PNG", b"\x89PNG"),
        (".jpg", b"\xff\xd8\xff"),
        ("", b"\x89PNG"),
    ],
)
def test_the_plot_is_drawn_in_the_format_its_name_says(fake_data, tmp_path, suffix, start):
    pytest.importorskip("matplotlib")
    plot = tmp_path / f"curve{suffix}"
    assert run(["train", "--epochs", "1", "--quiet", "--plot", str(plot)]) == 0
    assert plot.read_bytes().startswith(start)


def test_a_plot_suffix_matplotlib_cannot_write_is_refused_before_training(
    fake_data, tmp_path, capsys
):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "curve.pgn"
    assert run(["train", "--epochs", "1", "--plot", str(plot)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xpnet train: error: --plot: cannot draw a plot into {plot}: ")
    assert ".png, " in err and err.endswith("not .pgn\n")
    assert not plot.exists() and fake_data == []


@pytest.mark.parametrize("name", ["curve.png", "curve"])
def test_a_plot_without_matplotlib_is_refused_before_training(
    fake_data, tmp_path, capsys, monkeypatch, name
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    plot = tmp_path / name
    assert run(["train", "--epochs", "1", "--plot", str(plot)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "xpnet train: error: --plot: plotting needs matplotlib, which is not installed: "
        "pip install matplotlib\n"
    )
    assert not plot.exists() and fake_data == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
@pytest.mark.parametrize("option", ["--save", "--plot"])
def test_an_output_that_is_a_pipe_is_refused_before_training(fake_data, tmp_path, capsys, option):
    # The atomic write would have put a file in its place (/dev/null too, for root).
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    assert run(["train", "--epochs", "1", option, str(fifo)]) == 2
    assert capsys.readouterr().err == (
        f"xpnet train: error: {option} {fifo} is not a regular file (a pipe); name a file\n"
    )
    assert fifo.is_fifo() and fake_data == []


def test_a_resume_name_too_long_for_the_file_system_is_a_one_line_error(
    fake_data, tmp_path, capsys
):
    path = tmp_path / ("p" * 300 + ".npz")
    assert run(["train", "--resume", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpnet train: error: ") and "File name too long" in err, err
    assert err.count("\n") == 1 and fake_data == []


def test_an_unreadable_checkpoint_is_not_called_a_non_archive(
    fake_data, tmp_path, capsys, monkeypatch
):
    # As a user without read permission sees it (root reads any file).
    import builtins

    from xpnet import checkpoint

    path = tmp_path / "p.npz"
    save_params(path, MultiLayerNet(784, [50], 10, seed=0), {"epoch": 1})

    def unreadable(file, *args, **kwargs):
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "open", unreadable, raising=False)
    assert run(["train", "--resume", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"xpnet train: error: [Errno 13] Permission denied: '{path}'\n"
    )


def test_a_file_name_that_is_not_utf_8_is_printed_as_given(fake_data, tmp_path, monkeypatch):
    # A UTF-8 locale other than C.UTF-8 gives stdout strict errors: the checkpoint was
    # written, then printing its name failed, and the run exited 2.
    import io

    save = tmp_path / os.fsdecode(b"p\xff.npz")
    try:
        save.write_bytes(b"")
        save.unlink()
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert run(["train", "--epochs", "1", "--quiet", "--save", str(save)]) == 0
    stdout.flush()
    assert stdout.buffer.getvalue().endswith(b"saved " + os.fsencode(save) + b"\n")


def test_named_choices_are_taken_in_any_case_as_the_python_api_takes_them():
    # --weight-init He and --optimizer Adam were refused; make_optimizer('Adam') is not.
    argv = ["--weight-init", "He", "--optimizer", "Adam", "--activation", "ReLU"]
    args, _ = settings_of([*argv, "--dtype", "Float64", "--model", "MLP"])
    assert (args.weight_init, args.optimizer, args.activation) == ("he", "adam", "relu")
    assert (args.dtype, args.model) == ("float64", "mlp")


def test_a_pickle_name_for_save_is_refused_before_training(tmp_path, capsys):
    assert run(["train", "--epochs", "1", "--save", str(tmp_path / "params.pkl")]) == 2
    err = capsys.readouterr().err
    assert "--save checkpoint " in err and "never pickles; name it " in err
    assert "params.npz" in err and "epoch 1" not in err


def test_freeze_leaves_those_parameters_as_the_checkpoint_had_them(fake_data, tmp_path, capsys):
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    assert run(["train", "--epochs", "1", "--quiet", "--hidden", "20", "--save", str(first)]) == 0
    assert run(["train", "--resume", str(first), "--epochs", "2", "--quiet",
                "--freeze", "W1", "--freeze", "b1", "--save", str(second)]) == 0  # fmt: skip
    with np.load(first) as a, np.load(second) as b:
        np.testing.assert_array_equal(b["W1"], a["W1"])
        np.testing.assert_array_equal(b["b1"], a["b1"])
        assert not np.array_equal(b["W2"], a["W2"])
    assert "--freeze none -> W1,b1" in capsys.readouterr().err
    assert read_metadata(second)["run"]["changes"] == [
        {"epoch": 1, "settings": {"freeze": [[], ["W1", "b1"]]}}
    ]


def test_resume_keeps_the_runs_frozen_parameters(fake_data, tmp_path, capsys):
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    assert run(["train", "--epochs", "1", "--hidden", "20", "--freeze", "layers[0]",
                "--save", str(first)]) == 0  # fmt: skip
    assert "seed 0, frozen W1, b1, float32" in capsys.readouterr().out
    assert run(["train", "--resume", str(first), "--epochs", "2", "--quiet",
                "--save", str(second)]) == 0  # fmt: skip
    assert capsys.readouterr().err == ""
    assert read_metadata(second)["run"]["freeze"] == ["W1", "b1"]
    with np.load(first) as a, np.load(second) as b:
        np.testing.assert_array_equal(b["W1"], a["W1"])
        assert not np.array_equal(b["W2"], a["W2"])


def test_freeze_none_on_resume_trains_the_parameters_the_run_froze(fake_data, tmp_path, capsys):
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    assert run(["train", "--epochs", "1", "--hidden", "20", "--freeze", "W1", "--quiet",
                "--save", str(first)]) == 0  # fmt: skip
    assert run(["train", "--resume", str(first), "--epochs", "2", "--quiet", "--freeze", "none",
                "--save", str(second)]) == 0  # fmt: skip
    assert "--freeze W1 -> none" in capsys.readouterr().err
    assert read_metadata(second)["run"]["freeze"] == []
    with np.load(first) as a, np.load(second) as b:
        assert not np.array_equal(b["W1"], a["W1"])


def test_freeze_none_with_other_names_is_refused(fake_data, capsys):
    assert run(["train", "--epochs", "1", "--hidden", "20", "--freeze", "None",
                "--freeze", "W1"]) == 2  # fmt: skip
    assert "--freeze none freezes nothing: give it alone, got None W1" in capsys.readouterr().err


def test_freeze_of_an_unknown_name_is_a_one_line_error_listing_the_valid_ones(fake_data, capsys):
    assert run(["train", "--epochs", "1", "--hidden", "20", "--freeze", "W3"]) == 2
    assert capsys.readouterr().err == (
        "xpnet train: error: --freeze: the network has no parameter or layer 'W3'; expected a "
        "parameter's name (W1, b1, W2, b2), or a layer's path (layers[0], layers[2])\n"
    )


def test_freeze_of_every_parameter_is_refused(fake_data, capsys):
    argv = ["train", "--epochs", "1", "--hidden", "20"]
    assert run([*argv, *(f"--freeze=layers[{k}]" for k in (0, 2))]) == 2
    assert "--freeze freezes every parameter (W1, b1, W2, b2)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, what",
    [
        (b"my notes", "not an .npz archive"),
        (
            "numpy.savez",
            "an .npz archive without xpnet's __metadata__ array, which records the format "
            "('xpnet-checkpoint/1') in every file xpnet writes",
        ),
    ],
)
def test_a_save_file_that_is_not_a_checkpoint_is_kept_and_refused_before_training(
    fake_data, tmp_path, capsys, content, what
):
    """It was replaced by the checkpoint without a word, as an atomic write replaces anything."""
    path = tmp_path / "data.npz"
    if content == "numpy.savez":
        np.savez(path, x=np.arange(3))
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    assert run(["train", "--epochs", "1", "--save", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"xpnet train: error: --save {path} exists and is {what}: train replaces only a "
        "checkpoint (or an empty file); move it away or name another file\n"
    )
    assert path.read_bytes() == before and fake_data == []


@pytest.mark.parametrize("existing", ["a checkpoint", "an empty file"])
def test_save_replaces_a_checkpoint_or_an_empty_file(fake_data, tmp_path, existing):
    path = tmp_path / "p.npz"
    if existing == "an empty file":
        path.touch()
    else:
        assert run(["train", "--epochs", "1", "--quiet", "--save", str(path)]) == 0
    assert run(["train", "--epochs", "2", "--quiet", "--save", str(path)]) == 0
    assert read_metadata(path)["epoch"] == 2


@pytest.mark.parametrize(
    "edit, message",
    [
        (setting("epoch", 5), "checkpoint field epoch is 5, but its history (history.epochs) "
         "ends at epoch 2: they must agree"),
        (setting("epoch", 1), "checkpoint field epoch is 1, but its history (history.epochs) "
         "ends at epoch 2: they must agree"),
        (without("epoch"), "checkpoint records no epoch, but its history (history.epochs) ends "
         "at epoch 2"),
        (setting("history.epochs", [1, 3]), "checkpoint field history.epochs goes from epoch 1 "
         "to 3 (entries 1 and 2), expected one entry per epoch, in order"),
        (setting("history.epochs", [2, 2]), "history.epochs goes from epoch 2 to 2"),
    ],
)  # fmt: skip
def test_resume_refuses_a_checkpoint_whose_epoch_and_history_disagree(
    fake_data, tmp_path, capsys, edit, message
):
    """The trainer refused some with its own words (start_epoch=, after "resuming ... after
    epoch 5"), and took others, resuming with a history whose epochs repeat or skip."""
    path = tmp_path / "p.npz"
    assert run(["train", "--epochs", "2", "--quiet", "--save", str(path)]) == 0
    capsys.readouterr()
    rewrite_metadata(path, edit)
    assert run(["train", "--resume", str(path), "--epochs", "6"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"xpnet train: error: {path}: ") and message in captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""


def test_resume_takes_a_history_that_starts_after_epoch_1(fake_data, tmp_path, capsys):
    """A network saved from Python after epoch 2 without curves, resumed: its curves start at 3."""
    path = tmp_path / "p.npz"
    assert run(["train", "--epochs", "4", "--quiet", "--save", str(path)]) == 0
    keep_last_two = {"epochs": [3, 4]}

    def edit(meta):
        meta["history"] = {k: v[2:] for k, v in meta["history"].items()} | keep_last_two
        return meta

    rewrite_metadata(path, edit)
    assert run(["train", "--resume", str(path), "--epochs", "5", "--save", str(path)]) == 0
    assert read_metadata(path)["history"]["epochs"] == [3, 4, 5]
