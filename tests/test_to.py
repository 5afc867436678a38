"""``net.to(dtype, device, xp=)``, ``net.double()``, ``net.float()``: a network cast and
moved in place, as torch's ``model.to``; compared with its arrays cast on the host."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections import namedtuple

import numpy as np
import pytest

import xpnet
from xpnet import Sequential
from xpnet.backend import location, to_device, to_numpy
from xpnet.conversion import network_to
from xpnet.layers import Affine, ReLU, SoftmaxWithLoss


def data(xp, n=4, d=6):
    rng = np.random.default_rng(1)
    x = to_device(rng.standard_normal((n, d)), dtype="float32", xp=xp)
    return x, to_device(rng.integers(0, 3, n), xp=xp)


class Shift:
    """Adds a fixed (untrained) array, held by reference; ``steps`` (int), ``kept`` (bool)
    and ``dtype`` are along for the ride."""

    def __init__(self, c, steps, kept):
        self.c, self.steps, self.kept = c, steps, kept
        self.dtype = np.float32  # a type, as users name dtypes: no array

    def forward(self, x):
        return x + self.c

    def backward(self, dout):
        return dout


def test_float64_casts_every_floating_array_and_predicts_the_same(xp):
    net = xpnet.MultiLayerNet(6, [5], 3, use_batchnorm=True, seed=0, xp=xp)
    x, t = data(xp)
    net.gradient(x, t)  # running statistics and caches filled
    before = {name: to_numpy(value) for name, value in net.params.items()}
    bn = net[1]
    running = to_numpy(bn.running_mean), to_numpy(bn.running_var)
    scores = to_numpy(net.predict(x))
    assert net.to("float64") is net
    assert net.dtype == "float64"
    for name, value in net.params.items():
        assert str(value.dtype).endswith("float64")
        np.testing.assert_array_equal(to_numpy(value), before[name].astype(np.float64))
    for value, old in zip((bn.running_mean, bn.running_var), running, strict=True):
        assert str(value.dtype).endswith("float64")
        np.testing.assert_array_equal(to_numpy(value), old.astype(np.float64))
    assert str(net[0].x.dtype).endswith("float64")  # a cache too
    predicted = net.predict(x)  # float32 input, computed in float64
    assert str(predicted.dtype).endswith("float64")
    np.testing.assert_allclose(to_numpy(predicted), scores, rtol=1e-5, atol=1e-6)
    grads = net.gradient(x, t)
    assert all(str(g.dtype).endswith("float64") for g in grads.values())


def test_double_and_float_go_to_float64_and_back(xp):
    net = xpnet.TwoLayerNet(6, 5, 3, seed=0, xp=xp)
    before = to_numpy(net.params["W1"])
    assert net.double() is net and net.dtype == "float64"
    assert net.float() is net and net.dtype == "float32"
    np.testing.assert_array_equal(to_numpy(net.params["W1"]), before)
    x, _ = data(xp)
    assert str(net.predict(to_device(to_numpy(x), dtype="float64", xp=xp)).dtype).endswith(
        "float32"
    )


def test_an_array_held_by_two_layers_stays_one_and_integer_arrays_keep_their_dtype(xp):
    rng = np.random.default_rng(0)
    c = to_device(rng.standard_normal(3), dtype="float32", xp=xp)
    steps = to_device(np.arange(3), dtype="int64", xp=xp)
    kept = to_device(np.array([True, False, True]), xp=xp)
    W1, W2 = (to_device(rng.standard_normal((d, 3)), dtype="float32", xp=xp) for d in (6, 3))
    b = to_device(np.zeros(3), dtype="float32", xp=xp)
    layers = [Affine(W1, b), Shift(c, steps, kept), ReLU(), Affine(W2, xp.asarray(b, copy=True))]
    net = Sequential([*layers, Shift(c, steps, kept)], loss=SoftmaxWithLoss())
    net.to("float64")
    assert net[1].c is net[4].c
    assert str(net[1].c.dtype).endswith("float64")
    assert net[1].steps is steps and net[1].kept is kept  # not floating: kept as they are
    assert net[1].dtype is np.float32
    assert net.params["W1"] is net[0].W  # the live mapping shows the new arrays


def test_a_params_dict_of_the_networks_own_gets_the_new_arrays(xp):
    class Own:  # a network of the book's kind: params a dict beside the layers
        def __init__(self, W, b):
            self.layers = [Affine(W, b)]
            self.params = {"W1": self.layers[0].W, "b1": self.layers[0].b}

    W, b = (to_device(np.ones(shape), dtype="float32", xp=xp) for shape in ((2, 2), 2))
    net = Own(W, b)
    network_to(net, "float64")
    assert net.params["W1"] is net.layers[0].W
    assert net.params["b1"] is net.layers[0].b
    assert str(net.params["W1"].dtype).endswith("float64")


def test_xp_moves_every_array_to_that_namespace(xp, on_the_host):
    net = xpnet.MultiLayerNet(6, [5], 3, use_batchnorm=True, seed=0)  # NumPy's
    x, t = data(xp)
    host_x = to_numpy(x)
    scores = net.predict(host_x)
    assert net.to(xp=xp) is net
    where = location(x)
    assert {location(value) for value in net.params.values()} == {where}
    assert location(net[1].running_mean) == where
    assert net.dtype == "float32"
    np.testing.assert_allclose(to_numpy(net.predict(x)), scores, rtol=1e-5, atol=1e-6)
    assert location(net.gradient(x, t)["W1"]) == where


@pytest.mark.parametrize("dtype", ["int32", "float33", "bool"])
def test_a_dtype_that_is_not_floating_is_refused_and_nothing_changes(xp, dtype):
    net = xpnet.TwoLayerNet(6, 5, 3, seed=0, xp=xp)
    W1 = net.params["W1"]
    with pytest.raises(ValueError, match=f"'float32' or 'float64'.*got '{dtype}'.*floating"):
        net.to(dtype)
    assert net.params["W1"] is W1


def test_a_device_the_library_lacks_is_refused_naming_it(cpu_xp):
    net = xpnet.TwoLayerNet(6, 5, 3, seed=0, xp=cpu_xp)
    with pytest.raises((ValueError, xpnet.backend.BackendUnavailableError), match="'gpu'"):
        net.to(device="gpu")
    with pytest.raises(TypeError, match=r"xp must be an array namespace.*'torch'"):
        net.to(xp="torch")
    assert net.dtype == "float32"


def test_a_failed_move_changes_nothing():
    strict = pytest.importorskip("array_api_strict")
    net = xpnet.TwoLayerNet(6, 5, 3, seed=0, xp=strict)
    W1 = net.params["W1"]
    with pytest.raises(ValueError, match=r"device 'cuda' of array_api_strict.*xp= too"):
        net.to("float64", device="cuda")
    assert net.params["W1"] is W1 and net.dtype == "float32"


def test_a_device_as_the_first_argument_moves_the_network_as_torchs_to_does(on_the_host):
    net = xpnet.TwoLayerNet(6, 5, 3, seed=0)
    W1 = net.params["W1"]
    assert net.to("cpu") is net and net.dtype == "float32"
    assert net.params["W1"] is W1  # already there: kept, not copied, as torch's to keeps it
    strict = pytest.importorskip("array_api_strict")
    net = xpnet.TwoLayerNet(6, 5, 3, seed=0, xp=strict)
    with pytest.raises(ValueError, match=r"to device 'cuda' of array_api_strict"):
        net.to("cuda")


def affine(xp, rng, d_in, d_out):
    W = to_device(rng.standard_normal((d_in, d_out)), dtype="float32", xp=xp)
    return Affine(W, to_device(np.zeros(d_out), dtype="float32", xp=xp))


def test_a_nested_stack_is_converted_with_the_network_holding_it(xp):
    rng = np.random.default_rng(0)
    inner = Sequential([affine(xp, rng, 5, 5), ReLU(), affine(xp, rng, 5, 5)])
    net = Sequential([affine(xp, rng, 6, 5), inner, affine(xp, rng, 5, 3)], loss=SoftmaxWithLoss())
    x, t = data(xp)
    net.to("float64")
    assert net.dtype == inner.dtype == "float64"
    assert str(net.predict(x).dtype).endswith("float64")
    assert all(str(g.dtype).endswith("float64") for g in net.gradient(x, t).values())


def test_a_stack_converted_alone_makes_the_network_holding_it_refuse_to_run(xp):
    rng = np.random.default_rng(0)
    inner = Sequential([affine(xp, rng, 5, 5), ReLU()])
    net = Sequential([affine(xp, rng, 6, 5), inner, affine(xp, rng, 5, 3)], loss=SoftmaxWithLoss())
    x, t = data(xp)
    inner.to("float64")
    advice = r"W2 \(layers\[1\]\.layers\[0\].*float64, but W1 has float32.*without it.*net\.to"
    with pytest.raises(ValueError, match=advice):
        net.gradient(x, t)
    with pytest.raises(ValueError, match=advice):
        net.dtype  # noqa: B018
    net.to("float64")
    assert all(str(g.dtype).endswith("float64") for g in net.gradient(x, t).values())


SENT_AFTER_A_STACK_CONVERTED_ALONE = """
import pickle, sys
import numpy as np
from xpnet import Sequential
from xpnet.layers import Affine, ReLU, SoftmaxWithLoss

