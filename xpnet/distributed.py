"""Beyond one machine with Dask (``dask.distributed``): gradient checks and full-data passes.

Two kinds of work run on a Dask cluster, from a laptop's ``LocalCluster`` to many
machines (or one worker per GPU with ``dask-cuda``):

- the numerical gradients of a gradient check (``check_gradients(..., client=client)``,
  :func:`numerical`). The network and the batch go to every worker once
  (``client.scatter(..., broadcast=True)``); a task is a chunk of one parameter's flat
  elements, computed by the loop (two forward passes per element) or, for the batched
  method, by local perturbations (:mod:`xpnet.perturb`). Tasks return NumPy arrays,
  which the client puts in place: the report is the one a local run gives. When a
  worker dies, the scheduler runs its tasks again elsewhere;
- passes over a whole data set: :func:`rows` turns a NumPy data set into a dask array
  chunked by rows and kept on the cluster (``persist``); a network with NumPy weights
  takes it as input (:func:`xpnet.backend.namespace_of` allows exactly that mix), and
  ``Trainer(..., evaluate_on=...)`` evaluates on it.

:func:`connect` gives a client for ``xpnet ... --scheduler ADDRESS|local:N``.

This module imports Dask; ``import xpnet`` does not (install the ``xpnet[dask]`` extra).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import gc
import importlib
import logging
import math
import os
import socket
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from xpnet import __version__
from xpnet.backend import BackendUnavailableError, dtype_name, namespace_of, to_numpy
from xpnet.gradcheck import address_given_as_client, progress_bar
from xpnet.held import layers_of
from xpnet.numerical import _Numerical, how_differenced, memory_budget, numerical_gradient
from xpnet.perturb import LocalNet, chunk_differences, loop_differences, moving_elements

try:
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster, as_completed, wait
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import backends as comm_backends
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        f"xpnet.distributed needs Dask ({exc}): pip install 'dask[distributed]'"
    ) from exc

LOCAL_PREFIX = "local:"
CONNECT_TIMEOUT_S = 5.0
# How long a worker may take to answer require_workers' probe: its first one imports xpnet,
# about 0.5 s on an idle core; a stopped or hung worker never answers (Dask waits for ever).
PROBE_TIMEOUT_S = 30.0
# The scheduler's HTTP server (health, metrics) on a free loopback port, not on 8787.
LOOPBACK_HTTP = {"dashboard_address": "127.0.0.1:0"}
# local:N: worker processes of one thread, on loopback only, no dashboard, and no
# spilling (nothing is written to disk and read back). Dask's errors only: its warnings
# (a worker cancelling its task as the cluster stops on Ctrl-C, a nanny killing a busy
# worker) are not the command line's to print.
LOCAL_CLUSTER = {
    "processes": True,
    "threads_per_worker": 1,
    "host": "127.0.0.1",
    "dashboard_address": None,
    "scheduler_kwargs": LOOPBACK_HTTP,
    "memory_limit": 0,
    "silence_logs": logging.ERROR,
}
# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which also fixes glibc's
# mmap threshold at 128 KiB: every array above that is mapped afresh and page-faulted
# (a batched check of MultiLayerNet(784, [256, 128], 10)'s W2 ran 2.2x slower, the loop
# 1.35x). Left to glibc, the thresholds rise (to at most 32 and 64 MiB) only once the
# process frees a large mapped block, which a worker given its data by scatter may never
# do: each free at the top of its task thread's heap then handed the pages back (madvise)
# and the next batch faulted them in again (a hyperparameter search's workers: 110,000
# faults and 0.3 s of system time each for 10 trials of 20 epochs). local:N workers do not
# manage memory (memory_limit 0): they start with glibc's highest thresholds.
LOCAL_WORKER_ENVIRON = {
    "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 32 * 2**20,
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 64 * 2**20,
}
# A terminal's Ctrl-C reaches local:N's worker processes too (one process group), and each
# printed a KeyboardInterrupt traceback; they take it (a Dask preload, as script text) as
# the news that the client's process is stopping the cluster, and log nothing from then on:
# under load, a worker's heartbeat met the closed scheduler and logged Dask's ERROR "Failed
# to communicate with scheduler during heartbeat" (StreamClosedError) after xpnet's line.
QUIET_ON_CTRL_C = (
    "import signal, xpnet.distributed as xd; signal.signal(signal.SIGINT, xd._quiet_from_now_on)"
)
# How long a Ctrl-C waits for a result being fetched (distributed._fetched); one takes
# milliseconds.
FETCH_WAIT_S = 10
# Tasks per worker thread: enough for the scheduler to balance uneven chunks and to
# lose little when a worker dies, few enough that its overhead per task stays small.
TASKS_PER_THREAD = 4

Progress = bool | Callable[[int, int], None] | None


class SchedulerUnavailableError(ConnectionError):
    """The Dask cluster cannot take work: no scheduler answered at the address given, it
    has no workers, or some of its workers do not answer."""


class WorkLostError(ConnectionError):
    """The cluster lost what a computation needed (every worker holding it died)."""


class WorkerEnvironmentError(BackendUnavailableError):
    """Dask workers cannot run this xpnet: it is missing there, or another version."""


@contextmanager
def connect(scheduler: str, *, timeout: float | None = None) -> Iterator[Client]:
    """A client for ``scheduler``, closed (and a cluster it started stopped) on exit.

    ``scheduler`` is the address of a running scheduler (``tcp://127.0.0.1:8786``) or
    ``local:N``: a ``LocalCluster`` of N worker processes of one thread each, listening on
    127.0.0.1 only, without a dashboard and without spilling to disk. Raises
    :class:`SchedulerUnavailableError` naming the address when nothing answers within
    ``timeout`` seconds (default ``CONNECT_TIMEOUT_S``), ``ValueError`` for a malformed
    address (:func:`check_address`).
    """
    if not isinstance(scheduler, str):
        hint = ": use the client as it is" if isinstance(scheduler, Client) else ""
        raise TypeError(
            "connect takes a scheduler's address (tcp://HOST:PORT) or local:N, got "
            f"{type(scheduler).__name__}{hint}"
        )
    timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
    check_address(scheduler)
    if scheduler.startswith(LOCAL_PREFIX):
        count = scheduler[len(LOCAL_PREFIX) :]
        # Set while the nannies are made (they keep it for their restarts), not while the
        # caller's code runs: a cluster of the caller's own keeps Dask's settings.
        with dask.config.set(_local_worker_config()):
            cluster = LocalCluster(n_workers=int(count), **LOCAL_CLUSTER)
        _collect_unreferenced_clients()
        with cluster, Client(cluster) as client:
            _quiet_abandoned_gathers(client)
            yield client
        return
    with _client_within(scheduler, timeout) as client:
        _quiet_abandoned_gathers(client)
        yield client


def check_address(scheduler: str) -> None:
    """Raise ``ValueError`` naming ``scheduler`` unless it has the form of ``local:N``
    (N >= 1) or of a scheduler's address: ``SCHEME://HOST:PORT`` for a scheme Dask knows
    (tcp, tls, ws, ...), ``HOST:PORT`` (tcp), or ``inproc://...``. Nothing is connected to."""
    others = ", ".join(f"{s}://" for s in sorted(comm_backends) if s != "tcp")
    forms = (
        "expected local:N with N >= 1 worker processes, or a scheduler's address: "
        f"tcp://HOST:PORT (tcp://127.0.0.1:8786), HOST:PORT, or Dask's other schemes ({others})"
    )
    if scheduler.startswith(LOCAL_PREFIX) or scheduler == LOCAL_PREFIX.rstrip(":"):
        count = scheduler[len(LOCAL_PREFIX) :]
        if not (count.isascii() and count.isdigit()) or int(count) < 1:  # not "²"
            raise ValueError(f"--scheduler {scheduler!r}: {forms}")
        return
    scheme, location = parse_address(scheduler, strict=False)
    if scheme not in comm_backends:
        raise ValueError(f"--scheduler {scheduler!r}: unknown scheme {scheme!r}; {forms}")
    if scheme == "inproc":
        return
    try:
        host, port = parse_host_port(location)
    except ValueError:
        host, port = "", 0
    if not host or not 0 < port < 2**16:
        raise ValueError(f"--scheduler {scheduler!r}: no HOST:PORT (port 1 to 65535); {forms}")


def _local_worker_config() -> dict[str, Any]:
    """The Dask settings local:N's workers start with: glibc's malloc thresholds, and
    QUIET_ON_CTRL_C after the caller's own preloads, which Dask takes as one string or a
    list, with ``preload-argv`` one list for all or a list per preload."""
    preload = dask.config.get("distributed.worker.preload")
    preloads = [preload] if isinstance(preload, str) else [*preload]
    config = {**LOCAL_WORKER_ENVIRON, "distributed.worker.preload": [*preloads, QUIET_ON_CTRL_C]}
    argv = dask.config.get("distributed.worker.preload-argv")
    if argv and not isinstance(argv[0], str):  # a list per preload: an empty one for ours
        config["distributed.worker.preload-argv"] = [*argv, []]
    return config


def _quiet_from_now_on(signum: int, frame: Any) -> None:
    """A local:N worker's SIGINT handler: Ctrl-C, on which the client's process stops the
    cluster, so nothing this process logs any more (its closing connections) is news."""
    logging.disable(logging.CRITICAL)


def _quiet_abandoned_gathers(client: Client) -> None:
    """Keep Dask's ``AllExit`` off stderr: a gather that Ctrl-C abandons leaves tasks that
    end with it, Dask's own signal that nothing is left to wait for, which asyncio then
    printed as a "Task exception was never retrieved" traceback. Other errors are reported
    as before. The handler stays on the client's event loop (Dask's, shared in a process)."""
    loop = client.loop.asyncio_loop
    previous = loop.get_exception_handler()
    if getattr(previous, "quiets_all_exit", False):
        return

    def handle(loop: Any, context: dict[str, Any]) -> None:
        if type(context.get("exception")).__name__ == "AllExit":  # distributed.client's
            return
        (previous or type(loop).default_exception_handler)(loop, context)

    handle.quiets_all_exit = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handle)


