"""``xpnet.opcount`` counts the array operations a call makes (kernel launches on a GPU)."""

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from array_api_compat import array_namespace

from xpnet import layers
from xpnet.networks import TwoLayerNet
from xpnet.opcount import CountingArray, count_operations, counting, counting_operations
from xpnet.optim import SGD


def test_each_operator_and_function_counts_once():
    x = counting(np.ones((2, 3)))
    xp = array_namespace(x)
    with counting_operations() as ops:
        y = xp.exp(x * 2.0 + 1.0)
        xp.sum(y, axis=0)
    assert ops == {"multiply": 1, "add": 1, "exp": 1, "sum": 1}


def test_results_and_0d_results_keep_counting():
    x = counting(np.ones(4))
    with counting_operations() as ops:
        total = np.sum(x * x)
        total / 2.0
    assert isinstance(total, CountingArray) and total.ndim == 0
    assert ops.array_ops == 3


def test_view_changes_and_copy_free_astype_are_not_counted():
    x = counting(np.ones((2, 3), dtype=np.float32))
    xp = array_namespace(x)
    with counting_operations() as ops:
        xp.reshape(x, (3, 2))
        xp.permute_dims(x, (1, 0))
        xp.astype(x, xp.float32, copy=False)
    assert ops.array_ops == 0
    with counting_operations() as ops:
        xp.astype(x, xp.float64)
    assert ops == {"astype": 1}


def test_a_copying_astype_to_the_same_dtype_counts_and_copies():
    x = counting(np.ones(3))
    with counting_operations() as ops:
        y = array_namespace(x).astype(x, np.float64)
    assert ops == {"astype": 1}
    y[0] = 5.0
    assert x[0] == 1.0


def test_nested_blocks_each_count_every_operation_inside_them():
    x = counting(np.ones(3))
    with counting_operations() as outer:
        with counting_operations() as inner:
            x + x
        x * x
    assert inner == {"add": 1}
    assert outer == {"add": 1, "multiply": 1}


def test_an_operation_in_place_keeps_the_array_it_updates():
    x = counting(np.ones(3))
    y = x
    y += 1.0
    assert y is x
    np.testing.assert_array_equal(x, [2.0, 2.0, 2.0])


def test_item_assignment_counts():
    x = counting(np.zeros(3))
    with counting_operations() as ops:
        x[1] = 5.0
    assert ops == {"setitem": 1}
    np.testing.assert_array_equal(x, [0.0, 5.0, 0.0])


def test_inner_operations_of_a_function_are_not_counted_again():
    x = counting(np.arange(6.0).reshape(2, 3))
    with counting_operations() as ops:
        np.linalg.norm(x)  # square, sum and sqrt inside: one call
    assert ops.array_ops == 1


def test_nothing_is_counted_outside_the_block_or_on_plain_arrays():
    x = counting(np.ones(3))
    x + 1.0
    with counting_operations() as ops:
        np.ones(3) + 1.0
    assert ops.array_ops == 0


def test_counted_results_equal_plain_numpy():
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    plain = layers.Affine(W, b).forward(x)
    with counting_operations() as ops:
        counted = layers.Affine(counting(W), counting(b)).forward(counting(x))
    np.testing.assert_array_equal(np.asarray(counted), plain)
    assert ops == {"matmul": 1, "add": 1}


def test_operations_in_other_threads_count():
    x = counting(np.ones(3))
    with counting_operations() as ops, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: np.exp(x + 1.0), range(8)))
    assert ops == {"add": 8, "exp": 8}


def test_count_operations_counts_a_networks_own_operations():
    net = TwoLayerNet(5, 3, 2, dtype="float64", seed=0, device="cpu")
    x = np.random.default_rng(1).standard_normal((4, 5))
    ops = count_operations(net.predict, x, params=net.params)
    assert ops == {"matmul": 2, "add": 2, "greater": 1, "maximum": 1}  # Affine, ReLU, Affine


def test_count_operations_gives_the_network_its_own_arrays_back():
    net = TwoLayerNet(5, 3, 2, dtype="float64", seed=0, device="cpu")
    before = dict(net.params)
    x, t = np.ones((4, 5)), np.array([0, 1, 1, 0])
    count_operations(lambda x, t: SGD(0.1).update(net.params, net.gradient(x, t)), x, t,
                     params=net.params)  # fmt: skip
    assert all(net.params[name] is before[name] for name in before)
    assert all(type(net.params[name]) is np.ndarray for name in before)


