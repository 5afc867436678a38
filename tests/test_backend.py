"""The backend: device selection, moving arrays, seeded weights, mixed-backend errors."""

import importlib.util
import platform
import re
import sys
import types

import numpy as np
import pytest

from xpnet import backend


@pytest.mark.parametrize(
    ("value", "expected"),
    [("cpu", "cpu"), ("CPU", "cpu"), ("cuda", "cuda:0"), ("cuda:1", "cuda:1")],
)
def test_parse_device_accepts_cpu_cuda_and_cuda_n(value, expected):
    assert str(backend.parse_device(value)) == expected


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "tpu", ""])
def test_unknown_device_names_the_valid_ones(value):
    with pytest.raises(ValueError, match=r"cpu, cuda, cuda:N") as info:
        backend.parse_device(value)
    assert repr(value) in str(info.value)


def test_device_is_read_from_the_environment_when_called(monkeypatch):
    monkeypatch.setenv("XPNET_DEVICE", "cpu")
    assert str(backend.parse_device()) == "cpu"
    monkeypatch.setenv("XPNET_DEVICE", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        backend.namespace()


def test_an_empty_device_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv("XPNET_DEVICE", "")
    assert str(backend.parse_device()) == "cpu"
    assert isinstance(backend.to_device([1.0, 2.0]), np.ndarray)


def test_default_device_is_cpu_numpy(monkeypatch):
    monkeypatch.delenv("XPNET_DEVICE", raising=False)
    x = backend.to_device([1.0, 2.0])
    assert isinstance(x, np.ndarray)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_cuda_without_cupy_says_how_to_install(monkeypatch):
    monkeypatch.setenv("XPNET_DEVICE", "cuda")
    with pytest.raises(
        backend.BackendUnavailableError, match=r"pip install cupy-cuda12x \(CUDA 12\)"
    ):
        backend.namespace()


class _RecordingDevice:
    """A CUDA device as CuPy shows it, counting its ``synchronize()`` calls."""

    def __init__(self) -> None:
        self.synchronized = 0

    def synchronize(self) -> None:
        self.synchronized += 1


def _cupy_with_recording_gpus(monkeypatch, gpus):
    """A stand-in for CuPy on a machine with ``gpus`` GPUs; returns (its ndarray, the devices)."""
    devices = [_RecordingDevice() for _ in range(gpus)]

    class ndarray:  # the name array-api-compat looks for in ``cupy``
        def __init__(self, device):
            self.device = device

    cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: gpus), Device=devices.__getitem__
    )
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(ndarray=ndarray, cuda=cuda))
    return ndarray, devices


@pytest.mark.parametrize(
    ("gpus", "message"),
    [
        (0, r"has 0 CUDA GPU\(s\); use XPNET_DEVICE=cpu"),
        (2, r"has 2 CUDA GPU\(s\) \(cuda:0 to cuda:1\)"),
    ],
)
def test_a_gpu_index_past_the_last_gpu_says_which_exist(monkeypatch, gpus, message):
    # Only the device count is read before the error.
    _cupy_with_recording_gpus(monkeypatch, gpus)
    monkeypatch.setenv("XPNET_DEVICE", "cuda:2")
    with pytest.raises(
        backend.BackendUnavailableError, match=rf"'cuda:2' does not exist: .*{message}"
    ):
        backend.namespace()


def test_to_device_and_to_numpy_round_trip(xp):
    host = np.arange(6, dtype=np.float64).reshape(2, 3)
    x = backend.to_device(host, dtype="float64", xp=xp)
    assert backend.namespace_of(x) is backend.namespace_of(xp.asarray(0.0))
    np.testing.assert_array_equal(backend.to_numpy(x), host)


def test_to_numpy_reads_a_read_only_array(xp):
    # A broadcast is a read-only view, which NumPy before 2.1 cannot export by DLPack.
    x = xp.broadcast_to(backend.to_device([1.5, -2.0], dtype="float64", xp=xp), (3, 2))
    np.testing.assert_array_equal(backend.to_numpy(x), [[1.5, -2.0]] * 3)