def _collect_unreferenced_clients() -> None:
    """Finalise now the Dask clients that nothing refers to any more (in reference cycles:
    one whose handshake failed, kept by its exception's traceback). A client's ``__del__``
    closes it, which takes a lock of Dask's that ``Client()`` holds while it starts its event
    loop: a garbage collection that happened to run inside ``Client()`` and finalise such a
    client would wait for that lock in the thread holding it, for ever."""
    gc.collect()


def _client_within(scheduler: str, timeout: float) -> Client:
    """``Client(scheduler)``, or :class:`SchedulerUnavailableError` after ``timeout`` seconds.

    Dask's own timeout covers the TCP connection only: a port that accepts it but does not
    speak Dask's protocol (a dashboard's, an HTTP server's) hangs its handshake for ever
    (dask/distributed#8071) or fails deep in it. The client is made in a thread that is
    given up on (it is a daemon) when it has not answered in time; a client that it makes
    after that is closed, not left connected as the process's default client.
    """
    made: dict[str, Any] = {}
    handover = threading.Lock()

    def make() -> None:
        try:
            _collect_unreferenced_clients()
            client = Client(scheduler, timeout=timeout)
        except BaseException as exc:  # anything: a garbled reply can raise MemoryError
            made["error"] = exc
            return
        with handover:
            taken = made.setdefault("client", client) is client
        if not taken:  # the caller gave up on it and raised
            client.close()

    thread = threading.Thread(target=make, name="xpnet-connect", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    with handover:
        client = made.setdefault("client", None)
    if client is not None:
        return client
    exc = made.get("error")
    # The client's own error, kept in both cases: a TLS or UCX setup error is only said there.
    failed = "" if exc is None else f" ({type(exc).__name__}: {exc})"
    why = (
        f"nothing answered as a Dask scheduler{failed}"
        if exc is not None and not _accepts_connections(scheduler, timeout)
        else f"something accepted the connection but did not answer as a Dask scheduler{failed}; "
        "a dashboard's port? a scheduler's is usually 8786"
    )
    raise SchedulerUnavailableError(
        f"no Dask scheduler answers at {scheduler} within {timeout:g} s: {why}; "
        "start one (dask scheduler) or use --scheduler local:N"
    ) from exc


def _accepts_connections(scheduler: str, timeout: float) -> bool:
    """Whether a TCP connection to ``scheduler``'s host and port is accepted (within
    ``timeout`` seconds, at most 1): after a failed handshake, that tells a port where
    nothing listens from one where something else does (a silent listener, another
    protocol's bytes read as a Dask frame, which failed with MemoryError or ValueError).
    False for addresses without a host and port (inproc://)."""
    scheme, location = parse_address(scheduler, strict=False)
    if scheme == "inproc":
        return False
    host, port = parse_host_port(location)
    try:
        # A port that accepted the client's connection accepts this one at once.
        socket.create_connection((host, port), timeout=min(timeout, 1.0)).close()
    except OSError:
        return False
    return True


def require_workers(
    client: Client, *, timeout: float | None = None, modules: Iterable[str] = ()
) -> None:
    """Wait up to ``timeout`` seconds (default ``CONNECT_TIMEOUT_S``) for a first worker,
    then check that every worker answers within ``PROBE_TIMEOUT_S``, runs this xpnet and
    can import ``modules`` (those of a network's own layers), before any work is sent.

    Raises ``TypeError`` for anything but a ``distributed.Client`` and ``ValueError`` for a
    closed one; :class:`SchedulerUnavailableError` naming the scheduler when no worker
    comes, rather than leaving tasks queued for ever, or naming the workers that do not
    answer (stopped, hung: Dask's ``client.run`` waits for them for ever);
    :class:`WorkerEnvironmentError` naming the workers that cannot import xpnet (whose
    tasks failed deep inside Dask's unpickling), that run another version, or that lack
    one of ``modules``. Workers that join later are not checked.
    """
    if not isinstance(client, Client):
        if isinstance(client, str):
            raise address_given_as_client(client)
        made = " (Client(cluster) makes one for a cluster)" * hasattr(client, "scheduler_address")
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}{made}")
    if client.status in ("closing", "closed"):
        raise ValueError(
            f"the Dask client is {client.status}: pass an open one (make the calls "
            "inside `with Client(...) as client:`)"
        )
    if not client.nthreads():
        timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, asyncio.TimeoutError) as exc:  # one class only from Python 3.11
            raise SchedulerUnavailableError(
                f"the Dask scheduler at {client.scheduler.address} has no workers "
                f"(none joined within {timeout:g} s): start some (dask worker ADDRESS)"
            ) from exc
    modules = sorted(set(modules))
    found = _answers(client, _xpnet_version, *modules)
    refused = [w for w, v in found.items() if isinstance(v, TypeError)]
    if modules and refused:
        # An older xpnet's probe took no modules: asked without them, it answers its version.
        again = _answers(client, _xpnet_version, workers=refused)
        found.update({w: v for w, v in again.items() if isinstance(v, str)})
    # A worker leaving as the check runs (its connection closed, an OSError) is not checked.
    found = {w: v for w, v in found.items() if not isinstance(v, OSError)}
    install = (
        f"install xpnet {__version__} where the workers run (pip install -e '.[dask]' "
        "in a checkout of that version) or start them from this environment"
    )
    failed = {w: v for w, v in found.items() if isinstance(v, BaseException)}
    if failed:
        raise WorkerEnvironmentError(
            f"Dask {_workers(failed)} cannot load xpnet ({next(iter(failed.values()))}): {install}"
        )
    # An older xpnet's probe took no modules and answered its version alone.
    found = {w: v if isinstance(v, tuple) else (v, {}) for w, v in found.items()}
    other = {w: version for w, (version, _) in found.items() if version != __version__}
    if other:
        versions = ", ".join(sorted(set(other.values())))
        raise WorkerEnvironmentError(
            f"Dask {_workers(other)} run{'s' * (len(other) == 1)} xpnet {versions}, "
            f"this client {__version__}: {install}"
        )
    lacking = {w: missing for w, (_, missing) in found.items() if missing}
    if lacking:
        module, why = next(iter(next(iter(lacking.values())).items()))
        raise WorkerEnvironmentError(
            f"Dask {_workers(lacking)} cannot import {module} ({why}), which the network "
            f"needs: install it where the workers run, or send a one-file module with "
            f"client.upload_file('{module.replace('.', '/')}.py')"
        )