def affine(d_in, d_out):
    return Affine(np.ones((d_in, d_out), np.float32), np.zeros(d_out, np.float32))

inner = Sequential([affine(6, 5), ReLU()])
net = Sequential([inner, affine(5, 3)], loss=SoftmaxWithLoss())
inner.to("float64")
sys.stdout.buffer.write(pickle.dumps((net, np.ones((2, 6), np.float32))))
"""


def test_a_network_sent_to_another_process_still_refuses_a_stack_converted_alone():
    # As Dask sends it to a worker, whose count of conversions is its own: both counted
    # none when the network was built (here, in a fresh process).
    sent = subprocess.run(
        [sys.executable, "-c", SENT_AFTER_A_STACK_CONVERTED_ALONE], capture_output=True, check=True
    ).stdout
    receive = "import pickle, sys; net, x = pickle.loads(sys.stdin.buffer.read()); net.predict(x)"
    run = subprocess.run([sys.executable, "-c", receive], input=sent, capture_output=True)
    assert run.returncode == 1
    assert b"ValueError: parameter W2 (layers[1] (Affine)) has dtype float32, but W1 has " in (
        run.stderr
    )


def test_a_stack_holding_every_parameter_converted_alone_converts_the_network(xp):
    inner = Sequential([affine(xp, np.random.default_rng(0), 6, 5), ReLU()])
    net = Sequential([inner, ReLU()])
    x, _ = data(xp)
    net.predict(x)
    inner.to("float64")
    assert net.dtype == "float64"
    x64 = to_device(np.random.default_rng(2).standard_normal((4, 6)), dtype="float64", xp=xp)
    # float64 input kept as it is, not rounded to the float32 that the network was
    np.testing.assert_array_equal(to_numpy(net.predict(x64)), to_numpy(inner.predict(x64)))


Point = namedtuple("Point", "x y")


class Keeper:
    """Holds arrays in a list, a tuple, a named tuple and a dict, as a user's layer may."""

    def __init__(self, xp):
        rng = np.random.default_rng(3)
        a, b, c = (to_device(rng.standard_normal(6), dtype="float32", xp=xp) for _ in range(3))
        steps = to_device(np.arange(6), dtype="int64", xp=xp)
        self.Ws, self.cache, self.named = [a, [b]], (c, steps), {"c": c}
        self.point = Point(a, b)

    def forward(self, x):
        return x * self.Ws[0] + self.Ws[1][0] + self.cache[0] + self.point.y

    def backward(self, dout):
        return dout * self.Ws[0]