@pytest.mark.parametrize("dtype", [None, "float32", "float64"])
def test_to_device_takes_host_data_in_either_byte_order(xp, dtype):
    # Big-endian arrays come from files (.npy written on such a machine, np.frombuffer of
    # '>f4' data): NumPy takes them, PyTorch refused them ("byte order different from the
    # native byte order"), array_api_strict without a dtype too.
    host = np.arange(6, dtype=">f4").reshape(2, 3)
    x = backend.to_device(host, dtype=dtype, xp=xp)
    assert backend.dtype_name(x) == (dtype or "float32")
    np.testing.assert_array_equal(backend.to_numpy(x), host)
    like = backend.to_device(np.zeros(3), dtype="float64", xp=xp)
    np.testing.assert_array_equal(backend.to_numpy(backend.to_like(host[0], like)), host[0])


@pytest.mark.parametrize("host", [np.asarray(2.2), np.float64(2.2), np.asarray([2.2])])
def test_to_device_converts_a_0d_host_value_to_the_dtype_asked(xp, host):
    # PyTorch's asarray(0-D float64 array, dtype=float32, copy=True) raised "can't alias
    # tensor with dtype 'Double' into dtype 'Float'"; a 1-D one converted.
    x = backend.to_device(host, dtype="float32", xp=xp)
    assert backend.dtype_name(x) == "float32"
    assert x.shape == np.shape(host)
    np.testing.assert_array_equal(backend.to_numpy(x), np.asarray(host, dtype=np.float32))


@pytest.mark.parametrize("value", [2.2, 1 / 3])
def test_to_device_keeps_every_digit_of_a_python_float_asked_for_in_float64(xp, value):
    x = backend.to_device(value, dtype="float64", xp=xp)
    assert backend.to_numpy(x)[()] == value


def test_random_normal_gives_the_same_values_on_every_backend(xp):
    reference = backend.random_normal((4, 3), std=0.5, rng=7, dtype="float64", xp=None)
    here = backend.random_normal((4, 3), std=0.5, rng=7, dtype="float64", xp=xp)
    np.testing.assert_array_equal(backend.to_numpy(here), backend.to_numpy(reference))


def test_random_normal_honours_dtype(xp):
    x = backend.random_normal((2, 2), rng=0, dtype="float32", xp=xp)
    assert x.dtype == xp.float32


@pytest.mark.parametrize("std", [-1.0, float("nan"), float("inf"), True, "0.1"])
def test_random_normal_needs_a_finite_std_from_0(std):
    with pytest.raises(ValueError, match=f"std must be a finite number >= 0, got {std!r}"):
        backend.random_normal((2, 2), std=std, rng=0)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_host_rng_needs_an_integer_seed_from_0(seed):
    with pytest.raises(ValueError, match=f"seed must be an integer >= 0 or None, got {seed!r}"):
        backend.host_rng(seed)


@pytest.mark.parametrize("rng", [-1, 1.5, "0", np.random.RandomState(0)])
def test_random_normal_names_its_rng_argument_and_what_it_takes(rng):
    with pytest.raises(
        ValueError, match=r"rng must be a seed \(an integer >= 0\), a numpy\.random\.Generator"
    ):
        backend.random_normal((2, 2), rng=rng)


def test_random_normal_draws_from_a_given_generator_where_it_left_off():
    gen = np.random.default_rng(3)
    first, second = (
        backend.random_normal((2,), rng=gen, dtype="float64", device="cpu") for _ in "12"
    )
    np.testing.assert_array_equal(
        np.concatenate([first, second]), np.random.default_rng(3).standard_normal(4)
    )


def test_mixing_backends_in_one_call_is_a_clear_error():
    strict = pytest.importorskip("array_api_strict")
    a = backend.to_device([1.0], xp=strict)
    b = np.ones(1)
    with pytest.raises(backend.BackendMismatchError, match="different backends"):
        backend.namespace_of(a, b)


