"""Checkpoints: round trips on every backend, exact mismatch messages, atomic writes,
no pickle, architecture and optimizer state for resuming."""

import importlib.util
import io
import json
import os
import re
import warnings

import numpy as np
import pytest
from array_api_compat import is_cupy_namespace
from metadata import CUPY_GENERATORS_NOT_SAVED, rewrite_metadata, setting, without
from normal_user import raised_as_nobody

from xpnet import MultiLayerNet, SimpleConvNet, TwoLayerNet
from xpnet.backend import ALIGNMENT, to_device, to_numpy
from xpnet.checkpoint import (
    METADATA_KEY,
    CheckpointError,
    load_network,
    load_params,
    not_a_checkpoint,
    read_metadata,
    save_params,
)
from xpnet.files import atomic_file
from xpnet.layers import Affine, Dropout, MeanSquaredError, ReLU, SoftmaxWithLoss
from xpnet.networks import Sequential
from xpnet.optim import OPTIMIZERS, SGD, Adam, Momentum
from xpnet.schema import json_object, one_of


def host_params(net):
    return {k: to_numpy(v).copy() for k, v in net.params.items()}


def replace_arrays(path, **arrays):
    """Rewrite checkpoint ``path`` with ``arrays`` (file name -> array) added or replaced."""
    with np.load(path, allow_pickle=False) as data:
        kept = {k: data[k] for k in data.files}
    np.savez(path, **{**kept, **arrays})


# Networks made without xp= live on the host here, even under XPNET_DEVICE=cuda: these
# tests feed them NumPy arrays; the xp fixture's tests cover the devices.
pytestmark = pytest.mark.usefixtures("on_the_host")


def batchnorm_net(seed=0):
    """A MultiLayerNet whose layers[1] is a BatchNormalization (buffers running_mean/var)."""
    return MultiLayerNet(6, [5], 4, use_batchnorm=True, dtype="float64", seed=seed)


def test_round_trip_restores_values_dtype_and_backend(xp, tmp_path):
    saved = MultiLayerNet(5, [4, 3], 2, seed=1, xp=xp)
    path = save_params(tmp_path / "p.npz", saved, {"epoch": 7})
    other = MultiLayerNet(5, [4, 3], 2, seed=2, xp=xp)
    meta = load_params(path, other)
    for name, value in host_params(saved).items():
        loaded = other.params[name]
        assert type(loaded) is type(saved.params[name])  # same namespace as the network
        assert loaded.dtype == xp.float32
        np.testing.assert_array_equal(to_numpy(loaded), value)
    assert meta["epoch"] == 7
    assert meta["architecture"] == {
        "class": "MultiLayerNet",
        "sizes": [5, 4, 3, 2],
        "activation": "relu",
        "dtype": "float32",
        "weight_decay": 0.0,
    }


def test_load_params_writes_into_the_networks_own_arrays(xp, tmp_path):
    saved = MultiLayerNet(5, [4], 2, seed=1, xp=xp)
    path = save_params(tmp_path / "p.npz", saved)
    other = MultiLayerNet(5, [4], 2, seed=2, xp=xp)
    held = dict(other.params)
    load_params(path, other)
    assert all(other.params[name] is array for name, array in held.items())
    for name, value in host_params(saved).items():
        np.testing.assert_array_equal(to_numpy(held[name]), value)


@pytest.mark.parametrize("load", ["load_params", "load_network"])
def test_loaded_numpy_weights_keep_their_cache_line_alignment(tmp_path, load):
    path = save_params(tmp_path / "p.npz", MultiLayerNet(784, [100], 10, seed=1))
    if load == "load_params":
        net = MultiLayerNet(784, [100], 10, seed=2)
        load_params(path, net)
    else:
        net, _ = load_network(path)
    assert {name: a.ctypes.data % ALIGNMENT for name, a in net.params.items()} == dict.fromkeys(
        net.params, 0
    )


def test_a_read_only_parameter_is_replaced_by_the_loaded_array(tmp_path):
    saved = MultiLayerNet(5, [4], 2, seed=1)
    path = save_params(tmp_path / "p.npz", saved)
    net = MultiLayerNet(5, [4], 2, seed=2)
    net.params["W1"].flags.writeable = False
    load_params(path, net)
    np.testing.assert_array_equal(net.params["W1"], saved.params["W1"])


def test_a_big_endian_checkpoint_loads_on_every_backend(xp, tmp_path):
    # .npy keeps the writer's byte order: a checkpoint from a big-endian machine holds '>f4'
    saved = MultiLayerNet(5, [4], 2, seed=1, dtype="float64")
    path = save_params(tmp_path / "p.npz", saved)
    with np.load(path, allow_pickle=False) as data:
        kept = {k: data[k] for k in data.files}
    big = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in kept.items() if k != METADATA_KEY}
    np.savez(path, **{**kept, **big})
    into = MultiLayerNet(5, [4], 2, seed=2, dtype="float64", xp=xp)
    load_params(path, into)
    rebuilt, _ = load_network(path, xp=xp)
    for net in (into, rebuilt):
        for name, value in host_params(saved).items():
            assert net.params[name].dtype == xp.float64
            np.testing.assert_array_equal(to_numpy(net.params[name]), value)


@pytest.mark.parametrize("kind", ["MultiLayerNet", "with BatchNorm", "Sequential"])
def test_load_network_converts_the_files_arrays_to_the_dtype_asked_for(xp, tmp_path, kind):
    # As PyTorch's model.double(): a float32 network checked in float64.
    saved = MultiLayerNet(5, [4], 2, seed=1, use_batchnorm=kind != "MultiLayerNet")
    batchnorm = kind != "MultiLayerNet"
    if batchnorm:  # running statistics other than the initial ones
        saved.layers[1].running_var = saved.layers[1].running_var + 0.5
    if kind == "Sequential":  # rebuilt layer by layer
        saved = Sequential(saved.layers, loss=saved.last_layer)
    optimizer = Momentum()
    optimizer.update(saved.params, {k: v + 1 for k, v in saved.params.items()})
    path = save_params(tmp_path / "p.npz", saved, optimizer=optimizer)
    loaded_optimizer = Momentum()
    net, _ = load_network(path, xp=xp, dtype="float64", optimizer=loaded_optimizer)
    assert net.dtype == "float64"
    with np.load(path, allow_pickle=False) as file:
        for name, value in net.params.items():
            assert value.dtype == xp.float64
            np.testing.assert_array_equal(to_numpy(value), file[name].astype(np.float64))
            velocity = loaded_optimizer.state_dict()["buffers"]["v"][name]
            assert velocity.dtype == xp.float64
            np.testing.assert_array_equal(to_numpy(velocity), file[f"optimizer/v/{name}"])
        if batchnorm:
            assert net.layers[1].running_var.dtype == xp.float64
            np.testing.assert_array_equal(
                to_numpy(net.layers[1].running_var), file["buffer/2/running_var"]
            )


