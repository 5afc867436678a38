"""Options, fixtures and the end-of-session summary for ``pytest benchmarks/``.

Every benchmark uses the ``timed`` fixture (never pytest-benchmark's raw
``benchmark``): it wraps the timed callable with :func:`xpnet.bench.synced`, so each
call ends with a device synchronize. Collection fails if a benchmark asks for
``benchmark`` without ``timed``.

Options (``pytest benchmarks/ --help``):

- ``--xpnet-full`` (or ``XPNET_BENCH=full``): the full mode (more rounds, 1,000
  parameters in the numerical-gradient subset, whole epochs, 50,000 per-sample steps a
  round); quick by default;
- ``--xpnet-subset N``: parameters timed by the per-element numerical gradient;
- ``--xpnet-data auto|mnist|mnist-5k|fashion-mnist|synthetic``: the data (not for the
  per-sample suite, which takes Fashion-MNIST where on disk, else mnist-5k);
- ``--xpnet-numerical-full``: also time one complete per-element numerical gradient
  (tens of seconds per batch size on a CPU).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from typing import Any

import numpy as np
import pytest

from xpnet import backend, bench

RECORDS = pytest.StashKey[list]()
MEDIANS = pytest.StashKey[dict]()
LOAD_AT_START = pytest.StashKey[float]()
WARM_UP_S = 0.5


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xpnet benchmarks")
    group.addoption(
        "--xpnet-full",
        action="store_true",
        default=False,
        help="full benchmark mode (default: quick, or XPNET_BENCH=quick|full)",
    )
    group.addoption(
        "--xpnet-subset",
        type=int,
        default=None,
        metavar="N",
        help="parameters timed by the per-element numerical gradient "
        "(default: 32 quick, 1000 full)",
    )
    group.addoption(
        "--xpnet-data",
        default="auto",
        choices=["auto", "mnist", "mnist-5k", "fashion-mnist", "synthetic"],
        help="benchmark data (default auto: real MNIST if on disk, or downloadable in full "
        "mode; else the offline mnist-5k subset); the per-sample suite always takes "
        "Fashion-MNIST where on disk, else mnist-5k",
    )
    group.addoption(
        "--xpnet-numerical-full",
        action="store_true",
        default=False,
        help="also time one complete per-element numerical gradient (slow)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Refuse bad options and environment variables once, before any benchmark runs.

    ``XPNET_DEVICE`` is only parsed here: a device that is missing (no GPU, no CuPy)
    makes the benchmarks skip, with the reason, in ``run_device``.
    """
    subset = config.getoption("--xpnet-subset")
    if subset is not None and subset < 1:
        raise pytest.UsageError(f"--xpnet-subset must be >= 1, got {subset}")
    try:
        bench.select_mode()
        backend.parse_device()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if "s" not in config.option.reportchars:  # each skip says which device or peer is missing
        config.option.reportchars += "s"
    config.stash[RECORDS] = []
    config.stash[MEDIANS] = {}
    config.stash[LOAD_AT_START] = _load_average()


def pytest_itemcollected(item: pytest.Item) -> None:
    """Lift pyproject.toml's per-test ``timeout`` from a benchmark: it is there to turn a hung
    test into a failure, and a benchmark takes as long as its mode says (minutes in full
    mode). A timeout asked for (``--timeout``, ``PYTEST_TIMEOUT``) still applies."""
    config = item.config
    asked = config.getoption("timeout", None) is not None or os.environ.get("PYTEST_TIMEOUT")
    if config.pluginmanager.hasplugin("timeout") and not asked:
        item.add_marker(pytest.mark.timeout(0))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse benchmarks that use pytest-benchmark's fixture directly (unsynchronized)."""
    here = os.path.dirname(__file__)
    raw = [
        item.nodeid
        for item in items
        if str(item.path).startswith(here)
        and "benchmark" in getattr(item, "fixturenames", ())
        and "timed" not in getattr(item, "fixturenames", ())
    ]
    if raw:
        raise pytest.UsageError(
            "benchmarks must use the `timed` fixture (it synchronizes the device), not "
            "`benchmark` directly: " + ", ".join(raw)
        )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def bench_mode(pytestconfig: pytest.Config) -> bench.BenchMode:
    """The quick or full mode, with ``--xpnet-subset`` applied."""
    mode = bench.select_mode(pytestconfig.getoption("--xpnet-full"))
    subset = pytestconfig.getoption("--xpnet-subset")
    if subset is not None:
        mode = bench.BenchMode(**{**vars(mode), "subset": subset})
    return mode


@pytest.fixture(scope="session")
def run_device() -> tuple[Any, Any, str]:
    """``(xp, device, name)`` from ``XPNET_DEVICE``; skips everything with the reason if absent."""
    try:
        xp, dev = backend.selected()
    except backend.BackendUnavailableError as exc:
        pytest.skip(f"XPNET_DEVICE={os.environ.get(backend.ENV_VAR)}: {exc}")
    return xp, dev, str(backend.parse_device())