def test_count_operations_gives_the_arrays_back_when_the_call_fails():
    net = TwoLayerNet(5, 3, 2, dtype="float64", seed=0, device="cpu")
    before = dict(net.params)
    with pytest.raises(ValueError):
        count_operations(net.predict, np.ones((4, 7)), params=net.params)  # 7 features, not 5
    assert all(net.params[name] is before[name] for name in before)


def test_a_parameter_the_call_rebinds_keeps_its_new_value_as_a_plain_array():
    net = TwoLayerNet(5, 3, 2, dtype="float64", seed=0, device="cpu")
    doubled = 2 * net.params["b1"]

    def rebind():
        net.params["b1"] = net.params["b1"] * 2

    count_operations(rebind, params=net.params)
    assert type(net.params["b1"]) is np.ndarray
    np.testing.assert_array_equal(net.params["b1"], doubled)


def test_updates_in_place_while_counting_reach_the_networks_arrays():
    net = TwoLayerNet(5, 3, 2, dtype="float64", seed=0, device="cpu")
    W1 = net.params["W1"].copy()
    x, t = np.ones((4, 5)), np.array([0, 1, 1, 0])
    grads = net.gradient(x, t)
    count_operations(lambda: SGD(0.1).update(net.params, grads), params=net.params)
    np.testing.assert_allclose(net.params["W1"], W1 - 0.1 * grads["W1"])


def test_conversions_to_python_are_counted_as_host_reads():
    x = counting(np.arange(3.0))
    with counting_operations() as ops:
        total = np.sum(x)
        float(total), int(total), bool(total > 1), total.item(), x.tolist()
    assert ops.array_ops == 2  # sum, greater
    assert ops.host_reads == 5
    assert ops["to host: float"] == 1 and ops["to host: tolist"] == 1


def test_one_element_taken_by_indexing_keeps_counting_and_its_conversion_is_a_host_read():
    x = counting(np.arange(3.0))
    with counting_operations() as ops:
        first = x[0]
        float(first)
    assert isinstance(first, CountingArray) and first.ndim == 0
    assert ops == {"to host: float": 1}


def test_array_methods_that_compute_or_copy_count_as_their_functions():
    x = counting(np.arange(6.0).reshape(2, 3))
    with counting_operations() as ops:
        x.copy(), x.argmax(), x.sum(axis=0), x.take([0], axis=1)
    with counting_operations() as functions:
        np.copy(x), np.argmax(x), np.sum(x, axis=0), np.take(x, [0], axis=1)
    assert ops == functions == {"copy": 1, "argmax": 1, "sum": 1, "take": 1}


def test_a_counted_method_gives_the_plain_methods_result():
    x = np.random.default_rng(3).standard_normal((4, 5))
    counted = counting(x).argmax(axis=1)
    assert isinstance(counted, CountingArray)
    np.testing.assert_array_equal(counted, x.argmax(axis=1))


def test_indexing_with_arrays_or_masks_counts_as_a_gather():
    x = counting(np.arange(4.0))
    with counting_operations() as ops:
        picked = x[[0, 2]]
        x[x > 1.0]
    np.testing.assert_array_equal(picked, [0.0, 2.0])
    assert ops == {"getitem": 2, "greater": 1}


def test_indexing_that_mixes_an_integer_with_an_array_counts_as_a_gather():
    x = counting(np.arange(6.0).reshape(2, 3))
    with counting_operations() as ops:
        picked = x[1, [0, 2]]
    np.testing.assert_array_equal(picked, [3.0, 5.0])
    assert ops == {"getitem": 1}


def test_indexing_with_a_bool_counts_as_a_gather():
    # NumPy reads a[True] as a mask: a new axis and a copy, not a view.
    x = counting(np.arange(3.0))
    with counting_operations() as ops:
        picked = x[True]
    assert picked.shape == (1, 3)
    assert ops == {"getitem": 1}


def test_copying_with_the_copy_module_counts_as_copy():
    x = counting(np.arange(3.0))
    with counting_operations() as ops:
        copy.copy(x), copy.deepcopy(x)
    assert ops == {"copy": 1, "deepcopy": 1}


def test_basic_indexing_is_a_view_and_not_counted():
    x = counting(np.arange(6.0).reshape(2, 3))
    with counting_operations() as ops:
        x[1:], x[0], x[..., None], x[:, 1], x[np.int64(1), 2]
    assert ops == {}