def _answers(
    client: Client, function: Callable[..., Any], *args: Any, workers: list[str] | None = None
) -> dict[str, Any]:
    """``client.run(function, *args, on_error="return")``, one call per worker (of
    ``workers``, default all) at once, or :class:`SchedulerUnavailableError` naming the
    workers that do not answer within ``PROBE_TIMEOUT_S``: ``client.run`` has no timeout,
    and waits for a stopped worker."""
    workers = list(client.nthreads()) if workers is None else workers
    found = client.sync(_probe, client, workers, function, args, PROBE_TIMEOUT_S)
    silent = [w for w in workers if w not in found]
    if silent:
        raise SchedulerUnavailableError(
            f"Dask {_workers(dict.fromkeys(silent))} of the scheduler at "
            f"{client.scheduler.address} did not answer within {PROBE_TIMEOUT_S:g} s "
            "(stopped, hung or cut off?): restart them; the scheduler drops a silent worker "
            "after distributed.scheduler.worker-ttl (5 minutes by default)"
        )
    return found


async def _probe(
    client: Client, workers: list[str], function: Callable[..., Any], args: tuple, timeout: float
) -> dict[str, Any]:
    """What ``function(*args)`` gives on each of ``workers`` (its exception, with
    ``on_error="return"``) that answers within ``timeout`` seconds; the others are left out.
    No workers (all left since the caller listed them) answer nothing."""
    if not workers:  # asyncio.wait refuses an empty set
        return {}
    calls = {
        w: asyncio.ensure_future(
            client.run(function, *args, workers=[w], on_error="return", asynchronous=True)
        )
        for w in workers
    }
    done, pending = await asyncio.wait(calls.values(), timeout=timeout)
    for call in pending:  # the scheduler's own message to the worker waits on
        call.cancel()
    return {
        w: value for w, call in calls.items() if call in done for value in call.result().values()
    }