def test_arrays_in_a_layers_lists_tuples_and_dicts_are_converted(xp):
    keeper = Keeper(xp)
    Ws, steps = keeper.Ws, keeper.cache[1]
    before = to_numpy(keeper.Ws[0])
    net = Sequential([keeper])
    net.to("float64")
    floating = [*keeper.Ws[:1], *keeper.Ws[1], keeper.cache[0], keeper.named["c"], *keeper.point]
    assert all(str(a.dtype).endswith("float64") for a in floating)
    assert keeper.Ws is Ws  # the list updated in place, as another holder of it sees
    assert keeper.cache[0] is keeper.named["c"]  # one array held twice stays one
    assert keeper.cache[1] is steps and type(keeper.point) is Point
    np.testing.assert_array_equal(to_numpy(keeper.Ws[0]), before.astype(np.float64))
    x, _ = data(xp)
    assert str(net.predict(x).dtype).endswith("float64")


class Pair(tuple):
    """A tuple of another kind, which to() cannot make again."""


def test_a_tuple_of_another_kind_holding_arrays_is_refused_naming_it(xp):
    keeper = Keeper(xp)
    keeper.pair = Pair(keeper.Ws[:1])
    W = keeper.Ws[0]
    with pytest.raises(TypeError, match=r"Keeper\.pair is a Pair holding arrays.*a list"):
        Sequential([keeper]).to("float64")
    assert keeper.Ws[0] is W and str(W.dtype).endswith("float32")


def test_dtype_and_library_at_once_round_trip_exactly_without_warnings(xp):
    strict = pytest.importorskip("array_api_strict")
    net = xpnet.TwoLayerNet(6, 5, 3, seed=0, xp=xp)
    before = {name: to_numpy(value) for name, value in net.params.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no comparison of two libraries' dtypes
        net.to("float64", xp=strict).to("float32", xp=np)
    for name, value in net.params.items():
        assert isinstance(value, np.ndarray) and value.dtype == np.float32
        np.testing.assert_array_equal(value, before[name])


def test_dropout_and_batchnorm_run_in_training_and_evaluation_after_to(xp):
    net = xpnet.MultiLayerNet(
        6, [5], 3, use_batchnorm=True, use_dropout=True, dropout_ratio=0.3, seed=0, xp=xp
    )
    x, t = data(xp)
    net.gradient(x, t)  # masks, running statistics and caches filled
    net.to("float64")
    assert all(str(g.dtype).endswith("float64") for g in net.gradient(x, t).values())
    assert str(net.predict(x).dtype).endswith("float64")