def test_the_file_is_plain_npz_with_json_metadata(tmp_path):
    net = MultiLayerNet(3, [2], 2, seed=0, dtype="float64")
    path = save_params(tmp_path / "p.npz", net, {"note": "héllo"})
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"W1", "b1", "W2", "b2", METADATA_KEY}
        assert data[METADATA_KEY].dtype == np.uint8
        meta = json.loads(data[METADATA_KEY].tobytes().decode("utf-8"))
    assert meta["note"] == "héllo" and meta["architecture"]["dtype"] == "float64"
    assert meta["format"] == "xpnet-checkpoint/1"
    assert read_metadata(path) == meta


def test_a_plain_dict_of_arrays_works(cpu_xp, tmp_path):
    params = {"w": to_device([[1.0, 2.0]], dtype="float64", xp=cpu_xp)}
    save_params(tmp_path / "d.npz", params)
    target = {"w": to_device([[0.0, 0.0]], dtype="float64", xp=cpu_xp)}
    meta = load_params(tmp_path / "d.npz", target)
    np.testing.assert_array_equal(to_numpy(target["w"]), [[1.0, 2.0]])
    assert "architecture" not in meta


def test_load_network_rebuilds_the_architecture(cpu_xp, tmp_path):
    net = MultiLayerNet(6, [5, 4], 3, activation="tanh", weight_decay=0.1, seed=0, xp=cpu_xp)
    save_params(tmp_path / "p.npz", net)
    rebuilt, meta = load_network(tmp_path / "p.npz", xp=cpu_xp)
    assert meta["architecture"]["activation"] == "tanh"
    assert (rebuilt.sizes, rebuilt.activation, rebuilt.weight_decay) == ([6, 5, 4, 3], "tanh", 0.1)
    x = to_device(np.ones((2, 6)), dtype="float32", xp=cpu_xp)
    np.testing.assert_array_equal(to_numpy(rebuilt.predict(x)), to_numpy(net.predict(x)))


@pytest.mark.parametrize("kind", ["MultiLayerNet", "Sequential"])
def test_load_network_with_xp_and_device_builds_on_that_device(tmp_path, kind):
    strict = pytest.importorskip("array_api_strict")
    device1 = strict.Device("device1")
    net = MultiLayerNet(4, [3], 2, use_batchnorm=True, seed=0, xp=strict)
    save_params(
        tmp_path / "p.npz", net if kind == "MultiLayerNet" else Sequential(net, loss=net.last_layer)
    )
    rebuilt, _ = load_network(tmp_path / "p.npz", device=device1, xp=strict)
    batchnorm = rebuilt[1]
    arrays = [*rebuilt.params.values(), batchnorm.running_mean, batchnorm.running_var]
    assert [a.device for a in arrays] == [device1] * 8


def test_load_network_rebuilds_a_multilayernet_with_batchnorm_and_dropout_as_one(tmp_path):
    # It came back as a Sequential of the same layers, without sizes, use_batchnorm, ...
    net = MultiLayerNet(
        6, [5, 4], 3, use_batchnorm=True, use_dropout=True, dropout_ratio=0.3, seed=4
    )
    x, t = np.linspace(-1, 1, 12, dtype=np.float32).reshape(2, 6), np.array([0, 2])
    net.gradient(x, t)  # running statistics and mask generators moved on
    save_params(tmp_path / "p.npz", net)
    rebuilt, _ = load_network(tmp_path / "p.npz")
    assert type(rebuilt) is MultiLayerNet
    assert (rebuilt.sizes, rebuilt.use_batchnorm, rebuilt.use_dropout) == ([6, 5, 4, 3], True, True)
    dropouts = [layer for layer in rebuilt.layers if isinstance(layer, Dropout)]
    assert [(d.dropout_ratio, d.seed) for d in dropouts] == [(0.3, 5), (0.3, 6)]
    for train_flg in (False, True):  # the running statistics, then the next masks
        np.testing.assert_array_equal(rebuilt.predict(x, train_flg), net.predict(x, train_flg))


def test_load_network_rebuilds_a_simpleconvnet_as_one(tmp_path):
    conv = {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 2}
    net = SimpleConvNet((1, 8, 8), conv, hidden_size=6, output_size=4, seed=0)
    save_params(tmp_path / "p.npz", net)
    rebuilt, _ = load_network(tmp_path / "p.npz", dtype="float64")
    assert type(rebuilt) is SimpleConvNet and rebuilt.dtype == "float64"
    assert (rebuilt.input_dim, rebuilt.conv_param, rebuilt.sizes) == ((1, 8, 8), conv, net.sizes)
    x = np.linspace(0, 1, 128).reshape(2, 1, 8, 8)
    np.testing.assert_allclose(rebuilt.predict(x), net.predict(x.astype(np.float32)), rtol=1e-5)


def test_load_network_rebuilds_a_twolayernet_as_one(cpu_xp, tmp_path):
    net = TwoLayerNet(6, 5, 3, seed=0, xp=cpu_xp)
    save_params(tmp_path / "p.npz", net)
    rebuilt, _ = load_network(tmp_path / "p.npz", xp=cpu_xp, dtype="float64")
    assert type(rebuilt) is TwoLayerNet and rebuilt.dtype == "float64"
    x = to_device(np.linspace(-1, 1, 12).reshape(2, 6), dtype="float32", xp=cpu_xp)
    np.testing.assert_allclose(to_numpy(rebuilt.predict(x)), to_numpy(net.predict(x)), rtol=1e-5)