@pytest.mark.parametrize("other", [[1.0], (1.0,), "1.0"], ids=["list", "tuple", "str"])
def test_a_non_array_in_a_call_is_named_instead_of_a_backend_mix(other):
    kind = type(other).__name__
    with pytest.raises(TypeError, match=f"expected arrays, got {kind}: convert with") as info:
        backend.namespace_of(np.ones(1), other)
    assert not isinstance(info.value, backend.BackendMismatchError)


def test_mixing_devices_in_one_call_is_a_clear_error_every_time():
    strict = pytest.importorskip("array_api_strict")
    a = strict.asarray([1.0])
    b = strict.asarray([1.0], device=strict.Device("device1"))
    assert backend.namespace_of(a, a) is strict  # the namespace is cached per type ...
    for _ in range(2):  # ... but devices are compared on every call
        with pytest.raises(backend.BackendMismatchError, match="different devices"):
            backend.namespace_of(a, b)


def test_a_mixed_call_fails_after_a_cached_single_backend_call():
    strict = pytest.importorskip("array_api_strict")
    a = strict.asarray([1.0])
    backend.namespace_of(a)
    backend.namespace_of(np.ones(1))
    with pytest.raises(backend.BackendMismatchError, match="different backends"):
        backend.namespace_of(np.ones(1), a)


def test_to_device_with_xp_puts_the_array_on_that_namespaces_device():
    strict = pytest.importorskip("array_api_strict")
    device1 = strict.Device("device1")
    x = backend.to_device([1.0, 2.0], dtype="float32", device=device1, xp=strict)
    assert x.device == device1


def test_to_device_refuses_a_device_numpy_does_not_have():
    with pytest.raises(ValueError, match="NumPy arrays live on the host: device 'cuda:1'"):
        backend.to_device([1.0], device="cuda:1", xp=backend.namespace("cpu"))


def test_a_device_object_without_its_namespace_names_xp():
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match=r"Device\('device1'\).*pass its namespace as xp="):
        backend.to_device([1.0], device=strict.Device("device1"))


@pytest.mark.parametrize("given", ["torch", "numpy", 3])
def test_to_device_refuses_an_xp_that_is_not_a_namespace_naming_it(given):
    with pytest.raises(
        TypeError, match="xp must be an array namespace such as numpy or torch"
    ) as info:
        backend.to_device([1.0], dtype="float32", xp=given)
    assert f"got {type(given).__name__} {given!r}" in str(info.value)


@pytest.mark.parametrize("device", ["gpu", "garbage", "CPU"])
def test_to_device_refuses_a_name_that_is_no_torch_device_as_the_device_argument(device):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    with pytest.raises(ValueError, match="is not a PyTorch device: expected 'cpu', 'cuda'") as info:
        backend.to_device([1.0], device=device, xp=torch)
    assert str(info.value).startswith(f"device={device!r} ")
    assert isinstance(info.value.__cause__, RuntimeError)  # torch's own, kept as the cause


def test_a_torch_device_name_in_capitals_is_refused_with_its_lower_case_name():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    with pytest.raises(ValueError, match=r"names are lower case: 'cuda:0'"):
        backend.to_device([1.0], device="CUDA:0", xp=torch)


def test_to_device_refuses_a_torch_gpu_this_machine_lacks_naming_it():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = f"cuda:{count}"  # one past the last GPU: none on a CPU build
    why = "torch has no CUDA device here" if count == 0 else f"torch sees {count} CUDA device"
    with pytest.raises(backend.BackendUnavailableError, match=why) as info:
        backend.to_device([1.0], device=device, xp=torch)
    assert f"device={device!r}" in str(info.value)


def test_to_device_refuses_torchs_meta_device_which_holds_no_data():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    with pytest.raises(ValueError, match="device 'meta' holds no data; xpnet computes with"):
        backend.to_device([1.0], device="meta", xp=torch)


def test_to_device_puts_tensors_on_a_torch_device_given_by_name_or_object():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    for device in ("cpu", torch.device("cpu")):
        assert backend.to_device([1.0], device=device, xp=torch).device == torch.device("cpu")