def _xpnet_version(*modules: str) -> tuple[str, dict[str, str]]:
    """On a worker, its xpnet's version and the ``modules`` it cannot import, with why;
    unpickling this function there imports this module, which fails where xpnet (or a
    package it needs) is missing."""
    missing = {}
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing[module] = str(exc)
        except Exception as exc:  # the module is there, but fails as it loads
            missing[module] = f"it raised {type(exc).__name__}: {exc}"
    return __version__, missing


def modules_of(net: Any) -> set[str]:
    """The modules of ``net``'s class and of its layers' (:func:`xpnet.held.layers_of`) that
    are not xpnet's own, which workers import to unpickle the network: a user's layers."""
    classes = [type(net), *map(type, layers_of(net))]
    found = set().union(*map(_imported_for, classes))
    return {m for m in found if m != "__main__" and m.split(".")[0] != "xpnet"}


def _imported_for(cls: type) -> set[str]:
    """The modules a worker imports to unpickle an instance of ``cls``: its own, or, for a
    class defined in a function (cloudpickle sends it by value, as one of ``__main__``),
    those its bases need."""
    if "<locals>" not in cls.__qualname__:
        return {cls.__module__}
    return set().union(*map(_imported_for, cls.__bases__))


def _unpicklable(
    value: Any, path: str, layer: tuple[str, Any] | None = None, seen: set[int] | None = None
) -> tuple[str, Any, tuple[str, Any] | None, Exception] | None:
    """The innermost part of ``value`` that cloudpickle (Dask's way to send it) cannot pickle:
    its path from ``path`` (through attributes, items and values), the part, the layer holding
    it (its path and the layer) and the error; None when ``value`` pickles."""
    import cloudpickle

    seen = set() if seen is None else seen
    if id(value) in seen:  # a cycle: its other end is reported
        return None
    seen.add(id(value))
    try:
        cloudpickle.dumps(value)
    except Exception as exc:
        if not isinstance(value, type) and all(
            callable(getattr(value, m, None)) for m in ("forward", "backward")
        ):
            layer = (path, value)
        if isinstance(value, dict):
            parts = [(f"{path}[{k!r}]", v) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            parts = [(f"{path}[{k}]", v) for k, v in enumerate(value)]
        else:
            parts = [(f"{path}.{k}", v) for k, v in getattr(value, "__dict__", {}).items()]
        for where, part in parts:
            found = _unpicklable(part, where, layer, seen)
            if found is not None:
                return found
        return path, value, layer, exc
    return None


def _not_sendable(net: Any) -> TypeError | None:
    """A ``TypeError`` naming the part of ``net`` (and its layer) that cannot be sent to the
    workers, and why; None when the network pickles (the failure was elsewhere)."""
    found = _unpicklable(net, "net")
    if found is None:
        return None
    path, part, layer, exc = found
    held = f"{path}, a {type(part).__name__}"
    if layer is not None and layer[1] is not part:
        held += f" held by the {type(layer[1]).__name__} layer at {layer[0]}"
    return TypeError(
        f"the network cannot be sent to the Dask workers: {held}, cannot be pickled "
        f"({type(exc).__name__}: {exc}); keep it outside the network, or leave it out of what "
        "its layer pickles (__getstate__), or check without client="
    )


def _workers(found: dict[str, Any], shown: int = 3) -> str:
    """``worker tcp://...`` or ``workers tcp://..., tcp://... and 5 more``."""
    names = sorted(found)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"worker{'s' * (len(names) > 1)} {', '.join(names[:shown])}{more}"


def threads(client: Client) -> int:
    """Worker threads in the client's cluster (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def rows(x: Any, *, client: Client | None = None, chunk_rows: int | None = None) -> Any:
    """``x`` (N, ...) as a dask array of NumPy chunks of ``chunk_rows`` rows.

    With a ``client``, the chunks are sent to its workers now (``scatter``, spread over
    them) and stay there (``persist``), so later computations send only their graph; a
    worker lost takes its chunks with it (computations on them then fail with Dask's
    ``FutureCancelledError``: scattered data cannot be recomputed; ``Trainer`` then calls
    ``rows`` again).
    ``chunk_rows`` defaults to two chunks per worker thread (per CPU without a client).
    ``x`` must be an array (a list is a ``TypeError``, as everywhere in xpnet) with at least
    one dimension (a 0-D array is a ``ValueError``).
    """
    if not array_api_compat.is_array_api_obj(x):
        raise TypeError(
            f"rows needs an array of shape (N, ...), got {type(x).__name__}: convert it "
            "first (numpy.asarray)"
        )
    if x.ndim == 0:
        raise ValueError(
            f"rows needs an array of shape (N, ...), got a 0-D {dtype_name(x)} array: "
            "it has no rows to chunk"
        )
    host = to_numpy(x)
    if client is not None:
        require_workers(client)
    if chunk_rows is None:
        parts = 2 * (threads(client) if client is not None else os.cpu_count() or 1)
        chunk_rows = max(1, math.ceil(host.shape[0] / parts))
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if client is None or host.shape[0] == 0:  # no rows: nothing to send to the workers
        return da.from_array(host, chunks=(chunk_rows, *host.shape[1:]))
    pieces = [host[s : s + chunk_rows, ...] for s in range(0, host.shape[0], chunk_rows)]
    # Keys of this call's own (hash=False): with keys from the data's hash, two clients
    # sending the same data at once shared them, and one's release lost the other's chunks
    # (its rows failed with "lost dependencies", or hung).
    sent = client.scatter(pieces, hash=False)
    parts = zip(sent, pieces, strict=True)
    lazy = da.concatenate([da.from_delayed(f, shape=p.shape, dtype=p.dtype) for f, p in parts])
    # A persisted array holds futures of its chunks, which keep them on the workers.
    lazy = client.persist(lazy)
    with client.as_current():  # wait() waits on the default client, which may be another
        wait(lazy)
    return lazy


@dataclass(eq=False)  # hashed by identity: the key of a worker's LocalNet cache
class Problem:
    """What every task needs: the network and the batch, sent to each worker once."""

    net: Any
    x: Any
    t: Any


_LOCAL_NETS: weakref.WeakKeyDictionary[Problem, LocalNet] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _local_net(problem: Problem) -> LocalNet:
    """The problem's LocalNet, built once per worker (one forward pass); tasks only read it."""
    with _LOCK:
        local = _LOCAL_NETS.get(problem)
        if local is None:
            local = _LOCAL_NETS[problem] = LocalNet(problem.net, problem.x, problem.t)
        return local


_COPIES = threading.local()


def _own_copy(problem: Problem) -> Any:
    """This thread's copy of the problem's network, made once: the loop moves parameters
    (and puts them back), which other threads must not see."""
    copies = getattr(_COPIES, "nets", None)
    if copies is None:
        copies = _COPIES.nets = weakref.WeakKeyDictionary()
    net = copies.get(problem)
    if net is None:
        with _LOCK:
            net = copies[problem] = copy.deepcopy(problem.net)
    return net


def _task(problem: Problem, name: str, index: np.ndarray, h: float, how: str) -> tuple[Any, Any]:
    """Central differences of the flat elements ``index`` of ``name``, on a worker.

    ``how`` as a local run computes them (:func:`xpnet.numerical.how_differenced`).
    Returns NumPy arrays: the differences (m,) and the kinks (m,) bool, or None.
    """
    param = problem.net.params[name]
    xp = namespace_of(param)
    flat = xp.asarray(index, dtype=xp.int64, device=array_api_compat.device(param))
    if how == "local":
        grad, kinks = chunk_differences(_local_net(problem), name, flat, h)
        return to_numpy(grad), to_numpy(kinks)
    unravelled = np.stack(np.unravel_index(index, tuple(param.shape)), axis=1)
    elements = [tuple(e) for e in unravelled.tolist()]  # Python ints index every namespace
    net = _own_copy(problem)
    if how == "loop-inputs":
        grad, kinks = loop_differences(_local_net(problem), name, h, elements, net=net)
        return to_numpy(grad), to_numpy(kinks)
    kinks = None
    if how == "loop+kinks":
        kinks = to_numpy(chunk_differences(_local_net(problem), name, flat, h)[1])
    grad = numerical_gradient(
        lambda p: net.loss_at(name, p, problem.x, problem.t), net.params[name], h, indices=elements
    )
    return to_numpy(grad).reshape(-1)[index], kinks


@dataclass
class _Job:
    name: str
    index: np.ndarray
    how: str


def _plan(
    net: Any, local: LocalNet | None, names: list[str], method: str, budget: int, threads: int
) -> tuple[dict[str, str], list[_Job]]:
    """How each parameter is differenced (``_task``'s ``how``) and the tasks of a check.

    The batched method differences only the elements that can move the loss, in
    chunks within ``budget`` bytes each (as a local run); the loop takes every element.
    """
    hows, jobs = {}, []
    for name in names:
        param = net.params[name]
        how = how_differenced(local, name, method)
        if how == "local":
            index = np.flatnonzero(to_numpy(moving_elements(local, name)))
            most = max(1, budget // local.bytes_per_element(name))
        else:
            index = np.arange(math.prod(param.shape))
            most = index.shape[0]
        size = max(1, min(most, math.ceil(index.shape[0] / (TASKS_PER_THREAD * threads))))
        hows[name] = how
        jobs += [_Job(name, index[s : s + size], how) for s in range(0, index.shape[0], size)]
    return hows, jobs


def completed(
    client: Client, futures: list[Any], *, raise_errors: bool = True
) -> Iterator[tuple[Any, Any]]:
    """Each of ``futures`` with its result as it completes, on ``client``'s event loop.

    A cancelled future (the cluster lost what it needed) comes with its ``CancelledError``,
    unraised; a failed task raises its error, or comes with it unraised when
    ``raise_errors`` is False. The futures not yet completed when the caller stops (an
    error, Ctrl-C's ``KeyboardInterrupt``, ``break``) and closes the generator
    (``contextlib.closing``; CPython closes one a ``for`` loop drops) are cancelled: their
    tasks leave the cluster rather than run on for nobody.

    Each result is fetched as the caller asks for it (:func:`_fetched`), not by Dask's
    ``as_completed`` as each task ends (``with_results=True``): a fetch of its still running
    as the caller stopped and closed the client failed for nobody to see, and Dask's event
    loop printed that ``CommClosedError`` with its traceback after xpnet's last line
    (dask/distributed#7331).
    """
    done = set()
    try:
        # This client's loop: as_completed otherwise waits on the default (latest) client's.
        for future in as_completed(futures, loop=client.loop):
            done.add(future.key)
            try:
                result = _fetched(client, future)
            except CancelledError as exc:
                result = exc
            except Exception as exc:
                if raise_errors or future.status != "error":  # not the task's own error
                    raise
                result = exc
            yield future, result
    finally:
        left = [f for f in futures if f.key not in done]
        if left:
            client.cancel(left)


def _fetched(client: Client, future: Any) -> Any:
    """``future.result()``, fetched by a task on the client's event loop. A Ctrl-C while it
    comes waits for that task to end (up to ``FETCH_WAIT_S``; a second Ctrl-C stops the
    wait) before it stops the caller: a fetch left running as the client then closed and
    released its futures ended in errors that Dask logged after xpnet's last line (the
    scheduler's "Couldn't gather keys", the event loop's ``CommClosedError``).
    ``result()`` gives its fetch up on Ctrl-C, and its wait (Dask's ``sync``) logged a
    NameError traceback when the Ctrl-C came before the fetch had started."""
    fetch = asyncio.run_coroutine_threadsafe(
        client.gather(future, asynchronous=True), client.loop.asyncio_loop
    )
    try:
        return fetch.result()
    except KeyboardInterrupt:
        concurrent.futures.wait([fetch], timeout=FETCH_WAIT_S)
        raise


def _gather(client: Client, futures: list[Any], progress: Progress) -> list[Any]:
    """The futures' results in order, reporting progress as they complete."""
    found = {}
    with (
        progress_bar(progress, len(futures), "task") as done,
        closing(completed(client, futures)) as results,
    ):
        for future, result in results:
            # The result, not the status: a future whose result came may read "cancelled"
            # once the workers holding it die.
            if isinstance(result, CancelledError):
                raise WorkLostError(
                    f"the Dask cluster lost the gradient check ({result}): the workers "
                    "holding the network and batch died (all of them at once, or the "
                    "cluster was restarted); run the check again"
                ) from result
            found[future.key] = result
            done(1)
    return [found[f.key] for f in futures]


@contextmanager
def gradients_set_aside(net: Any) -> Iterator[Any]:
    """``net`` with its layers' parameter gradients (``dW``, ``db``, ...) set to None, put
    back on leaving: the workers never read them, and, as large as the parameters, they
    would make the problem sent to each worker (and each thread's copy) half as big again.
    A network without :class:`~xpnet.networks.Parameters` (``params.slot``) is left as it is."""
    slot = getattr(getattr(net, "params", None), "slot", None)
    held = []
    for name in net.params if callable(slot) else ():
        layer, attr = slot(name)
        grad = getattr(layer, "d" + attr, None)
        if grad is not None:
            held.append((layer, "d" + attr, grad))
            setattr(layer, "d" + attr, None)
    try:
        yield net
    finally:
        for layer, attr, grad in held:
            setattr(layer, attr, grad)


def numerical(
    client: Client,
    net: Any,
    x: Any,
    t: Any,
    names: Iterable[str],
    *,
    method: str,
    h: float,
    budget: int | str | None = None,
    progress: Progress = None,
) -> dict[str, _Numerical]:
    """Numerical gradients of the parameters ``names`` (with kinks where known), as tasks.

    The same numbers as :func:`xpnet.gradcheck` computes locally for ``method``
    (``"loop"`` or ``"batched"``). ``budget`` bounds each task's working memory.
    ``progress``: a bar on stderr (None: when it is a terminal) or a callable
    ``progress(done, total)`` called as tasks complete.
    """
    names = list(names)
    require_workers(client, modules=modules_of(net))
    local = LocalNet.of(net, x, t)
    hows, jobs = _plan(net, local, names, method, memory_budget(budget), threads(client))
    with gradients_set_aside(net):
        try:
            problem = client.scatter(Problem(net, x, t), broadcast=True, hash=False)
        except TypeError:  # Dask's "Could not serialize object of type Problem"
            unsent = _not_sendable(net)
            if unsent is None:
                raise
            raise unsent from None  # Dask's traceback and its str(problem) say less
    futures = [
        client.submit(_task, problem, job.name, job.index, h, job.how, pure=False) for job in jobs
    ]
    results = _gather(client, futures, progress)
    out = {}
    for name, how in hows.items():
        param = net.params[name]
        grad = np.zeros(math.prod(param.shape), dtype=to_numpy(param).dtype)
        kinks = np.zeros(grad.shape, dtype=bool)
        for job, (values, kinked) in zip(jobs, results, strict=True):
            if job.name == name:
                grad[job.index] = values
                if kinked is not None:
                    kinks[job.index] = kinked
        xp, dev = namespace_of(param), array_api_compat.device(param)
        out[name] = _Numerical(
            xp.reshape(xp.asarray(grad, device=dev), param.shape),
            None if how == "loop" else xp.reshape(xp.asarray(kinks, device=dev), param.shape),
            "local" if how == "local" else "loop",
        )
    return out