def test_a_twolayernet_given_weight_decay_is_rebuilt_as_a_multilayernet(tmp_path):
    net = TwoLayerNet(6, 5, 3, seed=0)
    net.weight_decay = 0.1  # which TwoLayerNet's constructor does not take
    save_params(tmp_path / "p.npz", net)
    rebuilt, _ = load_network(tmp_path / "p.npz")
    assert (type(rebuilt), rebuilt.weight_decay) == (MultiLayerNet, 0.1)


def test_a_multilayernet_whose_layers_were_changed_is_rebuilt_from_its_layers(tmp_path):
    net = MultiLayerNet(6, [5, 4], 3, use_dropout=True, seed=0)
    net.layers[5].dropout_ratio = 0.25  # the second Dropout: no longer what the settings build
    save_params(tmp_path / "p.npz", net)
    rebuilt, _ = load_network(tmp_path / "p.npz")
    assert type(rebuilt) is Sequential
    assert [rebuilt.layers[k].dropout_ratio for k in (2, 5)] == [0.5, 0.25]


def test_load_network_rebuilds_the_output_activation(tmp_path):
    net = MultiLayerNet(4, [3], 2, output_activation="sigmoid", loss=MeanSquaredError(), seed=0)
    save_params(tmp_path / "p.npz", net)
    rebuilt, _ = load_network(tmp_path / "p.npz")
    assert rebuilt.output_activation == "sigmoid"
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(to_numpy(rebuilt.predict(x)), to_numpy(net.predict(x)))


def test_load_network_rebuilds_a_sequentials_weight_decay(tmp_path):
    W = np.arange(6, dtype=np.float32).reshape(3, 2) / 6
    net = Sequential(
        [Affine(W, np.zeros(2, np.float32)), ReLU()], loss=SoftmaxWithLoss(), weight_decay=0.1
    )
    save_params(tmp_path / "s.npz", net)
    rebuilt, _ = load_network(tmp_path / "s.npz")
    assert rebuilt.weight_decay == 0.1
    x, t = np.ones((1, 3), np.float32), np.array([0])
    assert float(rebuilt.loss(x, t)) == float(net.loss(x, t))


def test_load_params_restores_layer_buffers(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 6))
    net = batchnorm_net(seed=0)
    net.gradient(x, np.arange(8) % 4)  # a training step moves the running statistics
    bn = net.layers[1]
    save_params(tmp_path / "bn.npz", net)
    other = batchnorm_net(seed=0)
    load_params(tmp_path / "bn.npz", other)
    for attr in ("running_mean", "running_var"):
        np.testing.assert_array_equal(
            to_numpy(getattr(other.layers[1], attr)), to_numpy(getattr(bn, attr))
        )
    np.testing.assert_array_equal(
        to_numpy(other.predict(x, train_flg=False)), to_numpy(net.predict(x, train_flg=False))
    )


def test_a_file_without_the_layer_buffers_is_refused_and_changes_nothing(tmp_path):
    save_params(tmp_path / "p.npz", dict(batchnorm_net(seed=1).params))  # parameters only
    net = batchnorm_net(seed=0)
    before = host_params(net)
    with pytest.raises(
        ValueError,
        match=r"layer buffers in .*p\.npz do not match the network: "
        r"missing from the file: buffer/2/running_mean, buffer/2/running_var",
    ):
        load_params(tmp_path / "p.npz", net)
    for k, v in before.items():
        np.testing.assert_array_equal(to_numpy(net.params[k]), v)


@pytest.fixture
def momentum_checkpoint(tmp_path):
    """A MultiLayerNet(4, [3], 2) saved with the state of Momentum after one step."""
    net, opt = MultiLayerNet(4, [3], 2, seed=0), Momentum(0.1)
    opt.update(net.params, net.gradient(np.ones((2, 4), np.float32), np.array([0, 1])))
    return save_params(tmp_path / "p.npz", net, optimizer=opt)


def test_optimizer_state_of_the_wrong_shape_is_refused(momentum_checkpoint):
    replace_arrays(momentum_checkpoint, **{"optimizer/v/W1": np.ones((1, 3), np.float32)})
    with pytest.raises(
        ValueError,
        match=r"optimizer state 'v' in .* do not match the network: "
        r"W1 has shape \(1, 3\) in the file but \(4, 3\) in the network",
    ):
        load_params(momentum_checkpoint, MultiLayerNet(4, [3], 2, seed=0), optimizer=Momentum(0.1))


def stepped_momentum(net):
    """A Momentum that has made one step on ``net`` (so it has state to lose)."""
    opt = Momentum(0.1)
    opt.update(net.params, net.gradient(np.ones((2, 4), np.float32), np.array([1, 0])))
    return opt


def assert_unchanged(net, params_before, opt, state_before):
    for k, v in params_before.items():
        np.testing.assert_array_equal(to_numpy(net.params[k]), v)
    state = opt.state_dict()
    assert state["iterations"] == state_before["iterations"]
    assert state["buffers"]["v"].keys() == state_before["buffers"]["v"].keys()
    for k, v in state["buffers"]["v"].items():
        assert v is state_before["buffers"]["v"][k]


def test_optimizer_state_for_no_parameter_is_refused(momentum_checkpoint):
    replace_arrays(momentum_checkpoint, **{"optimizer/v/W9": np.zeros(1, np.float32)})
    net = MultiLayerNet(4, [3], 2, seed=1)
    opt = stepped_momentum(net)
    params_before, state_before = host_params(net), opt.state_dict()
    with pytest.raises(ValueError, match=r"optimizer state optimizer/v/W9 in .* names no param"):
        load_params(momentum_checkpoint, net, optimizer=opt)
    assert_unchanged(net, params_before, opt, state_before)


def test_state_for_a_buffer_the_optimizer_lacks_changes_neither_network_nor_optimizer(
    momentum_checkpoint,
):
    replace_arrays(momentum_checkpoint, **{"optimizer/h/W1": np.zeros((4, 3), np.float32)})
    net = MultiLayerNet(4, [3], 2, seed=1)
    opt = stepped_momentum(net)
    params_before, state_before = host_params(net), opt.state_dict()
    with pytest.raises(ValueError) as info:
        load_params(momentum_checkpoint, net, optimizer=opt)
    assert str(info.value) == (
        f"optimizer state optimizer/h/W1 in {momentum_checkpoint} is for a buffer 'h', "
        "which momentum does not have (its buffers: v)"
    )
    assert_unchanged(net, params_before, opt, state_before)