def test_a_cuda_device_without_cupy_names_the_value_given(monkeypatch):
    monkeypatch.setenv("XPNET_DEVICE", "cuda:1")
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    with pytest.raises(backend.BackendUnavailableError, match="device 'cuda:1' needs CuPy"):
        backend.to_device([1.0])


def test_to_device_always_copies(xp):
    host = np.array([1.0, 2.0])
    x = backend.to_device(host, dtype="float64", xp=xp)
    x += 1.0  # as an optimizer trains a parameter in place
    assert host.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("shape", [(784, 50), (50,), (3, 1, 28, 28), ()])
def test_to_device_aligns_numpy_arrays_to_a_cache_line(shape):
    host = np.random.default_rng(0).standard_normal(shape)
    x = backend.to_device(host, dtype="float32", device="cpu")
    assert x.ctypes.data % backend.ALIGNMENT == 0
    assert x.shape == shape and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(x, host.astype(np.float32))


def test_to_device_keeps_an_empty_shape():
    assert backend.to_device(np.zeros((0, 784)), dtype="float32", device="cpu").shape == (0, 784)


def test_python_scalars_do_not_count_as_a_backend():
    x = np.ones(2)
    assert backend.namespace_of(x, 2.0, None) is backend.namespace_of(x)


def test_synchronize_returns_on_synchronous_backends(xp):
    backend.synchronize(backend.to_device([1.0], xp=xp))
    backend.synchronize()


def test_synchronize_waits_for_the_device_of_each_cupy_array(monkeypatch):
    ndarray, devices = _cupy_with_recording_gpus(monkeypatch, gpus=3)
    backend.synchronize(ndarray(devices[0]), ndarray(devices[2]))
    assert [d.synchronized for d in devices] == [1, 0, 1]


def test_synchronize_without_arrays_waits_for_the_selected_gpu(monkeypatch):
    _, devices = _cupy_with_recording_gpus(monkeypatch, gpus=2)
    monkeypatch.setenv("XPNET_DEVICE", "cuda:1")
    backend.synchronize()
    assert [d.synchronized for d in devices] == [0, 1]


def test_synchronize_waits_for_cuda_torch_tensors_only(monkeypatch):
    # PyTorch as it shows a CUDA and a CPU tensor; torch.cuda.synchronize records its device.
    class Tensor:
        def __init__(self, device):
            self.device, self.is_cuda = device, device.startswith("cuda")

    synchronized = []
    torch = types.SimpleNamespace(
        Tensor=Tensor, cuda=types.SimpleNamespace(synchronize=synchronized.append)
    )
    monkeypatch.setitem(sys.modules, "torch", torch)
    backend.synchronize(Tensor("cpu"), Tensor("cuda:1"))
    assert synchronized == ["cuda:1"]


@pytest.mark.gpu
@pytest.mark.parametrize("pass_array", [True, False], ids=["the array's GPU", "the selected GPU"])
def test_synchronize_returns_after_queued_cupy_work_has_finished(monkeypatch, pass_array):
    try:
        xp = backend.namespace("cuda")
    except backend.BackendUnavailableError as exc:
        pytest.skip(f"needs a CUDA GPU with CuPy: {exc}")
    import cupy

    monkeypatch.setenv("XPNET_DEVICE", "cuda")
    x = backend.to_device(np.full((4096, 4096), 1e-4), dtype="float32", xp=xp)
    y = x
    for _ in range(20):  # tens of milliseconds of queued matrix products
        y = y @ x
    stream = cupy.cuda.get_current_stream()
    backend.synchronize(*([y] if pass_array else []))
    assert stream.done


def test_describe_reports_versions_and_device(monkeypatch):
    monkeypatch.setenv("XPNET_DEVICE", "cpu")
    info = backend.describe()
    assert info["device"] == "cpu"
    assert info["numpy"] == np.__version__


def test_describe_names_the_cpu_model_and_the_widest_simd_extension_numpy_uses():
    cpu = backend.describe()["cpu"]
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line for line in info if line.startswith("model name"))
    except (OSError, StopIteration):  # not Linux, or a CPU without a model name there
        model = ":"
    assert model.partition(":")[2].strip() in cpu
    assert re.search(r", NumPy SIMD (\w+)$", cpu), cpu