@pytest.fixture(scope="session")
def bench_data(pytestconfig: pytest.Config, bench_mode: bench.BenchMode) -> bench.BenchData:
    """MNIST (if on disk, or downloadable in full mode), else mnist-5k; host arrays.

    Data that cannot be had ends the session with one usage error, not an error per test."""
    requested = pytestconfig.getoption("--xpnet-data")
    try:
        return bench.choose_data(bench_mode, requested)
    except (OSError, RuntimeError) as exc:  # DatasetNotFoundError; no data set at all
        pytest.exit(f"--xpnet-data {requested}: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def run_info(run_device: tuple[Any, Any, str], bench_data: bench.BenchData) -> dict[str, Any]:
    """What every benchmark record carries in ``extra_info`` (run, data, versions)."""
    xp, _, device = run_device
    return {
        "run_backend": xp.__name__.rsplit(".", 1)[-1],
        "run_device": device,
        "data": bench_data.name,
        "data_description": bench_data.describe(),
        "network": bench.NETWORK,
    }


@pytest.fixture(scope="session", autouse=True)
def warm_up(run_device: tuple[Any, Any, str]) -> None:
    """Untimed work before the first benchmark, so that one-time costs (BLAS thread
    start-up, CuPy kernel compilation, lazy imports) are not charged to it."""
    from xpnet.networks import TwoLayerNet

    rng = backend.host_rng(0)
    for dtype in ("float64", "float32"):
        net = TwoLayerNet(784, 50, 10, dtype=dtype, seed=0)
        x = backend.to_device(rng.random((100, 784)), dtype=dtype)
        t = backend.to_device(np.eye(10)[rng.integers(0, 10, 100)], dtype=dtype)
        end = time.perf_counter() + WARM_UP_S / 2
        while time.perf_counter() < end:
            backend.synchronize(*net.gradient(x, t).values())


@pytest.fixture
def timed(
    benchmark: Any,
    bench_mode: bench.BenchMode,
    run_info: dict[str, Any],
    pytestconfig: pytest.Config,
) -> Any:
    """The only way to time something here: ``timed(fn, kind=..., batch=..., ...)``.

    Wraps pytest-benchmark's fixture in :class:`xpnet.bench.Timed` (synchronized calls,
    rounds from the mode's budget, ``extra_info``) and keeps the record for the summary.
    """
    timer = bench.Timed(benchmark, bench_mode, run_info)
    yield timer
    if timer.used and benchmark.stats:
        pytestconfig.stash[RECORDS].append(benchmark.stats.as_dict(include_data=False))
        info = benchmark.extra_info
        key = (info.get("kind"), info.get("framework"), info.get("batch"), info.get("network"))
        pytestconfig.stash[MEDIANS][key] = timer.median_s


@pytest.fixture
def medians(pytestconfig: pytest.Config) -> dict[tuple[Any, Any, Any, Any], float]:
    """Medians measured earlier in this session, by ``(kind, framework, batch, network)``."""
    return pytestconfig.stash[MEDIANS]


# --------------------------------------------------------------------------- reporting


def _load_average() -> float:
    """The 1-minute load average (other processes competing for the cores), -1 if unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def _installed(package: str) -> str:
    """``package``'s installed version, without importing it ("not installed" if absent)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _versions() -> dict[str, str]:
    """Python, NumPy, CuPy, PyTorch (installed, imported or not), the CPUs and the xpnet
    device: what describes the machine and its software, the same in every run on it. A
    device that is missing (``XPNET_DEVICE=cuda`` without CuPy or a GPU) says so, and that
    its benchmarks were skipped (``run_device``)."""
    info = {"python": platform.python_version(), **backend.describe()}
    try:
        backend.selected()
    except backend.BackendUnavailableError:  # describe() says why
        info["device"] += ", its benchmarks skipped"
    info["torch"] = _installed("torch")
    info["cpu_count"] = str(os.cpu_count())
    return info


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Versions and the xpnet device in the JSON's ``machine_info``.

    Nothing that changes from run to run goes there (``--benchmark-compare`` warns when
    it differs): the load averages go in the JSON's ``xpnet_load_average``, PyTorch's
    threads in the records.
    """
    machine_info["xpnet"] = _versions()


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict) -> None:
    """The summary (ratios included) and the run's 1-minute load averages (``None`` where
    unknown) in the JSON, next to pytest-benchmark's records."""
    output_json["xpnet_summary"] = bench.summarize(output_json.get("benchmarks", []))
    start, end = config.stash[LOAD_AT_START], _load_average()
    output_json["xpnet_load_average"] = {
        "start": round(start, 2) if start >= 0 else None,
        "end": round(end, 2) if end >= 0 else None,
    }


def json_not_written(option: Any) -> str:
    """The summary's line for the ``--benchmark-json`` file of a run that timed nothing:
    ``option`` is its path (pytest-benchmark 5), or the file itself, which pytest-benchmark 4
    (the lowest version declared) opened for writing, so emptied, when the run started."""
    if hasattr(option, "write"):
        return f"--benchmark-json {option.name}: not written; the file there is left empty"
    earlier = "; the file there is an earlier run's" if option.exists() else ""
    return f"--benchmark-json {option}: not written{earlier}"


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The xpnet summary table, after pytest-benchmark's own tables."""
    records = config.stash.get(RECORDS, None)
    if records is None or config.option.collectonly:
        return
    terminalreporter.section("xpnet benchmark summary")
    terminalreporter.write_line(bench.format_summary(bench.summarize(records)))
    json_option = config.getoption("benchmark_json", None)
    if not records and json_option is not None:  # pytest-benchmark writes no file then
        terminalreporter.write_line(json_not_written(json_option))
    versions = ", ".join(f"{k} {v}" for k, v in _versions().items())
    terminalreporter.write_line(f"versions: {versions}")
    start, end = config.stash[LOAD_AT_START], _load_average()
    busy = start >= 0.5 * (os.cpu_count() or 1)
    terminalreporter.write_line(
        f"{'WARNING: ' if busy else ''}1-minute load average {start:.2f} before the run "
        f"({end:.2f} after it, this run included) on {os.cpu_count()} CPUs"
        + (
            ": other processes were competing for the CPU, so these timings are "
            "pessimistic and noisy; rerun on a quiet machine"
            if busy
            else ""
        )
    )