def test_a_checkpoint_saved_after_loading_float64_state_into_float32_loads_back(tmp_path):
    net, opt = MultiLayerNet(4, [3], 2, seed=0), Momentum(0.1)  # float32 parameters
    v64 = {name: np.full(tuple(p.shape), 0.5) for name, p in net.params.items()}
    opt.load_state_dict({"iterations": 1, "buffers": {"v": v64}})
    opt.update(net.params, net.gradient(np.ones((2, 4), np.float32), np.array([0, 1])))
    path = save_params(tmp_path / "p.npz", net, optimizer=opt)
    other, other_opt = MultiLayerNet(4, [3], 2, seed=1), Momentum(0.1)
    load_params(path, other, optimizer=other_opt)
    assert all(v.dtype == np.float32 for v in other_opt.state_dict()["buffers"]["v"].values())


def test_missing_and_extra_names_are_listed(tmp_path):
    save_params(tmp_path / "p.npz", MultiLayerNet(4, [3, 3], 2, seed=0))
    net = MultiLayerNet(4, [3], 2, seed=0)
    before = host_params(net)
    with pytest.raises(ValueError, match=r"not in the network: W3, b3") as info:
        load_params(tmp_path / "p.npz", net)
    assert "p.npz" in str(info.value)
    assert "W2 has shape (3, 3) in the file but (3, 2) in the network" in str(info.value)
    deeper = MultiLayerNet(4, [3, 3, 3], 2, seed=0)
    with pytest.raises(ValueError, match=r"missing from the file: W4, b4"):
        load_params(tmp_path / "p.npz", deeper)
    for k, v in before.items():  # a failed load changes nothing
        np.testing.assert_array_equal(to_numpy(net.params[k]), v)


def test_shape_and_dtype_mismatches_are_exact(tmp_path):
    save_params(tmp_path / "p.npz", MultiLayerNet(4, [5], 2, seed=0, dtype="float64"))
    with pytest.raises(ValueError) as info:
        load_params(tmp_path / "p.npz", MultiLayerNet(4, [6], 2, seed=0, dtype="float64"))
    message = str(info.value)
    assert "W1 has shape (4, 5) in the file but (4, 6) in the network" in message
    assert "b1 has shape (5,) in the file but (6,) in the network" in message
    assert "has dtype" not in message
    with pytest.raises(ValueError) as info:
        load_params(tmp_path / "p.npz", MultiLayerNet(4, [5], 2, seed=0, dtype="float32"))
    assert "W1 has dtype float64 in the file but float32 in the network" in str(info.value)
    assert "has shape" not in str(info.value)


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    net = MultiLayerNet(3, [2], 2, seed=0)
    target = tmp_path / "p.npz"
    target.write_bytes(b"old contents")

    def broken_savez(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_params(target, net)
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]
    assert target.read_bytes() == b"old contents"


def test_atomic_file_needs_an_existing_directory(tmp_path):
    target = tmp_path / "nope" / "x.bin"
    with pytest.raises(FileNotFoundError, match="does not exist"), atomic_file(target) as f:
        f.write(b"x")


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, W1=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match=r"'W1' holds Python objects.*pickle"):
        load_params(path, {"W1": np.zeros(2)})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            setting("format", "xpnet-checkpoint/2"),
            "checkpoint format 'xpnet-checkpoint/2' is not supported; this xpnet reads "
            "'xpnet-checkpoint/1' (the file was written by a newer xpnet)",
        ),
        (
            setting("format", "something-else/7"),
            "checkpoint format 'something-else/7' is not supported; this xpnet reads "
            "'xpnet-checkpoint/1'",
        ),
        (
            without("format"),
            "the checkpoint records no format; this xpnet reads 'xpnet-checkpoint/1', "
            "which every file it writes records",
        ),
    ],
    ids=["newer", "other", "missing"],
)
@pytest.mark.parametrize("load", [read_metadata, load_network, load_params])
def test_a_format_other_than_xpnet_checkpoint_1_is_refused_naming_the_file(
    trained, edit, message, load
):
    rewrite_metadata(trained, edit)
    args = (MultiLayerNet(4, [3], 2, seed=0),) if load is load_params else ()
    with pytest.raises(CheckpointError) as info:
        load(trained, *args)
    assert str(info.value) == f"{trained}: {message}"


def test_an_npz_without_metadata_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.zeros(3, np.float32))
    with pytest.raises(CheckpointError) as info:
        load_params(path, {"w": np.ones(3, np.float32)})
    assert str(info.value) == (
        f"{path} is not an xpnet checkpoint (an .npz archive without xpnet's __metadata__ "
        "array, which records the format ('xpnet-checkpoint/1') in every file xpnet writes)"
    )


def test_not_a_checkpoint_names_an_npz_without_metadata_as_loading_does(tmp_path):
    """xpnet train's --save refuses such a file in the words that load_params uses."""
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.zeros(3, np.float32))
    with pytest.raises(CheckpointError) as info:
        read_metadata(path)
    assert str(info.value) == f"{path} is not an xpnet checkpoint ({not_a_checkpoint(path)})"