def test_cpu_falls_back_to_what_python_knows_without_proc_cpuinfo(monkeypatch):
    def missing(path, *args, **kwargs):
        raise FileNotFoundError(path)

    monkeypatch.setattr(backend, "open", missing, raising=False)
    name = platform.processor() or platform.machine() or "unknown CPU"
    assert backend.cpu().startswith(f"{name}, NumPy SIMD ")


def test_describe_says_a_cuda_device_without_cupy_is_unavailable_and_why(monkeypatch):
    monkeypatch.setenv("XPNET_DEVICE", "cuda")
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    info = backend.describe()
    assert info["device"].startswith(
        "cuda:0 unavailable (device 'cuda' needs CuPy, which is not installed: "
    )
    assert info["cupy"] == "not installed"


@pytest.mark.parametrize("reduce", ["sum", "max"])
@pytest.mark.parametrize(
    ("axis", "keepdims"), [(None, False), (0, False), (-1, True), ((0, 1), False)]
)
def test_reduce_sum_and_max_are_the_namespaces_own(xp, reduce, axis, keepdims):
    host = np.array([[0.5, -2.0, 3.0], [1.5, 4.0, -1.0]], dtype=np.float32)
    x = backend.to_device(host, dtype="float32", xp=xp)
    ours = getattr(backend, f"reduce_{reduce}")(x, axis, keepdims=keepdims)
    theirs = getattr(xp, reduce)(x, axis=axis, keepdims=keepdims)
    assert ours.dtype == theirs.dtype == x.dtype
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_array_equal(backend.to_numpy(ours), backend.to_numpy(theirs))
    expected = getattr(np, reduce)(host, axis=axis, keepdims=keepdims)
    np.testing.assert_array_equal(backend.to_numpy(ours), expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_positive_part_is_the_namespaces_maximum_with_zero(xp, dtype):
    host = np.array([[-2.5, 0.0, 3.0, np.nan], [np.inf, -np.inf, 1e-30, -1e-30]])
    x = backend.to_device(host, dtype=dtype, xp=xp)
    ours = backend.positive_part(x)
    theirs = xp.maximum(x, 0.0)
    assert type(ours) is type(theirs) and ours.dtype == theirs.dtype == x.dtype
    np.testing.assert_array_equal(backend.to_numpy(ours), backend.to_numpy(theirs))
    np.testing.assert_array_equal(backend.to_numpy(ours), np.maximum(host, 0.0).astype(dtype))


@pytest.mark.parametrize("axis", [0, 1])
def test_take_is_the_namespaces_own(xp, axis):
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = backend.to_device(host, dtype="float32", xp=xp)
    indices = backend.to_device([2, 0, 2], dtype="int64", xp=xp)
    ours = backend.take(x, indices, axis=axis)
    theirs = xp.take(x, indices, axis=axis)
    assert type(ours) is type(theirs) and ours.dtype == theirs.dtype
    np.testing.assert_array_equal(backend.to_numpy(ours), backend.to_numpy(theirs))
    np.testing.assert_array_equal(backend.to_numpy(ours), np.take(host, [2, 0, 2], axis=axis))


def test_namespace_of_needs_an_array():
    with pytest.raises(TypeError, match="at least one array"):
        backend.namespace_of(1.0, None)


def test_blas_threads_limits_the_host_blas_inside_the_block_only():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads_now():
        pools = threadpoolctl.threadpool_info()
        return {pool["num_threads"] for pool in pools if pool["user_api"] == "blas"}

    before = blas_threads_now()
    if not before:
        pytest.skip("NumPy reports no BLAS thread pool here")
    with backend.blas_threads(1):
        assert blas_threads_now() == {1}
    assert blas_threads_now() == before


def test_parse_device_ignores_surrounding_whitespace():
    assert str(backend.parse_device(" cuda:1\n")) == "cuda:1"


def test_unknown_device_quotes_the_value_as_given():
    with pytest.raises(ValueError) as info:
        backend.parse_device(" GPU ")
    assert repr(" GPU ") in str(info.value)


def test_selected_cpu_is_numpy_on_the_cpu_device():
    xp, device = backend.selected("cpu")
    assert xp is backend.namespace_of(np.ones(1))
    assert device == "cpu"


def test_a_cuda_driver_error_says_cuda_reports_no_gpu(monkeypatch):
    _cupy_with_recording_gpus(monkeypatch, gpus=1)

    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver")

    monkeypatch.setattr(sys.modules["cupy"].cuda.runtime, "getDeviceCount", no_driver)
    with pytest.raises(
        backend.BackendUnavailableError, match=r"'cuda:0' needs a CUDA GPU.*InsufficientDriver"
    ):
        backend.namespace("cuda")


def test_mixing_backends_names_both_array_types():
    strict = pytest.importorskip("array_api_strict")
    a = strict.asarray([1.0])
    with pytest.raises(backend.BackendMismatchError) as info:
        backend.namespace_of(a, np.ones(1))
    message = str(info.value)
    assert f"{type(a).__module__}.{type(a).__qualname__}" in message
    assert "numpy.ndarray" in message


def test_mixing_devices_names_every_device():
    strict = pytest.importorskip("array_api_strict")
    a = strict.asarray([1.0])
    b = strict.asarray([1.0], device=strict.Device("device1"))
    with pytest.raises(backend.BackendMismatchError) as info:
        backend.namespace_of(a, b)
    assert str(a.device) in str(info.value) and str(b.device) in str(info.value)


def test_a_device_mix_in_the_middle_of_three_arrays_is_an_error():
    strict = pytest.importorskip("array_api_strict")
    a = strict.asarray([1.0])
    b = strict.asarray([1.0], device=strict.Device("device1"))
    with pytest.raises(backend.BackendMismatchError, match="different devices"):
        backend.namespace_of(a, b, a)


def test_a_device_mix_around_none_and_scalars_is_an_error():
    strict = pytest.importorskip("array_api_strict")
    a = strict.asarray([1.0])
    b = strict.asarray([1.0], device=strict.Device("device1"))
    with pytest.raises(backend.BackendMismatchError, match="different devices"):
        backend.namespace_of(2.0, a, None, b)


def test_device_rng_draws_on_the_device_of_a_fallback_array():
    strict = pytest.importorskip("array_api_strict")
    like = strict.asarray([0.0], device=strict.Device("device1"))
    u = backend.DeviceRNG(0).uniform((2, 3), like=like)
    assert u.device == like.device


def test_blas_threads_sets_the_given_count_not_only_one():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads_now():
        pools = threadpoolctl.threadpool_info()
        return {pool["num_threads"] for pool in pools if pool["user_api"] == "blas"}

    if not blas_threads_now() or max(blas_threads_now()) < 2:
        pytest.skip("NumPy's BLAS runs fewer than 2 threads here")
    with backend.blas_threads(1), backend.blas_threads(2):
        assert blas_threads_now() == {2}


def test_synchronize_with_arrays_leaves_the_selected_gpu_alone(monkeypatch):
    ndarray, devices = _cupy_with_recording_gpus(monkeypatch, gpus=2)
    monkeypatch.setenv("XPNET_DEVICE", "cuda:1")
    backend.synchronize(ndarray(devices[0]))
    assert [d.synchronized for d in devices] == [1, 0]


def test_to_numpy_reads_an_array_from_another_array_api_strict_device():
    strict = pytest.importorskip("array_api_strict")
    x = strict.asarray([1.5, -2.0], device=strict.Device("device1"))
    np.testing.assert_array_equal(backend.to_numpy(x), [1.5, -2.0])


@pytest.mark.parametrize("value", ["cuda:\u00b2", "cuda:\u0661"])  # superscript 2, Arabic-Indic 1
def test_a_gpu_index_in_other_than_ascii_digits_is_an_unknown_device(value):
    with pytest.raises(ValueError, match=r"unknown device .*expected one of cpu, cuda"):
        backend.parse_device(value)


def test_an_unseeded_device_rng_leaves_torchs_global_generator_alone():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    backend.DeviceRNG(None).uniform((1,), like=torch.zeros(1))
    assert torch.equal(torch.rand(3), expected)


def test_a_torch_cpu_generator_state_of_another_size_is_refused_on_loading():
    pytest.importorskip("torch")
    rng = backend.DeviceRNG(0)
    expected = r"state 'torch/cpu' does not fit a torch\.Generator on cpu"
    with pytest.raises(ValueError, match=expected):
        rng.load_state_dict({"torch/cpu": "00ff"})


def test_a_torch_generator_state_loads_where_pytorch_is_not_installed(monkeypatch):
    # A checkpoint from a PyTorch network with Dropout loads into a NumPy one anywhere.
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    rng = backend.DeviceRNG(0)
    rng.load_state_dict({"torch/cpu": "00ff"})
    assert rng.state_dict() == {"torch/cpu": "00ff"}  # kept, and saved again as it was


def test_fallback_float32_draws_stay_below_one():
    # Seed 0's float64 draw number 14,817,372 is 0.99999999842, which rounds to 1.0 in float32.
    strict = pytest.importorskip("array_api_strict")
    u = backend.DeviceRNG(0).uniform(
        (14_817_373,), like=strict.asarray([0.0], dtype=strict.float32)
    )
    assert float(strict.max(u)) < 1.0


@pytest.mark.parametrize("name", ["float", "int", "double", "asarray"])
def test_to_device_names_the_valid_dtype_names_for_an_unknown_one(xp, name):
    with pytest.raises(ValueError, match=rf"unknown dtype '{name}': expected one of float32, "):
        backend.to_device([1.5], dtype=name, xp=xp)


@pytest.mark.parametrize("n", [0, -1])
def test_blas_threads_needs_at_least_one_thread(n):
    with (
        pytest.raises(ValueError, match=rf"integer number of threads >= 1, got {n}"),
        backend.blas_threads(n),
    ):
        pass


@pytest.mark.parametrize("n", [True, 2.0, "2", None])
def test_blas_threads_needs_an_integer(n):
    with (
        pytest.raises(TypeError, match=rf"integer number of threads >= 1, got {n!r}"),
        backend.blas_threads(n),
    ):
        pass


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_a_device_rng_checks_its_seed_when_made(seed):
    with pytest.raises(ValueError, match=rf"seed must be an integer >= 0 or None, got {seed!r}"):
        backend.DeviceRNG(seed)


def test_a_device_rng_takes_an_int_shape_for_one_dimension(xp):
    like = backend.to_device([0.0], dtype="float32", xp=xp)
    u = backend.DeviceRNG(0).uniform(5, like=like)
    assert tuple(u.shape) == (5,)


def test_numpy_float16_draws_stay_below_one():
    # About one float32 draw in 4,100 is at least 1 - 2**-12 and rounds to 1.0 in float16.
    u = backend.DeviceRNG(0).uniform((100_000,), like=np.zeros(1, dtype=np.float16))
    assert u.dtype == np.float16
    assert float(u.max()) < 1.0


def test_fallback_float16_draws_stay_below_one():
    # A library reached through the fallback (Dask here) gets float16 draws in float16's
    # precision: a float64 draw of at least 1 - 2**-12 would round to 1.0.
    da = pytest.importorskip("dask.array")
    u = backend.DeviceRNG(0).uniform((100_000,), like=da.zeros(1, dtype=np.float16))
    assert u.dtype == np.float16
    assert float(u.max().compute()) < 1.0


def test_location_names_the_library_and_the_device():
    import array_api_strict

    assert backend.location(np.ones(2)) == "numpy cpu"
    device1 = array_api_strict.Device("device1")
    assert backend.location(array_api_strict.ones(2, device=device1)) == "array_api_strict device1"
    torch = pytest.importorskip("torch")
    assert backend.location(torch.ones(2)) == "torch cpu"
