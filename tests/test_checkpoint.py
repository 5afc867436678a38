"""Checkpoints: round trips on every backend, exact mismatch messages, atomic writes,
no pickle, architecture and optimizer state for resuming."""

import json

import numpy as np
import pytest

from xpnet import MultiLayerNet
from xpnet.backend import to_device, to_numpy
from xpnet.checkpoint import (
    METADATA_KEY,
    load_network,
    load_params,
    read_metadata,
    save_params,
)
from xpnet.files import atomic_file
from xpnet.optim import SGD, Adam


def host_params(net):
    return {k: to_numpy(v).copy() for k, v in net.params.items()}


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


def test_the_file_is_plain_npz_with_json_metadata(tmp_path):
    net = MultiLayerNet(3, [2], 2, seed=0, dtype="float64")
    path = save_params(tmp_path / "p.npz", net, {"note": "héllo"})
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"W1", "b1", "W2", "b2", METADATA_KEY}
        assert data[METADATA_KEY].dtype == np.uint8
        meta = json.loads(data[METADATA_KEY].tobytes().decode("utf-8"))
    assert meta["note"] == "héllo" and meta["architecture"]["dtype"] == "float64"
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


def test_optimizer_state_round_trip_continues_identically(cpu_xp, tmp_path):
    rng = np.random.default_rng(0)
    x = to_device(rng.standard_normal((8, 4)), dtype="float32", xp=cpu_xp)
    t = to_device(rng.integers(0, 2, 8), dtype="int64", xp=cpu_xp)
    net, opt = MultiLayerNet(4, [3], 2, seed=0, xp=cpu_xp), Adam(lr=0.01)
    for _ in range(3):
        opt.update(net.params, net.gradient(x, t))
    path = save_params(tmp_path / "p.npz", net, {"epoch": 3}, optimizer=opt)
    assert read_metadata(path)["optimizer"] == {
        "name": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "iterations": 3
    }  # fmt: skip

    net2, opt2 = MultiLayerNet(4, [3], 2, seed=5, xp=cpu_xp), Adam(lr=0.01)
    load_params(path, net2, optimizer=opt2)
    assert opt2.iterations == 3
    opt.update(net.params, net.gradient(x, t))
    opt2.update(net2.params, net2.gradient(x, t))
    for k in net.params:
        np.testing.assert_array_equal(to_numpy(net.params[k]), to_numpy(net2.params[k]))

    with pytest.raises(ValueError, match="state for optimizer 'adam', not 'sgd'"):
        load_params(path, net2, optimizer=SGD())