def test_files_that_are_not_checkpoints(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"not an \.npz archive"):
        read_metadata(tmp_path / "x.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_metadata(tmp_path / "missing.npz")


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        save_params(tmp_path / "p.npz", {"w": np.zeros(1)}, {"bad": object()})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("batchnorm", [False, True])  # saved as a MultiLayerNet, a Sequential
@pytest.mark.parametrize("load", ["load_params", "load_network"])
def test_optimizer_state_round_trip_continues_identically(xp, tmp_path, load, batchnorm):
    rng = np.random.default_rng(0)
    x = to_device(rng.standard_normal((8, 4)), dtype="float32", xp=xp)
    t = to_device(rng.integers(0, 2, 8), dtype="int64", xp=xp)

    def network(seed):
        return MultiLayerNet(4, [3], 2, use_batchnorm=batchnorm, seed=seed, xp=xp)

    def loaded(optimizer):
        if load == "load_network":
            return load_network(path, xp=xp, optimizer=optimizer)[0]
        into = network(5)
        load_params(path, into, optimizer=optimizer)
        return into

    net, opt = network(0), Adam(lr=0.01)
    for _ in range(3):
        opt.update(net.params, net.gradient(x, t))
    path = save_params(tmp_path / "p.npz", net, {"epoch": 3}, optimizer=opt)
    assert read_metadata(path)["optimizer"] == {
        "name": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "iterations": 3,
        "steps": dict.fromkeys(net.params, 3),
    }  # fmt: skip

    opt2 = Adam(lr=0.01)
    net2 = loaded(opt2)
    assert opt2.iterations == 3 and opt2.steps == opt.steps
    opt.update(net.params, net.gradient(x, t))
    opt2.update(net2.params, net2.gradient(x, t))
    for k in net.params:
        np.testing.assert_array_equal(to_numpy(net.params[k]), to_numpy(net2.params[k]))

    with pytest.raises(ValueError, match="state for optimizer 'adam', not 'sgd'"):
        loaded(SGD())


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_run_resumed_from_a_checkpoint_follows_the_uninterrupted_trajectory(name, tmp_path):
    """Ten steps, saved with optimizer=, loaded into a fresh network and optimizer, ten more:
    the same parameters, to the bit, as twenty steps without a break."""
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((20, 8, 4)), rng.integers(0, 2, (20, 8))
    straight, optimizer = MultiLayerNet(4, [3], 2, dtype="float64", seed=0), OPTIMIZERS[name]()
    for step in range(10):
        optimizer.update(straight.params, straight.gradient(x[step], t[step]))
    path = save_params(tmp_path / "p.npz", straight, optimizer=optimizer)
    resumed = MultiLayerNet(4, [3], 2, dtype="float64", seed=1)
    resumed_optimizer = OPTIMIZERS[name]()
    load_params(path, resumed, optimizer=resumed_optimizer)
    for step in range(10, 20):
        optimizer.update(straight.params, straight.gradient(x[step], t[step]))
        resumed_optimizer.update(resumed.params, resumed.gradient(x[step], t[step]))
    assert resumed_optimizer.iterations == 20
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])


def test_load_params_keeps_the_optimizers_hyperparameters_and_warns_of_the_files(tmp_path):
    path = save_params(tmp_path / "p.npz", MultiLayerNet(4, [3], 2, seed=0),
                       optimizer=Adam(lr=0.001, beta1=0.8))  # fmt: skip
    opt = Adam(lr=0.5)
    with pytest.warns(UserWarning) as record:
        load_params(path, MultiLayerNet(4, [3], 2, seed=1), optimizer=opt)
    assert [str(w.message) for w in record] == [
        f"{path}: loading the optimizer's state, keeping its own hyperparameters, which "
        "differ from the file's: lr 0.5 (file: 0.001), beta1 0.9 (file: 0.8)"
    ]
    assert (opt.lr, opt.beta1) == (0.5, 0.9)


def test_a_hyperparameter_only_the_file_has_is_named_in_the_warning(tmp_path):
    """A file written by an xpnet whose SGD took one more hyperparameter, say."""
    path = save_params(tmp_path / "p.npz", MultiLayerNet(4, [3], 2, seed=0), optimizer=SGD(lr=0.1))
    rewrite_metadata(path, setting("optimizer.dampening", 0.5))
    with pytest.warns(UserWarning, match=r"differ from the file's: dampening unset \(file: 0.5\)$"):
        load_params(path, MultiLayerNet(4, [3], 2, seed=1), optimizer=SGD(lr=0.1))


def test_load_params_with_the_files_hyperparameters_does_not_warn(tmp_path):
    path = save_params(tmp_path / "p.npz", MultiLayerNet(4, [3], 2, seed=0),
                       optimizer=Adam(lr=0.001, beta1=0.8))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_params(path, MultiLayerNet(4, [3], 2, seed=1), optimizer=Adam(0.001, beta1=0.8))


@pytest.fixture
def trained(tmp_path):
    """A checkpoint as training writes one: a network, SGD's state, epoch and history."""
    history = {"epochs": [1], "iterations": [40], "train_acc": [0.3], "test_acc": [0.3],
               "train_loss": [2.2], "test_loss": [2.2], "seconds": [0.6]}  # fmt: skip
    return save_params(
        tmp_path / "p.npz",
        MultiLayerNet(4, [3], 2, seed=0),
        {"epoch": 1, "history": history},
        optimizer=SGD(lr=0.1),
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (setting("", None), "field __metadata__ is null, expected a JSON object"),
        (setting("", [1, 2, 3]), "field __metadata__ is [1, 2, 3], expected a JSON object"),
        (without("architecture.sizes"), "field architecture.sizes is missing, expected a list"),
        (setting("architecture.sizes", [4, "3", 2]), 'architecture.sizes[1] is "3", expected an'),
        (without("architecture.activation"), "field architecture.activation is missing"),
        (setting("architecture.activation", "gelu"), 'activation is "gelu", expected one of'),
        (setting("architecture.class", "Foo"), 'architecture.class is "Foo", expected one of'),
        (setting("architecture", "MLP"), 'architecture is "MLP", expected a JSON object'),
        (setting("optimizer", "sgd"), 'field optimizer is "sgd", expected a JSON object'),
        (setting("optimizer", {"name": "sgd"}), "field optimizer.lr is missing, expected a"),
        (setting("optimizer.lr", -1), "field optimizer.lr is -1, expected a finite number >= 0"),
        (setting("architecture.sizes", [4, True, 2]), "sizes[1] is true, expected an integer >= 1"),
        (setting("optimizer.lr", float("inf")), "optimizer.lr is Infinity, expected a finite num"),
        (setting("optimizer.iterations", "three"), 'iterations is "three", expected an integer'),
        (setting("architecture.dtype", "float128"), 'dtype is "float128", expected one of "float'),
    ],
)
def test_malformed_metadata_is_an_error_naming_the_file_and_the_field(trained, edit, message):
    rewrite_metadata(trained, edit)
    with pytest.raises(CheckpointError) as info:
        read_metadata(trained)
    assert str(info.value).startswith(f"{trained}: checkpoint field ")
    assert message in str(info.value)


def test_loading_checks_the_metadata_as_reading_does(trained):
    rewrite_metadata(trained, without("architecture.sizes"))
    with pytest.raises(CheckpointError, match=r"field architecture\.sizes is missing"):
        load_network(trained)
    with pytest.raises(CheckpointError, match=r"field architecture\.sizes is missing"):
        load_params(trained, MultiLayerNet(4, [3], 2, seed=0))


def test_checkpoint_errors_are_value_errors():
    assert issubclass(CheckpointError, ValueError)


def test_a_callers_own_metadata_is_read_back_as_written(tmp_path):
    """Keys the library does not write are the caller's: the trainer's names too."""
    path = tmp_path / "p.npz"
    metadata = {"epoch": 2.5, "history": [0.9, 0.5], "note": None}
    save_params(path, {"w": np.ones(3, np.float32)}, metadata)
    assert {k: read_metadata(path)[k] for k in metadata} == metadata


@pytest.mark.parametrize("key", ["architecture", "optimizer", "generators", "format"])
def test_save_params_refuses_the_keys_it_writes_itself(tmp_path, key):
    with pytest.raises(ValueError, match=f"metadata key\\(s\\) '{key}' are written by save_params"):
        save_params(tmp_path / "p.npz", {"w": np.ones(3, np.float32)}, {key: "mine"})
    assert not (tmp_path / "p.npz").exists()


@pytest.mark.parametrize("name", ["params.pkl", "params.PICKLE"])
def test_save_params_refuses_a_pickle_name_for_the_npz_it_writes(tmp_path, name):
    # The book's params.pkl held an .npz archive under a name pickle.load expects to read.
    with pytest.raises(ValueError, match=r"xpnet writes .npz archives, never pickles; name it "):
        save_params(tmp_path / name, {"w": np.ones(3, np.float32)})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["optimizer/x", "buffer/x", METADATA_KEY])
def test_save_params_refuses_parameter_names_it_uses_itself(tmp_path, name):
    with pytest.raises(ValueError, match=f"parameter name '{name}' is reserved in checkpoints"):
        save_params(tmp_path / "p.npz", {name: np.zeros(1)})
    assert not (tmp_path / "p.npz").exists()


def test_a_float16_sequential_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    W, b = (to_device(a, dtype="float16") for a in (rng.standard_normal((4, 3)), np.zeros(3)))
    net = Sequential([Affine(W, b), ReLU()], loss=SoftmaxWithLoss())
    save_params(tmp_path / "p.npz", net)
    loaded, _ = load_network(tmp_path / "p.npz")
    assert loaded.dtype == "float16"
    np.testing.assert_array_equal(to_numpy(loaded.params["W1"]), to_numpy(W))


def test_an_optimizer_subclass_with_more_settings_is_saved_and_loaded(tmp_path):
    class ClippedSGD(SGD):
        def __init__(self, lr, clip):
            super().__init__(lr)
            self.clip = clip

    path = save_params(tmp_path / "p.npz", MultiLayerNet(4, [3], 2, seed=0),
                       optimizer=ClippedSGD(0.1, 5.0))  # fmt: skip
    assert read_metadata(path)["optimizer"] == {
        "name": "sgd", "lr": 0.1, "clip": 5.0, "iterations": 0
    }  # fmt: skip
    net = MultiLayerNet(4, [3], 2, seed=1)
    load_params(path, net, optimizer=ClippedSGD(0.1, 5.0))
    np.testing.assert_array_equal(
        to_numpy(net.params["W1"]), to_numpy(MultiLayerNet(4, [3], 2, seed=0).params["W1"])
    )


def test_an_optimizer_of_another_library_is_read_without_being_rebuilt(trained):
    rewrite_metadata(trained, setting("optimizer", {"name": "lion", "lr": 0.1, "beta": 2}))
    assert read_metadata(trained)["optimizer"]["name"] == "lion"


def test_read_metadata_checks_the_callers_fields_too(trained):
    rewrite_metadata(trained, setting("run", {"model": "resnet"}))
    fields = {"run": json_object({"model": one_of(["mlp", "convnet"])})}
    with pytest.raises(
        CheckpointError, match=r'field run.model is "resnet", expected one of "mlp"'
    ):
        read_metadata(trained, fields)
    assert read_metadata(trained)["run"] == {"model": "resnet"}  # not the library's field


def test_a_layer_array_missing_from_the_file_is_named(tmp_path):
    W, b = np.ones((3, 2), dtype="float32"), np.zeros(2, dtype="float32")
    path = save_params(
        tmp_path / "n.npz", Sequential([Affine(W, b), ReLU()], loss=SoftmaxWithLoss())
    )
    with np.load(path) as data:
        np.savez(path, **{k: data[k] for k in data.files if k != "W1"})
    with pytest.raises(
        CheckpointError, match=r"layers\[0\] needs array 'W1', which is not in the file"
    ):
        load_network(path)


@pytest.mark.parametrize("array", [np.array([None]), np.array(["text"])])
def test_non_numeric_arrays_are_refused_when_saving(tmp_path, array):
    with pytest.raises(ValueError, match=rf"cannot save 'a'.*dtype {array.dtype} is not numeric"):
        save_params(tmp_path / "p.npz", {"a": array})
    assert not list(tmp_path.iterdir())


def test_saving_over_a_directory_names_it(tmp_path):
    target = tmp_path / "p.npz"
    target.mkdir()
    with pytest.raises(
        IsADirectoryError, match=re.escape(f"cannot write checkpoint {target}: it is a dir")
    ):
        save_params(target, {"w": np.zeros(1)})
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"] and not list(target.iterdir())


def rezip(path, **members):
    """Rewrite the ``.npz`` ``path`` with ``members`` (zip member name -> bytes) added or
    replaced, or removed where the bytes are None."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        kept = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**kept, **members}.items():
            if data is not None:
                z.writestr(name, data)


def huge_header_npy():
    """An ``.npy`` file whose header claims 10**11 float32 values (400 GB), holding 12 bytes."""
    import io

    buffer = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**11,)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + bytes(12)


@pytest.mark.parametrize("load", [read_metadata, load_network])
def test_a_member_that_is_not_npy_is_a_checkpoint_error_naming_the_file_and_the_member(
    trained, load
):
    metadata = b'{"format": "xpnet-checkpoint/1"}'
    rezip(trained, **{f"{METADATA_KEY}.npy": None, METADATA_KEY: metadata})
    message = f"{trained}: member {METADATA_KEY!r} is not a NumPy array (.npy)"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load(trained)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"W1.npy": b"not an array"}, "array 'W1' is not a NumPy array (.npy)"),
        (
            {"W1.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': 'x'   \n"},
            "array 'W1' has a malformed .npy header (",
        ),
        (
            # a header claiming 400 GB, followed by 12 bytes
            {"W1.npy": huge_header_npy()},
            "array 'W1' of shape (100000000000,) and dtype float32 needs 400000000000 "
            "bytes; the file holds 12",
        ),
    ],
    ids=["array-not-npy", "malformed-header", "huge-shape"],
)
def test_a_malformed_array_is_a_checkpoint_error_naming_the_file_and_the_array(
    trained, members, message
):
    # read_metadata reads no array (test_read_metadata_reads_no_array)
    rezip(trained, **members)
    with pytest.raises(CheckpointError, match=re.escape(f"{trained}: {message}")):
        load_network(trained)


@pytest.mark.parametrize(
    ("sizes", "wrong"),
    [
        ([4, 2 * 10**12, 2], "W1 has shape (4, 3) in the file"),  # a network of 32 TB
        ([4, 3, 5], "W2 has shape (3, 2) in the file"),  # the last weights
    ],
)
def test_an_architecture_that_contradicts_the_arrays_is_refused_before_building_it(
    trained, sizes, wrong
):
    rewrite_metadata(trained, setting("architecture.sizes", sizes))
    with pytest.raises(
        CheckpointError,
        match=re.escape(f"{trained}: {wrong}, but the architecture's sizes {sizes}"),
    ):
        load_network(trained)


def npy_bytes(array, version=None):
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version, allow_pickle=False)
    return buffer.getvalue()


def test_an_array_with_a_version_2_header_is_read(trained):
    W1 = load_network(trained)[0].params["W1"]
    rezip(trained, **{"W1.npy": npy_bytes(to_numpy(W1), version=(2, 0))})
    np.testing.assert_array_equal(to_numpy(load_network(trained)[0].params["W1"]), to_numpy(W1))


def test_an_array_with_bytes_beyond_its_shape_is_refused(trained):
    # W1 (4, 3) float32 is 48 bytes; 4 more follow it
    W1 = to_numpy(load_network(trained)[0].params["W1"])
    rezip(trained, **{"W1.npy": npy_bytes(W1) + bytes(4)})
    message = f"{trained}: array 'W1' of shape (4, 3) and dtype float32 needs 48 bytes; the file "
    message += "holds 52"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_network(trained)


def test_read_metadata_reads_no_array(trained):
    # It reads the metadata member alone, so a broken array does not stop it (xpnet train
    # --resume reads the metadata, then the whole file once, to load it).
    rezip(trained, **{"W1.npy": b"not an array"})
    assert read_metadata(trained)["epoch"] == 1
    with pytest.raises(CheckpointError, match="array 'W1' is not a NumPy array"):
        load_params(trained, MultiLayerNet(4, [3], 2, seed=1))


def test_two_arrays_of_one_name_are_refused(trained):
    import zipfile

    W1 = to_numpy(load_network(trained)[0].params["W1"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
        with zipfile.ZipFile(trained, "a") as z:
            z.writestr("W1.npy", npy_bytes(np.zeros_like(W1)))
    message = f"{trained}: the archive holds two arrays named 'W1'"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_network(trained)


def test_a_compressed_checkpoint_is_read(trained):
    import zipfile

    with zipfile.ZipFile(trained) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(trained, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    net, meta = load_network(trained)
    with np.load(trained) as data:
        for name in ("W1", "b1", "W2", "b2"):
            np.testing.assert_array_equal(to_numpy(net.params[name]), data[name])
    assert meta["epoch"] == 1


def patched_zip(path, local, central):
    """Set the 2-byte fields at offsets ``local`` and ``central`` of every member's local
    and central-directory headers (flag bits: 6 and 8; compression method: 8 and 10)."""
    data = bytearray(path.read_bytes())
    for signature, offset, value in ((b"PK\x03\x04", *local), (b"PK\x01\x02", *central)):
        start = data.find(signature)
        while start != -1:
            data[start + offset : start + offset + 2] = value.to_bytes(2, "little")
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("local", "central"),
    [((6, 1), (8, 1)), ((8, 99), (10, 99))],
    ids=["encrypted", "unknown-compression"],
)
def test_an_unreadable_member_is_a_checkpoint_error(trained, local, central):
    patched_zip(trained, local, central)
    message = f"cannot read {trained} as an xpnet checkpoint (.npz)"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_network(trained)


def test_architecture_sizes_that_need_a_weight_the_file_lacks_are_refused(trained):
    rewrite_metadata(trained, setting("architecture.sizes", [4, 3, 2, 2]))
    with pytest.raises(
        CheckpointError,
        match=re.escape(f"{trained}: W3 is missing from the file, but the architecture's "
                        "sizes [4, 3, 2, 2] need it"),
    ):  # fmt: skip
        load_network(trained)


def dropout_net(xp, seed=0):
    """A MultiLayerNet whose layers[2] is a Dropout drawing with its own generator."""
    return MultiLayerNet(6, [5], 4, use_dropout=True, dtype="float64", seed=seed, xp=xp)


def masks(net, x, n=3):
    """The Dropout masks of ``n`` training passes of ``net`` on ``x``."""
    drawn = []
    for _ in range(n):
        net.predict(x, train_flg=True)
        drawn.append(to_numpy(net.layers[2].mask).copy())
    return drawn


@pytest.mark.parametrize("load", ["load_params", "load_network"])
def test_a_dropout_network_draws_on_after_loading(xp, tmp_path, load):
    if is_cupy_namespace(xp):
        pytest.skip(CUPY_GENERATORS_NOT_SAVED)
    saved = dropout_net(xp)
    x = to_device(np.ones((8, 6)), dtype="float64", xp=xp)
    masks(saved, x)  # its generator has moved on from the seed
    path = save_params(tmp_path / "p.npz", saved)
    following = masks(saved, x)
    if load == "load_params":
        loaded = dropout_net(xp)
        masks(loaded, x, 5)  # elsewhere in its sequence: loading moves it
        load_params(path, loaded)
    else:
        loaded, _ = load_network(path, xp=xp)
    for got, expected in zip(masks(loaded, x), following, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_a_loaded_generator_state_is_saved_again_before_any_draw(xp, tmp_path):
    # a resumed run that trains no further (xpnet train at its target) still saves it
    if is_cupy_namespace(xp):
        pytest.skip(CUPY_GENERATORS_NOT_SAVED)
    saved = dropout_net(xp)
    x = to_device(np.ones((8, 6)), dtype="float64", xp=xp)
    masks(saved, x)
    first = save_params(tmp_path / "first.npz", saved)
    loaded, _ = load_network(first, xp=xp)
    again, _ = load_network(save_params(tmp_path / "again.npz", loaded), xp=xp)
    for got, expected in zip(masks(again, x), masks(saved, x), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_a_checkpoint_without_generator_states_leaves_the_generators_as_they_are(tmp_path):
    # as files written before xpnet saved them: loading changes no layer's draws
    x = np.ones((8, 6))
    path = save_params(tmp_path / "p.npz", dropout_net(np))
    rewrite_metadata(path, without("generators"))
    net, twin = dropout_net(np), dropout_net(np)
    masks(net, x)
    masks(twin, x)
    load_params(path, net)
    for got, expected in zip(masks(net, x), masks(twin, x), strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"numpy/host": {"bit_generator": "MT19937"}}, "'numpy/host' is not a NumPy PCG64 state"),
        ({"cupy/0": {}}, "'cupy/0' is not one DeviceRNG saves"),
        ({"torch/cpu": "not hex"}, "'torch/cpu' is not one DeviceRNG saves"),
        pytest.param(
            {"torch/cpu": "00ff"},
            "'torch/cpu' does not fit a torch.Generator on cpu",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("torch") is None,
                reason="a PyTorch generator state is checked where PyTorch is installed",
            ),
        ),
    ],
)
def test_a_malformed_generator_state_is_refused_naming_the_layer(tmp_path, state, message):
    net = dropout_net(np)
    path = save_params(tmp_path / "p.npz", net)
    rewrite_metadata(path, setting("generators", {"3": state}))
    before = host_params(net)
    expected = rf"p\.npz: layers\[2\]: random generator state {message}"
    with pytest.raises(CheckpointError, match=expected):
        load_params(path, net)
    for name, value in before.items():  # nothing loaded
        np.testing.assert_array_equal(to_numpy(net.params[name]), value)


# --------------------------------------------------------------------------- damaged files


def without_arrays(path, *names):
    """Rewrite checkpoint ``path`` without the arrays ``names``."""
    with np.load(path, allow_pickle=False) as data:
        kept = {k: data[k] for k in data.files if k not in names}
    np.savez(path, **kept)


def assert_unchanged_params(net, before):
    for name, value in before.items():
        np.testing.assert_array_equal(to_numpy(net.params[name]), value)


def test_optimizer_state_missing_from_one_buffer_is_refused_and_changes_nothing(tmp_path):
    # Adam started W1's first moment afresh, without a word, beside its saved second moment.
    net, opt = MultiLayerNet(4, [3], 2, seed=0), Adam(0.01)
    opt.update(net.params, net.gradient(np.ones((2, 4), np.float32), np.array([0, 1])))
    path = save_params(tmp_path / "p.npz", net, optimizer=opt)
    without_arrays(path, "optimizer/m/W1")
    other, other_opt = MultiLayerNet(4, [3], 2, seed=1), Adam(0.01)
    before = host_params(other)
    with pytest.raises(ValueError) as info:
        load_params(path, other, optimizer=other_opt)
    assert str(info.value) == (
        f"{path}: optimizer state 'm' is missing for W1, whose other state the file holds; "
        "adam keeps 'm', 'v' for every parameter it has updated"
    )
    assert_unchanged_params(other, before)
    assert other_opt.state_dict()["iterations"] == 0


def test_a_checkpoint_cut_short_is_named_as_such(trained):
    # It read "not an .npz archive", as for any file of another kind.
    trained.write_bytes(trained.read_bytes()[:-1])
    with pytest.raises(CheckpointError) as info:
        read_metadata(trained)
    assert str(info.value) == (
        f"{trained} is not an xpnet checkpoint (an .npz archive cut short: it begins as one, "
        "but its end is missing)"
    )


def test_an_empty_checkpoint_file_is_named_as_such(tmp_path):
    (tmp_path / "p.npz").write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        read_metadata(tmp_path / "p.npz")
    assert str(info.value) == f"{tmp_path / 'p.npz'} is not an xpnet checkpoint (an empty file)"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_named_as_a_checkpoint_is_refused_without_reading_it(tmp_path):
    # It said the pipe "does not exist".
    os.mkfifo(tmp_path / "p.npz")
    with pytest.raises(CheckpointError, match=r"checkpoint .*p\.npz is not a file: a pipe"):
        load_network(tmp_path / "p.npz")


def test_a_checkpoint_in_a_folder_the_user_cannot_search_is_a_permission_error(tmp_path):
    # It was a FileNotFoundError: "... is not a file: not found (Permission denied)".
    (tmp_path / "private").mkdir(mode=0o700)
    path = save_params(tmp_path / "private" / "p.npz", {"w": np.zeros(1)})
    said = raised_as_nobody(read_metadata, path)
    assert said.startswith("PermissionError: ")
    assert f"'{path}'" in said


def test_a_broken_link_as_a_checkpoint_names_its_target(tmp_path):
    (tmp_path / "p.npz").symlink_to(tmp_path / "runs" / "gone.npz")
    with pytest.raises(FileNotFoundError) as info:
        read_metadata(tmp_path / "p.npz")
    assert str(info.value) == (
        f"checkpoint {tmp_path / 'p.npz'} is not a file: a broken link to "
        f"{tmp_path / 'runs' / 'gone.npz'}"
    )


def test_the_checkpoint_module_is_part_of_xpnets_public_names():
    """The docs call ``xpnet.checkpoint.save_params`` and ``load_network``."""
    names: dict = {}
    exec("from xpnet import *", names)
    assert names["checkpoint"].save_params is save_params


@pytest.mark.parametrize("call", ["save_params", "load_params", "load_network", "read_metadata"])
def test_a_file_object_for_a_path_is_named_with_what_to_do(call):
    # save_params(io.BytesIO(), net) said only "expected str, bytes or os.PathLike object".
    net = MultiLayerNet(3, [2], 2, seed=0)
    args = {"save_params": (net,), "load_params": (net,)}.get(call, ())
    with pytest.raises(TypeError, match=r"must be a file name .*got BytesIO.*copy\.deepcopy"):
        globals()[call](io.BytesIO(), *args)
